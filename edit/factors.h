/* edit/factors.h: the low-rank updates an edit made, kept so that an edit can be
 * inspected or undone (`alloy edit --undo`).
 *
 * An update of one weight tensor W [rows, cols] (as stored in the checkpoint) is
 *   dW = left^T right,   left [rank, rows], right [rank, cols],
 * element (i, j) = sum_r left[r][i] right[r][j], summed in float64 and rounded to F32
 * once, then added to W in F32. ROME stores its rank-one u, v_right (F32, so the
 * product equals the F32 product the edit added); MEMIT stores one rank-n update per
 * layer (K A^-1 and R, float64).
 *
 * File (HDF5, alloy_format "alloy-edit-factors-1"): root attributes model, method;
 * groups /update_0000, /update_0001, ... in the order they were applied, each with
 * attributes tensor, method, layer, edit (the first request index it covers) and
 * datasets left, right (F32 or F64). */
#ifndef AL_EDIT_FACTORS_H
#define AL_EDIT_FACTORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

typedef struct {
    char tensor[192];        /* checkpoint name of W */
    char method[16];         /* rome, r-rome, memit */
    int layer, edit;
    int64_t rows, cols;
    int rank;
    bool f64;                /* factor element type: double (else float) */
    void *left, *right;      /* [rank, rows], [rank, cols] */
} al_update;

#define AL_FACTORS_FILE "edits.h5"

/* Write n updates to path (atomic: PATH.tmp then rename). */
al_status al_factors_save(const char *path, const char *model, const al_update *u, size_t n,
                          al_error *err);
/* Read every update of a factors file; *out owned (al_factors_free). Shapes and
 * element types are checked; errors name the file and the group. */
al_status al_factors_load(const char *path, al_update **out, size_t *n, al_error *err);
void al_factors_free(al_update *u, size_t n);    /* frees the factor arrays too */

/* W += sign * dW (sign +1 applies, -1 undoes), W F32 [rows, cols] row-major. */
void al_update_apply(float *W, const al_update *u, int sign);

#endif
