/* tests/fuzz/fuzz_common.h: helpers for the libFuzzer targets (make fuzz). Each target
 * defines LLVMFuzzerTestOneInput; a run must end in AL_OK or a clean error, never a
 * crash, a sanitizer report, a leak or a hang. Targets run from the repository root. */
#ifndef ALLOY_FUZZ_COMMON_H
#define ALLOY_FUZZ_COMMON_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Write the input to `path` (the readers under test take files). */
static inline void fz_write(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    if (fclose(f) != 0) abort();
}

static char fz_dir_path[64];

/* Remove the scratch directory and the plain files in it (at exit). */
static inline void fz_cleanup(void)
{
    DIR *d = opendir(fz_dir_path);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", fz_dir_path, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(fz_dir_path);
}

/* A per-process scratch directory under /tmp (created once, removed at exit). */
static inline const char *fz_dir(void)
{
    if (!fz_dir_path[0]) {
        snprintf(fz_dir_path, sizeof fz_dir_path, "/tmp/alloy-fuzz-XXXXXX");
        if (!mkdtemp(fz_dir_path)) abort();
        atexit(fz_cleanup);
    }
    return fz_dir_path;
}

#endif
