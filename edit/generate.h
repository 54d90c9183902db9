/* edit/generate.h: continue token sequences with the runtime (greedy or top-k). */
#ifndef AL_EDIT_GENERATE_H
#define AL_EDIT_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"
#include "model.h"

/* Extend ids[0..*n) by up to max_new tokens (ids has room for *n + max_new), with a KV
 * cache. top_k <= 0: greedy; otherwise sample among the top_k logits at `temperature`
 * with one uniform draw per step from a counter-based generator keyed by (seed, stream,
 * step), so a seed always gives the same text. Stops after stop_id (when >= 0). ws needs
 * max_batch >= 1 and max_seq >= *n + max_new. */
al_status al_generate(const al_model *m, al_model_ws *ws, int32_t *ids, size_t *n, int max_new, int top_k,
                      double temperature, uint64_t seed, uint64_t stream, int32_t stop_id, al_error *err);

#endif
