/* The CLI side of a training run (`optvq train`, `optvq demo`): the library
 * trains (optvq/train.h); this prints the progress, draws RUN_DIR/curves.png
 * each epoch and collects a summary for the demo's report. */
#ifndef OPTVQ_CLI_TRAIN_RUN_H
#define OPTVQ_CLI_TRAIN_RUN_H
#include <stdint.h>
#include <stdio.h>

#include "optvq/train.h"

typedef struct train_options {
    optvq_train_options run; /* what the library trains */
    FILE *progress;          /* where progress goes (stderr); NULL = quiet */
    const char *label;       /* prefix of messages and progress lines (NULL: "train") */
} train_options;

#define TRAIN_MAX_EPOCHS 1024

/* What a run measured, per epoch (for the demo's report). */
typedef struct train_summary {
    int64_t epochs, steps, n_e, train_images, val_images;
    double seconds;
    double epoch_seconds[TRAIN_MAX_EPOCHS];
    double usage[TRAIN_MAX_EPOCHS];      /* fraction of codes used over the epoch's training batches */
    double perplexity[TRAIN_MAX_EPOCHS];
    double psnr[TRAIN_MAX_EPOCHS], ssim[TRAIN_MAX_EPOCHS]; /* held-out, NaN without data */
    double loss[TRAIN_MAX_EPOCHS];       /* mean training loss */
    double val_usage, val_perplexity;    /* held-out codebook usage after the last epoch */
    double *step_usage;                  /* fraction of codes used by each step's batch (malloc'd) */
    int64_t step_usage_count;
} train_summary;

/* Returns the exit status: 0, 1 (a runtime failure), 2 (the folder holds a
 * run and neither resume nor force was given; bad options). Messages are
 * printed "optvq LABEL: ...". sum (may be NULL) receives the summary; free
 * it with train_summary_free. */
int train_run(const train_options *o, train_summary *sum);
void train_summary_free(train_summary *sum);

#endif
