/* test_transe.c: unit tests of kg/transe.c: the batch loss and its gradient
 * against an independent double-precision reference and central finite
 * differences (L1 and L2, self-adversarial and margin ranking, both corrupted
 * sides, partial chunks, masked and duplicate negatives); filtered ranking on a
 * hand-computed case (filtering from every split, ties as mean rank) and
 * against a brute-force ranking built on ktranse_score_all; training on a
 * synthetic grid KG with an exact translational structure (MRR far above
 * random); determinism (same seed: identical floats with 1 and 2 threads);
 * option checking, the stop flag and the progress callback. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kg/transe.h"

/* Deterministic pseudo-random numbers (xorshift64*), so failures reproduce. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}
static double urand(void) { return (double)(rng() >> 11) * (1.0 / 9007199254740992.0); }

/* ---- reference loss (double) ----------------------------------------------------
 * The loss documented at the top of transe.c, written independently. p (nq, K):
 * the self-adversarial weights; computed from the parameters when *fill != 0,
 * else taken as given (they are constants for the gradient). */
static double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

static double dist(const double *a, const double *b, int D, int norm)
{
    double s = 0;
    for (int d = 0; d < D; d++) s += norm == 1 ? fabs(a[d] - b[d]) : (a[d] - b[d]) * (a[d] - b[d]);
    return norm == 1 ? s : sqrt(s);
}

static double ref_loss(const ktranse_opts *o, const double *ent, const double *rel, const ktriple *pos,
                       const uint8_t *side, size_t nq, const uint32_t *neg, double *p, int fill)
{
    const int D = o->dim, K = o->negatives, S = o->share;
    double total = 0, q[64];
    assert_true(D <= 64);
    for (size_t i = 0; i < nq; i++) {
        size_t c = i / (size_t)S;
        uint32_t a = side[i] ? pos[i].t : pos[i].h, tg = side[i] ? pos[i].h : pos[i].t;
        for (int d = 0; d < D; d++)
            q[d] = ent[a * D + d] + (side[i] ? -1.0 : 1.0) * rel[pos[i].r * D + d];
        double dp = dist(q, ent + (size_t)tg * D, D, o->norm), dn[64];
        int valid = 0;
        for (int j = 0; j < K; j++) {
            dn[j] = dist(q, ent + (size_t)neg[c * K + j] * D, D, o->norm);
            valid += neg[c * K + j] != tg;
        }
        double *pi = p + i * K;
        if (o->adversarial) {
            if (fill) {
                double mx = -INFINITY, z = 0;
                for (int j = 0; j < K; j++)
                    if (neg[c * K + j] != tg && -o->adv_temperature * dn[j] > mx) mx = -o->adv_temperature * dn[j];
                for (int j = 0; j < K; j++) {
                    pi[j] = neg[c * K + j] != tg ? exp(-o->adv_temperature * dn[j] - mx) : 0;
                    z += pi[j];
                }
                for (int j = 0; j < K; j++) pi[j] = z > 0 ? pi[j] / z : 0;
            }
            double l = softplus(dp - o->margin);
            for (int j = 0; j < K; j++) l += pi[j] * softplus(o->margin - dn[j]);
            total += 0.5 * l;
        } else {
            double l = 0;
            for (int j = 0; j < K; j++)
                if (neg[c * K + j] != tg && o->margin + dp - dn[j] > 0) l += (o->margin + dp - dn[j]) / valid;
            total += l;
        }
    }
    return total / (double)nq;
}

typedef struct gcase {
    int norm, adversarial, D, K, S;
    size_t nq;
    float margin, temp;
} gcase;

static void check_gradient(const gcase *gc)
{
    const uint32_t E = 9, R = 3;
    const int D = gc->D, K = gc->K;
    ktranse_opts o;
    ktranse_opts_default(&o);
    o.dim = D;
    o.negatives = K;
    o.share = gc->S;
    o.norm = gc->norm;
    o.adversarial = gc->adversarial;
    o.margin = gc->margin;
    o.adv_temperature = gc->temp;
    o.threads = 2;
    const size_t nq = gc->nq, C = (nq + (size_t)gc->S - 1) / (size_t)gc->S;
    float *ent = malloc(E * D * sizeof(float)), *rel = malloc(R * D * sizeof(float));
    float *ge = malloc(E * D * sizeof(float)), *gr = malloc(R * D * sizeof(float));
    double *ed = malloc(E * D * sizeof(double)), *rd = malloc(R * D * sizeof(double));
    ktriple *pos = malloc(nq * sizeof(ktriple));
    uint8_t *side = malloc(nq);
    uint32_t *neg = malloc(C * K * sizeof(uint32_t));
    double *p = malloc(nq * K * sizeof(double));
    for (size_t i = 0; i < E * (size_t)D; i++) ed[i] = ent[i] = (float)(2 * urand() - 1);
    for (size_t i = 0; i < R * (size_t)D; i++) rd[i] = rel[i] = (float)(urand() - 0.5);
    for (size_t i = 0; i < nq; i++) {
        pos[i] = (ktriple){(uint32_t)(rng() % E), (uint32_t)(rng() % R), (uint32_t)(rng() % E)};
        side[i] = (uint8_t)(i % 3 == 1);
    }
    for (size_t k = 0; k < C * (size_t)K; k++) neg[k] = (uint32_t)(rng() % E);
    /* chunk 0: a duplicate negative, and a negative equal to query 0's target (masked) */
    neg[1] = neg[0];
    neg[2] = side[0] ? pos[0].h : pos[0].t;

    double loss = ktranse_batch_loss_grad(&o, ent, rel, E, R, pos, side, nq, neg, ge, gr);
    double ref = ref_loss(&o, ed, rd, pos, side, nq, neg, p, 1);
    assert_false(isnan(loss));
    if (fabs(loss - ref) > 1e-5 * fabs(ref) + 1e-6)
        fail_msg("loss %.9g, reference %.9g", loss, ref);

    /* central differences of the reference loss (p held fixed); L1 kinks are skipped */
    const double h = 1e-6;
    int checked = 0, skipped = 0;
    for (int which = 0; which < 2; which++) {
        double *x = which ? rd : ed;
        const float *g = which ? gr : ge;
        size_t n = (which ? R : E) * (size_t)D;
        for (size_t k = 0; k < n; k++) {
            double x0 = x[k];
            x[k] = x0 + h;
            double fp = ref_loss(&o, ed, rd, pos, side, nq, neg, p, 0);
            x[k] = x0 - h;
            double fm = ref_loss(&o, ed, rd, pos, side, nq, neg, p, 0);
            x[k] = x0;
            double f0 = ref_loss(&o, ed, rd, pos, side, nq, neg, p, 0);
            if (fabs((fp - f0) - (f0 - fm)) > 1e-9) {
                skipped++;
                continue;
            }
            double fd = (fp - fm) / (2 * h);
            if (fabs(fd - g[k]) > 2e-5 + 1e-4 * fabs(fd))
                fail_msg("norm %d adv %d: d loss / d %s[%zu][%zu] = %.8g, finite difference %.8g", gc->norm,
                         gc->adversarial, which ? "rel" : "ent", k / D, k % D, g[k], fd);
            checked++;
        }
    }
    assert_true(checked > 8 * skipped);
    free(ent); free(rel); free(ge); free(gr); free(ed); free(rd); free(pos); free(side); free(neg); free(p);
}

static void test_gradient(void **state)
{
    (void)state;
    static const gcase cases[] = {
        {1, 1, 5, 6, 4, 7, 3.0f, 0.7f},   /* L1, self-adversarial, partial chunk and blocks */
        {2, 1, 5, 6, 4, 7, 1.5f, 1.0f},   /* L2, self-adversarial */
        {1, 0, 5, 6, 4, 7, 2.0f, 0.0f},   /* L1, margin ranking */
        {2, 0, 5, 6, 4, 7, 1.0f, 0.0f},   /* L2, margin ranking */
        {1, 1, 19, 9, 8, 9, 6.0f, 0.5f},  /* P = 32, 4 x 4 blocks with edges */
        {2, 1, 19, 9, 8, 9, 2.0f, 0.0f},  /* uniform weights (alpha = 0) */
        {1, 1, 3, 4, 1, 5, 2.0f, 1.0f},   /* share 1: independent negatives */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_gradient(&cases[i]);
}

/* ---- filtered ranking ------------------------------------------------------------ */

/* D = 1: ent = {0, 1, 2, 3, 1}, rel = {1}. Ranks worked out by hand:
 * test (0,0,2) tail: q = 1, d = {1,0,1,2,0}; (0,0,1) filtered (train); closer: 4;
 *   tied: 0 -> rank 1 + 1 + 1/2 = 2.5.
 * test (0,0,2) head: d(h) = |e_h + 1 - 2| = {1,0,1,2,0}; (4,0,2) filtered (valid);
 *   closer: 1; tied: 2 -> 2.5.
 * test (3,0,1) tail: q = 4, d = {4,3,2,1,3}; (3,0,4) filtered (train); closer: 2, 3 -> 3.
 * test (3,0,1) head: d(h) = |e_h| = {0,1,2,3,1}; (0,0,1) filtered (train);
 *   closer: 1, 2, 4 -> 4.
 * MRR = (1/2.5 + 1/2.5 + 1/3 + 1/4) / 4; Hits@1 0, Hits@3 3/4, Hits@10 1. */
static void test_eval_by_hand(void **state)
{
    (void)state;
    const ktriple train[] = {{0, 0, 1}, {3, 0, 4}}, valid[] = {{4, 0, 2}}, test[] = {{0, 0, 2}, {3, 0, 1}};
    ktranse_data d = {train, 2, valid, 1, test, 2, 5, 1};
    const float ent[] = {0, 1, 2, 3, 1}, rel[] = {1};
    for (int norm = 1; norm <= 2; norm++)
        for (int threads = 1; threads <= 2; threads++) {
            keval ev;
            assert_int_equal(ktranse_eval(&d, test, 2, ent, rel, 1, norm, threads, &ev), 0);
            assert_int_equal(ev.triples, 2);
            assert_true(fabs(ev.mrr - (0.4 + 0.4 + 1.0 / 3 + 0.25) / 4) < 1e-12);
            assert_true(ev.hits1 == 0.0);
            assert_true(ev.hits3 == 0.75);
            assert_true(ev.hits10 == 1.0);
        }
    float out[5];
    ktranse_score_all(ent, rel, 5, 1, 1, 0, 0, 0, out);
    const float tails[] = {-1, 0, -1, -2, 0};
    assert_memory_equal(out, tails, sizeof tails);
    ktranse_score_all(ent, rel, 5, 1, 2, 2, 0, 1, out);
    assert_memory_equal(out, tails, sizeof tails); /* heads of (?, 0, 2): the same distances */

    /* bad ids are refused */
    const ktriple bad[] = {{0, 1, 2}};
    keval ev;
    assert_int_equal(ktranse_eval(&d, bad, 1, ent, rel, 1, 1, 1, &ev), -1);
    assert_int_equal(ktranse_eval(&d, test, 2, ent, rel, 1, 3, 1, &ev), -1);
}

static int known(const ktriple *all, size_t n, uint32_t h, uint32_t r, uint32_t t)
{
    for (size_t i = 0; i < n; i++)
        if (all[i].h == h && all[i].r == r && all[i].t == t) return 1;
    return 0;
}

/* Random embeddings: ktranse_eval (blocked kernels, filter index) equals a
 * brute-force ranking on ktranse_score_all, exactly. */
static void test_eval_brute_force(void **state)
{
    (void)state;
    const uint32_t E = 37, R = 3;
    const int D = 21;
    const size_t n = 90;
    ktriple *all = malloc(n * sizeof(ktriple));
    for (size_t i = 0; i < n; i++)
        all[i] = (ktriple){(uint32_t)(rng() % E), (uint32_t)(rng() % R), (uint32_t)(rng() % E)};
    ktranse_data d = {all, 60, all + 60, 10, all + 70, 20, E, R};
    float *ent = malloc(E * D * sizeof(float)), *rel = malloc(R * D * sizeof(float)), out[37];
    for (size_t i = 0; i < E * (size_t)D; i++) ent[i] = (float)(rng() % 7) * 0.25f; /* ties happen */
    for (size_t i = 0; i < R * (size_t)D; i++) rel[i] = (float)(rng() % 3) * 0.25f;
    for (int norm = 1; norm <= 2; norm++) {
        double mrr = 0, h10 = 0;
        for (size_t i = 70; i < 90; i++)
            for (int heads = 0; heads <= 1; heads++) {
                uint32_t target = heads ? all[i].h : all[i].t;
                ktranse_score_all(ent, rel, E, D, norm, heads ? all[i].t : all[i].h, all[i].r, heads, out);
                double less = 0, eq = 0;
                for (uint32_t c = 0; c < E; c++) {
                    if (c == target) continue;
                    if (heads ? known(all, n, c, all[i].r, all[i].t) : known(all, n, all[i].h, all[i].r, c)) continue;
                    less += out[c] > out[target];
                    eq += out[c] == out[target];
                }
                double rank = 1 + less + eq / 2;
                mrr += 1 / rank;
                h10 += rank <= 10;
            }
        keval ev;
        assert_int_equal(ktranse_eval(&d, all + 70, 20, ent, rel, D, norm, 2, &ev), 0);
        if (fabs(ev.mrr - mrr / 40) > 1e-12 || fabs(ev.hits10 - h10 / 40) > 1e-12)
            fail_msg("norm %d: eval MRR %.9f H@10 %.4f, brute force %.9f %.4f", norm, ev.mrr, ev.hits10, mrr / 40,
                     h10 / 40);
    }
    free(all); free(ent); free(rel);
}

/* ---- training -------------------------------------------------------------------- */

/* A 12 x 12 grid: entity (x, y); relations right (+1, 0), up (0, +1), right2 (+2, 0)
 * and diagonal (+1, +1), wherever the target is inside. TransE represents it
 * exactly; 1 triple in 6 is held out for test, 1 in 12 for validation. */
typedef struct grid { ktriple *train, *valid, *test; size_t ntr, nva, nte; } grid;

static void grid_make(grid *g)
{
    const int N = 12, dx[4] = {1, 0, 2, 1}, dy[4] = {0, 1, 0, 1};
    g->train = malloc(4 * N * N * sizeof(ktriple));
    g->valid = malloc(4 * N * N * sizeof(ktriple));
    g->test = malloc(4 * N * N * sizeof(ktriple));
    g->ntr = g->nva = g->nte = 0;
    size_t k = 0;
    for (int x = 0; x < N; x++)
        for (int y = 0; y < N; y++)
            for (int r = 0; r < 4; r++) {
                int x2 = x + dx[r], y2 = y + dy[r];
                if (x2 >= N || y2 >= N) continue;
                ktriple t = {(uint32_t)(x * N + y), (uint32_t)r, (uint32_t)(x2 * N + y2)};
                uint64_t hsh = (k++ * 0x9E3779B97F4A7C15ull) >> 58;
                if (hsh % 6 == 0) g->test[g->nte++] = t;
                else if (hsh % 12 == 1) g->valid[g->nva++] = t;
                else g->train[g->ntr++] = t;
            }
}

static void grid_free(grid *g)
{
    free(g->train);
    free(g->valid);
    free(g->test);
}

static void grid_opts(ktranse_opts *o)
{
    ktranse_opts_default(o);
    o->dim = 24;
    o->epochs = 150;
    o->negatives = 32;
    o->share = 8;
    o->batch = 64;
    o->lr = 0.01f;
    o->margin = 2.0f;
    o->eval_every = 50;
    o->patience = 0;
}

static int n_progress;
static void progress(int epoch, double loss, double vmrr, double secs, void *ctx)
{
    (void)secs;
    (void)ctx;
    assert_int_equal(epoch, n_progress + 1);
    assert_true(isfinite(loss));
    assert_true(vmrr < 0 ? epoch % 50 != 0 : epoch % 50 == 0);
    n_progress++;
}

static void test_train_grid(void **state)
{
    (void)state;
    grid g;
    grid_make(&g);
    ktranse_data d = {g.train, g.ntr, g.valid, g.nva, g.test, g.nte, 144, 4};
    for (int norm = 1; norm <= 2; norm++) {
        ktranse_opts o;
        grid_opts(&o);
        o.norm = norm;
        if (norm == 2) o.margin = 0.5f; /* L2 distances are smaller */
        o.progress = progress;
        n_progress = 0;
        float *ent = malloc(144 * 24 * sizeof(float)), rel[4 * 24];
        ktranse_report rep;
        char err[200];
        assert_int_equal(ktranse_train(&d, &o, ent, rel, &rep, err, sizeof err), 0);
        assert_int_equal(n_progress, 150);
        assert_int_equal(rep.epochs, 150);
        assert_true(rep.best_epoch > 0 && rep.best_valid_mrr > 0);
        keval ev;
        assert_int_equal(ktranse_eval(&d, g.test, g.nte, ent, rel, 24, norm, 2, &ev), 0);
        /* random ranking gives MRR ~ ln(144) / 144 = 0.035 */
        print_message("grid norm %d: test MRR %.3f H@1 %.3f H@10 %.3f\n", norm, ev.mrr, ev.hits1, ev.hits10);
        if (ev.mrr < 0.8) fail_msg("norm %d: grid test MRR %.3f (H@10 %.3f)", norm, ev.mrr, ev.hits10);
        free(ent);
    }
    grid_free(&g);
}

static void test_determinism(void **state)
{
    (void)state;
    grid g;
    grid_make(&g);
    ktranse_data d = {g.train, g.ntr, g.valid, g.nva, g.test, g.nte, 144, 4};
    const size_t ne = 144 * 24, nr = 4 * 24;
    float *ent[5], *rel[5];
    const int threads[5] = {1, 1, 2, 2, 2};
    for (int k = 0; k < 5; k++) {
        ktranse_opts o;
        grid_opts(&o);
        o.epochs = 20;
        o.eval_every = 5;
        o.threads = threads[k];
        o.seed = k == 4 ? 2 : 1;
        o.both_sides = 1;
        ent[k] = malloc(ne * sizeof(float));
        rel[k] = malloc(nr * sizeof(float));
        assert_int_equal(ktranse_train(&d, &o, ent[k], rel[k], NULL, NULL, 0), 0);
    }
    for (int k = 1; k < 4; k++) { /* same seed: identical, whatever the thread count */
        assert_memory_equal(ent[0], ent[k], ne * sizeof(float));
        assert_memory_equal(rel[0], rel[k], nr * sizeof(float));
    }
    assert_memory_not_equal(ent[0], ent[4], ne * sizeof(float));
    for (int k = 0; k < 5; k++) {
        free(ent[k]);
        free(rel[k]);
    }
    grid_free(&g);
}

static void test_options_and_stop(void **state)
{
    (void)state;
    grid g;
    grid_make(&g);
    ktranse_data d = {g.train, g.ntr, g.valid, g.nva, g.test, g.nte, 144, 4};
    float *ent = malloc(144 * 24 * sizeof(float)), rel[4 * 24];
    char err[200] = "";
    ktranse_opts o;
    grid_opts(&o);
    o.norm = 3;
    assert_int_equal(ktranse_train(&d, &o, ent, rel, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "norm"));
    grid_opts(&o);
    ktranse_data bad = d;
    bad.n_ent = 100; /* ids up to 143 */
    assert_int_equal(ktranse_train(&bad, &o, ent, rel, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "out of range"));
    /* the stop flag ends training after the current batch; the best check is kept */
    volatile int stop = 1;
    o.stop = &stop;
    ktranse_report rep;
    assert_int_equal(ktranse_train(&d, &o, ent, rel, &rep, err, sizeof err), 0);
    assert_int_equal(rep.epochs, 1);
    assert_int_equal(rep.best_epoch, 1); /* a stopped run is still validated once */
    free(ent);
    grid_free(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradient),
        cmocka_unit_test(test_eval_by_hand),
        cmocka_unit_test(test_eval_brute_force),
        cmocka_unit_test(test_train_grid),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_options_and_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
