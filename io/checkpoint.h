/* io/checkpoint.h: one interface over every checkpoint format alloy reads and writes.
 *
 * Reading. al_ckpt_open takes
 *   - a .safetensors file,
 *   - an .h5/.hdf5 file (alloy's native layout, or the Keras/HF-TF legacy layout,
 *     whose names are mapped to PyTorch names as transformers does), or
 *   - a Hugging Face directory: model.safetensors.index.json (sharded),
 *     model.safetensors, alloy's model.h5, or tf_model.h5, in that order.
 * Input files are opened read-only and never written. safetensors files are mmapped,
 * so a tensor in the caller's dtype is a zero-copy view.
 * Tied embeddings: when config.json says tie_word_embeddings (default true for
 * GPT-2-family model_type) and the checkpoint has the input embedding but no
 * lm_head.weight, lm_head.weight is listed as an alias sharing the embedding's data.
 *
 * Writing. al_writer streams: declare every tensor, begin, then write each tensor's
 * bytes in declaration order (in one or several calls), then commit. Output goes to a
 * temporary sibling path and is renamed into place only by a successful commit, so a
 * failed or killed run never leaves output that looks complete. Writing onto one of
 * the inputs is refused (al_writer_opts.inputs). */
#ifndef AL_CHECKPOINT_H
#define AL_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/comm.h"
#include "../core/status.h"
#include "../core/tensor.h"

typedef enum { AL_FMT_AUTO = 0, AL_FMT_SAFETENSORS, AL_FMT_HDF5 } al_format;

const char *al_format_name(al_format f);

typedef struct {
    const char *name;       /* canonical (PyTorch-style) name */
    al_dtype dtype;         /* dtype as stored in the file */
    int ndim;
    int64_t shape[AL_MAX_DIMS];
    uint64_t nbytes;        /* bytes as stored */
    bool tied;              /* an alias (tied lm_head) sharing another tensor's data */
} al_tensor_info;

typedef struct al_ckpt al_ckpt;

/* Open a checkpoint. On success *out is owned by the caller: free with al_ckpt_close. */
al_status al_ckpt_open(al_ckpt **out, const char *path, al_error *err);
void al_ckpt_close(al_ckpt *c);               /* accepts NULL */

size_t al_ckpt_count(const al_ckpt *c);
/* Tensors are listed in file order (sharded: by shard, then offset). Valid until close. */
const al_tensor_info *al_ckpt_info(const al_ckpt *c, size_t i);
/* Index of `name`, or -1. O(1) average. */
long al_ckpt_find(const al_ckpt *c, const char *name);
/* Format of the (first) tensor file; path given to open; HF directory or NULL. */
al_format al_ckpt_format(const al_ckpt *c);
const char *al_ckpt_path(const al_ckpt *c);
const char *al_ckpt_dir(const al_ckpt *c);
/* Number of tensor files (shards) and the path of each. */
size_t al_ckpt_file_count(const al_ckpt *c);
const char *al_ckpt_file_path(const al_ckpt *c, size_t i);
/* String metadata (safetensors __metadata__ of the first file, HDF5 root attrs). */
size_t al_ckpt_meta_count(const al_ckpt *c);
void al_ckpt_meta(const al_ckpt *c, size_t i, const char **key, const char **value);
/* Sum of tensor bytes (aliases not counted) and of element counts. */
uint64_t al_ckpt_total_bytes(const al_ckpt *c);
uint64_t al_ckpt_param_count(const al_ckpt *c);

/* Zero-copy view of tensor i in its stored dtype, valid until close. Returns
 * AL_ERR_UNSUPPORTED when the format has no mapping (HDF5): use al_ckpt_read then. */
al_status al_ckpt_view(al_ckpt *c, size_t i, al_view *out, al_error *err);

/* Apply a PEFT LoRA adapter (io/lora.h) to this checkpoint: from now on, reads of the
 * tensors it targets return W + s B A (or its replacement), and views of them are
 * refused (AL_ERR_UNSUPPORTED) so that callers read. Every target must exist with the
 * matching shape; the error names the adapter and the tensor. Once per checkpoint. */
al_status al_ckpt_attach_lora(al_ckpt *c, const char *adapter_dir, al_error *err);

/* Read tensor i's pages into memory now and map them (MADV_POPULATE_READ, or a read
 * of every page on kernels without it); blocks until done. For a read-ahead thread:
 * the threads that compute then find the data in place. Does nothing for unmapped
 * formats. */
void al_ckpt_prefetch(al_ckpt *c, size_t i);

/* Copy rows [row0, row0+nrows) along dim 0 of tensor i into dst, converted to
 * dst_dtype (a float dtype, or the stored dtype for a raw copy). Rank-0 tensors have
 * one row. dst holds nrows * row_numel elements of dst_dtype. Thread-safe for
 * distinct dst buffers. */
al_status al_ckpt_read(al_ckpt *c, size_t i, int64_t row0, int64_t nrows,
                       void *dst, al_dtype dst_dtype, al_error *err);

/* ---- writing ---- */

typedef struct {
    al_format format;          /* AL_FMT_SAFETENSORS (default when AUTO) or AL_FMT_HDF5 */
    bool dir;                  /* write an HF-style directory (else a single file at path) */
    uint64_t shard_size;       /* dir mode, safetensors: max bytes per shard; 0 = one file */
    int compress;              /* HDF5: deflate level 0..9 (0 = contiguous, no filter) */
    bool force;                /* replace an existing output path */
    const char *const *inputs; /* paths the output must not coincide with; NULL-terminated */
    /* Distributed writing (nullable = one process): every rank declares the same
     * tensors; begin gives each shard to one rank (balanced by bytes, the same on every
     * rank), a rank writes only the tensors of its shards (al_writer_owns), in order,
     * and commit is collective: rank 0 adds the index and renames the output into
     * place once every rank has finished its shards. open, begin and commit are
     * agreement points (core/comm.h). The output directory may be on a filesystem
     * all ranks share, or node-local (each rank's `path` on its own disk, or a
     * different path per rank): then each node's directory holds the shards its
     * ranks wrote, rank 0's also the index and whatever the caller adds, and copying
     * them together gives the whole checkpoint. */
    const al_comm *comm;
} al_writer_opts;

typedef struct al_writer al_writer;

al_status al_writer_open(al_writer **out, const char *path, const al_writer_opts *opts,
                         al_error *err);
/* Declare the next tensor. The name is copied. */
al_status al_writer_add(al_writer *w, const char *name, al_dtype dtype, int ndim,
                        const int64_t *shape, al_error *err);
/* Lay out shards and create the temporary output. After this, no more add. */
al_status al_writer_begin(al_writer *w, al_error *err);
/* Append nbytes of data of the current tensor (declaration order). A call may span
 * the end of one tensor and the start of the next only if nbytes is a whole number
 * of elements of each. */
al_status al_writer_write(al_writer *w, const void *data, uint64_t nbytes, al_error *err);
/* After begin: whether this rank writes tensor i (always true with one process). */
bool al_writer_owns(const al_writer *w, size_t i);
/* Directory of the temporary output (dir mode) where callers may add config.json,
 * tokenizer files and so on before commit; NULL in file mode. */
const char *al_writer_tmpdir(const al_writer *w);
/* Finish: every declared byte must have been written. Flush, fsync, rename into place. */
al_status al_writer_commit(al_writer *w, al_error *err);
/* The collective form: `local` is this rank's status so far (an error skips the
 * commit on every rank, which all return the lowest failing rank's error). */
al_status al_writer_finish(al_writer *w, al_status local, al_error *err);
/* Free; removes the temporary output unless committed. Accepts NULL. */
void al_writer_free(al_writer *w);

/* Declare, begin and write every tensor of `in` (tied aliases left implicit) into the
 * freshly opened writer w, in file order: bytes copied unchanged, except the n tensors
 * named in rep_names, whose values are given in F32 (rep_data[i], the tensor's full
 * size) and rounded once to the tensor's stored dtype. The caller then adds files to
 * al_writer_tmpdir(w) and commits. A replacement that names no tensor is an error. */
al_status al_ckpt_copy_with(al_ckpt *in, al_writer *w, const char *const *rep_names, const float *const *rep_data,
                            size_t n, al_error *err);

/* Remove a file or directory tree (no symlinks followed); for alloy's own temporaries. */
void al_remove_tree(const char *path);

/* Copy the non-weight files of an HF directory (config.json, tokenizer files,
 * generation_config.json, ...) from src_dir into dst_dir. Missing files are skipped. */
al_status al_copy_aux_files(const char *src_dir, const char *dst_dir, al_error *err);

#endif
