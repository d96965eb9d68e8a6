/* The bf16 inference convolution (src/nn/conv_bf16.c) and its dispatch
 * (src/nn/conv_infer.c): against a double-precision convolution of the same
 * bf16-rounded inputs (only fp32 summation error may remain) on every
 * geometry the models use and on odd ones; against the fp32 convolution of the
 * unrounded inputs (the bf16 input rounding, NMSE bound); the gathered GEMM
 * against the dense one; thread counts, the scalar kernel, the vector
 * conversion; the cache and the precision switch. */
#include "core/error.h"
#include "core/rng.h"
#include "nn/conv_bf16.h"
#include "nn/conv_infer.h"
#include "nn/gemm_bf16.h"
#include "nn/nn.h"
#include "nn_testutil.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* fp32 unit roundoff (see test_gemm_bf16.c for the summation bound) */
#define U32 (1.0 / 16777216.0)
/* bf16 rounding of both inputs: NMSE ~5e-6 on random data (measured
 * 2.4-2.9e-6 on the f16 coders' shapes, bench_conv_bf16) */
#define NMSE_BF16 1e-5

typedef struct conv_case {
    nn_conv2d_desc d;
    float *x, *w, *b;
    int64_t nx, nw, ny;
} conv_case;

static void case_make(conv_case *c, int64_t n, int64_t cin, int64_t h, int64_t w, int64_t cout, int64_t k,
                      int64_t stride, int64_t pt, int64_t pb, int64_t pl, int64_t pr, optvq_rng *rng)
{
    CHECK_OK(nn_conv2d_init(&c->d, n, cin, h, w, cout, k, k, stride, pt, pb, pl, pr));
    c->nx = n * cin * h * w;
    c->nw = cout * cin * k * k;
    c->ny = n * cout * c->d.h_out * c->d.w_out;
    c->x = nnt_randn(rng, c->nx, 1.0f);
    c->w = nnt_randn(rng, c->nw, (float)(1.0 / sqrt((double)(cin * k * k))));
    c->b = nnt_randn(rng, cout, 0.1f);
}

static void case_free(conv_case *c)
{
    free(c->x);
    free(c->w);
    free(c->b);
}

static void round_bf16(float *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        v[i] = nn_bf16_value(nn_bf16_round(v[i]));
}

/* y = conv(x, w) + b in double, with |x||w| sums for the error bound */
static void conv_double(const conv_case *c, const float *x, const float *w, double *y, double *mag)
{
    const nn_conv2d_desc *d = &c->d;
    for (int64_t n = 0; n < d->n; n++)
        for (int64_t co = 0; co < d->c_out; co++)
            for (int64_t oy = 0; oy < d->h_out; oy++)
                for (int64_t ox = 0; ox < d->w_out; ox++) {
                    double s = 0, m = 0;
                    for (int64_t ci = 0; ci < d->c_in; ci++)
                        for (int64_t ky = 0; ky < d->kh; ky++)
                            for (int64_t kx = 0; kx < d->kw; kx++) {
                                const int64_t iy = oy * d->stride_h - d->pad_t + ky, ix = ox * d->stride_w - d->pad_l + kx;
                                if (iy < 0 || iy >= d->h_in || ix < 0 || ix >= d->w_in)
                                    continue;
                                const double p = (double)x[((n * d->c_in + ci) * d->h_in + iy) * d->w_in + ix] *
                                                 w[((co * d->c_in + ci) * d->kh + ky) * d->kw + kx];
                                s += p;
                                m += fabs(p);
                            }
                    const int64_t i = ((n * d->c_out + co) * d->h_out + oy) * d->w_out + ox;
                    y[i] = s;
                    mag[i] = m;
                }
}

/* bf16 forward into y (fresh workspace of exactly the stated size) */
static void run_bf16(const conv_case *c, float *y, int packed)
{
    nn_workspace ws = {0};
    CHECK_OK(nn_workspace_reserve(&ws, nn_conv_bf16_workspace(&c->d, packed)));
    uint16_t *pw = NULL;
    if (packed) {
        pw = malloc(nn_conv_bf16_packed_weight_elems(&c->d) * sizeof(uint16_t));
        CHECK_OK(nn_conv_bf16_pack_weights(&c->d, c->w, pw));
    }
    CHECK_OK(nn_conv_bf16_forward(y, c->x, packed ? NULL : c->w, pw, c->b, &c->d, &ws));
    free(pw);
    nn_workspace_free(&ws);
}

/* One geometry g = (n, c_in, h, w, c_out, k, stride, pads t, b, l, r):
 * exact-input bound, NMSE against fp32, packed == unpacked, 1 thread == 3
 * threads, scalar == AVX512-BF16. */
static void check_case(const int64_t g[11], optvq_rng *rng)
{
    const int64_t n = g[0], cin = g[1], h = g[2], w = g[3], cout = g[4], k = g[5], stride = g[6];
    const int64_t pt = g[7], pb = g[8], pl = g[9], pr = g[10];
    conv_case c;
    case_make(&c, n, cin, h, w, cout, k, stride, pt, pb, pl, pr, rng);
    float *y = nnt_zeros(c.ny), *y32 = nnt_zeros(c.ny), *y_other = nnt_zeros(c.ny);
    run_bf16(&c, y, 0);

    /* against the fp32 convolution of the unrounded inputs */
    nn_conv2d_forward_naive(y32, c.x, c.w, c.b, &c.d);
    nnt_expect("bf16 conv vs fp32", y, y32, c.ny, NMSE_BF16);

    /* against double sums of the rounded inputs: fp32 summation error only
     * ((K + 2) u sum |x w|, the bias adding one more rounding) */
    float *xr = nnt_copy(c.x, c.nx), *wr = nnt_copy(c.w, c.nw);
    round_bf16(xr, c.nx);
    round_bf16(wr, c.nw);
    double *yd = malloc((size_t)c.ny * sizeof(double)), *mag = malloc((size_t)c.ny * sizeof(double));
    conv_double(&c, xr, wr, yd, mag);
    const int64_t K = cin * k * k, P = c.d.h_out * c.d.w_out;
    int bad = 0;
    for (int64_t i = 0; i < c.ny; i++) {
        const double want = yd[i] + c.b[(i / P) % cout];
        const double bound = (double)(K + 2) * U32 * (mag[i] + fabs(want)) + 1e-30;
        bad += !(fabs((double)y[i] - want) <= bound);
    }
    CHECK_MSG(bad == 0, "%d of %lld outputs outside the fp32 summation bound (cin %lld %lldx%lld k %lld s %lld)", bad,
              (long long)c.ny, (long long)cin, (long long)h, (long long)w, (long long)k, (long long)stride);

    /* weights packed beforehand: the same bits */
    run_bf16(&c, y_other, 1);
    CHECK(!memcmp(y, y_other, (size_t)c.ny * sizeof(float)));
    /* thread counts */
    optvq_set_num_threads(1);
    run_bf16(&c, y_other, 0);
    CHECK(!memcmp(y, y_other, (size_t)c.ny * sizeof(float)));
    optvq_set_num_threads(3);
    run_bf16(&c, y_other, 0);
    CHECK(!memcmp(y, y_other, (size_t)c.ny * sizeof(float)));
    optvq_set_num_threads(0);
    /* the portable kernel and packing */
    nn_gemm_bf16_force_scalar(1);
    run_bf16(&c, y_other, 0);
    nn_gemm_bf16_force_scalar(0);
    CHECK_MSG(!memcmp(y, y_other, (size_t)c.ny * sizeof(float)), "scalar and vector bf16 convolutions differ");

    free(xr), free(wr), free(yd), free(mag);
    free(y), free(y32), free(y_other);
    case_free(&c);
}

TEST(conv_bf16_model_geometries)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, 1701);
    /* n, c_in, h, w, c_out, k, stride, pads (t, b, l, r): the f16 coders'
     * kinds at small sizes (3x3 same, 1x1, the stride-2 downsample with
     * (0, 1, 0, 1) padding, conv_in from 3 channels), the plain CNN's */
    const int64_t cases[][11] = {
        {1, 32, 24, 40, 48, 3, 1, 1, 1, 1, 1}, {2, 16, 33, 17, 24, 3, 1, 1, 1, 1, 1},
        {1, 48, 20, 36, 40, 1, 1, 0, 0, 0, 0}, {1, 24, 34, 34, 24, 3, 2, 0, 1, 0, 1},
        {1, 3, 32, 32, 32, 3, 1, 1, 1, 1, 1},  {2, 1, 32, 32, 16, 4, 2, 1, 1, 1, 1},
        {1, 64, 16, 16, 64, 3, 1, 1, 1, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(cases[i], &rng);
}

TEST(conv_bf16_odd_shapes)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, 1702);
    /* 1x1 images, widths under 16 (element-wise packing), odd K (K pairs
     * padded), 5x5 kernels, stride 3, one output channel, 13 > MR rows */
    const int64_t cases[][11] = {
        {1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0},  {1, 3, 5, 7, 13, 3, 1, 1, 1, 1, 1}, {3, 5, 9, 11, 1, 5, 1, 2, 2, 2, 2},
        {1, 7, 20, 19, 5, 3, 3, 1, 0, 2, 1}, {1, 2, 15, 47, 25, 3, 1, 0, 2, 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(cases[i], &rng);
}

/* The gathered GEMM equals the dense one on the same matrix, whether the
 * column offsets run consecutively (vector loads) or not (element loads). */
TEST(gemm_bf16_gather_vs_dense)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, 1703);
    const int64_t M = 29, N = 700, K = 77, ldb = 1500;
    float *af = nnt_randn(&rng, M * K, 1.0f), *bf = nnt_randn(&rng, K * ldb, 1.0f);
    uint16_t *a = malloc((size_t)(M * K) * sizeof(uint16_t)), *b = malloc((size_t)(K * ldb) * sizeof(uint16_t));
    nn_f32_to_bf16(af, a, M * K);
    nn_f32_to_bf16(bf, b, K * ldb);
    uint16_t *pa = malloc(nn_gemm_bf16_packed_a_elems(M, K) * sizeof(uint16_t));
    CHECK_OK(nn_gemm_bf16_pack_a(M, K, a, K, pa));
    /* columns: runs of consecutive offsets of lengths 1..40 with gaps */
    int64_t *col = malloc((size_t)N * sizeof(int64_t)), *row = malloc((size_t)K * sizeof(int64_t));
    for (int64_t j = 0, off = 0, run = 0; j < N; j++) {
        if (run == 0) {
            run = 1 + (int64_t)(optvq_rng_uniform(&rng) * 40);
            off += 1 + (int64_t)(optvq_rng_uniform(&rng) * 3);
        }
        col[j] = off++;
        run--;
    }
    CHECK(col[N - 1] < ldb);
    /* rows: a permutation of B's rows */
    for (int64_t k = 0; k < K; k++)
        row[k] = ((k * 31) % K) * ldb;
    /* the dense matrix those offsets describe */
    uint16_t *dense = malloc((size_t)(K * N) * sizeof(uint16_t));
    for (int64_t k = 0; k < K; k++)
        for (int64_t j = 0; j < N; j++)
            dense[k * N + j] = b[row[k] + col[j]];
    float *c1 = nnt_zeros(M * N), *c2 = nnt_zeros(M * N);
    for (int scalar = 0; scalar < 2; scalar++) {
        nn_gemm_bf16_force_scalar(scalar);
        CHECK_OK(nn_gemm_bf16_packed(M, N, K, pa, dense, N, c1, N, NULL, 0));
        CHECK_OK(nn_gemm_bf16_packed_gather(M, N, K, pa, b, row, col, c2, N, NULL, 0));
        CHECK(!memcmp(c1, c2, (size_t)(M * N) * sizeof(float)));
    }
    nn_gemm_bf16_force_scalar(0);
    /* refusals */
    CHECK(nn_gemm_bf16_packed_gather(M, N, K, pa, b, NULL, col, c2, N, NULL, 0) == OPTVQ_ERR_INVALID_ARG);
    CHECK(nn_gemm_bf16_packed_gather(M, N, K, pa, b, row, col, c2, N - 1, NULL, 0) == OPTVQ_ERR_INVALID_ARG);
    /* fp32 A packed with rounding == bf16 A packed */
    uint16_t *pa2 = malloc(nn_gemm_bf16_packed_a_elems(M, K) * sizeof(uint16_t));
    CHECK_OK(nn_gemm_bf16_pack_a_f32(M, K, af, K, pa2));
    CHECK(!memcmp(pa, pa2, nn_gemm_bf16_packed_a_elems(M, K) * sizeof(uint16_t)));
    free(af), free(bf), free(a), free(b), free(pa), free(pa2), free(col), free(row), free(dense), free(c1), free(c2);
}

/* The vector conversion gives the scalar one's bits on every kind of value. */
TEST(bf16_convert_vector_equals_scalar)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, 1704);
    enum { N = 4099 };
    float *x = malloc(N * sizeof(float));
    uint16_t *fast = malloc(N * sizeof(uint16_t)), *slow = malloc(N * sizeof(uint16_t));
    static const uint32_t specials[] = {0x00000000u, 0x80000000u, 0x00000001u, 0x807fffffu, 0x7f800000u,
                                        0xff800000u, 0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu,
                                        0x7f7fffffu, 0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x00408000u};
    for (int i = 0; i < N; i++) {
        uint32_t u = i < (int)(sizeof specials / sizeof specials[0]) ? specials[i] : (uint32_t)optvq_rng_u64(&rng);
        memcpy(&x[i], &u, sizeof u);
    }
    nn_f32_to_bf16(x, fast, N);
    nn_gemm_bf16_force_scalar(1);
    nn_f32_to_bf16(x, slow, N);
    nn_gemm_bf16_force_scalar(0);
    CHECK(!memcmp(fast, slow, N * sizeof(uint16_t)));
    for (int i = 0; i < N; i++)
        CHECK(slow[i] == nn_bf16_round(x[i]));
    free(x), free(fast), free(slow);
}

/* nn_conv2d_forward_infer with a bf16 cache: the bf16 convolution's bits,
 * packed weights kept while the budget allows and following weight changes;
 * its workspace query is enough; fp32 again after the switch back. */
TEST(conv_infer_bf16_dispatch_and_cache)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, 1705);
    conv_case c;
    case_make(&c, 1, 40, 20, 24, 36, 3, 1, 1, 1, 1, 1, &rng);
    /* 12 MFLOP: under the threshold, so fp32 ... */
    CHECK(!nn_conv_bf16_pays(&c.d));
    {
        nn_conv_cache *cache = nn_conv_cache_create(0);
        nn_conv_cache_set_precision(cache, NN_PRECISION_BF16);
        nn_workspace ws = {0};
        CHECK(nn_conv2d_workspace_infer(&c.d, NN_PRECISION_BF16) == nn_conv2d_workspace_infer(&c.d, NN_PRECISION_FP32));
        CHECK_OK(nn_workspace_reserve(&ws, nn_conv2d_workspace_infer(&c.d, NN_PRECISION_BF16)));
        float *a = nnt_zeros(c.ny), *b = nnt_zeros(c.ny);
        CHECK_OK(nn_conv2d_forward_infer(a, c.x, c.w, c.b, &c.d, &ws, cache));
        CHECK_OK(nn_conv2d_forward(b, c.x, c.w, c.b, &c.d, &ws));
        CHECK(!memcmp(a, b, (size_t)c.ny * sizeof(float)));
        free(a), free(b);
        nn_workspace_free(&ws);
        nn_conv_cache_free(cache);
    }
    /* ... unless the threshold is lowered */
    nn_conv_bf16_set_min_flop(0);
    CHECK(nn_conv_bf16_pays(&c.d));
    float *y_direct = nnt_zeros(c.ny), *y_infer = nnt_zeros(c.ny), *y32 = nnt_zeros(c.ny);
    run_bf16(&c, y_direct, 0);
    const size_t packed_bytes = nn_conv_bf16_packed_weight_elems(&c.d) * sizeof(uint16_t);
    for (int budget = 0; budget < 2; budget++) {
        nn_conv_cache *cache = nn_conv_cache_create(budget ? packed_bytes : 0);
        CHECK(cache != NULL);
        CHECK(nn_conv_cache_precision(cache) == NN_PRECISION_FP32);
        nn_conv_cache_set_precision(cache, NN_PRECISION_BF16);
        CHECK(nn_conv_cache_precision(cache) == NN_PRECISION_BF16);
        nn_workspace ws = {0};
        CHECK_OK(nn_workspace_reserve(&ws, nn_conv2d_workspace_infer(&c.d, NN_PRECISION_BF16)));
        const size_t empty = nn_conv_cache_bytes(cache);
        CHECK_OK(nn_conv2d_forward_infer(y_infer, c.x, c.w, c.b, &c.d, &ws, cache));
        CHECK(!memcmp(y_infer, y_direct, (size_t)c.ny * sizeof(float)));
        const size_t held = nn_conv_cache_bytes(cache);
        CHECK(budget ? held >= empty + packed_bytes : held == empty);
        CHECK_OK(nn_conv2d_forward_infer(y_infer, c.x, c.w, c.b, &c.d, &ws, cache));
        CHECK(!memcmp(y_infer, y_direct, (size_t)c.ny * sizeof(float)));
        CHECK(nn_conv_cache_bytes(cache) == held); /* reused, not added */
        /* the weights change in place: the packed copy follows */
        float *w_old = nnt_copy(c.w, c.nw);
        for (int64_t i = 0; i < c.nw; i += 5)
            c.w[i] = -c.w[i];
        float *y_changed = nnt_zeros(c.ny);
        run_bf16(&c, y_changed, 0);
        CHECK_OK(nn_conv2d_forward_infer(y_infer, c.x, c.w, c.b, &c.d, &ws, cache));
        CHECK(!memcmp(y_infer, y_changed, (size_t)c.ny * sizeof(float)));
        CHECK(memcmp(y_infer, y_direct, (size_t)c.ny * sizeof(float)) != 0);
        memcpy(c.w, w_old, (size_t)c.nw * sizeof(float));
        free(w_old), free(y_changed);
        /* back to fp32: conv2d's result (no Winograd at 40 channels) */
        nn_conv_cache_set_precision(cache, NN_PRECISION_FP32);
        CHECK_OK(nn_workspace_reserve(&ws, nn_conv2d_workspace_infer(&c.d, NN_PRECISION_FP32)));
        CHECK_OK(nn_conv2d_forward_infer(y_infer, c.x, c.w, c.b, &c.d, &ws, cache));
        CHECK_OK(nn_conv2d_forward(y32, c.x, c.w, c.b, &c.d, &ws));
        CHECK(!memcmp(y_infer, y32, (size_t)c.ny * sizeof(float)));
        /* a workspace too small is refused with the op's name */
        nn_workspace small = {0};
        CHECK_OK(nn_workspace_reserve(&small, 8));
        CHECK(nn_conv_bf16_forward(y_infer, c.x, c.w, NULL, c.b, &c.d, &small) == OPTVQ_ERR_INVALID_ARG);
        CHECK(strstr(optvq_last_error(), "conv_bf16_forward") != NULL);
        nn_workspace_free(&small);
        nn_workspace_free(&ws);
        nn_conv_cache_free(cache);
    }
    nn_conv_bf16_set_min_flop(-1);
    CHECK(!nn_conv_bf16_pays(&c.d));
    free(y_direct), free(y_infer), free(y32);
    case_free(&c);
}
