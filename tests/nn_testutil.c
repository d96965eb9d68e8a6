#include "nn_testutil.h"
#include "test.h"
#include "optvq/optvq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

float *nnt_load(const char *case_name, const char *name, int64_t *n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/nn/%s/%s.npy", test_ref_dir(), case_name, name);
    optvq_array a;
    if (optvq_npy_read(path, &a) != OPTVQ_OK)
        return NULL;
    if (optvq_array_to_f32(&a) != OPTVQ_OK) {
        optvq_array_free(&a);
        return NULL;
    }
    if (n)
        *n = optvq_array_numel(&a);
    return (float *)a.data; /* optvq_array_free is free() of data */
}

int nnt_meta(const char *case_name, double *m, int max)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/nn/%s/meta.npy", test_ref_dir(), case_name);
    optvq_array a;
    if (optvq_npy_read(path, &a) != OPTVQ_OK)
        return 0;
    int64_t n = optvq_array_numel(&a);
    int k = 0;
    if (a.dtype == OPTVQ_F64)
        for (; k < n && k < max; k++)
            m[k] = ((double *)a.data)[k];
    optvq_array_free(&a);
    return k;
}

void nnt_expect(const char *what, const float *got, const float *want, int64_t n, double max_nmse)
{
    if (!got || !want) {
        CHECK_MSG(0, "%s: missing data", what);
        return;
    }
    test_diff d = test_compare(what, got, want, n);
    CHECK_MSG(d.nmse <= max_nmse && isfinite(d.max_abs), "%s: nmse %.3g > %.3g", what, d.nmse,
              max_nmse);
}

float *nnt_randn(optvq_rng *rng, int64_t n, float scale)
{
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)optvq_rng_normal(rng) * scale;
    return p;
}

float *nnt_zeros(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }

float *nnt_copy(const float *src, int64_t n)
{
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    memcpy(p, src, sizeof(float) * (size_t)n);
    return p;
}

static double loss_of(void *ctx, nnt_fwd f, const float *out, const float *R, int64_t out_n)
{
    f(ctx);
    double s = 0;
    for (int64_t i = 0; i < out_n; i++)
        s += (double)out[i] * R[i];
    return s;
}

void nnt_gradcheck(const char *op, void *ctx, nnt_fwd forward, nnt_bwd backward, float *out,
                   int64_t out_n, nnt_tensor *ts, int nts, double tol, uint64_t seed)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, seed);
    float *R = nnt_randn(&rng, out_n, 1.0f);
    forward(ctx);
    /* analytic gradient, accumulated on top of noise, twice */
    float **g0 = calloc((size_t)nts, sizeof *g0), **g1 = calloc((size_t)nts, sizeof *g1);
    for (int t = 0; t < nts; t++) {
        g0[t] = nnt_randn(&rng, ts[t].n, 1.0f);
        memcpy(ts[t].grad, g0[t], sizeof(float) * (size_t)ts[t].n);
    }
    backward(ctx, R);
    for (int t = 0; t < nts; t++) {
        g1[t] = nnt_zeros(ts[t].n);
        for (int64_t i = 0; i < ts[t].n; i++)
            g1[t][i] = ts[t].grad[i] - g0[t][i];
    }
    backward(ctx, R);
    for (int t = 0; t < nts; t++) {
        double worst = 0, norm = 0;
        for (int64_t i = 0; i < ts[t].n; i++) {
            double twice = (double)ts[t].grad[i] - g0[t][i];
            worst = fmax(worst, fabs(twice - 2.0 * g1[t][i]));
            norm = fmax(norm, fabs(g1[t][i]));
        }
        CHECK_MSG(worst <= 1e-4 * (norm + 1e-6), "%s d%s: backward does not accumulate (%.3g)", op,
                  ts[t].name, worst);
    }
    for (int t = 0; t < nts; t++) {
        const int64_t n = ts[t].n;
        float *x = ts[t].data, *x0 = nnt_copy(x, n);
        double xr = 0, gn = 0;
        for (int64_t i = 0; i < n; i++) {
            xr += (double)x0[i] * x0[i];
            gn += (double)g1[t][i] * g1[t][i];
        }
        xr = sqrt(xr / n);
        gn = sqrt(gn);
        const double h = 1e-2 * (xr > 0.1 ? xr : 0.1);
        double worst_dir = 0, worst_el = 0;
        for (int k = 0; k < 3; k++) { /* random directions */
            float *v = nnt_randn(&rng, n, 1.0f);
            double an = 0;
            for (int64_t i = 0; i < n; i++)
                an += (double)g1[t][i] * v[i];
            for (int64_t i = 0; i < n; i++)
                x[i] = (float)(x0[i] + h * v[i]);
            double lp = loss_of(ctx, forward, out, R, out_n);
            for (int64_t i = 0; i < n; i++)
                x[i] = (float)(x0[i] - h * v[i]);
            double lm = loss_of(ctx, forward, out, R, out_n);
            memcpy(x, x0, sizeof(float) * (size_t)n);
            /* the perturbation actually applied is float-rounded; use it exactly */
            double fd = (lp - lm) / (2 * h);
            double err = fabs(fd - an) / (gn > 1e-12 ? gn : 1e-12);
            worst_dir = fmax(worst_dir, err);
            free(v);
        }
        double rms = gn / sqrt((double)n);
        for (int k = 0; k < 4 && k < n; k++) { /* single elements */
            int64_t i = (int64_t)optvq_rng_below(&rng, (uint64_t)n);
            float xp = (float)(x0[i] + h), xm = (float)(x0[i] - h);
            x[i] = xp;
            double lp = loss_of(ctx, forward, out, R, out_n);
            x[i] = xm;
            double lm = loss_of(ctx, forward, out, R, out_n);
            x[i] = x0[i];
            double fd = (lp - lm) / ((double)xp - xm);
            double scale = fmax(fabs(g1[t][i]), rms);
            worst_el = fmax(worst_el, fabs(fd - g1[t][i]) / (scale > 1e-12 ? scale : 1e-12));
        }
        printf("    %-12s d%-18s n=%-7lld ||g||=%-10.4g dir_err=%.2e elem_err=%.2e\n", op,
               ts[t].name, (long long)n, gn, worst_dir, worst_el);
        CHECK_MSG(worst_dir <= tol && worst_el <= tol, "%s d%s: finite differences disagree", op,
                  ts[t].name);
        CHECK_MSG(gn > 0, "%s d%s: zero gradient (test would be vacuous)", op, ts[t].name);
        free(x0);
    }
    forward(ctx); /* leave the output consistent */
    for (int t = 0; t < nts; t++) {
        free(g0[t]);
        free(g1[t]);
    }
    free(g0);
    free(g1);
    free(R);
}
