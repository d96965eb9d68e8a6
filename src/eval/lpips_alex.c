/* LPIPS-Alex (v0.1) forward; the definition and the weight files are in
 * lpips_alex.h. Same structure as the VGG LPIPS of lpips.c (planned buffers,
 * per-tile double sums, fixed summation order), without the backward pass.
 * Both images of every pair go through the trunk as one batch of 2B (x0's
 * first), so each layer is one convolution call. */
#include "eval/lpips_alex.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bigalloc.h"
#include "core/error.h"
#include "core/parallel.h"
#include "eval/net_load.h"

#define N_LAYER 5
#define EPS_NORM 1e-10
#define POS_TILE 64

static const int kIndex[N_LAYER] = {0, 3, 6, 8, 10};  /* features.N */
static const int kOut[N_LAYER] = {64, 192, 384, 256, 256};
static const int kKernel[N_LAYER] = {11, 5, 3, 3, 3};
static const int kStride[N_LAYER] = {4, 1, 1, 1, 1};
static const int kPad[N_LAYER] = {2, 2, 1, 1, 1};
static const int kPoolBefore[N_LAYER] = {0, 1, 1, 0, 0}; /* MaxPool2d(3, 2) first */
static const int kSlice[N_LAYER] = {1, 2, 3, 4, 5};       /* lpips's net.sliceK */
static const float kShift[3] = {-.030f, -.088f, -.188f};
static const float kScale[3] = {.458f, .448f, .450f};

struct lpips_alex {
    nn_params params;
    int w_idx[N_LAYER], b_idx[N_LAYER], lin_idx[N_LAYER];
    /* plan */
    int64_t batch, height, width;
    nn_conv2d_desc conv[N_LAYER];
    nn_maxpool_desc pool[N_LAYER];
    float *block, *in, *pooled, *feat[N_LAYER]; /* (2B, ...): x0's images, then x1's */
    double *tile_sum;
    nn_workspace ws;
};

nn_params *lpips_alex_params(lpips_alex *l) { return l ? &l->params : NULL; }

static void free_plan(lpips_alex *l)
{
    free(l->block);
    free(l->tile_sum);
    l->block = NULL;
    l->tile_sum = NULL;
    l->batch = l->height = l->width = 0;
}

void lpips_alex_free(lpips_alex *l)
{
    if (!l)
        return;
    free_plan(l);
    nn_workspace_free(&l->ws);
    nn_params_free(&l->params);
    free(l);
}

optvq_status lpips_alex_create(lpips_alex **out)
{
    if (!out)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "lpips_alex_create: NULL argument");
    *out = NULL;
    lpips_alex *l = calloc(1, sizeof *l);
    if (!l)
        return optvq_fail(OPTVQ_ERR_NOMEM, "lpips_alex_create: out of memory");
    nn_params_init(&l->params);
    optvq_status st = OPTVQ_OK;
    char name[64];
    /* the heads first: a trunk-only file fails on them at once */
    for (int k = 0; k < N_LAYER && st == OPTVQ_OK; k++) {
        int64_t s[4] = {1, kOut[k], 1, 1};
        snprintf(name, sizeof name, "lin%d.model.1.weight", k);
        st = nn_params_add(&l->params, name, 4, s, &l->lin_idx[k]);
    }
    int64_t cin = 3;
    for (int i = 0; i < N_LAYER && st == OPTVQ_OK; i++) {
        int64_t ws[4] = {kOut[i], cin, kKernel[i], kKernel[i]}, bs[1] = {kOut[i]};
        snprintf(name, sizeof name, "features.%d.weight", kIndex[i]);
        st = nn_params_add(&l->params, name, 4, ws, &l->w_idx[i]);
        if (st == OPTVQ_OK) {
            snprintf(name, sizeof name, "features.%d.bias", kIndex[i]);
            st = nn_params_add(&l->params, name, 1, bs, &l->b_idx[i]);
        }
        cin = kOut[i];
    }
    if (st == OPTVQ_OK)
        st = nn_params_finalize(&l->params);
    if (st != OPTVQ_OK) {
        lpips_alex_free(l);
        return st;
    }
    nn_params_drop_grad(&l->params); /* frozen */
    for (int i = 0; i < l->params.count; i++)
        l->params.items[i].grad = NULL;
    *out = l;
    return OPTVQ_OK;
}

/* lpips's names for torchvision's: features.N.x -> net.sliceK.N.x, linK -> lins.K */
static void alias(const char *name, char *buf, size_t cap)
{
    int idx, k;
    char rest[32];
    buf[0] = '\0';
    if (sscanf(name, "features.%d.%31s", &idx, rest) == 2) {
        for (int i = 0; i < N_LAYER; i++)
            if (kIndex[i] == idx)
                snprintf(buf, cap, "net.slice%d.%d.%s", kSlice[i], idx, rest);
    } else if (sscanf(name, "lin%d.", &k) == 1) {
        snprintf(buf, cap, "lins.%d.model.1.weight", k);
    }
}

optvq_status lpips_alex_load(const char *const *paths, int n_paths, lpips_alex **out)
{
    if (!out)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "lpips_alex_load: NULL argument");
    *out = NULL;
    lpips_alex *l = NULL;
    OPTVQ_TRY(lpips_alex_create(&l));
    optvq_status st = net_load_params(&l->params, paths, n_paths, alias, "lpips-alex");
    if (st != OPTVQ_OK) {
        lpips_alex_free(l);
        return st;
    }
    *out = l;
    return OPTVQ_OK;
}

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

static optvq_status plan(lpips_alex *l, int64_t B, int64_t H, int64_t W)
{
    if (l->block && l->batch == B && l->height == H && l->width == W)
        return OPTVQ_OK;
    free_plan(l);
    const int64_t B2 = 2 * B;
    int64_t h = H, w = W, cin = 3;
    size_t need_ws = 0, feat_total = 0, pooled = 0, numel[N_LAYER];
    int64_t tiles = 0;
    for (int i = 0; i < N_LAYER; i++) {
        if (kPoolBefore[i]) {
            OPTVQ_TRY(nn_maxpool_init(&l->pool[i], B2 * cin, h, w, 3, 2, 0));
            h = l->pool[i].h_out;
            w = l->pool[i].w_out;
            if ((size_t)(B2 * cin * h * w) > pooled)
                pooled = (size_t)(B2 * cin * h * w);
        }
        OPTVQ_TRY(nn_conv2d_init(&l->conv[i], B2, cin, h, w, kOut[i], kKernel[i], kKernel[i], kStride[i], kPad[i],
                                 kPad[i], kPad[i], kPad[i]));
        const nn_conv2d_desc *d = &l->conv[i];
        size_t need = nn_conv2d_workspace(d);
        if (need > need_ws)
            need_ws = need;
        cin = kOut[i];
        h = d->h_out;
        w = d->w_out;
        numel[i] = (size_t)(B2 * cin * h * w);
        feat_total += round16(numel[i]);
        int64_t t = B * ((h * w + POS_TILE - 1) / POS_TILE);
        if (t > tiles)
            tiles = t;
    }
    const size_t in_n = round16((size_t)(B2 * 3 * H * W));
    const size_t total = in_n + round16(pooled) + feat_total;
    l->block = optvq_big_alloc(total * sizeof(float));
    l->tile_sum = malloc(sizeof(double) * (size_t)tiles);
    if (!l->block || !l->tile_sum) {
        free_plan(l);
        return optvq_fail(OPTVQ_ERR_NOMEM, "lpips-alex: cannot allocate %zu bytes of activations",
                          total * sizeof(float));
    }
    float *p = l->block;
    l->in = p;
    p += in_n;
    l->pooled = p;
    p += round16(pooled);
    for (int i = 0; i < N_LAYER; i++) {
        l->feat[i] = p;
        p += round16(numel[i]);
    }
    optvq_status st = nn_workspace_reserve(&l->ws, need_ws);
    if (st != OPTVQ_OK) {
        free_plan(l);
        return st;
    }
    l->batch = B;
    l->height = H;
    l->width = W;
    return OPTVQ_OK;
}

static void relu_inplace(float *y, int64_t n)
{
#pragma omp parallel for simd schedule(static) num_threads(optvq_threads()) if (n > 32768)
    for (int64_t i = 0; i < n; i++)
        y[i] = y[i] > 0.0f ? y[i] : 0.0f;
}

/* The trunk on x0 and x1 (B, 3, H, W) in [0, 1], as one batch of 2B; the relu
 * outputs go to feat[i]. */
static optvq_status trunk(lpips_alex *l, const float *x0, const float *x1, float *const *feat)
{
    const int64_t B = l->batch, HW = l->height * l->width;
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (B * HW > 8192)
    for (int64_t bc = 0; bc < 2 * B * 3; bc++) {
        const int c = (int)(bc % 3);
        const float *src = bc < B * 3 ? x0 + bc * HW : x1 + (bc - B * 3) * HW;
        float *dst = l->in + bc * HW;
        for (int64_t j = 0; j < HW; j++) {
            const float t = 2.0f * src[j] - 1.0f; /* pyiqa: 2 x - 1, then the scaling layer */
            dst[j] = (t - kShift[c]) / kScale[c];
        }
    }
    const nn_params *ps = &l->params;
    const float *in = l->in;
    for (int i = 0; i < N_LAYER; i++) {
        if (kPoolBefore[i]) {
            nn_maxpool_forward(l->pooled, in, &l->pool[i]);
            in = l->pooled;
        }
        const nn_conv2d_desc *d = &l->conv[i];
        OPTVQ_TRY(nn_conv2d_forward(feat[i], in, ps->items[l->w_idx[i]].data, ps->items[l->b_idx[i]].data, d,
                                    &l->ws));
        relu_inplace(feat[i], d->n * d->c_out * d->h_out * d->w_out);
        in = feat[i];
    }
    return OPTVQ_OK;
}

/* Sum over the tile's positions of sum_c w_c (n0_c - n1_c)^2. */
static double tile_distance(const float *f0, const float *f1, const float *lw, int64_t C, int64_t P, int64_t p0,
                            int64_t np)
{
    double s0[POS_TILE], s1[POS_TILE], acc[POS_TILE];
    for (int64_t j = 0; j < np; j++)
        s0[j] = s1[j] = acc[j] = 0.0;
    for (int64_t c = 0; c < C; c++) {
        const float *a = f0 + c * P + p0, *b = f1 + c * P + p0;
        for (int64_t j = 0; j < np; j++) {
            s0[j] += (double)a[j] * a[j];
            s1[j] += (double)b[j] * b[j];
        }
    }
    for (int64_t j = 0; j < np; j++) {
        s0[j] = 1.0 / (sqrt(s0[j]) + EPS_NORM);
        s1[j] = 1.0 / (sqrt(s1[j]) + EPS_NORM);
    }
    for (int64_t c = 0; c < C; c++) {
        const float *a = f0 + c * P + p0, *b = f1 + c * P + p0;
        const double wc = lw[c];
        for (int64_t j = 0; j < np; j++) {
            const double dd = a[j] * s0[j] - b[j] * s1[j];
            acc[j] += wc * dd * dd;
        }
    }
    double s = 0.0;
    for (int64_t j = 0; j < np; j++)
        s += acc[j];
    return s;
}

optvq_status lpips_alex_forward(lpips_alex *l, const float *x0, const float *x1, int64_t batch, int64_t height,
                                int64_t width, double *per_image, double *layers)
{
    if (!l || !x0 || !x1 || !per_image)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "lpips_alex_forward: NULL argument");
    if (batch < 1 || batch > (1 << 20) || height < LPIPS_ALEX_MIN_SIDE || width < LPIPS_ALEX_MIN_SIDE ||
        height > (1 << 15) || width > (1 << 15))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG,
                          "lpips-alex: bad size %lldx3x%lldx%lld (need batch >= 1, height and width in %d..32768)",
                          (long long)batch, (long long)height, (long long)width, LPIPS_ALEX_MIN_SIDE);
    OPTVQ_TRY(plan(l, batch, height, width));
    OPTVQ_TRY(trunk(l, x0, x1, l->feat));
    for (int64_t b = 0; b < batch; b++)
        per_image[b] = 0.0;
    const nn_params *ps = &l->params;
    for (int k = 0; k < N_LAYER; k++) {
        const nn_conv2d_desc *d = &l->conv[k];
        const int64_t C = kOut[k], P = d->h_out * d->w_out;
        const int64_t tpi = (P + POS_TILE - 1) / POS_TILE, nt = batch * tpi;
        const float *lw = ps->items[l->lin_idx[k]].data;
        const float *f0 = l->feat[k], *f1 = l->feat[k] + batch * C * P;
        double *ts = l->tile_sum;
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (nt * C * POS_TILE > 65536)
        for (int64_t t = 0; t < nt; t++) {
            const int64_t b = t / tpi, p0 = (t % tpi) * POS_TILE;
            const int64_t np = P - p0 < POS_TILE ? P - p0 : POS_TILE;
            ts[t] = tile_distance(f0 + b * C * P, f1 + b * C * P, lw, C, P, p0, np);
        }
        for (int64_t b = 0; b < batch; b++) { /* fixed order: deterministic */
            double s = 0.0;
            for (int64_t t = 0; t < tpi; t++)
                s += ts[b * tpi + t];
            s /= (double)P;
            per_image[b] += s;
            if (layers)
                layers[b * N_LAYER + k] = s;
        }
    }
    return OPTVQ_OK;
}
