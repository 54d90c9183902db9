/* core/emergency.c: temporaries and mappings to report or remove from a signal handler
 * (see emergency.h). */
#include "emergency.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define N_TEMPS 32
#define N_MAPS 256

typedef struct {
    atomic_int used;            /* set after path is written: a handler sees a whole entry */
    char path[4096];
} temp_slot;

typedef struct {
    atomic_int used;
    const char *base;
    size_t len;
    char path[1024];
} map_slot;

static temp_slot g_temps[N_TEMPS];
static map_slot g_maps[N_MAPS];
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

int al_emergency_temp(const char *path)
{
    size_t n = strlen(path);
    if (n >= sizeof g_temps[0].path) return -1;
    int slot = -1;
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < N_TEMPS && slot < 0; i++)
        if (!atomic_load(&g_temps[i].used)) {
            memcpy(g_temps[i].path, path, n + 1);
            atomic_store(&g_temps[i].used, 1);
            slot = i;
        }
    pthread_mutex_unlock(&g_lock);
    return slot;
}

void al_emergency_forget(int slot)
{
    if (slot >= 0 && slot < N_TEMPS) atomic_store(&g_temps[slot].used, 0);
    else if (slot >= N_TEMPS && slot < N_TEMPS + N_MAPS) atomic_store(&g_maps[slot - N_TEMPS].used, 0);
}

int al_emergency_mapping(const void *base, size_t len, const char *path)
{
    int slot = -1;
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < N_MAPS && slot < 0; i++)
        if (!atomic_load(&g_maps[i].used)) {
            g_maps[i].base = base;
            g_maps[i].len = len;
            size_t n = strlen(path);
            if (n >= sizeof g_maps[i].path) n = sizeof g_maps[i].path - 1;
            memcpy(g_maps[i].path, path, n);
            g_maps[i].path[n] = 0;
            atomic_store(&g_maps[i].used, 1);
            slot = N_TEMPS + i;
        }
    pthread_mutex_unlock(&g_lock);
    return slot;
}

const char *al_emergency_mapping_path(const void *addr)
{
    const char *a = addr;
    for (int i = 0; i < N_MAPS; i++)
        if (atomic_load(&g_maps[i].used) && a >= g_maps[i].base && (size_t)(a - g_maps[i].base) < g_maps[i].len)
            return g_maps[i].path;
    return NULL;
}

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Remove the contents of directory fd, recursing a few levels (alloy's temporaries are
 * at most output/intermediate/file). Entries are removed while listing, so the listing
 * is repeated until it comes back empty. */
static void empty_dir(int fd, int depth)
{
    char buf[4096];
    for (int pass = 0; pass < 64; pass++) {
        int removed = 0;
        lseek(fd, 0, SEEK_SET);
        long n;
        while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
            for (long off = 0; off < n;) {
                struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
                off += d->d_reclen;
                const char *nm = d->d_name;
                if (nm[0] == '.' && (nm[1] == 0 || (nm[1] == '.' && nm[2] == 0))) continue;
                if (d->d_type == DT_DIR && depth < 4) {
                    int sub = openat(fd, nm, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                    if (sub >= 0) { empty_dir(sub, depth + 1); close(sub); }
                    if (unlinkat(fd, nm, AT_REMOVEDIR) == 0) removed++;
                } else if (unlinkat(fd, nm, 0) == 0) {
                    removed++;
                }
            }
        }
        if (!removed) return;
    }
}

void al_emergency_cleanup(void)
{
    for (int i = 0; i < N_TEMPS; i++) {
        if (!atomic_load(&g_temps[i].used)) continue;
        const char *p = g_temps[i].path;
        int fd = open(p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
            empty_dir(fd, 0);
            close(fd);
            rmdir(p);
        } else {
            unlink(p);
        }
    }
}
