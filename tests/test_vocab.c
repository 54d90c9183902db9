/* tests/test_vocab.c: tokenizer-aware merging (tokenizer_source: union, tokenizer:) and chat_template.
 *
 * Two "fine-tunes" of the example base each add tokens: ftx adds <|x|> (1024) and <|y|>
 * (1025), fty adds <|y|> (1024) and <|z|> (1025); <|y|> sits at different ids. A task-
 * arithmetic union merge must give 1027 tokens, and per recipes.md §1.5:
 *   <|x|>: only ftx has it, so the base and fty use ftx's row   -> output = ftx's row
 *   <|y|>: two models have it, the base does not: base uses their mean -> output = mean
 *   <|z|>: only fty has it                                        -> output = fty's row
 * and every original token's row is the ordinary task-arithmetic result. */
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "util/testutil.h"

#include "../core/alloc.h"
#include "../io/checkpoint.h"
#include "../io/hfdir.h"
#include "../io/tokenizer.h"
#include "../merge/pipeline.h"
#include "../recipes/recipe.h"

static char g_dir[128];
#define BASE "examples/models/base"
#define C 128

/* value of the added token rows: distinct per model and token */
static float extra(int model, int tok, int64_t c) { return (float)(model * 10 + tok) + 0.001f * (float)c; }

/* A fine-tune of the base: every float tensor + 0.01; wte gets two extra rows. */
static void make_ft(const char *name, int model, const char *t1, const char *t2)
{
    char dir[256], p[300];
    snprintf(dir, sizeof dir, "%s/%s", g_dir, name);
    al_error err = {0};
    al_ckpt *b = NULL;
    assert_int_equal(al_ckpt_open(&b, BASE, &err), AL_OK);
    al_writer *w = NULL;
    al_writer_opts o = {.format = AL_FMT_SAFETENSORS, .dir = true};
    assert_int_equal(al_writer_open(&w, dir, &o, &err), AL_OK);
    for (size_t i = 0; i < al_ckpt_count(b); i++) {
        const al_tensor_info *t = al_ckpt_info(b, i);
        if (t->tied) continue;
        int64_t shape[8];
        memcpy(shape, t->shape, sizeof shape);
        if (!strcmp(t->name, "transformer.wte.weight")) shape[0] += 2;
        assert_int_equal(al_writer_add(w, t->name, t->dtype, t->ndim, shape, &err), AL_OK);
    }
    assert_int_equal(al_writer_begin(w, &err), AL_OK);
    for (size_t i = 0; i < al_ckpt_count(b); i++) {
        const al_tensor_info *t = al_ckpt_info(b, i);
        if (t->tied) continue;
        int64_t rows = t->ndim ? t->shape[0] : 1, rn = al_shape_row_numel(t->ndim, t->shape);
        bool wte = !strcmp(t->name, "transformer.wte.weight");
        float *buf = malloc((size_t)((rows + 2) * rn) * 4);
        assert_int_equal(al_ckpt_read(b, i, 0, rows, buf, AL_F32, &err), AL_OK);
        for (int64_t e = 0; e < rows * rn; e++) buf[e] += 0.01f;
        if (wte)
            for (int k = 0; k < 2; k++)
                for (int64_t c = 0; c < rn; c++) buf[(rows + k) * rn + c] = extra(model, k, c);
        assert_int_equal(al_writer_write(w, buf, (uint64_t)((rows + (wte ? 2 : 0)) * rn) * 4, &err), AL_OK);
        free(buf);
    }
    /* tokenizer.json with the two added tokens, config.json with vocab_size 1026 */
    json_error_t je;
    json_t *tj = json_load_file(BASE "/tokenizer.json", JSON_PRESERVE_ORDER, &je);
    assert_non_null(tj);
    json_t *vocab = json_object_get(json_object_get(tj, "model"), "vocab"), *added = json_object_get(tj, "added_tokens");
    const char *toks[2] = {t1, t2};
    for (int k = 0; k < 2; k++) {
        json_object_set_new(vocab, toks[k], json_integer(1024 + k));
        json_t *a = json_object();
        json_object_set_new(a, "id", json_integer(1024 + k));
        json_object_set_new(a, "content", json_string(toks[k]));
        json_object_set_new(a, "special", json_true());
        json_array_append_new(added, a);
    }
    snprintf(p, sizeof p, "%s/tokenizer.json", al_writer_tmpdir(w));
    assert_int_equal(json_dump_file(tj, p, JSON_INDENT(1)), 0);
    json_decref(tj);
    json_t *cfg = json_load_file(BASE "/config.json", JSON_PRESERVE_ORDER, &je);
    json_object_set_new(cfg, "vocab_size", json_integer(1026));
    snprintf(p, sizeof p, "%s/config.json", al_writer_tmpdir(w));
    assert_int_equal(json_dump_file(cfg, p, JSON_INDENT(1)), 0);
    json_decref(cfg);
    assert_int_equal(al_writer_commit(w, &err), AL_OK);
    al_writer_free(w);
    al_ckpt_close(b);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/alloy-test-vocab.XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    make_ft("ftx", 1, "<|x|>", "<|y|>");
    make_ft("fty", 2, "<|y|>", "<|z|>");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return tu_rm_rf(g_dir);
}

static al_status run(const char *tail, const char *out, al_error *err)
{
    char text[2048];
    snprintf(text, sizeof text,
             "merge_method: task_arithmetic\nbase_model: %s\nmodels:\n"
             "  - model: %s/ftx\n    parameters: {weight: 1.0}\n"
             "  - model: %s/fty\n    parameters: {weight: 1.0}\n%s", BASE, g_dir, g_dir, tail);
    al_recipe *r = NULL;
    al_status s = al_recipe_parse_string(text, strlen(text), "v.yaml", NULL, &r, err);
    if (s != AL_OK) return s;
    char op[300];
    snprintf(op, sizeof op, "%s/%s", g_dir, out);
    al_merge_opts mo = {0};
    s = al_merge_run(r, op, &mo, err);
    al_recipe_free(r);
    return s;
}

static float *rows_of(const char *dir, const char *tensor, int64_t *rows)
{
    al_error err = {0};
    al_ckpt *c = NULL;
    if (al_ckpt_open(&c, dir, &err) != AL_OK) fail_msg("%s", err.msg);
    long i = al_ckpt_find(c, tensor);
    assert_true(i >= 0);
    const al_tensor_info *t = al_ckpt_info(c, (size_t)i);
    *rows = t->shape[0];
    float *buf = malloc((size_t)(t->shape[0] * t->shape[1]) * 4);
    assert_int_equal(al_ckpt_read(c, (size_t)i, 0, t->shape[0], buf, AL_F32, &err), AL_OK);
    al_ckpt_close(c);
    return buf;
}

static void test_union(void **state)
{
    (void)state;
    al_error err = {0};
    if (run("tokenizer_source: union\n", "u", &err) != AL_OK) fail_msg("%s", err.msg);
    char out[300], p[340];
    snprintf(out, sizeof out, "%s/u", g_dir);
    int64_t nr, nb, nx, ny;
    float *o = rows_of(out, "transformer.wte.weight", &nr), *b = rows_of(BASE, "transformer.wte.weight", &nb);
    snprintf(p, sizeof p, "%s/ftx", g_dir);
    float *x = rows_of(p, "transformer.wte.weight", &nx);
    snprintf(p, sizeof p, "%s/fty", g_dir);
    float *y = rows_of(p, "transformer.wte.weight", &ny);
    assert_int_equal(nr, 1027);
    for (int64_t r = 0; r < 1024; r++)          /* base + (x - b) + (y - b), with 0.01 deltas */
        for (int c = 0; c < C; c++) {
            double want = (double)b[r * C + c] + ((double)(x[r * C + c] - b[r * C + c]) + (double)(y[r * C + c] - b[r * C + c]));
            if (fabs(o[r * C + c] - want) > 1e-6) fail_msg("row %lld col %d: %g vs %g", (long long)r, c, (double)o[r * C + c], want);
        }
    for (int c = 0; c < C; c++) {
        assert_true(fabsf(o[1024 * C + c] - extra(1, 0, c)) < 1e-6f);                       /* <|x|> */
        float mean = (float)(((double)extra(1, 1, c) + (double)extra(2, 0, c)) / 2.0);
        assert_true(fabsf(o[1025 * C + c] - mean) < 1e-5f);                                 /* <|y|> */
        assert_true(fabsf(o[1026 * C + c] - extra(2, 1, c)) < 1e-6f);                       /* <|z|> */
    }
    free(o); free(b); free(x); free(y);
    /* the merged tokenizer knows every token, at its output id; config says 1027 */
    al_tokenizer *t = NULL;
    if (al_tokenizer_load(&t, out, &err) != AL_OK) fail_msg("%s", err.msg);
    assert_int_equal(al_tokenizer_token_id(t, "<|x|>"), 1024);
    assert_int_equal(al_tokenizer_token_id(t, "<|y|>"), 1025);
    assert_int_equal(al_tokenizer_token_id(t, "<|z|>"), 1026);
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(al_tokenizer_encode(t, "a<|z|>", 6, false, &ids, &n, &err), AL_OK);
    assert_int_equal(ids[n - 1], 1026);
    al_free(ids);
    al_tokenizer_free(t);
    snprintf(p, sizeof p, "%s/config.json", out);
    FILE *f = fopen(p, "r");
    char buf[4096] = {0};
    assert_true(fread(buf, 1, sizeof buf - 1, f) > 0);
    fclose(f);
    assert_non_null(strstr(buf, "\"vocab_size\": 1027"));
}

/* tokenizer: block: base vocabulary plus one configured token, padded to 8 rows. */
static void test_block(void **state)
{
    (void)state;
    al_error err = {0};
    char tail[512];
    snprintf(tail, sizeof tail,
             "tokenizer:\n  source: base\n  pad_to_multiple_of: 8\n  tokens:\n"
             "    <|z|>:\n      source: %s/fty\n", g_dir);
    if (run(tail, "blk", &err) != AL_OK) fail_msg("%s", err.msg);
    char out[300];
    snprintf(out, sizeof out, "%s/blk", g_dir);
    int64_t nr;
    float *o = rows_of(out, "transformer.wte.weight", &nr);
    assert_int_equal(nr, 1032);                 /* 1025 tokens rounded up to 8 */
    for (int c = 0; c < C; c++) assert_true(fabsf(o[1024 * C + c] - extra(2, 1, c)) < 1e-6f);
    /* padding rows: each input pads with the mean of its real rows; task arithmetic is
     * linear, so the output pads with the mean of its own real rows */
    double mean0 = 0;
    for (int64_t r = 0; r < 1025; r++) mean0 += o[r * C];
    mean0 /= 1025;
    assert_true(fabs(o[1031 * C] - mean0) < 1e-4);
    free(o);
    /* a configured token from a model that does not have it is an error */
    snprintf(tail, sizeof tail, "tokenizer:\n  source: base\n  tokens:\n    <|q|>:\n      source: %s/fty\n", g_dir);
    assert_int_equal(run(tail, "bad", &err), AL_ERR_RECIPE);
    assert_non_null(strstr(err.msg, "<|q|>"));
}

/* The output's tokenizer_config.json chat_template after merging with `tail`. */
static char *out_template(const char *tail, const char *out)
{
    al_error err = {0};
    if (run(tail, out, &err) != AL_OK) fail_msg("%s", err.msg);
    char p[300];
    snprintf(p, sizeof p, "%s/%s/tokenizer_config.json", g_dir, out);
    json_error_t je;
    json_t *root = json_load_file(p, 0, &je);
    assert_non_null(root);
    /* the donor's (the base's) other keys are kept */
    assert_string_equal(json_string_value(json_object_get(root, "tokenizer_class")), "GPT2Tokenizer");
    const char *t = json_string_value(json_object_get(root, "chat_template"));
    char *r = t ? strdup(t) : NULL;
    json_decref(root);
    return r;
}

static void put_file(const char *model, const char *name, const char *text)
{
    char p[300];
    snprintf(p, sizeof p, "%s/%s/%s", g_dir, model, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void test_chat_template(void **state)
{
    (void)state;
    char *t = out_template("chat_template: chatml\n", "chat1");
    assert_non_null(t);
    assert_non_null(strstr(t, "<|im_start|>"));
    assert_non_null(strstr(t, "<|im_end|>"));
    assert_non_null(strstr(t, "add_generation_prompt"));
    free(t);
    static const char lit[] = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}";
    char tail[256];
    snprintf(tail, sizeof tail, "chat_template: \"%s\"\n", "{% for m in messages %}{{ m['role'] }}: "
             "{{ m['content'] }}\\n{% endfor %}");
    t = out_template(tail, "chat2");
    assert_string_equal(t, lit);
    free(t);
    /* auto with no template anywhere: a warning, the donor's files unchanged */
    t = out_template("chat_template: auto\n", "chat3");
    assert_null(t);
    free(t);
    /* auto: ftx carries A (in tokenizer_config.json and chat_template.jinja), fty B:
     * a tie goes to the earliest input. With ftz also carrying B, B wins 2:1, and the
     * donor's (ftx's) copied chat_template.jinja must be rewritten too. */
    put_file("ftx", "tokenizer_config.json", "{\"chat_template\": \"{{ 'A' }} template aaaaaaa\"}");
    put_file("ftx", "chat_template.jinja", "{{ 'A' }} template aaaaaaa");
    put_file("fty", "chat_template.jinja", "{{ 'B' }} template bbbbbbb");
    t = out_template("chat_template: auto\n", "chat4");
    assert_string_equal(t, "{{ 'A' }} template aaaaaaa");
    free(t);
    make_ft("ftz", 3, "<|x|>", "<|y|>");
    put_file("ftz", "chat_template.jinja", "{{ 'B' }} template bbbbbbb");
    char text[1024], op[300];
    snprintf(text, sizeof text,
             "merge_method: linear\nmodels:\n  - model: %s/ftx\n  - model: %s/fty\n"
             "  - model: %s/ftz\nparameters: {weight: 1.0}\n"
             "chat_template: auto\n", g_dir, g_dir, g_dir);
    al_recipe *r = NULL;
    al_error err = {0};
    assert_int_equal(al_recipe_parse_string(text, strlen(text), "c.yaml", NULL, &r, &err), AL_OK);
    snprintf(op, sizeof op, "%s/chat5", g_dir);
    al_merge_opts mo = {0};
    if (al_merge_run(r, op, &mo, &err) != AL_OK) fail_msg("%s", err.msg);
    al_recipe_free(r);
    char p[340];
    snprintf(p, sizeof p, "%s/chat_template.jinja", op);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    char got[64] = {0};
    assert_true(fread(got, 1, sizeof got - 1, f) > 0);
    fclose(f);
    assert_string_equal(got, "{{ 'B' }} template bbbbbbb");
    assert_int_equal(al_hf_read_chat_template(op, &t, &err), AL_OK);
    assert_string_equal(t, "{{ 'B' }} template bbbbbbb");
    al_free(t);
    snprintf(op, sizeof op, "%s/chat5/tokenizer_config.json", g_dir);
    json_error_t je;
    json_t *root = json_load_file(op, 0, &je);
    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(root, "chat_template")), "{{ 'B' }} template bbbbbbb");
    json_decref(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_union),
        cmocka_unit_test(test_block),
        cmocka_unit_test(test_chat_template),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
