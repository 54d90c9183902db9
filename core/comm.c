/* core/comm.c: what every distributed caller shares (see comm.h). */
#include "comm.h"

#include <stdio.h>
#include <string.h>

al_status al_comm_agree(const al_comm *c, al_status st, al_error *err)
{
    if (!al_comm_multi(c)) return st;
    int first = st != AL_OK ? c->rank : c->size;
    if (c->min_int(c, &first) != 0) return al_errorf(err, AL_ERR_IO, "MPI: a reduction failed");
    if (first == c->size) return AL_OK;
    struct { int32_t code; char msg[AL_ERROR_MSG_MAX]; } m;
    memset(&m, 0, sizeof m);
    if (c->rank == first) {
        m.code = (int32_t)st;
        snprintf(m.msg, sizeof m.msg, "%s", err ? err->msg : "");
    }
    if (c->bcast(c, &m, sizeof m, first) != 0) return al_errorf(err, AL_ERR_IO, "MPI: a broadcast failed");
    return al_errorf(err, (al_status)m.code, "rank %d: %s", first, m.msg);
}

al_status al_comm_sum_u64(const al_comm *c, uint64_t *v, size_t n, al_error *err)
{
    if (al_comm_multi(c) && c->sum_u64(c, v, n) != 0) return al_errorf(err, AL_ERR_IO, "MPI: a reduction failed");
    return AL_OK;
}

al_status al_comm_sum_f64(const al_comm *c, double *v, size_t n, al_error *err)
{
    if (al_comm_multi(c) && c->sum_f64(c, v, n) != 0) return al_errorf(err, AL_ERR_IO, "MPI: a reduction failed");
    return AL_OK;
}

al_status al_comm_bcast(const al_comm *c, void *buf, size_t n, int root, al_error *err)
{
    if (al_comm_multi(c) && c->bcast(c, buf, n, root) != 0) return al_errorf(err, AL_ERR_IO, "MPI: a broadcast failed");
    return AL_OK;
}
