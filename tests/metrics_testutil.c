/* Helpers of the LPIPS-Alex and FID tests (see metrics_testutil.h). */
#include "metrics_testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

void *mt_load_npy(const char *rel, optvq_dtype want, int64_t *n, int64_t *shape)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", test_ref_dir(), rel);
    optvq_array a;
    if (optvq_npy_read(path, &a) != OPTVQ_OK) {
        fprintf(stderr, "    cannot read %s: %s\n", path, optvq_last_error());
        return NULL;
    }
    if (a.dtype != want && (want != OPTVQ_F32 || optvq_array_to_f32(&a) != OPTVQ_OK)) {
        fprintf(stderr, "    %s: unexpected dtype\n", path);
        optvq_array_free(&a);
        return NULL;
    }
    if (n)
        *n = optvq_array_numel(&a);
    if (shape)
        for (int d = 0; d < a.ndim; d++)
            shape[d] = a.shape[d];
    return a.data;
}

static int ends_with(const char *s, const char *t)
{
    size_t ls = strlen(s), lt = strlen(t);
    return ls >= lt && !strcmp(s + ls - lt, t);
}

void mt_det_fill(nn_params *ps)
{
    for (int i = 0; i < ps->count; i++) {
        nn_param *p = &ps->items[i];
        float *v = p->data;
        test_det_uniform(v, p->name, p->numel);
        for (int64_t j = 0; j < p->numel; j++) {
            if (!strncmp(p->name, "lin", 3))
                v[j] = fabsf(v[j]) * 0.5f;
            else if (ends_with(p->name, "running_mean") || ends_with(p->name, "bn.bias"))
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
}

void mt_check_keys(const nn_params *ps, const char *keys_rel, mt_ignored ignored)
{
    char path[1024], line[512];
    snprintf(path, sizeof path, "%s/%s", test_ref_dir(), keys_rel);
    FILE *fp = fopen(path, "r");
    CHECK_MSG(fp != NULL, "cannot open %s", path);
    if (!fp)
        return;
    int seen = 0, n_keys = 0;
    while (fgets(line, sizeof line, fp)) {
        char name[256];
        int64_t shape[8];
        int nd = 0, off = 0, used = 0;
        if (sscanf(line, "%255s%n", name, &off) != 1)
            continue;
        while (nd < 8 && sscanf(line + off, "%lld%n", (long long *)&shape[nd], &used) == 1) {
            off += used;
            nd++;
        }
        n_keys++;
        const nn_param *p = NULL;
        for (int i = 0; i < ps->count && !p; i++)
            if (!strcmp(ps->items[i].name, name))
                p = &ps->items[i];
        if (!p) {
            CHECK_MSG(ignored && ignored(name), "%s: '%s' is not a parameter", keys_rel, name);
            continue;
        }
        seen++;
        int ok = p->ndim == nd;
        for (int d = 0; ok && d < nd; d++)
            ok = p->shape[d] == shape[d];
        CHECK_MSG(ok, "%s: '%s' has another shape than the parameter", keys_rel, name);
    }
    fclose(fp);
    CHECK_MSG(seen == ps->count, "%s: %d of the %d parameters found (%d keys)", keys_rel, seen, ps->count, n_keys);
}

float *mt_u8_to_unit(const unsigned char *u8, int64_t n)
{
    float *f = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; f && i < n; i++)
        f[i] = (float)u8[i] / 255.0f;
    return f;
}
