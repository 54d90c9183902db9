/* edit/edit_internal.h: pieces ROME and MEMIT share (edit/vopt.c): prompts with the
 * subject's last token located, hooked forwards over a batch of them, and the
 * optimisation of the vector added to the residual stream at the subject (ROME's
 * compute_v, MEMIT's compute_z). Not part of the public API. */
#ifndef AL_EDIT_INTERNAL_H
#define AL_EDIT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/status.h"
#include "../io/tokenizer.h"
#include "facts.h"
#include "model.h"
#include "rome.h"

/* One tokenized prompt: ids and the index of the subject's last token. */
typedef struct {
    int32_t *ids;
    int n, idx;
} al_eprompt;

/* Occurrences of "{}" in s. */
int al_edit_count_braces(const char *s);

/* text = ctx.format(templ).format(subject), ctx and templ each with exactly one "{}";
 * tokenized with the tokenizer's specials (Llama's BOS; GPT-2 adds none); idx = the
 * token whose byte span holds the subject's last byte (rome.md §6). */
al_status al_eprompt_make(const al_tokenizer *tok, const char *ctx, const char *templ,
                          const char *subject, al_eprompt *out, al_error *err);
void al_eprompts_free(al_eprompt *p, size_t n);      /* frees ids and the array */

/* The request's template with "{}" for the subject: req->templ, or the prompt with the
 * subject's first occurrence replaced (then *own holds it; al_free). Checks: a subject,
 * a non-empty target, the subject in the prompt, exactly one "{}". `who` prefixes
 * messages ("rome", "memit"). */
al_status al_edit_request_templ(const al_fact *req, const char *who, const char **templ,
                                char **own, al_error *err);

/* Forward B rows (right-padded to the longest) with the hook at each row's subject
 * token at `layer`; optional outputs per row: key [B,M], mlp_out [B,C], block_out
 * [B,C], last_logits [B,V]. lens NULL = the rows' own lengths. */
al_status al_edit_run_rows(al_model_ws *ws, const al_eprompt *pr, int B, const int *lens,
                           int layer, float *key, float *mlp_out, float *block_out,
                           float *last_logits, al_error *err);

/* The delta optimisation (rome.md §1.5, §3.2). pv[0..nt-1]: rewriting prompts (context
 * ++ prompt ++ target[:-1]), pv[nt]: the KL prompt; tgt [T] the target ids. The delta
 * is added at `layer` to the residual stream at every prompt's subject token (the MLP
 * output and the block output differ by the residual, so adding to either is the same
 * change); target_init [C] is the MLP output (ROME) or, with block_init, the block
 * output (MEMIT) of pv[0] at its subject token. Loss, Adam, clamp and early stop as in
 * rome.h. Outputs: target_init [C], delta [C], loss [p->v_num_grad_steps], *steps,
 * *adam_steps. ws must hold nt+1 rows of the longest prompt. */
al_status al_edit_optimize(al_model_ws *ws, const al_eprompt *pv, int nt, const int32_t *tgt,
                           int T, int layer, bool block_init, const al_rome_params *p,
                           float *target_init, float *delta, double *loss, int *steps,
                           int *adam_steps, al_error *err);

/* The context templates and KL prompt of p with their defaults ({"{}"}, "{} is a"),
 * checked together with the optimisation's hyperparameters (steps >= 1, lr > 0,
 * clamp > 0, wd >= 0, kl >= 0; each template and the KL prompt with exactly one "{}").
 * `who` prefixes messages. */
al_status al_edit_vopt_setup(const al_rome_params *p, const char *who, const char *const **ctxs,
                             int *nt, const char **kl_prompt, al_error *err);

double al_edit_dot(const float *a, const float *b, int n);

#endif
