#include "thread_group.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void thread_group_init(thread_group *g, int n_ranks)
{
    memset(g, 0, sizeof *g);
    g->n_ranks = n_ranks;
    pthread_barrier_init(&g->barrier, NULL, (unsigned)n_ranks);
}

void thread_group_destroy(thread_group *g) { pthread_barrier_destroy(&g->barrier); }

int thread_group_allreduce(double *values, size_t count, optvq_reduce_op op, void *ctx)
{
    thread_member *me = ctx;
    thread_group *g = me->group;
    double *copy = malloc((count ? count : 1) * sizeof(double));
    if (!copy)
        return 1;
    memcpy(copy, values, count * sizeof(double));
    g->slot[me->rank] = copy;
    pthread_barrier_wait(&g->barrier);
    for (size_t i = 0; i < count; i++) {
        double v = g->slot[0][i];
        for (int r = 1; r < g->n_ranks; r++)
            v = op == OPTVQ_REDUCE_MAX ? fmax(v, g->slot[r][i]) : v + g->slot[r][i];
        values[i] = v;
    }
    pthread_barrier_wait(&g->barrier); /* every member has read every input */
    free(copy);
    return 0;
}

optvq_comm thread_group_join(thread_group *g, int rank, thread_member *m)
{
    m->group = g;
    m->rank = rank;
    return (optvq_comm){.rank = rank, .n_ranks = g->n_ranks, .allreduce = thread_group_allreduce, .ctx = m};
}
