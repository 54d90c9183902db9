/* core/mpi/comm_mpi.c: al_comm over MPI_COMM_WORLD. Built only by `make MPI=1`
 * (outside the folders the default build compiles). Only the main thread calls MPI
 * (MPI_THREAD_FUNNELED); OpenMP and the writer thread never do. */
#include "comm_mpi.h"

#include <mpi.h>

/* MPI counts are int: large arrays go in pieces. */
#define PIECE ((size_t)1 << 28)

/* In-place sum over ranks of n elements of type t (size es), in pieces. */
static int sum_pieces(void *v, size_t n, MPI_Datatype t, size_t es)
{
    for (size_t i = 0; i < n; i += PIECE) {
        int k = (int)(n - i < PIECE ? n - i : PIECE);
        if (MPI_Allreduce(MPI_IN_PLACE, (char *)v + i * es, k, t, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS) return -1;
    }
    return 0;
}

static int sum_u64(const al_comm *c, uint64_t *v, size_t n) { (void)c; return sum_pieces(v, n, MPI_UINT64_T, 8); }
static int sum_f64(const al_comm *c, double *v, size_t n) { (void)c; return sum_pieces(v, n, MPI_DOUBLE, 8); }

static int min_int(const al_comm *c, int *v)
{
    (void)c;
    return MPI_Allreduce(MPI_IN_PLACE, v, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD) == MPI_SUCCESS ? 0 : -1;
}

static int bcast(const al_comm *c, void *buf, size_t n, int root)
{
    (void)c;
    for (size_t i = 0; i < n; i += PIECE) {
        int k = (int)(n - i < PIECE ? n - i : PIECE);
        if (MPI_Bcast((char *)buf + i, k, MPI_BYTE, root, MPI_COMM_WORLD) != MPI_SUCCESS) return -1;
    }
    return 0;
}

static al_comm g_world;

const al_comm *al_comm_mpi_init(int *argc, char ***argv)
{
    int provided = 0, inited = 0;
    MPI_Initialized(&inited);
    if (!inited && MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) return NULL;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_world.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_world.size);
    g_world.sum_u64 = sum_u64;
    g_world.sum_f64 = sum_f64;
    g_world.min_int = min_int;
    g_world.bcast = bcast;
    return &g_world;
}

void al_comm_mpi_finish(void)
{
    int inited = 0, done = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&done);
    if (inited && !done) MPI_Finalize();
}
