/* CPU neural-network engine: float32 NCHW layers, each a forward/backward pair.
 *
 * Conventions (docs/behaviour.md §6)
 *   - Arguments: outputs first, then inputs, then sizes (a descriptor).
 *   - Backward passes ACCUMULATE (+=) into every gradient buffer; a NULL gradient
 *     pointer means "not needed" and is skipped.
 *   - Ops that need scratch take an nn_workspace sized once by the caller from the
 *     op's nn_*_workspace() query (in floats); too small a workspace is an error,
 *     never a silent allocation.
 *   - Parallelism: OpenMP over batch/channels, OpenBLAS kept single-threaded
 *     (optvq_blas_single_threaded) and called from inside our parallel regions.
 *   - Every optimised kernel has a *_naive twin (plain loops, double accumulation)
 *     that the tests compare against.
 */
#ifndef OPTVQ_NN_NN_H
#define OPTVQ_NN_NN_H
#include <stddef.h>
#include <stdint.h>
#include "optvq/optvq.h"

struct optvq_comm; /* optvq/train.h: the data-parallel group of SyncBatchNorm */

/* ------------------------------------------------------------------------ */
/* Scratch workspace and parameter registry                                  */
/* ------------------------------------------------------------------------ */

typedef struct nn_workspace {
    float *data;   /* 64-byte aligned */
    size_t floats; /* capacity        */
} nn_workspace;

/* Grows the workspace to at least `floats` (never shrinks); call at setup. */
optvq_status nn_workspace_reserve(nn_workspace *ws, size_t floats);
void nn_workspace_free(nn_workspace *ws);
/* Fails with a message naming `op` when ws holds fewer than `floats`. */
optvq_status nn_workspace_check(const nn_workspace *ws, size_t floats, const char *op);

#define NN_PARAM_NAME_MAX 160
#define NN_PARAM_MAX_DIMS 4

/* What a parameter is, declared where it is registered: it decides the
 * default initialisation and whether weight decay applies (the reference
 * decays Conv2d / ConvTranspose2d / Linear weights only). */
typedef enum nn_role {
    NN_ROLE_UNDECLARED = 0, /* registered with nn_params_add                 */
    NN_ROLE_CONV_WEIGHT,    /* Conv2d (cout, cin, kh, kw)                    */
    NN_ROLE_CONVT_WEIGHT,   /* ConvTranspose2d (cin, cout, kh, kw)           */
    NN_ROLE_LINEAR_WEIGHT,  /* Linear (out, in)                              */
    NN_ROLE_BIAS,           /* of a conv, transposed conv or linear layer    */
    NN_ROLE_NORM_WEIGHT,    /* GroupNorm / BatchNorm scale                   */
    NN_ROLE_NORM_BIAS,      /* GroupNorm / BatchNorm shift                   */
    NN_ROLE_EMBEDDING       /* nn.Embedding table                            */
} nn_role;

/* 1 for the roles weight decay applies to: conv, transposed-conv and linear weights. */
int nn_role_decays(nn_role role);

typedef struct nn_param {
    char name[NN_PARAM_NAME_MAX]; /* PyTorch state-dict name, e.g. "encoder.conv_in.weight" */
    int ndim;
    int64_t shape[NN_PARAM_MAX_DIMS];
    int64_t numel;
    nn_role role;
    int64_t fan_in; /* torch's fan_in of the layer (weight.size(1) * kernel area; biases share their weight's) */
    int group;      /* the owner's label (e.g. the model's encoder/decoder/quantizer); 0 unless set */
    int alias;      /* 1: data/grad are another object's buffers (nn_params_add_alias) */
    size_t offset;  /* into the data / grad blocks, in floats (64-byte aligned); aliases: 0 */
    float *data;    /* valid after nn_params_finalize (aliases: from registration) */
    float *grad;    /* valid after nn_params_finalize (aliases: from registration) */
} nn_param;

/* name -> shape, parameter and gradient. Parameters are registered first, then
 * nn_params_finalize() makes ONE allocation for all values and ONE for all
 * gradients (both zeroed; the gradients are mapped on demand, so they take
 * memory only once written); aliases keep their owner's buffers, outside the
 * blocks (data, grad and total cover the registry's own parameters only). */
typedef struct nn_params {
    nn_param *items;
    int count, cap;
    size_t total; /* floats in each block, padding included */
    float *data, *grad;
    int finalized;
} nn_params;

void nn_params_init(nn_params *p);
/* Registers a parameter; *index (may be NULL) receives its position. Duplicate
 * names, bad shapes and registration after finalize are errors. */
optvq_status nn_params_add(nn_params *p, const char *name, int ndim, const int64_t *shape,
                           int *index);
/* The same with the parameter's role and fan_in declared. */
optvq_status nn_params_add_role(nn_params *p, const char *name, int ndim, const int64_t *shape, nn_role role,
                                int64_t fan_in, int *index);
/* Registers another object's buffers (data and grad, numel floats each) under
 * a name: load, save, optimizers and gradient zeroing see them like the
 * registry's own, which neither allocates nor frees them. Before finalize. */
optvq_status nn_params_add_alias(nn_params *p, const char *name, int ndim, const int64_t *shape, nn_role role,
                                 int64_t fan_in, float *data, float *grad, int *index);
optvq_status nn_params_finalize(nn_params *p);
/* NULL when absent. */
nn_param *nn_params_find(nn_params *p, const char *name);
/* Copies `data` into the named parameter; missing name or shape mismatch is an
 * error naming the tensor. */
optvq_status nn_params_set(nn_params *p, const char *name, int ndim, const int64_t *shape,
                           const float *data);
void nn_params_zero_grad(nn_params *p);
/* Frees the gradient block of a registry that is never trained (frozen
 * networks); its entries' grad become NULL, aliases keep theirs. */
void nn_params_drop_grad(nn_params *p);
void nn_params_free(nn_params *p);

/* ------------------------------------------------------------------------ */
/* GEMM helper: C = alpha op(A) op(B) + beta C, row-major, split over threads  */
/* (OpenMP + single-threaded OpenBLAS). Call from serial code.              */
/* ------------------------------------------------------------------------ */
void nn_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
              int64_t ldc);
/* Makes OpenBLAS single-threaded once (idempotent). */
void nn_init_threads(void);

/* im2col over a column range (internal to the conv ops).
 * The image is (c, h, w); the output grid is (ho, wo) with position p = oy*wo + ox
 * reading image pixel (oy*sh - pt + ky, ox*sw - pl + kx) (zero outside).
 * col holds rows (ci - c0)*kh*kw + ky*kw + kx for ci in [c0, c1), and `cols`
 * columns for grid positions p0 .. p0+cols-1 (row stride = cols). */
typedef struct nn_im2col_geom {
    int64_t c, h, w, kh, kw, sh, sw, pt, pl, ho, wo;
} nn_im2col_geom;
void nn_im2col(float *col, const float *img, const nn_im2col_geom *g, int64_t c0, int64_t c1,
               int64_t p0, int64_t cols);
/* The adjoint: img (c, h, w) += scatter of col (same layout). */
void nn_col2im(float *img, const float *col, const nn_im2col_geom *g, int64_t c0, int64_t c1,
               int64_t p0, int64_t cols);
/* Columns per tile so that rows x cols <= the per-thread cap, with at least
 * min_tiles tiles, balanced; *tiles receives the tile count. */
int64_t nn_tile_cols(int64_t rows, int64_t positions, int64_t min_tiles, int64_t *tiles);
/* Tiles for `images` images split over `threads` threads as (image, tile) items:
 * at least one item per thread, and, while items are few, a multiple of the
 * thread count so no thread idles at the end. */
int64_t nn_tile_items(int64_t rows, int64_t positions, int64_t images, int threads,
                      int64_t *tiles);

/* ------------------------------------------------------------------------ */
/* conv2d                                                                    */
/* ------------------------------------------------------------------------ */

/* y = conv(x, w) + b. Padding is given per side, so taming's Downsample
 * (F.pad(x, (0,1,0,1)) then a stride-2 3x3 conv) is pad_t=0, pad_b=1, pad_l=0,
 * pad_r=1. Output size: h_out = (h_in + pad_t + pad_b - kh) / stride_h + 1. */
typedef struct nn_conv2d_desc {
    int64_t n, c_in, h_in, w_in; /* x (n, c_in, h_in, w_in)           */
    int64_t c_out, kh, kw;       /* w (c_out, c_in, kh, kw), b (c_out) */
    int64_t stride_h, stride_w;
    int64_t pad_t, pad_b, pad_l, pad_r;
    int64_t h_out, w_out;        /* filled by nn_conv2d_init          */
} nn_conv2d_desc;

/* Fills h_out/w_out and validates. */
optvq_status nn_conv2d_init(nn_conv2d_desc *d, int64_t n, int64_t c_in, int64_t h_in,
                            int64_t w_in, int64_t c_out, int64_t kh, int64_t kw, int64_t stride,
                            int64_t pad_t, int64_t pad_b, int64_t pad_l, int64_t pad_r);
/* Workspace (floats) for forward and backward at the current thread count
 * (also enough for the fp32 inference forward, nn/conv_infer.h). */
size_t nn_conv2d_workspace(const nn_conv2d_desc *d);
/* Workspace (floats) for nn_conv2d_forward alone. */
size_t nn_conv2d_forward_workspace(const nn_conv2d_desc *d);
/* y (n, c_out, h_out, w_out) <- x (n, c_in, h_in, w_in), w (c_out, c_in, kh, kw),
 * b (c_out) or NULL. */
optvq_status nn_conv2d_forward(float *y, const float *x, const float *w, const float *b,
                               const nn_conv2d_desc *d, nn_workspace *ws);
/* dx (n, c_in, h_in, w_in) +=, dw (c_out, c_in, kh, kw) +=, db (c_out) +=;
 * any may be NULL. dy (n, c_out, h_out, w_out). */
optvq_status nn_conv2d_backward(float *dx, float *dw, float *db, const float *dy,
                                const float *x, const float *w, const nn_conv2d_desc *d,
                                nn_workspace *ws);
void nn_conv2d_forward_naive(float *y, const float *x, const float *w, const float *b,
                             const nn_conv2d_desc *d);
void nn_conv2d_backward_naive(float *dx, float *dw, float *db, const float *dy, const float *x,
                              const float *w, const nn_conv2d_desc *d);

/* ------------------------------------------------------------------------ */
/* conv_transpose2d (PyTorch ConvTranspose2d, no groups/dilation)            */
/* ------------------------------------------------------------------------ */
/* h_out = (h_in - 1) * stride - pad_t - pad_b + kh + out_pad_h  (PyTorch with
 * symmetric padding p: pad_t = pad_b = p). */
typedef struct nn_convt2d_desc {
    int64_t n, c_in, h_in, w_in; /* x (n, c_in, h_in, w_in)           */
    int64_t c_out, kh, kw;       /* w (c_in, c_out, kh, kw), b (c_out) */
    int64_t stride_h, stride_w;
    int64_t pad_t, pad_b, pad_l, pad_r;
    int64_t out_pad_h, out_pad_w;
    int64_t h_out, w_out;        /* filled by nn_convt2d_init         */
} nn_convt2d_desc;

optvq_status nn_convt2d_init(nn_convt2d_desc *d, int64_t n, int64_t c_in, int64_t h_in,
                             int64_t w_in, int64_t c_out, int64_t kh, int64_t kw, int64_t stride,
                             int64_t pad, int64_t out_pad);
size_t nn_convt2d_workspace(const nn_convt2d_desc *d);
/* y (n, c_out, h_out, w_out) <- x (n, c_in, h_in, w_in), w (c_in, c_out, kh, kw), b or NULL */
optvq_status nn_convt2d_forward(float *y, const float *x, const float *w, const float *b,
                                const nn_convt2d_desc *d, nn_workspace *ws);
optvq_status nn_convt2d_backward(float *dx, float *dw, float *db, const float *dy,
                                 const float *x, const float *w, const nn_convt2d_desc *d,
                                 nn_workspace *ws);
void nn_convt2d_forward_naive(float *y, const float *x, const float *w, const float *b,
                              const nn_convt2d_desc *d);
void nn_convt2d_backward_naive(float *dx, float *dw, float *db, const float *dy, const float *x,
                               const float *w, const nn_convt2d_desc *d);

/* ------------------------------------------------------------------------ */
/* group_norm (biased variance, like torch.nn.GroupNorm)                     */
/* ------------------------------------------------------------------------ */
/* y, x (n, c, hw); gamma, beta (c) or NULL (no affine). c % groups == 0. */
optvq_status nn_group_norm_forward(float *y, const float *x, const float *gamma,
                                   const float *beta, int64_t n, int64_t c, int64_t hw,
                                   int64_t groups, float eps);
/* dx (n, c, hw) +=, dgamma (c) +=, dbeta (c) += (any may be NULL); statistics are
 * recomputed from x. */
optvq_status nn_group_norm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                                    const float *x, const float *gamma, int64_t n, int64_t c,
                                    int64_t hw, int64_t groups, float eps);
void nn_group_norm_forward_naive(float *y, const float *x, const float *gamma, const float *beta,
                                 int64_t n, int64_t c, int64_t hw, int64_t groups, float eps);
void nn_group_norm_backward_naive(float *dx, float *dgamma, float *dbeta, const float *dy,
                                  const float *x, const float *gamma, int64_t n, int64_t c,
                                  int64_t hw, int64_t groups, float eps);

/* ------------------------------------------------------------------------ */
/* Elementwise: relu, swish (x * sigmoid(x)), add                            */
/* ------------------------------------------------------------------------ */
/* y, x (count); y may alias x. dx += dy * f'(x); dx may alias dy only if not
 * accumulating into other data (dx == dy computes dy * f'(x) + dy: avoid). */
void nn_relu_forward(float *y, const float *x, int64_t count);
void nn_relu_backward(float *dx, const float *dy, const float *x, int64_t count);
void nn_swish_forward(float *y, const float *x, int64_t count);
void nn_swish_backward(float *dx, const float *dy, const float *x, int64_t count);
void nn_swish_forward_naive(float *y, const float *x, int64_t count);
void nn_swish_backward_naive(float *dx, const float *dy, const float *x, int64_t count);
/* y = a + b (count); da += dy, db += dy (either may be NULL). */
void nn_add_forward(float *y, const float *a, const float *b, int64_t count);
void nn_add_backward(float *da, float *db, const float *dy, int64_t count);

/* ------------------------------------------------------------------------ */
/* linear, softmax, batched matmul                                           */
/* ------------------------------------------------------------------------ */
/* y (n, out) = x (n, in) w^T + b;  w (out, in), b (out) or NULL. */
void nn_linear_forward(float *y, const float *x, const float *w, const float *b, int64_t n,
                       int64_t in, int64_t out);
void nn_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int64_t n, int64_t in, int64_t out);
void nn_linear_forward_naive(float *y, const float *x, const float *w, const float *b, int64_t n,
                             int64_t in, int64_t out);
void nn_linear_backward_naive(float *dx, float *dw, float *db, const float *dy, const float *x,
                              const float *w, int64_t n, int64_t in, int64_t out);

/* Softmax over the last dimension: y, x (rows, cols); dx += y * (dy - <dy, y>). */
void nn_softmax_forward(float *y, const float *x, int64_t rows, int64_t cols);
void nn_softmax_backward(float *dx, const float *dy, const float *y, int64_t rows, int64_t cols);
void nn_softmax_forward_naive(float *y, const float *x, int64_t rows, int64_t cols);

/* c (batch, m, n) = op(a) op(b): op(a) (m, k) — a stored (batch, m, k), or
 * (batch, k, m) when trans_a; op(b) (k, n) — b stored (batch, k, n), or (batch, n, k)
 * when trans_b. */
void nn_bmm_forward(float *c, const float *a, const float *b, int64_t batch, int64_t m, int64_t k,
                    int64_t n, int trans_a, int trans_b);
/* da, db (shaped like a, b) += ; either may be NULL. */
void nn_bmm_backward(float *da, float *db, const float *dc, const float *a, const float *b,
                     int64_t batch, int64_t m, int64_t k, int64_t n, int trans_a, int trans_b);
void nn_bmm_forward_naive(float *c, const float *a, const float *b, int64_t batch, int64_t m,
                          int64_t k, int64_t n, int trans_a, int trans_b);

/* ------------------------------------------------------------------------ */
/* Taming AttnBlock: y = x + proj_out(attn(GroupNorm(x)))                    */
/* ------------------------------------------------------------------------ */
typedef struct nn_attn_desc {
    int64_t n, c, h, w; /* x, y (n, c, h, w) */
    int64_t groups;     /* 32                */
    float eps;          /* 1e-6              */
} nn_attn_desc;

/* Parameters (state-dict suffixes): norm.weight (c), norm.bias (c),
 * q.weight (c, c, 1, 1), q.bias (c), k.*, v.*, proj_out.weight, proj_out.bias. */
typedef struct nn_attn_params {
    const float *norm_w, *norm_b, *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *proj_w, *proj_b;
} nn_attn_params;
typedef struct nn_attn_grads {
    float *norm_w, *norm_b, *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *proj_w, *proj_b;
} nn_attn_grads;

/* Floats saved by forward for backward: 5 n c hw + n hw hw. */
size_t nn_attn_saved(const nn_attn_desc *d);
size_t nn_attn_workspace(const nn_attn_desc *d);
/* y (n, c, h, w) <- x; saved (nn_attn_saved floats) may be NULL for inference. */
optvq_status nn_attn_forward(float *y, float *saved, const float *x, const nn_attn_params *p,
                             const nn_attn_desc *d, nn_workspace *ws);
/* dx (n, c, h, w) +=, parameter gradients += (NULL members skipped). */
optvq_status nn_attn_backward(float *dx, const nn_attn_grads *g, const float *dy,
                              const float *saved, const float *x, const nn_attn_params *p,
                              const nn_attn_desc *d, nn_workspace *ws);
void nn_attn_forward_naive(float *y, const float *x, const nn_attn_params *p,
                           const nn_attn_desc *d);

/* ------------------------------------------------------------------------ */
/* Resampling and plumbing                                                   */
/* ------------------------------------------------------------------------ */
/* Nearest x2: y (n, c, 2h, 2w) <- x (n, c, h, w) (nc = n * c). */
void nn_upsample2x_forward(float *y, const float *x, int64_t nc, int64_t h, int64_t w);
void nn_upsample2x_backward(float *dx, const float *dy, int64_t nc, int64_t h, int64_t w);

/* Average pooling (count_include_pad=True, floor mode):
 * y (nc, h_out, w_out) <- x (nc, h, w), h_out = (h + 2 pad - k) / stride + 1. */
typedef struct nn_avgpool_desc {
    int64_t nc, h_in, w_in, k, stride, pad, h_out, w_out;
} nn_avgpool_desc;
optvq_status nn_avgpool_init(nn_avgpool_desc *d, int64_t nc, int64_t h, int64_t w, int64_t k,
                             int64_t stride, int64_t pad);
void nn_avgpool_forward(float *y, const float *x, const nn_avgpool_desc *d);
void nn_avgpool_backward(float *dx, const float *dy, const nn_avgpool_desc *d);
/* The same windows with count_include_pad=False (each divides by its cells
 * inside the image), forward only (src/nn/avgpool_exclude.c; FID Inception). */
void nn_avgpool_exclude_forward(float *y, const float *x, const nn_avgpool_desc *d);
/* AdaptiveAvgPool2d((1, 1)): y (nc) <- mean over hw of x (nc, hw). */
void nn_global_avgpool_forward(float *y, const float *x, int64_t nc, int64_t hw);
/* F.interpolate(mode="bilinear", align_corners=False, no antialias), forward
 * only: y (nc, ho, wo) <- x (nc, h, w) (src/nn/resize_bilinear.c). */
optvq_status nn_resize_bilinear_forward(float *y, const float *x, int64_t nc, int64_t h, int64_t w, int64_t ho,
                                        int64_t wo);

/* Channel concat: y (n, ca + cb, hw) <- a (n, ca, hw), b (n, cb, hw). */
void nn_concat_forward(float *y, const float *a, const float *b, int64_t n, int64_t ca,
                       int64_t cb, int64_t hw);
void nn_concat_backward(float *da, float *db, const float *dy, int64_t n, int64_t ca, int64_t cb,
                        int64_t hw);

/* ------------------------------------------------------------------------ */
/* Losses (mean reduction). Return the loss (accumulated in double).         */
/* ------------------------------------------------------------------------ */
/* mean |x - t| ; dx += scale * sign(x - t) / count, dt -= the same (NULL skips). */
double nn_l1_loss_forward(const float *x, const float *t, int64_t count);
void nn_l1_loss_backward(float *dx, float *dt, float scale, const float *x, const float *t,
                         int64_t count);
/* mean (x - t)^2 ; dx += scale * 2 (x - t) / count, dt -= the same. */
double nn_mse_loss_forward(const float *x, const float *t, int64_t count);
void nn_mse_loss_backward(float *dx, float *dt, float scale, const float *x, const float *t,
                          int64_t count);

/* ------------------------------------------------------------------------ */
/* batchnorm (training-mode BatchNorm2d) and leaky_relu — for the PatchGAN   */
/* discriminator (src/model/discriminator.c)                                 */
/* ------------------------------------------------------------------------ */
/* y, x (n, c, hw), y may alias x; gamma, beta (c) or NULL (no affine).
 * Batch statistics per channel over n*hw values (n*hw >= 2), biased variance:
 * y = (x - mean) * rstd * gamma + beta, rstd = 1/sqrt(var + eps).
 * mean, rstd (c) receive the statistics for backward (either may be NULL).
 * running_mean, running_var (c) are updated when not NULL, torch-style:
 * r = (1 - momentum) r + momentum * stat, the variance UNBIASED (M / (M - 1)). */
optvq_status nn_batchnorm_forward(float *y, float *mean, float *rstd, float *running_mean,
                                  float *running_var, const float *x, const float *gamma,
                                  const float *beta, int64_t n, int64_t c, int64_t hw, float eps,
                                  float momentum);
/* dx (n, c, hw) +=, dgamma (c) +=, dbeta (c) += (any may be NULL); dy, x (n, c, hw);
 * mean, rstd (c) as saved by forward; gamma (c) or NULL. */
optvq_status nn_batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                                   const float *x, const float *mean, const float *rstd,
                                   const float *gamma, int64_t n, int64_t c, int64_t hw);
/* SyncBatchNorm (torch.nn.SyncBatchNorm in train()): the same, with the
 * statistics of the global batch over the ranks of comm (NULL: one process,
 * then equal to the two functions above); dgamma/dbeta are this rank's sums. */
optvq_status nn_batchnorm_forward_sync(float *y, float *mean, float *rstd, float *running_mean, float *running_var,
                                       const float *x, const float *gamma, const float *beta, int64_t n, int64_t c,
                                       int64_t hw, float eps, float momentum, const struct optvq_comm *comm);
optvq_status nn_batchnorm_backward_sync(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                                        const float *mean, const float *rstd, const float *gamma, int64_t n,
                                        int64_t c, int64_t hw, const struct optvq_comm *comm);
void nn_batchnorm_forward_naive(float *y, float *mean, float *rstd, float *running_mean,
                                float *running_var, const float *x, const float *gamma,
                                const float *beta, int64_t n, int64_t c, int64_t hw, float eps,
                                float momentum);
/* Recomputes the statistics from x. */
void nn_batchnorm_backward_naive(float *dx, float *dgamma, float *dbeta, const float *dy,
                                 const float *x, const float *gamma, int64_t n, int64_t c,
                                 int64_t hw, float eps);

/* y = x > 0 ? x : slope x (count); y may alias x. dx += x > 0 ? dy : slope dy; with
 * slope >= 0, x may be the forward's output y (same sign). */
void nn_leaky_relu_forward(float *y, const float *x, int64_t count, float slope);
void nn_leaky_relu_backward(float *dx, const float *dy, const float *x, int64_t count, float slope);

/* ------------------------------------------------------------------------ */
/* Max pooling (src/nn/maxpool.c; used by LPIPS's VGG16)                     */
/* ------------------------------------------------------------------------ */
/* torch.nn.MaxPool2d(k, stride, pad), floor mode: y (nc, h_out, w_out) <- x (nc, h, w),
 * h_out = (h + 2 pad - k) / stride + 1; 2 pad <= k. Ties: the first maximum in the
 * window's row-major scan (PyTorch's rule); NaN wins. */
typedef struct nn_maxpool_desc {
    int64_t nc, h_in, w_in, k, stride, pad, h_out, w_out;
} nn_maxpool_desc;
optvq_status nn_maxpool_init(nn_maxpool_desc *d, int64_t nc, int64_t h, int64_t w, int64_t k,
                             int64_t stride, int64_t pad);
void nn_maxpool_forward(float *y, const float *x, const nn_maxpool_desc *d);
/* dx (nc, h, w) += dy (nc, h_out, w_out) routed to each window's argmax, which is
 * recomputed from the forward's input x (nc, h, w). */
void nn_maxpool_backward(float *dx, const float *dy, const float *x, const nn_maxpool_desc *d);
void nn_maxpool_forward_naive(float *y, const float *x, const nn_maxpool_desc *d);
void nn_maxpool_backward_naive(float *dx, const float *dy, const float *x,
                               const nn_maxpool_desc *d);

#endif
