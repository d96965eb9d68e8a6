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

/* The x range and the y range of the finite points; 0 when there is none. */
static int data_range(const viz_chart *c, double *x0, double *x1, double *lo, double *hi)
{
    *x0 = *lo = INFINITY;
    *x1 = *hi = -INFINITY;
    for (int s = 0; s < c->n_series; s++)
        for (int i = 0; i < c->series[s].n; i++) {
            if (!isfinite(c->series[s].y[i]) || !isfinite(c->series[s].x[i]))
                continue;
            *x0 = fmin(*x0, c->series[s].x[i]);
            *x1 = fmax(*x1, c->series[s].x[i]);
            *lo = fmin(*lo, c->series[s].y[i]);
            *hi = fmax(*hi, c->series[s].y[i]);
        }
    return isfinite(*x0);
}

static void draw_title(cairo_t *cr, const char *title)
{
    cairo_select_font_face(cr, "sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    cairo_set_font_size(cr, 15);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_move_to(cr, L, 24);
    cairo_show_text(cr, title);
    cairo_select_font_face(cr, "sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, 11);
}

/* One chart in the W x H cell whose top-left corner is the current origin. */
static void draw_chart(cairo_t *cr, const viz_chart *c)
{
    const double pw = W - L - R, ph = H - T - B;
    double x0, x1, lo, hi;
    draw_title(cr, c->title);
    if (!data_range(c, &x0, &x1, &lo, &hi)) {
        const char *note = c->empty_note ? c->empty_note : "no data";
        cairo_text_extents_t e;
        cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
        cairo_rectangle(cr, L + 0.5, T + 0.5, pw, ph);
        cairo_stroke(cr);
        cairo_set_font_size(cr, 14);
        cairo_text_extents(cr, note, &e);
        cairo_move_to(cr, L + pw / 2 - e.x_advance / 2, T + ph / 2);
        cairo_show_text(cr, note);
        return;
    }
    if (x1 == x0)
        x1 = x0 + 1;
    const double margin = 0.05 * (hi - lo); /* points on the frame stay visible */
    lo = isnan(c->y_min) ? lo - margin : c->y_min;
    hi = isnan(c->y_max) ? hi + margin : c->y_max;
    if (hi <= lo)
        hi = lo + (lo != 0 ? fabs(lo) * 0.1 : 1);
#define PX(v) (L + ((v)-x0) / (x1 - x0) * pw)
#define PY(v) (T + ph - ((v)-lo) / (hi - lo) * ph)
    /* grid and tick labels */
    double ys = nice_step(hi - lo), xs = nice_step(x1 - x0);
    int integral_x = 1; /* epochs: no ticks between them */
    for (int s = 0; s < c->n_series && integral_x; s++)
        for (int i = 0; i < c->series[s].n; i++)
            if (isfinite(c->series[s].x[i]) && c->series[s].x[i] != floor(c->series[s].x[i]))
                integral_x = 0;
    if (integral_x)
        xs = fmax(xs, 1.0);
    char buf[64];
    cairo_set_line_width(cr, 1);
    for (double v = ceil(lo / ys) * ys; v <= hi + 1e-9 * ys; v += ys) {
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, L, floor(PY(v)) + 0.5);
        cairo_line_to(cr, L + pw, floor(PY(v)) + 0.5);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
        snprintf(buf, sizeof buf, "%g", fabs(v) < 1e-9 * ys ? 0.0 : v);
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
    cairo_text_extents(cr, c->x_label, &e);
    cairo_move_to(cr, L + pw / 2 - e.x_advance / 2, H - 12);
    cairo_show_text(cr, c->x_label);
    cairo_save(cr);
    cairo_move_to(cr, 16, T + ph / 2);
    cairo_rotate(cr, -M_PI / 2);
    cairo_text_extents(cr, c->y_label, &e);
    cairo_rel_move_to(cr, -e.x_advance / 2, 0);
    cairo_show_text(cr, c->y_label);
    cairo_restore(cr);
    /* series, clipped to the plot area */
    cairo_save(cr);
    cairo_rectangle(cr, L, T, pw, ph);
    cairo_clip(cr);
    for (int s = 0; s < c->n_series; s++) {
        const viz_series *sr = &c->series[s];
        cairo_set_source_rgb(cr, sr->color.r, sr->color.g, sr->color.b);
        cairo_set_line_width(cr, sr->n > 200 ? 1.3 : 2.2); /* dense, noisy curves stay readable thin */
        int started = 0;
        for (int i = 0; i < sr->n; i++) {
            if (!isfinite(sr->y[i]) || !isfinite(sr->x[i]))
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
            if (isfinite(sr->y[i]) && isfinite(sr->x[i]) && sr->n <= 40) {
                cairo_arc(cr, PX(sr->x[i]), PY(fmin(fmax(sr->y[i], lo), hi)), 3.2, 0, 2 * M_PI);
                cairo_fill(cr);
            }
    }
    cairo_restore(cr);
    /* the legend, in the corner of the plot that the curves cross least, on a
     * light box so that it stays readable where they do cross it */
    double text_w = 0;
    for (int s = 0; s < c->n_series; s++) {
        cairo_text_extents(cr, c->series[s].name, &e);
        text_w = fmax(text_w, e.x_advance);
    }
    const double bw = 36 + text_w, bh = 18.0 * c->n_series + 2;
    const double bx[4] = {L + 6, L + pw - 6 - bw, L + 6, L + pw - 6 - bw};
    const double by[4] = {T + 4, T + 4, T + ph - 4 - bh, T + ph - 4 - bh};
    int hits[4] = {0, 0, 0, 0};
    for (int s = 0; s < c->n_series; s++) {
        const viz_series *sr = &c->series[s];
        double qx = NAN, qy = NAN;
        for (int i = 0; i < sr->n; i++) {
            if (!isfinite(sr->y[i]) || !isfinite(sr->x[i]))
                continue;
            double px = PX(sr->x[i]), py = PY(fmin(fmax(sr->y[i], lo), hi));
            for (int k = isnan(qx) ? 8 : 1; k <= 8; k++) { /* points along the segment from the previous one */
                double sx = isnan(qx) ? px : qx + (px - qx) * k / 8, sy = isnan(qx) ? py : qy + (py - qy) * k / 8;
                for (int b = 0; b < 4; b++)
                    hits[b] += sx >= bx[b] && sx <= bx[b] + bw && sy >= by[b] && sy <= by[b] + bh;
            }
            qx = px;
            qy = py;
        }
    }
    int corner = 0;
    for (int b = 1; b < 4; b++)
        if (hits[b] < hits[corner])
            corner = b;
#undef PX
#undef PY
    if (c->n_series > 0) {
        cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
        cairo_rectangle(cr, bx[corner], by[corner], bw, bh);
        cairo_fill(cr);
    }
    for (int s = 0; s < c->n_series; s++) {
        const viz_series *sr = &c->series[s];
        const double lx = bx[corner] - 6 - L, ly = by[corner] - 4 + 14 + 18 * s;
        cairo_set_source_rgb(cr, sr->color.r, sr->color.g, sr->color.b);
        cairo_rectangle(cr, L + lx + 12, ly - 8, 18, 4);
        cairo_fill(cr);
        cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
        cairo_move_to(cr, L + lx + 36, ly - 2);
        cairo_show_text(cr, sr->name);
    }
}

optvq_status viz_chart_grid(const char *path, const viz_chart *charts, int n_charts, int cols)
{
    if (n_charts < 1 || cols < 1)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: no charts to draw", path);
    if (cols > n_charts)
        cols = n_charts;
    const int rows = (n_charts + cols - 1) / cols;
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, W * cols, H * rows);
    if (cairo_surface_status(surf) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(surf);
        return optvq_fail(OPTVQ_ERR_NOMEM, "%s: cannot create a %d x %d image", path, W * cols, H * rows);
    }
    cairo_t *cr = cairo_create(surf);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    for (int i = 0; i < n_charts; i++) {
        cairo_save(cr);
        cairo_translate(cr, W * (i % cols), H * (i / cols));
        draw_chart(cr, &charts[i]);
        cairo_restore(cr);
    }
    cairo_destroy(cr);
    optvq_status st = viz_write_png(surf, path);
    cairo_surface_destroy(surf);
    return st;
}

optvq_status viz_line_chart(const char *path, const char *title, const char *x_label, const char *y_label,
                            const viz_series *series, int n_series, double y_min, double y_max)
{
    const viz_chart c = {title, x_label, y_label, series, n_series, y_min, y_max, NULL};
    double x0, x1, lo, hi;
    if (!data_range(&c, &x0, &x1, &lo, &hi))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: nothing to plot", path);
    return viz_chart_grid(path, &c, 1, 1);
}
