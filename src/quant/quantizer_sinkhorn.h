/* Changing a live quantizer's Sinkhorn settings (internal: 'optvq serve'
 * lets the page switch them per request on a loaded model). */
#ifndef OPTVQ_QUANT_QUANTIZER_SINKHORN_H
#define OPTVQ_QUANT_QUANTIZER_SINKHORN_H
#include "optvq/optvq.h"

/* Sets the normalisation, epsilon (finite, > 0) and iterations (>= 1) used
 * by the next forward; the assignment itself is optvq_quantizer_set_assign. */
optvq_status quantizer_set_sinkhorn(optvq_quantizer *q, optvq_normalize mode, float epsilon, int n_iters);

#endif
