/* IDX files (MNIST, Fashion-MNIST), gzip-compressed or plain, via zlib. */
#include "io/image.h"

#include "core/error.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define IDX_MAX_BYTES ((int64_t)1 << 32) /* 4 GiB of pixels: anything larger is absurd */

void optvq_idx_free(optvq_idx *idx)
{
    if (!idx)
        return;
    free(idx->data);
    memset(idx, 0, sizeof *idx);
}

/* Reads exactly n bytes; returns the count read, or -1 on a zlib error. */
static int64_t gz_read_all(gzFile gz, uint8_t *buf, int64_t n)
{
    int64_t done = 0;
    while (done < n) {
        int64_t want = n - done;
        unsigned chunk = want > (1 << 30) ? (1u << 30) : (unsigned)want;
        int got = gzread(gz, buf + done, chunk);
        if (got < 0)
            return -1;
        if (got == 0)
            break;
        done += got;
    }
    return done;
}

static optvq_status gz_failure(const char *path, gzFile gz, const char *what)
{
    int errnum = 0;
    const char *msg = gzerror(gz, &errnum);
    if (errnum == Z_ERRNO)
        msg = strerror(errno);
    else if (msg) { /* zlib prefixes its message with the path */
        size_t n = strlen(path);
        if (strncmp(msg, path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ')
            msg += n + 2;
    }
    return optvq_fail(errnum == Z_ERRNO ? OPTVQ_ERR_IO : OPTVQ_ERR_FORMAT, "%s: %s: %s", path,
                      what, msg && *msg ? msg : "corrupt compressed data");
}

optvq_status optvq_idx_read(const char *path, int64_t max_items, optvq_idx *out)
{
    memset(out, 0, sizeof *out);
    gzFile gz = gzopen(path, "rb");
    if (!gz)
        return optvq_fail(OPTVQ_ERR_IO, "%s: cannot open: %s", path,
                          errno ? strerror(errno) : "out of memory");
    optvq_status st = OPTVQ_OK;
    uint8_t head[4 + 4 * 3];
    int64_t got = gz_read_all(gz, head, 4);
    if (got < 0) {
        st = gz_failure(path, gz, "cannot read the IDX header");
        goto fail;
    }
    if (got < 4) {
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: file too short for an IDX header", path);
        goto fail;
    }
    if (head[0] != 0 || head[1] != 0) {
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: bad IDX magic %02x %02x (expected 00 00)", path,
                        head[0], head[1]);
        goto fail;
    }
    if (head[2] != 0x08) {
        st = optvq_fail(OPTVQ_ERR_FORMAT,
                        "%s: IDX element type 0x%02x is not supported (only unsigned byte, 0x08)",
                        path, head[2]);
        goto fail;
    }
    int ndim = head[3];
    if (ndim < 1 || ndim > 3) {
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: IDX with %d dimensions (expected 1 to 3)", path, ndim);
        goto fail;
    }
    got = gz_read_all(gz, head + 4, 4 * ndim);
    if (got < 0) {
        st = gz_failure(path, gz, "cannot read the IDX header");
        goto fail;
    }
    if (got < 4 * ndim) {
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: truncated IDX header", path);
        goto fail;
    }
    int64_t total = 1, item = 1;
    for (int i = 0; i < ndim; i++) {
        const uint8_t *p = head + 4 + 4 * i;
        uint32_t d = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
        if (d == 0 || d > (uint32_t)INT32_MAX) {
            st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: IDX dimension %d is %u", path, i, d);
            goto fail;
        }
        out->dims[i] = d;
        if (i > 0)
            item *= d;
        total *= d;
        if (total > IDX_MAX_BYTES) {
            st = optvq_fail(OPTVQ_ERR_NOMEM, "%s: IDX data of more than %lld bytes is absurd", path,
                            (long long)IDX_MAX_BYTES);
            goto fail;
        }
    }
    out->ndim = ndim;
    int64_t items = out->dims[0];
    int partial = max_items > 0 && max_items < items;
    if (partial)
        items = max_items;
    int64_t bytes = items * item;
    /* The buffer grows with the data actually read (doubling, from 1 MiB), so a
     * header announcing gigabytes in a small file allocates little. */
    got = 0;
    for (int64_t cap = 0; got == cap && cap < bytes;) {
        int64_t ncap = cap ? (cap > bytes / 2 ? bytes : 2 * cap) : (bytes < (1 << 20) ? bytes : (1 << 20));
        uint8_t *nd = realloc(out->data, (size_t)ncap);
        if (!nd) {
            st = optvq_fail(OPTVQ_ERR_NOMEM, "%s: cannot allocate %lld bytes", path, (long long)ncap);
            goto fail;
        }
        out->data = nd;
        int64_t more = gz_read_all(gz, out->data + cap, ncap - cap);
        if (more < 0) {
            got = -1;
            break;
        }
        got = cap + more;
        cap = ncap;
    }
    if (!out->data && !(out->data = malloc(1))) {
        st = optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    if (got < 0) {
        st = gz_failure(path, gz, "cannot read the IDX data");
        goto fail;
    }
    if (got < bytes) {
        st = optvq_fail(OPTVQ_ERR_FORMAT,
                        "%s: truncated IDX file: the header announces %lld data bytes, found %lld",
                        path, (long long)(out->dims[0] * item), (long long)got);
        goto fail;
    }
    if (!partial) {
        uint8_t extra;
        int64_t more = gz_read_all(gz, &extra, 1);
        if (more < 0) {
            st = gz_failure(path, gz, "cannot read the IDX data");
            goto fail;
        }
        if (more > 0) {
            st = optvq_fail(OPTVQ_ERR_FORMAT,
                            "%s: IDX file is longer than its header announces (%lld data bytes)",
                            path, (long long)bytes);
            goto fail;
        }
    }
    out->dims[0] = items;
    gzclose(gz);
    return OPTVQ_OK;
fail:
    gzclose(gz);
    optvq_idx_free(out);
    return st;
}

optvq_status optvq_idx_read_images(const char *path, int64_t max_items, optvq_idx *out)
{
    OPTVQ_TRY(optvq_idx_read(path, max_items, out));
    if (out->ndim != 3) {
        int nd = out->ndim;
        optvq_idx_free(out);
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: IDX images need 3 dimensions, found %d", path, nd);
    }
    if (out->dims[1] > OPTVQ_IMAGE_MAX_SIDE || out->dims[2] > OPTVQ_IMAGE_MAX_SIDE) {
        optvq_idx_free(out);
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: IDX image size too large", path);
    }
    return OPTVQ_OK;
}

optvq_status optvq_idx_read_labels(const char *path, int64_t max_items, optvq_idx *out)
{
    OPTVQ_TRY(optvq_idx_read(path, max_items, out));
    if (out->ndim != 1) {
        int nd = out->ndim;
        optvq_idx_free(out);
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: IDX labels need 1 dimension, found %d", path, nd);
    }
    return OPTVQ_OK;
}

optvq_image_u8 optvq_idx_image(const optvq_idx *images, int64_t i)
{
    optvq_image_u8 v;
    v.height = (int)images->dims[1];
    v.width = (int)images->dims[2];
    v.channels = 1;
    v.data = images->data + (size_t)i * (size_t)(images->dims[1] * images->dims[2]);
    return v;
}
