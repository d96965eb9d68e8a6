/* The 2-D toy's computation (see toy_sim.h). */
#include "cli/toy_sim.h"

#include "core/error.h"
#include "core/rng.h"
#include "train/adamw.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void toy_sim_config_default(toy_sim_config *cfg)
{
    cfg->points = 50;
    cfg->codes = 25;
    cfg->seed = 0;
    cfg->epsilon = 10.0f;
    cfg->n_iters = 5;
}

/* Prefixes the library's message with the quantizer and the step. */
static optvq_status fail_q(const toy_quant *t, const char *what, int64_t step)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s", optvq_last_error());
    optvq_status st = optvq_last_status();
    return optvq_fail(st == OPTVQ_OK ? OPTVQ_ERR_STATE : st, "%s %s at step %" PRId64 ": %s", t->name, what, step,
                      msg);
}

void toy_sim_free(toy_sim *sim)
{
    for (int r = 0; r < 2; r++) {
        toy_quant *t = &sim->run[r];
        optvq_quantizer_free(t->q);
        free(t->m);
        free(t->v);
        free(t->codebook);
        free(t->indices);
        free(t->x_q);
    }
    free(sim->x);
    free(sim->init_codes);
    memset(sim, 0, sizeof *sim);
}

optvq_status toy_sim_init(toy_sim *sim, const toy_sim_config *cfg)
{
    memset(sim, 0, sizeof *sim);
    if (cfg->points < 1 || cfg->codes < 1 || !(cfg->epsilon > 0.0f) || cfg->n_iters < 1)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "toy: points, codes, epsilon and iterations must be positive");
    sim->cfg = *cfg;
    const int64_t N = cfg->points, K = cfg->codes;
    sim->run[TOY_VANILLA].name = "vanilla VQ";
    sim->run[TOY_OPTVQ].name = "OptVQ";
    sim->x = malloc(sizeof(float) * 2 * (size_t)N);
    sim->init_codes = malloc(sizeof(float) * 2 * (size_t)K);
    if (!sim->x || !sim->init_codes) {
        toy_sim_free(sim);
        return optvq_fail(OPTVQ_ERR_NOMEM, "out of memory");
    }
    /* the data and the initial codes, from one seeded stream */
    optvq_rng rng;
    optvq_rng_seed(&rng, cfg->seed);
    for (int64_t i = 0; i < 2 * N; i++)
        sim->x[i] = (float)(1.5 * optvq_rng_normal(&rng) + 2.0);
    for (int64_t i = 0; i < 2 * K; i++)
        sim->init_codes[i] = (float)optvq_rng_normal(&rng);

    for (int r = 0; r < 2; r++) {
        toy_quant *t = &sim->run[r];
        optvq_quantizer_config qc;
        optvq_quantizer_config_default(&qc);
        qc.n_e = K;
        qc.e_dim = 2;
        qc.num_head = 1;
        qc.assign = r == TOY_VANILLA ? OPTVQ_ASSIGN_NEAREST : OPTVQ_ASSIGN_SINKHORN;
        qc.normalize = OPTVQ_NORMALIZE_ALL;
        qc.loss = OPTVQ_LOSS_L2;
        qc.beta = 1.0f;
        qc.epsilon = cfg->epsilon;
        qc.n_iters = cfg->n_iters;
        qc.use_proj = 0;
        if (optvq_quantizer_create(&qc, cfg->seed, &t->q) != OPTVQ_OK) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", optvq_last_error());
            optvq_status st = optvq_last_status();
            toy_sim_free(sim);
            return optvq_fail(st, "cannot create the %s quantizer: %s", r ? "OptVQ" : "vanilla VQ", msg);
        }
        int64_t count = 0;
        float *emb = optvq_quantizer_param(t->q, OPTVQ_PARAM_EMBEDDING, &count);
        if (!emb || count != 2 * K) {
            toy_sim_free(sim);
            return optvq_fail(OPTVQ_ERR_STATE, "%s: embedding has %" PRId64 " values, expected %" PRId64,
                              r ? "OptVQ" : "vanilla VQ", count, 2 * K);
        }
        memcpy(emb, sim->init_codes, sizeof(float) * 2 * (size_t)K);
        t->m = calloc((size_t)(2 * K), sizeof(float));
        t->v = calloc((size_t)(2 * K), sizeof(float));
        t->codebook = malloc(sizeof(float) * 2 * (size_t)K);
        t->indices = malloc(sizeof(int64_t) * (size_t)N);
        t->x_q = malloc(sizeof(float) * 2 * (size_t)N);
        if (!t->m || !t->v || !t->codebook || !t->indices || !t->x_q) {
            toy_sim_free(sim);
            return optvq_fail(OPTVQ_ERR_NOMEM, "out of memory");
        }
    }
    return OPTVQ_OK;
}

optvq_status toy_sim_forward(toy_sim *sim, int64_t step)
{
    const int64_t N = sim->cfg.points, K = sim->cfg.codes;
    for (int r = 0; r < 2; r++) {
        toy_quant *t = &sim->run[r];
        if (optvq_quantizer_forward(t->q, sim->x, N, 1, 1, t->x_q, t->indices, &t->loss) != OPTVQ_OK)
            return fail_q(t, "forward failed", step);
        if (!isfinite(t->loss))
            return optvq_fail(OPTVQ_ERR_NUMERIC, "the %s loss is not finite at step %" PRId64, t->name, step);
        optvq_usage usage;
        if (optvq_usage_compute(t->indices, N, K, &usage) != OPTVQ_OK)
            return fail_q(t, "usage failed", step);
        t->used = usage.codes_used;
    }
    return OPTVQ_OK;
}

optvq_status toy_sim_codebooks(toy_sim *sim, int64_t step)
{
    for (int r = 0; r < 2; r++)
        if (optvq_quantizer_codebook(sim->run[r].q, sim->run[r].codebook) != OPTVQ_OK)
            return fail_q(&sim->run[r], "codebook failed", step);
    return OPTVQ_OK;
}

optvq_status toy_sim_update(toy_sim *sim, int64_t step)
{
    for (int r = 0; r < 2; r++) {
        toy_quant *t = &sim->run[r];
        optvq_quantizer_zero_grad(t->q);
        if (optvq_quantizer_backward(t->q, NULL, 1.0f, NULL) != OPTVQ_OK)
            return fail_q(t, "backward failed", step);
        int64_t count = 0;
        float *emb = optvq_quantizer_param(t->q, OPTVQ_PARAM_EMBEDDING, &count);
        const float *grad = optvq_quantizer_grad(t->q, OPTVQ_PARAM_EMBEDDING, &count);
        if (!emb || !grad)
            return optvq_fail(OPTVQ_ERR_STATE, "%s: no embedding gradient", t->name);
        optvq_adamw_step(emb, grad, t->m, t->v, count, 5e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, step + 1);
    }
    return OPTVQ_OK;
}
