/* linear: y (n, out) = x (n, in) w^T + b, w (out, in) (torch.nn.Linear). */
#include "nn/nn.h"

void nn_linear_forward(float *y, const float *x, const float *w, const float *b, int64_t n,
                       int64_t in, int64_t out)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < out; o++)
            y[i * out + o] = b ? b[o] : 0.0f;
    nn_sgemm(0, 1, n, out, in, 1.0f, x, in, w, in, 1.0f, y, out);
}

void nn_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int64_t n, int64_t in, int64_t out)
{
    if (dx) /* dx (n, in) += dy (n, out) w (out, in) */
        nn_sgemm(0, 0, n, in, out, 1.0f, dy, out, w, in, 1.0f, dx, in);
    if (dw) /* dw (out, in) += dy^T (out, n) x (n, in) */
        nn_sgemm(1, 0, out, in, n, 1.0f, dy, out, x, in, 1.0f, dw, in);
    if (db)
        for (int64_t o = 0; o < out; o++) {
            double s = 0;
            for (int64_t i = 0; i < n; i++)
                s += dy[i * out + o];
            db[o] += (float)s;
        }
}

void nn_linear_forward_naive(float *y, const float *x, const float *w, const float *b, int64_t n,
                             int64_t in, int64_t out)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int64_t k = 0; k < in; k++)
                s += (double)x[i * in + k] * w[o * in + k];
            y[i * out + o] = (float)s;
        }
}

void nn_linear_backward_naive(float *dx, float *dw, float *db, const float *dy, const float *x,
                              const float *w, int64_t n, int64_t in, int64_t out)
{
    if (dx)
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < in; k++) {
                double s = 0;
                for (int64_t o = 0; o < out; o++)
                    s += (double)dy[i * out + o] * w[o * in + k];
                dx[i * in + k] += (float)s;
            }
    if (dw)
        for (int64_t o = 0; o < out; o++)
            for (int64_t k = 0; k < in; k++) {
                double s = 0;
                for (int64_t i = 0; i < n; i++)
                    s += (double)dy[i * out + o] * x[i * in + k];
                dw[o * in + k] += (float)s;
            }
    if (db)
        for (int64_t o = 0; o < out; o++) {
            double s = 0;
            for (int64_t i = 0; i < n; i++)
                s += dy[i * out + o];
            db[o] += (float)s;
        }
}
