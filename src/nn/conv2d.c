/* conv2d: im2col (tiled over output positions) + cblas_sgemm; 1x1 stride-1
 * unpadded convolutions are a direct GEMM. Forward splits (image, tile) work
 * items over threads; backward gives each thread a range of input channels, so
 * its dW columns, dcol rows and dx channels are its own (no reduction, no race).
 * Stride-1 convolutions take one of two im2col-free paths (conv_direct.c):
 * small channel counts an AVX2 direct kernel, wide channels on large images
 * kh*kw GEMMs on shifted views of the zero-padded input. */
#include "core/error.h"
#include "core/parallel.h"
#include "nn/nn.h"
#include "nn/conv_direct.h"
#include "nn/conv_winograd.h"

#include <cblas.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define DIM_OK(v) ((v) > 0 && (v) < ((int64_t)1 << 30))

optvq_status nn_conv2d_init(nn_conv2d_desc *d, int64_t n, int64_t c_in, int64_t h_in,
                            int64_t w_in, int64_t c_out, int64_t kh, int64_t kw, int64_t stride,
                            int64_t pad_t, int64_t pad_b, int64_t pad_l, int64_t pad_r)
{
    memset(d, 0, sizeof *d);
    if (!DIM_OK(n) || !DIM_OK(c_in) || !DIM_OK(h_in) || !DIM_OK(w_in) || !DIM_OK(c_out) ||
        !DIM_OK(kh) || !DIM_OK(kw) || !DIM_OK(stride))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "conv2d: sizes must be positive");
    if (pad_t < 0 || pad_b < 0 || pad_l < 0 || pad_r < 0 || pad_t >= kh || pad_b >= kh ||
        pad_l >= kw || pad_r >= kw)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG,
                          "conv2d: padding (%lld,%lld,%lld,%lld) must be in [0, kernel)",
                          (long long)pad_t, (long long)pad_b, (long long)pad_l, (long long)pad_r);
    if (h_in + pad_t + pad_b < kh || w_in + pad_l + pad_r < kw)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "conv2d: kernel %lldx%lld larger than padded input",
                          (long long)kh, (long long)kw);
    d->n = n;
    d->c_in = c_in;
    d->h_in = h_in;
    d->w_in = w_in;
    d->c_out = c_out;
    d->kh = kh;
    d->kw = kw;
    d->stride_h = d->stride_w = stride;
    d->pad_t = pad_t;
    d->pad_b = pad_b;
    d->pad_l = pad_l;
    d->pad_r = pad_r;
    d->h_out = (h_in + pad_t + pad_b - kh) / stride + 1;
    d->w_out = (w_in + pad_l + pad_r - kw) / stride + 1;
    if (c_in * kh * kw >= ((int64_t)1 << 31) || d->h_out * d->w_out >= ((int64_t)1 << 31))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "conv2d: layer too large for BLAS int sizes");
    return OPTVQ_OK;
}

static int is_pointwise(const nn_conv2d_desc *d)
{
    return d->kh == 1 && d->kw == 1 && d->stride_h == 1 && d->stride_w == 1 && d->pad_t == 0 &&
           d->pad_b == 0 && d->pad_l == 0 && d->pad_r == 0;
}

static nn_im2col_geom geom_of(const nn_conv2d_desc *d)
{
    nn_im2col_geom g = {d->c_in, d->h_in, d->w_in, d->kh, d->kw, d->stride_h, d->stride_w,
                        d->pad_t, d->pad_l, d->h_out, d->w_out};
    return g;
}

static int threads_for(int64_t limit)
{
    int nt = optvq_threads();
    return nt > limit ? (int)limit : nt;
}

/* Forward: tiles per image and columns per tile. */
static int64_t fwd_tile(const nn_conv2d_desc *d, int nt, int64_t *tiles)
{
    int64_t P = d->h_out * d->w_out, K = d->c_in * d->kh * d->kw;
    return nn_tile_items(K, P, d->n, nt, tiles);
}

/* Backward: channels per thread and columns per tile. */
static int64_t bwd_tile(const nn_conv2d_desc *d, int nt, int64_t *ch_per_thread)
{
    int64_t cpt = (d->c_in + nt - 1) / nt;
    *ch_per_thread = cpt;
    return nn_tile_cols(cpt * d->kh * d->kw, d->h_out * d->w_out, 1, NULL);
}

/* What nn_conv2d_forward alone uses. */
static size_t fwd_workspace(const nn_conv2d_desc *d)
{
    if (is_pointwise(d))
        return 0;
    int nt = optvq_threads();
    if (nn_conv_direct_ok(d))
        return nn_conv_direct_workspace(d, nt);
    if (nn_conv_tapgemm_ok(d))
        return nn_conv_tapgemm_forward_workspace(d);
    return (size_t)nt * (size_t)(d->c_in * d->kh * d->kw * fwd_tile(d, nt, NULL));
}

/* conv2d's own paths, forward and backward (the Winograd one is added by
 * nn_conv2d_workspace). */
static size_t own_workspace(const nn_conv2d_desc *d)
{
    if (is_pointwise(d) || nn_conv_direct_ok(d))
        return fwd_workspace(d);
    if (nn_conv_tapgemm_ok(d))
        return nn_conv_tapgemm_workspace(d);
    int64_t cpt;
    size_t fwd = fwd_workspace(d);
    int ntb = threads_for(d->c_in);
    int64_t tb = bwd_tile(d, ntb, &cpt);
    size_t bwd = (size_t)ntb * (size_t)(cpt * d->kh * d->kw * tb);
    return fwd > bwd ? fwd : bwd;
}

size_t nn_conv2d_workspace(const nn_conv2d_desc *d)
{
    /* the inference forward (nn_conv2d_forward_infer) may take the Winograd path */
    size_t own = own_workspace(d), wino = nn_conv_winograd_pays(d) ? nn_conv_winograd_workspace(d) : 0;
    return own > wino ? own : wino;
}

size_t nn_conv2d_forward_workspace(const nn_conv2d_desc *d) { return fwd_workspace(d); }

/* y[:, p0:p0+cols] = bias (or 0), row stride P. */
static void fill_bias(float *y, const float *b, int64_t c_out, int64_t P, int64_t p0, int64_t cols)
{
    for (int64_t co = 0; co < c_out; co++) {
        float v = b ? b[co] : 0.0f, *r = y + co * P + p0;
        for (int64_t t = 0; t < cols; t++)
            r[t] = v;
    }
}

optvq_status nn_conv2d_forward(float *y, const float *x, const float *w, const float *b,
                               const nn_conv2d_desc *d, nn_workspace *ws)
{
    if (!y || !x || !w || !d)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "conv2d_forward: NULL argument");
    OPTVQ_TRY(nn_workspace_check(ws, fwd_workspace(d), "conv2d_forward"));
    nn_init_threads();
    const int64_t N = d->n, Cin = d->c_in, Cout = d->c_out, P = d->h_out * d->w_out;
    const int64_t K = Cin * d->kh * d->kw, HWin = d->h_in * d->w_in;
    const int nt = optvq_threads();

    if (is_pointwise(d)) {
        /* y[n] (Cout, P) = w (Cout, Cin) x[n] (Cin, P) + b */
        int64_t tiles;
        int64_t T = nn_tile_items(1, P, N, nt, &tiles); /* no scratch: only split */
#pragma omp parallel for schedule(static) num_threads(nt)
        for (int64_t it = 0; it < N * tiles; it++) {
            int64_t n = it / tiles, p0 = (it % tiles) * T;
            int64_t cols = P - p0 < T ? P - p0 : T;
            if (cols <= 0)
                continue;
            float *yn = y + n * Cout * P;
            fill_bias(yn, b, Cout, P, p0, cols);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Cout, (int)cols, (int)Cin,
                        1.0f, w, (int)Cin, x + n * Cin * HWin + p0, (int)P, 1.0f, yn + p0, (int)P);
        }
        return OPTVQ_OK;
    }

    if (nn_conv_direct_ok(d)) {
        nn_conv_direct_forward(y, x, w, b, d, ws->data, nt);
        return OPTVQ_OK;
    }
    if (nn_conv_tapgemm_ok(d)) {
        nn_conv_tapgemm_forward(y, x, w, b, d, ws->data, nt);
        return OPTVQ_OK;
    }

    const nn_im2col_geom g = geom_of(d);
    int64_t tiles;
    const int64_t T = fwd_tile(d, nt, &tiles);
#pragma omp parallel num_threads(nt)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *col = ws->data + (size_t)tid * (size_t)(K * T); /* (K, T) */
#pragma omp for schedule(static)
        for (int64_t it = 0; it < N * tiles; it++) {
            int64_t n = it / tiles, p0 = (it % tiles) * T;
            int64_t cols = P - p0 < T ? P - p0 : T;
            if (cols <= 0)
                continue;
            float *yn = y + n * Cout * P;
            nn_im2col(col, x + n * Cin * HWin, &g, 0, Cin, p0, cols);
            fill_bias(yn, b, Cout, P, p0, cols);
            /* y[n][:, p0:p0+cols] += w (Cout, K) col (K, cols) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Cout, (int)cols, (int)K,
                        1.0f, w, (int)K, col, (int)cols, 1.0f, yn + p0, (int)P);
        }
    }
    return OPTVQ_OK;
}

optvq_status nn_conv2d_backward(float *dx, float *dw, float *db, const float *dy,
                                const float *x, const float *w, const nn_conv2d_desc *d,
                                nn_workspace *ws)
{
    if (!dy || !d || (dw && !x) || (dx && !w))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "conv2d_backward: NULL argument");
    OPTVQ_TRY(nn_workspace_check(ws, (dx || dw) ? own_workspace(d) : 0, "conv2d_backward"));
    nn_init_threads();
    const int64_t N = d->n, Cin = d->c_in, Cout = d->c_out, P = d->h_out * d->w_out;
    const int64_t kk = d->kh * d->kw, K = Cin * kk, HWin = d->h_in * d->w_in;

    if (db) {
        /* db (Cout) += sum over n, p of dy (N, Cout, P) */
#pragma omp parallel for schedule(static) num_threads(threads_for(Cout))
        for (int64_t co = 0; co < Cout; co++) {
            double s = 0.0;
            for (int64_t n = 0; n < N; n++) {
                const float *r = dy + (n * Cout + co) * P;
                float part = 0.0f;
#pragma omp simd reduction(+ : part)
                for (int64_t p = 0; p < P; p++)
                    part += r[p];
                s += part;
            }
            db[co] += (float)s;
        }
    }
    if (!dx && !dw)
        return OPTVQ_OK;
    if (nn_conv_direct_ok(d)) {
        nn_conv_direct_backward(dx, dw, dy, x, w, d, ws->data, optvq_threads());
        return OPTVQ_OK;
    }
    if (nn_conv_tapgemm_ok(d)) {
        nn_conv_tapgemm_backward(dx, dw, dy, x, w, d, ws->data, optvq_threads());
        return OPTVQ_OK;
    }

    const int nt = threads_for(Cin);
    const int pointwise = is_pointwise(d);
    const nn_im2col_geom g = geom_of(d);
    int64_t cpt;
    const int64_t T = pointwise ? P : bwd_tile(d, nt, &cpt);
    if (pointwise)
        cpt = (Cin + nt - 1) / nt;
#pragma omp parallel num_threads(nt)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        const int64_t c0 = tid * cpt < Cin ? tid * cpt : Cin;
        const int64_t c1 = c0 + cpt < Cin ? c0 + cpt : Cin;
        const int64_t cc = c1 - c0, rows = cc * kk;
        float *buf = pointwise ? NULL : ws->data + (size_t)tid * (size_t)(cpt * kk * T);
        for (int64_t n = 0; cc > 0 && n < N; n++) {
            const float *dyn = dy + n * Cout * P; /* (Cout, P) */
            if (pointwise) {
                /* dw[:, c0:c1] += dy[n] (Cout, P) x[n][c0:c1]^T (P, cc) */
                if (dw)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Cout, (int)cc, (int)P,
                                1.0f, dyn, (int)P, x + (n * Cin + c0) * P, (int)P, 1.0f, dw + c0,
                                (int)Cin);
                /* dx[n][c0:c1] (cc, P) += w[:, c0:c1]^T (cc, Cout) dy[n] (Cout, P) */
                if (dx)
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)cc, (int)P, (int)Cout,
                                1.0f, w + c0, (int)Cin, dyn, (int)P, 1.0f, dx + (n * Cin + c0) * P,
                                (int)P);
                continue;
            }
            for (int64_t p0 = 0; p0 < P; p0 += T) {
                const int64_t cols = P - p0 < T ? P - p0 : T;
                if (dw) {
                    /* buf (rows, cols) = im2col rows of channels c0..c1;
                     * dw[:, c0*kk : c1*kk] += dy[n][:, p0:] (Cout, cols) buf^T */
                    nn_im2col(buf, x + n * Cin * HWin, &g, c0, c1, p0, cols);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Cout, (int)rows,
                                (int)cols, 1.0f, dyn + p0, (int)P, buf, (int)cols, 1.0f,
                                dw + c0 * kk, (int)K);
                }
                if (dx) {
                    /* dcol (rows, cols) = w[:, c0*kk : c1*kk]^T (rows, Cout) dy[n][:, p0:] */
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)rows, (int)cols,
                                (int)Cout, 1.0f, w + c0 * kk, (int)K, dyn + p0, (int)P, 0.0f, buf,
                                (int)cols);
                    nn_col2im(dx + n * Cin * HWin, buf, &g, c0, c1, p0, cols);
                }
            }
        }
    }
    return OPTVQ_OK;
}

/* ---- naive reference: direct loops, double accumulation ---- */

void nn_conv2d_forward_naive(float *y, const float *x, const float *w, const float *b,
                             const nn_conv2d_desc *d)
{
    for (int64_t n = 0; n < d->n; n++)
        for (int64_t co = 0; co < d->c_out; co++)
            for (int64_t oy = 0; oy < d->h_out; oy++)
                for (int64_t ox = 0; ox < d->w_out; ox++) {
                    double s = b ? b[co] : 0.0;
                    for (int64_t ci = 0; ci < d->c_in; ci++)
                        for (int64_t ky = 0; ky < d->kh; ky++) {
                            int64_t iy = oy * d->stride_h - d->pad_t + ky;
                            if (iy < 0 || iy >= d->h_in)
                                continue;
                            for (int64_t kx = 0; kx < d->kw; kx++) {
                                int64_t ix = ox * d->stride_w - d->pad_l + kx;
                                if (ix < 0 || ix >= d->w_in)
                                    continue;
                                s += (double)x[((n * d->c_in + ci) * d->h_in + iy) * d->w_in + ix] *
                                     w[((co * d->c_in + ci) * d->kh + ky) * d->kw + kx];
                            }
                        }
                    y[((n * d->c_out + co) * d->h_out + oy) * d->w_out + ox] = (float)s;
                }
}

void nn_conv2d_backward_naive(float *dx, float *dw, float *db, const float *dy, const float *x,
                              const float *w, const nn_conv2d_desc *d)
{
    const int64_t P = d->h_out * d->w_out;
    if (db)
        for (int64_t co = 0; co < d->c_out; co++) {
            double s = 0;
            for (int64_t n = 0; n < d->n; n++)
                for (int64_t p = 0; p < P; p++)
                    s += dy[(n * d->c_out + co) * P + p];
            db[co] += (float)s;
        }
    if (dw)
        for (int64_t co = 0; co < d->c_out; co++)
            for (int64_t ci = 0; ci < d->c_in; ci++)
                for (int64_t ky = 0; ky < d->kh; ky++)
                    for (int64_t kx = 0; kx < d->kw; kx++) {
                        double s = 0;
                        for (int64_t n = 0; n < d->n; n++)
                            for (int64_t oy = 0; oy < d->h_out; oy++) {
                                int64_t iy = oy * d->stride_h - d->pad_t + ky;
                                if (iy < 0 || iy >= d->h_in)
                                    continue;
                                for (int64_t ox = 0; ox < d->w_out; ox++) {
                                    int64_t ix = ox * d->stride_w - d->pad_l + kx;
                                    if (ix < 0 || ix >= d->w_in)
                                        continue;
                                    s += (double)dy[((n * d->c_out + co) * d->h_out + oy) * d->w_out + ox] *
                                         x[((n * d->c_in + ci) * d->h_in + iy) * d->w_in + ix];
                                }
                            }
                        dw[((co * d->c_in + ci) * d->kh + ky) * d->kw + kx] += (float)s;
                    }
    if (dx)
        for (int64_t n = 0; n < d->n; n++)
            for (int64_t ci = 0; ci < d->c_in; ci++)
                for (int64_t iy = 0; iy < d->h_in; iy++)
                    for (int64_t ix = 0; ix < d->w_in; ix++) {
                        double s = 0;
                        for (int64_t co = 0; co < d->c_out; co++)
                            for (int64_t ky = 0; ky < d->kh; ky++) {
                                int64_t ty = iy + d->pad_t - ky;
                                if (ty < 0 || ty % d->stride_h)
                                    continue;
                                int64_t oy = ty / d->stride_h;
                                if (oy >= d->h_out)
                                    continue;
                                for (int64_t kx = 0; kx < d->kw; kx++) {
                                    int64_t tx = ix + d->pad_l - kx;
                                    if (tx < 0 || tx % d->stride_w)
                                        continue;
                                    int64_t ox = tx / d->stride_w;
                                    if (ox >= d->w_out)
                                        continue;
                                    s += (double)dy[((n * d->c_out + co) * d->h_out + oy) * d->w_out + ox] *
                                         w[((co * d->c_in + ci) * d->kh + ky) * d->kw + kx];
                                }
                            }
                        dx[((n * d->c_in + ci) * d->h_in + iy) * d->w_in + ix] += (float)s;
                    }
}
