/* One training step of a VQModel with the plain CNN encoder/decoder: forward
 * with saved activations, the reference's AELoss (L1 + L2 + q_weight *
 * quantizer loss), and the backward pass into every parameter gradient.
 * The plain CNN is a chain of convolutions, transposed convolutions and
 * ReLUs, so the step runs it as a tape of ops (llm.c style: one activation
 * buffer per op input, one allocation for all of them). */
#include "model/trainer.h"

#include "core/error.h"
#include "model/vqmodel.h"
#include "nn/nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum op_kind { OP_CONV, OP_CONVT, OP_RELU } op_kind;

typedef struct op_spec {
    op_kind kind;
    const char *name; /* parameter prefix */
    int64_t cout, k, stride, pad;
} op_spec;

#define MAX_OPS 16

typedef struct tape {
    op_spec ops[MAX_OPS];
    int n;
    /* per op: input shape (c, h, w); the output of op i is the input of i+1 */
    int64_t c[MAX_OPS + 1], h[MAX_OPS + 1], w[MAX_OPS + 1];
    float *act[MAX_OPS + 1]; /* act[0] is the tape's input */
} tape;

struct model_trainer {
    optvq_model *model;
    tape enc, dec;
    int64_t batch; /* the batch the buffers are sized for */
    float *block;  /* every activation and the two gradient buffers */
    float *grad_a, *grad_b;
    size_t grad_floats;
};

static void push(tape *t, op_kind kind, const char *name, int64_t cout, int64_t k, int64_t stride, int64_t pad)
{
    op_spec o = {kind, name, cout, k, stride, pad};
    t->ops[t->n++] = o;
}

optvq_status model_trainer_create(optvq_model *m, model_trainer **out)
{
    *out = NULL;
    const model_config *c = model_get_config(m);
    if (c->encoder.arch != ARCH_PLAIN_CNN || c->decoder.arch != ARCH_PLAIN_CNN)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG,
                          "training supports the plain CNN models (the MNIST/CIFAR-10/Fashion-MNIST configs); the "
                          "taming VQGAN configs train with LPIPS and a discriminator, not implemented yet");
    model_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return optvq_fail(OPTVQ_ERR_NOMEM, "trainer: out of memory");
    t->model = m;
    tape *e = &t->enc, *d = &t->dec;
    push(e, OP_CONV, "encoder.in_fc", 16, 3, 1, 1);
    push(e, OP_RELU, NULL, 0, 0, 0, 0);
    push(e, OP_CONV, "encoder.down1", 16, 2, 2, 0);
    push(e, OP_CONV, "encoder.conv1", 16, 3, 1, 1);
    push(e, OP_RELU, NULL, 0, 0, 0, 0);
    push(e, OP_CONV, "encoder.down2", 16, 2, 2, 0);
    push(e, OP_CONV, "encoder.conv2", 32, 3, 1, 1);
    push(e, OP_RELU, NULL, 0, 0, 0, 0);
    push(e, OP_CONV, "encoder.out_fc", 32, 3, 1, 1);
    if (c->use_connector) {
        push(e, OP_CONV, "quant_conv", c->quantize.e_dim, 1, 1, 0);
        push(d, OP_CONV, "post_quant_conv", 32, 1, 1, 0);
    }
    push(d, OP_CONV, "decoder.in_fc", 32, 3, 1, 1);
    push(d, OP_RELU, NULL, 0, 0, 0, 0);
    push(d, OP_CONVT, "decoder.up1", 16, 2, 2, 0);
    push(d, OP_CONV, "decoder.conv1", 16, 3, 1, 1);
    push(d, OP_RELU, NULL, 0, 0, 0, 0);
    push(d, OP_CONVT, "decoder.up2", 16, 2, 2, 0);
    push(d, OP_CONV, "decoder.conv2", 16, 3, 1, 1);
    push(d, OP_RELU, NULL, 0, 0, 0, 0);
    push(d, OP_CONV, "decoder.out_fc", c->decoder.out_channels, 3, 1, 1);
    *out = t;
    return OPTVQ_OK;
}

void model_trainer_free(model_trainer *t)
{
    if (!t)
        return;
    free(t->block);
    free(t);
}

static float *param(optvq_model *m, const char *prefix, const char *suffix, int grad)
{
    char name[NN_PARAM_NAME_MAX];
    snprintf(name, sizeof name, "%s.%s", prefix, suffix);
    nn_param *p = nn_params_find(model_params(m), name);
    return p ? (grad ? p->grad : p->data) : NULL;
}

/* Shapes through the tape from its input (c, h, w). */
static optvq_status shapes(tape *t, int64_t c, int64_t h, int64_t w)
{
    t->c[0] = c;
    t->h[0] = h;
    t->w[0] = w;
    for (int i = 0; i < t->n; i++) {
        const op_spec *o = &t->ops[i];
        t->c[i + 1] = o->kind == OP_RELU ? t->c[i] : o->cout;
        if (o->kind == OP_CONV) {
            t->h[i + 1] = (t->h[i] + 2 * o->pad - o->k) / o->stride + 1;
            t->w[i + 1] = (t->w[i] + 2 * o->pad - o->k) / o->stride + 1;
        } else if (o->kind == OP_CONVT) {
            t->h[i + 1] = (t->h[i] - 1) * o->stride - 2 * o->pad + o->k;
            t->w[i + 1] = (t->w[i] - 1) * o->stride - 2 * o->pad + o->k;
        } else {
            t->h[i + 1] = t->h[i];
            t->w[i + 1] = t->w[i];
        }
        if (t->h[i + 1] < 1 || t->w[i + 1] < 1)
            return optvq_fail(OPTVQ_ERR_INVALID_ARG, "trainer: input too small for the model");
    }
    return OPTVQ_OK;
}

static size_t tape_floats(const tape *t, int64_t batch, int from)
{
    size_t s = 0;
    for (int i = from; i <= t->n; i++)
        s += (size_t)(batch * t->c[i] * t->h[i] * t->w[i]);
    return s;
}

static size_t tape_max(const tape *t, int64_t batch)
{
    size_t s = 0;
    for (int i = 0; i <= t->n; i++) {
        size_t f = (size_t)(batch * t->c[i] * t->h[i] * t->w[i]);
        s = f > s ? f : s;
    }
    return s;
}

static optvq_status prepare(model_trainer *t, int64_t batch, int64_t c, int64_t h, int64_t w)
{
    const model_config *cfg = model_get_config(t->model);
    OPTVQ_TRY(shapes(&t->enc, c, h, w));
    OPTVQ_TRY(shapes(&t->dec, cfg->quantize.e_dim, t->enc.h[t->enc.n], t->enc.w[t->enc.n]));
    if (batch == t->batch && t->block)
        return OPTVQ_OK;
    free(t->block);
    t->block = NULL;
    t->batch = 0;
    /* encoder act[1..n], decoder act[0..n] (act[0] of the decoder is x_q), 2 gradient buffers */
    size_t ge = tape_max(&t->enc, batch), gd = tape_max(&t->dec, batch);
    t->grad_floats = ge > gd ? ge : gd;
    size_t total = tape_floats(&t->enc, batch, 1) + tape_floats(&t->dec, batch, 0) + 2 * t->grad_floats;
    t->block = malloc(total * sizeof(float));
    if (!t->block)
        return optvq_fail(OPTVQ_ERR_NOMEM, "trainer: out of memory for %zu MiB of activations", total >> 18);
    float *p = t->block;
    for (int i = 1; i <= t->enc.n; i++) {
        t->enc.act[i] = p;
        p += batch * t->enc.c[i] * t->enc.h[i] * t->enc.w[i];
    }
    for (int i = 0; i <= t->dec.n; i++) {
        t->dec.act[i] = p;
        p += batch * t->dec.c[i] * t->dec.h[i] * t->dec.w[i];
    }
    t->grad_a = p;
    t->grad_b = p + t->grad_floats;
    t->batch = batch;
    /* the workspace for every conv of both tapes */
    size_t ws = 0;
    const tape *tapes[2] = {&t->enc, &t->dec};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < tapes[k]->n; i++) {
            const tape *tp = tapes[k];
            const op_spec *o = &tp->ops[i];
            size_t need = 0;
            if (o->kind == OP_CONV) {
                nn_conv2d_desc d;
                OPTVQ_TRY(nn_conv2d_init(&d, batch, tp->c[i], tp->h[i], tp->w[i], o->cout, o->k, o->k, o->stride,
                                         o->pad, o->pad, o->pad, o->pad));
                need = nn_conv2d_workspace(&d);
            } else if (o->kind == OP_CONVT) {
                nn_convt2d_desc d;
                OPTVQ_TRY(nn_convt2d_init(&d, batch, tp->c[i], tp->h[i], tp->w[i], o->cout, o->k, o->k, o->stride,
                                          o->pad, 0));
                need = nn_convt2d_workspace(&d);
            }
            ws = need > ws ? need : ws;
        }
    return nn_workspace_reserve(model_workspace(t->model), ws);
}

static optvq_status tape_forward(model_trainer *t, tape *tp, int64_t batch)
{
    optvq_model *m = t->model;
    for (int i = 0; i < tp->n; i++) {
        const op_spec *o = &tp->ops[i];
        float *x = tp->act[i], *y = tp->act[i + 1];
        if (o->kind == OP_RELU) {
            nn_relu_forward(y, x, batch * tp->c[i] * tp->h[i] * tp->w[i]);
        } else if (o->kind == OP_CONV) {
            nn_conv2d_desc d;
            OPTVQ_TRY(nn_conv2d_init(&d, batch, tp->c[i], tp->h[i], tp->w[i], o->cout, o->k, o->k, o->stride, o->pad,
                                     o->pad, o->pad, o->pad));
            OPTVQ_TRY(nn_conv2d_forward(y, x, param(m, o->name, "weight", 0), param(m, o->name, "bias", 0), &d,
                                        model_workspace(m)));
        } else {
            nn_convt2d_desc d;
            OPTVQ_TRY(nn_convt2d_init(&d, batch, tp->c[i], tp->h[i], tp->w[i], o->cout, o->k, o->k, o->stride, o->pad,
                                      0));
            OPTVQ_TRY(nn_convt2d_forward(y, x, param(m, o->name, "weight", 0), param(m, o->name, "bias", 0), &d,
                                         model_workspace(m)));
        }
    }
    return OPTVQ_OK;
}

/* dy = gradient of the tape's output (overwritten); on return *dx_out points
 * to the gradient of its input (NULL when not wanted). */
static optvq_status tape_backward(model_trainer *t, tape *tp, int64_t batch, float *dy, float *spare,
                                  int want_dx, float **dx_out)
{
    optvq_model *m = t->model;
    for (int i = tp->n - 1; i >= 0; i--) {
        const op_spec *o = &tp->ops[i];
        const int64_t in_count = batch * tp->c[i] * tp->h[i] * tp->w[i];
        float *dx = (i > 0 || want_dx) ? spare : NULL;
        if (dx)
            memset(dx, 0, (size_t)in_count * sizeof(float));
        if (o->kind == OP_RELU) {
            if (dx)
                nn_relu_backward(dx, dy, tp->act[i], in_count);
        } else if (o->kind == OP_CONV) {
            nn_conv2d_desc d;
            OPTVQ_TRY(nn_conv2d_init(&d, batch, tp->c[i], tp->h[i], tp->w[i], o->cout, o->k, o->k, o->stride, o->pad,
                                     o->pad, o->pad, o->pad));
            OPTVQ_TRY(nn_conv2d_backward(dx, param(m, o->name, "weight", 1), param(m, o->name, "bias", 1), dy,
                                         tp->act[i], param(m, o->name, "weight", 0), &d, model_workspace(m)));
        } else {
            nn_convt2d_desc d;
            OPTVQ_TRY(nn_convt2d_init(&d, batch, tp->c[i], tp->h[i], tp->w[i], o->cout, o->k, o->k, o->stride, o->pad,
                                      0));
            OPTVQ_TRY(nn_convt2d_backward(dx, param(m, o->name, "weight", 1), param(m, o->name, "bias", 1), dy,
                                          tp->act[i], param(m, o->name, "weight", 0), &d, model_workspace(m)));
        }
        if (!dx)
            break;
        spare = dy;
        dy = dx;
    }
    if (dx_out)
        *dx_out = want_dx ? dy : NULL;
    return OPTVQ_OK;
}

optvq_status model_trainer_step(model_trainer *t, const float *x, int64_t batch, int64_t height, int64_t width,
                                const model_loss_weights *lw, model_losses *out, float *recon, int64_t *tokens)
{
    optvq_model *m = t->model;
    const model_config *cfg = model_get_config(m);
    OPTVQ_TRY(prepare(t, batch, cfg->encoder.in_channels, height, width));
    tape *e = &t->enc, *d = &t->dec;
    e->act[0] = (float *)x;
    OPTVQ_TRY(tape_forward(t, e, batch));
    float q_loss = 0;
    optvq_quantizer *q = optvq_model_quantizer(m);
    OPTVQ_TRY(optvq_quantizer_forward(q, e->act[e->n], batch, e->h[e->n], e->w[e->n], d->act[0], tokens, &q_loss));
    OPTVQ_TRY(tape_forward(t, d, batch));
    const float *rec = d->act[d->n];
    const int64_t count = batch * d->c[d->n] * d->h[d->n] * d->w[d->n];
    if (d->c[d->n] != cfg->encoder.in_channels || d->h[d->n] != height || d->w[d->n] != width)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "trainer: the decoder output does not match the input shape");
    /* AELoss: l1 = mean|rec - x|, l2 = mean (rec - x)^2 */
    double l1 = nn_l1_loss_forward(rec, x, count), l2 = nn_mse_loss_forward(rec, x, count);
    out->l1 = l1;
    out->l2 = l2;
    out->q = q_loss;
    out->total = lw->l1 * l1 + lw->l2 * l2 + lw->q * q_loss;
    if (!isfinite(out->total))
        return optvq_fail(OPTVQ_ERR_NUMERIC, "trainer: the loss is not finite (%g); lower the learning rate?",
                          out->total);
    if (recon)
        memcpy(recon, rec, (size_t)count * sizeof(float));
    /* backward: d loss / d rec */
    float *g = t->grad_a, *spare = t->grad_b;
    memset(g, 0, (size_t)count * sizeof(float));
    nn_l1_loss_backward(g, NULL, (float)lw->l1, rec, x, count);
    nn_mse_loss_backward(g, NULL, (float)lw->l2, rec, x, count);
    float *g_xq;
    OPTVQ_TRY(tape_backward(t, d, batch, g, spare, 1, &g_xq));
    /* through the quantizer (straight-through + q_weight * its loss) into z */
    float *g_z = g_xq == t->grad_a ? t->grad_b : t->grad_a;
    const int64_t zcount = batch * e->c[e->n] * e->h[e->n] * e->w[e->n];
    memset(g_z, 0, (size_t)zcount * sizeof(float));
    OPTVQ_TRY(optvq_quantizer_backward(q, g_xq, (float)lw->q, g_z));
    return tape_backward(t, e, batch, g_z, g_xq, 0, NULL);
}
