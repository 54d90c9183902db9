/* tests/test_facts.c: the facts-file parser on its YAML form, on the example family's
 * CounterFact and fact-prompt JSON files, and on bad files (FILE:LINE:COL). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../edit/facts.h"

static al_facts *parse(const char *text, al_status want, const char *needle)
{
    al_facts *f = NULL;
    al_error err = {0};
    al_status s = al_facts_parse(text, strlen(text), "f.yaml", &f, &err);
    if (s != want || (needle && !strstr(err.msg, needle)))
        fail_msg("status %d (%s), wanted %d with '%s'", s, err.msg, want, needle ? needle : "");
    return f;
}

static void test_yaml_form(void **state)
{
    (void)state;
    al_facts *f = parse("facts:\n"
                        "  - subject: LeBron James\n"
                        "    prompt: \"{} plays the sport of\"\n"
                        "    target_new: football\n"
                        "    target_true: \"  basketball\"\n"
                        "    paraphrase_prompts: [\"LeBron James is known for playing\"]\n"
                        "    neighborhood_prompts: \"Michael Jordan plays the sport of\"\n"
                        "    alternatives: [tennis, \" golf\"]\n"
                        "    group: sports\n"
                        "  - prompt: The Eiffel Tower is in\n"
                        "    subject: The Eiffel Tower\n"
                        "    expect: Rome\n", AL_OK, NULL);
    assert_int_equal(f->n, 2);
    const al_fact *a = &f->items[0];
    assert_string_equal(a->prompt, "LeBron James plays the sport of");
    assert_string_equal(a->templ, "{} plays the sport of");
    assert_string_equal(a->target_new, " football");      /* exactly one leading space */
    assert_string_equal(a->target_true, " basketball");
    assert_int_equal(a->n_paraphrases, 1);
    assert_int_equal(a->n_neighborhood, 1);
    assert_int_equal(a->n_alternatives, 2);
    assert_string_equal(a->alternatives[1], " golf");
    assert_string_equal(a->group, "sports");
    assert_int_equal(a->line, 2);
    assert_null(f->items[1].templ);
    assert_string_equal(f->items[1].target_new, " Rome");
    assert_null(f->items[1].target_true);
    al_facts_free(f);
    /* "{}" is replaced everywhere, as the ROME code's str.replace does */
    f = parse("- {prompt: \"{} and {}\", subject: X, target: y}\n", AL_OK, NULL);
    assert_string_equal(f->items[0].prompt, "X and X");
    al_facts_free(f);
}

static void test_edit_settings(void **state)
{
    (void)state;
    al_facts *f = parse("model: {path: models/gpt2-xl, format: safetensors}\n"
                        "method: r-rome\n"
                        "layers: [17]\n"
                        "hparams: {v_num_grad_steps: 20, v_lr: 0.5, mom2_adjustment: false}\n"
                        "stats: stats/gpt2-xl.npz\n"
                        "context_templates: [\"{}\", \"The first thing I. {}\"]\n"
                        "seed: 42\n"
                        "output: {path: out/edited}\n"
                        "edits:\n"
                        "  - {prompt: \"{} plays\", subject: A, target_new: b}\n", AL_OK, NULL);
    const al_edit_settings *e = &f->settings;
    assert_string_equal(e->model, "models/gpt2-xl");
    assert_string_equal(e->method, "r-rome");
    assert_int_equal(e->n_layers, 1);
    assert_int_equal(e->layers[0], 17);
    assert_int_equal(e->n_hp, 3);
    assert_string_equal(e->hp_names[0], "v_num_grad_steps");
    assert_true(e->hp_values[0] == 20 && e->hp_values[2] == 0);
    assert_int_equal(e->n_stats, 1);
    assert_string_equal(e->stats[0], "stats/gpt2-xl.npz");
    assert_int_equal(e->n_templates, 2);
    assert_int_equal(e->seed, 42);
    assert_string_equal(e->output, "out/edited");
    al_facts_free(f);
    parse("method: memot\nedits: [{prompt: a, target: b}]\n", AL_ERR_RECIPE, "f.yaml:1:9: unknown method 'memot'");
    parse("layer: x\nedits: [{prompt: a, target: b}]\n", AL_ERR_RECIPE, "f.yaml:1:8: layer must be an integer");
    parse("context_templates: [\"no brace\"]\nedits: [{prompt: a, target: b}]\n", AL_ERR_RECIPE, "has no {}");
    parse("hparams: {v_lr: fast}\nedits: [{prompt: a, target: b}]\n", AL_ERR_RECIPE, "hparams.v_lr must be a number");
    parse("modle: x\nedits: [{prompt: a, target: b}]\n", AL_ERR_RECIPE, "f.yaml:1:1: unknown key 'modle'");
    /* found by the fuzzer: a mapping as a key (it has no text) */
    parse("hparams: {v_lr: 0.5, {}: 0}\nedits: [{prompt: a, target: b}]\n", AL_ERR_RECIPE, "hparams keys must be names");
    parse("edits: [{prompt: a, target: b, [x]: 1}]\n", AL_ERR_RECIPE, "unknown key '?' in a fact");
    f = parse("- {prompt: a, target: b}\n", AL_OK, NULL);
    assert_int_equal(f->settings.seed, -1);
    al_facts_free(f);
}

static void test_counterfact(void **state)
{
    (void)state;
    al_facts *f = NULL;
    al_error err = {0};
    if (al_facts_load("examples/eval/counterfact.json", &f, &err) != AL_OK) fail_msg("%s", err.msg);
    assert_int_equal(f->n, 125);
    const al_fact *a = &f->items[0];
    assert_string_equal(a->subject, "Lutun Mesos");
    assert_string_equal(a->prompt, "Lutun Mesos's hometown is");
    assert_string_equal(a->target_new, " Drugrandhaven");
    assert_string_equal(a->target_true, " Stundburg");
    assert_int_equal(a->n_paraphrases, 2);
    assert_true(a->n_neighborhood >= 1);
    al_facts_free(f);
    if (al_facts_load("examples/eval/fact_prompts.json", &f, &err) != AL_OK) fail_msg("%s", err.msg);
    assert_int_equal(f->n, 9814);
    assert_string_equal(f->items[0].prompt, "Drigin Sama was born in");
    assert_string_equal(f->items[0].target_new, " Wibrendhaven");
    assert_string_equal(f->items[0].group, "base");
    al_facts_free(f);
}

static void test_bad(void **state)
{
    (void)state;
    parse("facts:\n  - subject: A\n    target_new: b\n", AL_ERR_RECIPE, "f.yaml:2:5: a fact needs a prompt");
    parse("facts:\n  - prompt: \"{} is\"\n    target_new: b\n", AL_ERR_RECIPE, "f.yaml:2:5: the prompt has {} but no subject");
    parse("facts:\n  - prompt: A is\n    subject: B\n    target_new: c\n", AL_ERR_RECIPE, "f.yaml:2:5: subject 'B' does not occur");
    parse("facts:\n  - prompt: A is\n    target_new: \"  \"\n", AL_ERR_RECIPE, "f.yaml:3:17: target_new is empty");
    parse("facts:\n  - prompt: A is\n", AL_ERR_RECIPE, "needs target_new");
    parse("facts:\n  - prompt: A is\n    target: b\n    colour: red\n", AL_ERR_RECIPE, "f.yaml:4:5: unknown key 'colour'");
    parse("facts: 3\n", AL_ERR_RECIPE, "f.yaml:1:8: facts must be a list");
    parse("facts: []\n", AL_ERR_RECIPE, "the facts list is empty");
    parse("model: x\n", AL_ERR_RECIPE, "no 'facts:' or 'edits:' list");
    parse("facts:\n  - prompt: [a\n", AL_ERR_FORMAT, "f.yaml:3:1");
    parse("- prompt: A\n  target: [x]\n", AL_ERR_RECIPE, "f.yaml:2:11: target_new must be a string");
    /* found by fuzzing: layer and layers together overran the first one's array */
    parse("layer: 2\nlayers: [1, 2, 3]\nedits:\n  - {prompt: A is, target: b}\n", AL_ERR_RECIPE,
          "f.yaml:2:1: give either layer or layers, once");
    parse("model: a\nmodel: b\nedits:\n  - {prompt: A is, target: b}\n", AL_ERR_RECIPE,
          "f.yaml:2:1: duplicate key 'model' (first at line 1)");
    parse("edits:\n  - {prompt: A is, target: b, prompt: C is}\n", AL_ERR_RECIPE, "duplicate key 'prompt'");
    al_facts *f = NULL;
    al_error err = {0};
    /* the edits: stage of a merge recipe: inline, absent */
    const char *rec = "merge_method: linear\nmodels: []\n---\nmerge_method: linear\nedits:\n  method: memit\n"
                      "  layers: [1, 2]\n  edits:\n    - {prompt: \"{} is\", subject: A, target_new: b}\n";
    assert_int_equal(al_facts_parse_stage(rec, strlen(rec), "r.yaml", &f, &err), AL_OK);
    assert_non_null(f);
    assert_int_equal(f->n, 1);
    assert_string_equal(f->settings.method, "memit");
    assert_int_equal(f->settings.n_layers, 2);
    assert_int_equal(f->items[0].line, 9);
    al_facts_free(f);
    f = NULL;
    assert_int_equal(al_facts_parse_stage("merge_method: linear\n", 21, "r.yaml", &f, &err), AL_OK);
    assert_null(f);
    assert_int_equal(al_facts_load("/nonexistent/facts.yaml", &f, &err), AL_ERR_IO);
    assert_non_null(strstr(err.msg, "/nonexistent/facts.yaml"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_yaml_form),
        cmocka_unit_test(test_edit_settings),
        cmocka_unit_test(test_counterfact),
        cmocka_unit_test(test_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
