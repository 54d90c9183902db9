/* io/backend.h: internal contract between io/checkpoint.c and the format backends
 * (io/safetensors.c, io/hdf5.c). Not installed, not public.
 *
 * A backend opens one tensor file and appends its tensors to a growable list; the
 * checkpoint layer merges the lists of all shards, adds tied aliases and builds the
 * name index. Reads go back through the backend with the file's opaque handle. */
#ifndef AL_IO_BACKEND_H
#define AL_IO_BACKEND_H

#include "checkpoint.h"

/* One tensor as a backend reports it. Strings are owned by the list (al_malloc'd). */
typedef struct {
    char *name;             /* canonical name */
    al_dtype dtype;
    int ndim;
    int64_t shape[AL_MAX_DIMS];
    uint64_t nbytes;
    uint64_t offset;        /* safetensors: absolute byte offset of the data in the file */
    char *locator;          /* hdf5: dataset path; NULL for safetensors */
    bool transpose;         /* hdf5: stored as the 2-D transpose of the canonical shape */
} al_bt_tensor;

typedef struct {
    al_bt_tensor *v;
    size_t n, cap;
    char **meta_keys, **meta_vals;  /* string metadata */
    size_t nmeta, capmeta;
} al_bt_list;

/* List helpers (io/bt_list.c). push copies nothing: on success it takes ownership of
 * t's strings; on failure it takes none (the caller frees them). A list may have grown
 * even when a backend's open fails: callers always al_bt_list_free it. */
al_status al_bt_push(al_bt_list *l, const al_bt_tensor *t, al_error *err);
al_status al_bt_meta_push(al_bt_list *l, const char *key, const char *val, al_error *err);
void al_bt_list_free(al_bt_list *l);

typedef struct {
    const char *name;   /* "safetensors", "hdf5" */
    /* Open and validate `path`; append its tensors to `list`; *handle is passed back. */
    al_status (*open)(const char *path, void **handle, al_bt_list *list, al_error *err);
    /* Zero-copy pointer to a tensor's bytes, or NULL (format has no mapping). */
    const void *(*map)(void *handle, const al_bt_tensor *t);
    /* Copy rows [row0, row0+nrows) (along canonical dim 0) in the stored dtype,
     * canonical layout, into dst. Must be safe to call from several threads. */
    al_status (*read_rows)(void *handle, const al_bt_tensor *t, int64_t row0, int64_t nrows,
                           void *dst, al_error *err);
    void (*close)(void *handle);
} al_backend_ops;

extern const al_backend_ops al_safetensors_ops;
extern const al_backend_ops al_hdf5_ops;

/* ---- per-file writers used by al_writer ---- */

typedef struct {
    const char *name;
    al_dtype dtype;
    int ndim;
    const int64_t *shape;
    uint64_t nbytes;
} al_wt_tensor;

typedef struct {
    const char *name;
    /* Create `path` (must not exist) for exactly these tensors, in this order. */
    al_status (*create)(const char *path, const al_wt_tensor *t, size_t n, int compress,
                        void **handle, al_error *err);
    /* Append bytes in tensor order; calls may split tensors at element boundaries. */
    al_status (*write)(void *handle, const void *data, uint64_t nbytes, al_error *err);
    /* Flush and fsync; on success the file is complete. */
    al_status (*finish)(void *handle, al_error *err);
    /* Close (after finish or on failure); does not remove the file. */
    void (*close)(void *handle);
} al_writer_ops;

extern const al_writer_ops al_safetensors_writer_ops;
extern const al_writer_ops al_hdf5_writer_ops;

#endif
