/* trainer/metrics.c: evaluation metrics (formulas and NaN cases in
 * metrics.h). Every sum runs in index order in double precision. */
#include "trainer/metrics.h"

#include <math.h>
#include <stdlib.h>

#include "util/util.h"

double kmetric_accuracy(const int32_t *pred, const int32_t *gold, size_t n)
{
    if (n == 0) return NAN;
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) ok += pred[i] == gold[i];
    return (double)ok / (double)n;
}

/* TP, FP, FN of class c. */
static void counts(const int32_t *pred, const int32_t *gold, size_t n, int32_t c, size_t *tp, size_t *fp,
                   size_t *fn)
{
    *tp = *fp = *fn = 0;
    for (size_t i = 0; i < n; i++) {
        int p = pred[i] == c, g = gold[i] == c;
        *tp += p && g;
        *fp += p && !g;
        *fn += !p && g;
    }
}

double kmetric_f1_class(const int32_t *pred, const int32_t *gold, size_t n, int32_t c)
{
    size_t tp, fp, fn;
    counts(pred, gold, n, c, &tp, &fp, &fn);
    size_t den = 2 * tp + fp + fn;
    return den ? 2.0 * (double)tp / (double)den : 0.0;
}

double kmetric_f1_macro(const int32_t *pred, const int32_t *gold, size_t n, int num_labels)
{
    double sum = 0;
    int classes = 0;
    for (int32_t c = 0; c < num_labels; c++) {
        size_t tp, fp, fn;
        counts(pred, gold, n, c, &tp, &fp, &fn);
        size_t den = 2 * tp + fp + fn;
        if (!den) continue;   /* c occurs nowhere */
        sum += 2.0 * (double)tp / (double)den;
        classes++;
    }
    return classes ? sum / classes : NAN;
}

double kmetric_f1(const int32_t *pred, const int32_t *gold, size_t n, int num_labels)
{
    if (n == 0) return NAN;
    return num_labels == 2 ? kmetric_f1_class(pred, gold, n, 1) : kmetric_f1_macro(pred, gold, n, num_labels);
}

double kmetric_mcc(const int32_t *pred, const int32_t *gold, size_t n)
{
    double tp = 0, tn = 0, fp = 0, fn = 0;
    for (size_t i = 0; i < n; i++) {
        int p = pred[i] == 1, g = gold[i] == 1;
        tp += p && g, tn += !p && !g, fp += p && !g, fn += !p && g;
    }
    double den = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn);
    if (den == 0) return NAN;
    return (tp * tn - fp * fn) / sqrt(den);
}

/* Pearson over doubles (shared by Pearson and Spearman). */
static double pearson_d(const double *x, const double *y, size_t n)
{
    if (n < 2) return NAN;
    double sx = 0, sy = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) return NAN;
        sx += x[i], sy += y[i];
    }
    double mx = sx / (double)n, my = sy / (double)n, sxy = 0, sxx = 0, syy = 0;
    for (size_t i = 0; i < n; i++) {
        double dx = x[i] - mx, dy = y[i] - my;
        sxy += dx * dy, sxx += dx * dx, syy += dy * dy;
    }
    if (sxx == 0 || syy == 0) return NAN;
    double r = sxy / sqrt(sxx * syy);
    return r > 1 ? 1 : r < -1 ? -1 : r;   /* rounding can step past +-1 */
}

double kmetric_pearson(const float *x, const float *y, size_t n)
{
    if (n < 2) return NAN;
    double *dx = xmalloc(n * sizeof *dx), *dy = xmalloc(n * sizeof *dy);
    for (size_t i = 0; i < n; i++) dx[i] = x[i], dy[i] = y[i];
    double r = pearson_d(dx, dy, n);
    free(dx);
    free(dy);
    return r;
}

typedef struct ranked { float v; size_t i; } ranked;

static int cmp_ranked(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;   /* a total order: qsort's result is unique */
}

void kmetric_ranks(const float *x, size_t n, double *rank)
{
    ranked *r = xmalloc((n ? n : 1) * sizeof *r);
    for (size_t i = 0; i < n; i++) r[i] = (ranked){x[i], i};
    qsort(r, n, sizeof *r, cmp_ranked);
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && r[j].v == r[i].v) j++;
        double avg = ((double)(i + 1) + (double)j) / 2;   /* ranks i+1 .. j */
        for (size_t k = i; k < j; k++) rank[r[k].i] = avg;
        i = j;
    }
    free(r);
}

double kmetric_spearman(const float *x, const float *y, size_t n)
{
    if (n < 2) return NAN;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]) || !isfinite(y[i])) return NAN;
    double *rx = xmalloc(n * sizeof *rx), *ry = xmalloc(n * sizeof *ry);
    kmetric_ranks(x, n, rx);
    kmetric_ranks(y, n, ry);
    double r = pearson_d(rx, ry, n);
    free(rx);
    free(ry);
    return r;
}

double kmetric_mse(const float *pred, const float *gold, size_t n)
{
    if (n == 0) return NAN;
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)pred[i] - (double)gold[i];
        s += d * d;
    }
    return s / (double)n;
}
