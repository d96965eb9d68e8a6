/* LPIPS (src/eval/lpips.c) and MaxPool2d (src/nn/maxpool.c) against PyTorch
 * references written by tools/gen_lpips_ref.py (tests/ref/lpips), plus weight
 * loading round trips and error messages. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/lpips.h"
#include "io/weights.h"
#include "nn/nn.h"
#include "nn_testutil.h"
#include "optvq/optvq.h"
#include "test.h"

/* ---------------------------------------------------------------- helpers */

static void *load_npy(const char *rel, optvq_dtype want, int64_t *n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/lpips/%s", test_ref_dir(), rel);
    optvq_array a;
    if (optvq_npy_read(path, &a) != OPTVQ_OK) {
        fprintf(stderr, "    cannot read %s: %s\n", path, optvq_last_error());
        return NULL;
    }
    if (a.dtype != want && (want != OPTVQ_F32 || optvq_array_to_f32(&a) != OPTVQ_OK)) {
        optvq_array_free(&a);
        return NULL;
    }
    if (n)
        *n = optvq_array_numel(&a);
    return a.data;
}

/* The generator's det_fill: conv weights U * sqrt(6 / fan_in), biases U * 0.1,
 * heads |U| * 0.5 (float32 products, as torch computes them). */
static void det_fill(lpips_net *l)
{
    nn_params *ps = lpips_params(l);
    for (int i = 0; i < ps->count; i++) {
        nn_param *p = &ps->items[i];
        test_det_uniform(p->data, p->name, p->numel);
        if (!strncmp(p->name, "lin", 3)) {
            for (int64_t j = 0; j < p->numel; j++)
                p->data[j] = fabsf(p->data[j]) * 0.5f;
        } else if (p->ndim == 4) {
            float s = (float)sqrt(6.0 / (double)(p->shape[1] * p->shape[2] * p->shape[3]));
            for (int64_t j = 0; j < p->numel; j++)
                p->data[j] = p->data[j] * s;
        } else {
            for (int64_t j = 0; j < p->numel; j++)
                p->data[j] = p->data[j] * 0.1f;
        }
    }
}

static lpips_net *det_net(void)
{
    lpips_net *l = NULL;
    CHECK_OK(lpips_create(&l));
    if (l)
        det_fill(l);
    return l;
}

/* ---------------------------------------------------------------- maxpool */

TEST(maxpool_torch_ref)
{
    for (int c = 0; c < 3; c++) {
        char dir[64], name[96];
        snprintf(dir, sizeof dir, "maxpool_%d", c);
        snprintf(name, sizeof name, "%s/meta.npy", dir);
        int64_t nm = 0, nx = 0, ny = 0;
        double *m = load_npy(name, OPTVQ_F64, &nm);
        snprintf(name, sizeof name, "%s/x.npy", dir);
        float *x = load_npy(name, OPTVQ_F32, &nx);
        snprintf(name, sizeof name, "%s/y.npy", dir);
        float *y = load_npy(name, OPTVQ_F32, &ny);
        snprintf(name, sizeof name, "%s/dy.npy", dir);
        float *dy = load_npy(name, OPTVQ_F32, NULL);
        snprintf(name, sizeof name, "%s/dx.npy", dir);
        float *dx = load_npy(name, OPTVQ_F32, NULL);
        CHECK(m && x && y && dy && dx && nm == 7);
        if (!(m && x && y && dy && dx && nm == 7)) {
            free(m), free(x), free(y), free(dy), free(dx);
            continue;
        }
        nn_maxpool_desc d;
        CHECK_OK(nn_maxpool_init(&d, (int64_t)(m[0] * m[1]), (int64_t)m[2], (int64_t)m[3],
                                 (int64_t)m[4], (int64_t)m[5], (int64_t)m[6]));
        CHECK(d.nc * d.h_out * d.w_out == ny && d.nc * d.h_in * d.w_in == nx);
        float *yf = nnt_zeros(ny), *yn = nnt_zeros(ny), *gf = nnt_zeros(nx), *gn = nnt_zeros(nx);
        nn_maxpool_forward(yf, x, &d);
        nn_maxpool_forward_naive(yn, x, &d);
        nn_maxpool_backward(gf, dy, x, &d);
        nn_maxpool_backward_naive(gn, dy, x, &d);
        /* ties everywhere (small integers): routing must be exactly torch's */
        CHECK_MSG(!memcmp(yf, y, sizeof(float) * (size_t)ny), "%s: forward differs", dir);
        CHECK_MSG(!memcmp(yn, y, sizeof(float) * (size_t)ny), "%s: naive forward differs", dir);
        test_diff a = test_compare(dir, gf, dx, nx);
        test_diff b = test_compare(dir, gn, dx, nx);
        CHECK_MSG(a.max_abs == 0 && b.max_abs == 0, "%s: backward routing differs from torch", dir);
        /* accumulates */
        nn_maxpool_backward(gf, dy, x, &d);
        int acc_ok = 1;
        for (int64_t i = 0; i < nx; i++)
            acc_ok &= gf[i] == 2.0f * dx[i];
        CHECK_MSG(acc_ok, "%s: backward does not accumulate", dir);
        free(m), free(x), free(y), free(dy), free(dx), free(yf), free(yn), free(gf), free(gn);
    }
}

TEST(maxpool_fast_vs_naive)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, 99);
    const int64_t shapes[][6] = {{37, 17, 23, 2, 2, 0}, {64, 64, 48, 2, 2, 0},
                                 {5, 9, 11, 3, 2, 1}, {3, 8, 8, 3, 3, 0}, {2, 1, 1, 1, 1, 0}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t *sh = shapes[s];
        nn_maxpool_desc d;
        CHECK_OK(nn_maxpool_init(&d, sh[0], sh[1], sh[2], sh[3], sh[4], sh[5]));
        int64_t nx = d.nc * d.h_in * d.w_in, ny = d.nc * d.h_out * d.w_out;
        float *x = nnt_randn(&rng, nx, 1.0f), *dy = nnt_randn(&rng, ny, 1.0f);
        for (int64_t i = 0; i < nx; i += 7) /* some exact ties and zeros */
            x[i] = i % 2 ? 0.0f : x[i / 2];
        float *a = nnt_zeros(ny), *b = nnt_zeros(ny), *ga = nnt_zeros(nx), *gb = nnt_zeros(nx);
        nn_maxpool_forward(a, x, &d);
        nn_maxpool_forward_naive(b, x, &d);
        nn_maxpool_backward(ga, dy, x, &d);
        nn_maxpool_backward_naive(gb, dy, x, &d);
        CHECK_MSG(!memcmp(a, b, sizeof(float) * (size_t)ny) &&
                      !memcmp(ga, gb, sizeof(float) * (size_t)nx),
                  "maxpool shape %zu: fast and naive differ", s);
        free(x), free(dy), free(a), free(b), free(ga), free(gb);
    }
    nn_maxpool_desc d;
    CHECK(nn_maxpool_init(&d, 1, 4, 4, 3, 1, 2) == OPTVQ_ERR_INVALID_ARG); /* 2 pad > k */
    CHECK(nn_maxpool_init(&d, 1, 1, 4, 2, 2, 0) == OPTVQ_ERR_INVALID_ARG); /* h < k */
    /* NaN wins and propagates, like torch */
    float x[4] = {1.0f, NAN, 3.0f, 2.0f}, y[1], g[4] = {0}, dy[1] = {1.0f};
    CHECK_OK(nn_maxpool_init(&d, 1, 2, 2, 2, 2, 0));
    nn_maxpool_forward(y, x, &d);
    nn_maxpool_backward(g, dy, x, &d);
    CHECK(isnan(y[0]) && g[1] == 1.0f && g[0] == 0.0f && g[2] == 0.0f);
}

/* Finite differences on every element. Max pooling is piecewise linear, so the
 * inputs are a shuffled grid of distinct values 0.01 apart and the step (1e-3)
 * never changes an argmax: the difference quotient is then exact up to rounding. */
TEST(maxpool_finite_diff)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, 5);
    const int64_t shapes[][6] = {{3, 7, 9, 2, 2, 0}, {2, 7, 8, 3, 2, 1}, {2, 6, 6, 3, 3, 0}};
    for (int s = 0; s < 3; s++) {
        nn_maxpool_desc d;
        CHECK_OK(nn_maxpool_init(&d, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3],
                                 shapes[s][4], shapes[s][5]));
        int64_t nx = d.nc * d.h_in * d.w_in, ny = d.nc * d.h_out * d.w_out;
        float *x = nnt_zeros(nx), *y = nnt_zeros(ny), *g = nnt_zeros(nx);
        float *R = nnt_randn(&rng, ny, 1.0f);
        for (int64_t i = 0; i < nx; i++)
            x[i] = 0.01f * (float)(i - nx / 2);
        for (int64_t i = nx - 1; i > 0; i--) { /* Fisher-Yates */
            int64_t j = (int64_t)optvq_rng_below(&rng, (uint64_t)(i + 1));
            float t = x[i];
            x[i] = x[j];
            x[j] = t;
        }
        nn_maxpool_backward(g, R, x, &d);
        double worst = 0, gmax = 0;
        for (int64_t i = 0; i < nx; i++) {
            const float h = 1e-3f, xi = x[i];
            double l[2];
            for (int sgn = 0; sgn < 2; sgn++) {
                x[i] = xi + (sgn ? -h : h);
                nn_maxpool_forward(y, x, &d);
                l[sgn] = 0;
                for (int64_t j = 0; j < ny; j++)
                    l[sgn] += (double)y[j] * R[j];
            }
            x[i] = xi;
            double fd = (l[0] - l[1]) / ((double)(xi + h) - (double)(xi - h));
            worst = fmax(worst, fabs(fd - g[i]));
            gmax = fmax(gmax, fabs(g[i]));
        }
        printf("    maxpool shape %d: n=%lld max |fd - grad| = %.3g (max |grad| %.3g)\n", s,
               (long long)nx, worst, gmax);
        CHECK_MSG(worst < 1e-3 * gmax && gmax > 0, "maxpool shape %d: finite differences disagree",
                  s);
        free(x), free(y), free(g), free(R);
    }
}

/* ---------------------------------------------------------------- LPIPS parity */

static void parity_case(const char *cname, int64_t B, int64_t H, int64_t W)
{
    char p[128];
    int64_t n0 = 0, n1 = 0, nv = 0, ng = 0, ng64 = 0;
    snprintf(p, sizeof p, "%s/x0.npy", cname);
    float *x0 = load_npy(p, OPTVQ_F32, &n0);
    snprintf(p, sizeof p, "%s/x1.npy", cname);
    float *x1 = load_npy(p, OPTVQ_F32, &n1);
    snprintf(p, sizeof p, "%s/lpips.npy", cname);
    double *want = load_npy(p, OPTVQ_F64, &nv);
    snprintf(p, sizeof p, "%s/lpips64.npy", cname);
    double *want64 = load_npy(p, OPTVQ_F64, NULL);
    snprintf(p, sizeof p, "%s/dx1.npy", cname);
    float *gwant = load_npy(p, OPTVQ_F32, &ng);
    snprintf(p, sizeof p, "%s/dx1_64.npy", cname);
    float *gwant64 = load_npy(p, OPTVQ_F32, &ng64);
    lpips_net *l = det_net();
    const int64_t n = B * 3 * H * W;
    int ok = x0 && x1 && want && want64 && gwant && gwant64 && l && n0 == n && n1 == n &&
             nv == B && ng == n && ng64 == n;
    CHECK_MSG(ok, "%s: missing reference data", cname);
    if (ok) {
        double got[8], got2[8];
        CHECK_OK(lpips_forward(l, x0, x1, B, H, W, got, 1));
        for (int64_t b = 0; b < B; b++) {
            double rel = fabs(got[b] - want[b]) / fabs(want[b]);
            double rel64 = fabs(got[b] - want64[b]) / fabs(want64[b]);
            printf("    %s image %lld: lpips %.9f torch %.9f (rel %.2g) float64 %.9f (rel %.2g)\n",
                   cname, (long long)b, got[b], want[b], rel, want64[b], rel64);
            CHECK_MSG(rel < 1e-5, "%s: lpips rel error %.3g", cname, rel);
        }
        float *g = nnt_zeros(n);
        CHECK_OK(lpips_backward(l, 1.0f, g));
        char what[96];
        snprintf(what, sizeof what, "%s dx1 vs torch f32", cname);
        nnt_expect(what, g, gwant, n, 1e-9);
        /* float64 torch: the C float32 result is closer to it than torch float32 is */
        snprintf(what, sizeof what, "%s dx1 vs torch f64", cname);
        nnt_expect(what, g, gwant64, n, 1e-10);
        /* accumulation and scale: g += 0.5 * grad -> 1.5 * grad */
        float *g1 = nnt_copy(g, n);
        CHECK_OK(lpips_backward(l, 0.5f, g));
        double worst = 0;
        for (int64_t i = 0; i < n; i++)
            worst = fmax(worst, fabs(g[i] - 1.5 * g1[i]) / (fabs(1.5 * g1[i]) + 1e-9));
        CHECK_MSG(worst < 1e-5, "%s: backward(scale 0.5) does not accumulate (%.3g)", cname,
                  worst);
        /* inference forward: the same numbers, and no backward after it */
        CHECK_OK(lpips_forward(l, x0, x1, B, H, W, got2, 0));
        CHECK(!memcmp(got, got2, sizeof(double) * (size_t)B));
        CHECK(lpips_backward(l, 1.0f, g) == OPTVQ_ERR_STATE);
        /* a fresh net planned without gradients gives the same numbers */
        lpips_net *l2 = det_net();
        if (l2) {
            CHECK_OK(lpips_forward(l2, x0, x1, B, H, W, got2, 0));
            CHECK(!memcmp(got, got2, sizeof(double) * (size_t)B));
            /* identical inputs: zero distance, zero gradient */
            CHECK_OK(lpips_forward(l2, x1, x1, B, H, W, got2, 1));
            memset(g, 0, sizeof(float) * (size_t)n);
            CHECK_OK(lpips_backward(l2, 1.0f, g));
            double gm = 0;
            for (int64_t i = 0; i < n; i++)
                gm = fmax(gm, fabs(g[i]));
            CHECK_MSG(fabs(got2[0]) < 1e-12 && gm < 1e-12, "%s: LPIPS(x, x) = %.3g, |grad| %.3g",
                      cname, got2[0], gm);
            lpips_free(l2);
        }
        free(g), free(g1);
    }
    lpips_free(l);
    free(x0), free(x1), free(want), free(want64), free(gwant), free(gwant64);
}

TEST(lpips_torch_parity_square) { parity_case("sq", 2, 32, 32); }
TEST(lpips_torch_parity_rect) { parity_case("rect", 2, 48, 32); }

TEST(lpips_bad_args)
{
    lpips_net *l = det_net();
    if (!l)
        return;
    float x[3 * 16 * 16] = {0};
    double v[1];
    CHECK(lpips_forward(l, x, x, 1, 15, 16, v, 0) == OPTVQ_ERR_INVALID_ARG);
    CHECK(strstr(optvq_last_error(), "16..65536") != NULL);
    CHECK(lpips_forward(l, x, NULL, 1, 16, 16, v, 0) == OPTVQ_ERR_INVALID_ARG);
    CHECK(lpips_backward(l, 1.0f, x) == OPTVQ_ERR_STATE);
    /* the smallest size: 16x16 -> 1x1 at relu5_3 */
    CHECK_OK(lpips_forward(l, x, x, 1, 16, 16, v, 1));
    CHECK(v[0] == 0.0);
    CHECK_OK(lpips_backward(l, 1.0f, x));
    const char *none[1] = {"/nonexistent/vgg.pth"};
    lpips_net *bad = NULL;
    CHECK(lpips_load(none, 1, &bad) != OPTVQ_OK && bad == NULL);
    CHECK(lpips_load(none, 0, &bad) == OPTVQ_ERR_INVALID_ARG);
    lpips_free(l);
}

/* ---------------------------------------------------------------- loading */

/* Writes the net's tensors to a safetensors file under the naming `style`:
 * 0 whole LPIPS module (net.sliceK.N.*, linK.*, lins.K.*, scaling_layer.*),
 * 1 torchvision features.* only (+ a classifier tensor), 2 whole module with a
 * "model.loss.perceptual_loss." prefix inside a bigger checkpoint.
 * Only convs with features index < conv_limit are written (30: all), heads only
 * when `heads`; skip / bad_shape: a name to leave out / to write with a wrong
 * shape. Small files suffice for the error cases: lpips_load checks the heads
 * first, then the convs in order. */
static int slice_of_index(int idx)
{
    return idx < 4 ? 1 : idx < 9 ? 2 : idx < 16 ? 3 : idx < 23 ? 4 : 5;
}

static void write_store(lpips_net *l, const char *path, int style, int conv_limit, int heads,
                        const char *skip, const char *bad_shape)
{
    optvq_weights *w = NULL;
    CHECK_OK(optvq_weights_create(&w));
    if (!w)
        return;
    nn_params *ps = lpips_params(l);
    const char *pre = style == 2 ? "model.loss.perceptual_loss." : "";
    char name[256];
    for (int i = 0; i < ps->count; i++) {
        nn_param *p = &ps->items[i];
        int is_lin = !strncmp(p->name, "lin", 3);
        if (is_lin ? (style == 1 || !heads)
                   : atoi(p->name + strlen("features.")) >= conv_limit)
            continue;
        if (is_lin || style == 1) {
            snprintf(name, sizeof name, "%s%s", pre, p->name);
        } else {
            int idx = atoi(p->name + strlen("features."));
            snprintf(name, sizeof name, "%snet.slice%d.%s", pre, slice_of_index(idx),
                     p->name + strlen("features."));
        }
        if (skip && !strcmp(name, skip))
            continue;
        int64_t shape[4];
        memcpy(shape, p->shape, sizeof shape);
        if (bad_shape && !strcmp(name, bad_shape))
            shape[1] /= 2, shape[0] *= 2;
        CHECK_OK(optvq_weights_add(w, name, p->ndim, shape, p->data));
        if (is_lin && style != 1) { /* lpips's ModuleList alias, same values */
            snprintf(name, sizeof name, "%slins.%c.model.1.weight", pre, p->name[3]);
            CHECK_OK(optvq_weights_add(w, name, p->ndim, p->shape, p->data));
        }
    }
    const int64_t s4[4] = {1, 3, 1, 1}, cls[2] = {10, 25088 / 1024};
    if (style != 1) {
        const float shift[3] = {-.030f, -.088f, -.188f}, scale[3] = {.458f, .448f, .450f};
        snprintf(name, sizeof name, "%sscaling_layer.shift", pre);
        CHECK_OK(optvq_weights_add(w, name, 4, s4, shift));
        snprintf(name, sizeof name, "%sscaling_layer.scale", pre);
        CHECK_OK(optvq_weights_add(w, name, 4, s4, scale));
    } else {
        float *junk = nnt_zeros(cls[0] * cls[1]);
        CHECK_OK(optvq_weights_add(w, "classifier.0.weight", 2, cls, junk));
        free(junk);
    }
    if (style == 2) { /* other modules of a training checkpoint */
        float e[4] = {1, 2, 3, 4};
        const int64_t s1[1] = {4};
        CHECK_OK(optvq_weights_add(w, "model.encoder.conv_in.bias", 1, s1, e));
    }
    CHECK_OK(optvq_weights_save_safetensors(w, path));
    optvq_weights_free(w);
}

/* A small input pair shared by the load tests. */
static void small_inputs(float *x0, float *x1, int64_t n)
{
    test_det_uniform(x0, "x0", n);
    test_det_uniform(x1, "x1", n);
    for (int64_t i = 0; i < n; i++)
        x1[i] = 0.7f * x0[i] + 0.3f * x1[i];
}

static void expect_same_net(lpips_net *a, lpips_net *b, const char *what)
{
    enum { B = 1, H = 24, W = 16 };
    static float x0[B * 3 * H * W], x1[B * 3 * H * W];
    small_inputs(x0, x1, B * 3 * H * W);
    double va[B], vb[B];
    CHECK_OK(lpips_forward(a, x0, x1, B, H, W, va, 0));
    CHECK_OK(lpips_forward(b, x0, x1, B, H, W, vb, 0));
    CHECK_MSG(va[0] == vb[0] && va[0] > 0, "%s: loaded net gives %.9g, expected %.9g", what,
              vb[0], va[0]);
    nn_params *pa = lpips_params(a), *pb = lpips_params(b);
    CHECK(pa->total == pb->total && !memcmp(pa->data, pb->data, pa->total * sizeof(float)));
}

/* Full-size files (14.7M floats, 59 MB each): two of them, removed after use. */
TEST(lpips_load_roundtrip)
{
    lpips_net *ref = det_net();
    if (!ref)
        return;
    /* one file, whole LPIPS module names */
    const char *whole = tmp_path("lpips_whole.safetensors");
    write_store(ref, whole, 0, 30, 1, NULL, NULL);
    lpips_net *l = NULL;
    const char *p1[1] = {whole};
    CHECK_OK(lpips_load(p1, 1, &l));
    if (l)
        expect_same_net(ref, l, "whole module");
    lpips_free(l);
    l = NULL;
    remove(whole);

    /* two files: torchvision features (safetensors, with the classifier) + lpips
     * heads (.pth, written by tools/gen_lpips_ref.py in the layout of lpips's
     * weights/v0.1/vgg.pth) */
    const char *feats = tmp_path("vgg16_features.safetensors");
    write_store(ref, feats, 1, 30, 0, NULL, NULL);
    char lin_pth[1024];
    snprintf(lin_pth, sizeof lin_pth, "%s/lpips/vgg_lin.pth", test_ref_dir());
    const char *p3[2] = {feats, lin_pth};
    CHECK_OK(lpips_load(p3, 2, &l));
    if (l)
        expect_same_net(ref, l, "features + vgg_lin.pth");
    lpips_free(l);
    remove(feats);
    lpips_free(ref);
}

static void expect_load_error(const char *const *paths, int n, optvq_status want,
                              const char *must1, const char *must2, const char *must3)
{
    lpips_net *l = NULL;
    optvq_status st = lpips_load(paths, n, &l);
    const char *msg = optvq_last_error();
    printf("    -> %s\n", msg);
    CHECK_MSG(st == want && l == NULL, "expected %s, got %s", optvq_status_string(want),
              optvq_status_string(st));
    const char *must[3] = {must1, must2, must3};
    for (int i = 0; i < 3; i++)
        CHECK_MSG(!must[i] || strstr(msg, must[i]), "message lacks '%s'", must[i]);
    lpips_free(l);
}

/* Small partial files: the loader checks the heads, then the convs in order. */
TEST(lpips_load_errors)
{
    lpips_net *ref = det_net();
    if (!ref)
        return;
    /* a missing conv: named, with the file (convs 0..10 and the heads present) */
    const char *miss = tmp_path("lpips_missing.safetensors");
    write_store(ref, miss, 0, 12, 1, NULL, NULL);
    const char *p1[1] = {miss};
    expect_load_error(p1, 1, OPTVQ_ERR_FORMAT, "'net.slice3.12.weight'", "lpips_missing.safetensors",
                      "missing");
    remove(miss);

    /* a features-only file: the heads are missing */
    const char *feats = tmp_path("lpips_feats_only.safetensors");
    write_store(ref, feats, 1, 10, 0, NULL, NULL);
    const char *p2[1] = {feats};
    expect_load_error(p2, 1, OPTVQ_ERR_FORMAT, "'lin0.model.1.weight'", "missing", NULL);

    /* a wrong head shape: named, with both shapes */
    const char *bad = tmp_path("lpips_badshape.safetensors");
    write_store(ref, bad, 0, 0, 1, NULL, "lin2.model.1.weight");
    const char *p3[1] = {bad};
    expect_load_error(p3, 1, OPTVQ_ERR_FORMAT, "'lin2.model.1.weight'", "(2, 128, 1, 1)",
                      "(1, 256, 1, 1)");
    remove(bad);

    /* a wrong conv shape in the torchvision file of a pair */
    const char *badc = tmp_path("lpips_badconv.safetensors");
    write_store(ref, badc, 1, 8, 0, NULL, "features.7.weight");
    char lin_pth[1024];
    snprintf(lin_pth, sizeof lin_pth, "%s/lpips/vgg_lin.pth", test_ref_dir());
    const char *p4[2] = {badc, lin_pth};
    expect_load_error(p4, 2, OPTVQ_ERR_FORMAT, "'features.7.weight'", "lpips_badconv.safetensors",
                      "(128, 128, 3, 3)");
    remove(badc);

    /* prefixed names are found: the error is about the first absent conv */
    const char *pref = tmp_path("lpips_prefixed.safetensors");
    write_store(ref, pref, 2, 2, 1, NULL, NULL);
    const char *p5[1] = {pref};
    expect_load_error(p5, 1, OPTVQ_ERR_FORMAT, "'net.slice1.2.weight'", "missing", NULL);
    remove(pref);

    /* the same tensor in two files */
    const char *p6[2] = {lin_pth, lin_pth};
    expect_load_error(p6, 2, OPTVQ_ERR_FORMAT, "ambiguous", "lin0.model.1.weight", NULL);
    const char *p7[2] = {feats, lin_pth};
    expect_load_error(p7, 2, OPTVQ_ERR_FORMAT, "'net.slice3.10.weight'", "missing", NULL);
    remove(feats);
    lpips_free(ref);
}
