/* The reference's optimizer: AdamW (betas 0.9/0.999, eps 1e-7) with weight
 * decay on Conv2d/ConvTranspose2d/Linear weights only, the quantizer's
 * parameters at lr * mul_learning_rate, OneCycleLR (beta1 cycling), and
 * gradient-norm clipping at 1.0 before each step. */
#ifndef OPTVQ_TRAIN_OPTIMIZER_H
#define OPTVQ_TRAIN_OPTIMIZER_H
#include "optvq/optvq.h"
#include "nn/nn.h"
#include "core/comm.h"
#include "optvq/train.h"
#include "train/schedule.h"

typedef struct train_param {
    const char *name;
    float *data, *grad;
    int64_t n;
    int decay;      /* weight decay applies          */
    int quantizer;  /* lr scaled by mul_learning_rate */
    size_t offset;  /* into the moment buffers        */
} train_param;

typedef struct optimizer {
    train_param *params;
    int count;
    float *m, *v;   /* first and second moments, one allocation */
    size_t total;   /* floats in m (and in v)                   */
    int64_t step;   /* optimizer steps taken                    */
    double weight_decay, eps, beta2, mul_lr, max_norm;
    onecycle schedule;
} optimizer;

/* Collects the model's registry (encoder, decoder, connectors, quantizer),
 * weight decay by each parameter's declared role. */
optvq_status optimizer_init(optimizer *o, optvq_model *m, double max_lr, double mul_lr, double weight_decay,
                            int64_t total_steps);
/* Collects every parameter of a registry (the discriminator): weight decay
 * by declared role (conv/linear weights), none on biases and norms. */
optvq_status optimizer_init_list(optimizer *o, nn_params *ps, double max_lr, double weight_decay,
                                 int64_t total_steps);
void optimizer_free(optimizer *o);
void optimizer_zero_grad(optimizer *o);
/* Data parallel: every gradient of the optimizers' parameters replaced by its
 * mean over the ranks of comm (summed in buckets of 4M floats, then scaled);
 * one process: nothing. tally (may be NULL) += its time and bytes. */
optvq_status optimizer_average_grads(optimizer *const *opts, int n, const optvq_comm *comm, comm_tally *tally);
/* The same with buckets of bucket_floats (tests). */
optvq_status optimizer_average_grads_in(optimizer *const *opts, int n, const optvq_comm *comm, comm_tally *tally,
                                        size_t bucket_floats);
/* clip_grad_norm_(max_norm) then one AdamW step at the schedule's lr and
 * beta1; returns the gradient norm before clipping. */
double optimizer_step(optimizer *o);
/* clip_grad_norm_ over the parameters of several optimizers together (the
 * reference clips model.parameters(), which hold the discriminator too, in
 * that order); returns the norm before clipping. */
double optimizer_clip(optimizer *const *opts, int n, double max_norm);
/* One AdamW step at the schedule's lr and beta1, without clipping. */
void optimizer_apply(optimizer *o);

#endif
