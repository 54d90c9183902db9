/* io/h5_internal.h: the few HDF5 helpers every HDF5 user in alloy shares (checkpoints,
 * statistics caches, edit factors). The HDF5 library (serial build) is one global
 * object, so all of alloy takes one lock around any HDF5 call. Internal. */
#ifndef AL_H5_INTERNAL_H
#define AL_H5_INTERNAL_H

#include <hdf5.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

/* Take the global HDF5 lock and silence HDF5's own error printing; al_h5_leave drops
 * it after clearing the error stack. */
void al_h5_enter(void);
void al_h5_leave(void);

/* Innermost description on the HDF5 error stack (where the error was detected) into
 * buf, then clear the stack; returns buf. */
const char *al_h5_why(char *buf, size_t n);

/* Scalar attributes: a UTF-8 variable-length string, an int64. false on failure. */
bool al_h5_put_str(hid_t obj, const char *name, const char *v);
bool al_h5_put_i64(hid_t obj, const char *name, int64_t v);
/* Attribute `name` of `obj` as an array of strings (variable- or fixed-length, scalar
 * or array) into *out (free with al_h5_strv_free). A numeric attribute with no elements
 * reads as zero strings (Keras writes weight_names that way for weightless layers).
 * AL_ERR_NOTFOUND when absent (no error recorded), AL_ERR_FORMAT when not strings. */
al_status al_h5_get_strs(hid_t obj, const char *name, const char *path, char ***out, size_t *nout,
                         al_error *err);
void al_h5_strv_free(char **v, size_t n);
/* A string attribute (variable or fixed length) into *dst (al_strdup'ed, replacing
 * what was there: al_free); an absent attribute gives "". Errors name path and name. */
al_status al_h5_get_str(hid_t obj, const char *name, const char *path, char **dst, al_error *err);
/* An integer attribute; absent or not an integer is AL_ERR_FORMAT. */
al_status al_h5_get_i64(hid_t obj, const char *name, const char *path, int64_t *v, al_error *err);

/* Read an untrusted file once in a forked child before reading it here. libhdf5 1.10.8
 * (Debian 12) trusts some sizes stored in a file: a crafted variable-length string's
 * global heap object makes H5Aread write out of bounds (tests/fuzz/RESULTS.md), and
 * other such defects are likely. fn(ctx) should make the same HDF5 calls the caller is
 * about to make; if the child dies in it (a signal, a sanitizer abort) or takes longer
 * than the time limit below, the file is refused with AL_ERR_FORMAT naming `path`. A
 * child that finishes, with or without an error, means the same calls are safe here,
 * and the caller then reports its own errors. Call with the lock held (the child
 * inherits it and never takes it); costs one fork. */
al_status al_h5_probe(const char *path, void (*fn)(void *ctx), void *ctx, al_error *err);
/* The child's time limit in milliseconds: 120 s unless set (the fuzzer sets a short
 * one). Crafted files also send libhdf5 into endless loops (a global heap that points
 * at itself). */
void al_h5_probe_limit(unsigned ms);

/* The end of an atomic HDF5 write: close f (created at tmp) and rename tmp to path.
 * Call with the lock held; on failure the caller removes tmp. */
al_status al_h5_commit(hid_t f, const char *tmp, const char *path, al_error *err);

#endif
