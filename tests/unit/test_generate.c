/* test_generate.c: unit tests of trainer/generate.c (incremental GPT-2
 * decoding with a key/value cache, and the samplers).
 *
 * Model: GPT-2 with V 301, H 40, 2 layers, 2 heads (D 20: two 8-lane
 * blocks and a tail of 4), I 72, gelu_new, n_positions 160,
 * layer_norm_epsilon 1e-5, initializer_range 0.3 (large activations, so
 * that every path carries signal), kmodel_init seed 11; 150 random ids.
 *
 * - Against kmodel_forward's eval pass (itself checked against torch's
 *   GPT2LMHeadModel by test_torch_parity.sh): the logits of every position
 *   against kmodel_hidden(NL) (after ln_f) times wte^T in double; pass when
 *   max |diff| <= 2e-5 max(1, max |logit|) (float rounding of other sum
 *   orders through 2 layers; the observed difference is printed).
 * - Bit identity: the 150 ids fed at once (3 passes of at most 64
 *   positions), one by one, and in a 3-way split (37, 77, 36) give the same
 *   bytes at every position, with 1 and 2 threads; kgen_truncate(n) then
 *   kgen_logits is row n - 1, and re-feeding gives the same bytes again.
 * - bf16 (kgen_use_bf16): within bf16 rounding of fp32's logits and bit
 *   identical however fed and with 1 or 2 threads where the CPU has
 *   AVX512_BF16; refused (EX_UNAVAILABLE) elsewhere and under
 *   KILN_CPU_NO_BF16=1.
 * - Errors: past max_len, ids outside [0, V), n = 0: EX_DATAERR with a
 *   message, length and logits unchanged; kgen_new refuses a BERT model and
 *   max_len outside [1, n_positions].
 * - Sampling: greedy = argmax (lowest id on ties, NaN ignored); a draw is a
 *   function of (seed, step); top_k 1 and top_p 1e-9 are greedy; over 40000
 *   steps of V 5 logits, the frequencies of every id are within
 *   5 sigma + 1e-3 of softmax(logits / T) restricted to the top-k / top-p set
 *   (fixed seeds: a result, not a chance); on V 50000 (every ranking path:
 *   heaps of k, of 256 and 4096, the radix sort) every draw is in the set a
 *   plain sort-based reference keeps; logprob is the temperature-1
 *   log-softmax (kgen_log_softmax's value, within 1e-12 of libm's, and bit
 *   for bit the file comment's dexp sum); bad
 *   options give -1.
 * Decoding speed is bench/gpt's (kiln generate against PyTorch). */
#define _POSIX_C_SOURCE 200809L /* setenv */
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
#include <sysexits.h>

#include "trainer/bf16.h"
#include "trainer/generate.h"
#include "trainer/model.h"

enum { GV = 301, GH = 40, GNL = 2, GNH = 2, GI = 72, GPOS = 160, GN = 150 };

static uint64_t rng_state = 0x243F6A8885A308D3ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}
static double urand(void) { return (double)(rng() >> 11) * (1.0 / 9007199254740992.0); }

static kmodel_config gpt2_config(int V, int H, int NL, int NH, int I, int npos)
{
    kmodel_config c = {0};
    c.type = KMODEL_GPT2;
    c.vocab_size = V;
    c.embedding_size = H;
    c.hidden_size = H;
    c.num_hidden_layers = NL;
    c.num_hidden_groups = NL;
    c.num_attention_heads = NH;
    c.intermediate_size = I;
    c.max_position_embeddings = npos;
    c.type_vocab_size = 1;
    c.hidden_act = KACT_GELU_NEW;
    c.layer_norm_eps = 1e-5;
    c.initializer_range = 0.3;
    c.pad_token_id = 0;
    return c;
}

static kmodel *gpt2_model(int V, int H, int NL, int NH, int I, int npos, int L, double init)
{
    kmodel_config c = gpt2_config(V, H, NL, NH, I, npos);
    c.initializer_range = init;
    kmodel_spec s = kmodel_spec_pretrain_of(&c, 1, L, 0, 0);
    s.inference = 1;
    char err[256] = "";
    kmodel *m = kmodel_create(&c, &s, err, sizeof err);
    if (!m) print_error("kmodel_create: %s\n", err);
    assert_non_null(m);
    kmodel_init(m, 11);
    return m;
}

static void random_ids(int32_t *ids, int n, int V)
{
    for (int i = 0; i < n; i++) ids[i] = (int32_t)(rng() % (uint64_t)V);
}

static kgen *new_gen(const kmodel *m, int max_len)
{
    char err[256] = "";
    kgen *g = kgen_new(m, max_len, err, sizeof err);
    if (!g) print_error("kgen_new: %s\n", err);
    assert_non_null(g);
    return g;
}

/* ---- against kmodel_forward -------------------------------------------------------------- */

static void test_vs_model(void **state)
{
    (void)state;
    kmodel *m = gpt2_model(GV, GH, GNL, GNH, GI, GPOS, GN, 0.3);
    int32_t ids[GN], len = GN;
    random_ids(ids, GN, GV);
    int64_t index = 0;
    ksample_batch b = {.version = KSAMPLE_BATCH_VERSION, .objectives = KOBJ_CLM, .B = 1, .L = GN, .capacity = 1,
                       .index = &index, .input_ids = ids, .lengths = &len};
    assert_int_equal(kmodel_forward(m, &b, KMODE_EVAL, 0), 0);
    const float *fin = kmodel_hidden(m, GNL);
    assert_non_null(fin);
    int nt;
    const ktensor *t = kmodel_params(m, &nt);
    const float *wte = kmodel_param_data(m) + t[ktensor_find(t, nt, "transformer.wte.weight")].offset;

    kgen *g = new_gen(m, GPOS);
    assert_int_equal(kgen_vocab_size(g), GV);
    assert_int_equal(kgen_max_len(g), GPOS);
    assert_null(kgen_logits(g));
    float *lg = malloc(sizeof(float) * GN * GV);
    assert_non_null(lg);
    assert_int_equal(kgen_feed(g, ids, GN, lg), 0);
    assert_int_equal(kgen_len(g), GN);
    double maxdiff = 0, maxabs = 0;
    for (int i = 0; i < GN; i++)
        for (int v = 0; v < GV; v++) {
            double ref = 0;
            for (int k = 0; k < GH; k++) ref += (double)fin[(size_t)i * GH + k] * wte[(size_t)v * GH + k];
            maxdiff = fmax(maxdiff, fabs(ref - lg[(size_t)i * GV + v]));
            maxabs = fmax(maxabs, fabs(ref));
        }
    fprintf(stderr, "generate vs kmodel_forward: max |diff| %.3g, max |logit| %.3g\n", maxdiff, maxabs);
    assert_true(maxabs > 1.0);
    assert_true(maxdiff <= 2e-5 * fmax(1.0, maxabs));
    /* the last position's logits stay readable */
    assert_memory_equal(kgen_logits(g), lg + (size_t)(GN - 1) * GV, sizeof(float) * GV);
    free(lg);
    kgen_free(g);
    kmodel_free(m);
}

/* ---- bit identity ------------------------------------------------------------------------------ */

/* the logits of every position, fed in pieces of sizes parts[0..np) */
static void feed_parts(kgen *g, const int32_t *ids, const int *parts, int np, float *out)
{
    kgen_reset(g);
    assert_int_equal(kgen_len(g), 0);
    int at = 0;
    for (int p = 0; p < np; p++) {
        assert_int_equal(kgen_feed(g, ids + at, parts[p], out + (size_t)at * GV), 0);
        at += parts[p];
        assert_int_equal(kgen_len(g), at);
        assert_memory_equal(kgen_logits(g), out + (size_t)(at - 1) * GV, sizeof(float) * GV);
    }
}

/* The GN ids fed at once, one by one and in a 3-way split (37, 77, 36),
 * with 2 threads and with 1: the same bytes every time (all gets the
 * logits; one, split, t1: (GN, GV) scratch) */
static void same_bytes_however_fed(kgen *g, const int32_t *ids, float *all, float *one, float *split, float *t1)
{
    const size_t bytes = sizeof(float) * GN * GV;
    const int whole[1] = {GN}, three[3] = {37, 77, 36};
    int ones[GN];
    for (int i = 0; i < GN; i++) ones[i] = 1;
    omp_set_num_threads(2);
    feed_parts(g, ids, whole, 1, all);
    feed_parts(g, ids, ones, GN, one);
    feed_parts(g, ids, three, 3, split);
    assert_memory_equal(all, one, bytes);
    assert_memory_equal(all, split, bytes);
    omp_set_num_threads(1);
    feed_parts(g, ids, whole, 1, t1);
    assert_memory_equal(all, t1, bytes);
    feed_parts(g, ids, three, 3, t1);
    assert_memory_equal(all, t1, bytes);
    omp_set_num_threads(2);
}

static void test_bit_identity(void **state)
{
    (void)state;
    kmodel *m = gpt2_model(GV, GH, GNL, GNH, GI, GPOS, 8, 0.3);
    int32_t ids[GN];
    random_ids(ids, GN, GV);
    kgen *g = new_gen(m, GPOS);
    const size_t bytes = sizeof(float) * GN * GV;
    float *all = malloc(bytes), *one = malloc(bytes), *split = malloc(bytes), *t1 = malloc(bytes);
    assert_true(all && one && split && t1);
    same_bytes_however_fed(g, ids, all, one, split, t1);

    /* a feed without logits leaves the same last row */
    kgen_reset(g);
    assert_null(kgen_logits(g));
    assert_int_equal(kgen_feed(g, ids, 100, NULL), 0);
    assert_memory_equal(kgen_logits(g), all + (size_t)99 * GV, sizeof(float) * GV);
    /* truncate: the logits of the new last position, then the same bytes again */
    kgen_truncate(g, 50);
    assert_int_equal(kgen_len(g), 50);
    assert_memory_equal(kgen_logits(g), all + (size_t)49 * GV, sizeof(float) * GV);
    assert_int_equal(kgen_feed(g, ids + 50, GN - 50, t1), 0);
    assert_memory_equal(t1, all + (size_t)50 * GV, sizeof(float) * (GN - 50) * GV);
    kgen_truncate(g, 1);
    assert_memory_equal(kgen_logits(g), all, sizeof(float) * GV);
    for (int i = 1; i < 20; i++) assert_int_equal(kgen_feed(g, ids + i, 1, NULL), 0);
    assert_memory_equal(kgen_logits(g), all + (size_t)19 * GV, sizeof(float) * GV);
    kgen_truncate(g, 0);
    assert_int_equal(kgen_len(g), 0);
    assert_null(kgen_logits(g));

    free(all), free(one), free(split), free(t1);
    kgen_free(g);
    kmodel_free(m);
}

/* ---- bf16 (kgen_use_bf16) ------------------------------------------------------------------------ */

/* Where the CPU has AVX512_BF16: the logits within bf16 rounding of fp32's
 * (max |diff| <= 5e-2 max(1, max |logit|), and not equal: the products did
 * change), and the same bit identity as fp32 (at once, one by one, split;
 * 1 and 2 threads; H 40 and I 72 exercise the zero padding to 64 and 96).
 * Elsewhere, and under KILN_CPU_NO_BF16=1: EX_UNAVAILABLE naming
 * AVX512_BF16, and the kgen still decodes in fp32. */
static void test_bf16(void **state)
{
    (void)state;
    kmodel *m = gpt2_model(GV, GH, GNL, GNH, GI, GPOS, 8, 0.3);
    int32_t ids[GN];
    random_ids(ids, GN, GV);
    kgen *g = new_gen(m, GPOS);
    const size_t bytes = sizeof(float) * GN * GV;
    float *f32 = malloc(bytes), *all = malloc(bytes), *one = malloc(bytes), *split = malloc(bytes),
          *t1 = malloc(bytes);
    assert_true(f32 && all && one && split && t1);
    const int whole[1] = {GN};
    feed_parts(g, ids, whole, 1, f32);
    char err[256] = "";
    setenv("KILN_CPU_NO_BF16", "1", 1);
    assert_int_equal(kgen_use_bf16(g, err, sizeof err), EX_UNAVAILABLE);
    assert_non_null(strstr(err, "AVX512_BF16"));
    unsetenv("KILN_CPU_NO_BF16");
    assert_int_equal(kgen_is_bf16(g), 0);
    if (!kbf16_cpu_dot()) {
        assert_int_equal(kgen_use_bf16(g, err, sizeof err), EX_UNAVAILABLE);
        print_message("no AVX512_BF16 here: the refusal is what is checked\n");
    } else {
        assert_int_equal(kgen_use_bf16(g, err, sizeof err), 0);
        assert_int_equal(kgen_is_bf16(g), 1);
        same_bytes_however_fed(g, ids, all, one, split, t1);
        double e = 0, mx = 1;
        for (size_t i = 0; i < (size_t)GN * GV; i++) e = fmax(e, fabs(all[i] - f32[i])), mx = fmax(mx, fabs(f32[i]));
        print_message("bf16 logits vs fp32: max |diff| %.3g, max |logit| %.3g\n", e, mx);
        assert_true(e > 0 && e <= 5e-2 * mx);
    }
    free(f32), free(all), free(one), free(split), free(t1);
    kgen_free(g);
    kmodel_free(m);
}

/* ---- errors --------------------------------------------------------------------------------------- */

static void test_errors(void **state)
{
    (void)state;
    kmodel *m = gpt2_model(GV, GH, GNL, GNH, GI, GPOS, 8, 0.3);
    char err[256] = "";
    assert_null(kgen_new(m, 0, err, sizeof err));
    assert_non_null(strstr(err, "max_len"));
    assert_null(kgen_new(m, GPOS + 1, err, sizeof err));
    assert_non_null(strstr(err, "max_len"));
    kgen *g = new_gen(m, 10);
    int32_t ids[12];
    random_ids(ids, 12, GV);
    assert_int_equal(kgen_feed(g, ids, 11, NULL), EX_DATAERR);
    assert_non_null(strstr(kgen_error(g), "max_len"));
    assert_int_equal(kgen_len(g), 0);
    assert_null(kgen_logits(g));
    assert_int_equal(kgen_feed(g, ids, 8, NULL), 0);
    float before[GV];
    memcpy(before, kgen_logits(g), sizeof before);
    assert_int_equal(kgen_feed(g, ids, 3, NULL), EX_DATAERR);
    assert_int_equal(kgen_len(g), 8);
    int32_t bad[2] = {5, GV};
    assert_int_equal(kgen_feed(g, bad, 2, NULL), EX_DATAERR);
    assert_non_null(strstr(kgen_error(g), "not in [0, 301)"));
    bad[1] = -1;
    assert_int_equal(kgen_feed(g, bad, 2, NULL), EX_DATAERR);
    assert_int_equal(kgen_feed(g, bad, 0, NULL), EX_DATAERR);
    assert_int_equal(kgen_len(g), 8);
    assert_memory_equal(kgen_logits(g), before, sizeof before);
    /* the cache is unchanged: the next feed gives what it gives without the errors */
    float after[GV];
    assert_int_equal(kgen_feed(g, ids + 8, 2, NULL), 0);
    memcpy(after, kgen_logits(g), sizeof after);
    kgen_reset(g);
    assert_int_equal(kgen_feed(g, ids, 10, NULL), 0);
    assert_memory_equal(kgen_logits(g), after, sizeof after);
    assert_int_equal(kgen_feed(g, ids, 1, NULL), EX_DATAERR);
    kgen_free(g);
    kmodel_free(m);

    /* not GPT-2 */
    kmodel_config c = gpt2_config(GV, GH, GNL, GNH, GI, GPOS);
    c.type = KMODEL_BERT;
    c.type_vocab_size = 2;
    c.hidden_act = KACT_GELU;
    m = kmodel_new(&c, 1, 8, 2, 0, err, sizeof err);
    assert_non_null(m);
    assert_null(kgen_new(m, 8, err, sizeof err));
    assert_non_null(strstr(err, "GPT-2"));
    kmodel_free(m);
}

/* ---- sampling ----------------------------------------------------------------------------------------- */

static void test_greedy(void **state)
{
    (void)state;
    enum { V = 1000 };
    float l[V];
    for (int i = 0; i < V; i++) l[i] = (float)(urand() * 10 - 5);
    l[617] = 7.5f;
    kgen_sampling s;
    kgen_sampling_defaults(&s);
    assert_true(s.greedy == 0 && s.temperature == 1 && s.top_k == 0 && s.top_p == 1);
    s.greedy = 1;
    s.temperature = -1; /* ignored */
    double lp;
    assert_int_equal(kgen_sample(l, V, &s, 1, 2, &lp, NULL), 617);
    double ls[V];
    kgen_log_softmax(l, V, ls);
    assert_true(lp == ls[617]);
    l[300] = 7.5f; /* a tie: the lower id */
    l[10] = NAN;   /* ranks last */
    assert_int_equal(kgen_sample(l, V, &s, 1, 2, NULL, NULL), 300);
    const float z[4] = {NAN, -INFINITY, -INFINITY, NAN}; /* -inf ranks before NaN */
    assert_int_equal(kgen_sample(z, 4, &s, 1, 2, NULL, NULL), 1);
    const float zero[3] = {-1.0f, -0.0f, 0.0f}; /* -0 == +0: the lower id */
    assert_int_equal(kgen_sample(zero, 3, &s, 1, 2, NULL, NULL), 1);
}

/* generate.c's dexp as its file comment defines it (Cody-Waite, degree-13
 * Taylor by Horner, ldexp), one value at a time */
static double ref_dexp(double x)
{
    if (x != x) return x;
    if (x < -745.2) return 0.0;
    if (x > 709.7) return HUGE_VAL;
    double k = x * 1.4426950408889634 + 6755399441055744.0;
    k -= 6755399441055744.0;
    const double r = x - k * 6.93147180369123816490e-01 - k * 1.90821492927058770002e-10;
    static const double c[] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
                               1.0 / 362880.0,     1.0 / 40320.0,     1.0 / 5040.0,     1.0 / 720.0,
                               1.0 / 120.0,        1.0 / 24.0,        1.0 / 6.0,        0.5,
                               1.0,                1.0};
    double p = c[0];
    for (int i = 1; i < 14; i++) p = p * r + c[i];
    return ldexp(p, (int)k);
}

/* kgen_log_softmax bit for bit as defined: l_i - lmax - log(running sum over
 * i ascending of dexp(l_i - lmax)), whatever path computes the terms (32 at
 * a time; one by one where a group reaches below -708 or holds -inf: spreads
 * of 1, 40, 900 and 3000 below the largest logit, and 705 to 745 below it;
 * V not a multiple of 32); kgen_logprob its value at one id, kgen_argmax
 * the first largest */
static void test_log_softmax_exact(void **state)
{
    (void)state;
    enum { V = 5011 };
    static float l[V];
    static double ls[V];
    const double spread[] = {1, 40, 900, 3000, 40};
    for (int c = 0; c < 5; c++) {
        /* (the last: all but the largest in [-745, -705], where 2^k leaves the normal range) */
        for (int i = 0; i < V; i++) l[i] = (float)(urand() * -spread[c] - (c == 4 ? 705 : 0));
        l[V / 3] = 2.5f;
        if (c == 2) l[77] = -INFINITY;
        kgen_log_softmax(l, V, ls);
        const double lmax = 2.5;
        double S = 0;
        for (int i = 0; i < V; i++) S += ref_dexp((double)l[i] - lmax);
        const double ln = log(S);
        for (int i = 0; i < V; i++) {
            const double want = ((double)l[i] - lmax) - ln;
            if (memcmp(&want, &ls[i], sizeof want))
                print_error("spread %g: id %d: %a, want %a\n", spread[c], i, ls[i], want);
            assert_memory_equal(&want, &ls[i], sizeof want);
        }
        /* kgen_logprob: the same value at one id; kgen_argmax: the largest */
        for (int i = 0; i < V; i += 97) {
            const double one = kgen_logprob(l, V, i, NULL);
            assert_memory_equal(&one, &ls[i], sizeof one);
        }
        assert_true(isnan(kgen_logprob(l, V, V, NULL)) && isnan(kgen_logprob(l, V, -1, NULL)));
        assert_int_equal(kgen_argmax(l, V), V / 3);
    }
    /* kgen_argmax: the first of equal largest values, NaN skipped, all -inf: id 0 */
    float t[40];
    for (int i = 0; i < 40; i++) t[i] = (float)i * 0.01f;
    t[39] = NAN;
    t[20] = t[35] = 1.0f;
    assert_int_equal(kgen_argmax(t, 40), 20);
    assert_int_equal(kgen_argmax(t, 19), 18);
    for (int i = 0; i < 40; i++) t[i] = -INFINITY;
    assert_int_equal(kgen_argmax(t, 40), 0);
}

static void test_sample_basic(void **state)
{
    (void)state;
    enum { V = 2000 };
    float l[V];
    for (int i = 0; i < V; i++) l[i] = (float)(urand() * 4);
    const int32_t top = kgen_sample(l, V, &(kgen_sampling){.greedy = 1}, 0, 0, NULL, NULL);
    void *scratch = malloc((size_t)V * (2 * sizeof(float) + sizeof(int32_t)));
    assert_non_null(scratch);
    kgen_sampling s;
    kgen_sampling_defaults(&s);
    /* the log-softmax, against libm */
    double ls[V], mx = -INFINITY, S = 0;
    kgen_log_softmax(l, V, ls);
    for (int i = 0; i < V; i++) mx = fmax(mx, l[i]);
    for (int i = 0; i < V; i++) S += exp(l[i] - mx);
    for (int i = 0; i < V; i++) assert_true(fabs(ls[i] - ((l[i] - mx) - log(S))) < 1e-12);
    int distinct = 0, prev = -1;
    for (uint64_t step = 0; step < 200; step++) {
        double lp, lp2;
        int32_t a = kgen_sample(l, V, &s, 42, step, &lp, scratch);
        int32_t b = kgen_sample(l, V, &s, 42, step, &lp2, NULL);
        assert_true(a >= 0 && a < V);
        assert_int_equal(a, b);
        assert_true(lp == ls[a] && lp2 == lp);
        distinct += a != prev;
        prev = a;
        /* top_k 1 and a tiny top_p are greedy, at any temperature */
        kgen_sampling k1 = s, p0 = s;
        k1.top_k = 1, k1.temperature = 3;
        p0.top_p = 1e-9, p0.temperature = 0.3;
        assert_int_equal(kgen_sample(l, V, &k1, 42, step, &lp, scratch), top);
        assert_true(lp == ls[top]); /* the temperature-1 distribution's, not the truncated one's */
        assert_int_equal(kgen_sample(l, V, &p0, 42, step, NULL, scratch), top);
    }
    assert_true(distinct > 150);
    /* bad options */
    kgen_sampling b = s;
    b.temperature = 0;
    assert_int_equal(kgen_sample(l, V, &b, 1, 1, NULL, NULL), -1);
    b = s, b.top_p = 0;
    assert_int_equal(kgen_sample(l, V, &b, 1, 1, NULL, NULL), -1);
    b = s, b.top_p = 1.5;
    assert_int_equal(kgen_sample(l, V, &b, 1, 1, NULL, NULL), -1);
    b = s, b.top_k = -1;
    assert_int_equal(kgen_sample(l, V, &b, 1, 1, NULL, NULL), -1);
    free(scratch);
}

/* the distribution the sampler should draw from (documented procedure, in
 * double with libm): p (V) */
static void ref_dist(const float *l, int V, const kgen_sampling *s, double *p)
{
    int ord[16];
    for (int i = 0; i < V; i++) ord[i] = i;
    for (int i = 0; i < V; i++) /* rank order: larger logit, then lower id */
        for (int j = i + 1; j < V; j++)
            if (l[ord[j]] > l[ord[i]] || (l[ord[j]] == l[ord[i]] && ord[j] < ord[i])) {
                int t = ord[i];
                ord[i] = ord[j], ord[j] = t;
            }
    int k = s->top_k > 0 && s->top_k < V ? s->top_k : V;
    double w[16], Wk = 0;
    for (int r = 0; r < V; r++) w[r] = exp(((double)l[ord[r]] - l[ord[0]]) / s->temperature);
    for (int r = 0; r < k; r++) Wk += w[r];
    int keep = k;
    if (s->top_p < 1) {
        double c = 0;
        for (int r = 0; r < k; r++)
            if ((c += w[r]) >= s->top_p * Wk) {
                keep = r + 1;
                break;
            }
    }
    double W = 0;
    for (int r = 0; r < keep; r++) W += w[r];
    for (int i = 0; i < V; i++) p[i] = 0;
    for (int r = 0; r < keep; r++) p[ord[r]] = w[r] / W;
}

static void test_sample_distribution(void **state)
{
    (void)state;
    enum { V = 5, STEPS = 40000 };
    const float l[V] = {1.0f, 2.0f, 0.5f, 2.0f, -1.0f};
    const kgen_sampling cases[] = {
        {0, 1.0, 0, 1.0}, {0, 0.5, 0, 1.0}, {0, 2.0, 0, 1.0}, {0, 1.0, 3, 1.0},
        {0, 0.7, 4, 0.9}, {0, 2.0, 0, 0.8}, {0, 1.0, 2, 1.0}, {0, 1.5, 4, 0.6},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        double p[V];
        ref_dist(l, V, &cases[c], p);
        int cnt[V] = {0};
        for (uint64_t step = 0; step < STEPS; step++) {
            int32_t id = kgen_sample(l, V, &cases[c], 1234 + c, step, NULL, NULL);
            assert_true(id >= 0 && id < V);
            cnt[id]++;
        }
        for (int i = 0; i < V; i++) {
            double f = (double)cnt[i] / STEPS, sd = sqrt(p[i] * (1 - p[i]) / STEPS);
            if (!(fabs(f - p[i]) <= 5 * sd + 1e-3))
                print_error("case %zu id %d: frequency %.4f, expected %.4f\n", c, i, f, p[i]);
            assert_true(fabs(f - p[i]) <= 5 * sd + 1e-3);
            if (p[i] == 0) assert_int_equal(cnt[i], 0);
        }
    }
}

/* large V: the draws lie in the reference's kept set (every ranking path) */
static const float *cmp_l;
static int cmp_rank(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    if (cmp_l[i] != cmp_l[j]) return cmp_l[i] > cmp_l[j] ? -1 : 1;
    return i < j ? -1 : i > j;
}

static void test_sample_large(void **state)
{
    (void)state;
    enum { V = 50000 };
    float *l = malloc(sizeof(float) * V);
    int *ord = malloc(sizeof(int) * V);
    char *in = malloc(V);
    void *scratch = malloc((size_t)V * (2 * sizeof(float) + sizeof(int32_t)));
    assert_true(l && ord && in && scratch);
    /* spread: peaked (nucleus in 256), medium (in 4096), flat (all ids) */
    const double spread[3] = {30.0, 6.0, 0.05};
    const kgen_sampling cases[] = {
        {0, 1.0, 40, 1.0}, {0, 1.0, 10000, 1.0}, {0, 1.0, 30000, 1.0}, {0, 1.0, 0, 0.9},
        {0, 0.8, 0, 0.5},  {0, 1.0, 3000, 0.95}, {0, 1.2, 0, 1.0},
    };
    for (int sp = 0; sp < 3; sp++) {
        for (int i = 0; i < V; i++) l[i] = (float)(spread[sp] * urand() * urand() * urand());
        for (int i = 0; i < 100; i++) l[rng() % V] = l[rng() % V]; /* ties */
        cmp_l = l;
        for (int i = 0; i < V; i++) ord[i] = i;
        qsort(ord, V, sizeof *ord, cmp_rank);
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            const kgen_sampling *s = &cases[c];
            int k = s->top_k > 0 && s->top_k < V ? s->top_k : V, keep = k;
            double Wk = 0, cum = 0;
            for (int r = 0; r < k; r++) Wk += exp(((double)l[ord[r]] - l[ord[0]]) / s->temperature);
            if (s->top_p < 1)
                for (int r = 0; r < k; r++)
                    if ((cum += exp(((double)l[ord[r]] - l[ord[0]]) / s->temperature)) >= s->top_p * Wk) {
                        keep = r + 1;
                        break;
                    }
            memset(in, 0, V);
            for (int r = 0; r < keep; r++) in[ord[r]] = 1;
            /* (a margin of one rank for last-bit differences between libm's exp and the sampler's) */
            if (keep < V) in[ord[keep]] = 1;
            for (uint64_t step = 0; step < 20; step++) {
                int32_t id = kgen_sample(l, V, s, 7, step, NULL, step % 2 ? scratch : NULL);
                assert_true(id >= 0 && id < V);
                if (!in[id]) print_error("spread %d case %zu: id %d outside the kept set (%d ids)\n", sp, c, id, keep);
                assert_true(in[id]);
            }
        }
    }
    free(l), free(ord), free(in), free(scratch);
}

int main(void)
{
    omp_set_num_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vs_model),     cmocka_unit_test(test_bit_identity), cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_errors),       cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_log_softmax_exact), cmocka_unit_test(test_sample_basic), cmocka_unit_test(test_sample_distribution),
        cmocka_unit_test(test_sample_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
