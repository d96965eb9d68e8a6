/* Reductions over a data-parallel group (optvq_comm, optvq/train.h) for the
 * layers that need them: training (gradients, losses, histograms), SyncBatchNorm,
 * sharded evaluation. A NULL comm or one of n_ranks <= 1 is one process: the
 * functions then leave the values alone and succeed. A failing hook is
 * OPTVQ_ERR_STATE, "WHAT: reduction over the ranks failed". */
#ifndef OPTVQ_CORE_COMM_H
#define OPTVQ_CORE_COMM_H
#include "optvq/train.h"

#include <stddef.h>

/* Time spent in reductions and the bytes handed to them (for reports). */
typedef struct comm_tally {
    double seconds, bytes;
} comm_tally;

/* Processes in the group (>= 1) and this one's rank (0 alone). */
int comm_size(const optvq_comm *c);
int comm_rank(const optvq_comm *c);

/* values[0..n) replaced by their sum (max) over the ranks. */
optvq_status comm_sum(const optvq_comm *c, double *values, size_t n, const char *what);
optvq_status comm_max(const optvq_comm *c, double *values, size_t n, const char *what);
/* The same for floats (sum), through allreduce_floats, else in double pieces. */
optvq_status comm_sum_floats(const optvq_comm *c, float *values, size_t n, const char *what);
/* Rank 0's values[0..n) on every rank (a sum to which the others add zeros,
 * so the values arrive exactly). */
optvq_status comm_broadcast_floats(const optvq_comm *c, float *values, size_t n, const char *what);
/* values[0..n) replaced by their mean over the ranks. */
optvq_status comm_mean(const optvq_comm *c, double *values, size_t n, const char *what);

/* Nonzero on every rank when `failed` is nonzero on any (a rank that cannot go
 * on tells the others, so none waits in a later reduction). A hook failure
 * counts as failed. */
int comm_any(const optvq_comm *c, int failed);

#endif
