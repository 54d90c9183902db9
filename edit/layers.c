/* edit/layers.c: forward and input-backward kernels (shapes in layers.h).
 *
 * Each backward sits next to its forward and restates the forward formula it
 * differentiates. The GEMMs go to OpenBLAS (cblas_sgemm); al_matmul_* with
 * naive = true is the reference loop the tests compare against. OpenMP lives here
 * only; every parallel loop is over independent outputs, schedule(static). */
#include "layers.h"

#include <cblas.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

/* ---------------------------------------------------------------------------------
 * matmul: GPT-2 Conv1D (W [in, out], y = xW + b) and torch Linear (W [out, in],
 * y = xW^T + b). */

#define MM_OB 64   /* output columns per naive work item (a register/L1 tile) */

static void matmul_naive(float *out, const float *inp, const float *w, int ldw, bool w_io,
                         const float *bias, int N, int IC, int OC)
{
    int nob = (OC + MM_OB - 1) / MM_OB;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++) {
        for (int ob = 0; ob < nob; ob++) {
            float acc[MM_OB];
            int o0 = ob * MM_OB, on = OC - o0 < MM_OB ? OC - o0 : MM_OB;
            const float *x = inp + (size_t)n * IC;
            for (int o = 0; o < on; o++) acc[o] = bias ? bias[o0 + o] : 0.0f;
            if (w_io) {
                for (int i = 0; i < IC; i++) {
                    const float *wr = w + (size_t)i * ldw + o0;
                    float a = x[i];
                    for (int o = 0; o < on; o++) acc[o] += a * wr[o];
                }
            } else {
                for (int o = 0; o < on; o++) {
                    const float *wr = w + (size_t)(o0 + o) * ldw;
                    float s = 0.0f;
                    for (int i = 0; i < IC; i++) s += x[i] * wr[i];
                    acc[o] += s;
                }
            }
            memcpy(out + (size_t)n * OC + o0, acc, (size_t)on * sizeof(float));
        }
    }
}

void al_matmul_forward(float *out, const float *inp, const float *w, int ldw, bool w_io,
                       const float *bias, int N, int IC, int OC, bool naive)
{
    // out [N,OC], inp [N,IC], w [IC,ldw] (io) or [OC,ldw] (oi), bias [OC] or NULL
    if (N <= 0 || OC <= 0) return;
    if (naive) { matmul_naive(out, inp, w, ldw, w_io, bias, N, IC, OC); return; }
    float beta = 0.0f;
    if (bias) {
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, bias, (size_t)OC * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, w_io ? CblasNoTrans : CblasTrans, N, OC, IC,
                1.0f, inp, IC, w, ldw, beta, out, OC);
}

void al_matmul_backward_inp(float *dinp, const float *dout, const float *w, int ldw, bool w_io,
                            int N, int IC, int OC, bool naive)
{
    // forward: y[n,o] = sum_i x[n,i] W(i,o)  =>  dx[n,i] += sum_o dy[n,o] W(i,o)
    // io: W(i,o) = w[i*ldw+o]; oi: W(i,o) = w[o*ldw+i]
    if (N <= 0 || IC <= 0) return;
    if (!naive) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, w_io ? CblasTrans : CblasNoTrans, N, IC, OC,
                    1.0f, dout, OC, w, ldw, 1.0f, dinp, IC);
        return;
    }
    int nib = (IC + MM_OB - 1) / MM_OB;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++) {
        for (int ib = 0; ib < nib; ib++) {
            float acc[MM_OB];
            int i0 = ib * MM_OB, in = IC - i0 < MM_OB ? IC - i0 : MM_OB;
            const float *dy = dout + (size_t)n * OC;
            for (int i = 0; i < in; i++) acc[i] = 0.0f;
            if (w_io) {
                for (int i = 0; i < in; i++) {
                    const float *wr = w + (size_t)(i0 + i) * ldw;
                    float s = 0.0f;
                    for (int o = 0; o < OC; o++) s += dy[o] * wr[o];
                    acc[i] = s;
                }
            } else {
                for (int o = 0; o < OC; o++) {
                    const float *wr = w + (size_t)o * ldw + i0;
                    float d = dy[o];
                    for (int i = 0; i < in; i++) acc[i] += d * wr[i];
                }
            }
            float *dx = dinp + (size_t)n * IC + i0;
            for (int i = 0; i < in; i++) dx[i] += acc[i];
        }
    }
}

/* ---------------------------------------------------------------------------------
 * LayerNorm (GPT-2 ln_1, ln_2, ln_f). Row statistics accumulated in double. */

void al_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *w, const float *b, int N, int C, float eps)
{
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        double m = 0.0, v = 0.0;
        for (int i = 0; i < C; i++) m += x[i];
        m /= C;
        for (int i = 0; i < C; i++) { double d = x[i] - m; v += d * d; }
        v /= C;
        float s = (float)(1.0 / sqrt(v + eps));
        float mf = (float)m;
        for (int i = 0; i < C; i++) y[i] = (x[i] - mf) * s * w[i] + b[i];
        mean[n] = mf;
        rstd[n] = s;
    }
}

void al_layernorm_backward(float *dinp, const float *dout, const float *inp, const float *w,
                           const float *mean, const float *rstd, int N, int C)
{
    // forward: xh = (x - mean) * rstd; y = xh * w + b
    // dxh = dy * w;  dx = rstd * (dxh - mean(dxh) - xh * mean(dxh * xh))
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        float m = mean[n], s = rstd[n];
        double a = 0.0, bsum = 0.0;
        for (int i = 0; i < C; i++) {
            float dxh = dy[i] * w[i], xh = (x[i] - m) * s;
            a += dxh;
            bsum += (double)dxh * xh;
        }
        float ma = (float)(a / C), mb = (float)(bsum / C);
        for (int i = 0; i < C; i++) {
            float dxh = dy[i] * w[i], xh = (x[i] - m) * s;
            dx[i] += s * (dxh - ma - xh * mb);
        }
    }
}

/* ---------------------------------------------------------------------------------
 * RMSNorm (Llama input_layernorm, post_attention_layernorm, model.norm). */

void al_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w,
                        int N, int C, float eps)
{
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        double ss = 0.0;
        for (int i = 0; i < C; i++) ss += (double)x[i] * x[i];
        float s = (float)(1.0 / sqrt(ss / C + eps));
        for (int i = 0; i < C; i++) y[i] = w[i] * (x[i] * s);
        rstd[n] = s;
    }
}

void al_rmsnorm_backward(float *dinp, const float *dout, const float *inp, const float *w,
                         const float *rstd, int N, int C)
{
    // forward: y = w * x * r, r = (mean(x^2) + eps)^(-1/2)
    // dx = r * (dy*w) - x * r^3 * mean(dy*w*x)
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        float r = rstd[n];
        double a = 0.0;
        for (int i = 0; i < C; i++) a += (double)dy[i] * w[i] * x[i];
        float k = (float)(a / C) * r * r * r;
        for (int i = 0; i < C; i++) dx[i] += r * dy[i] * w[i] - x[i] * k;
    }
}

/* ---------------------------------------------------------------------------------
 * GELU: gelu_new(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))  (GPT-2)
 *       gelu(x)     = 0.5 x (1 + erf(x / sqrt(2)))                     (exact) */

#define GELU_K 0.7978845608028654f   /* sqrt(2/pi) */

void al_gelu_forward(float *out, const float *inp, long n, bool exact)
{
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = exact ? 0.5f * x * (1.0f + erff(x * 0.70710678118654752f))
                       : 0.5f * x * (1.0f + tanhf(GELU_K * (x + 0.044715f * x * x * x)));
    }
}

void al_gelu_backward(float *dinp, const float *inp, const float *dout, long n, bool exact)
{
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        float x = inp[i], g;
        if (exact) {
            // d/dx = Phi(x) + x phi(x)
            g = 0.5f * (1.0f + erff(x * 0.70710678118654752f)) +
                x * 0.3989422804014327f * expf(-0.5f * x * x);
        } else {
            // d/dx = 0.5 (1 + th) + 0.5 x (1 - th^2) k (1 + 3 * 0.044715 x^2)
            float th = tanhf(GELU_K * (x + 0.044715f * x * x * x));
            g = 0.5f * (1.0f + th) +
                0.5f * x * (1.0f - th * th) * GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        }
        dinp[i] = g * dout[i];
    }
}

/* ---------------------------------------------------------------------------------
 * SwiGLU: out = silu(g) * u, silu(g) = g * sigmoid(g). */

void al_swiglu_forward(float *out, const float *gate, const float *up, long n)
{
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void al_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                        const float *up, long n)
{
    // silu'(g) = s (1 + g (1 - s)), s = sigmoid(g)
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        float g = gate[i], s = 1.0f / (1.0f + expf(-g));
        dgate[i] = dout[i] * up[i] * s * (1.0f + g * (1.0f - s));
        dup[i] = dout[i] * g * s;
    }
}

/* ---------------------------------------------------------------------------------
 * RoPE, rotate_half pairing (i, i + D/2). Angles in double, rounded once, close to
 * HF's float32 cos/sin of pos * inv_freq. */

void al_rope_apply(float *x, const int *pos, const float *inv_freq, int N, int H, int D,
                   bool inverse)
{
    int h2 = D / 2;
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < h2; i++) {
            float ang = (float)pos[n] * inv_freq[i];
            float c = cosf(ang), s = sinf(ang);
            if (inverse) s = -s;
            for (int h = 0; h < H; h++) {
                float *v = x + ((size_t)n * H + h) * D;
                float a = v[i], b = v[i + h2];
                v[i] = a * c - b * s;
                v[i + h2] = b * c + a * s;
            }
        }
    }
}

/* ---------------------------------------------------------------------------------
 * Causal attention with grouped KV heads. */

void al_attention_forward(float *out, float *att, const float *q, const float *kc,
                          const float *vc, const int *past, int B, int T, int S, int H,
                          int HK, int D)
{
    int rep = H / HK;
    float scale = 1.0f / sqrtf((float)D);
    #pragma omp parallel for collapse(3) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            for (int t = 0; t < T; t++) {
                int p = past[b] + t;                       // absolute position of the query
                const float *qv = q + ((size_t)b * T + t) * H * D + (size_t)h * D;
                const float *kb = kc + ((size_t)b * HK + h / rep) * S * D;
                const float *vb = vc + ((size_t)b * HK + h / rep) * S * D;
                float *a = att + (((size_t)b * H + h) * T + t) * S;
                float mx = -INFINITY;
                for (int s = 0; s <= p; s++) {
                    const float *kv = kb + (size_t)s * D;
                    float dot = 0.0f;
                    for (int i = 0; i < D; i++) dot += qv[i] * kv[i];
                    a[s] = dot * scale;
                    if (a[s] > mx) mx = a[s];
                }
                float sum = 0.0f;
                for (int s = 0; s <= p; s++) { a[s] = expf(a[s] - mx); sum += a[s]; }
                float inv = 1.0f / sum;
                for (int s = 0; s <= p; s++) a[s] *= inv;
                float *o = out + ((size_t)b * T + t) * H * D + (size_t)h * D;
                for (int i = 0; i < D; i++) o[i] = 0.0f;
                for (int s = 0; s <= p; s++) {
                    const float *vv = vb + (size_t)s * D;
                    for (int i = 0; i < D; i++) o[i] += a[s] * vv[i];
                }
            }
        }
    }
}

void al_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                           const float *att, const float *q, const float *kc,
                           const float *vc, const int *past, int B, int T, int S, int H,
                           int HK, int D)
{
    // forward: z[s] = scale q.k[s]; a = softmax(z); o = sum_s a[s] v[s]
    // da[s] = do.v[s];  dz[s] = a[s] (da[s] - sum_r a[r] da[r])
    // dq = scale sum_s dz[s] k[s];  dk[s] += scale dz[s] q;  dv[s] += a[s] do
    int rep = H / HK;
    float scale = 1.0f / sqrtf((float)D);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int kh = 0; kh < HK; kh++) {
            const float *kb = kc + ((size_t)b * HK + kh) * S * D;
            const float *vb = vc + ((size_t)b * HK + kh) * S * D;
            float *dkb = dk + ((size_t)b * HK + kh) * S * D;
            float *dvb = dv + ((size_t)b * HK + kh) * S * D;
            int p0 = past[b];
            for (int h = kh * rep; h < (kh + 1) * rep; h++) {
                for (int t = 0; t < T; t++) {
                    int p = p0 + t;
                    size_t row = ((size_t)b * T + t) * H * D + (size_t)h * D;
                    const float *qv = q + row, *dov = dout + row;
                    float *dqv = dq + row;
                    const float *a = att + (((size_t)b * H + h) * T + t) * S;
                    float dot_ada = 0.0f;
                    for (int s = 0; s <= p; s++) {
                        const float *vv = vb + (size_t)s * D;
                        float da = 0.0f;
                        for (int i = 0; i < D; i++) da += dov[i] * vv[i];
                        dot_ada += a[s] * da;
                    }
                    for (int i = 0; i < D; i++) dqv[i] = 0.0f;
                    for (int s = 0; s <= p; s++) {
                        const float *vv = vb + (size_t)s * D, *kv = kb + (size_t)s * D;
                        float da = 0.0f;
                        for (int i = 0; i < D; i++) da += dov[i] * vv[i];
                        float dz = a[s] * (da - dot_ada) * scale;
                        for (int i = 0; i < D; i++) dqv[i] += dz * kv[i];
                        if (s >= p0) {
                            float *dkv = dkb + (size_t)s * D, *dvv = dvb + (size_t)s * D;
                            for (int i = 0; i < D; i++) {
                                dkv[i] += dz * qv[i];
                                dvv[i] += a[s] * dov[i];
                            }
                        }
                    }
                }
            }
        }
    }
}

void al_residual_forward(float *out, const float *a, const float *b, long n)
{
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) out[i] = a[i] + b[i];
}
