/* optvq demo — the main job on built-in defaults: the 2-D toy picture, then
 * OptVQ and the vanilla-VQ baseline trained side by side on Fashion-MNIST,
 * and a Markdown report with plots and reconstructions. */
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/util.h"
#include "cli/train_run.h"
#include "io/image.h"
#include "optvq/optvq.h"
#include "io/dataset.h"
#include "viz/chart.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char demo_help[] =
    "NAME\n"
    "    optvq demo - the main job on built-in defaults\n"
    "\n"
    "SYNOPSIS\n"
    "    optvq demo [--out DIR] [--epochs N] [--limit N] [--batch-size B] [--lr LR]\n"
    "               [--threads T] [--quick]\n"
    "\n"
    "DESCRIPTION\n"
    "    1. 'optvq toy': vanilla VQ and OptVQ learning 25 codes for 50 2-D points.\n"
    "    2. OptVQ (Sinkhorn, 4 heads) and the vanilla-VQ baseline (nearest code)\n"
    "       trained side by side on Fashion-MNIST (Debian's dataset-fashion-mnist)\n"
    "       with the reference recipe on a shortened schedule, from the same seed.\n"
    "    3. DIR/report.md: codebook usage over training, PSNR/SSIM on held-out\n"
    "       images, and reconstructions of the same test images by both.\n"
    "    About six minutes on 2 cores with the defaults.\n"
    "\n"
    "OPTIONS\n"
    "    --out DIR        output folder, created if missing (default out/demo)\n"
    "    --epochs N       epochs per model (default 5)\n"
    "    --limit N        training images (default 20000 of the 60000)\n"
    "    --batch-size B   batch size (default 256)\n"
    "    --lr LR          learning rate per sample (default 4.5e-6 x 1024 / B: the\n"
    "                     reference's absolute learning rate at its batch of 1024)\n"
    "    --threads T      threads (default: all cores)\n"
    "    --quick          a tiny run (tests): 1 epoch of 512 images\n"
    "\n"
    "FILES\n"
    "    DIR/toy.gif, DIR/toy.png          the 2-D toy\n"
    "    DIR/optvq/, DIR/vqbase/           training runs (see 'optvq train --help')\n"
    "    DIR/usage.png, DIR/psnr.png       curves over the epochs\n"
    "    DIR/reconstructions.png           originals, vanilla VQ, OptVQ\n"
    "    DIR/report.md                     the report\n"
    "\n"
    "EXAMPLES\n"
    "    optvq demo                     # about six minutes; out/demo/report.md\n"
    "    optvq demo --epochs 10 --limit 60000 --out demo-long\n"
    "\n"
    "EXIT STATUS\n"
    "    0 success, 1 runtime failure, 2 usage error.\n";

/* The two Fashion-MNIST configs, written into DIR so the run is self-contained
 * (the same as configs/fashion-mnist/{optvq,vqbase}.yaml): each starts with its
 * codebook start, then the common part, then its quantizer. */
static const char *const VQBASE_START = "train:\n  use_initiate: kmeans\n";
static const char *const OPTVQ_START = "train:\n  use_initiate: null\n";
static const char *const MODEL_HEAD =
    "  epochs: 100\n  seed: 42\n  learning_rate: 4.5e-6\n  mul_learning_rate: 1.0\n  weight_decay: 0.05\n"
    "data:\n  dataset: fashion-mnist\n  batch_size: 1024\n"
    "model:\n  autoencoder:\n    target: optvq.models.vqgan.VQModel\n    params:\n      use_connector: true\n"
    "      encoder:\n        target: optvq.models.backbone.simple_cnn.PlainCNNEncoder\n        params:\n"
    "          in_dim: 1\n"
    "      decoder:\n        target: optvq.models.backbone.simple_cnn.PlainCNNDecoder\n        params:\n"
    "          out_dim: 1\n"
    "      loss:\n        target: optvq.losses.aeloss.AELoss\n        params:\n          loss_l1_weight: 1.0\n"
    "          loss_l2_weight: 1.0\n          loss_p_weight: 0.0\n          loss_q_weight: 1.0\n";
static const char *const OPTVQ_Q =
    "      quantize:\n        target: optvq.models.quantizer.VectorQuantizerSinkhorn\n        params:\n"
    "          n_e: 1024\n          e_dim: 8\n          beta: 0.25\n          use_proj: true\n          epsilon: 10\n"
    "          n_iters: 5\n          normalize_mode: all\n          use_prob: false\n          num_head: 4\n"
    "          loss_q_type: l2\n";
static const char *const VQBASE_Q =
    "      quantize:\n        target: optvq.models.quantizer.VectorQuantizer\n        params:\n"
    "          n_e: 1024\n          e_dim: 8\n          beta: 0.25\n          use_proj: true\n          num_head: 1\n";

static int write_text(const char *path, const char *a, const char *b, const char *c)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(a, f) < 0 || fputs(b, f) < 0 || fputs(c, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "optvq demo: %s: cannot write: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

/* Originals, vanilla-VQ and OptVQ reconstructions of the first 12 test images. */
static int recon_figure(const char *out)
{
    char p[4096];
    dataset test;
    if (dataset_load("fashion-mnist:test", 0, 32, 1, 12, &test) != OPTVQ_OK) {
        fprintf(stderr, "optvq demo: %s\n", optvq_last_error());
        return 1;
    }
    const int64_t n = test.n, R = 32, Wd = n * R;
    float *grid = malloc((size_t)(3 * R * Wd) * sizeof(float)), *rec = malloc((size_t)(n * R * R) * sizeof(float));
    int rc = !grid || !rec;
    const char *runs[2] = {"vqbase", "optvq"};
    for (int row = 0; row < 3 && !rc; row++) {
        const float *src = test.images;
        if (row > 0) {
            optvq_model *m;
            snprintf(p, sizeof p, "%s/%s", out, runs[row - 1]);
            if (optvq_model_load(p, NULL, &m) != OPTVQ_OK ||
                optvq_model_reconstruct(m, test.images, n, R, R, rec, NULL) != OPTVQ_OK) {
                fprintf(stderr, "optvq demo: %s\n", optvq_last_error());
                rc = 1;
                break;
            }
            optvq_model_free(m);
            src = rec;
        }
        for (int64_t i = 0; i < n; i++)
            for (int64_t y = 0; y < R; y++)
                memcpy(grid + (row * R + y) * Wd + i * R, src + (i * R + y) * R, (size_t)R * sizeof(float));
    }
    /* 3x larger, nearest neighbour, so 32x32 images can be seen */
    const int64_t S = 3, GH = 3 * R * S, GW = Wd * S;
    float *big = rc ? NULL : malloc((size_t)(GH * GW) * sizeof(float));
    if (!rc && !big)
        rc = 1;
    for (int64_t y = 0; !rc && y < GH; y++)
        for (int64_t x = 0; x < GW; x++)
            big[y * GW + x] = grid[(y / S) * Wd + x / S];
    snprintf(p, sizeof p, "%s/reconstructions.png", out);
    if (!rc && optvq_image_write_png_signed(p, big, 1, (int)GH, (int)GW) != OPTVQ_OK) {
        fprintf(stderr, "optvq demo: %s\n", optvq_last_error());
        rc = 1;
    }
    free(big);
    free(grid);
    free(rec);
    dataset_free(&test);
    return rc;
}

static int charts(const char *out, const train_summary *s)
{
    double x[TRAIN_MAX_EPOCHS], ps[2][TRAIN_MAX_EPOCHS];
    int n = (int)s[0].epochs;
    for (int i = 0; i < n; i++) {
        x[i] = i + 1;
        for (int k = 0; k < 2; k++)
            ps[k][i] = s[k].psnr[i];
    }
    /* codes used by each step's batch */
    int steps = (int)(s[0].step_usage_count < s[1].step_usage_count ? s[0].step_usage_count : s[1].step_usage_count);
    double *sx = malloc((size_t)(steps ? steps : 1) * sizeof(double));
    double *su0 = malloc((size_t)(steps ? steps : 1) * sizeof(double)), *su1 = malloc((size_t)(steps ? steps : 1) * sizeof(double));
    if (!sx || !su0 || !su1) {
        free(sx);
        free(su0);
        free(su1);
        return 1;
    }
    for (int i = 0; i < steps; i++) {
        sx[i] = i + 1;
        su0[i] = 100.0 * s[0].step_usage[i];
        su1[i] = 100.0 * s[1].step_usage[i];
    }
    viz_series su[2] = {{"vanilla VQ (nearest code)", {0.80, 0.15, 0.15}, sx, su0, steps},
                        {"OptVQ (Sinkhorn)", {0.13, 0.55, 0.13}, sx, su1, steps}};
    viz_series sp[2] = {{"vanilla VQ (nearest code)", {0.80, 0.15, 0.15}, x, ps[0], n},
                        {"OptVQ (Sinkhorn)", {0.13, 0.55, 0.13}, x, ps[1], n}};
    char p[4096];
    snprintf(p, sizeof p, "%s/usage.png", out);
    optvq_status st = viz_line_chart(p, "Codebook usage during training (1024 codes)", "training step",
                                     "codes used by the step's batch (%)", su, 2, 0.0, 100.0);
    free(sx);
    free(su0);
    free(su1);
    if (st != OPTVQ_OK)
        goto fail;
    snprintf(p, sizeof p, "%s/psnr.png", out);
    if (viz_line_chart(p, "Held-out PSNR (Fashion-MNIST test images)", "epoch", "PSNR (dB)", sp, 2, NAN, NAN) !=
        OPTVQ_OK)
        goto fail;
    return 0;
fail:
    fprintf(stderr, "optvq demo: %s\n", optvq_last_error());
    return 1;
}

static int report(const char *out, const train_summary *s, const train_options *o, double toy_s)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/report.md", out);
    FILE *f = fopen(p, "w");
    if (!f) {
        fprintf(stderr, "optvq demo: %s: cannot write: %s\n", p, strerror(errno));
        return 1;
    }
    const char *names[2] = {"vanilla VQ (nearest code)", "OptVQ (Sinkhorn)"};
    int n = (int)s[0].epochs;
    fprintf(f, "# optvq demo\n\nProduced by `optvq demo` (optvq %s).\n\n", optvq_version());
    fprintf(f, "## 1. The 2-D toy\n\n50 points, 25 codes starting near the origin, 1000 AdamW steps "
               "(%.1f s). Left: vanilla VQ (red), right: OptVQ (green); hollow markers are dead codes.\n\n"
               "![toy](toy.png)\n\nThe animation: [toy.gif](toy.gif).\n\n",
            toy_s);
    fprintf(f, "## 2. Fashion-MNIST\n\nBoth models: the plain CNN autoencoder of the reference's MNIST configs, "
               "1024 codes, AdamW + OneCycleLR + clipping, loss l1 + l2 + quantizer loss. "
               "OptVQ: Sinkhorn assignment, 4 heads of dimension 2, l2 quantizer loss, codebook from N(0,1). "
               "Vanilla VQ: nearest code, 1 head of dimension 8, cross-entropy quantizer loss (the reference's "
               "vqbase config), codebook from k-means of the encoder's features.\n\n"
               "Schedule: %lld epochs of %lld training images, batch %lld, learning rate %g per sample "
               "(the reference trains 100 epochs of 60000 at 4.5e-6). Held-out: %lld test images.\n\n",
            (long long)n, (long long)s[1].train_images, (long long)o->run.batch_size, o->run.lr, (long long)s[1].val_images);
    fprintf(f, "| model | epochs | time | codes used (last epoch, train) | held-out codes used | held-out "
               "perplexity | PSNR | SSIM |\n|---|---|---|---|---|---|---|---|\n");
    for (int k = 0; k < 2; k++)
        fprintf(f, "| %s | %d | %.0f s | %.1f%% | %.1f%% | %.1f | %.2f dB | %.4f |\n", names[k], n, s[k].seconds,
                100.0 * s[k].usage[n - 1], 100.0 * s[k].val_usage, s[k].val_perplexity, s[k].psnr[n - 1],
                s[k].ssim[n - 1]);
    fprintf(f, "\n![codebook usage](usage.png)\n\n![PSNR](psnr.png)\n\n");
    fprintf(f, "Per epoch:\n\n| epoch | vanilla used | OptVQ used | vanilla PSNR | OptVQ PSNR | vanilla SSIM | OptVQ "
               "SSIM |\n|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++)
        fprintf(f, "| %d | %.1f%% | %.1f%% | %.2f | %.2f | %.4f | %.4f |\n", i + 1, 100.0 * s[0].usage[i],
                100.0 * s[1].usage[i], s[0].psnr[i], s[1].psnr[i], s[0].ssim[i], s[1].ssim[i]);
    fprintf(f, "\n## 3. Reconstructions\n\nTop: test images; middle: vanilla VQ; bottom: OptVQ.\n\n"
               "![reconstructions](reconstructions.png)\n\n"
               "Per-step logs: `optvq/metrics.jsonl`, `vqbase/metrics.jsonl`; the trained models load with "
               "`optvq encode --model %s/optvq ...`.\n",
            out);
    return fclose(f) != 0;
}

int cmd_demo(int argc, char **argv)
{
    cli_opt opts[] = {{"out", 1, 0},     {"epochs", 1, 0},  {"limit", 1, 0}, {"batch-size", 1, 0},
                      {"lr", 1, 0},      {"threads", 1, 0}, {"quick", 0, 0}, {0, 0, 0}};
    int pr = cli_parse("demo", argc, argv, opts);
    if (pr == 1) {
        fputs(demo_help, stdout);
        return 0;
    }
    if (pr != 0)
        return 2;
    const char *out = cli_get(opts, "out") ? cli_get(opts, "out") : "out/demo";
    int quick = cli_get(opts, "quick") != NULL;
    int64_t epochs = quick ? 1 : 5, limit = quick ? 512 : 20000, batch = quick ? 128 : 256, threads = 0;
    double lr = -1; /* default: the reference's absolute lr, 4.5e-6 x 1024, at our batch size */
    if (!*out) {
        fprintf(stderr, "optvq demo: --out must not be empty\n");
        return 2;
    }
    if (cli_get_int("demo", opts, "epochs", 1, TRAIN_MAX_EPOCHS, &epochs) ||
        cli_get_int("demo", opts, "limit", 1, 60000, &limit) ||
        cli_get_int("demo", opts, "batch-size", 1, 1 << 16, &batch) ||
        cli_get_int("demo", opts, "threads", 0, 4096, &threads) || cli_get_float("demo", opts, "lr", 0, 1, &lr))
        return 2;
    if (lr < 0)
        lr = 4.5e-6 * 1024.0 / (double)batch;
    if (cli_make_dirs(out) != 0) {
        fprintf(stderr, "optvq demo: %s: cannot create folder: %s\n", out, strerror(errno));
        return 1;
    }
    printf("== 1/3 the 2-D toy\n");
    fflush(stdout);
    double t0 = cli_now();
    char *toy_argv[] = {"toy", "--out", (char *)out, NULL};
    int rc = cmd_toy(3, toy_argv);
    if (rc)
        return rc;
    double toy_s = cli_now() - t0;
    char cfg[2][4096], run_dir[2][4096];
    const char *names[2] = {"vqbase", "optvq"}, *quant[2] = {VQBASE_Q, OPTVQ_Q};
    const char *start[2] = {VQBASE_START, OPTVQ_START};
    train_summary *sum = calloc(2, sizeof *sum);
    if (!sum)
        return 1;
    train_options o;
    for (int k = 0; k < 2 && !rc; k++) {
        snprintf(cfg[k], sizeof cfg[k], "%s/%s.yaml", out, names[k]);
        snprintf(run_dir[k], sizeof run_dir[k], "%s/%s", out, names[k]);
        if ((rc = write_text(cfg[k], start[k], MODEL_HEAD, quant[k])))
            break;
        printf("\n== %d/3 training %s on Fashion-MNIST (%lld epochs x %lld images)\n", 2 + k,
               k ? "OptVQ" : "the vanilla-VQ baseline", (long long)epochs, (long long)limit);
        fflush(stdout);
        memset(&o, 0, sizeof o);
        optvq_train_options_default(&o.run);
        o.run.config = cfg[k];
        o.run.out = run_dir[k];
        o.run.data = "fashion-mnist";
        o.run.epochs = epochs;
        o.run.batch_size = batch;
        o.run.seed = 42;
        o.run.limit = limit;
        o.run.val_limit = quick ? 128 : 1000;
        o.run.lr = lr;
        o.run.threads = (int)threads;
        o.run.force = 1; /* a demo run starts over */
        o.progress = stdout;
        o.label = names[k];
        rc = train_run(&o, &sum[k]);
    }
    if (!rc)
        rc = charts(out, sum) || recon_figure(out) || report(out, sum, &o, toy_s);
    if (!rc) {
        printf("\n== report: %s/report.md\n", out);
        for (int k = 0; k < 2; k++)
            printf("   %-7s codes used %.1f%% (held-out %.1f%%), PSNR %.2f dB, SSIM %.4f, %.0f s\n", names[k],
                   100.0 * sum[k].usage[sum[k].epochs - 1], 100.0 * sum[k].val_usage, sum[k].psnr[sum[k].epochs - 1],
                   sum[k].ssim[sum[k].epochs - 1], sum[k].seconds);
    }
    train_summary_free(&sum[0]);
    train_summary_free(&sum[1]);
    free(sum);
    return rc;
}
