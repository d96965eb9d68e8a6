/* The request parsers of 'optvq serve' (CLI code, no HTTP library): a
 * multipart/form-data body (RFC 7578) held whole in memory, and the size an
 * uploaded PNG or JPEG announces in its header, read before anything is
 * decoded. Both take untrusted bytes and never read outside them (fuzzed:
 * fuzz/fuzz_multipart.c). */
#ifndef OPTVQ_SERVE_MULTIPART_H
#define OPTVQ_SERVE_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

#define SERVE_BOUNDARY_MAX 70 /* RFC 2046 */
#define SERVE_PART_NAME_MAX 64
#define SERVE_PART_FILENAME_MAX 256
#define SERVE_PART_TYPE_MAX 128
#define SERVE_PART_HEADERS_MAX 8192 /* bytes of one part's header block */

typedef struct serve_part {
    char name[SERVE_PART_NAME_MAX];         /* the form field */
    char filename[SERVE_PART_FILENAME_MAX]; /* "" when the part is not a file */
    char content_type[SERVE_PART_TYPE_MAX]; /* "" when not given */
    const uint8_t *data;                    /* points into the body */
    size_t len;
} serve_part;

/* The boundary of a "multipart/form-data; boundary=..." Content-Type (type
 * and parameter names case-insensitive, the value quoted or not). Returns 0,
 * or -1 with a one-line reason in err. */
int serve_multipart_boundary(const char *content_type, char boundary[SERVE_BOUNDARY_MAX + 1], char *err,
                             size_t err_size);

/* Splits a whole body into at most max_parts parts. Every part needs a
 * Content-Disposition of form-data with a name; the body must end with the
 * closing delimiter. Returns 0 with *n_parts set, or -1 with a one-line
 * reason in err (truncated body, too many parts, a malformed header...). */
int serve_multipart_parse(const char *boundary, const uint8_t *body, size_t len, serve_part *parts, int max_parts,
                          int *n_parts, char *err, size_t err_size);

/* The first part named `name`, or NULL. */
const serve_part *serve_multipart_find(const serve_part *parts, int n_parts, const char *name);

/* Width and height from a PNG's IHDR or a JPEG's first SOF marker, without
 * decoding. Returns 0 (format "PNG" or "JPEG"), -1 when the bytes are
 * neither format, -2 when the header is cut short or malformed (err says
 * why). */
int serve_image_size(const uint8_t *data, size_t len, int64_t *width, int64_t *height, const char **format,
                     char *err, size_t err_size);

#endif
