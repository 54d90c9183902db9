/* cmd/main.c: `alloy SUBCOMMAND ...`, the table of subcommands, and exit codes.
 *
 * Exit codes: 0 ok, 1 usage, 2 bad input (malformed file, recipe, shapes), 3 I/O,
 * 4 out of memory, 5 not supported, 70 internal error. */
#include <cblas.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../core/emergency.h"
#include "cli.h"
#ifdef AL_MPI
#include "../core/mpi/comm_mpi.h"
#endif

const al_comm *cli_comm;

#define ALLOY_VERSION "0.1.0"

static const cli_command k_commands[] = {
    {"merge", cmd_merge, "merge checkpoints from a mergekit-style YAML recipe"},
    {"edit", cmd_edit, "rewrite facts in a model with ROME / r-ROME rank-one updates"},
    {"eval", cmd_eval, "how well a model knows a list of facts (log-probabilities, top-1 accuracy)"},
    {"generate", cmd_generate, "continue a prompt with a GPT-2 or Llama-family model on the CPU"},
    {"stats", cmd_stats, "ROME second-moment statistic C = E[k k^T] of a layer over a corpus (or import an .npz)"},
    {"tokenize", cmd_tokenize, "encode text (or --decode ids) with a model's tokenizer"},
    {"inspect", cmd_inspect, "list a checkpoint's tensors, dtypes, shapes, sizes (and stats)"},
    {"diff", cmd_diff, "per-block differences between checkpoints (norms, cosine, TIES sign conflicts, SVG)"},
    {"convert", cmd_convert, "convert a checkpoint between safetensors/HDF5, dtypes and shardings"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: alloy COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        fprintf(f, "  %-10s %s\n", k_commands[i].name, k_commands[i].summary);
    fprintf(f, "\n'alloy COMMAND --help' describes each command.\n"
               "exit codes: 0 ok, 1 usage, 2 bad input, 3 I/O error, 4 out of memory,\n"
               "            5 not supported, 70 internal error\n");
}

/* Two libraries read their settings from the environment in load-time constructors,
 * so where the defaults are wrong for alloy we set them and run ourselves again, once:
 *   - OpenBLAS 0.3.21 does not know recent Xeons and falls back to its generic SSE3
 *     ("Prescott") kernels, about 1.7x slower here: name the right core through
 *     OPENBLAS_CORETYPE on a CPU with AVX-512 or AVX2.
 *   - libgomp's threads spin at the end of each parallel region before they sleep.
 *     A merge also runs an output thread and the kernel's writeback beside its
 *     OpenMP threads, and the spinning takes their cores: OMP_WAIT_POLICY=passive
 *     (measured on the TIES benchmark: 16 s of user time down to 11 s, and a shorter
 *     wall time). A value the user set is kept. */
static void fix_runtime_env(char **argv)
{
    bool again = false;
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        again = true;
    }
#if defined(__x86_64__) && defined(__GNUC__)
    const char *core = openblas_get_corename();
    if (!getenv("OPENBLAS_CORETYPE") && core && strcasecmp(core, "Prescott") == 0) {
        const char *want = __builtin_cpu_supports("avx512f") ? "SkylakeX" : __builtin_cpu_supports("avx2") ? "Haswell" : NULL;
        if (want) {
            setenv("OPENBLAS_CORETYPE", want, 1);
            again = true;
        }
    }
#endif
    if (again) execv("/proc/self/exe", argv);   /* on failure, carry on with the defaults */
}

/* A fatal signal: remove the temporary output, say why, and end. SIGBUS comes from
 * reading a mapped input that another process truncated (or a failing disk under it):
 * the file is named from the faulting address. Only async-signal-safe calls here. */
static void put(const char *s) { ssize_t r = write(2, s, strlen(s)); (void)r; }

static void on_fatal(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    /* Several threads can fault on the same truncated input at once: the first one
     * cleans up and exits, the others wait for that. */
    static int busy;
    if (__atomic_exchange_n(&busy, 1, __ATOMIC_SEQ_CST))
        for (;;) pause();
    al_emergency_cleanup();
    if (sig == SIGBUS) {
        const char *f = si ? al_emergency_mapping_path(si->si_addr) : NULL;
        put("alloy: error: ");
        put(f ? f : "an input file");
        put(": truncated or unreadable while being read (SIGBUS); nothing was written\n");
        _exit(3);
    }
    put("alloy: interrupted; the unfinished output was removed\n");
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fatal;
    sa.sa_flags = SA_SIGINFO;          /* not SA_RESETHAND: a second faulting thread must reach the guard */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

static int run(int argc, char **argv);

int main(int argc, char **argv)
{
#ifdef AL_MPI
    fix_runtime_env(argv);    /* before MPI_Init: it may exec us again */
    const al_comm *w = al_comm_mpi_init(&argc, &argv);
    if (!w) { fprintf(stderr, "alloy: error: MPI_Init failed\n"); return 3; }
    if (w->size > 1) cli_comm = w;
    if (w->rank > 0 && !getenv("ALLOY_MPI_VERBOSE")) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); close(fd); }
    }
    int rc = run(argc, argv);
    fflush(NULL);
    al_comm_mpi_finish();
    return rc;
#else
    return run(argc, argv);
#endif
}

static int run(int argc, char **argv)
{
    /* Past a file-size limit (ulimit -f) the kernel would kill us with SIGXFSZ before
     * the temporary output could be removed; ignored, the write fails with EFBIG and
     * the error path cleans up like any other write error (disk full included). */
    signal(SIGXFSZ, SIG_IGN);
    install_handlers();
    fix_runtime_env(argv);
    if (argc < 2) { usage(stderr); return 1; }
    if (cli_is_help(argv[1])) { usage(stdout); return 0; }
    if (strcmp(argv[1], "--version") == 0) { printf("alloy %s\n", ALLOY_VERSION); return 0; }
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        if (strcmp(argv[1], k_commands[i].name) == 0) return k_commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "alloy: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 1;
}
