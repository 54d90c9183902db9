/* Fuzz encoding of arbitrary bytes with real tokenizers (GPT-2 byte-level BPE, and a
 * SentencePiece-style BPE with byte fallback): encode never fails on bytes it accepts,
 * and for the byte-level tokenizer decode(encode(x)) == x. */
#include "fuzz_common.h"
#include "../../core/alloc.h"
#include "../../io/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static al_tokenizer *gpt2, *spm;
    al_error e;
    if (!gpt2) {
        if (al_tokenizer_load(&gpt2, "tests/fixtures/tokenizers/gpt2/tokenizer.json", &e) != AL_OK ||
            al_tokenizer_load(&spm, "tests/fixtures/tokenizers/hand/llama2_like.json", &e) != AL_OK) {
            fprintf(stderr, "fuzz_tokenize: %s (run from the repository root)\n", e.msg);
            abort();
        }
    }
    for (int k = 0; k < 2; k++) {
        al_tokenizer *t = k ? spm : gpt2;
        int32_t *ids = NULL;
        al_tok_span *sp = NULL;
        size_t n = 0;
        if (al_tokenizer_encode_offsets(t, (const char *)data, size, k == 1, &ids, &sp, &n, &e) != AL_OK) continue;
        for (size_t i = 0; i < n; i++)
            if (sp[i].start > sp[i].end || sp[i].end > size) abort();
        char *back = NULL;
        size_t bl = 0;
        if (al_tokenizer_decode(t, ids, n, &back, &bl, &e) == AL_OK) {
            if (k == 0 && (bl != size || memcmp(back, data, size) != 0)) abort();   /* byte-level: lossless */
            al_free(back);
        }
        al_free(ids);
        al_free(sp);
    }
    return 0;
}
