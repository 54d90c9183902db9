/* Fuzz the reference statistics importer (edit/stats_npz.c: zip, deflate, .npy headers). */
#include "fuzz_common.h"
#include "../../edit/stats.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char p[256];
    snprintf(p, sizeof p, "%s/transformer.h.2.mlp.c_proj_float32_mom2_100.npz", fz_dir());
    fz_write(p, data, size);
    al_stats *s = NULL;
    al_error e;
    if (al_stats_import_npz(p, &s, &e) == AL_OK) al_stats_free(s);
    return 0;
}
