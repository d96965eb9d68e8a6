#include "train/dataset.h"

#include "core/error.h"
#include "io/image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static optvq_status load_idx(const char *path, int64_t resolution, int64_t limit, dataset *out)
{
    optvq_idx idx;
    OPTVQ_TRY(optvq_idx_read_images(path, limit, &idx));
    int oh, ow;
    optvq_image_plain_dims((int)idx.dims[1], (int)idx.dims[2], (int)resolution, &oh, &ow);
    if (oh != resolution || ow != resolution) {
        optvq_idx_free(&idx);
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: %lldx%lld images do not resize to a %lld square", path,
                          (long long)idx.dims[1], (long long)idx.dims[2], (long long)resolution);
    }
    out->n = idx.dims[0];
    out->c = 1;
    out->r = resolution;
    out->images = malloc((size_t)(out->n * resolution * resolution) * sizeof(float));
    optvq_status st = out->images ? OPTVQ_OK : optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory", path);
    for (int64_t i = 0; st == OPTVQ_OK && i < out->n; i++) {
        optvq_image_u8 im = optvq_idx_image(&idx, i);
        st = optvq_image_plain_preprocess(&im, (int)resolution, out->images + i * resolution * resolution);
    }
    optvq_idx_free(&idx);
    return st;
}

optvq_status dataset_load(const char *spec, int train, int64_t resolution, int channels, int64_t limit,
                          dataset *out)
{
    memset(out, 0, sizeof *out);
    char path[4096];
    if (!strcmp(spec, "fashion-mnist") || !strcmp(spec, "fashion-mnist:train") || !strcmp(spec, "fashion-mnist:test")) {
        int use_train = !strcmp(spec, "fashion-mnist") ? train : !strcmp(spec, "fashion-mnist:train");
        snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", FASHION_MNIST_DIR, use_train ? "train" : "t10k");
        struct stat s;
        if (stat(path, &s) != 0)
            return optvq_fail(OPTVQ_ERR_IO, "%s: not found (apt-get install dataset-fashion-mnist)", path);
        return load_idx(path, resolution, limit, out);
    }
    if (has_suffix(spec, ".gz") || strstr(spec, "idx3-ubyte"))
        return load_idx(spec, resolution, limit, out);
    if (has_suffix(spec, ".npy")) {
        optvq_array a;
        OPTVQ_TRY(optvq_npy_read(spec, &a));
        optvq_status st = optvq_array_to_f32(&a);
        if (st == OPTVQ_OK && (a.ndim != 4 || a.shape[2] != a.shape[3]))
            st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: expected square images (N, C, R, R)", spec);
        if (st != OPTVQ_OK) {
            optvq_array_free(&a);
            return st;
        }
        out->images = a.data;
        out->n = limit > 0 && limit < a.shape[0] ? limit : a.shape[0];
        out->c = a.shape[1];
        out->r = a.shape[2];
        return OPTVQ_OK;
    }
    char **paths;
    int64_t n;
    OPTVQ_TRY(optvq_image_list_folder(spec, &paths, &n));
    if (n == 0)
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: no .png/.jpg/.jpeg images", spec);
    out->paths = paths;
    out->n_paths = n;
    if (limit > 0 && limit < n)
        n = limit;
    out->n = n;
    out->c = channels;
    out->r = resolution;
    out->images = malloc((size_t)(n * channels * resolution * resolution) * sizeof(float));
    if (!out->images) {
        dataset_free(out);
        return optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory for %lld images", spec, (long long)n);
    }
    for (int64_t i = 0; i < n; i++) {
        optvq_status st = optvq_image_load_val(paths[i], (int)resolution, channels,
                                               out->images + i * channels * resolution * resolution);
        if (st != OPTVQ_OK) {
            dataset_free(out);
            return st;
        }
    }
    return OPTVQ_OK;
}

optvq_status dataset_augment(dataset *d, int64_t i, optvq_rng *rng, float *chw)
{
    const int64_t per = d->c * d->r * d->r;
    if (!d->paths) {
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
    free(d->images);
    if (d->paths)
        optvq_image_list_free(d->paths, d->n_paths);
    memset(d, 0, sizeof *d);
}
