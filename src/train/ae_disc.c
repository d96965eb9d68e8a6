#include "train/ae_disc.h"

#include "core/bigalloc.h"
#include "core/comm.h"
#include "core/error.h"
#include "core/parallel.h"
#include "nn/nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

optvq_status ae_disc_init(ae_disc *s, model_trainer *trainer, lpips_net *lpips, discriminator *disc, optimizer *ae,
                          optimizer *dopt, const train_settings *t, int64_t channels)
{
    memset(s, 0, sizeof *s);
    s->channels = channels;
    if ((disc == NULL) != (dopt == NULL))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "ae_disc: a discriminator needs its optimizer");
    if (t->loss_p != 0.0 && !lpips)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "ae_disc: loss_p_weight %g needs LPIPS weights", t->loss_p);
    s->trainer = trainer;
    s->lpips = t->loss_p != 0.0 ? lpips : NULL;
    s->disc = disc;
    s->ae = ae;
    s->dopt = dopt;
    s->t = t;
    s->dw_n = model_trainer_last_layer_numel(trainer);
    return OPTVQ_OK;
}

void ae_disc_free(ae_disc *s)
{
    free(s->block);
    free(s->per_image);
    memset(s, 0, sizeof *s);
}

/* Scratch for this batch and image size (reused while they fit). */
static optvq_status reserve(ae_disc *s, int64_t batch, int64_t image_floats, int64_t logit_floats)
{
    if (image_floats <= s->image_floats && logit_floats <= s->logit_floats && batch <= s->batch)
        return OPTVQ_OK;
    free(s->block);
    free(s->per_image);
    s->block = NULL;
    s->per_image = NULL;
    s->image_floats = s->logit_floats = s->batch = 0;
    size_t total = 2 * (size_t)image_floats + 2 * (size_t)s->dw_n + (size_t)logit_floats;
    s->block = optvq_big_alloc(total * sizeof(float));
    s->per_image = malloc((size_t)batch * sizeof(double));
    if (!s->block || !s->per_image)
        return optvq_fail(OPTVQ_ERR_NOMEM, "training step: out of memory for %zu MiB of gradients", total >> 18);
    s->d_rec = s->block;
    s->d_gan = s->d_rec + image_floats;
    s->dw_nll = s->d_gan + image_floats;
    s->dw_g = s->dw_nll + s->dw_n;
    s->d_logits = s->dw_g + s->dw_n;
    s->image_floats = image_floats;
    s->logit_floats = logit_floats;
    s->batch = batch;
    return OPTVQ_OK;
}

static double norm2(const float *v, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)v[i] * v[i];
    return sqrt(s);
}

static double mean_of(const float *v, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += v[i];
    return n ? s / (double)n : 0.0;
}

/* The autoencoder step's loss gradient on the reconstruction, into s->d_rec. */
static optvq_status ae_losses(ae_disc *s, const float *x, const float *rec, int64_t batch, int64_t height,
                              int64_t width, int64_t count, ae_disc_log *log)
{
    const train_settings *t = s->t;
    memset(s->d_rec, 0, (size_t)count * sizeof(float));
    log->l1 = log->l2 = log->p = 0;
    if (t->loss_l1 > 0) { /* the reference skips a term whose weight is 0 */
        log->l1 = nn_l1_loss_forward(rec, x, count);
        nn_l1_loss_backward(s->d_rec, NULL, (float)t->loss_l1, rec, x, count);
    }
    if (t->loss_l2 > 0) {
        log->l2 = nn_mse_loss_forward(rec, x, count);
        nn_mse_loss_backward(s->d_rec, NULL, (float)t->loss_l2, rec, x, count);
    }
    if (s->lpips && t->loss_p > 0) {
        OPTVQ_TRY(lpips_forward(s->lpips, x, rec, batch, height, width, s->per_image, 1));
        double sum = 0;
        for (int64_t i = 0; i < batch; i++)
            sum += s->per_image[i];
        log->p = sum / (double)batch;
        OPTVQ_TRY(lpips_backward(s->lpips, (float)(t->loss_p / (double)batch), s->d_rec));
    }
    return OPTVQ_OK;
}

/* The generator term: g = -mean(D(rec)), its adaptive weight, and
 * d_rec += factor gw d g / d rec; the discriminator's gradients receive
 * factor gw d g / d theta_D (they are zero before: the previous step zeroed them). */
static optvq_status generator_term(ae_disc *s, const float *rec, int64_t batch, int64_t height, int64_t width,
                                   int64_t count, int64_t global_step, ae_disc_log *log)
{
    const train_settings *t = s->t;
    const float *logits;
    int64_t nl;
    OPTVQ_TRY(disc_forward(s->disc, rec, batch, height, width, &logits, &nl));
    log->g = disc_g_loss(logits, nl, 1.0f, s->d_logits);
    OPTVQ_TRY(disc_backward(s->disc, s->d_logits, s->d_gan));
    OPTVQ_TRY(model_trainer_last_layer_grad(s->trainer, s->d_rec, s->dw_nll));
    OPTVQ_TRY(model_trainer_last_layer_grad(s->trainer, s->d_gan, s->dw_g));
    if (comm_size(s->comm) > 1) {
        /* the weight of the global batch's losses (the reference's DDP takes each rank's own): N ranks train
         * as one process would on their concatenated batch. dw_nll and dw_g are adjacent: one call. */
        double t0 = optvq_now();
        OPTVQ_TRY(comm_sum_floats(s->comm, s->dw_nll, (size_t)(2 * s->dw_n), "adaptive GAN weight"));
        const float inv = 1.0f / (float)comm_size(s->comm);
        for (int64_t i = 0; i < 2 * s->dw_n; i++)
            s->dw_nll[i] *= inv;
        s->comm_tally.seconds += optvq_now() - t0;
        s->comm_tally.bytes += (double)(2 * s->dw_n) * sizeof(float);
    }
    /* torch.norm in float32 */
    double gw = (double)(float)norm2(s->dw_nll, s->dw_n) / ((double)(float)norm2(s->dw_g, s->dw_n) + 1e-4);
    gw = (double)(float)gw;
    if (gw < 0)
        gw = 0;
    if (gw > 1e4)
        gw = 1e4;
    gw = (double)(float)(gw * t->loss_g);
    if (isnan(gw))
        gw = 0;
    log->g_weight = gw;
    log->factor = global_step < t->disc_start ? 0.0 : 1.0;
    const float sc = (float)(gw * log->factor);
    /* the discriminator's gradients so far are d g / d theta_D: scale them */
    nn_params *dp = disc_params(s->disc);
    for (int i = 0; i < dp->count; i++) {
        float *g = dp->items[i].grad;
        for (int64_t j = 0; j < dp->items[i].numel; j++)
            g[j] *= sc;
    }
    for (int64_t i = 0; i < count; i++)
        s->d_rec[i] += sc * s->d_gan[i];
    return OPTVQ_OK;
}

static optvq_status disc_step(ae_disc *s, const float *x, int64_t batch, int64_t height, int64_t width,
                              ae_disc_log *log)
{
    const train_settings *t = s->t;
    const disc_loss_kind kind = t->disc_vanilla ? DISC_LOSS_VANILLA : DISC_LOSS_HINGE;
    const float *rec, *logits;
    float q;
    int64_t nl;
    /* the model runs again with its new weights; nothing flows back into it */
    OPTVQ_TRY(model_trainer_forward(s->trainer, x, batch, height, width, &rec, &q, NULL));
    OPTVQ_TRY(disc_forward(s->disc, x, batch, height, width, &logits, &nl));
    log->logits_real = mean_of(logits, nl);
    double d = disc_d_loss_term(kind, 1, logits, nl, (float)t->loss_d, s->d_logits);
    OPTVQ_TRY(disc_backward(s->disc, s->d_logits, NULL));
    OPTVQ_TRY(disc_forward(s->disc, rec, batch, height, width, &logits, &nl));
    log->logits_fake = mean_of(logits, nl);
    d += disc_d_loss_term(kind, 0, logits, nl, (float)t->loss_d, s->d_logits);
    OPTVQ_TRY(disc_backward(s->disc, s->d_logits, NULL));
    log->d = d;
    OPTVQ_TRY(optimizer_average_grads(&s->dopt, 1, s->comm, &s->comm_tally));
    log->d_grad_norm = optimizer_clip(&s->dopt, 1, 1.0);
    optimizer_apply(s->dopt);
    optimizer_zero_grad(s->dopt);
    return OPTVQ_OK;
}

optvq_status ae_disc_step(ae_disc *s, const float *x, int64_t batch, int64_t height, int64_t width,
                          int64_t global_step, ae_disc_log *log, int64_t *tokens)
{
    const train_settings *t = s->t;
    memset(log, 0, sizeof *log);
    log->d = log->logits_real = log->logits_fake = log->d_grad_norm = NAN;
    const int64_t count = batch * s->channels * height * width;
    int64_t lh = 0, lw = 0;
    if (s->disc)
        OPTVQ_TRY(disc_output_size(s->disc, height, width, &lh, &lw));
    OPTVQ_TRY(reserve(s, batch, count, batch * lh * lw));
    const float *rec;
    float q;
    optimizer_zero_grad(s->ae);
    OPTVQ_TRY(model_trainer_forward(s->trainer, x, batch, height, width, &rec, &q, tokens));
    OPTVQ_TRY(ae_losses(s, x, rec, batch, height, width, count, log));
    log->q = q;
    double nll = t->loss_l1 * log->l1 + t->loss_l2 * log->l2 + t->loss_p * log->p;
    log->total = nll + t->loss_q * q;
    if (s->disc) {
        OPTVQ_TRY(generator_term(s, rec, batch, height, width, count, global_step, log));
        log->total += log->factor * log->g_weight * log->g;
    }
    if (!isfinite(log->total))
        return optvq_fail(OPTVQ_ERR_NUMERIC, "training step: the loss is not finite (%g); lower the learning rate?",
                          log->total);
    OPTVQ_TRY(model_trainer_backward(s->trainer, s->d_rec, t->loss_q));
    optimizer *both[2] = {s->ae, s->dopt};
    OPTVQ_TRY(optimizer_average_grads(both, s->dopt ? 2 : 1, s->comm, &s->comm_tally));
    log->grad_norm = optimizer_clip(both, s->dopt ? 2 : 1, 1.0);
    optimizer_apply(s->ae);
    optimizer_zero_grad(s->ae);
    if (s->disc)
        OPTVQ_TRY(disc_step(s, x, batch, height, width, log));
    return OPTVQ_OK;
}
