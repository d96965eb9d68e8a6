/* Training parity: a few steps of the reference recipe (AdamW param groups,
 * OneCycleLR with beta1 cycling, gradient clipping, L1 + L2 + quantizer loss)
 * against tools/gen_train_ref.py, then the losses and every parameter; for
 * the plain CNN (tests/ref/train) and a tiny taming VQGAN
 * (tests/ref/train_taming). Plus the split forward / backward API: the last
 * layer's gradient, forward + backward == step, error states, and a
 * finite-difference check. */
#include "model/trainer.h"
#include "model/vqmodel.h"
#include "nn/nn.h"
#include "optvq/optvq.h"
#include "test.h"
#include "train/optimizer.h"
#include "train/schedule.h"

#include "core/rng.h"

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

/* ---- the tiny taming VQGAN (tools/gen_train_ref.py taming) ---- */

#define TAMING_B 2
#define TAMING_R 16
#define TAMING_SAMPLE 256

static void taming_path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/train_taming/%s", test_ref_dir(), name);
}

/* det_init of tools/gen_train_ref.py: float64 then one rounding. */
static void det_init(optvq_model *m)
{
    nn_params *ps = model_params(m);
    for (int i = 0; i < ps->count; i++) {
        nn_param *p = &ps->items[i];
        const uint64_t base = test_fnv1a64(p->name);
        size_t len = strlen(p->name);
        int is_weight = len > 7 && !strcmp(p->name + len - 7, ".weight");
        double fan_in = 1;
        if (!strstr(p->name, ".norm")) {
            char wn[NN_PARAM_NAME_MAX];
            snprintf(wn, sizeof wn, "%.*s.weight", (int)(strrchr(p->name, '.') - p->name), p->name);
            nn_param *w = nn_params_find(ps, wn);
            fan_in = (double)(w->shape[1] * (w->ndim == 4 ? w->shape[2] * w->shape[3] : 1));
        }
        for (int64_t j = 0; j < p->numel; j++) {
            double u = test_det_u(base, j);
            p->data[j] = (float)(strstr(p->name, ".norm") ? (is_weight ? 1.0 + 0.1 * u : 0.1 * u) : u / sqrt(fan_in));
        }
    }
    optvq_quantizer *q = optvq_model_quantizer(m);
    const char *names[3] = {"quantize.embedding.weight", "quantize.proj.weight", "quantize.proj.bias"};
    const int64_t d = optvq_quantizer_get_config(q)->e_dim / optvq_quantizer_get_config(q)->num_head;
    for (int k = 0; k < 3; k++) {
        int64_t cnt;
        float *p = optvq_quantizer_param(q, (optvq_param)k, &cnt);
        const uint64_t base = test_fnv1a64(names[k]);
        const double s = k == 0 ? sqrt(3.0) : sqrt(3.0 / (double)d);
        for (int64_t j = 0; j < cnt; j++)
            p[j] = (float)(test_det_u(base, j) * s);
    }
}

static optvq_model *taming_model(void)
{
    char cfg[512];
    taming_path(cfg, sizeof cfg, "config.yaml");
    optvq_model *m = NULL;
    CHECK_OK(optvq_model_create(cfg, 0, &m));
    if (m)
        det_init(m);
    return m;
}

static float *taming_batch(int k)
{
    char p[512], name[64];
    snprintf(name, sizeof name, "batch_%d.npy", k);
    taming_path(p, sizeof p, name);
    optvq_array a = {0};
    CHECK_OK(optvq_npy_read(p, &a));
    if (a.data && optvq_array_numel(&a) != TAMING_B * 3 * TAMING_R * TAMING_R) {
        CHECK_MSG(0, "%s: unexpected size", p);
        optvq_array_free(&a);
    }
    return a.data; /* malloc'd by the reader; free() */
}

/* The tiny taming model, its reference batch k and a trainer on them; 0 (all
 * freed) when the reference files are missing or the trainer fails. */
static int taming_setup(int k, optvq_model **m, float **x, model_trainer **t)
{
    *m = taming_model();
    *x = taming_batch(k);
    *t = NULL;
    if (*m)
        CHECK_OK(model_trainer_create(*m, t));
    if (*m && *x && *t)
        return 1;
    free(*x);
    model_trainer_free(*t);
    optvq_model_free(*m);
    return 0;
}

/* Every model and quantizer tensor: name, values, gradient, size. */
typedef struct tensor_ref {
    const char *name;
    float *data, *grad;
    int64_t n;
} tensor_ref;

static int all_tensors(optvq_model *m, tensor_ref *out, int max)
{
    int k = 0;
    nn_params *ps = model_params(m);
    for (int i = 0; i < ps->count && k < max; i++)
        out[k++] = (tensor_ref){ps->items[i].name, ps->items[i].data, ps->items[i].grad, ps->items[i].numel};
    static const char *const qn[3] = {"quantize.embedding.weight", "quantize.proj.weight", "quantize.proj.bias"};
    optvq_quantizer *q = optvq_model_quantizer(m);
    for (int j = 0; j < 3 && k < max; j++) {
        int64_t n;
        float *d = optvq_quantizer_param(q, (optvq_param)j, &n);
        if (d)
            out[k++] = (tensor_ref){qn[j], d, optvq_quantizer_grad(q, (optvq_param)j, NULL), n};
    }
    return k;
}

#define MAX_TENSORS 400

/* Tensors whose gradient is zero in exact arithmetic, so PyTorch's and ours
 * are both rounding noise (and AdamW turns that noise into updates of up to
 * ~lr): a bias that feeds a GroupNorm with one channel per group (ch 32,
 * 32 groups), the k bias of attention (softmax is shift-invariant). Found from
 * the reference: max |grad0| below 1e-6 of the largest. */
static void find_gradient_free(optvq_model *m, int *flags)
{
    tensor_ref ts[MAX_TENSORS];
    const int nt = all_tensors(m, ts, MAX_TENSORS);
    double *mx = calloc((size_t)nt, sizeof(double)), gmax = 0;
    for (int i = 0; i < nt; i++) {
        char p[512], f[300];
        snprintf(f, sizeof f, "grad0/%s.npy", ts[i].name);
        taming_path(p, sizeof p, f);
        optvq_array a = {0};
        if (optvq_npy_read(p, &a) == OPTVQ_OK) {
            const float *v = a.data;
            for (int64_t j = 0; j < optvq_array_numel(&a); j++)
                mx[i] = fmax(mx[i], fabs(v[j]));
        }
        optvq_array_free(&a);
        gmax = fmax(gmax, mx[i]);
    }
    for (int i = 0; i < nt; i++)
        flags[i] = mx[i] < 1e-6 * gmax;
    free(mx);
}

/* Compares every tensor's strided sample (values or gradients) with
 * <sub>/<name>.npy: the worst per-tensor NMSE over the tensors with a real
 * gradient, and the NMSE of all samples together. */
static void compare_all(optvq_model *m, const char *sub, int grads, const int *free_flags, double *worst_tensor,
                        double *global)
{
    tensor_ref ts[MAX_TENSORS];
    const int nt = all_tensors(m, ts, MAX_TENSORS);
    double worst = 0, num = 0, den = 0;
    for (int i = 0; i < nt; i++) {
        const float *d = grads ? ts[i].grad : ts[i].data;
        char p[512], f[300];
        snprintf(f, sizeof f, "%s/%s.npy", sub, ts[i].name);
        taming_path(p, sizeof p, f);
        optvq_array a = {0};
        CHECK_OK(optvq_npy_read(p, &a));
        if (!a.data) {
            worst = INFINITY;
            continue;
        }
        const int64_t n = ts[i].n, stride = (n + TAMING_SAMPLE - 1) / TAMING_SAMPLE, cnt = (n + stride - 1) / stride;
        if (optvq_array_numel(&a) != cnt) {
            CHECK_MSG(0, "%s: %lld sampled values, expected %lld", f, (long long)optvq_array_numel(&a), (long long)cnt);
            worst = INFINITY;
        } else {
            float *g = malloc((size_t)cnt * sizeof(float));
            const float *w = a.data;
            for (int64_t j = 0; j < cnt; j++) {
                g[j] = d[j * stride];
                num += ((double)g[j] - w[j]) * ((double)g[j] - w[j]);
                den += (double)w[j] * w[j];
            }
            char what[300];
            snprintf(what, sizeof what, "%s %s%s", sub, ts[i].name, free_flags[i] ? " (zero-gradient)" : "");
            test_diff df = test_compare(what, g, w, cnt);
            if (!free_flags[i])
                worst = !(df.nmse <= worst) ? df.nmse : worst;
            free(g);
        }
        optvq_array_free(&a);
    }
    *worst_tensor = worst;
    *global = den > 0 ? num / den : num;
}

TEST(train_taming_steps_match_pytorch)
{
    optvq_model *m = taming_model();
    if (!m)
        return;
    const model_config *c = model_get_config(m);
    CHECK(c->encoder.arch == ARCH_TAMING && c->train.batch_size == TAMING_B);
    model_trainer *t = NULL;
    CHECK_OK(model_trainer_create(m, &t));
    int free_flags[MAX_TENSORS] = {0};
    find_gradient_free(m, free_flags);
    optimizer o;
    CHECK_OK(optimizer_init(&o, m, c->train.learning_rate * TAMING_B, 1.0, c->train.weight_decay, 10));
    optvq_array losses = {0};
    char p[512];
    taming_path(p, sizeof p, "losses.npy");
    CHECK_OK(optvq_npy_read(p, &losses));
    const model_loss_weights lw = {1.0, 1.0, 1.0};
    const int steps = losses.data ? (int)losses.shape[0] : 0;
    for (int k = 0; k < steps && t; k++) {
        float *x = taming_batch(k);
        if (!x)
            break;
        optimizer_zero_grad(&o);
        model_losses l;
        CHECK_OK(model_trainer_step(t, x, TAMING_B, TAMING_R, TAMING_R, &lw, &l, NULL, NULL));
        if (k == 0) { /* gradients before clipping */
            double wg, gg;
            compare_all(m, "grad0", 1, free_flags, &wg, &gg);
            printf("    step 0 gradients: worst sampled NMSE %.3g over the tensors with a gradient, %.3g over all\n",
                   wg, gg);
            CHECK_MSG(wg < 1e-9 && gg < 1e-9, "step 0 gradients differ from PyTorch (NMSE %.3g, all %.3g)", wg, gg);
        }
        double gn = optimizer_step(&o);
        const double *want = (const double *)losses.data + 4 * k;
        printf("    step %d: loss %.7f (torch %.7f)  l1 %.7f (%.7f)  l2 %.7f (%.7f)  q %.7f (%.7f)  grad norm %.4f\n", k,
               l.total, want[0], l.l1, want[1], l.l2, want[2], l.q, want[3], gn);
        const double got[4] = {l.total, l.l1, l.l2, l.q};
        for (int j = 0; j < 4; j++)
            CHECK_MSG(fabs(got[j] - want[j]) <= 1e-5 * fabs(want[j]), "step %d: loss term %d %.8f vs torch %.8f", k, j,
                      got[j], want[j]);
        free(x);
    }
    CHECK(steps >= 3);
    double worst, global;
    compare_all(m, "final", 0, free_flags, &worst, &global);
    int n_free = 0;
    for (int i = 0; i < MAX_TENSORS; i++)
        n_free += free_flags[i];
    printf("    after %d steps: worst sampled parameter NMSE %.3g (%d zero-gradient tensors left out), %.3g over all\n",
           steps, worst, n_free, global);
    /* per tensor as the plain test: AdamW turns the gradients' rounding noise
     * (~1e-6 of a tensor's norm) into large relative changes of the updates
     * of its smallest elements */
    CHECK_MSG(worst < 1e-7 && global < 1e-9, "parameters differ from PyTorch after %d steps (NMSE %.3g, all %.3g)",
              steps, worst, global);
    CHECK(n_free <= 16);
    optvq_array_free(&losses);
    optimizer_free(&o);
    model_trainer_free(t);
    optvq_model_free(m);
}

/* d (l1 + l2) / d recon into g (zeroed first). */
static void recon_grad(float *g, const float *rec, const float *x, int64_t n)
{
    memset(g, 0, (size_t)n * sizeof(float));
    nn_l1_loss_backward(g, NULL, 1.0f, rec, x, n);
    nn_mse_loss_backward(g, NULL, 1.0f, rec, x, n);
}

static int all_zero(const float *p, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (p[i] != 0.0f)
            return 0;
    return 1;
}

TEST(train_taming_last_layer_grad_matches_pytorch)
{
    optvq_model *m;
    float *x;
    model_trainer *t;
    if (!taming_setup(0, &m, &x, &t))
        return;
    const int64_t n = TAMING_B * 3 * TAMING_R * TAMING_R;
    const int64_t nw = model_trainer_last_layer_numel(t);
    nn_param *last = nn_params_find(model_params(m), "decoder.conv_out.weight");
    CHECK(last && nw == last->numel && nw == 3 * 32 * 9);
    float *dw = malloc((size_t)nw * sizeof(float)), *g = malloc((size_t)n * sizeof(float));
    /* before any forward: a state error, not a crash */
    CHECK(model_trainer_last_layer_grad(t, g, dw) == OPTVQ_ERR_STATE);
    CHECK(model_trainer_backward(t, g, 1.0) == OPTVQ_ERR_STATE);
    const float *rec = NULL;
    float ql = 0;
    CHECK_OK(model_trainer_forward(t, x, TAMING_B, TAMING_R, TAMING_R, &rec, &ql, NULL));
    recon_grad(g, rec, x, n);
    CHECK_OK(model_trainer_last_layer_grad(t, g, dw));
    char p[512];
    taming_path(p, sizeof p, "last_layer_grad.npy");
    optvq_array want = {0};
    CHECK_OK(optvq_npy_read(p, &want));
    if (want.data && optvq_array_numel(&want) == nw) {
        test_diff d = test_compare("d(l1+l2)/d decoder.conv_out.weight", dw, want.data, nw);
        CHECK_MSG(d.nmse < 1e-10, "last layer gradient NMSE %.3g", d.nmse);
    } else {
        CHECK_MSG(0, "%s: missing or of the wrong size", p);
    }
    optvq_array_free(&want);
    /* the model's gradients are untouched */
    nn_params *ps = model_params(m);
    CHECK(all_zero(ps->grad, (int64_t)ps->total));
    /* a full backward (q weight 0) puts the same values into the weight's gradient */
    float *g_copy = malloc((size_t)n * sizeof(float));
    memcpy(g_copy, g, (size_t)n * sizeof(float));
    CHECK_OK(model_trainer_backward(t, g, 0.0));
    CHECK_MSG(!memcmp(g, g_copy, (size_t)n * sizeof(float)), "backward modified d_recon");
    test_diff d = test_compare("last layer grad vs backward", dw, last->grad, nw);
    CHECK(d.max_abs == 0);
    CHECK(model_trainer_backward(t, g, 0.0) == OPTVQ_ERR_STATE); /* once per forward */
    CHECK_OK(model_trainer_last_layer_grad(t, g, dw));           /* still valid after backward */
    free(g_copy);
    free(dw);
    free(g);
    free(x);
    model_trainer_free(t);
    optvq_model_free(m);
}

/* Every model and quantizer gradient, concatenated (malloc'd). */
static float *grads_copy(optvq_model *m, int64_t *n)
{
    nn_params *ps = model_params(m);
    optvq_quantizer *q = optvq_model_quantizer(m);
    int64_t nq[3] = {0, 0, 0}, total = (int64_t)ps->total;
    for (int k = 0; k < 3; k++)
        if (optvq_quantizer_grad(q, (optvq_param)k, &nq[k]))
            total += nq[k];
        else
            nq[k] = 0;
    float *out = malloc((size_t)total * sizeof(float)), *p = out;
    memcpy(p, ps->grad, ps->total * sizeof(float));
    p += ps->total;
    for (int k = 0; k < 3; k++)
        if (nq[k]) {
            memcpy(p, optvq_quantizer_grad(q, (optvq_param)k, NULL), (size_t)nq[k] * sizeof(float));
            p += nq[k];
        }
    *n = total;
    return out;
}

static void zero_grads(optvq_model *m)
{
    nn_params_zero_grad(model_params(m));
    optvq_quantizer *q = optvq_model_quantizer(m);
    for (int k = 0; k < 3; k++) {
        int64_t n;
        float *g = optvq_quantizer_grad(q, (optvq_param)k, &n);
        if (g)
            memset(g, 0, (size_t)n * sizeof(float));
    }
}

TEST(train_forward_backward_equals_step)
{
    optvq_model *m;
    float *x;
    model_trainer *t;
    if (!taming_setup(1, &m, &x, &t))
        return;
    const int64_t n = TAMING_B * 3 * TAMING_R * TAMING_R;
    const model_loss_weights lw = {1.0, 1.0, 0.7};
    model_losses l;
    float *rec_step = malloc((size_t)n * sizeof(float)), *g = malloc((size_t)n * sizeof(float));
    int64_t tok_step[TAMING_B * 2 * 8 * 8], tok[TAMING_B * 2 * 8 * 8];
    zero_grads(m);
    CHECK_OK(model_trainer_step(t, x, TAMING_B, TAMING_R, TAMING_R, &lw, &l, rec_step, tok_step));
    int64_t ng;
    float *want = grads_copy(m, &ng);
    zero_grads(m);
    const float *rec = NULL;
    float ql = 0;
    CHECK_OK(model_trainer_forward(t, x, TAMING_B, TAMING_R, TAMING_R, &rec, &ql, tok));
    CHECK(rec && !memcmp(rec, rec_step, (size_t)n * sizeof(float)));
    CHECK(!memcmp(tok, tok_step, sizeof tok));
    CHECK(ql == (float)l.q);
    /* the training forward is the inference forward, bit for bit */
    float *inf = malloc((size_t)n * sizeof(float));
    int64_t tok_inf[TAMING_B * 2 * 8 * 8];
    CHECK_OK(optvq_model_reconstruct(m, x, TAMING_B, TAMING_R, TAMING_R, inf, tok_inf));
    CHECK_MSG(!memcmp(inf, rec, (size_t)n * sizeof(float)), "training and inference reconstructions differ");
    CHECK(!memcmp(tok_inf, tok, sizeof tok));
    free(inf);
    recon_grad(g, rec, x, n);
    CHECK_OK(model_trainer_backward(t, g, lw.q));
    int64_t ng2;
    float *got = grads_copy(m, &ng2);
    CHECK(ng == ng2);
    test_diff d = test_compare("forward+backward vs step grads", got, want, ng);
    CHECK_MSG(d.max_abs == 0, "forward + backward differs from step (max abs %.3g)", d.max_abs);
    /* a second step accumulates: twice the gradient */
    CHECK_OK(model_trainer_step(t, x, TAMING_B, TAMING_R, TAMING_R, &lw, &l, NULL, NULL));
    float *twice = grads_copy(m, &ng2);
    for (int64_t i = 0; i < ng; i++)
        twice[i] *= 0.5f;
    d = test_compare("two steps / 2 vs one", twice, want, ng);
    CHECK(d.nmse < 1e-12); /* GEMMs accumulating with beta = 1 round differently */
    /* bad shapes are refused with a message */
    CHECK(model_trainer_forward(t, x, TAMING_B, 15, 16, &rec, &ql, NULL) == OPTVQ_ERR_INVALID_ARG);
    CHECK(model_trainer_backward(t, g, 1.0) == OPTVQ_ERR_STATE);
    free(twice);
    free(got);
    free(want);
    free(g);
    free(rec_step);
    free(x);
    model_trainer_free(t);
    optvq_model_free(m);
}

/* Finite differences along random directions: decoder tensors through
 * L = sum(recon * R) (d_recon = R, q weight 0; the decoder does not move the
 * quantizer's assignment) and encoder/connector tensors through the quantizer
 * loss alone (d_recon = 0, q weight 1; valid while no assignment flips, which
 * the tokens confirm). The direction is each tensor's gradient. */
static double fd_loss(model_trainer *t, const float *x, const float *R, int64_t n, int64_t *tok)
{
    const float *rec = NULL;
    float ql = 0;
    if (model_trainer_forward(t, x, TAMING_B, TAMING_R, TAMING_R, &rec, &ql, tok) != OPTVQ_OK)
        return NAN;
    if (!R)
        return ql;
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)rec[i] * R[i];
    return s;
}

TEST(train_taming_finite_differences)
{
    optvq_model *m;
    float *x;
    model_trainer *t;
    if (!taming_setup(2, &m, &x, &t))
        return;
    static const char *const names[] = {
        "decoder.conv_out.weight",          "decoder.norm_out.weight",
        "decoder.up.0.block.0.nin_shortcut.weight", "decoder.up.1.upsample.conv.weight",
        "decoder.up.1.attn.1.q.weight",     "decoder.up.1.attn.0.norm.bias",
        "decoder.mid.block_1.norm1.weight", "decoder.mid.block_2.conv1.bias",
        "decoder.conv_in.weight",           "post_quant_conv.weight",
        "encoder.conv_in.weight",           "encoder.down.0.downsample.conv.weight",
        "encoder.down.1.block.0.nin_shortcut.weight", "encoder.down.1.attn.0.k.weight",
        "encoder.mid.block_1.norm2.weight", "encoder.norm_out.bias",
        "quant_conv.weight"};
    const int64_t n = TAMING_B * 3 * TAMING_R * TAMING_R, nt = TAMING_B * 2 * 8 * 8;
    optvq_rng rng;
    optvq_rng_seed(&rng, 99);
    float *R = malloc((size_t)n * sizeof(float)), *zero_g = calloc((size_t)n, sizeof(float));
    for (int64_t i = 0; i < n; i++)
        R[i] = (float)optvq_rng_normal(&rng);
    int64_t tok0[TAMING_B * 2 * 8 * 8], tok1[TAMING_B * 2 * 8 * 8];
    double worst = 0;
    int skipped = 0;
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        nn_param *p = nn_params_find(model_params(m), names[k]);
        CHECK_MSG(p, "no parameter %s", names[k]);
        if (!p)
            continue;
        const int dec = strncmp(names[k], "decoder.", 8) == 0 || strncmp(names[k], "post_quant", 10) == 0;
        const float *Rk = dec ? R : NULL;
        /* analytic: <grad, v> */
        zero_grads(m);
        fd_loss(t, x, Rk, n, tok0);
        CHECK_OK(model_trainer_backward(t, dec ? R : zero_g, dec ? 0.0 : 1.0));
        /* direction: the gradient, scaled to the tensor's norm */
        double pn = 0, gn = 0;
        for (int64_t j = 0; j < p->numel; j++) {
            pn += (double)p->data[j] * p->data[j];
            gn += (double)p->grad[j] * p->grad[j];
        }
        float *v = malloc((size_t)p->numel * sizeof(float)), *keep = malloc((size_t)p->numel * sizeof(float));
        double an = 0;
        for (int64_t j = 0; j < p->numel; j++) {
            v[j] = (float)(p->grad[j] * sqrt(pn / gn));
            an += (double)p->grad[j] * v[j];
        }
        /* The quantizer loss mean((z - sg(x_q))^2) + beta mean((x_q - sg(z))^2) sends
         * only its first term to z, but both terms move with z: the finite
         * difference of the value is (1 + beta) x the gradient. */
        if (!dec)
            an *= 1.0 + optvq_quantizer_get_config(optvq_model_quantizer(m))->beta;
        memcpy(keep, p->data, (size_t)p->numel * sizeof(float));
        double eps = dec ? 1e-3 : 3e-3, fd = NAN;
        for (int tries = 0; tries < 4; tries++, eps /= 4) {
            for (int64_t j = 0; j < p->numel; j++)
                p->data[j] = keep[j] + (float)(eps * v[j]);
            double lp = fd_loss(t, x, Rk, n, tok1);
            int same = !memcmp(tok0, tok1, (size_t)nt * sizeof(int64_t));
            for (int64_t j = 0; j < p->numel; j++)
                p->data[j] = keep[j] - (float)(eps * v[j]);
            double lm = fd_loss(t, x, Rk, n, tok1);
            same = same && !memcmp(tok0, tok1, (size_t)nt * sizeof(int64_t));
            if (same) {
                fd = (lp - lm) / (2 * eps);
                break;
            }
        }
        memcpy(p->data, keep, (size_t)p->numel * sizeof(float));
        if (isnan(fd)) { /* every step size flipped some assignment */
            printf("    %-44s skipped: the assignment flips\n", names[k]);
            skipped++;
        } else {
            double rel = fabs(fd - an) / fmax(fabs(an), 1e-12);
            printf("    %-44s analytic %+.6e  finite diff %+.6e  rel %.2e\n", names[k], an, fd, rel);
            worst = !(rel <= worst) ? rel : worst;
        }
        free(v);
        free(keep);
    }
    printf("    worst relative error: %.3g\n", worst);
    CHECK_MSG(worst < 5e-3, "finite differences disagree (worst rel %.3g)", worst);
    CHECK_MSG(skipped <= 2, "%d tensors skipped", skipped);
    free(R);
    free(zero_g);
    free(x);
    model_trainer_free(t);
    optvq_model_free(m);
}
