/* bench_quant — times one optvq quantizer step through the public API.
 *
 *   bench_quant CONFIG ASSIGN OP REPS
 *     CONFIG  mnist | imagenet            (bench_common.h)
 *     ASSIGN  sinkhorn | nearest
 *     OP      fwd     forward (x_q, indices, loss)
 *             fwdbwd  zero grads + forward + backward of loss + sum(x_q * G)
 *             assign  forward with indices only (no x_q, no loss): the
 *                     nearest-code search compared against faiss
 *     REPS    timed repetitions after one warm-up
 *
 * Threads: OMP_NUM_THREADS (the library's parallel loops follow it).
 * Prints one line:  RESULT key=value ...  (median/min ms, peak RSS MiB).
 * One configuration per process, so the peak RSS belongs to it alone. */
#include "bench_common.h"
#include "optvq/optvq.h"

static int die(const char *what)
{
    fprintf(stderr, "bench_quant: %s: %s\n", what, optvq_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: bench_quant mnist|imagenet sinkhorn|nearest fwd|fwdbwd|assign REPS\n");
        return 2;
    }
    const bench_cfg *bc = bench_find_cfg(argv[1]);
    const int sinkhorn = !strcmp(argv[2], "sinkhorn");
    const char *op = argv[3];
    const int reps = atoi(argv[4]);
    if (!bc || (!sinkhorn && strcmp(argv[2], "nearest")) || reps < 1 ||
        (strcmp(op, "fwd") && strcmp(op, "fwdbwd") && strcmp(op, "assign"))) {
        fprintf(stderr, "bench_quant: bad arguments\n");
        return 2;
    }
    const int bwd = !strcmp(op, "fwdbwd"), assign_only = !strcmp(op, "assign");

    optvq_quantizer_config cfg;
    optvq_quantizer_config_default(&cfg);
    cfg.n_e = bc->n_e;
    cfg.e_dim = bc->e_dim;
    cfg.num_head = bc->num_head;
    cfg.assign = sinkhorn ? OPTVQ_ASSIGN_SINKHORN : OPTVQ_ASSIGN_NEAREST;
    cfg.normalize = OPTVQ_NORMALIZE_ALL;
    cfg.loss = OPTVQ_LOSS_L2;
    cfg.beta = 0.25f;
    cfg.epsilon = 10.0f;
    cfg.n_iters = 5;
    cfg.use_proj = 1;
    optvq_quantizer *q;
    if (optvq_quantizer_create(&cfg, 1234, &q) != OPTVQ_OK)
        return die("create");

    const int64_t B = bc->batch, C = bc->e_dim, H = bc->height, W = bc->width;
    const size_t numel = (size_t)(B * C * H * W), nidx = (size_t)(B * bc->num_head * H * W);
    float *x = malloc(numel * sizeof *x), *xq = malloc(numel * sizeof *xq);
    float *G = malloc(numel * sizeof *G), *gx = malloc(numel * sizeof *gx);
    int64_t *idx = malloc(nidx * sizeof *idx);
    if (!x || !xq || !G || !gx || !idx) {
        fprintf(stderr, "bench_quant: out of memory\n");
        return 1;
    }
    bench_fill_normal(x, numel, 1);
    bench_fill_normal(G, numel, 2);
    const double base_mib = bench_peak_mib(); /* inputs allocated, before the first step */

    double *t = malloc((size_t)reps * sizeof *t);
    float loss = 0;
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        double t0 = bench_now_ms();
        if (bwd) {
            optvq_quantizer_zero_grad(q);
            memset(gx, 0, numel * sizeof *gx);
        }
        if (optvq_quantizer_forward(q, x, B, H, W, assign_only ? NULL : xq, idx, assign_only ? NULL : &loss) !=
            OPTVQ_OK)
            return die("forward");
        if (bwd && optvq_quantizer_backward(q, G, 1.0f, gx) != OPTVQ_OK)
            return die("backward");
        double t1 = bench_now_ms();
        if (r >= 0)
            t[r] = t1 - t0;
    }
    const double peak = bench_peak_mib();
    double tmin = t[0];
    for (int r = 1; r < reps; r++)
        tmin = t[r] < tmin ? t[r] : tmin;
    const double med = bench_median(t, reps);

    optvq_usage u;
    optvq_usage_compute(idx, (int64_t)nidx, bc->n_e, &u);
    printf("RESULT impl=optvq config=%s assign=%s op=%s reps=%d threads=%d median_ms=%.3f min_ms=%.3f "
           "peak_mib=%.1f base_mib=%.1f codes_used=%lld loss=%.6g\n",
           bc->name, argv[2], op, reps, optvq_get_num_threads(), med, tmin, peak, base_mib, (long long)u.codes_used,
           assign_only ? 0.0 : (double)loss);
    optvq_quantizer_free(q);
    free(x);
    free(xq);
    free(G);
    free(gx);
    free(idx);
    free(t);
    return 0;
}
