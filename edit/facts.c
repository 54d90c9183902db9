/* edit/facts.c: facts files (see facts.h). */
#include "facts.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/alloc.h"
#include "../core/file.h"
#include "../recipes/ytree_internal.h"

#define FACTS_MAX_BYTES (256u << 20)

typedef struct {
    const char *file;
    al_error *err;
    al_status st;
} fctx;

static bool fail(fctx *c, const ynode *n, al_status code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static bool fail(fctx *c, const ynode *n, al_status code, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->st = al_errorf(c->err, code, "%s:%d:%d: %s", c->file, n ? n->line : 0, n ? n->col : 0, msg);
    return false;
}

static const ynode *map_get(const ynode *m, const char *key)
{
    if (!m || m->kind != YN_MAP) return NULL;
    for (size_t i = 0; i + 1 < m->n; i += 2)
        if (m->kids[i]->kind == YN_SCALAR && strcmp(m->kids[i]->str, key) == 0) return m->kids[i + 1];
    return NULL;
}

/* A string field: a scalar, or CounterFact's {str: ...}. */
static bool get_str(fctx *c, const ynode *n, const char *what, char **out)
{
    if (n && n->kind == YN_MAP) n = map_get(n, "str");
    if (!n || yn_is_null(n)) { *out = NULL; return true; }
    if (n->kind != YN_SCALAR) return fail(c, n, AL_ERR_RECIPE, "%s must be a string", what);
    if (!(*out = al_strndup(n->str, n->len))) return fail(c, n, AL_ERR_NOMEM, "out of memory");
    return true;
}

/* A continuation with exactly one leading space: " " + text without leading spaces. */
static bool get_target(fctx *c, const ynode *n, const char *what, char **out)
{
    char *raw;
    if (!get_str(c, n, what, &raw)) return false;
    if (!raw) { *out = NULL; return true; }
    const char *p = raw;
    while (*p == ' ') p++;
    if (!*p) { al_free(raw); return fail(c, n, AL_ERR_RECIPE, "%s is empty", what); }
    size_t k = strlen(p);
    *out = al_malloc(k + 2);
    if (!*out) { al_free(raw); return fail(c, n, AL_ERR_NOMEM, "out of memory"); }
    (*out)[0] = ' ';
    memcpy(*out + 1, p, k + 1);
    al_free(raw);
    return true;
}

static bool get_list(fctx *c, const ynode *n, const char *what, bool target, char ***out, size_t *count)
{
    *out = NULL;
    *count = 0;
    if (!n || yn_is_null(n)) return true;
    if (n->kind == YN_SCALAR) {
        if (!(*out = al_calloc(1, sizeof **out))) return fail(c, n, AL_ERR_NOMEM, "out of memory");
        *count = 1;
        return target ? get_target(c, n, what, &(*out)[0]) : get_str(c, n, what, &(*out)[0]);
    }
    if (n->kind != YN_SEQ) return fail(c, n, AL_ERR_RECIPE, "%s must be a list of strings", what);
    if (!(*out = al_calloc(n->n ? n->n : 1, sizeof **out))) return fail(c, n, AL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n->n; i++) {
        if (!(target ? get_target(c, n->kids[i], what, &(*out)[i]) : get_str(c, n->kids[i], what, &(*out)[i])))
            return false;
        if (!(*out)[i]) return fail(c, n->kids[i], AL_ERR_RECIPE, "%s: empty entry", what);
        (*count)++;
    }
    return true;
}

/* Replace every "{}" in templ by subj. */
static char *fill(const char *templ, const char *subj)
{
    size_t n = 0, sl = strlen(subj);
    for (const char *p = templ; *p; p++) n += (p[0] == '{' && p[1] == '}') ? (p++, sl) : 1;
    char *out = al_malloc(n + 1), *o = out;
    if (!out) return NULL;
    for (const char *p = templ; *p; p++) {
        if (p[0] == '{' && p[1] == '}') { memcpy(o, subj, sl); o += sl; p++; }
        else *o++ = *p;
    }
    *o = '\0';
    return out;
}

static void fact_clear(al_fact *f)
{
    al_free(f->prompt);
    al_free(f->templ);
    al_free(f->subject);
    al_free(f->target_new);
    al_free(f->target_true);
    al_free(f->group);
    for (size_t i = 0; i < f->n_alternatives; i++) al_free(f->alternatives[i]);
    for (size_t i = 0; i < f->n_paraphrases; i++) al_free(f->paraphrases[i]);
    for (size_t i = 0; i < f->n_neighborhood; i++) al_free(f->neighborhood[i]);
    al_free(f->alternatives);
    al_free(f->paraphrases);
    al_free(f->neighborhood);
    memset(f, 0, sizeof *f);
}

static bool known_key(const char *k, const char *const *keys)
{
    for (size_t i = 0; keys[i]; i++) if (strcmp(k, keys[i]) == 0) return true;
    return false;
}

/* A mapping must not repeat a key: the second value would silently win (and, found by
 * fuzzing, overran arrays sized by the first). */
static bool no_dup_keys(fctx *c, const ynode *m)
{
    if (m->n > 2 * 64)     /* no valid mapping here has that many keys; keeps this O(1) */
        return fail(c, m, AL_ERR_RECIPE, "a mapping with %zu keys: unknown or repeated keys", m->n / 2);
    for (size_t i = 2; i + 1 < m->n; i += 2)
        for (size_t j = 0; j < i; j += 2) {
            const ynode *a = m->kids[i], *b = m->kids[j];
            if (a->kind == YN_SCALAR && b->kind == YN_SCALAR && !strcmp(a->str, b->str))
                return fail(c, a, AL_ERR_RECIPE, "duplicate key '%s' (first at line %d)", a->str, b->line);
        }
    return true;
}

static bool parse_item(fctx *c, const ynode *n, al_fact *f)
{
    static const char *const keys[] = {
        "prompt", "subject", "target_new", "target", "expect", "target_true", "alternatives",
        "paraphrase_prompts", "neighborhood_prompts", "group", "split", "kind", "relation", "relation_id",
        "template", "case_id", "requested_rewrite", "pararel_idx", "attribute_prompts", "generation_prompts",
        "paraphrase_prompts_train_templates", "neighborhood_prompts_targets", "id", NULL};
    f->line = n->line;
    f->col = n->col;
    if (n->kind != YN_MAP) return fail(c, n, AL_ERR_RECIPE, "a fact must be a mapping (prompt:, subject:, target_new:, ...)");
    if (!no_dup_keys(c, n)) return false;
    const ynode *rw = map_get(n, "requested_rewrite");    /* CounterFact: dataset fields beside it are fine */
    for (size_t i = 0; i + 1 < n->n && !rw; i += 2)
        if (n->kids[i]->kind != YN_SCALAR || !known_key(n->kids[i]->str, keys))
            return fail(c, n->kids[i], AL_ERR_RECIPE, "unknown key '%s' in a fact",
                        n->kids[i]->kind == YN_SCALAR ? n->kids[i]->str : "?");
    const ynode *src = rw ? rw : n;
    char *prompt = NULL;
    if (!get_str(c, map_get(src, "prompt"), "prompt", &prompt)) return false;
    if (!prompt) return fail(c, n, AL_ERR_RECIPE, "a fact needs a prompt");
    if (!get_str(c, map_get(src, "subject"), "subject", &f->subject)) { al_free(prompt); return false; }
    const ynode *tn = map_get(src, "target_new");
    if (!tn) tn = map_get(src, "target");
    if (!tn) tn = map_get(src, "expect");
    if (!tn) { al_free(prompt); return fail(c, n, AL_ERR_RECIPE, "a fact needs target_new (or target / expect)"); }
    if (!get_target(c, tn, "target_new", &f->target_new) || !get_target(c, map_get(src, "target_true"), "target_true", &f->target_true)) {
        al_free(prompt);
        return false;
    }
    if (strstr(prompt, "{}")) {
        if (!f->subject) { al_free(prompt); return fail(c, n, AL_ERR_RECIPE, "the prompt has {} but no subject is given"); }
        f->templ = prompt;
        if (!(f->prompt = fill(prompt, f->subject))) return fail(c, n, AL_ERR_NOMEM, "out of memory");
    } else {
        f->prompt = prompt;
        if (f->subject && !strstr(prompt, f->subject))
            return fail(c, n, AL_ERR_RECIPE, "subject '%s' does not occur in the prompt '%s'", f->subject, prompt);
    }
    if (f->subject && !*f->subject) return fail(c, n, AL_ERR_RECIPE, "the subject is empty");
    const ynode *g = map_get(n, "group");
    if (!g) g = map_get(n, "split");
    if (!get_str(c, g, "group", &f->group)) return false;
    return get_list(c, map_get(n, "alternatives"), "alternatives", true, &f->alternatives, &f->n_alternatives) &&
           get_list(c, map_get(n, "paraphrase_prompts"), "paraphrase_prompts", false, &f->paraphrases, &f->n_paraphrases) &&
           get_list(c, map_get(n, "neighborhood_prompts"), "neighborhood_prompts", false, &f->neighborhood, &f->n_neighborhood);
}

static void settings_clear(al_edit_settings *e)
{
    al_free(e->model);
    al_free(e->method);
    al_free(e->layers);
    for (size_t i = 0; i < e->n_stats; i++) al_free(e->stats[i]);
    al_free(e->stats);
    al_free(e->output);
    for (size_t i = 0; i < e->n_templates; i++) al_free(e->context_templates[i]);
    al_free(e->context_templates);
    for (size_t i = 0; i < e->n_hp; i++) al_free(e->hp_names[i]);
    al_free(e->hp_names);
    al_free(e->hp_values);
}

static bool get_int(fctx *c, const ynode *n, const char *what, long *out)
{
    char *end;
    if (!n || n->kind != YN_SCALAR || !n->len) return fail(c, n, AL_ERR_RECIPE, "%s must be an integer", what);
    errno = 0;
    long v = strtol(n->str, &end, 10);
    if (errno || *end) return fail(c, n, AL_ERR_RECIPE, "%s must be an integer, not '%s'", what, n->str);
    *out = v;
    return true;
}

/* The top-level keys of an edit file (rome.md §4's suggested layout). */
static bool parse_settings(fctx *c, const ynode *root, al_edit_settings *e)
{
    static const char *const keys[] = {"model", "method", "layer", "layers", "stats", "context_templates", "seed",
                                       "output", "hparams", "facts", "edits", NULL};
    e->seed = -1;
    e->line = root->line;
    e->col = root->col;
    if (!no_dup_keys(c, root)) return false;
    for (size_t i = 0; i + 1 < root->n; i += 2) {
        const ynode *k = root->kids[i], *v = root->kids[i + 1];
        if (k->kind != YN_SCALAR || !known_key(k->str, keys))
            return fail(c, k, AL_ERR_RECIPE, "unknown key '%s' in an edit file", k->kind == YN_SCALAR ? k->str : "?");
        const char *n = k->str;
        if (!strcmp(n, "model")) {
            const ynode *mv = v && v->kind == YN_MAP ? map_get(v, "path") : v;   /* {path: ..., format: ...} */
            if (!get_str(c, mv, "model", &e->model)) return false;
        } else if (!strcmp(n, "method")) {
            if (!get_str(c, v, "method", &e->method)) return false;
            if (e->method && strcmp(e->method, "rome") && strcmp(e->method, "r-rome") && strcmp(e->method, "memit"))
                return fail(c, v, AL_ERR_RECIPE, "unknown method '%s' (rome, r-rome or memit)", e->method);
        } else if (!strcmp(n, "layer") || !strcmp(n, "layers")) {
            /* found by fuzzing: both keys once overran the first one's array */
            if (e->layers) return fail(c, k, AL_ERR_RECIPE, "give either layer or layers, once");
            size_t cnt = v->kind == YN_SEQ ? v->n : 1;
            if (!cnt) return fail(c, v, AL_ERR_RECIPE, "%s is empty", n);
            if (!(e->layers = al_calloc(cnt, sizeof *e->layers))) return fail(c, v, AL_ERR_NOMEM, "out of memory");
            for (size_t j = 0; j < cnt; j++) {
                long l;
                if (!get_int(c, v->kind == YN_SEQ ? v->kids[j] : v, "layer", &l)) return false;
                if (l < 0 || l > 100000) return fail(c, v, AL_ERR_RECIPE, "layer %ld out of range", l);
                e->layers[e->n_layers++] = (int)l;
            }
        } else if (!strcmp(n, "stats")) {
            if (!get_list(c, v, "stats", false, &e->stats, &e->n_stats)) return false;
        } else if (!strcmp(n, "output")) {
            const ynode *ov = v && v->kind == YN_MAP ? map_get(v, "path") : v;
            if (!get_str(c, ov, "output", &e->output)) return false;
        } else if (!strcmp(n, "seed")) {
            if (!yn_is_null(v) && !get_int(c, v, "seed", &e->seed)) return false;
        } else if (!strcmp(n, "context_templates")) {
            if (yn_is_null(v)) continue;
            if (!get_list(c, v, "context_templates", false, &e->context_templates, &e->n_templates)) return false;
            for (size_t j = 0; j < e->n_templates; j++)
                if (!strstr(e->context_templates[j], "{}"))
                    return fail(c, v, AL_ERR_RECIPE, "context template '%s' has no {}", e->context_templates[j]);
        } else if (!strcmp(n, "hparams")) {
            if (v->kind != YN_MAP) return fail(c, v, AL_ERR_RECIPE, "hparams must be a mapping of name: number");
            size_t cnt = v->n / 2;
            e->hp_names = al_calloc(cnt ? cnt : 1, sizeof *e->hp_names);
            e->hp_values = al_calloc(cnt ? cnt : 1, sizeof *e->hp_values);
            if (!e->hp_names || !e->hp_values) return fail(c, v, AL_ERR_NOMEM, "out of memory");
            for (size_t j = 0; j + 1 < v->n; j += 2) {
                const ynode *hk = v->kids[j], *hv = v->kids[j + 1];
                char *end;
                if (hk->kind != YN_SCALAR) return fail(c, hk, AL_ERR_RECIPE, "hparams keys must be names");
                if (hv->kind != YN_SCALAR) return fail(c, hv, AL_ERR_RECIPE, "hparams.%s must be a number", hk->str);
                double x = strtod(hv->str, &end);
                if (end == hv->str || *end) {
                    if (!strcmp(hv->str, "true")) x = 1;
                    else if (!strcmp(hv->str, "false")) x = 0;
                    else return fail(c, hv, AL_ERR_RECIPE, "hparams.%s must be a number, not '%s'", hk->str, hv->str);
                }
                if (!(e->hp_names[e->n_hp] = al_strdup(hk->str))) return fail(c, hk, AL_ERR_NOMEM, "out of memory");
                e->hp_values[e->n_hp++] = x;
            }
        }
    }
    return true;
}

void al_facts_free(al_facts *f)
{
    if (!f) return;
    settings_clear(&f->settings);
    for (size_t i = 0; i < f->n; i++) fact_clear(&f->items[i]);
    al_free(f->items);
    al_free(f->filename);
    al_free(f);
}

/* Facts from a parsed node: a mapping with settings and a facts:/edits: list, or a list. */
static al_status facts_from_node(const ynode *root, const char *filename, al_facts **out, al_error *err)
{
    fctx c = {filename, err, AL_OK};
    *out = NULL;
    al_facts *f = al_calloc(1, sizeof *f);
    if (!f || !(f->filename = al_strdup(filename))) { al_free(f); return al_errorf(err, AL_ERR_NOMEM, "out of memory"); }
    f->settings.seed = -1;
    const ynode *list = root;
    if (root && root->kind == YN_MAP) {
        if (!parse_settings(&c, root, &f->settings)) goto done;
        list = map_get(root, "facts");
        if (!list) list = map_get(root, "edits");
        if (!list) { fail(&c, root, AL_ERR_RECIPE, "no 'facts:' or 'edits:' list"); goto done; }
    }
    if (!list || list->kind != YN_SEQ) { fail(&c, list ? list : root, AL_ERR_RECIPE, "facts must be a list"); goto done; }
    if (list->n == 0) { fail(&c, list, AL_ERR_RECIPE, "the facts list is empty"); goto done; }
    if (list->n > AL_FACTS_MAX) { fail(&c, list, AL_ERR_RECIPE, "more than %d facts", AL_FACTS_MAX); goto done; }
    if (!(f->items = al_calloc(list->n, sizeof *f->items))) { fail(&c, list, AL_ERR_NOMEM, "out of memory"); goto done; }
    for (size_t i = 0; i < list->n; i++) {
        f->n = i + 1;
        if (!parse_item(&c, list->kids[i], &f->items[i])) goto done;
    }
done:
    if (c.st != AL_OK) { al_facts_free(f); return c.st; }
    *out = f;
    return AL_OK;
}

al_status al_facts_parse(const char *text, size_t len, const char *filename, al_facts **out, al_error *err)
{
    ytree tree = {0};
    *out = NULL;
    al_status s = ytree_parse(text, len, filename, 4 * (size_t)AL_FACTS_MAX, 32, &tree, err);
    if (s != AL_OK) return s;
    if (tree.n_docs > 1) {
        fctx c = {filename, err, AL_OK};
        fail(&c, tree.docs[1], AL_ERR_RECIPE, "a facts file has one YAML document");
        ytree_free(&tree);
        return c.st;
    }
    s = facts_from_node(tree.n_docs ? tree.docs[0] : NULL, filename, out, err);
    ytree_free(&tree);
    return s;
}

al_status al_facts_parse_stage(const char *text, size_t len, const char *filename, al_facts **out, al_error *err)
{
    ytree tree = {0};
    *out = NULL;
    al_status s = ytree_parse(text, len, filename, 4 * (size_t)AL_FACTS_MAX, 32, &tree, err);
    if (s != AL_OK) return s;
    const ynode *last = NULL;
    for (size_t i = 0; i < tree.n_docs; i++)
        if (!yn_is_null(tree.docs[i])) last = tree.docs[i];
    const ynode *e = last && last->kind == YN_MAP ? map_get(last, "edits") : NULL;
    if (!e) s = AL_OK;
    else if (e->kind == YN_SCALAR) s = al_facts_load(e->str, out, err);
    else s = facts_from_node(e, filename, out, err);
    ytree_free(&tree);
    return s;
}

al_status al_facts_load(const char *path, al_facts **out, al_error *err)
{
    char *buf;
    size_t n;
    *out = NULL;
    al_status s = al_read_file(path, FACTS_MAX_BYTES, "facts file", &buf, &n, err);
    if (s == AL_OK) s = al_facts_parse(buf, n, path, out, err);
    al_free(buf);
    return s;
}
