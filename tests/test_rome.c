/* tests/test_rome.c: ROME / r-ROME (edit/rome.h) against the golden outputs of an
 * independent PyTorch implementation (tests/fixtures/rome, SOURCES.md): five single
 * edits on the example GPT-2 (layer 2, C from mom2_stats.safetensors) and the same five
 * applied one after another; efficacy through the runtime; r-ROME; the F64 Cholesky;
 * the writable down projection; and clear errors on bad requests.
 *
 * Relative error of a vector/matrix = max |ours - ref| / max |ref|. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "util/testutil.h"
#include <jansson.h>

#include "../core/alloc.h"
#include "../core/rng.h"
#include "../edit/model.h"
#include "../edit/rome.h"
#include "../io/checkpoint.h"
#include "../io/tokenizer.h"

#define FIX "tests/fixtures/rome"
#define MODEL "examples/models/base"
#define N_CASES 5
#define TOL 1e-4

/* ---- helpers --------------------------------------------------------------------- */

static json_t *load_json(const char *path)
{
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) fail_msg("%s:%d: %s", path, je.line, je.text);
    return j;
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

/* Shared across tests: templates, C's Cholesky factor, hparams. */
static struct {
    char **templates;
    size_t n_templates;
    double *L;                /* chol(C) [512,512] */
    int K;
    json_t *hp;
} G;

static int setup(void **state)
{
    (void)state;
    json_t *t = load_json(FIX "/context_templates.json");
    G.n_templates = json_array_size(t);
    G.templates = al_calloc(G.n_templates, sizeof(char *));
    for (size_t i = 0; i < G.n_templates; i++)
        G.templates[i] = al_strdup(json_string_value(json_array_get(t, i)));
    json_decref(t);
    G.hp = load_json(FIX "/hparams.json");
    al_ckpt *c;
    al_error e;
    if (al_ckpt_open(&c, FIX "/mom2_stats.safetensors", &e) != AL_OK) fail_msg("%s", e.msg);
    long i = al_ckpt_find(c, "C");
    assert_true(i >= 0);
    const al_tensor_info *ti = al_ckpt_info(c, (size_t)i);
    G.K = (int)ti->shape[0];
    double *C = al_malloc((size_t)G.K * G.K * sizeof(double));
    assert_int_equal(al_ckpt_read(c, (size_t)i, 0, G.K, C, AL_F64, &e), AL_OK);
    al_ckpt_close(c);
    if (al_rome_cholesky(C, G.K, &G.L, &e) != AL_OK) fail_msg("%s", e.msg);
    al_free(C);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < G.n_templates; i++) al_free(G.templates[i]);
    al_free(G.templates);
    al_free(G.L);
    json_decref(G.hp);
    return 0;
}

static void golden_params(al_rome_params *p, const al_model_config *cfg)
{
    al_rome_params_default(p, cfg);
    p->layer = (int)json_integer_value(json_array_get(json_object_get(G.hp, "layers"), 0));
    p->v_num_grad_steps = (int)json_integer_value(json_object_get(G.hp, "v_num_grad_steps"));
    p->v_lr = json_number_value(json_object_get(G.hp, "v_lr"));
    p->v_loss_layer = (int)json_integer_value(json_object_get(G.hp, "v_loss_layer"));
    p->v_weight_decay = json_number_value(json_object_get(G.hp, "v_weight_decay"));
    p->clamp_norm_factor = json_number_value(json_object_get(G.hp, "clamp_norm_factor"));
    p->kl_factor = json_number_value(json_object_get(G.hp, "kl_factor"));
    p->mom2_adjustment = json_is_true(json_object_get(G.hp, "mom2_adjustment"));
    p->context_templates = (const char *const *)G.templates;
    p->n_templates = G.n_templates;
}

/* A golden case's request as the facts parser would give it. */
typedef struct { al_fact f; char target[128]; json_t *j; } req_t;

static void load_req(req_t *r, int k)
{
    char path[256];
    snprintf(path, sizeof path, FIX "/edit_%02d.json", k);
    r->j = load_json(path);
    json_t *rq = json_object_get(r->j, "request");
    memset(&r->f, 0, sizeof r->f);
    r->f.templ = (char *)json_string_value(json_object_get(rq, "prompt"));
    r->f.subject = (char *)json_string_value(json_object_get(rq, "subject"));
    snprintf(r->target, sizeof r->target, " %s",
             json_string_value(json_object_get(json_object_get(rq, "target_new"), "str")));
    r->f.target_new = r->target;
}

static void open_model(al_model **m, al_tokenizer **tok)
{
    al_error e;
    if (al_model_open(m, MODEL, NULL, &e) != AL_OK) fail_msg("%s", e.msg);
    if (tok && al_tokenizer_load(tok, MODEL, &e) != AL_OK) fail_msg("%s", e.msg);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Greedy next token after `text` through the runtime. */
static int32_t greedy(al_model *m, const al_tokenizer *tok, const char *text)
{
    al_error e;
    int32_t *ids;
    size_t n;
    assert_int_equal(al_tokenizer_encode(tok, text, strlen(text), true, &ids, &n, &e), AL_OK);
    al_model_ws *ws;
    assert_int_equal(al_model_ws_new(&ws, m, 1, (int)n, &e), AL_OK);
    int V = al_model_cfg(m)->vocab_size;
    float *lg = al_malloc((size_t)V * sizeof(float));
    al_forward_args a = { .tokens = ids, .B = 1, .T = (int)n, .last_logits = lg };
    assert_int_equal(al_model_forward(ws, &a, &e), AL_OK);
    int32_t best = 0;
    for (int v = 1; v < V; v++) if (lg[v] > lg[best]) best = v;
    al_free(lg);
    al_free(ids);
    al_model_ws_free(ws);
    return best;
}

static double dot_check(const float *a, const float *b, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

typedef struct { double k, u, vs, vr, d, ti, kb, ob, w, dw; } errs_t;

/* Compare a result with the reference vectors named pre+"k_star" etc. */
static void compare(const al_rome_result *r, al_ckpt *ref, const char *pre, errs_t *e, bool full)
{
    char nm[64];
    float *x;
#define CMP(field, key, n, dst) \
    snprintf(nm, sizeof nm, "%s" key, pre); x = tu_read_f32(ref, nm, NULL); \
    dst = rel_err(r->field, x, (size_t)(n)); al_free(x);
    CMP(k_star, "k_star", r->M, e->k);
    CMP(u, "u", r->M, e->u);
    CMP(v_star, "v_star", r->C, e->vs);
    CMP(v_right, "v_right", r->C, e->vr);
    if (full) {
        CMP(delta, "delta", r->C, e->d);
        CMP(target_init, "target_init", r->C, e->ti);
        CMP(k_bare, "k_bare", r->M, e->kb);
        CMP(out_bare, "out_bare", r->C, e->ob);
    }
#undef CMP
}

/* ---- tests ----------------------------------------------------------------------- */

static void test_cholesky(void **state)
{
    (void)state;
    /* random SPD A = B B^T + n I, n = 300 (crosses the 128 blocks), solve residual */
    int n = 300;
    uint64_t key = al_rng_key(7, 0), ctr = 0;
    double *B = al_malloc((size_t)n * n * sizeof(double)), *A = al_malloc((size_t)n * n * sizeof(double));
    for (int i = 0; i < n * n; i++) B[i] = al_rng_unit_at(key, ctr++) - 0.5;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = i == j ? n : 0.0;
            for (int t = 0; t < n; t++) s += B[i * n + t] * B[j * n + t];
            A[i * n + j] = s;
        }
    double *L, *x = al_malloc((size_t)n * sizeof(double)), *b = al_malloc((size_t)n * sizeof(double));
    al_error e;
    assert_int_equal(al_rome_cholesky(A, n, &L, &e), AL_OK);
    for (int i = 0; i < n; i++) for (int j = i + 1; j < n; j++) assert_true(L[i * n + j] == 0.0);
    for (int i = 0; i < n; i++) b[i] = x[i] = al_rng_unit_at(key, ctr++);
    al_rome_chol_solve(L, n, x);
    double md = 0;
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < n; j++) s += A[i * n + j] * x[j];
        if (fabs(s - b[i]) > md) md = fabs(s - b[i]);
    }
    printf("cholesky n=%d: max |A x - b| = %.2e\n", n, md);
    assert_true(md < 1e-9);
    /* golden C: K = 512, factor exists (setup) and reproduces C */
    assert_int_equal(G.K, 512);
    /* not positive definite */
    A[5 * n + 5] = -1e9;
    al_free(L);
    assert_int_equal(al_rome_cholesky(A, n, &L, &e), AL_ERR_SHAPE);
    assert_null(L);
    assert_non_null(strstr(e.msg, "positive definite"));
    al_free(A); al_free(B); al_free(x); al_free(b);
}

static void test_down_weight(void **state)
{
    (void)state;
    al_model *m;
    al_tokenizer *tok;
    open_model(&m, &tok);
    al_error e;
    float *W;
    int64_t rows, cols;
    char name[192];
    assert_int_equal(al_model_mlp_down_weight(m, 2, &W, &rows, &cols, name, sizeof name, &e), AL_OK);
    assert_string_equal(name, "transformer.h.2.mlp.c_proj.weight");
    assert_int_equal(rows, 512);
    assert_int_equal(cols, 128);
    al_ckpt *c;
    assert_int_equal(al_ckpt_open(&c, MODEL, &e), AL_OK);
    float *ref = tu_read_f32(c, name, NULL);
    assert_memory_equal(W, ref, (size_t)rows * cols * sizeof(float));
    /* a second call returns the same private copy; writes reach the forward */
    float *W2;
    assert_int_equal(al_model_mlp_down_weight(m, 2, &W2, &rows, &cols, NULL, 0, &e), AL_OK);
    assert_ptr_equal(W, W2);
    int32_t before = greedy(m, tok, "Bodros Drerir's favorite sport is");
    for (int64_t i = 0; i < rows * cols; i++) W[i] *= 50.0f;
    int32_t after = greedy(m, tok, "Bodros Drerir's favorite sport is");
    memcpy(W, ref, (size_t)rows * cols * sizeof(float));
    assert_int_equal(greedy(m, tok, "Bodros Drerir's favorite sport is"), before);
    printf("down weight: greedy %d -> %d (x50) -> %d (restored)\n", before, after, before);
    assert_int_not_equal(before, after);
    assert_int_equal(al_model_mlp_down_weight(m, 6, &W, &rows, &cols, NULL, 0, &e), AL_ERR_USAGE);
    assert_int_equal(al_model_mlp_down_weight(m, -1, &W, &rows, &cols, NULL, 0, &e), AL_ERR_USAGE);
    al_free(ref);
    al_ckpt_close(c);
    al_tokenizer_free(tok);
    al_model_free(m);
}

static void test_golden_edits(void **state)
{
    (void)state;
    al_error e;
    al_ckpt *base;
    assert_int_equal(al_ckpt_open(&base, MODEL, &e), AL_OK);
    float *W0 = tu_read_f32(base, "transformer.h.2.mlp.c_proj.weight", NULL);
    double worst = 0;
    for (int k = 0; k < N_CASES; k++) {
        al_model *m;
        al_tokenizer *tok;
        open_model(&m, &tok);
        req_t rq;
        load_req(&rq, k);
        al_rome_params p;
        golden_params(&p, al_model_cfg(m));
        al_rome_result r;
        double t0 = now();
        if (al_rome_compute(m, tok, &rq.f, &p, G.L, &r, &e) != AL_OK) fail_msg("%s", e.msg);
        al_rome_tensor wt;
        assert_int_equal(al_rome_apply(m, p.layer, &r, &wt, &e), AL_OK);
        double secs = now() - t0;
        assert_string_equal(wt.name, "transformer.h.2.mlp.c_proj.weight");

        char path[256];
        snprintf(path, sizeof path, FIX "/edit_%02d.safetensors", k);
        al_ckpt *ref;
        assert_int_equal(al_ckpt_open(&ref, path, &e), AL_OK);
        errs_t er;
        compare(&r, ref, "", &er, true);
        int64_t nw;
        float *Wr = tu_read_f32(ref, wt.name, &nw);
        er.w = rel_err(wt.data, Wr, (size_t)nw);
        float *d1 = al_malloc((size_t)nw * sizeof(float)), *d2 = al_malloc((size_t)nw * sizeof(float));
        for (int64_t i = 0; i < nw; i++) { d1[i] = wt.data[i] - W0[i]; d2[i] = Wr[i] - W0[i]; }
        er.dw = rel_err(d1, d2, (size_t)nw);
        json_t *tr = json_array_get(json_object_get(rq.j, "trace"), (size_t)r.steps - 1);
        double lb = json_number_value(json_object_get(tr, "loss"));
        printf("edit_%02d %-14s k* %.1e u %.1e v* %.1e v_right %.1e delta %.1e t_init %.1e "
               "k_bare %.1e out_bare %.1e W %.1e dW %.1e | steps %d (ref %d) loss %.5f (ref %.5f) "
               "div %.5f (ref %.5f) %.3f s\n",
               k, rq.f.subject, er.k, er.u, er.vs, er.vr, er.d, er.ti, er.kb, er.ob, er.w, er.dw,
               r.adam_steps, (int)json_integer_value(json_object_get(rq.j, "n_adam_steps")),
               r.loss[r.steps - 1], lb, r.division_factor,
               json_number_value(json_object_get(rq.j, "division_factor")), secs);
        assert_int_equal(r.lookup_bare, (int)json_integer_value(json_object_get(rq.j, "bare_idx")));
        double es[] = { er.k, er.u, er.vs, er.vr, er.d, er.ti, er.kb, er.ob, er.w, er.dw };
        for (size_t i = 0; i < sizeof es / sizeof *es; i++) {
            if (!(es[i] <= worst)) worst = es[i];
            if (!(es[i] <= TOL)) fail_msg("edit_%02d: relative error %.3e (field %zu) > %g", k, es[i], i, TOL);
        }
        /* efficacy: the edited runtime now continues the prompt with the new target */
        char prompt[512];
        const char *b = strstr(rq.f.templ, "{}");
        snprintf(prompt, sizeof prompt, "%.*s%s%s", (int)(b - rq.f.templ), rq.f.templ,
                 rq.f.subject, b + 2);
        int32_t want = (int32_t)json_integer_value(json_array_get(json_object_get(rq.j, "target_ids"), 0));
        assert_int_equal(greedy(m, tok, prompt), want);

        al_free(d1); al_free(d2); al_free(Wr);
        al_ckpt_close(ref);
        al_rome_result_free(&r);
        json_decref(rq.j);
        al_tokenizer_free(tok);
        al_model_free(m);
    }
    printf("golden edits: worst relative error %.2e (tolerance %g)\n", worst, TOL);
    al_free(W0);
    al_ckpt_close(base);
}

static void test_sequential(void **state)
{
    (void)state;
    al_error e;
    al_model *m;
    al_tokenizer *tok;
    open_model(&m, &tok);
    al_ckpt *ref;
    assert_int_equal(al_ckpt_open(&ref, FIX "/sequential.safetensors", &e), AL_OK);
    json_t *sq = load_json(FIX "/sequential.json");
    al_rome_tensor wt = { 0 };
    double worst = 0;
    req_t rq[N_CASES];
    for (int k = 0; k < N_CASES; k++) {
        load_req(&rq[k], k);
        /* the sequence is the golden cases in order */
        assert_int_equal(json_integer_value(json_array_get(json_object_get(sq, "order"), (size_t)k)),
                         json_integer_value(json_object_get(rq[k].j, "case_id")));
        al_rome_params p;
        golden_params(&p, al_model_cfg(m));
        al_rome_result r;
        if (al_rome_compute(m, tok, &rq[k].f, &p, G.L, &r, &e) != AL_OK) fail_msg("%s", e.msg);
        assert_int_equal(al_rome_apply(m, p.layer, &r, &wt, &e), AL_OK);
        char pre[32];
        snprintf(pre, sizeof pre, "step%02d.", k);
        errs_t er;
        compare(&r, ref, pre, &er, false);
        printf("sequential step %d: k* %.1e u %.1e v* %.1e v_right %.1e\n", k, er.k, er.u, er.vs, er.vr);
        double es[] = { er.k, er.u, er.vs, er.vr };
        for (size_t i = 0; i < 4; i++) {
            if (!(es[i] <= worst)) worst = es[i];
            if (!(es[i] <= TOL)) fail_msg("sequential step %d: relative error %.3e > %g", k, es[i], TOL);
        }
        al_rome_result_free(&r);
    }
    int64_t nw;
    float *Wr = tu_read_f32(ref, wt.name, &nw);
    double ew = rel_err(wt.data, Wr, (size_t)nw);
    printf("sequential: final weight %.1e, worst %.2e\n", ew, worst);
    assert_true(ew <= TOL);
    /* every edit still holds at the end (golden: ES 100 after all five) */
    for (int k = 0; k < N_CASES; k++) {
        char prompt[512];
        const char *b = strstr(rq[k].f.templ, "{}");
        snprintf(prompt, sizeof prompt, "%.*s%s%s", (int)(b - rq[k].f.templ), rq[k].f.templ,
                 rq[k].f.subject, b + 2);
        int32_t want = (int32_t)json_integer_value(json_array_get(json_object_get(rq[k].j, "target_ids"), 0));
        assert_int_equal(greedy(m, tok, prompt), want);
        json_decref(rq[k].j);
    }
    al_free(Wr);
    json_decref(sq);
    al_ckpt_close(ref);
    al_tokenizer_free(tok);
    al_model_free(m);
}

static void test_r_rome(void **state)
{
    (void)state;
    al_error e;
    int differ = 0;
    for (int k = 0; k < N_CASES; k++) {
        al_model *m;
        al_tokenizer *tok;
        open_model(&m, &tok);
        req_t rq;
        load_req(&rq, k);
        al_rome_params p;
        golden_params(&p, al_model_cfg(m));
        p.r_rome = true;
        al_rome_result r;
        if (al_rome_compute(m, tok, &rq.f, &p, G.L, &r, &e) != AL_OK) fail_msg("%s", e.msg);
        char path[256];
        snprintf(path, sizeof path, FIX "/edit_%02d.safetensors", k);
        al_ckpt *ref;
        assert_int_equal(al_ckpt_open(&ref, path, &e), AL_OK);
        /* same k*, u and v* as ROME; v_right from the template means (key, output) */
        errs_t er;
        compare(&r, ref, "", &er, false);
        assert_true(er.k <= TOL && er.u <= TOL && er.vs <= TOL);
        assert_memory_equal(r.k_bare, r.k_star, (size_t)r.M * sizeof(float));
        assert_true(fabs(r.division_factor - dot_check(r.k_star, r.u, r.M)) < 1e-6);
        double dv = er.vr;                      /* vs ROME's v_right */
        if (dv > 1e-3) differ++;
        assert_true(r.division_factor > 0);     /* <k*, C^-1 k*> > 0, C SPD */
        assert_int_equal(al_rome_apply(m, p.layer, &r, NULL, &e), AL_OK);
        char prompt[512];
        const char *b = strstr(rq.f.templ, "{}");
        snprintf(prompt, sizeof prompt, "%.*s%s%s", (int)(b - rq.f.templ), rq.f.templ,
                 rq.f.subject, b + 2);
        int32_t want = (int32_t)json_integer_value(json_array_get(json_object_get(rq.j, "target_ids"), 0));
        int32_t got = greedy(m, tok, prompt);
        printf("r-ROME edit_%02d: <k*,u> %.4f (ROME <k_bare,u> %.4f), v_right differs from "
               "ROME's by %.3f relative, greedy %s\n", k, r.division_factor,
               json_number_value(json_object_get(rq.j, "division_factor")), dv,
               got == want ? "= target" : "!= target");
        assert_int_equal(got, want);
        al_ckpt_close(ref);
        al_rome_result_free(&r);
        json_decref(rq.j);
        al_tokenizer_free(tok);
        al_model_free(m);
    }
    assert_true(differ >= 1);
}

/* W' k = W k + v_right <u, k> through the runtime, for both weight layouts: GPT-2
 * Conv1D [M,C] and Llama Linear [C,M] (tiny random Llama of tests/fixtures/runtime). */
static void check_orientation(const char *dir, int layer)
{
    al_error e;
    al_model *m;
    if (al_model_open(&m, dir, NULL, &e) != AL_OK) fail_msg("%s", e.msg);
    const al_model_config *g = al_model_cfg(m);
    int M = g->n_inner, C = g->n_embd;
    int32_t ids[6] = { 1, 5, 9, 3, 7, 2 };
    int pb[2] = { 0, 0 }, pt[2] = { 3, 5 };
    float *k0 = al_malloc((size_t)2 * M * sizeof(float)), *o0 = al_malloc((size_t)2 * C * sizeof(float)),
          *k1 = al_malloc((size_t)2 * M * sizeof(float)), *o1 = al_malloc((size_t)2 * C * sizeof(float));
    al_model_ws *ws;
    assert_int_equal(al_model_ws_new(&ws, m, 1, 6, &e), AL_OK);
    al_hook hk = { .layer = layer, .n_pos = 2, .pos_b = pb, .pos_t = pt, .key = k0, .mlp_out = o0 };
    al_forward_args a = { .tokens = ids, .B = 1, .T = 6, .hook = &hk };
    assert_int_equal(al_model_forward(ws, &a, &e), AL_OK);
    al_rome_result r = { .M = M, .C = C };
    r.u = al_malloc((size_t)M * sizeof(float));
    r.v_right = al_malloc((size_t)C * sizeof(float));
    uint64_t key = al_rng_key(11, 1), ctr = 0;
    for (int i = 0; i < M; i++) r.u[i] = (float)(al_rng_unit_at(key, ctr++) - 0.5);
    for (int i = 0; i < C; i++) r.v_right[i] = (float)(al_rng_unit_at(key, ctr++) - 0.5);
    al_rome_tensor t;
    assert_int_equal(al_rome_apply(m, layer, &r, &t, &e), AL_OK);
    hk.key = k1;
    hk.mlp_out = o1;
    assert_int_equal(al_model_forward(ws, &a, &e), AL_OK);
    double md = 0, mr = 0;
    for (int p = 0; p < 2; p++) {
        double uk = 0;
        for (int i = 0; i < M; i++) uk += (double)r.u[i] * k0[(size_t)p * M + i];
        for (int c = 0; c < C; c++) {
            double want = o0[(size_t)p * C + c] + r.v_right[c] * uk;
            md = fmax(md, fabs(o1[(size_t)p * C + c] - want));
            mr = fmax(mr, fabs(want));
        }
    }
    assert_memory_equal(k0, k1, (size_t)2 * M * sizeof(float));   /* keys unchanged */
    printf("orientation %s (%s [%lld, %lld]): max |W'k - (Wk + v<u,k>)| / max = %.1e\n", dir,
           t.name, (long long)t.rows, (long long)t.cols, md / mr);
    assert_true(md / mr < 1e-5);
    al_free(r.u); al_free(r.v_right);
    al_free(k0); al_free(o0); al_free(k1); al_free(o1);
    al_model_ws_free(ws);
    al_model_free(m);
}

static void test_orientation(void **state)
{
    (void)state;
    check_orientation(MODEL, 2);
    check_orientation("tests/fixtures/runtime/llama_tiny", 1);
}

/* Every allocation failure inside al_rome_compute ends in AL_ERR_NOMEM, leaving no
 * result behind (leaks are caught by the ASan build). */
static void test_nomem(void **state)
{
    (void)state;
    al_model *m;
    al_tokenizer *tok;
    open_model(&m, &tok);
    req_t rq;
    load_req(&rq, 3);
    al_rome_params p;
    golden_params(&p, al_model_cfg(m));
    p.n_templates = 3;
    p.v_num_grad_steps = 2;
    al_rome_result r;
    al_error e;
    int n_fail = 0;
    for (long n = 1; n < 10000; n++) {
        al_alloc_fail_at(n);
        al_status st = al_rome_compute(m, tok, &rq.f, &p, G.L, &r, &e);
        al_alloc_fail_at(0);
        if (st == AL_OK) { al_rome_result_free(&r); break; }
        assert_int_equal(st, AL_ERR_NOMEM);
        assert_null(r.u);
        n_fail++;
    }
    printf("nomem: %d allocation points fail cleanly\n", n_fail);
    assert_true(n_fail > 10);
    json_decref(rq.j);
    al_tokenizer_free(tok);
    al_model_free(m);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    al_error e;
    al_model *m;
    al_tokenizer *tok;
    open_model(&m, &tok);
    al_rome_params p;
    golden_params(&p, al_model_cfg(m));
    al_rome_result r;
    al_fact f = { 0 };
    f.prompt = "Paris is the capital of";
    f.subject = "Berlin";
    f.target_new = " Italy";
    assert_int_equal(al_rome_compute(m, tok, &f, &p, G.L, &r, &e), AL_ERR_USAGE);
    assert_non_null(strstr(e.msg, "not found in the prompt"));
    assert_null(r.u);
    f.subject = "Paris";                       /* full prompt: accepted */
    f.target_new = "";
    assert_int_equal(al_rome_compute(m, tok, &f, &p, G.L, &r, &e), AL_ERR_USAGE);
    assert_non_null(strstr(e.msg, "empty target"));
    f.target_new = " ";
    assert_int_equal(al_rome_compute(m, tok, &f, &p, G.L, &r, &e), AL_ERR_USAGE);
    f.target_new = " Italy";
    f.subject = NULL;
    assert_int_equal(al_rome_compute(m, tok, &f, &p, G.L, &r, &e), AL_ERR_USAGE);
    assert_non_null(strstr(e.msg, "no subject"));
    f.subject = "Paris";
    p.layer = 6;
    assert_int_equal(al_rome_compute(m, tok, &f, &p, G.L, &r, &e), AL_ERR_USAGE);
    assert_non_null(strstr(e.msg, "layer 6 out of range"));
    p.layer = -1;
    assert_int_equal(al_rome_compute(m, tok, &f, &p, G.L, &r, &e), AL_ERR_USAGE);
    p.layer = 2;
    assert_int_equal(al_rome_compute(m, tok, &f, &p, NULL, &r, &e), AL_ERR_USAGE);
    assert_non_null(strstr(e.msg, "mom2_adjustment"));
    const char *bad_ctx[] = { "{}", "no placeholder." };
    p.context_templates = bad_ctx;
    p.n_templates = 2;
    assert_int_equal(al_rome_compute(m, tok, &f, &p, G.L, &r, &e), AL_ERR_USAGE);
    assert_non_null(strstr(e.msg, "exactly one '{}'"));
    f.templ = "{} and {} are capitals of";     /* two placeholders */
    p.context_templates = NULL;
    assert_int_equal(al_rome_compute(m, tok, &f, &p, G.L, &r, &e), AL_ERR_USAGE);
    f.templ = NULL;
    /* identity C, one template, full prompt (subject located in it): runs */
    p.mom2_adjustment = false;
    p.v_num_grad_steps = 3;
    assert_int_equal(al_rome_compute(m, tok, &f, &p, NULL, &r, &e), AL_OK);
    assert_int_equal(r.steps, 3);
    assert_int_equal(r.adam_steps, 2);
    /* early stop at iteration 0: no step, v* = target_init */
    al_rome_result r3;
    p.early_stop_loss = 1e9;
    assert_int_equal(al_rome_compute(m, tok, &f, &p, NULL, &r3, &e), AL_OK);
    assert_int_equal(r3.steps, 1);
    assert_int_equal(r3.adam_steps, 0);
    assert_memory_equal(r3.v_star, r3.target_init, (size_t)r3.C * sizeof(float));
    al_rome_result_free(&r3);
    al_rome_result r2 = r;
    r2.M = 7;
    assert_int_equal(al_rome_apply(m, 2, &r2, NULL, &e), AL_ERR_USAGE);
    assert_int_equal(al_rome_apply(m, 9, &r, NULL, &e), AL_ERR_USAGE);
    al_rome_result_free(&r);
    al_rome_result_free(&r);                   /* idempotent */
    al_rome_result_free(NULL);
    al_tokenizer_free(tok);
    al_model_free(m);
}

static void test_defaults(void **state)
{
    (void)state;
    al_model_config g = { .arch = AL_ARCH_GPT2, .n_layer = 48, .n_embd = 1600 };
    al_rome_params p;
    al_rome_params_default(&p, &g);
    assert_int_equal(p.layer, 17);
    assert_int_equal(p.v_num_grad_steps, 20);
    assert_true(p.v_weight_decay == 0.5 && p.clamp_norm_factor == 4 && p.mom2_adjustment);
    g.n_layer = 24; g.n_embd = 1024;
    al_rome_params_default(&p, &g);
    assert_int_equal(p.layer, 8);
    assert_true(p.clamp_norm_factor == 3);
    g.n_layer = 36; g.n_embd = 1280;
    al_rome_params_default(&p, &g);
    assert_int_equal(p.layer, 12);
    g = (al_model_config){ .arch = AL_ARCH_LLAMA, .n_layer = 32, .n_embd = 4096 };
    al_rome_params_default(&p, &g);
    assert_int_equal(p.layer, 5);
    assert_int_equal(p.v_num_grad_steps, 25);
    assert_true(p.v_weight_decay == 1e-3 && !p.mom2_adjustment && p.v_lr == 0.5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_cholesky),
        cmocka_unit_test(test_down_weight),
        cmocka_unit_test(test_golden_edits),
        cmocka_unit_test(test_sequential),
        cmocka_unit_test(test_r_rome),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_orientation),
        cmocka_unit_test(test_nomem),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
