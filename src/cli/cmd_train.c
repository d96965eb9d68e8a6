/* optvq train: the reference's training recipe (AELoss, or AELossWithDisc with
 * LPIPS and the PatchGAN), with checkpoints that resume to the same weights. */
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/train_run.h"

#include <stdio.h>
#include <string.h>

static const char *const HELP =
    "usage: optvq train --config CFG --out RUN_DIR [options]\n"
    "\n"
    "Trains a VQModel with the reference's recipe: AdamW (betas 0.9/0.999, eps 1e-7,\n"
    "weight decay on conv/linear weights only), lr = learning_rate x batch size,\n"
    "OneCycleLR (pct_start 0.01, cosine, beta1 cycling 0.95 -> 0.85), gradient-norm\n"
    "clipping at 1.0, loss = l1 + l2 + q (the config's AELoss weights). The codebook\n"
    "starts from the config's train.use_initiate: kmeans or random selection of\n"
    "encoder features (code_dim chunks), or N(0,1).\n"
    "With loss_p_weight > 0 the loss adds LPIPS (VGG16, weights from --lpips); with\n"
    "the AELossWithDisc loss (the ImageNet configs) a PatchGAN discriminator trains\n"
    "beside the model: hinge loss, its own AdamW + OneCycleLR, and the generator\n"
    "term -mean(D(rec)) with the adaptive weight from disc_start steps on.\n"
    "\n"
    "options:\n"
    "  --config CFG        a reference-style YAML (model.autoencoder, train, data)\n"
    "  --out RUN_DIR       run folder (created); see FILES\n"
    "  --data D            training data (default: the config's; fashion-mnist, an IDX\n"
    "                      file, a .npy (N, C, R, R) in [-1, 1], or an image folder)\n"
    "  --val-data D        held-out data for the per-epoch PSNR/SSIM (default: the\n"
    "                      test split of an IDX set; none for other data)\n"
    "  --epochs N          epochs (default: the config's train.epochs)\n"
    "  --batch-size B      batch size (default: the config's data.batch_size)\n"
    "  --lr LR             learning rate per sample (default: train.learning_rate)\n"
    "  --seed S            seed for initialisation, shuffling and the codebook init\n"
    "  --limit N           train on the first N images only\n"
    "  --val-limit N       evaluate on the first N held-out images (default 1000)\n"
    "  --lpips V[,L]       LPIPS weights: torchvision's vgg16-397923af.pth and\n"
    "                      lpips's weights/v0.1/vgg.pth, or one file holding a whole\n"
    "                      lpips.LPIPS(net='vgg') state dict (.pth or .safetensors)\n"
    "  --threads T         threads (default: all cores)\n"
    "  --resume            continue RUN_DIR from its last checkpoint\n"
    "  --stop-after N      stop after N optimizer steps in this invocation (testing)\n"
    "\n"
    "FILES in RUN_DIR (each written atomically):\n"
    "  checkpoint.safetensors  model, discriminator, optimizer moments and progress\n"
    "                      (for --resume)\n"
    "  model.safetensors, config.json   the model, loadable by optvq encode --model RUN_DIR\n"
    "  metrics.jsonl       one JSON object per step and per epoch\n"
    "  recon_epoch_NNN.png originals (top) and reconstructions of held-out images\n"
    "\n"
    "Progress: a bar with ETA on a terminal, plain lines otherwise.\n";

int cmd_train(int argc, char **argv)
{
    cli_opt opts[] = {{"config", 1, 0},    {"out", 1, 0},       {"data", 1, 0},      {"val-data", 1, 0},
                      {"epochs", 1, 0},    {"batch-size", 1, 0}, {"lr", 1, 0},       {"seed", 1, 0},
                      {"limit", 1, 0},     {"val-limit", 1, 0}, {"threads", 1, 0},   {"resume", 0, 0},
                      {"stop-after", 1, 0}, {"lpips", 1, 0},    {0, 0, 0}};
    int pr = cli_parse("train", argc, argv, opts);
    if (pr == 1) {
        fputs(HELP, stdout);
        return 0;
    }
    if (pr < 0)
        return 2;
    train_options o;
    memset(&o, 0, sizeof o);
    o.config = cli_get(opts, "config");
    o.out = cli_get(opts, "out");
    o.data = cli_get(opts, "data");
    o.val_data = cli_get(opts, "val-data");
    o.lpips = cli_get(opts, "lpips");
    o.resume = cli_get(opts, "resume") != NULL;
    o.epochs = o.batch_size = o.seed = -1;
    o.lr = -1;
    o.val_limit = 1000;
    int64_t threads = 0;
    if (!o.config || !o.out) {
        fprintf(stderr, "optvq train: --config and --out are required (see --help)\n");
        return 2;
    }
    if (cli_get_int("train", opts, "epochs", 0, 1 << 20, &o.epochs) ||
        cli_get_int("train", opts, "batch-size", 1, 1 << 20, &o.batch_size) ||
        cli_get_int("train", opts, "seed", 0, INT64_MAX >> 1, &o.seed) ||
        cli_get_int("train", opts, "limit", 1, INT64_MAX >> 1, &o.limit) ||
        cli_get_int("train", opts, "val-limit", 0, INT64_MAX >> 1, &o.val_limit) ||
        cli_get_int("train", opts, "threads", 0, 4096, &threads) ||
        cli_get_int("train", opts, "stop-after", 1, INT64_MAX >> 1, &o.stop_after) ||
        cli_get_float("train", opts, "lr", 0.0, 1e3, &o.lr))
        return 2;
    o.threads = (int)threads;
    o.progress = stderr;
    return train_run(&o, NULL);
}
