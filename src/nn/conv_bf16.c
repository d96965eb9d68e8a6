/* bf16 inference convolution (see conv_bf16.h).
 *
 * Per image: x (c_in, h, w) -> xp (c_in, hp, wp) bf16 with the padding as
 * zeros; then y (c_out, P) = W (c_out, K) B (K, P), K = c_in kh kw in the
 * weights' own order (ci, ky, kx), P = h_out w_out, where
 *   B(k, p) = xp[row_off[k] + col_off[p]],
 *   row_off[(ci, ky, kx)] = ci hp wp + ky wp + kx,
 *   col_off[(oy, ox)]     = oy stride wp + ox stride.
 * For stride 1 the offsets of an output row are consecutive, so the GEMM's
 * packing reads B with vector loads; the bias is added after. */
#include "nn/conv_bf16.h"

#include "core/error.h"
#include "core/parallel.h"
#include "nn/gemm_bf16.h"

#include <string.h>

/* Byte sizes of the workspace's parts, each a multiple of 64. */
typedef struct bf16_layout {
    size_t xp, row_off, col_off, packed_a, gemm;
} bf16_layout;

static size_t up64(size_t v) { return (v + 63) / 64 * 64; }

static void dims(const nn_conv2d_desc *d, int64_t *hp, int64_t *wp, int64_t *K, int64_t *P)
{
    *hp = d->h_in + d->pad_t + d->pad_b;
    *wp = d->w_in + d->pad_l + d->pad_r;
    *K = d->c_in * d->kh * d->kw;
    *P = d->h_out * d->w_out;
}

static bf16_layout layout_of(const nn_conv2d_desc *d)
{
    int64_t hp, wp, K, P;
    dims(d, &hp, &wp, &K, &P);
    bf16_layout l;
    l.xp = up64((size_t)(d->c_in * hp * wp) * sizeof(uint16_t));
    l.row_off = up64((size_t)K * sizeof(int64_t));
    l.col_off = up64((size_t)P * sizeof(int64_t));
    l.packed_a = up64(nn_gemm_bf16_packed_a_elems(d->c_out, K) * sizeof(uint16_t));
    l.gemm = up64(nn_gemm_bf16_packed_workspace(d->c_out, P, K));
    return l;
}

static double min_flop = NN_CONV_BF16_MIN_FLOP;

void nn_conv_bf16_set_min_flop(double flop) { min_flop = flop < 0 ? NN_CONV_BF16_MIN_FLOP : flop; }

int nn_conv_bf16_pays(const nn_conv2d_desc *d)
{
    const double flop = 2.0 * (double)d->c_out * (double)(d->c_in * d->kh * d->kw) * (double)(d->h_out * d->w_out);
    return flop >= min_flop;
}

size_t nn_conv_bf16_packed_weight_elems(const nn_conv2d_desc *d)
{
    return nn_gemm_bf16_packed_a_elems(d->c_out, d->c_in * d->kh * d->kw);
}

optvq_status nn_conv_bf16_pack_weights(const nn_conv2d_desc *d, const float *w, uint16_t *packed)
{
    const int64_t K = d->c_in * d->kh * d->kw;
    return nn_gemm_bf16_pack_a_f32(d->c_out, K, w, K, packed);
}

size_t nn_conv_bf16_workspace(const nn_conv2d_desc *d, int packed_given)
{
    const bf16_layout l = layout_of(d);
    const size_t bytes = l.xp + l.row_off + l.col_off + (packed_given ? 0 : l.packed_a) + l.gemm;
    return bytes / sizeof(float);
}

/* xp (c_in, hp, wp) = x (c_in, h, w) rounded to bf16, zeros in the padding. */
static void pad_to_bf16(uint16_t *xp, const float *x, const nn_conv2d_desc *d, int64_t hp, int64_t wp)
{
    const int64_t H = d->h_in, W = d->w_in;
#pragma omp parallel for schedule(static) num_threads(optvq_threads_for(4.0 * (double)(d->c_in * hp * wp)))
    for (int64_t c = 0; c < d->c_in; c++) {
        uint16_t *plane = xp + c * hp * wp;
        memset(plane, 0, (size_t)(d->pad_t * wp) * sizeof *plane);
        memset(plane + (d->pad_t + H) * wp, 0, (size_t)(d->pad_b * wp) * sizeof *plane);
        for (int64_t iy = 0; iy < H; iy++) {
            uint16_t *row = plane + (d->pad_t + iy) * wp;
            const float *src = x + (c * H + iy) * W;
            for (int64_t i = 0; i < d->pad_l; i++)
                row[i] = 0;
            nn_f32_to_bf16(src, row + d->pad_l, W);
            for (int64_t i = d->pad_l + W; i < wp; i++)
                row[i] = 0;
        }
    }
}

optvq_status nn_conv_bf16_forward(float *y, const float *x, const float *w, const uint16_t *packed_w,
                                  const float *b, const nn_conv2d_desc *d, nn_workspace *ws)
{
    if (!y || !x || !d || (!w && !packed_w))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "conv_bf16_forward: NULL argument");
    OPTVQ_TRY(nn_workspace_check(ws, nn_conv_bf16_workspace(d, packed_w != NULL), "conv_bf16_forward"));
    int64_t hp, wp, K, P;
    dims(d, &hp, &wp, &K, &P);
    const bf16_layout l = layout_of(d);
    char *at = (char *)ws->data;
    uint16_t *xp = (uint16_t *)at;
    int64_t *row_off = (int64_t *)(at += l.xp);
    int64_t *col_off = (int64_t *)(at += l.row_off);
    at += l.col_off;
    if (!packed_w) {
        uint16_t *pa = (uint16_t *)at;
        at += l.packed_a;
        OPTVQ_TRY(nn_conv_bf16_pack_weights(d, w, pa));
        packed_w = pa;
    }
    void *gemm_ws = at;

    for (int64_t ci = 0, k = 0; ci < d->c_in; ci++)
        for (int64_t ky = 0; ky < d->kh; ky++)
            for (int64_t kx = 0; kx < d->kw; kx++)
                row_off[k++] = ci * hp * wp + ky * wp + kx;
    for (int64_t oy = 0, p = 0; oy < d->h_out; oy++)
        for (int64_t ox = 0; ox < d->w_out; ox++)
            col_off[p++] = oy * d->stride_h * wp + ox * d->stride_w;

    const int64_t Cout = d->c_out, HWin = d->h_in * d->w_in;
    for (int64_t n = 0; n < d->n; n++) {
        float *yn = y + n * Cout * P;
        pad_to_bf16(xp, x + n * d->c_in * HWin, d, hp, wp);
        OPTVQ_TRY(nn_gemm_bf16_packed_gather(Cout, P, K, packed_w, xp, row_off, col_off, yn, P, gemm_ws, l.gemm));
        if (b) {
#pragma omp parallel for schedule(static) num_threads(optvq_threads_for((double)(Cout * P)))
            for (int64_t co = 0; co < Cout; co++) {
                float *r = yn + co * P;
                const float v = b[co];
                for (int64_t p = 0; p < P; p++)
                    r[p] += v;
            }
        }
    }
    return OPTVQ_OK;
}
