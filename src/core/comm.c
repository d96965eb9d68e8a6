#include "core/comm.h"

#include "core/error.h"

int comm_size(const optvq_comm *c) { return c && c->n_ranks > 1 ? c->n_ranks : 1; }

int comm_rank(const optvq_comm *c) { return comm_size(c) > 1 ? c->rank : 0; }

static optvq_status reduce(const optvq_comm *c, double *v, size_t n, optvq_reduce_op op, const char *what)
{
    if (comm_size(c) == 1 || n == 0)
        return OPTVQ_OK;
    if (!c->allreduce || c->allreduce(v, n, op, c->ctx) != 0)
        return optvq_fail(OPTVQ_ERR_STATE, "%s: reduction over the ranks failed", what);
    return OPTVQ_OK;
}

optvq_status comm_sum(const optvq_comm *c, double *values, size_t n, const char *what)
{
    return reduce(c, values, n, OPTVQ_REDUCE_SUM, what);
}

optvq_status comm_max(const optvq_comm *c, double *values, size_t n, const char *what)
{
    return reduce(c, values, n, OPTVQ_REDUCE_MAX, what);
}

optvq_status comm_mean(const optvq_comm *c, double *values, size_t n, const char *what)
{
    OPTVQ_TRY(comm_sum(c, values, n, what));
    const int size = comm_size(c);
    if (size > 1)
        for (size_t i = 0; i < n; i++)
            values[i] /= size;
    return OPTVQ_OK;
}

optvq_status comm_sum_floats(const optvq_comm *c, float *values, size_t n, const char *what)
{
    if (comm_size(c) == 1 || n == 0)
        return OPTVQ_OK;
    if (c->allreduce_floats) {
        if (c->allreduce_floats(values, n, c->ctx) != 0)
            return optvq_fail(OPTVQ_ERR_STATE, "%s: reduction over the ranks failed", what);
        return OPTVQ_OK;
    }
    enum { PIECE = 8192 };
    double buf[PIECE];
    for (size_t i0 = 0; i0 < n; i0 += PIECE) {
        size_t m = n - i0 < PIECE ? n - i0 : PIECE;
        for (size_t i = 0; i < m; i++)
            buf[i] = values[i0 + i];
        OPTVQ_TRY(comm_sum(c, buf, m, what));
        for (size_t i = 0; i < m; i++)
            values[i0 + i] = (float)buf[i];
    }
    return OPTVQ_OK;
}

optvq_status comm_broadcast_floats(const optvq_comm *c, float *values, size_t n, const char *what)
{
    if (comm_size(c) == 1)
        return OPTVQ_OK;
    if (c->rank != 0)
        for (size_t i = 0; i < n; i++)
            values[i] = 0.0f;
    return comm_sum_floats(c, values, n, what);
}

int comm_any(const optvq_comm *c, int failed)
{
    if (comm_size(c) == 1)
        return failed != 0;
    double flag = failed ? 1.0 : 0.0;
    if (!c->allreduce || c->allreduce(&flag, 1, OPTVQ_REDUCE_MAX, c->ctx) != 0)
        return 1;
    return flag != 0.0;
}
