/* cmd/cmd_edit.c: `alloy edit FACTS.yaml -o OUT`: ROME / r-ROME / MEMIT fact edits, and
 * `alloy edit --undo EDITED -o OUT`. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/alloc.h"
#include "../edit/eval.h"
#include "../edit/facts.h"
#include "../edit/factors.h"
#include "../edit/generate.h"
#include "../edit/memit.h"
#include "../edit/model.h"
#include "../edit/rome.h"
#include "../edit/stats.h"
#include "../io/checkpoint.h"
#include "../io/hfdir.h"
#include "../io/tokenizer.h"
#include "cli.h"

static const char k_help[] =
    "usage: alloy edit FACTS.yaml [-o OUT] [--model DIR] [--method rome|r-rome|memit]\n"
    "                  [--layer L[,L...]] [--stats FILE|none] [--eval] [--json] [--force]\n"
    "                  [--no-factors]\n"
    "       alloy edit --undo EDITED -o OUT [--force]\n"
    "\n"
    "Rewrite facts in a model and write a new checkpoint directory in which only the\n"
    "edited MLP weights differ from the input, plus edits.json (per edit: norms, loss,\n"
    "steps, and the metrics before and after with --eval) and edits.h5 (the low-rank\n"
    "factors of every update, for inspection and --undo).\n"
    "  rome     rank-one edits one after another (Meng et al., NeurIPS 2022)\n"
    "  r-rome   the same with consistent keys (Gupta et al. 2024)\n"
    "  memit    all edits as one batch spread over several layers (Meng et al., ICLR 2023)\n"
    "\n"
    "FACTS is a facts file (see README): `edits:` with prompt ('{}' for the subject, or a\n"
    "full sentence containing it), subject, target_new, and optionally target_true,\n"
    "paraphrase_prompts, neighborhood_prompts; beside it the settings model, method,\n"
    "layer(s), stats, context_templates, seed, hparams, output. Options override them.\n"
    "  --stats F       second-moment statistics from `alloy stats` (.h5) or the reference\n"
    "                  code's .npz; for MEMIT a '{}' in F stands for the layer; `none`\n"
    "                  uses the identity (mom2_adjustment: false)\n"
    "  --eval          efficacy, paraphrase and neighbourhood scores before and after\n"
    "  --json          the report on stdout as JSON\n"
    "  --no-factors    do not write edits.h5\n"
    "  --undo EDITED   subtract the updates recorded in EDITED/edits.h5, newest first\n";

/* Context templates: "{}" plus, for each (length, count) pair, texts sampled from the
 * model (top-k 5) after five short prefixes in turn, each followed by ". {}" (rome.md
 * §1.2). ROME uses {(5, 10), (10, 10)}: 10 templates of 5 tokens and 10 of 10; MEMIT
 * {(10, 5)}: one of 10 tokens per prefix. */
static al_status make_templates(const al_model *m, const al_tokenizer *tok, uint64_t seed, bool memit, char ***out,
                                size_t *n_out, al_error *err)
{
    static const char *const starts[] = {"The", "Therefore", "Because", "I", "You"};
    static const int rome_lens[2][2] = {{5, 10}, {10, 10}}, memit_lens[1][2] = {{10, 5}};
    const int (*lens)[2] = memit ? memit_lens : rome_lens;
    int n_groups = memit ? 1 : 2;
    al_model_ws *ws = NULL;
    al_status s = AL_OK;
    size_t n = 1 + (memit ? 5 : 20);
    char **t = al_calloc(n, sizeof *t);
    if (!t || !(t[0] = al_strdup("{}"))) { al_free(t); return al_errorf(err, AL_ERR_NOMEM, "out of memory"); }
    size_t k = 1;
    if ((s = al_model_ws_new(&ws, m, 1, 64, err)) != AL_OK) goto done;
    for (int g = 0; g < n_groups && s == AL_OK; g++)
        for (int i = 0; i < lens[g][1] && s == AL_OK; i++) {
            const char *start = starts[i % 5];
            int32_t *ids = NULL;
            size_t len = 0;
            if ((s = al_tokenizer_encode(tok, start, strlen(start), true, &ids, &len, err)) != AL_OK) break;
            int32_t *room = al_realloc(ids, (len + (size_t)lens[g][0]) * sizeof *room);
            if (!room) { al_free(ids); s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); break; }
            ids = room;
            s = al_generate(m, ws, ids, &len, lens[g][0] - 1, 5, 1.0, seed, (uint64_t)(g * 100 + i), -1, err);
            char *text = NULL;
            size_t tl = 0;
            if (s == AL_OK) s = al_tokenizer_decode(tok, ids, len, &text, &tl, err);
            al_free(ids);
            if (s != AL_OK) break;
            /* braces would read as a placeholder: the reference replaces them by spaces */
            for (size_t c = 0; c < tl; c++) if (text[c] == '{' || text[c] == '}') text[c] = ' ';
            char *tpl = al_malloc(tl + 8);
            if (!tpl) { al_free(text); s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); break; }
            snprintf(tpl, tl + 8, "%.*s. {}", (int)tl, text);
            al_free(text);
            t[k++] = tpl;
        }
done:
    al_model_ws_free(ws);
    if (s != AL_OK) {
        for (size_t i = 0; i < k; i++) al_free(t[i]);
        al_free(t);
        return s;
    }
    *out = t;
    *n_out = k;
    return AL_OK;
}

static json_t *metric_json(const al_cf_metric *m)
{
    json_t *o = json_object();
    json_object_set_new(o, "n", json_integer(m->n));
    json_object_set_new(o, "new_beats_true", json_real(m->new_beats_true));
    json_object_set_new(o, "top1_new", json_real(m->top1_new));
    json_object_set_new(o, "top1_true", json_real(m->top1_true));
    json_object_set_new(o, "p_new", json_real(m->p_new));
    json_object_set_new(o, "p_true", json_real(m->p_true));
    return o;
}

static json_t *metrics_json(const al_cf_metrics *m)
{
    json_t *o = json_object();
    json_object_set_new(o, "rewrite", metric_json(&m->rewrite));
    if (m->paraphrase.n) json_object_set_new(o, "paraphrase", metric_json(&m->paraphrase));
    if (m->neighborhood.n) json_object_set_new(o, "neighborhood", metric_json(&m->neighborhood));
    return o;
}

static double norm(const float *v, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)v[i] * v[i];
    return sqrt(s);
}

/* Set a hyperparameter by name; false when unknown. */
static bool set_hparam(al_rome_params *p, double *lambda, const char *name, double v)
{
    if (!strcmp(name, "v_num_grad_steps")) p->v_num_grad_steps = (int)v;
    else if (!strcmp(name, "v_lr")) p->v_lr = v;
    else if (!strcmp(name, "v_weight_decay")) p->v_weight_decay = v;
    else if (!strcmp(name, "clamp_norm_factor")) p->clamp_norm_factor = v;
    else if (!strcmp(name, "kl_factor")) p->kl_factor = v;
    else if (!strcmp(name, "mom2_adjustment")) p->mom2_adjustment = v != 0;
    else if (!strcmp(name, "early_stop_loss")) p->early_stop_loss = v;
    else if (!strcmp(name, "v_loss_layer")) p->v_loss_layer = (int)v;
    else if (lambda && !strcmp(name, "mom2_update_weight")) *lambda = v;
    else return false;
    return true;
}

/* The statistics file for `layer`: the i-th of a list, or the one name with "{}"
 * replaced by the layer. */
static bool stats_file(char *buf, size_t cap, char *const *files, size_t n_files, size_t i, int layer)
{
    const char *f = files[n_files > 1 ? i : 0], *b = strstr(f, "{}");
    if (!b) return snprintf(buf, cap, "%s", f) < (int)cap;
    return snprintf(buf, cap, "%.*s%d%s", (int)(b - f), f, layer, b + 2) < (int)cap;
}

/* C = E[k k^T] of `layer` from an alloy .h5 or a reference .npz, checked against the
 * model; *C_out [M, M] float64 (al_free). */
static al_status load_cov(const char *path, const al_model *m, int layer, double **C_out, al_error *err)
{
    al_stats *st = NULL;
    *C_out = NULL;
    size_t sl = strlen(path);
    al_status s = sl > 4 && !strcmp(path + sl - 4, ".npz") ? al_stats_import_npz(path, &st, err) : al_stats_load(path, &st, err);
    if (s == AL_OK) s = al_stats_check(st, m, layer, path, err);
    if (s == AL_OK && st->count < st->m)
        /* fewer keys than features: C is singular and C^-1 undefined */
        s = al_errorf(err, AL_ERR_RECIPE, "%s: statistics from %lld tokens for %d features cannot be inverted; compute "
                      "them over more text (at least %d tokens; the ROME paper used about 44 million)",
                      path, (long long)st->count, st->m, st->m);
    if (s == AL_OK && !(*C_out = al_malloc((size_t)st->m * (size_t)st->m * sizeof **C_out)))
        s = al_errorf(err, AL_ERR_NOMEM, "out of memory");
    if (s == AL_OK) s = al_stats_mean(st, *C_out, err);
    if (s != AL_OK) { al_free(*C_out); *C_out = NULL; }
    al_stats_free(st);
    return s;
}

/* Index of `name` in list[0..n), or n. */
static size_t find_tensor(const al_rome_tensor *list, size_t n, const char *name)
{
    size_t k = 0;
    while (k < n && strcmp(list[k].name, name)) k++;
    return k;
}

/* Remember an edited tensor (the latest data pointer per name). */
static void note_tensor(al_rome_tensor *list, size_t *n, const al_rome_tensor *t)
{
    size_t k = find_tensor(list, *n, t->name);
    list[k] = *t;
    if (k == *n) (*n)++;
}

/* Write OUT: every tensor of the model as it was, the edited ones rounded once to
 * their dtype, the HF side files, edits.json and (unless NULL) the factors. */
static al_status write_output(const char *model_path, const char *label, const char *out, bool force,
                              const al_rome_tensor *edited, size_t n_edited, json_t *report, const al_update *ups,
                              size_t n_ups, const char *const *carry, al_error *err)
{
    al_ckpt *in = NULL;
    al_writer *w = NULL;
    al_status s;
    const char *inputs[] = {model_path, NULL};
    const char **names = al_calloc(n_edited + 1, sizeof *names);
    const float **datas = al_calloc(n_edited + 1, sizeof *datas);
    if (!names || !datas) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
    for (size_t k = 0; k < n_edited; k++) { names[k] = edited[k].name; datas[k] = edited[k].data; }
    al_writer_opts wo = {.format = AL_FMT_SAFETENSORS, .dir = true, .shard_size = 5000000000ull, .force = force, .inputs = inputs};
    if ((s = al_ckpt_open(&in, model_path, err)) != AL_OK || (s = al_writer_open(&w, out, &wo, err)) != AL_OK ||
        (s = al_ckpt_copy_with(in, w, names, datas, n_edited, err)) != AL_OK ||
        (s = al_hf_copy_files(model_path, al_writer_tmpdir(w), NULL, -1, err)) != AL_OK)
        goto done;
    char p[4200];
    if (report) {
        snprintf(p, sizeof p, "%s/edits.json", al_writer_tmpdir(w));
        if (json_dump_file(report, p, JSON_INDENT(2)) != 0) { s = al_errorf(err, AL_ERR_IO, "%s: cannot write", p); goto done; }
    }
    if (ups) {
        snprintf(p, sizeof p, "%s/" AL_FACTORS_FILE, al_writer_tmpdir(w));
        if ((s = al_factors_save(p, label ? label : model_path, ups, n_ups, err)) != AL_OK) goto done;
    }
    for (size_t i = 0; carry && carry[i]; i++) {
        char src[4200];
        snprintf(src, sizeof src, "%s/%s", model_path, carry[i]);
        snprintf(p, sizeof p, "%s/%s", al_writer_tmpdir(w), carry[i]);
        if (access(src, F_OK) == 0 && (s = al_copy_file(src, p, err)) != AL_OK) goto done;
    }
    s = al_writer_commit(w, err);
done:
    al_free(names);
    al_free(datas);
    al_writer_free(w);
    al_ckpt_close(in);
    return s;
}

/* `alloy edit --undo EDITED -o OUT`: W -= dW for every recorded update, newest first. */
static int run_undo(const char *edited, const char *out, bool force)
{
    al_error err = {0};
    al_update *ups = NULL;
    size_t n = 0, n_t = 0;
    al_ckpt *c = NULL;
    al_rome_tensor *ts = NULL;
    float **bufs = NULL;
    int rc = 0;
    char fp[4200];
    snprintf(fp, sizeof fp, "%s/" AL_FACTORS_FILE, edited);
    if (al_factors_load(fp, &ups, &n, &err) != AL_OK || al_ckpt_open(&c, edited, &err) != AL_OK) goto fail;
    ts = al_calloc(n + 1, sizeof *ts);
    bufs = al_calloc(n + 1, sizeof *bufs);
    if (!ts || !bufs) { al_errorf(&err, AL_ERR_NOMEM, "out of memory"); goto fail; }
    for (size_t k = n; k-- > 0;) {
        const al_update *u = &ups[k];
        size_t t = find_tensor(ts, n_t, u->tensor);
        if (t == n_t) {    /* first time: read the tensor as F32 */
            long i = al_ckpt_find(c, u->tensor);
            const al_tensor_info *ti = i < 0 ? NULL : al_ckpt_info(c, (size_t)i);
            if (!ti) { al_errorf(&err, AL_ERR_NOTFOUND, "%s: update %zu names tensor '%s', which %s does not hold", fp, k, u->tensor, edited); goto fail; }
            if (ti->ndim != 2 || ti->shape[0] != u->rows || ti->shape[1] != u->cols) {
                al_errorf(&err, AL_ERR_SHAPE, "%s: update %zu is [%lld, %lld] but tensor '%s' has another shape", fp, k,
                          (long long)u->rows, (long long)u->cols, u->tensor);
                goto fail;
            }
            if (!(bufs[t] = al_malloc((size_t)u->rows * (size_t)u->cols * sizeof(float)))) { al_errorf(&err, AL_ERR_NOMEM, "out of memory"); goto fail; }
            if (al_ckpt_read(c, (size_t)i, 0, u->rows, bufs[t], AL_F32, &err) != AL_OK) goto fail;
            snprintf(ts[t].name, sizeof ts[t].name, "%s", u->tensor);
            ts[t].data = bufs[t];
            n_t++;
        }
        al_update_apply(bufs[t], u, -1);
    }
    if (write_output(edited, NULL, out, force, ts, n_t, NULL, NULL, 0, NULL, &err) != AL_OK) goto fail;
    fprintf(stderr, "edit: undid %zu update(s) in %zu tensor(s); wrote %s\n", n, n_t, out);
    goto done;
fail:
    rc = cli_report(&err);
done:
    for (size_t t = 0; bufs && t < n_t; t++) al_free(bufs[t]);
    al_free(bufs);
    al_free(ts);
    al_ckpt_close(c);
    al_factors_free(ups, n);
    return rc;
}

al_status cmd_edit_precheck(const al_facts *facts, const cli_edit_opts *o, al_error *err)
{
    const char *fp = facts->filename;
    const al_edit_settings *es = &facts->settings;
    const char *method = o->method ? o->method : es->method ? es->method : "rome";
    bool memit = !strcmp(method, "memit");
    if (strcmp(method, "rome") && strcmp(method, "r-rome") && !memit)
        return al_errorf(err, AL_ERR_UNSUPPORTED, "%s: unknown method '%s' (rome, r-rome, memit)", fp, method);
    /* every request must name its subject: the edit acts on the key at its last token */
    for (size_t i = 0; i < facts->n; i++)
        if (!facts->items[i].subject)
            return al_errorf(err, AL_ERR_RECIPE, "%s:%d:%d: an edit needs a subject", fp, facts->items[i].line,
                             facts->items[i].col);
    const int *layers = o->n_layers ? o->layers : es->layers;
    size_t n_layers = o->n_layers ? o->n_layers : es->n_layers;
    if (n_layers > 1 && !memit)
        return al_errorf(err, AL_ERR_UNSUPPORTED, "%s: several layers are MEMIT's (method: memit); %s edits one layer", fp,
                         method);
    if (n_layers > AL_MEMIT_MAX_LAYERS)
        return al_errorf(err, AL_ERR_RECIPE, "%s: %zu layers (at most %d)", fp, n_layers, AL_MEMIT_MAX_LAYERS);
    for (size_t i = 1; i < n_layers; i++)
        if (layers[i] <= layers[i - 1])
            return al_errorf(err, AL_ERR_RECIPE, "%s: MEMIT layers must be ascending and distinct (%d after %d)", fp,
                             layers[i], layers[i - 1]);
    /* statistics files that are named outright must exist */
    size_t n_stats = o->stats ? 1 : es->n_stats;
    for (size_t i = 0; i < n_stats; i++) {
        const char *f = o->stats ? o->stats : es->stats[i];
        if (strcmp(f, "none") && !strstr(f, "{}") && access(f, R_OK) != 0)
            return al_errorf(err, AL_ERR_IO, "%s: statistics file %s: %s", fp, f, strerror(errno));
    }
    return AL_OK;
}

int cmd_edit_facts(al_facts *facts, const cli_edit_opts *o)
{
    const char *facts_path = facts->filename;
    const al_edit_settings *es = &facts->settings;
    const char *model_path = o->model ? o->model : es->model, *out = o->out ? o->out : es->output;
    const char *method = o->method ? o->method : es->method ? es->method : "rome";
    char *const *stats_files = o->stats ? (char *const *)&o->stats : es->stats;
    size_t n_stats = o->stats ? 1 : es->n_stats;
    al_error err = {0};
    al_model *m = NULL;
    al_model_ws *ws = NULL;
    al_tokenizer *tok = NULL;
    double **Cs = NULL, *L = NULL;
    char **templates = NULL;
    size_t n_templates = 0;
    bool own_templates = false;
    al_cf_metrics *before = NULL, *after = NULL;
    double *immediate = NULL;   /* efficacy of each edit right after it, before the next */
    al_rome_result *res = NULL;
    al_memit_result mres = {0};
    al_rome_tensor *edited = NULL;
    al_update *ups = NULL;
    size_t n_edited = 0, n_ups = 0;
    json_t *report = NULL;
    int rc = 0;
    struct timespec t0, t1;

    if (!model_path) return cli_usage("edit", "no model: give --model DIR or model: in %s", facts_path);
    if (!out) return cli_usage("edit", "no output: give -o OUT or output: in %s", facts_path);
    bool memit = !strcmp(method, "memit");
    if (cmd_edit_precheck(facts, o, &err) != AL_OK) goto fail;
    /* refuse the output before any work: exists, or is the model */
    struct stat sb;
    if (!o->force && stat(out, &sb) == 0) { al_errorf(&err, AL_ERR_USAGE, "%s already exists (use --force to replace it)", out); goto fail; }

    if (al_model_open(&m, model_path, NULL, &err) != AL_OK || al_tokenizer_load(&tok, model_path, &err) != AL_OK) goto fail;
    const al_model_config *cfg = al_model_cfg(m);
    al_memit_params mp;
    al_rome_params p;
    al_memit_params_default(&mp, cfg);
    al_rome_params_default(&p, cfg);
    al_rome_params *hp = memit ? &mp.z : &p;
    const int *layers = o->n_layers ? o->layers : es->layers;
    size_t n_layers = o->n_layers ? o->n_layers : es->n_layers;
    if (n_layers) {
        if (memit) {
            mp.n_layers = (int)n_layers;
            for (size_t i = 0; i < n_layers; i++) mp.layers[i] = layers[i];
        } else p.layer = layers[0];
    }
    int nl = memit ? mp.n_layers : 1;
    const int *lay = memit ? mp.layers : &p.layer;
    for (int i = 0; i < nl; i++) {
        if (lay[i] < 0 || lay[i] >= cfg->n_layer) {
            al_errorf(&err, AL_ERR_RECIPE, "%s: layer %d is out of range (the model has %d layers)", facts_path, lay[i], cfg->n_layer);
            goto fail;
        }
    }
    for (size_t i = 0; i < es->n_hp; i++)
        if (!set_hparam(hp, memit ? &mp.mom2_update_weight : NULL, es->hp_names[i], es->hp_values[i])) {
            al_errorf(&err, AL_ERR_RECIPE, "%s:%d:%d: unknown hyperparameter '%s' (v_num_grad_steps, v_lr, v_weight_decay, "
                      "clamp_norm_factor, kl_factor, mom2_adjustment, early_stop_loss%s)", facts_path, es->line, es->col,
                      es->hp_names[i], memit ? ", mom2_update_weight" : "");
            goto fail;
        }
    p.r_rome = !strcmp(method, "r-rome");
    if (n_stats == 1 && !strcmp(stats_files[0], "none")) hp->mom2_adjustment = false;
    if (hp->mom2_adjustment) {
        if (!n_stats) {
            al_errorf(&err, AL_ERR_RECIPE, "%s: %s needs second-moment statistics: give stats: FILE (from `alloy stats`, "
                      "or a reference .npz) or stats: none", facts_path, memit ? "MEMIT" : "ROME");
            goto fail;
        }
        if (n_stats > 1 && n_stats != (size_t)nl) {
            al_errorf(&err, AL_ERR_RECIPE, "%s: %zu statistics files for %d layers (give one per layer, or one name "
                      "with {} for the layer)", facts_path, n_stats, nl);
            goto fail;
        }
        if (nl > 1 && n_stats == 1 && !strstr(stats_files[0], "{}")) {
            al_errorf(&err, AL_ERR_RECIPE, "%s: MEMIT edits %d layers and needs statistics for each: give a list, or "
                      "a name with {} for the layer (e.g. stats-l{}.h5)", facts_path, nl);
            goto fail;
        }
        if (!(Cs = al_calloc((size_t)nl, sizeof *Cs))) { al_errorf(&err, AL_ERR_NOMEM, "out of memory"); goto fail; }
        for (int i = 0; i < nl; i++) {
            char path[4096];
            if (!stats_file(path, sizeof path, stats_files, n_stats, (size_t)i, lay[i])) { al_errorf(&err, AL_ERR_USAGE, "statistics path too long"); goto fail; }
            if (load_cov(path, m, lay[i], &Cs[i], &err) != AL_OK) goto fail;
        }
        if (!memit && al_rome_cholesky(Cs[0], cfg->n_inner, &L, &err) != AL_OK) goto fail;
    }
    if (es->n_templates) {
        templates = es->context_templates;
        n_templates = es->n_templates;
    } else {
        if (make_templates(m, tok, (uint64_t)(es->seed >= 0 ? es->seed : 2022), memit, &templates, &n_templates, &err) != AL_OK) goto fail;
        own_templates = true;
    }
    hp->context_templates = (const char *const *)templates;
    hp->n_templates = n_templates;

    /* the evaluation workspace: as long as the longest prompt + target, not the context */
    {
        const al_fact **all = al_malloc(facts->n * sizeof *all);
        size_t maxlen = 0;
        if (!all) { al_errorf(&err, AL_ERR_NOMEM, "out of memory"); goto fail; }
        for (size_t i = 0; i < facts->n; i++) all[i] = &facts->items[i];
        al_status s2 = al_facts_max_tokens(tok, all, facts->n, &maxlen, &err);
        al_free(all);
        if (s2 != AL_OK) goto fail;
        if (maxlen > (size_t)cfg->n_ctx) maxlen = (size_t)cfg->n_ctx;
        if (al_model_ws_new(&ws, m, 16, (int)maxlen + 1, &err) != AL_OK) goto fail;
    }
    immediate = al_calloc(facts->n, sizeof *immediate);
    before = al_calloc(facts->n, sizeof *before);
    after = al_calloc(facts->n, sizeof *after);
    res = al_calloc(facts->n, sizeof *res);
    edited = al_calloc(facts->n + AL_MEMIT_MAX_LAYERS, sizeof *edited);
    ups = al_calloc(facts->n + AL_MEMIT_MAX_LAYERS, sizeof *ups);
    if (!immediate || !before || !after || !res || !edited || !ups) { al_errorf(&err, AL_ERR_NOMEM, "out of memory"); goto fail; }
    for (size_t i = 0; o->eval && i < facts->n; i++)
        if (facts->items[i].target_true && al_eval_counterfact(m, ws, 16, tok, &facts->items[i], &before[i], &err) != AL_OK) goto fail;
    bool conv1d = cfg->arch == AL_ARCH_GPT2;
    if (memit) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (al_memit_run(m, tok, facts->items, facts->n, &mp, (const double *const *)Cs, &mres, &err) != AL_OK) {
            al_error_prefix(&err, "%s: ", facts_path);
            goto fail;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        for (int i = 0; i < mres.n_layers; i++) {
            note_tensor(edited, &n_edited, &mres.tensors[i]);
            al_update *u = &ups[n_ups++];
            snprintf(u->tensor, sizeof u->tensor, "%s", mres.tensors[i].name);
            snprintf(u->method, sizeof u->method, "memit");
            u->layer = mres.layers[i];
            u->edit = 0;
            u->rows = mres.tensors[i].rows;
            u->cols = mres.tensors[i].cols;
            u->rank = mres.n;
            u->f64 = true;
            double *adj = mres.adj + (size_t)i * mres.n * mres.M, *R = mres.resid + (size_t)i * mres.n * mres.C;
            u->left = conv1d ? adj : R;
            u->right = conv1d ? R : adj;
            if (!o->json && !o->quiet)
                fprintf(stderr, "memit: layer %d: residual %.4g, update of rank %d\n", u->layer, mres.resid_norm[i], mres.n);
        }
        if (!o->json && !o->quiet)
            fprintf(stderr, "memit: %zu edits over layers %d..%d in %.2f s\n", facts->n, mres.layers[0],
                    mres.layers[mres.n_layers - 1], (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
    }
    for (size_t i = 0; i < facts->n; i++) {
        const al_fact *f = &facts->items[i];
        if (!memit) {
            clock_gettime(CLOCK_MONOTONIC, &t0);
            al_rome_tensor t;
            if (al_rome_compute(m, tok, f, &p, L, &res[i], &err) != AL_OK || al_rome_apply(m, p.layer, &res[i], &t, &err) != AL_OK) {
                al_error_prefix(&err, "%s:%d:%d: edit %zu: ", facts_path, f->line, f->col, i + 1);
                goto fail;
            }
            clock_gettime(CLOCK_MONOTONIC, &t1);
            if (fabs(res[i].division_factor) < 1e-6) {
                /* <k, u> near zero would make the update blow up (rome.md §1.7) */
                al_errorf(&err, AL_ERR_INTERNAL, "%s:%d:%d: edit %zu: <k, u> = %g is too small for a stable update",
                          facts_path, f->line, f->col, i + 1, res[i].division_factor);
                goto fail;
            }
            note_tensor(edited, &n_edited, &t);
            al_update *u = &ups[n_ups++];
            snprintf(u->tensor, sizeof u->tensor, "%s", t.name);
            snprintf(u->method, sizeof u->method, "%s", method);
            u->layer = p.layer;
            u->edit = (int)i;
            u->rows = t.rows;
            u->cols = t.cols;
            u->rank = 1;
            u->left = conv1d ? res[i].u : res[i].v_right;
            u->right = conv1d ? res[i].v_right : res[i].u;
            if (!o->json && !o->quiet)
                fprintf(stderr, "edit %zu/%zu: %s ->%s: layer %d, %d steps, loss %.4g -> %.4g, %.2f s\n", i + 1, facts->n,
                        f->prompt, f->target_new, p.layer, res[i].steps, res[i].steps ? res[i].loss[0] : NAN,
                        res[i].steps ? res[i].loss[res[i].steps - 1] : NAN,
                        (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
        }
        if (o->eval && f->target_true) {
            al_cf_metrics now;
            al_fact only = *f;
            only.n_paraphrases = only.n_neighborhood = 0;
            if (al_eval_counterfact(m, ws, 16, tok, &only, &now, &err) != AL_OK) goto fail;
            immediate[i] = now.rewrite.new_beats_true;
        }
    }
    for (size_t i = 0; o->eval && i < facts->n; i++)
        if (facts->items[i].target_true && al_eval_counterfact(m, ws, 16, tok, &facts->items[i], &after[i], &err) != AL_OK) goto fail;

    /* the report */
    report = json_object();
    json_t *items = json_array(), *lj = json_array();
    json_object_set_new(report, "model", json_string(o->model_label ? o->model_label : model_path));
    json_object_set_new(report, "method", json_string(method));
    for (int i = 0; i < nl; i++) json_array_append_new(lj, json_integer(lay[i]));
    json_object_set_new(report, memit ? "layers" : "layer", memit ? lj : json_integer(p.layer));
    if (!memit) json_decref(lj);
    if (memit) json_object_set_new(report, "mom2_update_weight", json_real(mp.mom2_update_weight));
    json_t *sj = json_array();
    for (int i = 0; i < nl && hp->mom2_adjustment; i++) {
        char path[4096];
        stats_file(path, sizeof path, stats_files, n_stats, (size_t)i, lay[i]);
        json_array_append_new(sj, json_string(path));
    }
    if (!hp->mom2_adjustment) json_array_append_new(sj, json_string("none"));
    json_object_set_new(report, "stats", sj);
    json_t *tj = json_array();
    for (size_t i = 0; i < n_templates; i++) json_array_append_new(tj, json_string(templates[i]));
    json_object_set_new(report, "context_templates", tj);
    for (size_t i = 0; i < facts->n; i++) {
        const al_fact *f = &facts->items[i];
        json_t *e = json_object();
        json_object_set_new(e, "prompt", json_string(f->prompt));
        json_object_set_new(e, "subject", json_string(f->subject));
        json_object_set_new(e, "target_new", json_string(f->target_new));
        if (f->target_true) json_object_set_new(e, "target_true", json_string(f->target_true));
        int steps = memit ? mres.steps[i] : res[i].steps;
        const double *loss = memit ? mres.loss + i * (size_t)mres.steps_cap : res[i].loss;
        json_object_set_new(e, "steps", json_integer(steps));
        json_object_set_new(e, "loss_first", json_real(steps ? loss[0] : 0));
        json_object_set_new(e, "loss_last", json_real(steps ? loss[steps - 1] : 0));
        if (memit) {
            json_object_set_new(e, "norm_z_init", json_real(norm(mres.target_init + i * (size_t)mres.C, mres.C)));
            json_object_set_new(e, "norm_delta", json_real(norm(mres.delta + i * (size_t)mres.C, mres.C)));
        } else {
            json_object_set_new(e, "norm_k_star", json_real(norm(res[i].k_star, res[i].M)));
            json_object_set_new(e, "norm_v_star", json_real(norm(res[i].v_star, res[i].C)));
            json_object_set_new(e, "norm_delta", json_real(norm(res[i].delta, res[i].C)));
        }
        if (o->eval && f->target_true) {
            json_object_set_new(e, "efficacy_right_after", json_real(immediate[i]));
            json_object_set_new(e, "before", metrics_json(&before[i]));
            json_object_set_new(e, "after", metrics_json(&after[i]));
        }
        json_array_append_new(items, e);
    }
    json_object_set_new(report, "edits", items);

    if (write_output(model_path, o->model_label, out, o->force, edited, n_edited, report, o->no_factors ? NULL : ups, n_ups, o->carry,
                     &err) != AL_OK)
        goto fail;

    if (o->json) {
        json_dumpf(report, stdout, JSON_INDENT(2));
        putchar('\n');
    } else if (o->eval) {
        double s[7] = {0};
        int n = 0;
        printf("%-48s %9s %9s %9s %9s\n", "edit (% before -> after all edits)", "efficacy", "paraphr.", "neighb.",
               "just after");
        for (size_t i = 0; i < facts->n; i++) {
            if (!facts->items[i].target_true) continue;
            printf("%-48.48s %4.0f->%-4.0f %4.0f->%-4.0f %4.0f->%-4.0f %6.0f\n", facts->items[i].prompt,
                   100 * before[i].rewrite.new_beats_true, 100 * after[i].rewrite.new_beats_true,
                   100 * before[i].paraphrase.new_beats_true, 100 * after[i].paraphrase.new_beats_true,
                   100 * (1 - before[i].neighborhood.new_beats_true), 100 * (1 - after[i].neighborhood.new_beats_true),
                   100 * immediate[i]);
            s[6] += immediate[i];
            s[0] += before[i].rewrite.new_beats_true; s[1] += after[i].rewrite.new_beats_true;
            s[2] += before[i].paraphrase.new_beats_true; s[3] += after[i].paraphrase.new_beats_true;
            s[4] += 1 - before[i].neighborhood.new_beats_true; s[5] += 1 - after[i].neighborhood.new_beats_true;
            n++;
        }
        if (n)
            printf("%-48s %4.0f->%-4.0f %4.0f->%-4.0f %4.0f->%-4.0f %6.0f\n", "mean", 100 * s[0] / n,
                   100 * s[1] / n, 100 * s[2] / n, 100 * s[3] / n, 100 * s[4] / n, 100 * s[5] / n, 100 * s[6] / n);
    }
    if (!o->quiet) fprintf(stderr, "edit: wrote %s\n", out);
    goto done;
fail:
    rc = cli_report(&err);
done:
    json_decref(report);
    for (size_t i = 0; res && i < facts->n; i++) al_rome_result_free(&res[i]);
    al_free(res);
    al_memit_result_free(&mres);
    al_free(edited);
    al_free(ups);
    al_free(immediate);
    al_free(before);
    al_free(after);
    if (own_templates) { for (size_t i = 0; i < n_templates; i++) al_free(templates[i]); al_free(templates); }
    for (int i = 0; Cs && i < (memit ? mp.n_layers : 1); i++) al_free(Cs[i]);
    al_free(Cs);
    al_free(L);
    al_model_ws_free(ws);
    al_tokenizer_free(tok);
    al_model_free(m);
    return rc;
}

/* "2" or "1,2,3" into layers; false when malformed. */
static bool parse_layers(const char *s, int *layers, size_t *n)
{
    *n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > 100000 || *n >= AL_MEMIT_MAX_LAYERS) return false;
        layers[(*n)++] = (int)v;
        if (*end == ',') end++;
        else if (*end) return false;
        s = end;
    }
    return *n > 0;
}

int cmd_edit(int argc, char **argv)
{
    const char *facts_path = NULL, *undo = NULL;
    int layers[AL_MEMIT_MAX_LAYERS];
    cli_edit_opts o = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool v = i + 1 < argc;
        if (cli_is_help(a)) { fputs(k_help, stdout); return 0; }
        else if (!strcmp(a, "--eval")) o.eval = true;
        else if (!strcmp(a, "--json")) o.json = true;
        else if (!strcmp(a, "--force")) o.force = true;
        else if (!strcmp(a, "--no-factors")) o.no_factors = true;
        else if (!strcmp(a, "--undo")) { if (!v) return cli_usage("edit", "--undo needs an edited model directory"); undo = argv[++i]; }
        else if (!strcmp(a, "-o") || !strcmp(a, "--out")) { if (!v) return cli_usage("edit", "%s needs a directory", a); o.out = argv[++i]; }
        else if (!strcmp(a, "--model")) { if (!v) return cli_usage("edit", "--model needs a directory"); o.model = argv[++i]; }
        else if (!strcmp(a, "--method")) { if (!v) return cli_usage("edit", "--method needs rome, r-rome or memit"); o.method = argv[++i]; }
        else if (!strcmp(a, "--stats")) { if (!v) return cli_usage("edit", "--stats needs a file or none"); o.stats = argv[++i]; }
        else if (!strcmp(a, "--layer") || !strcmp(a, "--layers")) {
            if (!v || !parse_layers(argv[++i], layers, &o.n_layers)) return cli_usage("edit", "%s takes a layer index or a list like 1,2,3", a);
            o.layers = layers;
        }
        else if (a[0] == '-' && a[1]) return cli_usage("edit", "unknown option '%s'", a);
        else if (!facts_path) facts_path = a;
        else return cli_usage("edit", "unexpected argument '%s'", a);
    }
    if (undo) {
        if (facts_path) return cli_usage("edit", "--undo takes no facts file");
        if (!o.out) return cli_usage("edit", "--undo needs -o OUT");
        return run_undo(undo, o.out, o.force);
    }
    if (!facts_path) return cli_usage("edit", "missing FACTS.yaml");
    al_error err = {0};
    al_facts *facts = NULL;
    if (al_facts_load(facts_path, &facts, &err) != AL_OK) return cli_report(&err);
    int rc = cmd_edit_facts(facts, &o);
    al_facts_free(facts);
    return rc;
}
