/* bench_conv_bf16 — the bf16 inference convolution (src/nn/conv_bf16.c)
 * against the fp32 ones (conv2d's direct / tap-GEMM paths and Winograd) on
 * the f16 h4 coders' layer shapes at 256x256.
 *
 *   bench_conv_bf16 [THREADS] [REPS] [scalar]     (default 2 threads, 5 reps)
 *
 * `scalar` forces the portable kernel (what a CPU without AVX512-BF16 runs).
 *
 * Per shape (c_in -> c_out, H x W, kernel, stride): the median seconds of
 * REPS runs after one warm-up of conv2d (fp32), Winograd (fp32, 3x3 stride 1
 * only), bf16 with the weights packed beforehand (as a model keeps them) and
 * bf16 packing them in the call; the bf16 result's NMSE against conv2d's.
 * Inputs: N(0,1) activations and weights scaled by 1/sqrt(fan_in).
 * Not a test: nothing is checked. */
#include "bench_common.h"

#include <cblas.h>
#include "nn/conv_bf16.h"
#include "nn/conv_winograd.h"
#include "nn/gemm_bf16.h"
#include "nn/nn.h"
#include "optvq/optvq.h"

static int fail(void)
{
    fprintf(stderr, "bench_conv_bf16: %s\n", optvq_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    const int threads = argc > 1 ? atoi(argv[1]) : 2;
    const int reps = argc > 2 ? atoi(argv[2]) : 5;
    const int scalar = argc > 3 && !strcmp(argv[3], "scalar");
    if (threads < 1 || reps < 1 || reps > 100 || (argc > 3 && !scalar)) {
        fprintf(stderr, "usage: bench_conv_bf16 [THREADS >= 1] [REPS 1..100] [scalar]\n");
        return 2;
    }
    nn_gemm_bf16_force_scalar(scalar);
    /* c_in, c_out, H (= W), k, stride, pad_t, pad_b */
    static const int64_t shapes[][7] = {
        {128, 128, 256, 3, 1, 1, 1}, {256, 256, 128, 3, 1, 1, 1}, {512, 512, 32, 3, 1, 1, 1},
        {512, 512, 16, 3, 1, 1, 1},  {128, 256, 128, 1, 1, 0, 0}, {128, 128, 256, 3, 2, 0, 1},
        {3, 128, 256, 3, 1, 1, 1},
    };
    optvq_set_num_threads(threads);
    openblas_set_num_threads(1);
    printf("bench_conv_bf16: %d threads, median of %d after 1 warm-up; AVX512-BF16 kernel: %s; OpenBLAS core: %s\n",
           threads, reps, scalar ? "forced off (portable kernel)" : nn_bf16_available() ? "yes" : "no (portable kernel)",
           openblas_get_corename());
    bench_print_load("before");
    printf("| c_in | c_out | HxW | k/s | GFLOP | fp32 conv2d s | Winograd s | bf16 s | bf16+pack s | conv2d/bf16 | "
           "NMSE bf16 |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
    double *t[4];
    for (int i = 0; i < 4; i++)
        t[i] = malloc((size_t)reps * sizeof(double));
    nn_conv_cache *cache = nn_conv_cache_create(1u << 30);
    if (!cache)
        return fail();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t ci = shapes[s][0], co = shapes[s][1], H = shapes[s][2], k = shapes[s][3], st = shapes[s][4];
        nn_conv2d_desc d;
        if (nn_conv2d_init(&d, 1, ci, H, H, co, k, k, st, shapes[s][5], shapes[s][6], shapes[s][5], shapes[s][6]))
            return fail();
        const int64_t nx = ci * H * H, nw = co * ci * k * k, ny = co * d.h_out * d.w_out;
        float *x = malloc((size_t)nx * sizeof(float)), *w = malloc((size_t)nw * sizeof(float));
        float *b = malloc((size_t)co * sizeof(float));
        float *y32 = malloc((size_t)ny * sizeof(float)), *y16 = malloc((size_t)ny * sizeof(float));
        uint16_t *pw = malloc(nn_conv_bf16_packed_weight_elems(&d) * sizeof(uint16_t));
        if (!x || !w || !b || !y32 || !y16 || !pw) {
            fprintf(stderr, "bench_conv_bf16: out of memory\n");
            return 1;
        }
        bench_fill_normal(x, (size_t)nx, 100 + s);
        bench_fill_normal(w, (size_t)nw, 200 + s);
        bench_fill_normal(b, (size_t)co, 300 + s);
        const float scale = 1.0f / sqrtf((float)(ci * k * k));
        for (int64_t i = 0; i < nw; i++)
            w[i] *= scale;
        if (nn_conv_bf16_pack_weights(&d, w, pw))
            return fail();
        const int wino = nn_conv_winograd_supported(&d);
        size_t need = nn_conv2d_workspace(&d);
        size_t need_b = nn_conv_bf16_workspace(&d, 0), need_w = wino ? nn_conv_winograd_workspace(&d) : 0;
        need = need > need_b ? need : need_b;
        need = need > need_w ? need : need_w;
        nn_workspace ws = {0};
        if (nn_workspace_reserve(&ws, need))
            return fail();
        for (int r = -1; r < reps; r++) {
            double t0 = bench_now_ms();
            if (nn_conv2d_forward(y32, x, w, b, &d, &ws))
                return fail();
            double t1 = bench_now_ms();
            if (wino && nn_conv_winograd_forward(y16, x, w, b, &d, &ws, cache))
                return fail();
            double t2 = bench_now_ms();
            if (nn_conv_bf16_forward(y16, x, NULL, pw, b, &d, &ws))
                return fail();
            double t3 = bench_now_ms();
            if (nn_conv_bf16_forward(y16, x, w, NULL, b, &d, &ws))
                return fail();
            double t4 = bench_now_ms();
            if (r >= 0) {
                t[0][r] = (t1 - t0) * 1e-3;
                t[1][r] = (t2 - t1) * 1e-3;
                t[2][r] = (t3 - t2) * 1e-3;
                t[3][r] = (t4 - t3) * 1e-3;
            }
        }
        double num = 0, den = 0;
        for (int64_t i = 0; i < ny; i++) {
            double e = (double)y16[i] - y32[i];
            num += e * e;
            den += (double)y32[i] * y32[i];
        }
        const double gflop = 2e-9 * (double)ny * (double)(ci * k * k);
        const double m32 = bench_median(t[0], reps), mb = bench_median(t[2], reps);
        char wino_s[32] = "-";
        if (wino)
            snprintf(wino_s, sizeof wino_s, "%.4f", bench_median(t[1], reps));
        printf("| %lld | %lld | %lldx%lld | %lld/%lld | %.2f | %.4f | %s | %.4f | %.4f | %.2fx | %.2e |\n",
               (long long)ci, (long long)co, (long long)H, (long long)H, (long long)k, (long long)st, gflop, m32,
               wino_s, mb, bench_median(t[3], reps), m32 / mb, num / den);
        fflush(stdout);
        nn_workspace_free(&ws);
        free(x), free(w), free(b), free(y32), free(y16), free(pw);
    }
    nn_conv_cache_free(cache);
    bench_print_load("after");
    for (int i = 0; i < 4; i++)
        free(t[i]);
    return 0;
}
