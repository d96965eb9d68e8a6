/* Direct stride-1 convolution for small channel counts (AVX2+FMA), used by
 * conv2d where im2col + a GEMM with tiny M (16-32 output channels) spends its
 * time copying columns rather than multiplying.
 *
 * Flat padded layout: each input channel is stored zero-padded with row stride
 * wp = w + max(pl, pr), pixel (iy, ix) at (iy + pt) * wp + pl + ix. The zero run
 * between two rows (wp - w >= max(pl, pr)) serves as the right padding of one
 * row and the left padding of the next. Output (oy, ox) is computed at flat
 * position q = oy * wp + ox, and kernel tap (ci, ky, kx) reads the input at
 * q + ci * lx + ky * wp + kx: a constant offset per tap. So the convolution is
 * an implicit GEMM out (M, Q) = W (M, K) B (K, Q) whose B rows are shifted views
 * of the padded input, no im2col. Columns ox in [wo, wp) are computed and
 * dropped.
 *
 * Forward: register tile of 4 output channels x 24 positions (12 accumulators).
 * Backward data: the same kernel on the zero-padded dy with the transposed,
 * flipped weights (a stride-1 conv is the adjoint of a stride-1 conv with pads
 * k-1-p). Backward weights: dw (M, K) = dyp (M, Q) B^T, a 4 x 3 tile of dot
 * products over Q (small images batched, so each dot product is long); images
 * are summed in a fixed number of chunks (by image index only) whose partials
 * are added in order, so the result does not depend on the thread count.
 * Forward and dx are computed per output in a fixed order: also independent of
 * the thread count. */
#include "nn/conv_direct.h"

#include "core/parallel.h"
#include "nn/vmath.h"

#include <cblas.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define DIRECT_KMAX 1152    /* taps x channels per output (K) */
#define DIRECT_CMAX 64      /* channels in and out */
#define DIRECT_QB 24        /* positions per register tile */
#define DW_CHUNKS 16        /* image chunks of the dw reduction */
#define TAP_QMIN 2048       /* flat output positions from which the GEMM path wins */

typedef struct dgeom {
    int64_t c, h, w;        /* input image (c, h, w) */
    int64_t kh, kw, pt, pl; /* kernel, top / left padding */
    int64_t ho, wo;         /* output size */
    int64_t wp;             /* padded row stride */
    int64_t qp;             /* flat output positions computed (multiple of DIRECT_QB) */
    int64_t lx;             /* floats per padded input channel */
    int64_t m, mp;          /* output channels, rounded up to 4 */
} dgeom;

static int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

static dgeom geom_make(int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t pt,
                       int64_t pb, int64_t pl, int64_t pr, int64_t m)
{
    dgeom g;
    g.c = c, g.h = h, g.w = w, g.kh = kh, g.kw = kw, g.pt = pt, g.pl = pl;
    g.ho = h + pt + pb - kh + 1;
    g.wo = w + pl + pr - kw + 1;
    g.wp = w + (pl > pr ? pl : pr);
    g.qp = round_up(g.ho * g.wp, DIRECT_QB);
    g.lx = round_up(g.qp + (kh - 1) * g.wp + kw - 1, 16);
    g.m = m;
    g.mp = round_up(m, 4);
    return g;
}

static dgeom geom_fwd(const nn_conv2d_desc *d)
{
    return geom_make(d->c_in, d->h_in, d->w_in, d->kh, d->kw, d->pad_t, d->pad_b, d->pad_l,
                     d->pad_r, d->c_out);
}

/* dx = stride-1 conv of dy (padded by k-1-p) with transposed, flipped weights */
static dgeom geom_bwd(const nn_conv2d_desc *d)
{
    return geom_make(d->c_out, d->h_out, d->w_out, d->kh, d->kw, d->kh - 1 - d->pad_t,
                     d->kh - 1 - d->pad_b, d->kw - 1 - d->pad_l, d->kw - 1 - d->pad_r, d->c_in);
}

/* Floats per thread: padded input (c, lx) and output (mp, qp). */
static size_t thread_floats(const dgeom *g)
{
    return (size_t)round_up(g->c * g->lx + g->mp * g->qp, 16);
}

/* Images per dw kernel call: small images are batched so each dot product runs
 * over >= ~1024 positions before its horizontal sum. */
static int64_t dw_batch(const dgeom *g)
{
    int64_t b = 1024 / g->qp;
    return b < 1 ? 1 : b > 16 ? 16 : b;
}

int nn_conv_direct_ok(const nn_conv2d_desc *d)
{
#ifdef NN_HAVE_AVX2
    if (d->stride_h != 1 || d->stride_w != 1)
        return 0;
    if (d->kh == 1 && d->kw == 1 && !d->pad_t && !d->pad_b && !d->pad_l && !d->pad_r)
        return 0; /* pointwise: a plain GEMM already */
    const int64_t kk = d->kh * d->kw;
    if (d->c_in > DIRECT_CMAX || d->c_out > DIRECT_CMAX || d->c_in * kk > DIRECT_KMAX ||
        d->c_out * kk > DIRECT_KMAX)
        return 0;
    dgeom f = geom_fwd(d), b = geom_bwd(d);
    if ((d->c_in > 32 || d->c_out > 32) && f.ho * f.wp >= TAP_QMIN)
        return 0; /* 64 channels on large images: the shifted-view GEMMs do better */
    const int64_t lim = (int64_t)1 << 28;
    return f.c * f.lx < lim && b.c * b.lx < lim && f.mp * f.qp < lim && b.mp * b.qp < lim;
#else
    (void)d;
    return 0;
#endif
}

static size_t shared_floats(const nn_conv2d_desc *d)
{
    const int64_t kk = d->kh * d->kw;
    int64_t a = round_up(d->c_out, 4) * d->c_in * kk, b = round_up(d->c_in, 4) * d->c_out * kk;
    return (size_t)round_up(a > b ? a : b, 16);
}

static size_t dw_part_floats(const nn_conv2d_desc *d)
{
    const int64_t nch = d->n < DW_CHUNKS ? d->n : DW_CHUNKS;
    return (size_t)(nch * round_up(d->c_out, 4) * round_up(d->c_in * d->kh * d->kw, 3));
}

size_t nn_conv_direct_workspace(const nn_conv2d_desc *d, int nt)
{
    dgeom f = geom_fwd(d), b = geom_bwd(d);
    size_t tf = thread_floats(&f) * (size_t)dw_batch(&f), tb = thread_floats(&b);
    size_t per = tf > tb ? tf : tb;
    return shared_floats(d) + (size_t)nt * per + dw_part_floats(d);
}

#ifdef NN_HAVE_AVX2

/* Copies image (c, h, w) into the flat padded layout, zeroing everything else. */
static void pad_image(float *dst, const float *src, const dgeom *g)
{
    for (int64_t c = 0; c < g->c; c++) {
        float *d = dst + c * g->lx;
        const float *s = src + c * g->h * g->w;
        int64_t pos = 0;
        for (int64_t iy = 0; iy < g->h; iy++) {
            int64_t start = (g->pt + iy) * g->wp + g->pl;
            memset(d + pos, 0, sizeof(float) * (size_t)(start - pos));
            memcpy(d + start, s + iy * g->w, sizeof(float) * (size_t)g->w);
            pos = start + g->w;
        }
        memset(d + pos, 0, sizeof(float) * (size_t)(g->lx - pos));
    }
}

/* koff[k] for k = (ci, ky, kx) in weight order; k in [K, kpad) read offset 0. */
static void make_koff(int32_t *koff, const dgeom *g, int64_t kpad)
{
    int64_t k = 0;
    for (int64_t ci = 0; ci < g->c; ci++)
        for (int64_t ky = 0; ky < g->kh; ky++)
            for (int64_t kx = 0; kx < g->kw; kx++)
                koff[k++] = (int32_t)(ci * g->lx + ky * g->wp + kx);
    for (; k < kpad; k++)
        koff[k] = 0;
}

/* out[r][0..24) (row stride ldo) = sum_k wk[4k + r] * in[koff[k] + 0..24), r < 4 */
static inline void mk_fwd(float *out, int64_t ldo, const float *in, const int32_t *koff,
                          const float *wk, int64_t K)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
    __m256 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
    for (int64_t k = 0; k < K; k++) {
        const float *s = in + koff[k];
        const __m256 b0 = _mm256_loadu_ps(s), b1 = _mm256_loadu_ps(s + 8),
                     b2 = _mm256_loadu_ps(s + 16);
        const float *a = wk + 4 * k;
        __m256 v = _mm256_broadcast_ss(a);
        c00 = _mm256_fmadd_ps(v, b0, c00);
        c01 = _mm256_fmadd_ps(v, b1, c01);
        c02 = _mm256_fmadd_ps(v, b2, c02);
        v = _mm256_broadcast_ss(a + 1);
        c10 = _mm256_fmadd_ps(v, b0, c10);
        c11 = _mm256_fmadd_ps(v, b1, c11);
        c12 = _mm256_fmadd_ps(v, b2, c12);
        v = _mm256_broadcast_ss(a + 2);
        c20 = _mm256_fmadd_ps(v, b0, c20);
        c21 = _mm256_fmadd_ps(v, b1, c21);
        c22 = _mm256_fmadd_ps(v, b2, c22);
        v = _mm256_broadcast_ss(a + 3);
        c30 = _mm256_fmadd_ps(v, b0, c30);
        c31 = _mm256_fmadd_ps(v, b1, c31);
        c32 = _mm256_fmadd_ps(v, b2, c32);
    }
    _mm256_storeu_ps(out, c00);
    _mm256_storeu_ps(out + 8, c01);
    _mm256_storeu_ps(out + 16, c02);
    out += ldo;
    _mm256_storeu_ps(out, c10);
    _mm256_storeu_ps(out + 8, c11);
    _mm256_storeu_ps(out + 16, c12);
    out += ldo;
    _mm256_storeu_ps(out, c20);
    _mm256_storeu_ps(out + 8, c21);
    _mm256_storeu_ps(out + 16, c22);
    out += ldo;
    _mm256_storeu_ps(out, c30);
    _mm256_storeu_ps(out + 8, c31);
    _mm256_storeu_ps(out + 16, c32);
}

/* Packs W (m, K) row-major into 4-row panels: wpk[(cb K + k) 4 + r] = W[cb*4 + r][k]. When
 * bwd, W'[ci][co kk + t] = w[co][ci][kk - 1 - t] (transposed, flipped) of w (c_out, c_in, kk). */
static void pack_weights(float *wpk, const float *w, const nn_conv2d_desc *d, int bwd)
{
    const int64_t kk = d->kh * d->kw;
    const int64_t m = bwd ? d->c_in : d->c_out, K = (bwd ? d->c_out : d->c_in) * kk;
    const int64_t mp = round_up(m, 4);
    for (int64_t cb = 0; cb < mp / 4; cb++)
        for (int64_t k = 0; k < K; k++)
            for (int64_t r = 0; r < 4; r++) {
                int64_t row = cb * 4 + r;
                float v = 0.0f;
                if (row < m) {
                    if (!bwd)
                        v = w[row * K + k];
                    else {
                        int64_t co = k / kk, t = k % kk;
                        v = w[(co * d->c_in + row) * kk + (kk - 1 - t)];
                    }
                }
                wpk[(cb * K + k) * 4 + r] = v;
            }
}

/* One pass: dst (n, g->m, ho, wo) = (or +=) conv of src (n, g->c, h, w) + bias. Work items
 * are (image, output-row slice); each thread pads an image once for its slices. */
static void direct_pass(float *dst, const float *src, int64_t N, const dgeom *g, const float *wpk,
                        const int32_t *koff, const float *bias, int accumulate, float *bufs,
                        size_t per_thread, int nt)
{
    const int64_t K = g->c * g->kh * g->kw, in_img = g->c * g->h * g->w;
    const int64_t out_img = g->m * g->ho * g->wo;
    int64_t S = 1; /* slices per image: enough items for the threads */
    if (N < 4 * nt)
        S = (4 * nt + N - 1) / N;
    if (S > g->ho)
        S = g->ho;
#pragma omp parallel num_threads(nt)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *in = bufs + (size_t)tid * per_thread, *out = in + g->c * g->lx;
        int64_t cur = -1;
#pragma omp for schedule(static)
        for (int64_t it = 0; it < N * S; it++) {
            const int64_t n = it / S, s = it % S;
            const int64_t oy0 = s * g->ho / S, oy1 = (s + 1) * g->ho / S;
            if (oy0 >= oy1)
                continue;
            if (cur != n) {
                pad_image(in, src + n * in_img, g);
                cur = n;
            }
            const int64_t qa = oy0 * g->wp / DIRECT_QB * DIRECT_QB;
            int64_t qb = round_up(oy1 * g->wp, DIRECT_QB);
            if (qb > g->qp)
                qb = g->qp;
            for (int64_t q = qa; q < qb; q += DIRECT_QB)
                for (int64_t cb = 0; cb < g->mp / 4; cb++)
                    mk_fwd(out + cb * 4 * g->qp + q, g->qp, in + q, koff, wpk + cb * K * 4, K);
            float *dn = dst + n * out_img;
            for (int64_t co = 0; co < g->m; co++) {
                const float bv = bias ? bias[co] : 0.0f;
                for (int64_t oy = oy0; oy < oy1; oy++) {
                    const float *o = out + co * g->qp + oy * g->wp;
                    float *yr = dn + (co * g->ho + oy) * g->wo;
                    if (accumulate) {
#pragma omp simd
                        for (int64_t ox = 0; ox < g->wo; ox++)
                            yr[ox] += o[ox];
                    } else {
#pragma omp simd
                        for (int64_t ox = 0; ox < g->wo; ox++)
                            yr[ox] = o[ox] + bv;
                    }
                }
            }
        }
    }
}

/* [sum a, sum b, sum c, sum d] */
static inline __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d)
{
    __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

/* part[r][k0 + j] += sum_q dyp[r][q] * in[koff[k0 + j] + q], r < 4, j < 3, q < qp */
static inline void mk_dw(float *part, int64_t ldp, const float *dyp, int64_t ldd,
                         int64_t dy_stride, const float *in, int64_t in_stride,
                         const int32_t *koff, int64_t qp, int64_t nimg)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
    __m256 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
    for (int64_t j = 0; j < nimg; j++) {
    const float *x0 = in + j * in_stride + koff[0], *x1 = in + j * in_stride + koff[1],
                *x2 = in + j * in_stride + koff[2];
    const float *dj = dyp + j * dy_stride;
    const float *d0 = dj, *d1 = dj + ldd, *d2 = dj + 2 * ldd, *d3 = dj + 3 * ldd;
    for (int64_t q = 0; q < qp; q += 8) {
        __m256 b0 = _mm256_loadu_ps(x0 + q), b1 = _mm256_loadu_ps(x1 + q),
               b2 = _mm256_loadu_ps(x2 + q);
        /* keep every loaded vector in a register: otherwise GCC folds the loads into
         * the FMAs that use them, 15-16 loads a step instead of 7 */
        __asm__("" : "+x"(b0), "+x"(b1), "+x"(b2));
        __m256 v = _mm256_loadu_ps(d0 + q);
        __asm__("" : "+x"(v));
        c00 = _mm256_fmadd_ps(v, b0, c00);
        c01 = _mm256_fmadd_ps(v, b1, c01);
        c02 = _mm256_fmadd_ps(v, b2, c02);
        v = _mm256_loadu_ps(d1 + q);
        __asm__("" : "+x"(v));
        c10 = _mm256_fmadd_ps(v, b0, c10);
        c11 = _mm256_fmadd_ps(v, b1, c11);
        c12 = _mm256_fmadd_ps(v, b2, c12);
        v = _mm256_loadu_ps(d2 + q);
        __asm__("" : "+x"(v));
        c20 = _mm256_fmadd_ps(v, b0, c20);
        c21 = _mm256_fmadd_ps(v, b1, c21);
        c22 = _mm256_fmadd_ps(v, b2, c22);
        v = _mm256_loadu_ps(d3 + q);
        __asm__("" : "+x"(v));
        c30 = _mm256_fmadd_ps(v, b0, c30);
        c31 = _mm256_fmadd_ps(v, b1, c31);
        c32 = _mm256_fmadd_ps(v, b2, c32);
    }
    }
    float t[4];
    const __m256 cols[3][4] = {{c00, c10, c20, c30}, {c01, c11, c21, c31}, {c02, c12, c22, c32}};
    for (int j = 0; j < 3; j++) {
        _mm_storeu_ps(t, hsum4(cols[j][0], cols[j][1], cols[j][2], cols[j][3]));
        for (int r = 0; r < 4; r++)
            part[r * ldp + j] += t[r];
    }
}

/* dyp (mp, qp): dy image (m, ho, wo) at flat positions, zero elsewhere. */
static void pad_dy(float *dyp, const float *dy, const dgeom *g)
{
    memset(dyp, 0, sizeof(float) * (size_t)(g->mp * g->qp));
    for (int64_t co = 0; co < g->m; co++)
        for (int64_t oy = 0; oy < g->ho; oy++)
            memcpy(dyp + co * g->qp + oy * g->wp, dy + (co * g->ho + oy) * g->wo,
                   sizeof(float) * (size_t)g->wo);
}

void nn_conv_direct_forward(float *y, const float *x, const float *w, const float *b,
                            const nn_conv2d_desc *d, float *ws, int nt)
{
    const dgeom g = geom_fwd(d);
    int32_t koff[DIRECT_KMAX + 3];
    make_koff(koff, &g, g.c * g.kh * g.kw);
    pack_weights(ws, w, d, 0);
    dgeom gb = geom_bwd(d);
    size_t tf = thread_floats(&g) * (size_t)dw_batch(&g), tb = thread_floats(&gb);
    size_t per = tf > tb ? tf : tb;
    direct_pass(y, x, d->n, &g, ws, koff, b, 0, ws + shared_floats(d), per, nt);
}

void nn_conv_direct_backward(float *dx, float *dw, const float *dy, const float *x,
                             const float *w, const nn_conv2d_desc *d, float *ws, int nt)
{
    const dgeom g = geom_fwd(d), gb = geom_bwd(d);
    const int64_t B = dw_batch(&g);
    size_t tf = thread_floats(&g) * (size_t)B, tb = thread_floats(&gb);
    size_t per = tf > tb ? tf : tb;
    float *bufs = ws + shared_floats(d);
    int32_t koff[DIRECT_KMAX + 3];
    if (dx) {
        make_koff(koff, &gb, gb.c * gb.kh * gb.kw);
        pack_weights(ws, w, d, 1);
        direct_pass(dx, dy, d->n, &gb, ws, koff, NULL, 1, bufs, per, nt);
    }
    if (!dw)
        return;
    const int64_t N = d->n, K = g.c * g.kh * g.kw, Kp = round_up(K, 3), M = d->c_out;
    const int64_t nch = N < DW_CHUNKS ? N : DW_CHUNKS, psz = g.mp * Kp;
    float *parts = bufs + (size_t)nt * per;
    make_koff(koff, &g, Kp);
    const int64_t in_img = g.c * g.h * g.w, dy_img = M * g.ho * g.wo;
#pragma omp parallel num_threads(nt)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        const int64_t in_sz = g.c * g.lx, dy_sz = g.mp * g.qp;
        float *in = bufs + (size_t)tid * per, *dyp = in + B * in_sz;
#pragma omp for schedule(static)
        for (int64_t j = 0; j < nch; j++) {
            float *part = parts + j * psz;
            memset(part, 0, sizeof(float) * (size_t)psz);
            const int64_t nstart = j * N / nch, n1 = (j + 1) * N / nch;
            const int64_t groups = (n1 - nstart + B - 1) / B;
            const int64_t bb = groups ? (n1 - nstart + groups - 1) / groups : 1; /* balanced */
            for (int64_t n0 = nstart; n0 < n1; n0 += bb) {
                const int64_t nb = n1 - n0 < bb ? n1 - n0 : bb;
                for (int64_t i = 0; i < nb; i++) {
                    pad_image(in + i * in_sz, x + (n0 + i) * in_img, &g);
                    pad_dy(dyp + i * dy_sz, dy + (n0 + i) * dy_img, &g);
                }
                for (int64_t cb = 0; cb < g.mp / 4; cb++)
                    for (int64_t k0 = 0; k0 < Kp; k0 += 3)
                        mk_dw(part + cb * 4 * Kp + k0, Kp, dyp + cb * 4 * g.qp, g.qp, dy_sz, in,
                              in_sz, koff + k0, g.qp, nb);
            }
        }
        /* dw += sum of the chunk partials, in chunk order */
#pragma omp for schedule(static)
        for (int64_t e = 0; e < M * K; e++) {
            const int64_t co = e / K, k = e % K;
            double s = 0.0;
            for (int64_t j = 0; j < nch; j++)
                s += parts[j * psz + co * Kp + k];
            dw[e] += (float)s;
        }
    }
}

#else /* no AVX2: never selected (nn_conv_direct_ok returns 0) */

void nn_conv_direct_forward(float *y, const float *x, const float *w, const float *b,
                            const nn_conv2d_desc *d, float *ws, int nt)
{
    (void)y, (void)x, (void)w, (void)b, (void)d, (void)ws, (void)nt;
}

void nn_conv_direct_backward(float *dx, float *dw, const float *dy, const float *x,
                             const float *w, const nn_conv2d_desc *d, float *ws, int nt)
{
    (void)dx, (void)dw, (void)dy, (void)x, (void)w, (void)d, (void)ws, (void)nt;
}

#endif

/* ------------------------------------------------------------------------ */
/* Wide channels: y (M, Q) = sum over taps t of W_t (M, C) X_t (C, Q), where    */
/* X_t is the padded input seen at offset koff[t] with row stride lx: an     */
/* ordinary strided matrix, so each tap is one BLAS call and nothing is      */
/* copied but the padding. Images one at a time; threads split Q. Forward   */
/* and dx: every output column has one owner. dw: one partial per thread,   */
/* added in thread order (deterministic for a given thread count, like the  */
/* im2col path).                                                            */
/* ------------------------------------------------------------------------ */

#define TAP_CMIN 32     /* below: im2col GEMM or the direct kernels */
#define TAP_COLS 256    /* positions per GEMM tile (L2-sized windows) */

int nn_conv_tapgemm_ok(const nn_conv2d_desc *d)
{
    if (d->stride_h != 1 || d->stride_w != 1)
        return 0;
    if (d->kh == 1 && d->kw == 1 && !d->pad_t && !d->pad_b && !d->pad_l && !d->pad_r)
        return 0;
    if (nn_conv_direct_ok(d) || d->c_in < TAP_CMIN || d->c_out < TAP_CMIN || d->kh * d->kw > 64)
        return 0;
    if (d->h_out * (d->w_in + (d->pad_l > d->pad_r ? d->pad_l : d->pad_r)) < TAP_QMIN)
        return 0; /* small images: im2col's one large GEMM does better */
    dgeom f = geom_fwd(d), b = geom_bwd(d);
    const int64_t lim = (int64_t)1 << 30;
    return f.c * f.lx < lim && b.c * b.lx < lim && f.mp * f.qp < lim && b.mp * b.qp < lim &&
           f.qp < lim / 4 && b.qp < lim / 4;
}

static size_t tap_w_floats(const nn_conv2d_desc *d)
{
    return (size_t)round_up(d->kh * d->kw * d->c_in * d->c_out, 16);
}

/* Flat output positions per GEMM tile of tap_pass (a multiple of 16) and
 * the number of tiles (a multiple of nt). */
static int64_t tap_tile(int64_t Q, int nt, int64_t *tiles_out)
{
    const int64_t tiles = round_up((Q + TAP_COLS - 1) / TAP_COLS, nt);
    if (tiles_out)
        *tiles_out = tiles;
    return round_up((Q + tiles - 1) / tiles, 16);
}

/* tap_pass: the padded input, then one (m, T) output tile per thread. */
static size_t tap_pass_floats(const dgeom *g, int nt)
{
    return (size_t)(g->c * g->lx) + (size_t)nt * (size_t)(g->m * tap_tile(g->ho * g->wp, nt, NULL));
}

size_t nn_conv_tapgemm_forward_workspace(const nn_conv2d_desc *d)
{
    const dgeom f = geom_fwd(d);
    return tap_w_floats(d) + tap_pass_floats(&f, optvq_threads());
}

size_t nn_conv_tapgemm_workspace(const nn_conv2d_desc *d)
{
    const int nt = optvq_threads();
    const dgeom f = geom_fwd(d), b = geom_bwd(d);
    const size_t tw = tap_w_floats(d), fwd = tw + tap_pass_floats(&f, nt), bx = tw + tap_pass_floats(&b, nt);
    /* dw: per-thread partials (all taps), then xpad + dyp */
    const size_t dw = (size_t)nt * tw + (size_t)(f.c * f.lx + f.mp * f.qp);
    const size_t m = fwd > bx ? fwd : bx;
    return m > dw ? m : dw;
}

static void pad_channel(float *d, const float *s, const dgeom *g)
{
    int64_t pos = 0;
    for (int64_t iy = 0; iy < g->h; iy++) {
        int64_t start = (g->pt + iy) * g->wp + g->pl;
        memset(d + pos, 0, sizeof(float) * (size_t)(start - pos));
        memcpy(d + start, s + iy * g->w, sizeof(float) * (size_t)g->w);
        pos = start + g->w;
    }
    memset(d + pos, 0, sizeof(float) * (size_t)(g->lx - pos));
}

/* wt[t][row][col] (kk, m, c) from w (c_out, c_in, kk): forward rows = c_out; bwd rows =
 * c_in with the taps flipped. */
static void pack_taps(float *wt, const float *w, const nn_conv2d_desc *d, int bwd)
{
    const int64_t kk = d->kh * d->kw, m = bwd ? d->c_in : d->c_out, c = bwd ? d->c_out : d->c_in;
    for (int64_t t = 0; t < kk; t++)
        for (int64_t r = 0; r < m; r++)
            for (int64_t j = 0; j < c; j++)
                wt[(t * m + r) * c + j] =
                    bwd ? w[(j * d->c_in + r) * kk + (kk - 1 - t)] : w[(r * d->c_in + j) * kk + t];
}

static void tap_offsets(int64_t *off, const dgeom *g)
{
    for (int64_t ky = 0; ky < g->kh; ky++)
        for (int64_t kx = 0; kx < g->kw; kx++)
            off[ky * g->kw + kx] = ky * g->wp + kx;
}

/* dn (m, ho, wo) = (or +=) the flat positions [q0, q0 + cols) of a GEMM
 * tile out (m, cols; row stride ldo) + bias: the columns ox >= wo of each
 * padded row are dropped, and a tile may start or end inside a row. */
static void store_tile(float *dn, const float *out, int64_t ldo, const dgeom *g, int64_t q0, int64_t cols,
                       const float *bias, int accumulate)
{
    const int64_t q1 = q0 + cols;
    for (int64_t co = 0; co < g->m; co++) {
        const float bv = bias ? bias[co] : 0.0f;
        for (int64_t q = q0; q < q1;) {
            const int64_t oy = q / g->wp, ox = q - oy * g->wp;
            const int64_t row_end = (oy + 1) * g->wp < q1 ? (oy + 1) * g->wp : q1;
            if (ox < g->wo) {
                const int64_t len = row_end - q < g->wo - ox ? row_end - q : g->wo - ox;
                const float *o = out + co * ldo + (q - q0);
                float *yr = dn + (co * g->ho + oy) * g->wo + ox;
                if (accumulate) {
#pragma omp simd
                    for (int64_t i = 0; i < len; i++)
                        yr[i] += o[i];
                } else {
#pragma omp simd
                    for (int64_t i = 0; i < len; i++)
                        yr[i] = o[i] + bv;
                }
            }
            q = row_end;
        }
    }
}

/* dst (n, g->m, ho, wo) = (or +=) conv of src (n, g->c, h, w) + bias, weights wt.
 * Each thread's GEMMs fill its own (m, T) tile, stored into dst at once, so
 * the workspace is the padded input and nt small tiles, not a padded copy of
 * the whole output (tap_pass_floats). */
static void tap_pass(float *dst, const float *src, int64_t N, const dgeom *g, const float *wt,
                     const float *bias, int accumulate, float *buf, int nt)
{
    const int64_t kk = g->kh * g->kw, C = g->c, M = g->m, Q = g->ho * g->wp;
    int64_t tiles;
    const int64_t T = tap_tile(Q, nt, &tiles);
    float *xpad = buf;
    int64_t off[64];
    tap_offsets(off, g);
#pragma omp parallel num_threads(nt)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *out = buf + C * g->lx + (size_t)tid * (size_t)(M * T);
        for (int64_t n = 0; n < N; n++) {
            const float *sn = src + n * C * g->h * g->w;
            float *dn = dst + n * M * g->ho * g->wo;
#pragma omp for schedule(static)
            for (int64_t c = 0; c < C; c++)
                pad_channel(xpad + c * g->lx, sn + c * g->h * g->w, g);
#pragma omp for schedule(static)
            for (int64_t it = 0; it < tiles; it++) {
                const int64_t q0 = it * T, cols = Q - q0 < T ? Q - q0 : T;
                if (cols <= 0)
                    continue;
                for (int64_t t = 0; t < kk; t++)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)cols, (int)C,
                                1.0f, wt + t * M * C, (int)C, xpad + off[t] + q0, (int)g->lx,
                                t ? 1.0f : 0.0f, out, (int)T);
                store_tile(dn, out, T, g, q0, cols, bias, accumulate);
            }
        }
    }
}

void nn_conv_tapgemm_forward(float *y, const float *x, const float *w, const float *b,
                             const nn_conv2d_desc *d, float *ws, int nt)
{
    const dgeom g = geom_fwd(d);
    pack_taps(ws, w, d, 0);
    tap_pass(y, x, d->n, &g, ws, b, 0, ws + tap_w_floats(d), nt);
}

void nn_conv_tapgemm_backward(float *dx, float *dw, const float *dy, const float *x,
                              const float *w, const nn_conv2d_desc *d, float *ws, int nt)
{
    if (dx) {
        const dgeom gb = geom_bwd(d);
        pack_taps(ws, w, d, 1);
        tap_pass(dx, dy, d->n, &gb, ws, NULL, 1, ws + tap_w_floats(d), nt);
    }
    if (!dw)
        return;
    /* dw_t (M, C) += dyp (M, Q) X_t^T (Q, C) per image. Thread it owns the Q range
     * [it Qc, (it+1) Qc) and its own partial dw (all taps); the partials are added in
     * thread order at the end. */
    const dgeom g = geom_fwd(d);
    const int64_t kk = g.kh * g.kw, C = g.c, M = d->c_out, N = d->n, Q = g.ho * g.wp;
    const size_t tw = tap_w_floats(d);
    float *parts = ws, *xpad = ws + (size_t)nt * tw, *dyp = xpad + C * g.lx;
    int64_t off[64];
    tap_offsets(off, &g);
    const int64_t qc = round_up((Q + nt - 1) / nt, 16);
    const int64_t in_img = C * g.h * g.w, dy_img = M * g.ho * g.wo;
#pragma omp parallel num_threads(nt)
    {
#pragma omp for schedule(static)
        for (int64_t e = 0; e < (int64_t)(nt * tw); e++)
            parts[e] = 0.0f;
        for (int64_t n = 0; n < N; n++) {
#pragma omp for schedule(static)
            for (int64_t c = 0; c < C; c++)
                pad_channel(xpad + c * g.lx, x + n * in_img + c * g.h * g.w, &g);
#pragma omp for schedule(static)
            for (int64_t co = 0; co < M; co++) {
                float *r = dyp + co * g.qp;
                memset(r, 0, sizeof(float) * (size_t)g.qp);
                for (int64_t oy = 0; oy < g.ho; oy++)
                    memcpy(r + oy * g.wp, dy + n * dy_img + (co * g.ho + oy) * g.wo,
                           sizeof(float) * (size_t)g.wo);
            }
#pragma omp for schedule(static)
            for (int64_t it = 0; it < nt; it++) {
                const int64_t q0 = it * qc, len = Q - q0 < qc ? Q - q0 : qc;
                if (len <= 0)
                    continue;
                for (int64_t t = 0; t < kk; t++)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)C, (int)len,
                                1.0f, dyp + q0, (int)g.qp, xpad + off[t] + q0, (int)g.lx, 1.0f,
                                parts + (size_t)it * tw + t * M * C, (int)C);
            }
        }
#pragma omp for schedule(static)
        for (int64_t e = 0; e < M * C; e++)
            for (int64_t t = 0; t < kk; t++) {
                float s = 0.0f;
                for (int p = 0; p < nt; p++)
                    s += parts[(size_t)p * tw + t * M * C + e];
                dw[e * kk + t] += s;
            }
    }
}
