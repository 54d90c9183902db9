/* merge/simple.c: linear, passthrough, nearswap, ram, ramplus_tl, sce, arcee_fusion.
 * Element-wise combinations in double, rounded to F32 once; sce and arcee_fusion use
 * exact radix selections (see kernels.c), ramplus_tl integer counts. */
#include <math.h>
#include <string.h>

#include "../core/alloc.h"
#include "../core/dtype.h"
#include "method_internal.h"

#define MAXM AL_MERGE_MAX_MODELS

typedef enum { S_LINEAR, S_PASSTHROUGH, S_NEARSWAP, S_RAM, S_RAMPLUS, S_SCE, S_FUSION } simple_kind;

typedef struct {
    simple_kind kind;
    int n;
    bool has_base;
    int64_t numel, row_len, sub;
    double w[MAXM + 1], wsum, t, scale, eps, r, alpha;
    double lam[MAXM];                /* ramplus_tl unique multipliers */
    int64_t shared[MAXM], uniq[MAXM];
    bool normalize;
    /* sce / arcee_fusion */
    int p_hi, p_lo, p_w;             /* pass ids, -1 if absent */
    double topk;
    bool select;                     /* sce top-k active */
    int64_t nnz;
    al_rsel sel;
    al_rankcut cut;
    bool cut_all, cut_none;
    al_bsum sq;                      /* sce: sum of masked tau_i^2 */
    double c[MAXM];                  /* sce weights */
    double thr;                      /* arcee_fusion threshold */
    uint32_t *keys;                  /* sub */
    unsigned char *mask;             /* sub */
    float *imp;                      /* sub (arcee_fusion importance) */
    const char *name;
} simple_state;

static void simple_free(void *vs)
{
    simple_state *s = vs;
    if (!s) return;
    al_rsel_free(&s->sel);
    al_bsum_free(&s->sq);
    al_free(s->keys);
    al_free(s->mask);
    al_free(s->imp);
    al_free(s);
}

static al_status simple_init(simple_kind kind, void **out, const al_merge_params *p, int64_t numel,
                             int n, bool has_base, al_merge_plan *plan, al_error *err)
{
    *out = NULL;
    const char *nm = al_tname(p);
    simple_state *s = al_calloc(1, sizeof *s);
    if (!s) return al_errorf(err, AL_ERR_NOMEM, "%s: out of memory", nm);
    al_status st = AL_OK;
    s->kind = kind;
    s->n = n;
    s->has_base = has_base;
    s->numel = numel;
    s->name = nm;
    s->row_len = al_row_len(p, numel);
    s->p_hi = s->p_lo = s->p_w = -1;
    s->sub = AL_SUB;
    plan->n_passes = 0;
    plan->align = 1;
    switch (kind) {
    case S_LINEAR: {
        /* linear (Wortsman et al. 2022, model soups): out = sum w_i X_i [/ sum w_i] */
        int k = 0;
        if (has_base) {
            if (isnan(p->base_weight)) {
                st = al_errorf(err, AL_ERR_RECIPE, "%s: linear: the base model is an input and needs a weight", nm);
                goto fail;
            }
            s->w[k++] = p->base_weight;
        }
        for (int i = 0; i < n; i++) s->w[k++] = al_pm(p->weight, i, 1.0);
        if (k == 0) { st = al_errorf(err, AL_ERR_RECIPE, "%s: linear needs inputs", nm); goto fail; }
        s->normalize = p->normalize != 0;    /* default true */
        s->wsum = 0.0;
        for (int i = 0; i < k; i++) s->wsum += s->w[i];
        /* mergekit has no zero-sum guard (inf/nan output); we refuse */
        if (s->normalize && s->wsum == 0.0) {
            st = al_errorf(err, AL_ERR_RECIPE, "%s: linear: weights sum to 0 with normalize", nm);
            goto fail;
        }
        break;
    }
    case S_PASSTHROUGH:
        if (n + (has_base ? 1 : 0) != 1) {
            st = al_errorf(err, AL_ERR_RECIPE, "%s: passthrough takes exactly one input (got %d)", nm,
                           n + (has_base ? 1 : 0));
            goto fail;
        }
        s->scale = p->scale ? p->scale[0] : 1.0;
        break;
    case S_NEARSWAP:
        if (!has_base || n != 1) { st = al_errorf(err, AL_ERR_RECIPE, "%s: nearswap needs a base and exactly one other model", nm); goto fail; }
        if (isnan(p->t)) { st = al_errorf(err, AL_ERR_RECIPE, "%s: nearswap needs parameter t", nm); goto fail; }
        s->t = p->t;
        break;
    case S_RAM:
    case S_RAMPLUS:
        if (!has_base) { st = al_errorf(err, AL_ERR_RECIPE, "%s: ram needs a base model", nm); goto fail; }
        s->eps = p->ram_epsilon;
        s->r = p->ram_r;
        s->alpha = p->ram_alpha;
        if (kind == S_RAMPLUS) plan->n_passes = 1;
        break;
    case S_SCE: {
        if (!has_base) { st = al_errorf(err, AL_ERR_RECIPE, "%s: sce needs a base model", nm); goto fail; }
        s->topk = p->select_topk;
        s->select = s->topk < 1.0 && n > 0;
        int np = 0;
        if (s->select) {
            int64_t k1 = 1;
            if ((st = al_rsel_init(&s->sel, 1, &k1, err)) != AL_OK) goto fail;
            s->p_hi = np++;
            s->p_lo = np++;
        }
        s->p_w = np++;
        if ((st = al_bsum_init(&s->sq, n > 0 ? n : 1, err)) != AL_OK) goto fail;
        plan->n_passes = np;
        break;
    }
    case S_FUSION:
        if (!has_base || n != 1) { st = al_errorf(err, AL_ERR_RECIPE, "%s: arcee_fusion needs a base and exactly one other model", nm); goto fail; }
        if (p->ndim > 2) { st = al_errorf(err, AL_ERR_UNSUPPORTED, "%s: arcee_fusion on rank-%d tensors", nm, p->ndim); goto fail; }
        s->sub = al_sub_rows(s->row_len);
        plan->align = s->row_len;
        if (numel > 0) {
            int64_t ks[3];
            const double qs[3] = { 0.25, 0.5, 0.75 };
            for (int q = 0; q < 3; q++) ks[q] = numel - (int64_t)floor(qs[q] * (double)(numel - 1));
            if ((st = al_rsel_init(&s->sel, 3, ks, err)) != AL_OK) goto fail;
            s->p_hi = 0;
            s->p_lo = 1;
            plan->n_passes = 2;
        }
        break;
    }
    if (kind == S_SCE || kind == S_FUSION) {
        s->keys = al_malloc((size_t)s->sub * sizeof(uint32_t));
        s->mask = al_malloc((size_t)s->sub);
        s->imp = al_malloc((size_t)s->sub * sizeof(float));
        if (!s->keys || !s->mask || !s->imp) { st = al_errorf(err, AL_ERR_NOMEM, "%s: out of memory", nm); goto fail; }
    }
    *out = s;
    return AL_OK;
fail:
    simple_free(s);
    return st;
}

typedef struct { simple_state *s; const float *b; const float *const *x; float *out; int64_t goff; } sctx;

/* ---- element-wise methods -------------------------------------------------------- */

static void linear_fn(void *vc, int64_t i0, int64_t i1)
{
    sctx *c = vc;
    const simple_state *s = c->s;
    for (int64_t j = i0; j < i1; j++) {
        double o = 0.0;
        int k = 0;
        if (s->has_base) o += s->w[k++] * c->b[j];
        for (int i = 0; i < s->n; i++) o += s->w[k++] * c->x[i][j];
        if (s->normalize) o /= s->wsum;
        c->out[j] = (float)o;
    }
}

static void passthrough_fn(void *vc, int64_t i0, int64_t i1)
{
    sctx *c = vc;
    const float *src = c->s->n ? c->x[0] : c->b;
    for (int64_t j = i0; j < i1; j++) c->out[j] = (float)(c->s->scale * src[j]);
}

/* nearswap (mergekit nearswap.py): w = clamp(t / max(|B - X|, 1e-6), 0, 1);
 * out = w X + (1 - w) B: elements where the models are already close take X. */
static void nearswap_fn(void *vc, int64_t i0, int64_t i1)
{
    sctx *c = vc;
    const double t = c->s->t;
    for (int64_t j = i0; j < i1; j++) {
        double b = c->b[j], x = c->x[0][j];
        double w = t / fmax(fabs((double)(c->b[j] - c->x[0][j])), 1e-6);
        w = w < 0.0 ? 0.0 : (w > 1.0 ? 1.0 : w);
        c->out[j] = (float)(w * x + (1.0 - w) * b);
    }
}

/* RAM (mergekit ram.py): active_i = |tau_i| > eps, c = #active;
 * out = B + sum_i tau_i active_i ([c == 1] lam_i + [c > 1]/c), lam_i = 1 for ram;
 * ramplus_tl: lam_i = 1 + r clamp(shared_i / max(unique_i, eps), 0, alpha). */
static void ram_fn(void *vc, int64_t i0, int64_t i1)
{
    sctx *c = vc;
    const simple_state *s = c->s;
    for (int64_t j = i0; j < i1; j++) {
        int cnt = 0;
        for (int i = 0; i < s->n; i++) cnt += fabsf(c->x[i][j] - c->b[j]) > s->eps;
        double o = c->b[j];
        for (int i = 0; i < s->n; i++) {
            float tau = c->x[i][j] - c->b[j];
            if (!(fabsf(tau) > s->eps)) continue;
            o += cnt == 1 ? (s->kind == S_RAMPLUS ? s->lam[i] : 1.0) * tau : (double)tau / cnt;
        }
        c->out[j] = (float)o;
    }
}

static void ram_stat(simple_state *s, int64_t len, const float *b, const float *const *x)
{
    /* integer counts: order-independent; serial for simplicity (one pass, cheap) */
    for (int64_t j = 0; j < len; j++) {
        int cnt = 0;
        for (int i = 0; i < s->n; i++) cnt += fabsf(x[i][j] - b[j]) > s->eps;
        for (int i = 0; i < s->n; i++)
            if (fabsf(x[i][j] - b[j]) > s->eps) { if (cnt == 1) s->uniq[i]++; else s->shared[i]++; }
    }
}

/* ---- SCE (Wan et al. 2024, "FuseChat", arXiv:2408.07990; mergekit sce.py) --------
 * tau_i = X_i - B; if select_topk < 1 keep, for all models, the k = floor(nnz(var) *
 * select_topk) positions of largest population variance across models; elect signs
 * ("sum"); c_i = mean(tau_i^2)/sum_j mean(tau_j^2) (uniform if the sum < 1e-6);
 * out = B + sum_i c_i m_i tau_i / max(sum_i c_i m_i, 1e-6). */
static float sce_var(const simple_state *s, const float *b, const float *const *x, int64_t j)
{
    double m = 0.0, v = 0.0;
    for (int i = 0; i < s->n; i++) m += (double)(x[i][j] - b[j]);
    m /= s->n;
    for (int i = 0; i < s->n; i++) { double d = (double)(x[i][j] - b[j]) - m; v += d * d; }
    return (float)(v / s->n);
}

typedef struct { const simple_state *s; const float *b; const float *const *x; } var_ctx;

static void var_keys(void *vc, uint32_t *keys, int64_t i0, int64_t i1)
{
    var_ctx *c = vc;
    for (int64_t j = i0; j < i1; j++) keys[j - i0] = al_abs_key(sce_var(c->s, c->b, c->x, j));
}

static void var_keys_par(void *vc, int64_t i0, int64_t i1)
{
    sctx *c = vc;
    var_ctx v = { c->s, c->b, c->x };
    var_keys(&v, c->s->keys + i0, i0, i1);
}

/* sequential (tie counter) top-k mask of a sub-chunk into s->mask */
static void sce_mask(sctx *c, int64_t len)
{
    simple_state *s = c->s;
    if (!s->select) { memset(s->mask, 1, (size_t)len); return; }
    al_par_ranges(len, AL_MERGE_BLOCK, var_keys_par, c);
    for (int64_t j = 0; j < len; j++) s->mask[j] = al_rankcut_below(&s->cut, s->keys[j]);
}

static void sq_fn(void *vc, double *acc, int64_t i0, int64_t i1)
{
    sctx *c = vc;
    const simple_state *s = c->s;
    for (int i = 0; i < s->n; i++) {
        double a = acc[i];
        for (int64_t j = i0; j < i1; j++) {
            double t = s->mask[j] ? (double)(c->x[i][j] - c->b[j]) : 0.0;
            a += t * t;
        }
        acc[i] = a;
    }
}

static void sce_fn(void *vc, int64_t i0, int64_t i1)
{
    sctx *c = vc;
    const simple_state *s = c->s;
    for (int64_t j = i0; j < i1; j++) {
        if (!s->mask[j] || s->n == 0) { c->out[j] = c->b[j]; continue; }
        double sum = 0.0;
        for (int i = 0; i < s->n; i++) sum += (double)(c->x[i][j] - c->b[j]);
        const bool pos = sum >= 0.0;
        double num = 0.0, den = 0.0;
        for (int i = 0; i < s->n; i++) {
            double t = (double)(c->x[i][j] - c->b[j]);
            if (pos ? t > 0.0 : t < 0.0) { num += s->c[i] * t; den += s->c[i]; }
        }
        c->out[j] = (float)((double)c->b[j] + num / fmax(den, 1e-6));
    }
}

/* ---- arcee_fusion (mergekit arcee_fusion.py) ---------------------------------------
 * importance = |Xb - A| * KL(softmax(Xb_row) || softmax(A_row)) (row = last dim),
 * KL = sum p (log(p + 1e-8) - log(q + 1e-8)), computed in double, clamped >= 0;
 * threshold = median + 1.5 IQR with quantile q = sorted[floor(q (n-1))];
 * out = A + [importance >= threshold] (Xb - A). mergekit estimates the quantiles from
 * a random 1e6-element sample when n > 1e6; we use the exact quantiles. */
static void fusion_rows(void *vc, int64_t r0, int64_t r1)
{
    sctx *c = vc;
    simple_state *s = c->s;
    const int64_t C = s->row_len;
    const float *a = c->b, *x = c->x[0];
    for (int64_t r = r0; r < r1; r++) {
        const int64_t o = r * C;
        double ma = -INFINITY, mx = -INFINITY, za = 0.0, zx = 0.0, kl = 0.0;
        for (int64_t j = o; j < o + C; j++) { ma = fmax(ma, a[j]); mx = fmax(mx, x[j]); }
        for (int64_t j = o; j < o + C; j++) { za += exp(a[j] - ma); zx += exp(x[j] - mx); }
        for (int64_t j = o; j < o + C; j++) {
            double pp = exp(x[j] - mx) / zx, qq = exp(a[j] - ma) / za;
            kl += pp * (log(pp + 1e-8) - log(qq + 1e-8));
        }
        if (!(kl > 0.0)) kl = 0.0;
        for (int64_t j = o; j < o + C; j++) {
            float imp = (float)(fabs((double)(x[j] - a[j])) * kl);
            s->imp[j] = imp;
            s->keys[j] = al_abs_key(imp);
        }
    }
}

static void buf_keys(void *vc, uint32_t *keys, int64_t i0, int64_t i1)
{
    const simple_state *s = vc;
    memcpy(keys, s->keys + i0, (size_t)(i1 - i0) * sizeof(uint32_t));
}

static void fusion_out(void *vc, int64_t i0, int64_t i1)
{
    sctx *c = vc;
    const simple_state *s = c->s;
    for (int64_t j = i0; j < i1; j++)
        c->out[j] = (double)s->imp[j] >= s->thr
                  ? (float)((double)c->b[j] + (double)(c->x[0][j] - c->b[j])) : c->b[j];
}

/* ---- dispatch ------------------------------------------------------------------- */

static void simple_stat(void *vs, int pass, int64_t off, int64_t len,
                        const float *base, const float *const *models)
{
    simple_state *s = vs;
    if (s->kind == S_RAMPLUS) { ram_stat(s, len, base, models); return; }
    if (s->kind == S_SCE) {
        if (pass == s->p_hi || pass == s->p_lo) {
            var_ctx v = { s, base, models };
            if (pass == s->p_hi) {
                al_rsel_count_hi(&s->sel, len, var_keys, &v);
                for (int64_t j = 0; j < len; j++) s->nnz += sce_var(s, base, models, j) != 0.0f;
            } else {
                al_rsel_count_lo(&s->sel, len, var_keys, &v);
            }
            return;
        }
        if (off == 0) al_rankcut_rewind(&s->cut);
        const float *xs[MAXM];
        for (int64_t o = 0; o < len; o += s->sub) {
            int64_t l = len - o < s->sub ? len - o : s->sub;
            for (int i = 0; i < s->n; i++) xs[i] = models[i] + o;
            sctx c = { s, base + o, xs, NULL, off + o };
            sce_mask(&c, l);
            al_bsum_add(&s->sq, off + o, l, sq_fn, &c);
        }
        return;
    }
    /* S_FUSION */
    for (int64_t o = 0; o < len; o += s->sub) {
        int64_t l = len - o < s->sub ? len - o : s->sub;
        const float *xs[1] = { models[0] + o };
        sctx c = { s, base + o, xs, NULL, off + o };
        al_par_ranges(l / s->row_len, 1, fusion_rows, &c);
        if (pass == s->p_hi) al_rsel_count_hi(&s->sel, l, buf_keys, s);
        else al_rsel_count_lo(&s->sel, l, buf_keys, s);
    }
}

static al_status simple_finish(void *vs, int pass, al_error *err)
{
    (void)err;
    simple_state *s = vs;
    if (s->kind == S_RAMPLUS) {
        for (int i = 0; i < s->n; i++) {
            double rho = (double)s->shared[i] / fmax((double)s->uniq[i], s->eps);
            rho = rho < 0.0 ? 0.0 : (rho > s->alpha ? s->alpha : rho);
            s->lam[i] = 1.0 + s->r * rho;
        }
    } else if (s->kind == S_SCE) {
        if (pass == s->p_hi) {
            int64_t k = (int64_t)floor((double)s->nnz * s->topk);
            if (k <= 0) { s->cut.kind = 0; s->sel.nt = 0; }
            else if (k >= s->numel) { s->cut.kind = 1; s->sel.nt = 0; }
            else { s->sel.k[0] = k; al_rsel_finish_hi(&s->sel); }
        } else if (pass == s->p_lo) {
            if (s->sel.nt == 1) {
                al_rsel_finish_lo(&s->sel);
                al_rankcut_set(&s->cut, s->sel.k[0], s->numel, s->sel.thr[0], s->sel.n_greater[0],
                               s->sel.n_equal[0]);
            }
        } else if (pass == s->p_w) {
            al_bsum_finish(&s->sq);
            double tot = 0.0;
            for (int i = 0; i < s->n; i++) tot += s->sq.total[i] / (double)s->numel;
            for (int i = 0; i < s->n; i++)
                s->c[i] = tot < 1e-6 ? 1.0 / s->n : (s->sq.total[i] / (double)s->numel) / tot;
        }
    } else if (s->kind == S_FUSION) {
        if (pass == s->p_hi) al_rsel_finish_hi(&s->sel);
        else {
            al_rsel_finish_lo(&s->sel);
            double q25 = al_bits_f32(s->sel.thr[0]), q50 = al_bits_f32(s->sel.thr[1]),
                   q75 = al_bits_f32(s->sel.thr[2]);
            s->thr = q50 + 1.5 * (q75 - q25);
        }
    }
    return AL_OK;
}

static void simple_apply(void *vs, int64_t off, int64_t len,
                         const float *base, const float *const *models, float *out)
{
    simple_state *s = vs;
    sctx c = { s, base, models, out, off };
    switch (s->kind) {
    case S_LINEAR: al_par_ranges(len, AL_MERGE_BLOCK, linear_fn, &c); return;
    case S_PASSTHROUGH: al_par_ranges(len, AL_MERGE_BLOCK, passthrough_fn, &c); return;
    case S_NEARSWAP: al_par_ranges(len, AL_MERGE_BLOCK, nearswap_fn, &c); return;
    case S_RAM: case S_RAMPLUS: al_par_ranges(len, AL_MERGE_BLOCK, ram_fn, &c); return;
    case S_SCE: case S_FUSION: break;
    }
    if (s->kind == S_SCE && off == 0) al_rankcut_rewind(&s->cut);
    const float *xs[MAXM];
    for (int64_t o = 0; o < len; o += s->sub) {
        int64_t l = len - o < s->sub ? len - o : s->sub;
        for (int i = 0; i < s->n; i++) xs[i] = models[i] + o;
        sctx cc = { s, base + o, xs, out + o, off + o };
        if (s->kind == S_SCE) {
            sce_mask(&cc, l);
            al_par_ranges(l, AL_MERGE_BLOCK, sce_fn, &cc);
        } else {
            al_par_ranges(l / s->row_len, 1, fusion_rows, &cc);
            al_par_ranges(l, AL_MERGE_BLOCK, fusion_out, &cc);
        }
    }
}

#define SIMPLE_METHOD(ident, KIND, NP)                                                   \
    static al_status init_##ident(void **s, const al_merge_params *p, int64_t numel,     \
                                  int n, bool hb, al_merge_plan *pl, al_error *e)       \
    { return simple_init(KIND, s, p, numel, n, hb, pl, e); }                             \
    const al_merge_method al_m_##ident = { #ident, NP, init_##ident, simple_stat,             \
                                     simple_finish, simple_apply, simple_free };

SIMPLE_METHOD(linear, S_LINEAR, 0)
SIMPLE_METHOD(passthrough, S_PASSTHROUGH, 0)
SIMPLE_METHOD(nearswap, S_NEARSWAP, 0)
SIMPLE_METHOD(ram, S_RAM, 0)
SIMPLE_METHOD(ramplus_tl, S_RAMPLUS, 1)
SIMPLE_METHOD(sce, S_SCE, 3)
SIMPLE_METHOD(arcee_fusion, S_FUSION, 2)
