/* libFuzzer target: model configurations, the reference's YAML (libyaml) and
 * config.json (cJSON), through model_config_parse (from memory, the input
 * not NUL-terminated) or model_config_load (from a file). Consumers: the
 * derived sizes, the quantizer built from the config (when small), and
 * model_config_save_json, whose output must parse back to the same
 * quantizer settings. */
#include "fuzz_common.h"
#include "model/model.h"

#include <math.h>

static void config_consume(const model_config *c)
{
    const coder_config *cs[2] = {&c->encoder, &c->decoder};
    for (int i = 0; i < 2; i++) {
        if (coder_hidden_dim(cs[i], i == 0) < 1)
            abort();
        int64_t f = coder_downsample(cs[i]);
        if (f < 1 || (f & (f - 1)))
            abort(); /* a power of two */
    }
    const optvq_quantizer_config *qc = &c->quantize;
    if (qc->n_e < 1 || qc->e_dim < 1 || qc->num_head < 1 || qc->e_dim % qc->num_head)
        abort(); /* parse accepted what the quantizer cannot be */
    if (qc->n_e * qc->e_dim <= (1 << 14) && qc->n_e * (qc->n_iters + 1) <= (1 << 16)) { /* bounded work */
        optvq_quantizer *q;
        optvq_status st = optvq_quantizer_create(qc, 1, &q);
        if (st != OPTVQ_OK) {
            fuzz_check_error(st);
        } else {
            int64_t C = qc->e_dim;
            float *x = malloc((size_t)(2 * C) * sizeof *x), *xq = malloc((size_t)(2 * C) * sizeof *xq), loss;
            int64_t *idx = malloc((size_t)(2 * qc->num_head) * sizeof *idx);
            for (int64_t i = 0; i < 2 * C; i++)
                x[i] = (float)(i % 5) - 2.0f;
            st = optvq_quantizer_forward(q, x, 2, 1, 1, xq, idx, &loss);
            if (st != OPTVQ_OK)
                fuzz_check_error(st);
            free(x);
            free(xq);
            free(idx);
            optvq_quantizer_free(q);
        }
    }
    /* save as config.json and read it back */
    char path[128];
    snprintf(path, sizeof path, "%s/optvq-fuzz-config-%ld.json", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp",
             (long)getpid());
    optvq_status st = model_config_save_json(c, path);
    if (st != OPTVQ_OK) {
        fuzz_check_error(st);
        return;
    }
    model_config back;
    st = model_config_load(path, &back);
    remove(path);
    if (st != OPTVQ_OK) {
        fprintf(stderr, "fuzz: a saved config does not load back: %s\n", optvq_last_error());
        abort();
    }
    const optvq_quantizer_config *b = &back.quantize;
    if (b->n_e != qc->n_e || b->e_dim != qc->e_dim || b->num_head != qc->num_head || b->assign != qc->assign ||
        b->loss != qc->loss || b->use_proj != qc->use_proj ||
        (qc->assign == OPTVQ_ASSIGN_SINKHORN &&
         (b->normalize != qc->normalize || b->n_iters != qc->n_iters || !(b->epsilon == qc->epsilon))) ||
        !(b->beta == qc->beta) || back.use_connector != c->use_connector ||
        back.encoder.arch != c->encoder.arch || back.decoder.arch != c->decoder.arch) {
        fprintf(stderr, "fuzz: a saved config loads back different\n");
        abort();
    }
}

int fuzz_config(const uint8_t *data, size_t size)
{
    model_config c;
    optvq_status st;
    if (size & 1) {
        st = model_config_load(fuzz_file(data, size), &c);
    } else {
        char *copy = malloc(size ? size : 1); /* exactly `size` bytes: no terminator to lean on */
        if (size)
            memcpy(copy, data, size);
        st = model_config_parse(copy, size, "fuzz", &c);
        free(copy);
    }
    if (st != OPTVQ_OK) {
        fuzz_check_error(st);
        return 0;
    }
    config_consume(&c);
    return 1;
}

#ifndef OPTVQ_FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_config(data, size);
    return 0;
}
#endif
