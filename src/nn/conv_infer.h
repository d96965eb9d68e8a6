/* The inference convolution (conv_infer.c): which path computes a
 * convolution outside training, and the cache of what those paths derive
 * from the weights.
 *
 *   fp32 (the default, exact to float rounding): Winograd F(4x4, 3x3) where it
 *        pays (nn/conv_winograd.h), else conv2d's own paths;
 *   bf16: through nn/conv_bf16.h (weights and activations rounded to bf16,
 *        fp32 sums) where that pays (nn_conv_bf16_pays), else as fp32.
 *
 * A model owns one cache for its inference graphs; training passes none and
 * keeps conv2d's paths, so training never depends on these. */
#ifndef OPTVQ_NN_CONV_INFER_H
#define OPTVQ_NN_CONV_INFER_H
#include "nn/nn.h"

#include <stdint.h>

typedef enum nn_precision { NN_PRECISION_FP32 = 0, NN_PRECISION_BF16 = 1 } nn_precision;

/* What the paths derive from a weight tensor: Winograd's filter transforms
 * (36 c_out c_in floats, 4x the 3x3 weights) and bf16 packed weights (half
 * the weights). Entries are keyed by weight pointer, kind and size, and keep
 * a hash of the weights they came from: recomputed when the weights change
 * (training, loading), so a stale entry is never used. Entries are kept while
 * they fit in the budget; the others are recomputed into the workspace at
 * every call. */
typedef struct nn_conv_cache nn_conv_cache;

/* Default budget in MiB (see nn_conv_cache_budget). The f16 coders' 44
 * Winograd layers at 256x256 would take 288 MiB; recomputing a transform costs
 * ~40 ns per (input, output) channel pair, ~2% of an encode+decode for all of
 * them; a 64 MiB cache saved under 1% (within the noise on 2 threads) for 63
 * MiB of peak memory, so by default none is kept. */
#define NN_CONV_CACHE_MB 0
/* Bytes: OPTVQ_CONV_CACHE_MB (read at each call; OPTVQ_WINOGRAD_CACHE_MB, its
 * earlier name, also works) or the default. */
size_t nn_conv_cache_budget(void);
/* A cache holding at most max_bytes, precision fp32; NULL when out of memory
 * (the error message is set). */
nn_conv_cache *nn_conv_cache_create(size_t max_bytes);
void nn_conv_cache_free(nn_conv_cache *c);
/* Bytes the cache holds (derived weights and bookkeeping). */
size_t nn_conv_cache_bytes(const nn_conv_cache *c);
/* The precision of the convolutions run with this cache (default fp32). */
void nn_conv_cache_set_precision(nn_conv_cache *c, nn_precision p);
nn_precision nn_conv_cache_precision(const nn_conv_cache *c);

/* For the paths: what kind of derived weights. */
typedef enum nn_derived_kind { NN_DERIVED_WINOGRAD = 1, NN_DERIVED_BF16 = 2 } nn_derived_kind;
/* fill(dst, w, ctx) computes the derived form of w into dst (bytes long). */
typedef optvq_status (*nn_derive_fn)(void *dst, const float *w, const void *ctx);
/* *out = the derived form of w (w_count floats, `bytes` derived): the cached
 * one when current, else computed into the cache while the budget allows,
 * else into `scratch` (NULL: *out = NULL, nothing computed). */
optvq_status nn_conv_cache_derived(nn_conv_cache *c, nn_derived_kind kind, const float *w, int64_t w_count,
                                   size_t bytes, nn_derive_fn fill, const void *ctx, void *scratch,
                                   const void **out);

/* The inference convolution: with a bf16 cache the bf16 path where it pays;
 * otherwise Winograd when the switch is on and nn_conv_winograd_pays(d); else (and
 * without a cache) nn_conv2d_forward. Workspace: nn_conv2d_workspace_infer for
 * the cache's precision. */
optvq_status nn_conv2d_forward_infer(float *y, const float *x, const float *w, const float *b,
                                     const nn_conv2d_desc *d, nn_workspace *ws, nn_conv_cache *cache);
/* Workspace floats of nn_conv2d_forward_infer given a cache of precision p,
 * for the Winograd switch as it is now: only the path it takes (often far
 * less than nn_conv2d_workspace, e.g. a third at 256 x 256 x 128 channels). */
size_t nn_conv2d_workspace_infer(const nn_conv2d_desc *d, nn_precision p);

#endif
