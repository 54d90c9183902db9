/* tests/test_eval.c: CounterFact-style metrics on the unedited example base model
 * against the metrics an independent PyTorch evaluation recorded in the ROME golden
 * files (tests/fixtures/rome/edit_0N.json, "metrics_before"). */
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

#include "../core/alloc.h"
#include "../edit/eval.h"

static char *dup_target(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(n + 2);
    o[0] = ' ';
    memcpy(o + 1, s, n + 1);
    return o;
}

static char **strings(json_t *a, size_t *n)
{
    *n = json_array_size(a);
    char **v = calloc(*n ? *n : 1, sizeof *v);
    for (size_t i = 0; i < *n; i++) v[i] = strdup(json_string_value(json_array_get(a, i)));
    return v;
}

static void near(double got, double want, const char *what)
{
    double tol = 1e-3 * fabs(want) + 1e-9;
    if (fabs(got - want) > tol) fail_msg("%s: got %.9g want %.9g", what, got, want);
}

static void check_metric(const al_cf_metric *m, json_t *g, const char *what)
{
    char buf[64];
    const char *keys[5] = {"new_beats_true", "top1_new", "top1_true", "p_new", "p_true"};
    const double got[5] = {m->new_beats_true, m->top1_new, m->top1_true, m->p_new, m->p_true};
    for (int k = 0; k < 5; k++) {
        snprintf(buf, sizeof buf, "%s.%s", what, keys[k]);
        near(got[k], json_number_value(json_object_get(g, keys[k])), buf);
    }
}

static void test_metrics_before(void **state)
{
    (void)state;
    al_error err = {0};
    al_model *m = NULL;
    al_model_ws *ws = NULL;
    al_tokenizer *tok = NULL;
    if (al_model_open(&m, "examples/models/base", NULL, &err) != AL_OK) fail_msg("%s", err.msg);
    assert_int_equal(al_tokenizer_load(&tok, "examples/models/base", &err), AL_OK);
    assert_int_equal(al_model_ws_new(&ws, m, 16, al_model_cfg(m)->n_ctx, &err), AL_OK);
    for (int c = 0; c < 5; c++) {
        char path[64];
        snprintf(path, sizeof path, "tests/fixtures/rome/edit_%02d.json", c);
        json_error_t je;
        json_t *g = json_load_file(path, 0, &je);
        assert_non_null(g);
        json_t *rq = json_object_get(g, "request");
        const char *templ = json_string_value(json_object_get(rq, "prompt"));
        const char *subj = json_string_value(json_object_get(rq, "subject"));
        char prompt[512];
        const char *brace = strstr(templ, "{}");
        snprintf(prompt, sizeof prompt, "%.*s%s%s", (int)(brace - templ), templ, subj, brace + 2);
        al_fact f = {0};
        f.prompt = prompt;
        f.target_new = dup_target(json_string_value(json_object_get(json_object_get(rq, "target_new"), "str")));
        f.target_true = dup_target(json_string_value(json_object_get(json_object_get(rq, "target_true"), "str")));
        f.paraphrases = strings(json_object_get(g, "paraphrase_prompts"), &f.n_paraphrases);
        f.neighborhood = strings(json_object_get(g, "neighborhood_prompts"), &f.n_neighborhood);
        al_cf_metrics mt;
        if (al_eval_counterfact(m, ws, 16, tok, &f, &mt, &err) != AL_OK) fail_msg("%s", err.msg);
        json_t *mb = json_object_get(g, "metrics_before");
        check_metric(&mt.rewrite, json_object_get(mb, "rewrite"), "rewrite");
        check_metric(&mt.paraphrase, json_object_get(mb, "paraphrase"), "paraphrase");
        check_metric(&mt.neighborhood, json_object_get(mb, "neighborhood"), "neighborhood");
        free(f.target_new);
        free(f.target_true);
        for (size_t i = 0; i < f.n_paraphrases; i++) free(f.paraphrases[i]);
        for (size_t i = 0; i < f.n_neighborhood; i++) free(f.neighborhood[i]);
        free(f.paraphrases);
        free(f.neighborhood);
        json_decref(g);
    }
    al_model_ws_free(ws);
    al_model_free(m);
    al_tokenizer_free(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_before),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
