/* Winograd F(4x4, 3x3) (src/nn/conv_winograd.c) against the direct fp32
 * convolution (nn_conv2d_forward) and the double-accumulating naive one, on
 * the f16 model's shapes and on tiny / odd ones; the filter cache, the switch
 * and the inference dispatch. */
#include "core/error.h"
#include "nn/conv_winograd.h"
#include "nn/nn.h"
#include "nn_testutil.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NMSE_WINO 1e-10

/* Inputs like the model's: swish(N(0, 1)) (what a ResnetBlock's conv sees
 * after GroupNorm + swish) or N(0, 1); weights and biases U(-1, 1) / sqrt(9 c_in)
 * (PyTorch's default init). */
static void fill(float *x, int64_t nx, float *w, int64_t nw, float *b, int64_t cout, int64_t cin, int swish,
                 optvq_rng *rng)
{
    for (int64_t i = 0; i < nx; i++) {
        float v = (float)optvq_rng_normal(rng);
        x[i] = swish ? v / (1.0f + expf(-v)) : v;
    }
    const double bound = 1.0 / sqrt(9.0 * (double)cin);
    for (int64_t i = 0; i < nw; i++)
        w[i] = (float)((2.0 * optvq_rng_uniform(rng) - 1.0) * bound);
    for (int64_t i = 0; i < cout; i++)
        b[i] = (float)((2.0 * optvq_rng_uniform(rng) - 1.0) * bound);
}

/* Winograd vs direct fp32 (and vs naive double when `naive`), NMSE <= 1e-10;
 * the result is the same at 1 and 3 threads. */
static void wino_case(int64_t n, int64_t cin, int64_t h, int64_t w, int64_t cout, int swish, int naive,
                      optvq_rng *rng)
{
    nn_conv2d_desc d;
    CHECK_OK(nn_conv2d_init(&d, n, cin, h, w, cout, 3, 3, 1, 1, 1, 1, 1));
    CHECK(nn_conv_winograd_supported(&d));
    const int64_t nx = n * cin * h * w, nw = cout * cin * 9, ny = n * cout * d.h_out * d.w_out;
    float *x = malloc((size_t)nx * sizeof(float)), *wt = malloc((size_t)nw * sizeof(float));
    float *b = malloc((size_t)cout * sizeof(float));
    fill(x, nx, wt, nw, b, cout, cin, swish, rng);
    float *yd = nnt_zeros(ny), *yw = nnt_zeros(ny), *y1 = nnt_zeros(ny);
    nn_workspace ws = {0};
    size_t need = nn_conv_winograd_workspace(&d), own = nn_conv2d_workspace(&d);
    CHECK_OK(nn_workspace_reserve(&ws, need > own ? need : own));
    nn_conv_cache *cache = nn_conv_cache_create(SIZE_MAX), *none = nn_conv_cache_create(0);
    CHECK(cache != NULL && none != NULL);
    CHECK_OK(nn_conv2d_forward(yd, x, wt, b, &d, &ws));
    CHECK_OK(nn_conv_winograd_forward(yw, x, wt, b, &d, &ws, cache));
    /* the transform recomputed into the workspace (budget 0): the same bits */
    CHECK_OK(nn_conv_winograd_forward(y1, x, wt, b, &d, &ws, none));
    CHECK_MSG(!memcmp(y1, yw, (size_t)ny * sizeof(float)), "uncached transform differs");
    CHECK(nn_conv_cache_bytes(none) < 1024);
    nn_conv_cache_free(none);
    char lb[128];
    snprintf(lb, sizeof lb, "wino n%lld c%lld->%lld %lldx%lld %s vs direct", (long long)n, (long long)cin,
             (long long)cout, (long long)h, (long long)w, swish ? "swish" : "randn");
    nnt_expect(lb, yw, yd, ny, NMSE_WINO);
    if (naive) {
        float *yn = nnt_zeros(ny);
        nn_conv2d_forward_naive(yn, x, wt, b, &d);
        nnt_expect("  winograd vs naive (double)", yw, yn, ny, NMSE_WINO);
        test_compare("  direct vs naive (double)", yd, yn, ny);
        free(yn);
    }
    /* thread count independence */
    optvq_set_num_threads(1);
    CHECK_OK(nn_conv_winograd_forward(y1, x, wt, b, &d, &ws, cache));
    CHECK_MSG(!memcmp(y1, yw, (size_t)ny * sizeof(float)), "%s: 1 thread differs from the default", lb);
    optvq_set_num_threads(3);
    nn_workspace ws3 = {0};
    CHECK_OK(nn_workspace_reserve(&ws3, nn_conv_winograd_workspace(&d)));
    CHECK_OK(nn_conv_winograd_forward(y1, x, wt, b, &d, &ws3, cache));
    CHECK_MSG(!memcmp(y1, yw, (size_t)ny * sizeof(float)), "%s: 3 threads differ from the default", lb);
    optvq_set_num_threads(0);
    nn_workspace_free(&ws3);
    nn_conv_cache_free(cache);
    nn_workspace_free(&ws);
    free(x); free(wt); free(b); free(yd); free(yw); free(y1);
}

TEST(winograd_model_shapes)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, 1601);
    /* n, c_in, h, w, c_out: the f16 coders' 3x3 convolutions (128 / 256 / 512
     * channels, 16x16 .. 64x64), batch 2, odd sizes and channel changes */
    const int64_t cases[][5] = {
        {2, 128, 64, 64, 128}, {2, 256, 32, 32, 256}, {2, 512, 16, 16, 512}, {1, 512, 32, 32, 256},
        {2, 128, 33, 47, 256}, {1, 256, 31, 18, 128}, {2, 512, 17, 15, 512},
        /* wide rows: the vectorised phase split / join over 16 tiles */
        {1, 64, 9, 260, 40}, {2, 32, 6, 131, 36},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int swish = 0; swish < 2; swish++)
            wino_case(cases[c][0], cases[c][1], cases[c][2], cases[c][3], cases[c][4], swish, 0, &rng);
}

TEST(winograd_small_shapes)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, 1602);
    /* 1 channel, 3x3 and 5x7 images, 1x1, channel counts not a multiple of 8,
     * widths that leave partial tiles, batch 3 */
    const int64_t cases[][5] = {
        {1, 1, 3, 3, 1},   {1, 1, 5, 7, 1},  {1, 1, 1, 1, 1},  {2, 3, 5, 7, 5},    {1, 13, 9, 11, 21},
        {3, 37, 6, 10, 19}, {1, 5, 4, 4, 3}, {2, 7, 2, 9, 6},  {1, 65, 21, 26, 33}, {1, 2, 1, 13, 2},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        wino_case(cases[c][0], cases[c][1], cases[c][2], cases[c][3], cases[c][4], (int)(c & 1), 1, &rng);
}

/* The cache: one entry per weight, reused while the weights stay, recomputed
 * when they change in place, none beyond the budget; the switch and the
 * inference dispatch; a too-small workspace and other shapes are refused. */
TEST(winograd_cache_and_switch)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, 1603);
    nn_conv2d_desc d;
    CHECK_OK(nn_conv2d_init(&d, 1, 80, 40, 36, 72, 3, 3, 1, 1, 1, 1, 1));
    const int64_t nx = 80 * 40 * 36, nw = 72 * 80 * 9, ny = 72 * 40 * 36;
    float *x = malloc((size_t)nx * sizeof(float)), *w = malloc((size_t)nw * sizeof(float));
    float *b = malloc(72 * sizeof(float));
    fill(x, nx, w, nw, b, 72, 80, 1, &rng);
    float *yd = nnt_zeros(ny), *yw = nnt_zeros(ny), *yi = nnt_zeros(ny);
    nn_workspace ws = {0};
    CHECK(nn_conv_winograd_pays(&d));
    CHECK(nn_conv2d_workspace(&d) >= nn_conv_winograd_workspace(&d));
    CHECK_OK(nn_workspace_reserve(&ws, nn_conv2d_workspace(&d)));
    const size_t one_entry = (size_t)(36 * nw / 9) * sizeof(float);
    nn_conv_cache *cache = nn_conv_cache_create(2 * one_entry);
    CHECK(nn_conv_cache_bytes(cache) < 1024);

    CHECK_OK(nn_conv_winograd_forward(yw, x, w, b, &d, &ws, cache));
    const size_t one = nn_conv_cache_bytes(cache);
    CHECK(one >= one_entry);
    CHECK_OK(nn_conv_winograd_forward(yw, x, w, b, &d, &ws, cache));
    CHECK(nn_conv_cache_bytes(cache) == one); /* reused, not added */

    /* weights changed in place (an optimizer step): the transform follows */
    for (int64_t i = 0; i < nw; i += 7)
        w[i] = -w[i] + 0.01f;
    CHECK_OK(nn_conv2d_forward(yd, x, w, b, &d, &ws));
    CHECK_OK(nn_conv_winograd_forward(yw, x, w, b, &d, &ws, cache));
    nnt_expect("wino after an in-place weight change", yw, yd, ny, NMSE_WINO);
    CHECK(nn_conv_cache_bytes(cache) == one);

    /* a second and a third weight: the budget (two transforms) takes the
     * second, the third is recomputed at each call, with the same results */
    float *w2 = nnt_copy(w, nw), *w3 = nnt_copy(w, nw), *y2 = nnt_zeros(ny);
    CHECK_OK(nn_conv_winograd_forward(y2, x, w2, b, &d, &ws, cache));
    CHECK(!memcmp(y2, yw, (size_t)ny * sizeof(float)));
    const size_t two = nn_conv_cache_bytes(cache);
    CHECK(two >= 2 * one_entry);
    CHECK_OK(nn_conv_winograd_forward(y2, x, w3, b, &d, &ws, cache));
    CHECK(!memcmp(y2, yw, (size_t)ny * sizeof(float)));
    CHECK(nn_conv_cache_bytes(cache) == two);
    free(w2); free(w3); free(y2);

    /* the inference dispatch: Winograd when on, the direct path when off or without a cache */
    const int was = nn_conv_winograd_enabled();
    nn_conv_winograd_set_enabled(1);
    CHECK_OK(nn_conv2d_forward_infer(yi, x, w, b, &d, &ws, cache));
    CHECK(!memcmp(yi, yw, (size_t)ny * sizeof(float)));
    nn_conv_winograd_set_enabled(0);
    CHECK(!nn_conv_winograd_enabled());
    CHECK_OK(nn_conv2d_forward_infer(yi, x, w, b, &d, &ws, cache));
    CHECK(!memcmp(yi, yd, (size_t)ny * sizeof(float)));
    nn_conv_winograd_set_enabled(1);
    CHECK_OK(nn_conv2d_forward_infer(yi, x, w, b, &d, &ws, NULL));
    CHECK(!memcmp(yi, yd, (size_t)ny * sizeof(float)));
    nn_conv_winograd_set_enabled(was);

    /* refusals: a workspace too small, a kernel that is not 3x3 / stride 1 / padding 1 */
    nn_workspace small = {0};
    CHECK_OK(nn_workspace_reserve(&small, 16));
    CHECK(nn_conv_winograd_forward(yw, x, w, b, &d, &small, cache) == OPTVQ_ERR_INVALID_ARG);
    nn_conv2d_desc s2;
    CHECK_OK(nn_conv2d_init(&s2, 1, 64, 40, 36, 48, 3, 3, 2, 1, 1, 1, 1));
    CHECK(!nn_conv_winograd_supported(&s2) && !nn_conv_winograd_pays(&s2));
    CHECK(nn_conv_winograd_forward(yw, x, w, b, &s2, &ws, cache) == OPTVQ_ERR_INVALID_ARG);
    CHECK(strstr(optvq_last_error(), "conv_winograd_forward") != NULL);
    nn_workspace_free(&small);

    nn_conv_cache_free(cache);
    nn_workspace_free(&ws);
    free(x); free(w); free(b); free(yd); free(yw); free(yi);
}

/* nn_conv2d_workspace_infer: a workspace of exactly that many floats runs
 * the inference forward with the switch on and off, at 1..3 threads, on each
 * conv2d path (Winograd, shifted-view GEMMs whose output tiles start inside
 * a row, im2col, the small-channel direct kernels, pointwise), and gives the
 * bits of the same path run with the full training workspace. */
TEST(conv_infer_workspace_is_enough)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, 1604);
    /* n, cin, h, w, cout, k, stride, pad */
    const int64_t cases[][8] = {
        {1, 80, 40, 36, 72, 3, 1, 1}, /* Winograd when on */
        {2, 40, 48, 45, 36, 3, 1, 1}, /* shifted-view GEMMs */
        {1, 65, 33, 35, 66, 3, 1, 1}, /* Winograd when on, else im2col */
        {1, 64, 40, 36, 48, 3, 2, 1}, /* stride 2: im2col */
        {2, 16, 20, 18, 8, 3, 1, 1},  /* direct kernels */
        {1, 24, 9, 11, 40, 1, 1, 0},  /* pointwise */
    };
    const int was = nn_conv_winograd_enabled();
    nn_conv_cache *cache = nn_conv_cache_create(0);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int64_t *m = cases[c];
        nn_conv2d_desc d;
        CHECK_OK(nn_conv2d_init(&d, m[0], m[1], m[2], m[3], m[4], m[5], m[5], m[6], m[7], m[7], m[7], m[7]));
        const int64_t nx = d.n * d.c_in * d.h_in * d.w_in, nw = d.c_out * d.c_in * d.kh * d.kw;
        const int64_t ny = d.n * d.c_out * d.h_out * d.w_out;
        float *x = malloc((size_t)nx * sizeof(float)), *w = malloc((size_t)nw * sizeof(float));
        float *b = malloc((size_t)d.c_out * sizeof(float)), *y1 = nnt_zeros(ny), *y2 = nnt_zeros(ny);
        fill(x, nx, w, nw, b, d.c_out, d.c_in, 1, &rng);
        for (int on = 0; on <= 1; on++)
            for (int t = 1; t <= 3; t++) {
                optvq_set_num_threads(t);
                nn_conv_winograd_set_enabled(on);
                const size_t need = nn_conv2d_workspace_infer(&d, NN_PRECISION_FP32);
                CHECK(need <= nn_conv2d_workspace(&d));
                nn_workspace exact = {0}, full = {0};
                CHECK_OK(nn_workspace_reserve(&exact, need));
                CHECK_OK(nn_workspace_reserve(&full, nn_conv2d_workspace(&d)));
                CHECK_OK(nn_conv2d_forward_infer(y1, x, w, b, &d, &exact, cache));
                if (on && nn_conv_winograd_pays(&d))
                    CHECK_OK(nn_conv_winograd_forward(y2, x, w, b, &d, &full, cache));
                else
                    CHECK_OK(nn_conv2d_forward(y2, x, w, b, &d, &full));
                CHECK_MSG(!memcmp(y1, y2, (size_t)ny * sizeof(float)), "case %zu, switch %d, %d threads: differs",
                          c, on, t);
                nn_workspace_free(&exact);
                nn_workspace_free(&full);
            }
        free(x); free(w); free(b); free(y1); free(y2);
    }
    /* the model's widest layer, 128 channels at 256 x 256, without Winograd:
     * the forward needs the padded input and small output tiles, far less
     * than the training workspace (which also holds a padded copy of dy) */
    nn_conv2d_desc big;
    CHECK_OK(nn_conv2d_init(&big, 1, 128, 256, 256, 128, 3, 3, 1, 1, 1, 1, 1));
    optvq_set_num_threads(2);
    nn_conv_winograd_set_enabled(0);
    const double padded_in = 128.0 * 258 * 258, infer = (double)nn_conv2d_workspace_infer(&big, NN_PRECISION_FP32);
    CHECK_MSG(infer < 1.1 * padded_in && infer < 0.6 * (double)nn_conv2d_workspace(&big),
              "forward workspace %.0f floats vs padded input %.0f, training %zu", infer, padded_in,
              nn_conv2d_workspace(&big));
    optvq_set_num_threads(0);
    nn_conv_winograd_set_enabled(was);
    nn_conv_cache_free(cache);
}
