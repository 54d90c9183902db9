/* core/file.h: reading a whole (small) text file. */
#ifndef AL_FILE_H
#define AL_FILE_H

#include <stddef.h>

#include "status.h"

/* Read the file at path into a NUL-terminated buffer from al_malloc (*out, al_free it);
 * *len (may be NULL) excludes the NUL. An unopenable file is AL_ERR_IO naming path; a
 * file of more than max_bytes is AL_ERR_FORMAT, naming `what` ("recipe", "facts
 * file"...) and the limit. The file is read as a stream, so pipes work too. */
al_status al_read_file(const char *path, size_t max_bytes, const char *what, char **out,
                       size_t *len, al_error *err);

#endif
