/* merge/method.c: method registry, parameter defaults, in-memory driver. */
#include "method.h"

#include <math.h>
#include <string.h>

#include "../core/alloc.h"
#include "method_internal.h"

void al_merge_params_init(al_merge_params *p)
{
    memset(p, 0, sizeof *p);
    p->base_weight = NAN;
    p->lambda = 1.0;
    p->normalize = -1;
    p->rescale = -1;
    p->rescale_mode = AL_RESCALE_L1;
    p->t = NAN;
    p->nuslerp_flatten = true;
    p->normalize_weights = true;
    p->eps = 1e-8;
    p->max_iter = 10;
    p->tol = 1e-5;
    p->select_topk = 1.0;
    p->ram_epsilon = 1e-5;
    p->ram_r = 0.1;
    p->ram_alpha = 0.2;
    p->ndim = 1;
}

static const al_merge_method *const g_methods[] = {
    &al_m_linear, &al_m_task_arithmetic, &al_m_ties, &al_m_dare_ties, &al_m_dare_linear,
    &al_m_slerp, &al_m_model_stock, &al_m_della, &al_m_della_linear, &al_m_breadcrumbs,
    &al_m_breadcrumbs_ties, &al_m_sce, &al_m_nuslerp, &al_m_multislerp, &al_m_karcher,
    &al_m_nearswap, &al_m_arcee_fusion, &al_m_passthrough, &al_m_ram, &al_m_ramplus_tl,
    &al_m_lines, NULL
};

const al_merge_method *const *al_merge_method_list(void) { return g_methods; }

const al_merge_method *al_merge_method_find(const char *name)
{
    if (!name) return NULL;
    for (int i = 0; g_methods[i]; i++)
        if (strcmp(g_methods[i]->name, name) == 0) return g_methods[i];
    return NULL;
}

void al_merge_method_free(const al_merge_method *m, void *state)
{
    if (m && state) m->free(state);
}

al_status al_merge_tensor_f32(const al_merge_method *m, const al_merge_params *p,
                              const float *base, const float *const *models, int n,
                              int64_t numel, float *out, int64_t chunk_elems,
                              al_error *err)
{
    if (!m || !p || !out || numel < 0 || n < 0 || n > AL_MERGE_MAX_MODELS || (n > 0 && !models))
        return al_errorf(err, AL_ERR_USAGE, "al_merge_tensor_f32: bad arguments");
    void *st = NULL;
    al_merge_plan plan = { 0, 1, false };
    al_status s = m->init(&st, p, numel, n, base != NULL, &plan, err);
    if (s != AL_OK) return s;
    int64_t chunk = chunk_elems > 0 ? chunk_elems : AL_MERGE_CHUNK;
    int64_t align = plan.align > 0 ? plan.align : 1;
    chunk = (chunk / align) * align;
    if (chunk < align) chunk = align;
    const float *mp[AL_MERGE_MAX_MODELS];
    for (int pass = 0; pass < plan.n_passes; pass++) {
        for (int64_t off = 0; off < numel; off += chunk) {
            int64_t len = numel - off < chunk ? numel - off : chunk;
            for (int i = 0; i < n; i++) mp[i] = models[i] + off;
            m->stat(st, pass, off, len, base ? base + off : NULL, mp);
        }
        s = m->finish_pass(st, pass, err);
        if (s != AL_OK) { m->free(st); return s; }
    }
    for (int64_t off = 0; off < numel; off += chunk) {
        int64_t len = numel - off < chunk ? numel - off : chunk;
        for (int i = 0; i < n; i++) mp[i] = models[i] + off;
        m->apply(st, off, len, base ? base + off : NULL, mp, out + off);
    }
    m->free(st);
    return AL_OK;
}

al_status al_merge_tensor_typed(const al_merge_method *m, const al_merge_params *p,
                                const al_merge_src *base, const al_merge_src *models, int n,
                                int64_t numel, void *out, al_dtype out_dtype,
                                int64_t chunk_elems, al_error *err)
{
    if (!m || !p || !out || numel < 0 || n < 0 || n > AL_MERGE_MAX_MODELS || (n > 0 && !models) ||
        (out_dtype != AL_F32 && out_dtype != AL_F16 && out_dtype != AL_BF16))
        return al_errorf(err, AL_ERR_USAGE, "al_merge_tensor_typed: bad arguments");
    void *st = NULL;
    al_merge_plan plan = { 0, 1, false };
    al_status s = m->init(&st, p, numel, n, base != NULL, &plan, err);
    if (s != AL_OK) return s;
    if (!plan.typed || !m->prepare || !m->apply_typed) {
        m->free(st);
        return al_errorf(err, AL_ERR_UNSUPPORTED, "%s: no typed path for this configuration", m->name);
    }
    if ((s = m->prepare(st, base, models, err)) != AL_OK) { m->free(st); return s; }
    int64_t chunk = chunk_elems > 0 ? chunk_elems : AL_MERGE_CHUNK;
    size_t osz = al_dtype_bits(out_dtype) / 8;
    for (int64_t off = 0; off < numel; off += chunk) {
        int64_t len = numel - off < chunk ? numel - off : chunk;
        m->apply_typed(st, off, len, base, models, (char *)out + (size_t)off * osz, out_dtype);
    }
    m->free(st);
    return AL_OK;
}
