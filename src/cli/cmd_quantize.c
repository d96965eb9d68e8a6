/* optvq quantize: run the quantizer on features from .npy files. */
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/util.h"
#include "optvq/optvq.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const HELP =
    "NAME\n"
    "    optvq quantize - quantize features from .npy files (forward, loss, gradients)\n"
    "\n"
    "SYNOPSIS\n"
    "    optvq quantize --input X.npy --embedding E.npy --out DIR [options]\n"
    "\n"
    "DESCRIPTION\n"
    "    Quantizes the features X with the codebook E, as the model's quantizer\n"
    "    does, and writes to DIR (created with any missing parents):\n"
    "      indices.npy  int64 (B, h, H, W), or (N, h) for a 2-D X\n"
    "      x_q.npy      float32, the shape of X (straight-through output)\n"
    "      loss.npy     float32 scalar, the quantizer loss\n"
    "    With --grad-out G.npy also the gradients of loss + sum(x_q * G):\n"
    "    grad_x.npy, grad_embedding.npy, and grad_proj_weight.npy /\n"
    "    grad_proj_bias.npy when a projection is given. Prints the codebook usage\n"
    "    (codes used, dead codes, perplexity) and one line naming what it wrote.\n"
    "    All files appear or none do.\n"
    "\n"
    "INPUTS (float32 or float64 .npy)\n"
    "    --input X.npy     features, (B, e_dim, H, W) or (N, e_dim)\n"
    "    --embedding E.npy codebook embedding, (n_e, e_dim / num_head)\n"
    "    --proj-weight W.npy\n"
    "                      codebook projection weight (d, d); with --proj-bias\n"
    "    --proj-bias b.npy codebook projection bias (d); codebook = E W^T + b\n"
    "    --grad-out G.npy  upstream gradient for x_q, the shape of X\n"
    "\n"
    "OPTIONS\n"
    "    --out DIR         output folder (always a folder)\n"
    "    --assign sinkhorn|nearest\n"
    "                      assignment (default sinkhorn)\n"
    "    --num-head H      heads sharing the codebook (default 1)\n"
    "    --epsilon E       Sinkhorn inverse temperature (default 10)\n"
    "    --n-iters N       Sinkhorn iterations, 1..10000 (default 5)\n"
    "    --normalize all|dim|null\n"
    "                      cost normalisation (default all)\n"
    "    --beta B          weight of the commitment term, >= 0 (default 0.25)\n"
    "    --loss l2|l1|ce   loss type (default l2)\n"
    "    --log-domain      stabilised Sinkhorn that never underflows\n"
    "    --workspace-mb M  largest cost matrix held in memory (default 1024;\n"
    "                      0: always stream)\n"
    "    --threads T       threads (default 0: all cores)\n"
    "    --help            this text\n"
    "\n"
    "EXAMPLES\n"
    "    optvq quantize --input z.npy --embedding codebook.npy --num-head 4 --out q/\n"
    "    optvq quantize --input z.npy --embedding E.npy --assign nearest --grad-out g.npy --out q/\n"
    "\n"
    "EXIT STATUS\n"
    "    0 success, 1 runtime failure (a bad input file, named in a one-line\n"
    "    message; no output left behind), 2 usage error.\n";

static int load(const char *path, optvq_array *a)
{
    if (optvq_npy_read(path, a) != OPTVQ_OK) {
        fprintf(stderr, "optvq quantize: %s\n", optvq_last_error());
        return -1;
    }
    if (a->dtype != OPTVQ_F32 && a->dtype != OPTVQ_F64) { /* integers are not features: likely the wrong file */
        fprintf(stderr, "optvq quantize: %s: an integer array; features and weights must be float32 or float64\n",
                path);
        return -1;
    }
    if (optvq_array_to_f32(a) != OPTVQ_OK) {
        fprintf(stderr, "optvq quantize: %s: %s\n", path, optvq_last_error());
        return -1;
    }
    return 0;
}

static int expect_shape(const char *path, const optvq_array *a, int ndim, const int64_t *shape)
{
    int ok = a->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = a->shape[i] == shape[i];
    if (!ok) {
        char want[128] = "(", got[128] = "(";
        for (int i = 0; i < ndim; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? ", " : "", (long long)shape[i]);
        for (int i = 0; i < a->ndim; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "", (long long)a->shape[i]);
        fprintf(stderr, "optvq quantize: %s: shape %s) does not match the expected %s)\n", path, got, want);
        return -1;
    }
    return 0;
}

/* Outputs written so far, removed again if a later one fails: a run leaves
 * all of its files or none. */
static char written[8][4096];
static int n_written;

static int write_npy(const char *dir, const char *name, optvq_dtype t, int ndim, const int64_t *shape,
                     const void *data)
{
    char *path = written[n_written];
    snprintf(path, sizeof written[0], "%s/%s", dir, name);
    if (optvq_npy_write(path, t, ndim, shape, data) != OPTVQ_OK) {
        fprintf(stderr, "optvq quantize: %s\n", optvq_last_error());
        return -1;
    }
    n_written++;
    return 0;
}

int cmd_quantize(int argc, char **argv)
{
    cli_opt opts[] = {{"input", 1, 0},     {"embedding", 1, 0}, {"proj-weight", 1, 0}, {"proj-bias", 1, 0},
                      {"grad-out", 1, 0},  {"assign", 1, 0},    {"num-head", 1, 0},    {"epsilon", 1, 0},
                      {"n-iters", 1, 0},   {"normalize", 1, 0}, {"beta", 1, 0},        {"loss", 1, 0},
                      {"log-domain", 0, 0}, {"workspace-mb", 1, 0}, {"threads", 1, 0}, {"out", 1, 0},
                      {0, 0, 0}};
    int pr = cli_parse("quantize", argc, argv, opts);
    if (pr == 1) {
        fputs(HELP, stdout);
        return 0;
    }
    if (pr < 0)
        return 2;
    const char *in = cli_get(opts, "input"), *emb = cli_get(opts, "embedding"), *out = cli_get(opts, "out");
    const char *pw = cli_get(opts, "proj-weight"), *pb = cli_get(opts, "proj-bias"), *go = cli_get(opts, "grad-out");
    if (!in || !emb || !out) {
        fprintf(stderr, "optvq quantize: --input, --embedding and --out are required (see --help)\n");
        return 2;
    }
    if (!pw != !pb) {
        fprintf(stderr, "optvq quantize: --proj-weight and --proj-bias go together\n");
        return 2;
    }
    optvq_quantizer_config cfg;
    optvq_quantizer_config_default(&cfg);
    static const char *const assigns[] = {"sinkhorn", "nearest", NULL};
    static const char *const norms[] = {"all", "dim", "null", NULL};
    static const char *const losses[] = {"l2", "l1", "ce", NULL};
    int assign = 0, norm = 0, loss_type = 0;
    int64_t heads = 1, iters = cfg.n_iters, ws_mb = 1024, threads = 0;
    double eps = cfg.epsilon, beta = cfg.beta;
    if (cli_get_choice("quantize", opts, "assign", assigns, &assign) ||
        cli_get_choice("quantize", opts, "normalize", norms, &norm) ||
        cli_get_choice("quantize", opts, "loss", losses, &loss_type) ||
        cli_get_int("quantize", opts, "num-head", 1, 1 << 20, &heads) ||
        cli_get_int("quantize", opts, "n-iters", 1, 10000, &iters) ||
        cli_get_int("quantize", opts, "workspace-mb", 0, 1 << 24, &ws_mb) ||
        cli_get_int("quantize", opts, "threads", 0, 4096, &threads) ||
        cli_get_float("quantize", opts, "epsilon", 1e-6, 1e6, &eps) ||
        cli_get_float("quantize", opts, "beta", 0.0, 1e6, &beta))
        return 2;
    optvq_set_num_threads((int)threads);
    if (cli_ends_with(out, ".npy") || cli_ends_with(out, ".png") || cli_ends_with(out, ".jpg") ||
        cli_ends_with(out, ".jpeg")) {
        fprintf(stderr, "optvq quantize: --out %s: quantize writes several files: give a folder\n", out);
        return 2;
    }
    if (cli_prepare_output("quantize", out, 1))
        return 1;

    int rc = 1;
    optvq_array x = {0}, e = {0}, w = {0}, b = {0}, g = {0};
    optvq_quantizer *q = NULL;
    float *xq = NULL, *gx = NULL;
    int64_t *idx = NULL;
    if (load(in, &x) || load(emb, &e) || (pw && (load(pw, &w) || load(pb, &b))) || (go && load(go, &g)))
        goto done;
    if (x.ndim != 2 && x.ndim != 4) {
        fprintf(stderr, "optvq quantize: %s: expected (B, e_dim, H, W) or (N, e_dim), got %d dimensions\n", in, x.ndim);
        goto done;
    }
    if (e.ndim != 2) {
        fprintf(stderr, "optvq quantize: %s: expected (n_e, code_dim), got %d dimensions\n", emb, e.ndim);
        goto done;
    }
    const int64_t e_dim = x.shape[1], B = x.shape[0];
    const int64_t H = x.ndim == 4 ? x.shape[2] : 1, W = x.ndim == 4 ? x.shape[3] : 1;
    if (e_dim % heads) {
        fprintf(stderr, "optvq quantize: --num-head %lld does not divide e_dim %lld of %s\n", (long long)heads,
                (long long)e_dim, in);
        goto done;
    }
    const int64_t d = e_dim / heads;
    if (e.shape[1] != d) { /* name both: either file may be the wrong one */
        fprintf(stderr,
                "optvq quantize: %s: vectors of dimension %lld (e_dim %lld / %lld heads) do not match the codebook %s "
                "of dimension %lld\n",
                in, (long long)d, (long long)e_dim, (long long)heads, emb, (long long)e.shape[1]);
        goto done;
    }
    int64_t wshape[2] = {d, d}, bshape[1] = {d};
    if (pw && (expect_shape(pw, &w, 2, wshape) || expect_shape(pb, &b, 1, bshape)))
        goto done;
    if (go && expect_shape(go, &g, x.ndim, x.shape))
        goto done;

    cfg.n_e = e.shape[0];
    cfg.e_dim = e_dim;
    cfg.num_head = heads;
    cfg.assign = (optvq_assign)assign;
    cfg.normalize = (optvq_normalize)norm;
    cfg.loss = (optvq_loss)loss_type;
    cfg.epsilon = (float)eps;
    cfg.beta = (float)beta;
    cfg.n_iters = (int)iters;
    cfg.use_proj = pw != NULL;
    cfg.log_domain = cli_get(opts, "log-domain") != NULL;
    cfg.workspace_bytes = (size_t)ws_mb << 20;
    if (!cfg.workspace_bytes)
        cfg.workspace_bytes = 1; /* 0 MiB: always stream */
    if (optvq_quantizer_create(&cfg, 0, &q) != OPTVQ_OK) {
        fprintf(stderr, "optvq quantize: %s\n", optvq_last_error());
        goto done;
    }
    memcpy(optvq_quantizer_param(q, OPTVQ_PARAM_EMBEDDING, NULL), e.data, (size_t)optvq_array_numel(&e) * 4);
    if (pw) {
        memcpy(optvq_quantizer_param(q, OPTVQ_PARAM_PROJ_WEIGHT, NULL), w.data, (size_t)(d * d) * 4);
        memcpy(optvq_quantizer_param(q, OPTVQ_PARAM_PROJ_BIAS, NULL), b.data, (size_t)d * 4);
    }
    const int64_t numel = optvq_array_numel(&x), n_idx = B * heads * H * W;
    xq = malloc((size_t)(numel ? numel : 1) * sizeof(float));
    idx = malloc((size_t)(n_idx ? n_idx : 1) * sizeof(int64_t));
    if (!xq || !idx) {
        fprintf(stderr, "optvq quantize: out of memory\n");
        goto done;
    }
    float loss;
    if (optvq_quantizer_forward(q, x.data, B, H, W, xq, idx, &loss) != OPTVQ_OK) {
        fprintf(stderr, "optvq quantize: %s: %s\n", in, optvq_last_error());
        goto done;
    }
    int64_t ishape[4] = {B, heads, H, W}, flat[2] = {B, heads};
    if (write_npy(out, "indices.npy", OPTVQ_I64, x.ndim == 4 ? 4 : 2, x.ndim == 4 ? ishape : flat, idx) ||
        write_npy(out, "x_q.npy", OPTVQ_F32, x.ndim, x.shape, xq) ||
        write_npy(out, "loss.npy", OPTVQ_F32, 0, NULL, &loss))
        goto done;
    if (go) {
        gx = calloc((size_t)(numel ? numel : 1), sizeof(float));
        if (!gx) {
            fprintf(stderr, "optvq quantize: out of memory\n");
            goto done;
        }
        optvq_quantizer_zero_grad(q);
        if (optvq_quantizer_backward(q, g.data, 1.0f, gx) != OPTVQ_OK) {
            fprintf(stderr, "optvq quantize: %s\n", optvq_last_error());
            goto done;
        }
        int64_t eshape[2] = {cfg.n_e, d};
        if (write_npy(out, "grad_x.npy", OPTVQ_F32, x.ndim, x.shape, gx) ||
            write_npy(out, "grad_embedding.npy", OPTVQ_F32, 2, eshape,
                      optvq_quantizer_grad(q, OPTVQ_PARAM_EMBEDDING, NULL)))
            goto done;
        if (pw && (write_npy(out, "grad_proj_weight.npy", OPTVQ_F32, 2, wshape,
                             optvq_quantizer_grad(q, OPTVQ_PARAM_PROJ_WEIGHT, NULL)) ||
                   write_npy(out, "grad_proj_bias.npy", OPTVQ_F32, 1, bshape,
                             optvq_quantizer_grad(q, OPTVQ_PARAM_PROJ_BIAS, NULL))))
            goto done;
    }
    optvq_usage u;
    if (optvq_usage_compute(idx, n_idx, cfg.n_e, &u) == OPTVQ_OK)
        printf("vectors %lld  codes used %lld/%lld (%.1f%%)  dead %lld  perplexity %.2f  loss %.6g\n",
               (long long)n_idx, (long long)u.codes_used, (long long)u.n_e, 100.0 * u.fraction_used,
               (long long)u.dead_codes, u.perplexity, (double)loss);
    printf("optvq quantize: wrote %d files to %s (indices.npy, x_q.npy, loss.npy%s)\n", n_written, out,
           go ? ", grad_*.npy" : "");
    rc = 0;
done:
    if (rc != 0)
        while (n_written > 0)
            remove(written[--n_written]);
    optvq_array_free(&x);
    optvq_array_free(&e);
    optvq_array_free(&w);
    optvq_array_free(&b);
    optvq_array_free(&g);
    optvq_quantizer_free(q);
    free(xq);
    free(gx);
    free(idx);
    return rc;
}
