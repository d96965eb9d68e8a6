/* Streamed Sinkhorn at a size whose cost matrix can never be held:
 * N vectors x n_e codes x d (default 262,144 x 65,536 x 8: a 64 GiB float32
 * matrix). Prints the inputs, the wall time and the process's peak RSS.
 *   bench_stream [N] [n_e] [d] [log] [workspace_mib]   (log: 1 = log-domain path) */
#include "optvq/optvq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rng.h"

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

int main(int argc, char **argv)
{
    int64_t N = argc > 1 ? atoll(argv[1]) : 262144, n_e = argc > 2 ? atoll(argv[2]) : 65536;
    int64_t d = argc > 3 ? atoll(argv[3]) : 8;
    int log_domain = argc > 4 ? atoi(argv[4]) : 0;
    long ws_mib = argc > 5 ? atol(argv[5]) : 512;
    optvq_quantizer_config cfg;
    optvq_quantizer_config_default(&cfg);
    cfg.n_e = n_e;
    cfg.e_dim = d;
    cfg.num_head = 1;
    cfg.log_domain = log_domain;
    cfg.workspace_bytes = ws_mib > 0 ? (size_t)ws_mib << 20 : 1;
    printf("streamed sinkhorn: N=%lld n_e=%lld d=%lld (cost matrix %.1f GiB), workspace %d MiB, threads %d, %s\n",
           (long long)N, (long long)n_e, (long long)d, (double)N * (double)n_e * 4 / (1 << 30), (int)ws_mib,
           optvq_get_num_threads(), log_domain ? "log-domain" : "linear");
    optvq_quantizer *q;
    if (optvq_quantizer_create(&cfg, 1, &q) != OPTVQ_OK) {
        fprintf(stderr, "%s\n", optvq_last_error());
        return 1;
    }
    float *x = malloc((size_t)(N * d) * sizeof(float));
    int64_t *ind = malloc((size_t)N * sizeof(int64_t));
    optvq_rng rng;
    optvq_rng_seed(&rng, 2);
    for (int64_t i = 0; i < N * d; i++)
        x[i] = (float)optvq_rng_normal(&rng);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    float loss;
    if (optvq_quantizer_forward(q, x, N, 1, 1, NULL, ind, &loss) != OPTVQ_OK) {
        fprintf(stderr, "%s\n", optvq_last_error());
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    optvq_usage u;
    optvq_usage_compute(ind, N, n_e, &u);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("forward %.1f s (%.2f ns per matrix entry per pass-set), peak RSS %.0f MiB, codes used %lld/%lld, "
           "perplexity %.0f, loss %.4f\n",
           sec, sec * 1e9 / ((double)N * (double)n_e), peak_rss_kib() / 1024.0, (long long)u.codes_used,
           (long long)n_e, u.perplexity, loss);
    optvq_quantizer_free(q);
    free(x);
    free(ind);
    return 0;
}
