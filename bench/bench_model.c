/* optvq side of bench/run_model.sh: load a model folder, then time
 * encode + decode (optvq_model_reconstruct) of DIR/x.npy REPS times after a
 * warm-up; prints "optvq MEDIAN_SECONDS PEAK_RSS_MIB MEAN_ABS_OUTPUT".
 *   bench_model DIR REPS [fp32|bf16|bf16-all [SAVE]]
 * PRECISION: optvq_model_set_precision (default fp32); SAVE: also writes the
 * last run's reconstruction and tokens to SAVE.recon.npy and SAVE.tokens.npy. */
#include "optvq/optvq.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static long peak_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6))
            v = atol(line + 6);
    if (f)
        fclose(f);
    return v;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_model DIR REPS [fp32|bf16|bf16-all [SAVE]]\n");
        return 2;
    }
    const char *dir = argv[1];
    int reps = atoi(argv[2]);
    optvq_model *m;
    char p[4096];
    snprintf(p, sizeof p, "%s/x.npy", dir);
    optvq_array x;
    if (optvq_model_load(dir, NULL, &m) != OPTVQ_OK || optvq_npy_read(p, &x) != OPTVQ_OK ||
        optvq_array_to_f32(&x) != OPTVQ_OK) {
        fprintf(stderr, "bench_model: %s\n", optvq_last_error());
        return 1;
    }
    if (argc > 3) {
        const optvq_precision prec = !strcmp(argv[3], "bf16")       ? OPTVQ_PRECISION_BF16
                                     : !strcmp(argv[3], "bf16-all") ? OPTVQ_PRECISION_BF16_ALL
                                     : !strcmp(argv[3], "fp32")     ? OPTVQ_PRECISION_FP32
                                                                    : (optvq_precision)-1;
        if (optvq_model_set_precision(m, prec) != OPTVQ_OK) {
            fprintf(stderr, "bench_model: %s\n", optvq_last_error());
            return 1;
        }
    }
    int64_t B = x.shape[0], H = x.shape[2], W = x.shape[3];
    optvq_model_info info;
    optvq_model_get_info(m, &info);
    const int64_t ntok = B * info.num_head * (H / info.downsample) * (W / info.downsample);
    float *out = malloc((size_t)optvq_array_numel(&x) * sizeof(float));
    int64_t *tok = malloc((size_t)ntok * sizeof(int64_t));
    double *t = malloc((size_t)(reps + 1) * sizeof(double));
    for (int r = 0; r <= reps; r++) {
        double t0 = now();
        if (optvq_model_reconstruct(m, x.data, B, H, W, out, tok) != OPTVQ_OK) {
            fprintf(stderr, "bench_model: %s\n", optvq_last_error());
            return 1;
        }
        t[r] = now() - t0;
    }
    qsort(t + 1, (size_t)reps, sizeof(double), cmp);
    double s = 0;
    for (int64_t i = 0; i < optvq_array_numel(&x); i++)
        s += fabs(out[i]);
    printf("optvq %.3f %.0f %.6f\n", t[1 + (reps - 1) / 2], peak_rss_kib() / 1024.0, s / (double)optvq_array_numel(&x));
    if (argc > 4) {
        const int64_t tshape[4] = {B, info.num_head, H / info.downsample, W / info.downsample};
        snprintf(p, sizeof p, "%s.recon.npy", argv[4]);
        optvq_status st = optvq_npy_write(p, OPTVQ_F32, 4, x.shape, out);
        snprintf(p, sizeof p, "%s.tokens.npy", argv[4]);
        if (st == OPTVQ_OK)
            st = optvq_npy_write(p, OPTVQ_I64, 4, tshape, tok);
        if (st != OPTVQ_OK) {
            fprintf(stderr, "bench_model: %s\n", optvq_last_error());
            return 1;
        }
    }
    optvq_model_free(m);
    optvq_array_free(&x);
    free(out);
    free(tok);
    free(t);
    return 0;
}
