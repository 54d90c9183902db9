/* tests/test_diff.c: alloy diff on synthetic checkpoints whose per-block differences
 * are known by construction, checked against sums computed here. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "util/testutil.h"

#include "../io/checkpoint.h"
#include "../merge/diff.h"

static char g_dir[128];

typedef struct { const char *name; int64_t rows, cols; int block; } spec;   /* block -1 pre, -2 post */
static const spec k_t[] = {
    {"transformer.wte.weight", 8, 4, -1},
    {"transformer.h.0.mlp.c_fc.weight", 4, 6, 0}, {"transformer.h.0.ln_1.weight", 4, 0, 0},
    {"transformer.h.1.mlp.c_fc.weight", 4, 6, 1}, {"transformer.h.1.ln_1.weight", 4, 0, 1},
    {"transformer.h.10.mlp.c_fc.weight", 4, 6, 10},
    {"transformer.ln_f.weight", 4, 0, -2},
};
#define NT (sizeof k_t / sizeof k_t[0])

static int64_t ne(const spec *s) { return s->cols ? s->rows * s->cols : s->rows; }
static float basev(size_t t, int64_t i) { return (float)(0.3 + 0.1 * (double)t) * (float)cos((double)i * 0.7) + 0.05f; }

/* offset added to tensor t's block in model `kind`: 0 = base, 1 = pair model B,
 * 2/3 = two fine-tunes with opposite signs in block 0 only */
static float offset(int kind, int block)
{
    switch (kind) {
    case 1: return block == -1 ? 0.5f : block == -2 ? 0.0f : 0.1f * (float)(block + 1);
    case 2: return 1.0f;
    case 3: return block == 0 ? -1.0f : 2.0f;
    default: return 0.0f;
    }
}

static void make(const char *name, int kind)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s.safetensors", g_dir, name);
    al_error err = {0};
    al_writer *w = NULL;
    al_writer_opts o = {0};
    assert_int_equal(al_writer_open(&w, p, &o, &err), AL_OK);
    for (size_t t = 0; t < NT; t++) {
        int64_t shape[2] = {k_t[t].rows, k_t[t].cols};
        assert_int_equal(al_writer_add(w, k_t[t].name, AL_F32, k_t[t].cols ? 2 : 1, shape, &err), AL_OK);
    }
    assert_int_equal(al_writer_begin(w, &err), AL_OK);
    for (size_t t = 0; t < NT; t++) {
        float buf[64];
        for (int64_t i = 0; i < ne(&k_t[t]); i++) buf[i] = basev(t, i) + offset(kind, k_t[t].block);
        assert_int_equal(al_writer_write(w, buf, (uint64_t)ne(&k_t[t]) * 4, &err), AL_OK);
    }
    assert_int_equal(al_writer_commit(w, &err), AL_OK);
    al_writer_free(w);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/alloy-test-diff.XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    make("base", 0);
    make("b", 1);
    make("t1", 2);
    make("t2", 3);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return tu_rm_rf(g_dir);
}

static const al_diff_block *find_block(const al_diff *d, const char *label)
{
    for (size_t i = 0; i < d->n_blocks; i++) if (!strcmp(d->b[i].label, label)) return &d->b[i];
    fail_msg("no block %s", label);
    return NULL;
}

static void close_to(double got, double want, const char *what)
{
    if (fabs(got - want) > 1e-9 * (1.0 + fabs(want))) fail_msg("%s: got %.12g want %.12g", what, got, want);
}

static void test_pair(void **state)
{
    (void)state;
    char a[256], b[256];
    snprintf(a, sizeof a, "%s/base.safetensors", g_dir);
    snprintf(b, sizeof b, "%s/b.safetensors", g_dir);
    const char *models[1] = {b};
    al_diff *d = NULL;
    al_error err = {0};
    if (al_diff_run(a, models, 1, 0, &d, &err) != AL_OK) fail_msg("%s", err.msg);
    /* blocks in model order, h.10 after h.1 */
    const char *order[] = {"pre", "0", "1", "10", "post"};
    assert_int_equal(d->n_blocks, 5);
    for (int i = 0; i < 5; i++) assert_string_equal(d->b[i].label, order[i]);
    const struct { const char *label; int block; } blocks[] = {{"pre", -1}, {"0", 0}, {"1", 1}, {"10", 10}, {"post", -2}};
    for (size_t k = 0; k < 5; k++) {
        double rr = 0, mm = 0, rm = 0, dd = 0;
        int64_t n = 0;
        for (size_t t = 0; t < NT; t++) {
            if (k_t[t].block != blocks[k].block) continue;
            for (int64_t i = 0; i < ne(&k_t[t]); i++) {
                double r = basev(t, i), m = (float)(basev(t, i) + offset(1, k_t[t].block));
                rr += r * r; mm += m * m; rm += r * m; dd += (m - r) * (m - r); n++;
            }
        }
        const al_diff_block *bl = find_block(d, blocks[k].label);
        assert_int_equal(bl->s.n, n);
        close_to(al_diff_l2(&bl->s, 0), sqrt(dd), "l2");
        close_to(al_diff_rel(&bl->s, 0), sqrt(dd) / sqrt(rr), "rel");
        close_to(al_diff_cos(&bl->s, 0), rm / sqrt(rr * mm), "cos");
    }
    /* the offsets make the per-block change grow with depth; post is unchanged */
    assert_true(al_diff_rel(&find_block(d, "10")->s, 0) > al_diff_rel(&find_block(d, "1")->s, 0));
    assert_true(al_diff_l2(&find_block(d, "post")->s, 0) == 0.0);
    char svg[300];
    snprintf(svg, sizeof svg, "%s/pair.svg", g_dir);
    assert_int_equal(al_diff_write_svg(d, svg, &err), AL_OK);
    FILE *f = fopen(svg, "r");
    char buf[65536];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = 0;
    assert_non_null(strstr(buf, "<svg"));
    assert_non_null(strstr(buf, "</svg>"));
    assert_non_null(strstr(buf, ">10</text>"));
    assert_non_null(strstr(buf, "Cosine similarity"));
    al_diff_free(d);
}

static void test_task_conflicts(void **state)
{
    (void)state;
    char base[256], t1[256], t2[256];
    snprintf(base, sizeof base, "%s/base.safetensors", g_dir);
    snprintf(t1, sizeof t1, "%s/t1.safetensors", g_dir);
    snprintf(t2, sizeof t2, "%s/t2.safetensors", g_dir);
    const char *models[2] = {t1, t2};
    al_diff *d = NULL;
    al_error err = {0};
    if (al_diff_run(base, models, 2, 1, &d, &err) != AL_OK) fail_msg("%s", err.msg);
    /* task vectors +1 and -1 in block 0: every element conflicts; elsewhere +1 and +2 */
    close_to(al_diff_conflict_rate(&find_block(d, "0")->s), 1.0, "block 0 conflicts");
    close_to(al_diff_conflict_rate(&find_block(d, "1")->s), 0.0, "block 1 conflicts");
    close_to(al_diff_conflict_rate(&find_block(d, "pre")->s), 0.0, "pre conflicts");
    close_to(al_diff_conflict_rate(&d->total), 28.0 / 116.0, "total conflicts");   /* block 0: 24 + 4 of 116 */
    assert_int_equal(d->total.n, 116);
    al_diff_free(d);
    /* a missing model is a clear error */
    const char *missing[1] = {"/nonexistent.safetensors"};
    assert_int_not_equal(al_diff_run(base, missing, 1, 0, &d, &err), AL_OK);
    assert_non_null(strstr(err.msg, "nonexistent"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pair),
        cmocka_unit_test(test_task_conflicts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
