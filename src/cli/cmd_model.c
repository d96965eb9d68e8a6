/* optvq encode / decode / reconstruct / info: image tokenization with a model.
 *
 * Inputs stream: a folder is read batch by batch, each batch goes through the
 * model and, for a folder output, is written before the next is read, so the
 * memory does not grow with the folder and an interrupted run keeps what it
 * wrote. Outputs follow one rule for every command (cli_output_kind). */
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/util.h"
#include "io/dataset.h"
#include "io/image.h"
#include "optvq/optvq.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- help ---------------------------------------------------------------- */

static const char *const HELP_MODEL =
    "MODEL (one of)\n"
    "    --model DIR       a folder with config.json + model.safetensors (the Hugging\n"
    "                      Face layout: a downloaded checkpoint, or an 'optvq train'\n"
    "                      run folder)\n"
    "    --config CFG --weights FILE\n"
    "                      a YAML (reference) or JSON config, and .safetensors or\n"
    "                      .pth/.ckpt weights\n"
    "    --config CFG --init-random SEED\n"
    "                      a config with random weights (PyTorch's default init from\n"
    "                      SEED), to inspect or time an architecture without weights\n";

static const char *const HELP_RUN_OPTIONS =
    "    --assign sinkhorn|nearest\n"
    "                      assignment (default: the config's quantizer). Sinkhorn\n"
    "                      runs over each batch, so a token can depend on the other\n"
    "                      images of its batch; nearest is per image\n"
    "    --batch-size N    images per batch (default 8)\n"
    "    --threads T       threads (default 0: all cores)\n" CLI_HELP_PRECISION;

static const char *const HELP_IMAGES =
    "IMAGES\n"
    "    IN is a PNG/JPEG file, a folder of them (sorted by name), or a .npy array\n"
    "    (B, C, H, W): float32/float64 in [-1, 1], or uint8 0..255 (mapped as\n"
    "    (x/255 - 0.5)/0.5). Image files get the reference's validation\n"
    "    preprocessing: the short side resized to the model's resolution\n"
    "    (bilinear), a centre crop, then (x/255 - 0.5)/0.5. Colour files given to\n"
    "    a 1-channel model are turned to grey (and grey files replicated for a\n"
    "    3-channel one); a note says so. For a 1-channel model IN may also be IDX\n"
    "    images: fashion-mnist (the test set of dataset-fashion-mnist) or an IDX\n"
    "    file, with the reference's plain preprocessing (bilinear resize).\n";

static const char *const HELP_OUTPUTS =
    "OUTPUTS\n"
    "    The name says what is written: NAME.npy an array; NAME.png, NAME.jpg or\n"
    "    NAME.jpeg one image; an existing folder, or a name ending in '/', a folder\n"
    "    (created) that receives one file per input image, named after it. Missing\n"
    "    folders above an output are created. Anything else is a usage error.\n"
    "    Files appear complete or not at all; when one output of a command fails,\n"
    "    the others it wrote are removed. A folder output is written as the\n"
    "    images go, so an interrupted run keeps the images already done.\n";

static const char *const HELP_EXIT =
    "EXIT STATUS\n"
    "    0 success, 1 runtime failure (a bad input file, named in a one-line\n"
    "    message; with --keep-going: some inputs were skipped), 2 usage error.\n";

static void print_help(const char *name, const char *synopsis, const char *description, const char *options,
                       int with_run_options, int with_images, const char *examples)
{
    printf("NAME\n    optvq %s\n\nSYNOPSIS\n%s\nDESCRIPTION\n%s\n%s\nOPTIONS\n%s%s    --help            this text\n\n",
           name, synopsis, description, HELP_MODEL, options, with_run_options ? HELP_RUN_OPTIONS : "");
    if (with_images)
        printf("%s\n%s\n", HELP_IMAGES, HELP_OUTPUTS);
    printf("EXAMPLES\n%s\n%s", examples, HELP_EXIT);
}

/* ---- the model ------------------------------------------------------------ */

typedef struct model_cli {
    const char *cmd;
    optvq_model *model;
    optvq_model_info info;
    int64_t batch_size;
} model_cli;

static int open_model(model_cli *mc, const cli_opt *opts)
{
    const char *dir = cli_get(opts, "model"), *cfg = cli_get(opts, "config"), *w = cli_get(opts, "weights");
    const char *init = cli_get(opts, "init-random");
    /* exactly one of: --model DIR, --config + --weights, --config + --init-random */
    if (!dir == !cfg || (cfg && !w == !init) || (dir && (w || init))) {
        fprintf(stderr, "optvq %s: give --model DIR, or --config CFG with --weights FILE or --init-random SEED\n",
                mc->cmd);
        return 2;
    }
    static const char *const assigns[] = {"sinkhorn", "nearest", NULL};
    int assign = -1;
    int64_t threads = 0, seed = 0;
    mc->batch_size = 8;
    if (cli_get_choice(mc->cmd, opts, "assign", assigns, &assign) ||
        cli_get_int(mc->cmd, opts, "threads", 0, 4096, &threads) ||
        cli_get_int(mc->cmd, opts, "batch-size", 1, 1 << 20, &mc->batch_size) ||
        cli_get_int(mc->cmd, opts, "init-random", 0, INT64_MAX, &seed))
        return 2;
    optvq_set_num_threads((int)threads);
    optvq_status st = init ? optvq_model_create(cfg, (uint64_t)seed, &mc->model)
                           : optvq_model_load(dir ? dir : cfg, dir ? NULL : w, &mc->model);
    if (st != OPTVQ_OK) {
        fprintf(stderr, "optvq %s: %s\n", mc->cmd, optvq_last_error());
        return 1;
    }
    if (assign >= 0)
        optvq_model_set_assign(mc->model, (optvq_assign)assign);
    if (cli_set_precision(mc->cmd, opts, mc->model)) {
        optvq_model_free(mc->model);
        mc->model = NULL;
        return 2;
    }
    optvq_model_get_info(mc->model, &mc->info);
    return 0;
}

static void format_shape(char *buf, size_t size, const optvq_array *a)
{
    size_t len = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < a->ndim && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%lld", i ? ", " : "", (long long)a->shape[i]);
    if (len < size)
        snprintf(buf + len, size - len, a->ndim == 1 ? ",)" : ")");
}

/* ---- streamed image input ------------------------------------------------- */

/* Images (C, H, W) in [-1, 1], one batch at a time, from an image set
 * (io/dataset.h: a .npy array, an image file, a folder of them, IDX). */
typedef struct image_source {
    dataset d;
    int64_t count, next, skipped;
    int64_t c, h, w;
    int keep_going, noted_conversion;
} image_source;

static void source_close(image_source *s)
{
    dataset_free(&s->d);
    memset(s, 0, sizeof *s);
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

static int source_open(model_cli *mc, const char *in, int keep_going, image_source *s)
{
    memset(s, 0, sizeof *s);
    s->keep_going = keep_going;
    dataset_options o = {.channels = mc->info.in_channels, .resolution = mc->info.resolution,
                         .multiple = mc->info.downsample};
    if (dataset_open(in, &o, &s->d) != OPTVQ_OK) {
        fprintf(stderr, "optvq %s: %s\n", mc->cmd, optvq_last_error());
        return 1;
    }
    if (s->d.from_u8)
        fprintf(stderr, "optvq %s: %s: uint8 images mapped to [-1, 1] as (x/255 - 0.5)/0.5\n", mc->cmd, in);
    if (dataset_check_range(&s->d) != OPTVQ_OK) /* the model runs on any values: a warning */
        fprintf(stderr, "optvq %s: warning: %s\n", mc->cmd, optvq_last_error());
    s->count = s->d.n;
    s->c = s->d.c;
    s->h = s->d.h;
    s->w = s->d.w;
    return 0;
}

/* Reads up to `max` images into buf and their names; returns how many were
 * read (0 at the end), or -1 after printing an error. With keep_going a file
 * that cannot be read is skipped with a warning. */
static int64_t source_read(model_cli *mc, image_source *s, int64_t max, float *buf, char **names)
{
    const int64_t per = s->c * s->h * s->w;
    int64_t got = 0;
    while (got < max && s->next < s->count) {
        const int64_t i = s->next++;
        const char *path = dataset_file(&s->d, i);
        int file_channels = (int)s->c;
        if (dataset_read_one(&s->d, i, buf + got * per, &file_channels) != OPTVQ_OK) {
            if (!s->keep_going) {
                fprintf(stderr, "optvq %s: %s\n", mc->cmd, optvq_last_error());
                return -1;
            }
            fprintf(stderr, "optvq %s: skipping: %s\n", mc->cmd, optvq_last_error());
            s->skipped++;
            continue;
        }
        if (path && file_channels != s->c && !s->noted_conversion) {
            fprintf(stderr, "optvq %s: note: %s is %s; %s for this %lld-channel model (and so for any other)\n",
                    mc->cmd, path, file_channels == 3 ? "colour" : "grey",
                    file_channels == 3 ? "turned to grey (luma 299/587/114)" : "replicated to 3 channels",
                    (long long)s->c);
            s->noted_conversion = 1;
        }
        if (path) {
            names[got++] = base_name(path);
        } else { /* array items: their index */
            char name[32];
            snprintf(name, sizeof name, "%06lld", (long long)i);
            names[got++] = strdup(name);
        }
    }
    return got;
}

/* ---- outputs -------------------------------------------------------------- */

/* Files a command has written, removed again when a later output fails. */
typedef struct written_files {
    char *paths[4];
    int count;
} written_files;

static void written_add(written_files *w, const char *path)
{
    if (w->count < 4)
        w->paths[w->count++] = strdup(path);
}

static void written_finish(written_files *w, int failed)
{
    for (int i = 0; i < w->count; i++) {
        if (failed && w->paths[i])
            remove(w->paths[i]);
        free(w->paths[i]);
    }
    w->count = 0;
}

static int write_npy(model_cli *mc, const char *path, optvq_dtype dtype, const int64_t *shape, const void *data,
                     written_files *w)
{
    if (optvq_npy_write(path, dtype, 4, shape, data) != OPTVQ_OK) {
        fprintf(stderr, "optvq %s: %s\n", mc->cmd, optvq_last_error());
        return 1;
    }
    written_add(w, path);
    return 0;
}

static int write_image(model_cli *mc, const char *path, const float *chw, int64_t c, int64_t h, int64_t w)
{
    if (optvq_image_write_signed(path, chw, (int)c, (int)h, (int)w) != OPTVQ_OK) {
        fprintf(stderr, "optvq %s: %s\n", mc->cmd, optvq_last_error());
        return 1;
    }
    return 0;
}

static int folder_file(model_cli *mc, char *buf, size_t size, const char *dir, const char *name, const char *ext)
{
    size_t len = strlen(dir);
    const char *sep = len && dir[len - 1] == '/' ? "" : "/";
    if ((size_t)snprintf(buf, size, "%s%s%s%s", dir, sep, name, ext) >= size) {
        fprintf(stderr, "optvq %s: %s: output path too long\n", mc->cmd, dir);
        return 1;
    }
    return 0;
}

/* Checks an output name against the rule and the count of images it must
 * hold, and creates its folders. Returns 0, 1 (runtime) or 2 (usage). */
static int check_output(model_cli *mc, const char *opt, const char *path, unsigned allowed, int64_t images,
                        cli_out_kind *kind)
{
    if (cli_output_kind(mc->cmd, opt, path, allowed, kind))
        return 2;
    if (*kind == CLI_OUT_IMAGE && images != 1) {
        fprintf(stderr, "optvq %s: --%s %s: %lld images do not fit one image file; give a folder or a .npy\n",
                mc->cmd, opt, path, (long long)images);
        return 2;
    }
    return cli_prepare_output(mc->cmd, path, *kind == CLI_OUT_FOLDER);
}

static void print_usage(model_cli *mc, const int64_t *tokens, int64_t count)
{
    optvq_usage u;
    if (count > 0 && optvq_usage_compute(tokens, count, mc->info.n_e, &u) == OPTVQ_OK)
        fprintf(stderr, "%lld tokens: codes used %lld/%lld (%.1f%%), perplexity %.1f\n", (long long)count,
                (long long)u.codes_used, (long long)u.n_e, 100.0 * u.fraction_used, u.perplexity);
}

/* ---- encode and reconstruct: one streamed loop ------------------------------ */

typedef struct image_job {
    const char *in, *out, *indices_out; /* indices_out: reconstruct --save-indices */
    int reconstruct, keep_going;
} image_job;

static int run_image_job(model_cli *mc, const image_job *job)
{
    image_source src;
    int rc = source_open(mc, job->in, job->keep_going, &src);
    if (rc) {
        source_close(&src);
        return rc;
    }
    const int64_t n = src.count, f = mc->info.downsample, th = src.h / f, tw = src.w / f;
    const int64_t per_in = src.c * src.h * src.w, per_tok = mc->info.num_head * th * tw;
    const int64_t per_out = mc->info.out_channels * src.h * src.w, bs = mc->batch_size;
    cli_out_kind out_kind, idx_kind = CLI_OUT_NPY;
    unsigned allowed = job->reconstruct ? 7u : (1u << CLI_OUT_NPY) | (1u << CLI_OUT_FOLDER);
    if ((rc = check_output(mc, "out", job->out, allowed, n, &out_kind)) ||
        (job->indices_out &&
         (rc = check_output(mc, "save-indices", job->indices_out, 1u << CLI_OUT_NPY, n, &idx_kind)))) {
        source_close(&src);
        return rc;
    }
    /* whole-set buffers only for the whole-set outputs; a folder output streams */
    const int whole_out = out_kind != CLI_OUT_FOLDER;
    float *batch_in = malloc((size_t)(bs * per_in) * sizeof(float));
    float *recon = job->reconstruct ? malloc((size_t)((whole_out ? n : bs) * per_out) * sizeof(float)) : NULL;
    int64_t *tokens = malloc((size_t)(n * per_tok) * sizeof(int64_t));
    char **names = calloc((size_t)bs, sizeof(char *));
    written_files written = {{0}, 0};
    int64_t done = 0;
    if (!batch_in || !tokens || !names || (job->reconstruct && !recon)) {
        fprintf(stderr, "optvq %s: out of memory for %lld images\n", mc->cmd, (long long)n);
        rc = 1;
    }
    double t0 = cli_now();
    while (!rc) {
        int64_t got = source_read(mc, &src, bs, batch_in, names);
        if (got <= 0) {
            rc = got < 0;
            break;
        }
        int64_t *tok = tokens + done * per_tok;
        float *rec = recon ? recon + (whole_out ? done : 0) * per_out : NULL;
        optvq_status st = job->reconstruct
                              ? optvq_model_reconstruct(mc->model, batch_in, got, src.h, src.w, rec, tok)
                              : optvq_model_encode(mc->model, batch_in, got, src.h, src.w, tok, NULL);
        if (st != OPTVQ_OK) {
            fprintf(stderr, "optvq %s: %s: %s\n", mc->cmd, job->in, optvq_last_error());
            rc = 1;
        }
        for (int64_t i = 0; i < got && !rc && out_kind == CLI_OUT_FOLDER; i++) {
            char path[4096];
            rc = folder_file(mc, path, sizeof path, job->out, names[i], job->reconstruct ? ".png" : ".npy");
            if (!rc && job->reconstruct)
                rc = write_image(mc, path, rec + i * per_out, mc->info.out_channels, src.h, src.w);
            else if (!rc) {
                int64_t shape[4] = {1, mc->info.num_head, th, tw};
                if (optvq_npy_write(path, OPTVQ_I64, 4, shape, tok + i * per_tok) != OPTVQ_OK) {
                    fprintf(stderr, "optvq %s: %s\n", mc->cmd, optvq_last_error());
                    rc = 1;
                }
            }
        }
        for (int64_t i = 0; i < got; i++) {
            free(names[i]);
            names[i] = NULL;
        }
        done += got;
        cli_progress(job->reconstruct ? "reconstruct" : "encode", "img", done + src.skipped, n, t0);
    }
    if (!rc && done == 0) {
        fprintf(stderr, "optvq %s: %s: no image could be read\n", mc->cmd, job->in);
        rc = 1;
    }
    if (!rc && out_kind != CLI_OUT_FOLDER) {
        if (job->reconstruct && out_kind == CLI_OUT_IMAGE) {
            rc = write_image(mc, job->out, recon, mc->info.out_channels, src.h, src.w);
            if (!rc)
                written_add(&written, job->out);
        } else if (job->reconstruct) {
            int64_t shape[4] = {done, mc->info.out_channels, src.h, src.w};
            rc = write_npy(mc, job->out, OPTVQ_F32, shape, recon, &written);
        } else {
            int64_t shape[4] = {done, mc->info.num_head, th, tw};
            rc = write_npy(mc, job->out, OPTVQ_I64, shape, tokens, &written);
        }
    }
    if (!rc && job->indices_out) {
        int64_t shape[4] = {done, mc->info.num_head, th, tw};
        rc = write_npy(mc, job->indices_out, OPTVQ_I64, shape, tokens, &written);
    }
    written_finish(&written, rc != 0);
    if (!rc) {
        print_usage(mc, tokens, done * per_tok);
        const char *what = job->reconstruct ? "images" : "tokens";
        if (out_kind == CLI_OUT_FOLDER)
            printf("optvq %s: wrote %lld %s to %s (one %s per image)\n", mc->cmd, (long long)done,
                   job->reconstruct ? "reconstructions" : "token arrays", job->out,
                   job->reconstruct ? "NAME.png" : "NAME.npy");
        else if (out_kind == CLI_OUT_IMAGE)
            printf("optvq %s: wrote the reconstruction (%lldx%lld) to %s\n", mc->cmd, (long long)src.h,
                   (long long)src.w, job->out);
        else if (job->reconstruct)
            printf("optvq %s: wrote %s float32 (%lld, %lld, %lld, %lld) to %s\n", mc->cmd, what, (long long)done,
                   (long long)mc->info.out_channels, (long long)src.h, (long long)src.w, job->out);
        else
            printf("optvq %s: wrote tokens int64 (%lld, %lld, %lld, %lld) to %s\n", mc->cmd, (long long)done,
                   (long long)mc->info.num_head, (long long)th, (long long)tw, job->out);
        if (job->indices_out)
            printf("optvq %s: wrote tokens int64 (%lld, %lld, %lld, %lld) to %s\n", mc->cmd, (long long)done,
                   (long long)mc->info.num_head, (long long)th, (long long)tw, job->indices_out);
        if (src.skipped) {
            fprintf(stderr, "optvq %s: skipped %lld of %lld inputs (named above)\n", mc->cmd, (long long)src.skipped,
                    (long long)n);
            rc = 1;
        }
    }
    if (names)
        for (int64_t i = 0; i < bs; i++)
            free(names[i]);
    free(names);
    free(batch_in);
    free(recon);
    free(tokens);
    source_close(&src);
    return rc;
}

/* ---- commands ------------------------------------------------------------- */

#define MODEL_OPTS {"model", 1, 0}, {"config", 1, 0}, {"weights", 1, 0}, {"init-random", 1, 0}
#define RUN_OPTS {"assign", 1, 0}, {"batch-size", 1, 0}, {"threads", 1, 0}, {"precision", 1, 0}

/* Returns -1 to go on, else the exit status (0 after --help). */
static int parse(const char *cmd, int argc, char **argv, cli_opt *opts)
{
    int pr = cli_parse(cmd, argc, argv, opts);
    return pr == 1 ? 0 : pr < 0 ? 2 : -1;
}

static const char *const KEEP_GOING_HELP =
    "    --keep-going      skip an input file that cannot be read (a warning names\n"
    "                      it) and exit 1 at the end; default: stop at the first\n";

/* encode and reconstruct: the same options and streamed loop, two outputs. */
static int image_command(int argc, char **argv, int reconstruct)
{
    const char *cmd = reconstruct ? "reconstruct" : "encode";
    cli_opt opts[] = {MODEL_OPTS,        RUN_OPTS, {"input", 1, 0}, {"out", 1, 0}, {"keep-going", 0, 0},
                      {"save-indices", 1, 0}, {0, 0, 0}};
    if (!reconstruct)
        opts[sizeof opts / sizeof opts[0] - 2].name = NULL; /* no --save-indices */
    int rc = parse(cmd, argc, argv, opts);
    if (rc >= 0) {
        if (rc == 0) {
            char options[1024];
            snprintf(options, sizeof options, "%s%s",
                     reconstruct ? "    --input IN        images (see IMAGES)\n"
                                   "    --out OUT         OUT.npy: float32 (B, C, H, W) in [-1, 1]; OUT.png or\n"
                                   "                      OUT.jpg: one image; or a folder: NAME.png per image\n"
                                   "    --save-indices I.npy\n"
                                   "                      also write the tokens, int64 (B, num_head, H/f, W/f)\n"
                                 : "    --input IN        images (see IMAGES)\n"
                                   "    --out OUT         TOKENS.npy: int64 (B, num_head, H/f, W/f) for all\n"
                                   "                      images; or a folder: NAME.npy (1, num_head, H/f, W/f)\n"
                                   "                      per image\n",
                     KEEP_GOING_HELP);
            if (reconstruct)
                print_help("reconstruct - images to tokens to images",
                           "    optvq reconstruct MODEL --input IN --out OUT [--save-indices I.npy]\n"
                           "                      [--assign A] [--batch-size N] [--threads T]\n"
                           "                      [--precision P] [--keep-going]\n",
                           "    Encodes and decodes images: the model's reconstruction, equal byte for\n"
                           "    byte to 'optvq decode' of 'optvq encode'. Prints the codebook usage\n"
                           "    and one line naming each output.\n",
                           options, 1, 1,
                           "    optvq reconstruct --model optvq-16x16x4 --input cat.jpg --out cat_rec.png\n"
                           "    optvq reconstruct --model RUN --input photos/ --out rec/ --save-indices t.npy\n");
            else
                print_help("encode - images to tokens",
                           "    optvq encode MODEL --input IN --out TOKENS.npy|DIR/ [--assign A]\n"
                           "                 [--batch-size N] [--threads T] [--precision P]\n"
                           "                 [--keep-going]\n",
                           "    Encodes images to the model's tokens, batch by batch, and prints the\n"
                           "    codebook usage of the tokens and one line naming what it wrote.\n",
                           options, 1, 1,
                           "    optvq encode --model optvq-16x16x4 --input photos/ --out tokens.npy\n"
                           "    optvq encode --model RUN --input x.npy --out tokens/ --assign nearest\n");
        }
        return rc;
    }
    const char *in = cli_get(opts, "input"), *out = cli_get(opts, "out");
    if (!in || !out) {
        fprintf(stderr, "optvq %s: --input and --out are required (see --help)\n", cmd);
        return 2;
    }
    model_cli mc = {cmd, NULL, {0}, 8};
    if ((rc = open_model(&mc, opts)))
        return rc;
    image_job job = {in, out, reconstruct ? cli_get(opts, "save-indices") : NULL, reconstruct,
                     cli_get(opts, "keep-going") != NULL};
    rc = run_image_job(&mc, &job);
    optvq_model_free(mc.model);
    return rc;
}

int cmd_encode(int argc, char **argv) { return image_command(argc, argv, 0); }

int cmd_reconstruct(int argc, char **argv) { return image_command(argc, argv, 1); }

int cmd_decode(int argc, char **argv)
{
    cli_opt opts[] = {MODEL_OPTS,      {"batch-size", 1, 0}, {"threads", 1, 0}, {"precision", 1, 0},
                      {"input", 1, 0}, {"out", 1, 0},        {0, 0, 0}};
    int rc = parse("decode", argc, argv, opts);
    if (rc >= 0) {
        if (rc == 0)
            print_help("decode - tokens to images",
                       "    optvq decode MODEL --input TOKENS.npy --out OUT [--batch-size N]\n"
                       "                 [--threads T] [--precision P]\n",
                       "    Decodes tokens (B, num_head, h, w), int64 or int32, as 'optvq encode'\n"
                       "    writes them, to images (B, C, h*f, w*f), and prints one line naming\n"
                       "    what it wrote.\n",
                       "    --input TOKENS.npy  the tokens\n"
                       "    --out OUT         OUT.npy: float32 (B, C, H, W) in [-1, 1]; OUT.png or\n"
                       "                      OUT.jpg: one image (B = 1); or a folder: NNNNNN.png\n"
                       "                      per image (the outputs follow the rule of 'optvq\n"
                       "                      reconstruct --help')\n"
                       "    --batch-size N    images per batch (default 8)\n"
                       "    --threads T       threads (default 0: all cores)\n" CLI_HELP_PRECISION,
                       0, 0, "    optvq decode --model optvq-16x16x4 --input tokens.npy --out images/\n");
        return rc;
    }
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
    written_files written = {{0}, 0};
    if (optvq_npy_read(in, &t) != OPTVQ_OK) {
        fprintf(stderr, "optvq decode: %s\n", optvq_last_error());
        optvq_model_free(mc.model);
        return 1;
    }
    char shape[160];
    format_shape(shape, sizeof shape, &t);
    rc = 1;
    if (t.dtype != OPTVQ_I32 && t.dtype != OPTVQ_I64) {
        fprintf(stderr, "optvq decode: %s: tokens must be integers (int64 or int32), got a %s array\n", in,
                t.dtype == OPTVQ_U8 ? "uint8" : "floating-point");
        goto done;
    }
    if (optvq_array_to_i64(&t) != OPTVQ_OK) {
        fprintf(stderr, "optvq decode: %s: %s\n", in, optvq_last_error());
        goto done;
    }
    if (t.ndim != 4 || t.shape[1] != mc.info.num_head || t.shape[0] < 1 || t.shape[2] < 1 || t.shape[3] < 1) {
        fprintf(stderr, "optvq decode: %s: expected tokens (B, %lld, h, w) with B, h, w >= 1, got shape %s\n", in,
                (long long)mc.info.num_head, shape);
        goto done;
    }
    const int64_t B = t.shape[0], th = t.shape[2], tw = t.shape[3], f = mc.info.downsample;
    const int64_t C = mc.info.out_channels, per_tok = mc.info.num_head * th * tw, per_img = C * th * f * tw * f;
    cli_out_kind kind;
    int crc = check_output(&mc, "out", out, 7u, B, &kind);
    if (crc) {
        rc = crc;
        goto done;
    }
    const int64_t held = kind == CLI_OUT_FOLDER ? (B < mc.batch_size ? B : mc.batch_size) : B;
    img = malloc((size_t)(held * per_img) * sizeof(float));
    if (!img) {
        fprintf(stderr, "optvq decode: out of memory for %lld images\n", (long long)held);
        goto done;
    }
    double t0 = cli_now();
    for (int64_t i = 0; i < B; i += mc.batch_size) {
        int64_t n = B - i < mc.batch_size ? B - i : mc.batch_size;
        float *dst = kind == CLI_OUT_FOLDER ? img : img + i * per_img;
        if (optvq_model_decode(mc.model, (int64_t *)t.data + i * per_tok, n, th, tw, dst) != OPTVQ_OK) {
            fprintf(stderr, "optvq decode: %s: %s\n", in, optvq_last_error());
            goto done;
        }
        for (int64_t k = 0; k < n && kind == CLI_OUT_FOLDER; k++) {
            char name[32], path[4096];
            snprintf(name, sizeof name, "%06lld", (long long)(i + k));
            if (folder_file(&mc, path, sizeof path, out, name, ".png") ||
                write_image(&mc, path, dst + k * per_img, C, th * f, tw * f))
                goto done;
        }
        cli_progress("decode", "img", i + n, B, t0);
    }
    if (kind == CLI_OUT_IMAGE) {
        if (write_image(&mc, out, img, C, th * f, tw * f))
            goto done;
        printf("optvq decode: wrote the image (%lldx%lld) to %s\n", (long long)(th * f), (long long)(tw * f), out);
    } else if (kind == CLI_OUT_NPY) {
        int64_t oshape[4] = {B, C, th * f, tw * f};
        if (write_npy(&mc, out, OPTVQ_F32, oshape, img, &written))
            goto done;
        printf("optvq decode: wrote images float32 (%lld, %lld, %lld, %lld) to %s\n", (long long)B, (long long)C,
               (long long)(th * f), (long long)(tw * f), out);
    } else {
        printf("optvq decode: wrote %lld images to %s (NNNNNN.png)\n", (long long)B, out);
    }
    rc = 0;
done:
    written_finish(&written, rc != 0);
    free(img);
    optvq_array_free(&t);
    optvq_model_free(mc.model);
    return rc;
}

int cmd_info(int argc, char **argv)
{
    cli_opt opts[] = {MODEL_OPTS, {0, 0, 0}};
    int rc = parse("info", argc, argv, opts);
    if (rc >= 0) {
        if (rc == 0)
            print_help("info - a model's architecture, parameters, token grid and codebook",
                       "    optvq info MODEL\n",
                       "    Prints the encoder and decoder, the quantizer (assignment, codes,\n"
                       "    heads, Sinkhorn settings), the training resolution and token grid,\n"
                       "    and the parameter counts per module. Reads the model only.\n",
                       "", 0, 0,
                       "    optvq info --model optvq-16x16x4\n"
                       "    optvq info --config configs/imagenet/optvq_256_f16_h4.yaml --init-random 0\n");
        return rc;
    }
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
