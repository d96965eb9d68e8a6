#include "viz/chart.h"

#include "core/error.h"

#include <math.h>
#include <stdio.h>

#define W 640
#define H 400
#define L 70 /* plot area margins */
#define R 20
#define T 40
#define B 50

static double nice_step(double span)
{
    double raw = span / 5.0, p = pow(10.0, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

optvq_status viz_line_chart(const char *path, const char *title, const char *x_label, const char *y_label,
                            const viz_series *series, int n_series, double y_min, double y_max)
{
    double x0 = INFINITY, x1 = -INFINITY, lo = INFINITY, hi = -INFINITY;
    for (int s = 0; s < n_series; s++)
        for (int i = 0; i < series[s].n; i++) {
            if (!isfinite(series[s].y[i]))
                continue;
            x0 = fmin(x0, series[s].x[i]);
            x1 = fmax(x1, series[s].x[i]);
            lo = fmin(lo, series[s].y[i]);
            hi = fmax(hi, series[s].y[i]);
        }
    if (!isfinite(x0))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: nothing to plot", path);
    if (x1 == x0)
        x1 = x0 + 1;
    if (!isnan(y_min))
        lo = y_min;
    if (!isnan(y_max))
        hi = y_max;
    if (hi <= lo)
        hi = lo + 1;
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, W, H);
    cairo_t *cr = cairo_create(surf);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    cairo_set_font_size(cr, 15);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_move_to(cr, L, 24);
    cairo_show_text(cr, title);
    cairo_select_font_face(cr, "sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, 11);
    const double pw = W - L - R, ph = H - T - B;
#define PX(v) (L + ((v)-x0) / (x1 - x0) * pw)
#define PY(v) (T + ph - ((v)-lo) / (hi - lo) * ph)
    /* grid and tick labels */
    double ys = nice_step(hi - lo), xs = nice_step(x1 - x0);
    char buf[64];
    cairo_set_line_width(cr, 1);
    for (double v = ceil(lo / ys) * ys; v <= hi + 1e-9 * ys; v += ys) {
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, L, floor(PY(v)) + 0.5);
        cairo_line_to(cr, L + pw, floor(PY(v)) + 0.5);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
        snprintf(buf, sizeof buf, "%g", fabs(v) < 1e-12 ? 0.0 : v);
        cairo_text_extents_t e;
        cairo_text_extents(cr, buf, &e);
        cairo_move_to(cr, L - 6 - e.x_advance, PY(v) + 4);
        cairo_show_text(cr, buf);
    }
    for (double v = ceil(x0 / xs) * xs; v <= x1 + 1e-9 * xs; v += xs) {
        cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
        snprintf(buf, sizeof buf, "%g", v);
        cairo_text_extents_t e;
        cairo_text_extents(cr, buf, &e);
        cairo_move_to(cr, PX(v) - e.x_advance / 2, T + ph + 16);
        cairo_show_text(cr, buf);
    }
    cairo_set_source_rgb(cr, 0.4, 0.4, 0.4);
    cairo_rectangle(cr, L + 0.5, T + 0.5, pw, ph);
    cairo_stroke(cr);
    cairo_text_extents_t e;
    cairo_text_extents(cr, x_label, &e);
    cairo_move_to(cr, L + pw / 2 - e.x_advance / 2, H - 12);
    cairo_show_text(cr, x_label);
    cairo_save(cr);
    cairo_move_to(cr, 16, T + ph / 2);
    cairo_rotate(cr, -M_PI / 2);
    cairo_text_extents(cr, y_label, &e);
    cairo_rel_move_to(cr, -e.x_advance / 2, 0);
    cairo_show_text(cr, y_label);
    cairo_restore(cr);
    /* series and legend */
    for (int s = 0; s < n_series; s++) {
        const viz_series *sr = &series[s];
        cairo_set_source_rgb(cr, sr->color.r, sr->color.g, sr->color.b);
        cairo_set_line_width(cr, 2.2);
        int started = 0;
        for (int i = 0; i < sr->n; i++) {
            if (!isfinite(sr->y[i]))
                continue;
            double px = PX(sr->x[i]), py = PY(fmin(fmax(sr->y[i], lo), hi));
            if (started)
                cairo_line_to(cr, px, py);
            else
                cairo_move_to(cr, px, py);
            started = 1;
        }
        cairo_stroke(cr);
        for (int i = 0; i < sr->n; i++)
            if (isfinite(sr->y[i]) && sr->n <= 40) {
                cairo_arc(cr, PX(sr->x[i]), PY(fmin(fmax(sr->y[i], lo), hi)), 3.2, 0, 2 * M_PI);
                cairo_fill(cr);
            }
        double ly = T + 14 + 18 * s;
        cairo_rectangle(cr, L + 12, ly - 8, 18, 4);
        cairo_fill(cr);
        cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
        cairo_move_to(cr, L + 36, ly - 2);
        cairo_show_text(cr, sr->name);
    }
    cairo_destroy(cr);
    optvq_status st = viz_write_png(surf, path);
    cairo_surface_destroy(surf);
    return st;
}
