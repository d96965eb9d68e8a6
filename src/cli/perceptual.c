/* LPIPS-Alex and rFID for the CLI; see perceptual.h. */
#include "cli/perceptual.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optvq/optvq.h"

#define CHUNK 8 /* images per network call: ~15 MB of activations each (Inception) */

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
    const int64_t per = (int64_t)c * h * w, hw = h * w;
    float *rgb = NULL, *feats = NULL;
    int rc = 1;
    if (p->lpips && c == 1 && !(rgb = malloc(sizeof(float) * (size_t)(2 * CHUNK * 3 * hw)))) {
        fprintf(stderr, "optvq %s: out of memory\n", cmd);
        return 1;
    }
    if (p->fid && !(feats = malloc(sizeof(float) * (size_t)(2 * CHUNK * FID_DIM)))) {
        fprintf(stderr, "optvq %s: out of memory\n", cmd);
        goto done;
    }
    for (int64_t i0 = 0; i0 < n; i0 += CHUNK) {
        const int64_t m = n - i0 < CHUNK ? n - i0 : CHUNK;
        const float *a = x0 + i0 * per, *b = x1 + i0 * per;
        if (p->lpips) {
            if (c == 1) { /* grey as RGB, as pyiqa reads a grey file (rgb=True) */
                for (int64_t k = 0; k < m; k++)
                    for (int ch = 0; ch < 3; ch++) {
                        memcpy(rgb + (k * 3 + ch) * hw, a + k * hw, sizeof(float) * (size_t)hw);
                        memcpy(rgb + ((CHUNK + k) * 3 + ch) * hw, b + k * hw, sizeof(float) * (size_t)hw);
                    }
                a = rgb;
                b = rgb + CHUNK * 3 * hw;
            }
            double d[CHUNK];
            if (lpips_alex_forward(p->lpips, a, b, m, h, w, d, NULL) != OPTVQ_OK) {
                fprintf(stderr, "optvq %s: %s\n", cmd, optvq_last_error());
                goto done;
            }
            for (int64_t k = 0; k < m; k++) {
                p->lpips_sum += d[k];
                if (lpips_out)
                    lpips_out[i0 + k] = d[k];
            }
            p->lpips_count += m;
        }
        if (p->fid) {
            if (fid_inception_forward(p->fid, x0 + i0 * per, m, c, h, w, feats) != OPTVQ_OK ||
                fid_inception_forward(p->fid, x1 + i0 * per, m, c, h, w, feats + CHUNK * FID_DIM) != OPTVQ_OK ||
                fid_stats_add(&p->fa, feats, m) != OPTVQ_OK ||
                fid_stats_add(&p->fb, feats + CHUNK * FID_DIM, m) != OPTVQ_OK) {
                fprintf(stderr, "optvq %s: %s\n", cmd, optvq_last_error());
                goto done;
            }
        }
    }
    rc = 0;
done:
    free(rgb);
    free(feats);
    return rc;
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
