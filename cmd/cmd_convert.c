/* cmd/cmd_convert.c: `alloy convert IN OUT [--dtype D] [--format F] [--shard-size S] [--compress N]`.
 *
 * Streams tensor by tensor: each tensor is copied (zero-copy from the mapping when the
 * dtype is unchanged) or converted in bounded chunks of rows, so memory stays at one
 * staging buffer whatever the model size. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/alloc.h"
#include "../io/checkpoint.h"
#include "../io/hfdir.h"
#include "cli.h"

static const char k_help[] =
    "usage: alloy convert IN OUT [--dtype f32|f16|bf16] [--format safetensors|hdf5]\n"
    "                            [--shard-size SIZE] [--compress N] [--force]\n"
    "\n"
    "Convert a checkpoint (a .safetensors/.h5 file or a Hugging Face directory) to\n"
    "another format, dtype or sharding. If OUT ends in .safetensors or .h5 a single\n"
    "file is written; otherwise OUT is a directory with model.safetensors (or shards\n"
    "model-0000i-of-0000N.safetensors + index, or model.h5), plus config.json and the\n"
    "tokenizer files of IN when IN is a directory.\n"
    "\n"
    "  --dtype D        convert float tensors to f32, f16 or bf16 (round to nearest even);\n"
    "                   integer tensors are copied unchanged\n"
    "  --format F       safetensors (default) or hdf5; default from OUT's extension\n"
    "  --shard-size S   maximum bytes per safetensors shard, e.g. 5GB, 500MiB (directory output)\n"
    "  --compress N     HDF5 only: deflate level 1-9 (zlib), chunked datasets\n"
    "  --force          replace OUT if it exists\n"
    "\n"
    "The output appears at OUT only when complete: a failed or interrupted run leaves\n"
    "nothing there. Inputs are opened read-only.\n";

#define STAGE_BYTES (8u << 20)

static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

int cmd_convert(int argc, char **argv)
{
    const char *in = NULL, *out = NULL;
    al_writer_opts wo = {0};
    al_dtype target = AL_F32;
    bool have_target = false, have_format = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) { fputs(k_help, stdout); return 0; }
        bool has_val = i + 1 < argc;
        if (strcmp(a, "--dtype") == 0) {
            if (!has_val || !al_dtype_from_user(argv[++i], &target) || !al_dtype_is_float(target) || target == AL_F64)
                return cli_usage("convert", "--dtype takes f32, f16 or bf16");
            have_target = true;
        } else if (strcmp(a, "--format") == 0) {
            if (!has_val) return cli_usage("convert", "--format needs a value");
            const char *f = argv[++i];
            if (strcmp(f, "safetensors") == 0) wo.format = AL_FMT_SAFETENSORS;
            else if (strcmp(f, "hdf5") == 0 || strcmp(f, "h5") == 0) wo.format = AL_FMT_HDF5;
            else return cli_usage("convert", "unknown --format '%s' (safetensors or hdf5)", f);
            have_format = true;
        } else if (strcmp(a, "--shard-size") == 0) {
            if (!has_val || !cli_parse_size(argv[++i], &wo.shard_size) || !wo.shard_size)
                return cli_usage("convert", "--shard-size takes a size such as 5GB or 500MiB");
        } else if (strcmp(a, "--compress") == 0) {
            long v;
            if (!has_val || !cli_parse_int(argv[++i], 0, 9, &v))
                return cli_usage("convert", "--compress takes a level from 0 to 9");
            wo.compress = (int)v;
        } else if (strcmp(a, "--force") == 0) {
            wo.force = true;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage("convert", "unknown option '%s'", a);
        } else if (!in) in = a;
        else if (!out) out = a;
        else return cli_usage("convert", "unexpected argument '%s'", a);
    }
    if (!in || !out) return cli_usage("convert", "needs IN and OUT");
    bool file_out = ends_with(out, ".safetensors") || ends_with(out, ".h5") || ends_with(out, ".hdf5");
    if (!have_format) wo.format = (ends_with(out, ".h5") || ends_with(out, ".hdf5")) ? AL_FMT_HDF5 : AL_FMT_SAFETENSORS;
    wo.dir = !file_out;
    if (wo.compress && wo.format != AL_FMT_HDF5) return cli_usage("convert", "--compress applies to hdf5 output only");
    if (wo.shard_size && (file_out || wo.format != AL_FMT_SAFETENSORS))
        return cli_usage("convert", "--shard-size applies to a safetensors directory output");
    const char *inputs[] = {in, NULL};
    wo.inputs = inputs;

    al_error err = {0};
    al_ckpt *c = NULL;
    al_writer *w = NULL;
    void *stage = NULL;
    int rc = 0;
    /* Test hook for the crash-consistency tests: pause between tensors. */
    const char *throttle = getenv("ALLOY_TEST_THROTTLE_MS");
    long throttle_ms = throttle ? atol(throttle) : 0;

    if (al_ckpt_open(&c, in, &err) != AL_OK) goto fail;
    if (al_writer_open(&w, out, &wo, &err) != AL_OK) goto fail;
    size_t n = al_ckpt_count(c);
    uint64_t max_row = 0;
    for (size_t i = 0; i < n; i++) {
        const al_tensor_info *t = al_ckpt_info(c, i);
        if (t->tied) continue;   /* tied heads stay implicit, as transformers saves them */
        al_dtype dt = have_target && al_dtype_is_float(t->dtype) ? target : t->dtype;
        if (al_writer_add(w, t->name, dt, t->ndim, t->shape, &err) != AL_OK) goto fail;
        int64_t rows = t->ndim ? t->shape[0] : 1;
        int64_t rn = al_shape_row_numel(t->ndim, t->shape);
        uint64_t rb = (uint64_t)rn * (al_dtype_bits(dt) > al_dtype_bits(t->dtype) ? al_dtype_bits(dt) : al_dtype_bits(t->dtype)) / 8;
        if (rows && rb > max_row) max_row = rb;
    }
    if (al_writer_begin(w, &err) != AL_OK) goto fail;
    size_t stage_bytes = max_row > STAGE_BYTES ? (size_t)max_row : STAGE_BYTES;
    if (!(stage = al_malloc_aligned(stage_bytes))) { al_errorf(&err, AL_ERR_NOMEM, "out of memory"); goto fail; }

    for (size_t i = 0; i < n; i++) {
        const al_tensor_info *t = al_ckpt_info(c, i);
        if (t->tied) continue;
        al_dtype dt = have_target && al_dtype_is_float(t->dtype) ? target : t->dtype;
        al_view v;
        if (dt == t->dtype && al_ckpt_view(c, i, &v, NULL) == AL_OK) {
            if (al_writer_write(w, v.data, t->nbytes, &err) != AL_OK) goto fail;
        } else {
            int64_t rows = t->ndim ? t->shape[0] : 1;
            int64_t rn = al_shape_row_numel(t->ndim, t->shape);
            uint64_t rb = (uint64_t)rn * (al_dtype_bits(dt) > al_dtype_bits(t->dtype) ? al_dtype_bits(dt) : al_dtype_bits(t->dtype)) / 8;
            int64_t step = rb ? (int64_t)(stage_bytes / rb) : rows;
            if (step < 1) step = 1;
            for (int64_t r = 0; r < rows; r += step) {
                int64_t k = rows - r < step ? rows - r : step;
                if (al_ckpt_read(c, i, r, k, stage, dt, &err) != AL_OK) goto fail;
                if (al_writer_write(w, stage, (uint64_t)(k * rn) * al_dtype_bits(dt) / 8, &err) != AL_OK) goto fail;
            }
        }
        if (throttle_ms > 0) usleep((useconds_t)throttle_ms * 1000);
    }
    if (wo.dir) {
        struct stat st;
        if (stat(in, &st) == 0 && S_ISDIR(st.st_mode) &&
            al_hf_copy_files(in, al_writer_tmpdir(w), have_target ? al_dtype_torch_name(target) : NULL, -1, &err) != AL_OK)
            goto fail;
    }
    if (al_writer_commit(w, &err) != AL_OK) goto fail;
    goto done;
fail:
    rc = cli_report(&err);
done:
    al_free(stage);
    al_writer_free(w);
    al_ckpt_close(c);
    return rc;
}
