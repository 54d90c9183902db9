/* io/names.h: where a tensor sits in a transformer, from its name.
 *
 * Block ("layer") tensors carry their block index in a known prefix:
 *   GPT-2 "transformer.h.N." / "h.N.", Llama/Mistral/Qwen2/Gemma "model.layers.N.",
 *   GPT-NeoX "gpt_neox.layers.N.", BERT "encoder.layer.N.", CLIP/ViT "resblocks.N.",
 *   Meta/FAIR "layers.N.", GGUF-style "blk.N.", "blocks.N.", Falcon "transformer.h.N.",
 *   T5 "encoder.block.N." / "decoder.block.N." and BART/Whisper "encoder.layers.N." /
 *   "decoder.layers.N." as two stacks (the decoder is stack 1).
 * Anything else with a ".N." component falls back to the first such component
 * (al_layer_info.guessed = true so callers can warn). Tensors outside the blocks are
 * "pre" (embeddings) or "post" (final norm, head), as mergekit splits them. */
#ifndef AL_NAMES_H
#define AL_NAMES_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { AL_LAYER_PRE, AL_LAYER_BLOCK, AL_LAYER_POST } al_layer_kind;

typedef struct {
    al_layer_kind kind;
    int stack;          /* 0, or 1 for the decoder stack of encoder-decoder models (T5, BART) */
    long index;         /* block index within its stack, -1 outside blocks */
    size_t num_start;   /* byte range of the index digits in the name */
    size_t num_len;
    bool guessed;       /* found by the ".N." fallback, not a known prefix */
} al_layer_info;

void al_layer_of(const char *name, al_layer_info *out);

/* Copy `name` into buf with its block index replaced by new_index. false if it does
 * not fit or the name has no block index. */
bool al_layer_rename(const char *name, const al_layer_info *li, long new_index,
                     char *buf, size_t n);

/* Embedding-like 2-D tensors whose first dimension is the vocabulary. */
bool al_name_is_embedding(const char *name);

#endif
