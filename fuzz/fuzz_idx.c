/* libFuzzer target: IDX files (MNIST), plain or gzip (optvq_idx_read and the
 * images/labels variants, whole and the first items), and their consumers:
 * image views and the reference's plain preprocessing. */
#include "fuzz_common.h"
#include "io/image.h"

static void idx_consume(const optvq_idx *x)
{
    int64_t n = 1;
    for (int i = 0; i < x->ndim; i++)
        n *= x->dims[i];
    volatile uint8_t s = 0;
    for (int64_t i = 0; i < n; i++)
        s ^= x->data[i];
    (void)s;
}

int fuzz_idx(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file(data, size);
    int64_t max_items = size % 3 == 0 ? 0 : (int64_t)(size % 7);
    optvq_idx x;
    optvq_status st = optvq_idx_read(path, max_items, &x);
    if (st != OPTVQ_OK) {
        fuzz_check_error(st);
        if (x.data)
            abort();
        return 0;
    }
    idx_consume(&x);
    optvq_idx_free(&x);

    st = optvq_idx_read_labels(path, max_items, &x);
    if (st != OPTVQ_OK)
        fuzz_check_error(st);
    else
        optvq_idx_free(&x);

    st = optvq_idx_read_images(path, max_items, &x);
    if (st != OPTVQ_OK) {
        fuzz_check_error(st);
        return 1;
    }
    idx_consume(&x);
    int64_t count = x.dims[0] < 4 ? x.dims[0] : 4;
    for (int64_t i = 0; i < count; i++) {
        optvq_image_u8 img = optvq_idx_image(&x, i);
        if ((int64_t)img.width * img.height > (1 << 16))
            break;
        int oh, ow;
        optvq_image_plain_dims(img.height, img.width, 8, &oh, &ow);
        if ((int64_t)oh * ow > (1 << 20))
            break;
        float *chw = malloc((size_t)oh * (size_t)ow * sizeof *chw);
        st = optvq_image_plain_preprocess(&img, 8, chw);
        if (st != OPTVQ_OK)
            fuzz_check_error(st);
        else
            fuzz_touch_floats(chw, (int64_t)oh * ow);
        free(chw);
    }
    optvq_idx_free(&x);
    return 1;
}

#ifndef OPTVQ_FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_idx(data, size);
    return 0;
}
#endif
