/* Training step of a VQModel (plain CNN encoder/decoder): forward, the
 * reference's AELoss, backward. Gradients ACCUMULATE into the model's
 * parameter gradients (model_params(m)->grad) and the quantizer's
 * (optvq_quantizer_grad); zero them before a step. */
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

optvq_status model_trainer_create(optvq_model *m, model_trainer **out);
void model_trainer_free(model_trainer *t);
/* x (B, C, H, W) in [-1, 1]. recon (B, C, H, W) and tokens (B, h, H/4, W/4)
 * receive the step's outputs when not NULL. */
optvq_status model_trainer_step(model_trainer *t, const float *x, int64_t batch, int64_t height, int64_t width,
                                const model_loss_weights *w, model_losses *out, float *recon, int64_t *tokens);

#endif
