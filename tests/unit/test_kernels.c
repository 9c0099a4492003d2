/* test_kernels.c: unit tests of trainer/kernels.c.
 *
 * Gradients: every backward kernel is checked against central finite
 * differences of a scalar loss S = sum(out * R) (R fixed random weights,
 * summed in double) taken on the float forward kernel, with the 4-point
 * stencil (-S(x+2h) + 8 S(x+h) - 8 S(x-h) + S(x-2h)) / 12h, h = 1e-2, on every
 * input element (a random sample for large inputs). Pass: |analytic - numeric| <=
 * ATOL + RTOL max(|analytic|, |numeric|) with ATOL = 2e-4, RTOL = 2e-3 (the
 * float rounding of S divided by h is ~5e-5 here; a wrong term gives errors
 * of the order of the gradient itself).
 * Forwards: dense, LayerNorm, GELU (both forms), softmax, attention (padding
 * and causal) and the cross-entropy are compared with straightforward double
 * references (relative 1e-5 or absolute 2e-6 for GELU, whose erf is a
 * polynomial: Abramowitz-Stegun 7.1.26, absolute error < 1e-6 in float,
 * the formula of PyTorch's vectorized erf; exp: relative error < 3e-7).
 * The fused epilogues (kepi_gelu_deriv, kepi_mul) agree with the separate
 * kernels (bitwise for gelu, 1e-6 for its stored derivative).
 * Dropout: masks are a pure function of (key, index), keep rate and scale,
 * p = 0 is the identity. Determinism: 1, 2 and 3 threads give the same bits,
 * at sizes large enough to run in parallel (test_threads); kgemm's three ways
 * of cutting a product agree with a double product (relative 1e-4 sqrt(K)). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/kernels.h"

#define ATOL 2e-4
#define RTOL 2e-3
#define FD_H 1e-2f
#define FD_SEED 0x243F6A8885A308D3ull /* this file's random stream */
#include "tests/unit/fdcheck.h"

static double dotd(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* ---- finite differences ------------------------------------------------------ */

/* Compares grad (n) with the numeric derivative of f w.r.t. x (n) at up to
 * `max` elements (all when n <= max, else a random sample). */
static void fd_check(const char *what, loss_fn f, void *ctx, float *x, const float *grad, size_t n, size_t max)
{
    fd_check_at(what, f, ctx, x, grad, n, max, urand, FD_H, ATOL, RTOL);
}

static void close_rel(const char *what, const float *got, const double *want, size_t n, double rtol, double atol)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(got[i] - want[i]) > atol + rtol * fabs(want[i])) {
            if (bad < 5) print_error("%s[%zu]: got %.8g want %.8g\n", what, i, got[i], want[i]);
            bad++;
        }
    assert_int_equal(bad, 0);
}

/* ---- scalar math ---------------------------------------------------------------- */

static void test_exp_erf(void **state)
{
    (void)state;
    double worst_e = 0, worst_f = 0;
    for (int i = 0; i <= 200000; i++) {
        double x = -80 + 160.0 * i / 200000;
        double e = fabs(kexp((float)x) - exp((float)x)) / exp((float)x);
        if (e > worst_e) worst_e = e;
        double y = -6 + 12.0 * i / 200000;
        double f = fabs(kerf((float)y) - erf((float)y));
        if (f > worst_f) worst_f = f;
    }
    print_message("kexp max relative error %.3g, kerf max absolute error %.3g\n", worst_e, worst_f);
    assert_true(worst_e < 3e-7);
    assert_true(worst_f < 1e-6); /* A&S 7.1.26 (1.5e-7) plus float rounding, as PyTorch's vectorized erf */
    assert_true(kexp(-1000.0f) < 1e-37f);
}

/* ---- embeddings -------------------------------------------------------------------- */

typedef struct emb_ctx {
    int N, C;
    float *t0, *t1, *t2, *out, *R;
    int32_t *i0, *i1, *i2;
} emb_ctx;

static double emb_loss(void *p)
{
    emb_ctx *c = p;
    kembed_forward(c->out, c->N, c->C, c->t0, c->i0, c->t1, c->i1, c->t2, c->i2);
    return dotd(c->out, c->R, (size_t)c->N * c->C);
}

static void test_embedding(void **state)
{
    (void)state;
    enum { N = 9, C = 37, V0 = 6, V1 = 5, V2 = 2 };
    emb_ctx c = {.N = N, .C = C};
    c.t0 = fnew(V0 * C), c.t1 = fnew(V1 * C), c.t2 = fnew(V2 * C), c.out = fnew(N * C), c.R = fnew(N * C);
    int32_t i0[N] = {1, 3, 3, 0, 5, 1, 3, 2, 0}, i1[N] = {0, 1, 2, 3, 4, 0, 1, 2, 3}, i2[N] = {0, 0, 1, 1, 1, 0, 0, 1, 0};
    c.i0 = i0, c.i1 = i1, c.i2 = i2;
    fill(c.t0, V0 * C, -1, 1), fill(c.t1, V1 * C, -1, 1), fill(c.t2, V2 * C, -1, 1), fill(c.R, N * C, -1, 1);
    float *d0 = fnew(V0 * C), *d1 = fnew(V1 * C), *d2 = fnew(V2 * C);
    /* forward: the sum of the three rows */
    emb_loss(&c);
    for (int n = 0; n < N; n++)
        for (int j = 0; j < C; j++)
            assert_float_equal(c.out[n * C + j], c.t0[i0[n] * C + j] + c.t1[i1[n] * C + j] + c.t2[i2[n] * C + j],
                               1e-6);
    /* backward, row 0 as padding index: no gradient from the lookup */
    kembed_backward(d0, i0, 0, d1, i1, d2, i2, c.R, N, C);
    for (int j = 0; j < C; j++) assert_true(d0[j] == 0.0f);
    float *once = fnew(V0 * C);
    memcpy(once, d0, V0 * C * sizeof(float));
    kembed_backward(d0, i0, 0, NULL, NULL, NULL, NULL, c.R, N, C); /* accumulates: d0 doubled */
    for (int j = 0; j < V0 * C; j++) assert_float_equal(d0[j], 2 * once[j], 1e-5);
    free(once);
    fd_check("emb d1", emb_loss, &c, c.t1, d1, V1 * C, 10000);
    fd_check("emb d2", emb_loss, &c, c.t2, d2, V2 * C, 10000);
    /* d0 without the padding row */
    memset(d0, 0, V0 * C * sizeof(float));
    kembed_backward(d0, i0, -1, NULL, NULL, NULL, NULL, c.R, N, C);
    fd_check("emb d0", emb_loss, &c, c.t0, d0, V0 * C, 10000);
    /* same bits with 1 and 3 threads */
    float *e0 = fnew(V0 * C);
    omp_set_num_threads(1);
    kembed_backward(e0, i0, -1, NULL, NULL, NULL, NULL, c.R, N, C);
    omp_set_num_threads(3);
    memset(d0, 0, V0 * C * sizeof(float));
    kembed_backward(d0, i0, -1, NULL, NULL, NULL, NULL, c.R, N, C);
    omp_set_num_threads(2);
    assert_memory_equal(d0, e0, V0 * C * sizeof(float));
    free(c.t0), free(c.t1), free(c.t2), free(c.out), free(c.R), free(d0), free(d1), free(d2), free(e0);
}

/* ---- dense --------------------------------------------------------------------------- */

typedef struct dense_ctx {
    int N, in, out;
    float *x, *W, *b, *res, *y, *R;
} dense_ctx;

static double dense_loss(void *p)
{
    dense_ctx *c = p;
    kdense_forward(c->y, c->x, c->W, c->b, c->res, c->N, c->in, c->out);
    return dotd(c->y, c->R, (size_t)c->N * c->out);
}

static void test_dense(void **state)
{
    (void)state;
    enum { N = 7, IN = 19, OUT = 13 };
    dense_ctx c = {.N = N, .in = IN, .out = OUT};
    c.x = fnew(N * IN), c.W = fnew(OUT * IN), c.b = fnew(OUT), c.res = fnew(N * OUT), c.y = fnew(N * OUT),
    c.R = fnew(N * OUT);
    fill(c.x, N * IN, -1, 1), fill(c.W, OUT * IN, -1, 1), fill(c.b, OUT, -1, 1), fill(c.res, N * OUT, -1, 1);
    fill(c.R, N * OUT, -1, 1);
    dense_loss(&c);
    double ref[N * OUT];
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++) {
            double s = (double)c.b[o] + c.res[n * OUT + o];
            for (int i = 0; i < IN; i++) s += (double)c.x[n * IN + i] * c.W[o * IN + i];
            ref[n * OUT + o] = s;
        }
    close_rel("dense y", c.y, ref, N * OUT, 1e-5, 1e-6);
    float *dx = fnew(N * IN), *dW = fnew(OUT * IN), *db = fnew(OUT);
    kdense_backward(dx, 0, dW, db, c.R, c.x, c.W, N, IN, OUT);
    fd_check("dense dx", dense_loss, &c, c.x, dx, N * IN, 10000);
    fd_check("dense dW", dense_loss, &c, c.W, dW, OUT * IN, 10000);
    fd_check("dense db", dense_loss, &c, c.b, db, OUT, 10000);
    /* the residual's gradient is R itself (y = ... + res) */
    fd_check("dense dres", dense_loss, &c, c.res, c.R, N * OUT, 10000);
    /* acc = 1 adds to dx; parameter gradients always accumulate */
    float *dx2 = fnew(N * IN);
    memcpy(dx2, dx, N * IN * sizeof(float));
    float w0 = dW[5], b0 = db[3];
    kdense_backward(dx2, 1, dW, db, c.R, c.x, c.W, N, IN, OUT);
    for (int i = 0; i < N * IN; i++) assert_float_equal(dx2[i], 2 * dx[i], 1e-5);
    assert_float_equal(dW[5], 2 * w0, 1e-5);
    assert_float_equal(db[3], 2 * b0, 1e-5);
    /* without bias and residual */
    kdense_forward(c.y, c.x, c.W, NULL, NULL, N, IN, OUT);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++) {
            double s = 0;
            for (int i = 0; i < IN; i++) s += (double)c.x[n * IN + i] * c.W[o * IN + i];
            assert_float_equal(c.y[n * OUT + o], s, 1e-5);
        }
    free(c.x), free(c.W), free(c.b), free(c.res), free(c.y), free(c.R), free(dx), free(dW), free(db), free(dx2);
}

static void test_colsum(void **state)
{
    (void)state;
    enum { N = 33, C = 150 };
    float *x = fnew(N * C), *s1 = fnew(C), *s2 = fnew(C);
    fill(x, N * C, -1, 1);
    omp_set_num_threads(1);
    kcolsum_acc(s1, x, N, C);
    omp_set_num_threads(3);
    kcolsum_acc(s2, x, N, C);
    omp_set_num_threads(2);
    assert_memory_equal(s1, s2, C * sizeof(float));
    for (int c = 0; c < C; c++) {
        double s = 0;
        for (int n = 0; n < N; n++) s += x[n * C + c];
        assert_float_equal(s1[c], s, 1e-5);
    }
    free(x), free(s1), free(s2);
}

/* ---- layer norm ---------------------------------------------------------------------------- */

typedef struct ln_ctx {
    int N, C;
    float *x, *g, *b, *y, *mean, *rstd, *R;
} ln_ctx;

static double ln_loss(void *p)
{
    ln_ctx *c = p;
    klayernorm_forward(c->y, c->mean, c->rstd, c->x, c->g, c->b, c->N, c->C, 1e-5f);
    return dotd(c->y, c->R, (size_t)c->N * c->C);
}

static void test_layernorm(void **state)
{
    (void)state;
    enum { N = 5, C = 37 };
    ln_ctx c = {.N = N, .C = C};
    c.x = fnew(N * C), c.g = fnew(C), c.b = fnew(C), c.y = fnew(N * C), c.mean = fnew(N), c.rstd = fnew(N),
    c.R = fnew(N * C);
    fill(c.x, N * C, -2, 3), fill(c.g, C, 0.5, 1.5), fill(c.b, C, -1, 1), fill(c.R, N * C, -1, 1);
    ln_loss(&c);
    double ref[N * C];
    for (int n = 0; n < N; n++) {
        double m = 0, v = 0;
        for (int j = 0; j < C; j++) m += c.x[n * C + j];
        m /= C;
        for (int j = 0; j < C; j++) v += (c.x[n * C + j] - m) * (c.x[n * C + j] - m);
        v /= C;
        for (int j = 0; j < C; j++) ref[n * C + j] = (c.x[n * C + j] - m) / sqrt(v + 1e-5) * c.g[j] + c.b[j];
    }
    close_rel("layernorm y", c.y, ref, N * C, 1e-5, 2e-6);
    float *dx = fnew(N * C), *dg = fnew(C), *db = fnew(C);
    klayernorm_backward(dx, 0, dg, db, c.R, c.x, c.mean, c.rstd, c.g, N, C);
    fd_check("layernorm dx", ln_loss, &c, c.x, dx, N * C, 10000);
    fd_check("layernorm dg", ln_loss, &c, c.g, dg, C, 10000);
    fd_check("layernorm db", ln_loss, &c, c.b, db, C, 10000);
    /* in place (dx == dy) gives the same */
    float *d2 = fnew(N * C), *dg2 = fnew(C), *db2 = fnew(C);
    memcpy(d2, c.R, N * C * sizeof(float));
    klayernorm_backward(d2, 0, dg2, db2, d2, c.x, c.mean, c.rstd, c.g, N, C);
    assert_memory_equal(d2, dx, N * C * sizeof(float));
    assert_memory_equal(dg2, dg, C * sizeof(float));
    free(c.x), free(c.g), free(c.b), free(c.y), free(c.mean), free(c.rstd), free(c.R), free(dx), free(dg), free(db);
    free(d2), free(dg2), free(db2);
}

/* ---- gelu ------------------------------------------------------------------------------------ */

typedef struct act_ctx {
    size_t n;
    int kind;
    float *x, *y, *R;
} act_ctx;

static double gelu_loss(void *p)
{
    act_ctx *c = p;
    kgelu_forward(c->y, c->x, c->n, c->kind);
    return dotd(c->y, c->R, c->n);
}

static void gelu_case(int kind)
{
    enum { N = 301 };
    act_ctx c = {.n = N, .kind = kind};
    c.x = fnew(N), c.y = fnew(N), c.R = fnew(N);
    for (int i = 0; i < N; i++) c.x[i] = -7.5f + 15.0f * i / (N - 1) + 0.01f * (float)urand();
    fill(c.R, N, -1, 1);
    gelu_loss(&c);
    double ref[N];
    for (int i = 0; i < N; i++) {
        double v = c.x[i];
        ref[i] = kind == KGELU_TANH ? 0.5 * v * (1 + tanh(sqrt(2 / 3.14159265358979323846) * (v + 0.044715 * v * v * v)))
                                    : 0.5 * v * (1 + erf(v / sqrt(2.0)));
    }
    close_rel(kind == KGELU_TANH ? "gelu_new" : "gelu", c.y, ref, N, 2e-6, 2e-6);
    float *dx = fnew(N);
    kgelu_backward(dx, c.R, c.x, N, kind);
    fd_check(kind == KGELU_TANH ? "gelu_new dx" : "gelu dx", gelu_loss, &c, c.x, dx, N, 10000);
    /* in place */
    float *d2 = fnew(N);
    memcpy(d2, c.R, N * sizeof(float));
    kgelu_backward(d2, d2, c.x, N, kind);
    assert_memory_equal(d2, dx, N * sizeof(float));
    /* the fused epilogue: the same gelu, and gelu'(x) in place of x (within 1e-6 of the backward's) */
    float *xd = fnew(N), *yd = fnew(N), *ones = fnew(N), *der = fnew(N);
    memcpy(xd, c.x, N * sizeof(float));
    for (int i = 0; i < N; i++) ones[i] = 1.0f;
    kgelu_backward(der, ones, c.x, N, kind);
    kepi_act e = {.x = xd, .y = yd, .C = N, .kind = kind};
    kepi_gelu_deriv(&e, 0, 1);
    kgelu_forward(c.y, c.x, N, kind);
    assert_memory_equal(yd, c.y, N * sizeof(float));
    for (int i = 0; i < N; i++) assert_true(fabsf(xd[i] - der[i]) <= 1e-6f);
    /* the backward epilogue: y *= stored derivative */
    memcpy(d2, c.R, N * sizeof(float));
    kepi_act m = {.x = xd, .y = d2, .C = N, .kind = kind};
    kepi_mul(&m, 0, 1);
    for (int i = 0; i < N; i++) assert_true(d2[i] == c.R[i] * xd[i]);
    free(xd), free(yd), free(ones), free(der);
    free(c.x), free(c.y), free(c.R), free(dx), free(d2);
}
static void test_gelu_erf(void **state)
{
    (void)state;
    gelu_case(KGELU_ERF);
}
static void test_gelu_tanh(void **state)
{
    (void)state;
    gelu_case(KGELU_TANH);
}

/* ---- softmax ------------------------------------------------------------------------------------ */

typedef struct sm_ctx {
    int rows, cols;
    float *x, *y, *R;
} sm_ctx;

static double sm_loss(void *p)
{
    sm_ctx *c = p;
    ksoftmax_forward(c->y, c->x, c->rows, c->cols);
    return dotd(c->y, c->R, (size_t)c->rows * c->cols);
}

static void test_softmax(void **state)
{
    (void)state;
    enum { R = 4, C = 29 };
    sm_ctx c = {.rows = R, .cols = C};
    c.x = fnew(R * C), c.y = fnew(R * C), c.R = fnew(R * C);
    fill(c.x, R * C, -4, 4), fill(c.R, R * C, -1, 1);
    c.x[3] = 60.0f; /* a large logit: no overflow */
    sm_loss(&c);
    double ref[R * C];
    for (int r = 0; r < R; r++) {
        double m = -1e300, s = 0;
        for (int j = 0; j < C; j++) m = fmax(m, c.x[r * C + j]);
        for (int j = 0; j < C; j++) s += exp(c.x[r * C + j] - m);
        for (int j = 0; j < C; j++) ref[r * C + j] = exp(c.x[r * C + j] - m) / s;
    }
    close_rel("softmax y", c.y, ref, R * C, 1e-5, 1e-9);
    float *dx = fnew(R * C);
    ksoftmax_backward(dx, c.R, c.y, R, C);
    fd_check("softmax dx", sm_loss, &c, c.x, dx, R * C, 10000);
    free(c.x), free(c.y), free(c.R), free(dx);
}

/* ---- attention ------------------------------------------------------------------------------------ */

typedef struct attn_ctx {
    kattn_dims d;
    int N;
    int32_t offs[8];
    float *qkv, *ctx, *probs, *scratch, *R;
} attn_ctx;

static double attn_loss(void *p)
{
    attn_ctx *c = p;
    kattention_forward(c->ctx, c->probs, c->scratch, c->qkv, c->offs, &c->d);
    return dotd(c->ctx, c->R, (size_t)c->N * c->d.NH * c->d.D);
}

/* ctx by the textbook formula, in double, with the padding/causal masks */
static void attn_ref(const attn_ctx *c, double *out)
{
    const int NH = c->d.NH, D = c->d.D, H = NH * D;
    for (int b = 0; b < c->d.B; b++) {
        int o = c->offs[b], n = c->offs[b + 1] - o;
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < n; i++) {
                double s[64], m = -1e300, z = 0;
                int k = c->d.causal ? i + 1 : n;
                for (int j = 0; j < k; j++) {
                    double v = 0;
                    for (int e = 0; e < D; e++)
                        v += (double)c->qkv[(o + i) * 3 * H + h * D + e] * c->qkv[(o + j) * 3 * H + H + h * D + e];
                    s[j] = v / sqrt((double)D);
                    m = fmax(m, s[j]);
                }
                for (int j = 0; j < k; j++) z += s[j] = exp(s[j] - m);
                for (int e = 0; e < D; e++) {
                    double v = 0;
                    for (int j = 0; j < k; j++) v += s[j] / z * c->qkv[(o + j) * 3 * H + 2 * H + h * D + e];
                    out[(o + i) * H + h * D + e] = v;
                }
            }
    }
}

static void attention_case(int causal, float pdrop)
{
    attn_ctx c = {.d = {.B = 3, .NH = 2, .D = 5, .L = 8, .causal = causal, .pdrop = pdrop, .key = 12345}};
    const int lens[3] = {5, 1, 8};
    c.offs[0] = 0;
    for (int b = 0; b < 3; b++) c.offs[b + 1] = c.offs[b] + lens[b];
    c.N = c.offs[3];
    const int H = c.d.NH * c.d.D;
    c.qkv = fnew((size_t)c.N * 3 * H), c.ctx = fnew((size_t)c.N * H), c.R = fnew((size_t)c.N * H);
    c.probs = fnew((size_t)c.d.B * c.d.NH * c.d.L * c.d.L);
    c.scratch = fnew(8 * kattention_scratch(&c.d));
    fill(c.qkv, (size_t)c.N * 3 * H, -1.5, 1.5), fill(c.R, (size_t)c.N * H, -1, 1);
    attn_loss(&c);
    if (pdrop == 0) {
        double *ref = calloc((size_t)c.N * H, sizeof(double));
        attn_ref(&c, ref);
        close_rel("attention ctx", c.ctx, ref, (size_t)c.N * H, 1e-5, 1e-6);
        free(ref);
    }
    float *dqkv = fnew((size_t)c.N * 3 * H);
    kattention_backward(dqkv, c.scratch, c.R, c.qkv, c.probs, c.offs, &c.d);
    char what[64];
    snprintf(what, sizeof what, "attention dqkv (causal %d, dropout %.1f)", causal, pdrop);
    fd_check(what, attn_loss, &c, c.qkv, dqkv, (size_t)c.N * 3 * H, 100000);
    /* the same with one thread */
    float *d1 = fnew((size_t)c.N * 3 * H), *ctx1 = fnew((size_t)c.N * H);
    attn_loss(&c); /* the finite differences left ctx of a perturbed input */
    memcpy(ctx1, c.ctx, (size_t)c.N * H * sizeof(float));
    omp_set_num_threads(1);
    attn_loss(&c);
    kattention_backward(d1, c.scratch, c.R, c.qkv, c.probs, c.offs, &c.d);
    omp_set_num_threads(2);
    assert_memory_equal(ctx1, c.ctx, (size_t)c.N * H * sizeof(float));
    assert_memory_equal(d1, dqkv, (size_t)c.N * 3 * H * sizeof(float));
    free(c.qkv), free(c.ctx), free(c.R), free(c.probs), free(c.scratch), free(dqkv), free(d1), free(ctx1);
}
static void test_attention(void **state)
{
    (void)state;
    attention_case(0, 0.0f);
}
static void test_attention_causal(void **state)
{
    (void)state;
    attention_case(1, 0.0f);
}
static void test_attention_dropout(void **state)
{
    (void)state;
    attention_case(0, 0.3f);
    attention_case(1, 0.3f);
}

/* ---- cross-entropy ------------------------------------------------------------------------------- */

typedef struct xe_ctx {
    int M, V;
    float *x, *tmp, *loss, *gs;
    int32_t *lab;
} xe_ctx;

static double xe_loss(void *p)
{
    xe_ctx *c = p;
    memcpy(c->tmp, c->x, (size_t)c->M * c->V * sizeof(float));
    kxent(c->tmp, NULL, c->loss, NULL, c->lab, NULL, c->M, c->V);
    return dotd(c->loss, c->gs, (size_t)c->M);
}

static void test_xent(void **state)
{
    (void)state;
    enum { M = 5, V = 43 };
    xe_ctx c = {.M = M, .V = V};
    int32_t lab[M] = {3, -1, 42, 0, 7};
    c.lab = lab;
    c.x = fnew(M * V), c.tmp = fnew(M * V), c.loss = fnew(M), c.gs = fnew(M);
    fill(c.x, M * V, -3, 3), fill(c.gs, M, 0.2, 1.5);
    c.x[4 * V + 7] = 9.0f; /* row 4: label is the argmax */
    c.x[3 * V + 5] = 9.0f; /* row 3: not */
    uint8_t corr[M];
    memcpy(c.tmp, c.x, sizeof(float) * M * V);
    kxent(c.tmp, NULL, c.loss, corr, lab, NULL, M, V);
    assert_memory_equal(c.tmp, c.x, sizeof(float) * M * V); /* no gradient asked: logits kept */
    for (int i = 0; i < M; i++) {
        if (lab[i] < 0) {
            assert_true(c.loss[i] == 0.0f && corr[i] == 0);
            continue;
        }
        double m = -1e300, s = 0;
        int am = 0;
        for (int j = 0; j < V; j++)
            if (c.x[i * V + j] > m) m = c.x[i * V + j], am = j;
        for (int j = 0; j < V; j++) s += exp(c.x[i * V + j] - m);
        double want = log(s) + m - c.x[i * V + lab[i]];
        assert_true(fabs(c.loss[i] - want) <= 1e-5 * fabs(want) + 1e-6);
        assert_int_equal(corr[i], am == lab[i]);
    }
    assert_int_equal(corr[4], 1);
    assert_int_equal(corr[3], 0);
    float *g = fnew(M * V);
    memcpy(g, c.x, sizeof(float) * M * V);
    kxent(g, NULL, c.loss, NULL, lab, c.gs, M, V);
    for (int j = 0; j < V; j++) assert_true(g[1 * V + j] == 0.0f); /* ignored row */
    fd_check("xent dlogits", xe_loss, &c, c.x, g, M * V, 10000);
    /* with a bias: the same as adding it first, logits kept (biased) without gscale */
    float *bias = fnew(V), *xb = fnew(M * V), *l2 = fnew(M), *g2 = fnew(M * V);
    fill(bias, V, -2, 2);
    for (int i = 0; i < M * V; i++) xb[i] = c.x[i] + bias[i % V];
    memcpy(g, xb, sizeof(float) * M * V);
    kxent(g, NULL, c.loss, NULL, lab, c.gs, M, V);
    memcpy(c.tmp, c.x, sizeof(float) * M * V);
    memcpy(g2, c.x, sizeof(float) * M * V);
    kxent(g2, bias, l2, NULL, lab, c.gs, M, V);
    assert_memory_equal(g, g2, sizeof(float) * M * V);
    assert_memory_equal(c.loss, l2, sizeof(float) * M);
    kxent(c.tmp, bias, l2, NULL, lab, NULL, M, V);
    assert_memory_equal(c.tmp, xb, sizeof(float) * M * V);
    free(bias), free(xb), free(l2), free(g2);
    free(c.x), free(c.tmp), free(c.loss), free(c.gs), free(g);
}

/* ---- pooler ---------------------------------------------------------------------------------------- */

typedef struct pool_ctx {
    int M, H;
    float *cls, *W, *b, *out, *R;
} pool_ctx;

static double pool_loss(void *p)
{
    pool_ctx *c = p;
    kpooler_forward(c->out, c->cls, c->W, c->b, c->M, c->H);
    return dotd(c->out, c->R, (size_t)c->M * c->H);
}

static void test_pooler(void **state)
{
    (void)state;
    enum { M = 3, H = 10 };
    pool_ctx c = {.M = M, .H = H};
    c.cls = fnew(M * H), c.W = fnew(H * H), c.b = fnew(H), c.out = fnew(M * H), c.R = fnew(M * H);
    fill(c.cls, M * H, -1, 1), fill(c.W, H * H, -0.5, 0.5), fill(c.b, H, -0.5, 0.5), fill(c.R, M * H, -1, 1);
    pool_loss(&c);
    for (int i = 0; i < M; i++)
        for (int o = 0; o < H; o++) {
            double s = c.b[o];
            for (int k = 0; k < H; k++) s += (double)c.cls[i * H + k] * c.W[o * H + k];
            assert_float_equal(c.out[i * H + o], tanh(s), 1e-6);
        }
    float *dcls = fnew(M * H), *dW = fnew(H * H), *db = fnew(H), *dp = fnew(M * H);
    memcpy(dp, c.R, sizeof(float) * M * H);
    kpooler_backward(dcls, 0, dW, db, dp, c.cls, c.out, c.W, M, H);
    fd_check("pooler dcls", pool_loss, &c, c.cls, dcls, M * H, 10000);
    fd_check("pooler dW", pool_loss, &c, c.W, dW, H * H, 10000);
    fd_check("pooler db", pool_loss, &c, c.b, db, H, 10000);
    free(c.cls), free(c.W), free(c.b), free(c.out), free(c.R), free(dcls), free(dW), free(db), free(dp);
}

/* ---- MLM head ---------------------------------------------------------------------------------------- */

typedef struct mlm_ctx {
    kmlm_head k;
    float *x, *w, *b, *g, *beta, *emb, *bias, *loss, *gs;
    int32_t *lab;
} mlm_ctx;

static double mlm_loss(void *p)
{
    mlm_ctx *c = p;
    kmlm_head_forward(&c->k, c->x);
    kxent(c->k.logits, c->bias, c->loss, NULL, c->lab, NULL, c->k.M, c->k.V);
    return dotd(c->loss, c->gs, (size_t)c->k.M);
}

static void mlm_case(int act, int H, int E)
{
    enum { M = 5, V = 23 };
    mlm_ctx c = {0};
    int32_t lab[M] = {4, 22, 0, -1, 4};
    c.lab = lab;
    c.x = fnew(M * H), c.w = fnew(E * H), c.b = fnew(E), c.g = fnew(E), c.beta = fnew(E), c.emb = fnew(V * E),
    c.bias = fnew(V), c.loss = fnew(M), c.gs = fnew(M);
    fill(c.x, M * H, -1, 1), fill(c.w, E * H, -0.6, 0.6), fill(c.b, E, -0.3, 0.3), fill(c.g, E, 0.5, 1.5);
    fill(c.beta, E, -0.3, 0.3), fill(c.emb, V * E, -1, 1), fill(c.bias, V, -0.5, 0.5), fill(c.gs, M, 0.2, 1);
    kmlm_head k = {.M = M, .H = H, .E = E, .V = V, .act = act, .eps = 1e-12f, .w = c.w, .b = c.b, .ln_g = c.g,
                   .ln_b = c.beta, .emb = c.emb, .bias = c.bias};
    k.dw = fnew(E * H), k.db = fnew(E), k.dln_g = fnew(E), k.dln_b = fnew(E), k.demb = fnew(V * E),
    k.dbias = fnew(V);
    k.pre = fnew(M * E), k.a = fnew(M * E), k.h = fnew(M * E), k.mean = fnew(M), k.rstd = fnew(M),
    k.logits = fnew(M * V), k.dh = fnew(M * E), k.da = fnew(M * E);
    c.k = k;
    float *dx = fnew(M * H);
    kmlm_head_forward(&c.k, c.x);
    kxent(c.k.logits, c.bias, c.loss, NULL, lab, c.gs, M, V);
    kmlm_head_backward(&c.k, dx, 0, c.x);
    fd_check("mlm dx", mlm_loss, &c, c.x, dx, M * H, 10000);
    fd_check("mlm dW", mlm_loss, &c, c.w, k.dw, E * H, 10000);
    fd_check("mlm db", mlm_loss, &c, c.b, k.db, E, 10000);
    fd_check("mlm dln_g", mlm_loss, &c, c.g, k.dln_g, E, 10000);
    fd_check("mlm dln_b", mlm_loss, &c, c.beta, k.dln_b, E, 10000);
    fd_check("mlm demb (tied decoder)", mlm_loss, &c, c.emb, k.demb, V * E, 10000);
    fd_check("mlm dbias", mlm_loss, &c, c.bias, k.dbias, V, 10000);
    free(c.x), free(c.w), free(c.b), free(c.g), free(c.beta), free(c.emb), free(c.bias), free(c.loss), free(c.gs);
    free(k.dw), free(k.db), free(k.dln_g), free(k.dln_b), free(k.demb), free(k.dbias), free(k.pre), free(k.a);
    free(k.h), free(k.mean), free(k.rstd), free(k.logits), free(k.dh), free(k.da), free(dx);
}
static void test_mlm_head(void **state)
{
    (void)state;
    mlm_case(KGELU_TANH, 12, 6); /* ALBERT: E < H */
    mlm_case(KGELU_ERF, 9, 9);   /* BERT: E = H */
}

/* ---- dropout -------------------------------------------------------------------------------------------- */

/* kdropout_rows: without a token table it is kdropout / kresidual_dropout;
 * with one, row r's elements are indexed from tok[r] C, so a row draws the
 * same mask wherever it sits (rows permuted: masks permuted with them). */
static void test_dropout_rows(void **state)
{
    (void)state;
    enum { N = 300, C = 96 };
    const size_t n = (size_t)N * C;
    float *x = fnew(n), *r = fnew(n), *y = fnew(n), *z = fnew(n);
    fill(x, n, 0.5, 1.5);
    fill(r, n, -1, 1);
    const float p = 0.3f;
    kdropout(y, x, n, p, 99, 0);
    kdropout_rows(z, x, NULL, N, C, p, 99, NULL);
    assert_memory_equal(y, z, n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    kresidual_dropout(y, r, n, p, 99, 0);
    memcpy(z, x, n * sizeof(float));
    kdropout_rows(z, z, r, N, C, p, 99, NULL);
    assert_memory_equal(y, z, n * sizeof(float));
    /* a token table: row i is token tok[i]; the rows reversed with their tokens give reversed masks */
    uint64_t *tok = malloc(N * sizeof *tok), *rev = malloc(N * sizeof *rev);
    float *xr = fnew(n);
    for (int i = 0; i < N; i++) tok[i] = 1000003ull * (uint64_t)i + 17;
    for (int i = 0; i < N; i++) {
        rev[i] = tok[N - 1 - i];
        memcpy(xr + (size_t)i * C, x + (size_t)(N - 1 - i) * C, C * sizeof(float));
    }
    kdropout_rows(y, x, NULL, N, C, p, 99, tok);
    kdropout_rows(z, xr, NULL, N, C, p, 99, rev);
    for (int i = 0; i < N; i++) {
        assert_memory_equal(y + (size_t)i * C, z + (size_t)(N - 1 - i) * C, C * sizeof(float));
        for (int c = 0; c < C; c++)
            assert_true(y[(size_t)i * C + c] == (kdropout_keep(99, tok[i] * C + c, p) ? x[(size_t)i * C + c] * (1.0f / (1.0f - p)) : 0.0f));
    }
    /* p = 0: a copy, or the residual sum */
    kdropout_rows(z, x, r, N, C, 0.0f, 99, tok);
    for (size_t i = 0; i < n; i++) assert_true(z[i] == x[i] + r[i]);
    free(tok);
    free(rev);
    free(x);
    free(r);
    free(y);
    free(z);
    free(xr);
}

static void test_dropout(void **state)
{
    (void)state;
    enum { N = 200000 };
    float *x = fnew(N), *y = fnew(N), *z = fnew(N), *r = fnew(N);
    fill(x, N, 0.5, 1.5);
    fill(r, N, -1, 1);
    const float p = 0.25f;
    kdropout(y, x, N, p, 777, 0);
    size_t kept = 0;
    for (int i = 0; i < N; i++) {
        int k = kdropout_keep(777, (uint64_t)i, p);
        kept += k;
        assert_true(y[i] == (k ? x[i] * (1.0f / (1.0f - p)) : 0.0f));
    }
    assert_true(fabs((double)kept / N - 0.75) < 0.005);
    /* reproducible from the key, with 1 thread too; another key differs */
    omp_set_num_threads(1);
    kdropout(z, x, N, p, 777, 0);
    omp_set_num_threads(2);
    assert_memory_equal(y, z, N * sizeof(float));
    kdropout(z, x, N, p, 778, 0);
    assert_true(memcmp(y, z, N * sizeof(float)) != 0);
    /* index offset: element i of (first = 1000) is element 1000 + i of first = 0 */
    kdropout(z, x + 1000, 500, p, 777, 1000);
    assert_memory_equal(z, y + 1000, 500 * sizeof(float));
    /* in place */
    memcpy(z, x, N * sizeof(float));
    kdropout(z, z, N, p, 777, 0);
    assert_memory_equal(z, y, N * sizeof(float));
    /* p = 0: identity */
    kdropout(z, x, N, 0.0f, 777, 0);
    assert_memory_equal(z, x, N * sizeof(float));
    /* residual: z = r + dropout(x) */
    memcpy(z, x, N * sizeof(float));
    kresidual_dropout(z, r, N, p, 777, 0);
    for (int i = 0; i < N; i += 97) assert_true(z[i] == r[i] + y[i]);
    free(x), free(y), free(z), free(r);
}

/* ---- thread-count independence at sizes that run in parallel ------------------- */

/* Runs f with 1, 2 and 3 threads; every run must write the same bytes to out (n floats). */
typedef void (*run_fn)(void *ctx);
static void same_bits(const char *what, run_fn f, void *ctx, float *out, size_t n)
{
    float *first = fnew(n);
    for (int t = 1; t <= 3; t++) {
        omp_set_num_threads(t);
        f(ctx);
        if (t == 1)
            memcpy(first, out, n * sizeof(float));
        else if (memcmp(first, out, n * sizeof(float))) {
            print_error("%s: %d threads give other bits than 1\n", what, t);
            fail();
        }
    }
    omp_set_num_threads(2);
    free(first);
}

typedef struct big {
    int M, N, K, ta, tb;
    float *A, *B, *C, *C0;
} big;
static void run_gemm(void *p)
{
    big *g = p;
    memcpy(g->C, g->C0, (size_t)g->M * g->N * sizeof(float));
    kgemm(g->ta, g->tb, g->M, g->N, g->K, 0.5f, g->A, g->ta ? g->M : g->K, g->B, g->tb ? g->K : g->N, 1.0f, g->C,
          g->N);
}
static void test_gemm_grid(void **state)
{
    (void)state;
    /* each way of cutting (rows, columns, inner dimension) against a double product */
    const int shapes[3][3] = {{1000, 48, 200}, {40, 3000, 100}, {50, 40, 6000}};
    const int expect[3][3] = {{4, 1, 1}, {1, 4, 1}, {1, 1, 4}}; /* 9.6M, 12M, 12M multiply-adds */
    for (int s = 0; s < 3; s++) {
        big g = {.M = shapes[s][0], .N = shapes[s][1], .K = shapes[s][2], .ta = s == 2, .tb = s != 1};
        int mt, nt, kt;
        kgemm_grid(g.M, g.N, g.K, &mt, &nt, &kt);
        assert_int_equal(mt, expect[s][0]);
        assert_int_equal(nt, expect[s][1]);
        assert_int_equal(kt, expect[s][2]);
        g.A = fnew((size_t)g.M * g.K), g.B = fnew((size_t)g.K * g.N), g.C = fnew((size_t)g.M * g.N),
        g.C0 = fnew((size_t)g.M * g.N);
        fill(g.A, (size_t)g.M * g.K, -1, 1), fill(g.B, (size_t)g.K * g.N, -1, 1), fill(g.C0, (size_t)g.M * g.N, -1, 1);
        same_bits("kgemm", run_gemm, &g, g.C, (size_t)g.M * g.N);
        for (int k = 0; k < 200; k++) {
            int i = (int)(urand() * g.M), j = (int)(urand() * g.N);
            double want = g.C0[(size_t)i * g.N + j];
            for (int q = 0; q < g.K; q++) {
                double a = g.ta ? g.A[(size_t)q * g.M + i] : g.A[(size_t)i * g.K + q];
                double b = g.tb ? g.B[(size_t)j * g.K + q] : g.B[(size_t)q * g.N + j];
                want += 0.5 * a * b;
            }
            assert_true(fabs(g.C[(size_t)i * g.N + j] - want) < 1e-4 * sqrt((double)g.K));
        }
        free(g.A), free(g.B), free(g.C), free(g.C0);
    }
}

typedef struct bigk {
    int N, C, V, L;
    float *x, *y, *dy, *dx, *g, *b, *mean, *rstd, *dg, *db, *tab, *dtab, *lg, *loss, *gs;
    int32_t *ids, *lab, offs[5];
    float *qkv, *ctx, *probs, *scratch, *dqkv;
    kattn_dims d;
} bigk;
static void run_ln(void *p)
{
    bigk *k = p;
    memset(k->dg, 0, k->C * sizeof(float)), memset(k->db, 0, k->C * sizeof(float));
    klayernorm_forward(k->y, k->mean, k->rstd, k->x, k->g, k->b, k->N, k->C, 1e-12f);
    klayernorm_backward(k->dx, 0, k->dg, k->db, k->dy, k->x, k->mean, k->rstd, k->g, k->N, k->C);
    /* fold everything into y so that one comparison covers it */
    for (int c = 0; c < k->C; c++) k->y[c] += k->dg[c] + k->db[c] + k->dx[c];
}
static void run_emb(void *p)
{
    bigk *k = p;
    memset(k->dtab, 0, (size_t)k->V * k->C * sizeof(float));
    kembed_backward(k->dtab, k->ids, 0, NULL, NULL, NULL, NULL, k->dy, k->N, k->C);
    kcolsum_acc(k->dtab, k->dy, k->N, k->C);
}
static void run_act(void *p)
{
    bigk *k = p;
    kgelu_forward(k->y, k->x, (size_t)k->N * k->C, KGELU_ERF);
    kgelu_backward(k->dx, k->dy, k->x, (size_t)k->N * k->C, KGELU_TANH);
    ksoftmax_forward(k->y + 7, k->x, k->N / 2, k->C);
    for (size_t i = 0; i < (size_t)k->N * k->C; i++) k->y[i] += k->dx[i];
}
static void run_xent(void *p)
{
    bigk *k = p;
    memcpy(k->lg, k->tab, (size_t)50 * k->V * sizeof(float));
    kxent(k->lg, k->tab + (size_t)50 * k->V, k->loss, NULL, k->lab, k->gs, 50, k->V);
    memcpy(k->lg + (size_t)50 * k->V, k->loss, 50 * sizeof(float));
}
static void run_attn(void *p)
{
    bigk *k = p;
    kattention_forward(k->ctx, k->probs, k->scratch, k->qkv, k->offs, &k->d);
    kattention_backward(k->dqkv, k->scratch, k->ctx, k->qkv, k->probs, k->offs, &k->d);
}
static void test_threads(void **state)
{
    (void)state;
    bigk k = {.N = 600, .C = 200, .V = 3000, .L = 64};
    size_t nc = (size_t)k.N * k.C;
    k.x = fnew(nc), k.y = fnew(nc), k.dy = fnew(nc), k.dx = fnew(nc), k.g = fnew(k.C), k.b = fnew(k.C);
    k.mean = fnew(k.N), k.rstd = fnew(k.N), k.dg = fnew(k.C), k.db = fnew(k.C), k.tab = fnew((size_t)k.V * k.C);
    k.dtab = fnew((size_t)k.V * k.C), k.lg = fnew((size_t)51 * k.V), k.loss = fnew(50), k.gs = fnew(50);
    k.ids = calloc(k.N, sizeof(int32_t)), k.lab = calloc(50, sizeof(int32_t));
    fill(k.tab, (size_t)k.V * k.C, -3, 3), fill(k.x, nc, -3, 3), fill(k.dy, nc, -1, 1), fill(k.g, k.C, 0.5, 1.5), fill(k.b, k.C, -1, 1), fill(k.gs, 50, 0, 1);
    for (int i = 0; i < k.N; i++) k.ids[i] = (int32_t)(urand() * 40); /* many repeats */
    for (int i = 0; i < 50; i++) k.lab[i] = (int32_t)(urand() * k.V);
    same_bits("layernorm", run_ln, &k, k.y, nc);
    same_bits("embedding backward + colsum", run_emb, &k, k.dtab, (size_t)k.V * k.C);
    same_bits("gelu + softmax", run_act, &k, k.y, nc);
    same_bits("cross-entropy", run_xent, &k, k.lg, (size_t)51 * k.V);
    /* attention: 4 sequences of up to 64 tokens, 4 heads of 32 */
    k.d = (kattn_dims){.B = 4, .NH = 4, .D = 32, .L = 64, .causal = 0, .pdrop = 0.1f, .key = 3};
    const int lens[4] = {64, 17, 50, 33};
    for (int b = 0; b < 4; b++) k.offs[b + 1] = k.offs[b] + lens[b];
    int N = k.offs[4], H = 128;
    k.qkv = fnew((size_t)N * 3 * H), k.ctx = fnew((size_t)N * H), k.dqkv = fnew((size_t)N * 3 * H);
    k.probs = fnew((size_t)4 * 4 * 64 * 64), k.scratch = fnew(3 * kattention_scratch(&k.d));
    fill(k.qkv, (size_t)N * 3 * H, -1, 1);
    same_bits("attention", run_attn, &k, k.dqkv, (size_t)N * 3 * H);
    free(k.x), free(k.y), free(k.dy), free(k.dx), free(k.g), free(k.b), free(k.mean), free(k.rstd), free(k.dg);
    free(k.db), free(k.tab), free(k.dtab), free(k.lg), free(k.loss), free(k.gs), free(k.ids), free(k.lab);
    free(k.qkv), free(k.ctx), free(k.dqkv), free(k.probs), free(k.scratch);
}

int main(void)
{
    omp_set_num_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exp_erf),       cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_dense),         cmocka_unit_test(test_colsum),
        cmocka_unit_test(test_layernorm),     cmocka_unit_test(test_gelu_erf),
        cmocka_unit_test(test_gelu_tanh),     cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_attention),     cmocka_unit_test(test_attention_causal),
        cmocka_unit_test(test_attention_dropout), cmocka_unit_test(test_xent),
        cmocka_unit_test(test_pooler),        cmocka_unit_test(test_mlm_head),
        cmocka_unit_test(test_dropout),       cmocka_unit_test(test_dropout_rows), cmocka_unit_test(test_gemm_grid),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
