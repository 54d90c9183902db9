/* tests/util/testutil.h: helpers shared by the cmocka tests (linked into every test). */
#ifndef AL_TESTUTIL_H
#define AL_TESTUTIL_H

#include <stdint.h>

#include "../../io/checkpoint.h"

/* Tensor `name` of c as F32, whole (al_free it); fails the test when absent. */
float *tu_read_f32(al_ckpt *c, const char *name, int64_t *numel);

/* rm -rf dir (a test's temporary directory); 0 on success. */
int tu_rm_rf(const char *dir);

/* xorshift64: the next pseudo-random value of state *x (nonzero), for mutation tests. */
static inline uint64_t tu_xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* OpenMP threads for the next parallel regions (no-op without OpenMP). */
void tu_set_threads(int t);

#endif
