/* bench/peakmem.c: run a command and report its wall time, peak RssAnon (sampled from
 * /proc/PID/status every 2 ms) and peak RSS (VmHWM, which also counts file-backed pages
 * of mmapped inputs).  usage: peakmem CMD [ARGS...]  -> one line on stderr. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long status_kb(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    if (!f) return -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0) { v = atol(line + kl); break; }
    fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: peakmem CMD [ARGS...]\n"); return 2; }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid == 0) { execvp(argv[1], argv + 1); perror(argv[1]); _exit(127); }
    long anon = 0, hwm = 0;
    int st = 0;
    for (;;) {
        long a = status_kb(pid, "RssAnon:"), h = status_kb(pid, "VmHWM:");
        if (a > anon) anon = a;
        if (h > hwm) hwm = h;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) break;
        struct timespec d = {0, 2000000};
        nanosleep(&d, NULL);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    fprintf(stderr, "peakmem: wall %.3f s, peak RssAnon %.1f MB, peak RSS %.1f MB, exit %d\n", secs,
            (double)anon / 1024.0, (double)hwm / 1024.0, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
