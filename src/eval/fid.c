/* The FID Inception (pytorch-fid's InceptionV3, 2048-d pool features) and the
 * Frechet distance; see fid.h for the definition.
 *
 * Layout. Every input is resized to 299x299, so the activation sizes depend on
 * the batch only: two ping-pong buffers sized for the largest stem activation
 * (64 x 147 x 147 per image) hold a block's input and output, three scratch
 * buffers (288 x 35 x 35 per image, the largest tensor inside a mixed block)
 * hold the branches, whose results are copied into the output at their channel
 * offsets (torch.cat order). About 15 MB per image in all. */
#include "eval/fid.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bigalloc.h"
#include "core/error.h"
#include "core/parallel.h"
#include "eval/net_load.h"

/* LAPACK's symmetric eigensolver, which Debian's OpenBLAS exports (32-bit
 * integers; the trailing lengths of the character arguments are gfortran's
 * hidden ones). Declared here: no LAPACK header package is needed. */
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
                    double *work, const int *lwork, int *iwork, const int *liwork, int *info, size_t jobz_len,
                    size_t uplo_len);

/* Eigenvalues w (ascending) of the symmetric a (n x n); with vectors, a is
 * overwritten by them, eigenvector j in row j (LAPACK's column-major columns
 * read row-major). 0 on success. */
static int sym_eig(double *a, int n, double *w, int vectors)
{
    const char jobz = vectors ? 'V' : 'N', uplo = 'U';
    int lwork = -1, liwork = -1, info = 0, iw = 0;
    double wq = 0;
    dsyevd_(&jobz, &uplo, &n, a, &n, w, &wq, &lwork, &iw, &liwork, &info, 1, 1);
    if (info != 0 || !(wq >= 1) || wq > 1e12)
        return -1;
    lwork = (int)wq;
    liwork = iw > 1 ? iw : 1;
    double *work = malloc(sizeof(double) * (size_t)lwork);
    int *iwork = malloc(sizeof(int) * (size_t)liwork);
    if (work && iwork)
        dsyevd_(&jobz, &uplo, &n, a, &n, w, work, &lwork, iwork, &liwork, &info, 1, 1);
    else
        info = -1;
    free(work);
    free(iwork);
    return info == 0 ? 0 : -1;
}

#define BN_EPS 0.001f
#define MAX_UNITS 96
#define MAX_BLOCKS 11
#define STEM_MAX (64 * 147 * 147) /* Conv2d_2b_3x3's output, per image */
#define SCRATCH_MAX (288 * 35 * 35) /* Mixed_5d's pool branch input, per image */

typedef struct unit {
    int cin, cout, kh, kw, stride, ph, pw;
    int p_w, p_g, p_b, p_m, p_v; /* parameter indices */
} unit;

enum { BK_A, BK_B, BK_C, BK_D, BK_E1, BK_E2 };

typedef struct block {
    int kind, cin, cout, first; /* first: index of its first unit */
} block;

struct fid_inception {
    nn_params params;
    unit u[MAX_UNITS];
    int n_units;
    block b[MAX_BLOCKS];
    int n_blocks;
    int stem[5];
    float *alpha, *beta; /* folded batch norm, per unit's channels */
    int64_t *bn_off;     /* unit -> offset into alpha/beta */
    int folded;
    /* plan */
    int64_t batch;
    float *block_mem, *p[2], *t[3];
    nn_workspace ws;
};

nn_params *fid_inception_params(fid_inception *n)
{
    if (!n)
        return NULL;
    n->folded = 0; /* the caller may change them */
    return &n->params;
}

void fid_inception_free(fid_inception *n)
{
    if (!n)
        return;
    free(n->block_mem);
    free(n->alpha);
    free(n->bn_off);
    nn_workspace_free(&n->ws);
    nn_params_free(&n->params);
    free(n);
}

static optvq_status add_unit(fid_inception *n, const char *prefix, const char *name, int cin, int cout, int kh,
                             int kw, int stride, int ph, int pw, int *index)
{
    if (n->n_units >= MAX_UNITS)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "fid: too many units");
    unit *u = &n->u[n->n_units];
    *u = (unit){cin, cout, kh, kw, stride, ph, pw, 0, 0, 0, 0, 0};
    char full[NN_PARAM_NAME_MAX];
    int64_t ws[4] = {cout, cin, kh, kw}, cs[1] = {cout};
    const char *sep = prefix[0] ? "." : "";
    snprintf(full, sizeof full, "%s%s%s.conv.weight", prefix, sep, name);
    OPTVQ_TRY(nn_params_add(&n->params, full, 4, ws, &u->p_w));
    static const char *const bn[4] = {"weight", "bias", "running_mean", "running_var"};
    int *idx[4] = {&u->p_g, &u->p_b, &u->p_m, &u->p_v};
    for (int k = 0; k < 4; k++) {
        snprintf(full, sizeof full, "%s%s%s.bn.%s", prefix, sep, name, bn[k]);
        OPTVQ_TRY(nn_params_add(&n->params, full, 1, cs, idx[k]));
    }
    if (index)
        *index = n->n_units;
    n->n_units++;
    return OPTVQ_OK;
}

/* The units of one mixed block, in the order the forward uses them. */
static optvq_status add_block(fid_inception *n, const char *name, int kind, int cin, int arg)
{
    block *b = &n->b[n->n_blocks++];
    b->kind = kind;
    b->cin = cin;
    b->first = n->n_units;
#define U(nm, ci, co, kh, kw, s, ph, pw) OPTVQ_TRY(add_unit(n, name, nm, ci, co, kh, kw, s, ph, pw, NULL))
    switch (kind) {
    case BK_A: /* arg: pool_features */
        U("branch1x1", cin, 64, 1, 1, 1, 0, 0);
        U("branch5x5_1", cin, 48, 1, 1, 1, 0, 0);
        U("branch5x5_2", 48, 64, 5, 5, 1, 2, 2);
        U("branch3x3dbl_1", cin, 64, 1, 1, 1, 0, 0);
        U("branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1);
        U("branch3x3dbl_3", 96, 96, 3, 3, 1, 1, 1);
        U("branch_pool", cin, arg, 1, 1, 1, 0, 0);
        b->cout = 64 + 64 + 96 + arg;
        break;
    case BK_B:
        U("branch3x3", cin, 384, 3, 3, 2, 0, 0);
        U("branch3x3dbl_1", cin, 64, 1, 1, 1, 0, 0);
        U("branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1);
        U("branch3x3dbl_3", 96, 96, 3, 3, 2, 0, 0);
        b->cout = 384 + 96 + cin;
        break;
    case BK_C: /* arg: channels_7x7 */
        U("branch1x1", cin, 192, 1, 1, 1, 0, 0);
        U("branch7x7_1", cin, arg, 1, 1, 1, 0, 0);
        U("branch7x7_2", arg, arg, 1, 7, 1, 0, 3);
        U("branch7x7_3", arg, 192, 7, 1, 1, 3, 0);
        U("branch7x7dbl_1", cin, arg, 1, 1, 1, 0, 0);
        U("branch7x7dbl_2", arg, arg, 7, 1, 1, 3, 0);
        U("branch7x7dbl_3", arg, arg, 1, 7, 1, 0, 3);
        U("branch7x7dbl_4", arg, arg, 7, 1, 1, 3, 0);
        U("branch7x7dbl_5", arg, 192, 1, 7, 1, 0, 3);
        U("branch_pool", cin, 192, 1, 1, 1, 0, 0);
        b->cout = 768;
        break;
    case BK_D:
        U("branch3x3_1", cin, 192, 1, 1, 1, 0, 0);
        U("branch3x3_2", 192, 320, 3, 3, 2, 0, 0);
        U("branch7x7x3_1", cin, 192, 1, 1, 1, 0, 0);
        U("branch7x7x3_2", 192, 192, 1, 7, 1, 0, 3);
        U("branch7x7x3_3", 192, 192, 7, 1, 1, 3, 0);
        U("branch7x7x3_4", 192, 192, 3, 3, 2, 0, 0);
        b->cout = 320 + 192 + cin;
        break;
    default: /* E_1, E_2 */
        U("branch1x1", cin, 320, 1, 1, 1, 0, 0);
        U("branch3x3_1", cin, 384, 1, 1, 1, 0, 0);
        U("branch3x3_2a", 384, 384, 1, 3, 1, 0, 1);
        U("branch3x3_2b", 384, 384, 3, 1, 1, 1, 0);
        U("branch3x3dbl_1", cin, 448, 1, 1, 1, 0, 0);
        U("branch3x3dbl_2", 448, 384, 3, 3, 1, 1, 1);
        U("branch3x3dbl_3a", 384, 384, 1, 3, 1, 0, 1);
        U("branch3x3dbl_3b", 384, 384, 3, 1, 1, 1, 0);
        U("branch_pool", cin, 192, 1, 1, 1, 0, 0);
        b->cout = 2048;
        break;
    }
#undef U
    return OPTVQ_OK;
}

static optvq_status build(fid_inception *n)
{
    OPTVQ_TRY(add_unit(n, "", "Conv2d_1a_3x3", 3, 32, 3, 3, 2, 0, 0, &n->stem[0]));
    OPTVQ_TRY(add_unit(n, "", "Conv2d_2a_3x3", 32, 32, 3, 3, 1, 0, 0, &n->stem[1]));
    OPTVQ_TRY(add_unit(n, "", "Conv2d_2b_3x3", 32, 64, 3, 3, 1, 1, 1, &n->stem[2]));
    OPTVQ_TRY(add_unit(n, "", "Conv2d_3b_1x1", 64, 80, 1, 1, 1, 0, 0, &n->stem[3]));
    OPTVQ_TRY(add_unit(n, "", "Conv2d_4a_3x3", 80, 192, 3, 3, 1, 0, 0, &n->stem[4]));
    OPTVQ_TRY(add_block(n, "Mixed_5b", BK_A, 192, 32));
    OPTVQ_TRY(add_block(n, "Mixed_5c", BK_A, 256, 64));
    OPTVQ_TRY(add_block(n, "Mixed_5d", BK_A, 288, 64));
    OPTVQ_TRY(add_block(n, "Mixed_6a", BK_B, 288, 0));
    OPTVQ_TRY(add_block(n, "Mixed_6b", BK_C, 768, 128));
    OPTVQ_TRY(add_block(n, "Mixed_6c", BK_C, 768, 160));
    OPTVQ_TRY(add_block(n, "Mixed_6d", BK_C, 768, 160));
    OPTVQ_TRY(add_block(n, "Mixed_6e", BK_C, 768, 192));
    OPTVQ_TRY(add_block(n, "Mixed_7a", BK_D, 768, 0));
    OPTVQ_TRY(add_block(n, "Mixed_7b", BK_E1, 1280, 0));
    OPTVQ_TRY(add_block(n, "Mixed_7c", BK_E2, 2048, 0));
    return OPTVQ_OK;
}

optvq_status fid_inception_create(fid_inception **out)
{
    if (!out)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "fid_inception_create: NULL argument");
    *out = NULL;
    fid_inception *n = calloc(1, sizeof *n);
    if (!n)
        return optvq_fail(OPTVQ_ERR_NOMEM, "fid_inception_create: out of memory");
    nn_params_init(&n->params);
    optvq_status st = build(n);
    if (st == OPTVQ_OK)
        st = nn_params_finalize(&n->params);
    int64_t channels = 0;
    if (st == OPTVQ_OK) {
        n->bn_off = malloc(sizeof *n->bn_off * (size_t)n->n_units);
        for (int i = 0; n->bn_off && i < n->n_units; i++) {
            n->bn_off[i] = channels;
            channels += n->u[i].cout;
        }
        n->alpha = malloc(sizeof(float) * (size_t)(2 * channels));
        if (!n->bn_off || !n->alpha)
            st = optvq_fail(OPTVQ_ERR_NOMEM, "fid_inception_create: out of memory");
    }
    if (st != OPTVQ_OK) {
        fid_inception_free(n);
        return st;
    }
    n->beta = n->alpha + channels;
    nn_params_drop_grad(&n->params); /* frozen */
    for (int i = 0; i < n->params.count; i++)
        n->params.items[i].grad = NULL;
    for (int i = 0; i < n->n_units; i++) {
        nn_param *v = &n->params.items[n->u[i].p_v];
        for (int64_t c = 0; c < v->numel; c++)
            v->data[c] = 1.0f;
    }
    *out = n;
    return OPTVQ_OK;
}

optvq_status fid_inception_load(const char *path, fid_inception **out)
{
    if (!out || !path)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "fid_inception_load: NULL argument");
    *out = NULL;
    fid_inception *n = NULL;
    OPTVQ_TRY(fid_inception_create(&n));
    const char *paths[1] = {path};
    optvq_status st = net_load_params(&n->params, paths, 1, NULL, "fid");
    if (st != OPTVQ_OK) {
        fid_inception_free(n);
        return st;
    }
    *out = n;
    return OPTVQ_OK;
}

/* BatchNorm2d (eval) as PyTorch's CPU kernel forms it, in float:
 * alpha = weight / sqrt(var + eps), beta = bias - mean * alpha. */
static optvq_status fold(fid_inception *n)
{
    const nn_params *ps = &n->params;
    for (int i = 0; i < n->n_units; i++) {
        const unit *u = &n->u[i];
        const float *g = ps->items[u->p_g].data, *b = ps->items[u->p_b].data;
        const float *m = ps->items[u->p_m].data, *v = ps->items[u->p_v].data;
        float *al = n->alpha + n->bn_off[i], *be = n->beta + n->bn_off[i];
        for (int c = 0; c < u->cout; c++) {
            if (!(v[c] + BN_EPS > 0.0f))
                return optvq_fail(OPTVQ_ERR_NUMERIC, "fid: '%s' has a variance <= -eps",
                                  ps->items[u->p_v].name);
            const float invstd = 1.0f / sqrtf(v[c] + BN_EPS);
            al[c] = invstd * g[c];
            be[c] = b[c] - m[c] * al[c];
        }
    }
    n->folded = 1;
    return OPTVQ_OK;
}

static optvq_status plan(fid_inception *n, int64_t B)
{
    if (n->block_mem && n->batch == B)
        return OPTVQ_OK;
    free(n->block_mem);
    n->block_mem = NULL;
    n->batch = 0;
    const size_t big = (size_t)(B * STEM_MAX), small = (size_t)(B * SCRATCH_MAX);
    n->block_mem = optvq_big_alloc(sizeof(float) * (2 * big + 3 * small));
    if (!n->block_mem)
        return optvq_fail(OPTVQ_ERR_NOMEM, "fid: cannot allocate %zu MB of activations for a batch of %lld",
                          sizeof(float) * (2 * big + 3 * small) >> 20, (long long)B);
    n->p[0] = n->block_mem;
    n->p[1] = n->p[0] + big;
    n->t[0] = n->p[1] + big;
    n->t[1] = n->t[0] + small;
    n->t[2] = n->t[1] + small;
    n->batch = B;
    return OPTVQ_OK;
}

/* BasicConv2d: y (B, cout, ho, wo) <- relu(bn(conv(x (B, cin, h, w)))). */
static optvq_status run(fid_inception *n, int ui, const float *x, int64_t h, int64_t w, float *y, int64_t *ho,
                        int64_t *wo)
{
    const unit *u = &n->u[ui];
    nn_conv2d_desc d;
    memset(&d, 0, sizeof d);
    OPTVQ_TRY(nn_conv2d_init(&d, n->batch, u->cin, h, w, u->cout, u->kh, u->kw, u->stride, u->ph, u->ph, u->pw,
                             u->pw));
    /* nn_conv2d_init takes one stride for both axes (all Inception strides are) */
    OPTVQ_TRY(nn_workspace_reserve(&n->ws, nn_conv2d_workspace(&d)));
    OPTVQ_TRY(nn_conv2d_forward(y, x, n->params.items[u->p_w].data, NULL, &d, &n->ws));
    const int64_t hw = d.h_out * d.w_out, C = u->cout, BC = n->batch * C;
    const float *al = n->alpha + n->bn_off[ui], *be = n->beta + n->bn_off[ui];
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (BC * hw > 32768)
    for (int64_t bc = 0; bc < BC; bc++) {
        const float a = al[bc % C], b = be[bc % C];
        float *yc = y + bc * hw;
        for (int64_t j = 0; j < hw; j++) {
            const float v = yc[j] * a + b;
            yc[j] = v > 0.0f ? v : 0.0f;
        }
    }
    *ho = d.h_out;
    *wo = d.w_out;
    return OPTVQ_OK;
}

/* out (B, ctot, hw) channels [off, off + c) <- src (B, c, hw) */
static void put(float *out, int64_t ctot, int64_t off, const float *src, int64_t c, int64_t hw, int64_t B)
{
#pragma omp parallel for schedule(static) num_threads(optvq_threads()) if (B * c * hw > 65536)
    for (int64_t b = 0; b < B; b++)
        memcpy(out + (b * ctot + off) * hw, src + b * c * hw, sizeof(float) * (size_t)(c * hw));
}

static optvq_status maxpool(fid_inception *n, const float *x, int64_t c, int64_t h, int64_t w, int64_t stride,
                            int64_t pad, float *y, int64_t *ho, int64_t *wo)
{
    nn_maxpool_desc d;
    OPTVQ_TRY(nn_maxpool_init(&d, n->batch * c, h, w, 3, stride, pad));
    nn_maxpool_forward(y, x, &d);
    *ho = d.h_out;
    *wo = d.w_out;
    return OPTVQ_OK;
}

static optvq_status avgpool_exclude(fid_inception *n, const float *x, int64_t c, int64_t h, int64_t w, float *y)
{
    nn_avgpool_desc d;
    OPTVQ_TRY(nn_avgpool_init(&d, n->batch * c, h, w, 3, 1, 1));
    nn_avgpool_exclude_forward(y, x, &d);
    return OPTVQ_OK;
}

/* One mixed block: x (B, cin, h, w) -> y (B, cout, *ho, *wo). */
static optvq_status mixed(fid_inception *n, const block *bk, const float *x, int64_t h, int64_t w, float *y,
                          int64_t *ho, int64_t *wo)
{
    float *T0 = n->t[0], *T1 = n->t[1], *T2 = n->t[2];
    const int u0 = bk->first, B = (int)n->batch;
    const int64_t C = bk->cout;
    int64_t a, b, off = 0;
    switch (bk->kind) {
    case BK_A:
    case BK_C: {
        const int nb = bk->kind == BK_A ? 2 : 3; /* units in the second branch */
        OPTVQ_TRY(run(n, u0, x, h, w, T0, &a, &b));
        put(y, C, off, T0, n->u[u0].cout, h * w, B);
        off += n->u[u0].cout;
        /* second branch: nb units; third branch: nb + 1 units (A: 2 and 3; C: 3 and 5) */
        int ui = u0 + 1;
        for (int br = 0; br < 2; br++) {
            const int len = br == 0 ? nb : (bk->kind == BK_A ? 3 : 5);
            const float *in = x;
            float *bufs[2] = {T1, T2};
            for (int k = 0; k < len; k++) {
                OPTVQ_TRY(run(n, ui + k, in, h, w, bufs[k & 1], &a, &b));
                in = bufs[k & 1];
            }
            put(y, C, off, in, n->u[ui + len - 1].cout, h * w, B);
            off += n->u[ui + len - 1].cout;
            ui += len;
        }
        OPTVQ_TRY(avgpool_exclude(n, x, bk->cin, h, w, T0));
        OPTVQ_TRY(run(n, ui, T0, h, w, T1, &a, &b));
        put(y, C, off, T1, n->u[ui].cout, h * w, B);
        *ho = h;
        *wo = w;
        return OPTVQ_OK;
    }
    case BK_B:
    case BK_D: {
        /* B: [3x3/2] [1x1, 3x3, 3x3/2] [max pool];  D: [1x1, 3x3/2] [1x1, 1x7, 7x1, 3x3/2] [max pool] */
        const int len1 = bk->kind == BK_B ? 1 : 2, len2 = bk->kind == BK_B ? 3 : 4;
        int ui = u0;
        int64_t oh = 0, ow = 0;
        for (int br = 0; br < 2; br++) {
            const int len = br == 0 ? len1 : len2;
            const float *in = x;
            int64_t ch = h, cw = w;
            float *bufs[2] = {T1, T2};
            for (int k = 0; k < len; k++) {
                OPTVQ_TRY(run(n, ui + k, in, ch, cw, bufs[k & 1], &ch, &cw));
                in = bufs[k & 1];
            }
            oh = ch;
            ow = cw;
            put(y, C, off, in, n->u[ui + len - 1].cout, oh * ow, B);
            off += n->u[ui + len - 1].cout;
            ui += len;
        }
        OPTVQ_TRY(maxpool(n, x, bk->cin, h, w, 2, 0, T0, &a, &b));
        put(y, C, off, T0, bk->cin, oh * ow, B);
        *ho = oh;
        *wo = ow;
        return OPTVQ_OK;
    }
    default: { /* E_1 / E_2 */
        const int64_t hw = h * w;
        OPTVQ_TRY(run(n, u0, x, h, w, T0, &a, &b)); /* branch1x1 */
        put(y, C, 0, T0, 320, hw, B);
        OPTVQ_TRY(run(n, u0 + 1, x, h, w, T0, &a, &b)); /* branch3x3_1 */
        OPTVQ_TRY(run(n, u0 + 2, T0, h, w, T1, &a, &b)); /* 2a */
        put(y, C, 320, T1, 384, hw, B);
        OPTVQ_TRY(run(n, u0 + 3, T0, h, w, T1, &a, &b)); /* 2b */
        put(y, C, 704, T1, 384, hw, B);
        OPTVQ_TRY(run(n, u0 + 4, x, h, w, T0, &a, &b)); /* dbl_1 */
        OPTVQ_TRY(run(n, u0 + 5, T0, h, w, T1, &a, &b)); /* dbl_2 */
        OPTVQ_TRY(run(n, u0 + 6, T1, h, w, T2, &a, &b)); /* 3a */
        put(y, C, 1088, T2, 384, hw, B);
        OPTVQ_TRY(run(n, u0 + 7, T1, h, w, T2, &a, &b)); /* 3b */
        put(y, C, 1472, T2, 384, hw, B);
        if (bk->kind == BK_E1)
            OPTVQ_TRY(avgpool_exclude(n, x, bk->cin, h, w, T0));
        else
            OPTVQ_TRY(maxpool(n, x, bk->cin, h, w, 1, 1, T0, &a, &b));
        OPTVQ_TRY(run(n, u0 + 8, T0, h, w, T1, &a, &b));
        put(y, C, 1856, T1, 192, hw, B);
        *ho = h;
        *wo = w;
        return OPTVQ_OK;
    }
    }
}

optvq_status fid_inception_forward(fid_inception *n, const float *images, int64_t batch, int channels,
                                   int64_t height, int64_t width, float *feats)
{
    if (!n || !images || !feats)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "fid_inception_forward: NULL argument");
    if (batch < 1 || batch > (1 << 16) || (channels != 1 && channels != 3) || height < 1 || width < 1 ||
        height > (1 << 15) || width > (1 << 15))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "fid: bad input %lldx%dx%lldx%lld (want 1 or 3 channels)",
                          (long long)batch, channels, (long long)height, (long long)width);
    if (!n->folded)
        OPTVQ_TRY(fold(n));
    OPTVQ_TRY(plan(n, batch));
    const int64_t S = FID_SIZE, SS = S * S;
    float *x = n->p[1], *y = n->p[0];
    /* resize each channel to 299x299 (grey: once, then replicated), then 2x - 1 */
    for (int64_t b = 0; b < batch; b++) {
        float *dst = x + b * 3 * SS;
        OPTVQ_TRY(nn_resize_bilinear_forward(dst, images + b * channels * height * width, channels, height, width,
                                             S, S));
        if (channels == 1) {
            memcpy(dst + SS, dst, sizeof(float) * (size_t)SS);
            memcpy(dst + 2 * SS, dst, sizeof(float) * (size_t)SS);
        }
    }
#pragma omp parallel for simd schedule(static) num_threads(optvq_threads())
    for (int64_t i = 0; i < batch * 3 * SS; i++)
        x[i] = 2.0f * x[i] - 1.0f;
    int64_t h = S, w = S;
    OPTVQ_TRY(run(n, n->stem[0], x, h, w, y, &h, &w)); /* 149 */
    OPTVQ_TRY(run(n, n->stem[1], y, h, w, x, &h, &w)); /* 147 */
    OPTVQ_TRY(run(n, n->stem[2], x, h, w, y, &h, &w)); /* 147 */
    OPTVQ_TRY(maxpool(n, y, 64, h, w, 2, 0, x, &h, &w)); /* 73 */
    OPTVQ_TRY(run(n, n->stem[3], x, h, w, y, &h, &w)); /* 73 */
    OPTVQ_TRY(run(n, n->stem[4], y, h, w, x, &h, &w)); /* 71 */
    OPTVQ_TRY(maxpool(n, x, 192, h, w, 2, 0, y, &h, &w)); /* 35 */
    float *cur = y, *nxt = x;
    for (int i = 0; i < n->n_blocks; i++) {
        OPTVQ_TRY(mixed(n, &n->b[i], cur, h, w, nxt, &h, &w));
        float *t = cur;
        cur = nxt;
        nxt = t;
    }
    nn_global_avgpool_forward(feats, cur, batch * FID_DIM, h * w);
    return OPTVQ_OK;
}

/* ---------------------------------------------------------------- statistics */

optvq_status fid_stats_init(fid_stats *s, int dim)
{
    memset(s, 0, sizeof *s);
    if (dim < 1 || dim > 16384)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "fid_stats_init: bad dimension %d", dim);
    s->sum = calloc((size_t)dim, sizeof(double));
    s->outer = calloc((size_t)dim * (size_t)dim, sizeof(double));
    if (!s->sum || !s->outer) {
        fid_stats_free(s);
        return optvq_fail(OPTVQ_ERR_NOMEM, "fid: out of memory for %dx%d statistics", dim, dim);
    }
    s->dim = dim;
    return OPTVQ_OK;
}

void fid_stats_free(fid_stats *s)
{
    free(s->sum);
    free(s->outer);
    memset(s, 0, sizeof *s);
}

optvq_status fid_stats_add(fid_stats *s, const float *feats, int64_t n)
{
    if (!s || !s->sum || (!feats && n > 0) || n < 0)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "fid_stats_add: bad arguments");
    const int D = s->dim;
    const int64_t chunk = 256;
    double *x = malloc(sizeof(double) * (size_t)(chunk * D));
    if (!x)
        return optvq_fail(OPTVQ_ERR_NOMEM, "fid: out of memory");
    for (int64_t r0 = 0; r0 < n; r0 += chunk) {
        const int64_t m = n - r0 < chunk ? n - r0 : chunk;
        for (int64_t i = 0; i < m * D; i++) {
            x[i] = feats[r0 * D + i];
            if (!isfinite(x[i])) {
                free(x);
                return optvq_fail(OPTVQ_ERR_NUMERIC, "fid: a feature is NaN/Inf");
            }
        }
        for (int64_t r = 0; r < m; r++)
            for (int j = 0; j < D; j++)
                s->sum[j] += x[r * D + j];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, D, (int)m, 1.0, x, D, 1.0, s->outer, D);
    }
    s->count += n;
    free(x);
    return OPTVQ_OK;
}

optvq_status fid_stats_merge(fid_stats *dst, const fid_stats *src)
{
    if (!dst || !src || dst->dim != src->dim || !dst->sum || !src->sum)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "fid_stats_merge: statistics of different dimensions");
    const size_t D = (size_t)dst->dim;
    for (size_t j = 0; j < D; j++)
        dst->sum[j] += src->sum[j];
    for (size_t i = 0; i < D; i++)
        for (size_t j = i; j < D; j++)
            dst->outer[i * D + j] += src->outer[i * D + j];
    dst->count += src->count;
    return OPTVQ_OK;
}

optvq_status fid_stats_moments(const fid_stats *s, double *mu, double *sigma)
{
    if (!s || !s->sum || !mu || !sigma)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "fid_stats_moments: NULL argument");
    if (s->count < 2)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "fid: needs at least 2 images per set for a covariance (got %lld)",
                          (long long)s->count);
    const size_t D = (size_t)s->dim;
    const double n = (double)s->count;
    for (size_t j = 0; j < D; j++)
        mu[j] = s->sum[j] / n;
    for (size_t i = 0; i < D; i++)
        for (size_t j = i; j < D; j++) {
            const double c = (s->outer[i * D + j] - s->sum[i] * s->sum[j] / n) / (n - 1.0);
            sigma[i * D + j] = c;
            sigma[j * D + i] = c;
        }
    return OPTVQ_OK;
}

/* tr sqrt(s1 s2) via the eigenvalues of F s2 F^T, F = diag(sqrt(l)) E from
 * s1 = E^T diag(l) E (rows of E: eigenvectors). eps is added to both diagonals
 * (0: none). Returns 0 on success, -1 when LAPACK fails or a value is not finite. */
static int trace_sqrt_product(const double *s1, const double *s2, int D, double eps, double *scratch, double *tr)
{
    double *E = scratch, *S2 = E + (size_t)D * D, *T = S2 + (size_t)D * D, *ev = T + (size_t)D * D;
    memcpy(E, s1, sizeof(double) * (size_t)D * D);
    memcpy(S2, s2, sizeof(double) * (size_t)D * D);
    for (int i = 0; i < D; i++) {
        E[(size_t)i * D + i] += eps;
        S2[(size_t)i * D + i] += eps;
    }
    if (sym_eig(E, D, ev, 1) != 0)
        return -1;
    for (int j = 0; j < D; j++) {
        const double r = ev[j] > 0.0 ? sqrt(ev[j]) : 0.0;
        for (int i = 0; i < D; i++)
            E[(size_t)j * D + i] *= r; /* F */
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, D, D, D, 1.0, S2, D, E, D, 0.0, T, D);   /* s2 F^T */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, D, D, D, 1.0, E, D, T, D, 0.0, S2, D); /* F s2 F^T */
    if (sym_eig(S2, D, ev, 0) != 0)
        return -1;
    double s = 0.0;
    for (int j = 0; j < D; j++) {
        if (!isfinite(ev[j]))
            return -1;
        s += ev[j] > 0.0 ? sqrt(ev[j]) : 0.0;
    }
    *tr = s;
    return 0;
}

optvq_status fid_frechet_distance(const double *mu1, const double *s1, const double *mu2, const double *s2, int dim,
                                  double *fid)
{
    if (!mu1 || !s1 || !mu2 || !s2 || !fid || dim < 1)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "fid_frechet_distance: bad arguments");
    const size_t D = (size_t)dim;
    double d2 = 0.0, tr1 = 0.0, tr2 = 0.0;
    for (size_t i = 0; i < D; i++) {
        const double d = mu1[i] - mu2[i];
        d2 += d * d;
        tr1 += s1[i * D + i];
        tr2 += s2[i * D + i];
    }
    for (size_t i = 0; i < D * D; i++)
        if (!isfinite(s1[i]) || !isfinite(s2[i]))
            return optvq_fail(OPTVQ_ERR_NUMERIC, "fid: a covariance holds NaN/Inf");
    double *scratch = malloc(sizeof(double) * (3 * D * D + D));
    if (!scratch)
        return optvq_fail(OPTVQ_ERR_NOMEM, "fid: out of memory for the %dx%d matrices", dim, dim);
    double tr = 0.0;
    int rc = trace_sqrt_product(s1, s2, dim, 0.0, scratch, &tr);
    if (rc != 0) /* pytorch-fid's fallback for a singular product */
        rc = trace_sqrt_product(s1, s2, dim, 1e-6, scratch, &tr);
    free(scratch);
    if (rc != 0)
        return optvq_fail(OPTVQ_ERR_NUMERIC, "fid: the matrix square root failed (LAPACK dsyevd), even with eps 1e-6");
    *fid = d2 + tr1 + tr2 - 2.0 * tr;
    return OPTVQ_OK;
}

optvq_status fid_from_stats(const fid_stats *a, const fid_stats *b, double *fid)
{
    if (!a || !b || a->dim != b->dim)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "fid_from_stats: statistics of different dimensions");
    const size_t D = (size_t)a->dim;
    double *buf = malloc(sizeof(double) * 2 * (D * D + D));
    if (!buf)
        return optvq_fail(OPTVQ_ERR_NOMEM, "fid: out of memory");
    double *mu1 = buf, *mu2 = mu1 + D, *s1 = mu2 + D, *s2 = s1 + D * D;
    optvq_status st = fid_stats_moments(a, mu1, s1);
    if (st == OPTVQ_OK)
        st = fid_stats_moments(b, mu2, s2);
    if (st == OPTVQ_OK)
        st = fid_frechet_distance(mu1, s1, mu2, s2, a->dim, fid);
    free(buf);
    return st;
}
