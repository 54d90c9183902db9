/* io/safetensors.c: read (mmap) and write (streaming) safetensors files.
 *
 * Layout (huggingface/safetensors README, "Format"):
 *
 *   [0, 8)          u64 little-endian N: length of the JSON header
 *   [8, 8+N)        UTF-8 JSON object: { "__metadata__": {str: str}?,
 *                     name: {"dtype": "F32", "shape": [d0, ...], "data_offsets": [b, e]}, ... }
 *                   may be padded with JSON whitespace (writers pad with spaces so that
 *                   8+N is a multiple of 8 and the data is 8-byte aligned)
 *   [8+N, EOF)      the byte buffer; a tensor's bytes are buffer[b, e), little-endian,
 *                   row-major; e - b = numel(shape) * bits(dtype) / 8
 *
 * Validation follows the reference reader (safetensors/src/tensor.rs: read_metadata then
 * Metadata::validate) in its order, so the first fault reported is the one it reports:
 *   1. file shorter than 8 bytes                         (HeaderTooSmall)
 *   2. N > 100,000,000                                   (HeaderTooLarge)
 *   3. 8 + N past the end of the file                    (InvalidHeaderLength)
 *   4. header not UTF-8                                  (InvalidHeader)
 *   5. not JSON / not an object / bad entry: dtype unknown, shape not non-negative
 *      integers, offsets not two non-negative integers, __metadata__ not str->str
 *                                                        (InvalidHeaderDeserialization)
 *   then, tensors sorted by (begin, end) and walked with a running start = 0:
 *   6. begin != start or end < begin: a hole or an overlap (InvalidOffset)
 *   7. numel(shape) * bits overflows 64 bits             (ValidationOverflow)
 *   8. sub-byte dtype total not a whole number of bytes  (MisalignedSlice)
 *   9. e - b != byte size of dtype and shape             (TensorInvalidInfo)
 *   and finally
 *  10. 8 + N + last end != file size: truncated or trailing bytes (MetadataIncompleteBuffer)
 * Stricter than the reference: duplicate JSON keys are refused (it keeps one silently),
 * rank is limited to AL_MAX_DIMS, and __metadata__ must be an object when present.
 * Unknown fields inside a tensor entry are ignored, as the reference does. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "../core/alloc.h"
#include "../core/emergency.h"

#define ST_WRITE_BUF (4u << 20)     /* writer buffer: 4 MiB */

/* ---- small helpers ------------------------------------------------------------ */

static uint64_t st_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing past U+10FFFF.
 * Returns the index of the first bad byte, or len when the text is valid. */
static size_t st_utf8_bad(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n;
        uint32_t cp, min;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xe0) == 0xc0) { n = 1; cp = c & 0x1f; min = 0x80; }
        else if ((c & 0xf0) == 0xe0) { n = 2; cp = c & 0x0f; min = 0x800; }
        else if ((c & 0xf8) == 0xf0) { n = 3; cp = c & 0x07; min = 0x10000; }
        else return i;
        if (len - i <= n) return i;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += n + 1;
    }
    return len;
}

static const char *st_json_kind(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "an unknown JSON value";
}

/* ---- parsing ------------------------------------------------------------------ */

typedef struct {
    const char *name;           /* borrowed from the JSON object (alive until decref) */
    al_dtype dtype;
    int ndim;
    int64_t shape[AL_MAX_DIMS];
    uint64_t begin, end;
} st_entry;

/* A JSON value that must be a non-negative integer; `what` names it in messages. */
static al_status st_get_uint(const json_t *v, const char *label, const char *name,
                             const char *what, size_t idx, int64_t *out, al_error *err)
{
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x < 0)
            return al_errorf(err, AL_ERR_FORMAT, "%s: tensor '%s': %s[%zu] is negative (%lld)",
                             label, name, what, idx, (long long)x);
        *out = (int64_t)x;
        return AL_OK;
    }
    if (json_is_real(v))
        return al_errorf(err, AL_ERR_FORMAT,
                         "%s: tensor '%s': %s[%zu] is %g, not a non-negative integer",
                         label, name, what, idx, json_real_value(v));
    return al_errorf(err, AL_ERR_FORMAT, "%s: tensor '%s': %s[%zu] is %s, not a non-negative integer",
                     label, name, what, idx, st_json_kind(v));
}

/* Rule 5 for one tensor entry: types and ranges of dtype, shape and data_offsets. */
static al_status st_parse_entry(const char *label, const char *name, const json_t *v,
                                st_entry *e, al_error *err)
{
    al_status st;
    if (!json_is_object(v))
        return al_errorf(err, AL_ERR_FORMAT, "%s: tensor '%s': entry is %s, not an object",
                         label, name, st_json_kind(v));
    e->name = name;

    const json_t *dt = json_object_get(v, "dtype");
    if (!dt)
        return al_errorf(err, AL_ERR_FORMAT, "%s: tensor '%s': missing \"dtype\"", label, name);
    if (!json_is_string(dt))
        return al_errorf(err, AL_ERR_FORMAT, "%s: tensor '%s': dtype is %s, not a string",
                         label, name, st_json_kind(dt));
    if (!al_dtype_from_name(json_string_value(dt), &e->dtype))
        return al_errorf(err, AL_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'",
                         label, name, json_string_value(dt));

    const json_t *sh = json_object_get(v, "shape");
    if (!sh)
        return al_errorf(err, AL_ERR_FORMAT, "%s: tensor '%s': missing \"shape\"", label, name);
    if (!json_is_array(sh))
        return al_errorf(err, AL_ERR_FORMAT, "%s: tensor '%s': shape is %s, not an array",
                         label, name, st_json_kind(sh));
    size_t rank = json_array_size(sh);
    if (rank > AL_MAX_DIMS)
        return al_errorf(err, AL_ERR_FORMAT, "%s: tensor '%s': rank %zu exceeds the maximum of %d",
                         label, name, rank, AL_MAX_DIMS);
    e->ndim = (int)rank;
    for (size_t i = 0; i < rank; i++) {
        st = st_get_uint(json_array_get(sh, i), label, name, "shape", i, &e->shape[i], err);
        if (st) return st;
    }

    const json_t *off = json_object_get(v, "data_offsets");
    if (!off)
        return al_errorf(err, AL_ERR_FORMAT, "%s: tensor '%s': missing \"data_offsets\"", label, name);
    if (!json_is_array(off))
        return al_errorf(err, AL_ERR_FORMAT, "%s: tensor '%s': data_offsets is %s, not an array",
                         label, name, st_json_kind(off));
    if (json_array_size(off) != 2)
        return al_errorf(err, AL_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets has %zu elements, expected [begin, end]",
                         label, name, json_array_size(off));
    int64_t b, en;
    st = st_get_uint(json_array_get(off, 0), label, name, "data_offsets", 0, &b, err);
    if (st) return st;
    st = st_get_uint(json_array_get(off, 1), label, name, "data_offsets", 1, &en, err);
    if (st) return st;
    e->begin = (uint64_t)b;
    e->end = (uint64_t)en;
    return AL_OK;
}

static int st_entry_cmp(const void *pa, const void *pb)
{
    const st_entry *a = pa, *b = pb;
    if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end) return a->end < b->end ? -1 : 1;
    return strcmp(a->name, b->name);     /* only for a deterministic error message */
}

/* Turn a jansson load error into a message; numeric overflow and duplicate keys get
 * their own wording because they are the ones a hostile or buggy writer produces. */
static al_status st_json_error(const char *label, const json_error_t *je, al_error *err)
{
    switch (json_error_code(je)) {
    case json_error_out_of_memory:
        return al_errorf(err, AL_ERR_NOMEM, "%s: out of memory parsing the header", label);
    case json_error_numeric_overflow:
        return al_errorf(err, AL_ERR_FORMAT,
                         "%s: header number does not fit in 64 bits (overflow) at byte %d: %s",
                         label, je->position, je->text);
    case json_error_duplicate_key:
        return al_errorf(err, AL_ERR_FORMAT,
                         "%s: duplicate key in the header at byte %d (%s); tensor names must be unique",
                         label, je->position, je->text);
    default:
        return al_errorf(err, AL_ERR_FORMAT, "%s: header is not valid JSON: %s (line %d, column %d)",
                         label, je->text, je->line, je->column);
    }
}

al_status al_st_parse(const uint8_t *buf, size_t len, const char *label, al_bt_list *out,
                      al_error *err)
{
    al_status st = AL_OK;
    json_t *root = NULL;
    st_entry *ents = NULL;
    const size_t n0 = out->n, m0 = out->nmeta;
    char shp[160];
    if (!label) label = "<memory>";

    /* 1-3: header length against the limit and the file size. */
    if (len < 8) {
        st = al_errorf(err, AL_ERR_FORMAT,
                       "%s: file is %zu bytes, too small for the 8-byte header length", label, len);
        goto done;
    }
    uint64_t hlen = st_le64(buf);
    if (hlen > AL_ST_MAX_HEADER) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: header length %" PRIu64
                       " exceeds the limit of %llu bytes", label, hlen, AL_ST_MAX_HEADER);
        goto done;
    }
    if (hlen > len - 8) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: header length %" PRIu64
                       " exceeds the file size (%zu bytes)", label, hlen, len);
        goto done;
    }
    const uint8_t *hdr = buf + 8;
    const uint64_t data0 = 8 + hlen;     /* absolute offset of the byte buffer */

    /* 4: UTF-8, checked here so the message can say where. */
    size_t bad = st_utf8_bad(hdr, (size_t)hlen);
    if (bad != hlen) {
        st = al_errorf(err, AL_ERR_FORMAT,
                       "%s: header is not valid UTF-8 (byte 0x%02x at header offset %zu)",
                       label, hdr[bad], bad);
        goto done;
    }

    /* 5: JSON object; leading/trailing JSON whitespace is accepted by jansson. */
    json_error_t je;
    root = json_loadb((const char *)hdr, (size_t)hlen, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!root) { st = st_json_error(label, &je, err); goto done; }
    if (!json_is_object(root)) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: header is %s, not a JSON object",
                       label, st_json_kind(root));
        goto done;
    }

    const json_t *meta = json_object_get(root, "__metadata__");
    if (meta) {
        if (!json_is_object(meta)) {
            st = al_errorf(err, AL_ERR_FORMAT, "%s: __metadata__ is %s, not an object of strings",
                           label, st_json_kind(meta));
            goto done;
        }
        const char *k;
        const json_t *mv;
        json_object_foreach((json_t *)meta, k, mv) {
            if (!json_is_string(mv)) {
                st = al_errorf(err, AL_ERR_FORMAT, "%s: __metadata__ value of '%s' is %s, not a string",
                               label, k, st_json_kind(mv));
                goto done;
            }
        }
    }

    size_t nt = json_object_size(root) - (meta ? 1 : 0);
    if (nt) {
        ents = al_calloc(nt, sizeof *ents);
        if (!ents) {
            st = al_errorf(err, AL_ERR_NOMEM, "%s: out of memory for %zu tensor entries", label, nt);
            goto done;
        }
    }
    size_t ne = 0;
    {
        const char *k;
        const json_t *v;
        json_object_foreach(root, k, v) {
            if (v == meta) continue;
            st = st_parse_entry(label, k, v, &ents[ne], err);
            if (st) goto done;
            ne++;
        }
    }

    /* 6-9, in data order. */
    if (ne > 1) qsort(ents, ne, sizeof *ents, st_entry_cmp);
    uint64_t start = 0;
    for (size_t i = 0; i < ne; i++) {
        st_entry *e = &ents[i];
        if (e->end < e->begin) {
            st = al_errorf(err, AL_ERR_FORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                           "] end before begin", label, e->name, e->begin, e->end);
            goto done;
        }
        if (e->begin != start) {
            if (e->begin > start)
                st = al_errorf(err, AL_ERR_FORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                               "] leave a hole: the previous data ends at %" PRIu64,
                               label, e->name, e->begin, e->end, start);
            else
                st = al_errorf(err, AL_ERR_FORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                               "] overlap tensor '%s', which ends at %" PRIu64,
                               label, e->name, e->begin, e->end, ents[i - 1].name, start);
            goto done;
        }
        al_shape_str(shp, sizeof shp, e->ndim, e->shape);
        int64_t numel;
        uint64_t bits;
        if (!al_shape_numel(e->ndim, e->shape, &numel) ||
            al_mul_overflow_u64((uint64_t)numel, al_dtype_bits(e->dtype), &bits)) {
            st = al_errorf(err, AL_ERR_FORMAT, "%s: tensor '%s': size of dtype %s and shape %s overflows 64 bits",
                           label, e->name, al_dtype_name(e->dtype), shp);
            goto done;
        }
        if (bits % 8) {
            st = al_errorf(err, AL_ERR_FORMAT, "%s: tensor '%s': dtype %s and shape %s make %" PRIu64
                           " bits, not a whole number of bytes (misaligned)",
                           label, e->name, al_dtype_name(e->dtype), shp, bits);
            goto done;
        }
        if (e->end - e->begin != bits / 8) {
            st = al_errorf(err, AL_ERR_FORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                           "] do not match dtype %s and shape %s (%" PRIu64 " bytes)",
                           label, e->name, e->begin, e->end, al_dtype_name(e->dtype), shp, bits / 8);
            goto done;
        }
        start = e->end;
    }

    /* 10: the data must end exactly at EOF (offsets < 2^63, data0 < 2^27: no overflow). */
    uint64_t need = data0 + start;
    if (need != len) {
        if (need > len)
            st = al_errorf(err, AL_ERR_FORMAT, "%s: file is truncated: the tensor data ends at byte %"
                           PRIu64 " but the file has %zu bytes", label, need, len);
        else
            st = al_errorf(err, AL_ERR_FORMAT, "%s: %" PRIu64 " trailing bytes after the tensor data"
                           " (data ends at byte %" PRIu64 ", file has %zu bytes)",
                           label, (uint64_t)len - need, need, len);
        goto done;
    }

    /* Valid: publish tensors in data order, then metadata. */
    for (size_t i = 0; i < ne; i++) {
        al_bt_tensor t = {0};
        t.name = al_strdup(ents[i].name);
        if (!t.name) {
            st = al_errorf(err, AL_ERR_NOMEM, "%s: out of memory for tensor names", label);
            goto done;
        }
        t.dtype = ents[i].dtype;
        t.ndim = ents[i].ndim;
        memcpy(t.shape, ents[i].shape, sizeof t.shape);
        t.nbytes = ents[i].end - ents[i].begin;
        t.offset = data0 + ents[i].begin;
        st = al_bt_push(out, &t, err);
        if (st) {
            al_free(t.name);
            al_error_prefix(err, "%s: ", label);
            goto done;
        }
    }
    if (meta) {
        const char *k;
        const json_t *mv;
        json_object_foreach((json_t *)meta, k, mv) {
            st = al_bt_meta_push(out, k, json_string_value(mv), err);
            if (st) {
                al_error_prefix(err, "%s: ", label);
                goto done;
            }
        }
    }

done:
    if (st != AL_OK) {          /* roll back whatever was appended */
        for (size_t i = n0; i < out->n; i++) al_free(out->v[i].name);
        out->n = n0;
        for (size_t i = m0; i < out->nmeta; i++) {
            al_free(out->meta_keys[i]);
            al_free(out->meta_vals[i]);
        }
        out->nmeta = m0;
    }
    al_free(ents);
    json_decref(root);
    return st;
}

/* ---- reader backend ----------------------------------------------------------- */

typedef struct {
    uint8_t *base;      /* whole-file read-only mapping; NULL for an empty file */
    size_t len;
    char *path;
    int emergency;      /* al_emergency_mapping slot (names the file on SIGBUS), or -1 */
} st_file;

static void st_close(void *handle)
{
    st_file *f = handle;
    if (!f) return;
    al_emergency_forget(f->emergency);
    if (f->base) munmap(f->base, f->len);
    al_free(f->path);
    al_free(f);
}

static al_status st_open(const char *path, void **handle, al_bt_list *list, al_error *err)
{
    al_status st = AL_OK;
    int fd = -1;
    st_file *f = NULL;
    struct stat sb;

    *handle = NULL;
    f = al_calloc(1, sizeof *f);
    if (f) f->emergency = -1;
    if (!f || !(f->path = al_strdup(path))) {
        st = al_errorf(err, AL_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        st = al_errorf(err, AL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    if (fstat(fd, &sb) != 0) {
        st = al_errorf(err, AL_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = al_errorf(err, AL_ERR_IO, "%s: not a regular file", path);
        goto fail;
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        st = al_errorf(err, AL_ERR_IO, "%s: file of %lld bytes does not fit in memory",
                       path, (long long)sb.st_size);
        goto fail;
    }
    f->len = (size_t)sb.st_size;
    if (f->len > 0) {            /* mmap of 0 bytes is EINVAL; an empty file fails rule 1 */
        void *p = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            st = al_errorf(err, AL_ERR_IO, "%s: mmap of %zu bytes failed: %s", path, f->len,
                           strerror(errno));
            goto fail;
        }
        f->base = p;
        (void)madvise(f->base, f->len, MADV_SEQUENTIAL);   /* a hint; failure is harmless */
        f->emergency = al_emergency_mapping(f->base, f->len, path);
    }
    close(fd);                   /* the mapping keeps the file alive */
    fd = -1;

    st = al_st_parse(f->base, f->len, path, list, err);
    if (st) goto fail;
    *handle = f;
    return AL_OK;

fail:
    if (fd >= 0) close(fd);
    st_close(f);
    return st;
}

static const void *st_map(void *handle, const al_bt_tensor *t)
{
    st_file *f = handle;
    return f->base + t->offset;
}

static al_status st_read_rows(void *handle, const al_bt_tensor *t, int64_t row0, int64_t nrows,
                              void *dst, al_error *err)
{
    st_file *f = handle;
    int64_t rows = t->ndim ? t->shape[0] : 1;
    if (row0 < 0 || nrows < 0 || row0 > rows || nrows > rows - row0)
        return al_errorf(err, AL_ERR_USAGE, "%s: tensor '%s': rows [%lld, %lld) out of range (%lld rows)",
                         f->path, t->name, (long long)row0, (long long)row0 + (long long)nrows,
                         (long long)rows);
    if (nrows == 0) return AL_OK;
    /* Row bytes = bits(dtype) * product(shape[1:]) / 8; sub-byte rows must be whole bytes. */
    uint64_t rowbits = (uint64_t)al_shape_row_numel(t->ndim, t->shape) * al_dtype_bits(t->dtype);
    if (rowbits % 8)
        return al_errorf(err, AL_ERR_UNSUPPORTED,
                         "%s: tensor '%s': a row of dtype %s is not a whole number of bytes",
                         f->path, t->name, al_dtype_name(t->dtype));
    uint64_t rb = rowbits / 8;
    uint64_t off = t->offset + (uint64_t)row0 * rb, n = (uint64_t)nrows * rb;
    if (t->offset > f->len || t->nbytes > f->len - t->offset || (uint64_t)row0 * rb + n > t->nbytes)
        return al_errorf(err, AL_ERR_INTERNAL, "%s: tensor '%s': bytes outside the file",
                         f->path, t->name);
    memcpy(dst, f->base + off, (size_t)n);
    return AL_OK;
}

const al_backend_ops al_safetensors_ops = {
    .name = "safetensors",
    .open = st_open,
    .map = st_map,
    .read_rows = st_read_rows,
    .close = st_close,
};

/* ---- writer ------------------------------------------------------------------- */

typedef struct {
    int fd;
    char *path;
    uint8_t *buf;           /* ST_WRITE_BUF bytes; fill bytes pending */
    size_t fill;
    char **names;           /* copies, to name the tensor in errors */
    uint64_t *ends;         /* ends[i]: cumulative byte count through tensor i */
    size_t n;
    uint64_t total, done;   /* declared and received data bytes */
    uint64_t off, kicked;   /* bytes written to fd; of those, handed to writeback */
} st_writer;

/* Streaming writeback: every ST_KICK bytes, start writing that range to disk in the
 * background and wait for the range before it, so that the disk works while the
 * merge computes (else the kernel holds gigabytes of dirty pages until the final
 * fsync) and dirty memory stays bounded. Hints: errors surface at fsync. */
#define ST_KICK ((uint64_t)32 << 20)
static void st_kick(st_writer *w)
{
    while (w->off - w->kicked >= ST_KICK) {
        (void)sync_file_range(w->fd, (off64_t)w->kicked, (off64_t)ST_KICK, SYNC_FILE_RANGE_WRITE);
        if (w->kicked >= ST_KICK)
            (void)sync_file_range(w->fd, (off64_t)(w->kicked - ST_KICK), (off64_t)ST_KICK,
                                  SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
        w->kicked += ST_KICK;
    }
}

/* write(2) all of p, retrying short writes and EINTR. */
static al_status st_write_all(st_writer *w, const void *p, size_t n, al_error *err)
{
    const uint8_t *c = p;
    while (n > 0) {
        ssize_t k = write(w->fd, c, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return al_errorf(err, AL_ERR_IO, "%s: write failed: %s", w->path, strerror(errno));
        }
        if (k == 0)
            return al_errorf(err, AL_ERR_IO, "%s: write made no progress", w->path);
        c += k;
        n -= (size_t)k;
        w->off += (uint64_t)k;
    }
    st_kick(w);
    return AL_OK;
}

static al_status st_flush(st_writer *w, al_error *err)
{
    al_status st = st_write_all(w, w->buf, w->fill, err);
    w->fill = 0;
    return st;
}

static void st_wclose(void *handle)
{
    st_writer *w = handle;
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    for (size_t i = 0; i < w->n; i++) al_free(w->names[i]);
    al_free(w->names);
    al_free(w->ends);
    al_free(w->buf);
    al_free(w->path);
    al_free(w);
}

/* The header JSON: {"__metadata__":{"format":"pt"}, name: {...}, ...} in the given order. */
static al_status st_build_header(const char *path, const al_wt_tensor *t, size_t n,
                                 char **out, al_error *err)
{
    al_status st = AL_OK;
    json_t *root = json_object(), *meta = json_object();
    uint64_t begin = 0;
    char shp[160];

    *out = NULL;
    if (!root || !meta || json_object_set_new(root, "__metadata__", meta) != 0) {
        if (root) meta = NULL;      /* set_new consumed it even on failure */
        json_decref(meta);
        goto nomem;
    }
    if (json_object_set_new(meta, "format", json_string("pt")) != 0) goto nomem;

    for (size_t i = 0; i < n; i++) {
        const char *name = t[i].name;
        size_t nl = strlen(name);
        if (st_utf8_bad((const uint8_t *)name, nl) != nl) {
            st = al_errorf(err, AL_ERR_USAGE, "%s: tensor name '%s' is not valid UTF-8", path, name);
            goto fail;
        }
        if (strcmp(name, "__metadata__") == 0 || json_object_get(root, name)) {
            st = al_errorf(err, AL_ERR_USAGE, "%s: tensor name '%s' %s", path, name,
                           strcmp(name, "__metadata__") == 0 ? "is reserved" : "is declared twice");
            goto fail;
        }
        if (t[i].ndim < 0 || t[i].ndim > AL_MAX_DIMS) {
            st = al_errorf(err, AL_ERR_USAGE, "%s: tensor '%s': rank %d outside 0..%d",
                           path, name, t[i].ndim, AL_MAX_DIMS);
            goto fail;
        }
        int64_t numel;
        uint64_t nb;
        al_shape_str(shp, sizeof shp, t[i].ndim, t[i].shape);
        if ((unsigned)t[i].dtype >= AL_DTYPE_COUNT ||
            !al_shape_numel(t[i].ndim, t[i].shape, &numel) ||
            !al_dtype_nbytes(t[i].dtype, numel, &nb) || nb != t[i].nbytes) {
            st = al_errorf(err, AL_ERR_USAGE, "%s: tensor '%s': %" PRIu64
                           " bytes declared, which does not match dtype %s and shape %s",
                           path, name, t[i].nbytes, al_dtype_name(t[i].dtype), shp);
            goto fail;
        }
        uint64_t end;
        if (al_add_overflow_u64(begin, nb, &end) || end > (uint64_t)INT64_MAX) {
            st = al_errorf(err, AL_ERR_USAGE, "%s: tensor '%s': total data size overflows", path, name);
            goto fail;
        }
        json_t *e = json_object(), *sh = json_array(), *off = json_array();
        if (!e || !sh || !off) {
            json_decref(e); json_decref(sh); json_decref(off);
            goto nomem;
        }
        /* set_new consumes its value even on failure; e is attached to root last. */
        int bad = json_object_set_new(e, "dtype", json_string(al_dtype_name(t[i].dtype)));
        bad |= json_object_set_new(e, "shape", sh);
        bad |= json_object_set_new(e, "data_offsets", off);
        for (int d = 0; d < t[i].ndim && !bad; d++)
            bad |= json_array_append_new(sh, json_integer((json_int_t)t[i].shape[d]));
        if (!bad) bad |= json_array_append_new(off, json_integer((json_int_t)begin));
        if (!bad) bad |= json_array_append_new(off, json_integer((json_int_t)end));
        if (bad) {
            json_decref(e);
            goto nomem;
        }
        if (json_object_set_new(root, name, e) != 0) goto nomem;
        begin = end;
    }
    *out = json_dumps(root, JSON_COMPACT);
    if (!*out) goto nomem;
    goto fail;      /* success shares the cleanup */

nomem:
    st = al_errorf(err, AL_ERR_NOMEM, "%s: out of memory building the header", path);
fail:
    json_decref(root);
    return st;
}

static al_status st_create(const char *path, const al_wt_tensor *t, size_t n, int compress,
                           void **handle, al_error *err)
{
    al_status st = AL_OK;
    st_writer *w = NULL;
    char *json = NULL;
    bool created = false;
    (void)compress;              /* safetensors has no compression */

    *handle = NULL;
    /* A header is at least as long as the names in it: refuse hopeless lists before
     * building a JSON document of that size. */
    uint64_t namebytes = 0;
    for (size_t i = 0; i < n; i++) namebytes += strlen(t[i].name);
    if (namebytes > AL_ST_MAX_HEADER) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: header would exceed the limit of %llu bytes"
                       " (tensor names alone take %" PRIu64 ")", path, AL_ST_MAX_HEADER, namebytes);
        goto fail;
    }

    w = al_calloc(1, sizeof *w);
    if (!w) goto nomem;
    w->fd = -1;
    if (!(w->path = al_strdup(path)) || !(w->buf = al_malloc(ST_WRITE_BUF))) goto nomem;
    if (n && (!(w->names = al_calloc(n, sizeof *w->names)) ||
              !(w->ends = al_calloc(n, sizeof *w->ends)))) goto nomem;
    for (size_t i = 0; i < n; i++) {
        if (!(w->names[i] = al_strdup(t[i].name))) goto nomem;
        w->n = i + 1;
        w->total += t[i].nbytes;    /* overflow checked in st_build_header */
        w->ends[i] = w->total;
    }

    st = st_build_header(path, t, n, &json, err);
    if (st) goto fail;
    /* Pad with spaces so the data starts 8-byte aligned: 8 + N == 0 (mod 8). */
    size_t jl = strlen(json);
    uint64_t hlen = ((uint64_t)jl + 7) / 8 * 8;
    if (hlen > AL_ST_MAX_HEADER) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: header of %" PRIu64 " bytes exceeds the limit of %llu",
                       path, hlen, AL_ST_MAX_HEADER);
        goto fail;
    }

    w->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        st = al_errorf(err, AL_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        goto fail;
    }
    created = true;
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)(hlen >> (8 * i));
    char spaces[8];
    memset(spaces, ' ', sizeof spaces);
    if ((st = st_write_all(w, lenb, 8, err)) || (st = st_write_all(w, json, jl, err)) ||
        (st = st_write_all(w, spaces, (size_t)(hlen - jl), err)))
        goto fail;
    free(json);                  /* jansson's allocator */
    *handle = w;
    return AL_OK;

nomem:
    st = al_errorf(err, AL_ERR_NOMEM, "%s: out of memory creating the writer", path);
fail:
    free(json);
    if (created) unlink(path);   /* ours (O_EXCL) and incomplete */
    st_wclose(w);
    return st;
}

static al_status st_write(void *handle, const void *data, uint64_t nbytes, al_error *err)
{
    st_writer *w = handle;
    al_status st;
    if (nbytes > w->total - w->done) {
        size_t i = 0;
        while (i < w->n && w->ends[i] <= w->done) i++;
        return al_errorf(err, AL_ERR_INTERNAL, "%s: %" PRIu64 " bytes written past the declared data"
                         " (%" PRIu64 " of %" PRIu64 " bytes already written%s%s%s)",
                         w->path, nbytes, w->done, w->total,
                         i < w->n ? ", at tensor '" : "", i < w->n ? w->names[i] : "",
                         i < w->n ? "'" : "");
    }
    const uint8_t *p = data;
    w->done += nbytes;
    if (w->fill == 0 && nbytes >= ST_WRITE_BUF)      /* large: bypass the buffer */
        return st_write_all(w, p, (size_t)nbytes, err);
    while (nbytes > 0) {
        size_t k = ST_WRITE_BUF - w->fill;
        if (k > nbytes) k = (size_t)nbytes;
        memcpy(w->buf + w->fill, p, k);
        w->fill += k;
        p += k;
        nbytes -= k;
        if (w->fill == ST_WRITE_BUF && (st = st_flush(w, err))) return st;
    }
    return AL_OK;
}

static al_status st_finish(void *handle, al_error *err)
{
    st_writer *w = handle;
    al_status st;
    if (w->done != w->total) {
        size_t i = 0;
        while (i < w->n && w->ends[i] <= w->done) i++;   /* first incomplete tensor */
        uint64_t b = i ? w->ends[i - 1] : 0;
        return al_errorf(err, AL_ERR_INTERNAL, "%s: tensor '%s': only %" PRIu64 " of %" PRIu64
                         " bytes were written", w->path, w->names[i], w->done - b, w->ends[i] - b);
    }
    if ((st = st_flush(w, err))) return st;
    if (fsync(w->fd) != 0)
        return al_errorf(err, AL_ERR_IO, "%s: fsync failed: %s", w->path, strerror(errno));
    int rc = close(w->fd);
    w->fd = -1;
    if (rc != 0)
        return al_errorf(err, AL_ERR_IO, "%s: close failed: %s", w->path, strerror(errno));
    return AL_OK;
}

const al_writer_ops al_safetensors_writer_ops = {
    .name = "safetensors",
    .create = st_create,
    .write = st_write,
    .finish = st_finish,
    .close = st_wclose,
};
