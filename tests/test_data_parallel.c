/* The data-parallel pieces that need no second process: gradient averaging
 * in buckets (parameters that span buckets land back in place), the double
 * fallback of the float reduction, the broadcast, and comm_any. A fake group
 * of 2 ranks stands in for MPI: its "other rank" holds the same values as
 * this one, so a sum doubles them (and an average gives them back). The real
 * thing runs under mpirun in tests/cli/mpi_train.sh and tests/mpi/. */
#include "core/comm.h"
#include "nn/nn.h"
#include "optvq/train.h"
#include "test.h"
#include "train/optimizer.h"

#include <stdlib.h>
#include <string.h>

typedef struct fake_group {
    int float_calls, double_calls;
    size_t largest;
} fake_group;

static int fake_doubles(double *v, size_t n, optvq_reduce_op op, void *ctx)
{
    fake_group *g = ctx;
    g->double_calls++;
    for (size_t i = 0; i < n; i++)
        v[i] = op == OPTVQ_REDUCE_SUM ? 2 * v[i] : v[i];
    return 0;
}

static int fake_floats(float *v, size_t n, void *ctx)
{
    fake_group *g = ctx;
    g->float_calls++;
    if (n > g->largest)
        g->largest = n;
    for (size_t i = 0; i < n; i++)
        v[i] *= 2;
    return 0;
}

TEST(data_parallel_average_grads)
{
    nn_params ps;
    nn_params_init(&ps);
    const int64_t shapes[3][2] = {{5, 3}, {1, 1}, {4, 4}}; /* 15 + 1 + 16 floats */
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "p%d.weight", i);
        CHECK_OK(nn_params_add_role(&ps, name, 2, shapes[i], NN_ROLE_LINEAR_WEIGHT, shapes[i][1], NULL));
    }
    CHECK_OK(nn_params_finalize(&ps));
    optimizer o;
    CHECK_OK(optimizer_init_list(&o, &ps, 1e-3, 0.0, 10));
    for (int i = 0; i < ps.count; i++)
        for (int64_t k = 0; k < ps.items[i].numel; k++)
            ps.items[i].grad[k] = (float)(100 * i + k);
    optimizer *list[1] = {&o};
    for (size_t bucket = 1; bucket <= 40; bucket += 6) {
        fake_group g = {0, 0, 0};
        optvq_comm comm = {0, 2, fake_doubles, fake_floats, &g};
        comm_tally tally = {0, 0};
        CHECK_OK(optimizer_average_grads_in(list, 1, &comm, &tally, bucket));
        for (int i = 0; i < ps.count; i++)
            for (int64_t k = 0; k < ps.items[i].numel; k++)
                CHECK_MSG(ps.items[i].grad[k] == (float)(100 * i + k), "bucket %zu: %s[%lld] = %g", bucket,
                          ps.items[i].name, (long long)k, ps.items[i].grad[k]);
        CHECK(g.float_calls == (int)((32 + bucket - 1) / bucket) && g.largest <= bucket);
        CHECK(tally.bytes == 32 * sizeof(float));
    }
    /* no float hook: through doubles, the same values */
    fake_group g = {0, 0, 0};
    optvq_comm comm = {1, 2, fake_doubles, NULL, &g};
    CHECK_OK(optimizer_average_grads(list, 1, &comm, NULL));
    CHECK(g.double_calls == 1 && g.float_calls == 0);
    CHECK(ps.items[2].grad[15] == 215.0f);
    /* one process: nothing is called */
    optvq_comm alone = {0, 1, fake_doubles, fake_floats, &g};
    CHECK_OK(optimizer_average_grads(list, 1, &alone, NULL));
    CHECK(g.double_calls == 1 && g.float_calls == 0);
    optimizer_free(&o);
    nn_params_free(&ps);
}

static int failing_doubles(double *v, size_t n, optvq_reduce_op op, void *ctx)
{
    (void)v, (void)n, (void)op, (void)ctx;
    return 1;
}

TEST(data_parallel_comm)
{
    fake_group g = {0, 0, 0};
    float v[3] = {1.5f, -2.0f, 3.0f};
    optvq_comm rank1 = {1, 2, fake_doubles, fake_floats, &g}, rank0 = {0, 2, fake_doubles, fake_floats, &g};
    /* broadcast: rank 1 contributes zeros, so with the fake it ends with 2 x 0 */
    CHECK_OK(comm_broadcast_floats(&rank1, v, 3, "test"));
    CHECK(v[0] == 0.0f && v[1] == 0.0f && v[2] == 0.0f);
    float w[2] = {1.0f, 2.0f};
    CHECK_OK(comm_broadcast_floats(&rank0, w, 2, "test"));
    CHECK(w[0] == 2.0f && w[1] == 4.0f); /* rank 0's values plus the fake's copy of them */
    double m[2] = {3.0, 5.0};
    CHECK_OK(comm_mean(&rank0, m, 2, "test"));
    CHECK(m[0] == 3.0 && m[1] == 5.0);
    CHECK(comm_any(&rank0, 0) == 0 && comm_any(&rank0, 1) == 1 && comm_any(NULL, 1) == 1);
    CHECK(comm_size(NULL) == 1 && comm_rank(NULL) == 0 && comm_size(&rank1) == 2 && comm_rank(&rank1) == 1);
    /* a failing hook: a status with a message naming the reduction, and comm_any says failed */
    optvq_comm broken = {0, 2, failing_doubles, NULL, NULL};
    double d = 1;
    CHECK(comm_sum(&broken, &d, 1, "the step's losses") == OPTVQ_ERR_STATE);
    CHECK(strstr(optvq_last_error(), "the step's losses") != NULL);
    CHECK(comm_any(&broken, 0) == 1);
}
