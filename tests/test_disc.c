/* PatchGAN discriminator, its GAN losses and its ops (batchnorm, leaky_relu):
 * PyTorch reference states from tools/gen_disc_ref.py (tests/ref/disc), finite
 * differences, fast-vs-naive kernels, and the error paths. */
#include "model/discriminator.h"
#include "optvq/train.h"
#include "nn/nn.h"
#include "nn_testutil.h"
#include "test.h"
#include "thread_group.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NMSE_MAX 1e-10

/* tests/ref/disc/<name>.npy as float32 (malloc'd), NULL (and a failure) when absent. */
static float *dload(const char *name, int64_t *n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/disc/%s.npy", test_ref_dir(), name);
    optvq_array a;
    if (optvq_npy_read(path, &a) != OPTVQ_OK || optvq_array_to_f32(&a) != OPTVQ_OK) {
        CHECK_MSG(0, "cannot read %s (run tools/gen_disc_ref.py)", path);
        return NULL;
    }
    if (n)
        *n = optvq_array_numel(&a);
    return (float *)a.data;
}

/* float64 vector (meta / loss values) */
static int dmeta(const char *name, double *m, int max)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/disc/%s.npy", test_ref_dir(), name);
    optvq_array a;
    if (optvq_npy_read(path, &a) != OPTVQ_OK) {
        CHECK_MSG(0, "cannot read %s (run tools/gen_disc_ref.py)", path);
        return 0;
    }
    int k = 0;
    if (a.dtype == OPTVQ_F64)
        for (; k < optvq_array_numel(&a) && k < max; k++)
            m[k] = ((double *)a.data)[k];
    optvq_array_free(&a);
    return k;
}

static void expect_rel(const char *what, double got, double want, double tol)
{
    double rel = fabs(got - want) / fmax(fabs(want), 1e-12);
    printf("    %-40s got %.9g want %.9g rel %.2e\n", what, got, want, rel);
    CHECK_MSG(rel <= tol, "%s: %.9g vs %.9g (rel %.3g)", what, got, want, rel);
}

/* ------------------------------------------------------------------------ */
/* batchnorm                                                                 */
/* ------------------------------------------------------------------------ */

TEST(batchnorm_ref)
{
    for (int ci = 0; ci < 4; ci++) {
        char nm[64];
        double m[4];
#define L(s) (snprintf(nm, sizeof nm, "bn_%d_%s", ci, s), dload(nm, NULL))
        snprintf(nm, sizeof nm, "bn_%d_meta", ci);
        if (dmeta(nm, m, 4) != 4)
            continue;
        const int64_t n = (int64_t)m[0], c = (int64_t)m[1], hw = (int64_t)(m[2] * m[3]);
        const int64_t cnt = n * c * hw;
        float *x = L("x"), *g = L("g"), *b = L("b"), *rm0 = L("rm0"), *rv0 = L("rv0");
        float *y = L("y"), *rm1 = L("rm1"), *rv1 = L("rv1"), *gy = L("gy"), *gx = L("gx");
        float *gg = L("gg"), *gb = L("gb");
#undef L
        if (!x || !g || !b || !rm0 || !rv0 || !y || !rm1 || !rv1 || !gy || !gx || !gg || !gb)
            continue;
        for (int naive = 0; naive < 2; naive++) {
            char lb[96];
            float *yo = nnt_zeros(cnt), *mean = nnt_zeros(c), *rstd = nnt_zeros(c);
            float *rm = nnt_copy(rm0, c), *rv = nnt_copy(rv0, c);
            float *dx = nnt_zeros(cnt), *dg = nnt_zeros(c), *db = nnt_zeros(c);
            if (naive) {
                nn_batchnorm_forward_naive(yo, mean, rstd, rm, rv, x, g, b, n, c, hw, 1e-5f, 0.1f);
                nn_batchnorm_backward_naive(dx, dg, db, gy, x, g, n, c, hw, 1e-5f);
            } else {
                CHECK_OK(nn_batchnorm_forward(yo, mean, rstd, rm, rv, x, g, b, n, c, hw, 1e-5f, 0.1f));
                CHECK_OK(nn_batchnorm_backward(dx, dg, db, gy, x, mean, rstd, g, n, c, hw));
            }
            const char *k = naive ? "naive" : "fast";
#define E(what, got, want, len)                                                   \
    do {                                                                          \
        snprintf(lb, sizeof lb, "bn_%d %s %s", ci, k, what);                      \
        nnt_expect(lb, got, want, len, NMSE_MAX);                                 \
    } while (0)
            E("y", yo, y, cnt);
            E("running_mean", rm, rm1, c);
            E("running_var", rv, rv1, c);
            E("dx", dx, gx, cnt);
            E("dgamma", dg, gg, c);
            E("dbeta", db, gb, c);
#undef E
            free(yo); free(mean); free(rstd); free(rm); free(rv); free(dx); free(dg); free(db);
        }
        free(x); free(g); free(b); free(rm0); free(rv0); free(y); free(rm1); free(rv1);
        free(gy); free(gx); free(gg); free(gb);
    }
}

typedef struct {
    int64_t n, c, hw;
    float *x, *g, *b, *y, *mean, *rstd, *dx, *dg, *db;
    int affine;
} bn_ctx;
static void bn_f(void *p)
{
    bn_ctx *k = p;
    CHECK_OK(nn_batchnorm_forward(k->y, k->mean, k->rstd, NULL, NULL, k->x, k->affine ? k->g : NULL,
                                  k->affine ? k->b : NULL, k->n, k->c, k->hw, 1e-5f, 0.1f));
}
static void bn_b(void *p, const float *gy)
{
    bn_ctx *k = p;
    CHECK_OK(nn_batchnorm_backward(k->dx, k->affine ? k->dg : NULL, k->affine ? k->db : NULL, gy,
                                   k->x, k->mean, k->rstd, k->affine ? k->g : NULL, k->n, k->c,
                                   k->hw));
}

TEST(batchnorm_grad)
{
    const int64_t cases[][4] = {{3, 4, 5, 1}, {1, 3, 7, 1}, {5, 2, 1, 1}, {2, 3, 6, 0}};
    optvq_rng rng;
    optvq_rng_seed(&rng, 31);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        bn_ctx k = {.n = cases[ci][0], .c = cases[ci][1], .hw = cases[ci][2], .affine = (int)cases[ci][3]};
        const int64_t cnt = k.n * k.c * k.hw;
        k.x = nnt_randn(&rng, cnt, 1.5f);
        for (int64_t i = 0; i < cnt; i++)
            k.x[i] += 0.5f;
        k.g = nnt_randn(&rng, k.c, 0.5f);
        for (int64_t i = 0; i < k.c; i++)
            k.g[i] += 1.0f;
        k.b = nnt_randn(&rng, k.c, 0.5f);
        k.y = nnt_zeros(cnt);
        k.mean = nnt_zeros(k.c);
        k.rstd = nnt_zeros(k.c);
        k.dx = nnt_zeros(cnt);
        k.dg = nnt_zeros(k.c);
        k.db = nnt_zeros(k.c);
        nnt_tensor ts[3] = {{"x", k.x, k.dx, cnt}, {"gamma", k.g, k.dg, k.c}, {"beta", k.b, k.db, k.c}};
        nnt_gradcheck("batchnorm", &k, bn_f, bn_b, k.y, cnt, ts, k.affine ? 3 : 1, 1e-2, 300 + ci);
        free(k.x); free(k.g); free(k.b); free(k.y); free(k.mean); free(k.rstd);
        free(k.dx); free(k.dg); free(k.db);
    }
}

/* The OpenMP path (large enough to go parallel) against the naive twin, y in place. */
TEST(batchnorm_fast_vs_naive)
{
    const int64_t n = 4, c = 24, hw = 13 * 11, cnt = n * c * hw;
    optvq_rng rng;
    optvq_rng_seed(&rng, 32);
    float *x = nnt_randn(&rng, cnt, 3.0f), *g = nnt_randn(&rng, c, 1.0f), *b = nnt_randn(&rng, c, 1.0f);
    float *gy = nnt_randn(&rng, cnt, 1.0f);
    for (int64_t i = 0; i < cnt; i++)
        x[i] += 10.0f;
    float *y0 = nnt_zeros(cnt), *y1 = nnt_copy(x, cnt), *m = nnt_zeros(c), *r = nnt_zeros(c);
    float *rm0 = nnt_zeros(c), *rv0 = nnt_zeros(c), *rm1 = nnt_zeros(c), *rv1 = nnt_zeros(c);
    float *dx0 = nnt_randn(&rng, cnt, 1.0f), *dx1 = nnt_copy(dx0, cnt);
    float *dg0 = nnt_zeros(c), *dg1 = nnt_zeros(c), *db0 = nnt_zeros(c), *db1 = nnt_zeros(c);
    nn_batchnorm_forward_naive(y0, NULL, NULL, rm0, rv0, x, g, b, n, c, hw, 1e-5f, 0.1f);
    CHECK_OK(nn_batchnorm_forward(y1, m, r, rm1, rv1, y1, g, b, n, c, hw, 1e-5f, 0.1f)); /* in place */
    nnt_expect("batchnorm fast/naive y (in place)", y1, y0, cnt, 1e-12);
    nnt_expect("batchnorm fast/naive running_var", rv1, rv0, c, 1e-12);
    nnt_expect("batchnorm fast/naive running_mean", rm1, rm0, c, 1e-12);
    nn_batchnorm_backward_naive(dx0, dg0, db0, gy, x, g, n, c, hw, 1e-5f);
    CHECK_OK(nn_batchnorm_backward(dx1, dg1, db1, gy, x, m, r, g, n, c, hw));
    nnt_expect("batchnorm fast/naive dx (accumulated)", dx1, dx0, cnt, 1e-12);
    nnt_expect("batchnorm fast/naive dgamma", dg1, dg0, c, 1e-12);
    nnt_expect("batchnorm fast/naive dbeta", db1, db0, c, 1e-12);
    /* one value per channel is an error, as in torch */
    CHECK(nn_batchnorm_forward(y1, m, r, NULL, NULL, x, g, b, 1, c, 1, 1e-5f, 0.1f) ==
          OPTVQ_ERR_INVALID_ARG);
    CHECK(strstr(optvq_last_error(), "more than 1 value") != NULL);
    free(x); free(g); free(b); free(gy); free(y0); free(y1); free(m); free(r); free(rm0);
    free(rv0); free(rm1); free(rv1); free(dx0); free(dx1); free(dg0); free(dg1); free(db0);
    free(db1);
}

/* ------------------------------------------------------------------------ */
/* leaky_relu                                                                */
/* ------------------------------------------------------------------------ */

TEST(leaky_relu_ref)
{
    int64_t n;
    float *x = dload("leaky_x", &n), *y = dload("leaky_y", NULL), *gy = dload("leaky_gy", NULL);
    float *gx = dload("leaky_gx", NULL);
    if (!x || !y || !gy || !gx)
        return;
    float *yo = nnt_zeros(n), *dx = nnt_zeros(n), *dx2 = nnt_zeros(n);
    nn_leaky_relu_forward(yo, x, n, 0.2f);
    nn_leaky_relu_backward(dx, gy, x, n, 0.2f);
    nnt_expect("leaky_relu y", yo, y, n, 0);
    nnt_expect("leaky_relu dx", dx, gx, n, 0);
    /* backward from the output (in-place use) gives the same */
    nn_leaky_relu_backward(dx2, gy, yo, n, 0.2f);
    nnt_expect("leaky_relu dx from y", dx2, gx, n, 0);
    /* in place */
    nn_leaky_relu_forward(x, x, n, 0.2f);
    nnt_expect("leaky_relu y in place", x, y, n, 0);
    free(x); free(y); free(gy); free(gx); free(yo); free(dx); free(dx2);
}

typedef struct {
    float *x, *y, *dx;
    int64_t n;
    float slope;
} lr_ctx;
static void lr_f(void *p)
{
    lr_ctx *k = p;
    nn_leaky_relu_forward(k->y, k->x, k->n, k->slope);
}
static void lr_b(void *p, const float *gy)
{
    lr_ctx *k = p;
    nn_leaky_relu_backward(k->dx, gy, k->x, k->n, k->slope);
}

TEST(leaky_relu_grad)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, 41);
    const float slopes[] = {0.2f, 0.01f, 0.0f};
    for (int s = 0; s < 3; s++) {
        lr_ctx k = {.n = 200000, .slope = slopes[s]}; /* large: the OpenMP path */
        k.x = nnt_randn(&rng, k.n, 1.0f);
        /* keep away from the kink so central differences are clean */
        for (int64_t i = 0; i < k.n; i++)
            if (fabsf(k.x[i]) < 0.05f)
                k.x[i] = k.x[i] < 0 ? -0.05f : 0.05f;
        k.y = nnt_zeros(k.n);
        k.dx = nnt_zeros(k.n);
        nnt_tensor ts[1] = {{"x", k.x, k.dx, k.n}};
        nnt_gradcheck("leaky_relu", &k, lr_f, lr_b, k.y, k.n, ts, 1, 1e-2, 400 + s);
        free(k.x); free(k.y); free(k.dx);
    }
}

/* ------------------------------------------------------------------------ */
/* discriminator                                                             */
/* ------------------------------------------------------------------------ */

static void compare_grads(discriminator *d, const char *prefix)
{
    nn_params *p = disc_params(d);
    for (int i = 0; i < p->count; i++) {
        char nm[256];
        snprintf(nm, sizeof nm, "%s%s", prefix, p->items[i].name);
        int64_t n = 0;
        float *want = dload(nm, &n);
        if (!want)
            continue;
        CHECK_MSG(n == p->items[i].numel, "%s: %lld values, want %lld", nm, (long long)p->items[i].numel,
                  (long long)n);
        if (n == p->items[i].numel)
            nnt_expect(nm, p->items[i].grad, want, n, NMSE_MAX);
        free(want);
    }
}

/* The reference's training step, replayed: generator step (D(fake), -mean, backward to
 * the input and D's parameters), then the discriminator step hinge(D(real), D(fake)). */
TEST(disc_ref_step)
{
    double m[10];
    if (dmeta("meta", m, 10) != 10)
        return;
    disc_config cfg = {(int64_t)m[0], (int64_t)m[1], (int64_t)m[2]};
    const int64_t B = (int64_t)m[3], H = (int64_t)m[4], W = (int64_t)m[5];
    discriminator *d = NULL;
    CHECK_OK(disc_create(&cfg, (uint64_t)m[6], &d));
    if (!d)
        return;
    nn_params *p = disc_params(d);
    CHECK(p->count == 13);
    /* init: the Python port of our RNG drew the same values */
    int64_t np_ = 0;
    float *probe = dload("init_probe", &np_);
    if (probe) {
        float *got = nnt_zeros(np_);
        int64_t k = 0;
        for (int i = 0; i < p->count && k < np_; i++)
            for (int64_t j = 0; j < p->items[i].numel && j < 4 && k < np_; j++)
                got[k++] = p->items[i].data[j];
        CHECK(k == np_);
        nnt_expect("disc init (Python port of the RNG)", got, probe, np_, 0);
        free(got);
        free(probe);
    }
    int64_t nx = 0;
    float *real = dload("real", &nx), *fake = dload("fake", NULL);
    float *gen_logits = dload("gen_logits", NULL), *gen_dx = dload("gen_dx", NULL);
    int64_t nl = 0;
    float *lr_want = dload("disc_logits_real", &nl), *lf_want = dload("disc_logits_fake", NULL);
    if (!real || !fake || !gen_logits || !gen_dx || !lr_want || !lf_want)
        goto done;
    CHECK(nx == B * cfg.in_channels * H * W);
    int64_t ho = 0, wo = 0;
    CHECK_OK(disc_output_size(d, H, W, &ho, &wo));
    CHECK(nl == B * ho * wo);

    /* generator step */
    nn_params_zero_grad(p);
    const float *logits = NULL;
    int64_t cnt = 0;
    float *g = nnt_zeros(nl), *dx = nnt_randn(&(optvq_rng){{1, 2, 3, 4}}, nx, 1.0f); /* overwritten */
    CHECK_OK(disc_forward(d, fake, B, H, W, &logits, &cnt));
    CHECK(cnt == nl);
    nnt_expect("gen step logits", logits, gen_logits, nl, NMSE_MAX);
    double loss_g = disc_g_loss(logits, cnt, 1.0f, g);
    expect_rel("loss_g", loss_g, m[7], 1e-5);
    CHECK_OK(disc_backward(d, g, dx));
    nnt_expect("gen step d fake", dx, gen_dx, nx, NMSE_MAX);
    compare_grads(d, "gen_grad_");

    /* discriminator step: real then fake, each term's backward after its forward */
    nn_params_zero_grad(p);
    float *lr_copy = nnt_zeros(nl), *gr = nnt_zeros(nl), *gf = nnt_zeros(nl);
    CHECK_OK(disc_forward(d, real, B, H, W, &logits, &cnt));
    nnt_expect("disc step logits real", logits, lr_want, nl, NMSE_MAX);
    memcpy(lr_copy, logits, sizeof(float) * (size_t)nl);
    double t_real = disc_d_loss_term(DISC_LOSS_HINGE, 1, logits, cnt, 1.0f, g);
    CHECK_OK(disc_backward(d, g, NULL));
    CHECK_OK(disc_forward(d, fake, B, H, W, &logits, &cnt));
    nnt_expect("disc step logits fake", logits, lf_want, nl, NMSE_MAX);
    double t_fake = disc_d_loss_term(DISC_LOSS_HINGE, 0, logits, cnt, 1.0f, g);
    CHECK_OK(disc_backward(d, g, NULL));
    expect_rel("loss_d (hinge, two halves)", t_real + t_fake, m[8], 1e-5);
    double both = disc_d_loss(DISC_LOSS_HINGE, lr_copy, nl, logits, cnt, 1.0f, gr, gf);
    expect_rel("loss_d (hinge, disc_d_loss)", both, m[8], 1e-5);
    compare_grads(d, "disc_grad_");

    /* running statistics after three forwards */
    CHECK(disc_buffer_count(d) == 9);
    for (int i = 0; i < disc_buffer_count(d); i++) {
        optvq_dtype dt;
        int64_t n = 0;
        void *buf = disc_buffer(d, i, &dt, &n);
        const char *name = disc_buffer_name(d, i);
        CHECK(buf && name);
        if (!buf || !name)
            continue;
        if (dt == OPTVQ_I64) {
            CHECK(strstr(name, "num_batches_tracked") != NULL && n == 1);
            CHECK_MSG(*(int64_t *)buf == (int64_t)m[9], "%s = %lld, want %lld", name,
                      (long long)*(int64_t *)buf, (long long)m[9]);
            continue;
        }
        char nm[256];
        snprintf(nm, sizeof nm, "buf_%s", name);
        int64_t nw = 0;
        float *want = dload(nm, &nw);
        if (want && nw == n)
            nnt_expect(nm, buf, want, n, NMSE_MAX);
        CHECK(want && nw == n);
        free(want);
    }
    CHECK(disc_buffer(d, 9, NULL, NULL) == NULL && disc_buffer_name(d, -1) == NULL);
    free(g); free(dx); free(lr_copy); free(gr); free(gf);
done:
    free(real); free(fake); free(gen_logits); free(gen_dx); free(lr_want); free(lf_want);
    disc_free(d);
}

TEST(disc_losses_ref)
{
    int64_t nr = 0, nf = 0;
    float *real = dload("loss_real", &nr), *fake = dload("loss_fake", &nf);
    float *hr = dload("loss_hinge_greal", NULL), *hf = dload("loss_hinge_gfake", NULL);
    float *vr = dload("loss_vanilla_greal", NULL), *vf = dload("loss_vanilla_gfake", NULL);
    float *gg = dload("loss_g_gfake", NULL);
    double vals[3];
    if (!real || !fake || !hr || !hf || !vr || !vf || !gg || dmeta("loss_values", vals, 3) != 3)
        goto done;
    float *gr = nnt_zeros(nr), *gf = nnt_zeros(nf);
    double h = disc_d_loss(DISC_LOSS_HINGE, real, nr, fake, nf, 1.0f, gr, gf);
    expect_rel("hinge_d_loss", h, vals[0], 1e-6);
    nnt_expect("hinge d real", gr, hr, nr, 1e-12);
    nnt_expect("hinge d fake", gf, hf, nf, 1e-12);
    double v = disc_d_loss(DISC_LOSS_VANILLA, real, nr, fake, nf, 1.0f, gr, gf);
    expect_rel("vanilla_d_loss", v, vals[1], 1e-6);
    nnt_expect("vanilla d real", gr, vr, nr, 1e-12);
    nnt_expect("vanilla d fake", gf, vf, nf, 1e-12);
    double lg = disc_g_loss(fake, nf, 1.0f, gf);
    expect_rel("g_loss", lg, vals[2], 1e-6);
    nnt_expect("g_loss d fake", gf, gg, nf, 1e-12);
    /* scale multiplies the gradient only */
    double h2 = disc_d_loss(DISC_LOSS_HINGE, real, nr, fake, nf, -3.0f, gr, gf);
    CHECK(h2 == h);
    for (int64_t i = 0; i < nr; i++)
        CHECK(fabsf(gr[i] + 3.0f * hr[i]) <= 1e-6f * fabsf(hr[i]) + 1e-12f);
    free(gr);
    free(gf);
done:
    free(real); free(fake); free(hr); free(hf); free(vr); free(vf); free(gg);
}

/* Finite differences through the whole network (the input and every parameter).
 * Along a random direction a whole-network loss crosses many LeakyReLU kinks, so the
 * step is 1e-3 of the tensor's rms (nnt_gradcheck's 1e-2 is too coarse here: errors of
 * ~5% at 1e-2 fall to ~1e-4 at 1e-3). Also: backward accumulates parameter gradients
 * and overwrites dx. */
static double disc_loss_R(discriminator *d, const float *x, int64_t b, int64_t h, int64_t w,
                          const float *R, int64_t nout)
{
    const float *lg = NULL;
    int64_t n = 0;
    CHECK_OK(disc_forward(d, x, b, h, w, &lg, &n));
    double s = 0;
    for (int64_t i = 0; i < n && i < nout && lg; i++)
        s += (double)lg[i] * R[i];
    return s;
}

TEST(disc_grad)
{
    disc_config cfg = {2, 3, 2};
    discriminator *d = NULL;
    CHECK_OK(disc_create(&cfg, 5, &d));
    if (!d)
        return;
    const int64_t B = 2, H = 16, W = 14, nx = B * 2 * H * W;
    int64_t ho, wo;
    CHECK_OK(disc_output_size(d, H, W, &ho, &wo));
    const int64_t nout = B * ho * wo;
    optvq_rng rng;
    optvq_rng_seed(&rng, 51);
    float *x = nnt_randn(&rng, nx, 1.0f), *R = nnt_randn(&rng, nout, 1.0f);
    float *dx = nnt_zeros(nx), *dx2 = nnt_randn(&rng, nx, 1.0f);
    /* larger weights than the N(0, .02) init so the check is not dominated by rounding */
    nn_params *p = disc_params(d);
    for (int i = 0; i < p->count; i++) {
        int bn = strstr(p->items[i].name, "main.3.weight") || strstr(p->items[i].name, "main.6.weight");
        for (int64_t j = 0; j < p->items[i].numel; j++)
            p->items[i].data[j] = (float)((bn ? 1.0 : 0.0) + 0.3 * optvq_rng_normal(&rng));
    }
    disc_loss_R(d, x, B, H, W, R, nout);
    nn_params_zero_grad(p);
    CHECK_OK(disc_backward(d, R, dx));
    float *g1 = nnt_copy(p->grad, (int64_t)p->total);
    CHECK_OK(disc_backward(d, R, dx2)); /* params accumulate, dx2 overwritten */
    double worst_acc = 0, worst_dx = 0;
    for (size_t j = 0; j < p->total; j++)
        worst_acc = fmax(worst_acc, fabs(p->grad[j] - 2.0 * g1[j]));
    for (int64_t j = 0; j < nx; j++)
        worst_dx = fmax(worst_dx, fabs(dx2[j] - dx[j]));
    CHECK_MSG(worst_acc <= 1e-5, "parameter gradients do not accumulate (%.3g)", worst_acc);
    CHECK_MSG(worst_dx == 0, "dx is not overwritten (%.3g)", worst_dx);
    for (int t = -1; t < p->count; t++) {
        float *data = t < 0 ? x : p->items[t].data;
        const float *g = t < 0 ? dx : g1 + p->items[t].offset;
        const int64_t n = t < 0 ? nx : p->items[t].numel;
        const char *name = t < 0 ? "x" : p->items[t].name + strlen(DISC_PREFIX);
        float *x0 = nnt_copy(data, n);
        double rms = 0, gn = 0;
        for (int64_t j = 0; j < n; j++) {
            rms += (double)x0[j] * x0[j];
            gn += (double)g[j] * g[j];
        }
        rms = sqrt(rms / n);
        gn = sqrt(gn);
        const double h = 1e-3 * fmax(rms, 0.1);
        double worst = 0;
        for (int k = 0; k < 3; k++) {
            float *v = nnt_randn(&rng, n, 1.0f);
            double an = 0;
            for (int64_t j = 0; j < n; j++)
                an += (double)g[j] * v[j];
            for (int64_t j = 0; j < n; j++)
                data[j] = (float)(x0[j] + h * v[j]);
            double lp = disc_loss_R(d, x, B, H, W, R, nout);
            for (int64_t j = 0; j < n; j++)
                data[j] = (float)(x0[j] - h * v[j]);
            double lm = disc_loss_R(d, x, B, H, W, R, nout);
            memcpy(data, x0, sizeof(float) * (size_t)n);
            worst = fmax(worst, fabs((lp - lm) / (2 * h) - an) / fmax(gn, 1e-12));
            free(v);
        }
        printf("    disc d%-16s n=%-6lld ||g||=%-9.4g dir_err=%.2e\n", name, (long long)n, gn, worst);
        CHECK_MSG(worst <= 1e-2 && gn > 0, "disc d%s: finite differences disagree", name);
        free(x0);
    }
    free(x); free(R); free(dx); free(dx2); free(g1);
    disc_free(d);
}

/* Names and shapes as the reference's state dict (ndf 64, n_layers 3). */
TEST(disc_names)
{
    disc_config cfg = {3, 64, 3};
    discriminator *d = NULL;
    CHECK_OK(disc_create(&cfg, 1, &d));
    if (!d)
        return;
    static const struct { const char *name; int64_t s[4]; } want[] = {
        {"main.0.weight", {64, 3, 4, 4}}, {"main.0.bias", {64}},
        {"main.2.weight", {128, 64, 4, 4}}, {"main.3.weight", {128}}, {"main.3.bias", {128}},
        {"main.5.weight", {256, 128, 4, 4}}, {"main.6.weight", {256}}, {"main.6.bias", {256}},
        {"main.8.weight", {512, 256, 4, 4}}, {"main.9.weight", {512}}, {"main.9.bias", {512}},
        {"main.11.weight", {1, 512, 4, 4}}, {"main.11.bias", {1}}};
    nn_params *p = disc_params(d);
    CHECK(p->count == 13);
    for (int i = 0; i < 13 && i < p->count; i++) {
        char nm[128];
        snprintf(nm, sizeof nm, DISC_PREFIX "%s", want[i].name);
        CHECK_MSG(!strcmp(p->items[i].name, nm), "param %d is %s, want %s", i, p->items[i].name, nm);
        for (int j = 0; j < p->items[i].ndim; j++)
            CHECK(p->items[i].shape[j] == want[i].s[j]);
    }
    static const char *bufs[] = {"main.3.running_mean", "main.3.running_var", "main.3.num_batches_tracked",
                                 "main.6.running_mean", "main.6.running_var", "main.6.num_batches_tracked",
                                 "main.9.running_mean", "main.9.running_var", "main.9.num_batches_tracked"};
    CHECK(disc_buffer_count(d) == 9);
    for (int i = 0; i < 9; i++) {
        char nm[128];
        snprintf(nm, sizeof nm, DISC_PREFIX "%s", bufs[i]);
        const char *got = disc_buffer_name(d, i);
        CHECK_MSG(got && !strcmp(got, nm), "buffer %d is %s, want %s", i, got ? got : "(null)", nm);
        optvq_dtype dt;
        int64_t n;
        void *b = disc_buffer(d, i, &dt, &n);
        CHECK(b != NULL);
        if (b && i % 3 == 0) /* running_mean 0, running_var 1 */
            CHECK(dt == OPTVQ_F32 && n == 64 << (i / 3 + 1) && ((float *)b)[0] == 0.0f &&
                  ((float *)b)[n] == 1.0f);
    }
    /* init statistics: conv weights N(0, .02), BN weight N(1, .02), BN bias 0,
     * conv bias within 1/sqrt(fan_in) */
    nn_param *w = nn_params_find(p, DISC_PREFIX "main.5.weight");
    nn_param *g = nn_params_find(p, DISC_PREFIX "main.9.weight");
    nn_param *bb = nn_params_find(p, DISC_PREFIX "main.9.bias");
    nn_param *cb = nn_params_find(p, DISC_PREFIX "main.0.bias");
    if (w && g && bb && cb) {
        double s = 0, ss = 0;
        for (int64_t j = 0; j < w->numel; j++) {
            s += w->data[j];
            ss += (double)w->data[j] * w->data[j];
        }
        double mean = s / w->numel, sd = sqrt(ss / w->numel - mean * mean);
        CHECK_MSG(fabs(mean) < 1e-3 && fabs(sd - 0.02) < 1e-3, "conv init mean %g sd %g", mean, sd);
        s = ss = 0;
        for (int64_t j = 0; j < g->numel; j++) {
            s += g->data[j];
            ss += (double)(g->data[j] - 1.0) * (g->data[j] - 1.0);
            CHECK(bb->data[j] == 0.0f);
        }
        CHECK_MSG(fabs(s / g->numel - 1.0) < 4e-3 && fabs(sqrt(ss / g->numel) - 0.02) < 4e-3,
                  "bn init mean %g", s / g->numel);
        for (int64_t j = 0; j < cb->numel; j++)
            CHECK(fabsf(cb->data[j]) <= 1.0f / sqrtf(48.0f));
    }
    int64_t ho, wo;
    CHECK_OK(disc_output_size(d, 256, 256, &ho, &wo));
    CHECK(ho == 30 && wo == 30); /* the 30x30 PatchGAN map at 256x256 */
    disc_free(d);
}

TEST(disc_errors)
{
    discriminator *d = NULL;
    disc_config bad = {3, 8, 0};
    CHECK(disc_create(&bad, 1, &d) == OPTVQ_ERR_INVALID_ARG && d == NULL);
    bad = (disc_config){0, 8, 3};
    CHECK(disc_create(&bad, 1, &d) == OPTVQ_ERR_INVALID_ARG && d == NULL);
    CHECK(disc_create(NULL, 1, &d) == OPTVQ_ERR_INVALID_ARG);
    disc_config cfg = {3, 4, 3};
    CHECK_OK(disc_create(&cfg, 1, &d));
    if (!d)
        return;
    float *x = nnt_zeros(2 * 3 * 40 * 40), *g = nnt_zeros(64);
    const float *lg = NULL;
    int64_t n = 0;
    /* backward before any forward */
    CHECK(disc_backward(d, g, NULL) == OPTVQ_ERR_STATE);
    /* too small: 23x23 gives no logit with n_layers 3; 24x24 gives 1x1 */
    optvq_status st = disc_forward(d, x, 1, 23, 40, &lg, &n);
    CHECK(st == OPTVQ_ERR_INVALID_ARG);
    printf("    23x40 input: %s\n", optvq_last_error());
    CHECK(strstr(optvq_last_error(), "too small") != NULL);
    CHECK(disc_output_size(d, 40, 23, NULL, NULL) == OPTVQ_ERR_INVALID_ARG);
    CHECK(disc_forward(d, x, 2, 0, 32, &lg, &n) == OPTVQ_ERR_INVALID_ARG);
    CHECK(disc_forward(d, x, 0, 32, 32, &lg, &n) == OPTVQ_ERR_INVALID_ARG);
    CHECK(disc_forward(d, NULL, 1, 32, 32, &lg, &n) == OPTVQ_ERR_INVALID_ARG);
    CHECK(disc_backward(d, g, NULL) == OPTVQ_ERR_STATE); /* failed forwards leave nothing */
    /* batch 1 at 24x24: the last BatchNorm sees a 2x2 map, fine; 1x1 logits */
    CHECK_OK(disc_forward(d, x, 1, 24, 24, &lg, &n));
    CHECK(n == 1);
    CHECK_OK(disc_backward(d, g, NULL));
    disc_free(d);
    /* n_layers 1: 6x6 is the smallest input (6 -> 3 -> 2 -> 1); 5x6 is too small. The
     * BatchNorm always sees >= 2x2 values, since the last conv needs a 2x2 input. */
    disc_config c1 = {3, 4, 1};
    CHECK_OK(disc_create(&c1, 1, &d));
    if (d) {
        CHECK(disc_forward(d, x, 1, 5, 6, &lg, &n) == OPTVQ_ERR_INVALID_ARG);
        CHECK_OK(disc_forward(d, x, 1, 6, 6, &lg, &n));
        CHECK(n == 1);
        disc_free(d);
    }
    free(x);
    free(g);
}

/* Changing the input shape re-plans (smaller: reuses, larger: grows) and gives the
 * same logits as a fresh discriminator. */
TEST(disc_reshape)
{
    disc_config cfg = {3, 4, 2};
    discriminator *a = NULL;
    CHECK_OK(disc_create(&cfg, 9, &a));
    if (!a)
        return;
    optvq_rng rng;
    optvq_rng_seed(&rng, 61);
    const int64_t shapes[][3] = {{2, 20, 18}, {1, 12, 12}, {3, 33, 29}, {2, 20, 18}};
    for (int s = 0; s < 4; s++) {
        const int64_t B = shapes[s][0], H = shapes[s][1], W = shapes[s][2], nx = B * 3 * H * W;
        float *x = nnt_randn(&rng, nx, 1.0f);
        const float *la = NULL;
        int64_t na = 0;
        CHECK_OK(disc_forward(a, x, B, H, W, &la, &na));
        float *fresh_copy = NULL;
        discriminator *f = NULL;
        CHECK_OK(disc_create(&cfg, 9, &f));
        /* the running statistics differ, the logits do not (batch statistics) */
        const float *lf = NULL;
        int64_t nf = 0;
        if (f)
            CHECK_OK(disc_forward(f, x, B, H, W, &lf, &nf));
        CHECK(na == nf && na > 0);
        if (na == nf && la && lf) {
            fresh_copy = nnt_copy(lf, nf);
            nnt_expect("reshaped vs fresh logits", la, fresh_copy, na, 0);
        }
        free(fresh_copy);
        disc_free(f);
        free(x);
    }
    disc_free(a);
}

/* ------------------------------------------------------------------------ */
/* SyncBatchNorm: two ranks (threads, summing through a barrier) on the two  */
/* halves of a batch equal BatchNorm on the whole batch; no group: the same  */
/* bits as nn_batchnorm_forward/_backward                                    */
/* ------------------------------------------------------------------------ */

typedef struct bn_rank {
    thread_member member;
    optvq_comm comm;
    int64_t n, c, hw;
    const float *x, *gy, *g, *b;
    float *y, *mean, *rstd, *rm, *rv, *dx, *dg, *db;
    optvq_status st;
} bn_rank;

static void *bn_rank_main(void *p)
{
    bn_rank *k = p;
    k->st = nn_batchnorm_forward_sync(k->y, k->mean, k->rstd, k->rm, k->rv, k->x, k->g, k->b, k->n, k->c, k->hw,
                                      1e-5f, 0.1f, &k->comm);
    if (k->st == OPTVQ_OK)
        k->st = nn_batchnorm_backward_sync(k->dx, k->dg, k->db, k->gy, k->x, k->mean, k->rstd, k->g, k->n, k->c,
                                           k->hw, &k->comm);
    return NULL;
}

TEST(batchnorm_sync)
{
    const int64_t n = 6, c = 5, hw = 7, half = n / 2 * c * hw, cnt = n * c * hw;
    optvq_rng rng;
    optvq_rng_seed(&rng, 77);
    float *x = nnt_randn(&rng, cnt, 1.0f), *gy = nnt_randn(&rng, cnt, 1.0f);
    float *g = nnt_randn(&rng, c, 1.0f), *b = nnt_randn(&rng, c, 1.0f);
    for (int64_t i = 0; i < cnt; i++)
        x[i] = 3.0f + 2.0f * x[i]; /* a mean away from 0 */
    /* the whole batch, one process */
    float *y = nnt_zeros(cnt), *mean = nnt_zeros(c), *rstd = nnt_zeros(c), *rm = nnt_zeros(c), *rv = nnt_zeros(c);
    float *dx = nnt_zeros(cnt), *dg = nnt_zeros(c), *db = nnt_zeros(c);
    CHECK_OK(nn_batchnorm_forward(y, mean, rstd, rm, rv, x, g, b, n, c, hw, 1e-5f, 0.1f));
    CHECK_OK(nn_batchnorm_backward(dx, dg, db, gy, x, mean, rstd, g, n, c, hw));
    /* the sync variants without a group: the same bits */
    {
        float *y1 = nnt_zeros(cnt), *m1 = nnt_zeros(c), *r1 = nnt_zeros(c), *rm1 = nnt_zeros(c), *rv1 = nnt_zeros(c);
        float *dx1 = nnt_zeros(cnt), *dg1 = nnt_zeros(c), *db1 = nnt_zeros(c);
        CHECK_OK(nn_batchnorm_forward_sync(y1, m1, r1, rm1, rv1, x, g, b, n, c, hw, 1e-5f, 0.1f, NULL));
        CHECK_OK(nn_batchnorm_backward_sync(dx1, dg1, db1, gy, x, m1, r1, g, n, c, hw, NULL));
        CHECK(!memcmp(y1, y, (size_t)cnt * sizeof(float)) && !memcmp(dx1, dx, (size_t)cnt * sizeof(float)));
        CHECK(!memcmp(dg1, dg, (size_t)c * sizeof(float)) && !memcmp(db1, db, (size_t)c * sizeof(float)));
        CHECK(!memcmp(rm1, rm, (size_t)c * sizeof(float)) && !memcmp(rv1, rv, (size_t)c * sizeof(float)));
        free(y1); free(m1); free(r1); free(rm1); free(rv1); free(dx1); free(dg1); free(db1);
    }
    /* two ranks, each with half of the images */
    thread_group gr;
    thread_group_init(&gr, 2);
    bn_rank k[2];
    pthread_t th[2];
    for (int r = 0; r < 2; r++) {
        k[r] = (bn_rank){{NULL, 0}, {0}, n / 2, c, hw, x + r * half, gy + r * half, g, b,
                         nnt_zeros(half), nnt_zeros(c), nnt_zeros(c), nnt_zeros(c), nnt_zeros(c), nnt_zeros(half),
                         nnt_zeros(c), nnt_zeros(c), OPTVQ_OK};
        k[r].comm = thread_group_join(&gr, r, &k[r].member);
        CHECK(pthread_create(&th[r], NULL, bn_rank_main, &k[r]) == 0);
    }
    for (int r = 0; r < 2; r++)
        pthread_join(th[r], NULL);
    thread_group_destroy(&gr);
    float *dg_sum = nnt_zeros(c), *db_sum = nnt_zeros(c);
    for (int r = 0; r < 2; r++) {
        CHECK_OK(k[r].st);
        nnt_expect("sync y", k[r].y, y + r * half, half, 1e-12);
        nnt_expect("sync dx", k[r].dx, dx + r * half, half, 1e-12);
        nnt_expect("sync running_mean", k[r].rm, rm, c, 1e-12);
        nnt_expect("sync running_var", k[r].rv, rv, c, 1e-12);
        for (int64_t i = 0; i < c; i++) {
            dg_sum[i] += k[r].dg[i];
            db_sum[i] += k[r].db[i];
        }
    }
    /* dgamma/dbeta are each rank's share: summed over the ranks, the whole batch's */
    nnt_expect("sync dgamma summed", dg_sum, dg, c, 1e-12);
    nnt_expect("sync dbeta summed", db_sum, db, c, 1e-12);
    for (int r = 0; r < 2; r++) {
        free(k[r].y); free(k[r].mean); free(k[r].rstd); free(k[r].rm); free(k[r].rv); free(k[r].dx);
        free(k[r].dg); free(k[r].db);
    }
    free(x); free(gy); free(g); free(b); free(y); free(mean); free(rstd); free(rm); free(rv);
    free(dx); free(dg); free(db); free(dg_sum); free(db_sum);
}
