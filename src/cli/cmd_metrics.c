/* optvq metrics A B: the paper's image metrics between two images or two
 * folders of images paired by file name (any tokenizer's outputs). */
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/perceptual.h"
#include "cli/util.h"
#include "core/atomic_file.h"
#include "eval/metrics.h"
#include "io/image.h"
#include "optvq/optvq.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const HELP =
    "NAME\n"
    "    optvq metrics - PSNR, SSIM, LPIPS and FID between two images or two folders\n"
    "\n"
    "SYNOPSIS\n"
    "    optvq metrics A B [--lpips ALEX[,HEADS]] [--fid-weights W] [--json OUT]\n"
    "                  [--threads T]\n"
    "\n"
    "DESCRIPTION\n"
    "    A and B: two images, or two folders of PNG/JPEG images paired by file name\n"
    "    (every name in A must be in B and the other way round; the two images of a\n"
    "    pair must have the same size). A holds the references (originals), B the\n"
    "    reconstructions. Images are read as RGB (grey replicated). Reports per pair\n"
    "    and as means over the pairs:\n"
    "    PSNR   on the Y of BT.601 YCbCr, 10 log10(1 / (mse + 1e-8))   (as optvq eval)\n"
    "    SSIM   on the Y of YIQ rounded to 0..255, 11x11 Gaussian      (as optvq eval)\n"
    "    LPIPS  AlexNet, v0.1 (pyiqa's create_metric(\"lpips\")), with --lpips\n"
    "    and between the two folders\n"
    "    FID    pytorch-fid's (python -m pytorch_fid A B): InceptionV3 pool features\n"
    "           of every image resized to 299x299, Frechet distance; with --fid-weights\n"
    "    A metric whose weights are not given, or that cannot run on the input (LPIPS\n"
    "    needs 31x31 or more, FID 2 images or more per folder), is reported as\n"
    "    skipped, with the reason.\n"
    "\n"
    "OPTIONS\n"
    "    --lpips ALEX[,HEADS]\n"
    "                      torchvision's alexnet-owt-7be5be79.pth and lpips's\n"
    "                      weights/v0.1/alex.pth (= pyiqa's LPIPS_v0.1_alex-*.pth), or\n"
    "                      one file holding a whole LPIPS state dict\n"
    "    --fid-weights W   pytorch-fid's pt_inception-2015-12-05-6726825d.pth\n"
    "    --json OUT        also write the results as JSON (keys psnr, ssim, lpips, fid,\n"
    "                      count, skipped, pairs; null for a skipped metric)\n"
    "    --threads T       threads (default 0: all cores)\n"
    "    --help            this text\n"
    "\n"
    "EXAMPLES\n"
    "    optvq metrics originals/ recons/\n"
    "    optvq metrics originals/ recons/ --lpips alexnet-owt-7be5be79.pth,alex.pth \\\n"
    "        --fid-weights pt_inception-2015-12-05-6726825d.pth --json metrics.json\n"
    "\n"
    "EXIT STATUS\n"
    "    0 success, 1 runtime failure (an unreadable image or weight file, unpaired\n"
    "    names, sizes that differ; named in a one-line message), 2 usage error.\n";

typedef struct pair_result {
    const char *name;
    double psnr, ssim, lpips;
} pair_result;

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* Lists the pairs: *a_paths / *b_paths (n each), malloc'd; 1 on error (printed). */
static int list_pairs(const char *a, const char *b, char ***pa, char ***pb, int64_t *n)
{
    *pa = *pb = NULL;
    *n = 0;
    const int da = cli_is_dir(a), db = cli_is_dir(b);
    if (da != db) {
        fprintf(stderr, "optvq metrics: %s and %s: give two images or two folders\n", a, b);
        return 1;
    }
    if (!da) {
        *pa = malloc(sizeof(char *));
        *pb = malloc(sizeof(char *));
        if (!*pa || !*pb)
            return 1;
        (*pa)[0] = strdup(a);
        (*pb)[0] = strdup(b);
        *n = 1;
        return !(*pa)[0] || !(*pb)[0];
    }
    char **la = NULL, **lb = NULL;
    int64_t na = 0, nb = 0;
    if (optvq_image_list_folder(a, &la, &na) != OPTVQ_OK || optvq_image_list_folder(b, &lb, &nb) != OPTVQ_OK) {
        fprintf(stderr, "optvq metrics: %s\n", optvq_last_error());
        optvq_image_list_free(la, na);
        return 1;
    }
    int rc = 1;
    if (na == 0) {
        fprintf(stderr, "optvq metrics: %s: no .png/.jpg/.jpeg images in the folder\n", a);
        goto done;
    }
    /* both lists are sorted by name: walk them together */
    int64_t i = 0, j = 0;
    while (i < na || j < nb) {
        int c = i >= na ? 1 : j >= nb ? -1 : strcmp(base_name(la[i]), base_name(lb[j]));
        if (c != 0) {
            fprintf(stderr, "optvq metrics: %s has no partner in %s\n", c < 0 ? la[i] : lb[j], c < 0 ? b : a);
            goto done;
        }
        i++;
        j++;
    }
    *pa = la;
    *pb = lb;
    *n = na;
    la = lb = NULL;
    rc = 0;
done:
    optvq_image_list_free(la, na);
    optvq_image_list_free(lb, nb);
    return rc;
}

static void add_number_or_null(cJSON *o, const char *key, double v)
{
    if (isfinite(v))
        cJSON_AddNumberToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

static int write_json(const char *path, const pair_result *r, int64_t n, double psnr, double ssim, double lpips,
                      double fid, const cli_perceptual *pc)
{
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_CreateArray(), *skipped = cJSON_CreateObject();
    if (!o || !arr || !skipped) {
        fprintf(stderr, "optvq metrics: out of memory\n");
        return 1;
    }
    cJSON_AddNumberToObject(o, "count", (double)n);
    add_number_or_null(o, "psnr", psnr);
    add_number_or_null(o, "ssim", ssim);
    add_number_or_null(o, "lpips", lpips);
    add_number_or_null(o, "fid", fid);
    if (!isfinite(lpips))
        cJSON_AddStringToObject(skipped, "lpips", pc->lpips_skip);
    if (!isfinite(fid))
        cJSON_AddStringToObject(skipped, "fid", pc->fid_skip);
    cJSON_AddItemToObject(o, "skipped", skipped);
    for (int64_t i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", r[i].name);
        add_number_or_null(e, "psnr", r[i].psnr);
        add_number_or_null(e, "ssim", r[i].ssim);
        add_number_or_null(e, "lpips", r[i].lpips);
        cJSON_AddItemToArray(arr, e);
    }
    cJSON_AddItemToObject(o, "pairs", arr);
    return cli_write_json("metrics", path, o);
}

int cmd_metrics(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(HELP, stdout);
        return 0;
    }
    if (argc < 3 || !strncmp(argv[1], "--", 2) || !strncmp(argv[2], "--", 2)) {
        fprintf(stderr, "optvq metrics: give two images or two folders first: optvq metrics A B [options]\n");
        return 2;
    }
    cli_opt opts[] = {{"lpips", 1, 0}, {"fid-weights", 1, 0}, {"json", 1, 0}, {"threads", 1, 0}, {0, 0, 0}};
    int pr = cli_parse("metrics", argc - 2, argv + 2, opts); /* argv[2] plays argv[0] */
    if (pr == 1) {
        fputs(HELP, stdout);
        return 0;
    }
    if (pr < 0)
        return 2;
    int64_t threads = 0;
    if (cli_get_int("metrics", opts, "threads", 0, 4096, &threads))
        return 2;
    optvq_set_num_threads((int)threads);
    const char *json = cli_get(opts, "json");
    if (json && cli_prepare_output("metrics", json, 0))
        return 1;

    char **pa = NULL, **pb = NULL;
    int64_t n = 0;
    if (list_pairs(argv[1], argv[2], &pa, &pb, &n))
        return 1;
    int rc = 1;
    pair_result *res = calloc((size_t)n, sizeof *res);
    cli_perceptual pc;
    memset(&pc, 0, sizeof pc);
    if (!res) {
        fprintf(stderr, "optvq metrics: out of memory\n");
        goto done;
    }
    if (cli_perceptual_open(&pc, "metrics", cli_get(opts, "lpips"), cli_get(opts, "fid-weights")))
        goto done;
    metrics_acc acc;
    metrics_acc_init(&acc);
    const double t0 = cli_now();
    for (int64_t i = 0; i < n; i++) {
        optvq_image_f32 a = {0}, b = {0};
        if (optvq_image_read(pa[i], 3, &a) != OPTVQ_OK || optvq_image_read(pb[i], 3, &b) != OPTVQ_OK) {
            fprintf(stderr, "optvq metrics: %s\n", optvq_last_error());
            optvq_image_f32_free(&a);
            goto done;
        }
        res[i].name = base_name(pa[i]);
        int bad = a.width != b.width || a.height != b.height;
        if (bad)
            fprintf(stderr, "optvq metrics: %s is %dx%d but %s is %dx%d\n", pa[i], a.width, a.height, pb[i],
                    b.width, b.height);
        else if (a.width < METRICS_SSIM_WIN || a.height < METRICS_SSIM_WIN) {
            fprintf(stderr, "optvq metrics: %s: %dx%d; SSIM needs at least %dx%d\n", pa[i], a.width, a.height,
                    METRICS_SSIM_WIN, METRICS_SSIM_WIN);
            bad = 1;
        } else if (metrics_psnr(a.data, b.data, 3, a.height, a.width, &res[i].psnr) != OPTVQ_OK ||
                   metrics_ssim(a.data, b.data, 3, a.height, a.width, &res[i].ssim) != OPTVQ_OK) {
            fprintf(stderr, "optvq metrics: %s: %s\n", pa[i], optvq_last_error());
            bad = 1;
        } else {
            bad = cli_perceptual_add(&pc, "metrics", a.data, b.data, 1, 3, a.height, a.width, &res[i].lpips);
        }
        optvq_image_f32_free(&a);
        optvq_image_f32_free(&b);
        if (bad)
            goto done;
        metrics_acc_add(&acc, res[i].psnr, res[i].ssim);
        cli_progress("metrics", "img", i + 1, n, t0);
    }
    double lpips = NAN, fid = NAN;
    if (cli_perceptual_finish(&pc, "metrics", &lpips, &fid))
        goto done;
    printf("%-32s %10s %10s %10s\n", "pair", "PSNR", "SSIM", "LPIPS");
    for (int64_t i = 0; i < n; i++)
        printf("%-32s %10.4f %10.6f %10.6f\n", res[i].name, res[i].psnr, res[i].ssim, res[i].lpips);
    printf("mean over %lld pair(s):\n", (long long)n);
    printf("  PSNR   %.4f dB\n", metrics_acc_psnr(&acc));
    printf("  SSIM   %.6f\n", metrics_acc_ssim(&acc));
    if (isfinite(lpips))
        printf("  LPIPS  %.6f   (AlexNet, v0.1)\n", lpips);
    else
        printf("  LPIPS  skipped: %s\n", pc.lpips_skip);
    if (isfinite(fid))
        printf("  FID    %.4f   (InceptionV3 pool features, %lld vs %lld images)\n", fid, (long long)pc.fa.count,
               (long long)pc.fb.count);
    else
        printf("  FID    skipped: %s\n", pc.fid_skip);
    rc = json ? write_json(json, res, n, metrics_acc_psnr(&acc), metrics_acc_ssim(&acc), lpips, fid, &pc) : 0;
done:
    cli_perceptual_free(&pc);
    free(res);
    optvq_image_list_free(pa, n);
    optvq_image_list_free(pb, n);
    return rc;
}
