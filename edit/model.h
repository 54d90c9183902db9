/* edit/model.h: a CPU runtime for decoder-only transformers, enough for ROME-style
 * editing: batched causal forward with a KV cache, hooks at one MLP layer, a forward
 * that resumes after the hooked layer, and an activation-only backward from a
 * next-token loss to the vector added at the hooked layer.
 *
 * Architectures (config.json "model_type"):
 *   gpt2                     pre-LayerNorm, learned positions, Conv1D weights [in, out],
 *                            fused c_attn, gelu_new / gelu, head tied to wte unless
 *                            lm_head.weight is stored.
 *   llama, mistral, qwen2    pre-RMSNorm, rotate_half RoPE (plain, linear, dynamic,
 *                            llama3 scaling), grouped-query attention, SwiGLU, Linear
 *                            weights [out, in]; optional q/k/v biases (Qwen2) are used
 *                            when stored. Mistral's sliding window is honoured by
 *                            capping the context at the window.
 *   anything else            AL_ERR_UNSUPPORTED naming the model_type.
 * "dynamic" (NTK) RoPE scaling only changes RoPE beyond max_position_embeddings,
 * which is also the context limit here, so within the limit it is plain RoPE, as in
 * transformers.
 *
 * Weights. Tensors come from al_ckpt (safetensors single/sharded, HDF5). A tensor
 * stored as F32 in a mappable file is used in place (zero copy). Others are, by
 * default, converted to F32 once at open (memory: 4 bytes per parameter for those
 * tensors; a bf16 model thus costs 2x its file size). With opts.per_layer_convert
 * they stay in their stored dtype (mapped, or read once as stored) and each layer's
 * weights are converted into one F32 scratch buffer per workspace when the layer runs
 * (memory: the stored size plus the largest layer, or the head, in F32; costs a
 * conversion pass per layer per forward).
 *
 * Shapes: B sequences x T new tokens, C = hidden width, M = MLP inner width,
 * V = vocabulary. Positions of row b in a call are past[b] .. past[b]+lens[b]-1, past
 * being what the KV cache already holds for that row (0 for a fresh call).
 *
 * Threading: OpenMP inside the kernels and OpenBLAS; a model is read-only after open
 * and may be shared by several workspaces used from different threads. */
#ifndef AL_MODEL_H
#define AL_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

typedef enum { AL_ARCH_GPT2 = 1, AL_ARCH_LLAMA = 2 } al_arch;
typedef enum { AL_ROPE_NONE = 0, AL_ROPE_LINEAR, AL_ROPE_DYNAMIC, AL_ROPE_LLAMA3 } al_rope_scaling;

typedef struct {
    al_arch arch;
    char model_type[32];
    int n_layer, n_embd, n_head, n_kv_head, head_dim, n_inner, vocab_size;
    int n_ctx;                 /* n_positions / max_position_embeddings (or sliding window) */
    float norm_eps;            /* layer_norm_epsilon / rms_norm_eps */
    bool gelu_exact;           /* GPT-2 activation_function "gelu" (erf) vs gelu_new (tanh) */
    bool tied;                 /* head shares the input embedding */
    /* RoPE (Llama family) */
    double rope_theta;
    al_rope_scaling rope_scaling;
    double rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_pos;
} al_model_config;

/* With opts NULL, non-F32 weights are converted once if their F32 copy fits in this
 * many bytes, else kept as stored and converted per layer. */
#define AL_MODEL_CONVERT_BUDGET ((uint64_t)4 << 30)

typedef struct {
    bool per_layer_convert;    /* keep non-F32 weights as stored; convert per layer */
    bool naive_matmul;         /* reference matmul loop instead of OpenBLAS (tests, bench) */
} al_model_opts;

typedef struct al_model al_model;
typedef struct al_model_ws al_model_ws;

/* Open an HF model directory (config.json + weights). opts may be NULL (defaults).
 * Errors name the file and the key or tensor: missing/invalid config keys
 * (AL_ERR_FORMAT), unknown model_type or activation (AL_ERR_UNSUPPORTED), absent
 * tensors (AL_ERR_NOTFOUND), shapes that disagree with the config, e.g. an embedding
 * whose rows are not vocab_size (AL_ERR_SHAPE). On success free with al_model_free. */
al_status al_model_open(al_model **out, const char *dir, const al_model_opts *opts,
                        al_error *err);
void al_model_free(al_model *m);                       /* accepts NULL */
const al_model_config *al_model_cfg(const al_model *m);

/* A workspace: KV cache, activations of the last call (for the backward), scratch.
 * Capacity: up to max_batch rows and max_seq positions per row (past + new tokens;
 * max_seq <= n_ctx). Owned; free with al_model_ws_free. */
al_status al_model_ws_new(al_model_ws **out, const al_model *m, int max_batch, int max_seq,
                          al_error *err);
void al_model_ws_free(al_model_ws *ws);                /* accepts NULL */
/* Tokens the KV cache holds for row b (0 after al_model_ws_new). */
int al_model_ws_cached(const al_model_ws *ws, int b);
/* The model the workspace runs. */
const al_model *al_model_ws_model(const al_model_ws *ws);

/* Hook at MLP layer `layer` (ROME: GPT-2 transformer.h.l.mlp, Llama model.layers.l.mlp),
 * at n_pos positions (pos_b[i], pos_t[i]) of the call's token grid (t < lens[b]). */
typedef struct {
    int layer;              /* 0..n_layer-1; a hook with layer < 0 is ignored */
    int n_pos;
    const int *pos_b, *pos_t;
    float *key;             /* out [n_pos, M] or NULL: input of the down projection
                               (GPT-2 gelu(c_fc(ln_2 h)), Llama silu(gate)*up) */
    float *mlp_out;         /* out [n_pos, C] or NULL: MLP output (bias included), before delta */
    float *block_out;       /* out [n_pos, C] or NULL: the block's output (the residual
                               stream h_{l+1}, MEMIT's layer output), before delta */
    const float *delta;     /* [C] or NULL: added to the MLP output at every hook position */
} al_hook;

typedef struct {
    const int32_t *tokens;  /* [B, T]; ids at t >= lens[b] are ignored (padding) */
    int B, T;
    const int *lens;        /* [B] valid tokens per row (1..T), NULL = all T */
    bool append;            /* continue each row after what the KV cache holds;
                               false starts fresh (cache emptied) */
    const al_hook *hook;    /* NULL: none */
    float *logits;          /* out [B, T, V] or NULL (rows at t >= lens[b] unspecified) */
    float *last_logits;     /* out [B, V] at t = lens[b]-1, or NULL */
    bool stop_after_hook;   /* only the blocks up to the hook's layer (statistics): no
                               logits, and the workspace then allows only a fresh forward */
} al_forward_args;

/* Run the forward; the KV cache of row b then holds past[b] + lens[b] tokens. Errors:
 * B/T beyond the workspace, token ids outside [0, V), a row longer than the context
 * (past + len > n_ctx) or than the workspace, hook positions out of range. */
al_status al_model_forward(al_model_ws *ws, const al_forward_args *a, al_error *err);

/* Re-run the last call from block hook.layer+1 on, with `delta` (NULL = zero) added
 * to the hooked MLP output instead of the hook's delta: blocks 0..layer are not
 * recomputed (their output without delta was saved by the last al_model_forward,
 * which must have had a hook). logits/last_logits as in al_forward_args. */
al_status al_model_forward_from(al_model_ws *ws, const float *delta, float *logits,
                                float *last_logits, al_error *err);

/* A next-token loss on the last call's positions:
 *   loss = (1/n_nll) sum_i -log p(target_i | b_i, t_i)
 *        + kl_weight * (1/n_kl) sum_j KL(p_j || p_ref_j),
 * KL(p || q) = sum_v p_v (log p_v - log q_v), with p the model's distribution at
 * (kl_b[j], kl_t[j]) and log q given in kl_ref_logp. This is ROME's compute_v KL term
 * (torch kl_div(logp0, logp, log_target=True): current distribution first). */
typedef struct {
    int n_nll;
    const int *nll_b, *nll_t;
    const int32_t *nll_target;
    int n_kl;
    const int *kl_b, *kl_t;
    const float *kl_ref_logp;   /* [n_kl, V] reference log-probabilities */
    double kl_weight;
} al_loss_spec;

/* Evaluate the loss from the last forward (either kind) into *loss (double). When
 * d_delta is non-NULL, also back-propagate it through the final norm, the head and
 * blocks n_layer-1 .. hook.layer+1 (inputs only, no weight gradients) and write
 * d loss / d delta [C] (the delta added at every hook position). */
al_status al_model_loss(al_model_ws *ws, const al_loss_spec *spec, double *loss,
                        float *d_delta, al_error *err);

/* For weight edits (ROME): a writable F32 pointer to the MLP down projection of
 * `layer` (GPT-2 mlp.c_proj [M, C] Conv1D, Llama mlp.down_proj [C, M] Linear: *rows x
 * *cols, row-major), and its checkpoint name (NULL name skips it). The first call per
 * layer makes a private F32 copy that every later forward uses, so changes written
 * through *data take effect at once. This mutates the model: no forward may run
 * concurrently. Errors: layer out of range, out of memory. */
al_status al_model_mlp_down_weight(al_model *m, int layer, float **data, int64_t *rows,
                                   int64_t *cols, char *name, size_t name_cap, al_error *err);

/* log-softmax of one row of V logits into out (double accumulation). */
void al_log_softmax(float *out, const float *logits, int V);

#endif
