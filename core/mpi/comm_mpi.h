/* core/mpi/comm_mpi.h: MPI_COMM_WORLD as an al_comm (make MPI=1 only). */
#ifndef AL_COMM_MPI_H
#define AL_COMM_MPI_H

#include "../comm.h"

/* MPI_Init_thread (unless already initialised); NULL on failure. */
const al_comm *al_comm_mpi_init(int *argc, char ***argv);
void al_comm_mpi_finish(void);

#endif
