/* PSNR and SSIM exactly as pyiqa computes them with the paper's settings;
 * the definitions are in metrics.h. */
#include "eval/metrics.h"

#include "core/error.h"
#include "core/parallel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WIN METRICS_SSIM_WIN

/* Single-precision steps written as double operations rounded to float: the
 * product or sum of two floats computed in double and rounded once is the
 * correctly rounded float result, and no compiler may fuse across the casts
 * (so the value never depends on FMA contraction). */
static inline float f32_mul(float a, float b) { return (float)((double)a * (double)b); }
static inline float f32_add(float a, float b) { return (float)((double)a + (double)b); }

static optvq_status check_args(const float *x, const float *y, int channels, int height, int width,
                               const void *out, const char *what)
{
    if (!x || !y || !out)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: NULL argument", what);
    if (channels != 1 && channels != 3)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: images must have 1 or 3 channels, not %d", what, channels);
    if (height < 1 || width < 1 || (double)height * (double)width > 1e10)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: bad image size %d x %d", what, height, width);
    return OPTVQ_OK;
}

static inline float clamp01(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }

/* Clamps both images (plane by plane) and rejects NaN. */
static optvq_status has_nan(const float *x, const float *y, int64_t n, const char *what)
{
    for (int64_t i = 0; i < n; i++)
        if (isnan(x[i]) || isnan(y[i]))
            return optvq_fail(OPTVQ_ERR_NUMERIC, "%s: NaN in the %s at element %lld", what,
                              isnan(x[i]) ? "original" : "reconstruction", (long long)i);
    return OPTVQ_OK;
}

/* ---- PSNR ---- */

optvq_status metrics_psnr(const float *x, const float *y, int channels, int height, int width, double *psnr)
{
    OPTVQ_TRY(check_args(x, y, channels, height, width, psnr, "psnr"));
    const int64_t n = (int64_t)height * width;
    OPTVQ_TRY(has_nan(x, y, n * channels, "psnr"));
    /* pyiqa's float32 constants of rgb2ycbcr's first column, promoted. */
    const double wr = (double)65.481f, wg = (double)128.553f, wb = (double)24.966f;
    double sum = 0.0;
    if (channels == 3) {
        for (int64_t i = 0; i < n; i++) {
            double yx = ((double)clamp01(x[i]) * wr + (double)clamp01(x[n + i]) * wg +
                         (double)clamp01(x[2 * n + i]) * wb + 16.0) / 255.0;
            double yy = ((double)clamp01(y[i]) * wr + (double)clamp01(y[n + i]) * wg +
                         (double)clamp01(y[2 * n + i]) * wb + 16.0) / 255.0;
            double d = yx - yy;
            sum += d * d;
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            double d = (double)clamp01(x[i]) - (double)clamp01(y[i]);
            sum += d * d;
        }
    }
    double mse = sum / (double)n;
    *psnr = 10.0 * log10(1.0 / (mse + METRICS_PSNR_EPS));
    return OPTVQ_OK;
}

/* ---- SSIM ---- */

void metrics_ssim_window(float window[WIN * WIN])
{
    /* numpy: h = exp(-(x*x + y*y) / (2 sigma^2)); h[h < eps * max] = 0;
     * h /= h.sum() (numpy's pairwise sum: 8 running partial sums over the 121
     * contiguous values, combined pairwise, then the tail); .float(). */
    double h[WIN * WIN], hmax = 0.0;
    const double m = (WIN - 1) / 2.0, s2 = 2.0 * METRICS_SSIM_SIGMA * METRICS_SSIM_SIGMA;
    for (int i = 0; i < WIN; i++)
        for (int j = 0; j < WIN; j++) {
            double yy = -m + i, xx = -m + j;
            h[i * WIN + j] = exp(-(xx * xx + yy * yy) / s2);
            if (h[i * WIN + j] > hmax)
                hmax = h[i * WIN + j];
        }
    for (int k = 0; k < WIN * WIN; k++)
        if (h[k] < 2.220446049250313e-16 * hmax)
            h[k] = 0.0;
    double r[8] = {0};
    const int n = WIN * WIN, nb = n - n % 8;
    for (int i = 0; i < nb; i += 8)
        for (int j = 0; j < 8; j++)
            r[j] += h[i + j];
    double sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (int i = nb; i < n; i++)
        sum += h[i];
    for (int k = 0; k < n; k++)
        window[k] = (float)(sum != 0.0 ? h[k] / sum : h[k]);
}

/* The rounded 0..255 luma pyiqa's SSIM works on (see metrics.h). */
static void ssim_luma(const float *img, int channels, int64_t n, double *out)
{
    const float wr = 0.299f, wg = 0.587f, wb = 0.114f, s = 255.0f;
    for (int64_t i = 0; i < n; i++) {
        float v;
        if (channels == 3) {
            float r = clamp01(img[i]), g = clamp01(img[n + i]), b = clamp01(img[2 * n + i]);
            v = f32_add(f32_add(f32_mul(r, wr), f32_mul(g, wg)), f32_mul(b, wb));
        } else {
            v = clamp01(img[i]);
        }
        out[i] = nearbyint((double)f32_mul(v, s)); /* half to even, as torch.round */
    }
}

optvq_status metrics_ssim(const float *x, const float *y, int channels, int height, int width, double *ssim)
{
    OPTVQ_TRY(check_args(x, y, channels, height, width, ssim, "ssim"));
    if (height < WIN || width < WIN)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "ssim: images must be at least %d x %d, got %d x %d", WIN, WIN,
                          height, width);
    const int64_t n = (int64_t)height * width;
    OPTVQ_TRY(has_nan(x, y, n * channels, "ssim"));
    const int oh = height - WIN + 1, ow = width - WIN + 1;
    /* planes: Yx, Yy, Yx^2, Yy^2, YxYy (n each); accumulators: 5 rows of ow */
    double *buf = malloc((size_t)(5 * n + 5 * (int64_t)ow) * sizeof(double));
    if (!buf)
        return optvq_fail(OPTVQ_ERR_NOMEM, "ssim: out of memory for a %d x %d image", height, width);
    double *X = buf, *Y = X + n, *XX = Y + n, *YY = XX + n, *XY = YY + n, *acc = XY + n;
    ssim_luma(x, channels, n, X);
    ssim_luma(y, channels, n, Y);
    for (int64_t i = 0; i < n; i++) { /* integers <= 255: every product is exact */
        XX[i] = X[i] * X[i];
        YY[i] = Y[i] * Y[i];
        XY[i] = X[i] * Y[i];
    }
    float wf[WIN * WIN];
    double w[WIN * WIN];
    metrics_ssim_window(wf);
    for (int k = 0; k < WIN * WIN; k++)
        w[k] = (double)wf[k];
    const double C1 = (0.01 * 255.0) * (0.01 * 255.0), C2 = (0.03 * 255.0) * (0.03 * 255.0);
    double total = 0.0;
    const double *planes[5] = {X, Y, XX, YY, XY};
    for (int i = 0; i < oh; i++) {
        memset(acc, 0, (size_t)(5 * ow) * sizeof(double));
        for (int p = 0; p < 5; p++) {
            double *a = acc + (int64_t)p * ow;
            for (int di = 0; di < WIN; di++) {
                const double *row = planes[p] + (int64_t)(i + di) * width;
                for (int dj = 0; dj < WIN; dj++) {
                    const double wv = w[di * WIN + dj];
                    const double *src = row + dj;
                    for (int j = 0; j < ow; j++)
                        a[j] += wv * src[j];
                }
            }
        }
        double row_sum = 0.0;
        for (int j = 0; j < ow; j++) {
            const double mu1 = acc[j], mu2 = acc[ow + j];
            const double mu1_sq = mu1 * mu1, mu2_sq = mu2 * mu2, mu1_mu2 = mu1 * mu2;
            const double s1 = acc[2 * ow + j] - mu1_sq, s2 = acc[3 * ow + j] - mu2_sq;
            const double s12 = acc[4 * ow + j] - mu1_mu2;
            double cs = (2.0 * s12 + C2) / (s1 + s2 + C2);
            if (!(cs > 0.0)) /* F.relu */
                cs = 0.0;
            row_sum += ((2.0 * mu1_mu2 + C1) / (mu1_sq + mu2_sq + C1)) * cs;
        }
        total += row_sum;
    }
    free(buf);
    *ssim = total / ((double)oh * (double)ow);
    return OPTVQ_OK;
}

/* ---- model space, batches ---- */

void metrics_recover(const float *src, int64_t count, float *dst)
{
    for (int64_t i = 0; i < count; i++) {
        float v = (src[i] + 1.0f) * 0.5f; /* Normalize(mean=-1, std=2): (v + 1) / 2, exact halving */
        dst[i] = isnan(v) ? v : clamp01(v);
    }
}

static optvq_status pair_signed(const float *orig, const float *recon, int channels, int height, int width,
                                float *scratch, double *psnr, double *ssim)
{
    const int64_t n = (int64_t)channels * height * width;
    float *a = scratch, *b = scratch + n;
    metrics_recover(orig, n, a);
    metrics_recover(recon, n, b);
    double dummy;
    OPTVQ_TRY(metrics_psnr(a, b, channels, height, width, psnr ? psnr : &dummy));
    if (ssim)
        OPTVQ_TRY(metrics_ssim(a, b, channels, height, width, ssim));
    return OPTVQ_OK;
}

optvq_status metrics_batch_signed(const float *originals, const float *recons, int64_t batch, int channels,
                                  int height, int width, double *psnr, double *ssim)
{
    if (!originals || !recons || batch < 0)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "metrics: bad batch arguments");
    OPTVQ_TRY(check_args(originals, recons, channels, height, width, originals, "metrics"));
    if (ssim && (height < WIN || width < WIN))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "ssim: images must be at least %d x %d, got %d x %d", WIN, WIN,
                          height, width);
    const int64_t per = (int64_t)channels * height * width;
    int64_t first_failed = INT64_MAX; /* the first failing image, re-run below for its message */
    double work = (double)batch * (double)per * (ssim ? 600.0 : 10.0);
    int nt = optvq_threads_for(work);
    if (nt > batch)
        nt = batch > 0 ? (int)batch : 1;
#pragma omp parallel num_threads(nt)
    {
        float *scratch = malloc((size_t)(2 * per) * sizeof(float));
        /* a min-reduction, not a named critical section: those become exported symbols */
#pragma omp for schedule(dynamic, 1) reduction(min : first_failed)
        for (int64_t i = 0; i < batch; i++) {
            optvq_status st = scratch ? pair_signed(originals + i * per, recons + i * per, channels, height, width,
                                                    scratch, psnr ? psnr + i : NULL, ssim ? ssim + i : NULL)
                                      : OPTVQ_ERR_NOMEM;
            if (st != OPTVQ_OK && i < first_failed)
                first_failed = i;
        }
        free(scratch);
    }
    if (first_failed == INT64_MAX)
        return OPTVQ_OK;
    const int64_t failed = first_failed;
    float *scratch = malloc((size_t)(2 * per) * sizeof(float));
    if (!scratch)
        return optvq_fail(OPTVQ_ERR_NOMEM, "metrics: out of memory");
    double p, s;
    optvq_status st = pair_signed(originals + failed * per, recons + failed * per, channels, height, width, scratch,
                                  &p, ssim ? &s : NULL);
    free(scratch);
    if (st == OPTVQ_OK) /* cannot happen: the computation is deterministic */
        return optvq_fail(OPTVQ_ERR_STATE, "metrics: image %lld failed in a worker thread", (long long)failed);
    char msg[512]; /* optvq_fail writes the buffer optvq_last_error() points to */
    snprintf(msg, sizeof msg, "%s", optvq_last_error());
    return optvq_fail(st, "image %lld: %s", (long long)failed, msg);
}

/* ---- running mean ---- */

void metrics_acc_init(metrics_acc *a)
{
    memset(a, 0, sizeof *a);
    a->psnr_min = a->ssim_min = INFINITY;
    a->psnr_max = a->ssim_max = -INFINITY;
}

/* Neumaier's compensated summation. */
static void kahan_add(double *sum, double *c, double v)
{
    double t = *sum + v;
    if (fabs(*sum) >= fabs(v))
        *c += (*sum - t) + v;
    else
        *c += (v - t) + *sum;
    *sum = t;
}

void metrics_acc_add(metrics_acc *a, double psnr, double ssim)
{
    a->count++;
    kahan_add(&a->psnr_sum, &a->psnr_c, psnr);
    kahan_add(&a->ssim_sum, &a->ssim_c, ssim);
    a->psnr_min = fmin(a->psnr_min, psnr);
    a->psnr_max = fmax(a->psnr_max, psnr);
    a->ssim_min = fmin(a->ssim_min, ssim);
    a->ssim_max = fmax(a->ssim_max, ssim);
}

double metrics_acc_psnr(const metrics_acc *a)
{
    return a->count ? (a->psnr_sum + a->psnr_c) / (double)a->count : NAN;
}

double metrics_acc_ssim(const metrics_acc *a)
{
    return a->count ? (a->ssim_sum + a->ssim_c) / (double)a->count : NAN;
}
