/*
 * optvq.h — public C API of liboptvq.
 *
 * OptVQ: vector quantization by entropic optimal transport (Sinkhorn-Knopp)
 * over the whole batch, so that every code receives mass and none dies.
 *
 * Conventions
 *   - Every function that can fail returns an optvq_status; on failure
 *     optvq_last_error() holds a one-line message (thread-local).
 *   - Arguments are checked, never trusted: a NULL handle, a NULL pointer
 *     that is not marked "may be NULL", a size out of range or an unknown
 *     enum value gives OPTVQ_ERR_INVALID_ARG (OPTVQ_ERR_NOMEM for sizes too
 *     large to be real). Pointers marked "may be NULL" are optional outputs.
 *   - Functions returning void or a pointer accept NULL handles: *_free and
 *     setters do nothing, getters return NULL or 0.
 *   - The library never aborts, exits or prints.
 *   - Handles are opaque: optvq_X_create() / optvq_X_free().
 *   - Arrays are float32, C order. Image-like tensors are NCHW.
 *   - Backward passes ACCUMULATE (+=) into gradient buffers; zero them first.
 */
#ifndef OPTVQ_H
#define OPTVQ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* liboptvq is built with -fvisibility=hidden: what this header declares is
 * all that the shared library exports. */
#if defined(__GNUC__) && defined(OPTVQ_BUILDING_LIBRARY)
#pragma GCC visibility push(default)
#endif

#define OPTVQ_VERSION_MAJOR 0
#define OPTVQ_VERSION_MINOR 1
#define OPTVQ_VERSION_PATCH 0

typedef enum optvq_status {
    OPTVQ_OK = 0,
    OPTVQ_ERR_INVALID_ARG = 1, /* a size, pointer or option is wrong        */
    OPTVQ_ERR_NOMEM = 2,       /* an allocation failed or would be absurd   */
    OPTVQ_ERR_IO = 3,          /* a file could not be opened/read/written   */
    OPTVQ_ERR_FORMAT = 4,      /* a file is malformed or of the wrong kind  */
    OPTVQ_ERR_NUMERIC = 5,     /* NaN/Inf met where a finite value is needed */
    OPTVQ_ERR_STATE = 6        /* call out of order (e.g. backward first)   */
} optvq_status;

const char *optvq_version(void);
const char *optvq_status_string(optvq_status status);
/* Message of the last failure on this thread ("" when none). */
const char *optvq_last_error(void);
/* Threads used by the library's parallel loops (0 or negative = all cores;
 * more than 1024 counts as 1024). */
void optvq_set_num_threads(int num_threads);
int optvq_get_num_threads(void);

/* ------------------------------------------------------------------------ */
/* Quantizer                                                                 */
/* ------------------------------------------------------------------------ */

typedef enum optvq_assign {
    OPTVQ_ASSIGN_SINKHORN = 0, /* optimal transport over the batch (OptVQ)  */
    OPTVQ_ASSIGN_NEAREST = 1   /* nearest code (vanilla VQ baseline)        */
} optvq_assign;

typedef enum optvq_normalize {
    OPTVQ_NORMALIZE_ALL = 0,  /* (D - mean) / (std + 1e-6), then - min       */
    OPTVQ_NORMALIZE_DIM = 1,  /* D / sqrt(code_dim)                           */
    OPTVQ_NORMALIZE_NULL = 2  /* D unchanged                                  */
} optvq_normalize;

typedef enum optvq_loss {
    OPTVQ_LOSS_L2 = 0,
    OPTVQ_LOSS_L1 = 1,
    OPTVQ_LOSS_CE = 2
} optvq_loss;

typedef enum optvq_reduce_op {
    OPTVQ_REDUCE_SUM = 0,
    OPTVQ_REDUCE_MAX = 1
} optvq_reduce_op;

/* Reduce `count` doubles in place across processes (data-parallel Sinkhorn:
 * the total mass, the per-code sums and N; MAX is used by the log-domain
 * mode). Return 0 on success. NULL in the config means one process. */
typedef int (*optvq_allreduce_fn)(double *values, size_t count, optvq_reduce_op op, void *ctx);

typedef struct optvq_quantizer_config {
    int64_t n_e;              /* number of codes                      (1024) */
    int64_t e_dim;            /* channels of the features               (256) */
    int64_t num_head;         /* heads sharing one codebook; e_dim % h == 0 */
    optvq_assign assign;      /*                                   SINKHORN */
    optvq_normalize normalize;/*                                        ALL */
    optvq_loss loss;          /*                                         L2 */
    float beta;               /* weight of the codebook term           0.25 */
    float epsilon;            /* Sinkhorn inverse temperature            10 */
    int n_iters;              /* Sinkhorn iterations                      5 */
    int use_proj;             /* codebook = E W^T + b                     1 */
    int log_domain;           /* stabilised Sinkhorn, never underflows    0 */
    size_t workspace_bytes;   /* cap on the N x n_e matrix (0 = 1 GiB)     */
    optvq_allreduce_fn allreduce; /* NULL: single process                  */
    void *allreduce_ctx;
} optvq_quantizer_config;

/* Fills the defaults above (the shipped configs' values); NULL: no-op. */
void optvq_quantizer_config_default(optvq_quantizer_config *config);

typedef struct optvq_quantizer optvq_quantizer;

typedef enum optvq_param {
    OPTVQ_PARAM_EMBEDDING = 0,   /* (n_e, code_dim)       quantize.embedding.weight */
    OPTVQ_PARAM_PROJ_WEIGHT = 1, /* (code_dim, code_dim)  quantize.proj.weight      */
    OPTVQ_PARAM_PROJ_BIAS = 2    /* (code_dim)            quantize.proj.bias        */
} optvq_param;

/* Parameters are initialised as PyTorch does (embedding N(0,1), proj weight
 * N(0, code_dim^-1/2), proj bias U(+-code_dim^-1/2)) from `seed`.
 * config and out are required; *out is NULL on failure. */
optvq_status optvq_quantizer_create(const optvq_quantizer_config *config, uint64_t seed,
                                    optvq_quantizer **out);
void optvq_quantizer_free(optvq_quantizer *q);
const optvq_quantizer_config *optvq_quantizer_get_config(const optvq_quantizer *q);

/* Parameter and gradient storage (owned by q). *count receives the element
 * count (count may be NULL). NULL, and *count = 0, when the parameter does
 * not exist (projection off), q is NULL or `which` is unknown. */
float *optvq_quantizer_param(optvq_quantizer *q, optvq_param which, int64_t *count);
float *optvq_quantizer_grad(optvq_quantizer *q, optvq_param which, int64_t *count);
void optvq_quantizer_zero_grad(optvq_quantizer *q);

/* Forward pass.
 *   x        (batch, e_dim, height, width)   features, NCHW; a (N, e_dim)
 *                                            matrix is batch=N, height=width=1
 *   x_q      (batch, e_dim, height, width)   quantized (straight-through) output
 *                                            (may be NULL: assignment only)
 *   indices  (batch, num_head, height, width) chosen codes (may be NULL)
 *   loss     scalar quantizer loss            (may be NULL)
 * height, width >= 1; batch >= 0: an empty batch (a data-parallel rank with
 * no local samples) is valid and gives loss NaN, as PyTorch's mean does.
 * The state needed by backward is kept inside q until the next forward. */
optvq_status optvq_quantizer_forward(optvq_quantizer *q, const float *x, int64_t batch,
                                     int64_t height, int64_t width, float *x_q,
                                     int64_t *indices, float *loss);

/* Backward pass of  loss_weight * loss + sum(x_q * grad_xq).
 *   grad_xq  (batch, e_dim, height, width) or NULL (no gradient from x_q)
 *   grad_x   (batch, e_dim, height, width) accumulated (may be NULL)
 *   loss_weight must be finite.
 * Parameter gradients are accumulated into optvq_quantizer_grad(). */
optvq_status optvq_quantizer_backward(optvq_quantizer *q, const float *grad_xq,
                                      float loss_weight, float *grad_x);

/* Switches the assignment (e.g. nearest at inference for per-image tokens). */
optvq_status optvq_quantizer_set_assign(optvq_quantizer *q, optvq_assign assign);

/* The effective codebook (n_e, code_dim): E W^T + b, or E (codebook required). */
optvq_status optvq_quantizer_codebook(optvq_quantizer *q, float *codebook);

/* indices (batch, num_head, height, width) -> x_q (batch, e_dim, height, width).
 * Equals the x_q of the forward pass that produced the indices, exactly.
 * Both arrays are required; shapes as in optvq_quantizer_forward(). */
optvq_status optvq_quantizer_decode(optvq_quantizer *q, const int64_t *indices,
                                    int64_t batch, int64_t height, int64_t width,
                                    float *x_q);

typedef struct optvq_usage {
    int64_t n_e;
    int64_t codes_used;     /* codes chosen at least once                  */
    int64_t dead_codes;     /* n_e - codes_used                            */
    double fraction_used;   /* codes_used / n_e                            */
    double perplexity;      /* exp(entropy of the code histogram)          */
} optvq_usage;

/* Usage statistics of `count` indices into a codebook of n_e codes.
 * indices and usage are required; count >= 0 (0: no code used, perplexity
 * 1); n_e in [1, 2^31]. */
optvq_status optvq_usage_compute(const int64_t *indices, int64_t count, int64_t n_e,
                                 optvq_usage *usage);

/* ------------------------------------------------------------------------ */
/* Models: VQModel = encoder -> quant_conv -> quantizer -> post_quant_conv ->  */
/* decoder (plain CNN or taming VQGAN), images NCHW in [-1, 1]                */
/* ------------------------------------------------------------------------ */

typedef struct optvq_model optvq_model;

/* With weights == NULL, `path` is a folder holding config.json and
 * model.safetensors (the Hugging Face layout); otherwise `path` is a config
 * (the reference's YAML or a config.json) and `weights` a .safetensors or
 * PyTorch .pth/.ckpt file. Weights are loaded strictly by name.
 * path and out are required, weights may be NULL; *out is NULL on failure. */
optvq_status optvq_model_load(const char *path, const char *weights, optvq_model **out);
/* A model with PyTorch's default initialisation from `seed` (both pointers required). */
optvq_status optvq_model_create(const char *config_path, uint64_t seed, optvq_model **out);
void optvq_model_free(optvq_model *m);
/* Writes DIR/config.json and DIR/model.safetensors (m and dir required). */
optvq_status optvq_model_save(optvq_model *m, const char *dir);

typedef struct optvq_model_info {
    int64_t in_channels, out_channels; /* image channels                     */
    int64_t resolution;                /* training resolution of the config  */
    int64_t downsample;                /* image size / token grid size       */
    int64_t e_dim, num_head, n_e, code_dim;
    optvq_assign assign;
    const char *encoder_arch, *decoder_arch;
    int64_t params_total, params_encoder, params_decoder, params_connectors, params_quantizer;
} optvq_model_info;
/* Fills *info (both pointers required). */
optvq_status optvq_model_get_info(const optvq_model *m, optvq_model_info *info);
/* A NULL model or an unknown value changes nothing (see optvq_last_error()). */
void optvq_model_set_assign(optvq_model *m, optvq_assign assign);
/* The model's quantizer (owned by m); NULL for a NULL model. */
optvq_quantizer *optvq_model_quantizer(optvq_model *m);

/* The arithmetic of encode, decode and reconstruct. Training, the quantizer
 * and the attention blocks always run in float32. In bf16 a convolution
 * takes bf16 weights and activations and sums in float32: on CPUs with
 * AVX512-BF16 about twice the speed of float32, close to but not equal to it
 * (README: "Precision"). */
typedef enum optvq_precision {
    OPTVQ_PRECISION_FP32 = 0,    /* the default: float32 throughout                    */
    OPTVQ_PRECISION_BF16 = 1,    /* the decoder in bf16; the encoder stays float32, so
                                    tokens are exactly float32's                       */
    OPTVQ_PRECISION_BF16_ALL = 2 /* the encoder in bf16 too: a faster encode, but a few
                                    percent of tokens differ from float32's            */
} optvq_precision;
/* OPTVQ_ERR_INVALID_ARG for a NULL model or an unknown value (unchanged then). */
optvq_status optvq_model_set_precision(optvq_model *m, optvq_precision precision);
/* The model's precision; OPTVQ_PRECISION_FP32 for a NULL model. */
optvq_precision optvq_model_get_precision(const optvq_model *m);
/* 1 when this CPU computes bf16 products in hardware (AVX512-BF16); elsewhere
 * bf16 gives the same numbers through a portable kernel, slower than float32. */
int optvq_bf16_native(void);

/* images (B, in_channels, H, W) -> tokens (B, num_head, H/f, W/f);
 * latent (B, e_dim, H/f, W/f) receives x_q (may be NULL). images and tokens
 * are required; B >= 1, H and W positive multiples of f (downsample). */
optvq_status optvq_model_encode(optvq_model *m, const float *images, int64_t batch, int64_t height,
                                int64_t width, int64_t *tokens, float *latent);
/* tokens (B, num_head, h, w) -> images (B, out_channels, h*f, w*f); both
 * required, B, h, w >= 1. */
optvq_status optvq_model_decode(optvq_model *m, const int64_t *tokens, int64_t batch, int64_t token_h,
                                int64_t token_w, float *images);
/* encode then decode; tokens (may be NULL) receives the codes. Equal, byte for
 * byte, to decode(encode(images)). images and out are required. */
optvq_status optvq_model_reconstruct(optvq_model *m, const float *images, int64_t batch, int64_t height,
                                     int64_t width, float *out, int64_t *tokens);

/* ------------------------------------------------------------------------ */
/* NumPy .npy arrays                                                         */
/* ------------------------------------------------------------------------ */

typedef enum optvq_dtype {
    OPTVQ_F32 = 0,
    OPTVQ_F64 = 1,
    OPTVQ_I32 = 2,
    OPTVQ_I64 = 3,
    OPTVQ_U8 = 4      /* images as NumPy keeps them (0..255) */
} optvq_dtype;

#define OPTVQ_MAX_DIMS 8

typedef struct optvq_array {
    optvq_dtype dtype;
    int ndim;
    int64_t shape[OPTVQ_MAX_DIMS];
    void *data; /* C order, native little-endian; free with optvq_array_free */
} optvq_array;

/* Product of the shape: 0 for NULL, -1 when ndim or a dimension is out of
 * range (negative, over OPTVQ_MAX_DIMS, a product over 2^40). */
int64_t optvq_array_numel(const optvq_array *a);
/* Reads a .npy file (float32/float64/int32/int64/uint8, C order, little-endian).
 * Both pointers required; out->data is NULL on failure. */
optvq_status optvq_npy_read(const char *path, optvq_array *out);
/* Converts in place to float32 (values kept, uint8 too) / int64 (from int32 only). */
optvq_status optvq_array_to_f32(optvq_array *a);
optvq_status optvq_array_to_i64(optvq_array *a);
/* Writes atomically (temporary file, fsync, rename). ndim in [0, 8] (0: a
 * scalar; shape may then be NULL); dimensions >= 0 (0: an empty array; data
 * may then be NULL). */
optvq_status optvq_npy_write(const char *path, optvq_dtype dtype, int ndim,
                             const int64_t *shape, const void *data);
/* Frees a->data and empties a; NULL: no-op. */
void optvq_array_free(optvq_array *a);

#if defined(__GNUC__) && defined(OPTVQ_BUILDING_LIBRARY)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif /* OPTVQ_H */
