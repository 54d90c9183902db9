/* io/safetensors.h: the safetensors backend (io/safetensors.c).
 *
 * Reading goes through al_safetensors_ops and writing through
 * al_safetensors_writer_ops (io/backend.h). al_st_parse is the pure in-memory
 * validator both the reader and the tests/fuzzers use. */
#ifndef AL_IO_SAFETENSORS_H
#define AL_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

/* Largest header (JSON bytes) accepted or written, as in the reference reader. */
#define AL_ST_MAX_HEADER 100000000ull

/* Validate the whole safetensors file image buf[0..len) and, on success, append its
 * tensors (in data order, offset = absolute byte offset in buf) and its __metadata__
 * entries to `out`. Borrows buf; label (a file name, may be NULL) prefixes every
 * error message. On failure returns AL_ERR_FORMAT (or AL_ERR_NOMEM) and leaves the
 * entries of `out` as they were (its arrays may have grown: free it with
 * al_bt_list_free as always). */
al_status al_st_parse(const uint8_t *buf, size_t len, const char *label, al_bt_list *out,
                      al_error *err);

#endif
