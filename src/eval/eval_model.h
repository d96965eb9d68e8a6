/* One batch of `optvq eval` (internal module): the model's reconstruction plus
 * what the quantizer did, from a single encoder pass.
 *
 *   images (B, in_channels, H, W) in [-1, 1]
 *     -> z   = encoder + quant_conv       (B, e_dim, H/f, W/f)  quantizer input
 *     -> x_q = quantizer(z), tokens       (B, e_dim, ...), (B, num_head, H/f, W/f)
 *     -> recon = post_quant_conv + decoder(x_q)  (B, out_channels, H, W)
 *
 * recon and tokens equal optvq_model_reconstruct()'s byte for byte (tested).
 * The quantization error is sum over elements of (z - x_q)^2: divided by the
 * element count it is the mean squared distance between a feature and its
 * code, i.e. the reference's L2 quantizer loss without the (1 + beta) factor. */
#ifndef OPTVQ_EVAL_EVAL_MODEL_H
#define OPTVQ_EVAL_EVAL_MODEL_H
#include <stdint.h>

#include "optvq/optvq.h"

/* tokens may be NULL. *sq_err_sum receives sum (z - x_q)^2 over the batch and
 * *sq_err_count the number of elements (B * e_dim * H/f * W/f). */
optvq_status eval_model_batch(optvq_model *m, const float *images, int64_t batch, int64_t height, int64_t width,
                              float *recon, int64_t *tokens, double *sq_err_sum, int64_t *sq_err_count);

/* Codebook usage from a histogram of code counts (hist[k] = how often code k
 * was chosen; n_e codes): the same statistics, computed the same way, as
 * optvq_usage_compute() on the list of indices the histogram counts, without
 * holding that list. Counts must be >= 0. */
optvq_status eval_usage_from_histogram(const int64_t *hist, int64_t n_e, optvq_usage *usage);

#endif
