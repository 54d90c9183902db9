/* tests/test_recipe.c: recipes/ — parsing, validation, parameter resolution, model resolution.
 * Runs from the repository root; fixtures are tests/recipes/ (copied from the shared data). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/testutil.h"

#include "../core/alloc.h"
#include "../recipes/recipe.h"

static al_recipe *parse_ok(const char *yaml)
{
    al_recipe *r = NULL;
    al_error e = { 0 };
    al_status st = al_recipe_parse_string(yaml, strlen(yaml), "t.yaml", NULL, &r, &e);
    if (st) fprintf(stderr, "unexpected failure: %s\n", e.msg);
    assert_int_equal(st, AL_OK);
    assert_non_null(r);
    return r;
}

/* ---- the real recipes against EXPECT.tsv -------------------------------------------- */

/* Why each recipe that must fail fails (README.md classes). */
static const struct { const char *file, *phrase; } expected_reason[] = {
    { "010_slerp.yaml", "slerp requires base_model" },
    { "011_cabs.yaml", "exists only on unmerged mergekit branches" },
    { "013_nuslerp.yaml", "missing required parameter 'weight'" },
    { "014_core_space.yaml", "exists only on unmerged mergekit branches" },
    { "015_lrp.yaml", "exists only on unmerged mergekit branches" },
    { "016_none.yaml", "mergekit metrics config" },
    { "074_ties.yaml", "ties requires base_model" },
    { "116_none.yaml", "mergekit-moe config" },
    { "117_none.yaml", "not a complete merge recipe" },
};

static const char *reason_for(const char *file)
{
    for (size_t i = 0; i < sizeof expected_reason / sizeof expected_reason[0]; i++)
        if (strcmp(expected_reason[i].file, file) == 0) return expected_reason[i].phrase;
    return NULL;
}

static void test_real_recipes(void **state)
{
    (void)state;
    FILE *f = fopen("tests/recipes/EXPECT.tsv", "r");
    assert_non_null(f);
    char line[1024];
    int rows = 0, parsed = 0, failed_as_expected = 0, warned = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        line[strcspn(line, "\r\n")] = 0;
        char *col[6] = { 0 };
        char *p = line;
        for (int i = 0; i < 6 && p; i++) {
            col[i] = p;
            p = strchr(p, '\t');
            if (p) *p++ = 0;
        }
        assert_non_null(col[5]);
        const char *file = col[0], *cls = col[1], *methods = col[4], *yerr = col[5];
        int ndocs = atoi(col[3]);
        char path[512];
        snprintf(path, sizeof path, "tests/recipes/%s", file);
        rows++;
        al_recipe *r = NULL;
        al_error e = { 0 };
        al_status st = al_recipe_parse_file(path, NULL, &r, &e);
        bool must_parse = !strcmp(cls, "valid") || !strcmp(cls, "valid-unusual") ||
                          !strcmp(cls, "multi-doc") || !strcmp(cls, "valid-legacy") ||
                          !strcmp(cls, "ignored-keys");
        if (must_parse) {
            if (st) fprintf(stderr, "%s (%s) failed: %s\n", file, cls, e.msg);
            assert_int_equal(st, AL_OK);
            parsed++;
            assert_int_equal((int)r->n_docs, ndocs);
            /* merge methods in document order, comma-separated */
            char buf[256] = "";
            for (size_t i = 0; i < r->n_docs; i++) {
                if (i) strcat(buf, ",");
                strcat(buf, r->docs[i].merge_method);
                assert_non_null(r->docs[i].method);
            }
            assert_string_equal(buf, methods);
            if (!strcmp(cls, "valid-legacy")) {
                bool legacy = false;
                for (size_t i = 0; i < r->warnings.n; i++)
                    legacy = legacy || strstr(r->warnings.items[i], "legacy");
                if (!legacy) fprintf(stderr, "%s: no legacy warning\n", file);
                assert_true(legacy);
            }
            if (!strcmp(cls, "ignored-keys")) {
                assert_true(r->warnings.n > 0);
                char want[700];
                snprintf(want, sizeof want, "%s:", path);
                assert_non_null(strstr(r->warnings.items[0], want));
                assert_non_null(strstr(r->warnings.items[0], "ignores it"));
                /* strict mode turns the ignored key into an error */
                al_recipe *rs = NULL;
                al_recipe_opts o = { .strict = true };
                assert_int_equal(al_recipe_parse_file(path, &o, &rs, &e), AL_ERR_RECIPE);
                assert_null(rs);
                assert_non_null(strstr(e.msg, "ignores it"));
            }
            warned += r->warnings.n > 0;
            al_recipe_free(r);
            continue;
        }
        assert_int_not_equal(st, AL_OK);
        assert_null(r);
        if (!strcmp(cls, "yaml-error")) {
            int l = 0, c = 0;
            const char *at = strstr(yerr, " at line ");
            assert_non_null(at);
            assert_int_equal(sscanf(at, " at line %d col %d", &l, &c), 2);
            char want[700];
            snprintf(want, sizeof want, "%s:%d:%d: YAML syntax error: mapping values are not allowed",
                     path, l, c);
            if (!strstr(e.msg, want)) fprintf(stderr, "%s: got '%s', want '%s'\n", file, e.msg, want);
            assert_int_equal(st, AL_ERR_FORMAT);
            assert_non_null(strstr(e.msg, want));
        } else {
            const char *why = reason_for(file);
            if (!why) fprintf(stderr, "no expected reason for %s (%s)\n", file, cls);
            assert_non_null(why);
            if (!strstr(e.msg, why)) fprintf(stderr, "%s: got '%s', want '%s'\n", file, e.msg, why);
            assert_non_null(strstr(e.msg, why));
            char want[700];
            snprintf(want, sizeof want, "%s:", path);
            assert_true(strncmp(e.msg, want, strlen(want)) == 0);
            assert_true(st == AL_ERR_RECIPE || st == AL_ERR_UNSUPPORTED);
        }
        failed_as_expected++;
    }
    fclose(f);
    printf("real recipes: %d rows, %d parse (%d with warnings), %d fail as EXPECT.tsv says\n",
           rows, parsed, warned, failed_as_expected);
    assert_int_equal(rows, 69);
    assert_int_equal(parsed + failed_as_expected, rows);
}

static void test_multidoc_links(void **state)
{
    (void)state;
    al_recipe *r = NULL;
    al_error e = { 0 };
    assert_int_equal(al_recipe_parse_file("tests/recipes/017_multidoc.yaml", NULL, &r, &e), AL_OK);
    assert_int_equal(r->n_docs, 3);
    assert_string_equal(r->docs[0].name, "first-merge");
    assert_int_equal(r->docs[1].base_model->doc_index, 0);
    assert_int_equal(r->docs[2].models[0].model.doc_index, 1);
    assert_int_equal(r->docs[2].models[1].model.doc_index, -1);
    assert_null(r->docs[2].name);
    al_recipe_free(r);

    /* slices, ranges, filtered gradient t, dtype */
    assert_int_equal(al_recipe_parse_file("tests/recipes/003_slerp.yaml", NULL, &r, &e), AL_OK);
    const al_recipe_doc *d = &r->docs[0];
    assert_int_equal(d->n_slices, 1);
    assert_int_equal(d->slices[0].n_sources, 2);
    assert_int_equal(d->slices[0].sources[1].layer_start, 0);
    assert_int_equal(d->slices[0].sources[1].layer_end, 40);
    assert_int_equal(d->slices[0].sources[1].pos.line, 5);
    assert_true(d->has_dtype && d->dtype == AL_F16);
    const al_param *t = al_params_find(&d->params, "t");
    assert_non_null(t);
    assert_int_equal(t->value.kind, AL_PV_CONDITIONAL);
    assert_int_equal(t->value.n, 3);
    assert_string_equal(t->value.conds[0].filter, "self_attn");
    assert_null(t->value.conds[2].filter);
    al_recipe_free(r);

    /* modules: syntax, tokenizer: {} */
    assert_int_equal(al_recipe_parse_file("tests/recipes/077_della_linear.yaml", NULL, &r, &e), AL_OK);
    d = &r->docs[0];
    assert_int_equal(d->n_modules, 1);
    assert_string_equal(d->modules[0].name, "default");
    assert_int_equal(d->modules[0].slices[0].n_sources, 3);
    assert_non_null(d->tokenizer);
    assert_int_equal(d->tokenizer->source, AL_TOKSRC_UNION);
    al_recipe_free(r);

    /* tokenizer_source legacy and lora base */
    assert_int_equal(al_recipe_parse_file("tests/recipes/047_linear.yaml", NULL, &r, &e), AL_OK);
    assert_int_equal(r->docs[0].tokenizer_source, AL_TOKSRC_MODEL);
    assert_string_equal(r->docs[0].tokenizer_source_model.path, "cognitivecomputations/dolphin-2.2-70b");
    al_recipe_free(r);
    assert_int_equal(al_recipe_parse_file("tests/recipes/094_sce.yaml", NULL, &r, &e), AL_OK);
    assert_string_equal(r->docs[0].base_model->path, "PocketDoc/Dans-PersonalityEngine-V1.1.0-12b");
    assert_string_equal(r->docs[0].base_model->lora, "nbeerbower/Mistral-Nemo-12B-abliterated-LORA");
    char *out = NULL;
    assert_int_equal(al_model_resolve(r->docs[0].base_model, NULL, &out, &e), AL_ERR_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "LoRA adapters"));
    al_recipe_free(r);

    /* karcher tol written 1e-5 (a string to YAML 1.1; pydantic coerces it) */
    assert_int_equal(al_recipe_parse_file("tests/recipes/018_karcher.yaml", NULL, &r, &e), AL_OK);
    const al_param *tol = al_params_find(&r->docs[0].params, "tol");
    assert_int_equal(tol->value.kind, AL_PV_NUMBER);
    assert_true(tol->value.num == 1e-5);
    al_recipe_free(r);
}

/* ---- parameter resolver golden values (computed here by hand) -------------------------- */

static const char *golden_yaml =
    "merge_method: ties\n"
    "base_model: base/m\n"
    "models:\n"
    "  - model: a/m\n"
    "    parameters:\n"
    "      weight: [0, 0.3, 0.7, 1]\n"
    "      density:\n"
    "        - filter: mlp\n"
    "          value: [1, 0.5]\n"
    "        - filter: self_attn\n"
    "          value: 0.2\n"
    "  - model: b/m\n"
    "    parameters:\n"
    "      weight:\n"
    "        - filter: mlp\n"
    "          value: 0.5\n"
    "      lambda: 9\n"
    "parameters:\n"
    "  weight: 0.25\n"
    "  density: 0.9\n"
    "  lambda: [1, 2, 4]\n"
    "  normalize: yes\n"
    "  steps: [a, b, c]\n"
    "  star: [{filter: '*', value: 7}]\n";

static double chain(const al_param_chain *c, const char *name, bool global, const char *tensor,
                    double t, bool *found)
{
    double v = -12345;
    al_error e = { 0 };
    assert_int_equal(al_param_chain_resolve(c, name, global, tensor, t, &v, found, NULL, &e), AL_OK);
    return v;
}

static void test_param_golden(void **state)
{
    (void)state;
    al_recipe *r = parse_ok(golden_yaml);
    const al_recipe_doc *d = &r->docs[0];
    /* b/m's per-model lambda is ignored by mergekit: warned */
    assert_true(r->warnings.n >= 1);
    const al_param *w = al_params_find(&d->models[0].params, "weight");
    assert_non_null(w);
    assert_true(w->value.kind == AL_PV_LIST && w->value.numeric);
    /* gradient [0, .3, .7, 1]: s = t*3, i0 = floor(s), f = s - i0 */
    const struct { double t, want; } g[] = {
        { 0.0, 0.0 }, { 1.0, 1.0 }, { 1.0 / 3, 0.3 }, { 2.0 / 3, 0.7 },
        { 0.25, 0.75 * 0.3 }, { 0.5, 0.5 * 0.3 + 0.5 * 0.7 }, { 0.9, 0.3 * 0.7 + 0.7 * 1.0 },
        { -1.0, 0.0 }, { 2.0, 1.0 },
    };
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        double v;
        bool found;
        al_error e = { 0 };
        assert_int_equal(al_param_resolve(w, "model.layers.3.mlp.up_proj.weight", g[i].t, &v, &found, &e),
                         AL_OK);
        assert_true(found);
        assert_true(fabs(v - g[i].want) < 1e-12);
    }
    bool found;
    al_param_chain ca = { .source = &d->models[0].params, .top = &d->params };
    al_param_chain cb = { .source = &d->models[1].params, .top = &d->params };
    /* filters: first match wins; a value may be a gradient */
    assert_true(fabs(chain(&ca, "density", false, "model.layers.0.mlp.up_proj.weight", 0.5, &found) - 0.75) < 1e-12);
    assert_true(found);
    assert_true(chain(&ca, "density", false, "model.layers.0.mlp.up_proj.weight", 1.0, &found) == 0.5);
    assert_true(chain(&ca, "density", false, "model.layers.0.self_attn.q_proj.weight", 0.3, &found) == 0.2);
    assert_true(chain(&ca, "density", false, "x.mlp.self_attn.y", 0.0, &found) == 1.0);   /* mlp first */
    /* no filter matches: falls through to the top level, not to the default */
    assert_true(chain(&ca, "density", false, "model.norm.weight", 0.0, &found) == 0.9);
    assert_true(found);
    /* per-model beats top-level; unmatched conditional falls through */
    assert_true(chain(&cb, "weight", false, "layers.1.mlp.down_proj.weight", 0.0, &found) == 0.5);
    assert_true(chain(&cb, "weight", false, "layers.1.self_attn.o_proj.weight", 0.0, &found) == 0.25);
    /* global parameters skip the per-model level: b/m's lambda 9 is ignored;
     * top-level gradient [1, 2, 4] at t = 0.75: s = 1.5 -> 3 */
    assert_true(chain(&cb, "lambda", true, "any", 0.75, &found) == 3.0);
    assert_true(chain(&cb, "lambda", false, "any", 0.75, &found) == 9.0);
    assert_true(chain(&cb, "lambda", true, "model.embed_tokens.weight", 0.0, &found) == 1.0);
    /* bool (PyYAML 1.1 'yes') */
    assert_true(chain(&cb, "normalize", true, "x", 0.0, &found) == 1.0);
    /* absent everywhere: not found, caller uses the method default */
    (void)chain(&cb, "gamma", false, "x", 0.0, &found);
    assert_false(found);
    assert_true(al_method_param(d->method, "density")->def_num == 1.0);
    /* step function over a non-numeric list: v[floor(t(n-1))] */
    const al_param *steps = al_params_find(&d->params, "steps");
    al_pscalar s;
    al_pv_eval(&steps->value, "x", 0.49, &s, &found);
    assert_string_equal(s.str, "a");
    al_pv_eval(&steps->value, "x", 0.5, &s, &found);
    assert_string_equal(s.str, "b");
    al_pv_eval(&steps->value, "x", 0.99, &s, &found);
    assert_string_equal(s.str, "b");
    al_pv_eval(&steps->value, "x", 1.0, &s, &found);
    assert_string_equal(s.str, "c");
    double v;
    al_error e = { 0 };
    assert_int_equal(al_param_resolve(steps, "x", 0.0, &v, &found, &e), AL_ERR_RECIPE);
    assert_non_null(strstr(e.msg, "not a number"));
    /* "*" matches everything, also with no tensor name */
    const al_param *star = al_params_find(&d->params, "star");
    assert_int_equal(al_param_resolve(star, NULL, 0.3, &v, &found, &e), AL_OK);
    assert_true(found && v == 7.0);
    al_recipe_free(r);
}

static void test_param_slice_precedence(void **state)
{
    (void)state;
    al_recipe *r = parse_ok(
        "merge_method: linear\n"
        "parameters: {weight: 1.0}\n"
        "slices:\n"
        "  - sources:\n"
        "      - model: a/m\n"
        "        layer_range: [0, 4]\n"
        "        parameters:\n"
        "          weight: [{filter: o_proj, value: 0.1}]\n"
        "      - model: b/m\n"
        "        layer_range: [4, 8]\n"
        "    parameters:\n"
        "      weight: [0, 1]\n");
    const al_slice *sl = &r->docs[0].slices[0];
    al_param_chain c = { .source = &sl->sources[0].params, .slice = &sl->params, .top = &r->docs[0].params };
    bool found;
    assert_true(chain(&c, "weight", false, "layers.1.self_attn.o_proj.weight", 0.5, &found) == 0.1);
    assert_true(chain(&c, "weight", false, "layers.1.mlp.up_proj.weight", 0.5, &found) == 0.5);
    al_param_chain c2 = { .top = &r->docs[0].params };
    assert_true(chain(&c2, "weight", false, "x", 0.5, &found) == 1.0);
    al_recipe_free(r);
}

typedef struct { int src, slice, top; } visit_count;
static void count_visit(void *ud, const al_param *p, al_plevel lv, const al_model_ref *m,
                        const char *mod, long slice)
{
    visit_count *c = ud;
    (void)p; (void)mod; (void)slice;
    if (lv == AL_PLEVEL_SOURCE) { c->src++; assert_non_null(m); }
    if (lv == AL_PLEVEL_SLICE) c->slice++;
    if (lv == AL_PLEVEL_TOP) c->top++;
}

static void test_param_visit(void **state)
{
    (void)state;
    al_recipe *r = parse_ok(golden_yaml);
    visit_count c = { 0 };
    al_recipe_doc_visit_params(&r->docs[0], count_visit, &c);
    assert_int_equal(c.src, 4);
    assert_int_equal(c.top, 6);
    assert_int_equal(c.slice, 0);
    al_recipe_free(r);
}

/* ---- bad recipes: status, exact FILE:LINE:COL and a distinctive phrase ----------------- */

#define LIN "merge_method: linear\n"
#define TWO "models:\n  - model: a/m\n    parameters: {weight: 1}\n  - model: b/m\n    parameters: {weight: 1}\n"

static const struct {
    const char *name, *yaml;
    al_status st;
    bool strict;
    const char *where, *phrase;
} bad[] = {
    { "unknown method", "merge_method: dare-ties\nbase_model: b\nmodels:\n  - model: a\n",
      AL_ERR_RECIPE, false, "1:15", "unknown merge_method 'dare-ties' (did you mean 'dare_ties'?)" },
    { "missing weight", LIN "models:\n  - model: a/m\n  - model: b/m\n    parameters:\n      weight: 1\n",
      AL_ERR_RECIPE, false, "3:5", "missing required parameter 'weight' for model 'a/m'" },
    { "string weight", LIN "models:\n  - model: a/m\n    parameters:\n      weight: abc\n",
      AL_ERR_RECIPE, false, "5:15", "must be a number, got the string 'abc'" },
    { "nested list", LIN "models:\n  - model: a/m\n    parameters:\n      weight: [[1, 2]]\n",
      AL_ERR_RECIPE, false, "5:15", "a list must hold only numbers" },
    { "range one int", LIN "slices:\n  - sources:\n      - model: a/m\n        layer_range: [0]\n"
      "parameters: {weight: 1}\n", AL_ERR_RECIPE, false, "5:22", "layer_range must be a list of two integers" },
    { "range float", LIN "slices:\n  - sources:\n      - model: a/m\n        layer_range: [0.5, 4]\n"
      "parameters: {weight: 1}\n", AL_ERR_RECIPE, false, "5:22", "two integers" },
    { "range reversed", LIN "slices:\n  - sources:\n      - model: a/m\n        layer_range: [10, 5]\n"
      "parameters: {weight: 1}\n", AL_ERR_RECIPE, false, "5:22", "is reversed" },
    { "range negative", LIN "slices:\n  - sources:\n      - model: a/m\n        layer_range: [-1, 4]\n"
      "parameters: {weight: 1}\n", AL_ERR_RECIPE, false, "5:22", "negative layer index" },
    { "range missing", LIN "slices:\n  - sources:\n      - model: a/m\nparameters: {weight: 1}\n",
      AL_ERR_RECIPE, false, "4:9", "no 'layer_range" },
    { "range lengths", LIN "slices:\n  - sources:\n      - model: a/m\n        layer_range: [0, 4]\n"
      "      - model: b/m\n        layer_range: [0, 8]\nparameters: {weight: 1}\n",
      AL_ERR_RECIPE, false, "7:22", "same number of layers" },
    { "yaml syntax", "models:\n  - model: a\n    parameters:\n      density: 0.9\n        gamma: 0.01\n",
      AL_ERR_FORMAT, false, "5:14", "YAML syntax error: mapping values are not allowed" },
    { "yaml unclosed", "merge_method: linear\nmodels: [a, b\n", AL_ERR_FORMAT, false, "3:1",
      "YAML syntax error" },
    { "empty file", "", AL_ERR_RECIPE, false, "1:1", "empty recipe" },
    { "comments only", "# nothing here\n\n", AL_ERR_RECIPE, false, "1:1", "empty recipe" },
    { "top-level list", "- merge_method: linear\n", AL_ERR_RECIPE, false, "1:1",
      "top level of a recipe must be a mapping" },
    { "top-level scalar", "\nlinear\n", AL_ERR_RECIPE, false, "2:1", "must be a mapping" },
    { "models not list", LIN "models: a/m\n", AL_ERR_RECIPE, false, "2:9", "'models' must be a list" },
    { "models strings", LIN "models:\n  - a/m\n", AL_ERR_RECIPE, false, "3:5",
      "must be a mapping with 'model:'" },
    { "duplicate key", LIN TWO "merge_method: ties\n", AL_ERR_RECIPE, false, "7:1",
      "duplicate key 'merge_method' in the recipe (first at line 1 column 1)" },
    { "duplicate param", LIN TWO "parameters:\n  normalize: true\n  normalize: false\n", AL_ERR_RECIPE,
      false, "9:3", "duplicate key 'normalize'" },
    { "models and slices", LIN TWO "slices:\n  - sources:\n      - model: a/m\n        layer_range: [0, 1]\n",
      AL_ERR_RECIPE, false, "7:1", "exactly one of 'models', 'slices' or 'modules'" },
    { "no models", LIN "dtype: float16\n", AL_ERR_RECIPE, false, "1:1", "nothing to merge" },
    { "no merge_method", TWO, AL_ERR_RECIPE, false, "1:1", "missing required key 'merge_method'" },
    { "unknown dtype", LIN TWO "dtype: bfloat\n", AL_ERR_RECIPE, false, "7:8", "unknown dtype 'bfloat'" },
    { "unknown out_dtype", LIN TWO "out_dtype: int8\n", AL_ERR_RECIPE, false, "7:12", "unknown out_dtype" },
    { "density high", "merge_method: ties\nbase_model: b/m\nmodels:\n  - model: a/m\n    parameters:\n"
      "      weight: 1\n      density: 1.5\n", AL_ERR_RECIPE, false, "7:16",
      "parameter 'density' = 1.5 is out of range [0, 1]" },
    { "density negative", "merge_method: ties\nbase_model: b/m\nmodels:\n  - model: a/m\n"
      "    parameters: {weight: 1}\nparameters:\n  density: -0.1\n", AL_ERR_RECIPE, false, "7:12",
      "out of range [0, 1]" },
    { "density gradient", "merge_method: ties\nbase_model: b/m\nmodels:\n  - model: a/m\n"
      "    parameters: {weight: 1, density: [1, 1.2]}\n", AL_ERR_RECIPE, false, "5:42",
      "'density' = 1.2 is out of range" },
    { "alias bomb",
      "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
      "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
      "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
      "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
      "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\n",
      AL_ERR_FORMAT, false, "6:", "more than 1000000 nodes with aliases expanded" },
    { "undefined alias", LIN "models: *nope\n", AL_ERR_FORMAT, false, "2:9", "undefined alias '*nope'" },
    { "recursive alias", LIN "models: &m [*m]\n", AL_ERR_FORMAT, false, "2:13", "recursive alias" },
    { "both tokenizers", LIN TWO "tokenizer_source: union\ntokenizer:\n  source: base\n", AL_ERR_RECIPE,
      false, "9:3", "'tokenizer' and 'tokenizer_source' cannot both be set" },
    { "slerp no t", "merge_method: slerp\nbase_model: a/m\nmodels:\n  - model: a/m\n  - model: b/m\n",
      AL_ERR_RECIPE, false, "1:15", "missing required parameter 't'" },
    { "slerp three", "merge_method: slerp\nbase_model: a/m\nmodels:\n  - model: a/m\n  - model: b/m\n"
      "  - model: c/m\nparameters: {t: 0.5}\n", AL_ERR_RECIPE, false, "1:15",
      "slerp needs exactly 2 distinct input models" },
    { "nuslerp three", "merge_method: nuslerp\nmodels:\n  - model: a/m\n  - model: b/m\n  - model: c/m\n"
      "parameters: {weight: 1}\n", AL_ERR_RECIPE, false, "1:15",
      "nuslerp needs exactly 2 models besides base_model, got 3" },
    { "passthrough two", "merge_method: passthrough\nslices:\n  - sources:\n      - model: a/m\n"
      "        layer_range: [0, 2]\n      - model: b/m\n        layer_range: [0, 2]\n", AL_ERR_RECIPE,
      false, "3:5", "passthrough takes at most 1 input model per slice" },
    { "two plus", LIN "models:\n  - model: a+b+c\n    parameters: {weight: 1}\n", AL_ERR_RECIPE, false,
      "3:12", "more than one '+'" },
    { "two at", LIN "models:\n  - model: org/m@v1@v2\n    parameters: {weight: 1}\n", AL_ERR_RECIPE,
      false, "3:12", "more than one '@'" },
    { "nan weight", LIN "models:\n  - model: a/m\n    parameters: {weight: nan}\n", AL_ERR_RECIPE, false,
      "4:26", "not a finite number" },
    { "int param", "merge_method: karcher\nmodels:\n  - model: a/m\n  - model: b/m\nparameters:\n"
      "  max_iter: 2.5\n", AL_ERR_RECIPE, false, "6:13", "must be an integer" },
    { "enum param", "merge_method: ties\nbase_model: b/m\nmodels:\n  - model: a/m\n    parameters: {weight: 1}\n"
      "parameters:\n  trim_scope: layer\n", AL_ERR_RECIPE, false, "7:15", "must be one of tensor|model" },
    { "chat template", LIN TWO "chat_template: chatlm\n", AL_ERR_RECIPE, false, "7:16",
      "unknown chat_template 'chatlm'" },
    { "bad utf-8", "merge_method: linear\nmodels:\n  - model: \xc3\xa9" "a/\xff\n", AL_ERR_FORMAT, false,
      "3:15", "invalid leading UTF-8 octet" },
    { "null param", LIN TWO "parameters:\n  normalize:\n", AL_ERR_RECIPE, false, "8:13",
      "parameter 'normalize' has no value" },
    { "strict unknown key", LIN TWO "dtipe: float16\n", AL_ERR_RECIPE, true, "7:1",
      "unknown key 'dtipe' in the recipe" },
    { "strict unknown param", LIN TWO "parameters:\n  wieght: 1\n", AL_ERR_RECIPE, true, "8:3",
      "unknown parameter 'wieght' for merge_method 'linear'" },
    { "strict misplaced", LIN "models:\n  - model: a/m\n    weight: 1\n", AL_ERR_RECIPE, true, "4:5",
      "parameters belong under 'parameters:'" },
    { "duplicate doc names", LIN "name: x\n" TWO "---\n" LIN "name: x\n" TWO, AL_ERR_RECIPE, false,
      "10:7", "duplicate document name 'x'" },
    { "doc cycle", LIN "name: x\nmodels:\n  - model: y\n    parameters: {weight: 1}\n---\n"
      LIN "name: y\nmodels:\n  - model: x\n    parameters: {weight: 1}\n", AL_ERR_RECIPE, false,
      "1:1", "in a cycle" },
    { "deep nesting",
      "a: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
      AL_ERR_FORMAT, false, "1:", "YAML nesting deeper than 64 levels" },
    { "branch method", "merge_method: cabs\nmodels:\n  - model: a/m\n", AL_ERR_UNSUPPORTED, false, "1:15",
      "only on unmerged mergekit branches" },
    { "moe config", "base_model: a/m\ngate_mode: hidden\nexperts:\n  - source_model: b/m\n",
      AL_ERR_UNSUPPORTED, false, "1:1", "mergekit-moe config" },
    { "method is a list", "merge_method: [linear]\n" TWO, AL_ERR_RECIPE, false, "1:15",
      "merge_method must be a string, got a list" },
    { "dtype is a list", LIN TWO "dtype: [bfloat16]\n", AL_ERR_RECIPE, false, "7:8",
      "dtype must be a dtype name such as bfloat16, got a list" },
    { "parameters is a list", LIN TWO "parameters: [weight, 1]\n", AL_ERR_RECIPE, false, "7:13",
      "parameters must be a mapping" },
    { "filter is a list", LIN TWO "parameters:\n  weight:\n    - filter: [mlp]\n      value: 1\n",
      AL_ERR_RECIPE, false, "9:15", "filter must be a string" },
    { "lines block", LIN TWO "lines: {alpha: 0.1}\n", AL_ERR_RECIPE, false, "7:8",
      "lines needs 'alpha' (a number or auto) and a numeric 'beta'" },
};

static void test_bad_recipes(void **state)
{
    (void)state;
    size_t n = sizeof bad / sizeof bad[0];
    assert_true(n >= 20);
    for (size_t i = 0; i < n; i++) {
        al_recipe *r = (al_recipe *)1;
        al_error e = { 0 };
        al_strvec errs = { 0 };
        al_recipe_opts o = { .strict = bad[i].strict, .errors = &errs };
        al_status st = al_recipe_parse_string(bad[i].yaml, strlen(bad[i].yaml), "bad.yaml", &o, &r, &e);
        char want[64];
        snprintf(want, sizeof want, "bad.yaml:%s", bad[i].where);
        bool ok = st == bad[i].st && r == NULL && strncmp(e.msg, want, strlen(want)) == 0 &&
                  strstr(e.msg, bad[i].phrase) && errs.n >= 1 && strcmp(errs.items[0], e.msg) <= 0;
        if (!ok)
            fprintf(stderr, "case '%s': status %s, msg '%s'\n   want %s '%s' ... '%s'\n", bad[i].name,
                    al_status_str(st), e.msg, al_status_str(bad[i].st), want, bad[i].phrase);
        al_strvec_free(&errs);
        assert_true(ok);
    }
    printf("bad recipes: %zu cases rejected with file:line:col\n", n);
}

/* The same files are accepted, with a warning, when not strict. */
static void test_warnings_not_strict(void **state)
{
    (void)state;
    al_recipe *r = parse_ok(LIN "models:\n  - model: a/m\n    weight: 1\nparameters: {weight: 1}\n"
                            "dtipe: float16\nslices_typo: 1\n");
    assert_int_equal(r->warnings.n, 3);
    assert_string_equal(r->warnings.items[0], "t.yaml:6:1: warning: unknown key 'dtipe' in the recipe "
                        "(mergekit ignores it)");
    assert_non_null(strstr(r->warnings.items[2], "t.yaml:4:5: warning: unknown key 'weight'"));
    al_recipe_free(r);
    /* zero-length range: accepted with a note (mergekit issue #308 idiom) */
    r = parse_ok("merge_method: passthrough\nslices:\n  - sources:\n      - model: a/m\n"
                 "        layer_range: [0, 2]\n  - sources:\n      - model: b/m\n"
                 "        layer_range: [5, 5]\n");
    assert_int_equal(r->warnings.n, 1);
    assert_non_null(strstr(r->warnings.items[0], "t.yaml:8:22: warning: layer_range [5, 5] is empty"));
    al_recipe_free(r);
    /* alloy extensions parse */
    r = parse_ok("merge_method: dare_ties\nbase_model: b/m\nmodels:\n  - model: a/m\n"
                 "    parameters: {weight: 1, density: 0.5}\nparameters:\n  rescale_mode: inverse\n"
                 "  seed: 42\nlines: {alpha: 0.1, beta: 0.9}\ndtype: torch.bfloat16\n");
    assert_int_equal(r->warnings.n, 0);
    assert_true(r->docs[0].has_lines && r->docs[0].lines_beta == 0.9);
    assert_true(r->docs[0].dtype == AL_BF16);
    al_recipe_free(r);
}

/* ---- model references and resolution -------------------------------------------------- */

static void test_model_ref_parse(void **state)
{
    (void)state;
    al_model_ref m;
    al_error e = { 0 };
    assert_int_equal(al_model_ref_parse("org/model@abc123+lora/x@v2", &m, &e), AL_OK);
    assert_string_equal(m.path, "org/model");
    assert_string_equal(m.revision, "abc123");
    assert_string_equal(m.lora, "lora/x");
    assert_string_equal(m.lora_revision, "v2");
    al_model_ref_clear(&m);
    assert_int_equal(al_model_ref_parse("./local/dir", &m, &e), AL_OK);
    assert_null(m.revision);
    assert_null(m.lora);
    al_model_ref_clear(&m);
    assert_int_equal(al_model_ref_parse("a+b+c", &m, &e), AL_ERR_RECIPE);
    assert_int_equal(al_model_ref_parse("a@", &m, &e), AL_ERR_RECIPE);
    assert_int_equal(al_model_ref_parse("@x", &m, &e), AL_ERR_RECIPE);
    assert_int_equal(al_model_ref_parse("a+", &m, &e), AL_ERR_RECIPE);
    al_model_ref_clear(NULL);

    al_recipe *r = parse_ok(LIN "models:\n  - model: {model: org/a@main, lora: ad/x, "
                            "override_architecture: LlamaForCausalLM}\n    parameters: {weight: 1}\n");
    const al_model_ref *ref = &r->docs[0].models[0].model;
    assert_string_equal(ref->path, "org/a");
    assert_string_equal(ref->revision, "main");
    assert_string_equal(ref->lora, "ad/x");
    assert_string_equal(ref->override_architecture, "LlamaForCausalLM");
    al_recipe_free(r);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char tmpdir[256];

static void mk(const char *rel)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, rel);
    assert_int_equal(mkdir(p, 0755), 0);
}

static al_status resolve_text(const char *text, const char *models_dir, char **out, al_error *e)
{
    al_model_ref m;
    assert_int_equal(al_model_ref_parse(text, &m, e), AL_OK);
    al_status st = al_model_resolve(&m, models_dir, out, e);
    al_model_ref_clear(&m);
    return st;
}

static al_status lookup_cb(void *ud, int doc, const char *name, char **out, al_error *err)
{
    (void)ud; (void)err;
    char buf[64];
    snprintf(buf, sizeof buf, "/out/%d/%s", doc, name);
    *out = al_strdup(buf);
    return AL_OK;
}

static void test_resolve(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/alloy_recipe_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    mk("hub");
    mk("hub/models--org--m");
    mk("hub/models--org--m/refs");
    mk("hub/models--org--m/snapshots");
    mk("hub/models--org--m/snapshots/aaa111");
    mk("hub/models--org--m/snapshots/bbb222");
    char p[600];
    snprintf(p, sizeof p, "%s/hub/models--org--m/refs/main", tmpdir);
    write_file(p, "aaa111\n");
    snprintf(p, sizeof p, "%s/hub/models--org--m/refs/v2", tmpdir);
    write_file(p, "bbb222");
    mk("hub/models--org--single");
    mk("hub/models--org--single/snapshots");
    mk("hub/models--org--single/snapshots/ccc333");
    mk("models");
    mk("models/org2");
    mk("models/org2/local");
    snprintf(p, sizeof p, "%s/hub", tmpdir);
    setenv("HF_HUB_CACHE", p, 1);
    char models[400];
    snprintf(models, sizeof models, "%s/models", tmpdir);

    char *out = NULL, want[600];
    al_error e = { 0 };
    assert_int_equal(resolve_text("org/m", NULL, &out, &e), AL_OK);
    snprintf(want, sizeof want, "%s/hub/models--org--m/snapshots/aaa111", tmpdir);
    assert_string_equal(out, want);
    al_free(out);
    assert_int_equal(resolve_text("org/m@v2", NULL, &out, &e), AL_OK);       /* branch via refs */
    snprintf(want, sizeof want, "%s/hub/models--org--m/snapshots/bbb222", tmpdir);
    assert_string_equal(out, want);
    al_free(out);
    assert_int_equal(resolve_text("org/m@bbb222", NULL, &out, &e), AL_OK);   /* commit dir */
    assert_string_equal(out, want);
    al_free(out);
    assert_int_equal(resolve_text("org/single", NULL, &out, &e), AL_OK);     /* no refs: only snapshot */
    snprintf(want, sizeof want, "%s/hub/models--org--single/snapshots/ccc333", tmpdir);
    assert_string_equal(out, want);
    al_free(out);
    assert_int_equal(resolve_text("org2/local", models, &out, &e), AL_OK);    /* models dir first */
    snprintf(want, sizeof want, "%s/org2/local", models);
    assert_string_equal(out, want);
    al_free(out);
    assert_int_equal(resolve_text(models, NULL, &out, &e), AL_OK);           /* existing local path */
    assert_string_equal(out, models);
    al_free(out);
    /* not found: names the reference and every place looked */
    assert_int_equal(resolve_text("org/missing@v9", models, &out, &e), AL_ERR_NOTFOUND);
    assert_null(out);
    assert_non_null(strstr(e.msg, "model 'org/missing@v9'"));
    assert_non_null(strstr(e.msg, "org/missing (local path)"));
    snprintf(want, sizeof want, "%s/org/missing (models dir)", models);
    assert_non_null(strstr(e.msg, want));
    snprintf(want, sizeof want, "%s/hub/models--org--missing/refs/v9", tmpdir);
    assert_non_null(strstr(e.msg, want));
    assert_int_equal(resolve_text("org/m@nope", NULL, &out, &e), AL_ERR_NOTFOUND);
    assert_int_equal(resolve_text("org/m+lora/x", NULL, &out, &e), AL_ERR_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "LoRA adapters ('+lora/x') are not supported"));
    /* HF_HOME fallback */
    unsetenv("HF_HUB_CACHE");
    setenv("HF_HOME", tmpdir, 1);
    assert_int_equal(resolve_text("org/single", NULL, &out, &e), AL_OK);
    al_free(out);
    unsetenv("HF_HOME");

    /* intermediate outputs go to the caller's lookup */
    al_recipe *r = NULL;
    assert_int_equal(al_recipe_parse_file("tests/recipes/017_multidoc.yaml", NULL, &r, &e), AL_OK);
    assert_int_equal(al_model_resolve(r->docs[1].base_model, NULL, &out, &e), AL_ERR_NOTFOUND);
    assert_non_null(strstr(e.msg, "has not been produced"));
    al_resolve_opts o = { .lookup = lookup_cb };
    assert_int_equal(al_model_resolve_ex(r->docs[1].base_model, &o, &out, &e), AL_OK);
    assert_string_equal(out, "/out/0/first-merge");
    al_free(out);
    al_recipe_free(r);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    assert_int_equal(system(cmd), 0);
}

/* ---- method schema -------------------------------------------------------------------- */

static void test_methods(void **state)
{
    (void)state;
    static const char *const names[] = {
        "linear", "task_arithmetic", "ties", "dare_ties", "dare_linear", "breadcrumbs",
        "breadcrumbs_ties", "della", "della_linear", "slerp", "nuslerp", "multislerp", "karcher",
        "model_stock", "sce", "nearswap", "arcee_fusion", "passthrough", "ram", "ramplus_tl",
    };
    assert_int_equal(al_method_count(), 21);   /* mergekit's 20 + alloy's lines */
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const al_method *m = al_method_find(names[i]);
        assert_non_null(m);
        assert_string_equal(m->name, names[i]);
        for (size_t k = 0; k < m->n_params; k++)
            assert_ptr_equal(al_method_param(m, m->params[k].name), &m->params[k]);
    }
    assert_null(al_method_find("dare-ties"));
    assert_true(al_method_param(al_method_find("ties"), "normalize")->def_num == 1.0);
    assert_true(al_method_param(al_method_find("dare_ties"), "rescale")->def_num == 1.0);
    assert_true(al_method_param(al_method_find("della"), "epsilon")->def_num == 0.15);
    assert_true(al_method_param(al_method_find("breadcrumbs"), "gamma")->def_num == 0.01);
    assert_true(al_method_param(al_method_find("linear"), "weight")->required);
    assert_true(al_method_param(al_method_find("slerp"), "t")->required);
    assert_null(al_method_param(al_method_find("sce"), "weight"));
    assert_true(al_method_param(al_method_find("ties"), "trim_scope")->extension);
    assert_int_equal(al_method_find("model_stock")->base, AL_BASE_REQUIRED);
    assert_int_equal(al_method_find("nuslerp")->base, AL_BASE_OPTIONAL);
}

/* ---- every allocation failure ends cleanly (run under ASan to see leaks) ---------------- */

static void test_alloc_failures(void **state)
{
    (void)state;
    int ok_at = -1;
    for (long n = 1; n < 5000; n++) {
        al_recipe *r = NULL;
        al_error e = { 0 };
        al_alloc_fail_at(n);
        al_status st = al_recipe_parse_file("tests/recipes/017_multidoc.yaml", NULL, &r, &e);
        al_alloc_fail_at(0);
        if (st == AL_OK) { al_recipe_free(r); ok_at = (int)n; break; }
        assert_int_equal(st, AL_ERR_NOMEM);
        assert_null(r);
    }
    assert_true(ok_at > 1);
}

/* Random mutations of two recipes (a cheap fuzzer, also run under ASan): every parse
 * either succeeds or fails with a message naming the file, line and column. */
static void test_mutations(void **state)
{
    (void)state;
    static const char slices[] =
        "slices:\n  - sources:\n      - model: a/m\n        layer_range: [0, 8]\n"
        "      - model: b/m\n        layer_range: [0, 8]\n"
        "merge_method: slerp\nbase_model: a/m\nparameters:\n  t:\n"
        "    - filter: self_attn\n      value: [0, 0.5, 0.3, 0.7, 1]\n    - value: 0.5\n"
        "dtype: bfloat16\n---\nname: x\nmerge_method: linear\nmodels: [{model: x, parameters: {weight: 1}}]\n";
    static const char junk[] = ":-[]{},'\"&*!|>#%@` \n\t0123456789.e";
    const char *seeds[2] = {golden_yaml, slices};
    uint64_t x = 0x2545f4914f6cdd1dull;
    int ok = 0, rejected = 0, positioned = 0;
    for (int it = 0; it < 20000; it++) {
        const char *src = seeds[it & 1];
        size_t n = strlen(src);
        char *b = malloc(n + 1);
        assert_non_null(b);
        memcpy(b, src, n + 1);
        int k = 1 + (int)(tu_xorshift(&x) % 3);
        for (int m = 0; m < k && n > 0; m++) {
            uint64_t r = tu_xorshift(&x), pos = (r >> 8) % n;
            switch (r & 3) {
            case 0: b[pos] = (char)(r >> 40); if (!b[pos]) b[pos] = '?'; break;
            case 1: case 2: b[pos] = junk[(r >> 40) % (sizeof junk - 1)]; break;
            default: n = pos; b[n] = '\0'; break;
            }
        }
        char *e = malloc(n ? n : 1);          /* exact length, no terminator: ASan checks */
        assert_non_null(e);
        memcpy(e, b, n);
        free(b);
        al_recipe *r = NULL;
        al_error err = {0};
        al_status st = al_recipe_parse_string(e, n, "m.yaml", NULL, &r, &err);
        if (st == AL_OK) {
            ok++;
            assert_non_null(r);
            al_recipe_free(r);
        } else {
            rejected++;
            assert_null(r);
            assert_true(st == AL_ERR_FORMAT || st == AL_ERR_RECIPE);
            const char *p = strstr(err.msg, "m.yaml");
            if (!p) fail_msg("error without the file name: %s", err.msg);
            int line, col;
            positioned += sscanf(p, "m.yaml:%d:%d", &line, &col) == 2;
        }
        free(e);
    }
    print_message("recipe mutations: %d parsed, %d rejected, %d with line:col\n", ok, rejected, positioned);
    assert_true(ok > 100 && rejected > 1000);
    assert_int_equal(positioned, rejected);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_recipes),
        cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_multidoc_links),
        cmocka_unit_test(test_param_golden),
        cmocka_unit_test(test_param_slice_precedence),
        cmocka_unit_test(test_param_visit),
        cmocka_unit_test(test_bad_recipes),
        cmocka_unit_test(test_warnings_not_strict),
        cmocka_unit_test(test_model_ref_parse),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
