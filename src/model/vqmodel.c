/* VQModel inference: encoder -> quant_conv -> quantizer -> post_quant_conv ->
 * decoder (design.md §2). Each forward runs twice through the same code: a
 * planning pass that only sizes the activation arena and the workspace, then
 * the real pass. Activations live in a small pool of equal buffers that are
 * recycled block by block, so memory stays a few activations, not the
 * whole graph. */
#include "model/vqmodel.h"

#include "core/error.h"
#include "core/parallel.h"
#include "nn/nn.h"

#include "core/rng.h"
#include "io/weights.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POOL 6 /* activation buffers */

struct optvq_model {
    model_config cfg;
    nn_params params; /* encoder.*, decoder.*, quant_conv.*, post_quant_conv.* */
    optvq_quantizer *quant; /* quantize.* */
    nn_workspace ws;
    float *bufs[POOL]; /* owned activation buffers, pool_floats each       */
    float *pool[POOL]; /* the buffers in use: bufs, or tokens when planning */
    size_t pool_floats;
    float *z;          /* (B, e_dim, h, w) quantizer input                   */
    size_t z_floats;
    /* run state */
    int planning;
    size_t need_act, need_ws;
    optvq_status status;
};

/* ---- parameters ---- */

static optvq_status add(nn_params *p, int ndim, const int64_t *shape, const char *fmt, ...)
{
    char name[NN_PARAM_NAME_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return nn_params_add(p, name, ndim, shape, NULL);
}

static optvq_status add_conv(nn_params *p, const char *prefix, int64_t cout, int64_t cin, int64_t k)
{
    int64_t w[4] = {cout, cin, k, k}, b[1] = {cout};
    OPTVQ_TRY(add(p, 4, w, "%s.weight", prefix));
    return add(p, 1, b, "%s.bias", prefix);
}

static optvq_status add_convt(nn_params *p, const char *prefix, int64_t cin, int64_t cout, int64_t k)
{
    int64_t w[4] = {cin, cout, k, k}, b[1] = {cout};
    OPTVQ_TRY(add(p, 4, w, "%s.weight", prefix));
    return add(p, 1, b, "%s.bias", prefix);
}

static optvq_status add_norm(nn_params *p, const char *prefix, int64_t c)
{
    int64_t s[1] = {c};
    OPTVQ_TRY(add(p, 1, s, "%s.weight", prefix));
    return add(p, 1, s, "%s.bias", prefix);
}

static optvq_status add_resblock(nn_params *p, const char *prefix, int64_t cin, int64_t cout)
{
    char n[NN_PARAM_NAME_MAX];
    snprintf(n, sizeof n, "%s.norm1", prefix);
    OPTVQ_TRY(add_norm(p, n, cin));
    snprintf(n, sizeof n, "%s.conv1", prefix);
    OPTVQ_TRY(add_conv(p, n, cout, cin, 3));
    snprintf(n, sizeof n, "%s.norm2", prefix);
    OPTVQ_TRY(add_norm(p, n, cout));
    snprintf(n, sizeof n, "%s.conv2", prefix);
    OPTVQ_TRY(add_conv(p, n, cout, cout, 3));
    if (cin != cout) {
        snprintf(n, sizeof n, "%s.nin_shortcut", prefix);
        OPTVQ_TRY(add_conv(p, n, cout, cin, 1));
    }
    return OPTVQ_OK;
}

static optvq_status add_attn(nn_params *p, const char *prefix, int64_t c)
{
    static const char *const parts[] = {"q", "k", "v", "proj_out"};
    char n[NN_PARAM_NAME_MAX];
    snprintf(n, sizeof n, "%s.norm", prefix);
    OPTVQ_TRY(add_norm(p, n, c));
    for (int i = 0; i < 4; i++) {
        snprintf(n, sizeof n, "%s.%s", prefix, parts[i]);
        OPTVQ_TRY(add_conv(p, n, c, c, 1));
    }
    return OPTVQ_OK;
}

static int has_attn(const coder_config *c, int64_t res)
{
    for (int i = 0; i < c->n_attn; i++)
        if (c->attn_resolutions[i] == res)
            return 1;
    return 0;
}

static optvq_status add_taming(nn_params *p, const coder_config *c, int is_encoder)
{
    const char *root = is_encoder ? "encoder" : "decoder";
    char n[NN_PARAM_NAME_MAX];
    const int L = c->n_levels;
    if (is_encoder) {
        snprintf(n, sizeof n, "%s.conv_in", root);
        OPTVQ_TRY(add_conv(p, n, c->ch, c->in_channels, 3));
        int64_t res = c->resolution, block_in = c->ch;
        for (int i = 0; i < L; i++) {
            int64_t block_out = c->ch * c->ch_mult[i];
            block_in = c->ch * (i == 0 ? 1 : c->ch_mult[i - 1]);
            for (int b = 0; b < c->num_res_blocks; b++) {
                snprintf(n, sizeof n, "%s.down.%d.block.%d", root, i, b);
                OPTVQ_TRY(add_resblock(p, n, block_in, block_out));
                block_in = block_out;
                if (has_attn(c, res)) {
                    snprintf(n, sizeof n, "%s.down.%d.attn.%d", root, i, b);
                    OPTVQ_TRY(add_attn(p, n, block_in));
                }
            }
            if (i != L - 1) {
                snprintf(n, sizeof n, "%s.down.%d.downsample.conv", root, i);
                OPTVQ_TRY(add_conv(p, n, block_in, block_in, 3));
                res /= 2;
            }
        }
        int64_t top = c->ch * c->ch_mult[L - 1];
        snprintf(n, sizeof n, "%s.mid.block_1", root);
        OPTVQ_TRY(add_resblock(p, n, top, top));
        snprintf(n, sizeof n, "%s.mid.attn_1", root);
        OPTVQ_TRY(add_attn(p, n, top));
        snprintf(n, sizeof n, "%s.mid.block_2", root);
        OPTVQ_TRY(add_resblock(p, n, top, top));
        snprintf(n, sizeof n, "%s.norm_out", root);
        OPTVQ_TRY(add_norm(p, n, top));
        snprintf(n, sizeof n, "%s.conv_out", root);
        return add_conv(p, n, c->double_z ? 2 * c->z_channels : c->z_channels, top, 3);
    }
    int64_t block_in = c->ch * c->ch_mult[L - 1], res = c->resolution >> (L - 1);
    snprintf(n, sizeof n, "%s.conv_in", root);
    OPTVQ_TRY(add_conv(p, n, block_in, c->z_channels, 3));
    snprintf(n, sizeof n, "%s.mid.block_1", root);
    OPTVQ_TRY(add_resblock(p, n, block_in, block_in));
    snprintf(n, sizeof n, "%s.mid.attn_1", root);
    OPTVQ_TRY(add_attn(p, n, block_in));
    snprintf(n, sizeof n, "%s.mid.block_2", root);
    OPTVQ_TRY(add_resblock(p, n, block_in, block_in));
    for (int i = L - 1; i >= 0; i--) {
        int64_t block_out = c->ch * c->ch_mult[i];
        for (int b = 0; b < c->num_res_blocks + 1; b++) {
            snprintf(n, sizeof n, "%s.up.%d.block.%d", root, i, b);
            OPTVQ_TRY(add_resblock(p, n, block_in, block_out));
            block_in = block_out;
            if (has_attn(c, res)) {
                snprintf(n, sizeof n, "%s.up.%d.attn.%d", root, i, b);
                OPTVQ_TRY(add_attn(p, n, block_in));
            }
        }
        if (i != 0) {
            snprintf(n, sizeof n, "%s.up.%d.upsample.conv", root, i);
            OPTVQ_TRY(add_conv(p, n, block_in, block_in, 3));
            res *= 2;
        }
    }
    snprintf(n, sizeof n, "%s.norm_out", root);
    OPTVQ_TRY(add_norm(p, n, block_in));
    snprintf(n, sizeof n, "%s.conv_out", root);
    return add_conv(p, n, c->out_channels, block_in, 3);
}

static optvq_status add_plain(nn_params *p, const coder_config *c, int is_encoder)
{
    if (is_encoder) {
        OPTVQ_TRY(add_conv(p, "encoder.in_fc", 16, c->in_channels, 3));
        OPTVQ_TRY(add_conv(p, "encoder.down1", 16, 16, 2));
        OPTVQ_TRY(add_conv(p, "encoder.conv1", 16, 16, 3));
        OPTVQ_TRY(add_conv(p, "encoder.down2", 16, 16, 2));
        OPTVQ_TRY(add_conv(p, "encoder.conv2", 32, 16, 3));
        return add_conv(p, "encoder.out_fc", 32, 32, 3);
    }
    OPTVQ_TRY(add_conv(p, "decoder.in_fc", 32, 32, 3));
    OPTVQ_TRY(add_convt(p, "decoder.up1", 32, 16, 2));
    OPTVQ_TRY(add_conv(p, "decoder.conv1", 16, 16, 3));
    OPTVQ_TRY(add_convt(p, "decoder.up2", 16, 16, 2));
    OPTVQ_TRY(add_conv(p, "decoder.conv2", 16, 16, 3));
    return add_conv(p, "decoder.out_fc", c->out_channels, 16, 3);
}

/* ---- execution helpers (planning or running) ---- */

typedef struct tensor {
    float *data;
    int64_t n, c, h, w;
} tensor;

static float *P(optvq_model *m, const char *fmt, ...)
{
    char name[NN_PARAM_NAME_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    nn_param *p = nn_params_find(&m->params, name);
    if (!p) { /* registration and use disagree: a bug, reported, never a crash */
        if (m->status == OPTVQ_OK)
            m->status = optvq_fail(OPTVQ_ERR_STATE, "model: parameter %s is not registered", name);
        return NULL;
    }
    return p->data;
}

static void need(optvq_model *m, int64_t n, int64_t c, int64_t h, int64_t w)
{
    size_t f = (size_t)(n * c * h * w);
    if (f > m->need_act)
        m->need_act = f;
}

/* A free pool buffer other than the ones in use. */
static float *take(optvq_model *m, const float *a, const float *b, const float *c)
{
    for (int i = 0; i < POOL; i++)
        if (m->pool[i] != a && m->pool[i] != b && m->pool[i] != c)
            return m->pool[i];
    return NULL;
}

static tensor conv(optvq_model *m, tensor x, float *out, const char *prefix, int64_t cout, int64_t k,
                   int64_t stride, int64_t pt, int64_t pb, int64_t pl, int64_t pr)
{
    nn_conv2d_desc d;
    tensor y = {out, x.n, cout, 0, 0};
    if (m->status != OPTVQ_OK)
        return y;
    optvq_status st = nn_conv2d_init(&d, x.n, x.c, x.h, x.w, cout, k, k, stride, pt, pb, pl, pr);
    if (st != OPTVQ_OK) {
        m->status = st;
        return y;
    }
    y.h = d.h_out;
    y.w = d.w_out;
    if (m->planning) {
        size_t ws = nn_conv2d_workspace(&d);
        if (ws > m->need_ws)
            m->need_ws = ws;
        need(m, y.n, y.c, y.h, y.w);
        return y;
    }
    char wn[NN_PARAM_NAME_MAX];
    snprintf(wn, sizeof wn, "%s.weight", prefix);
    const float *w = P(m, "%s", wn), *b = P(m, "%s.bias", prefix);
    if (m->status == OPTVQ_OK)
        m->status = nn_conv2d_forward(out, x.data, w, b, &d, &m->ws);
    return y;
}

static tensor conv_same(optvq_model *m, tensor x, float *out, const char *prefix, int64_t cout, int64_t k)
{
    int64_t p = k / 2;
    return conv(m, x, out, prefix, cout, k, 1, p, p, p, p);
}

static tensor convt(optvq_model *m, tensor x, float *out, const char *prefix, int64_t cout)
{
    nn_convt2d_desc d;
    tensor y = {out, x.n, cout, 0, 0};
    if (m->status != OPTVQ_OK)
        return y;
    optvq_status st = nn_convt2d_init(&d, x.n, x.c, x.h, x.w, cout, 2, 2, 2, 0, 0);
    if (st != OPTVQ_OK) {
        m->status = st;
        return y;
    }
    y.h = d.h_out;
    y.w = d.w_out;
    if (m->planning) {
        size_t ws = nn_convt2d_workspace(&d);
        if (ws > m->need_ws)
            m->need_ws = ws;
        need(m, y.n, y.c, y.h, y.w);
        return y;
    }
    const float *w = P(m, "%s.weight", prefix), *b = P(m, "%s.bias", prefix);
    if (m->status == OPTVQ_OK)
        m->status = nn_convt2d_forward(out, x.data, w, b, &d, &m->ws);
    return y;
}

/* GroupNorm(32, eps 1e-6) then swish, into out. */
static tensor norm_swish(optvq_model *m, tensor x, float *out, const char *prefix)
{
    tensor y = x;
    y.data = out;
    if (m->planning || m->status != OPTVQ_OK)
        return y;
    const float *g = P(m, "%s.weight", prefix), *b = P(m, "%s.bias", prefix);
    if (m->status != OPTVQ_OK)
        return y;
    m->status = nn_group_norm_forward(out, x.data, g, b, x.n, x.c, x.h * x.w, 32, 1e-6f);
    nn_swish_forward(out, out, x.n * x.c * x.h * x.w);
    return y;
}

static void add_into(optvq_model *m, tensor y, const float *x)
{
    if (!m->planning && m->status == OPTVQ_OK)
        nn_add_forward(y.data, y.data, x, y.n * y.c * y.h * y.w);
}

/* ResnetBlock: x + conv2(swish(norm2(conv1(swish(norm1(x)))))), with a 1x1
 * nin_shortcut when channels change. Returns the output in a pool buffer. */
static tensor resblock(optvq_model *m, tensor x, int64_t cout, const char *prefix)
{
    char n[NN_PARAM_NAME_MAX];
    float *t1 = take(m, x.data, NULL, NULL), *t2 = take(m, x.data, t1, NULL);
    snprintf(n, sizeof n, "%s.norm1", prefix);
    tensor a = norm_swish(m, x, t1, n);
    snprintf(n, sizeof n, "%s.conv1", prefix);
    tensor h = conv_same(m, a, t2, n, cout, 3);
    snprintf(n, sizeof n, "%s.norm2", prefix);
    a = norm_swish(m, h, t1, n);
    float *out = take(m, x.data, t1, t2);
    snprintf(n, sizeof n, "%s.conv2", prefix);
    h = conv_same(m, a, out, n, cout, 3);
    if (x.c != cout) {
        snprintf(n, sizeof n, "%s.nin_shortcut", prefix);
        tensor s = conv_same(m, x, t2, n, cout, 1);
        add_into(m, h, s.data);
    } else {
        add_into(m, h, x.data);
    }
    return h;
}

static tensor attn(optvq_model *m, tensor x, const char *prefix)
{
    nn_attn_desc d = {x.n, x.c, x.h, x.w, 32, 1e-6f};
    float *out = take(m, x.data, NULL, NULL);
    tensor y = x;
    y.data = out;
    if (m->status != OPTVQ_OK)
        return y;
    if (m->planning) {
        size_t ws = nn_attn_workspace(&d);
        if (ws > m->need_ws)
            m->need_ws = ws;
        return y;
    }
    nn_attn_params p = {P(m, "%s.norm.weight", prefix), P(m, "%s.norm.bias", prefix), P(m, "%s.q.weight", prefix),
                        P(m, "%s.q.bias", prefix),      P(m, "%s.k.weight", prefix),  P(m, "%s.k.bias", prefix),
                        P(m, "%s.v.weight", prefix),    P(m, "%s.v.bias", prefix),    P(m, "%s.proj_out.weight", prefix),
                        P(m, "%s.proj_out.bias", prefix)};
    if (m->status == OPTVQ_OK)
        m->status = nn_attn_forward(out, NULL, x.data, &p, &d, &m->ws);
    return y;
}

static tensor relu(optvq_model *m, tensor x)
{
    if (!m->planning && m->status == OPTVQ_OK)
        nn_relu_forward(x.data, x.data, x.n * x.c * x.h * x.w);
    return x;
}

/* ---- encoder / decoder ---- */

static tensor taming_encoder(optvq_model *m, tensor x)
{
    const coder_config *c = &m->cfg.encoder;
    char n[NN_PARAM_NAME_MAX];
    tensor h = conv_same(m, x, take(m, x.data, NULL, NULL), "encoder.conv_in", c->ch, 3);
    int64_t res = c->resolution;
    for (int i = 0; i < c->n_levels; i++) {
        for (int b = 0; b < c->num_res_blocks; b++) {
            snprintf(n, sizeof n, "encoder.down.%d.block.%d", i, b);
            h = resblock(m, h, c->ch * c->ch_mult[i], n);
            if (has_attn(c, res)) {
                snprintf(n, sizeof n, "encoder.down.%d.attn.%d", i, b);
                h = attn(m, h, n);
            }
        }
        if (i != c->n_levels - 1) {
            snprintf(n, sizeof n, "encoder.down.%d.downsample.conv", i);
            h = conv(m, h, take(m, h.data, NULL, NULL), n, h.c, 3, 2, 0, 1, 0, 1); /* pad (0,1,0,1) */
            res /= 2;
        }
    }
    h = resblock(m, h, h.c, "encoder.mid.block_1");
    h = attn(m, h, "encoder.mid.attn_1");
    h = resblock(m, h, h.c, "encoder.mid.block_2");
    tensor a = norm_swish(m, h, take(m, h.data, NULL, NULL), "encoder.norm_out");
    return conv_same(m, a, take(m, a.data, NULL, NULL), "encoder.conv_out",
                     c->double_z ? 2 * c->z_channels : c->z_channels, 3);
}

static tensor upsample(optvq_model *m, tensor x)
{
    tensor y = {take(m, x.data, NULL, NULL), x.n, x.c, 2 * x.h, 2 * x.w};
    if (m->planning)
        need(m, y.n, y.c, y.h, y.w);
    else if (m->status == OPTVQ_OK)
        nn_upsample2x_forward(y.data, x.data, x.n * x.c, x.h, x.w);
    return y;
}

static tensor taming_decoder(optvq_model *m, tensor z)
{
    const coder_config *c = &m->cfg.decoder;
    char n[NN_PARAM_NAME_MAX];
    const int L = c->n_levels;
    int64_t res = c->resolution >> (L - 1);
    tensor h = conv_same(m, z, take(m, z.data, NULL, NULL), "decoder.conv_in", c->ch * c->ch_mult[L - 1], 3);
    h = resblock(m, h, h.c, "decoder.mid.block_1");
    h = attn(m, h, "decoder.mid.attn_1");
    h = resblock(m, h, h.c, "decoder.mid.block_2");
    for (int i = L - 1; i >= 0; i--) {
        for (int b = 0; b < c->num_res_blocks + 1; b++) {
            snprintf(n, sizeof n, "decoder.up.%d.block.%d", i, b);
            h = resblock(m, h, c->ch * c->ch_mult[i], n);
            if (has_attn(c, res)) {
                snprintf(n, sizeof n, "decoder.up.%d.attn.%d", i, b);
                h = attn(m, h, n);
            }
        }
        if (i != 0) {
            h = upsample(m, h);
            snprintf(n, sizeof n, "decoder.up.%d.upsample.conv", i);
            h = conv_same(m, h, take(m, h.data, NULL, NULL), n, h.c, 3);
            res *= 2;
        }
    }
    tensor a = norm_swish(m, h, take(m, h.data, NULL, NULL), "decoder.norm_out");
    return conv_same(m, a, take(m, a.data, NULL, NULL), "decoder.conv_out", c->out_channels, 3);
}

static tensor plain_encoder(optvq_model *m, tensor x)
{
    tensor h = relu(m, conv_same(m, x, take(m, x.data, NULL, NULL), "encoder.in_fc", 16, 3));
    h = conv(m, h, take(m, h.data, NULL, NULL), "encoder.down1", 16, 2, 2, 0, 0, 0, 0);
    h = relu(m, conv_same(m, h, take(m, h.data, NULL, NULL), "encoder.conv1", 16, 3));
    h = conv(m, h, take(m, h.data, NULL, NULL), "encoder.down2", 16, 2, 2, 0, 0, 0, 0);
    h = relu(m, conv_same(m, h, take(m, h.data, NULL, NULL), "encoder.conv2", 32, 3));
    return conv_same(m, h, take(m, h.data, NULL, NULL), "encoder.out_fc", 32, 3);
}

static tensor plain_decoder(optvq_model *m, tensor z)
{
    const coder_config *c = &m->cfg.decoder;
    tensor h = relu(m, conv_same(m, z, take(m, z.data, NULL, NULL), "decoder.in_fc", 32, 3));
    h = convt(m, h, take(m, h.data, NULL, NULL), "decoder.up1", 16);
    h = relu(m, conv_same(m, h, take(m, h.data, NULL, NULL), "decoder.conv1", 16, 3));
    h = convt(m, h, take(m, h.data, NULL, NULL), "decoder.up2", 16);
    h = relu(m, conv_same(m, h, take(m, h.data, NULL, NULL), "decoder.conv2", 16, 3));
    return conv_same(m, h, take(m, h.data, NULL, NULL), "decoder.out_fc", c->out_channels, 3);
}

static tensor run_encoder(optvq_model *m, tensor x)
{
    tensor h = m->cfg.encoder.arch == ARCH_TAMING ? taming_encoder(m, x) : plain_encoder(m, x);
    if (m->cfg.use_connector)
        h = conv_same(m, h, take(m, h.data, x.data, NULL), "quant_conv", m->cfg.quantize.e_dim, 1);
    return h;
}

static tensor run_decoder(optvq_model *m, tensor z)
{
    if (m->cfg.use_connector)
        z = conv_same(m, z, take(m, z.data, NULL, NULL), "post_quant_conv", coder_hidden_dim(&m->cfg.decoder, 0), 1);
    return m->cfg.decoder.arch == ARCH_TAMING ? taming_decoder(m, z) : plain_decoder(m, z);
}

/* Sizes the pool and workspace for an input of this shape (planning pass). */
static optvq_status prepare(optvq_model *m, int64_t n, int64_t c, int64_t h, int64_t w, int decode_only,
                            int64_t lh, int64_t lw)
{
    m->planning = 1;
    m->status = OPTVQ_OK;
    m->need_act = 0;
    m->need_ws = 0;
    need(m, n, c, h, w);
    float *fake[POOL];
    for (int i = 0; i < POOL; i++) {
        fake[i] = (float *)(uintptr_t)(64 * (i + 1)); /* distinct tokens; never dereferenced */
        m->pool[i] = fake[i];
    }
    need(m, n, c, h, w);
    if (!decode_only) {
        tensor x = {NULL, n, c, h, w};
        tensor z = run_encoder(m, x);
        lh = z.h;
        lw = z.w;
    }
    need(m, n, m->cfg.quantize.e_dim, lh, lw);
    tensor q = {fake[0], n, m->cfg.quantize.e_dim, lh, lw};
    run_decoder(m, q);
    m->planning = 0;
    for (int i = 0; i < POOL; i++)
        m->pool[i] = m->bufs[i];
    if (m->status != OPTVQ_OK)
        return m->status;
    if (m->need_act > m->pool_floats) {
        for (int i = 0; i < POOL; i++) {
            free(m->bufs[i]);
            m->bufs[i] = m->pool[i] = NULL;
        }
        m->pool_floats = 0;
        for (int i = 0; i < POOL; i++) {
            m->bufs[i] = m->pool[i] = malloc(m->need_act * sizeof(float));
            if (!m->bufs[i])
                return optvq_fail(OPTVQ_ERR_NOMEM, "model: out of memory for activations (%zu MiB each)",
                                  m->need_act >> 18);
        }
        m->pool_floats = m->need_act;
    }
    size_t zf = (size_t)(n * m->cfg.quantize.e_dim * lh * lw);
    if (zf > m->z_floats) {
        free(m->z);
        m->z = malloc(zf * sizeof(float));
        if (!m->z) {
            m->z_floats = 0;
            return optvq_fail(OPTVQ_ERR_NOMEM, "model: out of memory for the latent");
        }
        m->z_floats = zf;
    }
    return nn_workspace_reserve(&m->ws, m->need_ws);
}

/* ---- creation, weights ---- */

static optvq_status build(optvq_model *m, uint64_t seed)
{
    nn_params_init(&m->params);
    const model_config *c = &m->cfg;
    if (c->encoder.arch == ARCH_TAMING)
        OPTVQ_TRY(add_taming(&m->params, &c->encoder, 1));
    else
        OPTVQ_TRY(add_plain(&m->params, &c->encoder, 1));
    if (c->decoder.arch == ARCH_TAMING)
        OPTVQ_TRY(add_taming(&m->params, &c->decoder, 0));
    else
        OPTVQ_TRY(add_plain(&m->params, &c->decoder, 0));
    if (c->use_connector) {
        OPTVQ_TRY(add_conv(&m->params, "quant_conv", c->quantize.e_dim, coder_hidden_dim(&c->encoder, 1), 1));
        OPTVQ_TRY(add_conv(&m->params, "post_quant_conv", coder_hidden_dim(&c->decoder, 0), c->quantize.e_dim, 1));
    }
    OPTVQ_TRY(nn_params_finalize(&m->params));
    OPTVQ_TRY(optvq_quantizer_create(&c->quantize, seed, &m->quant));
    model_init_params(m, seed);
    return OPTVQ_OK;
}

/* PyTorch's default initialisation: conv weights and biases
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5));
 * GroupNorm weight 1, bias 0. */
void model_init_params(optvq_model *m, uint64_t seed)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, seed ^ 0x5eedf00dull);
    for (int i = 0; i < m->params.count; i++) {
        nn_param *p = &m->params.items[i];
        const char *dot = strrchr(p->name, '.');
        int is_bias = dot && !strcmp(dot, ".bias");
        int is_norm = strstr(p->name, "norm") != NULL && !strstr(p->name, "nin_shortcut");
        if (is_norm) {
            for (int64_t j = 0; j < p->numel; j++)
                p->data[j] = is_bias ? 0.0f : 1.0f;
            continue;
        }
        /* fan_in from the matching weight */
        char wname[NN_PARAM_NAME_MAX];
        snprintf(wname, sizeof wname, "%.*s.weight", (int)(dot - p->name), p->name);
        nn_param *w = nn_params_find(&m->params, wname);
        /* weight.size(1) * k * k: (cin) for Conv2d, (cout) for ConvTranspose2d, as torch */
        int64_t fan_in = w && w->ndim == 4 ? w->shape[1] * w->shape[2] * w->shape[3] : 1;
        double bound = 1.0 / sqrt((double)fan_in);
        for (int64_t j = 0; j < p->numel; j++)
            p->data[j] = (float)((2.0 * optvq_rng_uniform(&rng) - 1.0) * bound);
    }
}

optvq_status optvq_model_create(const char *config_path, uint64_t seed, optvq_model **out)
{
    *out = NULL;
    optvq_model *m = calloc(1, sizeof *m);
    if (!m)
        return optvq_fail(OPTVQ_ERR_NOMEM, "model: out of memory");
    optvq_status st = model_config_load(config_path, &m->cfg);
    if (st == OPTVQ_OK)
        st = build(m, seed);
    if (st != OPTVQ_OK) {
        optvq_model_free(m);
        return st;
    }
    *out = m;
    return OPTVQ_OK;
}

optvq_status model_create_from_config(const model_config *cfg, uint64_t seed, optvq_model **out)
{
    *out = NULL;
    optvq_model *m = calloc(1, sizeof *m);
    if (!m)
        return optvq_fail(OPTVQ_ERR_NOMEM, "model: out of memory");
    m->cfg = *cfg;
    optvq_status st = build(m, seed);
    if (st != OPTVQ_OK) {
        optvq_model_free(m);
        return st;
    }
    *out = m;
    return OPTVQ_OK;
}

void optvq_model_free(optvq_model *m)
{
    if (!m)
        return;
    nn_params_free(&m->params);
    optvq_quantizer_free(m->quant);
    nn_workspace_free(&m->ws);
    for (int i = 0; i < POOL; i++)
        free(m->bufs[i]);
    free(m->z);
    free(m);
}

/* The expected tensors of a checkpoint: every registered parameter plus the
 * quantizer's. */
static optvq_status expected_list(optvq_model *m, optvq_expected_tensor **out, int64_t *n)
{
    int64_t count = m->params.count + 3;
    optvq_expected_tensor *e = calloc((size_t)count, sizeof *e);
    if (!e)
        return optvq_fail(OPTVQ_ERR_NOMEM, "model: out of memory");
    int64_t k = 0;
    for (int i = 0; i < m->params.count; i++) {
        nn_param *p = &m->params.items[i];
        e[k].name = p->name;
        e[k].ndim = p->ndim;
        memcpy(e[k].shape, p->shape, sizeof(int64_t) * (size_t)p->ndim);
        e[k].dest = p->data;
        k++;
    }
    const int64_t d = m->cfg.quantize.e_dim / m->cfg.quantize.num_head;
    static const char *const qnames[3] = {"quantize.embedding.weight", "quantize.proj.weight", "quantize.proj.bias"};
    for (int w = 0; w < 3; w++) {
        int64_t cnt;
        float *dest = optvq_quantizer_param(m->quant, (optvq_param)w, &cnt);
        if (!dest)
            continue;
        e[k].name = qnames[w];
        e[k].ndim = w == 2 ? 1 : 2;
        e[k].shape[0] = w == 0 ? m->cfg.quantize.n_e : d;
        e[k].shape[1] = d;
        e[k].dest = dest;
        k++;
    }
    *out = e;
    *n = k;
    return OPTVQ_OK;
}

optvq_status model_load_weights(optvq_model *m, const char *path)
{
    optvq_weights *w;
    OPTVQ_TRY(optvq_weights_load(path, &w));
    optvq_expected_tensor *e;
    int64_t n;
    optvq_status st = expected_list(m, &e, &n);
    if (st == OPTVQ_OK) {
        st = optvq_weights_load_into(w, e, n, path);
        free(e);
    }
    optvq_weights_free(w);
    return st;
}

optvq_status model_save_weights(optvq_model *m, const char *path)
{
    optvq_weights *w;
    OPTVQ_TRY(optvq_weights_create(&w));
    optvq_expected_tensor *e;
    int64_t n;
    optvq_status st = expected_list(m, &e, &n);
    for (int64_t i = 0; st == OPTVQ_OK && i < n; i++)
        st = optvq_weights_add(w, e[i].name, e[i].ndim, e[i].shape, e[i].dest);
    if (st == OPTVQ_OK)
        st = optvq_weights_save_safetensors(w, path);
    free(st == OPTVQ_OK || n ? e : NULL);
    optvq_weights_free(w);
    return st;
}

static int is_dir(const char *path)
{
    struct stat s;
    return stat(path, &s) == 0 && S_ISDIR(s.st_mode);
}

optvq_status optvq_model_load(const char *path, const char *weights, optvq_model **out)
{
    *out = NULL;
    char cfg_path[4096], w_path[4096];
    if (!weights) {
        if (!is_dir(path))
            return optvq_fail(OPTVQ_ERR_INVALID_ARG,
                              "%s: not a model folder (config.json + model.safetensors); give a config and weights",
                              path);
        snprintf(cfg_path, sizeof cfg_path, "%s/config.json", path);
        snprintf(w_path, sizeof w_path, "%s/model.safetensors", path);
    } else {
        snprintf(cfg_path, sizeof cfg_path, "%s", path);
        snprintf(w_path, sizeof w_path, "%s", weights);
    }
    optvq_model *m;
    OPTVQ_TRY(optvq_model_create(cfg_path, 0, &m));
    optvq_status st = model_load_weights(m, w_path);
    if (st != OPTVQ_OK) {
        optvq_model_free(m);
        return st;
    }
    *out = m;
    return OPTVQ_OK;
}

optvq_status optvq_model_save(optvq_model *m, const char *dir)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return optvq_fail(OPTVQ_ERR_IO, "%s: cannot create folder: %s", dir, strerror(errno));
    char p[4096];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    OPTVQ_TRY(model_save_weights(m, p));
    snprintf(p, sizeof p, "%s/config.json", dir);
    return model_config_save_json(&m->cfg, p);
}

/* ---- inference ---- */

void optvq_model_set_assign(optvq_model *m, optvq_assign assign)
{
    m->cfg.quantize.assign = assign;
    optvq_quantizer_set_assign(m->quant, assign);
}

optvq_quantizer *optvq_model_quantizer(optvq_model *m) { return m->quant; }

static optvq_status check_images(const optvq_model *m, int64_t batch, int64_t h, int64_t w)
{
    const int64_t f = coder_downsample(&m->cfg.encoder);
    if (batch < 1 || h < f || w < f || h % f || w % f)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "model: images must be (B >= 1, %lld, H, W) with H, W multiples of %lld; got (%lld, ., %lld, %lld)",
                          (long long)m->cfg.encoder.in_channels, (long long)f, (long long)batch, (long long)h,
                          (long long)w);
    if ((double)batch * (double)h * (double)w > 1e10)
        return optvq_fail(OPTVQ_ERR_NOMEM, "model: input of %lld x %lld x %lld is absurd", (long long)batch,
                          (long long)h, (long long)w);
    return OPTVQ_OK;
}

/* NaN/Inf pixels are refused: ReLU would silently turn some of them into 0. */
static optvq_status check_finite(const optvq_model *m, const float *images, int64_t batch, int64_t height,
                                 int64_t width)
{
    const int64_t n = batch * m->cfg.encoder.in_channels * height * width;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(images[i]))
            return optvq_fail(OPTVQ_ERR_NUMERIC, "model: image %lld holds NaN/Inf (element %lld)",
                              (long long)(i / (n / batch)), (long long)(i % (n / batch)));
    return OPTVQ_OK;
}

optvq_status optvq_model_encode(optvq_model *m, const float *images, int64_t batch, int64_t height, int64_t width,
                                int64_t *tokens, float *latent)
{
    OPTVQ_TRY(check_images(m, batch, height, width));
    OPTVQ_TRY(check_finite(m, images, batch, height, width));
    const int64_t f = coder_downsample(&m->cfg.encoder), lh = height / f, lw = width / f;
    OPTVQ_TRY(prepare(m, batch, m->cfg.encoder.in_channels, height, width, 0, lh, lw));
    tensor x = {(float *)images, batch, m->cfg.encoder.in_channels, height, width};
    tensor z = run_encoder(m, x);
    OPTVQ_TRY(m->status);
    float *xq = latent ? latent : take(m, z.data, NULL, NULL);
    return optvq_quantizer_forward(m->quant, z.data, batch, z.h, z.w, xq, tokens, NULL);
}

optvq_status optvq_model_decode(optvq_model *m, const int64_t *tokens, int64_t batch, int64_t token_h, int64_t token_w,
                                float *images)
{
    const int64_t f = coder_downsample(&m->cfg.encoder);
    OPTVQ_TRY(check_images(m, batch, token_h * f, token_w * f));
    OPTVQ_TRY(prepare(m, batch, m->cfg.encoder.in_channels, token_h * f, token_w * f, 1, token_h, token_w));
    OPTVQ_TRY(optvq_quantizer_decode(m->quant, tokens, batch, token_h, token_w, m->z));
    return model_decode_latent(m, m->z, batch, token_h, token_w, images);
}

optvq_status model_decode_latent(optvq_model *m, const float *latent, int64_t batch, int64_t lh, int64_t lw,
                                 float *images)
{
    tensor q = {(float *)latent, batch, m->cfg.quantize.e_dim, lh, lw};
    tensor y = run_decoder(m, q);
    OPTVQ_TRY(m->status);
    memcpy(images, y.data, (size_t)(y.n * y.c * y.h * y.w) * sizeof(float));
    return OPTVQ_OK;
}

optvq_status optvq_model_reconstruct(optvq_model *m, const float *images, int64_t batch, int64_t height,
                                     int64_t width, float *out, int64_t *tokens)
{
    OPTVQ_TRY(check_images(m, batch, height, width));
    OPTVQ_TRY(check_finite(m, images, batch, height, width));
    const int64_t f = coder_downsample(&m->cfg.encoder), lh = height / f, lw = width / f;
    OPTVQ_TRY(prepare(m, batch, m->cfg.encoder.in_channels, height, width, 0, lh, lw));
    tensor x = {(float *)images, batch, m->cfg.encoder.in_channels, height, width};
    tensor z = run_encoder(m, x);
    OPTVQ_TRY(m->status);
    OPTVQ_TRY(optvq_quantizer_forward(m->quant, z.data, batch, z.h, z.w, m->z, tokens, NULL));
    return model_decode_latent(m, m->z, batch, lh, lw, out);
}

optvq_status optvq_model_get_info(const optvq_model *m, optvq_model_info *info)
{
    memset(info, 0, sizeof *info);
    const model_config *c = &m->cfg;
    info->in_channels = c->encoder.in_channels;
    info->out_channels = c->decoder.out_channels;
    info->resolution = c->encoder.arch == ARCH_TAMING ? c->encoder.resolution : 32;
    info->downsample = coder_downsample(&c->encoder);
    info->e_dim = c->quantize.e_dim;
    info->num_head = c->quantize.num_head;
    info->n_e = c->quantize.n_e;
    info->code_dim = c->quantize.e_dim / c->quantize.num_head;
    info->assign = c->quantize.assign;
    info->encoder_arch = c->encoder.arch == ARCH_TAMING ? "taming VQGAN Encoder" : "plain CNN encoder";
    info->decoder_arch = c->decoder.arch == ARCH_TAMING ? "taming VQGAN Decoder" : "plain CNN decoder";
    for (int i = 0; i < m->params.count; i++) {
        const nn_param *p = &m->params.items[i];
        if (!strncmp(p->name, "encoder.", 8))
            info->params_encoder += p->numel;
        else if (!strncmp(p->name, "decoder.", 8))
            info->params_decoder += p->numel;
        else
            info->params_connectors += p->numel;
    }
    const int64_t d = info->code_dim;
    info->params_quantizer = c->quantize.n_e * d + (c->quantize.use_proj ? d * d + d : 0);
    info->params_total = info->params_encoder + info->params_decoder + info->params_connectors + info->params_quantizer;
    return OPTVQ_OK;
}

optvq_status model_encoder_forward(optvq_model *m, const float *images, int64_t batch, int64_t height,
                                   int64_t width, float *z)
{
    OPTVQ_TRY(check_images(m, batch, height, width));
    OPTVQ_TRY(check_finite(m, images, batch, height, width));
    const int64_t f = coder_downsample(&m->cfg.encoder), lh = height / f, lw = width / f;
    OPTVQ_TRY(prepare(m, batch, m->cfg.encoder.in_channels, height, width, 0, lh, lw));
    tensor x = {(float *)images, batch, m->cfg.encoder.in_channels, height, width};
    tensor y = run_encoder(m, x);
    OPTVQ_TRY(m->status);
    memcpy(z, y.data, (size_t)(y.n * y.c * y.h * y.w) * sizeof(float));
    return OPTVQ_OK;
}

nn_params *model_params(optvq_model *m) { return &m->params; }

const model_config *model_get_config(const optvq_model *m) { return &m->cfg; }

nn_workspace *model_workspace(optvq_model *m) { return &m->ws; }
