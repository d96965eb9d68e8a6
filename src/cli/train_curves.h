/* The curves of a training run (per step and per epoch), kept in growable
 * arrays so that a run of any length is charted fully, and drawn as one PNG
 * (RUN_DIR/curves.png). A resumed run refills them from metrics.jsonl. */
#ifndef OPTVQ_CLI_TRAIN_CURVES_H
#define OPTVQ_CLI_TRAIN_CURVES_H
#include <stdint.h>
#include "optvq/optvq.h"

/* Per-step values (NaN where a run has no such term). */
enum { TC_STEP, TC_LOSS, TC_L1, TC_L2, TC_Q, TC_P, TC_G, TC_D, TC_GRAD, TC_CODES_USED, TC_PERPLEXITY, TC_STEP_N };
/* Per-epoch values: usage as a fraction of the codes; held-out ones NaN without held-out data. */
enum { TC_EPOCH, TC_END_STEP, TC_USAGE, TC_TRAIN_PERPLEXITY, TC_PSNR, TC_SSIM, TC_VAL_USAGE, TC_VAL_PERPLEXITY,
       TC_EPOCH_N };

typedef struct train_curves {
    int64_t n_e;                 /* codebook size, for the usage in percent */
    int64_t steps, step_cap;     /* rows of step_values */
    double *step_values;         /* steps x TC_STEP_N */
    int64_t epochs, epoch_cap;
    double *epoch_values;        /* epochs x TC_EPOCH_N */
} train_curves;

/* Each returns 0, or -1 when out of memory. */
int train_curves_add_step(train_curves *c, const double values[TC_STEP_N]);
int train_curves_add_epoch(train_curves *c, const double values[TC_EPOCH_N]);
/* One line of metrics.jsonl (a step or an epoch record; others are ignored). */
int train_curves_add_json(train_curves *c, const char *line);

/* Loss terms, codebook usage, perplexity (per step and per epoch), held-out
 * PSNR and SSIM per epoch, and the gradient norm (or, with a discriminator,
 * its terms), one chart each, written atomically to path. */
optvq_status train_curves_draw(const train_curves *c, const char *path);

void train_curves_free(train_curves *c);

#endif
