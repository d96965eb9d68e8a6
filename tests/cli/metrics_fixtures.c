/* Fixtures for tests/cli/metrics.sh, built against the library by the script:
 *   metrics_fixtures OUT_DIR
 * writes OUT_DIR/alex.safetensors (torchvision's alexnet `features` names) and
 * OUT_DIR/inception.safetensors (pytorch-fid's names, with an fc the loader
 * ignores), filled by tools/gen_fid_lpips_ref.py's rules from the name-keyed
 * generator (tests/test.h), and the reference photos of
 * tests/ref/lpips_alex/images.npy as PNGs in OUT_DIR/a/ and OUT_DIR/b/, so that
 * the CLI can be checked against the PyTorch values committed there. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/fid.h"
#include "eval/lpips_alex.h"
#include "io/image.h"
#include "io/weights.h"
#include "optvq/optvq.h"

/* tools/gen_model_ref.py's det_uniform */
static void det_uniform(float *out, const char *name, int64_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    for (int64_t i = 0; i < n; i++) {
        uint64_t z = h + (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        out[i] = (float)((double)(z >> 40) / (double)(1 << 23) - 1.0);
    }
}

static int ends_with(const char *s, const char *t)
{
    size_t ls = strlen(s), lt = strlen(t);
    return ls >= lt && !strcmp(s + ls - lt, t);
}

static void fill(nn_param *p)
{
    float *v = p->data;
    det_uniform(v, p->name, p->numel);
    for (int64_t j = 0; j < p->numel; j++) {
        if (ends_with(p->name, "running_mean") || ends_with(p->name, "bn.bias"))
            v[j] = v[j] * 0.1f;
        else if (ends_with(p->name, "running_var"))
            v[j] = 1.0f + 0.2f * v[j];
        else if (ends_with(p->name, "bn.weight"))
            v[j] = 1.0f + 0.1f * v[j];
        else if (p->ndim == 4)
            v[j] = v[j] * (float)sqrt(6.0 / (double)(p->shape[1] * p->shape[2] * p->shape[3]));
        else
            v[j] = v[j] * 0.1f;
    }
}

static int save(nn_params *ps, const char *skip_prefix, const char *path, int with_fc)
{
    optvq_weights *w = NULL;
    if (optvq_weights_create(&w) != OPTVQ_OK)
        return 1;
    for (int i = 0; i < ps->count; i++) {
        nn_param *p = &ps->items[i];
        if (skip_prefix && !strncmp(p->name, skip_prefix, strlen(skip_prefix)))
            continue;
        fill(p);
        if (optvq_weights_add(w, p->name, p->ndim, p->shape, p->data) != OPTVQ_OK)
            return 1;
    }
    if (with_fc) {
        static float fc[1008 * 4];
        const int64_t shape[2] = {1008, 4};
        if (optvq_weights_add(w, "fc.weight", 2, shape, fc) != OPTVQ_OK)
            return 1;
    }
    int rc = optvq_weights_save_safetensors(w, path) != OPTVQ_OK;
    optvq_weights_free(w);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: metrics_fixtures OUT_DIR\n");
        return 2;
    }
    char path[4096];
    lpips_alex *l = NULL;
    fid_inception *f = NULL;
    if (lpips_alex_create(&l) != OPTVQ_OK || fid_inception_create(&f) != OPTVQ_OK)
        goto fail;
    snprintf(path, sizeof path, "%s/alex.safetensors", argv[1]);
    if (save(lpips_alex_params(l), "lin", path, 0))
        goto fail;
    snprintf(path, sizeof path, "%s/inception.safetensors", argv[1]);
    if (save(fid_inception_params(f), NULL, path, 1))
        goto fail;
    optvq_array a;
    if (optvq_npy_read("tests/ref/lpips_alex/images.npy", &a) != OPTVQ_OK || a.ndim != 5 || a.shape[2] != 3)
        goto fail;
    const int64_t N = a.shape[1], H = a.shape[3], W = a.shape[4];
    for (int s = 0; s < 2; s++)
        for (int64_t i = 0; i < N; i++) {
            optvq_image_u8 im = {0};
            if (optvq_image_u8_alloc(&im, (int)W, (int)H, 3) != OPTVQ_OK)
                goto fail;
            const uint8_t *src = (const uint8_t *)a.data + ((int64_t)s * N + i) * 3 * H * W;
            for (int64_t c = 0; c < 3; c++)
                for (int64_t k = 0; k < H * W; k++)
                    im.data[k * 3 + c] = src[c * H * W + k];
            snprintf(path, sizeof path, "%s/%c/img%02lld.png", argv[1], s ? 'b' : 'a', (long long)i);
            optvq_status st = optvq_image_write_png_u8(path, &im);
            optvq_image_u8_free(&im);
            if (st != OPTVQ_OK)
                goto fail;
        }
    optvq_array_free(&a);
    lpips_alex_free(l);
    fid_inception_free(f);
    return 0;
fail:
    fprintf(stderr, "metrics_fixtures: %s\n", optvq_last_error());
    return 1;
}
