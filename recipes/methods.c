/* recipes/methods.c: the merge-method schema (methods.md Part A §2.0-2.2).
 *
 * Mainline mergekit registers 20 methods (registry.py plus the easy_define
 * decorator ones). Per-model parameters are read per input model at every
 * precedence level; global ones skip the per-model level (recipes.md §1.4).
 * Defaults are mergekit's. Entries marked extension are alloy's. */
#include "recipe.h"

#include <string.h>

#define NUM(n, sc, req, def, doc_) \
    { .name = n, .type = AL_PT_NUMBER, .scope = sc, .required = req, \
      .has_default = !(req), .def_num = def, .doc = doc_ }
#define NUMR(n, sc, def, lo, hi, doc_) \
    { .name = n, .type = AL_PT_NUMBER, .scope = sc, .has_default = true, .def_num = def, \
      .has_min = true, .has_max = true, .min = lo, .max = hi, .doc = doc_ }
#define NUMMIN(n, sc, def, lo, doc_) \
    { .name = n, .type = AL_PT_NUMBER, .scope = sc, .has_default = true, .def_num = def, \
      .has_min = true, .min = lo, .doc = doc_ }
#define BOOLP(n, def, doc_) \
    { .name = n, .type = AL_PT_BOOL, .scope = AL_SCOPE_GLOBAL, .has_default = true, \
      .def_num = def, .doc = doc_ }
#define INTP(n, def, lo, doc_) \
    { .name = n, .type = AL_PT_INT, .scope = AL_SCOPE_GLOBAL, .has_default = true, \
      .def_num = def, .has_min = true, .min = lo, .doc = doc_ }

#define G AL_SCOPE_GLOBAL
#define P AL_SCOPE_PER_MODEL

#define WEIGHT_REQ  NUM("weight", P, true, 0, "per-model weight (required)")
#define DENSITY     NUMR("density", P, 1.0, 0.0, 1.0, "fraction of delta entries kept")
#define LAMBDA      NUM("lambda", G, false, 1.0, "scale applied to the merged delta")
#define INT8MASK    BOOLP("int8_mask", 0, "store the sign mask as int8 (memory only)")
#define SEED \
    { .name = "seed", .type = AL_PT_INT, .scope = G, .has_default = false, .has_min = true, \
      .min = 0, .extension = true, .doc = "alloy: RNG seed (counter-based, thread-independent)" }
#define TRIM_SCOPE \
    { .name = "trim_scope", .type = AL_PT_ENUM, .scope = G, .has_default = true, \
      .def_str = "tensor", .choices = "tensor|model", .extension = true, \
      .doc = "alloy: TIES top-k per tensor (mergekit) or over the whole model (paper)" }
#define RESCALE_MODE \
    { .name = "rescale_mode", .type = AL_PT_ENUM, .scope = G, .has_default = true, \
      .def_str = "l1", .choices = "l1|inverse", .extension = true, \
      .doc = "alloy: DARE rescale by L1 matching (mergekit) or 1/density (paper)" }
#define GAMMA       NUMR("gamma", P, 0.01, 0.0, 1.0, "fraction of largest entries removed")
#define EPSILON     NUMMIN("epsilon", P, 0.15, 0.0, "DELLA keep-probability spread")

#define GTA_COMMON(norm, resc) \
    WEIGHT_REQ, DENSITY, LAMBDA, INT8MASK, \
    BOOLP("normalize", norm, "divide by the sum of weights"), \
    BOOLP("rescale", resc, "L1-rescale sparsified deltas")

static const al_param_def p_task_arithmetic[] = { GTA_COMMON(0, 0) };
static const al_param_def p_ties[] = { GTA_COMMON(1, 0), TRIM_SCOPE };
static const al_param_def p_dare_ties[] = { GTA_COMMON(0, 1), RESCALE_MODE, SEED };
static const al_param_def p_dare_linear[] = { GTA_COMMON(0, 1), RESCALE_MODE, SEED };
static const al_param_def p_breadcrumbs[] = { GTA_COMMON(0, 0), GAMMA };
static const al_param_def p_breadcrumbs_ties[] = { GTA_COMMON(0, 0), GAMMA };
static const al_param_def p_della[] = { GTA_COMMON(1, 1), EPSILON, SEED };
static const al_param_def p_della_linear[] = { GTA_COMMON(0, 1), EPSILON, SEED };

static const al_param_def p_linear[] = {
    WEIGHT_REQ, BOOLP("normalize", 1, "divide by the sum of weights"),
};
static const al_param_def p_slerp[] = {
    NUM("t", G, true, 0, "interpolation factor: 0 = base, 1 = the other model"),
};
static const al_param_def p_nuslerp[] = {
    WEIGHT_REQ,
    BOOLP("nuslerp_flatten", 1, "slerp the whole tensor as one vector"),
    BOOLP("nuslerp_row_wise", 0, "rows (dim 0) instead of columns when not flattened"),
};
static const al_param_def p_multislerp[] = {
    WEIGHT_REQ,
    BOOLP("normalize_weights", 1, "normalize weights to sum to 1"),
    NUMMIN("eps", G, 1e-8, 0.0, "numerical guard"),
};
static const al_param_def p_karcher[] = {
    INTP("max_iter", 10, 1, "maximum iterations"),
    NUMMIN("tol", G, 1e-5, 0.0, "convergence tolerance"),
};
static const al_param_def p_model_stock[] = {
    BOOLP("filter_wise", 0, "per-row instead of per-tensor"),
};
static const al_param_def p_sce[] = {
    NUMR("select_topk", G, 1.0, 0.0, 1.0, "fraction of highest-variance positions kept"),
    INT8MASK,
};
static const al_param_def p_nearswap[] = {
    NUM("t", G, true, 0, "similarity threshold"),
};
static const al_param_def p_passthrough[] = {
    { .name = "scale", .type = AL_PT_NUMBER, .scope = P, .doc = "multiply the tensor (optional)" },
};
static const al_param_def p_arcee_fusion[] = { SEED };
/* LiNeS (Wang et al., ICLR 2025) on one fine-tune: theta = base + s(l) tau with
 * s(l) = alpha + beta l/(L-1) in block l and alpha outside the blocks; beta defaults
 * to 1 - alpha, so the last block keeps the whole fine-tuned change. */
static const al_param_def p_lines[] = {
    NUM("alpha", G, true, 0, "scale of the shallowest block and of everything outside the blocks"),
    { .name = "beta", .type = AL_PT_NUMBER, .scope = G, .extension = true,
      .doc = "added scale at the deepest block (default 1 - alpha)" },
};
static const al_param_def p_ram[] = { NUMMIN("epsilon", G, 1e-5, 0.0, "activity threshold") };
static const al_param_def p_ramplus_tl[] = {
    NUMMIN("epsilon", G, 1e-5, 0.0, "activity threshold"),
    NUMMIN("r", G, 0.1, 0.0, "unique-contribution boost"),
    NUMMIN("alpha", G, 0.2, 0.0, "clamp for the shared/unique ratio"),
};

#define M(n, base_, mn, mx, nb, binp, params_, doc_) \
    { .name = n, .base = base_, .min_inputs = mn, .max_inputs = mx, .exact_nonbase = nb, \
      .base_is_input = binp, .params = params_, \
      .n_params = sizeof params_ / sizeof params_[0], .doc = doc_ }

static const al_method methods[] = {
    M("linear", AL_BASE_OPTIONAL, 1, 0, 0, true, p_linear, "weighted average"),
    M("task_arithmetic", AL_BASE_REQUIRED, 1, 0, 0, false, p_task_arithmetic,
      "base + lambda * sum w_i delta_i"),
    M("ties", AL_BASE_REQUIRED, 1, 0, 0, false, p_ties, "magnitude trim + sign election"),
    M("dare_ties", AL_BASE_REQUIRED, 1, 0, 0, false, p_dare_ties,
      "random drop + sign election"),
    M("dare_linear", AL_BASE_REQUIRED, 1, 0, 0, false, p_dare_linear, "random drop"),
    M("breadcrumbs", AL_BASE_REQUIRED, 1, 0, 0, false, p_breadcrumbs,
      "drop smallest and largest"),
    M("breadcrumbs_ties", AL_BASE_REQUIRED, 1, 0, 0, false, p_breadcrumbs_ties,
      "breadcrumbs + sign election"),
    M("della", AL_BASE_REQUIRED, 1, 0, 0, false, p_della,
      "magnitude-ranked random drop + sign election"),
    M("della_linear", AL_BASE_REQUIRED, 1, 0, 0, false, p_della_linear,
      "magnitude-ranked random drop"),
    M("slerp", AL_BASE_REQUIRED, 2, 2, 0, false, p_slerp, "spherical interpolation of 2 models"),
    M("nuslerp", AL_BASE_OPTIONAL, 2, 3, 2, false, p_nuslerp, "weighted slerp of 2 models"),
    M("multislerp", AL_BASE_OPTIONAL, 1, 0, 0, false, p_multislerp, "slerp of N models"),
    M("karcher", AL_BASE_OPTIONAL, 1, 0, 0, true, p_karcher,
      "Riemannian (Karcher) mean; ignores weights"),
    M("model_stock", AL_BASE_REQUIRED, 3, 0, 0, false, p_model_stock,
      "base + >= 2 models, geometric interpolation"),
    M("sce", AL_BASE_REQUIRED, 1, 0, 0, false, p_sce, "select, calculate, erase"),
    M("nearswap", AL_BASE_REQUIRED, 2, 2, 0, false, p_nearswap,
      "take the other model where close to base"),
    M("arcee_fusion", AL_BASE_REQUIRED, 2, 2, 0, false, p_arcee_fusion,
      "importance-masked fusion of 2 models"),
    M("passthrough", AL_BASE_OPTIONAL, 1, 1, 0, false, p_passthrough,
      "copy the single input (frankenmerges)"),
    M("ram", AL_BASE_REQUIRED, 1, 0, 0, false, p_ram, "RAM"),
    M("lines", AL_BASE_REQUIRED, 2, 2, 1, false, p_lines,
      "alloy: LiNeS layer-increasing scaling of one fine-tune's task vector"),
    M("ramplus_tl", AL_BASE_REQUIRED, 1, 0, 0, false, p_ramplus_tl, "RAM+ (tl)"),
};

size_t al_method_count(void) { return sizeof methods / sizeof methods[0]; }

const al_method *al_method_at(size_t i) { return i < al_method_count() ? &methods[i] : NULL; }

static bool in_bar_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, '|');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && strncmp(p, name, n) == 0) return true;
        p = e ? e + 1 : NULL;
    }
    return false;
}

const al_method *al_method_find(const char *name)
{
    for (size_t i = 0; i < al_method_count(); i++)
        if (strcmp(methods[i].name, name) == 0 || in_bar_list(methods[i].aliases, name))
            return &methods[i];
    return NULL;
}

const al_param_def *al_method_param(const al_method *m, const char *name)
{
    for (size_t i = 0; m && i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0) return &m->params[i];
    return NULL;
}

bool al_method_param_is_legacy(const al_method *m, const char *name)
{
    /* slerp's embed_slerp existed before mergekit PR #495. */
    return m && strcmp(m->name, "slerp") == 0 && strcmp(name, "embed_slerp") == 0;
}

bool al_method_is_branch_only(const char *name)
{
    return in_bar_list("cabs|core_space|lrp|pcb|zipit|generalized_anysize", name);
}
