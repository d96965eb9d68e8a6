/* LPIPS (VGG16, v0.1 linear heads): forward for two image batches and backward to
 * the second one. See lpips.h for the definition, the weight files and the
 * Dropout note (eval mode here, stochastic in the reference's training).
 *
 * Layout. The 13 convs of vgg16.features are numbered i = 0..12 (features index
 * kConvIndex[i]); a MaxPool2d(2, 2) precedes convs 2, 4, 7, 10; slice k ends at
 * conv kSliceLast[k] (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3).
 *
 * Memory (one block per (batch, height, width) plan):
 *   feat0[k]  x0's slice outputs              (B, C_k, H_k, W_k)
 *   act[i]    x1's relu outputs, every conv   (B, C_i, H_i, W_i)   when want_grad
 *   feat1[k]  x1's slice outputs              (aliases act[kSliceLast[k]] when
 *                                               want_grad, else its own buffers)
 *   scr[2]    ping-pong scratch, B*64*H*W each: scaled input and pool outputs in
 *             forward, the gradient in backward.
 * Backward needs only the relu outputs: relu'(x) = [y > 0], the conv backward is
 * data-only (weights are frozen) and the max-pool argmax is recomputed from its
 * input, which is a saved relu output. */
#include "eval/lpips.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bigalloc.h"
#include "core/error.h"
#include "core/parallel.h"
#include "io/weights.h"

#define N_CONV 13
#define N_SLICE 5
#define N_POOL 4
#define EPS_NORM 1e-10f
#define POS_TILE 64 /* positions per tile in the distance / head-gradient loops */

static const int kConvIndex[N_CONV] = {0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28};
static const int kConvOut[N_CONV] = {64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512};
static const int kSliceOf[N_CONV] = {0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4};
static const int kSliceLast[N_SLICE] = {1, 3, 6, 9, 12};
static const int kSliceCh[N_SLICE] = {64, 128, 256, 512, 512};
/* lpips ScalingLayer buffers (torch.Tensor([...]) = float32) */
static const float kShift[3] = {-.030f, -.088f, -.188f};
static const float kScale[3] = {.458f, .448f, .450f};

/* index of the pool that precedes conv i, or -1 */
static int pool_before(int i)
{
    switch (i) {
    case 2: return 0;
    case 4: return 1;
    case 7: return 2;
    case 10: return 3;
    default: return -1;
    }
}

struct lpips_net {
    nn_params params;
    int w_idx[N_CONV], b_idx[N_CONV], lin_idx[N_SLICE];
    float shift[3], scale[3];

    /* plan */
    int64_t batch, height, width;
    int planned_grad;                  /* the plan holds act[] */
    nn_conv2d_desc conv[N_CONV];
    nn_maxpool_desc pool[N_POOL];
    int64_t sh[N_SLICE], sw[N_SLICE];  /* spatial size of slice k */
    float *block;                      /* the one activation allocation */
    float *act[N_CONV], *feat0[N_SLICE], *feat1[N_SLICE], *scr[2];
    double *tile_sum;                  /* per (image, tile) partial sums */
    int64_t tiles_cap;
    nn_workspace ws;
    int have_saved;                    /* last forward kept what backward needs */
};

nn_params *lpips_params(lpips_net *l) { return l ? &l->params : NULL; }

static void free_plan(lpips_net *l)
{
    free(l->block);
    free(l->tile_sum);
    l->block = NULL;
    l->tile_sum = NULL;
    l->batch = l->height = l->width = 0;
    l->planned_grad = 0;
    l->have_saved = 0;
    memset(l->act, 0, sizeof l->act);
    memset(l->feat0, 0, sizeof l->feat0);
    memset(l->feat1, 0, sizeof l->feat1);
    memset(l->scr, 0, sizeof l->scr);
}

void lpips_free(lpips_net *l)
{
    if (!l)
        return;
    free_plan(l);
    nn_workspace_free(&l->ws);
    nn_params_free(&l->params);
    free(l);
}

optvq_status lpips_create(lpips_net **out)
{
    if (!out)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "lpips_create: NULL argument");
    *out = NULL;
    lpips_net *l = calloc(1, sizeof *l);
    if (!l)
        return optvq_fail(OPTVQ_ERR_NOMEM, "lpips_create: out of memory");
    nn_params_init(&l->params);
    memcpy(l->shift, kShift, sizeof kShift);
    memcpy(l->scale, kScale, sizeof kScale);
    optvq_status st = OPTVQ_OK;
    char name[64];
    int64_t cin = 3;
    for (int i = 0; i < N_CONV && st == OPTVQ_OK; i++) {
        int64_t ws[4] = {kConvOut[i], cin, 3, 3}, bs[1] = {kConvOut[i]};
        snprintf(name, sizeof name, "features.%d.weight", kConvIndex[i]);
        st = nn_params_add(&l->params, name, 4, ws, &l->w_idx[i]);
        if (st == OPTVQ_OK) {
            snprintf(name, sizeof name, "features.%d.bias", kConvIndex[i]);
            st = nn_params_add(&l->params, name, 1, bs, &l->b_idx[i]);
        }
        cin = kConvOut[i];
    }
    for (int k = 0; k < N_SLICE && st == OPTVQ_OK; k++) {
        int64_t s[4] = {1, kSliceCh[k], 1, 1};
        snprintf(name, sizeof name, "lin%d.model.1.weight", k);
        st = nn_params_add(&l->params, name, 4, s, &l->lin_idx[k]);
    }
    if (st == OPTVQ_OK)
        st = nn_params_finalize(&l->params);
    if (st != OPTVQ_OK) {
        lpips_free(l);
        return st;
    }
    /* Frozen network: give the gradient block back at once (14.7M floats);
     * nn_params_free and nn_params_zero_grad accept grad == NULL. */
    nn_params_drop_grad(&l->params);
    for (int i = 0; i < l->params.count; i++)
        l->params.items[i].grad = NULL;
    *out = l;
    return OPTVQ_OK;
}

/* ---------------------------------------------------------------- loading */

/* "a.pth" or "a.pth + b.pth" for messages */
static void describe_paths(char *buf, size_t cap, const char *const *paths, int n)
{
    buf[0] = '\0';
    size_t used = 0;
    for (int i = 0; i < n && used < cap; i++) {
        int w = snprintf(buf + used, cap - used, "%s%s", i ? " + " : "", paths[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

static int name_matches(const char *name, const char *want)
{
    size_t ln = strlen(name), lw = strlen(want);
    if (ln == lw)
        return strcmp(name, want) == 0;
    return ln > lw && name[ln - lw - 1] == '.' && strcmp(name + ln - lw, want) == 0;
}

/* Finds the tensor for the first of `cands` (in priority order) that matches
 * anything; two matches for that candidate are an error. *found = NULL (and OK)
 * when no candidate matches. */
static optvq_status find_tensor(optvq_weights *const *stores, const char *const *paths, int n,
                                const char *const *cands, int ncand, const optvq_tensor **found,
                                int *file)
{
    *found = NULL;
    for (int c = 0; c < ncand; c++) {
        for (int f = 0; f < n; f++) {
            int64_t cnt = optvq_weights_count(stores[f]);
            for (int64_t t = 0; t < cnt; t++) {
                const optvq_tensor *tt = optvq_weights_get(stores[f], t);
                if (!name_matches(tt->name, cands[c]))
                    continue;
                if (*found)
                    return optvq_fail(OPTVQ_ERR_FORMAT,
                                      "lpips: tensor '%s' is ambiguous: '%s' in %s and '%s' in %s",
                                      cands[c], (*found)->name, paths[*file], tt->name, paths[f]);
                *found = tt;
                *file = f;
            }
        }
        if (*found)
            return OPTVQ_OK;
    }
    return OPTVQ_OK;
}

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t used = (size_t)snprintf(buf, cap, "(");
    for (int d = 0; d < ndim && used < cap; d++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", d ? ", " : "",
                                 (long long)shape[d]);
    if (used < cap)
        snprintf(buf + used, cap - used, ")");
}

/* Finds, checks and copies one tensor into dest. optional: absence is OK (*got = 0). */
static optvq_status take(optvq_weights *const *stores, const char *const *paths, int n,
                         const char *all_paths, const char *const *cands, int ncand, int ndim,
                         const int64_t *shape, float *dest, int optional, int *got)
{
    const optvq_tensor *t;
    int f = 0;
    if (got)
        *got = 0;
    OPTVQ_TRY(find_tensor(stores, paths, n, cands, ncand, &t, &f));
    if (!t) {
        if (optional)
            return OPTVQ_OK;
        if (ncand > 1)
            return optvq_fail(OPTVQ_ERR_FORMAT, "lpips: %s: missing tensor '%s' (or '%s')",
                              all_paths, cands[0], cands[1]);
        return optvq_fail(OPTVQ_ERR_FORMAT, "lpips: %s: missing tensor '%s'", all_paths,
                          cands[0]);
    }
    int ok = t->ndim == ndim;
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        ok = ok && t->shape[d] == shape[d];
        numel *= shape[d];
    }
    if (!ok) {
        char have[96], want[96];
        shape_str(have, sizeof have, t->ndim, t->shape);
        shape_str(want, sizeof want, ndim, shape);
        return optvq_fail(OPTVQ_ERR_FORMAT, "lpips: %s: tensor '%s' has shape %s, expected %s",
                          paths[f], t->name, have, want);
    }
    for (int64_t j = 0; j < numel; j++)
        if (!isfinite(t->data[j]))
            return optvq_fail(OPTVQ_ERR_NUMERIC, "lpips: %s: tensor '%s' holds NaN/Inf",
                              paths[f], t->name);
    memcpy(dest, t->data, sizeof(float) * (size_t)numel);
    if (got)
        *got = 1;
    return OPTVQ_OK;
}

static optvq_status load_all(lpips_net *l, optvq_weights *const *stores, const char *const *paths,
                             int n, const char *all)
{
    nn_params *ps = &l->params;
    char a[96], b[96];
    /* the heads first: a features-only file fails at once */
    for (int k = 0; k < N_SLICE; k++) {
        nn_param *p = &ps->items[l->lin_idx[k]];
        snprintf(a, sizeof a, "lin%d.model.1.weight", k);
        snprintf(b, sizeof b, "lins.%d.model.1.weight", k);
        const char *cands[2] = {a, b};
        OPTVQ_TRY(take(stores, paths, n, all, cands, 2, p->ndim, p->shape, p->data, 0, NULL));
    }
    for (int i = 0; i < N_CONV; i++) {
        for (int wb = 0; wb < 2; wb++) {
            const char *what = wb ? "bias" : "weight";
            nn_param *p = &ps->items[wb ? l->b_idx[i] : l->w_idx[i]];
            snprintf(a, sizeof a, "net.slice%d.%d.%s", kSliceOf[i] + 1, kConvIndex[i], what);
            snprintf(b, sizeof b, "features.%d.%s", kConvIndex[i], what);
            const char *cands[2] = {a, b};
            OPTVQ_TRY(take(stores, paths, n, all, cands, 2, p->ndim, p->shape, p->data, 0, NULL));
        }
    }
    const int64_t s4[4] = {1, 3, 1, 1};
    const char *shift_name[1] = {"scaling_layer.shift"}, *scale_name[1] = {"scaling_layer.scale"};
    float v[3];
    int got = 0;
    OPTVQ_TRY(take(stores, paths, n, all, shift_name, 1, 4, s4, v, 1, &got));
    if (got)
        memcpy(l->shift, v, sizeof v);
    OPTVQ_TRY(take(stores, paths, n, all, scale_name, 1, 4, s4, v, 1, &got));
    if (got) {
        for (int c = 0; c < 3; c++)
            if (!(v[c] != 0.0f))
                return optvq_fail(OPTVQ_ERR_FORMAT, "lpips: %s: scaling_layer.scale has a zero",
                                  all);
        memcpy(l->scale, v, sizeof v);
    }
    return OPTVQ_OK;
}

optvq_status lpips_load(const char *const *paths, int n_paths, lpips_net **out)
{
    if (!out || !paths || n_paths < 1 || n_paths > 8)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "lpips_load: need 1 to 8 weight files");
    *out = NULL;
    for (int f = 0; f < n_paths; f++)
        if (!paths[f])
            return optvq_fail(OPTVQ_ERR_INVALID_ARG, "lpips_load: NULL path");
    optvq_weights *stores[8] = {0};
    lpips_net *l = NULL;
    optvq_status st = OPTVQ_OK;
    for (int f = 0; f < n_paths && st == OPTVQ_OK; f++)
        st = optvq_weights_load(paths[f], &stores[f]);
    if (st == OPTVQ_OK)
        st = lpips_create(&l);
    if (st == OPTVQ_OK) {
        char all[1024];
        describe_paths(all, sizeof all, paths, n_paths);
        st = load_all(l, stores, paths, n_paths, all);
    }
    for (int f = 0; f < n_paths; f++)
        optvq_weights_free(stores[f]);
    if (st != OPTVQ_OK) {
        lpips_free(l);
        return st;
    }
    *out = l;
    return OPTVQ_OK;
}

/* ---------------------------------------------------------------- planning */

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; } /* 64-byte multiples */

static optvq_status plan(lpips_net *l, int64_t B, int64_t H, int64_t W, int want_grad)
{
    if (l->block && l->batch == B && l->height == H && l->width == W &&
        (l->planned_grad || !want_grad))
        return OPTVQ_OK;
    free_plan(l);

    int64_t h = H, w = W, cin = 3;
    int64_t conv_numel[N_CONV];
    size_t need_ws = 0;
    for (int i = 0; i < N_CONV; i++) {
        int pb = pool_before(i);
        if (pb >= 0) {
            OPTVQ_TRY(nn_maxpool_init(&l->pool[pb], B * cin, h, w, 2, 2, 0));
            h = l->pool[pb].h_out;
            w = l->pool[pb].w_out;
        }
        OPTVQ_TRY(nn_conv2d_init(&l->conv[i], B, cin, h, w, kConvOut[i], 3, 3, 1, 1, 1, 1, 1));
        size_t need = nn_conv2d_workspace(&l->conv[i]);
        if (need > need_ws)
            need_ws = need;
        cin = kConvOut[i];
        conv_numel[i] = B * cin * h * w;
        l->sh[kSliceOf[i]] = h;
        l->sw[kSliceOf[i]] = w;
    }
    /* the largest buffer: conv 0/1 outputs, B * 64 * H * W (>= the input, the pools) */
    const size_t scr = round16((size_t)(B * 64 * H * W));
    size_t total = 2 * scr; /* scr[0], scr[1] */
    for (int k = 0; k < N_SLICE; k++) /* feat0, and feat1 unless it aliases act */
        total += round16((size_t)conv_numel[kSliceLast[k]]) * (want_grad ? 1 : 2);
    if (want_grad) /* act */
        for (int i = 0; i < N_CONV; i++)
            total += round16((size_t)conv_numel[i]);
    if (total > ((size_t)1 << 40) / sizeof(float))
        return optvq_fail(OPTVQ_ERR_NOMEM, "lpips: %lldx3x%lldx%lld needs too much memory",
                          (long long)B, (long long)H, (long long)W);
    l->block = optvq_big_alloc(total * sizeof(float));
    int64_t tiles = 0;
    for (int k = 0; k < N_SLICE; k++) {
        int64_t t = B * ((l->sh[k] * l->sw[k] + POS_TILE - 1) / POS_TILE);
        if (t > tiles)
            tiles = t;
    }
    l->tile_sum = malloc(sizeof(double) * (size_t)tiles);
    if (!l->block || !l->tile_sum) {
        free_plan(l);
        return optvq_fail(OPTVQ_ERR_NOMEM, "lpips: cannot allocate %zu bytes of activations",
                          total * sizeof(float));
    }
    l->tiles_cap = tiles;
    float *p = l->block;
    l->scr[0] = p;
    p += scr;
    l->scr[1] = p;
    p += scr;
    for (int k = 0; k < N_SLICE; k++) {
        l->feat0[k] = p;
        p += round16((size_t)conv_numel[kSliceLast[k]]);
    }
    for (int i = 0; i < N_CONV; i++) {
        if (want_grad) {
            l->act[i] = p;
            p += round16((size_t)conv_numel[i]);
        }
    }
    for (int k = 0; k < N_SLICE; k++) {
        if (want_grad) {
            l->feat1[k] = l->act[kSliceLast[k]];
        } else {
            l->feat1[k] = p;
            p += round16((size_t)conv_numel[kSliceLast[k]]);
        }
    }
    optvq_status st = nn_workspace_reserve(&l->ws, need_ws);
    if (st != OPTVQ_OK) {
        free_plan(l);
        return st;
    }
    l->batch = B;
    l->height = H;
    l->width = W;
    l->planned_grad = want_grad;
    return OPTVQ_OK;
}

/* ---------------------------------------------------------------- forward */

static void relu_inplace(float *y, int64_t n)
{
#pragma omp parallel for simd schedule(static) num_threads(optvq_threads()) if (n > 32768)
    for (int64_t i = 0; i < n; i++)
        y[i] = y[i] > 0.0f ? y[i] : 0.0f;
}

/* Runs the VGG trunk on x (B, 3, H, W) in [-1, 1]. Slice outputs go to feat[k];
 * with save, every relu output goes to act[i] (feat must then alias act). */
static optvq_status trunk(lpips_net *l, const float *x, float *const *feat, int save)
{
    const int64_t B = l->batch, HW = l->height * l->width;
    float *in = l->scr[0];
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (B * HW > 16384)
    for (int64_t bc = 0; bc < B * 3; bc++) {
        const int c = (int)(bc % 3);
        const float sft = l->shift[c], scl = l->scale[c];
        const float *src = x + bc * HW;
        float *dst = in + bc * HW;
        for (int64_t j = 0; j < HW; j++)
            dst[j] = (src[j] - sft) / scl;
    }
    const nn_params *ps = &l->params;
    for (int i = 0; i < N_CONV; i++) {
        int pb = pool_before(i);
        if (pb >= 0) {
            float *pooled = in == l->scr[0] ? l->scr[1] : l->scr[0];
            nn_maxpool_forward(pooled, in, &l->pool[pb]);
            in = pooled;
        }
        const int k = kSliceOf[i];
        float *out;
        if (save)
            out = l->act[i];
        else if (i == kSliceLast[k])
            out = feat[k];
        else
            out = in == l->scr[0] ? l->scr[1] : l->scr[0];
        const nn_conv2d_desc *d = &l->conv[i];
        OPTVQ_TRY(nn_conv2d_forward(out, in, ps->items[l->w_idx[i]].data,
                                    ps->items[l->b_idx[i]].data, d, &l->ws));
        relu_inplace(out, d->n * d->c_out * d->h_out * d->w_out);
        in = out;
    }
    return OPTVQ_OK;
}

/* Sum over tile positions of sum_c w_c (n0_c - n1_c)^2 for image b, slice k. */
static double tile_distance(const float *f0, const float *f1, const float *lw, int64_t C,
                            int64_t P, int64_t p0, int64_t np)
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
            double dd = a[j] * s0[j] - b[j] * s1[j];
            acc[j] += wc * dd * dd;
        }
    }
    double s = 0.0;
    for (int64_t j = 0; j < np; j++)
        s += acc[j];
    return s;
}

optvq_status lpips_forward(lpips_net *l, const float *x0, const float *x1, int64_t batch,
                           int64_t height, int64_t width, double *per_image, int want_grad)
{
    if (!l || !x0 || !x1 || !per_image)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "lpips_forward: NULL argument");
    if (batch < 1 || batch > (1 << 20) || height < 16 || width < 16 || height > (1 << 16) ||
        width > (1 << 16))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG,
                          "lpips_forward: bad size %lldx3x%lldx%lld (need batch >= 1, "
                          "height and width in 16..65536)",
                          (long long)batch, (long long)height, (long long)width);
    l->have_saved = 0;
    OPTVQ_TRY(plan(l, batch, height, width, want_grad));
    OPTVQ_TRY(trunk(l, x0, l->feat0, 0));
    OPTVQ_TRY(trunk(l, x1, l->feat1, l->planned_grad));

    for (int64_t b = 0; b < batch; b++)
        per_image[b] = 0.0;
    const nn_params *ps = &l->params;
    for (int k = 0; k < N_SLICE; k++) {
        const int64_t C = kSliceCh[k], P = l->sh[k] * l->sw[k];
        const int64_t tpi = (P + POS_TILE - 1) / POS_TILE, nt = batch * tpi;
        const float *lw = ps->items[l->lin_idx[k]].data;
        const float *f0 = l->feat0[k], *f1 = l->feat1[k];
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
            per_image[b] += s / (double)P;
        }
    }
    l->have_saved = want_grad != 0;
    return OPTVQ_OK;
}

/* ---------------------------------------------------------------- backward */

/* g (C, P) += d/df1 of coef * sum_p sum_c w_c (n0_c - n1_c)^2 on one tile, with
 * n = f / (|f| + eps). With G_c = -2 coef w_c (n0_c - n1_c) (= dL/dn1_c):
 *   dL/df1_j = G_j / N1 - f1_j (sum_c G_c f1_c) / (N1^2 |f1|),  N1 = |f1| + eps. */
static void tile_head_grad(float *g, const float *f0, const float *f1, const float *lw, int64_t C,
                           int64_t P, int64_t p0, int64_t np, double coef)
{
    double r0[POS_TILE], r1[POS_TILE], s1[POS_TILE], dot[POS_TILE];
    for (int64_t j = 0; j < np; j++)
        r0[j] = s1[j] = dot[j] = 0.0;
    for (int64_t c = 0; c < C; c++) {
        const float *a = f0 + c * P + p0, *b = f1 + c * P + p0;
        for (int64_t j = 0; j < np; j++) {
            r0[j] += (double)a[j] * a[j];
            s1[j] += (double)b[j] * b[j];
        }
    }
    for (int64_t j = 0; j < np; j++) {
        s1[j] = sqrt(s1[j]);
        r0[j] = 1.0 / (sqrt(r0[j]) + EPS_NORM);
        r1[j] = 1.0 / (s1[j] + EPS_NORM);
    }
    for (int64_t c = 0; c < C; c++) {
        const float *a = f0 + c * P + p0, *b = f1 + c * P + p0;
        const double wc = -2.0 * coef * lw[c];
        for (int64_t j = 0; j < np; j++)
            dot[j] += wc * (a[j] * r0[j] - b[j] * r1[j]) * b[j];
    }
    /* second-term factor; a zero vector (s1 = 0) has f1 = 0, so the term vanishes
     * (torch's autograd would give NaN there via sqrt'(0)) */
    for (int64_t j = 0; j < np; j++)
        dot[j] = s1[j] > 0.0 ? dot[j] * r1[j] * r1[j] / s1[j] : 0.0;
    for (int64_t c = 0; c < C; c++) {
        const float *a = f0 + c * P + p0, *b = f1 + c * P + p0;
        float *gc = g + c * P + p0;
        const double wc = -2.0 * coef * lw[c];
        for (int64_t j = 0; j < np; j++) {
            double G = wc * (a[j] * r0[j] - b[j] * r1[j]);
            gc[j] += (float)(G * r1[j] - b[j] * dot[j]);
        }
    }
}

static void relu_mask(float *g, const float *y, int64_t n)
{
#pragma omp parallel for simd schedule(static) num_threads(optvq_threads()) if (n > 32768)
    for (int64_t i = 0; i < n; i++)
        g[i] = y[i] > 0.0f ? g[i] : 0.0f;
}

static void zero(float *p, int64_t n) { memset(p, 0, sizeof(float) * (size_t)n); }

optvq_status lpips_backward(lpips_net *l, float scale, float *dx1)
{
    if (!l || !dx1)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "lpips_backward: NULL argument");
    if (!l->have_saved)
        return optvq_fail(OPTVQ_ERR_STATE,
                          "lpips_backward: needs a preceding lpips_forward with want_grad");
    const nn_params *ps = &l->params;
    const int64_t B = l->batch, HW = l->height * l->width;
    float *G = l->scr[0], *other = l->scr[1];
    {
        const nn_conv2d_desc *d = &l->conv[N_CONV - 1];
        zero(G, B * d->c_out * d->h_out * d->w_out);
    }
    for (int i = N_CONV - 1; i >= 0; i--) {
        const nn_conv2d_desc *d = &l->conv[i];
        const int64_t n_out = B * d->c_out * d->h_out * d->w_out;
        const int k = kSliceOf[i];
        if (i == kSliceLast[k]) {
            const int64_t C = kSliceCh[k], P = l->sh[k] * l->sw[k];
            const int64_t tpi = (P + POS_TILE - 1) / POS_TILE, nt = B * tpi;
            const float *lw = ps->items[l->lin_idx[k]].data;
            const float *f0 = l->feat0[k], *f1 = l->feat1[k];
            const double coef = (double)scale / (double)P;
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (nt * C * POS_TILE > 65536)
            for (int64_t t = 0; t < nt; t++) {
                const int64_t b = t / tpi, p0 = (t % tpi) * POS_TILE;
                const int64_t np = P - p0 < POS_TILE ? P - p0 : POS_TILE;
                tile_head_grad(G + b * C * P, f0 + b * C * P, f1 + b * C * P, lw, C, P, p0, np,
                               coef);
            }
        }
        relu_mask(G, l->act[i], n_out);
        const int64_t n_in = B * d->c_in * d->h_in * d->w_in;
        zero(other, n_in);
        OPTVQ_TRY(nn_conv2d_backward(other, NULL, NULL, G, NULL, ps->items[l->w_idx[i]].data, d,
                                     &l->ws));
        float *t = G;
        G = other;
        other = t;
        const int pb = pool_before(i);
        if (pb >= 0) { /* G: grad wrt the pool output; route to act[i - 1] */
            const nn_maxpool_desc *pd = &l->pool[pb];
            zero(other, pd->nc * pd->h_in * pd->w_in);
            nn_maxpool_backward(other, G, l->act[i - 1], pd);
            t = G;
            G = other;
            other = t;
        }
    }
    /* G: grad wrt the scaled input; s = (x - shift) / scale */
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (B * HW > 16384)
    for (int64_t bc = 0; bc < B * 3; bc++) {
        const float scl = l->scale[bc % 3];
        const float *src = G + bc * HW;
        float *dst = dx1 + bc * HW;
        for (int64_t j = 0; j < HW; j++)
            dst[j] += src[j] / scl;
    }
    return OPTVQ_OK;
}
