/* bench/bench_forward.c: tokens/s of the runtime's forward pass on a GPT-2-medium-shaped
 * model (24 layers, n_embd 1024, 16 heads, n_inner 4096, vocab 50257, 355M parameters)
 * with random F32 weights, batch 1 x 64 tokens (full logits), at 1 and 2 threads, with
 * OpenBLAS and with the reference OpenMP matmul loop.
 *
 * Usage: bench_forward [DIR] [REPS]   (DIR default /tmp/alloy-bench-gpt2m; it is created
 * once with a 1.4 GB model.safetensors and reused) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <cblas.h>

#include "../core/alloc.h"
#include "../core/rng.h"
#include "../edit/model.h"
#include "../io/checkpoint.h"

enum { L = 24, C = 1024, H = 16, M = 4096, V = 50257, P = 1024, T = 64 };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct { char name[96]; int ndim; int64_t shape[2]; int kind; } tdesc;  /* kind 0 rand, 1 ones, 2 zeros */

static int describe(tdesc *d)
{
    int n = 0;
#define T2(nm, a, b, k) do { snprintf(d[n].name, sizeof d[n].name, "%s", nm); d[n].ndim = 2; \
        d[n].shape[0] = a; d[n].shape[1] = b; d[n].kind = k; n++; } while (0)
#define T1(nm, a, k) do { snprintf(d[n].name, sizeof d[n].name, "%s", nm); d[n].ndim = 1; \
        d[n].shape[0] = a; d[n].kind = k; n++; } while (0)
    char s[96];
    T2("transformer.wte.weight", V, C, 0);
    T2("transformer.wpe.weight", P, C, 0);
    for (int l = 0; l < L; l++) {
#define NM(x) (snprintf(s, sizeof s, "transformer.h.%d.%s", l, x), s)
        T1(NM("ln_1.weight"), C, 1); T1(NM("ln_1.bias"), C, 2);
        T2(NM("attn.c_attn.weight"), C, 3 * C, 0); T1(NM("attn.c_attn.bias"), 3 * C, 2);
        T2(NM("attn.c_proj.weight"), C, C, 0); T1(NM("attn.c_proj.bias"), C, 2);
        T1(NM("ln_2.weight"), C, 1); T1(NM("ln_2.bias"), C, 2);
        T2(NM("mlp.c_fc.weight"), C, M, 0); T1(NM("mlp.c_fc.bias"), M, 2);
        T2(NM("mlp.c_proj.weight"), M, C, 0); T1(NM("mlp.c_proj.bias"), C, 2);
#undef NM
    }
    T1("transformer.ln_f.weight", C, 1); T1("transformer.ln_f.bias", C, 2);
    return n;
}

static int build(const char *dir)
{
    static tdesc d[L * 12 + 8];
    int n = describe(d);
    al_error e = { 0 };
    al_writer *w = NULL;
    al_writer_opts o = { .format = AL_FMT_SAFETENSORS, .dir = true };
    float *row = al_malloc((size_t)3 * M * sizeof(float));
    if (!row || al_writer_open(&w, dir, &o, &e) != AL_OK) goto fail;
    for (int i = 0; i < n; i++)
        if (al_writer_add(w, d[i].name, AL_F32, d[i].ndim, d[i].shape, &e) != AL_OK) goto fail;
    if (al_writer_begin(w, &e) != AL_OK) goto fail;
    for (int i = 0; i < n; i++) {
        int64_t rows = d[i].ndim == 2 ? d[i].shape[0] : 1, cols = d[i].ndim == 2 ? d[i].shape[1] : d[i].shape[0];
        uint64_t key = al_rng_key(1, (uint64_t)i);
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t c = 0; c < cols; c++)
                row[c] = d[i].kind == 1 ? 1.0f : d[i].kind == 2 ? 0.0f
                       : (float)(0.04 * (al_rng_unit_at(key, (uint64_t)(r * cols + c)) - 0.5));
            if (al_writer_write(w, row, (uint64_t)cols * 4, &e) != AL_OK) goto fail;
        }
    }
    char cfgp[512];
    snprintf(cfgp, sizeof cfgp, "%s/config.json", al_writer_tmpdir(w));
    FILE *f = fopen(cfgp, "w");
    if (!f) goto fail;
    fprintf(f, "{\"model_type\": \"gpt2\", \"n_embd\": %d, \"n_layer\": %d, \"n_head\": %d, "
            "\"n_positions\": %d, \"vocab_size\": %d, \"activation_function\": \"gelu_new\", "
            "\"layer_norm_epsilon\": 1e-5}\n", C, L, H, P, V);
    fclose(f);
    if (al_writer_commit(w, &e) != AL_OK) goto fail;
    al_writer_free(w);
    al_free(row);
    return 0;
fail:
    fprintf(stderr, "bench_forward: building %s: %s\n", dir, e.msg);
    al_writer_free(w);
    al_free(row);
    return 1;
}

static void set_threads(int n)
{
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    openblas_set_num_threads(n);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp/alloy-bench-gpt2m";
    int reps = argc > 2 ? atoi(argv[2]) : 3;
    struct stat st;
    if (stat(dir, &st) != 0) {
        double t0 = now();
        if (build(dir)) return 1;
        printf("built %s in %.1f s\n", dir, now() - t0);
    }
    int32_t tok[T];
    for (int t = 0; t < T; t++) tok[t] = (int32_t)(al_rng_u64(2, 0, (uint64_t)t) % V);
    float *logits = al_malloc((size_t)T * V * sizeof(float));
    if (!logits) return 1;
    printf("GPT-2-medium shape (24 x 1024, vocab 50257), random F32, forward of 1 x %d tokens, full logits\n", T);
    for (int naive = 0; naive < 2; naive++) {
        al_model_opts o = { .naive_matmul = naive };
        al_model *m = NULL;
        al_model_ws *ws = NULL;
        al_error e = { 0 };
        if (al_model_open(&m, dir, &o, &e) != AL_OK || al_model_ws_new(&ws, m, 1, T, &e) != AL_OK) {
            fprintf(stderr, "bench_forward: %s\n", e.msg);
            return 1;
        }
        for (int th = 1; th <= 2; th++) {
            set_threads(th);
            al_forward_args a = { .tokens = tok, .B = 1, .T = T, .logits = logits };
            al_model_forward(ws, &a, &e);             /* warm-up: page in the mapping */
            int r = naive ? 1 : reps;
            double t0 = now();
            for (int i = 0; i < r; i++) al_model_forward(ws, &a, &e);
            double dt = (now() - t0) / r;
            printf("  %-13s %d thread%s: %7.3f s per forward, %7.1f tokens/s, %6.1f GFLOP/s\n",
                   naive ? "naive matmul" : "OpenBLAS", th, th > 1 ? "s" : " ", dt, T / dt,
                   2.0 * T * (L * (12.0 * C * C) + (double)C * V) / dt * 1e-9);
        }
        al_model_ws_free(ws);
        al_model_free(m);
    }
    al_free(logits);
    return 0;
}
