#include "quant/distance.h"

#include <cblas.h>
#include <math.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
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

void dist_rows(const dist_ctx *c, int64_t i0, int64_t rows, float *out)
{
    dist_rows_codes(c, i0, rows, 0, c->n_e, out);
}

void dist_rows_codes(const dist_ctx *c, int64_t i0, int64_t rows, int64_t k0, int64_t n_e, float *out)
{
    const int64_t d = c->d;
    const float *cn = c->cn + k0;
    if (d <= SMALL_D) {
        /* one pass over the codes with the whole dot product in registers;
         * lanes and tail use the same fused operations, so a distance does
         * not depend on its position */
        const float *cbT = c->cbT + k0;
        const int64_t stride = c->n_e;
        for (int64_t r = 0; r < rows; r++) {
            const float *x = c->x + (i0 + r) * d;
            float *o = out + r * n_e;
            const float xn = c->xn[i0 + r];
            int64_t k = 0;
#if defined(__AVX2__) && defined(__FMA__)
            const __m256 vxn = _mm256_set1_ps(xn), m2 = _mm256_set1_ps(-2.0f), zero = _mm256_setzero_ps();
            __m256 xj[SMALL_D];
            for (int64_t j = 0; j < d; j++)
                xj[j] = _mm256_set1_ps(x[j]);
            for (; k + 8 <= n_e; k += 8) {
                __m256 dot = _mm256_mul_ps(xj[0], _mm256_loadu_ps(cbT + k));
                for (int64_t j = 1; j < d; j++)
                    dot = _mm256_fmadd_ps(xj[j], _mm256_loadu_ps(cbT + j * stride + k), dot);
                __m256 v = _mm256_add_ps(_mm256_fmadd_ps(m2, dot, vxn), _mm256_loadu_ps(cn + k));
                _mm256_storeu_ps(o + k, _mm256_sqrt_ps(_mm256_max_ps(v, zero)));
            }
#endif
            for (; k < n_e; k++) {
                float dot = x[0] * cbT[k];
                for (int64_t j = 1; j < d; j++)
                    dot = fmaf(x[j], cbT[j * stride + k], dot);
                float v = fmaf(-2.0f, dot, xn) + cn[k];
                o[k] = sqrtf(v > 0.0f ? v : 0.0f);
            }
        }
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)n_e, (int)d, -2.0f,
                c->x + i0 * d, (int)d, c->cb + k0 * d, (int)d, 0.0f, out, (int)n_e);
    for (int64_t r = 0; r < rows; r++) {
        float *o = out + r * n_e;
        const float xn = c->xn[i0 + r];
#pragma omp simd
        for (int64_t k = 0; k < n_e; k++) {
            float v = o[k] + xn + cn[k];
            o[k] = sqrtf(v > 0.0f ? v : 0.0f);
        }
    }
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
