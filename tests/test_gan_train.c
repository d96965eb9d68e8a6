/* The reference's ImageNet training pipeline (AELossWithDisc: L1 + L2 +
 * LPIPS + the PatchGAN's generator term with the adaptive weight, then the
 * discriminator's hinge step) against tools/gen_gan_train_ref.py: two steps
 * of a tiny taming VQGAN (the generator term off in the first, on in the
 * second), every logged term per step, and samples + sums of every parameter
 * and BatchNorm buffer afterwards, against PyTorch in float64 (the script says
 * why). All weights come from the name-keyed generator both sides share
 * (det_weights in the script). */
#include "eval/lpips.h"
#include "model/discriminator.h"
#include "model/trainer.h"
#include "model/vqmodel.h"
#include "test.h"
#include "train/ae_disc.h"
#include "train/optimizer.h"

#include <stdlib.h>
#include <string.h>

static void ref(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/gan_train/%s", test_ref_dir(), name);
}

/* The script's det_weights rule for one registry. */
static void det_weights(nn_params *ps, const char *prefix)
{
    for (int i = 0; i < ps->count; i++) {
        nn_param *p = &ps->items[i];
        char full[400], wname[NN_PARAM_NAME_MAX];
        snprintf(full, sizeof full, "%s%s", prefix, p->name);
        snprintf(wname, sizeof wname, "%.*s.weight", (int)(strrchr(p->name, '.') - p->name), p->name);
        const nn_param *w = nn_params_find(ps, wname);
        const uint64_t base = test_fnv1a64(full);
        const int is_weight = strstr(p->name, ".weight") == p->name + strlen(p->name) - 7;
        for (int64_t j = 0; j < p->numel; j++) {
            double u = test_det_u(base, j), v;
            if (!strncmp(full, "lin", 3))
                v = fabs(u) / sqrt((double)p->shape[1]);
            else if (w && w->ndim == 1)
                v = is_weight ? 1.0 + 0.1 * u : 0.1 * u;
            else {
                int64_t fan_in = w->shape[1] * (w->ndim == 4 ? w->shape[2] * w->shape[3] : 1);
                v = u / sqrt((double)fan_in);
            }
            p->data[j] = (float)v;
        }
    }
}

static void det_quantizer(optvq_quantizer *q)
{
    static const char *const names[3] = {"quantize.embedding.weight", "quantize.proj.weight", "quantize.proj.bias"};
    int64_t pn = 0;
    optvq_quantizer_param(q, OPTVQ_PARAM_PROJ_WEIGHT, &pn);
    const double d = sqrt((double)pn); /* proj is Linear(d, d) */
    for (int k = 0; k < 3; k++) {
        int64_t n;
        float *data = optvq_quantizer_param(q, (optvq_param)k, &n);
        const uint64_t base = test_fnv1a64(names[k]);
        for (int64_t j = 0; data && j < n; j++)
            data[j] = (float)(test_det_u(base, j) * (k == 0 ? sqrt(3.0) : sqrt(3.0 / d)));
    }
}

/* Where a reference tensor lives on our side (NULL: not found); int64 buffers are copied to *tmp. */
static const float *find_tensor(optvq_model *m, discriminator *d, const char *name, int64_t *numel, float *tmp)
{
    nn_param *p = nn_params_find(model_params(m), name);
    if (p) {
        *numel = p->numel;
        return p->data;
    }
    if (!strncmp(name, DISC_PREFIX, strlen(DISC_PREFIX))) {
        p = nn_params_find(disc_params(d), name);
        if (p) {
            *numel = p->numel;
            return p->data;
        }
        for (int i = 0; i < disc_buffer_count(d); i++)
            if (!strcmp(disc_buffer_name(d, i), name)) {
                optvq_dtype dt;
                void *b = disc_buffer(d, i, &dt, numel);
                if (dt == OPTVQ_F32)
                    return b;
                *tmp = (float)*(int64_t *)b;
                *numel = 1;
                return tmp;
            }
        return NULL;
    }
    static const char *const qn[3] = {"quantize.embedding.weight", "quantize.proj.weight", "quantize.proj.bias"};
    for (int k = 0; k < 3; k++)
        if (!strcmp(name, qn[k]))
            return optvq_quantizer_param(optvq_model_quantizer(m), (optvq_param)k, numel);
    return NULL;
}

TEST(gan_train_steps_match_pytorch)
{
    char cfgp[512], p[512];
    ref(cfgp, sizeof cfgp, "config.yaml");
    model_config cfg;
    CHECK_OK(model_config_load(cfgp, &cfg));
    CHECK(cfg.train.use_disc && cfg.train.loss_p == 3.0 && cfg.train.disc_start == 1 && cfg.train.disc_ndf == 8);
    optvq_model *m = NULL;
    model_trainer *tr = NULL;
    lpips_net *lp = NULL;
    discriminator *d = NULL;
    CHECK_OK(model_create_from_config(&cfg, 0, &m));
    if (!m)
        return;
    det_weights(model_params(m), "");
    det_quantizer(optvq_model_quantizer(m));
    CHECK_OK(model_trainer_create(m, &tr));
    CHECK_OK(lpips_create(&lp));
    const disc_config dc = {3, cfg.train.disc_ndf, cfg.train.disc_num_layers};
    CHECK_OK(disc_create(&dc, 0, &d));
    if (!tr || !lp || !d)
        goto done;
    det_weights(lpips_params(lp), "");
    det_weights(disc_params(d), ""); /* its names carry loss.discriminator. */
    const int64_t B = 2, R = 32;
    const double lr = cfg.train.learning_rate * (double)B;
    optimizer ae, dopt;
    CHECK_OK(optimizer_init(&ae, m, lr, 1.0, cfg.train.weight_decay, 10));
    CHECK_OK(optimizer_init_list(&dopt, disc_params(d), lr, cfg.train.weight_decay, 10));
    ae_disc s;
    CHECK_OK(ae_disc_init(&s, tr, lp, d, &ae, &dopt, &cfg.train, 3));
    optvq_array want = {0};
    ref(p, sizeof p, "log.npy");
    CHECK_OK(optvq_npy_read(p, &want));
    static const char *const what[9] = {"total", "l1", "l2", "p", "q", "g", "g_weight", "d", "grad_norm"};
    const int steps = want.data ? (int)want.shape[0] : 0;
    for (int k = 0; k < steps; k++) {
        char name[64];
        snprintf(name, sizeof name, "batch_%d.npy", k);
        ref(p, sizeof p, name);
        optvq_array x = {0};
        CHECK_OK(optvq_npy_read(p, &x));
        ae_disc_log l;
        CHECK_OK(ae_disc_step(&s, x.data, B, R, R, k, &l, NULL));
        const double got[9] = {l.total, l.l1, l.l2, l.p, l.q, l.g, l.g_weight, l.d, l.grad_norm};
        const double *w = (const double *)want.data + 9 * k;
        printf("    step %d:", k);
        for (int j = 0; j < 9; j++) {
            printf(" %s %.6g (%.6g)", what[j], got[j], w[j]);
            /* step 0 is one forward/backward from the same weights; later steps follow parameters that
             * float32 rounding has moved (see the script) */
            const double tol = k == 0 ? 1e-5 : 2e-3;
            CHECK_MSG(fabs(got[j] - w[j]) <= tol * fabs(w[j]) + 1e-6, "step %d: %s %.8g vs torch %.8g", k, what[j],
                      got[j], w[j]);
        }
        printf("\n");
        optvq_array_free(&x);
    }
    /* samples and sums of every tensor after the last step */
    ref(p, sizeof p, "final.txt");
    FILE *f = fopen(p, "r");
    optvq_array fin = {0};
    ref(p, sizeof p, "final.npy");
    CHECK_OK(optvq_npy_read(p, &fin));
    CHECK(f != NULL);
    double worst = 0, worst_sum = 0;
    int tensors = 0;
    int64_t at = 0;
    char line[512];
    while (f && fin.data && fgets(line, sizeof line, f)) {
        char name[300];
        long long numel, stride, count;
        double sum, sumsq;
        if (sscanf(line, "%299s %lld %lld %lld %lf %lf", name, &numel, &stride, &count, &sum, &sumsq) != 6)
            continue;
        int64_t n = 0;
        float tmp;
        const float *ours = find_tensor(m, d, name, &n, &tmp);
        CHECK_MSG(ours && n == numel, "%s: missing or %lld elements instead of %lld", name, (long long)n, numel);
        if (ours && n == numel) {
            double e = 0, ref2 = 0, s1 = 0;
            for (long long j = 0; j < count; j++) {
                double a = ours[j * stride], b = ((const float *)fin.data)[at + j];
                e += (a - b) * (a - b);
                ref2 += b * b;
            }
            for (int64_t j = 0; j < n; j++)
                s1 += ours[j];
            double nmse = ref2 > 0 ? e / ref2 : e;
            worst = nmse > worst ? nmse : worst;
            double ds = fabs(s1 - sum) / (sqrt(sumsq) + 1e-12);
            worst_sum = ds > worst_sum ? ds : worst_sum;
            CHECK_MSG(nmse < 1e-5 && ds < 1e-2, "%s: NMSE %.3g, sum %.8g vs %.8g", name, nmse, s1, sum);
            tensors++;
        }
        at += count;
    }
    if (f)
        fclose(f);
    printf("    %d tensors after %d steps: worst sample NMSE %.3g, worst sum difference %.3g (relative to the norm)\n",
           tensors, steps, worst, worst_sum);
    CHECK(tensors > 150);
    optvq_array_free(&fin);
    optvq_array_free(&want);
    ae_disc_free(&s);
    optimizer_free(&ae);
    optimizer_free(&dopt);
done:
    disc_free(d);
    lpips_free(lp);
    model_trainer_free(tr);
    optvq_model_free(m);
}
