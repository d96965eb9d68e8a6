/* Image sets (src/io/dataset.h): streamed reads equal the all-in-memory load
 * for every kind, .npy conversion and checks, and the messages of the rules
 * every command shares. */
#include "test.h"

#include "io/dataset.h"
#include "optvq/optvq.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int copy_file(const char *from, const char *to)
{
    size_t n;
    unsigned char *b = read_bytes(from, &n);
    int rc = b ? write_bytes(to, b, n) : -1;
    free(b);
    return rc;
}

/* an uncompressed IDX file of n images h x w with pixel (i, y, x) = 37 i + 5 y + 3 x (mod 256) */
static int write_idx(const char *path, int n, int h, int w)
{
    size_t len = 16 + (size_t)n * (size_t)h * (size_t)w;
    unsigned char *b = malloc(len);
    if (!b)
        return -1;
    const int dims[3] = {n, h, w};
    b[0] = b[1] = 0;
    b[2] = 0x08;
    b[3] = 3;
    for (int d = 0; d < 3; d++)
        for (int k = 0; k < 4; k++)
            b[4 + 4 * d + k] = (unsigned char)(dims[d] >> (8 * (3 - k)));
    for (int i = 0; i < n; i++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                b[16 + ((size_t)i * h + y) * w + x] = (unsigned char)((37 * i + 5 * y + 3 * x) & 255);
    int rc = write_bytes(path, b, len);
    free(b);
    return rc;
}

/* dataset_open + dataset_read of every image equals dataset_load's images */
static void check_stream_equals_load(const char *spec, int64_t channels, int64_t res, int64_t want_n)
{
    dataset a, b;
    dataset_options o = {.channels = channels, .resolution = res};
    CHECK_OK(dataset_open(spec, &o, &a));
    CHECK_OK(dataset_load(spec, 0, res, (int)channels, 0, &b));
    CHECK_MSG(a.n == want_n && b.n == want_n && a.c == channels && a.h == res && a.w == res && b.r == res,
              "%s: n %lld / %lld, want %lld", spec, (long long)a.n, (long long)b.n, (long long)want_n);
    if (a.n == want_n && b.n == want_n && b.images) {
        const int64_t per = channels * res * res;
        float *x = malloc(sizeof(float) * (size_t)(a.n * per));
        CHECK_OK(dataset_read(&a, 0, a.n, x));
        CHECK_MSG(!memcmp(x, b.images, sizeof(float) * (size_t)(a.n * per)), "%s: streamed != loaded", spec);
        float *one = malloc(sizeof(float) * (size_t)per);
        int fc = 0;
        CHECK_OK(dataset_read_one(&a, a.n - 1, one, &fc));
        CHECK(!memcmp(one, b.images + (a.n - 1) * per, sizeof(float) * (size_t)per) && (fc == 1 || fc == 3));
        free(one);
        free(x);
    }
    dataset_free(&a);
    dataset_free(&b);
}

static void expect_error(const char *spec, const dataset_options *o, const char *text)
{
    dataset d;
    optvq_status st = dataset_open(spec, o, &d);
    CHECK_MSG(st != OPTVQ_OK && strstr(optvq_last_error(), text) != NULL, "%s: got '%s', want '%s'", spec,
              st == OPTVQ_OK ? "success" : optvq_last_error(), text);
    CHECK(d.images == NULL && d.paths == NULL && d.n == 0);
    dataset_free(&d);
}

TEST(dataset_kinds_stream_as_they_load)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s", tmp_path("ds_imgs"));
    mkdir(dir, 0755);
    char src[600], dst[700];
    const char *names[] = {"chelsea_crop.png", "coffee_crop.jpg", "camera_crop.png"};
    for (int i = 0; i < 3; i++) {
        snprintf(src, sizeof src, "%s/image/%s", test_ref_dir(), names[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, names[i]);
        CHECK(copy_file(src, dst) == 0);
    }
    check_stream_equals_load(dir, 3, 16, 3); /* a folder */
    check_stream_equals_load(dir, 1, 16, 3); /* colour turned to grey */
    check_stream_equals_load(dst, 3, 24, 1); /* one file */
    const char *idx = tmp_path("ds_images-idx3-ubyte");
    CHECK(write_idx(idx, 5, 28, 28) == 0);
    check_stream_equals_load(idx, 1, 32, 5); /* IDX, 28 -> 32 */
    /* the file of each image, and the limit */
    dataset d;
    dataset_options o = {.channels = 3, .resolution = 16, .limit = 2};
    CHECK_OK(dataset_open(dir, &o, &d));
    CHECK(d.n == 2 && d.kind == DATASET_FILES && strstr(dataset_file(&d, 0), "camera_crop.png"));
    dataset_free(&d);
}

TEST(dataset_npy_conversion_and_range)
{
    const int64_t shape[4] = {2, 1, 8, 8};
    uint8_t u8[128];
    for (int i = 0; i < 128; i++)
        u8[i] = (uint8_t)(2 * i);
    const char *p = tmp_path("ds_u8.npy");
    CHECK_OK(optvq_npy_write(p, OPTVQ_U8, 4, shape, u8));
    dataset d;
    dataset_options o = {.channels = 1, .resolution = 32, .multiple = 4};
    CHECK_OK(dataset_open(p, &o, &d));
    CHECK(d.from_u8 && d.n == 2 && d.h == 8 && d.w == 8 && d.kind == DATASET_NPY);
    if (d.images) {
        CHECK(d.images[0] == -1.0f && d.images[127] == ((float)(254 / 255.0) - 0.5f) / 0.5f);
        CHECK_OK(dataset_check_range(&d));
    }
    dataset_free(&d);
    float f[128];
    for (int i = 0; i < 128; i++)
        f[i] = i == 77 ? 1.5f : 0.25f;
    p = tmp_path("ds_wide.npy");
    CHECK_OK(optvq_npy_write(p, OPTVQ_F32, 4, shape, f));
    CHECK_OK(dataset_open(p, &o, &d)); /* opens; the range is the command's call */
    CHECK(dataset_check_range(&d) == OPTVQ_ERR_FORMAT && strstr(optvq_last_error(), "must lie in [-1, 1]"));
    CHECK(d.lo == 0.25 && d.hi == 1.5);
    dataset_free(&d);
    o.limit = 1; /* image 1 holds the wide value; the first alone is in range */
    CHECK_OK(dataset_open(p, &o, &d));
    CHECK(d.n == 1 && dataset_check_range(&d) == OPTVQ_OK);
    dataset_free(&d);
}

TEST(dataset_rules_and_messages)
{
    dataset_options rgb = {.channels = 3, .resolution = 16}, grey = {.channels = 1, .resolution = 32};
    expect_error(tmp_path("ds_nothing"), &rgb, "no such file or folder");
    char empty[600];
    snprintf(empty, sizeof empty, "%s", tmp_path("ds_empty"));
    mkdir(empty, 0755);
    expect_error(empty, &rgb, "no .png/.jpg/.jpeg images in the folder");
    const int64_t shape[4] = {1, 1, 6, 8}, none[4] = {0, 1, 8, 8};
    float f[48] = {0};
    int32_t i32[48] = {0};
    const char *p = tmp_path("ds_f.npy");
    CHECK_OK(optvq_npy_write(p, OPTVQ_F32, 4, shape, f));
    expect_error(p, &rgb, "expected images (B, 3, H, W) for this 3-channel model, got shape (1, 1, 6, 8)");
    dataset_options sq = grey, mul = grey;
    sq.square = 1;
    mul.multiple = 4;
    expect_error(p, &sq, "expected square images (B, 1, R, R)");
    expect_error(p, &mul, "images of 6x8 do not fit the model: height and width must be multiples of 4");
    f[5] = NAN;
    CHECK_OK(optvq_npy_write(p, OPTVQ_F32, 4, shape, f));
    expect_error(p, &grey, "NaN or Inf at element 5");
    p = tmp_path("ds_i.npy");
    CHECK_OK(optvq_npy_write(p, OPTVQ_I32, 4, shape, i32));
    expect_error(p, &grey, "an int32 array is not images");
    p = tmp_path("ds_none.npy");
    CHECK_OK(optvq_npy_write(p, OPTVQ_F32, 4, none, f));
    expect_error(p, &grey, "holds no images (shape (0, 1, 8, 8))");
    const char *idx = tmp_path("ds_other-idx3-ubyte");
    CHECK(write_idx(idx, 2, 28, 28) == 0);
    expect_error(idx, &rgb, "the IDX images are grey but the model takes 3 channels");
    dataset_options small = {.channels = 1, .resolution = 16};
    CHECK(write_idx(idx, 2, 28, 40) == 0);
    expect_error(idx, &small, "28x40 images do not resize to the model's 16x16");
    /* a file that is not an image opens (it is one file) and fails when read, named */
    p = tmp_path("ds_text.png");
    CHECK(write_bytes(p, "not a png", 9) == 0);
    dataset d;
    CHECK_OK(dataset_open(p, &rgb, &d));
    float img[3 * 16 * 16];
    CHECK(dataset_read(&d, 0, 1, img) != OPTVQ_OK && strstr(optvq_last_error(), "ds_text.png"));
    CHECK(dataset_read(&d, 0, 2, img) == OPTVQ_ERR_INVALID_ARG); /* past the end */
    dataset_free(&d);
}
