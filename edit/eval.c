/* edit/eval.c: teacher-forced scores of continuations (see eval.h). */
#include "eval.h"

#include <math.h>
#include <string.h>

#include "../core/alloc.h"

#define EVAL_LOGITS_BUDGET ((size_t)64 << 20)   /* floats */

al_status al_eval_pairs(const al_model *m, al_model_ws *ws, int max_batch, const al_tokenizer *tok, size_t n,
                        const char *const *prompts, const char *const *conts, al_cont_score *out, al_error *err)
{
    const al_model_config *cfg = al_model_cfg(m);
    const size_t V = (size_t)cfg->vocab_size;
    al_status s = AL_OK;
    int32_t **p = al_calloc(n ? n : 1, sizeof *p), **c = al_calloc(n ? n : 1, sizeof *c);
    size_t *np = al_calloc(n ? n : 1, sizeof *np), *nc = al_calloc(n ? n : 1, sizeof *nc);
    int32_t *tokens = NULL;
    int *lens = NULL;
    float *logits = NULL, *lp = al_malloc(V * sizeof *lp);
    if (!p || !c || !np || !nc || !lp) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
    for (size_t i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        if ((s = al_tokenizer_encode(tok, prompts[i], strlen(prompts[i]), true, &p[i], &np[i], err)) != AL_OK) goto done;
        if ((s = al_tokenizer_encode(tok, conts[i], strlen(conts[i]), false, &c[i], &nc[i], err)) != AL_OK) goto done;
        if (!np[i] || !nc[i]) {
            s = al_errorf(err, AL_ERR_RECIPE, "'%s' -> '%s': %s tokenizes to nothing", prompts[i], conts[i],
                          np[i] ? "the continuation" : "the prompt");
            goto done;
        }
        if ((int)(np[i] + nc[i] - 1) > cfg->n_ctx) {
            s = al_errorf(err, AL_ERR_USAGE, "'%s' + '%s' is %zu tokens, longer than the model's context (%d)",
                          prompts[i], conts[i], np[i] + nc[i], cfg->n_ctx);
            goto done;
        }
    }
    for (size_t i0 = 0; i0 < n;) {
        /* a batch: as many pairs as fit max_batch and the logits budget */
        size_t T = 0, b = 0;
        while (i0 + b < n && b < (size_t)max_batch) {
            size_t t = np[i0 + b] + nc[i0 + b] - 1, nt = t > T ? t : T;
            if (b && (b + 1) * nt * V > EVAL_LOGITS_BUDGET) break;
            T = nt;
            b++;
        }
        al_free(tokens); al_free(lens); al_free(logits);
        tokens = al_calloc(b * T, sizeof *tokens);
        lens = al_calloc(b, sizeof *lens);
        logits = al_malloc(b * T * V * sizeof *logits);
        if (!tokens || !lens || !logits) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
        for (size_t k = 0; k < b; k++) {
            size_t i = i0 + k;
            memcpy(tokens + k * T, p[i], np[i] * sizeof *tokens);
            memcpy(tokens + k * T + np[i], c[i], (nc[i] - 1) * sizeof *tokens);
            lens[k] = (int)(np[i] + nc[i] - 1);
        }
        al_forward_args a = {0};
        a.tokens = tokens;
        a.B = (int)b;
        a.T = (int)T;
        a.lens = lens;
        a.logits = logits;
        if ((s = al_model_forward(ws, &a, err)) != AL_OK) goto done;
        for (size_t k = 0; k < b; k++) {
            size_t i = i0 + k;
            out[i].argmax = true;
            out[i].n_tokens = (int)nc[i];
            for (size_t j = 0; j < nc[i]; j++) {
                const float *row = logits + (k * T + np[i] - 1 + j) * V;
                al_log_softmax(lp, row, (int)V);
                out[i].logp += lp[c[i][j]];
                for (size_t v = 0; v < V; v++)
                    if (row[v] > row[c[i][j]]) { out[i].argmax = false; break; }
            }
        }
        i0 += b;
    }
done:
    for (size_t i = 0; p && c && i < n; i++) { al_free(p[i]); al_free(c[i]); }
    al_free(p); al_free(c); al_free(np); al_free(nc);
    al_free(tokens); al_free(lens); al_free(logits); al_free(lp);
    return s;
}

al_status al_eval_continuation(const al_model *m, al_model_ws *ws, const al_tokenizer *tok,
                               const char *prompt, const char *cont, al_cont_score *out, al_error *err)
{
    return al_eval_pairs(m, ws, 1, tok, 1, &prompt, &cont, out, err);
}

al_status al_eval_facts(const al_model *m, al_model_ws *ws, int max_batch, const al_tokenizer *tok,
                        const al_fact *const *facts, size_t n, al_fact_score *out, al_error *err)
{
    size_t np = 0;
    for (size_t i = 0; i < n; i++) np += 1 + (facts[i]->target_true != NULL) + facts[i]->n_alternatives;
    const char **pr = al_malloc((np ? np : 1) * sizeof *pr), **co = al_malloc((np ? np : 1) * sizeof *co);
    al_cont_score *sc = al_malloc((np ? np : 1) * sizeof *sc);
    al_status s = AL_OK;
    if (!pr || !co || !sc) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const al_fact *f = facts[i];
        pr[k] = f->prompt; co[k++] = f->target_new;
        if (f->target_true) { pr[k] = f->prompt; co[k++] = f->target_true; }
        for (size_t a = 0; a < f->n_alternatives; a++) { pr[k] = f->prompt; co[k++] = f->alternatives[a]; }
    }
    if ((s = al_eval_pairs(m, ws, max_batch, tok, np, pr, co, sc, err)) != AL_OK) goto done;
    k = 0;
    for (size_t i = 0; i < n; i++) {
        const al_fact *f = facts[i];
        al_fact_score *o = &out[i];
        memset(o, 0, sizeof *o);
        o->best_alt_logp = -INFINITY;
        o->new_ = sc[k++];
        o->preferred = true;
        if (f->target_true) {
            o->true_ = sc[k++];
            if (o->true_.logp >= o->new_.logp) o->preferred = false;
        }
        for (size_t a = 0; a < f->n_alternatives; a++, k++) {
            if (sc[k].logp > o->best_alt_logp) o->best_alt_logp = sc[k].logp;
            if (sc[k].logp >= o->new_.logp) o->preferred = false;
        }
    }
done:
    al_free(pr);
    al_free(co);
    al_free(sc);
    return s;
}

al_status al_eval_fact(const al_model *m, al_model_ws *ws, const al_tokenizer *tok, const al_fact *f,
                       const char *prompt, al_fact_score *out, al_error *err)
{
    if (!prompt || prompt == f->prompt) return al_eval_facts(m, ws, 1, tok, &f, 1, out, err);
    al_fact g = *f;
    g.prompt = (char *)(uintptr_t)prompt;
    const al_fact *gp = &g;
    return al_eval_facts(m, ws, 1, tok, &gp, 1, out, err);
}

/* Means over one category's prompts; sc holds (new, true) scores per prompt. As ROME's
 * CounterFact evaluation, targets are compared by their mean per-token log-probability
 * (so targets of different lengths compare fairly) and p is exp of that mean. */
static void cf_fold(al_cf_metric *o, const al_cont_score *sc, size_t n)
{
    memset(o, 0, sizeof *o);
    o->n = (int)n;
    for (size_t i = 0; i < n; i++) {
        const al_cont_score *nw = &sc[2 * i], *tr = &sc[2 * i + 1];
        double mn = nw->logp / nw->n_tokens, mt = tr->logp / tr->n_tokens;
        o->new_beats_true += mn > mt;
        o->top1_new += nw->argmax;
        o->top1_true += tr->argmax;
        o->p_new += exp(mn);
        o->p_true += exp(mt);
    }
    if (n) {
        o->new_beats_true /= (double)n;
        o->top1_new /= (double)n;
        o->top1_true /= (double)n;
        o->p_new /= (double)n;
        o->p_true /= (double)n;
    }
}

al_status al_eval_counterfact(const al_model *m, al_model_ws *ws, int max_batch, const al_tokenizer *tok,
                              const al_fact *f, al_cf_metrics *out, al_error *err)
{
    if (!f->target_true) return al_errorf(err, AL_ERR_RECIPE, "'%s': edit metrics need target_true", f->prompt);
    size_t np = 1 + f->n_paraphrases + f->n_neighborhood;
    const char **pr = al_malloc(2 * np * sizeof *pr), **co = al_malloc(2 * np * sizeof *co);
    al_cont_score *sc = al_malloc(2 * np * sizeof *sc);
    al_status s = AL_OK;
    if (!pr || !co || !sc) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
    for (size_t i = 0; i < np; i++) {
        const char *p = i == 0 ? f->prompt : i <= f->n_paraphrases ? f->paraphrases[i - 1]
                                                                     : f->neighborhood[i - 1 - f->n_paraphrases];
        pr[2 * i] = pr[2 * i + 1] = p;
        co[2 * i] = f->target_new;
        co[2 * i + 1] = f->target_true;
    }
    if ((s = al_eval_pairs(m, ws, max_batch, tok, 2 * np, pr, co, sc, err)) != AL_OK) goto done;
    cf_fold(&out->rewrite, sc, 1);
    cf_fold(&out->paraphrase, sc + 2, f->n_paraphrases);
    cf_fold(&out->neighborhood, sc + 2 + 2 * f->n_paraphrases, f->n_neighborhood);
done:
    al_free(pr);
    al_free(co);
    al_free(sc);
    return s;
}

static al_status count_tokens(const al_tokenizer *tok, const char *text, bool special, size_t *n, al_error *err)
{
    int32_t *ids = NULL;
    al_status s = al_tokenizer_encode(tok, text, strlen(text), special, &ids, n, err);
    al_free(ids);
    return s;
}

al_status al_facts_max_tokens(const al_tokenizer *tok, const al_fact *const *facts, size_t n, size_t *max_len,
                              al_error *err)
{
    al_status s = AL_OK;
    *max_len = 0;
    for (size_t i = 0; i < n && s == AL_OK; i++) {
        const al_fact *f = facts[i];
        size_t tmax = 0, k;
        const char *targets[2] = {f->target_new, f->target_true};
        for (int t = 0; t < 2 && s == AL_OK; t++)
            if (targets[t] && (s = count_tokens(tok, targets[t], false, &k, err)) == AL_OK && k > tmax) tmax = k;
        for (size_t a = 0; a < f->n_alternatives && s == AL_OK; a++)
            if ((s = count_tokens(tok, f->alternatives[a], false, &k, err)) == AL_OK && k > tmax) tmax = k;
        size_t np = 1 + f->n_paraphrases + f->n_neighborhood;
        for (size_t p = 0; p < np && s == AL_OK; p++) {
            const char *pr = p == 0 ? f->prompt : p <= f->n_paraphrases ? f->paraphrases[p - 1]
                                                                        : f->neighborhood[p - 1 - f->n_paraphrases];
            if ((s = count_tokens(tok, pr, true, &k, err)) == AL_OK && k + tmax > *max_len) *max_len = k + tmax;
        }
    }
    return s;
}
