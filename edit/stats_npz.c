/* edit/stats_npz.c: read the reference implementation's SecondMoment cache (.npz).
 *
 * An .npz is a zip archive (PKWARE APPNOTE 6.3) of .npy files, one per array, written
 * by Python's zipfile: method 0 (stored, np.savez) or 8 (raw deflate,
 * np.savez_compressed); numpy opens members with force_zip64, so the local headers (and,
 * past 4 GiB, the central directory) carry zip64 extra fields. We read the end of
 * central directory record (zip64 locator when its fields are saturated), the central
 * directory, then each needed member through its local header; deflate is inflated with
 * zlib (windowBits -15) and the CRC-32 checked.
 *
 * A .npy member (numpy NEP 1): "\x93NUMPY", version 1.x (u16 header length) or 2.x/3.x
 * (u32), then a Python dict literal {'descr': '<f8', 'fortran_order': False,
 * 'shape': (m, m), } padded with spaces and '\n', then the raw little-endian data.
 *
 * Every size read from the file is bounded before use: the central directory lies inside
 * the file and is at most 64 MiB; a member's data lies inside the file; a stored member's
 * size equals its compressed size, a deflated one is at most 1032x (deflate's maximum
 * ratio) its compressed size; the npy header lies inside the member; the data size
 * implied by descr and shape (overflow-checked) equals what follows the header. */
#include "stats_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "../core/alloc.h"

#define ZIP_EOCD_SIG 0x06054b50u
#define ZIP_EOCD64_LOC_SIG 0x07064b50u
#define ZIP_EOCD64_SIG 0x06064b50u
#define ZIP_CDH_SIG 0x02014b50u
#define ZIP_LFH_SIG 0x04034b50u
#define ZIP_MAX_CD ((uint64_t)64 << 20)
#define ZIP_MAX_RATIO 1032u
#define NPY_MAX_DIMS 8
#define IO_CHUNK ((size_t)1 << 20)

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static inline uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

typedef struct {
    FILE *f;
    const char *path;
    uint64_t size;
    uint8_t *cd;            /* central directory bytes */
    uint64_t cd_size, n_ent;
} zip_rd;

typedef struct {
    uint16_t flags, method;
    uint32_t crc;
    uint64_t csize, usize, lho;     /* compressed, uncompressed size, local header offset */
} zip_ent;

static al_status rd_at(zip_rd *z, uint64_t off, void *dst, size_t n, al_error *err)
{
    if (off > z->size || n > z->size - off)
        return al_errorf(err, AL_ERR_FORMAT, "%s: truncated zip archive (%zu bytes at offset %llu, "
                         "file is %llu bytes)", z->path, n, (unsigned long long)off, (unsigned long long)z->size);
    if (fseeko(z->f, (off_t)off, SEEK_SET) != 0 || fread(dst, 1, n, z->f) != n)
        return al_errorf(err, AL_ERR_IO, "%s: read error at offset %llu", z->path, (unsigned long long)off);
    return AL_OK;
}

/* Open the archive and load its central directory. */
static al_status zip_open(zip_rd *z, const char *path, al_error *err)
{
    memset(z, 0, sizeof *z);
    z->path = path;
    if (!(z->f = fopen(path, "rb"))) return al_errorf(err, AL_ERR_IO, "%s: %s", path, strerror(errno));
    if (fseeko(z->f, 0, SEEK_END) != 0) return al_errorf(err, AL_ERR_IO, "%s: cannot seek", path);
    off_t end = ftello(z->f);
    if (end < 0) return al_errorf(err, AL_ERR_IO, "%s: cannot seek", path);
    z->size = (uint64_t)end;
    if (z->size < 22) return al_errorf(err, AL_ERR_FORMAT, "%s: not a zip archive (npz): %llu bytes", path, (unsigned long long)z->size);
    /* EOCD: 22 bytes + comment (<= 65535) at the very end; scan backwards for it */
    uint8_t tail[22 + 65535];
    size_t nt = z->size < sizeof tail ? (size_t)z->size : sizeof tail;
    al_status st = rd_at(z, z->size - nt, tail, nt, err);
    if (st) return st;
    size_t e = nt - 22 + 1;
    while (e-- > 0)
        if (rd32(tail + e) == ZIP_EOCD_SIG && e + 22 + rd16(tail + e + 20) == nt) break;
    if (e == (size_t)-1)
        return al_errorf(err, AL_ERR_FORMAT, "%s: not a zip archive (npz): no end of central directory "
                         "record (truncated or wrong magic)", path);
    uint64_t eocd = z->size - nt + e;
    z->n_ent = rd16(tail + e + 10);
    z->cd_size = rd32(tail + e + 12);
    uint64_t cd_off = rd32(tail + e + 16);
    if (z->n_ent == 0xffff || z->cd_size == 0xffffffffu || cd_off == 0xffffffffu) {   /* zip64 */
        uint8_t loc[20], r64[56];
        if (eocd < 20 || (st = rd_at(z, eocd - 20, loc, 20, err))) return st ? st : al_errorf(err, AL_ERR_FORMAT, "%s: zip64 locator missing", path);
        if (rd32(loc) != ZIP_EOCD64_LOC_SIG) return al_errorf(err, AL_ERR_FORMAT, "%s: zip64 end of central directory locator missing", path);
        if ((st = rd_at(z, rd64(loc + 8), r64, sizeof r64, err))) return st;
        if (rd32(r64) != ZIP_EOCD64_SIG) return al_errorf(err, AL_ERR_FORMAT, "%s: bad zip64 end of central directory record", path);
        z->n_ent = rd64(r64 + 32);
        z->cd_size = rd64(r64 + 40);
        cd_off = rd64(r64 + 48);
    }
    if (z->cd_size > ZIP_MAX_CD || cd_off > eocd || z->cd_size > eocd - cd_off || z->n_ent > z->cd_size / 46)
        return al_errorf(err, AL_ERR_FORMAT, "%s: corrupt zip central directory (%llu entries, %llu bytes at "
                         "offset %llu)", path, (unsigned long long)z->n_ent, (unsigned long long)z->cd_size,
                         (unsigned long long)cd_off);
    if (!(z->cd = al_malloc(z->cd_size ? (size_t)z->cd_size : 1))) return al_errorf(err, AL_ERR_NOMEM, "out of memory");
    return rd_at(z, cd_off, z->cd, (size_t)z->cd_size, err);
}

static void zip_close(zip_rd *z)
{
    if (z->f) fclose(z->f);
    al_free(z->cd);
}

/* Find member `name`: AL_ERR_NOTFOUND when absent. */
static al_status zip_find(zip_rd *z, const char *name, zip_ent *out, al_error *err)
{
    size_t nl = strlen(name);
    uint64_t p = 0;
    for (uint64_t i = 0; i < z->n_ent; i++) {
        const uint8_t *h = z->cd + p;
        if (z->cd_size - p < 46 || rd32(h) != ZIP_CDH_SIG)
            return al_errorf(err, AL_ERR_FORMAT, "%s: corrupt zip central directory (entry %llu)", z->path, (unsigned long long)i);
        uint64_t n = rd16(h + 28), x = rd16(h + 30), c = rd16(h + 32);
        if (46 + n + x + c > z->cd_size - p)
            return al_errorf(err, AL_ERR_FORMAT, "%s: corrupt zip central directory (entry %llu)", z->path, (unsigned long long)i);
        if (n == nl && memcmp(h + 46, name, nl) == 0) {
            zip_ent e = {rd16(h + 8), rd16(h + 10), rd32(h + 16), rd32(h + 20), rd32(h + 24), rd32(h + 42)};
            /* zip64 extra field (id 1): the saturated fields, in the order usize, csize, offset */
            const uint8_t *xp = h + 46 + n, *xe = xp + x;
            while (xe - xp >= 4) {
                uint16_t id = rd16(xp), len = rd16(xp + 2);
                if (len > xe - xp - 4) break;
                if (id == 1) {
                    const uint8_t *q = xp + 4, *qe = q + len;
                    uint64_t *fld[3] = {&e.usize, &e.csize, &e.lho};
                    for (int k = 0; k < 3; k++)
                        if (*fld[k] == 0xffffffffu) {
                            if (qe - q < 8) return al_errorf(err, AL_ERR_FORMAT, "%s: member %s: bad zip64 extra field", z->path, name);
                            *fld[k] = rd64(q);
                            q += 8;
                        }
                }
                xp += 4 + len;
            }
            *out = e;
            return AL_OK;
        }
        p += 46 + n + x + c;
    }
    return al_errorf(err, AL_ERR_NOTFOUND, "%s: member %s missing", z->path, name);
}

/* The uncompressed bytes of a member (*data owned). */
static al_status zip_read(zip_rd *z, const char *name, const zip_ent *e, uint8_t **data, size_t *len, al_error *err)
{
    *data = NULL;
    al_status st;
    uint8_t lh[30], *in = NULL, *out = NULL;
    bool zinit = false;
    z_stream zs;
    if (e->flags & 1) return al_errorf(err, AL_ERR_UNSUPPORTED, "%s: member %s is encrypted", z->path, name);
    if (e->method != 0 && e->method != 8)
        return al_errorf(err, AL_ERR_UNSUPPORTED, "%s: member %s: zip method %u (only stored and deflate)", z->path, name, e->method);
    if ((st = rd_at(z, e->lho, lh, sizeof lh, err))) goto done;
    if (rd32(lh) != ZIP_LFH_SIG) { st = al_errorf(err, AL_ERR_FORMAT, "%s: member %s: bad local header", z->path, name); goto done; }
    uint64_t off = e->lho + 30 + rd16(lh + 26) + rd16(lh + 28);
    if (off > z->size || e->csize > z->size - off) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: member %s: %llu bytes of data past the end of the file (truncated?)",
                       z->path, name, (unsigned long long)e->csize);
        goto done;
    }
    if ((e->method == 0 && e->usize != e->csize) ||
        (e->method == 8 && e->usize / ZIP_MAX_RATIO > e->csize + 1) || e->usize > SIZE_MAX / 2) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: member %s: implausible size %llu (%llu bytes stored)", z->path,
                       name, (unsigned long long)e->usize, (unsigned long long)e->csize);
        goto done;
    }
    size_t us = (size_t)e->usize;
    if (!(out = al_malloc(us ? us : 1))) { st = al_errorf(err, AL_ERR_NOMEM, "%s: member %s: out of memory (%zu bytes)", z->path, name, us); goto done; }
    if (e->method == 0) {
        if ((st = rd_at(z, off, out, us, err))) goto done;
    } else {
        memset(&zs, 0, sizeof zs);
        if (inflateInit2(&zs, -15) != Z_OK) { st = al_errorf(err, AL_ERR_NOMEM, "zlib: inflateInit2 failed"); goto done; }
        zinit = true;
        if (!(in = al_malloc(IO_CHUNK))) { st = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
        uint64_t left = e->csize, pos = off;
        size_t produced = 0;
        int zr = Z_OK;
        while (zr != Z_STREAM_END) {
            if (!zs.avail_in) {
                if (!left) break;
                size_t k = left < IO_CHUNK ? (size_t)left : IO_CHUNK;
                if ((st = rd_at(z, pos, in, k, err))) goto done;
                pos += k; left -= k;
                zs.next_in = in;
                zs.avail_in = (uInt)k;
            }
            size_t room = us - produced;
            uint8_t extra;                 /* one byte past the end to detect excess output */
            zs.next_out = room ? out + produced : &extra;
            zs.avail_out = room ? (uInt)(room < UINT_MAX ? room : UINT_MAX) : 1;
            uInt before = zs.avail_out;
            zr = inflate(&zs, Z_NO_FLUSH);
            if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) {
                st = al_errorf(err, AL_ERR_FORMAT, "%s: member %s: corrupt deflate data (%s)", z->path, name, zs.msg ? zs.msg : "zlib error");
                goto done;
            }
            if (!room && zs.avail_out != before) {
                st = al_errorf(err, AL_ERR_FORMAT, "%s: member %s: inflates to more than the %zu bytes declared", z->path, name, us);
                goto done;
            }
            produced += before - zs.avail_out;
            if (zr == Z_BUF_ERROR && !zs.avail_in && !left) break;
        }
        if (zr != Z_STREAM_END || produced != us) {
            st = al_errorf(err, AL_ERR_FORMAT, "%s: member %s: deflate stream truncated (%zu of %zu bytes)", z->path, name, produced, us);
            goto done;
        }
    }
    uLong crc = crc32(0L, Z_NULL, 0);
    for (size_t i = 0; i < us; i += IO_CHUNK) crc = crc32(crc, out + i, (uInt)(us - i < IO_CHUNK ? us - i : IO_CHUNK));
    if ((uint32_t)crc != e->crc) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: member %s: CRC-32 mismatch (%08lx, expected %08x): corrupt archive",
                       z->path, name, (unsigned long)crc, e->crc);
        goto done;
    }
    *data = out;
    *len = us;
    out = NULL;
done:
    if (zinit) inflateEnd(&zs);
    al_free(in);
    al_free(out);
    return st;
}

/* ---- .npy --------------------------------------------------------------------------- */

typedef struct {
    char kind;              /* 'f' or 'i' */
    int size;               /* bytes per element */
    int ndim;
    uint64_t shape[NPY_MAX_DIMS], numel;
    const uint8_t *data;
} npy_arr;

typedef struct { const char *p, *e; } cur;

static void skip_ws(cur *c) { while (c->p < c->e && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++; }
static bool eat(cur *c, char ch) { skip_ws(c); if (c->p < c->e && *c->p == ch) { c->p++; return true; } return false; }

/* A quoted Python string (no escapes in numpy headers) into buf. */
static bool pystr(cur *c, char *buf, size_t n)
{
    skip_ws(c);
    if (c->p >= c->e || (*c->p != '\'' && *c->p != '"')) return false;
    char q = *c->p++;
    const char *s = c->p;
    while (c->p < c->e && *c->p != q) c->p++;
    if (c->p >= c->e || (size_t)(c->p - s) >= n) return false;
    memcpy(buf, s, (size_t)(c->p - s));
    buf[c->p - s] = 0;
    c->p++;
    return true;
}

static al_status npy_parse(const char *path, const char *name, const uint8_t *b, size_t n, npy_arr *a, al_error *err)
{
    memset(a, 0, sizeof *a);
    if (n < 10 || memcmp(b, "\x93NUMPY", 6) != 0)
        return al_errorf(err, AL_ERR_FORMAT, "%s: member %s: not a .npy array (bad magic)", path, name);
    unsigned major = b[6];
    if (major < 1 || major > 3)
        return al_errorf(err, AL_ERR_FORMAT, "%s: member %s: .npy version %u.%u not supported", path, name, major, b[7]);
    size_t hs = major == 1 ? 10 : 12;
    if (n < hs) return al_errorf(err, AL_ERR_FORMAT, "%s: member %s: truncated .npy header", path, name);
    uint64_t hl = major == 1 ? rd16(b + 8) : rd32(b + 8);
    if (hl > n - hs) return al_errorf(err, AL_ERR_FORMAT, "%s: member %s: .npy header of %llu bytes past the end "
                                      "of the member (%zu bytes)", path, name, (unsigned long long)hl, n);
    cur c = {(const char *)b + hs, (const char *)b + hs + hl};
    char key[32], descr[16] = "";
    int fortran = -1;
    bool have_shape = false;
    if (!eat(&c, '{')) goto bad;
    while (!eat(&c, '}')) {
        if (!pystr(&c, key, sizeof key) || !eat(&c, ':')) goto bad;
        if (!strcmp(key, "descr")) {
            if (!pystr(&c, descr, sizeof descr)) goto bad;
        } else if (!strcmp(key, "fortran_order")) {
            skip_ws(&c);
            if (c.e - c.p >= 4 && !memcmp(c.p, "True", 4)) { fortran = 1; c.p += 4; }
            else if (c.e - c.p >= 5 && !memcmp(c.p, "False", 5)) { fortran = 0; c.p += 5; }
            else goto bad;
        } else if (!strcmp(key, "shape")) {
            if (!eat(&c, '(')) goto bad;
            a->numel = 1;
            while (!eat(&c, ')')) {
                skip_ws(&c);
                uint64_t v = 0;
                const char *s = c.p;
                while (c.p < c.e && *c.p >= '0' && *c.p <= '9' && v < ((uint64_t)1 << 48)) v = v * 10 + (uint64_t)(*c.p++ - '0');
                if (c.p == s || (c.p < c.e && *c.p >= '0' && *c.p <= '9') || a->ndim == NPY_MAX_DIMS) goto bad;
                if (al_mul_overflow_u64(a->numel, v, &a->numel)) goto bad;
                a->shape[a->ndim++] = v;
                if (!eat(&c, ',')) { if (!eat(&c, ')')) goto bad; break; }
            }
            have_shape = true;
        } else {
            goto bad;
        }
        if (!eat(&c, ',')) { if (!eat(&c, '}')) goto bad; break; }
    }
    if (!descr[0] || fortran < 0 || !have_shape) goto bad;
    if (fortran)
        return al_errorf(err, AL_ERR_UNSUPPORTED, "%s: member %s: Fortran-order arrays not supported", path, name);
    if ((descr[0] != '<' && descr[0] != '|' && descr[0] != '=') || (descr[1] != 'f' && descr[1] != 'i') ||
        (strcmp(descr + 2, "4") && strcmp(descr + 2, "8")))
        return al_errorf(err, AL_ERR_UNSUPPORTED, "%s: member %s: dtype '%s' not supported (little-endian "
                         "f4, f8, i4, i8)", path, name, descr);
    a->kind = descr[1];
    a->size = descr[2] - '0';
    uint64_t nb;
    if (al_mul_overflow_u64(a->numel, (uint64_t)a->size, &nb) || nb != n - hs - hl)
        return al_errorf(err, AL_ERR_FORMAT, "%s: member %s: shape and dtype '%s' need %llu bytes of data, the "
                         "member has %llu", path, name, descr, (unsigned long long)a->numel * (unsigned)a->size,
                         (unsigned long long)(n - hs - hl));
    a->data = b + hs + hl;
    return AL_OK;
bad:
    return al_errorf(err, AL_ERR_FORMAT, "%s: member %s: malformed .npy header (expected {'descr': ..., "
                     "'fortran_order': ..., 'shape': (...)})", path, name);
}

static double npy_at(const npy_arr *a, uint64_t i)
{
    const uint8_t *p = a->data + i * (uint64_t)a->size;
    if (a->kind == 'f' && a->size == 4) { float v; memcpy(&v, p, 4); return v; }
    if (a->kind == 'f') { double v; memcpy(&v, p, 8); return v; }
    if (a->size == 4) return (double)(int32_t)rd32(p);
    return (double)(int64_t)rd64(p);
}

/* Read member `name` (or name without ".npy") of the archive as an array. */
static al_status npz_member(zip_rd *z, const char *name, uint8_t **buf, npy_arr *a, al_error *err)
{
    zip_ent e;
    size_t n = 0;
    char alt[64];
    al_status st = zip_find(z, name, &e, err);
    if (st == AL_ERR_NOTFOUND) {
        snprintf(alt, sizeof alt, "%.*s", (int)(strlen(name) - 4), name);
        if (zip_find(z, alt, &e, NULL) == AL_OK) { st = AL_OK; name = alt; }
    }
    if (st) return st;
    if ((st = zip_read(z, name, &e, buf, &n, err))) return st;
    return npy_parse(z->path, name, *buf, n, a, err);
}

/* Module and layer from "<module>_<dtype>_mom2_<n>.npz" (the reference's cache name). */
static bool name_provenance(al_stats *s, const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    const char *m2 = strstr(b, "_mom2_");
    if (!m2) return true;
    const char *u = m2;
    while (u > b && u[-1] != '_') u--;               /* start of "<dtype>" */
    if (u <= b + 1) return true;
    char mod[256];
    snprintf(mod, sizeof mod, "%.*s", (int)(u - 1 - b), b);
    const char *pat[] = {".h.", ".layers.", ".layer."};
    for (size_t i = 0; i < 3; i++) {
        const char *q = strstr(mod, pat[i]);
        if (!q) continue;
        char *end;
        long l = strtol(q + strlen(pat[i]), &end, 10);
        if (end != q + strlen(pat[i]) && *end == '.' && l >= 0 && l < INT_MAX) { s->layer = (int)l; break; }
    }
    return al_stats_set_str(&s->module, mod);
}

al_status al_stats_import_npz(const char *path, al_stats **out, al_error *err)
{
    *out = NULL;
    zip_rd z;
    al_status st;
    uint8_t *bs = NULL, *bc = NULL;
    npy_arr as, ac;
    al_stats *s = NULL;
    char *src = NULL;
    if ((st = zip_open(&z, path, err))) goto done;
    if ((st = npz_member(&z, "mom2.mom2.npy", &bs, &as, err))) goto done;
    if ((st = npz_member(&z, "mom2.count.npy", &bc, &ac, err))) goto done;
    if (as.ndim != 2 || as.shape[0] != as.shape[1] || as.shape[0] < 1 || as.shape[0] > (1u << 20) || as.kind != 'f') {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: member mom2.mom2.npy: expected a square [m, m] float array", path);
        goto done;
    }
    if (ac.numel != 1 || ac.ndim > 1) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: member mom2.count.npy: expected one number", path);
        goto done;
    }
    double cnt = npy_at(&ac, 0);
    if (!(cnt >= 0 && cnt < 9.0e18) || cnt != (double)(int64_t)cnt) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: member mom2.count.npy: count %g is not a non-negative integer", path, cnt);
        goto done;
    }
    int m = (int)as.shape[0];
    if (!(s = al_stats_alloc(m))) { st = al_errorf(err, AL_ERR_NOMEM, "%s: out of memory (m = %d)", path, m); goto done; }
    s->count = (int64_t)cnt;
    for (uint64_t i = 0; i < as.numel; i++) s->sum[i] = npy_at(&as, i);
    size_t pl = strlen(path);
    if (!(src = al_malloc(pl + 5))) { st = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
    memcpy(src, "npz:", 4);
    memcpy(src + 4, path, pl + 1);
    if (!al_stats_set_str(&s->source, src) || !al_stats_set_str(&s->dtype, as.size == 4 ? "float32" : "float64") ||
        !name_provenance(s, path)) {
        st = al_errorf(err, AL_ERR_NOMEM, "out of memory");
        goto done;
    }
    *out = s;
    s = NULL;
done:
    zip_close(&z);
    al_free(bs);
    al_free(bc);
    al_free(src);
    al_stats_free(s);
    return st;
}
