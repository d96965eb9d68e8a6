/* Training of a VQModel: forward with saved activations, backward from a
 * gradient on the reconstruction, and the reference's AELoss step on top.
 *
 * The encoder and the decoder are the model's graphs (model/graph.c), the
 * same chains of blocks inference runs, here with every block's input saved
 * plus each block's own state (ResnetBlock: its conv1 output; AttnBlock:
 * what nn_attn_forward saves), then walked backward in reverse order, llm.c
 * style. The graphs' planner sizes every buffer; one allocation holds them
 * all and is reused while the batch and image shape stay the same. Backward
 * needs two gradient buffers (ping-pong between blocks) and up to three
 * scratch buffers, which forward also uses for its temporaries. */
#include "model/trainer.h"

#include "core/bigalloc.h"
#include "core/error.h"
#include "model/graph.h"
#include "model/vqmodel.h"
#include "nn/nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct model_trainer {
    optvq_model *model;
    graph_run enc, dec;
    /* the shape the memory is planned for */
    int64_t batch, height, width;
    float *block;           /* every buffer below, one allocation */
    float *grad_a, *grad_b; /* gradient ping-pong, grad_floats each */
    float *scratch[BLOCK_MAX_SCRATCH]; /* scratch_floats each (NULL when not needed) */
    size_t grad_floats, scratch_floats;
    const nn_param *last;   /* the decoder's last conv weight */
    int have_forward, have_backward;
};

optvq_status model_trainer_create(optvq_model *m, model_trainer **out)
{
    *out = NULL;
    model_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return optvq_fail(OPTVQ_ERR_NOMEM, "trainer: out of memory");
    t->model = m;
    const graph *dec = model_graph(m, 1);
    optvq_status st = graph_run_init(&t->enc, model_graph(m, 0));
    if (st == OPTVQ_OK)
        st = graph_run_init(&t->dec, dec);
    if (st != OPTVQ_OK) {
        model_trainer_free(t);
        return st;
    }
    const block *last = &dec->blocks[dec->n - 1];
    if (last->kind == BLOCK_CONV)
        t->last = &model_params(m)->items[last->first_param];
    *out = t;
    return OPTVQ_OK;
}

void model_trainer_free(model_trainer *t)
{
    if (!t)
        return;
    graph_run_free(&t->enc);
    graph_run_free(&t->dec);
    free(t->block);
    free(t);
}

/* ---- planning ---- */

static size_t numel(block_shape s) { return (size_t)(s.b * s.c * s.h * s.w); }

static void zero(float *p, size_t n) { memset(p, 0, n * sizeof(float)); }

static optvq_status prepare(model_trainer *t, int64_t batch, int64_t height, int64_t width)
{
    const model_config *cfg = model_get_config(t->model);
    const int64_t f = coder_downsample(&cfg->encoder);
    if (batch < 1 || height < f || width < f || height % f || width % f)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG,
                          "trainer: images must be (B >= 1, %lld, H, W) with H, W multiples of %lld; got (%lld, ., "
                          "%lld, %lld)",
                          (long long)cfg->encoder.in_channels, (long long)f, (long long)batch, (long long)height,
                          (long long)width);
    if ((double)batch * (double)height * (double)width > 1e10)
        return optvq_fail(OPTVQ_ERR_NOMEM, "trainer: input of %lld x %lld x %lld is absurd", (long long)batch,
                          (long long)height, (long long)width);
    graph_need need = {0};
    OPTVQ_TRY(graph_plan(&t->enc, (block_shape){batch, cfg->encoder.in_channels, height, width}, &need));
    const block_shape z = t->enc.dims[t->enc.g->n];
    if (z.c != cfg->quantize.e_dim)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "trainer: the encoder gives %lld channels, the quantizer wants %lld",
                          (long long)z.c, (long long)cfg->quantize.e_dim);
    OPTVQ_TRY(graph_plan(&t->dec, z, &need));
    const block_shape y = t->dec.dims[t->dec.g->n];
    if (y.c != cfg->encoder.in_channels || y.h != height || y.w != width)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "trainer: the decoder output (%lld, %lld, %lld) does not match the "
                          "input (%lld, %lld, %lld)", (long long)y.c, (long long)y.h, (long long)y.w,
                          (long long)cfg->encoder.in_channels, (long long)height, (long long)width);
    OPTVQ_TRY(nn_workspace_reserve(model_workspace(t->model), need.ws));
    if (t->block && batch == t->batch && height == t->height && width == t->width)
        return OPTVQ_OK;
    free(t->block);
    t->block = NULL;
    t->batch = 0;
    t->grad_floats = (need.act_max + 15) / 16 * 16;
    t->scratch_floats = (need.scratch + 15) / 16 * 16;
    size_t total = need.train + 2 * t->grad_floats + (size_t)need.scratch_train * t->scratch_floats;
    t->block = optvq_big_alloc((total ? total : 16) * sizeof(float));
    if (!t->block)
        return optvq_fail(OPTVQ_ERR_NOMEM, "trainer: out of memory for %zu MiB of activations", total >> 18);
    float *q = t->block;
    graph_layout_training(&t->enc, &q);
    graph_layout_training(&t->dec, &q);
    t->grad_a = q;
    t->grad_b = q + t->grad_floats;
    q += 2 * t->grad_floats;
    for (int i = 0; i < BLOCK_MAX_SCRATCH; i++) {
        t->scratch[i] = i < need.scratch_train ? q : NULL;
        if (i < need.scratch_train)
            q += t->scratch_floats;
    }
    t->batch = batch;
    t->height = height;
    t->width = width;
    return OPTVQ_OK;
}

/* ---- public API ---- */

static int64_t recon_count(const model_trainer *t) { return (int64_t)numel(t->dec.dims[t->dec.g->n]); }

optvq_status model_trainer_forward(model_trainer *t, const float *x, int64_t batch, int64_t height, int64_t width,
                                   const float **recon, float *q_loss, int64_t *tokens)
{
    if (!t || !x || !recon)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "trainer_forward: NULL argument");
    t->have_forward = 0;
    t->have_backward = 0;
    *recon = NULL;
    OPTVQ_TRY(prepare(t, batch, height, width));
    graph_run *e = &t->enc, *d = &t->dec;
    nn_workspace *ws = model_workspace(t->model);
    memcpy(e->act[0], x, numel(e->dims[0]) * sizeof(float));
    OPTVQ_TRY(graph_forward(e, t->scratch, ws));
    float ql = 0;
    const block_shape z = e->dims[e->g->n];
    OPTVQ_TRY(optvq_quantizer_forward(optvq_model_quantizer(t->model), e->act[e->g->n], batch, z.h, z.w, d->act[0],
                                      tokens, &ql));
    OPTVQ_TRY(graph_forward(d, t->scratch, ws));
    if (q_loss)
        *q_loss = ql;
    *recon = d->act[d->g->n];
    t->have_forward = 1;
    return OPTVQ_OK;
}

/* Backward from grad_a = d loss / d recon (consumed). */
static optvq_status backward_from_grad_a(model_trainer *t, double q_weight)
{
    nn_workspace *ws = model_workspace(t->model);
    float *g_xq;
    t->have_backward = 1;
    OPTVQ_TRY(graph_backward(&t->dec, t->grad_a, t->grad_b, 1, &g_xq, t->scratch, ws));
    /* through the quantizer (straight-through + q_weight * its loss) into z */
    float *g_z = g_xq == t->grad_a ? t->grad_b : t->grad_a;
    zero(g_z, numel(t->enc.dims[t->enc.g->n]));
    OPTVQ_TRY(optvq_quantizer_backward(optvq_model_quantizer(t->model), g_xq, (float)q_weight, g_z));
    return graph_backward(&t->enc, g_z, g_xq, 0, NULL, t->scratch, ws);
}

optvq_status model_trainer_backward(model_trainer *t, const float *d_recon, double q_weight)
{
    if (!t || !d_recon)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "trainer_backward: NULL argument");
    if (!t->have_forward)
        return optvq_fail(OPTVQ_ERR_STATE, "trainer_backward: no forward to go back through (call "
                          "model_trainer_forward first)");
    if (t->have_backward)
        return optvq_fail(OPTVQ_ERR_STATE, "trainer_backward: this forward was already back-propagated; run a new "
                          "forward");
    memcpy(t->grad_a, d_recon, (size_t)recon_count(t) * sizeof(float));
    return backward_from_grad_a(t, q_weight);
}

int64_t model_trainer_last_layer_numel(const model_trainer *t) { return t && t->last ? t->last->numel : 0; }

optvq_status model_trainer_last_layer_grad(model_trainer *t, const float *d_recon, float *dw)
{
    if (!t || !d_recon || !dw)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "trainer_last_layer_grad: NULL argument");
    if (!t->have_forward)
        return optvq_fail(OPTVQ_ERR_STATE, "trainer_last_layer_grad: call model_trainer_forward first");
    const graph_run *d = &t->dec;
    const int i = d->g->n - 1;
    const block *o = &d->g->blocks[i];
    if (o->kind != BLOCK_CONV || !t->last)
        return optvq_fail(OPTVQ_ERR_STATE, "trainer_last_layer_grad: the decoder does not end in a conv");
    const block_shape s = d->dims[i];
    nn_conv2d_desc desc;
    OPTVQ_TRY(nn_conv2d_init(&desc, s.b, s.c, s.h, s.w, o->cout, o->k, o->k, o->stride, o->pt, o->pb, o->pl, o->pr));
    zero(dw, (size_t)t->last->numel);
    return nn_conv2d_backward(NULL, dw, NULL, d_recon, d->act[i], o->conv.w, &desc, model_workspace(t->model));
}

optvq_status model_trainer_step(model_trainer *t, const float *x, int64_t batch, int64_t height, int64_t width,
                                const model_loss_weights *lw, model_losses *out, float *recon, int64_t *tokens)
{
    if (!lw || !out)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "trainer_step: NULL argument");
    const float *rec;
    float q_loss = 0;
    OPTVQ_TRY(model_trainer_forward(t, x, batch, height, width, &rec, &q_loss, tokens));
    const int64_t n = recon_count(t);
    /* AELoss: l1 = mean|rec - x|, l2 = mean (rec - x)^2 */
    const float *xs = t->enc.act[0];
    double l1 = nn_l1_loss_forward(rec, xs, n), l2 = nn_mse_loss_forward(rec, xs, n);
    out->l1 = l1;
    out->l2 = l2;
    out->q = q_loss;
    out->total = lw->l1 * l1 + lw->l2 * l2 + lw->q * q_loss;
    if (!isfinite(out->total))
        return optvq_fail(OPTVQ_ERR_NUMERIC, "trainer: the loss is not finite (%g); lower the learning rate?",
                          out->total);
    if (recon)
        memcpy(recon, rec, (size_t)n * sizeof(float));
    float *g = t->grad_a;
    zero(g, (size_t)n);
    nn_l1_loss_backward(g, NULL, (float)lw->l1, rec, xs, n);
    nn_mse_loss_backward(g, NULL, (float)lw->l2, rec, xs, n);
    return backward_from_grad_a(t, lw->q);
}
