/* PyTorch checkpoints (torch.save) read without Python.
 *
 * Two layouts. Since torch 1.6 the file is a zip archive: <prefix>/data.pkl holds a pickle of the saved
 * object in which every tensor's storage is a persistent id naming the
 * archive entry <prefix>/data/<key>. We read the zip's central directory
 * (stored and deflated entries, zip64, every offset and size checked, CRC-32
 * verified) and interpret a safe subset of pickle: the opcodes a state dict
 * needs, and only the globals that describe one (OrderedDict, the tensor
 * rebuild functions, the storage types). Nothing is ever executed or
 * imported: a global is a tag compared against that list; anything else is
 * refused by name.
 *
 * The legacy layout (torch < 1.6, or _use_new_zipfile_serialization=False;
 * lpips's and pyiqa's published heads use it) is five things back to back:
 * a pickle of the magic number 0x1950a86a20f9469cfc6c, a pickle of the
 * protocol version 1001, a pickle of the sys_info dict (little_endian must be
 * true), the pickle of the saved object, whose persistent ids are
 * ('storage', type, key, location, numel, view_metadata), and a pickle of the
 * sorted list of storage keys; then, for each key in that order, an int64
 * element count and the raw little-endian elements. The same safe pickle
 * subset reads the pickles; every count is checked against the pickle's
 * declaration and the file's size. Storage views (view_metadata not None,
 * torch < 0.4) are refused. */
#include "core/error.h"
#include "io/weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <zlib.h>

#define PKL_MAX_BYTES ((size_t)64 << 20) /* data.pkl larger than this is absurd */
#define PKL_MAX_OBJECTS (2 << 20)        /* objects a pickle may create        */
#define PKL_MAX_STACK (4 << 20)          /* stack depth / marks / list items   */
#define ZIP_MAX_RATIO 1100               /* deflate cannot expand beyond ~1032x */
#define PTH_MAX_NUMEL ((int64_t)1 << 40) /* elements of one tensor               */
#define PTH_COPY_SLACK ((uint64_t)64 << 20) /* bytes of copies beyond 8x the file */

/* ======================================================================== */
/* zip                                                                       */
/* ======================================================================== */

typedef struct zentry {
    const char *name; /* into the central directory; not NUL-terminated */
    size_t name_len;
    uint64_t comp_size, size, local_off;
    uint32_t crc;
    uint16_t method, flags;
    /* after zip_data(): */
    int ready;
    const unsigned char *data;
    unsigned char *inflated; /* owned, when the entry was deflated */
} zentry;

typedef struct zip {
    const char *path;
    const unsigned char *map;
    size_t size;
    zentry *e;
    int64_t n;
    uint64_t inflated; /* bytes inflated so far (entries may share their data) */
} zip;

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static int cmp_zentry(const void *a, const void *b)
{
    const zentry *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    if (c)
        return c;
    return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
}

static void zip_close(zip *z)
{
    for (int64_t i = 0; i < z->n; i++)
        free(z->e[i].inflated);
    free(z->e);
    z->e = NULL;
    z->n = 0;
}

static optvq_status zip_open(zip *z)
{
    const unsigned char *m = z->map;
    const size_t size = z->size;
    const char *path = z->path;
    if (size < 22)
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: truncated zip archive (%zu bytes)", path, size);
    /* end of central directory record: the last one, with its comment ending the file */
    size_t eocd = 0;
    int found = 0;
    size_t lo = size - 22 > 65535 ? size - 22 - 65535 : 0;
    for (size_t p = size - 22 + 1; p-- > lo;) {
        if (rd32(m + p) == 0x06054b50u && p + 22 + rd16(m + p + 20) == size) {
            eocd = p;
            found = 1;
            break;
        }
    }
    if (!found)
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: truncated or corrupt zip archive (no end of central directory)",
                          path);
    uint64_t n_entries = rd16(m + eocd + 10), cd_size = rd32(m + eocd + 12), cd_off = rd32(m + eocd + 16);
    uint64_t cd_limit = eocd; /* the central directory ends before this */
    if (rd16(m + eocd + 4) != 0 && rd16(m + eocd + 4) != 0xffff)
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: multi-disk zip archives are not supported", path);
    if (n_entries == 0xffff || cd_size == 0xffffffffu || cd_off == 0xffffffffu) {
        if (eocd < 20 || rd32(m + eocd - 20) != 0x07064b50u)
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: corrupt zip64 archive (no zip64 locator)", path);
        uint64_t z64 = rd64(m + eocd - 20 + 8);
        if (z64 > eocd - 20 || eocd - 20 - z64 < 56 || rd32(m + z64) != 0x06064b50u)
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: corrupt zip64 archive (bad zip64 end record)", path);
        n_entries = rd64(m + z64 + 32);
        cd_size = rd64(m + z64 + 40);
        cd_off = rd64(m + z64 + 48);
        cd_limit = z64;
    }
    if (cd_off > cd_limit || cd_size > cd_limit - cd_off)
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: corrupt zip archive (central directory outside the file)", path);
    if (n_entries > cd_size / 46)
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: corrupt zip archive (%llu entries cannot fit the central directory)",
                          path, (unsigned long long)n_entries);
    z->e = calloc((size_t)(n_entries ? n_entries : 1), sizeof *z->e);
    if (!z->e)
        return optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory for the zip directory", path);
    const unsigned char *cd = m + cd_off;
    uint64_t pos = 0;
    for (uint64_t i = 0; i < n_entries; i++) {
        if (cd_size - pos < 46 || rd32(cd + pos) != 0x02014b50u)
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: corrupt zip archive (bad central directory entry %llu)", path,
                              (unsigned long long)i);
        const unsigned char *h = cd + pos;
        uint64_t nlen = rd16(h + 28), elen = rd16(h + 30), clen = rd16(h + 32);
        if (cd_size - pos - 46 < nlen + elen + clen)
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: corrupt zip archive (central directory entry %llu overruns)",
                              path, (unsigned long long)i);
        zentry *e = &z->e[z->n++];
        e->flags = rd16(h + 8);
        e->method = rd16(h + 10);
        e->crc = rd32(h + 16);
        e->comp_size = rd32(h + 20);
        e->size = rd32(h + 24);
        e->local_off = rd32(h + 42);
        e->name = (const char *)h + 46;
        e->name_len = nlen;
        /* zip64 extended information: the 0xffffffff fields, in order */
        const unsigned char *x = h + 46 + nlen, *xend = x + elen;
        while (xend - x >= 4) {
            uint16_t id = rd16(x), sz = rd16(x + 2);
            if (xend - x - 4 < sz)
                break;
            if (id == 1) {
                const unsigned char *f = x + 4, *fend = f + sz;
                uint64_t *fields[3] = {&e->size, &e->comp_size, &e->local_off};
                for (int k = 0; k < 3; k++) {
                    if (*fields[k] != 0xffffffffu)
                        continue;
                    if (fend - f < 8)
                        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: corrupt zip64 extra field in entry %llu", path,
                                          (unsigned long long)i);
                    *fields[k] = rd64(f);
                    f += 8;
                }
            }
            x += 4 + sz;
        }
        pos += 46 + nlen + elen + clen;
    }
    if (z->n > 1)
        qsort(z->e, (size_t)z->n, sizeof *z->e, cmp_zentry);
    for (int64_t i = 1; i < z->n; i++)
        if (!cmp_zentry(&z->e[i - 1], &z->e[i]))
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: corrupt zip archive (entry '%.*s' appears twice)", path,
                              (int)(z->e[i].name_len > 200 ? 200 : z->e[i].name_len), z->e[i].name);
    return OPTVQ_OK;
}

static zentry *zip_find(zip *z, const char *name, size_t len)
{
    zentry key;
    memset(&key, 0, sizeof key);
    key.name = name;
    key.name_len = len;
    return z->n ? bsearch(&key, z->e, (size_t)z->n, sizeof *z->e, cmp_zentry) : NULL;
}

/* Locates (and inflates, and checks the CRC of) an entry's data once. */
static optvq_status zip_data(zip *z, zentry *e)
{
    if (e->ready)
        return OPTVQ_OK;
    const char *path = z->path;
    int nl = (int)(e->name_len > 200 ? 200 : e->name_len);
    if (e->flags & 1)
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: zip entry '%.*s' is encrypted", path, nl, e->name);
    if (e->method != 0 && e->method != 8)
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: zip entry '%.*s' uses compression method %u (only stored and "
                          "deflate are supported)", path, nl, e->name, e->method);
    const uint64_t size = z->size;
    if (e->local_off > size || size - e->local_off < 30 || rd32(z->map + e->local_off) != 0x04034b50u)
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: corrupt zip archive (bad local header of '%.*s')", path, nl, e->name);
    const unsigned char *lh = z->map + e->local_off;
    uint64_t start = e->local_off + 30 + rd16(lh + 26) + rd16(lh + 28);
    if (start > size || e->comp_size > size - start)
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: truncated zip archive (data of '%.*s' runs past the end)", path, nl,
                          e->name);
    const unsigned char *src = z->map + start;
    if (e->method == 0) {
        if (e->comp_size != e->size)
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: corrupt zip archive (stored entry '%.*s' has two sizes)", path,
                              nl, e->name);
        e->data = src;
    } else {
        if (e->size / ZIP_MAX_RATIO > e->comp_size + 1)
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: zip entry '%.*s' claims an implausible compression ratio", path,
                              nl, e->name);
        /* entries whose data overlap (a zip bomb) could each inflate that much */
        if (e->size > (uint64_t)ZIP_MAX_RATIO * size - z->inflated)
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: the zip entries inflate to more than %dx the file's size "
                              "(overlapping entries?)", path, ZIP_MAX_RATIO);
        z->inflated += e->size;
        e->inflated = malloc((size_t)(e->size ? e->size : 1));
        if (!e->inflated)
            return optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory inflating '%.*s'", path, nl, e->name);
        z_stream s;
        memset(&s, 0, sizeof s);
        if (inflateInit2(&s, -MAX_WBITS) != Z_OK)
            return optvq_fail(OPTVQ_ERR_NOMEM, "%s: cannot initialise zlib", path);
        uint64_t in_left = e->comp_size, out_left = e->size;
        s.next_in = (unsigned char *)(uintptr_t)src;
        s.next_out = e->inflated;
        int rc = Z_OK;
        while (rc == Z_OK) {
            uInt ai = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
            uInt ao = out_left > (1u << 30) ? (1u << 30) : (uInt)out_left;
            s.avail_in = ai;
            s.avail_out = ao;
            rc = inflate(&s, Z_NO_FLUSH);
            in_left -= ai - s.avail_in;
            out_left -= ao - s.avail_out;
            if (rc == Z_OK && ai == s.avail_in && ao == s.avail_out)
                rc = Z_BUF_ERROR; /* no progress: truncated input or too small output */
        }
        inflateEnd(&s);
        if (rc != Z_STREAM_END || out_left != 0)
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: corrupt deflate data in zip entry '%.*s'", path, nl, e->name);
        e->data = e->inflated;
    }
    /* CRC-32 (writers that disable it store 0) */
    if (e->crc != 0) {
        uLong crc = crc32_z(0L, Z_NULL, 0);
        crc = crc32_z(crc, e->data, (z_size_t)e->size);
        if ((uint32_t)crc != e->crc)
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: zip entry '%.*s' fails its CRC-32 check (corrupt file)", path,
                              nl, e->name);
    }
    e->ready = 1;
    return OPTVQ_OK;
}

/* ======================================================================== */
/* pickle                                                                    */
/* ======================================================================== */

typedef enum pk_kind {
    K_NONE, K_BOOL, K_INT, K_FLOAT, K_STR, K_TUPLE, K_LIST, K_DICT, K_GLOBAL, K_STORAGE, K_TENSOR
} pk_kind;

typedef enum pk_global {
    G_ODICT, G_REBUILD_TENSOR_V2, G_REBUILD_PARAMETER, G_REBUILD_PARAMETER_WITH_STATE, G_STORAGE
} pk_global;

typedef struct pk_obj {
    int kind;
    int32_t n, cap; /* tuple/list: items; dict: keys and values alternating */
    int32_t *items;
    union {
        int64_t i;   /* INT, BOOL; STORAGE: its zip entry index; TENSOR: its index */
        double f;
        struct {
            int id;  /* GLOBAL */
            optvq_wtype wt;
        } g;
    } u;
    const char *s; /* STR: into the pickle data; STORAGE: its key */
    size_t slen;
    optvq_wtype wt;   /* STORAGE */
    int64_t numel;    /* STORAGE: elements */
} pk_obj;

typedef struct pk_tensor {
    int32_t storage;
    int ndim;
    int64_t offset, size[OPTVQ_MAX_DIMS], stride[OPTVQ_MAX_DIMS];
} pk_tensor;

typedef struct pk_vm {
    const char *path;
    zip *z;
    const char *prefix; /* archive folder, with its trailing '/' */
    size_t prefix_len;
    const char *pkl_name; /* for messages: "data.pkl" or "the legacy torch.save file" */
    int legacy;           /* storages are z->e entries appended by persistent_load */
    pk_obj *obj;
    int32_t n_obj, cap_obj;
    int32_t *stack;
    int32_t sp, cap_stack;
    int32_t *marks;
    int32_t n_marks, cap_marks;
    int32_t *memo;
    int64_t cap_memo;
    int64_t memo_next; /* for MEMOIZE */
    pk_tensor *t;
    int32_t n_t, cap_t;
    int64_t items_total;
    uint64_t copied; /* bytes of tensors materialised as copies */
} pk_vm;

static void vm_free(pk_vm *vm)
{
    for (int32_t i = 0; i < vm->n_obj; i++)
        free(vm->obj[i].items);
    free(vm->obj);
    free(vm->stack);
    free(vm->marks);
    free(vm->memo);
    free(vm->t);
}

static optvq_status bad(pk_vm *vm, size_t at, const char *what)
{
    return optvq_fail(OPTVQ_ERR_FORMAT, "%s: unsupported or corrupt pickle in %s at byte %zu: %s", vm->path,
                      vm->pkl_name, at, what);
}

static int grow(void **p, int32_t *cap, size_t elem, int64_t need, int64_t max)
{
    if (need <= *cap)
        return 0;
    if (need > max)
        return -1;
    int64_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    if (c > max)
        c = max;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = (int32_t)c;
    return 0;
}

/* New object; returns its index or -1 (message set). */
static int32_t new_obj(pk_vm *vm, int kind, size_t at)
{
    if (grow((void **)&vm->obj, &vm->cap_obj, sizeof *vm->obj, (int64_t)vm->n_obj + 1, PKL_MAX_OBJECTS) != 0) {
        bad(vm, at, "too many objects");
        return -1;
    }
    pk_obj *o = &vm->obj[vm->n_obj];
    memset(o, 0, sizeof *o);
    o->kind = kind;
    return vm->n_obj++;
}

static int push(pk_vm *vm, int32_t v, size_t at)
{
    if (grow((void **)&vm->stack, &vm->cap_stack, sizeof *vm->stack, (int64_t)vm->sp + 1, PKL_MAX_STACK) != 0) {
        bad(vm, at, "stack too deep");
        return -1;
    }
    vm->stack[vm->sp++] = v;
    return 0;
}

static int add_item(pk_vm *vm, int32_t container, int32_t v, size_t at)
{
    pk_obj *o = &vm->obj[container];
    if (++vm->items_total > PKL_MAX_STACK * 4LL ||
        grow((void **)&o->items, &o->cap, sizeof *o->items, (int64_t)o->n + 1, PKL_MAX_STACK) != 0) {
        bad(vm, at, "too many container items");
        return -1;
    }
    o->items[o->n++] = v;
    return 0;
}

/* Index of the topmost mark's stack position, popping it; -1 when none. */
static int32_t pop_mark(pk_vm *vm)
{
    return vm->n_marks ? vm->marks[--vm->n_marks] : -1;
}

static int is_str(const pk_obj *o, const char *s)
{
    return o->kind == K_STR && o->slen == strlen(s) && !memcmp(o->s, s, o->slen);
}

static int resolve_global(pk_vm *vm, const char *mod, size_t mlen, const char *name, size_t nlen, size_t at,
                          int32_t *out)
{
    static const struct { const char *mod, *name; int id; optvq_wtype wt; } allowed[] = {
        {"collections", "OrderedDict", G_ODICT, OPTVQ_WT_F32},
        {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_TENSOR_V2, OPTVQ_WT_F32},
        /* torch 0.3's (storage, offset, size, stride): v2's first four arguments */
        {"torch._utils", "_rebuild_tensor", G_REBUILD_TENSOR_V2, OPTVQ_WT_F32},
        {"torch._utils", "_rebuild_parameter", G_REBUILD_PARAMETER, OPTVQ_WT_F32},
        {"torch._utils", "_rebuild_parameter_with_state", G_REBUILD_PARAMETER_WITH_STATE, OPTVQ_WT_F32},
        {"torch", "FloatStorage", G_STORAGE, OPTVQ_WT_F32},
        {"torch", "HalfStorage", G_STORAGE, OPTVQ_WT_F16},
        {"torch", "BFloat16Storage", G_STORAGE, OPTVQ_WT_BF16},
        {"torch", "DoubleStorage", G_STORAGE, OPTVQ_WT_F64},
        {"torch", "LongStorage", G_STORAGE, OPTVQ_WT_I64},
        {"torch", "IntStorage", G_STORAGE, OPTVQ_WT_I32},
        {"torch", "ShortStorage", G_STORAGE, OPTVQ_WT_I16},
        {"torch", "CharStorage", G_STORAGE, OPTVQ_WT_I8},
        {"torch", "ByteStorage", G_STORAGE, OPTVQ_WT_U8},
        {"torch", "BoolStorage", G_STORAGE, OPTVQ_WT_BOOL},
    };
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        if (strlen(allowed[i].mod) == mlen && !memcmp(allowed[i].mod, mod, mlen) &&
            strlen(allowed[i].name) == nlen && !memcmp(allowed[i].name, name, nlen)) {
            int32_t g = new_obj(vm, K_GLOBAL, at);
            if (g < 0)
                return -1;
            vm->obj[g].u.g.id = allowed[i].id;
            vm->obj[g].u.g.wt = allowed[i].wt;
            *out = g;
            return 0;
        }
    optvq_fail(OPTVQ_ERR_FORMAT,
               "%s: the pickle in %s refers to '%.*s.%.*s', which a state dict never needs; refused "
               "(nothing is executed)",
               vm->path, vm->pkl_name, (int)(mlen > 100 ? 100 : mlen), mod, (int)(nlen > 100 ? 100 : nlen), name);
    return -1;
}

/* Legacy persistent id: every reference appends one z->e entry naming its key
 * (size = the declared bytes, no data yet); legacy_read_data() later sorts
 * them by key and points each at its record. The tuple was checked by
 * persistent_load. */
static int legacy_storage(pk_vm *vm, int32_t pid, size_t at, int32_t *out)
{
    const pk_obj *t = &vm->obj[pid];
    if (t->n != 6 || vm->obj[t->items[5]].kind != K_NONE)
        return bad(vm, at, "a storage view (view_metadata set: torch < 0.4); re-save the file with a newer torch"), -1;
    const pk_obj *ty = &vm->obj[t->items[1]], *key = &vm->obj[t->items[2]], *cnt = &vm->obj[t->items[4]];
    const optvq_wtype wt = ty->u.g.wt;
    const int64_t numel = cnt->u.i;
    const char *key_s = key->s;
    const size_t key_len = key->slen;
    zip *z = vm->z;
    if (z->n >= PKL_MAX_OBJECTS)
        return bad(vm, at, "too many storages"), -1;
    if ((z->n & (z->n - 1)) == 0) { /* capacity doubles at powers of two */
        zentry *e = realloc(z->e, sizeof *e * (size_t)(z->n ? 2 * z->n : 1));
        if (!e)
            return bad(vm, at, "out of memory for the storages"), -1;
        z->e = e;
    }
    zentry *e = &z->e[z->n];
    memset(e, 0, sizeof *e);
    e->name = key_s;
    e->name_len = key_len;
    e->size = (uint64_t)numel * optvq_wtype_size(wt);
    e->local_off = (uint64_t)z->n; /* the reference's order, for a stable sort */
    e->comp_size = optvq_wtype_size(wt);
    int32_t s = new_obj(vm, K_STORAGE, at);
    if (s < 0)
        return -1;
    vm->obj[s].u.i = z->n++;
    vm->obj[s].wt = wt;
    vm->obj[s].numel = numel;
    vm->obj[s].s = key_s;
    vm->obj[s].slen = key_len;
    *out = s;
    return 0;
}

/* BINPERSID: ('storage', StorageType, key, location, numel) -> STORAGE */
static int persistent_load(pk_vm *vm, int32_t pid, size_t at, int32_t *out)
{
    const pk_obj *t = &vm->obj[pid];
    if (t->kind != K_TUPLE || t->n < 5 || !is_str(&vm->obj[t->items[0]], "storage"))
        return bad(vm, at, "persistent id is not a ('storage', type, key, location, size) tuple"), -1;
    const pk_obj *ty = &vm->obj[t->items[1]], *key = &vm->obj[t->items[2]], *cnt = &vm->obj[t->items[4]];
    if (ty->kind != K_GLOBAL || ty->u.g.id != G_STORAGE)
        return bad(vm, at, "persistent id names no storage type"), -1;
    if (key->kind != K_STR || key->slen == 0 || key->slen > 256 || memchr(key->s, '/', key->slen))
        return bad(vm, at, "malformed storage key"), -1;
    if (cnt->kind != K_INT || cnt->u.i < 0 || cnt->u.i > ((int64_t)1 << 50))
        return bad(vm, at, "malformed storage size"), -1;
    if (vm->legacy)
        return legacy_storage(vm, pid, at, out);
    char name[600];
    snprintf(name, sizeof name, "%.*sdata/%.*s", (int)vm->prefix_len, vm->prefix, (int)key->slen, key->s);
    zentry *e = zip_find(vm->z, name, strlen(name));
    if (!e) {
        optvq_fail(OPTVQ_ERR_FORMAT, "%s: storage '%.*s' has no entry '%s' in the archive (truncated or corrupt?)",
                   vm->path, (int)key->slen, key->s, name);
        return -1;
    }
    const size_t es = optvq_wtype_size(ty->u.g.wt);
    if ((uint64_t)cnt->u.i * es > e->size) {
        optvq_fail(OPTVQ_ERR_FORMAT, "%s: storage '%.*s' has %llu bytes but claims %lld elements of %zu bytes",
                   vm->path, (int)key->slen, key->s, (unsigned long long)e->size, (long long)cnt->u.i, es);
        return -1;
    }
    /* copy what is needed first: new_obj may move the object table */
    const optvq_wtype wt = ty->u.g.wt;
    const int64_t numel = cnt->u.i;
    const char *key_s = key->s;
    const size_t key_len = key->slen;
    int32_t s = new_obj(vm, K_STORAGE, at);
    if (s < 0)
        return -1;
    vm->obj[s].u.i = e - vm->z->e;
    vm->obj[s].wt = wt;
    vm->obj[s].numel = numel;
    vm->obj[s].s = key_s;
    vm->obj[s].slen = key_len;
    *out = s;
    return 0;
}

static int int_tuple(const pk_vm *vm, const pk_obj *t, int64_t *v, int *n)
{
    if (t->kind != K_TUPLE || t->n > OPTVQ_MAX_DIMS)
        return -1;
    for (int i = 0; i < t->n; i++) {
        const pk_obj *o = &vm->obj[t->items[i]];
        if (o->kind != K_INT || o->u.i < 0 || o->u.i > ((int64_t)1 << 50))
            return -1;
        v[i] = o->u.i;
    }
    *n = t->n;
    return 0;
}

/* REDUCE callable(*args) for the allowed callables. */
static int reduce(pk_vm *vm, int32_t fn, int32_t args, size_t at, int32_t *out)
{
    const pk_obj *f = &vm->obj[fn], *a = &vm->obj[args];
    if (f->kind != K_GLOBAL || a->kind != K_TUPLE)
        return bad(vm, at, "REDUCE of something that is not an allowed global"), -1;
    switch (f->u.g.id) {
    case G_ODICT:
        if (a->n != 0)
            return bad(vm, at, "OrderedDict with arguments"), -1;
        *out = new_obj(vm, K_DICT, at);
        return *out < 0 ? -1 : 0;
    case G_REBUILD_PARAMETER:
    case G_REBUILD_PARAMETER_WITH_STATE:
        if (a->n < 1 || vm->obj[a->items[0]].kind != K_TENSOR)
            return bad(vm, at, "_rebuild_parameter without a tensor"), -1;
        *out = a->items[0];
        return 0;
    case G_REBUILD_TENSOR_V2: {
        if (a->n < 4)
            return bad(vm, at, "_rebuild_tensor_v2 with too few arguments"), -1;
        const pk_obj *st = &vm->obj[a->items[0]], *off = &vm->obj[a->items[1]];
        pk_tensor t;
        memset(&t, 0, sizeof t);
        int nd = 0, ns = 0;
        if (st->kind != K_STORAGE)
            return bad(vm, at, "_rebuild_tensor_v2 without a storage"), -1;
        if (off->kind != K_INT || off->u.i < 0 || off->u.i > st->numel)
            return bad(vm, at, "tensor storage offset outside its storage"), -1;
        if (int_tuple(vm, &vm->obj[a->items[2]], t.size, &nd) != 0 ||
            int_tuple(vm, &vm->obj[a->items[3]], t.stride, &ns) != 0 || nd != ns)
            return bad(vm, at, "tensor size/stride are not matching tuples of at most 8 non-negative integers"), -1;
        t.storage = a->items[0];
        t.ndim = nd;
        t.offset = off->u.i;
        /* the element count (strides of 0 let it exceed the storage) */
        int64_t numel = 1;
        for (int d = 0; d < nd; d++) {
            if (t.size[d] && numel > PTH_MAX_NUMEL / t.size[d])
                return bad(vm, at, "tensor shape is absurdly large"), -1;
            numel *= t.size[d];
        }
        /* every element must lie inside the storage */
        int empty = 0;
        for (int d = 0; d < nd; d++)
            empty |= t.size[d] == 0;
        if (!empty) {
            int64_t last = t.offset, lim = st->numel - 1;
            for (int d = 0; d < nd && last <= lim; d++) {
                if (t.stride[d] == 0 || t.size[d] == 1)
                    continue;
                if (t.size[d] - 1 > (lim - last) / t.stride[d]) {
                    last = lim + 1;
                    break;
                }
                last += (t.size[d] - 1) * t.stride[d];
            }
            if (last > lim) {
                optvq_fail(OPTVQ_ERR_FORMAT,
                           "%s: a tensor on storage '%.*s' reaches beyond its %lld elements (corrupt file)",
                           vm->path, (int)st->slen, st->s, (long long)st->numel);
                return -1;
            }
        }
        if (grow((void **)&vm->t, &vm->cap_t, sizeof *vm->t, (int64_t)vm->n_t + 1, PKL_MAX_OBJECTS) != 0)
            return bad(vm, at, "too many tensors"), -1;
        int32_t o = new_obj(vm, K_TENSOR, at);
        if (o < 0)
            return -1;
        vm->t[vm->n_t] = t;
        vm->obj[o].u.i = vm->n_t++;
        *out = o;
        return 0;
    }
    default:
        return bad(vm, at, "REDUCE of a storage type"), -1;
    }
}

#define NEED(k)                                               \
    do {                                                      \
        if (len - pos < (size_t)(k))                           \
            return bad(vm, op_at, "truncated");               \
    } while (0)
#define POP(var)                                              \
    do {                                                      \
        if (vm->sp <= base)                                   \
            return bad(vm, op_at, "stack underflow");         \
        var = vm->stack[--vm->sp];                            \
    } while (0)
#define TRY(x)                                                \
    do {                                                      \
        if ((x) < 0)                                          \
            return OPTVQ_ERR_FORMAT;                          \
    } while (0)

static int memo_put(pk_vm *vm, int64_t idx, size_t len, size_t at)
{
    if (vm->sp == 0) {
        bad(vm, at, "memo store with an empty stack");
        return -1;
    }
    if (idx < 0 || idx >= (int64_t)len || idx >= PKL_MAX_OBJECTS) {
        bad(vm, at, "memo index out of range");
        return -1;
    }
    if (idx >= vm->cap_memo) {
        int64_t c = vm->cap_memo ? vm->cap_memo : 256;
        while (c <= idx)
            c *= 2;
        int32_t *m = realloc(vm->memo, (size_t)c * sizeof *m);
        if (!m) {
            bad(vm, at, "out of memory for the memo");
            return -1;
        }
        for (int64_t i = vm->cap_memo; i < c; i++)
            m[i] = -1;
        vm->memo = m;
        vm->cap_memo = c;
    }
    vm->memo[idx] = vm->stack[vm->sp - 1];
    return 0;
}

/* Runs the pickle; on success *result is the index of the unpickled object and
 * *end (may be NULL) the offset just past its STOP. The stack, marks and memo
 * start empty (objects made by an earlier pickle stay valid). */
static optvq_status run_pickle(pk_vm *vm, const unsigned char *p, size_t len, int32_t *result, size_t *end)
{
    size_t pos = 0;
    vm->sp = 0;
    vm->n_marks = 0;
    vm->memo_next = 0;
    for (int64_t i = 0; i < vm->cap_memo; i++)
        vm->memo[i] = -1;
    int32_t base = 0; /* stack floor above the current mark (for POP) */
    for (;;) {
        size_t op_at = pos;
        if (pos >= len)
            return bad(vm, op_at, "truncated (no STOP)");
        unsigned char op = p[pos++];
        int32_t a, b, o;
        switch (op) {
        case 0x80: /* PROTO */
            NEED(1);
            if (p[pos] > 5)
                return bad(vm, op_at, "unknown protocol");
            pos++;
            break;
        case 0x95: /* FRAME */
            NEED(8);
            pos += 8;
            break;
        case '.': /* STOP */
            if (vm->sp < 1)
                return bad(vm, op_at, "STOP with an empty stack");
            *result = vm->stack[vm->sp - 1];
            if (end)
                *end = pos;
            return OPTVQ_OK;
        case '}': /* EMPTY_DICT */
        case ']': /* EMPTY_LIST */
        case ')': /* EMPTY_TUPLE */
            TRY(o = new_obj(vm, op == '}' ? K_DICT : op == ']' ? K_LIST : K_TUPLE, op_at));
            TRY(push(vm, o, op_at));
            break;
        case '(': /* MARK */
            if (grow((void **)&vm->marks, &vm->cap_marks, sizeof *vm->marks, (int64_t)vm->n_marks + 1,
                     PKL_MAX_STACK) != 0)
                return bad(vm, op_at, "too many marks");
            vm->marks[vm->n_marks++] = vm->sp;
            base = vm->sp;
            break;
        case '1': { /* POP_MARK */
            int32_t m = pop_mark(vm);
            if (m < 0)
                return bad(vm, op_at, "POP_MARK without a mark");
            vm->sp = m;
            base = vm->n_marks ? vm->marks[vm->n_marks - 1] : 0;
            break;
        }
        case '0': /* POP */
            POP(a);
            break;
        case '2': /* DUP */
            if (vm->sp <= base)
                return bad(vm, op_at, "stack underflow");
            TRY(push(vm, vm->stack[vm->sp - 1], op_at));
            break;
        case 'N': case 0x88: case 0x89: /* NONE, NEWTRUE, NEWFALSE */
            TRY(o = new_obj(vm, op == 'N' ? K_NONE : K_BOOL, op_at));
            vm->obj[o].u.i = op == 0x88;
            TRY(push(vm, o, op_at));
            break;
        case 'J': case 'K': case 'M': { /* BININT, BININT1, BININT2 */
            int64_t v;
            if (op == 'J') {
                NEED(4);
                v = (int32_t)rd32(p + pos);
                pos += 4;
            } else if (op == 'K') {
                NEED(1);
                v = p[pos++];
            } else {
                NEED(2);
                v = rd16(p + pos);
                pos += 2;
            }
            TRY(o = new_obj(vm, K_INT, op_at));
            vm->obj[o].u.i = v;
            TRY(push(vm, o, op_at));
            break;
        }
        case 0x8a: { /* LONG1 */
            NEED(1);
            unsigned n = p[pos++];
            NEED(n);
            if (n > 8)
                return bad(vm, op_at, "integer wider than 64 bits");
            uint64_t u = 0;
            for (unsigned i = 0; i < n; i++)
                u |= (uint64_t)p[pos + i] << (8 * i);
            if (n > 0 && n < 8 && (p[pos + n - 1] & 0x80))
                u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
            pos += n;
            TRY(o = new_obj(vm, K_INT, op_at));
            memcpy(&vm->obj[o].u.i, &u, sizeof u);
            TRY(push(vm, o, op_at));
            break;
        }
        case 'G': { /* BINFLOAT, big-endian */
            NEED(8);
            uint64_t u = 0;
            for (int i = 0; i < 8; i++)
                u = u << 8 | p[pos + i];
            pos += 8;
            TRY(o = new_obj(vm, K_FLOAT, op_at));
            memcpy(&vm->obj[o].u.f, &u, sizeof u);
            TRY(push(vm, o, op_at));
            break;
        }
        case 'X': case 0x8c: case 0x8d: /* BINUNICODE, SHORT_BINUNICODE, BINUNICODE8 */
        case 'T': case 'U': case 'B': case 'C': { /* BINSTRING, SHORT_BINSTRING, BINBYTES, SHORT_BINBYTES */
            uint64_t n;
            if (op == 0x8c || op == 'U' || op == 'C') {
                NEED(1);
                n = p[pos++];
            } else if (op == 0x8d) {
                NEED(8);
                n = rd64(p + pos);
                pos += 8;
            } else {
                NEED(4);
                n = rd32(p + pos);
                pos += 4;
            }
            if (n > len - pos)
                return bad(vm, op_at, "truncated string");
            TRY(o = new_obj(vm, K_STR, op_at));
            vm->obj[o].s = (const char *)p + pos;
            vm->obj[o].slen = (size_t)n;
            pos += (size_t)n;
            TRY(push(vm, o, op_at));
            break;
        }
        case 't': { /* TUPLE */
            int32_t m = pop_mark(vm);
            if (m < 0)
                return bad(vm, op_at, "TUPLE without a mark");
            TRY(o = new_obj(vm, K_TUPLE, op_at));
            for (int32_t i = m; i < vm->sp; i++)
                TRY(add_item(vm, o, vm->stack[i], op_at));
            vm->sp = m;
            base = vm->n_marks ? vm->marks[vm->n_marks - 1] : 0;
            TRY(push(vm, o, op_at));
            break;
        }
        case 0x85: case 0x86: case 0x87: { /* TUPLE1..3 */
            int32_t n = op - 0x84;
            if (vm->sp - base < n)
                return bad(vm, op_at, "stack underflow");
            TRY(o = new_obj(vm, K_TUPLE, op_at));
            for (int32_t i = vm->sp - n; i < vm->sp; i++)
                TRY(add_item(vm, o, vm->stack[i], op_at));
            vm->sp -= n;
            TRY(push(vm, o, op_at));
            break;
        }
        case 's': /* SETITEM */
            POP(b);
            POP(a);
            if (vm->sp <= base || vm->obj[vm->stack[vm->sp - 1]].kind != K_DICT)
                return bad(vm, op_at, "SETITEM on something that is not a dict");
            TRY(add_item(vm, vm->stack[vm->sp - 1], a, op_at));
            TRY(add_item(vm, vm->stack[vm->sp - 1], b, op_at));
            break;
        case 'u': case 'e': { /* SETITEMS, APPENDS */
            int32_t m = pop_mark(vm);
            if (m < 1)
                return bad(vm, op_at, "SETITEMS/APPENDS without a mark and a container");
            int32_t c = vm->stack[m - 1];
            if (vm->obj[c].kind != (op == 'u' ? K_DICT : K_LIST))
                return bad(vm, op_at, op == 'u' ? "SETITEMS on something that is not a dict"
                                                : "APPENDS on something that is not a list");
            if (op == 'u' && (vm->sp - m) % 2)
                return bad(vm, op_at, "SETITEMS with an odd number of items");
            for (int32_t i = m; i < vm->sp; i++)
                TRY(add_item(vm, c, vm->stack[i], op_at));
            vm->sp = m;
            base = vm->n_marks ? vm->marks[vm->n_marks - 1] : 0;
            break;
        }
        case 'a': /* APPEND */
            POP(a);
            if (vm->sp <= base || vm->obj[vm->stack[vm->sp - 1]].kind != K_LIST)
                return bad(vm, op_at, "APPEND on something that is not a list");
            TRY(add_item(vm, vm->stack[vm->sp - 1], a, op_at));
            break;
        case 'q': /* BINPUT */
            NEED(1);
            TRY(memo_put(vm, p[pos], len, op_at));
            pos += 1;
            break;
        case 'r': /* LONG_BINPUT */
            NEED(4);
            TRY(memo_put(vm, rd32(p + pos), len, op_at));
            pos += 4;
            break;
        case 0x94: /* MEMOIZE */
            TRY(memo_put(vm, vm->memo_next, len, op_at));
            vm->memo_next++;
            break;
        case 'h': case 'j': { /* BINGET, LONG_BINGET */
            int64_t idx;
            if (op == 'h') {
                NEED(1);
                idx = p[pos++];
            } else {
                NEED(4);
                idx = rd32(p + pos);
                pos += 4;
            }
            if (idx >= vm->cap_memo || vm->memo[idx] < 0)
                return bad(vm, op_at, "memo entry read before it was written");
            TRY(push(vm, vm->memo[idx], op_at));
            break;
        }
        case 'c': { /* GLOBAL "module\nname\n" */
            const unsigned char *nl1 = memchr(p + pos, '\n', len - pos);
            if (!nl1)
                return bad(vm, op_at, "truncated GLOBAL");
            size_t after = (size_t)(nl1 - p) + 1;
            const unsigned char *nl2 = memchr(p + after, '\n', len - after);
            if (!nl2)
                return bad(vm, op_at, "truncated GLOBAL");
            TRY(resolve_global(vm, (const char *)p + pos, (size_t)(nl1 - (p + pos)), (const char *)p + after,
                               (size_t)(nl2 - (p + after)), op_at, &o));
            pos = (size_t)(nl2 - p) + 1;
            TRY(push(vm, o, op_at));
            break;
        }
        case 0x93: /* STACK_GLOBAL */
            POP(b);
            POP(a);
            if (vm->obj[a].kind != K_STR || vm->obj[b].kind != K_STR)
                return bad(vm, op_at, "STACK_GLOBAL without two strings");
            TRY(resolve_global(vm, vm->obj[a].s, vm->obj[a].slen, vm->obj[b].s, vm->obj[b].slen, op_at, &o));
            TRY(push(vm, o, op_at));
            break;
        case 'R': /* REDUCE */
            POP(b);
            POP(a);
            TRY(reduce(vm, a, b, op_at, &o));
            TRY(push(vm, o, op_at));
            break;
        case 'b': /* BUILD: the state is dropped (OrderedDict's _metadata, ...) */
            POP(b);
            if (vm->sp <= base)
                return bad(vm, op_at, "BUILD without an object");
            break;
        case 'Q': /* BINPERSID */
            POP(a);
            TRY(persistent_load(vm, a, op_at, &o));
            TRY(push(vm, o, op_at));
            break;
        default: {
            char what[64];
            snprintf(what, sizeof what, "opcode 0x%02x is not supported", op);
            return bad(vm, op_at, what);
        }
        }
    }
}

/* ======================================================================== */
/* tensors                                                                   */
/* ======================================================================== */

static const pk_obj *dict_get(const pk_vm *vm, const pk_obj *d, const char *key)
{
    for (int32_t i = 0; i + 1 < d->n; i += 2)
        if (is_str(&vm->obj[d->items[i]], key))
            return &vm->obj[d->items[i + 1]];
    return NULL;
}

static optvq_status materialise(pk_vm *vm, const pk_tensor *t, const char *name, optvq_weights *w)
{
    const pk_obj *so = &vm->obj[t->storage];
    zentry *e = &vm->z->e[so->u.i];
    OPTVQ_TRY(zip_data(vm->z, e));
    const size_t es = optvq_wtype_size(so->wt);
    const unsigned char *base = e->data;
    int64_t numel = 1;
    for (int d = 0; d < t->ndim; d++)
        numel *= t->size[d]; /* at most PTH_MAX_NUMEL (checked in reduce) */
    int contiguous = 1;
    int64_t expect = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->size[d] != 1 && t->stride[d] != expect)
            contiguous = 0;
        expect *= t->size[d];
    }
    if (numel == 0)
        contiguous = 1;
    const unsigned char *src = base + (size_t)t->offset * es;
    if (contiguous && so->wt == OPTVQ_WT_F32 && !e->inflated && ((uintptr_t)src & 3) == 0)
        return optvq_weights_add_raw(w, name, t->ndim, t->size, (float *)(uintptr_t)src, 0, vm->path);
    /* Copies are bounded by the file: many names for one storage, or a broadcast
     * (stride 0) shape, must not turn a small file into gigabytes. */
    const uint64_t budget = 8 * ((uint64_t)vm->z->size + vm->z->inflated) + PTH_COPY_SLACK;
    if ((uint64_t)numel * sizeof(float) > budget - vm->copied)
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: tensor '%.200s' would take the checkpoint's tensors beyond %llu MiB "
                          "(8x its size: aliased or broadcast storages?)", vm->path, name,
                          (unsigned long long)(budget >> 20));
    vm->copied += (uint64_t)numel * sizeof(float);
    float *dst = malloc((size_t)(numel ? numel : 1) * sizeof *dst);
    if (!dst)
        return optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory for tensor '%.200s'", vm->path, name);
    if (contiguous) {
        optvq_wtype_convert(dst, src, so->wt, numel);
    } else {
        /* gather: odometer over all but the last dimension */
        int nd = t->ndim;
        int64_t idx[OPTVQ_MAX_DIMS] = {0};
        int64_t inner = t->size[nd - 1], istride = t->stride[nd - 1];
        int64_t at = t->offset;
        for (int64_t k = 0; k < numel; k += inner) {
            if (istride == 1)
                optvq_wtype_convert(dst + k, base + (size_t)at * es, so->wt, inner);
            else
                for (int64_t j = 0; j < inner; j++)
                    optvq_wtype_convert(dst + k + j, base + (size_t)(at + j * istride) * es, so->wt, 1);
            for (int d = nd - 2; d >= 0; d--) {
                at += t->stride[d];
                if (++idx[d] < t->size[d])
                    break;
                at -= t->stride[d] * t->size[d];
                idx[d] = 0;
            }
        }
    }
    return optvq_weights_add_raw(w, name, t->ndim, t->size, dst, 1, vm->path);
}

/* ======================================================================== */
/* the legacy (non-zip) layout                                               */
/* ======================================================================== */

/* The pickle of MAGIC_NUMBER 0x1950a86a20f9469cfc6c after PROTO n: LONG1 of
 * 10 bytes, STOP. */
static const unsigned char kLegacyMagic[] = {0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9,
                                             0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};

static int is_legacy(const unsigned char *m, size_t size)
{
    return size >= 2 + sizeof kLegacyMagic && m[0] == 0x80 && m[1] >= 2 && m[1] <= 5 &&
           !memcmp(m + 2, kLegacyMagic, sizeof kLegacyMagic);
}

static int cmp_storage_ref(const void *a, const void *b)
{
    const zentry *x = a, *y = b;
    int c = cmp_zentry(a, b);
    if (c)
        return c;
    return x->local_off < y->local_off ? -1 : x->local_off > y->local_off;
}

/* After the object's pickle: the key list and the storage records from *pos.
 * z->e holds one entry per storage reference (legacy_storage); they are sorted
 * by key, which renumbers them, so storage objects are remapped. */
static optvq_status legacy_read_data(pk_vm *vm, const unsigned char *m, size_t size, size_t pos)
{
    zip *z = vm->z;
    const char *path = vm->path;
    int32_t keys = -1;
    size_t end = 0;
    OPTVQ_TRY(run_pickle(vm, m + pos, size - pos, &keys, &end));
    pos += end;
    const pk_obj *kl = &vm->obj[keys];
    if (kl->kind != K_LIST)
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: legacy torch.save file: the storage key list is not a list", path);
    /* sort the references by key (ties in pickle order), remembering where each went */
    int64_t *where = malloc(sizeof *where * (size_t)(z->n ? z->n : 1));
    if (!where)
        return optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory", path);
    if (z->n > 1) /* no references: z->e may be NULL, which qsort must not see */
        qsort(z->e, (size_t)z->n, sizeof *z->e, cmp_storage_ref);
    for (int64_t i = 0; i < z->n; i++)
        where[z->e[i].local_off] = i;
    for (int32_t i = 0; i < vm->n_obj; i++)
        if (vm->obj[i].kind == K_STORAGE)
            vm->obj[i].u.i = where[vm->obj[i].u.i];
    free(where);
    /* the references to one key must agree on its size in bytes */
    for (int64_t i = 1; i < z->n; i++)
        if (!cmp_zentry(&z->e[i - 1], &z->e[i]) && z->e[i - 1].size != z->e[i].size)
            return optvq_fail(OPTVQ_ERR_FORMAT,
                              "%s: legacy torch.save file: storage '%.*s' is declared with two sizes", path,
                              (int)(z->e[i].name_len > 100 ? 100 : z->e[i].name_len), z->e[i].name);
    for (int32_t k = 0; k < kl->n; k++) {
        const pk_obj *ko = &vm->obj[kl->items[k]];
        if (ko->kind != K_STR)
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: legacy torch.save file: a storage key is not a string", path);
        const int kn = (int)(ko->slen > 100 ? 100 : ko->slen);
        zentry probe;
        memset(&probe, 0, sizeof probe);
        probe.name = ko->s;
        probe.name_len = ko->slen;
        zentry *e = z->n > 0 ? bsearch(&probe, z->e, (size_t)z->n, sizeof *z->e, cmp_zentry) : NULL;
        if (!e)
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: legacy torch.save file: storage '%.*s' is listed but never used",
                              path, kn, ko->s);
        while (e > z->e && !cmp_zentry(e - 1, &probe))
            e--; /* the first reference: its type sets the record's element size */
        if (e->ready)
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: legacy torch.save file: storage '%.*s' is listed twice", path,
                              kn, ko->s);
        if (size - pos < 8)
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: truncated legacy torch.save file (storage '%.*s' is missing)",
                              path, kn, ko->s);
        const uint64_t count = rd64(m + pos);
        pos += 8;
        if (count > ((uint64_t)1 << 50) || count * e->comp_size != e->size)
            return optvq_fail(OPTVQ_ERR_FORMAT,
                              "%s: legacy torch.save file: storage '%.*s' holds %llu elements but was declared with "
                              "%llu",
                              path, kn, ko->s, (unsigned long long)count,
                              (unsigned long long)(e->size / e->comp_size));
        if (e->size > size - pos)
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: truncated legacy torch.save file (storage '%.*s' runs past the "
                              "end)", path, kn, ko->s);
        for (zentry *f = e; f < z->e + z->n && !cmp_zentry(f, &probe); f++) {
            f->data = m + pos;
            f->ready = 1;
        }
        pos += (size_t)e->size;
    }
    for (int64_t i = 0; i < z->n; i++)
        if (!z->e[i].ready)
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: legacy torch.save file: storage '%.*s' has no data (truncated?)",
                              path, (int)(z->e[i].name_len > 100 ? 100 : z->e[i].name_len), z->e[i].name);
    return OPTVQ_OK;
}

/* The header pickles, then the object's; *root and *pos (just past it) out. */
static optvq_status legacy_read(pk_vm *vm, const unsigned char *m, size_t size, int32_t *root, size_t *pos)
{
    const char *path = vm->path;
    size_t at = 2 + sizeof kLegacyMagic, end = 0;
    int32_t o = -1;
    OPTVQ_TRY(run_pickle(vm, m + at, size - at, &o, &end)); /* protocol version */
    at += end;
    if (vm->obj[o].kind != K_INT || vm->obj[o].u.i != 1001)
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: legacy torch.save file of unknown protocol version", path);
    OPTVQ_TRY(run_pickle(vm, m + at, size - at, &o, &end)); /* sys_info */
    at += end;
    const pk_obj *info = &vm->obj[o];
    const pk_obj *le = info->kind == K_DICT ? dict_get(vm, info, "little_endian") : NULL;
    if (!le || le->kind != K_BOOL)
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: legacy torch.save file without its sys_info", path);
    if (!le->u.i)
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: legacy torch.save file saved on a big-endian machine (unsupported)",
                          path);
    vm->legacy = 1;
    OPTVQ_TRY(run_pickle(vm, m + at, size - at, root, &end));
    *pos = at + end;
    return OPTVQ_OK;
}

/* ======================================================================== */
/* entry point                                                               */
/* ======================================================================== */

optvq_status optvq_weights_load_pth(const char *path, optvq_weights **out)
{
    *out = NULL;
    void *map = NULL;
    size_t size = 0;
    OPTVQ_TRY(optvq_map_file(path, &map, &size));
    optvq_status st;
    zip z;
    memset(&z, 0, sizeof z);
    z.path = path;
    z.map = map;
    z.size = size;
    pk_vm vm;
    memset(&vm, 0, sizeof vm);
    vm.path = path;
    vm.z = &z;
    vm.pkl_name = "data.pkl";
    optvq_weights *w = NULL;
    int32_t root = -1;

    if (is_legacy(map, size)) {
        vm.pkl_name = "the legacy torch.save file";
        size_t pos = 0;
        st = legacy_read(&vm, map, size, &root, &pos);
        if (st == OPTVQ_OK)
            st = legacy_read_data(&vm, map, size, pos);
        if (st != OPTVQ_OK)
            goto done;
        goto collect;
    }
    if (size < 4 || memcmp(map, "PK\3\4", 4) != 0) {
        if (size >= 2 && ((const unsigned char *)map)[0] == 0x80)
            st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: not a PyTorch checkpoint (a pickle, but not a legacy torch.save "
                            "file: bad magic number)", path);
        else
            st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: not a PyTorch checkpoint (not a zip archive)", path);
        goto done;
    }
    st = zip_open(&z);
    if (st != OPTVQ_OK)
        goto done;
    /* <prefix>/data.pkl, one folder deep */
    zentry *pkl = NULL;
    for (int64_t i = 0; i < z.n; i++) {
        const zentry *e = &z.e[i];
        if (e->name_len > 9 && !memcmp(e->name + e->name_len - 9, "/data.pkl", 9) &&
            memchr(e->name, '/', e->name_len - 9) == NULL) {
            if (pkl) {
                st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: the archive holds more than one data.pkl", path);
                goto done;
            }
            pkl = &z.e[i];
        }
    }
    if (!pkl) {
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: a zip archive without <name>/data.pkl: not a torch.save checkpoint",
                        path);
        goto done;
    }
    vm.prefix = pkl->name;
    vm.prefix_len = pkl->name_len - 8; /* keeps the '/' */
    if (vm.prefix_len > 256) {
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: archive folder name is absurdly long", path);
        goto done;
    }
    {
        char bo[300];
        snprintf(bo, sizeof bo, "%.*sbyteorder", (int)vm.prefix_len, vm.prefix);
        zentry *e = zip_find(&z, bo, strlen(bo));
        if (e) {
            st = zip_data(&z, e);
            if (st != OPTVQ_OK)
                goto done;
            if (!(e->size == 6 && !memcmp(e->data, "little", 6))) {
                st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: checkpoint was saved on a big-endian machine (unsupported)",
                                path);
                goto done;
            }
        }
    }
    if (pkl->size > PKL_MAX_BYTES) {
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: data.pkl is %llu bytes, beyond the %zu MiB cap", path,
                        (unsigned long long)pkl->size, PKL_MAX_BYTES >> 20);
        goto done;
    }
    st = zip_data(&z, pkl);
    if (st != OPTVQ_OK)
        goto done;
    st = run_pickle(&vm, pkl->data, (size_t)pkl->size, &root, NULL);
    if (st != OPTVQ_OK)
        goto done;

collect:;
    const pk_obj *top = &vm.obj[root];
    if (top->kind == K_TENSOR) { /* torch.save(tensor): one tensor, named "tensor" (e.g. a saved codebook) */
        st = optvq_weights_create(&w);
        if (st == OPTVQ_OK)
            st = materialise(&vm, &vm.t[top->u.i], "tensor", w);
        if (st != OPTVQ_OK)
            goto done;
        optvq_weights_keep_mapping(w, map, size);
        map = NULL;
        *out = w;
        w = NULL;
        goto done;
    }
    if (top->kind != K_DICT) {
        st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: the checkpoint holds no dict or tensor (expected a state dict)", path);
        goto done;
    }
    const pk_obj *sd = dict_get(&vm, top, "model");
    if (!sd || sd->kind != K_DICT)
        sd = dict_get(&vm, top, "state_dict");
    if (!sd || sd->kind != K_DICT)
        sd = top;
    st = optvq_weights_create(&w);
    if (st != OPTVQ_OK)
        goto done;
    for (int32_t i = 0; i + 1 < sd->n; i += 2) {
        const pk_obj *k = &vm.obj[sd->items[i]], *v = &vm.obj[sd->items[i + 1]];
        if (k->kind != K_STR || v->kind != K_TENSOR)
            continue;
        if (memchr(k->s, '\0', k->slen) || k->slen > 4096) {
            st = optvq_fail(OPTVQ_ERR_FORMAT, "%s: a tensor name holds a NUL byte or is absurdly long", path);
            goto done;
        }
        char *name = malloc(k->slen + 1);
        if (!name) {
            st = optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        memcpy(name, k->s, k->slen);
        name[k->slen] = '\0';
        st = materialise(&vm, &vm.t[v->u.i], name, w);
        free(name);
        if (st != OPTVQ_OK)
            goto done;
    }
    if (optvq_weights_count(w) == 0) {
        st = optvq_fail(OPTVQ_ERR_FORMAT,
                        "%s: no tensors found (expected a state dict, or a dict holding one under 'model' or "
                        "'state_dict')",
                        path);
        goto done;
    }
    optvq_weights_keep_mapping(w, map, size);
    map = NULL;
    *out = w;
    w = NULL;
done:
    vm_free(&vm);
    zip_close(&z);
    optvq_weights_free(w);
    if (map)
        munmap(map, size);
    return st;
}
