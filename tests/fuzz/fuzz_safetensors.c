/* Fuzz the safetensors header and layout validation (io/safetensors.c) on whole file
 * images: every input is accepted with a consistent tensor list or rejected cleanly. */
#include "fuzz_common.h"
#include "../../io/backend.h"
#include "../../io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    al_bt_list l = {0};
    al_error e;
    if (al_st_parse(data, size, "fuzz.safetensors", &l, &e) == AL_OK) {
        /* accepted: every tensor lies inside the buffer */
        for (size_t i = 0; i < l.n; i++)
            if (l.v[i].offset > size || l.v[i].nbytes > size - l.v[i].offset) abort();
    }
    al_bt_list_free(&l);
    return 0;
}
