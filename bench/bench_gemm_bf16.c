/* bench_gemm_bf16 — the bf16 GEMM (src/nn/gemm_bf16.c) against OpenBLAS
 * cblas_sgemm on convolution-shaped products.
 *
 *   bench_gemm_bf16 [THREADS] [REPS]     (default 2 threads, 5 reps)
 *
 * Shapes: a 3x3 convolution as one GEMM, M = c_out, K = 9 c_in, N = H*W, for
 * (c_out, c_in, H*W) of the f16 h4 decoder at 256x256: (128,128,65536),
 * (256,256,16384), (512,512,1024), (128,256,65536); and 2048^3.
 * A (the weights) is packed once outside the timing, as inference would;
 * B and C are the caller's. Prints per shape the median seconds of REPS runs
 * after one warm-up, GFLOP/s of each, their ratio, and the bf16 result's error
 * against sgemm of the unrounded inputs: max |diff| / max |C| and NMSE.
 * Also prints the load average before and after (the machine is shared)
 * and the OpenBLAS kernel set in use.
 * Not a test: nothing is checked. */
#include "bench_common.h"

#include <cblas.h>
#include "nn/gemm_bf16.h"
#include "optvq/optvq.h"

int main(int argc, char **argv)
{
    const int threads = argc > 1 ? atoi(argv[1]) : 2;
    const int reps = argc > 2 ? atoi(argv[2]) : 5;
    if (threads < 1 || reps < 1 || reps > 100) {
        fprintf(stderr, "usage: bench_gemm_bf16 [THREADS >= 1] [REPS 1..100]\n");
        return 2;
    }
    static const int64_t shapes[][3] = {/* M, N, K */
                                        {128, 65536, 128 * 9}, {256, 16384, 256 * 9}, {512, 1024, 512 * 9},
                                        {128, 65536, 256 * 9}, {2048, 2048, 2048}};
    optvq_set_num_threads(threads);
    openblas_set_num_threads(threads);
    /* OpenBLAS 0.3.21 picks its Haswell (AVX2) kernels on CPUs newer than it;
     * OPENBLAS_CORETYPE=SkylakeX selects the AVX-512 ones */
    printf("bench_gemm_bf16: %d threads, median of %d after 1 warm-up; AVX512-BF16 kernel: %s; OpenBLAS core: %s\n",
           threads, reps, nn_bf16_available() ? "yes" : "no (scalar)", openblas_get_corename());
    bench_print_load("before");
    printf("| M | N | K | sgemm s | sgemm GFLOP/s | bf16 s | bf16 GFLOP/s | bf16/sgemm | max|d|/max|C| | NMSE |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|\n");
    double *t_s = malloc((size_t)reps * sizeof(double)), *t_b = malloc((size_t)reps * sizeof(double));
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *a = malloc((size_t)(M * K) * sizeof(float)), *b = malloc((size_t)(K * N) * sizeof(float));
        float *cs = malloc((size_t)(M * N) * sizeof(float)), *cb = malloc((size_t)(M * N) * sizeof(float));
        uint16_t *ah = malloc((size_t)(M * K) * sizeof(uint16_t)), *bh = malloc((size_t)(K * N) * sizeof(uint16_t));
        uint16_t *pa = malloc(nn_gemm_bf16_packed_a_elems(M, K) * sizeof(uint16_t));
        const size_t ws_bytes = nn_gemm_bf16_packed_workspace(M, N, K);
        void *ws = aligned_alloc(64, (ws_bytes + 63) / 64 * 64);
        if (!a || !b || !cs || !cb || !ah || !bh || !pa || !ws) {
            fprintf(stderr, "bench_gemm_bf16: out of memory at M %lld N %lld K %lld\n", (long long)M,
                    (long long)N, (long long)K);
            return 1;
        }
        bench_fill_normal(a, (size_t)(M * K), 1000 + s);
        bench_fill_normal(b, (size_t)(K * N), 2000 + s);
        nn_f32_to_bf16(a, ah, M * K);
        nn_f32_to_bf16(b, bh, K * N);
        if (nn_gemm_bf16_pack_a(M, K, ah, K, pa) != OPTVQ_OK) {
            fprintf(stderr, "bench_gemm_bf16: %s\n", optvq_last_error());
            return 1;
        }
        for (int r = -1; r < reps; r++) {
            double t0 = bench_now_ms();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0f, a, (int)K, b,
                        (int)N, 0.0f, cs, (int)N);
            double t1 = bench_now_ms();
            if (nn_gemm_bf16_packed(M, N, K, pa, bh, N, cb, N, ws, ws_bytes) != OPTVQ_OK) {
                fprintf(stderr, "bench_gemm_bf16: %s\n", optvq_last_error());
                return 1;
            }
            double t2 = bench_now_ms();
            if (r >= 0) {
                t_s[r] = (t1 - t0) * 1e-3;
                t_b[r] = (t2 - t1) * 1e-3;
            }
        }
        double max_d = 0, max_c = 0, num = 0, den = 0;
        for (int64_t i = 0; i < M * N; i++) {
            double d = fabs((double)cb[i] - cs[i]);
            max_d = d > max_d ? d : max_d;
            max_c = fabs(cs[i]) > max_c ? fabs(cs[i]) : max_c;
            num += d * d;
            den += (double)cs[i] * cs[i];
        }
        const double ms = bench_median(t_s, reps), mb = bench_median(t_b, reps), flop = 2.0 * M * N * K;
        printf("| %lld | %lld | %lld | %.4f | %.0f | %.4f | %.0f | %.2fx | %.2e | %.2e |\n", (long long)M,
               (long long)N, (long long)K, ms, flop / ms * 1e-9, mb, flop / mb * 1e-9, ms / mb, max_d / max_c,
               num / den);
        fflush(stdout);
        free(a), free(b), free(cs), free(cb), free(ah), free(bh), free(pa), free(ws);
    }
    bench_print_load("after");
    free(t_s);
    free(t_b);
    return 0;
}
