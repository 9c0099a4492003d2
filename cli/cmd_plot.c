/* cmd_plot.c: kiln plot (a run's curves, or several runs' on the same axes,
 * as SVG, PNG or PDF through cli/plot.c) and kiln metrics (every metric of a
 * run as CSV or JSON lines). Both read the store's metrics table (written
 * per step by cli/train_run.c for kiln train and the daemon's jobs alike);
 * docs/observe.md.
 *
 * Panels: a panel per metric asked for, keyed by its name without "val_":
 * the training series (raw and smoothed), its validation counterpart
 * ("val_" + name) as markers, and for mlm_loss the unigram baseline
 * ("unigram_loss") as a dashed line. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/plot.h"

/* ---- a run's metrics in memory ---------------------------------------------------------- */

typedef struct mseries {
    char name[96];
    size_t n, cap;
    int64_t *step;   /* (n) ascending */
    double *v;       /* (n) */
} mseries;

typedef struct run_data {
    int64_t id;
    char name[256];
    char kind[32];
    mseries *m;      /* (nm) in first-seen order */
    size_t nm;
} run_data;

static mseries *series_of(run_data *r, const char *name)
{
    for (size_t i = 0; i < r->nm; i++)
        if (!strcmp(r->m[i].name, name)) return &r->m[i];
    return NULL;
}

static int collect_row(int64_t step, const char *name, double value, void *ctx)
{
    run_data *r = ctx;
    mseries *m = series_of(r, name);
    if (!m) {
        r->m = xrealloc(r->m, (r->nm + 1) * sizeof *r->m);
        m = &r->m[r->nm++];
        memset(m, 0, sizeof *m);
        snprintf(m->name, sizeof m->name, "%s", name);
    }
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 256;
        m->step = xrealloc(m->step, m->cap * sizeof *m->step);
        m->v = xrealloc(m->v, m->cap * sizeof *m->v);
    }
    m->step[m->n] = step;
    m->v[m->n++] = value;
    return 0;
}

static void run_free(run_data *r)
{
    for (size_t i = 0; i < r->nm; i++) {
        free(r->m[i].step);
        free(r->m[i].v);
    }
    free(r->m);
    memset(r, 0, sizeof *r);
}

/* Loads job id's row and metrics into *r, which owns its arrays then (free
 * them with run_free, also after a failure). Returns 0, or EX_NOINPUT (logged)
 * when the job is absent or has no metrics, or the store's error. */
static int run_load(kstore *s, int64_t id, run_data *r)
{
    memset(r, 0, sizeof *r);
    r->id = id;
    kjob j;
    kbuf str = {0};
    int rc = kstore_job_get(s, id, &j, &str);
    if (rc) {
        kbuf_free(&str);
        if (rc == EX_NOINPUT) kerr("no run %lld in %s (see kiln run list)", (long long)id, "the store");
        else kerr("%s", kstore_errmsg(s));
        return rc;
    }
    snprintf(r->name, sizeof r->name, "%s", j.name ? j.name : "");
    snprintf(r->kind, sizeof r->kind, "%s", j.kind ? j.kind : "");
    kbuf_free(&str);
    int64_t last;
    if ((rc = kstore_metrics_since(s, id, INT64_MIN, 0, collect_row, r, &last, NULL))) {
        kerr("run %lld: %s", (long long)id, kstore_errmsg(s));
        return rc;
    }
    if (!r->nm) {
        kerr("run %lld (%s, %s) has no metrics: only training runs record them", (long long)id, r->kind,
             r->name[0] ? r->name : "unnamed");
        return EX_NOINPUT;
    }
    return 0;
}

/* "3,5,8" into ids (at most max); -1 on a bad list. */
static int parse_ids(const char *s, int64_t *ids, int max)
{
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || v < 1 || errno || n >= max) return -1;
        ids[n++] = v;
        p = end;
        if (*p == ',') p++;
        else if (*p) return -1;
    }
    return n;
}

/* Splits "a,b,c" into a NULL-terminated array of strings (one allocation, owned by the caller). */
static char **split_list(const char *s, int *n)
{
    size_t len = strlen(s), cnt = 1;
    for (size_t i = 0; i < len; i++) cnt += s[i] == ',';
    char **v = xmalloc((cnt + 1) * sizeof *v + len + 1);
    char *buf = (char *)(v + cnt + 1);
    memcpy(buf, s, len + 1);
    int k = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ","))
        if (*tok) v[k++] = tok;
    v[k] = NULL;
    *n = k;
    return v;
}

/* The order panels and columns come in: the usual metrics first, the rest by name. */
static int name_rank(const char *n)
{
    static const char *const order[] = {"loss", "mlm_loss", "mlm_acc", "sop_loss", "sop_acc", "nsp_loss", "nsp_acc",
                                        "lm_loss", "lm_acc", "disc_loss", "disc_acc", "disc_precision", "disc_recall", "lr", "grad_norm",
                                        "tokens_per_s", "tokens", "seconds", NULL};
    const char *b = !strncmp(n, "val_", 4) ? n + 4 : n;
    for (int i = 0; order[i]; i++)
        if (!strcmp(b, order[i])) return i * 2 + (b != n);
    return 1000;
}

static int cmp_names(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    int rx = name_rank(x), ry = name_rank(y);
    if (rx != ry) return rx < ry ? -1 : 1;
    return strcmp(x, y);
}

/* What a panel of metric base is about. */
static const char *describe(const char *base)
{
    static const struct { const char *n, *d; } t[] = {
        {"loss", "training loss"},
        {"mlm_loss", "masked LM loss"},
        {"mlm_acc", "masked LM accuracy"},
        {"sop_loss", "sentence-order loss"},
        {"sop_acc", "sentence-order accuracy"},
        {"nsp_loss", "next-sentence loss"},
        {"nsp_acc", "next-sentence accuracy"},
        {"lm_loss", "next-token (causal LM) loss"},
        {"lm_acc", "next-token accuracy"},
        {"disc_loss", "discriminator loss (replaced-token detection)"},
        {"disc_acc", "discriminator accuracy"},
        {"disc_precision", "discriminator precision (replaced tokens)"},
        {"disc_recall", "discriminator recall (replaced tokens)"},
        {"lr", "learning rate"},
        {"grad_norm", "gradient norm"},
        {"tokens_per_s", "throughput (tokens/s)"},
        {"tokens", "tokens trained on"},
        {"seconds", "training time (s)"},
        {"unigram_loss", "unigram baseline"},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        if (!strcmp(t[i].n, base)) return t[i].d;
    return base;
}

/* ---- x values ------------------------------------------------------------------------------ */

enum { X_STEP, X_TOKENS, X_TIME };

/* The x of each step of a run: the step, the tokens metric, or the seconds
 * metric (estimated from tokens / tokens_per_s for runs recorded before it
 * existed); steps ascending. *t owns its arrays (xtable_free); none for
 * X_STEP. Returns 0 or EX_DATAERR (logged) when the axis is not recorded. */
typedef struct xtable {
    int64_t *step;
    double *x;
    size_t n;
    int estimated;
} xtable;

static int xtable_make(const run_data *r, int xmode, xtable *t)
{
    memset(t, 0, sizeof *t);
    if (xmode == X_STEP) return 0;
    const mseries *m = NULL;
    for (size_t i = 0; i < r->nm; i++)
        if (!strcmp(r->m[i].name, xmode == X_TOKENS ? "tokens" : "seconds")) m = &r->m[i];
    if (m) {
        t->n = m->n;
        t->step = xmalloc((m->n ? m->n : 1) * sizeof *t->step);
        t->x = xmalloc((m->n ? m->n : 1) * sizeof *t->x);
        memcpy(t->step, m->step, m->n * sizeof *t->step);
        memcpy(t->x, m->v, m->n * sizeof *t->x);
        return 0;
    }
    if (xmode == X_TOKENS) {
        kerr("run %lld has no tokens metric: plot it with --x step", (long long)r->id);
        return EX_DATAERR;
    }
    const mseries *tok = NULL, *tps = NULL;
    for (size_t i = 0; i < r->nm; i++) {
        if (!strcmp(r->m[i].name, "tokens")) tok = &r->m[i];
        if (!strcmp(r->m[i].name, "tokens_per_s")) tps = &r->m[i];
    }
    if (!tok || !tps || tok->n != tps->n) {
        kerr("run %lld has no seconds metric (and no tokens and tokens_per_s to estimate it): plot it with --x step",
             (long long)r->id);
        return EX_DATAERR;
    }
    kwarn("run %lld was recorded without the seconds metric: its time axis is estimated from tokens / tokens_per_s "
          "(training time only)",
          (long long)r->id);
    t->n = tok->n;
    t->step = xmalloc((tok->n ? tok->n : 1) * sizeof *t->step);
    t->x = xmalloc((tok->n ? tok->n : 1) * sizeof *t->x);
    double acc = 0, prev = 0;
    for (size_t i = 0; i < tok->n; i++) {
        double d = tok->v[i] - prev;
        if (tps->v[i] > 0 && d > 0) acc += d / tps->v[i];
        prev = tok->v[i];
        t->step[i] = tok->step[i];
        t->x[i] = acc;
    }
    t->estimated = 1;
    return 0;
}

static double xtable_at(const xtable *t, int64_t step, int xmode, double unit)
{
    if (xmode == X_STEP) return (double)step;
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t->step[mid] < step) lo = mid + 1;
        else hi = mid;
    }
    return lo < t->n && t->step[lo] == step ? t->x[lo] / unit : NAN;
}

static void xtable_free(xtable *t)
{
    free(t->step);
    free(t->x);
}

/* ---- kiln plot --------------------------------------------------------------------------------- */

#define MAX_RUNS 16

typedef struct built_series {
    kplot_series s;
    char label[256];
    double *x, *y;
    int64_t run;
    char metric[96];
} built_series;

typedef struct built_panel {
    char base[96], title[160], ylabel[96];
    built_series *ser;
    size_t n;
} built_panel;

/* A new zeroed series at the end of p (p owns it; its x, y are freed with the panel). */
static built_series *panel_add(built_panel *p)
{
    p->ser = xrealloc(p->ser, (p->n + 1) * sizeof *p->ser);
    built_series *b = &p->ser[p->n++];
    memset(b, 0, sizeof *b);
    return b;
}

/* A series of metric m of run r on panel p (x mapped through t): x and y
 * are copies the panel owns. */
static void add_series(built_panel *p, const run_data *r, const mseries *m, int style, int color, const xtable *t,
                       int xmode, double unit, const char *label)
{
    built_series *b = panel_add(p);
    b->run = r->id;
    snprintf(b->metric, sizeof b->metric, "%s", m->name);
    snprintf(b->label, sizeof b->label, "%s", label);
    b->x = xmalloc((m->n ? m->n : 1) * sizeof *b->x);
    b->y = xmalloc((m->n ? m->n : 1) * sizeof *b->y);
    for (size_t i = 0; i < m->n; i++) {
        b->x[i] = xtable_at(t, m->step[i], xmode, unit);
        b->y[i] = m->v[i];
    }
    /* a schedule is drawn as it is: smoothing would only shift it */
    b->s = (kplot_series){.style = style, .color = color, .n = m->n, .raw = !strcmp(m->name, "lr")};
}

static int has_name(char **list, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(list[i], name)) return 1;
    return 0;
}

/* "...end of a long name" in at most max bytes (UTF-8 safe: cuts at a character start). */
static void tail_of(const char *s, size_t max, char *out, size_t n)
{
    size_t len = strlen(s);
    if (len <= max) {
        snprintf(out, n, "%s", s);
        return;
    }
    const char *p = s + len - max;
    while (*p && ((unsigned char)*p & 0xC0) == 0x80) p++;
    snprintf(out, n, "...%s", p);
}

int cmd_plot(int argc, char **argv, const char *db)
{
    static const char usage[] =
        "usage: kiln plot [--run N | --job N] [--compare N,M,...] [--metrics NAME,...]\n"
        "                 [--x step|tokens|time] [--out FILE.svg|.png|.pdf] [--size WxH]\n"
        "                 [--scale F] [--smooth W] [--log-y auto|on|off] [--columns C]\n"
        "                 [--title TEXT] [--json] [--db PATH] [-q|-v]\n\n"
        "Draws a training run's curves from the store (docs/observe.md), as TensorBoard\n"
        "would: a panel per metric, the raw values faint under their smoothed line\n"
        "(TensorBoard's debiased exponential moving average of weight --smooth W; 0 =\n"
        "raw only; default auto: 0.6, more for long runs: 1 - 120 / points, at most\n"
        "0.995), validation values (val_NAME) as markers on NAME's panel, and on\n"
        "mlm_loss's panel the unigram baseline (unigram_loss) as a dashed line.\n"
        "  --run N, --job N   the run (a job of kiln run list; kiln train makes one too);\n"
        "                     default: the newest run that recorded metrics\n"
        "  --compare N,M,...  these runs on the same axes, one colour each (with --run,\n"
        "                     that run first)\n"
        "  --metrics LIST     metrics to draw (default: every one the run recorded but\n"
        "                     tokens and seconds); val_NAME alone gives NAME's panel\n"
        "                     with only the validation markers\n"
        "  --x step|tokens|time  the x axis (time: training seconds, in s, min or h)\n"
        "  --out FILE         .svg, .png or .pdf (default run-N.svg, runs-N-M.svg)\n"
        "  --size WxH         the figure, in points (SVG, PDF) or pixels (PNG);\n"
        "                     default 460 x 300 a panel, 1 to 3 panels a row\n"
        "  --scale F          PNG only: pixels per unit (2 for high-density screens)\n"
        "  --log-y auto|on|off  log-scaled y axes; auto: a panel whose values are all\n"
        "                     positive and span 1.5 decades or more (default)\n"
        "  --columns C        panels per row\n"
        "  --json             print what was drawn as one JSON object\n"
        "Exit: 0; 64 usage; 65 the x axis asked is not recorded; 66 no such run or metric;\n"
        "73 the file cannot be written.\n";
    enum { O_RUN = 1, O_COMPARE, O_METRICS, O_X, O_OUT, O_SIZE, O_SCALE, O_SMOOTH, O_LOG, O_COLS, O_TITLE };
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"run", required_argument, 0, O_RUN},
                                       {"job", required_argument, 0, O_RUN},
                                       {"compare", required_argument, 0, O_COMPARE},
                                       {"metrics", required_argument, 0, O_METRICS},
                                       {"x", required_argument, 0, O_X},
                                       {"out", required_argument, 0, O_OUT},
                                       {"size", required_argument, 0, O_SIZE},
                                       {"scale", required_argument, 0, O_SCALE},
                                       {"smooth", required_argument, 0, O_SMOOTH},
                                       {"log-y", required_argument, 0, O_LOG},
                                       {"columns", required_argument, 0, O_COLS},
                                       {"title", required_argument, 0, O_TITLE},
                                       {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c, db);
    int64_t ids[MAX_RUNS + 1];
    int n_ids = 0, have_run = 0, xmode = X_STEP, log_y = KPLOT_LOG_AUTO, columns = 0, opt;
    int64_t run_id = 0;
    const char *metrics = NULL, *out = NULL, *title = NULL;
    double width = 0, height = 0, scale = 1, smooth = -1; /* < 0: from the number of steps */
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1) {
        if (cli_common_opt(&c, opt, optarg)) continue;
        char *end;
        switch (opt) {
        case O_RUN:
            if (parse_ids(optarg, &run_id, 1) != 1) return cli_usage_error("plot", "--run: one run id (an integer >= 1)");
            have_run = 1;
            break;
        case O_COMPARE:
            n_ids = parse_ids(optarg, ids, MAX_RUNS);
            if (n_ids < 1) return cli_usage_error("plot", "--compare: run ids separated by commas (at most %d)", MAX_RUNS);
            break;
        case O_METRICS: metrics = optarg; break;
        case O_X:
            if (!strcmp(optarg, "step") || !strcmp(optarg, "steps")) xmode = X_STEP;
            else if (!strcmp(optarg, "tokens")) xmode = X_TOKENS;
            else if (!strcmp(optarg, "time")) xmode = X_TIME;
            else return cli_usage_error("plot", "--x: step, tokens or time");
            break;
        case O_OUT: out = optarg; break;
        case O_SIZE:
            width = strtod(optarg, &end);
            if (end == optarg || (*end != 'x' && *end != 'X')) return cli_usage_error("plot", "--size: WxH, e.g. 900x600");
            height = strtod(end + 1, &end);
            if (*end || !(width >= 100 && width <= 20000 && height >= 80 && height <= 20000))
                return cli_usage_error("plot", "--size: WxH, each from 100 (80 high) to 20000");
            break;
        case O_SCALE:
            scale = strtod(optarg, &end);
            if (*end || !(scale >= 0.25 && scale <= 8)) return cli_usage_error("plot", "--scale: a number from 0.25 to 8");
            break;
        case O_SMOOTH:
            if (!strcmp(optarg, "auto")) {
                smooth = -1;
                break;
            }
            smooth = strtod(optarg, &end);
            if (*end || !(smooth >= 0 && smooth < 1)) return cli_usage_error("plot", "--smooth: auto, or a weight from 0 to 0.999");
            break;
        case O_LOG:
            if (!strcmp(optarg, "auto")) log_y = KPLOT_LOG_AUTO;
            else if (!strcmp(optarg, "on")) log_y = KPLOT_LOG_ON;
            else if (!strcmp(optarg, "off")) log_y = KPLOT_LOG_OFF;
            else return cli_usage_error("plot", "--log-y: auto, on or off");
            break;
        case O_COLS:
            columns = (int)strtol(optarg, &end, 10);
            if (*end || columns < 1 || columns > 12) return cli_usage_error("plot", "--columns: 1 to 12");
            break;
        case O_TITLE: title = optarg; break;
        default: return cli_usage_error("plot", "bad option (see kiln plot --help)");
        }
    }
    if (c.help) {
        fputs(usage, stdout);
        return 0;
    }
    if (optind < argc) return cli_usage_error("plot", "unexpected argument '%s'", argv[optind]);
    int format = out ? kplot_format_of(out) : KPLOT_SVG;
    if (format < 0) return cli_usage_error("plot", "--out %s: the name must end in .svg, .png or .pdf", out);

    kstore *s;
    int rc = cli_open_store(&c, KSTORE_READONLY, &s);
    if (rc) return rc;
    /* the runs: --run first, then --compare's (no run twice) */
    int64_t runs[MAX_RUNS + 1];
    int nr = 0;
    if (have_run) runs[nr++] = run_id;
    for (int i = 0; i < n_ids && nr <= MAX_RUNS; i++) {
        int dup = 0;
        for (int k = 0; k < nr; k++) dup |= runs[k] == ids[i];
        if (!dup) runs[nr++] = ids[i];
    }
    if (!nr) {
        int64_t latest = 0;
        if ((rc = kstore_metrics_latest_job(s, &latest))) {
            kerr("%s", kstore_errmsg(s));
            kstore_close(s);
            return rc;
        }
        if (!latest) {
            kerr("no run in %s has metrics yet (kiln train or kiln run submit records them)", cli_db_path(&c));
            kstore_close(s);
            return EX_NOINPUT;
        }
        runs[nr++] = latest;
        kinfo("run %lld (the newest with metrics)", (long long)latest);
    }
    run_data rd[MAX_RUNS + 1];
    memset(rd, 0, sizeof rd);
    for (int i = 0; i < nr && !rc; i++) rc = run_load(s, runs[i], &rd[i]);
    kstore_close(s);
    if (rc) {
        for (int i = 0; i < nr; i++) run_free(&rd[i]);
        return rc;
    }

    /* x tables and the time unit */
    xtable xt[MAX_RUNS + 1];
    memset(xt, 0, sizeof xt);
    for (int i = 0; i < nr && !rc; i++) rc = xtable_make(&rd[i], xmode, &xt[i]);
    double unit = 1;
    const char *xlabel = xmode == X_STEP ? "step" : xmode == X_TOKENS ? "tokens" : "time (s)";
    if (!rc && xmode == X_TIME) {
        double mx = 0;
        for (int i = 0; i < nr; i++)
            for (size_t k = 0; k < xt[i].n; k++)
                if (xt[i].x[k] > mx) mx = xt[i].x[k];
        if (mx >= 3 * 3600) unit = 3600, xlabel = "time (h)";
        else if (mx >= 180) unit = 60, xlabel = "time (min)";
    }

    /* the metrics: asked, or every one of the first run's (then the others') */
    int n_req = 0;
    char **req = NULL;
    if (!rc && metrics) {
        req = split_list(metrics, &n_req);
        if (!n_req) {
            free(req);
            req = NULL;
            rc = cli_usage_error("plot", "--metrics: names separated by commas");
        }
        for (int k = 0; k < n_req && !rc; k++) {
            int found = 0;
            for (int i = 0; i < nr; i++) found |= series_of(&rd[i], req[k]) != NULL;
            if (!found) {
                kbuf have = {0};
                for (size_t m = 0; m < rd[0].nm; m++) kbuf_printf(&have, "%s%s", m ? ", " : "", rd[0].m[m].name);
                kerr("no metric '%s' in run%s %lld%s (run %lld has: %s)", req[k], nr > 1 ? "s" : "",
                     (long long)rd[0].id, nr > 1 ? " ..." : "", (long long)rd[0].id, have.data ? have.data : "");
                kbuf_free(&have);
                rc = EX_NOINPUT;
            }
        }
    }
    built_panel *panels = NULL;
    size_t np = 0;
    if (!rc) {
        /* names: asked, else all (sorted in the usual order) */
        char **names;
        int nn = 0;
        if (req) {
            names = xmalloc(((size_t)n_req + 1) * sizeof *names);
            for (int k = 0; k < n_req; k++) names[nn++] = req[k];
        } else {
            size_t cap = 0;
            for (int i = 0; i < nr; i++) cap += rd[i].nm;
            names = xmalloc((cap + 1) * sizeof *names);
            for (int i = 0; i < nr; i++)
                for (size_t m = 0; m < rd[i].nm; m++) {
                    const char *n = rd[i].m[m].name;
                    if (!strcmp(n, "tokens") || !strcmp(n, "seconds") || !strcmp(n, "unigram_loss")) continue;
                    if (!has_name(names, nn, n)) names[nn++] = (char *)n;
                }
            qsort(names, (size_t)nn, sizeof *names, cmp_names);
        }
        /* panels by base name (val_X joins X) */
        for (int k = 0; k < nn; k++) {
            const char *n = names[k];
            const char *base = !strncmp(n, "val_", 4) && n[4] ? n + 4 : n;
            if (!req && base != n && has_name(names, nn, base)) continue; /* joins its base's panel */
            int seen = 0;
            for (size_t q = 0; q < np; q++) seen |= !strcmp(panels[q].base, base);
            if (seen) continue;
            panels = xrealloc(panels, (np + 1) * sizeof *panels);
            built_panel *p = &panels[np++];
            memset(p, 0, sizeof *p);
            snprintf(p->base, sizeof p->base, "%s", base);
            snprintf(p->title, sizeof p->title, "%s", describe(base));
            snprintf(p->ylabel, sizeof p->ylabel, "%s", base);
            char vname[128];
            snprintf(vname, sizeof vname, "val_%s", base);
            /* the training series when asked (or all), validation when asked or its base is */
            int want_train = !req || has_name(req, n_req, base);
            int want_val = !req || has_name(req, n_req, vname) || want_train;
            int want_base = (!strcmp(base, "mlm_loss") || !strcmp(base, "lm_loss")) && (!req || want_train || has_name(req, n_req, vname) ||
                                                          has_name(req, n_req, "unigram_loss"));
            if (!strcmp(base, "unigram_loss")) want_train = 1, want_val = 0;
            for (int i = 0; i < nr; i++) {
                run_data *r = &rd[i];
                char label[256];
                char pre[48] = "";
                if (nr > 1) snprintf(pre, sizeof pre, "run %lld: ", (long long)r->id);
                const mseries *mt = series_of(r, base), *mv = series_of(r, vname), *mb = series_of(r, "unigram_loss");
                int col_t = nr > 1 ? i : 0, col_v = nr > 1 ? i : 1, col_b = nr > 1 ? i : -1;
                if (want_train && mt) {
                    snprintf(label, sizeof label, "%s%s", pre, base);
                    add_series(p, r, mt, KPLOT_LINE, col_t, &xt[i], xmode, unit, label);
                }
                if (want_val && mv) {
                    snprintf(label, sizeof label, "%s%s", pre, vname);
                    add_series(p, r, mv, KPLOT_POINTS, col_v, &xt[i], xmode, unit, label);
                }
                if (want_base && mb && mb->n) {
                    snprintf(label, sizeof label, "%sunigram baseline (%.3f)", pre, mb->v[mb->n - 1]);
                    add_series(p, r, mb, KPLOT_HLINE, col_b, &xt[i], xmode, unit, label);
                }
            }
        }
        free(names);
    }

    /* the figure */
    char outbuf[512], err[4096], tbuf[512], cap[512];
    if (!rc && smooth < 0) {
        /* auto: TensorBoard's 0.6 for short runs; for long ones the average
         * spans about 1/120 of the run, so the trend shows at any length */
        size_t most = 0;
        for (size_t k = 0; k < np; k++)
            for (size_t q = 0; q < panels[k].n; q++)
                if (panels[k].ser[q].s.style == KPLOT_LINE && panels[k].ser[q].s.n > most) most = panels[k].ser[q].s.n;
        smooth = most ? 1.0 - 120.0 / (double)most : 0.6;
        if (smooth < 0.6) smooth = 0.6;
        if (smooth > 0.995) smooth = 0.995;
    }
    if (!rc) {
        if (!out) {
            int o = snprintf(outbuf, sizeof outbuf, "run%s", nr > 1 ? "s" : "");
            for (int i = 0; i < nr && o < (int)sizeof outbuf - 32; i++)
                o += snprintf(outbuf + o, sizeof outbuf - (size_t)o, "-%lld", (long long)rd[i].id);
            snprintf(outbuf + o, sizeof outbuf - (size_t)o, ".svg");
            out = outbuf;
        }
        int cols = columns > 0 ? columns : kplot_default_columns(np);
        if (cols > (int)np && np) cols = (int)np;
        int rows = np ? (int)((np + (size_t)cols - 1) / (size_t)cols) : 1;
        if (!(width > 0)) width = 460.0 * cols + 8;
        if (!(height > 0)) height = 300.0 * rows + 50;
        if (title) {
            snprintf(tbuf, sizeof tbuf, "%s", title);
        } else if (nr == 1) {
            char nm[128];
            tail_of(rd[0].name, 60, nm, sizeof nm);
            snprintf(tbuf, sizeof tbuf, "run %lld%s%s", (long long)rd[0].id, nm[0] ? ": " : "", nm);
        } else {
            int o = snprintf(tbuf, sizeof tbuf, "runs");
            for (int i = 0; i < nr && o < (int)sizeof tbuf - 24; i++)
                o += snprintf(tbuf + o, sizeof tbuf - (size_t)o, "%s %lld", i ? "," : "", (long long)rd[i].id);
        }
        int any_val = 0, any_base = 0;
        for (size_t k = 0; k < np; k++)
            for (size_t q = 0; q < panels[k].n; q++) {
                any_val |= panels[k].ser[q].s.style == KPLOT_POINTS;
                any_base |= panels[k].ser[q].s.style == KPLOT_HLINE;
            }
        int co = 0;
        if (smooth > 0) co += snprintf(cap + co, sizeof cap - (size_t)co, "lines: smoothed (EMA %.3g) over the raw values (faint)", smooth);
        else co += snprintf(cap + co, sizeof cap - (size_t)co, "lines: raw values");
        if (any_val) co += snprintf(cap + co, sizeof cap - (size_t)co, "; dots: validation");
        if (any_base) co += snprintf(cap + co, sizeof cap - (size_t)co, "; dashed: unigram baseline");
        if (xmode == X_TIME) {
            int est = 0;
            for (int i = 0; i < nr; i++) est |= xt[i].estimated;
            if (est) snprintf(cap + co, sizeof cap - (size_t)co, "; time estimated from tokens/s");
        }
        kplot_panel *kp = xcalloc(np ? np : 1, sizeof *kp);
        kplot_series **ks = xcalloc(np ? np : 1, sizeof *ks);
        for (size_t k = 0; k < np; k++) {
            ks[k] = xcalloc(panels[k].n ? panels[k].n : 1, sizeof **ks);
            for (size_t q = 0; q < panels[k].n; q++) {
                built_series *b = &panels[k].ser[q];
                ks[k][q] = b->s;
                ks[k][q].label = b->label;
                ks[k][q].x = b->x;
                ks[k][q].y = b->y;
            }
            int lg = log_y;
            /* auto: losses and norms may go log; rates, accuracies, throughput stay linear */
            if (lg == KPLOT_LOG_AUTO && !strstr(panels[k].base, "loss") && strcmp(panels[k].base, "grad_norm"))
                lg = KPLOT_LOG_OFF;
            kp[k] = (kplot_panel){.title = panels[k].title, .ylabel = panels[k].ylabel, .log_y = lg,
                                  .n_series = panels[k].n, .series = ks[k]};
        }
        kplot_figure fig = {.title = tbuf, .caption = cap, .xlabel = xlabel,
                            .xformat = xmode == X_STEP ? KPLOT_X_STEPS : xmode == X_TOKENS ? KPLOT_X_COUNT : KPLOT_X_PLAIN,
                            .smoothing = smooth, .width = width, .height = height, .scale = scale, .columns = cols,
                            .n_panels = np, .panels = kp};
        rc = kplot_write(&fig, out, format, err, sizeof err);
        if (rc) kerr("%s", err);
        for (size_t k = 0; k < np; k++) free(ks[k]);
        free(ks);
        free(kp);
        if (!rc) {
            static const char *const fmt_name[] = {"svg", "png", "pdf"};
            double pw = format == KPLOT_PNG ? round(width * scale) : width;
            double ph = format == KPLOT_PNG ? round(height * scale) : height;
            if (c.json) {
                json_t *o = json_pack("{s:s, s:s, s:f, s:f, s:s}", "out", out, "format", fmt_name[format], "width", pw,
                                      "height", ph, "x", xmode == X_STEP ? "step" : xmode == X_TOKENS ? "tokens" : "time");
                json_t *ra = json_array(), *pa = json_array();
                for (int i = 0; i < nr; i++) json_array_append_new(ra, json_integer(rd[i].id));
                for (size_t k = 0; k < np; k++) {
                    json_t *sa = json_array();
                    for (size_t q = 0; q < panels[k].n; q++) {
                        built_series *b = &panels[k].ser[q];
                        static const char *const style[] = {"line", "points", "baseline"};
                        json_array_append_new(sa, json_pack("{s:I, s:s, s:s, s:s, s:I}", "run", (json_int_t)b->run,
                                                            "metric", b->metric, "style", style[b->s.style], "label",
                                                            b->label, "points", (json_int_t)b->s.n));
                    }
                    json_array_append_new(pa, json_pack("{s:s, s:s, s:o}", "metric", panels[k].base, "title",
                                                        panels[k].title, "series", sa));
                }
                json_object_set_new(o, "runs", ra);
                json_object_set_new(o, "panels", pa);
                cli_json_print(o, 1);
            } else {
                printf("kiln plot: wrote %s (%s, %.0f x %.0f %s, %zu panel%s, %d run%s)\n", out, fmt_name[format], pw, ph,
                       format == KPLOT_PNG ? "px" : "pt", np, np == 1 ? "" : "s", nr, nr == 1 ? "" : "s");
            }
        }
    }
    for (size_t k = 0; k < np; k++) {
        for (size_t q = 0; q < panels[k].n; q++) {
            free(panels[k].ser[q].x);
            free(panels[k].ser[q].y);
        }
        free(panels[k].ser);
    }
    free(panels);
    free(req);
    for (int i = 0; i < nr; i++) {
        run_free(&rd[i]);
        xtable_free(&xt[i]);
    }
    return rc;
}

/* ---- kiln metrics -------------------------------------------------------------------------------- */

/* The shortest of %.15g, %.16g, %.17g that reads back as v (exact, short for most values). */
static void fmt_double(double v, char *b, size_t n)
{
    for (int p = 15; p <= 17; p++) {
        snprintf(b, n, "%.*g", p, v);
        if (strtod(b, NULL) == v) return;
    }
}

typedef struct names_ctx {
    char **names;
    int n;
    char **only;
    int n_only;
} names_ctx;

static int collect_name(const char *name, int64_t rows, void *ctx)
{
    (void)rows;
    names_ctx *x = ctx;
    if (x->only && !has_name(x->only, x->n_only, name)) return 0;
    x->names = xrealloc(x->names, ((size_t)x->n + 1) * sizeof *x->names);
    x->names[x->n++] = xstrdup(name);
    return 0;
}

typedef struct emit_ctx {
    FILE *fp;
    int jsonl;
    int64_t run;
    names_ctx *nx;
    double *row;       /* (n names) this step's values, NaN where absent */
    int64_t step;      /* the step in row (INT64_MIN: none) */
    int64_t rows;      /* lines written */
    int err;
} emit_ctx;

static void emit_flush(emit_ctx *e)
{
    if (e->step == INT64_MIN) return;
    int any = 0;
    for (int i = 0; i < e->nx->n; i++) any |= !isnan(e->row[i]);
    if (!any) goto reset;
    char num[64];
    if (e->jsonl) {
        kbuf b = {0};
        kbuf_printf(&b, "{\"run\":%lld,\"step\":%lld", (long long)e->run, (long long)e->step);
        for (int i = 0; i < e->nx->n; i++) {
            if (isnan(e->row[i])) continue;
            kbuf_putc(&b, ',');
            kbuf_json_str(&b, e->nx->names[i], strlen(e->nx->names[i]));
            fmt_double(e->row[i], num, sizeof num);
            kbuf_printf(&b, ":%s", num);
        }
        kbuf_puts(&b, "}\n");
        if (fwrite(b.data, 1, b.len, e->fp) != b.len) e->err = 1;
        kbuf_free(&b);
    } else {
        fprintf(e->fp, "%lld", (long long)e->step);
        for (int i = 0; i < e->nx->n; i++) {
            if (isnan(e->row[i])) {
                fputc(',', e->fp);
                continue;
            }
            fmt_double(e->row[i], num, sizeof num);
            fprintf(e->fp, ",%s", num);
        }
        if (fputc('\n', e->fp) == EOF) e->err = 1;
    }
    e->rows++;
reset:
    for (int i = 0; i < e->nx->n; i++) e->row[i] = NAN;
}

static int emit_row(int64_t step, const char *name, double value, void *ctx)
{
    emit_ctx *e = ctx;
    if (step != e->step) {
        emit_flush(e);
        e->step = step;
    }
    for (int i = 0; i < e->nx->n; i++)
        if (!strcmp(e->nx->names[i], name)) {
            e->row[i] = value;
            break;
        }
    return e->err;
}

static void csv_field(FILE *fp, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, fp);
        return;
    }
    fputc('"', fp);
    for (; *s; s++) {
        if (*s == '"') fputc('"', fp);
        fputc(*s, fp);
    }
    fputc('"', fp);
}

int cmd_metrics(int argc, char **argv, const char *db)
{
    static const char usage[] =
        "usage: kiln metrics [--run N | --job N] [--format csv|jsonl] [--metrics NAME,...]\n"
        "                    [--out FILE] [--json] [--db PATH] [-q|-v]\n\n"
        "Every metric a run recorded (docs/observe.md, docs/store.md), a line a step:\n"
        "  csv    a header `step,NAME,...` (names in the usual order: loss, mlm_loss, ...),\n"
        "         then a row a step; a cell is empty where the metric was not recorded\n"
        "         at that step (validation metrics: only at validation steps)\n"
        "  jsonl  {\"run\": N, \"step\": S, \"NAME\": value, ...}: the metrics of the step\n"
        "Values are written exactly (they read back to the stored doubles).\n"
        "  --run N, --job N   the run (default: the newest run that recorded metrics)\n"
        "  --metrics LIST     only these metrics\n"
        "  --out FILE         write there instead of standard output\n"
        "  --json             the same as --format jsonl\n"
        "Exit: 0; 64 usage; 66 no such run or metric; 73 FILE cannot be written.\n";
    enum { O_RUN = 1, O_FORMAT, O_METRICS, O_OUT };
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"run", required_argument, 0, O_RUN},
                                       {"job", required_argument, 0, O_RUN},
                                       {"format", required_argument, 0, O_FORMAT},
                                       {"metrics", required_argument, 0, O_METRICS},
                                       {"out", required_argument, 0, O_OUT},
                                       {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c, db);
    int64_t run = 0;
    int jsonl = -1, opt;
    const char *metrics = NULL, *out = NULL;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1) {
        if (cli_common_opt(&c, opt, optarg)) continue;
        switch (opt) {
        case O_RUN:
            if (parse_ids(optarg, &run, 1) != 1) return cli_usage_error("metrics", "--run: one run id (an integer >= 1)");
            break;
        case O_FORMAT:
            if (!strcmp(optarg, "csv")) jsonl = 0;
            else if (!strcmp(optarg, "jsonl") || !strcmp(optarg, "json")) jsonl = 1;
            else return cli_usage_error("metrics", "--format: csv or jsonl");
            break;
        case O_METRICS: metrics = optarg; break;
        case O_OUT: out = optarg; break;
        default: return cli_usage_error("metrics", "bad option (see kiln metrics --help)");
        }
    }
    if (c.help) {
        fputs(usage, stdout);
        return 0;
    }
    if (optind < argc) return cli_usage_error("metrics", "unexpected argument '%s'", argv[optind]);
    if (jsonl < 0) jsonl = c.json;
    kstore *s;
    int rc = cli_open_store(&c, KSTORE_READONLY, &s);
    if (rc) return rc;
    if (!run) {
        if ((rc = kstore_metrics_latest_job(s, &run))) {
            kerr("%s", kstore_errmsg(s));
            kstore_close(s);
            return rc;
        }
        if (!run) {
            kerr("no run in %s has metrics yet (kiln train or kiln run submit records them)", cli_db_path(&c));
            kstore_close(s);
            return EX_NOINPUT;
        }
        kinfo("run %lld (the newest with metrics)", (long long)run);
    }
    kjob j;
    kbuf str = {0};
    if ((rc = kstore_job_get(s, run, &j, &str))) {
        if (rc == EX_NOINPUT) kerr("no run %lld (see kiln run list)", (long long)run);
        else kerr("%s", kstore_errmsg(s));
        kbuf_free(&str);
        kstore_close(s);
        return rc;
    }
    kbuf_free(&str);
    names_ctx nx = {0};
    if (metrics) nx.only = split_list(metrics, &nx.n_only);
    if ((rc = kstore_metric_names(s, run, collect_name, &nx))) kerr("run %lld: %s", (long long)run, kstore_errmsg(s));
    for (int k = 0; !rc && k < nx.n_only; k++)
        if (!has_name(nx.names, nx.n, nx.only[k])) {
            kerr("run %lld has no metric '%s'", (long long)run, nx.only[k]);
            rc = EX_NOINPUT;
        }
    if (!rc && !nx.n) {
        kerr("run %lld has no metrics: only training runs record them", (long long)run);
        rc = EX_NOINPUT;
    }
    FILE *fp = stdout;
    char tmp[4200] = "";
    if (!rc && out) {
        snprintf(tmp, sizeof tmp, "%s.tmp-%ld", out, (long)getpid());
        fp = fopen(tmp, "w");
        if (!fp) {
            kerr("cannot create %s: %s", out, strerror(errno));
            rc = EX_CANTCREAT;
        }
    }
    if (!rc) {
        qsort(nx.names, (size_t)nx.n, sizeof *nx.names, cmp_names);
        emit_ctx e = {.fp = fp, .jsonl = jsonl, .run = run, .nx = &nx, .step = INT64_MIN};
        e.row = xmalloc((size_t)nx.n * sizeof *e.row);
        for (int i = 0; i < nx.n; i++) e.row[i] = NAN;
        if (!jsonl) {
            fputs("step", fp);
            for (int i = 0; i < nx.n; i++) {
                fputc(',', fp);
                csv_field(fp, nx.names[i]);
            }
            fputc('\n', fp);
        }
        rc = kstore_metrics_since(s, run, INT64_MIN, 0, emit_row, &e, NULL, NULL);
        if (rc) kerr("run %lld: %s", (long long)run, kstore_errmsg(s));
        emit_flush(&e);
        free(e.row);
        if (fflush(fp) || ferror(fp) || e.err) {
            kerr("cannot write %s: %s", out ? out : "standard output", strerror(errno));
            if (!rc) rc = out ? EX_CANTCREAT : EX_IOERR;
        }
        if (!rc) kdebug("run %lld: %lld lines, %d metrics", (long long)run, (long long)e.rows, nx.n);
    }
    if (out && fp && fp != stdout) {
        if (fclose(fp) && !rc) {
            kerr("cannot write %s: %s", out, strerror(errno));
            rc = EX_CANTCREAT;
        }
        if (!rc && rename(tmp, out)) {
            kerr("cannot create %s: %s", out, strerror(errno));
            rc = EX_CANTCREAT;
        }
        if (rc) unlink(tmp);
    }
    for (int i = 0; i < nx.n; i++) free(nx.names[i]);
    free(nx.names);
    free(nx.only);
    kstore_close(s);
    return rc;
}
