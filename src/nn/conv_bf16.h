/* bf16 convolution for the inference path (conv_bf16.c): weights and
 * activations rounded to bf16, products summed in fp32 (nn/gemm_bf16.h).
 *
 * Any conv2d geometry (kernel, stride, padding): the input is converted once
 * into a zero-padded bf16 copy and the convolution is one GEMM per image,
 * y (c_out, P) = W (c_out, c_in kh kw) B, whose B is read straight from that
 * copy through tap and position offsets (nn_gemm_bf16_packed_gather), so no
 * im2col matrix is built. Error against the fp32 convolution: the rounding of
 * both inputs, NMSE ~5e-6 per layer on random data (tests/test_conv_bf16.c). */
#ifndef OPTVQ_NN_CONV_BF16_H
#define OPTVQ_NN_CONV_BF16_H
#include "nn/nn.h"

#include <stdint.h>

/* 1 when the bf16 path is worth taking for d: at least NN_CONV_BF16_MIN_FLOP
 * per image. Below that (the plain CNN's layers on 32x32 images, 1x1
 * connectors on 16x16 latents) a GEMM per image costs more in thread starts
 * and packing than it saves (measured 3x slower over the plain CNN's
 * Fashion-MNIST evaluation), and conv2d's direct kernels do better. */
#define NN_CONV_BF16_MIN_FLOP 1e8
int nn_conv_bf16_pays(const nn_conv2d_desc *d);
/* Test hook: the threshold of nn_conv_bf16_pays (a negative value restores
 * NN_CONV_BF16_MIN_FLOP). Not thread-safe: set it between calls. */
void nn_conv_bf16_set_min_flop(double flop);
/* uint16_t elements of w packed for nn_conv_bf16_forward. */
size_t nn_conv_bf16_packed_weight_elems(const nn_conv2d_desc *d);
/* Packs w (c_out, c_in, kh, kw) fp32 into `packed` (rounding to bf16). */
optvq_status nn_conv_bf16_pack_weights(const nn_conv2d_desc *d, const float *w, uint16_t *packed);
/* Workspace floats of nn_conv_bf16_forward at the current optvq_threads(),
 * with (packed_given 0) or without room to pack the weights. */
size_t nn_conv_bf16_workspace(const nn_conv2d_desc *d, int packed_given);
/* y (n, c_out, h_out, w_out) = conv(x, w) + b, in bf16 with fp32 sums.
 * packed_w: the weights from nn_conv_bf16_pack_weights, or NULL to pack w
 * into the workspace here (then w is required). b may be NULL. */
optvq_status nn_conv_bf16_forward(float *y, const float *x, const float *w, const uint16_t *packed_w,
                                  const float *b, const nn_conv2d_desc *d, nn_workspace *ws);

#endif
