/* Request parsers of 'optvq serve' (see multipart.h). */
#include "serve/multipart.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int fail(char *err, size_t err_size, const char *fmt, ...)
{
    if (err && err_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int ieq_prefix(const char *s, const char *prefix, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (tolower((unsigned char)s[i]) != tolower((unsigned char)prefix[i]))
            return 0;
    return 1;
}

/* A header parameter list "; key=value; key="quoted value"": calls back
 * with each key and its unquoted value (bounded copies). `s` ends at `end`. */
typedef int (*param_fn)(const char *key, size_t key_len, const char *value, size_t value_len, void *ctx);

static int parse_params(const char *s, const char *end, param_fn fn, void *ctx, char *err, size_t err_size)
{
    char value[512];
    while (s < end) {
        while (s < end && (*s == ';' || *s == ' ' || *s == '\t'))
            s++;
        if (s >= end)
            break;
        const char *key = s;
        while (s < end && *s != '=' && *s != ';' && *s != ' ' && *s != '\t')
            s++;
        size_t key_len = (size_t)(s - key);
        while (s < end && (*s == ' ' || *s == '\t'))
            s++;
        if (s >= end || *s != '=') {
            /* a bare token (e.g. "form-data" repeated): no value */
            while (s < end && *s != ';')
                s++;
            continue;
        }
        s++;
        while (s < end && (*s == ' ' || *s == '\t'))
            s++;
        size_t n = 0;
        int too_long = 0;
        if (s < end && *s == '"') {
            s++;
            while (s < end && *s != '"') {
                if (*s == '\\' && s + 1 < end)
                    s++;
                if (n + 1 < sizeof value)
                    value[n++] = *s;
                else
                    too_long = 1;
                s++;
            }
            if (s >= end)
                return fail(err, err_size, "unterminated quoted string in a header parameter");
            s++;
        } else {
            while (s < end && *s != ';' && *s != ' ' && *s != '\t') {
                if (n + 1 < sizeof value)
                    value[n++] = *s;
                else
                    too_long = 1;
                s++;
            }
        }
        value[n] = '\0';
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)value[i] < 0x20 || value[i] == 0x7f)
                return fail(err, err_size, "a header parameter holds a control character");
        if (fn(key, key_len, value, too_long ? sizeof value : n, ctx))
            return fail(err, err_size, "header parameter '%.*s' is invalid or too long",
                        (int)(key_len < 40 ? key_len : 40), key);
    }
    return 0;
}

typedef struct boundary_ctx {
    char *boundary;
    int found;
} boundary_ctx;

static int boundary_param(const char *key, size_t key_len, const char *value, size_t value_len, void *ctx)
{
    boundary_ctx *b = ctx;
    if (key_len != 8 || !ieq_prefix(key, "boundary", 8))
        return 0;
    if (value_len < 1 || value_len > SERVE_BOUNDARY_MAX)
        return 1;
    for (size_t i = 0; i < value_len; i++)
        if (!isprint((unsigned char)value[i]))
            return 1;
    memcpy(b->boundary, value, value_len);
    b->boundary[value_len] = '\0';
    b->found = 1;
    return 0;
}

int serve_multipart_boundary(const char *content_type, char boundary[SERVE_BOUNDARY_MAX + 1], char *err,
                             size_t err_size)
{
    static const char type[] = "multipart/form-data";
    const size_t tl = sizeof type - 1;
    boundary[0] = '\0';
    if (!content_type)
        return fail(err, err_size, "no Content-Type: expected multipart/form-data");
    while (*content_type == ' ' || *content_type == '\t')
        content_type++;
    size_t len = strlen(content_type);
    if (len < tl || !ieq_prefix(content_type, type, tl) ||
        (content_type[tl] != '\0' && content_type[tl] != ';' && content_type[tl] != ' '))
        return fail(err, err_size, "Content-Type must be multipart/form-data");
    boundary_ctx b = {boundary, 0};
    if (parse_params(content_type + tl, content_type + len, boundary_param, &b, err, err_size))
        return -1;
    if (!b.found)
        return fail(err, err_size, "multipart/form-data without a boundary parameter");
    return 0;
}

typedef struct disposition_ctx {
    serve_part *part;
    int has_name;
} disposition_ctx;

static int disposition_param(const char *key, size_t key_len, const char *value, size_t value_len, void *ctx)
{
    disposition_ctx *d = ctx;
    if (key_len == 4 && ieq_prefix(key, "name", 4)) {
        if (value_len >= SERVE_PART_NAME_MAX)
            return 1;
        memcpy(d->part->name, value, value_len);
        d->part->name[value_len] = '\0';
        d->has_name = value_len > 0;
    } else if (key_len == 8 && ieq_prefix(key, "filename", 8)) {
        /* informational only: a long name is cut, not refused */
        size_t n = value_len < SERVE_PART_FILENAME_MAX - 1 ? value_len : SERVE_PART_FILENAME_MAX - 1;
        memcpy(d->part->filename, value, n);
        d->part->filename[n] = '\0';
    }
    return 0;
}

/* One part's header block [s, end): Content-Disposition (required) and
 * Content-Type. */
static int parse_part_headers(const char *s, const char *end, serve_part *part, char *err, size_t err_size)
{
    int has_disposition = 0;
    /* names and types become C strings: a NUL or other control byte would cut them */
    for (const char *q = s; q < end; q++)
        if (((unsigned char)*q < 0x20 && *q != '\r' && *q != '\n' && *q != '\t') || *q == 0x7f)
            return fail(err, err_size, "a part header holds a control character");
    while (s < end) {
        const char *eol = memmem(s, (size_t)(end - s), "\r\n", 2);
        if (!eol)
            eol = end;
        const char *colon = memchr(s, ':', (size_t)(eol - s));
        if (!colon)
            return fail(err, err_size, "malformed part header (no ':')");
        size_t name_len = (size_t)(colon - s);
        const char *v = colon + 1;
        while (v < eol && (*v == ' ' || *v == '\t'))
            v++;
        const char *vend = eol;
        while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;
        if (name_len == 19 && ieq_prefix(s, "Content-Disposition", 19)) {
            if ((size_t)(vend - v) < 9 || !ieq_prefix(v, "form-data", 9) ||
                (vend - v > 9 && v[9] != ';' && v[9] != ' '))
                return fail(err, err_size, "a part's Content-Disposition is not form-data");
            disposition_ctx d = {part, 0};
            if (parse_params(v + 9, vend, disposition_param, &d, err, err_size))
                return -1;
            if (!d.has_name)
                return fail(err, err_size, "a part's Content-Disposition has no usable name");
            has_disposition = 1;
        } else if (name_len == 12 && ieq_prefix(s, "Content-Type", 12)) {
            size_t n = (size_t)(vend - v);
            if (n >= SERVE_PART_TYPE_MAX)
                return fail(err, err_size, "a part's Content-Type is too long");
            for (size_t i = 0; i < n; i++)
                if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
                    return fail(err, err_size, "a part's Content-Type holds a control character");
            memcpy(part->content_type, v, n);
            part->content_type[n] = '\0';
        }
        s = eol == end ? end : eol + 2;
    }
    if (!has_disposition)
        return fail(err, err_size, "a part has no Content-Disposition header");
    return 0;
}

int serve_multipart_parse(const char *boundary, const uint8_t *body, size_t len, serve_part *parts, int max_parts,
                          int *n_parts, char *err, size_t err_size)
{
    *n_parts = 0;
    size_t bl = boundary ? strlen(boundary) : 0;
    if (bl < 1 || bl > SERVE_BOUNDARY_MAX)
        return fail(err, err_size, "invalid multipart boundary");
    char delim[SERVE_BOUNDARY_MAX + 5]; /* "\r\n--" boundary */
    memcpy(delim, "\r\n--", 4);
    memcpy(delim + 4, boundary, bl);
    const size_t dl = bl + 4;
    if (!body)
        len = 0;
    const char *b = (const char *)body, *end = b + len;
    /* the first delimiter: at the very start, or after a preamble */
    const char *p;
    if (len >= dl - 2 && memcmp(b, delim + 2, dl - 2) == 0)
        p = b + dl - 2;
    else {
        const char *f = len ? memmem(b, len, delim, dl) : NULL;
        if (!f)
            return fail(err, err_size, "truncated or empty multipart body: no boundary found");
        p = f + dl;
    }
    int n = 0;
    for (;;) {
        if (end - p >= 2 && p[0] == '-' && p[1] == '-') {
            *n_parts = n;
            return 0; /* the closing delimiter; an epilogue is ignored */
        }
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (end - p < 2)
            return fail(err, err_size, "truncated multipart body: it ends after a boundary");
        if (p[0] != '\r' || p[1] != '\n')
            return fail(err, err_size, "malformed multipart body: no line break after a boundary");
        p += 2;
        if (n == max_parts)
            return fail(err, err_size, "too many parts in the form (at most %d)", max_parts);
        serve_part *part = &parts[n];
        memset(part, 0, sizeof *part);
        size_t window = (size_t)(end - p);
        if (window > SERVE_PART_HEADERS_MAX + 4)
            window = SERVE_PART_HEADERS_MAX + 4;
        const char *hend;
        if (window >= 2 && p[0] == '\r' && p[1] == '\n')
            hend = p; /* no header at all */
        else {
            const char *f = memmem(p, window, "\r\n\r\n", 4);
            if (!f)
                return fail(err, err_size, (size_t)(end - p) > SERVE_PART_HEADERS_MAX
                                               ? "a part's headers are too long"
                                               : "truncated multipart body: a part's headers do not end");
            hend = f + 2;
        }
        if (parse_part_headers(p, hend, part, err, err_size))
            return -1;
        const char *content = hend + 2;
        const char *close = memmem(content, (size_t)(end - content), delim, dl);
        if (!close)
            return fail(err, err_size, "truncated multipart body: part '%s' has no closing boundary", part->name);
        part->data = (const uint8_t *)content;
        part->len = (size_t)(close - content);
        n++;
        p = close + dl;
    }
}

const serve_part *serve_multipart_find(const serve_part *parts, int n_parts, const char *name)
{
    for (int i = 0; i < n_parts; i++)
        if (!strcmp(parts[i].name, name))
            return &parts[i];
    return NULL;
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static unsigned be16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }

int serve_image_size(const uint8_t *data, size_t len, int64_t *width, int64_t *height, const char **format,
                     char *err, size_t err_size)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    *width = *height = 0;
    *format = NULL;
    if (len >= 8 && memcmp(data, png_sig, 8) == 0) {
        *format = "PNG";
        /* the first chunk must be IHDR, 13 bytes: width, height, ... */
        if (len < 24 || be32(data + 8) != 13 || memcmp(data + 12, "IHDR", 4) != 0) {
            fail(err, err_size, "PNG without a complete IHDR header");
            return -2;
        }
        uint32_t w = be32(data + 16), h = be32(data + 20);
        if (w == 0 || h == 0 || w > 0x7fffffffu || h > 0x7fffffffu) {
            fail(err, err_size, "PNG header gives an invalid size %ux%u", (unsigned)w, (unsigned)h);
            return -2;
        }
        *width = w;
        *height = h;
        return 0;
    }
    if (len >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) {
        *format = "JPEG";
        size_t p = 2;
        for (;;) {
            if (p >= len || data[p] != 0xFF) {
                fail(err, err_size, p >= len ? "JPEG ends before its frame header" : "JPEG with bytes between markers");
                return -2;
            }
            while (p < len && data[p] == 0xFF)
                p++;
            if (p >= len) {
                fail(err, err_size, "JPEG ends before its frame header");
                return -2;
            }
            unsigned m = data[p++];
            if ((m >= 0xD0 && m <= 0xD7) || m == 0x01)
                continue; /* markers without a length */
            if (m == 0xD8 || m == 0xD9 || m == 0xDA || m == 0x00) {
                fail(err, err_size, "JPEG without a frame header before its scan");
                return -2;
            }
            if (len - p < 2) {
                fail(err, err_size, "JPEG ends inside a marker");
                return -2;
            }
            unsigned seg = be16(data + p);
            if (seg < 2) {
                fail(err, err_size, "JPEG marker with an invalid length");
                return -2;
            }
            if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
                if (seg < 8 || len - p < 7) {
                    fail(err, err_size, "JPEG frame header cut short");
                    return -2;
                }
                unsigned h = be16(data + p + 3), w = be16(data + p + 5);
                if (w == 0 || h == 0) {
                    fail(err, err_size, "JPEG frame header gives an invalid size %ux%u", w, h);
                    return -2;
                }
                *width = w;
                *height = h;
                return 0;
            }
            if (len - p < seg) {
                fail(err, err_size, "JPEG ends inside a marker");
                return -2;
            }
            p += seg;
        }
    }
    fail(err, err_size, "not a PNG or JPEG image");
    return -1;
}
