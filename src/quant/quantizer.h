/* Internal additions to the public quantizer (optvq/optvq.h). */
#ifndef OPTVQ_QUANT_QUANTIZER_H
#define OPTVQ_QUANT_QUANTIZER_H
#include "optvq/optvq.h"

/* Sets the Sinkhorn reduction hook after creation (a model's quantizer is
 * created from its config; data-parallel training adds the group's hook).
 * NULL: one process. */
void quantizer_set_allreduce(optvq_quantizer *q, optvq_allreduce_fn allreduce, void *ctx);

#endif
