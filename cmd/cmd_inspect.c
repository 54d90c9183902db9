/* cmd/cmd_inspect.c: `alloy inspect PATH [--json] [--stats]`. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/alloc.h"
#include "../io/checkpoint.h"
#include "cli.h"

static const char k_help[] =
    "usage: alloy inspect PATH [--json] [--stats]\n"
    "\n"
    "List the tensors of a checkpoint: a .safetensors or .h5 file, or a Hugging Face\n"
    "directory (sharded or not). Prints each tensor's name, dtype, shape and size, then\n"
    "totals, the parameter count and the file metadata. Reads headers only, unless\n"
    "--stats is given.\n"
    "\n"
    "  --json    machine-readable output on stdout\n"
    "  --stats   per-tensor min, max, mean, std and NaN count (reads every value)\n";

typedef struct {
    double min, max, mean, m2;   /* m2: sum of squared deviations (Welford/Chan) */
    uint64_t n, nan;
} stats;

/* Chan et al. parallel combination of (n, mean, m2). */
static void stats_merge(stats *a, const stats *b)
{
    if (!b->n) { a->nan += b->nan; return; }
    if (!a->n) { uint64_t nan = a->nan; *a = *b; a->nan += nan; return; }
    double n = (double)(a->n + b->n), d = b->mean - a->mean;
    a->mean += d * (double)b->n / n;
    a->m2 += b->m2 + d * d * (double)a->n * (double)b->n / n;
    a->n += b->n;
    a->nan += b->nan;
    if (b->min < a->min) a->min = b->min;
    if (b->max > a->max) a->max = b->max;
}

static al_status tensor_stats(al_ckpt *c, size_t i, stats *st, al_error *err)
{
    const al_tensor_info *t = al_ckpt_info(c, i);
    int64_t rows = t->ndim ? t->shape[0] : 1;
    int64_t rn = al_shape_row_numel(t->ndim, t->shape);
    int64_t step = rn ? (1 << 20) / rn : rows;
    if (step < 1) step = 1;
    memset(st, 0, sizeof *st);
    if (!rows || !rn) return AL_OK;
    float *buf = al_malloc((size_t)((step < rows ? step : rows) * rn) * sizeof(float));
    if (!buf) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    al_status s = AL_OK;
    for (int64_t r = 0; r < rows && s == AL_OK; r += step) {
        int64_t k = rows - r < step ? rows - r : step;
        if ((s = al_ckpt_read(c, i, r, k, buf, AL_F32, err)) != AL_OK) break;
        stats b = {0};
        double sum = 0;
        for (int64_t j = 0; j < k * rn; j++) {
            float v = buf[j];
            if (isnan(v)) { b.nan++; continue; }
            if (!b.n || v < b.min) b.min = v;
            if (!b.n || v > b.max) b.max = v;
            sum += v;
            b.n++;
        }
        if (b.n) {
            b.mean = sum / (double)b.n;
            for (int64_t j = 0; j < k * rn; j++)
                if (!isnan(buf[j])) b.m2 += ((double)buf[j] - b.mean) * ((double)buf[j] - b.mean);
        }
        stats_merge(st, &b);
    }
    al_free(buf);
    return s;
}

static json_t *num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

int cmd_inspect(int argc, char **argv)
{
    const char *path = NULL;
    bool as_json = false, want_stats = false;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) { fputs(k_help, stdout); return 0; }
        else if (strcmp(argv[i], "--json") == 0) as_json = true;
        else if (strcmp(argv[i], "--stats") == 0) want_stats = true;
        else if (argv[i][0] == '-' && argv[i][1]) return cli_usage("inspect", "unknown option '%s'", argv[i]);
        else if (!path) path = argv[i];
        else return cli_usage("inspect", "unexpected argument '%s'", argv[i]);
    }
    if (!path) return cli_usage("inspect", "missing PATH");

    al_error err = {0};
    al_ckpt *c = NULL;
    if (al_ckpt_open(&c, path, &err) != AL_OK) return cli_report(&err);
    size_t n = al_ckpt_count(c);
    json_t *root = as_json ? json_object() : NULL, *arr = as_json ? json_array() : NULL;
    char b1[64], b2[64], shp[160];
    int rc = 0;
    uint64_t dtype_count[AL_DTYPE_COUNT] = {0};

    if (!as_json) printf("%-60s %-6s %-22s %12s%s\n", "tensor", "dtype", "shape", "bytes",
                         want_stats ? "         min          max         mean          std   nan" : "");
    for (size_t i = 0; i < n; i++) {
        const al_tensor_info *t = al_ckpt_info(c, i);
        if (!t->tied) dtype_count[t->dtype]++;
        stats st = {0};
        if (want_stats && al_dtype_is_float(t->dtype)) {
            if (tensor_stats(c, i, &st, &err) != AL_OK) { rc = cli_report(&err); goto done; }
        }
        double sd = st.n ? sqrt(st.m2 / (double)st.n) : NAN;
        al_shape_str(shp, sizeof shp, t->ndim, t->shape);
        if (as_json) {
            json_t *o = json_object(), *sh = json_array();
            for (int d = 0; d < t->ndim; d++) json_array_append_new(sh, json_integer(t->shape[d]));
            json_object_set_new(o, "name", json_string(t->name));
            json_object_set_new(o, "dtype", json_string(al_dtype_name(t->dtype)));
            json_object_set_new(o, "shape", sh);
            json_object_set_new(o, "bytes", json_integer((json_int_t)t->nbytes));
            if (t->tied) json_object_set_new(o, "tied", json_true());
            if (want_stats && al_dtype_is_float(t->dtype)) {
                json_t *s = json_object();
                json_object_set_new(s, "min", st.n ? num_or_null(st.min) : json_null());
                json_object_set_new(s, "max", st.n ? num_or_null(st.max) : json_null());
                json_object_set_new(s, "mean", st.n ? num_or_null(st.mean) : json_null());
                json_object_set_new(s, "std", num_or_null(sd));
                json_object_set_new(s, "nan", json_integer((json_int_t)st.nan));
                json_object_set_new(o, "stats", s);
            }
            json_array_append_new(arr, o);
        } else {
            printf("%-60s %-6s %-22s %12llu", t->name, al_dtype_name(t->dtype), shp,
                   (unsigned long long)t->nbytes);
            if (want_stats && al_dtype_is_float(t->dtype))
                printf(" %12.5g %12.5g %12.5g %12.5g %5llu", st.min, st.max, st.mean, sd,
                       (unsigned long long)st.nan);
            if (t->tied) printf("  (tied to the input embedding)");
            putchar('\n');
        }
    }
    uint64_t bytes = al_ckpt_total_bytes(c), params = al_ckpt_param_count(c);
    if (as_json) {
        json_object_set_new(root, "path", json_string(path));
        json_object_set_new(root, "format", json_string(al_format_name(al_ckpt_format(c))));
        json_t *files = json_array();
        for (size_t f = 0; f < al_ckpt_file_count(c); f++)
            json_array_append_new(files, json_string(al_ckpt_file_path(c, f)));
        json_object_set_new(root, "files", files);
        json_object_set_new(root, "tensor_count", json_integer((json_int_t)n));
        json_object_set_new(root, "parameter_count", json_integer((json_int_t)params));
        json_object_set_new(root, "total_bytes", json_integer((json_int_t)bytes));
        json_t *meta = json_object();
        for (size_t m = 0; m < al_ckpt_meta_count(c); m++) {
            const char *k, *v;
            al_ckpt_meta(c, m, &k, &v);
            json_object_set_new(meta, k, json_string(v));
        }
        json_object_set_new(root, "metadata", meta);
        json_object_set_new(root, "tensors", arr);
        arr = NULL;
        json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
    } else {
        printf("\n%s: %s, %zu file%s, %zu tensors, %s parameters, %s\n", path,
               al_format_name(al_ckpt_format(c)), al_ckpt_file_count(c), al_ckpt_file_count(c) == 1 ? "" : "s",
               n, cli_human_count(b1, sizeof b1, params), cli_human_bytes(b2, sizeof b2, bytes));
        printf("dtypes:");
        for (int d = 0; d < AL_DTYPE_COUNT; d++)
            if (dtype_count[d]) printf(" %s x%llu", al_dtype_name((al_dtype)d), (unsigned long long)dtype_count[d]);
        putchar('\n');
        for (size_t m = 0; m < al_ckpt_meta_count(c); m++) {
            const char *k, *v;
            al_ckpt_meta(c, m, &k, &v);
            printf("metadata: %s = %s\n", k, v);
        }
    }
done:
    json_decref(arr);
    json_decref(root);
    al_ckpt_close(c);
    return rc;
}
