/* bench_membw — the memory-traffic floor of the materialized Sinkhorn.
 *
 *   bench_membw [MIB] [REPS]     (default 512 MiB: the ImageNet step's
 *                                 8192 x 16384 float cost matrix; 5 reps)
 *
 * Times, over one MIB-sized float array (2 MiB pages where the kernel allows,
 * as the quantizer allocates its matrix), with OMP_NUM_THREADS threads:
 *   write       a[i] = c                    (the distance GEMM's output)
 *   read        s += a[i]                   (a pass that only reads)
 *   read+write  a[i] = a[i] * c; s += a[i]  (a pass that rescales in place)
 * and prints each pass's median seconds and GB/s, then the floor of the
 * materialized Sinkhorn forward on a matrix of this size, counted from
 * src/quant/assign.c. With GEMM distances (code_dim > 16): 1 write (the
 * distances), 1 read (their statistics), 7 read+writes (exp transform,
 * division by the total, 5 iterations). With distances recomputed
 * (code_dim <= 16): 1 write (the transformed matrix) and 6 read+writes.
 * Not a test: nothing is compared; it prints its inputs. */
#include "bench_common.h"

#include <omp.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
    const long mib = argc > 1 ? atol(argv[1]) : 512;
    const int reps = argc > 2 ? atoi(argv[2]) : 5;
    if (mib < 1 || mib > 65536 || reps < 1) {
        fprintf(stderr, "usage: bench_membw [MIB 1..65536] [REPS >= 1]\n");
        return 2;
    }
    const size_t n = (size_t)mib * 1024 * 1024 / sizeof(float);
    float *a = mmap(NULL, n * sizeof(float), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED) {
        fprintf(stderr, "bench_membw: cannot map %ld MiB\n", mib);
        return 1;
    }
#ifdef MADV_HUGEPAGE
    madvise(a, n * sizeof(float), MADV_HUGEPAGE);
#endif
    const long nn = (long)n;
#pragma omp parallel for schedule(static)
    for (long i = 0; i < nn; i++) /* first touch, by the threads that use the pages */
        a[i] = 1.0f;
    double *tw = malloc((size_t)reps * sizeof(double)), *tr = malloc((size_t)reps * sizeof(double));
    double *trw = malloc((size_t)reps * sizeof(double));
    double sink = 0;
    for (int r = -1; r < reps; r++) {
        double t0 = bench_now_ms();
#pragma omp parallel for schedule(static)
        for (long i = 0; i < nn; i++)
            a[i] = 0.5f;
        double t1 = bench_now_ms();
        double s = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : s)
        for (long i = 0; i < nn; i++)
            s += a[i];
        double t2 = bench_now_ms();
        double s2 = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : s2)
        for (long i = 0; i < nn; i++) {
            a[i] = a[i] * 1.0000001f;
            s2 += a[i];
        }
        double t3 = bench_now_ms();
        sink += s + s2;
        if (r >= 0) {
            tw[r] = (t1 - t0) / 1e3;
            tr[r] = (t2 - t1) / 1e3;
            trw[r] = (t3 - t2) / 1e3;
        }
    }
    const double w = bench_median(tw, reps), rd = bench_median(tr, reps), rw = bench_median(trw, reps);
    const double gb = (double)(n * sizeof(float)) / 1e9;
    printf("inputs: %ld MiB float array, %d threads, median of %d passes each (checksum %.3g)\n", mib,
           omp_get_max_threads(), reps, sink);
    printf("write       %.4f s  %6.2f GB/s\n", w, gb / w);
    printf("read        %.4f s  %6.2f GB/s\n", rd, gb / rd);
    printf("read+write  %.4f s  %6.2f GB/s (counting both directions)\n", rw, 2 * gb / rw);
    printf("materialized Sinkhorn floor, GEMM distances (1 write + 1 read + 7 read+writes): %.3f s\n",
           w + rd + 7 * rw);
    printf("materialized Sinkhorn floor, recomputed distances (1 write + 6 read+writes): %.3f s\n", w + 6 * rw);
    munmap(a, n * sizeof(float));
    free(tw);
    free(tr);
    free(trw);
    return 0;
}
