/* Tests of src/io/image*.c and src/io/idx.c: the reference's preprocessing
 * against outputs of tools/gen_image_ref.py (PIL + cv2 + torchvision, in
 * tests/ref/image), PNG/JPEG decoding of every PNG flavour, PNG round trips,
 * refusal of corrupt/truncated/absurd files, folder listing, and IDX. */
#include "io/image.h"
#include "optvq/optvq.h"
#include "test.h"

#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

/* ---- helpers ------------------------------------------------------------------ */

static const char *ref_path(const char *name)
{
    static char buf[4][512];
    static int slot;
    char *p = buf[slot++ & 3];
    snprintf(p, 512, "%s/image/%s", test_ref_dir(), name);
    return p;
}

/* The message names the file and is one line. */
static void check_refused(optvq_status st, const char *path, const char *what)
{
    const char *msg = optvq_last_error();
    CHECK_MSG(st != OPTVQ_OK, "%s: accepted", what);
    CHECK_MSG(strstr(msg, path) != NULL, "%s: message does not name the file: %s", what, msg);
    CHECK_MSG(strchr(msg, '\n') == NULL, "%s: message has a newline", what);
    printf("    %-28s -> %s: %s\n", what, optvq_status_string(st), msg);
}

/* Compares an 8-bit image with an int32 (h, w, c) .npy. */
static void compare_u8_npy(const char *what, const optvq_image_u8 *img, const char *npy)
{
    optvq_array a;
    optvq_status st = optvq_npy_read(npy, &a);
    CHECK_OK(st);
    if (st != OPTVQ_OK)
        return;
    CHECK_OK(optvq_array_to_i64(&a));
    CHECK(a.ndim == 3 && a.shape[0] == img->height && a.shape[1] == img->width &&
          a.shape[2] == img->channels);
    if (a.ndim == 3 && a.shape[0] == img->height && a.shape[1] == img->width &&
        a.shape[2] == img->channels) {
        const int64_t *ref = a.data;
        int64_t n = optvq_array_numel(&a), diff = 0, maxd = 0;
        for (int64_t i = 0; i < n; i++) {
            int64_t d = llabs(ref[i] - img->data[i]);
            diff += d != 0;
            if (d > maxd)
                maxd = d;
        }
        printf("    %-40s n=%-8lld differing=%lld max_abs=%lld (8-bit levels)\n", what,
               (long long)n, (long long)diff, (long long)maxd);
        CHECK_MSG(diff == 0, "%s: %lld values differ", what, (long long)diff);
    }
    optvq_array_free(&a);
}

/* ---- the reference's validation preprocessing ------------------------------------ */

TEST(image_val_reference)
{
    const char *images[] = {"chelsea_crop.png", "coffee_crop.jpg", "camera_crop.png"};
    const int sizes[] = {64, 37};
    for (int i = 0; i < 3; i++)
        for (int s = 0; s < 2; s++) {
            int size = sizes[s];
            char stem[64], npy[128], what[128];
            snprintf(stem, sizeof stem, "%s", images[i]);
            *strchr(stem, '.') = '\0';
            snprintf(npy, sizeof npy, "%s_val%d.npy", stem, size);
            optvq_array ref;
            optvq_status st = optvq_npy_read(ref_path(npy), &ref);
            CHECK_OK(st);
            if (st != OPTVQ_OK)
                continue;
            CHECK(ref.dtype == OPTVQ_F32 && ref.ndim == 3 && ref.shape[0] == 3 &&
                  ref.shape[1] == size && ref.shape[2] == size);
            float *got = malloc(sizeof(float) * 3 * size * size);
            CHECK_OK(optvq_image_load_val(ref_path(images[i]), size, 3, got));
            snprintf(what, sizeof what, "%s -> %d ([-1,1] units)", images[i], size);
            test_diff d = test_compare(what, got, ref.data, 3 * size * size);
            CHECK_MSG(d.max_abs == 0, "%s: not bit-identical (max abs %g)", what, d.max_abs);
            CHECK(d.max_abs <= 2.0 / 255 * 2);
            free(got);
            optvq_array_free(&ref);
        }
}

TEST(image_jpeg_decode_matches_pil)
{
    optvq_image_u8 jpg, ref;
    CHECK_OK(optvq_image_read_u8(ref_path("coffee_crop.jpg"), 3, &jpg));
    CHECK_OK(optvq_image_read_u8(ref_path("coffee_crop_decoded.png"), 3, &ref));
    CHECK(jpg.width == 150 && jpg.height == 191 && jpg.channels == 3);
    if (jpg.data && ref.data && jpg.width == ref.width && jpg.height == ref.height) {
        size_t n = (size_t)jpg.width * jpg.height * 3, diff = 0;
        for (size_t i = 0; i < n; i++)
            diff += jpg.data[i] != ref.data[i];
        printf("    libjpeg vs PIL decode: %zu of %zu samples differ\n", diff, n);
        CHECK(diff == 0);
    }
    optvq_image_u8_free(&jpg);
    optvq_image_u8_free(&ref);
}

TEST(image_resize_matches_cv2)
{
    static const struct { int h, w, c, oh, ow; } cases[] = {
        {23, 31, 3, 40, 57}, {40, 30, 3, 20, 15}, {37, 50, 1, 11, 13},
        {19, 26, 1, 64, 50}, {30, 44, 3, 17, 29}, {50, 34, 3, 25, 17}};
    for (int i = 0; i < 6; i++) {
        char png[64], npy[64], what[96];
        snprintf(png, sizeof png, "rand%d.png", i);
        snprintf(npy, sizeof npy, "rand%d_resize_%dx%d.npy", i, cases[i].oh, cases[i].ow);
        optvq_image_u8 src, dst;
        CHECK_OK(optvq_image_read_u8(ref_path(png), cases[i].c, &src));
        CHECK(src.width == cases[i].w && src.height == cases[i].h);
        CHECK_OK(optvq_image_resize_linear(&src, cases[i].oh, cases[i].ow, &dst));
        snprintf(what, sizeof what, "cv2.resize %dx%dx%d -> %dx%d", cases[i].h, cases[i].w,
                 cases[i].c, cases[i].oh, cases[i].ow);
        if (dst.data)
            compare_u8_npy(what, &dst, ref_path(npy));
        optvq_image_u8_free(&src);
        optvq_image_u8_free(&dst);
    }
}

TEST(image_png_flavours_match_pil)
{
    const char *names[] = {"rgba", "la", "palette"};
    for (int i = 0; i < 3; i++) {
        char png[64], npy[64];
        snprintf(png, sizeof png, "%s.png", names[i]);
        snprintf(npy, sizeof npy, "%s_rgb.npy", names[i]);
        optvq_image_u8 img;
        CHECK_OK(optvq_image_read_u8(ref_path(png), 3, &img));
        if (img.data)
            compare_u8_npy(png, &img, ref_path(npy));
        optvq_image_u8_free(&img);
    }
}

/* ---- geometry and value mappings ---------------------------------------------------- */

TEST(image_geometry)
{
    int h, w;
    optvq_image_smallest_max_size_dims(4, 10, 3, &h, &w); /* 7.5 -> 8 (half to even) */
    CHECK(h == 3 && w == 8);
    optvq_image_smallest_max_size_dims(4, 6, 3, &h, &w); /* 4.5 -> 4 */
    CHECK(h == 3 && w == 4);
    optvq_image_smallest_max_size_dims(300, 451, 256, &h, &w);
    CHECK(h == 256 && w == 385); /* 384.85 */
    optvq_image_smallest_max_size_dims(500, 375, 256, &h, &w);
    CHECK(h == 341 && w == 256); /* 341.33 */

    optvq_image_u8 img, crop;
    CHECK_OK(optvq_image_u8_alloc(&img, 7, 6, 3));
    for (int i = 0; i < 7 * 6 * 3; i++)
        img.data[i] = (uint8_t)i;
    CHECK_OK(optvq_image_center_crop(&img, 3, 4, &crop)); /* y0 = 1, x0 = 1 (floor) */
    CHECK(crop.data && crop.data[0] == img.data[(1 * 7 + 1) * 3]);
    optvq_image_u8_free(&crop);
    CHECK(optvq_image_center_crop(&img, 7, 4, &crop) == OPTVQ_ERR_INVALID_ARG);
    CHECK(optvq_image_crop(&img, 4, 0, 3, 3, &crop) == OPTVQ_ERR_INVALID_ARG);
    CHECK(optvq_image_crop(&img, -1, 0, 3, 3, &crop) == OPTVQ_ERR_INVALID_ARG);
    optvq_image_u8 flip;
    CHECK_OK(optvq_image_crop(&img, 0, 0, 6, 7, &flip));
    optvq_image_flip_horizontal(&flip);
    int ok = 1;
    for (int y = 0; y < 6; y++)
        for (int x = 0; x < 7; x++)
            for (int k = 0; k < 3; k++)
                ok &= flip.data[(y * 7 + x) * 3 + k] == img.data[(y * 7 + 6 - x) * 3 + k];
    CHECK(ok);
    optvq_image_u8 same;
    CHECK_OK(optvq_image_resize_linear(&img, 6, 7, &same)); /* same size: copy */
    CHECK(same.data && memcmp(same.data, img.data, 7 * 6 * 3) == 0);
    optvq_image_u8_free(&same);
    optvq_image_u8_free(&flip);
    optvq_image_u8_free(&img);
}

TEST(image_value_mappings)
{
    optvq_image_u8 img, back;
    CHECK_OK(optvq_image_u8_alloc(&img, 256, 1, 1));
    CHECK_OK(optvq_image_u8_alloc(&back, 256, 1, 1));
    for (int u = 0; u < 256; u++)
        img.data[u] = (uint8_t)u;
    float s[256], unit[256];
    optvq_image_u8_to_signed(&img, s);
    optvq_image_u8_to_unit(&img, unit);
    int exact = 1;
    for (int u = 0; u < 256; u++) {
        float v = (float)(u / 255.0);
        exact &= s[u] == (v - 0.5f) / 0.5f && unit[u] == v;
    }
    CHECK(exact);
    CHECK(s[0] == -1.0f && s[255] == 1.0f);
    /* [-1, 1] -> 8 bits inverts exactly with rounding */
    CHECK_OK(optvq_image_float_to_u8(s, 1, 1, 256, 1, OPTVQ_IMAGE_ROUND, &back));
    CHECK(memcmp(back.data, img.data, 256) == 0);
    CHECK_OK(optvq_image_float_to_u8(unit, 1, 1, 256, 0, OPTVQ_IMAGE_ROUND, &back));
    CHECK(memcmp(back.data, img.data, 256) == 0);
    /* truncation as the reference's save_image: (uint8)(clamp(x, 0, 1) * 255) */
    float t[4] = {-3.0f, 0.999f, 2.0f, NAN};
    optvq_image_u8 four;
    CHECK_OK(optvq_image_u8_alloc(&four, 4, 1, 1));
    CHECK_OK(optvq_image_float_to_u8(t, 1, 1, 4, 0, OPTVQ_IMAGE_TRUNCATE, &four));
    CHECK(four.data[0] == 0 && four.data[1] == 254 && four.data[2] == 255 && four.data[3] == 0);
    CHECK_OK(optvq_image_float_to_u8(t, 1, 1, 4, 0, OPTVQ_IMAGE_ROUND, &four));
    CHECK(four.data[1] == 255);
    CHECK(optvq_image_float_to_u8(t, 3, 1, 4, 0, OPTVQ_IMAGE_ROUND, &four) ==
          OPTVQ_ERR_INVALID_ARG);
    optvq_image_u8_free(&four);
    optvq_image_u8_free(&img);
    optvq_image_u8_free(&back);
}

TEST(image_train_augmentation)
{
    optvq_image_u8 img, resized;
    CHECK_OK(optvq_image_read_u8(ref_path("chelsea_crop.png"), 3, &img));
    if (!img.data)
        return;
    const int size = 32;
    CHECK_OK(optvq_image_smallest_max_size(&img, size, &resized));
    float *a = malloc(sizeof(float) * 3 * size * size), *b = malloc(sizeof(float) * 3 * size * size);
    float *c = malloc(sizeof(float) * 3 * size * size);
    int flips = 0, offsets_seen = 0, all_match = 1;
    optvq_rng rng, rng2;
    optvq_rng_seed(&rng, 7);
    optvq_rng_seed(&rng2, 7);
    for (int trial = 0; trial < 20; trial++) {
        CHECK_OK(optvq_image_preprocess_train(&img, size, &rng, a));
        CHECK_OK(optvq_image_preprocess_train(&img, size, &rng2, b));
        all_match &= memcmp(a, b, sizeof(float) * 3 * size * size) == 0;
        /* the output is one crop of the resized image, possibly mirrored */
        int found = 0;
        for (int x0 = 0; x0 + size <= resized.width && !found; x0++)
            for (int f = 0; f < 2 && !found; f++) {
                optvq_image_u8 crop;
                if (optvq_image_crop(&resized, 0, x0, size, size, &crop) != OPTVQ_OK)
                    break;
                if (f)
                    optvq_image_flip_horizontal(&crop);
                optvq_image_u8_to_signed(&crop, c);
                if (memcmp(a, c, sizeof(float) * 3 * size * size) == 0) {
                    found = 1;
                    flips += f;
                    offsets_seen |= 1 << (x0 % 16);
                }
                optvq_image_u8_free(&crop);
            }
        CHECK_MSG(found, "trial %d: output is not a crop of the resized image", trial);
    }
    CHECK(all_match);
    CHECK(flips > 0 && flips < 20);
    CHECK(offsets_seen != 1);
    printf("    20 random crops: %d flipped\n", flips);
    free(a), free(b), free(c);
    optvq_image_u8_free(&resized);
    optvq_image_u8_free(&img);
}

/* ---- PNG writing and reading ------------------------------------------------------- */

TEST(image_png_roundtrip)
{
    for (int channels = 1; channels <= 3; channels += 2) {
        const int w = 29, h = 17;
        size_t n = (size_t)channels * w * h;
        float *x = malloc(sizeof(float) * n);
        uint32_t state = 12345;
        for (size_t i = 0; i < n; i++) {
            state = state * 1664525u + 1013904223u;
            x[i] = (float)(state >> 8) / (float)(1u << 24) * 1.2f - 0.1f; /* some out of range */
        }
        const char *path = tmp_path(channels == 1 ? "rt_grey.png" : "rt_rgb.png");
        CHECK_OK(optvq_image_write_png(path, x, channels, h, w));
        optvq_image_f32 back;
        CHECK_OK(optvq_image_read(path, channels, &back));
        double maxe = 0;
        if (back.data && back.width == w && back.height == h && back.channels == channels)
            for (size_t i = 0; i < n; i++) {
                float want = x[i] < 0 ? 0 : x[i] > 1 ? 1 : x[i];
                double e = fabs(back.data[i] - want);
                if (e > maxe)
                    maxe = e;
            }
        else
            CHECK(0);
        printf("    PNG round trip, %d channel(s): max abs error %.5f (limit 0.5/255 = %.5f)\n",
               channels, maxe, 0.5 / 255);
        CHECK(maxe <= 0.5 / 255 + 1e-7);
        /* 8-bit round trip is exact, the temporary file is gone */
        optvq_image_u8 u, u2;
        CHECK_OK(optvq_image_read_u8(path, channels, &u));
        CHECK_OK(optvq_image_write_png_u8(tmp_path("rt_u8.png"), &u));
        CHECK_OK(optvq_image_read_u8(tmp_path("rt_u8.png"), channels, &u2));
        CHECK(u.data && u2.data && memcmp(u.data, u2.data, n) == 0);
        char tmpname[600];
        snprintf(tmpname, sizeof tmpname, "%s.tmp.%ld", tmp_path("rt_u8.png"), (long)getpid());
        CHECK(access(tmpname, F_OK) != 0);
        optvq_image_u8_free(&u);
        optvq_image_u8_free(&u2);
        optvq_image_f32_free(&back);
        free(x);
    }
    /* signed writer: -1 -> 0, 1 -> 255 */
    float sx[3] = {-1.0f, 0.0f, 1.0f};
    optvq_image_u8 g;
    CHECK_OK(optvq_image_write_png_signed(tmp_path("signed.png"), sx, 1, 1, 3));
    CHECK_OK(optvq_image_read_u8(tmp_path("signed.png"), 1, &g));
    CHECK(g.data && g.data[0] == 0 && g.data[1] == 128 && g.data[2] == 255);
    optvq_image_u8_free(&g);
    /* grey read as RGB replicates, RGB read as grey uses PIL's luma */
    optvq_image_u8 rgb;
    CHECK_OK(optvq_image_u8_alloc(&rgb, 2, 1, 3));
    uint8_t px[6] = {255, 0, 0, 10, 200, 30};
    memcpy(rgb.data, px, 6);
    CHECK_OK(optvq_image_write_png_u8(tmp_path("two.png"), &rgb));
    CHECK_OK(optvq_image_read_u8(tmp_path("two.png"), 1, &g));
    CHECK(g.data && g.data[0] == 76 && g.data[1] == (10 * 19595 + 200 * 38470 + 30 * 7471 + 0x8000) >> 16);
    optvq_image_u8_free(&g);
    optvq_image_u8_free(&rgb);
    /* invalid arguments and an unwritable path */
    CHECK(optvq_image_write_png(tmp_path("bad.png"), sx, 2, 1, 3) == OPTVQ_ERR_INVALID_ARG);
    CHECK(optvq_image_write_png("/nonexistent-dir/x.png", sx, 1, 1, 3) == OPTVQ_ERR_IO);
    CHECK(optvq_image_read_u8(ref_path("rgba.png"), 2, &g) == OPTVQ_ERR_INVALID_ARG);
}

/* Writes a PNG with libpng directly: rows of raw samples (16-bit big-endian). */
static int craft_png(const char *path, int w, int h, int bit_depth, int color_type, int interlace,
                     const uint8_t *pixels, size_t rowbytes, const png_color *palette, int npal,
                     const png_byte *trans, int ntrans)
{
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return -1;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(fp);
        return -1;
    }
    png_init_io(png, fp);
    png_set_IHDR(png, info, w, h, bit_depth, color_type, interlace, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (palette)
        png_set_PLTE(png, info, palette, npal);
    if (trans)
        png_set_tRNS(png, info, trans, ntrans, NULL);
    png_write_info(png, info);
    int passes = png_set_interlace_handling(png);
    for (int p = 0; p < passes; p++)
        for (int y = 0; y < h; y++)
            png_write_row(png, pixels + rowbytes * y);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    return fclose(fp) == 0 ? 0 : -1;
}

TEST(image_png_bit_depths_and_palettes)
{
    const int w = 5, h = 3;
    /* 16-bit RGB: float read scales by 1/65535, 8-bit read keeps the high byte */
    uint8_t rgb16[3 * 5 * 3 * 2];
    for (int i = 0; i < w * h * 3; i++) {
        unsigned v = (unsigned)(i * 2731 + 17) & 0xFFFF;
        rgb16[2 * i] = (uint8_t)(v >> 8);
        rgb16[2 * i + 1] = (uint8_t)v;
    }
    const char *p16 = tmp_path("rgb16.png");
    CHECK(craft_png(p16, w, h, 16, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, rgb16, w * 6, NULL, 0,
                    NULL, 0) == 0);
    optvq_image_f32 f;
    optvq_image_u8 u;
    CHECK_OK(optvq_image_read(p16, 3, &f));
    CHECK_OK(optvq_image_read_u8(p16, 3, &u));
    int ok = f.data && u.data;
    for (int y = 0; ok && y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < 3; k++) {
                int i = (y * w + x) * 3 + k;
                unsigned v = ((unsigned)rgb16[2 * i] << 8) | rgb16[2 * i + 1];
                ok &= fabsf(f.data[(k * h + y) * w + x] - (float)(v / 65535.0)) == 0;
                ok &= u.data[i] == (v >> 8);
            }
    CHECK_MSG(ok, "16-bit RGB samples wrong");
    optvq_image_f32_free(&f);
    optvq_image_u8_free(&u);

    /* 16-bit grey, Adam7-interlaced */
    uint8_t g16[5 * 3 * 2];
    for (int i = 0; i < w * h; i++) {
        unsigned v = (unsigned)(i * 4099 + 3) & 0xFFFF;
        g16[2 * i] = (uint8_t)(v >> 8);
        g16[2 * i + 1] = (uint8_t)v;
    }
    const char *pg = tmp_path("grey16i.png");
    CHECK(craft_png(pg, w, h, 16, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_ADAM7, g16, w * 2, NULL, 0,
                    NULL, 0) == 0);
    CHECK_OK(optvq_image_read(pg, 3, &f));
    ok = f.data != NULL && f.channels == 3;
    for (int i = 0; ok && i < w * h; i++) {
        unsigned v = ((unsigned)g16[2 * i] << 8) | g16[2 * i + 1];
        for (int k = 0; k < 3; k++)
            ok &= f.data[k * w * h + i] == (float)(v / 65535.0);
    }
    CHECK_MSG(ok, "16-bit interlaced grey samples wrong");
    optvq_image_f32_free(&f);

    /* 1-bit grey: 0 -> 0, 1 -> 255 */
    uint8_t bits[3] = {0xA8, 0x50, 0xF8}; /* rows 10101, 01010, 11111 */
    const char *pb = tmp_path("grey1.png");
    CHECK(craft_png(pb, w, h, 1, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, bits, 1, NULL, 0, NULL,
                    0) == 0);
    CHECK_OK(optvq_image_read_u8(pb, 1, &u));
    ok = u.data != NULL;
    for (int y = 0; ok && y < h; y++)
        for (int x = 0; x < w; x++)
            ok &= u.data[y * w + x] == (((bits[y] >> (7 - x)) & 1) ? 255 : 0);
    CHECK_MSG(ok, "1-bit grey samples wrong");
    optvq_image_u8_free(&u);

    /* 4-bit palette with transparency: colours from the palette, alpha dropped */
    png_color pal[3] = {{10, 20, 30}, {200, 100, 50}, {0, 255, 128}};
    png_byte trans[3] = {0, 128, 255};
    uint8_t idx4[3 * 3] = {0x01, 0x20, 0x10, 0x12, 0x01, 0x00, 0x22, 0x22, 0x20};
    const char *pp = tmp_path("pal4.png");
    CHECK(craft_png(pp, w, h, 4, PNG_COLOR_TYPE_PALETTE, PNG_INTERLACE_NONE, idx4, 3, pal, 3,
                    trans, 3) == 0);
    CHECK_OK(optvq_image_read_u8(pp, 3, &u));
    ok = u.data != NULL;
    for (int y = 0; ok && y < h; y++)
        for (int x = 0; x < w; x++) {
            int b = idx4[y * 3 + x / 2], id = (x % 2) ? (b & 15) : (b >> 4);
            ok &= u.data[(y * w + x) * 3] == pal[id].red &&
                  u.data[(y * w + x) * 3 + 1] == pal[id].green &&
                  u.data[(y * w + x) * 3 + 2] == pal[id].blue;
        }
    CHECK_MSG(ok, "palette samples wrong");
    optvq_image_u8_free(&u);

    /* 16-bit RGBA: alpha dropped */
    uint8_t rgba16[5 * 3 * 8];
    for (int i = 0; i < (int)sizeof rgba16; i++)
        rgba16[i] = (uint8_t)(i * 37 + 5);
    const char *pa = tmp_path("rgba16.png");
    CHECK(craft_png(pa, w, h, 16, PNG_COLOR_TYPE_RGB_ALPHA, PNG_INTERLACE_NONE, rgba16, w * 8,
                    NULL, 0, NULL, 0) == 0);
    CHECK_OK(optvq_image_read_u8(pa, 3, &u));
    ok = u.data != NULL;
    for (int i = 0; ok && i < w * h; i++)
        for (int k = 0; k < 3; k++)
            ok &= u.data[i * 3 + k] == rgba16[i * 8 + 2 * k];
    CHECK_MSG(ok, "16-bit RGBA samples wrong");
    optvq_image_u8_free(&u);
}

/* ---- refusing bad files --------------------------------------------------------------- */

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static size_t put_chunk(uint8_t *buf, const char *type, const uint8_t *data, uint32_t len)
{
    put_be32(buf, len);
    memcpy(buf + 4, type, 4);
    if (len)
        memcpy(buf + 8, data, len);
    put_be32(buf + 8 + len, (uint32_t)crc32(0, buf + 4, 4 + len));
    return 12 + len;
}

/* A PNG signature + IHDR chunk (valid CRC) for the given size, then a small
 * IDAT (so that libpng's header parsing finishes) and IEND. */
static size_t craft_header(uint8_t *buf, uint32_t w, uint32_t h, int with_iend)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(buf, sig, 8);
    put_be32(buf + 8, 13);
    memcpy(buf + 12, "IHDR", 4);
    put_be32(buf + 16, w);
    put_be32(buf + 20, h);
    buf[24] = 8, buf[25] = 2, buf[26] = 0, buf[27] = 0, buf[28] = 0; /* 8-bit RGB */
    put_be32(buf + 29, (uint32_t)crc32(0, buf + 12, 17));
    size_t n = 33;
    if (with_iend) {
        static const uint8_t idat[8] = {0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00};
        n += put_chunk(buf + n, "IDAT", idat, sizeof idat);
        n += put_chunk(buf + n, "IEND", NULL, 0);
    }
    return n;
}

TEST(image_refuses_bad_files)
{
    size_t pn, jn;
    unsigned char *png = read_bytes(ref_path("chelsea_crop.png"), &pn);
    unsigned char *jpg = read_bytes(ref_path("coffee_crop.jpg"), &jn);
    CHECK(png && jpg);
    if (!png || !jpg) {
        free(png), free(jpg);
        return;
    }
    optvq_image_u8 u;
    optvq_image_f32 f;
    const char *p;

    p = tmp_path("trunc_half.png");
    write_bytes(p, png, pn / 2);
    check_refused(optvq_image_read_u8(p, 3, &u), p, "PNG cut in half");
    check_refused(optvq_image_read(p, 3, &f), p, "PNG cut in half (float)");
    p = tmp_path("trunc_40.png");
    write_bytes(p, png, 40);
    check_refused(optvq_image_read_u8(p, 3, &u), p, "PNG cut after 40 bytes");
    p = tmp_path("trunc_noiend.png");
    write_bytes(p, png, pn - 12);
    check_refused(optvq_image_read_u8(p, 3, &u), p, "PNG without IEND");
    p = tmp_path("corrupt.png");
    unsigned char *bad = malloc(pn);
    memcpy(bad, png, pn);
    for (size_t i = pn / 3; i < pn / 3 + 64; i++)
        bad[i] ^= 0x5A;
    write_bytes(p, bad, pn);
    check_refused(optvq_image_read_u8(p, 3, &u), p, "PNG with flipped bytes");
    free(bad);

    p = tmp_path("trunc_half.jpg");
    write_bytes(p, jpg, jn / 2);
    check_refused(optvq_image_read_u8(p, 3, &u), p, "JPEG cut in half");
    p = tmp_path("trunc_10.jpg");
    write_bytes(p, jpg, 10);
    check_refused(optvq_image_read_u8(p, 3, &u), p, "JPEG cut after 10 bytes");
    p = tmp_path("corrupt.jpg");
    bad = malloc(jn);
    memcpy(bad, jpg, jn);
    for (size_t i = 2; i < 400 && i < jn; i++)
        bad[i] = (uint8_t)(i * 7);
    bad[2] = 0xFF;
    write_bytes(p, bad, jn);
    check_refused(optvq_image_read_u8(p, 3, &u), p, "JPEG with garbage header");
    free(bad);

    p = tmp_path("text.png");
    write_bytes(p, "hello, not an image\n", 20);
    check_refused(optvq_image_read_u8(p, 3, &u), p, "text file named .png");
    p = tmp_path("empty.jpg");
    write_bytes(p, "", 0);
    check_refused(optvq_image_read_u8(p, 3, &u), p, "empty file");
    p = tmp_path("missing.png");
    check_refused(optvq_image_read_u8(p, 3, &u), p, "missing file");
    CHECK(optvq_image_read_u8(p, 3, &u) == OPTVQ_ERR_IO);
    p = test_tmp_dir();
    check_refused(optvq_image_read_u8(p, 3, &u), p, "a folder");

    uint8_t hdr[64];
    static const struct { uint32_t w, h; const char *what; } absurd[] = {
        {1000000, 1000000, "PNG 1e6 x 1e6 header"},
        {40000, 10, "PNG 40000 x 10 header"},
        {30000, 30000, "PNG 30000 x 30000 header"},
        {0x7FFFFFFF, 1, "PNG 2^31-1 wide header"},
        {0, 5, "PNG zero-width header"}};
    for (int i = 0; i < 5; i++) {
        size_t n = craft_header(hdr, absurd[i].w, absurd[i].h, 1);
        p = tmp_path("absurd.png");
        write_bytes(p, hdr, n);
        optvq_status st = optvq_image_read_u8(p, 3, &u);
        check_refused(st, p, absurd[i].what);
        CHECK(st == OPTVQ_ERR_FORMAT);
    }
    /* a plausible header with too little image data */
    size_t n = craft_header(hdr, 64, 64, 1);
    p = tmp_path("nodata.png");
    write_bytes(p, hdr, n);
    check_refused(optvq_image_read_u8(p, 3, &u), p, "PNG with too little IDAT");
    /* JPEG headers (SOF0 + SOS) announcing absurd sizes */
    static const uint16_t jdims[3][2] = {{40000, 40000}, {30000, 30000}, {65535, 65535}};
    for (int i = 0; i < 3; i++) {
        uint8_t j[64] = {0xFF, 0xD8, 0xFF, 0xC0, 0, 11, 8};
        j[7] = (uint8_t)(jdims[i][0] >> 8), j[8] = (uint8_t)jdims[i][0];
        j[9] = (uint8_t)(jdims[i][1] >> 8), j[10] = (uint8_t)jdims[i][1];
        j[11] = 1, j[12] = 1, j[13] = 0x11, j[14] = 0;
        static const uint8_t sos[] = {0xFF, 0xDA, 0, 8, 1, 1, 0x00, 0, 63, 0, 0x12, 0x34, 0xFF, 0xD9};
        memcpy(j + 15, sos, sizeof sos);
        p = tmp_path("absurd.jpg");
        write_bytes(p, j, 15 + sizeof sos);
        char what[64];
        snprintf(what, sizeof what, "JPEG %u x %u header", jdims[i][0], jdims[i][1]);
        check_refused(optvq_image_read_u8(p, 3, &u), p, what);
    }
    /* the whole preprocessing path also refuses, naming the file */
    float out[3 * 8 * 8];
    p = tmp_path("trunc_half.jpg");
    check_refused(optvq_image_load_val(p, 8, 3, out), p, "load_val on a truncated JPEG");
    free(png), free(jpg);
}

/* ---- folders ----------------------------------------------------------------------------- */

TEST(image_list_folder)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/listing", test_tmp_dir());
    mkdir(dir, 0755);
    const char *files[] = {"b.PNG", "a.jpg", "c.jpeg", "notes.txt", "e.JPG", "png", "d.Jpeg",
                           "10.png", "2.png", ".hidden.png"};
    for (int i = 0; i < 10; i++) {
        char p[700];
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        write_bytes(p, "x", 1);
    }
    char sub[700];
    snprintf(sub, sizeof sub, "%s/f.png", dir); /* a folder named like an image */
    mkdir(sub, 0755);
    char **paths;
    int64_t count;
    CHECK_OK(optvq_image_list_folder(dir, &paths, &count));
    const char *want[] = {"10.png", "2.png", "a.jpg", "b.PNG", "c.jpeg", "d.Jpeg", "e.JPG"};
    CHECK(count == 7);
    for (int64_t i = 0; i < count && i < 7; i++) {
        char p[700];
        snprintf(p, sizeof p, "%s/%s", dir, want[i]);
        CHECK_MSG(strcmp(paths[i], p) == 0, "entry %lld: %s, want %s", (long long)i, paths[i], p);
    }
    optvq_image_list_free(paths, count);
    char empty[700];
    snprintf(empty, sizeof empty, "%s/empty", dir);
    mkdir(empty, 0755);
    CHECK_OK(optvq_image_list_folder(empty, &paths, &count));
    CHECK(count == 0 && paths == NULL);
    snprintf(empty, sizeof empty, "%s/missing", dir);
    check_refused(optvq_image_list_folder(empty, &paths, &count), empty, "missing folder");
}

/* ---- IDX and the plain preprocessing -------------------------------------------------------- */

TEST(image_plain_preprocess_fmnist)
{
    optvq_image_u8 strip; /* 8 images of 28x28 stacked vertically */
    optvq_status st = optvq_image_read_u8(ref_path("fmnist8.png"), 1, &strip);
    if (st != OPTVQ_OK) {
        printf("    note: %s missing (Fashion-MNIST not installed when generating); skipped\n",
               ref_path("fmnist8.png"));
        return;
    }
    optvq_array ref;
    CHECK_OK(optvq_npy_read(ref_path("fmnist8_plain32.npy"), &ref));
    CHECK(ref.ndim == 4 && ref.shape[0] == 8 && ref.shape[1] == 1 && ref.shape[2] == 32 &&
          ref.shape[3] == 32);
    int oh, ow;
    optvq_image_plain_dims(28, 28, 32, &oh, &ow);
    CHECK(oh == 32 && ow == 32);
    optvq_image_plain_dims(28, 40, 32, &oh, &ow);
    CHECK(oh == 32 && ow == 45); /* int(32 * 40 / 28) = int(45.7) */
    float *got = malloc(sizeof(float) * 8 * 32 * 32);
    for (int i = 0; i < 8; i++) {
        optvq_image_u8 one = {28, 28, 1, strip.data + i * 28 * 28, 0};
        CHECK_OK(optvq_image_plain_preprocess(&one, 32, got + i * 32 * 32));
    }
    if (ref.data) {
        test_diff d = test_compare("plain 28 -> 32 (torchvision)", got, ref.data, 8 * 32 * 32);
        CHECK(d.max_abs <= 1e-6);
    }
    /* the same images straight from the Debian package's IDX file */
    char path[256];
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte.gz", FMNIST_DIR);
    if (access(path, R_OK) == 0) {
        optvq_idx idx;
        CHECK_OK(optvq_idx_read_images(path, 8, &idx));
        CHECK(idx.ndim == 3 && idx.dims[0] == 8 && idx.dims[1] == 28 && idx.dims[2] == 28);
        CHECK(idx.data && memcmp(idx.data, strip.data, 8 * 28 * 28) == 0);
        optvq_idx_free(&idx);
    }
    free(got);
    optvq_array_free(&ref);
    optvq_image_u8_free(&strip);
}

TEST(image_idx_fashion_mnist)
{
    char images[256], labels[256];
    snprintf(images, sizeof images, "%s/t10k-images-idx3-ubyte.gz", FMNIST_DIR);
    snprintf(labels, sizeof labels, "%s/t10k-labels-idx1-ubyte.gz", FMNIST_DIR);
    if (access(images, R_OK) != 0 || access(labels, R_OK) != 0) {
        printf("    note: %s not found (Debian package dataset-fashion-mnist); skipped\n", images);
        return;
    }
    optvq_idx im, lb;
    CHECK_OK(optvq_idx_read_images(images, 0, &im));
    CHECK_OK(optvq_idx_read_labels(labels, 0, &lb));
    CHECK(im.ndim == 3 && im.dims[0] == 10000 && im.dims[1] == 28 && im.dims[2] == 28);
    CHECK(lb.ndim == 1 && lb.dims[0] == 10000);
    if (im.data && lb.data) {
        int64_t hist[10] = {0}, bad = 0;
        for (int64_t i = 0; i < lb.dims[0]; i++) {
            if (lb.data[i] < 10)
                hist[lb.data[i]]++;
            else
                bad++;
        }
        CHECK(bad == 0);
        for (int k = 0; k < 10; k++)
            CHECK(hist[k] == 1000);
        printf("    t10k: %lld images %lldx%lld, labels 0..9 x 1000, first label %d\n",
               (long long)im.dims[0], (long long)im.dims[1], (long long)im.dims[2], lb.data[0]);
        CHECK(lb.data[0] == 9); /* ankle boot */
        optvq_image_u8 v = optvq_idx_image(&im, 9999);
        CHECK(v.width == 28 && v.height == 28 && v.data == im.data + 9999 * 784);
    }
    /* a label file is not an image file */
    optvq_idx x;
    check_refused(optvq_idx_read_images(labels, 0, &x), labels, "labels read as images");
    optvq_idx_free(&im);
    optvq_idx_free(&lb);
}

static void write_gz(const char *path, const void *data, size_t n)
{
    gzFile gz = gzopen(path, "wb");
    if (gz) {
        if (n)
            gzwrite(gz, data, (unsigned)n);
        gzclose(gz);
    }
}

TEST(image_idx_refuses_bad_files)
{
    uint8_t buf[16 + 2 * 3 * 3 + 8];
    memset(buf, 0, sizeof buf);
    buf[2] = 0x08, buf[3] = 3;
    put_be32(buf + 4, 2), put_be32(buf + 8, 3), put_be32(buf + 12, 3);
    for (int i = 0; i < 18; i++)
        buf[16 + i] = (uint8_t)i;
    optvq_idx idx;
    /* the good file, plain and gzip'd */
    const char *p = tmp_path("good.idx");
    write_bytes(p, buf, 34);
    CHECK_OK(optvq_idx_read_images(p, 0, &idx));
    CHECK(idx.dims[0] == 2 && idx.data && idx.data[17] == 17);
    optvq_idx_free(&idx);
    p = tmp_path("good.idx.gz");
    write_gz(p, buf, 34);
    CHECK_OK(optvq_idx_read_images(p, 0, &idx));
    CHECK(idx.dims[0] == 2 && idx.data && idx.data[17] == 17);
    optvq_idx_free(&idx);
    CHECK_OK(optvq_idx_read_images(p, 1, &idx));
    CHECK(idx.dims[0] == 1);
    optvq_idx_free(&idx);

    struct { const char *name, *what; size_t len; int patch_at; uint8_t patch; int gz; } cases[] = {
        {"magic.idx", "bad magic", 34, 0, 0x01, 0},
        {"type.idx", "float element type", 34, 2, 0x0D, 0},
        {"ndim0.idx", "0 dimensions", 34, 3, 0, 0},
        {"ndim4.idx", "4 dimensions", 34, 3, 4, 0},
        {"zerodim.idx", "a zero dimension", 34, 11, 0, 0},
        {"trunc.idx", "truncated data", 30, -1, 0, 0},
        {"trunc.idx.gz", "truncated data (gzip)", 30, -1, 0, 1},
        {"long.idx", "trailing bytes", 38, -1, 0, 0},
        {"long.idx.gz", "trailing bytes (gzip)", 38, -1, 0, 1},
        {"header.idx", "header only", 10, -1, 0, 0},
        {"tiny.idx", "3 bytes", 3, -1, 0, 0},
        {"empty.idx", "empty file", 0, -1, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t b[sizeof buf];
        memcpy(b, buf, sizeof buf);
        if (cases[i].patch_at >= 0)
            b[cases[i].patch_at] = cases[i].patch;
        p = tmp_path(cases[i].name);
        if (cases[i].gz)
            write_gz(p, b, cases[i].len);
        else
            write_bytes(p, b, cases[i].len);
        check_refused(optvq_idx_read_images(p, 0, &idx), p, cases[i].what);
        CHECK(idx.data == NULL);
    }
    /* absurd dimensions: refused before allocating */
    uint8_t huge[16] = {0, 0, 8, 3};
    put_be32(huge + 4, 0x7FFFFFFF), put_be32(huge + 8, 0x7FFFFFFF), put_be32(huge + 12, 28);
    p = tmp_path("huge.idx");
    write_bytes(p, huge, 16);
    check_refused(optvq_idx_read_images(p, 0, &idx), p, "2^31 x 2^31 x 28 header");
    /* a gzip stream whose compressed data is garbage */
    size_t gn;
    p = tmp_path("good.idx.gz");
    unsigned char *gzb = read_bytes(p, &gn);
    if (gzb && gn > 20) {
        for (size_t i = 10; i < gn - 8; i++)
            gzb[i] ^= 0xA5;
        p = tmp_path("garbage.idx.gz");
        write_bytes(p, gzb, gn);
        check_refused(optvq_idx_read_images(p, 0, &idx), p, "corrupt gzip stream");
    }
    free(gzb);
    p = tmp_path("missing.idx.gz");
    check_refused(optvq_idx_read_images(p, 0, &idx), p, "missing file");
    /* a 1-dimensional file is labels, not images, and the other way round */
    p = tmp_path("good.idx");
    check_refused(optvq_idx_read_labels(p, 0, &idx), p, "images read as labels");
}
