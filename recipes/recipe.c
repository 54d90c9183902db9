/* recipes/recipe.c: YAML tree -> al_recipe, with mergekit's schema checks.
 *
 * mergekit (pydantic) silently ignores unknown keys and parameter names
 * (recipes.md §1); we warn with line:col and reject them in strict mode. Schema
 * errors do not stop the walk: every error is collected (opts->errors), and the
 * first one is returned in the al_error, so `alloy merge --check` can list them all. */
#include "recipe.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/alloc.h"
#include "../core/file.h"
#include "ytree_internal.h"

typedef struct {
    const char *file;
    bool strict;
    al_strvec *warnings;
    al_strvec *errors;          /* nullable */
    al_error *err;
    size_t n_errors;
    al_status first_code;       /* status of the first error (err may be NULL) */
    bool oom;
} pctx;

static bool strvec_push(al_strvec *v, const char *s)
{
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 8;
        char **ni = al_realloc(v->items, nc * sizeof *ni);
        if (!ni) return false;
        v->items = ni;
        v->cap = nc;
    }
    char *d = al_strdup(s);
    if (!d) return false;
    v->items[v->n++] = d;
    return true;
}

static al_pos pos_of(const ynode *n) { al_pos p = { n ? n->line : 0, n ? n->col : 0 }; return p; }

static void vreport(pctx *c, al_pos p, int kind /*0 error, 1 ignored, 2 note*/, al_status code,
                    const char *fmt, va_list ap)
{
    char msg[768], line[AL_ERROR_MSG_MAX];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (kind == 1 && c->strict) kind = 0;
    if (kind == 0) {
        snprintf(line, sizeof line, "%s:%d:%d: %s", c->file, p.line, p.col, msg);
        if (c->n_errors++ == 0) {
            c->first_code = code;
            al_errorf(c->err, code, "%s", line);
        }
        if (c->errors && !strvec_push(c->errors, line)) c->oom = true;
    } else {
        snprintf(line, sizeof line, "%s:%d:%d: warning: %s", c->file, p.line, p.col, msg);
        if (!strvec_push(c->warnings, line)) c->oom = true;
    }
}

__attribute__((format(printf, 3, 4)))
static void perr(pctx *c, al_pos p, const char *fmt, ...)
{ va_list ap; va_start(ap, fmt); vreport(c, p, 0, AL_ERR_RECIPE, fmt, ap); va_end(ap); }

__attribute__((format(printf, 4, 5)))
static void perr_code(pctx *c, al_pos p, al_status code, const char *fmt, ...)
{ va_list ap; va_start(ap, fmt); vreport(c, p, 0, code, fmt, ap); va_end(ap); }

/* Something mergekit silently ignores: a warning, an error when strict. */
__attribute__((format(printf, 3, 4)))
static void pignored(pctx *c, al_pos p, const char *fmt, ...)
{ va_list ap; va_start(ap, fmt); vreport(c, p, 1, AL_ERR_RECIPE, fmt, ap); va_end(ap); }

/* Advice only; never an error. */
__attribute__((format(printf, 3, 4)))
static void pnote(pctx *c, al_pos p, const char *fmt, ...)
{ va_list ap; va_start(ap, fmt); vreport(c, p, 2, AL_ERR_RECIPE, fmt, ap); va_end(ap); }

static char *dup_or_oom(pctx *c, const char *s)
{
    char *d = al_strdup(s);
    if (!d) c->oom = true;
    return d;
}

static void *calloc_or_oom(pctx *c, size_t n, size_t sz)
{
    void *p = al_calloc(n ? n : 1, sz);
    if (!p) c->oom = true;
    return p;
}

/* ---- scalar typing (PyYAML 1.1 for booleans and nulls, lax pydantic for numbers) ---- */

static const char *kind_name(const ynode *n)
{
    if (!n || yn_is_null(n)) return "nothing (null)";
    return n->kind == YN_SEQ ? "a list" : n->kind == YN_MAP ? "a mapping" : "a scalar";
}

static bool yn_bool(const ynode *n, bool *out)
{
    static const char *const t[] = { "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON" };
    static const char *const f[] = { "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF" };
    if (!n || n->kind != YN_SCALAR || !n->plain) return false;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        if (strcmp(n->str, t[i]) == 0) { *out = true; return true; }
        if (strcmp(n->str, f[i]) == 0) { *out = false; return true; }
    }
    return false;
}

/* 1 = finite number, 0 = not a number, -1 = a number but not finite. */
static int yn_number(const ynode *n, double *out)
{
    if (!n || n->kind != YN_SCALAR || n->len == 0 || strlen(n->str) != n->len) return 0;
    const char *s = n->str;
    while (*s == ' ') s++;
    if (!*s) return 0;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    while (*end == ' ') end++;
    if (*end || end == s) return 0;
    if (!isfinite(v)) return -1;
    *out = v;
    return 1;
}

static bool yn_int(const ynode *n, int64_t *out)
{
    if (!n || n->kind != YN_SCALAR || n->len == 0 || strlen(n->str) != n->len) return false;
    char *end;
    errno = 0;
    long long v = strtoll(n->str, &end, 10);
    if (*end || errno) return false;
    *out = v;
    return true;
}

static bool yn_is_str(const ynode *n) { return n && n->kind == YN_SCALAR && !yn_is_null(n); }

/* ---- mappings --------------------------------------------------------------------- */

/* A mapping with scalar, unique keys. PyYAML keeps the last of duplicate keys
 * silently; we reject duplicates because the intent is ambiguous. */
static bool check_map(pctx *c, const ynode *n, const char *what)
{
    if (!n || n->kind != YN_MAP) {
        perr(c, pos_of(n), "%s must be a mapping (key: value), got %s", what, kind_name(n));
        return false;
    }
    bool ok = true;
    for (size_t i = 0; i < n->n; i += 2) {
        const ynode *k = n->kids[i];
        if (k->kind != YN_SCALAR) {
            perr(c, pos_of(k), "keys in %s must be plain strings, got %s", what, kind_name(k));
            ok = false;
            continue;
        }
        for (size_t j = 0; j < i; j += 2)
            if (n->kids[j]->kind == YN_SCALAR && strcmp(n->kids[j]->str, k->str) == 0) {
                perr(c, pos_of(k), "duplicate key '%s' in %s (first at line %d column %d)",
                     k->str, what, n->kids[j]->line, n->kids[j]->col);
                ok = false;
                break;
            }
    }
    return ok;
}

static const ynode *map_get(const ynode *m, const char *key)
{
    if (!m || m->kind != YN_MAP) return NULL;
    for (size_t i = 0; i < m->n; i += 2)
        if (m->kids[i]->kind == YN_SCALAR && strcmp(m->kids[i]->str, key) == 0)
            return m->kids[i + 1];
    return NULL;
}

static const ynode *key_node(const ynode *m, const char *key)
{
    for (size_t i = 0; m && m->kind == YN_MAP && i < m->n; i += 2)
        if (m->kids[i]->kind == YN_SCALAR && strcmp(m->kids[i]->str, key) == 0) return m->kids[i];
    return NULL;
}

static bool key_in(const char *key, const char *const *keys)
{
    for (; *keys; keys++)
        if (strcmp(*keys, key) == 0) return true;
    return false;
}

/* Warn about every key of m not in `known`. */
static void unknown_keys(pctx *c, const ynode *m, const char *const *known, const char *what,
                         const al_method *method)
{
    for (size_t i = 0; m && m->kind == YN_MAP && i < m->n; i += 2) {
        const ynode *k = m->kids[i];
        if (k->kind != YN_SCALAR || key_in(k->str, known)) continue;
        if (method && al_method_param(method, k->str))
            pignored(c, pos_of(k), "unknown key '%s' in %s (mergekit ignores it); parameters "
                     "belong under 'parameters:'", k->str, what);
        else
            pignored(c, pos_of(k), "unknown key '%s' in %s (mergekit ignores it)", k->str, what);
    }
}

/* ---- parameter values ---------------------------------------------------------------- */

static void pv_clear(al_param_value *v);

static void pv_clear(al_param_value *v)
{
    if (!v) return;
    al_free(v->str);
    for (size_t i = 0; v->items && i < v->n; i++) pv_clear(&v->items[i]);
    al_free(v->items);
    for (size_t i = 0; v->conds && i < v->n; i++) {
        al_free(v->conds[i].filter);
        pv_clear(&v->conds[i].value);
    }
    al_free(v->conds);
    memset(v, 0, sizeof *v);
}

static bool build_scalar(pctx *c, const char *pname, const ynode *n, al_param_value *out)
{
    bool b;
    double d;
    out->pos = pos_of(n);
    out->str = dup_or_oom(c, n->str);
    if (!out->str) return false;
    if (yn_bool(n, &b)) {
        out->kind = AL_PV_BOOL;
        out->num = b ? 1.0 : 0.0;
        return true;
    }
    int r = yn_number(n, &d);
    if (r < 0) {
        perr(c, out->pos, "parameter '%s': '%s' is not a finite number", pname, n->str);
        return false;
    }
    out->kind = r ? AL_PV_NUMBER : AL_PV_STRING;
    out->num = r ? d : 0.0;
    return true;
}

static bool build_value(pctx *c, const char *pname, const ynode *n, al_param_value *out,
                        bool allow_cond);

static bool build_cond(pctx *c, const char *pname, const ynode *n, al_param_cond *out)
{
    static const char *const known[] = { "filter", "value", NULL };
    out->pos = pos_of(n);
    if (!check_map(c, n, "a conditional parameter entry")) return false;
    unknown_keys(c, n, known, "a conditional parameter entry", NULL);
    const ynode *f = map_get(n, "filter"), *v = map_get(n, "value");
    if (f && !yn_is_null(f)) {
        if (f->kind != YN_SCALAR) {
            perr(c, pos_of(f), "parameter '%s': filter must be a string, got %s", pname,
                 kind_name(f));
            return false;
        }
        out->filter = dup_or_oom(c, f->str);
        if (!out->filter) return false;
    }
    if (!v) {
        perr(c, out->pos, "parameter '%s': conditional entry has no 'value:'", pname);
        return false;
    }
    return build_value(c, pname, v, &out->value, false);
}

static bool build_value(pctx *c, const char *pname, const ynode *n, al_param_value *out,
                        bool allow_cond)
{
    memset(out, 0, sizeof *out);
    out->pos = pos_of(n);
    if (yn_is_null(n)) {
        perr(c, out->pos, "parameter '%s' has no value", pname);
        return false;
    }
    if (n->kind == YN_SCALAR) return build_scalar(c, pname, n, out);
    if (n->kind == YN_MAP) {                      /* a single ConditionalParameter */
        if (!allow_cond) {
            perr(c, out->pos, "parameter '%s': a conditional value must be a number or a list "
                 "of numbers, not another {filter, value}", pname);
            return false;
        }
        out->kind = AL_PV_CONDITIONAL;
        out->n = 1;
        out->conds = calloc_or_oom(c, 1, sizeof *out->conds);
        return out->conds && build_cond(c, pname, n, &out->conds[0]);
    }
    if (n->n == 0) {
        perr(c, out->pos, "parameter '%s' is an empty list", pname);
        return false;
    }
    size_t maps = 0, scalars = 0;
    for (size_t i = 0; i < n->n; i++) {
        if (n->kids[i]->kind == YN_MAP) maps++;
        else if (n->kids[i]->kind == YN_SCALAR && !yn_is_null(n->kids[i])) scalars++;
    }
    if (maps == n->n && allow_cond) {
        out->kind = AL_PV_CONDITIONAL;
        out->conds = calloc_or_oom(c, n->n, sizeof *out->conds);
        if (!out->conds) return false;
        out->n = n->n;
        bool ok = true;
        for (size_t i = 0; i < n->n; i++)
            ok = build_cond(c, pname, n->kids[i], &out->conds[i]) && ok;
        return ok;
    }
    if (scalars != n->n) {
        perr(c, out->pos, "parameter '%s': a list must hold only numbers (a gradient)%s", pname,
             allow_cond ? " or only {filter, value} entries" : "");
        return false;
    }
    out->kind = AL_PV_LIST;
    out->items = calloc_or_oom(c, n->n, sizeof *out->items);
    if (!out->items) return false;
    out->n = n->n;
    out->numeric = true;
    bool ok = true;
    for (size_t i = 0; i < n->n; i++) {
        ok = build_scalar(c, pname, n->kids[i], &out->items[i]) && ok;
        if (out->items[i].kind == AL_PV_STRING) out->numeric = false;
    }
    return ok;
}

static bool build_params(pctx *c, const ynode *key, const ynode *n, al_params *out)
{
    out->pos = pos_of(key);
    if (yn_is_null(n)) return true;                          /* `parameters:` with nothing */
    if (!check_map(c, n, "parameters")) return false;
    out->items = calloc_or_oom(c, n->n / 2, sizeof *out->items);
    if (!out->items) return false;
    bool ok = true;
    for (size_t i = 0; i < n->n; i += 2) {
        al_param *p = &out->items[out->n++];
        p->name = dup_or_oom(c, n->kids[i]->str);
        p->pos = pos_of(n->kids[i]);
        if (!p->name) return false;
        ok = build_value(c, p->name, n->kids[i + 1], &p->value, true) && ok;
    }
    return ok;
}

static void params_clear(al_params *ps)
{
    for (size_t i = 0; ps && i < ps->n; i++) {
        al_free(ps->items[i].name);
        pv_clear(&ps->items[i].value);
    }
    if (ps) { al_free(ps->items); memset(ps, 0, sizeof *ps); }
}

/* ---- model references ----------------------------------------------------------------- */

static bool ref_from_string(pctx *c, const char *text, al_pos pos, al_model_ref *out)
{
    al_error e = { 0 };
    al_status st = al_model_ref_parse(text, out, &e);
    if (st == AL_ERR_NOMEM) { c->oom = true; return false; }
    if (st) { perr(c, pos, "%s", e.msg); return false; }
    out->pos = pos;
    return true;
}

/* A ModelPath inside the dict form: "path[@rev]" or {path, revision}. */
static bool model_path(pctx *c, const ynode *n, const char *what, char **path, char **rev)
{
    if (yn_is_str(n)) {
        al_model_ref tmp;
        if (!ref_from_string(c, n->str, pos_of(n), &tmp)) return false;
        bool ok = !tmp.lora;
        if (!ok) perr(c, pos_of(n), "%s '%s' cannot itself contain '+'", what, n->str);
        *path = tmp.path; tmp.path = NULL;
        *rev = tmp.revision; tmp.revision = NULL;
        al_model_ref_clear(&tmp);
        return ok;
    }
    static const char *const known[] = { "path", "revision", NULL };
    if (!check_map(c, n, what)) return false;
    unknown_keys(c, n, known, what, NULL);
    const ynode *p = map_get(n, "path"), *r = map_get(n, "revision");
    if (!yn_is_str(p)) { perr(c, pos_of(n), "%s needs a 'path:' string", what); return false; }
    *path = dup_or_oom(c, p->str);
    if (r && yn_is_str(r)) *rev = dup_or_oom(c, r->str);
    return *path != NULL;
}

static bool build_ref(pctx *c, const ynode *n, al_pos keypos, const char *what, al_model_ref *out)
{
    memset(out, 0, sizeof *out);
    out->doc_index = -1;
    if (!n || yn_is_null(n)) {
        perr(c, n ? pos_of(n) : keypos, "%s: model reference is empty", what);
        return false;
    }
    if (n->kind == YN_SCALAR) return ref_from_string(c, n->str, pos_of(n), out);
    /* dict form {model, lora, override_architecture} (mergekit ModelReference) */
    static const char *const known[] = { "model", "lora", "override_architecture", NULL };
    if (!check_map(c, n, what)) return false;
    unknown_keys(c, n, known, what, NULL);
    out->pos = pos_of(n);
    const ynode *m = map_get(n, "model"), *l = map_get(n, "lora"),
                *o = map_get(n, "override_architecture");
    if (!m) { perr(c, pos_of(n), "%s: the dict form needs 'model:'", what); return false; }
    if (!model_path(c, m, "model", &out->path, &out->revision)) return false;
    if (l && !yn_is_null(l) && !model_path(c, l, "lora", &out->lora, &out->lora_revision))
        return false;
    if (o && yn_is_str(o)) out->override_architecture = dup_or_oom(c, o->str);
    size_t len = strlen(out->path) + (out->lora ? strlen(out->lora) + 1 : 0) + 1;
    out->text = calloc_or_oom(c, len, 1);
    if (!out->text) return false;
    snprintf(out->text, len, "%s%s%s", out->path, out->lora ? "+" : "", out->lora ? out->lora : "");
    return true;
}

/* ---- models / slices / modules ---------------------------------------------------------- */

static bool build_models(pctx *c, const ynode *n, const al_method *m, al_input_model **out,
                         size_t *count)
{
    static const char *const known[] = { "model", "parameters", NULL };
    if (!n || n->kind != YN_SEQ) {
        perr(c, pos_of(n), "'models' must be a list of {model: ..., parameters: ...}, got %s",
             kind_name(n));
        return false;
    }
    *out = calloc_or_oom(c, n->n, sizeof **out);
    if (!*out) return false;
    bool ok = true;
    for (size_t i = 0; i < n->n; i++) {
        const ynode *e = n->kids[i];
        al_input_model *im = &(*out)[(*count)++];
        im->pos = pos_of(e);
        im->model.doc_index = -1;
        if (e->kind == YN_SCALAR && !yn_is_null(e)) {
            perr(c, pos_of(e), "each 'models' entry must be a mapping with 'model:' (write "
                 "'- model: %s')", e->str);
            ok = false;
            continue;
        }
        if (!check_map(c, e, "a 'models' entry")) { ok = false; continue; }
        unknown_keys(c, e, known, "a 'models' entry", m);
        const ynode *mn = map_get(e, "model"), *pn = map_get(e, "parameters");
        if (!mn) { perr(c, im->pos, "'models' entry has no 'model:'"); ok = false; continue; }
        ok = build_ref(c, mn, im->pos, "model", &im->model) && ok;
        if (pn) ok = build_params(c, key_node(e, "parameters"), pn, &im->params) && ok;
    }
    return ok;
}

static bool build_range(pctx *c, const ynode *n, al_source *s)
{
    int64_t a, b;
    s->range_pos = pos_of(n);
    if (!n || n->kind != YN_SEQ || n->n != 2 || !yn_int(n->kids[0], &a) || !yn_int(n->kids[1], &b)) {
        perr(c, pos_of(n), "layer_range must be a list of two integers [start, end), got %s",
             n && n->kind == YN_SCALAR ? n->str : kind_name(n));
        return false;
    }
    if (a < 0 || b < 0) {
        perr(c, pos_of(n), "layer_range [%lld, %lld] has a negative layer index", (long long)a,
             (long long)b);
        return false;
    }
    if (a > b) {
        perr(c, pos_of(n), "layer_range [%lld, %lld] is reversed: start must be <= end (the range "
             "is half-open [start, end))", (long long)a, (long long)b);
        return false;
    }
    if (a == b)
        pnote(c, pos_of(n), "layer_range [%lld, %lld] is empty: this source contributes no layers "
              "(mergekit accepts it; users use it to pick the embedding/lm_head donor, issue #308)",
              (long long)a, (long long)b);
    s->layer_start = a;
    s->layer_end = b;
    return true;
}

static bool build_slices(pctx *c, const ynode *n, const al_method *m, al_slice **out, size_t *count)
{
    static const char *const kslice[] = { "sources", "base_model", "parameters", "residual_weight",
                                          NULL };
    static const char *const ksrc[] = { "model", "layer_range", "parameters", NULL };
    if (!n || n->kind != YN_SEQ) {
        perr(c, pos_of(n), "'slices' must be a list of {sources: [...]}, got %s", kind_name(n));
        return false;
    }
    *out = calloc_or_oom(c, n->n, sizeof **out);
    if (!*out) return false;
    bool ok = true;
    for (size_t i = 0; i < n->n; i++) {
        const ynode *e = n->kids[i];
        al_slice *sl = &(*out)[(*count)++];
        sl->pos = pos_of(e);
        if (!check_map(c, e, "a slice")) { ok = false; continue; }
        unknown_keys(c, e, kslice, "a slice", m);
        const ynode *src = map_get(e, "sources"), *bm = map_get(e, "base_model"),
                    *pn = map_get(e, "parameters"), *rw = map_get(e, "residual_weight");
        if (bm && !yn_is_null(bm)) {
            sl->base_model = calloc_or_oom(c, 1, sizeof *sl->base_model);
            if (!sl->base_model) return false;
            ok = build_ref(c, bm, pos_of(bm), "base_model", sl->base_model) && ok;
        }
        if (pn) ok = build_params(c, key_node(e, "parameters"), pn, &sl->params) && ok;
        if (rw) {
            double d;
            if (yn_number(rw, &d) == 1) { sl->has_residual_weight = true; sl->residual_weight = d; }
            else { perr(c, pos_of(rw), "residual_weight must be a number"); ok = false; }
            pnote(c, pos_of(key_node(e, "residual_weight")), "residual_weight is declared by "
                  "mergekit but never used; it has no effect");
        }
        if (!src || src->kind != YN_SEQ || src->n == 0) {
            perr(c, src ? pos_of(src) : sl->pos, "a slice needs 'sources:', a non-empty list of "
                 "{model, layer_range}");
            ok = false;
            continue;
        }
        sl->sources = calloc_or_oom(c, src->n, sizeof *sl->sources);
        if (!sl->sources) return false;
        for (size_t j = 0; j < src->n; j++) {
            const ynode *se = src->kids[j];
            al_source *s = &sl->sources[sl->n_sources++];
            s->pos = pos_of(se);
            s->model.doc_index = -1;
            if (!check_map(c, se, "a slice source")) { ok = false; continue; }
            unknown_keys(c, se, ksrc, "a slice source", m);
            const ynode *mn = map_get(se, "model"), *lr = map_get(se, "layer_range"),
                        *sp = map_get(se, "parameters");
            if (!mn) { perr(c, s->pos, "slice source has no 'model:'"); ok = false; }
            else ok = build_ref(c, mn, s->pos, "model", &s->model) && ok;
            if (!lr) {
                perr(c, s->pos, "slice source has no 'layer_range: [start, end]'");
                ok = false;
                continue;
            }
            if (sp) ok = build_params(c, key_node(se, "parameters"), sp, &s->params) && ok;
            if (!build_range(c, lr, s)) { ok = false; continue; }
            const al_source *s0 = &sl->sources[0];
            if (j > 0 && s0->range_pos.line &&
                s->layer_end - s->layer_start != s0->layer_end - s0->layer_start) {
                perr(c, s->range_pos, "all sources of a slice must have the same number of layers: "
                     "[%lld, %lld) has %lld, the first source [%lld, %lld) has %lld",
                     (long long)s->layer_start, (long long)s->layer_end,
                     (long long)(s->layer_end - s->layer_start), (long long)s0->layer_start,
                     (long long)s0->layer_end, (long long)(s0->layer_end - s0->layer_start));
                ok = false;
            }
        }
    }
    return ok;
}

static bool build_modules(pctx *c, const ynode *n, const al_method *m, al_recipe_doc *d)
{
    static const char *const known[] = { "models", "slices", "parameters", NULL };
    if (!check_map(c, n, "'modules'")) return false;
    d->modules = calloc_or_oom(c, n->n / 2, sizeof *d->modules);
    if (!d->modules) return false;
    bool ok = true;
    for (size_t i = 0; i < n->n; i += 2) {
        const ynode *k = n->kids[i], *v = n->kids[i + 1];
        al_module *mod = &d->modules[d->n_modules++];
        mod->pos = pos_of(k);
        mod->name = dup_or_oom(c, k->str);
        if (!mod->name) return false;
        if (!check_map(c, v, "a module")) { ok = false; continue; }
        unknown_keys(c, v, known, "a module", m);
        const ynode *mn = map_get(v, "models"), *sn = map_get(v, "slices"),
                    *pn = map_get(v, "parameters");
        if (!!mn == !!sn) {
            perr(c, pos_of(v), "module '%s' needs exactly one of 'models' or 'slices'", mod->name);
            ok = false;
        }
        if (mn) { mod->has_models = true; ok = build_models(c, mn, m, &mod->models, &mod->n_models) && ok; }
        if (sn) { mod->has_slices = true; ok = build_slices(c, sn, m, &mod->slices, &mod->n_slices) && ok; }
        if (pn) ok = build_params(c, key_node(v, "parameters"), pn, &mod->params) && ok;
    }
    return ok;
}

/* ---- tokenizer ---------------------------------------------------------------------------- */

static bool build_token(pctx *c, const ynode *k, const ynode *v, al_token_override *t)
{
    static const char *const known[] = { "source", "force", NULL };
    static const char *const ksrc[] = { "kind", "model", "token", "token_id", NULL };
    t->pos = pos_of(k);
    t->source_token_id = -1;
    t->model.doc_index = -1;
    t->token = dup_or_oom(c, k->str);
    if (!t->token) return false;
    if (!check_map(c, v, "a tokenizer token entry")) return false;
    unknown_keys(c, v, known, "a tokenizer token entry", NULL);
    const ynode *src = map_get(v, "source"), *force = map_get(v, "force");
    if (force && !yn_bool(force, &t->force)) {
        perr(c, pos_of(force), "token '%s': force must be true or false", t->token);
        return false;
    }
    if (!src) { perr(c, t->pos, "token '%s' has no 'source:'", t->token); return false; }
    if (src->kind == YN_SCALAR) {
        t->kind = AL_TOKEMB_MODEL;
        return build_ref(c, src, pos_of(src), "token source", &t->model);
    }
    if (!check_map(c, src, "a token source")) return false;
    unknown_keys(c, src, ksrc, "a token source", NULL);
    const ynode *kind = map_get(src, "kind");
    if (!yn_is_str(kind)) {
        perr(c, pos_of(src), "token '%s': source needs 'kind: model_token' or 'kind: zero'", t->token);
        return false;
    }
    if (strcmp(kind->str, "zero") == 0) { t->kind = AL_TOKEMB_ZERO; return true; }
    if (strcmp(kind->str, "model_token") != 0) {
        perr(c, pos_of(kind), "token '%s': unknown source kind '%s' (model_token or zero)",
             t->token, kind->str);
        return false;
    }
    t->kind = AL_TOKEMB_MODEL_TOKEN;
    const ynode *mn = map_get(src, "model"), *tok = map_get(src, "token"),
                *tid = map_get(src, "token_id");
    if (!mn) { perr(c, pos_of(src), "token '%s': model_token needs 'model:'", t->token); return false; }
    if (!build_ref(c, mn, pos_of(mn), "token source model", &t->model)) return false;
    if (!!tok == !!tid) {
        perr(c, pos_of(src), "token '%s': model_token needs exactly one of 'token' or 'token_id'",
             t->token);
        return false;
    }
    if (tok) {
        if (!yn_is_str(tok)) { perr(c, pos_of(tok), "token must be a string"); return false; }
        t->source_token = dup_or_oom(c, tok->str);
        return t->source_token != NULL;
    }
    if (!yn_int(tid, &t->source_token_id) || t->source_token_id < 0) {
        perr(c, pos_of(tid), "token_id must be a non-negative integer");
        return false;
    }
    return true;
}

static bool toksrc_from(pctx *c, const ynode *n, al_toksrc_kind *kind, al_model_ref *ref,
                        bool legacy_ok)
{
    if (!yn_is_str(n)) {
        perr(c, pos_of(n), "tokenizer source must be 'union', 'base' or a model reference, got %s",
             kind_name(n));
        return false;
    }
    if (strcmp(n->str, "union") == 0) { *kind = AL_TOKSRC_UNION; return true; }
    if (strcmp(n->str, "base") == 0) { *kind = AL_TOKSRC_BASE; return true; }
    const char *text = n->str;
    if (legacy_ok && strncmp(text, "model:", 6) == 0) {
        /* Removed in mergekit PR #334; newer versions would look for a model named "model:x". */
        pignored(c, pos_of(n), "legacy 'tokenizer_source: model:<name>' syntax (older mergekit); "
                 "write the model reference alone");
        text += 6;
        while (*text == ' ') text++;
    }
    *kind = AL_TOKSRC_MODEL;
    return ref_from_string(c, text, pos_of(n), ref);
}

static bool build_tokenizer(pctx *c, const ynode *n, al_tokenizer_config *t)
{
    static const char *const known[] = { "source", "tokens", "pad_to_multiple_of", NULL };
    t->source = AL_TOKSRC_UNION;                       /* mergekit's default */
    t->pos = pos_of(n);
    t->model.doc_index = -1;
    if (!check_map(c, n, "'tokenizer'")) return false;
    unknown_keys(c, n, known, "'tokenizer'", NULL);
    const ynode *src = map_get(n, "source"), *tok = map_get(n, "tokens"),
                *pad = map_get(n, "pad_to_multiple_of");
    bool ok = true;
    if (src && !yn_is_null(src)) ok = toksrc_from(c, src, &t->source, &t->model, false);
    if (pad && !yn_is_null(pad)) {
        if (!yn_int(pad, &t->pad_to_multiple_of) || t->pad_to_multiple_of < 1) {
            perr(c, pos_of(pad), "pad_to_multiple_of must be a positive integer");
            ok = false;
        }
    }
    if (tok && !yn_is_null(tok)) {
        if (!check_map(c, tok, "'tokens'")) return false;
        t->tokens = calloc_or_oom(c, tok->n / 2, sizeof *t->tokens);
        if (!t->tokens) return false;
        for (size_t i = 0; i < tok->n; i += 2)
            ok = build_token(c, tok->kids[i], tok->kids[i + 1], &t->tokens[t->n_tokens++]) && ok;
    }
    return ok;
}

/* ---- document ------------------------------------------------------------------------------- */

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[64];
    if (lb >= 63 || la >= 63) return 99;
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            size_t sub = prev + (a[i - 1] != b[j - 1]);
            size_t del = row[j] + 1, ins = row[j - 1] + 1;
            row[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            prev = cur;
        }
    }
    return row[lb];
}

static const char *suggest_method(const char *name)
{
    const char *best = NULL;
    size_t bd = 3;
    for (size_t i = 0; i < al_method_count(); i++) {
        size_t d = edit_distance(name, al_method_at(i)->name);
        if (d < bd) { bd = d; best = al_method_at(i)->name; }
    }
    return best;
}

static bool set_method(pctx *c, const ynode *n, al_recipe_doc *d)
{
    d->method_pos = pos_of(n);
    if (!yn_is_str(n)) {
        perr(c, pos_of(n), "merge_method must be a string, got %s", kind_name(n));
        return false;
    }
    d->merge_method = dup_or_oom(c, n->str);
    d->method = al_method_find(n->str);
    if (d->method) return true;
    if (al_method_is_branch_only(n->str)) {
        perr_code(c, pos_of(n), AL_ERR_UNSUPPORTED, "merge_method '%s' exists only on unmerged "
                  "mergekit branches; not a merge recipe alloy supports", n->str);
        return false;
    }
    const char *s = suggest_method(n->str);
    if (s) perr(c, pos_of(n), "unknown merge_method '%s' (did you mean '%s'?)", n->str, s);
    else perr(c, pos_of(n), "unknown merge_method '%s'", n->str);
    return false;
}

static bool set_dtype(pctx *c, const ynode *n, const char *key, al_dtype *out, al_pos *pos)
{
    *pos = pos_of(n);
    if (!yn_is_str(n)) {
        perr(c, pos_of(n), "%s must be a dtype name such as bfloat16, got %s", key, kind_name(n));
        return false;
    }
    const char *s = n->str;
    if (strncmp(s, "torch.", 6) == 0) s += 6;          /* mergekit's dtype_from_name allows it */
    if (!al_dtype_from_user(s, out) || !al_dtype_is_float(*out)) {
        perr(c, pos_of(n), "unknown %s '%s' (use float32, float16 or bfloat16)", key, n->str);
        return false;
    }
    if (strcmp(s, "float32") && strcmp(s, "float16") && strcmp(s, "bfloat16"))
        pnote(c, pos_of(n), "%s '%s' is an alloy spelling; mergekit accepts only float32, float16 "
              "and bfloat16", key, n->str);
    return true;
}

static bool set_chat_template(pctx *c, const ynode *n, al_recipe_doc *d)
{
    static const char *const builtin[] = { "auto", "alpaca", "chatml", "llama3", "mistral",
                                           "exaone", NULL };
    d->chat_template_pos = pos_of(n);
    if (!yn_is_str(n)) {
        perr(c, pos_of(n), "chat_template must be a string, got %s", kind_name(n));
        return false;
    }
    d->chat_template = dup_or_oom(c, n->str);
    if (key_in(n->str, builtin) || (strlen(n->str) >= 20 && strchr(n->str, '{'))) return true;
    perr(c, pos_of(n), "unknown chat_template '%s': use auto, alpaca, chatml, llama3, mistral, "
         "exaone or a literal Jinja template", n->str);
    return false;
}

static bool set_lines(pctx *c, const ynode *n, al_recipe_doc *d)
{
    static const char *const known[] = { "alpha", "beta", NULL };
    d->lines_pos = pos_of(n);
    if (!check_map(c, n, "'lines'")) return false;
    unknown_keys(c, n, known, "'lines'", NULL);
    const ynode *a = map_get(n, "alpha"), *b = map_get(n, "beta");
    /* alpha: a number, or `auto` for the paper's multi-task rule
     * alpha = ||sum_t tau_t||_1 / (T ||tau_merged||_1) (Wang et al., ICLR 2025, Eq. 2) */
    d->lines_alpha_auto = a && a->str && strcmp(a->str, "auto") == 0;
    if ((!d->lines_alpha_auto && yn_number(a, &d->lines_alpha) != 1) || yn_number(b, &d->lines_beta) != 1) {
        perr(c, pos_of(n), "lines needs 'alpha' (a number or auto) and a numeric 'beta'");
        return false;
    }
    d->has_lines = true;
    return true;
}

/* A document with no merge_method: say what it is if we can tell (recipes README classes). */
static void no_method(pctx *c, const ynode *root)
{
    al_pos p = pos_of(root);
    if (map_get(root, "experts") || map_get(root, "gate_mode"))
        perr_code(c, p, AL_ERR_UNSUPPORTED, "not a merge recipe: this is a mergekit-moe config "
                  "(experts/gate_mode); alloy does not build MoE models");
    else if (map_get(root, "metric_method"))
        perr_code(c, p, AL_ERR_UNSUPPORTED, "not a merge recipe: this is a mergekit metrics config "
                  "(metric_method)");
    else if (map_get(root, "genome"))
        perr_code(c, p, AL_ERR_UNSUPPORTED, "not a merge recipe: this is a mergekit-evolve config "
                  "(genome)");
    else if (!map_get(root, "models") && !map_get(root, "slices") && !map_get(root, "modules"))
        perr(c, p, "not a complete merge recipe: no merge_method and no models/slices/modules "
             "(a fragment?)");
    else
        perr(c, p, "missing required key 'merge_method'");
}

static const char *const doc_keys[] = {
    "merge_method", "models", "slices", "modules", "base_model", "parameters", "dtype",
    "out_dtype", "tokenizer_source", "tokenizer", "chat_template", "name", "lines", "edits", NULL
};

static bool build_doc(pctx *c, const ynode *root, al_recipe_doc *d)
{
    d->pos = pos_of(root);
    if (root->kind != YN_MAP) {
        perr(c, d->pos, "the top level of a recipe must be a mapping (merge_method: ..., models: "
             "...), got %s", kind_name(root));
        return false;
    }
    if (!check_map(c, root, "the recipe")) return false;
    const ynode *mm = map_get(root, "merge_method");
    if (!mm) { no_method(c, root); return false; }
    bool ok = set_method(c, mm, d);
    const al_method *m = d->method;
    unknown_keys(c, root, doc_keys, "the recipe", m);
    const ynode *models = map_get(root, "models"), *slices = map_get(root, "slices"),
                *modules = map_get(root, "modules");
    int nbody = !!models + !!slices + !!modules;
    if (nbody != 1) {
        perr(c, nbody ? pos_of(key_node(root, slices ? "slices" : "modules")) : d->pos,
             nbody ? "give exactly one of 'models', 'slices' or 'modules', not several"
                   : "missing 'models', 'slices' or 'modules': nothing to merge");
        ok = false;
    }
    for (size_t i = 0; i < root->n; i += 2) {
        const ynode *k = root->kids[i], *v = root->kids[i + 1];
        const char *key = k->str;
        if (strcmp(key, "models") == 0) {
            d->has_models = true;
            ok = build_models(c, v, m, &d->models, &d->n_models) && ok;
        } else if (strcmp(key, "slices") == 0) {
            d->has_slices = true;
            ok = build_slices(c, v, m, &d->slices, &d->n_slices) && ok;
        } else if (strcmp(key, "modules") == 0) {
            d->has_modules = true;
            ok = build_modules(c, v, m, d) && ok;
        } else if (strcmp(key, "base_model") == 0) {
            if (yn_is_null(v)) continue;
            d->base_model = calloc_or_oom(c, 1, sizeof *d->base_model);
            if (!d->base_model) return false;
            ok = build_ref(c, v, pos_of(k), "base_model", d->base_model) && ok;
        } else if (strcmp(key, "parameters") == 0) {
            ok = build_params(c, k, v, &d->params) && ok;
        } else if (strcmp(key, "dtype") == 0) {
            if (yn_is_null(v)) continue;
            ok = (d->has_dtype = set_dtype(c, v, "dtype", &d->dtype, &d->dtype_pos)) && ok;
        } else if (strcmp(key, "out_dtype") == 0) {
            if (yn_is_null(v)) continue;
            ok = (d->has_out_dtype = set_dtype(c, v, "out_dtype", &d->out_dtype, &d->out_dtype_pos))
                 && ok;
        } else if (strcmp(key, "tokenizer_source") == 0) {
            if (yn_is_null(v)) continue;
            d->tokenizer_source_pos = pos_of(v);
            d->tokenizer_source_model.doc_index = -1;
            ok = toksrc_from(c, v, &d->tokenizer_source, &d->tokenizer_source_model, true) && ok;
        } else if (strcmp(key, "tokenizer") == 0) {
            if (yn_is_null(v)) continue;
            d->tokenizer = calloc_or_oom(c, 1, sizeof *d->tokenizer);
            if (!d->tokenizer) return false;
            ok = build_tokenizer(c, v, d->tokenizer) && ok;
        } else if (strcmp(key, "chat_template") == 0) {
            if (yn_is_null(v)) continue;
            ok = set_chat_template(c, v, d) && ok;
        } else if (strcmp(key, "name") == 0) {
            d->name_pos = pos_of(v);
            if (!yn_is_str(v)) { perr(c, pos_of(v), "name must be a string"); ok = false; continue; }
            d->name = dup_or_oom(c, v->str);
        } else if (strcmp(key, "lines") == 0) {
            ok = set_lines(c, v, d) && ok;
        } else if (strcmp(key, "edits") == 0) {
            /* the facts themselves are read by the edit stage; here only the shape */
            d->has_edits = true;
            d->edits_pos = pos_of(v);
            if (yn_is_str(v)) d->edits_file = dup_or_oom(c, v->str);
            else if (v->kind != YN_MAP && v->kind != YN_SEQ) {
                perr(c, pos_of(v), "edits must be a facts file path, a facts mapping (method, "
                     "layer, stats, edits: [...]) or a list of edits");
                ok = false;
            }
        }
    }
    if (d->tokenizer_source && d->tokenizer) {
        perr(c, d->tokenizer->pos, "'tokenizer' and 'tokenizer_source' cannot both be set "
             "(tokenizer_source at line %d column %d)", d->tokenizer_source_pos.line,
             d->tokenizer_source_pos.col);
        ok = false;
    }
    return ok;
}

/* ---- method-aware validation ---------------------------------------------------------------- */

static bool value_numbers_ok(pctx *c, const al_param *p, const al_param_def *def,
                             const al_param_value *v)
{
    switch (v->kind) {
    case AL_PV_STRING:
        if (def->type == AL_PT_ENUM) {
            if (!def->choices) return true;
            size_t n = strlen(v->str);
            for (const char *q = def->choices; q;) {
                const char *e = strchr(q, '|');
                size_t l = e ? (size_t)(e - q) : strlen(q);
                if (l == n && strncmp(q, v->str, n) == 0) return true;
                q = e ? e + 1 : NULL;
            }
            perr(c, v->pos, "parameter '%s' must be one of %s, got '%s'", p->name, def->choices,
                 v->str);
            return false;
        }
        perr(c, v->pos, "parameter '%s' must be a number, got the string '%s'", p->name, v->str);
        return false;
    case AL_PV_NUMBER:
    case AL_PV_BOOL:
        if (def->type == AL_PT_ENUM) {
            perr(c, v->pos, "parameter '%s' must be one of %s, got '%s'", p->name, def->choices,
                 v->str);
            return false;
        }
        if (def->type == AL_PT_INT && v->num != floor(v->num)) {
            perr(c, v->pos, "parameter '%s' must be an integer, got %s", p->name, v->str);
            return false;
        }
        if ((def->has_min && v->num < def->min) || (def->has_max && v->num > def->max)) {
            if (def->has_max)
                perr(c, v->pos, "parameter '%s' = %s is out of range [%g, %g]", p->name, v->str,
                     def->min, def->max);
            else
                perr(c, v->pos, "parameter '%s' = %s is out of range: must be >= %g", p->name,
                     v->str, def->min);
            return false;
        }
        return true;
    case AL_PV_LIST: {
        if (def->type == AL_PT_ENUM) {
            perr(c, v->pos, "parameter '%s' must be one of %s, not a list", p->name, def->choices);
            return false;
        }
        bool ok = true;
        for (size_t i = 0; i < v->n; i++) ok = value_numbers_ok(c, p, def, &v->items[i]) && ok;
        return ok;
    }
    case AL_PV_CONDITIONAL: {
        bool ok = true;
        for (size_t i = 0; i < v->n; i++) ok = value_numbers_ok(c, p, def, &v->conds[i].value) && ok;
        return ok;
    }
    }
    return true;
}

static bool check_params(pctx *c, const al_recipe_doc *d, const al_params *ps, bool per_model)
{
    const al_method *m = d->method;
    bool ok = true;
    for (size_t i = 0; ps && i < ps->n; i++) {
        const al_param *p = &ps->items[i];
        const al_param_def *def = al_method_param(m, p->name);
        if (!def) {
            if (al_method_param_is_legacy(m, p->name))
                pignored(c, p->pos, "legacy parameter '%s' (older mergekit); current mergekit "
                         "ignores it", p->name);
            else
                pignored(c, p->pos, "unknown parameter '%s' for merge_method '%s' (mergekit "
                         "ignores it)", p->name, m->name);
            continue;
        }
        if (per_model && def->scope == AL_SCOPE_GLOBAL)
            pignored(c, p->pos, "'%s' is a global parameter of %s: mergekit ignores it in a "
                     "model's own parameters; set it in the top-level or slice parameters",
                     p->name, m->name);
        ok = value_numbers_ok(c, p, def, &p->value) && ok;
    }
    return ok;
}

static bool ref_same(const al_model_ref *a, const al_model_ref *b)
{
    return a && b && a->text && b->text && strcmp(a->text, b->text) == 0;
}

static bool is_set(const al_params *const *levels, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (al_params_find(levels[i], name)) return true;
    return false;
}

/* Required parameters and input counts for one models: list. */
static bool check_models_body(pctx *c, const al_recipe_doc *d, const al_input_model *ms, size_t n,
                              const al_params *modp, al_pos where)
{
    const al_method *m = d->method;
    bool ok = true, base_listed = false;
    size_t distinct = 0, nonbase = 0;
    for (size_t i = 0; i < n; i++) {
        bool dup = false;
        for (size_t j = 0; j < i; j++) dup = dup || ref_same(&ms[i].model, &ms[j].model);
        bool isbase = ref_same(&ms[i].model, d->base_model);
        base_listed = base_listed || isbase;
        if (!dup) { distinct++; nonbase += !isbase; }
        ok = check_params(c, d, &ms[i].params, true) && ok;
        for (size_t k = 0; k < m->n_params; k++) {
            const al_param_def *def = &m->params[k];
            if (!def->required || def->scope != AL_SCOPE_PER_MODEL) continue;
            if (isbase && !m->base_is_input) continue;      /* mergekit: required and not is_base */
            const al_params *lv[3] = { &ms[i].params, modp, &d->params };
            if (!is_set(lv, 3, def->name)) {
                perr(c, ms[i].pos, "missing required parameter '%s' for model '%s' (merge_method "
                     "%s); set it under this model's parameters: or in the top-level parameters:",
                     def->name, ms[i].model.text ? ms[i].model.text : "?", m->name);
                ok = false;
            }
        }
    }
    if (d->base_model && !base_listed) {
        distinct++;                 /* mergekit appends the base as an extra input */
        if (m->base_is_input)
            for (size_t k = 0; k < m->n_params; k++) {
                const al_param_def *def = &m->params[k];
                const al_params *lv[2] = { modp, &d->params };
                if (def->required && def->scope == AL_SCOPE_PER_MODEL && !is_set(lv, 2, def->name)) {
                    perr(c, d->base_model->pos, "missing required parameter '%s' for base_model "
                         "'%s': %s uses the base as an ordinary input; list it under models: with "
                         "its own %s", def->name, d->base_model->text, m->name, def->name);
                    ok = false;
                }
            }
    }
    if ((m->min_inputs && (int)distinct < m->min_inputs) ||
        (m->max_inputs && (int)distinct > m->max_inputs)) {
        if (m->min_inputs == m->max_inputs)
            perr(c, where, "%s needs exactly %d distinct input models (base included), got %zu",
                 m->name, m->min_inputs, distinct);
        else if (m->max_inputs)
            perr(c, where, "%s needs %d to %d distinct input models (base included), got %zu",
                 m->name, m->min_inputs, m->max_inputs, distinct);
        else
            perr(c, where, "%s needs at least %d distinct input models (base included), got %zu",
                 m->name, m->min_inputs, distinct);
        ok = false;
    } else if (m->exact_nonbase && (int)nonbase != m->exact_nonbase) {
        perr(c, where, "%s needs exactly %d models besides base_model, got %zu", m->name,
             m->exact_nonbase, nonbase);
        ok = false;
    }
    for (size_t k = 0; k < m->n_params; k++) {
        const al_param_def *def = &m->params[k];
        const al_params *lv[2] = { modp, &d->params };
        if (def->required && def->scope == AL_SCOPE_GLOBAL && !is_set(lv, 2, def->name)) {
            perr(c, d->method_pos, "missing required parameter '%s' for merge_method %s; set it in "
                 "the top-level parameters:", def->name, m->name);
            ok = false;
        }
    }
    return ok;
}

static bool check_slices_body(pctx *c, const al_recipe_doc *d, const al_slice *ss, size_t n,
                              const al_params *modp)
{
    const al_method *m = d->method;
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        const al_slice *sl = &ss[i];
        const al_model_ref *base = sl->base_model ? sl->base_model : d->base_model;
        if (m->base == AL_BASE_REQUIRED && !base) {
            perr(c, sl->pos, "merge_method %s requires base_model (set it at the top level or in "
                 "this slice)", m->name);
            ok = false;
        }
        ok = check_params(c, d, &sl->params, false) && ok;
        size_t distinct = 0;
        for (size_t j = 0; j < sl->n_sources; j++) {
            const al_source *s = &sl->sources[j];
            bool dup = false;
            for (size_t q = 0; q < j; q++) dup = dup || ref_same(&s->model, &sl->sources[q].model);
            distinct += !dup;
            ok = check_params(c, d, &s->params, true) && ok;
            bool isbase = ref_same(&s->model, base);
            for (size_t k = 0; k < m->n_params; k++) {
                const al_param_def *def = &m->params[k];
                if (!def->required || def->scope != AL_SCOPE_PER_MODEL) continue;
                if (isbase && !m->base_is_input) continue;
                const al_params *lv[4] = { &s->params, &sl->params, modp, &d->params };
                if (!is_set(lv, 4, def->name)) {
                    perr(c, s->pos, "missing required parameter '%s' for model '%s' (merge_method "
                         "%s); set it in this source's, the slice's or the top-level parameters:",
                         def->name, s->model.text ? s->model.text : "?", m->name);
                    ok = false;
                }
            }
        }
        /* Only the upper bound: with slices the base is not appended, and a one-source
         * slice passes through (mergekit). */
        if (m->max_inputs && (int)distinct > m->max_inputs) {
            perr(c, sl->pos, "%s takes at most %d input model%s per slice, this slice has %zu",
                 m->name, m->max_inputs, m->max_inputs == 1 ? "" : "s", distinct);
            ok = false;
        }
        for (size_t k = 0; k < m->n_params; k++) {
            const al_param_def *def = &m->params[k];
            const al_params *lv[3] = { &sl->params, modp, &d->params };
            if (def->required && def->scope == AL_SCOPE_GLOBAL && !is_set(lv, 3, def->name)) {
                perr(c, sl->pos, "missing required parameter '%s' for merge_method %s; set it in "
                     "the top-level or this slice's parameters:", def->name, m->name);
                ok = false;
            }
        }
    }
    return ok;
}

/* Methods whose result is base + a merged task vector, which LiNeS can scale by layer. */
static bool is_task_vector_method(const char *name)
{
    static const char *const tv[] = {"task_arithmetic", "ties", "dare_ties", "dare_linear", "breadcrumbs",
                                     "breadcrumbs_ties", "della", "della_linear", NULL};
    for (size_t i = 0; tv[i]; i++) if (strcmp(name, tv[i]) == 0) return true;
    return false;
}

static bool validate_doc(pctx *c, al_recipe_doc *d)
{
    const al_method *m = d->method;
    if (!m) return false;
    bool ok = check_params(c, d, &d->params, false);
    if (d->has_lines && !is_task_vector_method(m->name)) {
        perr(c, d->lines_pos, "lines: scales a merged task vector, so it applies to task_arithmetic, ties, "
             "dare_*, breadcrumbs* and della* (not %s); for one fine-tune use merge_method: lines", m->name);
        ok = false;
    }
    if (m->base == AL_BASE_FORBIDDEN && d->base_model) {
        perr(c, d->base_model->pos, "merge_method %s takes no base_model", m->name);
        ok = false;
    }
    if (m->base == AL_BASE_REQUIRED && !d->base_model && !d->has_slices && !d->has_modules) {
        perr(c, d->method_pos, "merge_method %s requires base_model", m->name);
        ok = false;
    }
    if (d->has_models) ok = check_models_body(c, d, d->models, d->n_models, NULL, d->method_pos) && ok;
    if (d->has_slices) ok = check_slices_body(c, d, d->slices, d->n_slices, NULL) && ok;
    for (size_t i = 0; i < d->n_modules; i++) {
        al_module *mod = &d->modules[i];
        ok = check_params(c, d, &mod->params, false) && ok;
        if (mod->has_models) {
            if (m->base == AL_BASE_REQUIRED && !d->base_model) {
                perr(c, mod->pos, "merge_method %s requires base_model", m->name);
                ok = false;
            }
            ok = check_models_body(c, d, mod->models, mod->n_models, &mod->params, mod->pos) && ok;
        }
        if (mod->has_slices)
            ok = check_slices_body(c, d, mod->slices, mod->n_slices, &mod->params) && ok;
    }
    return ok;
}

/* ---- references between documents (mergekit-multi) -------------------------------------------- */

typedef void (*ref_fn)(void *ud, al_model_ref *r);

static void for_each_ref(al_recipe_doc *d, ref_fn fn, void *ud)
{
    if (d->base_model) fn(ud, d->base_model);
    for (size_t i = 0; i < d->n_models; i++) fn(ud, &d->models[i].model);
    for (size_t s = 0; s < d->n_slices; s++) {
        if (d->slices[s].base_model) fn(ud, d->slices[s].base_model);
        for (size_t j = 0; j < d->slices[s].n_sources; j++) fn(ud, &d->slices[s].sources[j].model);
    }
    for (size_t k = 0; k < d->n_modules; k++) {
        al_module *mod = &d->modules[k];
        for (size_t i = 0; i < mod->n_models; i++) fn(ud, &mod->models[i].model);
        for (size_t s = 0; s < mod->n_slices; s++) {
            if (mod->slices[s].base_model) fn(ud, mod->slices[s].base_model);
            for (size_t j = 0; j < mod->slices[s].n_sources; j++)
                fn(ud, &mod->slices[s].sources[j].model);
        }
    }
    if (d->tokenizer_source == AL_TOKSRC_MODEL) fn(ud, &d->tokenizer_source_model);
    if (d->tokenizer) {
        if (d->tokenizer->source == AL_TOKSRC_MODEL) fn(ud, &d->tokenizer->model);
        for (size_t i = 0; i < d->tokenizer->n_tokens; i++)
            if (d->tokenizer->tokens[i].kind != AL_TOKEMB_ZERO) fn(ud, &d->tokenizer->tokens[i].model);
    }
}

typedef struct { pctx *c; al_recipe *r; size_t self; bool *edges; } link_ud;

static void link_ref(void *ud_, al_model_ref *ref)
{
    link_ud *u = ud_;
    if (!ref->text) return;
    for (size_t i = 0; i < u->r->n_docs; i++) {
        const char *name = u->r->docs[i].name;
        if (!name || strcmp(name, ref->text) != 0) continue;
        if (i == u->self) {
            perr(u->c, ref->pos, "'%s' refers to the document's own output", name);
            return;
        }
        ref->doc_index = (int)i;
        u->edges[u->self * u->r->n_docs + i] = true;
        return;
    }
}

static bool has_cycle(const bool *edges, size_t n, size_t v, unsigned char *state)
{
    state[v] = 1;
    for (size_t w = 0; w < n; w++) {
        if (!edges[v * n + w]) continue;
        if (state[w] == 1) return true;
        if (state[w] == 0 && has_cycle(edges, n, w, state)) return true;
    }
    state[v] = 2;
    return false;
}

static void link_docs(pctx *c, al_recipe *r)
{
    size_t n = r->n_docs;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (r->docs[i].name && r->docs[j].name && strcmp(r->docs[i].name, r->docs[j].name) == 0)
                perr(c, r->docs[i].name_pos, "duplicate document name '%s' (first at line %d)",
                     r->docs[i].name, r->docs[j].name_pos.line);
    bool *edges = calloc_or_oom(c, n * n, sizeof *edges);
    unsigned char *state = calloc_or_oom(c, n, 1);
    if (!edges || !state) goto cleanup;
    for (size_t i = 0; i < n; i++) {
        link_ud u = { c, r, i, edges };
        for_each_ref(&r->docs[i], link_ref, &u);
    }
    for (size_t i = 0; i < n; i++)
        if (state[i] == 0 && has_cycle(edges, n, i, state)) {
            perr(c, r->docs[i].pos, "documents refer to each other's outputs in a cycle "
                 "(through '%s')", r->docs[i].name ? r->docs[i].name : "an unnamed document");
            break;
        }
cleanup:
    al_free(edges);
    al_free(state);
}

/* ---- freeing ------------------------------------------------------------------------------------ */

static void models_free(al_input_model *ms, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        al_model_ref_clear(&ms[i].model);
        params_clear(&ms[i].params);
    }
    al_free(ms);
}

static void slices_free(al_slice *ss, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < ss[i].n_sources; j++) {
            al_model_ref_clear(&ss[i].sources[j].model);
            params_clear(&ss[i].sources[j].params);
        }
        al_free(ss[i].sources);
        al_model_ref_clear(ss[i].base_model);
        al_free(ss[i].base_model);
        params_clear(&ss[i].params);
    }
    al_free(ss);
}

static void doc_clear(al_recipe_doc *d)
{
    al_free(d->name);
    al_free(d->merge_method);
    al_model_ref_clear(d->base_model);
    al_free(d->base_model);
    models_free(d->models, d->n_models);
    slices_free(d->slices, d->n_slices);
    for (size_t i = 0; i < d->n_modules; i++) {
        al_free(d->modules[i].name);
        models_free(d->modules[i].models, d->modules[i].n_models);
        slices_free(d->modules[i].slices, d->modules[i].n_slices);
        params_clear(&d->modules[i].params);
    }
    al_free(d->modules);
    params_clear(&d->params);
    al_model_ref_clear(&d->tokenizer_source_model);
    if (d->tokenizer) {
        al_model_ref_clear(&d->tokenizer->model);
        for (size_t i = 0; i < d->tokenizer->n_tokens; i++) {
            al_free(d->tokenizer->tokens[i].token);
            al_free(d->tokenizer->tokens[i].source_token);
            al_model_ref_clear(&d->tokenizer->tokens[i].model);
        }
        al_free(d->tokenizer->tokens);
        al_free(d->tokenizer);
    }
    al_free(d->chat_template);
    al_free(d->edits_file);
}

void al_recipe_free(al_recipe *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n_docs; i++) doc_clear(&r->docs[i]);
    al_free(r->docs);
    al_free(r->filename);
    al_strvec_free(&r->warnings);
    al_free(r);
}

/* ---- entry points --------------------------------------------------------------------------------- */

al_status al_recipe_parse_string(const char *text, size_t len, const char *filename,
                                 const al_recipe_opts *opts, al_recipe **out, al_error *err)
{
    al_status st = AL_OK;
    ytree tree = { 0 };
    al_recipe *r = NULL;
    al_recipe_opts o = { 0 };
    if (opts) o = *opts;
    if (!filename) filename = "<string>";
    *out = NULL;
    if (!text) return al_errorf(err, AL_ERR_USAGE, "al_recipe_parse_string: text is NULL");
    r = al_calloc(1, sizeof *r);
    if (!r || !(r->filename = al_strdup(filename))) {
        st = al_errorf(err, AL_ERR_NOMEM, "out of memory parsing %s", filename);
        goto cleanup;
    }
    pctx c = { .file = filename, .strict = o.strict, .warnings = &r->warnings, .errors = o.errors,
               .err = err };
    st = ytree_parse(text, len, filename, o.max_nodes ? o.max_nodes : AL_RECIPE_MAX_NODES,
                     AL_RECIPE_MAX_DEPTH, &tree, err);
    if (st) {
        if (o.errors && st != AL_ERR_NOMEM && err) strvec_push(o.errors, err->msg);
        goto cleanup;
    }
    size_t n_real = 0;
    for (size_t i = 0; i < tree.n_docs; i++) n_real += !yn_is_null(tree.docs[i]);
    if (n_real == 0) {
        al_pos p = { 1, 1 };
        perr(&c, p, "empty recipe: no YAML document (expected merge_method, models, ...)");
        st = AL_ERR_RECIPE;
        goto cleanup;
    }
    r->docs = al_calloc(n_real, sizeof *r->docs);
    if (!r->docs) { st = al_errorf(err, AL_ERR_NOMEM, "out of memory parsing %s", filename); goto cleanup; }
    bool ok = true;
    for (size_t i = 0; i < tree.n_docs; i++) {
        if (yn_is_null(tree.docs[i])) continue;        /* an empty document ('---' at the end) */
        al_recipe_doc *d = &r->docs[r->n_docs++];
        d->tokenizer_source_model.doc_index = -1;
        bool built = build_doc(&c, tree.docs[i], d);
        ok = built && ok;
        if (c.oom) break;
        if (d->method) ok = validate_doc(&c, d) && ok;
        if (d->has_edits && i + 1 < tree.n_docs) {
            bool later = false;
            for (size_t k = i + 1; k < tree.n_docs; k++) later = later || !yn_is_null(tree.docs[k]);
            if (later) {
                perr(&c, d->edits_pos, "edits: belongs to the last document (the final output); "
                     "this one is followed by another");
                ok = false;
            }
        }
    }
    if (!c.oom) link_docs(&c, r);
    if (c.oom) {
        st = al_errorf(err, AL_ERR_NOMEM, "out of memory parsing %s", filename);
        goto cleanup;
    }
    if (c.n_errors || !ok) {
        if (c.n_errors == 0) {
            al_pos p = { 0, 0 };
            perr(&c, p, "invalid recipe");          /* a bug if reached: every failure reports */
        }
        st = c.first_code;
        if (c.n_errors > 1 && err) {
            size_t l = strlen(err->msg);
            snprintf(err->msg + l, sizeof err->msg - l, " (and %zu more error%s)", c.n_errors - 1,
                     c.n_errors == 2 ? "" : "s");
        }
        goto cleanup;
    }
    *out = r;
    r = NULL;
cleanup:
    ytree_free(&tree);
    al_recipe_free(r);
    return st;
}

al_status al_recipe_parse_file(const char *path, const al_recipe_opts *opts, al_recipe **out,
                               al_error *err)
{
    char *buf;
    size_t len;
    *out = NULL;
    al_status st = al_read_file(path, AL_RECIPE_MAX_BYTES, "recipe", &buf, &len, err);
    if (st == AL_OK) st = al_recipe_parse_string(buf, len, path, opts, out, err);
    al_free(buf);
    return st;
}

/* ---- parameter enumeration ------------------------------------------------------------------------ */

static void visit_params(const al_params *ps, al_plevel lv, const al_model_ref *m, const char *mod,
                         long slice, al_param_visit_fn fn, void *ud)
{
    for (size_t i = 0; ps && i < ps->n; i++) fn(ud, &ps->items[i], lv, m, mod, slice);
}

static void visit_body(const al_input_model *ms, size_t nm, const al_slice *ss, size_t ns,
                       const char *mod, al_param_visit_fn fn, void *ud)
{
    for (size_t i = 0; i < nm; i++)
        visit_params(&ms[i].params, AL_PLEVEL_SOURCE, &ms[i].model, mod, -1, fn, ud);
    for (size_t s = 0; s < ns; s++) {
        visit_params(&ss[s].params, AL_PLEVEL_SLICE, NULL, mod, (long)s, fn, ud);
        for (size_t j = 0; j < ss[s].n_sources; j++)
            visit_params(&ss[s].sources[j].params, AL_PLEVEL_SOURCE, &ss[s].sources[j].model, mod,
                         (long)s, fn, ud);
    }
}

void al_recipe_doc_visit_params(const al_recipe_doc *d, al_param_visit_fn fn, void *ud)
{
    visit_params(&d->params, AL_PLEVEL_TOP, NULL, NULL, -1, fn, ud);
    visit_body(d->models, d->n_models, d->slices, d->n_slices, NULL, fn, ud);
    for (size_t k = 0; k < d->n_modules; k++) {
        const al_module *mod = &d->modules[k];
        visit_params(&mod->params, AL_PLEVEL_MODULE, NULL, mod->name, -1, fn, ud);
        visit_body(mod->models, mod->n_models, mod->slices, mod->n_slices, mod->name, fn, ud);
    }
}
