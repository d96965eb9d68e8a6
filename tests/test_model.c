/* Model parity against tests/ref/model (tools/gen_model_ref.py): encoder
 * output, indices (exact away from ties), latent and reconstruction, for the
 * plain CNN (Sinkhorn and nearest), a reduced taming VQGAN, the full f16
 * ImageNet architecture at 256x256 (deterministic weights, see det_fill), and
 * every shipped config in configs/: the plain-CNN ones at full size, the
 * taming ones reduced with their structure kept, and all of them at full size
 * tensor by tensor (names and shapes) against the PyTorch models. */
#include "model/vqmodel.h"
#include "nn/conv_bf16.h"
#include "optvq/optvq.h"
#include "test.h"

#include <dirent.h>
#include <math.h>
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

/* Runs the model on images x (B, C, H, W) and compares with the case's outputs. */
static void check_outputs(const char *dir, optvq_model *m, const float *x, int64_t B, int64_t H, int64_t W)
{
    optvq_array z = {0}, idx = {0}, margin = {0}, xq = {0}, recon = {0};
    if (load(dir, "z.npy", &z) || load(dir, "indices.npy", &idx) || load(dir, "tie_margin.npy", &margin) ||
        load(dir, "xq.npy", &xq) || load(dir, "recon.npy", &recon))
        goto done;
    float *gz = malloc((size_t)optvq_array_numel(&z) * 4), *gq = malloc((size_t)optvq_array_numel(&xq) * 4);
    float *gr = malloc((size_t)optvq_array_numel(&recon) * 4), *gr2 = malloc((size_t)optvq_array_numel(&recon) * 4);
    int64_t *gi = malloc((size_t)optvq_array_numel(&idx) * 8), *gi2 = malloc((size_t)optvq_array_numel(&idx) * 8);
    CHECK_OK(model_encoder_forward(m, x, B, H, W, gz));
    test_diff d = test_compare("encoder output z", gz, z.data, optvq_array_numel(&z));
    CHECK_MSG(d.nmse < 1e-10, "%s: encoder output NMSE %.3g", dir, d.nmse);
    CHECK_OK(optvq_model_encode(m, x, B, H, W, gi, gq));
    compare_indices("indices", &idx, gi, &margin, idx.shape[1]);
    d = test_compare("latent x_q", gq, xq.data, optvq_array_numel(&xq));
    CHECK_MSG(d.nmse < 1e-10, "%s: latent NMSE %.3g", dir, d.nmse);
    CHECK_OK(optvq_model_reconstruct(m, x, B, H, W, gr, gi2));
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
    optvq_array_free(&z);
    optvq_array_free(&idx);
    optvq_array_free(&margin);
    optvq_array_free(&xq);
    optvq_array_free(&recon);
}

static void check_case(const char *dir, optvq_model *m)
{
    optvq_array x = {0};
    if (load(dir, "x.npy", &x))
        return;
    check_outputs(dir, m, x.data, x.shape[0], x.shape[2], x.shape[3]);
    optvq_array_free(&x);
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

/* ---- every shipped config (configs/), tools/gen_model_ref.py's shipped cases ---- */

/* configs/ beside tests/ref (the tests run from the repository root). */
static const char *configs_path(const char *rel)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/../../%s", test_ref_dir(), rel);
    return p;
}

/* det_fill weights, det_uniform("input") images of the shape of recon.npy. */
static void check_det_case(const char *dir, const char *config)
{
    optvq_model *m = NULL;
    CHECK_OK(optvq_model_create(config, 0, &m));
    optvq_array recon = {0};
    if (!m || load(dir, "recon.npy", &recon)) {
        optvq_model_free(m);
        return;
    }
    printf("  %s (%s, deterministic weights)\n", dir, config);
    det_fill(m);
    const int64_t B = recon.shape[0], C = recon.shape[1], H = recon.shape[2], W = recon.shape[3];
    float *x = malloc((size_t)(B * C * H * W) * sizeof(float));
    test_det_uniform(x, "input", B * C * H * W);
    check_outputs(dir, m, x, B, H, W);
    free(x);
    optvq_array_free(&recon);
    optvq_model_free(m);
}

TEST(model_shipped_plain_configs_parity)
{
    /* the plain-CNN configs at their full size, loaded from configs/ itself */
    static const char *const cases[][2] = {{"mnist_optvq", "configs/mnist/optvq.yaml"},
                                           {"mnist_vqbase", "configs/mnist/vqbase.yaml"},
                                           {"cifar10_optvq", "configs/cifar10/optvq.yaml"},
                                           {"cifar10_vqbase", "configs/cifar10/vqbase.yaml"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_det_case(cases[i][0], configs_path(cases[i][1]));
}

TEST(model_shipped_taming_configs_parity)
{
    /* reduced: ch 32, e_dim 64, 512 codes, smaller images; levels, attention
     * level, heads, projection and quantizer class as in the shipped config */
    static const char *const cases[] = {"f16_h8_small", "vqbase_f16_h4_small", "vqgan_small", "f32_h8_small"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char c[512];
        snprintf(c, sizeof c, "%s/model/%s/config.yaml", test_ref_dir(), cases[i]);
        check_det_case(cases[i], c);
    }
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* "name:d0,d1\n" per tensor of the model's registry (the quantizer's
 * included), sorted, as shipped_line() in tools/gen_model_ref.py; the count
 * of tensors and parameters alongside. */
static char *structure_text(optvq_model *m, int *n_tensors, int64_t *n_params)
{
    nn_params *ps = model_params(m);
    int n = ps->count;
    char **lines = calloc((size_t)n, sizeof *lines);
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        char buf[NN_PARAM_NAME_MAX + 128];
        const nn_param *p = &ps->items[i];
        int len = snprintf(buf, sizeof buf, "%s:", p->name);
        for (int k = 0; k < p->ndim; k++)
            len += snprintf(buf + len, sizeof buf - (size_t)len, "%s%lld", k ? "," : "", (long long)p->shape[k]);
        total += p->numel;
        snprintf(buf + len, sizeof buf - (size_t)len, "\n");
        lines[i] = strdup(buf);
    }
    qsort(lines, (size_t)n, sizeof *lines, cmp_str);
    size_t size = 1;
    for (int i = 0; i < n; i++)
        size += strlen(lines[i]);
    char *text = malloc(size);
    text[0] = '\0';
    for (int i = 0, at = 0; i < n; i++) {
        strcpy(text + at, lines[i]);
        at += (int)strlen(lines[i]);
        free(lines[i]);
    }
    free(lines);
    *n_tensors = n;
    *n_params = total;
    return text;
}

/* Does shipped.txt name configs/<sub>/<file> for every YAML file there? */
static void check_every_config_listed(const char *listing)
{
    char root[512];
    snprintf(root, sizeof root, "%s", configs_path("configs"));
    DIR *top = opendir(root);
    CHECK_MSG(top != NULL, "cannot list %s", root);
    if (!top)
        return;
    int seen = 0;
    struct dirent *e;
    while ((e = readdir(top))) {
        if (e->d_name[0] == '.')
            continue;
        char sub[768];
        snprintf(sub, sizeof sub, "%s/%s", root, e->d_name);
        DIR *d = opendir(sub);
        if (!d)
            continue;
        struct dirent *f;
        while ((f = readdir(d))) {
            size_t len = strlen(f->d_name);
            if (len < 6 || strcmp(f->d_name + len - 5, ".yaml"))
                continue;
            char rel[768];
            snprintf(rel, sizeof rel, "\nconfigs/%s/%s ", e->d_name, f->d_name);
            CHECK_MSG(strstr(listing, rel) != NULL,
                      "configs/%s/%s is not in tests/ref/model/shipped.txt (run tools/gen_model_ref.py "
                      "tests/ref/model shipped)", e->d_name, f->d_name);
            seen++;
        }
        closedir(d);
    }
    closedir(top);
    printf("    %d configs in configs/, each listed\n", seen);
    CHECK(seen > 0);
}

TEST(model_shipped_configs_structure)
{
    char path[512];
    snprintf(path, sizeof path, "%s/model/shipped.txt", test_ref_dir());
    size_t size;
    unsigned char *raw = read_bytes(path, &size);
    CHECK_MSG(raw != NULL, "cannot read %s", path);
    if (!raw)
        return;
    /* a leading newline so that every entry reads "\nconfigs/..." */
    char *listing = malloc(size + 2);
    listing[0] = '\n';
    memcpy(listing + 1, raw, size);
    listing[size + 1] = '\0';
    free(raw);
    check_every_config_listed(listing);
    /* Configs with the same model section build the same model: build each
     * distinct one once (the full ImageNet models are 70-100M parameters). */
    enum { MAX_DISTINCT = 64 };
    struct built {
        model_config cfg;
        int n_tensors;
        int64_t n_params;
        char hash[32];
    } *built = calloc(MAX_DISTINCT, sizeof *built);
    int n_built = 0, checked = 0;
    for (char *line = strtok(listing + 1, "\n"); line; line = strtok(NULL, "\n")) {
        char rel[256], hash[32];
        int want_tensors;
        long long want_params;
        if (sscanf(line, "%255s %d %lld %31s", rel, &want_tensors, &want_params, hash) != 4) {
            CHECK_MSG(0, "shipped.txt: bad line '%s'", line);
            continue;
        }
        model_config cfg;
        CHECK_OK(model_config_load(configs_path(rel), &cfg));
        struct built *b = NULL;
        for (int i = 0; i < n_built && !b; i++) {
            const model_config *o = &built[i].cfg;
            if (!memcmp(&o->encoder, &cfg.encoder, sizeof cfg.encoder) &&
                !memcmp(&o->decoder, &cfg.decoder, sizeof cfg.decoder) && o->use_connector == cfg.use_connector &&
                o->quantize.n_e == cfg.quantize.n_e && o->quantize.e_dim == cfg.quantize.e_dim &&
                o->quantize.num_head == cfg.quantize.num_head && o->quantize.use_proj == cfg.quantize.use_proj)
                b = &built[i];
        }
        if (!b && n_built < MAX_DISTINCT) {
            optvq_model *m = NULL;
            CHECK_OK(model_create_from_config(&cfg, 0, &m));
            if (!m)
                continue;
            b = &built[n_built++];
            b->cfg = cfg;
            char *text = structure_text(m, &b->n_tensors, &b->n_params);
            snprintf(b->hash, sizeof b->hash, "%016llx", (unsigned long long)test_fnv1a64(text));
            free(text);
            optvq_model_free(m);
        }
        if (!b)
            continue;
        printf("    %-40s %4d tensors %10lld parameters %s\n", rel, b->n_tensors, (long long)b->n_params, b->hash);
        CHECK_MSG(b->n_tensors == want_tensors && b->n_params == want_params && !strcmp(b->hash, hash),
                  "%s: PyTorch has %d tensors, %lld parameters, %s", rel, want_tensors, want_params, hash);
        checked++;
    }
    printf("    %d configs, %d distinct models\n", checked, n_built);
    CHECK(checked > 0);
    free(built);
    free(listing);
}

/* ---- precision ---- */

/* PSNR of a against b, both in [-1, 1], on the [0, 1] scale. */
static double psnr_pm1(const float *a, const float *b, int64_t n)
{
    double e = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = ((double)a[i] - b[i]) / 2;
        e += d * d;
    }
    return e > 0 ? 10 * log10((double)n / e) : INFINITY;
}

/* optvq_model_set_precision on the reduced taming VQGAN (its layers are under
 * the bf16 path's work threshold, lowered here so that they take it): bf16
 * keeps the encoder in fp32 (tokens equal, bit for bit) and decodes within
 * 40 dB of fp32; bf16-all changes the encoder too; both deterministic; fp32
 * again afterwards gives fp32's bits; bad values refused. */
TEST(model_precision_bf16)
{
    char c[512], w[512], xp[512];
    snprintf(c, sizeof c, "%s/model/taming_small/config.yaml", test_ref_dir());
    snprintf(w, sizeof w, "%s/model/taming_small/model.pth", test_ref_dir());
    snprintf(xp, sizeof xp, "%s/model/taming_small/x.npy", test_ref_dir());
    optvq_model *m = NULL;
    optvq_array x = {0};
    CHECK_OK(optvq_model_load(c, w, &m));
    CHECK_OK(optvq_npy_read(xp, &x));
    if (!m || !x.data)
        return;
    nn_conv_bf16_set_min_flop(0);
    const int64_t B = x.shape[0], H = x.shape[2], W = x.shape[3], n = optvq_array_numel(&x);
    optvq_model_info info;
    CHECK_OK(optvq_model_get_info(m, &info));
    const int64_t h = H / info.downsample, wd = W / info.downsample, nt = B * info.num_head * h * wd;
    float *r32 = malloc((size_t)n * sizeof(float)), *r16 = malloc((size_t)n * sizeof(float));
    float *other = malloc((size_t)n * sizeof(float));
    int64_t *t32 = malloc((size_t)nt * sizeof(int64_t)), *t16 = malloc((size_t)nt * sizeof(int64_t));

    CHECK(optvq_model_get_precision(m) == OPTVQ_PRECISION_FP32);
    CHECK_OK(optvq_model_reconstruct(m, x.data, B, H, W, r32, t32));

    CHECK_OK(optvq_model_set_precision(m, OPTVQ_PRECISION_BF16));
    CHECK(optvq_model_get_precision(m) == OPTVQ_PRECISION_BF16);
    CHECK_OK(optvq_model_reconstruct(m, x.data, B, H, W, r16, t16));
    CHECK(!memcmp(t16, t32, (size_t)nt * sizeof(int64_t)));
    const double p = psnr_pm1(r16, r32, n);
    printf("    bf16 reconstruction vs fp32: PSNR %.1f dB, tokens equal\n", p);
    CHECK(p >= 40.0 && isfinite(p)); /* close, and really computed in bf16 */
    CHECK_OK(optvq_model_decode(m, t32, B, h, wd, other));
    CHECK(!memcmp(other, r16, (size_t)n * sizeof(float)));

    CHECK_OK(optvq_model_set_precision(m, OPTVQ_PRECISION_BF16_ALL));
    CHECK_OK(optvq_model_reconstruct(m, x.data, B, H, W, other, t16));
    int64_t agree = 0;
    for (int64_t i = 0; i < nt; i++)
        agree += t16[i] == t32[i];
    printf("    bf16-all: %lld of %lld tokens as fp32, reconstruction PSNR %.1f dB\n", (long long)agree, (long long)nt,
           psnr_pm1(other, r32, n));
    float *again = malloc((size_t)n * sizeof(float));
    CHECK_OK(optvq_model_reconstruct(m, x.data, B, H, W, again, NULL));
    CHECK(!memcmp(again, other, (size_t)n * sizeof(float)));
    free(again);

    CHECK_OK(optvq_model_set_precision(m, OPTVQ_PRECISION_FP32));
    CHECK_OK(optvq_model_reconstruct(m, x.data, B, H, W, other, t16));
    CHECK(!memcmp(other, r32, (size_t)n * sizeof(float)) && !memcmp(t16, t32, (size_t)nt * sizeof(int64_t)));

    CHECK(optvq_model_set_precision(m, (optvq_precision)7) == OPTVQ_ERR_INVALID_ARG);
    CHECK(optvq_model_get_precision(m) == OPTVQ_PRECISION_FP32);
    CHECK(optvq_model_set_precision(NULL, OPTVQ_PRECISION_BF16) == OPTVQ_ERR_INVALID_ARG);
    CHECK(optvq_model_get_precision(NULL) == OPTVQ_PRECISION_FP32);
    nn_conv_bf16_set_min_flop(-1);
    free(r32), free(r16), free(other), free(t32), free(t16);
    optvq_array_free(&x);
    optvq_model_free(m);
}
