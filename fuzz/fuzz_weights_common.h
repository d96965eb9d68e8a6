/* Consumers of a weights store, shared by fuzz_safetensors.c and fuzz_pth.c:
 * every tensor is read in full, looked up by name, loaded strictly into
 * buffers of its own shape (and refused for a wrong shape), and the first
 * 2-D tensor is used as a quantizer codebook (NaN/Inf must be refused). */
#ifndef OPTVQ_FUZZ_WEIGHTS_COMMON_H
#define OPTVQ_FUZZ_WEIGHTS_COMMON_H
#include "fuzz_common.h"
#include "io/weights.h"

#include <math.h>

static void weights_consume(optvq_weights *w)
{
    int64_t n = optvq_weights_count(w);
    const optvq_tensor *cb = NULL;
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        const optvq_tensor *t = optvq_weights_get(w, i);
        if (!t || !t->name || !t->name[0] || optvq_weights_find(w, t->name) != t)
            abort(); /* every tensor is found under its own name */
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++)
            numel *= t->shape[d];
        if (numel != t->numel || (numel && !t->data))
            abort();
        fuzz_touch_floats(t->data, t->numel);
        total += t->numel;
        (void)optvq_weights_normalise_name(t->name);
        if (!cb && t->ndim == 2 && t->shape[0] >= 1 && t->shape[0] <= 256 && t->shape[1] >= 1 && t->shape[1] <= 64)
            cb = t;
    }
    /* strict loading of (at most 64) tensors into buffers of their shapes */
    if (n <= 64 && total <= (1 << 22)) {
        optvq_expected_tensor *exp = calloc((size_t)(n > 0 ? n : 1), sizeof *exp);
        float **bufs = calloc((size_t)(n > 0 ? n : 1), sizeof *bufs);
        int64_t m = 0;
        for (int64_t i = 0; i < n; i++) {
            const optvq_tensor *t = optvq_weights_get(w, i);
            const char *norm = optvq_weights_normalise_name(t->name);
            if (!norm)
                continue; /* loss.* tensors are ignored by the loader */
            exp[m].name = norm;
            exp[m].ndim = t->ndim;
            memcpy(exp[m].shape, t->shape, sizeof t->shape);
            bufs[m] = malloc((size_t)(t->numel > 0 ? t->numel : 1) * sizeof(float));
            exp[m].dest = bufs[m];
            m++;
        }
        optvq_status st = optvq_weights_load_into(w, exp, m, "fuzz");
        if (st != OPTVQ_OK)
            fuzz_check_error(st); /* duplicates after normalisation, NaN/Inf */
        if (m > 0) { /* a wrong shape is always refused */
            optvq_expected_tensor keep = exp[0];
            if (exp[0].ndim < OPTVQ_MAX_DIMS)
                exp[0].shape[exp[0].ndim++] = 1;
            else
                exp[0].ndim--;
            st = optvq_weights_load_into(w, exp, m, "fuzz");
            if (st == OPTVQ_OK)
                abort();
            fuzz_check_error(st);
            exp[0] = keep;
        }
        for (int64_t i = 0; i < m; i++)
            free(bufs[i]);
        free(bufs);
        free(exp);
    }
    /* a 2-D tensor as the quantizer's codebook */
    if (cb) {
        optvq_quantizer_config cfg;
        optvq_quantizer_config_default(&cfg);
        cfg.n_e = cb->shape[0];
        cfg.e_dim = cb->shape[1];
        cfg.use_proj = 0;
        optvq_quantizer *q;
        if (optvq_quantizer_create(&cfg, 3, &q) != OPTVQ_OK)
            abort();
        int64_t cnt;
        float *emb = optvq_quantizer_param(q, OPTVQ_PARAM_EMBEDDING, &cnt);
        memcpy(emb, cb->data, (size_t)cnt * sizeof(float));
        int finite = 1;
        for (int64_t i = 0; i < cnt; i++)
            finite &= isfinite(emb[i]) != 0;
        float x[4 * 64], xq[4 * 64], loss;
        for (int i = 0; i < 4 * 64; i++)
            x[i] = (float)((i * 37) % 11) - 5.0f;
        int64_t idx[4];
        optvq_status st = optvq_quantizer_forward(q, x, 4, 1, 1, xq, idx, &loss);
        if (!finite && st != OPTVQ_ERR_NUMERIC)
            abort(); /* a non-finite codebook must be refused */
        if (st != OPTVQ_OK)
            fuzz_check_error(st);
        else
            for (int i = 0; i < 4; i++)
                if (idx[i] < 0 || idx[i] >= cfg.n_e)
                    abort();
        optvq_quantizer_free(q);
    }
}

#endif
