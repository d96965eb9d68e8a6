/*
 * optvq/train.h — training a tokenizer through the library.
 *
 * A training run is a folder (RUN_DIR) that receives checkpoint.safetensors,
 * model.safetensors + config.json, metrics.jsonl and recon_epoch_NNN.png.
 * The library owns the whole run: the data, the codebook initialisation, the
 * reference's recipe (AdamW, OneCycleLR, clipping, AELoss or AELossWithDisc),
 * held-out evaluation, checkpoints and resume. It prints nothing: progress
 * comes to a callback, failures as a status with optvq_last_error().
 *
 *     optvq_train_options o;
 *     optvq_train_options_default(&o);
 *     o.config = "configs/fashion-mnist/optvq.yaml";
 *     o.out = "runs/optvq";
 *     optvq_train *t;
 *     if (optvq_train_create(&o, &t) == OPTVQ_OK)
 *         optvq_train_run(t, my_progress, NULL);
 *     optvq_train_free(t);
 */
#ifndef OPTVQ_TRAIN_H
#define OPTVQ_TRAIN_H

#include "optvq/optvq.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && defined(OPTVQ_BUILDING_LIBRARY)
#pragma GCC visibility push(default)
#endif

/* A data-parallel group of processes (the optvq CLI fills it from MPI under
 * mpirun; any other transport works the same way). Every process runs the
 * same options with its own rank; the library calls the hooks, on every rank
 * at the same points, to reduce across the group. Zeroed (rank 0, n_ranks 0
 * or 1, NULL hooks): one process. A hook returns 0 on success; a failure
 * makes the call that used it fail with OPTVQ_ERR_STATE. */
typedef struct optvq_comm {
    int rank;                     /* 0 .. n_ranks-1                            */
    int n_ranks;                  /* processes in the group; 0 or 1: alone     */
    optvq_allreduce_fn allreduce; /* doubles in place: statistics, Sinkhorn    */
    /* floats in place, summed over the ranks: gradients. NULL: through
       allreduce in double pieces (slower, same result). */
    int (*allreduce_floats)(float *values, size_t count, void *ctx);
    void *ctx;                    /* passed to both hooks                      */
} optvq_comm;

/* The most epochs a run may have. */
#define OPTVQ_TRAIN_MAX_EPOCHS 1000000

typedef struct optvq_train_options {
    const char *config;    /* required: a reference-style YAML (or JSON) config      */
    const char *out;       /* required: the run folder (created with its parents)    */
    const char *data;      /* training data; NULL: the config's                      */
    const char *val_data;  /* held-out data; NULL: the test split of an IDX set      */
    const char *lpips;     /* LPIPS weight files, comma-separated (loss_p_weight > 0) */
    int64_t epochs;        /* -1: the config's train.epochs                          */
    int64_t batch_size;    /* -1: the config's data.batch_size                       */
    int64_t seed;          /* -1: the config's train.seed                            */
    int64_t limit;         /* train on the first N images; 0: all                    */
    int64_t val_limit;     /* held-out images evaluated each epoch (1000)            */
    int64_t stop_after;    /* stop after N steps in this call, as if killed; 0: none */
    double lr;             /* learning rate per sample; < 0: the config's            */
    int threads;           /* 0: all cores                                           */
    int resume;            /* continue RUN_DIR from its checkpoint                   */
    int force;             /* start over in a RUN_DIR that holds a run               */
    /* A new run only (a resumed run keeps its own weights): */
    const char *init_from; /* start from these weights (a model folder, .pth/.ckpt or
                              .safetensors) instead of a random init: every tensor
                              but quantize.embedding.weight, by name; names the model
                              lacks are refused, missing ones keep their init (the
                              reference's train.enterpoint). NULL: the config's       */
    const char *codebook;  /* the codebook (n_e, code_dim) from a .npy, .pth or
                              .safetensors file instead of train.use_initiate (the
                              reference's train.code_path). NULL: the config's       */
    /* Data parallel, as the reference's DDP: batch_size is per rank, the
       learning rate scales with the global batch (batch x n_ranks), rank k
       takes the k-th slice of every global batch of one global shuffle,
       gradients are averaged, Sinkhorn and BatchNorm see the global batch.
       Rank 0 alone writes the run folder; held-out evaluation is
       sharded; every rank calls the callback with the same numbers. Zeroed by optvq_train_options_default: one process. */
    optvq_comm comm;
} optvq_train_options;

/* Defaults: everything from the config, val_limit 1000, no resume. Relative
 * paths in a config (train.enterpoint, train.code_path) are taken as they are,
 * from the current folder. */
void optvq_train_options_default(optvq_train_options *o);

typedef enum optvq_train_event {
    OPTVQ_TRAIN_STEP = 0,  /* an optimizer step was taken                              */
    OPTVQ_TRAIN_EPOCH = 1  /* an epoch ended; its checkpoint is written right after   */
} optvq_train_event;

/* What a callback receives. Values a run does not have are NaN. */
typedef struct optvq_train_report {
    optvq_train_event event;
    int64_t epoch;           /* 1-based: the epoch of the step, or that ended          */
    int64_t epochs;          /* epochs of the whole run                               */
    int64_t step;            /* optimizer steps taken so far                          */
    int64_t total_steps;
    int64_t step_in_epoch;   /* 1-based                                               */
    int64_t steps_per_epoch; /* floor(images / batch): the partial batch is dropped   */
    int64_t first_step;      /* the step this call started from (for an ETA)          */
    int64_t n_e;             /* codebook size                                         */
    int64_t train_images;    /* images the run trains on                              */
    int64_t val_images;      /* held-out images evaluated each epoch (0: none)        */
    double seconds;          /* STEP: since this call started; EPOCH: the epoch's time */
    /* STEP: this step's losses. EPOCH: loss is the epoch's mean. */
    double loss, l1, l2, q, p, g, d, grad_norm, lr;
    int64_t codes_used;      /* STEP: by the batch; EPOCH: over the epoch's batches    */
    double perplexity;
    double val_psnr, val_ssim, val_usage, val_perplexity; /* EPOCH, with held-out data */
    const char *run_dir;     /* where the run's files are now (a new run stays in
                                RUN_DIR/.pending until its first checkpoint)          */
    int ranks;               /* processes training together (1: alone)               */
    int rank;                /* this one's (0 writes the run's files)                */
    double comm_seconds;     /* STEP: the step's time in reductions over the ranks    */
    double comm_bytes;       /* STEP: bytes this process gave those reductions        */
} optvq_train_report;

/* Return 0 to go on, nonzero to stop after this step (as --stop-after does:
 * no checkpoint beyond the last one; --resume continues). */
typedef int (*optvq_train_callback)(const optvq_train_report *report, void *user);

typedef struct optvq_train optvq_train;

/* Checks the folder, loads the config, data and model, and either starts a
 * new run (the codebook initialised from the data) or loads the checkpoint.
 * A folder that holds a run without resume or force: OPTVQ_ERR_STATE.
 * Resume without a checkpoint: OPTVQ_ERR_IO. */
optvq_status optvq_train_create(const optvq_train_options *o, optvq_train **out);
/* Nonzero when a resumed run had already trained all its epochs. */
int optvq_train_is_finished(const optvq_train *t);
/* The run's folder of the moment (see optvq_train_report.run_dir). */
const char *optvq_train_run_dir(const optvq_train *t);
/* Trains to the end (or until the callback or stop_after stops it),
 * writing a checkpoint after every epoch. callback may be NULL. */
optvq_status optvq_train_run(optvq_train *t, optvq_train_callback callback, void *user);
/* The model being trained (owned by t): encode/decode/save with optvq.h. */
optvq_model *optvq_train_model(optvq_train *t);
void optvq_train_free(optvq_train *t);

#if defined(__GNUC__) && defined(OPTVQ_BUILDING_LIBRARY)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif /* OPTVQ_TRAIN_H */
