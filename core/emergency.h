/* core/emergency.h: what to undo if the process dies from a signal.
 *
 * alloy maps its inputs; if another process truncates a mapped file, the next read of a
 * page past the new end raises SIGBUS, and Ctrl-C raises SIGINT. Neither returns to
 * the code that would remove the temporary output. So the library registers
 * (a) the temporary paths it creates (a writer's hidden output, a merge's work
 *     directory), and
 * (b) the mappings of its input files,
 * and the command-line front end's signal handler calls al_emergency_cleanup() (removes
 * (a)) and al_emergency_mapping_path() (names the file behind a faulting address).
 * Both are async-signal-safe: fixed tables, and only open/getdents64/unlinkat/close.
 * The library itself installs no handler. */
#ifndef AL_EMERGENCY_H
#define AL_EMERGENCY_H

#include <stddef.h>

/* Register a path (file or directory tree) to remove on a fatal signal; returns a slot
 * for al_emergency_forget, or -1 when the table is full (no emergency removal then). */
int al_emergency_temp(const char *path);
void al_emergency_forget(int slot);                  /* accepts -1 */

/* Register / forget a read-only mapping of a file (for the SIGBUS message). */
int al_emergency_mapping(const void *base, size_t len, const char *path);

/* Remove every registered temporary path (async-signal-safe). */
void al_emergency_cleanup(void);
/* The path of the registered mapping that contains addr, or NULL (async-signal-safe). */
const char *al_emergency_mapping_path(const void *addr);

#endif
