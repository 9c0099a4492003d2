/* plot.h: charts of training curves drawn with Cairo into SVG, PNG or PDF
 * (cli/plot.c): a figure is a grid of panels, a panel a set of series over
 * one x axis. Pure drawing: the caller (cli/cmd_plot.c) reads the store and
 * fills the structs; nothing here knows what a metric is.
 *
 * What a panel shows (docs/observe.md):
 *   KPLOT_LINE     the raw values as a faint line and, when the figure's
 *                  smoothing is > 0, TensorBoard's debiased exponential
 *                  moving average as a solid line over them;
 *   KPLOT_POINTS   markers joined by a thin line (validation measurements);
 *   KPLOT_HLINE    a dashed horizontal line across the panel at the series'
 *                  last finite y (a baseline such as the unigram loss).
 * Axes get "nice" ticks (1, 2, 5 x 10^k; decades, or nice values placed
 * on a log axis, when log scaled), light grid lines and labels; every panel
 * has a legend, put in the corner the data leaves most empty.
 *
 * SVG keeps its text as <text> elements (searchable, selectable, editable;
 * placed with Cairo's metrics of the same font); PNG and PDF get Cairo's
 * glyphs. Sizes are in points (1/72 in) for SVG and PDF, in pixels for PNG
 * (times scale). */
#ifndef KILN_CLI_PLOT_H
#define KILN_CLI_PLOT_H

#include <stddef.h>

enum { KPLOT_SVG = 0, KPLOT_PNG = 1, KPLOT_PDF = 2 };
enum { KPLOT_LINE = 0, KPLOT_POINTS = 1, KPLOT_HLINE = 2 };
/* How x tick labels read: plain numbers (steps: 20k past 10,000), counts
 * with SI suffixes (tokens: 1.5M), or the numbers as given (time in the
 * unit the caller chose and named in xlabel). */
enum { KPLOT_X_STEPS = 0, KPLOT_X_COUNT = 1, KPLOT_X_PLAIN = 2 };
/* The y scale of a panel: linear, log, or decided from the data (log when
 * every value is > 0 and they span at least 1.5 decades). */
enum { KPLOT_LOG_OFF = 0, KPLOT_LOG_ON = 1, KPLOT_LOG_AUTO = 2 };

typedef struct kplot_series {
    const char *label;        /* legend text (the caller's; read during kplot_write) */
    int style;                /* KPLOT_LINE, KPLOT_POINTS, KPLOT_HLINE */
    int color;                /* index into the palette (Tableau 10; wraps); < 0: dark grey */
    int raw;                  /* KPLOT_LINE: drawn as is, never smoothed (a schedule, not a noisy measure) */
    size_t n;
    const double *x, *y;      /* (n) each; non-finite values are skipped */
} kplot_series;

typedef struct kplot_panel {
    const char *title;        /* above the panel */
    const char *ylabel;       /* beside the y axis (" (log)" is added when log scaled) */
    int log_y;                /* KPLOT_LOG_* */
    size_t n_series;
    const kplot_series *series;
} kplot_panel;

typedef struct kplot_figure {
    const char *title;        /* above everything (NULL: none) */
    const char *caption;      /* small text under the title (NULL: none) */
    const char *xlabel;       /* under every panel's x axis */
    int xformat;              /* KPLOT_X_* */
    double smoothing;         /* EMA weight in [0, 1): 0 draws the raw line only */
    double width, height;     /* the whole figure: points (SVG, PDF), pixels (PNG) */
    double scale;             /* PNG only: pixels per unit (1 when <= 0) */
    int columns;              /* panels per row (<= 0: 1, 2 or 3 by count) */
    size_t n_panels;
    const kplot_panel *panels;
} kplot_figure;

/* KPLOT_SVG, KPLOT_PNG or KPLOT_PDF from a file name's extension (.svg,
 * .png, .pdf, any case), or -1. */
int kplot_format_of(const char *path);

/* Panels per row for n panels when the caller does not choose. */
int kplot_default_columns(size_t n);

/* Draws the figure into path (written to path.tmp-PID, then renamed, so a
 * reader never sees half a file). Returns 0, or EX_CANTCREAT (the file
 * cannot be made or written) / EX_SOFTWARE (Cairo failed) with err naming
 * the file and the reason. Allocates only for the duration of the call. */
int kplot_write(const kplot_figure *f, const char *path, int format, char *err, size_t errlen);

/* Nice ticks: up to max values, multiples of *step (1, 2 or 5 x 10^k),
 * inside [lo, hi], about target of them. Returns how many. */
int kplot_ticks(double lo, double hi, int target, double *ticks, int max, double *step);

/* TensorBoard's smoothing: out[i] = debiased EMA of the finite values of
 * y[0..i] with weight w (non-finite inputs give NaN and are skipped). */
void kplot_smooth(const double *y, size_t n, double w, double *out);

#endif
