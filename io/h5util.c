/* io/h5util.c: shared HDF5 helpers (see h5_internal.h). */
#include "h5_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "../core/alloc.h"

static pthread_mutex_t g_h5_lock = PTHREAD_MUTEX_INITIALIZER;

void al_h5_enter(void)
{
    pthread_mutex_lock(&g_h5_lock);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void al_h5_leave(void)
{
    H5Eclear2(H5E_DEFAULT);
    pthread_mutex_unlock(&g_h5_lock);
}

typedef struct { char *buf; size_t n; bool got; } why_ctx;

static herr_t why_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    (void)n;
    why_ctx *c = data;
    if (!c->got && e->desc && e->desc[0]) {
        snprintf(c->buf, c->n, "%s", e->desc);
        c->got = true;
    }
    return 0;
}

const char *al_h5_why(char *buf, size_t n)
{
    why_ctx c = {buf, n, false};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, why_cb, &c);
    H5Eclear2(H5E_DEFAULT);
    if (!c.got) snprintf(buf, n, "unknown HDF5 error");
    return buf;
}

bool al_h5_put_str(hid_t obj, const char *name, const char *v)
{
    hid_t ty = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR), a = -1;
    bool ok = ty >= 0 && sp >= 0 && H5Tset_size(ty, H5T_VARIABLE) >= 0 &&
              H5Tset_cset(ty, H5T_CSET_UTF8) >= 0 &&
              (a = H5Acreate2(obj, name, ty, sp, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
              H5Awrite(a, ty, &v) >= 0;
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    if (ty >= 0) H5Tclose(ty);
    return ok;
}

bool al_h5_put_i64(hid_t obj, const char *name, int64_t v)
{
    hid_t sp = H5Screate(H5S_SCALAR), a = -1;
    bool ok = sp >= 0 && (a = H5Acreate2(obj, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
              H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0;
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    return ok;
}

static bool set_str(char **dst, const char *src)
{
    char *c = al_strdup(src ? src : "");
    if (!c) return false;
    al_free(*dst);
    *dst = c;
    return true;
}

al_status al_h5_get_str(hid_t obj, const char *name, const char *path, char **dst, al_error *err)
{
    if (H5Aexists(obj, name) <= 0) return set_str(dst, "") ? AL_OK : al_errorf(err, AL_ERR_NOMEM, "out of memory");
    al_status st = AL_OK;
    char d[160];
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT), ty = -1, mt = -1, sp = -1;
    if (a < 0 || (ty = H5Aget_type(a)) < 0 || H5Tget_class(ty) != H5T_STRING ||
        (sp = H5Aget_space(a)) < 0 || H5Sget_simple_extent_npoints(sp) != 1) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: attribute '%s' is not a string", path, name);
        goto done;
    }
    if (H5Tis_variable_str(ty) > 0) {
        char *v = NULL;
        if ((mt = H5Tcopy(H5T_C_S1)) < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 ||
            H5Tset_cset(mt, H5Tget_cset(ty)) < 0 || H5Aread(a, mt, &v) < 0) {
            st = al_errorf(err, AL_ERR_FORMAT, "%s: attribute '%s': %s", path, name, al_h5_why(d, sizeof d));
            goto done;
        }
        bool ok = set_str(dst, v);
        H5free_memory(v);
        if (!ok) st = al_errorf(err, AL_ERR_NOMEM, "out of memory");
    } else {
        size_t n = H5Tget_size(ty);
        char *v = n < (1u << 20) ? al_calloc(n + 1, 1) : NULL;
        if (!v) { st = al_errorf(err, AL_ERR_NOMEM, "%s: attribute '%s' of %zu bytes", path, name, n); goto done; }
        if ((mt = H5Tcopy(H5T_C_S1)) < 0 || H5Tset_size(mt, n) < 0 || H5Tset_cset(mt, H5Tget_cset(ty)) < 0 ||
            H5Aread(a, mt, v) < 0) {
            al_free(v);
            st = al_errorf(err, AL_ERR_FORMAT, "%s: attribute '%s': %s", path, name, al_h5_why(d, sizeof d));
            goto done;
        }
        bool ok = set_str(dst, v);
        al_free(v);
        if (!ok) st = al_errorf(err, AL_ERR_NOMEM, "out of memory");
    }
done:
    if (sp >= 0) H5Sclose(sp);
    if (mt >= 0) H5Tclose(mt);
    if (ty >= 0) H5Tclose(ty);
    if (a >= 0) H5Aclose(a);
    return st;
}

al_status al_h5_get_i64(hid_t obj, const char *name, const char *path, int64_t *v, al_error *err)
{
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT), ty = a >= 0 ? H5Aget_type(a) : -1;
    bool ok = ty >= 0 && H5Tget_class(ty) == H5T_INTEGER && H5Aread(a, H5T_NATIVE_INT64, v) >= 0;
    if (ty >= 0) H5Tclose(ty);
    if (a >= 0) H5Aclose(a);
    return ok ? AL_OK : al_errorf(err, AL_ERR_FORMAT, "%s: attribute '%s' missing or not an integer", path, name);
}

al_status al_h5_commit(hid_t f, const char *tmp, const char *path, al_error *err)
{
    char d[160];
    if (H5Fclose(f) < 0) return al_errorf(err, AL_ERR_IO, "%s: cannot close: %s", tmp, al_h5_why(d, sizeof d));
    if (rename(tmp, path) != 0)
        return al_errorf(err, AL_ERR_IO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    return AL_OK;
}
