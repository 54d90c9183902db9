/* recipes/param.c: parameter settings (recipes.md §1.4) and model references (§1.2). */
#include "recipe.h"

#include <math.h>
#include <string.h>

#include "../core/alloc.h"

void al_strvec_free(al_strvec *v)
{
    if (!v) return;
    for (size_t i = 0; i < v->n; i++) al_free(v->items[i]);
    al_free(v->items);
    memset(v, 0, sizeof *v);
}

const al_param *al_params_find(const al_params *ps, const char *name)
{
    if (!ps) return NULL;
    /* Duplicate keys are rejected at parse time, so the first hit is the only one. */
    for (size_t i = 0; i < ps->n; i++)
        if (strcmp(ps->items[i].name, name) == 0) return &ps->items[i];
    return NULL;
}

static void scalar_of(const al_param_value *v, al_pscalar *out)
{
    out->kind = v->kind;
    out->num = v->num;
    out->str = v->str;
}

/* mergekit filters are plain substrings; None and "*" match everything. */
static bool filter_matches(const char *filter, const char *tensor)
{
    if (!filter || strcmp(filter, "*") == 0) return true;
    return tensor && strstr(tensor, filter) != NULL;
}

void al_pv_eval(const al_param_value *v, const char *tensor_name, double t,
                al_pscalar *out, bool *found)
{
    if (!(t >= 0.0)) t = 0.0;          /* also maps NaN to 0 */
    if (t > 1.0) t = 1.0;
    *found = true;
    switch (v->kind) {
    case AL_PV_NUMBER: case AL_PV_BOOL: case AL_PV_STRING:
        scalar_of(v, out);
        return;
    case AL_PV_LIST: {
        if (v->n == 0) { *found = false; return; }          /* rejected at parse time */
        size_t n = v->n;
        double s = t * (double)(n - 1);
        size_t i0 = (size_t)floor(s);
        if (i0 > n - 1) i0 = n - 1;
        if (!v->numeric) {                                   /* step function */
            scalar_of(&v->items[i0], out);
            return;
        }
        size_t i1 = i0 + 1 < n ? i0 + 1 : n - 1;
        double f = s - (double)i0;
        out->kind = AL_PV_NUMBER;
        out->str = NULL;
        out->num = (1.0 - f) * v->items[i0].num + f * v->items[i1].num;
        return;
    }
    case AL_PV_CONDITIONAL:
        for (size_t i = 0; i < v->n; i++)
            if (filter_matches(v->conds[i].filter, tensor_name)) {   /* first match wins */
                al_pv_eval(&v->conds[i].value, tensor_name, t, out, found);
                return;
            }
        *found = false;                                      /* falls through */
        return;
    }
    *found = false;
}

al_status al_param_resolve(const al_param *p, const char *tensor_name, double t,
                           double *out, bool *found, al_error *err)
{
    al_pscalar s;
    al_pv_eval(&p->value, tensor_name, t, &s, found);
    if (!*found) return AL_OK;
    if (s.kind == AL_PV_STRING) {
        *found = false;
        return al_errorf(err, AL_ERR_RECIPE, "%d:%d: parameter '%s' is the string '%s', not a number",
                         p->pos.line, p->pos.col, p->name, s.str);
    }
    *out = s.num;
    return AL_OK;
}

al_status al_param_chain_resolve(const al_param_chain *c, const char *name, bool global,
                                 const char *tensor_name, double t, double *out,
                                 bool *found, const al_param **where, al_error *err)
{
    const al_params *levels[4] = { global ? NULL : c->source, c->slice, c->module, c->top };
    *found = false;
    if (where) *where = NULL;
    for (int i = 0; i < 4; i++) {
        const al_param *p = al_params_find(levels[i], name);
        if (!p) continue;
        al_status st = al_param_resolve(p, tensor_name, t, out, found, err);
        if (st) return st;
        if (*found) {
            if (where) *where = p;
            return AL_OK;
        }
    }
    return AL_OK;
}

/* ---- model references -------------------------------------------------------- */

void al_model_ref_clear(al_model_ref *r)
{
    if (!r) return;
    al_free(r->text);
    al_free(r->path);
    al_free(r->revision);
    al_free(r->lora);
    al_free(r->lora_revision);
    al_free(r->override_architecture);
    memset(r, 0, sizeof *r);
    r->doc_index = -1;
}

/* "path[@rev]" -> path, rev. More than one '@' or an empty part is an error (mergekit). */
static al_status split_rev(const char *s, size_t len, const char *whole, char **path, char **rev,
                           al_error *err)
{
    const char *at = memchr(s, '@', len);
    size_t plen = at ? (size_t)(at - s) : len;
    if (at && memchr(at + 1, '@', len - plen - 1))
        return al_errorf(err, AL_ERR_RECIPE, "model reference '%s' has more than one '@'", whole);
    if (plen == 0)
        return al_errorf(err, AL_ERR_RECIPE, "model reference '%s' has an empty path", whole);
    if (at && plen + 1 == len)
        return al_errorf(err, AL_ERR_RECIPE, "model reference '%s' has an empty revision after '@'",
                         whole);
    *path = al_strndup(s, plen);
    if (at) *rev = al_strndup(at + 1, len - plen - 1);
    if (!*path || (at && !*rev)) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    return AL_OK;
}

al_status al_model_ref_parse(const char *text, al_model_ref *out, al_error *err)
{
    al_status st = AL_OK;
    memset(out, 0, sizeof *out);
    out->doc_index = -1;
    size_t len = strlen(text);
    const char *plus = strchr(text, '+');
    if (plus && strchr(plus + 1, '+')) {
        st = al_errorf(err, AL_ERR_RECIPE,
                       "model reference '%s' has more than one '+' (expected model[+lora])", text);
        goto cleanup;
    }
    out->text = al_strdup(text);
    if (!out->text) { st = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto cleanup; }
    size_t mlen = plus ? (size_t)(plus - text) : len;
    st = split_rev(text, mlen, text, &out->path, &out->revision, err);
    if (st) goto cleanup;
    if (plus) st = split_rev(plus + 1, len - mlen - 1, text, &out->lora, &out->lora_revision, err);
cleanup:
    if (st) al_model_ref_clear(out);
    return st;
}
