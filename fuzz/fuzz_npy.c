/* libFuzzer target: .npy reading (optvq_npy_read) and its consumers: the
 * dtype conversions, and the quantizer, which takes a float array as its
 * input x (N, C) / (B, C, H, W) and an integer array as indices to decode. */
#include "fuzz_common.h"

static void npy_consume(optvq_array *a)
{
    int64_t n = optvq_array_numel(a);
    size_t es = (a->dtype == OPTVQ_F64 || a->dtype == OPTVQ_I64) ? 8 : a->dtype == OPTVQ_U8 ? 1 : 4;
    volatile unsigned char s = 0;
    for (size_t i = 0; i < (size_t)n * es; i++) /* every byte is readable */
        s ^= ((const unsigned char *)a->data)[i];
    (void)s;

    int is_int = a->dtype == OPTVQ_I32 || a->dtype == OPTVQ_I64;
    optvq_status st = is_int ? optvq_array_to_i64(a) : optvq_array_to_f32(a);
    if (st != OPTVQ_OK) {
        fuzz_check_error(st);
        return;
    }
    /* a small quantizer: 8 codes of dimension C (2 heads when C is even) */
    if (a->ndim != 2 && a->ndim != 4)
        return;
    int64_t B = a->shape[0], C = a->shape[1], H = a->ndim == 4 ? a->shape[2] : 1, W = a->ndim == 4 ? a->shape[3] : 1;
    if (C < 1 || C > 64 || n > 4096)
        return;
    if (is_int) { /* (B, h, H, W) indices into 8 codes of a 2-head, e_dim 4 quantizer */
        optvq_quantizer_config cfg;
        optvq_quantizer_config_default(&cfg);
        cfg.n_e = 8, cfg.e_dim = 4, cfg.num_head = 2;
        optvq_quantizer *q;
        if (C != 2 || optvq_quantizer_create(&cfg, 1, &q) != OPTVQ_OK)
            return;
        int64_t m = B * 4 * H * W;
        float *xq = malloc((size_t)(m > 0 ? m : 1) * sizeof *xq);
        st = optvq_quantizer_decode(q, (const int64_t *)a->data, B, H, W, xq);
        if (st != OPTVQ_OK)
            fuzz_check_error(st);
        else
            fuzz_touch_floats(xq, B * 4 * H * W);
        optvq_usage u;
        st = optvq_usage_compute((const int64_t *)a->data, n, 8, &u);
        if (st != OPTVQ_OK)
            fuzz_check_error(st);
        free(xq);
        optvq_quantizer_free(q);
        return;
    }
    for (int variant = 0; variant < 3; variant++) {
        optvq_quantizer_config cfg;
        optvq_quantizer_config_default(&cfg);
        cfg.n_e = 8;
        cfg.e_dim = C;
        cfg.num_head = C % 2 ? 1 : 2;
        cfg.assign = variant == 2 ? OPTVQ_ASSIGN_NEAREST : OPTVQ_ASSIGN_SINKHORN;
        cfg.log_domain = variant == 1;
        cfg.normalize = (optvq_normalize)(n % 3);
        optvq_quantizer *q;
        if (optvq_quantizer_create(&cfg, 7, &q) != OPTVQ_OK)
            abort(); /* a valid configuration */
        float *xq = malloc((size_t)(n > 0 ? n : 1) * sizeof *xq), loss = 0;
        int64_t ni = B * cfg.num_head * H * W;
        int64_t *idx = malloc((size_t)(ni > 0 ? ni : 1) * sizeof *idx);
        st = optvq_quantizer_forward(q, (const float *)a->data, B, H, W, xq, idx, &loss);
        if (st != OPTVQ_OK) {
            fuzz_check_error(st);
        } else {
            for (int64_t i = 0; i < ni; i++)
                if (idx[i] < 0 || idx[i] >= cfg.n_e)
                    abort(); /* an index outside the codebook */
            for (int64_t i = 0; i < n; i++)
                if (!isfinite(xq[i]))
                    abort(); /* finite input, finite codes: finite output */
            float *gx = calloc((size_t)(n > 0 ? n : 1), sizeof *gx);
            st = optvq_quantizer_backward(q, NULL, 1.0f, gx);
            if (st != OPTVQ_OK)
                fuzz_check_error(st);
            free(gx);
        }
        free(xq);
        free(idx);
        optvq_quantizer_free(q);
    }
}

int fuzz_npy(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file(data, size);
    optvq_array a;
    optvq_status st = optvq_npy_read(path, &a);
    if (st != OPTVQ_OK) {
        fuzz_check_error(st);
        if (a.data)
            abort(); /* nothing is left allocated on failure */
        return 0;
    }
    npy_consume(&a);
    optvq_array_free(&a);
    return 1;
}

#ifndef OPTVQ_FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_npy(data, size);
    return 0;
}
#endif
