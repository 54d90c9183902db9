/* Fuzz the facts / edit-file parser (edit/facts.c), also as a merge recipe's edits stage. */
#include "fuzz_common.h"
#include "../../edit/facts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    al_facts *f = NULL;
    al_error e;
    if (al_facts_parse((const char *)data, size, "fuzz.yaml", &f, &e) == AL_OK) al_facts_free(f);
    f = NULL;
    /* a stage that names a file reads it from disk (a path like /dev/stdin would block):
     * keep the fuzzer off the filesystem */
    if (!memchr(data, '/', size))
        if (al_facts_parse_stage((const char *)data, size, "fuzz.yaml", &f, &e) == AL_OK) al_facts_free(f);
    return 0;
}
