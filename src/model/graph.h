/* One definition of each architecture (the taming VQGAN encoder/decoder and
 * the plain CNN) as a chain of blocks (model/blocks.h), built from the
 * config. The same chain
 *   registers every parameter, with its state-dict name and role,
 *   runs inference: activations ping-pong between two buffers plus scratch,
 *   runs training: every activation and block state saved, then backward
 *   over the blocks in reverse order,
 * and one planner sizes the memory of both.
 *
 * A model has two graphs: the encoder (then quant_conv) up to the quantizer
 * input, and (post_quant_conv then) the decoder from the quantizer output. */
#ifndef OPTVQ_MODEL_GRAPH_H
#define OPTVQ_MODEL_GRAPH_H
#include "model/blocks.h"
#include "model/model.h"

/* nn_param.group of the model's parameters: the part that owns each. */
enum { MODEL_GROUP_ENCODER = 1, MODEL_GROUP_DECODER, MODEL_GROUP_CONNECTOR, MODEL_GROUP_QUANTIZER };

typedef struct graph {
    block *blocks;
    int n, cap;
} graph;

/* Registers the encoder's, the decoder's, then the connectors' parameters
 * into p (in the reference's state-dict order) and builds both graphs. */
optvq_status graph_build_model(const model_config *c, nn_params *p, graph *enc, graph *dec);
/* Points every block at its parameters (after nn_params_finalize). */
void graph_bind(graph *g, const nn_params *p);
void graph_free(graph *g);

/* What running a graph needs, summed or maxed over its blocks (floats). */
typedef struct graph_need {
    size_t ws;          /* nn workspace                                        */
    size_t ws_infer;    /* nn workspace of an inference run (its own paths)    */
    size_t act_max;     /* the largest activation, input and output included   */
    size_t scratch;     /* per scratch buffer                                  */
    int scratch_infer;  /* scratch buffers for inference                       */
    int scratch_train;  /* scratch buffers for training                        */
    size_t train;       /* training: every activation and saved state, aligned */
} graph_need;

/* One execution of a graph: its shapes and where its activations live. */
typedef struct graph_run {
    const graph *g;
    block_shape *dims; /* n + 1: dims[i] the input of block i, dims[n] the output     */
    float **act;       /* n + 1: act[i] the input of block i, act[n] the output         */
    float **saved;     /* n: block i's training state; all NULL in inference            */
    size_t *saved_floats; /* n: the size of that state (graph_plan)                    */
    /* inference only: the convolutions' precision and derived weights
     * (nn/conv_infer.h); NULL (training) keeps conv2d's own paths */
    struct nn_conv_cache *conv;
} graph_run;

optvq_status graph_run_init(graph_run *r, const graph *g);
void graph_run_free(graph_run *r);
/* Shapes from input `in` through the graph; what it needs is folded into
 * *need (maxima and sums, so one need can serve several graphs). */
optvq_status graph_plan(graph_run *r, block_shape in, graph_need *need);
/* Inference: act[0] = x, then alternately a and b, act[n] = out (NULL: the
 * alternate buffer); no saved state. */
void graph_layout_inference(graph_run *r, const float *x, float *a, float *b, float *out);
/* Training: carves every activation and saved state out of *p (advanced by
 * what graph_plan counted in train for this graph). */
void graph_layout_training(graph_run *r, float **p);

/* Runs the blocks in order, act[i] -> act[i + 1]. scratch: the planned
 * number of buffers (scratch_infer without saved state, else scratch_train). */
optvq_status graph_forward(const graph_run *r, float *const *scratch, nn_workspace *ws);
/* Backward over the blocks in reverse order after a training forward. dy:
 * gradient of the output (overwritten, blocks use it as scratch); spare: a
 * second buffer of act_max. Parameter gradients +=. *dx_out receives the
 * gradient of the input (one of the two buffers) when want_dx, else NULL. */
optvq_status graph_backward(const graph_run *r, float *dy, float *spare, int want_dx, float **dx_out,
                            float *const *scratch, nn_workspace *ws);

#endif
