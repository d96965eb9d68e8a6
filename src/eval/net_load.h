/* Strict loading of a frozen network's parameters (an nn_params registry) from
 * one or more weight files, by name (internal; used by LPIPS-Alex and the FID
 * Inception).
 *
 * Each parameter is looked up under its own name and, when the caller's
 * `alias` callback gives one, an alternative name (e.g. lpips's
 * "net.slice1.0.weight" for torchvision's "features.0.weight"). Names may carry
 * a common prefix: a file tensor matches when its name equals the wanted one or
 * ends with "." + the wanted one. The first name (own, then alias) that matches
 * anything wins; two matches for it are an error (ambiguous). Every parameter
 * must be found with exactly its shape and finite values; other tensors in the
 * files (classifier heads, num_batches_tracked, ...) are ignored. */
#ifndef OPTVQ_EVAL_NET_LOAD_H
#define OPTVQ_EVAL_NET_LOAD_H
#include <stddef.h>

#include "nn/nn.h"
#include "optvq/optvq.h"

/* Writes the alternative name of parameter `name` into buf, or "" for none. */
typedef void (*net_load_alias)(const char *name, char *buf, size_t cap);

/* `what` prefixes the messages ("lpips-alex", "fid"). 1..8 files. */
optvq_status net_load_params(nn_params *ps, const char *const *paths, int n_paths, net_load_alias alias,
                             const char *what);

#endif
