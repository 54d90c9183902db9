/* tests/test_safetensors.c: the safetensors validator, reader and writer.
 *
 * - ports of the accept/reject cases of huggingface/safetensors tensor.rs tests
 *   (docs/formats.md section 3), built byte by byte here;
 * - our own malformed files, each checked for status and a distinctive message;
 * - the mmap reader on real HF files (tests/fixtures/hf, expected values from
 *   tools/dump_safetensors.py) and on files written by our writer (round trip);
 * - allocation-failure sweeps: every failing allocation gives AL_ERR_NOMEM and
 *   leaves the list untouched (ASan checks for leaks). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/testutil.h"

#include "../core/alloc.h"
#include "../io/backend.h"
#include "../io/safetensors.h"

#define LABEL "x.safetensors"

static char g_dir[64];

/* ---- helpers ------------------------------------------------------------------ */

/* Build `u64 N | hdr (space-padded to a multiple of pad if pad > 0) | ndata bytes`
 * into a malloc'd buffer; data byte i is (i * 7 + 1) & 0xff. */
static uint8_t *build(const char *hdr, size_t pad, size_t ndata, size_t *len)
{
    size_t hl = strlen(hdr), n = hl;
    if (pad) n = (hl + pad - 1) / pad * pad;
    uint8_t *b = malloc(8 + n + ndata + 1);
    assert_non_null(b);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(b + 8, hdr, hl);
    memset(b + 8 + hl, ' ', n - hl);
    for (size_t i = 0; i < ndata; i++) b[8 + n + i] = (uint8_t)(i * 7 + 1);
    *len = 8 + n + ndata;
    return b;
}

static void set_hlen(uint8_t *b, uint64_t n)
{
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(n >> (8 * i));
}

static void check_msg(const al_error *err, const char *want)
{
    if (!strstr(err->msg, want)) fail_msg("message \"%s\" lacks \"%s\"", err->msg, want);
}

/* Parse and expect failure with `code` and a message naming the file and `want`. */
static void reject_buf(const uint8_t *b, size_t len, al_status code, const char *want)
{
    al_bt_list l = {0};
    al_error err = {0};
    al_status st = al_st_parse(b, len, LABEL, &l, &err);
    if (st != code) fail_msg("status %s, want %s (msg: %s)", al_status_str(st), al_status_str(code), err.msg);
    check_msg(&err, LABEL ": ");
    check_msg(&err, want);
    assert_int_equal(l.n, 0);
    assert_int_equal(l.nmeta, 0);
    al_bt_list_free(&l);
}

static void reject(const char *hdr, size_t pad, size_t ndata, const char *want)
{
    size_t len;
    uint8_t *b = build(hdr, pad, ndata, &len);
    reject_buf(b, len, AL_ERR_FORMAT, want);
    free(b);
}

/* Parse and expect success; returns the list (caller frees). */
static al_bt_list accept_buf(const uint8_t *b, size_t len)
{
    al_bt_list l = {0};
    al_error err = {0};
    al_status st = al_st_parse(b, len, LABEL, &l, &err);
    if (st != AL_OK) fail_msg("rejected: %s", err.msg);
    return l;
}

static al_bt_list accept(const char *hdr, size_t pad, size_t ndata)
{
    size_t len;
    uint8_t *b = build(hdr, pad, ndata, &len);
    al_bt_list l = accept_buf(b, len);
    free(b);
    return l;
}

static char *path_in(const char *name)
{
    static char p[256];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    return p;
}

static void write_file(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(b, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static uint8_t *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)sz + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static int group_setup(void **state)
{
    (void)state;
    strcpy(g_dir, "/tmp/alloy-st-XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    return nftw(g_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- ported from safetensors tensor.rs: must accept --------------------------- */

static void test_rs_empty(void **state)
{
    (void)state;
    size_t len;
    uint8_t *b = build("{}", 8, 0, &len);
    assert_int_equal(len, 16);
    assert_int_equal(b[0], 8);
    al_bt_list l = accept_buf(b, len);
    assert_int_equal(l.n, 0);
    al_bt_list_free(&l);
    free(b);

    b = build("{\"__metadata__\":{\"framework\":\"pt\"}}", 8, 0, &len);
    assert_int_equal(b[0], 40);
    l = accept_buf(b, len);
    assert_int_equal(l.nmeta, 1);
    assert_string_equal(l.meta_keys[0], "framework");
    assert_string_equal(l.meta_vals[0], "pt");
    al_bt_list_free(&l);
    free(b);
}

static void test_rs_serialization(void **state)
{
    (void)state;
    size_t len;
    uint8_t *b = build("{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}",
                       8, 24, &len);
    assert_int_equal(b[0], 64);
    assert_int_equal(len, 8 + 64 + 24);
    al_bt_list l = accept_buf(b, len);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.v[0].name, "attn.0");
    assert_int_equal(l.v[0].dtype, AL_F32);
    assert_int_equal(l.v[0].ndim, 3);
    assert_int_equal(l.v[0].shape[2], 3);
    assert_int_equal(l.v[0].nbytes, 24);
    assert_int_equal(l.v[0].offset, 72);
    assert_null(l.v[0].locator);
    al_bt_list_free(&l);
    free(b);
}

static void test_rs_forced_alignment(void **state)
{
    (void)state;
    size_t len;
    uint8_t *b = build("{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}",
                       8, 24, &len);
    assert_int_equal(b[0], 72);
    al_bt_list l = accept_buf(b, len);
    assert_int_equal(l.v[0].offset, 80);
    assert_int_equal(l.v[0].offset % 8, 0);
    al_bt_list_free(&l);
    free(b);
}

static void test_rs_f4_one_byte(void **state)
{
    (void)state;
    al_bt_list l = accept("{\"weight\":{\"dtype\":\"F4\",\"shape\":[1,2],\"data_offsets\":[0,1]}}", 8, 1);
    assert_int_equal(l.v[0].dtype, AL_F4);
    assert_int_equal(l.v[0].nbytes, 1);
    al_bt_list_free(&l);
}

static void test_rs_empty_shapes_allowed(void **state)
{
    (void)state;
    al_bt_list l = accept("{\"test\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[0,4]}}", 0, 4);
    assert_int_equal(l.v[0].ndim, 0);
    assert_int_equal(l.v[0].nbytes, 4);
    al_bt_list_free(&l);
}

static void test_rs_zero_sized_tensor(void **state)
{
    (void)state;
    al_bt_list l = accept("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,0],\"data_offsets\":[0, 0]}}", 0, 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].nbytes, 0);
    al_bt_list_free(&l);
}

static void test_rs_whitespace_padded(void **state)
{
    (void)state;
    al_bt_list l = accept("{}\r \t\n", 0, 0);
    al_bt_list_free(&l);
    l = accept("\r \t\n{}", 0, 0);
    al_bt_list_free(&l);
    l = accept(" \n{\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}\t\r\n ", 0, 3);
    assert_int_equal(l.n, 1);
    al_bt_list_free(&l);
}

/* ---- ported from safetensors tensor.rs: must reject --------------------------- */

static void test_rs_header_too_small(void **state)
{
    (void)state;
    reject_buf(NULL, 0, AL_ERR_FORMAT, "file is 0 bytes, too small");
    static const uint8_t seven[7] = {0};
    reject_buf(seven, 7, AL_ERR_FORMAT, "file is 7 bytes, too small");
}

static void test_rs_invalid_header_length(void **state)
{
    (void)state;
    static const uint8_t b[8] = {'<', 0, 0, 0, 0, 0, 0, 0};
    reject_buf(b, 8, AL_ERR_FORMAT, "header length 60 exceeds the file size (8 bytes)");
}

static void test_rs_header_too_large(void **state)
{
    (void)state;
    static const uint8_t b[8] = {0x3c, 0, 0, 0, 0, 0xff, 0xff, 0xff};
    reject_buf(b, 8, AL_ERR_FORMAT, "header length 18446742974197923900 exceeds the limit of 100000000");
}

static void test_rs_invalid_header_non_utf8(void **state)
{
    (void)state;
    static const uint8_t b[9] = {1, 0, 0, 0, 0, 0, 0, 0, 0xff};
    reject_buf(b, 9, AL_ERR_FORMAT, "not valid UTF-8 (byte 0xff at header offset 0)");
}

static void test_rs_invalid_header_not_json(void **state)
{
    (void)state;
    static const uint8_t b[9] = {1, 0, 0, 0, 0, 0, 0, 0, '{'};
    reject_buf(b, 9, AL_ERR_FORMAT, "header is not valid JSON");
}

static void test_rs_metadata_incomplete_buffer(void **state)
{
    (void)state;
    const char *h = "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    const char *extra = "extra_bogus_data_for_polyglot_file";
    size_t len;
    uint8_t *b = build(h, 0, 16, &len);
    uint8_t *b2 = malloc(len + strlen(extra));
    memcpy(b2, b, len);
    memcpy(b2 + len, extra, strlen(extra));
    reject_buf(b2, len + strlen(extra), AL_ERR_FORMAT, "34 trailing bytes after the tensor data");
    reject_buf(b, len - 2, AL_ERR_FORMAT, "file is truncated");
    free(b);
    free(b2);
}

static void test_rs_invalid_info(void **state)
{
    (void)state;
    reject("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,4]}}", 0, 4,
           "tensor 'test': data_offsets [0, 4] do not match dtype I32 and shape [2, 2] (16 bytes)");
}

static void test_rs_json_attack(void **state)
{
    (void)state;
    char h[2048] = "{";
    for (int i = 0; i < 10; i++)
        snprintf(h + strlen(h), sizeof h - strlen(h),
                 "%s\"weight_%d\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}",
                 i ? "," : "", i);
    strcat(h, "}");
    reject(h, 0, 16, "data_offsets [0, 16] overlap tensor 'weight_0', which ends at 16");
}

static void test_rs_validation_overflow(void **state)
{
    (void)state;
    /* Does not fit jansson's int64: reported while parsing, as an overflow. */
    reject("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,18446744073709551614],\"data_offsets\":[0,16]}}",
           0, 16, "does not fit in 64 bits (overflow)");
    reject("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,9223372036854775807],\"data_offsets\":[0,16]}}",
           0, 16, "tensor 'test': size of dtype I32 and shape [2, 9223372036854775807] overflows");
}

static void test_rs_fp4_misaligned(void **state)
{
    (void)state;
    reject("{\"weight\":{\"dtype\":\"F4\",\"shape\":[1,3],\"data_offsets\":[0,2]}}", 0, 2,
           "dtype F4 and shape [1, 3] make 12 bits, not a whole number of bytes");
}

static void test_rs_writer_header_too_large(void **state)
{
    (void)state;
    size_t nl = AL_ST_MAX_HEADER + 1;
    char *name = malloc(nl + 1);
    assert_non_null(name);
    memset(name, 'a', nl);
    name[nl] = 0;
    int64_t shape[1] = {1};
    al_wt_tensor t = {name, AL_U8, 1, shape, 1};
    void *h = NULL;
    al_error err = {0};
    const char *p = path_in("too_large.safetensors");
    assert_int_equal(al_safetensors_writer_ops.create(p, &t, 1, 0, &h, &err), AL_ERR_FORMAT);
    check_msg(&err, "header would exceed the limit of 100000000 bytes");
    assert_null(h);
    assert_int_equal(access(p, F_OK), -1);
    free(name);
}

/* ---- our own malformed (and odd but valid) files ------------------------------ */

#define T1(dt, shape, off) "{\"t\":{\"dtype\":" dt ",\"shape\":" shape ",\"data_offsets\":" off "}}"

static void test_header_length_past_eof(void **state)
{
    (void)state;
    size_t len;
    uint8_t *b = build("{}", 0, 1190, &len);
    set_hlen(b, 1193);
    reject_buf(b, len, AL_ERR_FORMAT, "header length 1193 exceeds the file size (1200 bytes)");
    set_hlen(b, AL_ST_MAX_HEADER);
    reject_buf(b, len, AL_ERR_FORMAT, "header length 100000000 exceeds the file size (1200 bytes)");
    /* past the 100 MB limit: rule 2 comes before rule 3 */
    set_hlen(b, 4294967296ull);
    reject_buf(b, len, AL_ERR_FORMAT, "header length 4294967296 exceeds the limit of 100000000 bytes");
    set_hlen(b, AL_ST_MAX_HEADER + 1);
    reject_buf(b, len, AL_ERR_FORMAT, "header length 100000001 exceeds the limit");
    set_hlen(b, UINT64_MAX);
    reject_buf(b, len, AL_ERR_FORMAT, "header length 18446744073709551615 exceeds the limit");
    set_hlen(b, 1192);      /* exactly fills the file: length passes, the data bytes are not UTF-8 */
    reject_buf(b, len, AL_ERR_FORMAT, "header is not valid UTF-8 (byte 0x86 at header offset 21)");
    free(b);
}

static void test_exactly_8_bytes(void **state)
{
    (void)state;
    static const uint8_t b[8] = {0};
    reject_buf(b, 8, AL_ERR_FORMAT, "header is not valid JSON");
}

static void test_truncated_data(void **state)
{
    (void)state;
    reject(T1("\"F32\"", "[4]", "[0,16]"), 8, 15,
           "file is truncated: the tensor data ends at byte 80 but the file has 79 bytes");
}

static void test_trailing_garbage(void **state)
{
    (void)state;
    reject(T1("\"F32\"", "[1]", "[0,4]"), 8, 5, "1 trailing bytes after the tensor data");
    reject("{}", 8, 3, "3 trailing bytes");
}

static void test_nan_in_shape(void **state)
{
    (void)state;
    reject(T1("\"F32\"", "[NaN]", "[0,4]"), 0, 4, "header is not valid JSON: invalid token near 'NaN'");
}

static void test_shape_bad_values(void **state)
{
    (void)state;
    reject(T1("\"F32\"", "[2.5]", "[0,4]"), 0, 4, "tensor 't': shape[0] is 2.5, not a non-negative integer");
    reject(T1("\"F32\"", "[1,2.0]", "[0,8]"), 0, 8, "shape[1] is 2, not a non-negative integer");
    reject(T1("\"F32\"", "[-1]", "[0,4]"), 0, 4, "tensor 't': shape[0] is negative (-1)");
    reject(T1("\"F32\"", "[\"2\"]", "[0,8]"), 0, 8, "shape[0] is a string, not a non-negative integer");
    reject(T1("\"F32\"", "[1e400]", "[0,4]"), 0, 4, "(overflow)");
    reject(T1("\"F32\"", "{}", "[0,4]"), 0, 4, "tensor 't': shape is an object, not an array");
    reject(T1("\"F32\"", "4", "[0,16]"), 0, 16, "tensor 't': shape is an integer, not an array");
}

static void test_negative_offset(void **state)
{
    (void)state;
    reject(T1("\"F32\"", "[1]", "[-4,0]"), 0, 4, "tensor 't': data_offsets[0] is negative (-4)");
    reject(T1("\"F32\"", "[1]", "[0,-4]"), 0, 4, "data_offsets[1] is negative (-4)");
}

static void test_offsets_bad_shape(void **state)
{
    (void)state;
    reject(T1("\"F32\"", "[1]", "[0,4,8]"), 0, 4, "data_offsets has 3 elements, expected [begin, end]");
    reject(T1("\"F32\"", "[1]", "[0]"), 0, 4, "data_offsets has 1 elements");
    reject(T1("\"F32\"", "[1]", "\"0,4\""), 0, 4, "data_offsets is a string, not an array");
    reject(T1("\"F32\"", "[1]", "[0,4.0]"), 0, 4, "data_offsets[1] is 4, not a non-negative integer");
    reject(T1("\"F32\"", "[1]", "[0,null]"), 0, 4, "data_offsets[1] is null");
    reject(T1("\"F32\"", "[1]", "[0,99999999999999999999]"), 0, 4, "(overflow)");
}

static void test_offsets_begin_after_end(void **state)
{
    (void)state;
    reject(T1("\"F32\"", "[1]", "[4,0]"), 0, 4, "tensor 't': data_offsets [4, 0] end before begin");
}

static void test_shape_offset_mismatch(void **state)
{
    (void)state;
    size_t len;
    uint8_t *b = build("{\"h.0.attn.bias\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,4]}}",
                       8, 4, &len);
    reject_buf(b, len, AL_ERR_FORMAT,
               "x.safetensors: tensor 'h.0.attn.bias': data_offsets [0, 4] do not match dtype F32 "
               "and shape [2, 2] (16 bytes)");
    free(b);
}

static void test_duplicate_names(void **state)
{
    (void)state;
    reject("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
           "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 0, 2,
           "duplicate key in the header");
    reject("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, 0, "near '\"k\"'");
}

static void test_non_object_header(void **state)
{
    (void)state;
    reject("[]", 0, 0, "header is an array, not a JSON object");
    reject("[{\"t\":1}]", 0, 0, "header is an array, not a JSON object");
    reject("\"{}\"", 0, 0, "header is a string, not a JSON object");
    reject("42", 0, 0, "header is an integer, not a JSON object");
    reject("null", 0, 0, "header is null, not a JSON object");
}

static void test_header_garbage_around_json(void **state)
{
    (void)state;
    reject("{} x", 0, 0, "end of file expected");
    reject("x{}", 0, 0, "header is not valid JSON");
    /* a NUL pad is not JSON whitespace */
    size_t len;
    uint8_t *b = build("{}  ", 0, 0, &len);
    b[11] = 0;
    reject_buf(b, len, AL_ERR_FORMAT, "header is not valid JSON");
    free(b);
}

static void test_dtype_faults(void **state)
{
    (void)state;
    reject(T1("32", "[1]", "[0,4]"), 0, 4, "tensor 't': dtype is an integer, not a string");
    reject(T1("\"F33\"", "[1]", "[0,4]"), 0, 4, "tensor 't': unknown dtype 'F33'");
    reject(T1("\"f32\"", "[1]", "[0,4]"), 0, 4, "unknown dtype 'f32'");
}

static void test_missing_fields(void **state)
{
    (void)state;
    reject("{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 0, 4, "tensor 't': missing \"dtype\"");
    reject("{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 0, 4, "tensor 't': missing \"shape\"");
    reject("{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 0, 4, "tensor 't': missing \"data_offsets\"");
    reject("{\"t\":[1,2]}", 0, 0, "tensor 't': entry is an array, not an object");
    reject("{\"t\":\"F32\"}", 0, 0, "tensor 't': entry is a string, not an object");
}

static void test_rank_9(void **state)
{
    (void)state;
    reject(T1("\"U8\"", "[1,1,1,1,1,1,1,1,1]", "[0,1]"), 0, 1, "tensor 't': rank 9 exceeds the maximum of 8");
    al_bt_list l = accept(T1("\"U8\"", "[1,1,1,1,1,1,1,2]", "[0,2]"), 0, 2);
    assert_int_equal(l.v[0].ndim, 8);
    al_bt_list_free(&l);
}

static void test_metadata_faults(void **state)
{
    (void)state;
    reject("{\"__metadata__\":{\"format\":1}}", 0, 0,
           "__metadata__ value of 'format' is an integer, not a string");
    reject("{\"__metadata__\":{\"a\":\"b\",\"c\":{}}}", 0, 0, "value of 'c' is an object");
    reject("{\"__metadata__\":[\"pt\"]}", 0, 0, "__metadata__ is an array, not an object of strings");
    reject("{\"__metadata__\":null}", 0, 0, "__metadata__ is null");
}

static void test_unpadded_header_accepted(void **state)
{
    (void)state;
    /* N = 52: data starts at byte 60, not 8-aligned; still valid. */
    al_bt_list l = accept(T1("\"I16\"", "[3]", "[0,6]"), 0, 6);
    assert_int_equal(l.v[0].offset, 8 + strlen(T1("\"I16\"", "[3]", "[0,6]")));
    assert_int_not_equal(l.v[0].offset % 8, 0);
    al_bt_list_free(&l);
}

static void test_holes_and_overlaps(void **state)
{
    (void)state;
    reject("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
           "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]}}", 0, 6,
           "tensor 'b': data_offsets [4, 6] leave a hole: the previous data ends at 2");
    reject(T1("\"U8\"", "[2]", "[1,3]"), 0, 3, "leave a hole: the previous data ends at 0");
    reject("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
           "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}", 0, 4,
           "tensor 'b': data_offsets [2, 4] overlap tensor 'a', which ends at 4");
}

static void test_validation_order(void **state)
{
    (void)state;
    /* a bad dtype (rule 5) is reported before a hole (rule 6) */
    reject("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[5,7]},"
           "\"b\":{\"dtype\":\"X\",\"shape\":[2],\"data_offsets\":[0,2]}}", 0, 7, "unknown dtype 'X'");
    /* a hole (6) before a size mismatch (9) in a later tensor... */
    reject("{\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,2]},"
           "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]}}", 0, 5, "do not match");
    /* ...but in data order: the size mismatch of the first one wins */
    reject("{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]},"
           "\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,2]}}", 0, 5,
           "tensor 'a': data_offsets [0, 2] do not match");
    /* size mismatch (9) before trailing bytes (10) */
    reject(T1("\"U8\"", "[3]", "[0,2]"), 0, 9, "do not match dtype U8 and shape [3] (3 bytes)");
}

static void test_f6_misaligned(void **state)
{
    (void)state;
    reject(T1("\"F6_E2M3\"", "[3]", "[0,2]"), 0, 2, "make 18 bits, not a whole number of bytes");
    al_bt_list l = accept(T1("\"F6_E3M2\"", "[4]", "[0,3]"), 0, 3);
    assert_int_equal(l.v[0].dtype, AL_F6_E3M2);
    al_bt_list_free(&l);
}

static void test_bad_utf8_variants(void **state)
{
    (void)state;
    /* overlong '/', a UTF-16 surrogate, a truncated sequence inside a tensor name */
    static const char *bad[] = {"{\"\xc0\xaf\":1}", "{\"\xed\xa0\x80\":1}", "{\"\xe2\x82\":1}",
                                "{\"\xf4\x90\x80\x80\":1}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        reject(bad[i], 0, 0, "header is not valid UTF-8 (byte 0x");
    reject("{\"a\\u0000b\":{}}", 0, 0, "NUL byte in object key");
}

static void test_unicode_names_and_extra_fields(void **state)
{
    (void)state;
    const char *h = "{\"mod\xc3\xa8le.\xe2\x82\xac.\xf0\x9f\x98\x80\":{\"dtype\":\"BF16\",\"shape\":[2],"
                    "\"data_offsets\":[0,4],\"note\":[1,{\"x\":null}]},"
                    "\"esc\\\"q\\\\\\u00e9\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[4,5]}}";
    al_bt_list l = accept(h, 8, 5);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.v[0].name, "mod\xc3\xa8le.\xe2\x82\xac.\xf0\x9f\x98\x80");
    assert_string_equal(l.v[1].name, "esc\"q\\\xc3\xa9");
    assert_int_equal(l.v[1].dtype, AL_BOOL);
    al_bt_list_free(&l);
}

static void test_many_empty_tensors_same_offset(void **state)
{
    (void)state;
    /* empty tensors sort before the one sharing their begin; order = data order */
    al_bt_list l = accept("{\"w\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                          "\"e2\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[4,4]},"
                          "\"e1\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                          "\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[4,12]}}", 8, 12);
    assert_int_equal(l.n, 4);
    assert_string_equal(l.v[0].name, "e1");
    assert_string_equal(l.v[1].name, "w");
    assert_string_equal(l.v[2].name, "e2");
    assert_string_equal(l.v[3].name, "s");
    al_bt_list_free(&l);
}

static void test_appends_and_rolls_back(void **state)
{
    (void)state;
    /* a second file appends after the first; a failing one leaves the list intact */
    size_t len;
    uint8_t *b = build("{\"__metadata__\":{\"format\":\"pt\"}," "\"a\":{\"dtype\":\"U8\",\"shape\":[1],"
                       "\"data_offsets\":[0,1]}}", 8, 1, &len);
    al_bt_list l = {0};
    al_error err = {0};
    assert_int_equal(al_st_parse(b, len, "one", &l, &err), AL_OK);
    assert_int_equal(al_st_parse(b, len - 1, "two", &l, &err), AL_ERR_FORMAT);
    check_msg(&err, "two: file is truncated");
    assert_int_equal(l.n, 1);
    assert_int_equal(l.nmeta, 1);
    assert_int_equal(al_st_parse(b, len, NULL, &l, &err), AL_OK);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.nmeta, 2);
    al_bt_list_free(&l);
    free(b);
}

/* ---- reader on files ---------------------------------------------------------- */

static void test_open_errors(void **state)
{
    (void)state;
    void *h = (void *)1;
    al_bt_list l = {0};
    al_error err = {0};
    const char *p = path_in("missing.safetensors");
    assert_int_equal(al_safetensors_ops.open(p, &h, &l, &err), AL_ERR_IO);
    check_msg(&err, "missing.safetensors: cannot open: No such file or directory");
    assert_null(h);
    assert_int_equal(al_safetensors_ops.open(g_dir, &h, &l, &err), AL_ERR_IO);
    check_msg(&err, "not a regular file");

    p = path_in("empty.safetensors");
    write_file(p, "", 0);
    assert_int_equal(al_safetensors_ops.open(p, &h, &l, &err), AL_ERR_FORMAT);
    check_msg(&err, "empty.safetensors: file is 0 bytes, too small");
    static const uint8_t eight[8] = {2, 0, 0, 0, 0, 0, 0, 0};
    p = path_in("eight.safetensors");
    write_file(p, eight, 8);
    assert_int_equal(al_safetensors_ops.open(p, &h, &l, &err), AL_ERR_FORMAT);
    check_msg(&err, "eight.safetensors: header length 2 exceeds the file size (8 bytes)");
    assert_int_equal(l.n, 0);
    al_bt_list_free(&l);
}

static void test_read_rows_and_map(void **state)
{
    (void)state;
    size_t len;
    uint8_t *b = build("{\"m\":{\"dtype\":\"I16\",\"shape\":[3,2],\"data_offsets\":[0,12]},"
                       "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[12,16]},"
                       "\"z\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[16,16]}}", 8, 16, &len);
    const char *p = path_in("rows.safetensors");
    write_file(p, b, len);
    void *h = NULL;
    al_bt_list l = {0};
    al_error err = {0};
    assert_int_equal(al_safetensors_ops.open(p, &h, &l, &err), AL_OK);
    assert_int_equal(l.n, 3);
    size_t d0 = len - 16;
    assert_int_equal(l.v[0].offset, d0);
    assert_memory_equal(al_safetensors_ops.map(h, &l.v[0]), b + d0, 12);
    uint8_t dst[16];
    assert_int_equal(al_safetensors_ops.read_rows(h, &l.v[0], 1, 2, dst, &err), AL_OK);
    assert_memory_equal(dst, b + d0 + 4, 8);
    assert_int_equal(al_safetensors_ops.read_rows(h, &l.v[0], 0, 0, dst, &err), AL_OK);
    assert_int_equal(al_safetensors_ops.read_rows(h, &l.v[0], 2, 2, dst, &err), AL_ERR_USAGE);
    check_msg(&err, "rows.safetensors: tensor 'm': rows [2, 4) out of range (3 rows)");
    assert_int_equal(al_safetensors_ops.read_rows(h, &l.v[0], -1, 1, dst, &err), AL_ERR_USAGE);
    assert_int_equal(al_safetensors_ops.read_rows(h, &l.v[1], 0, 1, dst, &err), AL_OK);  /* rank 0 */
    assert_memory_equal(dst, b + d0 + 12, 4);
    assert_int_equal(al_safetensors_ops.read_rows(h, &l.v[1], 1, 1, dst, &err), AL_ERR_USAGE);
    assert_int_equal(al_safetensors_ops.read_rows(h, &l.v[2], 0, 0, dst, &err), AL_OK);  /* empty */
    al_safetensors_ops.close(h);
    al_safetensors_ops.close(NULL);
    al_bt_list_free(&l);
    free(b);
}

/* Compare a real HF file with the dump of tools/dump_safetensors.py. */
static void check_real(const char *st_path, const char *expected_path)
{
    FILE *f = fopen(expected_path, "r");
    assert_non_null(f);
    void *h = NULL;
    al_bt_list l = {0};
    al_error err = {0};
    if (al_safetensors_ops.open(st_path, &h, &l, &err) != AL_OK) fail_msg("%s", err.msg);
    char line[1024], name[512], dt[32];
    size_t ti = 0, mi = 0, nv = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long a, c;
        int pos;
        if (line[0] == 'H') {
            assert_int_equal(sscanf(line, "H %llu %llu", &a, &c), 2);
            assert_int_equal(l.n, c);
            assert_true(l.n > 0);
            assert_int_equal(l.v[0].offset, 8 + a);
            assert_int_equal((8 + a) % 8, 0);
        } else if (line[0] == 'M') {
            char k[64], v[64];
            assert_int_equal(sscanf(line, "M %63s %63s", k, v), 2);
            assert_true(mi < l.nmeta);
            assert_string_equal(l.meta_keys[mi], k);
            assert_string_equal(l.meta_vals[mi], v);
            mi++;
        } else if (line[0] == 'T') {
            int nd;
            assert_int_equal(sscanf(line, "T %511s %31s %d%n", name, dt, &nd, &pos), 3);
            assert_true(ti < l.n);
            const al_bt_tensor *t = &l.v[ti++];
            assert_string_equal(t->name, name);
            assert_string_equal(al_dtype_name(t->dtype), dt);
            assert_int_equal(t->ndim, nd);
            const char *q = line + pos;
            for (int d = 0; d < nd; d++) {
                long long x;
                int k;
                assert_int_equal(sscanf(q, "%lld%n", &x, &k), 1);
                assert_int_equal(t->shape[d], x);
                q += k;
            }
            assert_int_equal(sscanf(q, "%llu %llu", &a, &c), 2);
            assert_int_equal(t->offset, a);
            assert_int_equal(t->nbytes, c);
        } else if (line[0] == 'V') {
            unsigned bits;
            assert_int_equal(sscanf(line, "V %511s %llu %x", name, &a, &bits), 3);
            const al_bt_tensor *t = NULL;
            for (size_t i = 0; i < l.n; i++) if (strcmp(l.v[i].name, name) == 0) t = &l.v[i];
            assert_non_null(t);
            uint32_t got;
            memcpy(&got, (const uint8_t *)al_safetensors_ops.map(h, t) + 4 * a, 4);
            assert_int_equal(got, bits);
            /* the same element through read_rows */
            int64_t rn = al_shape_row_numel(t->ndim, t->shape);
            float row[64];
            assert_true(rn <= 64);
            assert_int_equal(al_safetensors_ops.read_rows(h, t, (int64_t)a / rn, 1, row, &err), AL_OK);
            assert_int_equal(al_f32_bits(row[(int64_t)a % rn]), bits);
            nv++;
        }
    }
    fclose(f);
    assert_int_equal(ti, l.n);
    assert_int_equal(mi, l.nmeta);
    assert_true(nv > 10);
    al_safetensors_ops.close(h);
    al_bt_list_free(&l);
}

static void test_real_tiny_gpt2(void **state)
{
    (void)state;
    check_real("tests/fixtures/hf/tiny_gpt2/model.safetensors", "tests/fixtures/hf/tiny_gpt2.expected.txt");
}

static void test_real_fake_gpt2(void **state)
{
    (void)state;
    check_real("tests/fixtures/hf/fake_gpt2/model.safetensors", "tests/fixtures/hf/fake_gpt2.expected.txt");
}

static void test_real_tiny_gpt2_spot(void **state)
{
    (void)state;
    /* Independent spot checks by name, in case the dump and the reader shared a bug. */
    void *h = NULL;
    al_bt_list l = {0};
    al_error err = {0};
    assert_int_equal(al_safetensors_ops.open("tests/fixtures/hf/tiny_gpt2/model.safetensors", &h, &l, &err), AL_OK);
    assert_int_equal(l.n, 16);
    assert_string_equal(l.v[15].name, "wte.weight");
    assert_int_equal(l.v[15].shape[0], 21);
    assert_int_equal(l.v[15].shape[1], 2);
    assert_string_equal(l.v[1].name, "h.0.attn.c_attn.weight");
    const float *w = al_safetensors_ops.map(h, &l.v[1]);
    assert_float_equal(w[0], 0.0049090595f, 1e-9);
    assert_float_equal(w[1], -0.0247592125f, 1e-9);
    assert_int_equal(l.nmeta, 1);
    assert_string_equal(l.meta_vals[0], "pt");
    al_safetensors_ops.close(h);
    al_bt_list_free(&l);
}

/* ---- writer ------------------------------------------------------------------- */

typedef struct {
    const char *name;
    al_dtype dt;
    int ndim;
    int64_t shape[4];
} rt_spec;

static void test_round_trip(void **state)
{
    (void)state;
    static const rt_spec spec[] = {
        {"w.f32", AL_F32, 2, {3, 4}},
        {"h\xc3\xa9llo.w\xc3\xb6rld/\xcf\x80", AL_F16, 1, {5}},
        {"b.bf16", AL_BF16, 3, {2, 3, 2}},
        {"idx", AL_I64, 1, {2}},
        {"scalar", AL_F32, 0, {0}},
        {"empty", AL_F32, 2, {0, 3}},
        {"q\"uo\\te\n\ttab", AL_U8, 1, {3}},
        {"big", AL_U8, 1, {5 << 20}},        /* larger than the 4 MiB write buffer */
    };
    enum { NT = sizeof spec / sizeof *spec };
    al_wt_tensor wt[NT];
    uint64_t total = 0;
    for (int i = 0; i < NT; i++) {
        int64_t n;
        uint64_t nb;
        assert_true(al_shape_numel(spec[i].ndim, spec[i].shape, &n));
        assert_true(al_dtype_nbytes(spec[i].dt, n, &nb));
        wt[i] = (al_wt_tensor){spec[i].name, spec[i].dt, spec[i].ndim, spec[i].shape, nb};
        total += nb;
    }
    uint8_t *data = malloc(total);
    assert_non_null(data);
    for (uint64_t i = 0; i < total; i++) data[i] = (uint8_t)(i * 131 + (i >> 8));

    const char *p = path_in("rt.safetensors");
    void *w = NULL;
    al_error err = {0};
    if (al_safetensors_writer_ops.create(p, wt, NT, 0, &w, &err) != AL_OK) fail_msg("%s", err.msg);
    /* odd-sized writes that straddle tensors, then one bigger than the buffer */
    uint64_t off = 0;
    static const uint64_t chunks[] = {1, 7, 48, 3, 100};
    for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
        assert_int_equal(al_safetensors_writer_ops.write(w, data + off, chunks[c], &err), AL_OK);
        off += chunks[c];
    }
    assert_int_equal(al_safetensors_writer_ops.write(w, data + off, total - off, &err), AL_OK);
    assert_int_equal(al_safetensors_writer_ops.finish(w, &err), AL_OK);
    al_safetensors_writer_ops.close(w);

    size_t flen;
    uint8_t *fb = read_file(p, &flen);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | fb[i];
    assert_int_equal(n % 8, 0);
    assert_int_equal(flen, 8 + n + total);
    assert_int_equal(fb[8], '{');
    assert_memory_equal(fb + 8, "{\"__metadata__\":{\"format\":\"pt\"}", 31);
    assert_int_equal(fb[8 + n - 1] == ' ' || fb[8 + n - 1] == '}', 1);
    assert_memory_equal(fb + 8 + n, data, total);
    free(fb);

    void *h = NULL;
    al_bt_list l = {0};
    if (al_safetensors_ops.open(p, &h, &l, &err) != AL_OK) fail_msg("%s", err.msg);
    assert_int_equal(l.n, NT);
    assert_int_equal(l.nmeta, 1);
    assert_string_equal(l.meta_keys[0], "format");
    assert_string_equal(l.meta_vals[0], "pt");
    off = 0;
    for (int i = 0; i < NT; i++) {
        assert_string_equal(l.v[i].name, spec[i].name);
        assert_int_equal(l.v[i].dtype, spec[i].dt);
        assert_true(al_shape_equal(l.v[i].ndim, l.v[i].shape, spec[i].ndim, spec[i].shape));
        assert_int_equal(l.v[i].nbytes, wt[i].nbytes);
        assert_int_equal(l.v[i].offset, 8 + n + off);
        if (wt[i].nbytes) assert_memory_equal(al_safetensors_ops.map(h, &l.v[i]), data + off, wt[i].nbytes);
        off += wt[i].nbytes;
    }
    al_safetensors_ops.close(h);
    al_bt_list_free(&l);
    free(data);
}

static void test_writer_empty_model(void **state)
{
    (void)state;
    const char *p = path_in("none.safetensors");
    void *w = NULL;
    al_error err = {0};
    assert_int_equal(al_safetensors_writer_ops.create(p, NULL, 0, 0, &w, &err), AL_OK);
    assert_int_equal(al_safetensors_writer_ops.finish(w, &err), AL_OK);
    al_safetensors_writer_ops.close(w);
    size_t len;
    uint8_t *b = read_file(p, &len);
    assert_int_equal(len, 8 + 32);
    al_bt_list l = accept_buf(b, len);
    assert_int_equal(l.n, 0);
    assert_int_equal(l.nmeta, 1);
    al_bt_list_free(&l);
    free(b);
}

static void test_writer_errors(void **state)
{
    (void)state;
    int64_t s2[1] = {2};
    al_wt_tensor t[2] = {{"a", AL_F32, 1, s2, 8}, {"b", AL_F16, 1, s2, 4}};
    void *w = NULL;
    al_error err = {0};
    uint8_t buf[16] = {0};

    /* short data: finish names the first incomplete tensor */
    const char *p = path_in("short.safetensors");
    assert_int_equal(al_safetensors_writer_ops.create(p, t, 2, 0, &w, &err), AL_OK);
    assert_int_equal(al_safetensors_writer_ops.write(w, buf, 10, &err), AL_OK);
    assert_int_equal(al_safetensors_writer_ops.finish(w, &err), AL_ERR_INTERNAL);
    check_msg(&err, "short.safetensors: tensor 'b': only 2 of 4 bytes were written");
    /* too much data */
    assert_int_equal(al_safetensors_writer_ops.write(w, buf, 3, &err), AL_ERR_INTERNAL);
    check_msg(&err, "3 bytes written past the declared data");
    al_safetensors_writer_ops.close(w);

    /* O_EXCL: an existing file is never overwritten */
    w = NULL;
    assert_int_equal(al_safetensors_writer_ops.create(p, t, 2, 0, &w, &err), AL_ERR_IO);
    check_msg(&err, "short.safetensors: cannot create: File exists");
    assert_null(w);

    /* declaration faults: nothing is created */
    const char *q = path_in("bad.safetensors");
    al_wt_tensor dup[2] = {{"a", AL_F32, 1, s2, 8}, {"a", AL_F32, 1, s2, 8}};
    assert_int_equal(al_safetensors_writer_ops.create(q, dup, 2, 0, &w, &err), AL_ERR_USAGE);
    check_msg(&err, "tensor name 'a' is declared twice");
    al_wt_tensor res = {"__metadata__", AL_F32, 1, s2, 8};
    assert_int_equal(al_safetensors_writer_ops.create(q, &res, 1, 0, &w, &err), AL_ERR_USAGE);
    check_msg(&err, "is reserved");
    al_wt_tensor mis = {"m", AL_F32, 1, s2, 4};
    assert_int_equal(al_safetensors_writer_ops.create(q, &mis, 1, 0, &w, &err), AL_ERR_USAGE);
    check_msg(&err, "tensor 'm': 4 bytes declared, which does not match dtype F32 and shape [2]");
    al_wt_tensor u8 = {"bad\xff", AL_U8, 1, s2, 2};
    assert_int_equal(al_safetensors_writer_ops.create(q, &u8, 1, 0, &w, &err), AL_ERR_USAGE);
    check_msg(&err, "is not valid UTF-8");
    assert_int_equal(access(q, F_OK), -1);
}

/* ---- allocation failure sweeps ------------------------------------------------ */

static void test_alloc_fail_parse(void **state)
{
    (void)state;
    size_t len;
    uint8_t *b = read_file("tests/fixtures/hf/tiny_gpt2/model.safetensors", &len);
    al_bt_list l = {0};
    al_error err = {0};
    long k;
    for (k = 1; k < 1000; k++) {
        al_alloc_fail_at(k);
        al_status st = al_st_parse(b, len, LABEL, &l, &err);
        al_alloc_fail_at(0);
        if (st == AL_OK) break;
        assert_int_equal(st, AL_ERR_NOMEM);
        check_msg(&err, LABEL);
        assert_int_equal(l.n, 0);
        assert_int_equal(l.nmeta, 0);
    }
    assert_true(k > 10 && k < 1000);
    assert_int_equal(l.n, 16);
    al_bt_list_free(&l);
    free(b);
}

static void test_alloc_fail_open_and_create(void **state)
{
    (void)state;
    long k;
    for (k = 1; k < 1000; k++) {
        void *h = NULL;
        al_bt_list l = {0};
        al_error err = {0};
        al_alloc_fail_at(k);
        al_status st = al_safetensors_ops.open("tests/fixtures/hf/tiny_gpt2/model.safetensors", &h, &l, &err);
        al_alloc_fail_at(0);
        if (st == AL_OK) {
            al_safetensors_ops.close(h);
            al_bt_list_free(&l);
            break;
        }
        assert_int_equal(st, AL_ERR_NOMEM);
        assert_null(h);
        assert_int_equal(l.n, 0);
        assert_int_equal(l.nmeta, 0);
        al_bt_list_free(&l);    /* the arrays may have grown before the failure */
    }
    assert_true(k < 1000);

    int64_t s2[1] = {2};
    al_wt_tensor t[2] = {{"a", AL_F32, 1, s2, 8}, {"b", AL_F16, 1, s2, 4}};
    const char *p = path_in("nomem.safetensors");
    for (k = 1; k < 1000; k++) {
        void *w = NULL;
        al_error err = {0};
        al_alloc_fail_at(k);
        al_status st = al_safetensors_writer_ops.create(p, t, 2, 0, &w, &err);
        al_alloc_fail_at(0);
        if (st == AL_OK) {
            al_safetensors_writer_ops.close(w);
            break;
        }
        assert_int_equal(st, AL_ERR_NOMEM);
        assert_null(w);
        assert_int_equal(access(p, F_OK), -1);
    }
    assert_true(k < 1000);
}

/* Random mutations of a valid file (a cheap fuzzer that runs in every `make test`, and
 * under ASan in `make asan`): each parse must either fail with a message or return
 * tensors whose bytes lie inside the data region, in order, without overlap, with
 * nbytes = numel * element size. The copy is allocated at its exact length so ASan
 * catches any read past the end. */
static void test_mutations(void **state)
{
    (void)state;
    static const char hdr[] =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"a.weight\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[12,24]},"
        "\"c\":{\"dtype\":\"I64\",\"shape\":[1,1],\"data_offsets\":[24,32]}}";
    static const char junk[] = "\"{}[]:,0123456789-e.E\\u \x80\xff";
    size_t len;
    uint8_t *orig = build(hdr, 8, 32, &len);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int accepted = 0, rejected = 0;
    for (int it = 0; it < 100000; it++) {
        size_t n = len;
        uint8_t *b = malloc(len);
        assert_non_null(b);
        memcpy(b, orig, len);
        int k = 1 + (int)(tu_xorshift(&x) % 3);
        for (int m = 0; m < k; m++) {
            if (n == 0) break;
            uint64_t r = tu_xorshift(&x), pos = (r >> 8) % n;
            switch (r & 7) {
            case 0: b[pos] = (uint8_t)(r >> 40); break;                     /* any byte */
            case 1: case 2: case 3: b[pos] = (uint8_t)junk[(r >> 40) % (sizeof junk - 1)]; break;
            case 4: b[pos] = (uint8_t)(b[pos] ^ (1u << ((r >> 40) & 7))); break;  /* bit flip */
            case 5: n = pos; break;                                        /* truncate */
            case 6: b[(r >> 40) & 7] = (uint8_t)(r >> 48); break;           /* header length */
            default: b[8 + (r >> 40) % (n > 8 ? n - 8 : 1)] = (uint8_t)('0' + (r >> 48) % 10); break;
            }
        }
        uint8_t *e = malloc(n ? n : 1);       /* exact length: ASan sees any over-read */
        assert_non_null(e);
        memcpy(e, b, n);
        free(b);
        al_bt_list l = {0};
        al_error err = {0};
        if (al_st_parse(e, n, LABEL, &l, &err) == AL_OK) {
            accepted++;
            uint64_t hl = 0;
            for (int i = 0; i < 8; i++) hl |= (uint64_t)e[i] << (8 * i);
            uint64_t prev_end = 8 + hl;
            for (size_t i = 0; i < l.n; i++) {
                const al_bt_tensor *t = &l.v[i];
                uint64_t numel = 1;
                for (int d = 0; d < t->ndim; d++) numel *= (uint64_t)t->shape[d];
                assert_int_equal(t->nbytes * 8, numel * al_dtype_bits(t->dtype));
                assert_true(t->offset >= prev_end);
                assert_true(t->offset + t->nbytes <= n);
                prev_end = t->offset + t->nbytes;
            }
        } else {
            rejected++;
            assert_non_null(strstr(err.msg, LABEL));
        }
        al_bt_list_free(&l);
        free(e);
    }
    free(orig);
    /* both outcomes occur: mutations of the data bytes keep the file valid */
    assert_true(accepted > 100);
    print_message("mutations: %d accepted, %d rejected\n", accepted, rejected);
    assert_true(rejected > 50000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rs_empty),
        cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_rs_serialization),
        cmocka_unit_test(test_rs_forced_alignment),
        cmocka_unit_test(test_rs_f4_one_byte),
        cmocka_unit_test(test_rs_empty_shapes_allowed),
        cmocka_unit_test(test_rs_zero_sized_tensor),
        cmocka_unit_test(test_rs_whitespace_padded),
        cmocka_unit_test(test_rs_header_too_small),
        cmocka_unit_test(test_rs_invalid_header_length),
        cmocka_unit_test(test_rs_header_too_large),
        cmocka_unit_test(test_rs_invalid_header_non_utf8),
        cmocka_unit_test(test_rs_invalid_header_not_json),
        cmocka_unit_test(test_rs_metadata_incomplete_buffer),
        cmocka_unit_test(test_rs_invalid_info),
        cmocka_unit_test(test_rs_json_attack),
        cmocka_unit_test(test_rs_validation_overflow),
        cmocka_unit_test(test_rs_fp4_misaligned),
        cmocka_unit_test(test_rs_writer_header_too_large),
        cmocka_unit_test(test_header_length_past_eof),
        cmocka_unit_test(test_exactly_8_bytes),
        cmocka_unit_test(test_truncated_data),
        cmocka_unit_test(test_trailing_garbage),
        cmocka_unit_test(test_nan_in_shape),
        cmocka_unit_test(test_shape_bad_values),
        cmocka_unit_test(test_negative_offset),
        cmocka_unit_test(test_offsets_bad_shape),
        cmocka_unit_test(test_offsets_begin_after_end),
        cmocka_unit_test(test_shape_offset_mismatch),
        cmocka_unit_test(test_duplicate_names),
        cmocka_unit_test(test_non_object_header),
        cmocka_unit_test(test_header_garbage_around_json),
        cmocka_unit_test(test_dtype_faults),
        cmocka_unit_test(test_missing_fields),
        cmocka_unit_test(test_rank_9),
        cmocka_unit_test(test_metadata_faults),
        cmocka_unit_test(test_unpadded_header_accepted),
        cmocka_unit_test(test_holes_and_overlaps),
        cmocka_unit_test(test_validation_order),
        cmocka_unit_test(test_f6_misaligned),
        cmocka_unit_test(test_bad_utf8_variants),
        cmocka_unit_test(test_unicode_names_and_extra_fields),
        cmocka_unit_test(test_many_empty_tensors_same_offset),
        cmocka_unit_test(test_appends_and_rolls_back),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_read_rows_and_map),
        cmocka_unit_test(test_real_tiny_gpt2),
        cmocka_unit_test(test_real_fake_gpt2),
        cmocka_unit_test(test_real_tiny_gpt2_spot),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_writer_empty_model),
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_alloc_fail_parse),
        cmocka_unit_test(test_alloc_fail_open_and_create),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
