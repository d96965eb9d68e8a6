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
#include "nn/nn.h"

/* Filter transforms keyed by weight pointer and shape; each entry keeps a
 * hash of the weights it came from and is recomputed when they change
 * (training, loading), so a stale transform is never used. Transforms are
 * kept while they fit in the cache's budget; the others are recomputed into
 * the workspace at every call (measured ~3 ms for 256 x 256 channels, ~11 ms
 * for 512 x 512, one thread). */
typedef struct nn_winograd_cache nn_winograd_cache;

/* The default budget in MiB; OPTVQ_WINOGRAD_CACHE_MB=N overrides it (see
 * nn_winograd_cache_budget). The f16 coders' 44 Winograd layers at 256x256
 * would take 288 MiB; recomputing a transform costs ~40 ns per (input,
 * output) channel pair, ~2% of an encode+decode for all of them. A 64 MiB
 * cache saved under 1% of the time (within the noise on 2 threads) for 63
 * MiB of peak memory, a quarter of what inference needs besides the
 * weights, so by default none is kept. */
#define NN_WINOGRAD_CACHE_MB 0
/* Bytes: OPTVQ_WINOGRAD_CACHE_MB (read at each call) or the default. */
size_t nn_winograd_cache_budget(void);
/* A cache holding at most max_bytes of transforms; NULL when out of memory
 * (the error message is set). */
nn_winograd_cache *nn_winograd_cache_create(size_t max_bytes);
void nn_winograd_cache_free(nn_winograd_cache *c);
/* Bytes the cache holds (filter transforms and bookkeeping). */
size_t nn_winograd_cache_bytes(const nn_winograd_cache *c);

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
                                      const nn_conv2d_desc *d, nn_workspace *ws, nn_winograd_cache *cache);

/* The switch (see above): 1 when on. */
int nn_conv_winograd_enabled(void);
void nn_conv_winograd_set_enabled(int on);

/* The inference convolution: Winograd when cache is not NULL, the switch is
 * on and nn_conv_winograd_pays(d), else nn_conv2d_forward. nn_conv2d_workspace
 * covers both. */
optvq_status nn_conv2d_forward_infer(float *y, const float *x, const float *w, const float *b,
                                     const nn_conv2d_desc *d, nn_workspace *ws, nn_winograd_cache *cache);
/* Workspace floats of nn_conv2d_forward_infer given a cache, for the switch
 * as it is now: only the path it takes (often far less than
 * nn_conv2d_workspace, e.g. a third at 256 x 256 x 128 channels). */
size_t nn_conv2d_workspace_infer(const nn_conv2d_desc *d);

#endif
