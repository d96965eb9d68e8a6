/* group_norm: y = (x - mean_g) / sqrt(var_g + eps) * gamma[c] + beta[c], statistics
 * over each (sample, group) block of (c/groups) * hw contiguous values, biased
 * variance (torch.nn.GroupNorm). Statistics accumulate in double. */
#include "core/error.h"
#include "core/parallel.h"
#include "nn/nn.h"

#include <math.h>

static optvq_status check(int64_t n, int64_t c, int64_t hw, int64_t groups, const char *op)
{
    if (n <= 0 || c <= 0 || hw <= 0 || groups <= 0 || c % groups)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: %lld channels not divisible into %lld groups",
                          op, (long long)c, (long long)groups);
    return OPTVQ_OK;
}

static void stats(const float *x, int64_t count, float eps, double *mean, double *rstd)
{
    double s = 0, ss = 0;
    for (int64_t i = 0; i < count; i++) {
        s += x[i];
        ss += (double)x[i] * x[i];
    }
    double m = s / count, v = ss / count - m * m;
    if (v < 0)
        v = 0;
    *mean = m;
    *rstd = 1.0 / sqrt(v + eps);
}

optvq_status nn_group_norm_forward(float *y, const float *x, const float *gamma,
                                   const float *beta, int64_t n, int64_t c, int64_t hw,
                                   int64_t groups, float eps)
{
    OPTVQ_TRY(check(n, c, hw, groups, "group_norm_forward"));
    const int64_t cg = c / groups, block = cg * hw;
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (n * c * hw > 16384)
    for (int64_t ng = 0; ng < n * groups; ng++) {
        const float *xb = x + ng * block;
        float *yb = y + ng * block;
        double mean, rstd;
        stats(xb, block, eps, &mean, &rstd);
        int64_t g = ng % groups;
        for (int64_t j = 0; j < cg; j++) {
            int64_t ch = g * cg + j;
            float a = (float)(rstd * (gamma ? gamma[ch] : 1.0f));
            float b = (float)((beta ? beta[ch] : 0.0f) - mean * rstd * (gamma ? gamma[ch] : 1.0f));
            const float *xr = xb + j * hw;
            float *yr = yb + j * hw;
            for (int64_t p = 0; p < hw; p++)
                yr[p] = xr[p] * a + b;
        }
    }
    return OPTVQ_OK;
}

optvq_status nn_group_norm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                                    const float *x, const float *gamma, int64_t n, int64_t c,
                                    int64_t hw, int64_t groups, float eps)
{
    OPTVQ_TRY(check(n, c, hw, groups, "group_norm_backward"));
    const int64_t cg = c / groups, block = cg * hw;
    /* Each thread owns whole groups (all samples), so dgamma/dbeta are race-free. */
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (n * c * hw > 16384)
    for (int64_t g = 0; g < groups; g++) {
        for (int64_t s = 0; s < n; s++) {
            const int64_t off = (s * groups + g) * block;
            const float *xb = x + off, *dyb = dy + off;
            double mean, rstd;
            stats(xb, block, eps, &mean, &rstd);
            /* sum_gy = sum dy*gamma ; sum_gyx = sum dy*gamma*xhat over the block */
            double sum_gy = 0, sum_gyx = 0;
            for (int64_t j = 0; j < cg; j++) {
                int64_t ch = g * cg + j;
                const float *xr = xb + j * hw, *dr = dyb + j * hw;
                double s1 = 0, s2 = 0;
                for (int64_t p = 0; p < hw; p++) {
                    s1 += dr[p];
                    s2 += (double)dr[p] * xr[p];
                }
                double dxhat = rstd * (s2 - mean * s1); /* sum dy * xhat */
                double gm = gamma ? gamma[ch] : 1.0;
                if (dgamma)
                    dgamma[ch] += (float)dxhat;
                if (dbeta)
                    dbeta[ch] += (float)s1;
                sum_gy += gm * s1;
                sum_gyx += gm * dxhat;
            }
            if (!dx)
                continue;
            const double m1 = sum_gy / block, m2 = sum_gyx / block;
            /* dx = rstd*gamma*dy - rstd*m1 - xhat*rstd*m2 = A dy + B x + C */
            const float B = (float)(-rstd * rstd * m2);
            const float C = (float)(-rstd * m1 + mean * rstd * rstd * m2);
            for (int64_t j = 0; j < cg; j++) {
                int64_t ch = g * cg + j;
                const float A = (float)(rstd * (gamma ? gamma[ch] : 1.0f));
                const float *xr = xb + j * hw, *dr = dyb + j * hw;
                float *o = dx + off + j * hw;
                for (int64_t p = 0; p < hw; p++)
                    o[p] += A * dr[p] + B * xr[p] + C;
            }
        }
    }
    return OPTVQ_OK;
}

/* ---- naive reference: two-pass statistics, textbook formulas, double ---- */

void nn_group_norm_forward_naive(float *y, const float *x, const float *gamma, const float *beta,
                                 int64_t n, int64_t c, int64_t hw, int64_t groups, float eps)
{
    const int64_t cg = c / groups, block = cg * hw;
    for (int64_t ng = 0; ng < n * groups; ng++) {
        const float *xb = x + ng * block;
        double m = 0, v = 0;
        for (int64_t i = 0; i < block; i++)
            m += xb[i];
        m /= block;
        for (int64_t i = 0; i < block; i++)
            v += (xb[i] - m) * (xb[i] - m);
        v /= block;
        double r = 1.0 / sqrt(v + eps);
        for (int64_t i = 0; i < block; i++) {
            int64_t ch = (ng % groups) * cg + i / hw;
            y[ng * block + i] =
                (float)((xb[i] - m) * r * (gamma ? gamma[ch] : 1.0) + (beta ? beta[ch] : 0.0));
        }
    }
}

void nn_group_norm_backward_naive(float *dx, float *dgamma, float *dbeta, const float *dy,
                                  const float *x, const float *gamma, int64_t n, int64_t c,
                                  int64_t hw, int64_t groups, float eps)
{
    const int64_t cg = c / groups, block = cg * hw;
    for (int64_t ng = 0; ng < n * groups; ng++) {
        const float *xb = x + ng * block, *db = dy + ng * block;
        double m = 0, v = 0;
        for (int64_t i = 0; i < block; i++)
            m += xb[i];
        m /= block;
        for (int64_t i = 0; i < block; i++)
            v += (xb[i] - m) * (xb[i] - m);
        v /= block;
        double r = 1.0 / sqrt(v + eps), mg = 0, mgx = 0;
        for (int64_t i = 0; i < block; i++) {
            int64_t ch = (ng % groups) * cg + i / hw;
            double xh = (xb[i] - m) * r, gy = db[i] * (gamma ? gamma[ch] : 1.0);
            if (dgamma)
                dgamma[ch] += (float)(db[i] * xh);
            if (dbeta)
                dbeta[ch] += db[i];
            mg += gy;
            mgx += gy * xh;
        }
        mg /= block;
        mgx /= block;
        if (dx)
            for (int64_t i = 0; i < block; i++) {
                int64_t ch = (ng % groups) * cg + i / hw;
                double xh = (xb[i] - m) * r, gy = db[i] * (gamma ? gamma[ch] : 1.0);
                dx[ng * block + i] += (float)(r * (gy - mg - xh * mgx));
            }
    }
}
