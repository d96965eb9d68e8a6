/* The reference's preprocessing on 8-bit images: cv2.resize INTER_LINEAR
 * reproduced bit for bit, albumentations' SmallestMaxSize / CenterCrop /
 * RandomCrop / HorizontalFlip, the value mappings to and from [-1, 1], and
 * the 'plain' pipeline (PyTorch bilinear on the normalised tensor).
 *
 * cv2.resize(INTER_LINEAR) on uint8, OpenCV 4.x (imgproc/src/resize.cpp):
 *   - same size: copy.
 *   - scale exactly 2 on both axes: INTER_AREA's fast path, the mean of each
 *     2x2 block rounded as (s + 2) >> 2.
 *   - otherwise per axis: fx = (float)((d + 0.5) * scale - 0.5), sx = floor,
 *     fx -= sx; sx < 0 -> (0, fx = 0); sx >= n - 1 -> (n - 1, fx = 0) (rows
 *     are clamped instead); weights round((1 - fx) * 2048), round(fx * 2048).
 *     Horizontal pass in int: S[sx] * a0 + S[sx + cn] * a1. Vertical pass
 *     (SIMD and the uchar specialisation of the scalar loop alike):
 *       (((S0 >> 4) * b0 >> 16) + ((S1 >> 4) * b1 >> 16) + 2) >> 2. */
#include "io/image.h"

#include "core/error.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define COEF_BITS 11
#define COEF_SCALE (1 << COEF_BITS)

static inline int sat_u8(int v) { return v < 0 ? 0 : v > 255 ? 255 : v; }
static inline int cv_floor_f(float v)
{
    int i = (int)v;
    return i - (v < (float)i);
}
static inline short sat_short_round(float v)
{
    long r = lrintf(v);
    return (short)(r < -32768 ? -32768 : r > 32767 ? 32767 : r);
}
static inline int clip_row(int y, int h) { return y < 0 ? 0 : y >= h ? h - 1 : y; }

static optvq_status check_u8(const char *what, const optvq_image_u8 *img)
{
    if (!img || !img->data || img->width <= 0 || img->height <= 0 ||
        (img->channels != 1 && img->channels != 3))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: invalid source image", what);
    return OPTVQ_OK;
}

/* INTER_AREA fast path for an exact 2x2 reduction (ResizeAreaFastVec: SIMD
 * and scalar tail both round (sum + 2) >> 2). */
static void resize_area2(const uint8_t *src, int sw, int cn, uint8_t *dst, int dh, int dw)
{
    int w = dw * cn;
    size_t sstride = (size_t)sw * cn;
    for (int dy = 0; dy < dh; dy++) {
        const uint8_t *s0 = src + sstride * (size_t)(2 * dy), *s1 = s0 + sstride;
        uint8_t *d = dst + (size_t)w * dy;
        for (int dx = 0; dx < w; dx++) {
            int px = dx / cn, k = dx % cn;
            int o = 2 * px * cn + k;
            d[dx] = (uint8_t)((s0[o] + s0[o + cn] + s1[o] + s1[o + cn] + 2) >> 2);
        }
    }
}

optvq_status optvq_image_resize_linear(const optvq_image_u8 *src, int out_height, int out_width,
                                       optvq_image_u8 *dst)
{
    memset(dst, 0, sizeof *dst);
    OPTVQ_TRY(check_u8("resize", src));
    const int sw = src->width, sh = src->height, cn = src->channels;
    const int dw = out_width, dh = out_height;
    OPTVQ_TRY(optvq_image_u8_alloc(dst, dw, dh, cn));
    if (dw == sw && dh == sh) {
        memcpy(dst->data, src->data, (size_t)sw * sh * cn);
        return OPTVQ_OK;
    }
    double inv_scale_x = (double)dw / sw, inv_scale_y = (double)dh / sh;
    double scale_x = 1. / inv_scale_x, scale_y = 1. / inv_scale_y;
    long iscale_x = lrint(scale_x), iscale_y = lrint(scale_y);
    int area_fast = fabs(scale_x - (double)iscale_x) < DBL_EPSILON &&
                    fabs(scale_y - (double)iscale_y) < DBL_EPSILON;
    if (area_fast && iscale_x == 2 && iscale_y == 2) {
        resize_area2(src->data, sw, cn, dst->data, dh, dw);
        return OPTVQ_OK;
    }

    const int W = dw * cn;
    int *xofs = malloc(sizeof(int) * (size_t)dw);
    short *alpha = malloc(sizeof(short) * 2 * (size_t)dw);
    int *yofs = malloc(sizeof(int) * (size_t)dh);
    short *beta = malloc(sizeof(short) * 2 * (size_t)dh);
    int *row0 = malloc(sizeof(int) * (size_t)W), *row1 = malloc(sizeof(int) * (size_t)W);
    if (!xofs || !alpha || !yofs || !beta || !row0 || !row1) {
        free(xofs), free(alpha), free(yofs), free(beta), free(row0), free(row1);
        optvq_image_u8_free(dst);
        return optvq_fail(OPTVQ_ERR_NOMEM, "resize: out of memory for %dx%d", dw, dh);
    }
    int xmax = dw;
    for (int dx = 0; dx < dw; dx++) {
        float fx = (float)((dx + 0.5) * scale_x - 0.5);
        int sx = cv_floor_f(fx);
        fx -= (float)sx;
        if (sx < 0)
            fx = 0, sx = 0;
        if (sx + 1 >= sw) {
            if (dx < xmax)
                xmax = dx;
            if (sx >= sw - 1)
                fx = 0, sx = sw - 1;
        }
        xofs[dx] = sx;
        alpha[2 * dx] = sat_short_round((1.f - fx) * COEF_SCALE);
        alpha[2 * dx + 1] = sat_short_round(fx * COEF_SCALE);
    }
    for (int dy = 0; dy < dh; dy++) {
        float fy = (float)((dy + 0.5) * scale_y - 0.5);
        int sy = cv_floor_f(fy);
        fy -= (float)sy;
        yofs[dy] = sy;
        beta[2 * dy] = sat_short_round((1.f - fy) * COEF_SCALE);
        beta[2 * dy + 1] = sat_short_round(fy * COEF_SCALE);
    }
    const size_t sstride = (size_t)sw * cn;
    for (int dy = 0; dy < dh; dy++) {
        const uint8_t *S[2] = {src->data + sstride * (size_t)clip_row(yofs[dy], sh),
                               src->data + sstride * (size_t)clip_row(yofs[dy] + 1, sh)};
        int *R[2] = {row0, row1};
        for (int r = 0; r < 2; r++) {
            const uint8_t *s = S[r];
            int *d = R[r];
            int dx = 0;
            for (; dx < xmax * cn; dx++) {
                int px = dx / cn, k = dx % cn;
                int o = xofs[px] * cn + k;
                d[dx] = s[o] * alpha[2 * px] + s[o + cn] * alpha[2 * px + 1];
            }
            for (; dx < W; dx++) {
                int px = dx / cn, k = dx % cn;
                d[dx] = s[xofs[px] * cn + k] * COEF_SCALE;
            }
        }
        const int b0 = beta[2 * dy], b1 = beta[2 * dy + 1];
        uint8_t *out = dst->data + (size_t)W * dy;
        for (int x = 0; x < W; x++) {
            int v = ((((row0[x] >> 4) * b0) >> 16) + (((row1[x] >> 4) * b1) >> 16) + 2) >> 2;
            out[x] = (uint8_t)sat_u8(v);
        }
    }
    free(xofs), free(alpha), free(yofs), free(beta), free(row0), free(row1);
    return OPTVQ_OK;
}

/* ---- albumentations geometry --------------------------------------------------- */

void optvq_image_smallest_max_size_dims(int height, int width, int max_size, int *out_height,
                                        int *out_width)
{
    double scale = (double)max_size / (double)(height < width ? height : width);
    double nh = nearbyint((double)height * scale), nw = nearbyint((double)width * scale);
    *out_height = nh < 1 ? 1 : nh > 1e9 ? 1000000000 : (int)nh;
    *out_width = nw < 1 ? 1 : nw > 1e9 ? 1000000000 : (int)nw;
}

optvq_status optvq_image_smallest_max_size(const optvq_image_u8 *src, int max_size,
                                           optvq_image_u8 *dst)
{
    memset(dst, 0, sizeof *dst);
    OPTVQ_TRY(check_u8("SmallestMaxSize", src));
    if (max_size <= 0 || max_size > OPTVQ_IMAGE_MAX_SIDE)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "SmallestMaxSize: size %d out of range", max_size);
    int nh, nw;
    optvq_image_smallest_max_size_dims(src->height, src->width, max_size, &nh, &nw);
    return optvq_image_resize_linear(src, nh, nw, dst);
}

optvq_status optvq_image_crop(const optvq_image_u8 *src, int y0, int x0, int height, int width,
                              optvq_image_u8 *dst)
{
    memset(dst, 0, sizeof *dst);
    OPTVQ_TRY(check_u8("crop", src));
    if (height <= 0 || width <= 0 || y0 < 0 || x0 < 0 || y0 > src->height - height ||
        x0 > src->width - width)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG,
                          "crop: window %dx%d at (%d, %d) does not fit in a %dx%d image", width,
                          height, x0, y0, src->width, src->height);
    OPTVQ_TRY(optvq_image_u8_alloc(dst, width, height, src->channels));
    size_t cn = (size_t)src->channels, row = (size_t)width * cn;
    for (int y = 0; y < height; y++)
        memcpy(dst->data + row * y,
               src->data + ((size_t)(y0 + y) * src->width + (size_t)x0) * cn, row);
    return OPTVQ_OK;
}

optvq_status optvq_image_center_crop(const optvq_image_u8 *src, int height, int width,
                                     optvq_image_u8 *dst)
{
    memset(dst, 0, sizeof *dst);
    OPTVQ_TRY(check_u8("CenterCrop", src));
    if (height > src->height || width > src->width)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "CenterCrop: %dx%d is larger than the %dx%d image",
                          width, height, src->width, src->height);
    return optvq_image_crop(src, (src->height - height) / 2, (src->width - width) / 2, height,
                            width, dst);
}

void optvq_image_flip_horizontal(optvq_image_u8 *img)
{
    int cn = img->channels, w = img->width;
    for (int y = 0; y < img->height; y++) {
        uint8_t *row = img->data + (size_t)y * w * cn;
        for (int a = 0, b = w - 1; a < b; a++, b--)
            for (int k = 0; k < cn; k++) {
                uint8_t t = row[a * cn + k];
                row[a * cn + k] = row[b * cn + k];
                row[b * cn + k] = t;
            }
    }
}

/* ---- value mappings ------------------------------------------------------------------ */

void optvq_image_u8_to_unit(const optvq_image_u8 *src, float *chw)
{
    size_t n = (size_t)src->width * src->height;
    int cn = src->channels;
    for (int k = 0; k < cn; k++)
        for (size_t i = 0; i < n; i++)
            chw[(size_t)k * n + i] = (float)(src->data[i * cn + k] / 255.0);
}

void optvq_image_u8_to_signed(const optvq_image_u8 *src, float *chw)
{
    float lut[256];
    for (int u = 0; u < 256; u++) {
        float v = (float)(u / 255.0); /* (image / 255).astype(np.float32) */
        lut[u] = (v - 0.5f) / 0.5f;   /* Normalize(mean=0.5, std=0.5)     */
    }
    size_t n = (size_t)src->width * src->height;
    int cn = src->channels;
    for (int k = 0; k < cn; k++)
        for (size_t i = 0; i < n; i++)
            chw[(size_t)k * n + i] = lut[src->data[i * cn + k]];
}

optvq_status optvq_image_float_to_u8(const float *chw, int channels, int height, int width,
                                     int signed_range, optvq_image_rounding rounding,
                                     optvq_image_u8 *out)
{
    if (!chw || !out || !out->data || out->channels != channels || out->height != height ||
        out->width != width || (channels != 1 && channels != 3) || height <= 0 || width <= 0)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "float_to_u8: image shapes do not match");
    size_t n = (size_t)width * height;
    for (int k = 0; k < channels; k++)
        for (size_t i = 0; i < n; i++) {
            float x = chw[(size_t)k * n + i];
            if (signed_range)
                x = (x + 1.0f) / 2.0f; /* recover map: Normalize(mean=-1, std=2) */
            if (!(x > 0.0f))
                x = 0.0f; /* also NaN */
            if (x > 1.0f)
                x = 1.0f;
            float s = x * 255.0f;
            int v = rounding == OPTVQ_IMAGE_TRUNCATE ? (int)s : (int)lrintf(s);
            out->data[i * channels + k] = (uint8_t)sat_u8(v);
        }
    return OPTVQ_OK;
}

/* ---- pipelines -------------------------------------------------------------------------- */

optvq_status optvq_image_preprocess_val(const optvq_image_u8 *src, int size, float *chw)
{
    optvq_image_u8 resized, cropped;
    OPTVQ_TRY(optvq_image_smallest_max_size(src, size, &resized));
    optvq_status st = optvq_image_center_crop(&resized, size, size, &cropped);
    optvq_image_u8_free(&resized);
    if (st != OPTVQ_OK)
        return st;
    optvq_image_u8_to_signed(&cropped, chw);
    optvq_image_u8_free(&cropped);
    return OPTVQ_OK;
}

optvq_status optvq_image_load_val(const char *path, int size, int channels, float *chw)
{
    return optvq_image_load_val_ex(path, size, channels, chw, NULL);
}

optvq_status optvq_image_load_val_ex(const char *path, int size, int channels, float *chw,
                                     int *file_channels)
{
    optvq_image_u8 img;
    OPTVQ_TRY(optvq_image_read_u8(path, channels, &img));
    if (file_channels)
        *file_channels = img.file_channels;
    optvq_status st = optvq_image_preprocess_val(&img, size, chw);
    optvq_image_u8_free(&img);
    if (st != OPTVQ_OK) /* name the file */
        return optvq_fail(st, "%s: %s", path, optvq_last_error());
    return OPTVQ_OK;
}

optvq_status optvq_image_preprocess_train(const optvq_image_u8 *src, int size, optvq_rng *rng,
                                          float *chw)
{
    optvq_image_u8 resized, cropped;
    OPTVQ_TRY(optvq_image_smallest_max_size(src, size, &resized));
    uint64_t y0 = optvq_rng_below(rng, (uint64_t)(resized.height - size + 1));
    uint64_t x0 = optvq_rng_below(rng, (uint64_t)(resized.width - size + 1));
    int flip = optvq_rng_uniform(rng) < 0.5;
    optvq_status st = optvq_image_crop(&resized, (int)y0, (int)x0, size, size, &cropped);
    optvq_image_u8_free(&resized);
    if (st != OPTVQ_OK)
        return st;
    if (flip)
        optvq_image_flip_horizontal(&cropped);
    optvq_image_u8_to_signed(&cropped, chw);
    optvq_image_u8_free(&cropped);
    return OPTVQ_OK;
}

/* ---- plain preprocessing (PyTorch bilinear) --------------------------------------------- */

void optvq_image_plain_dims(int height, int width, int size, int *out_height, int *out_width)
{
    if (height <= width) {
        *out_height = size;
        *out_width = (int)((int64_t)size * width / height);
    } else {
        *out_width = size;
        *out_height = (int)((int64_t)size * height / width);
    }
}

/* upsample_bilinear2d's source index and weights (align_corners=False). */
static void linear_weights(int in, int out, int *i0, int *i1, float *l0, float *l1)
{
    float scale = (float)in / (float)out;
    for (int d = 0; d < out; d++) {
        if (in == out) {
            i0[d] = i1[d] = d;
            l0[d] = 1.0f;
            l1[d] = 0.0f;
            continue;
        }
        float src = scale * ((float)d + 0.5f) - 0.5f;
        if (src < 0)
            src = 0;
        int a = (int)src;
        i0[d] = a;
        i1[d] = a + (a < in - 1 ? 1 : 0);
        float l = src - (float)a;
        l = l < 0 ? 0 : l > 1 ? 1 : l;
        l1[d] = l;
        l0[d] = 1.0f - l;
    }
}

optvq_status optvq_image_resize_bilinear_f32(const float *src, int channels, int height,
                                             int width, int out_height, int out_width,
                                             float *dst)
{
    if (!src || !dst || channels <= 0 || height <= 0 || width <= 0 || out_height <= 0 ||
        out_width <= 0 || out_height > OPTVQ_IMAGE_MAX_SIDE || out_width > OPTVQ_IMAGE_MAX_SIDE)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "bilinear resize: invalid sizes");
    int *yi0 = malloc(sizeof(int) * (size_t)out_height), *yi1 = malloc(sizeof(int) * (size_t)out_height);
    int *xi0 = malloc(sizeof(int) * (size_t)out_width), *xi1 = malloc(sizeof(int) * (size_t)out_width);
    float *yl0 = malloc(sizeof(float) * (size_t)out_height), *yl1 = malloc(sizeof(float) * (size_t)out_height);
    float *xl0 = malloc(sizeof(float) * (size_t)out_width), *xl1 = malloc(sizeof(float) * (size_t)out_width);
    optvq_status st = OPTVQ_OK;
    if (!yi0 || !yi1 || !xi0 || !xi1 || !yl0 || !yl1 || !xl0 || !xl1) {
        st = optvq_fail(OPTVQ_ERR_NOMEM, "bilinear resize: out of memory");
        goto done;
    }
    linear_weights(height, out_height, yi0, yi1, yl0, yl1);
    linear_weights(width, out_width, xi0, xi1, xl0, xl1);
    for (int c = 0; c < channels; c++) {
        const float *s = src + (size_t)c * height * width;
        float *d = dst + (size_t)c * out_height * out_width;
        for (int y = 0; y < out_height; y++) {
            const float *r0 = s + (size_t)yi0[y] * width, *r1 = s + (size_t)yi1[y] * width;
            for (int x = 0; x < out_width; x++) {
                float t0 = r0[xi0[x]] * xl0[x] + r0[xi1[x]] * xl1[x];
                float t1 = r1[xi0[x]] * xl0[x] + r1[xi1[x]] * xl1[x];
                d[(size_t)y * out_width + x] = t0 * yl0[y] + t1 * yl1[y];
            }
        }
    }
done:
    free(yi0), free(yi1), free(xi0), free(xi1), free(yl0), free(yl1), free(xl0), free(xl1);
    return st;
}

optvq_status optvq_image_plain_preprocess(const optvq_image_u8 *src, int size, float *chw)
{
    OPTVQ_TRY(check_u8("plain preprocess", src));
    if (size <= 0 || size > OPTVQ_IMAGE_MAX_SIDE)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "plain preprocess: size %d out of range", size);
    int oh, ow;
    optvq_image_plain_dims(src->height, src->width, size, &oh, &ow);
    if (ow <= 0 || oh <= 0 || ow > OPTVQ_IMAGE_MAX_SIDE || oh > OPTVQ_IMAGE_MAX_SIDE)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "plain preprocess: output %dx%d out of range", ow,
                          oh);
    int cn = src->channels;
    size_t n = (size_t)src->width * src->height;
    float *tmp = malloc(sizeof(float) * n * cn);
    if (!tmp)
        return optvq_fail(OPTVQ_ERR_NOMEM, "plain preprocess: out of memory");
    for (int k = 0; k < cn; k++)
        for (size_t i = 0; i < n; i++) {
            float v = (float)src->data[i * cn + k] / 255.0f; /* ToTensor: float32 div */
            tmp[(size_t)k * n + i] = (v - 0.5f) / 0.5f;      /* Normalize(0.5, 0.5)   */
        }
    optvq_status st =
        optvq_image_resize_bilinear_f32(tmp, cn, src->height, src->width, oh, ow, chw);
    free(tmp);
    return st;
}
