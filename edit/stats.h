/* edit/stats.h: the second-moment statistic of ROME/MEMIT, C = E[k k^T], where k in R^m
 * is the input of the MLP down projection ("key") at one layer, over a text corpus.
 *
 * What is stored is the raw sum S = sum_i k_i k_i^T (double) and the count n, as the
 * reference's SecondMoment does (mom2.mom2, mom2.count); C = S / n (no mean subtracted).
 *
 * Corpus convention (matches the golden data, rome.md 1.4): one document per line
 * ('\n'; a trailing '\r' is dropped), empty lines skipped, each document tokenized
 * alone without special tokens (no BOS/EOS), truncated to `truncate` tokens (default
 * the model's context), and every remaining token contributes one key.
 *
 * Files:
 *   - alloy's HDF5 cache (al_stats_save / al_stats_load), layout "alloy-stats-1":
 *       /mom2_sum  [m, m] F64 (symmetric, row-major)      /count  scalar int64
 *       root attributes: alloy_format, model, model_type, module, corpus,
 *       corpus_sha256 (hex SHA-256 of the corpus bytes), dtype (precision of the
 *       accumulation: "float64" for alloy, the npz array's for imports), source
 *       ("alloy" or "npz:PATH"), layer (int64, -1 unknown), n_tokens (int64).
 *   - the reference implementation's .npz (al_stats_import_npz): members mom2.mom2.npy
 *     ([m, m] <f4/<f8 sum) and mom2.count.npy (<i8 scalar), zip stored or deflated. */
#ifndef AL_STATS_H
#define AL_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/comm.h"
#include "../core/status.h"
#include "../io/tokenizer.h"
#include "model.h"

typedef struct {
    int m;              /* key width (MLP inner size) */
    int64_t count;      /* number of keys summed */
    double *sum;        /* [m * m] row-major, symmetric: S = sum k k^T */
    int layer;          /* -1 when unknown (npz without a recognisable file name) */
    /* provenance; never NULL (empty string when unknown) */
    char *model, *model_type, *module, *corpus, *corpus_sha256, *dtype, *source;
} al_stats;

/* Progress: keys counted so far and documents read (called after every forward). */
typedef void (*al_stats_progress_fn)(int64_t tokens, int64_t docs, void *user);

typedef struct {
    int layer;                  /* 0 .. n_layer-1 */
    const char *corpus;         /* text file, one document per line */
    int64_t max_tokens;         /* stop after this many keys; 0 = whole corpus */
    int truncate;               /* tokens per document; 0 = the model's context */
    int batch_tokens;           /* padded tokens per forward; 0 = default (4096, at least
                                   one document) */
    const char *model_path;     /* provenance only (stored as given); may be NULL */
    al_stats_progress_fn progress;
    void *user;
    /* Distributed (nullable = one process): every rank reads and batches the whole
     * corpus the same way, but runs the model only on batches b with b % size == rank;
     * the partial sums are added over ranks in F64 and every rank gets the total. It
     * equals the one-process S up to the order of those additions (each element is a
     * different sum of the same F64 terms: relative differences near 1e-15). */
    const al_comm *comm;
} al_stats_opts;

/* Stream the corpus through the model and accumulate S and n (see the header comment).
 * Keys are taken at every valid position with an al_hook; each forward's keys are
 * widened to F64 and added with one cblas_dsyrk (upper triangle), symmetrized at the
 * end. Documents are consumed in file order and batched by a fixed token budget, so the
 * block sequence does not depend on threads; results are bit-identical run to run for a
 * fixed OpenBLAS thread count. *out owned (al_stats_free). */
al_status al_stats_compute(const al_model *m, const al_tokenizer *tok, const al_stats_opts *o,
                           al_stats **out, al_error *err);

/* C = S / count into c [m * m] (count 0: AL_ERR_USAGE). */
al_status al_stats_mean(const al_stats *s, double *c, al_error *err);

/* Write the HDF5 cache atomically (PATH.tmp then rename); an existing file is replaced. */
al_status al_stats_save(const al_stats *s, const char *path, al_error *err);
/* Read an HDF5 cache written by al_stats_save. *out owned (al_stats_free). */
al_status al_stats_load(const char *path, al_stats **out, al_error *err);
/* Check statistics against the model and layer they are about to be used with:
 * m != n_inner -> AL_ERR_SHAPE "statistics of the wrong shape"; a known layer or
 * model_type that differs -> AL_ERR_USAGE "from another model/layer". `what` names the
 * statistics in messages (e.g. the file path); may be NULL. */
al_status al_stats_check(const al_stats *s, const al_model *m, int layer, const char *what,
                         al_error *err);

/* Read a reference .npz (SecondMoment cache). layer and module are taken from a file
 * name like "transformer.h.17.mlp.c_proj_float32_mom2_100000.npz" when it has that
 * form (layer -1 otherwise). Every size in the file is bounded; errors name the file and
 * the member. *out owned (al_stats_free). */
al_status al_stats_import_npz(const char *path, al_stats **out, al_error *err);

/* Module name of the down projection of `layer`: "transformer.h.L.mlp.c_proj" (GPT-2)
 * or "model.layers.L.mlp.down_proj" (Llama family), into buf. */
const char *al_stats_module_name(const al_model *m, int layer, char *buf, size_t n);

/* Tag statistics (e.g. an import) with the model and layer they belong to: model path,
 * model_type, layer, module. false when out of memory. */
bool al_stats_set_model(al_stats *s, const char *model, const char *model_type, int layer,
                        const char *module);

void al_stats_free(al_stats *s);   /* accepts NULL */

#endif
