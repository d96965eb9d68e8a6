/* Codebook usage statistics: codes used, dead codes, perplexity. */
#include "core/error.h"
#include "optvq/optvq.h"

#include <math.h>
#include <stdlib.h>

optvq_status optvq_usage_compute(const int64_t *indices, int64_t count, int64_t n_e, optvq_usage *u)
{
    if (!indices)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: indices is NULL", __func__);
    if (!u)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: usage is NULL", __func__);
    /* n_e is capped as the quantizer caps it, so the histogram is never absurd */
    if (n_e < 1 || n_e > ((int64_t)1 << 31) || count < 0)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "usage: need n_e in [1, 2^31] and count >= 0, got n_e %lld, count %lld",
                          (long long)n_e, (long long)count);
    int64_t *hist = calloc((size_t)n_e, sizeof *hist);
    if (!hist)
        return optvq_fail(OPTVQ_ERR_NOMEM, "usage: out of memory for %lld codes", (long long)n_e);
    for (int64_t i = 0; i < count; i++) {
        if (indices[i] < 0 || indices[i] >= n_e) {
            free(hist);
            return optvq_fail(OPTVQ_ERR_INVALID_ARG, "usage: index %lld outside [0, %lld)", (long long)indices[i],
                              (long long)n_e);
        }
        hist[indices[i]]++;
    }
    int64_t used = 0;
    double entropy = 0;
    for (int64_t k = 0; k < n_e; k++) {
        if (!hist[k])
            continue;
        used++;
        double p = (double)hist[k] / (double)count;
        entropy -= p * log(p);
    }
    free(hist);
    u->n_e = n_e;
    u->codes_used = used;
    u->dead_codes = n_e - used;
    u->fraction_used = (double)used / (double)n_e;
    u->perplexity = exp(entropy);
    return OPTVQ_OK;
}
