/* Finite-difference gradient checks for every nn op (see nnt_gradcheck): central
 * differences of L = sum(out * R) in double along random directions and on single
 * elements, relative tolerance 1e-2 of the gradient norm; backward must accumulate. */
#include "nn/nn.h"
#include "nn_testutil.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>

#define TOL 1e-2

/* ---- conv2d ---- */
typedef struct {
    nn_conv2d_desc d;
    nn_workspace ws;
    float *x, *w, *b, *y, *dx, *dw, *db;
} conv_ctx;
static void conv_f(void *c)
{
    conv_ctx *k = c;
    CHECK_OK(nn_conv2d_forward(k->y, k->x, k->w, k->b, &k->d, &k->ws));
}
static void conv_b(void *c, const float *gy)
{
    conv_ctx *k = c;
    CHECK_OK(nn_conv2d_backward(k->dx, k->dw, k->db, gy, k->x, k->w, &k->d, &k->ws));
}

TEST(nn_grad_conv2d)
{
    /* n, cin, h, w, cout, kh, kw, stride, pads */
    const int64_t cases[][12] = {{2, 3, 6, 7, 4, 3, 3, 1, 1, 1, 1, 1}, {1, 4, 7, 6, 3, 3, 3, 2, 0, 1, 0, 1},
                                 {2, 5, 4, 3, 6, 1, 1, 1, 0, 0, 0, 0}, {1, 3, 8, 8, 2, 2, 2, 2, 0, 0, 0, 0},
                                 {1, 2, 9, 7, 3, 5, 3, 2, 2, 1, 1, 2}};
    optvq_rng rng;
    optvq_rng_seed(&rng, 11);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int64_t *m = cases[c];
        conv_ctx k = {0};
        CHECK_OK(nn_conv2d_init(&k.d, m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8], m[9],
                                m[10], m[11]));
        CHECK_OK(nn_workspace_reserve(&k.ws, nn_conv2d_workspace(&k.d)));
        int64_t nx = m[0] * m[1] * m[2] * m[3], nw = m[4] * m[1] * m[5] * m[6];
        int64_t ny = k.d.n * k.d.c_out * k.d.h_out * k.d.w_out;
        k.x = nnt_randn(&rng, nx, 1);
        k.w = nnt_randn(&rng, nw, 0.3f);
        k.b = nnt_randn(&rng, m[4], 1);
        k.y = nnt_zeros(ny);
        k.dx = nnt_zeros(nx);
        k.dw = nnt_zeros(nw);
        k.db = nnt_zeros(m[4]);
        nnt_tensor ts[3] = {{"x", k.x, k.dx, nx}, {"w", k.w, k.dw, nw}, {"b", k.b, k.db, m[4]}};
        nnt_gradcheck("conv2d", &k, conv_f, conv_b, k.y, ny, ts, 3, TOL, 100 + c);
        nn_workspace_free(&k.ws);
        free(k.x); free(k.w); free(k.b); free(k.y); free(k.dx); free(k.dw); free(k.db);
    }
}

/* ---- conv_transpose2d ---- */
typedef struct {
    nn_convt2d_desc d;
    nn_workspace ws;
    float *x, *w, *b, *y, *dx, *dw, *db;
} convt_ctx;
static void convt_f(void *c)
{
    convt_ctx *k = c;
    CHECK_OK(nn_convt2d_forward(k->y, k->x, k->w, k->b, &k->d, &k->ws));
}
static void convt_b(void *c, const float *gy)
{
    convt_ctx *k = c;
    CHECK_OK(nn_convt2d_backward(k->dx, k->dw, k->db, gy, k->x, k->w, &k->d, &k->ws));
}

TEST(nn_grad_convt2d)
{
    /* n, cin, h, w, cout, k, stride, pad, out_pad */
    const int64_t cases[][9] = {{2, 3, 3, 4, 2, 2, 2, 0, 0}, {1, 2, 3, 3, 3, 3, 2, 1, 1},
                                {1, 3, 4, 3, 2, 4, 2, 1, 0}, {2, 2, 3, 3, 3, 3, 1, 1, 0}};
    optvq_rng rng;
    optvq_rng_seed(&rng, 12);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int64_t *m = cases[c];
        convt_ctx k = {0};
        CHECK_OK(nn_convt2d_init(&k.d, m[0], m[1], m[2], m[3], m[4], m[5], m[5], m[6], m[7], m[8]));
        CHECK_OK(nn_workspace_reserve(&k.ws, nn_convt2d_workspace(&k.d)));
        int64_t nx = m[0] * m[1] * m[2] * m[3], nw = m[1] * m[4] * m[5] * m[5];
        int64_t ny = k.d.n * k.d.c_out * k.d.h_out * k.d.w_out;
        k.x = nnt_randn(&rng, nx, 1);
        k.w = nnt_randn(&rng, nw, 0.3f);
        k.b = nnt_randn(&rng, m[4], 1);
        k.y = nnt_zeros(ny);
        k.dx = nnt_zeros(nx);
        k.dw = nnt_zeros(nw);
        k.db = nnt_zeros(m[4]);
        nnt_tensor ts[3] = {{"x", k.x, k.dx, nx}, {"w", k.w, k.dw, nw}, {"b", k.b, k.db, m[4]}};
        nnt_gradcheck("convt2d", &k, convt_f, convt_b, k.y, ny, ts, 3, TOL, 200 + c);
        nn_workspace_free(&k.ws);
        free(k.x); free(k.w); free(k.b); free(k.y); free(k.dx); free(k.dw); free(k.db);
    }
}

/* ---- group_norm ---- */
typedef struct {
    int64_t n, c, hw, g;
    float eps;
    float *x, *gm, *bt, *y, *dx, *dg, *db;
} gn_ctx;
static void gn_f(void *c)
{
    gn_ctx *k = c;
    CHECK_OK(nn_group_norm_forward(k->y, k->x, k->gm, k->bt, k->n, k->c, k->hw, k->g, k->eps));
}
static void gn_b(void *c, const float *gy)
{
    gn_ctx *k = c;
    CHECK_OK(nn_group_norm_backward(k->dx, k->dg, k->db, gy, k->x, k->gm, k->n, k->c, k->hw, k->g,
                                    k->eps));
}

TEST(nn_grad_group_norm)
{
    const int64_t cases[][4] = {{2, 8, 15, 4}, {1, 64, 9, 32}, {3, 6, 5, 1}};
    optvq_rng rng;
    optvq_rng_seed(&rng, 13);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        gn_ctx k = {cases[c][0], cases[c][1], cases[c][2], cases[c][3], 1e-6f, 0, 0, 0, 0, 0, 0, 0};
        int64_t n = k.n * k.c * k.hw;
        k.x = nnt_randn(&rng, n, 2);
        k.gm = nnt_randn(&rng, k.c, 1);
        k.bt = nnt_randn(&rng, k.c, 1);
        k.y = nnt_zeros(n);
        k.dx = nnt_zeros(n);
        k.dg = nnt_zeros(k.c);
        k.db = nnt_zeros(k.c);
        nnt_tensor ts[3] = {{"x", k.x, k.dx, n}, {"gamma", k.gm, k.dg, k.c}, {"beta", k.bt, k.db, k.c}};
        nnt_gradcheck("group_norm", &k, gn_f, gn_b, k.y, n, ts, 3, TOL, 300 + c);
        free(k.x); free(k.gm); free(k.bt); free(k.y); free(k.dx); free(k.dg); free(k.db);
    }
}

/* ---- unary elementwise ---- */
typedef struct {
    void (*f)(float *, const float *, int64_t);
    void (*b)(float *, const float *, const float *, int64_t);
    float *x, *y, *dx;
    int64_t n;
} un_ctx;
static void un_f(void *c)
{
    un_ctx *k = c;
    k->f(k->y, k->x, k->n);
}
static void un_b(void *c, const float *gy)
{
    un_ctx *k = c;
    k->b(k->dx, gy, k->x, k->n);
}

static void unary_check(const char *op, void (*f)(float *, const float *, int64_t),
                        void (*b)(float *, const float *, const float *, int64_t), uint64_t seed)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, seed);
    un_ctx k = {f, b, NULL, NULL, NULL, 1003};
    k.x = nnt_randn(&rng, k.n, 3);
    for (int64_t i = 0; i < k.n; i++) /* stay away from relu's kink */
        k.x[i] += k.x[i] >= 0 ? 0.2f : -0.2f;
    k.y = nnt_zeros(k.n);
    k.dx = nnt_zeros(k.n);
    nnt_tensor ts[1] = {{"x", k.x, k.dx, k.n}};
    nnt_gradcheck(op, &k, un_f, un_b, k.y, k.n, ts, 1, TOL, seed);
    free(k.x); free(k.y); free(k.dx);
}

TEST(nn_grad_relu) { unary_check("relu", nn_relu_forward, nn_relu_backward, 14); }
TEST(nn_grad_swish)
{
    unary_check("swish", nn_swish_forward, nn_swish_backward, 15);
    unary_check("swish_naive", nn_swish_forward_naive, nn_swish_backward_naive, 16);
}

/* ---- add / concat / upsample / avgpool ---- */
typedef struct {
    int kind;
    int64_t n, ca, cb, hw, h, w;
    nn_avgpool_desc pd;
    float *a, *b, *y, *da, *db;
} misc_ctx;
static void misc_f(void *c)
{
    misc_ctx *k = c;
    if (k->kind == 0)
        nn_add_forward(k->y, k->a, k->b, k->n);
    else if (k->kind == 1)
        nn_concat_forward(k->y, k->a, k->b, k->n, k->ca, k->cb, k->hw);
    else if (k->kind == 2)
        nn_upsample2x_forward(k->y, k->a, k->n, k->h, k->w);
    else
        nn_avgpool_forward(k->y, k->a, &k->pd);
}
static void misc_b(void *c, const float *gy)
{
    misc_ctx *k = c;
    if (k->kind == 0)
        nn_add_backward(k->da, k->db, gy, k->n);
    else if (k->kind == 1)
        nn_concat_backward(k->da, k->db, gy, k->n, k->ca, k->cb, k->hw);
    else if (k->kind == 2)
        nn_upsample2x_backward(k->da, gy, k->n, k->h, k->w);
    else
        nn_avgpool_backward(k->da, gy, &k->pd);
}

TEST(nn_grad_plumbing)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, 17);
    { /* add */
        misc_ctx k = {0};
        k.n = 301;
        k.a = nnt_randn(&rng, k.n, 1);
        k.b = nnt_randn(&rng, k.n, 1);
        k.y = nnt_zeros(k.n);
        k.da = nnt_zeros(k.n);
        k.db = nnt_zeros(k.n);
        nnt_tensor ts[2] = {{"a", k.a, k.da, k.n}, {"b", k.b, k.db, k.n}};
        nnt_gradcheck("add", &k, misc_f, misc_b, k.y, k.n, ts, 2, TOL, 171);
        free(k.a); free(k.b); free(k.y); free(k.da); free(k.db);
    }
    { /* concat */
        misc_ctx k = {0};
        k.kind = 1;
        k.n = 2, k.ca = 3, k.cb = 2, k.hw = 7;
        int64_t na = k.n * k.ca * k.hw, nb = k.n * k.cb * k.hw;
        k.a = nnt_randn(&rng, na, 1);
        k.b = nnt_randn(&rng, nb, 1);
        k.y = nnt_zeros(na + nb);
        k.da = nnt_zeros(na);
        k.db = nnt_zeros(nb);
        nnt_tensor ts[2] = {{"a", k.a, k.da, na}, {"b", k.b, k.db, nb}};
        nnt_gradcheck("concat", &k, misc_f, misc_b, k.y, na + nb, ts, 2, TOL, 172);
        free(k.a); free(k.b); free(k.y); free(k.da); free(k.db);
    }
    { /* upsample */
        misc_ctx k = {0};
        k.kind = 2;
        k.n = 5, k.h = 3, k.w = 4;
        int64_t na = k.n * k.h * k.w;
        k.a = nnt_randn(&rng, na, 1);
        k.y = nnt_zeros(4 * na);
        k.da = nnt_zeros(na);
        nnt_tensor ts[1] = {{"x", k.a, k.da, na}};
        nnt_gradcheck("upsample2x", &k, misc_f, misc_b, k.y, 4 * na, ts, 1, TOL, 173);
        free(k.a); free(k.y); free(k.da);
    }
    { /* avgpool */
        const int64_t pc[][6] = {{3, 7, 8, 2, 2, 0}, {2, 9, 9, 3, 2, 1}};
        for (int c = 0; c < 2; c++) {
            misc_ctx k = {0};
            k.kind = 3;
            CHECK_OK(nn_avgpool_init(&k.pd, pc[c][0], pc[c][1], pc[c][2], pc[c][3], pc[c][4], pc[c][5]));
            int64_t na = k.pd.nc * k.pd.h_in * k.pd.w_in, ny = k.pd.nc * k.pd.h_out * k.pd.w_out;
            k.a = nnt_randn(&rng, na, 1);
            k.y = nnt_zeros(ny);
            k.da = nnt_zeros(na);
            nnt_tensor ts[1] = {{"x", k.a, k.da, na}};
            nnt_gradcheck("avgpool", &k, misc_f, misc_b, k.y, ny, ts, 1, TOL, 174 + c);
            free(k.a); free(k.y); free(k.da);
        }
    }
}

/* ---- linear / softmax / bmm ---- */
typedef struct {
    int kind;
    int64_t n, in, out, batch, m, k, nn;
    int ta, tb;
    float *x, *w, *b, *y, *dx, *dw, *db;
} mm_ctx;
static void mm_f(void *c)
{
    mm_ctx *k = c;
    if (k->kind == 0)
        nn_linear_forward(k->y, k->x, k->w, k->b, k->n, k->in, k->out);
    else if (k->kind == 1)
        nn_softmax_forward(k->y, k->x, k->n, k->in);
    else
        nn_bmm_forward(k->y, k->x, k->w, k->batch, k->m, k->k, k->nn, k->ta, k->tb);
}
static void mm_b(void *c, const float *gy)
{
    mm_ctx *k = c;
    if (k->kind == 0)
        nn_linear_backward(k->dx, k->dw, k->db, gy, k->x, k->w, k->n, k->in, k->out);
    else if (k->kind == 1)
        nn_softmax_backward(k->dx, gy, k->y, k->n, k->in);
    else
        nn_bmm_backward(k->dx, k->dw, gy, k->x, k->w, k->batch, k->m, k->k, k->nn, k->ta, k->tb);
}

TEST(nn_grad_linear_softmax_bmm)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, 18);
    { /* linear */
        mm_ctx k = {0};
        k.n = 7, k.in = 9, k.out = 5;
        k.x = nnt_randn(&rng, k.n * k.in, 1);
        k.w = nnt_randn(&rng, k.out * k.in, 0.3f);
        k.b = nnt_randn(&rng, k.out, 1);
        k.y = nnt_zeros(k.n * k.out);
        k.dx = nnt_zeros(k.n * k.in);
        k.dw = nnt_zeros(k.out * k.in);
        k.db = nnt_zeros(k.out);
        nnt_tensor ts[3] = {{"x", k.x, k.dx, k.n * k.in}, {"w", k.w, k.dw, k.out * k.in},
                            {"b", k.b, k.db, k.out}};
        nnt_gradcheck("linear", &k, mm_f, mm_b, k.y, k.n * k.out, ts, 3, TOL, 181);
        free(k.x); free(k.w); free(k.b); free(k.y); free(k.dx); free(k.dw); free(k.db);
    }
    { /* softmax */
        mm_ctx k = {0};
        k.kind = 1;
        k.n = 6, k.in = 13;
        k.x = nnt_randn(&rng, k.n * k.in, 2);
        k.y = nnt_zeros(k.n * k.in);
        k.dx = nnt_zeros(k.n * k.in);
        nnt_tensor ts[1] = {{"x", k.x, k.dx, k.n * k.in}};
        nnt_gradcheck("softmax", &k, mm_f, mm_b, k.y, k.n * k.in, ts, 1, TOL, 182);
        free(k.x); free(k.y); free(k.dx);
    }
    for (int t = 0; t < 4; t++) { /* bmm, all transposes */
        mm_ctx k = {0};
        k.kind = 2;
        k.batch = 2, k.m = 4, k.k = 5, k.nn = 3, k.ta = t & 1, k.tb = t >> 1;
        int64_t na = k.batch * k.m * k.k, nb = k.batch * k.k * k.nn, ny = k.batch * k.m * k.nn;
        k.x = nnt_randn(&rng, na, 1);
        k.w = nnt_randn(&rng, nb, 1);
        k.y = nnt_zeros(ny);
        k.dx = nnt_zeros(na);
        k.dw = nnt_zeros(nb);
        nnt_tensor ts[2] = {{"a", k.x, k.dx, na}, {"b", k.w, k.dw, nb}};
        nnt_gradcheck("bmm", &k, mm_f, mm_b, k.y, ny, ts, 2, TOL, 183 + t);
        free(k.x); free(k.w); free(k.y); free(k.dx); free(k.dw);
    }
}

/* ---- AttnBlock ---- */
typedef struct {
    nn_attn_desc d;
    nn_workspace ws;
    float *x, *y, *dx, *saved, *p[10], *g[10];
} attn_ctx;
static void attn_f(void *c)
{
    attn_ctx *k = c;
    nn_attn_params p = {k->p[0], k->p[1], k->p[2], k->p[3], k->p[4],
                        k->p[5], k->p[6], k->p[7], k->p[8], k->p[9]};
    CHECK_OK(nn_attn_forward(k->y, k->saved, k->x, &p, &k->d, &k->ws));
}
static void attn_b(void *c, const float *gy)
{
    attn_ctx *k = c;
    nn_attn_params p = {k->p[0], k->p[1], k->p[2], k->p[3], k->p[4],
                        k->p[5], k->p[6], k->p[7], k->p[8], k->p[9]};
    nn_attn_grads g = {k->g[0], k->g[1], k->g[2], k->g[3], k->g[4],
                       k->g[5], k->g[6], k->g[7], k->g[8], k->g[9]};
    CHECK_OK(nn_attn_backward(k->dx, &g, gy, k->saved, k->x, &p, &k->d, &k->ws));
}

TEST(nn_grad_attn)
{
    static const char *names[10] = {"norm.weight", "norm.bias", "q.weight", "q.bias", "k.weight",
                                    "k.bias", "v.weight", "v.bias", "proj_out.weight", "proj_out.bias"};
    optvq_rng rng;
    optvq_rng_seed(&rng, 19);
    attn_ctx k = {0};
    k.d = (nn_attn_desc){2, 8, 3, 2, 4, 1e-6f};
    const int64_t C = k.d.c, n = k.d.n * C * k.d.h * k.d.w;
    CHECK_OK(nn_workspace_reserve(&k.ws, nn_attn_workspace(&k.d)));
    k.saved = nnt_zeros((int64_t)nn_attn_saved(&k.d));
    k.x = nnt_randn(&rng, n, 1);
    k.y = nnt_zeros(n);
    k.dx = nnt_zeros(n);
    nnt_tensor ts[11] = {{"x", k.x, k.dx, n}};
    int nts = 1;
    for (int i = 0; i < 10; i++) {
        int64_t cnt = (i >= 2 && i % 2 == 0) ? C * C : C;
        k.p[i] = nnt_randn(&rng, cnt, i >= 2 && i % 2 == 0 ? 0.6f : 0.5f);
        k.g[i] = nnt_zeros(cnt);
        if (i == 5) /* k.bias: gradient exactly zero, checked below instead */
            continue;
        ts[nts++] = (nnt_tensor){names[i], k.p[i], k.g[i], cnt};
    }
    nnt_gradcheck("attn", &k, attn_f, attn_b, k.y, n, ts, nts, TOL, 190);
    /* k.bias: softmax rows are shift-invariant, so its gradient is (numerically) 0 */
    for (int i = 0; i < C; i++)
        k.g[5][i] = 0;
    optvq_rng_seed(&rng, 5);
    float *gy = nnt_randn(&rng, n, 1);
    attn_b(&k, gy);
    double mx = 0;
    for (int i = 0; i < C; i++)
        mx = fmax(mx, fabs(k.g[5][i]));
    printf("    attn dk.bias max |g| = %.3g (exactly 0 in exact arithmetic)\n", mx);
    CHECK(mx < 1e-4);
    free(gy);
    nn_workspace_free(&k.ws);
    for (int i = 0; i < 10; i++) {
        free(k.p[i]);
        free(k.g[i]);
    }
    free(k.x); free(k.y); free(k.dx); free(k.saved);
}

/* ---- losses (gradients w.r.t. prediction and target) ---- */
typedef struct {
    int l1;
    int64_t n;
    float *x, *t, *loss, *dx, *dt;
} loss_ctx;
static void loss_f(void *c)
{
    loss_ctx *k = c;
    k->loss[0] = (float)(k->l1 ? nn_l1_loss_forward(k->x, k->t, k->n) : nn_mse_loss_forward(k->x, k->t, k->n));
}
static void loss_b(void *c, const float *gy)
{
    loss_ctx *k = c;
    if (k->l1)
        nn_l1_loss_backward(k->dx, k->dt, gy[0], k->x, k->t, k->n);
    else
        nn_mse_loss_backward(k->dx, k->dt, gy[0], k->x, k->t, k->n);
}

TEST(nn_grad_losses)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, 20);
    for (int l1 = 0; l1 < 2; l1++) {
        loss_ctx k = {l1, 97, NULL, NULL, NULL, NULL, NULL};
        k.x = nnt_randn(&rng, k.n, 1);
        k.t = nnt_randn(&rng, k.n, 1);
        for (int64_t i = 0; i < k.n; i++) /* |x - t| >= 0.3: away from L1's kink */
            if (fabsf(k.x[i] - k.t[i]) < 0.3f)
                k.x[i] = k.t[i] + (k.x[i] >= k.t[i] ? 0.3f : -0.3f);
        k.loss = nnt_zeros(1);
        k.dx = nnt_zeros(k.n);
        k.dt = nnt_zeros(k.n);
        nnt_tensor ts[2] = {{"x", k.x, k.dx, k.n}, {"target", k.t, k.dt, k.n}};
        /* scalar output: the loss value is float-rounded, so use a looser tolerance */
        nnt_gradcheck(l1 ? "l1_loss" : "mse_loss", &k, loss_f, loss_b, k.loss, 1, ts, 2, 3e-2,
                      200 + l1);
        free(k.x); free(k.t); free(k.loss); free(k.dx); free(k.dt);
    }
}
