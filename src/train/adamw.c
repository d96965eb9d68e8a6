#include "train/adamw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* The shortest decimal (at most 9 significant digits) that reads back as x,
 * as a double: the value a Python user would have typed. */
static double widen(float x)
{
    if (!isfinite(x) || x == 0.0f)
        return (double)x;
    char buf[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)x);
        if (strtof(buf, NULL) == x)
            return strtod(buf, NULL);
    }
    return (double)x;
}

void optvq_adamw_step(float *param, const float *grad, float *m, float *v, int64_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, int64_t step)
{
    optvq_adamw_step_d(param, grad, m, v, n, widen(lr), widen(beta1), widen(beta2), widen(eps),
                       widen(weight_decay), step);
}

void optvq_adamw_step_d(float *param, const float *grad, float *m, float *v, int64_t n, double dlr,
                        double db1, double db2, double deps, double dwd, int64_t step)
{
    if (n <= 0 || step < 1)
        return;

    const float decay = (float)(1.0 - dlr * dwd);
    const float w1 = (float)(1.0 - db1);
    const float b2 = (float)db2;
    const float w2 = (float)(1.0 - db2);
    const double bc1 = 1.0 - pow(db1, (double)step);
    const double bc2 = 1.0 - pow(db2, (double)step);
    const float neg_step_size = (float)(-(dlr / bc1));
    const float bc2_sqrt = (float)sqrt(bc2);
    const float feps = (float)deps;
    const int do_decay = dwd != 0.0;

    for (int64_t i = 0; i < n; i++) {
        const float g = grad[i];
        float p = param[i];
        if (do_decay)
            p *= decay;
        /* torch's vectorised CPU lerp: fma(weight, end - start, start), weight < 0.5 */
        const float mi = w1 < 0.5f ? fmaf(w1, g - m[i], m[i]) : fmaf(w1 - 1.0f, g - m[i], g);
        const float vi = v[i] * b2 + w2 * g * g;
        const float denom = sqrtf(vi) / bc2_sqrt + feps;
        m[i] = mi;
        v[i] = vi;
        param[i] = p + neg_step_size * mi / denom;
    }
}
