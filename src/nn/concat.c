/* Channel concat: y (n, ca + cb, hw) = [a (n, ca, hw); b (n, cb, hw)].
 * Both passes are split into contiguous pieces (one per (sample, half) and,
 * for large halves, further into chunks) spread over threads; the backward
 * accumulation is an `omp simd` loop. */
#include "core/parallel.h"
#include "nn/nn.h"

#include <string.h>

#define CONCAT_CHUNK 32768 /* floats per work item */
#define CONCAT_PAR_MIN 65536

/* Work item it of (n samples) x (2 halves) x (chunks per half): the half's
 * source/destination offsets and length within it. */
typedef struct {
    int64_t len_a, len_b, ch_a, ch_b; /* floats per half, chunks per half */
} concat_plan;

static concat_plan plan_of(int64_t ca, int64_t cb, int64_t hw)
{
    concat_plan p;
    p.len_a = ca * hw;
    p.len_b = cb * hw;
    p.ch_a = (p.len_a + CONCAT_CHUNK - 1) / CONCAT_CHUNK;
    p.ch_b = (p.len_b + CONCAT_CHUNK - 1) / CONCAT_CHUNK;
    return p;
}

void nn_concat_forward(float *y, const float *a, const float *b, int64_t n, int64_t ca,
                       int64_t cb, int64_t hw)
{
    const concat_plan p = plan_of(ca, cb, hw);
    const int64_t per = p.ch_a + p.ch_b, total = n * (p.len_a + p.len_b);
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (total > CONCAT_PAR_MIN)
    for (int64_t it = 0; it < n * per; it++) {
        const int64_t i = it / per, k = it % per;
        float *yi = y + i * (p.len_a + p.len_b);
        if (k < p.ch_a) {
            int64_t o = k * CONCAT_CHUNK, len = p.len_a - o < CONCAT_CHUNK ? p.len_a - o : CONCAT_CHUNK;
            memcpy(yi + o, a + i * p.len_a + o, sizeof(float) * (size_t)len);
        } else {
            int64_t o = (k - p.ch_a) * CONCAT_CHUNK;
            int64_t len = p.len_b - o < CONCAT_CHUNK ? p.len_b - o : CONCAT_CHUNK;
            memcpy(yi + p.len_a + o, b + i * p.len_b + o, sizeof(float) * (size_t)len);
        }
    }
}

static void acc(float *restrict d, const float *restrict s, int64_t len)
{
#pragma omp simd
    for (int64_t j = 0; j < len; j++)
        d[j] += s[j];
}

void nn_concat_backward(float *da, float *db, const float *dy, int64_t n, int64_t ca, int64_t cb,
                        int64_t hw)
{
    const concat_plan p = plan_of(ca, cb, hw);
    const int64_t per = p.ch_a + p.ch_b, total = n * (p.len_a + p.len_b);
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (total > CONCAT_PAR_MIN)
    for (int64_t it = 0; it < n * per; it++) {
        const int64_t i = it / per, k = it % per;
        const float *r = dy + i * (p.len_a + p.len_b);
        if (k < p.ch_a) {
            int64_t o = k * CONCAT_CHUNK, len = p.len_a - o < CONCAT_CHUNK ? p.len_a - o : CONCAT_CHUNK;
            if (da)
                acc(da + i * p.len_a + o, r + o, len);
        } else {
            int64_t o = (k - p.ch_a) * CONCAT_CHUNK;
            int64_t len = p.len_b - o < CONCAT_CHUNK ? p.len_b - o : CONCAT_CHUNK;
            if (db)
                acc(db + i * p.len_b + o, r + p.len_a + o, len);
        }
    }
}
