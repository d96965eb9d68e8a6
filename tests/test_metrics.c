/* PSNR / SSIM against tools/gen_metrics_ref.py (a PyTorch transcription of
 * pyiqa, cross-checked with skimage.metrics) on crops of Debian's skimage
 * photographs, and the evaluation batch against optvq_model_reconstruct. */
#include "test.h"

#include "eval/eval_model.h"
#include "eval/metrics.h"
#include "optvq/optvq.h"

#include <stdlib.h>
#include <string.h>

static int load_npy(const char *rel, optvq_array *a)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", test_ref_dir(), rel);
    optvq_status st = optvq_npy_read(p, a);
    if (st != OPTVQ_OK) {
        fprintf(stderr, "    cannot read %s: %s\n", p, optvq_last_error());
        test_failures++;
        return -1;
    }
    return 0;
}

static double rel_err(double got, double want)
{
    return fabs(got - want) / (fabs(want) > 1e-12 ? fabs(want) : 1e-12);
}

TEST(metrics_window_matches_pyiqa)
{
    optvq_array a;
    if (load_npy("metrics/window.npy", &a))
        return;
    float w[METRICS_SSIM_WIN * METRICS_SSIM_WIN];
    metrics_ssim_window(w);
    CHECK(a.dtype == OPTVQ_F32 && optvq_array_numel(&a) == METRICS_SSIM_WIN * METRICS_SSIM_WIN);
    int differ = 0;
    double sum = 0;
    for (int i = 0; i < METRICS_SSIM_WIN * METRICS_SSIM_WIN; i++) {
        differ += memcmp(&w[i], (float *)a.data + i, sizeof(float)) != 0;
        sum += w[i];
    }
    printf("    window: %d of 121 weights differ bitwise from pyiqa's fspecial(11, 1.5); sum %.9f\n", differ, sum);
    CHECK(differ == 0);
    CHECK(fabs(sum - 1.0) < 1e-6);
    optvq_array_free(&a);
}

TEST(metrics_reference_photographs)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/metrics/cases.txt", test_ref_dir());
    FILE *f = fopen(p, "r");
    CHECK_MSG(f != NULL, "cannot open %s", p);
    if (!f)
        return;
    char line[1024];
    int cases = 0;
    double worst[6] = {0};
    printf("    %-26s %-10s %-14s %-10s %-10s %-10s %-10s\n", "case", "PSNR", "SSIM", "dP/pyiqa64", "dP/pyiqa32",
           "dS/pyiqa", "dS/skimage");
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        char name[256];
        double p32, p64, s_ref, p_sk, s_sk;
        int clipped;
        if (sscanf(line, "%255s %lf %lf %lf %lf %lf %d", name, &p32, &p64, &s_ref, &p_sk, &s_sk, &clipped) != 7) {
            CHECK_MSG(0, "bad line in cases.txt: %s", line);
            continue;
        }
        char rel[300];
        snprintf(rel, sizeof rel, "metrics/%s.npy", name);
        optvq_array a;
        if (load_npy(rel, &a))
            continue;
        CHECK(a.ndim == 4 && a.shape[0] == 2 && a.dtype == OPTVQ_F32);
        const int C = (int)a.shape[1], H = (int)a.shape[2], W = (int)a.shape[3];
        const float *x = a.data, *y = x + (int64_t)C * H * W;
        double psnr = NAN, ssim = NAN;
        CHECK_OK(metrics_psnr(x, y, C, H, W, &psnr));
        CHECK_OK(metrics_ssim(x, y, C, H, W, &ssim));
        /* skimage has no eps: undo it from our own mse */
        double mse = pow(10.0, -psnr / 10.0) - METRICS_PSNR_EPS;
        double psnr_noeps = 10.0 * log10(1.0 / mse);
        double e[6] = {rel_err(psnr, p64), rel_err(psnr, p32), rel_err(ssim, s_ref),
                       clipped ? 0.0 : rel_err(ssim, s_sk), rel_err(psnr_noeps, p_sk), 0};
        printf("    %-26s %-10.6f %-14.10f %-10.2e %-10.2e %-10.2e %-10.2e%s\n", name, psnr, ssim, e[0], e[1], e[2],
               rel_err(ssim, s_sk), clipped ? "  (cs<0 clipped: skimage differs)" : "");
        for (int k = 0; k < 5; k++)
            worst[k] = fmax(worst[k], e[k]);
        CHECK_MSG(e[0] < 1e-12, "%s: PSNR %.15g vs pyiqa (float64) %.15g", name, psnr, p64);
        CHECK_MSG(e[1] < 1e-6, "%s: PSNR %.15g vs pyiqa (float32) %.15g", name, psnr, p32);
        CHECK_MSG(e[2] < 1e-12, "%s: SSIM %.15g vs pyiqa %.15g", name, ssim, s_ref);
        CHECK_MSG(e[3] < 1e-6, "%s: SSIM %.15g vs skimage %.15g", name, ssim, s_sk);
        CHECK_MSG(e[4] < 1e-9, "%s: PSNR without eps %.15g vs skimage %.15g", name, psnr_noeps, p_sk);
        if (clipped) /* skimage keeps the negative cs: ours (pyiqa's) is higher */
            CHECK_MSG(ssim > s_sk, "%s: clipped SSIM %.15g should exceed skimage's %.15g", name, ssim, s_sk);
        optvq_array_free(&a);
        cases++;
    }
    fclose(f);
    printf("    %d cases; worst relative error: PSNR vs pyiqa64 %.2e, vs pyiqa32 %.2e; SSIM vs pyiqa %.2e, "
           "vs skimage %.2e; PSNR(no eps) vs skimage %.2e\n",
           cases, worst[0], worst[1], worst[2], worst[3], worst[4]);
    CHECK(cases >= 9);
}

TEST(metrics_identical_images)
{
    optvq_array a;
    if (load_npy("metrics/astronaut64_noise.npy", &a))
        return;
    const int C = (int)a.shape[1], H = (int)a.shape[2], W = (int)a.shape[3];
    const float *x = a.data;
    double psnr = 0, ssim = 0;
    CHECK_OK(metrics_psnr(x, x, C, H, W, &psnr));
    CHECK_OK(metrics_ssim(x, x, C, H, W, &ssim));
    printf("    identical: PSNR %.17g (pyiqa: 10 log10(1 / 1e-8) = 80), SSIM %.17g\n", psnr, ssim);
    CHECK(fabs(psnr - 80.0) < 1e-12);
    CHECK(ssim == 1.0);
    /* grey, and values outside [0, 1] on both sides clamp to the same image */
    float g[16 * 16], h[16 * 16];
    for (int i = 0; i < 256; i++) {
        g[i] = (float)(i % 17) / 16.0f;
        h[i] = g[i] == 0.0f ? -0.5f : g[i] == 1.0f ? 3.0f : g[i];
    }
    CHECK_OK(metrics_psnr(g, h, 1, 16, 16, &psnr));
    CHECK_OK(metrics_ssim(g, h, 1, 16, 16, &ssim));
    CHECK(fabs(psnr - 80.0) < 1e-12);
    CHECK(ssim == 1.0);
    optvq_array_free(&a);
}

TEST(metrics_bad_input)
{
    float x[12 * 12 * 3] = {0}, y[12 * 12 * 3] = {0};
    double v;
    CHECK(metrics_psnr(x, y, 2, 12, 12, &v) == OPTVQ_ERR_INVALID_ARG);
    CHECK(metrics_ssim(x, y, 3, 10, 12, &v) == OPTVQ_ERR_INVALID_ARG);
    printf("    too small: %s\n", optvq_last_error());
    CHECK(strstr(optvq_last_error(), "11 x 11") != NULL);
    CHECK(metrics_psnr(x, y, 3, 0, 12, &v) == OPTVQ_ERR_INVALID_ARG);
    y[5] = NAN;
    CHECK(metrics_psnr(x, y, 3, 12, 12, &v) == OPTVQ_ERR_NUMERIC);
    CHECK(metrics_ssim(x, y, 3, 12, 12, &v) == OPTVQ_ERR_NUMERIC);
    CHECK(metrics_batch_signed(x, y, 1, 3, 12, 12, NULL, &v) == OPTVQ_ERR_NUMERIC);
    printf("    NaN: %s\n", optvq_last_error());
    CHECK(strstr(optvq_last_error(), "image 0: psnr: NaN in the reconstruction") != NULL);
}

TEST(metrics_recover_and_batch)
{
    /* (v + 1) / 2 in float32, clamped */
    const float v[5] = {-1.5f, -1.0f, 0.0f, 1.0f, 2.0f}, want[5] = {0.0f, 0.0f, 0.5f, 1.0f, 1.0f};
    float out[5];
    metrics_recover(v, 5, out);
    CHECK(memcmp(out, want, sizeof out) == 0);
    /* batches: the same values as image by image, for any thread count */
    optvq_array a, b;
    if (load_npy("metrics/coffee64_blur.npy", &a) || load_npy("metrics/astronaut64_noise.npy", &b))
        return;
    const int64_t per = 3 * 64 * 64;
    float *orig = malloc((size_t)(4 * per) * sizeof(float)), *rec = malloc((size_t)(4 * per) * sizeof(float));
    for (int k = 0; k < 4; k++) {
        const float *src = k % 2 ? b.data : a.data;
        for (int64_t i = 0; i < per; i++) { /* to model space */
            orig[k * per + i] = ((const float *)src)[i] * 2.0f - 1.0f;
            rec[k * per + i] = ((const float *)src)[per + i] * 2.0f - 1.0f + (float)k * 0.01f;
        }
    }
    double p1[4], s1[4], p2[4], s2[4];
    int saved = optvq_get_num_threads();
    optvq_set_num_threads(1);
    CHECK_OK(metrics_batch_signed(orig, rec, 4, 3, 64, 64, p1, s1));
    optvq_set_num_threads(2);
    CHECK_OK(metrics_batch_signed(orig, rec, 4, 3, 64, 64, p2, s2));
    optvq_set_num_threads(saved);
    CHECK(memcmp(p1, p2, sizeof p1) == 0 && memcmp(s1, s2, sizeof s1) == 0);
    float *ua = malloc((size_t)per * sizeof(float)), *ub = malloc((size_t)per * sizeof(float));
    for (int k = 0; k < 4; k++) {
        metrics_recover(orig + k * per, per, ua);
        metrics_recover(rec + k * per, per, ub);
        double p, s;
        CHECK_OK(metrics_psnr(ua, ub, 3, 64, 64, &p));
        CHECK_OK(metrics_ssim(ua, ub, 3, 64, 64, &s));
        CHECK(p == p1[k] && s == s1[k]);
    }
    /* the running mean */
    metrics_acc acc;
    metrics_acc_init(&acc);
    CHECK(isnan(metrics_acc_psnr(&acc)));
    double ps = 0, ss = 0;
    for (int k = 0; k < 4; k++) {
        metrics_acc_add(&acc, p1[k], s1[k]);
        ps += p1[k];
        ss += s1[k];
    }
    CHECK(acc.count == 4);
    CHECK(fabs(metrics_acc_psnr(&acc) - ps / 4) < 1e-12 && fabs(metrics_acc_ssim(&acc) - ss / 4) < 1e-15);
    CHECK(acc.psnr_min <= metrics_acc_psnr(&acc) && metrics_acc_psnr(&acc) <= acc.psnr_max);
    free(ua);
    free(ub);
    free(orig);
    free(rec);
    optvq_array_free(&a);
    optvq_array_free(&b);
}

/* eval_model_batch == optvq_model_reconstruct byte for byte; its metrics on the
 * reference's own reconstruction (recon.npy) equal pyiqa's, and on ours nearly. */
TEST(metrics_eval_batch_taming_small)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/model/taming_small/hf", test_ref_dir());
    optvq_model *m = NULL;
    CHECK_OK(optvq_model_load(dir, NULL, &m));
    optvq_array x, rref, z, xq;
    if (!m || load_npy("model/taming_small/x.npy", &x) || load_npy("model/taming_small/recon.npy", &rref) ||
        load_npy("model/taming_small/z.npy", &z) || load_npy("model/taming_small/xq.npy", &xq)) {
        optvq_model_free(m);
        return;
    }
    const int64_t B = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3], n = B * C * H * W;
    float *r1 = malloc((size_t)n * sizeof(float)), *r2 = malloc((size_t)n * sizeof(float));
    int64_t *t1 = malloc((size_t)(B * 4 * 8 * 8) * sizeof(int64_t)), *t2 = malloc((size_t)(B * 4 * 8 * 8) * sizeof(int64_t));
    double sq = 0;
    int64_t cnt = 0;
    CHECK_OK(eval_model_batch(m, x.data, B, H, W, r1, t1, &sq, &cnt));
    CHECK_OK(optvq_model_reconstruct(m, x.data, B, H, W, r2, t2));
    CHECK(memcmp(r1, r2, (size_t)n * sizeof(float)) == 0);
    CHECK(memcmp(t1, t2, (size_t)(B * 4 * 8 * 8) * sizeof(int64_t)) == 0);
    CHECK(cnt == optvq_array_numel(&z));
    double sref = 0;
    for (int64_t i = 0; i < optvq_array_numel(&z); i++) {
        double d = (double)((float *)z.data)[i] - (double)((float *)xq.data)[i];
        sref += d * d;
    }
    printf("    quantization error: %.9g, reference (z.npy, xq.npy) %.9g\n", sq / (double)cnt,
           sref / (double)optvq_array_numel(&z));
    CHECK(rel_err(sq / (double)cnt, sref / (double)optvq_array_numel(&z)) < 1e-4);

    char p[1024];
    snprintf(p, sizeof p, "%s/metrics/taming_small.txt", test_ref_dir());
    FILE *f = fopen(p, "r");
    CHECK_MSG(f != NULL, "cannot open %s", p);
    double ps_ref[2], ss_ref[2], p32_ref[2], qerr = -1;
    int got = 0;
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        int i;
        double a, b2, c;
        if (sscanf(line, "%d %lf %lf %lf", &i, &a, &b2, &c) == 4 && i >= 0 && i < 2) {
            p32_ref[i] = a;
            ps_ref[i] = b2;
            ss_ref[i] = c;
            got++;
        } else if (sscanf(line, "qerr %lf", &a) == 1) {
            qerr = a;
        }
    }
    if (f)
        fclose(f);
    CHECK(got == 2 && B == 2);
    CHECK(rel_err(sref / (double)optvq_array_numel(&z), qerr) < 1e-12);
    double pr[2], sr[2], po[2], so[2];
    CHECK_OK(metrics_batch_signed(x.data, rref.data, B, (int)C, (int)H, (int)W, pr, sr));
    CHECK_OK(metrics_batch_signed(x.data, r1, B, (int)C, (int)H, (int)W, po, so));
    for (int i = 0; i < 2 && got == 2; i++) {
        printf("    image %d: PSNR %.10f (pyiqa %.10f, float32 %.10f)  SSIM %.12f (pyiqa %.12f); "
               "on our reconstruction: PSNR %.10f SSIM %.12f\n",
               i, pr[i], ps_ref[i], p32_ref[i], sr[i], ss_ref[i], po[i], so[i]);
        CHECK(rel_err(pr[i], ps_ref[i]) < 1e-12);
        CHECK(rel_err(pr[i], p32_ref[i]) < 1e-6);
        CHECK(rel_err(sr[i], ss_ref[i]) < 1e-12);
        CHECK(rel_err(po[i], ps_ref[i]) < 1e-4);
        CHECK(fabs(so[i] - ss_ref[i]) < 2e-3); /* integer-rounded luma may move by one level */
    }
    free(r1);
    free(r2);
    free(t1);
    free(t2);
    optvq_array_free(&x);
    optvq_array_free(&rref);
    optvq_array_free(&z);
    optvq_array_free(&xq);
    optvq_model_free(m);
}

/* eval's usage from a histogram == optvq_usage_compute on the index list */
TEST(metrics_usage_from_histogram)
{
    enum { N = 5000, NE = 97 };
    int64_t *idx = malloc(N * sizeof(int64_t)), hist[NE] = {0};
    uint64_t s = 12345;
    for (int i = 0; i < N; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        idx[i] = (int64_t)((s >> 33) % 61) * ((s >> 20) & 1 ? 1 : 0); /* skewed, some codes dead */
        hist[idx[i]]++;
    }
    optvq_usage a, b;
    CHECK_OK(optvq_usage_compute(idx, N, NE, &a));
    CHECK_OK(eval_usage_from_histogram(hist, NE, &b));
    printf("    codes used %lld/%lld, dead %lld, perplexity %.12f (optvq_usage_compute %.12f)\n",
           (long long)b.codes_used, (long long)b.n_e, (long long)b.dead_codes, b.perplexity, a.perplexity);
    CHECK(a.n_e == b.n_e && a.codes_used == b.codes_used && a.dead_codes == b.dead_codes);
    CHECK(a.fraction_used == b.fraction_used && a.perplexity == b.perplexity);
    hist[3] = -1;
    CHECK(eval_usage_from_histogram(hist, NE, &b) == OPTVQ_ERR_INVALID_ARG);
    free(idx);
}
