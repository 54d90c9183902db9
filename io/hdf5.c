/* io/hdf5.c: HDF5 checkpoints, read and written through the HDF5 1.10 C API.
 *
 * Two layouts are read; only the native one is written.
 *
 * 1. alloy native layout ("alloy-hdf5-1"):
 *      /                      attr alloy_format = "alloy-hdf5-1"      (scalar vlen string)
 *                             attr tensor_names = [canonical names]   (1-D vlen strings,
 *                                                  file order; the reader follows it)
 *      /tensors               group, link creation order tracked (h5py lists in order too)
 *      /tensors/<escaped>     one dataset per tensor, stored shape == canonical shape,
 *                             rank 0 as a scalar dataspace;
 *                             attr name  = canonical name          (vlen string)
 *                             attr dtype = safetensors dtype name  (vlen string)
 *    <escaped> is the canonical name with '%' -> "%25" and '/' -> "%2F" (and the name
 *    "." -> "%2E"), so a name never creates nested groups; the reader does not unescape,
 *    it uses `name`. Stored types, all little-endian, chosen so h5py/numpy read them
 *    naturally: F32/F64 IEEE floats; F16 an IEEE half built from F32LE (h5py's float16
 *    recipe); BF16 as U16 (raw bits, exact), BOOL and F8_* as U8 (raw bits); integers
 *    as the matching H5T_STD_*; C64 as h5py's compound {r,i} of F32. The `dtype` attr
 *    says what the bits mean. Sub-byte dtypes (F6/F4) are not written.
 *    compress 0 = contiguous; 1..9 = chunked (~1 MiB chunks, split along dim 0 first)
 *    with shuffle + deflate(level). The file is created with 1.8-format bounds so a
 *    tensor_names attr of any size fits (dense attribute storage).
 *
 * 2. Keras 2 / HF transformers TF legacy layout (tf_model.h5; docs/formats.md 4A/4B):
 *    root (or /model_weights) attr layer_names (split into layer_names0, 1, ... when
 *    large); each layer group has attr weight_names (strings, or an empty float64 array
 *    for layers without weights) naming datasets relative to the group. Tensors are
 *    listed in layer_names x weight_names order and renamed as transformers'
 *    convert_tf_weight_name_to_pt_weight_name does (strip ":0", "X___Y" -> "Y",
 *    "_._" -> "/", drop the first component, "/" -> ".", kernel/embeddings/gamma ->
 *    weight, beta -> bias). A 2-D kernel is stored [in, out], the transpose of the
 *    PyTorch Linear weight: it is listed with the PyTorch shape and transpose=true, and
 *    read_rows transposes in memory. Conv kernels (rank 3/4) are refused. If the HF
 *    mapping makes two names collide (a plain Keras model, whose first component is
 *    the layer itself), the whole file falls back to Keras names: ":0" stripped,
 *    "/" -> ".", stored shapes, no transposes.
 *
 * HDF5's serial build is not thread-safe and its state is process-wide, so every entry
 * point here takes one process-wide mutex around its HDF5 calls. Automatic error
 * printing is switched off; failures become al_error messages naming file and dataset,
 * with the innermost HDF5 error description appended. */
#include "backend.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "../core/alloc.h"
#include "h5_internal.h"

#define H5_FORMAT_TAG "alloy-hdf5-1"
#define H5_CHUNK_TARGET (1u << 20)          /* bytes per chunk when compressing */
#define H5_CHUNK_CACHE  (8u << 20)          /* per-dataset chunk cache while writing */
#define H5_XPOSE_TMP    (1u << 20)          /* scratch bound for transposed reads */

static void h5_close_id(hid_t id)
{
    if (id < 0) return;
    switch (H5Iget_type(id)) {
    case H5I_FILE: H5Fclose(id); break;
    case H5I_GROUP: H5Gclose(id); break;
    case H5I_DATASET: H5Dclose(id); break;
    case H5I_DATATYPE: H5Tclose(id); break;
    case H5I_DATASPACE: H5Sclose(id); break;
    case H5I_ATTR: H5Aclose(id); break;
    case H5I_GENPROP_LST: H5Pclose(id); break;
    default: break;
    }
}


/* ---- dtypes ------------------------------------------------------------------------ */

/* A new HDF5 type for storing `t` (caller closes), or -1 if `t` is not storable. */
static hid_t h5_type_for(al_dtype t)
{
    hid_t ty = -1;
    switch (t) {
    case AL_F32: return H5Tcopy(H5T_IEEE_F32LE);
    case AL_F64: return H5Tcopy(H5T_IEEE_F64LE);
    case AL_F16:
        /* IEEE binary16, exactly as h5py builds numpy float16. */
        ty = H5Tcopy(H5T_IEEE_F32LE);
        if (ty < 0) return -1;
        if (H5Tset_fields(ty, 15, 10, 5, 0, 10) < 0 || H5Tset_size(ty, 2) < 0 ||
            H5Tset_ebias(ty, 15) < 0) { H5Tclose(ty); return -1; }
        return ty;
    case AL_BF16: case AL_U16: return H5Tcopy(H5T_STD_U16LE);
    case AL_BOOL: case AL_U8: case AL_F8_E5M2: case AL_F8_E4M3: case AL_F8_E8M0:
    case AL_F8_E4M3FNUZ: case AL_F8_E5M2FNUZ:
        return H5Tcopy(H5T_STD_U8LE);
    case AL_I8: return H5Tcopy(H5T_STD_I8LE);
    case AL_I16: return H5Tcopy(H5T_STD_I16LE);
    case AL_I32: return H5Tcopy(H5T_STD_I32LE);
    case AL_U32: return H5Tcopy(H5T_STD_U32LE);
    case AL_I64: return H5Tcopy(H5T_STD_I64LE);
    case AL_U64: return H5Tcopy(H5T_STD_U64LE);
    case AL_C64:
        ty = H5Tcreate(H5T_COMPOUND, 8);
        if (ty < 0) return -1;
        if (H5Tinsert(ty, "r", 0, H5T_IEEE_F32LE) < 0 || H5Tinsert(ty, "i", 4, H5T_IEEE_F32LE) < 0) {
            H5Tclose(ty);
            return -1;
        }
        return ty;
    default: return -1;
    }
}

/* Dtype implied by a stored HDF5 type alone; false if it has no alloy equivalent. */
static bool h5_dtype_of(hid_t ty, al_dtype *out)
{
    size_t sz = H5Tget_size(ty);
    switch (H5Tget_class(ty)) {
    case H5T_FLOAT: {
        size_t spos, epos, esize, mpos, msize;
        if (H5Tget_fields(ty, &spos, &epos, &esize, &mpos, &msize) < 0) return false;
        size_t bias = H5Tget_ebias(ty);
        if (sz == 4 && esize == 8 && msize == 23) { *out = AL_F32; return true; }
        if (sz == 8 && esize == 11 && msize == 52) { *out = AL_F64; return true; }
        if (sz == 2 && esize == 5 && msize == 10 && bias == 15) { *out = AL_F16; return true; }
        if (sz == 2 && esize == 8 && msize == 7 && bias == 127) { *out = AL_BF16; return true; }
        return false;
    }
    case H5T_INTEGER: {
        bool sgn = H5Tget_sign(ty) == H5T_SGN_2;
        switch (sz) {
        case 1: *out = sgn ? AL_I8 : AL_U8; return true;
        case 2: *out = sgn ? AL_I16 : AL_U16; return true;
        case 4: *out = sgn ? AL_I32 : AL_U32; return true;
        case 8: *out = sgn ? AL_I64 : AL_U64; return true;
        default: return false;
        }
    }
    case H5T_ENUM:          /* h5py stores numpy bool as an int8 enum {FALSE, TRUE} */
        if (sz == 1 && H5Tget_nmembers(ty) == 2) { *out = AL_BOOL; return true; }
        return false;
    case H5T_COMPOUND:      /* h5py complex64 */
        if (sz == 8 && H5Tget_nmembers(ty) == 2) { *out = AL_C64; return true; }
        return false;
    default:
        return false;
    }
}

/* Does a stored type carry `t`'s bits? Used to check the native `dtype` attr. */
static bool h5_type_fits(hid_t ty, al_dtype t)
{
    if (al_dtype_bits(t) % 8 || H5Tget_size(ty) * 8 != al_dtype_bits(t)) return false;
    H5T_class_t cls = H5Tget_class(ty);
    al_dtype implied;
    switch (t) {
    case AL_F32: case AL_F64: case AL_F16:
        return cls == H5T_FLOAT && h5_dtype_of(ty, &implied) && implied == t;
    case AL_I8: case AL_U8: case AL_I16: case AL_U16: case AL_I32: case AL_U32:
    case AL_I64: case AL_U64:
        return cls == H5T_INTEGER && h5_dtype_of(ty, &implied) && implied == t;
    default:            /* raw-bit dtypes: any fixed-size numeric carrier of that width */
        return cls == H5T_INTEGER || cls == H5T_FLOAT || cls == H5T_ENUM ||
               cls == H5T_COMPOUND || cls == H5T_OPAQUE;
    }
}

/* Memory type for reading the stored bits unchanged except for byte order. */
static hid_t h5_mem_type(hid_t ftype)
{
    hid_t m = H5Tcopy(ftype);
    if (m < 0) return -1;
    H5T_class_t c = H5Tget_class(m);
    if ((c == H5T_INTEGER || c == H5T_FLOAT) && H5Tset_order(m, H5T_ORDER_LE) < 0) {
        H5Tclose(m);
        return -1;
    }
    return m;
}

/* Keras attribute that may be split into name0, name1, ... (HDF5_OBJECT_HEADER_LIMIT). */
static al_status h5_read_chunked_strs(hid_t obj, const char *name, const char *path, char ***out,
                                      size_t *nout, al_error *err)
{
    al_status st = al_h5_get_strs(obj, name, path, out, nout, err);
    if (st != AL_ERR_NOTFOUND) return st;
    char **all = NULL;
    size_t nall = 0;
    int k = 0;
    for (;; k++) {
        char key[256], **part;
        size_t npart;
        snprintf(key, sizeof key, "%s%d", name, k);
        st = al_h5_get_strs(obj, key, path, &part, &npart, err);
        if (st == AL_ERR_NOTFOUND) break;
        if (st != AL_OK) { al_h5_strv_free(all, nall); return st; }
        char **grown = npart ? al_realloc(all, (nall + npart) * sizeof *all) : all;
        if (npart && !grown) {
            al_h5_strv_free(part, npart);
            al_h5_strv_free(all, nall);
            return al_errorf(err, AL_ERR_NOMEM, "%s: out of memory reading attribute '%s'", path, key);
        }
        all = grown;
        if (npart) memcpy(all + nall, part, npart * sizeof *part);
        nall += npart;
        al_free(part);
    }
    if (k == 0) return AL_ERR_NOTFOUND;
    *out = all;
    *nout = nall;
    return AL_OK;
}

static al_status h5_write_strs(hid_t obj, const char *name, const char *const *v, size_t n,
                               bool scalar, const char *path, al_error *err)
{
    hid_t ty = -1, space = -1, attr = -1;
    al_status st = AL_OK;
    char d[160];
    hsize_t dim = n;
    if ((ty = H5Tcopy(H5T_C_S1)) < 0 || H5Tset_size(ty, H5T_VARIABLE) < 0 ||
        H5Tset_cset(ty, H5T_CSET_UTF8) < 0 ||
        (space = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dim, NULL)) < 0 ||
        (attr = H5Acreate2(obj, name, ty, space, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Awrite(attr, ty, v) < 0)
        st = al_errorf(err, AL_ERR_IO, "%s: cannot write attribute '%s': %s", path, name,
                       al_h5_why(d, sizeof d));
    h5_close_id(attr);
    h5_close_id(space);
    h5_close_id(ty);
    return st;
}

/* ---- reader ------------------------------------------------------------------------ */

typedef struct {
    hid_t file;
    char *path;
} h5_reader;

/* Shape of an open dataset. */
static al_status h5_dataset_shape(hid_t dset, const char *path, const char *loc, int *ndim,
                                  int64_t *shape, al_error *err)
{
    hid_t space = H5Dget_space(dset);
    al_status st = AL_OK;
    char d[160];
    if (space < 0)
        return al_errorf(err, AL_ERR_FORMAT, "%s: dataset '%s': no dataspace: %s", path, loc,
                         al_h5_why(d, sizeof d));
    H5S_class_t cls = H5Sget_simple_extent_type(space);
    int nd = H5Sget_simple_extent_ndims(space);
    hsize_t dims[H5S_MAX_RANK];
    if (cls == H5S_SCALAR) {
        *ndim = 0;
    } else if (cls != H5S_SIMPLE || nd < 0) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: dataset '%s' has an empty (null) dataspace", path, loc);
    } else if (nd > AL_MAX_DIMS) {
        st = al_errorf(err, AL_ERR_UNSUPPORTED, "%s: dataset '%s' has rank %d (max %d)", path, loc,
                       nd, AL_MAX_DIMS);
    } else if (H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: dataset '%s': bad dataspace: %s", path, loc,
                       al_h5_why(d, sizeof d));
    } else {
        *ndim = nd;
        for (int i = 0; i < nd; i++) {
            if (dims[i] > (hsize_t)INT64_MAX) {
                st = al_errorf(err, AL_ERR_FORMAT, "%s: dataset '%s': dimension too large", path, loc);
                break;
            }
            shape[i] = (int64_t)dims[i];
        }
    }
    H5Sclose(space);
    return st;
}

/* Fill t->shape/ndim/nbytes/dtype from dataset `loc`; dtype_attr overrides the stored
 * type (native layout) and must then be a known dtype whose width matches. */
static al_status h5_describe(hid_t file, const char *path, const char *loc, bool native,
                             al_bt_tensor *t, int *stored_ndim, al_error *err)
{
    hid_t dset = -1, ftype = -1;
    char **dt = NULL;
    size_t ndt = 0;
    al_status st = AL_OK;
    char d[160];
    if ((dset = H5Dopen2(file, loc, H5P_DEFAULT)) < 0) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: cannot open dataset '%s': %s", path, loc,
                       al_h5_why(d, sizeof d));
        goto done;
    }
    if ((ftype = H5Dget_type(dset)) < 0) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: dataset '%s': no datatype: %s", path, loc,
                       al_h5_why(d, sizeof d));
        goto done;
    }
    if ((st = h5_dataset_shape(dset, path, loc, &t->ndim, t->shape, err)) != AL_OK) goto done;
    *stored_ndim = t->ndim;
    if (native) {
        st = al_h5_get_strs(dset, "dtype", path, &dt, &ndt, err);
        if (st == AL_ERR_NOTFOUND) st = AL_OK;
        if (st != AL_OK) goto done;
    }
    if (ndt == 1) {
        if (!al_dtype_from_name(dt[0], &t->dtype)) {
            st = al_errorf(err, AL_ERR_FORMAT, "%s: dataset '%s': unknown dtype '%s'", path, loc, dt[0]);
            goto done;
        }
        if (!h5_type_fits(ftype, t->dtype)) {
            st = al_errorf(err, AL_ERR_FORMAT, "%s: dataset '%s': dtype '%s' does not match its "
                           "stored %zu-byte HDF5 type", path, loc, dt[0], H5Tget_size(ftype));
            goto done;
        }
    } else if (ndt > 1) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: dataset '%s': dtype attribute is not one string", path, loc);
        goto done;
    } else if (!h5_dtype_of(ftype, &t->dtype)) {
        st = al_errorf(err, AL_ERR_UNSUPPORTED, "%s: dataset '%s': HDF5 type (class %d, %zu bytes) "
                       "has no alloy dtype", path, loc, (int)H5Tget_class(ftype), H5Tget_size(ftype));
        goto done;
    }
    int64_t numel;
    if (!al_shape_numel(t->ndim, t->shape, &numel) || !al_dtype_nbytes(t->dtype, numel, &t->nbytes))
        st = al_errorf(err, AL_ERR_FORMAT, "%s: dataset '%s': size overflows", path, loc);
done:
    al_h5_strv_free(dt, ndt);
    h5_close_id(ftype);
    h5_close_id(dset);
    return st;
}

static char *h5_escape(const char *name)
{
    size_t n = 1;
    for (const char *p = name; *p; p++) n += (*p == '%' || *p == '/') ? 3 : 1;
    if (strcmp(name, ".") == 0) return al_strdup("%2E");
    char *o = al_malloc(n), *q = o;
    if (!o) return NULL;
    for (const char *p = name; *p; p++) {
        if (*p == '%') { memcpy(q, "%25", 3); q += 3; }
        else if (*p == '/') { memcpy(q, "%2F", 3); q += 3; }
        else *q++ = *p;
    }
    *q = '\0';
    return o;
}

static char *str_cat3(const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *o = al_malloc(la + lb + lc + 1);
    if (!o) return NULL;
    memcpy(o, a, la);
    memcpy(o + la, b, lb);
    memcpy(o + la + lb, c, lc + 1);
    return o;
}

static al_status h5_open_native(h5_reader *h, al_bt_list *list, al_error *err)
{
    char **names = NULL;
    size_t n = 0;
    al_status st = al_h5_get_strs(h->file, "tensor_names", h->path, &names, &n, err);
    if (st == AL_ERR_NOTFOUND)
        return al_errorf(err, AL_ERR_FORMAT, "%s: alloy HDF5 file without a 'tensor_names' attribute", h->path);
    if (st != AL_OK) return st;
    for (size_t i = 0; i < n && st == AL_OK; i++) {
        al_bt_tensor t = {0};
        char *esc = h5_escape(names[i]);
        t.locator = esc ? str_cat3("/tensors/", esc, "") : NULL;
        al_free(esc);
        if (!t.locator) { st = al_errorf(err, AL_ERR_NOMEM, "%s: out of memory", h->path); break; }
        int snd;
        st = h5_describe(h->file, h->path, t.locator, true, &t, &snd, err);
        if (st == AL_OK) {
            /* the dataset's own `name` must agree with the list */
            hid_t dset = H5Dopen2(h->file, t.locator, H5P_DEFAULT);
            char **nm = NULL;
            size_t nnm = 0;
            st = dset < 0 ? al_errorf(err, AL_ERR_FORMAT, "%s: cannot open '%s'", h->path, t.locator)
                          : al_h5_get_strs(dset, "name", h->path, &nm, &nnm, err);
            if (st == AL_ERR_NOTFOUND || (st == AL_OK && (nnm != 1 || strcmp(nm[0], names[i]) != 0)))
                st = al_errorf(err, AL_ERR_FORMAT, "%s: dataset '%s': 'name' attribute missing or not "
                               "'%s'", h->path, t.locator, names[i]);
            al_h5_strv_free(nm, nnm);
            h5_close_id(dset);
        }
        if (st == AL_OK) {
            t.name = names[i];
            names[i] = NULL;
            st = al_bt_push(list, &t, err);
            if (st != AL_OK) al_free(t.name);       /* push failed: still ours */
        }
        if (st != AL_OK) al_free(t.locator);
    }
    al_h5_strv_free(names, n);
    return st;
}

/* transformers' convert_tf_weight_name_to_pt_weight_name (modeling_tf_pytorch_utils.py).
 * Returns the PyTorch name (al_malloc'd) and whether the weight is kernel-like (stored
 * transposed). */
static char *tf_to_pt_name(const char *tf, bool *kernel_like)
{
    size_t n = strlen(tf);
    char *a = al_malloc(n + 1), *b = al_malloc(n + 1), *out = NULL;
    if (!a || !b) goto done;
    /* 1. strip every ":0" */
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (tf[i] == ':' && tf[i + 1] == '0') { i += 2; continue; }
        a[k++] = tf[i++];
    }
    a[k] = '\0';
    /* 2. re.sub(r"/[^/]*___([^/]*)/", r"/\1/"): inner components keep the part after
     *    their last "___"; a replaced component consumes its closing '/'. */
    k = 0;
    for (size_t i = 0; a[i];) {
        if (a[i] != '/') { b[k++] = a[i++]; continue; }
        const char *seg = a + i + 1, *end = strchr(seg, '/');
        const char *last = NULL;
        if (end)
            for (const char *p = seg; p + 3 <= end; p++)
                if (p[0] == '_' && p[1] == '_' && p[2] == '_') last = p;
        if (!last) { b[k++] = a[i++]; continue; }
        b[k++] = '/';
        for (const char *p = last + 3; p < end; p++) b[k++] = *p;
        b[k++] = '/';
        i = (size_t)(end - a) + 1;
    }
    b[k] = '\0';
    /* 3. "_._" -> "/"; 4. collapse "//+" */
    k = 0;
    for (size_t i = 0; b[i];) {
        if (b[i] == '_' && b[i + 1] == '.' && b[i + 2] == '_') { a[k++] = '/'; i += 3; }
        else a[k++] = b[i++];
    }
    a[k] = '\0';
    k = 0;
    for (size_t i = 0; a[i]; i++)
        if (!(a[i] == '/' && k > 0 && b[k - 1] == '/')) b[k++] = a[i];
    b[k] = '\0';
    /* 5. drop level zero when there is more than one level */
    const char *s = b, *slash = strchr(b, '/');
    if (slash) s = slash + 1;
    /* 6. transposition kind and last-component renames */
    const char *lastc = strrchr(s, '/');
    lastc = lastc ? lastc + 1 : s;
    size_t stem = (size_t)(lastc - s);
    *kernel_like = strcmp(lastc, "kernel") == 0 || strcmp(lastc, "pointwise_kernel") == 0 ||
                   strcmp(lastc, "depthwise_kernel") == 0;
    for (const char *p = s; *p;) {      /* "emb_projs"/"out_projs" components: transposed too */
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if ((len == 9 && (!strncmp(p, "emb_projs", 9) || !strncmp(p, "out_projs", 9))))
            *kernel_like = true;
        p += len + (e ? 1 : 0);
        if (!e) break;
    }
    const char *repl = lastc;
    if (!strcmp(lastc, "kernel") || !strcmp(lastc, "embeddings") || !strcmp(lastc, "gamma")) repl = "weight";
    else if (!strcmp(lastc, "beta")) repl = "bias";
    else if (!strcmp(lastc, "pointwise_kernel")) repl = "pointwise.weight";
    else if (!strcmp(lastc, "depthwise_kernel")) repl = "depthwise.weight";
    out = al_malloc(stem + strlen(repl) + 1);
    if (!out) goto done;
    memcpy(out, s, stem);
    strcpy(out + stem, repl);
    for (char *p = out; *p; p++) if (*p == '/') *p = '.';     /* 7. "/" -> "." */
done:
    al_free(a);
    al_free(b);
    return out;
}

/* Keras fallback name: ":0" stripped, "/" -> ".". */
static char *keras_name(const char *tf)
{
    char *o = al_strdup(tf);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; o[i];) {
        if (o[i] == ':' && o[i + 1] == '0') { i += 2; continue; }
        o[k++] = o[i] == '/' ? '.' : o[i];
        i++;
    }
    o[k] = '\0';
    return o;
}

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Any duplicate among names [0, n)? */
static al_status has_duplicates(char **names, size_t n, bool *dup, al_error *err)
{
    *dup = false;
    if (n < 2) return AL_OK;
    char **s = al_malloc(n * sizeof *s);
    if (!s) return al_errorf(err, AL_ERR_NOMEM, "out of memory checking tensor names");
    memcpy(s, names, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_strp);
    for (size_t i = 1; i < n && !*dup; i++) *dup = strcmp(s[i - 1], s[i]) == 0;
    al_free(s);
    return AL_OK;
}

static al_status h5_open_legacy(h5_reader *h, const char *root, al_bt_list *list, al_error *err)
{
    hid_t rootg = -1, g = -1;
    char **layers = NULL, **wn = NULL, **tfn = NULL;
    size_t nlayers = 0, nwn = 0, ntf = 0, captf = 0;
    size_t first = list->n;
    al_status st = AL_OK;
    char d[160];
    if ((rootg = H5Gopen2(h->file, root, H5P_DEFAULT)) < 0) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: cannot open group '%s': %s", h->path, root, al_h5_why(d, sizeof d));
        goto done;
    }
    if ((st = h5_read_chunked_strs(rootg, "layer_names", h->path, &layers, &nlayers, err)) != AL_OK) {
        if (st == AL_ERR_NOTFOUND) st = al_errorf(err, AL_ERR_FORMAT, "%s: no layer_names attribute", h->path);
        goto done;
    }
    for (size_t li = 0; li < nlayers; li++) {
        h5_close_id(g);
        if ((g = H5Gopen2(rootg, layers[li], H5P_DEFAULT)) < 0) {
            st = al_errorf(err, AL_ERR_FORMAT, "%s: layer '%s' listed in layer_names has no group: %s",
                           h->path, layers[li], al_h5_why(d, sizeof d));
            goto done;
        }
        al_h5_strv_free(wn, nwn);
        wn = NULL;
        nwn = 0;
        st = h5_read_chunked_strs(g, "weight_names", h->path, &wn, &nwn, err);
        if (st == AL_ERR_NOTFOUND) { st = AL_OK; continue; }   /* Keras: no attr = no weights */
        if (st != AL_OK) goto done;
        for (size_t wi = 0; wi < nwn; wi++) {
            al_bt_tensor t = {0};
            int snd = 0;
            bool kern = false;
            char *prefix = str_cat3(strcmp(root, "/") ? root : "", "/", layers[li]);
            t.locator = prefix ? str_cat3(prefix, "/", wn[wi]) : NULL;
            al_free(prefix);
            t.name = tf_to_pt_name(wn[wi], &kern);
            if (ntf == captf) {
                size_t cap = captf ? captf * 2 : 64;
                char **v = al_realloc(tfn, cap * sizeof *v);
                if (v) tfn = v, captf = cap;
            }
            char *raw = ntf < captf ? al_strdup(wn[wi]) : NULL;
            if (!t.locator || !t.name || !raw) {
                al_free(t.locator);
                al_free(t.name);
                al_free(raw);
                st = al_errorf(err, AL_ERR_NOMEM, "%s: out of memory listing tensors", h->path);
                goto done;
            }
            tfn[ntf++] = raw;
            if ((st = h5_describe(h->file, h->path, t.locator, false, &t, &snd, err)) != AL_OK) {
                al_free(t.locator);
                al_free(t.name);
                goto done;
            }
            if (kern && t.ndim == 2) {
                int64_t s0 = t.shape[0];
                t.shape[0] = t.shape[1];
                t.shape[1] = s0;
                t.transpose = true;
            } else if (kern && t.ndim > 2) {
                st = al_errorf(err, AL_ERR_UNSUPPORTED, "%s: dataset '%s': rank-%d kernel (convolution) "
                               "transposes are not supported", h->path, t.locator, t.ndim);
                al_free(t.locator);
                al_free(t.name);
                goto done;
            }
            if ((st = al_bt_push(list, &t, err)) != AL_OK) {
                al_free(t.locator);
                al_free(t.name);
                goto done;
            }
        }
    }
    /* A plain Keras model (not transformers) maps every Dense to "weight"/"bias": keep
     * the Keras names and stored layout instead. */
    char **names = al_malloc((list->n - first + 1) * sizeof *names);
    if (!names) { st = al_errorf(err, AL_ERR_NOMEM, "%s: out of memory", h->path); goto done; }
    for (size_t i = first; i < list->n; i++) names[i - first] = list->v[i].name;
    bool dup = false;
    st = has_duplicates(names, list->n - first, &dup, err);
    al_free(names);
    if (st != AL_OK) goto done;
    for (size_t i = first; dup && i < list->n; i++) {
        al_bt_tensor *t = &list->v[i];
        char *kn = keras_name(tfn[i - first]);
        if (!kn) { st = al_errorf(err, AL_ERR_NOMEM, "%s: out of memory", h->path); goto done; }
        al_free(t->name);
        t->name = kn;
        if (t->transpose) {
            int64_t s0 = t->shape[0];
            t->shape[0] = t->shape[1];
            t->shape[1] = s0;
            t->transpose = false;
        }
    }
done:
    al_h5_strv_free(tfn, ntf);
    al_h5_strv_free(wn, nwn);
    al_h5_strv_free(layers, nlayers);
    h5_close_id(g);
    h5_close_id(rootg);
    return st;
}

/* Root scalar string attributes become metadata (backend, keras_version, alloy_format). */
typedef struct { h5_reader *h; al_bt_list *list; al_error *err; al_status st; } meta_ctx;

static herr_t meta_cb(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
    (void)info;
    meta_ctx *c = data;
    if (strncmp(name, "layer_names", 11) == 0 || strcmp(name, "tensor_names") == 0) return 0;
    char **v = NULL;
    size_t n = 0;
    al_error tmp;
    if (al_h5_get_strs(loc, name, c->h->path, &v, &n, &tmp) != AL_OK) return 0;   /* not a string */
    if (n == 1) c->st = al_bt_meta_push(c->list, name, v[0], c->err);
    al_h5_strv_free(v, n);
    return c->st == AL_OK ? 0 : -1;
}

static void h5_reader_free(h5_reader *h)
{
    if (!h) return;
    h5_close_id(h->file);
    al_free(h->path);
    al_free(h);
}

/* Open and list the file; the HDF5 lock is held. */
static al_status h5_open_locked(const char *path, h5_reader **out, al_bt_list *list, al_error *err)
{
    h5_reader *h = NULL;
    hid_t fapl = -1;
    char **fmt = NULL;
    size_t nfmt = 0;
    al_status st = AL_OK;
    char d[160];
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: not an HDF5 file", path);
        H5Eclear2(H5E_DEFAULT);
        goto done;
    }
    h = al_calloc(1, sizeof *h);
    if (!h || !(h->path = al_strdup(path))) { st = al_errorf(err, AL_ERR_NOMEM, "%s: out of memory", path); goto done; }
    h->file = -1;
    if ((fapl = H5Pcreate(H5P_FILE_ACCESS)) < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 ||
        (h->file = H5Fopen(path, H5F_ACC_RDONLY, fapl)) < 0) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: cannot open HDF5 file (truncated or corrupt?): %s",
                       path, al_h5_why(d, sizeof d));
        goto done;
    }

    st = al_h5_get_strs(h->file, "alloy_format", path, &fmt, &nfmt, err);
    if (st == AL_OK) {
        if (nfmt != 1 || strcmp(fmt[0], H5_FORMAT_TAG) != 0) {
            st = al_errorf(err, AL_ERR_UNSUPPORTED, "%s: alloy_format '%s' is not '%s'", path,
                           nfmt ? fmt[0] : "", H5_FORMAT_TAG);
            goto done;
        }
        st = h5_open_native(h, list, err);
    } else if (st == AL_ERR_NOTFOUND) {
        htri_t ln = H5Aexists(h->file, "layer_names"), ln0 = H5Aexists(h->file, "layer_names0");
        htri_t mw = H5Lexists(h->file, "model_weights", H5P_DEFAULT);
        if (ln > 0 || ln0 > 0) {
            st = h5_open_legacy(h, "/", list, err);
        } else if (mw > 0) {
            st = h5_open_legacy(h, "/model_weights", list, err);
        } else {
            st = al_errorf(err, AL_ERR_FORMAT, "%s: HDF5 file in no known layout (no 'alloy_format', "
                           "no Keras 'layer_names', no /model_weights)", path);
        }
    }
    if (st != AL_OK) goto done;
    meta_ctx mc = {h, list, err, AL_OK};
    hsize_t idx = 0;
    if (H5Aiterate2(h->file, H5_INDEX_NAME, H5_ITER_INC, &idx, meta_cb, &mc) < 0)
        st = mc.st != AL_OK ? mc.st
                            : al_errorf(err, AL_ERR_FORMAT, "%s: cannot list root attributes: %s", path,
                                        al_h5_why(d, sizeof d));
done:
    al_h5_strv_free(fmt, nfmt);
    h5_close_id(fapl);
    if (st != AL_OK) { h5_reader_free(h); h = NULL; }
    *out = h;
    return st;
}

typedef struct { const char *path; al_bt_list *list; } probe_ctx;

static void h5_open_probe(void *ctx)
{
    probe_ctx *p = ctx;
    h5_reader *h;
    al_error e;
    h5_open_locked(p->path, &h, p->list, &e);
}

static al_status h5_open(const char *path, void **handle, al_bt_list *list, al_error *err)
{
    *handle = NULL;
    /* Distinguish "cannot open" (I/O) from "not HDF5" (format) before HDF5 does. */
    int fd = open(path, O_RDONLY);
    if (fd < 0) return al_errorf(err, AL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    close(fd);

    h5_reader *h = NULL;
    probe_ctx pc = {path, list};
    al_h5_enter();
    al_status st = al_h5_probe(path, h5_open_probe, &pc, err);
    if (st == AL_OK) st = h5_open_locked(path, &h, list, err);
    al_h5_leave();
    *handle = h;
    return st;
}

static const void *h5_map(void *handle, const al_bt_tensor *t)
{
    (void)handle;
    (void)t;
    return NULL;
}

/* Transposed kernel: canonical rows [r0, r0+nr) are stored columns. Read blocks of
 * stored rows (bounded scratch) and scatter them into dst's columns. */
static al_status read_transposed(h5_reader *h, const al_bt_tensor *t, hid_t dset, hid_t mtype,
                                 hid_t fspace, int64_t r0, int64_t nr, void *dst, al_error *err)
{
    const int64_t in = t->shape[1];                 /* stored rows */
    const size_t es = al_dtype_bits(t->dtype) / 8;
    const size_t rowb = (size_t)nr * es;            /* bytes per stored-row slice */
    int64_t blk = (int64_t)(H5_XPOSE_TMP / (rowb ? rowb : 1));
    if (blk < 1) blk = 1;
    if (blk > in) blk = in;
    unsigned char *tmp = al_malloc((size_t)blk * rowb);
    char d[160];
    if (!tmp) return al_errorf(err, AL_ERR_NOMEM, "%s: out of memory reading '%s'", h->path, t->name);
    al_status st = AL_OK;
    unsigned char *out = dst;
    for (int64_t i0 = 0; i0 < in; i0 += blk) {
        int64_t bi = in - i0 < blk ? in - i0 : blk;
        hsize_t start[2] = {(hsize_t)i0, (hsize_t)r0}, count[2] = {(hsize_t)bi, (hsize_t)nr};
        hsize_t mn = (hsize_t)(bi * nr);
        hid_t mspace = H5Screate_simple(1, &mn, NULL);
        herr_t rc = mspace < 0 ? -1 : H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL);
        if (rc >= 0) rc = H5Dread(dset, mtype, mspace, fspace, H5P_DEFAULT, tmp);
        h5_close_id(mspace);
        if (rc < 0) {
            st = al_errorf(err, AL_ERR_IO, "%s: reading dataset '%s' (tensor '%s') failed: %s", h->path,
                           t->locator, t->name, al_h5_why(d, sizeof d));
            break;
        }
        /* tmp[ii][j] = stored[i0+ii][r0+j] = canonical[r0+j][i0+ii] */
        for (int64_t ii = 0; ii < bi; ii++)
            for (int64_t j = 0; j < nr; j++)
                memcpy(out + ((size_t)j * (size_t)in + (size_t)(i0 + ii)) * es,
                       tmp + ((size_t)ii * (size_t)nr + (size_t)j) * es, es);
    }
    al_free(tmp);
    return st;
}

static al_status h5_read_rows(void *handle, const al_bt_tensor *t, int64_t row0, int64_t nrows,
                              void *dst, al_error *err)
{
    h5_reader *h = handle;
    int64_t rows = t->ndim == 0 ? 1 : t->shape[0];
    if (row0 < 0 || nrows < 0 || row0 > rows || nrows > rows - row0)
        return al_errorf(err, AL_ERR_USAGE, "%s: tensor '%s': rows [%lld, +%lld) out of range (%lld rows)",
                         h->path, t->name, (long long)row0, (long long)nrows, (long long)rows);
    int64_t rown = al_shape_row_numel(t->ndim, t->shape);
    if (nrows == 0 || rown == 0) return AL_OK;

    hid_t dset = -1, ftype = -1, mtype = -1, fspace = -1, mspace = -1;
    al_status st = AL_OK;
    char d[160];
    al_h5_enter();
    if ((dset = H5Dopen2(h->file, t->locator, H5P_DEFAULT)) < 0 || (ftype = H5Dget_type(dset)) < 0 ||
        (mtype = h5_mem_type(ftype)) < 0 || (fspace = H5Dget_space(dset)) < 0) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: cannot open dataset '%s' (tensor '%s'): %s", h->path,
                       t->locator, t->name, al_h5_why(d, sizeof d));
        goto done;
    }
    if (H5Tget_size(mtype) * 8 != al_dtype_bits(t->dtype)) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: dataset '%s' changed type since open", h->path, t->locator);
        goto done;
    }
    if (t->ndim == 0) {
        if (H5Dread(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
            st = al_errorf(err, AL_ERR_IO, "%s: reading dataset '%s' (tensor '%s') failed: %s", h->path,
                           t->locator, t->name, al_h5_why(d, sizeof d));
    } else if (t->transpose) {
        st = read_transposed(h, t, dset, mtype, fspace, row0, nrows, dst, err);
    } else {
        hsize_t start[AL_MAX_DIMS] = {0}, count[AL_MAX_DIMS];
        for (int i = 0; i < t->ndim; i++) count[i] = (hsize_t)t->shape[i];
        start[0] = (hsize_t)row0;
        count[0] = (hsize_t)nrows;
        hsize_t mn = (hsize_t)nrows * (hsize_t)rown;
        if ((mspace = H5Screate_simple(1, &mn, NULL)) < 0 ||
            H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
            H5Dread(dset, mtype, mspace, fspace, H5P_DEFAULT, dst) < 0)
            st = al_errorf(err, AL_ERR_IO, "%s: reading dataset '%s' (tensor '%s') failed: %s", h->path,
                           t->locator, t->name, al_h5_why(d, sizeof d));
    }
done:
    h5_close_id(mspace);
    h5_close_id(fspace);
    h5_close_id(mtype);
    h5_close_id(ftype);
    h5_close_id(dset);
    al_h5_leave();
    return st;
}

static void h5_close(void *handle)
{
    if (!handle) return;
    al_h5_enter();
    h5_reader_free(handle);
    al_h5_leave();
}

const al_backend_ops al_hdf5_ops = {
    .name = "hdf5",
    .open = h5_open,
    .map = h5_map,
    .read_rows = h5_read_rows,
    .close = h5_close,
};

/* ---- writer ------------------------------------------------------------------------ */

typedef struct {
    char *name, *loc;
    al_dtype dtype;
    int ndim;
    int64_t shape[AL_MAX_DIMS];
    uint64_t nbytes;
} h5_wt;

typedef struct {
    hid_t file;
    char *path;
    h5_wt *t;
    size_t n;
    size_t cur;             /* tensor receiving data */
    uint64_t off;           /* bytes of it received */
    hid_t dset, mtype;      /* open while the current tensor is being written */
    bool failed;
} h5_writer;

/* Chunk shape of about H5_CHUNK_TARGET bytes: whole trailing dims, cut along dim 0
 * first, then along later dims when a single row is larger than the target. */
static void chunk_shape(const h5_wt *t, hsize_t *chunk)
{
    uint64_t es = al_dtype_bits(t->dtype) / 8;
    for (int i = 0; i < t->ndim; i++) chunk[i] = (hsize_t)t->shape[i];
    for (int d = 0; d < t->ndim; d++) {
        uint64_t inner = es;           /* bytes of one index step along dim d */
        for (int i = d + 1; i < t->ndim; i++) inner *= chunk[i];
        if (inner * chunk[d] <= H5_CHUNK_TARGET) break;
        uint64_t c = inner >= H5_CHUNK_TARGET ? 1 : H5_CHUNK_TARGET / inner;
        chunk[d] = c < chunk[d] ? c : chunk[d];
        if (inner <= H5_CHUNK_TARGET) break;
    }
}

static al_status h5_create_dataset(h5_writer *w, hid_t grp, const h5_wt *t, int compress, al_error *err)
{
    hid_t ty = -1, space = -1, dcpl = -1, dset = -1;
    al_status st = AL_OK;
    char d[160];
    hsize_t dims[AL_MAX_DIMS], chunk[AL_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) dims[i] = (hsize_t)t->shape[i];
    const char *esc = t->loc + strlen("/tensors/");
    if ((ty = h5_type_for(t->dtype)) < 0) {
        st = al_errorf(err, AL_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s cannot be stored in HDF5",
                       w->path, t->name, al_dtype_name(t->dtype));
        goto done;
    }
    if ((space = t->ndim ? H5Screate_simple(t->ndim, dims, NULL) : H5Screate(H5S_SCALAR)) < 0 ||
        (dcpl = H5Pcreate(H5P_DATASET_CREATE)) < 0)
        goto h5fail;
    if (compress > 0 && t->ndim > 0 && t->nbytes > 0) {
        chunk_shape(t, chunk);
        if (H5Pset_chunk(dcpl, t->ndim, chunk) < 0 || H5Pset_shuffle(dcpl) < 0 ||
            H5Pset_deflate(dcpl, (unsigned)compress) < 0)
            goto h5fail;
    }
    if ((dset = H5Dcreate2(grp, esc, ty, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0) {
        st = al_errorf(err, AL_ERR_IO, "%s: cannot create dataset for tensor '%s' (duplicate name?): %s",
                       w->path, t->name, al_h5_why(d, sizeof d));
        goto done;
    }
    const char *nm = t->name, *dn = al_dtype_name(t->dtype);
    if ((st = h5_write_strs(dset, "name", &nm, 1, true, w->path, err)) != AL_OK) goto done;
    st = h5_write_strs(dset, "dtype", &dn, 1, true, w->path, err);
    goto done;
h5fail:
    st = al_errorf(err, AL_ERR_IO, "%s: cannot set up dataset for tensor '%s': %s", w->path, t->name,
                   al_h5_why(d, sizeof d));
done:
    h5_close_id(dset);
    h5_close_id(dcpl);
    h5_close_id(space);
    h5_close_id(ty);
    return st;
}

static void h5_writer_free(h5_writer *w)
{
    if (!w) return;
    h5_close_id(w->mtype);
    h5_close_id(w->dset);
    h5_close_id(w->file);
    for (size_t i = 0; i < w->n; i++) { al_free(w->t[i].name); al_free(w->t[i].loc); }
    al_free(w->t);
    al_free(w->path);
    al_free(w);
}

static al_status h5w_create(const char *path, const al_wt_tensor *t, size_t n, int compress,
                            void **handle, al_error *err)
{
    h5_writer *w = NULL;
    hid_t fapl = -1, gcpl = -1, grp = -1;
    const char **names = NULL;
    al_status st = AL_OK;
    char d[160];
    *handle = NULL;
    if (compress < 0 || compress > 9)
        return al_errorf(err, AL_ERR_USAGE, "%s: HDF5 compression level %d is not in 0..9", path, compress);
    if (access(path, F_OK) == 0)
        return al_errorf(err, AL_ERR_IO, "%s: already exists", path);

    w = al_calloc(1, sizeof *w);
    if (!w) return al_errorf(err, AL_ERR_NOMEM, "%s: out of memory", path);
    w->file = w->dset = w->mtype = -1;
    w->t = n ? al_calloc(n, sizeof *w->t) : NULL;
    names = al_calloc(n + 1, sizeof *names);
    if ((n && !w->t) || !names || !(w->path = al_strdup(path))) {
        al_free(names);
        h5_writer_free(w);
        return al_errorf(err, AL_ERR_NOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; i < n; i++, w->n++) {
        h5_wt *o = &w->t[i];
        int64_t numel;
        uint64_t nb;
        if (t[i].ndim < 0 || t[i].ndim > AL_MAX_DIMS || !t[i].name || !t[i].name[0] ||
            !al_shape_numel(t[i].ndim, t[i].shape, &numel) || !al_dtype_nbytes(t[i].dtype, numel, &nb) ||
            nb != t[i].nbytes) {
            st = al_errorf(err, AL_ERR_USAGE, "%s: tensor %zu ('%s'): bad name, shape or byte size",
                           path, i, t[i].name ? t[i].name : "");
            break;
        }
        if (al_dtype_bits(t[i].dtype) % 8) {
            st = al_errorf(err, AL_ERR_UNSUPPORTED, "%s: tensor '%s': sub-byte dtype %s cannot be "
                           "stored in HDF5", path, t[i].name, al_dtype_name(t[i].dtype));
            break;
        }
        char *esc = h5_escape(t[i].name);
        o->name = al_strdup(t[i].name);
        o->loc = esc ? str_cat3("/tensors/", esc, "") : NULL;
        al_free(esc);
        if (!o->name || !o->loc) { st = al_errorf(err, AL_ERR_NOMEM, "%s: out of memory", path); w->n++; break; }
        o->dtype = t[i].dtype;
        o->ndim = t[i].ndim;
        for (int k = 0; k < o->ndim; k++) o->shape[k] = t[i].shape[k];
        o->nbytes = nb;
        names[i] = o->name;
    }
    if (st != AL_OK) { al_free(names); h5_writer_free(w); return st; }

    al_h5_enter();
    /* 1.8-format objects: dense attribute storage lifts the 64 KiB limit on tensor_names,
     * and creation-order indexes need them anyway. */
    if ((fapl = H5Pcreate(H5P_FILE_ACCESS)) < 0 ||
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST) < 0 ||
        H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
        st = al_errorf(err, AL_ERR_INTERNAL, "%s: HDF5 property setup failed: %s", path, al_h5_why(d, sizeof d));
        goto done;
    }
    if ((w->file = H5Fcreate(path, H5F_ACC_EXCL, H5P_DEFAULT, fapl)) < 0) {
        st = al_errorf(err, AL_ERR_IO, "%s: cannot create HDF5 file: %s", path, al_h5_why(d, sizeof d));
        goto done;
    }
    const char *tag = H5_FORMAT_TAG;
    if ((st = h5_write_strs(w->file, "alloy_format", &tag, 1, true, path, err)) != AL_OK ||
        (st = h5_write_strs(w->file, "tensor_names", names, n, false, path, err)) != AL_OK)
        goto done;
    if ((gcpl = H5Pcreate(H5P_GROUP_CREATE)) < 0 ||
        H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0 ||
        (grp = H5Gcreate2(w->file, "tensors", H5P_DEFAULT, gcpl, H5P_DEFAULT)) < 0) {
        st = al_errorf(err, AL_ERR_IO, "%s: cannot create group /tensors: %s", path, al_h5_why(d, sizeof d));
        goto done;
    }
    for (size_t i = 0; i < n && st == AL_OK; i++)
        st = h5_create_dataset(w, grp, &w->t[i], compress, err);
done:
    h5_close_id(grp);
    h5_close_id(gcpl);
    h5_close_id(fapl);
    if (st != AL_OK) { h5_writer_free(w); w = NULL; }
    al_h5_leave();
    al_free(names);
    *handle = w;
    return st;
}

/* Write flat elements [a, b) of the current tensor from src. A flat range of a C-order
 * array is a few boxes: at each step take the outermost dim whose stride divides the
 * position, as many whole steps along it as fit; at most 2*ndim-1 boxes. */
static al_status write_elems(h5_writer *w, const h5_wt *t, int64_t a, int64_t b, const unsigned char *src,
                             al_error *err)
{
    char d[160];
    const size_t es = al_dtype_bits(t->dtype) / 8;
    if (t->ndim == 0) {
        if (H5Dwrite(w->dset, w->mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, src) < 0) goto fail;
        return AL_OK;
    }
    int64_t stride[AL_MAX_DIMS];
    stride[t->ndim - 1] = 1;
    for (int i = t->ndim - 2; i >= 0; i--) stride[i] = stride[i + 1] * t->shape[i + 1];
    hid_t fspace = H5Dget_space(w->dset);
    if (fspace < 0) goto fail;
    while (a < b) {
        hsize_t start[AL_MAX_DIMS], count[AL_MAX_DIMS];
        int64_t n = 0;
        int dd = 0;
        for (int dim = 0; dim < t->ndim; dim++) {
            if (a % stride[dim]) continue;
            int64_t idx = (a / stride[dim]) % t->shape[dim];
            n = (b - a) / stride[dim];
            if (n > t->shape[dim] - idx) n = t->shape[dim] - idx;
            if (n == 0) continue;
            dd = dim;
            break;
        }
        for (int k = 0; k < t->ndim; k++) {
            if (k < dd) { start[k] = (hsize_t)((a / stride[k]) % t->shape[k]); count[k] = 1; }
            else if (k == dd) { start[k] = (hsize_t)((a / stride[k]) % t->shape[k]); count[k] = (hsize_t)n; }
            else { start[k] = 0; count[k] = (hsize_t)t->shape[k]; }
        }
        hsize_t mn = (hsize_t)(n * stride[dd]);
        hid_t mspace = H5Screate_simple(1, &mn, NULL);
        herr_t rc = mspace < 0 ? -1 : H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL);
        if (rc >= 0) rc = H5Dwrite(w->dset, w->mtype, mspace, fspace, H5P_DEFAULT, src);
        h5_close_id(mspace);
        if (rc < 0) { H5Sclose(fspace); goto fail; }
        src += (size_t)mn * es;
        a += (int64_t)mn;
    }
    H5Sclose(fspace);
    return AL_OK;
fail:
    return al_errorf(err, AL_ERR_IO, "%s: writing tensor '%s' (dataset '%s') failed (disk full?): %s",
                     w->path, t->name, t->loc, al_h5_why(d, sizeof d));
}

static void close_current(h5_writer *w)
{
    h5_close_id(w->mtype);
    h5_close_id(w->dset);
    w->mtype = w->dset = -1;
}

static al_status h5w_write(void *handle, const void *data, uint64_t nbytes, al_error *err)
{
    h5_writer *w = handle;
    const unsigned char *src = data;
    al_status st = AL_OK;
    char d[160];
    if (w->failed) return al_errorf(err, AL_ERR_USAGE, "%s: write after a failed write", w->path);
    al_h5_enter();
    while (nbytes > 0 && st == AL_OK) {
        while (w->cur < w->n && w->off == w->t[w->cur].nbytes) { close_current(w); w->cur++; w->off = 0; }
        if (w->cur >= w->n) {
            st = al_errorf(err, AL_ERR_USAGE, "%s: %llu bytes written past the last tensor", w->path,
                           (unsigned long long)nbytes);
            break;
        }
        const h5_wt *t = &w->t[w->cur];
        const uint64_t es = al_dtype_bits(t->dtype) / 8;
        uint64_t take = t->nbytes - w->off < nbytes ? t->nbytes - w->off : nbytes;
        if (take % es) {
            st = al_errorf(err, AL_ERR_USAGE, "%s: tensor '%s': write splits an element", w->path, t->name);
            break;
        }
        if (w->dset < 0) {
            /* A chunk cache larger than one chunk keeps a partly written chunk in memory
             * until it is complete, so split writes never recompress a chunk. */
            hid_t ft = -1, dapl = H5Pcreate(H5P_DATASET_ACCESS);
            if (dapl < 0 || H5Pset_chunk_cache(dapl, 521, H5_CHUNK_CACHE, 1.0) < 0 ||
                (w->dset = H5Dopen2(w->file, t->loc, dapl)) < 0 || (ft = H5Dget_type(w->dset)) < 0 ||
                (w->mtype = h5_mem_type(ft)) < 0) {
                h5_close_id(dapl);
                h5_close_id(ft);
                st = al_errorf(err, AL_ERR_IO, "%s: cannot open dataset '%s': %s", w->path, t->loc,
                               al_h5_why(d, sizeof d));
                break;
            }
            h5_close_id(dapl);
            h5_close_id(ft);
        }
        st = write_elems(w, t, (int64_t)(w->off / es), (int64_t)((w->off + take) / es), src, err);
        src += take;
        nbytes -= take;
        w->off += take;
        if (w->off == t->nbytes) { close_current(w); w->cur++; w->off = 0; }
    }
    if (st != AL_OK) w->failed = true;
    al_h5_leave();
    return st;
}

static al_status h5w_finish(void *handle, al_error *err)
{
    h5_writer *w = handle;
    al_status st = AL_OK;
    char d[160];
    al_h5_enter();
    while (w->cur < w->n && w->off == w->t[w->cur].nbytes) { close_current(w); w->cur++; w->off = 0; }
    if (w->failed) {
        st = al_errorf(err, AL_ERR_USAGE, "%s: finish after a failed write", w->path);
    } else if (w->cur < w->n) {
        st = al_errorf(err, AL_ERR_USAGE, "%s: finish with tensor '%s' incomplete (%llu of %llu bytes)",
                       w->path, w->t[w->cur].name, (unsigned long long)w->off,
                       (unsigned long long)w->t[w->cur].nbytes);
    } else {
        close_current(w);
        herr_t rc = H5Fflush(w->file, H5F_SCOPE_GLOBAL);
        if (H5Fclose(w->file) < 0) rc = -1;
        w->file = -1;
        if (rc < 0) {
            st = al_errorf(err, AL_ERR_IO, "%s: flushing HDF5 file failed (disk full?): %s", w->path,
                           al_h5_why(d, sizeof d));
        } else {
            /* HDF5 never fsyncs; reopen the finished file to make it durable. */
            int fd = open(w->path, O_RDONLY);
            if (fd < 0 || fsync(fd) < 0)
                st = al_errorf(err, AL_ERR_IO, "%s: fsync failed: %s", w->path, strerror(errno));
            if (fd >= 0) close(fd);
        }
    }
    al_h5_leave();
    return st;
}

static void h5w_close(void *handle)
{
    if (!handle) return;
    al_h5_enter();
    h5_writer_free(handle);
    al_h5_leave();
}

const al_writer_ops al_hdf5_writer_ops = {
    .name = "hdf5",
    .create = h5w_create,
    .write = h5w_write,
    .finish = h5w_finish,
    .close = h5w_close,
};
