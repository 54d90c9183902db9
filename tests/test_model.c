/* tests/test_model.c: the transformer runtime (edit/model.h) against independent
 * PyTorch references: logits of the five example GPT-2 models and of tiny random
 * Llamas (GQA, RoPE scaling), KV-cache and batch consistency, greedy generation of
 * the facts in the models' READMEs, finite-difference checks of d loss / d delta,
 * and clear errors on bad input.
 *
 * Relative error of a logits block = max |ours - ref| / max |ref| over the block
 * (one prompt, every position, whole vocabulary). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "util/testutil.h"
#include <jansson.h>

#include "../core/alloc.h"
#include "../core/rng.h"
#include "../edit/layers.h"
#include "../edit/model.h"
#include "../io/checkpoint.h"

#define FIX "tests/fixtures/runtime"
#define MODELS "examples/models"
#define TOL_LOGITS 1e-4
#define TOL_SAME 1e-5    /* two of our own paths that differ only in summation order */
#define TOL_GRAD 1e-3

static const char *const k_models[] = { "base", "base-bf16", "ft-instrument", "ft-newcities",
                                        "ft-newpeople" };

/* ---- helpers --------------------------------------------------------------------- */

static json_t *load_json(const char *path)
{
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) fail_msg("%s:%d: %s", path, je.line, je.text);
    return j;
}

/* ids [n] of a JSON array; returns n. */
static int json_ids(json_t *a, int32_t *ids, int cap)
{
    int n = (int)json_array_size(a);
    assert_true(n <= cap);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(a, (size_t)i));
    return n;
}

static double rel_err(const float *a, const float *ref, size_t n)
{
    double md = 0.0, mr = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= md)) md = d;              /* NaN propagates as failure */
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
    }
    return md / (mr > 0 ? mr : 1.0);
}

static int argmax(const float *z, int V)
{
    int k = 0;
    for (int v = 1; v < V; v++) if (z[v] > z[k]) k = v;
    return k;
}

static al_model *open_model(const char *dir, bool per_layer, bool naive)
{
    al_model_opts o = { .per_layer_convert = per_layer, .naive_matmul = naive };
    al_model *m = NULL;
    al_error e = { 0 };
    if (al_model_open(&m, dir, &o, &e) != AL_OK) fail_msg("%s: %s", dir, e.msg);
    return m;
}

static al_model_ws *new_ws(const al_model *m, int B, int S)
{
    al_model_ws *ws = NULL;
    al_error e = { 0 };
    if (al_model_ws_new(&ws, m, B, S, &e) != AL_OK) fail_msg("%s", e.msg);
    return ws;
}

static void fwd(al_model_ws *ws, const int32_t *tok, int B, int T, const int *lens, bool append,
                const al_hook *hook, float *logits, float *last)
{
    al_forward_args a = { .tokens = tok, .B = B, .T = T, .lens = lens, .append = append,
                          .hook = hook, .logits = logits, .last_logits = last };
    al_error e = { 0 };
    if (al_model_forward(ws, &a, &e) != AL_OK) fail_msg("forward: %s", e.msg);
}

/* Prompts of a reference set: ids [n][64], lengths. */
typedef struct { int n; int32_t ids[16][64]; int len[16]; } prompts;

static void load_prompts(const char *json_path, prompts *p)
{
    json_t *j = load_json(json_path);
    json_t *ids = json_object_get(j, "ids");
    p->n = (int)json_array_size(ids);
    assert_true(p->n <= 16);
    for (int i = 0; i < p->n; i++) p->len[i] = json_ids(json_array_get(ids, (size_t)i), p->ids[i], 64);
    json_decref(j);
}

/* Every prompt one at a time, then all as one right-padded batch: each against the
 * reference (TOL_LOGITS) and the batch against the single runs (TOL_SAME).
 * Returns the largest reference error. */
static double check_reference(const char *model_dir, const char *ref_json, const char *ref_st,
                              bool per_layer, bool naive)
{
    prompts P;
    load_prompts(ref_json, &P);
    al_model *m = open_model(model_dir, per_layer, naive);
    int V = al_model_cfg(m)->vocab_size, T = 0;
    for (int i = 0; i < P.n; i++) if (P.len[i] > T) T = P.len[i];
    al_ckpt *rc = NULL;
    al_error e = { 0 };
    if (al_ckpt_open(&rc, ref_st, &e) != AL_OK) fail_msg("%s", e.msg);
    al_model_ws *ws = new_ws(m, P.n, T);
    float *single = al_malloc((size_t)P.n * T * V * sizeof(float));
    float *batch = al_malloc((size_t)P.n * T * V * sizeof(float));
    int32_t *tok = al_calloc((size_t)P.n * T, sizeof(int32_t));
    assert_true(single && batch && tok);
    double worst = 0.0;
    for (int i = 0; i < P.n; i++) {
        char name[32];
        int64_t n;
        snprintf(name, sizeof name, "logits.%d", i);
        float *ref = tu_read_f32(rc, name, &n);
        assert_int_equal(n, (int64_t)P.len[i] * V);
        float *out = single + (size_t)i * T * V;
        fwd(ws, P.ids[i], 1, P.len[i], NULL, false, NULL, out, NULL);
        double r = rel_err(out, ref, (size_t)n);
        if (r > worst) worst = r;
        if (r > TOL_LOGITS) fail_msg("%s prompt %d: relative error %.3g", model_dir, i, r);
        al_free(ref);
        memcpy(tok + (size_t)i * T, P.ids[i], (size_t)P.len[i] * sizeof(int32_t));
        for (int t = P.len[i]; t < T; t++) tok[(size_t)i * T + t] = 999999;   /* ignored pad */
    }
    fwd(ws, tok, P.n, T, P.len, false, NULL, batch, NULL);
    for (int i = 0; i < P.n; i++) {
        double r = rel_err(batch + (size_t)i * T * V, single + (size_t)i * T * V, (size_t)P.len[i] * V);
        if (r > TOL_SAME) fail_msg("%s prompt %d: batch vs single %.3g", model_dir, i, r);
    }
    al_free(single);
    al_free(batch);
    al_free(tok);
    al_model_ws_free(ws);
    al_ckpt_close(rc);
    al_model_free(m);
    return worst;
}

/* ---- logits against PyTorch ------------------------------------------------------- */

static void test_gpt2_reference(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof k_models / sizeof k_models[0]; k++) {
        char dir[256], ref[256];
        snprintf(dir, sizeof dir, MODELS "/%s", k_models[k]);
        snprintf(ref, sizeof ref, FIX "/reference_logits-%s.safetensors", k_models[k]);
        double r = check_reference(dir, FIX "/reference_logits.json", ref, false, false);
        printf("  %-14s max relative logits error %.2e (11 prompts, every position)\n", k_models[k], r);
    }
}

static void test_gpt2_per_layer_and_naive(void **state)
{
    (void)state;
    double r1 = check_reference(MODELS "/base-bf16", FIX "/reference_logits.json",
                                FIX "/reference_logits-base-bf16.safetensors", true, false);
    double r2 = check_reference(MODELS "/base", FIX "/reference_logits.json",
                                FIX "/reference_logits-base.safetensors", false, true);
    printf("  base-bf16 per-layer conversion %.2e; base with the naive matmul %.2e\n", r1, r2);
}

static void test_llama_reference(void **state)
{
    (void)state;
    static const char *const dirs[] = { "llama_tiny", "llama_tiny_l3", "llama_tiny_lin" };
    for (size_t k = 0; k < 3; k++) {
        char dir[256], js[256], st[256];
        snprintf(dir, sizeof dir, FIX "/%s", dirs[k]);
        snprintf(js, sizeof js, FIX "/%s/ref.json", dirs[k]);
        snprintf(st, sizeof st, FIX "/%s/ref_logits.safetensors", dirs[k]);
        double r = check_reference(dir, js, st, false, false);
        double r2 = check_reference(dir, js, st, true, true);
        printf("  %-14s max relative logits error %.2e (naive, per-layer: %.2e)\n", dirs[k], r, r2);
    }
}

static void test_matmul_layouts(void **state)
{
    (void)state;
    /* BLAS vs reference loop, both layouts, bias, sub-matrix ldw, backward. */
    enum { N = 7, IC = 37, OC = 70, LDW = 101 };
    float *w = al_malloc(sizeof(float) * (size_t)IC * LDW * 2), x[N * IC], b[OC], dy[N * OC];
    float y1[N * OC], y2[N * OC], dx1[N * IC], dx2[N * IC];
    assert_non_null(w);
    for (int i = 0; i < IC * LDW * 2; i++) w[i] = (float)(al_rng_unit(1, 1, (uint64_t)i) - 0.5);
    for (int i = 0; i < N * IC; i++) x[i] = (float)(al_rng_unit(1, 2, (uint64_t)i) - 0.5);
    for (int i = 0; i < OC; i++) b[i] = (float)i * 0.01f;
    for (int i = 0; i < N * OC; i++) dy[i] = (float)(al_rng_unit(1, 3, (uint64_t)i) - 0.5);
    for (int io = 0; io < 2; io++) {
        al_matmul_forward(y1, x, w, LDW, io, b, N, IC, OC, false);
        al_matmul_forward(y2, x, w, LDW, io, b, N, IC, OC, true);
        assert_true(rel_err(y1, y2, N * OC) < 1e-6);
        for (int i = 0; i < N * IC; i++) dx1[i] = dx2[i] = 1.0f;
        al_matmul_backward_inp(dx1, dy, w, LDW, io, N, IC, OC, false);
        al_matmul_backward_inp(dx2, dy, w, LDW, io, N, IC, OC, true);
        assert_true(rel_err(dx1, dx2, N * IC) < 1e-6);
    }
    al_free(w);
}

/* ---- KV cache --------------------------------------------------------------------- */

static void kv_check(const char *dir, const int32_t *ids, int T)
{
    al_model *m = open_model(dir, false, false);
    int V = al_model_cfg(m)->vocab_size;
    al_model_ws *ws = new_ws(m, 2, T);
    float *full = al_malloc((size_t)T * V * sizeof(float)), *inc = al_malloc((size_t)T * V * sizeof(float));
    float *two = al_malloc((size_t)2 * T * V * sizeof(float)), last[2 * 1024];
    assert_true(full && inc && two && V <= 1024);
    fwd(ws, ids, 1, T, NULL, false, NULL, full, NULL);
    /* prefix of 3, then one token at a time */
    fwd(ws, ids, 1, 3, NULL, false, NULL, inc, NULL);
    for (int t = 3; t < T; t++) {
        fwd(ws, ids + t, 1, 1, NULL, true, NULL, NULL, inc + (size_t)t * V);
        assert_int_equal(al_model_ws_cached(ws, 0), t + 1);
    }
    double r = rel_err(inc, full, (size_t)T * V);
    if (r > TOL_SAME) fail_msg("%s: incremental vs full %.3g", dir, r);
    /* two rows at different lengths, extended together by 2 tokens each */
    int32_t tok[2 * 64];
    int lens[2] = { T - 4, T - 7 };
    for (int b = 0; b < 2; b++) for (int t = 0; t < T - 2; t++) tok[b * (T - 2) + t] = ids[t];
    fwd(ws, tok, 2, T - 2, lens, false, NULL, two, NULL);
    for (int b = 0; b < 2; b++)
        assert_true(rel_err(two + (size_t)b * (T - 2) * V, full, (size_t)lens[b] * V) < TOL_SAME);
    int32_t nxt[4] = { ids[lens[0]], ids[lens[0] + 1], ids[lens[1]], ids[lens[1] + 1] };
    int l2[2] = { 2, 2 };
    fwd(ws, nxt, 2, 2, l2, true, NULL, two, last);
    for (int b = 0; b < 2; b++) {
        double rr = rel_err(two + (size_t)b * 2 * V, full + (size_t)lens[b] * V, (size_t)2 * V);
        if (rr > TOL_SAME) fail_msg("%s: batched append row %d %.3g", dir, b, rr);
        assert_true(rel_err(last + (size_t)b * V, full + (size_t)(lens[b] + 1) * V, (size_t)V) < TOL_SAME);
    }
    printf("  %s: incremental decoding vs full forward %.2e\n", dir, r);
    al_free(full);
    al_free(inc);
    al_free(two);
    al_model_ws_free(ws);
    al_model_free(m);
}

static void test_kv_cache(void **state)
{
    (void)state;
    prompts P;
    load_prompts(FIX "/reference_logits.json", &P);
    kv_check(MODELS "/base", P.ids[10], P.len[10]);
    load_prompts(FIX "/llama_tiny_l3/ref.json", &P);
    kv_check(FIX "/llama_tiny_l3", P.ids[3], P.len[3]);
}

/* ---- greedy generation ------------------------------------------------------------ */

static void test_greedy_facts(void **state)
{
    (void)state;
    json_t *facts = load_json(FIX "/facts.json");
    prompts P;
    load_prompts(FIX "/reference_logits.json", &P);
    int nfacts = 0;
    for (size_t k = 0; k < sizeof k_models / sizeof k_models[0]; k++) {
        char dir[256], ref[256];
        snprintf(dir, sizeof dir, MODELS "/%s", k_models[k]);
        snprintf(ref, sizeof ref, FIX "/reference_logits-%s.safetensors", k_models[k]);
        al_model *m = open_model(dir, false, false);
        int V = al_model_cfg(m)->vocab_size;
        al_model_ws *ws = new_ws(m, 1, 64);
        float *last = al_malloc((size_t)V * sizeof(float));
        assert_non_null(last);
        /* next token of every reference prompt = argmax of the reference's last row */
        al_ckpt *rc = NULL;
        assert_int_equal(al_ckpt_open(&rc, ref, NULL), AL_OK);
        for (int i = 0; i < P.n; i++) {
            char name[32];
            int64_t n;
            snprintf(name, sizeof name, "logits.%d", i);
            float *r = tu_read_f32(rc, name, &n);
            fwd(ws, P.ids[i], 1, P.len[i], NULL, false, NULL, NULL, last);
            assert_int_equal(argmax(last, V), argmax(r + (size_t)(P.len[i] - 1) * V, V));
            al_free(r);
        }
        al_ckpt_close(rc);
        /* README facts: greedy continuation with the KV cache = the answer's tokens */
        json_t *list = json_object_get(facts, k_models[k]);
        for (size_t f = 0; f < json_array_size(list); f++) {
            json_t *o = json_array_get(list, f);
            int32_t ids[64], ans[16];
            int n = json_ids(json_object_get(o, "ids"), ids, 64);
            int na = json_ids(json_object_get(o, "answer_ids"), ans, 16);
            fwd(ws, ids, 1, n, NULL, false, NULL, NULL, last);
            for (int j = 0; j < na; j++) {
                int32_t next = argmax(last, V);
                if (next != ans[j])
                    fail_msg("%s: '%s' -> token %d is %d, expected %d ('%s')", k_models[k],
                             json_string_value(json_object_get(o, "prompt")), j, (int)next,
                             (int)ans[j], json_string_value(json_object_get(o, "answer")));
                fwd(ws, &next, 1, 1, NULL, true, NULL, NULL, last);
            }
            nfacts++;
        }
        al_free(last);
        al_model_ws_free(ws);
        al_model_free(m);
    }
    printf("  %d README facts reproduced by greedy decoding\n", nfacts);
    json_decref(facts);
}

/* ---- hooks and gradients ---------------------------------------------------------- */

typedef struct {
    al_model *m;
    al_model_ws *ws;
    float *delta, *grad;
    al_loss_spec spec;
} fdctx;

static double loss_at(fdctx *c, const float *delta)
{
    al_error e = { 0 };
    double L;
    if (al_model_forward_from(c->ws, delta, NULL, NULL, &e) != AL_OK) fail_msg("%s", e.msg);
    if (al_model_loss(c->ws, &c->spec, &L, NULL, &e) != AL_OK) fail_msg("%s", e.msg);
    return L;
}

/* d loss / d delta against a 4-point central difference (float64 arithmetic on the
 * loss values) for every component. Returns ||g - g_fd|| / ||g_fd||. */
static double fd_check(fdctx *c, int C, double h)
{
    al_error e = { 0 };
    double L0;
    if (al_model_forward_from(c->ws, c->delta, NULL, NULL, &e) != AL_OK) fail_msg("%s", e.msg);
    if (al_model_loss(c->ws, &c->spec, &L0, c->grad, &e) != AL_OK) fail_msg("%s", e.msg);
    float *d = al_malloc((size_t)C * sizeof(float));
    assert_non_null(d);
    double num = 0.0, den = 0.0;
    for (int i = 0; i < C; i++) {
        double f[4];
        static const double k[4] = { -2, -1, 1, 2 };
        for (int s = 0; s < 4; s++) {
            memcpy(d, c->delta, (size_t)C * sizeof(float));
            d[i] = (float)(c->delta[i] + k[s] * h);    /* h is a power of two: exact steps */
            f[s] = loss_at(c, d);
        }
        double g = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h);
        num += (g - c->grad[i]) * (g - c->grad[i]);
        den += g * g;
    }
    al_free(d);
    return sqrt(num / den);
}

static void grad_check(const char *dir, int layer, const int32_t *a, int na, const int32_t *b,
                       int nb, int subj_a, int subj_b, double h)
{
    fdctx c = { 0 };
    c.m = open_model(dir, false, false);
    const al_model_config *g = al_model_cfg(c.m);
    int C = g->n_embd, V = g->vocab_size, M = g->n_inner, T = na > nb ? na : nb;
    c.ws = new_ws(c.m, 2, T);
    int32_t tok[2 * 64] = { 0 };
    memcpy(tok, a, (size_t)na * sizeof(int32_t));
    memcpy(tok + T, b, (size_t)nb * sizeof(int32_t));
    int lens[2] = { na, nb }, hb[2] = { 0, 1 }, ht[2] = { subj_a, subj_b };
    float *key = al_malloc((size_t)2 * M * sizeof(float)), *mo = al_malloc((size_t)2 * C * sizeof(float));
    float *logits = al_malloc((size_t)2 * T * V * sizeof(float)), *logits2 = al_malloc((size_t)2 * T * V * sizeof(float));
    c.delta = al_malloc((size_t)C * sizeof(float));
    c.grad = al_malloc((size_t)C * sizeof(float));
    assert_true(key && mo && logits && logits2 && c.delta && c.grad);
    al_hook hk = { .layer = layer, .n_pos = 2, .pos_b = hb, .pos_t = ht, .key = key, .mlp_out = mo };
    fwd(c.ws, tok, 2, T, lens, false, &hk, logits, NULL);
    double hn = 0.0;
    for (int i = 0; i < C; i++) hn += (double)mo[i] * mo[i];
    /* reference distributions for KL: the unedited model at row 0 subj, row 1 last */
    int kb[2] = { 0, 1 }, kt[2] = { subj_a, nb - 1 };
    float *ref = al_malloc((size_t)2 * V * sizeof(float));
    assert_non_null(ref);
    for (int j = 0; j < 2; j++) al_log_softmax(ref + (size_t)j * V, logits + ((size_t)kb[j] * T + kt[j]) * V, V);
    /* NLL on the tokens after the hook positions */
    int nbv[16], ntv[16], nn = 0;
    int32_t tgt[16];
    for (int r = 0; r < 2; r++)
        for (int t = ht[r]; t < lens[r] - 1 && nn < 16; t++) {
            nbv[nn] = r; ntv[nn] = t; tgt[nn] = tok[r * T + t + 1]; nn++;
        }
    /* a delta as large as the MLP output, in a random direction */
    double dn = 0.0;
    for (int i = 0; i < C; i++) { c.delta[i] = (float)(al_rng_unit(7, 7, (uint64_t)i) - 0.5); dn += (double)c.delta[i] * c.delta[i]; }
    for (int i = 0; i < C; i++) c.delta[i] *= (float)(sqrt(hn / dn));
    /* hook delta in the full forward == forward_from */
    hk.delta = c.delta;
    fwd(c.ws, tok, 2, T, lens, false, &hk, logits, NULL);
    al_error e = { 0 };
    assert_int_equal(al_model_forward_from(c.ws, c.delta, logits2, NULL, &e), AL_OK);
    for (int r = 0; r < 2; r++)
        assert_true(rel_err(logits2 + (size_t)r * T * V, logits + (size_t)r * T * V, (size_t)lens[r] * V) < TOL_SAME);

    const char *names[3] = { "NLL", "KL", "NLL+KL" };
    for (int kind = 0; kind < 3; kind++) {
        memset(&c.spec, 0, sizeof c.spec);
        if (kind != 1) { c.spec.n_nll = nn; c.spec.nll_b = nbv; c.spec.nll_t = ntv; c.spec.nll_target = tgt; }
        if (kind != 0) { c.spec.n_kl = 2; c.spec.kl_b = kb; c.spec.kl_t = kt; c.spec.kl_ref_logp = ref;
                         c.spec.kl_weight = kind == 1 ? 1.0 : 0.0625; }
        double r = fd_check(&c, C, h);
        double gn = 0.0;
        for (int i = 0; i < C; i++) gn += (double)c.grad[i] * c.grad[i];
        printf("  %s layer %d %-6s: |g| %.3e, ||g - g_fd|| / ||g_fd|| = %.2e\n", dir, layer,
               names[kind], sqrt(gn), r);
        if (!(r < TOL_GRAD)) fail_msg("%s %s gradient relative error %.3g", dir, names[kind], r);
    }
    al_free(key); al_free(mo); al_free(logits); al_free(logits2); al_free(ref);
    al_free(c.delta); al_free(c.grad);
    al_model_ws_free(c.ws);
    al_model_free(c.m);
}

static void test_grad_gpt2(void **state)
{
    (void)state;
    prompts P;
    load_prompts(FIX "/reference_logits.json", &P);
    /* "Drigin Sama was born in" / "... plays the sport of": subject ends at t = 5.
     * The loss is computed in float32, so the FD error is noise/h; this model's residual
     * stream is large next to its MLP output (rms 0.2 at layer 2), so the loss is flat
     * in delta and needs a wide step: the NLL error fell as 1/h, from 1.3e-2 at h = 2^-8
     * to 3.8e-4 at h = 2^-2 -- rounding noise, not a wrong gradient. h = 2^-3 keeps
     * both noise and the O(h^4) truncation well under TOL_GRAD. */
    grad_check(MODELS "/base", 2, P.ids[0], P.len[0], P.ids[1], P.len[1], 5, 5, 0.125);
}

static void test_grad_llama(void **state)
{
    (void)state;
    prompts P;
    load_prompts(FIX "/llama_tiny_l3/ref.json", &P);
    grad_check(FIX "/llama_tiny_l3", 0, P.ids[2], P.len[2], P.ids[1], P.len[1], 4, 2, 1.0 / 64);
}

/* ---- bad input -------------------------------------------------------------------- */

static char g_tmp[256];

static void bad_dir(const char *src_dir, const char *cfg_text, const char *name)
{
    char p[512], abs_src[512];
    snprintf(p, sizeof p, "%s/%s", g_tmp, name);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/%s/config.json", g_tmp, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(cfg_text, f);
    fclose(f);
    assert_non_null(realpath(src_dir, abs_src));
    strcat(abs_src, "/model.safetensors");
    snprintf(p, sizeof p, "%s/%s/model.safetensors", g_tmp, name);
    assert_int_equal(symlink(abs_src, p), 0);
}

static void expect_open_error(const char *name, al_status want, const char *s1, const char *s2)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", g_tmp, name);
    al_model *m = NULL;
    al_error e = { 0 };
    al_status st = al_model_open(&m, p, NULL, &e);
    assert_null(m);
    if (st != want || !strstr(e.msg, s1) || (s2 && !strstr(e.msg, s2)))
        fail_msg("%s: status %d, message '%s'", name, (int)st, e.msg);
    printf("  %-12s -> %s\n", name, e.msg + strlen(g_tmp) + 1);
}

static const char *k_gpt2_cfg =
    "{\"model_type\": %s, \"n_embd\": 128, \"n_layer\": 6, \"n_head\": 4, %s"
    "\"n_positions\": 64, \"vocab_size\": %d, \"activation_function\": \"gelu_new\"}";

static void test_bad_inputs(void **state)
{
    (void)state;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/alloy-test-model.XXXXXX");
    assert_non_null(mkdtemp(g_tmp));
    char cfg[1024];
    snprintf(cfg, sizeof cfg, "{\"model_type\": \"gpt2\", \"n_embd\": 128, \"n_layer\": 6, "
             "\"n_positions\": 64, \"vocab_size\": 1024}");
    bad_dir(MODELS "/base", cfg, "missing_key");
    expect_open_error("missing_key", AL_ERR_FORMAT, "config.json: missing key 'n_head'", NULL);

    snprintf(cfg, sizeof cfg, k_gpt2_cfg, "\"bert\"", "", 1024);
    bad_dir(MODELS "/base", cfg, "unknown_type");
    expect_open_error("unknown_type", AL_ERR_UNSUPPORTED, "model_type 'bert' is not supported", NULL);

    snprintf(cfg, sizeof cfg, k_gpt2_cfg, "\"gpt2\"", "", 1000);
    bad_dir(MODELS "/base", cfg, "vocab");
    expect_open_error("vocab", AL_ERR_SHAPE, "'transformer.wte.weight' has shape [1024, 128]",
                      "[vocab_size, n_embd]");

    snprintf(cfg, sizeof cfg, k_gpt2_cfg, "\"gpt2\"", "\"n_inner\": 256, ", 1024);
    bad_dir(MODELS "/base", cfg, "shape");
    expect_open_error("shape", AL_ERR_SHAPE, "'transformer.h.0.mlp.c_fc.weight' has shape [128, 512]", NULL);

    bad_dir(FIX "/llama_tiny", "{\"model_type\": \"llama\", \"hidden_size\": 64, "
            "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 96, "
            "\"max_position_embeddings\": 64}", "llama_key");
    expect_open_error("llama_key", AL_ERR_FORMAT, "missing key 'intermediate_size'", NULL);

    bad_dir(FIX "/llama_tiny", "{\"model_type\": \"llama\", \"hidden_size\": 64, "
            "\"intermediate_size\": 128, \"num_hidden_layers\": 3, \"num_attention_heads\": 4, "
            "\"num_key_value_heads\": 2, \"vocab_size\": 96, \"max_position_embeddings\": 64}",
            "llama_layers");
    expect_open_error("llama_layers", AL_ERR_NOTFOUND,
                      "tensor 'model.layers.2.input_layernorm.weight' not found", NULL);

    bad_dir(FIX "/llama_tiny", "{\"model_type\": \"llama\", \"hidden_size\": 64, "
            "\"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
            "\"num_key_value_heads\": 2, \"vocab_size\": 96, \"max_position_embeddings\": 64, "
            "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}}", "rope_yarn");
    expect_open_error("rope_yarn", AL_ERR_UNSUPPORTED, "rope_scaling type 'yarn'", NULL);

    /* prompt longer than the context */
    al_model *m = open_model(MODELS "/base", false, false);
    al_model_ws *ws = NULL;
    al_error e = { 0 };
    assert_int_equal(al_model_ws_new(&ws, m, 1, 65, &e), AL_ERR_USAGE);
    assert_non_null(strstr(e.msg, "context is 64"));
    ws = new_ws(m, 1, 64);
    int32_t tok[64] = { 0 };
    fwd(ws, tok, 1, 60, NULL, false, NULL, NULL, NULL);
    al_forward_args a = { .tokens = tok, .B = 1, .T = 10, .append = true };
    assert_int_equal(al_model_forward(ws, &a, &e), AL_ERR_USAGE);
    assert_non_null(strstr(e.msg, "longer than the context of 64 positions"));
    printf("  context      -> %s\n", e.msg);
    tok[3] = 1024;
    al_forward_args a2 = { .tokens = tok, .B = 1, .T = 8 };
    assert_int_equal(al_model_forward(ws, &a2, &e), AL_ERR_USAGE);
    assert_non_null(strstr(e.msg, "token id 1024"));
    double L;
    al_loss_spec sp = { 0 };
    assert_int_equal(al_model_loss(ws, &sp, &L, NULL, &e), AL_ERR_USAGE);
    assert_int_equal(al_model_forward_from(ws, NULL, NULL, NULL, &e), AL_ERR_USAGE);
    al_model_ws_free(ws);
    al_model_free(m);

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_layouts),
        cmocka_unit_test(test_gpt2_reference),
        cmocka_unit_test(test_gpt2_per_layer_and_naive),
        cmocka_unit_test(test_llama_reference),
        cmocka_unit_test(test_kv_cache),
        cmocka_unit_test(test_greedy_facts),
        cmocka_unit_test(test_grad_gpt2),
        cmocka_unit_test(test_grad_llama),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
