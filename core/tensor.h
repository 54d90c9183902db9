/* core/tensor.h: the non-owning tensor view passed between modules.
 *
 * A view is contiguous and row-major (C order), as every checkpoint format stores
 * tensors. It never owns `data`: storage belongs to a checkpoint mapping or a buffer
 * whose owner says how long it lives. `name` points into the owner's tensor index so
 * that errors can name the tensor. Shapes are int64; every product is overflow-checked. */
#ifndef AL_TENSOR_H
#define AL_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "status.h"

#define AL_MAX_DIMS 8

typedef struct {
    al_dtype dtype;
    int ndim;                       /* 0 for a scalar */
    int64_t shape[AL_MAX_DIMS];
    void *data;
    const char *name;
} al_view;

/* Element count of a shape; false on a negative dimension or overflow past INT64_MAX. */
bool al_shape_numel(int ndim, const int64_t *shape, int64_t *numel);
/* Byte size of numel elements of dtype (sub-byte dtypes: must be whole bytes);
 * false on overflow or misaligned sub-byte size. */
bool al_dtype_nbytes(al_dtype t, int64_t numel, uint64_t *nbytes);
int64_t al_view_numel(const al_view *v);     /* view shapes are validated: never fails */
uint64_t al_view_nbytes(const al_view *v);
bool al_shape_equal(int na, const int64_t *a, int nb, const int64_t *b);
/* Elements in one row along dim 0 (product of shape[1:]); 1 for rank 0 and 1. */
int64_t al_shape_row_numel(int ndim, const int64_t *shape);
/* "[4096, 11008]" into buf; returns buf. */
char *al_shape_str(char *buf, size_t n, int ndim, const int64_t *shape);

#endif
