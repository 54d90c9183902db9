/* merge/method.h: per-tensor math of every merge method, streaming by chunks.
 *
 * The pipeline hands one output tensor at a time: an optional base B and n model
 * tensors X_1..X_n, all F32, all of `numel` elements (row-major; `row_len` =
 * product of shape[1:]). Nothing here ever holds a whole tensor: a method is run as
 *
 *     init(params, numel, n, has_base)            -> plan {n_passes, align}
 *     for pass in 0..n_passes-1:
 *         for each chunk [off, off+len) in order:  stat(pass, off, len, B+off, X_i+off)
 *         finish_pass(pass)
 *     for each chunk in order:                    apply(off, len, B+off, X_i+off, out+off)
 *
 * Chunks of one pass must cover [0, numel) in increasing order; their sizes are
 * free except that every boundary must be a multiple of plan.align (row-wise
 * methods ask for whole rows). Results are bit-identical for any chunking and any
 * OpenMP thread count:
 *   - sums use fixed global blocks of AL_MERGE_BLOCK elements, summed left to right
 *     in double, block partials added in block order (never an OpenMP reduction);
 *   - selections (k-th largest) use exact integer histograms of float bits;
 *   - random masks use core/rng.h keyed by (seed, tensor hash, model, element).
 *
 * Compute precision: inputs/outputs F32; every combination is evaluated in double
 * and rounded to F32 once. mergekit computes in the recipe dtype (bf16 arithmetic
 * when `dtype: bfloat16`, coefficients rounded to bf16, slerp in f32 NumPy), so our
 * results are the same math, closer to exact, and not bit-identical to mergekit.
 * Ranking by |delta| is done on the F32 delta (X_i - B rounded to F32), exactly as
 * mergekit ranks in float32.
 *
 * Ties in ranked selections (top-k |delta| of TIES, the breadcrumbs band, SCE's
 * top-k variance, DELLA's per-row ranks): torch.argsort/topk order equal keys in an
 * implementation-defined way (methods.md 13.1.4). We use one documented total order:
 * larger key first, and among equal keys the LOWER flat index ranks higher. So
 * exactly k elements are kept, as mergekit does, with a reproducible tie order.
 * NaN: |NaN| ranks above +Inf (as torch.sort puts NaN last in ascending order), so
 * NaN deltas are "largest"; -0.0 and +0.0 are the same key.
 *
 * Ownership: a state is created by init and released by al_merge_method_free (accepts
 * NULL). Input/output pointers are borrowed for the duration of a call. */
#ifndef AL_MERGE_METHOD_H
#define AL_MERGE_METHOD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/dtype.h"
#include "../core/status.h"

#define AL_MERGE_BLOCK 4096                 /* summation block (elements), fixed */
#define AL_MERGE_CHUNK ((int64_t)1 << 20)   /* default chunk (elements) */
#define AL_MERGE_MAX_MODELS 64

typedef enum {
    AL_RESCALE_L1 = 0,   /* mergekit: delta_masked * ||delta||_1 / ||delta_masked||_1 */
    AL_RESCALE_INV_P     /* paper (DARE, DELLA): delta_masked / p_keep per element */
} al_rescale_mode;

/* Parameters resolved for ONE tensor. Per-model arrays have n entries in model
 * order (base excluded) and may be NULL (then the default applies). Call
 * al_merge_params_init first: tri-state ints use -1 for "method default". */
typedef struct {
    /* per model */
    const double *weight;        /* GTA/linear/nuslerp/multislerp; default 1 */
    const double *density;       /* GTA sparsifiers; default 1 */
    const double *gamma;         /* breadcrumbs; default 0.01 */
    const double *epsilon;       /* della; default 0.15 */
    const double *scale;         /* passthrough; default 1 (index 0 is used) */
    /* Injected |delta| thresholds for the magnitude sparsifier (TIES trim over a
     * whole model, computed by the pipeline): keep |delta_i| >= thr[i] (every tie
     * kept, as the TIES reference does). NULL: per-tensor exact top-k. */
    const float *ties_threshold;
    /* base handling for linear: the base is an input with this weight */
    double base_weight;          /* default NaN: error if linear needs it */
    /* global */
    double lambda;               /* GTA: default 1 */
    int normalize;               /* -1 default (ties/della/linear true, else false) */
    int rescale;                 /* -1 default (dare*, della* true, else false) */
    al_rescale_mode rescale_mode;
    double t;                    /* slerp, nearswap (required: NaN -> error) */
    bool breadcrumbs_compat;     /* reproduce mergekit's n_top==0 -> zero tensor */
    bool filter_wise;            /* model_stock */
    bool nuslerp_flatten;        /* default true */
    bool nuslerp_row_wise;       /* vectors along dim 0 (columns) */
    bool normalize_weights;      /* multislerp, default true */
    double eps;                  /* multislerp, default 1e-8 */
    int max_iter;                /* karcher, default 10 */
    double tol;                  /* karcher, default 1e-5 */
    double select_topk;          /* sce, default 1 */
    double ram_epsilon;          /* ram, default 1e-5 */
    double ram_r, ram_alpha;     /* ramplus_tl, defaults 0.1, 0.2 */
    /* randomness and shape */
    uint64_t seed;               /* DARE/DELLA seed */
    uint64_t tensor_hash;        /* al_hash_str(tensor name) */
    int ndim;                    /* tensor rank (0..8); 0 or 1: one row */
    int64_t row_len;             /* product of shape[1:] (numel for rank <= 1) */
    const char *tensor_name;     /* for error messages; may be NULL */
} al_merge_params;

void al_merge_params_init(al_merge_params *p);

typedef struct {
    int n_passes;                /* statistics passes before apply */
    int64_t align;               /* chunk boundaries must be multiples of this */
    bool typed;                  /* this configuration has the typed whole-tensor path */
} al_merge_plan;

/* A whole input tensor as stored (F32, F16 or BF16), e.g. a checkpoint's mapping. */
typedef struct {
    const void *data;
    al_dtype dtype;
} al_merge_src;

typedef struct al_merge_method al_merge_method;

/* Method table entry. `state` is opaque. stat/apply cannot fail: everything they
 * need is allocated by init. A NULL base pointer means "no base". */
struct al_merge_method {
    const char *name;            /* mergekit name */
    int max_passes;              /* upper bound of plan.n_passes */
    al_status (*init)(void **state, const al_merge_params *p, int64_t numel,
                      int n_models, bool has_base, al_merge_plan *plan, al_error *err);
    void (*stat)(void *state, int pass, int64_t off, int64_t len,
                 const float *base, const float *const *models);
    al_status (*finish_pass)(void *state, int pass, al_error *err);
    void (*apply)(void *state, int64_t off, int64_t len,
                  const float *base, const float *const *models, float *out);
    void (*free)(void *state);
    /* Optional typed path (NULL where a method has none; used when init sets
     * plan.typed): with every input a whole typed tensor, prepare() does all the
     * statistics (in place of the passes above) and apply_typed() writes elements
     * [off, off+len) in out_dtype (F32, F16, BF16), in any order of chunks. It
     * converts inputs tile by tile as it computes instead of staging F32 copies, and
     * gives the same bits as the F32 path on the converted inputs. */
    al_status (*prepare)(void *state, const al_merge_src *base, const al_merge_src *models,
                         al_error *err);
    void (*apply_typed)(void *state, int64_t off, int64_t len, const al_merge_src *base,
                        const al_merge_src *models, void *out, al_dtype out_dtype);
};

/* Look a method up by its mergekit name ("ties", "dare_linear", ...); NULL if unknown. */
const al_merge_method *al_merge_method_find(const char *name);
/* All methods, NULL-terminated. */
const al_merge_method *const *al_merge_method_list(void);

void al_merge_method_free(const al_merge_method *m, void *state);

/* Run every pass over in-memory arrays: base (may be NULL), models[n], out (numel).
 * chunk_elems <= 0 means AL_MERGE_CHUNK; it is rounded down to a multiple of the
 * plan's alignment (at least one aligned unit). out may not alias inputs. */
al_status al_merge_tensor_f32(const al_merge_method *m, const al_merge_params *p,
                              const float *base, const float *const *models, int n,
                              int64_t numel, float *out, int64_t chunk_elems,
                              al_error *err);

/* The typed path over whole typed tensors (for tests and callers holding mappings):
 * AL_ERR_UNSUPPORTED where the method or configuration has none. */
al_status al_merge_tensor_typed(const al_merge_method *m, const al_merge_params *p,
                                const al_merge_src *base, const al_merge_src *models, int n,
                                int64_t numel, void *out, al_dtype out_dtype,
                                int64_t chunk_elems, al_error *err);

#endif
