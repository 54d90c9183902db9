/* merge/kernels_internal.h: deterministic building blocks shared by the methods.
 * Not installed. All OpenMP lives in merge/ kernel files; every omp_* call is under
 * #ifdef _OPENMP and the serial build computes the same bits. */
#ifndef AL_MERGE_KERNELS_INTERNAL_H
#define AL_MERGE_KERNELS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../core/dtype.h"
#include "../core/status.h"
#include "method.h"

/* Sub-chunk: methods process a chunk in pieces of at most this many elements
 * (rounded to whole rows for row-wise methods) so scratch is bounded and
 * independent of the caller's chunk size. */
#define AL_SUB ((int64_t)1 << 16)

/* Hot element loops get an AVX2 clone picked at load time (glibc ifunc) besides the
 * baseline x86-64 one. -std=c11 keeps FP contraction off and avx2 alone implies no
 * FMA, so both clones compute the same bits. Not under sanitizers or other targets. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define AL_HOT __attribute__((target_clones("avx2", "default")))
#else
#define AL_HOT
#endif

int al_kern_threads(void);

/* OpenMP pragmas via _Pragma so that the NO_OMP build (where -Wall would reject an
 * unknown #pragma) compiles them away. */
#ifdef _OPENMP
#define AL_PRAGMA(x) _Pragma(#x)
#else
#define AL_PRAGMA(x)
#endif
#define AL_OMP_FOR AL_PRAGMA(omp parallel for schedule(static))

/* ---- chunk-invariant block sums ------------------------------------------------
 * m double accumulators over a stream of elements indexed globally 0..numel-1.
 * Elements of global block b = [b*AL_MERGE_BLOCK, (b+1)*AL_MERGE_BLOCK) are added
 * left to right into a fresh partial (starting at 0.0); partials are added to the
 * totals in block order. fn(ctx, acc, i0, i1) adds elements [i0, i1) (indices
 * relative to the `off` passed to al_bsum_add) into acc[0..m) left to right. */
typedef void (*al_bsum_fn)(void *ctx, double *acc, int64_t i0, int64_t i1);

typedef struct {
    int m;
    int64_t pos;       /* next global element expected */
    double *total;     /* m */
    double *part;      /* m: current block's partial */
    double *scratch;   /* AL_BSUM_GROUP * m */
} al_bsum;

al_status al_bsum_init(al_bsum *s, int m, al_error *err);
void al_bsum_add(al_bsum *s, int64_t off, int64_t len, al_bsum_fn fn, void *ctx);
void al_bsum_finish(al_bsum *s);         /* flush the last partial block */
void al_bsum_free(al_bsum *s);

/* ---- exact k-th largest of uint32 keys (radix select, 2 passes) ----------------
 * Keys: order-preserving uint32 (for |x|: float bits & 0x7fffffff). Up to
 * AL_RSEL_MAXT ranks per key stream share the top-16-bit histogram. */
#define AL_RSEL_MAXT 3
#define AL_HIST_BINS 65536          /* bins per pass: 16 bits of the key */
typedef void (*al_key_fn)(void *ctx, uint32_t *keys, int64_t i0, int64_t i1);

typedef struct {
    int nt;
    int64_t n;                    /* elements counted in pass A */
    int64_t k[AL_RSEL_MAXT];      /* 1-based rank from the largest, 1..n */
    uint32_t bin[AL_RSEL_MAXT];
    int64_t above[AL_RSEL_MAXT];  /* elements in bins above `bin` */
    uint32_t thr[AL_RSEL_MAXT];   /* result: key of the k-th largest */
    int64_t n_greater[AL_RSEL_MAXT]; /* result: elements with key > thr */
    int64_t n_equal[AL_RSEL_MAXT];   /* result: elements with key == thr */
    uint64_t *hi;                 /* 65536 */
    uint64_t *lo;                 /* AL_RSEL_MAXT * 65536 */
    uint32_t *tab;                /* per-thread 65536-bin tables */
    int nthr;
} al_rsel;

al_status al_rsel_init(al_rsel *r, int nt, const int64_t *k, al_error *err);
void al_rsel_count_hi(al_rsel *r, int64_t len, al_key_fn fn, void *ctx);
void al_rsel_finish_hi(al_rsel *r);
void al_rsel_count_lo(al_rsel *r, int64_t len, al_key_fn fn, void *ctx);
void al_rsel_finish_lo(al_rsel *r);
void al_rsel_free(al_rsel *r);

/* ---- typed inputs --------------------------------------------------------------
 * Elements [off, off+n) of a whole tensor stored as F32, F16 or BF16, as F32
 * (exact: every F16/BF16 value is an F32 value). */
static inline void al_src_load(float *dst, const al_merge_src *s, int64_t off, int64_t n)
{
    if (s->dtype == AL_F32) {
        memcpy(dst, (const float *)s->data + off, (size_t)n * sizeof *dst);
    } else if (s->dtype == AL_BF16) {
        const uint16_t *p = (const uint16_t *)s->data + off;
        for (int64_t j = 0; j < n; j++) dst[j] = al_bf16_to_f32(p[j]);
    } else {
        al_convert(dst, AL_F32, (const uint16_t *)s->data + off, s->dtype, (size_t)n);
    }
}

/* Store n F32 values as elements [at, at+n) of out, an F32/F16/BF16 array (RNE). */
static inline void al_dst_store(void *out, al_dtype dt, int64_t at, const float *src, int64_t n)
{
    if (dt == AL_F32) {
        memcpy((float *)out + at, src, (size_t)n * sizeof *src);
    } else if (dt == AL_BF16) {
        uint16_t *o = (uint16_t *)out + at;
        for (int64_t j = 0; j < n; j++) o[j] = al_f32_to_bf16(src[j]);
    } else {
        al_convert((uint16_t *)out + at, dt, src, AL_F32, (size_t)n);
    }
}

/* Key stream |X - B| (F32 delta, al_abs_key) over typed inputs, for al_rsel/al_topk. */
typedef struct { const al_merge_src *x, *b; } al_dkey_ctx;
void al_dkeys(void *ctx, uint32_t *keys, int64_t i0, int64_t i1);

/* ---- exact k-th largest key with one streamed pass -----------------------------
 * For a key stream of n elements and a rank k (1 <= k < n), finds the k-th largest
 * key thr, how many keys are greater and equal, and where the rank order (key desc,
 * then LOWER index first) puts the cut among the ties: an element with key == thr is
 * inside the top k iff its index <= tie_last.
 *
 * How: the keys at a few hundred thousand random positions bracket the k-th largest
 * (sample order statistics, +-6 standard deviations); one parallel pass counts the
 * keys above the bracket and collects the (key, index) pairs inside it, in element
 * order; an exact radix select over the bracket finishes. Where the bracket misses
 * (about 1e-9 per call) or holds too many keys (heavy ties), the exact two-pass
 * histogram select (al_rsel) and a counting pass do the same job. Either way the
 * result is exact; the sample only decides the speed. */
typedef struct {
    uint32_t thr;
    int64_t n_greater, n_equal;
    int64_t tie_last;             /* INT64_MAX: every tie is inside */
    bool banded;                  /* found by the one-pass bracket */
} al_topk;

al_status al_topk_find(al_topk *out, int64_t n, int64_t k, al_key_fn fn, void *ctx, al_error *err);
/* Tests: 0 normal, 1 always the two-pass fallback, 2 a 16-key sample (misses often). */
void al_topk_test_mode(int mode);

/* ---- rank cuts with the index tie rule ----------------------------------------
 * "rank < r" in the total order (key desc, then index asc). Evaluated in element
 * order with a running tie counter, so it must see every element exactly once. */
typedef struct {
    int kind;          /* 0: never (r <= 0), 1: always (r >= n), 2: threshold */
    uint32_t thr;
    int64_t need;      /* ties at thr that are still < r */
    int64_t seen;      /* ties at thr seen so far */
    int ties;          /* kind 2: 1 every key == thr is inside, 0 none is, -1 only the
                        * first `need` in element order (the only case needing order) */
} al_rankcut;

void al_rankcut_set(al_rankcut *c, int64_t r, int64_t n, uint32_t thr, int64_t n_greater, int64_t n_equal);
void al_rankcut_rewind(al_rankcut *c);
static inline bool al_rankcut_below(al_rankcut *c, uint32_t key)
{
    if (c->kind != 2) return c->kind == 1;
    if (key > c->thr) return true;
    if (key < c->thr) return false;
    if (c->ties >= 0) return c->ties == 1;
    return c->seen++ < c->need;
}

static inline uint32_t al_abs_key(float x)
{
    uint32_t u;
    __builtin_memcpy(&u, &x, 4);
    return u & 0x7fffffffu;
}

/* ---- parallel element loops ----------------------------------------------------
 * fn(ctx, i0, i1) on disjoint static ranges of [0, len), each a multiple of
 * `grain` elements (except the last). */
typedef void (*al_range_fn)(void *ctx, int64_t i0, int64_t i1);
void al_par_ranges(int64_t len, int64_t grain, al_range_fn fn, void *ctx);

#endif
