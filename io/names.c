/* io/names.c: block index of a tensor name (see names.h). */
#include "names.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* Most specific first: "decoder.block." before "block.", "transformer.h." before "h.". */
static const struct { const char *prefix; int stack; } k_prefixes[] = {
    {"encoder.block.", 0}, {"decoder.block.", 1}, {"encoder.layers.", 0}, {"decoder.layers.", 1},
    {"model.layers.", 0}, {"transformer.h.", 0}, {"gpt_neox.layers.", 0}, {"encoder.layer.", 0},
    {"decoder.layer.", 1}, {"resblocks.", 0}, {"transformer.layers.", 0}, {"layers.", 0}, {"blk.", 0},
    {"blocks.", 0}, {"h.", 0},
};

/* The prefix must start the name or follow a '.', and be followed by digits and '.'. */
static bool match_at(const char *name, const char *pre, size_t *ds, size_t *dl)
{
    size_t pl = strlen(pre);
    for (const char *p = strstr(name, pre); p; p = strstr(p + 1, pre)) {
        if (p != name && p[-1] != '.') continue;
        const char *d = p + pl;
        size_t k = 0;
        while (isdigit((unsigned char)d[k])) k++;
        if (k && k < 10 && d[k] == '.') {
            *ds = (size_t)(d - name);
            *dl = k;
            return true;
        }
    }
    return false;
}

bool al_name_is_embedding(const char *name)
{
    static const char *const emb[] = {"embed_tokens", "wte", "word_embeddings", "embed_in",
                                      "tok_embeddings", "token_embd", "embed_out", "lm_head",
                                      "shared.weight"};
    for (size_t i = 0; i < sizeof emb / sizeof emb[0]; i++)
        if (strstr(name, emb[i])) return true;
    return strcmp(name, "output.weight") == 0;
}

void al_layer_of(const char *name, al_layer_info *out)
{
    memset(out, 0, sizeof *out);
    out->index = -1;
    size_t ds, dl;
    for (size_t i = 0; i < sizeof k_prefixes / sizeof k_prefixes[0]; i++) {
        if (match_at(name, k_prefixes[i].prefix, &ds, &dl)) {
            out->kind = AL_LAYER_BLOCK;
            out->stack = k_prefixes[i].stack;
            out->num_start = ds;
            out->num_len = dl;
            sscanf(name + ds, "%ld", &out->index);
            return;
        }
    }
    /* fallback: first ".N." component */
    for (const char *p = strchr(name, '.'); p; p = strchr(p + 1, '.')) {
        size_t k = 0;
        while (isdigit((unsigned char)p[1 + k])) k++;
        if (k && k < 10 && p[1 + k] == '.') {
            out->kind = AL_LAYER_BLOCK;
            out->num_start = (size_t)(p + 1 - name);
            out->num_len = k;
            out->guessed = true;
            sscanf(p + 1, "%ld", &out->index);
            return;
        }
    }
    /* Outside the blocks: embeddings (and position embeddings) come before, the
     * rest (final norm, head, pooler) after. */
    bool pre = strstr(name, "embed") || strstr(name, "wte") || strstr(name, "wpe") ||
               strstr(name, "token_embd") || strcmp(name, "shared.weight") == 0;
    out->kind = pre && !strstr(name, "lm_head") && !strstr(name, "embed_out") ? AL_LAYER_PRE : AL_LAYER_POST;
}

bool al_layer_rename(const char *name, const al_layer_info *li, long new_index, char *buf, size_t n)
{
    if (li->kind != AL_LAYER_BLOCK) return false;
    int w = snprintf(buf, n, "%.*s%ld%s", (int)li->num_start, name, new_index,
                     name + li->num_start + li->num_len);
    return w >= 0 && (size_t)w < n;
}
