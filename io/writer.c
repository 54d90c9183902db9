/* io/writer.c: streaming, atomic checkpoint writer (al_writer in checkpoint.h).
 *
 * Layout is decided once all tensors are declared: in directory mode, safetensors
 * tensors are packed greedily in declaration order into shards of at most shard_size
 * bytes (a tensor larger than the limit gets a shard of its own), named as transformers
 * does: one shard is model.safetensors; N shards are model-0000i-of-0000N.safetensors
 * plus model.safetensors.index.json. HDF5 output is one model.h5.
 *
 * Atomicity: everything is written under a hidden sibling ".NAME.alloy-tmp-PID" and
 * renamed onto the final path by commit, after every file was fsynced. A process
 * killed at any point leaves at most that temporary, never a complete-looking output. */
#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/alloc.h"
#include "../core/emergency.h"
#include "backend.h"

typedef struct {
    char *name;
    al_dtype dtype;
    int ndim;
    int64_t shape[AL_MAX_DIMS];
    uint64_t nbytes;
} wr_tensor;

typedef struct {
    size_t first, count;   /* tensors [first, first+count) */
    uint64_t bytes;
    int part;              /* the rank that writes it */
    char fname[64];
} wr_shard;

struct al_writer {
    al_writer_opts opts;
    char *path;            /* final path, no trailing slash */
    char *tmp;             /* temporary sibling (dir in dir mode, file otherwise) */
    wr_tensor *t;
    size_t n, cap;
    wr_shard *shards;
    size_t nshards;
    const al_writer_ops *ops;
    void *handle;          /* open shard writer */
    size_t cur, shard;     /* current tensor and shard */
    uint64_t done;         /* bytes written of the current tensor */
    bool begun, started, committed, failed;
    bool leader;           /* rank 0: creates tmp, adds the index, publishes */
    bool owner;            /* created this tmp: publishes it, removes it on failure
                              (rank 0, or the first rank of a node-local output) */
    int emergency;         /* al_emergency_temp slot of tmp, or -1 */
};

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)ftw;
    return flag == FTW_DP ? rmdir(p) : unlink(p);
}

/* rm -rf without following symlinks. */
void al_remove_tree(const char *p)
{
    struct stat st;
    if (lstat(p, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) nftw(p, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    else unlink(p);
}

static int fsync_path(const char *p)
{
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* mkdir -p for the parent of an output path. */
static al_status make_parents(const char *path, al_error *err)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return al_errorf(err, AL_ERR_USAGE, "output path too long: %s", path);
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf) return AL_OK;
    *slash = '\0';
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return al_errorf(err, AL_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
            *p = c;
            if (c == '\0') break;
        }
    }
    return AL_OK;
}

al_status al_writer_open(al_writer **out, const char *path, const al_writer_opts *opts, al_error *err)
{
    *out = NULL;
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    if (len == 0) return al_errorf(err, AL_ERR_USAGE, "empty output path");
    al_writer *w = al_calloc(1, sizeof *w);
    if (!w) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    w->emergency = -1;
    w->opts = *opts;
    w->opts.inputs = NULL;
    if (w->opts.format == AL_FMT_AUTO) w->opts.format = AL_FMT_SAFETENSORS;
    al_status s = AL_OK;
    if (!(w->path = al_strndup(path, len))) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto fail; }

    struct stat st;
    bool exists = lstat(w->path, &st) == 0;
    if (exists && opts->inputs) {
        char a[PATH_MAX], b[PATH_MAX];
        if (realpath(w->path, a)) {
            for (const char *const *in = opts->inputs; *in; in++) {
                if (!realpath(*in, b)) continue;
                size_t la = strlen(a);
                /* the output is an input, or contains one (replacing it would delete it) */
                if (strcmp(a, b) == 0 || (strncmp(a, b, la) == 0 && b[la] == '/')) {
                    s = al_errorf(err, AL_ERR_USAGE, "refusing to write %s: it is (or contains) the input %s",
                                  w->path, *in);
                    goto fail;
                }
            }
        }
    }
    if (exists && !opts->force) {
        s = al_errorf(err, AL_ERR_USAGE, "%s already exists (use --force to replace it)", w->path);
        goto fail;
    }
    if ((s = make_parents(w->path, err)) != AL_OK) goto fail;
    const char *slash = strrchr(w->path, '/');
    size_t dlen = slash ? (size_t)(slash - w->path + 1) : 0;
    size_t tl = len + 64;
    if (!(w->tmp = al_malloc(tl))) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto fail; }
    /* one name for all ranks: rank 0's pid */
    int64_t tag = (int64_t)getpid();
    if ((s = al_comm_bcast(opts->comm, &tag, sizeof tag, 0, err)) != AL_OK) goto fail;
    snprintf(w->tmp, tl, "%.*s.%s.alloy-tmp-%lld", (int)dlen, w->path, w->path + dlen, (long long)tag);
    w->leader = w->owner = al_comm_rank(opts->comm) == 0;
    if (w->leader) {
        al_remove_tree(w->tmp);   /* a leftover of a killed run that had our pid */
        w->emergency = al_emergency_temp(w->tmp);   /* removed even if a signal ends us */
    }
    w->ops = w->opts.format == AL_FMT_HDF5 ? &al_hdf5_writer_ops : &al_safetensors_writer_ops;
fail:
    if ((s = al_comm_agree(opts->comm, s, err)) != AL_OK) {
        al_writer_free(w);
        return s;
    }
    *out = w;
    return AL_OK;
}

al_status al_writer_add(al_writer *w, const char *name, al_dtype dtype, int ndim,
                        const int64_t *shape, al_error *err)
{
    if (w->begun) return al_errorf(err, AL_ERR_USAGE, "tensor '%s' declared after the writer began", name);
    int64_t numel;
    uint64_t nbytes;
    if (!al_shape_numel(ndim, shape, &numel) || !al_dtype_nbytes(dtype, numel, &nbytes))
        return al_errorf(err, AL_ERR_SHAPE, "tensor '%s': invalid shape or size", name);
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 256;
        wr_tensor *t = al_realloc(w->t, cap * sizeof *t);
        if (!t) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
        w->t = t;
        w->cap = cap;
    }
    wr_tensor *t = &w->t[w->n];
    *t = (wr_tensor){0};
    if (!(t->name = al_strdup(name))) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    t->dtype = dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->nbytes = nbytes;
    w->n++;
    return AL_OK;
}

static char *shard_path(const al_writer *w, size_t k)
{
    if (!w->opts.dir) return al_strdup(w->tmp);
    size_t n = strlen(w->tmp) + strlen(w->shards[k].fname) + 2;
    char *p = al_malloc(n);
    if (p) snprintf(p, n, "%s/%s", w->tmp, w->shards[k].fname);
    return p;
}

static al_status open_shard(al_writer *w, size_t k, al_error *err)
{
    const wr_shard *sh = &w->shards[k];
    al_wt_tensor *wt = al_calloc(sh->count ? sh->count : 1, sizeof *wt);
    char *p = shard_path(w, k);
    al_status s = AL_OK;
    if (!wt || !p) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
    for (size_t i = 0; i < sh->count; i++) {
        const wr_tensor *t = &w->t[sh->first + i];
        wt[i] = (al_wt_tensor){t->name, t->dtype, t->ndim, t->shape, t->nbytes};
    }
    s = w->ops->create(p, wt, sh->count, w->opts.compress, &w->handle, err);
    if (s != AL_OK) w->handle = NULL;
done:
    al_free(wt);
    al_free(p);
    return s;
}

static al_status close_shard(al_writer *w, al_error *err)
{
    al_status s = w->ops->finish(w->handle, err);
    w->ops->close(w->handle);
    w->handle = NULL;
    return s;
}

/* Move past finished tensors (zero-byte ones finish at once), closing shards whose
 * tensors are all written and opening the next. */
static al_status advance(al_writer *w, al_error *err)
{
    al_status s;
    int me = al_comm_rank(w->opts.comm);
    w->started = true;
    for (; w->shard < w->nshards; w->shard++) {
        const wr_shard *sh = &w->shards[w->shard];
        if (sh->part != me) {                 /* another rank's shard */
            w->cur = sh->first + sh->count;
            w->done = 0;
            continue;
        }
        if (!w->handle && (s = open_shard(w, w->shard, err)) != AL_OK) return s;
        while (w->cur < sh->first + sh->count && w->done == w->t[w->cur].nbytes) {
            w->cur++;
            w->done = 0;
        }
        if (w->cur < sh->first + sh->count) return AL_OK;
        if ((s = close_shard(w, err)) != AL_OK) return s;
    }
    return AL_OK;
}

/* Longest-processing-time-first: shards by bytes, largest first (ties: lower index),
 * each to the rank with the fewest bytes so far (ties: lower rank). Deterministic, so
 * every rank computes the same assignment. O(shards * (shards + ranks)). */
static al_status assign_parts(al_writer *w, al_error *err)
{
    int np = w->opts.comm ? w->opts.comm->size : 1;
    if (np <= 1) return AL_OK;
    uint64_t *load = al_calloc((size_t)np, sizeof *load);
    if (!load) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    for (size_t k = 0; k < w->nshards; k++) w->shards[k].part = -1;
    for (size_t taken = 0; taken < w->nshards; taken++) {
        size_t best = SIZE_MAX;
        for (size_t k = 0; k < w->nshards; k++)
            if (w->shards[k].part < 0 && (best == SIZE_MAX || w->shards[k].bytes > w->shards[best].bytes)) best = k;
        int r0 = 0;
        for (int r = 1; r < np; r++) if (load[r] < load[r0]) r0 = r;
        w->shards[best].part = r0;
        load[r0] += w->shards[best].bytes;
    }
    al_free(load);
    return AL_OK;
}

bool al_writer_owns(const al_writer *w, size_t i)
{
    for (size_t k = 0; k < w->nshards; k++)
        if (i >= w->shards[k].first && i < w->shards[k].first + w->shards[k].count)
            return w->shards[k].part == al_comm_rank(w->opts.comm);
    return false;
}

al_status al_writer_begin(al_writer *w, al_error *err)
{
    al_status s;
    if (w->begun) return al_errorf(err, AL_ERR_USAGE, "writer already began");
    w->begun = true;
    if (w->opts.format == AL_FMT_HDF5 && w->opts.shard_size)
        return al_errorf(err, AL_ERR_UNSUPPORTED, "%s: sharded output is only supported for safetensors", w->path);
    /* Greedy packing in declaration order. */
    w->shards = al_calloc(w->n ? w->n : 1, sizeof *w->shards);
    if (!w->shards) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    w->nshards = 1;
    for (size_t i = 0; i < w->n; i++) {
        wr_shard *sh = &w->shards[w->nshards - 1];
        if (w->opts.dir && w->opts.shard_size && sh->count && sh->bytes + w->t[i].nbytes > w->opts.shard_size) {
            sh = &w->shards[w->nshards++];
            sh->first = i;
        }
        sh->count++;
        sh->bytes += w->t[i].nbytes;
    }
    for (size_t k = 0; k < w->nshards; k++) {
        if (w->opts.format == AL_FMT_HDF5) snprintf(w->shards[k].fname, sizeof w->shards[k].fname, "model.h5");
        else if (w->nshards == 1) snprintf(w->shards[k].fname, sizeof w->shards[k].fname, "model.safetensors");
        else snprintf(w->shards[k].fname, sizeof w->shards[k].fname, "model-%05zu-of-%05zu.safetensors",
                      k + 1, w->nshards);
    }
    s = assign_parts(w, err);
    if (s == AL_OK && w->leader && w->opts.dir && mkdir(w->tmp, 0755) != 0)
        s = al_errorf(err, AL_ERR_IO, "cannot create %s: %s", w->tmp, strerror(errno));
    /* others create files in tmp only once it exists */
    if ((s = al_comm_agree(w->opts.comm, s, err)) != AL_OK) return s;
    /* A rank that does not see rank 0's temporary writes to another filesystem (a
     * node-local output directory): the first such rank of its node creates the
     * temporary there and later publishes it as that node's part of the output. */
    if (w->opts.dir && al_comm_multi(w->opts.comm)) {
        struct stat st;
        if (!w->leader && lstat(w->tmp, &st) != 0) {
            if (mkdir(w->tmp, 0755) == 0) {
                w->owner = true;
                w->emergency = al_emergency_temp(w->tmp);
            } else if (errno != EEXIST) {
                s = al_errorf(err, AL_ERR_IO, "cannot create %s: %s", w->tmp, strerror(errno));
            }
        }
        if ((s = al_comm_agree(w->opts.comm, s, err)) != AL_OK) return s;
    }
    return al_comm_multi(w->opts.comm) ? AL_OK : advance(w, err);
}

al_status al_writer_write(al_writer *w, const void *data, uint64_t nbytes, al_error *err)
{
    const char *p = data;
    al_status s;
    if (!w->begun || w->failed) return al_errorf(err, AL_ERR_USAGE, "writer not ready");
    if (!w->started && (s = advance(w, err)) != AL_OK) { w->failed = true; return s; }
    while (nbytes) {
        if (w->cur >= w->n) {
            w->failed = true;
            return al_errorf(err, AL_ERR_INTERNAL, "%s: %llu bytes written past the last declared tensor",
                             w->path, (unsigned long long)nbytes);
        }
        const wr_tensor *t = &w->t[w->cur];
        uint64_t take = t->nbytes - w->done;
        if (take > nbytes) take = nbytes;
        unsigned bits = al_dtype_bits(t->dtype);
        if (bits % 8 == 0 && take % (bits / 8)) {
            w->failed = true;
            return al_errorf(err, AL_ERR_INTERNAL, "tensor '%s': write of %llu bytes splits an element",
                             t->name, (unsigned long long)take);
        }
        if ((s = w->ops->write(w->handle, p, take, err)) != AL_OK) { w->failed = true; return s; }
        w->done += take;
        p += take;
        nbytes -= take;
        if ((s = advance(w, err)) != AL_OK) { w->failed = true; return s; }
    }
    return AL_OK;
}

const char *al_writer_tmpdir(const al_writer *w)
{
    return w->opts.dir ? w->tmp : NULL;
}

static al_status write_index(al_writer *w, al_error *err)
{
    json_t *root = json_object(), *meta = json_object(), *wm = json_object();
    al_status s = AL_OK;
    uint64_t total = 0;
    if (!root || !meta || !wm) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
    for (size_t k = 0; k < w->nshards; k++)
        for (size_t i = w->shards[k].first; i < w->shards[k].first + w->shards[k].count; i++) {
            total += w->t[i].nbytes;
            json_object_set_new(wm, w->t[i].name, json_string(w->shards[k].fname));
        }
    json_object_set_new(meta, "total_size", json_integer((json_int_t)total));
    json_object_set_new(meta, "format", json_string("alloy"));
    json_object_set(root, "metadata", meta);
    json_object_set(root, "weight_map", wm);
    size_t n = strlen(w->tmp) + 64;
    char *p = al_malloc(n);
    if (!p) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
    snprintf(p, n, "%s/model.safetensors.index.json", w->tmp);
    if (json_dump_file(root, p, JSON_INDENT(2) | JSON_SORT_KEYS) != 0 || fsync_path(p) != 0)
        s = al_errorf(err, AL_ERR_IO, "%s: cannot write the shard index: %s", p, strerror(errno));
    al_free(p);
done:
    json_decref(meta);
    json_decref(wm);
    json_decref(root);
    return s;
}

/* This rank's part is complete: every tensor of its shards written, shards closed. */
static al_status check_done(al_writer *w, al_error *err)
{
    al_status s;
    if (!w->begun || w->failed) return al_errorf(err, AL_ERR_USAGE, "%s: writer failed earlier; nothing committed", w->path);
    if (!w->started && (s = advance(w, err)) != AL_OK) { w->failed = true; return s; }
    if (w->cur < w->n) {
        w->failed = true;
        return al_errorf(err, AL_ERR_INTERNAL, "%s: tensor '%s' incomplete (%llu of %llu bytes written)", w->path,
                         w->t[w->cur].name, (unsigned long long)w->done, (unsigned long long)w->t[w->cur].nbytes);
    }
    return AL_OK;
}

al_status al_writer_commit(al_writer *w, al_error *err)
{
    return al_writer_finish(w, AL_OK, err);
}

static al_status publish(al_writer *w, al_error *err);

al_status al_writer_finish(al_writer *w, al_status local, al_error *err)
{
    al_status s = local != AL_OK ? local : check_done(w, err);
    if ((s = al_comm_agree(w->opts.comm, s, err)) != AL_OK) return s;
    s = w->owner ? publish(w, err) : AL_OK;
    if ((s = al_comm_agree(w->opts.comm, s, err)) != AL_OK) return s;
    w->committed = true;
    return AL_OK;
}

/* Once every shard is complete: the index (rank 0), fsync, rename into place. */
static al_status publish(al_writer *w, al_error *err)
{
    al_status s;
    if (w->leader && w->opts.dir && w->nshards > 1 && (s = write_index(w, err)) != AL_OK) return s;
    if (w->opts.dir && fsync_path(w->tmp) != 0)
        return al_errorf(err, AL_ERR_IO, "%s: fsync failed: %s", w->tmp, strerror(errno));
    /* Replace an existing output (--force): move it aside first, so that the
     * final path always holds either the old or the new complete output. */
    struct stat st;
    char *old = NULL;
    if (lstat(w->path, &st) == 0) {
        size_t n = strlen(w->path) + 48;
        if (!(old = al_malloc(n))) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
        snprintf(old, n, "%s.alloy-old-%ld", w->path, (long)getpid());
        al_remove_tree(old);
        if (rename(w->path, old) != 0) {
            s = al_errorf(err, AL_ERR_IO, "cannot move the existing %s aside: %s", w->path, strerror(errno));
            al_free(old);
            return s;
        }
    }
    if (rename(w->tmp, w->path) != 0) {
        s = al_errorf(err, AL_ERR_IO, "cannot rename %s to %s: %s", w->tmp, w->path, strerror(errno));
        if (old) rename(old, w->path);
        al_free(old);
        return s;
    }
    w->committed = true;
    al_emergency_forget(w->emergency);
    w->emergency = -1;
    if (old) { al_remove_tree(old); al_free(old); }
    /* Make the rename durable. */
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", w->path);
    char *slash = strrchr(parent, '/');
    if (slash) { if (slash == parent) slash[1] = '\0'; else *slash = '\0'; }
    else snprintf(parent, sizeof parent, ".");
    fsync_path(parent);
    return AL_OK;
}

void al_writer_free(al_writer *w)
{
    if (!w) return;
    if (w->handle) w->ops->close(w->handle);
    if (w->tmp && w->owner && !w->committed) al_remove_tree(w->tmp);
    al_emergency_forget(w->emergency);
    for (size_t i = 0; i < w->n; i++) al_free(w->t[i].name);
    al_free(w->t);
    al_free(w->shards);
    al_free(w->path);
    al_free(w->tmp);
    al_free(w);
}
