/* recipes/ytree.c: YAML text -> ytree via libyaml events (see ytree_internal.h). */
#include "ytree_internal.h"

#include <string.h>
#include <yaml.h>

#include "../core/alloc.h"

typedef struct {
    const char *filename;
    size_t max_nodes, expanded;
    int max_depth;
    ytree *t;
    ynode *stack[256];
    int depth;
    /* anchors: name -> node, in definition order (a redefinition shadows) */
    ynode **anchors;
    size_t n_anchors, cap_anchors;
} ybuild;

static bool push_ptr(void ***arr, size_t *n, size_t *cap, void *p)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        void **na = al_realloc(*arr, nc * sizeof *na);
        if (!na) return false;
        *arr = na;
        *cap = nc;
    }
    (*arr)[(*n)++] = p;
    return true;
}

bool yn_is_null(const ynode *n)
{
    if (!n) return true;
    if (n->kind != YN_SCALAR || !n->plain) return false;
    return n->len == 0 || strcmp(n->str, "~") == 0 || strcmp(n->str, "null") == 0 ||
           strcmp(n->str, "Null") == 0 || strcmp(n->str, "NULL") == 0;
}

static al_status too_many(ybuild *b, const yaml_mark_t *m, al_error *err)
{
    return al_errorf(err, AL_ERR_FORMAT,
                     "%s:%zu:%zu: YAML document too large: more than %zu nodes with aliases "
                     "expanded (an alias bomb?)", b->filename, m->line + 1, m->column + 1,
                     b->max_nodes);
}

/* Attach a finished node (new or aliased) to the open parent, or make it a root. */
static al_status attach(ybuild *b, ynode *n, al_error *err)
{
    if (b->depth == 0) {
        ynode **nd = al_realloc(b->t->docs, (b->t->n_docs + 1) * sizeof *nd);
        if (!nd) return al_errorf(err, AL_ERR_NOMEM, "out of memory parsing %s", b->filename);
        b->t->docs = nd;
        b->t->docs[b->t->n_docs++] = n;
        return AL_OK;
    }
    ynode *p = b->stack[b->depth - 1];
    if (!push_ptr((void ***)&p->kids, &p->n, &p->cap, n))
        return al_errorf(err, AL_ERR_NOMEM, "out of memory parsing %s", b->filename);
    return AL_OK;
}

static al_status new_node(ybuild *b, yn_kind k, const yaml_mark_t *m, const yaml_char_t *anchor,
                          ynode **out, al_error *err)
{
    if (++b->expanded > b->max_nodes) return too_many(b, m, err);
    ynode *n = al_calloc(1, sizeof *n);
    if (!n || !push_ptr((void ***)&b->t->all, &b->t->n_all, &b->t->cap_all, n)) {
        al_free(n);
        return al_errorf(err, AL_ERR_NOMEM, "out of memory parsing %s", b->filename);
    }
    n->kind = k;
    n->line = (int)m->line + 1;
    n->col = (int)m->column + 1;
    n->weight = 1;
    if (anchor) {
        n->anchor = al_strdup((const char *)anchor);
        if (!n->anchor ||
            !push_ptr((void ***)&b->anchors, &b->n_anchors, &b->cap_anchors, n))
            return al_errorf(err, AL_ERR_NOMEM, "out of memory parsing %s", b->filename);
    }
    *out = n;
    return AL_OK;
}

static al_status on_alias(ybuild *b, const yaml_event_t *ev, al_error *err)
{
    const char *name = (const char *)ev->data.alias.anchor;
    const yaml_mark_t *m = &ev->start_mark;
    ynode *target = NULL;
    for (size_t i = b->n_anchors; i-- > 0;)
        if (strcmp(b->anchors[i]->anchor, name) == 0) { target = b->anchors[i]; break; }
    if (!target)
        return al_errorf(err, AL_ERR_FORMAT, "%s:%zu:%zu: YAML error: undefined alias '*%s'",
                         b->filename, m->line + 1, m->column + 1, name);
    if (!target->done)
        return al_errorf(err, AL_ERR_FORMAT,
                         "%s:%zu:%zu: YAML error: recursive alias '*%s' (refers to a node that "
                         "contains it)", b->filename, m->line + 1, m->column + 1, name);
    if (target->weight > b->max_nodes - b->expanded) return too_many(b, m, err);
    b->expanded += target->weight;
    if (b->depth > 0) b->stack[b->depth - 1]->weight += target->weight;
    return attach(b, target, err);
}

static al_status on_event(ybuild *b, const yaml_event_t *ev, al_error *err)
{
    const yaml_mark_t *m = &ev->start_mark;
    ynode *n = NULL;
    al_status st;
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        b->n_anchors = 0;                 /* anchors are per document */
        return AL_OK;
    case YAML_ALIAS_EVENT:
        return on_alias(b, ev, err);
    case YAML_SCALAR_EVENT:
        st = new_node(b, YN_SCALAR, m, ev->data.scalar.anchor, &n, err);
        if (st) return st;
        n->len = ev->data.scalar.length;
        n->str = al_strndup((const char *)ev->data.scalar.value, n->len);
        if (!n->str) return al_errorf(err, AL_ERR_NOMEM, "out of memory parsing %s", b->filename);
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        n->done = true;
        if (b->depth > 0) b->stack[b->depth - 1]->weight += 1;
        return attach(b, n, err);
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
        if (b->depth >= b->max_depth || b->depth >= (int)(sizeof b->stack / sizeof b->stack[0]))
            return al_errorf(err, AL_ERR_FORMAT, "%s:%zu:%zu: YAML nesting deeper than %d levels",
                             b->filename, m->line + 1, m->column + 1, b->max_depth);
        st = new_node(b, seq ? YN_SEQ : YN_MAP, m,
                      seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor,
                      &n, err);
        if (st) return st;
        st = attach(b, n, err);
        if (st) return st;
        b->stack[b->depth++] = n;
        return AL_OK;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        AL_ASSERT(b->depth > 0);
        n = b->stack[--b->depth];
        n->done = true;
        if (b->depth > 0) b->stack[b->depth - 1]->weight += n->weight;
        return AL_OK;
    default:
        return AL_OK;
    }
}

al_status ytree_parse(const char *text, size_t len, const char *filename,
                      size_t max_nodes, int max_depth, ytree *out, al_error *err)
{
    al_status st = AL_OK;
    yaml_parser_t parser;
    bool inited = false, done = false;
    ybuild b = { .filename = filename, .max_nodes = max_nodes, .max_depth = max_depth, .t = out };
    memset(out, 0, sizeof *out);
    if (!yaml_parser_initialize(&parser)) {
        st = al_errorf(err, AL_ERR_NOMEM, "out of memory initialising the YAML parser");
        goto cleanup;
    }
    inited = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    while (!done) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            if (parser.error == YAML_MEMORY_ERROR) {
                st = al_errorf(err, AL_ERR_NOMEM, "out of memory parsing %s", filename);
            } else if (parser.context) {
                st = al_errorf(err, AL_ERR_FORMAT,
                               "%s:%zu:%zu: YAML syntax error: %s (%s at line %zu column %zu)",
                               filename, parser.problem_mark.line + 1,
                               parser.problem_mark.column + 1,
                               parser.problem ? parser.problem : "?", parser.context,
                               parser.context_mark.line + 1, parser.context_mark.column + 1);
            } else if (parser.error == YAML_READER_ERROR) {
                /* the reader reports a byte offset; users want line and column */
                size_t line = 1, col = 1, off = parser.problem_offset < len ? parser.problem_offset : len;
                for (size_t i = 0; i < off; i++) {
                    unsigned char ch = (unsigned char)text[i];
                    if (ch == '\n') line++, col = 1;
                    else if ((ch & 0xC0) != 0x80) col++;    /* count characters, not bytes */
                }
                st = al_errorf(err, AL_ERR_FORMAT, "%s:%zu:%zu: YAML reader error at byte %zu: %s",
                               filename, line, col, parser.problem_offset,
                               parser.problem ? parser.problem : "?");
            } else {
                st = al_errorf(err, AL_ERR_FORMAT, "%s:%zu:%zu: YAML syntax error: %s", filename,
                               parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                               parser.problem ? parser.problem : "?");
            }
            goto cleanup;
        }
        done = ev.type == YAML_STREAM_END_EVENT;
        st = on_event(&b, &ev, err);
        yaml_event_delete(&ev);
        if (st) goto cleanup;
    }
cleanup:
    if (inited) yaml_parser_delete(&parser);
    al_free(b.anchors);
    if (st) ytree_free(out);
    return st;
}

void ytree_free(ytree *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->n_all; i++) {
        al_free(t->all[i]->str);
        al_free(t->all[i]->kids);
        al_free(t->all[i]->anchor);
        al_free(t->all[i]);
    }
    al_free(t->all);
    al_free(t->docs);
    memset(t, 0, sizeof *t);
}
