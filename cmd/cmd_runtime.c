/* cmd/cmd_runtime.c: `alloy tokenize`, `alloy generate` and `alloy eval`. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/alloc.h"
#include "../core/file.h"
#include "../core/rng.h"
#include "../edit/eval.h"
#include "../edit/facts.h"
#include "../edit/generate.h"
#include "../edit/model.h"
#include "../io/tokenizer.h"
#include "cli.h"

/* ---- tokenize ------------------------------------------------------------------- */

static const char k_tok_help[] =
    "usage: alloy tokenize MODEL_OR_TOKENIZER [--text TEXT | --file F] [--json] [--verbose]\n"
    "       alloy tokenize MODEL_OR_TOKENIZER --decode ID [ID ...]\n"
    "\n"
    "Encode text with a model's tokenizer (tokenizer.json, vocab.json + merges.txt, a\n"
    "tiktoken rank file or a SentencePiece tokenizer.model) and print the ids, one line;\n"
    "--verbose also prints each token. Special tokens (BOS) are added as the tokenizer's\n"
    "post-processor says; --no-special leaves them out. --decode turns ids back into text.\n";

int cmd_tokenize(int argc, char **argv)
{
    const char *src = NULL, *text = NULL, *file = NULL;
    bool as_json = false, verbose = false, decode = false, special = true;
    int first_id = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) { fputs(k_tok_help, stdout); return 0; }
        else if (!strcmp(a, "--json")) as_json = true;
        else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) verbose = true;
        else if (!strcmp(a, "--no-special")) special = false;
        else if (!strcmp(a, "--decode")) { decode = true; first_id = i + 1; break; }
        else if (!strcmp(a, "--text")) { if (i + 1 >= argc) return cli_usage("tokenize", "--text needs a value"); text = argv[++i]; }
        else if (!strcmp(a, "--file")) { if (i + 1 >= argc) return cli_usage("tokenize", "--file needs a path"); file = argv[++i]; }
        else if (a[0] == '-' && a[1]) return cli_usage("tokenize", "unknown option '%s'", a);
        else if (!src) src = a;
        else return cli_usage("tokenize", "unexpected argument '%s'", a);
    }
    if (!src) return cli_usage("tokenize", "missing MODEL_OR_TOKENIZER");
    if (!decode && !!text == !!file) return cli_usage("tokenize", "give --text TEXT or --file F");
    al_error err = {0};
    al_tokenizer *tok = NULL;
    if (al_tokenizer_load(&tok, src, &err) != AL_OK) return cli_report(&err);
    int rc = 0;
    if (decode) {
        size_t n = (size_t)(argc - first_id);
        int32_t *ids = al_calloc(n ? n : 1, sizeof *ids);
        for (size_t i = 0; ids && i < n; i++) {
            long v;
            if (!cli_parse_int(argv[first_id + (int)i], 0, 0x7fffffff, &v)) { rc = cli_usage("tokenize", "'%s' is not a token id", argv[first_id + (int)i]); goto dec_done; }
            ids[i] = (int32_t)v;
        }
        char *out = NULL;
        size_t len = 0;
        if (al_tokenizer_decode(tok, ids, n, &out, &len, &err) != AL_OK) rc = cli_report(&err);
        else { fwrite(out, 1, len, stdout); putchar('\n'); }
        al_free(out);
    dec_done:
        al_free(ids);
        al_tokenizer_free(tok);
        return rc;
    }
    size_t len = text ? strlen(text) : 0;
    char *buf = NULL;
    if (file && al_read_file(file, SIZE_MAX, "text file", &buf, &len, &err) != AL_OK) {
        al_tokenizer_free(tok);
        return cli_report(&err);
    }
    int32_t *ids = NULL;
    size_t n = 0;
    if (al_tokenizer_encode(tok, file ? buf : text, len, special, &ids, &n, &err) != AL_OK) {
        rc = cli_report(&err);
    } else if (as_json) {
        json_t *o = json_object(), *a = json_array(), *t = json_array();
        for (size_t i = 0; i < n; i++) {
            json_array_append_new(a, json_integer(ids[i]));
            const char *s = al_tokenizer_token(tok, ids[i]);
            json_array_append_new(t, json_string(s ? s : ""));
        }
        json_object_set_new(o, "ids", a);
        if (verbose) json_object_set_new(o, "tokens", t); else json_decref(t);
        json_dumpf(o, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(o);
    } else {
        for (size_t i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
        putchar('\n');
        if (verbose)
            for (size_t i = 0; i < n; i++) {
                const char *s = al_tokenizer_token(tok, ids[i]);
                printf("%8d  %s\n", ids[i], s ? s : "?");
            }
    }
    al_free(ids);
    al_free(buf);
    al_tokenizer_free(tok);
    return rc;
}

/* ---- generate ------------------------------------------------------------------- */

static const char k_gen_help[] =
    "usage: alloy generate MODEL --prompt TEXT [-n N] [--greedy | --top-k K [--temperature T] [--seed S]]\n"
    "\n"
    "Continue TEXT with the model (GPT-2 or Llama family, CPU) and print the text.\n"
    "  -n N            new tokens (default 32; stops early at the end-of-text token)\n"
    "  --greedy        always the most likely token (default)\n"
    "  --top-k K       sample among the K most likely tokens, with --temperature (default 1)\n"
    "  --seed S        sampling seed (default 0): the same seed gives the same text\n";

int cmd_generate(int argc, char **argv)
{
    const char *model = NULL, *prompt = NULL;
    long n_new = 32, top_k = 0, seed = 0;
    double temperature = 1.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool v = i + 1 < argc;
        if (cli_is_help(a)) { fputs(k_gen_help, stdout); return 0; }
        else if (!strcmp(a, "--prompt")) { if (!v) return cli_usage("generate", "--prompt needs text"); prompt = argv[++i]; }
        else if (!strcmp(a, "-n")) { if (!v || !cli_parse_int(argv[++i], 1, 100000, &n_new)) return cli_usage("generate", "-n takes a count >= 1"); }
        else if (!strcmp(a, "--greedy")) top_k = 0;
        else if (!strcmp(a, "--top-k")) { if (!v || !cli_parse_int(argv[++i], 1, 1 << 20, &top_k)) return cli_usage("generate", "--top-k takes a count >= 1"); }
        else if (!strcmp(a, "--seed")) { if (!v || !cli_parse_int(argv[++i], 0, 0x7fffffffL, &seed)) return cli_usage("generate", "--seed takes an integer >= 0"); }
        else if (!strcmp(a, "--temperature")) {
            char *end;
            if (!v) return cli_usage("generate", "--temperature needs a value");
            temperature = strtod(argv[++i], &end);
            if (*end || !(temperature > 0)) return cli_usage("generate", "--temperature must be > 0");
        } else if (a[0] == '-' && a[1]) return cli_usage("generate", "unknown option '%s'", a);
        else if (!model) model = a;
        else return cli_usage("generate", "unexpected argument '%s'", a);
    }
    if (!model || !prompt) return cli_usage("generate", "needs MODEL and --prompt TEXT");
    al_error err = {0};
    al_tokenizer *tok = NULL;
    al_model *m = NULL;
    al_model_ws *ws = NULL;
    int32_t *ids = NULL;
    float *logits = NULL;
    char *text = NULL;
    size_t n = 0, tlen = 0;
    int rc = 0;
    if (al_tokenizer_load(&tok, model, &err) != AL_OK || al_model_open(&m, model, NULL, &err) != AL_OK) goto fail;
    const al_model_config *cfg = al_model_cfg(m);
    if (al_tokenizer_encode(tok, prompt, strlen(prompt), true, &ids, &n, &err) != AL_OK) goto fail;
    if (n == 0) { al_errorf(&err, AL_ERR_USAGE, "the prompt is empty"); goto fail; }
    if ((long)n + n_new > cfg->n_ctx) {
        n_new = cfg->n_ctx - (long)n;
        if (n_new < 1) { al_errorf(&err, AL_ERR_USAGE, "the prompt is %zu tokens; the model's context is %d", n, cfg->n_ctx); goto fail; }
        fprintf(stderr, "alloy: warning: generating %ld tokens to stay within the model's context of %d\n", n_new, cfg->n_ctx);
    }
    int32_t *all = al_realloc(ids, (n + (size_t)n_new) * sizeof *all);
    if (!all) { al_errorf(&err, AL_ERR_NOMEM, "out of memory"); goto fail; }
    ids = all;
    if (al_model_ws_new(&ws, m, 1, (int)(n + (size_t)n_new), &err) != AL_OK) goto fail;
    size_t total = n;
    if (al_generate(m, ws, ids, &total, (int)n_new, (int)top_k, temperature, (uint64_t)seed, 0x67656e,
                    al_tokenizer_eos(tok), &err) != AL_OK) goto fail;
    if (al_tokenizer_decode(tok, ids, total, &text, &tlen, &err) != AL_OK) goto fail;
    fwrite(text, 1, tlen, stdout);
    putchar('\n');
    goto done;
fail:
    rc = cli_report(&err);
done:
    al_free(text);
    al_free(logits);
    al_free(ids);
    al_model_ws_free(ws);
    al_model_free(m);
    al_tokenizer_free(tok);
    return rc;
}

/* ---- eval ----------------------------------------------------------------------- */

static const char k_eval_help[] =
    "usage: alloy eval MODEL FACTS [--json] [--group G] [--limit N] [--quiet]\n"
    "\n"
    "For each fact (prompt and expected continuation; see the facts format in the README),\n"
    "the log-probability of the expected continuation and of target_true and alternatives\n"
    "when given, whether every expected token is the model's top choice (teacher forcing),\n"
    "and a summary per group. FACTS may be YAML (facts:/edits:), CounterFact JSON records or\n"
    "fact-prompt JSON (prompt, target, split).\n"
    "  --group G    only facts of group G\n"
    "  --limit N    only the first N facts (after --group)\n"
    "  --json       machine-readable output\n"
    "  --quiet      summary only\n";

typedef struct { char name[64]; long n, known, preferred, with_true; double logp; } group_sum;

int cmd_eval(int argc, char **argv)
{
    const char *model = NULL, *facts_path = NULL, *group = NULL;
    bool as_json = false, quiet = false;
    long limit = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) { fputs(k_eval_help, stdout); return 0; }
        else if (!strcmp(a, "--json")) as_json = true;
        else if (!strcmp(a, "--quiet")) quiet = true;
        else if (!strcmp(a, "--group")) { if (i + 1 >= argc) return cli_usage("eval", "--group needs a name"); group = argv[++i]; }
        else if (!strcmp(a, "--limit")) { if (i + 1 >= argc || !cli_parse_int(argv[++i], 1, 100000000, &limit)) return cli_usage("eval", "--limit takes a count"); }
        else if (a[0] == '-' && a[1]) return cli_usage("eval", "unknown option '%s'", a);
        else if (!model) model = a;
        else if (!facts_path) facts_path = a;
        else return cli_usage("eval", "unexpected argument '%s'", a);
    }
    if (!model || !facts_path) return cli_usage("eval", "needs MODEL and FACTS");
    al_error err = {0};
    al_facts *facts = NULL;
    al_tokenizer *tok = NULL;
    al_model *m = NULL;
    al_model_ws *ws = NULL;
    json_t *items = as_json ? json_array() : NULL;
    group_sum groups[64];
    size_t ng = 0;
    int rc = 0;
    memset(groups, 0, sizeof groups);
    if (al_facts_load(facts_path, &facts, &err) != AL_OK) goto fail;
    if (al_tokenizer_load(&tok, model, &err) != AL_OK || al_model_open(&m, model, NULL, &err) != AL_OK) goto fail;
#define EVAL_BATCH 32
    /* the selected facts, scored in batched forwards */
    const al_fact **sel = al_malloc((facts->n ? facts->n : 1) * sizeof *sel);
    al_fact_score *scores = NULL;
    size_t ns = 0, maxlen = 0;
    if (!sel) { al_errorf(&err, AL_ERR_NOMEM, "out of memory"); goto fail; }
    for (size_t i = 0; i < facts->n && (limit < 0 || (long)ns < limit); i++)
        if (!group || (facts->items[i].group && !strcmp(facts->items[i].group, group))) sel[ns++] = &facts->items[i];
    /* a workspace as long as the longest prompt + continuation, not the whole context */
    if (al_facts_max_tokens(tok, sel, ns, &maxlen, &err) != AL_OK ||
        al_model_ws_new(&ws, m, EVAL_BATCH, (int)(maxlen < (size_t)al_model_cfg(m)->n_ctx ? maxlen + 1 : (size_t)al_model_cfg(m)->n_ctx),
                        &err) != AL_OK) {
        al_free(sel);
        goto fail;
    }
    if (!(scores = al_malloc((ns ? ns : 1) * sizeof *scores))) { al_free(sel); al_errorf(&err, AL_ERR_NOMEM, "out of memory"); goto fail; }
    if (al_eval_facts(m, ws, EVAL_BATCH, tok, sel, ns, scores, &err) != AL_OK) {
        al_error_prefix(&err, "%s: ", facts->filename);
        al_free(sel);
        al_free(scores);
        goto fail;
    }
    for (size_t i = 0; i < ns; i++) {
        const al_fact *f = sel[i];
        const al_fact_score sc = scores[i];
        const char *gname = f->group ? f->group : "all";
        size_t g = 0;
        while (g < ng && strcmp(groups[g].name, gname)) g++;
        if (g == ng && ng < 64) snprintf(groups[ng++].name, sizeof groups[0].name, "%s", gname);
        if (g < ng) {
            groups[g].n++;
            groups[g].known += sc.new_.argmax;
            groups[g].logp += sc.new_.logp;
            if (f->target_true || f->n_alternatives) { groups[g].with_true++; groups[g].preferred += sc.preferred; }
        }
        if (as_json) {
            json_t *o = json_object();
            json_object_set_new(o, "prompt", json_string(f->prompt));
            json_object_set_new(o, "expected", json_string(f->target_new));
            json_object_set_new(o, "logp", json_real(sc.new_.logp));
            json_object_set_new(o, "known", json_boolean(sc.new_.argmax));
            if (f->target_true) json_object_set_new(o, "logp_true", json_real(sc.true_.logp));
            if (f->target_true || f->n_alternatives) json_object_set_new(o, "preferred", json_boolean(sc.preferred));
            if (f->group) json_object_set_new(o, "group", json_string(f->group));
            json_array_append_new(items, o);
        } else if (!quiet) {
            printf("%s %-48s ->%-20s logp %8.3f", sc.new_.argmax ? "ok  " : "MISS", f->prompt, f->target_new, sc.new_.logp);
            if (f->target_true) printf("  (true%s: %.3f)", f->target_true, sc.true_.logp);
            putchar('\n');
        }
    }
    al_free(sel);
    al_free(scores);
    if (as_json) {
        json_t *root = json_object(), *sum = json_array();
        for (size_t g = 0; g < ng; g++) {
            json_t *o = json_object();
            json_object_set_new(o, "group", json_string(groups[g].name));
            json_object_set_new(o, "n", json_integer(groups[g].n));
            json_object_set_new(o, "accuracy", json_real((double)groups[g].known / (double)groups[g].n));
            json_object_set_new(o, "mean_logp", json_real(groups[g].logp / (double)groups[g].n));
            if (groups[g].with_true)
                json_object_set_new(o, "preferred_rate", json_real((double)groups[g].preferred / (double)groups[g].with_true));
            json_array_append_new(sum, o);
        }
        json_object_set_new(root, "model", json_string(model));
        json_object_set_new(root, "summary", sum);
        json_object_set_new(root, "items", items);
        items = NULL;
        json_dumpf(root, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(root);
    } else {
        printf("%s%-16s %8s %9s %10s\n", quiet ? "" : "\n", "group", "facts", "accuracy", "mean logp");
        for (size_t g = 0; g < ng; g++) {
            printf("%-16s %8ld %8.1f%% %10.3f", groups[g].name, groups[g].n, 100.0 * (double)groups[g].known / (double)groups[g].n,
                   groups[g].logp / (double)groups[g].n);
            if (groups[g].with_true) printf("   new preferred: %.1f%%", 100.0 * (double)groups[g].preferred / (double)groups[g].with_true);
            putchar('\n');
        }
    }
    goto done;
fail:
    rc = cli_report(&err);
done:
    json_decref(items);
    al_model_ws_free(ws);
    al_model_free(m);
    al_tokenizer_free(tok);
    al_facts_free(facts);
    return rc;
}
