/* conv_transpose2d: the adjoint of conv2d. The "image" of the im2col geometry is
 * the output y (c_out, h_out, w_out); the "grid" is the input x (h_in, w_in).
 * Forward: each thread owns a range of output channels: col rows of its channels
 * = w^T x, scattered (col2im) into its channels of y. Backward: dw by output
 * channel ranges (own columns of dw), dx by (image, tile) items (own columns). */
#include "core/error.h"
#include "core/parallel.h"
#include "nn/nn.h"

#include <cblas.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define DIM_OK(v) ((v) > 0 && (v) < ((int64_t)1 << 30))

optvq_status nn_convt2d_init(nn_convt2d_desc *d, int64_t n, int64_t c_in, int64_t h_in,
                             int64_t w_in, int64_t c_out, int64_t kh, int64_t kw, int64_t stride,
                             int64_t pad, int64_t out_pad)
{
    memset(d, 0, sizeof *d);
    if (!DIM_OK(n) || !DIM_OK(c_in) || !DIM_OK(h_in) || !DIM_OK(w_in) || !DIM_OK(c_out) ||
        !DIM_OK(kh) || !DIM_OK(kw) || !DIM_OK(stride))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "conv_transpose2d: sizes must be positive");
    if (pad < 0 || pad >= kh || pad >= kw || out_pad < 0 || out_pad >= stride)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG,
                          "conv_transpose2d: padding %lld must be in [0, kernel), output padding "
                          "%lld in [0, stride)",
                          (long long)pad, (long long)out_pad);
    d->n = n;
    d->c_in = c_in;
    d->h_in = h_in;
    d->w_in = w_in;
    d->c_out = c_out;
    d->kh = kh;
    d->kw = kw;
    d->stride_h = d->stride_w = stride;
    d->pad_t = d->pad_b = d->pad_l = d->pad_r = pad;
    d->out_pad_h = d->out_pad_w = out_pad;
    d->h_out = (h_in - 1) * stride - 2 * pad + kh + out_pad;
    d->w_out = (w_in - 1) * stride - 2 * pad + kw + out_pad;
    if (d->h_out <= 0 || d->w_out <= 0)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "conv_transpose2d: empty output");
    if (c_out * kh * kw >= ((int64_t)1 << 31) || h_in * w_in >= ((int64_t)1 << 31))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "conv_transpose2d: layer too large");
    return OPTVQ_OK;
}

static nn_im2col_geom geom_of(const nn_convt2d_desc *d)
{
    nn_im2col_geom g = {d->c_out, d->h_out, d->w_out, d->kh, d->kw, d->stride_h, d->stride_w,
                        d->pad_t, d->pad_l, d->h_in, d->w_in};
    return g;
}

static int threads_for(int64_t limit)
{
    int nt = optvq_threads();
    return nt > limit ? (int)limit : nt;
}

/* Output channels per thread (channel-owned passes) and columns per tile. */
static int64_t own_tile(const nn_convt2d_desc *d, int nt, int64_t *cpt)
{
    *cpt = (d->c_out + nt - 1) / nt;
    return nn_tile_cols(*cpt * d->kh * d->kw, d->h_in * d->w_in, 1, NULL);
}

/* dx pass: (image, tile) items with all c_out*kk rows. */
static int64_t item_tile(const nn_convt2d_desc *d, int nt, int64_t *tiles)
{
    return nn_tile_items(d->c_out * d->kh * d->kw, d->h_in * d->w_in, d->n, nt, tiles);
}

size_t nn_convt2d_workspace(const nn_convt2d_desc *d)
{
    int nt = optvq_threads(), nto = threads_for(d->c_out);
    int64_t cpt, tiles;
    size_t a = (size_t)nto * (size_t)(own_tile(d, nto, &cpt) * cpt * d->kh * d->kw);
    size_t b = (size_t)nt * (size_t)(item_tile(d, nt, &tiles) * d->c_out * d->kh * d->kw);
    return a > b ? a : b;
}

optvq_status nn_convt2d_forward(float *y, const float *x, const float *w, const float *b,
                                const nn_convt2d_desc *d, nn_workspace *ws)
{
    if (!y || !x || !w || !d)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "conv_transpose2d_forward: NULL argument");
    OPTVQ_TRY(nn_workspace_check(ws, nn_convt2d_workspace(d), "conv_transpose2d_forward"));
    nn_init_threads();
    const int64_t N = d->n, Cin = d->c_in, Cout = d->c_out, kk = d->kh * d->kw;
    const int64_t Pin = d->h_in * d->w_in, Pout = d->h_out * d->w_out, Kt = Cout * kk;
    const int nt = threads_for(Cout);
    const nn_im2col_geom g = geom_of(d);
    int64_t cpt;
    const int64_t T = own_tile(d, nt, &cpt);
#pragma omp parallel num_threads(nt)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        const int64_t c0 = tid * cpt < Cout ? tid * cpt : Cout;
        const int64_t c1 = c0 + cpt < Cout ? c0 + cpt : Cout;
        const int64_t rows = (c1 - c0) * kk;
        float *buf = ws->data + (size_t)tid * (size_t)(cpt * kk * T); /* (rows, T) */
        for (int64_t n = 0; c1 > c0 && n < N; n++) {
            float *yn = y + n * Cout * Pout; /* (Cout, Pout) */
            for (int64_t co = c0; co < c1; co++) {
                float v = b ? b[co] : 0.0f;
                for (int64_t p = 0; p < Pout; p++)
                    yn[co * Pout + p] = v;
            }
            for (int64_t p0 = 0; p0 < Pin; p0 += T) {
                const int64_t cols = Pin - p0 < T ? Pin - p0 : T;
                /* buf (rows, cols) = w[:, c0*kk : c1*kk]^T (rows, Cin) x[n][:, p0:] (Cin, cols) */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)rows, (int)cols, (int)Cin,
                            1.0f, w + c0 * kk, (int)Kt, x + n * Cin * Pin + p0, (int)Pin, 0.0f, buf,
                            (int)cols);
                nn_col2im(yn, buf, &g, c0, c1, p0, cols);
            }
        }
    }
    return OPTVQ_OK;
}

optvq_status nn_convt2d_backward(float *dx, float *dw, float *db, const float *dy,
                                 const float *x, const float *w, const nn_convt2d_desc *d,
                                 nn_workspace *ws)
{
    if (!dy || !d || (dw && !x) || (dx && !w))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "conv_transpose2d_backward: NULL argument");
    OPTVQ_TRY(nn_workspace_check(ws, (dx || dw) ? nn_convt2d_workspace(d) : 0,
                                 "conv_transpose2d_backward"));
    nn_init_threads();
    const int64_t N = d->n, Cin = d->c_in, Cout = d->c_out, kk = d->kh * d->kw;
    const int64_t Pin = d->h_in * d->w_in, Pout = d->h_out * d->w_out, Kt = Cout * kk;
    const nn_im2col_geom g = geom_of(d);

    if (db) {
#pragma omp parallel for schedule(static) num_threads(threads_for(Cout))
        for (int64_t co = 0; co < Cout; co++) {
            double s = 0.0;
            for (int64_t n = 0; n < N; n++) {
                const float *r = dy + (n * Cout + co) * Pout;
                float part = 0.0f;
                for (int64_t p = 0; p < Pout; p++)
                    part += r[p];
                s += part;
            }
            db[co] += (float)s;
        }
    }
    if (dw) {
        const int nt = threads_for(Cout);
        int64_t cpt;
        const int64_t T = own_tile(d, nt, &cpt);
#pragma omp parallel num_threads(nt)
        {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            const int64_t c0 = tid * cpt < Cout ? tid * cpt : Cout;
            const int64_t c1 = c0 + cpt < Cout ? c0 + cpt : Cout;
            const int64_t rows = (c1 - c0) * kk;
            float *buf = ws->data + (size_t)tid * (size_t)(cpt * kk * T);
            for (int64_t n = 0; c1 > c0 && n < N; n++)
                for (int64_t p0 = 0; p0 < Pin; p0 += T) {
                    const int64_t cols = Pin - p0 < T ? Pin - p0 : T;
                    /* buf (rows, cols) = im2col of dy[n], channels c0..c1;
                     * dw[:, c0*kk : c1*kk] (Cin, rows) += x[n][:, p0:] (Cin, cols) buf^T */
                    nn_im2col(buf, dy + n * Cout * Pout, &g, c0, c1, p0, cols);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Cin, (int)rows,
                                (int)cols, 1.0f, x + n * Cin * Pin + p0, (int)Pin, buf, (int)cols,
                                1.0f, dw + c0 * kk, (int)Kt);
                }
        }
    }
    if (dx) {
        const int nt = optvq_threads();
        int64_t tiles;
        const int64_t T = item_tile(d, nt, &tiles);
#pragma omp parallel num_threads(nt)
        {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            float *col = ws->data + (size_t)tid * (size_t)(Kt * T); /* (Kt, T) */
#pragma omp for schedule(static)
            for (int64_t it = 0; it < N * tiles; it++) {
                int64_t n = it / tiles, p0 = (it % tiles) * T;
                int64_t cols = Pin - p0 < T ? Pin - p0 : T;
                if (cols <= 0)
                    continue;
                /* dx[n][:, p0:] (Cin, cols) += w (Cin, Kt) col (Kt, cols) */
                nn_im2col(col, dy + n * Cout * Pout, &g, 0, Cout, p0, cols);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Cin, (int)cols, (int)Kt,
                            1.0f, w, (int)Kt, col, (int)cols, 1.0f, dx + n * Cin * Pin + p0,
                            (int)Pin);
            }
        }
    }
    return OPTVQ_OK;
}

/* ---- naive reference: scatter form, double accumulation ---- */

void nn_convt2d_forward_naive(float *y, const float *x, const float *w, const float *b,
                              const nn_convt2d_desc *d)
{
    const int64_t Pout = d->h_out * d->w_out;
    for (int64_t n = 0; n < d->n; n++)
        for (int64_t co = 0; co < d->c_out; co++)
            for (int64_t oy = 0; oy < d->h_out; oy++)
                for (int64_t ox = 0; ox < d->w_out; ox++) {
                    double s = b ? b[co] : 0.0;
                    for (int64_t ci = 0; ci < d->c_in; ci++)
                        for (int64_t ky = 0; ky < d->kh; ky++) {
                            int64_t ty = oy + d->pad_t - ky;
                            if (ty < 0 || ty % d->stride_h || ty / d->stride_h >= d->h_in)
                                continue;
                            for (int64_t kx = 0; kx < d->kw; kx++) {
                                int64_t tx = ox + d->pad_l - kx;
                                if (tx < 0 || tx % d->stride_w || tx / d->stride_w >= d->w_in)
                                    continue;
                                s += (double)x[((n * d->c_in + ci) * d->h_in + ty / d->stride_h) *
                                                   d->w_in + tx / d->stride_w] *
                                     w[((ci * d->c_out + co) * d->kh + ky) * d->kw + kx];
                            }
                        }
                    y[(n * d->c_out + co) * Pout + oy * d->w_out + ox] = (float)s;
                }
}

void nn_convt2d_backward_naive(float *dx, float *dw, float *db, const float *dy, const float *x,
                               const float *w, const nn_convt2d_desc *d)
{
    const int64_t Pout = d->h_out * d->w_out;
    if (db)
        for (int64_t co = 0; co < d->c_out; co++) {
            double s = 0;
            for (int64_t n = 0; n < d->n; n++)
                for (int64_t p = 0; p < Pout; p++)
                    s += dy[(n * d->c_out + co) * Pout + p];
            db[co] += (float)s;
        }
    /* y[n,co,iy*s - pt + ky, ix*s - pl + kx] += x[n,ci,iy,ix] w[ci,co,ky,kx] */
    for (int64_t ci = 0; ci < d->c_in; ci++) {
        if (dw)
            for (int64_t co = 0; co < d->c_out; co++)
                for (int64_t ky = 0; ky < d->kh; ky++)
                    for (int64_t kx = 0; kx < d->kw; kx++) {
                        double s = 0;
                        for (int64_t n = 0; n < d->n; n++)
                            for (int64_t iy = 0; iy < d->h_in; iy++) {
                                int64_t oy = iy * d->stride_h - d->pad_t + ky;
                                if (oy < 0 || oy >= d->h_out)
                                    continue;
                                for (int64_t ix = 0; ix < d->w_in; ix++) {
                                    int64_t ox = ix * d->stride_w - d->pad_l + kx;
                                    if (ox < 0 || ox >= d->w_out)
                                        continue;
                                    s += (double)x[((n * d->c_in + ci) * d->h_in + iy) * d->w_in + ix] *
                                         dy[(n * d->c_out + co) * Pout + oy * d->w_out + ox];
                                }
                            }
                        dw[((ci * d->c_out + co) * d->kh + ky) * d->kw + kx] += (float)s;
                    }
        if (dx)
            for (int64_t n = 0; n < d->n; n++)
                for (int64_t iy = 0; iy < d->h_in; iy++)
                    for (int64_t ix = 0; ix < d->w_in; ix++) {
                        double s = 0;
                        for (int64_t co = 0; co < d->c_out; co++)
                            for (int64_t ky = 0; ky < d->kh; ky++) {
                                int64_t oy = iy * d->stride_h - d->pad_t + ky;
                                if (oy < 0 || oy >= d->h_out)
                                    continue;
                                for (int64_t kx = 0; kx < d->kw; kx++) {
                                    int64_t ox = ix * d->stride_w - d->pad_l + kx;
                                    if (ox < 0 || ox >= d->w_out)
                                        continue;
                                    s += (double)dy[(n * d->c_out + co) * Pout + oy * d->w_out + ox] *
                                         w[((ci * d->c_out + co) * d->kh + ky) * d->kw + kx];
                                }
                            }
                        dx[((n * d->c_in + ci) * d->h_in + iy) * d->w_in + ix] += (float)s;
                    }
    }
}
