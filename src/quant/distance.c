#include "quant/distance.h"

#include "quant/simd_exp.h"

#include <cblas.h>
#include <math.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define HAVE_AVX2 1
#endif

void dist_sqnorms(float *out, const float *rows, int64_t n, int64_t d)
{
    for (int64_t i = 0; i < n; i++) {
        const float *r = rows + i * d;
        float s = 0.0f;
        for (int64_t j = 0; j < d; j++)
            s += r[j] * r[j];
        out[i] = s;
    }
}

/* Codes at or below this dimension use direct loops over a transposed
 * codebook: a GEMM with a tiny inner dimension wastes most of its time. */
#define SMALL_D 16
/* Codes per tile of the small-d kernel: the tile's codebook stays in L1/L2
 * while every row of the chunk visits it. */
#define CODE_TILE 1024

static const dist_transform RAW = {DIST_RAW, OPTVQ_NORMALIZE_NULL, 0, 1, 0, 1, 1};

static inline float transform_scalar(float v, const dist_transform *t)
{
    if (t->output == DIST_RAW)
        return v;
    if (t->mode == OPTVQ_NORMALIZE_ALL)
        v = (v - t->mean) / t->stdp - t->min1;
    else if (t->mode == OPTVQ_NORMALIZE_DIM)
        v = v / t->sqrt_d;
    if (t->output == DIST_KERNEL)
        return optvq_expf_scalar(-(v * t->eps));
    if (t->output == DIST_LOG)
        return -(v * t->eps);
    return v;
}

#ifdef HAVE_AVX2
static inline __m256 transform_avx2(__m256 v, const dist_transform *t)
{
    if (t->output == DIST_RAW)
        return v;
    if (t->mode == OPTVQ_NORMALIZE_ALL)
        v = _mm256_sub_ps(_mm256_div_ps(_mm256_sub_ps(v, _mm256_set1_ps(t->mean)), _mm256_set1_ps(t->stdp)),
                          _mm256_set1_ps(t->min1));
    else if (t->mode == OPTVQ_NORMALIZE_DIM)
        v = _mm256_div_ps(v, _mm256_set1_ps(t->sqrt_d));
    if (t->output == DIST_NORM)
        return v;
    v = _mm256_xor_ps(_mm256_mul_ps(v, _mm256_set1_ps(t->eps)), _mm256_set1_ps(-0.0f));
    return t->output == DIST_KERNEL ? optvq_expf_avx2(v) : v;
}
#endif

void dist_apply_transform(float *v, int64_t n, const dist_transform *t)
{
    if (t->output == DIST_RAW)
        return;
    int64_t k = 0;
#ifdef HAVE_AVX2
    for (; k + 8 <= n; k += 8)
        _mm256_storeu_ps(v + k, transform_avx2(_mm256_loadu_ps(v + k), t));
#endif
    for (; k < n; k++)
        v[k] = transform_scalar(v[k], t);
}

/* sqrt(max(v, 0)) with v = -2 dot + |x|^2 + |c|^2, then the transform. */
static void small_d_rows(const dist_ctx *c, int64_t i0, int64_t rows, int64_t k0, int64_t nk, int64_t ld,
                         const dist_transform *t, float *out)
{
    const int64_t d = c->d, stride = c->n_e;
    const float *cbT = c->cbT + k0, *cn = c->cn + k0;
    for (int64_t kt = 0; kt < nk; kt += CODE_TILE) {
        const int64_t kend = kt + CODE_TILE < nk ? kt + CODE_TILE : nk;
        for (int64_t r = 0; r < rows; r++) {
            const float *x = c->x + (i0 + r) * d;
            float *o = out + r * ld;
            const float xn = c->xn[i0 + r];
            int64_t k = kt;
#ifdef HAVE_AVX2
            const __m256 vxn = _mm256_set1_ps(xn), m2 = _mm256_set1_ps(-2.0f), zero = _mm256_set1_ps(DIST_CLAMP);
            __m256 xj[SMALL_D];
            for (int64_t j = 0; j < d; j++)
                xj[j] = _mm256_set1_ps(x[j]);
            /* four independent dot products at a time: the FMA chains overlap */
            for (; k + 32 <= kend; k += 32) {
                __m256 a0 = _mm256_mul_ps(xj[0], _mm256_loadu_ps(cbT + k));
                __m256 a1 = _mm256_mul_ps(xj[0], _mm256_loadu_ps(cbT + k + 8));
                __m256 a2 = _mm256_mul_ps(xj[0], _mm256_loadu_ps(cbT + k + 16));
                __m256 a3 = _mm256_mul_ps(xj[0], _mm256_loadu_ps(cbT + k + 24));
                for (int64_t j = 1; j < d; j++) {
                    const float *cj = cbT + j * stride + k;
                    a0 = _mm256_fmadd_ps(xj[j], _mm256_loadu_ps(cj), a0);
                    a1 = _mm256_fmadd_ps(xj[j], _mm256_loadu_ps(cj + 8), a1);
                    a2 = _mm256_fmadd_ps(xj[j], _mm256_loadu_ps(cj + 16), a2);
                    a3 = _mm256_fmadd_ps(xj[j], _mm256_loadu_ps(cj + 24), a3);
                }
                __m256 acc[4] = {a0, a1, a2, a3};
                for (int m = 0; m < 4; m++) {
                    __m256 v = _mm256_add_ps(_mm256_fmadd_ps(m2, acc[m], vxn), _mm256_loadu_ps(cn + k + 8 * m));
                    _mm256_storeu_ps(o + k + 8 * m, transform_avx2(_mm256_sqrt_ps(_mm256_max_ps(v, zero)), t));
                }
            }
            for (; k + 8 <= kend; k += 8) {
                __m256 dot = _mm256_mul_ps(xj[0], _mm256_loadu_ps(cbT + k));
                for (int64_t j = 1; j < d; j++)
                    dot = _mm256_fmadd_ps(xj[j], _mm256_loadu_ps(cbT + j * stride + k), dot);
                __m256 v = _mm256_add_ps(_mm256_fmadd_ps(m2, dot, vxn), _mm256_loadu_ps(cn + k));
                _mm256_storeu_ps(o + k, transform_avx2(_mm256_sqrt_ps(_mm256_max_ps(v, zero)), t));
            }
#endif
            /* the tail uses the same fused operations as the lanes */
            for (; k < kend; k++) {
                float dot = x[0] * cbT[k];
                for (int64_t j = 1; j < d; j++)
                    dot = fmaf(x[j], cbT[j * stride + k], dot);
                float v = fmaf(-2.0f, dot, xn) + cn[k];
                o[k] = transform_scalar(sqrtf(v > DIST_CLAMP ? v : DIST_CLAMP), t);
            }
        }
    }
}

static void gemm_rows(const dist_ctx *c, int64_t i0, int64_t rows, int64_t k0, int64_t nk, const dist_transform *t,
                      float *out)
{
    const int64_t d = c->d;
    const float *cn = c->cn + k0;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)nk, (int)d, -2.0f, c->x + i0 * d, (int)d,
                c->cb + k0 * d, (int)d, 0.0f, out, (int)nk);
    for (int64_t r = 0; r < rows; r++) {
        float *o = out + r * nk;
        const float xn = c->xn[i0 + r];
        int64_t k = 0;
#ifdef HAVE_AVX2
        const __m256 vxn = _mm256_set1_ps(xn), zero = _mm256_set1_ps(DIST_CLAMP);
        for (; k + 8 <= nk; k += 8) {
            __m256 v = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(o + k), vxn), _mm256_loadu_ps(cn + k));
            _mm256_storeu_ps(o + k, transform_avx2(_mm256_sqrt_ps(_mm256_max_ps(v, zero)), t));
        }
#endif
        for (; k < nk; k++) {
            float v = o[k] + xn + cn[k];
            o[k] = transform_scalar(sqrtf(v > DIST_CLAMP ? v : DIST_CLAMP), t);
        }
    }
}

void dist_rows_codes(const dist_ctx *c, int64_t i0, int64_t rows, int64_t k0, int64_t nk, float *out)
{
    if (c->d <= SMALL_D)
        small_d_rows(c, i0, rows, k0, nk, nk, &RAW, out);
    else
        gemm_rows(c, i0, rows, k0, nk, &RAW, out);
}

void dist_rows(const dist_ctx *c, int64_t i0, int64_t rows, float *out)
{
    dist_rows_codes(c, i0, rows, 0, c->n_e, out);
}

void dist_rows_transformed(const dist_ctx *c, int64_t i0, int64_t rows, const dist_transform *t, float *out)
{
    if (c->d <= SMALL_D)
        small_d_rows(c, i0, rows, 0, c->n_e, c->n_e, t, out);
    else
        gemm_rows(c, i0, rows, 0, c->n_e, t, out);
}

void dist_rows_naive(const dist_ctx *c, int64_t i0, int64_t rows, float *out)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < c->n_e; k++) {
            double s = 0;
            for (int64_t j = 0; j < c->d; j++) {
                double t = (double)c->x[(i0 + r) * c->d + j] - c->cb[k * c->d + j];
                s += t * t;
            }
            out[r * c->n_e + k] = (float)sqrt(s);
        }
}
