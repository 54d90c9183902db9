/* Fuzz the sharded checkpoint index (model.safetensors.index.json, io/checkpoint.c): the
 * input is the index of a directory that holds two small valid shards. */
#include "fuzz_common.h"
#include "../../io/checkpoint.h"

static void write_shard(const char *path, const char *name)
{
    /* one F32 tensor [2] */
    char hdr[128];
    int n = snprintf(hdr, sizeof hdr, "{\"%s\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", name);
    while (n % 8) hdr[n++] = ' ';
    uint64_t len = (uint64_t)n;
    FILE *f = fopen(path, "wb");
    float v[2] = {1.0f, 2.0f};
    if (!f || fwrite(&len, 8, 1, f) != 1 || fwrite(hdr, 1, (size_t)n, f) != (size_t)n || fwrite(v, 4, 2, f) != 2) abort();
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    char p[256];
    if (!ready) {
        snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", fz_dir());
        write_shard(p, "a.weight");
        snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", fz_dir());
        write_shard(p, "b.weight");
        ready = 1;
    }
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", fz_dir());
    fz_write(p, data, size);
    al_ckpt *c = NULL;
    al_error e;
    if (al_ckpt_open(&c, fz_dir(), &e) == AL_OK) {
        for (size_t i = 0; i < al_ckpt_count(c); i++) {
            const al_tensor_info *t = al_ckpt_info(c, i);
            float buf[2];
            if (t->nbytes <= sizeof buf) al_ckpt_read(c, i, 0, t->ndim ? t->shape[0] : 1, buf, t->dtype, &e);
        }
        al_ckpt_close(c);
    }
    return 0;
}
