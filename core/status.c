/* core/status.c: error records. */
#include "status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

al_status al_verrorf(al_error *err, al_status code, const char *fmt, va_list ap)
{
    if (err) {
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return code;
}

al_status al_errorf(al_error *err, al_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    al_verrorf(err, code, fmt, ap);
    va_end(ap);
    return code;
}

al_status al_error_prefix(al_error *err, const char *fmt, ...)
{
    if (!err) return AL_OK;
    char pre[AL_ERROR_MSG_MAX], old[AL_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t n = strlen(pre);
    if (n >= sizeof err->msg) n = sizeof err->msg - 1;
    memcpy(err->msg, pre, n);
    size_t m = strnlen(old, sizeof old - 1);
    if (m > sizeof err->msg - 1 - n) m = sizeof err->msg - 1 - n;
    memcpy(err->msg + n, old, m);
    err->msg[n + m] = '\0';
    return err->code;
}

void al_error_clear(al_error *err)
{
    if (err) { err->code = AL_OK; err->msg[0] = '\0'; }
}

const char *al_status_str(al_status s)
{
    switch (s) {
    case AL_OK: return "ok";
    case AL_ERR_USAGE: return "usage error";
    case AL_ERR_NOMEM: return "out of memory";
    case AL_ERR_IO: return "I/O error";
    case AL_ERR_FORMAT: return "malformed input";
    case AL_ERR_SHAPE: return "shape mismatch";
    case AL_ERR_DTYPE: return "dtype error";
    case AL_ERR_RECIPE: return "invalid recipe";
    case AL_ERR_NOTFOUND: return "not found";
    case AL_ERR_UNSUPPORTED: return "not supported";
    case AL_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

int al_status_exit_code(al_status s)
{
    switch (s) {
    case AL_OK: return 0;
    case AL_ERR_USAGE: return 1;
    case AL_ERR_FORMAT: case AL_ERR_SHAPE: case AL_ERR_DTYPE:
    case AL_ERR_RECIPE: case AL_ERR_NOTFOUND: return 2;
    case AL_ERR_IO: return 3;
    case AL_ERR_NOMEM: return 4;
    case AL_ERR_UNSUPPORTED: return 5;
    case AL_ERR_INTERNAL: return 70;
    }
    return 70;
}

void al_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "alloy: internal assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}
