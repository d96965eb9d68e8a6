/* libFuzzer target: the request parsers of 'optvq serve' (src/serve/
 * multipart.c): the Content-Type boundary, the multipart/form-data body and
 * the PNG/JPEG size sniffing run on each part. Input: the Content-Type value,
 * a newline, then the body. Checks: every part lies inside the body, names
 * are non-empty, a refusal has a one-line reason. */
#include "serve/multipart.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_reason(const char *err)
{
    if (!err[0] || strchr(err, '\n'))
        abort();
}

static void sniff(const uint8_t *data, size_t len)
{
    int64_t w, h;
    const char *format;
    char err[160] = "";
    int rc = serve_image_size(data, len, &w, &h, &format, err, sizeof err);
    if (rc == 0 && (w < 1 || h < 1 || !format))
        abort();
    if (rc != 0)
        check_reason(err);
}

int fuzz_multipart(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size < 256 ? size : 256);
    if (!nl)
        return 0;
    size_t tl = (size_t)(nl - data);
    char type[257];
    memcpy(type, data, tl);
    type[tl] = '\0';
    const uint8_t *body = nl + 1;
    size_t len = size - tl - 1;
    /* the body in its own allocation, so ASan sees any read past it */
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return 0;
    memcpy(copy, body, len);
    sniff(copy, len);
    char boundary[SERVE_BOUNDARY_MAX + 1], err[160] = "";
    if (serve_multipart_boundary(type, boundary, err, sizeof err) != 0) {
        check_reason(err);
        /* the body is still parsed, under a fixed boundary */
        strcpy(boundary, "XyZ");
    } else if (!boundary[0] || strlen(boundary) > SERVE_BOUNDARY_MAX) {
        abort();
    }
    serve_part parts[8];
    int n = -1;
    err[0] = '\0';
    if (serve_multipart_parse(boundary, copy, len, parts, 8, &n, err, sizeof err) != 0) {
        check_reason(err);
        free(copy);
        return 0;
    }
    if (n < 0 || n > 8)
        abort();
    for (int i = 0; i < n; i++) {
        const serve_part *p = &parts[i];
        if (!p->name[0] || p->data < copy || p->len > len || p->data + p->len > copy + len)
            abort();
        if (serve_multipart_find(parts, n, p->name) == NULL)
            abort();
        sniff(p->data, p->len);
    }
    free(copy);
    return 1;
}

#ifndef OPTVQ_FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_multipart(data, size);
    return 0;
}
#endif
