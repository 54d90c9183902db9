/* merge/lines.c: LiNeS on one fine-tune (Wang, Dimitriadis et al., "LiNeS: Post-training
 * layer scaling prevents forgetting and enhances model merging", ICLR 2025).
 *
 *   theta = base + s * (ft - base),   s = alpha + beta * l/(L-1) in block l, alpha outside
 *
 * The pipeline computes s for the tensor and passes it as p->lambda. Each element is
 * evaluated in double from the two F32 inputs and rounded once; s = 1 returns the
 * fine-tune and s = 0 the base bit for bit. (The reference code scales an F32 task
 * vector by s rounded to F32.) */
#include <string.h>

#include "../core/alloc.h"
#include "method_internal.h"

typedef struct { double s; } lines_state;

static al_status lines_init(void **out, const al_merge_params *p, int64_t numel, int n, bool has_base,
                            al_merge_plan *plan, al_error *err)
{
    (void)numel;
    if (!has_base || n != 1)
        return al_errorf(err, AL_ERR_RECIPE, "%s: lines needs a base and exactly one fine-tuned model (got %d)",
                         al_tname(p), n);
    lines_state *s = al_calloc(1, sizeof *s);
    if (!s) return al_errorf(err, AL_ERR_NOMEM, "%s: out of memory", al_tname(p));
    s->s = p->lambda;
    plan->n_passes = 0;
    plan->align = 1;
    *out = s;
    return AL_OK;
}

static void lines_stat(void *st, int pass, int64_t off, int64_t len, const float *b, const float *const *x)
{
    (void)st; (void)pass; (void)off; (void)len; (void)b; (void)x;
}

static al_status lines_finish(void *st, int pass, al_error *err)
{
    (void)st; (void)pass; (void)err;
    return AL_OK;
}

typedef struct { double s; const float *b, *x; float *out; } lines_ctx;

AL_HOT static void lines_fn(void *vc, int64_t i0, int64_t i1)
{
    const lines_ctx *c = vc;
    for (int64_t j = i0; j < i1; j++)
        c->out[j] = (float)((double)c->b[j] + c->s * ((double)c->x[j] - (double)c->b[j]));
}

static void lines_apply(void *st, int64_t off, int64_t len, const float *b, const float *const *x, float *out)
{
    (void)off;
    const lines_state *s = st;
    if (s->s == 1.0) { memcpy(out, x[0], (size_t)len * sizeof(float)); return; }
    if (s->s == 0.0) { memcpy(out, b, (size_t)len * sizeof(float)); return; }
    lines_ctx c = { s->s, b, x[0], out };
    al_par_ranges(len, AL_MERGE_BLOCK, lines_fn, &c);
}

static void lines_free(void *st) { al_free(st); }

const al_merge_method al_m_lines = { "lines", 0, lines_init, lines_stat, lines_finish, lines_apply, lines_free };
