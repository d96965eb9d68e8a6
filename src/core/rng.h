/* Deterministic pseudo-random numbers (xoshiro256**, seeded by splitmix64).
 * The state is plain data so training can checkpoint it. */
#ifndef OPTVQ_CORE_RNG_H
#define OPTVQ_CORE_RNG_H
#include <stdint.h>

typedef struct optvq_rng {
    uint64_t s[4];
} optvq_rng;

void optvq_rng_seed(optvq_rng *rng, uint64_t seed);
uint64_t optvq_rng_u64(optvq_rng *rng);
/* Uniform in [0, 1). */
double optvq_rng_uniform(optvq_rng *rng);
/* Standard normal (Box-Muller, one value per call). */
double optvq_rng_normal(optvq_rng *rng);
/* Uniform integer in [0, n). */
uint64_t optvq_rng_below(optvq_rng *rng, uint64_t n);

#endif
