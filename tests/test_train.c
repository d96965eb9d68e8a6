/* Training parity: a few steps of the reference recipe (AdamW param groups,
 * OneCycleLR with beta1 cycling, gradient clipping, L1 + L2 + quantizer loss)
 * against tools/gen_train_ref.py, then the losses and every parameter. */
#include "model/trainer.h"
#include "model/vqmodel.h"
#include "nn/nn.h"
#include "optvq/optvq.h"
#include "test.h"
#include "train/optimizer.h"
#include "train/schedule.h"

#include <stdlib.h>
#include <string.h>

static void ref_path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/train/%s", test_ref_dir(), name);
}

TEST(train_steps_match_pytorch)
{
    char cfg[512], w[512];
    ref_path(cfg, sizeof cfg, "config.yaml");
    ref_path(w, sizeof w, "init.pth");
    optvq_model *m = NULL;
    CHECK_OK(optvq_model_load(cfg, w, &m));
    if (!m)
        return;
    const model_config *c = model_get_config(m);
    CHECK(c->train.batch_size == 16 && fabs(c->train.learning_rate - 1e-3) < 1e-12);
    model_trainer *t = NULL;
    CHECK_OK(model_trainer_create(m, &t));
    optimizer o;
    CHECK_OK(optimizer_init(&o, m, c->train.learning_rate * 16, 1.0, c->train.weight_decay, 10));
    optvq_array losses = {0};
    char p[512];
    ref_path(p, sizeof p, "losses.npy");
    CHECK_OK(optvq_npy_read(p, &losses));
    const model_loss_weights lw = {1.0, 1.0, 1.0};
    for (int k = 0; k < 4 && losses.data; k++) {
        optvq_array x = {0};
        char name[64];
        snprintf(name, sizeof name, "batch_%d.npy", k);
        ref_path(p, sizeof p, name);
        CHECK_OK(optvq_npy_read(p, &x));
        optimizer_zero_grad(&o);
        model_losses l;
        CHECK_OK(model_trainer_step(t, x.data, 16, 32, 32, &lw, &l, NULL, NULL));
        double gn = optimizer_step(&o);
        const double *want = (const double *)losses.data + 4 * k;
        printf("    step %d: loss %.6f (torch %.6f)  l1 %.6f (%.6f)  l2 %.6f (%.6f)  q %.6f (%.6f)  grad norm %.4f\n", k,
               l.total, want[0], l.l1, want[1], l.l2, want[2], l.q, want[3], gn);
        CHECK_MSG(fabs(l.total - want[0]) <= 1e-4 * fabs(want[0]) + 1e-6, "step %d: loss %.8f vs %.8f", k, l.total,
                  want[0]);
        CHECK_MSG(fabs(l.q - want[3]) <= 1e-4 * fabs(want[3]) + 1e-6, "step %d: q loss differs", k);
        optvq_array_free(&x);
    }
    /* every parameter after the last step */
    double worst = 0;
    nn_params *ps = model_params(m);
    for (int i = 0; i < ps->count; i++) {
        char name[300];
        snprintf(name, sizeof name, "final/%s.npy", ps->items[i].name);
        ref_path(p, sizeof p, name);
        optvq_array a = {0};
        CHECK_OK(optvq_npy_read(p, &a));
        if (!a.data)
            continue;
        test_diff d = test_compare(ps->items[i].name, ps->items[i].data, a.data, ps->items[i].numel);
        worst = d.nmse > worst ? d.nmse : worst;
        optvq_array_free(&a);
    }
    static const char *const qn[3] = {"quantize.embedding.weight", "quantize.proj.weight", "quantize.proj.bias"};
    for (int k = 0; k < 3; k++) {
        char name[300];
        snprintf(name, sizeof name, "final/%s.npy", qn[k]);
        ref_path(p, sizeof p, name);
        optvq_array a = {0};
        CHECK_OK(optvq_npy_read(p, &a));
        int64_t n;
        float *d = optvq_quantizer_param(optvq_model_quantizer(m), (optvq_param)k, &n);
        if (a.data && d) {
            test_diff df = test_compare(qn[k], d, a.data, n);
            worst = df.nmse > worst ? df.nmse : worst;
        }
        optvq_array_free(&a);
    }
    printf("    worst parameter NMSE after 4 steps: %.3g\n", worst);
    CHECK_MSG(worst < 1e-7, "parameters differ from PyTorch after 4 steps (NMSE %.3g)", worst);
    optvq_array_free(&losses);
    optimizer_free(&o);
    model_trainer_free(t);
    optvq_model_free(m);
}

TEST(train_onecycle_matches_pytorch_formula)
{
    /* OneCycleLR(max_lr=1, total_steps=100, pct_start=0.01): values computed by
     * torch 1.13 (printed by hand with the reference settings) */
    onecycle s;
    onecycle_init(&s, 1.0, 100);
    double lr, b1;
    onecycle_at(&s, 0, &lr, &b1);
    CHECK(fabs(lr - 0.04) < 1e-15 && fabs(b1 - 0.95) < 1e-15);
    onecycle_at(&s, 99, &lr, &b1);
    CHECK(fabs(lr - 4e-6) < 1e-15 && fabs(b1 - 0.95) < 1e-12);
    onecycle_at(&s, 1, &lr, &b1); /* phase 2 starts at step 0 (end_step = 0): pct = 1/99 */
    double want = 4e-6 + (1.0 - 4e-6) / 2.0 * (cos(M_PI * (1.0 / 99.0)) + 1.0);
    CHECK_MSG(fabs(lr - want) < 1e-12, "lr at step 1: %.15g vs %.15g", lr, want);
}
