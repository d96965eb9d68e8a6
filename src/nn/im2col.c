/* im2col / col2im over a range of output positions, so the column buffer of a
 * convolution is tiled and never grows with the image. */
#include "nn/nn.h"

#include <string.h>

#define NN_TILE_FLOATS ((int64_t)1 << 21) /* 8 MiB of columns per thread */

int64_t nn_tile_cols(int64_t rows, int64_t positions, int64_t min_tiles, int64_t *tiles)
{
    if (rows < 1)
        rows = 1;
    int64_t tmax = NN_TILE_FLOATS / rows;
    if (tmax < 32)
        tmax = 32; /* huge channel counts: keep GEMMs sensible (bounded by 32*rows) */
    int64_t nt = (positions + tmax - 1) / tmax;
    if (nt < min_tiles)
        nt = min_tiles;
    if (nt > positions)
        nt = positions;
    if (nt < 1)
        nt = 1;
    int64_t t = (positions + nt - 1) / nt;
    if (tiles)
        *tiles = (positions + t - 1) / t;
    return t;
}

int64_t nn_tile_items(int64_t rows, int64_t positions, int64_t images, int threads,
                      int64_t *tiles)
{
    int64_t min_tiles = images >= threads ? 1 : (threads + images - 1) / images, t;
    int64_t cols = nn_tile_cols(rows, positions, min_tiles, &t);
    /* few items: round the count up to a multiple of the threads (balance) */
    while (images * t < 8 * threads && (images * t) % threads != 0 && t < positions) {
        int64_t t2;
        int64_t c2 = nn_tile_cols(rows, positions, t + 1, &t2);
        if (t2 <= t)
            break;
        cols = c2;
        t = t2;
    }
    if (tiles)
        *tiles = t;
    return cols;
}

static inline int64_t floor_div(int64_t a, int64_t b) /* b > 0 */
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* Output columns ox in [lo, hi) read inside the image for kernel column kx:
 * 0 <= ox*sw - pl + kx <= w-1. Computed once per kernel row, so the per-run loop
 * has no divisions. */
static inline void valid_x(const nn_im2col_geom *g, int64_t kx, int64_t *lo, int64_t *hi)
{
    int64_t a = -floor_div(-(g->pl - kx), g->sw); /* ceil((pl-kx)/sw) */
    int64_t b = floor_div(g->w - 1 + g->pl - kx, g->sw) + 1;
    *lo = a > 0 ? a : 0;
    *hi = b < g->wo ? b : g->wo;
    if (*hi < *lo)
        *hi = *lo;
}

void nn_im2col(float *col, const float *img, const nn_im2col_geom *g, int64_t c0, int64_t c1,
               int64_t p0, int64_t cols)
{
    const int64_t kk = g->kh * g->kw, hw = g->h * g->w, sw = g->sw;
    const int64_t oy0 = p0 / g->wo, ox0 = p0 % g->wo;
    for (int64_t c = c0; c < c1; c++) {
        const float *im = img + c * hw;
        for (int64_t ky = 0; ky < g->kh; ky++)
            for (int64_t kx = 0; kx < g->kw; kx++) {
                float *row = col + ((c - c0) * kk + ky * g->kw + kx) * cols;
                int64_t vlo, vhi;
                valid_x(g, kx, &vlo, &vhi);
                int64_t t = 0, oy = oy0, ox = ox0;
                while (t < cols) {
                    const int64_t run = g->wo - ox < cols - t ? g->wo - ox : cols - t;
                    const int64_t end = ox + run;
                    const int64_t iy = oy * g->sh - g->pt + ky;
                    float *dst = row + t; /* dst[q - ox] for q in [ox, end) */
                    if (iy < 0 || iy >= g->h) {
                        for (int64_t q = ox; q < end; q++)
                            dst[q - ox] = 0.0f;
                    } else {
                        const int64_t lo = vlo > ox ? vlo : ox, hi = vhi < end ? vhi : end;
                        /* pixel of output column q: im[base + q*sw] */
                        const int64_t base = iy * g->w - g->pl + kx;
                        int64_t q = ox;
                        for (; q < lo; q++)
                            dst[q - ox] = 0.0f;
                        if (sw == 1)
                            for (; q < hi; q++)
                                dst[q - ox] = im[base + q];
                        else
                            for (; q < hi; q++)
                                dst[q - ox] = im[base + q * sw];
                        for (q = hi > lo ? hi : lo; q < end; q++)
                            dst[q - ox] = 0.0f;
                    }
                    t += run;
                    ox = 0;
                    oy++;
                }
            }
    }
}

void nn_col2im(float *img, const float *col, const nn_im2col_geom *g, int64_t c0, int64_t c1,
               int64_t p0, int64_t cols)
{
    const int64_t kk = g->kh * g->kw, hw = g->h * g->w, sw = g->sw;
    const int64_t oy0 = p0 / g->wo, ox0 = p0 % g->wo;
    for (int64_t c = c0; c < c1; c++) {
        float *im = img + c * hw;
        for (int64_t ky = 0; ky < g->kh; ky++)
            for (int64_t kx = 0; kx < g->kw; kx++) {
                const float *row = col + ((c - c0) * kk + ky * g->kw + kx) * cols;
                int64_t vlo, vhi;
                valid_x(g, kx, &vlo, &vhi);
                int64_t t = 0, oy = oy0, ox = ox0;
                while (t < cols) {
                    const int64_t run = g->wo - ox < cols - t ? g->wo - ox : cols - t;
                    const int64_t end = ox + run;
                    const int64_t iy = oy * g->sh - g->pt + ky;
                    if (iy >= 0 && iy < g->h) {
                        const float *src = row + t; /* src[q - ox] */
                        const int64_t lo = vlo > ox ? vlo : ox, hi = vhi < end ? vhi : end;
                        const int64_t base = iy * g->w - g->pl + kx;
                        if (sw == 1)
                            for (int64_t q = lo; q < hi; q++)
                                im[base + q] += src[q - ox];
                        else
                            for (int64_t q = lo; q < hi; q++)
                                im[base + q * sw] += src[q - ox];
                    }
                    t += run;
                    ox = 0;
                    oy++;
                }
            }
    }
}
