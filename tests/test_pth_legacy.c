/* The legacy (non-zip) torch.save format in src/io/pth.c: a file written by
 * tools/gen_fid_lpips_ref.py (tests/ref/weights/legacy.pth) with a view, a
 * transposed tensor, float16, float64 and int64 storages; every truncation and
 * a few corruptions must be refused cleanly. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/weights.h"
#include "optvq/optvq.h"
#include "test.h"

static const char *legacy_path(void)
{
    static char p[1024];
    snprintf(p, sizeof p, "%s/weights/legacy.pth", test_ref_dir());
    return p;
}

TEST(pth_legacy_reads_torch_output)
{
    optvq_weights *w = NULL;
    CHECK_OK(optvq_weights_load(legacy_path(), &w));
    if (!w)
        return;
    float a[12], c[6], h[5], d[4];
    test_det_uniform(a, "legacy.a", 12);
    test_det_uniform(c, "legacy.c", 6);
    test_det_uniform(h, "legacy.h", 5);
    test_det_uniform(d, "legacy.d", 4);
    const optvq_tensor *t = optvq_weights_find(w, "a");
    CHECK(t && t->ndim == 2 && t->shape[0] == 3 && t->shape[1] == 4 && !memcmp(t->data, a, sizeof a));
    t = optvq_weights_find(w, "b"); /* a[1:]: the same storage at offset 4 */
    CHECK(t && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 4 && !memcmp(t->data, a + 4, 8 * sizeof(float)));
    t = optvq_weights_find(w, "c"); /* (2, 3) transposed */
    CHECK(t && t->ndim == 2 && t->shape[0] == 3 && t->shape[1] == 2);
    for (int i = 0; t && i < 3; i++)
        for (int j = 0; j < 2; j++)
            CHECK(t->data[i * 2 + j] == c[j * 3 + i]);
    t = optvq_weights_find(w, "h");
    CHECK(t && t->numel == 5);
    for (int i = 0; t && i < 5; i++)
        CHECK(fabsf(t->data[i] - h[i]) <= 1e-3f * fabsf(h[i]) + 1e-7f);
    t = optvq_weights_find(w, "d");
    CHECK(t && t->numel == 4 && !memcmp(t->data, d, sizeof d));
    t = optvq_weights_find(w, "n");
    CHECK(t && t->numel == 3 && t->data[0] == 1 && t->data[1] == -2 && t->data[2] == 3);
    CHECK(optvq_weights_count(w) == 6);
    optvq_weights_free(w);
}

TEST(pth_legacy_refuses_truncations_and_corruptions)
{
    size_t n = 0;
    unsigned char *good = read_bytes(legacy_path(), &n);
    CHECK(good != NULL && n > 100);
    if (!good)
        return;
    const char *p = tmp_path("legacy_bad.pth");
    int refused = 0;
    for (size_t len = 0; len < n; len++) {
        CHECK(write_bytes(p, good, len) == 0);
        optvq_weights *w = (optvq_weights *)1;
        optvq_status st = optvq_weights_load_pth(p, &w);
        CHECK_MSG(st != OPTVQ_OK && w == NULL, "a %zu-byte prefix of legacy.pth loaded", len);
        if (st == OPTVQ_OK)
            optvq_weights_free(w);
        refused += st != OPTVQ_OK;
    }
    CHECK(refused == (int)n);
    /* every single-byte corruption: loads or is refused, never crashes (ASan) */
    for (size_t i = 0; i < n; i++) {
        unsigned char *bad = malloc(n);
        memcpy(bad, good, n);
        bad[i] ^= 0x5a;
        CHECK(write_bytes(p, bad, n) == 0);
        optvq_weights *w = NULL;
        if (optvq_weights_load(p, &w) == OPTVQ_OK)
            optvq_weights_free(w);
        free(bad);
    }
    /* a storage record that claims one element too many */
    unsigned char *big = malloc(n + 4);
    memcpy(big, good, n);
    memset(big + n, 0, 4);
    CHECK(write_bytes(p, big, n + 4) == 0);
    optvq_weights *w = NULL;
    CHECK_OK(optvq_weights_load(p, &w)); /* trailing bytes are ignored, as torch does */
    optvq_weights_free(w);
    free(big);
    free(good);
}
