/* merge/pipeline.h: run a parsed recipe, streaming tensor by tensor.
 *
 * A job is one recipe document turned into a list of output tensors, each with its
 * input tensors (checkpoint + name), its layer position t and the parameters
 * resolved for it (recipes.md §1.3-1.4):
 *   - `models:` is one slice over every layer of every model; a base_model that is not
 *     among the models is added as a source without parameters;
 *   - `slices:` renumber layers consecutively; embeddings come from the first slice's
 *     sources and the final norm/head from the last slice's;
 *   - t = j/(L-1) for layer j of an L-layer slice (1 for a one-layer slice) and 0 for
 *     tensors outside the blocks.
 * Running a job streams each output tensor in chunks of rows through the method's
 * statistics passes and apply pass (merge/method.h) into an al_writer, so memory is
 * a few chunks per input, never a model. Inputs are mmapped: a chunk of an F32 input
 * is read in place; other dtypes are converted into a staging buffer.
 *
 * Compute dtype: every method computes in F32 inputs with double accumulations and
 * rounds once. The output dtype is out_dtype, else dtype, else each tensor's stored
 * dtype in the reference (base) model. With compat_dtype, inputs are first rounded to
 * the recipe's `dtype` as mergekit does when it loads them. */
#ifndef AL_MERGE_PIPELINE_H
#define AL_MERGE_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/comm.h"
#include "../core/status.h"
#include "../core/tensor.h"
#include "../io/checkpoint.h"
#include "../recipes/recipe.h"

typedef struct {
    size_t tensors_done, tensors_total;
    uint64_t bytes_done, bytes_total;   /* output bytes */
    const char *tensor;                 /* the tensor just finished */
} al_merge_progress;

typedef struct {
    const char *models_dir;       /* --models DIR for org/model references; nullable */
    uint64_t seed;                /* --seed, used when the recipe sets none */
    uint64_t shard_size;          /* max bytes per output shard; 0 = default 5 GB */
    al_format out_format;         /* AUTO = safetensors */
    bool strict;                  /* warnings that change results become errors */
    bool force;                   /* replace an existing output */
    bool compat_dtype;            /* round inputs to the recipe dtype, as mergekit does */
    bool allow_crimes;            /* allow inputs whose config.json model_type differ */
    bool dry_run;                 /* plan only; intermediate outputs stand in by their first input */
    const char *recipe_text;      /* embedded in the model card and alloy_recipe.yaml; nullable */
    size_t recipe_len;
    void (*progress)(void *ud, const al_merge_progress *p);
    void *progress_ud;
    al_strvec *warnings;          /* receives "warning: ..." lines; nullable */
    const char *work_dir;         /* where earlier documents' outputs are (set by al_merge_run) */
    double *lines_alpha_out;      /* receives LiNeS alpha when the recipe says alpha: auto; nullable */
    /* Distributed run (nullable = one process): every rank calls with the same recipe
     * and options; output shards are split among ranks (io/checkpoint.h al_writer),
     * whole-model statistics (TIES trim_scope: model, LiNeS alpha: auto) are summed
     * over ranks exactly, rank 0 writes config, tokenizer and model card. The output
     * is byte-identical to a one-process run. */
    const al_comm *comm;
    /* Test hook (ALLOY_TEST_FAIL_TENSOR): writing this output tensor fails as if an
     * input tensor were missing, on whichever rank writes it. */
    const char *fail_tensor;
} al_merge_opts;

/* One input of an output tensor. */
typedef struct {
    const char *model;            /* the reference as written in the recipe */
    const char *tensor;           /* input tensor name (source layer numbering) */
    bool is_base;
} al_job_input;

typedef struct {
    const char *name;             /* output tensor name */
    al_dtype dtype;               /* output dtype */
    int ndim;
    int64_t shape[AL_MAX_DIMS];
    double t;                     /* layer position used for gradients */
    bool copy;                    /* non-float tensor: copied from the first input */
    size_t n_inputs;
    const al_job_input *inputs;
    /* resolved parameters as "name=value" strings, for --dry-run */
    size_t n_params;
    const char *const *params;
} al_job_tensor;

typedef struct al_merge_job al_merge_job;

/* Build the job for document `doc` of recipe r. Opens (mmaps) the input checkpoints;
 * reads no tensor data. */
al_status al_merge_job_build(const al_recipe *r, size_t doc, const al_merge_opts *o,
                             al_merge_job **out, al_error *err);
size_t al_merge_job_count(const al_merge_job *j);
const al_job_tensor *al_merge_job_tensor(const al_merge_job *j, size_t i);
uint64_t al_merge_job_out_bytes(const al_merge_job *j);
long al_merge_job_out_layers(const al_merge_job *j);   /* -1 when unchanged (models:) */
/* LiNeS alpha computed by the last run when the recipe says alpha: auto (else 0). */
double al_merge_job_lines_alpha(const al_merge_job *j);
/* Write the merged checkpoint directory at out_path (atomic). */
al_status al_merge_job_run(al_merge_job *j, const char *out_path, al_error *err);
void al_merge_job_free(al_merge_job *j);

/* Run every document in order; documents with a `name:` before the last are written
 * to a hidden work directory beside out_path and removed at the end. */
al_status al_merge_run(const al_recipe *r, const char *out_path, const al_merge_opts *o,
                       al_error *err);

#endif
