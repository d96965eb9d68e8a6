/* PNG/JPEG decoding and PNG encoding (libpng, libjpeg), folder listing.
 *
 * Files are read whole into memory (capped) and decoded from there, so a
 * short file is seen as truncation by both decoders. libpng and libjpeg
 * report fatal errors through callbacks that longjmp back here; their
 * warnings are swallowed (the library never prints). Everything that the
 * callbacks may free after a longjmp lives in heap-allocated context
 * structs, never in automatic variables changed after setjmp. */
#include "io/image.h"

#include "core/atomic_file.h"
#include "core/error.h"

#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

#define IMAGE_MAX_FILE_BYTES ((int64_t)1 << 30) /* 1 GiB of compressed data */

/* ---- allocation ------------------------------------------------------------ */

static optvq_status check_dims(const char *what, int width, int height, int channels)
{
    if (channels != 1 && channels != 3)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: channels must be 1 or 3, got %d", what,
                          channels);
    if (width <= 0 || height <= 0)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: image size %dx%d is empty", what, width,
                          height);
    if (width > OPTVQ_IMAGE_MAX_SIDE || height > OPTVQ_IMAGE_MAX_SIDE ||
        (int64_t)width * height > OPTVQ_IMAGE_MAX_PIXELS)
        return optvq_fail(OPTVQ_ERR_NOMEM, "%s: image size %dx%d exceeds the limit (%d per side, %lld pixels)",
                          what, width, height, OPTVQ_IMAGE_MAX_SIDE,
                          (long long)OPTVQ_IMAGE_MAX_PIXELS);
    return OPTVQ_OK;
}

optvq_status optvq_image_u8_alloc(optvq_image_u8 *img, int width, int height, int channels)
{
    memset(img, 0, sizeof *img);
    OPTVQ_TRY(check_dims("image", width, height, channels));
    size_t n = (size_t)width * height * channels;
    img->data = calloc(n, 1);
    if (!img->data)
        return optvq_fail(OPTVQ_ERR_NOMEM, "image: cannot allocate %dx%dx%d pixels", width, height,
                          channels);
    img->width = width;
    img->height = height;
    img->channels = channels;
    return OPTVQ_OK;
}

optvq_status optvq_image_f32_alloc(optvq_image_f32 *img, int width, int height, int channels)
{
    memset(img, 0, sizeof *img);
    OPTVQ_TRY(check_dims("image", width, height, channels));
    size_t n = (size_t)width * height * channels;
    img->data = calloc(n, sizeof(float));
    if (!img->data)
        return optvq_fail(OPTVQ_ERR_NOMEM, "image: cannot allocate %dx%dx%d floats", width, height,
                          channels);
    img->width = width;
    img->height = height;
    img->channels = channels;
    return OPTVQ_OK;
}

void optvq_image_u8_free(optvq_image_u8 *img)
{
    if (!img)
        return;
    free(img->data);
    memset(img, 0, sizeof *img);
}

void optvq_image_f32_free(optvq_image_f32 *img)
{
    if (!img)
        return;
    free(img->data);
    memset(img, 0, sizeof *img);
}

/* ---- whole-file read --------------------------------------------------------- */

static optvq_status read_file(const char *path, uint8_t **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return optvq_fail(OPTVQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return optvq_fail(OPTVQ_ERR_IO, "%s: not a regular file", path);
    }
    if ((int64_t)st.st_size > IMAGE_MAX_FILE_BYTES) {
        fclose(fp);
        return optvq_fail(OPTVQ_ERR_NOMEM, "%s: file of %lld bytes is too large for an image", path,
                          (long long)st.st_size);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *b = malloc(n ? n : 1);
    if (!b) {
        fclose(fp);
        return optvq_fail(OPTVQ_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, n);
    }
    size_t got = n ? fread(b, 1, n, fp) : 0;
    int err = ferror(fp);
    fclose(fp);
    if (err || got != n) {
        free(b);
        return optvq_fail(OPTVQ_ERR_IO, "%s: read error", path);
    }
    *buf = b;
    *len = n;
    return OPTVQ_OK;
}

/* ---- decoded samples before conversion ------------------------------------------ */

typedef struct raw_image {
    int width, height;
    int channels;  /* 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA */
    int depth;     /* 8 or 16 (16: native-endian uint16) */
    void *data;    /* interleaved */
} raw_image;

/* Frees *r's data; used by both decoders. */
static void raw_free(raw_image *r)
{
    free(r->data);
    r->data = NULL;
}

/* ---- PNG ----------------------------------------------------------------------- */

typedef struct png_ctx {
    jmp_buf jb;
    const uint8_t *buf;
    size_t len, pos;
    int truncated;
    int too_large;         /* msg then holds the whole reason */
    char msg[200];
    uint8_t *pixels;       /* decoded rows (freed on error) */
    png_bytep *rows;
} png_ctx;

static void png_error_cb(png_structp png, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "unknown libpng error");
    longjmp(c->jb, 1);
}

static void png_warning_cb(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static void png_read_cb(png_structp png, png_bytep out, size_t n)
{
    png_ctx *c = png_get_io_ptr(png);
    if (n > c->len - c->pos) {
        c->truncated = 1;
        png_error(png, "unexpected end of file");
    }
    memcpy(out, c->buf + c->pos, n);
    c->pos += n;
}

static int host_little_endian(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

static optvq_status decode_png(const char *path, const uint8_t *buf, size_t len, int keep16,
                               raw_image *out)
{
    memset(out, 0, sizeof *out);
    png_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory", path);
    c->buf = buf;
    c->len = len;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, c, png_error_cb, png_warning_cb);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
        free(c);
        return optvq_fail(OPTVQ_ERR_NOMEM, "%s: cannot create a PNG decoder", path);
    }
    if (setjmp(c->jb)) {
        optvq_status st = OPTVQ_ERR_FORMAT;
        if (c->truncated)
            optvq_fail(st, "%s: truncated PNG file (%zu bytes)", path, len);
        else if (c->too_large)
            optvq_fail(st, "%s: PNG %s", path, c->msg);
        else
            optvq_fail(st, "%s: corrupt PNG: %s", path, c->msg);
        png_destroy_read_struct(&png, &info, NULL);
        free(c->rows);
        free(c->pixels);
        free(c);
        return st;
    }
    png_set_read_fn(png, c, png_read_cb);
    /* libpng's own limit would stop at the header with "Invalid IHDR data";
     * the check below names the size and the limit instead */
    png_set_user_limits(png, 0x7fffffffu, 0x7fffffffu);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int bit_depth = png_get_bit_depth(png, info);
    if (w == 0 || h == 0 || w > OPTVQ_IMAGE_MAX_SIDE || h > OPTVQ_IMAGE_MAX_SIDE ||
        (int64_t)w * h > OPTVQ_IMAGE_MAX_PIXELS) {
        snprintf(c->msg, sizeof c->msg, "image size %ux%u exceeds the limit (%d per side, %lld pixels)",
                 (unsigned)w, (unsigned)h, OPTVQ_IMAGE_MAX_SIDE, (long long)OPTVQ_IMAGE_MAX_PIXELS);
        c->too_large = 1;
        longjmp(c->jb, 1);
    }
    png_set_expand(png); /* palette -> RGB, grey < 8 bits -> 8, tRNS -> alpha */
    if (bit_depth == 16) {
        if (!keep16)
            png_set_strip_16(png); /* high byte, as PIL */
        else if (host_little_endian())
            png_set_swap(png);
    }
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int ch = png_get_channels(png, info);
    int depth = png_get_bit_depth(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (ch < 1 || ch > 4 || (depth != 8 && depth != 16) ||
        rowbytes != (size_t)w * ch * (depth / 8)) {
        snprintf(c->msg, sizeof c->msg, "unsupported PNG layout (%d channels, %d bits)", ch, depth);
        longjmp(c->jb, 1);
    }
    c->pixels = malloc(rowbytes * h);
    c->rows = malloc(sizeof(png_bytep) * h);
    if (!c->pixels || !c->rows) {
        snprintf(c->msg, sizeof c->msg, "out of memory for %ux%u pixels", (unsigned)w, (unsigned)h);
        longjmp(c->jb, 1);
    }
    for (png_uint_32 y = 0; y < h; y++)
        c->rows[y] = c->pixels + rowbytes * y;
    png_read_image(png, c->rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    out->width = (int)w;
    out->height = (int)h;
    out->channels = ch;
    out->depth = depth;
    out->data = c->pixels;
    free(c->rows);
    free(c);
    return OPTVQ_OK;
}

/* ---- JPEG ---------------------------------------------------------------------- */

typedef struct jpeg_ctx {
    struct jpeg_error_mgr pub; /* first: libjpeg casts cinfo->err to this */
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
    int truncated;
    int too_large;
    uint8_t *pixels;
} jpeg_ctx;

static void jpeg_error_exit_cb(j_common_ptr cinfo)
{
    jpeg_ctx *c = (jpeg_ctx *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, c->msg);
    longjmp(c->jb, 1);
}

static void jpeg_emit_message_cb(j_common_ptr cinfo, int level)
{
    jpeg_ctx *c = (jpeg_ctx *)cinfo->err;
    if (level < 0) { /* a warning */
        if (cinfo->err->msg_code == JWRN_JPEG_EOF)
            c->truncated = 1;
        cinfo->err->num_warnings++;
    }
}

static void jpeg_output_message_cb(j_common_ptr cinfo) { (void)cinfo; }

static uint8_t muldiv255(unsigned a, unsigned b)
{
    unsigned t = a * b + 128;
    return (uint8_t)((t + (t >> 8)) >> 8);
}

static optvq_status decode_jpeg(const char *path, const uint8_t *buf, size_t len, raw_image *out)
{
    memset(out, 0, sizeof *out);
    jpeg_ctx *c = calloc(1, sizeof *c);
    struct jpeg_decompress_struct *cinfo = calloc(1, sizeof *cinfo);
    if (!c || !cinfo) {
        free(c);
        free(cinfo);
        return optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory", path);
    }
    cinfo->err = jpeg_std_error(&c->pub);
    c->pub.error_exit = jpeg_error_exit_cb;
    c->pub.emit_message = jpeg_emit_message_cb;
    c->pub.output_message = jpeg_output_message_cb;
    if (setjmp(c->jb)) {
        optvq_status st = OPTVQ_ERR_FORMAT;
        if (c->truncated)
            optvq_fail(st, "%s: truncated JPEG file (%zu bytes)", path, len);
        else if (c->too_large)
            optvq_fail(st, "%s: JPEG %s", path, c->msg);
        else
            optvq_fail(st, "%s: corrupt JPEG: %s", path, c->msg);
        jpeg_destroy_decompress(cinfo);
        free(c->pixels);
        free(c);
        free(cinfo);
        return st;
    }
    jpeg_create_decompress(cinfo);
    jpeg_mem_src(cinfo, buf, (unsigned long)len);
    jpeg_read_header(cinfo, TRUE);
    unsigned w = cinfo->image_width, h = cinfo->image_height;
    if (w == 0 || h == 0 || w > OPTVQ_IMAGE_MAX_SIDE || h > OPTVQ_IMAGE_MAX_SIDE ||
        (int64_t)w * h > OPTVQ_IMAGE_MAX_PIXELS) {
        snprintf(c->msg, sizeof c->msg, "image size %ux%u exceeds the limit (%d per side, %lld pixels)",
                 w, h, OPTVQ_IMAGE_MAX_SIDE, (long long)OPTVQ_IMAGE_MAX_PIXELS);
        c->too_large = 1;
        longjmp(c->jb, 1);
    }
    int cmyk = 0;
    switch (cinfo->jpeg_color_space) {
    case JCS_GRAYSCALE: cinfo->out_color_space = JCS_GRAYSCALE; break;
    case JCS_CMYK:
    case JCS_YCCK: cinfo->out_color_space = JCS_CMYK; cmyk = 1; break;
    default: cinfo->out_color_space = JCS_RGB; break;
    }
    jpeg_start_decompress(cinfo);
    int comps = cinfo->output_components;
    if (cinfo->output_width != w || cinfo->output_height != h ||
        comps != (cmyk ? 4 : cinfo->out_color_space == JCS_GRAYSCALE ? 1 : 3)) {
        snprintf(c->msg, sizeof c->msg, "unexpected decoder output layout");
        longjmp(c->jb, 1);
    }
    size_t stride = (size_t)w * comps;
    c->pixels = malloc(stride * h);
    if (!c->pixels) {
        snprintf(c->msg, sizeof c->msg, "out of memory for %ux%u pixels", w, h);
        longjmp(c->jb, 1);
    }
    while (cinfo->output_scanline < h) {
        JSAMPROW row = c->pixels + stride * cinfo->output_scanline;
        if (jpeg_read_scanlines(cinfo, &row, 1) != 1) {
            snprintf(c->msg, sizeof c->msg, "decoder stalled");
            longjmp(c->jb, 1);
        }
    }
    jpeg_finish_decompress(cinfo);
    if (c->truncated) {
        snprintf(c->msg, sizeof c->msg, "truncated");
        longjmp(c->jb, 1);
    }
    int adobe = cinfo->saw_Adobe_marker;
    jpeg_destroy_decompress(cinfo);
    uint8_t *px = c->pixels;
    if (cmyk) { /* CMYK -> RGB in place, as PIL (Adobe files store inverted values) */
        size_t n = (size_t)w * h;
        for (size_t i = 0; i < n; i++) {
            unsigned cc = px[4 * i], m = px[4 * i + 1], y = px[4 * i + 2], k = px[4 * i + 3];
            if (!adobe) {
                cc = 255 - cc, m = 255 - m, y = 255 - y, k = 255 - k;
            }
            px[3 * i] = muldiv255(cc, k);
            px[3 * i + 1] = muldiv255(m, k);
            px[3 * i + 2] = muldiv255(y, k);
        }
        comps = 3;
    }
    out->width = (int)w;
    out->height = (int)h;
    out->channels = comps;
    out->depth = 8;
    out->data = px;
    free(c);
    free(cinfo);
    return OPTVQ_OK;
}

/* ---- format dispatch ---------------------------------------------------------------- */

/* Decodes a whole file held in memory; `path` names it in messages. */
static optvq_status decode_buffer(const char *path, const uint8_t *buf, size_t len, int keep16, raw_image *out)
{
    memset(out, 0, sizeof *out);
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    optvq_status st;
    if (len >= 8 && memcmp(buf, png_sig, 8) == 0)
        st = decode_png(path, buf, len, keep16, out);
    else if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF)
        st = decode_jpeg(path, buf, len, out);
    else if (len == 0)
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: empty file, not an image", path);
    else
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: not a PNG or JPEG image", path);
    return st;
}

static optvq_status decode_file(const char *path, int keep16, raw_image *out)
{
    memset(out, 0, sizeof *out);
    uint8_t *buf;
    size_t len;
    OPTVQ_TRY(read_file(path, &buf, &len));
    optvq_status st = decode_buffer(path, buf, len, keep16, out);
    free(buf);
    return st;
}

/* Luma of PIL's convert("L"): (19595 R + 38470 G + 7471 B + 0x8000) >> 16. */
static inline unsigned pil_luma(unsigned r, unsigned g, unsigned b)
{
    return (unsigned)(((uint64_t)r * 19595 + (uint64_t)g * 38470 + (uint64_t)b * 7471 + 0x8000) >> 16);
}

/* Sample s (0 .. channels-1 of the target) of pixel i, at the raw depth. */
static inline unsigned raw_sample(const raw_image *r, size_t i, int target_channels, int s)
{
    int rc = r->channels;
    size_t base = i * rc;
    unsigned v[3];
    if (r->depth == 8) {
        const uint8_t *p = (const uint8_t *)r->data + base;
        if (rc <= 2) /* grey (+ alpha) */
            return p[0];
        v[0] = p[0], v[1] = p[1], v[2] = p[2];
    } else {
        const uint16_t *p = (const uint16_t *)r->data + base;
        if (rc <= 2)
            return p[0];
        v[0] = p[0], v[1] = p[1], v[2] = p[2];
    }
    if (target_channels == 1)
        return pil_luma(v[0], v[1], v[2]);
    return v[s];
}

/* 8-bit pixels of `channels` from a decoded image (freed here). */
static optvq_status raw_to_u8(raw_image *rp, int channels, optvq_image_u8 *out)
{
    raw_image r = *rp;
    optvq_status st = optvq_image_u8_alloc(out, r.width, r.height, channels);
    if (st != OPTVQ_OK) {
        raw_free(&r);
        return st;
    }
    size_t n = (size_t)r.width * r.height;
    for (size_t i = 0; i < n; i++)
        for (int s = 0; s < channels; s++)
            out->data[i * channels + s] = (uint8_t)raw_sample(&r, i, channels, s);
    out->file_channels = r.channels <= 2 ? 1 : 3;
    raw_free(&r);
    return OPTVQ_OK;
}

optvq_status optvq_image_read_u8(const char *path, int channels, optvq_image_u8 *out)
{
    memset(out, 0, sizeof *out);
    if (channels != 1 && channels != 3)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: channels must be 1 or 3, got %d", path,
                          channels);
    raw_image r;
    OPTVQ_TRY(decode_file(path, 0, &r));
    return raw_to_u8(&r, channels, out);
}

optvq_status optvq_image_decode_u8(const void *data, size_t len, const char *name, int channels,
                                   optvq_image_u8 *out)
{
    if (!out)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "image: out is NULL");
    memset(out, 0, sizeof *out);
    if (!name)
        name = "image";
    if (!data && len)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: data is NULL", name);
    if (channels != 1 && channels != 3)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: channels must be 1 or 3, got %d", name,
                          channels);
    raw_image r;
    OPTVQ_TRY(decode_buffer(name, data ? data : (const void *)"", len, 0, &r));
    return raw_to_u8(&r, channels, out);
}

optvq_status optvq_image_read(const char *path, int channels, optvq_image_f32 *out)
{
    memset(out, 0, sizeof *out);
    if (channels != 1 && channels != 3)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: channels must be 1 or 3, got %d", path,
                          channels);
    raw_image r;
    OPTVQ_TRY(decode_file(path, 1, &r));
    optvq_status st = optvq_image_f32_alloc(out, r.width, r.height, channels);
    if (st != OPTVQ_OK) {
        raw_free(&r);
        return st;
    }
    size_t n = (size_t)r.width * r.height;
    double maxv = r.depth == 16 ? 65535.0 : 255.0;
    for (int s = 0; s < channels; s++) {
        float *plane = out->data + (size_t)s * n;
        for (size_t i = 0; i < n; i++)
            plane[i] = (float)(raw_sample(&r, i, channels, s) / maxv);
    }
    raw_free(&r);
    return OPTVQ_OK;
}

/* ---- PNG writing ------------------------------------------------------------------- */

optvq_status optvq_image_write_png_u8(const char *path, const optvq_image_u8 *img)
{
    OPTVQ_TRY(check_dims(path, img->width, img->height, img->channels));
    if (!img->data)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: image has no pixels", path);
    optvq_atomic_file af;
    OPTVQ_TRY(optvq_atomic_open(&af, path));
    png_ctx *c = calloc(1, sizeof *c);
    png_structp png = c ? png_create_write_struct(PNG_LIBPNG_VER_STRING, c, png_error_cb,
                                                  png_warning_cb)
                        : NULL;
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!c || !png || !info) {
        if (png)
            png_destroy_write_struct(&png, NULL);
        free(c);
        optvq_atomic_abort(&af);
        return optvq_fail(OPTVQ_ERR_NOMEM, "%s: cannot create a PNG encoder", path);
    }
    if (setjmp(c->jb)) {
        optvq_status st = optvq_fail(OPTVQ_ERR_IO, "%s: PNG encoding failed: %s", path, c->msg);
        png_destroy_write_struct(&png, &info);
        free(c);
        optvq_atomic_abort(&af);
        return st;
    }
    png_init_io(png, af.fp);
    png_set_IHDR(png, info, (png_uint_32)img->width, (png_uint_32)img->height, 8,
                 img->channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t stride = (size_t)img->width * img->channels;
    for (int y = 0; y < img->height; y++)
        png_write_row(png, img->data + stride * y);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    free(c);
    return optvq_atomic_commit(&af);
}

static optvq_status write_png_float(const char *path, const float *chw, int channels, int height,
                                    int width, int signed_range)
{
    OPTVQ_TRY(check_dims(path, width, height, channels));
    if (!chw)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: no pixels to write", path);
    optvq_image_u8 u;
    OPTVQ_TRY(optvq_image_u8_alloc(&u, width, height, channels));
    optvq_status st =
        optvq_image_float_to_u8(chw, channels, height, width, signed_range, OPTVQ_IMAGE_ROUND, &u);
    if (st == OPTVQ_OK)
        st = optvq_image_write_png_u8(path, &u);
    optvq_image_u8_free(&u);
    return st;
}

optvq_status optvq_image_write_png(const char *path, const float *chw, int channels, int height,
                                   int width)
{
    return write_png_float(path, chw, channels, height, width, 0);
}

optvq_status optvq_image_write_png_signed(const char *path, const float *chw, int channels,
                                          int height, int width)
{
    return write_png_float(path, chw, channels, height, width, 1);
}

/* ---- folder listing ------------------------------------------------------------------ */

static int has_image_ext(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name)
        return 0;
    return strcasecmp(dot, ".png") == 0 || strcasecmp(dot, ".jpg") == 0 ||
           strcasecmp(dot, ".jpeg") == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void optvq_image_list_free(char **paths, int64_t count)
{
    if (!paths)
        return;
    for (int64_t i = 0; i < count; i++)
        free(paths[i]);
    free(paths);
}

optvq_status optvq_image_list_folder(const char *dir, char ***paths, int64_t *count)
{
    *paths = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d)
        return optvq_fail(OPTVQ_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    char **names = NULL;
    int64_t n = 0, cap = 0;
    optvq_status st = OPTVQ_OK;
    size_t dlen = strlen(dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || !has_image_ext(e->d_name))
            continue;
        size_t len = dlen + 1 + strlen(e->d_name) + 1;
        char *full = malloc(len);
        if (!full) {
            st = optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory listing the folder", dir);
            break;
        }
        snprintf(full, len, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(full, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            free(full);
            continue;
        }
        if (n == cap) {
            int64_t ncap = cap ? cap * 2 : 64;
            char **nn = realloc(names, sizeof(char *) * (size_t)ncap);
            if (!nn) {
                free(full);
                st = optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory listing the folder", dir);
                break;
            }
            names = nn;
            cap = ncap;
        }
        names[n++] = full;
    }
    closedir(d);
    if (st != OPTVQ_OK) {
        optvq_image_list_free(names, n);
        return st;
    }
    /* All entries share the "dir/" prefix, so sorting full paths sorts names. */
    if (n > 1)
        qsort(names, (size_t)n, sizeof(char *), cmp_str);
    *paths = names;
    *count = n;
    return OPTVQ_OK;
}
