/* tests/test_pipeline.c: recipes run end to end through merge/pipeline.c, checked
 * against values computed here, independently, element by element:
 *   - gradients over layers: t = layer/(L-1), tensors outside the blocks at t = 0;
 *   - filters: first match wins, no match falls through to the next level;
 *   - slices: layers renumbered, embeddings from the first slice, head from the last;
 *   - errors: shapes that do not fit, missing tensors; nothing written on failure. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "util/testutil.h"

#include "../core/alloc.h"
#include "../core/dtype.h"
#include "../io/checkpoint.h"
#include "../merge/pipeline.h"
#include "../recipes/recipe.h"

#define L 4      /* layers */
#define D 6      /* hidden */
#define V 10     /* vocab */
#define F 8      /* mlp */

static char g_dir[128];
static bool exists_out(const char *out);

/* Value of element i of tensor `name` in model `m`: distinct per model/tensor/element. */
static float val(int m, const char *name, int64_t i)
{
    uint32_t h = 2166136261u;
    for (const char *p = name; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
    return (float)((int)((h >> 8) % 97) - 48) * 0.01f + (float)m * 0.25f + sinf((float)i) * (float)(m + 1) * 0.1f;
}

typedef struct { char name[96]; int ndim; int64_t shape[2]; } tspec;

static int model_tensors(tspec *t, int dim)
{
    int n = 0;
    snprintf(t[n].name, 96, "model.embed_tokens.weight"); t[n].ndim = 2; t[n].shape[0] = V; t[n].shape[1] = dim; n++;
    for (int l = 0; l < L; l++) {
        snprintf(t[n].name, 96, "model.layers.%d.self_attn.q_proj.weight", l); t[n].ndim = 2; t[n].shape[0] = dim; t[n].shape[1] = dim; n++;
        snprintf(t[n].name, 96, "model.layers.%d.mlp.up_proj.weight", l); t[n].ndim = 2; t[n].shape[0] = F; t[n].shape[1] = dim; n++;
        snprintf(t[n].name, 96, "model.layers.%d.input_layernorm.weight", l); t[n].ndim = 1; t[n].shape[0] = dim; n++;
    }
    snprintf(t[n].name, 96, "model.norm.weight"); t[n].ndim = 1; t[n].shape[0] = dim; n++;
    snprintf(t[n].name, 96, "lm_head.weight"); t[n].ndim = 2; t[n].shape[0] = V; t[n].shape[1] = dim; n++;
    return n;
}

static int64_t numel(const tspec *t) { return t->ndim == 1 ? t->shape[0] : t->shape[0] * t->shape[1]; }

static void make_model(const char *name, int m, int dim)
{
    char path[256], cfg[300];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    tspec t[64];
    int n = model_tensors(t, dim);
    al_error err = {0};
    al_writer *w = NULL;
    al_writer_opts o = {.format = AL_FMT_SAFETENSORS, .dir = true};
    assert_int_equal(al_writer_open(&w, path, &o, &err), AL_OK);
    for (int i = 0; i < n; i++) assert_int_equal(al_writer_add(w, t[i].name, AL_F32, t[i].ndim, t[i].shape, &err), AL_OK);
    assert_int_equal(al_writer_begin(w, &err), AL_OK);
    for (int i = 0; i < n; i++) {
        float buf[256];
        for (int64_t k = 0; k < numel(&t[i]); k++) buf[k] = val(m, t[i].name, k);
        assert_int_equal(al_writer_write(w, buf, (uint64_t)numel(&t[i]) * 4, &err), AL_OK);
    }
    snprintf(cfg, sizeof cfg, "%s/config.json", al_writer_tmpdir(w));
    FILE *f = fopen(cfg, "w");
    fprintf(f, "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"num_hidden_layers\": %d}\n", L);
    fclose(f);
    if (al_writer_commit(w, &err) != AL_OK) fail_msg("%s", err.msg);
    al_writer_free(w);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/alloy-test-pipeline.XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    make_model("base", 0, D);
    make_model("ft1", 1, D);
    make_model("ft2", 2, D);
    make_model("wide", 3, D + 2);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return tu_rm_rf(g_dir);
}

/* Replace every "DIR" in the recipe template with the test directory. */
static al_status run_recipe(const char *tmpl, const char *out, al_error *err)
{
    char text[4096] = {0};
    size_t o = 0;
    for (const char *p = tmpl; *p && o + 200 < sizeof text;) {
        if (strncmp(p, "DIR", 3) == 0) { o += (size_t)snprintf(text + o, sizeof text - o, "%s", g_dir); p += 3; }
        else text[o++] = *p++;
    }
    al_recipe *r = NULL;
    al_status s = al_recipe_parse_string(text, strlen(text), "test.yaml", NULL, &r, err);
    if (s != AL_OK) return s;
    char op[300];
    snprintf(op, sizeof op, "%s/%s", g_dir, out);
    al_merge_opts mo = {0};
    s = al_merge_run(r, op, &mo, err);
    al_recipe_free(r);
    return s;
}

static float *read_out(const char *out, const char *tensor, int64_t *n)
{
    char p[300];
    snprintf(p, sizeof p, "%s/%s", g_dir, out);
    al_error err = {0};
    al_ckpt *c = NULL;
    if (al_ckpt_open(&c, p, &err) != AL_OK) fail_msg("%s", err.msg);
    long i = al_ckpt_find(c, tensor);
    if (i < 0) fail_msg("output has no tensor %s", tensor);
    const al_tensor_info *t = al_ckpt_info(c, (size_t)i);
    al_shape_numel(t->ndim, t->shape, n);
    float *buf = malloc((size_t)*n * 4 + 4);
    assert_int_equal(al_ckpt_read(c, (size_t)i, 0, t->shape[0], buf, AL_F32, &err), AL_OK);
    al_ckpt_close(c);
    return buf;
}

static void expect_close(float got, double want, const char *what, int64_t i)
{
    if (fabs((double)got - want) > 1e-6 * (1.0 + fabs(want)))
        fail_msg("%s[%lld]: got %.9g, want %.9g", what, (long long)i, (double)got, want);
}

/* modules: {default: ...} is the models:/slices: merge of a single-module model, with
 * the module's parameters between the slice's and the top level's (recipes.md 1.4):
 * here weight comes from the module (0.25, over the top level's 9), the first model's
 * own weight (0.5) wins over both; lambda from the top level. Multi-module recipes are
 * refused by name. */
static void test_modules_default(void **state)
{
    (void)state;
    al_error err = {0};
    const char *recipe =
        "merge_method: task_arithmetic\n"
        "base_model: DIR/base\n"
        "modules:\n"
        "  default:\n"
        "    slices:\n"
        "      - sources:\n"
        "          - model: DIR/ft1\n"
        "            layer_range: [0, 4]\n"
        "            parameters: {weight: 0.5}\n"
        "          - model: DIR/ft2\n"
        "            layer_range: [0, 4]\n"
        "          - model: DIR/base\n"
        "            layer_range: [0, 4]\n"
        "    parameters: {weight: 0.25}\n"
        "parameters: {weight: 9.0, lambda: 2.0}\n"
        "dtype: float32\n";
    if (run_recipe(recipe, "modules", &err) != AL_OK) fail_msg("%s", err.msg);
    const char *names[3] = {"model.layers.2.mlp.up_proj.weight", "model.embed_tokens.weight", "lm_head.weight"};
    for (int k = 0; k < 3; k++) {
        int64_t ne;
        float *o = read_out("modules", names[k], &ne);
        for (int64_t i = 0; i < ne; i++) {
            double b = val(0, names[k], i);
            double want = b + 2.0 * (0.5 * (val(1, names[k], i) - b) + 0.25 * (val(2, names[k], i) - b));
            expect_close(o[i], want, names[k], i);
        }
        free(o);
    }
    const char *multi =
        "merge_method: linear\n"
        "modules:\n"
        "  text_decoder:\n"
        "    models:\n"
        "      - model: DIR/ft1\n"
        "        parameters: {weight: 1.0}\n"
        "  vision_tower:\n"
        "    models:\n"
        "      - model: DIR/ft1\n"
        "        parameters: {weight: 1.0}\n";
    assert_int_equal(run_recipe(multi, "multi", &err), AL_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "module 'vision_tower'"));
    assert_false(exists_out("multi"));
}

/* ---- model+lora ----------------------------------------------------------------- */

#define LR 2   /* adapter rank */

static float lval(int which, int64_t i) { return (float)((int)((i * 7 + which * 3) % 11) - 5) * 0.05f; }

/* A PEFT adapter for ft1 in DIR/name: q_proj of layer 1 (Linear: A r x D, B D x r),
 * the embedding (lora_embedding_A r x V, lora_embedding_B D x r) and model.norm
 * replaced (modules_to_save); config as given. */
static void make_adapter(const char *name, const char *config, const char *qname, int64_t qa_cols)
{
    char dir[256], p[300];
    snprintf(dir, sizeof dir, "%s/%s", g_dir, name);
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(config, f);
    fclose(f);
    struct { const char *n; int ndim; int64_t shape[2]; } t[5] = {
        { qname, 2, { LR, qa_cols } },
        { "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight", 2, { D, LR } },
        { "base_model.model.model.embed_tokens.lora_embedding_A", 2, { LR, V } },
        { "base_model.model.model.embed_tokens.lora_embedding_B", 2, { D, LR } },
        { "base_model.model.model.norm.weight", 1, { D, 0 } },
    };
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    al_error err = {0};
    al_writer *w = NULL;
    al_writer_opts o = {.format = AL_FMT_SAFETENSORS};
    assert_int_equal(al_writer_open(&w, p, &o, &err), AL_OK);
    for (int i = 0; i < 5; i++) assert_int_equal(al_writer_add(w, t[i].n, AL_F32, t[i].ndim, t[i].shape, &err), AL_OK);
    assert_int_equal(al_writer_begin(w, &err), AL_OK);
    for (int i = 0; i < 5; i++) {
        float buf[64];
        int64_t ne = t[i].ndim == 1 ? t[i].shape[0] : t[i].shape[0] * t[i].shape[1];
        for (int64_t k = 0; k < ne; k++) buf[k] = lval(i, k);
        assert_int_equal(al_writer_write(w, buf, (uint64_t)ne * 4, &err), AL_OK);
    }
    if (al_writer_commit(w, &err) != AL_OK) fail_msg("%s", err.msg);
    al_writer_free(w);
}

/* ft1+adapter through passthrough: W + s B A with s = alpha/r (and alpha/sqrt(r) for
 * rsLoRA), the embedding with s (B A)^T, the replaced norm, the rest untouched; the
 * product is computed here with plain loops. Then the refusals. */
static void test_lora(void **state)
{
    (void)state;
    al_error err = {0};
    for (int rs = 0; rs < 2; rs++) {
        char cfg[256];
        snprintf(cfg, sizeof cfg, "{\"peft_type\": \"LORA\", \"r\": %d, \"lora_alpha\": 3, \"use_rslora\": %s, "
                 "\"bias\": \"none\", \"target_modules\": [\"q_proj\"]}", LR, rs ? "true" : "false");
        make_adapter(rs ? "lora_rs" : "lora", cfg, "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight", D);
        const double sc = rs ? 3.0 / sqrt((double)LR) : 3.0 / LR;
        const char *recipe = rs ? "models:\n  - model: DIR/ft1+DIR/lora_rs\nmerge_method: passthrough\ndtype: float32\n"
                                : "models:\n  - model: DIR/ft1+DIR/lora\nmerge_method: passthrough\ndtype: float32\n";
        if (run_recipe(recipe, "lora_out", &err) != AL_OK) fail_msg("%s", err.msg);
        int64_t ne;
        float *o = read_out("lora_out", "model.layers.1.self_attn.q_proj.weight", &ne);
        for (int64_t r = 0; r < D; r++)
            for (int64_t c = 0; c < D; c++) {
                double d = 0.0;
                for (int k = 0; k < LR; k++) d += (double)lval(1, r * LR + k) * (double)lval(0, k * D + c);
                expect_close(o[r * D + c], val(1, "model.layers.1.self_attn.q_proj.weight", r * D + c) + sc * d, "q_proj", r * D + c);
            }
        free(o);
        o = read_out("lora_out", "model.embed_tokens.weight", &ne);              /* V x D */
        for (int64_t v = 0; v < V; v++)
            for (int64_t c = 0; c < D; c++) {
                double d = 0.0;                      /* (B A)^T[v][c] = sum_k B[c][k] A[k][v] */
                for (int k = 0; k < LR; k++) d += (double)lval(3, c * LR + k) * (double)lval(2, k * V + v);
                expect_close(o[v * D + c], val(1, "model.embed_tokens.weight", v * D + c) + sc * d, "embed", v * D + c);
            }
        free(o);
        o = read_out("lora_out", "model.norm.weight", &ne);
        for (int64_t i = 0; i < ne; i++) expect_close(o[i], lval(4, i), "norm", i);
        free(o);
        o = read_out("lora_out", "model.layers.0.self_attn.q_proj.weight", &ne);   /* not targeted */
        for (int64_t i = 0; i < ne; i++) expect_close(o[i], val(1, "model.layers.0.self_attn.q_proj.weight", i), "q0", i);
        free(o);
        char p[300];
        snprintf(p, sizeof p, "%s/lora_out", g_dir);
        tu_rm_rf(p);
    }
    /* row by row through the checkpoint API gives the same rows as one read, for the
     * plain and the transposed product; views of adapted tensors are refused */
    {
        char mp[300], lp[300];
        snprintf(mp, sizeof mp, "%s/ft1", g_dir);
        snprintf(lp, sizeof lp, "%s/lora", g_dir);
        al_ckpt *c = NULL;
        assert_int_equal(al_ckpt_open(&c, mp, &err), AL_OK);
        assert_int_equal(al_ckpt_attach_lora(c, lp, &err), AL_OK);
        const char *names[2] = {"model.embed_tokens.weight", "model.layers.1.self_attn.q_proj.weight"};
        for (int k = 0; k < 2; k++) {
            long ti = al_ckpt_find(c, names[k]);
            const al_tensor_info *t = al_ckpt_info(c, (size_t)ti);
            int64_t rows = t->shape[0], cols = t->shape[1];
            float whole[V * D], row[D];
            uint16_t half[V * D];
            assert_int_equal(al_ckpt_read(c, (size_t)ti, 0, rows, whole, AL_F32, &err), AL_OK);
            assert_int_equal(al_ckpt_read(c, (size_t)ti, 0, rows, half, AL_BF16, &err), AL_OK);
            for (int64_t r = 0; r < rows; r++) {
                assert_int_equal(al_ckpt_read(c, (size_t)ti, r, 1, row, AL_F32, &err), AL_OK);
                assert_memory_equal(row, whole + r * cols, (size_t)cols * sizeof *row);
                for (int64_t j = 0; j < cols; j++) assert_int_equal(half[r * cols + j], al_f32_to_bf16(row[j]));
            }
            al_view v;
            assert_int_equal(al_ckpt_view(c, (size_t)ti, &v, &err), AL_ERR_UNSUPPORTED);
        }
        al_ckpt_close(c);
    }
    /* refusals: each names its reason, and nothing is written */
    make_adapter("lora_dora", "{\"r\": 2, \"lora_alpha\": 2, \"use_dora\": true}",
                 "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight", D);
    make_adapter("lora_shape", "{\"r\": 2, \"lora_alpha\": 2}",
                 "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight", D + 1);
    make_adapter("lora_missing", "{\"r\": 2, \"lora_alpha\": 2}",
                 "base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight", D);
    const struct { const char *lora; al_status st; const char *msg; } bad[] = {
        { "lora_dora", AL_ERR_UNSUPPORTED, "DoRA" },
        { "lora_shape", AL_ERR_SHAPE, "q_proj" },
        { "lora_missing", AL_ERR_FORMAT, "lora_A but no lora_B" },
        { "nowhere", AL_ERR_NOTFOUND, "LoRA adapter of" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char recipe[300];
        snprintf(recipe, sizeof recipe, "models:\n  - model: DIR/ft1+DIR/%s\nmerge_method: passthrough\n", bad[i].lora);
        assert_int_equal(run_recipe(recipe, "lora_bad", &err), bad[i].st);
        if (!strstr(err.msg, bad[i].msg)) fail_msg("%s: '%s' lacks '%s'", bad[i].lora, err.msg, bad[i].msg);
        assert_false(exists_out("lora_bad"));
    }
}

/* task_arithmetic with lambda: [0.2, 1.0]: layer l gets 0.2 + 0.8 l/3; the embedding,
 * final norm and head are evaluated at t = 0. */
static void test_lambda_gradient(void **state)
{
    (void)state;
    al_error err = {0};
    const char *recipe =
        "merge_method: task_arithmetic\n"
        "base_model: DIR/base\n"
        "models:\n"
        "  - model: DIR/ft1\n"
        "    parameters: {weight: 0.5}\n"
        "  - model: DIR/ft2\n"
        "    parameters: {weight: 0.25}\n"
        "parameters:\n"
        "  lambda: [0.2, 1.0]\n";
    if (run_recipe(recipe, "ta", &err) != AL_OK) fail_msg("%s", err.msg);
    tspec t[64];
    int n = model_tensors(t, D);
    for (int k = 0; k < n; k++) {
        int layer = -1;
        sscanf(t[k].name, "model.layers.%d.", &layer);
        double lambda = layer >= 0 ? 0.2 + 0.8 * layer / (L - 1.0) : 0.2;
        int64_t ne;
        float *o = read_out("ta", t[k].name, &ne);
        for (int64_t i = 0; i < ne; i++) {
            double b = val(0, t[k].name, i);
            double want = b + lambda * (0.5 * ((double)val(1, t[k].name, i) - b) + 0.25 * ((double)val(2, t[k].name, i) - b));
            expect_close(o[i], want, t[k].name, i);
        }
        free(o);
    }
}

/* linear, per-model conditional weights: ft1 gets 0.3 on q_proj, a [0,1] gradient on
 * mlp, and falls through to the top-level 0.7 elsewhere; ft2 always 0.7. */
static void test_filters(void **state)
{
    (void)state;
    al_error err = {0};
    const char *recipe =
        "merge_method: linear\n"
        "models:\n"
        "  - model: DIR/ft1\n"
        "    parameters:\n"
        "      weight:\n"
        "        - filter: q_proj\n"
        "          value: 0.3\n"
        "        - filter: mlp\n"
        "          value: [0, 1]\n"
        "  - model: DIR/ft2\n"
        "parameters:\n"
        "  weight: 0.7\n"
        "  normalize: false\n";
    if (run_recipe(recipe, "lin", &err) != AL_OK) fail_msg("%s", err.msg);
    tspec t[64];
    int n = model_tensors(t, D);
    for (int k = 0; k < n; k++) {
        int layer = -1;
        sscanf(t[k].name, "model.layers.%d.", &layer);
        double w1 = 0.7;
        if (strstr(t[k].name, "q_proj")) w1 = 0.3;
        else if (strstr(t[k].name, "mlp")) w1 = layer / (L - 1.0);
        int64_t ne;
        float *o = read_out("lin", t[k].name, &ne);
        for (int64_t i = 0; i < ne; i++)
            expect_close(o[i], w1 * val(1, t[k].name, i) + 0.7 * val(2, t[k].name, i), t[k].name, i);
        free(o);
    }
}

/* passthrough slices: ft1 layers [0,2) then ft2 layers [1,3) -> 4 output layers. */
static void test_slices(void **state)
{
    (void)state;
    al_error err = {0};
    const char *recipe =
        "slices:\n"
        "  - sources:\n"
        "      - model: DIR/ft1\n"
        "        layer_range: [0, 2]\n"
        "  - sources:\n"
        "      - model: DIR/ft2\n"
        "        layer_range: [1, 3]\n"
        "        parameters:\n"
        "          scale:\n"
        "            - filter: up_proj\n"
        "              value: 2.0\n"
        "merge_method: passthrough\n"
        "dtype: float32\n";
    if (run_recipe(recipe, "slices", &err) != AL_OK) fail_msg("%s", err.msg);
    const int src_model[4] = {1, 1, 2, 2}, src_layer[4] = {0, 1, 1, 2};
    for (int l = 0; l < 4; l++) {
        const char *kinds[3] = {"self_attn.q_proj", "mlp.up_proj", "input_layernorm"};
        for (int k = 0; k < 3; k++) {
            char on[96], in[96];
            snprintf(on, sizeof on, "model.layers.%d.%s.weight", l, kinds[k]);
            snprintf(in, sizeof in, "model.layers.%d.%s.weight", src_layer[l], kinds[k]);
            double scale = src_model[l] == 2 && k == 1 ? 2.0 : 1.0;
            int64_t ne;
            float *o = read_out("slices", on, &ne);
            for (int64_t i = 0; i < ne; i++) expect_close(o[i], scale * val(src_model[l], in, i), on, i);
            free(o);
        }
    }
    int64_t ne;
    float *o = read_out("slices", "model.embed_tokens.weight", &ne);      /* first slice */
    for (int64_t i = 0; i < ne; i++) expect_close(o[i], val(1, "model.embed_tokens.weight", i), "embed", i);
    free(o);
    o = read_out("slices", "lm_head.weight", &ne);                       /* last slice */
    for (int64_t i = 0; i < ne; i++) expect_close(o[i], val(2, "lm_head.weight", i), "lm_head", i);
    free(o);
    /* no layer 4 and the config says 4 layers */
    char p[300];
    snprintf(p, sizeof p, "%s/slices", g_dir);
    al_ckpt *c = NULL;
    assert_int_equal(al_ckpt_open(&c, p, &err), AL_OK);
    assert_int_equal(al_ckpt_find(c, "model.layers.4.mlp.up_proj.weight"), -1);
    assert_int_equal(al_ckpt_count(c), 1 + 4 * 3 + 2);
    al_ckpt_close(c);
    snprintf(p, sizeof p, "%s/slices/config.json", g_dir);
    FILE *f = fopen(p, "r");
    char buf[1024] = {0};
    assert_non_null(f);
    assert_true(fread(buf, 1, sizeof buf - 1, f) > 0);
    fclose(f);
    assert_non_null(strstr(buf, "\"num_hidden_layers\": 4"));
}

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* Write model `name` = base + the task vector of model m trimmed to its k largest
 * |delta| over the whole model (k = floor(density * N)), chosen here by a full sort. */
static void make_trimmed(const char *name, int m, double density)
{
    tspec t[64];
    int n = model_tensors(t, D);
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += numel(&t[i]);
    float *all = malloc((size_t)total * 4);
    int64_t o = 0;
    for (int i = 0; i < n; i++)
        for (int64_t e = 0; e < numel(&t[i]); e++) all[o++] = fabsf(val(m, t[i].name, e) - val(0, t[i].name, e));
    qsort(all, (size_t)total, 4, cmp_desc);
    int64_t k = (int64_t)floor(density * (double)total);
    float thr = all[k - 1];
    free(all);
    char path[256];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    al_error err = {0};
    al_writer *w = NULL;
    al_writer_opts wo = {.format = AL_FMT_SAFETENSORS, .dir = true};
    assert_int_equal(al_writer_open(&w, path, &wo, &err), AL_OK);
    for (int i = 0; i < n; i++) assert_int_equal(al_writer_add(w, t[i].name, AL_F32, t[i].ndim, t[i].shape, &err), AL_OK);
    assert_int_equal(al_writer_begin(w, &err), AL_OK);
    for (int i = 0; i < n; i++) {
        float buf[256];
        for (int64_t e = 0; e < numel(&t[i]); e++) {
            float b = val(0, t[i].name, e), d = val(m, t[i].name, e) - b;
            buf[e] = fabsf(d) >= thr ? val(m, t[i].name, e) : b;
        }
        assert_int_equal(al_writer_write(w, buf, (uint64_t)numel(&t[i]) * 4, &err), AL_OK);
    }
    assert_int_equal(al_writer_commit(w, &err), AL_OK);
    al_writer_free(w);
}

/* TIES with trim_scope: model equals TIES with density 1 on task vectors trimmed over
 * the whole model beforehand (by sorting, here). Per-tensor trimming differs. */
static void test_ties_trim_model(void **state)
{
    (void)state;
    al_error err = {0};
    make_trimmed("trim1", 1, 0.3);
    make_trimmed("trim2", 2, 0.6);
    const char *model_wide =
        "merge_method: ties\nbase_model: DIR/base\nmodels:\n"
        "  - model: DIR/ft1\n    parameters: {weight: 1.0, density: 0.3}\n"
        "  - model: DIR/ft2\n    parameters: {weight: 0.5, density: 0.6}\n"
        "parameters: {trim_scope: model}\n";
    const char *pretrimmed =
        "merge_method: ties\nbase_model: DIR/base\nmodels:\n"
        "  - model: DIR/trim1\n    parameters: {weight: 1.0, density: 1.0}\n"
        "  - model: DIR/trim2\n    parameters: {weight: 0.5, density: 1.0}\n";
    const char *per_tensor =
        "merge_method: ties\nbase_model: DIR/base\nmodels:\n"
        "  - model: DIR/ft1\n    parameters: {weight: 1.0, density: 0.3}\n"
        "  - model: DIR/ft2\n    parameters: {weight: 0.5, density: 0.6}\n";
    if (run_recipe(model_wide, "tm", &err) != AL_OK) fail_msg("%s", err.msg);
    if (run_recipe(pretrimmed, "tp", &err) != AL_OK) fail_msg("%s", err.msg);
    if (run_recipe(per_tensor, "tt", &err) != AL_OK) fail_msg("%s", err.msg);
    tspec t[64];
    int n = model_tensors(t, D);
    int64_t differ = 0;
    for (int i = 0; i < n; i++) {
        int64_t ne;
        float *a = read_out("tm", t[i].name, &ne), *b = read_out("tp", t[i].name, &ne), *c = read_out("tt", t[i].name, &ne);
        for (int64_t e = 0; e < ne; e++) {
            expect_close(a[e], b[e], t[i].name, e);
            differ += fabsf(a[e] - c[e]) > 1e-6f;
        }
        free(a); free(b); free(c);
    }
    assert_true(differ > 0);   /* model-wide and per-tensor trimming are different merges */
    /* densities that vary by tensor have no single model-wide k */
    const char *varying =
        "merge_method: ties\nbase_model: DIR/base\nmodels:\n"
        "  - model: DIR/ft1\n    parameters: {weight: 1.0, density: [0.2, 0.8]}\n"
        "parameters: {trim_scope: model}\n";
    assert_int_equal(run_recipe(varying, "tv", &err), AL_ERR_RECIPE);
    assert_non_null(strstr(err.msg, "one density per model"));
    assert_false(exists_out("tv"));
}

/* All tensors of model m (in the test's order) as one flat array, for byte checks. */
static void expect_same_as_model(const char *out, int m)
{
    tspec t[64];
    int n = model_tensors(t, D);
    for (int k = 0; k < n; k++) {
        int64_t ne;
        float *o = read_out(out, t[k].name, &ne);
        for (int64_t i = 0; i < ne; i++) {
            float want = val(m, t[k].name, i);
            if (memcmp(&o[i], &want, 4) != 0) fail_msg("%s %s[%lld]: %a != %a", out, t[k].name, (long long)i, (double)o[i], (double)want);
        }
        free(o);
    }
}

/* as the LiNeS reference computes it: alpha + beta * (l / (L - 1)), in double */
static double lines_s(double a, double b, int layer) { return layer < 0 ? a : a + b * ((double)layer / (L - 1.0)); }

/* merge_method: lines: each block's scale factor, exactly; the endpoints bit for bit. */
static void test_lines_single(void **state)
{
    (void)state;
    al_error err = {0};
    const char *endpoints[2] = {
        "merge_method: lines\nbase_model: DIR/base\nmodels:\n  - model: DIR/ft1\nparameters: {alpha: 1.0, beta: 0.0}\n",
        "merge_method: lines\nbase_model: DIR/base\nmodels:\n  - model: DIR/ft1\nparameters: {alpha: 0.0, beta: 0.0}\n",
    };
    if (run_recipe(endpoints[0], "l10", &err) != AL_OK) fail_msg("%s", err.msg);
    expect_same_as_model("l10", 1);      /* alpha 1, beta 0: the fine-tune */
    if (run_recipe(endpoints[1], "l00", &err) != AL_OK) fail_msg("%s", err.msg);
    expect_same_as_model("l00", 0);      /* alpha 0, beta 0: the base */

    /* alpha 0.2, beta defaults to 1 - alpha = 0.8 */
    const char *recipe = "merge_method: lines\nbase_model: DIR/base\nmodels:\n  - model: DIR/ft1\nparameters: {alpha: 0.2}\n";
    char text[1024] = {0};
    for (const char *p = recipe, *q; (q = strstr(p, "DIR")) || *p; p = q + 3) {
        if (!q) { strcat(text, p); break; }
        strncat(text, p, (size_t)(q - p));
        strcat(text, g_dir);
    }
    al_recipe *r = NULL;
    assert_int_equal(al_recipe_parse_string(text, strlen(text), "t.yaml", NULL, &r, &err), AL_OK);
    al_merge_opts mo = {0};
    al_merge_job *j = NULL;
    if (al_merge_job_build(r, 0, &mo, &j, &err) != AL_OK) fail_msg("%s", err.msg);
    for (size_t i = 0; i < al_merge_job_count(j); i++) {
        const al_job_tensor *t = al_merge_job_tensor(j, i);
        int layer = -1;
        sscanf(t->name, "model.layers.%d.", &layer);
        char want[64];
        snprintf(want, sizeof want, "lines_scale=%.17g", lines_s(0.2, 0.8, layer));
        bool found = false;
        for (size_t k = 0; k < t->n_params; k++) found |= strcmp(t->params[k], want) == 0;
        if (!found) fail_msg("%s: no %s", t->name, want);
    }
    char op[300];
    snprintf(op, sizeof op, "%s/l28", g_dir);
    if (al_merge_job_run(j, op, &err) != AL_OK) fail_msg("%s", err.msg);
    al_merge_job_free(j);
    al_recipe_free(r);
    tspec t[64];
    int n = model_tensors(t, D);
    for (int k = 0; k < n; k++) {
        int layer = -1;
        sscanf(t[k].name, "model.layers.%d.", &layer);
        double sc = lines_s(0.2, 0.8, layer);
        int64_t ne;
        float *o = read_out("l28", t[k].name, &ne);
        for (int64_t i = 0; i < ne; i++) {
            double b = val(0, t[k].name, i), x = val(1, t[k].name, i);
            float want = (float)(b + sc * (x - b));
            if (memcmp(&o[i], &want, 4) != 0) fail_msg("%s[%lld]", t[k].name, (long long)i);
        }
        free(o);
    }
}

/* lines: on task arithmetic, with a fixed alpha and with alpha: auto, whose value is
 * checked against ||sum_t tau_t||_1 / (T ||tau_merged||_1) computed here. */
static void test_lines_multi(void **state)
{
    (void)state;
    al_error err = {0};
    tspec t[64];
    int n = model_tensors(t, D);
    double num = 0, den = 0;
    for (int k = 0; k < n; k++)
        for (int64_t i = 0; i < numel(&t[k]); i++) {
            double b = val(0, t[k].name, i), d1 = (double)val(1, t[k].name, i) - b, d2 = (double)val(2, t[k].name, i) - b;
            num += fabs(d1 + d2);
            float merged = (float)(b + (0.5 * (double)(val(1, t[k].name, i) - val(0, t[k].name, i)) +
                                        0.25 * (double)(val(2, t[k].name, i) - val(0, t[k].name, i))));
            den += fabs((double)merged - b);
        }
    double alpha_ref = num / (2.0 * den);
    for (int mode = 0; mode < 2; mode++) {
        char recipe[600];
        snprintf(recipe, sizeof recipe,
                 "merge_method: task_arithmetic\nbase_model: DIR/base\nmodels:\n"
                 "  - model: DIR/ft1\n    parameters: {weight: 0.5}\n"
                 "  - model: DIR/ft2\n    parameters: {weight: 0.25}\n"
                 "lines: {alpha: %s, beta: 0.6}\n", mode ? "auto" : "0.3");
        const char *out = mode ? "lauto" : "lfix";
        if (run_recipe(recipe, out, &err) != AL_OK) fail_msg("%s", err.msg);
        double alpha = mode ? alpha_ref : 0.3;
        for (int k = 0; k < n; k++) {
            int layer = -1;
            sscanf(t[k].name, "model.layers.%d.", &layer);
            double sc = lines_s(alpha, 0.6, layer);
            int64_t ne;
            float *o = read_out(out, t[k].name, &ne);
            for (int64_t i = 0; i < ne; i++) {
                double b = val(0, t[k].name, i);
                double want = b + sc * (0.5 * ((double)val(1, t[k].name, i) - b) + 0.25 * ((double)val(2, t[k].name, i) - b));
                /* auto: alpha from sums of F32 outputs, so a few ulps of slack */
                if (fabs((double)o[i] - want) > 4e-7 * (1.0 + fabs(want)))
                    fail_msg("%s %s[%lld]: got %.9g want %.9g", out, t[k].name, (long long)i, (double)o[i], want);
            }
            free(o);
        }
    }
    /* the modifier is refused on methods whose result is not a task vector */
    const char *bad = "merge_method: slerp\nbase_model: DIR/base\nmodels:\n  - model: DIR/ft1\n"
                      "parameters: {t: 0.5}\nlines: {alpha: 0.5, beta: 0.5}\n";
    assert_int_equal(run_recipe(bad, "lbad", &err), AL_ERR_RECIPE);
    assert_non_null(strstr(err.msg, "test.yaml:6:8"));
}

static bool exists_out(const char *out)
{
    char p[300];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", g_dir, out);
    return stat(p, &st) == 0;
}

static void test_errors(void **state)
{
    (void)state;
    al_error err = {0};
    /* shapes that do not fit: named tensor, both shapes */
    const char *bad_shape =
        "merge_method: task_arithmetic\nbase_model: DIR/base\nmodels:\n  - model: DIR/wide\n    parameters: {weight: 1}\n";
    assert_int_equal(run_recipe(bad_shape, "bad1", &err), AL_ERR_SHAPE);
    if (!strstr(err.msg, "tensor 'model.embed_tokens.weight': model '") || !strstr(err.msg, "/wide' has shape [10, 8]") ||
        !strstr(err.msg, "/base' has [10, 6]"))
        fail_msg("message: %s", err.msg);
    assert_false(exists_out("bad1"));
    /* layer range past the model */
    const char *bad_range =
        "slices:\n  - sources:\n      - model: DIR/ft1\n        layer_range: [2, 9]\nmerge_method: passthrough\n";
    assert_int_equal(run_recipe(bad_range, "bad2", &err), AL_ERR_RECIPE);
    assert_non_null(strstr(err.msg, "test.yaml:4:22"));
    assert_false(exists_out("bad2"));
    /* missing model */
    const char *missing =
        "merge_method: linear\nmodels:\n  - model: DIR/nope\n    parameters: {weight: 1}\n";
    assert_int_equal(run_recipe(missing, "bad3", &err), AL_ERR_NOTFOUND);
    assert_non_null(strstr(err.msg, "test.yaml:3:"));
    assert_false(exists_out("bad3"));
    /* slerp without t */
    const char *no_t =
        "merge_method: slerp\nbase_model: DIR/base\nmodels:\n  - model: DIR/ft1\n";
    assert_int_not_equal(run_recipe(no_t, "bad4", &err), AL_OK);
    assert_non_null(strstr(err.msg, "'t'"));
    assert_false(exists_out("bad4"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lambda_gradient),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_slices),
        cmocka_unit_test(test_modules_default),
        cmocka_unit_test(test_lora),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_ties_trim_model),
        cmocka_unit_test(test_lines_single),
        cmocka_unit_test(test_lines_multi),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
