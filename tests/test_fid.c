/* The FID Inception and the Frechet distance (src/eval/fid.c) against
 * tools/gen_fid_lpips_ref.py (tests/ref/fid): the layout of pytorch-fid's
 * weights file, 2048-d features of photos (NMSE <= 1e-8), the FID between
 * photos and perturbed copies (1e-3 relative to pytorch-fid's sqrtm), small
 * Frechet cases, and statistics that combine exactly over batches. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/fid.h"
#include "io/weights.h"
#include "metrics_testutil.h"
#include "optvq/optvq.h"
#include "test.h"

static int fid_ignored(const char *name)
{
    size_t n = strlen(name);
    return !strncmp(name, "fc.", 3) || (n > 19 && !strcmp(name + n - 19, "num_batches_tracked"));
}

static fid_inception *det_inception(void)
{
    fid_inception *n = NULL;
    CHECK_OK(fid_inception_create(&n));
    if (n)
        mt_det_fill(fid_inception_params(n));
    return n;
}

TEST(fid_layout_matches_pytorch_fid)
{
    fid_inception *n = NULL;
    CHECK_OK(fid_inception_create(&n));
    if (n)
        mt_check_keys(fid_inception_params(n), "fid/keys.txt", fid_ignored);
    fid_inception_free(n);
}

static double rel(double a, double b) { return fabs(a - b) / fabs(b); }

TEST(fid_torch_ref)
{
    int64_t shape[5] = {0}, n = 0, nf = 0;
    unsigned char *u8 = mt_load_npy("lpips_alex/images.npy", OPTVQ_U8, &n, shape);
    float *ref_feats = mt_load_npy("fid/feats.npy", OPTVQ_F32, &nf, NULL);
    double *ref = mt_load_npy("fid/fid.npy", OPTVQ_F64, NULL, NULL);
    fid_inception *net = det_inception();
    if (!u8 || !ref_feats || !ref || !net)
        goto done;
    const int64_t N = shape[1], H = shape[3], W = shape[4], per = 3 * H * W;
    float *x = mt_u8_to_unit(u8, n);
    float *feats = malloc(sizeof(float) * (size_t)(2 * N * FID_DIM));
    /* one batch for the originals, image by image for the copies */
    CHECK_OK(fid_inception_forward(net, x, N, 3, H, W, feats));
    for (int64_t i = 0; i < N; i++)
        CHECK_OK(fid_inception_forward(net, x + (N + i) * per, 1, 3, H, W, feats + (N + i) * FID_DIM));
    float got[4 * FID_DIM];
    memcpy(got, feats, sizeof(float) * 2 * FID_DIM);
    memcpy(got + 2 * FID_DIM, feats + N * FID_DIM, sizeof(float) * 2 * FID_DIM);
    test_diff d = test_compare("inception features vs torch", got, ref_feats, 4 * FID_DIM);
    CHECK(d.nmse <= 1e-8);
    fid_stats a, b;
    CHECK_OK(fid_stats_init(&a, FID_DIM));
    CHECK_OK(fid_stats_init(&b, FID_DIM));
    CHECK_OK(fid_stats_add(&a, feats, N));
    CHECK_OK(fid_stats_add(&b, feats + N * FID_DIM, N));
    double fid = NAN;
    CHECK_OK(fid_from_stats(&a, &b, &fid));
    printf("    FID %.9g, pytorch-fid (sqrtm) %.9g, eigenvalues in numpy %.9g\n", fid, ref[0], ref[1]);
    CHECK_MSG(rel(fid, ref[0]) <= 1e-3, "FID %.9g vs %.9g", fid, ref[0]);
    CHECK_MSG(rel(fid, ref[1]) <= 1e-4, "FID %.9g vs numpy's eigenvalue route %.9g", fid, ref[1]);
    fid_stats_free(&a);
    fid_stats_free(&b);
    free(x);
    free(feats);
done:
    fid_inception_free(net);
    free(u8);
    free(ref_feats);
    free(ref);
}

/* The pytorch-fid file layout (a whole Inception3 state dict with fc and
 * num_batches_tracked) loads, and gives the same features as the filled net;
 * grey images are the 3-channel image replicated. */
TEST(fid_load_and_grey)
{
    fid_inception *det = det_inception();
    if (!det)
        return;
    nn_params *ps = fid_inception_params(det);
    optvq_weights *w = NULL;
    CHECK_OK(optvq_weights_create(&w));
    for (int i = 0; i < ps->count; i++)
        CHECK_OK(optvq_weights_add(w, ps->items[i].name, ps->items[i].ndim, ps->items[i].shape, ps->items[i].data));
    const int64_t fc_shape[2] = {3, 2}, nbt_shape[1] = {1};
    const float fc[6] = {1, 2, 3, 4, 5, 6}, nbt[1] = {0};
    CHECK_OK(optvq_weights_add(w, "fc.weight", 2, fc_shape, fc));
    CHECK_OK(optvq_weights_add(w, "Conv2d_1a_3x3.bn.num_batches_tracked", 1, nbt_shape, nbt));
    CHECK_OK(optvq_weights_save_safetensors(w, tmp_path("inception.safetensors")));
    optvq_weights_free(w);
    fid_inception *ld = NULL;
    CHECK_OK(fid_inception_load(tmp_path("inception.safetensors"), &ld));
    float img[3 * 20 * 24], grey[20 * 24], f1[FID_DIM], f2[FID_DIM], f3[FID_DIM];
    for (int i = 0; i < 20 * 24; i++)
        grey[i] = (float)((i * 37) % 101) / 100.0f;
    for (int c = 0; c < 3; c++)
        memcpy(img + c * 20 * 24, grey, sizeof grey);
    if (ld) {
        CHECK_OK(fid_inception_forward(det, img, 1, 3, 20, 24, f1));
        CHECK_OK(fid_inception_forward(ld, img, 1, 3, 20, 24, f2));
        CHECK_OK(fid_inception_forward(ld, grey, 1, 1, 20, 24, f3));
        CHECK(!memcmp(f1, f2, sizeof f1));
        CHECK(!memcmp(f1, f3, sizeof f1));
    }
    fid_inception_free(ld);
    /* a missing tensor is named */
    CHECK_OK(optvq_weights_create(&w));
    CHECK_OK(optvq_weights_add(w, "fc.weight", 2, fc_shape, fc));
    CHECK_OK(optvq_weights_save_safetensors(w, tmp_path("inception_bad.safetensors")));
    optvq_weights_free(w);
    ld = (fid_inception *)1;
    CHECK(fid_inception_load(tmp_path("inception_bad.safetensors"), &ld) == OPTVQ_ERR_FORMAT && ld == NULL);
    CHECK(strstr(optvq_last_error(), "Conv2d_1a_3x3.conv.weight") != NULL);
    fid_inception_free(det);
}

/* x1 = det("fid.x1") (300, 64), x2 = det("fid.x2") * 0.8 + 0.1 (200, 64) */
static void small_sets(float *x1, float *x2)
{
    test_det_uniform(x1, "fid.x1", 300 * 64);
    test_det_uniform(x2, "fid.x2", 200 * 64);
    for (int i = 0; i < 200 * 64; i++)
        x2[i] = x2[i] * 0.8f + 0.1f;
}

TEST(fid_frechet_small_and_singular)
{
    double *ref = mt_load_npy("fid/fid.npy", OPTVQ_F64, NULL, NULL);
    if (!ref)
        return;
    static float x1[300 * 64], x2[200 * 64];
    small_sets(x1, x2);
    fid_stats a, b, a10, b10;
    CHECK_OK(fid_stats_init(&a, 64));
    CHECK_OK(fid_stats_init(&b, 64));
    CHECK_OK(fid_stats_init(&a10, 64));
    CHECK_OK(fid_stats_init(&b10, 64));
    CHECK_OK(fid_stats_add(&a, x1, 300));
    CHECK_OK(fid_stats_add(&b, x2, 200));
    CHECK_OK(fid_stats_add(&a10, x1, 10));
    CHECK_OK(fid_stats_add(&b10, x2, 10));
    double f = NAN, fs = NAN;
    CHECK_OK(fid_from_stats(&a, &b, &f));
    CHECK_OK(fid_from_stats(&a10, &b10, &fs));
    printf("    small %.12g (scipy %.12g), singular %.9g (scipy %.9g)\n", f, ref[2], fs, ref[3]);
    CHECK(rel(f, ref[2]) <= 1e-9);
    CHECK(rel(fs, ref[3]) <= 1e-3);
    /* identical sets: 0 up to round-off */
    double z = NAN;
    CHECK_OK(fid_from_stats(&a, &a, &z));
    CHECK(fabs(z) < 1e-9);
    /* one image per set: no covariance */
    fid_stats one;
    CHECK_OK(fid_stats_init(&one, 64));
    CHECK_OK(fid_stats_add(&one, x1, 1));
    CHECK(fid_from_stats(&one, &b, &z) == OPTVQ_ERR_INVALID_ARG);
    fid_stats_free(&one);
    fid_stats_free(&a);
    fid_stats_free(&b);
    fid_stats_free(&a10);
    fid_stats_free(&b10);
    free(ref);
}

/* Sums over batches (and merged partial sums, as ranks would give) equal the
 * sums over the whole set. */
TEST(fid_stats_combine)
{
    static float x1[300 * 64], x2[200 * 64];
    small_sets(x1, x2);
    fid_stats whole, parts, p1, p2;
    CHECK_OK(fid_stats_init(&whole, 64));
    CHECK_OK(fid_stats_init(&parts, 64));
    CHECK_OK(fid_stats_init(&p1, 64));
    CHECK_OK(fid_stats_init(&p2, 64));
    CHECK_OK(fid_stats_add(&whole, x1, 300));
    CHECK_OK(fid_stats_add(&p1, x1, 7));
    CHECK_OK(fid_stats_add(&p1, x1 + 7 * 64, 100));
    CHECK_OK(fid_stats_add(&p2, x1 + 107 * 64, 193));
    CHECK_OK(fid_stats_merge(&parts, &p1));
    CHECK_OK(fid_stats_merge(&parts, &p2));
    CHECK(parts.count == 300);
    double worst = 0;
    for (int i = 0; i < 64; i++) {
        worst = fmax(worst, fabs(parts.sum[i] - whole.sum[i]));
        for (int j = i; j < 64; j++)
            worst = fmax(worst, fabs(parts.outer[i * 64 + j] - whole.outer[i * 64 + j]));
    }
    CHECK_MSG(worst <= 1e-10, "batched sums differ by %g", worst);
    fid_stats_free(&p1);
    fid_stats_free(&p2);
    fid_stats_free(&parts);
    fid_stats_free(&whole);
}

/* The Inception's pooling and resize ops against plain definitions. */
TEST(fid_ops_pool_and_resize)
{
    /* max pool 3x3 (stride 1 and 2, pad 0): the fast value path vs the scan */
    enum { C = 3, H = 9, W = 11 };
    float x[C * H * W], y[C * H * W], yn[C * H * W];
    test_det_uniform(x, "fid.ops.x", C * H * W);
    for (int i = 0; i < C * H * W; i += 7)
        x[i] = x[i > 0 ? i - 1 : 0]; /* ties */
    x[40] = NAN;
    for (int s = 1; s <= 2; s++) {
        nn_maxpool_desc d;
        CHECK_OK(nn_maxpool_init(&d, C, H, W, 3, s, 0));
        nn_maxpool_forward(y, x, &d);
        nn_maxpool_forward_naive(yn, x, &d);
        for (int64_t i = 0; i < C * d.h_out * d.w_out; i++)
            CHECK_MSG(y[i] == yn[i] || (isnan(y[i]) && isnan(yn[i])), "max pool stride %d at %lld", s, (long long)i);
    }
    /* avg pool 3x3/1 pad 1, count_include_pad=False: corners divide by 4, edges by 6 */
    nn_avgpool_desc ad;
    CHECK_OK(nn_avgpool_init(&ad, 1, H, W, 3, 1, 1));
    x[40] = 0.5f;
    nn_avgpool_exclude_forward(y, x, &ad);
    for (int oy = 0; oy < H; oy++)
        for (int ox = 0; ox < W; ox++) {
            double s = 0;
            int cnt = 0;
            for (int iy = oy - 1; iy <= oy + 1; iy++)
                for (int ix = ox - 1; ix <= ox + 1; ix++)
                    if (iy >= 0 && iy < H && ix >= 0 && ix < W) {
                        s += x[iy * W + ix];
                        cnt++;
                    }
            CHECK(fabs(y[oy * W + ox] - s / cnt) <= 1e-6);
        }
    /* bilinear, align_corners=False: PyTorch's 2x2 -> 4x4, and same size is a copy */
    const float in[4] = {0, 1, 2, 3};
    const float want[16] = {0, .25f, .75f, 1, .5f, .75f, 1.25f, 1.5f, 1.5f, 1.75f, 2.25f, 2.5f, 2, 2.25f, 2.75f, 3};
    float out[16];
    CHECK_OK(nn_resize_bilinear_forward(out, in, 1, 2, 2, 4, 4));
    CHECK(!memcmp(out, want, sizeof want));
    CHECK_OK(nn_resize_bilinear_forward(y, x, C, H, W, H, W));
    CHECK(!memcmp(y, x, sizeof(float) * C * H * W));
}
