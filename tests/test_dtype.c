/* tests/test_dtype.c: F16/BF16 <-> F32 conversions, exhaustively and against an
 * independent reference.
 *
 * The reference does not use bit tricks: it decodes every finite F16/BF16 value into a
 * sorted table of doubles, finds the two neighbours of x by binary search and picks the
 * nearer, ties to the even encoding; beyond the largest finite value plus half an ulp
 * the result is Inf (IEEE 754 round-to-nearest overflow rule). */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../core/dtype.h"

/* ---- independent decoders (value = (-1)^s * 2^(e-bias) * (1 + m/2^mbits), subnormals) ---- */
static double ref_decode(uint32_t bits, int ebits, int mbits)
{
    uint32_t m = bits & ((1u << mbits) - 1), e = (bits >> mbits) & ((1u << ebits) - 1);
    int s = (bits >> (ebits + mbits)) & 1, bias = (1 << (ebits - 1)) - 1;
    double v;
    if (e == 0) v = ldexp((double)m, 1 - bias - mbits);
    else v = ldexp(1.0 + ldexp((double)m, -mbits), (int)e - bias);
    return s ? -v : v;
}

typedef struct { double *vals; int n; double maxv, half_ulp_top; } ref_table;

/* Positive finite values of a format, ascending: encodings 0 .. (all-ones exponent)-1. */
static ref_table make_table(int ebits, int mbits)
{
    ref_table t;
    t.n = (int)(((1u << ebits) - 1) << mbits);
    t.vals = malloc((size_t)t.n * sizeof(double));
    for (int i = 0; i < t.n; i++) t.vals[i] = ref_decode((uint32_t)i, ebits, mbits);
    t.maxv = t.vals[t.n - 1];
    t.half_ulp_top = (t.vals[t.n - 1] - t.vals[t.n - 2]) / 2;
    return t;
}

/* Round a finite, non-NaN double to the format; returns the encoding. */
static uint16_t ref_round(const ref_table *t, double x, int ebits, int mbits)
{
    uint16_t sign = (uint16_t)(signbit(x) ? 1u << (ebits + mbits) : 0);
    double a = fabs(x);
    uint16_t inf = (uint16_t)(((1u << ebits) - 1) << mbits);
    if (isinf(a) || a >= t->maxv + t->half_ulp_top) return sign | inf;
    int lo = 0, hi = t->n - 1;             /* largest i with vals[i] <= a */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (t->vals[mid] <= a) lo = mid; else hi = mid - 1;
    }
    if (t->vals[lo] == a || lo == t->n - 1) return sign | (uint16_t)lo;
    double dlo = a - t->vals[lo], dhi = t->vals[lo + 1] - a;
    int pick = dlo < dhi ? lo : dhi < dlo ? lo + 1 : (lo % 2 == 0 ? lo : lo + 1);
    return sign | (uint16_t)pick;
}

static ref_table g_f16, g_bf16;

static int setup(void **state)
{
    (void)state;
    g_f16 = make_table(5, 10);
    g_bf16 = make_table(8, 7);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(g_f16.vals);
    free(g_bf16.vals);
    return 0;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t next_u64(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Every F16 and BF16 pattern -> F32 -> back is the identity, NaNs included. */
static void test_roundtrip_all_patterns(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = al_f16_to_f32((uint16_t)h);
        assert_int_equal(al_f32_to_f16(f), h);
        double ref = ref_decode(h, 5, 10);
        if (((h >> 10) & 31) == 31) assert_true((h & 0x3ff) ? isnan(f) : isinf(f) && !signbit(f) == !signbit(ref));
        else assert_true((double)f == ref && !signbit(f) == !signbit(ref));

        float g = al_bf16_to_f32((uint16_t)h);
        assert_int_equal(al_f32_to_bf16(g), h);
        double rb = ref_decode(h, 8, 7);
        if (((h >> 7) & 255) == 255) assert_true((h & 127) ? isnan(g) : isinf(g));
        else assert_true((double)g == rb);
    }
}

static void check_one(float x)
{
    uint16_t h = al_f32_to_f16(x), b = al_f32_to_bf16(x);
    if (isnan(x)) {
        assert_true(isnan(al_f16_to_f32(h)));
        assert_true(isnan(al_bf16_to_f32(b)));
        return;
    }
    uint16_t rh = ref_round(&g_f16, x, 5, 10), rb = ref_round(&g_bf16, x, 8, 7);
    if (h != rh || b != rb) fail_msg("x=%a: f16 %04x (ref %04x), bf16 %04x (ref %04x)", (double)x, h, rh, b, rb);
}

/* 10 million random F32 bit patterns (all exponents, so subnormals/overflow included). */
static void test_random_10M(void **state)
{
    (void)state;
    for (int i = 0; i < 10000000; i++) {
        uint32_t u = (uint32_t)next_u64();
        float x;
        memcpy(&x, &u, 4);
        check_one(x);
    }
}

/* Values in the F16 range drawn more densely, where most real weights live. */
static void test_random_in_range(void **state)
{
    (void)state;
    for (int i = 0; i < 2000000; i++) {
        double u = (double)(next_u64() >> 11) * 0x1p-53;
        float x = (float)ldexp(u + 0.5, (int)(next_u64() % 48) - 30) * ((next_u64() & 1) ? -1.f : 1.f);
        check_one(x);
    }
}

/* Every midpoint between adjacent F16 (and BF16) values, and its F32 neighbours:
 * exactly where ties-to-even and carries into the exponent are decided. */
static void test_boundaries(void **state)
{
    (void)state;
    const ref_table *ts[2] = {&g_f16, &g_bf16};
    for (int k = 0; k < 2; k++) {
        const ref_table *t = ts[k];
        for (int i = 0; i + 1 < t->n; i++) {
            float m = (float)((t->vals[i] + t->vals[i + 1]) / 2);   /* exact in F32 */
            float c[] = {m, nextafterf(m, 0), nextafterf(m, INFINITY), (float)t->vals[i]};
            for (int j = 0; j < 4; j++) { check_one(c[j]); check_one(-c[j]); }
        }
        /* overflow threshold: max + half ulp and its neighbours */
        float top = (float)(t->maxv + t->half_ulp_top);
        check_one(top);
        check_one(nextafterf(top, 0));
        check_one(nextafterf(top, INFINITY));
    }
    float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, FLT_MAX, -FLT_MAX, FLT_MIN,
                       0x1p-149f, 0x1p-24f, 0x1p-25f, 0x1.000002p-25f, 65504.0f, 65520.0f,
                       0x1.ffep15f, 3.3895314e38f, NAN};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) check_one(special[i]);
    assert_int_equal(al_f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(al_f32_to_f16(nextafterf(65520.0f, 0)), 0x7bff);
    assert_int_equal(al_f32_to_bf16(1.00390625f), 0x3f80);   /* 1 + 2^-8: tie, to even */
    assert_int_equal(al_f32_to_bf16(1.01171875f), 0x3f82);   /* 1 + 3*2^-8: tie, to even (up) */
}

static void test_nan_kept(void **state)
{
    (void)state;
    uint32_t patterns[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0x7fa00000u, 0x7f800100u};
    for (size_t i = 0; i < 5; i++) {
        float x;
        memcpy(&x, &patterns[i], 4);
        uint16_t h = al_f32_to_f16(x), b = al_f32_to_bf16(x);
        assert_true((h & 0x7c00) == 0x7c00 && (h & 0x3ff));
        assert_true((b & 0x7f80) == 0x7f80 && (b & 0x7f));
        assert_int_equal(h >> 15, patterns[i] >> 31);
        assert_int_equal(b >> 15, patterns[i] >> 31);
    }
}

/* Bulk converter agrees with the scalar functions, for sizes that take the parallel path. */
static void test_bulk_convert(void **state)
{
    (void)state;
    size_t n = (1u << 20) + 77;
    float *f = malloc(n * 4), *back = malloc(n * 4);
    uint16_t *h = malloc(n * 2);
    double *d = malloc(n * 8);
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)next_u64();
        memcpy(&f[i], &u, 4);
    }
    assert_true(al_convert(h, AL_BF16, f, AL_F32, n));
    for (size_t i = 0; i < n; i++) assert_int_equal(h[i], al_f32_to_bf16(f[i]));
    assert_true(al_convert(back, AL_F32, h, AL_BF16, n));
    for (size_t i = 0; i < n; i++) assert_true(memcmp(&back[i], &(float){al_bf16_to_f32(h[i])}, 4) == 0);
    assert_true(al_convert(h, AL_F16, f, AL_F32, n));
    for (size_t i = 0; i < n; i++) assert_int_equal(h[i], al_f32_to_f16(f[i]));
    assert_false(al_convert(h, AL_I32, f, AL_F32, 4));
    /* F64 -> F16 rounds once: x = tie + tiny lands on the tie in F32 (double rounding
     * would then go to even, downwards); the correct answer rounds up. */
    double tie = (ref_decode(0x3c00, 5, 10) + ref_decode(0x3c01, 5, 10)) / 2;   /* 1 + 2^-11 */
    d[0] = tie + 0x1p-40;
    d[1] = tie;
    d[2] = -(tie + 0x1p-40);
    assert_true(al_convert(h, AL_F16, d, AL_F64, 3));
    assert_int_equal(h[0], 0x3c01);
    assert_int_equal(h[1], 0x3c00);
    assert_int_equal(h[2], 0xbc01);
    d[0] = 1.0 + 0x1p-8 + 0x1p-40;   /* same for BF16 */
    assert_true(al_convert(h, AL_BF16, d, AL_F64, 1));
    assert_int_equal(h[0], 0x3f81);
    free(f); free(back); free(h); free(d);
}

static void test_names(void **state)
{
    (void)state;
    al_dtype t;
    assert_true(al_dtype_from_name("BF16", &t) && t == AL_BF16);
    assert_true(al_dtype_from_name("F8_E4M3", &t) && t == AL_F8_E4M3);
    assert_false(al_dtype_from_name("bf16", &t));
    assert_true(al_dtype_from_user("bfloat16", &t) && t == AL_BF16);
    assert_true(al_dtype_from_user("FP16", &t) && t == AL_F16);
    assert_false(al_dtype_from_user("float8", &t));
    assert_int_equal(al_dtype_bits(AL_F4), 4);
    assert_int_equal(al_dtype_bits(AL_F6_E2M3), 6);
    for (int i = 0; i < AL_DTYPE_COUNT; i++) {
        assert_true(al_dtype_from_name(al_dtype_name((al_dtype)i), &t));
        assert_int_equal(t, i);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_all_patterns),
        cmocka_unit_test(test_random_10M),
        cmocka_unit_test(test_random_in_range),
        cmocka_unit_test(test_boundaries),
        cmocka_unit_test(test_nan_kept),
        cmocka_unit_test(test_bulk_convert),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
