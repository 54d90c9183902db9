/* merge/vocab.h: the output vocabulary of a tokenizer-aware merge (recipes.md §1.5).
 *
 * mergekit's `tokenizer_source: union | base | MODEL` and `tokenizer: {source, tokens,
 * pad_to_multiple_of}`: build the output vocabulary, then describe, for every model and
 * every output row of its embedding (and untied head), where that row comes from:
 *   - the model's own row for the same token string;
 *   - an explicit `tokens:` entry (another model's row for the token, a given model's
 *     token or id, or zero), which wins over the model's own row only with force;
 *   - otherwise, for a model that lacks the token: the only model that has it; zero if
 *     none has it; the base's row if the base has it; else the mean of the rows of the
 *     models that have it;
 *   - rows added by pad_to_multiple_of: the mean of the model's real rows.
 * The vocabulary is the source tokenizer's tokens (ids 0..rows-1, where rows is that
 * model's embedding row count), then, for a union, every other model's tokens it lacks
 * in model order, then `tokens:` entries still missing. */
#ifndef AL_MERGE_VOCAB_H
#define AL_MERGE_VOCAB_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/status.h"
#include "../io/tokenizer.h"

typedef enum { AL_VF_OWN, AL_VF_FROM, AL_VF_ZERO, AL_VF_MEAN, AL_VF_PAD } al_vfill_kind;

typedef struct {
    uint8_t kind;       /* al_vfill_kind */
    int16_t model;      /* AL_VF_FROM: the model whose row is taken */
    int32_t row;        /* AL_VF_OWN / AL_VF_FROM: the source row */
} al_vfill;

/* One `tokens:` entry, with its model references already resolved to model indices. */
typedef struct {
    const char *token;
    int kind;           /* 0 model, 1 model_token, 2 zero (al_tokemb_kind order) */
    int model;          /* kinds 0 and 1 */
    const char *source_token;
    int64_t source_token_id;
    bool force;
} al_vtoken;

typedef struct {
    size_t n;           /* tokens */
    size_t rows;        /* n rounded up to pad_to_multiple_of */
    char **tokens;      /* [n] output id -> token string */
    bool *added;        /* [n] an added token in the model it comes from */
    int n_models;
    int source;         /* model whose tokenizer.json is the starting point */
    al_vfill *fill;     /* [n_models * rows] */
    size_t n_zero;      /* (token, model) rows filled with zeros because no model had the token */
} al_vocab_plan;

/* toks[i] / rows[i]: model i's tokenizer and embedding row count; base: model index or
 * -1; source: model index whose tokenizer starts the vocabulary; union_: add every
 * model's tokens. */
al_status al_vocab_plan_build(al_vocab_plan *p, const al_tokenizer *const *toks, const int64_t *rows, int n_models,
                              int base, int source, bool union_, const al_vtoken *cfg, size_t n_cfg,
                              int64_t pad_to_multiple_of, al_error *err);
void al_vocab_plan_free(al_vocab_plan *p);

static inline const al_vfill *al_vocab_fill(const al_vocab_plan *p, int model, size_t row)
{
    return &p->fill[(size_t)model * p->rows + row];
}

/* Write dst_dir/tokenizer.json: the source's tokenizer.json with ids >= the kept count
 * removed and the plan's new tokens appended (to the vocabulary, and as added tokens). */
al_status al_vocab_write_tokenizer(const al_vocab_plan *p, const char *src_dir, const char *dst_dir,
                                   size_t kept_from_source, al_error *err);

#endif
