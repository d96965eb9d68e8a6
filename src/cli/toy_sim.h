/* The 2-D toy's computation, shared by 'optvq toy' (GIF + PNG) and 'optvq
 * serve' (the page's animation): N fixed points 1.5*randn + 2 and K codes
 * randn, drawn from one seeded stream; two quantizers, vanilla VQ (nearest
 * code) and OptVQ (Sinkhorn), train their codebooks from the same start with
 * AdamW (lr 5e-3, betas 0.9/0.999, weight decay 0.01). Prints nothing: a
 * failure returns a status with the message in optvq_last_error(). */
#ifndef OPTVQ_CLI_TOY_SIM_H
#define OPTVQ_CLI_TOY_SIM_H

#include "optvq/optvq.h"

#include <stdint.h>

#define TOY_VANILLA 0
#define TOY_OPTVQ 1

typedef struct toy_sim_config {
    int64_t points, codes;
    uint64_t seed;
    float epsilon; /* OptVQ's Sinkhorn inverse temperature (the paper's toy: 10) */
    int n_iters;   /* Sinkhorn iterations (5) */
} toy_sim_config;

/* One quantizer's state as of the last toy_sim_forward(). */
typedef struct toy_quant {
    const char *name; /* "vanilla VQ" or "OptVQ" */
    optvq_quantizer *q;
    float *m, *v;     /* AdamW moments of the embedding */
    float *codebook;  /* (codes, 2), filled by toy_sim_codebooks() */
    int64_t *indices; /* (points): each point's code */
    float *x_q;       /* (points, 2) */
    float loss;
    int64_t used;     /* codes chosen by at least one point */
} toy_quant;

typedef struct toy_sim {
    toy_sim_config cfg;
    float *x;          /* (points, 2) the data */
    float *init_codes; /* (codes, 2) the common start */
    toy_quant run[2];  /* TOY_VANILLA, TOY_OPTVQ */
} toy_sim;

/* Fills the paper's toy: 50 points, 25 codes, seed 0, epsilon 10, 5 iterations. */
void toy_sim_config_default(toy_sim_config *cfg);
/* Draws the data and the codes and creates both quantizers; on failure *sim
 * is left freed (toy_sim_free is still safe). */
optvq_status toy_sim_init(toy_sim *sim, const toy_sim_config *cfg);
void toy_sim_free(toy_sim *sim);
/* Both forwards at the current codebooks: indices, x_q, loss and codes used.
 * `step` only names the step in a failure message. */
optvq_status toy_sim_forward(toy_sim *sim, int64_t step);
/* Both current codebooks into run[r].codebook (`step` for the message). */
optvq_status toy_sim_codebooks(toy_sim *sim, int64_t step);
/* One AdamW step of both codebooks from the last forward (step >= 0; the
 * optimizer counts step + 1). */
optvq_status toy_sim_update(toy_sim *sim, int64_t step);

#endif
