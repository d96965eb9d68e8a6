/* Numerical hostility: NaN/Inf in the quantizer's inputs, parameters and
 * weight files give a clear error (OPTVQ_ERR_NUMERIC, one line), never a
 * hang or a silent NaN; the Sinkhorn quantizer stays finite and terminates
 * for epsilon in {0.1, 1, 10, 100, 1000}, for identical, collinear and
 * far-apart (1e6) points, with every normalize mode, on the default
 * (faithful) path and the log-domain path.
 *
 * What the default path returns where the float32 reference underflows:
 * exp(-epsilon * D) is computed in float32, as in the reference, so a row
 * whose every entry is below ~1e-45 becomes all zeros; the Sinkhorn
 * normalisations keep it at zero (0 / (0 + 1e-8)) and torch.argmax of an
 * all-zero row is its first entry, so such a vector gets CODE 0 — the
 * reference's own answer. That happens with normalize "null" (or "dim") and
 * large distances, e.g. points 1e6 away from every code, and with
 * normalize "all" at epsilon 1000 for the rows far from the global minimum.
 * The outputs stay finite (x_q is then code 0, the loss its distance). The
 * log-domain path never underflows and returns the code the transport plan
 * favours. hostile_sinkhorn_underflow_documented checks both answers. */
#include "core/error.h"
#include "io/weights.h"
#include "optvq/optvq.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int one_line(const char *msg)
{
    return msg[0] && !strchr(msg, '\n') && !strchr(msg, '\r');
}

static optvq_quantizer *make_q(int64_t n_e, int64_t e_dim, int64_t heads, optvq_assign assign, optvq_normalize mode,
                               float eps, int log_domain, int use_proj)
{
    optvq_quantizer_config cfg;
    optvq_quantizer_config_default(&cfg);
    cfg.n_e = n_e;
    cfg.e_dim = e_dim;
    cfg.num_head = heads;
    cfg.assign = assign;
    cfg.normalize = mode;
    cfg.epsilon = eps;
    cfg.log_domain = log_domain;
    cfg.use_proj = use_proj;
    optvq_quantizer *q = NULL;
    optvq_status st = optvq_quantizer_create(&cfg, 5, &q);
    CHECK_MSG(st == OPTVQ_OK, "create: %s", optvq_last_error());
    return q;
}

/* ---- NaN / Inf ------------------------------------------------------------ */

TEST(hostile_nan_inf_input_is_refused)
{
    const float bad[] = {NAN, INFINITY, -INFINITY, 1e30f /* its squared norm overflows float32 */};
    const char *what[] = {"NaN", "+Inf", "-Inf", "1e30"};
    for (int a = 0; a < 3; a++) {
        optvq_assign assign = a == 2 ? OPTVQ_ASSIGN_NEAREST : OPTVQ_ASSIGN_SINKHORN;
        optvq_quantizer *q = make_q(16, 8, 2, assign, OPTVQ_NORMALIZE_ALL, 10, a == 1, 1);
        if (!q)
            return;
        float x[6 * 8], xq[6 * 8], loss = 0;
        int64_t idx[6 * 2];
        for (int b = 0; b < 4; b++)
            for (int pos = 0; pos < 6 * 8; pos += 13) {
                for (int i = 0; i < 6 * 8; i++)
                    x[i] = (float)(i % 7) - 3.0f;
                x[pos] = bad[b];
                optvq_clear_error();
                optvq_status st = optvq_quantizer_forward(q, x, 6, 1, 1, xq, idx, &loss);
                CHECK_MSG(st == OPTVQ_ERR_NUMERIC, "assign %d, %s at %d: status %d", a, what[b], pos, (int)st);
                CHECK(one_line(optvq_last_error()));
                /* no state is left for backward */
                CHECK(optvq_quantizer_backward(q, NULL, 1.0f, NULL) == OPTVQ_ERR_STATE);
            }
        /* and a clean input afterwards works */
        for (int i = 0; i < 6 * 8; i++)
            x[i] = (float)(i % 7) - 3.0f;
        CHECK_OK(optvq_quantizer_forward(q, x, 6, 1, 1, xq, idx, &loss));
        CHECK(isfinite(loss));
        optvq_quantizer_free(q);
    }
}

TEST(hostile_nan_inf_parameters_are_refused)
{
    const optvq_param which[] = {OPTVQ_PARAM_EMBEDDING, OPTVQ_PARAM_PROJ_WEIGHT, OPTVQ_PARAM_PROJ_BIAS};
    const float bad[] = {NAN, INFINITY, 3e38f /* finite, but the code's squared norm overflows */};
    for (int p = 0; p < 3; p++)
        for (int b = 0; b < 3; b++)
            for (int a = 0; a < 2; a++) {
                optvq_quantizer *q = make_q(8, 4, 1, a ? OPTVQ_ASSIGN_NEAREST : OPTVQ_ASSIGN_SINKHORN,
                                            OPTVQ_NORMALIZE_ALL, 10, 0, 1);
                if (!q)
                    return;
                int64_t n;
                float *param = optvq_quantizer_param(q, which[p], &n);
                float keep = param[n / 2];
                param[n / 2] = bad[b];
                float x[5 * 4], xq[5 * 4], loss;
                int64_t idx[5];
                for (int i = 0; i < 5 * 4; i++)
                    x[i] = (float)i / 7.0f;
                optvq_clear_error();
                optvq_status st = optvq_quantizer_forward(q, x, 5, 1, 1, xq, idx, &loss);
                CHECK_MSG(st == OPTVQ_ERR_NUMERIC, "param %d value %d assign %d: status %d", p, b, a, (int)st);
                CHECK(one_line(optvq_last_error()));
                float cb[8 * 4];
                CHECK(optvq_quantizer_codebook(q, cb) == OPTVQ_ERR_NUMERIC);
                int64_t codes[5] = {0, 1, 2, 3, 4};
                CHECK(optvq_quantizer_decode(q, codes, 5, 1, 1, xq) == OPTVQ_ERR_NUMERIC);
                param[n / 2] = keep; /* repaired, it works again */
                CHECK_OK(optvq_quantizer_forward(q, x, 5, 1, 1, xq, idx, &loss));
                optvq_quantizer_free(q);
            }
}

TEST(hostile_nan_and_inf_config_values_are_refused)
{
    optvq_quantizer_config cfg;
    optvq_quantizer_config_default(&cfg);
    cfg.n_e = 4, cfg.e_dim = 4;
    const float eps[] = {NAN, INFINITY, 0.0f, -1.0f};
    for (int i = 0; i < 4; i++) {
        cfg.epsilon = eps[i];
        optvq_quantizer *q = NULL;
        CHECK(optvq_quantizer_create(&cfg, 1, &q) == OPTVQ_ERR_INVALID_ARG && q == NULL);
    }
    cfg.epsilon = 10;
    cfg.beta = NAN;
    optvq_quantizer *q = NULL;
    CHECK(optvq_quantizer_create(&cfg, 1, &q) == OPTVQ_ERR_INVALID_ARG && q == NULL);
}

/* ---- Sinkhorn stays finite -------------------------------------------------- */

enum { SET_IDENTICAL, SET_IDENTICAL_CODES, SET_COLLINEAR, SET_FAR, N_SETS };
static const char *set_name[] = {"identical points", "identical points and codes", "collinear",
                                 "far apart (1e6)"};

/* N vectors of dimension d (one head) and n_e codes, written into x and
 * the embedding (projection off). */
static void fill_set(int set, float *x, int64_t N, float *emb, int64_t n_e, int64_t d)
{
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < d; j++) {
            float v;
            switch (set) {
            case SET_IDENTICAL:
            case SET_IDENTICAL_CODES: v = 0.5f + 0.1f * (float)j; break;
            case SET_COLLINEAR: v = (float)(i - N / 2) * (1.0f + (float)j); break; /* t * (1, 2, 3, ...) */
            default: v = (float)(i % 4) * 1e6f + (j == 0 ? (float)i : 0.0f); break; /* 4 clusters 1e6 apart */
            }
            x[i * d + j] = v; /* (N, C) with H = W = 1 */
        }
    for (int64_t k = 0; k < n_e; k++)
        for (int64_t j = 0; j < d; j++) {
            float v;
            switch (set) {
            case SET_IDENTICAL_CODES: v = -1.0f; break;
            case SET_COLLINEAR: v = (float)(k - n_e / 2) * 0.7f * (1.0f + (float)j); break;
            case SET_FAR: v = (float)(k % 4) * 1e6f + (float)(k / 4) + 0.25f * (float)j; break;
            default: v = (float)((k * 7 + j * 3) % 11) / 5.0f - 1.0f; break;
            }
            emb[k * d + j] = v;
        }
}

TEST(hostile_sinkhorn_finite_for_every_epsilon_and_point_set)
{
    const float eps[] = {0.1f, 1.0f, 10.0f, 100.0f, 1000.0f};
    const int64_t N = 24, n_e = 12, d = 3;
    float x[24 * 3], xq[24 * 3], gx[24 * 3], loss;
    int64_t idx[24];
    int runs = 0;
    for (int set = 0; set < N_SETS; set++)
        for (int mode = 0; mode < 3; mode++)
            for (int e = 0; e < 5; e++)
                for (int ld = 0; ld < 2; ld++) {
                    optvq_quantizer *q = make_q(n_e, d, 1, OPTVQ_ASSIGN_SINKHORN, (optvq_normalize)mode, eps[e], ld, 0);
                    if (!q)
                        return;
                    int64_t cnt;
                    fill_set(set, x, N, optvq_quantizer_param(q, OPTVQ_PARAM_EMBEDDING, &cnt), n_e, d);
                    optvq_status st = optvq_quantizer_forward(q, x, N, 1, 1, xq, idx, &loss);
                    CHECK_MSG(st == OPTVQ_OK, "%s, mode %d, eps %g, log %d: %s", set_name[set], mode, eps[e], ld,
                              optvq_last_error());
                    int ok = st == OPTVQ_OK && isfinite(loss);
                    for (int64_t i = 0; ok && i < N; i++)
                        ok = idx[i] >= 0 && idx[i] < n_e;
                    for (int64_t i = 0; ok && i < N * d; i++)
                        ok = isfinite(xq[i]);
                    memset(gx, 0, sizeof gx);
                    if (ok)
                        ok = optvq_quantizer_backward(q, xq, 1.0f, gx) == OPTVQ_OK;
                    int64_t gn;
                    const float *ge = optvq_quantizer_grad(q, OPTVQ_PARAM_EMBEDDING, &gn);
                    for (int64_t i = 0; ok && i < N * d; i++)
                        ok = isfinite(gx[i]);
                    for (int64_t i = 0; ok && i < gn; i++)
                        ok = isfinite(ge[i]);
                    CHECK_MSG(ok, "%s, mode %d, eps %g, log %d: non-finite or out-of-range result", set_name[set],
                              mode, eps[e], ld);
                    optvq_quantizer_free(q);
                    runs++;
                }
    printf("    %d runs (4 point sets x 3 modes x 5 epsilons x 2 paths), all finite\n", runs);
}

/* Many iterations on a large batch terminate (n_iters is capped at 10000). */
TEST(hostile_sinkhorn_terminates_with_many_iterations)
{
    optvq_quantizer_config cfg;
    optvq_quantizer_config_default(&cfg);
    cfg.n_e = 8, cfg.e_dim = 2, cfg.use_proj = 0, cfg.n_iters = 10000, cfg.epsilon = 1000;
    optvq_quantizer *q = NULL;
    CHECK_OK(optvq_quantizer_create(&cfg, 1, &q));
    if (!q)
        return;
    float x[64 * 2], xq[64 * 2], loss;
    int64_t idx[64];
    for (int i = 0; i < 64 * 2; i++)
        x[i] = (float)((i * 29) % 13) * 1e3f;
    CHECK_OK(optvq_quantizer_forward(q, x, 64, 1, 1, xq, idx, &loss));
    CHECK(isfinite(loss));
    optvq_quantizer_free(q);
    cfg.n_iters = 10001;
    CHECK(optvq_quantizer_create(&cfg, 1, &q) == OPTVQ_ERR_INVALID_ARG);
}

TEST(hostile_sinkhorn_underflow_documented)
{
    /* 8 vectors 1e6 away from 4 codes near the origin, normalize null:
     * exp(-eps * 1e6) is 0 in float32 for every entry of every row */
    const int64_t N = 8, n_e = 4, d = 2;
    float x[8 * 2], xq[8 * 2], loss;
    int64_t idx[8];
    for (int64_t i = 0; i < N; i++) { /* radius 1e6, 8 directions */
        x[i * d] = 1e6f * (float)cos(2 * M_PI * ((double)i + 0.3) / (double)N);
        x[i * d + 1] = 1e6f * (float)sin(2 * M_PI * ((double)i + 0.3) / (double)N);
    }
    for (int ld = 0; ld < 2; ld++) {
        optvq_quantizer *q = make_q(n_e, d, 1, OPTVQ_ASSIGN_SINKHORN, OPTVQ_NORMALIZE_NULL, 10, ld, 0);
        if (!q)
            return;
        int64_t cnt;
        float *emb = optvq_quantizer_param(q, OPTVQ_PARAM_EMBEDDING, &cnt);
        const float codes[4][2] = {{1, 0}, {0, 1}, {-1, 0}, {0, -1}};
        memcpy(emb, codes, sizeof codes);
        CHECK_OK(optvq_quantizer_forward(q, x, N, 1, 1, xq, idx, &loss));
        CHECK(isfinite(loss));
        int used[4] = {0}, n_used = 0;
        for (int64_t i = 0; i < N; i++)
            if (idx[i] >= 0 && idx[i] < n_e && !used[idx[i]]++)
                n_used++;
        if (!ld) {
            /* the reference's answer: all-zero rows, torch.argmax -> code 0 */
            for (int64_t i = 0; i < N; i++)
                CHECK_MSG(idx[i] == 0, "default path, vector %lld: code %lld (the reference gives 0)",
                          (long long)i, (long long)idx[i]);
            CHECK(xq[0] == 1.0f && xq[1] == 0.0f);
        } else {
            /* log domain: the transport plan spreads the batch over the codes */
            CHECK_MSG(n_used >= 2, "log-domain path uses %d codes", n_used);
        }
        printf("    %s path: %d code(s) used, loss %g\n", ld ? "log-domain" : "default", n_used, loss);
        optvq_quantizer_free(q);
    }
}

/* ---- NaN in model weights ------------------------------------------------- */

static const char *tmp_file(const char *name)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", test_tmp_dir(), name);
    return buf;
}

TEST(hostile_nan_in_weights_file)
{
    /* the plain model's checkpoint with one NaN in the codebook, as safetensors */
    char ref[512], cfg[512];
    snprintf(ref, sizeof ref, "%s/model/plain/model.pth", test_ref_dir());
    snprintf(cfg, sizeof cfg, "%s/model/plain/config.yaml", test_ref_dir());
    optvq_weights *w = NULL, *bad = NULL;
    CHECK_OK(optvq_weights_load(ref, &w));
    CHECK_OK(optvq_weights_create(&bad));
    if (!w || !bad)
        return;
    int poisoned = 0;
    for (int64_t i = 0; i < optvq_weights_count(w); i++) {
        const optvq_tensor *t = optvq_weights_get(w, i);
        float *copy = malloc((size_t)(t->numel > 0 ? t->numel : 1) * sizeof *copy);
        memcpy(copy, t->data, (size_t)t->numel * sizeof *copy);
        if (strstr(t->name, "quantize.embedding.weight") && t->numel > 3) {
            copy[3] = NAN;
            poisoned = 1;
        }
        CHECK_OK(optvq_weights_add(bad, t->name, t->ndim, t->shape, copy));
        free(copy);
    }
    CHECK(poisoned);
    char path[512];
    snprintf(path, sizeof path, "%s", tmp_file("nan.safetensors"));
    CHECK_OK(optvq_weights_save_safetensors(bad, path));
    optvq_weights_free(bad);
    optvq_weights_free(w);

    /* the file itself is well-formed: it reads, NaN included */
    optvq_weights *back = NULL;
    CHECK_OK(optvq_weights_load(path, &back));
    const optvq_tensor *t = back ? optvq_weights_find(back, "quantize.embedding.weight") : NULL;
    CHECK(t && isnan(t->data[3]));
    optvq_weights_free(back);

    /* loading it into a model refuses it, naming the tensor and the element */
    optvq_model *m = NULL;
    optvq_clear_error();
    optvq_status st = optvq_model_load(cfg, path, &m);
    printf("    %s\n", optvq_last_error());
    CHECK(st == OPTVQ_ERR_NUMERIC && m == NULL);
    CHECK(strstr(optvq_last_error(), "quantize.embedding.weight") && strstr(optvq_last_error(), "NaN"));
    CHECK(one_line(optvq_last_error()));
}

TEST(hostile_nan_in_model_parameters_after_loading)
{
    /* NaN that reaches the parameters after loading (e.g. a diverged update):
     * encoding returns OPTVQ_ERR_NUMERIC at the quantizer, it does not hang */
    char ref[512], cfg[512];
    snprintf(ref, sizeof ref, "%s/model/plain/model.pth", test_ref_dir());
    snprintf(cfg, sizeof cfg, "%s/model/plain/config.yaml", test_ref_dir());
    optvq_model *m = NULL;
    CHECK_OK(optvq_model_load(cfg, ref, &m));
    if (!m)
        return;
    optvq_model_info info;
    CHECK_OK(optvq_model_get_info(m, &info));
    const int64_t H = 32, W = 32, h = H / info.downsample, wd = W / info.downsample;
    float *img = malloc((size_t)(info.in_channels * H * W) * sizeof *img);
    int64_t *tok = malloc((size_t)(info.num_head * h * wd) * sizeof *tok);
    for (int64_t i = 0; i < info.in_channels * H * W; i++)
        img[i] = (float)((i * 13) % 17) / 8.5f - 1.0f;
    CHECK_OK(optvq_model_encode(m, img, 1, H, W, tok, NULL));
    int64_t n;
    float *emb = optvq_quantizer_param(optvq_model_quantizer(m), OPTVQ_PARAM_EMBEDDING, &n);
    emb[n - 1] = NAN;
    optvq_clear_error();
    optvq_status st = optvq_model_encode(m, img, 1, H, W, tok, NULL);
    printf("    %s\n", optvq_last_error());
    CHECK(st == OPTVQ_ERR_NUMERIC && one_line(optvq_last_error()));
    /* A NaN pixel is refused before the encoder runs (ReLU would absorb it). */
    emb[n - 1] = 0.0f;
    img[5] = NAN;
    optvq_clear_error();
    st = optvq_model_encode(m, img, 1, H, W, tok, NULL);
    printf("    a NaN pixel: %s\n", optvq_last_error());
    CHECK(st == OPTVQ_ERR_NUMERIC && one_line(optvq_last_error()) && strstr(optvq_last_error(), "NaN"));
    free(img);
    free(tok);
    optvq_model_free(m);
}
