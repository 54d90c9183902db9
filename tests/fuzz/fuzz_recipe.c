/* Fuzz the YAML recipe parser and validator (recipes/): syntax, schema, parameters,
 * gradients, filters, slices, multi-document links. */
#include "fuzz_common.h"
#include "../../recipes/recipe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    al_strvec errors = {0};
    al_recipe_opts o = {.strict = size % 2 == 1, .errors = &errors};
    al_recipe *r = NULL;
    al_error e;
    if (al_recipe_parse_string((const char *)data, size, "fuzz.yaml", &o, &r, &e) == AL_OK) al_recipe_free(r);
    al_strvec_free(&errors);
    return 0;
}
