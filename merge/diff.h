/* merge/diff.h: how two checkpoints differ, tensor by tensor and block by block.
 *
 * Pair mode (A, B): for every tensor present in both with the same shape,
 *   ||A - B||_2, the relative change ||A - B||_2 / ||A||_2 and cos(A, B).
 * Task mode (base, M_1..M_n): the same for each M_i against the base, plus the TIES
 * sign-conflict rate (Yadav et al., NeurIPS 2023): the fraction of elements whose task
 * vectors tau_i = M_i - base have both a positive and a negative entry.
 * Blocks use the layer map (io/names.h); "pre" and "post" collect what is outside.
 * Everything streams in row chunks converted to F32 and accumulates in double, in
 * element order, so the figures do not depend on the thread count. */
#ifndef AL_MERGE_DIFF_H
#define AL_MERGE_DIFF_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

#define AL_DIFF_MAX_MODELS 16

/* Sums over one tensor or one block, per compared model. */
typedef struct {
    double dd[AL_DIFF_MAX_MODELS];   /* sum (M_i - ref)^2 */
    double rr;                       /* sum ref^2 */
    double mm[AL_DIFF_MAX_MODELS];   /* sum M_i^2 */
    double rm[AL_DIFF_MAX_MODELS];   /* sum ref * M_i */
    int64_t n;                       /* elements */
    int64_t conflicts;               /* task mode: elements with opposite task-vector signs */
} al_diff_sums;

typedef struct {
    char *name;
    int stack;                       /* 0, or 1 for a decoder stack */
    long block;                      /* -1 outside the blocks */
    int kind;                        /* al_layer_kind */
    al_diff_sums s;
} al_diff_tensor;

typedef struct {
    char label[32];                  /* "pre", "0", "1", ..., "dec.0", "post" */
    al_diff_sums s;
} al_diff_block;

typedef struct {
    int n_models;                    /* compared models (1 in pair mode) */
    int task_mode;                   /* 1: ref is a base, models are fine-tunes */
    char *ref;                       /* path of A or of the base */
    char *models[AL_DIFF_MAX_MODELS];
    al_diff_tensor *t;
    size_t n_tensors;
    al_diff_block *b;                /* in model order: pre, blocks by stack, post */
    size_t n_blocks;
    al_diff_sums total;
    size_t skipped;                  /* tensors absent or of another shape in some model */
    char first_skipped[256];
} al_diff;

/* Compare `ref` with models[0..n-1] (pair mode when task_mode is 0 and n is 1). */
al_status al_diff_run(const char *ref, const char *const *models, int n, int task_mode,
                      al_diff **out, al_error *err);
void al_diff_free(al_diff *d);

/* Figures from sums, for model i: L2 of the difference, relative change, cosine,
 * conflict rate (task mode). NAN where undefined (zero norms, no elements). */
double al_diff_l2(const al_diff_sums *s, int i);
double al_diff_rel(const al_diff_sums *s, int i);
double al_diff_cos(const al_diff_sums *s, int i);
double al_diff_conflict_rate(const al_diff_sums *s);

/* Write a self-contained SVG chart of the per-block figures (relative change per
 * model as bars; cosine or conflict rate in a second panel). */
al_status al_diff_write_svg(const al_diff *d, const char *path, al_error *err);

#endif
