/* core/rng.h: counter-based random numbers and stable name hashing.
 *
 * There is no generator state: the value for (seed, stream, index) is a pure
 * function, so a DARE/DELLA mask of element i depends only on (seed, tensor-name
 * hash, model index, i), never on thread count, chunking or evaluation order.
 *
 * Construction: key = mix(mix(seed + G) ^ stream); value(i) = mix(key + (i+1)*G),
 * i.e. element i of the SplitMix64 sequence seeded with `key` (Steele, Lea, Flood,
 * "Fast splittable pseudorandom number generators", OOPSLA 2014), G = 0x9e3779b97f4a7c15,
 * mix = the SplitMix64/Stafford variant-13 finalizer. */
#ifndef AL_RNG_H
#define AL_RNG_H

#include <stddef.h>
#include <stdint.h>

/* SplitMix64 finalizer: a bijection on 64 bits with full avalanche. */
static inline uint64_t al_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#define AL_RNG_GOLDEN 0x9e3779b97f4a7c15ull

/* Per-(seed, stream) key; hoist it out of element loops. */
static inline uint64_t al_rng_key(uint64_t seed, uint64_t stream)
{
    return al_mix64(al_mix64(seed + AL_RNG_GOLDEN) ^ stream);
}
static inline uint64_t al_rng_at(uint64_t key, uint64_t index)
{
    return al_mix64(key + (index + 1) * AL_RNG_GOLDEN);
}
/* Uniform double in [0, 1) with 53 random bits. */
static inline double al_rng_unit_at(uint64_t key, uint64_t index)
{
    return (double)(al_rng_at(key, index) >> 11) * 0x1.0p-53;
}

uint64_t al_rng_u64(uint64_t seed, uint64_t stream, uint64_t index);
double   al_rng_unit(uint64_t seed, uint64_t stream, uint64_t index);

/* Stable 64-bit hash of a string: FNV-1a 64 followed by al_mix64. Same value on
 * every platform and run; used as the tensor id in RNG streams. */
uint64_t al_hash_str(const char *s);
uint64_t al_hash_bytes(const void *p, size_t n);

/* Stream id for (tensor hash, model index): distinct models of one tensor get
 * independent streams. */
static inline uint64_t al_rng_stream(uint64_t tensor_hash, uint64_t model_index)
{
    return al_mix64(tensor_hash ^ al_mix64(model_index + 1));
}

#endif
