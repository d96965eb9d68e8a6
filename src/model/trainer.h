/* Training of a VQModel (plain CNN or taming VQGAN encoder/decoder): forward
 * with saved activations, then backward from a gradient on the
 * reconstruction, so a caller can add its own loss terms (LPIPS, GAN) to the
 * reference's AELoss. Gradients ACCUMULATE into the gradients of the
 * model's registry (model_params(m), the quantizer's included); zero them
 * before a step (nn_params_zero_grad).
 *
 * Typical use:
 *   model_trainer_forward(t, x, B, H, W, &recon, &q_loss, NULL);
 *   d_recon = d loss / d recon   (the caller's losses)
 *   model_trainer_backward(t, d_recon, q_weight);
 * or model_trainer_step for L1 + L2 + q_weight * quantizer loss. */
#ifndef OPTVQ_MODEL_TRAINER_H
#define OPTVQ_MODEL_TRAINER_H
#include "model/model.h"

typedef struct model_loss_weights {
    double l1, l2, q; /* AELoss: loss_l1_weight, loss_l2_weight, loss_q_weight */
} model_loss_weights;

typedef struct model_losses {
    double total, l1, l2, q;
} model_losses;

typedef struct model_trainer model_trainer;

/* The trainer keeps a pointer to m (which must outlive it) and sizes its
 * activation memory at the first forward (again when the batch or image
 * shape changes). */
optvq_status model_trainer_create(optvq_model *m, model_trainer **out);
void model_trainer_free(model_trainer *t);

/* Forward with saved activations. x (B, C, H, W) in [-1, 1] (copied; it need
 * not outlive the call). *recon points into the trainer's memory
 * (B, C, H, W), valid until the next forward; *q_loss = the quantizer loss;
 * tokens (B, heads, H/f, W/f) when not NULL. */
optvq_status model_trainer_forward(model_trainer *t, const float *x, int64_t batch, int64_t height, int64_t width,
                                   const float **recon, float *q_loss, int64_t *tokens);

/* Backward after model_trainer_forward: d_recon = d loss / d recon
 * (B, C, H, W), plus q_weight x the quantizer loss. Gradients ACCUMULATE into
 * the model's and the quantizer's parameter gradients. d_recon is not
 * modified. Once per forward (a second call is an OPTVQ_ERR_STATE error). */
optvq_status model_trainer_backward(model_trainer *t, const float *d_recon, double q_weight);

/* Gradient wrt the decoder's last conv weight (decoder.conv_out.weight for
 * taming, decoder.out_fc.weight for the plain CNN) of a loss whose gradient
 * on recon is d_recon, after model_trainer_forward (before or after its
 * backward); writes model_trainer_last_layer_numel(t) floats into dw and
 * leaves the model's gradients alone. For the adaptive GAN weight
 * (torch.autograd.grad(loss, last_layer)). */
optvq_status model_trainer_last_layer_grad(model_trainer *t, const float *d_recon, float *dw);
int64_t model_trainer_last_layer_numel(const model_trainer *t);

/* forward + AELoss (l1 mean|recon - x| + l2 mean (recon - x)^2 + q) + backward.
 * recon (B, C, H, W) and tokens (B, h, H/f, W/f) receive the step's outputs
 * when not NULL. */
optvq_status model_trainer_step(model_trainer *t, const float *x, int64_t batch, int64_t height, int64_t width,
                                const model_loss_weights *w, model_losses *out, float *recon, int64_t *tokens);

#endif
