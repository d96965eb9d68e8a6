/* optvq eval: a model's reconstruction quality and codebook usage on a data
 * set, as the paper reports them (PSNR / SSIM per image as pyiqa computes
 * them, see src/eval/metrics.h; codebook usage over the whole set). */
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/perceptual.h"
#include "cli/util.h"
#include "core/atomic_file.h"
#include "eval/eval_model.h"
#include "eval/metrics.h"
#include "io/image.h"
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

#define EVAL_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

static const char *const HELP =
    "NAME\n"
    "    optvq eval - a model's reconstruction quality and codebook usage on a data set\n"
    "\n"
    "SYNOPSIS\n"
    "    optvq eval MODEL --data D [--assign sinkhorn|nearest] [--json OUT.json]\n"
    "               [--lpips ALEX[,HEADS]] [--fid-weights W]\n"
    "               [--batch-size N] [--limit N] [--threads T]\n"
    "\n"
    "DESCRIPTION\n"
    "    Reconstructs every image of D and reports PSNR, SSIM, codebook usage,\n"
    "    perplexity, dead codes and the mean quantization error, and LPIPS and rFID\n"
    "    when their weights are given: a table on stdout and, with --json, the same\n"
    "    as a JSON object. A metric that is not computed is reported as skipped,\n"
    "    with the reason.\n"
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
    "    FILE.npy          images (B, C, H, W) in [-1, 1], used as they are\n"
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
    "    --threads T       threads (default 0: all cores)\n"
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

/* ---- the data: images in [-1, 1], filled a batch at a time ---- */

typedef enum { SRC_NPY, SRC_IDX, SRC_FILES } source_kind;

typedef struct source {
    source_kind kind;
    char what[4200]; /* for messages and the report */
    int64_t n, c, h, w;
    optvq_array npy;
    optvq_idx idx;
    char **paths;
    int64_t n_paths;
    char *single; /* one image file */
} source;

static void source_free(source *s)
{
    if (s->kind == SRC_NPY)
        optvq_array_free(&s->npy);
    else if (s->kind == SRC_IDX)
        optvq_idx_free(&s->idx);
    else if (s->paths)
        optvq_image_list_free(s->paths, s->n_paths);
    free(s->single);
    memset(s, 0, sizeof *s);
}

/* Opens D for a model of `channels` input channels and resolution `res`;
 * prints a one-line error and returns 1 on failure. */
static int source_open(source *s, const char *d, int64_t channels, int64_t res, int64_t limit)
{
    memset(s, 0, sizeof *s);
    struct stat st;
    const char *idx_path = NULL;
    char fm[4096];
    if (!strcmp(d, "fashion-mnist") || !strcmp(d, "fashion-mnist:test") || !strcmp(d, "fashion-mnist:train")) {
        snprintf(fm, sizeof fm, "%s/%s-images-idx3-ubyte.gz", EVAL_FASHION_MNIST_DIR,
                 strcmp(d, "fashion-mnist:train") ? "t10k" : "train");
        if (stat(fm, &st) != 0) {
            fprintf(stderr, "optvq eval: %s: not found (apt-get install dataset-fashion-mnist)\n", fm);
            return 1;
        }
        idx_path = fm;
    } else if (stat(d, &st) != 0) {
        fprintf(stderr, "optvq eval: %s: no such file or folder (want a folder of images, a .npy, an IDX file or "
                        "fashion-mnist)\n", d);
        return 1;
    } else if (!S_ISDIR(st.st_mode) && (cli_ends_with(d, ".gz") || strstr(d, "idx3-ubyte"))) {
        idx_path = d;
    }
    if (idx_path) {
        s->kind = SRC_IDX;
        snprintf(s->what, sizeof s->what, "%s", idx_path);
        if (optvq_idx_read_images(idx_path, limit, &s->idx) != OPTVQ_OK) {
            fprintf(stderr, "optvq eval: %s\n", optvq_last_error());
            return 1;
        }
        if (channels != 1) {
            fprintf(stderr, "optvq eval: %s: the IDX images are grey but the model takes %lld channels\n", idx_path,
                    (long long)channels);
            return 1;
        }
        int oh, ow;
        optvq_image_plain_dims((int)s->idx.dims[1], (int)s->idx.dims[2], (int)res, &oh, &ow);
        if (oh != res || ow != res) {
            fprintf(stderr, "optvq eval: %s: %lldx%lld images do not resize to the model's %lldx%lld\n", idx_path,
                    (long long)s->idx.dims[1], (long long)s->idx.dims[2], (long long)res, (long long)res);
            return 1;
        }
        s->n = s->idx.dims[0];
        s->c = 1;
        s->h = s->w = res;
        return 0;
    }
    snprintf(s->what, sizeof s->what, "%s", d);
    if (!S_ISDIR(st.st_mode) && cli_ends_with(d, ".npy")) {
        s->kind = SRC_NPY;
        if (optvq_npy_read(d, &s->npy) != OPTVQ_OK || optvq_array_to_f32(&s->npy) != OPTVQ_OK) {
            fprintf(stderr, "optvq eval: %s\n", optvq_last_error());
            return 1;
        }
        const optvq_array *a = &s->npy;
        if (a->ndim != 4 || a->shape[1] != channels || a->shape[0] < 1) {
            fprintf(stderr, "optvq eval: %s: expected images (B, %lld, H, W), got shape (", d, (long long)channels);
            for (int i = 0; i < a->ndim; i++)
                fprintf(stderr, "%s%lld", i ? ", " : "", (long long)a->shape[i]);
            fprintf(stderr, ")\n");
            return 1;
        }
        s->n = limit > 0 && limit < a->shape[0] ? limit : a->shape[0];
        s->c = a->shape[1];
        s->h = a->shape[2];
        s->w = a->shape[3];
        const float *v = a->data;
        for (int64_t i = 0, n = s->n * s->c * s->h * s->w; i < n; i++)
            if (!(v[i] >= -1.001f && v[i] <= 1.001f)) {
                fprintf(stderr, "optvq eval: %s: element %lld is %g; images must lie in [-1, 1]\n", d, (long long)i,
                        (double)v[i]);
                return 1;
            }
        return 0;
    }
    s->kind = SRC_FILES;
    if (S_ISDIR(st.st_mode)) {
        if (optvq_image_list_folder(d, &s->paths, &s->n_paths) != OPTVQ_OK) {
            fprintf(stderr, "optvq eval: %s\n", optvq_last_error());
            return 1;
        }
        if (s->n_paths == 0) {
            fprintf(stderr, "optvq eval: %s: no .png/.jpg/.jpeg images in the folder\n", d);
            return 1;
        }
        s->n = s->n_paths;
    } else if (cli_ends_with(d, ".png") || cli_ends_with(d, ".jpg") || cli_ends_with(d, ".jpeg")) {
        s->single = strdup(d);
        s->n = 1;
    } else {
        fprintf(stderr, "optvq eval: %s: not a folder of images, a .png/.jpg, a .npy or an IDX file\n", d);
        return 1;
    }
    if (limit > 0 && limit < s->n)
        s->n = limit;
    s->c = channels;
    s->h = s->w = res;
    return 0;
}

/* Images [i0, i0 + n) into dst (n, c, h, w). */
static int source_fill(source *s, int64_t i0, int64_t n, float *dst)
{
    const int64_t per = s->c * s->h * s->w;
    if (s->kind == SRC_NPY) {
        memcpy(dst, (const float *)s->npy.data + i0 * per, (size_t)(n * per) * sizeof(float));
        return 0;
    }
    for (int64_t i = 0; i < n; i++) {
        optvq_status st;
        if (s->kind == SRC_IDX) {
            optvq_image_u8 im = optvq_idx_image(&s->idx, i0 + i);
            st = optvq_image_plain_preprocess(&im, (int)s->h, dst + i * per);
        } else {
            const char *p = s->single ? s->single : s->paths[i0 + i];
            st = optvq_image_load_val(p, (int)s->h, (int)s->c, dst + i * per);
        }
        if (st != OPTVQ_OK) {
            fprintf(stderr, "optvq eval: %s\n", optvq_last_error());
            return 1;
        }
    }
    return 0;
}

/* ---- results ---- */

typedef struct results {
    const char *model, *data;
    int64_t images, c, h, w, batch_size, tokens;
    const char *assign;
    metrics_acc acc;
    optvq_usage usage;
    double quant_error, seconds;
    double lpips, fid; /* NaN: skipped (the reasons are in perc) */
    const cli_perceptual *perc;
} results;

static void print_table(const results *r)
{
    printf("optvq eval\n");
    printf("  model        %s\n", r->model);
    printf("  data         %s\n", r->data);
    printf("  images       %lld (%lld x %lld x %lld)\n", (long long)r->images, (long long)r->c, (long long)r->h,
           (long long)r->w);
    printf("  assign       %s (batch %lld)\n", r->assign, (long long)r->batch_size);
    printf("  PSNR         %.4f dB   (min %.2f, max %.2f; %s)\n", metrics_acc_psnr(&r->acc), r->acc.psnr_min,
           r->acc.psnr_max, r->c == 3 ? "Y of BT.601 YCbCr" : "grey values");
    printf("  SSIM         %.6f    (min %.4f, max %.4f; %s, 11x11 Gaussian)\n", metrics_acc_ssim(&r->acc),
           r->acc.ssim_min, r->acc.ssim_max, r->c == 3 ? "Y of YIQ" : "grey");
    if (isfinite(r->lpips))
        printf("  LPIPS        %.6f    (AlexNet, v0.1)\n", r->lpips);
    else
        printf("  LPIPS        skipped: %s\n", r->perc->lpips_skip);
    if (isfinite(r->fid))
        printf("  rFID         %.4f     (InceptionV3 pool features, %lld images)\n", r->fid, (long long)r->images);
    else
        printf("  rFID         skipped: %s\n", r->perc->fid_skip);
    printf("  codes used   %lld / %lld (%.2f%%) over %lld tokens\n", (long long)r->usage.codes_used,
           (long long)r->usage.n_e, 100.0 * r->usage.fraction_used, (long long)r->tokens);
    printf("  perplexity   %.2f\n", r->usage.perplexity);
    printf("  dead codes   %lld\n", (long long)r->usage.dead_codes);
    printf("  quant error  %.6g   (mean (z - x_q)^2 per element)\n", r->quant_error);
    printf("  time         %.2f s (%.1f images/s)\n", r->seconds,
           r->seconds > 0 ? (double)r->images / r->seconds : 0.0);
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
    cJSON_AddNumberToObject(o, "images", (double)r->images);
    cJSON_AddNumberToObject(o, "channels", (double)r->c);
    cJSON_AddNumberToObject(o, "height", (double)r->h);
    cJSON_AddNumberToObject(o, "width", (double)r->w);
    cJSON_AddStringToObject(o, "assign", r->assign);
    cJSON_AddNumberToObject(o, "batch_size", (double)r->batch_size);
    cJSON_AddNumberToObject(o, "psnr", metrics_acc_psnr(&r->acc));
    cJSON_AddNumberToObject(o, "psnr_min", r->acc.psnr_min);
    cJSON_AddNumberToObject(o, "psnr_max", r->acc.psnr_max);
    cJSON_AddNumberToObject(o, "ssim", metrics_acc_ssim(&r->acc));
    cJSON_AddNumberToObject(o, "ssim_min", r->acc.ssim_min);
    cJSON_AddNumberToObject(o, "ssim_max", r->acc.ssim_max);
    cJSON *skipped = cJSON_CreateObject();
    if (isfinite(r->lpips)) {
        cJSON_AddNumberToObject(o, "lpips", r->lpips);
    } else {
        cJSON_AddNullToObject(o, "lpips");
        cJSON_AddStringToObject(skipped, "lpips", r->perc->lpips_skip);
    }
    if (isfinite(r->fid)) {
        cJSON_AddNumberToObject(o, "fid", r->fid);
    } else {
        cJSON_AddNullToObject(o, "fid");
        cJSON_AddStringToObject(skipped, "fid", r->perc->fid_skip);
    }
    cJSON_AddItemToObject(o, "skipped", skipped);
    cJSON_AddNumberToObject(o, "n_e", (double)r->usage.n_e);
    cJSON_AddNumberToObject(o, "codes_used", (double)r->usage.codes_used);
    cJSON_AddNumberToObject(o, "usage", r->usage.fraction_used);
    cJSON_AddNumberToObject(o, "perplexity", r->usage.perplexity);
    cJSON_AddNumberToObject(o, "dead_codes", (double)r->usage.dead_codes);
    cJSON_AddNumberToObject(o, "tokens", (double)r->tokens);
    cJSON_AddNumberToObject(o, "quant_error", r->quant_error);
    cJSON_AddNumberToObject(o, "seconds", r->seconds);
    return cli_write_json("eval", path, o);
}

/* ---- the command ---- */

int cmd_eval(int argc, char **argv)
{
    cli_opt opts[] = {{"model", 1, 0}, {"config", 1, 0}, {"weights", 1, 0}, {"data", 1, 0},
                      {"assign", 1, 0}, {"json", 1, 0},   {"batch-size", 1, 0}, {"limit", 1, 0},
                      {"threads", 1, 0}, {"init-random", 1, 0},
                      {"lpips", 1, 0}, {"fid-weights", 1, 0}, {0, 0, 0}};
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
    if (json && cli_prepare_output("eval", json, 0))
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
        fprintf(stderr, "optvq eval: %s\n", optvq_last_error());
        return 1;
    }
    if (assign >= 0)
        optvq_model_set_assign(m, (optvq_assign)assign);
    optvq_model_info info;
    optvq_model_get_info(m, &info);
    if (!batch_size)
        batch_size = info.resolution <= 32 ? 1024 : 8; /* the reference configs' test_batch_size */

    int rc = 1;
    source src;
    memset(&src, 0, sizeof src);
    cli_perceptual perc;
    float *unit0 = NULL, *unit1 = NULL; /* [0, 1] images for LPIPS / rFID */
    if (cli_perceptual_open(&perc, "eval", cli_get(opts, "lpips"), cli_get(opts, "fid-weights"))) {
        optvq_model_free(m);
        return 1;
    }
    const int want_perc = perc.lpips || perc.fid;
    float *imgs = NULL, *recon = NULL;
    int64_t *tokens = NULL, *hist = NULL;
    double *psnr = NULL, *ssim = NULL;
    if (source_open(&src, data, info.in_channels, info.resolution, limit))
        goto done;
    const int64_t f = info.downsample;
    if (src.h % f || src.w % f || src.h < f || src.w < f) {
        fprintf(stderr, "optvq eval: %s: %lldx%lld images; the model needs sides that are multiples of %lld\n",
                src.what, (long long)src.h, (long long)src.w, (long long)f);
        goto done;
    }
    if (src.h < METRICS_SSIM_WIN || src.w < METRICS_SSIM_WIN) {
        fprintf(stderr, "optvq eval: %s: %lldx%lld images; SSIM needs at least %dx%d\n", src.what, (long long)src.h,
                (long long)src.w, METRICS_SSIM_WIN, METRICS_SSIM_WIN);
        goto done;
    }
    if (info.out_channels != info.in_channels) {
        fprintf(stderr, "optvq eval: the model maps %lld channels to %lld; cannot compare\n",
                (long long)info.in_channels, (long long)info.out_channels);
        goto done;
    }
    if (batch_size > src.n)
        batch_size = src.n;
    const int64_t per = src.c * src.h * src.w, lh = src.h / f, lw = src.w / f;
    const int64_t per_tok = info.num_head * lh * lw;
    imgs = malloc((size_t)(batch_size * per) * sizeof(float));
    recon = malloc((size_t)(batch_size * per) * sizeof(float));
    tokens = malloc((size_t)(batch_size * per_tok) * sizeof(int64_t));
    hist = calloc((size_t)info.n_e, sizeof(int64_t));
    psnr = malloc((size_t)batch_size * sizeof(double));
    ssim = malloc((size_t)batch_size * sizeof(double));
    if (want_perc) {
        unit0 = malloc((size_t)(batch_size * per) * sizeof(float));
        unit1 = malloc((size_t)(batch_size * per) * sizeof(float));
    }
    if (!imgs || !recon || !tokens || !hist || !psnr || !ssim || (want_perc && (!unit0 || !unit1))) {
        fprintf(stderr, "optvq eval: out of memory for a batch of %lld images\n", (long long)batch_size);
        goto done;
    }
    results r = {0};
    r.model = dir ? dir : cfg;
    r.data = src.what;
    r.images = src.n;
    r.c = src.c;
    r.h = src.h;
    r.w = src.w;
    r.batch_size = batch_size;
    r.assign = optvq_quantizer_get_config(optvq_model_quantizer(m))->assign == OPTVQ_ASSIGN_SINKHORN ? "sinkhorn"
                                                                                                    : "nearest";
    metrics_acc_init(&r.acc);
    double sq_sum = 0, t0 = cli_now();
    int64_t sq_count = 0;
    for (int64_t i = 0; i < src.n; i += batch_size) {
        const int64_t n = src.n - i < batch_size ? src.n - i : batch_size;
        if (source_fill(&src, i, n, imgs))
            goto done;
        double sq;
        int64_t cnt;
        if (eval_model_batch(m, imgs, n, src.h, src.w, recon, tokens, &sq, &cnt) != OPTVQ_OK ||
            metrics_batch_signed(imgs, recon, n, (int)src.c, (int)src.h, (int)src.w, psnr, ssim) != OPTVQ_OK) {
            fprintf(stderr, "optvq eval: images %lld..%lld: %s\n", (long long)i, (long long)(i + n - 1),
                    optvq_last_error());
            goto done;
        }
        if (want_perc) { /* the reference's (x + 1) / 2, clamped, as for PSNR / SSIM */
            metrics_recover(imgs, n * per, unit0);
            metrics_recover(recon, n * per, unit1);
            if (cli_perceptual_add(&perc, "eval", unit0, unit1, n, (int)src.c, src.h, src.w, NULL))
                goto done;
        }
        sq_sum += sq;
        sq_count += cnt;
        for (int64_t k = 0; k < n * per_tok; k++) {
            if (tokens[k] < 0 || tokens[k] >= info.n_e) {
                fprintf(stderr, "optvq eval: code %lld outside [0, %lld)\n", (long long)tokens[k],
                        (long long)info.n_e);
                goto done;
            }
            hist[tokens[k]]++;
        }
        for (int64_t k = 0; k < n; k++)
            metrics_acc_add(&r.acc, psnr[k], ssim[k]);
        cli_progress("eval", "img", i + n, src.n, t0);
    }
    r.seconds = cli_now() - t0;
    r.tokens = src.n * per_tok;
    r.quant_error = sq_count ? sq_sum / (double)sq_count : NAN;
    if (eval_usage_from_histogram(hist, info.n_e, &r.usage) != OPTVQ_OK) {
        fprintf(stderr, "optvq eval: %s\n", optvq_last_error());
        goto done;
    }
    r.perc = &perc;
    if (cli_perceptual_finish(&perc, "eval", &r.lpips, &r.fid))
        goto done;
    print_table(&r);
    rc = json ? write_json(&r, json) : 0;
    if (json && !rc)
        printf("optvq eval: wrote %s\n", json);
done:
    cli_perceptual_free(&perc);
    free(unit0);
    free(unit1);
    free(imgs);
    free(recon);
    free(tokens);
    free(hist);
    free(psnr);
    free(ssim);
    source_free(&src);
    optvq_model_free(m);
    return rc;
}
