/* PatchGAN discriminator (NLayerDiscriminator, BatchNorm variant) and GAN losses;
 * see discriminator.h for the architecture, names and the training-mode semantics.
 *
 * Memory: one arena (64-byte aligned) holds, for the current input shape,
 *   xcopy  (B, C, H, W)          the input, for conv 0's weight gradient
 *   z[i]   (B, c_i, h_i, w_i)    conv output = BatchNorm input (BN layers only)
 *   a[i]   (B, c_i, h_i, w_i)    stage output after BatchNorm and LeakyReLU (in place)
 *   logits (B, 1, h', w')
 *   mean[i], rstd[i] (c_i)       batch statistics saved for backward
 *   g0, g1 (max stage size)      ping-pong gradient buffers for backward
 * sized by a planning pass; the conv workspace is one nn_workspace. Both are reused
 * while the input fits and grow (never shrink) when it does not.
 * LeakyReLU runs in place on a[i]; its backward tests the sign of the output, which is
 * the sign of the input for slope 0.2 (what torch's inplace=True LeakyReLU does too). */
#include "model/discriminator.h"

#include "core/bigalloc.h"
#include "core/error.h"
#include "core/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DISC_MAX_LAYERS 8
#define DISC_MAX_CONVS (DISC_MAX_LAYERS + 2)
#define ALIGN_FLOATS 16

typedef struct disc_conv {
    int64_t cin, cout, stride;
    int state_index;   /* main.<state_index> */
    int w, b;          /* parameter indices; b = -1 without bias */
    int bn;            /* has BatchNorm + LeakyReLU after it (else: LeakyReLU only, or last) */
    int bn_w, bn_b;    /* parameter indices of the BatchNorm */
    int bn_slot;       /* index into running stats / num_batches_tracked */
    int64_t bn_off;    /* offset of running_mean in `stats` (running_var follows, cout later) */
} disc_conv;

struct discriminator {
    disc_config cfg;
    nn_params params;
    int nconv;
    disc_conv conv[DISC_MAX_CONVS];
    int nbn;
    float *stats;     /* running_mean, running_var per BN layer */
    int64_t *tracked; /* num_batches_tracked per BN layer */
    char (*buf_names)[NN_PARAM_NAME_MAX];
    /* plan for the current input shape */
    int planned;
    int64_t batch, height, width;
    nn_conv2d_desc desc[DISC_MAX_CONVS];
    int64_t act_n[DISC_MAX_CONVS]; /* floats of conv i's output */
    float *arena;
    size_t arena_cap;
    float *xcopy, *z[DISC_MAX_CONVS], *a[DISC_MAX_CONVS], *logits, *mean[DISC_MAX_CONVS],
        *rstd[DISC_MAX_CONVS], *g0, *g1;
    int64_t gmax;
    nn_workspace ws;
    int have_forward;
    const struct optvq_comm *comm; /* SyncBatchNorm over these ranks; NULL: BatchNorm */
};

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static optvq_status add_param(discriminator *d, int state_index, const char *what, int ndim,
                              const int64_t *shape, nn_role role, int64_t fan_in, int *index)
{
    char name[NN_PARAM_NAME_MAX];
    snprintf(name, sizeof name, DISC_PREFIX "main.%d.%s", state_index, what);
    return nn_params_add_role(&d->params, name, ndim, shape, role, fan_in, index);
}

static void init_params(discriminator *d, uint64_t seed)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, seed);
    for (int i = 0; i < d->nconv; i++) {
        const disc_conv *c = &d->conv[i];
        nn_param *w = &d->params.items[c->w];
        for (int64_t j = 0; j < w->numel; j++)
            w->data[j] = (float)(0.02 * optvq_rng_normal(&rng));
        if (c->b >= 0) {
            nn_param *b = &d->params.items[c->b];
            double bound = 1.0 / sqrt((double)(c->cin * 16));
            for (int64_t j = 0; j < b->numel; j++)
                b->data[j] = (float)((2.0 * optvq_rng_uniform(&rng) - 1.0) * bound);
        }
        if (c->bn) {
            nn_param *g = &d->params.items[c->bn_w], *bt = &d->params.items[c->bn_b];
            for (int64_t j = 0; j < g->numel; j++)
                g->data[j] = (float)(1.0 + 0.02 * optvq_rng_normal(&rng));
            for (int64_t j = 0; j < bt->numel; j++)
                bt->data[j] = 0.0f;
            float *rm = d->stats + c->bn_off, *rv = rm + c->cout;
            for (int64_t j = 0; j < c->cout; j++) {
                rm[j] = 0.0f;
                rv[j] = 1.0f;
            }
            d->tracked[c->bn_slot] = 0;
        }
    }
}

optvq_status disc_create(const disc_config *c, uint64_t seed, discriminator **out)
{
    if (!out)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "disc_create: NULL argument");
    *out = NULL;
    if (!c)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "disc_create: NULL config");
    if (c->in_channels < 1 || c->in_channels > 4096 || c->ndf < 1 || c->ndf > 4096 ||
        c->n_layers < 1 || c->n_layers > DISC_MAX_LAYERS)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG,
                          "disc_create: bad config in_channels=%lld ndf=%lld n_layers=%lld "
                          "(need in_channels, ndf in 1..4096, n_layers in 1..%d)",
                          (long long)c->in_channels, (long long)c->ndf, (long long)c->n_layers,
                          DISC_MAX_LAYERS);
    discriminator *d = calloc(1, sizeof *d);
    if (!d)
        return optvq_fail(OPTVQ_ERR_NOMEM, "disc_create: out of memory");
    d->cfg = *c;
    nn_params_init(&d->params);
    optvq_status st = OPTVQ_OK;
    const int64_t nl = c->n_layers;
    d->nconv = (int)nl + 2;
    int64_t stats_floats = 0;
    /* conv 0 */
    d->conv[0] = (disc_conv){.cin = c->in_channels, .cout = c->ndf, .stride = 2, .state_index = 0};
    int64_t mult = 1;
    for (int64_t n = 1; n <= nl; n++) {
        int64_t prev = mult;
        mult = min64((int64_t)1 << n, 8);
        d->conv[n] = (disc_conv){.cin = c->ndf * prev, .cout = c->ndf * mult,
                                 .stride = n < nl ? 2 : 1, .state_index = (int)(3 * n - 1),
                                 .bn = 1, .bn_slot = d->nbn++, .bn_off = stats_floats};
        stats_floats += 2 * c->ndf * mult;
    }
    d->conv[nl + 1] = (disc_conv){.cin = c->ndf * mult, .cout = 1, .stride = 1,
                                  .state_index = (int)(3 * nl + 2)};
    for (int i = 0; i < d->nconv && st == OPTVQ_OK; i++) {
        disc_conv *cv = &d->conv[i];
        int64_t wshape[4] = {cv->cout, cv->cin, 4, 4}, cshape[1] = {cv->cout};
        int has_bias = (i == 0 || i == d->nconv - 1);
        cv->b = -1;
        st = add_param(d, cv->state_index, "weight", 4, wshape, NN_ROLE_CONV_WEIGHT, cv->cin * 16, &cv->w);
        if (st == OPTVQ_OK && has_bias)
            st = add_param(d, cv->state_index, "bias", 1, cshape, NN_ROLE_BIAS, cv->cin * 16, &cv->b);
        if (st == OPTVQ_OK && cv->bn) {
            st = add_param(d, cv->state_index + 1, "weight", 1, cshape, NN_ROLE_NORM_WEIGHT, 0, &cv->bn_w);
            if (st == OPTVQ_OK)
                st = add_param(d, cv->state_index + 1, "bias", 1, cshape, NN_ROLE_NORM_BIAS, 0, &cv->bn_b);
        }
    }
    if (st == OPTVQ_OK)
        st = nn_params_finalize(&d->params);
    if (st == OPTVQ_OK) {
        d->stats = malloc(sizeof(float) * (size_t)stats_floats);
        d->tracked = calloc((size_t)d->nbn, sizeof(int64_t));
        d->buf_names = calloc((size_t)(3 * d->nbn), sizeof *d->buf_names);
        if (!d->stats || !d->tracked || !d->buf_names)
            st = optvq_fail(OPTVQ_ERR_NOMEM, "disc_create: out of memory");
    }
    if (st != OPTVQ_OK) {
        disc_free(d);
        return st;
    }
    static const char *const suffix[3] = {"running_mean", "running_var", "num_batches_tracked"};
    for (int i = 0; i < d->nconv; i++)
        if (d->conv[i].bn)
            for (int k = 0; k < 3; k++)
                snprintf(d->buf_names[3 * d->conv[i].bn_slot + k], NN_PARAM_NAME_MAX,
                         DISC_PREFIX "main.%d.%s", d->conv[i].state_index + 1, suffix[k]);
    init_params(d, seed);
    *out = d;
    return OPTVQ_OK;
}

void disc_set_comm(discriminator *d, const struct optvq_comm *comm)
{
    if (d)
        d->comm = comm;
}

void disc_free(discriminator *d)
{
    if (!d)
        return;
    nn_params_free(&d->params);
    nn_workspace_free(&d->ws);
    free(d->arena);
    free(d->stats);
    free(d->tracked);
    free(d->buf_names);
    free(d);
}

const disc_config *disc_get_config(const discriminator *d) { return d ? &d->cfg : NULL; }

nn_params *disc_params(discriminator *d) { return d ? &d->params : NULL; }

int disc_buffer_count(const discriminator *d) { return d ? 3 * d->nbn : 0; }

const char *disc_buffer_name(const discriminator *d, int i)
{
    if (!d || i < 0 || i >= 3 * d->nbn)
        return NULL;
    return d->buf_names[i];
}

void *disc_buffer(discriminator *d, int i, optvq_dtype *dtype, int64_t *numel)
{
    if (!d || i < 0 || i >= 3 * d->nbn)
        return NULL;
    const disc_conv *c = NULL;
    for (int k = 0; k < d->nconv; k++)
        if (d->conv[k].bn && d->conv[k].bn_slot == i / 3)
            c = &d->conv[k];
    if (!c)
        return NULL;
    if (i % 3 == 2) {
        if (dtype)
            *dtype = OPTVQ_I64;
        if (numel)
            *numel = 1;
        return &d->tracked[c->bn_slot];
    }
    if (dtype)
        *dtype = OPTVQ_F32;
    if (numel)
        *numel = c->cout;
    return d->stats + c->bn_off + (i % 3) * c->cout;
}

/* ---- planning ---- */

/* Output sizes of every conv for an (h, w) input; an error naming the layer when one
 * would see less than 2x2 (4x4 kernel, padding 1: no output). */
static optvq_status conv_sizes(const discriminator *d, int64_t h, int64_t w, int64_t *hs,
                               int64_t *ws)
{
    if (h < 1 || w < 1)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "discriminator: bad input size %lldx%lld",
                          (long long)h, (long long)w);
    const int64_t h0 = h, w0 = w;
    for (int i = 0; i < d->nconv; i++) {
        if (h < 2 || w < 2)
            return optvq_fail(OPTVQ_ERR_INVALID_ARG,
                              "discriminator: a %lldx%lld input is too small: layer main.%d "
                              "(4x4 conv, padding 1) would get a %lldx%lld map and give no "
                              "output",
                              (long long)h0, (long long)w0, d->conv[i].state_index, (long long)h,
                              (long long)w);
        const int64_t s = d->conv[i].stride;
        h = (h + 2 - 4) / s + 1;
        w = (w + 2 - 4) / s + 1;
        hs[i] = h;
        ws[i] = w;
    }
    return OPTVQ_OK;
}

optvq_status disc_output_size(const discriminator *d, int64_t height, int64_t width,
                              int64_t *h_out, int64_t *w_out)
{
    if (!d)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "disc_output_size: NULL discriminator");
    int64_t hs[DISC_MAX_CONVS], wsz[DISC_MAX_CONVS];
    OPTVQ_TRY(conv_sizes(d, height, width, hs, wsz));
    if (h_out)
        *h_out = hs[d->nconv - 1];
    if (w_out)
        *w_out = wsz[d->nconv - 1];
    return OPTVQ_OK;
}

static size_t round_up(int64_t n)
{
    return ((size_t)n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
}

static optvq_status plan(discriminator *d, int64_t batch, int64_t height, int64_t width)
{
    if (d->planned && d->batch == batch && d->height == height && d->width == width)
        return OPTVQ_OK;
    d->planned = 0;
    d->have_forward = 0;
    const int64_t C = d->cfg.in_channels;
    if (batch < 1 || batch > ((int64_t)1 << 24))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "disc_forward: bad batch size %lld",
                          (long long)batch);
    if (height > ((int64_t)1 << 20) || width > ((int64_t)1 << 20))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "disc_forward: input %lldx%lld too large",
                          (long long)height, (long long)width);
    int64_t hs[DISC_MAX_CONVS], wsz[DISC_MAX_CONVS];
    OPTVQ_TRY(conv_sizes(d, height, width, hs, wsz));
    size_t need = round_up(batch * C * height * width), ws_need = 0;
    int64_t gmax = 0, h = height, w = width, cin = C;
    for (int i = 0; i < d->nconv; i++) {
        const disc_conv *c = &d->conv[i];
        OPTVQ_TRY(nn_conv2d_init(&d->desc[i], batch, cin, h, w, c->cout, 4, 4, c->stride, 1, 1,
                                 1, 1));
        if (d->desc[i].h_out != hs[i] || d->desc[i].w_out != wsz[i])
            return optvq_fail(OPTVQ_ERR_STATE, "discriminator: size plan disagrees at main.%d",
                              c->state_index);
        const int64_t hw = hs[i] * wsz[i], n = batch * c->cout * hw;
        if (c->bn && batch * hw < 2)
            return optvq_fail(OPTVQ_ERR_INVALID_ARG,
                              "discriminator: BatchNorm main.%d needs more than one value per "
                              "channel in training mode (batch %lld x %lldx%lld map); use a "
                              "larger batch or image",
                              c->state_index + 1, (long long)batch, (long long)hs[i],
                              (long long)wsz[i]);
        d->act_n[i] = n;
        need += round_up(n); /* a[i] or logits */
        if (c->bn)
            need += round_up(n) + 2 * round_up(c->cout);
        if (n > gmax)
            gmax = n;
        size_t wsi = nn_conv2d_workspace(&d->desc[i]);
        if (wsi > ws_need)
            ws_need = wsi;
        cin = c->cout;
        h = hs[i];
        w = wsz[i];
    }
    need += 2 * round_up(gmax);
    if (need > d->arena_cap) {
        free(d->arena);
        d->arena_cap = 0;
        d->arena = optvq_big_alloc(need * sizeof(float));
        if (!d->arena)
            return optvq_fail(OPTVQ_ERR_NOMEM, "disc_forward: cannot allocate %zu MB of activations",
                              need * sizeof(float) >> 20);
        d->arena_cap = need;
    }
    OPTVQ_TRY(nn_workspace_reserve(&d->ws, ws_need));
    float *p = d->arena;
    d->xcopy = p;
    p += round_up(batch * C * height * width);
    for (int i = 0; i < d->nconv; i++) {
        const disc_conv *c = &d->conv[i];
        d->z[i] = d->a[i] = d->mean[i] = d->rstd[i] = NULL;
        if (i == d->nconv - 1) {
            d->logits = p;
            p += round_up(d->act_n[i]);
            continue;
        }
        d->a[i] = p;
        p += round_up(d->act_n[i]);
        if (c->bn) {
            d->z[i] = p;
            p += round_up(d->act_n[i]);
            d->mean[i] = p;
            p += round_up(c->cout);
            d->rstd[i] = p;
            p += round_up(c->cout);
        }
    }
    d->g0 = p;
    p += round_up(gmax);
    d->g1 = p;
    d->gmax = gmax;
    d->batch = batch;
    d->height = height;
    d->width = width;
    d->planned = 1;
    return OPTVQ_OK;
}

/* ---- forward / backward ---- */

static float *pdata(discriminator *d, int idx) { return idx >= 0 ? d->params.items[idx].data : NULL; }
static float *pgrad(discriminator *d, int idx) { return idx >= 0 ? d->params.items[idx].grad : NULL; }

optvq_status disc_forward(discriminator *d, const float *x, int64_t batch, int64_t height,
                          int64_t width, const float **logits, int64_t *logit_count)
{
    if (!d || !x)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "disc_forward: NULL argument");
    OPTVQ_TRY(plan(d, batch, height, width));
    d->have_forward = 0;
    /* the thread count may have changed since planning */
    size_t ws_need = 0;
    for (int i = 0; i < d->nconv; i++) {
        size_t wsi = nn_conv2d_workspace(&d->desc[i]);
        if (wsi > ws_need)
            ws_need = wsi;
    }
    OPTVQ_TRY(nn_workspace_reserve(&d->ws, ws_need));
    memcpy(d->xcopy, x, sizeof(float) * (size_t)(batch * d->cfg.in_channels * height * width));
    const float *in = d->xcopy;
    for (int i = 0; i < d->nconv; i++) {
        const disc_conv *c = &d->conv[i];
        const int last = i == d->nconv - 1;
        float *out = last ? d->logits : c->bn ? d->z[i] : d->a[i];
        OPTVQ_TRY(nn_conv2d_forward(out, in, pdata(d, c->w), pdata(d, c->b), &d->desc[i], &d->ws));
        if (last)
            break;
        const int64_t hw = d->desc[i].h_out * d->desc[i].w_out;
        if (c->bn) {
            float *rm = d->stats + c->bn_off, *rv = rm + c->cout;
            OPTVQ_TRY(nn_batchnorm_forward_sync(d->a[i], d->mean[i], d->rstd[i], rm, rv, d->z[i], pdata(d, c->bn_w),
                                                pdata(d, c->bn_b), batch, c->cout, hw, DISC_BN_EPS,
                                                DISC_BN_MOMENTUM, d->comm));
            d->tracked[c->bn_slot]++;
        }
        nn_leaky_relu_forward(d->a[i], d->a[i], d->act_n[i], DISC_LEAKY_SLOPE);
        in = d->a[i];
    }
    d->have_forward = 1;
    if (logits)
        *logits = d->logits;
    if (logit_count)
        *logit_count = d->act_n[d->nconv - 1];
    return OPTVQ_OK;
}

static void zero(float *p, int64_t n) { memset(p, 0, sizeof(float) * (size_t)n); }

optvq_status disc_backward(discriminator *d, const float *d_logits, float *dx)
{
    if (!d || !d_logits)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "disc_backward: NULL argument");
    if (!d->have_forward)
        return optvq_fail(OPTVQ_ERR_STATE, "disc_backward: no forward pass to differentiate");
    const int L = d->nconv - 1;
    float *cur = d->g0, *oth = d->g1, *t;
    /* last conv: d a[L-1] */
    zero(cur, d->act_n[L - 1]);
    OPTVQ_TRY(nn_conv2d_backward(cur, pgrad(d, d->conv[L].w), pgrad(d, d->conv[L].b), d_logits,
                                 d->a[L - 1], pdata(d, d->conv[L].w), &d->desc[L], &d->ws));
    for (int i = L - 1; i >= 0; i--) {
        const disc_conv *c = &d->conv[i];
        const int64_t n = d->act_n[i], hw = d->desc[i].h_out * d->desc[i].w_out;
        /* cur = d a[i] -> d(pre-activation) */
        zero(oth, n);
        nn_leaky_relu_backward(oth, cur, d->a[i], n, DISC_LEAKY_SLOPE);
        t = cur, cur = oth, oth = t;
        if (c->bn) {
            zero(oth, n);
            OPTVQ_TRY(nn_batchnorm_backward_sync(oth, pgrad(d, c->bn_w), pgrad(d, c->bn_b), cur, d->z[i], d->mean[i],
                                                 d->rstd[i], pdata(d, c->bn_w), d->batch, c->cout, hw, d->comm));
            t = cur, cur = oth, oth = t;
        }
        /* cur = d(conv i output) */
        if (i > 0) {
            zero(oth, d->act_n[i - 1]);
            OPTVQ_TRY(nn_conv2d_backward(oth, pgrad(d, c->w), pgrad(d, c->b), cur, d->a[i - 1],
                                         pdata(d, c->w), &d->desc[i], &d->ws));
            t = cur, cur = oth, oth = t;
        } else {
            if (dx)
                zero(dx, d->batch * d->cfg.in_channels * d->height * d->width);
            OPTVQ_TRY(nn_conv2d_backward(dx, pgrad(d, c->w), pgrad(d, c->b), cur, d->xcopy,
                                         pdata(d, c->w), &d->desc[i], &d->ws));
        }
    }
    return OPTVQ_OK;
}

/* ---- losses ---- */

/* torch.nn.functional.softplus (beta 1, threshold 20) and its derivative */
static double softplus(double x) { return x > 20.0 ? x : log1p(exp(x)); }
static double softplus_grad(double x) { return x > 20.0 ? 1.0 : 1.0 / (1.0 + exp(-x)); }

double disc_d_loss_term(disc_loss_kind kind, int is_real, const float *logits, int64_t count,
                        float scale, float *grad)
{
    if (!logits || count <= 0)
        return 0.0;
    const double sign = is_real ? -1.0 : 1.0; /* the term is f(sign * l) */
    const double gs = 0.5 * (double)scale / (double)count;
    double s = 0;
    for (int64_t i = 0; i < count; i++) {
        const double v = sign * logits[i];
        double f, df;
        if (kind == DISC_LOSS_VANILLA) {
            f = softplus(v);
            df = softplus_grad(v);
        } else {
            f = 1.0 + v > 0.0 ? 1.0 + v : 0.0;
            df = 1.0 + v > 0.0 ? 1.0 : 0.0; /* torch relu: zero gradient at 0 */
        }
        s += f;
        if (grad)
            grad[i] = (float)(gs * sign * df);
    }
    return 0.5 * s / (double)count;
}

double disc_d_loss(disc_loss_kind kind, const float *real, int64_t n_real, const float *fake,
                   int64_t n_fake, float scale, float *grad_real, float *grad_fake)
{
    return disc_d_loss_term(kind, 1, real, n_real, scale, grad_real) +
           disc_d_loss_term(kind, 0, fake, n_fake, scale, grad_fake);
}

double disc_g_loss(const float *fake, int64_t count, float scale, float *grad)
{
    if (!fake || count <= 0)
        return 0.0;
    double s = 0;
    const float g = (float)(-(double)scale / (double)count);
    for (int64_t i = 0; i < count; i++) {
        s += fake[i];
        if (grad)
            grad[i] = g;
    }
    return -s / (double)count;
}
