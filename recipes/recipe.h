/* recipes/recipe.h: mergekit-compatible YAML recipes -> validated in-memory recipe.
 *
 * Parsing reads no model. It checks everything that can be checked from the text
 * alone (method name, keys, parameter names and types, required parameters,
 * layer ranges, dtypes, model-reference syntax, names of intermediate merges) so
 * that mistakes surface before any download or mmap (recipes.md §5, issue #527).
 *
 * Every node keeps its 1-based line:column. Errors come back as
 * "FILE:LINE:COL: message" in the al_error; warnings are collected, never printed,
 * as "FILE:LINE:COL: warning: message" in al_recipe.warnings.
 *
 * Semantics mirror mergekit v0.1.4 (recipes.md §1); alloy extensions are marked. */
#ifndef AL_RECIPE_H
#define AL_RECIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/dtype.h"
#include "../core/status.h"

/* ---- small shared types ------------------------------------------------------ */

typedef struct { int line, col; } al_pos;           /* 1-based; 0:0 = unknown */

typedef struct { char **items; size_t n, cap; } al_strvec;
void al_strvec_free(al_strvec *v);                   /* frees items, zeroes v; NULL ok */

/* ---- parameter values (recipes.md §1.4) --------------------------------------- */

typedef enum {
    AL_PV_NUMBER,       /* 0.5, 1e-5, "0.5" (pydantic coerces numeric strings) */
    AL_PV_BOOL,         /* true/false/yes/no/on/off (PyYAML 1.1 booleans); num = 0/1 */
    AL_PV_STRING,       /* any other scalar */
    AL_PV_LIST,         /* [a, b, ...] of scalars: a gradient when `numeric`, else steps */
    AL_PV_CONDITIONAL   /* [{filter, value}, ...] (a single {filter, value} mapping too) */
} al_pv_kind;

typedef struct al_param_value al_param_value;
typedef struct al_param_cond al_param_cond;

struct al_param_value {
    al_pv_kind kind;
    al_pos pos;
    double num;             /* NUMBER, BOOL */
    char *str;              /* STRING; raw text for NUMBER/BOOL */
    size_t n;               /* LIST items or CONDITIONAL entries */
    al_param_value *items;  /* LIST: scalars only */
    bool numeric;           /* LIST: every item NUMBER or BOOL (interpolated gradient) */
    al_param_cond *conds;   /* CONDITIONAL */
};

struct al_param_cond {
    char *filter;           /* NULL: no filter (matches everything) */
    al_pos pos;             /* the entry */
    al_param_value value;   /* scalar or LIST; never CONDITIONAL */
};

typedef struct {
    char *name;
    al_pos pos;             /* the key */
    al_param_value value;
} al_param;

typedef struct {
    al_param *items;
    size_t n;
    al_pos pos;             /* the `parameters:` key; 0:0 if absent */
} al_params;

const al_param *al_params_find(const al_params *ps, const char *name);   /* NULL ps ok */

/* The scalar a setting evaluates to. */
typedef struct {
    al_pv_kind kind;        /* NUMBER, BOOL or STRING */
    double num;
    const char *str;        /* points into the recipe */
} al_pscalar;

/* mergekit's evaluate_setting(tensor_name, setting, t):
 *  - scalar: itself;
 *  - numeric list v[0..n-1] (a gradient): s = t(n-1), i0 = floor(s),
 *    i1 = min(n-1, i0+1), f = s - i0, value = (1-f) v[i0] + f v[i1];
 *  - other list: v[floor(t(n-1))] (step function);
 *  - conditional list: the FIRST entry whose filter is absent, "*", or a plain
 *    substring of tensor_name is evaluated (its value may be a gradient); if none
 *    matches, *found = false, meaning "fall through to the next precedence level".
 * t is the caller's: layer/(L-1) within the slice (1 for a one-layer slice) for
 * block tensors, and 0 for pre/post weights (embeddings, final norm, lm_head)
 * (recipes.md §1.4). t outside [0,1] is clamped. Never fails. */
void al_pv_eval(const al_param_value *v, const char *tensor_name, double t,
                al_pscalar *out, bool *found);

/* Numeric form of the above: BOOL gives 0/1; a STRING result is AL_ERR_RECIPE
 * (naming the value's line:col). tensor_name may be NULL for "no tensor" (then
 * only unfiltered / "*" entries match). */
al_status al_param_resolve(const al_param *p, const char *tensor_name, double t,
                           double *out, bool *found, al_error *err);

/* Precedence chain (recipes.md §1.4, mergekit ConfigReader.parameter), highest first:
 *   source (slices[*].sources[*].parameters, or models[*].parameters),
 *   slice (slices[*].parameters), module (modules[*].parameters), top (parameters).
 * Any level may be NULL. Global method parameters skip the source level, exactly as
 * mergekit reads them with model=None. The first level whose setting evaluates to a
 * value wins; a conditional with no matching filter falls through. When nothing is
 * found, *found = false and the caller applies the method default
 * (al_method_param(...)->def_num). *where (nullable) receives the winning setting. */
typedef struct {
    const al_params *source, *slice, *module, *top;
} al_param_chain;

al_status al_param_chain_resolve(const al_param_chain *c, const char *name, bool global,
                                 const char *tensor_name, double t, double *out,
                                 bool *found, const al_param **where, al_error *err);

/* ---- method schema (recipes/methods.c) --------------------------------------- */

typedef enum { AL_PT_NUMBER, AL_PT_INT, AL_PT_BOOL, AL_PT_ENUM } al_ptype;
typedef enum { AL_SCOPE_GLOBAL, AL_SCOPE_PER_MODEL } al_pscope;
typedef enum { AL_BASE_FORBIDDEN, AL_BASE_OPTIONAL, AL_BASE_REQUIRED } al_base_rule;

typedef struct {
    const char *name;
    al_ptype type;
    al_pscope scope;
    bool required;          /* per-model: waived for the base model (mergekit) */
    bool has_default;
    double def_num;         /* NUMBER/INT/BOOL default */
    const char *def_str;    /* ENUM default */
    const char *choices;    /* ENUM: "a|b" */
    bool has_min, has_max;
    double min, max;        /* inclusive bounds checked on every literal number */
    bool extension;         /* alloy's, not mergekit's */
    const char *doc;
} al_param_def;

typedef struct {
    const char *name;
    const char *aliases;    /* "|"-separated, or NULL */
    al_base_rule base;
    int min_inputs, max_inputs;   /* distinct inputs incl. the base (models: syntax); 0 = any */
    int exact_nonbase;            /* exact count of non-base models, 0 = not checked */
    bool base_is_input;           /* base takes part as an ordinary input (linear, karcher) */
    const al_param_def *params;
    size_t n_params;
    const char *doc;
} al_method;

const al_method *al_method_find(const char *name);       /* by name or alias; NULL if unknown */
const al_method *al_method_at(size_t i);                 /* NULL past the end */
size_t al_method_count(void);
const al_param_def *al_method_param(const al_method *m, const char *name);
/* Legacy parameter names older mergekit accepted (e.g. slerp's embed_slerp): warned. */
bool al_method_param_is_legacy(const al_method *m, const char *name);
/* Methods that exist only on unmerged mergekit branches (cabs, lrp, ...). */
bool al_method_is_branch_only(const char *name);

/* ---- model references (recipes.md §1.2) ----------------------------------------
 * String form path_or_repo[@revision][+lora[@revision]], or the dict form
 * {model: ..., lora: ..., override_architecture: ...}. */
typedef struct {
    char *text;                 /* as written (dict form: "model+lora") */
    char *path;                 /* path or org/repo */
    char *revision;             /* NULL if none */
    char *lora;                 /* NULL if none; resolution rejects it */
    char *lora_revision;
    char *override_architecture;
    int doc_index;              /* >= 0: names the output of that document (mergekit-multi) */
    al_pos pos;
} al_model_ref;

/* Parse the string form; AL_ERR_RECIPE on "a+b+c", two '@', empty parts. */
al_status al_model_ref_parse(const char *text, al_model_ref *out, al_error *err);
void al_model_ref_clear(al_model_ref *r);      /* frees members; NULL ok */

/* ---- recipe structure --------------------------------------------------------- */

typedef struct {
    al_model_ref model;
    al_params params;
    al_pos pos;
} al_input_model;                               /* models: entry */

typedef struct {
    al_model_ref model;
    int64_t layer_start, layer_end;             /* half-open [start, end) */
    al_params params;
    al_pos pos, range_pos;
} al_source;

typedef struct {
    al_source *sources;
    size_t n_sources;
    al_model_ref *base_model;                   /* per-slice override, or NULL */
    al_params params;
    bool has_residual_weight;                   /* declared by mergekit, never read */
    double residual_weight;
    al_pos pos;
} al_slice;

typedef struct {
    char *name;
    al_input_model *models;  size_t n_models;  bool has_models;
    al_slice *slices;        size_t n_slices;  bool has_slices;
    al_params params;
    al_pos pos;
} al_module;

typedef enum {
    AL_TOKSRC_ABSENT = 0, AL_TOKSRC_UNION, AL_TOKSRC_BASE, AL_TOKSRC_MODEL
} al_toksrc_kind;

typedef enum { AL_TOKEMB_MODEL, AL_TOKEMB_MODEL_TOKEN, AL_TOKEMB_ZERO } al_tokemb_kind;

typedef struct {
    char *token;
    al_tokemb_kind kind;
    al_model_ref model;          /* MODEL, MODEL_TOKEN */
    char *source_token;          /* MODEL_TOKEN by string, or NULL */
    int64_t source_token_id;     /* MODEL_TOKEN by id, or -1 */
    bool force;
    al_pos pos;
} al_token_override;

typedef struct {
    al_toksrc_kind source;       /* default UNION */
    al_model_ref model;          /* source == MODEL */
    al_token_override *tokens;
    size_t n_tokens;
    int64_t pad_to_multiple_of;  /* 0 = none */
    al_pos pos;
} al_tokenizer_config;

typedef struct {
    char *name;                  /* mergekit-multi `name:`, or NULL */
    char *merge_method;
    const al_method *method;
    al_model_ref *base_model;    /* NULL if absent */
    al_input_model *models;  size_t n_models;  bool has_models;
    al_slice *slices;        size_t n_slices;  bool has_slices;
    al_module *modules;      size_t n_modules; bool has_modules;
    al_params params;
    bool has_dtype, has_out_dtype;
    al_dtype dtype, out_dtype;
    al_toksrc_kind tokenizer_source;             /* legacy key */
    al_model_ref tokenizer_source_model;         /* when AL_TOKSRC_MODEL */
    al_tokenizer_config *tokenizer;              /* `tokenizer:` block or NULL */
    char *chat_template;                         /* NULL if absent */
    /* alloy extension: LiNeS-style per-layer scaling block `lines: {alpha, beta}`. */
    bool has_lines;
    bool lines_alpha_auto;       /* alpha: auto (LiNeS multi-task rule, needs a first pass) */
    double lines_alpha, lines_beta;
    /* alloy extension: `edits:` after the merge (last document only): a facts file path
     * (edits_file) or an inline facts mapping / list, read by the edit stage */
    bool has_edits;
    char *edits_file;            /* NULL when inline */
    al_pos edits_pos;
    al_pos pos, method_pos, name_pos, dtype_pos, out_dtype_pos,
           tokenizer_source_pos, chat_template_pos, lines_pos;
} al_recipe_doc;

typedef struct {
    char *filename;              /* as given, used in every message */
    al_recipe_doc *docs;
    size_t n_docs;
    al_strvec warnings;          /* "FILE:L:C: warning: ..." */
} al_recipe;

/* ---- parsing ------------------------------------------------------------------ */

#define AL_RECIPE_MAX_NODES   1000000u   /* YAML nodes, aliases counted expanded */
#define AL_RECIPE_MAX_DEPTH   64
#define AL_RECIPE_MAX_BYTES   (16u << 20)

typedef struct {
    bool strict;            /* unknown keys / parameter names / legacy syntax are errors */
    size_t max_nodes;       /* 0: AL_RECIPE_MAX_NODES */
    al_strvec *errors;      /* optional: receives every error, not only the first */
} al_recipe_opts;

/* Parse and validate. On success *out owns everything (al_recipe_free). On failure
 * *out is NULL and err holds the first error: AL_ERR_FORMAT for YAML problems
 * (libyaml's problem mark), AL_ERR_RECIPE for schema problems, AL_ERR_IO,
 * AL_ERR_NOMEM. opts may be NULL. */
al_status al_recipe_parse_file(const char *path, const al_recipe_opts *opts,
                               al_recipe **out, al_error *err);
al_status al_recipe_parse_string(const char *text, size_t len, const char *filename,
                                 const al_recipe_opts *opts, al_recipe **out, al_error *err);
void al_recipe_free(al_recipe *r);

/* Visit every parameter setting of a document: where it is set, and for whom. */
typedef enum { AL_PLEVEL_SOURCE, AL_PLEVEL_SLICE, AL_PLEVEL_MODULE, AL_PLEVEL_TOP } al_plevel;
typedef void (*al_param_visit_fn)(void *ud, const al_param *p, al_plevel level,
                                  const al_model_ref *model /* SOURCE level only */,
                                  const char *module /* NULL outside modules */,
                                  long slice_index /* -1 if not in a slice */);
void al_recipe_doc_visit_params(const al_recipe_doc *d, al_param_visit_fn fn, void *ud);

/* ---- model resolution (recipes/resolve.c) -------------------------------------
 * Order: (1) a reference naming an earlier document's output goes to `lookup`;
 * (2) an existing local path (file or directory) is used as is; (3) org/model[@rev]
 * is looked up as models_dir/org/model, then in the Hugging Face cache
 * ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub) as
 * models--org--model/snapshots/<rev>/, <rev> being the @revision (a commit
 * directory, or a branch/tag resolved through refs/<name>), default refs/main, or
 * the only snapshot when there are no refs. A `model+lora` reference is
 * AL_ERR_UNSUPPORTED unless opts.allow_lora: then the model part is resolved, and
 * al_model_resolve_lora finds the adapter the same way.
 * Failure is AL_ERR_NOTFOUND, listing every place looked. *path_out: al_free it. */
typedef al_status (*al_output_lookup_fn)(void *ud, int doc_index, const char *name,
                                         char **path_out, al_error *err);
typedef struct {
    const char *models_dir;         /* nullable */
    al_output_lookup_fn lookup;     /* nullable: intermediates then fail */
    void *lookup_ud;
    bool allow_lora;                /* the caller applies ref->lora itself */
} al_resolve_opts;

al_status al_model_resolve(const al_model_ref *ref, const char *models_dir,
                           char **path_out, al_error *err);
al_status al_model_resolve_ex(const al_model_ref *ref, const al_resolve_opts *opts,
                              char **path_out, al_error *err);
/* The adapter of a `model+lora` reference (ref->lora non-NULL). */
al_status al_model_resolve_lora(const al_model_ref *ref, const al_resolve_opts *opts,
                                char **path_out, al_error *err);

#endif
