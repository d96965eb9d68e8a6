/* Line charts (cairo, antialiased) for reports: a few named series over a
 * shared x axis, written as PNG. */
#ifndef OPTVQ_VIZ_CHART_H
#define OPTVQ_VIZ_CHART_H
#include "optvq/optvq.h"
#include "viz/plot.h"

typedef struct viz_series {
    const char *name;
    viz_rgb color;
    const double *x, *y;
    int n;
} viz_series;

/* Writes a 640 x 400 chart; y from y_min to y_max (NaN: from the data). */
optvq_status viz_line_chart(const char *path, const char *title, const char *x_label, const char *y_label,
                            const viz_series *series, int n_series, double y_min, double y_max);

#endif
