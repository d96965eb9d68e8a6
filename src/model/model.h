/* OptVQ models: VQModel = encoder -> quant_conv -> quantizer -> post_quant_conv
 * -> decoder, with the plain CNN (MNIST/CIFAR-10 configs) or the taming VQGAN
 * encoder/decoder (ImageNet configs). Parameter names are the PyTorch
 * state-dict names (docs/behaviour.md §2). */
#ifndef OPTVQ_MODEL_MODEL_H
#define OPTVQ_MODEL_MODEL_H
#include "nn/nn.h"
#include "optvq/optvq.h"

#define MODEL_MAX_LEVELS 8

typedef enum model_arch { ARCH_PLAIN_CNN = 0, ARCH_TAMING = 1 } model_arch;

/* One encoder or decoder. */
typedef struct coder_config {
    model_arch arch;
    int64_t in_channels, out_channels; /* images: in for the encoder, out for the decoder */
    /* taming only */
    int64_t ch, z_channels, resolution, num_res_blocks;
    int64_t ch_mult[MODEL_MAX_LEVELS];
    int n_levels;
    int64_t attn_resolutions[MODEL_MAX_LEVELS];
    int n_attn;
    int double_z;
} coder_config;

/* The training section of a reference YAML (train:, data:, the loss params). */
typedef struct train_settings {
    int64_t epochs, seed, batch_size;
    double learning_rate;     /* per sample: lr = learning_rate * total batch */
    double mul_learning_rate; /* the quantizer's lr multiplier               */
    double weight_decay;
    char use_initiate[16];    /* "kmeans", "random" or "" (N(0,1) default)   */
    char enterpoint[1024];    /* start from this checkpoint's weights ("": none) */
    char code_path[1024];     /* start from this codebook file ("": none)     */
    char dataset[64];         /* "fashion-mnist", "" (give --data) or a path */
    int64_t resize;           /* data.*.transform resize (32)                */
    double loss_l1, loss_l2, loss_q, loss_p;
    /* AELossWithDisc (the ImageNet configs): PatchGAN + adaptive weight */
    int use_disc;                    /* the loss target is AELossWithDisc     */
    double loss_g, loss_d;           /* loss_g_weight, loss_d_weight          */
    int64_t disc_start;              /* steps before the generator loss counts */
    int64_t disc_in_channels, disc_num_layers, disc_ndf;
    int disc_vanilla;                /* disc_loss: hinge (0) or vanilla (1)   */
} train_settings;

typedef struct model_config {
    coder_config encoder, decoder;
    optvq_quantizer_config quantize;
    int use_connector;
    train_settings train;
} model_config;

/* Parses a reference YAML config (the model.autoencoder section, target/params
 * form) or a Hugging Face VQModelHF config.json, chosen by content. */
optvq_status model_config_load(const char *path, model_config *out);
/* The same from text already in memory (`what` names it in messages). */
optvq_status model_config_parse(const char *text, size_t len, const char *what, model_config *out);
/* Writes the Hugging Face config.json form (atomically). */
optvq_status model_config_save_json(const model_config *c, const char *path);

/* Channels of the encoder output / decoder input (hidden_dim in the reference). */
int64_t coder_hidden_dim(const coder_config *c, int is_encoder);
/* Spatial downsampling factor of the encoder (8 for taming [1,1,2,2,4]... i.e. 2^(levels-1); 4 for plain). */
int64_t coder_downsample(const coder_config *c);

#endif
