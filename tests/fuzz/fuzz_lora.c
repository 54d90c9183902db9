/* Fuzz LoRA adapters (io/lora.c, applied by io/checkpoint.c): the input is the
 * adapter_model.safetensors of an adapter (fixed adapter_config.json, r = 2) attached
 * to a small fixed model; every tensor of the model is then read, adapted. */
#include "fuzz_common.h"
#include "../../io/checkpoint.h"

/* model.safetensors: embed [6, 4], layer 0 q_proj [4, 4], norm [4], all F32 */
static void write_model(const char *path)
{
    const char *hdr_json =
        "{\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[6,4],\"data_offsets\":[0,96]},"
        "\"model.layers.0.self_attn.q_proj.weight\":{\"dtype\":\"F32\",\"shape\":[4,4],\"data_offsets\":[96,160]},"
        "\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[160,176]}}";
    char hdr[512];
    int n = snprintf(hdr, sizeof hdr, "%s", hdr_json);
    while (n % 8) hdr[n++] = ' ';
    uint64_t len = (uint64_t)n;
    float v[44];
    for (int i = 0; i < 44; i++) v[i] = (float)i * 0.125f - 2.0f;
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(&len, 8, 1, f) != 1 || fwrite(hdr, 1, (size_t)n, f) != (size_t)n || fwrite(v, 4, 44, f) != 44) abort();
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    char model[256], adapter[256], p[300];
    snprintf(model, sizeof model, "%s/model.safetensors", fz_dir());
    snprintf(adapter, sizeof adapter, "%s/adapter", fz_dir());
    if (!ready) {
        write_model(model);
        if (mkdir(adapter, 0755) != 0) abort();
        snprintf(p, sizeof p, "%s/adapter_config.json", adapter);
        const char *cfg = "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"bias\": \"none\"}";
        fz_write(p, (const uint8_t *)cfg, strlen(cfg));
        ready = 1;
    }
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", adapter);
    fz_write(p, data, size);
    al_ckpt *c = NULL;
    al_error e;
    if (al_ckpt_open(&c, model, &e) != AL_OK) abort();          /* the fixed model is valid */
    if (al_ckpt_attach_lora(c, adapter, &e) == AL_OK) {
        for (size_t i = 0; i < al_ckpt_count(c); i++) {
            const al_tensor_info *t = al_ckpt_info(c, i);
            float buf[24];
            uint16_t half[24];
            int64_t rows = t->ndim ? t->shape[0] : 1;
            if (al_ckpt_read(c, i, 0, rows, buf, AL_F32, &e) != AL_OK) continue;
            al_ckpt_read(c, i, rows - 1, 1, half, AL_BF16, &e);
        }
    }
    al_ckpt_close(c);
    return 0;
}
