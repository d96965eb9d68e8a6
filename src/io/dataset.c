/* Image sets for training, evaluation and the model commands; see dataset.h. */
#include "io/dataset.h"

#include "core/error.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* The most floats a set may hold in memory (a .npy, or dataset_load): 2^38, 1 TiB. */
#define DATASET_MAX_FLOATS ((int64_t)1 << 38)

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcasecmp(s + a - b, suffix);
}

static void format_shape(char *buf, size_t size, const optvq_array *a)
{
    size_t len = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < a->ndim && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%lld", i ? ", " : "", (long long)a->shape[i]);
    if (len < size)
        snprintf(buf + len, size - len, a->ndim == 1 ? ",)" : ")");
}

/* n images of c x h x w must be addressable and, held in memory, not absurd. */
static optvq_status check_size(const dataset *d, int64_t n)
{
    const int64_t per = d->c * d->h * d->w;
    if (per < 1 || n > DATASET_MAX_FLOATS / per)
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: %lld images of %lldx%lldx%lld exceed the limit of %lld values",
                          d->what, (long long)n, (long long)d->c, (long long)d->h, (long long)d->w,
                          (long long)DATASET_MAX_FLOATS);
    return OPTVQ_OK;
}

static optvq_status open_idx(const char *path, const dataset_options *o, dataset *d)
{
    d->kind = DATASET_IDX;
    snprintf(d->what, sizeof d->what, "%s", path);
    if (o->channels != 1)
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: the IDX images are grey but the model takes %lld channels", path,
                          (long long)o->channels);
    OPTVQ_TRY(optvq_idx_read_images(path, o->limit > 0 ? o->limit : 0, &d->idx));
    if (d->idx.ndim != 3)
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: an IDX file of labels, not images", path);
    int oh, ow;
    optvq_image_plain_dims((int)d->idx.dims[1], (int)d->idx.dims[2], (int)o->resolution, &oh, &ow);
    if (oh != o->resolution || ow != o->resolution)
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: %lldx%lld images do not resize to the model's %lldx%lld", path,
                          (long long)d->idx.dims[1], (long long)d->idx.dims[2], (long long)o->resolution,
                          (long long)o->resolution);
    d->n = d->idx.dims[0];
    d->c = 1;
    d->h = d->w = o->resolution;
    return OPTVQ_OK;
}

static optvq_status open_npy(const char *path, const dataset_options *o, dataset *d)
{
    d->kind = DATASET_NPY;
    snprintf(d->what, sizeof d->what, "%s", path);
    optvq_array a;
    OPTVQ_TRY(optvq_npy_read(path, &a));
    char shape[160];
    format_shape(shape, sizeof shape, &a);
    const int64_t C = o->channels, m = o->multiple;
    optvq_status st = OPTVQ_OK;
    if (a.ndim != 4 || a.shape[1] != C)
        st = optvq_fail(OPTVQ_ERR_FORMAT,
                        "%s: expected images (B, %lld, H, W) for this %lld-channel model, got shape %s", path,
                        (long long)C, (long long)C, shape);
    else if (a.dtype == OPTVQ_I32 || a.dtype == OPTVQ_I64)
        st = optvq_fail(OPTVQ_ERR_FORMAT,
                        "%s: an %s array is not images: give float32/float64 in [-1, 1] or uint8 0..255", path,
                        a.dtype == OPTVQ_I32 ? "int32" : "int64");
    else if (a.shape[0] < 1 || a.shape[2] < 1 || a.shape[3] < 1)
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: holds no images (shape %s)", path, shape);
    else if (o->square && a.shape[2] != a.shape[3])
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: expected square images (B, %lld, R, R), got shape %s", path,
                        (long long)C, shape);
    else if (m > 0 && (a.shape[2] % m || a.shape[3] % m))
        st = optvq_fail(OPTVQ_ERR_FORMAT,
                        "%s: images of %lldx%lld do not fit the model: height and width must be multiples of %lld",
                        path, (long long)a.shape[2], (long long)a.shape[3], (long long)m);
    const int was_u8 = a.dtype == OPTVQ_U8;
    if (st == OPTVQ_OK && (st = optvq_array_to_f32(&a)) != OPTVQ_OK) {
        char msg[512]; /* the message is rewritten in place: copy it first */
        snprintf(msg, sizeof msg, "%s", optvq_last_error());
        st = optvq_fail(st, "%s: %s", path, msg);
    }
    if (st != OPTVQ_OK) {
        optvq_array_free(&a);
        return st;
    }
    d->images = a.data; /* the set now owns the values */
    d->n = o->limit > 0 && o->limit < a.shape[0] ? o->limit : a.shape[0];
    d->c = a.shape[1];
    d->h = a.shape[2];
    d->w = a.shape[3];
    d->from_u8 = was_u8;
    OPTVQ_TRY(check_size(d, a.shape[0]));
    float *v = d->images;
    const int64_t count = d->n * d->c * d->h * d->w;
    if (was_u8) /* bit for bit the reference's ToTensor + Normalize(0.5, 0.5) */
        for (int64_t i = 0; i < count; i++)
            v[i] = ((float)(v[i] / 255.0) - 0.5f) / 0.5f;
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < count; i++) {
        if (!isfinite(v[i]))
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: NaN or Inf at element %lld", path, (long long)i);
        lo = v[i] < lo ? v[i] : lo;
        hi = v[i] > hi ? v[i] : hi;
    }
    d->lo = lo;
    d->hi = hi;
    return OPTVQ_OK;
}

static optvq_status open_files(const char *path, int is_dir, const dataset_options *o, dataset *d)
{
    d->kind = DATASET_FILES;
    snprintf(d->what, sizeof d->what, "%s", path);
    if (is_dir) {
        OPTVQ_TRY(optvq_image_list_folder(path, &d->paths, &d->n_paths));
        if (d->n_paths == 0)
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: no .png/.jpg/.jpeg images in the folder", path);
    } else {
        FILE *fp = fopen(path, "rb"); /* readable now; decoded when read */
        if (!fp)
            return optvq_fail(OPTVQ_ERR_IO, "%s: %s", path, strerror(errno));
        fclose(fp);
        d->paths = malloc(sizeof *d->paths);
        if (!d->paths || !(d->paths[0] = strdup(path))) {
            free(d->paths);
            d->paths = NULL;
            return optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory", path);
        }
        d->n_paths = 1;
    }
    d->n = o->limit > 0 && o->limit < d->n_paths ? o->limit : d->n_paths;
    d->c = o->channels;
    d->h = d->w = o->resolution;
    return OPTVQ_OK;
}

optvq_status dataset_open(const char *spec, const dataset_options *o, dataset *out)
{
    if (!out)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "dataset: NULL argument");
    memset(out, 0, sizeof *out);
    if (!spec || !spec[0] || !o)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "dataset: no data named");
    if ((o->channels != 1 && o->channels != 3) || o->resolution < 1 || o->resolution > 65536 || o->multiple < 0)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "dataset: bad options (channels %lld, resolution %lld)",
                          (long long)o->channels, (long long)o->resolution);
    optvq_status st;
    struct stat sb;
    if (!strcmp(spec, "fashion-mnist") || !strcmp(spec, "fashion-mnist:train") ||
        !strcmp(spec, "fashion-mnist:test")) {
        const int train = !strcmp(spec, "fashion-mnist") ? o->train_split : !strcmp(spec, "fashion-mnist:train");
        char path[512];
        snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", FASHION_MNIST_DIR, train ? "train" : "t10k");
        if (stat(path, &sb) != 0)
            return optvq_fail(OPTVQ_ERR_IO, "%s: not found (apt-get install dataset-fashion-mnist)", path);
        st = open_idx(path, o, out);
    } else if (stat(spec, &sb) != 0) {
        return optvq_fail(OPTVQ_ERR_IO,
                          "%s: no such file or folder (want a folder of images, an image, a .npy, an IDX file or "
                          "fashion-mnist)", spec);
    } else if (S_ISDIR(sb.st_mode)) {
        st = open_files(spec, 1, o, out);
    } else if (ends_with(spec, ".npy")) {
        st = open_npy(spec, o, out);
    } else if (ends_with(spec, ".gz") || strstr(spec, "idx3-ubyte")) {
        st = open_idx(spec, o, out);
    } else {
        st = open_files(spec, 0, o, out);
    }
    if (st == OPTVQ_OK)
        st = check_size(out, out->n);
    if (st != OPTVQ_OK) {
        dataset_free(out);
        return st;
    }
    out->r = out->h == out->w ? out->h : 0;
    return OPTVQ_OK;
}

optvq_status dataset_read_one(dataset *d, int64_t i, float *chw, int *file_channels)
{
    if (!d || !chw || i < 0 || i >= d->n)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "dataset: image %lld outside the set", (long long)i);
    const int64_t per = d->c * d->h * d->w;
    if (file_channels)
        *file_channels = (int)d->c;
    if (d->images) {
        memcpy(chw, d->images + i * per, (size_t)per * sizeof(float));
        return OPTVQ_OK;
    }
    if (d->kind == DATASET_IDX) {
        optvq_image_u8 im = optvq_idx_image(&d->idx, i);
        return optvq_image_plain_preprocess(&im, (int)d->h, chw);
    }
    return optvq_image_load_val_ex(d->paths[i], (int)d->h, (int)d->c, chw, file_channels);
}

optvq_status dataset_read(dataset *d, int64_t first, int64_t count, float *dst)
{
    if (!d || !dst || first < 0 || count < 0 || count > d->n - first)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "dataset: images %lld..%lld outside the set", (long long)first,
                          (long long)(first + count - 1));
    const int64_t per = d->c * d->h * d->w;
    for (int64_t i = 0; i < count; i++)
        OPTVQ_TRY(dataset_read_one(d, first + i, dst + i * per, NULL));
    return OPTVQ_OK;
}

const char *dataset_file(const dataset *d, int64_t i)
{
    return d && d->kind == DATASET_FILES && i >= 0 && i < d->n_paths ? d->paths[i] : NULL;
}

optvq_status dataset_check_range(const dataset *d)
{
    if (d->kind == DATASET_NPY && (d->lo < -1.0 - DATASET_RANGE_SLACK || d->hi > 1.0 + DATASET_RANGE_SLACK))
        return optvq_fail(OPTVQ_ERR_FORMAT,
                          "%s: values span [%g, %g]; images must lie in [-1, 1], as (x/255 - 0.5)/0.5 maps them",
                          d->what, d->lo, d->hi);
    return OPTVQ_OK;
}

optvq_status dataset_load(const char *spec, int train, int64_t resolution, int channels, int64_t limit,
                          dataset *out)
{
    dataset_options o = {.channels = channels, .resolution = resolution, .square = 1, .limit = limit,
                         .train_split = train};
    OPTVQ_TRY(dataset_open(spec, &o, out));
    if (out->images)
        return OPTVQ_OK;
    const int64_t per = out->c * out->h * out->w;
    float *images = malloc((size_t)(out->n * per) * sizeof(float));
    optvq_status st = images ? dataset_read(out, 0, out->n, images)
                             : optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory for %lld images", out->what,
                                          (long long)out->n);
    if (st != OPTVQ_OK) {
        free(images);
        dataset_free(out);
        return st;
    }
    out->images = images;
    optvq_idx_free(&out->idx); /* decoded: the bytes are no longer needed */
    return OPTVQ_OK;
}

optvq_status dataset_augment(dataset *d, int64_t i, optvq_rng *rng, float *chw)
{
    const int64_t per = d->c * d->h * d->w;
    if (d->kind != DATASET_FILES) {
        memcpy(chw, d->images + i * per, (size_t)per * sizeof(float));
        return OPTVQ_OK;
    }
    optvq_image_u8 im;
    OPTVQ_TRY(optvq_image_read_u8(d->paths[i], (int)d->c, &im));
    optvq_status st = optvq_image_preprocess_train(&im, (int)d->r, rng, chw);
    optvq_image_u8_free(&im);
    return st;
}

void dataset_free(dataset *d)
{
    if (!d)
        return;
    free(d->images);
    if (d->paths)
        optvq_image_list_free(d->paths, d->n_paths);
    optvq_idx_free(&d->idx);
    memset(d, 0, sizeof *d);
}
