/* Tests of the weights readers/writer (src/io/weights.c, safetensors.c,
 * pth.c): the reference checkpoints written by tools/gen_weights_ref.py with
 * PyTorch are read exactly; save -> load round trips; strict loading by
 * name; and every malformed or hostile file is refused with a message
 * naming it, without crashing (run these under ASan/UBSan too). */
#include "io/weights.h"
#include "optvq/optvq.h"
#include "test.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

static const char *ref_path(const char *name)
{
    static char buf[4][1024];
    static int slot;
    char *p = buf[slot++ & 3];
    snprintf(p, sizeof buf[0], "%s/weights/%s", test_ref_dir(), name);
    return p;
}

/* Rewrites a file in place (no O_TRUNC): much cheaper than "wb" on file
 * systems that discard freed blocks, for the mutation loops below. */
static int rewrite_bytes(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    if (fd < 0)
        return -1;
    int ok = (n == 0 || pwrite(fd, data, n, 0) == (ssize_t)n) && ftruncate(fd, (off_t)n) == 0;
    return (close(fd) == 0 && ok) ? 0 : -1;
}

/* A safetensors file: 8-byte length, the header text as given, then `data`. */
static int write_st_n(const char *path, const char *header, size_t hl, const void *data, size_t data_len)
{
    unsigned char *buf = malloc(8 + hl + data_len + 1);
    if (!buf)
        return -1;
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    if (data_len)
        memcpy(buf + 8 + hl, data, data_len);
    int rc = write_bytes(path, buf, 8 + hl + data_len);
    free(buf);
    return rc;
}

static int write_st(const char *path, const char *header, const void *data, size_t data_len)
{
    return write_st_n(path, header, strlen(header), data, data_len);
}

/* Loading must fail with a message naming the file and containing `text`. */
static void expect_fail(const char *path, const char *text)
{
    optvq_weights *w = (optvq_weights *)1;
    optvq_status st = optvq_weights_load(path, &w);
    CHECK_MSG(st != OPTVQ_OK, "%s: loaded, but should have been refused", path);
    CHECK(w == NULL);
    if (st == OPTVQ_OK) {
        optvq_weights_free(w);
        return;
    }
    const char *msg = optvq_last_error();
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    CHECK_MSG(strstr(msg, base) != NULL, "message '%s' does not name %s", msg, base);
    CHECK_MSG(!text || strstr(msg, text) != NULL, "message '%s' lacks '%s'", msg, text);
    CHECK_MSG(strchr(msg, '\n') == NULL, "message '%s' is not one line", msg);
}

/* Compares every tensor of the manifest set `set` with its expected .npy, bit for bit. */
static void check_against_manifest(const optvq_weights *w, const char *set)
{
    FILE *fp = fopen(ref_path("manifest.txt"), "r");
    CHECK_MSG(fp != NULL, "cannot open manifest.txt (run tools/gen_weights_ref.py)");
    if (!fp)
        return;
    char line[1024];
    int64_t listed = 0;
    while (fgets(line, sizeof line, fp)) {
        char kind[16], name[512];
        int ndim, off = 0;
        if (sscanf(line, "%15s %511s %d%n", kind, name, &ndim, &off) != 3 || strcmp(kind, set))
            continue;
        int64_t shape[OPTVQ_MAX_DIMS];
        const char *p = line + off;
        for (int i = 0; i < ndim; i++) {
            int used = 0;
            long long v = 0;
            sscanf(p, "%lld%n", &v, &used);
            shape[i] = v;
            p += used;
        }
        listed++;
        const optvq_tensor *t = optvq_weights_find(w, name);
        CHECK_MSG(t != NULL, "tensor %s missing", name);
        if (!t)
            continue;
        CHECK_MSG(t->ndim == ndim, "%s: ndim %d, want %d", name, t->ndim, ndim);
        for (int i = 0; i < ndim && t->ndim == ndim; i++)
            CHECK_MSG(t->shape[i] == shape[i], "%s: dim %d is %lld, want %lld", name, i, (long long)t->shape[i],
                      (long long)shape[i]);
        char npy[600];
        snprintf(npy, sizeof npy, "expected/%s.npy", name);
        optvq_array want;
        CHECK_OK(optvq_npy_read(ref_path(npy), &want));
        int64_t n = optvq_array_numel(&want);
        CHECK(n == t->numel);
        if (n == t->numel && n > 0) {
            if (memcmp(t->data, want.data, (size_t)n * 4) == 0) {
                printf("    %-40s n=%-8lld bit-exact\n", name, (long long)n);
            } else {
                test_compare(name, t->data, want.data, n);
                CHECK_MSG(0, "%s: values differ from PyTorch's", name);
            }
        }
        optvq_array_free(&want);
    }
    fclose(fp);
    CHECK_MSG(optvq_weights_count(w) == listed, "%lld tensors loaded, manifest lists %lld",
              (long long)optvq_weights_count(w), (long long)listed);
}

/* ---- reading the reference files ------------------------------------------ */

TEST(weights_pth_checkpoint_dict)
{
    optvq_weights *w = NULL;
    CHECK_OK(optvq_weights_load(ref_path("ckpt.pth"), &w)); /* {"model": sd, "epoch": 3, "optimizer": ...} */
    if (w)
        check_against_manifest(w, "pth");
    optvq_weights_free(w);
}

TEST(weights_pth_plain_state_dict)
{
    optvq_weights *w = NULL;
    CHECK_OK(optvq_weights_load_pth(ref_path("plain.pth"), &w));
    if (w)
        check_against_manifest(w, "pth");
    optvq_weights_free(w);
}

TEST(weights_pth_deflated)
{
    optvq_weights *w = NULL;
    CHECK_OK(optvq_weights_load(ref_path("deflated.pth"), &w));
    if (w)
        check_against_manifest(w, "pth");
    optvq_weights_free(w);
}

TEST(weights_safetensors_reference)
{
    optvq_weights *w = NULL;
    CHECK_OK(optvq_weights_load(ref_path("ref.safetensors"), &w));
    if (w)
        check_against_manifest(w, "st");
    optvq_weights_free(w);
}

TEST(weights_format_specific_readers_refuse_the_other_format)
{
    optvq_weights *w = NULL;
    CHECK(optvq_weights_load_pth(ref_path("ref.safetensors"), &w) != OPTVQ_OK && !w);
    CHECK(strstr(optvq_last_error(), "ref.safetensors") != NULL);
    CHECK(optvq_weights_load_safetensors(ref_path("plain.pth"), &w) != OPTVQ_OK && !w);
    CHECK(strstr(optvq_last_error(), "plain.pth") != NULL);
    CHECK(optvq_weights_load(tmp_path("does-not-exist.safetensors"), &w) == OPTVQ_ERR_IO && !w);
    CHECK(strstr(optvq_last_error(), "does-not-exist.safetensors") != NULL);
}

/* ---- the store and the writer --------------------------------------------- */

TEST(weights_store_add_find_get)
{
    optvq_weights *w = NULL;
    CHECK_OK(optvq_weights_create(&w));
    float a[6] = {1, 2, 3, 4, 5, 6}, s = 7;
    int64_t shape[2] = {2, 3};
    CHECK_OK(optvq_weights_add(w, "a.weight", 2, shape, a));
    CHECK_OK(optvq_weights_add(w, "s", 0, NULL, &s));
    a[0] = 100; /* the store holds a copy */
    CHECK(optvq_weights_count(w) == 2);
    const optvq_tensor *t = optvq_weights_find(w, "a.weight");
    CHECK(t && t->numel == 6 && t->ndim == 2 && t->data[0] == 1 && t->data[5] == 6);
    CHECK(optvq_weights_get(w, 1) && optvq_weights_get(w, 1)->numel == 1 && optvq_weights_get(w, 1)->data[0] == 7);
    CHECK(optvq_weights_get(w, 2) == NULL && optvq_weights_get(w, -1) == NULL);
    CHECK(optvq_weights_find(w, "a") == NULL);
    CHECK(optvq_weights_add(w, "a.weight", 2, shape, a) != OPTVQ_OK);
    CHECK(strstr(optvq_last_error(), "a.weight") != NULL);
    int64_t bad[1] = {-1};
    CHECK(optvq_weights_add(w, "neg", 1, bad, a) != OPTVQ_OK);
    CHECK(optvq_weights_add(w, "deep", 9, shape, a) != OPTVQ_OK);
    CHECK(optvq_weights_add(w, "", 2, shape, a) != OPTVQ_OK);
    /* many names: the hash table grows */
    char name[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "t.%d", i);
        CHECK_OK(optvq_weights_add(w, name, 0, NULL, &s));
    }
    CHECK(optvq_weights_count(w) == 1002);
    CHECK(optvq_weights_find(w, "t.999") && optvq_weights_find(w, "t.0") && !optvq_weights_find(w, "t.1000"));
    optvq_weights_free(w);
}

TEST(weights_save_safetensors_round_trip)
{
    optvq_weights *w = NULL, *back = NULL;
    CHECK_OK(optvq_weights_load(ref_path("ckpt.pth"), &w));
    if (!w)
        return;
    const char *out = tmp_path("round.safetensors");
    CHECK_OK(optvq_weights_save_safetensors(w, out));
    CHECK_OK(optvq_weights_load(out, &back));
    if (back) {
        CHECK(optvq_weights_count(back) == optvq_weights_count(w));
        for (int64_t i = 0; i < optvq_weights_count(w); i++) {
            const optvq_tensor *a = optvq_weights_get(w, i), *b = optvq_weights_find(back, a->name);
            CHECK_MSG(b != NULL, "%s lost in the round trip", a->name);
            if (!b)
                continue;
            CHECK(a->ndim == b->ndim && a->numel == b->numel);
            CHECK(!memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim));
            CHECK(!a->numel || !memcmp(a->data, b->data, (size_t)a->numel * 4));
        }
        /* names sorted in the file */
        for (int64_t i = 1; i < optvq_weights_count(back); i++)
            CHECK(strcmp(optvq_weights_get(back, i - 1)->name, optvq_weights_get(back, i)->name) < 0);
        check_against_manifest(back, "pth");
    }
    /* header padded to 8 bytes, no temporary file left behind */
    size_t n;
    unsigned char *bytes = read_bytes(out, &n);
    CHECK(bytes && n > 8);
    if (bytes) {
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--)
            hl = hl << 8 | bytes[i];
        CHECK(hl % 8 == 0 && hl + 8 <= n && bytes[8] == '{');
        CHECK(memmem(bytes, (size_t)hl + 8, "\"__metadata__\"", 14) != NULL);
    }
    free(bytes);
    /* saving twice gives the same bytes */
    const char *out2 = tmp_path("round2.safetensors");
    CHECK_OK(optvq_weights_save_safetensors(back ? back : w, out2));
    size_t n2;
    unsigned char *a1 = read_bytes(out, &n), *a2 = read_bytes(out2, &n2);
    CHECK(a1 && a2 && n == n2 && !memcmp(a1, a2, n));
    free(a1);
    free(a2);
    /* a name that needs JSON escaping survives */
    optvq_weights *odd = NULL, *odd_back = NULL;
    CHECK_OK(optvq_weights_create(&odd));
    float v = 3;
    CHECK_OK(optvq_weights_add(odd, "we\"ird\\name\ttab", 0, NULL, &v));
    CHECK_OK(optvq_weights_save_safetensors(odd, tmp_path("odd.safetensors")));
    CHECK_OK(optvq_weights_load(tmp_path("odd.safetensors"), &odd_back));
    CHECK(odd_back && optvq_weights_find(odd_back, "we\"ird\\name\ttab"));
    CHECK(optvq_weights_save_safetensors(odd, "/nonexistent-dir/x.safetensors") == OPTVQ_ERR_IO);
    optvq_weights_free(odd);
    optvq_weights_free(odd_back);
    optvq_weights_free(w);
    optvq_weights_free(back);
}

/* ---- strict loading -------------------------------------------------------- */

static optvq_weights *make_store(const char *const *names, int n, const int64_t *dims)
{
    optvq_weights *w = NULL;
    if (optvq_weights_create(&w) != OPTVQ_OK)
        return NULL;
    float data[64];
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < 64; k++)
            data[k] = (float)(100 * i + k);
        int64_t shape[2] = {dims[2 * i], dims[2 * i + 1]};
        if (optvq_weights_add(w, names[i], 2, shape, data) != OPTVQ_OK) {
            optvq_weights_free(w);
            return NULL;
        }
    }
    return w;
}

TEST(weights_strict_load_success)
{
    const char *names[] = {"model.a", "model._orig_mod.b", "_orig_mod.model.c", "model.loss.disc.w", "loss.lpips"};
    int64_t dims[] = {2, 3, 1, 4, 3, 3, 5, 5, 1, 1};
    optvq_weights *w = make_store(names, 5, dims);
    CHECK(w != NULL);
    if (!w)
        return;
    float a[6], b[4], c[9];
    optvq_expected_tensor exp[3] = {
        {"a", 2, {2, 3}, a}, {"b", 2, {1, 4}, b}, {"c", 2, {3, 3}, c}};
    CHECK_OK(optvq_weights_load_into(w, exp, 3, "ckpt.pth"));
    CHECK(a[0] == 0 && a[5] == 5 && b[0] == 100 && b[3] == 103 && c[0] == 200 && c[8] == 208);
    optvq_weights_free(w);
}

static void strict_fail(const optvq_weights *w, const optvq_expected_tensor *exp, int n, const char *const *texts)
{
    optvq_status st = optvq_weights_load_into(w, exp, n, "model.safetensors");
    CHECK(st == OPTVQ_ERR_FORMAT);
    const char *msg = optvq_last_error();
    printf("    message: %s\n", msg);
    CHECK(strncmp(msg, "model.safetensors: ", 19) == 0);
    CHECK(strchr(msg, '\n') == NULL);
    for (int i = 0; texts[i]; i++)
        CHECK_MSG(strstr(msg, texts[i]) != NULL, "message lacks '%s'", texts[i]);
}

TEST(weights_strict_load_reports_everything_and_copies_nothing)
{
    const char *names[] = {"model.encoder.conv_in.weight", "model.decoder.x.weight", "model.extra.bias",
                           "model.quantize.embedding.weight"};
    int64_t dims[] = {4, 3, 3, 4, 2, 2, 8, 2};
    optvq_weights *w = make_store(names, 4, dims);
    if (!w)
        return;
    float d0[12], d1[16], d2[3], d3[16], d4[5];
    for (int i = 0; i < 16; i++)
        d1[i] = -1;
    optvq_expected_tensor exp[5] = {
        {"encoder.conv_in.weight", 2, {4, 3}, d0}, {"decoder.x.weight", 2, {4, 4}, d1},
        {"encoder.conv_in.bias", 1, {3}, d2},      {"quantize.embedding.weight", 2, {8, 2}, d3},
        {"encoder.norm.bias", 1, {5}, d4}};
    strict_fail(w, exp, 5,
                (const char *const[]){"2 missing (encoder.conv_in.bias, encoder.norm.bias)",
                                      "1 unexpected (model.extra.bias)",
                                      "1 shape mismatch (decoder.x.weight: file (3, 4) vs model (4, 4))", NULL});
    CHECK(d1[0] == -1 && d1[15] == -1); /* nothing copied */

    /* each kind alone */
    strict_fail(w, exp, 2, (const char *const[]){"2 unexpected", "1 shape mismatch", NULL});
    exp[1].shape[0] = 3;
    strict_fail(w, exp, 2, (const char *const[]){"2 unexpected (model.extra.bias, model.quantize.embedding.weight)",
                                                 NULL});
    optvq_expected_tensor exp4[4] = {exp[0], exp[1], exp[3], {"extra.bias", 1, {2}, d2}};
    strict_fail(w, exp4, 4, (const char *const[]){"1 shape mismatch (extra.bias: file (2, 2) vs model (2))", NULL});
    exp4[3].ndim = 2;
    exp4[3].shape[1] = 2;
    float d5[4];
    exp4[3].dest = d5;
    CHECK_OK(optvq_weights_load_into(w, exp4, 4, "model.safetensors"));
    CHECK(d1[0] == 100 && d5[3] == 203);

    /* many missing names: the count is exact, the list is cut */
    optvq_expected_tensor many[12];
    char mnames[12][32];
    for (int i = 0; i < 12; i++) {
        snprintf(mnames[i], sizeof mnames[i], "layer.%d.weight", i);
        many[i] = (optvq_expected_tensor){mnames[i], 1, {1}, d2};
    }
    strict_fail(w, many, 12, (const char *const[]){"12 missing (layer.0.weight, layer.1.weight, layer.2.weight, ...)",
                                                   "4 unexpected", NULL});

    /* the model expecting one name twice is a caller error */
    optvq_expected_tensor twice[2] = {exp[0], exp[0]};
    CHECK(optvq_weights_load_into(w, twice, 2, "m") == OPTVQ_ERR_INVALID_ARG);
    optvq_weights_free(w);
}

TEST(weights_strict_load_ambiguous_prefixes)
{
    const char *names[] = {"model.a", "a", "_orig_mod.model.b"};
    int64_t dims[] = {1, 1, 1, 1, 1, 1};
    optvq_weights *w = make_store(names, 3, dims);
    if (!w)
        return;
    float a = -1, b;
    optvq_expected_tensor exp[2] = {{"a", 2, {1, 1}, &a}, {"b", 2, {1, 1}, &b}};
    strict_fail(w, exp, 2, (const char *const[]){"1 name given twice (a <- model.a and a)", NULL});
    CHECK(a == -1);
    optvq_weights_free(w);
}

TEST(weights_strict_load_refuses_non_finite)
{
    optvq_weights *w = NULL;
    CHECK_OK(optvq_weights_create(&w));
    float v[3] = {1, NAN, 2}, d[3] = {-1, -1, -1};
    int64_t shape[1] = {3};
    CHECK_OK(optvq_weights_add(w, "model.x", 1, shape, v));
    optvq_expected_tensor exp[1] = {{"x", 1, {3}, d}};
    CHECK(optvq_weights_load_into(w, exp, 1, "bad.pth") == OPTVQ_ERR_NUMERIC);
    CHECK(strstr(optvq_last_error(), "bad.pth") && strstr(optvq_last_error(), "model.x") &&
          strstr(optvq_last_error(), "NaN"));
    CHECK(d[0] == -1);
    optvq_weights_free(w);
}

TEST(weights_strict_load_reference_files)
{
    /* ref.safetensors: Hugging Face style "model." names and a model.loss.* tensor */
    optvq_weights *w = NULL;
    CHECK_OK(optvq_weights_load(ref_path("ref.safetensors"), &w));
    if (!w)
        return;
    float a[6], b[5], c[12], e[8];
    optvq_expected_tensor exp[5] = {{"encoder.conv_in.weight", 4, {2, 3, 1, 1}, a},
                                    {"encoder.norm.bias", 1, {5}, b},
                                    {"decoder.conv_out.weight", 2, {3, 4}, c},
                                    {"quantize.embedding.weight", 2, {4, 2}, e},
                                    {"empty", 1, {0}, NULL}};
    CHECK_OK(optvq_weights_load_into(w, exp, 5, "ref.safetensors"));
    CHECK(!memcmp(a, optvq_weights_find(w, "model.encoder.conv_in.weight")->data, sizeof a));
    CHECK(!memcmp(e, optvq_weights_find(w, "model.quantize.embedding.weight")->data, sizeof e));
    strict_fail(w, exp, 4, (const char *const[]){"1 unexpected (model.empty)", NULL});
    optvq_weights_free(w);
}

/* This process's resident KiB in the mapping that holds p (/proc/self/smaps);
 * -1 when that cannot be read. */
static long resident_kib_at(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return -1;
    char line[512];
    int inside = 0;
    long kib = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
            inside = lo <= (uintptr_t)p && (uintptr_t)p < hi;
        } else if (inside && !strncmp(line, "Rss:", 4)) {
            kib = atol(line + 4);
            break;
        }
    }
    fclose(f);
    return kib;
}

/* Strict loading from a mapped safetensors file gives back the pages of each
 * tensor once copied (so a model's load does not hold the file and the model
 * at once), and the store still reads the same bits afterwards. */
TEST(weights_strict_load_releases_the_file_pages)
{
    const int64_t n = (int64_t)1 << 20; /* 4 MiB */
    float *big = malloc((size_t)n * sizeof(float)), *d1 = malloc((size_t)n * sizeof(float));
    float *d2 = malloc((size_t)n * sizeof(float)), small[3] = {1.5f, -2, 7}, s1[3], s2[3];
    CHECK(big && d1 && d2);
    if (!big || !d1 || !d2)
        goto done;
    for (int64_t i = 0; i < n; i++)
        big[i] = (float)(i % 1000) * 0.25f - 3;
    optvq_weights *src = NULL, *w = NULL;
    CHECK_OK(optvq_weights_create(&src));
    CHECK_OK(optvq_weights_add(src, "model.big", 2, (int64_t[]){1024, 1024}, big));
    CHECK_OK(optvq_weights_add(src, "model.small", 1, (int64_t[]){3}, small));
    const char *path = tmp_path("release.safetensors");
    CHECK_OK(optvq_weights_save_safetensors(src, path));
    optvq_weights_free(src);
    CHECK_OK(optvq_weights_load(path, &w));
    const optvq_tensor *t = w ? optvq_weights_find(w, "model.big") : NULL;
    CHECK(t != NULL);
    if (!t)
        goto done_w;
    double sum = 0; /* reads every page of the tensor */
    for (int64_t i = 0; i < n; i++)
        sum += t->data[i];
    CHECK(sum != 0);
    const long before = resident_kib_at(t->data);
    optvq_expected_tensor exp[2] = {{"big", 2, {1024, 1024}, d1}, {"small", 1, {3}, s1}};
    CHECK_OK(optvq_weights_load_into(w, exp, 2, "release.safetensors"));
    const long after = resident_kib_at(t->data);
    if (before >= 0) /* the tensor is read in place from the mapping, then released */
        CHECK_MSG(before >= 4096 && after >= 0 && after <= 8, "mapping resident: %ld KiB before, %ld KiB after",
                  before, after);
    CHECK(!memcmp(d1, big, (size_t)n * sizeof(float)) && !memcmp(s1, small, sizeof small));
    /* released pages read back the same (from the file) */
    exp[0].dest = d2;
    exp[1].dest = s2;
    CHECK_OK(optvq_weights_load_into(w, exp, 2, "release.safetensors"));
    CHECK(!memcmp(d2, big, (size_t)n * sizeof(float)) && !memcmp(s2, small, sizeof small));
    CHECK(!memcmp(t->data, big, (size_t)n * sizeof(float)));
done_w:
    optvq_weights_free(w);
done:
    free(big);
    free(d1);
    free(d2);
}

/* ---- hostile safetensors ------------------------------------------------------ */

TEST(weights_bad_safetensors)
{
    float d[8] = {0};
    const char *p = tmp_path("bad.safetensors");
#define BAD_ST(header, len, text)                                  \
    do {                                                           \
        CHECK(write_st(p, header, d, len) == 0);                   \
        expect_fail(p, text);                                      \
    } while (0)
    BAD_ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "outside the data section");
    BAD_ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,40]}}", 32, "outside the data section");
    BAD_ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 32, "outside the data section");
    BAD_ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 32, "need 12");
    BAD_ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
           32, "overlap");
    BAD_ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
           32, "duplicate");
    BAD_ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]", 32, "not valid JSON");
    BAD_ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} xyz", 32, "trailing");
    BAD_ST("{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 32, "unsupported dtype 'F8_E4M3'");
    BAD_ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776,1099511627776],"
           "\"data_offsets\":[0,8]}}", 32, "absurdly large");
    BAD_ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 32, "non-negative integer");
    BAD_ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 32, "non-negative integer");
    BAD_ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 32, "dimensions");
    BAD_ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 32, "data_offsets");
    BAD_ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,1e300]}}", 32, "data_offsets");
    BAD_ST("{\"a\":{\"dtype\":32,\"shape\":[2],\"data_offsets\":[0,8]}}", 32, "dtype");
    BAD_ST("{\"a\":[1,2]}", 32, "not an object");
    BAD_ST("{\"\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 32, "empty name");
    BAD_ST("[1,2,3]", 0, "not a JSON object");
    BAD_ST("{", 0, "not a JSON object");
    BAD_ST("{\"a\"", 0, "not valid JSON");
    static const char nul_tail[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}\0\0";
    CHECK(write_st_n(p, nul_tail, sizeof nul_tail - 1, d, 32) == 0);
    expect_fail(p, "NUL");
    static const char nul_in[] = "{\"a\0b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    CHECK(write_st_n(p, nul_in, sizeof nul_in - 1, d, 32) == 0);
    expect_fail(p, "NUL");
    /* header length field: beyond the file, beyond the cap, too short a file */
    unsigned char raw[16] = {0x40, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    CHECK(write_bytes(p, raw, 10) == 0);
    expect_fail(p, "runs past the end");
    raw[0] = 0;
    raw[5] = 1; /* 2^40 */
    CHECK(write_bytes(p, raw, 10) == 0);
    expect_fail(p, "cap");
    CHECK(write_bytes(p, raw, 5) == 0);
    expect_fail(p, "too short");
    CHECK(write_bytes(p, raw, 0) == 0);
    expect_fail(p, NULL);
    /* a good header is accepted (the harness itself is right) */
    CHECK(write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"__metadata__\":{\"k\":\"v\"}}  ",
                   d, 8) == 0);
    optvq_weights *w = NULL;
    CHECK_OK(optvq_weights_load(p, &w));
    CHECK(w && optvq_weights_count(w) == 1);
    optvq_weights_free(w);
#undef BAD_ST
}

/* Every truncation of a good file is refused; every single-byte corruption
 * is either refused or loads — never a crash (ASan/UBSan watch). */
static void mutate(const char *src, const char *name, int all_truncations_fail)
{
    size_t n;
    unsigned char *good = read_bytes(src, &n);
    CHECK(good != NULL);
    if (!good)
        return;
    const char *p = tmp_path(name);
    int refused = 0, loaded = 0;
    for (size_t len = 0; len < n; len++) {
        CHECK(rewrite_bytes(p, good, len) == 0);
        optvq_weights *w = NULL;
        optvq_status st = optvq_weights_load(p, &w);
        if (all_truncations_fail)
            CHECK_MSG(st != OPTVQ_OK, "%s truncated to %zu bytes was accepted", src, len);
        if (st != OPTVQ_OK)
            CHECK_MSG(strstr(optvq_last_error(), name) != NULL, "message '%s' does not name the file",
                      optvq_last_error());
        optvq_weights_free(w);
    }
    unsigned char *bad = malloc(n);
    for (size_t i = 0; bad && i < n; i++) {
        memcpy(bad, good, n);
        bad[i] ^= (unsigned char)(i % 7 == 0 ? 0xff : 0x01 << (i % 8));
        CHECK(rewrite_bytes(p, bad, n) == 0);
        optvq_weights *w = NULL;
        if (optvq_weights_load(p, &w) == OPTVQ_OK) {
            loaded++;
            /* touch every value */
            volatile float sink = 0;
            for (int64_t t = 0; t < optvq_weights_count(w); t++)
                for (int64_t k = 0; k < optvq_weights_get(w, t)->numel; k++)
                    sink += optvq_weights_get(w, t)->data[k];
            (void)sink;
        } else {
            refused++;
        }
        optvq_weights_free(w);
    }
    printf("    %s: %zu truncations refused; byte flips: %d refused, %d loaded\n", src, n, refused, loaded);
    free(bad);
    free(good);
}

TEST(weights_mutations_safetensors) { mutate(ref_path("ref.safetensors"), "mut.safetensors", 1); }

TEST(weights_mutations_pth) { mutate(ref_path("plain.pth"), "mut.pth", 1); }

TEST(weights_mutations_pth_deflated) { mutate(ref_path("deflated.pth"), "mutd.pth", 1); }

/* ---- hostile checkpoints --------------------------------------------------- */

TEST(weights_bad_pth)
{
    expect_fail(ref_path("evil_global.pth"), "system");
    expect_fail(ref_path("evil_global.pth"), "nothing is executed");
    expect_fail(ref_path("evil_getattr.pth"), "getattr");
    expect_fail(ref_path("trunc_pickle.pth"), "truncated");
    expect_fail(ref_path("crc_corrupt.pth"), "CRC");

    size_t n;
    unsigned char *good = read_bytes(ref_path("plain.pth"), &n);
    CHECK(good != NULL);
    if (!good)
        return;
    const char *p = tmp_path("broken.pth");
    CHECK(write_bytes(p, good, n / 2) == 0);
    expect_fail(p, "end of central directory");
    /* corrupt the central directory's first signature */
    unsigned char *cd = memmem(good, n, "PK\1\2", 4);
    CHECK(cd != NULL);
    if (cd) {
        cd[3] = 9;
        CHECK(write_bytes(p, good, n) == 0);
        expect_fail(p, "central directory");
        cd[3] = 2;
    }
    /* the end record pointing the directory outside the file */
    unsigned char *eocd = good + n - 22;
    CHECK(eocd[0] == 'P' && eocd[1] == 'K' && eocd[2] == 5 && eocd[3] == 6);
    eocd[16] ^= 0x7f;
    eocd[18] = 0x7f;
    CHECK(write_bytes(p, good, n) == 0);
    expect_fail(p, "central directory");
    free(good);

    /* legacy (non-zip) torch.save output and plain junk */
    const unsigned char legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
    CHECK(write_bytes(p, legacy, sizeof legacy) == 0);
    expect_fail(p, "legacy");
    CHECK(write_bytes(p, "PK\3\4 hello", 10) == 0);
    expect_fail(p, "zip");
    CHECK(write_bytes(tmp_path("junk.bin"), "this is not a checkpoint at all", 31) == 0);
    expect_fail(tmp_path("junk.bin"), NULL);
}

/* Inputs that once crashed a reader (found by fuzzing): each must now load or
 * be refused cleanly. */
TEST(weights_fuzz_regressions)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/weights/regress", test_ref_dir());
    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "cannot open %s", dir);
    if (!d)
        return;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        optvq_weights *w = NULL;
        optvq_status st = optvq_weights_load(path, &w);
        printf("    %-50s %s\n", e->d_name, st == OPTVQ_OK ? "loaded" : optvq_last_error());
        if (st != OPTVQ_OK)
            CHECK(w == NULL && strstr(optvq_last_error(), e->d_name) != NULL);
        optvq_weights_free(w);
        n++;
    }
    closedir(d);
    CHECK(n > 0);
}

/* Long names: the message still fits one line and names every kind. */
TEST(weights_strict_load_long_names_fit)
{
    char names[8][96];
    const char *pn[8];
    int64_t dims[16];
    for (int i = 0; i < 8; i++) {
        snprintf(names[i], sizeof names[i], "model.decoder.up.%d.block.2.attention.very_long_submodule_name.nin_shortcut.weight", i);
        pn[i] = names[i];
        dims[2 * i] = 2;
        dims[2 * i + 1] = 2;
    }
    optvq_weights *w = make_store(pn, 8, dims);
    if (!w)
        return;
    float buf[16];
    optvq_expected_tensor exp[8];
    char want[8][96];
    for (int i = 0; i < 8; i++) {
        /* 0..3 match with a wrong shape, 4..7 are missing (and 4..7 of the file unexpected) */
        snprintf(want[i], sizeof want[i], "%s%s", names[i] + 6, i >= 4 ? ".x" : "");
        exp[i] = (optvq_expected_tensor){want[i], 2, {4, 4}, buf};
    }
    optvq_status st = optvq_weights_load_into(w, exp, 8, "a/rather/long/path/to/the/checkpoint/model.safetensors");
    CHECK(st == OPTVQ_ERR_FORMAT);
    char msg[600];
    snprintf(msg, sizeof msg, "%s", optvq_last_error());
    size_t len = strlen(msg);
    printf("    message (%zu chars): %s\n", len, msg);
    CHECK(len < 511); /* not cut by the message buffer */
    CHECK(strstr(msg, "4 missing") && strstr(msg, "4 unexpected") && strstr(msg, "4 shape mismatches"));
    CHECK(strstr(msg, "vs model (4, 4)") != NULL);
    optvq_weights_free(w);
}
