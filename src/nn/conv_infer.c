/* The inference convolution's dispatch and the cache of derived weights
 * (see conv_infer.h). */
#include "nn/conv_infer.h"

#include "core/error.h"
#include "nn/conv_bf16.h"
#include "nn/conv_winograd.h"

#include <stdlib.h>
#include <string.h>

typedef struct derived_entry {
    nn_derived_kind kind;
    const float *w;
    int64_t w_count;
    size_t bytes;
    uint64_t hash;
    void *data;
} derived_entry;

struct nn_conv_cache {
    derived_entry *e;
    int n, cap;
    size_t bytes, budget; /* derived weights held, and the most they may take */
    nn_precision precision;
};

nn_conv_cache *nn_conv_cache_create(size_t max_bytes)
{
    nn_conv_cache *c = calloc(1, sizeof *c);
    if (!c) {
        optvq_fail(OPTVQ_ERR_NOMEM, "conv: out of memory for the weight cache");
        return NULL;
    }
    c->budget = max_bytes;
    return c;
}

size_t nn_conv_cache_budget(void)
{
    static const char *const names[2] = {"OPTVQ_CONV_CACHE_MB", "OPTVQ_WINOGRAD_CACHE_MB"};
    for (int i = 0; i < 2; i++) {
        const char *e = getenv(names[i]);
        char *end;
        if (e && *e) {
            unsigned long long mb = strtoull(e, &end, 10);
            if (!*end && mb < ((unsigned long long)1 << 40))
                return (size_t)mb << 20;
        }
    }
    return (size_t)NN_CONV_CACHE_MB << 20;
}

void nn_conv_cache_free(nn_conv_cache *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n; i++)
        free(c->e[i].data);
    free(c->e);
    free(c);
}

size_t nn_conv_cache_bytes(const nn_conv_cache *c)
{
    return c ? sizeof *c + (size_t)c->cap * sizeof *c->e + c->bytes : 0;
}

void nn_conv_cache_set_precision(nn_conv_cache *c, nn_precision p)
{
    if (c)
        c->precision = p == NN_PRECISION_BF16 ? NN_PRECISION_BF16 : NN_PRECISION_FP32;
}

nn_precision nn_conv_cache_precision(const nn_conv_cache *c) { return c ? c->precision : NN_PRECISION_FP32; }

/* 64-bit hash of the weights' bits: eight independent multiply-xor lanes
 * (memory-bound), folded at the end. */
static uint64_t weights_hash(const float *w, int64_t count)
{
    uint64_t h[8];
    for (int l = 0; l < 8; l++)
        h[l] = 0x9E3779B97F4A7C15ull * (uint64_t)(l + 1);
    int64_t i = 0;
    for (; i + 8 <= count; i += 8)
        for (int l = 0; l < 8; l++) {
            uint32_t v;
            memcpy(&v, w + i + l, sizeof v);
            h[l] = (h[l] ^ v) * 0xBF58476D1CE4E5B9ull;
            h[l] ^= h[l] >> 29;
        }
    uint64_t r = (uint64_t)count;
    for (; i < count; i++) {
        uint32_t v;
        memcpy(&v, w + i, sizeof v);
        r = (r ^ v) * 0x94D049BB133111EBull;
    }
    for (int l = 0; l < 8; l++)
        r = (r ^ h[l]) * 0x94D049BB133111EBull ^ (r >> 31);
    return r;
}

optvq_status nn_conv_cache_derived(nn_conv_cache *c, nn_derived_kind kind, const float *w, int64_t w_count,
                                   size_t bytes, nn_derive_fn fill, const void *ctx, void *scratch,
                                   const void **out)
{
    *out = NULL;
    derived_entry *e = NULL;
    for (int i = 0; i < c->n; i++)
        if (c->e[i].w == w && c->e[i].kind == kind && c->e[i].w_count == w_count && c->e[i].bytes == bytes) {
            e = &c->e[i];
            break;
        }
    if (!e && c->bytes + bytes > c->budget && !scratch)
        return OPTVQ_OK; /* not held, no room, and the caller computes it itself */
    const uint64_t h = weights_hash(w, w_count);
    if (e && e->hash == h) {
        *out = e->data;
        return OPTVQ_OK;
    }
    if (!e && c->bytes + bytes <= c->budget) {
        if (c->n == c->cap) {
            int cap = c->cap ? 2 * c->cap : 16;
            derived_entry *ne = realloc(c->e, (size_t)cap * sizeof *ne);
            if (!ne)
                return optvq_fail(OPTVQ_ERR_NOMEM, "conv: out of memory for the weight cache");
            c->e = ne;
            c->cap = cap;
        }
        void *buf = aligned_alloc(64, (bytes + 63) / 64 * 64);
        if (!buf)
            return optvq_fail(OPTVQ_ERR_NOMEM, "conv: cannot allocate %zu bytes of derived weights", bytes);
        e = &c->e[c->n++];
        *e = (derived_entry){kind, w, w_count, bytes, 0, buf};
        c->bytes += bytes;
    }
    void *dst = e ? e->data : scratch;
    OPTVQ_TRY(fill(dst, w, ctx));
    if (e)
        e->hash = h;
    *out = dst;
    return OPTVQ_OK;
}

/* ---- dispatch ---- */

static optvq_status pack_bf16(void *dst, const float *w, const void *ctx)
{
    return nn_conv_bf16_pack_weights(ctx, w, dst);
}

static optvq_status forward_bf16(float *y, const float *x, const float *w, const float *b, const nn_conv2d_desc *d,
                                 nn_workspace *ws, nn_conv_cache *cache)
{
    if (!w || !d)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "conv_bf16_forward: NULL argument");
    const void *packed;
    const size_t bytes = nn_conv_bf16_packed_weight_elems(d) * sizeof(uint16_t);
    OPTVQ_TRY(nn_conv_cache_derived(cache, NN_DERIVED_BF16, w, d->c_out * d->c_in * d->kh * d->kw, bytes,
                                    pack_bf16, d, NULL, &packed));
    return nn_conv_bf16_forward(y, x, w, packed, b, d, ws);
}

optvq_status nn_conv2d_forward_infer(float *y, const float *x, const float *w, const float *b,
                                     const nn_conv2d_desc *d, nn_workspace *ws, nn_conv_cache *cache)
{
    if (cache && d && cache->precision == NN_PRECISION_BF16 && nn_conv_bf16_pays(d))
        return forward_bf16(y, x, w, b, d, ws, cache);
    if (cache && d && nn_conv_winograd_pays(d) && nn_conv_winograd_enabled())
        return nn_conv_winograd_forward(y, x, w, b, d, ws, cache);
    return nn_conv2d_forward(y, x, w, b, d, ws);
}

size_t nn_conv2d_workspace_infer(const nn_conv2d_desc *d, nn_precision p)
{
    if (p == NN_PRECISION_BF16 && nn_conv_bf16_pays(d))
        return nn_conv_bf16_workspace(d, 0);
    if (nn_conv_winograd_pays(d) && nn_conv_winograd_enabled())
        return nn_conv_winograd_workspace(d);
    return nn_conv2d_forward_workspace(d);
}
