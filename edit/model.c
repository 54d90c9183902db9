/* edit/model.c: loading, forward with KV cache and hooks, loss and activation backward.
 *
 * Block math (rome.md §8.2):
 *   GPT-2 (HF GPT2LMHeadModel): h0 = wte[id] + wpe[pos]
 *     a  = h + c_proj(MHA(split(ln_1(h) W_attn + b_attn)))          Conv1D, y = xW + b
 *     h' = a + c_proj_mlp(gelu_new(ln_2(a) W_fc + b_fc))
 *     logits = ln_f(h_L) wte^T (tied) or lm_head
 *   Llama family (HF LlamaForCausalLM): h0 = embed[id]
 *     a  = h + o_proj(Attn(RoPE(q_proj x), RoPE(k_proj x), v_proj x)), x = rms_1(h)
 *     h' = a + down_proj(silu(gate_proj z) * up_proj z), z = rms_2(a)
 *     logits = norm(h_L) lm_head^T
 * The hook adds delta to the MLP output of block l, i.e. to the residual h_{l+1}. */
#include "model.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../core/alloc.h"
#include "../core/dtype.h"
#include "../io/checkpoint.h"
#include "layers.h"

/* ---- weights --------------------------------------------------------------------- */

typedef struct {
    const void *data;       /* stored data (mapping or the model's slab), NULL if absent */
    al_dtype dtype;
    float *f32;             /* F32 data when resident (zero-copy view or converted) */
    int64_t numel;
} wt;

enum {  /* per-layer weights; GPT-2 uses QKV/QKVB (fused c_attn), Llama Q/K/V */
    W_LN1, W_LN1B, W_LN2, W_LN2B, W_QKV, W_QKVB, W_Q, W_K, W_V, W_QB, W_KB, W_VB,
    W_O, W_OB, W_FC, W_FCB, W_UP, W_PROJ, W_PROJB, W_COUNT
};
enum { G_EMB, G_POS, G_NF, G_NFB, G_HEAD, G_COUNT };

struct al_model {
    al_model_config cfg;
    al_model_opts opts;
    al_ckpt *ck;
    wt *lw;                 /* [n_layer][W_COUNT] */
    wt gw[G_COUNT];
    float *inv_freq;        /* [head_dim/2] RoPE inverse frequencies (Llama) */
    void *slab;             /* converted / copied tensors */
    int64_t scratch_numel;  /* per-layer conversion scratch a workspace needs */
    float **down_own;       /* [n_layer] private F32 down projections (edits), or NULL */
};

const al_model_config *al_model_cfg(const al_model *m) { return &m->cfg; }

void al_model_free(al_model *m)
{
    if (!m) return;
    al_ckpt_close(m->ck);
    if (m->down_own)
        for (int l = 0; l < m->cfg.n_layer; l++) al_free(m->down_own[l]);
    al_free(m->down_own);
    al_free(m->lw);
    al_free(m->inv_freq);
    al_free(m->slab);
    al_free(m);
}

/* ---- config.json ----------------------------------------------------------------- */

typedef struct { json_t *root; const char *path; al_error *err; } cfgctx;

/* Integer key > 0 (or >= 0 with allow0). Missing or null: *out = def, or an error
 * when def < 0 (required). */
static al_status cfg_int(cfgctx *c, const char *key, long def, int *out)
{
    json_t *v = json_object_get(c->root, key);
    if (!v || json_is_null(v)) {
        if (def < 0) return al_errorf(c->err, AL_ERR_FORMAT, "%s: missing key '%s'", c->path, key);
        *out = (int)def;
        return AL_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > (1 << 30))
        return al_errorf(c->err, AL_ERR_FORMAT, "%s: key '%s' must be a positive integer",
                         c->path, key);
    *out = (int)json_integer_value(v);
    return AL_OK;
}

static al_status cfg_num(cfgctx *c, json_t *obj, const char *key, double def, bool required,
                         double *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        if (required) return al_errorf(c->err, AL_ERR_FORMAT, "%s: missing key '%s'", c->path, key);
        *out = def;
        return AL_OK;
    }
    if (!json_is_number(v) || !(json_number_value(v) > 0))
        return al_errorf(c->err, AL_ERR_FORMAT, "%s: key '%s' must be a positive number",
                         c->path, key);
    *out = json_number_value(v);
    return AL_OK;
}

static const char *cfg_str(cfgctx *c, const char *key, const char *def)
{
    json_t *v = json_object_get(c->root, key);
    return json_is_string(v) ? json_string_value(v) : def;
}

static bool cfg_bool(cfgctx *c, const char *key, bool def)
{
    json_t *v = json_object_get(c->root, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

#define TRY(x) do { if ((st = (x)) != AL_OK) goto fail; } while (0)

static al_status parse_gpt2(cfgctx *c, al_model_config *g)
{
    al_status st = AL_OK;
    double eps;
    g->arch = AL_ARCH_GPT2;
    TRY(cfg_int(c, "n_embd", -1, &g->n_embd));
    TRY(cfg_int(c, "n_layer", -1, &g->n_layer));
    TRY(cfg_int(c, "n_head", -1, &g->n_head));
    TRY(cfg_int(c, "vocab_size", -1, &g->vocab_size));
    TRY(cfg_int(c, "n_positions", -1, &g->n_ctx));
    TRY(cfg_int(c, "n_inner", 4L * g->n_embd, &g->n_inner));
    TRY(cfg_num(c, c->root, "layer_norm_epsilon", 1e-5, false, &eps));
    g->norm_eps = (float)eps;
    const char *act = cfg_str(c, "activation_function", "gelu_new");
    if (strcmp(act, "gelu") == 0) g->gelu_exact = true;
    else if (strcmp(act, "gelu_new") == 0 || strcmp(act, "gelu_pytorch_tanh") == 0 ||
             strcmp(act, "gelu_fast") == 0) g->gelu_exact = false;
    else return al_errorf(c->err, AL_ERR_UNSUPPORTED,
                          "%s: activation_function '%s' is not supported (gelu_new, gelu)",
                          c->path, act);
    if (!cfg_bool(c, "scale_attn_weights", true) ||
        cfg_bool(c, "scale_attn_by_inverse_layer_idx", false))
        return al_errorf(c->err, AL_ERR_UNSUPPORTED, "%s: GPT-2 attention scaling variants "
                         "(scale_attn_weights false, scale_attn_by_inverse_layer_idx) are not supported",
                         c->path);
    if (g->n_embd % g->n_head)
        return al_errorf(c->err, AL_ERR_FORMAT, "%s: n_embd %d is not a multiple of n_head %d",
                         c->path, g->n_embd, g->n_head);
    g->n_kv_head = g->n_head;
    g->head_dim = g->n_embd / g->n_head;
    g->tied = cfg_bool(c, "tie_word_embeddings", true);
fail:
    return st;
}

static al_status parse_llama(cfgctx *c, al_model_config *g)
{
    al_status st = AL_OK;
    double eps;
    g->arch = AL_ARCH_LLAMA;
    TRY(cfg_int(c, "hidden_size", -1, &g->n_embd));
    TRY(cfg_int(c, "intermediate_size", -1, &g->n_inner));
    TRY(cfg_int(c, "num_hidden_layers", -1, &g->n_layer));
    TRY(cfg_int(c, "num_attention_heads", -1, &g->n_head));
    TRY(cfg_int(c, "vocab_size", -1, &g->vocab_size));
    TRY(cfg_int(c, "max_position_embeddings", -1, &g->n_ctx));
    TRY(cfg_int(c, "num_key_value_heads", g->n_head, &g->n_kv_head));
    TRY(cfg_int(c, "head_dim", g->n_embd / g->n_head, &g->head_dim));
    TRY(cfg_num(c, c->root, "rms_norm_eps", 1e-6, false, &eps));
    g->norm_eps = (float)eps;
    TRY(cfg_num(c, c->root, "rope_theta", 10000.0, false, &g->rope_theta));
    const char *act = cfg_str(c, "hidden_act", "silu");
    if (strcmp(act, "silu") != 0)
        return al_errorf(c->err, AL_ERR_UNSUPPORTED, "%s: hidden_act '%s' is not supported (silu)",
                         c->path, act);
    if (cfg_bool(c, "mlp_bias", false))
        return al_errorf(c->err, AL_ERR_UNSUPPORTED, "%s: mlp_bias true is not supported", c->path);
    if (g->n_head % g->n_kv_head || g->head_dim % 2)
        return al_errorf(c->err, AL_ERR_FORMAT, "%s: num_attention_heads %d must be a multiple of "
                         "num_key_value_heads %d and head_dim %d even", c->path, g->n_head,
                         g->n_kv_head, g->head_dim);
    g->tied = cfg_bool(c, "tie_word_embeddings", false);
    /* sliding window: Mistral always, Qwen2 when use_sliding_window */
    json_t *sw = json_object_get(c->root, "sliding_window");
    bool use_sw = strcmp(g->model_type, "qwen2") == 0 ? cfg_bool(c, "use_sliding_window", false) : true;
    if (use_sw && json_is_integer(sw) && json_integer_value(sw) > 0 && json_integer_value(sw) < g->n_ctx)
        g->n_ctx = (int)json_integer_value(sw);
    json_t *rs = json_object_get(c->root, "rope_scaling");
    g->rope_scaling = AL_ROPE_NONE;
    if (rs && !json_is_null(rs)) {
        if (!json_is_object(rs))
            return al_errorf(c->err, AL_ERR_FORMAT, "%s: rope_scaling must be an object or null", c->path);
        json_t *ty = json_object_get(rs, "rope_type");
        if (!json_is_string(ty)) ty = json_object_get(rs, "type");
        if (!json_is_string(ty))
            return al_errorf(c->err, AL_ERR_FORMAT, "%s: missing key 'rope_scaling.rope_type'", c->path);
        const char *t = json_string_value(ty);
        if (strcmp(t, "default") == 0) return AL_OK;
        if (strcmp(t, "linear") == 0) g->rope_scaling = AL_ROPE_LINEAR;
        else if (strcmp(t, "dynamic") == 0) g->rope_scaling = AL_ROPE_DYNAMIC;
        else if (strcmp(t, "llama3") == 0) g->rope_scaling = AL_ROPE_LLAMA3;
        else return al_errorf(c->err, AL_ERR_UNSUPPORTED, "%s: rope_scaling type '%s' is not "
                              "supported (linear, dynamic, llama3)", c->path, t);
        TRY(cfg_num(c, rs, "factor", 0, true, &g->rope_factor));
        if (g->rope_scaling == AL_ROPE_LLAMA3) {
            double omp;
            TRY(cfg_num(c, rs, "low_freq_factor", 0, true, &g->rope_low_freq_factor));
            TRY(cfg_num(c, rs, "high_freq_factor", 0, true, &g->rope_high_freq_factor));
            TRY(cfg_num(c, rs, "original_max_position_embeddings", 0, true, &omp));
            g->rope_original_max_pos = (int)omp;
            if (g->rope_high_freq_factor <= g->rope_low_freq_factor)
                return al_errorf(c->err, AL_ERR_FORMAT, "%s: rope_scaling high_freq_factor must "
                                 "exceed low_freq_factor", c->path);
        }
    }
fail:
    return st;
}

static al_status read_config(al_model_config *g, const char *dir, al_error *err)
{
    al_status st = AL_OK;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        FILE *f = fopen(path, "r");
        if (!f) return al_errorf(err, AL_ERR_NOTFOUND, "%s: cannot open (a model directory needs "
                                 "config.json)", path);
        fclose(f);
        return al_errorf(err, AL_ERR_FORMAT, "%s:%d:%d: invalid JSON: %s", path, je.line,
                         je.column, je.text);
    }
    cfgctx c = { root, path, err };
    if (!json_is_object(root)) { st = al_errorf(err, AL_ERR_FORMAT, "%s: not a JSON object", path); goto fail; }
    const char *mt = cfg_str(&c, "model_type", NULL);
    if (!mt) { st = al_errorf(err, AL_ERR_FORMAT, "%s: missing key 'model_type'", path); goto fail; }
    snprintf(g->model_type, sizeof g->model_type, "%s", mt);
    if (strcmp(mt, "gpt2") == 0) st = parse_gpt2(&c, g);
    else if (strcmp(mt, "llama") == 0 || strcmp(mt, "mistral") == 0 || strcmp(mt, "qwen2") == 0)
        st = parse_llama(&c, g);
    else st = al_errorf(err, AL_ERR_UNSUPPORTED, "%s: model_type '%s' is not supported by the "
                        "runtime (gpt2, llama, mistral, qwen2)", path, mt);
fail:
    json_decref(root);
    return st;
}

/* RoPE inverse frequencies, as transformers' rope_init_fn (default, linear, llama3). */
static void rope_init(float *inv, const al_model_config *g)
{
    int D = g->head_dim;
    for (int i = 0; i < D / 2; i++) {
        double f = 1.0 / pow(g->rope_theta, (2.0 * i) / D);
        if (g->rope_scaling == AL_ROPE_LINEAR) f /= g->rope_factor;
        if (g->rope_scaling == AL_ROPE_LLAMA3) {
            double old = g->rope_original_max_pos, lo = g->rope_low_freq_factor,
                   hi = g->rope_high_freq_factor, fac = g->rope_factor;
            double wl = 2.0 * M_PI / f;
            if (wl > old / lo) f /= fac;                       /* low frequencies: scaled */
            else if (wl >= old / hi) {                         /* medium: interpolated */
                double sm = (old / wl - lo) / (hi - lo);
                f = (1.0 - sm) * f / fac + sm * f;
            }
        }
        inv[i] = (float)f;
    }
}

/* ---- tensor lookup --------------------------------------------------------------- */

typedef struct { wt *dst; char name[192]; int ndim; int64_t shape[2]; bool optional; } wreq;

static void req(wreq *r, int *n, wt *dst, bool optional, int ndim, int64_t d0, int64_t d1,
                const char *fmt, ...) __attribute__((format(printf, 8, 9)));
static void req(wreq *r, int *n, wt *dst, bool optional, int ndim, int64_t d0, int64_t d1,
                const char *fmt, ...)
{
    wreq *q = &r[(*n)++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q->name, sizeof q->name, fmt, ap);
    va_end(ap);
    q->dst = dst;
    q->optional = optional;
    q->ndim = ndim;
    q->shape[0] = d0;
    q->shape[1] = d1;
}

static int build_requests(al_model *m, wreq *r, const char *pre)
{
    const al_model_config *g = &m->cfg;
    int n = 0;
    int64_t C = g->n_embd, M = g->n_inner, V = g->vocab_size, QD = (int64_t)g->n_head * g->head_dim,
            KD = (int64_t)g->n_kv_head * g->head_dim;
    for (int l = 0; l < g->n_layer; l++) {
        wt *w = m->lw + (size_t)l * W_COUNT;
        if (g->arch == AL_ARCH_GPT2) {
            req(r, &n, &w[W_LN1], false, 1, C, 0, "%sh.%d.ln_1.weight", pre, l);
            req(r, &n, &w[W_LN1B], false, 1, C, 0, "%sh.%d.ln_1.bias", pre, l);
            req(r, &n, &w[W_QKV], false, 2, C, 3 * C, "%sh.%d.attn.c_attn.weight", pre, l);
            req(r, &n, &w[W_QKVB], false, 1, 3 * C, 0, "%sh.%d.attn.c_attn.bias", pre, l);
            req(r, &n, &w[W_O], false, 2, C, C, "%sh.%d.attn.c_proj.weight", pre, l);
            req(r, &n, &w[W_OB], false, 1, C, 0, "%sh.%d.attn.c_proj.bias", pre, l);
            req(r, &n, &w[W_LN2], false, 1, C, 0, "%sh.%d.ln_2.weight", pre, l);
            req(r, &n, &w[W_LN2B], false, 1, C, 0, "%sh.%d.ln_2.bias", pre, l);
            req(r, &n, &w[W_FC], false, 2, C, M, "%sh.%d.mlp.c_fc.weight", pre, l);
            req(r, &n, &w[W_FCB], false, 1, M, 0, "%sh.%d.mlp.c_fc.bias", pre, l);
            req(r, &n, &w[W_PROJ], false, 2, M, C, "%sh.%d.mlp.c_proj.weight", pre, l);
            req(r, &n, &w[W_PROJB], false, 1, C, 0, "%sh.%d.mlp.c_proj.bias", pre, l);
        } else {
            const char *p = "model.layers";
            req(r, &n, &w[W_LN1], false, 1, C, 0, "%s.%d.input_layernorm.weight", p, l);
            req(r, &n, &w[W_Q], false, 2, QD, C, "%s.%d.self_attn.q_proj.weight", p, l);
            req(r, &n, &w[W_K], false, 2, KD, C, "%s.%d.self_attn.k_proj.weight", p, l);
            req(r, &n, &w[W_V], false, 2, KD, C, "%s.%d.self_attn.v_proj.weight", p, l);
            req(r, &n, &w[W_QB], true, 1, QD, 0, "%s.%d.self_attn.q_proj.bias", p, l);
            req(r, &n, &w[W_KB], true, 1, KD, 0, "%s.%d.self_attn.k_proj.bias", p, l);
            req(r, &n, &w[W_VB], true, 1, KD, 0, "%s.%d.self_attn.v_proj.bias", p, l);
            req(r, &n, &w[W_O], false, 2, C, QD, "%s.%d.self_attn.o_proj.weight", p, l);
            req(r, &n, &w[W_OB], true, 1, C, 0, "%s.%d.self_attn.o_proj.bias", p, l);
            req(r, &n, &w[W_LN2], false, 1, C, 0, "%s.%d.post_attention_layernorm.weight", p, l);
            req(r, &n, &w[W_FC], false, 2, M, C, "%s.%d.mlp.gate_proj.weight", p, l);
            req(r, &n, &w[W_UP], false, 2, M, C, "%s.%d.mlp.up_proj.weight", p, l);
            req(r, &n, &w[W_PROJ], false, 2, C, M, "%s.%d.mlp.down_proj.weight", p, l);
        }
    }
    if (g->arch == AL_ARCH_GPT2) {
        req(r, &n, &m->gw[G_EMB], false, 2, V, C, "%swte.weight", pre);
        req(r, &n, &m->gw[G_POS], false, 2, g->n_ctx, C, "%swpe.weight", pre);
        req(r, &n, &m->gw[G_NF], false, 1, C, 0, "%sln_f.weight", pre);
        req(r, &n, &m->gw[G_NFB], false, 1, C, 0, "%sln_f.bias", pre);
    } else {
        req(r, &n, &m->gw[G_EMB], false, 2, V, C, "model.embed_tokens.weight");
        req(r, &n, &m->gw[G_NF], false, 1, C, 0, "model.norm.weight");
    }
    if (!g->tied) req(r, &n, &m->gw[G_HEAD], false, 2, V, C, "lm_head.weight");
    return n;
}

/* Which config values a tensor's expected shape comes from, for error messages. */
static const char *shape_hint(const al_model *m, const wreq *q)
{
    bool gpt2 = m->cfg.arch == AL_ARCH_GPT2;
    if (strstr(q->name, "wte.") || strstr(q->name, "embed_tokens") || strstr(q->name, "lm_head"))
        return gpt2 ? "[vocab_size, n_embd]" : "[vocab_size, hidden_size]";
    if (strstr(q->name, "wpe.")) return "[n_positions, n_embd]";
    return gpt2 ? "n_embd, n_head, n_inner" :
                  "hidden_size, intermediate_size, num_attention_heads, num_key_value_heads, head_dim";
}

al_status al_model_open(al_model **out, const char *dir, const al_model_opts *opts, al_error *err)
{
    al_status st = AL_OK;
    al_model *m = NULL;
    wreq *r = NULL;
    long *idx = NULL;
    *out = NULL;
    m = al_calloc(1, sizeof *m);
    if (!m) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    if (opts) m->opts = *opts;
    TRY(read_config(&m->cfg, dir, err));
    al_model_config *g = &m->cfg;
    TRY(al_ckpt_open(&m->ck, dir, err));
    if (!opts) {
        /* Default: convert non-F32 weights to F32 once when that copy fits in
         * AL_MODEL_CONVERT_BUDGET (fastest for the many passes of an edit); beyond it,
         * keep them as stored and convert one layer at a time (a 7B bf16 model would
         * otherwise need 28 GB). */
        uint64_t f32_bytes = 0;
        for (size_t i = 0; i < al_ckpt_count(m->ck); i++) {
            const al_tensor_info *t = al_ckpt_info(m->ck, i);
            int64_t ne;
            if (!t->tied && al_dtype_is_float(t->dtype) && t->dtype != AL_F32 && al_shape_numel(t->ndim, t->shape, &ne))
                f32_bytes += (uint64_t)ne * 4;
        }
        m->opts.per_layer_convert = f32_bytes > AL_MODEL_CONVERT_BUDGET;
    }
    m->lw = al_calloc((size_t)g->n_layer * W_COUNT, sizeof *m->lw);
    r = al_calloc((size_t)g->n_layer * W_COUNT + G_COUNT, sizeof *r);
    idx = al_calloc((size_t)g->n_layer * W_COUNT + G_COUNT, sizeof *idx);
    if (!m->lw || !r || !idx) { st = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto fail; }
    if (g->arch == AL_ARCH_LLAMA) {
        m->inv_freq = al_malloc((size_t)g->head_dim / 2 * sizeof(float));
        if (!m->inv_freq) { st = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto fail; }
        rope_init(m->inv_freq, g);
    }
    /* GPT-2 names: transformer.h.0... (GPT2LMHeadModel) or h.0... (GPT2Model) */
    const char *pre = al_ckpt_find(m->ck, "transformer.wte.weight") >= 0 ? "transformer." : "";
    int nreq = build_requests(m, r, pre);

    /* pass 1: locate, check shapes, decide storage, size the slab */
    uint64_t slab = 0;
    int64_t layer_scratch = 0, cur_layer = -1, cur = 0;
    for (int i = 0; i < nreq; i++) {
        wreq *q = &r[i];
        idx[i] = al_ckpt_find(m->ck, q->name);
        if (idx[i] < 0) {
            if (q->optional) continue;
            st = al_errorf(err, AL_ERR_NOTFOUND, "%s: tensor '%s' not found (model_type %s)",
                           dir, q->name, g->model_type);
            goto fail;
        }
        const al_tensor_info *ti = al_ckpt_info(m->ck, (size_t)idx[i]);
        int64_t want[2] = { q->shape[0], q->shape[1] };
        if (!al_shape_equal(ti->ndim, ti->shape, q->ndim, want)) {
            char a[64], b[64];
            al_shape_str(a, sizeof a, ti->ndim, ti->shape);
            al_shape_str(b, sizeof b, q->ndim, want);
            st = al_errorf(err, AL_ERR_SHAPE, "%s: tensor '%s' has shape %s but config.json "
                           "implies %s (%s)", dir, q->name, a, b, shape_hint(m, q));
            goto fail;
        }
        if (!al_dtype_is_float(ti->dtype)) {
            st = al_errorf(err, AL_ERR_DTYPE, "%s: tensor '%s' has dtype %s, not a float type",
                           dir, q->name, al_dtype_name(ti->dtype));
            goto fail;
        }
        int64_t numel = q->ndim == 1 ? q->shape[0] : q->shape[0] * q->shape[1];
        q->dst->numel = numel;
        q->dst->dtype = ti->dtype;
        al_view v;
        bool mapped = al_ckpt_view(m->ck, (size_t)idx[i], &v, NULL) == AL_OK;
        if (mapped && ti->dtype == AL_F32) {
            q->dst->f32 = v.data;
            q->dst->data = v.data;
            continue;
        }
        bool convert = !m->opts.per_layer_convert || q->ndim == 1 ||
                       q->dst == &m->gw[G_POS];
        if (convert) slab += (uint64_t)numel * 4;
        else if (mapped) q->dst->data = v.data;
        else slab += ti->nbytes;
        slab = (slab + 63) & ~(uint64_t)63;
        if (!convert) {    /* per-layer conversion: the scratch holds one layer or the head */
            uintptr_t d = (uintptr_t)q->dst, lo = (uintptr_t)m->lw,
                      hi = (uintptr_t)(m->lw + (size_t)g->n_layer * W_COUNT);
            int64_t layer = (d >= lo && d < hi) ? (int64_t)((d - lo) / sizeof(wt) / W_COUNT)
                                                : -2 - (int64_t)((d - (uintptr_t)m->gw) / sizeof(wt));
            if (layer != cur_layer) { cur_layer = layer; cur = 0; }
            cur += numel + 16;
            if (cur > layer_scratch) layer_scratch = cur;
        }
    }
    if (g->tied) m->gw[G_HEAD] = m->gw[G_EMB];
    if (m->gw[G_HEAD].f32 == NULL && m->gw[G_HEAD].numel + 16 > layer_scratch)
        layer_scratch = m->gw[G_HEAD].numel + 16;
    m->scratch_numel = layer_scratch;

    /* pass 2: fill the slab */
    if (slab) {
        m->slab = al_malloc_aligned(slab);
        if (!m->slab) { st = al_errorf(err, AL_ERR_NOMEM, "out of memory (%llu bytes of weights)",
                                       (unsigned long long)slab); goto fail; }
    }
    uint64_t off = 0;
    for (int i = 0; i < nreq; i++) {
        wreq *q = &r[i];
        if (idx[i] < 0 || q->dst->f32 || q->dst->data) continue;
        const al_tensor_info *ti = al_ckpt_info(m->ck, (size_t)idx[i]);
        bool convert = !m->opts.per_layer_convert || q->ndim == 1 || q->dst == &m->gw[G_POS];
        void *dst = (char *)m->slab + off;
        TRY(al_ckpt_read(m->ck, (size_t)idx[i], 0, ti->ndim ? ti->shape[0] : 1, dst,
                         convert ? AL_F32 : ti->dtype, err));
        q->dst->data = dst;
        if (convert || ti->dtype == AL_F32) { q->dst->f32 = dst; q->dst->dtype = AL_F32; }
        off += convert ? (uint64_t)q->dst->numel * 4 : ti->nbytes;
        off = (off + 63) & ~(uint64_t)63;
    }
    if (g->tied) m->gw[G_HEAD] = m->gw[G_EMB];
    al_free(r);
    al_free(idx);
    *out = m;
    return AL_OK;
fail:
    al_free(r);
    al_free(idx);
    al_model_free(m);
    return st;
}

al_status al_model_mlp_down_weight(al_model *m, int layer, float **data, int64_t *rows,
                                   int64_t *cols, char *name, size_t name_cap, al_error *err)
{
    const al_model_config *g = &m->cfg;
    if (layer < 0 || layer >= g->n_layer)
        return al_errorf(err, AL_ERR_USAGE, "layer %d out of range (the model has %d layers)",
                         layer, g->n_layer);
    bool gpt2 = g->arch == AL_ARCH_GPT2;
    wt *w = &m->lw[(size_t)layer * W_COUNT + W_PROJ];
    if (!m->down_own) {
        m->down_own = al_calloc((size_t)g->n_layer, sizeof *m->down_own);
        if (!m->down_own) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    }
    if (!m->down_own[layer]) {
        /* first use: a private F32 copy (the stored one may be a read-only mapping,
         * another dtype, or shared by the slab) that later forwards use */
        float *p = al_malloc_aligned((size_t)w->numel * sizeof(float));
        if (!p) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
        if (w->f32) memcpy(p, w->f32, (size_t)w->numel * sizeof(float));
        else al_convert(p, AL_F32, w->data, w->dtype, (size_t)w->numel);
        m->down_own[layer] = p;
        w->f32 = p;
    }
    *data = w->f32;
    *rows = gpt2 ? g->n_inner : g->n_embd;       /* Conv1D [in=M, out=C]; Linear [C, M] */
    *cols = gpt2 ? g->n_embd : g->n_inner;
    if (name) {
        if (gpt2)
            snprintf(name, name_cap, "%sh.%d.mlp.c_proj.weight",
                     al_ckpt_find(m->ck, "transformer.wte.weight") >= 0 ? "transformer." : "", layer);
        else snprintf(name, name_cap, "model.layers.%d.mlp.down_proj.weight", layer);
    }
    return AL_OK;
}

/* ---- workspace ------------------------------------------------------------------- */

typedef struct {
    float *ln1, *ln1_mean, *ln1_rstd, *q, *att, *atty, *mid, *ln2, *ln2_mean, *ln2_rstd,
          *h1, *h3, *key, *kc, *vc;
} layer_acts;

struct al_model_ws {
    const al_model *m;
    int Bc, Sc;                 /* capacity: rows, positions per row */
    int *cached;                /* [Bc] tokens in the KV cache per row */
    /* the last call */
    int B, T, *past, *lens, *pos;   /* past, lens [Bc]; pos [Bc*Sc] absolute positions */
    int hook_layer, n_hook, *hook_b, *hook_t;
    bool have_call;
    float *resid;               /* [(L+1), N, C] residual stream entering each block */
    float *h_clean;             /* [N, C] output of the hooked block before delta */
    layer_acts *la;             /* [L] */
    float *lnf, *lnf_mean, *lnf_rstd;
    float *tmp, *tmp2;          /* [N, max(C, M, QD, KD)] */
    float *d_resid, *d_mid, *d_ln, *d_key, *d_h1, *d_h3, *d_atty, *d_q, *d_k, *d_v,
          *d_kc, *d_vc;
    float *wscratch;            /* per-layer weight conversion */
    void *slab;
};

void al_model_ws_free(al_model_ws *ws)
{
    if (!ws) return;
    al_free(ws->slab);
    al_free(ws->la);
    al_free(ws->cached);
    al_free(ws->past);
    al_free(ws->lens);
    al_free(ws->pos);
    al_free(ws->hook_b);
    al_free(ws->hook_t);
    al_free(ws);
}

const al_model *al_model_ws_model(const al_model_ws *ws) { return ws->m; }

int al_model_ws_cached(const al_model_ws *ws, int b)
{
    return (b >= 0 && b < ws->Bc) ? ws->cached[b] : 0;
}

al_status al_model_ws_new(al_model_ws **out, const al_model *m, int max_batch, int max_seq,
                          al_error *err)
{
    const al_model_config *g = &m->cfg;
    *out = NULL;
    if (max_batch < 1 || max_seq < 1 || max_seq > g->n_ctx)
        return al_errorf(err, AL_ERR_USAGE, "workspace: batch %d x %d positions invalid "
                         "(context is %d)", max_batch, max_seq, g->n_ctx);
    al_model_ws *ws = al_calloc(1, sizeof *ws);
    if (!ws) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    ws->m = m;
    ws->Bc = max_batch;
    ws->Sc = max_seq;
    int L = g->n_layer;
    size_t N = (size_t)max_batch * max_seq, C = (size_t)g->n_embd, M = (size_t)g->n_inner,
           QD = (size_t)g->n_head * g->head_dim, KD = (size_t)g->n_kv_head * g->head_dim,
           H = (size_t)g->n_head, S = (size_t)max_seq, B = (size_t)max_batch;
    size_t W = C > M ? C : M;
    if (QD > W) W = QD;
    if (KD > W) W = KD;
    bool llama = g->arch == AL_ARCH_LLAMA;
    size_t per_layer = N * C * 3 + N * 4 + N * QD * 2 + B * H * S * S + N * M * (llama ? 3 : 2) +
                       B * KD * S * 2;
    size_t total = (size_t)(L + 1) * N * C + N * C + (size_t)L * per_layer + N * C + 2 * N +
                   2 * N * W + N * C * 3 + N * M * 3 + N * QD * 2 + N * KD * 2 + B * KD * S * 2 +
                   (size_t)m->scratch_numel;
    total += 64 * (size_t)(L * 16 + 40);  /* alignment slack */
    ws->cached = al_calloc(B, sizeof(int));
    ws->past = al_calloc(B, sizeof(int));
    ws->lens = al_calloc(B, sizeof(int));
    ws->pos = al_calloc(N, sizeof(int));
    ws->hook_b = al_calloc(N, sizeof(int));
    ws->hook_t = al_calloc(N, sizeof(int));
    ws->la = al_calloc((size_t)L, sizeof *ws->la);
    ws->slab = al_malloc_aligned(total * sizeof(float));
    if (!ws->cached || !ws->past || !ws->lens || !ws->pos || !ws->hook_b || !ws->hook_t ||
        !ws->la || !ws->slab) {
        al_model_ws_free(ws);
        return al_errorf(err, AL_ERR_NOMEM, "out of memory (workspace of %zu floats)", total);
    }
    memset(ws->slab, 0, total * sizeof(float));
    float *p = ws->slab;
#define TAKE(ptr, n) do { (ptr) = p; p += ((n) + 15) & ~(size_t)15; } while (0)
    TAKE(ws->resid, (size_t)(L + 1) * N * C);
    TAKE(ws->h_clean, N * C);
    for (int l = 0; l < L; l++) {
        layer_acts *a = &ws->la[l];
        TAKE(a->ln1, N * C); TAKE(a->ln1_mean, N); TAKE(a->ln1_rstd, N);
        TAKE(a->q, N * QD); TAKE(a->att, B * H * S * S); TAKE(a->atty, N * QD);
        TAKE(a->mid, N * C); TAKE(a->ln2, N * C); TAKE(a->ln2_mean, N); TAKE(a->ln2_rstd, N);
        TAKE(a->h1, N * M); TAKE(a->key, N * M);
        if (llama) TAKE(a->h3, N * M);
        TAKE(a->kc, B * KD * S); TAKE(a->vc, B * KD * S);
    }
    TAKE(ws->lnf, N * C); TAKE(ws->lnf_mean, N); TAKE(ws->lnf_rstd, N);
    TAKE(ws->tmp, N * W); TAKE(ws->tmp2, N * W);
    TAKE(ws->d_resid, N * C); TAKE(ws->d_mid, N * C); TAKE(ws->d_ln, N * C);
    TAKE(ws->d_key, N * M); TAKE(ws->d_h1, N * M); TAKE(ws->d_h3, N * M);
    TAKE(ws->d_atty, N * QD); TAKE(ws->d_q, N * QD); TAKE(ws->d_k, N * KD); TAKE(ws->d_v, N * KD);
    TAKE(ws->d_kc, B * KD * S); TAKE(ws->d_vc, B * KD * S);
    TAKE(ws->wscratch, (size_t)m->scratch_numel);
#undef TAKE
    AL_ASSERT((size_t)(p - (float *)ws->slab) <= total);
    ws->hook_layer = -1;
    *out = ws;
    return AL_OK;
}

/* F32 pointers to the weights of layer l (converted into the scratch when needed). */
static void layer_f32(al_model_ws *ws, int l, const float *w[W_COUNT])
{
    const wt *src = ws->m->lw + (size_t)l * W_COUNT;
    float *s = ws->wscratch;
    for (int i = 0; i < W_COUNT; i++) {
        if (src[i].f32 || !src[i].data) { w[i] = src[i].f32; continue; }
        al_convert(s, AL_F32, src[i].data, src[i].dtype, (size_t)src[i].numel);
        w[i] = s;
        s += src[i].numel + 16;
    }
}

static const float *head_f32(al_model_ws *ws)
{
    const wt *h = &ws->m->gw[G_HEAD];
    if (h->f32) return h->f32;
    al_convert(ws->wscratch, AL_F32, h->data, h->dtype, (size_t)h->numel);
    return ws->wscratch;
}

/* ---- forward --------------------------------------------------------------------- */

static void embed(al_model_ws *ws, const int32_t *tokens)
{
    const al_model *m = ws->m;
    const al_model_config *g = &m->cfg;
    int C = g->n_embd, B = ws->B, T = ws->T;
    const wt *e = &m->gw[G_EMB], *pe = &m->gw[G_POS];
    size_t esz = al_dtype_bits(e->dtype) / 8;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            size_t n = (size_t)b * T + t;
            int32_t id = t < ws->lens[b] ? tokens[n] : 0;
            float *x = ws->resid + n * C;
            if (e->f32) memcpy(x, e->f32 + (size_t)id * C, (size_t)C * sizeof(float));
            else al_convert(x, AL_F32, (const char *)e->data + (size_t)id * C * esz, e->dtype, (size_t)C);
            if (g->arch == AL_ARCH_GPT2) {
                const float *pr = pe->f32 + (size_t)ws->pos[n] * C;
                for (int i = 0; i < C; i++) x[i] += pr[i];
            }
        }
    }
}

/* y [N, OC] = x W (+ b) where "the weight" is one of the block's projections. */
static void proj(const al_model_ws *ws, float *y, const float *x, const float *w, int ldw,
                 const float *bias, int N, int IC, int OC)
{
    al_matmul_forward(y, x, w, ldw, ws->m->cfg.arch == AL_ARCH_GPT2, bias, N, IC, OC,
                      ws->m->opts.naive_matmul);
}

static void proj_back(const al_model_ws *ws, float *dx, const float *dy, const float *w, int ldw,
                      int N, int IC, int OC)
{
    al_matmul_backward_inp(dx, dy, w, ldw, ws->m->cfg.arch == AL_ARCH_GPT2, N, IC, OC,
                           ws->m->opts.naive_matmul);
}

/* The q/k/v weight pointers and their leading dimension for either layout. */
static void qkv_weights(const al_model_config *g, const float *w[W_COUNT], const float **wq,
                        const float **wk, const float **wv, const float **bq, const float **bk,
                        const float **bv, int *ldw)
{
    int C = g->n_embd;
    if (g->arch == AL_ARCH_GPT2) {     /* c_attn [C, 3C]: q | k | v columns */
        *wq = w[W_QKV]; *wk = w[W_QKV] + C; *wv = w[W_QKV] + 2 * C; *ldw = 3 * C;
        *bq = w[W_QKVB]; *bk = w[W_QKVB] + C; *bv = w[W_QKVB] + 2 * C;
    } else {
        *wq = w[W_Q]; *wk = w[W_K]; *wv = w[W_V]; *ldw = C;
        *bq = w[W_QB]; *bk = w[W_KB]; *bv = w[W_VB];
    }
}

static void block_forward(al_model_ws *ws, int l)
{
    const al_model *m = ws->m;
    const al_model_config *g = &m->cfg;
    int B = ws->B, T = ws->T, N = B * T, C = g->n_embd, M = g->n_inner, H = g->n_head,
        HK = g->n_kv_head, D = g->head_dim, QD = H * D, KD = HK * D, S = ws->Sc;
    bool gpt2 = g->arch == AL_ARCH_GPT2;
    layer_acts *a = &ws->la[l];
    const float *w[W_COUNT], *wq, *wk, *wv, *bq, *bk, *bv;
    int ldq;
    layer_f32(ws, l, w);
    qkv_weights(g, w, &wq, &wk, &wv, &bq, &bk, &bv, &ldq);
    float *x = ws->resid + (size_t)l * N * C, *xo = ws->resid + (size_t)(l + 1) * N * C;

    // attention: a = x + o_proj(attn(q, k, v)), norm_1 -> ln1 [N,C]
    if (gpt2) al_layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, x, w[W_LN1], w[W_LN1B], N, C, g->norm_eps);
    else al_rmsnorm_forward(a->ln1, a->ln1_rstd, x, w[W_LN1], N, C, g->norm_eps);
    proj(ws, a->q, a->ln1, wq, ldq, bq, N, C, QD);                  // q [N, H*D]
    proj(ws, ws->tmp, a->ln1, wk, ldq, bk, N, C, KD);               // k [N, HK*D]
    proj(ws, ws->tmp2, a->ln1, wv, ldq, bv, N, C, KD);              // v [N, HK*D]
    if (!gpt2) {
        al_rope_apply(a->q, ws->pos, m->inv_freq, N, H, D, false);
        al_rope_apply(ws->tmp, ws->pos, m->inv_freq, N, HK, D, false);
    }
    for (int b = 0; b < B; b++)                                     // scatter into the cache
        for (int t = 0; t < T; t++)
            for (int kh = 0; kh < HK; kh++) {
                size_t src = ((size_t)b * T + t) * KD + (size_t)kh * D;
                size_t dst = (((size_t)b * HK + kh) * S + ws->past[b] + t) * D;
                memcpy(a->kc + dst, ws->tmp + src, (size_t)D * sizeof(float));
                memcpy(a->vc + dst, ws->tmp2 + src, (size_t)D * sizeof(float));
            }
    al_attention_forward(a->atty, a->att, a->q, a->kc, a->vc, ws->past, B, T, S, H, HK, D);
    proj(ws, ws->tmp, a->atty, w[W_O], gpt2 ? C : QD, w[W_OB], N, QD, C);
    al_residual_forward(a->mid, x, ws->tmp, (long)N * C);

    // MLP: h' = a + proj(act(...)), key = act(...) [N,M]
    if (gpt2) {
        al_layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->mid, w[W_LN2], w[W_LN2B], N, C, g->norm_eps);
        proj(ws, a->h1, a->ln2, w[W_FC], M, w[W_FCB], N, C, M);
        al_gelu_forward(a->key, a->h1, (long)N * M, g->gelu_exact);
        proj(ws, ws->tmp, a->key, w[W_PROJ], C, w[W_PROJB], N, M, C);
    } else {
        al_rmsnorm_forward(a->ln2, a->ln2_rstd, a->mid, w[W_LN2], N, C, g->norm_eps);
        proj(ws, a->h1, a->ln2, w[W_FC], C, NULL, N, C, M);
        proj(ws, a->h3, a->ln2, w[W_UP], C, NULL, N, C, M);
        al_swiglu_forward(a->key, a->h1, a->h3, (long)N * M);
        proj(ws, ws->tmp, a->key, w[W_PROJ], M, NULL, N, M, C);
    }
    al_residual_forward(xo, a->mid, ws->tmp, (long)N * C);
}

static void add_delta(al_model_ws *ws, float *h, const float *delta)
{
    int C = ws->m->cfg.n_embd;
    if (!delta) return;
    for (int i = 0; i < ws->n_hook; i++) {
        float *r = h + ((size_t)ws->hook_b[i] * ws->T + ws->hook_t[i]) * C;
        for (int c = 0; c < C; c++) r[c] += delta[c];
    }
}

static void final_and_logits(al_model_ws *ws, float *logits, float *last_logits)
{
    const al_model_config *g = &ws->m->cfg;
    int B = ws->B, T = ws->T, N = B * T, C = g->n_embd, V = g->vocab_size;
    const float *x = ws->resid + (size_t)g->n_layer * N * C;
    if (g->arch == AL_ARCH_GPT2)
        al_layernorm_forward(ws->lnf, ws->lnf_mean, ws->lnf_rstd, x, ws->m->gw[G_NF].f32,
                             ws->m->gw[G_NFB].f32, N, C, g->norm_eps);
    else al_rmsnorm_forward(ws->lnf, ws->lnf_rstd, x, ws->m->gw[G_NF].f32, N, C, g->norm_eps);
    if (!logits && !last_logits) return;
    const float *head = head_f32(ws);
    bool naive = ws->m->opts.naive_matmul;
    if (logits) al_matmul_forward(logits, ws->lnf, head, C, false, NULL, N, C, V, naive);
    if (last_logits) {
        for (int b = 0; b < B; b++)
            memcpy(ws->tmp + (size_t)b * C, ws->lnf + ((size_t)b * T + ws->lens[b] - 1) * C,
                   (size_t)C * sizeof(float));
        al_matmul_forward(last_logits, ws->tmp, head, C, false, NULL, B, C, V, naive);
    }
}

al_status al_model_forward(al_model_ws *ws, const al_forward_args *a, al_error *err)
{
    const al_model_config *g = &ws->m->cfg;
    int B = a->B, T = a->T, C = g->n_embd, M = g->n_inner, L = g->n_layer;
    if (B < 1 || T < 1 || B > ws->Bc || T > ws->Sc || !a->tokens)
        return al_errorf(err, AL_ERR_USAGE, "forward: batch %d x %d tokens does not fit the "
                         "workspace (%d x %d)", B, T, ws->Bc, ws->Sc);
    for (int b = 0; b < B; b++) {
        int len = a->lens ? a->lens[b] : T, past = a->append ? ws->cached[b] : 0;
        if (len < 1 || len > T)
            return al_errorf(err, AL_ERR_USAGE, "forward: row %d length %d not in 1..%d", b, len, T);
        if (past + len > g->n_ctx)
            return al_errorf(err, AL_ERR_USAGE, "forward: row %d has %d tokens (%d cached + %d new), "
                             "longer than the context of %d positions", b, past + len, past, len, g->n_ctx);
        if (past + T > ws->Sc)
            return al_errorf(err, AL_ERR_USAGE, "forward: row %d needs %d positions, the workspace "
                             "holds %d", b, past + T, ws->Sc);
        for (int t = 0; t < len; t++) {
            int32_t id = a->tokens[(size_t)b * T + t];
            if (id < 0 || id >= g->vocab_size)
                return al_errorf(err, AL_ERR_USAGE, "forward: token id %d at row %d position %d "
                                 "outside the vocabulary (%d)", (int)id, b, t, g->vocab_size);
        }
    }
    const al_hook *hk = a->hook && a->hook->layer >= 0 ? a->hook : NULL;
    if (hk) {
        if (hk->layer >= L || hk->n_pos < 0 || hk->n_pos > B * T || (hk->n_pos && (!hk->pos_b || !hk->pos_t)))
            return al_errorf(err, AL_ERR_USAGE, "forward: hook layer %d / %d positions invalid "
                             "(%d layers)", hk->layer, hk->n_pos, L);
        for (int i = 0; i < hk->n_pos; i++) {
            int b = hk->pos_b[i], t = hk->pos_t[i];
            if (b < 0 || b >= B || t < 0 || t >= (a->lens ? a->lens[b] : T))
                return al_errorf(err, AL_ERR_USAGE, "forward: hook position %d (%d, %d) outside "
                                 "the tokens", i, b, t);
        }
    }
    ws->B = B;
    ws->T = T;
    ws->have_call = true;
    for (int b = 0; b < B; b++) {
        ws->lens[b] = a->lens ? a->lens[b] : T;
        ws->past[b] = a->append ? ws->cached[b] : 0;
        for (int t = 0; t < T; t++) {
            int p = ws->past[b] + t;
            ws->pos[(size_t)b * T + t] = p < g->n_ctx ? p : g->n_ctx - 1;   /* padding rows */
        }
    }
    for (int b = B; b < ws->Bc; b++) if (!a->append) ws->cached[b] = 0;
    ws->hook_layer = hk ? hk->layer : -1;
    ws->n_hook = hk ? hk->n_pos : 0;
    for (int i = 0; i < ws->n_hook; i++) { ws->hook_b[i] = hk->pos_b[i]; ws->hook_t[i] = hk->pos_t[i]; }

    embed(ws, a->tokens);
    for (int l = 0; l < L; l++) {
        block_forward(ws, l);
        if (hk && l == hk->layer) {
            int N = B * T;
            float *h = ws->resid + (size_t)(l + 1) * N * C;
            const layer_acts *la = &ws->la[l];
            for (int i = 0; i < hk->n_pos; i++) {
                size_t n = (size_t)hk->pos_b[i] * T + hk->pos_t[i];
                if (hk->key) memcpy(hk->key + (size_t)i * M, la->key + n * M, (size_t)M * sizeof(float));
                if (hk->mlp_out)    /* block_forward left the MLP output [N,C] in tmp */
                    memcpy(hk->mlp_out + (size_t)i * C, ws->tmp + n * C, (size_t)C * sizeof(float));
                if (hk->block_out) memcpy(hk->block_out + (size_t)i * C, h + n * C, (size_t)C * sizeof(float));
            }
            memcpy(ws->h_clean, h, (size_t)N * C * sizeof(float));
            add_delta(ws, h, hk->delta);
            if (a->stop_after_hook) {
                /* the blocks above were not run: nothing cached can be continued */
                for (int b = 0; b < B; b++) ws->cached[b] = 0;
                ws->hook_layer = -1;
                ws->n_hook = 0;
                return AL_OK;
            }
        }
    }
    for (int b = 0; b < B; b++) ws->cached[b] = ws->past[b] + ws->lens[b];
    final_and_logits(ws, a->logits, a->last_logits);
    return AL_OK;
}

al_status al_model_forward_from(al_model_ws *ws, const float *delta, float *logits,
                                float *last_logits, al_error *err)
{
    const al_model_config *g = &ws->m->cfg;
    if (!ws->have_call || ws->hook_layer < 0)
        return al_errorf(err, AL_ERR_USAGE, "forward_from: the last forward had no hook");
    int N = ws->B * ws->T, C = g->n_embd, l = ws->hook_layer;
    float *h = ws->resid + (size_t)(l + 1) * N * C;
    memcpy(h, ws->h_clean, (size_t)N * C * sizeof(float));
    add_delta(ws, h, delta);
    for (int k = l + 1; k < g->n_layer; k++) block_forward(ws, k);
    final_and_logits(ws, logits, last_logits);
    return AL_OK;
}

/* ---- loss and backward ----------------------------------------------------------- */

void al_log_softmax(float *out, const float *z, int V)
{
    double mx = -INFINITY, s = 0.0;
    for (int v = 0; v < V; v++) if (z[v] > mx) mx = z[v];
    for (int v = 0; v < V; v++) s += exp((double)z[v] - mx);
    double lse = mx + log(s);
    for (int v = 0; v < V; v++) out[v] = (float)((double)z[v] - lse);
}

static void block_backward(al_model_ws *ws, int l)
{
    // in: d_resid = dL/d h_{l+1} [N,C]; out: d_resid = dL/d h_l
    const al_model *m = ws->m;
    const al_model_config *g = &m->cfg;
    int B = ws->B, T = ws->T, N = B * T, C = g->n_embd, M = g->n_inner, H = g->n_head,
        HK = g->n_kv_head, D = g->head_dim, QD = H * D, KD = HK * D, S = ws->Sc;
    bool gpt2 = g->arch == AL_ARCH_GPT2;
    layer_acts *a = &ws->la[l];
    const float *w[W_COUNT], *wq, *wk, *wv, *bq, *bk, *bv;
    int ldq;
    layer_f32(ws, l, w);
    qkv_weights(g, w, &wq, &wk, &wv, &bq, &bk, &bv, &ldq);
    const float *x = ws->resid + (size_t)l * N * C;
    size_t NC = (size_t)N * C, NM = (size_t)N * M;

    // MLP: h' = mid + proj(key)  => d_mid = d_h' + norm2'(d_ln2)
    memcpy(ws->d_mid, ws->d_resid, NC * sizeof(float));
    memset(ws->d_key, 0, NM * sizeof(float));
    proj_back(ws, ws->d_key, ws->d_resid, w[W_PROJ], gpt2 ? C : M, N, M, C);
    memset(ws->d_ln, 0, NC * sizeof(float));
    if (gpt2) {
        al_gelu_backward(ws->d_h1, a->h1, ws->d_key, (long)NM, g->gelu_exact);
        proj_back(ws, ws->d_ln, ws->d_h1, w[W_FC], M, N, C, M);
        al_layernorm_backward(ws->d_mid, ws->d_ln, a->mid, w[W_LN2], a->ln2_mean, a->ln2_rstd, N, C);
    } else {
        al_swiglu_backward(ws->d_h1, ws->d_h3, ws->d_key, a->h1, a->h3, (long)NM);
        proj_back(ws, ws->d_ln, ws->d_h1, w[W_FC], C, N, C, M);
        proj_back(ws, ws->d_ln, ws->d_h3, w[W_UP], C, N, C, M);
        al_rmsnorm_backward(ws->d_mid, ws->d_ln, a->mid, w[W_LN2], a->ln2_rstd, N, C);
    }

    // attention: mid = x + o_proj(atty)  => d_x = d_mid + norm1'(dq Wq + dk Wk + dv Wv)
    memset(ws->d_atty, 0, (size_t)N * QD * sizeof(float));
    proj_back(ws, ws->d_atty, ws->d_mid, w[W_O], gpt2 ? C : QD, N, QD, C);
    for (int b = 0; b < B; b++)            /* zero this call's rows of dk/dv */
        for (int kh = 0; kh < HK; kh++) {
            size_t o = (((size_t)b * HK + kh) * S + ws->past[b]) * D;
            memset(ws->d_kc + o, 0, (size_t)T * D * sizeof(float));
            memset(ws->d_vc + o, 0, (size_t)T * D * sizeof(float));
        }
    al_attention_backward(ws->d_q, ws->d_kc, ws->d_vc, ws->d_atty, a->att, a->q, a->kc, a->vc,
                          ws->past, B, T, S, H, HK, D);
    for (int b = 0; b < B; b++)            /* gather dk/dv back to [N, HK*D] */
        for (int t = 0; t < T; t++)
            for (int kh = 0; kh < HK; kh++) {
                size_t dst = ((size_t)b * T + t) * KD + (size_t)kh * D;
                size_t src = (((size_t)b * HK + kh) * S + ws->past[b] + t) * D;
                memcpy(ws->d_k + dst, ws->d_kc + src, (size_t)D * sizeof(float));
                memcpy(ws->d_v + dst, ws->d_vc + src, (size_t)D * sizeof(float));
            }
    if (!gpt2) {                           /* RoPE^-1 */
        al_rope_apply(ws->d_q, ws->pos, m->inv_freq, N, H, D, true);
        al_rope_apply(ws->d_k, ws->pos, m->inv_freq, N, HK, D, true);
    }
    memset(ws->d_ln, 0, NC * sizeof(float));
    proj_back(ws, ws->d_ln, ws->d_q, wq, ldq, N, C, QD);
    proj_back(ws, ws->d_ln, ws->d_k, wk, ldq, N, C, KD);
    proj_back(ws, ws->d_ln, ws->d_v, wv, ldq, N, C, KD);
    memcpy(ws->d_resid, ws->d_mid, NC * sizeof(float));
    if (gpt2) al_layernorm_backward(ws->d_resid, ws->d_ln, x, w[W_LN1], a->ln1_mean, a->ln1_rstd, N, C);
    else al_rmsnorm_backward(ws->d_resid, ws->d_ln, x, w[W_LN1], a->ln1_rstd, N, C);
}

static bool in_call(const al_model_ws *ws, int b, int t)
{
    return b >= 0 && b < ws->B && t >= 0 && t < ws->lens[b];
}

al_status al_model_loss(al_model_ws *ws, const al_loss_spec *sp, double *loss, float *d_delta,
                        al_error *err)
{
    al_status st = AL_OK;
    const al_model_config *g = &ws->m->cfg;
    int C = g->n_embd, V = g->vocab_size, N = ws->B * ws->T, L = g->n_layer;
    float *xs = NULL, *z = NULL;
    if (!ws->have_call) return al_errorf(err, AL_ERR_USAGE, "loss: no forward has run");
    if (d_delta && ws->hook_layer < 0)
        return al_errorf(err, AL_ERR_USAGE, "loss: a gradient needs a forward with a hook");
    int P = sp->n_nll + sp->n_kl;
    if (sp->n_nll < 0 || sp->n_kl < 0 || P == 0)
        return al_errorf(err, AL_ERR_USAGE, "loss: no NLL or KL positions");
    for (int i = 0; i < P; i++) {
        bool nll = i < sp->n_nll;
        int b = nll ? sp->nll_b[i] : sp->kl_b[i - sp->n_nll], t = nll ? sp->nll_t[i] : sp->kl_t[i - sp->n_nll];
        if (!in_call(ws, b, t))
            return al_errorf(err, AL_ERR_USAGE, "loss: %s position %d (%d, %d) outside the last call",
                             nll ? "NLL" : "KL", nll ? i : i - sp->n_nll, b, t);
        if (nll && (sp->nll_target[i] < 0 || sp->nll_target[i] >= V))
            return al_errorf(err, AL_ERR_USAGE, "loss: target id %d outside the vocabulary", (int)sp->nll_target[i]);
    }
    xs = al_malloc((size_t)P * C * sizeof(float));
    z = al_malloc((size_t)P * V * sizeof(float));
    if (!xs || !z) { st = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
    // logits at the loss rows: z [P,V] = lnf[rows] head^T
    for (int i = 0; i < P; i++) {
        bool nll = i < sp->n_nll;
        int b = nll ? sp->nll_b[i] : sp->kl_b[i - sp->n_nll], t = nll ? sp->nll_t[i] : sp->kl_t[i - sp->n_nll];
        memcpy(xs + (size_t)i * C, ws->lnf + ((size_t)b * ws->T + t) * C, (size_t)C * sizeof(float));
    }
    const float *head = head_f32(ws);
    al_matmul_forward(z, xs, head, C, false, NULL, P, C, V, ws->m->opts.naive_matmul);
    // loss and dL/dz (in place in z)
    double total = 0.0;
    for (int i = 0; i < P; i++) {
        float *zr = z + (size_t)i * V;
        double mx = -INFINITY, s = 0.0;
        for (int v = 0; v < V; v++) if (zr[v] > mx) mx = zr[v];
        for (int v = 0; v < V; v++) s += exp((double)zr[v] - mx);
        double lse = mx + log(s);
        if (i < sp->n_nll) {
            // nll = lse - z[y];  d/dz = (softmax - onehot) / n_nll
            int y = sp->nll_target[i];
            total += (lse - zr[y]) / sp->n_nll;
            for (int v = 0; v < V; v++) zr[v] = (float)(exp((double)zr[v] - lse) / sp->n_nll);
            zr[y] -= (float)(1.0 / sp->n_nll);
        } else {
            // kl = sum p (logp - ref);  d/dz = w/n_kl * p * ((logp - ref) - kl)
            const float *ref = sp->kl_ref_logp + (size_t)(i - sp->n_nll) * V;
            double kl = 0.0, wk = sp->kl_weight / sp->n_kl;
            for (int v = 0; v < V; v++) {
                double lp = (double)zr[v] - lse;
                kl += exp(lp) * (lp - ref[v]);
            }
            total += wk * kl;
            for (int v = 0; v < V; v++) {
                double lp = (double)zr[v] - lse;
                zr[v] = (float)(wk * exp(lp) * ((lp - ref[v]) - kl));
            }
        }
    }
    *loss = total;
    if (!d_delta) goto done;

    // head: d_lnf rows [P,C] = dz head; scatter-add into d_ln [N,C]
    memset(xs, 0, (size_t)P * C * sizeof(float));
    al_matmul_backward_inp(xs, z, head, C, false, P, C, V, ws->m->opts.naive_matmul);
    memset(ws->d_ln, 0, (size_t)N * C * sizeof(float));
    for (int i = 0; i < P; i++) {
        bool nll = i < sp->n_nll;
        int b = nll ? sp->nll_b[i] : sp->kl_b[i - sp->n_nll], t = nll ? sp->nll_t[i] : sp->kl_t[i - sp->n_nll];
        float *d = ws->d_ln + ((size_t)b * ws->T + t) * C;
        for (int c = 0; c < C; c++) d[c] += xs[(size_t)i * C + c];
    }
    // final norm
    const float *hL = ws->resid + (size_t)L * N * C;
    memset(ws->d_resid, 0, (size_t)N * C * sizeof(float));
    if (g->arch == AL_ARCH_GPT2)
        al_layernorm_backward(ws->d_resid, ws->d_ln, hL, ws->m->gw[G_NF].f32, ws->lnf_mean, ws->lnf_rstd, N, C);
    else al_rmsnorm_backward(ws->d_resid, ws->d_ln, hL, ws->m->gw[G_NF].f32, ws->lnf_rstd, N, C);
    for (int l = L - 1; l > ws->hook_layer; l--) block_backward(ws, l);
    // h_{l+1} = h_clean + delta at each hook position => d_delta = sum over them
    memset(d_delta, 0, (size_t)C * sizeof(float));
    for (int i = 0; i < ws->n_hook; i++) {
        const float *d = ws->d_resid + ((size_t)ws->hook_b[i] * ws->T + ws->hook_t[i]) * C;
        for (int c = 0; c < C; c++) d_delta[c] += d[c];
    }
done:
    al_free(xs);
    al_free(z);
    return st;
}
