/* merge/method_internal.h: shared declarations of the method implementations. */
#ifndef AL_MERGE_METHOD_INTERNAL_H
#define AL_MERGE_METHOD_INTERNAL_H

#include <math.h>

#include "kernels_internal.h"
#include "method.h"

static inline double al_pm(const double *a, int i, double dflt) { return a ? a[i] : dflt; }

static inline const char *al_tname(const al_merge_params *p)
{
    return p->tensor_name ? p->tensor_name : "<tensor>";
}

/* Elements per row as the row-wise methods see them: shape[1:] for matrices, the whole
 * tensor (at least 1) for vectors and scalars or when the caller gave no row length. */
static inline int64_t al_row_len(const al_merge_params *p, int64_t numel)
{
    return (p->ndim <= 1 || p->row_len <= 0) ? (numel > 0 ? numel : 1) : p->row_len;
}

/* Sub-chunk length for row-aligned methods: whole rows, about AL_SUB elements. */
static inline int64_t al_sub_rows(int64_t row_len)
{
    if (row_len <= 0) return AL_SUB;
    return row_len >= AL_SUB ? row_len : (AL_SUB / row_len) * row_len;
}

/* merge/gta.c */
extern const al_merge_method al_m_task_arithmetic, al_m_ties, al_m_dare_ties, al_m_dare_linear,
    al_m_breadcrumbs, al_m_breadcrumbs_ties, al_m_della, al_m_della_linear;
/* merge/geometric.c */
extern const al_merge_method al_m_slerp, al_m_nuslerp, al_m_multislerp, al_m_karcher,
    al_m_model_stock;
/* merge/simple.c */
extern const al_merge_method al_m_linear, al_m_passthrough, al_m_nearswap, al_m_sce,
    al_m_arcee_fusion, al_m_ram, al_m_ramplus_tl;
/* merge/lines.c */
extern const al_merge_method al_m_lines;

#endif
