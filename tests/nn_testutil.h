/* Helpers shared by the nn tests (tests/test_nn_*.c). */
#ifndef OPTVQ_TEST_NN_UTIL_H
#define OPTVQ_TEST_NN_UTIL_H
#include <stdint.h>
#include "core/rng.h"

/* tests/ref/nn/<case>/<name>.npy as float32 (malloc'd) or NULL when absent;
 * *n (may be NULL) receives the element count. */
float *nnt_load(const char *case_name, const char *name, int64_t *n);
/* meta.npy of a case into m[0..max) (returns the count, 0 when absent). */
int nnt_meta(const char *case_name, double *m, int max);
/* Compare and record a failure when NMSE > 1e-10 (or NaN); prints the numbers. */
void nnt_expect(const char *what, const float *got, const float *want, int64_t n, double max_nmse);
float *nnt_randn(optvq_rng *rng, int64_t n, float scale);
float *nnt_zeros(int64_t n);
float *nnt_copy(const float *src, int64_t n);

/* Finite-difference gradient check of one op.
 *   forward(ctx): recomputes the output buffer `out` (out_n floats) from the tensors.
 *   backward(ctx, gy): ACCUMULATES d(sum(out * gy))/d(tensor) into each tensor's grad.
 * The check (1) pre-fills every grad with noise and runs backward twice to prove it
 * accumulates; (2) compares the analytic directional derivative <g, v> with a central
 * difference of L = sum(out * R) (double) along 3 random directions per tensor, and
 * on 4 single elements, with |fd - an| <= tol * (||g|| for directions, max(|g_i|,
 * rms g) for elements). A gradient wrong by more than ~tol of its norm fails. */
typedef struct nnt_tensor {
    const char *name;
    float *data;
    float *grad;
    int64_t n;
} nnt_tensor;
typedef void (*nnt_fwd)(void *ctx);
typedef void (*nnt_bwd)(void *ctx, const float *gy);
void nnt_gradcheck(const char *op, void *ctx, nnt_fwd forward, nnt_bwd backward, float *out,
                   int64_t out_n, nnt_tensor *ts, int nts, double tol, uint64_t seed);

#endif
