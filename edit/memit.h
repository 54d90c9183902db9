/* edit/memit.h: MEMIT batch fact editing over a range of layers (Meng et al.,
 * "Mass-Editing Memory in a Transformer", ICLR 2023, arXiv 2210.07229), as the
 * reference code does it (kmeng01/memit memit_main.py, compute_z.py, compute_ks.py;
 * rome.md §3).
 *
 * n requests, edit layers l_0 < ... < l_{L-1}, z layer = l_{L-1}:
 *   z_r  = target_init_r + delta_r: the block output at the z layer at the subject's
 *          last token, delta optimised exactly as ROME's v* (same loss, Adam, clamp,
 *          early stop) but added to the residual stream after the z layer;
 *          all z are computed on the unedited model.
 *   for i = 0 .. L-1, layer l = l_i, on the model with layers l_0..l_{i-1} edited:
 *     K [n, M]  key at layer l at the subject's last token: mean over the context
 *               templates, "{}" weighted as its own group (mean of group means);
 *     H [n, C]  block output at the z layer of the bare prompts;
 *     R = (Z - H) / (L - i)            each layer takes its share of what remains;
 *     A = lambda C + K^T K [M, M]      C = E[k k^T] of layer l (identity without
 *                                      mom2), lambda = mom2_update_weight, float64;
 *     adj = K A^-1 [n, M]              Cholesky solve, float64;
 *     dW  = R^T adj [C, M], added to the down projection in its file orientation
 *           (GPT-2 Conv1D [M, C]: W += adj^T R; Llama Linear [C, M]: W += R^T adj),
 *           each element computed in float64 and rounded to F32 once. */
#ifndef AL_MEMIT_H
#define AL_MEMIT_H

#include <stdbool.h>

#include "../core/status.h"
#include "../io/tokenizer.h"
#include "facts.h"
#include "model.h"
#include "rome.h"

#define AL_MEMIT_MAX_LAYERS 64

typedef struct {
    al_rome_params z;            /* the z optimisation: v_num_grad_steps, v_lr,
                                    v_weight_decay, clamp_norm_factor, kl_factor,
                                    early_stop_loss, context_templates, kl_prompt,
                                    mom2_adjustment; z.layer and z.r_rome are unused */
    int layers[AL_MEMIT_MAX_LAYERS];
    int n_layers;
    double mom2_update_weight;   /* lambda */
} al_memit_params;

/* Defaults (rome.md §2.2): GPT-2 as kmeng01/memit gpt2-xl (layers 13..17 of 48, scaled
 * to the depth: floor(13 n/48) .. floor(17 n/48); 20 steps, lr 0.5, wd 0.5, clamp 0.75,
 * kl 0.0625, lambda 20000, mom2 on); Llama family as EasyEdit llama-7b (layers 4..8 of
 * 32, scaled; 25 steps, lr 0.5, wd 1e-3, clamp 4, kl 0.0625, lambda 15000, mom2 on).
 * lambda is scaled with the key width M from the reference model's (6400, 11008): a
 * key drawn like the statistics has k^T (lambda C)^-1 k ~ M / lambda, so keeping
 * M / lambda keeps the balance between preserving old keys and writing new ones
 * (with gpt2-xl's 20000 a 512-wide model would absorb ~2.5% of the residual, not ~24%). */
void al_memit_params_default(al_memit_params *p, const al_model_config *cfg);

typedef struct {
    int n, n_layers, M, C, steps_cap;
    int layers[AL_MEMIT_MAX_LAYERS];
    float *target_init;      /* [n, C] block output at the z layer, unedited model */
    float *delta;            /* [n, C] */
    double *loss;            /* [n, steps_cap] total loss per iteration */
    int *steps;              /* [n] iterations run */
    /* per edited layer i: dW_i = resid_i^T adj_i, in float64 */
    double *adj;             /* [n_layers, n, M] K A^-1 */
    double *resid;           /* [n_layers, n, C] R */
    double *resid_norm;      /* [n_layers] ||Z - H|| (Frobenius) before layer i's update */
    al_rome_tensor tensors[AL_MEMIT_MAX_LAYERS];   /* edited weights (model-owned) */
} al_memit_result;

void al_memit_result_free(al_memit_result *r);   /* accepts NULL */

/* Compute and apply a MEMIT batch on the model in memory. C[i] is E[k k^T] of
 * layers[i] as [M, M] float64 (al_stats_mean), or NULL for all when
 * !z.mom2_adjustment (identity). Errors before any model work: a request without a
 * subject in its prompt or with an empty target, layers out of range or not
 * ascending, templates without "{}", invalid hyperparameters, missing statistics.
 * A = lambda C + K^T K not positive definite: AL_ERR_SHAPE naming the layer. */
al_status al_memit_run(al_model *m, const al_tokenizer *tok, const al_fact *reqs, size_t n,
                       const al_memit_params *p, const double *const *C, al_memit_result *out,
                       al_error *err);

#endif
