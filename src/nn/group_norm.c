/* group_norm: y = (x - mean_g) / sqrt(var_g + eps) * gamma[c] + beta[c], statistics
 * over each (sample, group) block of (c/groups) * hw contiguous values, biased
 * variance (torch.nn.GroupNorm). Statistics accumulate in double. */
#include "core/error.h"
#include "core/parallel.h"
#include "nn/nn.h"
#include "nn/vmath.h"

#include <math.h>

static optvq_status check(int64_t n, int64_t c, int64_t hw, int64_t groups, const char *op)
{
    if (n <= 0 || c <= 0 || hw <= 0 || groups <= 0 || c % groups)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: %lld channels not divisible into %lld groups",
                          op, (long long)c, (long long)groups);
    return OPTVQ_OK;
}

/* Double sums over count floats: *sa = sum a, *saa = sum a^2, and when b is not
 * NULL *sb = sum b, *sab = sum a*b. AVX2: 8 floats a step, widened to two
 * double lanes-of-4 (two independent chains per sum). */
static void sums(const float *a, const float *b, int64_t count, double *sa, double *saa,
                 double *sb, double *sab)
{
    int64_t i = 0;
    double ra = 0, raa = 0, rb = 0, rab = 0;
#ifdef NN_HAVE_AVX2
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, q0 = a0, q1 = a0, b0 = a0, b1 = a0, p0 = a0,
            p1 = a0;
    if (b) {
        for (; i + 8 <= count; i += 8) {
            __m256 va = _mm256_loadu_ps(a + i), vb = _mm256_loadu_ps(b + i);
            __m256d al = _mm256_cvtps_pd(_mm256_castps256_ps128(va));
            __m256d ah = _mm256_cvtps_pd(_mm256_extractf128_ps(va, 1));
            __m256d bl = _mm256_cvtps_pd(_mm256_castps256_ps128(vb));
            __m256d bh = _mm256_cvtps_pd(_mm256_extractf128_ps(vb, 1));
            a0 = _mm256_add_pd(a0, al);
            a1 = _mm256_add_pd(a1, ah);
            q0 = _mm256_fmadd_pd(al, al, q0);
            q1 = _mm256_fmadd_pd(ah, ah, q1);
            b0 = _mm256_add_pd(b0, bl);
            b1 = _mm256_add_pd(b1, bh);
            p0 = _mm256_fmadd_pd(al, bl, p0);
            p1 = _mm256_fmadd_pd(ah, bh, p1);
        }
    } else {
        for (; i + 8 <= count; i += 8) {
            __m256 va = _mm256_loadu_ps(a + i);
            __m256d al = _mm256_cvtps_pd(_mm256_castps256_ps128(va));
            __m256d ah = _mm256_cvtps_pd(_mm256_extractf128_ps(va, 1));
            a0 = _mm256_add_pd(a0, al);
            a1 = _mm256_add_pd(a1, ah);
            q0 = _mm256_fmadd_pd(al, al, q0);
            q1 = _mm256_fmadd_pd(ah, ah, q1);
        }
    }
    double l[4];
    _mm256_storeu_pd(l, _mm256_add_pd(a0, a1));
    ra = (l[0] + l[1]) + (l[2] + l[3]);
    _mm256_storeu_pd(l, _mm256_add_pd(q0, q1));
    raa = (l[0] + l[1]) + (l[2] + l[3]);
    _mm256_storeu_pd(l, _mm256_add_pd(b0, b1));
    rb = (l[0] + l[1]) + (l[2] + l[3]);
    _mm256_storeu_pd(l, _mm256_add_pd(p0, p1));
    rab = (l[0] + l[1]) + (l[2] + l[3]);
#endif
    for (; i < count; i++) {
        ra += a[i];
        raa += (double)a[i] * a[i];
        if (b) {
            rb += b[i];
            rab += (double)a[i] * b[i];
        }
    }
    *sa = ra;
    *saa = raa;
    if (b) {
        *sb = rb;
        *sab = rab;
    }
}

static void finish_stats(double s, double ss, int64_t count, float eps, double *mean, double *rstd)
{
    double m = s / count, v = ss / count - m * m;
    if (v < 0)
        v = 0;
    *mean = m;
    *rstd = 1.0 / sqrt(v + eps);
}

/* y = x * a + b over count floats */
static void affine(float *restrict y, const float *restrict x, float a, float b, int64_t count)
{
#pragma omp simd
    for (int64_t p = 0; p < count; p++)
        y[p] = x[p] * a + b;
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
        double mean, rstd, s, ss;
        sums(xb, NULL, block, &s, &ss, NULL, NULL);
        finish_stats(s, ss, block, eps, &mean, &rstd);
        int64_t g = ng % groups;
        for (int64_t j = 0; j < cg; j++) {
            int64_t ch = g * cg + j;
            const double gm = gamma ? gamma[ch] : 1.0f, bt = beta ? beta[ch] : 0.0f;
            const float a = (float)(rstd * gm);
            const float b = (float)(bt - mean * rstd * gm);
            affine(yb + j * hw, xb + j * hw, a, b, hw);
        }
    }
    return OPTVQ_OK;
}

#define GN_CG_STASH 256 /* channels per group whose dy sums are kept on the stack */

optvq_status nn_group_norm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                                    const float *x, const float *gamma, int64_t n, int64_t c,
                                    int64_t hw, int64_t groups, float eps)
{
    OPTVQ_TRY(check(n, c, hw, groups, "group_norm_backward"));
    const int64_t cg = c / groups, block = cg * hw;
    /* Each thread owns whole groups (all samples), so dgamma/dbeta are race-free. */
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (n * c * hw > 16384)
    for (int64_t g = 0; g < groups; g++) {
        double stash[2 * GN_CG_STASH];
        for (int64_t s = 0; s < n; s++) {
            const int64_t off = (s * groups + g) * block;
            const float *xb = x + off, *dyb = dy + off;
            /* one pass: per channel sum x, x^2 (group statistics) and
             * s1 = sum dy, s2 = sum dy*x */
            double sx = 0, sxx = 0;
            for (int64_t j = 0; j < cg; j++) {
                double a, aa, s1, s2;
                sums(xb + j * hw, dyb + j * hw, hw, &a, &aa, &s1, &s2);
                sx += a;
                sxx += aa;
                if (j < GN_CG_STASH) {
                    stash[2 * j] = s1;
                    stash[2 * j + 1] = s2;
                }
            }
            double mean, rstd;
            finish_stats(sx, sxx, block, eps, &mean, &rstd);
            /* sum_gy = sum dy*gamma ; sum_gyx = sum dy*gamma*xhat over the block */
            double sum_gy = 0, sum_gyx = 0;
            for (int64_t j = 0; j < cg; j++) {
                int64_t ch = g * cg + j;
                double s1, s2;
                if (j < GN_CG_STASH) {
                    s1 = stash[2 * j];
                    s2 = stash[2 * j + 1];
                } else {
                    double a, aa;
                    sums(xb + j * hw, dyb + j * hw, hw, &a, &aa, &s1, &s2);
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
#pragma omp simd
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
