/* edit/rome.c: ROME / r-ROME (see rome.h; rome.md §1 for the reference code path,
 * kmeng01/rome rome_main.py, compute_u.py, compute_v.py). */
#include "rome.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/alloc.h"

#define TRY(x) do { if ((st = (x)) != AL_OK) goto fail; } while (0)
#define NOMEM() do { st = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto fail; } while (0)

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

/* ---- prompts ----------------------------------------------------------------------- */

/* One tokenized prompt: ids and the index of the subject's last token. */
typedef struct {
    int32_t *ids;
    int n, idx;
} prompt_t;

static int count_braces(const char *s)
{
    int c = 0;
    for (const char *q = s; (q = strstr(q, "{}")) != NULL; q += 2) c++;
    return c;
}

/* text = ctx.format(templ).format(subject): ctx and templ each hold exactly one "{}".
 * Tokenize (with the tokenizer's specials, e.g. Llama's BOS; GPT-2 adds none) and find
 * the token whose byte span holds the subject's last byte (rome.md §6). */
static al_status make_prompt(const al_tokenizer *tok, const char *ctx, const char *templ,
                             const char *subject, prompt_t *out, al_error *err)
{
    al_status st = AL_OK;
    char *text = NULL;
    al_tok_span *spans = NULL;
    out->ids = NULL;
    const char *c1 = strstr(ctx, "{}"), *t1 = strstr(templ, "{}");
    size_t lc = strlen(ctx), lt = strlen(templ), ls = strlen(subject);
    size_t len = lc - 2 + lt - 2 + ls;
    text = al_malloc(len + 1);
    if (!text) NOMEM();
    /* ctx[..c1] templ[..t1] subject templ[t1+2..] ctx[c1+2..] */
    size_t o = 0, pc = (size_t)(c1 - ctx), pt = (size_t)(t1 - templ);
    memcpy(text + o, ctx, pc); o += pc;
    memcpy(text + o, templ, pt); o += pt;
    size_t s0 = o;
    memcpy(text + o, subject, ls); o += ls;
    memcpy(text + o, t1 + 2, lt - pt - 2); o += lt - pt - 2;
    memcpy(text + o, c1 + 2, lc - pc - 2); o += lc - pc - 2;
    text[o] = 0;
    size_t n = 0;
    TRY(al_tokenizer_encode_offsets(tok, text, o, true, &out->ids, &spans, &n, err));
    size_t idx = al_tok_span_find(spans, n, s0 + ls - 1);
    if (idx >= n) {
        st = al_errorf(err, AL_ERR_INTERNAL, "no token covers the end of the subject in '%s'", text);
        goto fail;
    }
    out->n = (int)n;
    out->idx = (int)idx;
fail:
    if (st != AL_OK) { al_free(out->ids); out->ids = NULL; }
    al_free(text);
    al_free(spans);
    return st;
}

static void prompts_free(prompt_t *p, size_t n)
{
    if (!p) return;
    for (size_t i = 0; i < n; i++) al_free(p[i].ids);
    al_free(p);
}

/* Forward B rows (right-padded) with the hook at each row's subject token; optional
 * key [B,M], mlp_out [B,C], last_logits [B,V]. lens NULL = the rows' own lengths. */
static al_status run_rows(al_model_ws *ws, const prompt_t *pr, int B, const int *lens_in,
                          int layer, float *key, float *mlp_out, float *last_logits,
                          al_error *err)
{
    al_status st = AL_OK;
    int T = 0;
    for (int b = 0; b < B; b++) {
        int l = lens_in ? lens_in[b] : pr[b].n;
        if (l > T) T = l;
    }
    int32_t *tokens = al_calloc((size_t)B * T, sizeof *tokens);
    int *lens = al_malloc((size_t)B * sizeof *lens), *pb = al_malloc((size_t)B * sizeof *pb),
        *pt = al_malloc((size_t)B * sizeof *pt);
    if (!tokens || !lens || !pb || !pt) NOMEM();
    for (int b = 0; b < B; b++) {
        lens[b] = lens_in ? lens_in[b] : pr[b].n;
        memcpy(tokens + (size_t)b * T, pr[b].ids, (size_t)(lens[b] < pr[b].n ? lens[b] : pr[b].n) * sizeof *tokens);
        pb[b] = b;
        pt[b] = pr[b].idx;
    }
    al_hook hk = { .layer = layer, .n_pos = B, .pos_b = pb, .pos_t = pt, .key = key,
                   .mlp_out = mlp_out };
    al_forward_args a = { .tokens = tokens, .B = B, .T = T, .lens = lens, .hook = &hk,
                          .last_logits = last_logits };
    st = al_model_forward(ws, &a, err);
fail:
    al_free(tokens);
    al_free(lens);
    al_free(pb);
    al_free(pt);
    return st;
}

static double dot_f(const float *a, const float *b, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* ---- the edit ---------------------------------------------------------------------- */

al_status al_rome_compute(al_model *m, const al_tokenizer *tok, const al_fact *req,
                          const al_rome_params *p, const double *C_chol, al_rome_result *out,
                          al_error *err)
{
    al_status st = AL_OK;
    const al_model_config *g = al_model_cfg(m);
    int M = g->n_inner, C = g->n_embd, V = g->vocab_size;
    static const char *const k_bare_ctx[] = { "{}" };
    const char *const *ctxs = p->context_templates ? p->context_templates : k_bare_ctx;
    int nt = p->context_templates ? (int)p->n_templates : 1;
    const char *kl_prompt = p->kl_prompt ? p->kl_prompt : "{} is a";
    char *templ_own = NULL;
    int32_t *tgt = NULL;
    prompt_t *pu = NULL, *pv = NULL, bare = { 0 };
    al_model_ws *ws = NULL;
    float *keys = NULL, *outs = NULL, *logits = NULL, *logp0 = NULL, *grad = NULL, *df = NULL;
    double *u64 = NULL, *dd = NULL, *am = NULL, *av = NULL;
    int *lens = NULL, *nb = NULL, *ntp = NULL;
    int32_t *ny = NULL;
    memset(out, 0, sizeof *out);

    /* ---- checks ---- */
    if (p->layer < 0 || p->layer >= g->n_layer)
        return al_errorf(err, AL_ERR_USAGE, "rome: layer %d out of range (the model has %d "
                         "layers)", p->layer, g->n_layer);
    if (nt < 1) return al_errorf(err, AL_ERR_USAGE, "rome: no context templates");
    if (p->v_num_grad_steps < 1 || !(p->v_lr > 0) || !(p->clamp_norm_factor > 0) ||
        p->v_weight_decay < 0 || p->kl_factor < 0)
        return al_errorf(err, AL_ERR_USAGE, "rome: invalid hyperparameters (steps %d, lr %g, "
                         "clamp %g, wd %g, kl %g)", p->v_num_grad_steps, p->v_lr,
                         p->clamp_norm_factor, p->v_weight_decay, p->kl_factor);
    if (!req->subject || !req->subject[0])
        return al_errorf(err, AL_ERR_USAGE, "rome: the request has no subject");
    if (!req->target_new || strspn(req->target_new, " \t\n") == strlen(req->target_new))
        return al_errorf(err, AL_ERR_USAGE, "rome: empty target_new for subject '%s'", req->subject);
    if (p->mom2_adjustment && !C_chol)
        return al_errorf(err, AL_ERR_USAGE, "rome: mom2_adjustment needs the second-moment "
                         "statistics C of layer %d", p->layer);
    for (int i = 0; i < nt; i++)
        if (!ctxs[i] || count_braces(ctxs[i]) != 1)
            return al_errorf(err, AL_ERR_USAGE, "rome: context template %d ('%s') must contain "
                             "exactly one '{}'", i, ctxs[i] ? ctxs[i] : "(null)");
    if (count_braces(kl_prompt) != 1)
        return al_errorf(err, AL_ERR_USAGE, "rome: KL prompt '%s' must contain exactly one '{}'",
                         kl_prompt);
    const char *templ = req->templ;
    if (!templ) {      /* a full prompt: the subject's first occurrence becomes "{}" */
        const char *s = req->prompt ? strstr(req->prompt, req->subject) : NULL;
        if (!s)
            return al_errorf(err, AL_ERR_USAGE, "rome: subject '%s' not found in the prompt '%s'",
                             req->subject, req->prompt ? req->prompt : "");
        size_t pre = (size_t)(s - req->prompt), ls = strlen(req->subject),
               lp = strlen(req->prompt);
        templ_own = al_malloc(lp - ls + 3);
        if (!templ_own) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
        memcpy(templ_own, req->prompt, pre);
        memcpy(templ_own + pre, "{}", 2);
        memcpy(templ_own + pre + 2, s + ls, lp - pre - ls + 1);
        templ = templ_own;
    }
    if (count_braces(templ) != 1) {
        st = al_errorf(err, AL_ERR_USAGE, "rome: prompt '%s' must contain the subject exactly "
                       "once ('{}')", templ);
        goto fail;
    }

    /* ---- tokens ---- target ids of " word" (no specials), prompts per template ---- */
    size_t T64 = 0;
    TRY(al_tokenizer_encode(tok, req->target_new, strlen(req->target_new), false, &tgt, &T64, err));
    int T = (int)T64;
    if (T < 1) { st = al_errorf(err, AL_ERR_USAGE, "rome: target_new '%s' has no tokens", req->target_new); goto fail; }
    pu = al_calloc((size_t)nt, sizeof *pu);
    pv = al_calloc((size_t)nt + 1, sizeof *pv);
    if (!pu || !pv) NOMEM();
    int maxlen = 0;
    for (int i = 0; i < nt; i++) {
        TRY(make_prompt(tok, ctxs[i], templ, req->subject, &pu[i], err));
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
    TRY(make_prompt(tok, "{}", kl_prompt, req->subject, &pv[nt], err));
    TRY(make_prompt(tok, "{}", templ, req->subject, &bare, err));
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
    outs = al_malloc((size_t)(nt + 1) * C * sizeof(float));
    logits = al_malloc((size_t)(nt + 1) * V * sizeof(float));
    logp0 = al_malloc((size_t)V * sizeof(float));
    grad = al_malloc((size_t)C * sizeof(float));
    df = al_malloc((size_t)C * sizeof(float));
    u64 = al_malloc((size_t)M * sizeof(double));
    dd = al_calloc((size_t)C, sizeof(double));
    am = al_calloc((size_t)C, sizeof(double));
    av = al_calloc((size_t)C, sizeof(double));
    lens = al_malloc((size_t)(nt + 1) * sizeof(int));
    nb = al_malloc((size_t)nt * T * sizeof(int));
    ntp = al_malloc((size_t)nt * T * sizeof(int));
    ny = al_malloc((size_t)nt * T * sizeof(int32_t));
    if (!out->k_star || !out->u || !out->k_bare || !out->target_init || !out->delta ||
        !out->v_star || !out->out_bare || !out->v_right || !out->loss || !keys || !outs ||
        !logits || !logp0 || !grad || !df || !u64 || !dd || !am || !av || !lens || !nb ||
        !ntp || !ny)
        NOMEM();

    /* ---- k* = mean_i key_i;  u = C^-1 k* / ||C^-1 k*||  (compute_u) ---- */
    TRY(run_rows(ws, pu, nt, NULL, p->layer, keys, outs, NULL, err));
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
    if (!(un > 0)) { st = al_errorf(err, AL_ERR_INTERNAL, "rome: zero key for subject '%s'", req->subject); goto fail; }
    for (int j = 0; j < M; j++) out->u[j] = (float)(u64[j] / un);

    /* ---- v* (compute_v): rows 0..nt-1 rewriting prompts, row nt the KL prompt (cut
     * after the subject: only its logits there are used, and the model is causal) ---- */
    for (int i = 0; i < nt; i++) lens[i] = pv[i].n;
    lens[nt] = pv[nt].idx + 1;
    TRY(run_rows(ws, pv, nt + 1, lens, p->layer, NULL, outs, logits, err));
    memcpy(out->target_init, outs, (size_t)C * sizeof(float));
    al_log_softmax(logp0, logits + (size_t)nt * V, V);
    /* NLL: target j of prompt i is predicted at position len_i - T + j */
    for (int i = 0; i < nt; i++)
        for (int j = 0; j < T; j++) {
            nb[i * T + j] = i;
            ntp[i * T + j] = pv[i].n - T + j;
            ny[i * T + j] = tgt[j];
        }
    int kb = nt, kt = pv[nt].idx;
    al_loss_spec spec = { .n_nll = nt * T, .nll_b = nb, .nll_t = ntp, .nll_target = ny,
                          .n_kl = 1, .kl_b = &kb, .kl_t = &kt, .kl_ref_logp = logp0,
                          .kl_weight = p->kl_factor };
    double t0n2 = dot_f(out->target_init, out->target_init, C);
    double max_norm = p->clamp_norm_factor * sqrt(t0n2);
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    double b1t = 1.0, b2t = 1.0;
    for (int it = 0; it < p->v_num_grad_steps; it++) {
        for (int c = 0; c < C; c++) df[c] = (float)dd[c];
        if (it > 0) TRY(al_model_forward_from(ws, df, NULL, NULL, err));
        double L;
        TRY(al_model_loss(ws, &spec, &L, grad, err));
        double dn = 0.0;
        for (int c = 0; c < C; c++) dn += dd[c] * dd[c];
        dn = sqrt(dn);
        L += p->v_weight_decay * dn / t0n2;       /* wd ||delta|| / ||target_init||^2 */
        out->loss[it] = L;
        out->steps = it + 1;
        if (L < p->early_stop_loss || it == p->v_num_grad_steps - 1) break;
        /* Adam (torch defaults), d wd/d delta = wd delta / (||delta|| ||t0||^2), 0 at 0 */
        b1t *= b1;
        b2t *= b2;
        double step = p->v_lr / (1.0 - b1t), bc2 = sqrt(1.0 - b2t);
        for (int c = 0; c < C; c++) {
            double gc = grad[c] + (dn > 0 ? p->v_weight_decay * dd[c] / (dn * t0n2) : 0.0);
            am[c] = b1 * am[c] + (1 - b1) * gc;
            av[c] = b2 * av[c] + (1 - b2) * gc * gc;
            dd[c] -= step * am[c] / (sqrt(av[c]) / bc2 + eps);
        }
        out->adam_steps++;
        /* projection onto ||delta|| <= clamp_norm_factor ||target_init|| */
        dn = 0.0;
        for (int c = 0; c < C; c++) dn += dd[c] * dd[c];
        dn = sqrt(dn);
        if (dn > max_norm)
            for (int c = 0; c < C; c++) dd[c] *= max_norm / dn;
    }
    for (int c = 0; c < C; c++) {
        out->delta[c] = (float)dd[c];
        out->v_star[c] = (float)((double)out->target_init[c] + dd[c]);
    }

    /* ---- right vector: (v* - out(k)) / <k, u> ---- */
    out->lookup_bare = bare.idx;
    if (!p->r_rome) TRY(run_rows(ws, &bare, 1, NULL, p->layer, out->k_bare, out->out_bare, NULL, err));
    out->division_factor = dot_f(out->k_bare, out->u, M);
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
    prompts_free(pu, pu ? (size_t)nt : 0);
    prompts_free(pv, pv ? (size_t)nt + 1 : 0);
    al_free(bare.ids);
    al_model_ws_free(ws);
    al_free(keys);
    al_free(outs);
    al_free(logits);
    al_free(logp0);
    al_free(grad);
    al_free(df);
    al_free(u64);
    al_free(dd);
    al_free(am);
    al_free(av);
    al_free(lens);
    al_free(nb);
    al_free(ntp);
    al_free(ny);
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
    /* orientation from the architecture, not the shape (M == C would be ambiguous) */
    bool conv1d = g->arch == AL_ARCH_GPT2;
    const float *a = conv1d ? r->u : r->v_right, *b = conv1d ? r->v_right : r->u;
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < rows; i++) {
        float *wi = W + i * cols;
        for (int64_t j = 0; j < cols; j++) {
            float upd = a[i] * b[j];             /* rounded to F32, then added */
            wi[j] += upd;
        }
    }
    if (out) {
        snprintf(out->name, sizeof out->name, "%s", name);
        out->data = W;
        out->rows = rows;
        out->cols = cols;
    }
    return AL_OK;
}
