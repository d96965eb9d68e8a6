/* L1 and MSE losses, mean reduction (torch.nn.functional.l1_loss / mse_loss).
 * The loss value accumulates in double, over fixed blocks of LOSS_BLOCK values
 * whose partial sums are added in block order: the result is the same for any
 * thread count. Loops are `omp simd` (GCC at -O2 vectorises only those). */
#include "core/parallel.h"
#include "nn/nn.h"

#include <math.h>
#include <stdlib.h>

#define LOSS_BLOCK 8192
#define LOSS_PAR_MIN 65536
#define LOSS_STACK_BLOCKS 256

static double l1_block(const float *x, const float *t, int64_t count)
{
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < count; i++)
        s += fabs((double)x[i] - (double)t[i]);
    return s;
}

static double mse_block(const float *x, const float *t, int64_t count)
{
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < count; i++) {
        double d = (double)x[i] - (double)t[i];
        s += d * d;
    }
    return s;
}

/* Sum of blockfn over the fixed blocks, in block order. */
static double blocked_sum(double (*blockfn)(const float *, const float *, int64_t), const float *x,
                          const float *t, int64_t count)
{
    if (count <= 0)
        return 0.0;
    const int64_t nb = (count + LOSS_BLOCK - 1) / LOSS_BLOCK;
    double stack[LOSS_STACK_BLOCKS], *part = stack;
    if (nb > LOSS_STACK_BLOCKS) {
        part = malloc(sizeof(double) * (size_t)nb);
        if (!part) { /* no memory: same blocks, serially */
            double s = 0;
            for (int64_t b = 0; b < nb; b++) {
                int64_t i0 = b * LOSS_BLOCK, len = count - i0 < LOSS_BLOCK ? count - i0 : LOSS_BLOCK;
                s += blockfn(x + i0, t + i0, len);
            }
            return s;
        }
    }
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (count > LOSS_PAR_MIN)
    for (int64_t b = 0; b < nb; b++) {
        int64_t i0 = b * LOSS_BLOCK, len = count - i0 < LOSS_BLOCK ? count - i0 : LOSS_BLOCK;
        part[b] = blockfn(x + i0, t + i0, len);
    }
    double s = 0;
    for (int64_t b = 0; b < nb; b++)
        s += part[b];
    if (part != stack)
        free(part);
    return s;
}

double nn_l1_loss_forward(const float *x, const float *t, int64_t count)
{
    return count > 0 ? blocked_sum(l1_block, x, t, count) / count : 0.0;
}

/* sign(x - t) * g, 0 where equal (or NaN), branch-free */
static inline float l1_grad(float x, float t, float g)
{
    float d = x - t;
    return (float)((d > 0.0f) - (d < 0.0f)) * g;
}

void nn_l1_loss_backward(float *dx, float *dt, float scale, const float *x, const float *t,
                         int64_t count)
{
    const float g = scale / (float)count;
    if (dx && dt) {
#pragma omp parallel for simd schedule(static) num_threads(optvq_threads()) if (count > LOSS_PAR_MIN)
        for (int64_t i = 0; i < count; i++) {
            float s = l1_grad(x[i], t[i], g);
            dx[i] += s;
            dt[i] -= s;
        }
    } else if (dx) {
#pragma omp parallel for simd schedule(static) num_threads(optvq_threads()) if (count > LOSS_PAR_MIN)
        for (int64_t i = 0; i < count; i++)
            dx[i] += l1_grad(x[i], t[i], g);
    } else if (dt) {
#pragma omp parallel for simd schedule(static) num_threads(optvq_threads()) if (count > LOSS_PAR_MIN)
        for (int64_t i = 0; i < count; i++)
            dt[i] -= l1_grad(x[i], t[i], g);
    }
}

double nn_mse_loss_forward(const float *x, const float *t, int64_t count)
{
    return count > 0 ? blocked_sum(mse_block, x, t, count) / count : 0.0;
}

void nn_mse_loss_backward(float *dx, float *dt, float scale, const float *x, const float *t,
                          int64_t count)
{
    const float g = 2.0f * scale / (float)count;
    if (dx && dt) {
#pragma omp parallel for simd schedule(static) num_threads(optvq_threads()) if (count > LOSS_PAR_MIN)
        for (int64_t i = 0; i < count; i++) {
            float s = g * (x[i] - t[i]);
            dx[i] += s;
            dt[i] -= s;
        }
    } else if (dx) {
#pragma omp parallel for simd schedule(static) num_threads(optvq_threads()) if (count > LOSS_PAR_MIN)
        for (int64_t i = 0; i < count; i++)
            dx[i] += g * (x[i] - t[i]);
    } else if (dt) {
#pragma omp parallel for simd schedule(static) num_threads(optvq_threads()) if (count > LOSS_PAR_MIN)
        for (int64_t i = 0; i < count; i++)
            dt[i] -= g * (x[i] - t[i]);
    }
}
