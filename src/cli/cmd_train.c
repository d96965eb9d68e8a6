/* optvq train: the reference's training recipe (AELoss, or AELossWithDisc with
 * LPIPS and the PatchGAN), with checkpoints that resume to the same weights. */
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/train_run.h"
#include "mpi/mpi_comm.h"

#include <stdio.h>
#include <string.h>

static const char *const HELP =
    "NAME\n"
    "    optvq train - train a tokenizer with the reference's recipe\n"
    "\n"
    "SYNOPSIS\n"
    "    optvq train --config CFG --out RUN_DIR [--resume | --force] [--data D]\n"
    "                [--init-from MODEL] [--codebook FILE]\n"
    "                [--val-data D] [--epochs N] [--batch-size B] [--lr LR] [--seed S]\n"
    "                [--limit N] [--val-limit N] [--lpips V[,L]] [--threads T]\n"
    "\n"
    "DESCRIPTION\n"
    "    Trains a VQModel with the reference's recipe: AdamW (betas 0.9/0.999, eps\n"
    "    1e-7, weight decay on conv/linear weights only), lr = learning_rate x\n"
    "    batch size, OneCycleLR (pct_start 0.01, cosine, beta1 cycling 0.95 ->\n"
    "    0.85), gradient-norm clipping at 1.0, loss = l1 + l2 + q (the config's\n"
    "    AELoss weights). The codebook starts from the config's train.use_initiate:\n"
    "    kmeans or random selection of encoder features (code_dim chunks), or\n"
    "    N(0,1). With loss_p_weight > 0 the loss adds LPIPS (VGG16, weights from\n"
    "    --lpips); with the AELossWithDisc loss (the ImageNet configs) a PatchGAN\n"
    "    discriminator trains beside the model: hinge loss, its own AdamW +\n"
    "    OneCycleLR, and the generator term -mean(D(rec)) with the adaptive\n"
    "    weight from disc_start steps on. Progress: a bar with ETA on a terminal,\n"
    "    plain lines otherwise.\n"
    "\n"
    "OPTIONS\n"
    "    --config CFG      a reference-style YAML (model.autoencoder, train, data)\n"
    "    --out RUN_DIR     run folder (created with missing parents); see FILES. A\n"
    "                      folder that holds a run already is refused unless\n"
    "                      --resume or --force says what to do with it\n"
    "    --resume          continue RUN_DIR from its last checkpoint (with the same\n"
    "                      settings); a finished run says so and exits 0\n"
    "    --force           start a new run in a RUN_DIR that holds one: the old\n"
    "                      run's files stay untouched until the new run's first\n"
    "                      checkpoint (end of epoch 1) and are replaced then\n"
    "    --init-from M     start from existing weights (a model folder such as a\n"
    "                      downloaded checkpoint, a .pth/.ckpt or .safetensors\n"
    "                      file): every tensor but quantize.embedding.weight, by\n"
    "                      name; a tensor the model lacks or of another shape is\n"
    "                      refused, missing ones keep their init (default: the\n"
    "                      config's train.enterpoint, else a random init)\n"
    "    --codebook FILE   start from this codebook (n_e, code_dim): a .npy, a file\n"
    "                      holding one tensor (torch.save(codes)), or one with\n"
    "                      quantize.embedding.weight; replaces train.use_initiate\n"
    "                      (default: the config's train.code_path)\n"
    "    --data D          training data (default: the config's; fashion-mnist, an\n"
    "                      IDX file, a .npy (N, C, R, R) in [-1, 1], or an image\n"
    "                      folder)\n"
    "    --val-data D      held-out data for the per-epoch PSNR/SSIM (default: the\n"
    "                      test split of an IDX set; none for other data)\n"
    "    --epochs N        epochs (default: the config's train.epochs)\n"
    "    --batch-size B    batch size (default: the config's data.batch_size); an\n"
    "                      epoch is floor(N / B) steps: as in the reference's\n"
    "                      DataLoader (drop_last), the last partial batch of each\n"
    "                      shuffled epoch is dropped, so at least B training images\n"
    "                      are needed\n"
    "    --lr LR           learning rate per sample (default: the config's\n"
    "                      train.learning_rate)\n"
    "    --seed S          seed for initialisation, shuffling and the codebook init\n"
    "                      (default: the config's train.seed, else 42)\n"
    "    --limit N         train on the first N images only (default: all)\n"
    "    --val-limit N     evaluate on the first N held-out images (default 1000)\n"
    "    --lpips V[,L]     LPIPS weights: torchvision's vgg16-397923af.pth and\n"
    "                      lpips's weights/v0.1/vgg.pth, or one file holding a whole\n"
    "                      lpips.LPIPS(net='vgg') state dict (.pth or .safetensors)\n"
    "    --threads T       threads (default 0: all cores)\n"
    "    --stop-after N    stop after N optimizer steps in this invocation (tests)\n"
    "    --help            this text\n"
    "\n"
    "FILES in RUN_DIR (each written atomically)\n"
    "    checkpoint.safetensors\n"
    "                      model, discriminator, optimizer moments and progress\n"
    "                      (for --resume)\n"
    "    model.safetensors, config.json\n"
    "                      the model: optvq encode --model RUN_DIR\n"
    "    metrics.jsonl     one JSON object per step and per epoch\n"
    "    curves.png        charts of the run, redrawn each epoch: loss terms,\n"
    "                      codebook usage and perplexity (per step and per epoch),\n"
    "                      held-out PSNR and SSIM per epoch, the gradient norm (or,\n"
    "                      with a discriminator, its terms); a resumed run charts\n"
    "                      it all\n"
    "    recon_epoch_NNN.png\n"
    "                      originals (top) and reconstructions of held-out images\n"
    "    .pending/         a new run's files until its first checkpoint, when they\n"
    "                      move up (a run stopped before then has nothing to resume)\n"
    "\n"
    "EXAMPLES\n"
    "    optvq train --config configs/fashion-mnist/optvq.yaml --out runs/optvq\n"
    "    optvq train --config configs/fashion-mnist/optvq.yaml --out runs/optvq --resume\n"
    "    optvq train --config configs/imagenet/optvq_256_f16_h4.yaml --data MY_IMAGES/ \\\n"
    "        --init-from optvq-16x16x4 --lpips vgg16-397923af.pth,vgg.pth --out runs/finetune\n"
    "    optvq train --config configs/imagenet/optvq_256_f16_h4.yaml --data IMAGES/ \\\n"
    "        --lpips vgg16-397923af.pth,vgg.pth --out runs/f16h4\n"
    "    mpirun -np 2 optvq train --config configs/fashion-mnist/optvq.yaml \\\n"
    "        --batch-size 512 --threads 1 --out runs/optvq-2\n"
    "\n"
    "DATA PARALLEL (MPI)\n"
    "    Under mpirun the processes train one run together, as the reference's DDP:\n"
    "    --batch-size is per process and the learning rate scales with the global\n"
    "    batch; each takes its slice of every global batch of one shuffle;\n"
    "    gradients are averaged, Sinkhorn and the PatchGAN's BatchNorm see the\n"
    "    global batch; process 0 writes RUN_DIR and prints the progress. --resume\n"
    "    works with any number of processes (the checkpoint keeps the global\n"
    "    batch). If one process fails or dies, the job stops; --resume continues.\n"
    "\n"
    "EXIT STATUS\n"
    "    0 trained (or, with --resume, the run was finished already); 1 a runtime\n"
    "    failure, or --resume with no checkpoint to resume; 2 a usage error, or\n"
    "    RUN_DIR holds a run and neither --resume nor --force was given.\n";

int cmd_train(int argc, char **argv)
{
    cli_opt opts[] = {{"config", 1, 0},    {"out", 1, 0},       {"data", 1, 0},      {"val-data", 1, 0},
                      {"epochs", 1, 0},    {"batch-size", 1, 0}, {"lr", 1, 0},       {"seed", 1, 0},
                      {"limit", 1, 0},     {"val-limit", 1, 0}, {"threads", 1, 0},   {"resume", 0, 0},
                      {"stop-after", 1, 0}, {"lpips", 1, 0},    {"force", 0, 0},
                      {"init-from", 1, 0}, {"codebook", 1, 0}, {0, 0, 0}};
    int pr = cli_parse("train", argc, argv, opts);
    if (pr == 1) {
        fputs(HELP, stdout);
        return 0;
    }
    if (pr < 0)
        return 2;
    train_options t;
    memset(&t, 0, sizeof t);
    optvq_train_options *o = &t.run;
    optvq_train_options_default(o);
    o->config = cli_get(opts, "config");
    o->out = cli_get(opts, "out");
    o->data = cli_get(opts, "data");
    o->val_data = cli_get(opts, "val-data");
    o->lpips = cli_get(opts, "lpips");
    o->resume = cli_get(opts, "resume") != NULL;
    o->force = cli_get(opts, "force") != NULL;
    o->init_from = cli_get(opts, "init-from");
    o->codebook = cli_get(opts, "codebook");
    int64_t threads = 0;
    if (!o->config || !o->out) {
        fprintf(stderr, "optvq train: --config and --out are required (see --help)\n");
        return 2;
    }
    if (o->resume && o->force) {
        fprintf(stderr, "optvq train: --resume continues a run and --force starts a new one: give one of them\n");
        return 2;
    }
    if (cli_get_int("train", opts, "epochs", 0, 1 << 20, &o->epochs) ||
        cli_get_int("train", opts, "batch-size", 1, 1 << 20, &o->batch_size) ||
        cli_get_int("train", opts, "seed", 0, INT64_MAX >> 1, &o->seed) ||
        cli_get_int("train", opts, "limit", 1, INT64_MAX >> 1, &o->limit) ||
        cli_get_int("train", opts, "val-limit", 0, INT64_MAX >> 1, &o->val_limit) ||
        cli_get_int("train", opts, "threads", 0, 4096, &threads) ||
        cli_get_int("train", opts, "stop-after", 1, INT64_MAX >> 1, &o->stop_after) ||
        cli_get_float("train", opts, "lr", 0.0, 1e3, &o->lr))
        return 2;
    o->threads = (int)threads;
    t.progress = stderr;
    if (mpi_comm_launched()) { /* under mpirun: one data-parallel run over the ranks */
        mpi_comm_fill(&o->comm);
        if (o->comm.rank != 0)
            t.progress = NULL;
        else if (o->comm.n_ranks > 1)
            fprintf(stderr, "optvq train: data parallel over %d ranks (--batch-size is per rank)\n", o->comm.n_ranks);
    }
    return train_run(&t, NULL);
}
