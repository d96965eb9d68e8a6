/* base64 and in-memory PNG for 'optvq serve' (see encode.h). */
#include "serve/encode.h"

#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

int serve_buf_append(serve_buf *b, const void *data, size_t n)
{
    if (n > SIZE_MAX / 2 - b->len)
        return -1;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = realloc(b->data, cap);
        if (!p)
            return -1;
        b->data = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    return 0;
}

void serve_buf_free(serve_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

char *serve_base64(const uint8_t *data, size_t n)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (n > (SIZE_MAX - 1) / 4 * 3 - 3)
        return NULL;
    size_t out_len = (n + 2) / 3 * 4;
    char *out = malloc(out_len + 1), *o = out;
    if (!out)
        return NULL;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
        *o++ = abc[v >> 18 & 63];
        *o++ = abc[v >> 12 & 63];
        *o++ = abc[v >> 6 & 63];
        *o++ = abc[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)data[i] << 16 | (i + 1 < n ? (uint32_t)data[i + 1] << 8 : 0);
        *o++ = abc[v >> 18 & 63];
        *o++ = abc[v >> 12 & 63];
        *o++ = i + 1 < n ? abc[v >> 6 & 63] : '=';
        *o++ = '=';
    }
    *o = '\0';
    return out;
}

typedef struct png_sink {
    serve_buf *out;
    int failed;
} png_sink;

static void png_write_cb(png_structp png, png_bytep data, size_t n)
{
    png_sink *s = png_get_io_ptr(png);
    if (serve_buf_append(s->out, data, n)) {
        s->failed = 1;
        png_error(png, "out of memory");
    }
}

static void png_flush_cb(png_structp png) { (void)png; }

static void png_quiet_cb(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

int serve_png_encode(const uint8_t *hwc, int width, int height, int channels, serve_buf *out)
{
    out->len = 0;
    if (width < 1 || height < 1 || (channels != 1 && channels != 3))
        return -1;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, png_quiet_cb, png_quiet_cb);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_sink sink = {out, 0};
    png_bytep *volatile rows = malloc(sizeof(png_bytep) * (size_t)height);
    if (!rows || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(rows);
        return -1;
    }
    for (int y = 0; y < height; y++)
        rows[y] = (png_bytep)(hwc + (size_t)y * (size_t)width * (size_t)channels);
    png_set_write_fn(png, &sink, png_write_cb, png_flush_cb);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8,
                 channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    return sink.failed ? -1 : 0;
}

char *serve_png_base64(const uint8_t *hwc, int width, int height, int channels)
{
    serve_buf b = {0};
    char *s = serve_png_encode(hwc, width, height, channels, &b) ? NULL : serve_base64(b.data, b.len);
    serve_buf_free(&b);
    return s;
}
