/* Nearest-neighbour upsampling x2: y[., 2i+a, 2j+b] = x[., i, j];
 * backward sums the four children. Plain loops (own reference). */
#include "core/parallel.h"
#include "nn/nn.h"

void nn_upsample2x_forward(float *y, const float *x, int64_t nc, int64_t h, int64_t w)
{
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (nc * h * w > 8192)
    for (int64_t c = 0; c < nc; c++) {
        const float *xc = x + c * h * w;
        float *yc = y + c * 4 * h * w;
        for (int64_t i = 0; i < h; i++) {
            float *r0 = yc + (2 * i) * 2 * w, *r1 = r0 + 2 * w;
            for (int64_t j = 0; j < w; j++) {
                float v = xc[i * w + j];
                r0[2 * j] = r0[2 * j + 1] = v;
                r1[2 * j] = r1[2 * j + 1] = v;
            }
        }
    }
}

void nn_upsample2x_backward(float *dx, const float *dy, int64_t nc, int64_t h, int64_t w)
{
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (nc * h * w > 8192)
    for (int64_t c = 0; c < nc; c++) {
        float *xc = dx + c * h * w;
        const float *yc = dy + c * 4 * h * w;
        for (int64_t i = 0; i < h; i++) {
            const float *r0 = yc + (2 * i) * 2 * w, *r1 = r0 + 2 * w;
            for (int64_t j = 0; j < w; j++)
                xc[i * w + j] += (r0[2 * j] + r0[2 * j + 1]) + (r1[2 * j] + r1[2 * j + 1]);
        }
    }
}
