/* Encoders for 'optvq serve' answers: base64 and 8-bit PNG files built in
 * memory (nothing touches the file system). */
#ifndef OPTVQ_SERVE_ENCODE_H
#define OPTVQ_SERVE_ENCODE_H

#include <stddef.h>
#include <stdint.h>

/* A growing byte buffer. */
typedef struct serve_buf {
    uint8_t *data;
    size_t len, cap;
} serve_buf;

/* Appends n bytes; 0, or -1 when out of memory. */
int serve_buf_append(serve_buf *b, const void *data, size_t n);
void serve_buf_free(serve_buf *b);

/* NUL-terminated base64 (RFC 4648, padded) of n bytes, malloc'd; NULL when
 * out of memory. */
char *serve_base64(const uint8_t *data, size_t n);

/* An 8-bit grey (channels 1) or RGB (3) PNG of HWC pixels into out
 * (emptied first). Returns 0, or -1 on failure. */
int serve_png_encode(const uint8_t *hwc, int width, int height, int channels, serve_buf *out);

/* The same PNG as base64, malloc'd; NULL on failure. */
char *serve_png_base64(const uint8_t *hwc, int width, int height, int channels);

#endif
