/* swish (SiLU): y = x * sigmoid(x); dx += dy * s (1 + x (1 - s)), s = sigmoid(x).
 * AVX2 path with a polynomial exp; the naive twin uses libm in double. */
#include "core/parallel.h"
#include "nn/nn.h"
#include "nn/vmath.h"

#include <math.h>

#define PAR_MIN 16384
#define CHUNK 4096

static inline float sigmoid1(float x) { return 1.0f / (1.0f + expf(-x)); }

static void swish_fwd_range(float *y, const float *x, int64_t i0, int64_t i1)
{
    int64_t i = i0;
#ifdef NN_HAVE_AVX2
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    for (; i + 8 <= i1; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 e = nn_exp256(_mm256_sub_ps(zero, v));
        _mm256_storeu_ps(y + i, _mm256_div_ps(v, _mm256_add_ps(one, e)));
    }
#endif
    for (; i < i1; i++)
        y[i] = x[i] * sigmoid1(x[i]);
}

static void swish_bwd_range(float *dx, const float *dy, const float *x, int64_t i0, int64_t i1)
{
    int64_t i = i0;
#ifdef NN_HAVE_AVX2
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    for (; i + 8 <= i1; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, nn_exp256(_mm256_sub_ps(zero, v))));
        /* s * (1 + x (1 - s)) */
        __m256 d = _mm256_mul_ps(s, _mm256_fmadd_ps(v, _mm256_sub_ps(one, s), one));
        _mm256_storeu_ps(dx + i, _mm256_fmadd_ps(_mm256_loadu_ps(dy + i), d, _mm256_loadu_ps(dx + i)));
    }
#endif
    for (; i < i1; i++) {
        float s = sigmoid1(x[i]);
        dx[i] += dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

void nn_swish_forward(float *y, const float *x, int64_t count)
{
    int64_t chunks = (count + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (count > PAR_MIN)
    for (int64_t c = 0; c < chunks; c++)
        swish_fwd_range(y, x, c * CHUNK, (c + 1) * CHUNK < count ? (c + 1) * CHUNK : count);
}

void nn_swish_backward(float *dx, const float *dy, const float *x, int64_t count)
{
    int64_t chunks = (count + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (count > PAR_MIN)
    for (int64_t c = 0; c < chunks; c++)
        swish_bwd_range(dx, dy, x, c * CHUNK, (c + 1) * CHUNK < count ? (c + 1) * CHUNK : count);
}

void nn_swish_forward_naive(float *y, const float *x, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        y[i] = (float)(x[i] / (1.0 + exp(-(double)x[i])));
}

void nn_swish_backward_naive(float *dx, const float *dy, const float *x, int64_t count)
{
    for (int64_t i = 0; i < count; i++) {
        double s = 1.0 / (1.0 + exp(-(double)x[i]));
        dx[i] += (float)(dy[i] * s * (1.0 + x[i] * (1.0 - s)));
    }
}
