/* Line charts (cairo, antialiased) for reports: a few named series over a
 * shared x axis, written as PNG; one chart alone, or several in a grid. */
#ifndef OPTVQ_VIZ_CHART_H
#define OPTVQ_VIZ_CHART_H
#include "optvq/optvq.h"
#include "viz/plot.h"

typedef struct viz_series {
    const char *name;
    viz_rgb color;
    const double *x, *y; /* points with a non-finite y are skipped */
    int n;               /* over 200 points: drawn thinner */
} viz_series;

typedef struct viz_chart {
    const char *title, *x_label, *y_label;
    const viz_series *series;
    int n_series;
    double y_min, y_max;    /* NaN: from the data */
    const char *empty_note; /* shown when no series has a finite point (NULL: "no data") */
} viz_chart;

/* Writes a 640 x 400 chart; y from y_min to y_max (NaN: from the data).
 * Fails when no series has a finite point. */
optvq_status viz_line_chart(const char *path, const char *title, const char *x_label, const char *y_label,
                            const viz_series *series, int n_series, double y_min, double y_max);

/* Writes the charts, 640 x 400 each, in rows of `cols`, as one PNG
 * (atomically: temporary file, fsync, rename). */
optvq_status viz_chart_grid(const char *path, const viz_chart *charts, int n_charts, int cols);

#endif
