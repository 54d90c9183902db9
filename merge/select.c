/* merge/select.c: the exact k-th largest key of a stream in one pass (al_topk, see
 * kernels_internal.h), and the |X - B| key stream over typed inputs.
 *
 * Sampling argument: for s keys drawn uniformly with replacement, the number that
 * are >= the k-th largest key of the whole stream is Binomial(s, q), q = k/n, with
 * standard deviation sqrt(s q (1-q)). Taking the sample's order statistics 6 standard
 * deviations (+16) on either side of s*q as the bracket [lo, hi], the k-th largest
 * lies inside it except with probability about 2e-9, and the bracket holds about
 * 2 * 6 * sqrt(q(1-q)/s) of the stream. s = n/64 within [2^14, 2^22]: 1.4% of an
 * 11.5M-element tensor, 0.6% of a 65M-element embedding; its (key, index) pairs are
 * all the pass keeps. Keys are sampled in runs of 16 neighbours (one cache miss per
 * run), which are not independent where neighbours are alike: the bracket is then
 * wider than it should be and misses more often, which costs time, never exactness. */
#include <string.h>

#include "../core/alloc.h"
#include "../core/rng.h"
#include "kernels_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define KEY_TILE 1024
#define SAMPLE_MIN ((int64_t)1 << 14)
#define SAMPLE_MAX ((int64_t)1 << 22)
#define RUN 16                   /* sampled keys per random position */

static int g_test_mode;
void al_topk_test_mode(int mode) { g_test_mode = mode; }

AL_HOT void al_dkeys(void *vc, uint32_t *keys, int64_t i0, int64_t i1)
{
    const al_dkey_ctx *c = vc;
    if (c->x->dtype == AL_BF16 && c->b->dtype == AL_BF16) {      /* the common case, fused */
        const uint16_t *x = (const uint16_t *)c->x->data + i0, *b = (const uint16_t *)c->b->data + i0;
        for (int64_t j = 0; j < i1 - i0; j++) keys[j] = al_abs_key(al_bf16_to_f32(x[j]) - al_bf16_to_f32(b[j]));
        return;
    }
    float x[KEY_TILE], b[KEY_TILE];
    for (int64_t a = i0; a < i1; a += KEY_TILE) {
        int64_t L = i1 - a < KEY_TILE ? i1 - a : KEY_TILE;
        al_src_load(x, c->x, a, L);
        al_src_load(b, c->b, a, L);
        for (int64_t j = 0; j < L; j++) keys[a - i0 + j] = al_abs_key(x[j] - b[j]);
    }
}

/* Per-thread output of the bracket pass: its contiguous range's (key, index) pairs
 * in [lo, hi], in element order, and its count of keys above hi. */
typedef struct {
    uint32_t *key;
    uint32_t *idx;
    int64_t cap, len, above;
    bool full;
} band_buf;

/* Index of the need-th key equal to thr (1-based, element order) in [0, n): each
 * thread counts its contiguous range, then the range where the count crosses is
 * scanned. For the fallback only. */
static int64_t nth_tie(int64_t n, uint32_t thr, int64_t need, al_key_fn fn, void *ctx, int nthr,
                       int64_t *cnt)
{
    int64_t per = (n + nthr - 1) / nthr;
    AL_PRAGMA(omp parallel for schedule(static) num_threads(nthr))
    for (int t = 0; t < nthr; t++) {
        uint32_t keys[KEY_TILE];
        int64_t i0 = (int64_t)t * per, i1 = i0 + per < n ? i0 + per : n, c = 0;
        for (int64_t a = i0; a < i1; a += KEY_TILE) {
            int64_t L = i1 - a < KEY_TILE ? i1 - a : KEY_TILE;
            fn(ctx, keys, a, a + L);
            for (int64_t j = 0; j < L; j++) c += keys[j] == thr;
        }
        cnt[t] = c;
    }
    for (int t = 0; t < nthr; t++) {
        if (need > cnt[t]) { need -= cnt[t]; continue; }
        uint32_t keys[KEY_TILE];
        int64_t i0 = (int64_t)t * per, i1 = i0 + per < n ? i0 + per : n;
        for (int64_t a = i0; a < i1; a += KEY_TILE) {
            int64_t L = i1 - a < KEY_TILE ? i1 - a : KEY_TILE;
            fn(ctx, keys, a, a + L);
            for (int64_t j = 0; j < L; j++)
                if (keys[j] == thr && --need == 0) return a + j;
        }
    }
    AL_ASSERT(0 && "nth_tie: fewer ties than counted");
    return -1;
}

static al_status exact_fallback(al_topk *out, int64_t n, int64_t k, al_key_fn fn, void *ctx, al_error *err)
{
    al_rsel r;
    al_status s = al_rsel_init(&r, 1, &k, err);
    if (s != AL_OK) return s;
    al_rsel_count_hi(&r, n, fn, ctx);
    al_rsel_finish_hi(&r);
    al_rsel_count_lo(&r, n, fn, ctx);
    al_rsel_finish_lo(&r);
    out->thr = r.thr[0];
    out->n_greater = r.n_greater[0];
    out->n_equal = r.n_equal[0];
    int nthr = r.nthr;
    al_rsel_free(&r);
    out->banded = false;
    int64_t need = k - out->n_greater;
    out->tie_last = INT64_MAX;
    if (need < out->n_equal) {
        int64_t *cnt = al_calloc((size_t)nthr, sizeof *cnt);
        if (!cnt) return al_errorf(err, AL_ERR_NOMEM, "merge: out of memory for selection");
        out->tie_last = nth_tie(n, out->thr, need, fn, ctx, nthr, cnt);
        al_free(cnt);
    }
    return AL_OK;
}

/* Rearranges a[0..n) so that a[r] is the r-th smallest (0-based), with a[0..r) <= a[r]
 * <= a[r+1..n) (Hoare's selection, median of three). */
static void select_u32(uint32_t *a, int64_t n, int64_t r)
{
    int64_t l = 0, h = n - 1;
    while (h > l) {
        int64_t m = l + (h - l) / 2;
        uint32_t x = a[l], y = a[m], z = a[h];
        uint32_t p = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        int64_t i = l, j = h;
        while (i <= j) {
            while (a[i] < p) i++;
            while (a[j] > p) j--;
            if (i <= j) { uint32_t t = a[i]; a[i] = a[j]; a[j] = t; i++; j--; }
        }
        if (r <= j) h = j;
        else if (r >= i) l = i;
        else return;
    }
}

/* One thread's part of the bracket pass: keys of [i0, i1). */
AL_HOT static void band_range(band_buf *B, int64_t i0, int64_t i1, uint32_t lo, uint32_t hi,
                              al_key_fn fn, void *ctx)
{
    uint32_t keys[KEY_TILE];
    uint8_t in[KEY_TILE + 64];
    uint32_t *restrict bk = B->key, *restrict bi = B->idx;
    const uint32_t span = hi - lo;                   /* key in [lo, hi] <=> key - lo <= span */
    int64_t above = 0, len = 0;
    for (int64_t a = i0; a < i1; a += KEY_TILE) {
        int64_t L = i1 - a < KEY_TILE ? i1 - a : KEY_TILE;
        fn(ctx, keys, a, a + L);
        /* both loops vectorize; the bracket holds about 1% of the keys: the flags
         * become a 64-bit mask per 64 keys, whose set bits are visited */
        uint32_t ab = 0;
        for (int64_t j = 0; j < L; j++) ab += keys[j] > hi;
        above += ab;
        for (int64_t j = 0; j < L; j++) in[j] = keys[j] - lo <= span;
        memset(in + L, 0, 64);
        for (int64_t j = 0; j < L; j += 64) {
            uint64_t m = 0;
            for (int q = 0; q < 8; q++) {
                uint64_t w;
                memcpy(&w, in + j + 8 * q, 8);
                /* bytes of 0/1 -> 8 bits: byte k lands on bit 56 + k, without carries */
                m |= ((w * 0x0102040810204080ull) >> 56) << (8 * q);
            }
            while (m) {
                int64_t t = j + __builtin_ctzll(m);
                m &= m - 1;
                if (len == B->cap) { B->full = true; goto out; }
                bk[len] = keys[t];
                bi[len] = (uint32_t)(a + t);
                len++;
            }
        }
    }
out:
    B->len = len;
    B->above = above;
}

/* The bracket pass: thread t takes the t-th contiguous range of [0, n). */
static void band_pass(band_buf *bb, int nthr, int64_t n, uint32_t lo, uint32_t hi, al_key_fn fn, void *ctx)
{
    int64_t per = (n + nthr - 1) / nthr;
    AL_PRAGMA(omp parallel for schedule(static) num_threads(nthr))
    for (int t = 0; t < nthr; t++) {
        int64_t i0 = (int64_t)t * per, i1 = i0 + per < n ? i0 + per : n;
        if (i0 < i1) band_range(&bb[t], i0, i1, lo, hi, fn, ctx);
    }
}

typedef struct { const uint32_t *keys; } arr_ctx;
static void arr_keys(void *vc, uint32_t *keys, int64_t i0, int64_t i1)
{
    const arr_ctx *c = vc;
    memcpy(keys, c->keys + i0, (size_t)(i1 - i0) * sizeof *keys);
}

/* thr = the kb-th largest of keys[0..len), and the counts of greater and equal keys
 * added to out's: a selection on a copy when small, else the parallel radix select
 * (bf16 deltas take few distinct values, which slows a selection by partitioning). */
static al_status select_in(const uint32_t *keys, int64_t len, int64_t kb, al_topk *out, al_error *err)
{
    if (len <= ((int64_t)1 << 16)) {
        uint32_t *c = al_malloc((size_t)len * sizeof *c);
        if (!c) return al_errorf(err, AL_ERR_NOMEM, "merge: out of memory for selection");
        memcpy(c, keys, (size_t)len * sizeof *c);
        select_u32(c, len, len - kb);
        out->thr = c[len - kb];
        al_free(c);
        int64_t gt = 0, eq = 0;
        for (int64_t i = 0; i < len; i++) { gt += keys[i] > out->thr; eq += keys[i] == out->thr; }
        out->n_greater += gt;
        out->n_equal += eq;
        return AL_OK;
    }
    al_rsel r;
    al_status s = al_rsel_init(&r, 1, &kb, err);
    if (s != AL_OK) return s;
    arr_ctx ac = { keys };
    al_rsel_count_hi(&r, len, arr_keys, &ac);
    al_rsel_finish_hi(&r);
    al_rsel_count_lo(&r, len, arr_keys, &ac);
    al_rsel_finish_lo(&r);
    out->thr = r.thr[0];
    out->n_greater += r.n_greater[0];
    out->n_equal += r.n_equal[0];
    al_rsel_free(&r);
    return AL_OK;
}

al_status al_topk_find(al_topk *out, int64_t n, int64_t k, al_key_fn fn, void *ctx, al_error *err)
{
    AL_ASSERT(n >= 2 && k >= 1 && k < n);
    memset(out, 0, sizeof *out);
    if (g_test_mode == 1 || n > (int64_t)UINT32_MAX) return exact_fallback(out, n, k, fn, ctx, err);

    /* The bracket [lo, hi] from a sample of s keys at random positions (a fixed seed:
     * the positions only decide the speed). Small streams take every key. */
    int64_t s = n / 64;
    if (s < SAMPLE_MIN) s = SAMPLE_MIN;
    if (s > SAMPLE_MAX) s = SAMPLE_MAX;
    if (g_test_mode == 2) s = RUN;
    s -= s % RUN;
    uint32_t lo = 0, hi = UINT32_MAX;
    double frac = 1.0;                         /* expected share of keys in the bracket */
    if (s * 4 < n) {
        uint32_t *smp = al_malloc((size_t)s * sizeof *smp);
        if (!smp) return al_errorf(err, AL_ERR_NOMEM, "merge: out of memory for selection");
        /* runs of RUN neighbours at random places: one cache miss per run */
        const uint64_t key = al_rng_key(0x746f706bull, (uint64_t)n);
        const int64_t runs = s / RUN;
        AL_OMP_FOR
        for (int64_t r = 0; r < runs; r++) {
            int64_t p = (int64_t)(al_rng_at(key, (uint64_t)r) % (uint64_t)(n - RUN + 1));
            fn(ctx, &smp[r * RUN], p, p + RUN);
        }
        /* the k-th largest sits near ascending sample position s - s*q */
        double q = (double)k / (double)n;
        int64_t m = (int64_t)(6.0 * __builtin_sqrt((double)s * q * (1.0 - q))) + 16;
        int64_t c = s - (int64_t)((double)s * q);
        if (c + m < s) { select_u32(smp, s, c + m); hi = smp[c + m]; }
        if (c - m > 0) { select_u32(smp, c + m < s ? c + m : s, c - m); lo = smp[c - m]; }
        al_free(smp);
        frac = (double)(2 * m) / (double)s;
        if (frac > 1.0) frac = 1.0;
    }

    /* per-thread room for three times its expected share of the bracket */
    int nthr = al_kern_threads();
    int64_t per = (n + nthr - 1) / nthr;
    int64_t cap = (int64_t)(3.0 * frac * (double)per) + 2 * KEY_TILE;
    if (cap > per + KEY_TILE) cap = per + KEY_TILE;
    band_buf *bb = al_calloc((size_t)nthr, sizeof *bb);
    uint32_t *gk = NULL, *gi = NULL;
    al_status st = AL_OK;
    if (!bb) return al_errorf(err, AL_ERR_NOMEM, "merge: out of memory for selection");
    for (int t = 0; t < nthr; t++) {
        bb[t].cap = cap;
        bb[t].key = al_malloc((size_t)cap * sizeof(uint32_t));
        bb[t].idx = al_malloc((size_t)cap * sizeof(uint32_t));
        if (!bb[t].key || !bb[t].idx) { st = al_errorf(err, AL_ERR_NOMEM, "merge: out of memory for selection"); goto done; }
    }
    band_pass(bb, nthr, n, lo, hi, fn, ctx);

    int64_t above = 0, blen = 0;
    bool full = false;
    for (int t = 0; t < nthr; t++) { above += bb[t].above; blen += bb[t].len; full |= bb[t].full; }
    if (full || above >= k || above + blen < k) {         /* bracket missed or overflowed */
        st = exact_fallback(out, n, k, fn, ctx, err);
        goto done;
    }
    /* the bracket in element order (thread order), then the exact select inside it */
    gk = al_malloc((size_t)(blen ? blen : 1) * sizeof *gk);
    gi = al_malloc((size_t)(blen ? blen : 1) * sizeof *gi);
    if (!gk || !gi) { st = al_errorf(err, AL_ERR_NOMEM, "merge: out of memory for selection"); goto done; }
    int64_t o = 0;
    for (int t = 0; t < nthr; t++) {
        memcpy(gk + o, bb[t].key, (size_t)bb[t].len * sizeof *gk);
        memcpy(gi + o, bb[t].idx, (size_t)bb[t].len * sizeof *gi);
        o += bb[t].len;
    }
    out->n_greater = above;
    if ((st = select_in(gk, blen, k - above, out, err)) != AL_OK) goto done;
    out->banded = true;
    out->tie_last = INT64_MAX;
    int64_t need = k - out->n_greater;                     /* ties inside: 1..n_equal */
    if (need < out->n_equal)
        for (int64_t i = 0; i < blen; i++)
            if (gk[i] == out->thr && --need == 0) { out->tie_last = gi[i]; break; }
done:
    for (int t = 0; t < nthr; t++) { al_free(bb[t].key); al_free(bb[t].idx); }
    al_free(bb);
    al_free(gk);
    al_free(gi);
    return st;
}
