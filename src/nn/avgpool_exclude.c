/* Average pooling with count_include_pad=False (torch.nn.functional.avg_pool2d(x,
 * k, stride, pad, count_include_pad=False), floor mode), forward only: each
 * window divides by the number of its cells inside the image. As PyTorch's CPU
 * kernel: a float sum in row-major window order, then one float division.
 * Used by the FID Inception's pool branches (3x3, stride 1, pad 1). */
#include "core/parallel.h"
#include "nn/nn.h"

void nn_avgpool_exclude_forward(float *y, const float *x, const nn_avgpool_desc *d)
{
    const int64_t H = d->h_in, W = d->w_in, HO = d->h_out, WO = d->w_out;
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (d->nc * H * W > 8192)
    for (int64_t c = 0; c < d->nc; c++) {
        const float *xc = x + c * H * W;
        float *yc = y + c * HO * WO;
        for (int64_t oy = 0; oy < HO; oy++) {
            int64_t y0 = oy * d->stride - d->pad, y1 = y0 + d->k;
            y0 = y0 < 0 ? 0 : y0;
            y1 = y1 > H ? H : y1;
            for (int64_t ox = 0; ox < WO; ox++) {
                int64_t x0 = ox * d->stride - d->pad, x1 = x0 + d->k;
                x0 = x0 < 0 ? 0 : x0;
                x1 = x1 > W ? W : x1;
                float s = 0.0f;
                for (int64_t iy = y0; iy < y1; iy++)
                    for (int64_t ix = x0; ix < x1; ix++)
                        s += xc[iy * W + ix];
                yc[oy * WO + ox] = s / (float)((y1 - y0) * (x1 - x0));
            }
        }
    }
}
