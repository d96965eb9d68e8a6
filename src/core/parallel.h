/* Threading: OpenMP for our loops; OpenBLAS is kept single-threaded inside them
 * so the two never oversubscribe the cores. */
#ifndef OPTVQ_CORE_PARALLEL_H
#define OPTVQ_CORE_PARALLEL_H
#include <stddef.h>

/* Threads our parallel regions use (>= 1). */
int optvq_threads(void);
/* Call once before issuing cblas calls from inside parallel regions. */
void optvq_blas_single_threaded(void);
/* Threads worth using for `work` elementary operations: 1 below a size where
 * waking threads costs more than it saves. */
int optvq_threads_for(double work);
/* Number of cores. */
int optvq_cores(void);

/* Monotonic seconds (for progress and timings). */
double optvq_now(void);

#endif
