/* A model folder (config.json + model.safetensors) with PyTorch's default
 * initialisation, for bench/serve_bench.sh: serve an architecture without
 * downloading its weights.   serve_random_model CONFIG.yaml OUT_DIR [SEED] */
#include <optvq/optvq.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: serve_random_model CONFIG.yaml OUT_DIR [SEED]\n");
        return 2;
    }
    optvq_model *m = NULL;
    if (optvq_model_create(argv[1], argc > 3 ? strtoull(argv[3], NULL, 10) : 0, &m) != OPTVQ_OK ||
        optvq_model_save(m, argv[2]) != OPTVQ_OK) {
        fprintf(stderr, "serve_random_model: %s\n", optvq_last_error());
        optvq_model_free(m);
        return 1;
    }
    optvq_model_free(m);
    return 0;
}
