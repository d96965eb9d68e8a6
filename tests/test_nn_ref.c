/* nn ops against PyTorch reference states (tools/gen_nn_ref.py -> tests/ref/nn):
 * forward output and every gradient, NMSE <= 1e-10. */
#include "nn/nn.h"
#include "nn_testutil.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

#define NMSE_MAX 1e-10
#define MAX_CASES 16

/* Loads name into a fresh buffer, or NULL; counts a failure if required and missing. */
static float *need(const char *cs, const char *name, int64_t *n)
{
    float *p = nnt_load(cs, name, n);
    CHECK_MSG(p != NULL, "%s: cannot read %s.npy", cs, name);
    return p;
}

static void label(char *buf, size_t size, const char *cs, const char *what)
{
    snprintf(buf, size, "%.40s %.50s", cs, what);
}

#define EXPECT(cs, what, got, want, n)                                                     \
    do {                                                                                   \
        char lb_[100];                                                                      \
        label(lb_, sizeof lb_, cs, what);                                                  \
        nnt_expect(lb_, got, want, n, NMSE_MAX);                                           \
    } while (0)

/* Iterate over "<op>_0", "<op>_1", ... while meta.npy exists. */
#define FOR_CASES(op, cs, m)                                                               \
    char cs[64];                                                                           \
    double m[32];                                                                          \
    int ncases_ = 0;                                                                       \
    for (int ci_ = 0; ci_ < MAX_CASES &&                                                   \
                      (snprintf(cs, sizeof cs, "%s_%d", op, ci_), nnt_meta(cs, m, 32) > 0); \
         ci_++, ncases_++)

#define END_CASES(op) CHECK_MSG(ncases_ > 0, "no reference cases for %s (run tools/gen_nn_ref.py)", op)

TEST(nn_ref_conv2d)
{
    FOR_CASES("conv2d", cs, m)
    {
        nn_conv2d_desc d;
        CHECK_OK(nn_conv2d_init(&d, (int64_t)m[0], (int64_t)m[1], (int64_t)m[2], (int64_t)m[3],
                                (int64_t)m[4], (int64_t)m[5], (int64_t)m[6], (int64_t)m[7],
                                (int64_t)m[8], (int64_t)m[9], (int64_t)m[10], (int64_t)m[11]));
        int hb = (int)m[12];
        int64_t nx, nw, ny, nb = d.c_out;
        float *x = need(cs, "x", &nx), *w = need(cs, "w", &nw), *y = need(cs, "y", &ny);
        float *gy = need(cs, "gy", NULL), *gx = need(cs, "gx", NULL), *gw = need(cs, "gw", NULL);
        float *b = hb ? need(cs, "b", NULL) : NULL, *gb = hb ? need(cs, "gb", NULL) : NULL;
        if (!x || !w || !y || !gy || !gx || !gw || (hb && (!b || !gb)))
            continue;
        CHECK(ny == d.n * d.c_out * d.h_out * d.w_out);
        nn_workspace ws = {0};
        CHECK_OK(nn_workspace_reserve(&ws, nn_conv2d_workspace(&d)));
        float *yo = nnt_zeros(ny), *dx = nnt_zeros(nx), *dw = nnt_zeros(nw), *db = nnt_zeros(nb);
        CHECK_OK(nn_conv2d_forward(yo, x, w, b, &d, &ws));
        EXPECT(cs, "y", yo, y, ny);
        CHECK_OK(nn_conv2d_backward(dx, dw, hb ? db : NULL, gy, x, w, &d, &ws));
        EXPECT(cs, "dx", dx, gx, nx);
        EXPECT(cs, "dw", dw, gw, nw);
        if (hb)
            EXPECT(cs, "db", db, gb, nb);
        nn_workspace_free(&ws);
        free(x); free(w); free(y); free(gy); free(gx); free(gw); free(b); free(gb);
        free(yo); free(dx); free(dw); free(db);
    }
    END_CASES("conv2d");
}

TEST(nn_ref_convt2d)
{
    FOR_CASES("convt2d", cs, m)
    {
        nn_convt2d_desc d;
        CHECK_OK(nn_convt2d_init(&d, (int64_t)m[0], (int64_t)m[1], (int64_t)m[2], (int64_t)m[3],
                                 (int64_t)m[4], (int64_t)m[5], (int64_t)m[5], (int64_t)m[6],
                                 (int64_t)m[7], (int64_t)m[8]));
        int hb = (int)m[9];
        int64_t nx, nw, ny, nb = d.c_out;
        float *x = need(cs, "x", &nx), *w = need(cs, "w", &nw), *y = need(cs, "y", &ny);
        float *gy = need(cs, "gy", NULL), *gx = need(cs, "gx", NULL), *gw = need(cs, "gw", NULL);
        float *b = hb ? need(cs, "b", NULL) : NULL, *gb = hb ? need(cs, "gb", NULL) : NULL;
        if (!x || !w || !y || !gy || !gx || !gw || (hb && (!b || !gb)))
            continue;
        CHECK(ny == d.n * d.c_out * d.h_out * d.w_out);
        nn_workspace ws = {0};
        CHECK_OK(nn_workspace_reserve(&ws, nn_convt2d_workspace(&d)));
        float *yo = nnt_zeros(ny), *dx = nnt_zeros(nx), *dw = nnt_zeros(nw), *db = nnt_zeros(nb);
        CHECK_OK(nn_convt2d_forward(yo, x, w, b, &d, &ws));
        EXPECT(cs, "y", yo, y, ny);
        CHECK_OK(nn_convt2d_backward(dx, dw, hb ? db : NULL, gy, x, w, &d, &ws));
        EXPECT(cs, "dx", dx, gx, nx);
        EXPECT(cs, "dw", dw, gw, nw);
        if (hb)
            EXPECT(cs, "db", db, gb, nb);
        nn_workspace_free(&ws);
        free(x); free(w); free(y); free(gy); free(gx); free(gw); free(b); free(gb);
        free(yo); free(dx); free(dw); free(db);
    }
    END_CASES("convt2d");
}

TEST(nn_ref_group_norm)
{
    FOR_CASES("group_norm", cs, m)
    {
        int64_t N = (int64_t)m[0], C = (int64_t)m[1], HW = (int64_t)m[2] * (int64_t)m[3];
        int64_t G = (int64_t)m[4];
        int aff = (int)m[5];
        float eps = (float)m[6];
        int64_t nx;
        float *x = need(cs, "x", &nx), *y = need(cs, "y", NULL), *gy = need(cs, "gy", NULL);
        float *gx = need(cs, "gx", NULL);
        float *w = aff ? need(cs, "w", NULL) : NULL, *b = aff ? need(cs, "b", NULL) : NULL;
        float *gw = aff ? need(cs, "gw", NULL) : NULL, *gb = aff ? need(cs, "gb", NULL) : NULL;
        if (!x || !y || !gy || !gx || (aff && (!w || !b || !gw || !gb)))
            continue;
        float *yo = nnt_zeros(nx), *dx = nnt_zeros(nx), *dw = nnt_zeros(C), *db = nnt_zeros(C);
        CHECK_OK(nn_group_norm_forward(yo, x, w, b, N, C, HW, G, eps));
        EXPECT(cs, "y", yo, y, nx);
        CHECK_OK(nn_group_norm_backward(dx, aff ? dw : NULL, aff ? db : NULL, gy, x, w, N, C, HW, G,
                                        eps));
        EXPECT(cs, "dx", dx, gx, nx);
        if (aff) {
            EXPECT(cs, "dgamma", dw, gw, C);
            EXPECT(cs, "dbeta", db, gb, C);
        }
        /* naive twin too */
        memset(dx, 0, sizeof(float) * (size_t)nx);
        nn_group_norm_forward_naive(yo, x, w, b, N, C, HW, G, eps);
        EXPECT(cs, "y (naive)", yo, y, nx);
        nn_group_norm_backward_naive(dx, NULL, NULL, gy, x, w, N, C, HW, G, eps);
        EXPECT(cs, "dx (naive)", dx, gx, nx);
        free(x); free(y); free(gy); free(gx); free(w); free(b); free(gw); free(gb);
        free(yo); free(dx); free(dw); free(db);
    }
    END_CASES("group_norm");
}

static void unary_ref(const char *op, void (*fwd)(float *, const float *, int64_t),
                      void (*bwd)(float *, const float *, const float *, int64_t))
{
    FOR_CASES(op, cs, m)
    {
        int64_t n = (int64_t)m[0], nx;
        float *x = need(cs, "x", &nx), *y = need(cs, "y", NULL), *gy = need(cs, "gy", NULL);
        float *gx = need(cs, "gx", NULL);
        if (!x || !y || !gy || !gx)
            continue;
        CHECK(n == nx);
        float *yo = nnt_zeros(n), *dx = nnt_zeros(n);
        fwd(yo, x, n);
        EXPECT(cs, "y", yo, y, n);
        bwd(dx, gy, x, n);
        EXPECT(cs, "dx", dx, gx, n);
        free(x); free(y); free(gy); free(gx); free(yo); free(dx);
    }
    END_CASES(op);
}

TEST(nn_ref_relu) { unary_ref("relu", nn_relu_forward, nn_relu_backward); }
TEST(nn_ref_swish)
{
    unary_ref("swish", nn_swish_forward, nn_swish_backward);
    unary_ref("swish", nn_swish_forward_naive, nn_swish_backward_naive);
}

TEST(nn_ref_add)
{
    FOR_CASES("add", cs, m)
    {
        int64_t n = (int64_t)m[0];
        float *a = need(cs, "a", NULL), *b = need(cs, "b", NULL), *y = need(cs, "y", NULL);
        float *gy = need(cs, "gy", NULL), *ga = need(cs, "ga", NULL), *gb = need(cs, "gb", NULL);
        if (!a || !b || !y || !gy || !ga || !gb)
            continue;
        float *yo = nnt_zeros(n), *da = nnt_zeros(n), *db = nnt_zeros(n);
        nn_add_forward(yo, a, b, n);
        EXPECT(cs, "y", yo, y, n);
        nn_add_backward(da, db, gy, n);
        EXPECT(cs, "da", da, ga, n);
        EXPECT(cs, "db", db, gb, n);
        free(a); free(b); free(y); free(gy); free(ga); free(gb); free(yo); free(da); free(db);
    }
    END_CASES("add");
}

TEST(nn_ref_linear)
{
    FOR_CASES("linear", cs, m)
    {
        int64_t n = (int64_t)m[0], in = (int64_t)m[1], out = (int64_t)m[2];
        int hb = (int)m[3];
        float *x = need(cs, "x", NULL), *w = need(cs, "w", NULL), *y = need(cs, "y", NULL);
        float *gy = need(cs, "gy", NULL), *gx = need(cs, "gx", NULL), *gw = need(cs, "gw", NULL);
        float *b = hb ? need(cs, "b", NULL) : NULL, *gb = hb ? need(cs, "gb", NULL) : NULL;
        if (!x || !w || !y || !gy || !gx || !gw || (hb && (!b || !gb)))
            continue;
        float *yo = nnt_zeros(n * out), *dx = nnt_zeros(n * in), *dw = nnt_zeros(out * in);
        float *db = nnt_zeros(out);
        nn_linear_forward(yo, x, w, b, n, in, out);
        EXPECT(cs, "y", yo, y, n * out);
        nn_linear_backward(dx, dw, hb ? db : NULL, gy, x, w, n, in, out);
        EXPECT(cs, "dx", dx, gx, n * in);
        EXPECT(cs, "dw", dw, gw, out * in);
        if (hb)
            EXPECT(cs, "db", db, gb, out);
        nn_linear_forward_naive(yo, x, w, b, n, in, out);
        EXPECT(cs, "y (naive)", yo, y, n * out);
        free(x); free(w); free(y); free(gy); free(gx); free(gw); free(b); free(gb);
        free(yo); free(dx); free(dw); free(db);
    }
    END_CASES("linear");
}

TEST(nn_ref_softmax)
{
    FOR_CASES("softmax", cs, m)
    {
        int64_t r = (int64_t)m[0], c = (int64_t)m[1], n = r * c;
        float *x = need(cs, "x", NULL), *y = need(cs, "y", NULL), *gy = need(cs, "gy", NULL);
        float *gx = need(cs, "gx", NULL);
        if (!x || !y || !gy || !gx)
            continue;
        float *yo = nnt_zeros(n), *dx = nnt_zeros(n);
        nn_softmax_forward(yo, x, r, c);
        EXPECT(cs, "y", yo, y, n);
        nn_softmax_backward(dx, gy, yo, r, c);
        EXPECT(cs, "dx", dx, gx, n);
        nn_softmax_forward_naive(yo, x, r, c);
        EXPECT(cs, "y (naive)", yo, y, n);
        free(x); free(y); free(gy); free(gx); free(yo); free(dx);
    }
    END_CASES("softmax");
}

TEST(nn_ref_bmm)
{
    FOR_CASES("bmm", cs, m)
    {
        int64_t B = (int64_t)m[0], M = (int64_t)m[1], K = (int64_t)m[2], N = (int64_t)m[3];
        int ta = (int)m[4], tb = (int)m[5];
        float *a = need(cs, "a", NULL), *b = need(cs, "b", NULL), *y = need(cs, "y", NULL);
        float *gy = need(cs, "gy", NULL), *ga = need(cs, "ga", NULL), *gb = need(cs, "gb", NULL);
        if (!a || !b || !y || !gy || !ga || !gb)
            continue;
        float *yo = nnt_zeros(B * M * N), *da = nnt_zeros(B * M * K), *db = nnt_zeros(B * K * N);
        nn_bmm_forward(yo, a, b, B, M, K, N, ta, tb);
        EXPECT(cs, "y", yo, y, B * M * N);
        nn_bmm_backward(da, db, gy, a, b, B, M, K, N, ta, tb);
        EXPECT(cs, "da", da, ga, B * M * K);
        EXPECT(cs, "db", db, gb, B * K * N);
        nn_bmm_forward_naive(yo, a, b, B, M, K, N, ta, tb);
        EXPECT(cs, "y (naive)", yo, y, B * M * N);
        free(a); free(b); free(y); free(gy); free(ga); free(gb); free(yo); free(da); free(db);
    }
    END_CASES("bmm");
}

static const char *attn_names[10] = {"norm.weight", "norm.bias", "q.weight", "q.bias",
                                     "k.weight",    "k.bias",    "v.weight", "v.bias",
                                     "proj_out.weight", "proj_out.bias"};

TEST(nn_ref_attn)
{
    FOR_CASES("attn", cs, m)
    {
        nn_attn_desc d = {(int64_t)m[0], (int64_t)m[1], (int64_t)m[2], (int64_t)m[3],
                          (int64_t)m[4], (float)m[5]};
        const int64_t C = d.c, n = d.n * d.c * d.h * d.w;
        float *x = need(cs, "x", NULL), *y = need(cs, "y", NULL), *gy = need(cs, "gy", NULL);
        float *gx = need(cs, "gx", NULL);
        float *pv[10], *gv[10], *mine[10];
        int ok = x && y && gy && gx;
        for (int i = 0; i < 10; i++) {
            char nm[64];
            snprintf(nm, sizeof nm, "g.%s", attn_names[i]);
            pv[i] = need(cs, attn_names[i], NULL);
            gv[i] = need(cs, nm, NULL);
            mine[i] = nnt_zeros(i % 2 == 0 && i >= 2 ? C * C : C);
            ok = ok && pv[i] && gv[i];
        }
        if (ok) {
            nn_attn_params p = {pv[0], pv[1], pv[2], pv[3], pv[4], pv[5], pv[6], pv[7], pv[8], pv[9]};
            nn_attn_grads g = {mine[0], mine[1], mine[2], mine[3], mine[4],
                               mine[5], mine[6], mine[7], mine[8], mine[9]};
            nn_workspace ws = {0};
            CHECK_OK(nn_workspace_reserve(&ws, nn_attn_workspace(&d)));
            float *saved = nnt_zeros((int64_t)nn_attn_saved(&d));
            float *yo = nnt_zeros(n), *dx = nnt_zeros(n);
            CHECK_OK(nn_attn_forward(yo, saved, x, &p, &d, &ws));
            EXPECT(cs, "y", yo, y, n);
            CHECK_OK(nn_attn_forward(yo, NULL, x, &p, &d, &ws));
            EXPECT(cs, "y (no saved state)", yo, y, n);
            CHECK_OK(nn_attn_backward(dx, &g, gy, saved, x, &p, &d, &ws));
            EXPECT(cs, "dx", dx, gx, n);
            for (int i = 0; i < 10; i++) {
                char nm[64];
                snprintf(nm, sizeof nm, "d%s", attn_names[i]);
                if (i == 5) {
                    /* k.bias shifts every logit of a softmax row equally: its gradient is
                     * exactly zero, both sides hold rounding noise. */
                    test_diff dd = test_compare("attn dk.bias (exactly 0; abs check)", mine[i],
                                                gv[i], C);
                    CHECK(dd.max_abs < 1e-5);
                    continue;
                }
                EXPECT(cs, nm, mine[i], gv[i], i % 2 == 0 && i >= 2 ? C * C : C);
            }
            nn_attn_forward_naive(yo, x, &p, &d);
            EXPECT(cs, "y (naive)", yo, y, n);
            nn_workspace_free(&ws);
            free(saved); free(yo); free(dx);
        }
        for (int i = 0; i < 10; i++) {
            free(pv[i]); free(gv[i]); free(mine[i]);
        }
        free(x); free(y); free(gy); free(gx);
    }
    END_CASES("attn");
}

TEST(nn_ref_upsample)
{
    FOR_CASES("upsample", cs, m)
    {
        int64_t nc = (int64_t)(m[0] * m[1]), h = (int64_t)m[2], w = (int64_t)m[3];
        float *x = need(cs, "x", NULL), *y = need(cs, "y", NULL), *gy = need(cs, "gy", NULL);
        float *gx = need(cs, "gx", NULL);
        if (!x || !y || !gy || !gx)
            continue;
        float *yo = nnt_zeros(4 * nc * h * w), *dx = nnt_zeros(nc * h * w);
        nn_upsample2x_forward(yo, x, nc, h, w);
        EXPECT(cs, "y", yo, y, 4 * nc * h * w);
        nn_upsample2x_backward(dx, gy, nc, h, w);
        EXPECT(cs, "dx", dx, gx, nc * h * w);
        free(x); free(y); free(gy); free(gx); free(yo); free(dx);
    }
    END_CASES("upsample");
}

TEST(nn_ref_avgpool)
{
    FOR_CASES("avgpool", cs, m)
    {
        nn_avgpool_desc d;
        CHECK_OK(nn_avgpool_init(&d, (int64_t)(m[0] * m[1]), (int64_t)m[2], (int64_t)m[3],
                                 (int64_t)m[4], (int64_t)m[5], (int64_t)m[6]));
        int64_t nx = d.nc * d.h_in * d.w_in, ny = d.nc * d.h_out * d.w_out, ny_file;
        float *x = need(cs, "x", NULL), *y = need(cs, "y", &ny_file), *gy = need(cs, "gy", NULL);
        float *gx = need(cs, "gx", NULL);
        if (!x || !y || !gy || !gx)
            continue;
        CHECK(ny == ny_file);
        float *yo = nnt_zeros(ny), *dx = nnt_zeros(nx);
        nn_avgpool_forward(yo, x, &d);
        EXPECT(cs, "y", yo, y, ny);
        nn_avgpool_backward(dx, gy, &d);
        EXPECT(cs, "dx", dx, gx, nx);
        free(x); free(y); free(gy); free(gx); free(yo); free(dx);
    }
    END_CASES("avgpool");
}

TEST(nn_ref_concat)
{
    FOR_CASES("concat", cs, m)
    {
        int64_t N = (int64_t)m[0], ca = (int64_t)m[1], cb = (int64_t)m[2];
        int64_t hw = (int64_t)(m[3] * m[4]);
        float *a = need(cs, "a", NULL), *b = need(cs, "b", NULL), *y = need(cs, "y", NULL);
        float *gy = need(cs, "gy", NULL), *ga = need(cs, "ga", NULL), *gb = need(cs, "gb", NULL);
        if (!a || !b || !y || !gy || !ga || !gb)
            continue;
        float *yo = nnt_zeros(N * (ca + cb) * hw), *da = nnt_zeros(N * ca * hw);
        float *db = nnt_zeros(N * cb * hw);
        nn_concat_forward(yo, a, b, N, ca, cb, hw);
        EXPECT(cs, "y", yo, y, N * (ca + cb) * hw);
        nn_concat_backward(da, db, gy, N, ca, cb, hw);
        EXPECT(cs, "da", da, ga, N * ca * hw);
        EXPECT(cs, "db", db, gb, N * cb * hw);
        free(a); free(b); free(y); free(gy); free(ga); free(gb); free(yo); free(da); free(db);
    }
    END_CASES("concat");
}

static void loss_ref(const char *op, double (*fwd)(const float *, const float *, int64_t),
                     void (*bwd)(float *, float *, float, const float *, const float *, int64_t))
{
    FOR_CASES(op, cs, m)
    {
        int64_t n = (int64_t)m[0];
        float *x = need(cs, "x", NULL), *t = need(cs, "t", NULL), *y = need(cs, "y", NULL);
        float *gy = need(cs, "gy", NULL), *gx = need(cs, "gx", NULL), *gt = need(cs, "gt", NULL);
        if (!x || !t || !y || !gy || !gx || !gt)
            continue;
        float loss = (float)fwd(x, t, n), *dx = nnt_zeros(n), *dt = nnt_zeros(n);
        EXPECT(cs, "loss", &loss, y, 1);
        bwd(dx, dt, gy[0], x, t, n);
        EXPECT(cs, "dx", dx, gx, n);
        EXPECT(cs, "dt", dt, gt, n);
        free(x); free(t); free(y); free(gy); free(gx); free(gt); free(dx); free(dt);
    }
    END_CASES(op);
}

TEST(nn_ref_l1) { loss_ref("l1", nn_l1_loss_forward, nn_l1_loss_backward); }
TEST(nn_ref_mse) { loss_ref("mse", nn_mse_loss_forward, nn_mse_loss_backward); }
