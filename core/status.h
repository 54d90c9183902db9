/* core/status.h: status codes and the error record every library call fills.
 *
 * The library never prints and never exits. A function that can fail returns an
 * al_status and, when given a non-NULL al_error*, writes one human-readable message
 * naming the file, tensor, offset or YAML line:column at fault. cmd/ prints it and
 * maps the status to an exit code (al_status_exit_code). */
#ifndef AL_STATUS_H
#define AL_STATUS_H

#include <stdarg.h>

typedef enum {
    AL_OK = 0,
    AL_ERR_USAGE,       /* caller passed bad arguments (CLI usage, API misuse) */
    AL_ERR_NOMEM,       /* allocation failed */
    AL_ERR_IO,          /* open/read/write/rename failed, disk full */
    AL_ERR_FORMAT,      /* malformed file: checkpoint, JSON, YAML, tokenizer */
    AL_ERR_SHAPE,       /* shapes that cannot be combined */
    AL_ERR_DTYPE,       /* dtype unknown or not convertible */
    AL_ERR_RECIPE,      /* recipe/facts file is valid YAML but not a valid recipe */
    AL_ERR_NOTFOUND,    /* tensor, model or key absent */
    AL_ERR_UNSUPPORTED, /* understood, but not implemented */
    AL_ERR_INTERNAL     /* a bug: an invariant did not hold */
} al_status;

#define AL_ERROR_MSG_MAX 1024

typedef struct {
    al_status code;
    char msg[AL_ERROR_MSG_MAX];
} al_error;

/* Record an error and return `code`. err may be NULL (the message is dropped).
 * An error already recorded is overwritten. */
al_status al_errorf(al_error *err, al_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
al_status al_verrorf(al_error *err, al_status code, const char *fmt, va_list ap);

/* Prefix context to an existing message ("model.safetensors: " + msg). Returns err->code. */
al_status al_error_prefix(al_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void al_error_clear(al_error *err);

const char *al_status_str(al_status s);

/* Process exit code for a status (documented in README): 0 ok, 1 usage,
 * 2 bad input, 3 I/O, 4 out of memory, 5 unsupported, 70 internal. */
int al_status_exit_code(al_status s);

/* Programmer errors (never data errors): always compiled in, abort with location. */
#define AL_ASSERT(x) \
    do { if (!(x)) al_assert_fail(#x, __FILE__, __LINE__); } while (0)
_Noreturn void al_assert_fail(const char *expr, const char *file, int line);

#endif
