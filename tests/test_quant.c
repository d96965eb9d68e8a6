/* Quantizer tests that need no reference files: finite-difference gradients,
 * determinism across thread counts, streamed == materialized, log-domain
 * robustness, decode, usage statistics, bad arguments. */
#include "optvq/optvq.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

typedef struct {
    optvq_quantizer *q;
    optvq_quantizer_config cfg;
    int64_t B, H, W, n, N, d;
    float *x, *G, *xq, *gx;
    int64_t *ind;
} fixture;

static void fill_normal(float *a, int64_t n, double scale, optvq_rng *rng)
{
    for (int64_t i = 0; i < n; i++)
        a[i] = (float)(optvq_rng_normal(rng) * scale);
}

static void fixture_init(fixture *f, optvq_quantizer_config cfg, int64_t B, int64_t H, int64_t W, uint64_t seed)
{
    memset(f, 0, sizeof *f);
    f->cfg = cfg;
    f->B = B;
    f->H = H;
    f->W = W;
    f->n = B * cfg.e_dim * H * W;
    f->d = cfg.e_dim / cfg.num_head;
    f->N = B * H * W * cfg.num_head;
    optvq_rng rng;
    optvq_rng_seed(&rng, seed);
    f->x = malloc((size_t)f->n * sizeof(float));
    f->G = malloc((size_t)f->n * sizeof(float));
    f->xq = malloc((size_t)f->n * sizeof(float));
    f->gx = calloc((size_t)f->n, sizeof(float));
    f->ind = malloc((size_t)f->N * sizeof(int64_t));
    fill_normal(f->x, f->n, 1.0, &rng);
    fill_normal(f->G, f->n, 1.0, &rng);
    CHECK_OK(optvq_quantizer_create(&cfg, seed, &f->q));
}

static void fixture_free(fixture *f)
{
    optvq_quantizer_free(f->q);
    free(f->x);
    free(f->G);
    free(f->xq);
    free(f->gx);
    free(f->ind);
}

/* Double-precision evaluation, with the assignment fixed, of the part of the
 * objective whose gradient reaches `wrt` (stop-gradients as in the reference):
 *   x:      the first loss term (the second stops at x)
 *   params: beta * second loss term (l2/l1), or the CE loss (which reaches both). */
static double objective(fixture *f, const float *dir, double step, int wrt_x)
{
    const int64_t d = f->d, h = f->cfg.num_head, n_e = f->cfg.n_e, C = f->cfg.e_dim;
    int64_t cnt;
    const float *E = optvq_quantizer_param(f->q, OPTVQ_PARAM_EMBEDDING, &cnt);
    const float *Wp = optvq_quantizer_param(f->q, OPTVQ_PARAM_PROJ_WEIGHT, &cnt);
    const float *bp = optvq_quantizer_param(f->q, OPTVQ_PARAM_PROJ_BIAS, &cnt);
    double *cb = malloc((size_t)(n_e * d) * sizeof(double));
    for (int64_t k = 0; k < n_e; k++)
        for (int64_t j = 0; j < d; j++) {
            double s = Wp ? bp[j] : 0;
            if (Wp)
                for (int64_t m = 0; m < d; m++)
                    s += (double)E[k * d + m] * Wp[j * d + m];
            else
                s = E[k * d + j];
            cb[k * d + j] = s;
        }
    double total = 0;
    const double numel = (double)f->N * (double)d;
    for (int64_t b = 0; b < f->B; b++)
        for (int64_t y = 0; y < f->H; y++)
            for (int64_t xx = 0; xx < f->W; xx++)
                for (int64_t hd = 0; hd < h; hd++) {
                    int64_t code = f->ind[((b * h + hd) * f->H + y) * f->W + xx];
                    double v[64];
                    for (int64_t j = 0; j < d; j++)
                        {
                            int64_t at = ((b * C + hd * d + j) * f->H + y) * f->W + xx;
                            v[j] = (double)f->x[at] + (dir ? step * dir[at] : 0.0);
                        }
                    if (f->cfg.loss == OPTVQ_LOSS_CE) {
                        double dk[512], mx = -1e300, s = 0;
                        for (int64_t k = 0; k < n_e; k++) {
                            double t = 0;
                            for (int64_t j = 0; j < d; j++)
                                t += (v[j] - cb[k * d + j]) * (v[j] - cb[k * d + j]);
                            dk[k] = -sqrt(t);
                            mx = dk[k] > mx ? dk[k] : mx;
                        }
                        for (int64_t k = 0; k < n_e; k++)
                            s += exp(dk[k] - mx);
                        total += (mx + log(s) - dk[code]) / (double)f->N;
                    } else {
                        for (int64_t j = 0; j < d; j++) {
                            double t = v[j] - cb[code * d + j];
                            double term = f->cfg.loss == OPTVQ_LOSS_L2 ? t * t : fabs(t);
                            total += (wrt_x ? 1.0 : f->cfg.beta) * term / numel;
                        }
                    }
                }
    free(cb);
    return total;
}

static void check_gradients(optvq_loss loss, int use_proj, int64_t heads)
{
    optvq_quantizer_config cfg;
    optvq_quantizer_config_default(&cfg);
    cfg.n_e = 13;
    cfg.e_dim = 8;
    cfg.num_head = heads;
    cfg.loss = loss;
    cfg.use_proj = use_proj;
    fixture f;
    fixture_init(&f, cfg, 2, 3, 2, 7 + (uint64_t)loss * 10 + (uint64_t)use_proj);
    CHECK_OK(optvq_quantizer_forward(f.q, f.x, f.B, f.H, f.W, f.xq, f.ind, NULL));
    /* straight-through: with the loss weighted 0, grad_x is exactly G */
    CHECK_OK(optvq_quantizer_backward(f.q, f.G, 0.0f, f.gx));
    CHECK(!memcmp(f.gx, f.G, (size_t)f.n * sizeof(float)));
    memset(f.gx, 0, (size_t)f.n * sizeof(float));
    /* the loss alone, so the identity part cannot mask an error */
    optvq_quantizer_zero_grad(f.q);
    CHECK_OK(optvq_quantizer_backward(f.q, NULL, 1.0f, f.gx));

    /* directional derivatives along random directions, central differences */
    optvq_rng rng;
    optvq_rng_seed(&rng, 99);
    const double h = 1e-3;
    float *dir = malloc((size_t)f.n * sizeof(float));
    for (int t = 0; t < 3; t++) {
        fill_normal(dir, f.n, 1.0, &rng);
        double analytic = 0;
        for (int64_t i = 0; i < f.n; i++)
            analytic += (double)f.gx[i] * dir[i];
        double fp = objective(&f, dir, h, 1), fm = objective(&f, dir, -h, 1);
        double numeric = (fp - fm) / (2 * h);
        printf("    grad_x loss %d proj %d heads %lld: analytic %.6g numeric %.6g\n", loss, use_proj,
               (long long)heads, analytic, numeric);
        CHECK_MSG(fabs(numeric - analytic) <= 1e-3 * fabs(numeric) + 1e-6,
                  "grad_x loss=%d proj=%d heads=%lld: analytic %.6g numeric %.6g", loss, use_proj, (long long)heads,
                  analytic, numeric);
    }
    optvq_param which[3] = {OPTVQ_PARAM_EMBEDDING, OPTVQ_PARAM_PROJ_WEIGHT, OPTVQ_PARAM_PROJ_BIAS};
    for (int w = 0; w < (use_proj ? 3 : 1); w++) {
        int64_t cnt;
        float *p = optvq_quantizer_param(f.q, which[w], &cnt);
        const float *g = optvq_quantizer_grad(f.q, which[w], &cnt);
        float *saved = malloc((size_t)cnt * sizeof(float)), *pd = malloc((size_t)cnt * sizeof(float));
        memcpy(saved, p, (size_t)cnt * sizeof(float));
        fill_normal(pd, cnt, 1.0, &rng);
        double analytic = 0;
        for (int64_t i = 0; i < cnt; i++)
            analytic += (double)g[i] * pd[i];
        for (int64_t i = 0; i < cnt; i++)
            p[i] = saved[i] + (float)(h * pd[i]);
        double fp = objective(&f, NULL, 0, 0);
        for (int64_t i = 0; i < cnt; i++)
            p[i] = saved[i] - (float)(h * pd[i]);
        double fm = objective(&f, NULL, 0, 0);
        memcpy(p, saved, (size_t)cnt * sizeof(float));
        double numeric = (fp - fm) / (2 * h);
        CHECK_MSG(fabs(numeric - analytic) <= 1e-3 * fabs(numeric) + 1e-6,
                  "grad param %d loss=%d proj=%d: analytic %.6g numeric %.6g", w, loss, use_proj, analytic, numeric);
        printf("    param %d loss %d proj %d heads %lld: analytic %.6g numeric %.6g\n", w, loss, use_proj,
               (long long)heads, analytic, numeric);
        free(saved);
        free(pd);
    }
    free(dir);
    fixture_free(&f);
}

TEST(quant_finite_difference_gradients)
{
    for (int loss = 0; loss < 3; loss++)
        for (int proj = 0; proj < 2; proj++) {
            check_gradients((optvq_loss)loss, proj, 1);
            check_gradients((optvq_loss)loss, proj, 4);
        }
}

/* Runs one forward+backward and returns a checksum-able copy of everything. */
typedef struct {
    int64_t *ind;
    float *xq, *gx, *gE, loss;
} run_out;

static run_out run_once(optvq_quantizer_config cfg, int threads, int64_t B, int64_t H, int64_t W)
{
    optvq_set_num_threads(threads);
    fixture f;
    fixture_init(&f, cfg, B, H, W, 5);
    run_out r = {0};
    CHECK_OK(optvq_quantizer_forward(f.q, f.x, B, H, W, f.xq, f.ind, &r.loss));
    optvq_quantizer_zero_grad(f.q);
    CHECK_OK(optvq_quantizer_backward(f.q, f.G, 1.0f, f.gx));
    int64_t ne;
    const float *gE = optvq_quantizer_grad(f.q, OPTVQ_PARAM_EMBEDDING, &ne);
    r.gE = malloc((size_t)ne * sizeof(float));
    memcpy(r.gE, gE, (size_t)ne * sizeof(float));
    r.ind = f.ind;
    r.xq = f.xq;
    r.gx = f.gx;
    f.ind = NULL;
    f.xq = f.gx = NULL;
    fixture_free(&f);
    optvq_set_num_threads(0);
    return r;
}

static void run_free(run_out *r)
{
    free(r->ind);
    free(r->xq);
    free(r->gx);
    free(r->gE);
}

TEST(quant_deterministic_across_thread_counts)
{
    for (int variant = 0; variant < 4; variant++) {
        optvq_quantizer_config cfg;
        optvq_quantizer_config_default(&cfg);
        cfg.n_e = 300;
        cfg.e_dim = 32;
        cfg.num_head = 2;
        cfg.log_domain = variant == 1;
        if (variant == 2)
            cfg.workspace_bytes = 4096; /* streamed */
        if (variant == 3) {
            cfg.assign = OPTVQ_ASSIGN_NEAREST;
            cfg.loss = OPTVQ_LOSS_CE;
        }
        const int64_t B = 3, H = 9, W = 11, n = B * cfg.e_dim * H * W, N = B * H * W * cfg.num_head;
        run_out a = run_once(cfg, 1, B, H, W), b = run_once(cfg, 2, B, H, W), c = run_once(cfg, 3, B, H, W);
        CHECK_MSG(!memcmp(a.ind, b.ind, (size_t)N * 8) && !memcmp(a.ind, c.ind, (size_t)N * 8),
                  "variant %d: indices differ across thread counts", variant);
        CHECK_MSG(!memcmp(a.xq, c.xq, (size_t)n * 4) && !memcmp(a.gx, b.gx, (size_t)n * 4) &&
                      !memcmp(a.gx, c.gx, (size_t)n * 4),
                  "variant %d: outputs differ across thread counts", variant);
        CHECK_MSG(!memcmp(a.gE, b.gE, (size_t)(cfg.n_e * 16) * 4) && !memcmp(a.gE, c.gE, (size_t)(cfg.n_e * 16) * 4),
                  "variant %d: embedding gradients differ across thread counts", variant);
        CHECK_MSG(a.loss == b.loss && a.loss == c.loss, "variant %d: loss differs", variant);
        run_free(&a);
        run_free(&b);
        run_free(&c);
    }
}

TEST(quant_streamed_and_log_domain_match_materialized)
{
    /* a few thousand vectors so that many blocks and chunks are exercised;
     * the three normalisations at 5 iterations, then 0, 1 and 2 iterations
     * (the materialized path treats the first and the last one apart) */
    for (int variant = 0; variant < 6; variant++) {
        const int mode = variant < 3 ? variant : 0, n_iters = variant < 3 ? 5 : variant - 3;
        optvq_quantizer_config cfg;
        optvq_quantizer_config_default(&cfg);
        cfg.n_e = 1000;
        cfg.e_dim = 8;
        cfg.num_head = 4;
        cfg.normalize = (optvq_normalize)mode;
        cfg.n_iters = n_iters;
        const int64_t B = 8, H = 16, W = 16, N = B * H * W * 4;
        run_out m = run_once(cfg, 2, B, H, W);
        cfg.workspace_bytes = 1;
        run_out s = run_once(cfg, 2, B, H, W);
        cfg.log_domain = 1;
        run_out l = run_once(cfg, 2, B, H, W);
        cfg.workspace_bytes = 0;
        run_out lm = run_once(cfg, 2, B, H, W);
        int64_t ds = 0, dl = 0, dlm = 0;
        for (int64_t i = 0; i < N; i++) {
            ds += m.ind[i] != s.ind[i];
            dl += m.ind[i] != l.ind[i];
            dlm += l.ind[i] != lm.ind[i];
        }
        printf("    normalize %d, %d iterations: %lld vectors, streamed differs at %lld, log-domain at %lld, log "
               "streamed vs materialized at %lld\n",
               mode, n_iters, (long long)N, (long long)ds, (long long)dl, (long long)dlm);
        /* different float rounding may flip exact near-ties only */
        CHECK_MSG(ds <= N / 2000 && dl <= N / 2000, "normalize %d, %d iterations: too many index differences", mode,
                  n_iters);
        CHECK_MSG(dlm == 0, "log-domain result depends on the path");
        run_free(&m);
        run_free(&s);
        run_free(&l);
        run_free(&lm);
    }
}

TEST(quant_log_domain_never_underflows)
{
    /* far-apart, identical and collinear points, epsilon over [0.1, 1000] */
    const float eps_values[] = {0.1f, 1.0f, 10.0f, 100.0f, 1000.0f};
    for (int shape = 0; shape < 3; shape++)
        for (int e = 0; e < 5; e++) {
            optvq_quantizer_config cfg;
            optvq_quantizer_config_default(&cfg);
            cfg.n_e = 16;
            cfg.e_dim = 2;
            cfg.epsilon = eps_values[e];
            cfg.normalize = OPTVQ_NORMALIZE_NULL;
            cfg.use_proj = 0;
            cfg.log_domain = 1;
            optvq_quantizer *q;
            CHECK_OK(optvq_quantizer_create(&cfg, 1, &q));
            float *E = optvq_quantizer_param(q, OPTVQ_PARAM_EMBEDDING, NULL);
            const int64_t N = 64;
            float x[128], xq[128];
            int64_t ind[64];
            for (int64_t i = 0; i < N; i++) {
                float t = (float)i;
                x[2 * i] = shape == 0 ? 1000.0f * t : shape == 1 ? 5.0f : t;
                x[2 * i + 1] = shape == 0 ? -500.0f * t : shape == 1 ? 5.0f : 2.0f * t;
            }
            for (int k = 0; k < 16; k++) {
                E[2 * k] = 3000.0f * (float)k;
                E[2 * k + 1] = -1500.0f * (float)k;
            }
            float loss;
            CHECK_OK(optvq_quantizer_forward(q, x, N, 1, 1, xq, ind, &loss));
            optvq_usage u;
            CHECK_OK(optvq_usage_compute(ind, N, 16, &u));
            CHECK_MSG(isfinite(loss), "shape %d eps %g: loss not finite", shape, eps_values[e]);
            if (shape == 0)
                /* far apart: the transport still spreads mass over many codes */
                CHECK_MSG(u.codes_used >= 8, "shape %d eps %g: only %lld codes used", shape, eps_values[e],
                          (long long)u.codes_used);
            optvq_quantizer_free(q);
        }
}

TEST(quant_decode_equals_forward)
{
    optvq_quantizer_config cfg;
    optvq_quantizer_config_default(&cfg);
    cfg.n_e = 64;
    cfg.e_dim = 12;
    cfg.num_head = 3;
    fixture f;
    fixture_init(&f, cfg, 2, 5, 4, 3);
    CHECK_OK(optvq_quantizer_forward(f.q, f.x, 2, 5, 4, f.xq, f.ind, NULL));
    float *dec = malloc((size_t)f.n * sizeof(float));
    CHECK_OK(optvq_quantizer_decode(f.q, f.ind, 2, 5, 4, dec));
    CHECK(!memcmp(dec, f.xq, (size_t)f.n * sizeof(float)));
    f.ind[3] = 64;
    CHECK(optvq_quantizer_decode(f.q, f.ind, 2, 5, 4, dec) == OPTVQ_ERR_INVALID_ARG);
    CHECK(strstr(optvq_last_error(), "outside") != NULL);
    free(dec);
    fixture_free(&f);
}

TEST(quant_usage_statistics)
{
    int64_t ind[8] = {0, 0, 1, 1, 2, 2, 3, 3};
    optvq_usage u;
    CHECK_OK(optvq_usage_compute(ind, 8, 8, &u));
    CHECK(u.codes_used == 4 && u.dead_codes == 4);
    CHECK(fabs(u.fraction_used - 0.5) < 1e-12);
    CHECK(fabs(u.perplexity - 4.0) < 1e-9);
    ind[0] = -1;
    CHECK(optvq_usage_compute(ind, 8, 8, &u) == OPTVQ_ERR_INVALID_ARG);
}

TEST(quant_rejects_bad_arguments_and_nan)
{
    optvq_quantizer_config cfg;
    optvq_quantizer_config_default(&cfg);
    optvq_quantizer *q = NULL;
    cfg.num_head = 3; /* 256 % 3 != 0 */
    CHECK(optvq_quantizer_create(&cfg, 0, &q) == OPTVQ_ERR_INVALID_ARG && q == NULL);
    optvq_quantizer_config_default(&cfg);
    cfg.epsilon = -1;
    CHECK(optvq_quantizer_create(&cfg, 0, &q) == OPTVQ_ERR_INVALID_ARG);
    optvq_quantizer_config_default(&cfg);
    cfg.n_e = 0;
    CHECK(optvq_quantizer_create(&cfg, 0, &q) == OPTVQ_ERR_INVALID_ARG);
    optvq_quantizer_config_default(&cfg);
    cfg.e_dim = 4;
    cfg.n_e = 8;
    CHECK_OK(optvq_quantizer_create(&cfg, 0, &q));
    float x[8] = {1, 2, 3, NAN, 5, 6, 7, 8}, xq[8];
    CHECK(optvq_quantizer_forward(q, x, 2, 1, 1, xq, NULL, NULL) == OPTVQ_ERR_NUMERIC);
    CHECK(optvq_quantizer_backward(q, NULL, 1.0f, NULL) == OPTVQ_ERR_STATE);
    x[3] = 4;
    optvq_quantizer_param(q, OPTVQ_PARAM_EMBEDDING, NULL)[5] = INFINITY;
    CHECK(optvq_quantizer_forward(q, x, 2, 1, 1, xq, NULL, NULL) == OPTVQ_ERR_NUMERIC);
    optvq_quantizer_free(q);
}
