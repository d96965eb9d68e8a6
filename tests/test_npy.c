/* Tests of the .npy reader/writer (src/io/npy.c): round trips of the four
 * dtypes, byte-identity with files written by NumPy, and every way a
 * malformed file must be refused (right status, message naming the file). */
#include "optvq/optvq.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------ */

/* A version-1.0 .npy file with the given header dict text (padded as NumPy
 * does) followed by `data_bytes` bytes of payload (pattern 0x11). */
static int write_npy_raw(const char *path, const char *dict, size_t data_bytes)
{
    size_t len = strlen(dict);
    size_t total = 10 + len + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t header_len = len + pad + 1;
    size_t n = 10 + header_len + data_bytes;
    unsigned char *buf = malloc(n);
    if (!buf)
        return -1;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(header_len & 0xff);
    buf[9] = (unsigned char)(header_len >> 8);
    memcpy(buf + 10, dict, len);
    memset(buf + 10 + len, ' ', pad);
    buf[10 + len + pad] = '\n';
    memset(buf + 10 + header_len, 0x11, data_bytes);
    int rc = write_bytes(path, buf, n);
    free(buf);
    return rc;
}

/* Reading `path` must fail with `want`, leave `a` empty, and name the file. */
static void expect_fail(const char *what, const char *path, optvq_status want)
{
    optvq_array a;
    memset(&a, 0x5a, sizeof a);
    optvq_status st = optvq_npy_read(path, &a);
    const char *msg = optvq_last_error();
    printf("    %-28s -> %s: %s\n", what, optvq_status_string(st), msg);
    CHECK_MSG(st == want, "%s: got status %s, want %s", what, optvq_status_string(st),
              optvq_status_string(want));
    CHECK_MSG(strstr(msg, path) != NULL, "%s: message does not name the file: %s", what, msg);
    CHECK_MSG(a.data == NULL, "%s: data left allocated after failure", what);
    if (st == OPTVQ_OK)
        optvq_array_free(&a);
}

/* ---- round trips --------------------------------------------------------- */

static void round_trip(optvq_dtype dt, int ndim, const int64_t *shape, const char *name)
{
    static const size_t size[] = {4, 8, 4, 8, 1};
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    size_t bytes = (size_t)n * size[dt];
    unsigned char *data = malloc(bytes ? bytes : 1);
    for (int64_t i = 0; i < n; i++) {
        switch (dt) {
        case OPTVQ_F32: ((float *)data)[i] = (float)i * -0.37f + 1e-3f; break;
        case OPTVQ_F64: ((double *)data)[i] = (double)i * 1.0e-300 - 12345.678; break;
        case OPTVQ_I32: ((int32_t *)data)[i] = (int32_t)(i * 2654435761u); break;
        case OPTVQ_I64: ((int64_t *)data)[i] = (int64_t)i * -3037000493LL + INT64_MIN / 3; break;
        case OPTVQ_U8: data[i] = (unsigned char)(i * 37 + 11); break;
        }
    }
    const char *path = tmp_path(name);
    CHECK_OK(optvq_npy_write(path, dt, ndim, shape, data));
    optvq_array a;
    optvq_status st = optvq_npy_read(path, &a);
    CHECK_OK(st);
    if (st == OPTVQ_OK) {
        CHECK_MSG(a.dtype == dt, "%s: dtype %d, want %d", name, (int)a.dtype, (int)dt);
        CHECK_MSG(a.ndim == ndim, "%s: ndim %d, want %d", name, a.ndim, ndim);
        for (int i = 0; i < ndim && i < a.ndim; i++)
            CHECK_MSG(a.shape[i] == shape[i], "%s: shape[%d] %lld, want %lld", name, i,
                      (long long)a.shape[i], (long long)shape[i]);
        CHECK(optvq_array_numel(&a) == n);
        CHECK_MSG(bytes == 0 || memcmp(a.data, data, bytes) == 0, "%s: data differ", name);
        optvq_array_free(&a);
        CHECK(a.data == NULL);
    }
    /* The header is padded so that the data start at a multiple of 64. */
    size_t fn;
    unsigned char *file = read_bytes(path, &fn);
    CHECK(file != NULL);
    if (file) {
        CHECK_MSG((fn - bytes) % 64 == 0, "%s: data start at %zu, not a multiple of 64", name, fn - bytes);
        CHECK(file[fn - bytes - 1] == '\n');
        free(file);
    }
    free(data);
}

TEST(npy_round_trip_dtypes)
{
    const int64_t s23[] = {2, 3};
    const int64_t s7[] = {7};
    const int64_t s4d[] = {2, 3, 1, 5};
    const int64_t s0[] = {0, 4};
    round_trip(OPTVQ_F32, 2, s23, "f32.npy");
    round_trip(OPTVQ_F64, 1, s7, "f64.npy");
    round_trip(OPTVQ_I32, 4, s4d, "i32.npy");
    round_trip(OPTVQ_I64, 2, s23, "i64.npy");
    round_trip(OPTVQ_U8, 4, s4d, "u8.npy");
    round_trip(OPTVQ_F32, 0, NULL, "scalar.npy"); /* shape () */
    round_trip(OPTVQ_F64, 2, s0, "empty.npy");    /* zero elements */
    const int64_t s8[OPTVQ_MAX_DIMS] = {1, 2, 1, 2, 1, 2, 1, 3};
    round_trip(OPTVQ_I64, OPTVQ_MAX_DIMS, s8, "maxdims.npy");
}

TEST(npy_conversions)
{
    const int64_t shape[] = {5};
    const int32_t i32[] = {-7, 0, 3, 2147483647, -2147483647 - 1};
    const double f64[] = {0.1, -2.5, 1e30, -0.0, 3.0};
    const char *p1 = tmp_path("conv_i32.npy"), *p2 = tmp_path("conv_f64.npy");
    CHECK_OK(optvq_npy_write(p1, OPTVQ_I32, 1, shape, i32));
    CHECK_OK(optvq_npy_write(p2, OPTVQ_F64, 1, shape, f64));
    optvq_array a;
    if (optvq_npy_read(p1, &a) == OPTVQ_OK) {
        CHECK_OK(optvq_array_to_i64(&a));
        CHECK(a.dtype == OPTVQ_I64);
        for (int i = 0; i < 5; i++)
            CHECK(((int64_t *)a.data)[i] == i32[i]);
        CHECK_OK(optvq_array_to_f32(&a));
        CHECK(a.dtype == OPTVQ_F32 && ((float *)a.data)[0] == -7.0f);
        optvq_array_free(&a);
    } else
        CHECK_MSG(0, "cannot read %s: %s", p1, optvq_last_error());
    if (optvq_npy_read(p2, &a) == OPTVQ_OK) {
        CHECK(optvq_array_to_i64(&a) == OPTVQ_ERR_FORMAT); /* float -> int is refused */
        CHECK_OK(optvq_array_to_f32(&a));
        CHECK(a.dtype == OPTVQ_F32);
        for (int i = 0; i < 5; i++)
            CHECK(((float *)a.data)[i] == (float)f64[i]);
        optvq_array_free(&a);
    } else
        CHECK_MSG(0, "cannot read %s: %s", p2, optvq_last_error());
}

/* Files written by NumPy (the quantizer reference states) read back and,
 * written again by us, are byte-identical to NumPy's. */
TEST(npy_numpy_files_byte_identical)
{
    static const char *files[] = {"x.npy", "indices.npy", "loss.npy", "tie_margin.npy", "embedding.npy"};
    char path[1024];
    int found = 0;
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/quant/sinkhorn_all_l2_h4_p1/%s", test_ref_dir(), files[i]);
        optvq_array a;
        if (optvq_npy_read(path, &a) != OPTVQ_OK) {
            printf("    skip %s: %s\n", path, optvq_last_error());
            continue;
        }
        found++;
        const char *out = tmp_path("rewrite.npy");
        CHECK_OK(optvq_npy_write(out, a.dtype, a.ndim, a.shape, a.data));
        size_t n1, n2;
        unsigned char *b1 = read_bytes(path, &n1), *b2 = read_bytes(out, &n2);
        CHECK_MSG(b1 && b2 && n1 == n2 && memcmp(b1, b2, n1) == 0,
                  "%s: our rewrite differs from NumPy's file (%zu vs %zu bytes)", files[i], n2, n1);
        printf("    %-16s ndim=%d numel=%lld: %s\n", files[i], a.ndim, (long long)optvq_array_numel(&a),
               (b1 && b2 && n1 == n2 && memcmp(b1, b2, n1) == 0) ? "identical" : "DIFFERENT");
        free(b1);
        free(b2);
        optvq_array_free(&a);
    }
    CHECK_MSG(found > 0, "no NumPy reference files under %s/quant (run tools/gen_quant_ref.py)", test_ref_dir());
}

/* Version 2.0 headers (4-byte length) and double-quoted keys are read too. */
TEST(npy_version2_header)
{
    const char *dict = "{\"descr\": \"<i4\", \"fortran_order\": False, \"shape\": (3,), }";
    size_t len = strlen(dict);
    size_t total = 12 + len + 1, pad = (64 - total % 64) % 64, header_len = len + pad + 1;
    unsigned char buf[256];
    memcpy(buf, "\x93NUMPY\x02\x00", 8);
    buf[8] = (unsigned char)header_len;
    buf[9] = buf[10] = buf[11] = 0;
    memcpy(buf + 12, dict, len);
    memset(buf + 12 + len, ' ', pad);
    buf[12 + len + pad] = '\n';
    const int32_t v[3] = {1, -2, 3};
    memcpy(buf + 12 + header_len, v, sizeof v);
    const char *path = tmp_path("v2.npy");
    CHECK(write_bytes(path, buf, 12 + header_len + sizeof v) == 0);
    optvq_array a;
    optvq_status st = optvq_npy_read(path, &a);
    CHECK_OK(st);
    if (st == OPTVQ_OK) {
        CHECK(a.dtype == OPTVQ_I32 && a.ndim == 1 && a.shape[0] == 3);
        CHECK(memcmp(a.data, v, sizeof v) == 0);
        optvq_array_free(&a);
    }
}

/* ---- malformed input ----------------------------------------------------- */

TEST(npy_bad_input)
{
    const char *ok_dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (10,), }";
    const char *p;

    /* sanity: the raw writer itself makes a valid file */
    p = tmp_path("good.npy");
    CHECK(write_npy_raw(p, ok_dict, 40) == 0);
    optvq_array a;
    CHECK_OK(optvq_npy_read(p, &a));
    optvq_array_free(&a);

    expect_fail("missing file", tmp_path("does_not_exist.npy"), OPTVQ_ERR_IO);

    p = tmp_path("bad_magic.npy");
    CHECK(write_npy_raw(p, ok_dict, 40) == 0);
    {
        size_t n;
        unsigned char *b = read_bytes(p, &n);
        if (b) {
            b[1] = 'M'; /* \x93MUMPY */
            CHECK(write_bytes(p, b, n) == 0);
            free(b);
        }
    }
    expect_fail("bad magic", p, OPTVQ_ERR_FORMAT);

    p = tmp_path("text.npy");
    CHECK(write_bytes(p, "hello world, not numpy\n", 23) == 0);
    expect_fail("text file", p, OPTVQ_ERR_FORMAT);

    p = tmp_path("empty_file.npy");
    CHECK(write_bytes(p, "", 0) == 0);
    expect_fail("empty file", p, OPTVQ_ERR_FORMAT);

    p = tmp_path("fortran.npy");
    CHECK(write_npy_raw(p, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 5), }", 40) == 0);
    expect_fail("Fortran order", p, OPTVQ_ERR_FORMAT);

    p = tmp_path("f2.npy");
    CHECK(write_npy_raw(p, "{'descr': '<f2', 'fortran_order': False, 'shape': (10,), }", 20) == 0);
    expect_fail("dtype <f2", p, OPTVQ_ERR_FORMAT);

    p = tmp_path("bigendian.npy");
    CHECK(write_npy_raw(p, "{'descr': '>f4', 'fortran_order': False, 'shape': (10,), }", 40) == 0);
    expect_fail("dtype >f4 (big-endian)", p, OPTVQ_ERR_FORMAT);

    p = tmp_path("object.npy");
    CHECK(write_npy_raw(p, "{'descr': '|O', 'fortran_order': False, 'shape': (10,), }", 80) == 0);
    expect_fail("dtype |O", p, OPTVQ_ERR_FORMAT);

    p = tmp_path("truncated_data.npy");
    CHECK(write_npy_raw(p, ok_dict, 36) == 0); /* 9 of 10 floats */
    expect_fail("truncated data", p, OPTVQ_ERR_FORMAT);

    p = tmp_path("no_data.npy");
    CHECK(write_npy_raw(p, ok_dict, 0) == 0);
    expect_fail("header only, no data", p, OPTVQ_ERR_FORMAT);

    p = tmp_path("trailing.npy");
    CHECK(write_npy_raw(p, ok_dict, 44) == 0); /* one float too many */
    expect_fail("extra trailing bytes", p, OPTVQ_ERR_FORMAT);

    p = tmp_path("truncated_header.npy");
    CHECK(write_npy_raw(p, ok_dict, 40) == 0);
    {
        size_t n;
        unsigned char *b = read_bytes(p, &n);
        if (b) {
            CHECK(write_bytes(p, b, 40) == 0); /* stops inside the header dict */
            free(b);
        }
    }
    expect_fail("truncated header", p, OPTVQ_ERR_FORMAT);

    p = tmp_path("truncated_prefix.npy");
    CHECK(write_bytes(p, "\x93NUMPY\x01\x00\x76", 9) == 0); /* length field cut */
    expect_fail("truncated prefix", p, OPTVQ_ERR_FORMAT);

    p = tmp_path("v2_truncated.npy");
    CHECK(write_bytes(p, "\x93NUMPY\x02\x00\x76\x00", 10) == 0); /* 4-byte length cut */
    expect_fail("truncated v2 prefix", p, OPTVQ_ERR_FORMAT);

    p = tmp_path("version9.npy");
    CHECK(write_npy_raw(p, ok_dict, 40) == 0);
    {
        size_t n;
        unsigned char *b = read_bytes(p, &n);
        if (b) {
            b[6] = 9;
            CHECK(write_bytes(p, b, n) == 0);
            free(b);
        }
    }
    expect_fail("unknown version 9.0", p, OPTVQ_ERR_FORMAT);

    p = tmp_path("absurd_shape.npy");
    CHECK(write_npy_raw(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
                        40) == 0);
    expect_fail("absurd shape (2^32 x 2^32)", p, OPTVQ_ERR_FORMAT);

    p = tmp_path("overflow_shape.npy");
    CHECK(write_npy_raw(p,
                        "{'descr': '<f8', 'fortran_order': False, "
                        "'shape': (3037000500, 3037000500, 3037000500), }",
                        40) == 0);
    expect_fail("shape product overflows int64", p, OPTVQ_ERR_FORMAT);

    p = tmp_path("huge_dim.npy");
    CHECK(write_npy_raw(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }",
                        40) == 0);
    expect_fail("dimension beyond int64", p, OPTVQ_ERR_FORMAT);

    p = tmp_path("negative_dim.npy");
    CHECK(write_npy_raw(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (-10,), }", 40) == 0);
    expect_fail("negative dimension", p, OPTVQ_ERR_FORMAT);

    p = tmp_path("no_shape.npy");
    CHECK(write_npy_raw(p, "{'descr': '<f4', 'fortran_order': False, }", 40) == 0);
    expect_fail("no shape key", p, OPTVQ_ERR_FORMAT);

    p = tmp_path("no_descr.npy");
    CHECK(write_npy_raw(p, "{'fortran_order': False, 'shape': (10,), }", 40) == 0);
    expect_fail("no descr key", p, OPTVQ_ERR_FORMAT);

    p = tmp_path("too_many_dims.npy");
    CHECK(write_npy_raw(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 1, 10), }",
                        40) == 0);
    expect_fail("9 dimensions", p, OPTVQ_ERR_FORMAT);

    p = tmp_path("zero_header.npy");
    CHECK(write_bytes(p, "\x93NUMPY\x01\x00\x00\x00", 10) == 0);
    expect_fail("zero header length", p, OPTVQ_ERR_FORMAT);
}

/* Writing refuses nonsense and fails cleanly on an unwritable path. */
TEST(npy_write_errors)
{
    const int64_t shape[] = {2};
    const float v[2] = {1, 2};
    char path[600];
    snprintf(path, sizeof path, "%s/no/such/dir/x.npy", test_tmp_dir());
    optvq_status st = optvq_npy_write(path, OPTVQ_F32, 1, shape, v);
    CHECK_MSG(st != OPTVQ_OK, "writing into a missing directory succeeded");
    printf("    missing directory -> %s: %s\n", optvq_status_string(st), optvq_last_error());
    st = optvq_npy_write(tmp_path("bad_ndim.npy"), OPTVQ_F32, OPTVQ_MAX_DIMS + 1, shape, v);
    CHECK(st == OPTVQ_ERR_INVALID_ARG);
    st = optvq_npy_write(tmp_path("neg_ndim.npy"), OPTVQ_F32, -1, shape, v);
    CHECK(st == OPTVQ_ERR_INVALID_ARG);
}
