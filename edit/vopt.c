/* edit/vopt.c: prompts, hooked batch forwards and the delta optimisation shared by ROME
 * and MEMIT (edit_internal.h; kmeng01/rome compute_v.py, kmeng01/memit compute_z.py). */
#include "edit_internal.h"

#include <math.h>
#include <string.h>

#include "../core/alloc.h"

#define TRY(x) do { if ((st = (x)) != AL_OK) goto fail; } while (0)
#define NOMEM() do { st = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto fail; } while (0)

int al_edit_count_braces(const char *s)
{
    int c = 0;
    for (const char *q = s; (q = strstr(q, "{}")) != NULL; q += 2) c++;
    return c;
}

double al_edit_dot(const float *a, const float *b, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

al_status al_edit_vopt_setup(const al_rome_params *p, const char *who, const char *const **ctxs,
                             int *nt, const char **kl_prompt, al_error *err)
{
    static const char *const k_bare_ctx[] = { "{}" };
    *ctxs = p->context_templates ? p->context_templates : k_bare_ctx;
    *nt = p->context_templates ? (int)p->n_templates : 1;
    *kl_prompt = p->kl_prompt ? p->kl_prompt : "{} is a";
    if (p->v_num_grad_steps < 1 || !(p->v_lr > 0) || !(p->clamp_norm_factor > 0) ||
        p->v_weight_decay < 0 || p->kl_factor < 0)
        return al_errorf(err, AL_ERR_USAGE, "%s: invalid hyperparameters (steps %d, lr %g, clamp %g, "
                         "wd %g, kl %g)", who, p->v_num_grad_steps, p->v_lr, p->clamp_norm_factor,
                         p->v_weight_decay, p->kl_factor);
    if (*nt < 1) return al_errorf(err, AL_ERR_USAGE, "%s: no context templates", who);
    for (int i = 0; i < *nt; i++)
        if (!(*ctxs)[i] || al_edit_count_braces((*ctxs)[i]) != 1)
            return al_errorf(err, AL_ERR_USAGE, "%s: context template %d ('%s') must contain "
                             "exactly one '{}'", who, i, (*ctxs)[i] ? (*ctxs)[i] : "(null)");
    if (al_edit_count_braces(*kl_prompt) != 1)
        return al_errorf(err, AL_ERR_USAGE, "%s: KL prompt '%s' must contain exactly one '{}'", who,
                         *kl_prompt);
    return AL_OK;
}

al_status al_eprompt_make(const al_tokenizer *tok, const char *ctx, const char *templ,
                          const char *subject, al_eprompt *out, al_error *err)
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

void al_eprompts_free(al_eprompt *p, size_t n)
{
    if (!p) return;
    for (size_t i = 0; i < n; i++) al_free(p[i].ids);
    al_free(p);
}

al_status al_edit_request_templ(const al_fact *req, const char *who, const char **templ,
                                char **own, al_error *err)
{
    *own = NULL;
    *templ = NULL;
    if (!req->subject || !req->subject[0])
        return al_errorf(err, AL_ERR_USAGE, "%s: the request has no subject", who);
    if (!req->target_new || strspn(req->target_new, " \t\n") == strlen(req->target_new))
        return al_errorf(err, AL_ERR_USAGE, "%s: empty target_new for subject '%s'", who, req->subject);
    const char *t = req->templ;
    if (!t) {      /* a full prompt: the subject's first occurrence becomes "{}" */
        const char *s = req->prompt ? strstr(req->prompt, req->subject) : NULL;
        if (!s)
            return al_errorf(err, AL_ERR_USAGE, "%s: subject '%s' not found in the prompt '%s'",
                             who, req->subject, req->prompt ? req->prompt : "");
        size_t pre = (size_t)(s - req->prompt), ls = strlen(req->subject),
               lp = strlen(req->prompt);
        char *o = al_malloc(lp - ls + 3);
        if (!o) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
        memcpy(o, req->prompt, pre);
        memcpy(o + pre, "{}", 2);
        memcpy(o + pre + 2, s + ls, lp - pre - ls + 1);
        t = *own = o;
    }
    if (al_edit_count_braces(t) != 1) {
        al_status st = al_errorf(err, AL_ERR_USAGE, "%s: prompt '%s' must contain the subject "
                                 "exactly once ('{}')", who, t);
        al_free(*own);
        *own = NULL;
        return st;
    }
    *templ = t;
    return AL_OK;
}

al_status al_edit_run_rows(al_model_ws *ws, const al_eprompt *pr, int B, const int *lens_in,
                           int layer, float *key, float *mlp_out, float *block_out,
                           float *last_logits, al_error *err)
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
                   .mlp_out = mlp_out, .block_out = block_out };
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

al_status al_edit_optimize(al_model_ws *ws, const al_eprompt *pv, int nt, const int32_t *tgt,
                           int T, int layer, bool block_init, const al_rome_params *p,
                           float *target_init, float *delta, double *loss, int *steps,
                           int *adam_steps, al_error *err)
{
    al_status st = AL_OK;
    const al_model_config *g = al_model_cfg(al_model_ws_model(ws));
    int C = g->n_embd, V = g->vocab_size;
    float *outs = al_malloc((size_t)(nt + 1) * C * sizeof(float));
    float *logits = al_malloc((size_t)(nt + 1) * V * sizeof(float));
    float *logp0 = al_malloc((size_t)V * sizeof(float));
    float *grad = al_malloc((size_t)C * sizeof(float)), *df = al_malloc((size_t)C * sizeof(float));
    double *dd = al_calloc((size_t)C, sizeof(double)), *am = al_calloc((size_t)C, sizeof(double)),
           *av = al_calloc((size_t)C, sizeof(double));
    int *lens = al_malloc((size_t)(nt + 1) * sizeof(int));
    int *nb = al_malloc((size_t)nt * T * sizeof(int)), *ntp = al_malloc((size_t)nt * T * sizeof(int));
    int32_t *ny = al_malloc((size_t)nt * T * sizeof(int32_t));
    *steps = *adam_steps = 0;
    if (!outs || !logits || !logp0 || !grad || !df || !dd || !am || !av || !lens || !nb || !ntp || !ny)
        NOMEM();

    /* rows 0..nt-1 rewriting prompts, row nt the KL prompt cut after the subject (only
     * its logits there are used, and the model is causal) */
    for (int i = 0; i < nt; i++) lens[i] = pv[i].n;
    lens[nt] = pv[nt].idx + 1;
    TRY(al_edit_run_rows(ws, pv, nt + 1, lens, layer, NULL, block_init ? NULL : outs,
                         block_init ? outs : NULL, logits, err));
    memcpy(target_init, outs, (size_t)C * sizeof(float));
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
    double t0n2 = al_edit_dot(target_init, target_init, C);
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
        loss[it] = L;
        *steps = it + 1;
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
        (*adam_steps)++;
        /* projection onto ||delta|| <= clamp_norm_factor ||target_init|| */
        dn = 0.0;
        for (int c = 0; c < C; c++) dn += dd[c] * dd[c];
        dn = sqrt(dn);
        if (dn > max_norm)
            for (int c = 0; c < C; c++) dd[c] *= max_norm / dn;
    }
    for (int c = 0; c < C; c++) delta[c] = (float)dd[c];
fail:
    al_free(outs);
    al_free(logits);
    al_free(logp0);
    al_free(grad);
    al_free(df);
    al_free(dd);
    al_free(am);
    al_free(av);
    al_free(lens);
    al_free(nb);
    al_free(ntp);
    al_free(ny);
    return st;
}
