#include "mpi/mpi_comm.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int mpi_running(void)
{
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    return initialized && !finalized;
}

int mpi_comm_init(int *argc, char ***argv)
{
    int initialized = 0;
    int rc = MPI_Initialized(&initialized);
    if (rc != MPI_SUCCESS)
        return rc;
    if (!initialized) {
        int provided = 0;
        rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS)
            return rc;
    }
    /* errors come back as codes, so callers can print one line and exit */
    return MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

int mpi_comm_launched(void)
{
    /* OpenMPI's mpirun sets OMPI_COMM_WORLD_SIZE; PMIx launchers (srun, prterun) PMIX_RANK; MPICH's PMI_SIZE */
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i]))
            return 1;
    return 0;
}

int mpi_comm_finalize(void)
{
    return mpi_running() ? MPI_Finalize() : MPI_SUCCESS;
}

void mpi_comm_abort(int code)
{
    if (mpi_running())
        MPI_Abort(MPI_COMM_WORLD, code);
}

int mpi_comm_rank(void)
{
    int rank = 0;
    if (mpi_running() && MPI_Comm_rank(MPI_COMM_WORLD, &rank) != MPI_SUCCESS)
        return 0;
    return rank;
}

int mpi_comm_size(void)
{
    int size = 1;
    if (mpi_running() && MPI_Comm_size(MPI_COMM_WORLD, &size) != MPI_SUCCESS)
        return 1;
    return size;
}

int mpi_comm_allreduce(double *values, size_t count, optvq_reduce_op op, void *ctx)
{
    (void)ctx;
    MPI_Op mpi_op;
    switch (op) {
    case OPTVQ_REDUCE_SUM: mpi_op = MPI_SUM; break;
    case OPTVQ_REDUCE_MAX: mpi_op = MPI_MAX; break;
    default: return MPI_ERR_OP;
    }
    if (count && !values)
        return MPI_ERR_BUFFER;
    /* MPI counts are int: larger buffers go in INT_MAX pieces */
    while (count > 0) {
        int n = count > (size_t)INT_MAX ? INT_MAX : (int)count;
        int rc = MPI_Allreduce(MPI_IN_PLACE, values, n, MPI_DOUBLE, mpi_op, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS)
            return rc;
        values += n;
        count -= (size_t)n;
    }
    return MPI_SUCCESS;
}

int mpi_comm_allreduce_floats(float *values, size_t count, void *ctx)
{
    (void)ctx;
    if (count && !values)
        return MPI_ERR_BUFFER;
    while (count > 0) {
        int n = count > (size_t)INT_MAX ? INT_MAX : (int)count;
        int rc = MPI_Allreduce(MPI_IN_PLACE, values, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS)
            return rc;
        values += n;
        count -= (size_t)n;
    }
    return MPI_SUCCESS;
}

void mpi_comm_fill(optvq_comm *comm)
{
    comm->rank = mpi_comm_rank();
    comm->n_ranks = mpi_comm_size();
    comm->allreduce = mpi_comm_allreduce;
    comm->allreduce_floats = mpi_comm_allreduce_floats;
    comm->ctx = NULL;
}

const char *mpi_comm_describe(int code, char *buf, size_t size)
{
    if (!buf || !size)
        return buf;
    char text[MPI_MAX_ERROR_STRING] = "unknown error";
    int len = 0;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS)
        snprintf(text, sizeof text, "unknown error");
    snprintf(buf, size, "MPI error %d: %s", code, text);
    return buf;
}
