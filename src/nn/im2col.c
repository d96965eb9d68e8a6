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

/* Valid output x range [lo, hi) within [ox0, ox1) for kernel column kx. */
static inline void valid_x(const nn_im2col_geom *g, int64_t kx, int64_t ox0, int64_t ox1,
                           int64_t *lo, int64_t *hi)
{
    /* need 0 <= ox*sw - pl + kx <= w-1 */
    int64_t a = -floor_div(-(g->pl - kx), g->sw);       /* ceil((pl-kx)/sw) */
    int64_t b = floor_div(g->w - 1 + g->pl - kx, g->sw) + 1;
    *lo = a > ox0 ? a : ox0;
    *hi = b < ox1 ? b : ox1;
    if (*hi < *lo)
        *hi = *lo;
}

void nn_im2col(float *col, const float *img, const nn_im2col_geom *g, int64_t c0, int64_t c1,
               int64_t p0, int64_t cols)
{
    const int64_t kk = g->kh * g->kw, hw = g->h * g->w;
    for (int64_t c = c0; c < c1; c++) {
        const float *im = img + c * hw;
        for (int64_t ky = 0; ky < g->kh; ky++)
            for (int64_t kx = 0; kx < g->kw; kx++) {
                float *row = col + ((c - c0) * kk + ky * g->kw + kx) * cols;
                int64_t t = 0, p = p0;
                while (t < cols) {
                    int64_t oy = p / g->wo, ox = p % g->wo;
                    int64_t run = g->wo - ox < cols - t ? g->wo - ox : cols - t;
                    int64_t iy = oy * g->sh - g->pt + ky;
                    float *dst = row + t; /* dst[q - ox] for q in [ox, ox+run) */
                    if (iy < 0 || iy >= g->h) {
                        memset(dst, 0, (size_t)run * sizeof(float));
                    } else {
                        int64_t lo, hi;
                        valid_x(g, kx, ox, ox + run, &lo, &hi);
                        for (int64_t q = ox; q < lo; q++)
                            dst[q - ox] = 0.0f;
                        /* pixel of output column q: im[base + q*sw] */
                        const int64_t base = iy * g->w - g->pl + kx;
                        if (g->sw == 1) {
                            if (hi > lo)
                                memcpy(dst + (lo - ox), im + (base + lo),
                                       (size_t)(hi - lo) * sizeof(float));
                        } else {
                            const int64_t sw = g->sw;
                            for (int64_t q = lo; q < hi; q++)
                                dst[q - ox] = im[base + q * sw];
                        }
                        for (int64_t q = hi; q < ox + run; q++)
                            dst[q - ox] = 0.0f;
                    }
                    t += run;
                    p += run;
                }
            }
    }
}

void nn_col2im(float *img, const float *col, const nn_im2col_geom *g, int64_t c0, int64_t c1,
               int64_t p0, int64_t cols)
{
    const int64_t kk = g->kh * g->kw, hw = g->h * g->w;
    for (int64_t c = c0; c < c1; c++) {
        float *im = img + c * hw;
        for (int64_t ky = 0; ky < g->kh; ky++)
            for (int64_t kx = 0; kx < g->kw; kx++) {
                const float *row = col + ((c - c0) * kk + ky * g->kw + kx) * cols;
                int64_t t = 0, p = p0;
                while (t < cols) {
                    int64_t oy = p / g->wo, ox = p % g->wo;
                    int64_t run = g->wo - ox < cols - t ? g->wo - ox : cols - t;
                    int64_t iy = oy * g->sh - g->pt + ky;
                    if (iy >= 0 && iy < g->h) {
                        const float *src = row + t; /* src[q - ox] */
                        int64_t lo, hi;
                        valid_x(g, kx, ox, ox + run, &lo, &hi);
                        const int64_t base = iy * g->w - g->pl + kx;
                        if (g->sw == 1) {
                            for (int64_t q = lo; q < hi; q++)
                                im[base + q] += src[q - ox];
                        } else {
                            const int64_t sw = g->sw;
                            for (int64_t q = lo; q < hi; q++)
                                im[base + q * sw] += src[q - ox];
                        }
                    }
                    t += run;
                    p += run;
                }
            }
    }
}
