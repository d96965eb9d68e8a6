/* optvq — command-line entry point: dispatches to subcommands. */
#include "cli/commands.h"
#include "optvq/optvq.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"demo", cmd_demo, "the main job: OptVQ vs vanilla VQ on the 2-D toy and on Fashion-MNIST, with a report"},
    {"toy", cmd_toy, "2-D toy: vanilla VQ and OptVQ side by side (GIF + PNG)"},
    {"train", cmd_train, "train a tokenizer (the reference recipe) with checkpoints and resume"},
    {"encode", cmd_encode, "images -> tokens with a model"},
    {"decode", cmd_decode, "tokens -> images with a model"},
    {"reconstruct", cmd_reconstruct, "images -> tokens -> images with a model"},
    {"eval", cmd_eval, "PSNR, SSIM, LPIPS, rFID, codebook usage of a model on a data set"},
    {"metrics", cmd_metrics, "PSNR, SSIM, LPIPS, FID between two images or two folders"},
    {"info", cmd_info, "a model's architecture, parameters, token grid and codebook"},
    {"quantize", cmd_quantize, "quantize features from .npy files (forward, loss, gradients)"},
    {"convert", cmd_convert, "convert model weights (.pth/.ckpt/safetensors) to safetensors"},
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
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "optvq: unknown command '%s' (see 'optvq --help')\n", argv[1]);
    return 2;
}
