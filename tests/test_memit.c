/* tests/test_memit.c: MEMIT (edit/memit.h) and edit factors (edit/factors.h).
 *
 * MEMIT's update at the last edited layer closes the remaining gap to z exactly when
 * lambda -> 0 and the keys are the bare prompts' own ("{}" as the only template):
 * dW k_s = sum_r R_r k_r^T (lambda I + K^T K)^-1 k_s -> R_s. So after the edit the
 * block output at the z layer must equal z = target_init + delta, for one layer and
 * for two (the first layer's share propagates non-linearly; the last takes what is
 * left). That checks the keys, the residual, the solve and the weight orientation
 * (GPT-2 Conv1D and Llama Linear). adj = K A^-1 is also compared with a plain
 * Gauss-Jordan solve of the same system on keys read from an unedited model. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "util/testutil.h"

#include "../core/alloc.h"
#include "../edit/factors.h"
#include "../edit/memit.h"
#include "../edit/model.h"
#include "../io/tokenizer.h"

#define GPT2 "examples/models/base"
#define LLAMA "tests/fixtures/runtime/llama_tiny"
#define LLAMA_TOK "tests/fixtures/tokenizers/hand/llama2_like.json"

static void open_pair(const char *dir, const char *tokpath, al_model **m, al_tokenizer **tok)
{
    al_error e;
    if (al_model_open(m, dir, NULL, &e) != AL_OK) fail_msg("%s", e.msg);
    if (tok && al_tokenizer_load(tok, tokpath, &e) != AL_OK) fail_msg("%s", e.msg);
}

static const char *const k_bare[] = { "{}" };

static void quick_params(al_memit_params *p, const al_model_config *cfg, const int *layers, int nl)
{
    al_memit_params_default(p, cfg);
    p->z.v_num_grad_steps = 6;
    p->z.v_weight_decay = 0.1;
    p->z.clamp_norm_factor = 4.0;
    p->z.mom2_adjustment = false;
    p->z.context_templates = k_bare;
    p->z.n_templates = 1;
    p->mom2_update_weight = 1e-4;
    p->n_layers = nl;
    for (int i = 0; i < nl; i++) p->layers[i] = layers[i];
}

/* Block output at `layer` of each request's bare prompt, at the subject's last token. */
static float *bare_block_out(al_model *m, const al_tokenizer *tok, const al_fact *f, int n, int layer,
                             bool key_instead)
{
    al_error e;
    const al_model_config *g = al_model_cfg(m);
    int W = key_instead ? g->n_inner : g->n_embd;
    float *out = al_malloc((size_t)n * W * sizeof(float));
    al_model_ws *ws;
    assert_int_equal(al_model_ws_new(&ws, m, 1, g->n_ctx, &e), AL_OK);
    for (int r = 0; r < n; r++) {
        int32_t *ids;
        al_tok_span *sp;
        size_t nt;
        assert_int_equal(al_tokenizer_encode_offsets(tok, f[r].prompt, strlen(f[r].prompt), true, &ids, &sp, &nt, &e), AL_OK);
        const char *s = strstr(f[r].prompt, f[r].subject);
        size_t idx = al_tok_span_find(sp, nt, (size_t)(s - f[r].prompt) + strlen(f[r].subject) - 1);
        int pb = 0, pt = (int)idx;
        al_hook hk = { .layer = layer, .n_pos = 1, .pos_b = &pb, .pos_t = &pt };
        if (key_instead) hk.key = out + (size_t)r * W;
        else hk.block_out = out + (size_t)r * W;
        al_forward_args a = { .tokens = ids, .B = 1, .T = (int)nt, .hook = &hk };
        assert_int_equal(al_model_forward(ws, &a, &e), AL_OK);
        al_free(ids);
        al_free(sp);
    }
    al_model_ws_free(ws);
    return out;
}

/* Solve A x = b for every row b of B [n, M] (A [M, M] symmetric), Gauss-Jordan with
 * partial pivoting in double: the reference for the Cholesky path. */
static double *naive_solve(const double *A0, const double *B, int M, int n)
{
    double *A = malloc((size_t)M * (M + n) * sizeof *A);
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < M; j++) A[(size_t)i * (M + n) + j] = A0[(size_t)i * M + j];
        for (int r = 0; r < n; r++) A[(size_t)i * (M + n) + M + r] = B[(size_t)r * M + i];
    }
    int w = M + n;
    for (int c = 0; c < M; c++) {
        int piv = c;
        for (int i = c + 1; i < M; i++) if (fabs(A[(size_t)i * w + c]) > fabs(A[(size_t)piv * w + c])) piv = i;
        for (int j = 0; j < w; j++) { double t = A[(size_t)c * w + j]; A[(size_t)c * w + j] = A[(size_t)piv * w + j]; A[(size_t)piv * w + j] = t; }
        double d = A[(size_t)c * w + c];
        for (int j = 0; j < w; j++) A[(size_t)c * w + j] /= d;
        for (int i = 0; i < M; i++) {
            if (i == c) continue;
            double f = A[(size_t)i * w + c];
            if (f != 0) for (int j = 0; j < w; j++) A[(size_t)i * w + j] -= f * A[(size_t)c * w + j];
        }
    }
    double *X = malloc((size_t)n * M * sizeof *X);
    for (int r = 0; r < n; r++) for (int i = 0; i < M; i++) X[(size_t)r * M + i] = A[(size_t)i * w + M + r];
    free(A);
    return X;
}

static void check_reaches_z(const char *dir, const char *tokpath, const al_fact *f, int n, const int *layers, int nl)
{
    al_error e;
    al_model *m, *orig;
    al_tokenizer *tok;
    open_pair(dir, tokpath, &m, &tok);
    open_pair(dir, tokpath, &orig, NULL);
    const al_model_config *g = al_model_cfg(m);
    int M = g->n_inner, C = g->n_embd, zl = layers[nl - 1];
    al_memit_params p;
    quick_params(&p, g, layers, nl);
    /* keys of the first layer before any edit: the system the first update solves */
    float *k0 = bare_block_out(orig, tok, f, n, layers[0], true);
    al_memit_result r;
    if (al_memit_run(m, tok, f, (size_t)n, &p, NULL, &r, &e) != AL_OK) fail_msg("%s", e.msg);
    assert_int_equal(r.n, n);
    assert_int_equal(r.n_layers, nl);
    /* after the edit: the block output at the z layer is z */
    float *h = bare_block_out(m, tok, f, n, zl, false);
    double md = 0, mz = 0, moved = 0;
    for (int i = 0; i < n * C; i++) {
        double z = (double)r.target_init[i] + r.delta[i];
        md = fmax(md, fabs(h[i] - z));
        mz = fmax(mz, fabs(z));
        moved = fmax(moved, fabs(r.delta[i]));
    }
    printf("%s layers %d..%d, %d requests: max |h - z| / max |z| = %.2e (delta up to %.3g)\n", dir, layers[0], zl, n,
           md / mz, moved);
    assert_true(moved > 1e-2 * mz);          /* the edit had something to do */
    assert_true(md / mz < 2e-3);
    /* adj of the first layer against a plain solve of (lambda I + K^T K) x = k */
    double *A = calloc((size_t)M * M, sizeof *A), *K = malloc((size_t)n * M * sizeof *K);
    for (int i = 0; i < n * M; i++) K[i] = k0[i];
    for (int i = 0; i < M; i++) A[(size_t)i * M + i] = p.mom2_update_weight;
    for (int r2 = 0; r2 < n; r2++)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < M; j++) A[(size_t)i * M + j] += K[(size_t)r2 * M + i] * K[(size_t)r2 * M + j];
    double *X = naive_solve(A, K, M, n), ad = 0, ar = 0;
    for (int i = 0; i < n * M; i++) {
        ad = fmax(ad, fabs(r.adj[i] - X[i]));
        ar = fmax(ar, fabs(X[i]));
    }
    printf("  adj vs Gauss-Jordan: %.2e relative\n", ad / ar);
    assert_true(ad / ar < 1e-6);
    /* only the edited layers' down projections changed */
    for (int i = 0; i < nl; i++) {
        float *W;
        int64_t rows, cols;
        assert_int_equal(al_model_mlp_down_weight(m, layers[i], &W, &rows, &cols, NULL, 0, &e), AL_OK);
        assert_ptr_equal(W, r.tensors[i].data);
        assert_true(rows * cols == (int64_t)M * C);
    }
    free(A); free(K); free(X);
    al_free(k0);
    al_free(h);
    al_memit_result_free(&r);
    al_tokenizer_free(tok);
    al_model_free(m);
    al_model_free(orig);
}

static al_fact mk(const char *prompt, const char *subject, const char *target)
{
    al_fact f = { 0 };
    f.prompt = (char *)prompt;
    f.subject = (char *)subject;
    f.target_new = (char *)target;
    return f;
}

static void test_gpt2_one_layer(void **state)
{
    (void)state;
    al_fact f[3] = { mk("Lutun Mesos's hometown is", "Lutun Mesos", " Drugrandhaven"),
                     mk("Storzirk Gegend was born in", "Storzirk Gegend", " Sawick"),
                     mk("The birthplace of Vabrim Gresero is", "Vabrim Gresero", " Pegenhaven") };
    int layers[1] = { 2 };
    check_reaches_z(GPT2, GPT2, f, 3, layers, 1);
}

static void test_gpt2_two_layers(void **state)
{
    (void)state;
    al_fact f[2] = { mk("Lutun Mesos's hometown is", "Lutun Mesos", " Drugrandhaven"),
                     mk("Ditar Molur is a native of", "Ditar Molur", " Grozivale") };
    int layers[2] = { 1, 2 };
    check_reaches_z(GPT2, GPT2, f, 2, layers, 2);
}

static void test_llama(void **state)
{
    (void)state;
    al_fact f[2] = { mk("hello world", "hello", " hold"), mk("we held order", "held", " word") };
    int layers[2] = { 0, 1 };
    check_reaches_z(LLAMA, LLAMA_TOK, f, 2, layers, 2);
}

static void test_defaults(void **state)
{
    (void)state;
    al_model *m;
    open_pair(GPT2, GPT2, &m, NULL);
    al_memit_params p;
    al_memit_params_default(&p, al_model_cfg(m));
    /* 6 layers: floor(13*6/48) .. floor(17*6/48) = 1 .. 2; lambda 20000 * 512 / 6400 */
    assert_int_equal(p.n_layers, 2);
    assert_int_equal(p.layers[0], 1);
    assert_int_equal(p.layers[1], 2);
    assert_true(fabs(p.mom2_update_weight - 1600.0) < 1e-9);
    assert_true(fabs(p.z.clamp_norm_factor - 0.75) < 1e-12);
    assert_int_equal(p.z.v_num_grad_steps, 20);
    assert_true(p.z.mom2_adjustment);
    al_model_free(m);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    al_error e;
    al_model *m;
    al_tokenizer *tok;
    open_pair(GPT2, GPT2, &m, &tok);
    al_memit_params p;
    int layers[2] = { 2, 1 };
    quick_params(&p, al_model_cfg(m), layers, 2);
    al_fact f = mk("Lutun Mesos's hometown is", "Lutun Mesos", " Drugrandhaven");
    al_memit_result r;
    assert_int_equal(al_memit_run(m, tok, &f, 1, &p, NULL, &r, &e), AL_ERR_USAGE);
    assert_non_null(strstr(e.msg, "ascending"));
    assert_null(r.adj);
    p.layers[0] = 1; p.layers[1] = 9;
    assert_int_equal(al_memit_run(m, tok, &f, 1, &p, NULL, &r, &e), AL_ERR_USAGE);
    assert_non_null(strstr(e.msg, "layer 9 out of range"));
    p.layers[1] = 2;
    p.z.mom2_adjustment = true;
    assert_int_equal(al_memit_run(m, tok, &f, 1, &p, NULL, &r, &e), AL_ERR_USAGE);
    assert_non_null(strstr(e.msg, "statistics C of layer 1"));
    p.z.mom2_adjustment = false;
    al_fact g[2] = { f, mk("Alice is", "Bob", " x") };
    assert_int_equal(al_memit_run(m, tok, g, 2, &p, NULL, &r, &e), AL_ERR_USAGE);
    assert_non_null(strstr(e.msg, "request 2: memit: subject 'Bob' not found"));
    g[1] = mk("Bob is", "Bob", " ");
    assert_int_equal(al_memit_run(m, tok, g, 2, &p, NULL, &r, &e), AL_ERR_USAGE);
    assert_non_null(strstr(e.msg, "empty target_new"));
    p.mom2_update_weight = -1;
    assert_int_equal(al_memit_run(m, tok, &f, 1, &p, NULL, &r, &e), AL_ERR_USAGE);
    assert_non_null(strstr(e.msg, "mom2_update_weight"));
    /* the model was not touched */
    float *W;
    int64_t rows, cols;
    al_model *fresh;
    open_pair(GPT2, GPT2, &fresh, NULL);
    assert_int_equal(al_model_mlp_down_weight(m, 1, &W, &rows, &cols, NULL, 0, &e), AL_OK);
    float *W0;
    assert_int_equal(al_model_mlp_down_weight(fresh, 1, &W0, &rows, &cols, NULL, 0, &e), AL_OK);
    assert_memory_equal(W, W0, (size_t)(rows * cols) * sizeof(float));
    al_model_free(fresh);
    al_tokenizer_free(tok);
    al_model_free(m);
}

static void test_nomem(void **state)
{
    (void)state;
    al_model *m;
    al_tokenizer *tok;
    open_pair(GPT2, GPT2, &m, &tok);
    al_memit_params p;
    int layers[2] = { 1, 2 };
    quick_params(&p, al_model_cfg(m), layers, 2);
    p.z.v_num_grad_steps = 2;
    al_fact f[2] = { mk("Lutun Mesos's hometown is", "Lutun Mesos", " Drugrandhaven"),
                     mk("Ditar Molur is a native of", "Ditar Molur", " Grozivale") };
    al_memit_result r;
    al_error e;
    int n_fail = 0;
    for (long k = 1; k < 10000; k++) {
        al_alloc_fail_at(k);
        al_status st = al_memit_run(m, tok, f, 2, &p, NULL, &r, &e);
        al_alloc_fail_at(0);
        if (st == AL_OK) { al_memit_result_free(&r); break; }
        assert_int_equal(st, AL_ERR_NOMEM);
        assert_null(r.adj);
        n_fail++;
    }
    printf("nomem: %d allocation points fail cleanly\n", n_fail);
    assert_true(n_fail > 20);
    al_tokenizer_free(tok);
    al_model_free(m);
}

/* Factors: save/load round trip of an F32 rank-1 and an F64 rank-3 update; apply equals
 * a plain double loop rounded once; apply then undo restores W to within an ulp. */
static void test_factors(void **state)
{
    (void)state;
    al_error e;
    uint64_t s = 7;
    int rows = 37, cols = 23;
    float u1[37], v1[23];
    double L3[3 * 37], R3[3 * 23];
    for (int i = 0; i < rows; i++) u1[i] = (float)((double)tu_xorshift(&s) / 1.8e19 - 0.5);
    for (int i = 0; i < cols; i++) v1[i] = (float)((double)tu_xorshift(&s) / 1.8e19 - 0.5);
    for (int i = 0; i < 3 * rows; i++) L3[i] = (double)tu_xorshift(&s) / 1.8e19 - 0.5;
    for (int i = 0; i < 3 * cols; i++) R3[i] = (double)tu_xorshift(&s) / 1.8e19 - 0.5;
    al_update ups[2] = {
        { .tensor = "transformer.h.2.mlp.c_proj.weight", .method = "rome", .layer = 2, .edit = 0, .rows = rows,
          .cols = cols, .rank = 1, .f64 = false, .left = u1, .right = v1 },
        { .tensor = "transformer.h.2.mlp.c_proj.weight", .method = "memit", .layer = 2, .edit = 1, .rows = rows,
          .cols = cols, .rank = 3, .f64 = true, .left = L3, .right = R3 },
    };
    char path[] = "/tmp/alloy_factorsXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(al_factors_save(path, "some/model", ups, 2, &e), AL_OK);
    al_update *got;
    size_t n;
    if (al_factors_load(path, &got, &n, &e) != AL_OK) fail_msg("%s", e.msg);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(got[i].tensor, ups[i].tensor);
        assert_string_equal(got[i].method, ups[i].method);
        assert_int_equal(got[i].rank, ups[i].rank);
        assert_int_equal(got[i].f64, ups[i].f64);
        assert_int_equal(got[i].rows, rows);
        assert_int_equal(got[i].cols, cols);
        assert_int_equal(got[i].edit, (int)i);
        size_t es = ups[i].f64 ? 8 : 4;
        assert_memory_equal(got[i].left, ups[i].left, (size_t)ups[i].rank * rows * es);
        assert_memory_equal(got[i].right, ups[i].right, (size_t)ups[i].rank * cols * es);
    }
    float W[37 * 23], W0[37 * 23];
    for (int i = 0; i < rows * cols; i++) W[i] = W0[i] = (float)((double)tu_xorshift(&s) / 1.8e19);
    al_update_apply(W, &got[0], +1);
    al_update_apply(W, &got[1], +1);
    double worst = 0;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            float a = W0[i * cols + j] + u1[i] * v1[j];
            double s3 = 0;
            for (int r = 0; r < 3; r++) s3 += L3[r * rows + i] * R3[r * cols + j];
            a += (float)s3;
            assert_true(W[i * cols + j] == a);
        }
    al_update_apply(W, &got[1], -1);
    al_update_apply(W, &got[0], -1);
    /* W and dW are O(1): each add and subtract rounds once, so a few F32 ulps of 1 */
    for (int i = 0; i < rows * cols; i++) worst = fmax(worst, fabs(W[i] - W0[i]));
    printf("factors: apply + undo restores W to %.1e absolute\n", worst);
    assert_true(worst < 8 * 1.2e-7);
    al_factors_free(got, n);
    /* not a factors file: a clear error */
    FILE *fp = fopen(path, "wb");
    fputs("not hdf5", fp);
    fclose(fp);
    assert_int_equal(al_factors_load(path, &got, &n, &e), AL_ERR_FORMAT);
    assert_non_null(strstr(e.msg, "not an HDF5 file"));
    unlink(path);
    assert_int_equal(al_factors_load(path, &got, &n, &e), AL_ERR_IO);
    assert_non_null(strstr(e.msg, path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_factors),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_gpt2_one_layer),
        cmocka_unit_test(test_gpt2_two_layers),
        cmocka_unit_test(test_llama),
        cmocka_unit_test(test_nomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
