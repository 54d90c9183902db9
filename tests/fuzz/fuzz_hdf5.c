/* Fuzz alloy's HDF5 checkpoint reader (io/hdf5.c) on byte-mutated files: open, list and
 * read every tensor up to 16 MB. Crashes inside libhdf5 itself are reported in
 * RESULTS.md rather than hidden. */
#include "fuzz_common.h"
#include "../../core/alloc.h"
#include "../../io/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char p[256];
    snprintf(p, sizeof p, "%s/fuzz.h5", fz_dir());
    fz_write(p, data, size);
    al_ckpt *c = NULL;
    al_error e;
    if (al_ckpt_open(&c, p, &e) == AL_OK) {
        for (size_t i = 0; i < al_ckpt_count(c); i++) {
            const al_tensor_info *t = al_ckpt_info(c, i);
            if (t->nbytes > (16u << 20)) continue;
            void *buf = al_malloc(t->nbytes ? t->nbytes : 1);
            if (buf) al_ckpt_read(c, i, 0, t->ndim ? t->shape[0] : 1, buf, t->dtype, &e);
            al_free(buf);
        }
        al_ckpt_close(c);
    }
    return 0;
}
