/* optvq demo — the main job on built-in defaults. For now: the 2-D toy
 * picture of vanilla VQ vs OptVQ, written into --out. */
#include "cli/args.h"
#include "cli/commands.h"

#include <stdio.h>

static const char demo_help[] =
    "NAME\n"
    "    optvq demo - the main job on built-in defaults\n"
    "\n"
    "SYNOPSIS\n"
    "    optvq demo [--out DIR] [--help]\n"
    "\n"
    "DESCRIPTION\n"
    "    Runs 'optvq toy' with its defaults (50 points, 25 codes, 1000 steps,\n"
    "    seed 0): vanilla VQ and OptVQ learning a codebook side by side.\n"
    "\n"
    "OPTIONS\n"
    "    --out DIR   output directory, created if missing (default out/demo)\n"
    "    --help      this text\n"
    "\n"
    "FILES\n"
    "    DIR/toy.gif, DIR/toy.png (see 'optvq toy --help')\n"
    "\n"
    "EXIT STATUS\n"
    "    0 success, 1 runtime failure, 2 usage error.\n";

int cmd_demo(int argc, char **argv)
{
    cli_opt opts[] = {{"out", 1, NULL}, {0, 0, NULL}};
    int pr = cli_parse("demo", argc, argv, opts);
    if (pr == 1) {
        fputs(demo_help, stdout);
        return 0;
    }
    if (pr != 0)
        return 2;
    const char *out = cli_get(opts, "out");
    if (!out)
        out = "out/demo";
    if (!*out) {
        fprintf(stderr, "optvq demo: --out must not be empty\n");
        return 2;
    }
    char *toy_argv[] = {"toy", "--out", (char *)out, NULL};
    int rc = cmd_toy(3, toy_argv);
    if (rc == 0)
        printf("\ndemo: the picture is %s/toy.png, the animation %s/toy.gif\n", out, out);
    return rc;
}
