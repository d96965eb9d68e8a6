/* torch.optim.lr_scheduler.OneCycleLR (PyTorch 1.13, two phases, cosine
 * annealing, cycle_momentum on: for Adam the momentum is beta1). */
#ifndef OPTVQ_TRAIN_SCHEDULE_H
#define OPTVQ_TRAIN_SCHEDULE_H
#include <stdint.h>

typedef struct onecycle {
    double max_lr;
    int64_t total_steps;
    double pct_start;        /* reference: 0.01 (PyTorch's default is 0.3) */
    double div_factor;       /* 25   */
    double final_div_factor; /* 1e4  */
    double base_momentum;    /* 0.85 */
    double max_momentum;     /* 0.95 */
} onecycle;

/* The reference's schedule: pct_start 0.01, the rest PyTorch's defaults. */
void onecycle_init(onecycle *s, double max_lr, int64_t total_steps);
/* lr and beta1 for optimizer step `step` (0 = the first). A phase of zero
 * length (PyTorch divides by zero there) gives its start values. */
void onecycle_at(const onecycle *s, int64_t step, double *lr, double *beta1);

#endif
