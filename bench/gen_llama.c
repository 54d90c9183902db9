/* bench/gen_llama.c: write a Llama-shaped safetensors checkpoint of random weights,
 * streaming (memory stays at one row buffer), for benchmarks.
 *
 *   gen_llama OUT_DIR --layers L --dim D --ffn F --vocab V [--kv-heads K --heads H]
 *             [--dtype bf16|f16|f32] [--seed S] [--base-seed B --delta X] [--shard-size BYTES]
 *
 * With --base-seed, weights are base(B) + X * noise(S): a "fine-tune" of the base
 * written with the same --base-seed and no --delta, so merges see realistic small
 * task vectors. Values: N(0, 0.02) approximated by a sum of uniforms, from a
 * counter-based hash so any tensor can be regenerated independently. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/alloc.h"
#include "../io/checkpoint.h"

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Approximately N(0,1): sum of 4 uniforms, centred and scaled (Irwin-Hall). */
static float gauss(uint64_t seed, uint64_t tensor, uint64_t i)
{
    uint64_t h = mix(seed * 0x9E3779B97F4A7C15ull ^ mix(tensor + 0x1234567ull) ^ (i * 0xD1B54A32D192ED03ull));
    float s = 0;
    for (int k = 0; k < 4; k++) s += (float)((h >> (16 * k)) & 0xffff) / 65536.0f;
    return (s - 2.0f) * 1.7320508f;
}

/* A PEFT LoRA adapter for the model above: rank R on every layer's q_proj. */
static int gen_lora(const char *out, long L, long D, long R, uint64_t seed)
{
    char p[4096];
    al_error err = {0};
    al_writer *w = NULL;
    float *buf = malloc((size_t)(R * D) * sizeof *buf);
    snprintf(p, sizeof p, "%s", out);                 /* mkdir -p */
    for (char *c = p + 1; *c; c++)
        if (*c == '/') { *c = 0; mkdir(p, 0755); *c = '/'; }
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/adapter_config.json", out);
    FILE *f = fopen(p, "w");
    if (!f || !buf) { fprintf(stderr, "gen_llama: cannot create %s\n", p); free(buf); if (f) fclose(f); return 1; }
    fprintf(f, "{\"peft_type\": \"LORA\", \"r\": %ld, \"lora_alpha\": %ld, \"target_modules\": [\"q_proj\"], "
               "\"bias\": \"none\", \"fan_in_fan_out\": false}\n", R, 2 * R);
    fclose(f);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", out);
    al_writer_opts o = {.format = AL_FMT_SAFETENSORS, .force = true};
    if (al_writer_open(&w, p, &o, &err) != AL_OK) goto fail;
    for (long l = 0; l < L; l++) {
        char n[160];
        int64_t a[2] = { R, D }, b[2] = { D, R };
        snprintf(n, sizeof n, "base_model.model.model.layers.%ld.self_attn.q_proj.lora_A.weight", l);
        if (al_writer_add(w, n, AL_F32, 2, a, &err) != AL_OK) goto fail;
        snprintf(n, sizeof n, "base_model.model.model.layers.%ld.self_attn.q_proj.lora_B.weight", l);
        if (al_writer_add(w, n, AL_F32, 2, b, &err) != AL_OK) goto fail;
    }
    if (al_writer_begin(w, &err) != AL_OK) goto fail;
    for (long k = 0; k < 2 * L; k++) {
        for (long e = 0; e < R * D; e++) buf[e] = 0.01f * gauss(seed, (uint64_t)k, (uint64_t)e);
        if (al_writer_write(w, buf, (uint64_t)(R * D) * 4, &err) != AL_OK) goto fail;
    }
    if (al_writer_commit(w, &err) != AL_OK) goto fail;
    al_writer_free(w);
    free(buf);
    printf("%s: LoRA adapter, rank %ld on %ld q_proj\n", out, R, L);
    return 0;
fail:
    fprintf(stderr, "gen_llama: %s\n", err.msg);
    al_writer_free(w);
    free(buf);
    return 1;
}

int main(int argc, char **argv)
{
    const char *out = NULL;
    long L = 16, D = 2048, F = 5632, V = 32000, H = 32, K = 4;
    uint64_t seed = 1, base_seed = 0, shard = 0;
    long lora = 0;
    double delta = 0;
    al_dtype dt = AL_BF16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "0";
        if (a[0] != '-') { out = a; continue; }
        i++;
        if (!strcmp(a, "--layers")) L = atol(v);
        else if (!strcmp(a, "--dim")) D = atol(v);
        else if (!strcmp(a, "--ffn")) F = atol(v);
        else if (!strcmp(a, "--vocab")) V = atol(v);
        else if (!strcmp(a, "--heads")) H = atol(v);
        else if (!strcmp(a, "--kv-heads")) K = atol(v);
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--base-seed")) base_seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--delta")) delta = atof(v);
        else if (!strcmp(a, "--shard-size")) shard = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--lora")) lora = atol(v);
        else if (!strcmp(a, "--dtype")) { if (!al_dtype_from_user(v, &dt)) { fprintf(stderr, "bad dtype\n"); return 1; } }
        else { fprintf(stderr, "unknown option %s\n", a); return 1; }
    }
    if (!out) { fprintf(stderr, "usage: gen_llama OUT_DIR [options]\n"); return 1; }
    if (lora > 0) return gen_lora(out, L, D, lora, seed);
    long hd = D / H;
    struct { char name[128]; int ndim; int64_t shape[2]; } *t = calloc((size_t)(L * 9 + 3), sizeof *t);
    size_t n = 0;
#define ADD(nd, s0, s1, ...) do { snprintf(t[n].name, sizeof t[n].name, __VA_ARGS__); \
        t[n].ndim = nd; t[n].shape[0] = s0; t[n].shape[1] = s1; n++; } while (0)
    ADD(2, V, D, "model.embed_tokens.weight");
    for (long l = 0; l < L; l++) {
        ADD(1, D, 0, "model.layers.%ld.input_layernorm.weight", l);
        ADD(2, D, D, "model.layers.%ld.self_attn.q_proj.weight", l);
        ADD(2, K * hd, D, "model.layers.%ld.self_attn.k_proj.weight", l);
        ADD(2, K * hd, D, "model.layers.%ld.self_attn.v_proj.weight", l);
        ADD(2, D, D, "model.layers.%ld.self_attn.o_proj.weight", l);
        ADD(1, D, 0, "model.layers.%ld.post_attention_layernorm.weight", l);
        ADD(2, F, D, "model.layers.%ld.mlp.gate_proj.weight", l);
        ADD(2, F, D, "model.layers.%ld.mlp.up_proj.weight", l);
        ADD(2, D, F, "model.layers.%ld.mlp.down_proj.weight", l);
    }
    ADD(1, D, 0, "model.norm.weight");
    ADD(2, V, D, "lm_head.weight");

    al_error err = {0};
    al_writer *w = NULL;
    size_t cap = 1 << 20;
    float *row = NULL;
    void *conv = NULL;
    al_writer_opts o = {.format = AL_FMT_SAFETENSORS, .dir = true, .shard_size = shard, .force = true};
    if (al_writer_open(&w, out, &o, &err) != AL_OK) goto fail;
    uint64_t params = 0;
    for (size_t i = 0; i < n; i++) {
        if (al_writer_add(w, t[i].name, dt, t[i].ndim, t[i].shape, &err) != AL_OK) goto fail;
        params += (uint64_t)t[i].shape[0] * (uint64_t)(t[i].ndim == 2 ? t[i].shape[1] : 1);
    }
    if (al_writer_begin(w, &err) != AL_OK) goto fail;
    row = malloc(cap * sizeof(float));
    conv = malloc(cap * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        uint64_t numel = (uint64_t)t[i].shape[0] * (uint64_t)(t[i].ndim == 2 ? t[i].shape[1] : 1);
        bool norm = t[i].ndim == 1;
        for (uint64_t off = 0; off < numel; off += cap) {
            size_t k = numel - off < cap ? (size_t)(numel - off) : cap;
            #pragma omp parallel for schedule(static)
            for (size_t j = 0; j < k; j++) {
                uint64_t e = off + j;
                float v;
                if (base_seed) v = (norm ? 1.0f : 0.02f * gauss(base_seed, i, e)) + (float)delta * gauss(seed, i, e);
                else v = norm ? 1.0f + 0.05f * gauss(seed, i, e) : 0.02f * gauss(seed, i, e);
                row[j] = v;
            }
            al_convert(conv, dt, row, AL_F32, k);
            if (al_writer_write(w, conv, (uint64_t)k * al_dtype_bits(dt) / 8, &err) != AL_OK) goto fail;
        }
    }
    /* a config.json so that tools (and alloy's architecture check) know what this is */
    char cfgp[4096];
    snprintf(cfgp, sizeof cfgp, "%s/config.json", al_writer_tmpdir(w));
    FILE *cf = fopen(cfgp, "w");
    if (!cf) { al_errorf(&err, AL_ERR_IO, "%s: cannot create", cfgp); goto fail; }
    fprintf(cf, "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
                "  \"hidden_size\": %ld,\n  \"intermediate_size\": %ld,\n  \"num_attention_heads\": %ld,\n"
                "  \"num_key_value_heads\": %ld,\n  \"num_hidden_layers\": %ld,\n  \"vocab_size\": %ld,\n"
                "  \"rms_norm_eps\": 1e-05,\n  \"tie_word_embeddings\": false,\n  \"torch_dtype\": \"%s\"\n}\n",
            D, F, H, K, L, V, dt == AL_BF16 ? "bfloat16" : dt == AL_F16 ? "float16" : "float32");
    fclose(cf);
    /* a minimal byte-level BPE tokenizer.json with one token per embedding row, so that
     * tokenizer-aware recipes (tokenizer_source: union) can be planned on these models */
    snprintf(cfgp, sizeof cfgp, "%s/tokenizer.json", al_writer_tmpdir(w));
    if (!(cf = fopen(cfgp, "w"))) { al_errorf(&err, AL_ERR_IO, "%s: cannot create", cfgp); goto fail; }
    fprintf(cf, "{\"version\": \"1.0\", \"added_tokens\": [], \"normalizer\": null,\n"
                " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true},\n"
                " \"post_processor\": null, \"decoder\": {\"type\": \"ByteLevel\"},\n"
                " \"model\": {\"type\": \"BPE\", \"merges\": [], \"vocab\": {");
    for (long v = 0; v < V; v++) fprintf(cf, "%s\"t%ld\": %ld", v ? ", " : "", v, v);
    fprintf(cf, "}}}\n");
    fclose(cf);
    if (al_writer_commit(w, &err) != AL_OK) goto fail;
    al_writer_free(w);
    free(row);
    free(conv);
    free(t);
    printf("%s: %zu tensors, %.3f B parameters, %s\n", out, n, (double)params / 1e9, al_dtype_name(dt));
    return 0;
fail:
    fprintf(stderr, "gen_llama: %s\n", err.msg);
    al_writer_free(w);
    free(row);
    free(conv);
    free(t);
    return 1;
}
