/* recipes/resolve.c: model reference -> local directory or file (recipes.md §1.2).
 *
 * mergekit downloads whatever is not a local path; alloy never downloads. It looks
 * in a models directory and in the Hugging Face cache layout that
 * huggingface_hub.snapshot_download fills:
 *   <cache>/models--ORG--NAME/refs/<branch-or-tag>   (file holding a commit hash)
 *   <cache>/models--ORG--NAME/snapshots/<commit>/    (the files) */
#include "recipe.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/alloc.h"

static bool exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Append "\n  - what" to the list of places looked (truncated quietly if huge). */
static void looked(char *buf, size_t cap, const char *fmt, const char *a, const char *b)
{
    size_t l = strlen(buf);
    if (l + 8 >= cap) return;
    snprintf(buf + l, cap - l, "; ");
    l = strlen(buf);
    snprintf(buf + l, cap - l, fmt, a, b);
}

static char *join2(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = al_malloc(n);
    if (s) snprintf(s, n, "%s/%s", a, b);
    return s;
}

/* The first line of a refs file: a commit hash. */
static bool read_ref(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f) return false;
    bool ok = fgets(out, (int)cap, f) != NULL;
    fclose(f);
    if (!ok) return false;
    out[strcspn(out, "\r\n \t")] = 0;
    return out[0] && !strchr(out, '/') && strcmp(out, ".") && strcmp(out, "..");
}

/* Look in one HF cache root. Returns AL_OK with *path_out set, AL_ERR_NOTFOUND, or NOMEM. */
static al_status try_hf(const char *root, const al_model_ref *ref, char **path_out,
                        char *where, size_t cap)
{
    al_status st = AL_ERR_NOTFOUND;
    char *repo = NULL, *snaps = NULL, *cand = NULL, *refp = NULL, *only = NULL;
    DIR *dir = NULL;
    /* models--org--name: '/' becomes "--" */
    size_t n = strlen(root) + 10 + 2 * strlen(ref->path) + 2;
    repo = al_malloc(n);
    if (!repo) { st = AL_ERR_NOMEM; goto cleanup; }
    int w = snprintf(repo, n, "%s/models--", root);
    for (const char *p = ref->path; *p && (size_t)w + 3 < n; p++) {
        if (*p == '/') { repo[w++] = '-'; repo[w++] = '-'; }
        else repo[w++] = *p;
    }
    repo[w] = 0;
    snaps = join2(repo, "snapshots");
    if (!snaps) { st = AL_ERR_NOMEM; goto cleanup; }
    const char *rev = ref->revision ? ref->revision : "main";
    if (ref->revision && !strchr(rev, '/')) {           /* a commit hash directory */
        cand = join2(snaps, rev);
        if (!cand) { st = AL_ERR_NOMEM; goto cleanup; }
        if (is_dir(cand)) { *path_out = cand; cand = NULL; st = AL_OK; goto cleanup; }
        looked(where, cap, "%s%s", cand, " (commit directory)");
        al_free(cand);
        cand = NULL;
    }
    size_t rn = strlen(repo) + strlen(rev) + 8;
    refp = al_malloc(rn);
    if (!refp) { st = AL_ERR_NOMEM; goto cleanup; }
    snprintf(refp, rn, "%s/refs/%s", repo, rev);
    char hash[256];
    if (read_ref(refp, hash, sizeof hash)) {
        cand = join2(snaps, hash);
        if (!cand) { st = AL_ERR_NOMEM; goto cleanup; }
        if (is_dir(cand)) { *path_out = cand; cand = NULL; st = AL_OK; goto cleanup; }
        looked(where, cap, "%s%s", cand, " (from refs file)");
        goto cleanup;
    }
    looked(where, cap, "%s%s", refp, "");
    if (ref->revision) goto cleanup;       /* an explicit revision must match exactly */
    /* No refs/main: accept a single snapshot directory. */
    dir = opendir(snaps);
    if (!dir) { looked(where, cap, "%s%s", snaps, " (no snapshots)"); goto cleanup; }
    size_t count = 0;
    struct dirent *de;
    while ((de = readdir(dir))) {
        if (de->d_name[0] == '.') continue;
        count++;
        if (count == 1) {
            only = join2(snaps, de->d_name);
            if (!only) { st = AL_ERR_NOMEM; goto cleanup; }
        }
    }
    if (count == 1 && is_dir(only)) { *path_out = only; only = NULL; st = AL_OK; goto cleanup; }
    looked(where, cap, "%s%s", snaps, count ? " (several snapshots and no refs/main)"
                                            : " (no snapshots)");
cleanup:
    if (dir) closedir(dir);
    al_free(repo);
    al_free(snaps);
    al_free(cand);
    al_free(refp);
    al_free(only);
    return st;
}

al_status al_model_resolve_ex(const al_model_ref *ref, const al_resolve_opts *opts,
                              char **path_out, al_error *err)
{
    al_status st = AL_OK;
    char where[700] = "";
    char *cand = NULL, *hub = NULL;
    al_resolve_opts o = { 0 };
    if (opts) o = *opts;
    *path_out = NULL;
    if (!ref || !ref->path) return al_errorf(err, AL_ERR_USAGE, "al_model_resolve: empty reference");
    if (ref->lora && !o.allow_lora) {
        st = al_errorf(err, AL_ERR_UNSUPPORTED, "model '%s' (line %d column %d): LoRA adapters "
                       "('+%s') are not supported; merge the adapter into its model first (e.g. "
                       "PEFT merge_and_unload) and reference the merged directory",
                       ref->text, ref->pos.line, ref->pos.col, ref->lora);
        goto cleanup;
    }
    if (ref->doc_index >= 0) {
        if (!o.lookup) {
            st = al_errorf(err, AL_ERR_NOTFOUND, "model '%s' names the output of document %d, "
                           "which has not been produced", ref->text, ref->doc_index + 1);
            goto cleanup;
        }
        st = o.lookup(o.lookup_ud, ref->doc_index, ref->text, path_out, err);
        goto cleanup;
    }
    if (exists(ref->path)) {
        *path_out = al_strdup(ref->path);
        if (!*path_out) st = al_errorf(err, AL_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    looked(where, sizeof where, "%s%s", ref->path, " (local path)");
    /* A hub id is org/name (exactly one '/') or a legacy org-less name such as "gpt2";
     * never an absolute, relative, home or Windows path. */
    const char *slash = strchr(ref->path, '/');
    bool hub_id = ref->path[0] && ref->path[0] != '.' && ref->path[0] != '~' && ref->path[0] != '/' &&
                  !strchr(ref->path, '\\') && !strchr(ref->path, ':') &&
                  (!slash || (slash[1] && !strchr(slash + 1, '/')));
    if (hub_id && o.models_dir) {
        cand = join2(o.models_dir, ref->path);
        if (!cand) { st = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto cleanup; }
        if (exists(cand)) { *path_out = cand; cand = NULL; goto cleanup; }
        looked(where, sizeof where, "%s%s", cand, " (models dir)");
    }
    if (hub_id) {
        const char *e;
        if ((e = getenv("HF_HUB_CACHE")) && *e) hub = al_strdup(e);
        else if ((e = getenv("HF_HOME")) && *e) hub = join2(e, "hub");
        else if ((e = getenv("HOME")) && *e) hub = join2(e, ".cache/huggingface/hub");
        if (hub) {
            st = try_hf(hub, ref, path_out, where, sizeof where);
            if (st == AL_OK) goto cleanup;
            if (st == AL_ERR_NOMEM) { st = al_errorf(err, st, "out of memory"); goto cleanup; }
        }
    }
    st = al_errorf(err, AL_ERR_NOTFOUND, "model '%s' (line %d column %d) not found; alloy does not "
                   "download. Looked in: %s", ref->text, ref->pos.line, ref->pos.col,
                   where[0] ? where + 2 : "(nowhere)");
cleanup:
    al_free(cand);
    al_free(hub);
    return st;
}

al_status al_model_resolve_lora(const al_model_ref *ref, const al_resolve_opts *opts,
                                char **path_out, al_error *err)
{
    *path_out = NULL;
    if (!ref || !ref->lora) return al_errorf(err, AL_ERR_USAGE, "al_model_resolve_lora: no adapter");
    al_model_ref a = { 0 };
    a.text = ref->lora;
    a.path = ref->lora;
    a.revision = ref->lora_revision;
    a.doc_index = -1;
    a.pos = ref->pos;
    al_resolve_opts o = { 0 };
    if (opts) o.models_dir = opts->models_dir;     /* an adapter is never an intermediate */
    al_status st = al_model_resolve_ex(&a, &o, path_out, err);
    return st == AL_OK ? st : al_error_prefix(err, "LoRA adapter of '%s': ", ref->text);
}

al_status al_model_resolve(const al_model_ref *ref, const char *models_dir, char **path_out,
                           al_error *err)
{
    al_resolve_opts o = { .models_dir = models_dir };
    return al_model_resolve_ex(ref, &o, path_out, err);
}
