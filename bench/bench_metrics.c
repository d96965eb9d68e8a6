/* Benchmark (not a test) for bench/run_metrics.sh: the FID Inception's feature
 * extraction and LPIPS-Alex, random weights, B images of S x S in [0, 1].
 *   bench_metrics fid|lpips B S REPS
 * prints "seconds_median peak_rss_mib checksum". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "eval/fid.h"
#include "eval/lpips_alex.h"
#include "optvq/optvq.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float uniform(void) /* [-1, 1) */
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng >> 40) / (double)(1 << 23) - 1.0);
}

static void fill(nn_params *ps)
{
    for (int i = 0; i < ps->count; i++) {
        nn_param *p = &ps->items[i];
        const char *n = p->name;
        size_t l = strlen(n);
        for (int64_t j = 0; j < p->numel; j++) {
            float u = uniform();
            if (l > 11 && !strcmp(n + l - 11, "running_var"))
                p->data[j] = 1.0f + 0.2f * u;
            else if (l > 9 && !strcmp(n + l - 9, "bn.weight"))
                p->data[j] = 1.0f + 0.1f * u;
            else if (!strncmp(n, "lin", 3))
                p->data[j] = 0.5f * (u < 0 ? -u : u);
            else if (p->ndim == 4)
                p->data[j] = u * 0.5f / (float)(p->shape[1] * p->shape[2] * p->shape[3]) * 10.0f;
            else
                p->data[j] = 0.1f * u;
        }
    }
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 5)
        return fprintf(stderr, "usage: bench_metrics fid|lpips B S REPS\n"), 2;
    const int fid = !strcmp(argv[1], "fid");
    const int64_t B = atoll(argv[2]), S = atoll(argv[3]);
    const int reps = atoi(argv[4]);
    float *x = malloc(sizeof(float) * (size_t)(2 * B * 3 * S * S));
    for (int64_t i = 0; i < 2 * B * 3 * S * S; i++)
        x[i] = 0.5f + 0.5f * uniform();
    fid_inception *net = NULL;
    lpips_alex *lp = NULL;
    float *feats = malloc(sizeof(float) * (size_t)(B * FID_DIM));
    double *d = malloc(sizeof(double) * (size_t)B), times[64], check = 0;
    if ((fid ? fid_inception_create(&net) : lpips_alex_create(&lp)) != OPTVQ_OK)
        return fprintf(stderr, "%s\n", optvq_last_error()), 1;
    fill(fid ? fid_inception_params(net) : lpips_alex_params(lp));
    for (int r = 0; r <= reps && r < 64; r++) { /* run 0: warm-up */
        double t0 = now();
        optvq_status st = fid ? fid_inception_forward(net, x, B, 3, S, S, feats)
                              : lpips_alex_forward(lp, x, x + B * 3 * S * S, B, S, S, d, NULL);
        if (st != OPTVQ_OK)
            return fprintf(stderr, "%s\n", optvq_last_error()), 1;
        if (r > 0)
            times[r - 1] = now() - t0;
    }
    for (int64_t i = 0; i < (fid ? B * FID_DIM : B); i++)
        check += fid ? feats[i] : d[i];
    qsort(times, (size_t)reps, sizeof times[0], cmp);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%.3f %.0f %.6g\n", times[reps / 2], (double)ru.ru_maxrss / 1024.0, check);
    fid_inception_free(net);
    lpips_alex_free(lp);
    free(x);
    free(feats);
    free(d);
    return 0;
}
