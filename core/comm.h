/* core/comm.h: the few collective operations a distributed run needs.
 *
 * alloy runs on MPI when built with `make MPI=1` (core/mpi/comm_mpi.c wraps
 * MPI_COMM_WORLD); the library itself only sees this interface, so the default build
 * has no MPI and every caller may pass NULL, which means one process. Every operation
 * is collective: each rank calls it at the same point of the same code path, whatever
 * happened locally; al_comm_agree is how a local failure becomes everyone's. */
#ifndef AL_COMM_H
#define AL_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct al_comm al_comm;
struct al_comm {
    int rank, size;
    /* In place, elementwise over ranks, result on every rank; 0 on success. The F64
     * sum's rounding depends on the reduction order the MPI library picks. */
    int (*sum_u64)(const al_comm *c, uint64_t *v, size_t n);
    int (*sum_f64)(const al_comm *c, double *v, size_t n);
    int (*min_int)(const al_comm *c, int *v);
    int (*bcast)(const al_comm *c, void *buf, size_t n, int root);
};

/* True when c spans more than one process. */
static inline int al_comm_multi(const al_comm *c) { return c && c->size > 1; }
static inline int al_comm_rank(const al_comm *c) { return c ? c->rank : 0; }

/* Agreement point. Every rank passes its own status; all get AL_OK, or all get the
 * error of the lowest failing rank, its message prefixed with "rank K: ". */
al_status al_comm_agree(const al_comm *c, al_status st, al_error *err);

/* Collective sums that turn an MPI failure into an al_status (AL_ERR_IO). With one
 * process they do nothing. */
al_status al_comm_sum_u64(const al_comm *c, uint64_t *v, size_t n, al_error *err);
al_status al_comm_sum_f64(const al_comm *c, double *v, size_t n, al_error *err);
al_status al_comm_bcast(const al_comm *c, void *buf, size_t n, int root, al_error *err);

#endif
