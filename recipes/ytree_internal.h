/* recipes/ytree_internal.h: a YAML document tree built from libyaml's event API.
 *
 * libyaml's loader (yaml_document_t) expands nothing itself but gives no way to cap
 * alias expansion, so we build our own tree: aliases share the anchored node, and
 * every node is counted as often as it would appear once expanded. A
 * "billion laughs" file therefore stops at max_nodes with a clear error, and
 * walking the tree is bounded by the same cap. Depth is capped too (recursion). */
#ifndef AL_YTREE_INTERNAL_H
#define AL_YTREE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "../core/status.h"

typedef enum { YN_SCALAR, YN_SEQ, YN_MAP } yn_kind;

typedef struct ynode ynode;
struct ynode {
    yn_kind kind;
    int line, col;          /* 1-based start mark */
    char *str;              /* SCALAR text (NUL-terminated; may contain NULs: len) */
    size_t len;
    bool plain;             /* SCALAR: plain style (so true/null/numbers are typed) */
    ynode **kids;           /* SEQ: items; MAP: key0, val0, key1, val1, ... */
    size_t n;               /* number of kids (MAP: 2 * pairs) */
    size_t cap;
    size_t weight;          /* nodes in this subtree with aliases expanded */
    bool done;              /* closed (an alias to an open node is recursive) */
    char *anchor;
};

typedef struct {
    ynode **docs;           /* one root per YAML document (an empty one is a null scalar) */
    size_t n_docs;
    ynode **all;            /* arena: every real node, freed together */
    size_t n_all, cap_all;
} ytree;

/* Parse text into *out. YAML errors: AL_ERR_FORMAT "FILE:L:C: YAML syntax error: ..."
 * (libyaml's problem mark). */
al_status ytree_parse(const char *text, size_t len, const char *filename,
                      size_t max_nodes, int max_depth, ytree *out, al_error *err);
void ytree_free(ytree *t);

/* Plain null: "", "~", "null", "Null", "NULL" (PyYAML). */
bool yn_is_null(const ynode *n);

#endif
