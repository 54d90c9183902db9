/* io/tokenizer.h: BPE tokenizers (GPT-2, Llama-2/Mistral, Llama-3 families), in C.
 *
 * Files read:
 *   - Hugging Face tokenizer.json with a BPE model: byte-level (GPT-2, GPT-J, Llama-3:
 *     ByteLevel / Split(regex) / Sequence pre-tokenizers, ignore_merges) and
 *     Metaspace/SentencePiece style (Llama-2, Mistral: Prepend/Replace normalizers,
 *     Metaspace pre-tokenizer, byte_fallback, Replace/ByteFallback/Fuse/Strip decoders);
 *     merges as "a b" strings or ["a","b"] pairs; added_tokens; TemplateProcessing,
 *     RobertaProcessing/BertProcessing and ByteLevel post-processors.
 *   - GPT-2 vocab.json + merges.txt (byte-level; "#version" lines skipped).
 *   - tiktoken rank files (base64 token + rank per line): GPT-2 r50k (50,256 ranks) gets
 *     the GPT-2 regex and <|endoftext|>; anything else the cl100k/Llama-3 regex, and a
 *     128,000-rank file Llama-3's 256 specials at 128000..128255.
 *   - SentencePiece tokenizer.model (protobuf) of model_type BPE (Llama-2).
 *   - An HF model directory: tokenizer.json, else vocab.json + merges.txt, else
 *     tokenizer.model.
 * Not supported (clear AL_ERR_UNSUPPORTED): WordPiece/WordLevel/Unigram models,
 * Unicode normalizers (NFC/NFKC/...), Lowercase, regex Replace, continuing_subword_prefix.
 *
 * Bytes, not characters: encode accepts any bytes. Byte-level tokenizers encode invalid
 * UTF-8 byte by byte like any other byte (regexes never match an invalid sequence, so
 * it stays a piece of its own); Metaspace/SentencePiece tokenizers treat each invalid
 * byte as an unknown character (byte fallback <0xNN>, else unk). decode returns raw
 * bytes (no U+FFFD substitution), so decode(encode(s)) == s for byte-level tokenizers.
 *
 * A loaded tokenizer is immutable: encode/decode on one al_tokenizer may run from
 * several threads at once. */
#ifndef AL_TOKENIZER_H
#define AL_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

typedef struct al_tokenizer al_tokenizer;

/* Byte range [start, end) of a token in the text given to encode. A token made of
 * bytes the tokenizer inserted (BOS/EOS from the post-processor) has start == end. */
typedef struct { size_t start, end; } al_tok_span;

/* Load a tokenizer from `path`: a tokenizer.json, an HF model directory, a vocab.json
 * (merges.txt beside it), a tiktoken rank file or a SentencePiece tokenizer.model.
 * Returns owned *out; free with al_tokenizer_free. Errors name the file and, for JSON,
 * the line:column or the JSON path at fault. */
al_status al_tokenizer_load(al_tokenizer **out, const char *path, al_error *err);
void al_tokenizer_free(al_tokenizer *t);

/* Encode len bytes of text (need not be NUL-terminated). add_special adds what the
 * post-processor adds (TemplateProcessing: e.g. Llama's BOS; GPT-2's ByteLevel: none;
 * SentencePiece model and Llama-3 tiktoken: BOS). Added/special tokens in the text are
 * always recognised. *ids is owned (al_free); *n may be 0. */
al_status al_tokenizer_encode(const al_tokenizer *t, const char *text, size_t len,
                              bool add_special, int32_t **ids, size_t *n, al_error *err);
/* The same, with the byte span of each token in text (*spans owned, al_free; spans may
 * be NULL). Byte-level tokens that split a multi-byte character get the exact bytes. */
al_status al_tokenizer_encode_offsets(const al_tokenizer *t, const char *text, size_t len,
                                      bool add_special, int32_t **ids, al_tok_span **spans,
                                      size_t *n, al_error *err);

/* Decode ids to bytes (*text owned, NUL-terminated, *len excludes the NUL). Special
 * tokens are written as their text (HF skip_special_tokens=False), except SentencePiece
 * control tokens (<s>, </s>) which are dropped as sentencepiece does. An id outside
 * [0, vocab_size) or with no token is AL_ERR_USAGE. */
al_status al_tokenizer_decode(const al_tokenizer *t, const int32_t *ids, size_t n,
                              char **text, size_t *len, al_error *err);

/* max id + 1 (ids may have gaps: al_tokenizer_token returns NULL for those). */
int32_t al_tokenizer_vocab_size(const al_tokenizer *t);
/* The token as the file spells it ("Ġthe", "▁the", "<0x0A>"); tiktoken tokens in the
 * GPT-2 byte-to-unicode spelling. Valid until al_tokenizer_free. NULL if no such id. */
const char *al_tokenizer_token(const al_tokenizer *t, int32_t id);
/* Inverse of al_tokenizer_token; -1 if absent. */
int32_t al_tokenizer_token_id(const al_tokenizer *t, const char *token);
/* BOS/EOS ids: from the post-processor template, else tokenizer_config.json /
 * special_tokens_map.json beside the file, else the format's convention; -1 if none. */
/* True when id is an added token (matched in raw text before pre-tokenization). */
bool al_tokenizer_is_added(const al_tokenizer *t, int32_t id);
int32_t al_tokenizer_bos(const al_tokenizer *t);
int32_t al_tokenizer_eos(const al_tokenizer *t);

/* For ROME's subject lookup: index of the token whose span contains byte `offset`
 * (the last such token if several do), or n if none does. */
size_t al_tok_span_find(const al_tok_span *spans, size_t n, size_t offset);

#endif
