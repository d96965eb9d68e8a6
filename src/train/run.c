/* The training run owned by the library (optvq/train.h): the run folder and
 * its staging, data, codebook initialisation, the epoch/step loop with the
 * reference's recipe, held-out evaluation, metrics.jsonl, checkpoints and
 * resume. Nothing is printed: progress goes to the caller's callback,
 * failures to optvq_last_error(). */
#include "optvq/train.h"

#include "core/atomic_file.h"
#include "core/comm.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "eval/eval_model.h"
#include "eval/evaluate.h"
#include "eval/metrics.h"
#include "io/image.h"
#include "io/weights.h"
#include "model/trainer.h"
#include "model/vqmodel.h"
#include "nn/nn.h"
#include "optvq/optvq.h"
#include "quant/assign.h"
#include "quant/distance.h"
#include "quant/quantizer.h"
#include "eval/lpips.h"
#include "model/discriminator.h"
#include "train/ae_disc.h"
#include "io/dataset.h"
#include "train/optimizer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct optvq_train run;
struct optvq_train {
    optvq_train_options opts; /* the caller's, with its strings copied below */
    const optvq_train_options *o;
    char *strings[7];
    FILE *mlog;
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
    /* Where the run's files go: RUN_DIR, or, for a new run until its first
     * checkpoint, RUN_DIR/.pending (staged = 1), so that a run already in
     * RUN_DIR stays whole until the new one has something to replace it with. */
    const char *dir;
    int staged, finished, failed;
    /* data parallel: the group (o->comm), its size, and whether this process writes the run's files (rank 0) */
    const optvq_comm *comm;
    int ranks, writer;
    comm_tally tally; /* gradient, loss and histogram reductions (the GAN step keeps its own) */
    /* a resumed run's checkpoint, read before the sizes are known (its batch decides them) */
    optvq_weights *ckpt;
    int64_t ck_epochs_done, ck_step, ck_total, ck_batch, ck_seed;
    char pending[4096];
    char path[4096];
};

/* Records the message (optvq_last_error) with `status` and returns 1, the
 * internal "failed" of the functions below. */
static int fail_status(optvq_status status, const char *fmt, ...) OPTVQ_PRINTF(2, 3);
static int fail_status(optvq_status status, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    optvq_fail(status, "%s", msg);
    return 1;
}
#define fail(r, ...) ((void)(r), fail_status(OPTVQ_ERR_FORMAT, __VA_ARGS__))



static const char *run_file(run *r, const char *name)
{
    snprintf(r->path, sizeof r->path, "%s/%s", r->dir, name);
    return r->path;
}

/* ---- the run folder: a new run is staged in RUN_DIR/.pending and moved up
 * at its first checkpoint; the checkpoint moves last, so that until it has,
 * the staged run can be finished (rolled forward) by the next start ---- */

/* The files that make a folder hold a run. */
static const char *const RUN_FILES[] = {"checkpoint.safetensors", "model.safetensors", "metrics.jsonl", "config.json"};

static int file_exists(const char *dir, const char *name)
{
    char p[4400];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0;
}

/* recon_epoch_NNN.png */
static int is_grid_name(const char *name)
{
    size_t n = strlen(name);
    return !strncmp(name, "recon_epoch_", 12) && n > 16 && !strcmp(name + n - 4, ".png");
}

/* Makes renames in dir durable (best effort: not every file system syncs folders). */
static void sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Moves pending/name to out/name if it is there. */
static int move_up(run *r, const char *name)
{
    char from[4400], to[4400];
    snprintf(from, sizeof from, "%s/%s", r->pending, name);
    snprintf(to, sizeof to, "%s/%s", r->o->out, name);
    if (rename(from, to) != 0 && errno != ENOENT)
        return fail(r, "%s: cannot move to %s: %s", from, to, strerror(errno));
    return 0;
}

/* Removes RUN_DIR/.pending and whatever is in it. */
static int remove_pending(run *r)
{
    DIR *d = opendir(r->pending);
    if (!d)
        return errno == ENOENT ? 0 : fail(r, "%s: cannot read: %s", r->pending, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            char p[4400];
            snprintf(p, sizeof p, "%s/%s", r->pending, e->d_name);
            unlink(p);
        }
    closedir(d);
    if (rmdir(r->pending) != 0 && errno != ENOENT)
        return fail(r, "%s: cannot remove: %s", r->pending, strerror(errno));
    return 0;
}

/* The epochs that RUN_DIR/metrics.jsonl records (its epoch_end lines). */
static int64_t logged_epochs(run *r)
{
    char p[4400], line[4096];
    snprintf(p, sizeof p, "%s/metrics.jsonl", r->o->out);
    FILE *f = fopen(p, "r");
    int64_t n = 0;
    while (f && fgets(line, sizeof line, f))
        n += strstr(line, "\"epoch_end\"") != NULL;
    if (f)
        fclose(f);
    return n;
}

/* Once RUN_DIR/.pending holds a checkpoint, the new run replaces the old one:
 * its files move up (the checkpoint last), the old run's reconstruction grids
 * go. Called at that checkpoint and at every start (a start after a crash in
 * the middle finishes the moves). */
static int finish_pending(run *r)
{
    if (!file_exists(r->pending, "checkpoint.safetensors"))
        return 0;
    /* metrics.jsonl moves first: while it is still pending, no grid has moved yet */
    const int moves_begun = !file_exists(r->pending, "metrics.jsonl");
    static const char *const staged_files[] = {"metrics.jsonl", "model.safetensors", "config.json", "curves.png"};
    for (size_t i = 0; i < sizeof staged_files / sizeof *staged_files; i++)
        if (move_up(r, staged_files[i]))
            return 1;
    /* the old run's grids go: those the new run has none of, or (finishing
     * after a crash, when some of the new run's may have moved up already)
     * those of epochs past the new run's */
    const int64_t new_epochs = moves_begun ? logged_epochs(r) : 0;
    DIR *d = opendir(r->o->out);
    for (struct dirent *e; d && (e = readdir(d));)
        if (is_grid_name(e->d_name) &&
            (moves_begun ? atoll(e->d_name + 12) > new_epochs : !file_exists(r->pending, e->d_name))) {
            char p[4400];
            snprintf(p, sizeof p, "%s/%s", r->o->out, e->d_name);
            unlink(p);
        }
    if (d)
        closedir(d);
    d = opendir(r->pending);
    for (struct dirent *e; d && (e = readdir(d));)
        if (is_grid_name(e->d_name) && move_up(r, e->d_name)) {
            closedir(d);
            return 1;
        }
    if (d)
        closedir(d);
    sync_dir(r->o->out);
    if (move_up(r, "checkpoint.safetensors"))
        return 1;
    sync_dir(r->o->out);
    return remove_pending(r);
}

/* Before anything is loaded: a folder holding a run is refused unless
 * --resume or --force says what to do with it (exit 2); --resume needs a
 * checkpoint. Returns the exit status, 0 to go on. */
static int check_run_folder(run *r)
{
    const optvq_train_options *o = r->o;
    struct stat st;
    if (stat(o->out, &st) == 0 && !S_ISDIR(st.st_mode))
        return fail(r, "%s: not a folder", o->out);
    if (snprintf(r->pending, sizeof r->pending, "%s/.pending", o->out) >= (int)sizeof r->pending)
        return fail(r, "%s: the path is too long", o->out);
    if (finish_pending(r))
        return 1;
    if (o->resume) {
        if (!file_exists(o->out, "checkpoint.safetensors"))
            return fail_status(OPTVQ_ERR_IO,
                               "%s: nothing to resume: no checkpoint.safetensors (a run writes its first one at the "
                               "end of epoch 1); start it without --resume",
                               o->out);
        return 0;
    }
    for (size_t i = 0; i < sizeof RUN_FILES / sizeof *RUN_FILES && !o->force; i++)
        if (file_exists(o->out, RUN_FILES[i])) {
            return fail_status(OPTVQ_ERR_STATE,
                               "%s holds a run (%s): --resume continues it, --force starts a new one (the old files "
                               "stay until its first checkpoint)",
                               o->out, RUN_FILES[i]);
        }
    return 0;
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

/* Version 1 (before 0.2) stored the progress as a float tensor "progress":
 * epochs, step, total steps, batch, seed low 24 bits, seed high bits. */
enum { PROG_EPOCHS, PROG_STEP, PROG_TOTAL, PROG_BATCH, PROG_SEED_LO, PROG_SEED_HI, PROG_N };
#define CHECKPOINT_VERSION 2

static optvq_status set_meta_int(optvq_weights *w, const char *key, int64_t value)
{
    char text[32];
    snprintf(text, sizeof text, "%lld", (long long)value);
    return optvq_weights_set_meta(w, key, text);
}

/* An integer of the metadata: 0 when present and a whole decimal number. */
static int get_meta_int(const optvq_weights *w, const char *key, int64_t *value)
{
    const char *text = optvq_weights_meta(w, key);
    if (!text || !text[0])
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || *end)
        return -1;
    *value = (int64_t)v;
    return 0;
}

static int save_checkpoint(run *r, int64_t epochs_done)
{
    /* the loadable export first: a checkpoint never stands beside an older model */
    if (optvq_model_save(r->model, r->dir) != OPTVQ_OK)
        return fail(r, "%s", optvq_last_error());
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
    /* the discriminator's BatchNorm statistics; its integer counter as an integer (metadata) */
    for (int i = 0; st == OPTVQ_OK && r->disc && i < disc_buffer_count(r->disc); i++) {
        optvq_dtype dt;
        int64_t n;
        void *b = disc_buffer(r->disc, i, &dt, &n);
        if (dt != OPTVQ_F32) {
            snprintf(name, sizeof name, "optvq.int.%s", disc_buffer_name(r->disc, i));
            st = set_meta_int(w, name, *(int64_t *)b);
            continue;
        }
        int64_t shape[1] = {n};
        st = optvq_weights_add(w, disc_buffer_name(r->disc, i), 1, shape, b);
    }
    /* progress as exact integers in the header's metadata (checkpoints before
     * version 2 kept it as a float tensor, which read_checkpoint still reads);
     * the batch is the global one (all ranks), so any number of ranks resumes */
    const struct { const char *key; int64_t value; } prog[] = {
        {"optvq.checkpoint", CHECKPOINT_VERSION}, {"optvq.epochs_done", epochs_done}, {"optvq.step", r->opt.step},
        {"optvq.total_steps", r->total_steps},    {"optvq.batch", r->batch * r->ranks}, {"optvq.seed", r->seed},
        {"optvq.ranks", r->ranks}};
    for (size_t i = 0; st == OPTVQ_OK && i < sizeof prog / sizeof prog[0]; i++)
        st = set_meta_int(w, prog[i].key, prog[i].value);
    if (st == OPTVQ_OK)
        st = optvq_weights_save_safetensors(w, run_file(r, "checkpoint.safetensors"));
    optvq_weights_free(w);
    if (st != OPTVQ_OK)
        return fail(r, "%s", optvq_last_error());
    if (r->staged) { /* the new run's first checkpoint: it replaces the folder's old run now */
        if (finish_pending(r))
            return 1;
        r->staged = 0;
        r->dir = r->o->out;
    }
    return 0;
}

/* Reads RUN_DIR's checkpoint and its progress record (r->ckpt, r->ck_*). */
static int read_checkpoint(run *r)
{
    const char *path = run_file(r, "checkpoint.safetensors");
    if (optvq_weights_load(path, &r->ckpt) != OPTVQ_OK)
        return fail(r, "--resume: %s", optvq_last_error());
    optvq_weights *w = r->ckpt;
    int64_t version = 0, epochs_done = 0, step = 0, total = 0, batch = 0, seed = 0;
    if (!get_meta_int(w, "optvq.checkpoint", &version)) {
        if (version != CHECKPOINT_VERSION || get_meta_int(w, "optvq.epochs_done", &epochs_done) ||
            get_meta_int(w, "optvq.step", &step) || get_meta_int(w, "optvq.total_steps", &total) ||
            get_meta_int(w, "optvq.batch", &batch) || get_meta_int(w, "optvq.seed", &seed))
            return fail(r, "%s: checkpoint version %lld or its progress record is not one this optvq reads", path,
                        (long long)version);
    } else { /* version 1: the float tensor */
        const optvq_tensor *prog = optvq_weights_find(w, "progress");
        if (!prog || prog->numel != PROG_N)
            return fail(r, "%s: no progress record (not an optvq training checkpoint)", path);
        epochs_done = (int64_t)prog->data[PROG_EPOCHS];
        step = (int64_t)prog->data[PROG_STEP];
        total = (int64_t)prog->data[PROG_TOTAL];
        batch = (int64_t)prog->data[PROG_BATCH];
        seed = (int64_t)prog->data[PROG_SEED_LO] | ((int64_t)prog->data[PROG_SEED_HI] << 24);
    }
    r->ck_epochs_done = epochs_done;
    r->ck_step = step;
    r->ck_total = total;
    r->ck_batch = batch;
    r->ck_seed = seed;
    return 0;
}

/* Loads the read checkpoint into the model, optimizers and discriminator. */
static int load_checkpoint(run *r)
{
    optvq_weights *w = r->ckpt;
    const char *path = run_file(r, "checkpoint.safetensors");
    int rc = 0;
    const int64_t epochs_done = r->ck_epochs_done, step = r->ck_step, total = r->ck_total, batch = r->ck_batch,
                  seed = r->ck_seed;
    if (total != r->total_steps || batch != r->batch * r->ranks || seed != r->seed || epochs_done < 0 ||
        step < 0 || step > total) {
        rc = fail(r, "%s: the run used other settings (%lld steps, global batch %lld, seed %lld); resume with the "
                     "same --epochs, --seed and data, and a --batch-size that gives the same global batch "
                     "(here %lld x %d ranks)",
                  path, (long long)total, (long long)batch, (long long)seed, (long long)r->batch, r->ranks);
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
        int64_t counter;
        snprintf(name, sizeof name, "optvq.int.%s", disc_buffer_name(r->disc, i));
        if (dt != OPTVQ_F32 && !get_meta_int(w, name, &counter)) {
            *(int64_t *)b = counter;
            continue;
        }
        const optvq_tensor *t = optvq_weights_find(w, disc_buffer_name(r->disc, i));
        if (!t || t->numel != (dt == OPTVQ_F32 ? n : 1)) {
            rc = fail(r, "%s: tensor %s is missing or has the wrong size", path, disc_buffer_name(r->disc, i));
            break;
        }
        if (dt == OPTVQ_F32)
            memcpy(b, t->data, (size_t)n * sizeof(float));
        else /* version 1: the counter as a float */
            *(int64_t *)b = (int64_t)t->data[0];
    }
    r->opt.step = r->dopt.step = step;
    r->start_epoch = epochs_done;
done:
    optvq_weights_free(w);
    r->ckpt = NULL;
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

/* A new run's metrics.jsonl (staged), or a resumed run's, keeping the lines
 * of steps up to `step` (the resumed run rewrites the rest) and reading them
 * back into the curves. */
static FILE *open_metrics(run *r, int64_t step)
{
    const char *path = run_file(r, "metrics.jsonl");
    if (!r->o->resume) {
        FILE *f = fopen(path, "w");
        if (!f)
            fail(r, "%s: cannot write: %s", path, strerror(errno));
        return f;
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *in = fopen(path, "r"), *out = fopen(tmp, "w");
    if (!out) {
        if (in)
            fclose(in);
        fail(r, "%s: cannot write: %s", tmp, strerror(errno));
        return NULL;
    }
    char line[4096];
    while (in && fgets(line, sizeof line, in)) {
        const char *s = strstr(line, "\"step\":");
        long long st = s ? atoll(s + 7) : 0;
        if (st <= step)
            fputs(line, out);
    }
    if (in)
        fclose(in);
    if (fclose(out) != 0 || rename(tmp, path) != 0) {
        fail(r, "%s: cannot write: %s", path, strerror(errno));
        return NULL;
    }
    FILE *f = fopen(path, "a");
    if (!f)
        fail(r, "%s: cannot write: %s", path, strerror(errno));
    return f;
}

/* Originals (top row) and reconstructions (bottom row) of up to 16 images. */
static int write_grid(run *r, const float *orig, const float *rec, int64_t n, int64_t epoch)
{
    if (!r->writer)
        return 0;
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
    /* the one evaluation of optvq eval, sharded over the ranks; its batches are
       global ones (the per-rank batch times the ranks), so that N ranks of B / N
       evaluate as one process of B */
    const optvq_comm *comm = &r->o->comm;
    const int64_t ranks = comm->n_ranks > 1 ? comm->n_ranks : 1;
    const int64_t n = r->val.n, per = r->val.c * r->val.r * r->val.r, n_first = n < 16 ? n : 16;
    float *first = malloc((size_t)(n_first * per) * sizeof(float)); /* the grid's reconstructions */
    if (!first)
        return fail(r, "out of memory for the evaluation");
    eval_source src = {.name = "held-out images", .n = n, .c = r->val.c, .h = r->val.r, .w = r->val.r,
                       .images = r->val.images};
    eval_options eo = {.batch_size = r->batch * ranks, .comm = comm, .first_recon = first, .n_first = n_first};
    eval_result res;
    int rc = 0;
    if (eval_run(r->model, &src, &eo, &res) != OPTVQ_OK) {
        rc = fail(r, "%s", optvq_last_error());
    } else {
        *psnr = res.psnr;
        *ssim = res.ssim;
        *usage = res.usage.fraction_used;
        *ppl = res.usage.perplexity;
        if (comm->n_ranks <= 1 || comm->rank == 0)
            rc = write_grid(r, r->val.images, first, n_first, epoch);
    }
    free(first);
    return rc;
}

/* At the end of an epoch: the metrics on disk, then the checkpoint (which,
 * for a new run's first, moves the staged files up, the caller's curves.png
 * among them). */
static int end_epoch_files(run *r, FILE *mlog, int64_t epochs_done)
{
    if (!r->writer)
        return 0;
    if (fflush(mlog) != 0 || (r->staged && fsync(fileno(mlog)) != 0))
        return fail(r, "%s: cannot write: %s", run_file(r, "metrics.jsonl"), strerror(errno));
    return save_checkpoint(r, epochs_done);
}

/* ---- starting from given weights (train.enterpoint / --init-from) and a
 * given codebook (train.code_path / --codebook) ---- */

static void shape_text(char *buf, size_t size, int ndim, const int64_t *shape)
{
    size_t len = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < ndim && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (len < size)
        snprintf(buf + len, size - len, ")");
}

/* The reference loads the checkpoint's "model" state dict with strict=False
 * after deleting quantize.embedding.weight (which keeps its init): names the
 * model lacks are refused, missing ones keep their init. "loss.*" tensors
 * (discriminator, LPIPS) are not the tokenizer's and are skipped. */
static int load_init_weights(run *r, const char *path)
{
    char file[4200];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        snprintf(file, sizeof file, "%s/model.safetensors", path);
    else
        snprintf(file, sizeof file, "%s", path);
    optvq_weights *w;
    if (optvq_weights_load(file, &w) != OPTVQ_OK)
        return fail_status(optvq_last_status(), "--init-from: %s", optvq_last_error());
    nn_params *ps = model_params(r->model);
    int rc = 0;
    int64_t loaded = 0;
    for (int64_t i = 0; i < optvq_weights_count(w) && !rc; i++) {
        const optvq_tensor *t = optvq_weights_get(w, i);
        const char *name = optvq_weights_normalise_name(t->name);
        if (!name || !strcmp(name, "quantize.embedding.weight"))
            continue;
        nn_param *p = nn_params_find(ps, name);
        if (!p) {
            rc = fail_status(OPTVQ_ERR_FORMAT, "--init-from %s: tensor %s is not a parameter of this model", file,
                             t->name);
            break;
        }
        int same = p->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++)
            same = p->shape[d] == t->shape[d];
        if (!same) {
            char a[128], b[128];
            shape_text(a, sizeof a, t->ndim, t->shape);
            shape_text(b, sizeof b, p->ndim, p->shape);
            rc = fail_status(OPTVQ_ERR_FORMAT, "--init-from %s: tensor %s is %s, the model's is %s", file, t->name,
                             a, b);
            break;
        }
        for (int64_t k = 0; k < t->numel; k++)
            if (!isfinite(t->data[k])) {
                rc = fail_status(OPTVQ_ERR_NUMERIC, "--init-from %s: tensor %s holds NaN or Inf", file, t->name);
                break;
            }
        if (!rc)
            memcpy(p->data, t->data, (size_t)t->numel * sizeof(float));
        loaded++;
    }
    if (!rc && loaded == 0)
        rc = fail_status(OPTVQ_ERR_FORMAT, "--init-from %s: no tensor of this model in the file", file);
    optvq_weights_free(w);
    return rc;
}

/* The codebook (n_e, code_dim): a .npy, or a weights file holding one tensor
 * (torch.save(codes) as the reference's gen_codes writes it) or a tensor
 * named quantize.embedding.weight. */
static int load_codebook(run *r, const char *path)
{
    const int64_t n_e = r->cfg.quantize.n_e, d = r->cfg.quantize.e_dim / r->cfg.quantize.num_head;
    nn_param *p = nn_params_find(model_params(r->model), "quantize.embedding.weight");
    if (!p || p->numel != n_e * d)
        return fail_status(OPTVQ_ERR_STATE, "the model has no codebook to load");
    size_t len = strlen(path);
    int rc = 0;
    if (len >= 4 && !strcmp(path + len - 4, ".npy")) {
        optvq_array a;
        if (optvq_npy_read(path, &a) != OPTVQ_OK || optvq_array_to_f32(&a) != OPTVQ_OK)
            return fail_status(optvq_last_status(), "--codebook: %s", optvq_last_error());
        if (a.ndim != 2 || a.shape[0] != n_e || a.shape[1] != d) {
            char got[128];
            shape_text(got, sizeof got, a.ndim, a.shape);
            rc = fail_status(OPTVQ_ERR_FORMAT, "--codebook %s: shape %s, the model needs (%lld, %lld)", path, got,
                             (long long)n_e, (long long)d);
        }
        for (int64_t k = 0; !rc && k < n_e * d; k++)
            if (!isfinite(((float *)a.data)[k]))
                rc = fail_status(OPTVQ_ERR_NUMERIC, "--codebook %s: NaN or Inf at element %lld", path, (long long)k);
        if (!rc)
            memcpy(p->data, a.data, (size_t)(n_e * d) * sizeof(float));
        optvq_array_free(&a);
        return rc;
    }
    optvq_weights *w;
    if (optvq_weights_load(path, &w) != OPTVQ_OK)
        return fail_status(optvq_last_status(), "--codebook: %s", optvq_last_error());
    const optvq_tensor *t = optvq_weights_count(w) == 1 ? optvq_weights_get(w, 0) : NULL;
    for (int64_t i = 0; !t && i < optvq_weights_count(w); i++) {
        const char *name = optvq_weights_normalise_name(optvq_weights_get(w, i)->name);
        if (name && !strcmp(name, "quantize.embedding.weight"))
            t = optvq_weights_get(w, i);
    }
    if (!t)
        rc = fail_status(OPTVQ_ERR_FORMAT, "--codebook %s: holds %lld tensors and none named quantize.embedding.weight",
                         path, (long long)optvq_weights_count(w));
    else if (t->ndim != 2 || t->shape[0] != n_e || t->shape[1] != d) {
        char got[128];
        shape_text(got, sizeof got, t->ndim, t->shape);
        rc = fail_status(OPTVQ_ERR_FORMAT, "--codebook %s: tensor %s is %s, the model needs (%lld, %lld)", path,
                         t->name, got, (long long)n_e, (long long)d);
    }
    for (int64_t k = 0; !rc && k < n_e * d; k++)
        if (!isfinite(t->data[k]))
            rc = fail_status(OPTVQ_ERR_NUMERIC, "--codebook %s: NaN or Inf at element %lld", path, (long long)k);
    if (!rc)
        memcpy(p->data, t->data, (size_t)(n_e * d) * sizeof(float));
    optvq_weights_free(w);
    return rc;
}

/* Everything of setup after the folder check, on every rank; a failure
 * returns 1 with the message set (the ranks then agree in setup). */
static int setup_local(run *r)
{
    const optvq_train_options *o = r->o;
    if (o->resume && read_checkpoint(r))
        return 1;
    if (model_config_load(o->config, &r->cfg) != OPTVQ_OK)
        return fail(r, "%s", optvq_last_error());
    const train_settings *t = &r->cfg.train;
    r->epochs = o->epochs >= 0 ? o->epochs : t->epochs;
    r->batch = o->batch_size > 0 ? o->batch_size : t->batch_size;
    if (o->resume && o->batch_size <= 0) { /* the run's global batch, split over the ranks of this start */
        if (r->ck_batch <= 0 || r->ck_batch % r->ranks)
            return fail(r, "%s: the run's global batch of %lld does not split over %d ranks; give --batch-size",
                        o->out, (long long)r->ck_batch, r->ranks);
        r->batch = r->ck_batch / r->ranks;
    }
    r->seed = o->seed >= 0 ? o->seed : t->seed;
    r->lr = o->lr >= 0 ? o->lr : t->learning_rate;
    if (r->epochs > OPTVQ_TRAIN_MAX_EPOCHS)
        return fail_status(OPTVQ_ERR_INVALID_ARG, "--epochs %lld is over the limit of %d", (long long)r->epochs,
                           OPTVQ_TRAIN_MAX_EPOCHS);
    if (t->loss_p != 0.0 && !o->lpips)
        return fail(r,
                    "%s: loss_p_weight %g needs LPIPS weights: give --lpips vgg16.pth,vgg.pth (torchvision's VGG16 and "
                    "lpips's v0.1 vgg.pth) or set loss_p_weight to 0",
                    o->config, t->loss_p);
    optvq_set_num_threads(o->threads);
    if (model_create_from_config(&r->cfg, (uint64_t)r->seed, &r->model) != OPTVQ_OK ||
        model_trainer_create(r->model, &r->trainer) != OPTVQ_OK)
        return fail(r, "%s: %s", o->config, optvq_last_error());
    if (r->ranks > 1) /* Sinkhorn over the global batch */
        quantizer_set_allreduce(optvq_model_quantizer(r->model), o->comm.allreduce, o->comm.ctx);
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
    /* as the reference's DataLoader(drop_last=True): only full batches, the last partial one of each shuffled
     * epoch is dropped (the held-out evaluation keeps every image) */
    /* data parallel: one global batch of batch x ranks images per step */
    const int64_t global_batch = r->batch * r->ranks;
    r->steps_per_epoch = r->train.n / global_batch;
    if (r->epochs > 0 && r->steps_per_epoch == 0)
        return fail(r, "%s: %lld training images are fewer than one batch of %lld (the last partial batch of each "
                    "epoch is dropped); lower --batch-size",
                    spec, (long long)r->train.n, (long long)global_batch);
    r->total_steps = r->epochs * r->steps_per_epoch;
    if (optimizer_init(&r->opt, r->model, r->lr * (double)global_batch, t->mul_learning_rate, t->weight_decay,
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
            optimizer_init_list(&r->dopt, disc_params(r->disc), r->lr * (double)global_batch, t->weight_decay,
                                r->total_steps > 0 ? r->total_steps : 1) != OPTVQ_OK)
            return fail(r, "%s: %s", o->config, optvq_last_error());
    }
    if (r->disc && r->ranks > 1) /* SyncBatchNorm, as the reference converts it under DDP */
        disc_set_comm(r->disc, r->comm);
    if (r->general && ae_disc_init(&r->step, r->trainer, r->lpips, r->disc, &r->opt, r->disc ? &r->dopt : NULL, t,
                                   C) != OPTVQ_OK)
        return fail(r, "%s", optvq_last_error());
    r->step.comm = r->comm;
    if (r->writer && optvq_make_dirs(o->out) != 0) /* missing parents too: the rule of every command */
        return fail(r, "%s: cannot create folder: %s", o->out, strerror(errno));
    /* what is still pending is an earlier start's that stopped before its first checkpoint */
    if (r->writer && remove_pending(r))
        return 1;
    if (o->resume) {
        if (load_checkpoint(r))
            return 1;
        if (r->start_epoch >= r->epochs)
            r->finished = 1;
        return 0;
    }
    const char *init_from = o->init_from ? o->init_from : t->enterpoint[0] ? t->enterpoint : NULL;
    const char *codebook = o->codebook ? o->codebook : t->code_path[0] ? t->code_path : NULL;
    if (init_from && load_init_weights(r, init_from))
        return 1;
    if (codebook && load_codebook(r, codebook))
        return 1;
    if (!r->writer) /* rank 0 initialises the codebook; setup() sends its parameters to every rank */
        return 0;
    if (mkdir(r->pending, 0777) != 0)
        return fail(r, "%s: cannot create folder: %s", r->pending, strerror(errno));
    r->dir = r->pending;
    r->staged = 1;
    /* a given codebook replaces the config's initialisation, as in the reference */
    return codebook ? 0 : init_codebook(r);
}

/* Every parameter (the model's, the quantizer's, the discriminator's) as rank
 * 0 has it, as DDP broadcasts the module's state when it wraps it. */
static int broadcast_parameters(run *r)
{
    const optimizer *opts[2] = {&r->opt, &r->dopt};
    for (int k = 0; k < (r->disc ? 2 : 1); k++)
        for (int i = 0; i < opts[k]->count; i++)
            if (comm_broadcast_floats(r->comm, opts[k]->params[i].data, (size_t)opts[k]->params[i].n,
                                      "the initial parameters") != OPTVQ_OK)
                return fail(r, "%s", optvq_last_error());
    return 0;
}

static int setup(run *r)
{
    const optvq_train_options *o = r->o;
    r->comm = &o->comm;
    r->ranks = comm_size(r->comm);
    r->writer = comm_rank(r->comm) == 0;
    if (r->ranks > 1 && (o->comm.rank < 0 || o->comm.rank >= r->ranks || !o->comm.allreduce))
        return fail_status(OPTVQ_ERR_INVALID_ARG, "optvq_train_create: comm: rank %d of %d ranks, or no allreduce hook",
                           o->comm.rank, o->comm.n_ranks);
    /* the folder is rank 0's: it finishes a staged run before any rank reads the checkpoint */
    int rc = r->writer ? check_run_folder(r) : 0;
    if (!rc && !r->writer &&
        snprintf(r->pending, sizeof r->pending, "%s/.pending", o->out) >= (int)sizeof r->pending)
        rc = fail(r, "%s: the path is too long", o->out);
    if (comm_any(r->comm, rc))
        return rc ? rc : fail(r, "another rank could not start the run (its message says why)");
    rc = setup_local(r);
    if (comm_any(r->comm, rc))
        return rc ? rc : fail(r, "another rank could not start the run (its message says why)");
    if (r->ranks > 1 && broadcast_parameters(r))
        return 1;
    return 0;
}

void optvq_train_options_default(optvq_train_options *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->epochs = o->batch_size = o->seed = -1;
    o->lr = -1;
    o->val_limit = 1000;
}

static void free_run(run *r)
{
    if (r->mlog)
        fclose(r->mlog);
    optvq_weights_free(r->ckpt);
    dataset_free(&r->train);
    dataset_free(&r->val);
    ae_disc_free(&r->step);
    optimizer_free(&r->opt);
    optimizer_free(&r->dopt);
    disc_free(r->disc);
    lpips_free(r->lpips);
    model_trainer_free(r->trainer);
    optvq_model_free(r->model);
    for (int i = 0; i < 7; i++)
        free(r->strings[i]);
    free(r);
}

void optvq_train_free(optvq_train *t)
{
    if (t)
        free_run(t);
}

optvq_status optvq_train_create(const optvq_train_options *o, optvq_train **out)
{
    if (!out)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "optvq_train_create: out is NULL");
    *out = NULL;
    if (!o)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "optvq_train_create: options are NULL");
    if (!o->config || !o->config[0] || !o->out || !o->out[0])
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "optvq_train_create: config and out are required");
    if (o->resume && o->force)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "resume and force exclude each other");
    if (o->epochs < -1 || o->batch_size < -1 || o->batch_size == 0 || o->seed < -1 || o->limit < 0 ||
        o->val_limit < 0 || o->stop_after < 0 || o->threads < 0 || !(o->lr < 0 || isfinite(o->lr)))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "optvq_train_create: a negative or non-finite option");
    run *r = calloc(1, sizeof *r);
    if (!r)
        return optvq_fail(OPTVQ_ERR_NOMEM, "out of memory for a training run");
    r->opts = *o; /* the caller's strings need not outlive this call */
    const char **fields[7] = {&r->opts.config, &r->opts.out,  &r->opts.data,    &r->opts.val_data,
                              &r->opts.lpips,  &r->opts.init_from, &r->opts.codebook};
    for (int i = 0; i < 7; i++)
        if (*fields[i] && !(*fields[i] = r->strings[i] = strdup(*fields[i]))) {
            free_run(r);
            return optvq_fail(OPTVQ_ERR_NOMEM, "out of memory for a training run");
        }
    r->o = &r->opts;
    r->dir = r->opts.out;
    if (setup(r)) {
        optvq_status st = optvq_last_status();
        free_run(r);
        return st != OPTVQ_OK ? st : OPTVQ_ERR_FORMAT;
    }
    int failed = !r->finished && r->writer && !(r->mlog = open_metrics(r, r->opt.step));
    if (comm_any(r->comm, failed)) {
        if (!failed)
            fail(r, "another rank could not start the run (its message says why)");
        optvq_status st = optvq_last_status();
        free_run(r);
        return st != OPTVQ_OK ? st : OPTVQ_ERR_IO;
    }
    *out = r;
    return OPTVQ_OK;
}

int optvq_train_is_finished(const optvq_train *t) { return t ? t->finished : 0; }

const char *optvq_train_run_dir(const optvq_train *t) { return t ? t->dir : NULL; }

optvq_model *optvq_train_model(optvq_train *t) { return t ? t->model : NULL; }

optvq_status optvq_train_run(optvq_train *t, optvq_train_callback callback, void *user)
{
    if (!t)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "optvq_train_run: the run is NULL");
    if (t->finished)
        return OPTVQ_OK;
    if (t->failed)
        return optvq_fail(OPTVQ_ERR_STATE, "optvq_train_run: the run has failed before; create it again");
    run *rp = t;
    const optvq_train_options *o = rp->o;
    FILE *mlog = rp->mlog;
    int rc = 0;
    float *batch = NULL;
    int64_t *perm = NULL, *tokens = NULL, *hist = NULL;
    double *step_hist = NULL; /* the step's code counts, summed over the ranks */
    int64_t *step_counts = NULL;
    const int64_t C = rp->train.c, R = rp->train.r, per = C * R * R, n_e = rp->cfg.quantize.n_e;
    const int64_t f = coder_downsample(&rp->cfg.encoder), tok_per = rp->cfg.quantize.num_head * (R / f) * (R / f);
    batch = malloc((size_t)(rp->batch * per) * sizeof(float));
    perm = malloc((size_t)rp->train.n * sizeof *perm);
    tokens = malloc((size_t)(rp->batch * tok_per) * sizeof *tokens);
    hist = malloc((size_t)n_e * sizeof *hist);
    step_hist = malloc((size_t)n_e * sizeof *step_hist);
    step_counts = malloc((size_t)n_e * sizeof *step_counts);
    if (!batch || !perm || !tokens || !hist || !step_hist || !step_counts) {
        rc = fail(rp, "out of memory");
        goto done;
    }
    const model_loss_weights lw = {rp->cfg.train.loss_l1, rp->cfg.train.loss_l2, rp->cfg.train.loss_q};
    const double t_start = optvq_now();
    const int64_t first_step = rp->opt.step;
    int64_t steps_here = 0;
    optvq_train_report rep;
    for (int64_t epoch = rp->start_epoch; epoch < rp->epochs; epoch++) {
        /* the epoch's order depends on (seed, epoch) only, so a resumed run repeats it */
        optvq_rng rng;
        optvq_rng_seed(&rng, (uint64_t)rp->seed * 0x9E3779B97F4A7C15ull + (uint64_t)epoch + 1);
        for (int64_t i = 0; i < rp->train.n; i++)
            perm[i] = i;
        for (int64_t i = rp->train.n - 1; i > 0; i--) {
            int64_t j = (int64_t)optvq_rng_below(&rng, (uint64_t)i + 1), tt = perm[i];
            perm[i] = perm[j];
            perm[j] = tt;
        }
        memset(hist, 0, (size_t)n_e * sizeof *hist);
        double t_epoch = optvq_now(), loss_sum = 0;
        int64_t first_in_epoch = rp->opt.step - epoch * rp->steps_per_epoch; /* > 0 only when resuming mid-epoch */
        if (first_in_epoch < 0)
            first_in_epoch = 0;
        for (int64_t s = first_in_epoch; s < rp->steps_per_epoch; s++) {
            /* every step is a full global batch (drop_last); this rank takes its slice of it, so the images of a
             * step are the same whatever the number of ranks */
            const int64_t b = rp->batch, i0 = (s * rp->ranks + comm_rank(rp->comm)) * b;
            for (int64_t k = 0; k < b && !rc; k++) {
                /* per image of the global batch, so a resumed epoch, and any number of ranks, draw the same crops */
                optvq_rng aug;
                optvq_rng_seed(&aug, ((uint64_t)rp->seed ^ ((uint64_t)(epoch + 1) << 32) ^ (uint64_t)s) *
                                             0x9E3779B97F4A7C15ull +
                                         (uint64_t)(i0 + k - s * rp->ranks * b));
                if (dataset_augment(&rp->train, perm[i0 + k], &aug, batch + k * per) != OPTVQ_OK)
                    rc = fail(rp, "%s", optvq_last_error());
            }
            if (rc)
                goto done;
            optimizer_zero_grad(&rp->opt);
            model_losses l;
            ae_disc_log gl;
            memset(&gl, 0, sizeof gl);
            double t0 = optvq_now(), lr, beta1, gnorm;
            const double comm_s0 = rp->tally.seconds + rp->step.comm_tally.seconds,
                         comm_b0 = rp->tally.bytes + rp->step.comm_tally.bytes;
            onecycle_at(&rp->opt.schedule, rp->opt.step, &lr, &beta1);
            if (rp->general) {
                if (ae_disc_step(&rp->step, batch, b, R, R, rp->opt.step, &gl, tokens) != OPTVQ_OK) {
                    rc = fail(rp, "step %lld: %s", (long long)rp->opt.step, optvq_last_error());
                    goto done;
                }
                l.total = gl.total;
                l.l1 = gl.l1;
                l.l2 = gl.l2;
                l.q = gl.q;
                gnorm = gl.grad_norm;
            } else {
                if (model_trainer_step(rp->trainer, batch, b, R, R, &lw, &l, NULL, tokens) != OPTVQ_OK) {
                    rc = fail(rp, "step %lld: %s", (long long)rp->opt.step, optvq_last_error());
                    goto done;
                }
                optimizer *ae = &rp->opt;
                if (optimizer_average_grads(&ae, 1, rp->comm, &rp->tally) != OPTVQ_OK) {
                    rc = fail(rp, "step %lld: %s", (long long)rp->opt.step, optvq_last_error());
                    goto done;
                }
                gnorm = optimizer_step(&rp->opt);
            }
            /* what the step reports is the global batch's: losses averaged, codes counted over the ranks */
            memset(step_hist, 0, (size_t)n_e * sizeof *step_hist);
            for (int64_t k = 0; k < b * tok_per; k++)
                step_hist[tokens[k]] += 1.0;
            if (rp->ranks > 1) {
                double logged[11] = {l.total, l.l1, l.l2, l.q, gl.p, gl.g, gl.d, gl.logits_real, gl.logits_fake};
                const size_t n_logged = rp->general ? 9 : 4;
                double t_comm = optvq_now();
                if (comm_mean(rp->comm, logged, n_logged, "the step's losses") != OPTVQ_OK ||
                    comm_sum(rp->comm, step_hist, (size_t)n_e, "the step's code counts") != OPTVQ_OK) {
                    rc = fail(rp, "step %lld: %s", (long long)rp->opt.step, optvq_last_error());
                    goto done;
                }
                rp->tally.seconds += optvq_now() - t_comm;
                rp->tally.bytes += (double)(n_logged + (size_t)n_e) * sizeof(double);
                l.total = logged[0];
                l.l1 = logged[1];
                l.l2 = logged[2];
                l.q = logged[3];
                if (rp->general) {
                    gl.p = logged[4];
                    gl.g = logged[5];
                    gl.d = logged[6];
                    gl.logits_real = logged[7];
                    gl.logits_fake = logged[8];
                }
            }
            optvq_usage u;
            for (int64_t k = 0; k < n_e; k++) {
                step_counts[k] = (int64_t)step_hist[k];
                hist[k] += step_counts[k];
            }
            if (eval_usage_from_histogram(step_counts, n_e, &u) != OPTVQ_OK) {
                rc = fail(rp, "%s", optvq_last_error());
                goto done;
            }
            loss_sum += l.total;
            if (mlog) { /* rank 0 writes the run's files */
                fprintf(mlog,
                        "{\"step\": %lld, \"epoch\": %lld, \"lr\": %.6g, \"beta1\": %.6g, \"loss\": %.6g, \"l1\": %.6g, "
                        "\"l2\": %.6g, \"q\": %.6g, \"grad_norm\": %.6g, \"codes_used\": %lld, \"perplexity\": %.4g, "
                        "\"seconds\": %.4f",
                        (long long)rp->opt.step, (long long)epoch + 1, lr, beta1, l.total, l.l1, l.l2, l.q, gnorm,
                        (long long)u.codes_used, u.perplexity, optvq_now() - t0);
                if (rp->general)
                    fprintf(mlog, ", \"p\": %.6g", gl.p);
                if (rp->disc)
                    fprintf(mlog,
                            ", \"g\": %.6g, \"g_weight\": %.6g, \"disc_factor\": %g, \"d\": %.6g, "
                            "\"logits_real\": %.6g, \"logits_fake\": %.6g, \"d_grad_norm\": %.6g",
                            gl.g, gl.g_weight, gl.factor, gl.d, gl.logits_real, gl.logits_fake, gl.d_grad_norm);
                if (rp->ranks > 1)
                    fprintf(mlog, ", \"ranks\": %d, \"comm_seconds\": %.4f, \"comm_bytes\": %.0f", rp->ranks,
                            rp->tally.seconds + rp->step.comm_tally.seconds - comm_s0,
                            rp->tally.bytes + rp->step.comm_tally.bytes - comm_b0);
                fputs("}\n", mlog);
            }
            steps_here++;
            memset(&rep, 0, sizeof rep);
            rep.event = OPTVQ_TRAIN_STEP;
            rep.epoch = epoch + 1;
            rep.epochs = rp->epochs;
            rep.step = rp->opt.step;
            rep.total_steps = rp->total_steps;
            rep.step_in_epoch = s + 1;
            rep.steps_per_epoch = rp->steps_per_epoch;
            rep.first_step = first_step;
            rep.n_e = n_e;
            rep.train_images = rp->train.n;
            rep.val_images = rp->have_val ? rp->val.n : 0;
            rep.seconds = optvq_now() - t_start;
            rep.loss = l.total;
            rep.l1 = l.l1;
            rep.l2 = l.l2;
            rep.q = l.q;
            rep.p = rp->general ? gl.p : NAN;
            rep.g = rp->disc ? gl.g : NAN;
            rep.d = rp->disc ? gl.d : NAN;
            rep.grad_norm = gnorm;
            rep.lr = lr;
            rep.codes_used = u.codes_used;
            rep.perplexity = u.perplexity;
            rep.val_psnr = rep.val_ssim = rep.val_usage = rep.val_perplexity = NAN;
            rep.run_dir = rp->dir;
            rep.ranks = rp->ranks;
            rep.rank = comm_rank(rp->comm);
            rep.comm_seconds = rp->tally.seconds + rp->step.comm_tally.seconds - comm_s0;
            rep.comm_bytes = rp->tally.bytes + rp->step.comm_tally.bytes - comm_b0;
            int stop = callback && callback(&rep, user);
            if (stop || (o->stop_after && steps_here >= o->stop_after)) {
                if (mlog)
                    fflush(mlog);
                goto done; /* as if killed: no checkpoint */
            }
        }
        optvq_usage epoch_usage; /* over the epoch's batches: the histogram, as optvq eval counts */
        if (eval_usage_from_histogram(hist, n_e, &epoch_usage) != OPTVQ_OK) {
            rc = fail(rp, "%s", optvq_last_error());
            goto done;
        }
        const int64_t used = epoch_usage.codes_used;
        double psnr = NAN, ssim = NAN, vu = NAN, vp = NAN;
        if (rp->have_val) {
            /* held-out batches are independent of each other and of the ranks: no Sinkhorn over the group */
            optvq_quantizer *quant = optvq_model_quantizer(rp->model);
            if (rp->ranks > 1)
                quantizer_set_allreduce(quant, NULL, NULL);
            rc = evaluate(rp, epoch, &psnr, &ssim, &vu, &vp);
            if (rp->ranks > 1)
                quantizer_set_allreduce(quant, o->comm.allreduce, o->comm.ctx);
            if (rc)
                goto done;
        }
        double secs = optvq_now() - t_epoch;
        char jb[4][32];
        if (mlog)
            fprintf(mlog,
                    "{\"epoch_end\": %lld, \"step\": %lld, \"train_codes_used\": %lld, \"train_usage\": %.6g, "
                    "\"train_perplexity\": %.6g, \"val_psnr\": %s, \"val_ssim\": %s, \"val_usage\": %s, "
                    "\"val_perplexity\": %s, \"seconds\": %.3f}\n",
                    (long long)epoch + 1, (long long)rp->opt.step, (long long)used, (double)used / (double)n_e, epoch_usage.perplexity,
                    jnum(jb[0], psnr), jnum(jb[1], ssim), jnum(jb[2], vu), jnum(jb[3], vp), secs);
        memset(&rep, 0, sizeof rep);
        rep.event = OPTVQ_TRAIN_EPOCH;
        rep.epoch = epoch + 1;
        rep.epochs = rp->epochs;
        rep.step = rp->opt.step;
        rep.total_steps = rp->total_steps;
        rep.step_in_epoch = rp->steps_per_epoch;
        rep.steps_per_epoch = rp->steps_per_epoch;
        rep.first_step = first_step;
        rep.n_e = n_e;
        rep.train_images = rp->train.n;
        rep.val_images = rp->have_val ? rp->val.n : 0;
        rep.seconds = secs;
        rep.loss = rp->steps_per_epoch > first_in_epoch ? loss_sum / (double)(rp->steps_per_epoch - first_in_epoch) : NAN;
        rep.l1 = rep.l2 = rep.q = rep.p = rep.g = rep.d = rep.grad_norm = rep.lr = NAN;
        rep.codes_used = used;
        rep.perplexity = epoch_usage.perplexity;
        rep.val_psnr = psnr;
        rep.val_ssim = ssim;
        rep.val_usage = vu;
        rep.val_perplexity = vp;
        rep.run_dir = rp->dir;
        rep.ranks = rp->ranks;
        rep.rank = comm_rank(rp->comm);
        rep.comm_seconds = rep.comm_bytes = NAN;
        int stop = callback && callback(&rep, user);
        if ((rc = end_epoch_files(rp, mlog, epoch + 1)))
            goto done;
        if (stop)
            goto done;
    }
    if (rp->epochs == 0 && (rc = end_epoch_files(rp, mlog, 0)))
        goto done;
done:
    free(batch);
    free(perm);
    free(tokens);
    free(hist);
    free(step_hist);
    free(step_counts);
    if (rc) { /* a run that failed stays failed: its state may be half a step */
        if (t->mlog)
            fclose(t->mlog);
        t->mlog = NULL;
        t->failed = 1;
        optvq_status st = optvq_last_status();
        return st != OPTVQ_OK ? st : OPTVQ_ERR_FORMAT;
    }
    return OPTVQ_OK;
}
