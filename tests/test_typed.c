/* tests/test_typed.c: the fast paths of the merge against their simple references.
 *   - al_topk (one-pass sampled bracket, with its two-pass fallback) against a full
 *     sort of (key desc, index asc): threshold, counts and the tie cut, on streams
 *     with heavy ties, in normal mode, forced fallback and a 16-key sample.
 *   - the typed whole-tensor GTA path (F32/F16/BF16 inputs read in place, output
 *     written in its dtype) against the F32 path on converted inputs: the same bytes,
 *     for ties, dare_ties, dare_linear, task_arithmetic and breadcrumbs without its
 *     upper cut, with L1 rescaling, and for slerp, nuslerp, multislerp, karcher and
 *     model_stock, at 1 and 2 threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "../core/dtype.h"
#include "../merge/kernels_internal.h"
#include "../merge/method.h"
#include "util/testutil.h"

static uint64_t g_rs = 0x9e3779b9ull;
static uint64_t rnd(void) { return tu_xorshift(&g_rs); }


/* ------------------------------------------------------------ al_topk vs sort --- */

typedef struct { const uint32_t *k; } karr;
static void karr_fn(void *c, uint32_t *keys, int64_t i0, int64_t i1)
{
    memcpy(keys, ((const karr *)c)->k + i0, (size_t)(i1 - i0) * sizeof *keys);
}

typedef struct { uint32_t key; uint32_t idx; } kv;
static int cmp_rank(const void *a, const void *b)
{
    const kv *x = a, *y = b;
    if (x->key != y->key) return x->key > y->key ? -1 : 1;   /* larger key first */
    return x->idx < y->idx ? -1 : x->idx > y->idx;            /* then lower index */
}

/* The reference: sort everything in rank order and read the answer off. */
static void topk_ref(const uint32_t *k, int64_t n, int64_t r, al_topk *out)
{
    kv *a = malloc((size_t)n * sizeof *a);
    assert_non_null(a);
    for (int64_t i = 0; i < n; i++) { a[i].key = k[i]; a[i].idx = (uint32_t)i; }
    qsort(a, (size_t)n, sizeof *a, cmp_rank);
    memset(out, 0, sizeof *out);
    out->thr = a[r - 1].key;
    for (int64_t i = 0; i < n; i++) { out->n_greater += k[i] > out->thr; out->n_equal += k[i] == out->thr; }
    /* the last tie inside the top r is the element at rank r-1 */
    out->tie_last = r - out->n_greater >= out->n_equal ? INT64_MAX : (int64_t)a[r - 1].idx;
    free(a);
}

static void check_topk(const uint32_t *k, int64_t n, int64_t r)
{
    al_topk want, got;
    topk_ref(k, n, r, &want);
    karr c = { k };
    al_error e = { 0 };
    if (al_topk_find(&got, n, r, karr_fn, &c, &e) != AL_OK) fail_msg("al_topk_find: %s", e.msg);
    if (got.thr != want.thr || got.n_greater != want.n_greater || got.n_equal != want.n_equal ||
        got.tie_last != want.tie_last)
        fail_msg("n %lld k %lld: got thr %u > %lld = %lld last %lld, want thr %u > %lld = %lld last %lld",
                 (long long)n, (long long)r, got.thr, (long long)got.n_greater, (long long)got.n_equal,
                 (long long)got.tie_last, want.thr, (long long)want.n_greater, (long long)want.n_equal,
                 (long long)want.tie_last);
}

static void test_topk(void **state)
{
    (void)state;
    const int64_t sizes[] = { 2, 37, 5000, 70000, 300001, 2100000 };
    for (int mode = 0; mode < 3; mode++) {
        al_topk_test_mode(mode);
        for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
            int64_t n = sizes[si];
            if (mode && n > 400000) continue;               /* the slow modes on smaller streams */
            uint32_t *k = malloc((size_t)n * sizeof *k);
            assert_non_null(k);
            for (int dist = 0; dist < 3; dist++) {
                for (int64_t i = 0; i < n; i++) {
                    uint64_t v = rnd();
                    /* 0: all distinct-ish; 1: 200 values (heavy ties); 2: half zeros,
                     * rest spread, and rows of different scale (neighbours alike) */
                    k[i] = dist == 0 ? (uint32_t)(v >> 33)
                         : dist == 1 ? (uint32_t)(v % 200) * 1000u
                         : (v & 1) ? 0u : (uint32_t)((v >> 40) % 5000) << ((i / 4096) % 8);
                }
                const int64_t ks[] = { 1, n / 2, n - 1, (int64_t)(rnd() % (uint64_t)(n - 1)) + 1, n / 10 + 1 };
                for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++)
                    if (ks[ki] >= 1 && ks[ki] < n) check_topk(k, n, ks[ki]);
            }
            free(k);
        }
    }
    al_topk_test_mode(0);
}

/* A bracket from a 16-key sample misses almost always: the fallback must then agree;
 * and at 2 threads the per-thread pieces must join in element order. */
static void test_topk_threads(void **state)
{
    (void)state;
    int64_t n = 500000;
    uint32_t *k = malloc((size_t)n * sizeof *k);
    assert_non_null(k);
    for (int64_t i = 0; i < n; i++) k[i] = (uint32_t)(rnd() % 50);      /* 10,000 ties per key */
    for (int t = 1; t <= 2; t++) {
        tu_set_threads(t);
        for (int mode = 0; mode < 3; mode++) {
            al_topk_test_mode(mode);
            for (int64_t r = 1; r < n; r += n / 7) check_topk(k, n, r);
        }
    }
    al_topk_test_mode(0);
    tu_set_threads(2);
    free(k);
}

/* ---------------------------------------------------- typed GTA vs the F32 path --- */

/* A value near v, quantized so that deltas tie often. */
static float qval(double v) { return (float)((double)(int)(v * 64.0) / 64.0); }

static void *to_dtype(const float *x, int64_t n, al_dtype dt)
{
    size_t sz = al_dtype_bits(dt) / 8;
    void *p = malloc((size_t)n * sz);
    assert_non_null(p);
    assert_true(al_convert(p, dt, x, AL_F32, (size_t)n));
    return p;
}

typedef struct {
    const char *method;
    double density;      /* <0: not set */
    int rescale;         /* -1 default */
    double gamma;        /* breadcrumbs */
    bool unsupported;    /* the typed path must refuse this configuration */
    double t;            /* slerp/nuslerp; 0: not set */
    int models;          /* the number of models the method needs; 0: 1 to 3 */
    bool no_base;        /* run without a base */
    bool filter_wise;    /* model_stock per row */
} gcase;

static void check_typed(const gcase *gc, int n_models, int64_t numel, const al_dtype *in_dt,
                        al_dtype out_dt, int64_t chunk)
{
    /* inputs: base ~ U(-1, 1) quantized; fine-tunes = base + small quantized deltas */
    float *b = malloc((size_t)numel * sizeof *b), *x[4], *bc, *xc[4];
    assert_non_null(b);
    for (int64_t i = 0; i < numel; i++) b[i] = qval((double)(rnd() >> 11) * 0x1.0p-53 * 2.0 - 1.0);
    al_merge_src sb, sx[4];
    void *raw[5];
    for (int m = 0; m < n_models; m++) {
        x[m] = malloc((size_t)numel * sizeof *x[m]);
        assert_non_null(x[m]);
        for (int64_t i = 0; i < numel; i++)
            x[m][i] = b[i] + (float)((double)((int)(rnd() % 41) - 20) / 256.0);
    }
    /* what the typed path reads: each input in its dtype; the F32 path gets the same
     * values converted back */
    raw[n_models] = to_dtype(b, numel, in_dt[n_models]);
    sb = (al_merge_src){ raw[n_models], in_dt[n_models] };
    bc = malloc((size_t)numel * sizeof *bc);
    assert_non_null(bc);
    assert_true(al_convert(bc, AL_F32, raw[n_models], in_dt[n_models], (size_t)numel));
    for (int m = 0; m < n_models; m++) {
        raw[m] = to_dtype(x[m], numel, in_dt[m]);
        sx[m] = (al_merge_src){ raw[m], in_dt[m] };
        xc[m] = malloc((size_t)numel * sizeof *xc[m]);
        assert_non_null(xc[m]);
        assert_true(al_convert(xc[m], AL_F32, raw[m], in_dt[m], (size_t)numel));
    }
    al_merge_params p;
    al_merge_params_init(&p);
    double w[4] = { 1.0, 0.7, -0.3, 0.5 }, d[4], g[4];
    for (int m = 0; m < 4; m++) { d[m] = gc->density; g[m] = gc->gamma; }
    p.weight = w;
    if (gc->density >= 0) p.density = d;
    if (gc->gamma >= 0) p.gamma = g;
    p.rescale = gc->rescale;
    if (gc->t != 0.0) p.t = gc->t;
    p.filter_wise = gc->filter_wise;
    p.seed = 7;
    p.tensor_hash = 0xabcdef;
    p.ndim = 2;
    p.row_len = 100;
    const al_merge_method *mt = al_merge_method_find(gc->method);
    assert_non_null(mt);
    size_t osz = al_dtype_bits(out_dt) / 8;
    float *ref = malloc((size_t)numel * sizeof *ref);
    void *want = malloc((size_t)numel * osz), *got = malloc((size_t)numel * osz);
    assert_true(ref && want && got);
    al_error e = { 0 };
    const float *xcp[4] = { xc[0], xc[1], xc[2], xc[3] };
    const float *bf32 = gc->no_base ? NULL : bc;
    if (al_merge_tensor_f32(mt, &p, bf32, xcp, n_models, numel, ref, 0, &e) != AL_OK)
        fail_msg("%s f32 path: %s", gc->method, e.msg);
    assert_true(al_convert(want, out_dt, ref, AL_F32, (size_t)numel));
    al_status s = al_merge_tensor_typed(mt, &p, gc->no_base ? NULL : &sb, sx, n_models, numel, got, out_dt, chunk, &e);
    if (gc->unsupported) {
        assert_int_equal(s, AL_ERR_UNSUPPORTED);
    } else {
        if (s != AL_OK) fail_msg("%s typed path: %s", gc->method, e.msg);
        if (memcmp(got, want, (size_t)numel * osz) != 0) {
            int64_t i = 0;
            while (!memcmp((char *)got + i * (int64_t)osz, (char *)want + i * (int64_t)osz, osz)) i++;
            fail_msg("%s density %g, %d models, %lld elements, out %s: first difference at %lld",
                     gc->method, gc->density, n_models, (long long)numel, al_dtype_name(out_dt), (long long)i);
        }
    }
    for (int m = 0; m <= n_models; m++) free(raw[m]);
    for (int m = 0; m < n_models; m++) { free(x[m]); free(xc[m]); }
    free(b); free(bc); free(ref); free(want); free(got);
}

static const gcase k_cases[] = {
    { "ties", 0.5, -1, -1, false },
    { "ties", 0.1, -1, -1, false },
    { "ties", 0.97, 1, -1, false },           /* with L1 rescaling */
    { "ties", 1e-7, -1, -1, false },          /* k = 1 */
    { "dare_ties", 0.6, -1, -1, false },      /* rescale: mergekit's L1 by default */
    { "dare_linear", 0.3, -1, -1, false },
    { "task_arithmetic", -1, -1, -1, false },
    { "breadcrumbs_ties", 0.4, -1, 0.0, false }, /* gamma 0: one cut only */
    { "breadcrumbs", 0.4, -1, 0.05, true },   /* two cuts: the F32 path only */
    { "della", 0.4, -1, -1, true },
    /* the geometric methods (flat layout) */
    { "slerp", -1, -1, -1, false, 0.3, 1, false, false },
    { "slerp", -1, -1, -1, false, 1.0, 1, false, false },
    { "nuslerp", -1, -1, -1, false, 0.6, 2, false, false },
    { "multislerp", -1, -1, -1, false, 0, 3, true, false },
    { "karcher", -1, -1, -1, false, 0, 3, true, false },
    { "model_stock", -1, -1, -1, false, 0, 3, false, false },
    { "model_stock", -1, -1, -1, true, 0, 3, false, true },   /* per row: the F32 path */
};

static void test_typed_gta(void **state)
{
    (void)state;
    const al_dtype ins[3][5] = {
        { AL_BF16, AL_BF16, AL_BF16, AL_BF16, AL_BF16 },
        { AL_F32, AL_F16, AL_BF16, AL_F32, AL_F16 },
        { AL_F16, AL_F16, AL_F16, AL_F16, AL_F32 },
    };
    const al_dtype outs[3] = { AL_BF16, AL_F32, AL_F16 };
    for (int t = 1; t <= 2; t++) {
        tu_set_threads(t);
        for (size_t c = 0; c < sizeof k_cases / sizeof *k_cases; c++)
            for (int v = 0; v < 3; v++) {
                int nm = k_cases[c].models ? k_cases[c].models : 1 + (int)((c + (size_t)v) % 3);
                int64_t numel = v == 0 ? 300000 : v == 1 ? 4099 : 70001;
                al_dtype in_dt[5];
                memcpy(in_dt, ins[v], sizeof in_dt);
                in_dt[nm] = ins[v][4];                 /* the base's dtype */
                check_typed(&k_cases[c], nm, numel, in_dt, outs[(c + (size_t)v) % 3], v == 2 ? 10000 : 0);
            }
    }
    tu_set_threads(2);
}

/* The typed path with the selection's fallback and with a sample that misses. */
static void test_typed_fallback(void **state)
{
    (void)state;
    const al_dtype in_dt[5] = { AL_BF16, AL_BF16, AL_BF16, AL_BF16, AL_BF16 };
    for (int mode = 1; mode <= 2; mode++) {
        al_topk_test_mode(mode);
        check_typed(&k_cases[0], 3, 200000, in_dt, AL_BF16, 0);
        check_typed(&k_cases[2], 2, 100000, in_dt, AL_F32, 0);
    }
    al_topk_test_mode(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topk),
        cmocka_unit_test(test_topk_threads),
        cmocka_unit_test(test_typed_gta),
        cmocka_unit_test(test_typed_fallback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
