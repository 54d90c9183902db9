/* merge/pipeline.c: recipe document -> job -> streamed merge (see pipeline.h). */
#include "pipeline.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/alloc.h"
#include "../core/emergency.h"
#include "../core/rng.h"
#include "../io/hfdir.h"
#include "../io/names.h"
#include "chat.h"
#include "kernels_internal.h"
#include "method.h"
#include "vocab.h"

#define DEFAULT_SHARD_SIZE 5000000000ull          /* mergekit's --out-shard-size 5B */
#define CHUNK_ELEMS ((int64_t)1 << 20)             /* 4 MB of F32 per input buffer */
#define CACHE_BUDGET ((uint64_t)256 << 20)         /* whole-tensor cache for multi-pass methods */
#define PREFETCH_BYTES ((uint64_t)256 << 20)       /* read-ahead of inputs across tensors */

/* ---- job structures ---------------------------------------------------------- */

typedef struct {
    char *ref;            /* as written */
    char *path;           /* resolved */
    char *lora;           /* resolved LoRA adapter applied to it, or NULL */
    al_ckpt *ck;
    long n_layers;        /* max block index + 1 */
    al_pos pos;
} jb_model;

typedef struct {
    int model;
    int64_t start, end;
    const al_params *params;   /* NULL for a base added without parameters */
} jb_source;

typedef struct {
    jb_source *src;
    size_t n;
    const al_params *params;
    const al_params *mparams;  /* the module's parameters (modules: default), or NULL */
    int base;                  /* model index of the slice's base, or -1 */
} jb_slice;

typedef struct {
    al_job_tensor pub;
    char *name;
    al_job_input *inputs;
    int *in_model;
    long *in_tensor;
    int n_models;              /* non-base inputs; the base, if any, is the last input */
    bool has_base;
    char **pstr;
    size_t npstr;
    double weight[AL_MERGE_MAX_MODELS], density[AL_MERGE_MAX_MODELS], gamma[AL_MERGE_MAX_MODELS],
           epsilon[AL_MERGE_MAX_MODELS], scale[AL_MERGE_MAX_MODELS];
    bool set_weight, set_density, set_gamma, set_epsilon, set_scale;
    bool trim_model;           /* ties trim_scope: model */
    bool mine;                 /* this rank writes it (always, with one process) */
    bool perm;                 /* embedding/head rows follow the merged vocabulary */
    long layer;                /* output block index, -1 outside the blocks */
    double lines_a, lines_b;   /* merge_method: lines parameters */
    bool lines_has_b;
    al_merge_params mp;
} jb_tensor;

struct al_merge_job {
    const al_recipe *r;
    const al_recipe_doc *d;
    al_merge_opts o;
    const al_merge_method *method;
    jb_model *models;
    size_t n_models;
    jb_slice *slices;
    size_t n_slices;
    jb_tensor *t;
    size_t n, cap;
    long out_layers;
    long n_blocks;             /* output blocks, for LiNeS' l/(L-1) */
    double lines_alpha;        /* alpha: auto, once computed */
    bool warned_layers;        /* the unknown-architecture warning was given */
    /* tokenizer-aware merge (recipes.md §1.5) */
    bool vocab_on;
    al_vocab_plan vocab;
    size_t vocab_kept;         /* tokens kept from the source tokenizer */
    int vocab_source;          /* model whose tokenizer.json is rewritten */
    int donor;                 /* model whose config.json is copied */
    int tok_donor;             /* model whose tokenizer files are copied */
    float trim_thr[AL_MERGE_MAX_MODELS];   /* trim_scope: model thresholds per task */
    /* input buffers reused from tensor to tensor: freeing and re-allocating a few
     * hundred MB per tensor would have the kernel zero fresh pages every time */
    float *pool[AL_MERGE_MAX_MODELS + 1];
    size_t pool_cap[AL_MERGE_MAX_MODELS + 1];
};

/* Buffer `slot` with room for n floats, grown as needed, owned by the job. */
static float *pool_get(al_merge_job *j, size_t slot, size_t n)
{
    if (j->pool_cap[slot] < n) {
        al_free(j->pool[slot]);
        j->pool[slot] = al_malloc_aligned(n * sizeof(float));
        j->pool_cap[slot] = j->pool[slot] ? n : 0;
    }
    return j->pool[slot];
}

static al_status warn(const al_merge_job *j, al_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Record a warning; in strict mode it is an error instead. */
static al_status warn(const al_merge_job *j, al_error *err, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (j->o.strict) return al_errorf(err, AL_ERR_RECIPE, "%s (an error with --strict)", buf);
    al_strvec *v = j->o.warnings;
    if (!v) return AL_OK;
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        char **it = al_realloc(v->items, cap * sizeof *it);
        if (!it) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
        v->items = it;
        v->cap = cap;
    }
    if (!(v->items[v->n] = al_strdup(buf))) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    v->n++;
    return AL_OK;
}

/* The document's body: models: or slices:, or those of its first module. mergekit
 * gives every single-module architecture (all text-only models) one module named
 * `default`, so `modules: {default: ...}` is the same merge with the module's
 * parameters as one more precedence level (recipes.md 1.4); build_slices refuses
 * other modules. */
typedef struct {
    const al_input_model *models;
    size_t n_models;
    bool has_models;
    const al_slice *slices;
    size_t n_slices;
    const al_params *mparams;
} doc_body;

static doc_body body_of(const al_recipe_doc *d)
{
    if (!d->has_modules || !d->n_modules)
        return (doc_body){ d->models, d->n_models, d->has_models, d->slices, d->n_slices, NULL };
    const al_module *m = &d->modules[0];
    return (doc_body){ m->models, m->n_models, m->has_models, m->slices, m->n_slices, &m->params };
}

/* ---- models ------------------------------------------------------------------ */

typedef struct { const al_merge_opts *o; const al_recipe *r; } lookup_ud;

/* Intermediate outputs of earlier documents live in "<out>.alloy-work/<name>"; in a
 * dry run they do not exist yet, and the referenced document's first input stands in
 * (an intermediate merge has its inputs' architecture). */
static al_status lookup_output(void *ud, int doc_index, const char *name, char **path_out, al_error *err)
{
    const lookup_ud *u = ud;
    const char *dir = u->o->work_dir;
    if (!u->o->dry_run && dir) {
        size_t n = strlen(dir) + strlen(name) + 2;
        if (!(*path_out = al_malloc(n))) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
        snprintf(*path_out, n, "%s/%s", dir, name);
        return AL_OK;
    }
    const doc_body b = body_of(&u->r->docs[doc_index]);
    const al_model_ref *first = b.n_models ? &b.models[0].model
                              : b.n_slices && b.slices[0].n_sources ? &b.slices[0].sources[0].model : NULL;
    if (!first) return al_errorf(err, AL_ERR_RECIPE, "intermediate '%s' has no inputs", name);
    al_resolve_opts ro = {u->o->models_dir, lookup_output, ud};
    return al_model_resolve_ex(first, &ro, path_out, err);
}

static bool same_str(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

static al_status add_model(al_merge_job *j, const al_model_ref *ref, int *idx, al_error *err)
{
    lookup_ud ud = {&j->o, j->r};
    al_resolve_opts ro = {j->o.models_dir, lookup_output, &ud, true};
    char *path = NULL, *lora = NULL;
    al_status s = al_model_resolve_ex(ref, &ro, &path, err);
    if (s == AL_OK && ref->lora) s = al_model_resolve_lora(ref, &ro, &lora, err);
    if (s != AL_OK) {
        al_free(path);
        return al_error_prefix(err, "%s:%d:%d: ", j->r->filename, ref->pos.line, ref->pos.col);
    }
    /* model+adapter is a model of its own */
    for (size_t i = 0; i < j->n_models; i++)
        if (strcmp(j->models[i].path, path) == 0 && same_str(j->models[i].lora, lora)) {
            *idx = (int)i;
            al_free(path);
            al_free(lora);
            return AL_OK;
        }
    jb_model *m = al_realloc(j->models, (j->n_models + 1) * sizeof *m);
    if (!m) { al_free(path); al_free(lora); return al_errorf(err, AL_ERR_NOMEM, "out of memory"); }
    j->models = m;
    jb_model *nm = &j->models[j->n_models];
    *nm = (jb_model){0};
    nm->path = path;
    nm->lora = lora;
    nm->pos = ref->pos;
    j->n_models++;
    if (!(nm->ref = al_strdup(ref->text ? ref->text : path))) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    if ((s = al_ckpt_open(&nm->ck, path, err)) == AL_OK && lora) s = al_ckpt_attach_lora(nm->ck, lora, err);
    if (s != AL_OK)
        return al_error_prefix(err, "%s:%d:%d: model '%s': ", j->r->filename, ref->pos.line, ref->pos.col, nm->ref);
    nm->n_layers = 0;
    for (size_t i = 0; i < al_ckpt_count(nm->ck); i++) {
        al_layer_info li;
        al_layer_of(al_ckpt_info(nm->ck, i)->name, &li);
        if (li.kind == AL_LAYER_BLOCK && li.index + 1 > nm->n_layers) nm->n_layers = li.index + 1;
    }
    *idx = (int)(j->n_models - 1);
    return AL_OK;
}

/* ---- normalization into slices (recipes.md §1.3) ------------------------------ */

static al_status build_slices(al_merge_job *j, al_error *err)
{
    const al_recipe_doc *d = j->d;
    al_status s;
    int base = -1;
    if (d->has_modules && (d->n_modules != 1 || strcmp(d->modules[0].name, "default") != 0)) {
        const al_module *m = &d->modules[d->n_modules > 1 ? 1 : 0];
        return al_errorf(err, AL_ERR_UNSUPPORTED, "%s:%d:%d: module '%s': `modules:` recipes for multi-module "
                         "architectures (vision towers, encoder-decoders) are not supported yet; a text-only "
                         "model has one module, `default`", j->r->filename, m->pos.line, m->pos.col, m->name);
    }
    const doc_body b = body_of(d);
    if (d->base_model && (s = add_model(j, d->base_model, &base, err)) != AL_OK) return s;
    if (b.has_models) {
        j->slices = al_calloc(1, sizeof *j->slices);
        if (!j->slices) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
        j->n_slices = 1;
        jb_slice *sl = &j->slices[0];
        sl->src = al_calloc(b.n_models + 1, sizeof *sl->src);
        if (!sl->src) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
        sl->base = base;
        sl->mparams = b.mparams;
        bool base_listed = false;
        for (size_t i = 0; i < b.n_models; i++) {
            int mi;
            if ((s = add_model(j, &b.models[i].model, &mi, err)) != AL_OK) return s;
            if (mi == base) base_listed = true;
            sl->src[sl->n++] = (jb_source){mi, 0, 0, &b.models[i].params};
        }
        if (base >= 0 && !base_listed) sl->src[sl->n++] = (jb_source){base, 0, 0, NULL};
        /* every model contributes all its layers; their counts must agree */
        long L = j->models[sl->src[0].model].n_layers;
        for (size_t i = 0; i < sl->n; i++) {
            const jb_model *m = &j->models[sl->src[i].model];
            if (m->n_layers != L)
                return al_errorf(err, AL_ERR_SHAPE, "%s: model '%s' has %ld layers but '%s' has %ld: "
                                 "use slices: to merge models of different depth",
                                 j->r->filename, m->ref, m->n_layers, j->models[sl->src[0].model].ref, L);
            sl->src[i].end = L;
        }
        j->out_layers = -1;
        return AL_OK;
    }
    /* slices: */
    j->slices = al_calloc(b.n_slices ? b.n_slices : 1, sizeof *j->slices);
    if (!j->slices) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    j->out_layers = 0;
    for (size_t k = 0; k < b.n_slices; k++) {
        const al_slice *in = &b.slices[k];
        jb_slice *sl = &j->slices[j->n_slices++];
        sl->params = &in->params;
        sl->mparams = b.mparams;
        sl->base = base;
        if (in->base_model && (s = add_model(j, in->base_model, &sl->base, err)) != AL_OK) return s;
        sl->src = al_calloc(in->n_sources ? in->n_sources : 1, sizeof *sl->src);
        if (!sl->src) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < in->n_sources; i++) {
            const al_source *src = &in->sources[i];
            int mi;
            if ((s = add_model(j, &src->model, &mi, err)) != AL_OK) return s;
            const jb_model *m = &j->models[mi];
            if (src->layer_end > m->n_layers)
                return al_errorf(err, AL_ERR_RECIPE, "%s:%d:%d: layer_range [%lld, %lld) of '%s' is past its %ld layers",
                                 j->r->filename, src->range_pos.line, src->range_pos.col,
                                 (long long)src->layer_start, (long long)src->layer_end, m->ref, m->n_layers);
            if (i && src->layer_end - src->layer_start != sl->src[0].end - sl->src[0].start)
                return al_errorf(err, AL_ERR_RECIPE, "%s:%d:%d: all sources of a slice must have the same "
                                 "number of layers (%lld here, %lld in the first source)",
                                 j->r->filename, src->range_pos.line, src->range_pos.col,
                                 (long long)(src->layer_end - src->layer_start),
                                 (long long)(sl->src[0].end - sl->src[0].start));
            sl->src[sl->n++] = (jb_source){mi, src->layer_start, src->layer_end, &src->params};
        }
        if (sl->n) j->out_layers += sl->src[0].end - sl->src[0].start;
    }
    return AL_OK;
}

/* ---- parameters --------------------------------------------------------------- */

/* Evaluate a parameter through the precedence chain, keeping string results (enums). */
static bool chain_scalar(const al_params *const levels[4], const char *name, const char *tensor, double t,
                         al_pscalar *out)
{
    for (int l = 0; l < 4; l++) {
        const al_param *p = al_params_find(levels[l], name);
        if (!p) continue;
        bool found = false;
        al_pv_eval(&p->value, tensor, t, out, &found);
        if (found) return true;
    }
    return false;
}

static al_status pstr_add(jb_tensor *jt, al_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static al_status pstr_add(jb_tensor *jt, al_error *err, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **p = al_realloc(jt->pstr, (jt->npstr + 1) * sizeof *p);
    if (!p) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    jt->pstr = p;
    if (!(jt->pstr[jt->npstr] = al_strdup(buf))) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    jt->npstr++;
    return AL_OK;
}

/* Store one resolved numeric value into the kernel parameters. `k` is the model
 * index for per-model values, -1 for global ones and -2 for the base as an input. */
static al_status set_param(al_merge_job *j, jb_tensor *jt, const al_param_def *def, int k,
                           const al_pscalar *v, al_error *err)
{
    const char *n = def->name;
    al_merge_params *p = &jt->mp;
    double x = v->num;
    if (def->type == AL_PT_ENUM) {
        const char *sv = v->kind == AL_PV_STRING ? v->str : "";
        if (strcmp(n, "rescale_mode") == 0) {
            if (strcmp(sv, "l1") == 0) p->rescale_mode = AL_RESCALE_L1;
            else if (strcmp(sv, "inverse") == 0) p->rescale_mode = AL_RESCALE_INV_P;
            else return al_errorf(err, AL_ERR_RECIPE, "rescale_mode must be l1 or inverse, not '%s'", sv);
        } else if (strcmp(n, "trim_scope") == 0) {
            if (strcmp(sv, "model") == 0) jt->trim_model = true;
            else if (strcmp(sv, "tensor") != 0)
                return al_errorf(err, AL_ERR_RECIPE, "trim_scope must be tensor or model, not '%s'", sv);
        }
        return pstr_add(jt, err, "%s=%s", n, sv);
    }
    if (v->kind == AL_PV_STRING)
        return al_errorf(err, AL_ERR_RECIPE, "parameter '%s' must be a number, not '%s'", n, v->str);
    if (def->has_min && x < def->min)
        return al_errorf(err, AL_ERR_RECIPE, "parameter '%s' = %g is below its minimum %g", n, x, def->min);
    if (def->has_max && x > def->max)
        return al_errorf(err, AL_ERR_RECIPE, "parameter '%s' = %g is above its maximum %g", n, x, def->max);
    if (k >= 0) {
        if (!strcmp(n, "weight")) { jt->weight[k] = x; jt->set_weight = true; }
        else if (!strcmp(n, "density")) { jt->density[k] = x; jt->set_density = true; }
        else if (!strcmp(n, "gamma")) { jt->gamma[k] = x; jt->set_gamma = true; }
        else if (!strcmp(n, "epsilon")) { jt->epsilon[k] = x; jt->set_epsilon = true; }
        else if (!strcmp(n, "scale")) { jt->scale[k] = x; jt->set_scale = true; }
        return pstr_add(jt, err, "%s[%s]=%g", n, jt->inputs[k].model, x);
    }
    if (k == -2) {
        if (!strcmp(n, "weight")) p->base_weight = x;
        return pstr_add(jt, err, "%s[%s]=%g", n, jt->inputs[jt->n_models].model, x);
    }
    bool ram = strncmp(j->method->name, "ram", 3) == 0;
    if (!strcmp(j->method->name, "lines") && !strcmp(n, "alpha")) jt->lines_a = x;
    else if (!strcmp(j->method->name, "lines") && !strcmp(n, "beta")) { jt->lines_b = x; jt->lines_has_b = true; }
    else if (!strcmp(n, "lambda")) p->lambda = x;
    else if (!strcmp(n, "normalize")) p->normalize = x != 0;
    else if (!strcmp(n, "rescale")) p->rescale = x != 0;
    else if (!strcmp(n, "t")) p->t = x;
    else if (!strcmp(n, "filter_wise")) p->filter_wise = x != 0;
    else if (!strcmp(n, "nuslerp_flatten")) p->nuslerp_flatten = x != 0;
    else if (!strcmp(n, "nuslerp_row_wise")) p->nuslerp_row_wise = x != 0;
    else if (!strcmp(n, "normalize_weights")) p->normalize_weights = x != 0;
    else if (!strcmp(n, "eps")) p->eps = x;
    else if (!strcmp(n, "max_iter")) p->max_iter = (int)x;
    else if (!strcmp(n, "tol")) p->tol = x;
    else if (!strcmp(n, "select_topk")) p->select_topk = x;
    else if (!strcmp(n, "epsilon") && ram) p->ram_epsilon = x;
    else if (!strcmp(n, "r")) p->ram_r = x;
    else if (!strcmp(n, "alpha")) p->ram_alpha = x;
    else if (!strcmp(n, "seed")) p->seed = (uint64_t)x;
    /* int8_mask only changes memory use in mergekit: nothing to do. */
    return pstr_add(jt, err, "%s=%g", n, x);
}

static al_status resolve_params(al_merge_job *j, jb_tensor *jt, const jb_slice *sl, const jb_source *const *srcs,
                                al_error *err)
{
    const al_method *sm = j->d->method;
    al_status s;
    for (size_t i = 0; i < sm->n_params; i++) {
        const al_param_def *def = &sm->params[i];
        al_pscalar v;
        if (def->scope == AL_SCOPE_GLOBAL) {
            const al_params *lv[4] = {sl->params, sl->mparams, &j->d->params, NULL};
            if (chain_scalar(lv, def->name, jt->name, jt->pub.t, &v)) {
                if ((s = set_param(j, jt, def, -1, &v, err)) != AL_OK) goto fail;
            } else if (def->required) {
                s = al_errorf(err, AL_ERR_RECIPE, "missing required parameter '%s'", def->name);
                goto fail;
            }
            continue;
        }
        int n_in = jt->n_models + (jt->has_base ? 1 : 0);
        for (int k = 0; k < n_in; k++) {
            bool is_base = jt->has_base && k == jt->n_models;
            if (is_base && !sm->base_is_input) continue;
            const al_params *lv[4] = {srcs[k]->params, sl->params, sl->mparams, &j->d->params};
            if (chain_scalar(lv, def->name, jt->inputs[k].tensor, jt->pub.t, &v)) {
                if ((s = set_param(j, jt, def, is_base ? -2 : k, &v, err)) != AL_OK) goto fail;
            } else if (def->required && !is_base) {
                s = al_errorf(err, AL_ERR_RECIPE, "missing required parameter '%s' for model '%s'", def->name,
                              jt->inputs[k].model);
                goto fail;
            }
        }
    }
    return AL_OK;
fail:
    return al_error_prefix(err, "%s: tensor '%s': ", j->r->filename, jt->name);
}

/* ---- LiNeS (Wang et al., ICLR 2025) ------------------------------------------------
 * The task vector of block l of L is scaled by alpha + beta l/(L-1), everything outside
 * the blocks by alpha; a single block gets alpha + beta. For task-vector methods the
 * factor multiplies the method's lambda, which scales the merged task vector exactly
 * where LiNeS does: theta = base + lambda s(l) tau_merged. */
static double lines_scale(double alpha, double beta, long l, long L)
{
    if (l < 0) return alpha;
    return alpha + beta * (L > 1 ? (double)l / (double)(L - 1) : 1.0);
}

/* ---- tensor list ---------------------------------------------------------------- */

static al_status push_tensor(al_merge_job *j, jb_tensor **out, al_error *err)
{
    if (j->n == j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 256;
        jb_tensor *t = al_realloc(j->t, cap * sizeof *t);
        if (!t) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
        j->t = t;
        j->cap = cap;
    }
    *out = &j->t[j->n++];
    memset(*out, 0, sizeof **out);
    return AL_OK;
}

/* One output tensor `out_name` from the sources of slice `sl`, where source i
 * provides `names[i]`. */
static al_status plan_tensor(al_merge_job *j, const jb_slice *sl, const char *out_name, char **names, double t,
                             long layer, al_error *err)
{
    jb_tensor *jt = NULL;
    al_status s;
    if ((s = push_tensor(j, &jt, err)) != AL_OK) return s;
    size_t n = sl->n;
    jt->pub.t = t;
    jt->layer = layer;
    if (!(jt->name = al_strdup(out_name))) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    jt->inputs = al_calloc(n, sizeof *jt->inputs);
    jt->in_model = al_calloc(n, sizeof *jt->in_model);
    jt->in_tensor = al_calloc(n, sizeof *jt->in_tensor);
    const jb_source **srcs = al_calloc(n, sizeof *srcs);
    if (!jt->inputs || !jt->in_model || !jt->in_tensor || !srcs) {
        al_free(srcs);
        return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    }
    /* order: non-base sources as listed, then the base */
    size_t k = 0;
    long base_src = -1;
    for (size_t i = 0; i < n; i++) {
        if (sl->src[i].model == sl->base && base_src < 0) { base_src = (long)i; continue; }
        srcs[k] = &sl->src[i];
        if (!(jt->inputs[k].tensor = al_strdup(names[i]))) { al_free(srcs); return al_errorf(err, AL_ERR_NOMEM, "out of memory"); }
        k++;
    }
    jt->n_models = (int)k;
    if (base_src >= 0) {
        srcs[k] = &sl->src[base_src];
        if (!(jt->inputs[k].tensor = al_strdup(names[base_src]))) { al_free(srcs); return al_errorf(err, AL_ERR_NOMEM, "out of memory"); }
        jt->inputs[k].is_base = true;
        jt->has_base = true;
    }
    if (jt->n_models > AL_MERGE_MAX_MODELS) {
        al_free(srcs);
        return al_errorf(err, AL_ERR_RECIPE, "%s: at most %d models per tensor", j->r->filename, AL_MERGE_MAX_MODELS);
    }
    /* reference: the base if present, else the first source */
    size_t ref = jt->has_base ? (size_t)jt->n_models : 0;
    const al_tensor_info *rinfo = NULL;
    for (size_t i = 0; i < n; i++) {
        const jb_model *m = &j->models[srcs[i]->model];
        jt->in_model[i] = srcs[i]->model;
        jt->inputs[i].model = m->ref;
        long ti = al_ckpt_find(m->ck, jt->inputs[i].tensor);
        if (ti < 0) {
            s = al_errorf(err, AL_ERR_NOTFOUND, "%s:%d:%d: model '%s' (%s) has no tensor '%s' (needed for output '%s')",
                          j->r->filename, m->pos.line, m->pos.col, m->ref, m->path, jt->inputs[i].tensor, out_name);
            al_free(srcs);
            return s;
        }
        jt->in_tensor[i] = ti;
    }
    rinfo = al_ckpt_info(j->models[jt->in_model[ref]].ck, (size_t)jt->in_tensor[ref]);
    jt->pub.ndim = rinfo->ndim;
    memcpy(jt->pub.shape, rinfo->shape, sizeof jt->pub.shape);
    /* embedding and head rows follow the merged vocabulary: one row per output token */
    jt->perm = j->vocab_on && rinfo->ndim == 2 && al_name_is_embedding(out_name);
    if (jt->perm) {
        jt->pub.shape[0] = (int64_t)j->vocab.rows;
        if ((s = pstr_add(jt, err, "rows re-ordered for the merged tokenizer (%zu tokens, %zu rows)", j->vocab.n,
                          j->vocab.rows)) != AL_OK) { al_free(srcs); return s; }
    }
    /* shapes must agree; embeddings of different vocabularies use the common rows */
    char a[160], b[160];
    for (size_t i = 0; i < n; i++) {
        const al_tensor_info *ti = al_ckpt_info(j->models[jt->in_model[i]].ck, (size_t)jt->in_tensor[i]);
        if (al_shape_equal(ti->ndim, ti->shape, jt->pub.ndim, jt->pub.shape)) continue;
        if (jt->perm && ti->ndim == 2 && ti->shape[1] == jt->pub.shape[1]) continue;   /* rows are gathered */
        bool vocab = ti->ndim == 2 && jt->pub.ndim == 2 && ti->shape[1] == jt->pub.shape[1] &&
                     al_name_is_embedding(out_name);
        al_shape_str(a, sizeof a, ti->ndim, ti->shape);
        al_shape_str(b, sizeof b, jt->pub.ndim, rinfo->shape);
        if (!vocab) {
            const jb_model *bm = &j->models[jt->in_model[i]];
            s = al_errorf(err, AL_ERR_SHAPE, "%s:%d:%d: tensor '%s': model '%s' has shape %s but '%s' has %s",
                          j->r->filename, bm->pos.line, bm->pos.col, out_name, jt->inputs[i].model, a,
                          jt->inputs[ref].model, b);
            al_free(srcs);
            return s;
        }
        if ((s = warn(j, err, "tensor '%s': vocabulary sizes differ (%s in '%s', %s in '%s'); using the "
                      "first %lld rows common to all", out_name, a, jt->inputs[i].model, b, jt->inputs[ref].model,
                      (long long)(ti->shape[0] < jt->pub.shape[0] ? ti->shape[0] : jt->pub.shape[0]))) != AL_OK) {
            al_free(srcs);
            return s;
        }
        if (ti->shape[0] < jt->pub.shape[0]) jt->pub.shape[0] = ti->shape[0];
    }
    const al_recipe_doc *d = j->d;
    jt->pub.copy = !al_dtype_is_float(rinfo->dtype);
    jt->pub.dtype = jt->pub.copy ? rinfo->dtype : d->has_out_dtype ? d->out_dtype : d->has_dtype ? d->dtype : rinfo->dtype;
    for (size_t i = 0; i < n && !jt->pub.copy; i++) {
        al_dtype dt = al_ckpt_info(j->models[jt->in_model[i]].ck, (size_t)jt->in_tensor[i])->dtype;
        if (!al_dtype_is_float(dt)) {
            s = al_errorf(err, AL_ERR_DTYPE, "%s:%d:%d: tensor '%s' is %s in '%s' but %s in '%s'", j->r->filename,
                          j->models[jt->in_model[i]].pos.line, j->models[jt->in_model[i]].pos.col, out_name, al_dtype_name(dt), jt->inputs[i].model, al_dtype_name(rinfo->dtype),
                          jt->inputs[ref].model);
            al_free(srcs);
            return s;
        }
    }
    al_merge_params_init(&jt->mp);
    jt->mp.seed = j->o.seed;
    s = jt->pub.copy ? AL_OK : resolve_params(j, jt, sl, srcs, err);
    al_free(srcs);
    if (s != AL_OK || jt->pub.copy) return s;
    if (!strcmp(j->method->name, "lines")) {
        double sc = lines_scale(jt->lines_a, jt->lines_has_b ? jt->lines_b : 1.0 - jt->lines_a, layer, j->n_blocks);
        jt->mp.lambda = sc;
        s = pstr_add(jt, err, "lines_scale=%.17g", sc);
    } else if (d->has_lines && !d->lines_alpha_auto) {
        double sc = lines_scale(d->lines_alpha, d->lines_beta, layer, j->n_blocks);
        jt->mp.lambda *= sc;
        s = pstr_add(jt, err, "lines_scale=%.17g", sc);
    } else if (d->has_lines) {
        s = pstr_add(jt, err, "lines_scale=alpha(auto)+%g*%g", d->lines_beta,
                     layer < 0 ? 0.0 : j->n_blocks > 1 ? (double)layer / (double)(j->n_blocks - 1) : 1.0);
    }
    return s;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Output tensors of one kind (pre/post) or of one layer of slice sl. */
static al_status plan_group(al_merge_job *j, const jb_slice *sl, al_layer_kind kind, long layer, long out_layer,
                            double t, al_error *err)
{
    al_status s = AL_OK;
    if (!sl->n) return AL_OK;
    /* the names come from the reference source: the base if it is a source, else the first */
    size_t ref = 0;
    for (size_t i = 0; i < sl->n; i++) if (sl->src[i].model == sl->base) { ref = i; break; }
    const jb_model *rm = &j->models[sl->src[ref].model];
    char **names = al_calloc(sl->n, sizeof *names);
    if (!names) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    char out_name[512];
    for (size_t ti = 0; ti < al_ckpt_count(rm->ck) && s == AL_OK; ti++) {
        const al_tensor_info *info = al_ckpt_info(rm->ck, ti);
        if (info->tied) continue;          /* tied heads stay implicit, as saved by transformers */
        al_layer_info li;
        al_layer_of(info->name, &li);
        if (li.guessed && !j->warned_layers) {
            al_hf_config cfg;
            j->warned_layers = true;
            if (al_hf_config_read(al_ckpt_dir(rm->ck), &cfg, NULL) != AL_OK) cfg.present = false;
            if ((s = warn(j, err, "model '%s': architecture '%s' is not in alloy's layer map (tensor names such as "
                          "'%s'); block indices are taken from the first '.N.' in each name", rm->ref,
                          cfg.present && cfg.model_type[0] ? cfg.model_type : "unknown", info->name)) != AL_OK)
                break;
        }
        if (li.kind != kind) continue;
        if (kind == AL_LAYER_BLOCK && li.index != sl->src[ref].start + layer) continue;
        for (size_t i = 0; i < sl->n; i++) {
            char buf[512];
            if (kind == AL_LAYER_BLOCK) {
                if (!al_layer_rename(info->name, &li, sl->src[i].start + layer, buf, sizeof buf)) {
                    s = al_errorf(err, AL_ERR_FORMAT, "tensor name too long: %s", info->name);
                    break;
                }
            } else {
                snprintf(buf, sizeof buf, "%s", info->name);
            }
            if (!(names[i] = al_strdup(buf))) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); break; }
        }
        if (s == AL_OK) {
            if (kind == AL_LAYER_BLOCK) al_layer_rename(info->name, &li, out_layer, out_name, sizeof out_name);
            else snprintf(out_name, sizeof out_name, "%s", info->name);
            s = plan_tensor(j, sl, out_name, names, t, kind == AL_LAYER_BLOCK ? out_layer : -1, err);
        }
        for (size_t i = 0; i < sl->n; i++) al_free(names[i]);
        memset(names, 0, sl->n * sizeof *names);
    }
    al_free(names);
    return s;
}

/* Rows of model m's input embedding (its usable vocabulary), or -1. */
static int64_t embed_rows(const jb_model *m)
{
    for (size_t i = 0; i < al_ckpt_count(m->ck); i++) {
        const al_tensor_info *t = al_ckpt_info(m->ck, i);
        al_layer_info li;
        al_layer_of(t->name, &li);
        if (t->ndim == 2 && li.kind == AL_LAYER_PRE && al_name_is_embedding(t->name)) return t->shape[0];
    }
    return -1;
}

/* A merged vocabulary when the recipe asks for one: `tokenizer:` or tokenizer_source:
 * union always; tokenizer_source: base or a model when the models' vocabularies differ
 * in size (otherwise copying that tokenizer is the same thing). */
static al_status build_vocab(al_merge_job *j, al_error *err)
{
    const al_recipe_doc *d = j->d;
    al_status s = AL_OK;
    if (!d->tokenizer && d->tokenizer_source == AL_TOKSRC_ABSENT) return AL_OK;
    bool union_ = d->tokenizer ? d->tokenizer->source == AL_TOKSRC_UNION : d->tokenizer_source == AL_TOKSRC_UNION;
    int n = (int)j->n_models;
    int64_t rows[AL_MERGE_MAX_MODELS + 8];
    const al_tokenizer *toks[AL_MERGE_MAX_MODELS + 8] = {0};
    al_vtoken *cfg = NULL;
    size_t ncfg = 0;
    int source = j->tok_donor;
    if (d->tokenizer && d->tokenizer->source == AL_TOKSRC_MODEL &&
        (s = add_model(j, &d->tokenizer->model, &source, err)) != AL_OK) return s;
    if (d->tokenizer && d->tokenizer->source == AL_TOKSRC_BASE) source = j->slices[0].base >= 0 ? j->slices[0].base : 0;
    n = (int)j->n_models;
    if (n > AL_MERGE_MAX_MODELS) return al_errorf(err, AL_ERR_RECIPE, "too many models for a merged tokenizer");
    bool differ = false;
    for (int m = 0; m < n; m++) {
        rows[m] = embed_rows(&j->models[m]);
        if (rows[m] < 0) return al_errorf(err, AL_ERR_NOTFOUND, "%s: model '%s' has no input embedding to re-order for the merged tokenizer",
                                          j->r->filename, j->models[m].ref);
        differ |= rows[m] != rows[0];
    }
    if (!d->tokenizer && !union_ && !differ) return AL_OK;
    j->vocab_on = true;
    j->vocab_source = source;
    for (int m = 0; m < n && s == AL_OK; m++) {
        al_tokenizer *t = NULL;
        if ((s = al_tokenizer_load(&t, j->models[m].path, err)) != AL_OK)
            al_error_prefix(err, "%s: the merged tokenizer needs every model's tokenizer: model '%s': ", j->r->filename,
                            j->models[m].ref);
        toks[m] = t;
    }
    if (s == AL_OK && d->tokenizer && d->tokenizer->n_tokens) {
        if (!(cfg = al_calloc(d->tokenizer->n_tokens, sizeof *cfg))) s = al_errorf(err, AL_ERR_NOMEM, "out of memory");
        for (size_t k = 0; s == AL_OK && k < d->tokenizer->n_tokens; k++) {
            const al_token_override *o = &d->tokenizer->tokens[k];
            al_vtoken *v = &cfg[ncfg++];
            v->token = o->token;
            v->kind = o->kind == AL_TOKEMB_MODEL ? 0 : o->kind == AL_TOKEMB_MODEL_TOKEN ? 1 : 2;
            v->source_token = o->source_token;
            v->source_token_id = o->source_token_id;
            v->force = o->force;
            if (v->kind != 2 && (s = add_model(j, &o->model, &v->model, err)) == AL_OK && v->model >= n)
                s = al_errorf(err, AL_ERR_RECIPE, "%s:%d:%d: tokens: '%s' names a model that is not merged", j->r->filename,
                              o->pos.line, o->pos.col, o->token);
        }
    }
    if (s == AL_OK) {
        int base = j->slices[0].base;
        s = al_vocab_plan_build(&j->vocab, toks, rows, n, base, source, union_, cfg, ncfg,
                                d->tokenizer ? d->tokenizer->pad_to_multiple_of : 0, err);
        if (s != AL_OK) al_error_prefix(err, "%s: merged tokenizer: ", j->r->filename);
        j->vocab_kept = (size_t)rows[source];
    }
    if (s == AL_OK && j->vocab.n_zero)
        s = warn(j, err, "merged tokenizer: %zu embedding rows are zero (tokens no model has)", j->vocab.n_zero);
    for (int m = 0; m < n; m++) al_tokenizer_free((al_tokenizer *)toks[m]);
    al_free(cfg);
    return s;
}

al_status al_merge_job_build(const al_recipe *r, size_t doc, const al_merge_opts *o, al_merge_job **out,
                             al_error *err)
{
    al_status s;
    *out = NULL;
    al_merge_job *j = al_calloc(1, sizeof *j);
    if (!j) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    j->r = r;
    j->d = &r->docs[doc];
    j->o = *o;
    const al_recipe_doc *d = j->d;
    if (!(j->method = al_merge_method_find(d->method->name))) {
        s = al_errorf(err, AL_ERR_UNSUPPORTED, "%s:%d:%d: merge method '%s' is not implemented", r->filename,
                      d->method_pos.line, d->method_pos.col, d->merge_method);
        goto fail;
    }
    if ((s = build_slices(j, err)) != AL_OK) goto fail;
    j->n_blocks = j->out_layers >= 0 ? j->out_layers
                : j->slices[0].n ? (long)(j->slices[0].src[0].end - j->slices[0].src[0].start) : 0;
    /* mergekit refuses to mix architectures unless --allow-crimes */
    for (size_t i = 1; i < j->n_models && !o->allow_crimes; i++) {
        al_hf_config a, b;
        if (al_hf_config_read(al_ckpt_dir(j->models[0].ck), &a, NULL) != AL_OK ||
            al_hf_config_read(al_ckpt_dir(j->models[i].ck), &b, NULL) != AL_OK) continue;
        if (a.present && b.present && strcmp(a.model_type, b.model_type) != 0) {
            s = al_errorf(err, AL_ERR_RECIPE, "%s:%d:%d: models of different architectures: '%s' is %s, '%s' is %s "
                          "(pass --allow-crimes to merge them anyway)", r->filename, j->models[i].pos.line,
                          j->models[i].pos.col, j->models[0].ref,
                          a.model_type, j->models[i].ref, b.model_type);
            goto fail;
        }
    }
    /* config.json donor: the base, else the first model (mergekit); tokenizer donor likewise
     * unless tokenizer_source names one */
    j->donor = d->base_model ? j->slices[0].base : j->slices[0].n ? j->slices[0].src[0].model : 0;
    j->tok_donor = j->donor;
    if (d->tokenizer_source == AL_TOKSRC_MODEL && (s = add_model(j, &d->tokenizer_source_model, &j->tok_donor, err)) != AL_OK)
        goto fail;
    if (j->donor < 0) j->donor = 0;
    if ((s = build_vocab(j, err)) != AL_OK) goto fail;

    /* pre weights from the first slice, layers slice by slice, post weights from the last */
    if ((s = plan_group(j, &j->slices[0], AL_LAYER_PRE, 0, 0, 0.0, err)) != AL_OK) goto fail;
    long out_layer = 0;
    for (size_t k = 0; k < j->n_slices; k++) {
        const jb_slice *sl = &j->slices[k];
        if (!sl->n) continue;
        long len = (long)(sl->src[0].end - sl->src[0].start);
        for (long l = 0; l < len; l++, out_layer++) {
            double t = len > 1 ? (double)l / (double)(len - 1) : 1.0;
            if ((s = plan_group(j, sl, AL_LAYER_BLOCK, l, out_layer, t, err)) != AL_OK) goto fail;
        }
    }
    if ((s = plan_group(j, &j->slices[j->n_slices - 1], AL_LAYER_POST, 0, 0, 0.0, err)) != AL_OK) goto fail;
    if (!j->n) {
        s = al_errorf(err, AL_ERR_RECIPE, "%s: the recipe produces no tensors", r->filename);
        goto fail;
    }
    /* duplicate output names (overlapping slices would need them) are a recipe error */
    const char **names = al_malloc(j->n * sizeof *names);
    if (!names) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto fail; }
    for (size_t i = 0; i < j->n; i++) names[i] = j->t[i].name;
    qsort(names, j->n, sizeof *names, cmp_str);
    for (size_t i = 1; i < j->n; i++)
        if (strcmp(names[i - 1], names[i]) == 0) {
            s = al_errorf(err, AL_ERR_RECIPE, "%s: output tensor '%s' would be written twice", r->filename, names[i]);
            al_free(names);
            goto fail;
        }
    al_free(names);
    /* publish */
    for (size_t i = 0; i < j->n; i++) {
        jb_tensor *jt = &j->t[i];
        jt->pub.name = jt->name;
        jt->pub.inputs = jt->inputs;
        jt->pub.n_inputs = (size_t)jt->n_models + (jt->has_base ? 1 : 0);
        jt->pub.params = (const char *const *)jt->pstr;
        jt->pub.n_params = jt->npstr;
    }
    *out = j;
    return AL_OK;
fail:
    al_merge_job_free(j);
    return s;
}

size_t al_merge_job_count(const al_merge_job *j) { return j->n; }
const al_job_tensor *al_merge_job_tensor(const al_merge_job *j, size_t i) { return &j->t[i].pub; }
long al_merge_job_out_layers(const al_merge_job *j) { return j->out_layers; }

static uint64_t tensor_bytes(const al_job_tensor *t)
{
    int64_t n;
    uint64_t b = 0;
    if (al_shape_numel(t->ndim, t->shape, &n)) al_dtype_nbytes(t->dtype, n, &b);
    return b;
}

uint64_t al_merge_job_out_bytes(const al_merge_job *j)
{
    uint64_t b = 0;
    for (size_t i = 0; i < j->n; i++) b += tensor_bytes(&j->t[i].pub);
    return b;
}

void al_merge_job_free(al_merge_job *j)
{
    if (!j) return;
    for (size_t i = 0; i < j->n; i++) {
        jb_tensor *jt = &j->t[i];
        size_t n_in = (size_t)jt->n_models + (jt->has_base ? 1 : 0);
        if (jt->inputs)
            for (size_t k = 0; k < n_in; k++) al_free((char *)jt->inputs[k].tensor);
        for (size_t k = 0; k < jt->npstr; k++) al_free(jt->pstr[k]);
        al_free(jt->pstr);
        al_free(jt->inputs);
        al_free(jt->in_model);
        al_free(jt->in_tensor);
        al_free(jt->name);
    }
    al_free(j->t);
    for (size_t i = 0; i <= AL_MERGE_MAX_MODELS; i++) al_free(j->pool[i]);
    al_vocab_plan_free(&j->vocab);
    for (size_t i = 0; i < j->n_models; i++) {
        al_ckpt_close(j->models[i].ck);
        al_free(j->models[i].ref);
        al_free(j->models[i].path);
        al_free(j->models[i].lora);
    }
    al_free(j->models);
    for (size_t k = 0; k < j->n_slices; k++) al_free(j->slices[k].src);
    al_free(j->slices);
    al_free(j);
}

/* ---- execution ------------------------------------------------------------------ */

/* One input of the tensor being merged: rows come from the mapping (F32), a whole-
 * tensor cache (multi-pass methods on tensors that fit the budget), or a staging
 * buffer refilled per chunk. */
typedef struct {
    al_ckpt *ck;
    long idx;
    const float *map;
    float *cache;
    float *stage;
    int64_t cached;       /* rows of `cache` filled so far (filled in order, on first use) */
    bool round;           /* compat: round values to `to` after reading */
    al_dtype to;
    /* merged vocabulary: rows are gathered from this model's (and others') rows */
    const al_merge_job *job;
    int model;
    const char *tname;
    float *pad_mean;      /* [rrow] mean of the real rows, for padding rows */
} jb_in;

static al_status read_row_of(const al_merge_job *j, int model, const char *tname, int64_t row, float *dst,
                             int64_t rrow, al_error *err)
{
    al_ckpt *ck = j->models[model].ck;
    long ti = al_ckpt_find(ck, tname);
    if (ti < 0) return al_errorf(err, AL_ERR_NOTFOUND, "model '%s' has no tensor '%s' for the merged tokenizer",
                                 j->models[model].ref, tname);
    if (al_shape_row_numel(al_ckpt_info(ck, (size_t)ti)->ndim, al_ckpt_info(ck, (size_t)ti)->shape) != rrow)
        return al_errorf(err, AL_ERR_SHAPE, "model '%s': tensor '%s' has rows of another width", j->models[model].ref, tname);
    return al_ckpt_read(ck, (size_t)ti, row, 1, dst, AL_F32, err);
}

/* Output rows [r0, r0+nr) of input `in` in the merged vocabulary's order (vocab.h). */
static al_status gather_rows(const jb_in *in, int64_t r0, int64_t nr, int64_t rrow, float *dst, al_error *err)
{
    const al_merge_job *j = in->job;
    al_status s = AL_OK;
    for (int64_t r = r0; r < r0 + nr && s == AL_OK; r++) {
        float *o = dst + (r - r0) * rrow;
        const al_vfill *f = al_vocab_fill(&j->vocab, in->model, (size_t)r);
        switch (f->kind) {
        case AL_VF_OWN: case AL_VF_FROM:
            s = read_row_of(j, f->model, in->tname, f->row, o, rrow, err);
            break;
        case AL_VF_ZERO:
            memset(o, 0, (size_t)rrow * sizeof *o);
            break;
        case AL_VF_PAD:
            memcpy(o, in->pad_mean, (size_t)rrow * sizeof *o);
            break;
        case AL_VF_MEAN: {
            /* mean of the rows of the models that have the token, in double */
            double *acc = al_calloc((size_t)rrow, sizeof *acc);
            int k = 0;
            if (!acc) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
            for (int m = 0; m < j->vocab.n_models && s == AL_OK; m++) {
                const al_vfill *g = al_vocab_fill(&j->vocab, m, (size_t)r);
                if (g->kind != AL_VF_OWN) continue;
                if ((s = read_row_of(j, m, in->tname, g->row, o, rrow, err)) != AL_OK) break;
                for (int64_t c = 0; c < rrow; c++) acc[c] += o[c];
                k++;
            }
            for (int64_t c = 0; c < rrow && s == AL_OK; c++) o[c] = (float)(acc[c] / (k ? k : 1));
            al_free(acc);
            break;
        }
        }
    }
    return s;
}

static void round_to(float *x, size_t n, al_dtype t)
{
    if (t == AL_BF16) for (size_t i = 0; i < n; i++) x[i] = al_bf16_to_f32(al_f32_to_bf16(x[i]));
    else if (t == AL_F16) for (size_t i = 0; i < n; i++) x[i] = al_f16_to_f32(al_f32_to_f16(x[i]));
}

static al_status in_rows(jb_in *in, int64_t r0, int64_t nr, int64_t rrow, const float **out, al_error *err)
{
    if (in->map) { *out = in->map + r0 * rrow; return AL_OK; }
    if (in->job) {
        float *dst = in->cache ? in->cache + r0 * rrow : in->stage;
        if (!in->cache || r0 + nr > in->cached) {
            al_status s = gather_rows(in, r0, nr, rrow, dst, err);
            if (s != AL_OK) return s;
            if (in->cache) in->cached = r0 + nr;
        }
        *out = dst;
        return AL_OK;
    }
    if (in->cache) {
        /* The cache is filled chunk by chunk during the first pass, so each chunk is
         * converted just before the method first reads it (still in cache). */
        if (r0 + nr > in->cached) {
            AL_ASSERT(r0 == in->cached);
            al_status s = al_ckpt_read(in->ck, (size_t)in->idx, r0, nr, in->cache + r0 * rrow, AL_F32, err);
            if (s != AL_OK) return s;
            if (in->round) round_to(in->cache + r0 * rrow, (size_t)(nr * rrow), in->to);
            in->cached = r0 + nr;
        }
        *out = in->cache + r0 * rrow;
        return AL_OK;
    }
    al_status s = al_ckpt_read(in->ck, (size_t)in->idx, r0, nr, in->stage, AL_F32, err);
    if (s != AL_OK) return s;
    if (in->round) round_to(in->stage, (size_t)(nr * rrow), in->to);
    *out = in->stage;
    return AL_OK;
}

static int64_t gcd64(int64_t a, int64_t b) { while (b) { int64_t t = a % b; a = b; b = t; } return a; }

/* Tell a worker thread to stop (under its mutex, waking it) and wait for it. */
static void join_worker(pthread_mutex_t *mu, pthread_cond_t *cv, bool *stop, pthread_t th)
{
    pthread_mutex_lock(mu);
    *stop = true;
    pthread_cond_broadcast(cv);
    pthread_mutex_unlock(mu);
    pthread_join(th, NULL);
}

/* ---- overlapped output -----------------------------------------------------------
 * Writing the merged bytes (copying into the page cache, blocking when the kernel
 * throttles dirty pages to the disk's pace) runs on its own thread, fed in order from
 * two slots, while the next chunk is computed. The compute side fills one slot while
 * the writer drains the other. A slot may also carry a borrowed pointer (a mapped
 * input tensor), which stays valid until the job ends. */
typedef struct {
    al_writer *w;
    pthread_t th;
    bool started, stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void *buf[2];
    const void *src[2];
    uint64_t len[2];
    bool full[2];
    int put, get;
    al_status st;
    al_error err;
} aw_t;

static void *aw_main(void *arg)
{
    aw_t *a = arg;
    al_error local = {0};
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (!a->full[a->get] && !a->stop) pthread_cond_wait(&a->cv, &a->mu);
        if (!a->full[a->get]) break;
        const void *p = a->src[a->get];
        uint64_t n = a->len[a->get];
        bool ok = a->st == AL_OK;
        pthread_mutex_unlock(&a->mu);
        al_status s = ok ? al_writer_write(a->w, p, n, &local) : AL_OK;
        pthread_mutex_lock(&a->mu);
        if (s != AL_OK && a->st == AL_OK) { a->st = s; a->err = local; }
        a->full[a->get] = false;
        a->get ^= 1;
        pthread_cond_broadcast(&a->cv);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

static al_status aw_fail(aw_t *a, al_error *err)
{
    if (err) *err = a->err;
    return a->st;
}

/* The next slot to fill, once the writer has drained it. */
static al_status aw_acquire(aw_t *a, void **slot, al_error *err)
{
    pthread_mutex_lock(&a->mu);
    while (a->full[a->put] && a->st == AL_OK) pthread_cond_wait(&a->cv, &a->mu);
    al_status s = a->st;
    *slot = a->buf[a->put];
    pthread_mutex_unlock(&a->mu);
    return s == AL_OK ? AL_OK : aw_fail(a, err);
}

/* Queue n bytes at src (the acquired slot, or a borrowed pointer) for writing. */
static al_status aw_submit(aw_t *a, const void *src, uint64_t n, al_error *err)
{
    pthread_mutex_lock(&a->mu);
    a->src[a->put] = src;
    a->len[a->put] = n;
    a->full[a->put] = true;
    a->put ^= 1;
    al_status s = a->st;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    return s == AL_OK ? AL_OK : aw_fail(a, err);
}

/* Wait until everything queued is written. */
static al_status aw_drain(aw_t *a, al_error *err)
{
    pthread_mutex_lock(&a->mu);
    while ((a->full[0] || a->full[1]) && a->st == AL_OK) pthread_cond_wait(&a->cv, &a->mu);
    al_status s = a->st;
    pthread_mutex_unlock(&a->mu);
    return s == AL_OK ? AL_OK : aw_fail(a, err);
}

static al_status aw_start(aw_t *a, al_writer *w, size_t cap, al_error *err)
{
    memset(a, 0, sizeof *a);
    a->w = w;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    a->buf[0] = al_malloc_aligned(cap);
    a->buf[1] = al_malloc_aligned(cap);
    al_status s = AL_OK;
    if (!a->buf[0] || !a->buf[1]) s = al_errorf(err, AL_ERR_NOMEM, "out of memory for output buffers");
    else if (pthread_create(&a->th, NULL, aw_main, a) != 0)
        s = al_errorf(err, AL_ERR_INTERNAL, "cannot start the output thread");
    if (s != AL_OK) {                  /* the caller stops only a started writer */
        al_free(a->buf[0]);
        al_free(a->buf[1]);
        pthread_mutex_destroy(&a->mu);
        pthread_cond_destroy(&a->cv);
        return s;
    }
    a->started = true;
    return AL_OK;
}

/* Stop the thread after the queue is empty; returns the first write error. */
static al_status aw_stop(aw_t *a, al_error *err)
{
    if (a->started) {
        join_worker(&a->mu, &a->cv, &a->stop, a->th);
        a->started = false;
    }
    al_free(a->buf[0]);
    al_free(a->buf[1]);
    a->buf[0] = a->buf[1] = NULL;
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    return a->st == AL_OK ? AL_OK : aw_fail(a, err);
}

/* ---- read-ahead --------------------------------------------------------------------
 * One thread reads the inputs of the tensors ahead of the merge, tensor by tensor and
 * input by input, at most PREFETCH_BYTES ahead. Reading one file range at a time
 * keeps the disk's access sequential: the computing threads alone would fault in
 * pages of all inputs at once, which a (virtual) disk serves at half the speed of
 * sequential reads (measured here: 4 files read in parallel 9.2 s, one after the
 * other 4.4-5.6 s). Where the reader falls behind, the merge faults pages in itself. */
typedef struct {
    al_merge_job *j;
    uint64_t *end;             /* end[i]: input bytes of the tensors before i+1 (mine only) */
    size_t cur;                /* tensor being merged */
    bool stop, started;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} pf_t;

static uint64_t in_bytes(const al_merge_job *j, size_t i)
{
    const jb_tensor *t = &j->t[i];
    return t->mine && !t->pub.copy ? tensor_bytes(&t->pub) * t->pub.n_inputs : 0;
}

static void *pf_main(void *arg)
{
    pf_t *p = arg;
    const al_merge_job *j = p->j;
    for (size_t n = 0; n < j->n; n++) {
        if (!in_bytes(j, n)) continue;
        pthread_mutex_lock(&p->mu);
        /* tensor n may start once the bytes from the current tensor up to it fit */
        while (!p->stop && n > p->cur && p->end[n] - (p->cur ? p->end[p->cur - 1] : 0) > PREFETCH_BYTES)
            pthread_cond_wait(&p->cv, &p->mu);
        bool stop = p->stop;
        size_t cur = p->cur;
        pthread_mutex_unlock(&p->mu);
        if (stop) break;
        if (n < cur) continue;
        const jb_tensor *t = &j->t[n];
        for (size_t k = 0; k < t->pub.n_inputs; k++)
            al_ckpt_prefetch(j->models[t->in_model[k]].ck, (size_t)t->in_tensor[k]);
    }
    return NULL;
}

/* Start the reader (nothing to do on failure: the merge then reads on demand). */
static void pf_start(pf_t *p, al_merge_job *j)
{
    memset(p, 0, sizeof *p);
    p->j = j;
    if (!(p->end = al_malloc((j->n ? j->n : 1) * sizeof *p->end))) return;
    uint64_t sum = 0;
    for (size_t i = 0; i < j->n; i++) p->end[i] = sum += in_bytes(j, i);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->started = pthread_create(&p->th, NULL, pf_main, p) == 0;
    if (!p->started) {
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
    }
}

static void pf_at(pf_t *p, size_t i)
{
    if (!p->started) return;
    pthread_mutex_lock(&p->mu);
    p->cur = i;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void pf_stop(pf_t *p)
{
    if (p->started) {
        join_worker(&p->mu, &p->cv, &p->stop, p->th);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        p->started = false;
    }
    al_free(p->end);
    p->end = NULL;
}

/* LiNeS alpha: auto measuring: acc[0] += |sum_m (x_m - b)|, acc[1] += |out - b| over a
 * tensor, as chunk-invariant block sums (kernels_internal.h), so in parallel and the
 * same for any thread count or chunking. Inputs are typed views of the chunk (F32
 * pointers of the F32 path, or the mapping), converted tile by tile. */
#define MEASURE_TILE 64
typedef struct {
    const al_merge_src *x, *b;
    int n;
    const float *out;
} measure_ctx;

static void measure_fn(void *vc, double *acc, int64_t i0, int64_t i1)
{
    const measure_ctx *c = vc;
    float x[AL_MERGE_MAX_MODELS][MEASURE_TILE], b[MEASURE_TILE];
    double s0 = acc[0], s1 = acc[1];
    for (int64_t a = i0; a < i1; a += MEASURE_TILE) {
        int64_t L = i1 - a < MEASURE_TILE ? i1 - a : MEASURE_TILE;
        al_src_load(b, c->b, a, L);
        for (int m = 0; m < c->n; m++) al_src_load(x[m], &c->x[m], a, L);
        for (int64_t e = 0; e < L; e++) {
            double sum = 0.0;
            for (int m = 0; m < c->n; m++) sum += (double)x[m][e] - (double)b[e];
            s0 += fabs(sum);
            s1 += fabs((double)c->out[a + e] - (double)b[e]);
        }
    }
    acc[0] = s0;
    acc[1] = s1;
}

/* One chunk [off, off+len) of the tensor into bs; x/b point at the chunk's start. */
static void lines_measure(al_bsum *bs, const al_merge_src *x, const al_merge_src *b, int n, const float *out,
                          int64_t off, int64_t len)
{
    measure_ctx c = { x, b, n, out };
    al_bsum_add(bs, off, len, measure_fn, &c);
}

/* The typed source at element off of s. */
static al_merge_src src_at(const al_merge_src *s, int64_t off)
{
    return (al_merge_src){ (const char *)s->data + (size_t)off * (al_dtype_bits(s->dtype) / 8), s->dtype };
}

/* acc (nullable): measure instead of write: acc[0] += sum |sum_t tau_t|, acc[1] +=
 * sum |merged tau| (LiNeS alpha: auto). */
static al_status run_tensor(al_merge_job *j, jb_tensor *jt, aw_t *aw, float *obuf, double *acc, al_error *err)
{
    al_status s = AL_OK;
    const al_job_tensor *t = &jt->pub;
    int64_t rows = t->ndim ? t->shape[0] : 1;
    int64_t rrow = al_shape_row_numel(t->ndim, t->shape);
    int64_t numel = rows * rrow;
    size_t n_in = t->n_inputs;
    if (t->copy && acc) return AL_OK;
    if (t->copy) {
        /* integer/bool buffers: bytes of the reference input */
        size_t ref = jt->has_base ? (size_t)jt->n_models : 0;
        al_ckpt *ck = j->models[jt->in_model[ref]].ck;
        al_view v;
        void *slot;
        if ((s = aw_acquire(aw, &slot, err)) != AL_OK) return s;
        if (al_ckpt_view(ck, (size_t)jt->in_tensor[ref], &v, NULL) == AL_OK)
            return aw_submit(aw, v.data, tensor_bytes(t), err);     /* borrowed from the mapping */
        void *buf = al_malloc(tensor_bytes(t) + 1);
        if (!buf) return al_errorf(err, AL_ERR_NOMEM, "out of memory for '%s'", t->name);
        s = al_ckpt_read(ck, (size_t)jt->in_tensor[ref], 0, rows, buf, t->dtype, err);
        if (s == AL_OK) s = aw_submit(aw, buf, tensor_bytes(t), err);
        if (s == AL_OK) s = aw_drain(aw, err);                      /* before buf goes */
        al_free(buf);
        return s;
    }
    if (numel == 0) return AL_OK;
    al_merge_params *p = &jt->mp;
    p->weight = jt->set_weight ? jt->weight : NULL;
    p->density = jt->set_density ? jt->density : NULL;
    p->gamma = jt->set_gamma ? jt->gamma : NULL;
    p->epsilon = jt->set_epsilon ? jt->epsilon : NULL;
    p->scale = jt->set_scale ? jt->scale : NULL;
    p->ndim = t->ndim;
    p->row_len = t->ndim >= 2 ? rrow : numel;
    p->tensor_name = t->name;
    p->tensor_hash = al_hash_str(t->name);
    void *state = NULL;
    al_merge_plan plan = {0};
    jb_in ins[AL_MERGE_MAX_MODELS + 1];
    memset(ins, 0, sizeof ins);
    al_bsum msum;                  /* LiNeS measuring (acc) */
    memset(&msum, 0, sizeof msum);
    if (acc && (s = al_bsum_init(&msum, 2, err)) != AL_OK) return s;
    const float *ptr[AL_MERGE_MAX_MODELS + 1];
    if ((s = j->method->init(&state, p, numel, jt->n_models, jt->has_base, &plan, err)) != AL_OK) goto done;
    /* chunk rows: a multiple of what the method needs aligned, about CHUNK_ELEMS elements */
    int64_t align = plan.align > 0 ? plan.align : 1;
    int64_t unit = align / gcd64(align, rrow);              /* rows per aligned unit */
    if (unit > rows) unit = rows;
    int64_t crows = CHUNK_ELEMS / rrow;
    crows = crows < unit ? unit : crows - crows % unit;
    if (crows > rows) crows = rows;
    bool compat = j->o.compat_dtype && j->d->has_dtype && (j->d->dtype == AL_BF16 || j->d->dtype == AL_F16);
    bool cache = plan.n_passes > 0 && (uint64_t)numel * 4 * n_in <= CACHE_BUDGET;
    /* Typed path: every input mapped as F32/F16/BF16 with nothing between the file and
     * the method (no merged-vocabulary gather, no compat rounding): the method reads
     * the mappings itself and writes the output dtype into the writer's slot. */
    bool typed = (!acc || jt->has_base) && plan.typed && j->method->prepare && j->method->apply_typed && !compat && !jt->perm &&
                 (t->dtype == AL_F32 || t->dtype == AL_F16 || t->dtype == AL_BF16);
    al_merge_src srcs[AL_MERGE_MAX_MODELS + 1];
    for (size_t i = 0; typed && i < n_in; i++) {
        al_view v;
        typed = al_ckpt_view(j->models[jt->in_model[i]].ck, (size_t)jt->in_tensor[i], &v, NULL) == AL_OK &&
                (v.dtype == AL_F32 || v.dtype == AL_F16 || v.dtype == AL_BF16);
        srcs[i] = (al_merge_src){ v.data, v.dtype };
    }
    if (typed) {
        const al_merge_src *tb = jt->has_base ? &srcs[jt->n_models] : NULL;
        if ((s = j->method->prepare(state, tb, srcs, err)) != AL_OK) goto done;
        for (int64_t r = 0; r < rows; r += crows) {
            int64_t k = rows - r < crows ? rows - r : crows;
            if (acc) {                      /* LiNeS measuring: merged rows in F32, then sums */
                j->method->apply_typed(state, r * rrow, k * rrow, tb, srcs, obuf, AL_F32);
                al_merge_src xs[AL_MERGE_MAX_MODELS], bs = src_at(tb, r * rrow);
                for (int m = 0; m < jt->n_models; m++) xs[m] = src_at(&srcs[m], r * rrow);
                lines_measure(&msum, xs, &bs, jt->n_models, obuf, r * rrow, k * rrow);
                continue;
            }
            void *slot;
            if ((s = aw_acquire(aw, &slot, err)) != AL_OK) goto done;
            j->method->apply_typed(state, r * rrow, k * rrow, tb, srcs, slot, t->dtype);
            if ((s = aw_submit(aw, slot, (uint64_t)(k * rrow) * (al_dtype_bits(t->dtype) / 8), err)) != AL_OK) goto done;
        }
        goto done;
    }
    for (size_t i = 0; i < n_in; i++) {
        jb_in *in = &ins[i];
        in->ck = j->models[jt->in_model[i]].ck;
        in->idx = jt->in_tensor[i];
        in->round = compat;
        in->to = j->d->dtype;
        if (jt->perm) {
            in->job = j;
            in->model = jt->in_model[i];
            in->tname = jt->inputs[i].tensor;
            if (j->vocab.rows > j->vocab.n) {
                /* padding rows: the mean of this input's real rows in the new order */
                if (!(in->pad_mean = al_calloc((size_t)rrow, sizeof *in->pad_mean)) ||
                    !(in->stage = pool_get(j, i, (size_t)rrow))) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
                double *sum = al_calloc((size_t)rrow, sizeof *sum);
                if (!sum) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
                for (size_t r = 0; r < j->vocab.n && s == AL_OK; r++)
                    if ((s = gather_rows(in, (int64_t)r, 1, rrow, in->stage, err)) == AL_OK)
                        for (int64_t c = 0; c < rrow; c++) sum[c] += in->stage[c];
                for (int64_t c = 0; c < rrow; c++) in->pad_mean[c] = (float)(sum[c] / (double)j->vocab.n);
                al_free(sum);
                if (s != AL_OK) goto done;
            }
        }
        al_view v;
        if (!jt->perm && !compat && al_ckpt_info(in->ck, (size_t)in->idx)->dtype == AL_F32 &&
            al_ckpt_view(in->ck, (size_t)in->idx, &v, NULL) == AL_OK) {
            in->map = v.data;
        } else if (cache) {
            if (!(in->cache = pool_get(j, i, (size_t)numel))) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory for '%s'", t->name); goto done; }
        } else if (!(in->stage = pool_get(j, i, (size_t)(crows * rrow)))) {
            s = al_errorf(err, AL_ERR_NOMEM, "out of memory for '%s'", t->name);
            goto done;
        }
    }
    const float *base = NULL;
    for (int pass = 0; pass < plan.n_passes; pass++) {
        for (int64_t r = 0; r < rows; r += crows) {
            int64_t k = rows - r < crows ? rows - r : crows;
            for (size_t i = 0; i < n_in; i++)
                if ((s = in_rows(&ins[i], r, k, rrow, &ptr[i], err)) != AL_OK) goto done;
            base = jt->has_base ? ptr[jt->n_models] : NULL;
            j->method->stat(state, pass, r * rrow, k * rrow, base, ptr);
        }
        if ((s = j->method->finish_pass(state, pass, err)) != AL_OK) goto done;
    }
    for (int64_t r = 0; r < rows; r += crows) {
        int64_t k = rows - r < crows ? rows - r : crows;
        for (size_t i = 0; i < n_in; i++)
            if ((s = in_rows(&ins[i], r, k, rrow, &ptr[i], err)) != AL_OK) goto done;
        base = jt->has_base ? ptr[jt->n_models] : NULL;
        size_t ne = (size_t)(k * rrow);
        if (acc) {
            j->method->apply(state, r * rrow, k * rrow, base, ptr, obuf);
            al_merge_src xs[AL_MERGE_MAX_MODELS], bs = { base, AL_F32 };
            for (int m = 0; m < jt->n_models; m++) xs[m] = (al_merge_src){ ptr[m], AL_F32 };
            lines_measure(&msum, xs, &bs, jt->n_models, obuf, r * rrow, k * rrow);
            continue;
        }
        void *slot;
        if ((s = aw_acquire(aw, &slot, err)) != AL_OK) goto done;
        if (t->dtype == AL_F32) {
            j->method->apply(state, r * rrow, k * rrow, base, ptr, slot);
        } else {
            j->method->apply(state, r * rrow, k * rrow, base, ptr, obuf);
            al_convert(slot, t->dtype, obuf, AL_F32, ne);
        }
        if ((s = aw_submit(aw, slot, ne * (al_dtype_bits(t->dtype) / 8), err)) != AL_OK) goto done;
    }
done:
    if (acc && s == AL_OK) {
        al_bsum_finish(&msum);
        acc[0] += msum.total[0];
        acc[1] += msum.total[1];
    }
    al_bsum_free(&msum);
    if (state) al_merge_method_free(j->method, state);
    for (size_t i = 0; i < n_in; i++) al_free(ins[i].pad_mean);
    if (s != AL_OK && s != AL_ERR_IO) al_error_prefix(err, "%s: ", j->r->filename);
    return s;
}

/* README.md model card: what was merged, how, and the recipe itself. */
static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* chat_template: a built-in name, a literal, or auto (the template most inputs carry),
 * written into the output's tokenizer_config.json (mergekit applies it the same way). */
static al_status apply_chat_template(const al_merge_job *j, const char *dir, al_error *err)
{
    const char **dirs = al_calloc(j->n_models ? j->n_models : 1, sizeof *dirs);
    if (!dirs) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < j->n_models; i++)
        if (is_dir(j->models[i].path)) dirs[n++] = j->models[i].path;
    char *tmpl = NULL;
    al_status s = al_chat_template_resolve(j->d->chat_template, dirs, n, &tmpl, err);
    al_free(dirs);
    if (s != AL_OK) return s;
    if (!tmpl)
        return warn(j, err, "chat_template: auto: no input model has a chat template; the output keeps "
                    "the tokenizer files as copied");
    s = al_hf_set_chat_template(dir, tmpl, err);
    al_free(tmpl);
    return s;
}

static al_status write_card(const al_merge_job *j, const char *dir, al_error *err)
{
    size_t n = strlen(dir) + 32;
    char *p = al_malloc(n);
    if (!p) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    snprintf(p, n, "%s/README.md", dir);
    FILE *f = fopen(p, "wx");
    if (!f) { al_status s = al_errorf(err, AL_ERR_IO, "%s: cannot create", p); al_free(p); return s; }
    fprintf(f, "---\nbase_model:\n");
    for (size_t i = 0; i < j->n_models; i++) fprintf(f, "- %s\n", j->models[i].ref);
    fprintf(f, "tags:\n- merge\n- alloy\nlibrary_name: transformers\n---\n\n");
    fprintf(f, "# Merged model\n\nThis model was merged with [alloy](https://example.invalid/alloy) "
               "using the `%s` method", j->d->method->name);
    if (j->d->base_model) fprintf(f, " with `%s` as the base", j->d->base_model->text);
    fprintf(f, ".\n\n## Models merged\n\n");
    for (size_t i = 0; i < j->n_models; i++) fprintf(f, "- `%s`\n", j->models[i].ref);
    if (j->o.recipe_text) {
        fprintf(f, "\n## Recipe\n\nThe YAML recipe that produced this model:\n\n```yaml\n%.*s%s```\n",
                (int)j->o.recipe_len, j->o.recipe_text,
                j->o.recipe_len && j->o.recipe_text[j->o.recipe_len - 1] == '\n' ? "" : "\n");
    }
    bool ok = !ferror(f);
    ok = (fclose(f) == 0) && ok;
    al_status s = ok ? AL_OK : al_errorf(err, AL_ERR_IO, "%s: write failed", p);
    al_free(p);
    if (s != AL_OK || !j->o.recipe_text) return s;
    n = strlen(dir) + 32;
    if (!(p = al_malloc(n))) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    snprintf(p, n, "%s/alloy_recipe.yaml", dir);
    f = fopen(p, "wx");
    ok = f && fwrite(j->o.recipe_text, 1, j->o.recipe_len, f) == j->o.recipe_len;
    ok = (f && fclose(f) == 0) && ok;
    s = ok ? AL_OK : al_errorf(err, AL_ERR_IO, "%s: write failed", p);
    al_free(p);
    return s;
}

/* TIES with trim_scope: model (Yadav et al. 2023, as in the paper's code): each task
 * vector keeps its k = floor(density * N) largest |delta| over the whole model (N =
 * every merged element), not per tensor. The k-th largest is found exactly with the
 * same two-pass radix select as per-tensor TIES, streamed over every tensor twice
 * (top 16 bits of |delta|, then the low 16 bits inside the chosen bin); the per-task
 * thresholds are then given to the kernel, which keeps |delta| >= threshold. */
typedef struct { const float *b, *x; } trim_ctx;

static void trim_keys(void *vc, uint32_t *keys, int64_t i0, int64_t i1)
{
    const trim_ctx *c = vc;
    for (int64_t i = i0; i < i1; i++) keys[i - i0] = al_abs_key(c->x[i] - c->b[i]);
}

static al_status trim_prepass(al_merge_job *j, al_error *err)
{
    al_status s = AL_OK;
    const jb_tensor *t0 = NULL;
    int64_t total = 0;
    for (size_t i = 0; i < j->n; i++) {
        const jb_tensor *jt = &j->t[i];
        if (jt->pub.copy) continue;
        if (!t0) t0 = jt;
        if (!jt->has_base || jt->n_models != t0->n_models || j->n_slices != 1)
            return al_errorf(err, AL_ERR_RECIPE, "%s: trim_scope: model needs a `models:` recipe with a base_model",
                             j->r->filename);
        for (int m = 0; m < jt->n_models; m++) {
            double d = jt->set_density ? jt->density[m] : 1.0, d0 = t0->set_density ? t0->density[m] : 1.0;
            if (d != d0)
                return al_errorf(err, AL_ERR_RECIPE, "%s: trim_scope: model needs one density per model, but "
                                 "'%s' has density %g for '%s' and %g for '%s'", j->r->filename,
                                 jt->inputs[m].model, d0, t0->name, d, jt->name);
        }
        int64_t ne;
        al_shape_numel(jt->pub.ndim, jt->pub.shape, &ne);
        total += ne;
    }
    if (!t0 || total == 0) return AL_OK;
    int nm = t0->n_models;
    al_rsel sel[AL_MERGE_MAX_MODELS];
    int64_t k[AL_MERGE_MAX_MODELS];
    memset(sel, 0, sizeof sel);
    float *bb = al_malloc_aligned((size_t)CHUNK_ELEMS * 4), *xb = al_malloc_aligned((size_t)CHUNK_ELEMS * 4);
    if (!bb || !xb) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
    for (int m = 0; m < nm && s == AL_OK; m++) {
        double d = t0->set_density ? t0->density[m] : 1.0;
        k[m] = (int64_t)floor(d * (double)total);
        int64_t kk = k[m] < 1 ? 1 : k[m] > total ? total : k[m];
        s = al_rsel_init(&sel[m], 1, &kk, err);
    }
    if ((s = al_comm_agree(j->o.comm, s, err)) != AL_OK) goto done;
    /* Each rank counts its own tensors; the histograms (integer counts) are summed
     * over ranks before each pass's selection, so every rank gets the exact
     * one-process threshold. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < j->n && s == AL_OK; i++) {
            const jb_tensor *jt = &j->t[i];
            if (jt->pub.copy || !jt->mine) continue;
            int64_t rows = jt->pub.ndim ? jt->pub.shape[0] : 1, rrow = al_shape_row_numel(jt->pub.ndim, jt->pub.shape);
            int64_t crows = rrow > CHUNK_ELEMS ? 1 : CHUNK_ELEMS / rrow;
            al_ckpt *bck = j->models[jt->in_model[nm]].ck;
            for (int64_t r = 0; r < rows && rrow > 0 && s == AL_OK; r += crows) {
                int64_t nr = rows - r < crows ? rows - r : crows;
                if ((s = al_ckpt_read(bck, (size_t)jt->in_tensor[nm], r, nr, bb, AL_F32, err)) != AL_OK) break;
                for (int m = 0; m < nm && s == AL_OK; m++) {
                    if ((s = al_ckpt_read(j->models[jt->in_model[m]].ck, (size_t)jt->in_tensor[m], r, nr, xb,
                                          AL_F32, err)) != AL_OK) break;
                    trim_ctx c = {bb, xb};
                    if (pass == 0) al_rsel_count_hi(&sel[m], nr * rrow, trim_keys, &c);
                    else al_rsel_count_lo(&sel[m], nr * rrow, trim_keys, &c);
                }
            }
        }
        if ((s = al_comm_agree(j->o.comm, s, err)) != AL_OK) goto done;
        for (int m = 0; m < nm; m++) {
            if (pass == 0) {
                uint64_t cnt = (uint64_t)sel[m].n;
                if ((s = al_comm_sum_u64(j->o.comm, sel[m].hi, AL_HIST_BINS, err)) != AL_OK ||
                    (s = al_comm_sum_u64(j->o.comm, &cnt, 1, err)) != AL_OK) goto done;
                sel[m].n = (int64_t)cnt;
                al_rsel_finish_hi(&sel[m]);
            } else {
                if ((s = al_comm_sum_u64(j->o.comm, sel[m].lo, AL_HIST_BINS, err)) != AL_OK) goto done;
                al_rsel_finish_lo(&sel[m]);
            }
        }
    }
    for (int m = 0; m < nm; m++)
        j->trim_thr[m] = k[m] <= 0 ? INFINITY : k[m] >= total ? 0.0f : al_bits_f32(sel[m].thr[0]);
    for (size_t i = 0; i < j->n; i++) j->t[i].mp.ties_threshold = j->trim_thr;
done:
    for (int m = 0; m < nm; m++) al_rsel_free(&sel[m]);
    al_free(bb);
    al_free(xb);
    return s;
}

/* LiNeS alpha: auto (Wang et al., ICLR 2025, Eq. 2): alpha = ||sum_t tau_t||_1 /
 * (T ||tau_merged||_1), tau_merged being the method's merged task vector before any
 * scaling (lambda 1). One streamed pass runs the method over the whole model without
 * writing; then every tensor's lambda gets its layer's factor. */
static al_status lines_auto_alpha(al_merge_job *j, al_error *err)
{
    al_status s = AL_OK;
    int T = 0;
    size_t cap = CHUNK_ELEMS;
    for (size_t i = 0; i < j->n; i++) {
        const al_job_tensor *t = &j->t[i].pub;
        int64_t rr = al_shape_row_numel(t->ndim, t->shape), ne;
        if ((size_t)rr > cap) cap = (size_t)rr;
        if (t->ndim <= 1 && al_shape_numel(t->ndim, t->shape, &ne) && (size_t)ne > cap) cap = (size_t)ne;
    }
    /* Two sums per tensor, each rank filling its own tensors' entries: summing the
     * vectors over ranks adds only zeros to each entry, so the totals below, taken in
     * tensor order, are the one-process ones bit for bit. */
    float *obuf = al_malloc_aligned(cap * 4);
    double *per = al_calloc(2 * (j->n ? j->n : 1), sizeof *per), acc[2] = {0.0, 0.0};
    if (!obuf || !per) s = al_errorf(err, AL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < j->n && s == AL_OK; i++) {
        jb_tensor *jt = &j->t[i];
        if (jt->pub.copy) continue;
        if (jt->n_models > T) T = jt->n_models;
        if (!jt->mine) continue;
        double lambda = jt->mp.lambda;
        jt->mp.lambda = 1.0;
        s = run_tensor(j, jt, NULL, obuf, &per[2 * i], err);
        jt->mp.lambda = lambda;
    }
    al_free(obuf);
    if ((s = al_comm_agree(j->o.comm, s, err)) == AL_OK) s = al_comm_sum_f64(j->o.comm, per, 2 * j->n, err);
    for (size_t i = 0; i < j->n && s == AL_OK; i++) {
        acc[0] += per[2 * i];
        acc[1] += per[2 * i + 1];
    }
    al_free(per);
    if (s != AL_OK) return s;
    double alpha = acc[1] > 0.0 && T > 0 ? acc[0] / ((double)T * acc[1]) : 1.0;
    for (size_t i = 0; i < j->n; i++)
        j->t[i].mp.lambda *= lines_scale(alpha, j->d->lines_beta, j->t[i].layer, j->n_blocks);
    j->lines_alpha = alpha;
    if (j->o.lines_alpha_out) *j->o.lines_alpha_out = alpha;
    return AL_OK;
}

double al_merge_job_lines_alpha(const al_merge_job *j) { return j->lines_alpha; }

static al_status write_side_files(const al_merge_job *j, const char *tmp, al_error *err);

al_status al_merge_job_run(al_merge_job *j, const char *out_path, al_error *err)
{
    al_status s;
    al_writer *w = NULL;
    float *obuf = NULL;
    aw_t aw;
    bool aw_on = false;
    const char **inputs = al_calloc(j->n_models + 1, sizeof *inputs);
    if (!inputs) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < j->n_models; i++) inputs[i] = j->models[i].path;
    al_writer_opts wo = {.format = j->o.out_format, .dir = true,
                         .shard_size = j->o.shard_size ? j->o.shard_size : DEFAULT_SHARD_SIZE,
                         .force = j->o.force, .inputs = inputs, .comm = j->o.comm};
    if (wo.format == AL_FMT_HDF5) wo.shard_size = 0;
    /* Distributed runs: open, begin, the whole-model passes and finish are agreement
     * points every rank reaches in the same order, failed or not (core/comm.h). */
    if ((s = al_writer_open(&w, out_path, &wo, err)) != AL_OK) goto done;
    uint64_t total = 0;
    for (size_t i = 0; i < j->n && s == AL_OK; i++) {
        const al_job_tensor *t = &j->t[i].pub;
        s = al_writer_add(w, t->name, t->dtype, t->ndim, t->shape, err);
    }
    if ((s = al_comm_agree(j->o.comm, s, err)) != AL_OK || (s = al_writer_begin(w, err)) != AL_OK) goto done;
    for (size_t i = 0; i < j->n; i++) {
        j->t[i].mine = al_writer_owns(w, i);
        if (j->t[i].mine) total += tensor_bytes(&j->t[i].pub);
    }
    for (size_t i = 0; i < j->n; i++)
        if (j->t[i].trim_model) { s = trim_prepass(j, err); break; }
    if (s != AL_OK) goto done;
    if (j->d->has_lines && j->d->lines_alpha_auto && (s = lines_auto_alpha(j, err)) != AL_OK) goto done;
    /* one output chunk buffer, sized for the widest row */
    int64_t maxrow = 1;
    for (size_t i = 0; i < j->n; i++) {
        const al_job_tensor *t = &j->t[i].pub;
        int64_t rr = al_shape_row_numel(t->ndim, t->shape);
        if (rr > maxrow) maxrow = rr;
    }
    size_t cap = (size_t)(maxrow > CHUNK_ELEMS ? maxrow : CHUNK_ELEMS);
    /* an aligned method may take a whole small tensor at once */
    for (size_t i = 0; i < j->n; i++) {
        int64_t ne;
        const al_job_tensor *t = &j->t[i].pub;
        if (al_shape_numel(t->ndim, t->shape, &ne) && t->ndim <= 1 && (size_t)ne > cap) cap = (size_t)ne;
    }
    /* From here a local failure goes on to al_writer_finish, which tells the others. */
    obuf = al_malloc_aligned(cap * 4);
    if (!obuf) s = al_errorf(err, AL_ERR_NOMEM, "out of memory");
    if (s == AL_OK && (s = aw_start(&aw, w, cap * 8, err)) == AL_OK) aw_on = true;   /* F64 output at most */
    al_merge_progress pr = {0, 0, 0, total, NULL};
    for (size_t i = 0; i < j->n; i++) pr.tensors_total += j->t[i].mine;
    pf_t pf;
    pf_start(&pf, j);
    for (size_t i = 0; i < j->n && s == AL_OK; i++) {
        if (!j->t[i].mine) continue;
        if (j->o.fail_tensor && strcmp(j->o.fail_tensor, j->t[i].name) == 0) {
            s = al_errorf(err, AL_ERR_NOTFOUND, "%s: input tensor '%s' not found (injected by the test hook)",
                          j->models[j->t[i].in_model[0]].path, j->t[i].pub.inputs[0].tensor);
            break;
        }
        pf_at(&pf, i);
        if ((s = run_tensor(j, &j->t[i], &aw, obuf, NULL, err)) != AL_OK) break;
        pr.tensors_done++;
        pr.bytes_done += tensor_bytes(&j->t[i].pub);
        pr.tensor = j->t[i].name;
        if (j->o.progress) j->o.progress(j->o.progress_ud, &pr);
    }
    pf_stop(&pf);
    if (aw_on) {
        aw_on = false;
        al_status s2 = aw_stop(&aw, s == AL_OK ? err : NULL);
        if (s == AL_OK) s = s2;
    }
    if (s == AL_OK && al_comm_rank(j->o.comm) == 0) s = write_side_files(j, al_writer_tmpdir(w), err);
    s = al_writer_finish(w, s, err);
done:
    if (aw_on) aw_stop(&aw, NULL);
    al_free(obuf);
    al_writer_free(w);
    al_free(inputs);
    return s;
}

/* config.json, tokenizer files and the model card, beside the shards (rank 0). */
static al_status write_side_files(const al_merge_job *j, const char *tmp, al_error *err)
{
    al_status s;
    const char *donor = j->models[j->donor].path, *tdonor = j->models[j->tok_donor].path;
    const char *torch_dtype = j->d->has_out_dtype ? al_dtype_torch_name(j->d->out_dtype)
                            : j->d->has_dtype ? al_dtype_torch_name(j->d->dtype) : NULL;
    if (is_dir(donor) && (s = al_hf_write_config_vocab(donor, tmp, torch_dtype, j->out_layers,
                                                       j->vocab_on ? (long)j->vocab.rows : -1, err)) != AL_OK) return s;
    if (j->vocab_on) tdonor = j->models[j->vocab_source].path;
    if (is_dir(tdonor) && (s = al_hf_copy_tokenizer(tdonor, tmp, err)) != AL_OK) return s;
    if (j->vocab_on && (s = al_vocab_write_tokenizer(&j->vocab, tdonor, tmp, j->vocab_kept, err)) != AL_OK) return s;
    if (j->d->chat_template && (s = apply_chat_template(j, tmp, err)) != AL_OK) return s;
    return write_card(j, tmp, err);
}

/* ---- whole recipes ------------------------------------------------------------- */

al_status al_merge_run(const al_recipe *r, const char *out_path, const al_merge_opts *o, al_error *err)
{
    al_status s = AL_OK;
    size_t len = strlen(out_path);
    while (len > 1 && out_path[len - 1] == '/') len--;
    size_t n = len + 32;
    char *work = al_malloc(n);
    if (!work) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    snprintf(work, n, "%.*s.alloy-work", (int)len, out_path);
    al_merge_opts oo = *o;
    oo.work_dir = work;
    bool made = false;
    int work_slot = -1;
    for (size_t d = 0; d < r->n_docs && s == AL_OK; d++) {
        bool last = d + 1 == r->n_docs;
        char *dst = NULL;
        if (!last && !o->dry_run) {
            if (!made && al_comm_rank(o->comm) == 0 && mkdir(work, 0755) != 0)
                s = al_errorf(err, AL_ERR_IO, "cannot create the work directory %s: %s", work, strerror(errno));
            if ((s = al_comm_agree(o->comm, s, err)) != AL_OK) break;
            if (!made) {
                if (al_comm_rank(o->comm) == 0) work_slot = al_emergency_temp(work);   /* removed even if a signal ends us */
                else if (access(work, F_OK) != 0)    /* a rank on another filesystem */
                    s = al_errorf(err, AL_ERR_UNSUPPORTED, "%s is not visible here: the outputs of a multi-document "
                                  "recipe's earlier documents are read by every rank, so OUT must be on a "
                                  "filesystem all ranks share", work);
                made = true;
                if ((s = al_comm_agree(o->comm, s, err)) != AL_OK) break;
            }
            const char *name = r->docs[d].name ? r->docs[d].name : "unnamed";
            size_t m = strlen(work) + strlen(name) + 2;
            if (!(dst = al_malloc(m))) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); break; }
            snprintf(dst, m, "%s/%s", work, name);
        }
        al_merge_job *j = NULL;
        s = al_comm_agree(o->comm, al_merge_job_build(r, d, &oo, &j, err), err);
        if (s == AL_OK && !o->dry_run) s = al_merge_job_run(j, last ? out_path : dst, err);
        al_merge_job_free(j);
        al_free(dst);
    }
    /* intermediate outputs are not kept; every rank is past its last read of them
     * (the last document's commit is an agreement point, as is any failure) */
    if (made && al_comm_rank(o->comm) == 0) al_remove_tree(work);
    al_emergency_forget(work_slot);
    al_free(work);
    return s;
}
