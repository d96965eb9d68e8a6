/* leaky_relu: y = x > 0 ? x : slope * x ; dx += x > 0 ? dy : slope * dy
 * (torch's leaky_relu_backward: the test is x > 0, so x == 0 takes the slope).
 * With slope >= 0 the sign test gives the same answer on the output, so backward may be
 * passed y in place of x (what an in-place nn.LeakyReLU(inplace=True) does).
 * Elementwise, so the fast kernel is its own naive reference. */
#include "core/parallel.h"
#include "nn/nn.h"

#define PAR_MIN 32768

void nn_leaky_relu_forward(float *y, const float *x, int64_t count, float slope)
{
#pragma omp parallel for simd schedule(static) num_threads(optvq_threads()) if (count > PAR_MIN)
    for (int64_t i = 0; i < count; i++)
        y[i] = x[i] > 0.0f ? x[i] : slope * x[i];
}

void nn_leaky_relu_backward(float *dx, const float *dy, const float *x, int64_t count, float slope)
{
#pragma omp parallel for simd schedule(static) num_threads(optvq_threads()) if (count > PAR_MIN)
    for (int64_t i = 0; i < count; i++)
        dx[i] += x[i] > 0.0f ? dy[i] : slope * dy[i];
}
