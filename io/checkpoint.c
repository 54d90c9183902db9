/* io/checkpoint.c: the format-agnostic checkpoint reader (see checkpoint.h).
 *
 * A checkpoint is a list of tensor files (one, or the shards named by
 * model.safetensors.index.json), each opened by a backend (io/backend.h) that reports
 * its tensors. Here the lists are merged, checked against the index, tied aliases are
 * added, and a hash index on names is built. Reads go back to the backend. */
#include "checkpoint.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <sys/stat.h>

#include "../core/alloc.h"
#include "backend.h"
#include "hfdir.h"
#include "lora.h"

typedef struct {
    const al_backend_ops *ops;
    void *handle;
    char *path;
} ck_file;

typedef struct {
    al_tensor_info info;    /* info.name points at bt.name */
    al_bt_tensor bt;        /* backend's record (name/locator owned here) */
    int file;               /* index into files */
    long alias_of;          /* -1, or the tensor whose data this one shares */
} ck_tensor;

struct al_ckpt {
    char *path;
    char *dir;              /* HF directory holding config.json, or NULL */
    ck_file *files;
    size_t nfiles;
    ck_tensor *t;
    size_t n;
    char **meta_keys, **meta_vals;
    size_t nmeta;
    long *slots;            /* open-addressing hash of names -> tensor index; -1 empty */
    size_t nslots;
    al_lora *lora;          /* attached adapter, or NULL */
    long *lora_of;          /* per tensor: the adapter's entry, or -1 */
};

const char *al_format_name(al_format f)
{
    switch (f) {
    case AL_FMT_SAFETENSORS: return "safetensors";
    case AL_FMT_HDF5: return "hdf5";
    default: return "auto";
    }
}

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;          /* FNV-1a 64 */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static char *path_join(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *p = al_malloc(na + nb + 2);
    if (!p) return NULL;
    memcpy(p, a, na);
    size_t o = na;
    if (na && a[na - 1] != '/') p[o++] = '/';
    memcpy(p + o, b, nb + 1);
    return p;
}

/* HDF5 files start with an 8-byte signature. */
static bool looks_hdf5(const char *path)
{
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    unsigned char b[8];
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    size_t n = fread(b, 1, 8, f);
    fclose(f);
    return n == 8 && memcmp(b, sig, 8) == 0;
}

static al_status open_file(al_ckpt *c, const char *path, al_bt_list *list, al_error *err)
{
    ck_file *f = al_realloc(c->files, (c->nfiles + 1) * sizeof *f);
    if (!f) return al_errorf(err, AL_ERR_NOMEM, "out of memory opening %s", path);
    c->files = f;
    ck_file *nf = &c->files[c->nfiles];
    *nf = (ck_file){0};
    nf->path = al_strdup(path);
    if (!nf->path) return al_errorf(err, AL_ERR_NOMEM, "out of memory opening %s", path);
    nf->ops = looks_hdf5(path) ? &al_hdf5_ops : &al_safetensors_ops;
    c->nfiles++;
    al_status s = nf->ops->open(path, &nf->handle, list, err);
    if (s != AL_OK) { nf->handle = NULL; return s; }
    return AL_OK;
}

/* Move the tensors a backend reported for file `fi` into c->t. */
static al_status take_tensors(al_ckpt *c, al_bt_list *list, int fi, al_error *err)
{
    ck_tensor *t = al_realloc(c->t, (c->n + list->n + 1) * sizeof *t);  /* +1: room for a tied alias */
    if (!t) return al_errorf(err, AL_ERR_NOMEM, "out of memory for the tensor index");
    c->t = t;
    for (size_t i = 0; i < list->n; i++) {
        ck_tensor *d = &c->t[c->n++];
        *d = (ck_tensor){0};
        d->bt = list->v[i];
        d->file = fi;
        d->alias_of = -1;
        d->info.name = d->bt.name;
        d->info.dtype = d->bt.dtype;
        d->info.ndim = d->bt.ndim;
        memcpy(d->info.shape, d->bt.shape, sizeof d->info.shape);
        d->info.nbytes = d->bt.nbytes;
    }
    list->n = 0;    /* ownership of the strings moved */
    if (c->nmeta == 0 && list->nmeta) {
        c->meta_keys = list->meta_keys;
        c->meta_vals = list->meta_vals;
        c->nmeta = list->nmeta;
        list->meta_keys = list->meta_vals = NULL;
        list->nmeta = list->capmeta = 0;
    }
    return AL_OK;
}

static al_status build_index(al_ckpt *c, al_error *err)
{
    size_t ns = 16;
    while (ns < c->n * 2 + 1) ns *= 2;
    al_free(c->slots);
    c->slots = al_malloc(ns * sizeof *c->slots);
    if (!c->slots) return al_errorf(err, AL_ERR_NOMEM, "out of memory for the name index");
    c->nslots = ns;
    for (size_t i = 0; i < ns; i++) c->slots[i] = -1;
    for (size_t i = 0; i < c->n; i++) {
        size_t h = name_hash(c->t[i].info.name) & (ns - 1);
        while (c->slots[h] >= 0) {
            const ck_tensor *o = &c->t[c->slots[h]];
            if (strcmp(o->info.name, c->t[i].info.name) == 0)
                return al_errorf(err, AL_ERR_FORMAT, "%s: tensor '%s' appears twice (in %s and %s)",
                                 c->path, o->info.name, c->files[o->file].path,
                                 c->files[c->t[i].file].path);
            h = (h + 1) & (ns - 1);
        }
        c->slots[h] = (long)i;
    }
    return AL_OK;
}

long al_ckpt_find(const al_ckpt *c, const char *name)
{
    if (!c->nslots) return -1;
    size_t h = name_hash(name) & (c->nslots - 1);
    while (c->slots[h] >= 0) {
        if (strcmp(c->t[c->slots[h]].info.name, name) == 0) return c->slots[h];
        h = (h + 1) & (c->nslots - 1);
    }
    return -1;
}

/* Sharded checkpoint: open every shard named in weight_map, then check that the index
 * and the shards agree tensor by tensor. Shard names must be plain file names in the
 * directory (a hostile index must not point elsewhere). */
static al_status open_sharded(al_ckpt *c, const char *dir, const char *index_path, al_error *err)
{
    al_status s = AL_OK;
    json_error_t je;
    json_t *root = json_load_file(index_path, JSON_REJECT_DUPLICATES, &je);
    char **shards = NULL;
    size_t nshards = 0;
    al_bt_list list = {0};
    if (!root) {
        s = al_errorf(err, AL_ERR_FORMAT, "%s:%d:%d: invalid JSON: %s", index_path, je.line,
                      je.column, je.text);
        goto done;
    }
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm)) {
        s = al_errorf(err, AL_ERR_FORMAT, "%s: no \"weight_map\" object", index_path);
        goto done;
    }
    const char *tname;
    json_t *v;
    json_object_foreach(wm, tname, v) {
        if (!json_is_string(v)) {
            s = al_errorf(err, AL_ERR_FORMAT, "%s: weight_map entry '%s' is not a file name", index_path, tname);
            goto done;
        }
        const char *fn = json_string_value(v);
        if (!*fn || strchr(fn, '/') || strcmp(fn, "..") == 0 || strcmp(fn, ".") == 0) {
            s = al_errorf(err, AL_ERR_FORMAT, "%s: weight_map entry '%s' names '%s', which is not a file in the directory",
                          index_path, tname, fn);
            goto done;
        }
        size_t k = 0;
        while (k < nshards && strcmp(shards[k], fn) != 0) k++;
        if (k == nshards) {
            char **ns = al_realloc(shards, (nshards + 1) * sizeof *ns);
            if (!ns) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory reading %s", index_path); goto done; }
            shards = ns;
            if (!(shards[nshards] = al_strdup(fn))) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
            nshards++;
        }
    }
    /* Shard order: by name, which is numeric order for model-0000i-of-0000N. */
    for (size_t i = 1; i < nshards; i++)
        for (size_t j = i; j > 0 && strcmp(shards[j - 1], shards[j]) > 0; j--) {
            char *tmp = shards[j]; shards[j] = shards[j - 1]; shards[j - 1] = tmp;
        }
    for (size_t k = 0; k < nshards; k++) {
        char *p = path_join(dir, shards[k]);
        if (!p) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
        if (!is_file(p)) {
            s = al_errorf(err, AL_ERR_IO, "%s: shard '%s' named in the index does not exist", index_path, shards[k]);
            al_free(p);
            goto done;
        }
        s = open_file(c, p, &list, err);
        al_free(p);
        if (s != AL_OK) goto done;
        size_t first = c->n;
        if ((s = take_tensors(c, &list, (int)c->nfiles - 1, err)) != AL_OK) goto done;
        for (size_t i = first; i < c->n; i++) {
            json_t *where = json_object_get(wm, c->t[i].info.name);
            if (!where) {
                s = al_errorf(err, AL_ERR_FORMAT, "%s: tensor '%s' is in shard '%s' but not in the index's weight_map",
                              index_path, c->t[i].info.name, shards[k]);
                goto done;
            }
            if (strcmp(json_string_value(where), shards[k]) != 0) {
                s = al_errorf(err, AL_ERR_FORMAT, "%s: tensor '%s' is in shard '%s' but the index says '%s'",
                              index_path, c->t[i].info.name, shards[k], json_string_value(where));
                goto done;
            }
        }
    }
    if ((s = build_index(c, err)) != AL_OK) goto done;
    json_object_foreach(wm, tname, v) {
        if (al_ckpt_find(c, tname) < 0) {
            s = al_errorf(err, AL_ERR_FORMAT, "%s: weight_map lists tensor '%s' in '%s', but that shard does not contain it",
                          index_path, tname, json_string_value(v));
            goto done;
        }
    }
done:
    for (size_t k = 0; k < nshards; k++) al_free(shards[k]);
    al_free(shards);
    al_bt_list_free(&list);
    json_decref(root);
    return s;
}

/* Tied embeddings: a causal-LM checkpoint without lm_head.weight, whose config does
 * not say tie_word_embeddings: false, shares the input embedding as its head. */
static al_status add_tied_alias(al_ckpt *c, al_error *err)
{
    static const char *const embed_names[] = {
        "transformer.wte.weight", "model.embed_tokens.weight", "gpt_neox.embed_in.weight",
        "transformer.word_embeddings.weight", "model.decoder.embed_tokens.weight",
        "transformer.embd.wte.weight",
    };
    if (!c->dir || al_ckpt_find(c, "lm_head.weight") >= 0) return AL_OK;
    al_hf_config cfg;
    al_status s = al_hf_config_read(c->dir, &cfg, err);
    if (s != AL_OK) return s;
    if (!cfg.present || !cfg.is_causal_lm || !cfg.tie_word_embeddings) return AL_OK;
    for (size_t k = 0; k < sizeof embed_names / sizeof embed_names[0]; k++) {
        long e = al_ckpt_find(c, embed_names[k]);
        if (e < 0) continue;
        ck_tensor *d = &c->t[c->n];
        *d = c->t[e];
        d->bt.name = al_strdup("lm_head.weight");
        d->bt.locator = NULL;
        if (!d->bt.name) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
        d->info.name = d->bt.name;
        d->info.tied = true;
        d->alias_of = e;
        c->n++;
        return build_index(c, err);
    }
    return AL_OK;
}

al_status al_ckpt_open(al_ckpt **out, const char *path, al_error *err)
{
    al_status s = AL_OK;
    al_bt_list list = {0};
    char *p = NULL;
    *out = NULL;
    al_ckpt *c = al_calloc(1, sizeof *c);
    if (!c || !(c->path = al_strdup(path))) {
        al_free(c);
        return al_errorf(err, AL_ERR_NOMEM, "out of memory opening %s", path);
    }
    if (is_dir(path)) {
        if (!(c->dir = al_strdup(path))) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto fail; }
        static const char *const singles[] = {"model.safetensors", "model.h5", "tf_model.h5"};
        if (!(p = path_join(path, "model.safetensors.index.json"))) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto fail; }
        if (is_file(p)) {
            if ((s = open_sharded(c, path, p, err)) != AL_OK) goto fail;
        } else {
            size_t k;
            for (k = 0; k < sizeof singles / sizeof singles[0]; k++) {
                al_free(p);
                if (!(p = path_join(path, singles[k]))) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto fail; }
                if (is_file(p)) break;
            }
            if (k == sizeof singles / sizeof singles[0]) {
                s = al_errorf(err, AL_ERR_NOTFOUND,
                              "%s: no checkpoint found (looked for model.safetensors.index.json, "
                              "model.safetensors, model.h5, tf_model.h5)", path);
                goto fail;
            }
            if ((s = open_file(c, p, &list, err)) != AL_OK) goto fail;
            if ((s = take_tensors(c, &list, 0, err)) != AL_OK) goto fail;
            if ((s = build_index(c, err)) != AL_OK) goto fail;
        }
    } else if (is_file(path)) {
        /* A lone file: its directory may still hold config.json (tied heads). */
        const char *slash = strrchr(path, '/');
        c->dir = slash ? al_strndup(path, (size_t)(slash - path)) : al_strdup(".");
        if (!c->dir) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto fail; }
        if ((s = open_file(c, path, &list, err)) != AL_OK) goto fail;
        if ((s = take_tensors(c, &list, 0, err)) != AL_OK) goto fail;
        if ((s = build_index(c, err)) != AL_OK) goto fail;
    } else {
        s = al_errorf(err, AL_ERR_IO, "%s: %s", path, strerror(errno ? errno : ENOENT));
        goto fail;
    }
    if ((s = add_tied_alias(c, err)) != AL_OK) goto fail;
    al_free(p);
    al_bt_list_free(&list);   /* emptied by take_tensors; its arrays remain */
    *out = c;
    return AL_OK;
fail:
    al_free(p);
    al_bt_list_free(&list);
    al_ckpt_close(c);
    return s;
}

void al_ckpt_close(al_ckpt *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->nfiles; i++) {
        if (c->files[i].handle) c->files[i].ops->close(c->files[i].handle);
        al_free(c->files[i].path);
    }
    for (size_t i = 0; i < c->n; i++) {
        al_free(c->t[i].bt.name);
        al_free(c->t[i].bt.locator);
    }
    for (size_t i = 0; i < c->nmeta; i++) {
        al_free(c->meta_keys[i]);
        al_free(c->meta_vals[i]);
    }
    al_free(c->meta_keys);
    al_free(c->meta_vals);
    al_free(c->files);
    al_free(c->t);
    al_free(c->slots);
    al_free(c->path);
    al_free(c->dir);
    al_lora_close(c->lora);
    al_free(c->lora_of);
    al_free(c);
}

size_t al_ckpt_count(const al_ckpt *c) { return c->n; }
const al_tensor_info *al_ckpt_info(const al_ckpt *c, size_t i) { return &c->t[i].info; }
const char *al_ckpt_path(const al_ckpt *c) { return c->path; }
const char *al_ckpt_dir(const al_ckpt *c) { return c->dir; }
size_t al_ckpt_file_count(const al_ckpt *c) { return c->nfiles; }
const char *al_ckpt_file_path(const al_ckpt *c, size_t i) { return c->files[i].path; }
size_t al_ckpt_meta_count(const al_ckpt *c) { return c->nmeta; }

void al_ckpt_meta(const al_ckpt *c, size_t i, const char **key, const char **value)
{
    *key = c->meta_keys[i];
    *value = c->meta_vals[i];
}

al_format al_ckpt_format(const al_ckpt *c)
{
    if (!c->nfiles) return AL_FMT_AUTO;
    return c->files[0].ops == &al_hdf5_ops ? AL_FMT_HDF5 : AL_FMT_SAFETENSORS;
}

uint64_t al_ckpt_total_bytes(const al_ckpt *c)
{
    uint64_t b = 0;
    for (size_t i = 0; i < c->n; i++) if (c->t[i].alias_of < 0) b += c->t[i].info.nbytes;
    return b;
}

uint64_t al_ckpt_param_count(const al_ckpt *c)
{
    uint64_t n = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (c->t[i].alias_of >= 0) continue;
        int64_t k;
        if (al_shape_numel(c->t[i].info.ndim, c->t[i].info.shape, &k)) n += (uint64_t)k;
    }
    return n;
}

/* Resolve an alias to the tensor that owns the data. */
static const ck_tensor *data_owner(const al_ckpt *c, size_t i)
{
    const ck_tensor *t = &c->t[i];
    return t->alias_of >= 0 ? &c->t[t->alias_of] : t;
}

/* The adapter entry that changes tensor i (through its tied alias too), or -1. */
static long lora_entry_of(const al_ckpt *c, size_t i)
{
    if (!c->lora_of) return -1;
    long o = c->t[i].alias_of >= 0 ? c->t[i].alias_of : (long)i;
    return c->lora_of[o];
}

al_status al_ckpt_attach_lora(al_ckpt *c, const char *adapter_dir, al_error *err)
{
    if (c->lora) return al_errorf(err, AL_ERR_USAGE, "%s: a LoRA adapter is attached already", c->path);
    al_lora *l = NULL;
    al_status s = al_lora_open(&l, adapter_dir, err);
    if (s != AL_OK) return s;
    long *of = al_malloc((c->n ? c->n : 1) * sizeof *of);
    if (!of) { al_lora_close(l); return al_errorf(err, AL_ERR_NOMEM, "out of memory"); }
    for (size_t i = 0; i < c->n; i++) of[i] = -1;
    for (size_t k = 0; k < al_lora_count(l) && s == AL_OK; k++) {
        long i = al_ckpt_find(c, al_lora_target(l, k));
        if (i < 0) {
            s = al_errorf(err, AL_ERR_NOTFOUND, "%s: the adapter changes '%s', which %s does not have",
                          adapter_dir, al_lora_target(l, k), c->path);
            break;
        }
        if (c->t[i].alias_of >= 0) i = c->t[i].alias_of;
        s = al_lora_check(l, k, &c->t[i].info, err);
        of[i] = (long)k;
    }
    if (s != AL_OK) { al_free(of); al_lora_close(l); return s; }
    c->lora = l;
    c->lora_of = of;
    return AL_OK;
}

al_status al_ckpt_view(al_ckpt *c, size_t i, al_view *out, al_error *err)
{
    if (i >= c->n) return al_errorf(err, AL_ERR_USAGE, "%s: tensor index %zu out of range", c->path, i);
    const ck_tensor *t = data_owner(c, i);
    const ck_file *f = &c->files[t->file];
    if (lora_entry_of(c, i) >= 0)
        return al_errorf(err, AL_ERR_UNSUPPORTED, "%s: tensor '%s' has a LoRA adapter applied (%s): read it",
                         f->path, c->t[i].info.name, al_lora_path(c->lora));
    const void *p = f->ops->map ? f->ops->map(f->handle, &t->bt) : NULL;
    if (!p) return al_errorf(err, AL_ERR_UNSUPPORTED, "%s: tensor '%s': %s files cannot be mapped",
                             f->path, c->t[i].info.name, f->ops->name);
    out->dtype = t->info.dtype;
    out->ndim = t->info.ndim;
    memcpy(out->shape, t->info.shape, sizeof out->shape);
    out->data = (void *)(uintptr_t)p;   /* mapping is read-only; views are const by contract */
    out->name = c->t[i].info.name;
    return AL_OK;
}

void al_ckpt_prefetch(al_ckpt *c, size_t i)
{
    al_view v;
    if (i >= c->n || al_ckpt_view(c, i, &v, NULL) != AL_OK) return;
    const ck_tensor *t = data_owner(c, i);
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)v.data & ~(page - 1), e = (uintptr_t)v.data + t->info.nbytes;
    if (e <= a || madvise((void *)a, e - a, MADV_POPULATE_READ) == 0) return;
    /* EFAULT/EIO (a file truncated under us, a failing disk): leave it to the reads,
     * which report it. Only before Linux 5.14 (EINVAL) touch every page instead. */
    if (errno != EINVAL) return;
    unsigned char sum = 0;
    for (uintptr_t p = a; p < e; p += page) sum ^= *(const volatile unsigned char *)p;
    (void)sum;
}

/* Converted reads stage at most this many bytes of stored data at a time. */
#define CK_STAGE_BYTES (4u << 20)

/* adapted: apply the attached adapter (false reads the stored W itself). */
static al_status read_rows(al_ckpt *c, size_t i, int64_t row0, int64_t nrows, void *dst,
                           al_dtype dst_dtype, bool adapted, al_error *err)
{
    if (i >= c->n) return al_errorf(err, AL_ERR_USAGE, "%s: tensor index %zu out of range", c->path, i);
    const ck_tensor *t = data_owner(c, i);
    const ck_file *f = &c->files[t->file];
    const char *name = c->t[i].info.name;
    int64_t rows = t->info.ndim ? t->info.shape[0] : 1;
    int64_t row_n = al_shape_row_numel(t->info.ndim, t->info.shape);
    if (row0 < 0 || nrows < 0 || row0 > rows || nrows > rows - row0)
        return al_errorf(err, AL_ERR_USAGE, "%s: tensor '%s': rows [%lld, %lld) out of range (%lld rows)",
                         f->path, name, (long long)row0, (long long)(row0 + nrows), (long long)rows);
    al_dtype st = t->info.dtype;
    uint64_t row_bytes = rows ? t->info.nbytes / (uint64_t)rows : 0;
    long le = adapted ? lora_entry_of(c, i) : -1;
    if (le >= 0 && nrows) {
        /* adapted rows: computed in F32, then converted to what the caller asked for */
        if (!al_dtype_is_float(dst_dtype))
            return al_errorf(err, AL_ERR_DTYPE, "%s: tensor '%s' has a LoRA adapter applied: read it as a float",
                             f->path, name);
        float *w = dst_dtype == AL_F32 ? dst : al_malloc((size_t)(nrows * row_n) * sizeof *w);
        if (!w) return al_errorf(err, AL_ERR_NOMEM, "out of memory reading '%s'", name);
        al_status s = AL_OK;
        if (!al_lora_replaces(c->lora, (size_t)le)) s = read_rows(c, i, row0, nrows, w, AL_F32, false, err);
        if (s == AL_OK) s = al_lora_rows(c->lora, (size_t)le, row0, nrows, row_n, w, err);
        if (s == AL_OK && w != dst) al_convert(dst, dst_dtype, w, AL_F32, (size_t)(nrows * row_n));
        if (w != dst) al_free(w);
        return s;
    }
    if (dst_dtype == st)
        return nrows ? f->ops->read_rows(f->handle, &t->bt, row0, nrows, dst, err) : AL_OK;
    if (!al_dtype_is_float(st) || !al_dtype_is_float(dst_dtype))
        return al_errorf(err, AL_ERR_DTYPE, "%s: tensor '%s': cannot convert %s to %s", f->path, name,
                         al_dtype_name(st), al_dtype_name(dst_dtype));
    size_t dsz = al_dtype_bits(dst_dtype) / 8;
    const void *m = f->ops->map ? f->ops->map(f->handle, &t->bt) : NULL;
    if (m) {
        al_convert(dst, dst_dtype, (const char *)m + (uint64_t)row0 * row_bytes, st,
                   (size_t)(nrows * row_n));
        return AL_OK;
    }
    /* No mapping: stage bounded groups of rows through the backend. */
    int64_t step = row_bytes ? (int64_t)(CK_STAGE_BYTES / row_bytes) : nrows;
    if (step < 1) step = 1;
    if (step > nrows) step = nrows;
    void *stage = al_malloc((size_t)((uint64_t)step * row_bytes));
    if (!stage) return al_errorf(err, AL_ERR_NOMEM, "out of memory reading '%s'", name);
    al_status s = AL_OK;
    for (int64_t r = 0; r < nrows && s == AL_OK; r += step) {
        int64_t k = nrows - r < step ? nrows - r : step;
        s = f->ops->read_rows(f->handle, &t->bt, row0 + r, k, stage, err);
        if (s == AL_OK)
            al_convert((char *)dst + (size_t)(r * row_n) * dsz, dst_dtype, stage, st, (size_t)(k * row_n));
    }
    al_free(stage);
    return s;
}

al_status al_ckpt_read(al_ckpt *c, size_t i, int64_t row0, int64_t nrows, void *dst,
                       al_dtype dst_dtype, al_error *err)
{
    return read_rows(c, i, row0, nrows, dst, dst_dtype, true, err);
}

al_status al_ckpt_copy_with(al_ckpt *in, al_writer *w, const char *const *rep_names, const float *const *rep_data,
                            size_t n, al_error *err)
{
    al_status s = AL_OK;
    for (size_t k = 0; k < n; k++) {
        long i = al_ckpt_find(in, rep_names[k]);
        if (i < 0 || in->t[i].info.tied || !al_dtype_is_float(in->t[i].info.dtype))
            return al_errorf(err, AL_ERR_NOTFOUND, "%s: no float tensor '%s' to replace", in->path, rep_names[k]);
    }
    for (size_t i = 0; i < in->n && s == AL_OK; i++)
        if (!in->t[i].info.tied)
            s = al_writer_add(w, in->t[i].info.name, in->t[i].info.dtype, in->t[i].info.ndim, in->t[i].info.shape, err);
    if (s == AL_OK) s = al_writer_begin(w, err);
    void *stage = NULL;
    for (size_t i = 0; i < in->n && s == AL_OK; i++) {
        const al_tensor_info *t = &in->t[i].info;
        if (t->tied) continue;
        const float *rep = NULL;
        for (size_t k = 0; k < n; k++) if (strcmp(rep_names[k], t->name) == 0) rep = rep_data[k];
        int64_t rows = t->ndim ? t->shape[0] : 1;
        int64_t rn = al_shape_row_numel(t->ndim, t->shape);
        uint64_t rb = rows ? t->nbytes / (uint64_t)rows : 0;
        al_view v;
        if (!rep && al_ckpt_view(in, i, &v, NULL) == AL_OK) { s = al_writer_write(w, v.data, t->nbytes, err); continue; }
        /* stage bounded groups of rows: read raw, or convert the replacement */
        int64_t step = rb ? (int64_t)(CK_STAGE_BYTES / rb) : rows;
        if (step < 1) step = 1;
        al_free(stage);
        if (!(stage = al_malloc((size_t)((uint64_t)(step < rows ? step : rows) * rb) + 8))) {
            s = al_errorf(err, AL_ERR_NOMEM, "out of memory");
            break;
        }
        for (int64_t r = 0; r < rows && s == AL_OK; r += step) {
            int64_t k = rows - r < step ? rows - r : step;
            if (rep) al_convert(stage, t->dtype, rep + r * rn, AL_F32, (size_t)(k * rn));
            else s = al_ckpt_read(in, i, r, k, stage, t->dtype, err);
            if (s == AL_OK) s = al_writer_write(w, stage, (uint64_t)k * rb, err);
        }
    }
    al_free(stage);
    return s;
}
