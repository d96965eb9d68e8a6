/* PatchGAN discriminator of the reference (taming's NLayerDiscriminator with
 * BatchNorm2d, use_actnorm=False) and its GAN losses (aeloss_disc.py).
 *
 * Layers (state-dict index in brackets; k = 4, pad 1):
 *   [0] Conv2d(in, ndf, stride 2, bias)  [1] LeakyReLU(0.2)
 *   for n = 1 .. n_layers-1:  Conv2d(ndf*min(2^(n-1),8), ndf*min(2^n,8), stride 2, no bias),
 *                             BatchNorm2d, LeakyReLU(0.2)
 *   Conv2d(.., ndf*min(2^n_layers,8), stride 1, no bias), BatchNorm2d, LeakyReLU(0.2)
 *   Conv2d(.., 1, stride 1, bias)                       -> logits (B, 1, h', w')
 * Parameter names: loss.discriminator.main.<i>.weight / .bias (as in the reference's
 * checkpoint); buffers: loss.discriminator.main.<i>.running_mean / running_var (float32,
 * (C)) and .num_batches_tracked (int64, a 0-dim tensor in torch, numel 1 here).
 *
 * Initialisation (weights_init): conv weights N(0, 0.02), BatchNorm weight N(1, 0.02) and
 * bias 0; conv biases PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)); running_mean
 * 0, running_var 1. Drawn from the repo's RNG (not torch's).
 *
 * Always in training mode: BatchNorm normalises with the batch statistics (biased
 * variance, eps 1e-5) and every disc_forward updates the running statistics (momentum
 * 0.1, unbiased variance) and num_batches_tracked, as torch does in train().
 *
 * One forward is kept for backward. The reference's discriminator step backpropagates
 * hinge(D(real), D(fake)) through two forwards; the loss is a sum of a real term and a
 * fake term, and the parameters do not change in between, so
 *   disc_forward(real); disc_d_loss_term(real half); disc_backward;
 *   disc_forward(fake); disc_d_loss_term(fake half); disc_backward;
 * accumulates exactly the reference's gradients and leaves the same running statistics
 * (tests/test_disc.c replays it against PyTorch).
 */
#ifndef OPTVQ_MODEL_DISCRIMINATOR_H
#define OPTVQ_MODEL_DISCRIMINATOR_H
#include <stdint.h>
#include "nn/nn.h"
#include "optvq/optvq.h"

typedef struct disc_config {
    int64_t in_channels; /* 3  */
    int64_t ndf;         /* 64 */
    int64_t n_layers;    /* 3  */
} disc_config;

#define DISC_LEAKY_SLOPE 0.2f
#define DISC_BN_EPS 1e-5f
#define DISC_BN_MOMENTUM 0.1f
#define DISC_PREFIX "loss.discriminator."

typedef struct discriminator discriminator;

/* Validates the config (in_channels, ndf >= 1, 1 <= n_layers <= 16), registers and
 * initialises the parameters from `seed`. */
optvq_status disc_create(const disc_config *c, uint64_t seed, discriminator **out);
void disc_free(discriminator *d);
/* Data parallel: BatchNorm becomes SyncBatchNorm over the ranks of comm (the
 * reference converts it under DDP); comm must outlive d. NULL: BatchNorm. */
void disc_set_comm(discriminator *d, const struct optvq_comm *comm);
const disc_config *disc_get_config(const discriminator *d);

/* Trainable parameters (conv weights/biases, BatchNorm weight/bias) with gradients. */
nn_params *disc_params(discriminator *d);

/* BatchNorm buffers, for checkpoints: per BatchNorm layer running_mean (F32, c),
 * running_var (F32, c), num_batches_tracked (I64, numel 1), in that order. */
int disc_buffer_count(const discriminator *d);
const char *disc_buffer_name(const discriminator *d, int i); /* NULL when out of range */
/* The buffer's storage (float * for OPTVQ_F32, int64_t * for OPTVQ_I64); NULL when out
 * of range. dtype and numel may be NULL. */
void *disc_buffer(discriminator *d, int i, optvq_dtype *dtype, int64_t *numel);

/* Logits size for an input of this size (without running anything): an error naming
 * the layer when the image is too small to give at least one logit. */
optvq_status disc_output_size(const discriminator *d, int64_t height, int64_t width,
                              int64_t *h_out, int64_t *w_out);

/* Forward in training mode. x (batch, in_channels, height, width) is copied (the
 * caller may reuse it). Saves the activations for disc_backward. *logits
 * (batch, 1, h', w'), *logit_count = batch * h' * w'; valid until the next
 * disc_forward or disc_free. Buffers are planned and allocated on the first call and
 * reused while the input fits; a larger shape reallocates. The batch statistics need
 * batch * h * w >= 2 at every BatchNorm layer. */
optvq_status disc_forward(discriminator *d, const float *x, int64_t batch, int64_t height,
                          int64_t width, const float **logits, int64_t *logit_count);

/* After disc_forward: ACCUMULATES the parameter gradients of sum(d_logits * logits);
 * d_logits (batch, 1, h', w'). dx (batch, in_channels, height, width) is OVERWRITTEN
 * with the gradient wrt the input when not NULL (skipped work when NULL). May be called
 * again for the same forward (gradients add). */
optvq_status disc_backward(discriminator *d, const float *d_logits, float *dx);

/* ---- GAN losses (mean reductions, double accumulation) -------------------------
 * grad arguments (count floats) are OVERWRITTEN with scale * d loss / d logits; NULL
 * skips them. */
typedef enum disc_loss_kind { DISC_LOSS_HINGE = 0, DISC_LOSS_VANILLA = 1 } disc_loss_kind;

/* hinge_d_loss = 0.5 (mean(relu(1 - real)) + mean(relu(1 + fake)))
 * vanilla_d_loss = 0.5 (mean(softplus(-real)) + mean(softplus(fake)))
 * (softplus as torch: x for x > 20, else log1p(exp(x))). */
double disc_d_loss(disc_loss_kind kind, const float *real, int64_t n_real, const float *fake,
                   int64_t n_fake, float scale, float *grad_real, float *grad_fake);
/* One half of the above: is_real selects 0.5 mean(relu(1 - l)) / 0.5 mean(softplus(-l))
 * or 0.5 mean(relu(1 + l)) / 0.5 mean(softplus(l)); the two halves sum to disc_d_loss. */
double disc_d_loss_term(disc_loss_kind kind, int is_real, const float *logits, int64_t count,
                        float scale, float *grad);
/* Generator loss g = -mean(fake); grad = -scale / count. */
double disc_g_loss(const float *fake, int64_t count, float scale, float *grad);

#endif
