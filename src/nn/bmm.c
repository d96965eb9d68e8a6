/* Batched matmul: c[i] (m, n) = op(a[i]) (m, k) op(b[i]) (k, n). Batches in
 * parallel when there are enough of them, otherwise each GEMM is split. */
#include "core/parallel.h"
#include "nn/nn.h"

#include <cblas.h>

/* One product per batch: C (M, N) = alpha op(A) op(B) + beta C. */
static void bgemm(int64_t batch, int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A,
                  int64_t lda, int64_t sa, const float *B, int64_t ldb, int64_t sb, float *C,
                  int64_t ldc, int64_t sc, float beta)
{
    nn_init_threads();
    int nt = optvq_threads();
    if (batch >= nt && nt > 1) {
#pragma omp parallel for schedule(static) num_threads(nt)
        for (int64_t i = 0; i < batch; i++)
            cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                        (int)M, (int)N, (int)K, 1.0f, A + i * sa, (int)lda, B + i * sb, (int)ldb, beta,
                        C + i * sc, (int)ldc);
    } else {
        for (int64_t i = 0; i < batch; i++)
            nn_sgemm(ta, tb, M, N, K, 1.0f, A + i * sa, lda, B + i * sb, ldb, beta, C + i * sc, ldc);
    }
}

void nn_bmm_forward(float *c, const float *a, const float *b, int64_t batch, int64_t m, int64_t k,
                    int64_t n, int trans_a, int trans_b)
{
    bgemm(batch, trans_a, trans_b, m, n, k, a, trans_a ? m : k, m * k, b, trans_b ? k : n, k * n, c,
          n, m * n, 0.0f);
}

void nn_bmm_backward(float *da, float *db, const float *dc, const float *a, const float *b,
                     int64_t batch, int64_t m, int64_t k, int64_t n, int trans_a, int trans_b)
{
    const int64_t lda = trans_a ? m : k, ldb = trans_b ? k : n;
    if (da) {
        if (!trans_a) /* da (m, k) += dc (m, n) op(b)^T (n, k) */
            bgemm(batch, 0, !trans_b, m, k, n, dc, n, m * n, b, ldb, k * n, da, k, m * k, 1.0f);
        else /* da (k, m) += op(b) (k, n) dc^T (n, m) */
            bgemm(batch, trans_b, 1, k, m, n, b, ldb, k * n, dc, n, m * n, da, m, m * k, 1.0f);
    }
    if (db) {
        if (!trans_b) /* db (k, n) += op(a)^T (k, m) dc (m, n) */
            bgemm(batch, !trans_a, 0, k, n, m, a, lda, m * k, dc, n, m * n, db, n, k * n, 1.0f);
        else /* db (n, k) += dc^T (n, m) op(a) (m, k) */
            bgemm(batch, 1, trans_a, n, k, m, dc, n, m * n, a, lda, m * k, db, k, k * n, 1.0f);
    }
}

void nn_bmm_forward_naive(float *c, const float *a, const float *b, int64_t batch, int64_t m,
                          int64_t k, int64_t n, int trans_a, int trans_b)
{
    for (int64_t i = 0; i < batch; i++)
        for (int64_t r = 0; r < m; r++)
            for (int64_t q = 0; q < n; q++) {
                double s = 0;
                for (int64_t j = 0; j < k; j++) {
                    float av = trans_a ? a[i * m * k + j * m + r] : a[i * m * k + r * k + j];
                    float bv = trans_b ? b[i * k * n + q * k + j] : b[i * k * n + j * n + q];
                    s += (double)av * bv;
                }
                c[i * m * n + r * n + q] = (float)s;
            }
}
