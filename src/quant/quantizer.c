/* The OptVQ quantizer: layout, codebook, assignment, loss, straight-through
 * output, decoding, and the backward pass (docs/behaviour.md §1). */
#include "core/bigalloc.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "optvq/optvq.h"
#include "quant/quantizer.h"
#include "quant/assign.h"
#include "quant/quantizer_sinkhorn.h"
#include "quant/distance.h"
#include "quant/simd_exp.h"

#include <cblas.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdlib.h>
#include <string.h>

struct optvq_quantizer {
    optvq_quantizer_config cfg;
    int64_t d; /* code_dim = e_dim / num_head */

    /* parameters and gradients: embedding | proj weight | proj bias */
    float *params, *grads;
    int64_t n_params;

    /* state kept from forward for backward */
    int64_t batch, height, width, N; /* N = batch*height*width*num_head */
    int have_forward;
    float *xv;     /* (N, d)     input vectors, ordered (b, y, x, head) */
    float *xn;     /* (N)        their squared norms                     */
    int64_t *idx;  /* (N)        chosen codes                            */
    int64_t cap_N; /* capacity of the three buffers above                */
    float *cb;     /* (n_e, d)   effective codebook                      */
    float *cbT;    /* (d, n_e)   transposed                              */
    float *cn;     /* (n_e)      squared code norms                      */
    sk_workspace ws;
};

/* Entry points refuse a NULL handle or required buffer with this message
 * rather than crash (the header says which pointers may be NULL). */
static optvq_status null_arg(const char *function, const char *argument)
{
    return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: %s is NULL", function, argument);
}

void optvq_quantizer_config_default(optvq_quantizer_config *c)
{
    if (!c)
        return;
    memset(c, 0, sizeof *c);
    c->n_e = 1024;
    c->e_dim = 256;
    c->num_head = 1;
    c->assign = OPTVQ_ASSIGN_SINKHORN;
    c->normalize = OPTVQ_NORMALIZE_ALL;
    c->loss = OPTVQ_LOSS_L2;
    c->beta = 0.25f;
    c->epsilon = 10.0f;
    c->n_iters = 5;
    c->use_proj = 1;
    c->log_domain = 0;
    c->workspace_bytes = 0;
}

#define DEFAULT_WORKSPACE ((size_t)1024 << 20) /* holds the MNIST config's batch of 1024 */
#define MAX_CODES ((int64_t)1 << 31)
#define MAX_DIM ((int64_t)1 << 20)

static optvq_status check_config(const optvq_quantizer_config *c)
{
    if (c->n_e < 1 || c->n_e > MAX_CODES)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "quantizer: n_e must be in [1, 2^31], got %lld", (long long)c->n_e);
    if (c->e_dim < 1 || c->e_dim > MAX_DIM)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "quantizer: e_dim must be in [1, 2^20], got %lld",
                          (long long)c->e_dim);
    if (c->num_head < 1 || c->e_dim % c->num_head)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "quantizer: num_head %lld must divide e_dim %lld",
                          (long long)c->num_head, (long long)c->e_dim);
    if ((unsigned)c->assign > OPTVQ_ASSIGN_NEAREST || (unsigned)c->normalize > OPTVQ_NORMALIZE_NULL ||
        (unsigned)c->loss > OPTVQ_LOSS_CE)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "quantizer: unknown assign/normalize/loss value");
    if (!isfinite(c->beta) || !isfinite(c->epsilon) || c->epsilon <= 0)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "quantizer: beta must be finite and epsilon > 0");
    if (c->n_iters < 0 || c->n_iters > 10000)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "quantizer: n_iters must be in [0, 10000], got %d", c->n_iters);
    double cb_bytes = (double)c->n_e * (double)(c->e_dim / c->num_head) * 4.0;
    if (cb_bytes > (double)((size_t)16 << 30))
        return optvq_fail(OPTVQ_ERR_NOMEM, "quantizer: codebook of %.0f GiB is absurd", cb_bytes / (1 << 30));
    return OPTVQ_OK;
}

static int64_t param_offset(const optvq_quantizer *q, optvq_param which, int64_t *count)
{
    const int64_t d = q->d, emb = q->cfg.n_e * d;
    switch (which) {
    case OPTVQ_PARAM_EMBEDDING: *count = emb; return 0;
    case OPTVQ_PARAM_PROJ_WEIGHT: *count = d * d; return q->cfg.use_proj ? emb : -1;
    case OPTVQ_PARAM_PROJ_BIAS: *count = d; return q->cfg.use_proj ? emb + d * d : -1;
    }
    return -1;
}

optvq_status optvq_quantizer_create(const optvq_quantizer_config *config, uint64_t seed, optvq_quantizer **out)
{
    if (!out)
        return null_arg(__func__, "out");
    *out = NULL;
    if (!config)
        return null_arg(__func__, "config");
    OPTVQ_TRY(check_config(config));
    optvq_quantizer *q = calloc(1, sizeof *q);
    if (!q)
        return optvq_fail(OPTVQ_ERR_NOMEM, "quantizer: out of memory");
    q->cfg = *config;
    if (!q->cfg.workspace_bytes)
        q->cfg.workspace_bytes = DEFAULT_WORKSPACE;
    q->d = config->e_dim / config->num_head;
    const int64_t n_e = config->n_e, d = q->d;
    q->n_params = n_e * d + (config->use_proj ? d * d + d : 0);
    q->params = malloc((size_t)q->n_params * sizeof(float));
    q->grads = calloc((size_t)q->n_params, sizeof(float));
    q->cb = malloc((size_t)(n_e * d) * sizeof(float));
    q->cbT = malloc((size_t)(n_e * d) * sizeof(float));
    q->cn = malloc((size_t)n_e * sizeof(float));
    if (!q->params || !q->grads || !q->cb || !q->cbT || !q->cn) {
        optvq_quantizer_free(q);
        return optvq_fail(OPTVQ_ERR_NOMEM, "quantizer: out of memory for %lld codes", (long long)n_e);
    }
    /* PyTorch's initialisation: nn.Embedding N(0,1); proj weight N(0, d^-1/2)
     * (OptVQ's override); nn.Linear bias U(-1/sqrt(d), 1/sqrt(d)). */
    optvq_rng rng;
    optvq_rng_seed(&rng, seed);
    for (int64_t i = 0; i < n_e * d; i++)
        q->params[i] = (float)optvq_rng_normal(&rng);
    if (config->use_proj) {
        float *w = q->params + n_e * d, *b = w + d * d;
        double std = 1.0 / sqrt((double)d);
        for (int64_t i = 0; i < d * d; i++)
            w[i] = (float)(optvq_rng_normal(&rng) * std);
        for (int64_t i = 0; i < d; i++)
            b[i] = (float)((2.0 * optvq_rng_uniform(&rng) - 1.0) * std);
    }
    optvq_blas_single_threaded();
    *out = q;
    return OPTVQ_OK;
}

void optvq_quantizer_free(optvq_quantizer *q)
{
    if (!q)
        return;
    free(q->params);
    free(q->grads);
    free(q->xv);
    free(q->xn);
    free(q->idx);
    free(q->cb);
    free(q->cbT);
    free(q->cn);
    sk_workspace_free(&q->ws);
    free(q);
}

const optvq_quantizer_config *optvq_quantizer_get_config(const optvq_quantizer *q)
{
    if (!q) {
        null_arg(__func__, "q");
        return NULL;
    }
    return &q->cfg;
}

void quantizer_set_allreduce(optvq_quantizer *q, optvq_allreduce_fn allreduce, void *ctx)
{
    if (!q)
        return;
    q->cfg.allreduce = allreduce;
    q->cfg.allreduce_ctx = ctx;
    q->have_forward = 0;
}

optvq_status optvq_quantizer_set_assign(optvq_quantizer *q, optvq_assign assign)
{
    if (!q)
        return null_arg(__func__, "q");
    if ((unsigned)assign > OPTVQ_ASSIGN_NEAREST)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "quantizer: unknown assignment %d", (int)assign);
    q->cfg.assign = assign;
    q->have_forward = 0;
    return OPTVQ_OK;
}

optvq_status quantizer_set_sinkhorn(optvq_quantizer *q, optvq_normalize mode, float epsilon, int n_iters)
{
    if (!q)
        return null_arg(__func__, "q");
    if ((unsigned)mode > OPTVQ_NORMALIZE_NULL || !(epsilon > 0.0f) || !isfinite(epsilon) || n_iters < 1)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "quantizer: Sinkhorn settings out of range (normalize %d, epsilon %g, %d iterations)",
                          (int)mode, (double)epsilon, n_iters);
    q->cfg.normalize = mode;
    q->cfg.epsilon = epsilon;
    q->cfg.n_iters = n_iters;
    q->have_forward = 0;
    return OPTVQ_OK;
}

/* NULL handle or unknown parameter: a message, NULL and *count = 0. */
static int bad_param_args(const char *function, const optvq_quantizer *q, optvq_param which, int64_t *count)
{
    if (count)
        *count = 0;
    if (!q) {
        null_arg(function, "q");
        return 1;
    }
    if ((unsigned)which > OPTVQ_PARAM_PROJ_BIAS) {
        optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: unknown parameter %d", function, (int)which);
        return 1;
    }
    return 0;
}

float *optvq_quantizer_param(optvq_quantizer *q, optvq_param which, int64_t *count)
{
    if (bad_param_args(__func__, q, which, count))
        return NULL;
    int64_t n = 0, off = param_offset(q, which, &n);
    if (count)
        *count = off < 0 ? 0 : n;
    return off < 0 ? NULL : q->params + off;
}

float *optvq_quantizer_grad(optvq_quantizer *q, optvq_param which, int64_t *count)
{
    if (bad_param_args(__func__, q, which, count))
        return NULL;
    int64_t n = 0, off = param_offset(q, which, &n);
    if (count)
        *count = off < 0 ? 0 : n;
    return off < 0 ? NULL : q->grads + off;
}

void optvq_quantizer_zero_grad(optvq_quantizer *q)
{
    if (q)
        memset(q->grads, 0, (size_t)q->n_params * sizeof(float));
}

/* cb (n_e, d) = E W^T + b (nn.Linear), or E. */
static optvq_status build_codebook(optvq_quantizer *q)
{
    const int64_t n_e = q->cfg.n_e, d = q->d;
    const float *E = q->params;
    for (int64_t i = 0; i < n_e * d; i++)
        if (!isfinite(E[i]))
            return optvq_fail(OPTVQ_ERR_NUMERIC, "quantizer: the embedding holds NaN/Inf (row %lld)",
                              (long long)(i / d));
    if (q->cfg.use_proj) {
        const float *W = E + n_e * d, *b = W + d * d;
        for (int64_t i = 0; i < d * d + d; i++)
            if (!isfinite(W[i]))
                return optvq_fail(OPTVQ_ERR_NUMERIC, "quantizer: the projection holds NaN/Inf");
        for (int64_t k = 0; k < n_e; k++)
            memcpy(q->cb + k * d, b, (size_t)d * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n_e, (int)d, (int)d, 1.0f, E, (int)d, W, (int)d,
                    1.0f, q->cb, (int)d);
    } else {
        memcpy(q->cb, E, (size_t)(n_e * d) * sizeof(float));
    }
    for (int64_t k = 0; k < n_e; k++)
        for (int64_t j = 0; j < d; j++)
            q->cbT[j * n_e + k] = q->cb[k * d + j];
    dist_sqnorms(q->cn, q->cb, n_e, d);
    for (int64_t k = 0; k < n_e; k++)
        if (!isfinite(q->cn[k]))
            return optvq_fail(OPTVQ_ERR_NUMERIC, "quantizer: code %lld overflows float32", (long long)k);
    return OPTVQ_OK;
}

optvq_status optvq_quantizer_codebook(optvq_quantizer *q, float *codebook)
{
    if (!q)
        return null_arg(__func__, "q");
    if (!codebook)
        return null_arg(__func__, "codebook");
    OPTVQ_TRY(build_codebook(q));
    memcpy(codebook, q->cb, (size_t)(q->cfg.n_e * q->d) * sizeof(float));
    return OPTVQ_OK;
}

/* batch may be 0 (a data-parallel rank with no local samples); height and
 * width may not. Sizes are bounded before any int64 product is formed. */
static optvq_status check_shape(const optvq_quantizer *q, int64_t batch, int64_t height, int64_t width)
{
    if (batch < 0 || height < 1 || width < 1)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "quantizer: bad shape (%lld, %lld, %lld)", (long long)batch,
                          (long long)height, (long long)width);
    double n = (double)(batch ? batch : 1) * (double)height * (double)width * (double)q->cfg.e_dim;
    if (n > 4e12)
        return optvq_fail(OPTVQ_ERR_NOMEM, "quantizer: input of %.0f elements is absurd", n);
    return OPTVQ_OK;
}

/* NCHW index of element (b, channel c, y, x) and vector index (b, y, x, head). */
#define NCHW(b, c, y, x) ((((b)*C + (c)) * H + (y)) * W + (x))

/* x (B, C, H, W) -> xv (N, d) with vectors ordered (b, y, x, head). */
static void to_vectors(float *xv, const float *x, int64_t B, int64_t C, int64_t H, int64_t W)
{
#pragma omp parallel for collapse(2) schedule(static) num_threads(optvq_threads_for((double)B * C * H * W))
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t y = 0; y < H; y++)
                for (int64_t xx = 0; xx < W; xx++)
                    xv[((b * H + y) * W + xx) * C + c] = x[NCHW(b, c, y, xx)];
}

/* The inverse: rows (N, d) -> out (B, C, H, W), out = rows or out += rows. */
static void from_vectors(float *out, const float *rows, int64_t B, int64_t C, int64_t H, int64_t W, int accumulate)
{
#pragma omp parallel for collapse(2) schedule(static) num_threads(optvq_threads_for((double)B * C * H * W))
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t y = 0; y < H; y++)
                for (int64_t xx = 0; xx < W; xx++) {
                    float v = rows[((b * H + y) * W + xx) * C + c];
                    if (accumulate)
                        out[NCHW(b, c, y, xx)] += v;
                    else
                        out[NCHW(b, c, y, xx)] = v;
                }
}

/* Writes x_q (B, C, H, W) = codebook rows of idx. */
static void gather_codes(float *x_q, const float *cb, const int64_t *idx, int64_t d, int64_t h, int64_t B, int64_t H,
                         int64_t W)
{
    const int64_t C = d * h;
#pragma omp parallel for collapse(2) schedule(static) num_threads(optvq_threads_for((double)B * C * H * W))
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t y = 0; y < H; y++)
                for (int64_t xx = 0; xx < W; xx++) {
                    int64_t v = ((b * H + y) * W + xx) * h + c / d;
                    x_q[NCHW(b, c, y, xx)] = cb[idx[v] * d + c % d];
                }
}

static optvq_status ensure_capacity(optvq_quantizer *q, int64_t N)
{
    if (N <= q->cap_N)
        return OPTVQ_OK;
    free(q->xv);
    free(q->xn);
    free(q->idx);
    q->xv = optvq_big_alloc((size_t)(N * q->d) * sizeof(float));
    q->xn = malloc((size_t)N * sizeof(float));
    q->idx = malloc((size_t)N * sizeof(int64_t));
    if (!q->xv || !q->xn || !q->idx) {
        q->cap_N = 0;
        return optvq_fail(OPTVQ_ERR_NOMEM, "quantizer: out of memory for %lld vectors", (long long)N);
    }
    q->cap_N = N;
    return OPTVQ_OK;
}

/* p = softmax(-D) over a row of n distances (vectorised exp, sums in
 * double); returns log sum_k exp(-D[k]). p may alias nothing in D. */
static double softmax_neg(const float *D, int64_t n, float *p)
{
    float dmin = INFINITY;
#pragma omp simd reduction(min : dmin)
    for (int64_t k = 0; k < n; k++)
        dmin = D[k] < dmin ? D[k] : dmin;
#pragma omp simd
    for (int64_t k = 0; k < n; k++)
        p[k] = D[k] - dmin;
    optvq_exp_neg_scaled(p, p, n, 1.0f);
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t k = 0; k < n; k++)
        s += p[k];
    const float inv = (float)(1.0 / s);
#pragma omp simd
    for (int64_t k = 0; k < n; k++)
        p[k] *= inv;
    return -(double)dmin + log(s);
}

/* Cross-entropy of logits -D with target idx, mean over vectors (docs/behaviour.md §1.8). */
static double ce_loss(const optvq_quantizer *q, const dist_ctx *dc)
{
    const int64_t n_e = dc->n_e;
    row_blocks rb = row_blocks_for(dc->N, n_e, dc->d);
    double part[64] = {0};
    const int threads = optvq_threads_for((double)dc->N * (double)n_e * (double)dc->d);
    float *bufs = malloc((size_t)threads * (size_t)((rb.chunk_rows + 1) * n_e) * sizeof(float));
    if (!bufs)
        return NAN;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t b = 0; b < rb.num_blocks; b++) {
#ifdef _OPENMP
        float *buf = bufs + (size_t)omp_get_thread_num() * (size_t)((rb.chunk_rows + 1) * n_e);
#else
        float *buf = bufs;
#endif
        float *p = buf + rb.chunk_rows * n_e;
        int64_t i0 = b * rb.block_rows, i1 = i0 + rb.block_rows < dc->N ? i0 + rb.block_rows : dc->N;
        double s = 0;
        for (int64_t c0 = i0; c0 < i1; c0 += rb.chunk_rows) {
            int64_t n = i1 - c0 < rb.chunk_rows ? i1 - c0 : rb.chunk_rows;
            dist_rows(dc, c0, n, buf);
            for (int64_t i = 0; i < n; i++) {
                const float *D = buf + i * n_e;
                s += D[q->idx[c0 + i]] + softmax_neg(D, n_e, p);
            }
        }
        part[b] = s;
    }
    free(bufs);
    double total = 0;
    for (int64_t b = 0; b < rb.num_blocks; b++)
        total += part[b];
    return total / (double)dc->N;
}

static void fill_dist_ctx(const optvq_quantizer *q, dist_ctx *dc)
{
    dc->x = q->xv;
    dc->xn = q->xn;
    dc->cb = q->cb;
    dc->cbT = q->cbT;
    dc->cn = q->cn;
    dc->N = q->N;
    dc->n_e = q->cfg.n_e;
    dc->d = q->d;
}

optvq_status optvq_quantizer_forward(optvq_quantizer *q, const float *x, int64_t batch, int64_t height,
                                     int64_t width, float *x_q, int64_t *indices, float *loss)
{
    if (!q)
        return null_arg(__func__, "q");
    q->have_forward = 0;
    if (!x)
        return null_arg(__func__, "x");
    OPTVQ_TRY(check_shape(q, batch, height, width));
    const int64_t C = q->cfg.e_dim, h = q->cfg.num_head, d = q->d, n_e = q->cfg.n_e;
    const int64_t numel = batch * C * height * width, N = batch * height * width * h;
    for (int64_t i = 0; i < numel; i++)
        if (!isfinite(x[i]))
            return optvq_fail(OPTVQ_ERR_NUMERIC, "quantizer: input holds NaN/Inf at element %lld", (long long)i);
    OPTVQ_TRY(build_codebook(q));
    OPTVQ_TRY(ensure_capacity(q, N));
    q->batch = batch;
    q->height = height;
    q->width = width;
    q->N = N;
    to_vectors(q->xv, x, batch, C, height, width);
    dist_sqnorms(q->xn, q->xv, N, d);
    for (int64_t i = 0; i < N; i++)
        if (!isfinite(q->xn[i]))
            return optvq_fail(OPTVQ_ERR_NUMERIC, "quantizer: input vector %lld overflows float32", (long long)i);

    dist_ctx dc;
    fill_dist_ctx(q, &dc);
    if (q->cfg.assign == OPTVQ_ASSIGN_NEAREST) {
        OPTVQ_TRY(nearest_assign(&dc, q->idx));
    } else {
        sk_params p = {q->cfg.normalize, q->cfg.epsilon, q->cfg.n_iters, q->cfg.log_domain, q->cfg.workspace_bytes,
                       q->cfg.allreduce, q->cfg.allreduce_ctx};
        OPTVQ_TRY(sk_assign(&dc, &p, &q->ws, q->idx, NULL));
    }

    if (x_q)
        gather_codes(x_q, q->cb, q->idx, d, h, batch, height, width);
    if (indices) {
        /* (b, y, x, head) -> (B, h, H, W) */
        for (int64_t b = 0; b < batch; b++)
            for (int64_t y = 0; y < height; y++)
                for (int64_t xx = 0; xx < width; xx++)
                    for (int64_t hd = 0; hd < h; hd++)
                        indices[((b * h + hd) * height + y) * width + xx] = q->idx[((b * height + y) * width + xx) * h + hd];
    }
    if (loss) {
        if (q->cfg.loss == OPTVQ_LOSS_CE) {
            double v = ce_loss(q, &dc);
            if (isnan(v))
                return optvq_fail(OPTVQ_ERR_NOMEM, "quantizer: out of memory computing the loss");
            *loss = (float)v;
        } else {
            double s = 0;
            for (int64_t i = 0; i < N; i++) {
                const float *xi = q->xv + i * d, *ci = q->cb + q->idx[i] * d;
                for (int64_t j = 0; j < d; j++) {
                    double t = (double)xi[j] - ci[j];
                    s += q->cfg.loss == OPTVQ_LOSS_L2 ? t * t : fabs(t);
                }
            }
            float m = N ? (float)(s / ((double)N * (double)d)) : NAN; /* torch: mean of empty is NaN */
            *loss = m + m * q->cfg.beta;
        }
    }
    (void)n_e;
    q->have_forward = 1;
    return OPTVQ_OK;
}

/* CE backward: G[i,k] = (w/N)(onehot - softmax(-D_i)); dD/dx = (x - c)/D.
 * grad_x_i += (sum_k W_ik) x_i - sum_k W_ik c_k,
 * grad_c_k += (sum_i W_ik) c_k - sum_i W_ik x_i,  with W = G / D (0 where the distance clamps).
 * Pass 1 runs over row blocks (grad_x, row log-sum-exps); pass 2 over code
 * blocks (grad_c), so each sum has one fixed order. */
static optvq_status ce_backward(optvq_quantizer *q, float w, float *gxv, float *gcb)
{
    dist_ctx dc;
    fill_dist_ctx(q, &dc);
    const int64_t N = q->N, n_e = q->cfg.n_e, d = q->d;
    const int threads = optvq_threads_for((double)N * (double)n_e * (double)d);
    const int64_t R = 64, KB = 256;
    const size_t per_thread = (size_t)(R * (n_e > KB ? n_e : KB)) * 2;
    float *bufs = malloc((size_t)threads * per_thread * sizeof(float));
    double *lse = malloc((size_t)(N ? N : 1) * sizeof(double));
    if (!bufs || !lse) {
        free(bufs);
        free(lse);
        return optvq_fail(OPTVQ_ERR_NOMEM, "quantizer: out of memory in the CE backward");
    }
    const double scale = (double)w / (double)N;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t i0 = 0; i0 < N; i0 += R) {
#ifdef _OPENMP
        float *D = bufs + (size_t)omp_get_thread_num() * per_thread;
#else
        float *D = bufs;
#endif
        float *Wm = D + R * n_e;
        int64_t n = N - i0 < R ? N - i0 : R;
        dist_rows(&dc, i0, n, D);
        for (int64_t i = 0; i < n; i++) {
            const float *Di = D + i * n_e;
            float *Wi = Wm + i * n_e; /* first the softmax, then W in place */
            lse[i0 + i] = softmax_neg(Di, n_e, Wi);
            Wi[q->idx[i0 + i]] -= 1.0f; /* p - onehot */
            const float fs = (float)-scale;
            double wsum = 0;
#pragma omp simd reduction(+ : wsum)
            for (int64_t k = 0; k < n_e; k++) {
                float wk = Di[k] > DIST_MIN ? fs * Wi[k] / Di[k] : 0.0f; /* clamped: no gradient */
                Wi[k] = wk;
                wsum += wk;
            }
            float *gx = gxv + (i0 + i) * d;
            const float *xi = q->xv + (i0 + i) * d;
            for (int64_t j = 0; j < d; j++)
                gx[j] += (float)(wsum * xi[j]);
        }
        /* gx -= W C */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)d, (int)n_e, -1.0f, Wm, (int)n_e, q->cb,
                    (int)d, 1.0f, gxv + i0 * d, (int)d);
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t k0 = 0; k0 < n_e; k0 += KB) {
#ifdef _OPENMP
        float *D = bufs + (size_t)omp_get_thread_num() * per_thread;
#else
        float *D = bufs;
#endif
        int64_t nk = n_e - k0 < KB ? n_e - k0 : KB;
        float *Wm = D + R * KB;
        double colw[256] = {0};
        for (int64_t i0 = 0; i0 < N; i0 += R) {
            int64_t n = N - i0 < R ? N - i0 : R;
            dist_rows_codes(&dc, i0, n, k0, nk, D);
            for (int64_t i = 0; i < n; i++) {
                const float *Di = D + i * nk;
                float *Wi = Wm + i * nk;
                const float l = (float)lse[i0 + i];
#pragma omp simd
                for (int64_t k = 0; k < nk; k++)
                    Wi[k] = Di[k] + l;
                optvq_exp_neg_scaled(Wi, Wi, nk, 1.0f); /* softmax(-D)[i, k] */
                int64_t t = q->idx[i0 + i] - k0;
                if (t >= 0 && t < nk)
                    Wi[t] -= 1.0f;
                const float fs = (float)-scale;
                for (int64_t k = 0; k < nk; k++) {
                    float wk = Di[k] > DIST_MIN ? fs * Wi[k] / Di[k] : 0.0f; /* clamped: no gradient */
                    Wi[k] = wk;
                    colw[k] += wk;
                }
            }
            /* gcb[k0:k0+nk] -= W^T X */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nk, (int)d, (int)n, -1.0f, Wm, (int)nk,
                        q->xv + i0 * d, (int)d, 1.0f, gcb + k0 * d, (int)d);
        }
        for (int64_t k = 0; k < nk; k++)
            for (int64_t j = 0; j < d; j++)
                gcb[(k0 + k) * d + j] += (float)(colw[k] * q->cb[(k0 + k) * d + j]);
    }
    free(bufs);
    free(lse);
    return OPTVQ_OK;
}

optvq_status optvq_quantizer_backward(optvq_quantizer *q, const float *grad_xq, float loss_weight, float *grad_x)
{
    if (!q)
        return null_arg(__func__, "q");
    if (!isfinite(loss_weight))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: loss_weight must be finite, got %g", __func__,
                          (double)loss_weight);
    if (!q->have_forward)
        return optvq_fail(OPTVQ_ERR_STATE, "quantizer: backward called without a successful forward");
    const int64_t N = q->N, d = q->d, n_e = q->cfg.n_e, h = q->cfg.num_head;
    const int64_t C = q->cfg.e_dim, B = q->batch, H = q->height, W = q->width;
    /* straight-through: d(x_q)/dx is the identity */
    if (grad_x && grad_xq) {
        const int64_t numel = B * C * H * W;
        for (int64_t i = 0; i < numel; i++)
            grad_x[i] += grad_xq[i];
    }
    if (loss_weight == 0.0f || N == 0)
        return OPTVQ_OK;
    float *gxv = calloc((size_t)(N * d), sizeof(float));
    float *gcb = calloc((size_t)(n_e * d), sizeof(float));
    if (!gxv || !gcb) {
        free(gxv);
        free(gcb);
        return optvq_fail(OPTVQ_ERR_NOMEM, "quantizer: out of memory in backward");
    }
    const float numel = (float)((double)N * (double)d);
    const float gx_scale = loss_weight / numel, gc_scale = loss_weight * q->cfg.beta / numel;
    if (q->cfg.loss == OPTVQ_LOSS_CE) {
        optvq_status st = ce_backward(q, loss_weight, gxv, gcb);
        if (st != OPTVQ_OK) {
            free(gxv);
            free(gcb);
            return st;
        }
    } else {
        const int l2 = q->cfg.loss == OPTVQ_LOSS_L2;
        for (int64_t i = 0; i < N; i++) {
            const float *xi = q->xv + i * d, *ci = q->cb + q->idx[i] * d;
            float *gx = gxv + i * d, *gc = gcb + q->idx[i] * d;
            for (int64_t j = 0; j < d; j++) {
                float diff = xi[j] - ci[j];
                if (l2) {
                    gx[j] = gx_scale * (2.0f * diff);
                    gc[j] += gc_scale * (2.0f * -diff);
                } else {
                    float s = (float)((diff > 0) - (diff < 0));
                    gx[j] = gx_scale * s;
                    gc[j] += gc_scale * -s;
                }
            }
        }
    }
    if (grad_x)
        from_vectors(grad_x, gxv, B, C, H, W, 1);
    /* codebook -> parameters */
    float *gE = q->grads;
    if (q->cfg.use_proj) {
        const float *E = q->params, *Wp = E + n_e * d;
        float *gW = gE + n_e * d, *gb = gW + d * d;
        /* cb = E W^T + b: gE += gcb W, gW += gcb^T E, gb += colsum(gcb) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n_e, (int)d, (int)d, 1.0f, gcb, (int)d, Wp,
                    (int)d, 1.0f, gE, (int)d);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d, (int)d, (int)n_e, 1.0f, gcb, (int)d, E, (int)d,
                    1.0f, gW, (int)d);
        for (int64_t j = 0; j < d; j++) {
            double s = 0;
            for (int64_t k = 0; k < n_e; k++)
                s += gcb[k * d + j];
            gb[j] += (float)s;
        }
    } else {
        for (int64_t i = 0; i < n_e * d; i++)
            gE[i] += gcb[i];
    }
    (void)h;
    free(gxv);
    free(gcb);
    return OPTVQ_OK;
}

optvq_status optvq_quantizer_decode(optvq_quantizer *q, const int64_t *indices, int64_t batch, int64_t height,
                                    int64_t width, float *x_q)
{
    if (!q)
        return null_arg(__func__, "q");
    if (!indices)
        return null_arg(__func__, "indices");
    if (!x_q)
        return null_arg(__func__, "x_q");
    OPTVQ_TRY(check_shape(q, batch, height, width));
    const int64_t h = q->cfg.num_head, n_e = q->cfg.n_e;
    const int64_t count = batch * h * height * width;
    for (int64_t i = 0; i < count; i++)
        if (indices[i] < 0 || indices[i] >= n_e)
            return optvq_fail(OPTVQ_ERR_INVALID_ARG, "decode: index %lld at position %lld is outside [0, %lld)",
                              (long long)indices[i], (long long)i, (long long)n_e);
    OPTVQ_TRY(build_codebook(q));
    int64_t *idx = malloc((size_t)(count ? count : 1) * sizeof *idx);
    if (!idx)
        return optvq_fail(OPTVQ_ERR_NOMEM, "decode: out of memory");
    /* (B, h, H, W) -> (b, y, x, head) */
    for (int64_t b = 0; b < batch; b++)
        for (int64_t hd = 0; hd < h; hd++)
            for (int64_t y = 0; y < height; y++)
                for (int64_t xx = 0; xx < width; xx++)
                    idx[((b * height + y) * width + xx) * h + hd] = indices[((b * h + hd) * height + y) * width + xx];
    gather_codes(x_q, q->cb, idx, q->d, h, batch, height, width);
    free(idx);
    return OPTVQ_OK;
}
