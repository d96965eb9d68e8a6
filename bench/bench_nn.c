/* nn engine benchmark: forward and forward+backward time of every op at the shapes
 * of OptVQ's models (taming VQGAN channels 128/256/512, the small CNN), and the
 * taming ResnetBlock (256 ch, 32x32, batch 1). Prints one tab-separated line per row:
 *   row  fwd_ms  fwdbwd_ms  fwdbwd_gflops   (best of repeated runs)
 * (gflops "-" for memory-bound ops). bench/run_nn.sh joins it with torch_nn.py.
 * Threads: OMP_NUM_THREADS (run_nn.sh sets 2). */
#include "bench_common.h"
#include "core/parallel.h"
#include "nn/nn.h"

#include <cblas.h>
#include <omp.h>

void openblas_set_num_threads(int);

static double min_seconds = 0.4;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Best (minimum) time in ms of fn over enough repetitions to fill min_seconds
 * (>= 5 reps): on a shared 2-core machine the minimum is the least disturbed by
 * other processes; torch_nn.py uses the same statistic. */
typedef void (*run_fn)(void *ctx, int with_backward);
static double time_ms(run_fn fn, void *ctx, int with_backward)
{
    fn(ctx, with_backward); /* warm-up */
    fn(ctx, with_backward);
    double t[400];
    int n = 0;
    double start = now_s();
    while (n < 400 && (n < 5 || now_s() - start < min_seconds)) {
        double t0 = now_s();
        fn(ctx, with_backward);
        t[n++] = (now_s() - t0) * 1e3;
    }
    for (int i = 1; i < n; i++) /* insertion sort */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double s = t[j];
            t[j] = t[j - 1];
            t[j - 1] = s;
        }
    return t[0];
}

static float *buf(size_t n, uint64_t seed)
{
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    bench_fill_normal(p, n, seed);
    return p;
}

static nn_workspace WS;
static void need_ws(size_t floats)
{
    if (nn_workspace_reserve(&WS, floats) != OPTVQ_OK) {
        fprintf(stderr, "%s\n", optvq_last_error());
        exit(1);
    }
}

static void row(const char *name, run_fn fn, void *ctx, double fwdbwd_flops)
{
    double f = time_ms(fn, ctx, 0), fb = time_ms(fn, ctx, 1);
    if (fwdbwd_flops > 0)
        printf("%s\t%.4f\t%.4f\t%.1f\n", name, f, fb, fwdbwd_flops / (fb * 1e-3) * 1e-9);
    else
        printf("%s\t%.4f\t%.4f\t-\n", name, f, fb);
    fflush(stdout);
}

static void die_on(optvq_status st)
{
    if (st != OPTVQ_OK) {
        fprintf(stderr, "bench_nn: %s\n", optvq_last_error());
        exit(1);
    }
}

/* ---- conv2d ---- */
typedef struct {
    nn_conv2d_desc d;
    float *x, *w, *b, *y, *dy, *dx, *dw, *db;
    int need_dx;
} conv_b;
static void conv_run(void *c, int bwd)
{
    conv_b *k = c;
    die_on(nn_conv2d_forward(k->y, k->x, k->w, k->b, &k->d, &WS));
    if (bwd)
        die_on(nn_conv2d_backward(k->need_dx ? k->dx : NULL, k->dw, k->db, k->dy, k->x, k->w, &k->d, &WS));
}
static void conv_row(const char *name, int64_t n, int64_t cin, int64_t h, int64_t w, int64_t cout,
                     int64_t k, int64_t s, int64_t pt, int64_t pb, int64_t pl, int64_t pr)
{
    conv_b c = {0};
    die_on(nn_conv2d_init(&c.d, n, cin, h, w, cout, k, k, s, pt, pb, pl, pr));
    need_ws(nn_conv2d_workspace(&c.d));
    size_t nx = n * cin * h * w, nw = cout * cin * k * k, ny = n * cout * c.d.h_out * c.d.w_out;
    c.x = buf(nx, 1), c.w = buf(nw, 2), c.b = buf(cout, 3), c.y = buf(ny, 4), c.dy = buf(ny, 5);
    c.dx = buf(nx, 6), c.dw = buf(nw, 7), c.db = buf(cout, 8);
    c.need_dx = 1;
    double fl = 2.0 * n * cout * cin * k * k * c.d.h_out * c.d.w_out;
    row(name, conv_run, &c, 3 * fl);
    free(c.x); free(c.w); free(c.b); free(c.y); free(c.dy); free(c.dx); free(c.dw); free(c.db);
}

/* ---- conv_transpose2d ---- */
typedef struct {
    nn_convt2d_desc d;
    float *x, *w, *b, *y, *dy, *dx, *dw, *db;
} convt_b;
static void convt_run(void *c, int bwd)
{
    convt_b *k = c;
    die_on(nn_convt2d_forward(k->y, k->x, k->w, k->b, &k->d, &WS));
    if (bwd)
        die_on(nn_convt2d_backward(k->dx, k->dw, k->db, k->dy, k->x, k->w, &k->d, &WS));
}

/* ---- generic small ops ---- */
typedef struct {
    int kind;
    int64_t n, c, h, w, g, k2;
    float *x, *x2, *y, *dy, *dx, *dx2, *p1, *p2, *g1, *g2;
    nn_avgpool_desc pd;
} op_b;
static void op_run(void *c, int bwd)
{
    op_b *k = c;
    int64_t cnt = k->n * k->c * k->h * k->w;
    switch (k->kind) {
    case 0: /* group_norm */
        die_on(nn_group_norm_forward(k->y, k->x, k->p1, k->p2, k->n, k->c, k->h * k->w, k->g, 1e-6f));
        if (bwd)
            die_on(nn_group_norm_backward(k->dx, k->g1, k->g2, k->dy, k->x, k->p1, k->n, k->c,
                                          k->h * k->w, k->g, 1e-6f));
        break;
    case 1:
        nn_swish_forward(k->y, k->x, cnt);
        if (bwd)
            nn_swish_backward(k->dx, k->dy, k->x, cnt);
        break;
    case 2:
        nn_relu_forward(k->y, k->x, cnt);
        if (bwd)
            nn_relu_backward(k->dx, k->dy, k->x, cnt);
        break;
    case 3:
        nn_upsample2x_forward(k->y, k->x, k->n * k->c, k->h, k->w);
        if (bwd)
            nn_upsample2x_backward(k->dx, k->dy, k->n * k->c, k->h, k->w);
        break;
    case 4:
        nn_avgpool_forward(k->y, k->x, &k->pd);
        if (bwd)
            nn_avgpool_backward(k->dx, k->dy, &k->pd);
        break;
    case 5:
        nn_concat_forward(k->y, k->x, k->x2, k->n, k->c, k->c, k->h * k->w);
        if (bwd)
            nn_concat_backward(k->dx, k->dx2, k->dy, k->n, k->c, k->c, k->h * k->w);
        break;
    case 6:
        nn_add_forward(k->y, k->x, k->x2, cnt);
        if (bwd)
            nn_add_backward(k->dx, k->dx2, k->dy, cnt);
        break;
    case 7: {
        volatile double l = nn_l1_loss_forward(k->x, k->x2, cnt);
        (void)l;
        if (bwd)
            nn_l1_loss_backward(k->dx, NULL, 1.0f, k->x, k->x2, cnt);
        break;
    }
    case 8: {
        volatile double l = nn_mse_loss_forward(k->x, k->x2, cnt);
        (void)l;
        if (bwd)
            nn_mse_loss_backward(k->dx, NULL, 1.0f, k->x, k->x2, cnt);
        break;
    }
    case 9: /* softmax rows = n*c*h, cols = w */
        nn_softmax_forward(k->y, k->x, k->n * k->c * k->h, k->w);
        if (bwd)
            nn_softmax_backward(k->dx, k->dy, k->y, k->n * k->c * k->h, k->w);
        break;
    case 10: /* linear: rows n, in c, out h */
        nn_linear_forward(k->y, k->x, k->p1, k->p2, k->n, k->c, k->h);
        if (bwd)
            nn_linear_backward(k->dx, k->g1, k->g2, k->dy, k->x, k->p1, k->n, k->c, k->h);
        break;
    case 11: /* bmm: batch n, m=k=n' = c */
        nn_bmm_forward(k->y, k->x, k->x2, k->n, k->c, k->c, k->c, 0, 0);
        if (bwd)
            nn_bmm_backward(k->dx, k->dx2, k->dy, k->x, k->x2, k->n, k->c, k->c, k->c, 0, 0);
        break;
    }
}
static void op_row(const char *name, int kind, int64_t n, int64_t c, int64_t h, int64_t w, double flops)
{
    op_b k = {0};
    k.kind = kind, k.n = n, k.c = c, k.h = h, k.w = w, k.g = 32;
    size_t cnt = n * c * h * w, ycnt = cnt * 4 + 64;
    if (kind == 10)
        cnt = n * c, ycnt = n * h;
    if (kind == 11)
        cnt = n * c * c, ycnt = cnt;
    k.x = buf(cnt, 1), k.x2 = buf(cnt, 2), k.y = buf(ycnt, 3), k.dy = buf(ycnt, 4);
    k.dx = buf(cnt, 5), k.dx2 = buf(cnt, 6);
    size_t pc = kind == 10 ? (size_t)(c * h) : (size_t)c;
    k.p1 = buf(pc, 7), k.p2 = buf(kind == 10 ? h : c, 8), k.g1 = buf(pc, 9), k.g2 = buf(kind == 10 ? h : c, 10);
    if (kind == 4)
        die_on(nn_avgpool_init(&k.pd, n * c, h, w, 2, 2, 0));
    row(name, op_run, &k, flops);
    free(k.x); free(k.x2); free(k.y); free(k.dy); free(k.dx); free(k.dx2);
    free(k.p1); free(k.p2); free(k.g1); free(k.g2);
}

/* ---- AttnBlock ---- */
typedef struct {
    nn_attn_desc d;
    nn_attn_params p;
    nn_attn_grads g;
    float *x, *y, *dy, *dx, *saved, *pv[10], *gv[10];
} attn_b;
static void attn_run(void *c, int bwd)
{
    attn_b *k = c;
    die_on(nn_attn_forward(k->y, bwd ? k->saved : NULL, k->x, &k->p, &k->d, &WS));
    if (bwd)
        die_on(nn_attn_backward(k->dx, &k->g, k->dy, k->saved, k->x, &k->p, &k->d, &WS));
}

/* ---- taming ResnetBlock (in = out channels, no temb, dropout 0) ---- */
typedef struct {
    int64_t n, c, h, w;
    nn_conv2d_desc d;
    float *x, *h1, *a1, *c1, *h2, *a2, *y, *dy, *da, *dh, *dc, *dx;
    float *n1w, *n1b, *w1, *b1, *n2w, *n2b, *w2, *b2;
    float *gn1w, *gn1b, *gw1, *gb1, *gn2w, *gn2b, *gw2, *gb2;
} res_b;
static void res_run(void *c, int bwd)
{
    res_b *k = c;
    const int64_t cnt = k->n * k->c * k->h * k->w, hw = k->h * k->w;
    die_on(nn_group_norm_forward(k->h1, k->x, k->n1w, k->n1b, k->n, k->c, hw, 32, 1e-6f));
    nn_swish_forward(k->a1, k->h1, cnt);
    die_on(nn_conv2d_forward(k->c1, k->a1, k->w1, k->b1, &k->d, &WS));
    die_on(nn_group_norm_forward(k->h2, k->c1, k->n2w, k->n2b, k->n, k->c, hw, 32, 1e-6f));
    nn_swish_forward(k->a2, k->h2, cnt);
    die_on(nn_conv2d_forward(k->y, k->a2, k->w2, k->b2, &k->d, &WS));
    nn_add_forward(k->y, k->y, k->x, cnt);
    if (!bwd)
        return;
    memcpy(k->dx, k->dy, sizeof(float) * cnt); /* residual */
    memset(k->da, 0, sizeof(float) * cnt);
    die_on(nn_conv2d_backward(k->da, k->gw2, k->gb2, k->dy, k->a2, k->w2, &k->d, &WS));
    memset(k->dh, 0, sizeof(float) * cnt);
    nn_swish_backward(k->dh, k->da, k->h2, cnt);
    memset(k->dc, 0, sizeof(float) * cnt);
    die_on(nn_group_norm_backward(k->dc, k->gn2w, k->gn2b, k->dh, k->c1, k->n2w, k->n, k->c, hw, 32, 1e-6f));
    memset(k->da, 0, sizeof(float) * cnt);
    die_on(nn_conv2d_backward(k->da, k->gw1, k->gb1, k->dc, k->a1, k->w1, &k->d, &WS));
    memset(k->dh, 0, sizeof(float) * cnt);
    nn_swish_backward(k->dh, k->da, k->h1, cnt);
    die_on(nn_group_norm_backward(k->dx, k->gn1w, k->gn1b, k->dh, k->x, k->n1w, k->n, k->c, hw, 32, 1e-6f));
}

int main(int argc, char **argv)
{
    if (argc > 1)
        min_seconds = atof(argv[1]);
    int nt = optvq_threads();
    printf("# bench_nn: %d threads (OpenMP), OpenBLAS single-threaded inside the ops\n", nt);

    /* OpenBLAS's own multi-threaded sgemm at 2048^3, then our split wrapper */
    {
        const int64_t N = 2048;
        float *a = buf(N * N, 1), *b = buf(N * N, 2), *c = buf(N * N, 3);
        openblas_set_num_threads(nt);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1, a, N, b, N, 0, c, N);
        double best = 1e9;
        for (int r = 0; r < 5; r++) {
            double t0 = now_s();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1, a, N, b, N, 0, c, N);
            double t = now_s() - t0;
            best = t < best ? t : best;
        }
        printf("sgemm_openblas_2048\t%.4f\t-\t%.1f\n", best * 1e3, 2.0 * N * N * N / best * 1e-9);
        nn_init_threads(); /* back to single-threaded OpenBLAS for our ops */
        openblas_set_num_threads(1);
        best = 1e9;
        for (int r = 0; r < 5; r++) {
            double t0 = now_s();
            nn_sgemm(0, 0, N, N, N, 1, a, N, b, N, 0, c, N);
            double t = now_s() - t0;
            best = t < best ? t : best;
        }
        printf("sgemm_nn_split_2048\t%.4f\t-\t%.1f\n", best * 1e3, 2.0 * N * N * N / best * 1e-9);
        free(a); free(b); free(c);
    }

    /* conv2d at taming shapes (batch 1) and the small CNN's (batch 64) */
    conv_row("conv3x3_c128_64x64", 1, 128, 64, 64, 128, 3, 1, 1, 1, 1, 1);
    conv_row("conv3x3_c256_32x32", 1, 256, 32, 32, 256, 3, 1, 1, 1, 1, 1);
    conv_row("conv3x3_c512_16x16", 1, 512, 16, 16, 512, 3, 1, 1, 1, 1, 1);
    conv_row("conv3x3_c128to256_32x32", 1, 128, 32, 32, 256, 3, 1, 1, 1, 1, 1);
    conv_row("downsample_c128_64x64", 1, 128, 64, 64, 128, 3, 2, 0, 1, 0, 1);
    conv_row("conv1x1_c256to512_16x16", 1, 256, 16, 16, 512, 1, 1, 0, 0, 0, 0);
    conv_row("conv3x3_c3to128_64x64", 1, 3, 64, 64, 128, 3, 1, 1, 1, 1, 1);
    conv_row("cnn_conv3x3_c16_32x32_b64", 64, 16, 32, 32, 16, 3, 1, 1, 1, 1, 1);
    {
        convt_b c = {0};
        die_on(nn_convt2d_init(&c.d, 64, 32, 8, 8, 16, 2, 2, 2, 0, 0));
        need_ws(nn_convt2d_workspace(&c.d));
        size_t nx = 64 * 32 * 8 * 8, nw = 32 * 16 * 4, ny = 64 * 16 * 16 * 16;
        c.x = buf(nx, 1), c.w = buf(nw, 2), c.b = buf(16, 3), c.y = buf(ny, 4), c.dy = buf(ny, 5);
        c.dx = buf(nx, 6), c.dw = buf(nw, 7), c.db = buf(16, 8);
        row("cnn_convT2x2s2_c32to16_8x8_b64", convt_run, &c, 3 * 2.0 * nx * 16 * 4);
        free(c.x); free(c.w); free(c.b); free(c.y); free(c.dy); free(c.dx); free(c.dw); free(c.db);
    }
    op_row("group_norm_c256_32x32", 0, 1, 256, 32, 32, 0);
    op_row("swish_c256_32x32", 1, 1, 256, 32, 32, 0);
    op_row("relu_c256_32x32", 2, 1, 256, 32, 32, 0);
    op_row("upsample2x_c256_32x32", 3, 1, 256, 32, 32, 0);
    op_row("avgpool2x2_c256_32x32", 4, 1, 256, 32, 32, 0);
    op_row("concat_2xc256_32x32", 5, 1, 256, 32, 32, 0);
    op_row("add_c256_32x32", 6, 1, 256, 32, 32, 0);
    op_row("l1_loss_3x256x256", 7, 1, 3, 256, 256, 0);
    op_row("mse_loss_3x256x256", 8, 1, 3, 256, 256, 0);
    op_row("softmax_256x256_rows", 9, 1, 1, 256, 256, 0);
    op_row("linear_b256_1024to1024", 10, 256, 1024, 1024, 1, 3 * 2.0 * 256 * 1024 * 1024);
    op_row("bmm_8x256x256x256", 11, 8, 256, 1, 1, 3 * 2.0 * 8 * 256 * 256 * 256);
    {
        attn_b a = {0};
        a.d = (nn_attn_desc){1, 512, 16, 16, 32, 1e-6f};
        const int64_t C = 512, cnt = C * 256;
        need_ws(nn_attn_workspace(&a.d));
        a.x = buf(cnt, 1), a.y = buf(cnt, 2), a.dy = buf(cnt, 3), a.dx = buf(cnt, 4);
        a.saved = buf(nn_attn_saved(&a.d), 5);
        for (int i = 0; i < 10; i++) {
            size_t m = (i >= 2 && i % 2 == 0) ? C * C : C;
            a.pv[i] = buf(m, 10 + i);
            a.gv[i] = buf(m, 30 + i);
            if (m == (size_t)(C * C))
                for (size_t j = 0; j < m; j++)
                    a.pv[i][j] *= 0.044f;
        }
        a.p = (nn_attn_params){a.pv[0], a.pv[1], a.pv[2], a.pv[3], a.pv[4], a.pv[5], a.pv[6], a.pv[7], a.pv[8], a.pv[9]};
        a.g = (nn_attn_grads){a.gv[0], a.gv[1], a.gv[2], a.gv[3], a.gv[4], a.gv[5], a.gv[6], a.gv[7], a.gv[8], a.gv[9]};
        /* fwd: 4 CxC 1x1 convs + 2 (P,P,C) products; bwd: twice that */
        double fl = 4 * 2.0 * C * C * 256 + 2 * 2.0 * 256 * 256 * C;
        row("attnblock_c512_16x16", attn_run, &a, 3 * fl);
        for (int i = 0; i < 10; i++) {
            free(a.pv[i]);
            free(a.gv[i]);
        }
        free(a.x); free(a.y); free(a.dy); free(a.dx); free(a.saved);
    }
    {
        res_b r = {0};
        r.n = 1, r.c = 256, r.h = 32, r.w = 32;
        die_on(nn_conv2d_init(&r.d, 1, 256, 32, 32, 256, 3, 3, 1, 1, 1, 1, 1));
        need_ws(nn_conv2d_workspace(&r.d));
        size_t cnt = 256 * 32 * 32, nw = 256 * 256 * 9;
        float **bufs[] = {&r.x, &r.h1, &r.a1, &r.c1, &r.h2, &r.a2, &r.y, &r.dy, &r.da, &r.dh, &r.dc, &r.dx};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            *bufs[i] = buf(cnt, 50 + i);
        float **ps[] = {&r.n1w, &r.n1b, &r.b1, &r.n2w, &r.n2b, &r.b2, &r.gn1w, &r.gn1b, &r.gb1, &r.gn2w, &r.gn2b, &r.gb2};
        for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
            *ps[i] = buf(256, 80 + i);
        r.w1 = buf(nw, 90), r.w2 = buf(nw, 91), r.gw1 = buf(nw, 92), r.gw2 = buf(nw, 93);
        for (size_t j = 0; j < nw; j++)
            r.w1[j] *= 0.02f, r.w2[j] *= 0.02f;
        double fl = 2 * 3 * 2.0 * 256 * 256 * 9 * 1024;
        row("resnetblock_c256_32x32", res_run, &r, fl);
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            free(*bufs[i]);
        for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
            free(*ps[i]);
        free(r.w1); free(r.w2); free(r.gw1); free(r.gw2);
    }
    nn_workspace_free(&WS);
    return 0;
}
