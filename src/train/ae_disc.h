/* One training step with the reference's whole loss (losses/aeloss.py,
 * losses/aeloss_disc.py, trainer/pipeline.py: pipeline_ae / pipeline_ae_disc):
 *
 * autoencoder step
 *   rec = model(x); nll = w1 L1 + w2 L2 + wp LPIPS(x, rec)
 *   with the discriminator (AELossWithDisc):
 *     g = -mean(D(rec)); gw = ||d nll/d W_last|| / (||d g/d W_last|| + 1e-4),
 *     clamped to [0, 1e4], times loss_g_weight (0 if NaN); factor = 0 before
 *     disc_start steps, else 1
 *   loss = nll + wq q + factor gw g; backward; clip_grad_norm_(1.0) over the
 *   model's parameters INCLUDING the discriminator's (they received the
 *   generator term's gradient, as in the reference); AdamW on the autoencoder;
 *   its gradients zeroed
 * discriminator step (AELossWithDisc only)
 *   rec' = model(x) again with the updated weights (no gradient into it);
 *   d = wd x hinge/vanilla(D(x), D(rec')); backward ADDING to the
 *   discriminator's gradients kept from the generator step; clip; AdamW on
 *   the discriminator; its gradients zeroed.
 * LPIPS runs in eval mode (deterministic); the reference's model.train()
 * switches LPIPS's dropout on, which no deterministic program can repeat. */
#ifndef OPTVQ_TRAIN_AE_DISC_H
#define OPTVQ_TRAIN_AE_DISC_H
#include "eval/lpips.h"
#include "model/discriminator.h"
#include "model/model.h"
#include "model/trainer.h"
#include "core/comm.h"
#include "optvq/train.h"
#include "train/optimizer.h"

typedef struct ae_disc_log {
    double total, l1, l2, p, q;         /* autoencoder step: total loss and its terms   */
    double g, g_weight, factor;         /* generator loss, adaptive weight, disc factor */
    double d, logits_real, logits_fake; /* discriminator step (NaN without one)         */
    double grad_norm, d_grad_norm;      /* before clipping                              */
} ae_disc_log;

typedef struct ae_disc {
    model_trainer *trainer; /* not owned */
    lpips_net *lpips;       /* not owned; NULL when loss_p is 0 */
    discriminator *disc;    /* not owned; NULL without AELossWithDisc */
    optimizer *ae, *dopt;   /* not owned; dopt NULL without a discriminator */
    const train_settings *t;
    /* scratch, one allocation: d_rec, d_gan (image-sized), two last-layer grads, logit grads, per-image LPIPS */
    float *block, *d_rec, *d_gan, *dw_nll, *dw_g, *d_logits;
    double *per_image;
    int64_t channels; /* of the images */
    int64_t image_floats, dw_n, logit_floats, batch;
    /* data parallel (set after ae_disc_init; NULL: one process): gradients and
     * the adaptive weight's last-layer gradients are averaged over the ranks */
    const optvq_comm *comm;
    comm_tally comm_tally; /* time and bytes of those reductions, accumulated */
} ae_disc;

optvq_status ae_disc_init(ae_disc *s, model_trainer *trainer, lpips_net *lpips, discriminator *disc, optimizer *ae,
                          optimizer *dopt, const train_settings *t, int64_t channels);
void ae_disc_free(ae_disc *s);
/* x (B, C, H, W) in [-1, 1]; global_step = optimizer steps taken before this
 * one (disc_start counts them); tokens (B, heads, h, w) of the autoencoder
 * forward when not NULL. */
optvq_status ae_disc_step(ae_disc *s, const float *x, int64_t batch, int64_t height, int64_t width,
                          int64_t global_step, ae_disc_log *log, int64_t *tokens);

#endif
