/* optvq eval: a model's reconstruction quality and codebook usage on a data
 * set, as the paper reports them (PSNR / SSIM per image as pyiqa computes
 * them, see src/eval/metrics.h; codebook usage over the whole set). */
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/perceptual.h"
#include "cli/util.h"
#include "core/atomic_file.h"
#include "eval/evaluate.h"
#include "eval/metrics.h"
#include "io/dataset.h"
#include "mpi/mpi_comm.h"
#include "optvq/optvq.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const HELP =
    "NAME\n"
    "    optvq eval - a model's reconstruction quality and codebook usage on a data set\n"
    "\n"
    "SYNOPSIS\n"
    "    optvq eval MODEL --data D [--assign sinkhorn|nearest] [--json OUT.json]\n"
    "               [--lpips ALEX[,HEADS]] [--fid-weights W]\n"
    "               [--batch-size N] [--limit N] [--threads T] [--precision P]\n"
    "\n"
    "DESCRIPTION\n"
    "    Reconstructs every image of D and reports PSNR, SSIM, codebook usage,\n"
    "    perplexity, dead codes and the mean quantization error, and LPIPS and rFID\n"
    "    when their weights are given: a table on stdout and, with --json, the same\n"
    "    as a JSON object. A metric that is not computed is reported as skipped,\n"
    "    with the reason. Under mpirun -np N the batches are shared out over the\n"
    "    processes and the sums reduced: the numbers are one process's, printed\n"
    "    and written by process 0.\n"
    "\n"
    "MODEL (one of)\n"
    "    --model DIR       a folder with config.json + model.safetensors\n"
    "    --config CFG --weights FILE\n"
    "                      a YAML (reference) or JSON config, and .safetensors or\n"
    "                      .pth weights\n"
    "    --config CFG --init-random SEED\n"
    "                      a config with random weights (PyTorch's default init)\n"
    "\n"
    "DATA (--data D)\n"
    "    fashion-mnist     the Fashion-MNIST test set (10,000 images) of the Debian\n"
    "                      package dataset-fashion-mnist; fashion-mnist:train for the\n"
    "                      training set; or the path of an IDX images file (.gz or\n"
    "                      not). The reference's plain preprocessing (bilinear to the\n"
    "                      model's resolution, 32).\n"
    "    FOLDER            PNG/JPEG images (sorted by name; a single file works too):\n"
    "                      resized on the short side and centre-cropped to the\n"
    "                      model's resolution (the reference's validation\n"
    "                      preprocessing)\n"
    "    FILE.npy          images (B, C, H, W): float32/float64 in [-1, 1], used as\n"
    "                      they are, or uint8 0..255, mapped as (x/255 - 0.5)/0.5\n"
    "\n"
    "OPTIONS\n"
    "    --assign sinkhorn|nearest\n"
    "                      assignment (default: the config's quantizer; Sinkhorn\n"
    "                      runs over each batch, so its codes depend on --batch-size)\n"
    "    --batch-size N    images per batch (default: the reference's test batch,\n"
    "                      1024 for the plain CNN configs, 8 for the taming ones)\n"
    "    --limit N         evaluate only the first N images (default: all)\n"
    "    --json OUT.json   also write the results to OUT.json (written atomically;\n"
    "                      missing folders above it are created)\n"
    "    --lpips ALEX[,HEADS]\n"
    "                      LPIPS (AlexNet, v0.1, as pyiqa): torchvision's\n"
    "                      alexnet-owt-7be5be79.pth and lpips's weights/v0.1/alex.pth\n"
    "                      (= pyiqa's LPIPS_v0.1_alex-*.pth), or one file holding a\n"
    "                      whole LPIPS state dict; images need 31x31 or more\n"
    "    --fid-weights W   rFID (pytorch-fid): pt_inception-2015-12-05-6726825d.pth\n"
    "    --threads T       threads (default 0: all cores)\n" CLI_HELP_PRECISION
    "    --help            this text\n"
    "\n"
    "METRICS (per image, then the mean; originals (x + 1) / 2, reconstructions\n"
    "(x + 1) / 2 clamped to [0, 1])\n"
    "    PSNR  on the Y of BT.601 YCbCr (grey: the pixel values),\n"
    "          10 log10(1 / (mse + 1e-8))\n"
    "    SSIM  on the Y of YIQ rounded to 0..255, 11x11 Gaussian window (sigma\n"
    "          1.5), no padding, contrast-structure term clipped at 0 (pyiqa's SSIM)\n"
    "    usage codes chosen at least once over all tokens of the set / n_e;\n"
    "          perplexity exp(entropy of the code histogram); dead codes never\n"
    "          chosen\n"
    "    quant error  mean over elements of (z - x_q)^2, z the quantizer input\n"
    "    LPIPS per image, AlexNet v0.1 (pyiqa's create_metric(\"lpips\")); grey as RGB\n"
    "    rFID  pytorch-fid's FID between the originals and the reconstructions over\n"
    "          the whole set (InceptionV3 pool features at 299x299; grey as RGB)\n"
    "\n"
    "EXAMPLES\n"
    "    optvq eval --model runs/optvq --data fashion-mnist\n"
    "    optvq eval --model optvq-16x16x4 --data val_images/ --json val.json\n"
    "\n"
    "EXIT STATUS\n"
    "    0 success, 1 runtime failure (a bad model or data file, named in a\n"
    "    one-line message), 2 usage error.\n";

/* ---- the data (io/dataset.h), read a batch at a time ---- */

static optvq_status fill_from_dataset(void *ctx, int64_t first, int64_t count, float *dst)
{
    return dataset_read(ctx, first, count, dst);
}

/* ---- results ---- */

typedef struct results {
    const char *model, *data, *assign, *precision;
    int64_t c, h, w;
    eval_result e;
    double seconds;
} results;

static void print_table(const results *r)
{
    printf("optvq eval\n");
    printf("  model        %s\n", r->model);
    printf("  data         %s\n", r->data);
    printf("  images       %lld (%lld x %lld x %lld)\n", (long long)r->e.images, (long long)r->c, (long long)r->h,
           (long long)r->w);
    printf("  assign       %s (batch %lld)\n", r->assign, (long long)r->e.batch_size);
    printf("  precision    %s\n", r->precision);
    printf("  PSNR         %.4f dB   (min %.2f, max %.2f; %s)\n", r->e.psnr, r->e.psnr_min, r->e.psnr_max,
           r->c == 3 ? "Y of BT.601 YCbCr" : "grey values");
    printf("  SSIM         %.6f    (min %.4f, max %.4f; %s, 11x11 Gaussian)\n", r->e.ssim, r->e.ssim_min,
           r->e.ssim_max, r->c == 3 ? "Y of YIQ" : "grey");
    if (isfinite(r->e.lpips))
        printf("  LPIPS        %.6f    (AlexNet, v0.1)\n", r->e.lpips);
    else
        printf("  LPIPS        skipped: %s\n", r->e.lpips_skip);
    if (isfinite(r->e.fid))
        printf("  rFID         %.4f     (InceptionV3 pool features, %lld images)\n", r->e.fid,
               (long long)r->e.images);
    else
        printf("  rFID         skipped: %s\n", r->e.fid_skip);
    printf("  codes used   %lld / %lld (%.2f%%) over %lld tokens\n", (long long)r->e.usage.codes_used,
           (long long)r->e.usage.n_e, 100.0 * r->e.usage.fraction_used, (long long)r->e.tokens);
    printf("  perplexity   %.2f\n", r->e.usage.perplexity);
    printf("  dead codes   %lld\n", (long long)r->e.usage.dead_codes);
    printf("  quant error  %.6g   (mean (z - x_q)^2 per element)\n", r->e.quant_error);
    printf("  time         %.2f s (%.1f images/s)\n", r->seconds,
           r->seconds > 0 ? (double)r->e.images / r->seconds : 0.0);
}

static int write_json(const results *r, const char *path)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        fprintf(stderr, "optvq eval: out of memory\n");
        return 1;
    }
    cJSON_AddStringToObject(o, "model", r->model);
    cJSON_AddStringToObject(o, "data", r->data);
    cJSON_AddNumberToObject(o, "images", (double)r->e.images);
    cJSON_AddNumberToObject(o, "channels", (double)r->c);
    cJSON_AddNumberToObject(o, "height", (double)r->h);
    cJSON_AddNumberToObject(o, "width", (double)r->w);
    cJSON_AddStringToObject(o, "assign", r->assign);
    cJSON_AddStringToObject(o, "precision", r->precision);
    cJSON_AddNumberToObject(o, "batch_size", (double)r->e.batch_size);
    cJSON_AddNumberToObject(o, "psnr", r->e.psnr);
    cJSON_AddNumberToObject(o, "psnr_min", r->e.psnr_min);
    cJSON_AddNumberToObject(o, "psnr_max", r->e.psnr_max);
    cJSON_AddNumberToObject(o, "ssim", r->e.ssim);
    cJSON_AddNumberToObject(o, "ssim_min", r->e.ssim_min);
    cJSON_AddNumberToObject(o, "ssim_max", r->e.ssim_max);
    cJSON *skipped = cJSON_CreateObject();
    if (isfinite(r->e.lpips)) {
        cJSON_AddNumberToObject(o, "lpips", r->e.lpips);
    } else {
        cJSON_AddNullToObject(o, "lpips");
        cJSON_AddStringToObject(skipped, "lpips", r->e.lpips_skip);
    }
    if (isfinite(r->e.fid)) {
        cJSON_AddNumberToObject(o, "fid", r->e.fid);
    } else {
        cJSON_AddNullToObject(o, "fid");
        cJSON_AddStringToObject(skipped, "fid", r->e.fid_skip);
    }
    cJSON_AddItemToObject(o, "skipped", skipped);
    cJSON_AddNumberToObject(o, "n_e", (double)r->e.usage.n_e);
    cJSON_AddNumberToObject(o, "codes_used", (double)r->e.usage.codes_used);
    cJSON_AddNumberToObject(o, "usage", r->e.usage.fraction_used);
    cJSON_AddNumberToObject(o, "perplexity", r->e.usage.perplexity);
    cJSON_AddNumberToObject(o, "dead_codes", (double)r->e.usage.dead_codes);
    cJSON_AddNumberToObject(o, "tokens", (double)r->e.tokens);
    cJSON_AddNumberToObject(o, "quant_error", r->e.quant_error);
    cJSON_AddNumberToObject(o, "seconds", r->seconds);
    return cli_write_json("eval", path, o);
}

/* ---- the command ---- */

typedef struct progress_ctx {
    double t0;
} progress_ctx;

static void show_progress(void *ctx, int64_t done, int64_t total)
{
    cli_progress("eval", "img", done, total, ((progress_ctx *)ctx)->t0);
}

int cmd_eval(int argc, char **argv)
{
    cli_opt opts[] = {{"model", 1, 0}, {"config", 1, 0}, {"weights", 1, 0}, {"data", 1, 0},
                      {"assign", 1, 0}, {"json", 1, 0},   {"batch-size", 1, 0}, {"limit", 1, 0},
                      {"threads", 1, 0}, {"init-random", 1, 0},
                      {"lpips", 1, 0}, {"fid-weights", 1, 0}, {"precision", 1, 0}, {0, 0, 0}};
    int pr = cli_parse("eval", argc, argv, opts);
    if (pr == 1) {
        fputs(HELP, stdout);
        return 0;
    }
    if (pr < 0)
        return 2;
    const char *dir = cli_get(opts, "model"), *cfg = cli_get(opts, "config"), *wts = cli_get(opts, "weights");
    const char *data = cli_get(opts, "data"), *json = cli_get(opts, "json");
    const char *init = cli_get(opts, "init-random");
    if (!dir == !cfg || (cfg && !wts == !init) || (dir && (wts || init))) {
        fprintf(stderr, "optvq eval: give --model DIR, or --config CFG with --weights FILE or --init-random SEED\n");
        return 2;
    }
    if (!data) {
        fprintf(stderr, "optvq eval: --data is required (see --help)\n");
        return 2;
    }
    if (json && !cli_ends_with(json, ".json")) {
        fprintf(stderr, "optvq eval: --json %s: name the file OUT.json\n", json);
        return 2;
    }
    /* under mpirun: one job over the ranks, each evaluating its share; rank 0
       alone prepares and writes the output */
    optvq_comm comm = {0};
    if (mpi_comm_launched())
        mpi_comm_fill(&comm);
    const int rank = comm.n_ranks > 1 ? comm.rank : 0;
    if (json && rank == 0 && cli_prepare_output("eval", json, 0))
        return 1;
    static const char *const assigns[] = {"sinkhorn", "nearest", NULL};
    int assign = -1;
    int64_t threads = 0, batch_size = 0, limit = 0, seed = 0;
    if (cli_get_choice("eval", opts, "assign", assigns, &assign) ||
        cli_get_int("eval", opts, "threads", 0, 4096, &threads) ||
        cli_get_int("eval", opts, "batch-size", 1, 1 << 20, &batch_size) ||
        cli_get_int("eval", opts, "limit", 1, INT64_MAX, &limit) ||
        cli_get_int("eval", opts, "init-random", 0, INT64_MAX, &seed))
        return 2;
    optvq_set_num_threads((int)threads);

    optvq_model *m = NULL;
    optvq_status st = init ? optvq_model_create(cfg, (uint64_t)seed, &m)
                           : optvq_model_load(dir ? dir : cfg, dir ? NULL : wts, &m);
    if (st != OPTVQ_OK) {
        if (rank == 0) /* every rank meets the same problem */
            fprintf(stderr, "optvq eval: %s\n", optvq_last_error());
        return 1;
    }
    if (assign >= 0)
        optvq_model_set_assign(m, (optvq_assign)assign);
    if (cli_set_precision("eval", opts, m)) {
        optvq_model_free(m);
        return 2;
    }
    optvq_model_info info;
    optvq_model_get_info(m, &info);
    if (!batch_size)
        batch_size = info.resolution <= 32 ? 1024 : 8; /* the reference configs' test_batch_size */

    int rc = 1;
    dataset src;
    memset(&src, 0, sizeof src);
    cli_perceptual perc;
    if (cli_perceptual_open(&perc, "eval", cli_get(opts, "lpips"), cli_get(opts, "fid-weights"))) {
        optvq_model_free(m);
        return 1;
    }
    dataset_options dopt = {.channels = info.in_channels, .resolution = info.resolution,
                            .multiple = info.downsample, .limit = limit};
    /* the metrics compare with the originals, so a .npy must hold images in [-1, 1] */
    if (dataset_open(data, &dopt, &src) != OPTVQ_OK || dataset_check_range(&src) != OPTVQ_OK) {
        if (rank == 0) /* every rank meets the same problem */
            fprintf(stderr, "optvq eval: %s\n", optvq_last_error());
        goto done;
    }
    if (src.from_u8 && rank == 0)
        fprintf(stderr, "optvq eval: %s: uint8 images mapped to [-1, 1] as (x/255 - 0.5)/0.5\n", src.what);
    results r = {0};
    r.model = dir ? dir : cfg;
    r.data = src.what;
    r.c = src.c;
    r.h = src.h;
    r.w = src.w;
    r.precision = cli_precision_name(optvq_model_get_precision(m));
    r.assign = optvq_quantizer_get_config(optvq_model_quantizer(m))->assign == OPTVQ_ASSIGN_SINKHORN ? "sinkhorn"
                                                                                                    : "nearest";
    eval_source es = {.name = src.what, .n = src.n, .c = src.c, .h = src.h, .w = src.w,
                      .images = src.images, .fill = fill_from_dataset, .ctx = &src};
    progress_ctx pc = {cli_now()};
    eval_options eo = {.batch_size = batch_size, .lpips = perc.lpips, .fid = perc.fid, .comm = &comm,
                       .progress = rank == 0 ? show_progress : NULL, .progress_ctx = &pc};
    if (eval_run(m, &es, &eo, &r.e) != OPTVQ_OK) {
        if (rank == 0 || !r.e.failed_elsewhere) /* one message, from the rank that met the problem */
            fprintf(stderr, "optvq eval: %s\n", optvq_last_error());
        goto done;
    }
    r.seconds = cli_now() - pc.t0;
    rc = 0;
    if (rank == 0) { /* one table and one file for the whole job */
        print_table(&r);
        rc = json ? write_json(&r, json) : 0;
        if (json && !rc)
            printf("optvq eval: wrote %s\n", json);
    }
done:
    cli_perceptual_free(&perc);
    dataset_free(&src);
    optvq_model_free(m);
    return rc;
}
