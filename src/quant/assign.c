#include "quant/assign.h"

#include "core/bigalloc.h"
#include "core/error.h"
#include "core/parallel.h"
#include "quant/simd_exp.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#include <float.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif
#include <math.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BLOCKS 64
#define LOG_1E8 (-18.420680743952367) /* log(1e-8) */

row_blocks row_blocks_for(int64_t N, int64_t n_e, int64_t d)
{
    row_blocks b;
    b.block_rows = (N + MAX_BLOCKS - 1) / MAX_BLOCKS;
    if (b.block_rows < 16)
        b.block_rows = 16;
    b.num_blocks = (N + b.block_rows - 1) / b.block_rows;
    /* about 1 MiB of cost rows per chunk: each codebook tile is reused by
     * several rows, and the chunk is still in cache when it is consumed */
    int64_t cr = (int64_t)(1024 * 1024 / 4) / (n_e > 0 ? n_e : 1);
    if (d > 16 && cr < 64) /* GEMM distances: enough rows to amortise packing the codebook */
        cr = 64;
    b.chunk_rows = cr < 1 ? 1 : cr > b.block_rows ? b.block_rows : cr;
    return b;
}

/* The cost matrix is hundreds of MiB written once per forward: from 2 MiB
 * pages (transparent huge pages, where the kernel allows them on request)
 * its first touch costs a few hundred page faults instead of a hundred
 * thousand, which on a virtual machine was most of the quantizer's time. */
static float *matrix_alloc(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    optvq_big_advise(p, bytes);
    return p;
}

void sk_workspace_free(sk_workspace *ws)
{
    if (ws->matrix)
        munmap(ws->matrix, ws->matrix_bytes);
    ws->matrix = NULL;
    ws->matrix_bytes = 0;
}

static double log_add_exp(double a, double b)
{
    double m = a > b ? a : b;
    if (m == -INFINITY)
        return -INFINITY;
    return m + log(exp(a - m) + exp(b - m));
}

static int reduce(const sk_params *p, double *v, size_t n, optvq_reduce_op op)
{
    return p->allreduce ? p->allreduce(v, n, op, p->allreduce_ctx) : 0;
}

/* ---- the run: sizes, blocking and where cost rows come from ---- */


typedef struct sk_run {
    const dist_ctx *dc;
    const sk_params *p;
    int64_t N, n_e;
    double N_global;
    dist_transform norm; /* the normalisation (docs/behaviour.md §1.4) and output kind */
    row_blocks rb;
    int threads;
    float *matrix;      /* (N, n_e) when materialized, else NULL */
    int fused_fill;     /* materialized, small d: the matrix is written once,
                           already transformed (distances are cheap to redo) */
    float *chunk_bufs;  /* (threads, chunk_rows, n_e) when streamed */
} sk_run;

static inline int thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Rows i0 .. i0+n-1 of the kernel source (K or L), shape (n, n_e). */
static const float *source_rows(const sk_run *r, int64_t i0, int64_t n)
{
    if (r->matrix)
        return r->matrix + i0 * r->n_e;
    float *buf = r->chunk_bufs + (size_t)thread_id() * (size_t)(r->rb.chunk_rows * r->n_e);
    dist_rows_transformed(r->dc, i0, n, &r->norm, buf);
    return buf;
}

/* ---- statistics of D for the "all" normalisation ---- */

static optvq_status compute_norm(sk_run *r, int fill_matrix)
{
    const int64_t n_e = r->n_e;
    dist_transform *t = &r->norm;
    t->mode = r->p->mode;
    t->sqrt_d = (float)sqrt((double)r->dc->d);
    t->eps = r->p->epsilon;
    t->output = r->p->log_domain ? DIST_LOG : DIST_KERNEL;
    double sums[MAX_BLOCKS], sumsqs[MAX_BLOCKS];
    float mins[MAX_BLOCKS];
    const int need_stats = t->mode == OPTVQ_NORMALIZE_ALL;
    if (!need_stats && !fill_matrix)
        return OPTVQ_OK;
#pragma omp parallel for schedule(dynamic, 1) num_threads(r->threads)
    for (int64_t b = 0; b < r->rb.num_blocks; b++) {
        int64_t i0 = b * r->rb.block_rows, i1 = i0 + r->rb.block_rows;
        if (i1 > r->N)
            i1 = r->N;
        double s = 0, s2 = 0;
        float mn = INFINITY;
        /* the materialized matrix takes the whole block in one call (one GEMM) */
        const int64_t step = fill_matrix ? r->rb.block_rows : r->rb.chunk_rows;
        for (int64_t c0 = i0; c0 < i1; c0 += step) {
            int64_t n = i1 - c0 < step ? i1 - c0 : step;
            float *buf = fill_matrix ? r->matrix + c0 * n_e
                                     : r->chunk_bufs + (size_t)thread_id() * (size_t)(r->rb.chunk_rows * n_e);
            dist_rows(r->dc, c0, n, buf);
            if (need_stats) {
                const int64_t m = n * n_e;
#pragma omp simd reduction(+ : s, s2) reduction(min : mn)
                for (int64_t k = 0; k < m; k++) {
                    double v = buf[k];
                    s += v;
                    s2 += v * v;
                    mn = buf[k] < mn ? buf[k] : mn;
                }
            }
        }
        sums[b] = s;
        sumsqs[b] = s2;
        mins[b] = mn;
    }
    if (!need_stats)
        return OPTVQ_OK;
    double s = 0, s2 = 0;
    float mn = INFINITY;
    for (int64_t b = 0; b < r->rb.num_blocks; b++) {
        s += sums[b];
        s2 += sumsqs[b];
        mn = mins[b] < mn ? mins[b] : mn;
    }
    /* Over the ranks of a data-parallel group, the statistics of the global matrix, so that N ranks assign
     * exactly as one process would on the concatenated batch (the reference keeps them per rank:
     * docs/behaviour.md §1.11). */
    double count = (double)r->N * (double)n_e;
    if (r->p->allreduce) {
        double sums3[3] = {s, s2, count}, neg_min = -(double)mn;
        if (reduce(r->p, sums3, 3, OPTVQ_REDUCE_SUM) || reduce(r->p, &neg_min, 1, OPTVQ_REDUCE_MAX))
            return optvq_fail(OPTVQ_ERR_STATE, "sinkhorn: allreduce of the distance statistics failed");
        s = sums3[0];
        s2 = sums3[1];
        count = sums3[2];
        mn = (float)-neg_min;
    }
    double mean = s / count;
    double var = count > 1 ? (s2 - s * mean) / (count - 1) : NAN; /* torch: unbiased; NaN for one entry */
    if (var < 0)
        var = 0;
    t->mean = (float)mean;
    t->stdp = (float)sqrt(var) + 1e-6f;
    t->min1 = (mn - t->mean) / t->stdp;
    return OPTVQ_OK;
}

/* Argmax helpers: first maximum, as torch.argmax. */
static int64_t argmax_scaled_f(const float *row, int64_t n, float scale)
{
    float best = -INFINITY;
    int64_t best_k = 0, k = 0;
#if defined(__AVX2__)
    if (n >= 8) {
        /* per lane: first maximum of its column of the row; then the smallest
         * index among the lanes holding the overall maximum */
        const __m256 s = _mm256_set1_ps(scale);
        __m256 vbest = _mm256_set1_ps(-INFINITY);
        __m256i vidx = _mm256_setzero_si256(), cur = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i step = _mm256_set1_epi32(8);
        for (; k + 8 <= n; k += 8) {
            __m256 v = _mm256_mul_ps(_mm256_loadu_ps(row + k), s);
            __m256 gt = _mm256_cmp_ps(v, vbest, _CMP_GT_OQ);
            vbest = _mm256_blendv_ps(vbest, v, gt);
            vidx = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(vidx), _mm256_castsi256_ps(cur), gt));
            cur = _mm256_add_epi32(cur, step);
        }
        float lanes[8];
        int32_t idx[8];
        _mm256_storeu_ps(lanes, vbest);
        _mm256_storeu_si256((__m256i *)idx, vidx);
        best_k = -1;
        for (int l = 0; l < 8; l++)
            if (best_k < 0 || lanes[l] > best || (lanes[l] == best && idx[l] < best_k)) {
                best = lanes[l];
                best_k = idx[l];
            }
        if (!(best > -INFINITY)) { /* all -inf (or NaN): fall back to the scalar scan */
            best = -INFINITY;
            best_k = 0;
            k = 0;
        }
    }
#endif
    for (; k < n; k++) {
        float v = row[k] * scale;
        if (v > best) {
            best = v;
            best_k = k;
        }
    }
    return best_k;
}

static int64_t argmax_product(const float *row, const double *u, int64_t n)
{
    double best = -INFINITY;
#pragma omp simd reduction(max : best)
    for (int64_t k = 0; k < n; k++)
        {
        double v = (double)row[k] * u[k];
        best = v > best ? v : best;
    }
    for (int64_t k = 0; k < n; k++)
        if ((double)row[k] * u[k] == best)
            return k;
    return 0;
}

static int64_t argmax_sum(const float *row, const double *f, int64_t n)
{
    double best = -INFINITY;
#pragma omp simd reduction(max : best)
    for (int64_t k = 0; k < n; k++)
        {
        double v = (double)row[k] + f[k];
        best = v > best ? v : best;
    }
    for (int64_t k = 0; k < n; k++)
        if ((double)row[k] + f[k] == best)
            return k;
    return 0;
}

/* Sums the per-block partial vectors (num_blocks, n) in block order into out (n). */
static void reduce_blocks(double *out, const double *partial, int64_t num_blocks, int64_t n, int threads)
{
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t k = 0; k < n; k++) {
        double s = 0;
        for (int64_t b = 0; b < num_blocks; b++)
            s += partial[b * n + k];
        out[k] = s;
    }
}

/* Parallel loop over the fixed row blocks of the run `r` (a variable in scope). */
#define FOR_EACH_BLOCK_BEGIN                                                             \
    _Pragma("omp parallel for schedule(dynamic, 1) num_threads(r->threads)")            \
    for (int64_t b = 0; b < r->rb.num_blocks; b++) {                                     \
        int64_t blk_i0 = b * r->rb.block_rows, blk_i1 = blk_i0 + r->rb.block_rows;        \
        if (blk_i1 > r->N)                                                               \
            blk_i1 = r->N;
#define FOR_EACH_BLOCK_END }

/* ---- path 1: the reference's float32 operations on the whole matrix ---- */

static int is_pow2_float(float v)
{
    int e;
    return v > 0 && frexpf(v, &e) == 0.5f && e > -120 && e < 120;
}

static optvq_status sinkhorn_materialized(sk_run *r, double *colpart, double *colsum, float *coldiv,
                                          int64_t *indices)
{
    const int64_t n_e = r->n_e;
    const float Kf = (float)n_e, Nf = (float)r->N_global;
    /* dividing by a power of two is exact, so it may become a multiplication
     * by its reciprocal with the same result, bit for bit */
    const int pow2_k = is_pow2_float(Kf), pow2_n = is_pow2_float(Nf);
    const float invK = 1.0f / Kf, invN = 1.0f / Nf;
    double part[MAX_BLOCKS];

    /* P = exp(-eps * D2) */
    FOR_EACH_BLOCK_BEGIN
        double s = 0;
        for (int64_t i = blk_i0; i < blk_i1; i++) {
            float *row = r->matrix + i * n_e;
            if (r->fused_fill)
                dist_rows_transformed(r->dc, i, 1, &r->norm, row);
            else
                dist_apply_transform(row, n_e, &r->norm);
#pragma omp simd reduction(+ : s)
            for (int64_t k = 0; k < n_e; k++)
                s += row[k];
        }
        part[b] = s;
    FOR_EACH_BLOCK_END
    double total = 0;
    for (int64_t b = 0; b < r->rb.num_blocks; b++)
        total += part[b];
    if (reduce(r->p, &total, 1, OPTVQ_REDUCE_SUM))
        return optvq_fail(OPTVQ_ERR_STATE, "sinkhorn: allreduce failed");
    const float denom = (float)total + 1e-8f;

    /* P /= sum(P) + 1e-8, then the code sums of the first iteration */
    FOR_EACH_BLOCK_BEGIN
        double *cp = colpart + b * n_e;
        memset(cp, 0, (size_t)n_e * sizeof *cp);
        for (int64_t i = blk_i0; i < blk_i1; i++) {
            float *row = r->matrix + i * n_e;
#pragma omp simd
            for (int64_t k = 0; k < n_e; k++) {
                row[k] = row[k] / denom;
                cp[k] += row[k];
            }
        }
    FOR_EACH_BLOCK_END

    if (r->p->n_iters == 0) {
#pragma omp parallel for schedule(static) num_threads(r->threads)
        for (int64_t i = 0; i < r->N; i++)
            indices[i] = argmax_scaled_f(r->matrix + i * n_e, n_e, Nf);
        return OPTVQ_OK;
    }
    for (int it = 0; it < r->p->n_iters; it++) {
        const int last = it + 1 == r->p->n_iters;
        reduce_blocks(colsum, colpart, r->rb.num_blocks, n_e, r->threads);
        if (reduce(r->p, colsum, (size_t)n_e, OPTVQ_REDUCE_SUM))
            return optvq_fail(OPTVQ_ERR_STATE, "sinkhorn: allreduce failed");
        for (int64_t k = 0; k < n_e; k++)
            coldiv[k] = (float)colsum[k] + 1e-8f;
        FOR_EACH_BLOCK_BEGIN
            double *cp = colpart + b * n_e;
            if (!last)
                memset(cp, 0, (size_t)n_e * sizeof *cp);
            for (int64_t i = blk_i0; i < blk_i1; i++) {
                float *row = r->matrix + i * n_e;
                double rs = 0;
                /* each code: P[:,k] /= (sum + 1e-8); P /= n_e */
                if (pow2_k) {
#pragma omp simd reduction(+ : rs)
                    for (int64_t k = 0; k < n_e; k++) {
                        row[k] = row[k] / coldiv[k] * invK;
                        rs += row[k];
                    }
                } else {
#pragma omp simd reduction(+ : rs)
                    for (int64_t k = 0; k < n_e; k++) {
                        row[k] = row[k] / coldiv[k] / Kf;
                        rs += row[k];
                    }
                }
                /* each vector: P[i,:] /= (sum + 1e-8); P /= N */
                const float rdiv = (float)rs + 1e-8f;
                if (last) {
                    if (pow2_n) {
#pragma omp simd
                        for (int64_t k = 0; k < n_e; k++)
                            row[k] = row[k] / rdiv * invN;
                    } else {
#pragma omp simd
                        for (int64_t k = 0; k < n_e; k++)
                            row[k] = row[k] / rdiv / Nf;
                    }
                    indices[i] = argmax_scaled_f(row, n_e, Nf); /* P *= N, argmax */
                } else {
                    if (pow2_n) {
#pragma omp simd
                        for (int64_t k = 0; k < n_e; k++) {
                            row[k] = row[k] / rdiv * invN;
                            cp[k] += row[k];
                        }
                    } else {
#pragma omp simd
                        for (int64_t k = 0; k < n_e; k++) {
                            row[k] = row[k] / rdiv / Nf;
                            cp[k] += row[k];
                        }
                    }
                }
            }
        FOR_EACH_BLOCK_END
    }
    return OPTVQ_OK;
}

/* ---- path 2: streamed, linear scalings in double ----
 * P[i,k] = K[i,k] * a * U[k] * V[i] with K = exp(-eps * D2). */

static optvq_status sinkhorn_scaled(sk_run *r, double *colpart, double *U, double *V, int64_t *indices)
{
    const int64_t n_e = r->n_e;
    double part[MAX_BLOCKS];
    const int64_t cr = r->rb.chunk_rows;
    const double Nd = r->N_global, Kd = (double)n_e;

    FOR_EACH_BLOCK_BEGIN
        double *cp = colpart + b * n_e, s = 0;
        memset(cp, 0, (size_t)n_e * sizeof *cp);
        for (int64_t c0 = blk_i0; c0 < blk_i1; c0 += cr) {
            int64_t n = blk_i1 - c0 < cr ? blk_i1 - c0 : cr;
            const float *rows = source_rows(r, c0, n);
            for (int64_t i = 0; i < n; i++) {
                const float *row = rows + i * n_e;
#pragma omp simd reduction(+ : s)
                for (int64_t k = 0; k < n_e; k++) {
                    s += row[k];
                    cp[k] += row[k];
                }
                if (r->p->n_iters == 0)
                    indices[c0 + i] = argmax_scaled_f(row, n_e, 1.0f);
            }
        }
        part[b] = s;
    FOR_EACH_BLOCK_END
    if (r->p->n_iters == 0)
        return OPTVQ_OK;
    double total = 0;
    for (int64_t b = 0; b < r->rb.num_blocks; b++)
        total += part[b];
    if (reduce(r->p, &total, 1, OPTVQ_REDUCE_SUM))
        return optvq_fail(OPTVQ_ERR_STATE, "sinkhorn: allreduce failed");
    const double a = 1.0 / (total + 1e-8);
    for (int64_t k = 0; k < n_e; k++)
        U[k] = 1.0;
    for (int64_t i = 0; i < r->N; i++)
        V[i] = 1.0;
    double *colK = colpart + r->rb.num_blocks * n_e; /* (n_e) after the partials */

    for (int it = 0; it < r->p->n_iters; it++) {
        const int last = it + 1 == r->p->n_iters;
        reduce_blocks(colK, colpart, r->rb.num_blocks, n_e, r->threads);
        if (reduce(r->p, colK, (size_t)n_e, OPTVQ_REDUCE_SUM))
            return optvq_fail(OPTVQ_ERR_STATE, "sinkhorn: allreduce failed");
        for (int64_t k = 0; k < n_e; k++)
            U[k] = U[k] / ((a * U[k] * colK[k] + 1e-8) * Kd);
        FOR_EACH_BLOCK_BEGIN
            double *cp = colpart + b * n_e;
            if (!last)
                memset(cp, 0, (size_t)n_e * sizeof *cp);
            for (int64_t c0 = blk_i0; c0 < blk_i1; c0 += cr) {
                int64_t n = blk_i1 - c0 < cr ? blk_i1 - c0 : cr;
                const float *rows = source_rows(r, c0, n);
                for (int64_t i = 0; i < n; i++) {
                    const float *row = rows + i * n_e;
                    if (last) {
                        indices[c0 + i] = argmax_product(row, U, n_e);
                        continue;
                    }
                    double rs = 0;
#pragma omp simd reduction(+ : rs)
                    for (int64_t k = 0; k < n_e; k++)
                        rs += (double)row[k] * U[k];
                    double *v = &V[c0 + i];
                    *v = *v / ((a * *v * rs + 1e-8) * Nd);
                    const double vi = *v;
#pragma omp simd
                    for (int64_t k = 0; k < n_e; k++)
                        cp[k] += (double)row[k] * vi;
                }
            }
        FOR_EACH_BLOCK_END
    }
    return OPTVQ_OK;
}

/* ---- path 3: log domain ----
 * log P[i,k] = L[i,k] + la + f[k] + g[i] with L = -eps * D2. Column sums are
 * running log-sum-exps (max m, scaled sum s) per block, merged in order. */

static void lse_merge(double *m, double *s, double m2, double s2)
{
    if (m2 == -INFINITY)
        return;
    if (*m == -INFINITY) {
        *m = m2;
        *s = s2;
    } else if (m2 > *m) {
        *s = *s * exp(*m - m2) + s2;
        *m = m2;
    } else {
        *s += s2 * exp(m2 - *m);
    }
}

/* Adds row + shift into the running column log-sum-exps (cm, cs). */
static void lse_accumulate_row(double *cm, double *cs, const float *row, double shift, int64_t n)
{
    for (int64_t k = 0; k < n; k++) {
        double w = (double)row[k] + shift;
        double d = w - cm[k];
        if (d <= 0) {
            cs[k] += exp(d);
        } else {
            cs[k] = cs[k] * exp(-d) + 1.0;
            cm[k] = w;
        }
    }
}

static optvq_status column_lse(sk_run *r, double *colpart, double *lc)
{
    const int64_t n_e = r->n_e, nb = r->rb.num_blocks;
    double *pm = colpart, *ps = colpart + nb * n_e;
    double *m = lc, *s = lc + n_e;
#pragma omp parallel for schedule(static) num_threads(r->threads)
    for (int64_t k = 0; k < n_e; k++) {
        double mk = -INFINITY, sk = 0;
        for (int64_t b = 0; b < nb; b++)
            lse_merge(&mk, &sk, pm[b * n_e + k], ps[b * n_e + k]);
        m[k] = mk;
        s[k] = sk;
    }
    if (r->p->allreduce) {
        /* global max, then rescaled sums */
        double *gm = lc + 2 * n_e;
        memcpy(gm, m, (size_t)n_e * sizeof *gm);
        if (reduce(r->p, gm, (size_t)n_e, OPTVQ_REDUCE_MAX))
            return optvq_fail(OPTVQ_ERR_STATE, "sinkhorn: allreduce failed");
        for (int64_t k = 0; k < n_e; k++) {
            s[k] = gm[k] == -INFINITY ? 0 : s[k] * exp(m[k] - gm[k]);
            m[k] = gm[k];
        }
        if (reduce(r->p, s, (size_t)n_e, OPTVQ_REDUCE_SUM))
            return optvq_fail(OPTVQ_ERR_STATE, "sinkhorn: allreduce failed");
    }
    for (int64_t k = 0; k < n_e; k++)
        lc[k] = s[k] > 0 ? m[k] + log(s[k]) : -INFINITY; /* lc[k] = log sum_i exp(L + g) */
    return OPTVQ_OK;
}

static optvq_status sinkhorn_log(sk_run *r, double *colpart, double *lc, double *f, double *g, int64_t *indices)
{
    const int64_t n_e = r->n_e, nb = r->rb.num_blocks, cr = r->rb.chunk_rows;
    const double logN = log(r->N_global), logK = log((double)n_e);

    /* Pass 0: column log-sums of L (g = 0). */
    FOR_EACH_BLOCK_BEGIN
        double *cm = colpart + b * n_e, *cs = colpart + (nb + b) * n_e;
        for (int64_t k = 0; k < n_e; k++) {
            cm[k] = -INFINITY;
            cs[k] = 0;
        }
        for (int64_t c0 = blk_i0; c0 < blk_i1; c0 += cr) {
            int64_t n = blk_i1 - c0 < cr ? blk_i1 - c0 : cr;
            const float *rows = source_rows(r, c0, n);
            for (int64_t i = 0; i < n; i++) {
                lse_accumulate_row(cm, cs, rows + i * n_e, 0.0, n_e);
                if (r->p->n_iters == 0)
                    indices[c0 + i] = argmax_scaled_f(rows + i * n_e, n_e, 1.0f);
            }
        }
    FOR_EACH_BLOCK_END
    if (r->p->n_iters == 0)
        return OPTVQ_OK;
    OPTVQ_TRY(column_lse(r, colpart, lc));
    double logS = -INFINITY;
    for (int64_t k = 0; k < n_e; k++)
        logS = log_add_exp(logS, lc[k]);
    const double la = -log_add_exp(logS, LOG_1E8);
    for (int64_t k = 0; k < n_e; k++)
        f[k] = 0;
    for (int64_t i = 0; i < r->N; i++)
        g[i] = 0;

    for (int it = 0; it < r->p->n_iters; it++) {
        const int last = it + 1 == r->p->n_iters;
        if (it > 0)
            OPTVQ_TRY(column_lse(r, colpart, lc));
        for (int64_t k = 0; k < n_e; k++)
            f[k] -= log_add_exp(la + f[k] + lc[k], LOG_1E8) + logK;
        FOR_EACH_BLOCK_BEGIN
            double *cm = colpart + b * n_e, *cs = colpart + (nb + b) * n_e;
            for (int64_t k = 0; k < n_e; k++) {
                cm[k] = -INFINITY;
                cs[k] = 0;
            }
            for (int64_t c0 = blk_i0; c0 < blk_i1; c0 += cr) {
                int64_t n = blk_i1 - c0 < cr ? blk_i1 - c0 : cr;
                const float *rows = source_rows(r, c0, n);
                for (int64_t i = 0; i < n; i++) {
                    const float *row = rows + i * n_e;
                    if (last) {
                        indices[c0 + i] = argmax_sum(row, f, n_e);
                        continue;
                    }
                    double zmax = -INFINITY;
#pragma omp simd reduction(max : zmax)
                    for (int64_t k = 0; k < n_e; k++)
                        {
                        double v = (double)row[k] + f[k];
                        zmax = v > zmax ? v : zmax;
                    }
                    double s = 0;
                    if (zmax > -INFINITY)
                        for (int64_t k = 0; k < n_e; k++)
                            s += optvq_expf_scalar((float)((double)row[k] + f[k] - zmax));
                    double lr = la + g[c0 + i] + (s > 0 ? zmax + log(s) : -INFINITY);
                    g[c0 + i] -= log_add_exp(lr, LOG_1E8) + logN;
                    lse_accumulate_row(cm, cs, row, g[c0 + i], n_e);
                }
            }
        FOR_EACH_BLOCK_END
    }
    return OPTVQ_OK;
}

/* ---- entry points ---- */

optvq_status sk_assign(const dist_ctx *dc, const sk_params *p, sk_workspace *ws, int64_t *indices,
                       sk_report *report)
{
    sk_run r;
    memset(&r, 0, sizeof r);
    r.dc = dc;
    r.p = p;
    r.N = dc->N;
    r.n_e = dc->n_e;
    r.rb = row_blocks_for(r.N, r.n_e, dc->d);
    r.threads = optvq_threads_for((double)r.N * (double)r.n_e * 8);
    r.N_global = (double)r.N;
    if (reduce(p, &r.N_global, 1, OPTVQ_REDUCE_SUM))
        return optvq_fail(OPTVQ_ERR_STATE, "sinkhorn: allreduce of N failed");
    if (r.N == 0)
        return OPTVQ_OK;

    const double matrix_bytes = (double)r.N * (double)r.n_e * sizeof(float);
    const int materialize = matrix_bytes <= (double)p->workspace_bytes;
    if (materialize && ws->matrix_bytes < (size_t)matrix_bytes) {
        sk_workspace_free(ws);
        ws->matrix = matrix_alloc((size_t)matrix_bytes);
        if (!ws->matrix)
            return optvq_fail(OPTVQ_ERR_NOMEM, "sinkhorn: cannot allocate the %.0f MiB cost matrix",
                              matrix_bytes / 1048576.0);
        ws->matrix_bytes = (size_t)matrix_bytes;
    }
    r.matrix = materialize ? ws->matrix : NULL;

    /* Scratch: chunk buffers, per-block partials (x2 for log-sum-exps) and the
     * per-code / per-vector scalings. */
    const int64_t n_e = r.n_e, nb = r.rb.num_blocks;
    /* small d: the statistics pass recomputes distances instead of storing
     * them, and the matrix is written once, transformed (same values, bit for
     * bit: the same kernel computes them) */
    r.fused_fill = materialize && dc->d <= 16;
    size_t chunk_floats = materialize && !r.fused_fill ? 0 : (size_t)r.threads * (size_t)(r.rb.chunk_rows * n_e);
    size_t doubles = (size_t)(2 * nb * n_e) + (size_t)(4 * n_e) + (size_t)r.N;
    float *chunk = chunk_floats ? malloc(chunk_floats * sizeof(float)) : NULL;
    double *scratch = malloc(doubles * sizeof(double));
    float *coldiv = malloc((size_t)n_e * sizeof(float));
    optvq_status st = OPTVQ_OK;
    if ((chunk_floats && !chunk) || !scratch || !coldiv) {
        st = optvq_fail(OPTVQ_ERR_NOMEM, "sinkhorn: out of memory for scratch (%zu MiB)",
                        (doubles * 8 + chunk_floats * 4) >> 20);
        goto done;
    }
    r.chunk_bufs = chunk;
    double *colpart = scratch;          /* (2, nb, n_e) */
    double *cvec = colpart + 2 * nb * n_e; /* (4, n_e)  */
    double *rvec = cvec + 4 * n_e;      /* (N)          */

    st = compute_norm(&r, materialize && !r.fused_fill);
    if (st != OPTVQ_OK)
        goto done;
    if (materialize && p->log_domain) {
#pragma omp parallel for schedule(static) num_threads(r.threads)
        for (int64_t i = 0; i < r.N; i++) {
            if (r.fused_fill)
                dist_rows_transformed(r.dc, i, 1, &r.norm, r.matrix + i * n_e);
            else
                dist_apply_transform(r.matrix + i * n_e, n_e, &r.norm);
        }
    }
    if (p->log_domain)
        st = sinkhorn_log(&r, colpart, cvec, cvec + 3 * n_e, rvec, indices);
    else if (materialize)
        st = sinkhorn_materialized(&r, colpart, cvec, coldiv, indices);
    else
        st = sinkhorn_scaled(&r, colpart, cvec + 3 * n_e, rvec, indices);
    if (report) {
        report->streamed = !materialize;
        report->log_domain = p->log_domain;
        report->mean = r.norm.mean;
        report->std = r.norm.stdp - 1e-6f;
        report->min = r.norm.min1;
    }
done:
    free(chunk);
    free(scratch);
    free(coldiv);
    return st;
}

optvq_status nearest_assign(const dist_ctx *dc, int64_t *indices)
{
    const int64_t n_e = dc->n_e;
    /* rows x a tile of codes at a time; the first minimum wins across tiles */
    const int64_t tile = n_e < 4096 ? n_e : 4096;
    row_blocks rb = row_blocks_for(dc->N, tile, dc->d);
    const int threads = optvq_threads_for((double)dc->N * (double)n_e * (double)dc->d);
    float *bufs = malloc((size_t)threads * (size_t)(rb.chunk_rows * tile + rb.chunk_rows) * sizeof(float));
    if (!bufs)
        return optvq_fail(OPTVQ_ERR_NOMEM, "nearest: out of memory");
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t b = 0; b < rb.num_blocks; b++) {
        float *buf = bufs + (size_t)thread_id() * (size_t)(rb.chunk_rows * tile + rb.chunk_rows);
        float *best = buf + rb.chunk_rows * tile;
        int64_t i0 = b * rb.block_rows, i1 = i0 + rb.block_rows < dc->N ? i0 + rb.block_rows : dc->N;
        for (int64_t c0 = i0; c0 < i1; c0 += rb.chunk_rows) {
            int64_t n = i1 - c0 < rb.chunk_rows ? i1 - c0 : rb.chunk_rows;
            for (int64_t k0 = 0; k0 < n_e; k0 += tile) {
                int64_t nk = n_e - k0 < tile ? n_e - k0 : tile;
                dist_rows_codes(dc, c0, n, k0, nk, buf);
                for (int64_t i = 0; i < n; i++) {
                    int64_t k = argmax_scaled_f(buf + i * nk, nk, -1.0f); /* argmin D */
                    float v = buf[i * nk + k];
                    if (k0 == 0 || v < best[i]) {
                        best[i] = v;
                        indices[c0 + i] = k0 + k;
                    }
                }
            }
        }
    }
    free(bufs);
    return OPTVQ_OK;
}
