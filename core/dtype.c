/* core/dtype.c: dtype table and F16/BF16/F32/F64 conversions. */
#include "dtype.h"

#include <math.h>
#include <strings.h>

static const struct { const char *name; unsigned bits; } k_dtypes[AL_DTYPE_COUNT] = {
    [AL_F32] = {"F32", 32}, [AL_F16] = {"F16", 16}, [AL_BF16] = {"BF16", 16},
    [AL_F64] = {"F64", 64}, [AL_BOOL] = {"BOOL", 8}, [AL_U8] = {"U8", 8},
    [AL_I8] = {"I8", 8}, [AL_I16] = {"I16", 16}, [AL_U16] = {"U16", 16},
    [AL_I32] = {"I32", 32}, [AL_U32] = {"U32", 32}, [AL_I64] = {"I64", 64},
    [AL_U64] = {"U64", 64}, [AL_C64] = {"C64", 64},
    [AL_F8_E5M2] = {"F8_E5M2", 8}, [AL_F8_E4M3] = {"F8_E4M3", 8},
    [AL_F8_E8M0] = {"F8_E8M0", 8}, [AL_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
    [AL_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8}, [AL_F6_E2M3] = {"F6_E2M3", 6},
    [AL_F6_E3M2] = {"F6_E3M2", 6}, [AL_F4] = {"F4", 4},
};

const char *al_dtype_name(al_dtype t)
{
    return (unsigned)t < AL_DTYPE_COUNT ? k_dtypes[t].name : "?";
}

unsigned al_dtype_bits(al_dtype t)
{
    return (unsigned)t < AL_DTYPE_COUNT ? k_dtypes[t].bits : 0;
}

bool al_dtype_from_name(const char *name, al_dtype *out)
{
    for (int i = 0; i < AL_DTYPE_COUNT; i++)
        if (strcmp(name, k_dtypes[i].name) == 0) { *out = (al_dtype)i; return true; }
    return false;
}

bool al_dtype_from_user(const char *name, al_dtype *out)
{
    static const struct { const char *s; al_dtype t; } alias[] = {
        {"f32", AL_F32}, {"float32", AL_F32}, {"fp32", AL_F32}, {"float", AL_F32},
        {"f16", AL_F16}, {"float16", AL_F16}, {"fp16", AL_F16}, {"half", AL_F16},
        {"bf16", AL_BF16}, {"bfloat16", AL_BF16},
        {"f64", AL_F64}, {"float64", AL_F64}, {"fp64", AL_F64}, {"double", AL_F64},
    };
    for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++)
        if (strcasecmp(name, alias[i].s) == 0) { *out = alias[i].t; return true; }
    return al_dtype_from_name(name, out);
}

bool al_dtype_is_float(al_dtype t)
{
    return t == AL_F32 || t == AL_F16 || t == AL_BF16 || t == AL_F64;
}

float al_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0) {                       /* zero or subnormal: mant * 2^-24, exact in f32 */
        float v = (float)mant * 0x1p-24f;
        return al_bits_f32(al_f32_bits(v) | sign);
    }
    if (exp == 31) return al_bits_f32(sign | 0x7f800000u | (mant << 13));   /* Inf/NaN */
    return al_bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t al_f32_to_f16(float f)
{
    uint32_t x = al_f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) {                         /* NaN: keep top 10 payload bits */
        uint16_t m = (uint16_t)((ax >> 13) & 0x3ffu);
        return (uint16_t)(sign | 0x7c00u | (m ? m : 0x200u));
    }
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);   /* >= 65520 rounds to Inf */
    if (ax < 0x38800000u) {                         /* below 2^-14: f16 subnormal or zero */
        if (ax <= 0x33000000u) return sign;         /* <= 2^-25: ties-to-even gives 0 */
        uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
        unsigned s = 126u - e;                      /* value = m*2^(e-150) = q * 2^-24 */
        uint32_t q = m >> s, rem = m & ((1u << s) - 1u), half = 1u << (s - 1u);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = (ax >> 13) - (112u << 10), rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++;
    return (uint16_t)(sign | r);
}

/* F64 -> F32 with round-to-odd: truncate toward zero, then set the last bit if any
 * information was lost. Rounding that result once more to a format with at most
 * 24-2 significand bits (F16: 11, BF16: 8) equals rounding the double directly. */
static float f64_to_f32_odd(double d)
{
    float f = (float)d;
    if (isnan(d) || (double)f == d) return f;
    if (fabs((double)f) > fabs(d)) f = nextafterf(f, 0.0f);
    return al_bits_f32(al_f32_bits(f) | 1u);
}
static uint16_t al_f64_to_f16(double d) { return al_f32_to_f16(f64_to_f32_odd(d)); }
static uint16_t al_f64_to_bf16(double d) { return al_f32_to_bf16(f64_to_f32_odd(d)); }

/* One loop per (src, dst) pair so that gcc can vectorize each. */
static void convert_serial(void *dst, al_dtype dt, const void *src, al_dtype st, size_t n)
{
    if (dt == st) {
        if (dst != src) memmove(dst, src, n * (al_dtype_bits(dt) / 8));
        return;
    }
    if (dt == AL_F32) {
        float *d = dst;
        if (st == AL_F16) { const uint16_t *s = src; for (size_t i = 0; i < n; i++) d[i] = al_f16_to_f32(s[i]); }
        else if (st == AL_BF16) { const uint16_t *s = src; for (size_t i = 0; i < n; i++) d[i] = al_bf16_to_f32(s[i]); }
        else { const double *s = src; for (size_t i = 0; i < n; i++) d[i] = (float)s[i]; }
        return;
    }
    if (st == AL_F32) {
        const float *s = src;
        if (dt == AL_F16) { uint16_t *d = dst; for (size_t i = 0; i < n; i++) d[i] = al_f32_to_f16(s[i]); }
        else if (dt == AL_BF16) { uint16_t *d = dst; for (size_t i = 0; i < n; i++) d[i] = al_f32_to_bf16(s[i]); }
        else { double *d = dst; for (size_t i = 0; i < n; i++) d[i] = s[i]; }
        return;
    }
    /* Between two non-F32 types: go through F32 except F64 sources, which are
     * rounded once, directly (double -> f32 -> f16 would round twice). */
    if (st == AL_F64) {
        const double *s = src;
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = dt == AL_F16 ? al_f64_to_f16(s[i]) : al_f64_to_bf16(s[i]);
        return;
    }
    if (dt == AL_F64) {
        const uint16_t *s = src;
        double *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = st == AL_F16 ? al_f16_to_f32(s[i]) : al_bf16_to_f32(s[i]);
        return;
    }
    /* F16 <-> BF16 */
    const uint16_t *s = src;
    uint16_t *d = dst;
    for (size_t i = 0; i < n; i++) {
        float v = st == AL_F16 ? al_f16_to_f32(s[i]) : al_bf16_to_f32(s[i]);
        d[i] = dt == AL_F16 ? al_f32_to_f16(v) : al_f32_to_bf16(v);
    }
}

/* Element-wise, so splitting into fixed blocks across threads gives the same bytes for
 * any thread count. Small conversions stay on the calling thread. */
#define CONVERT_BLOCK ((size_t)1 << 16)

bool al_convert(void *dst, al_dtype dt, const void *src, al_dtype st, size_t n)
{
    if (!al_dtype_is_float(dt) || !al_dtype_is_float(st)) return false;
    size_t db = al_dtype_bits(dt) / 8, sb = al_dtype_bits(st) / 8;
    long nblocks = (long)((n + CONVERT_BLOCK - 1) / CONVERT_BLOCK);
    if (nblocks <= 4 || dst == src) {
        convert_serial(dst, dt, src, st, n);
        return true;
    }
    #pragma omp parallel for schedule(static)
    for (long b = 0; b < nblocks; b++) {
        size_t off = (size_t)b * CONVERT_BLOCK;
        size_t k = n - off < CONVERT_BLOCK ? n - off : CONVERT_BLOCK;
        convert_serial((char *)dst + off * db, dt, (const char *)src + off * sb, st, k);
    }
    return true;
}
