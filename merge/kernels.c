/* merge/kernels.c: deterministic sums, radix select, parallel ranges.
 *
 * Determinism argument:
 *   - al_bsum: the value of a total depends only on the global block partition
 *     (AL_MERGE_BLOCK) and element order within blocks, not on how the stream is cut
 *     into chunks or how blocks are spread over threads: each block partial is
 *     computed by one thread left to right, partials are folded in block order.
 *   - al_rsel: histograms are integer counts; per-thread tables are summed exactly.
 *   - al_par_ranges: element-wise loops writing disjoint memory. */
#include "kernels_internal.h"

#include <string.h>

#include "../core/alloc.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define AL_BSUM_GROUP 256     /* full blocks summed per parallel region */
#define AL_HIST_PAR_MIN ((int64_t)1 << 18)  /* below this, count serially */

int al_kern_threads(void)
{
#ifdef _OPENMP
    int t = omp_get_max_threads();
    return t > 0 ? t : 1;
#else
    return 1;
#endif
}

/* ---------------------------------------------------------------- block sums --- */

al_status al_bsum_init(al_bsum *s, int m, al_error *err)
{
    memset(s, 0, sizeof *s);
    s->m = m;
    s->total = al_calloc((size_t)m, sizeof(double));
    s->part = al_calloc((size_t)m, sizeof(double));
    s->scratch = al_calloc((size_t)m * AL_BSUM_GROUP, sizeof(double));
    if (!s->total || !s->part || !s->scratch) {
        al_bsum_free(s);
        return al_errorf(err, AL_ERR_NOMEM, "merge: out of memory for %d accumulators", m);
    }
    return AL_OK;
}

void al_bsum_free(al_bsum *s)
{
    if (!s) return;
    al_free(s->total);
    al_free(s->part);
    al_free(s->scratch);
    memset(s, 0, sizeof *s);
}

static void bsum_fold_part(al_bsum *s)
{
    for (int j = 0; j < s->m; j++) { s->total[j] += s->part[j]; s->part[j] = 0.0; }
}

void al_bsum_add(al_bsum *s, int64_t off, int64_t len, al_bsum_fn fn, void *ctx)
{
    const int64_t B = AL_MERGE_BLOCK;
    AL_ASSERT(off == s->pos && len >= 0);
    int64_t i = 0;
    /* head: finish the block the previous chunk left open */
    if (off % B != 0 && len > 0) {
        int64_t h = B - off % B;
        if (h > len) h = len;
        fn(ctx, s->part, 0, h);
        i = h;
        if ((off + i) % B == 0) bsum_fold_part(s);
    }
    /* full blocks, in groups processed in parallel, folded in order */
    while (len - i >= B) {
        int64_t nb = (len - i) / B;
        if (nb > AL_BSUM_GROUP) nb = AL_BSUM_GROUP;
        const int m = s->m;
        double *sc = s->scratch;
        const int64_t base = i;
        memset(sc, 0, (size_t)nb * (size_t)m * sizeof(double));
        AL_OMP_FOR
        for (int64_t b = 0; b < nb; b++)
            fn(ctx, sc + b * m, base + b * B, base + (b + 1) * B);
        for (int64_t b = 0; b < nb; b++)
            for (int j = 0; j < m; j++) s->total[j] += sc[b * m + j];
        i += nb * B;
    }
    /* tail: opens a new partial block */
    if (i < len) fn(ctx, s->part, i, len);
    s->pos = off + len;
}

void al_bsum_finish(al_bsum *s)
{
    bsum_fold_part(s);
}

/* -------------------------------------------------------------- radix select --- */

al_status al_rsel_init(al_rsel *r, int nt, const int64_t *k, al_error *err)
{
    memset(r, 0, sizeof *r);
    AL_ASSERT(nt >= 0 && nt <= AL_RSEL_MAXT);
    r->nt = nt;
    for (int t = 0; t < nt; t++) r->k[t] = k[t];
    r->nthr = al_kern_threads();
    r->hi = al_calloc(AL_HIST_BINS, sizeof(uint64_t));
    r->lo = al_calloc((size_t)AL_RSEL_MAXT * AL_HIST_BINS, sizeof(uint64_t));
    r->tab = al_calloc((size_t)r->nthr * AL_HIST_BINS, sizeof(uint32_t));
    if (!r->hi || !r->lo || !r->tab) {
        al_rsel_free(r);
        return al_errorf(err, AL_ERR_NOMEM, "merge: out of memory for selection histograms");
    }
    return AL_OK;
}

void al_rsel_free(al_rsel *r)
{
    if (!r) return;
    al_free(r->hi);
    al_free(r->lo);
    al_free(r->tab);
    memset(r, 0, sizeof *r);
}

/* Count keys of [0, len) into hist: mode 0 = top 16 bits; mode 1 = low 16 bits of
 * keys whose top 16 bits equal `bin`. Per-thread uint32 tables (a chunk slice per
 * thread is < 2^32 elements), summed exactly and cleared afterwards. */
typedef struct { al_key_fn fn; void *ctx; int mode; uint32_t bin; uint32_t *tab; int64_t len; int nthr; } hist_job;

static void hist_range(const hist_job *J, uint32_t *tab, int64_t i0, int64_t i1)
{
    uint32_t keys[1024];
    for (int64_t a = i0; a < i1; a += 1024) {
        int64_t b = a + 1024 < i1 ? a + 1024 : i1;
        J->fn(J->ctx, keys, a, b);
        if (J->mode == 0) {
            for (int64_t j = 0; j < b - a; j++) tab[keys[j] >> 16]++;
        } else {
            for (int64_t j = 0; j < b - a; j++)
                if ((keys[j] >> 16) == J->bin) tab[keys[j] & 0xffffu]++;
        }
    }
}

static void hist_count(al_rsel *r, uint64_t *hist, int mode, uint32_t bin,
                       int64_t len, al_key_fn fn, void *ctx)
{
    hist_job J = { fn, ctx, mode, bin, r->tab, len, r->nthr };
    if (len < AL_HIST_PAR_MIN || r->nthr == 1) {
        hist_range(&J, r->tab, 0, len);
        for (int b = 0; b < AL_HIST_BINS; b++) { hist[b] += r->tab[b]; r->tab[b] = 0; }
        return;
    }
    const int nthr = r->nthr;
    AL_PRAGMA(omp parallel num_threads(nthr))
    {
        int t = 0, nt = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        int64_t per = (len + nt - 1) / nt;
        int64_t i0 = (int64_t)t * per, i1 = i0 + per < len ? i0 + per : len;
        if (i0 < i1) hist_range(&J, r->tab + (size_t)t * AL_HIST_BINS, i0, i1);
    }
    uint32_t *tab = r->tab;
    AL_OMP_FOR
    for (int b = 0; b < AL_HIST_BINS; b++) {
        uint64_t s = 0;
        for (int t = 0; t < nthr; t++) { s += tab[(size_t)t * AL_HIST_BINS + b]; tab[(size_t)t * AL_HIST_BINS + b] = 0; }
        hist[b] += s;
    }
}

void al_rsel_count_hi(al_rsel *r, int64_t len, al_key_fn fn, void *ctx)
{
    if (r->nt == 0) return;
    hist_count(r, r->hi, 0, 0, len, fn, ctx);
    r->n += len;
}

void al_rsel_finish_hi(al_rsel *r)
{
    for (int t = 0; t < r->nt; t++) {
        AL_ASSERT(r->k[t] >= 1 && r->k[t] <= r->n);
        int64_t cum = 0;
        int b = AL_HIST_BINS - 1;
        for (; b > 0; b--) {
            if (cum + (int64_t)r->hi[b] >= r->k[t]) break;
            cum += (int64_t)r->hi[b];
        }
        r->bin[t] = (uint32_t)b;
        r->above[t] = cum;
    }
}

void al_rsel_count_lo(al_rsel *r, int64_t len, al_key_fn fn, void *ctx)
{
    for (int t = 0; t < r->nt; t++) {
        int same = -1;   /* targets in the same bin share one histogram */
        for (int u = 0; u < t; u++) if (r->bin[u] == r->bin[t]) { same = u; break; }
        if (same < 0)
            hist_count(r, r->lo + (size_t)t * AL_HIST_BINS, 1, r->bin[t], len, fn, ctx);
    }
}

void al_rsel_finish_lo(al_rsel *r)
{
    for (int t = 0; t < r->nt; t++) {
        int src = t;
        for (int u = 0; u < t; u++) if (r->bin[u] == r->bin[t]) { src = u; break; }
        const uint64_t *h = r->lo + (size_t)src * AL_HIST_BINS;
        int64_t cum = r->above[t];
        int j = AL_HIST_BINS - 1;
        for (; j > 0; j--) {
            if (cum + (int64_t)h[j] >= r->k[t]) break;
            cum += (int64_t)h[j];
        }
        r->thr[t] = (r->bin[t] << 16) | (uint32_t)j;
        r->n_greater[t] = cum;
        r->n_equal[t] = (int64_t)h[j];
    }
}

/* ----------------------------------------------------------------- rank cuts --- */

void al_rankcut_set(al_rankcut *c, int64_t r, int64_t n, uint32_t thr, int64_t n_greater, int64_t n_equal)
{
    memset(c, 0, sizeof *c);
    if (r <= 0) { c->kind = 0; return; }
    if (r >= n) { c->kind = 1; return; }
    c->kind = 2;
    c->thr = thr;
    c->need = r - n_greater;
    /* Usually the cut takes every element at the threshold key (often just one), or
     * none: then each element is decided alone and the work can be split freely. */
    c->ties = c->need >= n_equal ? 1 : c->need <= 0 ? 0 : -1;
}

void al_rankcut_rewind(al_rankcut *c) { c->seen = 0; }

/* ------------------------------------------------------------ element ranges --- */

void al_par_ranges(int64_t len, int64_t grain, al_range_fn fn, void *ctx)
{
    if (grain < 1) grain = 1;
    int64_t nb = (len + grain - 1) / grain;
    if (nb <= 1) { if (len > 0) fn(ctx, 0, len); return; }
    AL_OMP_FOR
    for (int64_t b = 0; b < nb; b++) {
        int64_t i0 = b * grain, i1 = i0 + grain < len ? i0 + grain : len;
        fn(ctx, i0, i1);
    }
}
