/* relu: y = max(x, 0); dx += dy where x > 0 (torch's threshold_backward).
 * Elementwise, so the fast kernel is its own naive reference. */
#include "core/parallel.h"
#include "nn/nn.h"

#define PAR_MIN 32768

void nn_relu_forward(float *y, const float *x, int64_t count)
{
#pragma omp parallel for simd schedule(static) num_threads(optvq_threads()) if (count > PAR_MIN)
    for (int64_t i = 0; i < count; i++)
        y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void nn_relu_backward(float *dx, const float *dy, const float *x, int64_t count)
{
#pragma omp parallel for simd schedule(static) num_threads(optvq_threads()) if (count > PAR_MIN)
    for (int64_t i = 0; i < count; i++)
        dx[i] += x[i] > 0.0f ? dy[i] : 0.0f;
}
