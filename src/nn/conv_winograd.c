/* Winograd F(4x4, 3x3) for 3x3, stride-1, padding-1 convolutions (Lavin &
 * Gray 2016): each 4x4 output tile is A^T [(G g G^T) . (B^T d B)] A from the
 * 6x6 input patch d around it, so the 36 products of one (input, output
 * channel) pair replace 144 multiply-adds of the direct convolution; summed
 * over input channels they are 36 GEMMs, U_xi (c_out, c_in) V_xi (c_in, tiles),
 * one per transform point xi: 4x fewer multiply-adds than the direct
 * convolution, plus the transforms (measured 2-3x faster on the f16 coders'
 * layers). Error against the direct fp32 convolution: NMSE 4e-12 .. 8e-12 on
 * the model's shapes (tests/test_winograd.c), bound 1e-10.
 *
 * Interpolation points 0, +-1, +-2 and infinity:
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 * The filter transform is computed in double and rounded once; the input and
 * output transforms and the GEMMs are float32.
 *
 * Work: the tiles of all images, flattened (image, tile row, tile column), in
 * chunks of T tiles (see plan_of). Per chunk
 *   1. the input patches of its tiles are transformed into V (36, c_in, T),
 *   2. the 36 GEMMs M_xi (c_out, T) = U_xi V_xi run (OpenBLAS, single-threaded),
 *   3. M is transformed back into the 4x4 output tiles (+ bias).
 * Several chunks: each OpenMP thread takes whole chunks. One chunk (small
 * images): the threads share it, split over input channels, transform points
 * and output channels in turn. U comes from the caller's cache
 * (nn_conv_cache, nn/conv_infer.h) or, beyond its budget, is recomputed into the workspace.
 * The transforms run along a tile row at a time, vectorised over its tiles:
 * the input rows are split into the four column phases (x = 4 j + p), so
 * element k of tile j's patch row is phase k % 4 at index j + k / 4, and
 * every step is a loop over consecutive j. T depends on the shape only, so
 * the result does not depend on the thread count. */
#include "nn/conv_winograd.h"

#include "core/error.h"
#include "core/parallel.h"

#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#define WINO_A 6                     /* input patch / transform size     */
#define WINO_M 4                     /* output tile size                 */
#define WINO_P (WINO_A * WINO_A)     /* transform points (GEMMs)         */
#define WINO_CHUNK_FLOATS (1 << 21)  /* V + M of a chunk: 8 MiB (measured: 2 MiB is 10-25% slower on 256 channels) */

/* ---- the switch ---- */

static int wino_switch = -1; /* -1: not read yet */

int nn_conv_winograd_enabled(void)
{
    int s;
#pragma omp atomic read
    s = wino_switch;
    if (s < 0) {
        const char *e = getenv("OPTVQ_CONV");
        s = !(e && !strcmp(e, "direct"));
#pragma omp atomic write
        wino_switch = s;
    }
    return s;
}

void nn_conv_winograd_set_enabled(int on)
{
#pragma omp atomic write
    wino_switch = on ? 1 : 0;
}

/* ---- shapes ---- */

int nn_conv_winograd_supported(const nn_conv2d_desc *d)
{
    return d->kh == 3 && d->kw == 3 && d->stride_h == 1 && d->stride_w == 1 && d->pad_t == 1 && d->pad_b == 1 &&
           d->pad_l == 1 && d->pad_r == 1 && d->c_in * WINO_P < ((int64_t)1 << 31) &&
           d->c_out * WINO_P < ((int64_t)1 << 31);
}

int nn_conv_winograd_pays(const nn_conv2d_desc *d)
{
    if (!nn_conv_winograd_supported(d))
        return 0;
    /* Few tiles (16x16 images): the transformed filter, 4x the weights, is
     * memory to hold or time to recompute for little work (1.5x faster
     * there, but the f16 coders' 512-channel layers would add 38 MB each).
     * <= 64 channels: conv2d's direct kernels. Winograd is 1.4-2x faster
     * there too, but those are the small models' layers (plain CNN, the
     * reduced test configs), where the training and inference forwards stay
     * bit-identical and speed hardly matters. */
    const int64_t tiles = d->n * ((d->h_out + WINO_M - 1) / WINO_M) * ((d->w_out + WINO_M - 1) / WINO_M);
    return d->c_in > 64 && d->c_out > 64 && tiles >= 64;
}

static int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

/* How the tiles are split: chunks of T tiles (T a multiple of 16, V + M of
 * a chunk within WINO_CHUNK_FLOATS, chunks balanced). One chunk: all threads
 * work on it together (input transform over input channels, GEMMs over
 * transform points, output transform over output channels), so the filter
 * transform is read once; several: each thread takes whole chunks. Depends on
 * the shape only, never on the thread count. */
typedef struct plan {
    int64_t tiles, T, TP, chunks;
} plan;

static plan plan_of(const nn_conv2d_desc *d)
{
    plan p;
    p.tiles = d->n * ((d->h_out + WINO_M - 1) / WINO_M) * ((d->w_out + WINO_M - 1) / WINO_M);
    int64_t cap = WINO_CHUNK_FLOATS / (WINO_P * (d->c_in + d->c_out));
    cap = cap / 16 * 16;
    if (cap < 16)
        cap = 16;
    p.chunks = (p.tiles + cap - 1) / cap;
    p.T = round_up((p.tiles + p.chunks - 1) / p.chunks, 16);
    p.TP = p.T + 16;
    return p;
}

/* Floats of V and M of one chunk, and of one thread's row buffers (phases:
 * 6 rows x 4 phases, then 36 transformed rows, each TP long). */
static size_t chunk_floats(const nn_conv2d_desc *d, const plan *p)
{
    return (size_t)(WINO_P * (d->c_in + d->c_out) * p->T);
}

static size_t row_floats(const plan *p) { return (size_t)((24 + WINO_P) * p->TP); }

static size_t filter_floats(const nn_conv2d_desc *d) { return (size_t)round_up(WINO_P * d->c_out * d->c_in, 16); }

/* Threads used and the workspace floats they need: the filter transform
 * when the cache does not hold it, then the threads' buffers. */
static int threads_of(const plan *p, size_t *floats, const nn_conv2d_desc *d)
{
    int nt = optvq_threads();
    if (p->chunks > 1 && nt > p->chunks)
        nt = (int)p->chunks;
    const size_t per = row_floats(p) + (p->chunks > 1 ? chunk_floats(d, p) : 0);
    *floats = filter_floats(d) + (size_t)nt * per + (p->chunks > 1 ? 0 : chunk_floats(d, p));
    return nt;
}

size_t nn_conv_winograd_workspace(const nn_conv2d_desc *d)
{
    if (!nn_conv_winograd_supported(d))
        return 0;
    const plan p = plan_of(d);
    size_t floats;
    threads_of(&p, &floats, d);
    return floats;
}

/* ---- filter transform ---- */

/* G applied to three taps (a, b, c) of a filter column or row. */
#define G6(a, b, c, r0, r1, r2, r3, r4, r5)                                                                         \
    do {                                                                                                            \
        r0 = (a) * 0.25;                                                                                            \
        r1 = ((a) + (b) + (c)) * (-1.0 / 6);                                                                        \
        r2 = ((a) - (b) + (c)) * (-1.0 / 6);                                                                        \
        r3 = (a) * (1.0 / 24) + (b) * (1.0 / 12) + (c) * (1.0 / 6);                                                 \
        r4 = (a) * (1.0 / 24) - (b) * (1.0 / 12) + (c) * (1.0 / 6);                                                 \
        r5 = (c);                                                                                                   \
    } while (0)

/* u (36, c_out, c_in) = G g G^T of every 3x3 filter g, in double, rounded
 * once; 16 input channels at a time (taps transposed to [tap][channel] so
 * every step is a loop over channels), threads over output channels. */
static void transform_filters(float *u, const float *w, int64_t c_out, int64_t c_in)
{
    const int64_t plane = c_out * c_in;
#pragma omp parallel for schedule(static) num_threads(optvq_threads_for((double)plane * 200))
    for (int64_t co = 0; co < c_out; co++) {
        for (int64_t c0 = 0; c0 < c_in; c0 += 16) {
            const int L = c_in - c0 < 16 ? (int)(c_in - c0) : 16;
            const float *g = w + (co * c_in + c0) * 9;
            double gt[9][16], t[WINO_A][3][16];
            for (int l = 0; l < L; l++)
                for (int k = 0; k < 9; k++)
                    gt[k][l] = g[l * 9 + k];
            for (int k = 0; k < 3; k++) /* G g: the filter's columns */
                for (int l = 0; l < L; l++)
                    G6(gt[k][l], gt[3 + k][l], gt[6 + k][l], t[0][k][l], t[1][k][l], t[2][k][l], t[3][k][l],
                       t[4][k][l], t[5][k][l]);
            float *uc = u + co * c_in + c0;
            for (int i = 0; i < WINO_A; i++) { /* (G g) G^T: its rows */
                float *o = uc + (int64_t)i * WINO_A * plane;
                for (int l = 0; l < L; l++) {
                    double r0, r1, r2, r3, r4, r5;
                    G6(t[i][0][l], t[i][1][l], t[i][2][l], r0, r1, r2, r3, r4, r5);
                    o[l] = (float)r0;
                    o[plane + l] = (float)r1;
                    o[2 * plane + l] = (float)r2;
                    o[3 * plane + l] = (float)r3;
                    o[4 * plane + l] = (float)r4;
                    o[5 * plane + l] = (float)r5;
                }
            }
        }
    }
}

typedef struct filter_shape {
    int64_t c_out, c_in;
} filter_shape;

static optvq_status fill_transform(void *dst, const float *w, const void *ctx)
{
    const filter_shape *f = ctx;
    transform_filters(dst, w, f->c_out, f->c_in);
    return OPTVQ_OK;
}

/* The transform of w: from the cache, computed into the cache while its
 * budget allows, else computed into `scratch` (36 c_out c_in floats). */
static optvq_status filters_for(nn_conv_cache *c, const float *w, int64_t c_out, int64_t c_in, float *scratch,
                                const float **u)
{
    const filter_shape f = {c_out, c_in};
    const void *got;
    OPTVQ_TRY(nn_conv_cache_derived(c, NN_DERIVED_WINOGRAD, w, c_out * c_in * 9,
                                    (size_t)(WINO_P * c_out * c_in) * sizeof(float), fill_transform, &f, scratch,
                                    &got));
    *u = got;
    return OPTVQ_OK;
}

/* ---- input and output transforms along one tile row ---- */

/* One run of consecutive tiles in a tile row: image n, tile row ty, tile
 * columns tx0 .. tx0 + cnt - 1, at column off of the chunk's matrices. */
typedef struct seg {
    int64_t n, ty, tx0, cnt, off;
} seg;

/* p[q TP + j] = row[x0 + 4 j + q] for j in [0, n), q in [0, 4); zero outside [0, W). */
static void split_phases(float *restrict p, int64_t TP, const float *row, int64_t x0, int64_t W, int64_t n)
{
    /* j in [lo, hi): all four columns inside the row */
    const int64_t lo = x0 < 0 ? (-x0 + 3) / 4 : 0;
    int64_t hi = W - 4 - x0 >= 0 ? (W - 4 - x0) / 4 + 1 : 0;
    if (hi > n)
        hi = n;
    if (hi < lo)
        hi = lo;
    for (int64_t j = 0; j < n; j++) {
        if (j == lo)
            j = hi;
        if (j >= n)
            break;
        for (int q = 0; q < 4; q++) {
            const int64_t col = x0 + WINO_M * j + q;
            p[q * TP + j] = col >= 0 && col < W ? row[col] : 0.0f;
        }
    }
    int64_t j = lo;
#ifdef __AVX512F__
    /* 16 tiles (64 floats) at a time: two rounds of two-source permutes */
    const __m512i even = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
    const __m512i odd = _mm512_setr_epi32(2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31);
    const __m512i lo8 = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    const __m512i hi8 = _mm512_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    for (; j + 16 <= hi; j += 16) {
        const float *src = row + x0 + WINO_M * j;
        const __m512 a = _mm512_loadu_ps(src), b = _mm512_loadu_ps(src + 16);
        const __m512 c = _mm512_loadu_ps(src + 32), d = _mm512_loadu_ps(src + 48);
        const __m512 ab01 = _mm512_permutex2var_ps(a, even, b), ab23 = _mm512_permutex2var_ps(a, odd, b);
        const __m512 cd01 = _mm512_permutex2var_ps(c, even, d), cd23 = _mm512_permutex2var_ps(c, odd, d);
        _mm512_storeu_ps(p + j, _mm512_permutex2var_ps(ab01, lo8, cd01));
        _mm512_storeu_ps(p + TP + j, _mm512_permutex2var_ps(ab01, hi8, cd01));
        _mm512_storeu_ps(p + 2 * TP + j, _mm512_permutex2var_ps(ab23, lo8, cd23));
        _mm512_storeu_ps(p + 3 * TP + j, _mm512_permutex2var_ps(ab23, hi8, cd23));
    }
#endif
    for (; j < hi; j++) {
        const float *src = row + x0 + WINO_M * j;
        p[j] = src[0];
        p[TP + j] = src[1];
        p[2 * TP + j] = src[2];
        p[3 * TP + j] = src[3];
    }
}

/* r[4 j + q] = p_q[j] for j in [0, n): the inverse of split_phases on whole tiles. */
static void join_phases(float *restrict r, const float *p0, const float *p1, const float *p2, const float *p3,
                        int64_t n)
{
    int64_t j = 0;
#ifdef __AVX512F__
    const __m512i pair_lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i pair_hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const __m512i quad_lo = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
    const __m512i quad_hi = _mm512_setr_epi32(8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
    for (; j + 16 <= n; j += 16) {
        const __m512 a = _mm512_loadu_ps(p0 + j), b = _mm512_loadu_ps(p1 + j);
        const __m512 c = _mm512_loadu_ps(p2 + j), d = _mm512_loadu_ps(p3 + j);
        const __m512 ab_lo = _mm512_permutex2var_ps(a, pair_lo, b), ab_hi = _mm512_permutex2var_ps(a, pair_hi, b);
        const __m512 cd_lo = _mm512_permutex2var_ps(c, pair_lo, d), cd_hi = _mm512_permutex2var_ps(c, pair_hi, d);
        float *o = r + WINO_M * j;
        _mm512_storeu_ps(o, _mm512_permutex2var_ps(ab_lo, quad_lo, cd_lo));
        _mm512_storeu_ps(o + 16, _mm512_permutex2var_ps(ab_lo, quad_hi, cd_lo));
        _mm512_storeu_ps(o + 32, _mm512_permutex2var_ps(ab_hi, quad_lo, cd_hi));
        _mm512_storeu_ps(o + 48, _mm512_permutex2var_ps(ab_hi, quad_hi, cd_hi));
    }
#endif
    for (; j < n; j++) {
        r[4 * j] = p0[j];
        r[4 * j + 1] = p1[j];
        r[4 * j + 2] = p2[j];
        r[4 * j + 3] = p3[j];
    }
}

/* V[xi][ci][off + j] for the tiles of s, input channels [c0, c1). ph: 24 rows
 * (input row k, phase p) and hb: 36 rows (input row k, column transform c),
 * each TP long. */
static void input_seg(float *restrict V, const float *x, const nn_conv2d_desc *d, const seg *s, int64_t T,
                      int64_t TP, float *restrict ph, float *restrict hb, int64_t c0, int64_t c1)
{
    const int64_t H = d->h_in, W = d->w_in, C = d->c_in, cnt = s->cnt;
    const int64_t x0 = WINO_M * s->tx0 - 1; /* first input column of the run */
    for (int64_t ci = c0; ci < c1; ci++) {
        const float *img = x + (s->n * C + ci) * H * W;
        for (int k = 0; k < WINO_A; k++) {
            const int64_t row = WINO_M * s->ty - 1 + k;
            float *p = ph + (int64_t)k * 4 * TP;
            if (row < 0 || row >= H) {
                for (int q = 0; q < 4; q++)
                    memset(p + q * TP, 0, (size_t)(cnt + 1) * sizeof(float));
                continue;
            }
            split_phases(p, TP, img + row * W, x0, W, cnt + 1);
        }
        /* rows: hb[k][c] = B^T applied along the columns of patch row k */
        for (int k = 0; k < WINO_A; k++) {
            const float *p0 = ph + (int64_t)k * 4 * TP, *p1 = p0 + TP, *p2 = p1 + TP, *p3 = p2 + TP;
            float *h = hb + (int64_t)k * WINO_A * TP;
#pragma omp simd
            for (int64_t j = 0; j < cnt; j++) {
                const float d0 = p0[j], d1 = p1[j], d2 = p2[j], d3 = p3[j], d4 = p0[j + 1], d5 = p1[j + 1];
                h[j] = 4.0f * d0 - 5.0f * d2 + d4;
                h[TP + j] = -4.0f * (d1 + d2) + d3 + d4;
                h[2 * TP + j] = 4.0f * (d1 - d2) - d3 + d4;
                h[3 * TP + j] = 2.0f * (d3 - d1) - d2 + d4;
                h[4 * TP + j] = 2.0f * (d1 - d3) - d2 + d4;
                h[5 * TP + j] = 4.0f * d1 - 5.0f * d3 + d5;
            }
        }
        /* columns: V[i * 6 + c] = B^T applied along the rows k of hb[.][c] */
        for (int c = 0; c < WINO_A; c++) {
            const float *e0 = hb + (int64_t)c * TP, *e1 = e0 + WINO_A * TP, *e2 = e1 + WINO_A * TP,
                        *e3 = e2 + WINO_A * TP, *e4 = e3 + WINO_A * TP, *e5 = e4 + WINO_A * TP;
            float *v[WINO_A];
            for (int i = 0; i < WINO_A; i++)
                v[i] = V + ((int64_t)(i * WINO_A + c) * C + ci) * T + s->off;
            float *v0 = v[0], *v1 = v[1], *v2 = v[2], *v3 = v[3], *v4 = v[4], *v5 = v[5];
#pragma omp simd
            for (int64_t j = 0; j < cnt; j++) {
                const float d0 = e0[j], d1 = e1[j], d2 = e2[j], d3 = e3[j], d4 = e4[j], d5 = e5[j];
                v0[j] = 4.0f * d0 - 5.0f * d2 + d4;
                v1[j] = -4.0f * (d1 + d2) + d3 + d4;
                v2[j] = 4.0f * (d1 - d2) - d3 + d4;
                v3[j] = 2.0f * (d3 - d1) - d2 + d4;
                v4[j] = 2.0f * (d1 - d3) - d2 + d4;
                v5[j] = 4.0f * d1 - 5.0f * d3 + d5;
            }
        }
    }
}

/* y's 4x4 tiles of s (+ bias), output channels [c0, c1), from M[xi][co][off + j].
 * rb: 24 rows (output row a, column c of the half-transformed tile), then
 * 16 rows (output row a, column b), each TP long. */
static void output_seg(float *y, const float *restrict M, const float *b, const nn_conv2d_desc *d, const seg *s,
                       int64_t T, int64_t TP, float *restrict rb, int64_t c0, int64_t c1)
{
    const int64_t Ho = d->h_out, Wo = d->w_out, C = d->c_out, cnt = s->cnt;
    float *ob = rb + 24 * TP;
    for (int64_t co = c0; co < c1; co++) {
        const float bias = b ? b[co] : 0.0f;
        /* rows: rb[a][c] = A^T applied along the rows i of M[i * 6 + c] */
        for (int c = 0; c < WINO_A; c++) {
            const float *m[WINO_A];
            for (int i = 0; i < WINO_A; i++)
                m[i] = M + ((int64_t)(i * WINO_A + c) * C + co) * T + s->off;
            const float *m0 = m[0], *m1 = m[1], *m2 = m[2], *m3 = m[3], *m4 = m[4], *m5 = m[5];
            float *r0 = rb + (int64_t)c * TP, *r1 = r0 + WINO_A * TP, *r2 = r1 + WINO_A * TP, *r3 = r2 + WINO_A * TP;
#pragma omp simd
            for (int64_t j = 0; j < cnt; j++) {
                const float a1 = m1[j] + m2[j], a2 = m1[j] - m2[j], a3 = m3[j] + m4[j], a4 = m3[j] - m4[j];
                r0[j] = m0[j] + a1 + a3;
                r1[j] = a2 + 2.0f * a4;
                r2[j] = a1 + 4.0f * a3;
                r3[j] = a2 + 8.0f * a4 + m5[j];
            }
        }
        /* columns: ob[a][bx] = A^T applied along the columns c of rb[a], + bias */
        for (int a = 0; a < WINO_M; a++) {
            const float *q = rb + (int64_t)a * WINO_A * TP;
            const float *q0 = q, *q1 = q + TP, *q2 = q + 2 * TP, *q3 = q + 3 * TP, *q4 = q + 4 * TP, *q5 = q + 5 * TP;
            float *o0 = ob + (int64_t)a * 4 * TP, *o1 = o0 + TP, *o2 = o1 + TP, *o3 = o2 + TP;
#pragma omp simd
            for (int64_t j = 0; j < cnt; j++) {
                const float a1 = q1[j] + q2[j], a2 = q1[j] - q2[j], a3 = q3[j] + q4[j], a4 = q3[j] - q4[j];
                o0[j] = q0[j] + a1 + a3 + bias;
                o1[j] = a2 + 2.0f * a4 + bias;
                o2[j] = a1 + 4.0f * a3 + bias;
                o3[j] = a2 + 8.0f * a4 + q5[j] + bias;
            }
        }
        /* interleave the tiles' columns into the output rows (clipped at the edges) */
        float *img = y + (s->n * C + co) * Ho * Wo;
        const int64_t xo = WINO_M * s->tx0;
        const int64_t full = (Wo - xo) / WINO_M < cnt ? (Wo - xo) / WINO_M : cnt; /* tiles fully inside */
        for (int a = 0; a < WINO_M; a++) {
            const int64_t row = WINO_M * s->ty + a;
            if (row >= Ho)
                break;
            float *r = img + row * Wo + xo;
            const float *o0 = ob + (int64_t)a * 4 * TP;
            join_phases(r, o0, o0 + TP, o0 + 2 * TP, o0 + 3 * TP, full);
            for (int64_t j = full; j < cnt; j++)
                for (int bx = 0; bx < WINO_M && xo + WINO_M * j + bx < Wo; bx++)
                    r[WINO_M * j + bx] = ob[((int64_t)a * 4 + bx) * TP + j];
        }
    }
}

/* ---- forward ---- */

optvq_status nn_conv_winograd_forward(float *y, const float *x, const float *w, const float *b,
                                      const nn_conv2d_desc *d, nn_workspace *ws, nn_conv_cache *cache)
{
    if (!y || !x || !w || !d || !cache)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "conv_winograd_forward: NULL argument");
    if (!nn_conv_winograd_supported(d))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG,
                          "conv_winograd_forward: %lldx%lld stride %lld kernel is not 3x3, stride 1, padding 1",
                          (long long)d->kh, (long long)d->kw, (long long)d->stride_h);
    OPTVQ_TRY(nn_workspace_check(ws, nn_conv_winograd_workspace(d), "conv_winograd_forward"));
    nn_init_threads();
    const float *U;
    OPTVQ_TRY(filters_for(cache, w, d->c_out, d->c_in, ws->data, &U));
    float *base = ws->data + filter_floats(d); /* the threads' buffers */

    const int64_t Cin = d->c_in, Cout = d->c_out;
    const int64_t tw = (d->w_out + WINO_M - 1) / WINO_M, per_image = tw * ((d->h_out + WINO_M - 1) / WINO_M);
    const plan p = plan_of(d);
    const int64_t T = p.T, TP = p.TP;
    size_t unused;
    const int nt = threads_of(&p, &unused, d);
    const int shared = p.chunks == 1; /* the threads share one chunk */
    const size_t per_thread = row_floats(&p) + (shared ? 0 : chunk_floats(d, &p));
    int64_t next = 0; /* the next chunk to take (several chunks) */
#pragma omp parallel num_threads(nt)
    {
        int tid = 0, nth = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        nth = omp_get_num_threads();
#endif
        float *rows = base + (size_t)tid * per_thread; /* (24 + 36) TP: phases + transformed rows */
        float *V = shared ? base + (size_t)nth * per_thread : rows + row_floats(&p);
        float *M = V + WINO_P * Cin * T;
        /* shared: this thread's share of the channels; else all of them */
        const int64_t ci0 = shared ? Cin * tid / nth : 0, ci1 = shared ? Cin * (tid + 1) / nth : Cin;
        const int64_t co0 = shared ? Cout * tid / nth : 0, co1 = shared ? Cout * (tid + 1) / nth : Cout;
        const int64_t xi0 = shared ? WINO_P * tid / nth : 0, xi1 = shared ? WINO_P * (tid + 1) / nth : WINO_P;
        for (;;) {
            int64_t ch = 0;
            if (!shared) { /* dealt on demand: the machine may be shared */
#pragma omp atomic capture
                ch = next++;
            }
            if (ch >= p.chunks)
                break;
            const int64_t t0 = ch * T, t1 = t0 + T < p.tiles ? t0 + T : p.tiles, cnt = t1 - t0;
            for (int64_t t = t0; t < t1;) {
                const int64_t n = t / per_image, r = t % per_image, ty = r / tw, tx = r % tw;
                const int64_t run = tw - tx < t1 - t ? tw - tx : t1 - t;
                const seg s = {n, ty, tx, run, t - t0};
                input_seg(V, x, d, &s, T, TP, rows, rows + 24 * TP, ci0, ci1);
                t += run;
            }
            if (shared) {
#pragma omp barrier
            }
            for (int64_t xi = xi0; xi < xi1; xi++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Cout, (int)cnt, (int)Cin, 1.0f,
                            U + xi * Cout * Cin, (int)Cin, V + xi * Cin * T, (int)T, 0.0f, M + xi * Cout * T,
                            (int)T);
            if (shared) {
#pragma omp barrier
            }
            for (int64_t t = t0; t < t1;) {
                const int64_t n = t / per_image, r = t % per_image, ty = r / tw, tx = r % tw;
                const int64_t run = tw - tx < t1 - t ? tw - tx : t1 - t;
                const seg s = {n, ty, tx, run, t - t0};
                output_seg(y, M, b, d, &s, T, TP, rows, co0, co1);
                t += run;
            }
            if (shared)
                break;
        }
    }
    return OPTVQ_OK;
}
