/* The single scratch workspace, and the threaded GEMM helper. */
#include "core/bigalloc.h"
#include "core/error.h"
#include "core/parallel.h"
#include "nn/nn.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

optvq_status nn_workspace_reserve(nn_workspace *ws, size_t floats)
{
    if (floats <= ws->floats)
        return OPTVQ_OK;
    if (floats > ((size_t)1 << 36))
        return optvq_fail(OPTVQ_ERR_NOMEM, "nn workspace: %zu floats is absurd", floats);
    size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    float *d = optvq_big_alloc(bytes);
    if (!d)
        return optvq_fail(OPTVQ_ERR_NOMEM, "nn workspace: cannot allocate %zu bytes", bytes);
    free(ws->data);
    ws->data = d;
    ws->floats = floats;
    return OPTVQ_OK;
}

void nn_workspace_free(nn_workspace *ws)
{
    free(ws->data);
    ws->data = NULL;
    ws->floats = 0;
}

optvq_status nn_workspace_check(const nn_workspace *ws, size_t floats, const char *op)
{
    if (floats == 0)
        return OPTVQ_OK;
    if (!ws || !ws->data || ws->floats < floats)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG,
                          "%s: workspace holds %zu floats, needs %zu (size it with the op's "
                          "workspace query)",
                          op, ws ? ws->floats : (size_t)0, floats);
    return OPTVQ_OK;
}

void nn_init_threads(void)
{
    static int done;
    int already;
#pragma omp atomic read
    already = done;
    if (!already) {
        optvq_blas_single_threaded();
#pragma omp atomic write
        done = 1;
    }
}

void nn_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
              int64_t ldc)
{
    if (m <= 0 || n <= 0)
        return;
    nn_init_threads();
    enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
    int nt = optvq_threads();
    double flops = 2.0 * (double)m * (double)n * (double)k;
#ifdef _OPENMP
    if (omp_in_parallel())
        nt = 1;
#endif
    if (nt <= 1 || flops < 4e6 || (m < 2 * 16 && n < 2 * 16)) {
        cblas_sgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb,
                    beta, c, (int)ldc);
        return;
    }
    /* Split the larger of m and n into nt contiguous slices (multiples of 16). */
    int split_m = m >= n;
    int64_t len = split_m ? m : n;
#pragma omp parallel num_threads(nt)
    {
        int t = 0, T = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        T = omp_get_num_threads();
#endif
        int64_t chunk = (len + T - 1) / T;
        chunk = (chunk + 15) / 16 * 16;
        int64_t s0 = (int64_t)t * chunk, s1 = s0 + chunk < len ? s0 + chunk : len;
        if (s0 < s1) {
            if (split_m) {
                const float *as = trans_a ? a + s0 : a + s0 * lda;
                cblas_sgemm(CblasRowMajor, ta, tb, (int)(s1 - s0), (int)n, (int)k, alpha, as,
                            (int)lda, b, (int)ldb, beta, c + s0 * ldc, (int)ldc);
            } else {
                const float *bs = trans_b ? b + s0 * ldb : b + s0;
                cblas_sgemm(CblasRowMajor, ta, tb, (int)m, (int)(s1 - s0), (int)k, alpha, a,
                            (int)lda, bs, (int)ldb, beta, c + s0, (int)ldc);
            }
        }
    }
}
