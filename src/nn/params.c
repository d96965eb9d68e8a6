/* Parameter registry: PyTorch state-dict names -> shape, value, gradient.
 * One allocation for all values, one for all gradients. The gradients are an
 * anonymous mapping: its zero pages take no memory until a backward pass
 * writes them, so a model that only runs inference does not pay for them. */
#include "core/bigalloc.h"
#include "core/error.h"
#include "nn/nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define NN_ALIGN_FLOATS 16 /* 64 bytes */

void nn_params_init(nn_params *p) { memset(p, 0, sizeof *p); }

nn_param *nn_params_find(nn_params *p, const char *name)
{
    for (int i = 0; i < p->count; i++)
        if (strcmp(p->items[i].name, name) == 0)
            return &p->items[i];
    return NULL;
}

int nn_role_decays(nn_role role)
{
    return role == NN_ROLE_CONV_WEIGHT || role == NN_ROLE_CONVT_WEIGHT || role == NN_ROLE_LINEAR_WEIGHT;
}

/* Checks and appends one entry; *out points at it (valid until the next add). */
static optvq_status add_entry(nn_params *p, const char *name, int ndim, const int64_t *shape, nn_role role,
                              int64_t fan_in, int *index, nn_param **out)
{
    if (!p || !name || (ndim > 0 && !shape))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "nn_params_add: NULL argument");
    if (p->finalized)
        return optvq_fail(OPTVQ_ERR_STATE, "nn_params_add(%s): registry already finalized", name);
    if (strlen(name) == 0 || strlen(name) >= NN_PARAM_NAME_MAX)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "nn_params_add: bad name length for '%s'", name);
    if (ndim < 0 || ndim > NN_PARAM_MAX_DIMS)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "nn_params_add(%s): %d dims (max %d)", name, ndim,
                          NN_PARAM_MAX_DIMS);
    if (nn_params_find(p, name))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "nn_params_add: duplicate parameter '%s'", name);
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0 || shape[i] > ((int64_t)1 << 32) || numel > ((int64_t)1 << 40) / shape[i])
            return optvq_fail(OPTVQ_ERR_INVALID_ARG, "nn_params_add(%s): bad dimension %lld", name,
                              (long long)shape[i]);
        numel *= shape[i];
    }
    if (p->count == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64;
        nn_param *items = realloc(p->items, (size_t)cap * sizeof *items);
        if (!items)
            return optvq_fail(OPTVQ_ERR_NOMEM, "nn_params_add: out of memory");
        p->items = items;
        p->cap = cap;
    }
    nn_param *q = &p->items[p->count];
    memset(q, 0, sizeof *q);
    strcpy(q->name, name);
    q->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        q->shape[i] = shape[i];
    q->numel = numel;
    q->role = role;
    q->fan_in = fan_in;
    if (index)
        *index = p->count;
    p->count++;
    *out = q;
    return OPTVQ_OK;
}

optvq_status nn_params_add_role(nn_params *p, const char *name, int ndim, const int64_t *shape, nn_role role,
                                int64_t fan_in, int *index)
{
    nn_param *q;
    OPTVQ_TRY(add_entry(p, name, ndim, shape, role, fan_in, index, &q));
    q->offset = p->total;
    p->total += ((size_t)q->numel + NN_ALIGN_FLOATS - 1) / NN_ALIGN_FLOATS * NN_ALIGN_FLOATS;
    return OPTVQ_OK;
}

optvq_status nn_params_add(nn_params *p, const char *name, int ndim, const int64_t *shape,
                           int *index)
{
    return nn_params_add_role(p, name, ndim, shape, NN_ROLE_UNDECLARED, 0, index);
}

optvq_status nn_params_add_alias(nn_params *p, const char *name, int ndim, const int64_t *shape, nn_role role,
                                 int64_t fan_in, float *data, float *grad, int *index)
{
    if (!data || !grad)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "nn_params_add_alias(%s): NULL buffer", name ? name : "?");
    nn_param *q;
    OPTVQ_TRY(add_entry(p, name, ndim, shape, role, fan_in, index, &q));
    q->alias = 1;
    q->data = data;
    q->grad = grad;
    return OPTVQ_OK;
}

static size_t block_bytes(const nn_params *p) { return (p->total ? p->total : NN_ALIGN_FLOATS) * sizeof(float); }

optvq_status nn_params_finalize(nn_params *p)
{
    if (p->finalized)
        return optvq_fail(OPTVQ_ERR_STATE, "nn_params_finalize: called twice");
    size_t bytes = block_bytes(p);
    p->data = optvq_big_alloc(bytes);
    /* zero-filled and page-aligned; resident only once written */
    void *grad = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    p->grad = grad == MAP_FAILED ? NULL : grad;
    optvq_big_advise(p->grad, bytes);
    if (!p->data || !p->grad) {
        free(p->data);
        nn_params_drop_grad(p);
        p->data = NULL;
        return optvq_fail(OPTVQ_ERR_NOMEM, "nn_params_finalize: cannot allocate %zu bytes x2",
                          bytes);
    }
    memset(p->data, 0, bytes);
    for (int i = 0; i < p->count; i++) {
        if (p->items[i].alias)
            continue;
        p->items[i].data = p->data + p->items[i].offset;
        p->items[i].grad = p->grad + p->items[i].offset;
    }
    p->finalized = 1;
    return OPTVQ_OK;
}

optvq_status nn_params_set(nn_params *p, const char *name, int ndim, const int64_t *shape,
                           const float *data)
{
    if (!p->finalized)
        return optvq_fail(OPTVQ_ERR_STATE, "nn_params_set(%s): registry not finalized", name);
    nn_param *q = nn_params_find(p, name);
    if (!q)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "unexpected parameter '%s'", name);
    int same = ndim == q->ndim;
    for (int i = 0; same && i < ndim; i++)
        same = shape[i] == q->shape[i];
    if (!same) {
        char want[96] = "", got[96] = "";
        for (int i = 0; i < q->ndim; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? "," : "",
                     (long long)q->shape[i]);
        for (int i = 0; i < ndim && i < OPTVQ_MAX_DIMS; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "," : "",
                     (long long)shape[i]);
        return optvq_fail(OPTVQ_ERR_FORMAT, "parameter '%s': shape (%s) expected, got (%s)", name,
                          want, got);
    }
    memcpy(q->data, data, (size_t)q->numel * sizeof(float));
    return OPTVQ_OK;
}

void nn_params_zero_grad(nn_params *p)
{
    if (p->grad)
        memset(p->grad, 0, p->total * sizeof(float));
    for (int i = 0; i < p->count; i++)
        if (p->items[i].alias)
            memset(p->items[i].grad, 0, (size_t)p->items[i].numel * sizeof(float));
}

void nn_params_drop_grad(nn_params *p)
{
    if (p->grad)
        munmap(p->grad, block_bytes(p));
    p->grad = NULL;
    for (int i = 0; i < p->count; i++)
        if (!p->items[i].alias)
            p->items[i].grad = NULL;
}

void nn_params_free(nn_params *p)
{
    if (!p)
        return;
    nn_params_drop_grad(p);
    free(p->items);
    free(p->data);
    memset(p, 0, sizeof *p);
}
