/* Model parity against tests/ref/model (tools/gen_model_ref.py): encoder
 * output, indices (exact away from ties), latent and reconstruction, for the
 * plain CNN (Sinkhorn and nearest), a reduced taming VQGAN, and the full f16
 * ImageNet architecture at 256x256 (deterministic weights, see det_fill). */
#include "model/vqmodel.h"
#include "optvq/optvq.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int load(const char *dir, const char *name, optvq_array *a)
{
    char p[512];
    snprintf(p, sizeof p, "%s/model/%s/%s", test_ref_dir(), dir, name);
    optvq_status st = optvq_npy_read(p, a);
    if (st != OPTVQ_OK) {
        fprintf(stderr, "    %s\n", optvq_last_error());
        test_failures++;
        return -1;
    }
    return 0;
}

/* Indices equal except where the reference's choice was a near-tie. */
static void compare_indices(const char *what, const optvq_array *ref, const int64_t *got, const optvq_array *margin,
                            int64_t h)
{
    const int64_t *want = ref->data;
    const float *m = margin->data;
    int64_t n = optvq_array_numel(ref), B = ref->shape[0], H = ref->shape[2], W = ref->shape[3];
    int64_t bad = 0, skipped = 0;
    for (int64_t i = 0; i < n; i++) {
        /* indices (B, h, H, W); margins in vector order (b, y, x, head) */
        int64_t x = i % W, y = (i / W) % H, hd = (i / (W * H)) % h, b = i / (W * H * h);
        (void)B;
        float mg = m[((b * H + y) * W + x) * h + hd];
        if (got[i] != want[i]) {
            if (mg < 1e-5f)
                skipped++;
            else
                bad++;
        }
    }
    printf("    %-28s %lld indices, %lld differ (%lld at near-ties)\n", what, (long long)n, (long long)(bad + skipped),
           (long long)skipped);
    CHECK_MSG(bad == 0, "%s: %lld indices differ away from ties", what, (long long)bad);
}

static void check_case(const char *dir, optvq_model *m)
{
    optvq_array x = {0}, z = {0}, idx = {0}, margin = {0}, xq = {0}, recon = {0};
    if (load(dir, "x.npy", &x) || load(dir, "z.npy", &z) || load(dir, "indices.npy", &idx) ||
        load(dir, "tie_margin.npy", &margin) || load(dir, "xq.npy", &xq) || load(dir, "recon.npy", &recon))
        goto done;
    int64_t B = x.shape[0], H = x.shape[2], W = x.shape[3];
    float *gz = malloc((size_t)optvq_array_numel(&z) * 4), *gq = malloc((size_t)optvq_array_numel(&xq) * 4);
    float *gr = malloc((size_t)optvq_array_numel(&recon) * 4), *gr2 = malloc((size_t)optvq_array_numel(&recon) * 4);
    int64_t *gi = malloc((size_t)optvq_array_numel(&idx) * 8), *gi2 = malloc((size_t)optvq_array_numel(&idx) * 8);
    CHECK_OK(model_encoder_forward(m, x.data, B, H, W, gz));
    test_diff d = test_compare("encoder output z", gz, z.data, optvq_array_numel(&z));
    CHECK_MSG(d.nmse < 1e-10, "%s: encoder output NMSE %.3g", dir, d.nmse);
    CHECK_OK(optvq_model_encode(m, x.data, B, H, W, gi, gq));
    compare_indices("indices", &idx, gi, &margin, idx.shape[1]);
    d = test_compare("latent x_q", gq, xq.data, optvq_array_numel(&xq));
    CHECK_MSG(d.nmse < 1e-10, "%s: latent NMSE %.3g", dir, d.nmse);
    CHECK_OK(optvq_model_reconstruct(m, x.data, B, H, W, gr, gi2));
    d = test_compare("reconstruction", gr, recon.data, optvq_array_numel(&recon));
    CHECK_MSG(d.nmse < 1e-8, "%s: reconstruction NMSE %.3g", dir, d.nmse);
    /* encode -> decode equals reconstruct, byte for byte */
    CHECK_OK(optvq_model_decode(m, gi, B, idx.shape[2], idx.shape[3], gr2));
    CHECK_MSG(!memcmp(gi, gi2, (size_t)optvq_array_numel(&idx) * 8), "%s: tokens of encode and reconstruct differ",
              dir);
    CHECK_MSG(!memcmp(gr, gr2, (size_t)optvq_array_numel(&recon) * 4), "%s: decode(encode(x)) != reconstruct(x)",
              dir);
    free(gz);
    free(gq);
    free(gr);
    free(gr2);
    free(gi);
    free(gi2);
done:
    optvq_array_free(&x);
    optvq_array_free(&z);
    optvq_array_free(&idx);
    optvq_array_free(&margin);
    optvq_array_free(&xq);
    optvq_array_free(&recon);
}

static void check_loaded(const char *dir, const char *config, const char *weights)
{
    char c[512], w[512];
    snprintf(c, sizeof c, "%s/model/%s/%s", test_ref_dir(), dir, config);
    if (weights)
        snprintf(w, sizeof w, "%s/model/%s/%s", test_ref_dir(), dir, weights);
    optvq_model *m = NULL;
    CHECK_OK(optvq_model_load(c, weights ? w : NULL, &m));
    if (!m)
        return;
    printf("  %s (%s%s%s)\n", dir, config, weights ? " + " : "", weights ? weights : "");
    check_case(dir, m);
    optvq_model_free(m);
}

TEST(model_plain_cnn_parity)
{
    check_loaded("plain", "config.yaml", "model.pth");
    check_loaded("plain_vqbase", "config.yaml", "model.pth");
}

TEST(model_taming_small_parity)
{
    check_loaded("taming_small", "config.yaml", "model.pth");
    check_loaded("taming_small", "hf", NULL); /* Hugging Face folder, model.-prefixed, extra loss.* */
}

/* ---- the full f16 architecture with deterministic weights ---- */

static void det_fill(optvq_model *m)
{
    nn_params *ps = model_params(m);
    for (int i = 0; i < ps->count; i++) {
        nn_param *p = &ps->items[i];
        test_det_uniform(p->data, p->name, p->numel);
        size_t len = strlen(p->name);
        int is_weight = len > 7 && !strcmp(p->name + len - 7, ".weight");
        if (strstr(p->name, ".norm")) {
            for (int64_t j = 0; j < p->numel; j++)
                p->data[j] = is_weight ? 1.0f + 0.1f * p->data[j] : 0.1f * p->data[j];
            continue;
        }
        char wn[NN_PARAM_NAME_MAX];
        snprintf(wn, sizeof wn, "%.*s.weight", (int)(strrchr(p->name, '.') - p->name), p->name);
        nn_param *w = nn_params_find(ps, wn);
        int64_t fan_in = w->shape[1] * (w->ndim == 4 ? w->shape[2] * w->shape[3] : 1);
        for (int64_t j = 0; j < p->numel; j++)
            p->data[j] = (float)(p->data[j] / sqrt((double)fan_in));
    }
    optvq_quantizer *q = optvq_model_quantizer(m);
    const char *names[3] = {"quantize.embedding.weight", "quantize.proj.weight", "quantize.proj.bias"};
    for (int k = 0; k < 3; k++) {
        int64_t cnt;
        float *p = optvq_quantizer_param(q, (optvq_param)k, &cnt);
        test_det_uniform(p, names[k], cnt);
        int64_t d = optvq_quantizer_get_config(q)->e_dim / optvq_quantizer_get_config(q)->num_head;
        double s = k == 0 ? sqrt(3.0) : sqrt(3.0 / (double)d);
        for (int64_t j = 0; j < cnt; j++)
            p[j] = (float)(p[j] * s);
    }
}

TEST(model_f16_imagenet_parity)
{
    char c[512];
    snprintf(c, sizeof c, "%s/model/f16/config.yaml", test_ref_dir());
    optvq_model *m = NULL;
    CHECK_OK(optvq_model_create(c, 0, &m));
    if (!m)
        return;
    optvq_model_info info;
    optvq_model_get_info(m, &info);
    printf("    f16: %lld parameters (encoder %lld, decoder %lld)\n", (long long)info.params_total,
           (long long)info.params_encoder, (long long)info.params_decoder);
    det_fill(m);
    optvq_array idx = {0}, margin = {0}, recon = {0}, z = {0};
    if (load("f16", "indices.npy", &idx) || load("f16", "tie_margin.npy", &margin) || load("f16", "recon.npy", &recon) ||
        load("f16", "z.npy", &z)) {
        optvq_model_free(m);
        return;
    }
    float *x = malloc(3 * 256 * 256 * sizeof(float)), *out = malloc(3 * 256 * 256 * sizeof(float));
    float *gz = malloc((size_t)optvq_array_numel(&z) * 4);
    int64_t *tok = malloc((size_t)optvq_array_numel(&idx) * 8);
    test_det_uniform(x, "input", 3 * 256 * 256);
    CHECK_OK(model_encoder_forward(m, x, 1, 256, 256, gz));
    test_diff d = test_compare("f16 encoder output z", gz, z.data, optvq_array_numel(&z));
    CHECK_MSG(d.nmse < 1e-9, "f16 encoder NMSE %.3g", d.nmse);
    CHECK_OK(optvq_model_reconstruct(m, x, 1, 256, 256, out, tok));
    compare_indices("f16 indices", &idx, tok, &margin, 4);
    d = test_compare("f16 reconstruction", out, recon.data, optvq_array_numel(&recon));
    CHECK_MSG(d.nmse < 1e-7, "f16 reconstruction NMSE %.3g", d.nmse);
    free(x);
    free(out);
    free(gz);
    free(tok);
    optvq_array_free(&idx);
    optvq_array_free(&margin);
    optvq_array_free(&recon);
    optvq_array_free(&z);
    optvq_model_free(m);
}
