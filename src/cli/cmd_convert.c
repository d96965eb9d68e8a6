/* optvq convert: model weights (safetensors or a PyTorch checkpoint) to
 * float32 safetensors. */
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/util.h"
#include "io/weights.h"
#include "optvq/optvq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD "convert"

static const char convert_help[] =
    "NAME\n"
    "    optvq convert - convert model weights to safetensors\n"
    "\n"
    "SYNOPSIS\n"
    "    optvq convert [--model-only] [--list] IN OUT.safetensors\n"
    "\n"
    "DESCRIPTION\n"
    "    Reads the tensors of IN and writes them to OUT as float32 safetensors\n"
    "    (names sorted, header padded to 8 bytes, metadata {\"format\": \"pt\"}).\n"
    "    OUT is written atomically: it appears complete or not at all.\n"
    "\n"
    "    IN is either\n"
    "      - a safetensors file (F32, F16, BF16, F64 and integer tensors), or\n"
    "      - a PyTorch checkpoint (.pth/.ckpt) written by torch.save, in the\n"
    "        zip format (torch 1.6 or later) or the older non-zip one, read\n"
    "        without Python. A file holding one bare tensor gives one tensor\n"
    "        named \"tensor\". When the saved object is a dict\n"
    "        with a \"model\" (or else \"state_dict\") entry that is a dict, its\n"
    "        tensors are converted; otherwise the tensors of the top-level dict.\n"
    "        Values that are not tensors (epoch, optimizer state, ...) are\n"
    "        skipped. The pickle inside is interpreted, never executed: only\n"
    "        the types a state dict needs are accepted, anything else is\n"
    "        refused by name.\n"
    "    The format is recognised by the file's first bytes, not its name.\n"
    "    Every tensor is converted to float32; names are kept unchanged.\n"
    "\n"
    "OPTIONS\n"
    "    --model-only   write only the tensors a model loads: strip a leading\n"
    "                   \"model.\" and \"_orig_mod.\" from each name and drop the\n"
    "                   \"loss.*\" tensors (discriminator, LPIPS), as strict\n"
    "                   loading does\n"
    "    --list         print each tensor's name and shape\n"
    "    --help         this text\n"
    "\n"
    "EXIT STATUS\n"
    "    0 success; 1 the input could not be read or the output not written\n"
    "    (one line on stderr, no output file left behind); 2 usage error.\n"
    "\n"
    "EXAMPLES\n"
    "    optvq convert checkpoint.pth model.safetensors\n"
    "    optvq convert --model-only model.safetensors clean.safetensors\n";

static void print_shape(const optvq_tensor *t)
{
    printf("(");
    for (int d = 0; d < t->ndim; d++)
        printf("%s%lld", d ? ", " : "", (long long)t->shape[d]);
    printf(t->ndim == 1 ? ",)" : ")");
}

int cmd_convert(int argc, char **argv)
{
    /* options and the two positional paths may come in any order */
    char **opt_argv = malloc(sizeof(char *) * (size_t)(argc + 1));
    if (!opt_argv) {
        fprintf(stderr, "optvq %s: out of memory\n", CMD);
        return 1;
    }
    const char *pos[3] = {NULL, NULL, NULL};
    int n_opt = 0, n_pos = 0, only_positional = 0;
    opt_argv[n_opt++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (!only_positional && !strcmp(argv[i], "--")) {
            only_positional = 1;
        } else if (!only_positional && argv[i][0] == '-' && argv[i][1] != '\0') {
            opt_argv[n_opt++] = argv[i];
        } else {
            if (n_pos < 3)
                pos[n_pos] = argv[i];
            n_pos++;
        }
    }
    opt_argv[n_opt] = NULL;
    cli_opt opts[] = {{"model-only", 0, NULL}, {"list", 0, NULL}, {0, 0, NULL}};
    int pr = cli_parse(CMD, n_opt, opt_argv, opts);
    free(opt_argv);
    if (pr == 1) {
        fputs(convert_help, stdout);
        return 0;
    }
    if (pr < 0)
        return 2;
    if (n_pos != 2) {
        fprintf(stderr, "optvq %s: need IN and OUT.safetensors, got %d path%s (see 'optvq %s --help')\n", CMD, n_pos,
                n_pos == 1 ? "" : "s", CMD);
        return 2;
    }
    const char *in = pos[0], *out = pos[1];
    const int model_only = cli_get(opts, "model-only") != NULL, list = cli_get(opts, "list") != NULL;
    if (!cli_ends_with(out, ".safetensors")) {
        fprintf(stderr, "optvq %s: %s: the output is a safetensors file: name it OUT.safetensors\n", CMD, out);
        return 2;
    }
    if (cli_prepare_output(CMD, out, 0))
        return 1;

    optvq_weights *w = NULL, *sel = NULL;
    int rc = 1;
    if (optvq_weights_load(in, &w) != OPTVQ_OK) {
        fprintf(stderr, "optvq %s: %s\n", CMD, optvq_last_error());
        goto done;
    }
    const optvq_weights *src = w;
    if (model_only) {
        if (optvq_weights_create(&sel) != OPTVQ_OK) {
            fprintf(stderr, "optvq %s: %s\n", CMD, optvq_last_error());
            goto done;
        }
        for (int64_t i = 0; i < optvq_weights_count(w); i++) {
            const optvq_tensor *t = optvq_weights_get(w, i);
            const char *name = optvq_weights_normalise_name(t->name);
            if (!name)
                continue;
            if (optvq_weights_add(sel, name, t->ndim, t->shape, t->data) != OPTVQ_OK) {
                fprintf(stderr, "optvq %s: %s: %s (after stripping prefixes)\n", CMD, in, optvq_last_error());
                goto done;
            }
        }
        src = sel;
    }
    int64_t values = 0;
    for (int64_t i = 0; i < optvq_weights_count(src); i++) {
        const optvq_tensor *t = optvq_weights_get(src, i);
        values += t->numel;
        if (list) {
            printf("%-60s ", t->name);
            print_shape(t);
            printf("\n");
        }
    }
    if (optvq_weights_save_safetensors(src, out) != OPTVQ_OK) {
        fprintf(stderr, "optvq %s: %s\n", CMD, optvq_last_error());
        goto done;
    }
    printf("%s: %lld tensors, %lld values -> %s\n", in, (long long)optvq_weights_count(src), (long long)values, out);
    rc = 0;
done:
    optvq_weights_free(sel);
    optvq_weights_free(w);
    return rc;
}
