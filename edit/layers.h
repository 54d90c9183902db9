/* edit/layers.h: forward and activation-backward kernels of the transformer runtime.
 *
 * llm.c-shaped: outputs first, then const inputs, then sizes. Shape legend:
 *   B = batch, T = new tokens per sequence, N = B*T rows, C = model width,
 *   M = MLP inner width, H = query heads, HK = key/value heads, D = head dim,
 *   S = KV capacity per sequence (past + T <= S), V = vocabulary.
 * Backward kernels compute input gradients only (no weight gradients); those marked
 * "+=" accumulate into their output so residual branches can be summed.
 * All math is IEEE float32 (accumulations noted where wider); OpenMP loops run over
 * independent outputs with schedule(static), so results do not depend on the thread
 * count. */
#ifndef AL_LAYERS_H
#define AL_LAYERS_H

#include <stdbool.h>

/* Linear layer y = x W (+ b). `w_io` says the weight layout:
 *   true : W is [IC, ldw] "in x out" (GPT-2 Conv1D), columns 0..OC-1 used;
 *   false: W is [OC, ldw] "out x in" (torch Linear), y = x W^T, ldw >= IC.
 * ldw lets a fused weight (GPT-2 c_attn [C, 3C]) be used as three matrices.
 * naive = true uses the reference triple loop instead of cblas_sgemm. */
void al_matmul_forward(float *out, const float *inp, const float *w, int ldw, bool w_io,
                       const float *bias, int N, int IC, int OC, bool naive);
/* dinp[N,IC] += dout[N,OC] · (dy/dx), i.e. dout W^T for "in x out", dout W for "out x in". */
void al_matmul_backward_inp(float *dinp, const float *dout, const float *w, int ldw, bool w_io,
                            int N, int IC, int OC, bool naive);

/* LayerNorm (GPT-2): out = (x - mean) * rstd * w + b, rstd = 1/sqrt(var + eps),
 * var the biased variance. mean/rstd [N] are saved for the backward. */
void al_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *w, const float *b, int N, int C, float eps);
/* dinp += dL/dx given dout; inp, w, mean, rstd from the forward. */
void al_layernorm_backward(float *dinp, const float *dout, const float *inp, const float *w,
                           const float *mean, const float *rstd, int N, int C);

/* RMSNorm (Llama): out = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps). */
void al_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w,
                        int N, int C, float eps);
void al_rmsnorm_backward(float *dinp, const float *dout, const float *inp, const float *w,
                         const float *rstd, int N, int C);

/* GELU on n elements: tanh approximation (gelu_new, GPT-2) or exact erf form. */
void al_gelu_forward(float *out, const float *inp, long n, bool exact);
/* dinp = gelu'(inp) * dout (overwrites). */
void al_gelu_backward(float *dinp, const float *inp, const float *dout, long n, bool exact);

/* SwiGLU (Llama MLP): out = silu(gate) * up. */
void al_swiglu_forward(float *out, const float *gate, const float *up, long n);
/* dgate = dout * up * silu'(gate), dup = dout * silu(gate) (both overwritten). */
void al_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                        const float *up, long n);

/* rotate_half RoPE (HF Llama) in place on x [N, H, D]: for i < D/2, with
 * a = pos[n] * inv_freq[i]:
 *   x'[i]       = x[i] cos a - x[i+D/2] sin a
 *   x'[i+D/2]   = x[i+D/2] cos a + x[i] sin a
 * Backward (inverse = rotation by -a) is the same call with inverse = true. */
void al_rope_apply(float *x, const int *pos, const float *inv_freq, int N, int H, int D,
                   bool inverse);

/* Causal multi-head attention with grouped KV heads (head h reads KV head h / (H/HK)).
 * q [B,T,H*D] (already rotated), kc/vc [B,HK,S,D] hold keys/values of absolute
 * positions 0..past[b]+T-1; query t of row b sits at absolute position past[b]+t and
 * attends to 0..past[b]+t. Scale 1/sqrt(D).
 * out [B,T,H*D]; att [B,H,T,S] the softmax probabilities (row tail beyond the
 * causal limit is left unwritten). */
void al_attention_forward(float *out, float *att, const float *q, const float *kc,
                          const float *vc, const int *past, int B, int T, int S, int H,
                          int HK, int D);
/* dq [B,T,H*D] (overwritten); dk, dv [B,HK,S,D] += gradients for positions
 * past[b]..past[b]+T-1 only (cached earlier positions are constants). Parallel over
 * (b, kv head), so each thread owns its dk/dv slice. */
void al_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                           const float *att, const float *q, const float *kc,
                           const float *vc, const int *past, int B, int T, int S, int H,
                           int HK, int D);

/* out[i] = a[i] + b[i] (out may alias a). */
void al_residual_forward(float *out, const float *a, const float *b, long n);

#endif
