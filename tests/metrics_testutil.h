/* Shared by the LPIPS-Alex and FID tests: reference files and the generator's
 * fill rules (tools/gen_fid_lpips_ref.py's det_fill). */
#ifndef OPTVQ_TESTS_METRICS_TESTUTIL_H
#define OPTVQ_TESTS_METRICS_TESTUTIL_H
#include <stdint.h>

#include "nn/nn.h"
#include "optvq/optvq.h"

/* tests/ref/<rel> as `want` (F32 converts), NULL on failure (message printed);
 * *n (may be NULL) receives the element count, shape (may be NULL) the shape. */
void *mt_load_npy(const char *rel, optvq_dtype want, int64_t *n, int64_t *shape);
/* Fills every parameter of ps from det_uniform(name) by the generator's rules. */
void mt_det_fill(nn_params *ps);
/* Checks that every parameter of ps appears in tests/ref/<keys_rel> with its shape,
 * and that every key there is a parameter unless `ignored` says so. */
typedef int (*mt_ignored)(const char *name);
void mt_check_keys(const nn_params *ps, const char *keys_rel, mt_ignored ignored);
/* u8 (n, 3, h, w) -> float32 / 255 */
float *mt_u8_to_unit(const unsigned char *u8, int64_t n);

#endif
