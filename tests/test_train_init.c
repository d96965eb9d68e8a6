/* Starting a run from given weights (--init-from / train.enterpoint) and a
 * given codebook (--codebook / train.code_path), through the public training
 * API: from the weights that tools/gen_train_ref.py's PyTorch run starts from
 * (tests/ref/train/init.pth) and its first batch, the first step's losses
 * equal PyTorch's first step. The loader refuses a tensor the model lacks or
 * one of another shape, naming it. */
#include "io/weights.h"
#include "optvq/optvq.h"
#include "optvq/train.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

typedef struct first_step {
    int seen;
    double loss, l1, l2, q;
} first_step;

static int take_first(const optvq_train_report *r, void *user)
{
    first_step *f = user;
    if (r->event == OPTVQ_TRAIN_STEP && !f->seen) {
        f->seen = 1;
        f->loss = r->loss;
        f->l1 = r->l1;
        f->l2 = r->l2;
        f->q = r->q;
    }
    return 1; /* one step is enough */
}

static void options(optvq_train_options *o, char paths[4][512], const char *run)
{
    snprintf(paths[0], 512, "%s/train/config.yaml", test_ref_dir());
    snprintf(paths[1], 512, "%s/train/init.pth", test_ref_dir());
    snprintf(paths[2], 512, "%s/train/batch_0.npy", test_ref_dir());
    optvq_train_options_default(o);
    o->config = paths[0];
    o->init_from = paths[1];
    o->codebook = paths[1]; /* the file's quantize.embedding.weight */
    o->data = paths[2];
    o->out = tmp_path(run);
    o->batch_size = 16;
    o->epochs = 10; /* the reference's 10-step schedule */
    o->val_limit = 0;
    o->force = 1;
    o->threads = 1;
}

TEST(train_init_from_first_step_matches_pytorch)
{
    char paths[4][512], p[512];
    optvq_train_options o;
    options(&o, paths, "init_from_run");
    optvq_train *t = NULL;
    CHECK_OK(optvq_train_create(&o, &t));
    first_step f = {0};
    if (t)
        CHECK_OK(optvq_train_run(t, take_first, &f));
    optvq_train_free(t);
    optvq_array losses = {0};
    snprintf(p, sizeof p, "%s/train/losses.npy", test_ref_dir());
    CHECK_OK(optvq_npy_read(p, &losses));
    CHECK(f.seen && losses.data);
    if (!f.seen || !losses.data)
        return;
    const double *want = losses.data; /* step 0: total, l1, l2, q */
    printf("    first step from init.pth: loss %.7f (torch %.7f)  l1 %.7f (%.7f)  l2 %.7f (%.7f)  q %.7f (%.7f)\n",
           f.loss, want[0], f.l1, want[1], f.l2, want[2], f.q, want[3]);
    const double got[4] = {f.loss, f.l1, f.l2, f.q};
    for (int k = 0; k < 4; k++)
        CHECK_MSG(fabs(got[k] - want[k]) <= 1e-5 * fabs(want[k]) + 1e-7, "term %d: %.8f vs torch %.8f", k, got[k],
                  want[k]);
    const double want_q = want[3];
    optvq_array_free(&losses);

    /* without the given codebook the embedding keeps the config's init, so the quantizer term differs */
    options(&o, paths, "init_from_no_codebook");
    o.codebook = NULL;
    t = NULL;
    CHECK_OK(optvq_train_create(&o, &t));
    first_step g = {0};
    if (t)
        CHECK_OK(optvq_train_run(t, take_first, &g));
    optvq_train_free(t);
    CHECK(g.seen && fabs(g.q - want_q) > 1e-3);
}

TEST(train_init_from_refuses_foreign_tensors)
{
    char paths[4][512];
    optvq_train_options o;
    options(&o, paths, "init_from_bad");
    /* a model of another architecture: its tensors are not this model's */
    char other[512];
    snprintf(other, sizeof other, "%s/model/taming_small/model.pth", test_ref_dir());
    o.init_from = other;
    optvq_train *t = NULL;
    CHECK(optvq_train_create(&o, &t) != OPTVQ_OK && t == NULL);
    CHECK(strstr(optvq_last_error(), "is not a parameter of this model") != NULL);
    /* a codebook of the wrong shape */
    options(&o, paths, "init_from_bad2");
    char codes[512];
    snprintf(codes, sizeof codes, "%s/train/batch_0.npy", test_ref_dir());
    o.codebook = codes;
    CHECK(optvq_train_create(&o, &t) != OPTVQ_OK && t == NULL);
    CHECK(strstr(optvq_last_error(), "the model needs") != NULL);
}

/* A checkpoint in the version-1 layout (progress as the float tensor
 * "progress", no metadata) made from this build's own version-2 checkpoint
 * resumes to the same bytes as an unbroken run: the two formats carry the
 * same state. */
static void tiny(optvq_train_options *o, char cfg[512], const char *run)
{
    snprintf(cfg, 512, "%s/train/config.yaml", test_ref_dir());
    optvq_train_options_default(o);
    o->config = cfg;
    o->data = "fashion-mnist";
    o->limit = 48;
    o->batch_size = 16;
    o->epochs = 2;
    o->val_limit = 0;
    o->threads = 1;
    o->out = tmp_path(run);
    o->force = 1;
}

static int train_to_end(optvq_train_options *o)
{
    optvq_train *t = NULL;
    int ok = optvq_train_create(o, &t) == OPTVQ_OK && optvq_train_run(t, NULL, NULL) == OPTVQ_OK;
    optvq_train_free(t);
    return ok;
}

static int same_file(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        same = ca == cb;
        if (ca == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

TEST(train_checkpoint_v1_and_v2_resume_alike)
{
    char cfg[512], p[1024], q[1024];
    optvq_train_options o;
    tiny(&o, cfg, "ckpt_unbroken");
    CHECK(train_to_end(&o));
    tiny(&o, cfg, "ckpt_v1");
    o.stop_after = 4; /* the checkpoint of epoch 1 (3 steps) stays */
    CHECK(train_to_end(&o));
    /* rewrite it as version 1 */
    snprintf(p, sizeof p, "%s/checkpoint.safetensors", tmp_path("ckpt_v1"));
    optvq_weights *w = NULL, *v1 = NULL;
    CHECK_OK(optvq_weights_load(p, &w));
    CHECK_OK(optvq_weights_create(&v1));
    for (int64_t i = 0; w && v1 && i < optvq_weights_count(w); i++) {
        const optvq_tensor *t = optvq_weights_get(w, i);
        CHECK_OK(optvq_weights_add(v1, t->name, t->ndim, t->shape, t->data));
    }
    const char *step = w ? optvq_weights_meta(w, "optvq.step") : NULL, *seed = w ? optvq_weights_meta(w, "optvq.seed") : NULL;
    CHECK(step && seed && atoll(step) == 3);
    if (step && seed && v1) {
        long long sd = atoll(seed);
        float prog[6] = {1.0f, (float)atoll(step), 6.0f, 16.0f, (float)(sd & 0xffffff), (float)(sd >> 24)};
        int64_t shape[1] = {6};
        CHECK_OK(optvq_weights_add(v1, "progress", 1, shape, prog));
        CHECK_OK(optvq_weights_save_safetensors(v1, p));
    }
    optvq_weights_free(w);
    optvq_weights_free(v1);
    tiny(&o, cfg, "ckpt_v1");
    o.force = 0;
    o.resume = 1;
    CHECK(train_to_end(&o));
    snprintf(p, sizeof p, "%s/model.safetensors", tmp_path("ckpt_unbroken"));
    snprintf(q, sizeof q, "%s/model.safetensors", tmp_path("ckpt_v1"));
    CHECK_MSG(same_file(p, q), "a run resumed from a version-1 checkpoint ends elsewhere than an unbroken run");
}
