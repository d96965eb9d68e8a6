/* Residual add: y = a + b; da += dy, db += dy. Elementwise (own reference). */
#include "core/parallel.h"
#include "nn/nn.h"

#define PAR_MIN 32768

void nn_add_forward(float *y, const float *a, const float *b, int64_t count)
{
#pragma omp parallel for simd schedule(static) num_threads(optvq_threads()) if (count > PAR_MIN)
    for (int64_t i = 0; i < count; i++)
        y[i] = a[i] + b[i];
}

void nn_add_backward(float *da, float *db, const float *dy, int64_t count)
{
    if (da) {
#pragma omp parallel for simd schedule(static) num_threads(optvq_threads()) if (count > PAR_MIN)
        for (int64_t i = 0; i < count; i++)
            da[i] += dy[i];
    }
    if (db) {
#pragma omp parallel for simd schedule(static) num_threads(optvq_threads()) if (count > PAR_MIN)
        for (int64_t i = 0; i < count; i++)
            db[i] += dy[i];
    }
}
