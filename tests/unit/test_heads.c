/* test_heads.c: unit tests of trainer/heads.c (classification / regression
 * head, ELECTRA's per-token binary head, the chunked LM head).
 *
 * Gradients: every backward is checked against central finite differences of
 * the head's scaled mean loss S = loss_scale * sum / count (summed in double by
 * the loss call) on the float forward, with the 4-point stencil
 * (-S(x+2h) + 8 S(x+h) - 8 S(x-h) + S(x-2h)) / 12h, h = 1e-2, on every element
 * of every parameter and of the input. Pass: |analytic - numeric| <=
 * ATOL + RTOL max(|analytic|, |numeric|), ATOL = 2e-4, RTOL = 2e-3 (the values
 * and the reasoning of test_kernels.c). loss_scale is not 1 so that it is
 * checked too. Classifier: B 5, H 8, NL 3 (with and without dropout, the mask
 * keyed so the loss is a function) and NL 1 (regression, a NaN target).
 * Binary head: N 11, H 8, both GELU forms. LM head: N 11, H 8, V 37, chunk
 * sizes 8 and 64, with and without bias. Some rows are ignored in each.
 * Loss values: against double-precision references computed here from the
 * same float inputs (relative 1e-5, absolute 1e-6), with the accuracy and
 * precision / recall counts.
 * LM head: the loss within 1e-6 relative and the gradients within 1e-5
 * relative (+ 1e-6 absolute) for chunks of 8, 13 and V; ignored rows
 * contribute nothing (same loss and gradients as the labeled rows alone, zero
 * dx rows); the generation logits match a double product.
 * Determinism: 1, 2 and 3 threads give the same bits (losses, logits,
 * gradients) at sizes where the loops and products run in parallel.
 * With KILN_HEADS_DUMP=DIR the cases without dropout also write their inputs
 * and results for the PyTorch comparison (tests/ref/heads_parity.py, run by
 * tests/integration/test_heads_parity.sh). */
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

#include "trainer/heads.h"
#include "trainer/kernels.h"

#define ATOL 2e-4
#define RTOL 2e-3
#define FD_H 1e-2f
#define FD_SEED 0x9E3779B97F4A7C15ull /* this file's random stream */
#include "tests/unit/fdcheck.h"

static float *fdup(const float *x, size_t n)
{
    float *p = fnew(n);
    memcpy(p, x, n * sizeof(float));
    return p;
}

/* ---- checks ---------------------------------------------------------------------- */

/* Compares grad (n) with the numeric derivative of f w.r.t. every element of x (n). */
static void fd_check(const char *what, loss_fn f, void *ctx, float *x, const float *grad, size_t n)
{
    fd_check_at(what, f, ctx, x, grad, n, n, NULL, FD_H, ATOL, RTOL);
}

static void close_f(const char *what, const float *got, const float *want, size_t n, double rtol, double atol)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= atol + rtol * fabs(want[i]))) {
            if (bad < 5) print_error("%s[%zu]: got %.8g want %.8g\n", what, i, got[i], want[i]);
            bad++;
        }
    assert_int_equal(bad, 0);
}
static void close_d(const char *what, double got, double want, double rtol, double atol)
{
    if (!(fabs(got - want) <= atol + rtol * fabs(want))) {
        print_error("%s: got %.10g want %.10g\n", what, got, want);
        fail();
    }
}

/* ---- dumps for tests/ref/heads_parity.py ------------------------------------------------
 * With KILN_HEADS_DUMP=DIR, the cases without dropout write their inputs,
 * weights and results as raw little-endian arrays DIR/NAME.bin, each listed
 * in DIR/manifest.txt as "NAME f32|i32 ROWS COLS". */
static void dump(const char *name, const void *p, char type, int rows, int cols)
{
    const char *dir = getenv("KILN_HEADS_DUMP");
    if (!dir) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 4, (size_t)rows * cols, f), (size_t)rows * cols);
    assert_int_equal(fclose(f), 0);
    snprintf(path, sizeof path, "%s/manifest.txt", dir);
    f = fopen(path, "a");
    assert_non_null(f);
    fprintf(f, "%s %s %d %d\n", name, type == 'i' ? "i32" : "f32", rows, cols);
    assert_int_equal(fclose(f), 0);
}
/* name = prefix + "_" + what */
static void dumpf(const char *prefix, const char *what, const float *p, int rows, int cols)
{
    char name[256];
    snprintf(name, sizeof name, "%s_%s", prefix, what);
    dump(name, p, 'f', rows, cols);
}
static void dumpi(const char *prefix, const char *what, const int32_t *p, int rows, int cols)
{
    char name[256];
    snprintf(name, sizeof name, "%s_%s", prefix, what);
    dump(name, p, 'i', rows, cols);
}
/* stats = {mean, count, correct, tp, pred_pos, act_pos, scale} */
static void dump_stats(const char *prefix, khead_loss r, float scale)
{
    const float st[7] = {r.mean, (float)r.count, (float)r.correct, (float)r.tp, (float)r.pred_pos, (float)r.act_pos,
                         scale};
    dumpf(prefix, "stats", st, 1, 7);
}

/* y (N, out) = x w^T + b in double */
static void dense_d(double *y, const float *x, const float *w, const float *b, int N, int in, int out)
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int i = 0; i < in; i++) s += (double)x[(size_t)n * in + i] * w[(size_t)o * in + i];
            y[(size_t)n * out + o] = s;
        }
}

/* ---- classification / regression head ---------------------------------------------- */

typedef struct cls_ctx {
    kcls_head k;
    float *pooled;
    const int32_t *labels;
    const float *targets;
    float scale;
} cls_ctx;

static double cls_loss(void *p)
{
    cls_ctx *c = p;
    kcls_head_forward(&c->k, c->pooled);
    khead_loss r = kcls_head_loss(&c->k, c->labels, c->targets, NULL, c->scale, 0);
    return c->scale * r.sum / r.count;
}

static void cls_case(int NL, float pdrop)
{
    enum { B = 5, H = 8 };
    const int32_t labels[B] = {2, -1, 0, 1, 2};
    const float targets[B] = {0.5f, NAN, -1.0f, 2.0f, 0.1f};
    cls_ctx c = {.labels = labels, .targets = targets, .scale = 3.0f};
    float *w = fnew((size_t)NL * H), *b = fnew(NL), *dw = fnew((size_t)NL * H), *db = fnew(NL);
    c.pooled = fnew(B * H);
    fill(w, (size_t)NL * H, -1, 1), fill(b, NL, -0.5, 0.5), fill(c.pooled, B * H, -1, 1);
    c.k = (kcls_head){.B = B, .H = H, .NL = NL, .p = pdrop, .key = krng_key(7, 1, 2, 3), .w = w, .b = b,
                      .dw = dw, .db = db, .z = fnew(B * H), .logits = fnew((size_t)B * NL),
                      .dlogits = fnew((size_t)B * NL)};
    float *dpooled = fnew(B * H);
    uint8_t corr[B];

    kcls_head_forward(&c.k, c.pooled);
    float *logits0 = fdup(c.k.logits, (size_t)B * NL);
    khead_loss r = kcls_head_loss(&c.k, labels, targets, corr, c.scale, 1);
    assert_memory_equal(logits0, c.k.logits, (size_t)B * NL * sizeof(float)); /* logits stay readable */
    assert_int_equal(r.count, 4);
    /* the loss against double arithmetic on the same (dropped-out) inputs */
    double lg[B * 3], sum = 0;
    int correct = 0, kept = 0;
    dense_d(lg, c.k.z, w, b, B, H, NL);
    for (int i = 0; i < B; i++) {
        if (NL == 1) {
            if (isnan(targets[i])) continue;
            sum += (lg[i] - targets[i]) * (lg[i] - targets[i]);
            continue;
        }
        if (labels[i] < 0) {
            assert_int_equal(corr[i], 0);
            continue;
        }
        double m = -1e300, s = 0;
        int am = 0;
        for (int j = 0; j < NL; j++)
            if (lg[i * NL + j] > m) m = lg[i * NL + j], am = j;
        for (int j = 0; j < NL; j++) s += exp(lg[i * NL + j] - m);
        sum += m + log(s) - lg[i * NL + labels[i]];
        correct += am == labels[i];
        assert_int_equal(corr[i], am == labels[i]);
    }
    close_d("cls loss", r.mean, sum / 4, 1e-5, 1e-6);
    close_d("cls loss sum", r.sum, sum, 1e-5, 1e-6);
    assert_int_equal(r.correct, correct);
    /* the dropout mask: dropped elements are 0, kept ones scaled */
    for (int i = 0; i < B * H; i++) {
        int keep = kdropout_keep(c.k.key, (uint64_t)i, pdrop);
        float want = pdrop > 0 ? (keep ? c.pooled[i] / (1.0f - pdrop) : 0.0f) : c.pooled[i];
        kept += keep;
        assert_true(fabs(c.k.z[i] - want) <= 1e-6);
    }
    if (pdrop > 0) assert_true(kept < B * H && kept > B * H / 3);
    /* ignored rows: no gradient */
    if (NL > 1)
        for (int j = 0; j < NL; j++) assert_true(c.k.dlogits[1 * NL + j] == 0.0f);
    else
        assert_true(c.k.dlogits[1] == 0.0f);
    kcls_head_backward(&c.k, dpooled);
    if (pdrop == 0.0f) {
        const char *pre = NL == 1 ? "reg" : "cls";
        dumpf(pre, "pooled", c.pooled, B, H), dumpf(pre, "w", w, NL, H), dumpf(pre, "b", b, 1, NL);
        dumpi(pre, "labels", labels, 1, B), dumpf(pre, "targets", targets, 1, B);
        dumpf(pre, "logits", c.k.logits, B, NL), dumpf(pre, "dw", dw, NL, H), dumpf(pre, "db", db, 1, NL);
        dumpf(pre, "dpooled", dpooled, B, H), dump_stats(pre, r, c.scale);
    }
    fd_check("cls dW", cls_loss, &c, w, dw, (size_t)NL * H);
    fd_check("cls db", cls_loss, &c, b, db, NL);
    fd_check("cls dpooled", cls_loss, &c, c.pooled, dpooled, B * H);
    /* gradients accumulate */
    float *dw1 = fdup(dw, (size_t)NL * H);
    kcls_head_forward(&c.k, c.pooled);
    kcls_head_loss(&c.k, labels, targets, NULL, c.scale, 1);
    kcls_head_backward(&c.k, dpooled);
    for (int i = 0; i < NL * H; i++) assert_true(fabs(dw[i] - 2 * dw1[i]) <= 1e-6 * (1 + fabs(dw1[i])));
    free(w), free(b), free(dw), free(db), free(c.pooled), free(c.k.z), free(c.k.logits), free(c.k.dlogits);
    free(dpooled), free(logits0), free(dw1);
}

static void test_cls(void **state)
{
    (void)state;
    cls_case(3, 0.0f);
    cls_case(3, 0.3f);
}

static void test_regression(void **state)
{
    (void)state;
    cls_case(1, 0.0f);
    cls_case(1, 0.25f);
}

/* no labeled row: loss 0, zero gradients */
static void test_cls_empty(void **state)
{
    (void)state;
    enum { B = 2, H = 4, NL = 2 };
    float w[NL * H] = {0}, bb[NL] = {0}, z[B * H], lg[B * NL], dl[B * NL], pooled[B * H] = {0};
    kcls_head k = {.B = B, .H = H, .NL = NL, .w = w, .b = bb, .z = z, .logits = lg, .dlogits = dl};
    const int32_t labels[B] = {-1, -1};
    kcls_head_forward(&k, pooled);
    khead_loss r = kcls_head_loss(&k, labels, NULL, NULL, 1.0f, 1);
    assert_int_equal(r.count, 0);
    assert_true(r.mean == 0.0f && r.sum == 0.0);
    for (int i = 0; i < B * NL; i++) assert_true(dl[i] == 0.0f);
}

/* ---- per-token binary head ------------------------------------------------------------ */

typedef struct bin_ctx {
    kbin_head k;
    float *x;
    const int32_t *labels;
    float scale;
} bin_ctx;

static double bin_loss(void *p)
{
    bin_ctx *c = p;
    kbin_head_forward(&c->k, c->x);
    khead_loss r = kbin_head_loss(&c->k, c->labels, c->scale, 0);
    return c->scale * r.sum / r.count;
}

static double gelu_d(double x, int kind)
{
    if (kind == KGELU_ERF) return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    return 0.5 * x * (1 + tanh(sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
}

static void bin_case(int act)
{
    enum { N = 11, H = 8 };
    const int32_t labels[N] = {1, 0, 0, -1, 1, 0, 0, 0, 1, -1, 0};
    bin_ctx c = {.labels = labels, .scale = 2.0f};
    kbin_head *k = &c.k;
    *k = (kbin_head){.N = N, .H = H, .act = act};
    float *w = fnew(H * H), *b = fnew(H), *wp = fnew(H), *bp = fnew(1);
    float *dw = fnew(H * H), *db = fnew(H), *dwp = fnew(H), *dbp = fnew(1), *dx = fnew(N * H);
    c.x = fnew(N * H);
    fill(w, H * H, -0.8, 0.8), fill(b, H, -0.5, 0.5), fill(wp, H, -1.5, 1.5), fill(bp, 1, -0.3, 0.3);
    fill(c.x, N * H, -1.5, 1.5);
    k->w = w, k->b = b, k->wp = wp, k->bp = bp, k->dw = dw, k->db = db, k->dwp = dwp, k->dbp = dbp;
    k->pre = fnew(N * H), k->h = fnew(N * H), k->logit = fnew(N), k->dlogit = fnew(N), k->dh = fnew(N * H);

    kbin_head_forward(k, c.x);
    khead_loss r = kbin_head_loss(k, labels, c.scale, 1);
    /* against double arithmetic */
    double pre[N * H], h[N * H], z[N], sum = 0;
    int cnt = 0, correct = 0, tp = 0, pp = 0, ap = 0;
    dense_d(pre, c.x, w, b, N, H, H);
    for (int i = 0; i < N * H; i++) h[i] = gelu_d(pre[i], act);
    for (int n = 0; n < N; n++) {
        z[n] = bp[0];
        for (int j = 0; j < H; j++) z[n] += h[n * H + j] * wp[j];
    }
    for (int n = 0; n < N; n++) {
        assert_true(fabs(k->logit[n] - z[n]) <= 1e-5 * fabs(z[n]) + 2e-6);
        if (labels[n] < 0) {
            assert_true(k->dlogit[n] == 0.0f);
            continue;
        }
        double y = labels[n], s = 1 / (1 + exp(-z[n]));
        sum += -(y * log(s) + (1 - y) * log(1 - s));
        cnt++;
        int pred = z[n] > 0;
        correct += pred == labels[n], tp += pred && labels[n], pp += pred, ap += labels[n];
    }
    assert_int_equal(r.count, cnt);
    close_d("bin loss", r.mean, sum / cnt, 1e-5, 1e-6);
    assert_int_equal(r.correct, correct);
    assert_int_equal(r.tp, tp);
    assert_int_equal(r.pred_pos, pp);
    assert_int_equal(r.act_pos, ap);
    assert_int_equal(ap, 3);

    kbin_head_backward(k, dx, 0, c.x);
    {
        const char *pre = act == KGELU_ERF ? "binerf" : "bintanh";
        dumpf(pre, "x", c.x, N, H), dumpf(pre, "w", w, H, H), dumpf(pre, "b", b, 1, H), dumpf(pre, "wp", wp, 1, H);
        dumpf(pre, "bp", bp, 1, 1), dumpi(pre, "labels", labels, 1, N), dumpf(pre, "logit", k->logit, 1, N);
        dumpf(pre, "dx", dx, N, H), dumpf(pre, "dw", dw, H, H), dumpf(pre, "db", db, 1, H);
        dumpf(pre, "dwp", dwp, 1, H), dumpf(pre, "dbp", dbp, 1, 1), dump_stats(pre, r, c.scale);
    }
    fd_check("bin dx", bin_loss, &c, c.x, dx, N * H);
    fd_check("bin dW", bin_loss, &c, w, dw, H * H);
    fd_check("bin db", bin_loss, &c, b, db, H);
    fd_check("bin dwp", bin_loss, &c, wp, dwp, H);
    fd_check("bin dbp", bin_loss, &c, bp, dbp, 1);
    /* acc = 1 adds to dx */
    float *dx1 = fdup(dx, N * H);
    kbin_head_forward(k, c.x);
    kbin_head_loss(k, labels, c.scale, 1);
    kbin_head_backward(k, dx, 1, c.x);
    for (int i = 0; i < N * H; i++) assert_true(fabs(dx[i] - 2 * dx1[i]) <= 1e-6 * (1 + fabs(dx1[i])));
    free(w), free(b), free(wp), free(bp), free(dw), free(db), free(dwp), free(dbp), free(dx), free(c.x);
    free(k->pre), free(k->h), free(k->logit), free(k->dlogit), free(k->dh), free(dx1);
}

static void test_bin_erf(void **state)
{
    (void)state;
    bin_case(KGELU_ERF);
}
static void test_bin_tanh(void **state)
{
    (void)state;
    bin_case(KGELU_TANH);
}

/* large logits: the loss stays finite and exact (no exp overflow) */
static void test_bin_stable(void **state)
{
    (void)state;
    float logit[4] = {200.0f, -200.0f, 200.0f, -200.0f}, dl[4];
    const int32_t labels[4] = {0, 1, 1, 0};
    kbin_head k = {.N = 4, .logit = logit, .dlogit = dl};
    khead_loss r = kbin_head_loss(&k, labels, 1.0f, 1);
    close_d("bce sum", r.sum, 400.0, 1e-12, 0);
    assert_true(dl[0] == 0.25f && dl[1] == -0.25f && fabs(dl[2]) < 1e-30 && fabs(dl[3]) < 1e-30);
    assert_int_equal(r.correct, 2);
    assert_int_equal(r.tp, 1);
    assert_int_equal(r.pred_pos, 2);
    assert_int_equal(r.act_pos, 2);
}

/* ---- LM head ------------------------------------------------------------------------------ */

/* A klm_head with its buffers (the test owns everything). */
typedef struct lm_ctx {
    klm_head k;
    float *x, *w, *bias, *dw, *dbias, *dx, *gscale;
    const int32_t *labels;
    float scale;
} lm_ctx;

static void lm_init(lm_ctx *c, int N, int H, int V, int C, int with_bias, const int32_t *labels)
{
    memset(c, 0, sizeof *c);
    c->labels = labels, c->scale = 3.0f;
    c->x = fnew((size_t)N * H), c->w = fnew((size_t)V * H), c->dw = fnew((size_t)V * H), c->dx = fnew((size_t)N * H);
    c->gscale = fnew(N);
    fill(c->x, (size_t)N * H, -1, 1), fill(c->w, (size_t)V * H, -1, 1);
    if (with_bias) c->bias = fnew(V), c->dbias = fnew(V), fill(c->bias, V, -1, 1);
    c->k = (klm_head){.N = N, .H = H, .V = V, .C = C, .w = c->w, .bias = c->bias, .dw = c->dw, .dbias = c->dbias};
    c->k.chunk = fnew((size_t)N * (C < V ? C : V));
    c->k.run_sum = calloc(N, sizeof(double)), c->k.run_max = fnew(N), c->k.lse = fnew(N);
    c->k.label_logit = fnew(N), c->k.argmax = calloc(N, sizeof(int32_t));
    assert_non_null(c->k.run_sum), assert_non_null(c->k.argmax);
}
static void lm_free(lm_ctx *c)
{
    free(c->x), free(c->w), free(c->dw), free(c->dx), free(c->gscale), free(c->bias), free(c->dbias);
    free(c->k.chunk), free(c->k.run_sum), free(c->k.run_max), free(c->k.lse), free(c->k.label_logit);
    free(c->k.argmax);
}
static void lm_set_chunk(lm_ctx *c, int C)
{
    free(c->k.chunk);
    c->k.C = C;
    c->k.chunk = fnew((size_t)c->k.N * (C < c->k.V ? C : c->k.V));
}
/* loss, then (zeroed) gradients of scale * mean loss */
static khead_loss lm_run(lm_ctx *c)
{
    const int N = c->k.N, H = c->k.H, V = c->k.V;
    khead_loss r = klm_head_loss(&c->k, c->x, c->labels);
    for (int n = 0; n < N; n++) c->gscale[n] = r.count ? c->scale / r.count : 0.0f;
    memset(c->dw, 0, (size_t)V * H * sizeof(float));
    if (c->dbias) memset(c->dbias, 0, (size_t)V * sizeof(float));
    klm_head_backward(&c->k, c->dx, 0, c->x, c->labels, c->gscale);
    return r;
}
static double lm_loss(void *p)
{
    lm_ctx *c = p;
    khead_loss r = klm_head_loss(&c->k, c->x, c->labels);
    return c->scale * r.sum / r.count;
}

static const int32_t LM_LABELS[11] = {5, 36, -1, 0, 12, 12, 7, -1, 30, 1, 19};

static void lm_fd_case(int C, int with_bias)
{
    enum { N = 11, H = 8, V = 37 };
    lm_ctx c;
    lm_init(&c, N, H, V, C, with_bias, LM_LABELS);
    khead_loss r = lm_run(&c);
    assert_int_equal(r.count, 9);
    /* the loss, logsumexp and argmax against a double computation */
    double *lg = calloc((size_t)N * V, sizeof(double)), sum = 0;
    assert_non_null(lg);
    dense_d(lg, c.x, c.w, c.bias, N, H, V);
    int correct = 0;
    for (int n = 0; n < N; n++) {
        if (LM_LABELS[n] < 0) {
            assert_int_equal(c.k.argmax[n], -1);
            for (int j = 0; j < H; j++) assert_true(c.dx[n * H + j] == 0.0f);
            continue;
        }
        double m = -1e300, s = 0;
        int am = 0;
        for (int j = 0; j < V; j++)
            if (lg[n * V + j] > m) m = lg[n * V + j], am = j;
        for (int j = 0; j < V; j++) s += exp(lg[n * V + j] - m);
        close_d("lm lse", c.k.lse[n], m + log(s), 1e-5, 1e-6);
        sum += m + log(s) - lg[n * V + LM_LABELS[n]];
        assert_int_equal(c.k.argmax[n], am);
        correct += am == LM_LABELS[n];
    }
    close_d("lm loss", r.mean, sum / 9, 1e-5, 1e-6);
    assert_int_equal(r.correct, correct);
    {
        char pre[32];
        snprintf(pre, sizeof pre, "lm%s%d", with_bias ? "bias" : "", C);
        dumpf(pre, "x", c.x, N, H), dumpf(pre, "w", c.w, V, H), dumpi(pre, "labels", LM_LABELS, 1, N);
        if (with_bias) dumpf(pre, "bias", c.bias, 1, V), dumpf(pre, "dbias", c.dbias, 1, V);
        dumpf(pre, "dx", c.dx, N, H), dumpf(pre, "dw", c.dw, V, H), dumpf(pre, "lse", c.k.lse, 1, N);
        dump_stats(pre, r, c.scale);
    }
    fd_check("lm dx", lm_loss, &c, c.x, c.dx, N * H);
    fd_check("lm dW", lm_loss, &c, c.w, c.dw, V * H);
    if (with_bias) fd_check("lm dbias", lm_loss, &c, c.bias, c.dbias, V);
    /* generation logits of rows 3, 0, 10 */
    const int32_t rows[3] = {3, 0, 10};
    float *out = fnew(3 * V);
    klm_head_logits(&c.k, out, c.x, rows, 3);
    for (int r2 = 0; r2 < 3; r2++)
        for (int j = 0; j < V; j++) close_d("lm logits", out[r2 * V + j], lg[rows[r2] * V + j], 1e-5, 1e-6);
    free(out), free(lg);
    lm_free(&c);
}

static void test_lm_fd(void **state)
{
    (void)state;
    lm_fd_case(8, 1);
    lm_fd_case(64, 1);
    lm_fd_case(8, 0);
    lm_fd_case(64, 0);
}

/* chunk sizes 8, 13, V (and 1): same loss and gradients up to rounding */
static void test_lm_chunks(void **state)
{
    (void)state;
    enum { N = 11, H = 8, V = 37 };
    lm_ctx c;
    lm_init(&c, N, H, V, V, 1, LM_LABELS);
    khead_loss r0 = lm_run(&c);
    float *dx0 = fdup(c.dx, N * H), *dw0 = fdup(c.dw, V * H), *db0 = fdup(c.dbias, V), *lse0 = fdup(c.k.lse, N);
    const int sizes[3] = {8, 13, 1};
    for (int s = 0; s < 3; s++) {
        lm_set_chunk(&c, sizes[s]);
        khead_loss r = lm_run(&c);
        close_d("chunked loss", r.sum, r0.sum, 1e-6, 0);
        assert_int_equal(r.correct, r0.correct);
        close_f("chunked lse", c.k.lse, lse0, N, 1e-6, 0);
        close_f("chunked dx", c.dx, dx0, N * H, 1e-5, 1e-6);
        close_f("chunked dW", c.dw, dw0, V * H, 1e-5, 1e-6);
        close_f("chunked dbias", c.dbias, db0, V, 1e-5, 1e-6);
    }
    free(dx0), free(dw0), free(db0), free(lse0);
    lm_free(&c);
}

/* ignored rows: the same loss and parameter gradients as the labeled rows
 * alone; their dx rows are zero (acc = 0) or untouched (acc = 1) */
static void test_lm_ignore(void **state)
{
    (void)state;
    enum { N = 11, H = 8, V = 37, C = 13 };
    lm_ctx all, sub;
    lm_init(&all, N, H, V, C, 1, LM_LABELS);
    int32_t lab_sub[N];
    int M = 0;
    for (int n = 0; n < N; n++)
        if (LM_LABELS[n] >= 0) lab_sub[M++] = LM_LABELS[n];
    lm_init(&sub, M, H, V, C, 1, lab_sub);
    memcpy(sub.w, all.w, (size_t)V * H * sizeof(float));
    memcpy(sub.bias, all.bias, (size_t)V * sizeof(float));
    for (int n = 0, m = 0; n < N; n++)
        if (LM_LABELS[n] >= 0) memcpy(sub.x + (size_t)m++ * H, all.x + (size_t)n * H, H * sizeof(float));
    khead_loss ra = lm_run(&all), rs = lm_run(&sub);
    assert_int_equal(ra.count, rs.count);
    close_d("ignore loss", ra.sum, rs.sum, 1e-6, 0);
    close_f("ignore dW", all.dw, sub.dw, V * H, 1e-5, 1e-7);
    close_f("ignore dbias", all.dbias, sub.dbias, V, 1e-5, 1e-7);
    for (int n = 0, m = 0; n < N; n++) {
        if (LM_LABELS[n] < 0)
            for (int j = 0; j < H; j++) assert_true(all.dx[n * H + j] == 0.0f);
        else
            close_f("ignore dx", all.dx + n * H, sub.dx + (size_t)m++ * H, H, 1e-5, 1e-7);
    }
    /* acc = 1: ignored rows untouched, others doubled; with gscale NaN on an
     * ignored row (it must not be read) */
    float *dx1 = fdup(all.dx, N * H);
    for (int n = 0; n < N; n++) {
        all.dx[n * H] += LM_LABELS[n] < 0 ? 5.0f : 0.0f;
        if (LM_LABELS[n] < 0) all.gscale[n] = NAN;
    }
    klm_head_loss(&all.k, all.x, all.labels);
    klm_head_backward(&all.k, all.dx, 1, all.x, all.labels, all.gscale);
    for (int n = 0; n < N; n++)
        for (int j = 0; j < H; j++) {
            float want = LM_LABELS[n] < 0 ? (j == 0 ? 5.0f : 0.0f) : 2 * dx1[n * H + j];
            assert_true(fabs(all.dx[n * H + j] - want) <= 1e-6 * (1 + fabs(want)));
        }
    free(dx1);
    lm_free(&all), lm_free(&sub);
}

/* ---- determinism ---------------------------------------------------------------------------- */

typedef void (*run_fn)(void *ctx);
/* out_i (n_i floats each, up to 4) have the same bits for 1, 2 and 3 threads */
static void same_bits(const char *what, run_fn f, void *ctx, float *const *out, const size_t *n, int k)
{
    float *first[4];
    for (int i = 0; i < k; i++) first[i] = fnew(n[i]);
    for (int t = 1; t <= 3; t++) {
        omp_set_num_threads(t);
        f(ctx);
        for (int i = 0; i < k; i++) {
            if (t == 1)
                memcpy(first[i], out[i], n[i] * sizeof(float));
            else if (memcmp(first[i], out[i], n[i] * sizeof(float))) {
                print_error("%s (output %d): %d threads give other bits than 1\n", what, i, t);
                fail();
            }
        }
    }
    omp_set_num_threads(2);
    for (int i = 0; i < k; i++) free(first[i]);
}

typedef struct big_ctx {
    lm_ctx lm;
    float lm_loss[2]; /* mean, (float) sum */
    bin_ctx bin;
    float *bin_dx, bin_out[2];
    cls_ctx cls;
    float *dpooled, cls_out[1];
} big_ctx;

static void run_lm(void *p)
{
    big_ctx *b = p;
    khead_loss r = lm_run(&b->lm);
    b->lm_loss[0] = r.mean, b->lm_loss[1] = (float)r.sum;
}
static void run_bin(void *p)
{
    big_ctx *b = p;
    kbin_head *k = &b->bin.k;
    memset(k->dw, 0, (size_t)k->H * k->H * sizeof(float));
    memset(k->dwp, 0, (size_t)k->H * sizeof(float));
    kbin_head_forward(k, b->bin.x);
    khead_loss r = kbin_head_loss(k, b->bin.labels, 1.0f, 1);
    kbin_head_backward(k, b->bin_dx, 0, b->bin.x);
    b->bin_out[0] = r.mean, b->bin_out[1] = (float)r.tp;
}
static void run_cls(void *p)
{
    big_ctx *b = p;
    kcls_head *k = &b->cls.k;
    memset(k->dw, 0, (size_t)k->NL * k->H * sizeof(float));
    kcls_head_forward(k, b->cls.pooled);
    khead_loss r = kcls_head_loss(k, b->cls.labels, NULL, NULL, 1.0f, 1);
    kcls_head_backward(k, b->dpooled);
    b->cls_out[0] = r.mean;
}

static void test_threads(void **state)
{
    (void)state;
    big_ctx b;
    memset(&b, 0, sizeof b);
    /* LM head: 300 rows, V 1000 in chunks of 256 (the row loops and kgemm run in parallel) */
    enum { N = 300, H = 64, V = 1000 };
    int32_t *lab = calloc(N, sizeof(int32_t));
    assert_non_null(lab);
    for (int n = 0; n < N; n++) lab[n] = n % 7 == 3 ? -1 : (int32_t)(urand() * V);
    lm_init(&b.lm, N, H, V, 256, 1, lab);
    fill(b.lm.x, (size_t)N * H, -2, 2);
    {
        float *outs[5] = {b.lm_loss, b.lm.dx, b.lm.dw, b.lm.dbias, b.lm.k.lse};
        size_t ns[5] = {2, (size_t)N * H, (size_t)V * H, V, N};
        same_bits("lm head (loss, dx, dW, dbias)", run_lm, &b, outs, ns, 4);
        same_bits("lm head (lse)", run_lm, &b, outs + 4, ns + 4, 1);
    }
    /* binary head: 600 tokens of 64 */
    enum { NB = 600 };
    kbin_head *k = &b.bin.k;
    *k = (kbin_head){.N = NB, .H = H, .act = KGELU_ERF};
    float *w = fnew(H * H), *bb = fnew(H), *wp = fnew(H), *bp = fnew(1), *dw = fnew(H * H), *db = fnew(H);
    float *dwp = fnew(H), *dbp = fnew(1);
    b.bin.x = fnew((size_t)NB * H), b.bin_dx = fnew((size_t)NB * H);
    fill(w, H * H, -0.3, 0.3), fill(bb, H, -0.1, 0.1), fill(wp, H, -0.5, 0.5), fill(b.bin.x, (size_t)NB * H, -1, 1);
    int32_t *blab = calloc(NB, sizeof(int32_t));
    assert_non_null(blab);
    for (int n = 0; n < NB; n++) blab[n] = n % 11 == 5 ? -1 : (urand() < 0.3);
    b.bin.labels = blab;
    k->w = w, k->b = bb, k->wp = wp, k->bp = bp, k->dw = dw, k->db = db, k->dwp = dwp, k->dbp = dbp;
    k->pre = fnew((size_t)NB * H), k->h = fnew((size_t)NB * H), k->logit = fnew(NB), k->dlogit = fnew(NB);
    k->dh = fnew((size_t)NB * H);
    {
        float *outs[4] = {b.bin_out, b.bin_dx, dw, dwp};
        size_t ns[4] = {2, (size_t)NB * H, (size_t)H * H, H};
        same_bits("binary head", run_bin, &b, outs, ns, 4);
    }
    /* classifier: 600 sequences of 256, 4 labels, dropout */
    enum { BC = 600, HC = 256, NL = 4 };
    kcls_head *kc = &b.cls.k;
    float *cw = fnew(NL * HC), *cb = fnew(NL), *cdw = fnew(NL * HC), *cdb = fnew(NL);
    b.cls.pooled = fnew((size_t)BC * HC), b.dpooled = fnew((size_t)BC * HC);
    fill(cw, NL * HC, -0.2, 0.2), fill(b.cls.pooled, (size_t)BC * HC, -1, 1);
    int32_t *clab = calloc(BC, sizeof(int32_t));
    assert_non_null(clab);
    for (int n = 0; n < BC; n++) clab[n] = n % 5 == 2 ? -1 : (int32_t)(urand() * NL);
    b.cls.labels = clab;
    *kc = (kcls_head){.B = BC, .H = HC, .NL = NL, .p = 0.1f, .key = 99, .w = cw, .b = cb, .dw = cdw, .db = cdb,
                      .z = fnew((size_t)BC * HC), .logits = fnew(BC * NL), .dlogits = fnew(BC * NL)};
    {
        float *outs[3] = {b.cls_out, b.dpooled, cdw};
        size_t ns[3] = {1, (size_t)BC * HC, NL * HC};
        same_bits("classifier head", run_cls, &b, outs, ns, 3);
    }
    lm_free(&b.lm), free(lab);
    free(w), free(bb), free(wp), free(bp), free(dw), free(db), free(dwp), free(dbp), free(b.bin.x), free(b.bin_dx);
    free(blab), free(k->pre), free(k->h), free(k->logit), free(k->dlogit), free(k->dh);
    free(cw), free(cb), free(cdw), free(cdb), free(b.cls.pooled), free(b.dpooled), free(clab), free(kc->z);
    free(kc->logits), free(kc->dlogits);
}

int main(void)
{
    omp_set_num_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cls),       cmocka_unit_test(test_regression), cmocka_unit_test(test_cls_empty),
        cmocka_unit_test(test_bin_erf),   cmocka_unit_test(test_bin_tanh),   cmocka_unit_test(test_bin_stable),
        cmocka_unit_test(test_lm_fd),     cmocka_unit_test(test_lm_chunks),  cmocka_unit_test(test_lm_ignore),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
