/* io/h5util.c: shared HDF5 helpers (see h5_internal.h). */
#include "h5_internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

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

void al_h5_strv_free(char **v, size_t n)
{
    if (!v) return;
    for (size_t i = 0; i < n; i++) al_free(v[i]);
    al_free(v);
}

al_status al_h5_get_strs(hid_t obj, const char *name, const char *path, char ***out, size_t *nout,
                         al_error *err)
{
    hid_t attr = -1, ftype = -1, mtype = -1, space = -1;
    char **res = NULL, *fixed = NULL, **vl = NULL;
    size_t n = 0;
    al_status st = AL_OK;
    char d[160];
    *out = NULL;
    *nout = 0;

    htri_t ex = H5Aexists(obj, name);
    if (ex < 0) return al_errorf(err, AL_ERR_FORMAT, "%s: cannot query attribute '%s': %s",
                                 path, name, al_h5_why(d, sizeof d));
    if (ex == 0) return AL_ERR_NOTFOUND;
    if ((attr = H5Aopen(obj, name, H5P_DEFAULT)) < 0 || (ftype = H5Aget_type(attr)) < 0 ||
        (space = H5Aget_space(attr)) < 0) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: cannot open attribute '%s': %s", path, name,
                       al_h5_why(d, sizeof d));
        goto done;
    }
    hssize_t np = H5Sget_simple_extent_npoints(space);
    if (np < 0) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: attribute '%s' has no valid dataspace", path, name);
        goto done;
    }
    n = (size_t)np;
    if (H5Tget_class(ftype) != H5T_STRING) {
        if (n == 0) goto done;
        st = al_errorf(err, AL_ERR_FORMAT, "%s: attribute '%s' is not a string attribute", path, name);
        goto done;
    }
    if (n == 0) goto done;
    res = al_calloc(n, sizeof *res);
    if (!res) { st = al_errorf(err, AL_ERR_NOMEM, "%s: out of memory reading attribute '%s'", path, name); goto done; }

    htri_t var = H5Tis_variable_str(ftype);
    H5T_cset_t cset = H5Tget_cset(ftype);       /* HDF5 will not convert ASCII <-> UTF-8 */
    if (var < 0 || cset < 0 || (mtype = H5Tcopy(H5T_C_S1)) < 0 || H5Tset_cset(mtype, cset) < 0) {
        st = al_errorf(err, AL_ERR_FORMAT, "%s: attribute '%s': bad string type: %s", path, name,
                       al_h5_why(d, sizeof d));
        goto done;
    }
    if (var) {
        /* HDF5 mallocs each string itself; H5Dvlen_reclaim gives them back. */
        vl = al_calloc(n, sizeof *vl);
        if (!vl) { st = al_errorf(err, AL_ERR_NOMEM, "%s: out of memory reading attribute '%s'", path, name); goto done; }
        if (H5Tset_size(mtype, H5T_VARIABLE) < 0 || H5Aread(attr, mtype, vl) < 0) {
            st = al_errorf(err, AL_ERR_FORMAT, "%s: cannot read attribute '%s': %s", path, name,
                           al_h5_why(d, sizeof d));
            al_free(vl);
            vl = NULL;
            goto done;
        }
        for (size_t i = 0; i < n && st == AL_OK; i++)
            if (!(res[i] = al_strdup(vl[i] ? vl[i] : "")))
                st = al_errorf(err, AL_ERR_NOMEM, "%s: out of memory reading attribute '%s'", path, name);
        H5Dvlen_reclaim(mtype, space, H5P_DEFAULT, vl);
    } else {
        size_t sz = H5Tget_size(ftype);
        H5T_str_t pad = H5Tget_strpad(ftype);
        uint64_t total;
        if (sz == 0 || al_mul_overflow_u64(sz, n, &total) || !(fixed = al_malloc((size_t)total))) {
            st = al_errorf(err, AL_ERR_NOMEM, "%s: out of memory reading attribute '%s'", path, name);
            goto done;
        }
        if (H5Tset_size(mtype, sz) < 0 || H5Tset_strpad(mtype, H5T_STR_NULLPAD) < 0 ||
            H5Aread(attr, mtype, fixed) < 0) {
            st = al_errorf(err, AL_ERR_FORMAT, "%s: cannot read attribute '%s': %s", path, name,
                           al_h5_why(d, sizeof d));
            goto done;
        }
        for (size_t i = 0; i < n; i++) {
            const char *s = fixed + i * sz;
            size_t len = strnlen(s, sz);
            if (pad == H5T_STR_SPACEPAD)
                while (len > 0 && s[len - 1] == ' ') len--;
            if (!(res[i] = al_strndup(s, len))) {
                st = al_errorf(err, AL_ERR_NOMEM, "%s: out of memory reading attribute '%s'", path, name);
                break;
            }
        }
    }
done:
    al_free(vl);
    al_free(fixed);
    if (mtype >= 0) H5Tclose(mtype);
    if (space >= 0) H5Sclose(space);
    if (ftype >= 0) H5Tclose(ftype);
    if (attr >= 0) H5Aclose(attr);
    if (st != AL_OK) { al_h5_strv_free(res, n); return st; }
    *out = res;
    *nout = res ? n : 0;
    return AL_OK;
}

al_status al_h5_get_str(hid_t obj, const char *name, const char *path, char **dst, al_error *err)
{
    char **v = NULL;
    size_t n = 0;
    al_status st = al_h5_get_strs(obj, name, path, &v, &n, err);
    if (st == AL_ERR_NOTFOUND) { st = AL_OK; }
    else if (st == AL_OK && n != 1) st = al_errorf(err, AL_ERR_FORMAT, "%s: attribute '%s' is not one string", path, name);
    if (st == AL_OK) {
        char *c = al_strdup(n ? v[0] : "");
        if (c) { al_free(*dst); *dst = c; }
        else st = al_errorf(err, AL_ERR_NOMEM, "%s: out of memory reading attribute '%s'", path, name);
    }
    al_h5_strv_free(v, n);
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

static unsigned g_probe_ms = 120000;

void al_h5_probe_limit(unsigned ms) { g_probe_ms = ms ? ms : 1; }

/* The child reports 'd' on the pipe once fn has returned; a pipe closed without it means
 * the child died inside fn (a signal, a sanitizer abort, the alarm). */
al_status al_h5_probe(const char *path, void (*fn)(void *ctx), void *ctx, al_error *err)
{
    int fd[2];
    if (pipe(fd) != 0) return al_errorf(err, AL_ERR_IO, "%s: cannot create a pipe: %s", path, strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fd[0]);
        close(fd[1]);
        return al_errorf(err, AL_ERR_IO, "%s: cannot fork to check the file: %s", path, strerror(e));
    }
    if (pid == 0) {
        /* The parent's handlers (cmd/main.c removes the temporary output on SIGBUS and
         * SIGINT) belong to the parent: the child just dies. */
        static const int sigs[] = {SIGBUS, SIGSEGV, SIGFPE, SIGILL, SIGABRT, SIGINT, SIGTERM, SIGHUP, SIGALRM};
        for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) signal(sigs[i], SIG_DFL);
        close(fd[0]);
        struct itimerval lim = {{0, 0}, {g_probe_ms / 1000, (g_probe_ms % 1000) * 1000}};
        setitimer(ITIMER_REAL, &lim, NULL);
        fn(ctx);
        ssize_t w = write(fd[1], "d", 1);
        _exit(w == 1 ? 0 : 1);
    }
    close(fd[1]);
    char c = 0;
    ssize_t r;
    do r = read(fd[0], &c, 1); while (r < 0 && errno == EINTR);
    close(fd[0]);
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {}
    if (r == 1 && c == 'd') return AL_OK;
    if (WIFSIGNALED(ws) && WTERMSIG(ws) == SIGALRM)
        return al_errorf(err, AL_ERR_FORMAT, "%s: corrupt HDF5 file: the HDF5 library did not finish reading "
                         "it within %.1f s (an endless loop?)", path, g_probe_ms / 1000.0);
    if (WIFSIGNALED(ws))
        return al_errorf(err, AL_ERR_FORMAT, "%s: corrupt HDF5 file: the HDF5 library crashed reading it "
                         "(signal %d, caught in a child process that checks it first)", path, WTERMSIG(ws));
    return al_errorf(err, AL_ERR_FORMAT, "%s: corrupt HDF5 file: the HDF5 library failed reading it "
                     "(checking process exit status %d)", path, WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
}
