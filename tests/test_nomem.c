/* tests/test_nomem.c: the allocation-failure sweep (style.md §8, after Lua's test suite).
 * For each path, one clean run counts its allocations (al_alloc_count); then for every
 * N from 1 to that count the N-th allocation (and all after it) fails: every run must
 * end in AL_ERR_NOMEM with no crash, nothing half-written, and (in `make asan`) no leak.
 *
 * Paths: opening a checkpoint and reading all its tensors (safetensors file, sharded
 * directory, HDF5 with deflate, a model with a LoRA adapter applied), parsing a recipe, a whole merge to disk (multi-document,
 * TIES + LiNeS + slices), and the edit paths are swept in test_rome.c / test_memit.c. */
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
#include "../merge/pipeline.h"
#include "../recipes/recipe.h"

/* Run fn(ctx) once to count allocations, then fail each of them in turn. */
typedef al_status (*path_fn)(void *ctx, al_error *err);

static long sweep(const char *what, path_fn fn, void *ctx, void (*cleanup)(void *ctx))
{
    al_error e;
    al_alloc_fail_at(0);
    al_alloc_fail_at(1000000000L);            /* counting only: resets the counter */
    if (fn(ctx, &e) != AL_OK) fail_msg("%s: clean run failed: %s", what, e.msg);
    long total = al_alloc_count();
    al_alloc_fail_at(0);
    if (cleanup) cleanup(ctx);
    for (long n = 1; n <= total; n++) {
        al_alloc_fail_at(n);
        al_status s = fn(ctx, &e);
        al_alloc_fail_at(0);
        if (s == AL_OK) fail_msg("%s: succeeded with allocation %ld of %ld failing", what, n, total);
        if (s != AL_ERR_NOMEM) fail_msg("%s: allocation %ld of %ld failing gave status %d: %s", what, n, total, s, e.msg);
        if (cleanup) cleanup(ctx);
    }
    printf("%s: %ld allocation points swept, each a clean AL_ERR_NOMEM\n", what, total);
    return total;
}

/* ---- checkpoints ---- */

/* A model with a LoRA adapter attached, every tensor read (adapted ones computed). */
static al_status open_lora_read_all(void *ctx, al_error *err)
{
    (void)ctx;
    al_ckpt *c = NULL;
    al_status s = al_ckpt_open(&c, "tests/fixtures/lora/model", err);
    if (s == AL_OK) s = al_ckpt_attach_lora(c, "tests/fixtures/lora/adapter", err);
    for (size_t i = 0; s == AL_OK && i < al_ckpt_count(c); i++) {
        const al_tensor_info *t = al_ckpt_info(c, i);
        float buf[64];
        s = al_ckpt_read(c, i, 0, t->ndim ? t->shape[0] : 1, buf, AL_F32, err);
    }
    al_ckpt_close(c);
    return s;
}

static al_status open_read_all(void *ctx, al_error *err)
{
    al_ckpt *c = NULL;
    al_status s = al_ckpt_open(&c, ctx, err);
    for (size_t i = 0; s == AL_OK && i < al_ckpt_count(c); i++) {
        const al_tensor_info *t = al_ckpt_info(c, i);
        size_t n = 1;
        for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
        float *buf = al_malloc(n * sizeof *buf);
        if (!buf) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); break; }
        s = al_ckpt_read(c, i, 0, t->ndim ? t->shape[0] : 1, buf, AL_F32, err);
        al_free(buf);
    }
    al_ckpt_close(c);
    return s;
}

static char g_tmp[64];

static void make_sharded(void)
{
    /* the tiny GPT-2 written in 2 KB shards: an index and several files */
    al_error e;
    al_ckpt *in;
    al_writer *w;
    char out[128];
    snprintf(out, sizeof out, "%s/sharded", g_tmp);
    al_writer_opts o = {.format = AL_FMT_SAFETENSORS, .dir = true, .shard_size = 2048};
    if (al_ckpt_open(&in, "tests/fixtures/hf/tiny_gpt2", &e) != AL_OK || al_writer_open(&w, out, &o, &e) != AL_OK ||
        al_ckpt_copy_with(in, w, NULL, NULL, 0, &e) != AL_OK || al_writer_commit(w, &e) != AL_OK)
        fail_msg("%s", e.msg);
    al_writer_free(w);
    al_ckpt_close(in);
}

static void test_checkpoints(void **state)
{
    (void)state;
    char sharded[128];
    snprintf(sharded, sizeof sharded, "%s/sharded", g_tmp);
    make_sharded();
    long n = sweep("safetensors file", open_read_all, "tests/fixtures/hf/tiny_gpt2/model.safetensors", NULL);
    n += sweep("sharded directory", open_read_all, sharded, NULL);
    n += sweep("HDF5 (deflate, bf16)", open_read_all, "tests/fuzz/seeds/hdf5/tiny_gpt2_deflate.h5", NULL);
    n += sweep("model + LoRA adapter", open_lora_read_all, NULL, NULL);
    assert_true(n > 50);
}

/* ---- recipe ---- */

static const char k_recipe[] =
    "merge_method: ties\n"
    "base_model: tests/fixtures/hf/tiny_gpt2\n"
    "models:\n"
    "  - model: tests/fixtures/hf/tiny_gpt2\n"
    "    parameters:\n"
    "      density: [0.2, 0.8]\n"
    "      weight:\n"
    "        - {filter: attn, value: [0.5, 1.0]}\n"
    "        - value: 0.7\n"
    "  - model: tests/fixtures/hf/tiny_gpt2\n"
    "    parameters: {density: 0.5, weight: 0.3}\n"
    "parameters: {normalize: true, int8_mask: true}\n"
    "lines: {alpha: 0.5, beta: 1.0}\n"
    "dtype: float32\n"
    "name: first\n"
    "---\n"
    "merge_method: passthrough\n"
    "slices:\n"
    "  - sources: [{model: first, layer_range: [0, 1]}]\n"
    "  - sources: [{model: tests/fixtures/hf/tiny_gpt2, layer_range: [0, 1]}]\n"
    "dtype: bfloat16\n";

static al_status parse_recipe(void *ctx, al_error *err)
{
    (void)ctx;
    al_recipe *r = NULL;
    al_status s = al_recipe_parse_string(k_recipe, sizeof k_recipe - 1, "r.yaml", NULL, &r, err);
    al_recipe_free(r);
    return s;
}

static void test_recipe(void **state)
{
    (void)state;
    assert_true(sweep("recipe parse", parse_recipe, NULL, NULL) > 50);
}

/* ---- a whole merge to disk ---- */

typedef struct {
    al_recipe *r;
    char out[128];
} merge_ctx;

static al_status run_merge(void *ctx, al_error *err)
{
    merge_ctx *m = ctx;
    al_merge_opts o = {.recipe_text = k_recipe, .recipe_len = sizeof k_recipe - 1};
    return al_merge_run(m->r, m->out, &o, err);
}

static void merge_cleanup(void *ctx)
{
    merge_ctx *m = ctx;
    struct stat sb;
    /* a failed run leaves no output; the successful (first) one is removed here */
    static bool first = true;
    if (!first) assert_int_not_equal(stat(m->out, &sb), 0);
    first = false;
    tu_rm_rf(m->out);
}

static void test_merge(void **state)
{
    (void)state;
    merge_ctx m;
    al_error e;
    if (al_recipe_parse_string(k_recipe, sizeof k_recipe - 1, "r.yaml", NULL, &m.r, &e) != AL_OK) fail_msg("%s", e.msg);
    snprintf(m.out, sizeof m.out, "%s/merged", g_tmp);
    assert_true(sweep("merge (ties + lines, then passthrough slices)", run_merge, &m, merge_cleanup) > 100);
    al_recipe_free(m.r);
    /* nothing else was left in the work directory (temporaries of failed runs) */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A %s | grep -v '^sharded$')\"", g_tmp);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/alloy-nomem-XXXXXX");
    return mkdtemp(g_tmp) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_rm_rf(g_tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkpoints),
        cmocka_unit_test(test_recipe),
        cmocka_unit_test(test_merge),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
