/* libFuzzer target: safetensors reading (optvq_weights_load_safetensors,
 * and optvq_weights_load's format detection) and the store's consumers. */
#include "fuzz_weights_common.h"

int fuzz_safetensors(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file(data, size);
    optvq_weights *w = NULL;
    optvq_status st = (size & 1) ? optvq_weights_load(path, &w) : optvq_weights_load_safetensors(path, &w);
    if (st != OPTVQ_OK) {
        fuzz_check_error(st);
        if (w)
            abort();
        return 0;
    }
    weights_consume(w);
    optvq_weights_free(w);
    return 1;
}

#ifndef OPTVQ_FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_safetensors(data, size);
    return 0;
}
#endif
