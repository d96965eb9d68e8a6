/* libFuzzer target: JPEG decoding (optvq_image_read_u8, optvq_image_read) and the
 * reference's preprocessing pipelines on the decoded image. */
#include "fuzz_image_common.h"

int fuzz_jpeg(const uint8_t *data, size_t size) { return fuzz_image(data, size); }

#ifndef OPTVQ_FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_jpeg(data, size);
    return 0;
}
#endif
