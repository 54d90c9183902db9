/* tests/test_merge_methods.c: golden tests of merge/ methods against naive scalar
 * references written here (full sorts, direct formulas), plus determinism across
 * chunk sizes and OpenMP thread counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../core/alloc.h"
#include "../core/dtype.h"
#include "../core/rng.h"
#include "../merge/kernels_internal.h"
#include "../merge/method.h"
#include "util/testutil.h"

/* ------------------------------------------------------------------ helpers --- */

static uint64_t g_rs = 0x1234567ull;
static double urand(void) { g_rs = g_rs * 6364136223846793005ull + 1442695040888963407ull; return (double)(g_rs >> 11) * 0x1.0p-53; }
static float nrand(void) { return (float)((urand() + urand() + urand() - 1.5) * 2.0); }

static float *fbuf(int64_t n) { float *p = calloc((size_t)(n > 0 ? n : 1), sizeof(float)); assert_non_null(p); return p; }

static void run(const char *method, const al_merge_params *p, const float *b, const float *const *x,
                int n, int64_t numel, float *out, int64_t chunk)
{
    const al_merge_method *m = al_merge_method_find(method);
    assert_non_null(m);
    al_error e = { 0 };
    al_status s = al_merge_tensor_f32(m, p, b, x, n, numel, out, chunk, &e);
    if (s != AL_OK) fail_msg("%s: %s", method, e.msg);
}

static al_status run_st(const char *method, const al_merge_params *p, const float *b,
                        const float *const *x, int n, int64_t numel, float *out)
{
    al_error e = { 0 };
    return al_merge_tensor_f32(al_merge_method_find(method), p, b, x, n, numel, out, 0, &e);
}

static void assert_close(const float *a, const float *b, int64_t n, double tol)
{
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= tol * (1.0 + fabs((double)b[i]))))
            fail_msg("element %lld: got %.9g want %.9g", (long long)i, (double)a[i], (double)b[i]);
    }
}


/* ---------------------------------------------------- naive reference code --- */

/* descending |x| with lower index first among ties: the documented total order */
static const float *g_sort_d;
static int cmp_rank(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    uint32_t ki = al_f32_bits(g_sort_d[i]) & 0x7fffffffu, kj = al_f32_bits(g_sort_d[j]) & 0x7fffffffu;
    if (ki != kj) return ki > kj ? -1 : 1;
    return (i > j) - (i < j);
}

/* rank[i] = position of i in the total order (0 = largest) */
static void ref_ranks(const float *d, int64_t n, int *rank)
{
    int *idx = malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) idx[i] = i;
    g_sort_d = d;
    qsort(idx, (size_t)n, sizeof(int), cmp_rank);
    for (int r = 0; r < n; r++) rank[idx[r]] = r;
    free(idx);
}

/* GTA reference (methods.md 2.1): sp 0 none, 1 top-k, 2 breadcrumbs band; no rescale */
static void ref_gta(int sp, bool consensus, bool normalize, double lambda, const double *w,
                    const double *dens, const double *gam, const float *b, const float *const *x,
                    int n, int64_t N, float *out)
{
    double *dm = calloc((size_t)(n * N), sizeof(double));
    float *d = fbuf(N);
    int *rank = malloc(sizeof(int) * (size_t)N);
    for (int i = 0; i < n; i++) {
        for (int64_t j = 0; j < N; j++) d[j] = x[i][j] - b[j];
        ref_ranks(d, N, rank);
        int64_t lo = 0, hi = N;
        if (sp == 1 && dens[i] < 1.0) {
            hi = dens[i] <= 0 ? 0 : (int64_t)floor(dens[i] * (double)N);
            if (dens[i] > 0 && hi < 1) hi = 1;
        } else if (sp == 2 && dens[i] < 1.0) {
            int64_t target = (int64_t)floor(dens[i] * (double)N), nt = (int64_t)floor(gam[i] * (double)N);
            int64_t nb = N - target - nt;
            if (nb < 0) { nt += nb; nb = 0; }
            lo = nt; hi = N - nb;
        }
        for (int64_t j = 0; j < N; j++) dm[i * N + j] = (rank[j] >= lo && rank[j] < hi) ? d[j] : 0.0;
    }
    double ws = 0;
    for (int i = 0; i < n; i++) ws += w[i];
    for (int64_t j = 0; j < N; j++) {
        double M = 0, D = 0, s = 0;
        if (consensus) {
            for (int i = 0; i < n; i++) s += w[i] * dm[i * N + j];
            for (int i = 0; i < n; i++) {
                double u = w[i] * dm[i * N + j];
                if ((s >= 0 && u > 0) || (s < 0 && u < 0)) { M += u; D += w[i]; }
            }
            if (D == 0) D = 1;
        } else {
            for (int i = 0; i < n; i++) M += w[i] * dm[i * N + j];
            D = fabs(ws) < 1e-8 ? 1 : ws;
        }
        if (normalize) M /= D;
        M *= lambda;
        out[j] = (float)((double)b[j] + M);
    }
    free(dm); free(d); free(rank);
}

/* ----------------------------------------------------------- radix select --- */

typedef struct { const uint32_t *k; } kc;
static void keys_from(void *c, uint32_t *keys, int64_t i0, int64_t i1)
{
    memcpy(keys, ((kc *)c)->k + i0, (size_t)(i1 - i0) * 4);
}
static int cmp_u32d(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x < y) - (x > y);
}

static void check_rsel(const float *v, int64_t n, int64_t chunk)
{
    uint32_t *k = malloc(4 * (size_t)n), *s = malloc(4 * (size_t)n);
    for (int64_t i = 0; i < n; i++) k[i] = s[i] = al_abs_key(v[i]);
    qsort(s, (size_t)n, 4, cmp_u32d);
    int64_t ks[3] = { 1, n / 2 + 1, n };
    al_rsel r;
    assert_int_equal(al_rsel_init(&r, 3, ks, NULL), AL_OK);
    for (int64_t o = 0; o < n; o += chunk) { kc c = { k + o }; al_rsel_count_hi(&r, (n - o < chunk ? n - o : chunk), keys_from, &c); }
    al_rsel_finish_hi(&r);
    for (int64_t o = 0; o < n; o += chunk) { kc c = { k + o }; al_rsel_count_lo(&r, (n - o < chunk ? n - o : chunk), keys_from, &c); }
    al_rsel_finish_lo(&r);
    for (int t = 0; t < 3; t++) {
        uint32_t want = s[ks[t] - 1];
        assert_int_equal(r.thr[t], want);
        int64_t g = 0;
        for (int64_t i = 0; i < n; i++) g += s[i] > want;
        assert_int_equal(r.n_greater[t], g);
    }
    al_rsel_free(&r);
    free(k); free(s);
}

static void test_radix_select(void **st)
{
    (void)st;
    const int64_t n = 300000;
    float *v = fbuf(n);
    for (int64_t i = 0; i < n; i++) {
        double u = urand();
        if (u < 0.2) v[i] = 0.0f;
        else if (u < 0.3) v[i] = -0.0f;
        else if (u < 0.4) v[i] = (urand() < 0.5 ? -1 : 1) * 0x1p-140f * (float)(1 + (int)(urand() * 5)); /* denormals */
        else if (u < 0.5) v[i] = (float)((int)(urand() * 7) - 3);          /* many ties */
        else if (u < 0.501) v[i] = urand() < 0.5 ? INFINITY : -INFINITY;
        else if (u < 0.502) v[i] = NAN;                                     /* ranks above Inf */
        else v[i] = nrand();
    }
    check_rsel(v, n, 1000);
    check_rsel(v, n, 1 << 20);
    for (int64_t i = 0; i < n; i++) v[i] = 1.0f;                           /* all equal */
    check_rsel(v, n, 7777);
    free(v);
}

/* ----------------------------------------------------------- TIES and GTA --- */

static void test_ties_hand(void **st)
{
    (void)st;
    /* N=6, base 0; no trimming (density 1); weights 1; normalize (ties default) */
    const float b[6] = { 0, 0, 0, 0, 0, 0 };
    const float x0[6] = { 1, -1, 2, 0, 1, -3 };
    const float x1[6] = { 3, -1, -2, 0, -1, 1 };
    const float x2[6] = { -1, 2, -1, 0, 0, 1 };
    const float *x[3] = { x0, x1, x2 };
    /* col0: sum 3 -> +: (1+3)/2 = 2; col1: sum 0 -> +: only 2 -> 2; col2: sum -1 -> -: (-2-1)/2
     * col3: all zero -> 0; col4: sum 0 -> +: 1/1 = 1; col5: sum -1 -> -: -3 */
    const float want[6] = { 2, 2, -1.5f, 0, 1, -3 };
    al_merge_params p;
    al_merge_params_init(&p);
    float out[6];
    run("ties", &p, b, x, 3, 6, out, 0);
    assert_close(out, want, 6, 0);
    /* weights change the election (mergekit #474): w = (1, 1, 3) on col2: -2 -2 -3 -> - */
    const double w[3] = { 1, 1, 3 };
    p.weight = w;
    run("ties", &p, b, x, 3, 6, out, 0);
    /* col1: u = -1,-1,6 sum 4 -> +: 6/3 = 2; col0: 1+3-3 = 1 -> +: (1+3)/2 = 2 */
    assert_float_equal(out[0], 2.0f, 0);
    assert_float_equal(out[1], 2.0f, 0);
    /* col2: u = 2,-2,-3 sum -3 -> -: (-2-3)/(1+3) */
    assert_float_equal(out[2], -1.25f, 0);
    /* lambda after normalize */
    p.weight = NULL;
    p.lambda = 0.5;
    run("ties", &p, b, x, 3, 6, out, 0);
    assert_float_equal(out[0], 1.0f, 0);
}

static void test_ties_density(void **st)
{
    (void)st;
    const float b[5] = { 0, 0, 0, 0, 0 };
    const float x0[5] = { 1, -5, 3, 3, 0.5f };
    const float *x[1] = { x0 };
    al_merge_params p;
    al_merge_params_init(&p);
    float out[5];
    double d;
    p.density = &d;
    d = 0.4;   /* k = 2: -5 and the first 3 (index tie rule) */
    run("ties", &p, b, x, 1, 5, out, 0);
    const float w1[5] = { 0, -5, 3, 0, 0 };
    assert_close(out, w1, 5, 0);
    d = 0.1;   /* k = floor(0.5) = 0 -> we keep 1 (mergekit asserts) */
    run("ties", &p, b, x, 1, 5, out, 0);
    const float w2[5] = { 0, -5, 0, 0, 0 };
    assert_close(out, w2, 5, 0);
    d = 0.0;   /* zeros */
    run("ties", &p, b, x, 1, 5, out, 0);
    const float w3[5] = { 0, 0, 0, 0, 0 };
    assert_close(out, w3, 5, 0);
    d = 1.0;   /* unchanged */
    run("ties", &p, b, x, 1, 5, out, 0);
    assert_close(out, x0, 5, 0);
    /* injected threshold keeps every |delta| >= thr (ties included) */
    const float thr = 3.0f;
    p.ties_threshold = &thr;
    d = 0.4;
    run("ties", &p, b, x, 1, 5, out, 0);
    const float w4[5] = { 0, -5, 3, 3, 0 };
    assert_close(out, w4, 5, 0);
}

static void make_models(float **b, float **x, int n, int64_t N, bool ties)
{
    *b = fbuf(N);
    for (int64_t j = 0; j < N; j++) (*b)[j] = nrand();
    for (int i = 0; i < n; i++) {
        x[i] = fbuf(N);
        for (int64_t j = 0; j < N; j++) {
            float d = ties ? (float)((int)(urand() * 9) - 4) * 0.25f : nrand() * 0.1f;
            x[i][j] = (*b)[j] + d;
        }
    }
}

static void test_gta_vs_ref(void **st)
{
    (void)st;
    const int n = 3;
    const int64_t N = 20011;
    for (int tie = 0; tie < 2; tie++) {
        float *b, *x[3];
        make_models(&b, x, n, N, tie);
        const double w[3] = { 0.5, 1.0, -0.3 }, dens[3] = { 0.3, 0.7, 0.05 }, gam[3] = { 0.01, 0.001, 0.1 };
        float *out = fbuf(N), *ref = fbuf(N);
        al_merge_params p;
        al_merge_params_init(&p);
        p.weight = w; p.density = dens; p.gamma = gam; p.lambda = 1.3;
        const float *const *xc = (const float *const *)x;
        run("ties", &p, b, xc, n, N, out, 1000);
        ref_gta(1, true, true, 1.3, w, dens, gam, b, xc, n, N, ref);
        assert_close(out, ref, N, 0);
        run("task_arithmetic", &p, b, xc, n, N, out, 1000);
        ref_gta(0, false, false, 1.3, w, dens, gam, b, xc, n, N, ref);
        assert_close(out, ref, N, 0);
        run("breadcrumbs", &p, b, xc, n, N, out, 999);
        ref_gta(2, false, false, 1.3, w, dens, gam, b, xc, n, N, ref);
        assert_close(out, ref, N, 0);
        run("breadcrumbs_ties", &p, b, xc, n, N, out, 4096);
        ref_gta(2, true, false, 1.3, w, dens, gam, b, xc, n, N, ref);
        assert_close(out, ref, N, 0);
        p.normalize = 1;
        run("breadcrumbs_ties", &p, b, xc, n, N, out, 4096);
        ref_gta(2, true, true, 1.3, w, dens, gam, b, xc, n, N, ref);
        assert_close(out, ref, N, 0);
        free(b); for (int i = 0; i < n; i++) free(x[i]);
        free(out); free(ref);
    }
}

static void test_breadcrumbs_band(void **st)
{
    (void)st;
    /* N = 10, density 0.3, gamma 0.1: drop the largest, keep ranks 1..3 */
    const float b[10] = { 0 };
    const float x0[10] = { 10, 1, 9, 2, 8, 3, 7, 4, 6, 5 };
    const float *x[1] = { x0 };
    al_merge_params p;
    al_merge_params_init(&p);
    double d = 0.3, g = 0.1;
    p.density = &d; p.gamma = &g;
    float out[10];
    run("breadcrumbs", &p, b, x, 1, 10, out, 0);
    const float w1[10] = { 0, 0, 9, 0, 8, 0, 7, 0, 0, 0 };
    assert_close(out, w1, 10, 0);
    /* gamma * N < 1: n_top = 0. mergekit zeroes the tensor; we keep the top 3 */
    g = 0.05;
    run("breadcrumbs", &p, b, x, 1, 10, out, 0);
    const float w2[10] = { 10, 0, 9, 0, 8, 0, 0, 0, 0, 0 };
    assert_close(out, w2, 10, 0);
    p.breadcrumbs_compat = true;
    run("breadcrumbs", &p, b, x, 1, 10, out, 0);
    const float w3[10] = { 0 };
    assert_close(out, w3, 10, 0);
    /* density + gamma > 1: n_bot < 0 -> n_top shrinks */
    p.breadcrumbs_compat = false;
    d = 0.9; g = 0.3;  /* target 9, n_top 3, n_bot -2 -> n_top 1, n_bot 0: ranks 1..9 */
    run("breadcrumbs", &p, b, x, 1, 10, out, 0);
    const float w4[10] = { 0, 1, 9, 2, 8, 3, 7, 4, 6, 5 };
    assert_close(out, w4, 10, 0);
}

/* ------------------------------------------------------------------- DARE --- */

static void test_dare(void **st)
{
    (void)st;
    const int64_t N = 1000000;
    float *b = fbuf(N), *x0 = fbuf(N), *out = fbuf(N);
    for (int64_t j = 0; j < N; j++) { b[j] = nrand(); x0[j] = b[j] + 0.5f; }
    const float *x[1] = { x0 };
    al_merge_params p;
    al_merge_params_init(&p);
    double d = 0.3;
    p.density = &d; p.seed = 42; p.tensor_hash = al_hash_str("model.layers.0.mlp.up_proj.weight");
    p.rescale = 0;
    run("dare_linear", &p, b, x, 1, N, out, 0);
    int64_t kept = 0;
    for (int64_t j = 0; j < N; j++) {
        float dd = out[j] - b[j];
        if (dd != 0.0f) { kept++; assert_float_equal(dd, 0.5f, 1e-5); }
    }
    /* binomial sd = sqrt(N p (1-p)) ~ 458; allow 6 sd */
    assert_true(llabs(kept - 300000) < 2750);
    /* mask is exactly the documented counter-based draw */
    uint64_t key = al_rng_key(42, al_rng_stream(p.tensor_hash, 0));
    for (int64_t j = 0; j < 1000; j++)
        assert_int_equal(out[j] != b[j], al_rng_unit_at(key, (uint64_t)j) < 0.3);
    /* paper rescale: kept deltas / density */
    p.rescale = 1; p.rescale_mode = AL_RESCALE_INV_P;
    run("dare_linear", &p, b, x, 1, N, out, 0);
    for (int64_t j = 0; j < N; j++) {
        float dd = out[j] - b[j];
        if (dd != 0.0f) assert_float_equal(dd, 0.5f / 0.3f, 1e-5);
    }
    /* mergekit L1 rescale: factor ||d||_1 / ||d_masked||_1 = N / kept */
    p.rescale_mode = AL_RESCALE_L1;
    run("dare_linear", &p, b, x, 1, N, out, 0);
    double fac = (double)N / (double)kept;
    double sum = 0;
    for (int64_t j = 0; j < N; j++) {
        float dd = out[j] - b[j];
        if (dd != 0.0f) assert_float_equal(dd, 0.5 * fac, 1e-5);
        sum += (double)out[j] - b[j];
    }
    assert_float_equal(sum / N, 0.5, 1e-3);   /* L1 mass preserved */
    /* a different tensor name gives a different mask */
    p.tensor_hash = al_hash_str("model.layers.1.mlp.up_proj.weight");
    p.rescale = 0;
    float *o2 = fbuf(N);
    run("dare_linear", &p, b, x, 1, N, o2, 0);
    int64_t same = 0;
    for (int64_t j = 0; j < N; j++) same += (o2[j] != b[j]) == (out[j] != b[j]);
    assert_true(same < N - 1000);
    free(b); free(x0); free(out); free(o2);
}

/* ------------------------------------------------------------------ DELLA --- */

static void test_della(void **st)
{
    (void)st;
    /* one row of C = 1000: keep probability rises with rank from density-eps to +eps */
    const int64_t R = 200, C = 1000, N = R * C;
    float *b = fbuf(N), *x0 = fbuf(N), *out = fbuf(N);
    for (int64_t j = 0; j < N; j++) x0[j] = (float)(j % C + 1) * (j % 2 ? 1.0f : -1.0f); /* |d| = col+1 */
    const float *x[1] = { x0 };
    al_merge_params p;
    al_merge_params_init(&p);
    double d = 0.5, e = 0.4;
    p.density = &d; p.epsilon = &e; p.ndim = 2; p.row_len = C; p.rescale = 0;
    run("della_linear", &p, b, x, 1, N, out, 3 * C);
    int64_t lo = 0, hi = 0;
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < 100; c++) { lo += out[r * C + c] != 0; hi += out[r * C + C - 1 - c] != 0; }
    /* expected keep ~ 0.1..0.14 for the smallest 100, ~0.86..0.9 for the largest */
    assert_true(lo > 2000 && lo < 3000);
    assert_true(hi > 17000 && hi < 18000);
    /* paper rescale divides by p per element */
    p.rescale = 1; p.rescale_mode = AL_RESCALE_INV_P;
    run("della_linear", &p, b, x, 1, N, out, 0);
    int64_t c0 = C - 1;   /* largest rank: p = density + eps = 0.9 */
    for (int64_t r = 0; r < R; r++)
        if (out[r * C + c0] != 0) assert_float_equal(out[r * C + c0], x0[r * C + c0] / 0.9, 1e-3);
    /* mergekit's validation: density + eps must be < 1 */
    d = 0.9; e = 0.15;
    assert_int_equal(run_st("della", &p, b, x, 1, N, out), AL_ERR_RECIPE);
    free(b); free(x0); free(out);
}

/* ------------------------------------------------------------------ SLERP --- */

static void test_slerp(void **st)
{
    (void)st;
    const float v0[2] = { 1, 0 }, v1a[2] = { 0, 2 };
    const float *x[1] = { v1a };
    al_merge_params p;
    al_merge_params_init(&p);
    float out[2];
    p.t = 0;
    run("slerp", &p, v0, x, 1, 2, out, 0);
    assert_float_equal(out[0], 1, 1e-7); assert_float_equal(out[1], 0, 1e-7);
    p.t = 1;
    run("slerp", &p, v0, x, 1, 2, out, 0);
    assert_float_equal(out[0], 0, 1e-7); assert_float_equal(out[1], 2, 1e-7);
    /* orthogonal: th = pi/2, out = cos(t pi/2) v0 + sin(t pi/2) v1 (un-normalized) */
    p.t = 0.3;
    run("slerp", &p, v0, x, 1, 2, out, 0);
    assert_float_equal(out[0], cos(0.3 * M_PI / 2), 1e-6);
    assert_float_equal(out[1], 2 * sin(0.3 * M_PI / 2), 1e-6);
    /* near-parallel (|cos| > 0.9995): lerp */
    const float v1b[2] = { 2, 0.02f };
    x[0] = v1b;
    run("slerp", &p, v0, x, 1, 2, out, 0);
    assert_float_equal(out[0], 0.7 + 0.6, 1e-6);
    assert_float_equal(out[1], 0.3 * 0.02, 1e-7);
    /* 60 degrees, chunked over a long vector: v0 = (1,0) repeated, v1 = (cos60, sin60) */
    const int64_t N = 10000;
    float *a = fbuf(N), *c = fbuf(N), *o = fbuf(N);
    for (int64_t j = 0; j < N; j += 2) { a[j] = 1; a[j + 1] = 0; c[j] = 0.5f; c[j + 1] = (float)(sqrt(3) / 2); }
    x[0] = c;
    p.t = 0.5;
    run("slerp", &p, a, x, 1, N, o, 333);
    double th = acos((double)0.5f * 1.0);   /* ~pi/3 */
    double s0 = sin(0.5 * th) / sin(th);
    assert_float_equal(o[0], s0 * 1 + s0 * 0.5, 1e-6);
    assert_float_equal(o[1], s0 * (sqrt(3) / 2), 1e-6);
    free(a); free(c); free(o);
}

/* ------------------------------------------------------------ model_stock --- */

static void test_model_stock(void **st)
{
    (void)st;
    /* base 0; offsets at 60 degrees (cos 0.5): t = 2*0.5/(1+0.5) = 2/3 */
    const float b[2] = { 0, 0 }, x0[2] = { 2, 0 }, x1[2] = { 1, (float)sqrt(3) };
    const float *x[2] = { x0, x1 };
    al_merge_params p;
    al_merge_params_init(&p);
    float out[2];
    run("model_stock", &p, b, x, 2, 2, out, 0);
    double cs = (2.0 * 1.0) / (2.0 * sqrt(1.0 + (double)x1[1] * x1[1]));
    double t = 2 * cs / (1 + cs);
    assert_float_equal(out[0], t * 1.5, 1e-6);
    assert_float_equal(out[1], t * (double)x1[1] / 2, 1e-6);
    /* orthogonal: cos 0 -> t = 0 -> base */
    const float y1[2] = { 0, 3 };
    x[1] = y1;
    run("model_stock", &p, b, x, 2, 2, out, 0);
    assert_float_equal(out[0], 0, 1e-7);
    /* filter_wise on 2 rows: row 0 parallel (t = 1), row 1 orthogonal (t = 0) */
    const float B4[4] = { 1, 1, 1, 1 }, X0[4] = { 2, 1, 2, 1 }, X1[4] = { 3, 1, 1, 2 };
    const float *xx[2] = { X0, X1 };
    p.filter_wise = true; p.ndim = 2; p.row_len = 2;
    float o4[4];
    run("model_stock", &p, B4, xx, 2, 4, o4, 0);
    assert_float_equal(o4[0], 2.5, 1e-6);
    assert_float_equal(o4[2], 1, 1e-6); assert_float_equal(o4[3], 1, 1e-6);
    /* needs >= 2 models */
    assert_int_equal(run_st("model_stock", &p, B4, xx, 1, 4, o4), AL_ERR_RECIPE);
}

/* ------------------------------------------------------- other methods --- */

static void test_linear_passthrough_nearswap(void **st)
{
    (void)st;
    const float b[3] = { 1, 2, 3 }, x0[3] = { 3, 2, 1 }, x1[3] = { 0, 0, 6 };
    const float *x[2] = { x0, x1 };
    al_merge_params p;
    al_merge_params_init(&p);
    const double w[2] = { 1, 3 };
    p.weight = w;
    float out[3];
    run("linear", &p, NULL, x, 2, 3, out, 0);
    assert_float_equal(out[0], 0.75, 0); assert_float_equal(out[2], 4.75, 0);
    p.normalize = 0;
    run("linear", &p, NULL, x, 2, 3, out, 0);
    assert_float_equal(out[2], 19, 0);
    assert_int_equal(run_st("linear", &p, b, x, 2, 3, out), AL_ERR_RECIPE); /* base needs weight */
    p.base_weight = 2; p.normalize = -1;
    run("linear", &p, b, x, 2, 3, out, 0);
    assert_float_equal(out[0], (2 + 3 + 0) / 6.0, 1e-7);
    const double sc = 0.5;
    al_merge_params_init(&p);
    p.scale = &sc;
    run("passthrough", &p, NULL, x, 1, 3, out, 0);
    assert_float_equal(out[0], 1.5, 0);
    assert_int_equal(run_st("passthrough", &p, b, x, 1, 3, out), AL_ERR_RECIPE);
    al_merge_params_init(&p);
    p.t = 1.0;   /* |B-X| = 2, 0, 2: w = 0.5, 1 (1e-6 floor), 0.5 */
    run("nearswap", &p, b, x, 1, 3, out, 0);
    assert_float_equal(out[0], 2, 1e-7); assert_float_equal(out[1], 2, 1e-7); assert_float_equal(out[2], 2, 1e-7);
}

static void test_sce(void **st)
{
    (void)st;
    /* base 0, 2 models, 4 positions; select_topk 0.5 of nnz(var) = 3 -> k = 1 */
    const float b[4] = { 0 }, x0[4] = { 1, 4, 2, 1 }, x1[4] = { 1, -2, 1, 3 };
    const float *x[2] = { x0, x1 };
    al_merge_params p;
    al_merge_params_init(&p);
    float out[4];
    run("sce", &p, b, x, 2, 4, out, 0);
    /* no selection: c = mean sq: (1+16+4+1)/4 = 5.5, (1+4+1+9)/4 = 3.75 */
    double c0 = 5.5 / 9.25, c1 = 3.75 / 9.25;
    assert_float_equal(out[0], (c0 + c1) / (c0 + c1), 1e-6);
    assert_float_equal(out[1], 4, 1e-6);                       /* sum + -> only +4 */
    assert_float_equal(out[3], (c0 * 1 + c1 * 3) / (c0 + c1), 1e-6);
    p.select_topk = 0.5;  /* var: 0, 9, 0.25, 1 -> nnz 3, k = 1: position 1 only */
    run("sce", &p, b, x, 2, 4, out, 0);
    assert_float_equal(out[0], 0, 0); assert_float_equal(out[2], 0, 0); assert_float_equal(out[3], 0, 0);
    assert_float_equal(out[1], 4, 1e-6);
}

static void test_geometric_refs(void **st)
{
    (void)st;
    const int64_t N = 5003;
    float *b, *x[3];
    make_models(&b, x, 3, N, false);
    float *out = fbuf(N);
    al_merge_params p;
    al_merge_params_init(&p);
    /* nuslerp of two deltas, weights 1 and 3 -> t = 0.75 */
    const double w[3] = { 1, 3, 2 };
    p.weight = w;
    run("nuslerp", &p, b, (const float *const *)x, 2, N, out, 777);
    double g00 = 0, g11 = 0, g01 = 0;
    for (int64_t j = 0; j < N; j++) {
        double d0 = x[0][j] - b[j], d1 = x[1][j] - b[j];
        g00 += d0 * d0; g11 += d1 * d1; g01 += d0 * d1;
    }
    double th = acos(g01 / sqrt(g00 * g11));
    for (int64_t j = 0; j < N; j += 97) {
        double d0 = x[0][j] - b[j], d1 = x[1][j] - b[j];
        double want = b[j] + (sin(0.25 * th) * d0 + sin(0.75 * th) * d1) / sin(th);
        assert_float_equal(out[j], want, 1e-5);
    }
    /* multislerp result has norm sum(w r) along the normalized mean direction */
    run("multislerp", &p, b, (const float *const *)x, 3, N, out, 0);
    double r[3] = { 0 }, m2 = 0, o2 = 0;
    for (int i = 0; i < 3; i++) for (int64_t j = 0; j < N; j++) { double d = x[i][j] - b[j]; r[i] += d * d; }
    for (int i = 0; i < 3; i++) r[i] = sqrt(r[i]);
    for (int64_t j = 0; j < N; j++) {
        double m = 0;
        for (int i = 0; i < 3; i++) m += w[i] / 6.0 * (x[i][j] - b[j]) / (r[i] + 1e-8);
        m2 += m * m;
        double o = (double)out[j] - b[j];
        o2 += o * o;
    }
    assert_float_equal(sqrt(o2), (r[0] + 3 * r[1] + 2 * r[2]) / 6.0, 1e-3);
    /* karcher of two inputs = slerp midpoint scaled by the mean norm */
    const float k0[2] = { 1, 0 }, k1[2] = { 0, 3 };
    const float *kx[2] = { k0, k1 };
    float ko[2];
    al_merge_params_init(&p);
    run("karcher", &p, NULL, kx, 2, 2, ko, 0);
    assert_float_equal(ko[0], 2 * cos(M_PI / 4), 1e-4);
    assert_float_equal(ko[1], 2 * sin(M_PI / 4), 1e-4);
    free(b); for (int i = 0; i < 3; i++) free(x[i]);
    free(out);
}

static int cmpf(const void *a, const void *bb)
{
    float x = *(const float *)a, y = *(const float *)bb;
    return (x > y) - (x < y);
}

static void test_arcee_fusion(void **st)
{
    (void)st;
    const int64_t R = 50, C = 40, N = R * C;
    float *b = fbuf(N), *x0 = fbuf(N), *out = fbuf(N), *imp = fbuf(N), *s = fbuf(N);
    for (int64_t j = 0; j < N; j++) { b[j] = nrand(); x0[j] = b[j] + nrand() * (j % 7 == 0 ? 2.0f : 0.1f); }
    const float *x[1] = { x0 };
    al_merge_params p;
    al_merge_params_init(&p);
    p.ndim = 2; p.row_len = C;
    run("arcee_fusion", &p, b, x, 1, N, out, 0);
    for (int64_t r = 0; r < R; r++) {
        double ma = -INFINITY, mx = -INFINITY, za = 0, zx = 0, kl = 0;
        for (int64_t c = 0; c < C; c++) { ma = fmax(ma, b[r * C + c]); mx = fmax(mx, x0[r * C + c]); }
        for (int64_t c = 0; c < C; c++) { za += exp(b[r * C + c] - ma); zx += exp(x0[r * C + c] - mx); }
        for (int64_t c = 0; c < C; c++) {
            double pp = exp(x0[r * C + c] - mx) / zx, qq = exp(b[r * C + c] - ma) / za;
            kl += pp * (log(pp + 1e-8) - log(qq + 1e-8));
        }
        for (int64_t c = 0; c < C; c++) imp[r * C + c] = (float)(fabs((double)(x0[r * C + c] - b[r * C + c])) * kl);
    }
    memcpy(s, imp, sizeof(float) * (size_t)N);
    qsort(s, (size_t)N, sizeof(float), cmpf);
    double thr = s[(N - 1) / 2] + 1.5 * (s[(int64_t)floor(0.75 * (N - 1))] - s[(int64_t)floor(0.25 * (N - 1))]);
    int64_t nk = 0;
    for (int64_t j = 0; j < N; j++) {
        bool keep = imp[j] >= thr;
        nk += keep;
        assert_float_equal(out[j], keep ? x0[j] : b[j], 1e-6);
    }
    assert_true(nk > 0 && nk < N);
    free(b); free(x0); free(out); free(imp); free(s);
}

/* ------------------------------------------------------------ determinism --- */

static void test_determinism(void **st)
{
    (void)st;
    const int64_t R = 23, C = 1111, N = R * C;    /* not a multiple of any block */
    float *b, *x[3];
    make_models(&b, x, 3, N, true);               /* quantized deltas: many ties */
    const double w[3] = { 0.7, 0.4, 0.2 }, d[3] = { 0.3, 0.5, 0.6 }, g[3] = { 0.02, 0.0, 0.05 }, e[3] = { 0.1, 0.2, 0.3 };
    const al_merge_method *const *ms = al_merge_method_list();
    float *o1 = fbuf(N), *o2 = fbuf(N);
    int checked = 0;
    for (int mi = 0; ms[mi]; mi++) {
        const char *nm = ms[mi]->name;
        al_merge_params p;
        al_merge_params_init(&p);
        p.weight = w; p.density = d; p.gamma = g; p.epsilon = e; p.seed = 7;
        p.tensor_hash = al_hash_str("t"); p.ndim = 2; p.row_len = C; p.t = 0.3;
        p.select_topk = 0.5; p.base_weight = 0.5;
        int n = 3;
        const float *bb = b;
        if (!strcmp(nm, "slerp") || !strcmp(nm, "nearswap") || !strcmp(nm, "arcee_fusion") || !strcmp(nm, "lines")) n = 1;
        if (!strcmp(nm, "nuslerp")) n = 2;
        if (!strcmp(nm, "passthrough")) { n = 1; bb = NULL; }
        for (int variant = 0; variant < 2; variant++) {
            if (variant == 1) {   /* second configuration where a method has one */
                if (!strcmp(nm, "nuslerp")) { p.nuslerp_flatten = false; p.nuslerp_row_wise = true; }
                else if (!strcmp(nm, "model_stock")) p.filter_wise = true;
                else if (!strncmp(nm, "dare", 4) || !strncmp(nm, "della", 5)) p.rescale_mode = AL_RESCALE_INV_P;
                else if (!strcmp(nm, "ties")) { p.rescale = 1; }
                else continue;
            }
            tu_set_threads(1);
            run(nm, &p, bb, (const float *const *)x, n, N, o1, 1 << 20);
            const int64_t chunks[3] = { 1000, 4096 * 3 + 7, C * 2 };
            for (int ci = 0; ci < 3; ci++) {
                tu_set_threads(ci == 0 ? 2 : 3);
                memset(o2, 0xff, sizeof(float) * (size_t)N);
                run(nm, &p, bb, (const float *const *)x, n, N, o2, chunks[ci]);
                if (memcmp(o1, o2, sizeof(float) * (size_t)N) != 0)
                    fail_msg("%s (variant %d): chunk %lld result differs", nm, variant, (long long)chunks[ci]);
            }
            checked++;
        }
    }
    tu_set_threads(2);
    assert_true(checked >= 20);
    free(b); for (int i = 0; i < 3; i++) free(x[i]);
    free(o1); free(o2);
}

/* every init path: failing the k-th allocation gives AL_ERR_NOMEM and leaks nothing
 * (ASan's leak checker watches the asan build) */
static void test_alloc_fail(void **st)
{
    (void)st;
    const int64_t N = 64;
    float *b, *x[3], out[64];
    make_models(&b, x, 3, N, false);
    const double d[3] = { 0.5, 0.5, 0.5 }, e[3] = { 0.1, 0.1, 0.1 };
    const al_merge_method *const *ms = al_merge_method_list();
    for (int mi = 0; ms[mi]; mi++) {
        const char *nm = ms[mi]->name;
        al_merge_params p;
        al_merge_params_init(&p);
        p.density = d; p.epsilon = e; p.t = 0.5; p.select_topk = 0.5; p.ndim = 2; p.row_len = 8;
        int n = 3;
        const float *bb = b;
        if (!strcmp(nm, "slerp") || !strcmp(nm, "nearswap") || !strcmp(nm, "arcee_fusion") || !strcmp(nm, "lines")) n = 1;
        if (!strcmp(nm, "nuslerp")) n = 2;
        if (!strcmp(nm, "passthrough")) { n = 1; bb = NULL; }
        if (!strcmp(nm, "linear")) bb = NULL;
        for (long k = 1; k < 40; k++) {
            al_alloc_fail_at(k);
            al_status s = run_st(nm, &p, bb, (const float *const *)x, n, N, out);
            al_alloc_fail_at(0);
            if (s == AL_OK) break;
            if (s != AL_ERR_NOMEM) fail_msg("%s: fail at %ld gave %d", nm, k, (int)s);
        }
    }
    free(b); for (int i = 0; i < 3; i++) free(x[i]);
}

static void test_registry(void **st)
{
    (void)st;
    const char *names[] = { "linear", "task_arithmetic", "ties", "dare_ties", "dare_linear", "slerp",
                            "model_stock", "della", "della_linear", "breadcrumbs", "breadcrumbs_ties",
                            "sce", "nuslerp", "multislerp", "karcher", "nearswap", "arcee_fusion",
                            "passthrough", "ram", "ramplus_tl", "lines" };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) assert_non_null(al_merge_method_find(names[i]));
    assert_null(al_merge_method_find("nope"));
    /* GTA without base */
    const float x0[2] = { 1, 2 };
    const float *x[1] = { x0 };
    float out[2];
    al_merge_params p;
    al_merge_params_init(&p);
    assert_int_equal(run_st("ties", &p, NULL, x, 1, 2, out), AL_ERR_RECIPE);
    assert_int_equal(run_st("slerp", &p, x0, x, 1, 2, out), AL_ERR_RECIPE);  /* t missing */
}

static void test_rng(void **st)
{
    (void)st;
    assert_int_equal(al_hash_str("abc"), al_hash_str("abc"));
    assert_true(al_hash_str("abc") != al_hash_str("abd"));
    double s = 0;
    for (uint64_t i = 0; i < 100000; i++) { double u = al_rng_unit(1, 2, i); assert_true(u >= 0 && u < 1); s += u; }
    assert_float_equal(s / 100000, 0.5, 0.01);
    assert_int_equal(al_rng_u64(1, 2, 3), al_rng_at(al_rng_key(1, 2), 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng),
        cmocka_unit_test(test_radix_select),
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_ties_hand),
        cmocka_unit_test(test_ties_density),
        cmocka_unit_test(test_gta_vs_ref),
        cmocka_unit_test(test_breadcrumbs_band),
        cmocka_unit_test(test_dare),
        cmocka_unit_test(test_della),
        cmocka_unit_test(test_slerp),
        cmocka_unit_test(test_model_stock),
        cmocka_unit_test(test_linear_passthrough_nearswap),
        cmocka_unit_test(test_sce),
        cmocka_unit_test(test_geometric_refs),
        cmocka_unit_test(test_arcee_fusion),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_alloc_fail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
