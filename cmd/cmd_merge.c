/* cmd/cmd_merge.c: `alloy merge RECIPE -o OUT` and its --check / --dry-run modes. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../core/alloc.h"
#include "../core/emergency.h"
#include "../io/checkpoint.h"
#include "../merge/pipeline.h"
#include "../recipes/recipe.h"
#include "cli.h"

static const char k_help[] =
    "usage: alloy merge RECIPE.yaml -o OUT [options]\n"
    "       alloy merge RECIPE.yaml --check\n"
    "       alloy merge RECIPE.yaml --dry-run\n"
    "\n"
    "Merge checkpoints as a mergekit-style YAML recipe says (merge_method, base_model,\n"
    "models or slices, parameters with gradients and filters, dtype, out_dtype, ...).\n"
    "Inputs are streamed tensor by tensor; OUT is a Hugging Face directory with shards,\n"
    "index, config.json, tokenizer files, a README.md model card and alloy_recipe.yaml.\n"
    "\n"
    "  --check            validate the recipe only (reads no model); exit 0 if it can run\n"
    "  --dry-run          print every output tensor, its inputs and resolved parameters\n"
    "  --list-models      print each model the recipe references (and the highest layer\n"
    "                     a slice reads from it), and each LoRA adapter (marked 'lora'),\n"
    "                     then exit\n"
    "  -o, --out OUT      output directory (written atomically)\n"
    "  --models DIR       where org/model references are looked up (DIR/org/model),\n"
    "                     before the Hugging Face cache ($HF_HOME/hub)\n"
    "  --threads N        OpenMP threads (default: all cores); results do not depend on it\n"
    "  --seed N           seed for DARE/DELLA masks when the recipe sets none (default 0)\n"
    "  --shard-size SIZE  maximum bytes per output shard (default 5GB)\n"
    "  --out-format F     safetensors (default) or hdf5\n"
    "  --mergekit-dtype   round inputs to the recipe's dtype first, as mergekit does\n"
    "  --strict           unknown keys and lossy fallbacks are errors, not warnings\n"
    "  --allow-crimes     allow inputs of different architectures\n"
    "  --force            replace OUT if it exists\n"
    "  --quiet            no progress output\n";

typedef struct {
    bool tty, quiet;
    long throttle_ms;      /* test hook (ALLOY_TEST_THROTTLE_MS): pause after each tensor */
    time_t start, last;
} progress_state;

static void on_progress(void *ud, const al_merge_progress *p)
{
    progress_state *ps = ud;
    if (ps->throttle_ms > 0) usleep((useconds_t)ps->throttle_ms * 1000);
    if (ps->quiet) return;
    time_t now = time(NULL);
    bool done = p->tensors_done == p->tensors_total;
    double el = difftime(now, ps->start);
    double rate = el > 0 ? (double)p->bytes_done / el : 0;
    double eta = rate > 0 ? (double)(p->bytes_total - p->bytes_done) / rate : 0;
    char b1[32], b2[32], b3[32];
    cli_human_bytes(b1, sizeof b1, p->bytes_done);
    cli_human_bytes(b2, sizeof b2, p->bytes_total);
    cli_human_bytes(b3, sizeof b3, (uint64_t)rate);
    if (ps->tty) {
        int width = 30, fill = p->bytes_total ? (int)((double)width * (double)p->bytes_done / (double)p->bytes_total) : width;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = '\0';
        fprintf(stderr, "\r[%s] %zu/%zu tensors, %s / %s, %s/s, ETA %.0fs   ", bar, p->tensors_done,
                p->tensors_total, b1, b2, b3, eta);
        if (done) fputc('\n', stderr);
    } else if (done || difftime(now, ps->last) >= 5) {
        fprintf(stderr, "merge: %zu/%zu tensors, %s / %s, %s/s, ETA %.0fs\n", p->tensors_done, p->tensors_total,
                b1, b2, b3, eta);
        ps->last = now;
    }
}

static char *read_text(const char *path, size_t *len, al_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) { al_errorf(err, AL_ERR_IO, "%s: %s", path, strerror(errno)); return NULL; }
    size_t cap = 1 << 14, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            if (cap > (64u << 20)) { free(buf); buf = NULL; al_errorf(err, AL_ERR_FORMAT, "%s: recipe larger than 64 MB", path); break; }
            char *nb = realloc(buf, cap *= 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    if (buf && ferror(f)) { free(buf); buf = NULL; al_errorf(err, AL_ERR_IO, "%s: read error", path); }
    fclose(f);
    *len = n;
    return buf;
}

static void print_warnings(const al_strvec *w)
{
    for (size_t i = 0; i < w->n; i++) {
        const char *m = w->items[i];
        fprintf(stderr, "alloy: %s%s\n", strstr(m, "warning") ? "" : "warning: ", m);
    }
}

static void print_plan(const al_merge_job *j, size_t doc, size_t ndocs)
{
    char shp[160], b[32];
    printf("# document %zu of %zu: %zu output tensors, %s\n", doc + 1, ndocs, al_merge_job_count(j),
           cli_human_bytes(b, sizeof b, al_merge_job_out_bytes(j)));
    if (al_merge_job_out_layers(j) >= 0) printf("# output layers: %ld\n", al_merge_job_out_layers(j));
    for (size_t i = 0; i < al_merge_job_count(j); i++) {
        const al_job_tensor *t = al_merge_job_tensor(j, i);
        al_shape_str(shp, sizeof shp, t->ndim, t->shape);
        printf("%s %s %s t=%.4g%s\n", t->name, al_dtype_name(t->dtype), shp, t->t, t->copy ? " (copied)" : "");
        for (size_t k = 0; k < t->n_inputs; k++)
            printf("    <- %s%s: %s\n", t->inputs[k].model, t->inputs[k].is_base ? " (base)" : "", t->inputs[k].tensor);
        for (size_t k = 0; k < t->n_params; k++) printf("    %s\n", t->params[k]);
    }
}

/* Each referenced model once (intermediate documents excluded), with the highest
 * layer_range end a slice reads from it (0 if only whole-model use). */
#define MAX_REFS 1024

/* The references of a models: or slices: body, with the highest layer each reads. */
static void body_refs(const al_input_model *models, size_t n_models, const al_slice *slices, size_t n_slices,
                      const al_model_ref **refs, int64_t *ends, size_t *k)
{
    for (size_t i = 0; i < n_models && *k < MAX_REFS; i++) { refs[*k] = &models[i].model; ends[(*k)++] = 0; }
    for (size_t s = 0; s < n_slices; s++) {
        if (slices[s].base_model && *k < MAX_REFS) { refs[*k] = slices[s].base_model; ends[(*k)++] = 0; }
        for (size_t i = 0; i < slices[s].n_sources && *k < MAX_REFS; i++) {
            refs[*k] = &slices[s].sources[i].model;
            ends[(*k)++] = slices[s].sources[i].layer_end;
        }
    }
}

static void print_models(const al_recipe *r)
{
    const char *seen[512], *lseen[64];
    int64_t top[512];
    size_t n = 0, nl = 0;
    for (size_t d = 0; d < r->n_docs; d++) {
        const al_recipe_doc *doc = &r->docs[d];
        const al_model_ref *refs[MAX_REFS];
        int64_t ends[MAX_REFS];
        size_t k = 0;
        if (doc->base_model) { refs[k] = doc->base_model; ends[k++] = 0; }
        body_refs(doc->models, doc->n_models, doc->slices, doc->n_slices, refs, ends, &k);
        for (size_t m = 0; m < doc->n_modules; m++)
            body_refs(doc->modules[m].models, doc->modules[m].n_models, doc->modules[m].slices,
                      doc->modules[m].n_slices, refs, ends, &k);
        if (doc->tokenizer_source == AL_TOKSRC_MODEL && k < MAX_REFS) { refs[k] = &doc->tokenizer_source_model; ends[k++] = 0; }
        for (size_t i = 0; i < k; i++) {
            if (refs[i]->doc_index >= 0) continue;
            if (refs[i]->lora) {                       /* adapters: one line each, marked */
                size_t m = 0;
                while (m < nl && strcmp(lseen[m], refs[i]->lora) != 0) m++;
                if (m == nl && nl < 64) lseen[nl++] = refs[i]->lora;
            }
            const char *t = refs[i]->path;
            size_t m = 0;
            while (m < n && strcmp(seen[m], t) != 0) m++;
            if (m == n && n < 512) { seen[n] = t; top[n++] = ends[i]; }
            else if (m < n && ends[i] > top[m]) top[m] = ends[i];
        }
    }
    for (size_t m = 0; m < n; m++) printf("%s\t%lld\n", seen[m], (long long)top[m]);
    for (size_t m = 0; m < nl; m++) printf("%s\t0\tlora\n", lseen[m]);
}

/* Reserve a hidden directory beside path (".NAME.alloy-merge-XXXXXX") and remove it
 * again, leaving its unique name in buf for the merge to create. */
static bool sibling_tmp(const char *path, char *buf, size_t n)
{
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;          /* "OUT/" names OUT */
    size_t dl = len;
    while (dl > 0 && path[dl - 1] != '/') dl--;
    if (snprintf(buf, n, "%.*s.%.*s.alloy-merge-XXXXXX", (int)dl, path, (int)(len - dl), path + dl) >= (int)n)
        return false;
    if (!mkdtemp(buf)) return false;
    rmdir(buf);
    return true;
}

int cmd_merge(int argc, char **argv)
{
    const char *recipe_path = NULL, *out = NULL;
    bool check = false, quiet = false, list_models = false;
    al_merge_opts o = {.comm = cli_comm, .fail_tensor = getenv("ALLOY_TEST_FAIL_TENSOR")};
    long threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (cli_is_help(a)) { fputs(k_help, stdout); return 0; }
        else if (!strcmp(a, "--check")) check = true;
        else if (!strcmp(a, "--dry-run")) o.dry_run = true;
        else if (!strcmp(a, "--list-models")) list_models = true;
        else if (!strcmp(a, "--strict")) o.strict = true;
        else if (!strcmp(a, "--force")) o.force = true;
        else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) quiet = true;
        else if (!strcmp(a, "--mergekit-dtype")) o.compat_dtype = true;
        else if (!strcmp(a, "--allow-crimes")) o.allow_crimes = true;
        else if (!strcmp(a, "-o") || !strcmp(a, "--out")) {
            if (!has_val) return cli_usage("merge", "%s needs a directory", a);
            out = argv[++i];
        } else if (!strcmp(a, "--models")) {
            if (!has_val) return cli_usage("merge", "--models needs a directory");
            o.models_dir = argv[++i];
        } else if (!strcmp(a, "--threads")) {
            if (!has_val || !cli_parse_int(argv[++i], 1, 4096, &threads)) return cli_usage("merge", "--threads takes a count >= 1");
        } else if (!strcmp(a, "--seed")) {
            long v;
            if (!has_val || !cli_parse_int(argv[++i], 0, 0x7fffffffffffffffL, &v)) return cli_usage("merge", "--seed takes an integer >= 0");
            o.seed = (uint64_t)v;
        } else if (!strcmp(a, "--shard-size")) {
            if (!has_val || !cli_parse_size(argv[++i], &o.shard_size) || !o.shard_size)
                return cli_usage("merge", "--shard-size takes a size such as 5GB or 500MiB");
        } else if (!strcmp(a, "--out-format")) {
            if (!has_val) return cli_usage("merge", "--out-format needs a value");
            const char *f = argv[++i];
            if (!strcmp(f, "safetensors")) o.out_format = AL_FMT_SAFETENSORS;
            else if (!strcmp(f, "hdf5") || !strcmp(f, "h5")) o.out_format = AL_FMT_HDF5;
            else return cli_usage("merge", "unknown --out-format '%s' (safetensors or hdf5)", f);
        } else if (a[0] == '-' && a[1]) return cli_usage("merge", "unknown option '%s'", a);
        else if (!recipe_path) recipe_path = a;
        else return cli_usage("merge", "unexpected argument '%s'", a);
    }
    if (!recipe_path) return cli_usage("merge", "missing RECIPE");
    if (!check && !o.dry_run && !list_models && !out) return cli_usage("merge", "missing -o OUT (or --check / --dry-run)");
#ifdef _OPENMP
    if (threads > 0) omp_set_num_threads((int)threads);
#endif
    al_error err = {0};
    al_recipe *r = NULL;
    al_strvec errors = {0}, warnings = {0};
    al_facts *stage = NULL;
    char tmp_merge[4200];
    bool force_out = o.force;
    int rc = 0;
    size_t len = 0;
    char *text = read_text(recipe_path, &len, &err);
    if (!text) return cli_report(&err);
    al_recipe_opts ro = {.strict = o.strict, .errors = &errors};
    if (al_recipe_parse_string(text, len, recipe_path, &ro, &r, &err) != AL_OK) {
        if (errors.n > 1) {
            for (size_t i = 0; i < errors.n; i++) fprintf(stderr, "alloy: error: %s\n", errors.items[i]);
            rc = al_status_exit_code(err.code);
        } else {
            rc = cli_report(&err);
        }
        goto done;
    }
    print_warnings(&r->warnings);
    /* an `edits:` stage is read now, so that its errors come before any tensor */
    if (r->docs[r->n_docs - 1].has_edits) {
        if (al_comm_multi(cli_comm)) {
            al_errorf(&err, AL_ERR_UNSUPPORTED, "%s: an `edits:` stage does not run under MPI yet; merge "
                      "with mpirun, then run `alloy edit` on the output", recipe_path);
            rc = cli_report(&err);
            goto done;
        }
        cli_edit_opts eo = {0};
        if (al_facts_parse_stage(text, len, recipe_path, &stage, &err) != AL_OK ||
            cmd_edit_precheck(stage, &eo, &err) != AL_OK) {
            rc = cli_report(&err);
            goto done;
        }
    }
    if (list_models) {
        print_models(r);
        goto done;
    }
    if (check) {
        printf("%s: ok (%zu document%s, %zu warning%s", recipe_path, r->n_docs, r->n_docs == 1 ? "" : "s",
               r->warnings.n, r->warnings.n == 1 ? "" : "s");
        if (stage) printf(", then %zu edit%s", stage->n, stage->n == 1 ? "" : "s");
        printf(")\n");
        goto done;
    }
    o.recipe_text = text;
    o.recipe_len = len;
    o.warnings = &warnings;
    if (o.dry_run) {
        for (size_t d = 0; d < r->n_docs; d++) {
            al_merge_job *j = NULL;
            if (al_merge_job_build(r, d, &o, &j, &err) != AL_OK) { rc = cli_report(&err); break; }
            print_plan(j, d, r->n_docs);
            al_merge_job_free(j);
        }
        if (stage)
            printf("then: %zu fact edit%s (%s) on the merged model\n", stage->n, stage->n == 1 ? "" : "s",
                   stage->settings.method ? stage->settings.method : "rome");
        print_warnings(&warnings);
        goto done;
    }
    double lines_alpha = NAN;
    o.lines_alpha_out = &lines_alpha;
    /* the crash-consistency test slows the merge down to kill it at many points */
    const char *throttle = getenv("ALLOY_TEST_THROTTLE_MS");
    progress_state ps = {isatty(2), quiet, throttle ? atol(throttle) : 0, time(NULL), time(NULL)};
    if (!quiet || ps.throttle_ms > 0) { o.progress = on_progress; o.progress_ud = &ps; }
    if (!stage) {
        if (al_merge_run(r, out, &o, &err) != AL_OK) rc = cli_report(&err);
        print_warnings(&warnings);
    } else {
        /* merge into a hidden sibling, edit it into OUT (atomic), drop the sibling */
        struct stat sb;
        if (!o.force && stat(out, &sb) == 0) {
            al_errorf(&err, AL_ERR_USAGE, "%s already exists (use --force to replace it)", out);
            rc = cli_report(&err);
            goto done;
        }
        if (!sibling_tmp(out, tmp_merge, sizeof tmp_merge)) {
            al_errorf(&err, AL_ERR_IO, "%s: cannot create a temporary directory beside it: %s", out, strerror(errno));
            rc = cli_report(&err);
            goto done;
        }
        o.force = true;    /* the reserved temporary name */
        int tmp_slot = al_emergency_temp(tmp_merge);
        if (al_merge_run(r, tmp_merge, &o, &err) != AL_OK) rc = cli_report(&err);
        print_warnings(&warnings);
        if (rc == 0) {
            static const char *const carry[] = {"README.md", "alloy_recipe.yaml", NULL};
            char label[4200];
            snprintf(label, sizeof label, "merge of %s", recipe_path);
            cli_edit_opts eo = {.model = tmp_merge, .out = out, .force = force_out, .quiet = quiet, .model_label = label,
                                .carry = carry};
            rc = cmd_edit_facts(stage, &eo);
        }
        al_remove_tree(tmp_merge);
        al_emergency_forget(tmp_slot);
    }
    if (rc == 0 && !isnan(lines_alpha)) fprintf(stderr, "merge: LiNeS alpha (auto) = %.6g\n", lines_alpha);
    if (rc == 0 && !quiet) fprintf(stderr, "merge: wrote %s\n", out);
done:
    al_strvec_free(&errors);
    al_strvec_free(&warnings);
    al_recipe_free(r);
    al_facts_free(stage);
    free(text);
    return rc;
}
