/* Threading: OpenMP for our loops; OpenBLAS is kept single-threaded inside them
 * so the two never oversubscribe the cores. */
#ifndef OPTVQ_CORE_PARALLEL_H
#define OPTVQ_CORE_PARALLEL_H
#include <stddef.h>

/* Threads our parallel regions use (>= 1). */
int optvq_threads(void);
/* Call once before issuing cblas calls from inside parallel regions. */
void optvq_blas_single_threaded(void);
/* Number of cores. */
int optvq_cores(void);

#endif
