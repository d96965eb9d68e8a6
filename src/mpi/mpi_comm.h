/* MPI glue for data-parallel runs: start/stop MPI, this process's rank and
 * the number of ranks, and an optvq_allreduce_fn over MPI_Allreduce.
 *
 * Built with mpicc into the programs that need it; liboptvq itself never
 * links MPI (it only calls the hook in optvq_quantizer_config.allreduce).
 * Every function returns 0 on success or the MPI error code (MPI runs with
 * MPI_ERRORS_RETURN on MPI_COMM_WORLD, so errors come back instead of
 * aborting); mpi_comm_describe() turns a code into a message. */
#ifndef OPTVQ_MPI_COMM_H
#define OPTVQ_MPI_COMM_H
#include "optvq/optvq.h"
#include "optvq/train.h"

#include <stddef.h>

/* MPI_Init_thread (MPI_THREAD_FUNNELED: OpenMP threads compute, only the
 * calling thread talks to MPI), then MPI_ERRORS_RETURN on MPI_COMM_WORLD.
 * Does nothing but set the error handler when MPI is already initialised.
 * argc/argv may be NULL. */
int mpi_comm_init(int *argc, char ***argv);

/* Nonzero when this process was started by an MPI launcher (mpirun/mpiexec,
 * srun with PMIx): only then does a program call mpi_comm_init, so that a
 * plain run never starts MPI. */
int mpi_comm_launched(void);

/* MPI_Finalize, once; a no-op when MPI is not running. */
int mpi_comm_finalize(void);

/* MPI_Abort(MPI_COMM_WORLD, code): stops every rank of the job. */
void mpi_comm_abort(int code);

/* Rank in MPI_COMM_WORLD and the number of ranks; 0 and 1 when MPI is not
 * initialised (a plain single-process run). */
int mpi_comm_rank(void);
int mpi_comm_size(void);

/* optvq_allreduce_fn: values[0..count) are replaced, on every rank, by their
 * sum (OPTVQ_REDUCE_SUM) or maximum (OPTVQ_REDUCE_MAX) over the ranks of
 * MPI_COMM_WORLD. ctx is unused (pass NULL). Returns nonzero on an MPI error
 * or an unknown op. Counts above INT_MAX go in several calls. */
int mpi_comm_allreduce(double *values, size_t count, optvq_reduce_op op, void *ctx);

/* The float twin of mpi_comm_allreduce, always a sum (gradients). */
int mpi_comm_allreduce_floats(float *values, size_t count, void *ctx);

/* An optvq_comm over MPI_COMM_WORLD: this rank, the size and the two hooks
 * above (a single process: rank 0 of 1, hooks still valid). */
void mpi_comm_fill(optvq_comm *comm);

/* "MPI error N: <MPI's text>" in buf (always terminated); returns buf. */
const char *mpi_comm_describe(int code, char *buf, size_t size);

#endif
