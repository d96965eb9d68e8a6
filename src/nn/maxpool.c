/* Max pooling, torch.nn.MaxPool2d(k, stride, pad) with dilation 1, floor mode.
 *
 * Tie rule (PyTorch CPU kernel): each window is scanned row by row, left to
 * right, starting from max = -inf at the window's first in-range element, and the
 * running max is replaced only when a value is strictly greater (or NaN, which
 * then wins and propagates). So the FIRST maximum in scan order is the argmax,
 * and backward routes dy there. Padding cells are never selected (-inf).
 *
 * Backward recomputes the argmax from the forward's input x instead of storing
 * indices, so a caller that keeps x (as LPIPS keeps its relu outputs) needs no
 * extra buffer. The k=2, stride 2, pad 0 case (VGG) has its own loop; the general
 * loop is also the *_naive reference. */
#include <math.h>

#include "core/error.h"
#include "core/parallel.h"
#include "nn/nn.h"

#define PAR_MIN 8192

optvq_status nn_maxpool_init(nn_maxpool_desc *d, int64_t nc, int64_t h, int64_t w, int64_t k,
                             int64_t stride, int64_t pad)
{
    if (!d || nc <= 0 || h <= 0 || w <= 0 || k <= 0 || stride <= 0 || pad < 0 || 2 * pad > k ||
        h + 2 * pad < k || w + 2 * pad < k)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG,
                          "maxpool: bad sizes (nc %lld, %lldx%lld, k %lld stride %lld pad %lld)",
                          (long long)nc, (long long)h, (long long)w, (long long)k,
                          (long long)stride, (long long)pad);
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

/* Index (into the channel plane) of the window's first maximum. */
static inline int64_t window_argmax(const float *xc, const nn_maxpool_desc *d, int64_t oy,
                                    int64_t ox)
{
    int64_t y0 = oy * d->stride - d->pad, x0 = ox * d->stride - d->pad;
    int64_t y1 = y0 + d->k < d->h_in ? y0 + d->k : d->h_in;
    int64_t x1 = x0 + d->k < d->w_in ? x0 + d->k : d->w_in;
    if (y0 < 0)
        y0 = 0;
    if (x0 < 0)
        x0 = 0;
    int64_t best = y0 * d->w_in + x0;
    float m = -INFINITY;
    for (int64_t iy = y0; iy < y1; iy++)
        for (int64_t ix = x0; ix < x1; ix++) {
            float v = xc[iy * d->w_in + ix];
            if (v > m || isnan(v)) {
                m = v;
                best = iy * d->w_in + ix;
                if (isnan(v))
                    return best;
            }
        }
    return best;
}

/* k = 2, stride 2, pad 0: the four candidates in scan order a, b, c, d. */
static inline int64_t argmax2(const float *xc, int64_t w, int64_t oy, int64_t ox)
{
    int64_t i = 2 * oy * w + 2 * ox;
    int64_t cand[4] = {i, i + 1, i + w, i + w + 1};
    int64_t best = i;
    float m = xc[i];
    if (isnan(m))
        return i;
    for (int j = 1; j < 4; j++) {
        float v = xc[cand[j]];
        if (v > m || isnan(v)) {
            m = v;
            best = cand[j];
            if (isnan(v))
                break;
        }
    }
    return best;
}

static inline int is_k2(const nn_maxpool_desc *d)
{
    return d->k == 2 && d->stride == 2 && d->pad == 0;
}

void nn_maxpool_forward_naive(float *y, const float *x, const nn_maxpool_desc *d)
{
    const int64_t hw = d->h_in * d->w_in, ohw = d->h_out * d->w_out;
    for (int64_t c = 0; c < d->nc; c++)
        for (int64_t oy = 0; oy < d->h_out; oy++)
            for (int64_t ox = 0; ox < d->w_out; ox++)
                y[c * ohw + oy * d->w_out + ox] = x[c * hw + window_argmax(x + c * hw, d, oy, ox)];
}

void nn_maxpool_backward_naive(float *dx, const float *dy, const float *x,
                               const nn_maxpool_desc *d)
{
    const int64_t hw = d->h_in * d->w_in, ohw = d->h_out * d->w_out;
    for (int64_t c = 0; c < d->nc; c++)
        for (int64_t oy = 0; oy < d->h_out; oy++)
            for (int64_t ox = 0; ox < d->w_out; ox++)
                dx[c * hw + window_argmax(x + c * hw, d, oy, ox)] +=
                    dy[c * ohw + oy * d->w_out + ox];
}

#define K3_MAX_W 2048

/* k = 3, pad 0 (AlexNet's and Inception's pools), forward only: the maximum's
 * value without locating it, as a max over the three rows (a loop the compiler
 * vectorises), then over three columns. Equal to the scan's value (ties only
 * differ in which equal element is taken); a row holding a NaN takes the scan. */
static void forward_k3(float *y, const float *x, const nn_maxpool_desc *d)
{
    const int64_t W = d->w_in, hw = d->h_in * W, ohw = d->h_out * d->w_out, s = d->stride;
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (d->nc * hw > PAR_MIN)
    for (int64_t c = 0; c < d->nc; c++) {
        float rm[K3_MAX_W];
        const float *xc = x + c * hw;
        float *yc = y + c * ohw;
        for (int64_t oy = 0; oy < d->h_out; oy++) {
            const float *r0 = xc + oy * s * W, *r1 = r0 + W, *r2 = r1 + W;
            int nan = 0;
            for (int64_t i = 0; i < W; i++) {
                const float a = r0[i], b = r1[i], e = r2[i], m = a > b ? a : b;
                rm[i] = m > e ? m : e;
                nan |= (a != a) | (b != b) | (e != e);
            }
            float *yr = yc + oy * d->w_out;
            if (nan) {
                for (int64_t ox = 0; ox < d->w_out; ox++)
                    yr[ox] = xc[window_argmax(xc, d, oy, ox)];
                continue;
            }
            for (int64_t ox = 0; ox < d->w_out; ox++) {
                const float a = rm[ox * s], b = rm[ox * s + 1], e = rm[ox * s + 2], m = a > b ? a : b;
                yr[ox] = m > e ? m : e;
            }
        }
    }
}

void nn_maxpool_forward(float *y, const float *x, const nn_maxpool_desc *d)
{
    const int64_t hw = d->h_in * d->w_in, ohw = d->h_out * d->w_out;
    const int k2 = is_k2(d);
    if (d->k == 3 && d->pad == 0 && d->w_in <= K3_MAX_W) {
        forward_k3(y, x, d);
        return;
    }
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (d->nc * hw > PAR_MIN)
    for (int64_t c = 0; c < d->nc; c++) {
        const float *xc = x + c * hw;
        float *yc = y + c * ohw;
        for (int64_t oy = 0; oy < d->h_out; oy++)
            for (int64_t ox = 0; ox < d->w_out; ox++)
                yc[oy * d->w_out + ox] =
                    xc[k2 ? argmax2(xc, d->w_in, oy, ox) : window_argmax(xc, d, oy, ox)];
    }
}

void nn_maxpool_backward(float *dx, const float *dy, const float *x, const nn_maxpool_desc *d)
{
    const int64_t hw = d->h_in * d->w_in, ohw = d->h_out * d->w_out;
    const int k2 = is_k2(d);
    /* channels are independent: no two threads touch the same dx plane */
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (d->nc * hw > PAR_MIN)
    for (int64_t c = 0; c < d->nc; c++) {
        const float *xc = x + c * hw, *gc = dy + c * ohw;
        float *dc = dx + c * hw;
        for (int64_t oy = 0; oy < d->h_out; oy++)
            for (int64_t ox = 0; ox < d->w_out; ox++)
                dc[k2 ? argmax2(xc, d->w_in, oy, ox) : window_argmax(xc, d, oy, ox)] +=
                    gc[oy * d->w_out + ox];
    }
}
