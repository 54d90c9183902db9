/* io/tokenizer.c: BPE tokenizers from tokenizer.json, vocab.json+merges.txt, tiktoken
 * rank files and SentencePiece models.
 *
 * One pipeline serves every format (it mirrors HF tokenizers' order of stages):
 *   1. added tokens are matched in the raw text first (leftmost, longest) and split it;
 *   2. each remaining segment is normalised by string edits (Prepend, Replace, the
 *      ByteLevel prefix space, Metaspace's "▁" replacement and prepend, SentencePiece's
 *      whitespace rules); every normalised byte remembers the original bytes it came
 *      from, which gives token offsets;
 *   3. pre-tokenizer splits (regexes on PCRE2 with UTF+UCP, compiled once, JIT when
 *      available) cut the segment into pieces;
 *   4. each piece is BPE-encoded, independently.
 *
 * Vocabulary keys live in the domain the text is in at step 4: raw bytes for byte-level
 * tokenizers (the GPT-2 byte<->unicode map is undone at load, so BPE runs on bytes and
 * never maps the text), the file's own spelling ("▁the") otherwise.
 *
 * BPE (step 4) keeps the piece as a linked list of symbols and a binary heap of candidate
 * merges ordered by (priority, left position); a popped candidate whose two symbols
 * changed since it was pushed is stale and skipped. Merging the best-ranked pair, leftmost
 * first, one occurrence at a time, gives the same result as GPT-2's "merge every
 * occurrence of the best pair per step" and HF's word.merge_all. The priority is
 *   - HF merges: the merge's rank (line number) for the pair (left id, right id);
 *   - tiktoken: the rank of the concatenated bytes, if that is a token (tiktoken's
 *     byte_pair_merge);
 *   - SentencePiece BPE: minus the score of the concatenated piece (bpe_model.cc).
 * ignore_merges (HF, Llama-3) and tiktoken look the whole piece up first.
 *
 * Known simplifications (none matters for the GPT-2, Llama-2/3 or Mistral files):
 *   - the string edits of pre-tokenizers (ByteLevel's prefix space, Metaspace) apply to
 *     the whole segment before any split, where HF applies them per existing piece;
 *   - characters missing from the vocabulary become <0xNN> byte tokens after merging
 *     (as sentencepiece does), not before (HF), so byte tokens never merge;
 *   - BPE dropout is ignored (encoding is deterministic); added tokens' single_word and
 *     normalized flags are ignored (matched on the raw text); lstrip/rstrip are honoured. */
#include "tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "../core/alloc.h"
#include "../core/file.h"

/* ---- limits on files from strangers -------------------------------------------- */
#define TOK_MAX_FILE   (128u << 20)   /* bytes of any tokenizer file */
#define TOK_MAX_IDS    (1 << 23)      /* 8M token ids */
#define TOK_MAX_MERGES 100000000u

/* The regexes of GPT-2 (HF ByteLevel, tiktoken r50k) and cl100k (Llama-3). */
static const char RE_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char RE_CL100K[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char META_DEFAULT[] = "\xe2\x96\x81";   /* U+2581 "▁" */

/* ---- GPT-2 byte <-> unicode map ---------------------------------------------------
 * Printable Latin-1 bytes (33..126, 161..172, 174..255) stand for themselves; the other
 * 68 bytes map, in byte order, to U+0100..U+0143 (openai/gpt-2 encoder.py bytes_to_unicode). */
static bool bl_is_self(unsigned b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

static unsigned bl_cp_of_byte(unsigned b)
{
    if (bl_is_self(b)) return b;
    unsigned k = 0;
    for (unsigned i = 0; i < b; i++) k += !bl_is_self(i);
    return 256 + k;
}

static int bl_byte_of_cp(uint32_t cp)
{
    if (cp < 256) return bl_is_self(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    unsigned k = cp - 256;
    for (unsigned b = 0; b < 256; b++)
        if (!bl_is_self(b) && k-- == 0) return (int)b;
    return -1;
}

/* ---- UTF-8 --------------------------------------------------------------------- */
/* Length of the valid UTF-8 character at s (at most n bytes) and its code point; an
 * invalid or truncated sequence is one byte with *cp = UINT32_MAX. */
static size_t utf8_next(const char *s, size_t n, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned c = u[0];
    size_t len; uint32_t v, min;
    if (c < 0x80) { *cp = c; return 1; }
    if (c >= 0xc2 && c <= 0xdf) { len = 2; v = c & 0x1f; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { len = 3; v = c & 0x0f; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { len = 4; v = c & 0x07; min = 0x10000; }
    else { *cp = UINT32_MAX; return 1; }
    if (len > n) { *cp = UINT32_MAX; return 1; }
    for (size_t i = 1; i < len; i++) {
        if ((u[i] & 0xc0) != 0x80) { *cp = UINT32_MAX; return 1; }
        v = (v << 6) | (u[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) { *cp = UINT32_MAX; return 1; }
    *cp = v;
    return len;
}

static size_t utf8_put(char *o, uint32_t cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    o[0] = (char)(0xe0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[2] = (char)(0x80 | (cp & 0x3f));
    return 3;   /* the byte map only needs code points < U+0144 */
}

/* Undo the byte map: false if some character is not one of the 256. out needs n bytes. */
static bool bl_unmap(const char *s, size_t n, char *out, size_t *on)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = utf8_next(s + i, n - i, &cp);
        int b = cp == UINT32_MAX ? -1 : bl_byte_of_cp(cp);
        if (b < 0) return false;
        out[o++] = (char)b;
        i += l;
    }
    *on = o;
    return true;
}

/* ---- the tokenizer ------------------------------------------------------------- */
enum { MM_PAIR, MM_RANK, MM_SCORE };                          /* merge priority source */
enum { ED_PREPEND, ED_REPLACE, ED_BL_PREFIX, ED_META, ED_SPM };  /* string edits */
enum { PS_ALWAYS, PS_FIRST, PS_NEVER };                       /* Metaspace prepend_scheme */
enum { SB_ISOLATED, SB_REMOVED, SB_MERGED_PREV, SB_MERGED_NEXT, SB_CONTIGUOUS };
enum { F_PRESENT = 1, F_SPECIAL = 2, F_CONTROL = 4, F_MAPPED = 8 };

typedef struct {
    int kind;
    char *a, *b;          /* ED_PREPEND: a; ED_REPLACE: a -> b; ED_META: a = replacement */
    size_t an, bn;
    int scheme;           /* ED_META: PS_*; ED_SPM: bit0 remove extra ws, bit1 dummy prefix */
} tok_edit;

typedef struct { pcre2_code *re; int behavior; bool invert; } tok_split;
typedef struct { char *s; size_t n; int32_t id; bool lstrip, rstrip; } tok_added;
typedef struct { char *from, *to; } tok_repl;

struct al_tokenizer {
    int32_t n_ids;
    size_t *str_off, *key_off, *out_off;   /* into pool; each string NUL-terminated */
    uint32_t *key_len, *out_len;
    uint8_t *flags;
    float *score;
    char *pool; size_t pool_n, pool_cap;

    int32_t *map; size_t map_cap;          /* key bytes -> id, open addressing */
    uint64_t *pair_key; int32_t *pair_rank, *pair_id; size_t pair_cap, n_pairs;

    int merge_mode;
    bool byte_level, ignore_merges, byte_fallback, fuse_unk, spm;
    int32_t unk, bos, eos;
    int32_t byte_id[256];

    tok_edit *edits; size_t n_edits;
    tok_split *splits; size_t n_splits;
    tok_added *added; size_t n_added;
    int32_t pre_ids[4], post_ids[4]; size_t n_pre, n_post;

    /* decoder */
    bool dec_byte_level, dec_byte_fallback;
    tok_repl repl[4]; size_t n_repl;
    int dec_strip_start, dec_strip_stop;

    pcre2_general_context *gctx;
};

static void *pc_malloc(PCRE2_SIZE n, void *ud) { (void)ud; return al_malloc(n); }
static void pc_free(void *p, void *ud) { (void)ud; al_free(p); }

void al_tokenizer_free(al_tokenizer *t)
{
    if (!t) return;
    al_free(t->str_off); al_free(t->key_off); al_free(t->out_off);
    al_free(t->key_len); al_free(t->out_len); al_free(t->flags); al_free(t->score);
    al_free(t->pool); al_free(t->map);
    al_free(t->pair_key); al_free(t->pair_rank); al_free(t->pair_id);
    for (size_t i = 0; i < t->n_edits; i++) { al_free(t->edits[i].a); al_free(t->edits[i].b); }
    al_free(t->edits);
    for (size_t i = 0; i < t->n_splits; i++) pcre2_code_free(t->splits[i].re);
    al_free(t->splits);
    for (size_t i = 0; i < t->n_added; i++) al_free(t->added[i].s);
    al_free(t->added);
    for (size_t i = 0; i < t->n_repl; i++) { al_free(t->repl[i].from); al_free(t->repl[i].to); }
    pcre2_general_context_free(t->gctx);
    al_free(t);
}

static al_tokenizer *tok_new(void)
{
    al_tokenizer *t = al_calloc(1, sizeof *t);
    if (!t) return NULL;
    t->unk = t->bos = t->eos = -1;
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    t->gctx = pcre2_general_context_create(pc_malloc, pc_free, NULL);
    if (!t->gctx) { al_free(t); return NULL; }
    return t;
}

static al_status nomem(al_error *err) { return al_errorf(err, AL_ERR_NOMEM, "out of memory"); }

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return true;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) nc *= 2;
    void *q = al_realloc(*p, nc * elem);
    if (!q) return false;
    *p = q; *cap = nc;
    return true;
}

static bool pool_add(al_tokenizer *t, const char *s, size_t n, size_t *off)
{
    if (!grow((void **)&t->pool, &t->pool_cap, t->pool_n + n + 1, 1)) return false;
    if (n) memcpy(t->pool + t->pool_n, s, n);
    t->pool[t->pool_n + n] = '\0';
    *off = t->pool_n;
    t->pool_n += n + 1;
    return true;
}

static bool ids_alloc(al_tokenizer *t, int32_t n)
{
    t->n_ids = n;
    size_t m = n ? (size_t)n : 1;
    t->str_off = al_calloc(m, sizeof(size_t)); t->key_off = al_calloc(m, sizeof(size_t));
    t->out_off = al_calloc(m, sizeof(size_t));
    t->key_len = al_calloc(m, 4); t->out_len = al_calloc(m, 4);
    t->flags = al_calloc(m, 1); t->score = al_calloc(m, sizeof(float));
    return t->str_off && t->key_off && t->out_off && t->key_len && t->out_len && t->flags && t->score;
}

/* Record id: str is the file's spelling, key the lookup bytes, out the decoded bytes. */
static bool id_set(al_tokenizer *t, int32_t id, const char *str, size_t sn, const char *key, size_t kn,
                   const char *out, size_t on, uint8_t flags)
{
    if (!pool_add(t, str, sn, &t->str_off[id]) || !pool_add(t, key, kn, &t->key_off[id])
        || !pool_add(t, out, on, &t->out_off[id]))
        return false;
    t->key_len[id] = (uint32_t)kn; t->out_len[id] = (uint32_t)on;
    t->flags[id] = (uint8_t)(flags | F_PRESENT);
    return true;
}

static inline const char *id_key(const al_tokenizer *t, int32_t id) { return t->pool + t->key_off[id]; }

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ull; }
    return h ^ (h >> 29);
}

static int32_t map_find(const al_tokenizer *t, const char *s, size_t n)
{
    if (!t->map_cap) return -1;
    size_t mask = t->map_cap - 1, i = hash_bytes(s, n) & mask;
    for (;; i = (i + 1) & mask) {
        int32_t id = t->map[i];
        if (id < 0) return -1;
        if (t->key_len[id] == n && memcmp(id_key(t, id), s, n) == 0) return id;
    }
}

/* Index every id flagged F_MAPPED by its key; the first id with a given key wins. */
static bool map_build(al_tokenizer *t)
{
    size_t cap = 16;
    while (cap < 2 * (size_t)t->n_ids + 16) cap *= 2;
    t->map = al_malloc(cap * sizeof(int32_t));
    if (!t->map) return false;
    memset(t->map, 0xff, cap * sizeof(int32_t));
    t->map_cap = cap;
    for (int32_t id = 0; id < t->n_ids; id++) {
        if (!(t->flags[id] & F_MAPPED)) continue;
        const char *k = id_key(t, id);
        size_t n = t->key_len[id], i = hash_bytes(k, n) & (cap - 1);
        for (; t->map[i] >= 0; i = (i + 1) & (cap - 1))
            if (t->key_len[t->map[i]] == n && memcmp(id_key(t, t->map[i]), k, n) == 0) break;
        if (t->map[i] < 0) t->map[i] = id;
    }
    return true;
}

static inline uint64_t pair_hash(uint64_t k)
{
    k ^= k >> 33; k *= 0xff51afd7ed558ccdull; k ^= k >> 33;
    return k;
}

static bool pair_alloc(al_tokenizer *t, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n + 16) cap *= 2;
    t->pair_key = al_malloc(cap * 8); t->pair_rank = al_malloc(cap * 4); t->pair_id = al_malloc(cap * 4);
    if (!t->pair_key || !t->pair_rank || !t->pair_id) return false;
    memset(t->pair_rank, 0xff, cap * 4);
    t->pair_cap = cap;
    return true;
}

/* First occurrence of a pair keeps its rank (HF keeps the first too). */
static void pair_put(al_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t id)
{
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t mask = t->pair_cap - 1, i = pair_hash(k) & mask;
    for (; t->pair_rank[i] >= 0; i = (i + 1) & mask)
        if (t->pair_key[i] == k) return;
    t->pair_key[i] = k; t->pair_rank[i] = rank; t->pair_id[i] = id;
    t->n_pairs++;
}

static bool pair_get(const al_tokenizer *t, int32_t a, int32_t b, int32_t *rank, int32_t *id)
{
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t mask = t->pair_cap - 1, i = pair_hash(k) & mask;
    for (; t->pair_rank[i] >= 0; i = (i + 1) & mask)
        if (t->pair_key[i] == k) { *rank = t->pair_rank[i]; *id = t->pair_id[i]; return true; }
    return false;
}

/* ---- normalised text with provenance ----------------------------------------------
 * b[i] came from original bytes [s[i], e[i]); inserted bytes get an empty range. */
typedef struct { char *b; size_t *s, *e; size_t n, cap; } nstr;

static void nstr_free(nstr *x) { al_free(x->b); al_free(x->s); al_free(x->e); memset(x, 0, sizeof *x); }

static bool nstr_push(nstr *x, const char *p, size_t n, size_t s, size_t e)
{
    if (x->n + n > x->cap) {
        size_t nc = x->cap ? x->cap : 64;
        while (nc < x->n + n) nc *= 2;
        char *b = al_realloc(x->b, nc);
        if (!b) return false;
        x->b = b;
        size_t *ss = al_realloc(x->s, nc * sizeof(size_t));
        if (!ss) return false;
        x->s = ss;
        size_t *ee = al_realloc(x->e, nc * sizeof(size_t));
        if (!ee) return false;
        x->e = ee;
        x->cap = nc;
    }
    for (size_t i = 0; i < n; i++) { x->b[x->n + i] = p[i]; x->s[x->n + i] = s; x->e[x->n + i] = e; }
    x->n += n;
    return true;
}

/* Replace every non-overlapping occurrence of `from` with `to` (src -> dst). */
static bool nstr_replace(nstr *dst, const nstr *src, const char *from, size_t fn, const char *to, size_t tn)
{
    for (size_t i = 0; i < src->n;) {
        if (fn && i + fn <= src->n && memcmp(src->b + i, from, fn) == 0) {
            if (!nstr_push(dst, to, tn, src->s[i], src->e[i + fn - 1])) return false;
            i += fn;
        } else {
            if (!nstr_push(dst, src->b + i, 1, src->s[i], src->e[i])) return false;
            i++;
        }
    }
    return true;
}

static bool nstr_prepend(nstr *dst, const nstr *src, const char *p, size_t pn)
{
    size_t at = src->n ? src->s[0] : 0;
    if (!nstr_push(dst, p, pn, at, at)) return false;
    for (size_t i = 0; i < src->n; i++)
        if (!nstr_push(dst, src->b + i, 1, src->s[i], src->e[i])) return false;
    return true;
}

static bool nstr_starts(const nstr *x, const char *p, size_t n) { return x->n >= n && memcmp(x->b, p, n) == 0; }

/* Apply one edit to *x (a segment starting at original offset seg0). */
static bool edit_apply(const tok_edit *ed, nstr *x, size_t seg0)
{
    nstr y = {0};
    bool ok = true, changed = true;
    switch (ed->kind) {
    case ED_PREPEND:               /* HF Prepend normalizer: only a non-empty string */
        if (x->n) ok = nstr_prepend(&y, x, ed->a, ed->an); else changed = false;
        break;
    case ED_REPLACE:
        ok = nstr_replace(&y, x, ed->a, ed->an, ed->b, ed->bn);
        break;
    case ED_BL_PREFIX:             /* HF ByteLevel add_prefix_space */
        if (x->n && x->b[0] != ' ') ok = nstr_prepend(&y, x, " ", 1); else changed = false;
        break;
    case ED_META: {                /* HF Metaspace: ' ' -> replacement, then maybe prepend it */
        ok = nstr_replace(&y, x, " ", 1, ed->a, ed->an);
        bool pre = ed->scheme == PS_ALWAYS || (ed->scheme == PS_FIRST && seg0 == 0);
        if (ok && pre && y.n && !nstr_starts(&y, ed->a, ed->an)) {
            nstr z = {0};
            ok = nstr_prepend(&z, &y, ed->a, ed->an);
            nstr_free(&y);
            y = z;
        }
        break;
    }
    case ED_SPM: {                 /* sentencepiece normalizer.cc, identity rules */
        bool rm = ed->scheme & 1, dummy = ed->scheme & 2;
        nstr w = {0};
        for (size_t i = 0; ok && i < x->n; i++) {
            if (rm && x->b[i] == ' ' && (w.n == 0 || w.b[w.n - 1] == ' ')) continue;
            ok = nstr_push(&w, x->b + i, 1, x->s[i], x->e[i]);
        }
        if (rm) while (w.n && w.b[w.n - 1] == ' ') w.n--;
        if (ok && dummy && w.n) {
            nstr z = {0};
            ok = nstr_prepend(&z, &w, " ", 1);
            nstr_free(&w);
            w = z;
        }
        if (ok) ok = nstr_replace(&y, &w, " ", 1, META_DEFAULT, 3);
        nstr_free(&w);
        break;
    }
    default: changed = false;
    }
    if (!ok || !changed) { nstr_free(&y); return ok; }
    nstr_free(x);
    *x = y;
    return true;
}

/* ---- output buffer ---------------------------------------------------------------- */
typedef struct { int32_t *ids; al_tok_span *sp; size_t n, cap; } tok_out;

static bool out_push(tok_out *o, int32_t id, size_t s, size_t e)
{
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 64;
        int32_t *ids = al_realloc(o->ids, nc * sizeof *ids);
        if (!ids) return false;
        o->ids = ids;
        al_tok_span *sp = al_realloc(o->sp, nc * sizeof *sp);
        if (!sp) return false;
        o->sp = sp;
        o->cap = nc;
    }
    o->ids[o->n] = id;
    o->sp[o->n].start = s; o->sp[o->n].end = e;
    o->n++;
    return true;
}

/* ---- BPE on one piece -------------------------------------------------------------- */
typedef struct { size_t start, end; int32_t id, prev, next; bool dead; } sym;
typedef struct { double prio; int32_t l, r, id; size_t lend, rend; } cand;
typedef struct { sym *sy; size_t sy_cap; cand *h; size_t hn, h_cap; } bpe_work;

static bool cand_less(const cand *a, const cand *b)
{
    return a->prio < b->prio || (a->prio == b->prio && a->l < b->l);
}

static bool heap_push(bpe_work *w, cand c)
{
    if (!grow((void **)&w->h, &w->h_cap, w->hn + 1, sizeof(cand))) return false;
    size_t i = w->hn++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &w->h[p])) break;
        w->h[i] = w->h[p];
        i = p;
    }
    w->h[i] = c;
    return true;
}

static cand heap_pop(bpe_work *w)
{
    cand top = w->h[0], last = w->h[--w->hn];
    size_t i = 0, n = w->hn;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && cand_less(&w->h[c + 1], &w->h[c])) c++;
        if (!cand_less(&w->h[c], &last)) break;
        w->h[i] = w->h[c];
        i = c;
    }
    if (n) w->h[i] = last;
    return top;
}

/* Push the merge of symbols l and r (adjacent) if there is one. */
static bool try_pair(const al_tokenizer *t, bpe_work *w, const char *s, int32_t l, int32_t r)
{
    if (l < 0 || r < 0) return true;
    const sym *L = &w->sy[l], *R = &w->sy[r];
    cand c = { 0, l, r, -1, L->end, R->end };
    if (t->merge_mode == MM_PAIR) {
        int32_t rank;
        if (L->id < 0 || R->id < 0 || !pair_get(t, L->id, R->id, &rank, &c.id)) return true;
        c.prio = rank;
    } else {
        c.id = map_find(t, s + L->start, R->end - L->start);
        if (c.id < 0) return true;
        c.prio = t->merge_mode == MM_RANK ? (double)c.id : -(double)t->score[c.id];
    }
    return heap_push(w, c);
}

static bool emit_sym(const al_tokenizer *t, tok_out *o, const nstr *x, const sym *y, bool *last_unk)
{
    if (y->id >= 0) { *last_unk = false; return out_push(o, y->id, x->s[y->start], x->e[y->end - 1]); }
    if (t->byte_fallback) {
        bool all = true;
        for (size_t i = y->start; i < y->end; i++) all &= t->byte_id[(unsigned char)x->b[i]] >= 0;
        if (all) {
            *last_unk = false;
            for (size_t i = y->start; i < y->end; i++)
                if (!out_push(o, t->byte_id[(unsigned char)x->b[i]], x->s[i], x->e[i])) return false;
            return true;
        }
    }
    if (t->unk < 0) return true;       /* HF BPE without unk_token drops the character */
    if (t->fuse_unk && *last_unk && o->n) { o->sp[o->n - 1].end = x->e[y->end - 1]; return true; }
    *last_unk = true;
    return out_push(o, t->unk, x->s[y->start], x->e[y->end - 1]);
}

static al_status bpe_piece(const al_tokenizer *t, bpe_work *w, const nstr *x, size_t a, size_t b,
                           tok_out *o, al_error *err)
{
    const char *s = x->b;
    if (b <= a) return AL_OK;
    if (t->ignore_merges) {
        int32_t id = map_find(t, s + a, b - a);
        if (id >= 0) return out_push(o, id, x->s[a], x->e[b - 1]) ? AL_OK : nomem(err);
    }
    if (!grow((void **)&w->sy, &w->sy_cap, b - a, sizeof(sym))) return nomem(err);
    int32_t n = 0;
    for (size_t i = a; i < b;) {
        uint32_t cp;
        size_t l = t->byte_level ? 1 : utf8_next(s + i, b - i, &cp);
        sym *y = &w->sy[n];
        y->start = i; y->end = i + l; y->dead = false;
        y->id = t->byte_level ? t->byte_id[(unsigned char)s[i]] : map_find(t, s + i, l);
        y->prev = n - 1; y->next = -1;
        if (n) w->sy[n - 1].next = n;
        n++;
        i += l;
    }
    w->hn = 0;
    for (int32_t i = 0; i + 1 < n; i++)
        if (!try_pair(t, w, s, i, i + 1)) return nomem(err);
    while (w->hn) {
        cand c = heap_pop(w);
        sym *L = &w->sy[c.l], *R = &w->sy[c.r];
        if (L->dead || R->dead || L->next != c.r || L->end != c.lend || R->end != c.rend) continue;
        L->end = R->end; L->id = c.id; L->next = R->next; R->dead = true;
        if (R->next >= 0) w->sy[R->next].prev = c.l;
        if (!try_pair(t, w, s, L->prev, c.l) || !try_pair(t, w, s, c.l, L->next)) return nomem(err);
    }
    bool last_unk = false;
    for (int32_t i = 0; i >= 0; i = w->sy[i].next)
        if (!emit_sym(t, o, x, &w->sy[i], &last_unk)) return nomem(err);
    return AL_OK;
}

/* ---- pre-tokenizer splits ------------------------------------------------------------ */
typedef struct { size_t a, b; } range;
typedef struct { range *r; size_t n, cap; } ranges;

static bool rg_push(ranges *g, size_t a, size_t b)
{
    if (!grow((void **)&g->r, &g->cap, g->n + 1, sizeof(range))) return false;
    g->r[g->n].a = a; g->r[g->n].b = b;
    g->n++;
    return true;
}

/* Add segment [a,b) (is_match per the regex, after invert) to out per HF SplitDelimiterBehavior. */
static bool split_add(ranges *out, size_t first, int beh, size_t a, size_t b, bool m, bool *prev_m)
{
    bool ok = true, has_last = out->n > first;
    switch (beh) {
    case SB_ISOLATED: ok = rg_push(out, a, b); break;
    case SB_REMOVED: if (!m) ok = rg_push(out, a, b); break;
    case SB_MERGED_PREV:
        if (m && !*prev_m && has_last) out->r[out->n - 1].b = b; else ok = rg_push(out, a, b);
        break;
    case SB_MERGED_NEXT:
        if (*prev_m && has_last) out->r[out->n - 1].b = b; else ok = rg_push(out, a, b);
        break;
    case SB_CONTIGUOUS:
        if (m && *prev_m && has_last) out->r[out->n - 1].b = b; else ok = rg_push(out, a, b);
        break;
    }
    *prev_m = m;
    return ok;
}

static al_status split_ranges(const tok_split *sp, const nstr *x, const ranges *in,
                              ranges *out, pcre2_match_data *md, al_error *err)
{
    out->n = 0;
    for (size_t k = 0; k < in->n; k++) {
        size_t a = in->r[k].a, b = in->r[k].b, first = out->n, pos = 0, off = 0, len = b - a;
        const PCRE2_SPTR subj = (PCRE2_SPTR)(x->b + a);
        bool prev_m = false;
        while (off <= len) {
            int rc = pcre2_match(sp->re, subj, len, off, 0, md, NULL);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) {
                PCRE2_UCHAR msg[128];
                pcre2_get_error_message(rc, msg, sizeof msg);
                return al_errorf(err, AL_ERR_INTERNAL, "tokenizer: pre-tokenizer regex failed: %s", (char *)msg);
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            size_t ms = ov[0], me = ov[1];
            if (me == ms) {            /* empty matches are ignored, as in HF */
                off = ms + 1;
                while (off < len && ((unsigned char)x->b[a + off] & 0xc0) == 0x80) off++;
                continue;
            }
            if (ms > pos && !split_add(out, first, sp->behavior, a + pos, a + ms, sp->invert, &prev_m))
                return nomem(err);
            if (!split_add(out, first, sp->behavior, a + ms, a + me, !sp->invert, &prev_m)) return nomem(err);
            pos = off = me;
        }
        if (pos < len && !split_add(out, first, sp->behavior, a + pos, b, sp->invert, &prev_m)) return nomem(err);
    }
    return AL_OK;
}

/* ---- encode ----------------------------------------------------------------------- */
/* Longest added token at text[i], or NULL. */
static const tok_added *added_at(const al_tokenizer *t, const char *text, size_t len, size_t i)
{
    const tok_added *best = NULL;
    for (size_t k = 0; k < t->n_added; k++) {
        const tok_added *a = &t->added[k];
        if (a->n && a->n <= len - i && (!best || a->n > best->n) && text[i] == a->s[0]
            && memcmp(text + i, a->s, a->n) == 0)
            best = a;
    }
    return best;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

static al_status encode_segment(const al_tokenizer *t, const char *text, size_t p, size_t q, tok_out *o,
                                bpe_work *w, pcre2_match_data *md, al_error *err)
{
    nstr x = {0};
    ranges g1 = {0}, g2 = {0};
    al_status st = AL_OK;
    if (q <= p) return AL_OK;
    for (size_t i = p; i < q; i++)
        if (!nstr_push(&x, text + i, 1, i, i + 1)) { st = nomem(err); goto done; }
    for (size_t k = 0; k < t->n_edits; k++)
        if (!edit_apply(&t->edits[k], &x, p)) { st = nomem(err); goto done; }
    if (!rg_push(&g1, 0, x.n)) { st = nomem(err); goto done; }
    for (size_t k = 0; k < t->n_splits; k++) {
        if ((st = split_ranges(&t->splits[k], &x, &g1, &g2, md, err)) != AL_OK) goto done;
        ranges tmp = g1; g1 = g2; g2 = tmp;
    }
    for (size_t k = 0; k < g1.n; k++)
        if ((st = bpe_piece(t, w, &x, g1.r[k].a, g1.r[k].b, o, err)) != AL_OK) goto done;
done:
    nstr_free(&x);
    al_free(g1.r); al_free(g2.r);
    return st;
}

al_status al_tokenizer_encode_offsets(const al_tokenizer *t, const char *text, size_t len, bool add_special,
                                      int32_t **ids, al_tok_span **spans, size_t *n, al_error *err)
{
    tok_out o = {0};
    bpe_work w = {0};
    pcre2_match_data *md = NULL;
    al_status st = AL_OK;
    *ids = NULL; *n = 0;
    if (spans) *spans = NULL;
    if (!text && len) return al_errorf(err, AL_ERR_USAGE, "tokenizer: NULL text");
    if (t->n_splits && !(md = pcre2_match_data_create(4, t->gctx))) { st = nomem(err); goto done; }
    if (add_special)
        for (size_t k = 0; k < t->n_pre; k++)
            if (!out_push(&o, t->pre_ids[k], 0, 0)) { st = nomem(err); goto done; }
    size_t seg = 0;
    for (size_t i = 0; i < len;) {
        const tok_added *a = t->n_added ? added_at(t, text, len, i) : NULL;
        if (!a) { i++; continue; }
        size_t s = i, e = i + a->n, end_text = i;
        if (a->lstrip) while (end_text > seg && is_ws(text[end_text - 1])) end_text--, s--;
        if (a->rstrip) while (e < len && is_ws(text[e])) e++;
        if ((st = encode_segment(t, text, seg, end_text, &o, &w, md, err)) != AL_OK) goto done;
        if (!out_push(&o, a->id, s, e)) { st = nomem(err); goto done; }
        seg = i = e;
    }
    if ((st = encode_segment(t, text, seg, len, &o, &w, md, err)) != AL_OK) goto done;
    if (add_special)
        for (size_t k = 0; k < t->n_post; k++)
            if (!out_push(&o, t->post_ids[k], len, len)) { st = nomem(err); goto done; }
done:
    pcre2_match_data_free(md);
    al_free(w.sy); al_free(w.h);
    if (st != AL_OK) { al_free(o.ids); al_free(o.sp); return st; }
    if (!o.ids && !(o.ids = al_malloc(sizeof(int32_t)))) { al_free(o.sp); return nomem(err); }
    *ids = o.ids; *n = o.n;
    if (spans) {
        if (!o.sp && !(o.sp = al_malloc(sizeof(al_tok_span)))) { al_free(o.ids); *ids = NULL; *n = 0; return nomem(err); }
        *spans = o.sp;
    } else {
        al_free(o.sp);
    }
    return AL_OK;
}

al_status al_tokenizer_encode(const al_tokenizer *t, const char *text, size_t len, bool add_special,
                              int32_t **ids, size_t *n, al_error *err)
{
    return al_tokenizer_encode_offsets(t, text, len, add_special, ids, NULL, n, err);
}

/* ---- decode ----------------------------------------------------------------------- */
al_status al_tokenizer_decode(const al_tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len,
                              al_error *err)
{
    size_t total = 0;
    *text = NULL; *len = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_ids || !(t->flags[ids[i]] & F_PRESENT))
            return al_errorf(err, AL_ERR_USAGE, "tokenizer: decode: id %ld at position %zu is not a token",
                             (long)ids[i], i);
        total += t->out_len[ids[i]];
    }
    char *o = al_malloc(total + 1);
    if (!o) return nomem(err);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (t->spm && (t->flags[ids[i]] & F_CONTROL)) continue;
        memcpy(o + k, t->pool + t->out_off[ids[i]], t->out_len[ids[i]]);
        k += t->out_len[ids[i]];
    }
    size_t a = 0;   /* HF Strip decoder / Metaspace decoder / sentencepiece dummy prefix */
    for (int j = 0; j < t->dec_strip_start && a < k && o[a] == ' '; j++) a++;
    for (int j = 0; j < t->dec_strip_stop && k > a && o[k - 1] == ' '; j++) k--;
    memmove(o, o + a, k - a);
    k -= a;
    o[k] = '\0';
    *text = o; *len = k;
    return AL_OK;
}

int32_t al_tokenizer_vocab_size(const al_tokenizer *t) { return t->n_ids; }

bool al_tokenizer_is_added(const al_tokenizer *t, int32_t id)
{
    for (size_t k = 0; k < t->n_added; k++) if (t->added[k].id == id) return true;
    return false;
}
int32_t al_tokenizer_bos(const al_tokenizer *t) { return t->bos; }
int32_t al_tokenizer_eos(const al_tokenizer *t) { return t->eos; }

const char *al_tokenizer_token(const al_tokenizer *t, int32_t id)
{
    if (id < 0 || id >= t->n_ids || !(t->flags[id] & F_PRESENT)) return NULL;
    return t->pool + t->str_off[id];
}

int32_t al_tokenizer_token_id(const al_tokenizer *t, const char *token)
{
    size_t n = strlen(token);
    for (size_t k = 0; k < t->n_added; k++)
        if (t->added[k].n == n && memcmp(t->added[k].s, token, n) == 0) return t->added[k].id;
    for (int32_t id = 0; id < t->n_ids; id++)   /* by spelling: not a hot path */
        if ((t->flags[id] & F_PRESENT) && strcmp(t->pool + t->str_off[id], token) == 0) return id;
    return -1;
}

size_t al_tok_span_find(const al_tok_span *spans, size_t n, size_t offset)
{
    for (size_t i = n; i-- > 0;)
        if (spans[i].start <= offset && offset < spans[i].end) return i;
    return n;
}

/* ---- shared load helpers ------------------------------------------------------------ */
static al_status read_all(const char *path, char **buf, size_t *n, al_error *err)
{
    return al_read_file(path, TOK_MAX_FILE, "tokenizer file", buf, n, err);
}

static al_status add_split(al_tokenizer *t, const char *pat, bool literal, int beh, bool invert,
                           const char *file, al_error *err)
{
    int ec; PCRE2_SIZE eo;
    pcre2_compile_context *cc = pcre2_compile_context_create(t->gctx);
    if (!cc) return nomem(err);
    /* PCRE2_LITERAL admits no UCP (meaningless for a literal anyway) */
    uint32_t opt = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opt, &ec, &eo, cc);
    pcre2_compile_context_free(cc);
    if (!re) {
        PCRE2_UCHAR msg[128];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return al_errorf(err, ec == PCRE2_ERROR_NOMEMORY || ec == PCRE2_ERROR_HEAP_FAILED ? AL_ERR_NOMEM : AL_ERR_FORMAT,
                         "%s: pre-tokenizer regex /%s/ at offset %zu: %s", file, pat, (size_t)eo, (char *)msg);
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);   /* interpreter if JIT is unavailable */
    tok_split *sp = al_realloc(t->splits, (t->n_splits + 1) * sizeof *sp);
    if (!sp) { pcre2_code_free(re); return nomem(err); }
    t->splits = sp;
    t->splits[t->n_splits++] = (tok_split){ re, beh, invert };
    return AL_OK;
}

static al_status add_edit(al_tokenizer *t, int kind, const char *a, const char *b, int scheme, al_error *err)
{
    tok_edit e = { kind, NULL, NULL, a ? strlen(a) : 0, b ? strlen(b) : 0, scheme };
    if ((a && !(e.a = al_strdup(a))) || (b && !(e.b = al_strdup(b)))) { al_free(e.a); al_free(e.b); return nomem(err); }
    tok_edit *p = al_realloc(t->edits, (t->n_edits + 1) * sizeof *p);
    if (!p) { al_free(e.a); al_free(e.b); return nomem(err); }
    t->edits = p;
    t->edits[t->n_edits++] = e;
    return AL_OK;
}

static al_status add_added(al_tokenizer *t, const char *s, int32_t id, bool lstrip, bool rstrip, al_error *err)
{
    tok_added *p = al_realloc(t->added, (t->n_added + 1) * sizeof *p);
    if (!p) return nomem(err);
    t->added = p;
    char *c = al_strdup(s);
    if (!c) return nomem(err);
    t->added[t->n_added++] = (tok_added){ c, strlen(s), id, lstrip, rstrip };
    return AL_OK;
}

static void find_byte_ids(al_tokenizer *t)
{
    for (int b = 0; b < 256; b++) {
        if (t->byte_level) {
            char c = (char)b;
            t->byte_id[b] = map_find(t, &c, 1);
        } else if (t->byte_id[b] < 0) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", b);
            t->byte_id[b] = map_find(t, name, 6);
        }
    }
}

/* bos/eos from tokenizer_config.json or special_tokens_map.json in dir; absent is fine. */
static void read_special_config(al_tokenizer *t, const char *dir)
{
    static const char *files[] = { "tokenizer_config.json", "special_tokens_map.json" };
    for (int f = 0; f < 2; f++) {
        char p[4096];
        if (snprintf(p, sizeof p, "%s/%s", dir, files[f]) >= (int)sizeof p) return;
        json_t *root = json_load_file(p, 0, NULL);
        if (!root) continue;
        static const char *keys[] = { "bos_token", "eos_token" };
        for (int k = 0; k < 2; k++) {
            json_t *v = json_object_get(root, keys[k]);
            if (json_is_object(v)) v = json_object_get(v, "content");
            const char *s = json_string_value(v);
            int32_t *dst = k ? &t->eos : &t->bos;
            if (s && *dst < 0) *dst = al_tokenizer_token_id(t, s);
        }
        json_decref(root);
    }
}

static void guess_bos_eos(al_tokenizer *t)
{
    static const char *bos[] = { "<s>", "<|begin_of_text|>", "<|endoftext|>" };
    static const char *eos[] = { "</s>", "<|end_of_text|>", "<|endoftext|>" };
    for (int i = 0; i < 3 && t->bos < 0; i++) t->bos = al_tokenizer_token_id(t, bos[i]);
    for (int i = 0; i < 3 && t->eos < 0; i++) t->eos = al_tokenizer_token_id(t, eos[i]);
}

static void dir_of(const char *path, char *dir, size_t n)
{
    const char *sl = strrchr(path, '/');
    if (!sl) snprintf(dir, n, ".");
    else snprintf(dir, n, "%.*s", (int)(sl - path) > 0 ? (int)(sl - path) : 1, path);
}

/* ---- HF tokenizer.json / vocab.json + merges.txt ------------------------------------- */
typedef struct { al_tokenizer *t; const char *file; al_error *err; } hfctx;

static al_status jerr(hfctx *c, const char *path, const char *what)
{
    return al_errorf(c->err, AL_ERR_FORMAT, "%s: %s: %s", c->file, path, what);
}

static al_status json_load_err(const char *file, const json_error_t *je, al_error *err)
{
    if (json_error_code(je) == json_error_out_of_memory) return nomem(err);
    return al_errorf(err, AL_ERR_FORMAT, "%s:%d:%d: invalid JSON: %s", file, je->line, je->column, je->text);
}

static const char *jtype(json_t *j) { return json_is_object(j) ? json_string_value(json_object_get(j, "type")) : NULL; }

static bool jbool(json_t *o, const char *k, bool dflt)
{
    json_t *v = json_object_get(o, k);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static al_status parse_normalizer(hfctx *c, json_t *j, const char *path);
static al_status parse_pretok(hfctx *c, json_t *j, const char *path);
static al_status parse_decoder(hfctx *c, json_t *j, const char *path);
static al_status parse_post(hfctx *c, json_t *j, const char *path);

/* "Sequence" normalizers, pre-tokenizers, decoders and post-processors: each part of
 * the array under `key` is parsed by fn, in order. */
typedef al_status (*part_fn)(hfctx *c, json_t *j, const char *path);

static al_status parse_sequence(hfctx *c, json_t *j, const char *path, const char *key, part_fn fn)
{
    char sub[256];
    json_t *a = json_object_get(j, key);
    if (!json_is_array(a)) {
        snprintf(sub, sizeof sub, "Sequence without a \"%s\" array", key);
        return jerr(c, path, sub);
    }
    for (size_t i = 0; i < json_array_size(a); i++) {
        snprintf(sub, sizeof sub, "%s.%s[%zu]", path, key, i);
        al_status st = fn(c, json_array_get(a, i), sub);
        if (st) return st;
    }
    return AL_OK;
}

static al_status parse_normalizer(hfctx *c, json_t *j, const char *path)
{
    if (!j || json_is_null(j)) return AL_OK;
    const char *ty = jtype(j);
    if (!ty) return jerr(c, path, "expected an object with a string \"type\"");
    if (!strcmp(ty, "Sequence")) return parse_sequence(c, j, path, "normalizers", parse_normalizer);
    if (!strcmp(ty, "Prepend")) {
        const char *p = json_string_value(json_object_get(j, "prepend"));
        if (!p) return jerr(c, path, "Prepend without a \"prepend\" string");
        return add_edit(c->t, ED_PREPEND, p, NULL, 0, c->err);
    }
    if (!strcmp(ty, "Replace")) {
        json_t *pat = json_object_get(j, "pattern");
        const char *from = json_string_value(json_object_get(pat, "String"));
        const char *to = json_string_value(json_object_get(j, "content"));
        if (json_object_get(pat, "Regex"))
            return al_errorf(c->err, AL_ERR_UNSUPPORTED, "%s: %s: unsupported normalizer: Replace with a Regex pattern",
                             c->file, path);
        if (!from || !to) return jerr(c, path, "Replace needs pattern.String and content strings");
        return add_edit(c->t, ED_REPLACE, from, to, 0, c->err);
    }
    return al_errorf(c->err, AL_ERR_UNSUPPORTED, "%s: %s: unsupported normalizer '%s'", c->file, path, ty);
}

static al_status parse_pretok(hfctx *c, json_t *j, const char *path)
{
    if (!j || json_is_null(j)) return AL_OK;
    const char *ty = jtype(j);
    al_tokenizer *t = c->t;
    if (!ty) return jerr(c, path, "expected an object with a string \"type\"");
    if (!strcmp(ty, "Sequence")) return parse_sequence(c, j, path, "pretokenizers", parse_pretok);
    if (!strcmp(ty, "ByteLevel")) {
        t->byte_level = true;
        if (jbool(j, "add_prefix_space", true)) {
            al_status st = add_edit(t, ED_BL_PREFIX, NULL, NULL, 0, c->err);
            if (st) return st;
        }
        return jbool(j, "use_regex", true) ? add_split(t, RE_GPT2, false, SB_ISOLATED, false, c->file, c->err) : AL_OK;
    }
    if (!strcmp(ty, "Split")) {
        json_t *pat = json_object_get(j, "pattern");
        const char *re = json_string_value(json_object_get(pat, "Regex"));
        const char *lit = json_string_value(json_object_get(pat, "String"));
        const char *beh = json_string_value(json_object_get(j, "behavior"));
        static const char *names[] = { "Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous" };
        int b = -1;
        for (int i = 0; beh && i < 5; i++) if (!strcmp(beh, names[i])) b = i;
        if (!re && !lit) return jerr(c, path, "Split needs pattern.Regex or pattern.String");
        if (b < 0) return jerr(c, path, "Split: unknown or missing \"behavior\"");
        return add_split(t, re ? re : lit, !re, b, jbool(j, "invert", false), c->file, c->err);
    }
    if (!strcmp(ty, "Metaspace")) {
        json_t *r = json_object_get(j, "replacement");
        const char *rep = r ? json_string_value(r) : META_DEFAULT;
        const char *ps = json_string_value(json_object_get(j, "prepend_scheme"));
        int scheme = jbool(j, "add_prefix_space", true) ? PS_ALWAYS : PS_NEVER;
        if (!rep || !*rep) return jerr(c, path, "Metaspace: \"replacement\" must be a non-empty string");
        if (ps) {
            if (!strcmp(ps, "always")) scheme = PS_ALWAYS;
            else if (!strcmp(ps, "first")) scheme = PS_FIRST;
            else if (!strcmp(ps, "never")) scheme = PS_NEVER;
            else return jerr(c, path, "Metaspace: prepend_scheme must be always, first or never");
        }
        al_status st = add_edit(t, ED_META, rep, NULL, scheme, c->err);
        if (st) return st;
        return jbool(j, "split", true) ? add_split(t, rep, true, SB_MERGED_NEXT, false, c->file, c->err) : AL_OK;
    }
    if (!strcmp(ty, "Digits"))
        return add_split(t, jbool(j, "individual_digits", false) ? "\\p{N}" : "\\p{N}+", false, SB_ISOLATED, false,
                         c->file, c->err);
    if (!strcmp(ty, "Whitespace")) return add_split(t, "\\w+|[^\\w\\s]+", false, SB_ISOLATED, false, c->file, c->err);
    if (!strcmp(ty, "WhitespaceSplit")) return add_split(t, "\\s+", false, SB_REMOVED, false, c->file, c->err);
    return al_errorf(c->err, AL_ERR_UNSUPPORTED, "%s: %s: unsupported pre-tokenizer '%s'", c->file, path, ty);
}

static al_status parse_decoder(hfctx *c, json_t *j, const char *path)
{
    if (!j || json_is_null(j)) return AL_OK;
    const char *ty = jtype(j);
    al_tokenizer *t = c->t;
    if (!ty) return jerr(c, path, "expected an object with a string \"type\"");
    if (!strcmp(ty, "Sequence")) return parse_sequence(c, j, path, "decoders", parse_decoder);
    if (!strcmp(ty, "ByteLevel")) { t->dec_byte_level = true; return AL_OK; }
    if (!strcmp(ty, "ByteFallback")) { t->dec_byte_fallback = true; return AL_OK; }
    if (!strcmp(ty, "Fuse")) return AL_OK;
    if (!strcmp(ty, "Strip")) {
        const char *ct = json_string_value(json_object_get(j, "content"));
        json_int_t a = json_integer_value(json_object_get(j, "start")), b = json_integer_value(json_object_get(j, "stop"));
        if (!ct || strcmp(ct, " ") || a < 0 || b < 0 || a > 16 || b > 16)
            return al_errorf(c->err, AL_ERR_UNSUPPORTED, "%s: %s: only Strip of \" \" (0..16 chars) is supported",
                             c->file, path);
        t->dec_strip_start = (int)a; t->dec_strip_stop = (int)b;
        return AL_OK;
    }
    if (!strcmp(ty, "Replace") || !strcmp(ty, "Metaspace")) {
        const char *from, *to = " ";
        if (ty[0] == 'R') {
            from = json_string_value(json_object_get(json_object_get(j, "pattern"), "String"));
            to = json_string_value(json_object_get(j, "content"));
        } else {
            json_t *r = json_object_get(j, "replacement");
            from = r ? json_string_value(r) : META_DEFAULT;
            const char *ps = json_string_value(json_object_get(j, "prepend_scheme"));
            bool pre = ps ? strcmp(ps, "never") != 0 : jbool(j, "add_prefix_space", true);
            if (pre) t->dec_strip_start = 1;
        }
        if (!from || !*from || !to) return jerr(c, path, "decoder Replace/Metaspace needs string pattern and content");
        if (strlen(to) > strlen(from))
            return al_errorf(c->err, AL_ERR_UNSUPPORTED, "%s: %s: a Replace decoder that lengthens text is not supported",
                             c->file, path);
        if (t->n_repl == 4) return al_errorf(c->err, AL_ERR_UNSUPPORTED, "%s: %s: too many Replace decoders", c->file, path);
        tok_repl *r = &t->repl[t->n_repl++];
        if (!(r->from = al_strdup(from)) || !(r->to = al_strdup(to))) return nomem(c->err);
        return AL_OK;
    }
    return al_errorf(c->err, AL_ERR_UNSUPPORTED, "%s: %s: unsupported decoder '%s'", c->file, path, ty);
}

static al_status parse_post(hfctx *c, json_t *j, const char *path)
{
    if (!j || json_is_null(j)) return AL_OK;
    const char *ty = jtype(j);
    al_tokenizer *t = c->t;
    char sub[256];
    if (!ty) return jerr(c, path, "expected an object with a string \"type\"");
    if (!strcmp(ty, "ByteLevel")) return AL_OK;
    if (!strcmp(ty, "Sequence")) return parse_sequence(c, j, path, "processors", parse_post);
    if (!strcmp(ty, "RobertaProcessing") || !strcmp(ty, "BertProcessing")) {
        json_t *cls = json_array_get(json_object_get(j, "cls"), 1), *sep = json_array_get(json_object_get(j, "sep"), 1);
        if (!json_is_integer(cls) || !json_is_integer(sep)) return jerr(c, path, "cls/sep must be [token, id] pairs");
        t->n_pre = t->n_post = 1;
        t->pre_ids[0] = (int32_t)json_integer_value(cls);
        t->post_ids[0] = (int32_t)json_integer_value(sep);
        return AL_OK;
    }
    if (!strcmp(ty, "TemplateProcessing")) {
        /* single: [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}, ...];
         * special_tokens: {"<s>": {"ids": [1], ...}} */
        json_t *single = json_object_get(j, "single"), *sp = json_object_get(j, "special_tokens");
        bool after = false;
        size_t np = 0, nq = 0;
        if (!json_is_array(single)) return jerr(c, path, "TemplateProcessing without a \"single\" array");
        for (size_t i = 0; i < json_array_size(single); i++) {
            json_t *it = json_array_get(single, i), *s;
            snprintf(sub, sizeof sub, "%s.single[%zu]", path, i);
            if (json_object_get(it, "Sequence")) { after = true; continue; }
            if (!(s = json_object_get(it, "SpecialToken"))) return jerr(c, sub, "expected Sequence or SpecialToken");
            const char *name = json_string_value(json_object_get(s, "id"));
            json_t *ids = json_object_get(json_object_get(sp, name ? name : ""), "ids");
            if (!name || !json_is_array(ids)) return jerr(c, sub, "special token not in special_tokens");
            for (size_t k = 0; k < json_array_size(ids); k++) {
                json_t *v = json_array_get(ids, k);
                if (!json_is_integer(v)) return jerr(c, sub, "special token ids must be integers");
                if ((after ? nq : np) == 4) return al_errorf(c->err, AL_ERR_UNSUPPORTED, "%s: %s: template too long", c->file, sub);
                if (after) t->post_ids[nq++] = (int32_t)json_integer_value(v);
                else t->pre_ids[np++] = (int32_t)json_integer_value(v);
            }
        }
        t->n_pre = np; t->n_post = nq;
        return AL_OK;
    }
    return al_errorf(c->err, AL_ERR_UNSUPPORTED, "%s: %s: unsupported post-processor '%s'", c->file, path, ty);
}

/* Key of a vocabulary entry: raw bytes for byte-level tokenizers (into buf, >= n bytes). */
static void hf_key(const al_tokenizer *t, const char *s, size_t n, char *buf, const char **k, size_t *kn)
{
    if (t->byte_level && bl_unmap(s, n, buf, kn)) { *k = buf; return; }
    *k = s; *kn = n;
}

/* Set id from its file spelling; out bytes per the decoder. */
static bool hf_set(al_tokenizer *t, int32_t id, const char *s, uint8_t flags, bool added, char *buf, char *buf2)
{
    size_t n = strlen(s), kn, on = n;
    const char *k, *out = s;
    hf_key(t, s, n, buf, &k, &kn);
    if (!added) {
        unsigned v;
        if (t->dec_byte_level && bl_unmap(s, n, buf2, &on)) out = buf2;
        else if (t->dec_byte_fallback && n == 6 && sscanf(s, "<0x%2X>", &v) == 1 && s[5] == '>') {
            buf2[0] = (char)v; on = 1; out = buf2;
        } else if (t->n_repl) {
            /* string replaces, in order (Replace "▁" -> " "); output never grows past 4n */
            const char *cur = s; size_t cn = n;
            char *dst = buf2;
            for (size_t r = 0; r < t->n_repl; r++) {
                const char *f = t->repl[r].from, *to = t->repl[r].to;
                size_t fn = strlen(f), tn = strlen(to), o = 0;
                char *tmp = (cur == buf2) ? buf2 + 4 * n + 8 : buf2;
                for (size_t i = 0; i < cn;) {
                    if (i + fn <= cn && !memcmp(cur + i, f, fn)) { memcpy(tmp + o, to, tn); o += tn; i += fn; }
                    else tmp[o++] = cur[i++];
                }
                cur = dst = tmp; cn = o;
            }
            out = dst; on = cn;
        }
    }
    return id_set(t, id, s, n, k, kn, out, on, flags);
}

static al_status hf_add_merge(hfctx *c, const char *a, size_t an, const char *b, size_t bn, int32_t rank,
                              char *buf, const char *path)
{
    al_tokenizer *t = c->t;
    const char *ka, *kb; size_t kan, kbn;
    hf_key(t, a, an, buf, &ka, &kan);
    int32_t ia = map_find(t, ka, kan);
    hf_key(t, b, bn, buf, &kb, &kbn);
    int32_t ib = map_find(t, kb, kbn);
    if (ia < 0 || ib < 0)
        return al_errorf(c->err, AL_ERR_FORMAT, "%s: %s: merge token '%.*s' is not in the vocabulary", c->file, path,
                         (int)(ia < 0 ? an : bn), ia < 0 ? a : b);
    size_t la = t->key_len[ia], lb = t->key_len[ib];
    memcpy(buf, id_key(t, ia), la);
    memcpy(buf + la, id_key(t, ib), lb);
    int32_t im = map_find(t, buf, la + lb);
    if (im < 0)
        return al_errorf(c->err, AL_ERR_FORMAT, "%s: %s: merge result '%.*s%.*s' is not in the vocabulary", c->file,
                         path, (int)an, a, (int)bn, b);
    pair_put(t, ia, ib, rank, im);
    return AL_OK;
}

/* Fill ids from a vocab object (+ added tokens), build the map; merges come after. */
static al_status hf_vocab(hfctx *c, json_t *vocab, json_t *added, const char *vpath)
{
    al_tokenizer *t = c->t;
    const char *k; json_t *v;
    int64_t maxid = -1;
    char *buf = NULL, *buf2 = NULL;
    size_t maxlen = 16;
    al_status st = AL_OK;
    char path[320];
    if (!json_is_object(vocab)) return jerr(c, vpath, "expected an object of token -> id");
    json_object_foreach(vocab, k, v) {
        json_int_t id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || id >= TOK_MAX_IDS) {
            snprintf(path, sizeof path, "%s[\"%.200s\"]", vpath, k);
            return jerr(c, path, "id must be an integer in [0, 8388608)");
        }
        if (id > maxid) maxid = id;
        if (strlen(k) > maxlen) maxlen = strlen(k);
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i);
        json_int_t id = json_integer_value(json_object_get(a, "id"));
        const char *s = json_string_value(json_object_get(a, "content"));
        snprintf(path, sizeof path, "added_tokens[%zu]", i);
        if (!json_is_integer(json_object_get(a, "id")) || id < 0 || id >= TOK_MAX_IDS || !s)
            return jerr(c, path, "needs an integer \"id\" in [0, 8388608) and a string \"content\"");
        if (id > maxid) maxid = id;
        if (strlen(s) > maxlen) maxlen = strlen(s);
    }
    if (!ids_alloc(t, (int32_t)(maxid + 1))) return nomem(c->err);
    if (!(buf = al_malloc(2 * maxlen + 16)) || !(buf2 = al_malloc(8 * maxlen + 32))) { st = nomem(c->err); goto done; }
    json_object_foreach(vocab, k, v) {
        int32_t id = (int32_t)json_integer_value(v);
        if (t->flags[id] & F_PRESENT) {
            snprintf(path, sizeof path, "%s[\"%.200s\"]", vpath, k);
            st = jerr(c, path, "id used twice");
            goto done;
        }
        if (!hf_set(t, id, k, F_MAPPED, false, buf, buf2)) { st = nomem(c->err); goto done; }
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i);
        int32_t id = (int32_t)json_integer_value(json_object_get(a, "id"));
        const char *s = json_string_value(json_object_get(a, "content"));
        if (!(t->flags[id] & F_PRESENT) && !hf_set(t, id, s, 0, true, buf, buf2)) { st = nomem(c->err); goto done; }
        if (jbool(a, "special", false)) t->flags[id] |= F_SPECIAL;
        if ((st = add_added(t, s, id, jbool(a, "lstrip", false), jbool(a, "rstrip", false), c->err))) goto done;
    }
    if (!map_build(t)) { st = nomem(c->err); goto done; }
    find_byte_ids(t);
done:
    al_free(buf); al_free(buf2);
    return st;
}

static al_status hf_merges_json(hfctx *c, json_t *merges)
{
    al_tokenizer *t = c->t;
    char path[64], *buf = NULL;
    size_t n = json_array_size(merges), maxlen = 0;
    al_status st = AL_OK;
    if (merges && !json_is_array(merges)) return jerr(c, "model.merges", "expected an array");
    if (n > TOK_MAX_MERGES) return jerr(c, "model.merges", "more than 100M merges");
    for (int32_t id = 0; id < t->n_ids; id++) if (t->key_len[id] > maxlen) maxlen = t->key_len[id];
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(merges, i);
        size_t l = json_is_string(m) ? json_string_length(m)
                 : json_string_length(json_array_get(m, 0)) + json_string_length(json_array_get(m, 1));
        if (l > maxlen) maxlen = l;
    }
    if (!pair_alloc(t, n) || !(buf = al_malloc(2 * maxlen + 16))) { al_free(buf); return nomem(c->err); }
    for (size_t i = 0; i < n && !st; i++) {
        json_t *m = json_array_get(merges, i);
        snprintf(path, sizeof path, "model.merges[%zu]", i);
        if (json_is_string(m)) {               /* "a b" (tokenizers < 0.20) */
            const char *s = json_string_value(m), *sp = strchr(s, ' ');
            if (!sp || sp == s || !sp[1]) { st = jerr(c, path, "expected \"left right\""); break; }
            st = hf_add_merge(c, s, (size_t)(sp - s), sp + 1, strlen(sp + 1), (int32_t)i, buf, path);
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0))
                   && json_is_string(json_array_get(m, 1))) {   /* ["a", "b"] (tokenizers >= 0.20) */
            json_t *a = json_array_get(m, 0), *b = json_array_get(m, 1);
            st = hf_add_merge(c, json_string_value(a), json_string_length(a), json_string_value(b),
                              json_string_length(b), (int32_t)i, buf, path);
        } else {
            st = jerr(c, path, "expected \"left right\" or [\"left\", \"right\"]");
        }
    }
    al_free(buf);
    return st;
}

static al_status load_tokenizer_json(al_tokenizer *t, const char *file, json_t *root, al_error *err)
{
    hfctx c = { t, file, err };
    al_status st;
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return jerr(&c, "model", "expected an object");
    const char *ty = json_string_value(json_object_get(model, "type"));
    if (!ty && json_object_get(model, "merges")) ty = "BPE";
    if (!ty) return jerr(&c, "model.type", "missing");
    if (strcmp(ty, "BPE"))
        return al_errorf(err, AL_ERR_UNSUPPORTED, "%s: model.type '%s' is not supported (BPE only)", file, ty);
    const char *cs = json_string_value(json_object_get(model, "continuing_subword_prefix"));
    const char *ew = json_string_value(json_object_get(model, "end_of_word_suffix"));
    if ((cs && *cs) || (ew && *ew))
        return al_errorf(err, AL_ERR_UNSUPPORTED, "%s: model: continuing_subword_prefix/end_of_word_suffix not supported",
                         file);
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_array(added) && !json_is_null(added)) return jerr(&c, "added_tokens", "expected an array");

    if ((st = parse_normalizer(&c, json_object_get(root, "normalizer"), "normalizer"))) return st;
    if ((st = parse_pretok(&c, json_object_get(root, "pre_tokenizer"), "pre_tokenizer"))) return st;
    if ((st = parse_decoder(&c, json_object_get(root, "decoder"), "decoder"))) return st;
    t->merge_mode = MM_PAIR;
    t->ignore_merges = jbool(model, "ignore_merges", false);
    t->byte_fallback = jbool(model, "byte_fallback", false);
    t->fuse_unk = jbool(model, "fuse_unk", false);
    if ((st = hf_vocab(&c, json_object_get(model, "vocab"), added, "model.vocab"))) return st;
    if ((st = hf_merges_json(&c, json_object_get(model, "merges")))) return st;
    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    if (unk && (t->unk = al_tokenizer_token_id(t, unk)) < 0)
        return jerr(&c, "model.unk_token", "not in the vocabulary");
    if ((st = parse_post(&c, json_object_get(root, "post_processor"), "post_processor"))) return st;
    for (size_t i = 0; i < t->n_pre + t->n_post; i++) {
        int32_t id = i < t->n_pre ? t->pre_ids[i] : t->post_ids[i - t->n_pre];
        if (id < 0 || id >= t->n_ids || !(t->flags[id] & F_PRESENT))
            return jerr(&c, "post_processor", "special token id is not in the vocabulary");
    }
    if (t->n_pre) t->bos = t->pre_ids[0];
    if (t->n_post) t->eos = t->post_ids[t->n_post - 1];
    return AL_OK;
}

/* GPT-2's vocab.json + merges.txt: ByteLevel(add_prefix_space=false) with the GPT-2
 * regex, ByteLevel decoder, <|endoftext|> (when in vocab) as a special added token. */
static al_status load_vocab_merges(al_tokenizer *t, const char *vfile, const char *mfile, al_error *err)
{
    json_error_t je;
    json_t *vocab = NULL, *added = NULL;
    char *txt = NULL, *buf = NULL;
    size_t n;
    al_status st;
    hfctx c = { t, vfile, err };
    if ((st = read_all(vfile, &txt, &n, err))) return st;
    vocab = json_loadb(txt, n, 0, &je);
    al_free(txt); txt = NULL;
    if (!vocab) return json_load_err(vfile, &je, err);
    t->byte_level = t->dec_byte_level = true;
    t->merge_mode = MM_PAIR;
    if ((st = add_split(t, RE_GPT2, false, SB_ISOLATED, false, vfile, err))) goto done;
    json_t *eot = json_object_get(vocab, "<|endoftext|>");
    if (json_is_integer(eot)) {
        if (!(added = json_pack("[{s:I,s:s,s:b}]", "id", json_integer_value(eot), "content", "<|endoftext|>",
                                "special", 1))) { st = nomem(err); goto done; }
    }
    if ((st = hf_vocab(&c, vocab, added, "vocab"))) goto done;
    if ((st = read_all(mfile, &txt, &n, err))) goto done;
    size_t lines = 1, maxlen = 0;
    for (int32_t id = 0; id < t->n_ids; id++) if (t->key_len[id] > maxlen) maxlen = t->key_len[id];
    for (size_t i = 0; i < n; i++) lines += txt[i] == '\n';
    if (lines > TOK_MAX_MERGES) { st = al_errorf(err, AL_ERR_FORMAT, "%s: more than 100M merges", mfile); goto done; }
    if (!pair_alloc(t, lines) || !(buf = al_malloc(2 * maxlen + 16 > n ? 2 * maxlen + 16 : n + 16))) {
        st = nomem(err); goto done;
    }
    c.file = mfile;
    int32_t rank = 0;
    size_t lineno = 0;
    for (char *p = txt, *end = txt + n; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p)), *le = nl ? nl : end;
        lineno++;
        size_t ll = (size_t)(le - p);
        if (ll && p[ll - 1] == '\r') ll--;
        if (ll && !(ll >= 8 && !memcmp(p, "#version", 8))) {
            char *sp = memchr(p, ' ', ll), path[48];
            snprintf(path, sizeof path, "line %zu", lineno);
            if (!sp || sp == p || sp + 1 == p + ll) { st = jerr(&c, path, "expected \"left right\""); goto done; }
            if ((st = hf_add_merge(&c, p, (size_t)(sp - p), sp + 1, (size_t)(p + ll - sp - 1), rank++, buf, path)))
                goto done;
        }
        p = le + 1;
    }
    t->bos = t->eos = t->n_added ? t->added[0].id : -1;
done:
    json_decref(vocab); json_decref(added);
    al_free(txt); al_free(buf);
    return st;
}

/* ---- tiktoken rank files --------------------------------------------------------------
 * One "base64(token bytes) rank" per line (tiktoken load_tiktoken_bpe). Specials are not
 * in the file: GPT-2's <|endoftext|> = 50256; Llama-3's 256 (meta-llama/llama3
 * llama/tokenizer.py) follow rank 127999. */
static int b64v(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+') return 62;
    if (ch == '/') return 63;
    return -1;
}

static bool b64_decode(const char *s, size_t n, char *out, size_t *on)
{
    size_t o = 0, i = 0;
    uint32_t acc = 0; int bits = 0;
    for (; i < n && s[i] != '='; i++) {
        int v = b64v((unsigned char)s[i]);
        if (v < 0) return false;
        acc = (acc << 6) | (uint32_t)v; bits += 6;
        if (bits >= 8) { bits -= 8; out[o++] = (char)(acc >> bits); acc &= (1u << bits) - 1; }
    }
    for (; i < n; i++) if (s[i] != '=') return false;
    *on = o;
    return o > 0;
}

static al_status load_tiktoken(al_tokenizer *t, const char *file, const char *txt, size_t n, al_error *err)
{
    char *buf = NULL, *mapped = NULL;
    al_status st = AL_OK;
    int64_t maxr = -1;
    size_t count = 0, lineno = 0, maxl = 0;
    /* pass 1: validate, find the largest rank */
    for (const char *p = txt, *end = txt + n; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *le = nl ? nl : end;
        lineno++;
        if (le > p) {
            const char *sp = memchr(p, ' ', (size_t)(le - p));
            char *e;
            long r = sp ? strtol(sp + 1, &e, 10) : -1;
            if (!sp || sp == p || r < 0 || r >= TOK_MAX_IDS || (e != le && !(e + 1 == le && *e == '\r')))
                return al_errorf(err, AL_ERR_FORMAT, "%s: line %zu: expected \"base64 rank\"", file, lineno);
            if (r > maxr) maxr = r;
            if ((size_t)(sp - p) > maxl) maxl = (size_t)(sp - p);
            count++;
        }
        p = le + 1;
    }
    bool gpt2 = count == 50256 && maxr == 50255, llama3 = count == 128000 && maxr == 127999;
    int32_t nspec = gpt2 ? 1 : llama3 ? 256 : 0;
    if (!ids_alloc(t, (int32_t)(maxr + 1 + nspec))) return nomem(err);
    if (!(buf = al_malloc(maxl + 4)) || !(mapped = al_malloc(2 * maxl + 64))) { st = nomem(err); goto done; }
    lineno = 0;
    for (const char *p = txt, *end = txt + n; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *le = nl ? nl : end;
        lineno++;
        if (le > p) {
            const char *sp = memchr(p, ' ', (size_t)(le - p));
            int32_t r = (int32_t)strtol(sp + 1, NULL, 10);
            size_t bn, mn = 0;
            if (!b64_decode(p, (size_t)(sp - p), buf, &bn)) {
                st = al_errorf(err, AL_ERR_FORMAT, "%s: line %zu: invalid base64", file, lineno); goto done;
            }
            if (t->flags[r] & F_PRESENT) {
                st = al_errorf(err, AL_ERR_FORMAT, "%s: line %zu: rank %ld used twice", file, lineno, (long)r); goto done;
            }
            for (size_t i = 0; i < bn; i++) mn += utf8_put(mapped + mn, bl_cp_of_byte((unsigned char)buf[i]));
            if (!id_set(t, r, mapped, mn, buf, bn, buf, bn, F_MAPPED)) { st = nomem(err); goto done; }
        }
        p = le + 1;
    }
    t->byte_level = t->ignore_merges = true;
    t->merge_mode = MM_RANK;
    if (!map_build(t)) { st = nomem(err); goto done; }
    find_byte_ids(t);
    if ((st = add_split(t, gpt2 ? RE_GPT2 : RE_CL100K, false, SB_ISOLATED, false, file, err))) goto done;
    for (int32_t k = 0; k < nspec; k++) {
        char name[48];
        static const char *l3[] = { "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
            "<|reserved_special_token_1|>", "<|reserved_special_token_2|>", "<|reserved_special_token_3|>",
            "<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_4|>", "<|eot_id|>" };
        if (gpt2) snprintf(name, sizeof name, "<|endoftext|>");
        else if (k < 10) snprintf(name, sizeof name, "%s", l3[k]);
        else snprintf(name, sizeof name, "<|reserved_special_token_%d|>", (int)k - 5);
        int32_t id = (int32_t)maxr + 1 + k;
        if (!id_set(t, id, name, strlen(name), name, strlen(name), name, strlen(name), F_SPECIAL)) {
            st = nomem(err); goto done;
        }
        if ((st = add_added(t, name, id, false, false, err))) goto done;
    }
    if (gpt2) t->bos = t->eos = 50256;
    if (llama3) { t->bos = 128000; t->eos = 128001; t->pre_ids[0] = 128000; t->n_pre = 1; }
done:
    al_free(buf); al_free(mapped);
    return st;
}

/* ---- SentencePiece model (protobuf wire format, sentencepiece_model.proto) ------------
 * ModelProto: 1 repeated SentencePiece {1 piece, 2 score (float), 3 type}, 2 TrainerSpec
 * {3 model_type (1 unigram, 2 bpe), 35 byte_fallback, 40 unk_id, 41 bos_id, 42 eos_id},
 * 3 NormalizerSpec {1 name, 3 add_dummy_prefix, 4 remove_extra_whitespaces}. */
typedef struct { const uint8_t *p, *end; } pb;

static bool pb_varint(pb *b, uint64_t *v)
{
    uint64_t r = 0;
    for (int sh = 0; sh < 64; sh += 7) {
        if (b->p >= b->end) return false;
        uint8_t c = *b->p++;
        r |= (uint64_t)(c & 0x7f) << sh;
        if (!(c & 0x80)) { *v = r; return true; }
    }
    return false;
}

/* Next field: number, wire type, and for wire type 2 the payload; scalars in *v. */
static bool pb_field(pb *b, uint32_t *num, uint32_t *wt, uint64_t *v, pb *sub)
{
    uint64_t key;
    if (!pb_varint(b, &key)) return false;
    *num = (uint32_t)(key >> 3); *wt = key & 7;
    switch (*wt) {
    case 0: return pb_varint(b, v);
    case 1: if (b->end - b->p < 8) return false; b->p += 8; return true;
    case 5: if (b->end - b->p < 4) return false; { uint32_t x; memcpy(&x, b->p, 4); *v = x; } b->p += 4; return true;
    case 2:
        if (!pb_varint(b, v) || *v > (uint64_t)(b->end - b->p)) return false;
        sub->p = b->p; sub->end = b->p + *v; b->p += *v;
        return true;
    default: return false;
    }
}

enum { SP_NORMAL = 1, SP_UNKNOWN = 2, SP_CONTROL = 3, SP_USER = 4, SP_UNUSED = 5, SP_BYTE = 6 };

static al_status load_spm(al_tokenizer *t, const char *file, const char *data, size_t n, al_error *err)
{
    pb b = { (const uint8_t *)data, (const uint8_t *)data + n }, sub;
    uint32_t num, wt; uint64_t v;
    size_t npieces = 0, maxl = 0;
    int64_t model_type = 1, unk_id = 0, bos_id = 1, eos_id = 2;
    bool dummy = true, rm_ws = true;
    char *buf = NULL;
    al_status st = AL_OK;
    while (b.p < b.end) {
        if (!pb_field(&b, &num, &wt, &v, &sub)) goto bad;
        if (num == 1 && wt == 2) { npieces++; if (v > maxl) maxl = v; }
        else if (num == 2 && wt == 2) {
            pb s = sub; pb x;
            while (s.p < s.end) {
                if (!pb_field(&s, &num, &wt, &v, &x)) goto bad;
                if (wt != 0) continue;
                if (num == 3) model_type = (int64_t)v;
                else if (num == 40) unk_id = (int32_t)v;
                else if (num == 41) bos_id = (int32_t)v;
                else if (num == 42) eos_id = (int32_t)v;
            }
        } else if (num == 3 && wt == 2) {
            pb s = sub; pb x;
            while (s.p < s.end) {
                if (!pb_field(&s, &num, &wt, &v, &x)) goto bad;
                if (wt == 0 && num == 3) dummy = v != 0;
                if (wt == 0 && num == 4) rm_ws = v != 0;
            }
        }
    }
    if (model_type != 2)
        return al_errorf(err, AL_ERR_UNSUPPORTED, "%s: SentencePiece model_type %s is not supported (BPE only)", file,
                         model_type == 1 ? "unigram" : model_type == 3 ? "word" : model_type == 4 ? "char" : "unknown");
    if (npieces == 0 || npieces > TOK_MAX_IDS) return al_errorf(err, AL_ERR_FORMAT, "%s: no pieces", file);
    if (!ids_alloc(t, (int32_t)npieces) || !(buf = al_malloc(maxl + 8))) return nomem(err);
    b.p = (const uint8_t *)data;
    int32_t id = 0;
    while (b.p < b.end) {
        if (!pb_field(&b, &num, &wt, &v, &sub)) goto bad;
        if (num != 1 || wt != 2) continue;
        pb s = sub, x;
        const char *piece = NULL; size_t pl = 0;
        float score = 0; int type = SP_NORMAL;
        while (s.p < s.end) {
            if (!pb_field(&s, &num, &wt, &v, &x)) goto bad;
            if (num == 1 && wt == 2) { piece = (const char *)x.p; pl = (size_t)(x.end - x.p); }
            else if (num == 2 && wt == 5) { uint32_t u = (uint32_t)v; memcpy(&score, &u, 4); }
            else if (num == 3 && wt == 0) type = (int)v;
        }
        if (!piece) { st = al_errorf(err, AL_ERR_FORMAT, "%s: piece %ld has no string", file, (long)id); goto done; }
        /* decoded text: "▁" -> " ", byte pieces -> their byte, control -> nothing, unk -> " ⁇ " */
        size_t on = 0;
        unsigned bv;
        uint8_t fl = 0;
        if (type == SP_BYTE && pl == 6 && sscanf(piece, "<0x%2X>", &bv) == 1) {
            buf[0] = (char)bv; on = 1; t->byte_id[bv & 255] = id;
        } else if (type == SP_CONTROL) {
            fl = F_CONTROL | F_SPECIAL;
        } else if (type == SP_UNKNOWN) {
            memcpy(buf, " \xe2\x81\x87 ", 5); on = 5;
            t->unk = id;
        } else {
            for (size_t i = 0; i < pl;) {
                if (i + 3 <= pl && !memcmp(piece + i, META_DEFAULT, 3)) { buf[on++] = ' '; i += 3; }
                else buf[on++] = piece[i++];
            }
            if (type == SP_NORMAL || type == SP_USER || type == SP_UNUSED) fl = F_MAPPED;
        }
        t->score[id] = score;
        if (!id_set(t, id, piece, pl, piece, pl, buf, on, fl)) { st = nomem(err); goto done; }
        id++;
    }
    t->spm = true;
    t->merge_mode = MM_SCORE;
    t->byte_fallback = true;
    if (t->unk < 0 && unk_id >= 0 && unk_id < t->n_ids) t->unk = (int32_t)unk_id;
    if (bos_id >= 0 && bos_id < t->n_ids) { t->bos = (int32_t)bos_id; t->pre_ids[0] = t->bos; t->n_pre = 1; }
    if (eos_id >= 0 && eos_id < t->n_ids) t->eos = (int32_t)eos_id;
    t->dec_strip_start = dummy ? 1 : 0;
    if (!map_build(t)) { st = nomem(err); goto done; }
    st = add_edit(t, ED_SPM, NULL, NULL, (rm_ws ? 1 : 0) | (dummy ? 2 : 0), err);
done:
    al_free(buf);
    return st;
bad:
    al_free(buf);
    return al_errorf(err, AL_ERR_FORMAT, "%s: malformed SentencePiece model (protobuf)", file);
}

/* ---- entry point -------------------------------------------------------------------- */
static bool is_file(const char *p) { struct stat sb; return stat(p, &sb) == 0 && S_ISREG(sb.st_mode); }

static al_status load_file(al_tokenizer *t, const char *path, al_error *err)
{
    char *data = NULL;
    size_t n, pl = strlen(path);
    al_status st;
    char dir[4096];
    dir_of(path, dir, sizeof dir);
    if (pl >= 5 && !strcmp(path + pl - 5, ".json")) {
        json_error_t je;
        if ((st = read_all(path, &data, &n, err))) return st;
        json_t *root = json_loadb(data, n, 0, &je);
        al_free(data);
        if (!root) return json_load_err(path, &je, err);
        if (!json_is_object(root)) {
            json_decref(root);
            return al_errorf(err, AL_ERR_FORMAT, "%s: expected a JSON object", path);
        }
        /* GPT-2's vocab.json has a token "model": a tokenizer.json has a model object
         * (or, broken, the other top-level keys of one) */
        if (json_is_object(json_object_get(root, "model")) || json_object_get(root, "added_tokens")
            || json_object_get(root, "pre_tokenizer")) {
            st = load_tokenizer_json(t, path, root, err);
            json_decref(root);
        } else {   /* a vocab.json: merges.txt beside it */
            json_decref(root);
            char m[4200];
            snprintf(m, sizeof m, "%s/merges.txt", dir);
            st = load_vocab_merges(t, path, m, err);
        }
        if (st == AL_OK) { read_special_config(t, dir); guess_bos_eos(t); }
        return st;
    }
    if ((st = read_all(path, &data, &n, err))) return st;
    if (n && data[0] == 0x0a) st = load_spm(t, path, data, n, err);   /* field 1, length-delimited */
    else st = load_tiktoken(t, path, data, n, err);
    al_free(data);
    return st;
}

al_status al_tokenizer_load(al_tokenizer **out, const char *path, al_error *err)
{
    struct stat sb;
    char p[4200];
    al_status st;
    *out = NULL;
    if (!path) return al_errorf(err, AL_ERR_USAGE, "tokenizer: NULL path");
    if (stat(path, &sb) != 0) return al_errorf(err, AL_ERR_IO, "%s: %s", path, strerror(errno));
    al_tokenizer *t = tok_new();
    if (!t) return nomem(err);
    if (S_ISDIR(sb.st_mode)) {
        static const char *names[] = { "tokenizer.json", "vocab.json", "tokenizer.model" };
        int k = 0;
        for (; k < 3; k++) {
            snprintf(p, sizeof p, "%s/%s", path, names[k]);
            if (is_file(p)) break;
        }
        if (k == 3) {
            st = al_errorf(err, AL_ERR_NOTFOUND, "%s: no tokenizer.json, vocab.json or tokenizer.model", path);
            goto done;
        }
        st = load_file(t, p, err);
    } else {
        st = load_file(t, path, err);
    }
done:
    if (st != AL_OK) { al_tokenizer_free(t); return st; }
    *out = t;
    return AL_OK;
}
