/* LPIPS-Alex and rFID for the CLI; see perceptual.h. */
#include "cli/perceptual.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/evaluate.h"
#include "optvq/optvq.h"

int cli_perceptual_open(cli_perceptual *p, const char *cmd, const char *lpips_arg, const char *fid_arg)
{
    memset(p, 0, sizeof *p);
    snprintf(p->lpips_skip, sizeof p->lpips_skip, "no --lpips weights given");
    snprintf(p->fid_skip, sizeof p->fid_skip, "no --fid-weights given");
    if (lpips_arg) {
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", lpips_arg);
        const char *paths[2] = {buf, NULL};
        int n = 1;
        char *comma = strchr(buf, ',');
        if (comma) {
            *comma = '\0';
            paths[1] = comma + 1;
            n = 2;
            if (strchr(paths[1], ',') || !paths[1][0] || !buf[0]) {
                fprintf(stderr, "optvq %s: --lpips takes ALEX or ALEX,HEADS (one or two files)\n", cmd);
                return 1;
            }
        }
        if (lpips_alex_load(paths, n, &p->lpips) != OPTVQ_OK) {
            fprintf(stderr, "optvq %s: %s\n", cmd, optvq_last_error());
            return 1;
        }
        p->lpips_skip[0] = '\0';
    }
    if (fid_arg) {
        if (fid_inception_load(fid_arg, &p->fid) != OPTVQ_OK) {
            fprintf(stderr, "optvq %s: %s\n", cmd, optvq_last_error());
            cli_perceptual_free(p);
            return 1;
        }
        if (fid_stats_init(&p->fa, FID_DIM) != OPTVQ_OK || fid_stats_init(&p->fb, FID_DIM) != OPTVQ_OK) {
            fprintf(stderr, "optvq %s: %s\n", cmd, optvq_last_error());
            cli_perceptual_free(p);
            return 1;
        }
        p->fid_skip[0] = '\0';
    }
    return 0;
}

void cli_perceptual_free(cli_perceptual *p)
{
    lpips_alex_free(p->lpips);
    fid_inception_free(p->fid);
    fid_stats_free(&p->fa);
    fid_stats_free(&p->fb);
    p->lpips = NULL;
    p->fid = NULL;
}

int cli_perceptual_add(cli_perceptual *p, const char *cmd, const float *x0, const float *x1, int64_t n, int c,
                       int64_t h, int64_t w, double *lpips_out)
{
    for (int64_t i = 0; lpips_out && i < n; i++)
        lpips_out[i] = NAN;
    p->images += n;
    if (p->lpips && (h < LPIPS_ALEX_MIN_SIDE || w < LPIPS_ALEX_MIN_SIDE)) {
        snprintf(p->lpips_skip, sizeof p->lpips_skip, "%lldx%lld images; LPIPS-Alex needs at least %dx%d",
                 (long long)h, (long long)w, LPIPS_ALEX_MIN_SIDE, LPIPS_ALEX_MIN_SIDE);
        lpips_alex_free(p->lpips);
        p->lpips = NULL;
    }
    double *d = p->lpips ? malloc(sizeof(double) * (size_t)(n > 0 ? n : 1)) : NULL;
    if (p->lpips && !d) {
        fprintf(stderr, "optvq %s: out of memory\n", cmd);
        return 1;
    }
    if (eval_perceptual_batch(p->lpips, p->fid, &p->fa, &p->fb, x0, x1, n, c, h, w, d) != OPTVQ_OK) {
        fprintf(stderr, "optvq %s: %s\n", cmd, optvq_last_error());
        free(d);
        return 1;
    }
    for (int64_t i = 0; p->lpips && i < n; i++) {
        p->lpips_sum += d[i];
        if (lpips_out)
            lpips_out[i] = d[i];
    }
    if (p->lpips)
        p->lpips_count += n;
    free(d);
    return 0;
}

int cli_perceptual_finish(cli_perceptual *p, const char *cmd, double *lpips_mean, double *fid)
{
    *lpips_mean = p->lpips && p->lpips_count ? p->lpips_sum / (double)p->lpips_count : NAN;
    *fid = NAN;
    if (!p->fid)
        return 0;
    if (p->fa.count < 2) {
        snprintf(p->fid_skip, sizeof p->fid_skip, "%lld image(s); FID needs at least 2 per set",
                 (long long)p->fa.count);
        return 0;
    }
    if (fid_from_stats(&p->fa, &p->fb, fid) != OPTVQ_OK) {
        fprintf(stderr, "optvq %s: %s\n", cmd, optvq_last_error());
        return 1;
    }
    return 0;
}
