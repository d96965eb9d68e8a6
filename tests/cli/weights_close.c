/* weights_close A B [TOL]: every tensor of A is in B with the same shape and
 * max |a - b| <= TOL * max(1, max |b|) (TOL 1e-4 by default; tensors named
 * optimizer.* are skipped: Adam's second moments amplify rounding). Prints the
 * worst tensor; exit 0 when close, 1 when not, 2 on a read error. For the
 * data-parallel tests: N ranks and one process differ by float summation
 * order only. */
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
    double worst = 0;
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
        double err = 0, scale = 1;
        for (int64_t k = 0; k < ta->numel; k++) {
            double e = fabs((double)ta->data[k] - tb->data[k]);
            if (e > err || isnan(e))
                err = e;
            if (fabs(tb->data[k]) > scale)
                scale = fabs(tb->data[k]);
        }
        double rel = err / scale;
        if (!(rel <= worst)) {
            worst = rel;
            worst_name = ta->name;
        }
        if (!(rel <= tol))
            bad = 1;
        compared++;
    }
    printf("weights_close: %lld tensors, worst %s relative error %.3g (tolerance %g)\n", (long long)compared,
           worst_name, worst, tol);
    optvq_weights_free(a);
    optvq_weights_free(b);
    return bad || compared == 0;
}
