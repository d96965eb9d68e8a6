/* The model's blocks, each a forward/backward pair over float32 NCHW
 * buffers: a conv or transposed conv, ReLU, and the taming blocks
 * (ResnetBlock, AttnBlock, Upsample + conv, GroupNorm + swish) whose
 * residual connections stay inside the block, so a model is a linear chain
 * of blocks (src/model/graph.c). A block registers its own parameters, with
 * their state-dict names and roles, and says what memory it needs for a
 * given input shape, for inference and for training.
 *
 * Memory a block uses besides its input x and output y:
 *   saved    training only: what backward needs beyond x (ResnetBlock: the
 *            conv1 output h1 (b, cout, h, w), its norms and swishes being
 *            recomputed in backward; AttnBlock: nn_attn_saved floats);
 *            NULL in inference, where the block keeps nothing
 *   scratch  up to BLOCK_MAX_SCRATCH buffers of one common size, reused by
 *            every block; inference needs fewer than training
 *   ws       the nn workspace of the kernels (ws_infer: of an inference
 *            forward alone, which needs less) */
#ifndef OPTVQ_MODEL_BLOCKS_H
#define OPTVQ_MODEL_BLOCKS_H
#include "nn/nn.h"

/* The taming VQGAN's Normalize(): GroupNorm(32 groups, eps 1e-6). */
#define BLOCK_GN_GROUPS 32
#define BLOCK_GN_EPS 1e-6f
#define BLOCK_MAX_SCRATCH 3

typedef enum block_kind {
    BLOCK_CONV,       /* conv2d, any kernel / stride / padding per side        */
    BLOCK_CONVT,      /* conv_transpose2d, kernel k, stride k (plain decoder)  */
    BLOCK_RELU,
    BLOCK_RESBLOCK,   /* taming ResnetBlock (nin_shortcut when cin != cout)   */
    BLOCK_ATTN,       /* taming AttnBlock                                     */
    BLOCK_UPCONV,     /* taming Upsample: nearest x2, then conv3x3            */
    BLOCK_NORM_SWISH  /* GroupNorm then swish (norm_out)                      */
} block_kind;

/* One layer's parameters and their gradients (bias may be absent). */
typedef struct block_layer {
    const float *w, *b;
    float *dw, *db;
} block_layer;

typedef struct block {
    block_kind kind;
    char name[NN_PARAM_NAME_MAX]; /* state-dict prefix, e.g. "decoder.up.3.block.0" */
    int64_t cin, cout;            /* channels in and out                          */
    int64_t k, stride, pt, pb, pl, pr;
    int first_param, n_params;    /* its parameters: registry entries first..+n    */
    /* bound by block_bind once the registry is finalized */
    block_layer conv;             /* CONV, CONVT, UPCONV; NORM_SWISH: the norm   */
    block_layer norm1, conv1, norm2, conv2, nin; /* RESBLOCK (nin.w NULL: identity shortcut) */
    nn_attn_params ap;            /* ATTN */
    nn_attn_grads ag;
} block;

/* Input shape of a block: (b, c, h, w). */
typedef struct block_shape {
    int64_t b, c, h, w;
} block_shape;

/* What a block needs for one input shape (floats). */
typedef struct block_need {
    size_t ws;            /* nn workspace                                */
    size_t ws_infer;      /* nn workspace of an inference forward given an
                             fp32 cache (only the paths it takes)        */
    size_t ws_infer_bf16; /* the same given a bf16 cache                 */
    size_t saved;         /* training: kept from forward for backward    */
    size_t scratch;       /* per scratch buffer                          */
    int scratch_infer;    /* scratch buffers for an inference forward    */
    int scratch_train;    /* scratch buffers for training forward+backward */
} block_need;

/* Registers b's parameters (b->name, cin, cout, k and kind set) under
 * b->name.<layer>.weight / .bias with their roles, each with `group`. */
optvq_status block_register(block *b, nn_params *p, int group);
/* Points b's layers at its registry entries (after nn_params_finalize). */
void block_bind(block *b, const nn_params *p);

/* The output shape for input s and what the block needs; an error when the
 * input does not fit the block (channels, groups, too small). */
optvq_status block_plan(const block *b, block_shape s, block_shape *out, block_need *need);

/* y <- block(x); y may not alias x. saved: the block's saved state in
 * training, NULL in inference. scratch: as many buffers as block_plan says.
 * conv: inference only, the inference convolutions' cache (nn/conv_infer.h):
 * its precision, and Winograd transforms or bf16 packed weights; NULL:
 * conv2d's own paths (training). */
struct nn_conv_cache;
optvq_status block_forward(const block *b, float *y, const float *x, block_shape s, float *saved,
                           float *const *scratch, nn_workspace *ws, struct nn_conv_cache *conv);

/* Backward after block_forward with saved state: parameter gradients +=,
 * dx (b, cin, h, w) += (NULL: not wanted). dy is used as scratch once read. */
optvq_status block_backward(const block *b, float *dx, float *dy, const float *x, block_shape s, const float *saved,
                            float *const *scratch, nn_workspace *ws);

#endif
