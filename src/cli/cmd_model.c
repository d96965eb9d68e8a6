/* optvq encode / decode / reconstruct / info: image tokenization with a model. */
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/util.h"
#include "io/image.h"
#include "optvq/optvq.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const MODEL_OPTIONS =
    "model (one of):\n"
    "  --model DIR            a folder with config.json + model.safetensors (Hugging Face layout)\n"
    "  --config CFG --weights FILE\n"
    "                         a YAML (reference) or JSON config, and .safetensors or .pth weights\n"
    "options:\n"
    "  --assign sinkhorn|nearest  assignment at inference (default: the config's quantizer;\n"
    "                         Sinkhorn runs over each batch, nearest is per image)\n"
    "  --batch-size N         images per batch (default 8)\n"
    "  --threads T            threads (default: all cores)\n";

static const char *const IMAGE_NOTE =
    "Images: a PNG/JPEG file, a folder of them (sorted by name), or a .npy array\n"
    "(B, C, H, W) in [-1, 1]. Image files are resized on the short side and centre-\n"
    "cropped to the model's resolution (the reference's validation preprocessing)\n"
    "and mapped to [-1, 1]. Outputs: a .npy file, a .png file (one image), or a\n"
    "folder that receives NAME.png per image.\n";

typedef struct model_cli {
    const char *cmd;
    optvq_model *model;
    optvq_model_info info;
    int64_t batch_size;
} model_cli;

static int open_model(model_cli *mc, const cli_opt *opts)
{
    const char *dir = cli_get(opts, "model"), *cfg = cli_get(opts, "config"), *w = cli_get(opts, "weights");
    if (!dir == !cfg || (cfg && !w) || (dir && w)) {
        fprintf(stderr, "optvq %s: give --model DIR, or --config CFG with --weights FILE\n", mc->cmd);
        return 2;
    }
    static const char *const assigns[] = {"sinkhorn", "nearest", NULL};
    int assign = -1;
    int64_t threads = 0;
    mc->batch_size = 8;
    if (cli_get_choice(mc->cmd, opts, "assign", assigns, &assign) ||
        cli_get_int(mc->cmd, opts, "threads", 0, 4096, &threads) ||
        cli_get_int(mc->cmd, opts, "batch-size", 1, 1 << 20, &mc->batch_size))
        return 2;
    optvq_set_num_threads((int)threads);
    if (optvq_model_load(dir ? dir : cfg, dir ? NULL : w, &mc->model) != OPTVQ_OK) {
        fprintf(stderr, "optvq %s: %s\n", mc->cmd, optvq_last_error());
        return 1;
    }
    if (assign >= 0)
        optvq_model_set_assign(mc->model, (optvq_assign)assign);
    optvq_model_get_info(mc->model, &mc->info);
    return 0;
}

/* Images (B, C, H, W) in [-1, 1] from a .npy, an image file or a folder. */
typedef struct images {
    float *data;
    int64_t b, c, h, w;
    char **names; /* base names without extension (NULL for .npy) */
} images;

static void images_free(images *im)
{
    free(im->data);
    if (im->names)
        for (int64_t i = 0; i < im->b; i++)
            free(im->names[i]);
    free(im->names);
    memset(im, 0, sizeof *im);
}

static char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    s = s ? s + 1 : path;
    char *n = strdup(s);
    char *dot = n ? strrchr(n, '.') : NULL;
    if (dot && dot != n)
        *dot = '\0';
    return n;
}

static int load_images(model_cli *mc, const char *in, images *im)
{
    memset(im, 0, sizeof *im);
    const int64_t C = mc->info.in_channels, R = mc->info.resolution;
    if (cli_ends_with(in, ".npy")) {
        optvq_array a;
        if (optvq_npy_read(in, &a) != OPTVQ_OK || optvq_array_to_f32(&a) != OPTVQ_OK) {
            fprintf(stderr, "optvq %s: %s\n", mc->cmd, optvq_last_error());
            return 1;
        }
        if (a.ndim != 4 || a.shape[1] != C || a.shape[0] < 1) {
            fprintf(stderr, "optvq %s: %s: expected images (B, %lld, H, W), got %d dimensions%s\n", mc->cmd, in,
                    (long long)C, a.ndim, a.ndim == 4 ? " with other channels" : "");
            optvq_array_free(&a);
            return 1;
        }
        int64_t n = optvq_array_numel(&a);
        const float *v = a.data;
        for (int64_t i = 0; i < n; i++)
            if (!(v[i] == v[i]) || v[i] > 1e30f || v[i] < -1e30f) {
                fprintf(stderr, "optvq %s: %s: NaN or Inf at element %lld\n", mc->cmd, in, (long long)i);
                optvq_array_free(&a);
                return 1;
            }
        im->data = a.data;
        im->b = a.shape[0];
        im->c = C;
        im->h = a.shape[2];
        im->w = a.shape[3];
        return 0;
    }
    char **paths = NULL;
    int64_t n = 0;
    char *single[1] = {(char *)in};
    if (cli_is_dir(in)) {
        if (optvq_image_list_folder(in, &paths, &n) != OPTVQ_OK) {
            fprintf(stderr, "optvq %s: %s\n", mc->cmd, optvq_last_error());
            return 1;
        }
        if (n == 0) {
            fprintf(stderr, "optvq %s: %s: no .png/.jpg/.jpeg images in the folder\n", mc->cmd, in);
            return 1;
        }
    } else {
        n = 1;
    }
    char **list = paths ? paths : single;
    im->b = n;
    im->c = C;
    im->h = im->w = R;
    im->data = malloc((size_t)(n * C * R * R) * sizeof(float));
    im->names = calloc((size_t)n, sizeof(char *));
    int rc = 0;
    if (!im->data || !im->names) {
        fprintf(stderr, "optvq %s: out of memory for %lld images\n", mc->cmd, (long long)n);
        rc = 1;
    }
    double t0 = cli_now();
    for (int64_t i = 0; i < n && !rc; i++) {
        if (optvq_image_load_val(list[i], (int)R, (int)C, im->data + i * C * R * R) != OPTVQ_OK) {
            fprintf(stderr, "optvq %s: %s\n", mc->cmd, optvq_last_error());
            rc = 1;
        }
        im->names[i] = base_name(list[i]);
        cli_progress("loading", "img", i + 1, n, t0);
    }
    if (paths)
        optvq_image_list_free(paths, n);
    if (rc)
        images_free(im);
    return rc;
}

/* Writes images (B, C, H, W) in [-1, 1] to a .npy, a .png (B = 1) or a folder. */
static int write_images(model_cli *mc, const char *out, const float *data, int64_t b, int64_t c, int64_t h,
                        int64_t w, char *const *names)
{
    if (cli_ends_with(out, ".npy")) {
        int64_t shape[4] = {b, c, h, w};
        if (optvq_npy_write(out, OPTVQ_F32, 4, shape, data) != OPTVQ_OK) {
            fprintf(stderr, "optvq %s: %s\n", mc->cmd, optvq_last_error());
            return 1;
        }
        return 0;
    }
    if (cli_ends_with(out, ".png")) {
        if (b != 1) {
            fprintf(stderr, "optvq %s: %s: %lld images do not fit one .png; give a folder or a .npy\n", mc->cmd,
                    out, (long long)b);
            return 1;
        }
        if (optvq_image_write_png_signed(out, data, (int)c, (int)h, (int)w) != OPTVQ_OK) {
            fprintf(stderr, "optvq %s: %s\n", mc->cmd, optvq_last_error());
            return 1;
        }
        return 0;
    }
    if (mkdir(out, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "optvq %s: %s: cannot create folder: %s\n", mc->cmd, out, strerror(errno));
        return 1;
    }
    for (int64_t i = 0; i < b; i++) {
        char p[4096];
        if (names)
            snprintf(p, sizeof p, "%s/%s.png", out, names[i]);
        else
            snprintf(p, sizeof p, "%s/%06lld.png", out, (long long)i);
        if (optvq_image_write_png_signed(p, data + i * c * h * w, (int)c, (int)h, (int)w) != OPTVQ_OK) {
            fprintf(stderr, "optvq %s: %s\n", mc->cmd, optvq_last_error());
            return 1;
        }
    }
    return 0;
}

static int write_tokens(model_cli *mc, const char *path, const int64_t *tokens, int64_t b, int64_t th, int64_t tw)
{
    int64_t shape[4] = {b, mc->info.num_head, th, tw};
    if (optvq_npy_write(path, OPTVQ_I64, 4, shape, tokens) != OPTVQ_OK) {
        fprintf(stderr, "optvq %s: %s\n", mc->cmd, optvq_last_error());
        return 1;
    }
    return 0;
}

static void print_usage(model_cli *mc, const int64_t *tokens, int64_t count)
{
    optvq_usage u;
    if (optvq_usage_compute(tokens, count, mc->info.n_e, &u) == OPTVQ_OK)
        fprintf(stderr, "%lld tokens: codes used %lld/%lld (%.1f%%), perplexity %.1f\n", (long long)count,
                (long long)u.codes_used, (long long)u.n_e, 100.0 * u.fraction_used, u.perplexity);
}

/* Runs encode (recon == NULL) or reconstruct over the images in batches. */
static int run_batches(model_cli *mc, const images *im, int64_t *tokens, float *recon)
{
    const int64_t f = mc->info.downsample, th = im->h / f, tw = im->w / f;
    const int64_t per_img = im->c * im->h * im->w, per_tok = mc->info.num_head * th * tw;
    const int64_t per_out = mc->info.out_channels * im->h * im->w;
    double t0 = cli_now();
    for (int64_t i = 0; i < im->b; i += mc->batch_size) {
        int64_t n = im->b - i < mc->batch_size ? im->b - i : mc->batch_size;
        optvq_status st = recon ? optvq_model_reconstruct(mc->model, im->data + i * per_img, n, im->h, im->w,
                                                          recon + i * per_out, tokens + i * per_tok)
                                : optvq_model_encode(mc->model, im->data + i * per_img, n, im->h, im->w,
                                                     tokens + i * per_tok, NULL);
        if (st != OPTVQ_OK) {
            fprintf(stderr, "optvq %s: %s\n", mc->cmd, optvq_last_error());
            return 1;
        }
        cli_progress(recon ? "reconstruct" : "encode", "img", i + n, im->b, t0);
    }
    return 0;
}

/* ---- commands ---- */

#define MODEL_OPTS                                                                                     \
    {"model", 1, 0}, {"config", 1, 0}, {"weights", 1, 0}, {"assign", 1, 0}, {"batch-size", 1, 0},     \
        {"threads", 1, 0}

static int parse(const char *cmd, int argc, char **argv, cli_opt *opts, const char *synopsis, const char *about)
{
    int pr = cli_parse(cmd, argc, argv, opts);
    if (pr == 1) {
        printf("usage: %s\n\n%s\n%s\n%s", synopsis, about, MODEL_OPTIONS, IMAGE_NOTE);
        return 0;
    }
    return pr < 0 ? 2 : -1;
}

int cmd_encode(int argc, char **argv)
{
    cli_opt opts[] = {MODEL_OPTS, {"input", 1, 0}, {"out", 1, 0}, {0, 0, 0}};
    int rc = parse("encode", argc, argv, opts, "optvq encode --model M --input IN --out TOKENS.npy [options]",
                   "Encodes images to tokens: int64 (B, num_head, H/f, W/f).");
    if (rc >= 0)
        return rc;
    const char *in = cli_get(opts, "input"), *out = cli_get(opts, "out");
    if (!in || !out) {
        fprintf(stderr, "optvq encode: --input and --out are required (see --help)\n");
        return 2;
    }
    model_cli mc = {"encode", NULL, {0}, 8};
    if ((rc = open_model(&mc, opts)))
        return rc;
    images im;
    int64_t *tokens = NULL;
    rc = load_images(&mc, in, &im);
    if (!rc) {
        const int64_t f = mc.info.downsample, count = im.b * mc.info.num_head * (im.h / f) * (im.w / f);
        tokens = malloc((size_t)(count ? count : 1) * sizeof(int64_t));
        rc = !tokens || run_batches(&mc, &im, tokens, NULL) ||
             write_tokens(&mc, out, tokens, im.b, im.h / f, im.w / f);
        if (!rc)
            print_usage(&mc, tokens, count);
        images_free(&im);
    }
    free(tokens);
    optvq_model_free(mc.model);
    return rc;
}

int cmd_reconstruct(int argc, char **argv)
{
    cli_opt opts[] = {MODEL_OPTS, {"input", 1, 0}, {"out", 1, 0}, {"save-indices", 1, 0}, {0, 0, 0}};
    int rc = parse("reconstruct", argc, argv, opts,
                   "optvq reconstruct --model M --input IN --out OUT [--save-indices I.npy] [options]",
                   "Encodes and decodes images (the model's reconstruction).");
    if (rc >= 0)
        return rc;
    const char *in = cli_get(opts, "input"), *out = cli_get(opts, "out"), *si = cli_get(opts, "save-indices");
    if (!in || !out) {
        fprintf(stderr, "optvq reconstruct: --input and --out are required (see --help)\n");
        return 2;
    }
    model_cli mc = {"reconstruct", NULL, {0}, 8};
    if ((rc = open_model(&mc, opts)))
        return rc;
    images im;
    int64_t *tokens = NULL;
    float *recon = NULL;
    rc = load_images(&mc, in, &im);
    if (!rc) {
        const int64_t f = mc.info.downsample, count = im.b * mc.info.num_head * (im.h / f) * (im.w / f);
        tokens = malloc((size_t)(count ? count : 1) * sizeof(int64_t));
        recon = malloc((size_t)(im.b * mc.info.out_channels * im.h * im.w) * sizeof(float));
        rc = !tokens || !recon || run_batches(&mc, &im, tokens, recon) ||
             write_images(&mc, out, recon, im.b, mc.info.out_channels, im.h, im.w, im.names) ||
             (si && write_tokens(&mc, si, tokens, im.b, im.h / f, im.w / f));
        if (!rc)
            print_usage(&mc, tokens, count);
        images_free(&im);
    }
    free(tokens);
    free(recon);
    optvq_model_free(mc.model);
    return rc;
}

int cmd_decode(int argc, char **argv)
{
    cli_opt opts[] = {MODEL_OPTS, {"input", 1, 0}, {"out", 1, 0}, {0, 0, 0}};
    int rc = parse("decode", argc, argv, opts, "optvq decode --model M --input TOKENS.npy --out OUT [options]",
                   "Decodes tokens (B, num_head, h, w) to images (B, C, h*f, w*f).");
    if (rc >= 0)
        return rc;
    const char *in = cli_get(opts, "input"), *out = cli_get(opts, "out");
    if (!in || !out) {
        fprintf(stderr, "optvq decode: --input and --out are required (see --help)\n");
        return 2;
    }
    model_cli mc = {"decode", NULL, {0}, 8};
    if ((rc = open_model(&mc, opts)))
        return rc;
    optvq_array t;
    float *img = NULL;
    if (optvq_npy_read(in, &t) != OPTVQ_OK) {
        fprintf(stderr, "optvq decode: %s\n", optvq_last_error());
        optvq_model_free(mc.model);
        return 1;
    }
    if (optvq_array_to_i64(&t) != OPTVQ_OK) {
        fprintf(stderr, "optvq decode: %s: %s\n", in, optvq_last_error());
        optvq_array_free(&t);
        optvq_model_free(mc.model);
        return 1;
    }
    rc = 1;
    if (t.ndim != 4 || t.shape[1] != mc.info.num_head || t.shape[0] < 1) {
        fprintf(stderr, "optvq decode: %s: expected tokens (B, %lld, h, w)\n", in, (long long)mc.info.num_head);
        goto done;
    }
    const int64_t B = t.shape[0], th = t.shape[2], tw = t.shape[3], f = mc.info.downsample;
    const int64_t per_tok = mc.info.num_head * th * tw, per_img = mc.info.out_channels * th * f * tw * f;
    img = malloc((size_t)(B * per_img) * sizeof(float));
    if (!img) {
        fprintf(stderr, "optvq decode: out of memory\n");
        goto done;
    }
    double t0 = cli_now();
    for (int64_t i = 0; i < B; i += mc.batch_size) {
        int64_t n = B - i < mc.batch_size ? B - i : mc.batch_size;
        if (optvq_model_decode(mc.model, (int64_t *)t.data + i * per_tok, n, th, tw, img + i * per_img) != OPTVQ_OK) {
            fprintf(stderr, "optvq decode: %s: %s\n", in, optvq_last_error());
            goto done;
        }
        cli_progress("decode", "img", i + n, B, t0);
    }
    rc = write_images(&mc, out, img, B, mc.info.out_channels, th * f, tw * f, NULL);
done:
    free(img);
    optvq_array_free(&t);
    optvq_model_free(mc.model);
    return rc;
}

int cmd_info(int argc, char **argv)
{
    cli_opt opts[] = {MODEL_OPTS, {0, 0, 0}};
    int rc = parse("info", argc, argv, opts, "optvq info --model M | --config CFG --weights FILE",
                   "Prints the architecture, parameter counts, token grid and codebook.");
    if (rc >= 0)
        return rc;
    model_cli mc = {"info", NULL, {0}, 8};
    if ((rc = open_model(&mc, opts)))
        return rc;
    const optvq_model_info *i = &mc.info;
    const optvq_quantizer_config *q = optvq_quantizer_get_config(optvq_model_quantizer(mc.model));
    static const char *const norms[] = {"all", "dim", "null"}, *const losses[] = {"l2", "l1", "ce"};
    printf("encoder      %s, %lld -> %lld channels\n", i->encoder_arch, (long long)i->in_channels, (long long)i->e_dim);
    printf("decoder      %s, %lld -> %lld channels\n", i->decoder_arch, (long long)i->e_dim, (long long)i->out_channels);
    printf("quantizer    %s, %lld codes x %lld dims, %lld heads (e_dim %lld), projection %s\n",
           i->assign == OPTVQ_ASSIGN_SINKHORN ? "Sinkhorn (OptVQ)" : "nearest (vanilla VQ)", (long long)i->n_e,
           (long long)i->code_dim, (long long)i->num_head, (long long)i->e_dim, q->use_proj ? "on" : "off");
    if (i->assign == OPTVQ_ASSIGN_SINKHORN)
        printf("             epsilon %g, %d iterations, normalize %s, loss %s, beta %g\n", (double)q->epsilon,
               q->n_iters, norms[q->normalize], losses[q->loss], (double)q->beta);
    printf("images       %lld x %lld (training resolution), downsampling %lld\n", (long long)i->resolution,
           (long long)i->resolution, (long long)i->downsample);
    printf("tokens       %lld x %lld x %lld heads = %lld per image\n", (long long)(i->resolution / i->downsample),
           (long long)(i->resolution / i->downsample), (long long)i->num_head,
           (long long)(i->resolution / i->downsample * (i->resolution / i->downsample) * i->num_head));
    printf("parameters   %lld total\n", (long long)i->params_total);
    printf("  encoder    %lld\n  decoder    %lld\n  connectors %lld (quant_conv, post_quant_conv)\n  quantizer  %lld\n",
           (long long)i->params_encoder, (long long)i->params_decoder, (long long)i->params_connectors,
           (long long)i->params_quantizer);
    optvq_model_free(mc.model);
    return 0;
}
