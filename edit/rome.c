/* edit/rome.c: ROME / r-ROME (see rome.h; rome.md §1 for the reference code path,
 * kmeng01/rome rome_main.py, compute_u.py, compute_v.py). */
#include "rome.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/alloc.h"
#include "edit_internal.h"
#include "factors.h"

#define TRY(x) do { if ((st = (x)) != AL_OK) goto fail; } while (0)
#define FAIL(...) do { st = al_errorf(err, __VA_ARGS__); goto fail; } while (0)
#define NOMEM() FAIL(AL_ERR_NOMEM, "out of memory")

void al_rome_params_default(al_rome_params *p, const al_model_config *cfg)
{
    memset(p, 0, sizeof *p);
    p->kl_factor = 0.0625;
    p->v_lr = 0.5;
    p->clamp_norm_factor = 4.0;
    p->early_stop_loss = 5e-2;
    p->v_loss_layer = cfg->n_layer - 1;
    if (cfg->arch == AL_ARCH_GPT2) {
        /* kmeng01/rome hparams/ROME/gpt2-{medium,large,xl}.json: layers 8/24, 12/36, 17/48 */
        p->layer = cfg->n_layer * 17 / 48;
        p->v_num_grad_steps = 20;
        p->v_weight_decay = 0.5;
        if (cfg->n_layer == 24 && cfg->n_embd == 1024) p->clamp_norm_factor = 3.0;
        p->mom2_adjustment = true;
    } else {
        /* EasyEdit hparams/ROME/llama-7b.yaml, llama3-8b.yaml, mistral, qwen2.5 */
        p->layer = cfg->n_layer >= 16 ? 5 : cfg->n_layer / 3;
        p->v_num_grad_steps = 25;
        p->v_weight_decay = 1e-3;
        p->mom2_adjustment = false;
    }
}

void al_rome_result_free(al_rome_result *r)
{
    if (!r) return;
    al_free(r->k_star);
    al_free(r->u);
    al_free(r->target_init);
    al_free(r->delta);
    al_free(r->v_star);
    al_free(r->k_bare);
    al_free(r->out_bare);
    al_free(r->v_right);
    al_free(r->loss);
    memset(r, 0, sizeof *r);
}

/* ---- F64 Cholesky ------------------------------------------------------------------ */

/* Blocked right-looking Cholesky, C = L L^T (row-major, lower): per block column k,
 *   L11 = chol(A11);  A21 <- A21 L11^-T (dtrsm);  A22 -= A21 A21^T (dsyrk). */
al_status al_rome_cholesky(const double *C, int K, double **Lout, al_error *err)
{
    *Lout = NULL;
    if (K < 1) return al_errorf(err, AL_ERR_USAGE, "cholesky: size %d", K);
    size_t n = (size_t)K;
    double *A = al_malloc(n * n * sizeof *A);
    if (!A) return al_errorf(err, AL_ERR_NOMEM, "out of memory (%zu x %zu F64 matrix)", n, n);
    memcpy(A, C, n * n * sizeof *A);
    const int NB = 128;
    for (int k0 = 0; k0 < K; k0 += NB) {
        int b = K - k0 < NB ? K - k0 : NB, m2 = K - k0 - b;
        for (int j = k0; j < k0 + b; j++) {          /* unblocked on the diagonal block */
            double *rj = A + (size_t)j * n;
            double d = rj[j];
            for (int t = k0; t < j; t++) d -= rj[t] * rj[t];
            if (!(d > 0.0)) {
                al_free(A);
                return al_errorf(err, AL_ERR_SHAPE, "cholesky: matrix is not positive definite "
                                 "(pivot %d is %g)", j, d);
            }
            d = sqrt(d);
            rj[j] = d;
            for (int i = j + 1; i < k0 + b; i++) {
                double *ri = A + (size_t)i * n, s = ri[j];
                for (int t = k0; t < j; t++) s -= ri[t] * rj[t];
                ri[j] = s / d;
            }
        }
        if (m2 > 0) {
            double *A11 = A + (size_t)k0 * n + k0, *A21 = A + (size_t)(k0 + b) * n + k0,
                   *A22 = A + (size_t)(k0 + b) * n + k0 + b;
            cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, m2, b,
                        1.0, A11, K, A21, K);
            cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, m2, b, -1.0, A21, K, 1.0, A22, K);
        }
    }
    for (size_t i = 0; i < n; i++)                   /* clear the (stale) upper triangle */
        memset(A + i * n + i + 1, 0, (n - i - 1) * sizeof *A);
    *Lout = A;
    return AL_OK;
}

void al_rome_chol_solve(const double *L, int K, double *b)
{
    size_t n = (size_t)K;
    for (size_t i = 0; i < n; i++) {                 /* L y = b */
        const double *ri = L + i * n;
        double s = b[i];
        for (size_t t = 0; t < i; t++) s -= ri[t] * b[t];
        b[i] = s / ri[i];
    }
    for (size_t i = n; i-- > 0;) {                   /* L^T x = y, by rows of L */
        const double *ri = L + i * n;
        b[i] /= ri[i];
        for (size_t t = 0; t < i; t++) b[t] -= ri[t] * b[i];
    }
}

/* ---- the edit ---------------------------------------------------------------------- */

al_status al_rome_compute(al_model *m, const al_tokenizer *tok, const al_fact *req,
                          const al_rome_params *p, const double *C_chol, al_rome_result *out,
                          al_error *err)
{
    al_status st = AL_OK;
    const al_model_config *g = al_model_cfg(m);
    int M = g->n_inner, C = g->n_embd;
    const char *const *ctxs;
    int nt;
    const char *kl_prompt;
    char *templ_own = NULL;
    const char *templ = NULL;
    int32_t *tgt = NULL;
    al_eprompt *pu = NULL, *pv = NULL, bare = { 0 };
    al_model_ws *ws = NULL;
    float *keys = NULL, *outs = NULL;
    double *u64 = NULL;
    memset(out, 0, sizeof *out);

    /* ---- checks ---- */
    TRY(al_edit_request_templ(req, "rome", &templ, &templ_own, err));
    if (p->layer < 0 || p->layer >= g->n_layer)
        FAIL(AL_ERR_USAGE, "rome: layer %d out of range (the model has %d "
             "layers)", p->layer, g->n_layer);
    if (p->mom2_adjustment && !C_chol)
        FAIL(AL_ERR_USAGE, "rome: mom2_adjustment needs the second-moment "
             "statistics C of layer %d", p->layer);
    TRY(al_edit_vopt_setup(p, "rome", &ctxs, &nt, &kl_prompt, err));

    /* ---- tokens ---- target ids of " word" (no specials), prompts per template ---- */
    size_t T64 = 0;
    TRY(al_tokenizer_encode(tok, req->target_new, strlen(req->target_new), false, &tgt, &T64, err));
    int T = (int)T64;
    if (T < 1) FAIL(AL_ERR_USAGE, "rome: target_new '%s' has no tokens", req->target_new);
    pu = al_calloc((size_t)nt, sizeof *pu);
    pv = al_calloc((size_t)nt + 1, sizeof *pv);
    if (!pu || !pv) NOMEM();
    int maxlen = 0;
    for (int i = 0; i < nt; i++) {
        TRY(al_eprompt_make(tok, ctxs[i], templ, req->subject, &pu[i], err));
        /* rewriting prompt: ids ++ target[:-1] (ROME re-tokenizes prompt +
         * decode(target[:-1]); identical whenever that round trip is exact) */
        pv[i].n = pu[i].n + T - 1;
        pv[i].idx = pu[i].idx;
        pv[i].ids = al_malloc((size_t)pv[i].n * sizeof(int32_t));
        if (!pv[i].ids) NOMEM();
        memcpy(pv[i].ids, pu[i].ids, (size_t)pu[i].n * sizeof(int32_t));
        memcpy(pv[i].ids + pu[i].n, tgt, (size_t)(T - 1) * sizeof(int32_t));
        if (pv[i].n > maxlen) maxlen = pv[i].n;
    }
    TRY(al_eprompt_make(tok, "{}", kl_prompt, req->subject, &pv[nt], err));
    TRY(al_eprompt_make(tok, "{}", templ, req->subject, &bare, err));
    if (pv[nt].n > maxlen) maxlen = pv[nt].n;
    if (bare.n > maxlen) maxlen = bare.n;
    if (maxlen > g->n_ctx) {
        st = al_errorf(err, AL_ERR_USAGE, "rome: a prompt has %d tokens, longer than the "
                       "context of %d", maxlen, g->n_ctx);
        goto fail;
    }
    TRY(al_model_ws_new(&ws, m, nt + 1, maxlen, err));

    /* ---- results ---- */
    out->M = M;
    out->C = C;
    out->k_star = al_calloc((size_t)M, sizeof(float));
    out->u = al_calloc((size_t)M, sizeof(float));
    out->k_bare = al_calloc((size_t)M, sizeof(float));
    out->target_init = al_calloc((size_t)C, sizeof(float));
    out->delta = al_calloc((size_t)C, sizeof(float));
    out->v_star = al_calloc((size_t)C, sizeof(float));
    out->out_bare = al_calloc((size_t)C, sizeof(float));
    out->v_right = al_calloc((size_t)C, sizeof(float));
    out->loss = al_calloc((size_t)p->v_num_grad_steps, sizeof(double));
    keys = al_malloc((size_t)nt * M * sizeof(float));
    outs = al_malloc((size_t)nt * C * sizeof(float));
    u64 = al_malloc((size_t)M * sizeof(double));
    if (!out->k_star || !out->u || !out->k_bare || !out->target_init || !out->delta ||
        !out->v_star || !out->out_bare || !out->v_right || !out->loss || !keys || !outs || !u64)
        NOMEM();

    /* ---- k* = mean_i key_i;  u = C^-1 k* / ||C^-1 k*||  (compute_u) ---- */
    TRY(al_edit_run_rows(ws, pu, nt, NULL, p->layer, keys, outs, NULL, NULL, err));
    for (int j = 0; j < M; j++) {
        double s = 0.0;
        for (int i = 0; i < nt; i++) s += keys[(size_t)i * M + j];
        u64[j] = s / nt;
        out->k_star[j] = (float)u64[j];
    }
    if (p->r_rome) {    /* r-ROME: v_right from the template means of key and output */
        memcpy(out->k_bare, out->k_star, (size_t)M * sizeof(float));
        for (int c = 0; c < C; c++) {
            double s = 0.0;
            for (int i = 0; i < nt; i++) s += outs[(size_t)i * C + c];
            out->out_bare[c] = (float)(s / nt);
        }
    }
    if (p->mom2_adjustment) al_rome_chol_solve(C_chol, M, u64);
    double un = 0.0;
    for (int j = 0; j < M; j++) un += u64[j] * u64[j];
    un = sqrt(un);
    if (!(un > 0)) FAIL(AL_ERR_INTERNAL, "rome: zero key for subject '%s'", req->subject);
    for (int j = 0; j < M; j++) out->u[j] = (float)(u64[j] / un);

    /* ---- v* = target_init + delta (compute_v) ---- */
    TRY(al_edit_optimize(ws, pv, nt, tgt, T, p->layer, false, p, out->target_init, out->delta,
                         out->loss, &out->steps, &out->adam_steps, err));
    for (int c = 0; c < C; c++)
        out->v_star[c] = (float)((double)out->target_init[c] + out->delta[c]);

    /* ---- right vector: (v* - out(k)) / <k, u> ---- */
    out->lookup_bare = bare.idx;
    if (!p->r_rome) TRY(al_edit_run_rows(ws, &bare, 1, NULL, p->layer, out->k_bare, out->out_bare, NULL, NULL, err));
    out->division_factor = al_edit_dot(out->k_bare, out->u, M);
    if (!(fabs(out->division_factor) > 0)) {
        st = al_errorf(err, AL_ERR_INTERNAL, "rome: <k, u> is zero for subject '%s'", req->subject);
        goto fail;
    }
    for (int c = 0; c < C; c++)
        out->v_right[c] = (float)(((double)out->v_star[c] - out->out_bare[c]) / out->division_factor);

fail:
    if (st != AL_OK) al_rome_result_free(out);
    al_free(templ_own);
    al_free(tgt);
    al_eprompts_free(pu, pu ? (size_t)nt : 0);
    al_eprompts_free(pv, pv ? (size_t)nt + 1 : 0);
    al_free(bare.ids);
    al_model_ws_free(ws);
    al_free(keys);
    al_free(outs);
    al_free(u64);
    return st;
}

al_status al_rome_apply(al_model *m, int layer, const al_rome_result *r, al_rome_tensor *out,
                        al_error *err)
{
    const al_model_config *g = al_model_cfg(m);
    if (!r || !r->u || !r->v_right || r->M != g->n_inner || r->C != g->n_embd)
        return al_errorf(err, AL_ERR_USAGE, "rome apply: the result does not fit the model "
                         "(M %d, C %d)", r ? r->M : 0, r ? r->C : 0);
    float *W;
    int64_t rows, cols;
    char name[192];
    al_status st = al_model_mlp_down_weight(m, layer, &W, &rows, &cols, name, sizeof name, err);
    if (st != AL_OK) return st;
    /* orientation from the architecture, not the shape (M == C would be ambiguous);
     * the product of two F32 values is rounded to F32 and added, as torch's
     * W += u.unsqueeze(1) @ v.unsqueeze(0) */
    bool conv1d = g->arch == AL_ARCH_GPT2;
    al_update u = { .rows = rows, .cols = cols, .rank = 1, .f64 = false,
                    .left = conv1d ? r->u : r->v_right, .right = conv1d ? r->v_right : r->u };
    al_update_apply(W, &u, +1);
    if (out) {
        snprintf(out->name, sizeof out->name, "%s", name);
        out->data = W;
        out->rows = rows;
        out->cols = cols;
    }
    return AL_OK;
}
