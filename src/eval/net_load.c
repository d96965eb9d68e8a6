/* Strict by-name loading of frozen network parameters; see net_load.h. */
#include "eval/net_load.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "io/weights.h"

#define MAX_FILES 8

static int name_matches(const char *name, const char *want)
{
    size_t ln = strlen(name), lw = strlen(want);
    if (ln == lw)
        return strcmp(name, want) == 0;
    return ln > lw && name[ln - lw - 1] == '.' && strcmp(name + ln - lw, want) == 0;
}

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t used = (size_t)snprintf(buf, cap, "(");
    for (int d = 0; d < ndim && used < cap; d++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (used < cap)
        snprintf(buf + used, cap - used, ")");
}

/* The one tensor named `want` in the stores (NULL when none); two are an error. */
static optvq_status find(optvq_weights *const *stores, const char *const *paths, int n, const char *want,
                         const char *what, const optvq_tensor **found, int *file)
{
    *found = NULL;
    for (int f = 0; f < n; f++) {
        const int64_t cnt = optvq_weights_count(stores[f]);
        for (int64_t t = 0; t < cnt; t++) {
            const optvq_tensor *tt = optvq_weights_get(stores[f], t);
            if (!name_matches(tt->name, want))
                continue;
            if (*found)
                return optvq_fail(OPTVQ_ERR_FORMAT, "%s: tensor '%s' is ambiguous: '%s' in %s and '%s' in %s", what,
                                  want, (*found)->name, paths[*file], tt->name, paths[f]);
            *found = tt;
            *file = f;
        }
    }
    return OPTVQ_OK;
}

static optvq_status fill(nn_param *p, optvq_weights *const *stores, const char *const *paths, int n,
                         net_load_alias alias, const char *what, const char *all)
{
    char alt[NN_PARAM_NAME_MAX] = "";
    if (alias)
        alias(p->name, alt, sizeof alt);
    const optvq_tensor *t = NULL;
    int f = 0;
    OPTVQ_TRY(find(stores, paths, n, p->name, what, &t, &f));
    if (!t && alt[0])
        OPTVQ_TRY(find(stores, paths, n, alt, what, &t, &f));
    if (!t) {
        if (alt[0])
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: %s: missing tensor '%s' (or '%s')", what, all, p->name, alt);
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: %s: missing tensor '%s'", what, all, p->name);
    }
    int ok = t->ndim == p->ndim;
    for (int d = 0; ok && d < p->ndim; d++)
        ok = t->shape[d] == p->shape[d];
    if (!ok) {
        char have[96], want[96];
        shape_str(have, sizeof have, t->ndim, t->shape);
        shape_str(want, sizeof want, p->ndim, p->shape);
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: %s: tensor '%s' has shape %s, expected %s", what, paths[f], t->name,
                          have, want);
    }
    for (int64_t j = 0; j < p->numel; j++)
        if (!isfinite(t->data[j]))
            return optvq_fail(OPTVQ_ERR_NUMERIC, "%s: %s: tensor '%s' holds NaN/Inf", what, paths[f], t->name);
    memcpy(p->data, t->data, sizeof(float) * (size_t)p->numel);
    return OPTVQ_OK;
}

optvq_status net_load_params(nn_params *ps, const char *const *paths, int n_paths, net_load_alias alias,
                             const char *what)
{
    if (!ps || !paths || n_paths < 1 || n_paths > MAX_FILES)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: need 1 to %d weight files", what, MAX_FILES);
    for (int f = 0; f < n_paths; f++)
        if (!paths[f])
            return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: NULL weight path", what);
    optvq_weights *stores[MAX_FILES] = {0};
    optvq_status st = OPTVQ_OK;
    for (int f = 0; f < n_paths && st == OPTVQ_OK; f++)
        st = optvq_weights_load(paths[f], &stores[f]);
    char all[1024];
    all[0] = '\0';
    for (int f = 0, used = 0; f < n_paths && used < (int)sizeof all; f++) {
        int w = snprintf(all + used, sizeof all - (size_t)used, "%s%s", f ? " + " : "", paths[f]);
        if (w < 0)
            break;
        used += w;
    }
    for (int i = 0; i < ps->count && st == OPTVQ_OK; i++)
        st = fill(&ps->items[i], stores, paths, n_paths, alias, what, all);
    for (int f = 0; f < n_paths; f++)
        optvq_weights_free(stores[f]);
    return st;
}
