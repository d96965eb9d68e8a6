/* Internal to conv2d: direct stride-1 convolution for small channel counts
 * (AVX2+FMA). See conv_direct.c. */
#ifndef OPTVQ_NN_CONV_DIRECT_H
#define OPTVQ_NN_CONV_DIRECT_H
#include "nn/nn.h"

/* 1 when the direct kernels handle d (stride 1, small channel counts, AVX2). */
int nn_conv_direct_ok(const nn_conv2d_desc *d);
/* Workspace floats for forward and backward with nt threads. */
size_t nn_conv_direct_workspace(const nn_conv2d_desc *d, int nt);
void nn_conv_direct_forward(float *y, const float *x, const float *w, const float *b,
                            const nn_conv2d_desc *d, float *ws, int nt);
/* dx +=, dw += (either may be NULL); db is the caller's. */
void nn_conv_direct_backward(float *dx, float *dw, const float *dy, const float *x,
                             const float *w, const nn_conv2d_desc *d, float *ws, int nt);

/* Stride-1 convolution with wide channels as kh*kw GEMMs on shifted views of the
 * zero-padded input (no im2col): 1 when d qualifies. */
int nn_conv_tapgemm_ok(const nn_conv2d_desc *d);
/* Workspace floats for forward and backward, and for the forward alone. */
size_t nn_conv_tapgemm_workspace(const nn_conv2d_desc *d);
size_t nn_conv_tapgemm_forward_workspace(const nn_conv2d_desc *d);
void nn_conv_tapgemm_forward(float *y, const float *x, const float *w, const float *b,
                             const nn_conv2d_desc *d, float *ws, int nt);
void nn_conv_tapgemm_backward(float *dx, float *dw, const float *dy, const float *x,
                              const float *w, const nn_conv2d_desc *d, float *ws, int nt);

#endif
