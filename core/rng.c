/* core/rng.c: see rng.h. */
#include "rng.h"

#include <string.h>

uint64_t al_rng_u64(uint64_t seed, uint64_t stream, uint64_t index)
{
    return al_rng_at(al_rng_key(seed, stream), index);
}

double al_rng_unit(uint64_t seed, uint64_t stream, uint64_t index)
{
    return al_rng_unit_at(al_rng_key(seed, stream), index);
}

uint64_t al_hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull;           /* FNV-1a 64 offset basis */
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;                    /* FNV-1a 64 prime */
    }
    return al_mix64(h);
}

uint64_t al_hash_str(const char *s) { return al_hash_bytes(s, s ? strlen(s) : 0); }
