/* cmd/cmd_diff.c: `alloy diff A B` and `alloy diff --base BASE M1 [M2 ...]`. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../merge/diff.h"
#include "cli.h"

static const char k_help[] =
    "usage: alloy diff A B [--json] [--svg FILE] [--tensors]\n"
    "       alloy diff --base BASE M1 [M2 ...] [--json] [--svg FILE] [--tensors]\n"
    "\n"
    "How checkpoints differ, per block (embeddings as 'pre', transformer blocks by index,\n"
    "final norm and head as 'post') and per tensor (--tensors):\n"
    "  rel    ||B - A|| / ||A||  (the relative change, L2 norms over the block)\n"
    "  l2     ||B - A||\n"
    "  cos    cosine similarity of A and B\n"
    "With --base, each M_i is compared with BASE (its task vector M_i - BASE), and\n"
    "'conflicts' is the TIES sign-conflict rate: the share of elements where some task\n"
    "vectors are positive and others negative.\n"
    "\n"
    "  --json        machine-readable output\n"
    "  --svg FILE    write a per-block chart (SVG, opens in any browser)\n"
    "  --tensors     also list every tensor\n";

static json_t *jnum(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *sums_json(const al_diff *d, const al_diff_sums *s)
{
    json_t *o = json_object(), *pm = json_array();
    json_object_set_new(o, "elements", json_integer((json_int_t)s->n));
    for (int i = 0; i < d->n_models; i++) {
        json_t *m = json_object();
        json_object_set_new(m, "l2", jnum(al_diff_l2(s, i)));
        json_object_set_new(m, "rel", jnum(al_diff_rel(s, i)));
        json_object_set_new(m, "cos", jnum(al_diff_cos(s, i)));
        json_array_append_new(pm, m);
    }
    json_object_set_new(o, "models", pm);
    if (d->task_mode) json_object_set_new(o, "conflict_rate", jnum(al_diff_conflict_rate(s)));
    return o;
}

static void row(const al_diff *d, const char *label, const al_diff_sums *s)
{
    printf("%-48s %12lld", label, (long long)s->n);
    for (int i = 0; i < d->n_models; i++)
        printf("  %10.4g %10.4g %9.6f", al_diff_rel(s, i), al_diff_l2(s, i), al_diff_cos(s, i));
    if (d->task_mode) printf("  %9.4f", al_diff_conflict_rate(s));
    putchar('\n');
}

int cmd_diff(int argc, char **argv)
{
    const char *base = NULL, *svg = NULL;
    const char *paths[AL_DIFF_MAX_MODELS + 1];
    int np = 0;
    bool as_json = false, tensors = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) { fputs(k_help, stdout); return 0; }
        else if (!strcmp(a, "--json")) as_json = true;
        else if (!strcmp(a, "--tensors")) tensors = true;
        else if (!strcmp(a, "--base")) {
            if (i + 1 >= argc) return cli_usage("diff", "--base needs a checkpoint");
            base = argv[++i];
        } else if (!strcmp(a, "--svg")) {
            if (i + 1 >= argc) return cli_usage("diff", "--svg needs a file name");
            svg = argv[++i];
        } else if (a[0] == '-' && a[1]) return cli_usage("diff", "unknown option '%s'", a);
        else if (np <= AL_DIFF_MAX_MODELS) paths[np++] = a;
        else return cli_usage("diff", "at most %d models", AL_DIFF_MAX_MODELS);
    }
    if (!base && np != 2) return cli_usage("diff", "give two checkpoints A B, or --base BASE and fine-tuned models");
    if (base && (np < 1 || np > AL_DIFF_MAX_MODELS)) return cli_usage("diff", "--base needs 1 to %d models", AL_DIFF_MAX_MODELS);
    al_error err = {0};
    al_diff *d = NULL;
    const char *ref = base ? base : paths[0];
    if (al_diff_run(ref, base ? paths : paths + 1, base ? np : 1, base != NULL, &d, &err) != AL_OK)
        return cli_report(&err);
    if (d->skipped)
        fprintf(stderr, "alloy: warning: %zu tensor(s) left out: absent or of another shape in a compared model "
                        "(first: %s)\n", d->skipped, d->first_skipped);
    if (svg && al_diff_write_svg(d, svg, &err) != AL_OK) { al_diff_free(d); return cli_report(&err); }
    if (as_json) {
        json_t *root = json_object(), *blocks = json_array(), *models = json_array();
        json_object_set_new(root, "mode", json_string(d->task_mode ? "task_vectors" : "pair"));
        json_object_set_new(root, "reference", json_string(d->ref));
        for (int i = 0; i < d->n_models; i++) json_array_append_new(models, json_string(d->models[i]));
        json_object_set_new(root, "models", models);
        for (size_t b = 0; b < d->n_blocks; b++) {
            json_t *o = sums_json(d, &d->b[b].s);
            json_object_set_new(o, "block", json_string(d->b[b].label));
            json_array_append_new(blocks, o);
        }
        json_object_set_new(root, "blocks", blocks);
        json_object_set_new(root, "total", sums_json(d, &d->total));
        if (tensors) {
            json_t *ts = json_array();
            for (size_t t = 0; t < d->n_tensors; t++) {
                json_t *o = sums_json(d, &d->t[t].s);
                json_object_set_new(o, "name", json_string(d->t[t].name));
                json_array_append_new(ts, o);
            }
            json_object_set_new(root, "tensors", ts);
        }
        json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
        json_decref(root);
    } else {
        printf("reference: %s\n", d->ref);
        for (int i = 0; i < d->n_models; i++) printf("model %d:   %s\n", i + 1, d->models[i]);
        printf("\n%-48s %12s", "block", "elements");
        for (int i = 0; i < d->n_models; i++) printf("  %10s %10s %9s", "rel", "l2", "cos");
        if (d->task_mode) printf("  %9s", "conflicts");
        putchar('\n');
        for (size_t b = 0; b < d->n_blocks; b++) row(d, d->b[b].label, &d->b[b].s);
        row(d, "total", &d->total);
        if (tensors) {
            putchar('\n');
            for (size_t t = 0; t < d->n_tensors; t++) row(d, d->t[t].name, &d->t[t].s);
        }
    }
    if (svg) fprintf(stderr, "diff: wrote %s\n", svg);
    al_diff_free(d);
    return 0;
}
