/* tests/test_checkpoint.c: the format-agnostic layer: sharded directories and their
 * index, tied heads, converted row reads, and the atomic streaming writer, across
 * safetensors and HDF5. */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "util/testutil.h"

#include "../core/alloc.h"
#include "../io/checkpoint.h"

static char g_tmp[256];

static int setup(void **state)
{
    (void)state;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/alloy-test-ckpt.XXXXXX");
    return mkdtemp(g_tmp) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return tu_rm_rf(g_tmp);
}

static char *tpath(const char *name)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_tmp, name);
    return buf[k];
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static bool exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* A small model: names, dtypes, shapes; data is a deterministic function of (tensor, index). */
typedef struct { const char *name; al_dtype dtype; int ndim; int64_t shape[3]; } spec;
static const spec k_model[] = {
    {"transformer.wte.weight", AL_F32, 2, {50, 16}},
    {"transformer.wpe.weight", AL_F16, 2, {8, 16}},
    {"transformer.h.0.attn.c_attn.weight", AL_BF16, 2, {16, 48}},
    {"transformer.h.0.attn.c_attn.bias", AL_F32, 1, {48}},
    {"transformer.h.0.mlp.c_fc.weight", AL_F32, 2, {16, 64}},
    {"transformer.h.0.ln_1.weight", AL_F32, 1, {16}},
    {"step", AL_I64, 0, {0}},
    {"transformer.empty", AL_F32, 2, {0, 4}},
    {"transformer.ln_f.weight", AL_F16, 1, {16}},
};
#define NSPEC (sizeof k_model / sizeof k_model[0])

static uint64_t spec_bytes(const spec *s)
{
    int64_t n = 1;
    for (int d = 0; d < s->ndim; d++) n *= s->shape[d];
    return (uint64_t)n * al_dtype_bits(s->dtype) / 8;
}

static void fill(const spec *s, size_t ti, void *buf)
{
    uint64_t nb = spec_bytes(s);
    int64_t n = (int64_t)(nb * 8 / al_dtype_bits(s->dtype));
    for (int64_t i = 0; i < n; i++) {
        float v = sinf((float)(i * 7 + (int64_t)ti * 131)) * 3.0f;
        if (i == 3) v = NAN;
        if (i == 5) v = 1e-7f;    /* subnormal in F16 */
        switch (s->dtype) {
        case AL_F32: ((float *)buf)[i] = v; break;
        case AL_F16: ((uint16_t *)buf)[i] = al_f32_to_f16(v); break;
        case AL_BF16: ((uint16_t *)buf)[i] = al_f32_to_bf16(v); break;
        case AL_I64: ((int64_t *)buf)[i] = 1234567890123ll; break;
        default: fail();
        }
    }
}

/* Write k_model with the given options, splitting each tensor's data into odd pieces. */
static al_status write_model(const char *path, const al_writer_opts *o, al_error *err)
{
    al_writer *w = NULL;
    al_status s = al_writer_open(&w, path, o, err);
    if (s != AL_OK) return s;
    for (size_t i = 0; i < NSPEC && s == AL_OK; i++)
        s = al_writer_add(w, k_model[i].name, k_model[i].dtype, k_model[i].ndim, k_model[i].shape, err);
    if (s == AL_OK) s = al_writer_begin(w, err);
    for (size_t i = 0; i < NSPEC && s == AL_OK; i++) {
        uint64_t nb = spec_bytes(&k_model[i]);
        char *buf = malloc(nb + 8);
        fill(&k_model[i], i, buf);
        unsigned es = al_dtype_bits(k_model[i].dtype) / 8;
        uint64_t off = 0, piece = es * 3;
        while (s == AL_OK && off < nb) {
            uint64_t k = nb - off < piece ? nb - off : piece;
            s = al_writer_write(w, buf + off, k, err);
            off += k;
            piece = piece * 2 + es;
        }
        free(buf);
    }
    if (s == AL_OK) s = al_writer_commit(w, err);
    al_writer_free(w);
    return s;
}

/* Every tensor reads back with the bytes written. */
static void check_model(const char *path)
{
    al_error err = {0};
    al_ckpt *c = NULL;
    if (al_ckpt_open(&c, path, &err) != AL_OK) fail_msg("%s", err.msg);
    for (size_t i = 0; i < NSPEC; i++) {
        long k = al_ckpt_find(c, k_model[i].name);
        assert_true(k >= 0);
        const al_tensor_info *t = al_ckpt_info(c, (size_t)k);
        assert_int_equal(t->dtype, k_model[i].dtype);
        assert_true(al_shape_equal(t->ndim, t->shape, k_model[i].ndim, k_model[i].shape));
        uint64_t nb = spec_bytes(&k_model[i]);
        char *want = malloc(nb + 8), *got = malloc(nb + 8);
        fill(&k_model[i], i, want);
        int64_t rows = t->ndim ? t->shape[0] : 1;
        if (al_ckpt_read(c, (size_t)k, 0, rows, got, t->dtype, &err) != AL_OK) fail_msg("%s", err.msg);
        assert_memory_equal(want, got, nb);
        free(want);
        free(got);
    }
    al_ckpt_close(c);
}

static void test_single_file_roundtrip(void **state)
{
    (void)state;
    al_error err = {0};
    al_writer_opts o = {.format = AL_FMT_SAFETENSORS};
    if (write_model(tpath("one.safetensors"), &o, &err) != AL_OK) fail_msg("%s", err.msg);
    check_model(tpath("one.safetensors"));
    o.format = AL_FMT_HDF5;
    if (write_model(tpath("one.h5"), &o, &err) != AL_OK) fail_msg("%s", err.msg);
    check_model(tpath("one.h5"));
    o.compress = 6;
    if (write_model(tpath("onez.h5"), &o, &err) != AL_OK) fail_msg("%s", err.msg);
    check_model(tpath("onez.h5"));
}

static void test_sharded_roundtrip(void **state)
{
    (void)state;
    al_error err = {0};
    al_writer_opts o = {.format = AL_FMT_SAFETENSORS, .dir = true, .shard_size = 3000};
    if (write_model(tpath("sharded"), &o, &err) != AL_OK) fail_msg("%s", err.msg);
    assert_true(exists(tpath("sharded/model.safetensors.index.json")));
    assert_true(exists(tpath("sharded/model-00001-of-00004.safetensors")));
    assert_true(exists(tpath("sharded/model-00004-of-00004.safetensors")));
    assert_false(exists(tpath("sharded/model-00005-of-00005.safetensors")));
    check_model(tpath("sharded"));
    al_ckpt *c = NULL;
    assert_int_equal(al_ckpt_open(&c, tpath("sharded"), &err), AL_OK);
    assert_int_equal(al_ckpt_file_count(c), 4);
    uint64_t total = 0;
    for (size_t i = 0; i < NSPEC; i++) total += spec_bytes(&k_model[i]);
    assert_int_equal(al_ckpt_total_bytes(c), total);
    al_ckpt_close(c);
    /* the index's total_size is the sum of tensor bytes */
    FILE *f = fopen(tpath("sharded/model.safetensors.index.json"), "r");
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char want[64];
    snprintf(want, sizeof want, "\"total_size\": %llu", (unsigned long long)total);
    assert_non_null(strstr(buf, want));

    /* no sharding: a directory with one model.safetensors, no index */
    o.shard_size = 0;
    if (write_model(tpath("unsharded"), &o, &err) != AL_OK) fail_msg("%s", err.msg);
    assert_true(exists(tpath("unsharded/model.safetensors")));
    assert_false(exists(tpath("unsharded/model.safetensors.index.json")));
    check_model(tpath("unsharded"));
}

/* Converted row ranges equal the scalar conversion of the stored values. */
static void test_read_rows_converted(void **state)
{
    (void)state;
    al_error err = {0};
    al_writer_opts o = {.format = AL_FMT_HDF5};
    if (write_model(tpath("conv.h5"), &o, &err) != AL_OK) fail_msg("%s", err.msg);
    const char *paths[] = {tpath("one.safetensors"), tpath("conv.h5")};
    for (int p = 0; p < 2; p++) {
        al_ckpt *c = NULL;
        if (al_ckpt_open(&c, paths[p], &err) != AL_OK) fail_msg("%s", err.msg);
        long k = al_ckpt_find(c, "transformer.h.0.attn.c_attn.weight");   /* BF16 [16, 48] */
        assert_true(k >= 0);
        uint16_t raw[16 * 48];
        fill(&k_model[2], 2, raw);
        float got[5 * 48];
        assert_int_equal(al_ckpt_read(c, (size_t)k, 7, 5, got, AL_F32, &err), AL_OK);
        for (int i = 0; i < 5 * 48; i++) {
            float want = al_bf16_to_f32(raw[7 * 48 + i]);
            assert_true(memcmp(&want, &got[i], 4) == 0);
        }
        assert_int_equal(al_ckpt_read(c, (size_t)k, 12, 5, got, AL_F32, &err), AL_ERR_USAGE);
        long s = al_ckpt_find(c, "step");
        assert_int_equal(al_ckpt_read(c, (size_t)s, 0, 1, got, AL_F32, &err), AL_ERR_DTYPE);
        assert_int_equal(al_ckpt_find(c, "no.such.tensor"), -1);
        al_ckpt_close(c);
    }
}

static void test_tied_head(void **state)
{
    (void)state;
    al_error err = {0};
    al_writer_opts o = {.format = AL_FMT_SAFETENSORS, .dir = true};
    if (write_model(tpath("tied"), &o, &err) != AL_OK) fail_msg("%s", err.msg);
    const char *cfgs[] = {
        "{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": \"gpt2\"}",
        "{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": \"gpt2\", \"tie_word_embeddings\": false}",
        "{\"architectures\": [\"GPT2Model\"], \"model_type\": \"gpt2\"}",
        "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\"}",
    };
    const bool want_tied[] = {true, false, false, false};
    for (int k = 0; k < 4; k++) {
        write_text(tpath("tied/config.json"), cfgs[k]);
        al_ckpt *c = NULL;
        if (al_ckpt_open(&c, tpath("tied"), &err) != AL_OK) fail_msg("%s", err.msg);
        long h = al_ckpt_find(c, "lm_head.weight");
        assert_int_equal(h >= 0, want_tied[k]);
        if (h >= 0) {
            assert_true(al_ckpt_info(c, (size_t)h)->tied);
            float a[16], b[16];
            assert_int_equal(al_ckpt_read(c, (size_t)h, 49, 1, a, AL_F32, &err), AL_OK);
            assert_int_equal(al_ckpt_read(c, (size_t)al_ckpt_find(c, "transformer.wte.weight"), 49, 1, b, AL_F32, &err), AL_OK);
            assert_memory_equal(a, b, sizeof a);
            /* aliases are not counted twice */
            uint64_t total = 0;
            for (size_t i = 0; i < NSPEC; i++) total += spec_bytes(&k_model[i]);
            assert_int_equal(al_ckpt_total_bytes(c), total);
        }
        al_ckpt_close(c);
    }
    write_text(tpath("tied/config.json"), "{\"architectures\": [");
    al_ckpt *c = NULL;
    assert_int_equal(al_ckpt_open(&c, tpath("tied"), &err), AL_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "config.json"));
}

/* The real HF GPT2LMHeadModel file stores no lm_head: it must appear as tied. */
static void test_real_fake_gpt2(void **state)
{
    (void)state;
    al_error err = {0};
    al_ckpt *c = NULL;
    if (al_ckpt_open(&c, "tests/fixtures/hf/fake_gpt2", &err) != AL_OK) fail_msg("%s", err.msg);
    long h = al_ckpt_find(c, "lm_head.weight");
    assert_true(h >= 0);
    const al_tensor_info *t = al_ckpt_info(c, (size_t)h);
    assert_true(t->tied);
    assert_int_equal(t->shape[0], 50257);
    assert_int_equal(t->shape[1], 2);
    al_ckpt_close(c);
    /* GPT2Model (no head): nothing added */
    if (al_ckpt_open(&c, "tests/fixtures/hf/tiny_gpt2", &err) != AL_OK) fail_msg("%s", err.msg);
    assert_int_equal(al_ckpt_find(c, "lm_head.weight"), -1);
    al_ckpt_close(c);
}

static void copy_dir_files(const char *src, const char *dst)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", dst, src, dst);
    assert_int_equal(system(cmd), 0);
}

static void expect_open_error(const char *path, al_status code, const char *needle)
{
    al_error err = {0};
    al_ckpt *c = NULL;
    al_status s = al_ckpt_open(&c, path, &err);
    if (s != code || !strstr(err.msg, needle))
        fail_msg("open %s: status %d (%s), wanted %d with '%s'", path, s, err.msg, code, needle);
    assert_null(c);
}

static void test_bad_index(void **state)
{
    (void)state;
    const char *d = tpath("badidx");
    char idx[600];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", d);

    copy_dir_files(tpath("sharded"), d);
    write_text(idx, "{\"weight_map\": {\"a\": \"../one.safetensors\"}}");
    expect_open_error(d, AL_ERR_FORMAT, "not a file in the directory");

    write_text(idx, "{\"weight_map\": {\"a\": \"model-00009-of-00009.safetensors\"}}");
    expect_open_error(d, AL_ERR_IO, "does not exist");

    write_text(idx, "{\"weight_map\": {\"transformer.wte.weight\": \"model-00001-of-00004.safetensors\","
                    " \"ghost\": \"model-00001-of-00004.safetensors\"}}");
    expect_open_error(d, AL_ERR_FORMAT, "'ghost' in 'model-00001-of-00004.safetensors', but that shard does not contain it");

    /* shard 2 holds more tensors than the index lists */
    write_text(idx, "{\"weight_map\": {\"transformer.wpe.weight\": \"model-00002-of-00004.safetensors\"}}");
    expect_open_error(d, AL_ERR_FORMAT, "is in shard 'model-00002-of-00004.safetensors' but not in the index");

    /* the index puts a tensor in the wrong shard */
    write_text(idx, "{\"weight_map\": {\"transformer.wte.weight\": \"model-00002-of-00004.safetensors\","
                    " \"transformer.wpe.weight\": \"model-00001-of-00004.safetensors\"}}");
    expect_open_error(d, AL_ERR_FORMAT, "the index says");

    write_text(idx, "{\"weight_map\": [1, 2]}");
    expect_open_error(d, AL_ERR_FORMAT, "weight_map");

    write_text(idx, "{\"weight_map\": {\"a\": \"x\", \"a\": \"y\"}}");
    expect_open_error(d, AL_ERR_FORMAT, "model.safetensors.index.json");

    expect_open_error(tpath("nothing-here"), AL_ERR_IO, "nothing-here");
    assert_int_equal(mkdir(tpath("emptydir"), 0755), 0);
    expect_open_error(tpath("emptydir"), AL_ERR_NOTFOUND, "no checkpoint found");
}

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) if (e->d_name[0] != '.' || strncmp(e->d_name, ".alloy", 6) == 0 ||
                                  strstr(e->d_name, "alloy-tmp")) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

/* A writer freed before commit leaves nothing: no final path, no temporary. */
static void test_writer_abort_leaves_nothing(void **state)
{
    (void)state;
    assert_int_equal(mkdir(tpath("abort"), 0755), 0);
    for (int fmt = 0; fmt < 2; fmt++) {
        for (int dir = 0; dir < 2; dir++) {
            al_error err = {0};
            al_writer_opts o = {.format = fmt ? AL_FMT_HDF5 : AL_FMT_SAFETENSORS, .dir = dir, .shard_size = 0};
            al_writer *w = NULL;
            const char *out = tpath(dir ? "abort/out" : (fmt ? "abort/out.h5" : "abort/out.safetensors"));
            assert_int_equal(al_writer_open(&w, out, &o, &err), AL_OK);
            int64_t shape[2] = {4, 4};
            assert_int_equal(al_writer_add(w, "a", AL_F32, 2, shape, &err), AL_OK);
            assert_int_equal(al_writer_add(w, "b", AL_F32, 2, shape, &err), AL_OK);
            assert_int_equal(al_writer_begin(w, &err), AL_OK);
            float data[16] = {0};
            assert_int_equal(al_writer_write(w, data, sizeof data, &err), AL_OK);
            /* commit with a tensor missing fails and names it */
            assert_int_equal(al_writer_commit(w, &err), AL_ERR_INTERNAL);
            assert_non_null(strstr(err.msg, "'b'"));
            al_writer_free(w);
            assert_false(exists(out));
            assert_int_equal(count_entries(tpath("abort")), 0);
        }
    }
}

static void test_writer_refuses(void **state)
{
    (void)state;
    al_error err = {0};
    al_writer *w = NULL;
    al_writer_opts o = {.format = AL_FMT_SAFETENSORS, .dir = true};
    /* existing output without force */
    assert_int_equal(al_writer_open(&w, tpath("sharded"), &o, &err), AL_ERR_USAGE);
    assert_non_null(strstr(err.msg, "already exists"));
    /* onto an input, even with force, even spelled differently */
    const char *inputs[] = {tpath("sharded/"), NULL};
    o.force = true;
    o.inputs = inputs;
    assert_int_equal(al_writer_open(&w, tpath("sharded"), &o, &err), AL_ERR_USAGE);
    assert_non_null(strstr(err.msg, "input"));
    /* a directory that contains an input */
    const char *inputs2[] = {tpath("sharded/model-00001-of-00004.safetensors"), NULL};
    o.inputs = inputs2;
    assert_int_equal(al_writer_open(&w, tpath("sharded"), &o, &err), AL_ERR_USAGE);
    /* force replaces a non-input output */
    o.inputs = NULL;
    o.shard_size = 0;
    if (write_model(tpath("unsharded"), &o, &err) != AL_OK) fail_msg("%s", err.msg);
    check_model(tpath("unsharded"));
    /* writing more than declared is an error */
    o.force = false;
    assert_int_equal(al_writer_open(&w, tpath("over.safetensors"), &(al_writer_opts){0}, &err), AL_OK);
    int64_t shape[1] = {2};
    assert_int_equal(al_writer_add(w, "x", AL_F32, 1, shape, &err), AL_OK);
    assert_int_equal(al_writer_begin(w, &err), AL_OK);
    float v[3] = {1, 2, 3};
    assert_int_equal(al_writer_write(w, v, sizeof v, &err), AL_ERR_INTERNAL);
    al_writer_free(w);
    assert_false(exists(tpath("over.safetensors")));
}

/* safetensors -> HDF5 -> safetensors is bit-identical, through the public API. */
static void test_format_roundtrip(void **state)
{
    (void)state;
    al_error err = {0};
    const char *chain[] = {tpath("one.safetensors"), tpath("chain.h5"), tpath("chain.safetensors")};
    for (int step = 0; step < 2; step++) {
        al_ckpt *c = NULL;
        al_writer *w = NULL;
        if (al_ckpt_open(&c, chain[step], &err) != AL_OK) fail_msg("%s", err.msg);
        al_writer_opts o = {.format = step == 0 ? AL_FMT_HDF5 : AL_FMT_SAFETENSORS, .compress = step == 0 ? 4 : 0};
        assert_int_equal(al_writer_open(&w, chain[step + 1], &o, &err), AL_OK);
        for (size_t i = 0; i < al_ckpt_count(c); i++) {
            const al_tensor_info *t = al_ckpt_info(c, i);
            assert_int_equal(al_writer_add(w, t->name, t->dtype, t->ndim, t->shape, &err), AL_OK);
        }
        assert_int_equal(al_writer_begin(w, &err), AL_OK);
        for (size_t i = 0; i < al_ckpt_count(c); i++) {
            const al_tensor_info *t = al_ckpt_info(c, i);
            char *buf = malloc(t->nbytes + 8);
            int64_t rows = t->ndim ? t->shape[0] : 1;
            assert_int_equal(al_ckpt_read(c, i, 0, rows, buf, t->dtype, &err), AL_OK);
            assert_int_equal(al_writer_write(w, buf, t->nbytes, &err), AL_OK);
            free(buf);
        }
        if (al_writer_commit(w, &err) != AL_OK) fail_msg("%s", err.msg);
        al_writer_free(w);
        al_ckpt_close(c);
    }
    /* same header-independent content: every tensor's bytes */
    check_model(tpath("chain.safetensors"));
    FILE *a = fopen(chain[0], "rb"), *b = fopen(chain[2], "rb");
    char ba[65536], bb[65536];
    size_t na = fread(ba, 1, sizeof ba, a), nb = fread(bb, 1, sizeof bb, b);
    fclose(a);
    fclose(b);
    assert_int_equal(na, nb);
    assert_memory_equal(ba, bb, na);   /* same tensor order, same header: identical files */
}

/* Rewrite with replacements: two tensors replaced (F32 values rounded once to their
 * stored dtype), every other tensor byte-identical. */
static void test_copy_with(void **state)
{
    (void)state;
    al_error err = {0};
    al_ckpt *c = NULL;
    if (al_ckpt_open(&c, tpath("one.safetensors"), &err) != AL_OK) fail_msg("%s", err.msg);
    float wpe[8 * 16], fc[16 * 64];
    for (int i = 0; i < 8 * 16; i++) wpe[i] = 0.1f * (float)i + 1e-4f;
    for (int i = 0; i < 16 * 64; i++) fc[i] = -0.5f * (float)i;
    const char *names[2] = {"transformer.wpe.weight", "transformer.h.0.mlp.c_fc.weight"};
    const float *data[2] = {wpe, fc};
    al_writer *w = NULL;
    al_writer_opts o = {.format = AL_FMT_SAFETENSORS, .dir = true};
    assert_int_equal(al_writer_open(&w, tpath("rewritten"), &o, &err), AL_OK);
    if (al_ckpt_copy_with(c, w, names, data, 2, &err) != AL_OK) fail_msg("%s", err.msg);
    assert_int_equal(al_writer_commit(w, &err), AL_OK);
    al_writer_free(w);
    al_ckpt *r = NULL;
    if (al_ckpt_open(&r, tpath("rewritten"), &err) != AL_OK) fail_msg("%s", err.msg);
    for (size_t i = 0; i < NSPEC; i++) {
        long k = al_ckpt_find(r, k_model[i].name), k0 = al_ckpt_find(c, k_model[i].name);
        const al_tensor_info *t = al_ckpt_info(r, (size_t)k);
        assert_int_equal(t->dtype, k_model[i].dtype);
        int64_t rows = t->ndim ? t->shape[0] : 1;
        char *a = malloc(t->nbytes + 8), *b = malloc(t->nbytes + 8);
        assert_int_equal(al_ckpt_read(r, (size_t)k, 0, rows, a, t->dtype, &err), AL_OK);
        if (i == 1) {            /* F16 tensor: each value rounded once */
            for (int e = 0; e < 8 * 16; e++) assert_int_equal(((uint16_t *)a)[e], al_f32_to_f16(wpe[e]));
        } else if (i == 4) {
            assert_memory_equal(a, fc, sizeof fc);
        } else {
            assert_int_equal(al_ckpt_read(c, (size_t)k0, 0, rows, b, t->dtype, &err), AL_OK);
            assert_memory_equal(a, b, t->nbytes);
        }
        free(a);
        free(b);
    }
    al_ckpt_close(r);
    const char *bad[1] = {"no.such.tensor"};
    assert_int_equal(al_writer_open(&w, tpath("rewritten2"), &o, &err), AL_OK);
    assert_int_equal(al_ckpt_copy_with(c, w, bad, data, 1, &err), AL_ERR_NOTFOUND);
    assert_non_null(strstr(err.msg, "no.such.tensor"));
    al_writer_free(w);
    al_ckpt_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_file_roundtrip),
        cmocka_unit_test(test_sharded_roundtrip),
        cmocka_unit_test(test_read_rows_converted),
        cmocka_unit_test(test_tied_head),
        cmocka_unit_test(test_real_fake_gpt2),
        cmocka_unit_test(test_bad_index),
        cmocka_unit_test(test_writer_abort_leaves_nothing),
        cmocka_unit_test(test_writer_refuses),
        cmocka_unit_test(test_format_roundtrip),
        cmocka_unit_test(test_copy_with),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
