#include "quant/distance.h"

#include <cblas.h>
#include <math.h>

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
        for (int64_t r = 0; r < rows; r++) {
            const float *x = c->x + (i0 + r) * d;
            float *o = out + r * n_e;
            const float xn = c->xn[i0 + r];
#pragma omp simd
            for (int64_t k = 0; k < n_e; k++)
                o[k] = 0.0f;
            for (int64_t j = 0; j < d; j++) {
                const float m2x = -2.0f * x[j];
                const float *cj = c->cbT + j * c->n_e + k0;
#pragma omp simd
                for (int64_t k = 0; k < n_e; k++)
                    o[k] += m2x * cj[k];
            }
#pragma omp simd
            for (int64_t k = 0; k < n_e; k++) {
                float v = o[k] + xn + cn[k];
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
