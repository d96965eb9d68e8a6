/* The architectures, each written once as a chain of blocks, and the one
 * executor and planner that run a chain for inference and for training
 * (see graph.h). */
#include "model/graph.h"

#include "core/error.h"
#include "nn/conv_infer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- building ---- */

/* Appends blocks to g and registers their parameters into p; the first
 * error sticks and later calls do nothing. ch: the channels so far. */
typedef struct builder {
    graph *g;
    nn_params *p;
    int group;
    int64_t ch;
    optvq_status st;
} builder;

static void push(builder *b, block_kind kind, int64_t cout, int64_t k, int64_t stride, int64_t pt, int64_t pb,
                 int64_t pl, int64_t pr, const char *name)
{
    if (b->st != OPTVQ_OK)
        return;
    graph *g = b->g;
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 32;
        block *blocks = realloc(g->blocks, (size_t)cap * sizeof *blocks);
        if (!blocks) {
            b->st = optvq_fail(OPTVQ_ERR_NOMEM, "model: out of memory");
            return;
        }
        g->blocks = blocks;
        g->cap = cap;
    }
    block *o = &g->blocks[g->n];
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->cin = b->ch;
    o->cout = cout;
    o->k = k;
    o->stride = stride;
    o->pt = pt;
    o->pb = pb;
    o->pl = pl;
    o->pr = pr;
    snprintf(o->name, sizeof o->name, "%s", name);
    b->st = block_register(o, b->p, b->group);
    if (b->st == OPTVQ_OK) {
        g->n++;
        b->ch = cout;
    }
}

/* The block's name (its parameters' state-dict prefix) from fmt, ... */
#define BLOCK_NAME(name)                                                                                            \
    char name[NN_PARAM_NAME_MAX];                                                                                   \
    do {                                                                                                            \
        va_list ap;                                                                                                 \
        va_start(ap, fmt);                                                                                          \
        vsnprintf(name, sizeof name, fmt, ap);                                                                      \
        va_end(ap);                                                                                                 \
    } while (0)

/* conv k x k with stride and padding (top, bottom, left, right) */
static void conv(builder *b, int64_t cout, int64_t k, int64_t stride, int64_t pt, int64_t pb, int64_t pl, int64_t pr,
                 const char *fmt, ...) OPTVQ_PRINTF(9, 10);
static void conv(builder *b, int64_t cout, int64_t k, int64_t stride, int64_t pt, int64_t pb, int64_t pl, int64_t pr,
                 const char *fmt, ...)
{
    BLOCK_NAME(name);
    push(b, BLOCK_CONV, cout, k, stride, pt, pb, pl, pr, name);
}

/* conv k x k, stride 1, "same" padding */
static void conv_same(builder *b, int64_t cout, int64_t k, const char *fmt, ...) OPTVQ_PRINTF(4, 5);
static void conv_same(builder *b, int64_t cout, int64_t k, const char *fmt, ...)
{
    BLOCK_NAME(name);
    push(b, BLOCK_CONV, cout, k, 1, k / 2, k / 2, k / 2, k / 2, name);
}

/* ConvTranspose2d(kernel 2, stride 2) */
static void convt(builder *b, int64_t cout, const char *fmt, ...) OPTVQ_PRINTF(3, 4);
static void convt(builder *b, int64_t cout, const char *fmt, ...)
{
    BLOCK_NAME(name);
    push(b, BLOCK_CONVT, cout, 2, 2, 0, 0, 0, 0, name);
}

/* ReLU after the layer before it (no parameters; the name is for messages) */
static void relu(builder *b)
{
    char name[NN_PARAM_NAME_MAX];
    snprintf(name, sizeof name, "%.120s relu", b->g->n ? b->g->blocks[b->g->n - 1].name : "input");
    push(b, BLOCK_RELU, b->ch, 1, 1, 0, 0, 0, 0, name);
}

static void resblock(builder *b, int64_t cout, const char *fmt, ...) OPTVQ_PRINTF(3, 4);
static void resblock(builder *b, int64_t cout, const char *fmt, ...)
{
    BLOCK_NAME(name);
    push(b, BLOCK_RESBLOCK, cout, 3, 1, 1, 1, 1, 1, name);
}

static void attn(builder *b, const char *fmt, ...) OPTVQ_PRINTF(2, 3);
static void attn(builder *b, const char *fmt, ...)
{
    BLOCK_NAME(name);
    push(b, BLOCK_ATTN, b->ch, 1, 1, 0, 0, 0, 0, name);
}

/* Upsample(with_conv): nearest x2, conv3x3 */
static void upconv(builder *b, const char *fmt, ...) OPTVQ_PRINTF(2, 3);
static void upconv(builder *b, const char *fmt, ...)
{
    BLOCK_NAME(name);
    push(b, BLOCK_UPCONV, b->ch, 3, 1, 1, 1, 1, 1, name);
}

/* Normalize + nonlinearity (norm_out) */
static void norm_swish(builder *b, const char *fmt, ...) OPTVQ_PRINTF(2, 3);
static void norm_swish(builder *b, const char *fmt, ...)
{
    BLOCK_NAME(name);
    push(b, BLOCK_NORM_SWISH, b->ch, 1, 1, 0, 0, 0, 0, name);
}

static int has_attn(const coder_config *c, int64_t res)
{
    for (int i = 0; i < c->n_attn; i++)
        if (c->attn_resolutions[i] == res)
            return 1;
    return 0;
}

/* The middle of both taming coders: ResnetBlock, AttnBlock, ResnetBlock. */
static void taming_mid(builder *b, const char *root)
{
    resblock(b, b->ch, "%s.mid.block_1", root);
    attn(b, "%s.mid.attn_1", root);
    resblock(b, b->ch, "%s.mid.block_2", root);
}

/* taming.modules.diffusionmodules.model.Encoder */
static void taming_encoder(builder *b, const coder_config *c)
{
    conv_same(b, c->ch, 3, "encoder.conv_in");
    int64_t res = c->resolution;
    for (int i = 0; i < c->n_levels; i++) {
        for (int j = 0; j < c->num_res_blocks; j++) {
            resblock(b, c->ch * c->ch_mult[i], "encoder.down.%d.block.%d", i, j);
            if (has_attn(c, res))
                attn(b, "encoder.down.%d.attn.%d", i, j);
        }
        if (i != c->n_levels - 1) { /* Downsample: F.pad (0, 1, 0, 1), conv3x3 stride 2 */
            conv(b, b->ch, 3, 2, 0, 1, 0, 1, "encoder.down.%d.downsample.conv", i);
            res /= 2;
        }
    }
    taming_mid(b, "encoder");
    norm_swish(b, "encoder.norm_out");
    conv_same(b, c->double_z ? 2 * c->z_channels : c->z_channels, 3, "encoder.conv_out");
}

/* taming.modules.diffusionmodules.model.Decoder */
static void taming_decoder(builder *b, const coder_config *c)
{
    const int L = c->n_levels;
    int64_t res = c->resolution >> (L - 1);
    conv_same(b, c->ch * c->ch_mult[L - 1], 3, "decoder.conv_in");
    taming_mid(b, "decoder");
    for (int i = L - 1; i >= 0; i--) {
        for (int j = 0; j < c->num_res_blocks + 1; j++) {
            resblock(b, c->ch * c->ch_mult[i], "decoder.up.%d.block.%d", i, j);
            if (has_attn(c, res))
                attn(b, "decoder.up.%d.attn.%d", i, j);
        }
        if (i != 0) {
            upconv(b, "decoder.up.%d.upsample.conv", i);
            res *= 2;
        }
    }
    norm_swish(b, "decoder.norm_out");
    conv_same(b, c->out_channels, 3, "decoder.conv_out");
}

/* The reference's plain CNN encoder (MNIST / CIFAR-10 configs), downsampling 4. */
static void plain_encoder(builder *b)
{
    conv_same(b, 16, 3, "encoder.in_fc");
    relu(b);
    conv(b, 16, 2, 2, 0, 0, 0, 0, "encoder.down1");
    conv_same(b, 16, 3, "encoder.conv1");
    relu(b);
    conv(b, 16, 2, 2, 0, 0, 0, 0, "encoder.down2");
    conv_same(b, 32, 3, "encoder.conv2");
    relu(b);
    conv_same(b, 32, 3, "encoder.out_fc");
}

static void plain_decoder(builder *b, const coder_config *c)
{
    conv_same(b, 32, 3, "decoder.in_fc");
    relu(b);
    convt(b, 16, "decoder.up1");
    conv_same(b, 16, 3, "decoder.conv1");
    relu(b);
    convt(b, 16, "decoder.up2");
    conv_same(b, 16, 3, "decoder.conv2");
    relu(b);
    conv_same(b, c->out_channels, 3, "decoder.out_fc");
}

optvq_status graph_build_model(const model_config *c, nn_params *p, graph *enc, graph *dec)
{
    builder e = {enc, p, MODEL_GROUP_ENCODER, c->encoder.in_channels, OPTVQ_OK};
    if (c->encoder.arch == ARCH_TAMING)
        taming_encoder(&e, &c->encoder);
    else
        plain_encoder(&e);
    OPTVQ_TRY(e.st);
    /* the decoder's input: post_quant_conv's output, or (no connector; the
     * config checked they are equal) the quantizer's */
    builder d = {dec, p, MODEL_GROUP_DECODER, coder_hidden_dim(&c->decoder, 0), OPTVQ_OK};
    if (c->decoder.arch == ARCH_TAMING)
        taming_decoder(&d, &c->decoder);
    else
        plain_decoder(&d, &c->decoder);
    OPTVQ_TRY(d.st);
    if (!c->use_connector)
        return OPTVQ_OK;
    /* connectors, registered after both coders as in the state dict; post_quant_conv runs first in dec */
    e.group = d.group = MODEL_GROUP_CONNECTOR;
    conv_same(&e, c->quantize.e_dim, 1, "quant_conv");
    OPTVQ_TRY(e.st);
    d.ch = c->quantize.e_dim;
    conv_same(&d, coder_hidden_dim(&c->decoder, 0), 1, "post_quant_conv");
    OPTVQ_TRY(d.st);
    block post = dec->blocks[dec->n - 1];
    memmove(dec->blocks + 1, dec->blocks, (size_t)(dec->n - 1) * sizeof *dec->blocks);
    dec->blocks[0] = post;
    return OPTVQ_OK;
}

void graph_bind(graph *g, const nn_params *p)
{
    for (int i = 0; i < g->n; i++)
        block_bind(&g->blocks[i], p);
}

void graph_free(graph *g)
{
    free(g->blocks);
    memset(g, 0, sizeof *g);
}

/* ---- planning ---- */

#define ALIGN_FLOATS 16 /* 64 bytes between carved buffers */

static size_t aligned(size_t f) { return (f + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS; }

static size_t numel(block_shape s) { return (size_t)(s.b * s.c * s.h * s.w); }

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

optvq_status graph_run_init(graph_run *r, const graph *g)
{
    memset(r, 0, sizeof *r);
    r->g = g;
    const size_t s = (size_t)g->n + 1;
    r->dims = calloc(s, sizeof *r->dims);
    r->act = calloc(s, sizeof *r->act);
    r->saved = calloc(s, sizeof *r->saved);
    r->saved_floats = calloc(s, sizeof *r->saved_floats);
    if (!r->dims || !r->act || !r->saved || !r->saved_floats) {
        graph_run_free(r);
        return optvq_fail(OPTVQ_ERR_NOMEM, "model: out of memory");
    }
    return OPTVQ_OK;
}

void graph_run_free(graph_run *r)
{
    free(r->dims);
    free(r->act);
    free(r->saved);
    free(r->saved_floats);
    memset(r, 0, sizeof *r);
}

optvq_status graph_plan(graph_run *r, block_shape in, graph_need *need)
{
    const graph *g = r->g;
    r->dims[0] = in;
    size_t train = aligned(numel(in));
    need->act_max = max_sz(need->act_max, numel(in));
    for (int i = 0; i < g->n; i++) {
        block_need bn;
        OPTVQ_TRY(block_plan(&g->blocks[i], r->dims[i], &r->dims[i + 1], &bn));
        need->ws = max_sz(need->ws, bn.ws);
        /* without a cache the inference forward takes conv2d's paths */
        const size_t infer = !r->conv ? bn.ws
                             : nn_conv_cache_precision(r->conv) == NN_PRECISION_BF16 ? bn.ws_infer_bf16
                                                                                     : bn.ws_infer;
        need->ws_infer = max_sz(need->ws_infer, infer);
        need->scratch = max_sz(need->scratch, bn.scratch);
        need->scratch_infer = bn.scratch_infer > need->scratch_infer ? bn.scratch_infer : need->scratch_infer;
        need->scratch_train = bn.scratch_train > need->scratch_train ? bn.scratch_train : need->scratch_train;
        need->act_max = max_sz(need->act_max, numel(r->dims[i + 1]));
        r->saved_floats[i] = bn.saved;
        train += aligned(numel(r->dims[i + 1])) + aligned(bn.saved);
    }
    need->train += train;
    return OPTVQ_OK;
}

void graph_layout_inference(graph_run *r, const float *x, float *a, float *b, float *out)
{
    const int n = r->g->n;
    r->act[0] = (float *)x; /* read only: blocks never write their input */
    for (int i = 1; i <= n; i++)
        r->act[i] = i & 1 ? a : b;
    if (out && n > 0)
        r->act[n] = out;
    for (int i = 0; i < n; i++)
        r->saved[i] = NULL;
}

void graph_layout_training(graph_run *r, float **p)
{
    const graph *g = r->g;
    for (int i = 0; i <= g->n; i++) {
        r->act[i] = *p;
        *p += aligned(numel(r->dims[i]));
    }
    for (int i = 0; i < g->n; i++) {
        r->saved[i] = r->saved_floats[i] ? *p : NULL;
        *p += aligned(r->saved_floats[i]);
    }
}

/* ---- running ---- */

optvq_status graph_forward(const graph_run *r, float *const *scratch, nn_workspace *ws)
{
    const graph *g = r->g;
    for (int i = 0; i < g->n; i++)
        OPTVQ_TRY(block_forward(&g->blocks[i], r->act[i + 1], r->act[i], r->dims[i], r->saved[i], scratch, ws,
                                r->conv));
    return OPTVQ_OK;
}

optvq_status graph_backward(const graph_run *r, float *dy, float *spare, int want_dx, float **dx_out,
                            float *const *scratch, nn_workspace *ws)
{
    const graph *g = r->g;
    for (int i = g->n - 1; i >= 0; i--) {
        const block_shape s = r->dims[i];
        float *dx = (i > 0 || want_dx) ? spare : NULL;
        if (dx)
            memset(dx, 0, numel(s) * sizeof(float));
        OPTVQ_TRY(block_backward(&g->blocks[i], dx, dy, r->act[i], s, r->saved[i], scratch, ws));
        if (!dx)
            break;
        spare = dy;
        dy = dx;
    }
    if (dx_out)
        *dx_out = want_dx ? dy : NULL;
    return OPTVQ_OK;
}
