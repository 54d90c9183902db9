/* core/dtype.h: element types and conversions.
 *
 * Floats we compute with: F32, F16, BF16, F64. Every other safetensors dtype
 * (integers, bool, the F8/F6/F4 families) is known by name and size so that it can
 * be validated and carried through a checkpoint untouched, never converted.
 *
 * F32 -> F16/BF16 rounds to nearest, ties to even; overflow gives +-Inf; NaN stays
 * NaN (payload kept where it fits); subnormals are produced and read exactly.
 * F16/BF16 -> F32 is exact, so F16/BF16 -> F32 -> F16/BF16 is the identity on all
 * 65,536 bit patterns. */
#ifndef AL_DTYPE_H
#define AL_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum {
    AL_F32 = 0, AL_F16, AL_BF16, AL_F64,
    AL_BOOL, AL_U8, AL_I8, AL_I16, AL_U16, AL_I32, AL_U32, AL_I64, AL_U64, AL_C64,
    AL_F8_E5M2, AL_F8_E4M3, AL_F8_E8M0, AL_F8_E4M3FNUZ, AL_F8_E5M2FNUZ,
    AL_F6_E2M3, AL_F6_E3M2, AL_F4,
    AL_DTYPE_COUNT
} al_dtype;

/* safetensors spelling ("F32", "BF16", ...). */
const char *al_dtype_name(al_dtype t);
/* Parse a safetensors dtype name (exact, case-sensitive). false if unknown. */
bool al_dtype_from_name(const char *name, al_dtype *out);
/* Parse a user-facing name: f32/float32/fp32, f16/float16/fp16/half, bf16/bfloat16, f64. */
bool al_dtype_from_user(const char *name, al_dtype *out);
/* Size of one element in bits (4 for F4, 6 for F6_*). */
unsigned al_dtype_bits(al_dtype t);
/* True for F32, F16, BF16, F64: the types alloy converts and computes with. */
bool al_dtype_is_float(al_dtype t);

static inline uint32_t al_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float al_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline float al_bf16_to_f32(uint16_t h) { return al_bits_f32((uint32_t)h << 16); }

/* Written with selects, not branches, so that loops over it vectorize. */
static inline uint16_t al_f32_to_bf16(float f)
{
    uint32_t x = al_f32_bits(f);
    uint32_t h = x >> 16;
    uint32_t nan = h | ((h & 0x7fu) ? 0u : 0x40u);       /* NaN: keep sign and top payload,
                                                            * quiet if the payload is lost */
    uint32_t r = (x + 0x7fffu + (h & 1u)) >> 16;          /* RNE; carries into exponent -> Inf */
    return (uint16_t)((x & 0x7fffffffu) > 0x7f800000u ? nan : r);
}

float    al_f16_to_f32(uint16_t h);
uint16_t al_f32_to_f16(float f);

/* Row converters between float dtypes (dst and src must not overlap unless equal
 * dtype). n is the element count. Returns false if either dtype is not a float. */
bool al_convert(void *dst, al_dtype dt, const void *src, al_dtype st, size_t n);

#endif
