/* The image decoding entry points and their consumers, shared by fuzz_png.c
 * and fuzz_jpeg.c (both go through optvq_image_read_u8 / optvq_image_read,
 * which recognise the format by content). */
#ifndef OPTVQ_FUZZ_IMAGE_COMMON_H
#define OPTVQ_FUZZ_IMAGE_COMMON_H
#include "fuzz_common.h"
#include "io/image.h"

static int fuzz_image(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file(data, size);
    int channels = (size & 1) ? 1 : 3;
    optvq_image_u8 u;
    optvq_status st = optvq_image_read_u8(path, channels, &u);
    if (st != OPTVQ_OK) {
        fuzz_check_error(st);
        if (u.data)
            abort();
        return 0;
    }
    if (u.channels != channels || u.width < 1 || u.height < 1)
        abort();
    volatile uint8_t s = 0;
    for (size_t i = 0; i < (size_t)u.width * u.height * u.channels; i++)
        s ^= u.data[i];
    (void)s;
    optvq_image_f32 f;
    st = optvq_image_read(path, 4 - channels, &f);
    if (st != OPTVQ_OK) {
        fprintf(stderr, "fuzz: decodes as 8-bit but not as float: %s\n", optvq_last_error());
        abort();
    }
    if (f.width != u.width || f.height != u.height)
        abort();
    for (size_t i = 0; i < (size_t)f.width * f.height * f.channels; i++)
        if (!(f.data[i] >= 0.0f && f.data[i] <= 1.0f))
            abort();
    optvq_image_f32_free(&f);
    if ((int64_t)u.width * u.height <= (1 << 16)) { /* the reference's pipelines, on small images */
        float chw[3 * 16 * 16];
        st = optvq_image_preprocess_val(&u, 16, chw);
        if (st != OPTVQ_OK)
            fuzz_check_error(st);
        else
            fuzz_touch_floats(chw, (int64_t)channels * 16 * 16);
        optvq_rng rng;
        optvq_rng_seed(&rng, size);
        st = optvq_image_preprocess_train(&u, 8, &rng, chw);
        if (st != OPTVQ_OK)
            fuzz_check_error(st);
        int oh, ow;
        optvq_image_plain_dims(u.height, u.width, 8, &oh, &ow);
        if ((int64_t)oh * ow <= (1 << 16)) {
            float *p = malloc((size_t)channels * oh * ow * sizeof *p);
            st = optvq_image_plain_preprocess(&u, 8, p);
            if (st != OPTVQ_OK)
                fuzz_check_error(st);
            free(p);
        }
    }
    optvq_image_u8_free(&u);
    return 1;
}

#endif
