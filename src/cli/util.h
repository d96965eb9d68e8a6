/* Small helpers shared by the subcommands. */
#ifndef OPTVQ_CLI_UTIL_H
#define OPTVQ_CLI_UTIL_H
#include "cli/args.h"
#include "optvq/optvq.h"

#include <stdint.h>

/* Monotonic seconds. */
double cli_now(void);
/* Case-insensitive suffix test ("x.NPY" ends with ".npy"). */
int cli_ends_with(const char *s, const char *suffix);
int cli_is_dir(const char *path);
/* mkdir -p; 0 on success, -1 with errno set. */
int cli_make_dirs(const char *path);
/* A progress bar with rate and ETA on stderr when it is a terminal; nothing
 * otherwise. `unit` names what is counted ("img"). */
void cli_progress(const char *what, const char *unit, int64_t done, int64_t total, double t0);

/* The output rule shared by every command: a name ending in .npy is an
 * array, .png/.jpg/.jpeg an image, an existing folder or a name ending in '/'
 * a folder; anything else is a usage error. `allowed` is a mask of
 * (1u << kind). Prints a one-line error and returns -1 (exit 2) when the name
 * says nothing or names a kind the command cannot write. */
typedef enum cli_out_kind { CLI_OUT_NPY = 0, CLI_OUT_IMAGE = 1, CLI_OUT_FOLDER = 2 } cli_out_kind;
int cli_output_kind(const char *cmd, const char *opt, const char *path, unsigned allowed, cli_out_kind *kind);
/* Creates the missing folders of an output path (a folder output: the folder
 * itself; a file: the folders above it) and checks they are writable, before
 * any work is done. Prints a one-line error and returns 1 on failure. */
int cli_prepare_output(const char *cmd, const char *path, int is_folder);

/* Writes a JSON object (pretty-printed, a newline at the end) to path
 * atomically and frees it; prints a one-line error and returns 1 on failure. */
typedef struct cJSON cJSON;
int cli_write_json(const char *cmd, const char *path, cJSON *object);

/* --precision fp32|bf16|bf16-all (when given) applied to m; a note on stderr
 * when bf16 runs without AVX512-BF16. 0, or 2 after a usage message. */
int cli_set_precision(const char *cmd, const cli_opt *opts, optvq_model *m);
/* "fp32", "bf16" or "bf16-all", as --precision spells them. */
const char *cli_precision_name(optvq_precision p);
/* The help lines of --precision (for a command's OPTIONS). */
#define CLI_HELP_PRECISION                                                                                        \
    "    --precision fp32|bf16|bf16-all\n"                                                                          \
    "                      arithmetic of the convolutions (default fp32). bf16: the\n"                              \
    "                      decoder's in bf16 with float32 sums, the encoder kept in\n"                              \
    "                      fp32 so the tokens are exactly fp32's; bf16-all: the\n"                                  \
    "                      encoder's too (faster, but a few percent of tokens can\n"                                \
    "                      differ). Fast on CPUs with AVX512-BF16 (README: Precision)\n"

#endif
