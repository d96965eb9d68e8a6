/* safetensors reader/writer.
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON (an object:
 * name -> {"dtype", "shape", "data_offsets": [begin, end]}, plus an optional
 * "__metadata__" object), then the data section; offsets are relative to it.
 * The reader memory-maps the file, parses the header with cJSON, and checks
 * every size and offset before touching data. F32 tensors that are aligned
 * are used in place (the store keeps the mapping); others are converted. */
#include "core/atomic_file.h"
#include "core/error.h"
#include "io/weights.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define ST_MAX_HEADER ((uint64_t)100 << 20) /* 100 MiB */
#define ST_MAX_INT 9007199254740992.0        /* 2^53: integers exact in a double */

typedef struct st_range {
    uint64_t begin, end;
    const char *name;
} st_range;

static int cmp_range(const void *a, const void *b)
{
    const st_range *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int parse_dtype(const char *s, optvq_wtype *t)
{
    static const struct { const char *name; optvq_wtype t; } map[] = {
        {"F32", OPTVQ_WT_F32}, {"F16", OPTVQ_WT_F16}, {"BF16", OPTVQ_WT_BF16}, {"F64", OPTVQ_WT_F64},
        {"I64", OPTVQ_WT_I64}, {"I32", OPTVQ_WT_I32}, {"I16", OPTVQ_WT_I16},   {"I8", OPTVQ_WT_I8},
        {"U8", OPTVQ_WT_U8},   {"BOOL", OPTVQ_WT_BOOL},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(s, map[i].name)) {
            *t = map[i].t;
            return 0;
        }
    return -1;
}

/* A JSON number that is an integer in [0, 2^53]. */
static int json_uint(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= ST_MAX_INT) || d != floor(d))
        return -1;
    *out = (uint64_t)d;
    return 0;
}

optvq_status optvq_weights_load_safetensors(const char *path, optvq_weights **out)
{
    *out = NULL;
    void *map = NULL;
    size_t size = 0;
    OPTVQ_TRY(optvq_map_file(path, &map, &size));
    const unsigned char *bytes = map;
    optvq_status st = OPTVQ_OK;
    char *header = NULL;
    cJSON *root = NULL;
    st_range *ranges = NULL;
    optvq_weights *w = NULL;

    if (size < 8) {
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: %zu bytes: too short for a safetensors file", path, size);
        goto done;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | bytes[i];
    if (n > ST_MAX_HEADER) {
        st = optvq_fail(OPTVQ_ERR_FORMAT,
                        "%s: safetensors header length %llu exceeds the 100 MiB cap (not a safetensors file?)",
                        path, (unsigned long long)n);
        goto done;
    }
    if (n > size - 8) {
        st = optvq_fail(OPTVQ_ERR_FORMAT,
                        "%s: safetensors header length %llu runs past the end of the file (%zu bytes; truncated?)",
                        path, (unsigned long long)n, size);
        goto done;
    }
    if (n < 2 || bytes[8] != '{') {
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: not a safetensors file (the header is not a JSON object)", path);
        goto done;
    }
    header = malloc((size_t)n + 1);
    if (!header) {
        st = optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory for the header", path);
        goto done;
    }
    memcpy(header, bytes + 8, (size_t)n);
    header[n] = '\0';
    if (memchr(header, '\0', (size_t)n)) {
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: safetensors header contains a NUL byte", path);
        goto done;
    }
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(header, (size_t)n, &end, 0);
    if (!root) {
        long pos = end && end >= header && end <= header + n ? (long)(end - header) : -1;
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: safetensors header is not valid JSON (near byte %ld of the header)",
                        path, pos);
        goto done;
    }
    for (const char *p = end; p && p < header + n; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: safetensors header has trailing bytes after the JSON object",
                            path);
            goto done;
        }
    if (!cJSON_IsObject(root)) {
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: safetensors header is not a JSON object", path);
        goto done;
    }

    const unsigned char *data = bytes + 8 + n;
    const uint64_t data_size = (uint64_t)size - 8 - n;
    int64_t count = cJSON_GetArraySize(root);
    ranges = malloc((size_t)(count ? count : 1) * sizeof *ranges);
    if (!ranges) {
        st = optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    int64_t n_ranges = 0;

    /* pass 1: check every entry against the file */
    for (const cJSON *e = root->child; e; e = e->next) {
        const char *name = e->string ? e->string : "";
        if (!strcmp(name, "__metadata__"))
            continue;
        if (!cJSON_IsObject(e)) {
            st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: safetensors entry '%.200s' is not an object", path, name);
            goto done;
        }
        const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
        const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        if (!cJSON_IsString(jd) || !cJSON_IsArray(js) || !cJSON_IsArray(jo)) {
            st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: tensor '%.200s' lacks a string 'dtype', a 'shape' or 'data_offsets'",
                            path, name);
            goto done;
        }
        optvq_wtype t;
        if (parse_dtype(jd->valuestring, &t) != 0) {
            st = optvq_fail(OPTVQ_ERR_FORMAT,
                            "%s: tensor '%.200s' has unsupported dtype '%.32s' (supported: F32, F16, BF16, F64, "
                            "I64, I32, I16, I8, U8, BOOL)",
                            path, name, jd->valuestring);
            goto done;
        }
        int ndim = cJSON_GetArraySize(js);
        if (ndim > OPTVQ_MAX_DIMS) {
            st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: tensor '%.200s' has %d dimensions (at most %d supported)", path,
                            name, ndim, OPTVQ_MAX_DIMS);
            goto done;
        }
        const uint64_t es = optvq_wtype_size(t), limit = ((uint64_t)1 << 62) / es;
        uint64_t numel = 1;
        for (const cJSON *d = js->child; d; d = d->next) {
            uint64_t v;
            if (json_uint(d, &v) != 0) {
                st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: tensor '%.200s' has a shape entry that is not a "
                                "non-negative integer", path, name);
                goto done;
            }
            if (v && numel > limit / v) {
                st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: tensor '%.200s' has an absurdly large shape", path, name);
                goto done;
            }
            numel *= v;
        }
        uint64_t b, en;
        if (cJSON_GetArraySize(jo) != 2 || json_uint(jo->child, &b) != 0 || json_uint(jo->child->next, &en) != 0) {
            st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: tensor '%.200s' has malformed data_offsets (need [begin, end])",
                            path, name);
            goto done;
        }
        if (b > en || en > data_size) {
            st = optvq_fail(OPTVQ_ERR_FORMAT,
                            "%s: tensor '%.200s' data_offsets [%llu, %llu] lie outside the data section (%llu "
                            "bytes; truncated?)",
                            path, name, (unsigned long long)b, (unsigned long long)en,
                            (unsigned long long)data_size);
            goto done;
        }
        if (en - b != numel * es) {
            st = optvq_fail(OPTVQ_ERR_FORMAT,
                            "%s: tensor '%.200s' spans %llu bytes but its shape and dtype need %llu", path, name,
                            (unsigned long long)(en - b), (unsigned long long)(numel * es));
            goto done;
        }
        ranges[n_ranges].begin = b;
        ranges[n_ranges].end = en;
        ranges[n_ranges].name = name;
        n_ranges++;
    }
    qsort(ranges, (size_t)n_ranges, sizeof *ranges, cmp_range);
    uint64_t max_end = 0;
    const char *max_name = NULL;
    for (int64_t i = 0; i < n_ranges; i++) {
        if (ranges[i].begin == ranges[i].end)
            continue; /* empty tensors occupy nothing */
        if (max_name && ranges[i].begin < max_end) {
            st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: tensors '%.150s' and '%.150s' overlap in the data section", path,
                            max_name, ranges[i].name);
            goto done;
        }
        max_end = ranges[i].end;
        max_name = ranges[i].name;
    }

    /* pass 2: build the store */
    st = optvq_weights_create(&w);
    if (st != OPTVQ_OK)
        goto done;
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    for (const cJSON *m = cJSON_IsObject(meta) ? meta->child : NULL; m && st == OPTVQ_OK; m = m->next)
        if (cJSON_IsString(m) && m->string && strcmp(m->string, "format") &&
            optvq_weights_meta_count(w) < OPTVQ_WEIGHTS_MAX_META && strlen(m->string) <= 256 &&
            strlen(m->valuestring) <= 4096) /* others are foreign: kept out, never an error */
            st = optvq_weights_set_meta(w, m->string, m->valuestring);
    if (st != OPTVQ_OK)
        goto done;
    for (const cJSON *e = root->child; e; e = e->next) {
        const char *name = e->string ? e->string : "";
        if (!strcmp(name, "__metadata__"))
            continue;
        optvq_wtype t = OPTVQ_WT_F32;
        parse_dtype(cJSON_GetObjectItemCaseSensitive(e, "dtype")->valuestring, &t);
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
        const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        int64_t shape[OPTVQ_MAX_DIMS];
        int ndim = 0;
        int64_t numel = 1;
        for (const cJSON *d = js->child; d; d = d->next) {
            shape[ndim] = (int64_t)d->valuedouble;
            numel *= shape[ndim++];
        }
        const unsigned char *src = data + (uint64_t)jo->child->valuedouble;
        float *dst;
        int owned;
        if (t == OPTVQ_WT_F32 && ((uintptr_t)src & 3) == 0) {
            dst = (float *)(uintptr_t)src; /* read-only mapping: the store hands out const data */
            owned = 0;
        } else {
            dst = malloc((size_t)(numel ? numel : 1) * sizeof *dst);
            if (!dst) {
                st = optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory for tensor '%.200s'", path, name);
                goto done;
            }
            optvq_wtype_convert(dst, src, t, numel);
            owned = 1;
        }
        st = optvq_weights_add_raw(w, name, ndim, shape, dst, owned, path);
        if (st != OPTVQ_OK)
            goto done;
    }
    optvq_weights_keep_mapping(w, map, size);
    map = NULL;
    *out = w;
    w = NULL;
done:
    cJSON_Delete(root);
    free(header);
    free(ranges);
    optvq_weights_free(w);
    if (map)
        munmap(map, size);
    return st;
}

/* ---- writer ------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_json_string(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            sb_put(b, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, (const char *)p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp((*(const optvq_tensor *const *)a)->name, (*(const optvq_tensor *const *)b)->name);
}

optvq_status optvq_weights_save_safetensors(const optvq_weights *w, const char *path)
{
    if (!w || !path)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "optvq_weights_save_safetensors: NULL argument");
    int64_t n = optvq_weights_count(w);
    const optvq_tensor **order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!order)
        return optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory", path);
    for (int64_t i = 0; i < n; i++)
        order[i] = optvq_weights_get(w, i);
    qsort(order, (size_t)n, sizeof *order, cmp_tensor_name);

    sbuf hb = {0};
    char num[64];
    uint64_t offset = 0;
    sb_str(&hb, "{\"__metadata__\":{\"format\":\"pt\"");
    for (int i = 0; i < optvq_weights_meta_count(w); i++) {
        const char *key = optvq_weights_meta_key(w, i);
        sb_str(&hb, ",");
        sb_json_string(&hb, key);
        sb_str(&hb, ":");
        sb_json_string(&hb, optvq_weights_meta(w, key));
    }
    sb_str(&hb, "}");
    for (int64_t i = 0; i < n; i++) {
        const optvq_tensor *t = order[i];
        sb_str(&hb, ",");
        sb_json_string(&hb, t->name);
        sb_str(&hb, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)t->shape[d]);
            sb_str(&hb, num);
        }
        uint64_t next = offset + (uint64_t)t->numel * 4;
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                 (unsigned long long)next);
        sb_str(&hb, num);
        offset = next;
    }
    sb_str(&hb, "}");
    while (!hb.oom && hb.len % 8)
        sb_str(&hb, " ");
    if (hb.oom) {
        free(hb.p);
        free(order);
        return optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory building the header", path);
    }

    optvq_atomic_file f;
    optvq_status st = optvq_atomic_open(&f, path);
    if (st != OPTVQ_OK) {
        free(hb.p);
        free(order);
        return st;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)hb.len >> (8 * i));
    int ok = fwrite(len8, 1, 8, f.fp) == 8 && fwrite(hb.p, 1, hb.len, f.fp) == hb.len;
    for (int64_t i = 0; ok && i < n; i++)
        if (order[i]->numel)
            ok = fwrite(order[i]->data, sizeof(float), (size_t)order[i]->numel, f.fp) == (size_t)order[i]->numel;
    free(hb.p);
    free(order);
    if (!ok) {
        optvq_atomic_abort(&f);
        return optvq_fail(OPTVQ_ERR_IO, "%s: write failed", path);
    }
    return optvq_atomic_commit(&f);
}
