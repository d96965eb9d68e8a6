#include "core/parallel.h"

#include <time.h>
#include "optvq/optvq.h"

#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* From OpenBLAS; declared here so no OpenBLAS-specific header is needed. */
void openblas_set_num_threads(int num_threads);

static int requested_threads; /* 0 = all cores */

int optvq_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Far more threads than any machine has: more would only exhaust memory
 * (per-thread workspaces) or the thread limit. */
#define MAX_THREADS 1024

void optvq_set_num_threads(int num_threads)
{
    requested_threads = num_threads > 0 ? (num_threads < MAX_THREADS ? num_threads : MAX_THREADS) : 0;
}

int optvq_get_num_threads(void) { return optvq_threads(); }

int optvq_threads(void)
{
    if (requested_threads > 0)
        return requested_threads;
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void optvq_blas_single_threaded(void) { openblas_set_num_threads(1); }

int optvq_threads_for(double work)
{
    return work < 2e5 ? 1 : optvq_threads();
}

double optvq_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
