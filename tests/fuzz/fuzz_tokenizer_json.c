/* Fuzz tokenizer loading (io/tokenizer.c) from a mutated tokenizer.json, then encode and
 * decode a fixed text with whatever was accepted. */
#include "fuzz_common.h"
#include "../../core/alloc.h"
#include "../../io/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char p[256];
    snprintf(p, sizeof p, "%s/tokenizer.json", fz_dir());
    fz_write(p, data, size);
    al_tokenizer *t = NULL;
    al_error e;
    if (al_tokenizer_load(&t, p, &e) == AL_OK) {
        static const char text[] = "Hello world, 123 caf\xc3\xa9 \n\t <s> hello";
        int32_t *ids = NULL;
        size_t n = 0;
        if (al_tokenizer_encode(t, text, sizeof text - 1, true, &ids, &n, &e) == AL_OK) {
            char *back = NULL;
            size_t bl = 0;
            if (al_tokenizer_decode(t, ids, n, &back, &bl, &e) == AL_OK) al_free(back);
            al_free(ids);
        }
        al_tokenizer_free(t);
    }
    return 0;
}
