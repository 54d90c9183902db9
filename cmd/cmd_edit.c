/* cmd/cmd_edit.c: `alloy edit FACTS.yaml -o OUT`: ROME / r-ROME fact edits. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../core/alloc.h"
#include "../edit/eval.h"
#include "../edit/facts.h"
#include "../edit/generate.h"
#include "../edit/model.h"
#include "../edit/rome.h"
#include "../edit/stats.h"
#include "../io/checkpoint.h"
#include "../io/hfdir.h"
#include "../io/tokenizer.h"
#include "cli.h"

static const char k_help[] =
    "usage: alloy edit FACTS.yaml [-o OUT] [--model DIR] [--method rome|r-rome] [--layer L]\n"
    "                  [--stats FILE.h5|FILE.npz|none] [--eval] [--json] [--force]\n"
    "\n"
    "Rewrite facts in a model with ROME rank-one updates (Meng et al., NeurIPS 2022), one\n"
    "edit after another, and write a new checkpoint directory in which only the edited\n"
    "MLP weights differ from the input, plus edits.json (per edit: layer, norms, loss,\n"
    "steps, and the metrics before and after with --eval).\n"
    "\n"
    "FACTS is a facts file (see README): `edits:` with prompt ('{}' for the subject, or a\n"
    "full sentence containing it), subject, target_new, and optionally target_true,\n"
    "paraphrase_prompts, neighborhood_prompts; beside it the settings model, method,\n"
    "layer(s), stats, context_templates, seed, hparams, output. Options override them.\n"
    "  --stats F       second-moment statistics from `alloy stats` (.h5) or the reference\n"
    "                  code's .npz; `none` uses the identity (mom2_adjustment: false)\n"
    "  --method M      rome (default) or r-rome (consistent keys; Gupta et al. 2024)\n"
    "  --eval          efficacy, paraphrase and neighbourhood scores before and after\n"
    "  --json          the report on stdout as JSON\n";

/* ROME's context templates: "{}" plus, for each length/count pair, texts sampled from
 * the model (top-k 5) after five short prefixes, each followed by ". {}" (rome.md §1.2).
 * The reference uses [[5, 10], [10, 10]]: 10 templates of 5 tokens and 10 of 10. */
static al_status make_templates(const al_model *m, const al_tokenizer *tok, uint64_t seed, char ***out, size_t *n_out,
                                al_error *err)
{
    static const char *const starts[] = {"The", "Therefore", "Because", "I", "You"};
    static const int lens[2][2] = {{5, 10}, {10, 10}};
    al_model_ws *ws = NULL;
    al_status s = AL_OK;
    size_t n = 1 + 20;
    char **t = al_calloc(n, sizeof *t);
    if (!t || !(t[0] = al_strdup("{}"))) { al_free(t); return al_errorf(err, AL_ERR_NOMEM, "out of memory"); }
    size_t k = 1;
    if ((s = al_model_ws_new(&ws, m, 1, 64, err)) != AL_OK) goto done;
    for (int g = 0; g < 2 && s == AL_OK; g++)
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
static bool set_hparam(al_rome_params *p, const char *name, double v)
{
    if (!strcmp(name, "v_num_grad_steps")) p->v_num_grad_steps = (int)v;
    else if (!strcmp(name, "v_lr")) p->v_lr = v;
    else if (!strcmp(name, "v_weight_decay")) p->v_weight_decay = v;
    else if (!strcmp(name, "clamp_norm_factor")) p->clamp_norm_factor = v;
    else if (!strcmp(name, "kl_factor")) p->kl_factor = v;
    else if (!strcmp(name, "mom2_adjustment")) p->mom2_adjustment = v != 0;
    else if (!strcmp(name, "early_stop_loss")) p->early_stop_loss = v;
    else if (!strcmp(name, "v_loss_layer")) p->v_loss_layer = (int)v;
    else return false;
    return true;
}

int cmd_edit(int argc, char **argv)
{
    const char *facts_path = NULL, *out = NULL, *model_path = NULL, *method = NULL, *stats_path = NULL;
    long layer = -1;
    bool do_eval = false, as_json = false, force = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool v = i + 1 < argc;
        if (cli_is_help(a)) { fputs(k_help, stdout); return 0; }
        else if (!strcmp(a, "--eval")) do_eval = true;
        else if (!strcmp(a, "--json")) as_json = true;
        else if (!strcmp(a, "--force")) force = true;
        else if (!strcmp(a, "-o") || !strcmp(a, "--out")) { if (!v) return cli_usage("edit", "%s needs a directory", a); out = argv[++i]; }
        else if (!strcmp(a, "--model")) { if (!v) return cli_usage("edit", "--model needs a directory"); model_path = argv[++i]; }
        else if (!strcmp(a, "--method")) { if (!v) return cli_usage("edit", "--method needs rome or r-rome"); method = argv[++i]; }
        else if (!strcmp(a, "--stats")) { if (!v) return cli_usage("edit", "--stats needs a file or none"); stats_path = argv[++i]; }
        else if (!strcmp(a, "--layer")) { if (!v || !cli_parse_int(argv[++i], 0, 100000, &layer)) return cli_usage("edit", "--layer takes a layer index"); }
        else if (a[0] == '-' && a[1]) return cli_usage("edit", "unknown option '%s'", a);
        else if (!facts_path) facts_path = a;
        else return cli_usage("edit", "unexpected argument '%s'", a);
    }
    if (!facts_path) return cli_usage("edit", "missing FACTS.yaml");

    al_error err = {0};
    al_facts *facts = NULL;
    al_model *m = NULL;
    al_model_ws *ws = NULL;
    al_tokenizer *tok = NULL;
    al_stats *st = NULL;
    al_ckpt *in = NULL;
    al_writer *w = NULL;
    double *C = NULL, *L = NULL;
    char **templates = NULL;
    size_t n_templates = 0;
    bool own_templates = false;
    al_cf_metrics *before = NULL, *after = NULL;
    double *immediate = NULL;   /* efficacy of each edit right after it, before the next */
    al_rome_result *res = NULL;
    al_rome_tensor *edited = NULL;
    size_t n_edited = 0;
    json_t *report = NULL;
    int rc = 0;

    if (al_facts_load(facts_path, &facts, &err) != AL_OK) goto fail;
    const al_edit_settings *es = &facts->settings;
    if (!model_path) model_path = es->model;
    if (!out) out = es->output;
    if (!method) method = es->method ? es->method : "rome";
    if (!stats_path) stats_path = es->stats;
    if (!model_path) { rc = cli_usage("edit", "no model: give --model DIR or model: in %s", facts_path); goto done; }
    if (!out) { rc = cli_usage("edit", "no output: give -o OUT or output: in %s", facts_path); goto done; }
    if (strcmp(method, "rome") && strcmp(method, "r-rome")) {
        al_errorf(&err, AL_ERR_UNSUPPORTED, "%s: method '%s' is not supported yet (rome, r-rome)", facts_path, method);
        goto fail;
    }
    /* every request must name its subject: ROME edits the key at the subject's last token */
    for (size_t i = 0; i < facts->n; i++)
        if (!facts->items[i].subject) {
            al_errorf(&err, AL_ERR_RECIPE, "%s:%d:%d: an edit needs a subject", facts_path, facts->items[i].line,
                      facts->items[i].col);
            goto fail;
        }
    /* refuse the output before any work: exists, or is the model */
    struct stat sb;
    if (!force && stat(out, &sb) == 0) { al_errorf(&err, AL_ERR_USAGE, "%s already exists (use --force to replace it)", out); goto fail; }

    if (al_model_open(&m, model_path, NULL, &err) != AL_OK || al_tokenizer_load(&tok, model_path, &err) != AL_OK) goto fail;
    const al_model_config *cfg = al_model_cfg(m);
    al_rome_params p;
    al_rome_params_default(&p, cfg);
    if (es->n_layers > 1) { al_errorf(&err, AL_ERR_UNSUPPORTED, "%s: several layers are MEMIT's; ROME edits one layer", facts_path); goto fail; }
    if (es->n_layers == 1) p.layer = es->layers[0];
    if (layer >= 0) p.layer = (int)layer;
    if (p.layer < 0 || p.layer >= cfg->n_layer) {
        al_errorf(&err, AL_ERR_RECIPE, "%s: layer %d is out of range (the model has %d layers)", facts_path, p.layer, cfg->n_layer);
        goto fail;
    }
    for (size_t i = 0; i < es->n_hp; i++)
        if (!set_hparam(&p, es->hp_names[i], es->hp_values[i])) {
            al_errorf(&err, AL_ERR_RECIPE, "%s:%d:%d: unknown hyperparameter '%s' (v_num_grad_steps, v_lr, v_weight_decay, "
                      "clamp_norm_factor, kl_factor, mom2_adjustment, early_stop_loss)", facts_path, es->line, es->col,
                      es->hp_names[i]);
            goto fail;
        }
    p.r_rome = !strcmp(method, "r-rome");
    if (stats_path && !strcmp(stats_path, "none")) p.mom2_adjustment = false;
    if (p.mom2_adjustment) {
        if (!stats_path) {
            al_errorf(&err, AL_ERR_RECIPE, "%s: ROME needs second-moment statistics: give stats: FILE (from `alloy stats`, "
                      "or a reference .npz) or stats: none", facts_path);
            goto fail;
        }
        size_t sl = strlen(stats_path);
        al_status s = sl > 4 && !strcmp(stats_path + sl - 4, ".npz") ? al_stats_import_npz(stats_path, &st, &err)
                                                                      : al_stats_load(stats_path, &st, &err);
        if (s != AL_OK || al_stats_check(st, m, p.layer, stats_path, &err) != AL_OK) goto fail;
        if (st->count < st->m) {
            /* fewer keys than features: C is singular and u = C^-1 k* undefined */
            al_errorf(&err, AL_ERR_RECIPE, "%s: statistics from %lld tokens for %d features cannot be inverted; compute "
                      "them over more text (at least %d tokens; the ROME paper used about 44 million)",
                      stats_path, (long long)st->count, st->m, st->m);
            goto fail;
        }
        if (!(C = al_malloc((size_t)st->m * (size_t)st->m * sizeof *C))) { al_errorf(&err, AL_ERR_NOMEM, "out of memory"); goto fail; }
        if (al_stats_mean(st, C, &err) != AL_OK || al_rome_cholesky(C, st->m, &L, &err) != AL_OK) goto fail;
    }
    if (es->n_templates) {
        templates = es->context_templates;
        n_templates = es->n_templates;
    } else {
        if (make_templates(m, tok, (uint64_t)(es->seed >= 0 ? es->seed : 2022), &templates, &n_templates, &err) != AL_OK) goto fail;
        own_templates = true;
    }
    p.context_templates = (const char *const *)templates;
    p.n_templates = n_templates;

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
    edited = al_calloc(facts->n, sizeof *edited);
    if (!immediate || !before || !after || !res || !edited) { al_errorf(&err, AL_ERR_NOMEM, "out of memory"); goto fail; }
    for (size_t i = 0; do_eval && i < facts->n; i++)
        if (facts->items[i].target_true && al_eval_counterfact(m, ws, 16, tok, &facts->items[i], &before[i], &err) != AL_OK) goto fail;
    for (size_t i = 0; i < facts->n; i++) {
        const al_fact *f = &facts->items[i];
        struct timespec t0, t1;
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
        if (do_eval && f->target_true) {
            al_cf_metrics now;
            al_fact only = *f;
            only.n_paraphrases = only.n_neighborhood = 0;
            if (al_eval_counterfact(m, ws, 16, tok, &only, &now, &err) != AL_OK) goto fail;
            immediate[i] = now.rewrite.new_beats_true;
        }
        size_t k = 0;
        while (k < n_edited && strcmp(edited[k].name, t.name)) k++;
        edited[k] = t;
        if (k == n_edited) n_edited++;
        if (!as_json)
            fprintf(stderr, "edit %zu/%zu: %s ->%s: layer %d, %d steps, loss %.4g -> %.4g, %.2f s\n", i + 1, facts->n, f->prompt,
                    f->target_new, p.layer, res[i].steps, res[i].steps ? res[i].loss[0] : NAN,
                    res[i].steps ? res[i].loss[res[i].steps - 1] : NAN,
                    (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
    }
    for (size_t i = 0; do_eval && i < facts->n; i++)
        if (facts->items[i].target_true && al_eval_counterfact(m, ws, 16, tok, &facts->items[i], &after[i], &err) != AL_OK) goto fail;

    /* the report */
    report = json_object();
    json_t *items = json_array();
    json_object_set_new(report, "model", json_string(model_path));
    json_object_set_new(report, "method", json_string(method));
    json_object_set_new(report, "layer", json_integer(p.layer));
    json_object_set_new(report, "stats", json_string(p.mom2_adjustment ? stats_path : "none"));
    json_t *tj = json_array();
    for (size_t i = 0; i < n_templates; i++) json_array_append_new(tj, json_string(templates[i]));
    json_object_set_new(report, "context_templates", tj);
    for (size_t i = 0; i < facts->n; i++) {
        const al_fact *f = &facts->items[i];
        json_t *o = json_object();
        json_object_set_new(o, "prompt", json_string(f->prompt));
        json_object_set_new(o, "subject", json_string(f->subject));
        json_object_set_new(o, "target_new", json_string(f->target_new));
        if (f->target_true) json_object_set_new(o, "target_true", json_string(f->target_true));
        json_object_set_new(o, "steps", json_integer(res[i].steps));
        json_object_set_new(o, "loss_first", json_real(res[i].steps ? res[i].loss[0] : 0));
        json_object_set_new(o, "loss_last", json_real(res[i].steps ? res[i].loss[res[i].steps - 1] : 0));
        json_object_set_new(o, "norm_k_star", json_real(norm(res[i].k_star, res[i].M)));
        json_object_set_new(o, "norm_v_star", json_real(norm(res[i].v_star, res[i].C)));
        json_object_set_new(o, "norm_delta", json_real(norm(res[i].delta, res[i].C)));
        if (do_eval && f->target_true) {
            json_object_set_new(o, "efficacy_right_after", json_real(immediate[i]));
            json_object_set_new(o, "before", metrics_json(&before[i]));
            json_object_set_new(o, "after", metrics_json(&after[i]));
        }
        json_array_append_new(items, o);
    }
    json_object_set_new(report, "edits", items);

    /* the output: every tensor as it was, the edited ones rounded once to their dtype */
    const char *inputs[] = {model_path, NULL};
    al_writer_opts wo = {.format = AL_FMT_SAFETENSORS, .dir = true, .shard_size = 5000000000ull, .force = force, .inputs = inputs};
    if (al_ckpt_open(&in, model_path, &err) != AL_OK || al_writer_open(&w, out, &wo, &err) != AL_OK) goto fail;
    const char *names[64];
    const float *datas[64];
    for (size_t k = 0; k < n_edited && k < 64; k++) { names[k] = edited[k].name; datas[k] = edited[k].data; }
    if (al_ckpt_copy_with(in, w, names, datas, n_edited, &err) != AL_OK) goto fail;
    if (al_hf_copy_files(model_path, al_writer_tmpdir(w), NULL, -1, &err) != AL_OK) goto fail;
    char rp[4096];
    snprintf(rp, sizeof rp, "%s/edits.json", al_writer_tmpdir(w));
    if (json_dump_file(report, rp, JSON_INDENT(2)) != 0) { al_errorf(&err, AL_ERR_IO, "%s: cannot write", rp); goto fail; }
    if (al_writer_commit(w, &err) != AL_OK) goto fail;

    if (as_json) {
        json_dumpf(report, stdout, JSON_INDENT(2));
        putchar('\n');
    } else if (do_eval) {
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
    fprintf(stderr, "edit: wrote %s\n", out);
    goto done;
fail:
    rc = cli_report(&err);
done:
    json_decref(report);
    for (size_t i = 0; res && i < facts->n; i++) al_rome_result_free(&res[i]);
    al_free(res);
    al_free(edited);
    al_free(immediate);
    al_free(before);
    al_free(after);
    if (own_templates) { for (size_t i = 0; i < n_templates; i++) al_free(templates[i]); al_free(templates); }
    al_writer_free(w);
    al_ckpt_close(in);
    al_free(C);
    al_free(L);
    al_stats_free(st);
    al_model_ws_free(ws);
    al_tokenizer_free(tok);
    al_model_free(m);
    al_facts_free(facts);
    return rc;
}
