/* The CLI side of a training run: progress lines or a bar, curves.png, the
 * demo's summary; the run itself is the library's (optvq/train.h). */
#include "cli/train_run.h"
#include "cli/train_curves.h"
#include "cli/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct cli_run {
    const train_options *o;
    const char *label;
    train_curves curves;
    train_summary *sum;
    int failed; /* out of memory or a chart that could not be written */
} cli_run;

static void print_step(const cli_run *c, const optvq_train_report *r)
{
    FILE *p = c->o->progress;
    const int64_t done = r->step - r->first_step, todo = r->total_steps - r->first_step;
    const double eta = done ? r->seconds / (double)done * (double)(todo - done) : 0;
    if (isatty(fileno(p))) {
        int w = 24, fill = (int)(w * r->step_in_epoch / r->steps_per_epoch);
        fprintf(p, "\r%s epoch %lld/%lld [", c->label, (long long)r->epoch, (long long)r->epochs);
        for (int i = 0; i < w; i++)
            fputc(i < fill ? '=' : ' ', p);
        fprintf(p, "] %lld/%lld loss %.4f q %.4f codes %lld/%lld ETA %.0fs   ", (long long)r->step_in_epoch,
                (long long)r->steps_per_epoch, r->loss, r->q, (long long)r->codes_used, (long long)r->n_e, eta);
        fflush(p);
    } else if (r->step_in_epoch % 10 == 0 || r->step_in_epoch == r->steps_per_epoch) {
        fprintf(p, "%s epoch %lld/%lld step %lld/%lld loss %.4f q %.4f codes used %lld/%lld ETA %.0fs\n", c->label,
                (long long)r->epoch, (long long)r->epochs, (long long)r->step_in_epoch, (long long)r->steps_per_epoch,
                r->loss, r->q, (long long)r->codes_used, (long long)r->n_e, eta);
        fflush(p);
    }
}

static int on_report(const optvq_train_report *r, void *user)
{
    cli_run *c = user;
    train_summary *s = c->sum;
    if (r->rank != 0) /* rank 0 reports and draws for the whole group */
        return 0;
    if (r->event == OPTVQ_TRAIN_STEP) {
        const double cv[TC_STEP_N] = {(double)r->step, r->loss, r->l1, r->l2, r->q, r->p, r->g, r->d, r->grad_norm,
                                      (double)r->codes_used, r->perplexity};
        if (train_curves_add_step(&c->curves, cv)) {
            fprintf(stderr, "optvq %s: out of memory for the training curves\n", c->label);
            return c->failed = 1;
        }
        if (s) {
            if (s->step_usage_count % 1024 == 0) {
                double *g = realloc(s->step_usage, (size_t)(s->step_usage_count + 1024) * sizeof(double));
                if (!g) {
                    fprintf(stderr, "optvq %s: out of memory for the summary\n", c->label);
                    return c->failed = 1;
                }
                s->step_usage = g;
            }
            s->step_usage[s->step_usage_count++] = (double)r->codes_used / (double)r->n_e;
        }
        if (c->o->progress)
            print_step(c, r);
        return 0;
    }
    const double usage = (double)r->codes_used / (double)r->n_e;
    const double ev[TC_EPOCH_N] = {(double)r->epoch, (double)r->step, usage, r->perplexity,
                                   r->val_psnr, r->val_ssim, r->val_usage, r->val_perplexity};
    char path[4200];
    snprintf(path, sizeof path, "%s/curves.png", r->run_dir);
    if (train_curves_add_epoch(&c->curves, ev) || train_curves_draw(&c->curves, path) != OPTVQ_OK) {
        fprintf(stderr, "optvq %s: %s\n", c->label, optvq_last_error()[0] ? optvq_last_error() : "out of memory");
        return c->failed = 1;
    }
    if (c->o->progress) {
        char held_out[64] = "no held-out check"; /* --val-limit 0, or no held-out data */
        if (!isnan(r->val_psnr))
            snprintf(held_out, sizeof held_out, "held-out PSNR %.2f SSIM %.4f", r->val_psnr, r->val_ssim);
        fprintf(c->o->progress, "%s%s epoch %lld/%lld done in %.1fs: codes used %lld/%lld (%.1f%%), perplexity %.1f, %s\n",
                isatty(fileno(c->o->progress)) ? "\n" : "", c->label, (long long)r->epoch, (long long)r->epochs,
                r->seconds, (long long)r->codes_used, (long long)r->n_e, 100.0 * usage, r->perplexity, held_out);
    }
    const int64_t e = r->epoch - 1;
    if (s && e < TRAIN_MAX_EPOCHS) {
        s->epoch_seconds[e] = r->seconds;
        s->usage[e] = usage;
        s->perplexity[e] = r->perplexity;
        s->psnr[e] = r->val_psnr;
        s->ssim[e] = r->val_ssim;
        s->loss[e] = r->loss;
        s->epochs = r->epoch;
        s->val_usage = r->val_usage;
        s->val_perplexity = r->val_perplexity;
        s->n_e = r->n_e;
        s->train_images = r->train_images;
        s->val_images = r->val_images;
    }
    return 0;
}

/* A resumed run's curves start from what its metrics.jsonl already holds. */
static int load_curves(cli_run *c, const char *dir)
{
    char path[4200], line[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    int oom = 0;
    while (f && fgets(line, sizeof line, f))
        oom |= train_curves_add_json(&c->curves, line);
    if (f)
        fclose(f);
    if (oom)
        fprintf(stderr, "optvq %s: out of memory for the training curves\n", c->label);
    return oom;
}

void train_summary_free(train_summary *sum)
{
    if (sum) {
        free(sum->step_usage);
        sum->step_usage = NULL;
        sum->step_usage_count = 0;
    }
}

int train_run(const train_options *o, train_summary *sum)
{
    cli_run c;
    memset(&c, 0, sizeof c);
    c.o = o;
    c.label = o->label ? o->label : "train";
    /* over MPI ranks every rank prints its own failures, named by rank; rank 0 alone the progress */
    char label[64];
    const int ranks = o->run.comm.n_ranks > 1 ? o->run.comm.n_ranks : 1, rank = ranks > 1 ? o->run.comm.rank : 0;
    if (ranks > 1) {
        snprintf(label, sizeof label, "%s (rank %d of %d)", c.label, rank, ranks);
        c.label = label;
    }
    c.sum = sum;
    if (sum)
        memset(sum, 0, sizeof *sum);
    optvq_train *t = NULL;
    optvq_status st = optvq_train_create(&o->run, &t);
    if (st != OPTVQ_OK) {
        fprintf(stderr, "optvq %s: %s\n", c.label, optvq_last_error());
        return st == OPTVQ_ERR_STATE || st == OPTVQ_ERR_INVALID_ARG ? 2 : 1;
    }
    int rc = 0;
    if (optvq_train_is_finished(t)) {
        if (rank == 0)
            fprintf(stderr, "optvq %s: %s: the run is finished; nothing to resume\n", c.label, o->run.out);
        goto done;
    }
    if (rank == 0 && o->run.resume && load_curves(&c, optvq_train_run_dir(t))) {
        rc = 1;
        goto done;
    }
    optvq_model_info info;
    if (optvq_model_get_info(optvq_train_model(t), &info) == OPTVQ_OK)
        c.curves.n_e = info.n_e;
    const double t0 = cli_now();
    st = optvq_train_run(t, on_report, &c);
    if (c.failed)
        rc = 1;
    else if (st != OPTVQ_OK) {
        fprintf(stderr, "optvq %s: %s\n", c.label, optvq_last_error());
        rc = 1;
    }
    if (sum) {
        sum->seconds = cli_now() - t0;
        sum->steps = sum->step_usage_count;
    }
done:
    optvq_train_free(t);
    train_curves_free(&c.curves);
    return rc;
}
