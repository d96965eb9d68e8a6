/* optvq toy — the paper's 2-D picture: vanilla VQ and OptVQ learn a codebook
 * for the same fixed points from the same initial codes; vanilla VQ leaves
 * most codes dead, OptVQ's Sinkhorn assignment pulls all of them in. */
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/toy_sim.h"
#include "cli/util.h"
#include "optvq/optvq.h"
#include "viz/gif.h"
#include "viz/plot.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CMD "toy"
#define MAX_FRAMES 2000

static const char toy_help[] =
    "NAME\n"
    "    optvq toy - vanilla VQ and OptVQ on 2-D points, side by side\n"
    "\n"
    "SYNOPSIS\n"
    "    optvq toy [--seed N] [--steps N] [--codes K] [--points N] [--out DIR]\n"
    "              [--frames-every N] [--help]\n"
    "\n"
    "DESCRIPTION\n"
    "    Draws N fixed points 1.5*randn + 2 and K codes randn (near the origin,\n"
    "    off the data), then trains the codebook of two quantizers from the same\n"
    "    start with AdamW (lr 5e-3, betas 0.9/0.999, weight decay 0.01): vanilla\n"
    "    VQ (nearest code) and OptVQ (Sinkhorn, epsilon 10, 5 iterations). Prints\n"
    "    the codes in use and the losses every 100 steps, and writes an animation\n"
    "    and a picture of the last step.\n"
    "\n"
    "OPTIONS\n"
    "    --seed N          seed of the points and the initial codes (default 0)\n"
    "    --steps N         training steps, 0..1000000 (default 1000)\n"
    "    --codes K         codebook size, 1..1024 (default 25)\n"
    "    --points N        number of points, 1..10000 (default 50)\n"
    "    --out DIR         output directory, created if missing (default out/toy)\n"
    "    --frames-every N  one GIF frame every N steps (default: steps/100, at\n"
    "                      least 1; at most 2000 frames)\n"
    "    --help            this text\n"
    "\n"
    "FILES\n"
    "    DIR/toy.gif       the animation, both quantizers side by side\n"
    "    DIR/toy.png       the last frame at twice the resolution\n"
    "\n"
    "EXAMPLES\n"
    "    optvq toy                      # the paper's picture: out/toy/toy.gif, toy.png\n"
    "    optvq toy --codes 64 --points 500 --seed 3 --out toy64\n"
    "\n"
    "EXIT STATUS\n"
    "    0 success, 1 runtime failure, 2 usage error.\n";

static const viz_rgb toy_colors[2] = {{0.8, 0.2, 0.2}, {0.2, 0.6, 0.2}};

int cmd_toy(int argc, char **argv)
{
    cli_opt opts[] = {{"seed", 1, NULL},   {"steps", 1, NULL}, {"codes", 1, NULL},
                      {"points", 1, NULL}, {"out", 1, NULL},   {"frames-every", 1, NULL},
                      {0, 0, NULL}};
    int pr = cli_parse(CMD, argc, argv, opts);
    if (pr == 1) {
        fputs(toy_help, stdout);
        return 0;
    }
    if (pr != 0)
        return 2;
    int64_t seed = 0, steps = 1000, codes = 25, points = 50, every = 0;
    if (cli_get_int(CMD, opts, "seed", 0, INT64_MAX, &seed) ||
        cli_get_int(CMD, opts, "steps", 0, 1000000, &steps) ||
        cli_get_int(CMD, opts, "codes", 1, 1024, &codes) ||
        cli_get_int(CMD, opts, "points", 1, 10000, &points) ||
        cli_get_int(CMD, opts, "frames-every", 1, 1000000, &every))
        return 2;
    const char *out = cli_get(opts, "out");
    if (!out)
        out = "out/toy";
    if (!*out) {
        fprintf(stderr, "optvq " CMD ": --out must not be empty\n");
        return 2;
    }
    if (every == 0)
        every = steps >= 200 ? steps / 100 : 1;
    int64_t n_frames = steps / every + 1 + (steps % every != 0);
    if (n_frames > MAX_FRAMES) {
        fprintf(stderr,
                "optvq " CMD ": --frames-every %" PRId64 " gives %" PRId64
                " frames over %" PRId64 " steps (at most %d); raise it\n",
                every, n_frames, steps, MAX_FRAMES);
        return 2;
    }
    char gif_path[4096], png_path[4096];
    if (snprintf(gif_path, sizeof gif_path, "%s/toy.gif", out) >= (int)sizeof gif_path ||
        snprintf(png_path, sizeof png_path, "%s/toy.png", out) >= (int)sizeof png_path) {
        fprintf(stderr, "optvq " CMD ": --out path too long\n");
        return 2;
    }
    /* table rows every 100 steps (fewer rows on very long runs) */
    int64_t table_every = 100;
    if (steps > 2000)
        table_every = ((steps / 20 + 99) / 100) * 100;

    int rc = 1;
    const int64_t N = points, K = codes;
    uint8_t *pixels = NULL;
    viz_palette_map *pal = NULL;
    viz_gif *gif = NULL;
    cairo_surface_t *surf = NULL;
    char subtitles[2][96];
    toy_sim sim;
    toy_sim_config sim_cfg;
    toy_sim_config_default(&sim_cfg);
    sim_cfg.points = N;
    sim_cfg.codes = K;
    sim_cfg.seed = (uint64_t)seed;
    if (toy_sim_init(&sim, &sim_cfg) != OPTVQ_OK) {
        fprintf(stderr, "optvq " CMD ": %s\n", optvq_last_error());
        goto done;
    }
    const float *x = sim.x, *init = sim.init_codes;

    /* fixed axes: the data and the initial codes */
    viz_view view;
    viz_view_init(&view);
    viz_view_add(&view, x, N);
    viz_view_add(&view, init, K);
    viz_view_square(&view, 0.06);

    if (cli_make_dirs(out) != 0) {
        fprintf(stderr, "optvq " CMD ": cannot create directory '%s': %s\n", out, strerror(errno));
        goto done;
    }
    int width, height;
    viz_panels_size(2, 1.0, &width, &height);
    pixels = malloc((size_t)width * (size_t)height);
    pal = malloc(sizeof *pal);
    if (!pixels || !pal) {
        fprintf(stderr, "optvq " CMD ": out of memory\n");
        goto done;
    }
    uint8_t palette[768], accents[2][3];
    for (int r = 0; r < 2; r++) {
        accents[r][0] = (uint8_t)lround(255.0 * toy_colors[r].r);
        accents[r][1] = (uint8_t)lround(255.0 * toy_colors[r].g);
        accents[r][2] = (uint8_t)lround(255.0 * toy_colors[r].b);
    }
    viz_palette_build(palette, (const uint8_t(*)[3])accents, 2);
    viz_palette_map_init(pal, palette);
    if (viz_gif_open(gif_path, width, height, palette, &gif) != OPTVQ_OK) {
        fprintf(stderr, "optvq " CMD ": %s\n", optvq_last_error());
        goto done;
    }

    printf("optvq toy: %" PRId64 " points, %" PRId64 " codes, %" PRId64 " steps, seed %" PRId64
           "\n\n",
           N, K, steps, seed);
    printf("%8s  %12s  %10s  %12s  %10s\n", "step", "vanilla used", "optvq used", "vanilla loss",
           "optvq loss");
    fflush(stdout);

    int64_t frames = 0;
    for (int64_t step = 0; step <= steps; step++) {
        if (toy_sim_forward(&sim, step) != OPTVQ_OK) {
            fprintf(stderr, "optvq " CMD ": %s\n", optvq_last_error());
            goto done;
        }
        const toy_quant *runs = sim.run;
        if (step % table_every == 0 || step == steps) {
            char a[32], b[32];
            snprintf(a, sizeof a, "%" PRId64 "/%" PRId64, runs[0].used, K);
            snprintf(b, sizeof b, "%" PRId64 "/%" PRId64, runs[1].used, K);
            printf("%8" PRId64 "  %12s  %10s  %12.6f  %10.6f\n", step, a, b, (double)runs[0].loss,
                   (double)runs[1].loss);
            fflush(stdout);
        }
        int last = step == steps;
        if (step % every == 0 || last) {
            viz_panel panels[2];
            if (toy_sim_codebooks(&sim, step) != OPTVQ_OK) {
                fprintf(stderr, "optvq " CMD ": %s\n", optvq_last_error());
                goto done;
            }
            for (int r = 0; r < 2; r++) {
                const toy_quant *t = &runs[r];
                snprintf(subtitles[r], sizeof subtitles[r],
                         "step %" PRId64 "   codes used %" PRId64 "/%" PRId64, step, t->used, K);
                panels[r] = (viz_panel){
                    .title = r == 0 ? "Vanilla VQ (nearest code)" : "OptVQ (Sinkhorn)",
                    .subtitle = subtitles[r],
                    .points = x,
                    .n_points = N,
                    .codes = t->codebook,
                    .n_codes = K,
                    .assign = t->indices,
                    .color = toy_colors[r],
                };
            }
            surf = viz_panels_render(panels, 2, &view, 1.0);
            if (!surf) {
                fprintf(stderr, "optvq " CMD ": %s\n", optvq_last_error());
                goto done;
            }
            viz_palette_map_argb(pal, cairo_image_surface_get_data(surf),
                                 cairo_image_surface_get_stride(surf), width, height, pixels);
            cairo_surface_destroy(surf);
            surf = NULL;
            /* ~8 s for 100 frames; hold the last one */
            if (viz_gif_add_frame(gif, pixels, last ? 300 : 8) != OPTVQ_OK) {
                fprintf(stderr, "optvq " CMD ": %s\n", optvq_last_error());
                goto done;
            }
            frames++;
            if (last) {
                surf = viz_panels_render(panels, 2, &view, 2.0);
                if (!surf || viz_write_png(surf, png_path) != OPTVQ_OK) {
                    fprintf(stderr, "optvq " CMD ": %s\n", optvq_last_error());
                    goto done;
                }
            }
        }
        if (last)
            break;
        if (toy_sim_update(&sim, step) != OPTVQ_OK) {
            fprintf(stderr, "optvq " CMD ": %s\n", optvq_last_error());
            goto done;
        }
    }
    optvq_status st = viz_gif_close(gif);
    gif = NULL;
    if (st != OPTVQ_OK) {
        fprintf(stderr, "optvq " CMD ": %s\n", optvq_last_error());
        goto done;
    }
    int pw, ph;
    viz_panels_size(2, 2.0, &pw, &ph);
    printf("\nwrote %s (%" PRId64 " frames, %dx%d)\n", gif_path, frames, width, height);
    printf("wrote %s (%dx%d)\n", png_path, pw, ph);
    rc = 0;

done:
    fflush(stdout);
    if (surf)
        cairo_surface_destroy(surf);
    viz_gif_abort(gif);
    toy_sim_free(&sim);
    free(pal);
    free(pixels);
    return rc;
}
