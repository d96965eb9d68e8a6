/* Shared by the benchmark programs (C and C++): the two benchmark
 * configurations, a seeded normal generator, a clock, medians and peak RSS.
 * Not part of the library. */
#ifndef OPTVQ_BENCH_COMMON_H
#define OPTVQ_BENCH_COMMON_H
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct bench_cfg {
    const char *name;
    int64_t batch, e_dim, height, width; /* x: (batch, e_dim, height, width) */
    int64_t num_head, n_e;
} bench_cfg;

/* (a) MNIST config step, (b) ImageNet config step. */
static const bench_cfg BENCH_CFGS[] = {
    {"mnist", 1024, 8, 8, 8, 4, 1024},
    {"imagenet", 8, 256, 16, 16, 4, 16384},
};

static inline const bench_cfg *bench_find_cfg(const char *name)
{
    for (size_t i = 0; i < sizeof BENCH_CFGS / sizeof BENCH_CFGS[0]; i++)
        if (!strcmp(BENCH_CFGS[i].name, name))
            return &BENCH_CFGS[i];
    return NULL;
}

/* splitmix64 + Box-Muller: standard normal floats from a seed. */
typedef struct bench_rng {
    uint64_t s;
} bench_rng;

static inline uint64_t bench_next(bench_rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline void bench_fill_normal(float *out, size_t n, uint64_t seed)
{
    bench_rng r = {seed};
    for (size_t i = 0; i < n; i += 2) {
        double u1 = ((bench_next(&r) >> 11) + 1.0) * (1.0 / 9007199254740993.0); /* (0, 1] */
        double u2 = (bench_next(&r) >> 11) * (1.0 / 9007199254740992.0);
        double rad = sqrt(-2.0 * log(u1));
        out[i] = (float)(rad * cos(6.283185307179586 * u2));
        if (i + 1 < n)
            out[i + 1] = (float)(rad * sin(6.283185307179586 * u2));
    }
}

static inline double bench_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Peak resident set size of this process so far, in MiB (ru_maxrss is KiB on Linux). */
static inline double bench_peak_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

/* Prints the load average (the machine may be shared) with a label. */
static inline void bench_print_load(const char *when)
{
    char buf[128] = "?";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (!fgets(buf, sizeof buf, f))
            snprintf(buf, sizeof buf, "?\n");
        fclose(f);
    }
    printf("load average %s: %s", when, buf);
}

#endif
