/* Optimised nn kernels against their naive twins on larger shapes (several
 * column tiles, channel counts not divisible by the thread count, 1..3 threads),
 * plus the workspace and parameter-registry contracts. */
#include "core/bigalloc.h"
#include "core/error.h"
#include "nn/nn.h"
#include "nn_testutil.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NMSE_FAST 1e-11

static void conv_case(const int64_t *m, int threads, optvq_rng *rng)
{
    optvq_set_num_threads(threads);
    nn_conv2d_desc d;
    CHECK_OK(nn_conv2d_init(&d, m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8], m[9], m[10],
                            m[11]));
    int64_t nx = d.n * d.c_in * d.h_in * d.w_in, nw = d.c_out * d.c_in * d.kh * d.kw;
    int64_t ny = d.n * d.c_out * d.h_out * d.w_out;
    float *x = nnt_randn(rng, nx, 1), *w = nnt_randn(rng, nw, 0.1f), *b = nnt_randn(rng, d.c_out, 1);
    float *gy = nnt_randn(rng, ny, 1);
    float *y1 = nnt_zeros(ny), *y2 = nnt_zeros(ny);
    float *dx1 = nnt_randn(rng, nx, 1), *dw1 = nnt_randn(rng, nw, 1), *db1 = nnt_randn(rng, d.c_out, 1);
    float *dx2 = nnt_copy(dx1, nx), *dw2 = nnt_copy(dw1, nw), *db2 = nnt_copy(db1, d.c_out);
    nn_workspace ws = {0};
    CHECK_OK(nn_workspace_reserve(&ws, nn_conv2d_workspace(&d)));
    CHECK_OK(nn_conv2d_forward(y1, x, w, b, &d, &ws));
    nn_conv2d_forward_naive(y2, x, w, b, &d);
    char lb[128];
    snprintf(lb, sizeof lb, "conv2d %lldx%lld k%lld s%lld c%lld->%lld t%d y", (long long)d.h_in,
             (long long)d.w_in, (long long)d.kh, (long long)d.stride_h, (long long)d.c_in,
             (long long)d.c_out, threads);
    nnt_expect(lb, y1, y2, ny, NMSE_FAST);
    CHECK_OK(nn_conv2d_backward(dx1, dw1, db1, gy, x, w, &d, &ws));
    nn_conv2d_backward_naive(dx2, dw2, db2, gy, x, w, &d);
    nnt_expect("  dx (accumulated)", dx1, dx2, nx, NMSE_FAST);
    nnt_expect("  dw (accumulated)", dw1, dw2, nw, NMSE_FAST);
    nnt_expect("  db (accumulated)", db1, db2, d.c_out, NMSE_FAST);
    nn_workspace_free(&ws);
    free(x); free(w); free(b); free(gy); free(y1); free(y2);
    free(dx1); free(dw1); free(db1); free(dx2); free(dw2); free(db2);
    optvq_set_num_threads(0);
}

TEST(nn_fast_conv2d)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, 31);
    /* n, cin, h, w, cout, kh, kw, stride, pad t b l r */
    const int64_t cases[][12] = {
        {1, 64, 64, 64, 8, 3, 3, 1, 1, 1, 1, 1},  /* K*P > tile cap: several tiles */
        {3, 5, 17, 13, 7, 3, 3, 1, 1, 1, 1, 1},   /* odd channels, batch 3 */
        {2, 9, 33, 31, 6, 3, 3, 2, 0, 1, 0, 1},   /* Downsample */
        {1, 7, 19, 23, 5, 1, 1, 1, 0, 0, 0, 0},   /* pointwise */
        {4, 3, 12, 12, 5, 4, 4, 2, 1, 1, 1, 1},
        /* stride 1, small channels (direct kernels): > 16 images (dw chunks), asymmetric
         * padding, odd widths, c_out not a multiple of 4, non-square kernel */
        {21, 16, 9, 7, 6, 3, 3, 1, 0, 1, 1, 0},
        {3, 4, 9, 12, 5, 3, 5, 1, 2, 0, 4, 1},
        {5, 1, 11, 10, 16, 3, 3, 1, 1, 1, 1, 1},
        /* stride 1, wide channels on >= 2048 flat positions (shifted-view GEMMs) */
        {2, 40, 48, 45, 36, 3, 3, 1, 1, 1, 1, 1},
        {1, 48, 50, 44, 33, 3, 2, 1, 0, 2, 1, 0},
        /* stride 1, 64 channels on a small image (direct kernels) */
        {2, 64, 13, 15, 40, 3, 3, 1, 1, 1, 1, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int t = 1; t <= 3; t++)
            conv_case(cases[c], t, &rng);
}

TEST(nn_fast_convt2d)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, 32);
    /* n, cin, h, w, cout, k, stride, pad, out_pad */
    const int64_t cases[][9] = {{2, 32, 16, 16, 16, 2, 2, 0, 0}, {1, 5, 13, 11, 7, 3, 2, 1, 1},
                                {3, 4, 9, 7, 3, 4, 2, 1, 0}, {1, 48, 40, 40, 30, 3, 1, 1, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int t = 1; t <= 3; t++) {
            const int64_t *m = cases[c];
            optvq_set_num_threads(t);
            nn_convt2d_desc d;
            CHECK_OK(nn_convt2d_init(&d, m[0], m[1], m[2], m[3], m[4], m[5], m[5], m[6], m[7], m[8]));
            int64_t nx = d.n * d.c_in * d.h_in * d.w_in, nw = d.c_in * d.c_out * d.kh * d.kw;
            int64_t ny = d.n * d.c_out * d.h_out * d.w_out;
            float *x = nnt_randn(&rng, nx, 1), *w = nnt_randn(&rng, nw, 0.1f);
            float *b = nnt_randn(&rng, d.c_out, 1), *gy = nnt_randn(&rng, ny, 1);
            float *y1 = nnt_zeros(ny), *y2 = nnt_zeros(ny);
            float *dx1 = nnt_zeros(nx), *dw1 = nnt_zeros(nw), *db1 = nnt_zeros(d.c_out);
            float *dx2 = nnt_zeros(nx), *dw2 = nnt_zeros(nw), *db2 = nnt_zeros(d.c_out);
            nn_workspace ws = {0};
            CHECK_OK(nn_workspace_reserve(&ws, nn_convt2d_workspace(&d)));
            CHECK_OK(nn_convt2d_forward(y1, x, w, b, &d, &ws));
            nn_convt2d_forward_naive(y2, x, w, b, &d);
            char lb[128];
            snprintf(lb, sizeof lb, "convt2d %lldx%lld k%lld s%lld t%d y", (long long)d.h_in,
                     (long long)d.w_in, (long long)d.kh, (long long)d.stride_h, t);
            nnt_expect(lb, y1, y2, ny, NMSE_FAST);
            CHECK_OK(nn_convt2d_backward(dx1, dw1, db1, gy, x, w, &d, &ws));
            nn_convt2d_backward_naive(dx2, dw2, db2, gy, x, w, &d);
            nnt_expect("  dx", dx1, dx2, nx, NMSE_FAST);
            nnt_expect("  dw", dw1, dw2, nw, NMSE_FAST);
            nnt_expect("  db", db1, db2, d.c_out, NMSE_FAST);
            nn_workspace_free(&ws);
            free(x); free(w); free(b); free(gy); free(y1); free(y2);
            free(dx1); free(dw1); free(db1); free(dx2); free(dw2); free(db2);
        }
    optvq_set_num_threads(0);
}

TEST(nn_fast_group_norm_swish_softmax)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, 33);
    const int64_t n = 2, c = 128, hw = 33 * 31, cnt = n * c * hw;
    float *x = nnt_randn(&rng, cnt, 3), *g = nnt_randn(&rng, c, 1), *b = nnt_randn(&rng, c, 1);
    for (int64_t i = 0; i < cnt; i++)
        x[i] += 5.0f; /* offset: the one-pass variance must survive it */
    float *gy = nnt_randn(&rng, cnt, 1), *y1 = nnt_zeros(cnt), *y2 = nnt_zeros(cnt);
    float *d1 = nnt_zeros(cnt), *d2 = nnt_zeros(cnt);
    float *dg1 = nnt_zeros(c), *dg2 = nnt_zeros(c), *db1 = nnt_zeros(c), *db2 = nnt_zeros(c);
    CHECK_OK(nn_group_norm_forward(y1, x, g, b, n, c, hw, 32, 1e-6f));
    nn_group_norm_forward_naive(y2, x, g, b, n, c, hw, 32, 1e-6f);
    nnt_expect("group_norm y", y1, y2, cnt, NMSE_FAST);
    CHECK_OK(nn_group_norm_backward(d1, dg1, db1, gy, x, g, n, c, hw, 32, 1e-6f));
    nn_group_norm_backward_naive(d2, dg2, db2, gy, x, g, n, c, hw, 32, 1e-6f);
    nnt_expect("group_norm dx", d1, d2, cnt, NMSE_FAST);
    nnt_expect("group_norm dgamma", dg1, dg2, c, NMSE_FAST);
    nnt_expect("group_norm dbeta", db1, db2, c, NMSE_FAST);

    /* swish over a wide range, incl. saturation */
    for (int64_t i = 0; i < cnt; i++)
        x[i] = (float)((i % 20001) - 10000) * 0.012f;
    memset(d1, 0, sizeof(float) * (size_t)cnt);
    memset(d2, 0, sizeof(float) * (size_t)cnt);
    nn_swish_forward(y1, x, cnt);
    nn_swish_forward_naive(y2, x, cnt);
    test_diff df = test_compare("swish y (AVX2 vs libm double)", y1, y2, cnt);
    CHECK(df.max_rel < 1e-5 || df.max_abs < 1e-6);
    CHECK(df.nmse < 1e-12);
    nn_swish_backward(d1, gy, x, cnt);
    nn_swish_backward_naive(d2, gy, x, cnt);
    nnt_expect("swish dx", d1, d2, cnt, 1e-12);

    /* softmax rows of 1000, big logits */
    const int64_t rows = 300, cols = 1000;
    float *s = nnt_randn(&rng, rows * cols, 20), *s1 = nnt_zeros(rows * cols);
    float *s2 = nnt_zeros(rows * cols);
    nn_softmax_forward(s1, s, rows, cols);
    nn_softmax_forward_naive(s2, s, rows, cols);
    nnt_expect("softmax y", s1, s2, rows * cols, 1e-12);
    free(s); free(s1); free(s2);
    free(x); free(g); free(b); free(gy); free(y1); free(y2); free(d1); free(d2);
    free(dg1); free(dg2); free(db1); free(db2);
}

TEST(nn_fast_linear_bmm_attn)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, 34);
    {
        const int64_t n = 300, in = 129, out = 257;
        float *x = nnt_randn(&rng, n * in, 1), *w = nnt_randn(&rng, out * in, 0.1f);
        float *b = nnt_randn(&rng, out, 1), *gy = nnt_randn(&rng, n * out, 1);
        float *y1 = nnt_zeros(n * out), *y2 = nnt_zeros(n * out);
        float *dx1 = nnt_zeros(n * in), *dx2 = nnt_zeros(n * in);
        float *dw1 = nnt_zeros(out * in), *dw2 = nnt_zeros(out * in);
        float *db1 = nnt_zeros(out), *db2 = nnt_zeros(out);
        nn_linear_forward(y1, x, w, b, n, in, out);
        nn_linear_forward_naive(y2, x, w, b, n, in, out);
        nnt_expect("linear y", y1, y2, n * out, NMSE_FAST);
        nn_linear_backward(dx1, dw1, db1, gy, x, w, n, in, out);
        nn_linear_backward_naive(dx2, dw2, db2, gy, x, w, n, in, out);
        nnt_expect("linear dx", dx1, dx2, n * in, NMSE_FAST);
        nnt_expect("linear dw", dw1, dw2, out * in, NMSE_FAST);
        nnt_expect("linear db", db1, db2, out, NMSE_FAST);
        free(x); free(w); free(b); free(gy); free(y1); free(y2);
        free(dx1); free(dx2); free(dw1); free(dw2); free(db1); free(db2);
    }
    for (int t = 0; t < 4; t++) {
        const int64_t B = 3, M = 70, K = 90, N = 110;
        float *a = nnt_randn(&rng, B * M * K, 1), *b = nnt_randn(&rng, B * K * N, 1);
        float *c1 = nnt_zeros(B * M * N), *c2 = nnt_zeros(B * M * N);
        nn_bmm_forward(c1, a, b, B, M, K, N, t & 1, t >> 1);
        nn_bmm_forward_naive(c2, a, b, B, M, K, N, t & 1, t >> 1);
        char lb[64];
        snprintf(lb, sizeof lb, "bmm ta=%d tb=%d", t & 1, t >> 1);
        nnt_expect(lb, c1, c2, B * M * N, NMSE_FAST);
        free(a); free(b); free(c1); free(c2);
    }
    {
        nn_attn_desc d = {2, 64, 8, 7, 32, 1e-6f};
        const int64_t C = d.c, n = d.n * C * d.h * d.w;
        float *p[10];
        for (int i = 0; i < 10; i++)
            p[i] = nnt_randn(&rng, i >= 2 && i % 2 == 0 ? C * C : C, i >= 2 && i % 2 == 0 ? 0.125f : 0.5f);
        nn_attn_params ap = {p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9]};
        float *x = nnt_randn(&rng, n, 1), *y1 = nnt_zeros(n), *y2 = nnt_zeros(n);
        nn_workspace ws = {0};
        CHECK_OK(nn_workspace_reserve(&ws, nn_attn_workspace(&d)));
        CHECK_OK(nn_attn_forward(y1, NULL, x, &ap, &d, &ws));
        nn_attn_forward_naive(y2, x, &ap, &d);
        nnt_expect("attn y (8x7, c64)", y1, y2, n, NMSE_FAST);
        nn_workspace_free(&ws);
        for (int i = 0; i < 10; i++)
            free(p[i]);
        free(x); free(y1); free(y2);
    }
}

TEST(nn_workspace_and_params)
{
    /* too small a workspace is an error with a message, not a crash */
    nn_conv2d_desc d;
    CHECK_OK(nn_conv2d_init(&d, 1, 4, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1));
    nn_workspace ws = {0};
    float x[256] = {0}, w[144] = {0}, y[256];
    CHECK(nn_conv2d_forward(y, x, w, NULL, &d, &ws) == OPTVQ_ERR_INVALID_ARG);
    CHECK(strstr(optvq_last_error(), "workspace") != NULL);
    CHECK(nn_conv2d_init(&d, 1, 4, 8, 8, 4, 3, 3, 1, 3, 1, 1, 1) == OPTVQ_ERR_INVALID_ARG);
    CHECK(nn_conv2d_init(&d, 1, 4, 1, 1, 4, 3, 3, 1, 0, 0, 0, 0) == OPTVQ_ERR_INVALID_ARG);

    nn_params p;
    nn_params_init(&p);
    int64_t s1[4] = {16, 3, 3, 3}, s2[1] = {16}, bad[4] = {16, 3, 3, 2};
    int i1 = -1, i2 = -1;
    CHECK_OK(nn_params_add(&p, "encoder.conv_in.weight", 4, s1, &i1));
    CHECK_OK(nn_params_add(&p, "encoder.conv_in.bias", 1, s2, &i2));
    CHECK(nn_params_add(&p, "encoder.conv_in.bias", 1, s2, NULL) == OPTVQ_ERR_INVALID_ARG);
    CHECK(strstr(optvq_last_error(), "encoder.conv_in.bias") != NULL);
    CHECK(i1 == 0 && i2 == 1);
    CHECK_OK(nn_params_finalize(&p));
    CHECK(nn_params_add(&p, "late", 1, s2, NULL) == OPTVQ_ERR_STATE);
    nn_param *a = nn_params_find(&p, "encoder.conv_in.weight");
    nn_param *b = nn_params_find(&p, "encoder.conv_in.bias");
    CHECK(a && b && a->numel == 432 && b->numel == 16);
    CHECK(a && b && b->data >= a->data + a->numel && ((uintptr_t)b->data % 64) == 0);
    CHECK(a && a->grad == p.grad && a->data == p.data);
    float vals[432];
    for (int i = 0; i < 432; i++)
        vals[i] = (float)i;
    CHECK_OK(nn_params_set(&p, "encoder.conv_in.weight", 4, s1, vals));
    CHECK(a && a->data[431] == 431.0f);
    CHECK(nn_params_set(&p, "encoder.conv_in.weight", 4, bad, vals) == OPTVQ_ERR_FORMAT);
    CHECK(strstr(optvq_last_error(), "encoder.conv_in.weight") != NULL);
    CHECK(nn_params_set(&p, "decoder.nope", 1, s2, vals) == OPTVQ_ERR_INVALID_ARG);
    if (b) {
        b->grad[3] = 5.0f;
        nn_params_zero_grad(&p);
        CHECK(b->grad[3] == 0.0f);
    }
    nn_params_free(&p);
}

/* Resident pages among those spanning [p, p + bytes) (mincore), -1 when unknown. */
static long resident_pages(const void *p, size_t bytes)
{
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t lo = (uintptr_t)p / page * page, hi = ((uintptr_t)p + bytes + page - 1) / page * page;
    const size_t n = (size_t)((hi - lo) / page);
    unsigned char *v = malloc(n);
    long count = -1;
    if (v && mincore((void *)lo, hi - lo, v) == 0) {
        count = 0;
        for (size_t i = 0; i < n; i++)
            count += v[i] & 1;
    }
    free(v);
    return count;
}

/* The gradient block takes memory only once written: after finalizing a 16 MiB
 * registry none of its pages is resident (mincore: a per-page answer, unlike
 * the process's RSS, which a reused heap blurs); gradients read zero, take
 * writes, and a frozen registry drops them (aliases keep theirs). */
/* Large buffers come 2 MiB-aligned (so that they can be 2 MiB pages), small ones
 * 64-byte aligned; the zeroing variant zeroes reused memory; nonsense sizes fail. */
TEST(core_big_alloc)
{
    CHECK(optvq_big_alloc(0) == NULL);
    CHECK(optvq_big_alloc(SIZE_MAX) == NULL);
    CHECK(optvq_big_calloc(SIZE_MAX - 100) == NULL);
    const size_t sizes[] = {1, 1000, (4u << 20) - 1, 4u << 20, (9u << 20) + 3};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        const size_t n = sizes[k];
        unsigned char *a = optvq_big_alloc(n);
        CHECK(a != NULL);
        if (!a)
            continue;
        const uintptr_t align = n >= (4u << 20) ? (2u << 20) : 64;
        CHECK_MSG((uintptr_t)a % align == 0, "%zu bytes at %p, not %zu-aligned", n, (void *)a, (size_t)align);
        memset(a, 0xab, n);
        free(a);
        unsigned char *z = optvq_big_calloc(n);
        CHECK(z != NULL);
        size_t nonzero = 0;
        for (size_t i = 0; z && i < n; i++)
            nonzero += z[i] != 0;
        CHECK_MSG(nonzero == 0, "%zu of %zu bytes not zeroed", nonzero, n);
        free(z);
    }
}

TEST(nn_params_gradients_on_demand)
{
    nn_params p;
    nn_params_init(&p);
    const int64_t big[2] = {2048, 2048}, one[1] = {1};
    float alias_data = 1, alias_grad = 2;
    CHECK_OK(nn_params_add(&p, "big", 2, big, NULL));
    CHECK_OK(nn_params_add_alias(&p, "alias", 1, one, NN_ROLE_UNDECLARED, 0, &alias_data, &alias_grad, NULL));
    CHECK_OK(nn_params_finalize(&p));
    nn_param *q = nn_params_find(&p, "big");
    CHECK(q && q->grad == p.grad && ((uintptr_t)q->grad % 64) == 0);
    if (q) {
        const long untouched = resident_pages(q->grad, (size_t)q->numel * sizeof(float));
        CHECK_MSG(untouched == 0, "%ld pages of the untouched gradient block are resident", untouched);
        q->grad[q->numel / 3] = 1.0f;
        const long written = resident_pages(q->grad, (size_t)q->numel * sizeof(float));
        /* one page, or one 2 MiB page where transparent huge pages are on */
        CHECK_MSG(written >= 1 && written <= 512, "one write made %ld pages resident", written);
        q->grad[q->numel / 3] = 0.0f;
        CHECK(q->grad[0] == 0.0f && q->grad[q->numel / 2] == 0.0f && q->grad[q->numel - 1] == 0.0f);
        q->grad[12345] = 3.0f;
        CHECK(q->grad[12345] == 3.0f);
        nn_params_zero_grad(&p);
        CHECK(q->grad[12345] == 0.0f);
    }
    nn_params_drop_grad(&p);
    CHECK(p.grad == NULL && q && q->grad == NULL);
    nn_param *a = nn_params_find(&p, "alias");
    CHECK(a && a->grad == &alias_grad);
    nn_params_free(&p); /* after drop_grad: nothing freed twice */
}
