/* core/alloc.h: the one allocator every module uses, plus overflow-checked size math.
 *
 * Every heap allocation in the library goes through al_malloc/al_calloc/al_realloc,
 * so a test can make the N-th allocation fail (al_alloc_fail_at) and check that each
 * path ends in a clean AL_ERR_NOMEM with nothing leaked (Lua's memerr sweep). The
 * hook is process-wide and meant for tests only. */
#ifndef AL_ALLOC_H
#define AL_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void *al_malloc(size_t n);
void *al_calloc(size_t count, size_t size);   /* NULL on count*size overflow too */
void *al_realloc(void *p, size_t n);
void  al_free(void *p);
char *al_strdup(const char *s);
char *al_strndup(const char *s, size_t n);
/* 64-byte aligned (cache line, AVX-512 friendly); free with al_free. */
void *al_malloc_aligned(size_t n);

/* Test hook: the n-th allocation from now (1-based) and every later one fails; 0 disables.
 * al_alloc_count() reports allocations made since the last al_alloc_fail_at call. */
void al_alloc_fail_at(long n);
long al_alloc_count(void);

/* Checked arithmetic: return true on overflow (result unspecified then). */
static inline bool al_mul_overflow_u64(uint64_t a, uint64_t b, uint64_t *out)
{ return __builtin_mul_overflow(a, b, out); }
static inline bool al_add_overflow_u64(uint64_t a, uint64_t b, uint64_t *out)
{ return __builtin_add_overflow(a, b, out); }

#endif
