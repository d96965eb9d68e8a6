/* One batch of the evaluation: encoder, quantizer, decoder, and |z - x_q|^2. */
#include "eval/eval_model.h"

#include "core/error.h"
#include "model/vqmodel.h"

#include <math.h>
#include <stdlib.h>

optvq_status eval_model_batch(optvq_model *m, const float *images, int64_t batch, int64_t height, int64_t width,
                              float *recon, int64_t *tokens, double *sq_err_sum, int64_t *sq_err_count)
{
    if (!m || !images || !recon || !sq_err_sum || !sq_err_count)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "eval: NULL argument");
    optvq_model_info info;
    OPTVQ_TRY(optvq_model_get_info(m, &info));
    const int64_t f = info.downsample;
    if (batch < 1 || f < 1 || height < f || width < f || height % f || width % f)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG,
                          "eval: images must be (B >= 1, %lld, H, W) with H, W multiples of %lld; got (%lld, ., %lld, %lld)",
                          (long long)info.in_channels, (long long)f, (long long)batch, (long long)height,
                          (long long)width);
    const int64_t lh = height / f, lw = width / f, count = batch * info.e_dim * lh * lw;
    float *z = malloc((size_t)count * sizeof(float)), *xq = malloc((size_t)count * sizeof(float));
    int64_t *tok = tokens ? tokens : malloc((size_t)(batch * info.num_head * lh * lw) * sizeof(int64_t));
    optvq_status st = OPTVQ_OK;
    if (!z || !xq || !tok) {
        st = optvq_fail(OPTVQ_ERR_NOMEM, "eval: out of memory for a batch of %lld latents", (long long)batch);
        goto done;
    }
    /* model_encoder_forward prepares the model for this shape, decoder included,
     * so model_decode_latent may follow it directly. */
    if ((st = model_encoder_forward(m, images, batch, height, width, z)) != OPTVQ_OK)
        goto done;
    if ((st = optvq_quantizer_forward(optvq_model_quantizer(m), z, batch, lh, lw, xq, tok, NULL)) != OPTVQ_OK)
        goto done;
    if ((st = model_decode_latent(m, xq, batch, lh, lw, recon)) != OPTVQ_OK)
        goto done;
    double s = 0.0;
    for (int64_t i = 0; i < count; i++) {
        double d = (double)z[i] - (double)xq[i];
        s += d * d;
    }
    *sq_err_sum = s;
    *sq_err_count = count;
done:
    free(z);
    free(xq);
    if (tok != tokens)
        free(tok);
    return st;
}

optvq_status eval_usage_from_histogram(const int64_t *hist, int64_t n_e, optvq_usage *u)
{
    if (!hist || !u || n_e < 1)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "usage: need a histogram of n_e >= 1 codes");
    int64_t count = 0, used = 0;
    for (int64_t k = 0; k < n_e; k++) {
        if (hist[k] < 0)
            return optvq_fail(OPTVQ_ERR_INVALID_ARG, "usage: negative count for code %lld", (long long)k);
        count += hist[k];
    }
    double entropy = 0; /* as quant/usage.c: codes in order, p = count_k / total */
    for (int64_t k = 0; k < n_e; k++) {
        if (!hist[k])
            continue;
        used++;
        double p = (double)hist[k] / (double)count;
        entropy -= p * log(p);
    }
    u->n_e = n_e;
    u->codes_used = used;
    u->dead_codes = n_e - used;
    u->fraction_used = (double)used / (double)n_e;
    u->perplexity = exp(entropy);
    return OPTVQ_OK;
}
