/* LPIPS-Alex (src/eval/lpips_alex.c) against tools/gen_fid_lpips_ref.py
 * (tests/ref/lpips_alex): the layout of the published files, per-pair LPIPS on
 * photos and perturbed copies, the heads read from a legacy torch.save file, and
 * the loader's errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/lpips_alex.h"
#include "io/weights.h"
#include "metrics_testutil.h"
#include "optvq/optvq.h"
#include "test.h"

static int alex_ignored(const char *name) { return !strncmp(name, "classifier.", 11); }

static lpips_alex *det_alex(void)
{
    lpips_alex *l = NULL;
    CHECK_OK(lpips_alex_create(&l));
    if (l)
        mt_det_fill(lpips_alex_params(l));
    return l;
}

TEST(lpips_alex_layout_matches_torchvision_and_lpips)
{
    lpips_alex *l = NULL;
    CHECK_OK(lpips_alex_create(&l));
    if (l)
        mt_check_keys(lpips_alex_params(l), "lpips_alex/keys.txt", alex_ignored);
    lpips_alex_free(l);
}

/* LPIPS of every reference pair with net l; returns the worst abs error. */
static double check_pairs(lpips_alex *l, const char *what)
{
    int64_t shape[5] = {0}, n = 0, nb = 0, nr = 0, bshape[4] = {0};
    unsigned char *u8 = mt_load_npy("lpips_alex/images.npy", OPTVQ_U8, &n, shape);
    unsigned char *b8 = mt_load_npy("lpips_alex/big.npy", OPTVQ_U8, &nb, bshape);
    double *ref = mt_load_npy("lpips_alex/lpips.npy", OPTVQ_F64, &nr, NULL);
    double *ref_layers = mt_load_npy("lpips_alex/layers.npy", OPTVQ_F64, NULL, NULL);
    double worst = INFINITY;
    if (!u8 || !b8 || !ref || !ref_layers)
        goto done;
    const int64_t N = shape[1], H = shape[3], W = shape[4];
    CHECK(nr == N + 1);
    float *x = mt_u8_to_unit(u8, n), *xb = mt_u8_to_unit(b8, nb);
    double got[16], layers[16 * 5], gb, lb[5];
    CHECK(N <= 16);
    CHECK_OK(lpips_alex_forward(l, x, x + N * 3 * H * W, N, H, W, got, layers));
    CHECK_OK(lpips_alex_forward(l, xb, xb + 3 * bshape[2] * bshape[3], 1, bshape[2], bshape[3], &gb, lb));
    got[N] = gb;
    memcpy(layers + N * 5, lb, sizeof lb);
    worst = 0;
    for (int64_t i = 0; i <= N; i++) {
        double e = fabs(got[i] - ref[i]);
        worst = e > worst ? e : worst;
        for (int k = 0; k < 5; k++)
            CHECK_MSG(fabs(layers[i * 5 + k] - ref_layers[i * 5 + k]) <= 1e-5, "%s pair %lld layer %d: %.9g vs %.9g",
                      what, (long long)i, k, layers[i * 5 + k], ref_layers[i * 5 + k]);
        CHECK_MSG(e <= 1e-5, "%s pair %lld: %.9g vs torch %.9g", what, (long long)i, got[i], ref[i]);
    }
    printf("    %s: %lld pairs, max |LPIPS - torch| = %.3g (values %.4f..)\n", what, (long long)(N + 1), worst, ref[0]);
    /* the reference is symmetric in law, and identical images give 0 */
    double same;
    CHECK_OK(lpips_alex_forward(l, x, x, 1, H, W, &same, NULL));
    CHECK(same == 0.0);
    free(x);
    free(xb);
done:
    free(u8);
    free(b8);
    free(ref);
    free(ref_layers);
    return worst;
}

TEST(lpips_alex_torch_ref)
{
    lpips_alex *l = det_alex();
    if (l)
        check_pairs(l, "det weights");
    lpips_alex_free(l);
}

/* torchvision's trunk file + lpips's legacy heads file, as users have them; and
 * one whole-module file with lpips's names under a prefix. */
TEST(lpips_alex_load_published_layouts)
{
    lpips_alex *det = det_alex();
    if (!det)
        return;
    nn_params *ps = lpips_alex_params(det);
    optvq_weights *trunk = NULL, *whole = NULL;
    CHECK_OK(optvq_weights_create(&trunk));
    CHECK_OK(optvq_weights_create(&whole));
    for (int i = 0; i < ps->count; i++) {
        const nn_param *p = &ps->items[i];
        char name[200];
        if (!strncmp(p->name, "features.", 9)) {
            CHECK_OK(optvq_weights_add(trunk, p->name, p->ndim, p->shape, p->data));
            int idx;
            char rest[32];
            sscanf(p->name, "features.%d.%31s", &idx, rest);
            int slice = idx == 0 ? 1 : idx == 3 ? 2 : idx == 6 ? 3 : idx == 8 ? 4 : 5;
            snprintf(name, sizeof name, "perceptual.net.slice%d.%d.%s", slice, idx, rest);
        } else {
            int k = p->name[3] - '0';
            snprintf(name, sizeof name, "perceptual.lins.%d.model.1.weight", k);
        }
        CHECK_OK(optvq_weights_add(whole, name, p->ndim, p->shape, p->data));
    }
    const float cls[2] = {1, 2};
    const int64_t cls_shape[1] = {2};
    CHECK_OK(optvq_weights_add(trunk, "classifier.1.bias", 1, cls_shape, cls)); /* ignored */
    CHECK_OK(optvq_weights_save_safetensors(trunk, tmp_path("alex_trunk.safetensors")));
    CHECK_OK(optvq_weights_save_safetensors(whole, tmp_path("alex_whole.safetensors")));
    optvq_weights_free(trunk);
    optvq_weights_free(whole);

    char heads[1024];
    snprintf(heads, sizeof heads, "%s/lpips_alex/alex_lin.pth", test_ref_dir());
    const char *two[2] = {tmp_path("alex_trunk.safetensors"), heads};
    lpips_alex *l = NULL;
    CHECK_OK(lpips_alex_load(two, 2, &l));
    if (l) {
        nn_params *q = lpips_alex_params(l);
        for (int i = 0; i < q->count; i++)
            CHECK_MSG(!memcmp(q->items[i].data, ps->items[i].data, sizeof(float) * (size_t)q->items[i].numel),
                      "'%s' differs from the generator's", q->items[i].name);
        check_pairs(l, "trunk.safetensors + legacy alex_lin.pth");
    }
    lpips_alex_free(l);
    const char *one[1] = {tmp_path("alex_whole.safetensors")};
    l = NULL;
    CHECK_OK(lpips_alex_load(one, 1, &l));
    if (l) {
        nn_params *q = lpips_alex_params(l);
        for (int i = 0; i < q->count; i++)
            CHECK(!memcmp(q->items[i].data, ps->items[i].data, sizeof(float) * (size_t)q->items[i].numel));
    }
    lpips_alex_free(l);

    /* the trunk alone: the heads are missing, and the message says which */
    l = (lpips_alex *)1;
    CHECK(lpips_alex_load(two, 1, &l) == OPTVQ_ERR_FORMAT && l == NULL);
    CHECK(strstr(optvq_last_error(), "lin0.model.1.weight") != NULL);
    /* two files that both hold the trunk: ambiguous */
    const char *twice[3] = {tmp_path("alex_trunk.safetensors"), heads, tmp_path("alex_trunk.safetensors")};
    CHECK(lpips_alex_load(twice, 3, &l) == OPTVQ_ERR_FORMAT);
    CHECK(strstr(optvq_last_error(), "ambiguous") != NULL);
    lpips_alex_free(det);
}

TEST(lpips_alex_rejects_small_images)
{
    lpips_alex *l = NULL;
    CHECK_OK(lpips_alex_create(&l));
    float x[3 * 30 * 40] = {0};
    double d;
    CHECK(lpips_alex_forward(l, x, x, 1, 30, 40, &d, NULL) == OPTVQ_ERR_INVALID_ARG);
    CHECK(strstr(optvq_last_error(), "31") != NULL);
    lpips_alex_free(l);
}
