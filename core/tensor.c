/* core/tensor.c: shape arithmetic for views. */
#include "tensor.h"

#include <stdio.h>

bool al_shape_numel(int ndim, const int64_t *shape, int64_t *numel)
{
    int64_t n = 1;
    if (ndim < 0 || ndim > AL_MAX_DIMS) return false;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || __builtin_mul_overflow(n, shape[i], &n)) return false;
    }
    *numel = n;
    return true;
}

bool al_dtype_nbytes(al_dtype t, int64_t numel, uint64_t *nbytes)
{
    uint64_t bits;
    if (numel < 0 || __builtin_mul_overflow((uint64_t)numel, (uint64_t)al_dtype_bits(t), &bits))
        return false;
    if (bits % 8) return false;
    *nbytes = bits / 8;
    return true;
}

int64_t al_view_numel(const al_view *v)
{
    int64_t n = 1;
    for (int i = 0; i < v->ndim; i++) n *= v->shape[i];
    return n;
}

uint64_t al_view_nbytes(const al_view *v)
{
    return (uint64_t)al_view_numel(v) * al_dtype_bits(v->dtype) / 8;
}

bool al_shape_equal(int na, const int64_t *a, int nb, const int64_t *b)
{
    if (na != nb) return false;
    for (int i = 0; i < na; i++) if (a[i] != b[i]) return false;
    return true;
}

int64_t al_shape_row_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 1; i < ndim; i++) n *= shape[i];
    return n;
}

char *al_shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t off = 0;
    off += (size_t)snprintf(buf + off, n > off ? n - off : 0, "[");
    for (int i = 0; i < ndim && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (off < n) snprintf(buf + off, n - off, "]");
    return buf;
}
