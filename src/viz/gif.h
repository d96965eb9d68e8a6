/* Animated GIF output through giflib, written atomically (temporary file,
 * fsync, rename), plus a fixed 256-colour palette to map RGB images onto. */
#ifndef OPTVQ_VIZ_GIF_H
#define OPTVQ_VIZ_GIF_H
#include <stdint.h>
#include "optvq/optvq.h"

/* Palette index the GIF writer reserves for "unchanged since the previous
 * frame" (transparent); the palettes built below never use it. */
#define VIZ_GIF_KEEP 255

/* A fixed palette of 255 colours (+ the reserved VIZ_GIF_KEEP): a 6x6x6
 * colour cube (levels 0, 51, ..., 255), greys between the cube's, and tints
 * (blends with white) of up to 3 accent colours given as 0..255 RGB triples,
 * so that thin translucent lines in those colours keep their hue. */
void viz_palette_build(uint8_t rgb[768], const uint8_t (*accents)[3], int n_accents);

/* Maps RGB pixels onto a palette (nearest colour, via a 32x32x32 table). */
typedef struct viz_palette_map {
    uint8_t rgb[768];
    uint8_t lut[32 * 32 * 32];
} viz_palette_map;

void viz_palette_map_init(viz_palette_map *map, const uint8_t rgb[768]);
/* `argb` is a cairo CAIRO_FORMAT_ARGB32/RGB24 image (native-endian uint32 per
 * pixel, opaque); `stride` in bytes. Writes width*height indices. */
void viz_palette_map_argb(const viz_palette_map *map, const uint8_t *argb, int stride, int width,
                          int height, uint8_t *indices);

typedef struct viz_gif viz_gif;

/* Starts an animated GIF of width x height with the global `palette` (256
 * colours), looping forever. Frames after the first are stored as the
 * rectangle that changed, unchanged pixels transparent (VIZ_GIF_KEEP), which
 * keeps animations of mostly still pictures small. Failures set
 * optvq_last_error(). */
optvq_status viz_gif_open(const char *path, int width, int height, const uint8_t palette[768],
                          viz_gif **out);
/* Appends one full frame of width*height palette indices, shown for delay_cs
 * 1/100 s. A frame that uses VIZ_GIF_KEEP itself is stored without
 * transparency. */
optvq_status viz_gif_add_frame(viz_gif *gif, const uint8_t *indices, int delay_cs);
/* Finishes the file and renames it into place; frees gif in every case. */
optvq_status viz_gif_close(viz_gif *gif);
/* Discards the partial file; frees gif. NULL is fine. */
void viz_gif_abort(viz_gif *gif);

#endif
