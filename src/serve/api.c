/* The JSON API of 'optvq serve' (see api.h). */
#include "serve/api.h"

#include "cli/toy_sim.h"
#include "cli/util.h"
#include "eval/metrics.h"
#include "io/image.h"
#include "quant/quantizer_sinkhorn.h"
#include "serve/encode.h"
#include "serve/multipart.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FORM_PARTS 16
/* a side longer than this is refused whatever its pixel count (a strip of
 * 1 x 10^7 would still cost a large resize) */
#define MAX_SIDE 16384

static const char *const ASSIGNS[] = {"sinkhorn", "nearest", NULL};
static const char *const NORMALIZES[] = {"all", "dim", "null", NULL};

serve_reply serve_api_error(int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++) /* one line */
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    serve_reply r = {status, NULL};
    cJSON *o = cJSON_CreateObject();
    if (o && cJSON_AddStringToObject(o, "error", msg))
        r.json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!r.json) { /* out of memory: a fixed answer */
        r.status = 500;
        r.json = strdup("{\"error\":\"out of memory\"}");
    }
    return r;
}

static serve_reply reply_json(cJSON *o)
{
    serve_reply r = {200, o ? cJSON_PrintUnformatted(o) : NULL};
    cJSON_Delete(o);
    return r.json ? r : serve_api_error(500, "out of memory writing the answer");
}

/* ---- GET /api/models ------------------------------------------------------ */

static cJSON *model_json(const served_model *m)
{
    const optvq_model_info *i = &m->info;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", m->name);
    cJSON_AddStringToObject(o, "encoder", i->encoder_arch ? i->encoder_arch : "");
    cJSON_AddStringToObject(o, "decoder", i->decoder_arch ? i->decoder_arch : "");
    cJSON_AddNumberToObject(o, "resolution", (double)i->resolution);
    cJSON_AddNumberToObject(o, "in_channels", (double)i->in_channels);
    cJSON_AddNumberToObject(o, "out_channels", (double)i->out_channels);
    cJSON_AddNumberToObject(o, "downsample", (double)i->downsample);
    cJSON_AddNumberToObject(o, "n_e", (double)i->n_e);
    cJSON_AddNumberToObject(o, "num_head", (double)i->num_head);
    cJSON_AddNumberToObject(o, "code_dim", (double)i->code_dim);
    cJSON_AddNumberToObject(o, "params", (double)i->params_total);
    cJSON_AddStringToObject(o, "assign", ASSIGNS[m->defaults.assign]);
    cJSON_AddNumberToObject(o, "epsilon", (double)m->defaults.epsilon);
    cJSON_AddNumberToObject(o, "n_iters", m->defaults.n_iters);
    cJSON_AddStringToObject(o, "normalize", NORMALIZES[m->defaults.normalize]);
    cJSON *eval = m->eval_json ? cJSON_Parse(m->eval_json) : NULL;
    if (eval)
        cJSON_AddItemToObject(o, "eval", eval);
    else
        cJSON_AddNullToObject(o, "eval");
    return o;
}

serve_reply serve_api_models(const serve_api *api)
{
    cJSON *o = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(o, "models");
    for (int k = 0; k < api->n_models; k++)
        cJSON_AddItemToArray(list, model_json(&api->models[k]));
    cJSON_AddBoolToObject(o, "lpips", api->lpips != NULL);
    return reply_json(o);
}

/* ---- POST /api/reconstruct -------------------------------------------------- */

/* A form field's text, trimmed, into buf; 0, or -1 when it is too long or
 * holds a control character. */
static int field_text(const serve_part *p, char *buf, size_t size)
{
    const uint8_t *s = p->data, *e = p->data + p->len;
    while (s < e && isspace(*s))
        s++;
    while (e > s && isspace(e[-1]))
        e--;
    size_t n = (size_t)(e - s);
    if (n >= size)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] == 0x7f)
            return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return 0;
}

static int choice_index(const char *const *choices, const char *v)
{
    for (int i = 0; choices[i]; i++)
        if (!strcmp(choices[i], v))
            return i;
    return -1;
}

/* The error heatmap: per pixel the mean absolute error over the channels of
 * the two images in [0, 1], scaled by the largest one, through a
 * black-purple-orange-yellow ramp (inferno-like). Returns the largest error. */
static double error_map(const float *x, const float *y, int c, int h, int w, uint8_t *rgb)
{
    static const float stops[5][3] = {{0, 0, 4}, {87, 16, 110}, {188, 55, 84}, {249, 142, 9}, {252, 255, 164}};
    const size_t n = (size_t)h * (size_t)w;
    float *e = malloc(n * sizeof *e);
    if (!e)
        return -1;
    double emax = 0;
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (int k = 0; k < c; k++)
            s += fabs((double)x[k * n + i] - (double)y[k * n + i]);
        e[i] = (float)(s / c);
        emax = e[i] > emax ? e[i] : emax;
    }
    for (size_t i = 0; i < n; i++) {
        float t = emax > 0 ? (float)(e[i] / emax) * 4.0f : 0.0f;
        int j = t >= 4.0f ? 3 : (int)t;
        float f = t - (float)j;
        for (int k = 0; k < 3; k++)
            rgb[3 * i + k] = (uint8_t)lrintf(stops[j][k] + f * (stops[j + 1][k] - stops[j][k]));
    }
    free(e);
    return emax;
}

/* Model-space CHW in [-1, 1] -> a base64 PNG (the recover map, rounded, as
 * 'optvq reconstruct --out X.png' writes it). */
static char *png_of_signed(const float *chw, int c, int h, int w)
{
    optvq_image_u8 u;
    if (optvq_image_u8_alloc(&u, w, h, c) != OPTVQ_OK)
        return NULL;
    char *s = NULL;
    if (optvq_image_float_to_u8(chw, c, h, w, 1, OPTVQ_IMAGE_ROUND, &u) == OPTVQ_OK)
        s = serve_png_base64(u.data, w, h, c);
    optvq_image_u8_free(&u);
    return s;
}

typedef struct recon_request {
    const served_model *m;
    optvq_assign assign;
    optvq_normalize normalize;
    float epsilon;
    int n_iters;
    const serve_part *image;
} recon_request;

/* The form's fields, checked; a reply with status 0 means they are fine. */
static serve_reply read_form(const serve_api *api, const serve_part *parts, int n, recon_request *rq)
{
    serve_reply ok = {0, NULL};
    char v[SERVE_NAME_MAX];
    const serve_part *p;
    rq->m = &api->models[0];
    if ((p = serve_multipart_find(parts, n, "model"))) {
        if (field_text(p, v, sizeof v))
            return serve_api_error(400, "the 'model' field is too long or not text");
        rq->m = NULL;
        for (int k = 0; k < api->n_models && !rq->m; k++)
            if (!strcmp(api->models[k].name, v))
                rq->m = &api->models[k];
        if (!rq->m)
            return serve_api_error(400, "unknown model '%s' (GET /api/models lists them)", v);
    }
    rq->assign = rq->m->defaults.assign;
    rq->normalize = rq->m->defaults.normalize;
    rq->epsilon = rq->m->defaults.epsilon;
    rq->n_iters = rq->m->defaults.n_iters;
    if ((p = serve_multipart_find(parts, n, "assign"))) {
        int i = field_text(p, v, sizeof v) ? -1 : choice_index(ASSIGNS, v);
        if (i < 0)
            return serve_api_error(400, "the 'assign' field must be sinkhorn or nearest");
        rq->assign = (optvq_assign)i;
    }
    if ((p = serve_multipart_find(parts, n, "normalize"))) {
        int i = field_text(p, v, sizeof v) ? -1 : choice_index(NORMALIZES, v);
        if (i < 0)
            return serve_api_error(400, "the 'normalize' field must be all, dim or null");
        rq->normalize = (optvq_normalize)i;
    }
    if ((p = serve_multipart_find(parts, n, "epsilon"))) {
        char *end;
        errno = 0;
        double e = field_text(p, v, sizeof v) ? NAN : strtod(v, &end);
        if (errno || !isfinite(e) || *end || end == v || e < 1e-3 || e > 1e4)
            return serve_api_error(400, "the 'epsilon' field must be a number in [0.001, 10000]");
        rq->epsilon = (float)e;
    }
    if ((p = serve_multipart_find(parts, n, "n_iters"))) {
        char *end;
        errno = 0;
        long it = field_text(p, v, sizeof v) ? -1 : strtol(v, &end, 10);
        if (errno || it < 1 || it > 100 || *end || end == v)
            return serve_api_error(400, "the 'n_iters' field must be an integer in [1, 100]");
        rq->n_iters = (int)it;
    }
    rq->image = serve_multipart_find(parts, n, "image");
    if (!rq->image)
        return serve_api_error(400, "no 'image' field in the form");
    if (rq->image->len == 0)
        return serve_api_error(400, "the 'image' field is empty");
    return ok;
}

static void add_token_maps(cJSON *o, const int64_t *tokens, int64_t heads, int64_t th, int64_t tw)
{
    cJSON *t = cJSON_AddArrayToObject(o, "tokens");
    for (int64_t h = 0; h < heads; h++) {
        cJSON *rows = cJSON_CreateArray();
        for (int64_t y = 0; y < th; y++) {
            cJSON *row = cJSON_CreateArray();
            for (int64_t x = 0; x < tw; x++)
                cJSON_AddItemToArray(row, cJSON_CreateNumber((double)tokens[(h * th + y) * tw + x]));
            cJSON_AddItemToArray(rows, row);
        }
        cJSON_AddItemToArray(t, rows);
    }
}

serve_reply serve_api_reconstruct(const serve_api *api, const char *content_type, const uint8_t *body, size_t len)
{
    char err[256], boundary[SERVE_BOUNDARY_MAX + 1];
    if (api->n_models < 1)
        return serve_api_error(503, "no model is loaded");
    if (serve_multipart_boundary(content_type, boundary, err, sizeof err))
        return serve_api_error(415, "%s", err);
    serve_part parts[MAX_FORM_PARTS];
    int n = 0;
    if (serve_multipart_parse(boundary, body, len, parts, MAX_FORM_PARTS, &n, err, sizeof err))
        return serve_api_error(400, "%s", err);
    recon_request rq = {0};
    serve_reply bad = read_form(api, parts, n, &rq);
    if (bad.status)
        return bad;
    int64_t iw, ih;
    const char *format;
    int sr = serve_image_size(rq.image->data, rq.image->len, &iw, &ih, &format, err, sizeof err);
    if (sr == -1)
        return serve_api_error(415, "the 'image' field is not a PNG or JPEG image");
    if (sr < 0)
        return serve_api_error(400, "the uploaded image is malformed: %s", err);
    if (iw > MAX_SIDE || ih > MAX_SIDE || iw * ih > api->max_pixels)
        return serve_api_error(413, "the uploaded %s is %lldx%lld pixels: over the limit of %lld pixels (%d per side)",
                               format, (long long)iw, (long long)ih, (long long)api->max_pixels, MAX_SIDE);

    const served_model *m = rq.m;
    const optvq_model_info *info = &m->info;
    const int C = (int)info->in_channels, OC = (int)info->out_channels, R = (int)info->resolution;
    const int64_t heads = info->num_head, th = R / info->downsample, tw = R / info->downsample;
    const size_t plane = (size_t)R * (size_t)R;
    double t0 = cli_now();
    optvq_image_u8 u = {0};
    float *x = malloc((size_t)C * plane * sizeof *x), *y = malloc((size_t)OC * plane * sizeof *y);
    float *x01 = malloc((size_t)C * plane * sizeof *x01), *y01 = malloc((size_t)OC * plane * sizeof *y01);
    int64_t *tokens = malloc((size_t)(heads * th * tw) * sizeof *tokens);
    uint8_t *heat = malloc(plane * 3);
    cJSON *o = NULL;
    serve_reply reply;
    if (!x || !y || !x01 || !y01 || !tokens || !heat) {
        reply = serve_api_error(500, "out of memory");
        goto done;
    }
    if (optvq_image_decode_u8(rq.image->data, rq.image->len, "the uploaded image", C, &u) != OPTVQ_OK) {
        reply = serve_api_error(400, "%s", optvq_last_error());
        goto done;
    }
    if (optvq_image_preprocess_val(&u, R, x) != OPTVQ_OK) {
        reply = serve_api_error(400, "%s", optvq_last_error());
        goto done;
    }
    optvq_model_set_assign(m->model, rq.assign);
    if (quantizer_set_sinkhorn(optvq_model_quantizer(m->model), rq.normalize, rq.epsilon, rq.n_iters) != OPTVQ_OK ||
        optvq_model_reconstruct(m->model, x, 1, R, R, y, tokens) != OPTVQ_OK) {
        reply = serve_api_error(500, "%s", optvq_last_error());
        goto done;
    }
    double psnr = NAN, ssim = NAN, lpips = NAN;
    if (C == OC && metrics_batch_signed(x, y, 1, C, R, R, &psnr, &ssim) != OPTVQ_OK) {
        reply = serve_api_error(500, "%s", optvq_last_error());
        goto done;
    }
    metrics_recover(x, (int64_t)C * (int64_t)plane, x01);
    metrics_recover(y, (int64_t)OC * (int64_t)plane, y01);
    if (api->lpips && C == OC && R >= 31 &&
        cli_perceptual_add(api->lpips, "serve", x01, y01, 1, C, R, R, &lpips) != 0)
        lpips = NAN;
    optvq_usage usage;
    if (optvq_usage_compute(tokens, heads * th * tw, info->n_e, &usage) != OPTVQ_OK) {
        reply = serve_api_error(500, "%s", optvq_last_error());
        goto done;
    }
    double seconds = cli_now() - t0;
    double emax = C == OC ? error_map(x01, y01, C, R, R, heat) : -1;
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", m->name);
    cJSON_AddStringToObject(o, "assign", ASSIGNS[rq.assign]);
    cJSON_AddNumberToObject(o, "epsilon", (double)rq.epsilon);
    cJSON_AddNumberToObject(o, "n_iters", rq.n_iters);
    cJSON_AddStringToObject(o, "normalize", NORMALIZES[rq.normalize]);
    cJSON_AddStringToObject(o, "format", format);
    cJSON_AddNumberToObject(o, "upload_width", (double)iw);
    cJSON_AddNumberToObject(o, "upload_height", (double)ih);
    cJSON_AddNumberToObject(o, "width", R);
    cJSON_AddNumberToObject(o, "height", R);
    cJSON_AddNumberToObject(o, "channels", C);
    cJSON_AddNumberToObject(o, "n_e", (double)info->n_e);
    cJSON *shape = cJSON_AddArrayToObject(o, "token_shape");
    cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)heads));
    cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)th));
    cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)tw));
    add_token_maps(o, tokens, heads, th, tw);
    cJSON_AddNumberToObject(o, "codes_used", (double)usage.codes_used);
    cJSON_AddNumberToObject(o, "perplexity", usage.perplexity);
    if (isfinite(psnr)) {
        cJSON_AddNumberToObject(o, "psnr", psnr);
        cJSON_AddNumberToObject(o, "ssim", ssim);
    } else {
        cJSON_AddNullToObject(o, "psnr");
        cJSON_AddNullToObject(o, "ssim");
    }
    if (isfinite(lpips))
        cJSON_AddNumberToObject(o, "lpips", lpips);
    else
        cJSON_AddNullToObject(o, "lpips");
    cJSON_AddNumberToObject(o, "seconds", seconds);
    char *orig = png_of_signed(x, C, R, R), *rec = png_of_signed(y, OC, R, R);
    char *hm = emax >= 0 ? serve_png_base64(heat, R, R, 3) : NULL;
    if (!orig || !rec || (emax >= 0 && !hm)) {
        free(orig);
        free(rec);
        free(hm);
        reply = serve_api_error(500, "cannot encode the images");
        goto done;
    }
    cJSON_AddStringToObject(o, "original", orig);
    cJSON_AddStringToObject(o, "reconstruction", rec);
    if (hm)
        cJSON_AddStringToObject(o, "error_map", hm);
    else
        cJSON_AddNullToObject(o, "error_map");
    cJSON_AddNumberToObject(o, "error_max", emax >= 0 ? emax : 0);
    free(orig);
    free(rec);
    free(hm);
    reply = reply_json(o);
    o = NULL;
done:
    cJSON_Delete(o);
    optvq_image_u8_free(&u);
    free(x);
    free(y);
    free(x01);
    free(y01);
    free(tokens);
    free(heat);
    return reply;
}

/* ---- POST /api/toy -------------------------------------------------------- */

/* An optional integer member in [lo, hi]; -1 with a reply on a bad value. */
static int json_int(const cJSON *o, const char *key, int64_t lo, int64_t hi, int64_t *out, serve_reply *bad)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!isfinite(d) || d != floor(d) || d < (double)lo || d > (double)hi) {
        *bad = serve_api_error(400, "'%s' must be an integer in [%lld, %lld]", key, (long long)lo, (long long)hi);
        return -1;
    }
    *out = (int64_t)d;
    return 0;
}

static double round4(double v) { return round(v * 1e4) / 1e4; }

static cJSON *toy_frame_run(const toy_quant *t, int64_t points, int64_t codes)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "used", (double)t->used);
    cJSON_AddNumberToObject(r, "loss", (double)t->loss);
    cJSON *cb = cJSON_AddArrayToObject(r, "codes");
    for (int64_t k = 0; k < 2 * codes; k++)
        cJSON_AddItemToArray(cb, cJSON_CreateNumber(round4(t->codebook[k])));
    cJSON *as = cJSON_AddArrayToObject(r, "assign");
    for (int64_t i = 0; i < points; i++)
        cJSON_AddItemToArray(as, cJSON_CreateNumber((double)t->indices[i]));
    return r;
}

serve_reply serve_api_toy(const uint8_t *body, size_t len)
{
    cJSON *in = len ? cJSON_ParseWithLength((const char *)body, len) : cJSON_CreateObject();
    if (!in || !cJSON_IsObject(in)) {
        cJSON_Delete(in);
        return serve_api_error(400, "the body must be a JSON object");
    }
    int64_t points = 50, codes = 25, seed = 0, steps = 1000, frames = 100;
    double epsilon = 10;
    serve_reply bad = {0, NULL};
    if (json_int(in, "points", 1, SERVE_TOY_MAX_POINTS, &points, &bad) ||
        json_int(in, "codes", 1, SERVE_TOY_MAX_CODES, &codes, &bad) ||
        json_int(in, "seed", 0, 2147483647, &seed, &bad) ||
        json_int(in, "steps", 0, SERVE_TOY_MAX_STEPS, &steps, &bad) ||
        json_int(in, "frames", 1, SERVE_TOY_MAX_FRAMES, &frames, &bad)) {
        cJSON_Delete(in);
        return bad;
    }
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(in, "epsilon");
    if (e && !cJSON_IsNull(e)) {
        if (!cJSON_IsNumber(e) || !(e->valuedouble >= 1e-3 && e->valuedouble <= 1e4)) {
            cJSON_Delete(in);
            return serve_api_error(400, "'epsilon' must be a number in [0.001, 10000]");
        }
        epsilon = e->valuedouble;
    }
    cJSON_Delete(in);
    /* the answer holds frames x (points + 2 codes) numbers per quantizer: keep it under ~1M */
    while (frames > 1 && frames * (points + 2 * codes) > 500000)
        frames--;
    int64_t every = steps / frames > 0 ? steps / frames : 1;

    double t0 = cli_now();
    toy_sim sim;
    toy_sim_config cfg;
    toy_sim_config_default(&cfg);
    cfg.points = points;
    cfg.codes = codes;
    cfg.seed = (uint64_t)seed;
    cfg.epsilon = (float)epsilon;
    if (toy_sim_init(&sim, &cfg) != OPTVQ_OK)
        return serve_api_error(500, "toy: %s", optvq_last_error());
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "points_count", (double)points);
    cJSON_AddNumberToObject(o, "codes_count", (double)codes);
    cJSON_AddNumberToObject(o, "seed", (double)seed);
    cJSON_AddNumberToObject(o, "steps", (double)steps);
    cJSON_AddNumberToObject(o, "epsilon", epsilon);
    cJSON *pts = cJSON_AddArrayToObject(o, "points");
    for (int64_t i = 0; i < 2 * points; i++)
        cJSON_AddItemToArray(pts, cJSON_CreateNumber(round4(sim.x[i])));
    cJSON *fr = cJSON_AddArrayToObject(o, "frames");
    for (int64_t step = 0; step <= steps; step++) {
        if (toy_sim_forward(&sim, step) != OPTVQ_OK)
            goto fail;
        if (step % every == 0 || step == steps) {
            if (toy_sim_codebooks(&sim, step) != OPTVQ_OK)
                goto fail;
            cJSON *f = cJSON_CreateObject();
            cJSON_AddNumberToObject(f, "step", (double)step);
            cJSON_AddItemToObject(f, "vanilla", toy_frame_run(&sim.run[TOY_VANILLA], points, codes));
            cJSON_AddItemToObject(f, "optvq", toy_frame_run(&sim.run[TOY_OPTVQ], points, codes));
            cJSON_AddItemToArray(fr, f);
        }
        if (step < steps && toy_sim_update(&sim, step) != OPTVQ_OK)
            goto fail;
    }
    toy_sim_free(&sim);
    cJSON_AddNumberToObject(o, "seconds", cli_now() - t0);
    return reply_json(o);
fail:;
    serve_reply r = serve_api_error(500, "toy: %s", optvq_last_error());
    toy_sim_free(&sim);
    cJSON_Delete(o);
    return r;
}
