/* merge/geometric.c: methods whose output is a linear combination of the inputs
 * with coefficients from per-tensor norms and dot products:
 * slerp, nuslerp, multislerp, karcher, model_stock.
 *
 * One stats pass accumulates the Gram matrix G_ab = <v_a, v_b> of the method's
 * vectors in double (chunk-invariant block sums); finish_pass turns G into
 * coefficients; apply writes out = cb*B + sum_k a_k v_k in double. Row-wise
 * variants (nuslerp per row, model_stock filter_wise) need no pass: each row's Gram
 * is summed left to right inside apply. nuslerp along dim 0 keeps per-column Grams.
 *
 * Every method here can be written in the span of its inputs, so nothing needs a
 * whole tensor: karcher iterates on coefficient vectors (u = sum_j c_j e_j, every
 * dot product from G); multislerp's tangent step is exactly zero in exact
 * arithmetic (see below). */
#include <math.h>
#include <string.h>

#include "../core/alloc.h"
#include "method_internal.h"

#define MAXV (AL_MERGE_MAX_MODELS + 1)

typedef enum { G_SLERP, G_NUSLERP, G_MULTISLERP, G_KARCHER, G_MODEL_STOCK } geo_kind;
/* layout of the vectors */
enum { LAY_FLAT, LAY_ROWS, LAY_COLS };

typedef struct {
    geo_kind kind;
    int n, K;                    /* models, vectors */
    bool has_base, delta;        /* delta: v_k = X_k - B (F32); else [B?] + X raw */
    bool passthru;               /* single input: copy it */
    int layout;
    int64_t numel, row_len;
    double t, eps, tol;
    int max_iter;
    double w[MAXV];
    al_bsum gram;                /* K(K+1)/2 upper triangle, row-major */
    double cb, a[MAXV];          /* flat coefficients */
    double *colG;                /* LAY_COLS: 3 per column */
    const char *name;
} geo_state;

static void geo_free(void *vs)
{
    geo_state *g = vs;
    if (!g) return;
    al_bsum_free(&g->gram);
    al_free(g->colG);
    al_free(g);
}

static inline int tri(int a, int b, int K) { return a * K - a * (a - 1) / 2 + (b - a); }

/* vector values at element j (double of the F32 vector value) */
static inline void geo_vals(const geo_state *g, const float *b, const float *const *x,
                            int64_t j, double *v)
{
    if (g->delta) {
        for (int i = 0; i < g->n; i++) v[i] = (double)(x[i][j] - b[j]);
    } else {
        int k = 0;
        if (g->has_base) v[k++] = b[j];
        for (int i = 0; i < g->n; i++) v[k++] = x[i][j];
    }
}

typedef struct { geo_state *g; const float *b; const float *const *x; float *out; } geo_ctx;

/* Gram entries added element by element, left to right. Inlined with a constant K
 * (2 and 3: slerp, nuslerp, small merges) the vector loops unroll and the sums stay in
 * registers: the same additions in the same order as the general K. */
static inline __attribute__((always_inline)) void
gram_k(const geo_ctx *c, double *acc, int64_t i0, int64_t i1, const int K)
{
    double v[MAXV], s[MAXV * (MAXV + 1) / 2];
    const int nq = K * (K + 1) / 2;
    for (int q = 0; q < nq; q++) s[q] = acc[q];
    for (int64_t j = i0; j < i1; j++) {
        geo_vals(c->g, c->b, c->x, j, v);
        int q = 0;
        for (int a = 0; a < K; a++)
            for (int b2 = a; b2 < K; b2++) s[q++] += v[a] * v[b2];
    }
    for (int q = 0; q < nq; q++) acc[q] = s[q];
}

static void gram_fn(void *vc, double *acc, int64_t i0, int64_t i1)
{
    geo_ctx *c = vc;
    switch (c->g->K) {
    case 2: gram_k(c, acc, i0, i1, 2); break;
    case 3: gram_k(c, acc, i0, i1, 3); break;
    default: gram_k(c, acc, i0, i1, c->g->K); break;
    }
}

static void full_gram(const double *tri_g, int K, double *G)
{
    for (int a = 0; a < K; a++)
        for (int b = a; b < K; b++) G[a * K + b] = G[b * K + a] = tri_g[tri(a, b, K)];
}

/* ---- coefficient rules --------------------------------------------------------- */

/* SLERP (mergekit slerp.py; Shoemake 1985): v0 = B, v1 = X.
 * n_k = v_k/|v_k| if |v_k| > 1e-8; d = <n0,n1>; |d| > 0.9995 -> lerp;
 * else out = sin((1-t)th)/sin(th) v0 + sin(t th)/sin(th) v1, th = acos d. */
static void slerp_coef(double t, double g00, double g11, double g01, double *c0, double *c1)
{
    double n0 = sqrt(g00), n1 = sqrt(g11);
    double d = g01 / ((n0 > 1e-8 ? n0 : 1.0) * (n1 > 1e-8 ? n1 : 1.0));
    if (fabs(d) > 0.9995) { *c0 = 1.0 - t; *c1 = t; return; }
    double th = acos(d), s = sin(th);
    *c0 = sin((1.0 - t) * th) / s;
    *c1 = sin(t * th) / s;
}

/* nuslerp (mergekit nuslerp.py): u_k = v_k / max(|v_k|, 1e-7), th = acos(clamp(<u0,u1>)),
 * out = (sin((1-t)th) v0 + sin(t th) v1)/sin th; lerp where |sin th| < 1e-8. */
static void nuslerp_coef(double t, double g00, double g11, double g01, double *c0, double *c1)
{
    double n0 = fmax(sqrt(g00), 1e-7), n1 = fmax(sqrt(g11), 1e-7);
    double d = g01 / (n0 * n1);
    if (d > 1.0) d = 1.0;
    if (d < -1.0) d = -1.0;
    double th = acos(d), s = sin(th);
    if (fabs(s) < 1e-8) { *c0 = 1.0 - t; *c1 = t; return; }
    *c0 = sin((1.0 - t) * th) / s;
    *c1 = sin(t * th) / s;
}

/* Model Stock (Jang, Yun, Han, ECCV 2024, arXiv:2403.19522; mergekit model_stock.py):
 * cos = mean_{i<j} <d_i,d_j>/max(|d_i||d_j|, 1e-6), clamp [-1,1];
 * t = N cos/(1 + (N-1) cos);  out = B + t * mean_i d_i  (= t mean X + (1-t) B).
 * Where 1 + (N-1) cos == 0 mergekit divides by zero; we return t = 0 (the base). */
static double stock_t(const double *G, int N)
{
    double s = 0.0;
    int np = 0;
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++) {
            s += G[i * N + j] / fmax(sqrt(G[i * N + i]) * sqrt(G[j * N + j]), 1e-6);
            np++;
        }
    double cs = np ? s / np : 0.0;
    if (cs > 1.0) cs = 1.0;
    if (cs < -1.0) cs = -1.0;
    double den = 1.0 + (N - 1) * cs;
    return den == 0.0 ? 0.0 : N * cs / den;
}

/* Multi-SLERP (mergekit multislerp.py): e_i = x_i/(r_i + eps), w normalized,
 * m = sum w_i e_i, mhat = m/|m|; tau = sum w_i (e_i - <e_i,mhat> mhat) = m - |m| mhat
 * is zero in exact arithmetic (mergekit's tau is rounding noise of size ~ulp, which
 * its update then scales by sin|tau|/|tau| ~ 1), so u = mhat and
 * out = (sum w_i r_i) mhat [+ B]. |m| < eps: lerp for 2 inputs, error otherwise. */
static al_status multislerp_coef(geo_state *g, const double *G, al_error *err)
{
    const int K = g->K;
    double r[MAXV], w[MAXV], ws = 0.0;
    for (int i = 0; i < K; i++) { r[i] = sqrt(G[i * K + i]); w[i] = g->w[i]; ws += w[i]; }
    (void)ws;   /* normalize_weights is folded into g->w at init */
    double m2 = 0.0;
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++)
            m2 += w[i] * w[j] * G[i * K + j] / ((r[i] + g->eps) * (r[j] + g->eps));
    double mn = sqrt(fmax(m2, 0.0));
    if (mn < g->eps) {
        if (K != 2)
            return al_errorf(err, AL_ERR_RECIPE, "%s: multislerp: weighted mean of unit vectors "
                             "is ~0 with %d inputs", g->name, K);
        for (int i = 0; i < K; i++) g->a[i] = w[i];
        return AL_OK;
    }
    double R = 0.0;
    for (int i = 0; i < K; i++) R += w[i] * r[i];
    for (int i = 0; i < K; i++) g->a[i] = R * w[i] / ((r[i] + g->eps) * mn);
    return AL_OK;
}

/* Karcher mean on the sphere (mergekit karcher.py; Karcher 1977): uniform weights over
 * the inputs whose norm r_i > tol, e_i = x_i/r_i; u0 = normalized mean of e_i;
 * iterate T = sum a_i th_i/sin th_i (e_i - cos th_i u) (skip th_i < tol), stop when
 * |T| < tol, u <- cos|T| u + sin|T| T/|T|, renormalize; out = (sum a_i r_i) u.
 * u and T live in span{e_i}: we iterate on coefficient vectors with G. */
static double qform(const double *x, const double *y, const double *Gn, int K)
{
    double q = 0.0;
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) q += x[i] * y[j] * Gn[i * K + j];
    return q;
}

static void karcher_coef(geo_state *g, const double *G)
{
    const int K = g->K;
    double r[MAXV], al[MAXV], Gn[MAXV * MAXV], c[MAXV], tv[MAXV];
    int valid = 0;
    for (int i = 0; i < K; i++) { r[i] = sqrt(G[i * K + i]); valid += r[i] > g->tol; g->a[i] = 0.0; }
    g->cb = 0.0;
    if (valid == 0) return;
    for (int i = 0; i < K; i++) al[i] = r[i] > g->tol ? 1.0 / valid : 0.0;
    if (valid == 1) { for (int i = 0; i < K; i++) g->a[i] = al[i] > 0 ? 1.0 : 0.0; return; }
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++)
            Gn[i * K + j] = (al[i] > 0 && al[j] > 0) ? G[i * K + j] / (r[i] * r[j]) : 0.0;
#define QF(x, y) qform((x), (y), Gn, K)
    for (int i = 0; i < K; i++) c[i] = al[i];
    double nc = sqrt(fmax(QF(c, c), 0.0));
    if (nc > 0.0) for (int i = 0; i < K; i++) c[i] /= nc;
    for (int it = 0; it < g->max_iter; it++) {
        double bsum = 0.0, beta[MAXV];
        for (int i = 0; i < K; i++) {
            beta[i] = 0.0;
            if (al[i] == 0.0) continue;
            double ci = 0.0;
            for (int j = 0; j < K; j++) ci += c[j] * Gn[j * K + i];
            if (ci > 1.0) ci = 1.0;
            if (ci < -1.0) ci = -1.0;
            double th = acos(ci);
            if (th < g->tol) continue;
            beta[i] = al[i] * th / sin(th);
            bsum += beta[i] * ci;
        }
        for (int i = 0; i < K; i++) tv[i] = beta[i] - bsum * c[i];
        double tn = sqrt(fmax(QF(tv, tv), 0.0));
        if (tn < g->tol) break;
        for (int i = 0; i < K; i++) c[i] = cos(tn) * c[i] + sin(tn) * tv[i] / tn;
        nc = sqrt(fmax(QF(c, c), 0.0));
        if (nc > 0.0) for (int i = 0; i < K; i++) c[i] /= nc;
    }
#undef QF
    double R = 0.0;
    for (int i = 0; i < K; i++) R += al[i] * r[i];
    for (int i = 0; i < K; i++) g->a[i] = al[i] > 0 ? R * c[i] / r[i] : 0.0;
}

/* ---- init ---------------------------------------------------------------------- */

static al_status geo_init(geo_kind kind, void **out, const al_merge_params *p, int64_t numel,
                          int n, bool has_base, al_merge_plan *plan, al_error *err)
{
    *out = NULL;
    const char *nm = al_tname(p);
    geo_state *g = al_calloc(1, sizeof *g);
    if (!g) return al_errorf(err, AL_ERR_NOMEM, "%s: out of memory", nm);
    al_status s = AL_OK;
    g->kind = kind;
    g->n = n;
    g->has_base = has_base;
    g->numel = numel;
    g->name = nm;
    g->row_len = al_row_len(p, numel);
    g->t = p->t;
    g->eps = p->eps;
    g->tol = p->tol;
    g->max_iter = p->max_iter;
    g->layout = LAY_FLAT;
    plan->n_passes = 1;
    plan->align = 1;
    switch (kind) {
    case G_SLERP:
        if (isnan(p->t)) { s = al_errorf(err, AL_ERR_RECIPE, "%s: slerp needs parameter t", nm); goto fail; }
        if (!has_base || n > 1) {
            if (n + (has_base ? 1 : 0) == 1) { g->passthru = true; break; }
            s = al_errorf(err, AL_ERR_RECIPE, "%s: slerp needs a base and exactly one other model", nm);
            goto fail;
        }
        if (n == 0) { g->passthru = true; break; }
        g->K = 2;
        break;
    case G_NUSLERP: {
        if (n != 2) { s = al_errorf(err, AL_ERR_RECIPE, "%s: nuslerp needs exactly 2 non-base models (got %d)", nm, n); goto fail; }
        double w1 = al_pm(p->weight, 0, 1.0), w2 = al_pm(p->weight, 1, 1.0);
        g->t = fabs(w1 + w2) < 1e-6 ? 0.5 : w2 / (w1 + w2);
        g->delta = has_base;
        g->K = 2;
        if (!p->nuslerp_flatten) {
            if (p->nuslerp_row_wise) {
                g->layout = LAY_COLS;
                g->colG = al_calloc((size_t)g->row_len * 3, sizeof(double));
                if (!g->colG) { s = al_errorf(err, AL_ERR_NOMEM, "%s: out of memory", nm); goto fail; }
            } else {
                g->layout = LAY_ROWS;
                plan->n_passes = 0;
            }
            plan->align = g->row_len;
        }
        break;
    }
    case G_MULTISLERP: {
        if (n < 1) { s = al_errorf(err, AL_ERR_RECIPE, "%s: multislerp needs models", nm); goto fail; }
        g->delta = has_base;
        g->K = n;
        double ws = 0.0;
        for (int i = 0; i < n; i++) { g->w[i] = al_pm(p->weight, i, 1.0); ws += g->w[i]; }
        if (p->normalize_weights) {
            if (ws == 0.0) { s = al_errorf(err, AL_ERR_RECIPE, "%s: multislerp weights sum to 0", nm); goto fail; }
            for (int i = 0; i < n; i++) g->w[i] /= ws;
        }
        break;
    }
    case G_KARCHER:
        g->K = n + (has_base ? 1 : 0);
        if (g->K == 0) { s = al_errorf(err, AL_ERR_RECIPE, "%s: karcher needs inputs", nm); goto fail; }
        break;
    case G_MODEL_STOCK:
        if (!has_base || n < 2) {
            s = al_errorf(err, AL_ERR_RECIPE, "%s: model_stock needs a base and at least 2 other models", nm);
            goto fail;
        }
        g->delta = true;
        g->K = n;
        if (p->filter_wise) { g->layout = LAY_ROWS; plan->n_passes = 0; plan->align = g->row_len; }
        break;
    }
    if (g->passthru) plan->n_passes = 0;
    plan->typed = g->layout == LAY_FLAT;
    if (plan->n_passes && g->layout == LAY_FLAT)
        if ((s = al_bsum_init(&g->gram, g->K * (g->K + 1) / 2, err)) != AL_OK) goto fail;
    *out = g;
    return AL_OK;
fail:
    geo_free(g);
    return s;
}

static void geo_stat(void *vs, int pass, int64_t off, int64_t len,
                     const float *base, const float *const *models)
{
    (void)pass;
    geo_state *g = vs;
    if (g->layout == LAY_FLAT) {
        geo_ctx c = { g, base, models, NULL };
        al_bsum_add(&g->gram, off, len, gram_fn, &c);
        return;
    }
    /* LAY_COLS: per-column Gram summed over rows in row order */
    const int64_t C = g->row_len, R = len / C;
    double *cg = g->colG;
    AL_OMP_FOR
    for (int64_t col = 0; col < C; col++) {
        double s00 = cg[3 * col], s11 = cg[3 * col + 1], s01 = cg[3 * col + 2];
        for (int64_t r = 0; r < R; r++) {
            double v[MAXV];
            geo_vals(g, base, models, r * C + col, v);
            s00 += v[0] * v[0]; s11 += v[1] * v[1]; s01 += v[0] * v[1];
        }
        cg[3 * col] = s00; cg[3 * col + 1] = s11; cg[3 * col + 2] = s01;
    }
}

static al_status geo_finish(void *vs, int pass, al_error *err)
{
    (void)pass;
    geo_state *g = vs;
    if (g->layout == LAY_COLS) {
        for (int64_t col = 0; col < g->row_len; col++) {
            double *q = g->colG + 3 * col, c0, c1;
            nuslerp_coef(g->t, q[0], q[1], q[2], &c0, &c1);
            q[0] = c0; q[1] = c1;
        }
        return AL_OK;
    }
    al_bsum_finish(&g->gram);
    double G[MAXV * MAXV];
    full_gram(g->gram.total, g->K, G);
    g->cb = g->delta ? 1.0 : 0.0;
    switch (g->kind) {
    case G_SLERP: slerp_coef(g->t, G[0], G[3], G[1], &g->a[0], &g->a[1]); break;
    case G_NUSLERP: nuslerp_coef(g->t, G[0], G[3], G[1], &g->a[0], &g->a[1]); break;
    case G_MULTISLERP: return multislerp_coef(g, G, err);
    case G_KARCHER: karcher_coef(g, G); break;
    case G_MODEL_STOCK: {
        double t = stock_t(G, g->K);
        for (int i = 0; i < g->K; i++) g->a[i] = t / g->K;
        break;
    }
    }
    return AL_OK;
}

/* out = cb*B + sum_k a_k v_k per element; constant K as in gram_k. */
static inline __attribute__((always_inline)) void
flat_k(const geo_ctx *c, int64_t i0, int64_t i1, const int K)
{
    const geo_state *g = c->g;
    double v[MAXV], a[MAXV];
    for (int k = 0; k < K; k++) a[k] = g->a[k];
    const double cb = g->cb;
    for (int64_t j = i0; j < i1; j++) {
        geo_vals(g, c->b, c->x, j, v);
        double o = cb != 0.0 ? cb * (double)c->b[j] : 0.0;
        for (int k = 0; k < K; k++) o += a[k] * v[k];
        c->out[j] = (float)o;
    }
}

static void flat_fn(void *vc, int64_t i0, int64_t i1)
{
    geo_ctx *c = vc;
    switch (c->g->K) {
    case 2: flat_k(c, i0, i1, 2); break;
    case 3: flat_k(c, i0, i1, 3); break;
    default: flat_k(c, i0, i1, c->g->K); break;
    }
}

static void cols_fn(void *vc, int64_t i0, int64_t i1)
{
    geo_ctx *c = vc;
    const geo_state *g = c->g;
    double v[MAXV];
    for (int64_t j = i0; j < i1; j++) {
        const double *q = g->colG + 3 * (j % g->row_len);
        geo_vals(g, c->b, c->x, j, v);
        c->out[j] = (float)((g->delta ? (double)c->b[j] : 0.0) + q[0] * v[0] + q[1] * v[1]);
    }
}

/* rows [r0, r1): per-row Gram (left to right), coefficients, output */
static void rows_fn(void *vc, int64_t r0, int64_t r1)
{
    geo_ctx *c = vc;
    const geo_state *g = c->g;
    const int64_t C = g->row_len;
    const int K = g->K;
    double v[MAXV], tg[MAXV * (MAXV + 1) / 2], G[MAXV * MAXV], a[MAXV];
    for (int64_t r = r0; r < r1; r++) {
        const int nt = K * (K + 1) / 2;
        for (int q = 0; q < nt; q++) tg[q] = 0.0;
        for (int64_t j = r * C; j < (r + 1) * C; j++) {
            geo_vals(g, c->b, c->x, j, v);
            int q = 0;
            for (int x = 0; x < K; x++) for (int y = x; y < K; y++) tg[q++] += v[x] * v[y];
        }
        full_gram(tg, K, G);
        if (g->kind == G_NUSLERP) {
            nuslerp_coef(g->t, G[0], G[3], G[1], &a[0], &a[1]);
        } else {
            double t = stock_t(G, K);
            for (int k = 0; k < K; k++) a[k] = t / K;
        }
        for (int64_t j = r * C; j < (r + 1) * C; j++) {
            geo_vals(g, c->b, c->x, j, v);
            double o = g->delta ? (double)c->b[j] : 0.0;
            for (int k = 0; k < K; k++) o += a[k] * v[k];
            c->out[j] = (float)o;
        }
    }
}

static void geo_apply(void *vs, int64_t off, int64_t len,
                      const float *base, const float *const *models, float *out)
{
    (void)off;
    geo_state *g = vs;
    if (g->passthru) {
        memcpy(out, g->n ? models[0] : base, (size_t)len * sizeof(float));
        return;
    }
    geo_ctx c = { g, base, models, out };
    if (g->layout == LAY_FLAT) al_par_ranges(len, AL_MERGE_BLOCK, flat_fn, &c);
    else if (g->layout == LAY_COLS) al_par_ranges(len, AL_MERGE_BLOCK, cols_fn, &c);
    else al_par_ranges(len / g->row_len, 1, rows_fn, &c);
}

/* ---- typed path (flat layout): inputs read in place, tile by tile ----------------
 * The same per-element arithmetic as above, on tiles of GT elements converted to F32
 * in the thread's stack; the Gram's block sums see the same values in the same order. */
#define GT 64

typedef struct {
    geo_state *g;
    const al_merge_src *b, *x;
    int64_t off;
    void *out;
    al_dtype odt;
} geo_tctx;

/* Elements [a, a+L) of the base (if any) and of every model into buf; pointers out. */
static void geo_load(const geo_tctx *c, int64_t a, int64_t L, float *buf, const float **bp, const float **xp)
{
    *bp = NULL;
    if (c->b) { al_src_load(buf, c->b, a, L); *bp = buf; }
    for (int i = 0; i < c->g->n; i++) {
        xp[i] = buf + (size_t)(i + 1) * GT;
        al_src_load(buf + (size_t)(i + 1) * GT, &c->x[i], a, L);
    }
}

static void gram_typed(void *vc, double *acc, int64_t i0, int64_t i1)
{
    const geo_tctx *c = vc;
    float buf[(MAXV + 1) * GT];
    const float *bp, *xp[MAXV];
    for (int64_t a = i0; a < i1; a += GT) {
        int64_t L = i1 - a < GT ? i1 - a : GT;
        geo_load(c, a, L, buf, &bp, xp);
        geo_ctx t = { c->g, bp, xp, NULL };
        gram_fn(&t, acc, 0, L);
    }
}

static al_status geo_prepare(void *vs, const al_merge_src *base, const al_merge_src *models, al_error *err)
{
    geo_state *g = vs;
    if (g->passthru) return AL_OK;
    geo_tctx c = { g, base, models, 0, NULL, AL_F32 };
    al_bsum_add(&g->gram, 0, g->numel, gram_typed, &c);
    return geo_finish(g, 0, err);
}

static void apply_typed_fn(void *vc, int64_t i0, int64_t i1)
{
    const geo_tctx *c = vc;
    const geo_state *g = c->g;
    float buf[(MAXV + 1) * GT], o[GT];
    const float *bp, *xp[MAXV];
    for (int64_t a = i0; a < i1; a += GT) {
        int64_t L = i1 - a < GT ? i1 - a : GT;
        geo_load(c, c->off + a, L, buf, &bp, xp);
        if (g->passthru) {
            al_dst_store(c->out, c->odt, a, g->n ? xp[0] : bp, L);
            continue;
        }
        geo_ctx t = { c->g, bp, xp, o };
        flat_fn(&t, 0, L);
        al_dst_store(c->out, c->odt, a, o, L);
    }
}

static void geo_apply_typed(void *vs, int64_t off, int64_t len, const al_merge_src *base,
                            const al_merge_src *models, void *out, al_dtype out_dtype)
{
    geo_tctx c = { vs, base, models, off, out, out_dtype };
    al_par_ranges(len, AL_MERGE_BLOCK, apply_typed_fn, &c);
}

#define GEO_METHOD(ident, KIND)                                                          \
    static al_status init_##ident(void **s, const al_merge_params *p, int64_t numel,     \
                                  int n, bool hb, al_merge_plan *pl, al_error *e)       \
    { return geo_init(KIND, s, p, numel, n, hb, pl, e); }                                \
    const al_merge_method al_m_##ident = { #ident, 1, init_##ident, geo_stat, geo_finish,      \
                                     geo_apply, geo_free, geo_prepare, geo_apply_typed };

GEO_METHOD(slerp, G_SLERP)
GEO_METHOD(nuslerp, G_NUSLERP)
GEO_METHOD(multislerp, G_MULTISLERP)
GEO_METHOD(karcher, G_KARCHER)
GEO_METHOD(model_stock, G_MODEL_STOCK)
