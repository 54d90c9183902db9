/* cmd/cli.h: shared pieces of the command-line front end (the only code that prints). */
#ifndef AL_CLI_H
#define AL_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/comm.h"
#include "../core/status.h"
#include "../edit/facts.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);   /* argv[0] is the subcommand name */
    const char *summary;
} cli_command;

/* The MPI world when alloy was built with MPI=1 and runs under mpirun with more than
 * one rank; NULL otherwise. Ranks other than 0 print nothing (main.c sends their
 * stdout and stderr to /dev/null unless ALLOY_MPI_VERBOSE is set); every failure
 * reaches rank 0 through the library's agreement points. */
extern const al_comm *cli_comm;

/* Print "alloy: <msg>" for a failed call and return its exit code. */
int cli_report(const al_error *err);
/* Print a usage error ("alloy CMD: msg; see alloy CMD --help") and return 1. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "5GB" (10^9), "500MiB" (2^20), "1.5G", "123" bytes. false on junk. */
bool cli_parse_size(const char *s, uint64_t *out);
bool cli_parse_int(const char *s, long lo, long hi, long *out);
/* "1.2 GB" style, into buf. */
const char *cli_human_bytes(char *buf, size_t n, uint64_t bytes);
const char *cli_human_count(char *buf, size_t n, uint64_t count);
bool cli_is_help(const char *a);

int cmd_inspect(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_edit(int argc, char **argv);
int cmd_stats(int argc, char **argv);

/* `alloy edit` on a loaded facts file (also the `edits:` stage of a merge recipe):
 * fields override the file's settings when set. Returns the exit code. */
typedef struct {
    const char *model, *out, *method, *stats;
    const int *layers;
    size_t n_layers;
    bool eval, json, force, no_factors, quiet;
    const char *model_label;    /* how edits.json / edits.h5 name the model (NULL: its path) */
    const char *const *carry;   /* NULL-terminated names of files in the model directory
                                   to copy into OUT as well (a merge's model card) */
} cli_edit_opts;
int cmd_edit_facts(al_facts *facts, const cli_edit_opts *o);
/* The checks that need no model (method, subjects, layer order, statistics files that
 * exist), for an edit stage to fail before its merge runs. */
al_status cmd_edit_precheck(const al_facts *facts, const cli_edit_opts *o, al_error *err);

#endif
