/* edit/facts.h: facts files, the one input format of `alloy eval` and `alloy edit`.
 *
 * Accepted (YAML, and so JSON too):
 *   - a mapping with a `facts:` or `edits:` list (other top-level keys are the edit
 *     settings: model, method, hparams, stats, ... read by the edit command);
 *   - a plain list.
 * Each item is either alloy's form
 *     {prompt: "{} plays the sport of" | "LeBron James plays the sport of",
 *      subject: "LeBron James", target_new | target | expect: "football",
 *      target_true: "basketball", alternatives: [...], paraphrase_prompts: [...],
 *      neighborhood_prompts: [...], group: "sports"}
 * or a CounterFact record ({requested_rewrite: {prompt, subject, target_new: {str},
 * target_true: {str}}, paraphrase_prompts, neighborhood_prompts, ...}), or a fact-prompt
 * record ({prompt, target, split, kind}) as in the example models' eval data.
 *
 * A prompt with "{}" gets the subject substituted (every occurrence, as the ROME code
 * does); a full-sentence prompt must contain the subject when one is given. Targets are
 * continuations: they are stored with exactly one leading space (rome.md §4: EasyEdit
 * would add a second one). Every error names FILE:LINE:COL. */
#ifndef AL_EDIT_FACTS_H
#define AL_EDIT_FACTS_H

#include <stddef.h>

#include "../core/status.h"

typedef struct {
    char *prompt;            /* full text, subject filled in */
    char *templ;             /* the prompt with "{}" where the subject goes, or NULL */
    char *subject;           /* NULL when not given */
    char *target_new;        /* expected continuation (eval) / new object (edit), " word" */
    char *target_true;       /* NULL when not given */
    char **alternatives;     /* other candidate continuations, " word" */
    size_t n_alternatives;
    char **paraphrases;
    size_t n_paraphrases;
    char **neighborhood;
    size_t n_neighborhood;
    char *group;             /* for per-group summaries, or NULL */
    int line, col;           /* where the item starts */
} al_fact;

/* Edit settings: the top-level keys beside `edits:` (all optional on the command line's
 * side, which may override them). Numeric hyperparameters are kept as name/value pairs
 * for the edit method to validate. */
typedef struct {
    char *model;              /* model directory */
    char *method;             /* rome | r-rome | memit */
    int *layers;              /* `layer: L` or `layers: [..]` */
    size_t n_layers;
    char **stats;             /* statistics files (.h5 / .npz), one, or one per MEMIT
                                 layer; a "{}" in a single name stands for the layer;
                                 "none" for the identity */
    size_t n_stats;
    char **context_templates; /* explicit templates ("{}" marks the prompt), or NULL */
    size_t n_templates;
    long seed;                /* -1 when not given */
    char *output;             /* output directory */
    char **hp_names;          /* `hparams:` overrides */
    double *hp_values;
    size_t n_hp;
    int line, col;            /* of the settings mapping (for messages) */
} al_edit_settings;

typedef struct {
    char *filename;
    al_fact *items;
    size_t n;
    al_edit_settings settings;
} al_facts;

#define AL_FACTS_MAX 1000000

/* Parse a facts file. On success *out is owned by the caller (al_facts_free). */
al_status al_facts_load(const char *path, al_facts **out, al_error *err);
al_status al_facts_parse(const char *text, size_t len, const char *filename, al_facts **out, al_error *err);
void al_facts_free(al_facts *f);

/* The `edits:` stage of a merge recipe (text of the whole recipe): in its last document,
 * `edits: FILE` loads that facts file, `edits: {settings..., edits: [...]}` or
 * `edits: [...]` is read in place (errors name the recipe's line). *out is NULL when
 * the recipe has no stage. */
al_status al_facts_parse_stage(const char *text, size_t len, const char *filename, al_facts **out, al_error *err);

#endif
