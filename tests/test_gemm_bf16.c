/* The bf16 GEMM (src/nn/gemm_bf16.c): fp32 -> bf16 rounding; the GEMM against
 * a double-precision product of the same bf16 inputs (the only error left is
 * fp32 accumulation) and against fp32 sgemm of the unrounded inputs (the bf16
 * input rounding); odd sizes, strides, thread-count independence, the
 * pre-packed A path, the scalar kernel against the AVX512-BF16 one, and
 * argument errors. */
#include "core/error.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "nn/gemm_bf16.h"
#include "test.h"

#include <cblas.h>
#include <float.h>
#include <stdlib.h>
#include <string.h>

/* fp32 unit roundoff: each of the K additions of exact bf16 products into an
 * fp32 sum rounds once, so |C - exact| <= (K + 1) u sum|a||b| (the classic
 * recursive-summation bound, with room for second-order terms). */
#define U32 (1.0 / 16777216.0)
/* bf16 keeps 8 significant bits: rounding an input of significand m in
 * [1, 2) adds an error uniform in +-2^-8 absolute on m, a relative variance
 * E[2^-14 / (12 m^2)] = 2^-14 / 24 = 2.5e-6 per input (m ~ uniform). The two
 * inputs' errors are independent of each other and of the signs, so they add
 * up like the signal: NMSE ~ 2 * 2.5e-6 = 5.1e-6 for random inputs (measured
 * 5.4-5.9e-6 over thousands of outputs). 1e-5 allows for that spread; a
 * kernel error (a lost or doubled term) costs NMSE ~1/K or more. */
#define NMSE_VS_SGEMM 1e-5

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint16_t to_bf16(float f)
{
    uint16_t h;
    nn_f32_to_bf16(&f, &h, 1);
    return h;
}

static int bf16_is_nan(uint16_t h) { return (h & 0x7fffu) > 0x7f80u; }

TEST(bf16_convert_exact_ties_specials)
{
    /* exactly representable values keep their bits */
    CHECK(to_bf16(1.0f) == 0x3f80);
    CHECK(to_bf16(-2.0f) == 0xc000);
    CHECK(to_bf16(0.0f) == 0x0000);
    CHECK(to_bf16(-0.0f) == 0x8000);
    CHECK(to_bf16(0.15625f) == 0x3e20);
    /* ties go to the even neighbour, either way */
    CHECK(to_bf16(float_of(0x3f808000u)) == 0x3f80); /* 1 + 2^-8: tie, 0x3f80 even */
    CHECK(to_bf16(float_of(0x3f818000u)) == 0x3f82); /* tie between 0x3f81 and 0x3f82 */
    CHECK(to_bf16(float_of(0xbf818000u)) == 0xbf82);
    CHECK(to_bf16(float_of(0x3f808001u)) == 0x3f81); /* just above the tie */
    CHECK(to_bf16(float_of(0x3f807fffu)) == 0x3f80); /* just below */
    /* rounding carries into the exponent; FLT_MAX rounds to Inf */
    CHECK(to_bf16(float_of(0x3fffffffu)) == 0x4000);
    CHECK(to_bf16(FLT_MAX) == 0x7f80);
    CHECK(to_bf16(-FLT_MAX) == 0xff80);
    /* Inf stays Inf; NaN stays NaN, even with a payload only in the low bits */
    CHECK(to_bf16(INFINITY) == 0x7f80);
    CHECK(to_bf16(-INFINITY) == 0xff80);
    CHECK(to_bf16(NAN) == 0x7fc0);
    CHECK(bf16_is_nan(to_bf16(float_of(0x7f800001u))));
    CHECK(bf16_is_nan(to_bf16(float_of(0x7fffffffu))));
    uint16_t neg_nan = to_bf16(float_of(0xff800001u));
    CHECK(bf16_is_nan(neg_nan) && (neg_nan & 0x8000u));
    /* denormals round like any other value */
    CHECK(to_bf16(float_of(0x00008000u)) == 0x0000);
    CHECK(to_bf16(float_of(0x00018000u)) == 0x0002);
    /* every non-NaN bf16 survives bf16 -> fp32 -> bf16 */
    int roundtrip_bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if (bf16_is_nan((uint16_t)h))
            continue;
        float f;
        uint16_t back;
        const uint16_t h16 = (uint16_t)h;
        nn_bf16_to_f32(&h16, &f, 1);
        nn_f32_to_bf16(&f, &back, 1);
        roundtrip_bad += back != h16 || bits_of(f) != h << 16;
    }
    CHECK_MSG(roundtrip_bad == 0, "%d bf16 values change in a round trip", roundtrip_bad);
}

/* Random finite floats against nearest-even chosen in double: the result is
 * one of the two bf16 neighbours, the nearer one, the even one on a tie. */
TEST(bf16_convert_random_nearest_even)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, 16);
    enum { N = 200000 };
    float *x = malloc(N * sizeof(float));
    uint16_t *h = malloc(N * sizeof(uint16_t));
    for (int i = 0; i < N; i++) {
        uint32_t u;
        do
            u = (uint32_t)optvq_rng_u64(&rng);
        while ((u & 0x7f800000u) == 0x7f800000u || (u & 0x7fffffffu) >= 0x7f7f8000u); /* finite, no overflow */
        x[i] = float_of(u);
    }
    nn_f32_to_bf16(x, h, N);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        const uint32_t u = bits_of(x[i]);
        const uint32_t lo = u >> 16, hi = lo + 1;
        const double d_lo = fabs((double)x[i] - (double)float_of(lo << 16));
        const double d_hi = fabs((double)x[i] - (double)float_of(hi << 16));
        const uint32_t want = d_lo < d_hi ? lo : d_hi < d_lo ? hi : (lo & 1u ? hi : lo);
        bad += h[i] != want;
    }
    CHECK_MSG(bad == 0, "%d of %d conversions are not nearest-even", bad, N);
    free(x);
    free(h);
}

typedef struct gemm_case {
    int64_t m, n, k, lda, ldb, ldc;
    uint16_t *a, *b;  /* bf16 inputs */
    float *af, *bf;   /* the unrounded fp32 inputs */
} gemm_case;

static void case_make(gemm_case *g, int64_t m, int64_t n, int64_t k, int64_t pad, optvq_rng *rng)
{
    g->m = m, g->n = n, g->k = k;
    g->lda = k + pad, g->ldb = n + pad, g->ldc = n + pad;
    g->af = malloc((size_t)(m * g->lda) * sizeof(float) + 1);
    g->bf = malloc((size_t)(k * g->ldb) * sizeof(float) + 1);
    g->a = malloc((size_t)(m * g->lda) * sizeof(uint16_t) + 1);
    g->b = malloc((size_t)(k * g->ldb) * sizeof(uint16_t) + 1);
    for (int64_t i = 0; i < m * g->lda; i++)
        g->af[i] = (float)optvq_rng_normal(rng);
    for (int64_t i = 0; i < k * g->ldb; i++)
        g->bf[i] = (float)optvq_rng_normal(rng);
    nn_f32_to_bf16(g->af, g->a, m * g->lda);
    nn_f32_to_bf16(g->bf, g->b, k * g->ldb);
}

static void case_free(gemm_case *g)
{
    free(g->af);
    free(g->bf);
    free(g->a);
    free(g->b);
}

/* C in a buffer whose row padding holds a sentinel the GEMM must not touch. */
static float *c_alloc(const gemm_case *g)
{
    float *c = malloc((size_t)(g->m * g->ldc) * sizeof(float) + 1);
    for (int64_t i = 0; i < g->m * g->ldc; i++)
        c[i] = -12345.0f;
    return c;
}

static int padding_intact(const gemm_case *g, const float *c)
{
    for (int64_t i = 0; i < g->m; i++)
        for (int64_t j = g->n; j < g->ldc; j++)
            if (c[i * g->ldc + j] != -12345.0f)
                return 0;
    return 1;
}

/* Worst |C - exact| / ((K + 1) u sum|a||b|) over C, exact in double from the
 * bf16 inputs: <= 1 by the summation bound. */
static double worst_vs_exact(const gemm_case *g, const float *c)
{
    double worst = 0;
    for (int64_t i = 0; i < g->m; i++)
        for (int64_t j = 0; j < g->n; j++) {
            double s = 0, s_abs = 0;
            for (int64_t p = 0; p < g->k; p++) {
                double t = (double)nn_bf16_value(g->a[i * g->lda + p]) * nn_bf16_value(g->b[p * g->ldb + j]);
                s += t;
                s_abs += fabs(t);
            }
            double bound = (double)(g->k + 1) * U32 * s_abs;
            double e = fabs((double)c[i * g->ldc + j] - s);
            double r = bound > 0 ? e / bound : (e > 0 ? INFINITY : 0);
            if (!(r <= worst))
                worst = isnan(r) ? INFINITY : r;
        }
    return worst;
}

static double nmse_vs_sgemm(const gemm_case *g, const float *c)
{
    float *ref = malloc((size_t)(g->m * g->n) * sizeof(float) + 1);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->m, (int)g->n, (int)g->k, 1.0f, g->af,
                (int)g->lda, g->bf, (int)g->ldb, 0.0f, ref, (int)g->n);
    double num = 0, den = 0;
    for (int64_t i = 0; i < g->m; i++)
        for (int64_t j = 0; j < g->n; j++) {
            double d = (double)c[i * g->ldc + j] - ref[i * g->n + j];
            num += d * d;
            den += (double)ref[i * g->n + j] * ref[i * g->n + j];
        }
    free(ref);
    return den > 0 ? num / den : num;
}

static optvq_status run_gemm(const gemm_case *g, float *c)
{
    return nn_gemm_bf16(g->m, g->n, g->k, g->a, g->lda, g->b, g->ldb, c, g->ldc, NULL, 0);
}

/* Every combination of M, N, K in {1, 3, 17, 33, 100} (K odd and even), with
 * and without row padding: within the fp32 summation bound of the exact
 * product of the bf16 inputs. */
TEST(gemm_bf16_small_sizes_vs_exact)
{
    static const int64_t sizes[] = {1, 3, 17, 33, 100};
    optvq_rng rng;
    optvq_rng_seed(&rng, 1601);
    double worst_all = 0;
    int failures = 0;
    for (int im = 0; im < 5; im++)
        for (int in = 0; in < 5; in++)
            for (int ik = 0; ik < 5; ik++) {
                gemm_case g;
                case_make(&g, sizes[im], sizes[in], sizes[ik], (im + in + ik) % 2 ? 3 : 0, &rng);
                float *c = c_alloc(&g);
                CHECK_OK(run_gemm(&g, c));
                double w = worst_vs_exact(&g, c);
                if (!(w <= 1.0) || !padding_intact(&g, c)) {
                    fprintf(stderr, "    M %lld N %lld K %lld: error %.3g of the bound, padding %s\n",
                            (long long)g.m, (long long)g.n, (long long)g.k, w,
                            padding_intact(&g, c) ? "intact" : "overwritten");
                    failures++;
                }
                if (w > worst_all)
                    worst_all = w;
                free(c);
                case_free(&g);
            }
    printf("    125 shapes: worst error %.3g of the (K+1)u sum|ab| bound\n", worst_all);
    CHECK(failures == 0);
}

/* Sizes crossing every block edge (K blocks of 384, column chunks of 512,
 * 12-row panels, 32-column tiles), odd K: against the exact product, against
 * sgemm of the unrounded inputs, the same bits at 1, 2 and 3 threads and
 * through the pre-packed A path. */
TEST(gemm_bf16_blocked_threads_packed)
{
    static const int64_t shapes[][3] = {{100, 1000, 1001}, {37, 530, 401}, {25, 65, 770}};
    optvq_rng rng;
    optvq_rng_seed(&rng, 1602);
    for (int s = 0; s < 3; s++) {
        gemm_case g;
        case_make(&g, shapes[s][0], shapes[s][1], shapes[s][2], s == 1 ? 5 : 0, &rng);
        float *c = c_alloc(&g), *c1 = c_alloc(&g);
        CHECK_OK(run_gemm(&g, c));
        double w = worst_vs_exact(&g, c), nmse = nmse_vs_sgemm(&g, c);
        printf("    M %lld N %lld K %lld: error %.3g of the bound; vs sgemm of fp32 inputs NMSE %.3g\n",
               (long long)g.m, (long long)g.n, (long long)g.k, w, nmse);
        CHECK(w <= 1.0);
        CHECK(nmse <= NMSE_VS_SGEMM);
        CHECK(padding_intact(&g, c));
        for (int nt = 1; nt <= 3; nt++) {
            optvq_set_num_threads(nt);
            memset(c1, 0, (size_t)(g.m * g.ldc) * sizeof(float));
            CHECK_OK(run_gemm(&g, c1));
            for (int64_t i = 0; i < g.m; i++)
                CHECK_MSG(!memcmp(c1 + i * g.ldc, c + i * g.ldc, (size_t)g.n * sizeof(float)),
                          "%d threads: row %lld differs", nt, (long long)i);
        }
        optvq_set_num_threads(0);
        /* pre-packed A, caller's workspace */
        uint16_t *pa = malloc(nn_gemm_bf16_packed_a_elems(g.m, g.k) * sizeof(uint16_t));
        CHECK_OK(nn_gemm_bf16_pack_a(g.m, g.k, g.a, g.lda, pa));
        size_t wsb = nn_gemm_bf16_packed_workspace(g.m, g.n, g.k);
        void *ws = aligned_alloc(64, (wsb + 63) / 64 * 64);
        memset(c1, 0, (size_t)(g.m * g.ldc) * sizeof(float));
        CHECK_OK(nn_gemm_bf16_packed(g.m, g.n, g.k, pa, g.b, g.ldb, c1, g.ldc, ws, wsb));
        for (int64_t i = 0; i < g.m; i++)
            CHECK_MSG(!memcmp(c1 + i * g.ldc, c + i * g.ldc, (size_t)g.n * sizeof(float)),
                      "pre-packed A: row %lld differs", (long long)i);
        free(ws);
        free(pa);
        free(c);
        free(c1);
        case_free(&g);
    }
}

/* The scalar kernel (forced) computes the instruction's sums in its order:
 * the same bits as the AVX512-BF16 kernel, and within the bound itself. */
TEST(gemm_bf16_scalar_vs_avx512)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, 1603);
    gemm_case g;
    case_make(&g, 29, 200, 999, 1, &rng);
    float *c_fast = c_alloc(&g), *c_scalar = c_alloc(&g);
    CHECK_OK(run_gemm(&g, c_fast));
    nn_gemm_bf16_force_scalar(1);
    CHECK_OK(run_gemm(&g, c_scalar));
    nn_gemm_bf16_force_scalar(0);
    double w = worst_vs_exact(&g, c_scalar);
    printf("    scalar kernel: error %.3g of the bound\n", w);
    CHECK(w <= 1.0);
    CHECK(padding_intact(&g, c_scalar));
    if (nn_bf16_available()) {
        int differ = 0;
        for (int64_t i = 0; i < g.m; i++)
            differ += memcmp(c_fast + i * g.ldc, c_scalar + i * g.ldc, (size_t)g.n * sizeof(float)) != 0;
        CHECK_MSG(differ == 0, "scalar and AVX512-BF16 kernels differ in %d rows", differ);
    } else {
        printf("    this CPU lacks AVX512-BF16: only the scalar kernel ran\n");
    }
    free(c_fast);
    free(c_scalar);
    case_free(&g);
}

TEST(gemm_bf16_edges_and_errors)
{
    uint16_t a[6] = {0x3f80, 0x4000, 0x4040, 0x4080, 0x40a0, 0x40c0}; /* 1..6 */
    float c[4] = {7, 7, 7, 7};
    /* K = 0: the empty sum overwrites C with zeros */
    CHECK_OK(nn_gemm_bf16(2, 2, 0, a, 0, a, 2, c, 2, NULL, 0));
    CHECK(c[0] == 0 && c[1] == 0 && c[2] == 0 && c[3] == 0);
    /* a 2x3 times 3x2 product, exact in fp32: [[1,2,3],[4,5,6]] x [[1,2],[3,4],[5,6]] */
    CHECK_OK(nn_gemm_bf16(2, 2, 3, a, 3, a, 2, c, 2, NULL, 0));
    CHECK(c[0] == 22 && c[1] == 28 && c[2] == 49 && c[3] == 64);
    /* M or N = 0: nothing to do, nothing read */
    CHECK_OK(nn_gemm_bf16(0, 5, 5, NULL, 5, NULL, 5, NULL, 5, NULL, 0));
    /* bad arguments fail with a message and touch nothing */
    c[0] = 7;
    CHECK(nn_gemm_bf16(-1, 2, 3, a, 3, a, 2, c, 2, NULL, 0) == OPTVQ_ERR_INVALID_ARG);
    CHECK(nn_gemm_bf16(2, 2, 3, a, 2, a, 2, c, 2, NULL, 0) == OPTVQ_ERR_INVALID_ARG); /* lda < K */
    CHECK(nn_gemm_bf16(2, 2, 3, a, 3, a, 1, c, 2, NULL, 0) == OPTVQ_ERR_INVALID_ARG); /* ldb < N */
    CHECK(nn_gemm_bf16(2, 2, 3, NULL, 3, a, 2, c, 2, NULL, 0) == OPTVQ_ERR_INVALID_ARG);
    CHECK(strstr(optvq_last_error(), "gemm_bf16") != NULL);
    char small_ws[64] __attribute__((aligned(64)));
    CHECK(nn_gemm_bf16(2, 2, 3, a, 3, a, 2, c, 2, small_ws, 1) == OPTVQ_ERR_INVALID_ARG);
    CHECK(strstr(optvq_last_error(), "workspace") != NULL);
    CHECK(c[0] == 7);
    CHECK(nn_gemm_bf16_workspace(2, 2, 3) > 0 && nn_gemm_bf16_workspace(-1, 2, 3) == 0);
}
