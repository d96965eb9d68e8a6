/* Internal entry points of the model module (the public ones are in optvq.h). */
#ifndef OPTVQ_MODEL_VQMODEL_H
#define OPTVQ_MODEL_VQMODEL_H
#include "model/model.h"

optvq_status model_create_from_config(const model_config *cfg, uint64_t seed, optvq_model **out);
/* PyTorch's default initialisation of every non-quantizer parameter, by role. */
void model_init_params(optvq_model *m, uint64_t seed);
/* Strict load by name (see io/weights.h) / save as safetensors. */
optvq_status model_load_weights(optvq_model *m, const char *path);
optvq_status model_save_weights(optvq_model *m, const char *path);
/* latent (B, e_dim, lh, lw) -> images, after a prepare of the same shape. */
optvq_status model_decode_latent(optvq_model *m, const float *latent, int64_t batch, int64_t lh, int64_t lw,
                                 float *images);

/* images -> the quantizer input z (B, e_dim, H/f, W/f) (after quant_conv). */
optvq_status model_encoder_forward(optvq_model *m, const float *images, int64_t batch, int64_t height,
                                   int64_t width, float *z);
/* The model's one registry: encoder.*, decoder.*, the connectors, then
 * quantize.* (aliases of the quantizer's buffers, outside the registry's
 * data / grad blocks), each with its declared role and group
 * (model/graph.h). Load, save, the optimizer and info read it. */
nn_params *model_params(optvq_model *m);
/* The encoder graph (decoder 0) or the decoder graph (decoder 1). */
struct graph;
const struct graph *model_graph(const optvq_model *m, int decoder);
const model_config *model_get_config(const optvq_model *m);
nn_workspace *model_workspace(optvq_model *m);

#endif
