/* LPIPS perceptual distance, `lpips.LPIPS(net="vgg", version="0.1")` of the lpips
 * package (richzhang/PerceptualSimilarity), as the reference trains with it:
 * `perceptual_loss(x, x_rec).mean()` on images in [-1, 1], differentiated with
 * respect to the reconstruction (the second input) only.
 *
 *   s      = (x - shift) / scale per channel, shift [-.030, -.088, -.188],
 *            scale [.458, .448, .450]
 *   f_k    = torchvision vgg16 `features` up to relu1_2, relu2_2, relu3_3, relu4_3,
 *            relu5_3 (conv3x3 pad 1 + ReLU, MaxPool2d(2, 2) between blocks)
 *   n_k    = f_k / (sqrt(sum_c f_k^2) + 1e-10)
 *   LPIPS  = sum_k mean_(h,w) sum_c w_k[c] (n_k(x0) - n_k(x1))^2      (one per image)
 *
 * Dropout: the lpips heads are Sequential(Dropout(0.5), Conv2d(C, 1, 1, bias=False)).
 * The reference calls model.train() on its whole model, loss module included, so
 * during its training that Dropout is ACTIVE (a stochastic LPIPS). We always run
 * LPIPS in eval mode (Dropout off, deterministic), which is what lpips.LPIPS is
 * meant for and what its evaluation uses.
 *
 * The network is frozen (the reference never trains LPIPS): no weight gradients
 * are kept or computed; backward gives d/dx1 only.
 *
 * Weights (lpips_load), any one of:
 *   - torchvision's vgg16-397923af.pth (features.N.weight/bias, N in {0, 2, 5, 7,
 *     10, 12, 14, 17, 19, 21, 24, 26, 28}; the classifier is ignored) plus lpips's
 *     weights/v0.1/vgg.pth (lin0.model.1.weight ... lin4.model.1.weight, (1, C, 1, 1));
 *   - one file with a whole LPIPS module state_dict (net.slice1.0.weight ...
 *     net.slice5.28.weight, lin0.model.1.weight ..., or lins.K.model.1.weight, and
 *     optionally scaling_layer.shift/scale (1, 3, 1, 1)), .pth or .safetensors.
 * Names may carry a common prefix ("model.loss.perceptual_loss." in a training
 * checkpoint): a tensor matches when its name equals the expected one or ends with
 * "." + the expected one. Every needed tensor must be found exactly once with the
 * right shape; other tensors are ignored.
 *
 * A net holds per-call state (saved activations): one thread uses it at a time. */
#ifndef OPTVQ_EVAL_LPIPS_H
#define OPTVQ_EVAL_LPIPS_H
#include <stdint.h>

#include "nn/nn.h"
#include "optvq/optvq.h"

typedef struct lpips_net lpips_net;

/* Loads the weights from n_paths (>= 1) files (see above). */
optvq_status lpips_load(const char *const *paths, int n_paths, lpips_net **out);
/* A net with zero weights that the caller fills through lpips_params. */
optvq_status lpips_create(lpips_net **out);
/* Parameters by torchvision / lpips names: features.N.weight (C_out, C_in, 3, 3),
 * features.N.bias (C_out), linK.model.1.weight (1, C_K, 1, 1). Their grad
 * pointers are NULL (frozen). */
nn_params *lpips_params(lpips_net *l);
void lpips_free(lpips_net *l);

/* per_image[i] = LPIPS(x0[i], x1[i]) for x0, x1 (batch, 3, height, width) in [-1, 1],
 * height, width >= 16. When want_grad, keeps what lpips_backward needs (the x1
 * path's relu outputs, about 270 floats per input pixel per image). Memory, in
 * one block planned once per (batch, height, width) and reused: about 520 floats
 * (2 KB) per pixel per image with want_grad, 380 without (256x256, batch 8: 1.1 GB
 * with gradients). Weights: 14.7M floats (59 MB). */
optvq_status lpips_forward(lpips_net *l, const float *x0, const float *x1, int64_t batch,
                           int64_t height, int64_t width, double *per_image, int want_grad);
/* After a want_grad forward: dx1 (batch, 3, height, width) += scale * d(sum_i per_image[i]) / d x1.
 * (For the reference's perceptual_loss(x, x_rec).mean() * w use scale = w / batch.)
 * Where a whole x1 feature vector is zero (all channels of a relu output at one
 * position), torch's autograd gives NaN (sqrt'(0) = inf times 0); here that
 * position passes no gradient (the relu that zeroed it blocks it) and all stays
 * finite. */
optvq_status lpips_backward(lpips_net *l, float scale, float *dx1);

#endif
