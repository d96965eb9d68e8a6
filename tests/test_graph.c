/* The one graph per architecture (src/model/graph.c): the training forward
 * (every activation saved) gives the inference forward's reconstruction and
 * tokens bit for bit, for the plain CNN and the taming VQGAN; the model's
 * registry holds every parameter, the quantizer's as aliases, with the roles
 * that decide initialisation and weight decay. */
#include "model/graph.h"
#include "model/trainer.h"
#include "model/vqmodel.h"
#include "optvq/optvq.h"
#include "test.h"
#include "train/optimizer.h"

#include <stdlib.h>
#include <string.h>

static optvq_model *load_case(const char *dir, optvq_array *x)
{
    char c[512], w[512], p[512];
    snprintf(c, sizeof c, "%s/model/%s/config.yaml", test_ref_dir(), dir);
    snprintf(w, sizeof w, "%s/model/%s/model.pth", test_ref_dir(), dir);
    snprintf(p, sizeof p, "%s/model/%s/x.npy", test_ref_dir(), dir);
    optvq_model *m = NULL;
    CHECK_OK(optvq_model_load(c, w, &m));
    if (x)
        CHECK_OK(optvq_npy_read(p, x));
    return m;
}

/* Inference (optvq_model_reconstruct) and the trainer's forward on the same
 * images: reconstruction and tokens byte for byte. */
static void check_same(const char *what, optvq_model *m, model_trainer *t, const float *x, int64_t B, int64_t H,
                       int64_t W)
{
    optvq_model_info info;
    CHECK_OK(optvq_model_get_info(m, &info));
    const int64_t n_img = B * info.in_channels * H * W;
    const int64_t n_tok = B * info.num_head * (H / info.downsample) * (W / info.downsample);
    float *rec = malloc((size_t)n_img * sizeof(float));
    int64_t *tok = malloc((size_t)n_tok * sizeof(int64_t)), *tok_t = malloc((size_t)n_tok * sizeof(int64_t));
    const float *rec_t = NULL;
    float q_loss = 0;
    CHECK_OK(optvq_model_reconstruct(m, x, B, H, W, rec, tok));
    CHECK_OK(model_trainer_forward(t, x, B, H, W, &rec_t, &q_loss, tok_t));
    if (rec_t) {
        test_diff d = test_compare(what, rec_t, rec, n_img);
        CHECK_MSG(!memcmp(rec, rec_t, (size_t)n_img * sizeof(float)), "%s: training reconstruction differs (max %.3g)",
                  what, d.max_abs);
        CHECK_MSG(!memcmp(tok, tok_t, (size_t)n_tok * sizeof(int64_t)), "%s: training tokens differ", what);
    }
    free(rec);
    free(tok);
    free(tok_t);
}

static void check_train_equals_inference(const char *dir)
{
    optvq_array x = {0};
    optvq_model *m = load_case(dir, &x);
    model_trainer *t = NULL;
    if (m)
        CHECK_OK(model_trainer_create(m, &t));
    if (!m || !t || !x.data)
        goto done;
    const int64_t B = x.shape[0], H = x.shape[2], W = x.shape[3];
    CHECK(B >= 2);
    printf("  %s, batch %lld\n", dir, (long long)B);
    check_same("recon, train vs inference", m, t, x.data, B, H, W);
    /* a new shape re-plans both sides' memory */
    printf("  %s, batch 1\n", dir);
    check_same("recon, train vs inference", m, t, x.data, 1, H, W);
    printf("  %s, batch %lld again\n", dir, (long long)B);
    check_same("recon, train vs inference", m, t, x.data, B, H, W);
done:
    model_trainer_free(t);
    optvq_model_free(m);
    optvq_array_free(&x);
}

TEST(graph_train_forward_equals_inference_plain) { check_train_equals_inference("plain"); }

/* The f16 structure reduced (ch 32, 5 levels: nin_shortcuts, four
 * upsamples, attention at 4 x 4), initialised from a seed, on 2 x 64 x 64. */
TEST(graph_train_forward_equals_inference_f16_structure)
{
    char c[512];
    snprintf(c, sizeof c, "%s/model/f16_h8_small/config.yaml", test_ref_dir());
    optvq_model *m = NULL;
    model_trainer *t = NULL;
    CHECK_OK(optvq_model_create(c, 3, &m));
    if (m)
        CHECK_OK(model_trainer_create(m, &t));
    const int64_t B = 2, H = 64, W = 64;
    float *x = malloc((size_t)(B * 3 * H * W) * sizeof(float));
    test_det_uniform(x, "graph test images", B * 3 * H * W);
    if (m && t)
        check_same("recon, train vs inference", m, t, x, B, H, W);
    free(x);
    model_trainer_free(t);
    optvq_model_free(m);
}

TEST(graph_train_forward_equals_inference_taming) { check_train_equals_inference("taming_small"); }

/* The reference's weight decay, from the module types: Conv2d,
 * ConvTranspose2d and Linear weights decay; biases, GroupNorms and the
 * embedding do not. Written from names here, independently of the roles. */
static int reference_decays(const char *name)
{
    size_t n = strlen(name);
    if (n < 7 || strcmp(name + n - 7, ".weight") || !strcmp(name, "quantize.embedding.weight"))
        return 0;
    const char *module = name + n - 7;
    while (module > name && module[-1] != '.')
        module--;
    return strncmp(module, "norm", 4) != 0; /* norm, norm1, norm2, norm_out */
}

static void check_registry(const char *dir)
{
    optvq_model *m = load_case(dir, NULL);
    if (!m)
        return;
    nn_params *all = model_params(m);
    optvq_quantizer *q = optvq_model_quantizer(m);
    const optvq_quantizer_config *qc = optvq_quantizer_get_config(q);
    const int n_quant = qc->use_proj ? 3 : 1, n_net = all->count - n_quant;
    /* the quantizer's entries come last and are its own buffers */
    static const char *const qn[3] = {"quantize.embedding.weight", "quantize.proj.weight", "quantize.proj.bias"};
    for (int k = 0; k < n_quant && n_net > 0; k++) {
        const nn_param *p = &all->items[n_net + k];
        int64_t cnt = 0;
        float *data = optvq_quantizer_param(q, (optvq_param)k, &cnt);
        CHECK_MSG(!strcmp(p->name, qn[k]) && p->alias && p->group == MODEL_GROUP_QUANTIZER, "%s: entry %s", dir,
                  p->name);
        CHECK(p->data == data && p->grad == optvq_quantizer_grad(q, (optvq_param)k, NULL) && p->numel == cnt);
    }
    for (int i = 0; i < n_net; i++)
        CHECK_MSG(!all->items[i].alias && all->items[i].group != MODEL_GROUP_QUANTIZER, "%s: %s", dir,
                  all->items[i].name);
    /* zeroing the registry's gradients reaches the quantizer's */
    optvq_quantizer_grad(q, OPTVQ_PARAM_EMBEDDING, NULL)[0] = 1.0f;
    nn_params_zero_grad(all);
    CHECK(optvq_quantizer_grad(q, OPTVQ_PARAM_EMBEDDING, NULL)[0] == 0.0f);
    /* roles: declared everywhere, weight decay as the reference's module types say */
    optimizer o;
    CHECK_OK(optimizer_init(&o, m, 1e-3, 2.0, 0.05, 10));
    CHECK(o.count == all->count);
    int decayed = 0;
    for (int i = 0; i < all->count && i < o.count; i++) {
        const nn_param *p = &all->items[i];
        CHECK_MSG(p->role != NN_ROLE_UNDECLARED && p->group != 0, "%s: %s has no role or group", dir, p->name);
        CHECK_MSG(nn_role_decays(p->role) == reference_decays(p->name), "%s: %s: weight decay by role %d", dir,
                  p->name, nn_role_decays(p->role));
        CHECK_MSG(o.params[i].data == p->data && o.params[i].decay == reference_decays(p->name) &&
                      o.params[i].quantizer == !strncmp(p->name, "quantize.", 9),
                  "%s: optimizer entry %s", dir, p->name);
        decayed += o.params[i].decay;
    }
    printf("  %s: %d tensors (%d the quantizer's), %d with weight decay\n", dir, all->count, n_quant, decayed);
    optimizer_free(&o);
    /* initialisation by role: norms 1 / 0, the rest within +-1/sqrt(fan_in); the quantizer's untouched */
    float e0 = optvq_quantizer_param(q, OPTVQ_PARAM_EMBEDDING, NULL)[0];
    model_init_params(m, 7);
    CHECK(optvq_quantizer_param(q, OPTVQ_PARAM_EMBEDDING, NULL)[0] == e0);
    for (int i = 0; i < n_net; i++) {
        const nn_param *p = &all->items[i];
        const int is_norm = p->role == NN_ROLE_NORM_WEIGHT || p->role == NN_ROLE_NORM_BIAS;
        CHECK_MSG(is_norm == (strstr(p->name, "norm") && !strstr(p->name, "nin_shortcut")), "%s: %s role %d", dir,
                  p->name, (int)p->role);
        /* fan_in: weight.size(1) x kernel area of the layer's weight */
        char wn[NN_PARAM_NAME_MAX];
        snprintf(wn, sizeof wn, "%.*s.weight", (int)(strrchr(p->name, '.') - p->name), p->name);
        const nn_param *w = nn_params_find(all, wn);
        if (!is_norm && w && w->ndim == 4)
            CHECK_MSG(p->fan_in == w->shape[1] * w->shape[2] * w->shape[3], "%s: %s fan_in %lld", dir, p->name,
                      (long long)p->fan_in);
        double bound = is_norm ? 0 : 1.0 / sqrt((double)p->fan_in);
        int ok = 1;
        for (int64_t j = 0; j < p->numel; j++)
            ok &= is_norm ? p->data[j] == (p->role == NN_ROLE_NORM_WEIGHT ? 1.0f : 0.0f)
                          : fabs((double)p->data[j]) <= bound;
        CHECK_MSG(ok, "%s: %s initialised outside its role's rule", dir, p->name);
    }
    /* info counts by group */
    optvq_model_info info;
    CHECK_OK(optvq_model_get_info(m, &info));
    const int64_t d = info.code_dim;
    CHECK(info.params_quantizer == qc->n_e * d + (qc->use_proj ? d * d + d : 0));
    int64_t total = 0;
    for (int i = 0; i < all->count; i++)
        total += all->items[i].numel;
    CHECK(info.params_total == total);
    optvq_model_free(m);
}

TEST(graph_registry_roles_plain) { check_registry("plain"); }

TEST(graph_registry_roles_taming) { check_registry("taming_small"); }
