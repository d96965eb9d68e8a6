#include "train/optimizer.h"

#include "core/bigalloc.h"
#include "core/comm.h"
#include "core/parallel.h"

#include "core/error.h"
#include "model/graph.h"
#include "model/vqmodel.h"
#include "nn/nn.h"
#include "train/adamw.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Appends every parameter of a registry, weight decay by declared role (the
 * reference's: Conv2d / ConvTranspose2d / Linear weights only). model: the
 * model's registry, whose quantizer group trains at lr * mul_lr. Returns the
 * moment floats used; an error for a parameter registered without a role. */
static optvq_status add_registry(optimizer *o, nn_params *ps, int model, size_t *floats)
{
    size_t off = 0;
    for (int i = 0; i < ps->count; i++) {
        const nn_param *q = &ps->items[i];
        if (q->role == NN_ROLE_UNDECLARED)
            return optvq_fail(OPTVQ_ERR_STATE, "optimizer: parameter %s has no declared role", q->name);
        train_param *p = &o->params[o->count++];
        p->name = q->name;
        p->data = q->data;
        p->grad = q->grad;
        p->n = q->numel;
        p->decay = nn_role_decays(q->role);
        p->quantizer = model && q->group == MODEL_GROUP_QUANTIZER;
        p->offset = off;
        off += (size_t)p->n;
    }
    *floats = off;
    return OPTVQ_OK;
}

/* The moments (one allocation) and the reference's hyperparameters. */
static optvq_status finish_init(optimizer *o, size_t floats, double max_lr, double mul_lr, double weight_decay,
                                int64_t total_steps)
{
    o->total = floats;
    o->m = optvq_big_calloc((floats ? 2 * floats : 1) * sizeof(float));
    if (!o->m) {
        optimizer_free(o);
        return optvq_fail(OPTVQ_ERR_NOMEM, "optimizer: out of memory for the moments");
    }
    o->v = o->m + floats;
    o->weight_decay = weight_decay;
    o->eps = 1e-7;
    o->beta2 = 0.999;
    o->mul_lr = mul_lr;
    o->max_norm = 1.0;
    onecycle_init(&o->schedule, max_lr, total_steps);
    return OPTVQ_OK;
}

optvq_status optimizer_init(optimizer *o, optvq_model *m, double max_lr, double mul_lr, double weight_decay,
                            int64_t total_steps)
{
    memset(o, 0, sizeof *o);
    nn_params *ps = model_params(m); /* the quantizer's parameters included, last */
    o->params = calloc((size_t)ps->count + 1, sizeof *o->params);
    if (!o->params)
        return optvq_fail(OPTVQ_ERR_NOMEM, "optimizer: out of memory");
    size_t off = 0;
    optvq_status st = add_registry(o, ps, 1, &off);
    if (st != OPTVQ_OK) {
        optimizer_free(o);
        return st;
    }
    return finish_init(o, off, max_lr, mul_lr, weight_decay, total_steps);
}

void optimizer_free(optimizer *o)
{
    free(o->params);
    free(o->m);
    memset(o, 0, sizeof *o);
}

optvq_status optimizer_average_grads_in(optimizer *const *opts, int n, const optvq_comm *comm, comm_tally *tally,
                                        size_t bucket_floats)
{
    const int size = comm_size(comm);
    if (size == 1)
        return OPTVQ_OK;
    const size_t BUCKET = bucket_floats ? bucket_floats : 1;
    size_t total = 0;
    for (int k = 0; k < n; k++)
        for (int i = 0; opts[k] && i < opts[k]->count; i++)
            total += (size_t)opts[k]->params[i].n;
    const size_t cap = total < BUCKET ? total : BUCKET;
    float *bucket = malloc((cap ? cap : 1) * sizeof(float));
    if (!bucket)
        return optvq_fail(OPTVQ_ERR_NOMEM, "gradient average: out of memory");
    const float scale = 1.0f / (float)size;
    optvq_status st = OPTVQ_OK;
    double t0 = optvq_now();
    /* walk the parameters in order; a parameter may span several buckets */
    int k = 0, i = 0;
    size_t done_in_param = 0;
    while (st == OPTVQ_OK) {
        /* fill */
        size_t fill = 0;
        int fk = k, fi = i;
        size_t fdone = done_in_param;
        while (fill < cap && k < n) {
            if (!opts[k] || i >= opts[k]->count) {
                k++;
                i = 0;
                continue;
            }
            const train_param *p = &opts[k]->params[i];
            size_t m = (size_t)p->n - done_in_param;
            if (m > cap - fill)
                m = cap - fill;
            memcpy(bucket + fill, p->grad + done_in_param, m * sizeof(float));
            fill += m;
            done_in_param += m;
            if (done_in_param == (size_t)p->n) {
                i++;
                done_in_param = 0;
            }
        }
        if (fill == 0)
            break;
        st = comm_sum_floats(comm, bucket, fill, "gradient average");
        if (st != OPTVQ_OK)
            break;
        /* scatter back, averaged */
        size_t got = 0;
        while (got < fill) {
            if (!opts[fk] || fi >= opts[fk]->count) {
                fk++;
                fi = 0;
                continue;
            }
            const train_param *p = &opts[fk]->params[fi];
            size_t m = (size_t)p->n - fdone;
            if (m > fill - got)
                m = fill - got;
            for (size_t j = 0; j < m; j++)
                p->grad[fdone + j] = bucket[got + j] * scale;
            got += m;
            fdone += m;
            if (fdone == (size_t)p->n) {
                fi++;
                fdone = 0;
            }
        }
    }
    free(bucket);
    if (tally) {
        tally->seconds += optvq_now() - t0;
        tally->bytes += (double)total * sizeof(float);
    }
    return st;
}

optvq_status optimizer_average_grads(optimizer *const *opts, int n, const optvq_comm *comm, comm_tally *tally)
{
    /* buckets of at most 4M floats: few calls, bounded extra memory */
    return optimizer_average_grads_in(opts, n, comm, tally, (size_t)1 << 22);
}

void optimizer_zero_grad(optimizer *o)
{
    for (int i = 0; i < o->count; i++)
        memset(o->params[i].grad, 0, (size_t)o->params[i].n * sizeof(float));
}

optvq_status optimizer_init_list(optimizer *o, nn_params *ps, double max_lr, double weight_decay,
                                 int64_t total_steps)
{
    memset(o, 0, sizeof *o);
    o->params = calloc((size_t)ps->count + 1, sizeof *o->params);
    if (!o->params)
        return optvq_fail(OPTVQ_ERR_NOMEM, "optimizer: out of memory");
    size_t off = 0;
    optvq_status st = add_registry(o, ps, 0, &off);
    if (st != OPTVQ_OK) {
        optimizer_free(o);
        return st;
    }
    return finish_init(o, off, max_lr, 1.0, weight_decay, total_steps);
}

double optimizer_clip(optimizer *const *opts, int n, double max_norm)
{
    /* torch.nn.utils.clip_grad_norm_: total = ||(||g_i||)||, coef = max / (total + 1e-6), clamped to 1 */
    double total = 0;
    for (int k = 0; k < n; k++)
        for (int i = 0; i < opts[k]->count; i++) {
            double s = 0;
            const float *g = opts[k]->params[i].grad;
            for (int64_t j = 0; j < opts[k]->params[i].n; j++)
                s += (double)g[j] * g[j];
            total += (double)(float)sqrt(s) * (double)(float)sqrt(s);
        }
    total = (double)(float)sqrt(total);
    double coef = max_norm / (total + 1e-6);
    if (coef > 1.0)
        coef = 1.0;
    const float fc = (float)coef;
    for (int k = 0; k < n; k++)
        for (int i = 0; i < opts[k]->count; i++) {
            float *g = opts[k]->params[i].grad;
            for (int64_t j = 0; j < opts[k]->params[i].n; j++)
                g[j] *= fc;
        }
    return total;
}

void optimizer_apply(optimizer *o)
{
    double lr, beta1;
    onecycle_at(&o->schedule, o->step, &lr, &beta1);
    o->step++;
    for (int i = 0; i < o->count; i++) {
        train_param *p = &o->params[i];
        optvq_adamw_step_d(p->data, p->grad, o->m + p->offset, o->v + p->offset, p->n, p->quantizer ? lr * o->mul_lr : lr,
                           beta1, o->beta2, o->eps, p->decay ? o->weight_decay : 0.0, o->step);
    }
}

double optimizer_step(optimizer *o)
{
    double total = optimizer_clip(&o, 1, o->max_norm);
    optimizer_apply(o);
    return total;
}
