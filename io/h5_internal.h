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
/* A string attribute (variable or fixed length) into *dst (al_strdup'ed, replacing
 * what was there: al_free); an absent attribute gives "". Errors name path and name. */
al_status al_h5_get_str(hid_t obj, const char *name, const char *path, char **dst, al_error *err);
/* An integer attribute; absent or not an integer is AL_ERR_FORMAT. */
al_status al_h5_get_i64(hid_t obj, const char *name, const char *path, int64_t *v, al_error *err);

/* The end of an atomic HDF5 write: close f (created at tmp) and rename tmp to path.
 * Call with the lock held; on failure the caller removes tmp. */
al_status al_h5_commit(hid_t f, const char *tmp, const char *path, al_error *err);

#endif
