#include "viz/plot.h"

#include "core/atomic_file.h"
#include "core/error.h"

#include <math.h>
#include <stdio.h>

/* Scale-1 layout of one panel. */
#define PANEL_W 320.0
#define PANEL_H 360.0
#define PLOT_X 14.0   /* plot square's left edge within the panel */
#define PLOT_Y 46.0   /* its top edge */
#define PLOT_S 292.0  /* its side */

void viz_view_init(viz_view *v)
{
    v->x0 = v->y0 = INFINITY;
    v->x1 = v->y1 = -INFINITY;
}

void viz_view_add(viz_view *v, const float *xy, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double x = xy[2 * i], y = xy[2 * i + 1];
        if (!isfinite(x) || !isfinite(y))
            continue;
        v->x0 = fmin(v->x0, x);
        v->x1 = fmax(v->x1, x);
        v->y0 = fmin(v->y0, y);
        v->y1 = fmax(v->y1, y);
    }
}

void viz_view_square(viz_view *v, double pad)
{
    if (!(v->x0 <= v->x1) || !(v->y0 <= v->y1)) {
        v->x0 = v->y0 = -1.0;
        v->x1 = v->y1 = 1.0;
    }
    double cx = 0.5 * (v->x0 + v->x1), cy = 0.5 * (v->y0 + v->y1);
    double side = fmax(v->x1 - v->x0, v->y1 - v->y0);
    if (side < 1e-6)
        side = 1.0;
    side *= 1.0 + 2.0 * pad;
    v->x0 = cx - 0.5 * side;
    v->x1 = cx + 0.5 * side;
    v->y0 = cy - 0.5 * side;
    v->y1 = cy + 0.5 * side;
}

void viz_panels_size(int n_panels, double scale, int *width, int *height)
{
    *width = (int)ceil(PANEL_W * n_panels * scale);
    *height = (int)ceil(PANEL_H * scale);
}

/* A round tick spacing giving about 4-8 ticks over `range`. */
static double tick_step(double range)
{
    double raw = range / 6.0;
    double mag = pow(10.0, floor(log10(raw)));
    double f = raw / mag;
    return (f < 1.5 ? 1.0 : f < 3.5 ? 2.0 : f < 7.5 ? 5.0 : 10.0) * mag;
}

static void text_centered(cairo_t *cr, const char *s, double cx, double baseline)
{
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    cairo_move_to(cr, cx - (e.x_advance * 0.5), baseline);
    cairo_show_text(cr, s);
}

static void draw_panel(cairo_t *cr, const viz_panel *p, const viz_view *v, double ox)
{
    const double px = ox + PLOT_X, py = PLOT_Y, s = PLOT_S;
    const double sx = s / (v->x1 - v->x0), sy = s / (v->y1 - v->y0);
#define MAPX(x) (px + ((x) - v->x0) * sx)
#define MAPY(y) (py + (v->y1 - (y)) * sy)

    /* titles */
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_select_font_face(cr, "sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    cairo_set_font_size(cr, 14.0);
    if (p->title)
        text_centered(cr, p->title, ox + PANEL_W * 0.5, 19.0);
    cairo_select_font_face(cr, "sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, 12.0);
    if (p->subtitle)
        text_centered(cr, p->subtitle, ox + PANEL_W * 0.5, 37.0);

    /* grid, axes through 0, frame */
    cairo_save(cr);
    cairo_rectangle(cr, px, py, s, s);
    cairo_clip(cr);
    double step = tick_step(v->x1 - v->x0);
    cairo_set_line_width(cr, 1.0);
    cairo_set_source_rgb(cr, 0.92, 0.92, 0.92);
    for (double t = ceil(v->x0 / step) * step; t <= v->x1; t += step) {
        cairo_move_to(cr, floor(MAPX(t)) + 0.5, py);
        cairo_line_to(cr, floor(MAPX(t)) + 0.5, py + s);
    }
    for (double t = ceil(v->y0 / step) * step; t <= v->y1; t += step) {
        cairo_move_to(cr, px, floor(MAPY(t)) + 0.5);
        cairo_line_to(cr, px + s, floor(MAPY(t)) + 0.5);
    }
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.75, 0.75, 0.75);
    if (v->x0 < 0 && v->x1 > 0) {
        cairo_move_to(cr, floor(MAPX(0.0)) + 0.5, py);
        cairo_line_to(cr, floor(MAPX(0.0)) + 0.5, py + s);
    }
    if (v->y0 < 0 && v->y1 > 0) {
        cairo_move_to(cr, px, floor(MAPY(0.0)) + 0.5);
        cairo_line_to(cr, px + s, floor(MAPY(0.0)) + 0.5);
    }
    cairo_stroke(cr);

    /* assignment lines */
    if (p->assign) {
        cairo_set_line_width(cr, 0.8);
        cairo_set_source_rgba(cr, p->color.r, p->color.g, p->color.b, 0.45);
        for (int64_t i = 0; i < p->n_points; i++) {
            int64_t k = p->assign[i];
            if (k < 0 || k >= p->n_codes)
                continue;
            cairo_move_to(cr, MAPX(p->points[2 * i]), MAPY(p->points[2 * i + 1]));
            cairo_line_to(cr, MAPX(p->codes[2 * k]), MAPY(p->codes[2 * k + 1]));
        }
        cairo_stroke(cr);
    }

    /* data points */
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    for (int64_t i = 0; i < p->n_points; i++) {
        double x = MAPX(p->points[2 * i]), y = MAPY(p->points[2 * i + 1]);
        cairo_new_sub_path(cr);
        cairo_arc(cr, x, y, 2.6, 0.0, 2.0 * M_PI);
    }
    cairo_fill(cr);

    /* codes: filled when some point uses them, hollow when dead */
    unsigned char used_small[1024];
    unsigned char *used = p->n_codes <= 1024 ? used_small : NULL;
    if (used) {
        for (int64_t k = 0; k < p->n_codes; k++)
            used[k] = p->assign == NULL;
        if (p->assign)
            for (int64_t i = 0; i < p->n_points; i++)
                if (p->assign[i] >= 0 && p->assign[i] < p->n_codes)
                    used[p->assign[i]] = 1;
    }
    for (int64_t k = 0; k < p->n_codes; k++) {
        double x = MAPX(p->codes[2 * k]), y = MAPY(p->codes[2 * k + 1]);
        /* a diamond */
        const double r = 5.5;
        cairo_move_to(cr, x, y - r);
        cairo_line_to(cr, x + r, y);
        cairo_line_to(cr, x, y + r);
        cairo_line_to(cr, x - r, y);
        cairo_close_path(cr);
        if (!used || used[k]) {
            cairo_set_source_rgb(cr, p->color.r, p->color.g, p->color.b);
            cairo_fill_preserve(cr);
            cairo_set_source_rgb(cr, p->color.r * 0.5, p->color.g * 0.5, p->color.b * 0.5);
            cairo_set_line_width(cr, 1.0);
            cairo_stroke(cr);
        } else {
            cairo_set_source_rgb(cr, 1.0, 1.0, 1.0);
            cairo_fill_preserve(cr);
            cairo_set_source_rgb(cr, p->color.r, p->color.g, p->color.b);
            cairo_set_line_width(cr, 1.6);
            cairo_stroke(cr);
        }
    }
    cairo_restore(cr);

    cairo_set_source_rgb(cr, 0.55, 0.55, 0.55);
    cairo_set_line_width(cr, 1.0);
    cairo_rectangle(cr, px - 0.5, py - 0.5, s + 1.0, s + 1.0);
    cairo_stroke(cr);

    /* legend under the plot */
    const double ly = py + s + 14.0;
    double lx = px + 4.0;
    cairo_set_font_size(cr, 10.0);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_arc(cr, lx + 3.0, ly - 3.5, 2.6, 0.0, 2.0 * M_PI);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_move_to(cr, lx + 10.0, ly);
    cairo_show_text(cr, "data");
    lx += 52.0;
    cairo_move_to(cr, lx + 3.0, ly - 8.0);
    cairo_line_to(cr, lx + 7.5, ly - 3.5);
    cairo_line_to(cr, lx + 3.0, ly + 1.0);
    cairo_line_to(cr, lx - 1.5, ly - 3.5);
    cairo_close_path(cr);
    cairo_set_source_rgb(cr, p->color.r, p->color.g, p->color.b);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_move_to(cr, lx + 12.0, ly);
    cairo_show_text(cr, "code in use");
    lx += 90.0;
    cairo_move_to(cr, lx + 3.0, ly - 8.0);
    cairo_line_to(cr, lx + 7.5, ly - 3.5);
    cairo_line_to(cr, lx + 3.0, ly + 1.0);
    cairo_line_to(cr, lx - 1.5, ly - 3.5);
    cairo_close_path(cr);
    cairo_set_source_rgb(cr, p->color.r, p->color.g, p->color.b);
    cairo_set_line_width(cr, 1.4);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_move_to(cr, lx + 12.0, ly);
    cairo_show_text(cr, "dead code");
#undef MAPX
#undef MAPY
}

void viz_panels_draw(cairo_t *cr, const viz_panel *panels, int n_panels, const viz_view *view)
{
    cairo_save(cr);
    cairo_set_source_rgb(cr, 1.0, 1.0, 1.0);
    cairo_paint(cr);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    for (int i = 0; i < n_panels; i++)
        draw_panel(cr, &panels[i], view, PANEL_W * i);
    /* thin separators between panels */
    cairo_set_source_rgb(cr, 0.85, 0.85, 0.85);
    cairo_set_line_width(cr, 1.0);
    for (int i = 1; i < n_panels; i++) {
        cairo_move_to(cr, PANEL_W * i + 0.5, 8.0);
        cairo_line_to(cr, PANEL_W * i + 0.5, PANEL_H - 8.0);
    }
    cairo_stroke(cr);
    cairo_restore(cr);
}

cairo_surface_t *viz_panels_render(const viz_panel *panels, int n_panels, const viz_view *view,
                                   double scale)
{
    int w, h;
    viz_panels_size(n_panels, scale, &w, &h);
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, w, h);
    if (cairo_surface_status(surf) != CAIRO_STATUS_SUCCESS) {
        optvq_fail(OPTVQ_ERR_NOMEM, "cannot create a %dx%d image: %s", w, h,
                   cairo_status_to_string(cairo_surface_status(surf)));
        cairo_surface_destroy(surf);
        return NULL;
    }
    cairo_t *cr = cairo_create(surf);
    cairo_scale(cr, scale, scale);
    viz_panels_draw(cr, panels, n_panels, view);
    cairo_status_t st = cairo_status(cr);
    cairo_destroy(cr);
    cairo_surface_flush(surf);
    if (st != CAIRO_STATUS_SUCCESS) {
        optvq_fail(OPTVQ_ERR_STATE, "drawing failed: %s", cairo_status_to_string(st));
        cairo_surface_destroy(surf);
        return NULL;
    }
    return surf;
}

static cairo_status_t png_write_cb(void *closure, const unsigned char *data, unsigned int length)
{
    FILE *fp = closure;
    return fwrite(data, 1, length, fp) == length ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

optvq_status viz_write_png(cairo_surface_t *surface, const char *path)
{
    optvq_atomic_file f;
    OPTVQ_TRY(optvq_atomic_open(&f, path));
    cairo_status_t st = cairo_surface_write_to_png_stream(surface, png_write_cb, f.fp);
    if (st != CAIRO_STATUS_SUCCESS) {
        optvq_atomic_abort(&f);
        return optvq_fail(OPTVQ_ERR_IO, "%s: cannot write PNG: %s", path,
                          cairo_status_to_string(st));
    }
    return optvq_atomic_commit(&f);
}
