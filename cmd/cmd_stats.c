/* cmd/cmd_stats.c: `alloy stats`: ROME's second-moment statistic C = E[k k^T] of one
 * layer's down-projection input over a corpus, cached in HDF5; or a reference .npz
 * converted to that cache. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/alloc.h"
#include "../edit/model.h"
#include "../edit/stats.h"
#include "../io/tokenizer.h"
#include "cli.h"

static const char k_stats_help[] =
    "usage: alloy stats MODEL --layer L --corpus FILE.txt [--tokens N] [--truncate T]\n"
    "                   [--batch-tokens B] [-o OUT.h5] [--quiet]\n"
    "       alloy stats --import FILE.npz -o OUT.h5 [MODEL --layer L]\n"
    "\n"
    "Second-moment statistic of ROME/MEMIT at one layer: S = sum k k^T and the count n\n"
    "over every token of a corpus, k being the input of the MLP down projection\n"
    "(GPT-2 c_proj, Llama down_proj); C = S / n. The corpus has one document per line\n"
    "(empty lines skipped), each tokenized alone without BOS/EOS and truncated to the\n"
    "model's context (or --truncate T tokens). --tokens N stops after N tokens.\n"
    "The result is written to OUT.h5 (default stats_layerL.h5 in the current directory)\n"
    "with its provenance (model, layer, module, corpus and its SHA-256); progress goes\n"
    "to stderr.\n"
    "\n"
    "--import reads the reference implementation's cache (.npz with mom2.mom2 = the sum\n"
    "and mom2.count) and writes it as OUT.h5; given MODEL and --layer it is checked\n"
    "against them and tagged with them.\n";

typedef struct { double t0, last; bool quiet; } progress_ctx;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void on_progress(int64_t tokens, int64_t docs, void *user)
{
    progress_ctx *p = user;
    double t = now_s();
    if (p->quiet || t - p->last < 0.5) return;
    p->last = t;
    fprintf(stderr, "\r  %lld tokens, %lld documents, %.0f tokens/s   ", (long long)tokens,
            (long long)docs, (double)tokens / (t - p->t0 > 1e-9 ? t - p->t0 : 1e-9));
    fflush(stderr);
}

static void summary(const al_stats *s, const char *out)
{
    double tr = 0, mx = 0;
    for (int i = 0; i < s->m; i++) {
        double d = s->sum[(size_t)i * s->m + i];
        tr += d;
        if (d > mx) mx = d;
    }
    double n = s->count ? (double)s->count : 1;
    printf("%s: count %lld, m %d, layer %d%s%s\n", out, (long long)s->count, s->m, s->layer,
           s->module[0] ? ", " : "", s->module);
    printf("  trace(C) %.6g, max diag(C) %.6g, mean diag(C) %.6g\n", tr / n, mx / n, tr / n / (s->m ? s->m : 1));
}

int cmd_stats(int argc, char **argv)
{
    const char *model = NULL, *corpus = NULL, *out = NULL, *npz = NULL;
    long layer = -1, tokens = 0, truncate = 0, batch = 0;
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (cli_is_help(a)) { fputs(k_stats_help, stdout); return 0; }
        else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) quiet = true;
        else if (!strcmp(a, "--layer")) { if (!has || !cli_parse_int(argv[++i], 0, 100000, &layer)) return cli_usage("stats", "--layer needs a layer index"); }
        else if (!strcmp(a, "--tokens")) { if (!has || !cli_parse_int(argv[++i], 0, 0x7fffffffffffffffL, &tokens)) return cli_usage("stats", "--tokens needs a count (0 = all)"); }
        else if (!strcmp(a, "--truncate")) { if (!has || !cli_parse_int(argv[++i], 1, 1 << 30, &truncate)) return cli_usage("stats", "--truncate needs a token count"); }
        else if (!strcmp(a, "--batch-tokens")) { if (!has || !cli_parse_int(argv[++i], 1, 1 << 24, &batch)) return cli_usage("stats", "--batch-tokens needs a token count"); }
        else if (!strcmp(a, "--corpus")) { if (!has) return cli_usage("stats", "--corpus needs a file"); corpus = argv[++i]; }
        else if (!strcmp(a, "--import")) { if (!has) return cli_usage("stats", "--import needs an .npz file"); npz = argv[++i]; }
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) { if (!has) return cli_usage("stats", "-o needs a path"); out = argv[++i]; }
        else if (a[0] == '-' && a[1]) return cli_usage("stats", "unknown option '%s'", a);
        else if (!model) model = a;
        else return cli_usage("stats", "unexpected argument '%s'", a);
    }
    if (npz) {
        if (!out) return cli_usage("stats", "--import needs -o OUT.h5");
        if (corpus) return cli_usage("stats", "--import and --corpus do not go together");
        if (model && layer < 0) return cli_usage("stats", "checking an import against MODEL needs --layer");
    } else {
        if (!model) return cli_usage("stats", "missing MODEL");
        if (layer < 0) return cli_usage("stats", "missing --layer L");
        if (!corpus) return cli_usage("stats", "missing --corpus FILE.txt");
    }
    char defname[64];
    if (!out) { snprintf(defname, sizeof defname, "stats_layer%ld.h5", layer); out = defname; }

    al_error err = {0};
    al_model *m = NULL;
    al_tokenizer *tok = NULL;
    al_stats *s = NULL;
    int rc = 0;
    if (model && al_model_open(&m, model, NULL, &err) != AL_OK) { rc = cli_report(&err); goto done; }
    if (npz) {
        if (al_stats_import_npz(npz, &s, &err) != AL_OK) { rc = cli_report(&err); goto done; }
        if (m) {
            char mod[96];
            if (al_stats_check(s, m, (int)layer, npz, &err) != AL_OK) { rc = cli_report(&err); goto done; }
            char abs[PATH_MAX];
            bool ok = al_stats_set_model(s, realpath(model, abs) ? abs : model, al_model_cfg(m)->model_type,
                                         (int)layer, al_stats_module_name(m, (int)layer, mod, sizeof mod));
            if (!ok) { err.code = AL_ERR_NOMEM; snprintf(err.msg, sizeof err.msg, "out of memory"); rc = cli_report(&err); goto done; }
        }
    } else {
        if (al_tokenizer_load(&tok, model, &err) != AL_OK) { rc = cli_report(&err); goto done; }
        progress_ctx pc = {now_s(), 0, quiet};
        al_stats_opts o = {.layer = (int)layer, .corpus = corpus, .max_tokens = tokens,
                           .truncate = (int)truncate, .batch_tokens = (int)batch,
                           .model_path = model, .progress = on_progress, .user = &pc, .comm = cli_comm};
        if (al_stats_compute(m, tok, &o, &s, &err) != AL_OK) {
            if (!quiet) fputc('\n', stderr);
            rc = cli_report(&err);
            goto done;
        }
        double dt = now_s() - pc.t0;
        if (!quiet)
            fprintf(stderr, "\r  %lld tokens in %.2f s: %.0f tokens/s%20s\n", (long long)s->count, dt,
                    (double)s->count / (dt > 1e-9 ? dt : 1e-9), "");
    }
    /* rank 0 writes; the others learn whether it could */
    al_status sv = al_comm_rank(cli_comm) == 0 ? al_stats_save(s, out, &err) : AL_OK;
    if (al_comm_agree(cli_comm, sv, &err) != AL_OK) { rc = cli_report(&err); goto done; }
    summary(s, out);
done:
    al_stats_free(s);
    al_tokenizer_free(tok);
    al_model_free(m);
    return rc;
}
