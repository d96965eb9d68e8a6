#include "train/schedule.h"

#include <math.h>

void onecycle_init(onecycle *s, double max_lr, int64_t total_steps)
{
    s->max_lr = max_lr;
    s->total_steps = total_steps;
    s->pct_start = 0.01;
    s->div_factor = 25.0;
    s->final_div_factor = 1e4;
    s->base_momentum = 0.85;
    s->max_momentum = 0.95;
}

static double cos_anneal(double start, double end, double pct)
{
    double cos_out = cos(M_PI * pct) + 1.0;
    return end + (start - end) / 2.0 * cos_out;
}

void onecycle_at(const onecycle *s, int64_t step, double *lr, double *beta1)
{
    const double initial = s->max_lr / s->div_factor, min_lr = initial / s->final_div_factor;
    /* phase ends as PyTorch computes them: float(pct_start * total) - 1 */
    const double end1_exact = s->pct_start * (double)s->total_steps - 1.0;
    const double end2 = (double)s->total_steps - 1.0;
    const double t = (double)step;
    double pct;
    if (t <= end1_exact) {
        double span = end1_exact;
        pct = span > 0 ? t / span : 0.0;
        *lr = cos_anneal(initial, s->max_lr, pct);
        *beta1 = cos_anneal(s->max_momentum, s->base_momentum, pct);
    } else {
        double span = end2 - end1_exact;
        pct = span > 0 ? (t - end1_exact) / span : 0.0;
        *lr = cos_anneal(s->max_lr, min_lr, pct);
        *beta1 = cos_anneal(s->base_momentum, s->max_momentum, pct);
    }
}
