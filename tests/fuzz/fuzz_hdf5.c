/* Fuzz alloy's HDF5 checkpoint reader (io/hdf5.c) on byte-mutated files: open, list and
 * read every tensor up to 16 MB. alloy reads a file's layout in a child process first
 * (al_h5_probe), so libhdf5's own crashes and endless loops on crafted files end there as
 * a clean error; their sanitizer reports still reach this log (tests/fuzz/RESULTS.md). */
#include "fuzz_common.h"
#include "../../core/alloc.h"
#include "../../io/checkpoint.h"
#include "../../io/h5_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    al_h5_probe_limit(250);     /* a clean open under ASan takes < 20 ms */
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
