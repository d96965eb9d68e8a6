/* optvq — command-line entry point: dispatches to subcommands. */
#include "cli/commands.h"
#include "mpi/mpi_comm.h"
#include "optvq/optvq.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
    int data_parallel; /* runs as one job over the ranks under mpirun */
} command;

static const command commands[] = {
    {"demo", cmd_demo, "the main job: OptVQ vs vanilla VQ on the 2-D toy and on Fashion-MNIST, with a report", 0},
    {"toy", cmd_toy, "2-D toy: vanilla VQ and OptVQ side by side (GIF + PNG)", 0},
    {"train", cmd_train, "train a tokenizer (the reference recipe) with checkpoints and resume", 1},
    {"encode", cmd_encode, "images -> tokens with a model", 0},
    {"decode", cmd_decode, "tokens -> images with a model", 0},
    {"reconstruct", cmd_reconstruct, "images -> tokens -> images with a model", 0},
    {"eval", cmd_eval, "PSNR, SSIM, LPIPS, rFID, codebook usage of a model on a data set", 1},
    {"metrics", cmd_metrics, "PSNR, SSIM, LPIPS, FID between two images or two folders", 0},
    {"info", cmd_info, "a model's architecture, parameters, token grid and codebook", 0},
    {"quantize", cmd_quantize, "quantize features from .npy files (forward, loss, gradients)", 0},
    {"convert", cmd_convert, "convert model weights (.pth/.ckpt/safetensors) to safetensors", 0},
    {"serve", cmd_serve, "the interactive demo as a local web page and JSON API", 0},
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: optvq [--version] [--help] COMMAND [ARGS]\n\n"
            "OptVQ: optimal-transport vector quantization, in C.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nRun 'optvq COMMAND --help' or 'optvq help COMMAND' for the options of one command.\n"
                 "Exit status: 0 success, 1 runtime failure, 2 usage error.\n");
}

/* Under mpirun: MPI starts for the whole process; train and eval run as one
 * job over the ranks, other commands would only repeat the same work N
 * times and are refused. A rank that fails takes the job down (MPI_Abort)
 * rather than leave the others waiting in a collective. */
static int run_under_mpi(const command *c, int argc, char **argv)
{
    char msg[512];
    int rc = mpi_comm_init(&argc, &argv);
    if (rc) {
        fprintf(stderr, "optvq %s: cannot start MPI: %s\n", c->name, mpi_comm_describe(rc, msg, sizeof msg));
        return 1;
    }
    int size = mpi_comm_size();
    if (size > 1 && !c->data_parallel) {
        if (mpi_comm_rank() == 0)
            fprintf(stderr, "optvq %s: does not run over MPI ranks (only train and eval do); run it without mpirun\n",
                    c->name);
        mpi_comm_finalize();
        return 2;
    }
    int status = c->run(argc - 1, argv + 1);
    if (status != 0 && size > 1)
        mpi_comm_abort(status);
    mpi_comm_finalize();
    return status;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "help") && argc >= 3) { /* optvq help CMD = optvq CMD --help */
        char help_flag[] = "--help";
        char *help_argv[] = {argv[2], help_flag, NULL};
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
            if (!strcmp(argv[2], commands[i].name))
                return commands[i].run(2, help_argv);
        fprintf(stderr, "optvq: unknown command '%s' (see 'optvq --help')\n", argv[2]);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("optvq %s\n", optvq_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return mpi_comm_launched() ? run_under_mpi(&commands[i], argc, argv) : commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "optvq: unknown command '%s' (see 'optvq --help')\n", argv[1]);
    return 2;
}
