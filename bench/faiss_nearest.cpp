// faiss_nearest — times faiss::IndexFlatL2 k=1 search of the N quantizer
// vectors against the n_e-code codebook, the baseline for optvq's nearest
// assignment.
//
//   faiss_nearest CONFIG REPS THREADS
//
// The codebook is optvq's effective codebook (E W^T + b) for the same seed as
// bench_quant (read through the public API), and x the same random input,
// cut into (N, code_dim) vectors ordered (b, y, x, head) as the quantizer does
// (the reordering is not timed; index.add is not timed). After timing and
// reading the peak RSS, optvq's nearest forward runs once in this process to
// report how many indices agree. Prints one line: RESULT key=value ...
#include <faiss/IndexFlat.h>
#include <faiss/utils/distances.h>
#include <omp.h>

#include <vector>

extern "C" {
#include "bench_common.h"
#include "optvq/optvq.h"
void openblas_set_num_threads(int num_threads);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: faiss_nearest mnist|imagenet REPS THREADS\n");
        return 2;
    }
    const bench_cfg *bc = bench_find_cfg(argv[1]);
    const int reps = atoi(argv[2]), threads = atoi(argv[3]);
    if (!bc || reps < 1 || threads < 1) {
        fprintf(stderr, "faiss_nearest: bad arguments\n");
        return 2;
    }
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);

    optvq_quantizer_config cfg;
    optvq_quantizer_config_default(&cfg);
    cfg.n_e = bc->n_e;
    cfg.e_dim = bc->e_dim;
    cfg.num_head = bc->num_head;
    cfg.assign = OPTVQ_ASSIGN_NEAREST;
    cfg.use_proj = 1;
    optvq_quantizer *q;
    if (optvq_quantizer_create(&cfg, 1234, &q) != OPTVQ_OK) {
        fprintf(stderr, "faiss_nearest: %s\n", optvq_last_error());
        return 1;
    }
    const int64_t B = bc->batch, C = bc->e_dim, H = bc->height, W = bc->width, h = bc->num_head;
    const int64_t d = C / h, n_e = bc->n_e, N = B * H * W * h;
    std::vector<float> cb((size_t)(n_e * d)), x((size_t)(B * C * H * W)), xv((size_t)(N * d));
    optvq_quantizer_codebook(q, cb.data());
    bench_fill_normal(x.data(), x.size(), 1);
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t y = 0; y < H; y++)
                for (int64_t xx = 0; xx < W; xx++)
                    xv[(size_t)(((b * H + y) * W + xx) * C + c)] = x[(size_t)(((b * C + c) * H + y) * W + xx)];

    faiss::IndexFlatL2 index((faiss::Index::idx_t)d);
    index.add((faiss::Index::idx_t)n_e, cb.data());
    std::vector<float> D((size_t)N);
    std::vector<faiss::Index::idx_t> I((size_t)N);
    const double base_mib = bench_peak_mib();
    std::vector<double> t((size_t)reps);
    for (int r = -1; r < reps; r++) {
        double t0 = bench_now_ms();
        index.search((faiss::Index::idx_t)N, xv.data(), 1, D.data(), I.data());
        double t1 = bench_now_ms();
        if (r >= 0)
            t[(size_t)r] = t1 - t0;
    }
    const double peak = bench_peak_mib();
    double tmin = t[0];
    for (double v : t)
        tmin = v < tmin ? v : tmin;
    const double med = bench_median(t.data(), reps);

    // Agreement with optvq's nearest assignment (indices (B, h, H, W)).
    std::vector<int64_t> idx((size_t)N);
    int64_t agree = -1;
    if (optvq_quantizer_forward(q, x.data(), B, H, W, NULL, idx.data(), NULL) == OPTVQ_OK) {
        agree = 0;
        for (int64_t b = 0; b < B; b++)
            for (int64_t hd = 0; hd < h; hd++)
                for (int64_t y = 0; y < H; y++)
                    for (int64_t xx = 0; xx < W; xx++)
                        agree += idx[(size_t)(((b * h + hd) * H + y) * W + xx)] ==
                                 (int64_t)I[(size_t)(((b * H + y) * W + xx) * h + hd)];
    }
    printf("RESULT impl=faiss config=%s assign=nearest op=search reps=%d threads=%d median_ms=%.3f min_ms=%.3f "
           "peak_mib=%.1f base_mib=%.1f agree=%lld/%lld\n",
           bc->name, reps, threads, med, tmin, peak, base_mib, (long long)agree, (long long)N);
    optvq_quantizer_free(q);
    return 0;
}
