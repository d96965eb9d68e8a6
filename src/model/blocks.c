/* The model's blocks: registration, planning, forward and backward of each
 * kind, side by side (see blocks.h). */
#include "model/blocks.h"

#include "core/error.h"
#include "nn/conv_infer.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- registration ---- */

static optvq_status add(nn_params *p, int group, nn_role role, int64_t fan_in, int ndim, const int64_t *shape,
                        const char *fmt, ...) OPTVQ_PRINTF(7, 8);

static optvq_status add(nn_params *p, int group, nn_role role, int64_t fan_in, int ndim, const int64_t *shape,
                        const char *fmt, ...)
{
    char name[NN_PARAM_NAME_MAX + 32];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (len < 0 || len >= NN_PARAM_NAME_MAX)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "model: parameter name %.40s... is too long", name);
    int index;
    OPTVQ_TRY(nn_params_add_role(p, name, ndim, shape, role, fan_in, &index));
    p->items[index].group = group;
    return OPTVQ_OK;
}

/* Conv2d(cin, cout, k): weight (cout, cin, k, k), bias (cout); fan_in cin k k. */
static optvq_status add_conv(nn_params *p, int group, const char *prefix, const char *sub, int64_t cout, int64_t cin,
                             int64_t k)
{
    const int64_t w[4] = {cout, cin, k, k}, b[1] = {cout}, fan_in = cin * k * k;
    OPTVQ_TRY(add(p, group, NN_ROLE_CONV_WEIGHT, fan_in, 4, w, "%s%s.weight", prefix, sub));
    return add(p, group, NN_ROLE_BIAS, fan_in, 1, b, "%s%s.bias", prefix, sub);
}

static optvq_status add_norm(nn_params *p, int group, const char *prefix, const char *sub, int64_t c)
{
    const int64_t s[1] = {c};
    OPTVQ_TRY(add(p, group, NN_ROLE_NORM_WEIGHT, 0, 1, s, "%s%s.weight", prefix, sub));
    return add(p, group, NN_ROLE_NORM_BIAS, 0, 1, s, "%s%s.bias", prefix, sub);
}

optvq_status block_register(block *b, nn_params *p, int group)
{
    const char *n = b->name;
    const int first = p->count;
    switch (b->kind) {
    case BLOCK_CONV:
    case BLOCK_UPCONV:
        OPTVQ_TRY(add_conv(p, group, n, "", b->cout, b->cin, b->k));
        break;
    case BLOCK_CONVT: {
        /* ConvTranspose2d weight (cin, cout, k, k); torch's fan_in is weight.size(1) k k */
        const int64_t w[4] = {b->cin, b->cout, b->k, b->k}, bs[1] = {b->cout}, fan_in = b->cout * b->k * b->k;
        OPTVQ_TRY(add(p, group, NN_ROLE_CONVT_WEIGHT, fan_in, 4, w, "%s.weight", n));
        OPTVQ_TRY(add(p, group, NN_ROLE_BIAS, fan_in, 1, bs, "%s.bias", n));
        break;
    }
    case BLOCK_RELU:
        break;
    case BLOCK_RESBLOCK:
        OPTVQ_TRY(add_norm(p, group, n, ".norm1", b->cin));
        OPTVQ_TRY(add_conv(p, group, n, ".conv1", b->cout, b->cin, 3));
        OPTVQ_TRY(add_norm(p, group, n, ".norm2", b->cout));
        OPTVQ_TRY(add_conv(p, group, n, ".conv2", b->cout, b->cout, 3));
        if (b->cin != b->cout)
            OPTVQ_TRY(add_conv(p, group, n, ".nin_shortcut", b->cout, b->cin, 1));
        break;
    case BLOCK_ATTN:
        OPTVQ_TRY(add_norm(p, group, n, ".norm", b->cin));
        OPTVQ_TRY(add_conv(p, group, n, ".q", b->cin, b->cin, 1));
        OPTVQ_TRY(add_conv(p, group, n, ".k", b->cin, b->cin, 1));
        OPTVQ_TRY(add_conv(p, group, n, ".v", b->cin, b->cin, 1));
        OPTVQ_TRY(add_conv(p, group, n, ".proj_out", b->cin, b->cin, 1));
        break;
    case BLOCK_NORM_SWISH:
        OPTVQ_TRY(add_norm(p, group, n, "", b->cin));
        break;
    }
    b->first_param = first;
    b->n_params = p->count - first;
    return OPTVQ_OK;
}

/* Layer j of the block: its weight and bias are entries first + 2j, + 2j + 1. */
static block_layer layer(const block *b, const nn_params *p, int j)
{
    const nn_param *w = &p->items[b->first_param + 2 * j], *bias = &p->items[b->first_param + 2 * j + 1];
    return (block_layer){w->data, bias->data, w->grad, bias->grad};
}

void block_bind(block *b, const nn_params *p)
{
    switch (b->kind) {
    case BLOCK_CONV:
    case BLOCK_CONVT:
    case BLOCK_UPCONV:
    case BLOCK_NORM_SWISH:
        b->conv = layer(b, p, 0);
        break;
    case BLOCK_RELU:
        break;
    case BLOCK_RESBLOCK:
        b->norm1 = layer(b, p, 0);
        b->conv1 = layer(b, p, 1);
        b->norm2 = layer(b, p, 2);
        b->conv2 = layer(b, p, 3);
        b->nin = b->n_params > 8 ? layer(b, p, 4) : (block_layer){0};
        break;
    case BLOCK_ATTN: {
        block_layer l[5];
        for (int j = 0; j < 5; j++)
            l[j] = layer(b, p, j);
        b->ap = (nn_attn_params){l[0].w, l[0].b, l[1].w, l[1].b, l[2].w, l[2].b, l[3].w, l[3].b, l[4].w, l[4].b};
        b->ag = (nn_attn_grads){l[0].dw, l[0].db, l[1].dw, l[1].db, l[2].dw, l[2].db, l[3].dw, l[3].db, l[4].dw,
                                l[4].db};
        break;
    }
    }
}

/* ---- shapes and memory ---- */

static size_t numel(block_shape s) { return (size_t)(s.b * s.c * s.h * s.w); }

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

static optvq_status conv_desc(nn_conv2d_desc *d, block_shape s, int64_t cout, int64_t k, int64_t stride, int64_t pt,
                              int64_t pb, int64_t pl, int64_t pr)
{
    return nn_conv2d_init(d, s.b, s.c, s.h, s.w, cout, k, k, stride, pt, pb, pl, pr);
}

/* k x k, stride 1, "same" padding */
static optvq_status same_desc(nn_conv2d_desc *d, block_shape s, int64_t cout, int64_t k)
{
    return conv_desc(d, s, cout, k, 1, k / 2, k / 2, k / 2, k / 2);
}

static optvq_status block_conv_desc(nn_conv2d_desc *d, const block *b, block_shape s)
{
    return conv_desc(d, s, b->cout, b->k, b->stride, b->pt, b->pb, b->pl, b->pr);
}

static optvq_status block_convt_desc(nn_convt2d_desc *d, const block *b, block_shape s)
{
    return nn_convt2d_init(d, s.b, s.c, s.h, s.w, b->cout, b->k, b->k, b->stride, b->pt, 0);
}

static nn_attn_desc attn_desc(block_shape s)
{
    nn_attn_desc d = {s.b, s.c, s.h, s.w, BLOCK_GN_GROUPS, BLOCK_GN_EPS};
    return d;
}

static optvq_status check_groups(const block *b, int64_t c)
{
    if (c % BLOCK_GN_GROUPS)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "model: %s: %lld channels are not a multiple of %d groups", b->name,
                          (long long)c, BLOCK_GN_GROUPS);
    return OPTVQ_OK;
}

/* The inference workspace of convolution d at either precision. */
static void need_conv_infer(block_need *need, const nn_conv2d_desc *d)
{
    need->ws_infer = max_sz(need->ws_infer, nn_conv2d_workspace_infer(d, NN_PRECISION_FP32));
    need->ws_infer_bf16 = max_sz(need->ws_infer_bf16, nn_conv2d_workspace_infer(d, NN_PRECISION_BF16));
}

optvq_status block_plan(const block *b, block_shape s, block_shape *out, block_need *need)
{
    memset(need, 0, sizeof *need);
    if (b->kind != BLOCK_RELU && s.c != b->cin)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "model: %s takes %lld channels, got %lld", b->name,
                          (long long)b->cin, (long long)s.c);
    block_shape o = s;
    nn_conv2d_desc d;
    switch (b->kind) {
    case BLOCK_CONV:
        OPTVQ_TRY(block_conv_desc(&d, b, s));
        need->ws = nn_conv2d_workspace(&d);
        need_conv_infer(need, &d);
        o = (block_shape){s.b, b->cout, d.h_out, d.w_out};
        break;
    case BLOCK_CONVT: {
        nn_convt2d_desc dt;
        OPTVQ_TRY(block_convt_desc(&dt, b, s));
        need->ws = need->ws_infer = need->ws_infer_bf16 = nn_convt2d_workspace(&dt);
        o = (block_shape){s.b, b->cout, dt.h_out, dt.w_out};
        break;
    }
    case BLOCK_RELU:
        break;
    case BLOCK_RESBLOCK: {
        OPTVQ_TRY(check_groups(b, b->cin));
        OPTVQ_TRY(check_groups(b, b->cout));
        o.c = b->cout;
        OPTVQ_TRY(same_desc(&d, s, b->cout, 3)); /* conv1 */
        need->ws = nn_conv2d_workspace(&d);
        need_conv_infer(need, &d);
        OPTVQ_TRY(same_desc(&d, o, b->cout, 3)); /* conv2 */
        need->ws = max_sz(need->ws, nn_conv2d_workspace(&d));
        need_conv_infer(need, &d);
        if (b->cin != b->cout) {
            OPTVQ_TRY(same_desc(&d, s, b->cout, 1)); /* nin_shortcut */
            need->ws = max_sz(need->ws, nn_conv2d_workspace(&d));
            need_conv_infer(need, &d);
        }
        need->saved = numel(o);
        need->scratch = max_sz(numel(s), numel(o));
        need->scratch_infer = 1;
        need->scratch_train = 3;
        break;
    }
    case BLOCK_ATTN: {
        OPTVQ_TRY(check_groups(b, s.c));
        nn_attn_desc a = attn_desc(s);
        need->ws = need->ws_infer = need->ws_infer_bf16 = nn_attn_workspace(&a);
        need->saved = nn_attn_saved(&a);
        break;
    }
    case BLOCK_UPCONV: {
        block_shape u = {s.b, s.c, 2 * s.h, 2 * s.w};
        OPTVQ_TRY(same_desc(&d, u, b->cout, 3));
        need->ws = nn_conv2d_workspace(&d);
        need_conv_infer(need, &d);
        o = (block_shape){s.b, b->cout, d.h_out, d.w_out};
        need->scratch = numel(u);
        need->scratch_infer = 1;
        need->scratch_train = 2;
        break;
    }
    case BLOCK_NORM_SWISH:
        OPTVQ_TRY(check_groups(b, s.c));
        need->scratch = numel(s);
        need->scratch_train = 2;
        break;
    }
    if (o.h < 1 || o.w < 1)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "model: input too small for the model (at %s)", b->name);
    *out = o;
    return OPTVQ_OK;
}

/* ---- the taming blocks ---- */

/* y = swish(GroupNorm(x)) (b, c, hw); y may not alias x. */
static optvq_status norm_swish(float *y, const float *x, const block_layer *n, block_shape s)
{
    OPTVQ_TRY(nn_group_norm_forward(y, x, n->w, n->b, s.b, s.c, s.h * s.w, BLOCK_GN_GROUPS, BLOCK_GN_EPS));
    nn_swish_forward(y, y, (int64_t)numel(s));
    return OPTVQ_OK;
}

/* conv: the inference convolutions' cache, or NULL (training) */
static optvq_status conv_same(float *y, const float *x, const block_layer *l, block_shape s, int64_t cout, int64_t k,
                              nn_workspace *ws, nn_conv_cache *conv)
{
    nn_conv2d_desc d;
    OPTVQ_TRY(same_desc(&d, s, cout, k));
    return nn_conv2d_forward_infer(y, x, l->w, l->b, &d, ws, conv);
}

static optvq_status conv_same_backward(float *dx, const float *dy, const float *x, const block_layer *l,
                                       block_shape s, int64_t cout, int64_t k, nn_workspace *ws)
{
    nn_conv2d_desc d;
    OPTVQ_TRY(same_desc(&d, s, cout, k));
    return nn_conv2d_backward(dx, l->dw, l->db, dy, x, l->w, &d, ws);
}

static void zero(float *p, size_t n) { memset(p, 0, n * sizeof(float)); }

/* ResnetBlock: S = swish(norm1(x)); h1 = conv1(S); S = swish(norm2(h1));
 * y = conv2(S) + (nin_shortcut(x) or x). h1 goes to `saved` in training and
 * to y in inference, which conv2 overwrites once h1 is dead; the shortcut
 * reuses S once conv2 has read it. One scratch buffer, so inference holds
 * three activations at a time (x, y, S). */
static optvq_status resblock_forward(const block *b, float *y, const float *x, block_shape s, float *saved,
                                     float *const *scratch, nn_workspace *ws, nn_conv_cache *conv)
{
    block_shape so = {s.b, b->cout, s.h, s.w};
    float *S = scratch[0], *h1 = saved ? saved : y;
    OPTVQ_TRY(norm_swish(S, x, &b->norm1, s));
    OPTVQ_TRY(conv_same(h1, S, &b->conv1, s, b->cout, 3, ws, conv));
    OPTVQ_TRY(norm_swish(S, h1, &b->norm2, so));
    OPTVQ_TRY(conv_same(y, S, &b->conv2, so, b->cout, 3, ws, conv));
    if (b->nin.w) {
        OPTVQ_TRY(conv_same(S, x, &b->nin, s, b->cout, 1, ws, conv));
        nn_add_forward(y, y, S, (int64_t)numel(so));
    } else {
        nn_add_forward(y, y, x, (int64_t)numel(so));
    }
    return OPTVQ_OK;
}

/* ResnetBlock backward; norm + swish recomputed from x and the saved h1.
 * Scratch N, S, D. */
static optvq_status resblock_backward(const block *b, float *dx, float *dy, const float *x, block_shape s,
                                      const float *h1, float *const *scratch, nn_workspace *ws)
{
    block_shape so = {s.b, b->cout, s.h, s.w};
    const int64_t hw = s.h * s.w;
    float *N = scratch[0], *S = scratch[1], *D = scratch[2];
    /* shortcut */
    if (b->nin.w)
        OPTVQ_TRY(conv_same_backward(dx, dy, x, &b->nin, s, b->cout, 1, ws));
    else if (dx)
        nn_add_backward(dx, NULL, dy, (int64_t)numel(so));
    /* conv2: D = d S2 (b, cout, h, w) */
    OPTVQ_TRY(nn_group_norm_forward(N, h1, b->norm2.w, b->norm2.b, s.b, b->cout, hw, BLOCK_GN_GROUPS, BLOCK_GN_EPS));
    nn_swish_forward(S, N, (int64_t)numel(so));
    zero(D, numel(so));
    OPTVQ_TRY(conv_same_backward(D, dy, S, &b->conv2, so, b->cout, 3, ws));
    /* swish 2: dy = d N2; norm2: D = d h1 */
    zero(dy, numel(so));
    nn_swish_backward(dy, D, N, (int64_t)numel(so));
    zero(D, numel(so));
    OPTVQ_TRY(nn_group_norm_backward(D, b->norm2.dw, b->norm2.db, dy, h1, b->norm2.w, s.b, b->cout, hw,
                                     BLOCK_GN_GROUPS, BLOCK_GN_EPS));
    /* conv1: dy = d S1 (b, cin, h, w) */
    OPTVQ_TRY(nn_group_norm_forward(N, x, b->norm1.w, b->norm1.b, s.b, s.c, hw, BLOCK_GN_GROUPS, BLOCK_GN_EPS));
    nn_swish_forward(S, N, (int64_t)numel(s));
    zero(dy, numel(s));
    OPTVQ_TRY(conv_same_backward(dy, D, S, &b->conv1, s, b->cout, 3, ws));
    /* swish 1: D = d N1; norm1: dx += */
    zero(D, numel(s));
    nn_swish_backward(D, dy, N, (int64_t)numel(s));
    return nn_group_norm_backward(dx, b->norm1.dw, b->norm1.db, D, x, b->norm1.w, s.b, s.c, hw, BLOCK_GN_GROUPS,
                                  BLOCK_GN_EPS);
}

/* Upsample: U = nearest x2 of x (scratch[0]), y = conv3x3(U). */
static optvq_status upconv_forward(const block *b, float *y, const float *x, block_shape s, float *U,
                                   nn_workspace *ws, nn_conv_cache *conv)
{
    nn_upsample2x_forward(U, x, s.b * s.c, s.h, s.w);
    block_shape su = {s.b, s.c, 2 * s.h, 2 * s.w};
    return conv_same(y, U, &b->conv, su, b->cout, 3, ws, conv);
}

static optvq_status upconv_backward(const block *b, float *dx, const float *dy, const float *x, block_shape s,
                                    float *U, float *dU, nn_workspace *ws)
{
    block_shape su = {s.b, s.c, 2 * s.h, 2 * s.w};
    nn_upsample2x_forward(U, x, s.b * s.c, s.h, s.w);
    if (dx)
        zero(dU, numel(su));
    OPTVQ_TRY(conv_same_backward(dx ? dU : NULL, dy, U, &b->conv, su, b->cout, 3, ws));
    if (dx)
        nn_upsample2x_backward(dx, dU, s.b * s.c, s.h, s.w);
    return OPTVQ_OK;
}

/* y = swish(GroupNorm(x)): backward recomputes N = GroupNorm(x). */
static optvq_status norm_swish_backward(const block *b, float *dx, const float *dy, const float *x, block_shape s,
                                        float *N, float *D)
{
    const int64_t hw = s.h * s.w;
    OPTVQ_TRY(nn_group_norm_forward(N, x, b->conv.w, b->conv.b, s.b, s.c, hw, BLOCK_GN_GROUPS, BLOCK_GN_EPS));
    zero(D, numel(s));
    nn_swish_backward(D, dy, N, (int64_t)numel(s));
    return nn_group_norm_backward(dx, b->conv.dw, b->conv.db, D, x, b->conv.w, s.b, s.c, hw, BLOCK_GN_GROUPS,
                                  BLOCK_GN_EPS);
}

/* ---- dispatch ---- */

optvq_status block_forward(const block *b, float *y, const float *x, block_shape s, float *saved,
                           float *const *scratch, nn_workspace *ws, nn_conv_cache *conv)
{
    nn_conv2d_desc d;
    switch (b->kind) {
    case BLOCK_CONV:
        OPTVQ_TRY(block_conv_desc(&d, b, s));
        return nn_conv2d_forward_infer(y, x, b->conv.w, b->conv.b, &d, ws, conv);
    case BLOCK_CONVT: {
        nn_convt2d_desc dt;
        OPTVQ_TRY(block_convt_desc(&dt, b, s));
        return nn_convt2d_forward(y, x, b->conv.w, b->conv.b, &dt, ws);
    }
    case BLOCK_RELU:
        nn_relu_forward(y, x, (int64_t)numel(s));
        return OPTVQ_OK;
    case BLOCK_RESBLOCK:
        return resblock_forward(b, y, x, s, saved, scratch, ws, conv);
    case BLOCK_ATTN: {
        nn_attn_desc a = attn_desc(s);
        return nn_attn_forward(y, saved, x, &b->ap, &a, ws);
    }
    case BLOCK_UPCONV:
        return upconv_forward(b, y, x, s, scratch[0], ws, conv);
    case BLOCK_NORM_SWISH:
        return norm_swish(y, x, &b->conv, s);
    }
    return optvq_fail(OPTVQ_ERR_STATE, "model: %s: unknown block kind %d", b->name, (int)b->kind);
}

optvq_status block_backward(const block *b, float *dx, float *dy, const float *x, block_shape s, const float *saved,
                            float *const *scratch, nn_workspace *ws)
{
    nn_conv2d_desc d;
    switch (b->kind) {
    case BLOCK_CONV:
        OPTVQ_TRY(block_conv_desc(&d, b, s));
        return nn_conv2d_backward(dx, b->conv.dw, b->conv.db, dy, x, b->conv.w, &d, ws);
    case BLOCK_CONVT: {
        nn_convt2d_desc dt;
        OPTVQ_TRY(block_convt_desc(&dt, b, s));
        return nn_convt2d_backward(dx, b->conv.dw, b->conv.db, dy, x, b->conv.w, &dt, ws);
    }
    case BLOCK_RELU:
        if (dx)
            nn_relu_backward(dx, dy, x, (int64_t)numel(s));
        return OPTVQ_OK;
    case BLOCK_RESBLOCK:
        return resblock_backward(b, dx, dy, x, s, saved, scratch, ws);
    case BLOCK_ATTN: {
        nn_attn_desc a = attn_desc(s);
        return nn_attn_backward(dx, &b->ag, dy, saved, x, &b->ap, &a, ws);
    }
    case BLOCK_UPCONV:
        return upconv_backward(b, dx, dy, x, s, scratch[0], scratch[1], ws);
    case BLOCK_NORM_SWISH:
        return norm_swish_backward(b, dx, dy, x, s, scratch[0], scratch[1]);
    }
    return optvq_fail(OPTVQ_ERR_STATE, "model: %s: unknown block kind %d", b->name, (int)b->kind);
}
