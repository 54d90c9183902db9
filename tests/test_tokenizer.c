/* tests/test_tokenizer.c: BPE tokenizers against published vectors and hand-built files.
 *
 * Fixtures (tests/fixtures/tokenizers/, sources in SOURCES.md): the real GPT-2 tokenizer
 * in three formats, llama.cpp's and ggml's test vectors, torchtune's tiny tiktoken model,
 * our example family's vectors, and three hand-built tokenizer.json files whose expected
 * ids are derived in the comments below. Meta's Llama-2/3 tokenizer.model files are not
 * in the tree: those tests look under $ALLOY_META_TOKENIZERS (default ../shared/data)
 * and skip when the files are absent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <jansson.h>

#include "../core/alloc.h"
#include "../io/tokenizer.h"

#define FIX "tests/fixtures/tokenizers/"
#define SEP "\n__ggml_vocab_test__\n"

/* ---- helpers ------------------------------------------------------------------- */
static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) { free(b); b = NULL; }
    if (b) b[sz] = '\0';
    fclose(f);
    if (n) *n = (size_t)sz;
    return b;
}

static al_tokenizer *load_ok(const char *path)
{
    al_tokenizer *t = NULL;
    al_error err = {0};
    if (al_tokenizer_load(&t, path, &err) != AL_OK) fail_msg("load %s: %s", path, err.msg);
    return t;
}

/* Encode text and compare with want[0..nw); on mismatch print both. */
static void expect_ids(const al_tokenizer *t, const char *text, size_t len, bool special, const int32_t *want,
                       size_t nw, const char *label)
{
    int32_t *ids = NULL;
    size_t n = 0;
    al_error err = {0};
    if (al_tokenizer_encode(t, text, len, special, &ids, &n, &err) != AL_OK) fail_msg("%s: encode: %s", label, err.msg);
    bool same = n == nw && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0);
    if (!same) {
        char got[4096] = "", exp[4096] = "";
        for (size_t i = 0; i < n && strlen(got) < 4000; i++) snprintf(got + strlen(got), 4096 - strlen(got), " %d", ids[i]);
        for (size_t i = 0; i < nw && strlen(exp) < 4000; i++) snprintf(exp + strlen(exp), 4096 - strlen(exp), " %d", want[i]);
        al_free(ids);
        fail_msg("%s: text \"%.*s\"\n  got:     %s\n  expected:%s", label, (int)(len > 200 ? 200 : len), text, got, exp);
    }
    al_free(ids);
}

static void expect_roundtrip(const al_tokenizer *t, const char *text, size_t len, const char *label)
{
    int32_t *ids = NULL;
    size_t n = 0, dn = 0;
    char *d = NULL;
    assert_int_equal(al_tokenizer_encode(t, text, len, false, &ids, &n, NULL), AL_OK);
    assert_int_equal(al_tokenizer_decode(t, ids, n, &d, &dn, NULL), AL_OK);
    if (dn != len || memcmp(d, text, len) != 0)
        fail_msg("%s: decode(encode(s)) != s for \"%.*s\" -> \"%s\"", label, (int)len, text, d);
    al_free(ids);
    al_free(d);
}

/* llama.cpp .inp/.out: strings separated by SEP, one " id id" line per string. Returns
 * the number of cases checked. */
static size_t run_llamacpp(const al_tokenizer *t, const char *inp, const char *outp, bool roundtrip)
{
    char *in = slurp(inp, NULL), *out = slurp(outp, NULL);
    assert_non_null(in);
    assert_non_null(out);
    size_t cases = 0;
    char *p = in, *o = out;
    for (;;) {
        char *e = strstr(p, SEP);
        if (!e) break;
        char *ol = strchr(o, '\n');
        assert_non_null(ol);
        *ol = '\0';
        int32_t want[1024];
        size_t nw = 0;
        for (char *q = o; *q;) {
            char *end;
            long v = strtol(q, &end, 10);
            if (end == q) break;
            want[nw++] = (int32_t)v;
            q = end;
        }
        char label[64];
        snprintf(label, sizeof label, "%s case %zu", inp, cases);
        expect_ids(t, p, (size_t)(e - p), false, want, nw, label);
        if (roundtrip) expect_roundtrip(t, p, (size_t)(e - p), label);
        cases++;
        p = e + strlen(SEP);
        o = ol + 1;
    }
    free(in);
    free(out);
    return cases;
}

/* ggml gpt-2.txt: "sentence => id,id,..." */
static size_t run_ggml(const al_tokenizer *t, const char *path)
{
    char *txt = slurp(path, NULL);
    assert_non_null(txt);
    size_t cases = 0;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n")) {
        char *d = strstr(line, " => ");
        if (!d) continue;
        int32_t want[512];
        size_t nw = 0;
        for (char *q = d + 4; *q;) {
            char *end;
            long v = strtol(q, &end, 10);
            if (end == q) break;
            want[nw++] = (int32_t)v;
            q = *end == ',' ? end + 1 : end;
        }
        expect_ids(t, line, (size_t)(d - line), false, want, nw, path);
        expect_roundtrip(t, line, (size_t)(d - line), path);
        cases++;
    }
    free(txt);
    return cases;
}

/* ---- GPT-2 ---------------------------------------------------------------------- */
static void check_gpt2(const char *path)
{
    al_tokenizer *t = load_ok(path);
    assert_int_equal(al_tokenizer_vocab_size(t), 50257);
    assert_int_equal(run_llamacpp(t, FIX "vectors/ggml-vocab-gpt-2.gguf.inp", FIX "vectors/ggml-vocab-gpt-2.gguf.out", true), 46);
    assert_int_equal(run_ggml(t, FIX "vectors/gpt-2.txt"), 100);
    /* tiktoken's inline vectors: "hello world", and digit runs */
    expect_ids(t, "hello world", 11, false, (int32_t[]){31373, 995}, 2, "hello world");
    expect_ids(t, "00000000000000000", 17, false, (int32_t[]){8269, 10535, 830}, 3, "17 zeros");
    /* <|endoftext|> inside text is the special token; GPT-2 adds no BOS/EOS */
    expect_ids(t, "a<|endoftext|>b", 15, true, (int32_t[]){64, 50256, 65}, 3, "eot");
    assert_int_equal(al_tokenizer_eos(t), 50256);
    assert_int_equal(al_tokenizer_bos(t), 50256);
    assert_string_equal(al_tokenizer_token(t, 995), "\xc4\xa0world");   /* "Ġworld" */
    assert_int_equal(al_tokenizer_token_id(t, "\xc4\xa0world"), 995);
    al_tokenizer_free(t);
}

static void test_gpt2_tokenizer_json(void **state) { (void)state; check_gpt2(FIX "gpt2/tokenizer.json"); }
static void test_gpt2_vocab_merges(void **state) { (void)state; check_gpt2(FIX "gpt2/vocab.json"); }
static void test_gpt2_tiktoken(void **state) { (void)state; check_gpt2(FIX "gpt2/gpt2.tiktoken"); }

static void test_gpt2_speed(void **state)
{
    (void)state;
    clock_t c0 = clock();
    al_tokenizer *t = load_ok(FIX "gpt2/tokenizer.json");
    double load_s = (double)(clock() - c0) / CLOCKS_PER_SEC;
    char *in = slurp(FIX "vectors/ggml-vocab-gpt-2.gguf.inp", NULL);
    c0 = clock();
    for (char *p = in, *e; (e = strstr(p, SEP)); p = e + strlen(SEP)) {
        int32_t *ids; size_t n;
        assert_int_equal(al_tokenizer_encode(t, p, (size_t)(e - p), false, &ids, &n, NULL), AL_OK);
        al_free(ids);
    }
    double enc_s = (double)(clock() - c0) / CLOCKS_PER_SEC;
    print_message("gpt2 tokenizer.json load %.0f ms, 46 vectors encoded in %.2f ms\n", load_s * 1e3, enc_s * 1e3);
    assert_true(load_s < 2.0);   /* generous: sanitizer builds are slow */
    free(in);
    al_tokenizer_free(t);
}

/* Offsets for ROME: " Paris" is one token whose span includes its leading space. */
static void test_offsets(void **state)
{
    (void)state;
    al_tokenizer *t = load_ok(FIX "gpt2/tokenizer.json");
    const char *s = "The Eiffel Tower is in Paris";
    int32_t *ids; al_tok_span *sp; size_t n;
    assert_int_equal(al_tokenizer_encode_offsets(t, s, strlen(s), false, &ids, &sp, &n, NULL), AL_OK);
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {      /* spans tile the text exactly */
        assert_int_equal(sp[i].start, pos);
        pos = sp[i].end;
    }
    assert_int_equal(pos, strlen(s));
    size_t last = al_tok_span_find(sp, n, (size_t)(strstr(s, "Tower") - s) + 4);
    assert_string_equal(al_tokenizer_token(t, ids[last]), "\xc4\xa0Tower");
    assert_int_equal(al_tok_span_find(sp, n, strlen(s)), n);
    al_free(ids); al_free(sp);
    /* a 4-byte emoji split over byte-level tokens: spans are exact bytes, still tiling */
    s = "hi \xf0\x9f\x9a\x80!";
    assert_int_equal(al_tokenizer_encode_offsets(t, s, strlen(s), false, &ids, &sp, &n, NULL), AL_OK);
    pos = 0;
    for (size_t i = 0; i < n; i++) { assert_int_equal(sp[i].start, pos); pos = sp[i].end; }
    assert_int_equal(pos, strlen(s));
    al_free(ids); al_free(sp);
    al_tokenizer_free(t);
}

/* ---- our example family -------------------------------------------------------- */
static void test_family_vectors(void **state)
{
    (void)state;
    al_tokenizer *dirt = load_ok("examples/models/base");                  /* directory: tokenizer.json */
    al_tokenizer *vm = load_ok("examples/models/base/vocab.json");         /* vocab.json + merges.txt */
    al_tokenizer *ts[2] = { dirt, vm };
    json_t *root = json_load_file(FIX "family/tokenizer_vectors.json", 0, NULL);
    assert_non_null(root);
    json_t *vec = json_object_get(root, "vectors");
    assert_true(json_array_size(vec) > 0);
    assert_int_equal(json_integer_value(json_object_get(root, "eot_id")), 1023);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(al_tokenizer_vocab_size(ts[k]), 1024);
        assert_int_equal(al_tokenizer_eos(ts[k]), 1023);
        for (size_t i = 0; i < json_array_size(vec); i++) {
            json_t *v = json_array_get(vec, i), *ja = json_object_get(v, "ids");
            const char *text = json_string_value(json_object_get(v, "text"));
            size_t nw = json_array_size(ja);
            int32_t *want = malloc((nw + 1) * sizeof *want);
            for (size_t j = 0; j < nw; j++) want[j] = (int32_t)json_integer_value(json_array_get(ja, j));
            expect_ids(ts[k], text, strlen(text), false, want, nw, "tokenizer_vectors.json");
            expect_roundtrip(ts[k], text, strlen(text), "tokenizer_vectors.json");
            free(want);
        }
    }
    json_decref(root);
    root = json_load_file(FIX "family/reference_logits.json", 0, NULL);
    assert_non_null(root);
    json_t *pr = json_object_get(root, "prompts"), *idl = json_object_get(root, "ids");
    assert_int_equal(json_array_size(pr), json_array_size(idl));
    for (size_t i = 0; i < json_array_size(pr); i++) {
        const char *text = json_string_value(json_array_get(pr, i));
        json_t *ja = json_array_get(idl, i);
        int32_t want[256];
        size_t nw = json_array_size(ja);
        for (size_t j = 0; j < nw; j++) want[j] = (int32_t)json_integer_value(json_array_get(ja, j));
        expect_ids(dirt, text, strlen(text), true, want, nw, "reference_logits.json");   /* ByteLevel post: no BOS */
    }
    json_decref(root);
    al_tokenizer_free(dirt);
    al_tokenizer_free(vm);
}

/* ---- hand-built Llama-style files -----------------------------------------------
 * llama2_like.json (Llama-2 HF layout): normalizer Prepend("▁") + Replace(" ", "▁"), no
 * pre-tokenizer, byte_fallback, unk <unk>=0, fuse_unk, template "<s> $A".
 * Merges by rank: 0 ▁+h, 1 l+l, 2 e+ll, 3 ▁h+ell, 4 ▁hell+o, 5 ▁+w, 6 o+r, 7 ▁w+or.
 *   "hello world" -> "▁hello▁world" -> chars ▁ h e l l o ▁ w o r l d
 *     rank 0: ▁h (the second ▁ is followed by w), then ll, ell, ▁hell, ▁hello;
 *     rank 5: ▁w; 6: or; 7: ▁wor; "l","d" have no merge
 *     -> ▁hello(18) ▁wor(21) l(9) d(13); with add_special <s>(1) first.
 *   "hé\n" -> "▁hé\n": ▁h(14); é is not a token -> bytes <0xC3>(4) <0xA9>(5); \n -> <0x0A>(3).
 *   "hzz" -> ▁h(14), then z, z: neither a token nor a byte token -> one fused <unk>(0). */
static void test_llama2_like(void **state)
{
    (void)state;
    al_tokenizer *t = load_ok(FIX "hand/llama2_like.json");
    expect_ids(t, "hello world", 11, true, (int32_t[]){1, 18, 21, 9, 13}, 5, "llama2 hello world");
    expect_ids(t, "hello world", 11, false, (int32_t[]){18, 21, 9, 13}, 4, "llama2 no special");
    expect_ids(t, "h\xc3\xa9\n", 4, false, (int32_t[]){14, 4, 5, 3}, 4, "llama2 byte fallback");
    expect_ids(t, "hzz", 3, false, (int32_t[]){14, 0}, 2, "llama2 fused unk");
    /* Prepend applies to every segment between added tokens: "<s>hello" -> <s> ▁hello */
    expect_ids(t, "<s>hello", 8, false, (int32_t[]){1, 18}, 2, "llama2 special in text");
    expect_ids(t, "", 0, true, (int32_t[]){1}, 1, "llama2 empty");
    expect_roundtrip(t, "hello world", 11, "llama2");
    expect_roundtrip(t, "h\xc3\xa9\n", 4, "llama2");
    assert_int_equal(al_tokenizer_bos(t), 1);
    int32_t *ids; al_tok_span *sp; size_t n;
    assert_int_equal(al_tokenizer_encode_offsets(t, "hello world", 11, true, &ids, &sp, &n, NULL), AL_OK);
    assert_int_equal(n, 5);
    size_t want[5][2] = { {0, 0}, {0, 5}, {5, 9}, {9, 10}, {10, 11} };   /* ▁wor spans the space */
    for (size_t i = 0; i < n; i++) { assert_int_equal(sp[i].start, want[i][0]); assert_int_equal(sp[i].end, want[i][1]); }
    al_free(ids); al_free(sp);
    al_tokenizer_free(t);
}

/* metaspace_like.json: the same vocabulary, no normalizer, pre-tokenizer Metaspace with
 * prepend_scheme "first" and split: "hello world" -> "▁hello" "▁world" -> 18 | 21 9 13.
 * "first" prepends only at offset 0 of the input, so after <s> "hello" gets no "▁":
 * h e l l o -> ll, ell; "h"+"ell" is no merge -> h(7) ell(16) o(10). */
static void test_metaspace_like(void **state)
{
    (void)state;
    al_tokenizer *t = load_ok(FIX "hand/metaspace_like.json");
    expect_ids(t, "hello world", 11, false, (int32_t[]){18, 21, 9, 13}, 4, "metaspace");
    expect_ids(t, "<s>hello", 8, false, (int32_t[]){1, 7, 16, 10}, 4, "metaspace first");
    expect_roundtrip(t, "hello world", 11, "metaspace");
    al_tokenizer_free(t);
}

/* llama3_like.json: Split(cl100k regex, Isolated) + ByteLevel(use_regex=false),
 * ignore_merges, merges as ["a","b"] pairs: 0 l+l, 1 Ġ+h, 2 e+ll, 3 Ġh+ell.
 *   "Hello hello" -> pieces "Hello" " hello". "Hello" is a whole vocab entry (7) and
 *   ignore_merges takes it (merging would give H e ll o -> H(0) ell(10) o(3)).
 *   " hello" -> Ġ h e l l o -> ll, Ġh, ell, Ġhell -> Ġhell(11) o(3).
 *   "12345" -> \p{N}{1,3} pieces "123" "45" -> 123(18) | 4(16) 5(17).
 *   Template: <|begin_of_text|>(12) $A. Id 9 is a gap in the vocabulary. */
static void test_llama3_like(void **state)
{
    (void)state;
    al_tokenizer *t = load_ok(FIX "hand/llama3_like.json");
    expect_ids(t, "Hello hello", 11, true, (int32_t[]){12, 7, 11, 3}, 4, "llama3 hello");
    expect_ids(t, "12345", 5, false, (int32_t[]){18, 16, 17}, 3, "llama3 digits");
    expect_roundtrip(t, "Hello hello", 11, "llama3");
    assert_int_equal(al_tokenizer_bos(t), 12);
    assert_null(al_tokenizer_token(t, 9));
    int32_t bad = 9;
    char *d; size_t dn;
    assert_int_equal(al_tokenizer_decode(t, &bad, 1, &d, &dn, NULL), AL_ERR_USAGE);
    al_tokenizer_free(t);
}

/* ---- tiktoken / SentencePiece (torchtune's tiny models, BSD) ------------------- */
static void test_torchtune_tiktoken(void **state)
{
    (void)state;
    al_tokenizer *t = load_ok(FIX "torchtune/tiktoken_small.model");
    const char *s = "I can see the sun. But even if I cannot see the sun, I know that it exists.";
    int32_t want[] = {73, 503, 654, 262, 376, 110, 46, 690, 720, 428, 270, 1119, 654, 262, 376, 110, 44, 270, 686,
                      334, 312, 522, 511, 115, 46};
    expect_ids(t, s, strlen(s), false, want, 25, "torchtune tiktoken");
    expect_roundtrip(t, s, strlen(s), "torchtune tiktoken");
    al_tokenizer_free(t);
}

/* torchtune's m.model is a SentencePiece *unigram* model: loading must refuse it by name
 * (upstream's vector "Hello world!" -> [12, 1803, 1024, 103] needs a unigram Viterbi). */
static void test_torchtune_spm_unigram(void **state)
{
    (void)state;
    al_tokenizer *t = NULL;
    al_error err = {0};
    assert_int_equal(al_tokenizer_load(&t, FIX "torchtune/m.model", &err), AL_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "unigram"));
    assert_non_null(strstr(err.msg, "m.model"));
    assert_null(t);
}

/* ---- Meta's files, when present -------------------------------------------------- */
static const char *meta_dir(void)
{
    const char *d = getenv("ALLOY_META_TOKENIZERS");
    return d && *d ? d : "../shared/data";
}

static al_tokenizer *load_meta(const char *rel)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", meta_dir(), rel);
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fclose(f);
    return load_ok(p);
}

static void test_meta_llama3(void **state)
{
    (void)state;
    al_tokenizer *t = load_meta("tokenizers/llama3/tokenizer.model");
    if (!t) { print_message("skipped: no Llama-3 tokenizer.model under %s\n", meta_dir()); skip(); }
    assert_int_equal(al_tokenizer_vocab_size(t), 128256);
    assert_int_equal(run_llamacpp(t, FIX "vectors/ggml-vocab-llama-bpe.gguf.inp",
                                  FIX "vectors/ggml-vocab-llama-bpe.gguf.out", true), 46);
    /* meta-llama/llama3 test_tokenizer.py: with BOS (and EOS, appended by hand there) */
    const char *s = "This is a test sentence.";
    expect_ids(t, s, strlen(s), true, (int32_t[]){128000, 2028, 374, 264, 1296, 11914, 13}, 7, "llama3 bos");
    expect_ids(t, "<|start_header_id|>user<|end_header_id|>", 40, false, (int32_t[]){128006, 882, 128007}, 3,
               "llama3 header");
    assert_int_equal(al_tokenizer_eos(t), 128001);
    al_tokenizer_free(t);
}

static void test_meta_llama2(void **state)
{
    (void)state;
    al_tokenizer *t = load_meta("tokenizers/llama2/tokenizer.model");
    if (!t) { print_message("skipped: no Llama-2 tokenizer.model under %s\n", meta_dir()); skip(); }
    assert_int_equal(al_tokenizer_vocab_size(t), 32000);
    assert_int_equal(run_llamacpp(t, FIX "vectors/ggml-vocab-llama-spm.gguf.inp",
                                  FIX "vectors/ggml-vocab-llama-spm.gguf.out", false), 46);
    /* karpathy/llama2.c test.c vectors (with BOS) */
    expect_ids(t, "", 0, true, (int32_t[]){1}, 1, "llama2 empty");
    const char *s = "I believe the meaning of life is";
    expect_ids(t, s, strlen(s), true, (int32_t[]){1, 306, 4658, 278, 6593, 310, 2834, 338}, 8, "llama2 life");
    s = "Simply put, the theory of relativity states that ";
    expect_ids(t, s, strlen(s), true,
               (int32_t[]){1, 3439, 17632, 1925, 29892, 278, 6368, 310, 14215, 537, 5922, 393, 29871}, 13, "llama2 rel");
    expect_roundtrip(t, s, strlen(s), "llama2");
    al_tokenizer_free(t);
}

/* ---- malformed input --------------------------------------------------------------- */
static char tmpdir[256];

static const char *write_tmp(const char *name, const char *content, size_t n)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fwrite(content, 1, n, f);
    fclose(f);
    return p;
}

static void expect_load_error(const char *name, const char *content, al_status code, const char *needle)
{
    al_tokenizer *t = NULL;
    al_error err = {0};
    const char *p = write_tmp(name, content, strlen(content));
    al_status st = al_tokenizer_load(&t, p, &err);
    if (st != code || !strstr(err.msg, needle))
        fail_msg("%s: status %d (want %d), message \"%s\" (want \"%s\")", name, st, code, err.msg, needle);
    assert_null(t);
}

static void test_malformed(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/alloy_tok_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    /* truncated JSON: line and column */
    expect_load_error("t1.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0", AL_ERR_FORMAT, "t1.json:1:");
    expect_load_error("t2.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", AL_ERR_UNSUPPORTED, "WordPiece");
    expect_load_error("t3.json", "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", AL_ERR_UNSUPPORTED, "not supported");
    expect_load_error("t4.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": [], \"merges\": []}}", AL_ERR_FORMAT, "model.vocab");
    expect_load_error("t5.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}, \"merges\": []}}",
                      AL_ERR_FORMAT, "model.vocab[\"a\"]");
    expect_load_error("t6.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}",
                      AL_ERR_FORMAT, "model.merges[0]");
    expect_load_error("t7.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [42]}}",
                      AL_ERR_FORMAT, "model.merges[0]");
    expect_load_error("t8.json", "{\"normalizer\": {\"type\": \"NFC\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}",
                      AL_ERR_UNSUPPORTED, "unsupported normalizer 'NFC'");
    expect_load_error("t9.json", "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"},"
                      " \"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}", AL_ERR_FORMAT, "regex");
    expect_load_error("t10.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 99999999}, \"merges\": []}}",
                      AL_ERR_FORMAT, "model.vocab[\"a\"]");
    expect_load_error("t11.json", "[1, 2]", AL_ERR_FORMAT, "JSON object");
    expect_load_error("bad.tiktoken", "IQ== 0\n!!! 1\n", AL_ERR_FORMAT, "line 2");
    expect_load_error("bad2.tiktoken", "IQ== zero\n", AL_ERR_FORMAT, "line 1");
    expect_load_error("bad.model", "\x0a\xff\xff\xff", AL_ERR_FORMAT, "SentencePiece");
    /* a valid JSON vocab.json whose merges.txt is missing */
    expect_load_error("vocab.json", "{\"a\": 0}", AL_ERR_IO, "merges.txt");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    assert_int_equal(system(cmd), 0);

    al_tokenizer *t = NULL;
    al_error err = {0};
    assert_int_equal(al_tokenizer_load(&t, "tests/fixtures/tokenizers/nope", &err), AL_ERR_IO);
    assert_non_null(strstr(err.msg, "nope"));
}

/* Invalid UTF-8 in the text: byte-level encodes each byte (round trip holds); the
 * SentencePiece-style file turns each bad byte into byte fallback or <unk>. */
static void test_invalid_utf8(void **state)
{
    (void)state;
    static const char *bad[] = { "\xff", "a\xc3", "\xe2\x82", "x\x80y \xf5\xff z", "\xed\xa0\x80", "\xc0\xaf ok" };
    al_tokenizer *g = load_ok(FIX "gpt2/tokenizer.json");
    al_tokenizer *l = load_ok(FIX "hand/llama2_like.json");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect_roundtrip(g, bad[i], strlen(bad[i]), "gpt2 invalid utf-8");
        int32_t *ids; size_t n;
        assert_int_equal(al_tokenizer_encode(l, bad[i], strlen(bad[i]), true, &ids, &n, NULL), AL_OK);
        al_free(ids);
    }
    /* "\xff" alone: GPT-2 maps byte 0xff to "ÿ" = id 3290... whichever: one token */
    int32_t *ids; size_t n;
    assert_int_equal(al_tokenizer_encode(g, "\xff", 1, false, &ids, &n, NULL), AL_OK);
    assert_int_equal(n, 1);
    al_free(ids);
    /* "h\xc3" with the llama2-like file: ▁h, then byte <0xC3>(4) */
    expect_ids(l, "h\xc3", 2, false, (int32_t[]){14, 4}, 2, "llama2 invalid utf-8");
    al_tokenizer_free(g);
    al_tokenizer_free(l);
}

/* An HF model directory without tokenizer.json falls back to vocab.json + merges.txt
 * (with a "#version" header), and then to tokenizer.model (here a tiny tiktoken file:
 * "a"=0 "b"=1 "ab"=2, so "abba" -> "abba" is one cl100k piece -> ab(2) b(1) a(0)). */
static void test_directory_fallbacks(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/alloy_tok_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    const char *v = "{\"a\": 0, \"b\": 1, \"ab\": 2, \"\xc4\xa0\": 3, \"\xc4\xa0" "ab\": 4}";
    const char *m = "#version: 0.2\r\na b\r\n\xc4\xa0" " ab\r\n";
    write_tmp("vocab.json", v, strlen(v));
    write_tmp("merges.txt", m, strlen(m));
    al_tokenizer *t = load_ok(tmpdir);
    expect_ids(t, "ab ab", 5, false, (int32_t[]){2, 4}, 2, "dir vocab.json");
    expect_roundtrip(t, "ab ab", 5, "dir vocab.json");
    al_tokenizer_free(t);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -f %s/vocab.json %s/merges.txt", tmpdir, tmpdir);
    assert_int_equal(system(cmd), 0);
    const char *tk = "YQ== 0\nYg== 1\nYWI= 2\n";
    write_tmp("tokenizer.model", tk, strlen(tk));
    t = load_ok(tmpdir);
    expect_ids(t, "abba", 4, false, (int32_t[]){2, 1, 0}, 3, "dir tiktoken");
    assert_string_equal(al_tokenizer_token(t, 2), "ab");
    al_tokenizer_free(t);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    assert_int_equal(system(cmd), 0);
}

/* Every prefix of a valid file, and single-byte corruptions, load cleanly or fail
 * with an error: never crash (run under ASan in CI). */
static void test_truncations(void **state)
{
    (void)state;
    static const char *files[] = { FIX "hand/llama2_like.json", FIX "hand/llama3_like.json",
                                   FIX "torchtune/m.model", FIX "torchtune/tiktoken_small.model" };
    snprintf(tmpdir, sizeof tmpdir, "/tmp/alloy_tok_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    for (int f = 0; f < 4; f++) {
        size_t n;
        char *data = slurp(files[f], &n);
        assert_non_null(data);
        const char *name = strstr(files[f], ".json") ? "x.json" : "x.model";
        size_t step = n > 4000 ? n / 151 : 2;
        for (size_t k = 0; k < n; k += step) {
            for (int mode = 0; mode < 2; mode++) {
                char saved = data[k];
                if (mode) data[k] = (char)(data[k] ^ 0x5a);
                const char *p = write_tmp(name, data, mode ? n : k);
                data[k] = saved;
                al_tokenizer *t = NULL;
                al_error err = {0};
                if (al_tokenizer_load(&t, p, &err) == AL_OK) {
                    int32_t *ids; size_t ni;
                    assert_int_equal(al_tokenizer_encode(t, "hello world 123", 15, true, &ids, &ni, NULL), AL_OK);
                    al_free(ids);
                    al_tokenizer_free(t);
                } else {
                    assert_true(err.msg[0] != '\0');
                    assert_null(t);
                }
            }
        }
        free(data);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    assert_int_equal(system(cmd), 0);
}

/* Every allocation failure during load and encode ends in AL_ERR_NOMEM, nothing leaked. */
static void test_alloc_failures(void **state)
{
    (void)state;
    static const char *files[] = { FIX "hand/llama2_like.json", FIX "hand/llama3_like.json",
                                   FIX "hand/metaspace_like.json", FIX "torchtune/tiktoken_small.model" };
    for (int f = 0; f < 4; f++) {
        for (long k = 1; k < 100000; k++) {
            al_tokenizer *t = NULL;
            al_error err = {0};
            al_alloc_fail_at(k);
            al_status st = al_tokenizer_load(&t, files[f], &err);
            int32_t *ids = NULL; size_t n = 0;
            if (st == AL_OK) st = al_tokenizer_encode(t, "hello world h\xc3\xa9 12345", 22, true, &ids, &n, &err);
            al_alloc_fail_at(0);
            al_free(ids);
            al_tokenizer_free(t);
            if (st == AL_OK) break;
            if (st != AL_ERR_NOMEM) fail_msg("%s: alloc %ld: status %d: %s", files[f], k, st, err.msg);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2_tokenizer_json),
        cmocka_unit_test(test_gpt2_vocab_merges),
        cmocka_unit_test(test_gpt2_tiktoken),
        cmocka_unit_test(test_gpt2_speed),
        cmocka_unit_test(test_offsets),
        cmocka_unit_test(test_family_vectors),
        cmocka_unit_test(test_llama2_like),
        cmocka_unit_test(test_metaspace_like),
        cmocka_unit_test(test_llama3_like),
        cmocka_unit_test(test_torchtune_tiktoken),
        cmocka_unit_test(test_torchtune_spm_unigram),
        cmocka_unit_test(test_meta_llama3),
        cmocka_unit_test(test_meta_llama2),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_directory_fallbacks),
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
