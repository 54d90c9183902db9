/* edit/eval.h: how well a model knows a fact.
 *
 * For a prompt and a continuation c = (c_1..c_m) (tokenized separately, the prompt with
 * the tokenizer's special tokens, the continuation without):
 *   log P(c | prompt) = sum_i log softmax(logits at the token before c_i)[c_i]
 * evaluated with teacher forcing in one forward over prompt + c. A fact is "known" when
 * every c_i is the argmax at its position (the example models' README metric), and
 * "preferred" when target_new has the highest log-probability among target_new,
 * target_true and the alternatives. */
#ifndef AL_EDIT_EVAL_H
#define AL_EDIT_EVAL_H

#include <stdbool.h>

#include "../core/status.h"
#include "facts.h"
#include "model.h"
#include "../io/tokenizer.h"

typedef struct {
    double logp;        /* log P(continuation | prompt), natural log */
    int n_tokens;
    bool argmax;        /* every continuation token is the argmax (teacher forcing) */
} al_cont_score;

/* Score n (prompt, continuation) pairs in batched forwards: out[i] for pair i. The
 * workspace's max_batch bounds the batch; logits memory is kept under about 256 MB. */
al_status al_eval_pairs(const al_model *m, al_model_ws *ws, int max_batch, const al_tokenizer *tok, size_t n,
                        const char *const *prompts, const char *const *conts, al_cont_score *out, al_error *err);

/* Score `cont` after `prompt`. ws must hold max_seq >= the token count. */
al_status al_eval_continuation(const al_model *m, al_model_ws *ws, const al_tokenizer *tok,
                               const char *prompt, const char *cont, al_cont_score *out, al_error *err);

typedef struct {
    al_cont_score new_;       /* target_new */
    al_cont_score true_;      /* target_true (n_tokens 0 when absent) */
    bool preferred;           /* new beats true and every alternative */
    double best_alt_logp;     /* -INFINITY when there are no alternatives */
} al_fact_score;

/* The longest prompt + continuation, in tokens, over the facts' prompts, paraphrases and
 * neighbourhood prompts with any of their targets: what a workspace needs to hold. */
al_status al_facts_max_tokens(const al_tokenizer *tok, const al_fact *const *facts, size_t n, size_t *max_len,
                              al_error *err);

/* Score n facts, batching every candidate continuation of all of them. */
al_status al_eval_facts(const al_model *m, al_model_ws *ws, int max_batch, const al_tokenizer *tok,
                        const al_fact *const *facts, size_t n, al_fact_score *out, al_error *err);

/* prompt: NULL for the fact's own prompt, or a paraphrase/neighbour prompt. */
al_status al_eval_fact(const al_model *m, al_model_ws *ws, const al_tokenizer *tok, const al_fact *f,
                       const char *prompt, al_fact_score *out, al_error *err);

/* CounterFact-style metrics of one edit request (ROME's eval, rome.md §5.1), each a mean
 * over the prompts of its category: the request prompt ("rewrite"), the paraphrases,
 * the neighbourhood prompts (other subjects whose true object is target_true).
 *   new_beats_true: the mean per-token log-probability of target_new exceeds
 *   target_true's; top1_new/top1_true: every token of that target is the argmax
 *   (teacher forcing); p_new/p_true: exp(mean per-token log-probability). */
typedef struct {
    double new_beats_true, top1_new, top1_true, p_new, p_true;
    int n;                       /* prompts */
} al_cf_metric;

typedef struct { al_cf_metric rewrite, paraphrase, neighborhood; } al_cf_metrics;

/* Needs target_true. ws must allow a batch of max_batch rows. */
al_status al_eval_counterfact(const al_model *m, al_model_ws *ws, int max_batch, const al_tokenizer *tok,
                              const al_fact *f, al_cf_metrics *out, al_error *err);

#endif
