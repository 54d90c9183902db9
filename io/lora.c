/* io/lora.c: PEFT LoRA adapters (see lora.h). */
#include "lora.h"

#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/alloc.h"

typedef struct {
    char *target;          /* model tensor name */
    long a, b;             /* adapter tensors (low-rank), or -1 */
    long repl;             /* adapter tensor replacing the model's, or -1 */
    int transposed;        /* W += s (B A)^T: fan_in_fan_out or an embedding */
} lora_entry;

struct al_lora {
    char *dir;
    al_ckpt *ad;           /* adapter_model.safetensors */
    lora_entry *e;
    size_t n;
    int r;
    double scale;
    int fan_in_fan_out;
};

const char *al_lora_path(const al_lora *l) { return l->dir; }
size_t al_lora_count(const al_lora *l) { return l->n; }
const char *al_lora_target(const al_lora *l, size_t i) { return l->e[i].target; }
int al_lora_replaces(const al_lora *l, size_t i) { return l->e[i].repl >= 0; }

void al_lora_close(al_lora *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) al_free(l->e[i].target);
    al_free(l->e);
    al_ckpt_close(l->ad);
    al_free(l->dir);
    al_free(l);
}

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = al_malloc(n);
    if (p) snprintf(p, n, "%s/%s", a, b);
    return p;
}

/* adapter_config.json: rank, alpha and the options that change the arithmetic. */
static al_status read_config(al_lora *l, const char *path, al_error *err)
{
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) return al_errorf(err, AL_ERR_FORMAT, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    al_status s = AL_OK;
    json_t *v;
    const char *pt = json_string_value(json_object_get(root, "peft_type"));
    if (!json_is_object(root)) { s = al_errorf(err, AL_ERR_FORMAT, "%s: not a JSON object", path); goto done; }
    if (pt && strcmp(pt, "LORA") != 0) {
        s = al_errorf(err, AL_ERR_UNSUPPORTED, "%s: peft_type '%s' is not supported (LORA only)", path, pt);
        goto done;
    }
    v = json_object_get(root, "r");
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65536) {
        s = al_errorf(err, AL_ERR_FORMAT, "%s: 'r' must be a positive integer", path);
        goto done;
    }
    l->r = (int)json_integer_value(v);
    v = json_object_get(root, "lora_alpha");
    if (!json_is_number(v)) {
        s = al_errorf(err, AL_ERR_FORMAT, "%s: 'lora_alpha' must be a number", path);
        goto done;
    }
    double alpha = json_number_value(v);
    l->scale = json_is_true(json_object_get(root, "use_rslora")) ? alpha / sqrt((double)l->r) : alpha / l->r;
    l->fan_in_fan_out = json_is_true(json_object_get(root, "fan_in_fan_out"));
    if (json_is_true(json_object_get(root, "use_dora"))) {
        s = al_errorf(err, AL_ERR_UNSUPPORTED, "%s: DoRA adapters (use_dora) are not supported", path);
        goto done;
    }
    const char *bias = json_string_value(json_object_get(root, "bias"));
    if (bias && strcmp(bias, "none") != 0) {
        s = al_errorf(err, AL_ERR_UNSUPPORTED, "%s: LoRA biases (bias: '%s') are not supported", path, bias);
        goto done;
    }
    static const char *const patterns[] = { "rank_pattern", "alpha_pattern" };
    for (int k = 0; k < 2; k++) {
        v = json_object_get(root, patterns[k]);
        if (v && !json_is_null(v) && !(json_is_object(v) && json_object_size(v) == 0)) {
            s = al_errorf(err, AL_ERR_UNSUPPORTED, "%s: per-module '%s' is not supported", path, patterns[k]);
            goto done;
        }
    }
done:
    json_decref(root);
    return s;
}

/* "base_model.model.X.lora_A.weight" (or ".lora_A.default.weight", or
 * "...lora_embedding_A") -> target "X.weight", which factor, embedding or not. */
static bool parse_name(const char *name, char **target, int *which, int *embed, bool *oom)
{
    static const char *const pre = "base_model.model.";
    *oom = false;
    const char *p = strncmp(name, pre, strlen(pre)) == 0 ? name + strlen(pre) : name;
    static const char *const marks[] = { ".lora_A", ".lora_B", ".lora_embedding_A", ".lora_embedding_B" };
    for (int m = 0; m < 4; m++) {
        const char *at = strstr(p, marks[m]);
        if (!at) continue;
        const char *rest = at + strlen(marks[m]);
        /* what may follow: nothing, ".weight", ".default", ".default.weight" */
        if (*rest && strcmp(rest, ".weight") && strcmp(rest, ".default") && strcmp(rest, ".default.weight")) continue;
        size_t n = (size_t)(at - p);
        *target = al_malloc(n + sizeof ".weight");
        if (!*target) { *oom = true; return false; }
        memcpy(*target, p, n);
        memcpy(*target + n, ".weight", sizeof ".weight");
        *which = m % 2;
        *embed = m >= 2;
        return true;
    }
    return false;
}

static al_status add_entry(al_lora *l, const char *target, char *owned, size_t *idx, al_error *err)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->e[i].target, target) == 0) { al_free(owned); *idx = i; return AL_OK; }
    lora_entry *e = al_realloc(l->e, (l->n + 1) * sizeof *e);
    if (!e) { al_free(owned); return al_errorf(err, AL_ERR_NOMEM, "out of memory"); }
    l->e = e;
    char *t = owned ? owned : al_strdup(target);
    if (!t) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    l->e[l->n] = (lora_entry){ t, -1, -1, -1, 0 };
    *idx = l->n++;
    return AL_OK;
}

al_status al_lora_open(al_lora **out, const char *dir, al_error *err)
{
    *out = NULL;
    al_lora *l = al_calloc(1, sizeof *l);
    char *cfg = NULL, *st = NULL, *bin = NULL;
    al_status s = AL_OK;
    if (!l || !(l->dir = al_strdup(dir)) || !(cfg = join(dir, "adapter_config.json")) ||
        !(st = join(dir, "adapter_model.safetensors")) || !(bin = join(dir, "adapter_model.bin"))) {
        s = al_errorf(err, AL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    FILE *f = fopen(st, "rb");
    if (!f) {
        FILE *g = fopen(bin, "rb");
        if (g) fclose(g);
        s = g ? al_errorf(err, AL_ERR_UNSUPPORTED, "%s: adapters saved as pickles (adapter_model.bin) are not "
                          "read (loading one can run code); save it with safetensors", dir)
              : al_errorf(err, AL_ERR_NOTFOUND, "%s: not a LoRA adapter (no adapter_model.safetensors)", dir);
        goto fail;
    }
    fclose(f);
    if ((s = read_config(l, cfg, err)) != AL_OK) goto fail;
    if ((s = al_ckpt_open(&l->ad, st, err)) != AL_OK) goto fail;
    for (size_t i = 0; i < al_ckpt_count(l->ad); i++) {
        const char *name = al_ckpt_info(l->ad, i)->name;
        char *target = NULL;
        int which = 0, embed = 0;
        bool oom;
        size_t k;
        if (parse_name(name, &target, &which, &embed, &oom)) {
            if ((s = add_entry(l, target, target, &k, err)) != AL_OK) goto fail;
            if (which == 0) l->e[k].a = (long)i; else l->e[k].b = (long)i;
            l->e[k].transposed = embed || l->fan_in_fan_out;
        } else if (oom) {
            s = al_errorf(err, AL_ERR_NOMEM, "out of memory");
            goto fail;
        } else {
            /* modules_to_save: a whole tensor, named as in the model */
            const char *t = strncmp(name, "base_model.model.", 17) == 0 ? name + 17 : name;
            if ((s = add_entry(l, t, NULL, &k, err)) != AL_OK) goto fail;
            l->e[k].repl = (long)i;
        }
    }
    for (size_t k = 0; k < l->n; k++) {
        const lora_entry *e = &l->e[k];
        if (e->repl >= 0 && (e->a >= 0 || e->b >= 0)) {
            s = al_errorf(err, AL_ERR_FORMAT, "%s: '%s' is both replaced and low-rank adapted", st, e->target);
            goto fail;
        }
        if (e->repl < 0 && (e->a < 0 || e->b < 0)) {
            s = al_errorf(err, AL_ERR_FORMAT, "%s: '%s' has lora_%s but no lora_%s", st, e->target,
                          e->a >= 0 ? "A" : "B", e->a >= 0 ? "B" : "A");
            goto fail;
        }
        if (e->repl >= 0) continue;
        const al_tensor_info *A = al_ckpt_info(l->ad, (size_t)e->a), *B = al_ckpt_info(l->ad, (size_t)e->b);
        if (A->ndim != 2 || B->ndim != 2 || A->shape[0] != l->r || B->shape[1] != l->r ||
            !al_dtype_is_float(A->dtype) || !al_dtype_is_float(B->dtype)) {
            s = al_errorf(err, AL_ERR_SHAPE, "%s: '%s': lora_A must be %d x in and lora_B out x %d (float); "
                          "got %lld x %lld and %lld x %lld", st, e->target, l->r, l->r,
                          (long long)A->shape[0], (long long)(A->ndim > 1 ? A->shape[1] : 0),
                          (long long)B->shape[0], (long long)(B->ndim > 1 ? B->shape[1] : 0));
            goto fail;
        }
    }
    if (!l->n) { s = al_errorf(err, AL_ERR_FORMAT, "%s: the adapter holds no tensors", st); goto fail; }
    al_free(cfg);
    al_free(st);
    al_free(bin);
    *out = l;
    return AL_OK;
fail:
    al_free(cfg);
    al_free(st);
    al_free(bin);
    al_lora_close(l);
    return s;
}

al_status al_lora_check(const al_lora *l, size_t i, const al_tensor_info *w, al_error *err)
{
    const lora_entry *e = &l->e[i];
    if (e->repl >= 0) {
        const al_tensor_info *R = al_ckpt_info(l->ad, (size_t)e->repl);
        bool same = R->ndim == w->ndim && al_dtype_is_float(R->dtype);
        for (int d = 0; same && d < w->ndim; d++) same = R->shape[d] == w->shape[d];
        if (!same) return al_errorf(err, AL_ERR_SHAPE, "%s: '%s' does not have the model's shape", l->dir, e->target);
        return AL_OK;
    }
    const al_tensor_info *A = al_ckpt_info(l->ad, (size_t)e->a), *B = al_ckpt_info(l->ad, (size_t)e->b);
    /* B A is out x in; transposed layouts store it as in x out */
    int64_t rows = e->transposed ? A->shape[1] : B->shape[0], cols = e->transposed ? B->shape[0] : A->shape[1];
    if (w->ndim != 2 || w->shape[0] != rows || w->shape[1] != cols)
        return al_errorf(err, AL_ERR_SHAPE, "%s: '%s': the adapter's product is %lld x %lld, the model's tensor "
                         "%lld x %lld", l->dir, e->target, (long long)rows, (long long)cols,
                         (long long)w->shape[0], (long long)(w->ndim > 1 ? w->shape[1] : 0));
    return AL_OK;
}

al_status al_lora_rows(const al_lora *l, size_t i, int64_t r0, int64_t nr, int64_t row_n, float *dst,
                       al_error *err)
{
    const lora_entry *e = &l->e[i];
    if (e->repl >= 0) return al_ckpt_read(l->ad, (size_t)e->repl, r0, nr, dst, AL_F32, err);
    const al_tensor_info *A = al_ckpt_info(l->ad, (size_t)e->a), *B = al_ckpt_info(l->ad, (size_t)e->b);
    const int r = l->r;
    const int64_t in = A->shape[1], out = B->shape[0];
    /* the factors are small (r rows or columns): read both whole, in F32 */
    float *a = al_malloc((size_t)(r * in) * sizeof *a), *b = al_malloc((size_t)(out * r) * sizeof *b);
    al_status s = AL_OK;
    if (!a || !b) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory for the LoRA factors of '%s'", e->target); goto done; }
    if ((s = al_ckpt_read(l->ad, (size_t)e->a, 0, r, a, AL_F32, err)) != AL_OK ||
        (s = al_ckpt_read(l->ad, (size_t)e->b, 0, out, b, AL_F32, err)) != AL_OK) goto done;
    if (!e->transposed) {
        /* dst[nr x in] += s B[r0:r0+nr, :] A */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)in, r, (float)l->scale,
                    b + r0 * r, r, a, (int)in, 1.0f, dst, (int)row_n);
    } else {
        /* dst[nr x out] += s (B A)^T rows r0.. = s A[:, r0:r0+nr]^T B^T */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasTrans, (int)nr, (int)out, r, (float)l->scale,
                    a + r0, (int)in, b, r, 1.0f, dst, (int)row_n);
    }
done:
    al_free(a);
    al_free(b);
    return s;
}
