/* edit/stats.c: C = E[k k^T] over a corpus (see stats.h), and alloy's HDF5 cache of it.
 *
 * Accumulation precision. Keys come out of the runtime as F32. Each forward's keys
 * (one block, n <= batch_tokens rows) are widened to F64 and added with one
 * cblas_dsyrk: a product of two F32 values is exact in F64 (24 + 24 significand bits
 * < 53), so the only rounding is in the F64 sums, relative error ~ n_terms * 2^-53,
 * far below the F32 keys' own error. An ssyrk into an F32 block would add ~block_rows *
 * 2^-24 (1e-4 for a 4096-row block) to every entry before the F64 add, i.e. larger than
 * the keys' F32 error, for a saving (sgemm vs dgemm speed, ~2x on the SYRK alone) that
 * matters only when m is large; the reference itself accumulates in float64 when asked
 * (mom2_dtype), which is what the golden data used. So: F64 block + dsyrk.
 *
 * Determinism. Documents are read in file order and grouped by a fixed token budget, so
 * the sequence of blocks (and of dsyrk calls) is fixed; blocks are added one after the
 * other into S. Within one call, OpenBLAS's order of summation depends on its thread
 * count (it splits the output, and the diagonal blocks take another kernel path), so
 * the guarantee is: identical bits for the same corpus, batch budget and OpenBLAS thread
 * count. Across thread counts OpenBLAS promises nothing (1 and 2 threads gave identical
 * bits on the development machine). Another batch budget changes the forward's F32
 * GEMM shapes, hence the keys at F32 rounding (~1e-8 relative in C, test_stats.c).
 *
 * HDF5's serial library is process-wide and not thread-safe: the cache I/O here holds
 * one mutex, as io/hdf5.c does (that file's lock is private to it, so stats I/O and
 * checkpoint HDF5 I/O must not run from two threads at once). */
#include "stats_internal.h"
#include "../io/h5_internal.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>
#include <hdf5.h>

#include "../core/alloc.h"

#define STATS_FORMAT "alloy-stats-1"
#define STATS_BATCH_TOKENS 4096
#define STATS_MAX_M (1 << 20)          /* bound on m read from a file (m^2 doubles) */
#define LINE_CHUNK ((size_t)1 << 20)

/* ---- al_stats ------------------------------------------------------------------- */

bool al_stats_set_str(char **dst, const char *src)
{
    char *c = al_strdup(src ? src : "");
    if (!c) return false;
    al_free(*dst);
    *dst = c;
    return true;
}

al_stats *al_stats_alloc(int m)
{
    al_stats *s = al_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->m = m;
    s->layer = -1;
    bool ok = true;
    char **strs[] = {&s->model, &s->model_type, &s->module, &s->corpus, &s->corpus_sha256,
                     &s->dtype, &s->source};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) ok = ok && al_stats_set_str(strs[i], "");
    if (ok && m > 0) ok = (s->sum = al_calloc((size_t)m * (size_t)m, sizeof(double))) != NULL;
    if (!ok) { al_stats_free(s); return NULL; }
    return s;
}

void al_stats_free(al_stats *s)
{
    if (!s) return;
    al_free(s->sum);
    al_free(s->model); al_free(s->model_type); al_free(s->module); al_free(s->corpus);
    al_free(s->corpus_sha256); al_free(s->dtype); al_free(s->source);
    al_free(s);
}

al_status al_stats_mean(const al_stats *s, double *c, al_error *err)
{
    if (s->count <= 0) return al_errorf(err, AL_ERR_USAGE, "statistics: no tokens counted");
    size_t n = (size_t)s->m * (size_t)s->m;
    double inv = (double)s->count;
    for (size_t i = 0; i < n; i++) c[i] = s->sum[i] / inv;   /* divide: exactly what numpy does */
    return AL_OK;
}

bool al_stats_set_model(al_stats *s, const char *model, const char *model_type, int layer,
                        const char *module)
{
    s->layer = layer;
    return al_stats_set_str(&s->model, model) && al_stats_set_str(&s->model_type, model_type) &&
           al_stats_set_str(&s->module, module);
}

const char *al_stats_module_name(const al_model *m, int layer, char *buf, size_t n)
{
    if (al_model_cfg(m)->arch == AL_ARCH_GPT2) snprintf(buf, n, "transformer.h.%d.mlp.c_proj", layer);
    else snprintf(buf, n, "model.layers.%d.mlp.down_proj", layer);
    return buf;
}

/* ---- SHA-256 (FIPS 180-4) of the corpus bytes ------------------------------------ */

typedef struct { uint32_t h[8]; uint8_t blk[64]; size_t nblk; uint64_t len; } sha256;

static const uint32_t k_sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static inline uint32_t ror32(uint32_t x, int r) { return (x >> r) | (x << (32 - r)); }

static void sha_init(sha256 *s)
{
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->nblk = 0;
    s->len = 0;
}

static void sha_block(sha256 *s, const uint8_t *p)
{
    uint32_t w[64], a[8];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror32(w[i - 15], 7) ^ ror32(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror32(w[i - 2], 17) ^ ror32(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    memcpy(a, s->h, sizeof a);
    for (int i = 0; i < 64; i++) {
        uint32_t S1 = ror32(a[4], 6) ^ ror32(a[4], 11) ^ ror32(a[4], 25);
        uint32_t ch = (a[4] & a[5]) ^ (~a[4] & a[6]);
        uint32_t t1 = a[7] + S1 + ch + k_sha_k[i] + w[i];
        uint32_t S0 = ror32(a[0], 2) ^ ror32(a[0], 13) ^ ror32(a[0], 22);
        uint32_t mj = (a[0] & a[1]) ^ (a[0] & a[2]) ^ (a[1] & a[2]);
        memmove(a + 1, a, 7 * sizeof a[0]);
        a[4] += t1;
        a[0] = t1 + S0 + mj;
    }
    for (int i = 0; i < 8; i++) s->h[i] += a[i];
}

static void sha_update(sha256 *s, const void *data, size_t n)
{
    const uint8_t *p = data;
    s->len += n;
    while (n) {
        size_t k = 64 - s->nblk < n ? 64 - s->nblk : n;
        memcpy(s->blk + s->nblk, p, k);
        s->nblk += k; p += k; n -= k;
        if (s->nblk == 64) { sha_block(s, s->blk); s->nblk = 0; }
    }
}

static void sha_hex(sha256 *s, char hex[65])
{
    uint64_t bits = s->len * 8;
    uint8_t pad[72] = {0x80};
    size_t np = (s->nblk < 56 ? 56 : 120) - s->nblk;
    for (int i = 0; i < 8; i++) pad[np + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
    sha_update(s, pad, np + 8);
    for (int i = 0; i < 8; i++) snprintf(hex + 8 * i, 9, "%08x", s->h[i]);
}

/* ---- corpus reader: lines, hashing every byte read ------------------------------- */

typedef struct {
    FILE *f;
    const char *path;
    char *buf;
    size_t cap, beg, end;
    bool eof;
    sha256 sha;
} line_rd;

/* Next line (without '\n' and a trailing '\r') in *line, *len; *got false at the end. */
static al_status next_line(line_rd *r, const char **line, size_t *len, bool *got, al_error *err)
{
    size_t scan = r->beg;
    for (;;) {
        char *nl = scan < r->end ? memchr(r->buf + scan, '\n', r->end - scan) : NULL;
        if (nl || (r->eof && r->beg < r->end)) {
            size_t e = nl ? (size_t)(nl - r->buf) : r->end;
            *line = r->buf + r->beg;
            *len = e - r->beg;
            if (*len && (*line)[*len - 1] == '\r') (*len)--;
            r->beg = nl ? e + 1 : e;
            *got = true;
            return AL_OK;
        }
        if (r->eof) { *got = false; return AL_OK; }
        scan = r->end;
        if (r->beg) {                                   /* keep only the partial line */
            memmove(r->buf, r->buf + r->beg, r->end - r->beg);
            r->end -= r->beg; scan -= r->beg; r->beg = 0;
        }
        if (r->end == r->cap) {
            char *nb = al_realloc(r->buf, r->cap * 2);
            if (!nb) return al_errorf(err, AL_ERR_NOMEM, "%s: out of memory (a line of %zu bytes)", r->path, r->end);
            r->buf = nb;
            r->cap *= 2;
        }
        size_t k = fread(r->buf + r->end, 1, r->cap - r->end, r->f);
        if (k < r->cap - r->end) {
            if (ferror(r->f)) return al_errorf(err, AL_ERR_IO, "%s: read error: %s", r->path, strerror(errno));
            r->eof = true;
        }
        sha_update(&r->sha, r->buf + r->end, k);
        r->end += k;
    }
}

/* Hash whatever the reader has not consumed from the file yet (after an early stop). */
static al_status hash_rest(line_rd *r, al_error *err)
{
    while (!r->eof) {
        size_t k = fread(r->buf, 1, r->cap, r->f);
        if (k < r->cap) {
            if (ferror(r->f)) return al_errorf(err, AL_ERR_IO, "%s: read error: %s", r->path, strerror(errno));
            r->eof = true;
        }
        sha_update(&r->sha, r->buf, k);
    }
    return AL_OK;
}

/* ---- computation ------------------------------------------------------------------ */

static al_status stats_compute_local(const al_model *m, const al_tokenizer *tok, const al_stats_opts *o,
                                     al_stats **out, al_error *err)
{
    const al_model_config *g = al_model_cfg(m);
    *out = NULL;
    if (o->layer < 0 || o->layer >= g->n_layer)
        return al_errorf(err, AL_ERR_USAGE, "stats: layer %d outside 0..%d", o->layer, g->n_layer - 1);
    if (o->truncate < 0 || o->truncate > g->n_ctx)
        return al_errorf(err, AL_ERR_USAGE, "stats: truncation to %d tokens outside 1..%d (the context)",
                         o->truncate, g->n_ctx);
    if (o->max_tokens < 0) return al_errorf(err, AL_ERR_USAGE, "stats: negative token budget");
    const int Tm = o->truncate ? o->truncate : g->n_ctx, M = g->n_inner;
    const int budget = o->batch_tokens > 0 ? o->batch_tokens : STATS_BATCH_TOKENS;
    const int Bm = budget / Tm > 0 ? budget / Tm : 1;
    const size_t cells = (size_t)Bm * (size_t)Tm;

    al_status st = AL_OK;
    al_stats *s = NULL;
    al_model_ws *ws = NULL;
    int32_t *tokens = NULL, *ids = NULL;
    int *lens = NULL, *pb = NULL, *pt = NULL;
    float *keys = NULL;
    double *k64 = NULL;
    line_rd rd = {0};
    char modbuf[96], hex[65], real[PATH_MAX];

    rd.path = o->corpus;
    rd.cap = LINE_CHUNK;
    sha_init(&rd.sha);
    if (!(rd.f = fopen(o->corpus, "rb"))) {
        st = al_errorf(err, AL_ERR_IO, "%s: %s", o->corpus, strerror(errno));
        goto done;
    }
    s = al_stats_alloc(M);
    rd.buf = al_malloc(rd.cap);
    tokens = al_calloc(cells, sizeof *tokens);
    lens = al_calloc((size_t)Bm, sizeof *lens);
    pb = al_calloc(cells, sizeof *pb);
    pt = al_calloc(cells, sizeof *pt);
    keys = al_malloc(cells * (size_t)M * sizeof *keys);
    k64 = al_malloc(cells * (size_t)M * sizeof *k64);
    if (!s || !rd.buf || !tokens || !lens || !pb || !pt || !keys || !k64) {
        st = al_errorf(err, AL_ERR_NOMEM, "stats: out of memory (%d x %d tokens x %d keys)", Bm, Tm, M);
        goto done;
    }
    if ((st = al_model_ws_new(&ws, m, Bm, Tm, err)) != AL_OK) goto done;

    int64_t count = 0, ndocs = 0, batch_no = 0;
    bool more = true;
    while (more) {
        /* 1. a batch: up to Bm documents, right-padded to the longest (T <= Tm) */
        int B = 0, T = 0, n = 0;
        while (B < Bm) {
            const char *line;
            size_t len, nid = 0;
            bool got;
            if ((st = next_line(&rd, &line, &len, &got, err)) != AL_OK) goto done;
            if (!got) { more = false; break; }
            if (!len) continue;
            al_free(ids);
            ids = NULL;
            if ((st = al_tokenizer_encode(tok, line, len, false, &ids, &nid, err)) != AL_OK) {
                al_error_prefix(err, "%s: document %lld", o->corpus, (long long)ndocs + 1);
                goto done;
            }
            if (!nid) continue;
            ndocs++;
            size_t keep = nid < (size_t)Tm ? nid : (size_t)Tm;
            if (o->max_tokens && (int64_t)keep >= o->max_tokens - count - n) {
                keep = (size_t)(o->max_tokens - count - n);   /* a causal prefix: same keys */
                more = false;
            }
            memcpy(tokens + (size_t)B * Tm, ids, keep * sizeof *ids);
            lens[B++] = (int)keep;
            n += (int)keep;
            if ((int)keep > T) T = (int)keep;
            if (!more) break;
        }
        if (!B) break;
        /* a distributed run: this rank's batches only, the same count everywhere */
        bool mine = !al_comm_multi(o->comm) || batch_no % o->comm->size == o->comm->rank;
        batch_no++;
        if (!mine) {
            count += n;
            if (o->progress) o->progress(count, ndocs, o->user);
            continue;
        }
        /* 2. the grid is B x T with row stride T: repack rows from stride Tm */
        for (int b = 1; b < B; b++) memmove(tokens + (size_t)b * T, tokens + (size_t)b * Tm, (size_t)lens[b] * sizeof *tokens);
        int k = 0;
        for (int b = 0; b < B; b++) {
            for (int t = lens[b]; t < T; t++) tokens[(size_t)b * T + t] = 0;   /* padding: ignored */
            for (int t = 0; t < lens[b]; t++, k++) { pb[k] = b; pt[k] = t; }
        }
        al_hook hk = {.layer = o->layer, .n_pos = n, .pos_b = pb, .pos_t = pt, .key = keys};
        al_forward_args fa = {.tokens = tokens, .B = B, .T = T, .lens = lens, .hook = &hk, .stop_after_hook = true};
        if ((st = al_model_forward(ws, &fa, err)) != AL_OK) goto done;
        /* 3. S += K^T K over the block's n keys (upper triangle), in F64 */
        size_t nk = (size_t)n * (size_t)M;
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < nk; i++) k64[i] = keys[i];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, M, n, 1.0, k64, M, 1.0, s->sum, M);
        count += n;
        if (o->progress) o->progress(count, ndocs, o->user);
    }
    if ((st = hash_rest(&rd, err)) != AL_OK) goto done;
    for (int i = 0; i < M; i++)                        /* symmetrize: lower = upper^T */
        for (int j = 0; j < i; j++) s->sum[(size_t)i * M + j] = s->sum[(size_t)j * M + i];
    s->count = count;
    s->layer = o->layer;
    sha_hex(&rd.sha, hex);
    const char *mp = o->model_path ? (realpath(o->model_path, real) ? real : o->model_path) : "";
    if (!al_stats_set_str(&s->model, mp) || !al_stats_set_str(&s->model_type, g->model_type) ||
        !al_stats_set_str(&s->module, al_stats_module_name(m, o->layer, modbuf, sizeof modbuf)) ||
        !al_stats_set_str(&s->corpus, realpath(o->corpus, real) ? real : o->corpus) ||
        !al_stats_set_str(&s->corpus_sha256, hex) || !al_stats_set_str(&s->dtype, "float64") ||
        !al_stats_set_str(&s->source, "alloy")) {
        st = al_errorf(err, AL_ERR_NOMEM, "out of memory");
        goto done;
    }
    *out = s;
    s = NULL;
done:
    if (rd.f) fclose(rd.f);
    al_free(rd.buf);
    al_free(tokens); al_free(ids); al_free(lens); al_free(pb); al_free(pt);
    al_free(keys); al_free(k64);
    al_model_ws_free(ws);
    al_stats_free(s);
    return st;
}

al_status al_stats_compute(const al_model *m, const al_tokenizer *tok, const al_stats_opts *o,
                           al_stats **out, al_error *err)
{
    al_status st = al_comm_agree(o->comm, stats_compute_local(m, tok, o, out, err), err);
    if (st == AL_OK && al_comm_multi(o->comm)) {
        al_stats *s = *out;
        st = al_comm_sum_f64(o->comm, s->sum, (size_t)s->m * (size_t)s->m, err);
        /* symmetric again: MPI may reduce the two halves in different orders */
        for (int i = 0; i < s->m && st == AL_OK; i++)
            for (int j = 0; j < i; j++) s->sum[(size_t)i * s->m + j] = s->sum[(size_t)j * s->m + i];
    }
    if (st != AL_OK) { al_stats_free(*out); *out = NULL; }
    return st;
}

al_status al_stats_check(const al_stats *s, const al_model *m, int layer, const char *what,
                         al_error *err)
{
    const al_model_config *g = al_model_cfg(m);
    const char *w = what ? what : "statistics";
    if (s->m != g->n_inner)
        return al_errorf(err, AL_ERR_SHAPE, "%s: statistics of the wrong shape: [%d, %d], the model's "
                         "down-projection input has %d features", w, s->m, s->m, g->n_inner);
    if (s->layer >= 0 && s->layer != layer)
        return al_errorf(err, AL_ERR_RECIPE, "%s: statistics from another model/layer: computed at layer %d "
                         "(%s), used at layer %d", w, s->layer, s->module, layer);
    if (s->model_type[0] && strcmp(s->model_type, g->model_type) != 0)
        return al_errorf(err, AL_ERR_RECIPE, "%s: statistics from another model/layer: model_type '%s' "
                         "(%s), this model is '%s'", w, s->model_type, s->model, g->model_type);
    return AL_OK;
}

/* ---- HDF5 cache ------------------------------------------------------------------- */

al_status al_stats_save(const al_stats *s, const char *path, al_error *err)
{
    al_status st = AL_OK;
    char d[160];
    size_t pl = strlen(path);
    char *tmp = al_malloc(pl + 5);
    if (!tmp) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    hid_t f = -1, sp = -1, ds = -1;
    hsize_t dims[2] = {(hsize_t)s->m, (hsize_t)s->m};
    al_h5_enter();
    if ((f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
        st = al_errorf(err, AL_ERR_IO, "%s: cannot create: %s", tmp, al_h5_why(d, sizeof d));
        goto done;
    }
    bool ok = (sp = H5Screate_simple(2, dims, NULL)) >= 0 &&
              (ds = H5Dcreate2(f, "mom2_sum", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
              H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, s->sum) >= 0;
    if (ds >= 0) { H5Dclose(ds); ds = -1; }
    if (sp >= 0) { H5Sclose(sp); sp = -1; }
    ok = ok && (sp = H5Screate(H5S_SCALAR)) >= 0 &&
         (ds = H5Dcreate2(f, "count", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
         H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &s->count) >= 0;
    ok = ok && al_h5_put_str(f, "alloy_format", STATS_FORMAT) && al_h5_put_str(f, "model", s->model) &&
         al_h5_put_str(f, "model_type", s->model_type) && al_h5_put_str(f, "module", s->module) &&
         al_h5_put_str(f, "corpus", s->corpus) && al_h5_put_str(f, "corpus_sha256", s->corpus_sha256) &&
         al_h5_put_str(f, "dtype", s->dtype) && al_h5_put_str(f, "source", s->source) &&
         al_h5_put_i64(f, "layer", s->layer) && al_h5_put_i64(f, "n_tokens", s->count);
    if (ds >= 0) H5Dclose(ds);
    if (sp >= 0) H5Sclose(sp);
    if (!ok) { st = al_errorf(err, AL_ERR_IO, "%s: cannot write statistics: %s", tmp, al_h5_why(d, sizeof d)); goto done; }
    st = al_h5_commit(f, tmp, path, err);
    f = -1;
done:
    if (f >= 0) H5Fclose(f);
    al_h5_leave();
    if (st != AL_OK) unlink(tmp);
    al_free(tmp);
    return st;
}

/* The load itself; the HDF5 lock is held. */
static al_status stats_load_locked(const char *path, al_stats **out, al_error *err)
{
    *out = NULL;
    al_status st = AL_OK;
    al_stats *s = NULL;
    char d[160], *fmt = NULL;
    hid_t f = -1, ds = -1, sp = -1, ty = -1;
    if ((f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        st = access(path, R_OK) != 0 ? al_errorf(err, AL_ERR_IO, "%s: %s", path, strerror(errno))
                                     : al_errorf(err, AL_ERR_FORMAT, "%s: not an HDF5 file: %s", path, al_h5_why(d, sizeof d));
        goto done;
    }
    if ((st = al_h5_get_str(f, "alloy_format", path, &fmt, err)) != AL_OK) goto done;
    if (strcmp(fmt, STATS_FORMAT) != 0) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: not an alloy statistics file (alloy_format '%s', "
                       "expected '%s')", path, fmt, STATS_FORMAT);
        goto done;
    }
    hsize_t dims[2] = {0, 0};
    if ((ds = H5Dopen2(f, "mom2_sum", H5P_DEFAULT)) < 0 || (sp = H5Dget_space(ds)) < 0 ||
        H5Sget_simple_extent_ndims(sp) != 2 || H5Sget_simple_extent_dims(sp, dims, NULL) != 2 ||
        (ty = H5Dget_type(ds)) < 0 || H5Tget_class(ty) != H5T_FLOAT) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: /mom2_sum missing or not a 2-D float dataset", path);
        goto done;
    }
    if (dims[0] != dims[1] || dims[0] < 1 || dims[0] > STATS_MAX_M) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: /mom2_sum is [%llu, %llu], not square [m, m] with "
                       "1 <= m <= %d", path, (unsigned long long)dims[0], (unsigned long long)dims[1], STATS_MAX_M);
        goto done;
    }
    if (!(s = al_stats_alloc((int)dims[0]))) { st = al_errorf(err, AL_ERR_NOMEM, "%s: out of memory", path); goto done; }
    if (H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, s->sum) < 0) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: cannot read /mom2_sum: %s", path, al_h5_why(d, sizeof d));
        goto done;
    }
    H5Tclose(ty); ty = -1;
    H5Sclose(sp); sp = -1;
    H5Dclose(ds);
    if ((ds = H5Dopen2(f, "count", H5P_DEFAULT)) < 0 || (sp = H5Dget_space(ds)) < 0 ||
        H5Sget_simple_extent_npoints(sp) != 1 || (ty = H5Dget_type(ds)) < 0 ||
        H5Tget_class(ty) != H5T_INTEGER ||
        H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &s->count) < 0 || s->count < 0) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: /count missing or not a non-negative integer", path);
        goto done;
    }
    int64_t layer = -1;
    if ((st = al_h5_get_i64(f, "layer", path, &layer, err)) != AL_OK) goto done;
    if (layer < -1 || layer > INT_MAX) { st = al_errorf(err, AL_ERR_FORMAT, "%s: layer %lld invalid", path, (long long)layer); goto done; }
    s->layer = (int)layer;
    if ((st = al_h5_get_str(f, "model", path, &s->model, err)) != AL_OK ||
        (st = al_h5_get_str(f, "model_type", path, &s->model_type, err)) != AL_OK ||
        (st = al_h5_get_str(f, "module", path, &s->module, err)) != AL_OK ||
        (st = al_h5_get_str(f, "corpus", path, &s->corpus, err)) != AL_OK ||
        (st = al_h5_get_str(f, "corpus_sha256", path, &s->corpus_sha256, err)) != AL_OK ||
        (st = al_h5_get_str(f, "dtype", path, &s->dtype, err)) != AL_OK ||
        (st = al_h5_get_str(f, "source", path, &s->source, err)) != AL_OK)
        goto done;
    *out = s;
    s = NULL;
done:
    if (ty >= 0) H5Tclose(ty);
    if (sp >= 0) H5Sclose(sp);
    if (ds >= 0) H5Dclose(ds);
    if (f >= 0) H5Fclose(f);
    al_free(fmt);
    al_stats_free(s);
    return st;
}

static void stats_probe(void *path)
{
    al_stats *s = NULL;
    al_error e;
    stats_load_locked(path, &s, &e);
}

al_status al_stats_load(const char *path, al_stats **out, al_error *err)
{
    *out = NULL;
    al_h5_enter();
    al_status st = al_h5_probe(path, stats_probe, (void *)path, err);
    if (st == AL_OK) st = stats_load_locked(path, out, err);
    al_h5_leave();
    return st;
}
