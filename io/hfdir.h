/* io/hfdir.h: the non-weight parts of a Hugging Face model directory. */
#ifndef AL_HFDIR_H
#define AL_HFDIR_H

#include <stdbool.h>

#include "../core/dtype.h"
#include "../core/status.h"

typedef struct {
    bool present;              /* config.json exists */
    bool is_causal_lm;         /* architectures[0] is a *LMHeadModel / *ForCausalLM */
    bool tie_word_embeddings;  /* explicit value, else the transformers default for model_type */
    char model_type[64];
    char torch_dtype[32];
    long num_hidden_layers;    /* -1 if absent (n_layer for GPT-2 style configs) */
} al_hf_config;

/* Read dir/config.json. A missing file is not an error (cfg->present = false);
 * invalid JSON is, naming the file, line and column. */
al_status al_hf_config_read(const char *dir, al_hf_config *cfg, al_error *err);

/* Copy config.json and the tokenizer/generation files of an HF directory from src_dir
 * into dst_dir; files that do not exist are skipped. When torch_dtype is non-NULL,
 * config.json's "torch_dtype" is set to it (e.g. "bfloat16"); when num_layers >= 0,
 * the layer count key the config uses (num_hidden_layers or n_layer) is set. */
al_status al_hf_copy_files(const char *src_dir, const char *dst_dir, const char *torch_dtype,
                           long num_layers, al_error *err);

/* The two halves of al_hf_copy_files: config.json alone (rewritten as above), and the
 * tokenizer and generation files alone. */
al_status al_hf_write_config(const char *src_dir, const char *dst_dir, const char *torch_dtype,
                             long num_layers, al_error *err);
/* The same, also setting vocab_size when it is >= 0 (a merged tokenizer). */
al_status al_hf_write_config_vocab(const char *src_dir, const char *dst_dir, const char *torch_dtype,
                                   long num_layers, long vocab_size, al_error *err);
al_status al_hf_copy_tokenizer(const char *src_dir, const char *dst_dir, al_error *err);

/* The chat template a model directory carries: chat_template.jinja, else the
 * "chat_template" of tokenizer_config.json (a string, or the entry named "default" of
 * a list of named templates). *out is NULL when it has none; free it with al_free. */
al_status al_hf_read_chat_template(const char *dir, char **out, al_error *err);

/* Give the tokenizer in dir the chat template tmpl: "chat_template" is set in
 * dir/tokenizer_config.json (the file is created if absent, other keys kept), and
 * dir/chat_template.jinja is rewritten if present, since transformers prefers it. */
al_status al_hf_set_chat_template(const char *dir, const char *tmpl, al_error *err);

/* "float32"/"float16"/"bfloat16"/"float64" for a float dtype (config.json spelling). */
const char *al_dtype_torch_name(al_dtype t);

/* Copy one file byte for byte (O_EXCL on the destination). */
al_status al_copy_file(const char *src, const char *dst, al_error *err);

#endif
