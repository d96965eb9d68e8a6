/* AdamW, as torch.optim.AdamW (amsgrad=False, maximize=False) computes it on
 * the CPU, one parameter tensor at a time. */
#ifndef OPTVQ_TRAIN_ADAMW_H
#define OPTVQ_TRAIN_ADAMW_H
#include <stdint.h>

/* One AdamW step over `n` elements, in place.
 *   param  the parameter; updated
 *   grad   its gradient (read only)
 *   m, v   first and second moment buffers, zero before the first step; updated
 *   step   1 on the first call, then 2, 3, ... (the bias corrections use it)
 * Order and rounding follow torch's single-tensor path:
 *   param *= 1 - lr*weight_decay                 (decoupled weight decay)
 *   m = lerp(m, grad, 1 - beta1)
 *   v = v*beta2 + (1 - beta2)*grad*grad
 *   param += -(lr / (1 - beta1^step)) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
 * Scalar factors are computed in double and rounded to float once, as PyTorch
 * does with its Python-float hyperparameters. Since the hyperparameters arrive
 * here as floats, each is first widened to the shortest decimal that rounds to
 * that float (0.9f -> 0.9, not 0.89999997615814), which is the double a
 * PyTorch user would have written.
 * n <= 0 or step < 1 does nothing. */
void optvq_adamw_step(float *param, const float *grad, float *m, float *v, int64_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, int64_t step);

/* The same with the hyperparameters as doubles (as PyTorch holds them), e.g.
 * a learning rate computed by a schedule. */
void optvq_adamw_step_d(float *param, const float *grad, float *m, float *v, int64_t n, double lr,
                        double beta1, double beta2, double eps, double weight_decay, int64_t step);

#endif
