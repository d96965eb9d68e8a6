/* Winograd F(4x4, 3x3) convolution for the inference path (conv_winograd.c).
 *
 * Only 3x3, stride-1, padding-1 convolutions. The filter transforms
 * (36 x c_out x c_in floats, 4x the weights) are computed once per weight and
 * kept in a cache the caller owns (the model keeps one for its inference
 * graphs); training keeps the direct / im2col convolution of conv2d.c.
 *
 * Switch: the environment variable OPTVQ_CONV=direct, read once at the first
 * inference convolution, turns the Winograd path off (any other value, or
 * none, leaves it on); nn_conv_winograd_set_enabled overrides it. */
#ifndef OPTVQ_NN_CONV_WINOGRAD_H
#define OPTVQ_NN_CONV_WINOGRAD_H
#include "nn/conv_infer.h"
#include "nn/nn.h"

/* 1 when the Winograd kernel can compute d: 3x3, stride 1, padding 1 on every side. */
int nn_conv_winograd_supported(const nn_conv2d_desc *d);
/* 1 when d is supported and the Winograd path is faster than conv2d's on it
 * (the inference forward takes it only then). */
int nn_conv_winograd_pays(const nn_conv2d_desc *d);
/* Workspace floats of nn_conv_winograd_forward (0 when unsupported). */
size_t nn_conv_winograd_workspace(const nn_conv2d_desc *d);
/* y = conv(x, w) + b through F(4x4, 3x3); d supported, ws sized by
 * nn_conv_winograd_workspace, the filter transform taken from (or added to) cache. */
optvq_status nn_conv_winograd_forward(float *y, const float *x, const float *w, const float *b,
                                      const nn_conv2d_desc *d, nn_workspace *ws, nn_conv_cache *cache);

/* The switch (see above): 1 when on. */
int nn_conv_winograd_enabled(void);
void nn_conv_winograd_set_enabled(int on);

#endif
