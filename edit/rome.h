/* edit/rome.h: ROME rank-one fact editing (Meng et al., "Locating and Editing Factual
 * Associations in GPT", NeurIPS 2022) and r-ROME (Gupta et al., "Rebuilding ROME",
 * arXiv 2403.07175, 2024), on the runtime of edit/model.h. See docs: rome.md §1.
 *
 * One edit (subject s, prompt template p with "{}", new object o), at MLP layer l:
 *   k*  = mean over context templates c_i of key(c_i.format(p).format(s)) at the
 *         subject's last token; key = input of the down projection, R^M.
 *   u   = C^-1 k* / ||C^-1 k*||       (C = E[k k^T], [M,M]; identity without mom2)
 *   v*  = target_init + delta, delta minimising (Adam, projected to a ball)
 *           mean NLL(o | c_i.format(p) + o[:-1])          delta added at the subject
 *         + kl_factor KL(p_delta || p_0) on "{} is a"     last token of every prompt
 *         + v_weight_decay ||delta|| / ||target_init||^2
 *   v_right = (v* - out(k)) / <k, u>, with k, out(k) the key and MLP output of the bare
 *         prompt (ROME) or their template means (r-ROME);
 *   W  += u v_right^T (GPT-2 Conv1D [M,C]) or v_right u^T (Llama Linear [C,M]),
 * so W' k = W k + v_right <u, k> maps k to v*. */
#ifndef AL_ROME_H
#define AL_ROME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"
#include "../io/tokenizer.h"
#include "facts.h"
#include "model.h"

typedef struct {
    int layer;                       /* edited MLP layer, 0-based */
    int v_num_grad_steps;            /* iterations; at most v_num_grad_steps-1 Adam steps */
    double v_lr;                     /* Adam learning rate */
    double v_weight_decay;           /* on ||delta|| / ||target_init||^2 (not squared) */
    double clamp_norm_factor;        /* ||delta|| <= factor * ||target_init|| */
    double kl_factor;                /* weight of KL on the essence prompt */
    double early_stop_loss;          /* stop when the total loss is below this (5e-2) */
    int v_loss_layer;                /* kept for hparams files; unused (loss on logits) */
    bool mom2_adjustment;            /* u = C^-1 k* (needs C); false: u = k* */
    bool r_rome;                     /* r-ROME: template-mean key and output in v_right */
    const char *const *context_templates;  /* each with one "{}"; the first should be
                                              "{}" (target_init is read from it);
                                              NULL: just {"{}"} */
    size_t n_templates;
    const char *kl_prompt;           /* essence prompt with "{}"; NULL: "{} is a" */
} al_rome_params;

/* Defaults (rome.md §2): GPT-2 family as kmeng01/rome gpt2-{medium,large,xl} (layer
 * floor(17 n_layer / 48), 20 steps, lr 0.5, wd 0.5, clamp 4 (3 for gpt2-medium),
 * kl 0.0625, mom2 on); Llama family as EasyEdit llama (layer 5 or n_layer/3 for small
 * models, 25 steps, lr 0.5, wd 1e-3, clamp 4, kl 0.0625, mom2 off). Templates: {"{}"}. */
void al_rome_params_default(al_rome_params *p, const al_model_config *cfg);

typedef struct {
    int M, C;                 /* key width (MLP inner), model width */
    float *k_star;            /* [M] mean key over the context templates */
    float *u;                 /* [M] left vector, unit norm */
    float *target_init;       /* [C] MLP output at the subject in template 0, delta = 0 */
    float *delta;             /* [C] optimised delta */
    float *v_star;            /* [C] target_init + delta */
    float *k_bare, *out_bare; /* [M], [C] key and MLP output used in v_right (bare prompt;
                                 r-ROME: template means) */
    float *v_right;           /* [C] right vector of the update */
    double division_factor;   /* <k_bare, u> */
    double *loss;             /* [steps] total loss per iteration (before its step) */
    int steps;                /* iterations run (loss entries) */
    int adam_steps;           /* updates applied */
    int lookup_bare;          /* token index of the subject's last token, bare prompt */
} al_rome_result;

void al_rome_result_free(al_rome_result *r);     /* frees the arrays; accepts NULL */

/* Cholesky factor of an SPD matrix, F64: C = L L^T, L lower, row-major [K,K] (owned,
 * al_free). Not positive definite: AL_ERR_SHAPE naming the pivot. */
al_status al_rome_cholesky(const double *C, int K, double **L, al_error *err);
/* Solve L L^T x = b in place (b [K]). */
void al_rome_chol_solve(const double *L, int K, double *b);

/* Compute one edit on the model as it is now (earlier edits applied in memory are
 * seen). C_chol: Cholesky factor of C (al_rome_cholesky) [M,M] when mom2_adjustment,
 * NULL = identity. request: templ (or prompt containing subject), subject, target_new
 * (" word"). *out is filled (arrays owned; al_rome_result_free). Errors: subject not
 * in the prompt, empty target, layer out of range, templates without "{}", prompts
 * longer than the context. */
al_status al_rome_compute(al_model *m, const al_tokenizer *tok, const al_fact *request,
                          const al_rome_params *p, const double *C_chol, al_rome_result *out,
                          al_error *err);

/* The edited tensor after al_rome_apply: F32 data owned by the model (valid until
 * al_model_free or the next edit), its checkpoint name and shape as stored. */
typedef struct {
    char name[192];
    const float *data;
    int64_t rows, cols;
} al_rome_tensor;

/* W += u v_right^T in the layer's down projection, in memory (later forwards and
 * edits see it), oriented by architecture: GPT-2 Conv1D [M,C]: W[i][j] += u_i vr_j;
 * Llama Linear [C,M]: W[j][i] += vr_j u_i. Each product is rounded to F32 and then
 * added, as torch's W += u.unsqueeze(1) @ v.unsqueeze(0). out may be NULL. */
al_status al_rome_apply(al_model *m, int layer, const al_rome_result *r, al_rome_tensor *out,
                        al_error *err);

#endif
