/* core/file.c: see file.h. */
#include "file.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"

al_status al_read_file(const char *path, size_t max_bytes, const char *what, char **out,
                       size_t *len, al_error *err)
{
    *out = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return al_errorf(err, AL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    al_status s = AL_OK;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 2) {                        /* room for a byte and the NUL */
            size_t nc = cap ? cap * 2 : 4096;
            char *nb = al_realloc(buf, nc);
            if (!nb) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory reading %s", path); break; }
            buf = nb;
            cap = nc;
        }
        size_t k = fread(buf + n, 1, cap - n - 1, f);
        n += k;
        if (n > max_bytes) {
            s = al_errorf(err, AL_ERR_FORMAT, "%s: larger than %zu bytes, the most a %s may have",
                          path, max_bytes, what);
            break;
        }
        if (k == 0) {
            if (ferror(f)) s = al_errorf(err, AL_ERR_IO, "%s: read error: %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (s != AL_OK) {
        al_free(buf);
        return s;
    }
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return AL_OK;
}
