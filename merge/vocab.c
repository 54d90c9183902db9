/* merge/vocab.c: output vocabulary and embedding row sources (see vocab.h). */
#include "vocab.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "../core/alloc.h"

/* Open-addressing set of token strings -> output id. */
typedef struct { const char **key; int64_t *val; size_t cap; } smap;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int64_t smap_get(const smap *m, const char *k)
{
    for (size_t h = hash_str(k) & (m->cap - 1);; h = (h + 1) & (m->cap - 1)) {
        if (!m->key[h]) return -1;
        if (strcmp(m->key[h], k) == 0) return m->val[h];
    }
}

static void smap_put(smap *m, const char *k, int64_t v)
{
    size_t h = hash_str(k) & (m->cap - 1);
    while (m->key[h]) h = (h + 1) & (m->cap - 1);
    m->key[h] = k;
    m->val[h] = v;
}

void al_vocab_plan_free(al_vocab_plan *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) al_free(p->tokens[i]);
    al_free(p->tokens);
    al_free(p->added);
    al_free(p->fill);
    memset(p, 0, sizeof *p);
}

/* Row of `token` in model m, or -1 (ids past the model's embedding rows do not count). */
static int64_t row_of(const al_tokenizer *t, int64_t rows, const char *token)
{
    if (!t) return -1;
    int32_t id = al_tokenizer_token_id(t, token);
    return id >= 0 && id < rows ? id : -1;
}

al_status al_vocab_plan_build(al_vocab_plan *p, const al_tokenizer *const *toks, const int64_t *rows, int n_models,
                              int base, int source, bool union_, const al_vtoken *cfg, size_t n_cfg,
                              int64_t pad_to_multiple_of, al_error *err)
{
    al_status s = AL_OK;
    smap map = {0};
    memset(p, 0, sizeof *p);
    p->n_models = n_models;
    p->source = source;
    size_t cap = (size_t)rows[source] + n_cfg + 1;
    for (int m = 0; union_ && m < n_models; m++) cap += (size_t)rows[m];
    map.cap = 16;
    while (map.cap < 2 * cap) map.cap *= 2;
    map.key = al_calloc(map.cap, sizeof *map.key);
    map.val = al_calloc(map.cap, sizeof *map.val);
    p->tokens = al_calloc(cap, sizeof *p->tokens);
    p->added = al_calloc(cap, sizeof *p->added);
    if (!map.key || !map.val || !p->tokens || !p->added) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
    /* the vocabulary: the source's tokens, then other models' (union), then configured ones */
    for (int pass = 0; pass <= n_models; pass++) {
        int m = pass == 0 ? source : pass - 1;
        if (pass > 0 && (!union_ || m == source)) continue;
        if (!toks[m]) {
            s = al_errorf(err, AL_ERR_NOTFOUND, "model %d has no tokenizer files", m);
            goto done;
        }
        for (int64_t id = 0; id < rows[m]; id++) {
            const char *t = al_tokenizer_token(toks[m], (int32_t)id);
            if (!t) {
                if (m == source) { s = al_errorf(err, AL_ERR_UNSUPPORTED, "token id %lld of the tokenizer source is unused (a gap): not supported", (long long)id); goto done; }
                continue;
            }
            if (smap_get(&map, t) >= 0) continue;
            if (!(p->tokens[p->n] = al_strdup(t))) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
            p->added[p->n] = al_tokenizer_is_added(toks[m], (int32_t)id);
            smap_put(&map, p->tokens[p->n], (int64_t)p->n);
            p->n++;
        }
    }
    for (size_t c = 0; c < n_cfg; c++) {
        if (smap_get(&map, cfg[c].token) >= 0) continue;
        if (!(p->tokens[p->n] = al_strdup(cfg[c].token))) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
        p->added[p->n] = true;
        smap_put(&map, p->tokens[p->n], (int64_t)p->n);
        p->n++;
    }
    p->rows = p->n;
    if (pad_to_multiple_of > 1) p->rows = (p->n + (size_t)pad_to_multiple_of - 1) / (size_t)pad_to_multiple_of * (size_t)pad_to_multiple_of;
    if (!(p->fill = al_calloc((size_t)n_models * p->rows, sizeof *p->fill))) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
    /* where each model's row r comes from */
    for (size_t r = 0; r < p->rows; r++) {
        if (r >= p->n) {
            for (int m = 0; m < n_models; m++) p->fill[(size_t)m * p->rows + r].kind = AL_VF_PAD;
            continue;
        }
        const char *tok = p->tokens[r];
        int64_t own[64];
        int holders = 0, holder = -1;
        for (int m = 0; m < n_models && m < 64; m++) {
            own[m] = row_of(toks[m], rows[m], tok);
            if (own[m] >= 0) { holders++; holder = m; }
        }
        const al_vtoken *tc = NULL;
        for (size_t c = 0; c < n_cfg; c++) if (strcmp(cfg[c].token, tok) == 0) tc = &cfg[c];
        for (int m = 0; m < n_models && m < 64; m++) {
            al_vfill *f = &p->fill[(size_t)m * p->rows + r];
            if (tc && (own[m] < 0 || tc->force)) {
                if (tc->kind == 2) { f->kind = AL_VF_ZERO; continue; }
                int src = tc->model;
                int64_t row = tc->kind == 0 ? own[src]
                            : tc->source_token ? row_of(toks[src], rows[src], tc->source_token) : tc->source_token_id;
                if (row < 0 || row >= rows[src]) {
                    s = al_errorf(err, AL_ERR_RECIPE, "tokens: '%s' takes its embedding from a model that has no such token", tok);
                    goto done;
                }
                f->kind = src == m ? AL_VF_OWN : AL_VF_FROM;
                f->model = (int16_t)src;
                f->row = (int32_t)row;
            } else if (own[m] >= 0) {
                f->kind = AL_VF_OWN;
                f->model = (int16_t)m;
                f->row = (int32_t)own[m];
            } else if (holders == 1) {
                f->kind = AL_VF_FROM;
                f->model = (int16_t)holder;
                f->row = (int32_t)own[holder];
            } else if (holders == 0) {
                f->kind = AL_VF_ZERO;
                p->n_zero++;
            } else if (base >= 0 && own[base] >= 0) {
                f->kind = AL_VF_FROM;
                f->model = (int16_t)base;
                f->row = (int32_t)own[base];
            } else {
                f->kind = AL_VF_MEAN;
            }
        }
    }
done:
    al_free(map.key);
    al_free(map.val);
    if (s != AL_OK) al_vocab_plan_free(p);
    return s;
}

al_status al_vocab_write_tokenizer(const al_vocab_plan *p, const char *src_dir, const char *dst_dir,
                                   size_t kept_from_source, al_error *err)
{
    char in[4096], out[4096];
    snprintf(in, sizeof in, "%s/tokenizer.json", src_dir);
    snprintf(out, sizeof out, "%s/tokenizer.json", dst_dir);
    json_error_t je;
    json_t *root = json_load_file(in, JSON_PRESERVE_ORDER, &je);
    if (!root) return al_errorf(err, AL_ERR_NOTFOUND, "%s: %s (a merged tokenizer starts from the source's tokenizer.json)", in, je.text);
    al_status s = AL_OK;
    json_t *vocab = json_object_get(json_object_get(root, "model"), "vocab");
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(vocab)) { s = al_errorf(err, AL_ERR_UNSUPPORTED, "%s: model.vocab is not a mapping (only BPE tokenizers can be merged)", in); goto done; }
    /* drop ids the output no longer has (tokenizer_source: base with a smaller embedding) */
    const char *k;
    json_t *v, *tmp;
    json_object_foreach_safe(vocab, tmp, k, v)
        if (json_is_integer(v) && json_integer_value(v) >= (json_int_t)kept_from_source) json_object_del(vocab, k);
    if (json_is_array(added))
        for (size_t i = json_array_size(added); i-- > 0;) {
            json_t *id = json_object_get(json_array_get(added, i), "id");
            if (json_is_integer(id) && json_integer_value(id) >= (json_int_t)kept_from_source) json_array_remove(added, i);
        }
    if (!json_is_array(added)) { added = json_array(); json_object_set_new(root, "added_tokens", added); }
    for (size_t r = kept_from_source; r < p->n; r++) {
        json_object_set_new(vocab, p->tokens[r], json_integer((json_int_t)r));
        json_t *a = json_object();
        json_object_set_new(a, "id", json_integer((json_int_t)r));
        json_object_set_new(a, "content", json_string(p->tokens[r]));
        json_object_set_new(a, "single_word", json_false());
        json_object_set_new(a, "lstrip", json_false());
        json_object_set_new(a, "rstrip", json_false());
        json_object_set_new(a, "normalized", json_false());
        json_object_set_new(a, "special", json_boolean(p->added[r]));
        json_array_append_new(added, a);
    }
    remove(out);   /* the donor's copy, if any */
    if (json_dump_file(root, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0)
        s = al_errorf(err, AL_ERR_IO, "%s: cannot write", out);
done:
    json_decref(root);
    return s;
}
