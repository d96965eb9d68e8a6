/* VQModel: encoder -> quant_conv -> quantizer -> post_quant_conv -> decoder
 * (docs/behaviour.md §2). The encoder and decoder are the graphs of
 * model/graph.c; inference runs them with activations ping-ponging between
 * two buffers plus the blocks' scratch, sized by the graphs' planner, so
 * memory stays a few activations, not the whole graph. One registry holds
 * every parameter, the quantizer's as aliases of its own buffers. */
#include "model/vqmodel.h"

#include "core/bigalloc.h"
#include "core/error.h"
#include "core/parallel.h"
#include "model/graph.h"
#include "nn/conv_infer.h"
#include "nn/gemm_bf16.h"
#include "nn/nn.h"

#include "core/rng.h"
#include "io/weights.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct optvq_model {
    model_config cfg;
    /* every parameter: encoder.*, decoder.*, quant_conv.*, post_quant_conv.*,
     * then quantize.* (aliases of the quantizer's buffers) */
    nn_params params;
    optvq_quantizer *quant;
    graph enc, dec;         /* encoder (+ quant_conv), (post_quant_conv +) decoder */
    graph_run enc_run, dec_run; /* their inference shapes and buffers             */
    /* inference convolutions of the encoder and of the decoder: their
     * precision, Winograd transforms and bf16 packed weights */
    nn_conv_cache *enc_conv, *dec_conv;
    optvq_precision precision;
    nn_workspace ws;
    float *act;             /* ping-pong a, b and the scratch buffers, one block */
    size_t act_floats;
    float *pp[2], *scratch[BLOCK_MAX_SCRATCH];
    float *z;               /* (B, e_dim, h, w) quantizer output (or input)       */
    size_t z_floats;
};

/* ---- inference memory ---- */

/* Plans both graphs for images (n, c, h, w) (decode_only: the decoder from
 * an (lh, lw) latent) and sizes the buffers and the workspace. */
static optvq_status prepare(optvq_model *m, int64_t n, int64_t c, int64_t h, int64_t w, int decode_only,
                            int64_t lh, int64_t lw)
{
    const int64_t e_dim = m->cfg.quantize.e_dim;
    graph_need need = {0};
    if (!decode_only) {
        OPTVQ_TRY(graph_plan(&m->enc_run, (block_shape){n, c, h, w}, &need));
        const block_shape z = m->enc_run.dims[m->enc.n];
        if (z.c != e_dim || z.h != lh || z.w != lw)
            return optvq_fail(OPTVQ_ERR_STATE, "model: the encoder gives (%lld, %lld, %lld), the quantizer wants "
                              "(%lld, %lld, %lld)", (long long)z.c, (long long)z.h, (long long)z.w,
                              (long long)e_dim, (long long)lh, (long long)lw);
    }
    OPTVQ_TRY(graph_plan(&m->dec_run, (block_shape){n, e_dim, lh, lw}, &need));
    const size_t floats = 2 * need.act_max + (size_t)need.scratch_infer * need.scratch;
    if (floats > m->act_floats) {
        free(m->act);
        m->act_floats = 0;
        m->act = optvq_big_alloc(floats * sizeof(float));
        if (!m->act)
            return optvq_fail(OPTVQ_ERR_NOMEM, "model: out of memory for activations (%zu MiB)", floats >> 18);
        m->act_floats = floats;
    }
    m->pp[0] = m->act;
    m->pp[1] = m->act + need.act_max;
    for (int i = 0; i < BLOCK_MAX_SCRATCH; i++)
        m->scratch[i] = i < need.scratch_infer ? m->act + 2 * need.act_max + (size_t)i * need.scratch : NULL;
    size_t zf = (size_t)(n * e_dim * lh * lw);
    if (zf > m->z_floats) {
        free(m->z);
        m->z = optvq_big_alloc(zf * sizeof(float));
        if (!m->z) {
            m->z_floats = 0;
            return optvq_fail(OPTVQ_ERR_NOMEM, "model: out of memory for the latent");
        }
        m->z_floats = zf;
    }
    return nn_workspace_reserve(&m->ws, need.ws_infer);
}

/* images -> the quantizer input, into out (NULL: a ping-pong buffer); after prepare. */
static optvq_status run_encoder(optvq_model *m, const float *images, float *out, const float **z)
{
    graph_layout_inference(&m->enc_run, images, m->pp[0], m->pp[1], out);
    OPTVQ_TRY(graph_forward(&m->enc_run, m->scratch, &m->ws));
    *z = m->enc_run.act[m->enc.n];
    return OPTVQ_OK;
}

/* ---- creation, weights ---- */

/* Entry points refuse a NULL handle or required buffer with this message
 * rather than crash (the header says which pointers may be NULL). */
static optvq_status null_arg(const char *function, const char *argument)
{
    return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: %s is NULL", function, argument);
}

/* The quantizer's tensors join the registry as aliases of its buffers,
 * with the roles of the reference's modules (nn.Embedding, nn.Linear). */
static optvq_status add_quantizer(optvq_model *m)
{
    static const char *const names[3] = {"quantize.embedding.weight", "quantize.proj.weight", "quantize.proj.bias"};
    static const nn_role roles[3] = {NN_ROLE_EMBEDDING, NN_ROLE_LINEAR_WEIGHT, NN_ROLE_BIAS};
    const int64_t d = m->cfg.quantize.e_dim / m->cfg.quantize.num_head;
    for (int w = 0; w < 3; w++) {
        float *data = optvq_quantizer_param(m->quant, (optvq_param)w, NULL);
        if (!data)
            continue;
        const int64_t shape[2] = {w == 0 ? m->cfg.quantize.n_e : d, d};
        int index;
        OPTVQ_TRY(nn_params_add_alias(&m->params, names[w], w == 2 ? 1 : 2, shape, roles[w], w == 0 ? 0 : d, data,
                                      optvq_quantizer_grad(m->quant, (optvq_param)w, NULL), &index));
        m->params.items[index].group = MODEL_GROUP_QUANTIZER;
    }
    return OPTVQ_OK;
}

static optvq_status build(optvq_model *m, uint64_t seed)
{
    nn_params_init(&m->params);
    OPTVQ_TRY(graph_build_model(&m->cfg, &m->params, &m->enc, &m->dec));
    OPTVQ_TRY(optvq_quantizer_create(&m->cfg.quantize, seed, &m->quant));
    OPTVQ_TRY(add_quantizer(m));
    OPTVQ_TRY(nn_params_finalize(&m->params));
    graph_bind(&m->enc, &m->params);
    graph_bind(&m->dec, &m->params);
    OPTVQ_TRY(graph_run_init(&m->enc_run, &m->enc));
    OPTVQ_TRY(graph_run_init(&m->dec_run, &m->dec));
    if (!(m->enc_conv = nn_conv_cache_create(nn_conv_cache_budget())) ||
        !(m->dec_conv = nn_conv_cache_create(nn_conv_cache_budget())))
        return OPTVQ_ERR_NOMEM;
    m->enc_run.conv = m->enc_conv; /* the trainer's own runs keep NULL */
    m->dec_run.conv = m->dec_conv;
    model_init_params(m, seed);
    return OPTVQ_OK;
}

/* PyTorch's default initialisation, by declared role: conv and transposed
 * conv weights and their biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))
 * (kaiming_uniform with a = sqrt(5)); GroupNorm weight 1, bias 0. The
 * quantizer's aliases keep the quantizer's own initialisation. */
void model_init_params(optvq_model *m, uint64_t seed)
{
    optvq_rng rng;
    optvq_rng_seed(&rng, seed ^ 0x5eedf00dull);
    for (int i = 0; i < m->params.count; i++) {
        nn_param *p = &m->params.items[i];
        if (p->alias)
            continue;
        if (p->role == NN_ROLE_NORM_WEIGHT || p->role == NN_ROLE_NORM_BIAS) {
            for (int64_t j = 0; j < p->numel; j++)
                p->data[j] = p->role == NN_ROLE_NORM_WEIGHT ? 1.0f : 0.0f;
            continue;
        }
        double bound = 1.0 / sqrt((double)(p->fan_in > 0 ? p->fan_in : 1));
        for (int64_t j = 0; j < p->numel; j++)
            p->data[j] = (float)((2.0 * optvq_rng_uniform(&rng) - 1.0) * bound);
    }
}

optvq_status optvq_model_create(const char *config_path, uint64_t seed, optvq_model **out)
{
    if (!out)
        return null_arg(__func__, "out");
    *out = NULL;
    if (!config_path)
        return null_arg(__func__, "config_path");
    optvq_model *m = calloc(1, sizeof *m);
    if (!m)
        return optvq_fail(OPTVQ_ERR_NOMEM, "model: out of memory");
    optvq_status st = model_config_load(config_path, &m->cfg);
    if (st == OPTVQ_OK)
        st = build(m, seed);
    if (st != OPTVQ_OK) {
        optvq_model_free(m);
        return st;
    }
    *out = m;
    return OPTVQ_OK;
}

optvq_status model_create_from_config(const model_config *cfg, uint64_t seed, optvq_model **out)
{
    *out = NULL;
    optvq_model *m = calloc(1, sizeof *m);
    if (!m)
        return optvq_fail(OPTVQ_ERR_NOMEM, "model: out of memory");
    m->cfg = *cfg;
    optvq_status st = build(m, seed);
    if (st != OPTVQ_OK) {
        optvq_model_free(m);
        return st;
    }
    *out = m;
    return OPTVQ_OK;
}

void optvq_model_free(optvq_model *m)
{
    if (!m)
        return;
    nn_params_free(&m->params);
    optvq_quantizer_free(m->quant);
    graph_run_free(&m->enc_run);
    graph_run_free(&m->dec_run);
    graph_free(&m->enc);
    graph_free(&m->dec);
    nn_workspace_free(&m->ws);
    nn_conv_cache_free(m->enc_conv);
    nn_conv_cache_free(m->dec_conv);
    free(m->act);
    free(m->z);
    free(m);
}

/* The expected tensors of a checkpoint: every registered parameter, the
 * quantizer's included. */
static optvq_status expected_list(optvq_model *m, optvq_expected_tensor **out, int64_t *n)
{
    optvq_expected_tensor *e = calloc((size_t)m->params.count + 1, sizeof *e);
    if (!e)
        return optvq_fail(OPTVQ_ERR_NOMEM, "model: out of memory");
    for (int i = 0; i < m->params.count; i++) {
        nn_param *p = &m->params.items[i];
        e[i].name = p->name;
        e[i].ndim = p->ndim;
        memcpy(e[i].shape, p->shape, sizeof(int64_t) * (size_t)p->ndim);
        e[i].dest = p->data;
    }
    *out = e;
    *n = m->params.count;
    return OPTVQ_OK;
}

optvq_status model_load_weights(optvq_model *m, const char *path)
{
    optvq_weights *w;
    OPTVQ_TRY(optvq_weights_load(path, &w));
    optvq_expected_tensor *e;
    int64_t n;
    optvq_status st = expected_list(m, &e, &n);
    if (st == OPTVQ_OK) {
        st = optvq_weights_load_into(w, e, n, path);
        free(e);
    }
    optvq_weights_free(w);
    return st;
}

optvq_status model_save_weights(optvq_model *m, const char *path)
{
    optvq_weights *w;
    OPTVQ_TRY(optvq_weights_create(&w));
    optvq_expected_tensor *e;
    int64_t n;
    optvq_status st = expected_list(m, &e, &n);
    for (int64_t i = 0; st == OPTVQ_OK && i < n; i++)
        st = optvq_weights_add(w, e[i].name, e[i].ndim, e[i].shape, e[i].dest);
    if (st == OPTVQ_OK)
        st = optvq_weights_save_safetensors(w, path);
    free(st == OPTVQ_OK || n ? e : NULL);
    optvq_weights_free(w);
    return st;
}

static int is_dir(const char *path)
{
    struct stat s;
    return stat(path, &s) == 0 && S_ISDIR(s.st_mode);
}

optvq_status optvq_model_load(const char *path, const char *weights, optvq_model **out)
{
    if (!out)
        return null_arg(__func__, "out");
    *out = NULL;
    if (!path)
        return null_arg(__func__, "path");
    char cfg_path[4096], w_path[4096];
    if (!weights) {
        struct stat path_st;
        if (stat(path, &path_st) != 0) /* say why: a typo is the usual cause */
            return optvq_fail(OPTVQ_ERR_IO, "%s: %s", path, strerror(errno));
        if (!is_dir(path))
            return optvq_fail(OPTVQ_ERR_INVALID_ARG,
                              "%s: not a model folder (config.json + model.safetensors); give a config and weights",
                              path);
        snprintf(cfg_path, sizeof cfg_path, "%s/config.json", path);
        snprintf(w_path, sizeof w_path, "%s/model.safetensors", path);
    } else {
        snprintf(cfg_path, sizeof cfg_path, "%s", path);
        snprintf(w_path, sizeof w_path, "%s", weights);
    }
    optvq_model *m;
    OPTVQ_TRY(optvq_model_create(cfg_path, 0, &m));
    optvq_status st = model_load_weights(m, w_path);
    if (st != OPTVQ_OK) {
        optvq_model_free(m);
        return st;
    }
    *out = m;
    return OPTVQ_OK;
}

optvq_status optvq_model_save(optvq_model *m, const char *dir)
{
    if (!m)
        return null_arg(__func__, "m");
    if (!dir)
        return null_arg(__func__, "dir");
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return optvq_fail(OPTVQ_ERR_IO, "%s: cannot create folder: %s", dir, strerror(errno));
    char p[4096];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    OPTVQ_TRY(model_save_weights(m, p));
    snprintf(p, sizeof p, "%s/config.json", dir);
    return model_config_save_json(&m->cfg, p);
}

/* ---- inference ---- */

/* A NULL model or unknown assignment leaves everything as it was (with a
 * message in optvq_last_error()): a void function has no status to return. */
void optvq_model_set_assign(optvq_model *m, optvq_assign assign)
{
    if (!m) {
        null_arg(__func__, "m");
        return;
    }
    if (optvq_quantizer_set_assign(m->quant, assign) == OPTVQ_OK)
        m->cfg.quantize.assign = assign;
}

optvq_status optvq_model_set_precision(optvq_model *m, optvq_precision precision)
{
    if (!m)
        return null_arg(__func__, "m");
    if (precision != OPTVQ_PRECISION_FP32 && precision != OPTVQ_PRECISION_BF16 &&
        precision != OPTVQ_PRECISION_BF16_ALL)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: unknown precision %d", __func__, (int)precision);
    /* the next encode or decode plans its workspace for the new precision */
    nn_conv_cache_set_precision(m->enc_conv,
                                precision == OPTVQ_PRECISION_BF16_ALL ? NN_PRECISION_BF16 : NN_PRECISION_FP32);
    nn_conv_cache_set_precision(m->dec_conv, precision == OPTVQ_PRECISION_FP32 ? NN_PRECISION_FP32 : NN_PRECISION_BF16);
    m->precision = precision;
    return OPTVQ_OK;
}

optvq_precision optvq_model_get_precision(const optvq_model *m) { return m ? m->precision : OPTVQ_PRECISION_FP32; }

int optvq_bf16_native(void) { return nn_bf16_available(); }

optvq_quantizer *optvq_model_quantizer(optvq_model *m)
{
    if (!m) {
        null_arg(__func__, "m");
        return NULL;
    }
    return m->quant;
}

static optvq_status check_images(const optvq_model *m, int64_t batch, int64_t h, int64_t w)
{
    const int64_t f = coder_downsample(&m->cfg.encoder);
    if (batch < 1 || h < f || w < f || h % f || w % f)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "model: images must be (B >= 1, %lld, H, W) with H, W multiples of %lld; got (%lld, ., %lld, %lld)",
                          (long long)m->cfg.encoder.in_channels, (long long)f, (long long)batch, (long long)h,
                          (long long)w);
    if ((double)batch * (double)h * (double)w > 1e10)
        return optvq_fail(OPTVQ_ERR_NOMEM, "model: input of %lld x %lld x %lld is absurd", (long long)batch,
                          (long long)h, (long long)w);
    return OPTVQ_OK;
}

/* NaN/Inf pixels are refused: ReLU would silently turn some of them into 0. */
static optvq_status check_finite(const optvq_model *m, const float *images, int64_t batch, int64_t height,
                                 int64_t width)
{
    const int64_t n = batch * m->cfg.encoder.in_channels * height * width;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(images[i]))
            return optvq_fail(OPTVQ_ERR_NUMERIC, "model: image %lld holds NaN/Inf (element %lld)",
                              (long long)(i / (n / batch)), (long long)(i % (n / batch)));
    return OPTVQ_OK;
}

optvq_status optvq_model_encode(optvq_model *m, const float *images, int64_t batch, int64_t height, int64_t width,
                                int64_t *tokens, float *latent)
{
    if (!m)
        return null_arg(__func__, "m");
    if (!images)
        return null_arg(__func__, "images");
    if (!tokens)
        return null_arg(__func__, "tokens");
    OPTVQ_TRY(check_images(m, batch, height, width));
    OPTVQ_TRY(check_finite(m, images, batch, height, width));
    const int64_t f = coder_downsample(&m->cfg.encoder), lh = height / f, lw = width / f;
    OPTVQ_TRY(prepare(m, batch, m->cfg.encoder.in_channels, height, width, 0, lh, lw));
    const float *z;
    OPTVQ_TRY(run_encoder(m, images, NULL, &z));
    return optvq_quantizer_forward(m->quant, z, batch, lh, lw, latent ? latent : m->z, tokens, NULL);
}

optvq_status optvq_model_decode(optvq_model *m, const int64_t *tokens, int64_t batch, int64_t token_h, int64_t token_w,
                                float *images)
{
    if (!m)
        return null_arg(__func__, "m");
    if (!tokens)
        return null_arg(__func__, "tokens");
    if (!images)
        return null_arg(__func__, "images");
    const int64_t f = coder_downsample(&m->cfg.encoder);
    /* bounded before token_h * f is formed, so the product cannot overflow */
    if (token_h < 1 || token_w < 1 || (double)token_h * (double)f > 1e10 || (double)token_w * (double)f > 1e10)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: token grid must be at least 1 x 1 and not absurd, got %lld x %lld",
                          __func__, (long long)token_h, (long long)token_w);
    OPTVQ_TRY(check_images(m, batch, token_h * f, token_w * f));
    OPTVQ_TRY(prepare(m, batch, m->cfg.encoder.in_channels, token_h * f, token_w * f, 1, token_h, token_w));
    OPTVQ_TRY(optvq_quantizer_decode(m->quant, tokens, batch, token_h, token_w, m->z));
    return model_decode_latent(m, m->z, batch, token_h, token_w, images);
}

optvq_status model_decode_latent(optvq_model *m, const float *latent, int64_t batch, int64_t lh, int64_t lw,
                                 float *images)
{
    const block_shape in = m->dec_run.dims[0];
    if (in.b != batch || in.h != lh || in.w != lw) /* an internal caller skipped prepare */
        return optvq_fail(OPTVQ_ERR_STATE, "model: decoder planned for (%lld, ., %lld, %lld), given (%lld, ., %lld, %lld)",
                          (long long)in.b, (long long)in.h, (long long)in.w, (long long)batch, (long long)lh,
                          (long long)lw);
    graph_layout_inference(&m->dec_run, latent, m->pp[0], m->pp[1], images);
    return graph_forward(&m->dec_run, m->scratch, &m->ws);
}

optvq_status optvq_model_reconstruct(optvq_model *m, const float *images, int64_t batch, int64_t height,
                                     int64_t width, float *out, int64_t *tokens)
{
    if (!m)
        return null_arg(__func__, "m");
    if (!images)
        return null_arg(__func__, "images");
    if (!out)
        return null_arg(__func__, "out");
    OPTVQ_TRY(check_images(m, batch, height, width));
    OPTVQ_TRY(check_finite(m, images, batch, height, width));
    const int64_t f = coder_downsample(&m->cfg.encoder), lh = height / f, lw = width / f;
    OPTVQ_TRY(prepare(m, batch, m->cfg.encoder.in_channels, height, width, 0, lh, lw));
    const float *z;
    OPTVQ_TRY(run_encoder(m, images, NULL, &z));
    OPTVQ_TRY(optvq_quantizer_forward(m->quant, z, batch, lh, lw, m->z, tokens, NULL));
    return model_decode_latent(m, m->z, batch, lh, lw, out);
}

optvq_status optvq_model_get_info(const optvq_model *m, optvq_model_info *info)
{
    if (!m)
        return null_arg(__func__, "m");
    if (!info)
        return null_arg(__func__, "info");
    memset(info, 0, sizeof *info);
    const model_config *c = &m->cfg;
    info->in_channels = c->encoder.in_channels;
    info->out_channels = c->decoder.out_channels;
    info->resolution = c->encoder.arch == ARCH_TAMING ? c->encoder.resolution : 32;
    info->downsample = coder_downsample(&c->encoder);
    info->e_dim = c->quantize.e_dim;
    info->num_head = c->quantize.num_head;
    info->n_e = c->quantize.n_e;
    info->code_dim = c->quantize.e_dim / c->quantize.num_head;
    info->assign = c->quantize.assign;
    info->encoder_arch = c->encoder.arch == ARCH_TAMING ? "taming VQGAN Encoder" : "plain CNN encoder";
    info->decoder_arch = c->decoder.arch == ARCH_TAMING ? "taming VQGAN Decoder" : "plain CNN decoder";
    for (int i = 0; i < m->params.count; i++) {
        const nn_param *p = &m->params.items[i];
        switch (p->group) {
        case MODEL_GROUP_ENCODER: info->params_encoder += p->numel; break;
        case MODEL_GROUP_DECODER: info->params_decoder += p->numel; break;
        case MODEL_GROUP_QUANTIZER: info->params_quantizer += p->numel; break;
        default: info->params_connectors += p->numel; break;
        }
    }
    info->params_total = info->params_encoder + info->params_decoder + info->params_connectors + info->params_quantizer;
    return OPTVQ_OK;
}

optvq_status model_encoder_forward(optvq_model *m, const float *images, int64_t batch, int64_t height,
                                   int64_t width, float *z)
{
    OPTVQ_TRY(check_images(m, batch, height, width));
    OPTVQ_TRY(check_finite(m, images, batch, height, width));
    const int64_t f = coder_downsample(&m->cfg.encoder), lh = height / f, lw = width / f;
    OPTVQ_TRY(prepare(m, batch, m->cfg.encoder.in_channels, height, width, 0, lh, lw));
    const float *out;
    return run_encoder(m, images, z, &out);
}

nn_params *model_params(optvq_model *m) { return &m->params; }

const graph *model_graph(const optvq_model *m, int decoder) { return decoder ? &m->dec : &m->enc; }

const model_config *model_get_config(const optvq_model *m) { return &m->cfg; }

nn_workspace *model_workspace(optvq_model *m) { return &m->ws; }
