/* softmax over the last dimension: y[r, :] = exp(x - max) / sum; rows in parallel.
 * backward: dx += y * (dy - <dy, y>). */
#include "core/parallel.h"
#include "nn/nn.h"
#include "nn/vmath.h"

#include <math.h>

static void softmax_row(float *y, const float *x, int64_t cols)
{
    float m = x[0];
    int64_t j = 0;
#ifdef NN_HAVE_AVX2
    if (cols >= 8) {
        /* max is exact in any order; max_ps(new, acc) keeps acc when new is NaN,
         * so NaNs are skipped as in the scalar loop (a NaN x[0] still propagates) */
        __m256 v0 = _mm256_set1_ps(m), v1 = v0;
        for (; j + 16 <= cols; j += 16) {
            v0 = _mm256_max_ps(_mm256_loadu_ps(x + j), v0);
            v1 = _mm256_max_ps(_mm256_loadu_ps(x + j + 8), v1);
        }
        for (; j + 8 <= cols; j += 8)
            v0 = _mm256_max_ps(_mm256_loadu_ps(x + j), v0);
        float lanes[8];
        _mm256_storeu_ps(lanes, _mm256_max_ps(v0, v1));
        for (int l = 0; l < 8; l++)
            m = lanes[l] > m ? lanes[l] : m;
    }
#endif
    for (; j < cols; j++)
        m = x[j] > m ? x[j] : m;
    j = 0;
    float s = 0.0f;
#ifdef NN_HAVE_AVX2
    __m256 vm = _mm256_set1_ps(m), vs = _mm256_setzero_ps();
    for (; j + 8 <= cols; j += 8) {
        __m256 e = nn_exp256(_mm256_sub_ps(_mm256_loadu_ps(x + j), vm));
        _mm256_storeu_ps(y + j, e);
        vs = _mm256_add_ps(vs, e);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, vs);
    for (int l = 0; l < 8; l++)
        s += lanes[l];
#endif
    for (; j < cols; j++) {
        y[j] = expf(x[j] - m);
        s += y[j];
    }
    const float inv = 1.0f / s;
#pragma omp simd
    for (j = 0; j < cols; j++)
        y[j] *= inv;
}

void nn_softmax_forward(float *y, const float *x, int64_t rows, int64_t cols)
{
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (rows * cols > 16384)
    for (int64_t r = 0; r < rows; r++)
        softmax_row(y + r * cols, x + r * cols, cols);
}

void nn_softmax_backward(float *dx, const float *dy, const float *y, int64_t rows, int64_t cols)
{
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (rows * cols > 16384)
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = y + r * cols, *dr = dy + r * cols;
        float *o = dx + r * cols;
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int64_t j = 0; j < cols; j++)
            dot += dr[j] * yr[j];
#pragma omp simd
        for (int64_t j = 0; j < cols; j++)
            o[j] += yr[j] * (dr[j] - dot);
    }
}

void nn_softmax_forward_naive(float *y, const float *x, int64_t rows, int64_t cols)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        double m = xr[0], s = 0;
        for (int64_t j = 1; j < cols; j++)
            m = xr[j] > m ? xr[j] : m;
        for (int64_t j = 0; j < cols; j++)
            s += exp(xr[j] - m);
        for (int64_t j = 0; j < cols; j++)
            y[r * cols + j] = (float)(exp(xr[j] - m) / s);
    }
}
