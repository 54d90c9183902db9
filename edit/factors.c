/* edit/factors.c: edit factors in HDF5 (see factors.h). */
#include "factors.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../core/alloc.h"
#include "../io/h5_internal.h"

#define FACTORS_FORMAT "alloy-edit-factors-1"
#define FACTORS_MAX 100000              /* updates per file */
#define FACTORS_MAX_DIM (1 << 20)       /* rows / cols of a weight */
#define FACTORS_MAX_RANK 100000

static inline double elem(const al_update *u, const void *p, size_t k)
{
    return u->f64 ? ((const double *)p)[k] : (double)((const float *)p)[k];
}

void al_update_apply(float *W, const al_update *u, int sign)
{
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < u->rows; i++) {
        float *wi = W + i * u->cols;
        for (int64_t j = 0; j < u->cols; j++) {
            double s = 0.0;
            for (int r = 0; r < u->rank; r++)
                s += elem(u, u->left, (size_t)r * u->rows + i) * elem(u, u->right, (size_t)r * u->cols + j);
            float d = (float)s;        /* rounded once; the product of two floats is exact */
            wi[j] = sign > 0 ? wi[j] + d : wi[j] - d;
        }
    }
}

static bool put_matrix(hid_t g, const char *name, const al_update *u, const void *data, int64_t cols)
{
    hsize_t dims[2] = {(hsize_t)u->rank, (hsize_t)cols};
    hid_t sp = H5Screate_simple(2, dims, NULL), ds = -1;
    bool ok = sp >= 0 &&
              (ds = H5Dcreate2(g, name, u->f64 ? H5T_IEEE_F64LE : H5T_IEEE_F32LE, sp, H5P_DEFAULT,
                               H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
              H5Dwrite(ds, u->f64 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL,
                       H5P_DEFAULT, data) >= 0;
    if (ds >= 0) H5Dclose(ds);
    if (sp >= 0) H5Sclose(sp);
    return ok;
}

al_status al_factors_save(const char *path, const char *model, const al_update *u, size_t n,
                          al_error *err)
{
    al_status st = AL_OK;
    char d[160], tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return al_errorf(err, AL_ERR_USAGE, "%s: path too long", path);
    hid_t f = -1;
    al_h5_enter();
    if ((f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
        st = al_errorf(err, AL_ERR_IO, "%s: cannot create: %s", tmp, al_h5_why(d, sizeof d));
        goto done;
    }
    bool ok = al_h5_put_str(f, "alloy_format", FACTORS_FORMAT) &&
              al_h5_put_str(f, "model", model ? model : "") &&
              al_h5_put_str(f, "method", n ? u[0].method : "");
    for (size_t i = 0; ok && i < n; i++) {
        char gn[32];
        snprintf(gn, sizeof gn, "update_%04zu", i);
        hid_t g = H5Gcreate2(f, gn, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        ok = g >= 0 && al_h5_put_str(g, "tensor", u[i].tensor) && al_h5_put_str(g, "method", u[i].method) &&
             al_h5_put_i64(g, "layer", u[i].layer) && al_h5_put_i64(g, "edit", u[i].edit) &&
             put_matrix(g, "left", &u[i], u[i].left, u[i].rows) &&
             put_matrix(g, "right", &u[i], u[i].right, u[i].cols);
        if (g >= 0) H5Gclose(g);
    }
    if (!ok) { st = al_errorf(err, AL_ERR_IO, "%s: cannot write edit factors: %s", tmp, al_h5_why(d, sizeof d)); goto done; }
    st = al_h5_commit(f, tmp, path, err);
    f = -1;
done:
    if (f >= 0) H5Fclose(f);
    al_h5_leave();
    if (st != AL_OK) unlink(tmp);
    return st;
}

void al_factors_free(al_update *u, size_t n)
{
    if (!u) return;
    for (size_t i = 0; i < n; i++) {
        al_free(u[i].left);
        al_free(u[i].right);
    }
    al_free(u);
}

/* Dataset `name` of group g: [rank, cols] float; sets rank (first call) or checks it. */
static al_status get_matrix(hid_t g, const char *name, const char *path, const char *gn, al_update *u,
                            int64_t *cols, void **data, al_error *err)
{
    al_status st = AL_OK;
    hid_t ds = H5Dopen2(g, name, H5P_DEFAULT), sp = -1, ty = -1;
    hsize_t dims[2] = {0, 0};
    if (ds < 0 || (sp = H5Dget_space(ds)) < 0 || H5Sget_simple_extent_ndims(sp) != 2 ||
        H5Sget_simple_extent_dims(sp, dims, NULL) != 2 || (ty = H5Dget_type(ds)) < 0 ||
        H5Tget_class(ty) != H5T_FLOAT || dims[0] < 1 || dims[0] > FACTORS_MAX_RANK || dims[1] < 1 ||
        dims[1] > FACTORS_MAX_DIM) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: /%s/%s missing or not a [rank, n] float matrix", path, gn, name);
        goto done;
    }
    bool f64 = H5Tget_size(ty) == 8;
    if (*data == NULL && !strcmp(name, "left")) {
        u->rank = (int)dims[0];
        u->f64 = f64;
    } else if ((int)dims[0] != u->rank || f64 != u->f64) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: /%s: left and right differ in rank or type", path, gn);
        goto done;
    }
    *cols = (int64_t)dims[1];
    size_t bytes = (size_t)dims[0] * dims[1] * (f64 ? 8 : 4);
    if (!(*data = al_malloc(bytes))) { st = al_errorf(err, AL_ERR_NOMEM, "%s: /%s/%s: out of memory", path, gn, name); goto done; }
    if (H5Dread(ds, f64 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, *data) < 0) {
        char d[160];
        st = al_errorf(err, AL_ERR_FORMAT, "%s: /%s/%s: %s", path, gn, name, al_h5_why(d, sizeof d));
    }
done:
    if (ty >= 0) H5Tclose(ty);
    if (sp >= 0) H5Sclose(sp);
    if (ds >= 0) H5Dclose(ds);
    return st;
}

/* The load itself; the HDF5 lock is held. */
static al_status factors_load_locked(const char *path, al_update **out, size_t *n_out, al_error *err)
{
    *out = NULL;
    *n_out = 0;
    al_status st = AL_OK;
    char d[160], *fmt = NULL, *s = NULL;
    al_update *u = NULL;
    size_t n = 0;
    hid_t f = -1, g = -1;
    if ((f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        st = access(path, R_OK) != 0 ? al_errorf(err, AL_ERR_IO, "%s: %s", path, strerror(errno))
                                     : al_errorf(err, AL_ERR_FORMAT, "%s: not an HDF5 file: %s", path, al_h5_why(d, sizeof d));
        goto done;
    }
    if ((st = al_h5_get_str(f, "alloy_format", path, &fmt, err)) != AL_OK) goto done;
    if (strcmp(fmt, FACTORS_FORMAT)) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: not an alloy edit factors file (alloy_format '%s')", path, fmt);
        goto done;
    }
    for (;;) {
        char gn[32];
        snprintf(gn, sizeof gn, "update_%04zu", n);
        if (H5Lexists(f, gn, H5P_DEFAULT) <= 0) break;
        if (n >= FACTORS_MAX) { st = al_errorf(err, AL_ERR_FORMAT, "%s: more than %d updates", path, FACTORS_MAX); goto done; }
        al_update *grown = al_realloc(u, (n + 1) * sizeof *u);
        if (!grown) { st = al_errorf(err, AL_ERR_NOMEM, "out of memory"); goto done; }
        u = grown;
        al_update *x = &u[n++];      /* counted now: al_factors_free sees it on failure */
        memset(x, 0, sizeof *x);
        int64_t layer = 0, edit = 0;
        if ((g = H5Gopen2(f, gn, H5P_DEFAULT)) < 0) { st = al_errorf(err, AL_ERR_FORMAT, "%s: /%s is not a group", path, gn); goto done; }
        if ((st = al_h5_get_str(g, "tensor", path, &s, err)) != AL_OK) goto done;
        if (!s[0] || strlen(s) >= sizeof x->tensor) { st = al_errorf(err, AL_ERR_FORMAT, "%s: /%s: bad tensor name", path, gn); goto done; }
        snprintf(x->tensor, sizeof x->tensor, "%s", s);
        if ((st = al_h5_get_str(g, "method", path, &s, err)) != AL_OK) goto done;
        snprintf(x->method, sizeof x->method, "%s", s);
        if ((st = al_h5_get_i64(g, "layer", path, &layer, err)) != AL_OK ||
            (st = al_h5_get_i64(g, "edit", path, &edit, err)) != AL_OK)
            goto done;
        x->layer = (int)layer;
        x->edit = (int)edit;
        if ((st = get_matrix(g, "left", path, gn, x, &x->rows, &x->left, err)) != AL_OK ||
            (st = get_matrix(g, "right", path, gn, x, &x->cols, &x->right, err)) != AL_OK)
            goto done;
        H5Gclose(g);
        g = -1;
    }
    *out = u;
    *n_out = n;
    u = NULL;
    n = 0;
done:
    if (g >= 0) H5Gclose(g);
    if (f >= 0) H5Fclose(f);
    al_free(fmt);
    al_free(s);
    al_factors_free(u, n);
    return st;
}

static void factors_probe(void *path)
{
    al_update *u = NULL;
    size_t n = 0;
    al_error e;
    factors_load_locked(path, &u, &n, &e);
}

al_status al_factors_load(const char *path, al_update **out, size_t *n_out, al_error *err)
{
    *out = NULL;
    *n_out = 0;
    al_h5_enter();
    al_status st = al_h5_probe(path, factors_probe, (void *)path, err);
    if (st == AL_OK) st = factors_load_locked(path, out, n_out, err);
    al_h5_leave();
    return st;
}
