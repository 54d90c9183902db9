/* edit/memit.c: MEMIT (see memit.h; rome.md §3). */
#include "memit.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "../core/alloc.h"
#include "edit_internal.h"
#include "factors.h"

#define TRY(x) do { if ((st = (x)) != AL_OK) goto fail; } while (0)
#define FAIL(...) do { st = al_errorf(err, __VA_ARGS__); goto fail; } while (0)
#define NOMEM() FAIL(AL_ERR_NOMEM, "out of memory")

void al_memit_params_default(al_memit_params *p, const al_model_config *cfg)
{
    memset(p, 0, sizeof *p);
    al_rome_params_default(&p->z, cfg);
    p->z.mom2_adjustment = true;
    int n = cfg->n_layer, lo, hi;
    if (cfg->arch == AL_ARCH_GPT2) {
        lo = n * 13 / 48, hi = n * 17 / 48;       /* gpt2-xl: 13..17 */
        p->z.v_num_grad_steps = 20;
        p->z.v_weight_decay = 0.5;
        p->z.clamp_norm_factor = 0.75;
        p->mom2_update_weight = 20000.0 * cfg->n_inner / 6400;   /* gpt2-xl: M = 6400 */
    } else {
        lo = n * 4 / 32, hi = n * 8 / 32;         /* EasyEdit llama-7b: 4..8 */
        p->z.v_num_grad_steps = 25;
        p->z.v_weight_decay = 1e-3;
        p->z.clamp_norm_factor = 4.0;
        p->mom2_update_weight = 15000.0 * cfg->n_inner / 11008;  /* llama-7b: M = 11008 */
    }
    if (hi >= n) hi = n - 1;
    if (hi - lo + 1 > AL_MEMIT_MAX_LAYERS) lo = hi - AL_MEMIT_MAX_LAYERS + 1;
    for (int l = lo; l <= hi; l++) p->layers[p->n_layers++] = l;
}

void al_memit_result_free(al_memit_result *r)
{
    if (!r) return;
    al_free(r->target_init);
    al_free(r->delta);
    al_free(r->loss);
    al_free(r->steps);
    al_free(r->adj);
    al_free(r->resid);
    al_free(r->resid_norm);
    memset(r, 0, sizeof *r);
}

/* One request's prompts: pu[nt] (context ++ prompt, for keys), pv[nt+1] (rewriting
 * prompts ++ target[:-1], then the KL prompt), bare (the prompt alone), target ids. */
typedef struct {
    al_eprompt *pu, *pv, bare;
    int32_t *tgt;
    int T;
} req_prompts;

static void req_free(req_prompts *q, int nt)
{
    al_eprompts_free(q->pu, q->pu ? (size_t)nt : 0);
    al_eprompts_free(q->pv, q->pv ? (size_t)nt + 1 : 0);
    al_free(q->bare.ids);
    al_free(q->tgt);
}

static al_status req_make(const al_tokenizer *tok, const al_fact *req, const char *const *ctxs,
                          int nt, const char *kl_prompt, req_prompts *q, int *maxlen,
                          al_error *err)
{
    al_status st = AL_OK;
    char *own = NULL;
    const char *templ;
    memset(q, 0, sizeof *q);
    TRY(al_edit_request_templ(req, "memit", &templ, &own, err));
    size_t T = 0;
    TRY(al_tokenizer_encode(tok, req->target_new, strlen(req->target_new), false, &q->tgt, &T, err));
    if (T < 1) FAIL(AL_ERR_USAGE, "memit: target_new '%s' has no tokens", req->target_new);
    q->T = (int)T;
    q->pu = al_calloc((size_t)nt, sizeof *q->pu);
    q->pv = al_calloc((size_t)nt + 1, sizeof *q->pv);
    if (!q->pu || !q->pv) NOMEM();
    for (int i = 0; i < nt; i++) {
        TRY(al_eprompt_make(tok, ctxs[i], templ, req->subject, &q->pu[i], err));
        al_eprompt *v = &q->pv[i];
        v->n = q->pu[i].n + q->T - 1;
        v->idx = q->pu[i].idx;
        if (!(v->ids = al_malloc((size_t)v->n * sizeof(int32_t)))) NOMEM();
        memcpy(v->ids, q->pu[i].ids, (size_t)q->pu[i].n * sizeof(int32_t));
        memcpy(v->ids + q->pu[i].n, q->tgt, (size_t)(q->T - 1) * sizeof(int32_t));
        if (v->n > *maxlen) *maxlen = v->n;
    }
    TRY(al_eprompt_make(tok, "{}", kl_prompt, req->subject, &q->pv[nt], err));
    TRY(al_eprompt_make(tok, "{}", templ, req->subject, &q->bare, err));
    if (q->pv[nt].n > *maxlen) *maxlen = q->pv[nt].n;
    if (q->bare.n > *maxlen) *maxlen = q->bare.n;
fail:
    al_free(own);
    return st;
}

al_status al_memit_run(al_model *m, const al_tokenizer *tok, const al_fact *reqs, size_t n_req,
                       const al_memit_params *p, const double *const *Cs, al_memit_result *out,
                       al_error *err)
{
    al_status st = AL_OK;
    const al_model_config *g = al_model_cfg(m);
    int M = g->n_inner, C = g->n_embd, L = p->n_layers, n = (int)n_req;
    const char *const *ctxs;
    int nt;
    const char *kl_prompt;
    req_prompts *q = NULL;
    al_model_ws *ws = NULL;
    float *keys = NULL, *hcur = NULL;
    double *wt = NULL, *A = NULL, *Lc = NULL, *K = NULL;
    memset(out, 0, sizeof *out);

    /* ---- checks, before any model work ---- */
    if (n < 1) return al_errorf(err, AL_ERR_USAGE, "memit: no requests");
    if (L < 1 || L > AL_MEMIT_MAX_LAYERS)
        return al_errorf(err, AL_ERR_USAGE, "memit: %d layers (1..%d)", L, AL_MEMIT_MAX_LAYERS);
    for (int i = 0; i < L; i++) {
        if (p->layers[i] < 0 || p->layers[i] >= g->n_layer)
            return al_errorf(err, AL_ERR_USAGE, "memit: layer %d out of range (the model has %d "
                             "layers)", p->layers[i], g->n_layer);
        if (i && p->layers[i] <= p->layers[i - 1])
            return al_errorf(err, AL_ERR_USAGE, "memit: layers must be distinct and ascending "
                             "(%d after %d)", p->layers[i], p->layers[i - 1]);
    }
    const al_rome_params *z = &p->z;
    if ((st = al_edit_vopt_setup(z, "memit", &ctxs, &nt, &kl_prompt, err)) != AL_OK) return st;
    if (!(p->mom2_update_weight >= 0))
        return al_errorf(err, AL_ERR_USAGE, "memit: invalid mom2_update_weight %g (must be >= 0)",
                         p->mom2_update_weight);
    if (z->mom2_adjustment)
        for (int i = 0; i < L; i++)
            if (!Cs || !Cs[i])
                return al_errorf(err, AL_ERR_USAGE, "memit: mom2_adjustment needs the "
                                 "second-moment statistics C of layer %d", p->layers[i]);

    /* ---- prompts of every request ---- */
    int maxlen = 0;
    if (!(q = al_calloc((size_t)n, sizeof *q))) NOMEM();
    for (int r = 0; r < n; r++) {
        st = req_make(tok, &reqs[r], ctxs, nt, kl_prompt, &q[r], &maxlen, err);
        if (st != AL_OK) { al_error_prefix(err, "request %d: ", r + 1); goto fail; }
    }
    if (maxlen > g->n_ctx)
        FAIL(AL_ERR_USAGE, "memit: a prompt has %d tokens, longer than the context of %d",
             maxlen, g->n_ctx);
    int rows = nt + 1 > 16 ? nt + 1 : 16;
    TRY(al_model_ws_new(&ws, m, rows, maxlen, err));

    /* ---- results ---- */
    out->n = n;
    out->n_layers = L;
    out->M = M;
    out->C = C;
    out->steps_cap = z->v_num_grad_steps;
    memcpy(out->layers, p->layers, (size_t)L * sizeof(int));
    out->target_init = al_calloc((size_t)n * C, sizeof(float));
    out->delta = al_calloc((size_t)n * C, sizeof(float));
    out->loss = al_calloc((size_t)n * out->steps_cap, sizeof(double));
    out->steps = al_calloc((size_t)n, sizeof(int));
    out->adj = al_calloc((size_t)L * n * M, sizeof(double));
    out->resid = al_calloc((size_t)L * n * C, sizeof(double));
    out->resid_norm = al_calloc((size_t)L, sizeof(double));
    keys = al_malloc((size_t)nt * M * sizeof(float));
    hcur = al_malloc((size_t)n * C * sizeof(float));
    wt = al_malloc((size_t)nt * sizeof(double));
    A = al_malloc((size_t)M * M * sizeof(double));
    K = al_malloc((size_t)n * M * sizeof(double));
    if (!out->target_init || !out->delta || !out->loss || !out->steps || !out->adj ||
        !out->resid || !out->resid_norm || !keys || !hcur || !wt || !A || !K)
        NOMEM();

    /* template weights: "{}" is its own group, the others another; the key is the mean
     * of the group means (compute_ks), e.g. 1/2 for "{}" and 1/10 for each of five */
    int n_bare = 0;
    for (int i = 0; i < nt; i++) n_bare += !strcmp(ctxs[i], "{}");
    int n_groups = (n_bare > 0) + (n_bare < nt);
    for (int i = 0; i < nt; i++)
        wt[i] = 1.0 / (n_groups * (double)(!strcmp(ctxs[i], "{}") ? n_bare : nt - n_bare));

    /* ---- z_r = target_init_r + delta_r at the z layer, on the unedited model ---- */
    int zl = p->layers[L - 1];
    for (int r = 0; r < n; r++) {
        int adam = 0;
        st = al_edit_optimize(ws, q[r].pv, nt, q[r].tgt, q[r].T, zl, true, z,
                              out->target_init + (size_t)r * C, out->delta + (size_t)r * C,
                              out->loss + (size_t)r * out->steps_cap, &out->steps[r], &adam, err);
        if (st != AL_OK) { al_error_prefix(err, "request %d: ", r + 1); goto fail; }
    }

    /* ---- layer by layer, each seeing the updates of the layers before ---- */
    for (int i = 0; i < L; i++) {
        int l = p->layers[i];
        double *adj = out->adj + (size_t)i * n * M, *R = out->resid + (size_t)i * n * C;
        /* K [n, M]: weighted template mean of the key at layer l */
        for (int r = 0; r < n; r++) {
            TRY(al_edit_run_rows(ws, q[r].pu, nt, NULL, l, keys, NULL, NULL, NULL, err));
            for (int j = 0; j < M; j++) {
                double s = 0.0;
                for (int t = 0; t < nt; t++) s += wt[t] * keys[(size_t)t * M + j];
                K[(size_t)r * M + j] = s;
            }
        }
        /* H [n, C]: block output at the z layer, bare prompts, in chunks of ws rows */
        for (int r0 = 0; r0 < n; r0 += rows) {
            int b = n - r0 < rows ? n - r0 : rows;
            al_eprompt *bp = al_malloc((size_t)b * sizeof *bp);
            if (!bp) NOMEM();
            for (int r = 0; r < b; r++) bp[r] = q[r0 + r].bare;
            st = al_edit_run_rows(ws, bp, b, NULL, zl, NULL, NULL, hcur + (size_t)r0 * C, NULL, err);
            al_free(bp);
            if (st != AL_OK) goto fail;
        }
        /* R = (Z - H) / (L - i),  Z = target_init + delta */
        double rn = 0.0;
        for (size_t k = 0; k < (size_t)n * C; k++) {
            double d = (double)out->target_init[k] + out->delta[k] - hcur[k];
            rn += d * d;
            R[k] = d / (L - i);
        }
        out->resid_norm[i] = sqrt(rn);
        /* A = lambda C + K^T K (lower triangle is what the Cholesky reads) */
        if (z->mom2_adjustment) {
            for (size_t k = 0; k < (size_t)M * M; k++) A[k] = p->mom2_update_weight * Cs[i][k];
        } else {
            memset(A, 0, (size_t)M * M * sizeof *A);
            for (int j = 0; j < M; j++) A[(size_t)j * M + j] = p->mom2_update_weight;
        }
        cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, M, n, 1.0, K, M, 1.0, A, M);
        st = al_rome_cholesky(A, M, &Lc, err);
        if (st != AL_OK) {
            al_error_prefix(err, "memit: layer %d: lambda C + K K^T: ", l);
            goto fail;
        }
        /* adj_r = A^-1 k_r (A symmetric) */
        memcpy(adj, K, (size_t)n * M * sizeof *adj);
        #pragma omp parallel for schedule(static)
        for (int r = 0; r < n; r++) al_rome_chol_solve(Lc, M, adj + (size_t)r * M);
        al_free(Lc);
        Lc = NULL;
        /* dW = R^T adj [C, M] into the down projection, in its file orientation */
        float *W;
        int64_t wr, wc;
        al_rome_tensor *tt = &out->tensors[i];
        TRY(al_model_mlp_down_weight(m, l, &W, &wr, &wc, tt->name, sizeof tt->name, err));
        bool conv1d = g->arch == AL_ARCH_GPT2;         /* [M, C]: rows are keys */
        al_update u = { .rows = wr, .cols = wc, .rank = n, .f64 = true,
                        .left = conv1d ? adj : R, .right = conv1d ? R : adj };
        al_update_apply(W, &u, +1);
        tt->data = W;
        tt->rows = wr;
        tt->cols = wc;
    }

fail:
    if (st != AL_OK) al_memit_result_free(out);
    for (int r = 0; q && r < n; r++) req_free(&q[r], nt);
    al_free(q);
    al_model_ws_free(ws);
    al_free(keys);
    al_free(hcur);
    al_free(wt);
    al_free(A);
    al_free(Lc);
    al_free(K);
    return st;
}
