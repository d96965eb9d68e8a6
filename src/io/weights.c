/* The named tensor store, format detection, element conversions and strict
 * loading by name (src/io/weights.h). */
#include "io/weights.h"
#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the weights readers assume a little-endian host"
#endif

#define MAX_NUMEL ((int64_t)1 << 40) /* 4 TiB of floats: anything larger is absurd */

typedef struct wentry {
    optvq_tensor t;
    char *name;  /* owned copy of t.name */
    float *owned; /* data to free, or NULL when borrowed */
} wentry;

struct optvq_weights {
    wentry *items;
    int64_t count, cap;
    int64_t *slots; /* open addressing: index + 1, 0 = empty */
    size_t n_slots; /* power of two */
    void *map;
    size_t map_size;
    /* safetensors __metadata__: string pairs (integers of a checkpoint) */
    char *meta_keys[OPTVQ_WEIGHTS_MAX_META], *meta_values[OPTVQ_WEIGHTS_MAX_META];
    int meta_count;
};

/* ---- store ------------------------------------------------------------ */

optvq_status optvq_weights_create(optvq_weights **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return optvq_fail(OPTVQ_ERR_NOMEM, "out of memory creating a weights store");
    return OPTVQ_OK;
}

void optvq_weights_free(optvq_weights *w)
{
    if (!w)
        return;
    for (int64_t i = 0; i < w->count; i++) {
        free(w->items[i].name);
        free(w->items[i].owned);
    }
    free(w->items);
    free(w->slots);
    for (int i = 0; i < w->meta_count; i++) {
        free(w->meta_keys[i]);
        free(w->meta_values[i]);
    }
    if (w->map)
        munmap(w->map, w->map_size);
    free(w);
}

optvq_status optvq_weights_set_meta(optvq_weights *w, const char *key, const char *value)
{
    if (!w || !key || !value)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "optvq_weights_set_meta: NULL argument");
    if (!key[0] || !strcmp(key, "format") || strlen(key) > 256 || strlen(value) > 4096)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "weights metadata key '%.64s' is empty, reserved or too long", key);
    for (int i = 0; i < w->meta_count; i++)
        if (!strcmp(w->meta_keys[i], key)) {
            char *v = strdup(value);
            if (!v)
                return optvq_fail(OPTVQ_ERR_NOMEM, "out of memory for weights metadata");
            free(w->meta_values[i]);
            w->meta_values[i] = v;
            return OPTVQ_OK;
        }
    if (w->meta_count == OPTVQ_WEIGHTS_MAX_META)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "more than %d weights metadata entries", OPTVQ_WEIGHTS_MAX_META);
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return optvq_fail(OPTVQ_ERR_NOMEM, "out of memory for weights metadata");
    }
    w->meta_keys[w->meta_count] = k;
    w->meta_values[w->meta_count++] = v;
    return OPTVQ_OK;
}

const char *optvq_weights_meta(const optvq_weights *w, const char *key)
{
    for (int i = 0; w && key && i < w->meta_count; i++)
        if (!strcmp(w->meta_keys[i], key))
            return w->meta_values[i];
    return NULL;
}

int optvq_weights_meta_count(const optvq_weights *w) { return w ? w->meta_count : 0; }

const char *optvq_weights_meta_key(const optvq_weights *w, int i)
{
    return w && i >= 0 && i < w->meta_count ? w->meta_keys[i] : NULL;
}

void optvq_weights_keep_mapping(optvq_weights *w, void *map, size_t size)
{
    if (w->map)
        munmap(w->map, w->map_size);
    w->map = map;
    w->map_size = size;
}

int64_t optvq_weights_count(const optvq_weights *w) { return w ? w->count : 0; }

const optvq_tensor *optvq_weights_get(const optvq_weights *w, int64_t i)
{
    if (!w || i < 0 || i >= w->count)
        return NULL;
    return &w->items[i].t;
}

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

const optvq_tensor *optvq_weights_find(const optvq_weights *w, const char *name)
{
    if (!w || !w->n_slots || !name)
        return NULL;
    size_t mask = w->n_slots - 1;
    for (size_t s = (size_t)hash_name(name) & mask;; s = (s + 1) & mask) {
        int64_t v = w->slots[s];
        if (!v)
            return NULL;
        if (!strcmp(w->items[v - 1].name, name))
            return &w->items[v - 1].t;
    }
}

static int rehash(optvq_weights *w, size_t n_slots)
{
    int64_t *slots = calloc(n_slots, sizeof *slots);
    if (!slots)
        return -1;
    for (int64_t i = 0; i < w->count; i++) {
        size_t s = (size_t)hash_name(w->items[i].name) & (n_slots - 1);
        while (slots[s])
            s = (s + 1) & (n_slots - 1);
        slots[s] = i + 1;
    }
    free(w->slots);
    w->slots = slots;
    w->n_slots = n_slots;
    return 0;
}

/* numel of a shape, or -1 when a dimension is negative or the product is absurd. */
static int64_t shape_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || shape[i] > MAX_NUMEL)
            return -1;
        if (shape[i] && n > MAX_NUMEL / shape[i])
            return -1;
        n *= shape[i];
    }
    return n;
}

optvq_status optvq_weights_add_raw(optvq_weights *w, const char *name, int ndim, const int64_t *shape,
                                   float *data, int owned, const char *where)
{
    optvq_status st = OPTVQ_OK;
    char *copy = NULL;
    if (!where)
        where = "weights";
    if (!w || !name) {
        st = optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: optvq_weights_add: NULL store or name", where);
        goto fail;
    }
    if (!name[0]) {
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: a tensor has an empty name", where);
        goto fail;
    }
    if (ndim < 0 || ndim > OPTVQ_MAX_DIMS || (ndim && !shape)) {
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: tensor '%.200s' has %d dimensions (at most %d supported)", where,
                        name, ndim, OPTVQ_MAX_DIMS);
        goto fail;
    }
    int64_t numel = shape_numel(ndim, shape);
    if (numel < 0) {
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: tensor '%.200s' has an invalid or absurdly large shape", where, name);
        goto fail;
    }
    if (numel > 0 && !data) {
        st = optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: tensor '%.200s' has no data", where, name);
        goto fail;
    }
    if (optvq_weights_find(w, name)) {
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: duplicate tensor name '%.200s'", where, name);
        goto fail;
    }
    if (w->count == w->cap) {
        int64_t cap = w->cap ? 2 * w->cap : 64;
        wentry *items = realloc(w->items, (size_t)cap * sizeof *items);
        if (!items) {
            st = optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory for the tensor table", where);
            goto fail;
        }
        w->items = items;
        w->cap = cap;
    }
    if ((size_t)(w->count + 1) * 2 > w->n_slots && rehash(w, w->n_slots ? 2 * w->n_slots : 128) != 0) {
        st = optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory for the tensor table", where);
        goto fail;
    }
    copy = strdup(name);
    if (!copy) {
        st = optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory", where);
        goto fail;
    }
    wentry *e = &w->items[w->count];
    memset(e, 0, sizeof *e);
    e->name = copy;
    e->owned = owned ? data : NULL;
    e->t.name = copy;
    e->t.ndim = ndim;
    for (int i = 0; i < ndim; i++)
        e->t.shape[i] = shape[i];
    e->t.numel = numel;
    e->t.data = data;
    size_t mask = w->n_slots - 1, s = (size_t)hash_name(copy) & mask;
    while (w->slots[s])
        s = (s + 1) & mask;
    w->slots[s] = ++w->count;
    return OPTVQ_OK;
fail:
    if (owned)
        free(data);
    return st;
}

optvq_status optvq_weights_add(optvq_weights *w, const char *name, int ndim, const int64_t *shape,
                               const float *data)
{
    if (ndim < 0 || ndim > OPTVQ_MAX_DIMS || (ndim && !shape))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "optvq_weights_add: bad ndim %d", ndim);
    int64_t numel = shape_numel(ndim, shape);
    if (numel < 0)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "optvq_weights_add: invalid shape for '%.200s'", name ? name : "");
    if (numel > 0 && !data)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "optvq_weights_add: NULL data for '%.200s'", name ? name : "");
    float *copy = malloc((size_t)(numel ? numel : 1) * sizeof *copy);
    if (!copy)
        return optvq_fail(OPTVQ_ERR_NOMEM, "optvq_weights_add: out of memory for '%.200s'", name ? name : "");
    if (numel)
        memcpy(copy, data, (size_t)numel * sizeof *copy);
    return optvq_weights_add_raw(w, name, ndim, shape, copy, 1, "optvq_weights_add");
}

/* ---- files ------------------------------------------------------------ */

optvq_status optvq_map_file(const char *path, void **map, size_t *size)
{
    *map = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return optvq_fail(OPTVQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return optvq_fail(OPTVQ_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return optvq_fail(OPTVQ_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size == 0) {
        close(fd);
        return OPTVQ_OK;
    }
    void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED)
        return optvq_fail(OPTVQ_ERR_IO, "%s: cannot map: %s", path, strerror(e));
    *map = m;
    *size = (size_t)sb.st_size;
    return OPTVQ_OK;
}

optvq_status optvq_weights_load(const char *path, optvq_weights **out)
{
    *out = NULL;
    unsigned char magic[4] = {0};
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return optvq_fail(OPTVQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t n = fread(magic, 1, sizeof magic, fp);
    fclose(fp);
    if (n >= 4 && magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4)
        return optvq_weights_load_pth(path, out);
    if (n >= 2 && magic[0] == 0x80 && magic[1] <= 5) /* a pickle: legacy (non-zip) torch.save */
        return optvq_weights_load_pth(path, out);
    return optvq_weights_load_safetensors(path, out);
}

/* ---- element conversions ---------------------------------------------- */

float optvq_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
    if (exp == 0) {
        float f = (float)mant * 5.9604644775390625e-8f; /* mant * 2^-24, exact */
        return sign ? -f : f;
    }
    if (exp == 31)
        bits = sign | 0x7f800000u | (mant << 13);
    else
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float optvq_bf16_to_float(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

size_t optvq_wtype_size(optvq_wtype t)
{
    switch (t) {
    case OPTVQ_WT_F64: case OPTVQ_WT_I64: return 8;
    case OPTVQ_WT_F32: case OPTVQ_WT_I32: return 4;
    case OPTVQ_WT_F16: case OPTVQ_WT_BF16: case OPTVQ_WT_I16: return 2;
    case OPTVQ_WT_I8: case OPTVQ_WT_U8: case OPTVQ_WT_BOOL: return 1;
    }
    return 1;
}

void optvq_wtype_convert(float *dst, const unsigned char *src, optvq_wtype t, int64_t n)
{
    switch (t) {
    case OPTVQ_WT_F32:
        memcpy(dst, src, (size_t)n * 4);
        break;
    case OPTVQ_WT_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = optvq_half_to_float(h);
        }
        break;
    case OPTVQ_WT_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = optvq_bf16_to_float(h);
        }
        break;
    case OPTVQ_WT_F64:
        for (int64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            dst[i] = (float)d;
        }
        break;
    case OPTVQ_WT_I64:
        for (int64_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, src + 8 * i, 8);
            dst[i] = (float)v;
        }
        break;
    case OPTVQ_WT_I32:
        for (int64_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, src + 4 * i, 4);
            dst[i] = (float)v;
        }
        break;
    case OPTVQ_WT_I16:
        for (int64_t i = 0; i < n; i++) {
            int16_t v;
            memcpy(&v, src + 2 * i, 2);
            dst[i] = (float)v;
        }
        break;
    case OPTVQ_WT_I8:
        for (int64_t i = 0; i < n; i++)
            dst[i] = (float)(int8_t)src[i];
        break;
    case OPTVQ_WT_U8:
        for (int64_t i = 0; i < n; i++)
            dst[i] = (float)src[i];
        break;
    case OPTVQ_WT_BOOL:
        for (int64_t i = 0; i < n; i++)
            dst[i] = src[i] ? 1.0f : 0.0f;
        break;
    }
}

/* ---- strict loading ----------------------------------------------------- */

typedef struct norm_entry {
    const char *norm; /* points into the tensor's name */
    int64_t index;
} norm_entry;

static int cmp_norm(const void *a, const void *b)
{
    const norm_entry *x = a, *y = b;
    int c = strcmp(x->norm, y->norm);
    return c ? c : (x->index > y->index) - (x->index < y->index); /* file order among equals */
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const norm_entry *)a)->norm, ((const norm_entry *)b)->norm);
}

static const char *normalise(const char *name)
{
    int model = 0, orig = 0;
    for (int k = 0; k < 2; k++) {
        if (!model && !strncmp(name, "model.", 6)) {
            name += 6;
            model = 1;
        } else if (!orig && !strncmp(name, "_orig_mod.", 10)) {
            name += 10;
            orig = 1;
        }
    }
    return name;
}

const char *optvq_weights_normalise_name(const char *name)
{
    if (!name)
        return NULL;
    name = normalise(name);
    return strncmp(name, "loss.", 5) ? name : NULL;
}

/* A growing one-line report. */
typedef struct report {
    char buf[2048];
    size_t len;
} report;

static void rep_add(report *r, const char *fmt, ...) OPTVQ_PRINTF(2, 3);
static void rep_add(report *r, const char *fmt, ...)
{
    if (r->len >= sizeof r->buf - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->buf + r->len, sizeof r->buf - r->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        r->len = r->len + (size_t)n < sizeof r->buf ? r->len + (size_t)n : sizeof r->buf - 1;
}

static void rep_shape(report *r, int ndim, const int64_t *shape)
{
    rep_add(r, "(");
    for (int i = 0; i < ndim; i++)
        rep_add(r, "%s%lld", i ? ", " : "", (long long)shape[i]);
    rep_add(r, ")");
}

#define SHOW 3 /* names shown per kind of problem */

/* Drops this process's pages of the store's mapping under one tensor once it
 * is read. The mapping is private and read-only, so nothing is lost: a later
 * read faults them in again from the page cache. Meanwhile they do not count
 * in the resident memory, so a load holds about one tensor of the file at a
 * time beside the model's copy, not the whole file. Converted (owned)
 * tensors are not in the mapping and stay as they are. */
static void release_pages(const optvq_weights *w, const optvq_tensor *t)
{
    const uintptr_t begin = (uintptr_t)t->data, end = begin + (uintptr_t)t->numel * sizeof(float);
    const uintptr_t map = (uintptr_t)w->map, page = (uintptr_t)sysconf(_SC_PAGESIZE);
    if (!w->map || !t->numel || begin < map || end > map + w->map_size || !page)
        return;
    /* whole pages around the tensor (the map starts on a page boundary);
     * a neighbour's share of a boundary page is simply read again */
    const uintptr_t lo = begin & ~(page - 1), hi = (end + page - 1) & ~(page - 1);
    madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

optvq_status optvq_weights_load_into(const optvq_weights *w, const optvq_expected_tensor *expected, int64_t n,
                                     const char *where)
{
    if (!where)
        where = "weights";
    if (!w || n < 0 || (n && !expected))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: optvq_weights_load_into: bad arguments", where);
    for (int64_t i = 0; i < n; i++) {
        const optvq_expected_tensor *e = &expected[i];
        if (!e->name || e->ndim < 0 || e->ndim > OPTVQ_MAX_DIMS || shape_numel(e->ndim, e->shape) < 0 ||
            (shape_numel(e->ndim, e->shape) > 0 && !e->dest))
            return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: expected tensor %lld ('%.200s') is malformed", where,
                              (long long)i, e->name ? e->name : "(null)");
    }

    optvq_status st = OPTVQ_OK;
    int64_t m = 0;
    norm_entry *tab = malloc((size_t)(w->count ? w->count : 1) * sizeof *tab);
    norm_entry *exp_sorted = malloc((size_t)(n ? n : 1) * sizeof *exp_sorted);
    int64_t *match = malloc((size_t)(n ? n : 1) * sizeof *match);       /* tab index per expected, -1 */
    unsigned char *used = calloc((size_t)(w->count ? w->count : 1), 1); /* per tab entry */
    if (!tab || !exp_sorted || !match || !used) {
        st = optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory matching tensors", where);
        goto done;
    }
    for (int64_t i = 0; i < w->count; i++) {
        const char *nm = normalise(w->items[i].name);
        if (!strncmp(nm, "loss.", 5))
            continue;
        tab[m].norm = nm;
        tab[m].index = i;
        m++;
    }
    qsort(tab, (size_t)m, sizeof *tab, cmp_norm);

    /* expected names must be distinct */
    for (int64_t i = 0; i < n; i++) {
        exp_sorted[i].norm = expected[i].name;
        exp_sorted[i].index = i;
    }
    qsort(exp_sorted, (size_t)n, sizeof *exp_sorted, cmp_norm);
    for (int64_t i = 1; i < n; i++)
        if (!strcmp(exp_sorted[i].norm, exp_sorted[i - 1].norm)) {
            st = optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: the model expects '%.200s' twice", where,
                            exp_sorted[i].norm);
            goto done;
        }

    /* problems: counts, and the first SHOW of each kind (indices) */
    int64_t n_miss = 0, n_unexp = 0, n_dup = 0, n_shape = 0;
    int64_t miss[SHOW], unexp[SHOW], dup[SHOW], shape[SHOW][2]; /* expected i / tab j */

    /* names that several checkpoint tensors normalise to */
    for (int64_t j = 0; j < m;) {
        int64_t k = j + 1;
        while (k < m && !strcmp(tab[k].norm, tab[j].norm))
            k++;
        if (k - j > 1) {
            for (int64_t t = j; t < k; t++)
                used[t] = 2;
            if (n_dup < SHOW)
                dup[n_dup] = j;
            n_dup++;
        }
        j = k;
    }
    for (int64_t i = 0; i < n; i++) {
        const optvq_expected_tensor *e = &expected[i];
        norm_entry key = {e->name, 0};
        norm_entry *hit = m ? bsearch(&key, tab, (size_t)m, sizeof *tab, cmp_name) : NULL;
        match[i] = -1;
        if (!hit) {
            if (n_miss < SHOW)
                miss[n_miss] = i;
            n_miss++;
            continue;
        }
        int64_t ti = hit - tab;
        if (used[ti] == 2)
            continue; /* ambiguous: reported as a duplicate */
        used[ti] = 1;
        match[i] = ti;
        const optvq_tensor *t = &w->items[tab[ti].index].t;
        int same = t->ndim == e->ndim;
        for (int d = 0; same && d < e->ndim; d++)
            same = t->shape[d] == e->shape[d];
        if (!same) {
            if (n_shape < SHOW) {
                shape[n_shape][0] = i;
                shape[n_shape][1] = ti;
            }
            n_shape++;
        }
    }
    for (int64_t j = 0; j < m; j++)
        if (!used[j]) {
            if (n_unexp < SHOW)
                unexp[n_unexp] = j;
            n_unexp++;
        }

    if (n_miss || n_unexp || n_dup || n_shape) {
        /* name as many of each kind as fit in one message line */
        report r;
        for (int show = SHOW; show >= 1; show--) {
            r.len = 0;
            r.buf[0] = '\0';
            int parts = 0;
            if (n_miss) {
                rep_add(&r, "%s%lld missing (", parts++ ? ", " : " ", (long long)n_miss);
                for (int64_t q = 0; q < n_miss && q < show; q++)
                    rep_add(&r, "%s%.100s", q ? ", " : "", expected[miss[q]].name);
                rep_add(&r, "%s)", n_miss > show ? ", ..." : "");
            }
            if (n_unexp) {
                rep_add(&r, "%s%lld unexpected (", parts++ ? ", " : " ", (long long)n_unexp);
                for (int64_t q = 0; q < n_unexp && q < show; q++)
                    rep_add(&r, "%s%.100s", q ? ", " : "", w->items[tab[unexp[q]].index].name);
                rep_add(&r, "%s)", n_unexp > show ? ", ..." : "");
            }
            if (n_dup) {
                rep_add(&r, "%s%lld %s (", parts++ ? ", " : " ", (long long)n_dup,
                        n_dup > 1 ? "names given twice" : "name given twice");
                for (int64_t q = 0; q < n_dup && q < show; q++) {
                    int64_t j = dup[q];
                    rep_add(&r, "%s%.100s <- %.100s and %.100s", q ? ", " : "", tab[j].norm, w->items[tab[j].index].name,
                            w->items[tab[j + 1].index].name);
                }
                rep_add(&r, "%s)", n_dup > show ? ", ..." : "");
            }
            if (n_shape) {
                rep_add(&r, "%s%lld %s (", parts++ ? ", " : " ", (long long)n_shape,
                        n_shape > 1 ? "shape mismatches" : "shape mismatch");
                for (int64_t q = 0; q < n_shape && q < show; q++) {
                    const optvq_expected_tensor *e = &expected[shape[q][0]];
                    const optvq_tensor *t = &w->items[tab[shape[q][1]].index].t;
                    rep_add(&r, "%s%.100s: file ", q ? ", " : "", e->name);
                    rep_shape(&r, t->ndim, t->shape);
                    rep_add(&r, " vs model ");
                    rep_shape(&r, e->ndim, e->shape);
                }
                rep_add(&r, "%s)", n_shape > show ? ", ..." : "");
            }
            if (strlen(where) + r.len < 500)
                break;
        }
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%.200s:%s", where, r.buf);
        goto done;
    }

    /* all matched: refuse non-finite values before copying anything */
    for (int64_t i = 0; i < n; i++) {
        const optvq_tensor *t = &w->items[tab[match[i]].index].t;
        for (int64_t k = 0; k < t->numel; k++)
            if (!isfinite(t->data[k])) {
                st = optvq_fail(OPTVQ_ERR_NUMERIC, "%s: tensor '%.200s' holds %s at element %lld", where, t->name,
                                isnan(t->data[k]) ? "NaN" : "Inf", (long long)k);
                goto done;
            }
        release_pages(w, t);
    }
    for (int64_t i = 0; i < n; i++) {
        const optvq_tensor *t = &w->items[tab[match[i]].index].t;
        if (t->numel)
            memcpy(expected[i].dest, t->data, (size_t)t->numel * sizeof(float));
        release_pages(w, t);
    }
done:
    free(tab);
    free(exp_sorted);
    free(match);
    free(used);
    return st;
}
