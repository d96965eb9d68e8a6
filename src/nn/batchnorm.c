/* batchnorm: training-mode BatchNorm2d (torch.nn.BatchNorm2d in train()).
 *
 * Statistics per channel over the n * hw values of that channel, biased variance for
 * the normalisation, y = (x - mean) * rstd * gamma + beta with rstd = 1/sqrt(var + eps).
 * The running statistics are updated as torch does:
 *   running_mean = (1 - momentum) running_mean + momentum mean
 *   running_var  = (1 - momentum) running_var  + momentum var * M / (M - 1)   (unbiased)
 * with M = n * hw (M = 1 is an error, as in torch: "Expected more than 1 value per
 * channel when training"). Statistics accumulate in double, two passes (mean, then
 * the centred sum of squares), one channel per OpenMP iteration; y is formed from
 * x - mean with the mean split into two floats, so a large mean against a small
 * spread does not cancel (backward likewise).
 *
 * Backward (statistics saved by forward):
 *   xhat = (x - mean) rstd
 *   dbeta  += sum dy ;  dgamma += sum dy xhat
 *   dx += gamma rstd (dy - mean(dy) - xhat mean(dy xhat))
 */
#include "core/comm.h"
#include "core/error.h"
#include "core/parallel.h"
#include "nn/nn.h"

#include <math.h>
#include <stdlib.h>

static optvq_status check(const float *x, int64_t n, int64_t c, int64_t hw, const char *op)
{
    if (!x)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: NULL argument", op);
    if (n <= 0 || c <= 0 || hw <= 0)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: bad shape n=%lld c=%lld hw=%lld", op,
                          (long long)n, (long long)c, (long long)hw);
    if (n * hw < 2)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG,
                          "%s: expected more than 1 value per channel in training mode "
                          "(n=%lld, hw=%lld)",
                          op, (long long)n, (long long)hw);
    return OPTVQ_OK;
}

/* sum over count floats, double */
static double sum_f(const float *a, int64_t count)
{
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < count; i++)
        s += a[i];
    return s;
}

/* sum (a - m)^2 over count floats, double */
static double sum_sq_c(const float *a, double m, int64_t count)
{
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < count; i++) {
        double d = a[i] - m;
        s += d * d;
    }
    return s;
}

static void update_running(float *running_mean, float *running_var, int64_t ch, double mean,
                           double var_biased, int64_t count, float momentum)
{
    if (running_mean)
        running_mean[ch] = (float)(momentum * mean + (1.0 - momentum) * running_mean[ch]);
    if (running_var) {
        double unbiased = var_biased * (double)count / (double)(count - 1);
        running_var[ch] = (float)(momentum * unbiased + (1.0 - momentum) * running_var[ch]);
    }
}

optvq_status nn_batchnorm_forward(float *y, float *mean, float *rstd, float *running_mean,
                                  float *running_var, const float *x, const float *gamma,
                                  const float *beta, int64_t n, int64_t c, int64_t hw, float eps,
                                  float momentum)
{
    return nn_batchnorm_forward_sync(y, mean, rstd, running_mean, running_var, x, gamma, beta, n, c, hw, eps,
                                     momentum, NULL);
}

optvq_status nn_batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                                   const float *x, const float *mean, const float *rstd,
                                   const float *gamma, int64_t n, int64_t c, int64_t hw)
{
    return nn_batchnorm_backward_sync(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, n, c, hw, NULL);
}

/* ---- SyncBatchNorm: the statistics of the whole global batch ----
 *
 * As torch's SyncBatchNorm: the per-channel sums of x (then of (x - mean)^2)
 * are summed over the ranks, so mean and variance are those of the
 * concatenated batch (count n * hw * ranks); backward sums dy and dy (x - mean)
 * over the ranks for dx, while dgamma and dbeta stay this rank's sums (the
 * data-parallel gradient average divides by the ranks). With no group (NULL)
 * they are plain BatchNorm: nn_batchnorm_forward / _backward call them so. */

optvq_status nn_batchnorm_forward_sync(float *y, float *mean, float *rstd, float *running_mean, float *running_var,
                                       const float *x, const float *gamma, const float *beta, int64_t n, int64_t c,
                                       int64_t hw, float eps, float momentum, const optvq_comm *comm)
{
    OPTVQ_TRY(check(x, n, c, hw, "batchnorm_forward"));
    if (!y)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "batchnorm_forward: NULL output");
    double *st = malloc((size_t)(2 * c) * sizeof(double));
    if (!st)
        return optvq_fail(OPTVQ_ERR_NOMEM, "batchnorm_forward: out of memory");
    const int64_t count = n * hw * comm_size(comm);
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (n * c * hw > 16384)
    for (int64_t ch = 0; ch < c; ch++) {
        double s = 0;
        for (int64_t i = 0; i < n; i++)
            s += sum_f(x + (i * c + ch) * hw, hw);
        st[ch] = s;
    }
    optvq_status status = comm_sum(comm, st, (size_t)c, "SyncBatchNorm");
    if (status != OPTVQ_OK) {
        free(st);
        return status;
    }
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (n * c * hw > 16384)
    for (int64_t ch = 0; ch < c; ch++) {
        const double m = st[ch] / (double)count;
        double ss = 0;
        for (int64_t i = 0; i < n; i++)
            ss += sum_sq_c(x + (i * c + ch) * hw, m, hw);
        st[c + ch] = ss;
    }
    if ((status = comm_sum(comm, st + c, (size_t)c, "SyncBatchNorm")) != OPTVQ_OK) {
        free(st);
        return status;
    }
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (n * c * hw > 16384)
    for (int64_t ch = 0; ch < c; ch++) {
        const double m = st[ch] / (double)count, var = st[c + ch] / (double)count;
        const double r = 1.0 / sqrt(var + (double)eps);
        if (mean)
            mean[ch] = (float)m;
        if (rstd)
            rstd[ch] = (float)r;
        update_running(running_mean, running_var, ch, m, var, count, momentum);
        const double g = gamma ? gamma[ch] : 1.0;
        const float A = (float)(r * g), B = beta ? beta[ch] : 0.0f;
        const float m_hi = (float)m, m_lo = (float)(m - (double)m_hi);
        for (int64_t i = 0; i < n; i++) {
            const float *xr = x + (i * c + ch) * hw;
            float *yr = y + (i * c + ch) * hw;
#pragma omp simd
            for (int64_t p = 0; p < hw; p++)
                yr[p] = ((xr[p] - m_hi) - m_lo) * A + B;
        }
    }
    free(st);
    return OPTVQ_OK;
}

optvq_status nn_batchnorm_backward_sync(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                                        const float *mean, const float *rstd, const float *gamma, int64_t n,
                                        int64_t c, int64_t hw, const optvq_comm *comm)
{
    OPTVQ_TRY(check(x, n, c, hw, "batchnorm_backward"));
    if (!dy || !mean || !rstd)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "batchnorm_backward: NULL argument");
    double *st = malloc((size_t)(6 * c) * sizeof(double)); /* s1, sc, se: local, then global */
    if (!st)
        return optvq_fail(OPTVQ_ERR_NOMEM, "batchnorm_backward: out of memory");
    const int64_t count = n * hw * comm_size(comm);
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (n * c * hw > 16384)
    for (int64_t ch = 0; ch < c; ch++) {
        const float m_hi = mean[ch];
        double s1 = 0, sc = 0, se = 0;
        for (int64_t i = 0; i < n; i++) {
            const float *xr = x + (i * c + ch) * hw, *dr = dy + (i * c + ch) * hw;
            double a = 0, b = 0, e = 0;
#pragma omp simd reduction(+ : a, b, e)
            for (int64_t p = 0; p < hw; p++) {
                const double xc = xr[p] - m_hi;
                a += dr[p];
                b += (double)dr[p] * xc;
                e += xc;
            }
            s1 += a;
            sc += b;
            se += e;
        }
        st[3 * ch] = st[3 * c + 3 * ch] = s1;
        st[3 * ch + 1] = st[3 * c + 3 * ch + 1] = sc;
        st[3 * ch + 2] = st[3 * c + 3 * ch + 2] = se;
    }
    optvq_status status = comm_sum(comm, st + 3 * c, (size_t)(3 * c), "SyncBatchNorm backward");
    if (status != OPTVQ_OK) {
        free(st);
        return status;
    }
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (n * c * hw > 16384)
    for (int64_t ch = 0; ch < c; ch++) {
        const float m_hi = mean[ch];
        const double r = rstd[ch];
        const double *loc = st + 3 * ch, *glob = st + 3 * c + 3 * ch;
        /* the mean correction is global: every rank centred on the same float mean */
        const double dm = glob[2] / (double)count;
        if (dgamma)
            dgamma[ch] += (float)((loc[1] - dm * loc[0]) * r);
        if (dbeta)
            dbeta[ch] += (float)loc[0];
        if (!dx)
            continue;
        const double s1 = glob[0], sxh = (glob[1] - dm * glob[0]) * r;
        const double g = gamma ? gamma[ch] : 1.0;
        const double m1 = s1 / (double)count, m2 = sxh / (double)count;
        const float A = (float)(g * r);
        const float B = (float)(-g * r * r * m2);
        const float C = (float)(-g * r * m1);
        const float m_lo = (float)dm;
        for (int64_t i = 0; i < n; i++) {
            const float *xr = x + (i * c + ch) * hw, *dr = dy + (i * c + ch) * hw;
            float *o = dx + (i * c + ch) * hw;
#pragma omp simd
            for (int64_t p = 0; p < hw; p++)
                o[p] += A * dr[p] + B * ((xr[p] - m_hi) - m_lo) + C;
        }
    }
    free(st);
    return OPTVQ_OK;
}

/* ---- naive reference: plain loops over (i, ch, p), textbook formulas, double ---- */

static void naive_stats(const float *x, int64_t n, int64_t c, int64_t hw, int64_t ch, double *m,
                        double *v)
{
    double s = 0, ss = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t p = 0; p < hw; p++)
            s += x[(i * c + ch) * hw + p];
    *m = s / (double)(n * hw);
    for (int64_t i = 0; i < n; i++)
        for (int64_t p = 0; p < hw; p++) {
            double d = x[(i * c + ch) * hw + p] - *m;
            ss += d * d;
        }
    *v = ss / (double)(n * hw);
}

void nn_batchnorm_forward_naive(float *y, float *mean, float *rstd, float *running_mean,
                                float *running_var, const float *x, const float *gamma,
                                const float *beta, int64_t n, int64_t c, int64_t hw, float eps,
                                float momentum)
{
    for (int64_t ch = 0; ch < c; ch++) {
        double m, v;
        naive_stats(x, n, c, hw, ch, &m, &v);
        double r = 1.0 / sqrt(v + (double)eps);
        if (mean)
            mean[ch] = (float)m;
        if (rstd)
            rstd[ch] = (float)r;
        update_running(running_mean, running_var, ch, m, v, n * hw, momentum);
        for (int64_t i = 0; i < n; i++)
            for (int64_t p = 0; p < hw; p++) {
                int64_t k = (i * c + ch) * hw + p;
                y[k] = (float)((x[k] - m) * r * (gamma ? gamma[ch] : 1.0) +
                               (beta ? beta[ch] : 0.0));
            }
    }
}

void nn_batchnorm_backward_naive(float *dx, float *dgamma, float *dbeta, const float *dy,
                                 const float *x, const float *gamma, int64_t n, int64_t c,
                                 int64_t hw, float eps)
{
    const double M = (double)(n * hw);
    for (int64_t ch = 0; ch < c; ch++) {
        double m, v;
        naive_stats(x, n, c, hw, ch, &m, &v);
        double r = 1.0 / sqrt(v + (double)eps), mg = 0, mgx = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t p = 0; p < hw; p++) {
                int64_t k = (i * c + ch) * hw + p;
                double xh = (x[k] - m) * r;
                mg += dy[k];
                mgx += dy[k] * xh;
            }
        if (dgamma)
            dgamma[ch] += (float)mgx;
        if (dbeta)
            dbeta[ch] += (float)mg;
        mg /= M;
        mgx /= M;
        double g = gamma ? gamma[ch] : 1.0;
        if (dx)
            for (int64_t i = 0; i < n; i++)
                for (int64_t p = 0; p < hw; p++) {
                    int64_t k = (i * c + ch) * hw + p;
                    double xh = (x[k] - m) * r;
                    dx[k] += (float)(g * r * (dy[k] - mg - xh * mgx));
                }
    }
}
