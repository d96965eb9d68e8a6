/* Channel concat: y (n, ca + cb, hw) = [a (n, ca, hw); b (n, cb, hw)]. */
#include "nn/nn.h"

#include <string.h>

void nn_concat_forward(float *y, const float *a, const float *b, int64_t n, int64_t ca,
                       int64_t cb, int64_t hw)
{
    for (int64_t i = 0; i < n; i++) {
        memcpy(y + i * (ca + cb) * hw, a + i * ca * hw, sizeof(float) * (size_t)(ca * hw));
        memcpy(y + (i * (ca + cb) + ca) * hw, b + i * cb * hw, sizeof(float) * (size_t)(cb * hw));
    }
}

void nn_concat_backward(float *da, float *db, const float *dy, int64_t n, int64_t ca, int64_t cb,
                        int64_t hw)
{
    for (int64_t i = 0; i < n; i++) {
        const float *r = dy + i * (ca + cb) * hw;
        if (da)
            for (int64_t j = 0; j < ca * hw; j++)
                da[i * ca * hw + j] += r[j];
        if (db)
            for (int64_t j = 0; j < cb * hw; j++)
                db[i * cb * hw + j] += r[ca * hw + j];
    }
}
