/* Tiny long-option parser shared by the subcommands.
 * Options are "--name value" or "--name=value"; flags are "--name".
 * Usage:
 *     cli_opt opts[] = {{"out", 1, NULL}, {"verbose", 0, NULL}, {0}};
 *     if (cli_parse("toy", argc, argv, opts) != 0) return 2;
 *     const char *out = cli_get(opts, "out");          // NULL when absent
 */
#ifndef OPTVQ_CLI_ARGS_H
#define OPTVQ_CLI_ARGS_H
#include <stdint.h>

typedef struct cli_opt {
    const char *name;
    int takes_value;   /* 1: needs a value; 0: a flag */
    const char *value; /* filled by cli_parse ("1" for a set flag) */
} cli_opt;

/* Returns 0, 1 when --help was given (caller prints help, exits 0), or -1 after
 * printing a one-line error to stderr (caller exits 2). */
int cli_parse(const char *cmd, int argc, char **argv, cli_opt *opts);
const char *cli_get(const cli_opt *opts, const char *name);
/* Typed getters: keep *out when absent; print an error and return -1 when the
 * value does not parse or lies outside [lo, hi]. */
int cli_get_int(const char *cmd, const cli_opt *opts, const char *name, int64_t lo, int64_t hi, int64_t *out);
int cli_get_float(const char *cmd, const cli_opt *opts, const char *name, double lo, double hi, double *out);
/* Maps the value to the index of a word in `choices` (NULL-terminated). */
int cli_get_choice(const char *cmd, const cli_opt *opts, const char *name, const char *const *choices, int *out);

#endif
