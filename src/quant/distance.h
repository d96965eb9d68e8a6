/* Euclidean distances between vectors and codes, a block of rows at a time,
 * computed as torch.cdist does on CPU for p=2 (the matrix-multiply form):
 * D[i,k] = sqrt(max(|x_i|^2 + |c_k|^2 - 2 x_i.c_k, 1e-30)) (torch clamps at 1e-30,
 * so the smallest distance is 1e-15, and no gradient flows where it clamps).
 * Optionally fused with the Sinkhorn's normalisation and exp, so a streamed
 * pass touches each cost entry once, in registers. */
#ifndef OPTVQ_QUANT_DISTANCE_H
#define OPTVQ_QUANT_DISTANCE_H
#include <stdint.h>

#include "optvq/optvq.h"

#define DIST_CLAMP 1e-30f
#define DIST_MIN 1e-15f /* sqrt(DIST_CLAMP): a clamped distance */

typedef struct dist_ctx {
    const float *x;   /* (N, d)     vectors                              */
    const float *xn;  /* (N)        squared norms of the vectors         */
    const float *cb;  /* (n_e, d)   codebook                             */
    const float *cbT; /* (d, n_e)   codebook transposed (small-d kernel) */
    const float *cn;  /* (n_e)      squared norms of the codes           */
    int64_t N, n_e, d;
} dist_ctx;

typedef enum dist_output {
    DIST_RAW = 0,    /* D                                   */
    DIST_NORM = 1,   /* D2 = normalize(D)                   */
    DIST_KERNEL = 2, /* exp(-(D2 * eps))  (the reference's) */
    DIST_LOG = 3     /* -(D2 * eps)                         */
} dist_output;

/* Elementwise map applied to D, with the reference's float32 operations:
 *   all: (D - mean) / stdp - min1;  dim: D / sqrt_d;  null: D. */
typedef struct dist_transform {
    dist_output output;
    optvq_normalize mode;
    float mean, stdp, min1, sqrt_d, eps;
} dist_transform;

/* Squared norms of `n` rows of length d. */
void dist_sqnorms(float *out, const float *rows, int64_t n, int64_t d);
/* out (rows, n_e) = distances of vectors i0 .. i0+rows-1 to every code.
 * Calls single-threaded BLAS; safe inside parallel regions. */
void dist_rows(const dist_ctx *c, int64_t i0, int64_t rows, float *out);
/* out (rows, nk) = distances of vectors i0.. to codes k0 .. k0+nk-1. */
void dist_rows_codes(const dist_ctx *c, int64_t i0, int64_t rows, int64_t k0, int64_t nk, float *out);
/* out (rows, n_e) = t(D) for all codes. */
void dist_rows_transformed(const dist_ctx *c, int64_t i0, int64_t rows, const dist_transform *t, float *out);
/* t applied in place to n values of D (the unfused form, bit-identical). */
void dist_apply_transform(float *v, int64_t n, const dist_transform *t);
/* Reference kernel: plain loops in double, for tests. */
void dist_rows_naive(const dist_ctx *c, int64_t i0, int64_t rows, float *out);

#endif
