/* io/lora.h: a PEFT LoRA adapter, applied to a checkpoint's tensors as they are read.
 *
 * LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022)
 * stores, for a weight W of a targeted module, A (r x in) and B (out x r); the adapted
 * weight is W' = W + s B A with s = lora_alpha / r, or lora_alpha / sqrt(r) with
 * rsLoRA (Kalajdzievski 2023, `use_rslora`). Layouts handled:
 *   - Linear (W is out x in):                   rows r0.. of s B A
 *   - fan_in_fan_out (GPT-2 Conv1D, W in x out) and embeddings (W vocab x dim, from
 *     lora_embedding_A r x vocab and lora_embedding_B dim x r): rows of s (B A)^T
 *   - other tensors of the adapter (PEFT's modules_to_save) replace the model's.
 * Refused with a named reason: DoRA, LoRA biases, per-module rank/alpha patterns,
 * adapters saved as pickles (adapter_model.bin), peft types other than LORA.
 * Arithmetic is F32 (the GEMM in OpenBLAS); W is read in its dtype and converted
 * exactly, so the result is W + s B A rounded to F32 once per product. */
#ifndef AL_LORA_H
#define AL_LORA_H

#include <stdint.h>

#include "../core/status.h"
#include "checkpoint.h"

typedef struct al_lora al_lora;

/* dir: a PEFT adapter directory (adapter_config.json + adapter_model.safetensors). */
al_status al_lora_open(al_lora **out, const char *dir, al_error *err);
void al_lora_close(al_lora *l);

size_t al_lora_count(const al_lora *l);
/* Entry i: the model tensor it changes ("model.layers.0.self_attn.q_proj.weight"). */
const char *al_lora_target(const al_lora *l, size_t i);
/* Check entry i against the model tensor's shape (rank 2 for low-rank entries). */
al_status al_lora_check(const al_lora *l, size_t i, const al_tensor_info *target, al_error *err);
/* Rows [r0, r0+nr) of entry i: a replacement reads them into dst (F32); a low-rank
 * entry adds its product to the row_n-wide F32 rows in dst. */
al_status al_lora_rows(const al_lora *l, size_t i, int64_t r0, int64_t nr, int64_t row_n, float *dst,
                       al_error *err);
/* Entry i replaces the model's tensor instead of adding to it. */
int al_lora_replaces(const al_lora *l, size_t i);
const char *al_lora_path(const al_lora *l);

#endif
