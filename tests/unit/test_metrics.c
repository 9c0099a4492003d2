/* test_metrics.c: unit tests of trainer/metrics against values worked out by
 * hand (and agreeing with scikit-learn / scipy): accuracy, binary vs macro
 * F1, a class absent from both sides, MCC, Pearson, Spearman with tied
 * ranks, MSE, and the degenerate cases that are NaN by contract. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "trainer/metrics.h"

#define EPS 1e-12

/* cmocka before 1.1.6 has no assert_double_equal; a NaN never passes. */
static void near(double got, double want, double eps, int line)
{
    if (!(fabs(got - want) <= eps)) fail_msg("line %d: got %.17g, want %.17g", line, got, want);
}
#define assert_double_equal(got, want, eps) near((got), (want), (eps), __LINE__)

static void test_accuracy(void **state)
{
    (void)state;
    const int32_t pred[] = {0, 1, 1, 0, 1}, gold[] = {0, 1, 0, 0, 0};
    assert_double_equal(kmetric_accuracy(pred, gold, 5), 0.6, EPS);
    assert_true(isnan(kmetric_accuracy(pred, gold, 0)));
}

static void test_f1_binary_vs_macro(void **state)
{
    (void)state;
    /* class 1: TP 1, FP 2, FN 0 -> 2/4; class 0: TP 2, FP 0, FN 2 -> 4/6 */
    const int32_t pred[] = {0, 1, 1, 0, 1}, gold[] = {0, 1, 0, 0, 0};
    assert_double_equal(kmetric_f1_class(pred, gold, 5, 1), 0.5, EPS);
    assert_double_equal(kmetric_f1_class(pred, gold, 5, 0), 2.0 / 3, EPS);
    assert_double_equal(kmetric_f1(pred, gold, 5, 2), 0.5, EPS);            /* binary: class 1 */
    assert_double_equal(kmetric_f1_macro(pred, gold, 5, 2), 7.0 / 12, EPS); /* (1/2 + 2/3) / 2 */
    /* three classes: F1 2/3, 2/4, 2/5 */
    const int32_t p3[] = {0, 1, 2, 2, 1, 0}, g3[] = {0, 1, 1, 2, 2, 2};
    double want = (2.0 / 3 + 0.5 + 0.4) / 3;
    assert_double_equal(kmetric_f1_macro(p3, g3, 6, 3), want, EPS);
    assert_double_equal(kmetric_f1(p3, g3, 6, 3), want, EPS);
    /* a class that occurs nowhere is left out of the mean (sklearn's default labels) */
    const int32_t p2[] = {0, 1}, g2[] = {0, 1};
    assert_double_equal(kmetric_f1_macro(p2, g2, 2, 3), 1.0, EPS);
    /* no positive anywhere: binary F1 is 0 (zero_division = 0) */
    const int32_t z[] = {0, 0, 0};
    assert_double_equal(kmetric_f1(z, z, 3, 2), 0.0, EPS);
    assert_true(isnan(kmetric_f1(z, z, 0, 2)));
    /* an out-of-range prediction is a miss of the gold class */
    const int32_t po[] = {7, 1}, go[] = {0, 1};
    assert_double_equal(kmetric_f1_macro(po, go, 2, 2), 0.5, EPS); /* class 0: 0, class 1: 1 */
}

static void test_mcc(void **state)
{
    (void)state;
    /* TP 1, FP 1, TN 2, FN 0: 2 / sqrt(2 * 1 * 3 * 2) */
    const int32_t pred[] = {1, 1, 0, 0}, gold[] = {1, 0, 0, 0};
    assert_double_equal(kmetric_mcc(pred, gold, 4), 2.0 / sqrt(12.0), EPS);
    assert_double_equal(kmetric_mcc(gold, gold, 4), 1.0, EPS);
    const int32_t all0[] = {0, 0, 0, 0};
    assert_true(isnan(kmetric_mcc(all0, gold, 4))); /* no predicted positive */
}

static void test_pearson(void **state)
{
    (void)state;
    const float x[] = {1, 2, 3, 4}, y2[] = {2, 4, 6, 8}, yneg[] = {8, 6, 4, 2}, y[] = {1, 3, 2, 4};
    assert_double_equal(kmetric_pearson(x, y2, 4), 1.0, EPS);
    assert_double_equal(kmetric_pearson(x, yneg, 4), -1.0, EPS);
    assert_double_equal(kmetric_pearson(x, y, 4), 0.8, EPS); /* 4 / sqrt(5 * 5) */
    const float c[] = {3, 3, 3, 3};
    assert_true(isnan(kmetric_pearson(x, c, 4)));          /* zero variance */
    assert_true(isnan(kmetric_pearson(c, c, 4)));
    assert_true(isnan(kmetric_pearson(x, y, 1)));          /* n < 2 */
    const float bad[] = {1, NAN, 3, 4};
    assert_true(isnan(kmetric_pearson(x, bad, 4)));
}

static void test_spearman(void **state)
{
    (void)state;
    /* ranks with ties: {10, 20, 10, 30, 20, 20} -> 1.5 4 1.5 6 4 4 */
    const float v[] = {10, 20, 10, 30, 20, 20};
    double r[6];
    kmetric_ranks(v, 6, r);
    const double want[] = {1.5, 4, 1.5, 6, 4, 4};
    for (int i = 0; i < 6; i++) assert_double_equal(r[i], want[i], EPS);
    /* x ranks 1 2.5 2.5 4 against 1 2 3 4: 4.5 / sqrt(4.5 * 5) (scipy: 0.9486832980505138) */
    const float x[] = {1, 2, 2, 3}, y[] = {1, 2, 3, 4};
    assert_double_equal(kmetric_spearman(x, y, 4), 4.5 / sqrt(22.5), EPS);
    /* monotone but not linear: Spearman 1, Pearson below */
    const float a[] = {1, 2, 3, 4, 5}, b[] = {1, 4, 9, 16, 100};
    assert_double_equal(kmetric_spearman(a, b, 5), 1.0, EPS);
    assert_true(kmetric_pearson(a, b, 5) < 0.95);
    const float c[] = {2, 2, 2, 2, 2};
    assert_true(isnan(kmetric_spearman(a, c, 5))); /* all-equal side: undefined */
    assert_true(isnan(kmetric_spearman(a, b, 1)));
}

static void test_mse(void **state)
{
    (void)state;
    const float p[] = {1, 2, 3}, g[] = {1, 1, 1};
    assert_double_equal(kmetric_mse(p, g, 3), 5.0 / 3, EPS);
    assert_double_equal(kmetric_mse(p, p, 3), 0.0, 0);
    assert_true(isnan(kmetric_mse(p, g, 0)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accuracy), cmocka_unit_test(test_f1_binary_vs_macro), cmocka_unit_test(test_mcc),
        cmocka_unit_test(test_pearson),  cmocka_unit_test(test_spearman),          cmocka_unit_test(test_mse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
