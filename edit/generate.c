/* edit/generate.c: greedy and top-k continuation (see generate.h). */
#include "generate.h"

#include <math.h>

#include "../core/alloc.h"
#include "../core/rng.h"

/* The next token from one row of logits. */
static int32_t pick(const float *logits, int V, int top_k, double temperature, double u, int *best)
{
    if (top_k <= 0) {
        int32_t a = 0;
        for (int v = 1; v < V; v++) if (logits[v] > logits[a]) a = v;
        return a;
    }
    int K = top_k < V ? top_k : V, have = 0;   /* best[0..have) by logit, descending */
    for (int v = 0; v < V; v++) {
        int j;
        if (have < K) j = have++;
        else if (logits[v] > logits[best[K - 1]]) j = K - 1;
        else continue;
        best[j] = v;
        for (; j > 0 && logits[best[j]] > logits[best[j - 1]]; j--) { int t = best[j]; best[j] = best[j - 1]; best[j - 1] = t; }
    }
    double z = 0, acc = 0;
    for (int j = 0; j < K; j++) z += exp((logits[best[j]] - logits[best[0]]) / temperature);
    for (int j = 0; j < K; j++) {
        acc += exp((logits[best[j]] - logits[best[0]]) / temperature) / z;
        if (u < acc) return best[j];
    }
    return best[K - 1];
}

al_status al_generate(const al_model *m, al_model_ws *ws, int32_t *ids, size_t *n, int max_new, int top_k,
                      double temperature, uint64_t seed, uint64_t stream, int32_t stop_id, al_error *err)
{
    const int V = al_model_cfg(m)->vocab_size;
    float *logits = al_malloc((size_t)V * sizeof *logits);
    int *best = al_malloc((size_t)(top_k > 0 ? top_k : 1) * sizeof *best);
    al_status s = AL_OK;
    if (!logits || !best) { s = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
    size_t fed = 0;
    for (int step = 0; step < max_new; step++) {
        al_forward_args a = {0};
        a.tokens = ids + fed;
        a.B = 1;
        a.T = (int)(*n - fed);
        a.append = fed > 0;
        a.last_logits = logits;
        if ((s = al_model_forward(ws, &a, err)) != AL_OK) goto done;
        fed = *n;
        int32_t next = pick(logits, V, top_k, temperature, al_rng_unit(seed, stream, (uint64_t)step), best);
        ids[(*n)++] = next;
        if (stop_id >= 0 && next == stop_id) break;
    }
done:
    al_free(logits);
    al_free(best);
    return s;
}
