/* Training of a VQModel: forward with saved activations, backward from a
 * gradient on the reconstruction, and the reference's AELoss step on top.
 *
 * The encoder and the decoder each run as a tape: a chain of ops, op i
 * mapping act[i] to act[i+1]. An op is a plain layer (conv, transposed conv,
 * ReLU) or a whole taming block (ResnetBlock, AttnBlock, Upsample + conv,
 * GroupNorm + swish), whose residual connections stay inside the op, so the
 * chain is linear at the block level. llm.c style: a planning pass sizes
 * every buffer, one allocation holds them all and is reused while the batch
 * and image shape stay the same.
 *
 * Memory: every op's input act[i] is saved (it is also the previous op's
 * output), plus
 *   ResnetBlock  the conv1 output h1 (B, cout, h, w); GroupNorm + swish of x
 *                and of h1 are recomputed in backward (cheap next to the
 *                convs) instead of being saved;
 *   AttnBlock    what nn_attn_forward saves (5 B c hw + B hw hw);
 *   Upsample     nothing: the upsampled input of its conv is recomputed.
 * Backward needs two gradient buffers (ping-pong between ops) and up to
 * three scratch buffers of the largest activation, which forward also uses
 * for its temporaries. */
#include "model/trainer.h"

#include "core/error.h"
#include "model/vqmodel.h"
#include "nn/nn.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GN_GROUPS 32
#define GN_EPS 1e-6f

typedef enum op_kind {
    OP_CONV,       /* conv2d, any kernel/stride/padding per side          */
    OP_CONVT,      /* conv_transpose2d (plain CNN decoder)                */
    OP_RELU,
    OP_RESBLOCK,   /* taming ResnetBlock                                   */
    OP_ATTN,       /* taming AttnBlock                                     */
    OP_UPCONV,     /* taming Upsample: nearest x2 then conv3x3             */
    OP_NORM_SWISH  /* GroupNorm(32, 1e-6) then swish (norm_out)            */
} op_kind;

/* A layer's parameters and their gradients (bias may be absent). */
typedef struct layer_p {
    const float *w, *b;
    float *dw, *db;
} layer_p;

typedef struct op {
    op_kind kind;
    char name[NN_PARAM_NAME_MAX]; /* parameter prefix */
    int64_t cout;                 /* output channels (conv-like ops, RESBLOCK) */
    int64_t k, stride, pt, pb, pl, pr;
    layer_p conv;                 /* CONV, CONVT, UPCONV; NORM_SWISH: the norm */
    layer_p norm1, conv1, norm2, conv2, nin; /* RESBLOCK (nin.w NULL: identity shortcut) */
    nn_attn_params ap;            /* ATTN */
    nn_attn_grads ag;
    float *saved;                 /* RESBLOCK: h1 (B, cout, h, w); ATTN: nn_attn_saved floats */
} op;

typedef struct tape {
    op *ops;
    int n, cap;
    /* act[i] (B, c[i], h[i], w[i]) is the input of op i; act[n] the output */
    int64_t *c, *h, *w;
    float **act;
} tape;

struct model_trainer {
    optvq_model *model;
    tape enc, dec;
    /* the shape the memory is planned for */
    int64_t batch, height, width;
    float *block;         /* every buffer below, one allocation */
    float *grad_a, *grad_b; /* gradient ping-pong, grad_floats each */
    float *scratch[3];    /* scratch_floats each (NULL when not needed) */
    size_t grad_floats, scratch_floats;
    const nn_param *last; /* the decoder's last conv weight */
    int have_forward, have_backward;
};

/* ---- building the tapes ---- */

static optvq_status bind_layer(optvq_model *m, layer_p *l, const char *prefix, int need_bias)
{
    char n[NN_PARAM_NAME_MAX + 8];
    snprintf(n, sizeof n, "%s.weight", prefix);
    nn_param *w = nn_params_find(model_params(m), n);
    snprintf(n, sizeof n, "%s.bias", prefix);
    nn_param *b = nn_params_find(model_params(m), n);
    if (!w || (need_bias && !b))
        return optvq_fail(OPTVQ_ERR_STATE, "trainer: the model has no parameter %s.%s", prefix,
                          w ? "bias" : "weight");
    l->w = w->data;
    l->dw = w->grad;
    l->b = b ? b->data : NULL;
    l->db = b ? b->grad : NULL;
    return OPTVQ_OK;
}

static optvq_status bind_sub(optvq_model *m, layer_p *l, const char *prefix, const char *sub)
{
    char n[NN_PARAM_NAME_MAX];
    snprintf(n, sizeof n, "%s.%s", prefix, sub);
    return bind_layer(m, l, n, 1);
}

static optvq_status push(tape *t, op **out, op_kind kind, int64_t cout, const char *fmt, ...) OPTVQ_PRINTF(5, 6);

static optvq_status push(tape *t, op **out, op_kind kind, int64_t cout, const char *fmt, ...)
{
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 32;
        op *o = realloc(t->ops, (size_t)cap * sizeof *o);
        if (!o)
            return optvq_fail(OPTVQ_ERR_NOMEM, "trainer: out of memory");
        t->ops = o;
        t->cap = cap;
    }
    op *o = &t->ops[t->n++];
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->cout = cout;
    o->k = 1;
    o->stride = 1;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(o->name, sizeof o->name, fmt, ap);
        va_end(ap);
    }
    *out = o;
    return OPTVQ_OK;
}

/* conv k x k, stride, padding (top, bottom, left, right) */
static optvq_status push_conv(optvq_model *m, tape *t, const char *name, int64_t cout, int64_t k, int64_t stride,
                              int64_t pt, int64_t pb, int64_t pl, int64_t pr)
{
    op *o;
    OPTVQ_TRY(push(t, &o, OP_CONV, cout, "%s", name));
    o->k = k;
    o->stride = stride;
    o->pt = pt;
    o->pb = pb;
    o->pl = pl;
    o->pr = pr;
    return bind_layer(m, &o->conv, name, 1);
}

static optvq_status push_same(optvq_model *m, tape *t, const char *name, int64_t cout, int64_t k)
{
    return push_conv(m, t, name, cout, k, 1, k / 2, k / 2, k / 2, k / 2);
}

static optvq_status push_convt(optvq_model *m, tape *t, const char *name, int64_t cout)
{
    op *o;
    OPTVQ_TRY(push(t, &o, OP_CONVT, cout, "%s", name));
    o->k = 2;
    o->stride = 2;
    return bind_layer(m, &o->conv, name, 1);
}

static optvq_status push_relu(tape *t)
{
    op *o;
    return push(t, &o, OP_RELU, 0, NULL);
}

/* ResnetBlock with `cout` output channels; whether it has a nin_shortcut
 * follows the registered parameters (cin != cout). */
static optvq_status push_resblock(optvq_model *m, tape *t, const char *name, int64_t cout)
{
    op *o;
    OPTVQ_TRY(push(t, &o, OP_RESBLOCK, cout, "%s", name));
    OPTVQ_TRY(bind_sub(m, &o->norm1, name, "norm1"));
    OPTVQ_TRY(bind_sub(m, &o->conv1, name, "conv1"));
    OPTVQ_TRY(bind_sub(m, &o->norm2, name, "norm2"));
    OPTVQ_TRY(bind_sub(m, &o->conv2, name, "conv2"));
    char n[NN_PARAM_NAME_MAX + 32];
    snprintf(n, sizeof n, "%s.nin_shortcut.weight", name);
    if (nn_params_find(model_params(m), n))
        OPTVQ_TRY(bind_sub(m, &o->nin, name, "nin_shortcut"));
    return OPTVQ_OK;
}

static optvq_status push_attn(optvq_model *m, tape *t, const char *name)
{
    op *o;
    OPTVQ_TRY(push(t, &o, OP_ATTN, 0, "%s", name));
    static const char *const parts[5] = {"norm", "q", "k", "v", "proj_out"};
    layer_p l[5];
    for (int i = 0; i < 5; i++)
        OPTVQ_TRY(bind_sub(m, &l[i], name, parts[i]));
    o->ap = (nn_attn_params){l[0].w, l[0].b, l[1].w, l[1].b, l[2].w, l[2].b, l[3].w, l[3].b, l[4].w, l[4].b};
    o->ag = (nn_attn_grads){l[0].dw, l[0].db, l[1].dw, l[1].db, l[2].dw, l[2].db, l[3].dw, l[3].db, l[4].dw, l[4].db};
    return OPTVQ_OK;
}

static optvq_status push_upconv(optvq_model *m, tape *t, const char *name, int64_t cout)
{
    op *o;
    OPTVQ_TRY(push(t, &o, OP_UPCONV, cout, "%s", name));
    o->k = 3;
    o->pt = o->pb = o->pl = o->pr = 1;
    return bind_layer(m, &o->conv, name, 1);
}

static optvq_status push_norm_swish(optvq_model *m, tape *t, const char *name)
{
    op *o;
    OPTVQ_TRY(push(t, &o, OP_NORM_SWISH, 0, "%s", name));
    return bind_layer(m, &o->conv, name, 1);
}

static int has_attn(const coder_config *c, int64_t res)
{
    for (int i = 0; i < c->n_attn; i++)
        if (c->attn_resolutions[i] == res)
            return 1;
    return 0;
}

/* The same graph as taming_encoder in vqmodel.c. */
static optvq_status build_taming_encoder(optvq_model *m, tape *t, const coder_config *c)
{
    char n[NN_PARAM_NAME_MAX];
    OPTVQ_TRY(push_same(m, t, "encoder.conv_in", c->ch, 3));
    int64_t res = c->resolution, ch = c->ch;
    for (int i = 0; i < c->n_levels; i++) {
        for (int b = 0; b < c->num_res_blocks; b++) {
            ch = c->ch * c->ch_mult[i];
            snprintf(n, sizeof n, "encoder.down.%d.block.%d", i, b);
            OPTVQ_TRY(push_resblock(m, t, n, ch));
            if (has_attn(c, res)) {
                snprintf(n, sizeof n, "encoder.down.%d.attn.%d", i, b);
                OPTVQ_TRY(push_attn(m, t, n));
            }
        }
        if (i != c->n_levels - 1) { /* Downsample: F.pad (0,1,0,1), conv3x3 stride 2 */
            snprintf(n, sizeof n, "encoder.down.%d.downsample.conv", i);
            OPTVQ_TRY(push_conv(m, t, n, ch, 3, 2, 0, 1, 0, 1));
            res /= 2;
        }
    }
    OPTVQ_TRY(push_resblock(m, t, "encoder.mid.block_1", ch));
    OPTVQ_TRY(push_attn(m, t, "encoder.mid.attn_1"));
    OPTVQ_TRY(push_resblock(m, t, "encoder.mid.block_2", ch));
    OPTVQ_TRY(push_norm_swish(m, t, "encoder.norm_out"));
    return push_same(m, t, "encoder.conv_out", c->double_z ? 2 * c->z_channels : c->z_channels, 3);
}

/* The same graph as taming_decoder in vqmodel.c. */
static optvq_status build_taming_decoder(optvq_model *m, tape *t, const coder_config *c)
{
    char n[NN_PARAM_NAME_MAX];
    const int L = c->n_levels;
    int64_t res = c->resolution >> (L - 1), ch = c->ch * c->ch_mult[L - 1];
    OPTVQ_TRY(push_same(m, t, "decoder.conv_in", ch, 3));
    OPTVQ_TRY(push_resblock(m, t, "decoder.mid.block_1", ch));
    OPTVQ_TRY(push_attn(m, t, "decoder.mid.attn_1"));
    OPTVQ_TRY(push_resblock(m, t, "decoder.mid.block_2", ch));
    for (int i = L - 1; i >= 0; i--) {
        ch = c->ch * c->ch_mult[i];
        for (int b = 0; b < c->num_res_blocks + 1; b++) {
            snprintf(n, sizeof n, "decoder.up.%d.block.%d", i, b);
            OPTVQ_TRY(push_resblock(m, t, n, ch));
            if (has_attn(c, res)) {
                snprintf(n, sizeof n, "decoder.up.%d.attn.%d", i, b);
                OPTVQ_TRY(push_attn(m, t, n));
            }
        }
        if (i != 0) {
            snprintf(n, sizeof n, "decoder.up.%d.upsample.conv", i);
            OPTVQ_TRY(push_upconv(m, t, n, ch));
            res *= 2;
        }
    }
    OPTVQ_TRY(push_norm_swish(m, t, "decoder.norm_out"));
    return push_same(m, t, "decoder.conv_out", c->out_channels, 3);
}

static optvq_status build_plain_encoder(optvq_model *m, tape *e)
{
    OPTVQ_TRY(push_same(m, e, "encoder.in_fc", 16, 3));
    OPTVQ_TRY(push_relu(e));
    OPTVQ_TRY(push_conv(m, e, "encoder.down1", 16, 2, 2, 0, 0, 0, 0));
    OPTVQ_TRY(push_same(m, e, "encoder.conv1", 16, 3));
    OPTVQ_TRY(push_relu(e));
    OPTVQ_TRY(push_conv(m, e, "encoder.down2", 16, 2, 2, 0, 0, 0, 0));
    OPTVQ_TRY(push_same(m, e, "encoder.conv2", 32, 3));
    OPTVQ_TRY(push_relu(e));
    return push_same(m, e, "encoder.out_fc", 32, 3);
}

static optvq_status build_plain_decoder(optvq_model *m, tape *d, const coder_config *c)
{
    OPTVQ_TRY(push_same(m, d, "decoder.in_fc", 32, 3));
    OPTVQ_TRY(push_relu(d));
    OPTVQ_TRY(push_convt(m, d, "decoder.up1", 16));
    OPTVQ_TRY(push_same(m, d, "decoder.conv1", 16, 3));
    OPTVQ_TRY(push_relu(d));
    OPTVQ_TRY(push_convt(m, d, "decoder.up2", 16));
    OPTVQ_TRY(push_same(m, d, "decoder.conv2", 16, 3));
    OPTVQ_TRY(push_relu(d));
    return push_same(m, d, "decoder.out_fc", c->out_channels, 3);
}

static optvq_status build(model_trainer *t)
{
    optvq_model *m = t->model;
    const model_config *c = model_get_config(m);
    if (c->encoder.arch == ARCH_TAMING)
        OPTVQ_TRY(build_taming_encoder(m, &t->enc, &c->encoder));
    else
        OPTVQ_TRY(build_plain_encoder(m, &t->enc));
    if (c->use_connector) {
        OPTVQ_TRY(push_same(m, &t->enc, "quant_conv", c->quantize.e_dim, 1));
        OPTVQ_TRY(push_same(m, &t->dec, "post_quant_conv", coder_hidden_dim(&c->decoder, 0), 1));
    }
    if (c->decoder.arch == ARCH_TAMING)
        OPTVQ_TRY(build_taming_decoder(m, &t->dec, &c->decoder));
    else
        OPTVQ_TRY(build_plain_decoder(m, &t->dec, &c->decoder));
    const op *last = &t->dec.ops[t->dec.n - 1];
    char n[NN_PARAM_NAME_MAX + 8];
    snprintf(n, sizeof n, "%s.weight", last->name);
    t->last = nn_params_find(model_params(m), n);
    for (int k = 0; k < 2; k++) {
        tape *tp = k ? &t->dec : &t->enc;
        size_t s = (size_t)tp->n + 1;
        tp->c = calloc(3 * s, sizeof(int64_t));
        tp->act = calloc(s, sizeof(float *));
        if (!tp->c || !tp->act)
            return optvq_fail(OPTVQ_ERR_NOMEM, "trainer: out of memory");
        tp->h = tp->c + s;
        tp->w = tp->h + s;
    }
    return OPTVQ_OK;
}

optvq_status model_trainer_create(optvq_model *m, model_trainer **out)
{
    *out = NULL;
    model_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return optvq_fail(OPTVQ_ERR_NOMEM, "trainer: out of memory");
    t->model = m;
    optvq_status st = build(t);
    if (st != OPTVQ_OK) {
        model_trainer_free(t);
        return st;
    }
    *out = t;
    return OPTVQ_OK;
}

static void tape_free(tape *t)
{
    free(t->ops);
    free(t->c);
    free(t->act);
}

void model_trainer_free(model_trainer *t)
{
    if (!t)
        return;
    tape_free(&t->enc);
    tape_free(&t->dec);
    free(t->block);
    free(t);
}

/* ---- planning ---- */

static size_t numel(int64_t b, int64_t c, int64_t h, int64_t w) { return (size_t)(b * c * h * w); }

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

static optvq_status conv_desc(nn_conv2d_desc *d, int64_t b, int64_t c, int64_t h, int64_t w, int64_t cout,
                              int64_t k, int64_t stride, int64_t pt, int64_t pb, int64_t pl, int64_t pr)
{
    return nn_conv2d_init(d, b, c, h, w, cout, k, k, stride, pt, pb, pl, pr);
}

static optvq_status op_conv_desc(nn_conv2d_desc *d, const op *o, int64_t b, int64_t c, int64_t h, int64_t w)
{
    return conv_desc(d, b, c, h, w, o->cout, o->k, o->stride, o->pt, o->pb, o->pl, o->pr);
}

static optvq_status op_convt_desc(nn_convt2d_desc *d, const op *o, int64_t b, int64_t c, int64_t h, int64_t w)
{
    return nn_convt2d_init(d, b, c, h, w, o->cout, o->k, o->k, o->stride, o->pt, 0);
}

static nn_attn_desc attn_desc(int64_t b, int64_t c, int64_t h, int64_t w)
{
    nn_attn_desc d = {b, c, h, w, GN_GROUPS, GN_EPS};
    return d;
}

/* What planning collects. */
typedef struct plan {
    size_t saved;   /* op-private saved floats (h1 of resblocks, attention state) */
    size_t act_max; /* the largest act                                             */
    size_t scratch; /* floats per scratch buffer                                   */
    int n_scratch;
    size_t ws;      /* workspace floats                                            */
} plan;

static void ws_need(plan *p, size_t f) { p->ws = max_sz(p->ws, f); }

/* Shapes through the tape from its input (c, h, w), and what its ops need. */
static optvq_status plan_tape(tape *t, int64_t b, int64_t c, int64_t h, int64_t w, plan *p)
{
    t->c[0] = c;
    t->h[0] = h;
    t->w[0] = w;
    for (int i = 0; i < t->n; i++) {
        const op *o = &t->ops[i];
        int64_t ci = t->c[i], hi = t->h[i], wi = t->w[i], co = ci, ho = hi, wo = wi;
        nn_conv2d_desc d;
        switch (o->kind) {
        case OP_CONV:
            OPTVQ_TRY(op_conv_desc(&d, o, b, ci, hi, wi));
            ws_need(p, nn_conv2d_workspace(&d));
            co = o->cout;
            ho = d.h_out;
            wo = d.w_out;
            break;
        case OP_CONVT: {
            nn_convt2d_desc dt;
            OPTVQ_TRY(op_convt_desc(&dt, o, b, ci, hi, wi));
            ws_need(p, nn_convt2d_workspace(&dt));
            co = o->cout;
            ho = dt.h_out;
            wo = dt.w_out;
            break;
        }
        case OP_RELU:
            break;
        case OP_RESBLOCK:
            co = o->cout;
            if (ci % GN_GROUPS || co % GN_GROUPS)
                return optvq_fail(OPTVQ_ERR_INVALID_ARG, "trainer: %s: channels %lld -> %lld are not multiples of %d",
                                  o->name, (long long)ci, (long long)co, GN_GROUPS);
            if (!o->nin.w && ci != co)
                return optvq_fail(OPTVQ_ERR_STATE, "trainer: %s changes channels without a nin_shortcut", o->name);
            OPTVQ_TRY(conv_desc(&d, b, ci, hi, wi, co, 3, 1, 1, 1, 1, 1)); /* conv1 */
            ws_need(p, nn_conv2d_workspace(&d));
            OPTVQ_TRY(conv_desc(&d, b, co, hi, wi, co, 3, 1, 1, 1, 1, 1)); /* conv2 */
            ws_need(p, nn_conv2d_workspace(&d));
            if (o->nin.w) {
                OPTVQ_TRY(conv_desc(&d, b, ci, hi, wi, co, 1, 1, 0, 0, 0, 0));
                ws_need(p, nn_conv2d_workspace(&d));
            }
            p->saved += numel(b, co, hi, wi);
            p->scratch = max_sz(p->scratch, numel(b, ci > co ? ci : co, hi, wi));
            p->n_scratch = 3;
            break;
        case OP_ATTN: {
            if (ci % GN_GROUPS)
                return optvq_fail(OPTVQ_ERR_INVALID_ARG, "trainer: %s: %lld channels are not a multiple of %d",
                                  o->name, (long long)ci, GN_GROUPS);
            nn_attn_desc a = attn_desc(b, ci, hi, wi);
            ws_need(p, nn_attn_workspace(&a));
            p->saved += nn_attn_saved(&a);
            break;
        }
        case OP_UPCONV:
            OPTVQ_TRY(op_conv_desc(&d, o, b, ci, 2 * hi, 2 * wi));
            ws_need(p, nn_conv2d_workspace(&d));
            co = o->cout;
            ho = d.h_out;
            wo = d.w_out;
            p->scratch = max_sz(p->scratch, numel(b, ci, 2 * hi, 2 * wi));
            p->n_scratch = p->n_scratch > 2 ? p->n_scratch : 2;
            break;
        case OP_NORM_SWISH:
            if (ci % GN_GROUPS)
                return optvq_fail(OPTVQ_ERR_INVALID_ARG, "trainer: %s: %lld channels are not a multiple of %d",
                                  o->name, (long long)ci, GN_GROUPS);
            p->scratch = max_sz(p->scratch, numel(b, ci, hi, wi));
            p->n_scratch = p->n_scratch > 2 ? p->n_scratch : 2;
            break;
        }
        if (ho < 1 || wo < 1)
            return optvq_fail(OPTVQ_ERR_INVALID_ARG, "trainer: input too small for the model (at %s)", o->name);
        t->c[i + 1] = co;
        t->h[i + 1] = ho;
        t->w[i + 1] = wo;
    }
    for (int i = 0; i <= t->n; i++)
        p->act_max = max_sz(p->act_max, numel(b, t->c[i], t->h[i], t->w[i]));
    return OPTVQ_OK;
}

static size_t tape_acts(const tape *t, int64_t b)
{
    size_t s = 0;
    for (int i = 0; i <= t->n; i++)
        s += numel(b, t->c[i], t->h[i], t->w[i]);
    return s;
}

/* Carves act[0..n] and each op's saved state out of *p. */
static void carve_tape(tape *t, int64_t b, float **p)
{
    for (int i = 0; i <= t->n; i++) {
        t->act[i] = *p;
        *p += numel(b, t->c[i], t->h[i], t->w[i]);
    }
    for (int i = 0; i < t->n; i++) {
        op *o = &t->ops[i];
        o->saved = NULL;
        if (o->kind == OP_RESBLOCK) {
            o->saved = *p;
            *p += numel(b, o->cout, t->h[i], t->w[i]);
        } else if (o->kind == OP_ATTN) {
            nn_attn_desc a = attn_desc(b, t->c[i], t->h[i], t->w[i]);
            o->saved = *p;
            *p += nn_attn_saved(&a);
        }
    }
}

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
    plan p = {0};
    OPTVQ_TRY(plan_tape(&t->enc, batch, cfg->encoder.in_channels, height, width, &p));
    const tape *e = &t->enc;
    if (e->c[e->n] != cfg->quantize.e_dim)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "trainer: the encoder gives %lld channels, the quantizer wants %lld",
                          (long long)e->c[e->n], (long long)cfg->quantize.e_dim);
    OPTVQ_TRY(plan_tape(&t->dec, batch, cfg->quantize.e_dim, e->h[e->n], e->w[e->n], &p));
    const tape *d = &t->dec;
    if (d->c[d->n] != cfg->encoder.in_channels || d->h[d->n] != height || d->w[d->n] != width)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "trainer: the decoder output (%lld, %lld, %lld) does not match the "
                          "input (%lld, %lld, %lld)", (long long)d->c[d->n], (long long)d->h[d->n],
                          (long long)d->w[d->n], (long long)cfg->encoder.in_channels, (long long)height,
                          (long long)width);
    OPTVQ_TRY(nn_workspace_reserve(model_workspace(t->model), p.ws));
    if (t->block && batch == t->batch && height == t->height && width == t->width)
        return OPTVQ_OK;
    free(t->block);
    t->block = NULL;
    t->batch = 0;
    t->grad_floats = p.act_max;
    t->scratch_floats = p.scratch;
    size_t total = tape_acts(&t->enc, batch) + tape_acts(&t->dec, batch) + p.saved + 2 * t->grad_floats +
                   (size_t)p.n_scratch * t->scratch_floats;
    t->block = malloc(total * sizeof(float));
    if (!t->block)
        return optvq_fail(OPTVQ_ERR_NOMEM, "trainer: out of memory for %zu MiB of activations", total >> 18);
    float *q = t->block;
    carve_tape(&t->enc, batch, &q);
    carve_tape(&t->dec, batch, &q);
    t->grad_a = q;
    t->grad_b = q + t->grad_floats;
    q += 2 * t->grad_floats;
    for (int i = 0; i < 3; i++) {
        t->scratch[i] = i < p.n_scratch ? q : NULL;
        if (i < p.n_scratch)
            q += t->scratch_floats;
    }
    t->batch = batch;
    t->height = height;
    t->width = width;
    return OPTVQ_OK;
}

/* ---- taming blocks ---- */

/* The shape an op sees: input x (b, c, h, w). */
typedef struct shape {
    int64_t b, c, h, w;
} shape;

static int64_t count(shape s) { return s.b * s.c * s.h * s.w; }

/* y = swish(GroupNorm(x)) (b, c, hw); y may not alias x. */
static optvq_status norm_swish(float *y, const float *x, const layer_p *n, shape s)
{
    OPTVQ_TRY(nn_group_norm_forward(y, x, n->w, n->b, s.b, s.c, s.h * s.w, GN_GROUPS, GN_EPS));
    nn_swish_forward(y, y, count(s));
    return OPTVQ_OK;
}

static optvq_status conv3(float *y, const float *x, const layer_p *l, shape s, int64_t cout, int64_t k,
                          nn_workspace *ws)
{
    nn_conv2d_desc d;
    OPTVQ_TRY(conv_desc(&d, s.b, s.c, s.h, s.w, cout, k, 1, k / 2, k / 2, k / 2, k / 2));
    return nn_conv2d_forward(y, x, l->w, l->b, &d, ws);
}

static optvq_status conv3_backward(float *dx, const float *dy, const float *x, const layer_p *l, shape s,
                                   int64_t cout, int64_t k, nn_workspace *ws)
{
    nn_conv2d_desc d;
    OPTVQ_TRY(conv_desc(&d, s.b, s.c, s.h, s.w, cout, k, 1, k / 2, k / 2, k / 2, k / 2));
    return nn_conv2d_backward(dx, l->dw, l->db, dy, x, l->w, &d, ws);
}

/* ResnetBlock forward, as resblock() in vqmodel.c:
 *   x (b, cin, h, w) -> S = swish(norm1(x)) -> h1 = conv1(S) (saved, (b, cout, h, w))
 *   -> S = swish(norm2(h1)) -> y = conv2(S) + (nin_shortcut(x) or x).
 * S, N: scratch. */
static optvq_status resblock_forward(float *y, const float *x, const op *o, shape s, float *S, float *N,
                                     nn_workspace *ws)
{
    shape so = {s.b, o->cout, s.h, s.w};
    float *h1 = o->saved;
    OPTVQ_TRY(norm_swish(S, x, &o->norm1, s));
    OPTVQ_TRY(conv3(h1, S, &o->conv1, s, o->cout, 3, ws));
    OPTVQ_TRY(norm_swish(S, h1, &o->norm2, so));
    OPTVQ_TRY(conv3(y, S, &o->conv2, so, o->cout, 3, ws));
    if (o->nin.w) {
        OPTVQ_TRY(conv3(N, x, &o->nin, s, o->cout, 1, ws));
        nn_add_forward(y, y, N, count(so));
    } else {
        nn_add_forward(y, y, x, count(so));
    }
    return OPTVQ_OK;
}

static void zero(float *p, int64_t n) { memset(p, 0, (size_t)n * sizeof(float)); }

/* ResnetBlock backward. dy (b, cout, h, w) is used as scratch once read;
 * dx (b, cin, h, w) += (NULL: not wanted). N, S, D: scratch. Norm + swish are
 * recomputed from x and from the saved h1. */
static optvq_status resblock_backward(float *dx, float *dy, const float *x, const op *o, shape s, float *N,
                                      float *S, float *D, nn_workspace *ws)
{
    shape so = {s.b, o->cout, s.h, s.w};
    const int64_t hw = s.h * s.w;
    const float *h1 = o->saved;
    /* shortcut */
    if (o->nin.w)
        OPTVQ_TRY(conv3_backward(dx, dy, x, &o->nin, s, o->cout, 1, ws));
    else if (dx)
        nn_add_backward(dx, NULL, dy, count(so));
    /* conv2: D = d S2 (b, cout, h, w) */
    OPTVQ_TRY(nn_group_norm_forward(N, h1, o->norm2.w, o->norm2.b, s.b, o->cout, hw, GN_GROUPS, GN_EPS));
    nn_swish_forward(S, N, count(so));
    zero(D, count(so));
    OPTVQ_TRY(conv3_backward(D, dy, S, &o->conv2, so, o->cout, 3, ws));
    /* swish 2: dy = d N2; norm2: D = d h1 */
    zero(dy, count(so));
    nn_swish_backward(dy, D, N, count(so));
    zero(D, count(so));
    OPTVQ_TRY(nn_group_norm_backward(D, o->norm2.dw, o->norm2.db, dy, h1, o->norm2.w, s.b, o->cout, hw, GN_GROUPS,
                                     GN_EPS));
    /* conv1: dy = d S1 (b, cin, h, w) */
    OPTVQ_TRY(nn_group_norm_forward(N, x, o->norm1.w, o->norm1.b, s.b, s.c, hw, GN_GROUPS, GN_EPS));
    nn_swish_forward(S, N, count(s));
    zero(dy, count(s));
    OPTVQ_TRY(conv3_backward(dy, D, S, &o->conv1, s, o->cout, 3, ws));
    /* swish 1: D = d N1; norm1: dx += */
    zero(D, count(s));
    nn_swish_backward(D, dy, N, count(s));
    return nn_group_norm_backward(dx, o->norm1.dw, o->norm1.db, D, x, o->norm1.w, s.b, s.c, hw, GN_GROUPS, GN_EPS);
}

/* Upsample: U = nearest x2 of x (b, c, 2h, 2w) (scratch), y = conv3x3(U). */
static optvq_status upconv_forward(float *y, const float *x, const op *o, shape s, float *U, nn_workspace *ws)
{
    nn_upsample2x_forward(U, x, s.b * s.c, s.h, s.w);
    shape su = {s.b, s.c, 2 * s.h, 2 * s.w};
    return conv3(y, U, &o->conv, su, o->cout, 3, ws);
}

static optvq_status upconv_backward(float *dx, const float *dy, const float *x, const op *o, shape s, float *U,
                                    float *dU, nn_workspace *ws)
{
    shape su = {s.b, s.c, 2 * s.h, 2 * s.w};
    nn_upsample2x_forward(U, x, s.b * s.c, s.h, s.w);
    if (dx)
        zero(dU, count(su));
    OPTVQ_TRY(conv3_backward(dx ? dU : NULL, dy, U, &o->conv, su, o->cout, 3, ws));
    if (dx)
        nn_upsample2x_backward(dx, dU, s.b * s.c, s.h, s.w);
    return OPTVQ_OK;
}

/* y = swish(GroupNorm(x)): backward recomputes N = GroupNorm(x). */
static optvq_status norm_swish_backward(float *dx, const float *dy, const float *x, const op *o, shape s, float *N,
                                        float *D)
{
    const int64_t hw = s.h * s.w;
    OPTVQ_TRY(nn_group_norm_forward(N, x, o->conv.w, o->conv.b, s.b, s.c, hw, GN_GROUPS, GN_EPS));
    zero(D, count(s));
    nn_swish_backward(D, dy, N, count(s));
    return nn_group_norm_backward(dx, o->conv.dw, o->conv.db, D, x, o->conv.w, s.b, s.c, hw, GN_GROUPS, GN_EPS);
}

/* ---- the tapes ---- */

static optvq_status tape_forward(model_trainer *t, tape *tp, int64_t b)
{
    nn_workspace *ws = model_workspace(t->model);
    for (int i = 0; i < tp->n; i++) {
        const op *o = &tp->ops[i];
        const float *x = tp->act[i];
        float *y = tp->act[i + 1];
        shape s = {b, tp->c[i], tp->h[i], tp->w[i]};
        nn_conv2d_desc d;
        switch (o->kind) {
        case OP_CONV:
            OPTVQ_TRY(op_conv_desc(&d, o, b, s.c, s.h, s.w));
            OPTVQ_TRY(nn_conv2d_forward(y, x, o->conv.w, o->conv.b, &d, ws));
            break;
        case OP_CONVT: {
            nn_convt2d_desc dt;
            OPTVQ_TRY(op_convt_desc(&dt, o, b, s.c, s.h, s.w));
            OPTVQ_TRY(nn_convt2d_forward(y, x, o->conv.w, o->conv.b, &dt, ws));
            break;
        }
        case OP_RELU:
            nn_relu_forward(y, x, count(s));
            break;
        case OP_RESBLOCK:
            OPTVQ_TRY(resblock_forward(y, x, o, s, t->scratch[0], t->scratch[1], ws));
            break;
        case OP_ATTN: {
            nn_attn_desc a = attn_desc(b, s.c, s.h, s.w);
            OPTVQ_TRY(nn_attn_forward(y, o->saved, x, &o->ap, &a, ws));
            break;
        }
        case OP_UPCONV:
            OPTVQ_TRY(upconv_forward(y, x, o, s, t->scratch[0], ws));
            break;
        case OP_NORM_SWISH:
            OPTVQ_TRY(norm_swish(y, x, &o->conv, s));
            break;
        }
    }
    return OPTVQ_OK;
}

/* dy = gradient of the tape's output (overwritten: ops use it as scratch);
 * spare: a second gradient buffer. On return *dx_out points to the gradient
 * of the tape's input (one of the two buffers) when want_dx, else NULL. */
static optvq_status tape_backward(model_trainer *t, tape *tp, int64_t b, float *dy, float *spare, int want_dx,
                                  float **dx_out)
{
    nn_workspace *ws = model_workspace(t->model);
    float **sc = t->scratch;
    for (int i = tp->n - 1; i >= 0; i--) {
        const op *o = &tp->ops[i];
        const float *x = tp->act[i];
        shape s = {b, tp->c[i], tp->h[i], tp->w[i]};
        float *dx = (i > 0 || want_dx) ? spare : NULL;
        if (dx)
            zero(dx, count(s));
        nn_conv2d_desc d;
        switch (o->kind) {
        case OP_CONV:
            OPTVQ_TRY(op_conv_desc(&d, o, b, s.c, s.h, s.w));
            OPTVQ_TRY(nn_conv2d_backward(dx, o->conv.dw, o->conv.db, dy, x, o->conv.w, &d, ws));
            break;
        case OP_CONVT: {
            nn_convt2d_desc dt;
            OPTVQ_TRY(op_convt_desc(&dt, o, b, s.c, s.h, s.w));
            OPTVQ_TRY(nn_convt2d_backward(dx, o->conv.dw, o->conv.db, dy, x, o->conv.w, &dt, ws));
            break;
        }
        case OP_RELU:
            if (dx)
                nn_relu_backward(dx, dy, x, count(s));
            break;
        case OP_RESBLOCK:
            OPTVQ_TRY(resblock_backward(dx, dy, x, o, s, sc[0], sc[1], sc[2], ws));
            break;
        case OP_ATTN: {
            nn_attn_desc a = attn_desc(b, s.c, s.h, s.w);
            OPTVQ_TRY(nn_attn_backward(dx, &o->ag, dy, o->saved, x, &o->ap, &a, ws));
            break;
        }
        case OP_UPCONV:
            OPTVQ_TRY(upconv_backward(dx, dy, x, o, s, sc[0], sc[1], ws));
            break;
        case OP_NORM_SWISH:
            OPTVQ_TRY(norm_swish_backward(dx, dy, x, o, s, sc[0], sc[1]));
            break;
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

/* ---- public API ---- */

static int64_t recon_count(const model_trainer *t)
{
    const tape *d = &t->dec;
    return t->batch * d->c[d->n] * d->h[d->n] * d->w[d->n];
}

optvq_status model_trainer_forward(model_trainer *t, const float *x, int64_t batch, int64_t height, int64_t width,
                                   const float **recon, float *q_loss, int64_t *tokens)
{
    if (!t || !x || !recon)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "trainer_forward: NULL argument");
    t->have_forward = 0;
    t->have_backward = 0;
    *recon = NULL;
    OPTVQ_TRY(prepare(t, batch, height, width));
    tape *e = &t->enc, *d = &t->dec;
    memcpy(e->act[0], x, numel(batch, e->c[0], e->h[0], e->w[0]) * sizeof(float));
    OPTVQ_TRY(tape_forward(t, e, batch));
    float ql = 0;
    OPTVQ_TRY(optvq_quantizer_forward(optvq_model_quantizer(t->model), e->act[e->n], batch, e->h[e->n], e->w[e->n],
                                      d->act[0], tokens, &ql));
    OPTVQ_TRY(tape_forward(t, d, batch));
    if (q_loss)
        *q_loss = ql;
    *recon = d->act[d->n];
    t->have_forward = 1;
    return OPTVQ_OK;
}

/* Backward from grad_a = d loss / d recon (consumed). */
static optvq_status backward_from_grad_a(model_trainer *t, double q_weight)
{
    tape *e = &t->enc, *d = &t->dec;
    float *g_xq;
    t->have_backward = 1;
    OPTVQ_TRY(tape_backward(t, d, t->batch, t->grad_a, t->grad_b, 1, &g_xq));
    /* through the quantizer (straight-through + q_weight * its loss) into z */
    float *g_z = g_xq == t->grad_a ? t->grad_b : t->grad_a;
    zero(g_z, t->batch * e->c[e->n] * e->h[e->n] * e->w[e->n]);
    OPTVQ_TRY(optvq_quantizer_backward(optvq_model_quantizer(t->model), g_xq, (float)q_weight, g_z));
    return tape_backward(t, e, t->batch, g_z, g_xq, 0, NULL);
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
    const tape *d = &t->dec;
    const int i = d->n - 1;
    const op *o = &d->ops[i];
    if (o->kind != OP_CONV || !t->last)
        return optvq_fail(OPTVQ_ERR_STATE, "trainer_last_layer_grad: the decoder does not end in a conv");
    nn_conv2d_desc desc;
    OPTVQ_TRY(op_conv_desc(&desc, o, t->batch, d->c[i], d->h[i], d->w[i]));
    zero(dw, t->last->numel);
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
    zero(g, n);
    nn_l1_loss_backward(g, NULL, (float)lw->l1, rec, xs, n);
    nn_mse_loss_backward(g, NULL, (float)lw->l2, rec, xs, n);
    return backward_from_grad_a(t, lw->q);
}
