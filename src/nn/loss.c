/* L1 and MSE losses, mean reduction (torch.nn.functional.l1_loss / mse_loss).
 * The loss value accumulates in double. */
#include "core/parallel.h"
#include "nn/nn.h"

#include <math.h>

double nn_l1_loss_forward(const float *x, const float *t, int64_t count)
{
    double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) num_threads(optvq_threads()) if (count > 65536)
    for (int64_t i = 0; i < count; i++)
        s += fabs((double)x[i] - t[i]);
    return count > 0 ? s / count : 0.0;
}

void nn_l1_loss_backward(float *dx, float *dt, float scale, const float *x, const float *t,
                         int64_t count)
{
    const float g = scale / (float)count;
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (count > 65536)
    for (int64_t i = 0; i < count; i++) {
        float d = x[i] - t[i];
        float s = d > 0.0f ? g : (d < 0.0f ? -g : 0.0f);
        if (dx)
            dx[i] += s;
        if (dt)
            dt[i] -= s;
    }
}

double nn_mse_loss_forward(const float *x, const float *t, int64_t count)
{
    double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) num_threads(optvq_threads()) if (count > 65536)
    for (int64_t i = 0; i < count; i++) {
        double d = (double)x[i] - t[i];
        s += d * d;
    }
    return count > 0 ? s / count : 0.0;
}

void nn_mse_loss_backward(float *dx, float *dt, float scale, const float *x, const float *t,
                          int64_t count)
{
    const float g = 2.0f * scale / (float)count;
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (count > 65536)
    for (int64_t i = 0; i < count; i++) {
        float s = g * (x[i] - t[i]);
        if (dx)
            dx[i] += s;
        if (dt)
            dt[i] -= s;
    }
}
