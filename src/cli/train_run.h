/* The training loop behind `optvq train` and `optvq demo`. */
#ifndef OPTVQ_CLI_TRAIN_RUN_H
#define OPTVQ_CLI_TRAIN_RUN_H
#include <stdint.h>
#include <stdio.h>

typedef struct train_options {
    const char *config, *out, *data, *val_data;
    const char *lpips;   /* LPIPS weight files, comma-separated (loss_p_weight > 0) */
    int64_t epochs, batch_size, seed, limit, val_limit, stop_after; /* -1 / 0: the config's or none */
    double lr;                                                     /* -1: the config's */
    int threads, resume;
    FILE *progress;      /* where progress goes (stderr); NULL = quiet */
    const char *label;   /* prefix of progress lines (NULL: "train") */
} train_options;

#define TRAIN_MAX_EPOCHS 1024
#define TRAIN_MAX_STEPS 8192

/* What a finished run measured, per epoch (for reports). */
typedef struct train_summary {
    int64_t epochs, steps, n_e, train_images, val_images;
    double seconds;
    double epoch_seconds[TRAIN_MAX_EPOCHS];
    double usage[TRAIN_MAX_EPOCHS];      /* fraction of codes used over the epoch's training batches */
    double perplexity[TRAIN_MAX_EPOCHS];
    double psnr[TRAIN_MAX_EPOCHS], ssim[TRAIN_MAX_EPOCHS]; /* held-out, NaN without data */
    double loss[TRAIN_MAX_EPOCHS];       /* mean training loss */
    double val_usage, val_perplexity;    /* held-out codebook usage after the last epoch */
    double step_usage[TRAIN_MAX_STEPS];  /* fraction of codes used by each step's batch */
} train_summary;

/* Returns the process exit status (0, 1 runtime failure); errors are printed. */
int train_run(const train_options *o, train_summary *summary);

#endif
