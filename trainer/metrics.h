/* trainer/metrics.h: evaluation metrics of fine-tuning (GLUE's): accuracy,
 * F1 (binary or macro), Matthews correlation, and for regression Pearson,
 * Spearman and mean squared error.
 *
 * Pure functions of their inputs: no I/O, no global state. n = number of
 * examples; pred and gold are parallel arrays of n entries. Sums run in index
 * order in double precision, so a result is bit-identical from run to run.
 * Undefined values are NaN (documented per function); callers print them as
 * "nan" / JSON null. */
#ifndef KILN_TRAINER_METRICS_H
#define KILN_TRAINER_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* Share of i with pred[i] == gold[i]; NaN when n == 0. */
double kmetric_accuracy(const int32_t *pred, const int32_t *gold, size_t n);

/* F1 of one class c: 2 TP / (2 TP + FP + FN), TP = #(pred = c and gold = c),
 * FP = #(pred = c, gold != c), FN = #(pred != c, gold = c). 0 when c never
 * occurs in pred nor gold (scikit-learn's zero_division = 0). */
double kmetric_f1_class(const int32_t *pred, const int32_t *gold, size_t n, int32_t c);

/* Macro F1: the unweighted mean of kmetric_f1_class over the classes in
 * [0, num_labels) that occur in gold or pred (scikit-learn's "macro" with its
 * default labels); NaN when none occurs (n == 0). Predictions outside
 * [0, num_labels) count as misses of the gold class. */
double kmetric_f1_macro(const int32_t *pred, const int32_t *gold, size_t n, int num_labels);

/* The F1 GLUE reports: binary F1 of class 1 (the positive class) when
 * num_labels == 2, macro F1 otherwise. NaN when n == 0. */
double kmetric_f1(const int32_t *pred, const int32_t *gold, size_t n, int num_labels);

/* Matthews correlation of a binary task (class 1 positive; anything else
 * negative): (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)); NaN when
 * a factor of the denominator is 0 (scikit-learn returns 0 there). */
double kmetric_mcc(const int32_t *pred, const int32_t *gold, size_t n);

/* Regression. Every input must be finite: any NaN/inf gives NaN. */

/* Pearson correlation sum((x - mx)(y - my)) / sqrt(sum (x - mx)^2 sum (y - my)^2),
 * means first (two passes). NaN when n < 2 or either side is constant (zero
 * variance: the correlation is undefined, as in scipy). */
double kmetric_pearson(const float *x, const float *y, size_t n);

/* Spearman correlation: Pearson of the ranks, ties given the average of the
 * ranks they span (1-based). NaN as Pearson (n < 2, a constant side).
 * Allocates O(n) scratch (aborts on out-of-memory like every x* allocation). */
double kmetric_spearman(const float *x, const float *y, size_t n);

/* Mean of (pred - gold)^2; NaN when n == 0. */
double kmetric_mse(const float *pred, const float *gold, size_t n);

/* Average ranks (1-based, ties averaged) of x[0..n) into rank (n). */
void kmetric_ranks(const float *x, size_t n, double *rank);

#endif
