/* merge/gta.c: the generalized task arithmetic family (mergekit GTA):
 * task_arithmetic, ties, dare_ties, dare_linear, breadcrumbs, breadcrumbs_ties,
 * della, della_linear.
 *
 * Per tensor, base B, models X_i, i = 1..n (methods.md 2.1):
 *   delta_i = X_i - B                                  (F32, as mergekit)
 *   delta_i <- sparsify(delta_i)                       (+ optional rescale)
 *   u_i = w_i * delta_i
 *   consensus ("sum"): S = +1 where sum_i u_i >= 0 else -1;  m_i = [sign(u_i) == S]
 *       M = sum_i m_i u_i,  D = sum_i m_i w_i (per element, 0 -> 1)
 *   otherwise: M = sum_i u_i,  D = sum_i w_i (scalar, |D| < 1e-8 -> 1)
 *   if normalize: M /= D;   M *= lambda;   out = B + M
 * Sparsifiers:
 *   magnitude (TIES, Yadav et al. 2023, arXiv:2306.01708): keep the k = floor(density*N)
 *       largest |delta| of the tensor (exact radix select, index tie order).
 *   random (DARE, Yu et al. 2024, arXiv:2311.03099): keep with probability density.
 *   magnitude_outliers (Model Breadcrumbs, Davari & Belilovsky 2024, arXiv:2312.06795):
 *       drop the n_top = floor(gamma*N) largest, keep the next target = floor(density*N).
 *   della_magprune (DELLA, Deep et al. 2024, arXiv:2406.11617): per row, rank |delta|
 *       ascending r = 1..C, keep with p = (density - eps) + 2 eps (r - 1)/(C - 1).
 *   rescale: L1 matching delta_m * ||delta||_1/||delta_m||_1 (mergekit; skipped if a
 *       norm < 1e-7) or, for random/della with AL_RESCALE_INV_P, delta_m / p (papers).
 * Combination runs in double, rounded to F32 once. */
#include <math.h>
#include <string.h>

#include "../core/alloc.h"
#include "../core/rng.h"
#include "method_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

typedef enum { SP_NONE, SP_MAGNITUDE, SP_RANDOM, SP_OUTLIERS, SP_DELLA } gta_sp;

typedef struct {
    gta_sp sp;
    bool consensus;
    bool norm_default;
    bool rescale_default;
} gta_kind;

/* per-model sparsification mode */
enum { MD_IDENTITY, MD_ZERO, MD_WINDOW, MD_THRESH, MD_RANDOM, MD_DELLA };

#define MAXM AL_MERGE_MAX_MODELS

typedef struct {
    gta_kind kind;
    int n;
    int64_t numel, row_len, sub;
    bool normalize, rescale;
    al_rescale_mode rmode;
    double lambda, Dsc;
    double w[MAXM], dens[MAXM], eps[MAXM], rs[MAXM];
    int mode[MAXM];
    int64_t win_lo[MAXM], win_hi[MAXM];
    int t_lo[MAXM], t_hi[MAXM];      /* rsel target index of each cut, -1 if trivial */
    float inj[MAXM];
    al_rsel sel[MAXM];
    al_rankcut cut_lo[MAXM], cut_hi[MAXM];
    uint64_t rkey[MAXM];
    int p_hi, p_lo, p_l1, n_passes;
    al_bsum l1;                      /* [2i] ||delta_i||_1, [2i+1] ||masked||_1 */
    double *dm;                      /* n*sub: sparsified (and 1/p-scaled) deltas */
    float *dr;                       /* n*sub: raw deltas */
    uint32_t *keys;                  /* n*sub */
    uint64_t *sortbuf;               /* sub (della) */
    uint32_t *tieblk;                /* sub/AL_MERGE_BLOCK + 1: ties at a cut per block */
    int64_t *tiepre;                 /* ties before each block, per model (n * blocks) */
    int64_t nblk;                    /* blocks per sub-chunk */
    /* typed path */
    int64_t tie_last[MAXM];          /* WINDOW: ties at the cut with index <= this are kept */
    char *tscr;                      /* per-thread tile scratch */
    size_t tscr_per;                 /* bytes per thread */
    int nthr;
} gta_state;

static void gta_free(void *vs)
{
    gta_state *g = vs;
    if (!g) return;
    for (int i = 0; i < g->n; i++) al_rsel_free(&g->sel[i]);
    al_bsum_free(&g->l1);
    al_free(g->dm);
    al_free(g->dr);
    al_free(g->keys);
    al_free(g->sortbuf);
    al_free(g->tieblk);
    al_free(g->tiepre);
    al_free(g->tscr);
    al_free(g);
}

static al_status gta_init(const gta_kind *K, void **out, const al_merge_params *p,
                          int64_t numel, int n, bool has_base, al_merge_plan *plan,
                          al_error *err)
{
    *out = NULL;
    if (!has_base)
        return al_errorf(err, AL_ERR_RECIPE, "%s: task-arithmetic methods need a base model", al_tname(p));
    gta_state *g = al_calloc(1, sizeof *g);
    if (!g) return al_errorf(err, AL_ERR_NOMEM, "%s: out of memory", al_tname(p));
    al_status s = AL_OK;
    g->kind = *K;
    g->n = n;
    g->numel = numel;
    g->row_len = al_row_len(p, numel);
    g->normalize = p->normalize < 0 ? K->norm_default : p->normalize != 0;
    g->rescale = p->rescale < 0 ? K->rescale_default : p->rescale != 0;
    g->rmode = p->rescale_mode;
    if (K->sp == SP_MAGNITUDE || K->sp == SP_OUTLIERS) g->rmode = AL_RESCALE_L1;
    g->lambda = p->lambda;
    g->p_hi = g->p_lo = g->p_l1 = -1;
    double wsum = 0.0;
    bool any_window = false, any_masked = false;
    for (int i = 0; i < n; i++) {
        g->w[i] = al_pm(p->weight, i, 1.0);
        wsum += g->w[i];
        double d = al_pm(p->density, i, 1.0);
        g->dens[i] = d;
        g->rs[i] = 1.0;
        g->t_lo[i] = g->t_hi[i] = -1;
        g->rkey[i] = al_rng_key(p->seed, al_rng_stream(p->tensor_hash, (uint64_t)i));
        int md = MD_IDENTITY;
        if (K->sp == SP_NONE || d >= 1.0) {
            md = MD_IDENTITY;
        } else if (K->sp == SP_MAGNITUDE && p->ties_threshold) {
            md = MD_THRESH;
            g->inj[i] = p->ties_threshold[i];
        } else if (d <= 0.0) {
            md = MD_ZERO;
        } else if (K->sp == SP_MAGNITUDE) {
            /* mergekit asserts k > 0; we keep at least one element when density > 0 */
            int64_t k = (int64_t)floor(d * (double)numel);
            if (k < 1) k = 1;
            md = MD_WINDOW;
            g->win_lo[i] = 0;
            g->win_hi[i] = k;
        } else if (K->sp == SP_OUTLIERS) {
            double gm = al_pm(p->gamma, i, 0.01);
            int64_t target = (int64_t)floor(d * (double)numel);
            int64_t n_top = (int64_t)floor(gm * (double)numel);
            if (n_top < 0) n_top = 0;
            int64_t n_bot = numel - target - n_top;
            if (n_bot < 0) { n_top += n_bot; n_bot = 0; }
            md = MD_WINDOW;
            g->win_lo[i] = n_top;
            g->win_hi[i] = numel - n_bot;
            /* mergekit keeps sorted[n_bot : -n_top]; with n_top == 0 that slice is
             * empty and the whole delta is zeroed (a bug). Fixed unless compat. */
            if (n_top == 0 && p->breadcrumbs_compat) md = MD_ZERO;
        } else if (K->sp == SP_RANDOM) {
            md = MD_RANDOM;
        } else if (K->sp == SP_DELLA) {
            double e = al_pm(p->epsilon, i, 0.15);
            g->eps[i] = e;
            if (!(d - e > 0.0) || !(d + e < 1.0)) {
                gta_free(g);
                return al_errorf(err, AL_ERR_RECIPE,
                                 "%s: della needs 0 < density - epsilon and density + epsilon < 1 "
                                 "(model %d: density %g, epsilon %g)", al_tname(p), i, d, e);
            }
            if (p->ndim > 2) {
                gta_free(g);
                return al_errorf(err, AL_ERR_UNSUPPORTED,
                                 "%s: della ranks along dim 1; tensors of rank %d are not supported",
                                 al_tname(p), p->ndim);
            }
            md = MD_DELLA;
        }
        if (md == MD_WINDOW) {
            if (g->win_lo[i] <= 0 && g->win_hi[i] >= numel) md = MD_IDENTITY;
            else if (g->win_hi[i] <= g->win_lo[i]) md = MD_ZERO;
        }
        g->mode[i] = md;
        if (md == MD_WINDOW) {
            int64_t ks[2];
            int nt = 0;
            if (g->win_lo[i] > 0 && g->win_lo[i] < numel) { g->t_lo[i] = nt; ks[nt++] = g->win_lo[i]; }
            if (g->win_hi[i] > 0 && g->win_hi[i] < numel) { g->t_hi[i] = nt; ks[nt++] = g->win_hi[i]; }
            if ((s = al_rsel_init(&g->sel[i], nt, ks, err)) != AL_OK) goto fail;
            any_window = true;
        }
        if (md != MD_IDENTITY) any_masked = true;
    }
    g->Dsc = fabs(wsum) < 1e-8 ? 1.0 : wsum;
    int np = 0;
    if (any_window) { g->p_hi = np++; g->p_lo = np++; }
    if (g->rescale && any_masked && g->rmode == AL_RESCALE_L1) {
        g->p_l1 = np++;
        if ((s = al_bsum_init(&g->l1, 2 * (n > 0 ? n : 1), err)) != AL_OK) goto fail;
    }
    g->n_passes = np;
    g->sub = K->sp == SP_DELLA ? al_sub_rows(g->row_len) : AL_SUB;
    size_t ne = (size_t)(n > 0 ? n : 1) * (size_t)g->sub;
    g->dm = al_malloc(ne * sizeof(double));
    g->dr = al_malloc(ne * sizeof(float));
    g->keys = al_malloc(ne * sizeof(uint32_t));
    if (K->sp == SP_DELLA) g->sortbuf = al_malloc((size_t)g->sub * 2 * sizeof(uint64_t));
    g->nblk = g->sub / AL_MERGE_BLOCK + 2;
    g->tieblk = al_calloc((size_t)g->nblk * (size_t)(n > 0 ? n : 1), sizeof(uint32_t));
    g->tiepre = al_calloc((size_t)g->nblk * (size_t)(n > 0 ? n : 1), sizeof(int64_t));
    if (!g->dm || !g->dr || !g->keys || !g->tieblk || !g->tiepre || (K->sp == SP_DELLA && !g->sortbuf)) {
        s = al_errorf(err, AL_ERR_NOMEM, "%s: out of memory for merge scratch", al_tname(p));
        goto fail;
    }
    plan->n_passes = np;
    plan->align = K->sp == SP_DELLA ? g->row_len : 1;
    /* the typed path covers every mode but DELLA's rows and two-sided windows */
    plan->typed = K->sp != SP_DELLA && n > 0;
    for (int i = 0; i < n; i++)
        if (g->mode[i] == MD_WINDOW && g->win_lo[i] > 0) plan->typed = false;
    *out = g;
    return AL_OK;
fail:
    gta_free(g);
    return s;
}

/* ---- stats passes: exact selection ------------------------------------------ */

typedef struct { const float *b, *x; } key_ctx;

static void delta_keys(void *vc, uint32_t *keys, int64_t i0, int64_t i1)
{
    const key_ctx *c = vc;
    for (int64_t j = i0; j < i1; j++) keys[j - i0] = al_abs_key(c->x[j] - c->b[j]);
}

/* ---- sparsify one sub-chunk into dr (raw) and dm (kept, 1/p scaled) ----------- */

typedef struct {
    gta_state *g;
    int64_t goff, len;
    const float *b;
    const float *const *x;
    float *out;
} sub_ctx;

AL_HOT static void sub_deltas(void *vc, int64_t i0, int64_t i1)
{
    sub_ctx *c = vc;
    gta_state *g = c->g;
    for (int i = 0; i < g->n; i++) {
        float *dr = g->dr + (size_t)i * g->sub;
        uint32_t *k = g->keys + (size_t)i * g->sub;
        for (int64_t j = i0; j < i1; j++) {
            dr[j] = c->x[i][j] - c->b[j];
            k[j] = al_abs_key(dr[j]);
        }
    }
}

/* Stable LSD radix sort (4 x 8 bits) of (key, idx) pairs by key ascending. Result
 * in ka/ia; kb/ib are scratch of the same length. */
static void radix_sort_pairs(uint32_t *ka, uint32_t *ia, uint32_t *kb, uint32_t *ib, int64_t n)
{
    for (int sh = 0; sh < 32; sh += 8) {
        int64_t cnt[257] = { 0 };
        for (int64_t j = 0; j < n; j++) cnt[((ka[j] >> sh) & 0xffu) + 1]++;
        if (cnt[1] == n || cnt[256] == n) continue;   /* all in one bucket (cheap skip) */
        for (int b = 0; b < 256; b++) cnt[b + 1] += cnt[b];
        for (int64_t j = 0; j < n; j++) {
            int64_t d = cnt[(ka[j] >> sh) & 0xffu]++;
            kb[d] = ka[j];
            ib[d] = ia[j];
        }
        memcpy(ka, kb, (size_t)n * sizeof *ka);
        memcpy(ia, ib, (size_t)n * sizeof *ia);
    }
}

/* DELLA on rows [r0, r1) of the sub-chunk for model i. Ascending rank in the total
 * order (|delta|, then higher index = smaller), so the largest gets rank C. */
static void della_rows(sub_ctx *c, int i, int64_t r0, int64_t r1)
{
    gta_state *g = c->g;
    const int64_t C = g->row_len;
    const double d = g->dens[i], e = g->eps[i];
    const float *dr = g->dr + (size_t)i * g->sub;
    const uint32_t *k = g->keys + (size_t)i * g->sub;
    double *dm = g->dm + (size_t)i * g->sub;
    for (int64_t r = r0; r < r1; r++) {
        uint32_t *ka = (uint32_t *)(g->sortbuf + 2 * r * C), *ia = ka + C, *kb = ia + C, *ib = kb + C;
        const int64_t o = r * C;
        /* fill in descending index order: the stable sort then ranks equal keys
         * with the higher index lower (the documented tie order) */
        for (int64_t j = 0; j < C; j++) { ka[j] = k[o + C - 1 - j]; ia[j] = (uint32_t)(C - 1 - j); }
        radix_sort_pairs(ka, ia, kb, ib, C);
        for (int64_t rank = 0; rank < C; rank++) {
            int64_t j = (int64_t)ia[rank];
            /* C == 1 divides by zero in mergekit; we use p = density there */
            double pk = C > 1 ? (d - e) + 2.0 * e * (double)rank / (double)(C - 1) : d;
            if (pk < 0.0) pk = 0.0;
            if (pk > 1.0) pk = 1.0;
            double u = al_rng_unit_at(g->rkey[i], (uint64_t)(c->goff + o + j));
            double v = 0.0;
            if (u < pk) v = g->rmode == AL_RESCALE_INV_P ? (double)dr[o + j] / pk : (double)dr[o + j];
            dm[o + j] = v;
        }
    }
}

typedef struct { sub_ctx *c; int i; } della_job;
static void della_fn(void *vj, int64_t r0, int64_t r1)
{
    della_job *J = vj;
    della_rows(J->c, J->i, r0, r1);
}

/* Sparsify n elements of model i (all modes but WINDOW and DELLA, which have their
 * own code below): raw deltas dr and keys k in, kept (1/p-scaled) deltas dm out;
 * element 0 has global index goff (the RNG counter). Element-independent, so any
 * split gives the same bytes. */
static void sparsify_elems(const gta_state *g, int i, const float *dr, const uint32_t *k, double *dm,
                           int64_t goff, int64_t n)
{
    switch (g->mode[i]) {
    case MD_IDENTITY:
        for (int64_t j = 0; j < n; j++) dm[j] = dr[j];
        break;
    case MD_ZERO:
        for (int64_t j = 0; j < n; j++) dm[j] = 0.0;
        break;
    case MD_THRESH: {
        uint32_t tk = al_abs_key(g->inj[i]);
        for (int64_t j = 0; j < n; j++) dm[j] = k[j] >= tk ? (double)dr[j] : 0.0;
        break;
    }
    case MD_RANDOM: {
        const double d = g->dens[i];
        for (int64_t j = 0; j < n; j++) {
            double u = al_rng_unit_at(g->rkey[i], (uint64_t)(goff + j));
            dm[j] = u < d ? (g->rmode == AL_RESCALE_INV_P ? (double)dr[j] / d : (double)dr[j]) : 0.0;
        }
        break;
    }
    default:
        break;
    }
}

static void sparsify_range(sub_ctx *c, int i, int64_t j0, int64_t j1)
{
    const gta_state *g = c->g;
    const size_t o = (size_t)i * g->sub + (size_t)j0;
    sparsify_elems(g, i, g->dr + o, g->keys + o, g->dm + o, c->goff + j0, j1 - j0);
}

typedef struct { sub_ctx *c; int i; } model_job;

static void sparsify_fn(void *vj, int64_t j0, int64_t j1)
{
    model_job *J = vj;
    sparsify_range(J->c, J->i, j0, j1);
}

/* A rank cut decided without its tie counter: 1 inside, 0 outside, -1 a tie at the
 * threshold, which only the in-order counter can decide. */
static inline int cut_fixed(const al_rankcut *c, uint32_t key)
{
    if (c->kind != 2) return c->kind == 1;
    return key > c->thr ? 1 : key < c->thr ? 0 : c->ties;
}

/* WINDOW (TIES top-k, breadcrumbs band), in parallel: every element whose key is not
 * at a cut's threshold is decided independently; ties are counted per block and
 * settled afterwards in element order (window_ties), which is what the rank order
 * (key desc, then index asc) requires. */
AL_HOT static void window_fn(void *vj, int64_t j0, int64_t j1)
{
    model_job *J = vj;
    gta_state *g = J->c->g;
    const int i = J->i;
    const float *dr = g->dr + (size_t)i * g->sub;
    const uint32_t *k = g->keys + (size_t)i * g->sub;
    double *dm = g->dm + (size_t)i * g->sub;
    const al_rankcut *hi = &g->cut_hi[i], *lo = &g->cut_lo[i];
    uint32_t ties = 0;
    if (hi->kind == 2 && lo->kind == 0) {          /* TIES top-k: one cut, branch-free */
        /* keep key > thr, or key >= thr when every tie is inside; partial ties are
         * left out here and settled by window_ties. (Ties at key 0 are zero deltas,
         * which add nothing whether kept or not.) */
        const uint32_t thr = hi->ties == 1 && hi->thr > 0 ? hi->thr - 1 : hi->thr;
        for (int64_t j = j0; j < j1; j++) {
            ties += k[j] == hi->thr;
            double d = (double)dr[j];             /* kept: the delta; else +0.0 (bit mask) */
            uint64_t db;
            memcpy(&db, &d, 8);
            db &= -(uint64_t)(k[j] > thr);
            memcpy(&dm[j], &db, 8);
        }
        g->tieblk[(size_t)i * g->nblk + j0 / AL_MERGE_BLOCK] = hi->ties < 0 ? ties : 0;
        return;
    }
    for (int64_t j = j0; j < j1; j++) {
        int h = cut_fixed(hi, k[j]), l = cut_fixed(lo, k[j]);
        ties += (uint32_t)((h < 0) | (l < 0));
        dm[j] = (h > 0 && l == 0) ? (double)dr[j] : 0.0;
    }
    g->tieblk[(size_t)i * g->nblk + j0 / AL_MERGE_BLOCK] = ties;
}

static void window_ties(sub_ctx *c, int i)
{
    gta_state *g = c->g;
    const float *dr = g->dr + (size_t)i * g->sub;
    const uint32_t *k = g->keys + (size_t)i * g->sub;
    double *dm = g->dm + (size_t)i * g->sub;
    al_rankcut *hi = &g->cut_hi[i], *lo = &g->cut_lo[i];
    const uint32_t *tb = g->tieblk + (size_t)i * g->nblk;
    for (int64_t b = 0; b * AL_MERGE_BLOCK < c->len; b++) {
        if (!tb[b]) continue;
        int64_t j1 = (b + 1) * AL_MERGE_BLOCK < c->len ? (b + 1) * AL_MERGE_BLOCK : c->len;
        for (int64_t j = b * AL_MERGE_BLOCK; j < j1; j++) {
            if (cut_fixed(hi, k[j]) >= 0 && cut_fixed(lo, k[j]) >= 0) continue;
            bool below_hi = al_rankcut_below(hi, k[j]);   /* both advance their tie counters */
            bool below_lo = al_rankcut_below(lo, k[j]);
            dm[j] = (below_hi && !below_lo) ? (double)dr[j] : 0.0;
        }
    }
}

/* Each model's sub-chunk is split over the threads by element ranges (models one
 * after another), so the work stays balanced whatever the number of models. */
static void sub_sparsify(sub_ctx *c)
{
    gta_state *g = c->g;
    al_par_ranges(c->len, AL_MERGE_BLOCK, sub_deltas, c);
    const int n = g->n;
    for (int i = 0; i < n; i++) {
        model_job J = { c, i };
        if (g->mode[i] == MD_WINDOW) {
            al_par_ranges(c->len, AL_MERGE_BLOCK, window_fn, &J);
            window_ties(c, i);
        } else if (g->mode[i] == MD_DELLA) {
            della_job D = { c, i };
            al_par_ranges(c->len / g->row_len, 1, della_fn, &D);
        } else {
            al_par_ranges(c->len, AL_MERGE_BLOCK, sparsify_fn, &J);
        }
    }
}

static void l1_fn(void *vc, double *acc, int64_t i0, int64_t i1)
{
    sub_ctx *c = vc;
    gta_state *g = c->g;
    for (int i = 0; i < g->n; i++) {
        const float *dr = g->dr + (size_t)i * g->sub;
        const double *dm = g->dm + (size_t)i * g->sub;
        double a = acc[2 * i], b = acc[2 * i + 1];
        for (int64_t j = i0; j < i1; j++) { a += fabs((double)dr[j]); b += fabs(dm[j]); }
        acc[2 * i] = a;
        acc[2 * i + 1] = b;
    }
}

static void gta_rewind(gta_state *g)
{
    for (int i = 0; i < g->n; i++) { al_rankcut_rewind(&g->cut_lo[i]); al_rankcut_rewind(&g->cut_hi[i]); }
}

static void gta_stat(void *vs, int pass, int64_t off, int64_t len,
                     const float *base, const float *const *models)
{
    gta_state *g = vs;
    if (pass == g->p_hi || pass == g->p_lo) {
        for (int i = 0; i < g->n; i++) {
            if (g->mode[i] != MD_WINDOW) continue;
            key_ctx kc = { base, models[i] };
            if (pass == g->p_hi) al_rsel_count_hi(&g->sel[i], len, delta_keys, &kc);
            else al_rsel_count_lo(&g->sel[i], len, delta_keys, &kc);
        }
    } else if (pass == g->p_l1) {
        if (off == 0) gta_rewind(g);
        const float *xs[MAXM];
        for (int64_t o = 0; o < len; o += g->sub) {
            int64_t l = len - o < g->sub ? len - o : g->sub;
            for (int i = 0; i < g->n; i++) xs[i] = models[i] + o;
            sub_ctx c = { g, off + o, l, base + o, xs, NULL };
            sub_sparsify(&c);
            al_bsum_add(&g->l1, off + o, l, l1_fn, &c);
        }
    }
}

/* L1 rescale factors from the finished sums: ||delta||_1 / ||kept||_1. */
static void finish_l1(gta_state *g)
{
    al_bsum_finish(&g->l1);
    for (int i = 0; i < g->n; i++) {
        double a = g->l1.total[2 * i], b = g->l1.total[2 * i + 1];
        g->rs[i] = (g->mode[i] != MD_IDENTITY && a >= 1e-7 && b >= 1e-7) ? a / b : 1.0;
    }
}

static al_status gta_finish(void *vs, int pass, al_error *err)
{
    (void)err;
    gta_state *g = vs;
    if (pass == g->p_hi) {
        for (int i = 0; i < g->n; i++) if (g->mode[i] == MD_WINDOW) al_rsel_finish_hi(&g->sel[i]);
    } else if (pass == g->p_lo) {
        for (int i = 0; i < g->n; i++) {
            if (g->mode[i] != MD_WINDOW) continue;
            al_rsel *r = &g->sel[i];
            al_rsel_finish_lo(r);
            int tl = g->t_lo[i], th = g->t_hi[i];
            al_rankcut_set(&g->cut_lo[i], g->win_lo[i], g->numel, tl >= 0 ? r->thr[tl] : 0,
                           tl >= 0 ? r->n_greater[tl] : 0, tl >= 0 ? r->n_equal[tl] : 0);
            al_rankcut_set(&g->cut_hi[i], g->win_hi[i], g->numel, th >= 0 ? r->thr[th] : 0,
                           th >= 0 ? r->n_greater[th] : 0, th >= 0 ? r->n_equal[th] : 0);
        }
    } else if (pass == g->p_l1) {
        finish_l1(g);
    }
    return AL_OK;
}

/* Per element: TIES elects the sign of sum_i w_i d_i (an exact 0 elects +), then
 * averages the agreeing, nonzero weighted deltas (the disjoint mean); other methods
 * sum. Loops run over a tile of elements with the model loop outside, so they
 * vectorize; each element still adds its models in index order, so the bytes do not
 * depend on the tiling. */
#define COMBINE_TILE 256
/* L <= COMBINE_TILE elements: model i's kept deltas at dm + i*stride, base b, out o. */
AL_HOT static void combine_tile(const gta_state *g, const double *dm, size_t stride, int64_t L,
                                const float *b, float *o)
{
    const int n = g->n;
    double S[COMBINE_TILE], M[COMBINE_TILE], Dn[COMBINE_TILE];
    for (int64_t j = 0; j < L; j++) { M[j] = 0.0; Dn[j] = g->Dsc; }
    if (g->kind.consensus) {
        for (int64_t j = 0; j < L; j++) { S[j] = 0.0; Dn[j] = 0.0; }
        for (int i = 0; i < n; i++) {
            const double *d = dm + (size_t)i * stride, wi = g->w[i], ri = g->rs[i];
            for (int64_t j = 0; j < L; j++) S[j] += wi * (d[j] * ri);
        }
        for (int i = 0; i < n; i++) {
            const double *d = dm + (size_t)i * stride, wi = g->w[i], ri = g->rs[i];
            for (int64_t j = 0; j < L; j++) {
                double u = wi * (d[j] * ri);
                /* elected + (S >= 0, an exact 0 included) takes u > 0, else u < 0;
                 * zeros never vote. Written without branches so it vectorizes. */
                int64_t pos = S[j] >= 0.0;
                uint64_t take = -(uint64_t)((pos & (u > 0.0)) | (!pos & (u < 0.0)));
                uint64_t ub, wb;
                memcpy(&ub, &u, 8);
                memcpy(&wb, &wi, 8);
                ub &= take;                     /* untaken: +0.0, which adds nothing */
                wb &= take;
                double ut, wt;
                memcpy(&ut, &ub, 8);
                memcpy(&wt, &wb, 8);
                M[j] += ut;
                Dn[j] += wt;
            }
        }
        for (int64_t j = 0; j < L; j++) Dn[j] = Dn[j] == 0.0 ? 1.0 : Dn[j];
    } else {
        for (int i = 0; i < n; i++) {
            const double *d = dm + (size_t)i * stride, wi = g->w[i], ri = g->rs[i];
            for (int64_t j = 0; j < L; j++) M[j] += wi * (d[j] * ri);
        }
    }
    if (g->normalize) for (int64_t j = 0; j < L; j++) M[j] /= Dn[j];
    if (g->lambda != 1.0) for (int64_t j = 0; j < L; j++) M[j] *= g->lambda;
    for (int64_t j = 0; j < L; j++) o[j] = (float)((double)b[j] + M[j]);
}

static void combine_fn(void *vc, int64_t i0, int64_t i1)
{
    sub_ctx *c = vc;
    const gta_state *g = c->g;
    for (int64_t t0 = i0; t0 < i1; t0 += COMBINE_TILE) {
        const int64_t L = i1 - t0 < COMBINE_TILE ? i1 - t0 : COMBINE_TILE;
        combine_tile(g, g->dm + t0, (size_t)g->sub, L, c->b + t0, c->out + t0);
    }
}

/* TIES' single cut with a partial tie run: element j at the threshold is inside iff
 * fewer than `need` ties come before it in element order. With the ties counted per
 * block and prefix-summed (tiepre), each block settles its own ties in parallel. */
static bool single_cut(const gta_state *g, int i)
{
    return g->mode[i] == MD_WINDOW && g->cut_lo[i].kind == 0 && g->cut_hi[i].kind == 2;
}

static void settle_fn(void *vc, int64_t i0, int64_t i1)
{
    sub_ctx *c = vc;
    gta_state *g = c->g;
    const int64_t b = i0 / AL_MERGE_BLOCK;
    for (int i = 0; i < g->n; i++) {
        const al_rankcut *hi = &g->cut_hi[i];
        if (!single_cut(g, i) || hi->ties >= 0 || !g->tieblk[(size_t)i * g->nblk + b]) continue;
        int64_t before = g->tiepre[(size_t)i * g->nblk + b];
        if (before >= hi->need) continue;
        const float *dr = g->dr + (size_t)i * g->sub;
        const uint32_t *k = g->keys + (size_t)i * g->sub;
        double *dm = g->dm + (size_t)i * g->sub;
        for (int64_t j = i0; j < i1 && before < hi->need; j++)
            if (k[j] == hi->thr) { dm[j] = (double)dr[j]; before++; }
    }
    combine_fn(c, i0, i1);
}

static void deltas_cut_fn(void *vc, int64_t i0, int64_t i1)
{
    sub_ctx *c = vc;
    gta_state *g = c->g;
    sub_deltas(c, i0, i1);
    for (int i = 0; i < g->n; i++) {
        model_job J = { c, i };
        if (g->mode[i] == MD_WINDOW) window_fn(&J, i0, i1);
        else sparsify_range(c, i, i0, i1);
    }
}

/* One block end to end: deltas, each model's sparsification, combination. Valid
 * when every element is decided on its own (no partial ties, no row-wise DELLA). */
static void fused_fn(void *vc, int64_t i0, int64_t i1)
{
    deltas_cut_fn(vc, i0, i1);
    combine_fn(vc, i0, i1);
}

/* Partial ties only on single cuts (TIES), no DELLA: two parallel passes. */
static bool ties_parallel(const gta_state *g)
{
    for (int i = 0; i < g->n; i++) {
        if (g->mode[i] == MD_DELLA) return false;
        if (g->mode[i] == MD_WINDOW && !single_cut(g, i) &&
            ((g->cut_hi[i].kind == 2 && g->cut_hi[i].ties < 0) || (g->cut_lo[i].kind == 2 && g->cut_lo[i].ties < 0)))
            return false;
    }
    return true;
}

static bool element_independent(const gta_state *g)
{
    for (int i = 0; i < g->n; i++) {
        if (g->mode[i] == MD_DELLA) return false;
        if (g->mode[i] == MD_WINDOW &&
            ((g->cut_hi[i].kind == 2 && g->cut_hi[i].ties < 0) || (g->cut_lo[i].kind == 2 && g->cut_lo[i].ties < 0)))
            return false;
    }
    return true;
}

static void gta_apply(void *vs, int64_t off, int64_t len,
                      const float *base, const float *const *models, float *out)
{
    gta_state *g = vs;
    if (off == 0) gta_rewind(g);
    if (g->n == 0) { memcpy(out, base, (size_t)len * sizeof(float)); return; }
    const float *xs[MAXM];
    const bool fused = element_independent(g);
    for (int64_t o = 0; o < len; o += g->sub) {
        int64_t l = len - o < g->sub ? len - o : g->sub;
        for (int i = 0; i < g->n; i++) xs[i] = models[i] + o;
        sub_ctx c = { g, off + o, l, base + o, xs, out + o };
        if (fused) {
            al_par_ranges(l, AL_MERGE_BLOCK, fused_fn, &c);   /* one parallel region */
        } else if (ties_parallel(g)) {
            al_par_ranges(l, AL_MERGE_BLOCK, deltas_cut_fn, &c);
            for (int i = 0; i < g->n; i++) {                  /* ties before each block */
                al_rankcut *hi = &g->cut_hi[i];
                if (!single_cut(g, i) || hi->ties >= 0) continue;
                const uint32_t *tb = g->tieblk + (size_t)i * g->nblk;
                int64_t *pre = g->tiepre + (size_t)i * g->nblk;
                for (int64_t b = 0; b * AL_MERGE_BLOCK < l; b++) { pre[b] = hi->seen; hi->seen += tb[b]; }
            }
            al_par_ranges(l, AL_MERGE_BLOCK, settle_fn, &c);
        } else {
            sub_sparsify(&c);
            al_par_ranges(l, AL_MERGE_BLOCK, combine_fn, &c);
        }
    }
}


/* ---- typed path: whole typed tensors, every step fused per tile ---------------
 * Per tile of TT elements, each thread converts the base and every model's slice
 * to F32 in its own scratch, forms deltas, keys and kept deltas, and combines: no
 * F32 copy of any input is made. TIES' top-k comes from al_topk (one pass), and a
 * tie at the threshold is kept iff its index <= tie_last, which is the rank order's
 * index rule without a per-block tie count. */
#define TT COMBINE_TILE

typedef struct {
    float *bf, *of, *dr;
    uint32_t *k;
    double *dm;
} tile_buf;

static tile_buf tile_scratch(const gta_state *g)
{
    int t = 0;
#ifdef _OPENMP
    t = omp_get_thread_num();
#endif
    AL_ASSERT(t < g->nthr);
    char *p = g->tscr + (size_t)t * g->tscr_per;
    const size_t n = (size_t)g->n;
    tile_buf b;
    b.dm = (double *)p;
    b.dr = (float *)(b.dm + n * TT);
    b.k = (uint32_t *)(b.dr + n * TT);
    b.bf = (float *)(b.k + n * TT);
    b.of = b.bf + TT;
    return b;
}

/* Top-k cut with the tie index rule (WINDOW with a single cut): keep key > thr, and
 * key == thr at global index <= tie_last. Most tiles lie wholly before or after
 * tie_last, where the rule is one compare. */
AL_HOT static void window_elems(const gta_state *g, int i, const float *dr, const uint32_t *k, double *dm,
                                int64_t goff, int64_t n)
{
    const uint32_t thr = g->cut_hi[i].thr;
    const int64_t tl = g->tie_last[i] - goff;        /* ties at j <= tl are kept */
    if (tl >= n - 1 || tl < 0) {
        /* keep k >= thr (all ties in) or k > thr, i.e. k > thr - 1 (thr >= 1 then) */
        const uint32_t lim = tl < 0 ? thr : thr - 1;
        if (tl >= n - 1 && thr == 0) {
            for (int64_t j = 0; j < n; j++) dm[j] = dr[j];
            return;
        }
        for (int64_t j = 0; j < n; j++) {
            uint64_t keep = -(uint64_t)(k[j] > lim);
            double d = (double)dr[j];
            uint64_t db;
            memcpy(&db, &d, 8);
            db &= keep;                              /* dropped: +0.0 */
            memcpy(&dm[j], &db, 8);
        }
        return;
    }
    for (int64_t j = 0; j < n; j++) {
        uint64_t keep = -(uint64_t)((k[j] > thr) | ((k[j] == thr) & (j <= tl)));
        double d = (double)dr[j];
        uint64_t db;
        memcpy(&db, &d, 8);
        db &= keep;
        memcpy(&dm[j], &db, 8);
    }
}

/* Deltas, keys and kept deltas of every model for global elements [a, a+L). */
AL_HOT static void tile_sparsify(const gta_state *g, const al_merge_src *base, const al_merge_src *x,
                                 int64_t a, int64_t L, const tile_buf *t)
{
    al_src_load(t->bf, base, a, L);
    for (int i = 0; i < g->n; i++) {
        float *d = t->dr + (size_t)i * TT;
        uint32_t *k = t->k + (size_t)i * TT;
        double *m = t->dm + (size_t)i * TT;
        al_src_load(d, &x[i], a, L);
        for (int64_t j = 0; j < L; j++) { d[j] -= t->bf[j]; k[j] = al_abs_key(d[j]); }
        if (g->mode[i] == MD_WINDOW) window_elems(g, i, d, k, m, a, L);
        else sparsify_elems(g, i, d, k, m, a, L);
    }
}

typedef struct {
    const gta_state *g;
    const al_merge_src *b, *x;
    int64_t off;
    void *out;
    al_dtype odt;
} typed_ctx;

static void typed_l1_fn(void *vc, double *acc, int64_t i0, int64_t i1)
{
    const typed_ctx *c = vc;
    const gta_state *g = c->g;
    tile_buf t = tile_scratch(g);
    for (int64_t a = i0; a < i1; a += TT) {
        int64_t L = i1 - a < TT ? i1 - a : TT;
        tile_sparsify(g, c->b, c->x, a, L, &t);
        for (int i = 0; i < g->n; i++) {
            const float *dr = t.dr + (size_t)i * TT;
            const double *dm = t.dm + (size_t)i * TT;
            double s1 = acc[2 * i], s2 = acc[2 * i + 1];
            for (int64_t j = 0; j < L; j++) { s1 += fabs((double)dr[j]); s2 += fabs(dm[j]); }
            acc[2 * i] = s1;
            acc[2 * i + 1] = s2;
        }
    }
}

static al_status gta_prepare(void *vs, const al_merge_src *base, const al_merge_src *models, al_error *err)
{
    gta_state *g = vs;
    al_free(g->tscr);
    g->nthr = al_kern_threads();
    g->tscr_per = ((size_t)(g->n > 0 ? g->n : 1) * TT * 16 + 2 * TT * sizeof(float) + 63) & ~(size_t)63;
    if (!(g->tscr = al_malloc_aligned((size_t)g->nthr * g->tscr_per)))
        return al_errorf(err, AL_ERR_NOMEM, "out of memory for merge scratch");
    for (int i = 0; i < g->n; i++) {
        if (g->mode[i] != MD_WINDOW) continue;
        AL_ASSERT(g->win_lo[i] == 0);
        al_dkey_ctx kc = { &models[i], base };
        al_topk tk;
        al_status s = al_topk_find(&tk, g->numel, g->win_hi[i], al_dkeys, &kc, err);
        if (s != AL_OK) return s;
        al_rankcut_set(&g->cut_hi[i], g->win_hi[i], g->numel, tk.thr, tk.n_greater, tk.n_equal);
        g->tie_last[i] = tk.tie_last;
    }
    if (g->p_l1 >= 0) {
        typed_ctx c = { g, base, models, 0, NULL, AL_F32 };
        al_bsum_add(&g->l1, 0, g->numel, typed_l1_fn, &c);
        finish_l1(g);
    }
    return AL_OK;
}

static void typed_apply_fn(void *vc, int64_t i0, int64_t i1)
{
    const typed_ctx *c = vc;
    const gta_state *g = c->g;
    tile_buf t = tile_scratch(g);
    for (int64_t a = i0; a < i1; a += TT) {
        int64_t L = i1 - a < TT ? i1 - a : TT;
        tile_sparsify(g, c->b, c->x, c->off + a, L, &t);
        if (c->odt == AL_F32) {
            combine_tile(g, t.dm, TT, L, t.bf, (float *)c->out + a);
            continue;
        }
        combine_tile(g, t.dm, TT, L, t.bf, t.of);
        al_dst_store(c->out, c->odt, a, t.of, L);
    }
}

static void gta_apply_typed(void *vs, int64_t off, int64_t len, const al_merge_src *base,
                            const al_merge_src *models, void *out, al_dtype out_dtype)
{
    const gta_state *g = vs;
    typed_ctx c = { g, base, models, off, out, out_dtype };
    al_par_ranges(len, AL_MERGE_BLOCK, typed_apply_fn, &c);
}

#define GTA_METHOD(ident, mname, SP, CONS, NORM, RESC)                                   \
    static const gta_kind k_##ident = { SP, CONS, NORM, RESC };                          \
    static al_status init_##ident(void **s, const al_merge_params *p, int64_t numel,     \
                                  int n, bool hb, al_merge_plan *pl, al_error *e)       \
    { return gta_init(&k_##ident, s, p, numel, n, hb, pl, e); }                          \
    const al_merge_method al_m_##ident = { mname, 3, init_##ident, gta_stat, gta_finish,      \
                                     gta_apply, gta_free, gta_prepare, gta_apply_typed };

GTA_METHOD(task_arithmetic, "task_arithmetic", SP_NONE, false, false, false)
GTA_METHOD(ties, "ties", SP_MAGNITUDE, true, true, false)
GTA_METHOD(dare_ties, "dare_ties", SP_RANDOM, true, false, true)
GTA_METHOD(dare_linear, "dare_linear", SP_RANDOM, false, false, true)
GTA_METHOD(breadcrumbs, "breadcrumbs", SP_OUTLIERS, false, false, false)
GTA_METHOD(breadcrumbs_ties, "breadcrumbs_ties", SP_OUTLIERS, true, false, false)
GTA_METHOD(della, "della", SP_DELLA, true, true, true)
GTA_METHOD(della_linear, "della_linear", SP_DELLA, false, false, true)
