/* The Sinkhorn quantizer over MPI ranks (run under mpirun -np 2): each rank
 * holds its slice of one global batch and the quantizer's allreduce hook is
 * mpi_comm_allreduce, as the reference's sinkhorn(..., is_distributed=True).
 *
 * For every normalisation the ranks together must compute exactly the
 * single-process quantizer on the concatenated batch: equal indices; x_q,
 * loss and gradients to float32 rounding. ("all" standardises the distances
 * with statistics that optvq reduces over the ranks; the reference keeps them
 * per rank, which makes its assignment depend on the split.) Each rank's loss
 * is the mean over its own vectors, and data parallel training averages
 * gradients over ranks; so each rank runs backward with loss_weight 1/size,
 * its grad_x is then its slice of the single-process grad_x, and the
 * parameter gradients summed over ranks are the single-process ones. */
#include "mpi/mpi_comm.h"
#include "optvq/optvq.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define B_LOCAL 4 /* images per rank */
#define E_DIM 16
#define HEIGHT 4
#define WIDTH 4
#define N_E 32
#define MAX_RANKS 8
#define SEED 1234

typedef struct test_case {
    const char *name;
    optvq_normalize normalize;
    int num_head, use_proj;
    optvq_loss loss;
    int log_domain, streamed;
    float epsilon; /* 0: the default (10) */
} test_case;

static const test_case CASES[] = {
    {"dim h1 proj l2", OPTVQ_NORMALIZE_DIM, 1, 1, OPTVQ_LOSS_L2, 0, 0, 0.0f},
    {"dim h4 noproj ce", OPTVQ_NORMALIZE_DIM, 4, 0, OPTVQ_LOSS_CE, 0, 0, 0.0f},
    {"null h1 noproj l2", OPTVQ_NORMALIZE_NULL, 1, 0, OPTVQ_LOSS_L2, 0, 0, 0.0f},
    {"null h4 proj ce", OPTVQ_NORMALIZE_NULL, 4, 1, OPTVQ_LOSS_CE, 0, 0, 0.0f},
    {"dim h4 proj l2 streamed", OPTVQ_NORMALIZE_DIM, 4, 1, OPTVQ_LOSS_L2, 0, 1, 0.0f},
    {"dim h1 proj ce log-domain", OPTVQ_NORMALIZE_DIM, 1, 1, OPTVQ_LOSS_CE, 1, 0, 0.0f},
    /* log-sums of exp(-500 D) overflow unless shifted by the global maximum */
    {"null h1 noproj l2 log-domain eps 500", OPTVQ_NORMALIZE_NULL, 1, 0, OPTVQ_LOSS_L2, 1, 0, 500.0f},
    {"all h1 proj l2", OPTVQ_NORMALIZE_ALL, 1, 1, OPTVQ_LOSS_L2, 0, 0, 0.0f},
    {"all h4 noproj ce", OPTVQ_NORMALIZE_ALL, 4, 0, OPTVQ_LOSS_CE, 0, 0, 0.0f},
    {"all h4 proj l2 log-domain", OPTVQ_NORMALIZE_ALL, 4, 1, OPTVQ_LOSS_L2, 1, 0, 0.0f},
};

static int g_rank, g_size;

static void fail_msg(const test_case *tc, const char *what)
{
    fprintf(stderr, "rank %d: %s: %s\n", g_rank, tc->name, what);
}

/* Deterministic N(0,1) data, the same on every rank (xorshift + Box-Muller). */
static uint64_t rng_state;
static double rng_uniform(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return ((double)(rng_state >> 11) + 0.5) / 9007199254740992.0;
}
static void fill_normal(float *v, int64_t n, uint64_t seed)
{
    rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < n; i++)
        v[i] = (float)(sqrt(-2.0 * log(rng_uniform())) * cos(6.283185307179586 * rng_uniform()));
}

/* max |a - b| <= tol * max(1, max |b|) */
static int close_enough(const float *a, const float *b, int64_t n, double tol, double *err_out)
{
    double err = 0, scale = 1;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        err = e > err || isnan(e) ? e : err;
        scale = fabs(b[i]) > scale ? fabs(b[i]) : scale;
    }
    if (err_out)
        *err_out = err / scale;
    return err <= tol * scale;
}

/* What one quantizer computes on one slice: forward, then backward. */
typedef struct slice_result {
    float *x_q, *grad_x, *grad_params;
    int64_t *indices;
    float loss;
    int64_t n_grad; /* embedding + projection gradients, concatenated */
} slice_result;

static void slice_result_free(slice_result *r)
{
    free(r->x_q);
    free(r->grad_x);
    free(r->grad_params);
    free(r->indices);
}

static optvq_quantizer_config case_config(const test_case *tc)
{
    optvq_quantizer_config c;
    optvq_quantizer_config_default(&c);
    c.n_e = N_E;
    c.e_dim = E_DIM;
    c.num_head = tc->num_head;
    c.normalize = tc->normalize;
    c.loss = tc->loss;
    c.use_proj = tc->use_proj;
    c.log_domain = tc->log_domain;
    if (tc->epsilon > 0)
        c.epsilon = tc->epsilon;
    c.workspace_bytes = tc->streamed ? 1 : 0; /* 1 byte: the matrix never fits, rows are streamed */
    return c;
}

/* Quantizes `batch` images of x with grad_xq as the incoming gradient. */
static optvq_status run_slice(const optvq_quantizer_config *c, const float *x, const float *grad_xq, int64_t batch,
                              float loss_weight, slice_result *out)
{
    memset(out, 0, sizeof *out);
    const int64_t numel = batch * E_DIM * HEIGHT * WIDTH, n_idx = batch * c->num_head * HEIGHT * WIDTH;
    optvq_quantizer *q = NULL;
    optvq_status st = optvq_quantizer_create(c, SEED, &q); /* same parameters on every rank */
    if (st != OPTVQ_OK)
        return st;
    int64_t n_emb = 0, n_w = 0, n_b = 0;
    optvq_quantizer_grad(q, OPTVQ_PARAM_EMBEDDING, &n_emb);
    optvq_quantizer_grad(q, OPTVQ_PARAM_PROJ_WEIGHT, &n_w);
    optvq_quantizer_grad(q, OPTVQ_PARAM_PROJ_BIAS, &n_b);
    out->n_grad = n_emb + n_w + n_b;
    out->x_q = malloc((size_t)numel * sizeof(float));
    out->grad_x = calloc((size_t)numel, sizeof(float));
    out->grad_params = malloc((size_t)out->n_grad * sizeof(float));
    out->indices = malloc((size_t)n_idx * sizeof(int64_t));
    if (!out->x_q || !out->grad_x || !out->grad_params || !out->indices) {
        optvq_quantizer_free(q);
        return OPTVQ_ERR_NOMEM;
    }
    st = optvq_quantizer_forward(q, x, batch, HEIGHT, WIDTH, out->x_q, out->indices, &out->loss);
    if (st == OPTVQ_OK)
        st = optvq_quantizer_backward(q, grad_xq, loss_weight, out->grad_x);
    if (st == OPTVQ_OK) {
        memcpy(out->grad_params, optvq_quantizer_grad(q, OPTVQ_PARAM_EMBEDDING, NULL), (size_t)n_emb * sizeof(float));
        if (c->use_proj) {
            memcpy(out->grad_params + n_emb, optvq_quantizer_grad(q, OPTVQ_PARAM_PROJ_WEIGHT, NULL),
                   (size_t)n_w * sizeof(float));
            memcpy(out->grad_params + n_emb + n_w, optvq_quantizer_grad(q, OPTVQ_PARAM_PROJ_BIAS, NULL),
                   (size_t)n_b * sizeof(float));
        }
    }
    optvq_quantizer_free(q);
    return st;
}

/* ---- one case ---- */

static int run_case(const test_case *tc)
{
    const optvq_quantizer_config base = case_config(tc);
    const int64_t b_global = (int64_t)B_LOCAL * g_size;
    const int64_t slice_numel = (int64_t)B_LOCAL * E_DIM * HEIGHT * WIDTH;
    const int64_t slice_idx = (int64_t)B_LOCAL * tc->num_head * HEIGHT * WIDTH;
    float *x = malloc((size_t)(slice_numel * g_size) * sizeof(float));
    float *grad_xq = malloc((size_t)(slice_numel * g_size) * sizeof(float));
    if (!x || !grad_xq) {
        free(x);
        free(grad_xq);
        fail_msg(tc, "out of memory");
        return 1;
    }
    fill_normal(x, slice_numel * g_size, 1);
    fill_normal(grad_xq, slice_numel * g_size, 2);
    const float *my_x = x + g_rank * slice_numel, *my_gxq = grad_xq + g_rank * slice_numel;
    int failures = 0;
    char msg[256];

    /* the distributed run: this rank's slice, the MPI hook */
    optvq_quantizer_config dist = base;
    dist.allreduce = mpi_comm_allreduce;
    slice_result mine;
    if (run_slice(&dist, my_x, my_gxq, B_LOCAL, 1.0f / (float)g_size, &mine) != OPTVQ_OK) {
        snprintf(msg, sizeof msg, "distributed run failed: %s", optvq_last_error());
        fail_msg(tc, msg);
        slice_result_free(&mine);
        free(x);
        free(grad_xq);
        return 1;
    }

    /* single process on the concatenated batch: indices etc. of this slice */
    slice_result whole;
    int whole_ok = run_slice(&base, x, grad_xq, b_global, 1.0f, &whole) == OPTVQ_OK;
    if (!whole_ok) {
        snprintf(msg, sizeof msg, "single-process run failed: %s", optvq_last_error());
        fail_msg(tc, msg);
        failures++;
    }

    if (!whole_ok) {
        slice_result_free(&mine);
        free(x);
        free(grad_xq);
        return failures;
    }
    const float *e_xq = whole.x_q + g_rank * slice_numel, *e_gx = whole.grad_x + g_rank * slice_numel;
    const int64_t *e_idx = whole.indices + g_rank * slice_idx;
    const double e_loss = whole.loss;

    int64_t differ = 0;
    for (int64_t i = 0; i < slice_idx; i++)
        differ += mine.indices[i] != e_idx[i];
    if (differ) {
        snprintf(msg, sizeof msg, "%lld of %lld indices differ", (long long)differ, (long long)slice_idx);
        fail_msg(tc, msg);
        failures++;
    }
    double err = 0;
    if (!close_enough(mine.x_q, e_xq, slice_numel, 1e-6, &err)) {
        snprintf(msg, sizeof msg, "x_q differs (relative error %.3g)", err);
        fail_msg(tc, msg);
        failures++;
    }
    if (!close_enough(mine.grad_x, e_gx, slice_numel, 1e-5, &err)) {
        snprintf(msg, sizeof msg, "grad_x differs (relative error %.3g)", err);
        fail_msg(tc, msg);
        failures++;
    }

    /* loss: the mean of the per-rank means is the global mean (equal slices);
     * parameter gradients: summed over ranks (each weighted 1/size) */
    double loss_sum = mine.loss;
    double *gsum = malloc((size_t)mine.n_grad * sizeof(double));
    float *gsum_f = malloc((size_t)mine.n_grad * sizeof(float));
    int rc = gsum && gsum_f ? 0 : 1;
    for (int64_t i = 0; !rc && i < mine.n_grad; i++)
        gsum[i] = mine.grad_params[i];
    if (!rc)
        rc = mpi_comm_allreduce(&loss_sum, 1, OPTVQ_REDUCE_SUM, NULL);
    if (!rc)
        rc = mpi_comm_allreduce(gsum, (size_t)mine.n_grad, OPTVQ_REDUCE_SUM, NULL);
    if (rc) {
        fail_msg(tc, "cannot reduce the results");
        failures++;
    } else {
        for (int64_t i = 0; i < mine.n_grad; i++)
            gsum_f[i] = (float)gsum[i];
        {
            double mean_loss = loss_sum / g_size;
            if (fabs(mean_loss - e_loss) > 1e-5 * fmax(1.0, fabs(e_loss))) {
                snprintf(msg, sizeof msg, "mean loss over ranks %.9g, single process %.9g", mean_loss, e_loss);
                fail_msg(tc, msg);
                failures++;
            }
            if (!close_enough(gsum_f, whole.grad_params, mine.n_grad, 1e-5, &err)) {
                snprintf(msg, sizeof msg, "summed parameter gradients differ (relative error %.3g)", err);
                fail_msg(tc, msg);
                failures++;
            }
        }
    }
    free(gsum);
    free(gsum_f);
    slice_result_free(&mine);
    slice_result_free(&whole);
    free(x);
    free(grad_xq);
    return failures;
}

/* The hook on its own: SUM and MAX of rank-dependent values, a bad op. */
static int check_allreduce(void)
{
    double v[3] = {g_rank + 1.0, -(double)g_rank, 0.5 * g_rank};
    double m[3] = {g_rank + 1.0, -(double)g_rank, 0.5 * g_rank};
    int failures = 0;
    if (mpi_comm_allreduce(v, 3, OPTVQ_REDUCE_SUM, NULL) || mpi_comm_allreduce(m, 3, OPTVQ_REDUCE_MAX, NULL))
        failures++;
    const double n = g_size, sum0 = n * (n + 1) / 2, sum1 = -n * (n - 1) / 2;
    if (v[0] != sum0 || v[1] != sum1 || v[2] != -0.5 * sum1)
        failures++;
    if (m[0] != n || m[1] != 0 || m[2] != 0.5 * (n - 1))
        failures++;
    if (mpi_comm_allreduce(v, 1, (optvq_reduce_op)7, NULL) == 0) /* unknown op: an error, no MPI call */
        failures++;
    if (failures)
        fprintf(stderr, "rank %d: mpi_comm_allreduce: sum %g %g %g, max %g %g %g\n", g_rank, v[0], v[1], v[2], m[0],
                m[1], m[2]);
    return failures;
}

int main(int argc, char **argv)
{
    char msg[512];
    int rc = mpi_comm_init(&argc, &argv);
    if (rc) {
        fprintf(stderr, "test_quant_mpi: cannot start MPI: %s\n", mpi_comm_describe(rc, msg, sizeof msg));
        return 1;
    }
    g_rank = mpi_comm_rank();
    g_size = mpi_comm_size();
    if (g_size > MAX_RANKS) {
        if (g_rank == 0)
            fprintf(stderr, "test_quant_mpi: at most %d ranks, got %d\n", MAX_RANKS, g_size);
        mpi_comm_finalize();
        return 2;
    }
    const int n_cases = (int)(sizeof CASES / sizeof CASES[0]);
    int failed_cases = 0;
    double hook_failures = check_allreduce();
    if (mpi_comm_allreduce(&hook_failures, 1, OPTVQ_REDUCE_SUM, NULL) || hook_failures > 0)
        failed_cases++;
    if (g_rank == 0)
        printf("[ %s ] mpi_comm_allreduce sum/max (%d ranks)\n", failed_cases ? "FAIL" : " OK ", g_size);
    for (int i = 0; i < n_cases; i++) {
        /* every rank learns whether any rank failed the case */
        double failures = run_case(&CASES[i]);
        if ((rc = mpi_comm_allreduce(&failures, 1, OPTVQ_REDUCE_SUM, NULL)) != 0) {
            fprintf(stderr, "test_quant_mpi: %s\n", mpi_comm_describe(rc, msg, sizeof msg));
            failures = 1;
        }
        failed_cases += failures > 0;
        if (g_rank == 0)
            printf("[ %s ] %s (%d ranks)\n", failures > 0 ? "FAIL" : " OK ", CASES[i].name, g_size);
    }
    if (g_rank == 0)
        printf("mpi quant: %d passed, %d failed\n", n_cases + 1 - failed_cases, failed_cases);
    mpi_comm_finalize();
    return failed_cases ? 1 : 0;
}
