/* tests/unit/fdcheck.h: the finite-difference gradient check the unit tests
 * share (include after cmocka.h and math.h). 4-point central differences
 * (-f(x+2h) + 8 f(x+h) - 8 f(x-h) + f(x-2h)) / 12h of a loss summed in double;
 * an element passes when |analytic - numeric| <= atol + rtol max(|analytic|,
 * |numeric|). Define FD_SEED before including it. */
#ifndef KILN_TESTS_FDCHECK_H
#define KILN_TESTS_FDCHECK_H

/* The file's random stream (xorshift64*, seeded by FD_SEED) and buffers. */
static uint64_t rng_state = FD_SEED;
static double urand(void) /* [0, 1) */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}
static void fill(float *x, size_t n, double lo, double hi)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * urand());
}
static float *fnew(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    assert_non_null(p);
    return p;
}

typedef double (*loss_fn)(void *ctx);

/* Compares grad (n) with the numeric derivative of f w.r.t. x (n) at up to
 * `max` elements: all when n <= max, else `max` drawn with rnd() in [0, 1). */
static void fd_check_at(const char *what, loss_fn f, void *ctx, float *x, const float *grad, size_t n, size_t max,
                        double (*rnd)(void), float h, double atol, double rtol)
{
    double worst = 0;
    size_t bad = 0;
    for (size_t k = 0; k < (n < max ? n : max); k++) {
        size_t i = n <= max ? k : (size_t)(rnd() * n);
        float x0 = x[i];
        double s[4];
        const float dx[4] = {2 * h, h, -h, -2 * h};
        for (int j = 0; j < 4; j++) {
            x[i] = x0 + dx[j];
            s[j] = f(ctx);
        }
        x[i] = x0;
        double num = (-s[0] + 8 * s[1] - 8 * s[2] + s[3]) / (12.0 * h);
        double ana = grad[i], err = fabs(ana - num);
        double tol = atol + rtol * fmax(fabs(ana), fabs(num));
        if (err > tol) {
            if (bad < 5) print_error("%s[%zu]: analytic %.7g numeric %.7g\n", what, i, ana, num);
            bad++;
        }
        if (err / tol > worst) worst = err / tol;
    }
    if (bad) print_error("%s: %zu elements off (worst err/tol %.2f)\n", what, bad, worst);
    assert_int_equal(bad, 0);
}

#endif
