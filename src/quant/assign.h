/* Code assignment: Sinkhorn optimal transport over the batch, or nearest code.
 *
 * Three Sinkhorn paths, chosen by sk_assign():
 *   materialized  the N x n_e matrix fits the workspace and log_domain is off:
 *                 the reference's float32 operations, in its order, in place
 *                 (so even its exp underflow is reproduced);
 *   streamed      the matrix does not fit: rows of the cost are recomputed
 *                 block by block and only per-code (n_e) and per-vector (N)
 *                 scalings are kept, in double;
 *   log-domain    the same iteration on log-scalings with log-sum-exp
 *                 reductions (materialized or streamed): never underflows.
 * All reductions run over fixed row blocks combined in a fixed order, so the
 * result does not depend on the thread count. The global sums go through the
 * optional allreduce hook (data-parallel training). */
#ifndef OPTVQ_QUANT_ASSIGN_H
#define OPTVQ_QUANT_ASSIGN_H
#include "optvq/optvq.h"
#include "quant/distance.h"

typedef struct sk_params {
    optvq_normalize mode;
    float epsilon;
    int n_iters;
    int log_domain;
    size_t workspace_bytes; /* cap on the materialized matrix */
    optvq_allreduce_fn allreduce;
    void *allreduce_ctx;
} sk_params;

/* Grows on demand; owned by the caller and reused across calls. */
typedef struct sk_workspace {
    float *matrix;
    size_t matrix_bytes;
} sk_workspace;

typedef struct sk_report {
    int streamed;       /* 1 when the matrix was never held whole     */
    int log_domain;
    float mean, std, min; /* normalisation statistics ("all" mode)   */
} sk_report;

optvq_status sk_assign(const dist_ctx *dc, const sk_params *p, sk_workspace *ws, int64_t *indices,
                       sk_report *report);
void sk_workspace_free(sk_workspace *ws);

/* indices[i] = argmin_k D[i,k] (first minimum). */
optvq_status nearest_assign(const dist_ctx *dc, int64_t *indices);

/* Row blocking shared by the passes: fixed by N and n_e only. */
typedef struct row_blocks {
    int64_t block_rows; /* rows per block (partial sums are per block) */
    int64_t num_blocks;
    int64_t chunk_rows; /* rows computed at once inside a block        */
} row_blocks;
row_blocks row_blocks_for(int64_t N, int64_t n_e, int64_t d);

#endif
