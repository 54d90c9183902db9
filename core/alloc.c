/* core/alloc.c: allocation with a failure-injection hook for tests. */
#include "alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Counters are atomic because allocations may happen inside OpenMP regions. */
static atomic_long g_fail_at;   /* 0: never fail */
static atomic_long g_count;

void al_alloc_fail_at(long n) { atomic_store(&g_count, 0); atomic_store(&g_fail_at, n); }
long al_alloc_count(void) { return atomic_load(&g_count); }

static bool should_fail(void)
{
    long n = atomic_fetch_add(&g_count, 1) + 1;
    long f = atomic_load(&g_fail_at);
    return f > 0 && n >= f;
}

void *al_malloc(size_t n)
{
    if (should_fail()) return NULL;
    return malloc(n ? n : 1);
}

void *al_calloc(size_t count, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) return NULL;
    if (should_fail()) return NULL;
    return calloc(total ? count : 1, total ? size : 1);
}

void *al_realloc(void *p, size_t n)
{
    if (should_fail()) return NULL;
    return realloc(p, n ? n : 1);
}

void al_free(void *p) { free(p); }

char *al_strndup(const char *s, size_t n)
{
    char *d = al_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *al_strdup(const char *s) { return al_strndup(s, strlen(s)); }

void *al_malloc_aligned(size_t n)
{
    if (should_fail()) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64) != 0) return NULL;
    return p;
}
