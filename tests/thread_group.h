/* A data-parallel group of threads standing in for MPI ranks in unit tests:
 * its allreduce hook sums (or maxes) each member's values in rank order
 * through a barrier, as MPI_Allreduce over the ranks would. */
#ifndef OPTVQ_TESTS_THREAD_GROUP_H
#define OPTVQ_TESTS_THREAD_GROUP_H
#include "optvq/train.h"

#include <pthread.h>

#define THREAD_GROUP_MAX 8

typedef struct thread_group {
    pthread_barrier_t barrier;
    int n_ranks;
    double *slot[THREAD_GROUP_MAX];
} thread_group;

/* One member; the hook's ctx. */
typedef struct thread_member {
    thread_group *group;
    int rank;
} thread_member;

void thread_group_init(thread_group *g, int n_ranks);
void thread_group_destroy(thread_group *g);
/* optvq_allreduce_fn; ctx is the caller's thread_member. */
int thread_group_allreduce(double *values, size_t count, optvq_reduce_op op, void *ctx);
/* m's rank in g, and the optvq_comm whose hook is thread_group_allreduce. */
optvq_comm thread_group_join(thread_group *g, int rank, thread_member *m);

#endif
