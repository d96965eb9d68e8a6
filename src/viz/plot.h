/* Cairo drawing of the 2-D toy: data points, codes and assignment lines, one
 * square panel per quantizer, side by side. */
#ifndef OPTVQ_VIZ_PLOT_H
#define OPTVQ_VIZ_PLOT_H
#include <cairo.h>
#include <stdint.h>
#include "optvq/optvq.h"

typedef struct viz_rgb {
    double r, g, b;
} viz_rgb;

/* The data window shown in every panel. */
typedef struct viz_view {
    double x0, x1, y0, y1;
} viz_view;

/* An empty window; viz_view_add grows it to cover points; viz_view_square
 * makes it square (the panels are) and pads it by `pad` of its side. */
void viz_view_init(viz_view *v);
void viz_view_add(viz_view *v, const float *xy, int64_t n);
void viz_view_square(viz_view *v, double pad);

typedef struct viz_panel {
    const char *title;       /* first line, bold */
    const char *subtitle;    /* second line */
    const float *points;     /* (n_points, 2) */
    int64_t n_points;
    const float *codes;      /* (n_codes, 2) */
    int64_t n_codes;
    const int64_t *assign;   /* n_points indices into codes, or NULL */
    viz_rgb color;           /* the codes' colour */
} viz_panel;

/* Size in pixels of n_panels panels drawn at `scale` (1: 320 x 360 each). */
void viz_panels_size(int n_panels, double scale, int *width, int *height);

/* Draws the panels onto cr, whose user space is the scale-1 layout. */
void viz_panels_draw(cairo_t *cr, const viz_panel *panels, int n_panels, const viz_view *view);

/* Renders the panels into a new opaque CAIRO_FORMAT_ARGB32 image surface at
 * `scale`. Returns NULL (optvq_last_error set) on failure. */
cairo_surface_t *viz_panels_render(const viz_panel *panels, int n_panels, const viz_view *view,
                                   double scale);

/* Writes the surface as PNG atomically (temporary file, fsync, rename). */
optvq_status viz_write_png(cairo_surface_t *surface, const char *path);

#endif
