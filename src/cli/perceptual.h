/* LPIPS-Alex and rFID for the CLI (`optvq eval`, `optvq metrics`): loads the
 * weights the user names, feeds image pairs in chunks (bounded memory), keeps
 * the LPIPS sum and the two FID statistics, and says why a metric is skipped. */
#ifndef OPTVQ_CLI_PERCEPTUAL_H
#define OPTVQ_CLI_PERCEPTUAL_H
#include <stdint.h>

#include "eval/fid.h"
#include "eval/lpips_alex.h"

typedef struct cli_perceptual {
    lpips_alex *lpips;         /* NULL: LPIPS not computed (see lpips_skip) */
    fid_inception *fid;        /* NULL: FID not computed (see fid_skip)     */
    fid_stats fa, fb;          /* originals, reconstructions               */
    double lpips_sum;
    int64_t lpips_count, images;
    char lpips_skip[160], fid_skip[160]; /* "" while the metric is on */
} cli_perceptual;

/* lpips_arg: "ALEX[,HEADS]" (one or two files) or NULL; fid_arg: the
 * pytorch-fid weights or NULL. Prints `optvq CMD: ...` and returns 1 when a
 * file does not load. */
int cli_perceptual_open(cli_perceptual *p, const char *cmd, const char *lpips_arg, const char *fid_arg);
/* x0 (originals), x1 (reconstructions): (n, c, h, w) in [0, 1], c 1 or 3 (grey
 * is replicated to RGB). lpips_out (n, may be NULL) receives LPIPS per pair
 * (NaN when skipped). Prints and returns 1 on failure. */
int cli_perceptual_add(cli_perceptual *p, const char *cmd, const float *x0, const float *x1, int64_t n, int c,
                       int64_t h, int64_t w, double *lpips_out);
/* Mean LPIPS and FID (NaN for a skipped metric; the reasons are set). */
int cli_perceptual_finish(cli_perceptual *p, const char *cmd, double *lpips_mean, double *fid);
void cli_perceptual_free(cli_perceptual *p);

#endif
