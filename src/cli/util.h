/* Small helpers shared by the subcommands. */
#ifndef OPTVQ_CLI_UTIL_H
#define OPTVQ_CLI_UTIL_H
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

#endif
