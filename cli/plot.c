/* plot.c: training-curve charts with Cairo into SVG, PNG and PDF (plot.h).
 *
 * A figure is laid out as a grid of cells, one panel each:
 *
 *   +-------------------------------------------------+
 *   |  title                                          |  cell top: the panel's title
 *   |  +-------------------------------------------+  |
 *   | y|  grid, series (clipped), legend           |  |  plot area
 *   | l|                                           |  |
 *   |  +-------------------------------------------+  |
 *   |     x tick labels          xlabel              |
 *   +-------------------------------------------------+
 *
 * The left margin is measured from the widest y tick label, so labels never
 * overlap the axis; x ticks are thinned until their labels do not touch.
 * Text goes through one function (text()): drawn with Cairo's toy text API
 * on PNG and PDF, recorded and appended to the SVG as <text> elements
 * (positioned with the same Cairo font metrics and anchored, so a viewer's
 * own copy of the font lands in the same place).
 *
 * Series with more points than the plot has pixel columns (x 3) are
 * decimated per column to first, min, max and last (the M4 reduction): the
 * picture is the same, the file stays small. */
#define _GNU_SOURCE
#include "cli/plot.h"

#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <cairo.h>
#include <errno.h>
#include <fontconfig/fontconfig.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <unistd.h>

#include "util/util.h"

#define FONT_FAMILY "sans-serif"
#define SVG_FONTS "DejaVu Sans, Verdana, Helvetica, Arial, sans-serif"

/* ---- colours ------------------------------------------------------------------------- */

typedef struct rgb { double r, g, b; } rgb;

static rgb palette(int i)
{
    static const unsigned tab10[10] = {0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd,
                                       0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf};
    unsigned c = i < 0 ? 0x444444 : tab10[i % 10];
    return (rgb){((c >> 16) & 255) / 255.0, ((c >> 8) & 255) / 255.0, (c & 255) / 255.0};
}

static const rgb INK = {0.13, 0.13, 0.13}, MUTED = {0.40, 0.40, 0.40}, GRID = {0.89, 0.89, 0.89},
                 MINOR = {0.95, 0.95, 0.95}, FRAME = {0.55, 0.55, 0.55};

/* ---- text ------------------------------------------------------------------------------ */

enum { H_LEFT, H_CENTER, H_RIGHT };
enum { V_BASE, V_MIDDLE, V_TOP };

typedef struct rec_text {
    double x, y;       /* the anchor on the baseline; for turned text the rotation's centre */
    double dy;         /* turned text: the baseline's offset in the turned frame */
    char *s;           /* valid UTF-8, owned */
    double size;
    int bold, anchor, rotate;
    rgb c;
} rec_text;

typedef struct canvas {
    cairo_t *cr;
    int svg;           /* 1: text is recorded for the SVG, not drawn */
    rec_text *t;
    size_t nt, cap;
} canvas;

/* s with ill-formed UTF-8 replaced by U+FFFD and control characters left
 * out (Cairo and XML take neither); owned by the caller. */
static char *clean_utf8(const char *s)
{
    kbuf b = {0};
    kbuf_put_utf8(&b, s, strlen(s), 1);
    kbuf_putc(&b, '\0');
    return b.data; /* kbuf's memory: malloc'd */
}

static void font(canvas *c, double size, int bold)
{
    cairo_select_font_face(c->cr, FONT_FAMILY, CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(c->cr, size);
}

static double text_width(canvas *c, const char *s, double size, int bold)
{
    char *u = clean_utf8(s);
    font(c, size, bold);
    cairo_text_extents_t te;
    cairo_text_extents(c->cr, u, &te);
    free(u);
    return te.x_advance;
}

/* Draws (or records) s with its anchor at (x, y): h says which end of the
 * text is at x, v whether y is the baseline, the middle or the top of the
 * capitals; rotate turns it 90 degrees counter-clockwise about (x, y). */
static void text(canvas *c, double x, double y, const char *s, double size, int bold, int h, int v, int rotate, rgb col)
{
    char *u = clean_utf8(s);
    double cap = 0.72 * size; /* cap height of DejaVu Sans / Helvetica-like faces */
    double dy = v == V_MIDDLE ? cap / 2 : v == V_TOP ? cap : 0;
    if (c->svg) {
        if (c->nt == c->cap) {
            c->cap = c->cap ? 2 * c->cap : 64;
            c->t = xrealloc(c->t, c->cap * sizeof *c->t);
        }
        /* turned text keeps its anchor as the centre of the rotation; the
         * baseline offset applies in the turned frame (svg_text) */
        c->t[c->nt++] = (rec_text){x, rotate ? y : y + dy, dy, u, size, bold, h, rotate, col};
        return;
    }
    font(c, size, bold);
    cairo_text_extents_t te;
    cairo_text_extents(c->cr, u, &te);
    double dx = h == H_CENTER ? -te.x_advance / 2 : h == H_RIGHT ? -te.x_advance : 0;
    cairo_save(c->cr);
    cairo_translate(c->cr, x, y);
    if (rotate) cairo_rotate(c->cr, -M_PI / 2);
    cairo_move_to(c->cr, dx, dy);
    cairo_set_source_rgb(c->cr, col.r, col.g, col.b);
    cairo_show_text(c->cr, u);
    cairo_restore(c->cr);
    free(u);
}

static void xml_escape(kbuf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': kbuf_puts(b, "&amp;"); break;
        case '<': kbuf_puts(b, "&lt;"); break;
        case '>': kbuf_puts(b, "&gt;"); break;
        case '"': kbuf_puts(b, "&quot;"); break;
        default: kbuf_putc(b, *s);
        }
    }
}

/* The recorded text as one SVG group. */
static void svg_text(const canvas *c, kbuf *b)
{
    kbuf_printf(b, "<g id=\"kiln-text\" font-family=\"%s\">\n", SVG_FONTS);
    for (size_t i = 0; i < c->nt; i++) {
        const rec_text *t = &c->t[i];
        const char *anchor = t->anchor == H_CENTER ? "middle" : t->anchor == H_RIGHT ? "end" : "start";
        char fill[16];
        snprintf(fill, sizeof fill, "#%02x%02x%02x", (int)lround(t->c.r * 255), (int)lround(t->c.g * 255),
                 (int)lround(t->c.b * 255));
        if (t->rotate) {
            /* the anchor at (x, y) turned -90 degrees; the baseline offset for a
             * middle anchor is applied in the turned frame */
            kbuf_printf(b,
                        "<text transform=\"translate(%.2f %.2f) rotate(-90)\" x=\"0\" y=\"%.2f\" font-size=\"%.2f\"%s "
                        "text-anchor=\"%s\" fill=\"%s\">",
                        t->x, t->y, t->dy, t->size, t->bold ? " font-weight=\"bold\"" : "", anchor, fill);
        } else {
            kbuf_printf(b, "<text x=\"%.2f\" y=\"%.2f\" font-size=\"%.2f\"%s text-anchor=\"%s\" fill=\"%s\">", t->x,
                        t->y, t->size, t->bold ? " font-weight=\"bold\"" : "", anchor, fill);
        }
        xml_escape(b, t->s);
        kbuf_puts(b, "</text>\n");
    }
    kbuf_puts(b, "</g>\n");
}

/* ---- numbers ----------------------------------------------------------------------------- */

static double nicenum(double x, int round_)
{
    double e = floor(log10(x)), f = x / pow(10, e), nf;
    if (round_) nf = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
    else nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
    return nf * pow(10, e);
}

int kplot_ticks(double lo, double hi, int target, double *ticks, int max, double *step)
{
    if (!(hi > lo) || !isfinite(lo) || !isfinite(hi)) {
        *step = 1;
        if (max > 0 && isfinite(lo)) {
            ticks[0] = lo;
            return 1;
        }
        return 0;
    }
    if (target < 2) target = 2;
    double d = nicenum((hi - lo) / (target - 1), 1);
    *step = d;
    int n = 0;
    for (double k = ceil(lo / d - 1e-9); n < max; k++) {
        double v = k * d;
        if (v > hi + d * 1e-9) break;
        if (fabs(v) < d * 1e-9) v = 0;
        ticks[n++] = v;
    }
    return n;
}

/* "%g"-like but exact to the tick step: 0.25, 1e-5, 3.5e-4 */
static void fmt_sci(double v, double step, char *buf, size_t n)
{
    int ev = (int)floor(log10(fabs(v))), es = (int)floor(log10(step) + 1e-9);
    int d = ev - es;
    if (d < 0) d = 0;
    if (d > 6) d = 6;
    char t[64];
    snprintf(t, sizeof t, "%.*e", d, v);
    char *e = strchr(t, 'e');
    if (!e) {
        snprintf(buf, n, "%s", t);
        return;
    }
    /* mantissa without trailing zeros, exponent without '+' and leading zeros */
    char mant[24];
    size_t ml = (size_t)(e - t);
    if (ml >= sizeof mant) ml = sizeof mant - 1;
    memcpy(mant, t, ml);
    mant[ml] = '\0';
    if (strchr(mant, '.')) {
        while (ml && mant[ml - 1] == '0') mant[--ml] = '\0';
        if (ml && mant[ml - 1] == '.') mant[--ml] = '\0';
    }
    int ex = atoi(e + 1);
    if (ex < -999 || ex > 999) ex = 0; /* doubles: |ex| <= 324 */
    snprintf(buf, n, "%se%d", mant, ex);
}

/* A tick label for v among ticks spaced by step. */
static void fmt_tick(double v, double step, int format, char *buf, size_t n)
{
    if (fabs(v) < step * 1e-9) {
        snprintf(buf, n, "0");
        return;
    }
    double a = fabs(v);
    if (format == KPLOT_X_COUNT || (format == KPLOT_X_STEPS && a >= 10000)) {
        static const char *const unit[] = {"", "k", "M", "G", "T", "P"};
        int u = 0;
        double m = 1;
        while (u < 5 && a >= 1000 * m) {
            m *= 1000;
            u++;
        }
        double s = step / m;
        int d = s >= 1 ? 0 : (int)ceil(-log10(s) - 1e-9);
        if (d > 6) d = 6;
        snprintf(buf, n, "%.*f%s", d, v / m, unit[u]);
        return;
    }
    if (step < 1e-4 || a >= 1e6) {
        fmt_sci(v, step, buf, n);
        return;
    }
    int d = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    snprintf(buf, n, "%.*f", d, v);
}

void kplot_smooth(const double *y, size_t n, double w, double *out)
{
    double last = 0;
    double wk = 1; /* w^k over the finite values so far */
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(y[i])) {
            out[i] = NAN;
            continue;
        }
        last = last * w + (1 - w) * y[i];
        wk *= w;
        double debias = 1 - wk;
        out[i] = debias > 0 ? last / debias : y[i];
    }
}

/* ---- one panel ---------------------------------------------------------------------------- */

typedef struct axis {
    double lo, hi;       /* data range shown (log10 of it when log) */
    int log;
    double ticks[64];
    int n_ticks;
    double step;         /* linear tick step (value units) */
    int decades;         /* log axis with ticks at powers of ten (minor lines at 2..9) */
} axis;

static double ax_f(const axis *a, double v) { return a->log ? log10(v) : v; }

/* The y values a panel shows (LINE: raw, POINTS, HLINE: its last finite). */
static void y_extent(const kplot_panel *p, int log, double *lo, double *hi, int *any_nonpos)
{
    *lo = INFINITY;
    *hi = -INFINITY;
    *any_nonpos = 0;
    for (size_t s = 0; s < p->n_series; s++) {
        const kplot_series *S = &p->series[s];
        for (size_t i = 0; i < S->n; i++) {
            double v = S->y[i];
            if (!isfinite(v)) continue;
            if (S->style == KPLOT_HLINE) {
                /* only the last finite value counts */
                int later = 0;
                for (size_t k = i + 1; k < S->n; k++) later |= isfinite(S->y[k]);
                if (later) continue;
            }
            if (v <= 0) *any_nonpos = 1;
            if (log && v <= 0) continue;
            if (v < *lo) *lo = v;
            if (v > *hi) *hi = v;
        }
    }
}

static void y_axis(const kplot_panel *p, int target, axis *a)
{
    memset(a, 0, sizeof *a);
    double lo, hi;
    int nonpos;
    y_extent(p, 0, &lo, &hi, &nonpos);
    int log = p->log_y == KPLOT_LOG_ON;
    if (p->log_y == KPLOT_LOG_AUTO) log = !nonpos && lo > 0 && isfinite(hi) && hi / lo >= pow(10, 1.5);
    if (log) {
        y_extent(p, 1, &lo, &hi, &nonpos);
        if (!isfinite(lo)) log = 0, y_extent(p, 0, &lo, &hi, &nonpos);
    }
    if (!isfinite(lo)) lo = 0, hi = 1;
    a->log = log;
    if (log) {
        double l0 = log10(lo), l1 = log10(hi);
        if (l1 - l0 < 1e-9) l0 -= 0.5, l1 += 0.5;
        double pad = (l1 - l0) * 0.04;
        a->lo = l0 - pad;
        a->hi = l1 + pad;
        if (a->hi - a->lo >= 1.0) {
            /* powers of ten (and 2, 5 x when there are few decades) */
            a->decades = 1;
            int k0 = (int)ceil(a->lo - 1e-9), k1 = (int)floor(a->hi + 1e-9);
            int every = 1 + (k1 - k0) / (target > 2 ? target : 2);
            int with25 = (k1 - k0) < 3;
            for (int k = (int)floor(a->lo); k <= k1 && a->n_ticks < 60; k++) {
                static const double m[3] = {1, 2, 5};
                for (int j = 0; j < (with25 ? 3 : 1); j++) {
                    if (!with25 && (k - k0) % every) continue;
                    double v = log10(m[j]) + k;
                    if (v >= a->lo - 1e-9 && v <= a->hi + 1e-9) a->ticks[a->n_ticks++] = m[j] * pow(10, k);
                }
            }
            a->step = 0;
        } else {
            a->n_ticks = kplot_ticks(pow(10, a->lo), pow(10, a->hi), target, a->ticks, 60, &a->step);
        }
        return;
    }
    if (hi - lo < 1e-12 * (fabs(hi) + 1)) {
        double d = fabs(hi) > 0 ? fabs(hi) * 0.1 : 1;
        lo -= d;
        hi += d;
    }
    double pad = (hi - lo) * 0.05;
    a->lo = lo - pad;
    a->hi = hi + pad;
    if (!nonpos && a->lo < 0) a->lo = 0; /* non-negative data keeps a non-negative axis */
    if (lo >= 0 && a->lo < 0) a->lo = 0;
    a->n_ticks = kplot_ticks(a->lo, a->hi, target, a->ticks, 60, &a->step);
}

static void ylabel_of(const axis *a, double v, char *buf, size_t n)
{
    if (a->log && a->decades) {
        double e = floor(log10(v) + 1e-9);
        if (e >= -3 && e <= 4) fmt_tick(v, pow(10, e > 0 ? 0 : e), KPLOT_X_PLAIN, buf, n);
        else fmt_sci(v, pow(10, e), buf, n);
        return;
    }
    fmt_tick(v, a->step, KPLOT_X_PLAIN, buf, n);
}

/* M4 decimation of (x, y) (x ascending) into columns over [x0, x1]; returns the points kept. */
static size_t decimate(const double *x, const double *y, size_t n, double x0, double x1, int cols, double *ox,
                       double *oy)
{
    size_t m = 0;
    size_t i = 0;
    while (i < n) {
        if (!isfinite(y[i]) || !isfinite(x[i])) {
            ox[m] = x[i];
            oy[m++] = NAN; /* keeps the gap */
            i++;
            continue;
        }
        int col = (int)floor((x[i] - x0) / (x1 - x0) * cols);
        size_t first = i, mn = i, mx = i, last = i;
        size_t j = i + 1;
        for (; j < n && isfinite(y[j]) && isfinite(x[j]) && (int)floor((x[j] - x0) / (x1 - x0) * cols) == col; j++) {
            if (y[j] < y[mn]) mn = j;
            if (y[j] > y[mx]) mx = j;
            last = j;
        }
        size_t keep[4] = {first, mn < mx ? mn : mx, mn < mx ? mx : mn, last};
        for (int k = 0; k < 4; k++) {
            if (k && keep[k] == keep[k - 1]) continue;
            ox[m] = x[keep[k]];
            oy[m++] = y[keep[k]];
        }
        i = j;
    }
    return m;
}

typedef struct area { double x, y, w, h; } area;

typedef struct xmap {
    double lo, hi;
} xmap;

static double px_of(const area *A, const xmap *X, double x) { return A->x + (x - X->lo) / (X->hi - X->lo) * A->w; }
static double py_of(const area *A, const axis *Y, double y)
{
    return A->y + A->h - (ax_f(Y, y) - Y->lo) / (Y->hi - Y->lo) * A->h;
}

/* A polyline through the finite points (a gap starts a new piece). */
static void polyline(cairo_t *cr, const area *A, const xmap *X, const axis *Y, const double *x, const double *y,
                     size_t n)
{
    int pen = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i]) || (Y->log && y[i] <= 0)) {
            pen = 0;
            continue;
        }
        double px = px_of(A, X, x[i]), py = py_of(A, Y, y[i]);
        if (pen) cairo_line_to(cr, px, py);
        else cairo_move_to(cr, px, py);
        pen = 1;
    }
}

static double last_finite(const kplot_series *S)
{
    for (size_t i = S->n; i-- > 0;)
        if (isfinite(S->y[i])) return S->y[i];
    return NAN;
}

static void marker(cairo_t *cr, double x, double y, double r)
{
    cairo_new_sub_path(cr);
    cairo_arc(cr, x, y, r, 0, 2 * M_PI);
    cairo_close_path(cr);
}

static void legend_sample(canvas *c, const kplot_series *S, double x, double y, double smoothing)
{
    cairo_t *cr = c->cr;
    rgb col = palette(S->color);
    cairo_save(cr);
    cairo_set_source_rgb(cr, col.r, col.g, col.b);
    if (S->style == KPLOT_HLINE) {
        double dash[2] = {4, 3};
        cairo_set_dash(cr, dash, 2, 0);
        cairo_set_line_width(cr, 1.3);
    } else {
        cairo_set_line_width(cr, S->style == KPLOT_POINTS ? 1.1 : smoothing > 0 ? 1.8 : 1.5);
    }
    cairo_move_to(cr, x, y);
    cairo_line_to(cr, x + 20, y);
    cairo_stroke(cr);
    if (S->style == KPLOT_POINTS) {
        marker(cr, x + 10, y, 3.0);
        cairo_fill_preserve(cr);
        cairo_set_source_rgb(cr, 1, 1, 1);
        cairo_set_line_width(cr, 0.9);
        cairo_stroke(cr);
    }
    cairo_restore(cr);
}

/* Counts the points of the panel's series inside a rectangle (device units). */
static size_t points_in(const kplot_panel *p, const area *A, const xmap *X, const axis *Y, double x0, double y0,
                        double w, double h)
{
    size_t cnt = 0;
    for (size_t s = 0; s < p->n_series; s++) {
        const kplot_series *S = &p->series[s];
        if (S->style == KPLOT_HLINE) {
            double v = last_finite(S);
            if (isfinite(v) && (!Y->log || v > 0)) {
                double py = py_of(A, Y, v);
                if (py >= y0 && py <= y0 + h) cnt += 4; /* a baseline under the legend: a little hidden */
            }
            continue;
        }
        size_t stride = S->n > 4000 ? S->n / 4000 : 1;
        for (size_t i = 0; i < S->n; i += stride) {
            if (!isfinite(S->x[i]) || !isfinite(S->y[i]) || (Y->log && S->y[i] <= 0)) continue;
            double px = px_of(A, X, S->x[i]), py = py_of(A, Y, S->y[i]);
            if (px >= x0 && px <= x0 + w && py >= y0 && py <= y0 + h) cnt += stride;
        }
    }
    return cnt;
}

static void draw_panel(canvas *c, const kplot_figure *f, const kplot_panel *p, area cell, const xmap *X, int px_scale)
{
    cairo_t *cr = c->cr;
    const double fs_tick = 9.5, fs_label = 10.5, fs_title = 12, fs_legend = 9.5;
    /* vertical layout */
    double top = cell.y + 24, bottom = cell.y + cell.h - 38;
    double plot_h = bottom - top;
    if (plot_h < 40) plot_h = 40;
    axis Y;
    int ytarget = (int)(plot_h / 42) + 1;
    if (ytarget < 3) ytarget = 3;
    if (ytarget > 9) ytarget = 9;
    y_axis(p, ytarget, &Y);
    /* left margin from the widest y tick label */
    char lab[64];
    double wmax = 0;
    for (int i = 0; i < Y.n_ticks; i++) {
        ylabel_of(&Y, Y.ticks[i], lab, sizeof lab);
        double w = text_width(c, lab, fs_tick, 0);
        if (w > wmax) wmax = w;
    }
    area A = {cell.x + 8 + 14 + wmax + 6, top, 0, plot_h};
    A.w = cell.x + cell.w - 14 - A.x;
    if (A.w < 40) A.w = 40;

    /* x ticks: as many as fit without their labels touching */
    double xt[64], xstep = 1;
    int nx = 0;
    for (int target = (int)(A.w / 70) + 1; target >= 2; target--) {
        nx = kplot_ticks(X->lo, X->hi, target, xt, 64, &xstep);
        int fits = 1;
        for (int i = 0; i + 1 < nx && fits; i++) {
            char a[64], b[64];
            fmt_tick(xt[i], xstep, f->xformat, a, sizeof a);
            fmt_tick(xt[i + 1], xstep, f->xformat, b, sizeof b);
            double gap = px_of(&A, X, xt[i + 1]) - px_of(&A, X, xt[i]);
            fits = gap > (text_width(c, a, fs_tick, 0) + text_width(c, b, fs_tick, 0)) / 2 + 8;
        }
        if (fits) break;
    }

    /* grid */
    cairo_set_line_width(cr, 0.8);
    if (Y.log && Y.decades) {
        cairo_set_source_rgb(cr, MINOR.r, MINOR.g, MINOR.b);
        for (int k = (int)floor(Y.lo); k <= (int)ceil(Y.hi); k++)
            for (int m = 2; m <= 9; m++) {
                double v = log10(m) + k;
                if (v <= Y.lo || v >= Y.hi) continue;
                double py = A.y + A.h - (v - Y.lo) / (Y.hi - Y.lo) * A.h;
                cairo_move_to(cr, A.x, py);
                cairo_line_to(cr, A.x + A.w, py);
            }
        cairo_stroke(cr);
    }
    cairo_set_source_rgb(cr, GRID.r, GRID.g, GRID.b);
    for (int i = 0; i < Y.n_ticks; i++) {
        double py = py_of(&A, &Y, Y.ticks[i]);
        cairo_move_to(cr, A.x, py);
        cairo_line_to(cr, A.x + A.w, py);
    }
    for (int i = 0; i < nx; i++) {
        double px = px_of(&A, X, xt[i]);
        cairo_move_to(cr, px, A.y);
        cairo_line_to(cr, px, A.y + A.h);
    }
    cairo_stroke(cr);

    /* series, clipped to the plot area */
    cairo_save(cr);
    cairo_rectangle(cr, A.x, A.y, A.w, A.h);
    cairo_clip(cr);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    int cols = (int)(A.w * (px_scale > 0 ? px_scale : 1));
    for (size_t s = 0; s < p->n_series; s++) {
        const kplot_series *S = &p->series[s];
        rgb col = palette(S->color);
        if (S->style == KPLOT_HLINE) {
            double v = last_finite(S);
            if (!isfinite(v) || (Y.log && v <= 0)) continue;
            double py = py_of(&A, &Y, v), dash[2] = {6, 4};
            cairo_save(cr);
            cairo_set_dash(cr, dash, 2, 0);
            cairo_set_line_width(cr, 1.3);
            cairo_set_source_rgb(cr, col.r, col.g, col.b);
            cairo_move_to(cr, A.x, py);
            cairo_line_to(cr, A.x + A.w, py);
            cairo_stroke(cr);
            cairo_restore(cr);
            continue;
        }
        const double *x = S->x, *y = S->y;
        size_t n = S->n;
        double *sm = NULL, *dx = NULL, *dy = NULL;
        if (S->style == KPLOT_LINE) {
            int dec = n > (size_t)cols * 3;
            if (dec) {
                dx = xmalloc(4 * (size_t)(cols + 2) * sizeof *dx + n * sizeof *dx);
                dy = xmalloc(4 * (size_t)(cols + 2) * sizeof *dy + n * sizeof *dy);
            }
            /* raw, faint when a smoothed line goes over it */
            size_t m = dec ? decimate(x, y, n, X->lo, X->hi, cols, dx, dy) : n;
            polyline(cr, &A, X, &Y, dec ? dx : x, dec ? dy : y, m);
            double w = S->raw ? 0 : f->smoothing;
            cairo_set_source_rgba(cr, col.r, col.g, col.b, w > 0 ? 0.28 : 1.0);
            cairo_set_line_width(cr, w > 0 ? 1.0 : 1.5);
            cairo_stroke(cr);
            if (w > 0) {
                sm = xmalloc((n ? n : 1) * sizeof *sm);
                kplot_smooth(y, n, f->smoothing, sm);
                m = dec ? decimate(x, sm, n, X->lo, X->hi, cols, dx, dy) : n;
                polyline(cr, &A, X, &Y, dec ? dx : x, dec ? dy : sm, m);
                cairo_set_source_rgb(cr, col.r, col.g, col.b);
                cairo_set_line_width(cr, 1.8);
                cairo_stroke(cr);
            }
        } else {
            polyline(cr, &A, X, &Y, x, y, n);
            cairo_set_source_rgba(cr, col.r, col.g, col.b, 0.6);
            cairo_set_line_width(cr, 1.1);
            cairo_stroke(cr);
        }
        free(sm);
        free(dx);
        free(dy);
    }
    cairo_restore(cr);
    /* validation markers over the lines, unclipped (a point at the last step
     * sits on the frame); they shrink when they crowd (a long run) */
    for (size_t s = 0; s < p->n_series; s++) {
        const kplot_series *S = &p->series[s];
        if (S->style != KPLOT_POINTS) continue;
        rgb col = palette(S->color);
        double spacing = S->n > 1 ? A.w / (double)S->n : A.w, r = spacing >= 10 ? 3.2 : fmax(1.6, spacing * 0.32);
        for (size_t i = 0; i < S->n; i++) {
            if (!isfinite(S->x[i]) || !isfinite(S->y[i]) || (Y.log && S->y[i] <= 0)) continue;
            marker(cr, px_of(&A, X, S->x[i]), py_of(&A, &Y, S->y[i]), r);
        }
        cairo_set_source_rgb(cr, col.r, col.g, col.b);
        cairo_fill_preserve(cr);
        cairo_set_source_rgb(cr, 1, 1, 1);
        cairo_set_line_width(cr, 0.9);
        cairo_stroke(cr);
    }

    /* frame, ticks, labels */
    cairo_set_source_rgb(cr, FRAME.r, FRAME.g, FRAME.b);
    cairo_set_line_width(cr, 1.0);
    cairo_rectangle(cr, A.x, A.y, A.w, A.h);
    cairo_stroke(cr);
    for (int i = 0; i < Y.n_ticks; i++) {
        double py = py_of(&A, &Y, Y.ticks[i]);
        cairo_move_to(cr, A.x - 4, py);
        cairo_line_to(cr, A.x, py);
    }
    for (int i = 0; i < nx; i++) {
        double px = px_of(&A, X, xt[i]);
        cairo_move_to(cr, px, A.y + A.h);
        cairo_line_to(cr, px, A.y + A.h + 4);
    }
    cairo_stroke(cr);
    for (int i = 0; i < Y.n_ticks; i++) {
        ylabel_of(&Y, Y.ticks[i], lab, sizeof lab);
        text(c, A.x - 6, py_of(&A, &Y, Y.ticks[i]), lab, fs_tick, 0, H_RIGHT, V_MIDDLE, 0, MUTED);
    }
    for (int i = 0; i < nx; i++) {
        fmt_tick(xt[i], xstep, f->xformat, lab, sizeof lab);
        text(c, px_of(&A, X, xt[i]), A.y + A.h + 7, lab, fs_tick, 0, H_CENTER, V_TOP, 0, MUTED);
    }
    if (f->xlabel) text(c, A.x + A.w / 2, A.y + A.h + 31, f->xlabel, fs_label, 0, H_CENTER, V_BASE, 0, INK);
    if (p->ylabel) {
        char yl[256];
        snprintf(yl, sizeof yl, "%s%s", p->ylabel, Y.log ? " (log)" : "");
        text(c, cell.x + 8 + 7, A.y + A.h / 2, yl, fs_label, 0, H_CENTER, V_MIDDLE, 1, INK);
    }
    if (p->title) text(c, A.x, cell.y + 16, p->title, fs_title, 1, H_LEFT, V_BASE, 0, INK);

    /* legend: in the corner the data leaves most empty */
    if (!p->n_series) return;
    double lw = 0;
    for (size_t s = 0; s < p->n_series; s++) {
        double w = text_width(c, p->series[s].label ? p->series[s].label : "", fs_legend, 0);
        if (w > lw) lw = w;
    }
    double bw = 8 + 20 + 6 + lw + 8, bh = 6 + 14.0 * (double)p->n_series + 2;
    if (bw > A.w - 8) bw = A.w - 8;
    /* candidates in order of preference: the corners, then the middles of the sides */
    double xr = A.x + A.w - 6 - bw, xl = A.x + 6, xm = A.x + (A.w - bw) / 2;
    double yt = A.y + 6, yb = A.y + A.h - 6 - bh, ym = A.y + (A.h - bh) / 2;
    double cx[8] = {xr, xl, xr, xl, xr, xl, xm, xm};
    double cy[8] = {yt, yt, yb, yb, ym, ym, yt, yb};
    int best = 0;
    size_t best_n = (size_t)-1;
    for (int k = 0; k < 8; k++) {
        size_t cnt = points_in(p, &A, X, &Y, cx[k], cy[k], bw, bh);
        if (cnt < best_n) best_n = cnt, best = k;
    }
    double lx = cx[best], ly = cy[best];
    cairo_rectangle(cr, lx, ly, bw, bh);
    cairo_set_source_rgba(cr, 1, 1, 1, 0.88);
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 0.82, 0.82, 0.82);
    cairo_set_line_width(cr, 0.8);
    cairo_stroke(cr);
    for (size_t s = 0; s < p->n_series; s++) {
        double y = ly + 6 + 14.0 * (double)s + 7;
        legend_sample(c, &p->series[s], lx + 8, y, p->series[s].raw ? 0 : f->smoothing);
        text(c, lx + 8 + 20 + 6, y, p->series[s].label ? p->series[s].label : "", fs_legend, 0, H_LEFT, V_MIDDLE, 0,
             INK);
    }
}

/* ---- the figure ----------------------------------------------------------------------------- */

int kplot_format_of(const char *path)
{
    const char *dot = strrchr(path, '.');
    if (!dot || strchr(dot, '/')) return -1;
    if (!strcasecmp(dot, ".svg")) return KPLOT_SVG;
    if (!strcasecmp(dot, ".png")) return KPLOT_PNG;
    if (!strcasecmp(dot, ".pdf")) return KPLOT_PDF;
    return -1;
}

int kplot_default_columns(size_t n) { return n <= 1 ? 1 : n <= 4 ? 2 : 3; }

static void draw_figure(canvas *c, const kplot_figure *f, int px_scale)
{
    cairo_t *cr = c->cr;
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    double head = 6;
    if (f->title) {
        text(c, f->width / 2, 22, f->title, 14, 1, H_CENTER, V_BASE, 0, INK);
        head = 30;
    }
    if (f->caption) {
        text(c, f->width / 2, head + 10, f->caption, 9.5, 0, H_CENTER, V_BASE, 0, MUTED);
        head += 16;
    }
    /* the x range, shared by every panel (LINE and POINTS series) */
    xmap X = {INFINITY, -INFINITY};
    for (size_t k = 0; k < f->n_panels; k++)
        for (size_t s = 0; s < f->panels[k].n_series; s++) {
            const kplot_series *S = &f->panels[k].series[s];
            if (S->style == KPLOT_HLINE) continue;
            for (size_t i = 0; i < S->n; i++)
                if (isfinite(S->x[i]) && isfinite(S->y[i])) {
                    if (S->x[i] < X.lo) X.lo = S->x[i];
                    if (S->x[i] > X.hi) X.hi = S->x[i];
                }
        }
    if (!isfinite(X.lo)) X.lo = 0, X.hi = 1;
    if (X.hi - X.lo < 1e-12) X.lo -= 0.5, X.hi += 0.5;
    if (X.lo > 0 && X.lo < (X.hi - X.lo) * 0.05) X.lo = 0;

    int cols = f->columns > 0 ? f->columns : kplot_default_columns(f->n_panels);
    int rows = (int)((f->n_panels + (size_t)cols - 1) / (size_t)cols);
    if (rows < 1) rows = 1;
    double cw = (f->width - 8) / cols, ch = (f->height - head - 4) / rows;
    for (size_t k = 0; k < f->n_panels; k++) {
        area cell = {4 + cw * (double)(k % (size_t)cols), head + ch * (double)(k / (size_t)cols), cw, ch};
        draw_panel(c, f, &f->panels[k], cell, &X, px_scale);
    }
}

static cairo_status_t to_kbuf(void *closure, const unsigned char *data, unsigned int length)
{
    kbuf_append(closure, data, length);
    return CAIRO_STATUS_SUCCESS;
}

static int write_all(const char *path, const char *data, size_t n, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return EX_CANTCREAT;
    }
    size_t w = fwrite(data, 1, n, fp);
    int bad = w != n || fflush(fp) != 0;
    int e = errno;
    if (fclose(fp) != 0 && !bad) bad = 1, e = errno;
    if (bad) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(e));
        unlink(path);
        return EX_CANTCREAT;
    }
    return 0;
}

int kplot_write(const kplot_figure *f, const char *path, int format, char *err, size_t errlen)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
    if (!(f->width >= 16 && f->height >= 16 && f->width <= 100000 && f->height <= 100000)) {
        snprintf(err, errlen, "%s: a figure of %g x %g is not drawable", path, f->width, f->height);
        return EX_SOFTWARE;
    }
    double scale = format == KPLOT_PNG && f->scale > 0 ? f->scale : 1;
    canvas c = {0};
    cairo_surface_t *sf = NULL;
    kbuf svg = {0};
    if (format == KPLOT_SVG) {
        sf = cairo_svg_surface_create_for_stream(to_kbuf, &svg, f->width, f->height);
        c.svg = 1;
    } else if (format == KPLOT_PDF) {
        sf = cairo_pdf_surface_create(tmp, f->width, f->height);
        if (cairo_surface_status(sf) == CAIRO_STATUS_SUCCESS) {
            cairo_pdf_surface_set_metadata(sf, CAIRO_PDF_METADATA_CREATOR, "kiln plot");
            if (f->title) cairo_pdf_surface_set_metadata(sf, CAIRO_PDF_METADATA_TITLE, f->title);
        }
    } else {
        int w = (int)lround(f->width * scale), h = (int)lround(f->height * scale);
        sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    }
    int rc = 0;
    if (cairo_surface_status(sf) != CAIRO_STATUS_SUCCESS) {
        int e = errno;
        snprintf(err, errlen, "cannot create %s: %s%s%s", format == KPLOT_PDF ? tmp : path,
                 cairo_status_to_string(cairo_surface_status(sf)), format == KPLOT_PDF ? ": " : "",
                 format == KPLOT_PDF ? strerror(e) : "");
        cairo_surface_destroy(sf);
        kbuf_free(&svg);
        return format == KPLOT_PDF ? EX_CANTCREAT : EX_SOFTWARE;
    }
    c.cr = cairo_create(sf);
    if (scale != 1) cairo_scale(c.cr, scale, scale);
    if (format == KPLOT_PNG) {
        cairo_font_options_t *fo = cairo_font_options_create();
        cairo_font_options_set_antialias(fo, CAIRO_ANTIALIAS_GRAY);
        cairo_font_options_set_hint_style(fo, CAIRO_HINT_STYLE_SLIGHT);
        cairo_set_font_options(c.cr, fo);
        cairo_font_options_destroy(fo);
    }
    draw_figure(&c, f, (int)ceil(scale));
    cairo_status_t st = cairo_status(c.cr);
    cairo_destroy(c.cr);
    if (st == CAIRO_STATUS_SUCCESS) {
        if (format == KPLOT_PNG) {
            st = cairo_surface_write_to_png(sf, tmp);
            if (st != CAIRO_STATUS_SUCCESS) {
                snprintf(err, errlen, "cannot write %s: %s", tmp, cairo_status_to_string(st));
                rc = EX_CANTCREAT;
            }
        }
        cairo_surface_finish(sf);
        if (!rc && cairo_surface_status(sf) != CAIRO_STATUS_SUCCESS) {
            snprintf(err, errlen, "cannot write %s: %s", format == KPLOT_SVG ? path : tmp,
                     cairo_status_to_string(cairo_surface_status(sf)));
            rc = format == KPLOT_PDF ? EX_CANTCREAT : EX_SOFTWARE;
        }
    } else {
        snprintf(err, errlen, "drawing %s: %s", path, cairo_status_to_string(st));
        rc = EX_SOFTWARE;
    }
    cairo_surface_destroy(sf);
    if (!rc && format == KPLOT_SVG) {
        /* Cairo's document, with the text as <text> elements before its end */
        const char *end = NULL;
        for (const char *p = svg.data; p && (p = strstr(p, "</svg>")); p++) end = p;
        if (!end) {
            snprintf(err, errlen, "drawing %s: Cairo wrote no SVG document", path);
            rc = EX_SOFTWARE;
        } else {
            kbuf out = {0};
            kbuf_append(&out, svg.data, (size_t)(end - svg.data));
            svg_text(&c, &out);
            kbuf_puts(&out, end);
            rc = write_all(tmp, out.data, out.len, err, errlen);
            kbuf_free(&out);
        }
    }
    kbuf_free(&svg);
    for (size_t i = 0; i < c.nt; i++) free(c.t[i].s);
    free(c.t);
    if (!rc && rename(tmp, path)) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        rc = EX_CANTCREAT;
    }
    if (rc) unlink(tmp);
    /* Cairo's font caches and fontconfig's configuration are process-wide;
     * a figure is drawn once per command, so they go with it (and leak
     * checkers see a clean exit) */
    cairo_debug_reset_static_data();
    FcFini();
    return rc;
}
