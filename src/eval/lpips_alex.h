/* LPIPS with AlexNet, v0.1: the metric the OptVQ paper reports, as pyiqa's
 * create_metric("lpips") computes it (pyiqa/archs/lpips_arch.py, a copy of
 * lpips.LPIPS(net="alex", version="0.1") of richzhang/PerceptualSimilarity),
 * forward only, in eval mode (Dropout off).
 *
 *   t      = 2 x - 1                     (pyiqa's normalize=True: inputs in [0, 1])
 *   s      = (t - shift) / scale per channel, shift [-.030, -.088, -.188],
 *            scale [.458, .448, .450]
 *   f_k    = torchvision alexnet `features` at relu1..relu5:
 *            conv0 11x11/4 pad 2 (64) + ReLU                          -> f_0
 *            MaxPool 3/2, conv3 5x5 pad 2 (192) + ReLU                 -> f_1
 *            MaxPool 3/2, conv6 3x3 pad 1 (384) + ReLU                 -> f_2
 *            conv8 3x3 pad 1 (256) + ReLU                              -> f_3
 *            conv10 3x3 pad 1 (256) + ReLU                             -> f_4
 *   n_k    = f_k / (sqrt(sum_c f_k^2) + 1e-10)
 *   LPIPS  = sum_k mean_(h,w) sum_c w_k[c] (n_k(x0) - n_k(x1))^2      (one per image)
 * Images need height and width >= 31 (the second max pool needs a 3x3 input).
 *
 * Weights (lpips_alex_load), the files users already have, any one of:
 *   - torchvision's alexnet-owt-7be5be79.pth (features.{0,3,6,8,10}.weight/bias;
 *     the classifier is ignored) plus lpips's weights/v0.1/alex.pth = pyiqa's
 *     LPIPS_v0.1_alex-df73285e.pth (lin0.model.1.weight ... lin4.model.1.weight,
 *     (1, C, 1, 1); a legacy non-zip torch.save file);
 *   - one file with a whole LPIPS state dict (net.slice1.0.weight ...
 *     net.slice5.10.weight, linK.model.1.weight or lins.K.model.1.weight), .pth
 *     or .safetensors.
 * Names may carry a common prefix (see eval/net_load.h). The scaling layer's
 * constants are lpips's (not read from files).
 *
 * A net holds per-call buffers: one thread uses it at a time (the work inside
 * is parallel). */
#ifndef OPTVQ_EVAL_LPIPS_ALEX_H
#define OPTVQ_EVAL_LPIPS_ALEX_H
#include <stdint.h>

#include "nn/nn.h"
#include "optvq/optvq.h"

#define LPIPS_ALEX_MIN_SIDE 31

typedef struct lpips_alex lpips_alex;

optvq_status lpips_alex_load(const char *const *paths, int n_paths, lpips_alex **out);
/* Zero weights, to be filled through lpips_alex_params (tests). */
optvq_status lpips_alex_create(lpips_alex **out);
/* By torchvision / lpips names: features.N.weight, features.N.bias,
 * linK.model.1.weight. No gradients. */
nn_params *lpips_alex_params(lpips_alex *l);
void lpips_alex_free(lpips_alex *l);

/* per_image[i] = LPIPS(x0[i], x1[i]), x0, x1 (batch, 3, height, width) in [0, 1]
 * (not clamped here). layers (may be NULL) receives the 5 per-layer terms,
 * (batch, 5). Buffers are planned once per (batch, height, width). */
optvq_status lpips_alex_forward(lpips_alex *l, const float *x0, const float *x1, int64_t batch, int64_t height,
                                int64_t width, double *per_image, double *layers);

#endif
