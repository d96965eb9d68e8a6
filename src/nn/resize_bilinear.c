/* Bilinear resize, torch.nn.functional.interpolate(x, size=(ho, wo),
 * mode="bilinear", align_corners=False) without antialiasing, forward only
 * (the FID Inception resizes its input to 299x299 so).
 *
 * Per axis, as PyTorch's CPU kernel: scale = in / out (float), source
 * coordinate src = scale * (dst + 0.5) - 0.5 (evaluated in double, rounded to
 * float), clamped at 0; i0 = (int)src (at most in - 1), i1 = i0 + 1 unless at
 * the last pixel, weights l1 = src - i0, l0 = 1 - l1. The value is
 * (x[i0,j0] l0w + x[i0,j1] l1w) l0h + (x[i1,j0] l0w + x[i1,j1] l1w) l1h in float. */
#include <stdlib.h>

#include "core/error.h"
#include "core/parallel.h"
#include "nn/nn.h"

typedef struct axis_tap {
    int64_t i0, i1;
    float l0, l1;
} axis_tap;

static void taps(axis_tap *t, int64_t in, int64_t out)
{
    const float scale = (float)in / (float)out;
    for (int64_t d = 0; d < out; d++) {
        float src = (float)((double)scale * ((double)d + 0.5) - 0.5);
        if (src < 0.0f)
            src = 0.0f;
        int64_t i0 = (int64_t)src;
        if (i0 > in - 1)
            i0 = in - 1;
        float l1 = src - (float)i0;
        l1 = l1 < 0.0f ? 0.0f : l1 > 1.0f ? 1.0f : l1;
        t[d].i0 = i0;
        t[d].i1 = i0 + (i0 < in - 1 ? 1 : 0);
        t[d].l1 = l1;
        t[d].l0 = 1.0f - l1;
    }
}

optvq_status nn_resize_bilinear_forward(float *y, const float *x, int64_t nc, int64_t h, int64_t w, int64_t ho,
                                        int64_t wo)
{
    if (nc <= 0 || h <= 0 || w <= 0 || ho <= 0 || wo <= 0)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "resize_bilinear: bad sizes (%lld, %lldx%lld -> %lldx%lld)",
                          (long long)nc, (long long)h, (long long)w, (long long)ho, (long long)wo);
    axis_tap *th = malloc(sizeof *th * (size_t)(ho + wo));
    if (!th)
        return optvq_fail(OPTVQ_ERR_NOMEM, "resize_bilinear: out of memory");
    axis_tap *tw = th + ho;
    taps(th, h, ho);
    taps(tw, w, wo);
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (nc * ho * wo > 16384)
    for (int64_t c = 0; c < nc; c++) {
        const float *xc = x + c * h * w;
        float *yc = y + c * ho * wo;
        for (int64_t oy = 0; oy < ho; oy++) {
            const float *r0 = xc + th[oy].i0 * w, *r1 = xc + th[oy].i1 * w;
            const float a0 = th[oy].l0, a1 = th[oy].l1;
            for (int64_t ox = 0; ox < wo; ox++) {
                const axis_tap t = tw[ox];
                const float top = r0[t.i0] * t.l0 + r0[t.i1] * t.l1;
                const float bot = r1[t.i0] * t.l0 + r1[t.i1] * t.l1;
                yc[oy * wo + ox] = top * a0 + bot * a1;
            }
        }
    }
    free(th);
    return OPTVQ_OK;
}
