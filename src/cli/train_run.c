#include "cli/train_run.h"
#include "cli/util.h"

#include "core/rng.h"
#include "eval/metrics.h"
#include "io/image.h"
#include "io/weights.h"
#include "model/trainer.h"
#include "model/vqmodel.h"
#include "nn/nn.h"
#include "optvq/optvq.h"
#include "quant/assign.h"
#include "quant/distance.h"
#include "eval/lpips.h"
#include "model/discriminator.h"
#include "train/ae_disc.h"
#include "train/dataset.h"
#include "train/optimizer.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct run {
    const train_options *o;
    const char *label;
    model_config cfg;
    optvq_model *model;
    model_trainer *trainer;
    optimizer opt;
    /* the full AELoss / AELossWithDisc (LPIPS, discriminator); general = 0: the plain step */
    int general;
    lpips_net *lpips;
    discriminator *disc;
    optimizer dopt;
    ae_disc step;
    dataset train, val;
    int have_val;
    int64_t epochs, batch, seed, steps_per_epoch, total_steps, start_epoch;
    double lr;
    char path[4096];
} run;

static int fail(run *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "optvq %s: ", r->label);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

static const char *run_file(run *r, const char *name)
{
    snprintf(r->path, sizeof r->path, "%s/%s", r->o->out, name);
    return r->path;
}

/* ---- codebook initialisation (train.use_initiate) ---- */

/* Encoder features of the first images as code_dim vectors (b, y, x, head). */
static int collect_features(run *r, float **vec, int64_t *count)
{
    const int64_t e = r->cfg.quantize.e_dim, h = r->cfg.quantize.num_head, d = e / h;
    const int64_t R = r->train.r, f = coder_downsample(&r->cfg.encoder), lh = R / f;
    /* about 64 features per code, as faiss's k-means samples at most 256 */
    int64_t want = 64 * r->cfg.quantize.n_e / (lh * lh * h) + 1;
    int64_t imgs = r->train.n < want ? r->train.n : want;
    int64_t n = imgs * lh * lh * h;
    float *z = malloc((size_t)(256 * e * lh * lh) * sizeof(float));
    float *v = malloc((size_t)(n * d) * sizeof(float));
    if (!z || !v) {
        free(z);
        free(v);
        return fail(r, "out of memory for the codebook initialisation");
    }
    for (int64_t i0 = 0; i0 < imgs; i0 += 256) {
        int64_t b = imgs - i0 < 256 ? imgs - i0 : 256;
        if (model_encoder_forward(r->model, r->train.images + i0 * r->train.c * R * R, b, R, R, z) != OPTVQ_OK) {
            free(z);
            free(v);
            return fail(r, "%s", optvq_last_error());
        }
        for (int64_t bi = 0; bi < b; bi++)
            for (int64_t y = 0; y < lh; y++)
                for (int64_t x = 0; x < lh; x++)
                    for (int64_t c = 0; c < e; c++)
                        v[((((i0 + bi) * lh + y) * lh + x) * e) + c] = z[((bi * e + c) * lh + y) * lh + x];
    }
    free(z);
    *vec = v;
    *count = n;
    return 0;
}

/* Random selection, or k-means (Lloyd, 20 rounds, from a random selection)
 * of encoder features; the embedding starts at the chosen codes. */
static int init_codebook(run *r)
{
    const char *method = r->cfg.train.use_initiate;
    if (!method[0])
        return 0;
    float *v = NULL;
    int64_t n = 0;
    if (collect_features(r, &v, &n))
        return 1;
    const int64_t n_e = r->cfg.quantize.n_e, d = r->cfg.quantize.e_dim / r->cfg.quantize.num_head;
    if (n < n_e) {
        free(v);
        return fail(r, "%lld feature vectors are too few to initialise %lld codes", (long long)n, (long long)n_e);
    }
    optvq_rng rng;
    optvq_rng_seed(&rng, (uint64_t)r->seed ^ 0xC0DEB00Cull);
    int64_t *perm = malloc((size_t)n * sizeof *perm), *idx = malloc((size_t)n * sizeof *idx);
    float *cent = malloc((size_t)(n_e * d) * sizeof(float)), *cT = malloc((size_t)(n_e * d) * sizeof(float));
    float *cn = malloc((size_t)n_e * sizeof(float)), *xn = malloc((size_t)n * sizeof(float));
    double *sum = malloc((size_t)(n_e * d) * sizeof(double));
    int64_t *cnt = malloc((size_t)n_e * sizeof *cnt);
    int rc = 0;
    if (!perm || !idx || !cent || !cT || !cn || !xn || !sum || !cnt) {
        rc = fail(r, "out of memory for the codebook initialisation");
        goto done;
    }
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    for (int64_t i = 0; i < n_e; i++) { /* partial Fisher-Yates */
        int64_t j = i + (int64_t)optvq_rng_below(&rng, (uint64_t)(n - i));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        memcpy(cent + i * d, v + perm[i] * d, (size_t)d * sizeof(float));
    }
    if (!strcmp(method, "kmeans")) {
        dist_sqnorms(xn, v, n, d);
        for (int round = 0; round < 20; round++) {
            for (int64_t k = 0; k < n_e; k++)
                for (int64_t j = 0; j < d; j++)
                    cT[j * n_e + k] = cent[k * d + j];
            dist_sqnorms(cn, cent, n_e, d);
            dist_ctx dc = {v, xn, cent, cT, cn, n, n_e, d};
            if (nearest_assign(&dc, idx) != OPTVQ_OK) {
                rc = fail(r, "%s", optvq_last_error());
                goto done;
            }
            memset(sum, 0, (size_t)(n_e * d) * sizeof(double));
            memset(cnt, 0, (size_t)n_e * sizeof *cnt);
            for (int64_t i = 0; i < n; i++) {
                cnt[idx[i]]++;
                for (int64_t j = 0; j < d; j++)
                    sum[idx[i] * d + j] += v[i * d + j];
            }
            for (int64_t k = 0; k < n_e; k++) {
                if (cnt[k] == 0) { /* an empty cluster restarts at a random feature */
                    int64_t i = (int64_t)optvq_rng_below(&rng, (uint64_t)n);
                    memcpy(cent + k * d, v + i * d, (size_t)d * sizeof(float));
                    continue;
                }
                for (int64_t j = 0; j < d; j++)
                    cent[k * d + j] = (float)(sum[k * d + j] / (double)cnt[k]);
            }
        }
    }
    memcpy(optvq_quantizer_param(optvq_model_quantizer(r->model), OPTVQ_PARAM_EMBEDDING, NULL), cent,
           (size_t)(n_e * d) * sizeof(float));
done:
    free(v);
    free(perm);
    free(idx);
    free(cent);
    free(cT);
    free(cn);
    free(xn);
    free(sum);
    free(cnt);
    return rc;
}

/* ---- checkpoints: one safetensors file holding the model, the optimizer
 * moments and the progress, written atomically ---- */

enum { PROG_EPOCHS, PROG_STEP, PROG_TOTAL, PROG_BATCH, PROG_SEED_LO, PROG_SEED_HI, PROG_N };

static int save_checkpoint(run *r, int64_t epochs_done)
{
    optvq_weights *w;
    if (optvq_weights_create(&w) != OPTVQ_OK)
        return fail(r, "%s", optvq_last_error());
    optvq_status st = OPTVQ_OK;
    char name[300];
    const optimizer *opts[2] = {&r->opt, &r->dopt};
    for (int k = 0; k < (r->disc ? 2 : 1); k++)
        for (int i = 0; st == OPTVQ_OK && i < opts[k]->count; i++) {
            const train_param *p = &opts[k]->params[i];
            int64_t shape[1] = {p->n};
            st = optvq_weights_add(w, p->name, 1, shape, p->data);
            snprintf(name, sizeof name, "optimizer.m.%s", p->name);
            if (st == OPTVQ_OK)
                st = optvq_weights_add(w, name, 1, shape, opts[k]->m + p->offset);
            snprintf(name, sizeof name, "optimizer.v.%s", p->name);
            if (st == OPTVQ_OK)
                st = optvq_weights_add(w, name, 1, shape, opts[k]->v + p->offset);
        }
    /* the discriminator's BatchNorm statistics (num_batches_tracked as a float: < 2^24 steps) */
    for (int i = 0; st == OPTVQ_OK && r->disc && i < disc_buffer_count(r->disc); i++) {
        optvq_dtype dt;
        int64_t n;
        void *b = disc_buffer(r->disc, i, &dt, &n);
        float one;
        const float *src = b;
        if (dt != OPTVQ_F32) {
            one = (float)*(int64_t *)b;
            src = &one;
            n = 1;
        }
        int64_t shape[1] = {n};
        st = optvq_weights_add(w, disc_buffer_name(r->disc, i), 1, shape, src);
    }
    float prog[PROG_N] = {(float)epochs_done,        (float)r->opt.step, (float)r->total_steps, (float)r->batch,
                          (float)(r->seed & 0xffffff), (float)(r->seed >> 24)};
    int64_t pshape[1] = {PROG_N};
    if (st == OPTVQ_OK)
        st = optvq_weights_add(w, "progress", 1, pshape, prog);
    if (st == OPTVQ_OK)
        st = optvq_weights_save_safetensors(w, run_file(r, "checkpoint.safetensors"));
    optvq_weights_free(w);
    if (st == OPTVQ_OK)
        st = optvq_model_save(r->model, r->o->out); /* the loadable export, derived from the checkpoint */
    return st == OPTVQ_OK ? 0 : fail(r, "%s", optvq_last_error());
}

static int load_checkpoint(run *r)
{
    optvq_weights *w;
    const char *path = run_file(r, "checkpoint.safetensors");
    if (optvq_weights_load(path, &w) != OPTVQ_OK)
        return fail(r, "--resume: %s", optvq_last_error());
    int rc = 0;
    const optvq_tensor *prog = optvq_weights_find(w, "progress");
    if (!prog || prog->numel != PROG_N) {
        rc = fail(r, "%s: no progress record (not an optvq training checkpoint)", path);
        goto done;
    }
    int64_t seed = (int64_t)prog->data[PROG_SEED_LO] | ((int64_t)prog->data[PROG_SEED_HI] << 24);
    if ((int64_t)prog->data[PROG_TOTAL] != r->total_steps || (int64_t)prog->data[PROG_BATCH] != r->batch ||
        seed != r->seed) {
        rc = fail(r, "%s: the run used other settings (%lld steps, batch %lld, seed %lld); resume with the same "
                     "--epochs, --batch-size, --seed and data",
                  path, (long long)prog->data[PROG_TOTAL], (long long)prog->data[PROG_BATCH], (long long)seed);
        goto done;
    }
    char name[300];
    const optimizer *opts[2] = {&r->opt, &r->dopt};
    for (int k = 0; k < (r->disc ? 2 : 1) && !rc; k++)
    for (int i = 0; i < opts[k]->count && !rc; i++) {
        const train_param *p = &opts[k]->params[i];
        const char *names[3] = {p->name, NULL, NULL};
        char mname[300];
        snprintf(name, sizeof name, "optimizer.m.%s", p->name);
        snprintf(mname, sizeof mname, "optimizer.v.%s", p->name);
        names[1] = name;
        names[2] = mname;
        float *dest[3] = {p->data, opts[k]->m + p->offset, opts[k]->v + p->offset};
        for (int k = 0; k < 3; k++) {
            const optvq_tensor *t = optvq_weights_find(w, names[k]);
            if (!t || t->numel != p->n) {
                rc = fail(r, "%s: tensor %s is missing or has the wrong size", path, names[k]);
                break;
            }
            memcpy(dest[k], t->data, (size_t)p->n * sizeof(float));
        }
    }
    for (int i = 0; !rc && r->disc && i < disc_buffer_count(r->disc); i++) {
        optvq_dtype dt;
        int64_t n;
        void *b = disc_buffer(r->disc, i, &dt, &n);
        const optvq_tensor *t = optvq_weights_find(w, disc_buffer_name(r->disc, i));
        if (!t || t->numel != (dt == OPTVQ_F32 ? n : 1)) {
            rc = fail(r, "%s: tensor %s is missing or has the wrong size", path, disc_buffer_name(r->disc, i));
            break;
        }
        if (dt == OPTVQ_F32)
            memcpy(b, t->data, (size_t)n * sizeof(float));
        else
            *(int64_t *)b = (int64_t)t->data[0];
    }
    r->opt.step = r->dopt.step = (int64_t)prog->data[PROG_STEP];
    r->start_epoch = (int64_t)prog->data[PROG_EPOCHS];
done:
    optvq_weights_free(w);
    return rc;
}

/* A JSON number, or null for NaN/Inf (held-out metrics without held-out data). */
static const char *jnum(char buf[32], double v)
{
    if (!isfinite(v))
        return "null";
    snprintf(buf, 32, "%.6g", v);
    return buf;
}

/* Keeps the metric lines of steps up to `step` (a resumed run rewrites the rest). */
static FILE *open_metrics(run *r, int64_t step)
{
    const char *path = run_file(r, "metrics.jsonl");
    if (r->o->resume) {
        FILE *in = fopen(path, "r");
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        FILE *out = fopen(tmp, "w");
        if (in && out) {
            char line[4096];
            while (fgets(line, sizeof line, in)) {
                const char *s = strstr(line, "\"step\":");
                long long st = s ? atoll(s + 7) : 0;
                if (st <= step)
                    fputs(line, out);
            }
        }
        if (in)
            fclose(in);
        if (out) {
            fclose(out);
            rename(tmp, path);
        }
    }
    FILE *f = fopen(path, r->o->resume ? "a" : "w");
    if (!f)
        fail(r, "%s: cannot write: %s", path, strerror(errno));
    return f;
}

/* Originals (top row) and reconstructions (bottom row) of up to 16 images. */
static int write_grid(run *r, const float *orig, const float *rec, int64_t n, int64_t epoch)
{
    const int64_t c = r->val.c, R = r->val.r, cols = n < 16 ? n : 16, W = cols * R, H = 2 * R;
    float *g = malloc((size_t)(c * H * W) * sizeof(float));
    if (!g)
        return fail(r, "out of memory for the reconstruction grid");
    for (int64_t ch = 0; ch < c; ch++)
        for (int64_t row = 0; row < 2; row++)
            for (int64_t i = 0; i < cols; i++)
                for (int64_t y = 0; y < R; y++)
                    memcpy(g + (ch * H + row * R + y) * W + i * R, (row ? rec : orig) + ((i * c + ch) * R + y) * R,
                           (size_t)R * sizeof(float));
    char name[64];
    snprintf(name, sizeof name, "recon_epoch_%03lld.png", (long long)epoch + 1);
    optvq_status st = optvq_image_write_png_signed(run_file(r, name), g, (int)c, (int)H, (int)W);
    free(g);
    return st == OPTVQ_OK ? 0 : fail(r, "%s", optvq_last_error());
}

/* PSNR/SSIM and codebook usage on the held-out images. */
static int evaluate(run *r, int64_t epoch, double *psnr, double *ssim, double *usage, double *ppl)
{
    const int64_t n = r->val.n, c = r->val.c, R = r->val.r, per = c * R * R;
    const int64_t f = coder_downsample(&r->cfg.encoder), tok_per = r->cfg.quantize.num_head * (R / f) * (R / f);
    float *rec = malloc((size_t)(n * per) * sizeof(float));
    double *ps = malloc((size_t)n * sizeof(double)), *ss = malloc((size_t)n * sizeof(double));
    int64_t *tok = malloc((size_t)(n * tok_per) * sizeof(int64_t));
    int rc = 0;
    if (!rec || !ps || !ss || !tok) {
        rc = fail(r, "out of memory for the evaluation");
        goto done;
    }
    for (int64_t i = 0; i < n && !rc; i += r->batch) {
        int64_t b = n - i < r->batch ? n - i : r->batch;
        if (optvq_model_reconstruct(r->model, r->val.images + i * per, b, R, R, rec + i * per, tok + i * tok_per) !=
            OPTVQ_OK)
            rc = fail(r, "%s", optvq_last_error());
    }
    if (!rc && metrics_batch_signed(r->val.images, rec, n, (int)c, (int)R, (int)R, ps, ss) != OPTVQ_OK)
        rc = fail(r, "%s", optvq_last_error());
    if (!rc) {
        metrics_acc a;
        metrics_acc_init(&a);
        for (int64_t i = 0; i < n; i++)
            metrics_acc_add(&a, ps[i], ss[i]);
        *psnr = metrics_acc_psnr(&a);
        *ssim = metrics_acc_ssim(&a);
        optvq_usage u;
        optvq_usage_compute(tok, n * tok_per, r->cfg.quantize.n_e, &u);
        *usage = u.fraction_used;
        *ppl = u.perplexity;
        rc = write_grid(r, r->val.images, rec, n, epoch);
    }
done:
    free(rec);
    free(ps);
    free(ss);
    free(tok);
    return rc;
}

static void progress(run *r, int64_t epoch, int64_t step_in_epoch, double loss, double q, int64_t used, double t0,
                     int64_t done_steps, int64_t todo_steps)
{
    FILE *p = r->o->progress;
    if (!p)
        return;
    double el = cli_now() - t0, eta = done_steps ? el / (double)done_steps * (double)(todo_steps - done_steps) : 0;
    if (isatty(fileno(p))) {
        int w = 24, fill = (int)(w * step_in_epoch / r->steps_per_epoch);
        fprintf(p, "\r%s epoch %lld/%lld [", r->label, (long long)epoch + 1, (long long)r->epochs);
        for (int i = 0; i < w; i++)
            fputc(i < fill ? '=' : ' ', p);
        fprintf(p, "] %lld/%lld loss %.4f q %.4f codes %lld/%lld ETA %.0fs   ", (long long)step_in_epoch,
                (long long)r->steps_per_epoch, loss, q, (long long)used, (long long)r->cfg.quantize.n_e, eta);
        fflush(p);
    } else if (step_in_epoch % 10 == 0 || step_in_epoch == r->steps_per_epoch) {
        fprintf(p, "%s epoch %lld/%lld step %lld/%lld loss %.4f q %.4f codes used %lld/%lld ETA %.0fs\n", r->label,
                (long long)epoch + 1, (long long)r->epochs, (long long)step_in_epoch, (long long)r->steps_per_epoch,
                loss, q, (long long)used, (long long)r->cfg.quantize.n_e, eta);
        fflush(p);
    }
}

static int setup(run *r)
{
    const train_options *o = r->o;
    if (model_config_load(o->config, &r->cfg) != OPTVQ_OK)
        return fail(r, "%s", optvq_last_error());
    const train_settings *t = &r->cfg.train;
    r->epochs = o->epochs >= 0 ? o->epochs : t->epochs;
    r->batch = o->batch_size > 0 ? o->batch_size : t->batch_size;
    r->seed = o->seed >= 0 ? o->seed : t->seed;
    r->lr = o->lr >= 0 ? o->lr : t->learning_rate;
    if (r->epochs > TRAIN_MAX_EPOCHS)
        return fail(r, "--epochs %lld is over the limit of %d", (long long)r->epochs, TRAIN_MAX_EPOCHS);
    if (t->loss_p != 0.0 && !o->lpips)
        return fail(r,
                    "%s: loss_p_weight %g needs LPIPS weights: give --lpips vgg16.pth,vgg.pth (torchvision's VGG16 and "
                    "lpips's v0.1 vgg.pth) or set loss_p_weight to 0",
                    o->config, t->loss_p);
    optvq_set_num_threads(o->threads);
    if (model_create_from_config(&r->cfg, (uint64_t)r->seed, &r->model) != OPTVQ_OK ||
        model_trainer_create(r->model, &r->trainer) != OPTVQ_OK)
        return fail(r, "%s: %s", o->config, optvq_last_error());
    const char *spec = o->data ? o->data : t->dataset;
    if (!spec || !spec[0])
        return fail(r, "%s: the config names no training data; give --data", o->config);
    const int64_t R = t->resize > 0 ? t->resize : 32, C = r->cfg.encoder.in_channels;
    if (dataset_load(spec, 1, R, (int)C, o->limit, &r->train) != OPTVQ_OK)
        return fail(r, "%s", optvq_last_error());
    if (r->train.c != C)
        return fail(r, "%s: %lld-channel images for a %lld-channel model", spec, (long long)r->train.c, (long long)C);
    const char *vspec = o->val_data;
    if (!vspec && (!strcmp(spec, "fashion-mnist") || !strcmp(spec, "fashion-mnist:train")))
        vspec = "fashion-mnist:test";
    if (vspec && o->val_limit > 0) {
        if (dataset_load(vspec, 0, R, (int)C, o->val_limit, &r->val) != OPTVQ_OK)
            return fail(r, "%s", optvq_last_error());
        r->have_val = 1;
    }
    r->steps_per_epoch = (r->train.n + r->batch - 1) / r->batch;
    r->total_steps = r->epochs * r->steps_per_epoch;
    if (r->total_steps >= (1 << 24))
        return fail(r, "%lld steps are more than a checkpoint records (2^24)", (long long)r->total_steps);
    if (optimizer_init(&r->opt, r->model, r->lr * (double)r->batch, t->mul_learning_rate, t->weight_decay,
                       r->total_steps > 0 ? r->total_steps : 1) != OPTVQ_OK)
        return fail(r, "%s", optvq_last_error());
    r->general = t->use_disc || t->loss_p != 0.0;
    if (t->loss_p != 0.0) {
        char buf[4096];
        const char *paths[2] = {buf, NULL};
        int np = 1;
        if (snprintf(buf, sizeof buf, "%s", o->lpips) >= (int)sizeof buf)
            return fail(r, "--lpips: the paths are too long");
        char *comma = strchr(buf, ',');
        if (comma) {
            *comma = 0;
            paths[1] = comma + 1;
            np = 2;
        }
        if (lpips_load(paths, np, &r->lpips) != OPTVQ_OK)
            return fail(r, "%s", optvq_last_error());
    }
    if (t->use_disc) {
        const disc_config dc = {t->disc_in_channels, t->disc_ndf, t->disc_num_layers};
        if (dc.in_channels != C)
            return fail(r, "%s: disc_in_channels %lld for %lld-channel images", o->config,
                        (long long)dc.in_channels, (long long)C);
        if (disc_create(&dc, (uint64_t)r->seed ^ 0xD15Cull, &r->disc) != OPTVQ_OK ||
            optimizer_init_list(&r->dopt, disc_params(r->disc), r->lr * (double)r->batch, t->weight_decay,
                                r->total_steps > 0 ? r->total_steps : 1) != OPTVQ_OK)
            return fail(r, "%s: %s", o->config, optvq_last_error());
    }
    if (r->general && ae_disc_init(&r->step, r->trainer, r->lpips, r->disc, &r->opt, r->disc ? &r->dopt : NULL, t,
                                   C) != OPTVQ_OK)
        return fail(r, "%s", optvq_last_error());
    if (mkdir(o->out, 0777) != 0 && errno != EEXIST)
        return fail(r, "%s: cannot create folder: %s", o->out, strerror(errno));
    if (o->resume)
        return load_checkpoint(r);
    return init_codebook(r);
}

int train_run(const train_options *o, train_summary *sum)
{
    run r;
    memset(&r, 0, sizeof r);
    r.o = o;
    r.label = o->label ? o->label : "train";
    int rc = setup(&r);
    FILE *mlog = NULL;
    float *batch = NULL;
    int64_t *perm = NULL, *tokens = NULL, *hist = NULL;
    if (rc)
        goto done;
    mlog = open_metrics(&r, r.opt.step);
    const int64_t C = r.train.c, R = r.train.r, per = C * R * R, n_e = r.cfg.quantize.n_e;
    const int64_t f = coder_downsample(&r.cfg.encoder), tok_per = r.cfg.quantize.num_head * (R / f) * (R / f);
    batch = malloc((size_t)(r.batch * per) * sizeof(float));
    perm = malloc((size_t)r.train.n * sizeof *perm);
    tokens = malloc((size_t)(r.batch * tok_per) * sizeof *tokens);
    hist = malloc((size_t)n_e * sizeof *hist);
    if (!mlog || !batch || !perm || !tokens || !hist) {
        rc = mlog ? fail(&r, "out of memory") : 1;
        goto done;
    }
    if (sum) {
        memset(sum, 0, sizeof *sum);
        sum->n_e = n_e;
        sum->train_images = r.train.n;
        sum->val_images = r.have_val ? r.val.n : 0;
    }
    const model_loss_weights lw = {r.cfg.train.loss_l1, r.cfg.train.loss_l2, r.cfg.train.loss_q};
    const double t_start = cli_now();
    const int64_t first_step = r.opt.step;
    int64_t steps_here = 0;
    for (int64_t epoch = r.start_epoch; epoch < r.epochs; epoch++) {
        /* the epoch's order depends on (seed, epoch) only, so a resumed run repeats it */
        optvq_rng rng;
        optvq_rng_seed(&rng, (uint64_t)r.seed * 0x9E3779B97F4A7C15ull + (uint64_t)epoch + 1);
        for (int64_t i = 0; i < r.train.n; i++)
            perm[i] = i;
        for (int64_t i = r.train.n - 1; i > 0; i--) {
            int64_t j = (int64_t)optvq_rng_below(&rng, (uint64_t)i + 1), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        memset(hist, 0, (size_t)n_e * sizeof *hist);
        double t_epoch = cli_now(), loss_sum = 0;
        int64_t first_in_epoch = r.opt.step - epoch * r.steps_per_epoch; /* > 0 only when resuming mid-epoch */
        if (first_in_epoch < 0)
            first_in_epoch = 0;
        for (int64_t s = first_in_epoch; s < r.steps_per_epoch; s++) {
            int64_t i0 = s * r.batch, b = r.train.n - i0 < r.batch ? r.train.n - i0 : r.batch;
            optvq_rng aug; /* per step, so a resumed epoch draws the same crops */
            optvq_rng_seed(&aug, (uint64_t)r.seed ^ ((uint64_t)(epoch + 1) << 32) ^ (uint64_t)s);
            for (int64_t k = 0; k < b && !rc; k++)
                if (dataset_augment(&r.train, perm[i0 + k], &aug, batch + k * per) != OPTVQ_OK)
                    rc = fail(&r, "%s", optvq_last_error());
            if (rc)
                goto done;
            optimizer_zero_grad(&r.opt);
            model_losses l;
            ae_disc_log gl;
            double t0 = cli_now(), lr, beta1, gnorm;
            onecycle_at(&r.opt.schedule, r.opt.step, &lr, &beta1);
            if (r.general) {
                if (ae_disc_step(&r.step, batch, b, R, R, r.opt.step, &gl, tokens) != OPTVQ_OK) {
                    rc = fail(&r, "step %lld: %s", (long long)r.opt.step, optvq_last_error());
                    goto done;
                }
                l.total = gl.total;
                l.l1 = gl.l1;
                l.l2 = gl.l2;
                l.q = gl.q;
                gnorm = gl.grad_norm;
            } else {
                if (model_trainer_step(r.trainer, batch, b, R, R, &lw, &l, NULL, tokens) != OPTVQ_OK) {
                    rc = fail(&r, "step %lld: %s", (long long)r.opt.step, optvq_last_error());
                    goto done;
                }
                gnorm = optimizer_step(&r.opt);
            }
            optvq_usage u;
            optvq_usage_compute(tokens, b * tok_per, n_e, &u);
            for (int64_t k = 0; k < b * tok_per; k++)
                hist[tokens[k]]++;
            if (sum && r.opt.step <= TRAIN_MAX_STEPS)
                sum->step_usage[r.opt.step - 1] = (double)u.codes_used / (double)n_e;
            loss_sum += l.total;
            fprintf(mlog,
                    "{\"step\": %lld, \"epoch\": %lld, \"lr\": %.6g, \"beta1\": %.6g, \"loss\": %.6g, \"l1\": %.6g, "
                    "\"l2\": %.6g, \"q\": %.6g, \"grad_norm\": %.6g, \"codes_used\": %lld, \"perplexity\": %.4g, "
                    "\"seconds\": %.4f",
                    (long long)r.opt.step, (long long)epoch + 1, lr, beta1, l.total, l.l1, l.l2, l.q, gnorm,
                    (long long)u.codes_used, u.perplexity, cli_now() - t0);
            if (r.general)
                fprintf(mlog, ", \"p\": %.6g", gl.p);
            if (r.disc)
                fprintf(mlog,
                        ", \"g\": %.6g, \"g_weight\": %.6g, \"disc_factor\": %g, \"d\": %.6g, "
                        "\"logits_real\": %.6g, \"logits_fake\": %.6g, \"d_grad_norm\": %.6g",
                        gl.g, gl.g_weight, gl.factor, gl.d, gl.logits_real, gl.logits_fake, gl.d_grad_norm);
            fputs("}\n", mlog);
            steps_here++;
            progress(&r, epoch, s + 1, l.total, l.q, u.codes_used, t_start, r.opt.step - first_step,
                     r.total_steps - first_step);
            if (o->stop_after && steps_here >= o->stop_after) {
                fflush(mlog);
                goto done; /* as if killed: no checkpoint */
            }
        }
        int64_t used = 0;
        double ent = 0, tot = 0;
        for (int64_t k = 0; k < n_e; k++)
            tot += (double)hist[k];
        for (int64_t k = 0; k < n_e; k++)
            if (hist[k]) {
                used++;
                double p = (double)hist[k] / tot;
                ent -= p * log(p);
            }
        double psnr = NAN, ssim = NAN, vu = NAN, vp = NAN;
        if (r.have_val && (rc = evaluate(&r, epoch, &psnr, &ssim, &vu, &vp)))
            goto done;
        double secs = cli_now() - t_epoch;
        char jb[4][32];
        fprintf(mlog,
                "{\"epoch_end\": %lld, \"step\": %lld, \"train_codes_used\": %lld, \"train_usage\": %.6g, "
                "\"train_perplexity\": %.6g, \"val_psnr\": %s, \"val_ssim\": %s, \"val_usage\": %s, "
                "\"val_perplexity\": %s, \"seconds\": %.3f}\n",
                (long long)epoch + 1, (long long)r.opt.step, (long long)used, (double)used / (double)n_e, exp(ent),
                jnum(jb[0], psnr), jnum(jb[1], ssim), jnum(jb[2], vu), jnum(jb[3], vp), secs);
        fflush(mlog);
        if (o->progress)
            fprintf(o->progress,
                    "%s%s epoch %lld/%lld done in %.1fs: codes used %lld/%lld (%.1f%%), perplexity %.1f, held-out "
                    "PSNR %.2f SSIM %.4f\n",
                    isatty(fileno(o->progress)) ? "\n" : "", r.label, (long long)epoch + 1, (long long)r.epochs, secs,
                    (long long)used, (long long)n_e, 100.0 * (double)used / (double)n_e, exp(ent), psnr, ssim);
        if (sum && epoch < TRAIN_MAX_EPOCHS) {
            sum->epoch_seconds[epoch] = secs;
            sum->usage[epoch] = (double)used / (double)n_e;
            sum->perplexity[epoch] = exp(ent);
            sum->psnr[epoch] = psnr;
            sum->ssim[epoch] = ssim;
            sum->loss[epoch] = loss_sum / (double)(r.steps_per_epoch - first_in_epoch);
            sum->epochs = epoch + 1;
            sum->val_usage = vu;
            sum->val_perplexity = vp;
        }
        if ((rc = save_checkpoint(&r, epoch + 1)))
            goto done;
    }
    if (r.epochs == 0 && (rc = save_checkpoint(&r, 0)))
        goto done;
    if (sum) {
        sum->steps = r.opt.step;
        sum->seconds = cli_now() - t_start;
    }
done:
    if (mlog)
        fclose(mlog);
    free(batch);
    free(perm);
    free(tokens);
    free(hist);
    dataset_free(&r.train);
    dataset_free(&r.val);
    ae_disc_free(&r.step);
    optimizer_free(&r.opt);
    optimizer_free(&r.dopt);
    disc_free(r.disc);
    lpips_free(r.lpips);
    model_trainer_free(r.trainer);
    optvq_model_free(r.model);
    return rc;
}
