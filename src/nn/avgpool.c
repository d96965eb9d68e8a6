/* Average pooling, torch.nn.AvgPool2d(k, stride, pad) defaults: count_include_pad,
 * floor mode. Each window divides by k*k. Plain loops (own reference). */
#include "core/error.h"
#include "core/parallel.h"
#include "nn/nn.h"

optvq_status nn_avgpool_init(nn_avgpool_desc *d, int64_t nc, int64_t h, int64_t w, int64_t k,
                             int64_t stride, int64_t pad)
{
    if (nc <= 0 || h <= 0 || w <= 0 || k <= 0 || stride <= 0 || pad < 0 || 2 * pad > k ||
        h + 2 * pad < k || w + 2 * pad < k)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "avgpool: bad sizes (k %lld stride %lld pad %lld)",
                          (long long)k, (long long)stride, (long long)pad);
    d->nc = nc;
    d->h_in = h;
    d->w_in = w;
    d->k = k;
    d->stride = stride;
    d->pad = pad;
    d->h_out = (h + 2 * pad - k) / stride + 1;
    d->w_out = (w + 2 * pad - k) / stride + 1;
    return OPTVQ_OK;
}

void nn_avgpool_forward(float *y, const float *x, const nn_avgpool_desc *d)
{
    const float inv = 1.0f / (float)(d->k * d->k);
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (d->nc * d->h_in * d->w_in > 8192)
    for (int64_t c = 0; c < d->nc; c++) {
        const float *xc = x + c * d->h_in * d->w_in;
        for (int64_t oy = 0; oy < d->h_out; oy++)
            for (int64_t ox = 0; ox < d->w_out; ox++) {
                float s = 0.0f;
                for (int64_t ky = 0; ky < d->k; ky++) {
                    int64_t iy = oy * d->stride - d->pad + ky;
                    if (iy < 0 || iy >= d->h_in)
                        continue;
                    for (int64_t kx = 0; kx < d->k; kx++) {
                        int64_t ix = ox * d->stride - d->pad + kx;
                        if (ix >= 0 && ix < d->w_in)
                            s += xc[iy * d->w_in + ix];
                    }
                }
                y[(c * d->h_out + oy) * d->w_out + ox] = s * inv;
            }
    }
}

void nn_avgpool_backward(float *dx, const float *dy, const nn_avgpool_desc *d)
{
    const float inv = 1.0f / (float)(d->k * d->k);
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (d->nc * d->h_in * d->w_in > 8192)
    for (int64_t c = 0; c < d->nc; c++) {
        float *xc = dx + c * d->h_in * d->w_in;
        for (int64_t oy = 0; oy < d->h_out; oy++)
            for (int64_t ox = 0; ox < d->w_out; ox++) {
                float g = dy[(c * d->h_out + oy) * d->w_out + ox] * inv;
                for (int64_t ky = 0; ky < d->k; ky++) {
                    int64_t iy = oy * d->stride - d->pad + ky;
                    if (iy < 0 || iy >= d->h_in)
                        continue;
                    for (int64_t kx = 0; kx < d->k; kx++) {
                        int64_t ix = ox * d->stride - d->pad + kx;
                        if (ix >= 0 && ix < d->w_in)
                            xc[iy * d->w_in + ix] += g;
                    }
                }
            }
    }
}
