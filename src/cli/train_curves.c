#include "cli/train_curves.h"

#include "core/error.h"
#include "viz/chart.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per-step curves are drawn as means over windows of steps: at most this many points. */
#define MAX_POINTS 1000

static int grow(double **rows, int64_t *cap, int64_t need, int width)
{
    if (need <= *cap)
        return 0;
    int64_t cap2 = *cap ? 2 * *cap : 256;
    while (cap2 < need)
        cap2 *= 2;
    double *p = realloc(*rows, (size_t)(cap2 * width) * sizeof(double));
    if (!p)
        return -1;
    *rows = p;
    *cap = cap2;
    return 0;
}

int train_curves_add_step(train_curves *c, const double values[TC_STEP_N])
{
    if (grow(&c->step_values, &c->step_cap, c->steps + 1, TC_STEP_N))
        return -1;
    memcpy(c->step_values + c->steps++ * TC_STEP_N, values, TC_STEP_N * sizeof(double));
    return 0;
}

int train_curves_add_epoch(train_curves *c, const double values[TC_EPOCH_N])
{
    if (grow(&c->epoch_values, &c->epoch_cap, c->epochs + 1, TC_EPOCH_N))
        return -1;
    memcpy(c->epoch_values + c->epochs++ * TC_EPOCH_N, values, TC_EPOCH_N * sizeof(double));
    return 0;
}

/* A number field, NaN when absent or null. */
static double field(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

int train_curves_add_json(train_curves *c, const char *line)
{
    cJSON *o = cJSON_Parse(line);
    if (!o)
        return 0; /* a torn last line of a killed run */
    int rc = 0;
    if (cJSON_GetObjectItemCaseSensitive(o, "epoch_end")) {
        const double v[TC_EPOCH_N] = {field(o, "epoch_end"),       field(o, "step"),     field(o, "train_usage"),
                                      field(o, "train_perplexity"), field(o, "val_psnr"), field(o, "val_ssim"),
                                      field(o, "val_usage"),        field(o, "val_perplexity")};
        rc = train_curves_add_epoch(c, v);
    } else if (cJSON_GetObjectItemCaseSensitive(o, "lr")) {
        const double v[TC_STEP_N] = {field(o, "step"), field(o, "loss"),      field(o, "l1"),
                                     field(o, "l2"),   field(o, "q"),         field(o, "p"),
                                     field(o, "g"),    field(o, "d"),         field(o, "grad_norm"),
                                     field(o, "codes_used"), field(o, "perplexity")};
        rc = train_curves_add_step(c, v);
    }
    cJSON_Delete(o);
    return rc;
}

void train_curves_free(train_curves *c)
{
    free(c->step_values);
    free(c->epoch_values);
    memset(c, 0, sizeof *c);
}

/* Step column `col` as means over windows of `window` steps, times `scale`;
 * x gets the windows' mean step. Returns the number of windows. */
static int windowed(const train_curves *c, int col, int64_t window, double scale, double *x, double *y)
{
    int n = 0;
    for (int64_t i0 = 0; i0 < c->steps; i0 += window, n++) {
        int64_t i1 = i0 + window < c->steps ? i0 + window : c->steps, cnt = 0;
        double sx = 0, sy = 0;
        for (int64_t i = i0; i < i1; i++) {
            double v = c->step_values[i * TC_STEP_N + col];
            sx += c->step_values[i * TC_STEP_N + TC_STEP];
            if (isfinite(v)) {
                sy += v;
                cnt++;
            }
        }
        x[n] = sx / (double)(i1 - i0);
        y[n] = cnt ? scale * sy / (double)cnt : NAN;
    }
    return n;
}

static int any_finite(const double *y, int n)
{
    for (int i = 0; i < n; i++)
        if (isfinite(y[i]))
            return 1;
    return 0;
}

static int any_nonzero(const double *y, int n)
{
    for (int i = 0; i < n; i++)
        if (isfinite(y[i]) && y[i] != 0)
            return 1;
    return 0;
}

/* A y range for noisy training curves: from min(0, the lowest point) to a bit
 * above the highest point after the first few percent of training, so that
 * the large losses of the first steps do not flatten the rest. */
static void loss_range(const viz_series *s, int n_series, double *lo, double *hi)
{
    *lo = 0;
    *hi = -INFINITY;
    for (int k = 0; k < n_series; k++) {
        int skip = s[k].n >= 30 ? s[k].n * 3 / 100 : 0;
        for (int i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].y[i]))
                continue;
            *lo = fmin(*lo, s[k].y[i]);
            if (i >= skip)
                *hi = fmax(*hi, s[k].y[i]);
        }
    }
    *hi = isfinite(*hi) ? *hi + 0.1 * (*hi - *lo) : NAN;
    if (!isfinite(*hi))
        *lo = NAN;
}

optvq_status train_curves_draw(const train_curves *c, const char *path)
{
    enum { LOSS, LOSS_L1, LOSS_L2, LOSS_Q, LOSS_P, USED, PPL, GRAD, G, D, N_WINDOWED };
    static const int cols[N_WINDOWED] = {TC_LOSS,       TC_L1,         TC_L2,   TC_Q, TC_P,
                                         TC_CODES_USED, TC_PERPLEXITY, TC_GRAD, TC_G, TC_D};
    const int64_t window = c->steps > MAX_POINTS ? (c->steps + MAX_POINTS - 1) / MAX_POINTS : 1;
    const int64_t n_pts = c->steps ? (c->steps + window - 1) / window : 1, n_ep = c->epochs ? c->epochs : 1;
    double *buf = malloc((size_t)(2 * N_WINDOWED * n_pts + 8 * n_ep) * sizeof(double));
    if (!buf)
        return optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory for the training curves", path);
    double *wx[N_WINDOWED], *wy[N_WINDOWED];
    int wn[N_WINDOWED];
    for (int k = 0; k < N_WINDOWED; k++) {
        wx[k] = buf + 2 * k * n_pts;
        wy[k] = wx[k] + n_pts;
        wn[k] = windowed(c, cols[k], window, k == USED ? 100.0 / (double)c->n_e : 1.0, wx[k], wy[k]);
    }
    double *ep = buf + 2 * N_WINDOWED * n_pts, *end = ep + n_ep, *usage = end + n_ep, *vusage = usage + n_ep,
           *tppl = vusage + n_ep, *vppl = tppl + n_ep, *psnr = vppl + n_ep, *ssim = psnr + n_ep;
    for (int64_t i = 0; i < c->epochs; i++) {
        const double *v = c->epoch_values + i * TC_EPOCH_N;
        ep[i] = v[TC_EPOCH];
        end[i] = v[TC_END_STEP];
        usage[i] = 100.0 * v[TC_USAGE];
        vusage[i] = 100.0 * v[TC_VAL_USAGE];
        tppl[i] = v[TC_TRAIN_PERPLEXITY];
        vppl[i] = v[TC_VAL_PERPLEXITY];
        psnr[i] = v[TC_PSNR];
        ssim[i] = v[TC_SSIM];
    }
    const int ne = (int)c->epochs;
    char per_step[64], loss_title[96], usage_title[96], ppl_title[96];
    if (window > 1)
        snprintf(per_step, sizeof per_step, "means over %lld steps", (long long)window);
    else
        snprintf(per_step, sizeof per_step, "per step");
    snprintf(loss_title, sizeof loss_title, "Training loss (%s)", per_step);
    snprintf(usage_title, sizeof usage_title, "Codebook usage (%lld codes)", (long long)c->n_e);
    snprintf(ppl_title, sizeof ppl_title, "Codebook perplexity (at most %lld)", (long long)c->n_e);
    const viz_rgb black = {0.1, 0.1, 0.1}, blue = {0.12, 0.40, 0.75}, orange = {0.90, 0.50, 0.05},
                  green = {0.13, 0.55, 0.13}, purple = {0.55, 0.25, 0.65}, red = {0.80, 0.15, 0.15},
                  grey = {0.55, 0.55, 0.55};
    viz_series loss[5];
    int nl = 0;
    const struct { int k; const char *name; viz_rgb color; } terms[5] = {
        {LOSS, "total", black}, {LOSS_L1, "l1", blue}, {LOSS_L2, "l2", orange}, {LOSS_Q, "quantizer (q)", green},
        {LOSS_P, "LPIPS (p)", purple}};
    for (int t = 0; t < 5; t++)
        if (terms[t].k == LOSS_P ? any_nonzero(wy[LOSS_P], wn[LOSS_P]) /* 0 without --lpips */
                                 : any_finite(wy[terms[t].k], wn[terms[t].k]))
            loss[nl++] = (viz_series){terms[t].name, terms[t].color, wx[terms[t].k], wy[terms[t].k], wn[terms[t].k]};
    double lo, hi;
    loss_range(loss, nl, &lo, &hi);
    char batch_name[96];
    snprintf(batch_name, sizeof batch_name, "the step's batch (%s)", per_step);
    const viz_series use[3] = {{batch_name, grey, wx[USED], wy[USED], wn[USED]},
                               {"training batches of the epoch", blue, end, usage, ne},
                               {"held-out images", green, end, vusage, ne}};
    const viz_series ppl[3] = {{batch_name, grey, wx[PPL], wy[PPL], wn[PPL]},
                               {"training batches of the epoch", blue, end, tppl, ne},
                               {"held-out images", green, end, vppl, ne}};
    const viz_series sp[1] = {{"held-out PSNR", green, ep, psnr, ne}};
    const viz_series ss[1] = {{"held-out SSIM", green, ep, ssim, ne}};
    const viz_series grad[1] = {{"gradient norm", red, wx[GRAD], wy[GRAD], wn[GRAD]}};
    const viz_series gan[2] = {{"generator g = -mean D(rec)", purple, wx[G], wy[G], wn[G]},
                               {"discriminator (hinge)", red, wx[D], wy[D], wn[D]}};
    const int has_gan = any_finite(wy[D], wn[D]);
    const char *no_val = "no held-out data (--val-data)";
    const viz_chart charts[6] = {
        {loss_title, "training step", "loss", loss, nl, lo, hi, "no steps yet"},
        {usage_title, "training step", "codes used (%)", use, 3, 0.0, 102.5, "no steps yet"}, /* 100% off the frame */
        {ppl_title, "training step", "perplexity", ppl, 3, 0.0, NAN, "no steps yet"},
        {"Held-out PSNR", "epoch", "PSNR (dB)", sp, 1, NAN, NAN, c->epochs ? no_val : "no epoch done yet"},
        {"Held-out SSIM", "epoch", "SSIM", ss, 1, NAN, NAN, c->epochs ? no_val : "no epoch done yet"},
        has_gan ? (viz_chart){"Adversarial terms", "training step", "loss", gan, 2, NAN, NAN, NULL}
                : (viz_chart){"Gradient norm before clipping (at 1)", "training step", "L2 norm", grad, 1, 0.0, NAN,
                              "no steps yet"}};
    optvq_status st = viz_chart_grid(path, charts, 6, 3);
    free(buf);
    return st;
}
