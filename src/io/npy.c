/* NumPy .npy reader/writer (format versions 1.0, 2.0, 3.0).
 * Reading checks everything a stranger's file can get wrong: magic, header
 * length, dtype, byte order, Fortran order, shape overflow, truncation. */
#include "core/atomic_file.h"
#include "core/error.h"
#include "optvq/optvq.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPY_MAX_HEADER (1u << 20)
#define NPY_MAX_BYTES ((int64_t)1 << 40) /* 1 TiB: anything larger is absurd */

static size_t dtype_size(optvq_dtype t)
{
    return (t == OPTVQ_F64 || t == OPTVQ_I64) ? 8 : t == OPTVQ_U8 ? 1 : 4;
}

static const char *dtype_descr(optvq_dtype t)
{
    switch (t) {
    case OPTVQ_F32: return "<f4";
    case OPTVQ_F64: return "<f8";
    case OPTVQ_I32: return "<i4";
    case OPTVQ_I64: return "<i8";
    case OPTVQ_U8: return "|u1";
    }
    return "?";
}

/* Element count of `ndim` dimensions, or -1 when ndim or a dimension is
 * negative/too many or the product passes NPY_MAX_BYTES (no overflow). */
static int64_t shape_numel(int ndim, const int64_t *shape)
{
    if (ndim < 0 || ndim > OPTVQ_MAX_DIMS)
        return -1;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] != 0 && n > NPY_MAX_BYTES / shape[i]))
            return -1;
        n *= shape[i];
    }
    return n;
}

int64_t optvq_array_numel(const optvq_array *a)
{
    if (!a)
        return 0;
    return shape_numel(a->ndim, a->shape);
}

/* The checks optvq_array_to_f32/_to_i64 make before touching a->data. */
static optvq_status check_array(const char *function, const optvq_array *a, int64_t *numel)
{
    if (!a)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: array is NULL", function);
    if ((unsigned)a->dtype > OPTVQ_U8)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: unknown dtype %d", function, (int)a->dtype);
    *numel = optvq_array_numel(a);
    if (*numel < 0)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: bad shape (ndim %d, a negative or absurd dimension)",
                          function, a->ndim);
    if (*numel > 0 && !a->data)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: array data is NULL", function);
    return OPTVQ_OK;
}

void optvq_array_free(optvq_array *a)
{
    if (!a)
        return;
    free(a->data);
    a->data = NULL;
    a->ndim = 0;
}

/* Finds the value text after 'key': in the header dict. */
static const char *find_key(const char *header, const char *key)
{
    char quoted[64];
    const char *p;
    snprintf(quoted, sizeof quoted, "'%s'", key);
    p = strstr(header, quoted);
    if (!p) {
        snprintf(quoted, sizeof quoted, "\"%s\"", key);
        p = strstr(header, quoted);
    }
    if (!p)
        return NULL;
    p += strlen(quoted);
    while (isspace((unsigned char)*p))
        p++;
    if (*p != ':')
        return NULL;
    p++;
    while (isspace((unsigned char)*p))
        p++;
    return p;
}

static optvq_status parse_header(const char *path, const char *header, optvq_array *a)
{
    const char *p = find_key(header, "descr");
    if (!p || (*p != '\'' && *p != '"'))
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: npy header has no 'descr'", path);
    char quote = *p++;
    const char *end = strchr(p, quote);
    if (!end || end - p > 16)
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: npy header 'descr' is malformed", path);
    char descr[17];
    memcpy(descr, p, (size_t)(end - p));
    descr[end - p] = '\0';
    if (!strcmp(descr, "<f4") || !strcmp(descr, "f4"))
        a->dtype = OPTVQ_F32;
    else if (!strcmp(descr, "<f8") || !strcmp(descr, "f8"))
        a->dtype = OPTVQ_F64;
    else if (!strcmp(descr, "<i4") || !strcmp(descr, "i4"))
        a->dtype = OPTVQ_I32;
    else if (!strcmp(descr, "<i8") || !strcmp(descr, "i8"))
        a->dtype = OPTVQ_I64;
    else if (!strcmp(descr, "|u1") || !strcmp(descr, "u1") || !strcmp(descr, "<u1"))
        a->dtype = OPTVQ_U8;
    else
        return optvq_fail(OPTVQ_ERR_FORMAT,
                          "%s: unsupported dtype '%s' (need little-endian float32, float64, int32, int64 or uint8)",
                          path, descr);

    p = find_key(header, "fortran_order");
    if (!p)
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: npy header has no 'fortran_order'", path);
    if (!strncmp(p, "True", 4))
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: Fortran-order arrays are not supported (save with C order)", path);
    if (strncmp(p, "False", 5))
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: npy header 'fortran_order' is malformed", path);

    p = find_key(header, "shape");
    if (!p || *p != '(')
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: npy header has no 'shape' tuple", path);
    p++;
    a->ndim = 0;
    int64_t numel = 1;
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (*p == ')')
            break;
        if (!isdigit((unsigned char)*p))
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: npy header 'shape' is malformed", path);
        if (a->ndim == OPTVQ_MAX_DIMS)
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: more than %d dimensions", path, OPTVQ_MAX_DIMS);
        errno = 0;
        char *num_end;
        long long v = strtoll(p, &num_end, 10);
        if (errno || v < 0 || v > NPY_MAX_BYTES)
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: absurd dimension in npy shape", path);
        a->shape[a->ndim++] = v;
        if (v != 0 && numel > NPY_MAX_BYTES / v)
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: npy shape is absurdly large", path);
        numel *= v;
        p = num_end;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == ',')
            p++;
        else if (*p != ')')
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: npy header 'shape' is malformed", path);
    }
    if (numel > NPY_MAX_BYTES / (int64_t)dtype_size(a->dtype))
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: npy shape is absurdly large", path);
    return OPTVQ_OK;
}

optvq_status optvq_npy_read(const char *path, optvq_array *out)
{
    if (!out)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: out is NULL", __func__);
    memset(out, 0, sizeof *out);
    if (!path)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: path is NULL", __func__);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return optvq_fail(OPTVQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    optvq_status st = OPTVQ_OK;
    char *header = NULL;
    unsigned char pre[12];
    if (fread(pre, 1, 10, fp) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: not a .npy file (bad magic)", path);
        goto done;
    }
    uint32_t header_len;
    long data_start;
    if (pre[6] == 1) {
        header_len = (uint32_t)pre[8] | (uint32_t)pre[9] << 8;
        data_start = 10 + (long)header_len;
    } else if (pre[6] == 2 || pre[6] == 3) {
        if (fread(pre + 10, 1, 2, fp) != 2) {
            st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: truncated npy header", path);
            goto done;
        }
        header_len = (uint32_t)pre[8] | (uint32_t)pre[9] << 8 | (uint32_t)pre[10] << 16 | (uint32_t)pre[11] << 24;
        data_start = 12 + (long)header_len;
    } else {
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: unsupported npy version %d.%d", path, pre[6], pre[7]);
        goto done;
    }
    if (header_len == 0 || header_len > NPY_MAX_HEADER) {
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: npy header length %u is invalid", path, header_len);
        goto done;
    }
    header = malloc(header_len + 1);
    if (!header) {
        st = optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if (fread(header, 1, header_len, fp) != header_len) {
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: truncated npy header", path);
        goto done;
    }
    header[header_len] = '\0';
    if (strlen(header) != header_len) {
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: npy header contains a NUL byte", path);
        goto done;
    }
    st = parse_header(path, header, out);
    if (st != OPTVQ_OK)
        goto done;

    size_t nbytes = (size_t)optvq_array_numel(out) * dtype_size(out->dtype);
    if (fseek(fp, 0, SEEK_END) != 0) {
        st = optvq_fail(OPTVQ_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
        goto done;
    }
    long file_size = ftell(fp);
    if (file_size < data_start || (size_t)(file_size - data_start) != nbytes) {
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: data is %ld bytes but the shape needs %zu (truncated or corrupt)",
                        path, file_size < data_start ? 0L : file_size - data_start, nbytes);
        goto done;
    }
    fseek(fp, data_start, SEEK_SET);
    out->data = malloc(nbytes ? nbytes : 1);
    if (!out->data) {
        st = optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory for %zu bytes", path, nbytes);
        goto done;
    }
    if (fread(out->data, 1, nbytes, fp) != nbytes) {
        st = optvq_fail(OPTVQ_ERR_IO, "%s: read failed", path);
        goto done;
    }
done:
    free(header);
    fclose(fp);
    if (st != OPTVQ_OK)
        optvq_array_free(out);
    return st;
}

optvq_status optvq_array_to_f32(optvq_array *a)
{
    int64_t n;
    OPTVQ_TRY(check_array(__func__, a, &n));
    if (a->dtype == OPTVQ_F32)
        return OPTVQ_OK;
    float *f = malloc((size_t)(n ? n : 1) * sizeof *f);
    if (!f)
        return optvq_fail(OPTVQ_ERR_NOMEM, "out of memory converting array to float32");
    for (int64_t i = 0; i < n; i++) {
        switch (a->dtype) {
        case OPTVQ_F64: f[i] = (float)((double *)a->data)[i]; break;
        case OPTVQ_I32: f[i] = (float)((int32_t *)a->data)[i]; break;
        case OPTVQ_I64: f[i] = (float)((int64_t *)a->data)[i]; break;
        case OPTVQ_U8: f[i] = (float)((uint8_t *)a->data)[i]; break;
        default: break;
        }
    }
    free(a->data);
    a->data = f;
    a->dtype = OPTVQ_F32;
    return OPTVQ_OK;
}

optvq_status optvq_array_to_i64(optvq_array *a)
{
    int64_t n;
    OPTVQ_TRY(check_array(__func__, a, &n));
    if (a->dtype == OPTVQ_I64)
        return OPTVQ_OK;
    if (a->dtype != OPTVQ_I32)
        return optvq_fail(OPTVQ_ERR_FORMAT, "expected an integer array, got floating point");
    int64_t *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    if (!v)
        return optvq_fail(OPTVQ_ERR_NOMEM, "out of memory converting array to int64");
    for (int64_t i = 0; i < n; i++)
        v[i] = ((int32_t *)a->data)[i];
    free(a->data);
    a->data = v;
    a->dtype = OPTVQ_I64;
    return OPTVQ_OK;
}

optvq_status optvq_npy_write(const char *path, optvq_dtype dtype, int ndim, const int64_t *shape,
                             const void *data)
{
    if (!path)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: path is NULL", __func__);
    if ((unsigned)dtype > OPTVQ_U8)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: unknown dtype %d", path, (int)dtype);
    if (ndim < 0 || ndim > OPTVQ_MAX_DIMS)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: bad ndim %d", path, ndim);
    if (ndim > 0 && !shape)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: shape is NULL", path);
    /* the limit optvq_npy_read() applies, so what is written can be read back */
    const int64_t count = shape_numel(ndim, shape);
    if (count < 0 || count > NPY_MAX_BYTES / (int64_t)dtype_size(dtype))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: shape has a negative or absurd dimension", path);
    if (count > 0 && !data)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: data is NULL", path);
    char dict[512];
    int len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", dtype_descr(dtype));
    for (int i = 0; i < ndim; i++) {
        len += snprintf(dict + len, sizeof dict - (size_t)len, "%lld,%s", (long long)shape[i],
                        (i + 1 < ndim) ? " " : "");
    }
    if (ndim > 1) /* numpy writes (3,) for 1-D and (2, 3) for more */
        len--;
    len += snprintf(dict + len, sizeof dict - (size_t)len, "), }");
    /* Pad with spaces so that magic + len + header + '\n' is a multiple of 64. */
    int total = 10 + len + 1;
    int pad = (64 - total % 64) % 64;
    unsigned header_len = (unsigned)(len + pad + 1);

    optvq_atomic_file f;
    OPTVQ_TRY(optvq_atomic_open(&f, path));
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(header_len & 0xff),
                             (unsigned char)(header_len >> 8)};
    fwrite(pre, 1, 10, f.fp);
    fwrite(dict, 1, (size_t)len, f.fp);
    for (int i = 0; i < pad; i++)
        fputc(' ', f.fp);
    fputc('\n', f.fp);
    if (count > 0)
        fwrite(data, dtype_size(dtype), (size_t)count, f.fp);
    return optvq_atomic_commit(&f);
}
