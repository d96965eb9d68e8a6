/* weights_close A B [TOL]: every tensor of A is in B with the same shape,
 * and over all of them together ||a - b|| <= TOL ||b|| (L2, TOL 1e-4 by
 * default; tensors named optimizer.* are skipped). Prints that relative
 * error and the tensor with the largest relative L2 error; exit 0 when close,
 * 1 when not, 2 on a read error. For the data-parallel tests: N ranks and one
 * process differ by float summation order only. Why not element by element:
 * a parameter whose true gradient is 0 (a conv bias right before a norm)
 * receives rounding noise, which Adam's first steps turn into +-lr moves of
 * either sign; such elements differ by up to 2 lr whatever the build, while
 * they weigh nothing in the whole. */
#include "io/weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: weights_close A B [TOL]\n");
        return 2;
    }
    const double tol = argc == 4 ? atof(argv[3]) : 1e-4;
    optvq_weights *a = NULL, *b = NULL;
    if (optvq_weights_load(argv[1], &a) != OPTVQ_OK || optvq_weights_load(argv[2], &b) != OPTVQ_OK) {
        fprintf(stderr, "weights_close: %s\n", optvq_last_error());
        return 2;
    }
    double worst = 0, diff2 = 0, ref2 = 0;
    const char *worst_name = "";
    int bad = 0;
    int64_t compared = 0;
    for (int64_t i = 0; i < optvq_weights_count(a); i++) {
        const optvq_tensor *ta = optvq_weights_get(a, i);
        if (!strncmp(ta->name, "optimizer.", 10))
            continue;
        const optvq_tensor *tb = optvq_weights_find(b, ta->name);
        if (!tb || tb->numel != ta->numel) {
            fprintf(stderr, "weights_close: %s: missing or another size in %s\n", ta->name, argv[2]);
            bad = 1;
            continue;
        }
        double d2 = 0, r2 = 0;
        for (int64_t k = 0; k < ta->numel; k++) {
            double e = (double)ta->data[k] - tb->data[k];
            d2 += e * e;
            r2 += (double)tb->data[k] * tb->data[k];
        }
        double rel = r2 > 0 ? sqrt(d2 / r2) : sqrt(d2);
        if (!(rel <= worst)) {
            worst = rel;
            worst_name = ta->name;
        }
        diff2 += d2;
        ref2 += r2;
        compared++;
    }
    const double total = ref2 > 0 ? sqrt(diff2 / ref2) : sqrt(diff2);
    if (!(total <= tol))
        bad = 1;
    printf("weights_close: %lld tensors, relative L2 error %.3g (tolerance %g); worst tensor %s %.3g\n",
           (long long)compared, total, tol, worst_name, worst);
    optvq_weights_free(a);
    optvq_weights_free(b);
    return bad || compared == 0;
}
