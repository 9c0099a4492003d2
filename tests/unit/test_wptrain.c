/* test_wptrain.c: unit tests of text/wptrain.h (WordPiece vocabulary training).
 *
 * Small corpora are worked by hand and the whole vocabulary is asserted. The
 * main one, {low:5, lower:2, newest:6, widest:3}:
 *   symbols  low = l ##o ##w, lower = l ##o ##w ##e ##r,
 *            newest = n ##e ##w ##e ##s ##t, widest = w ##i ##d ##e ##s ##t
 *   alphabet (byte order, '#' < 'a'): ##d ##e ##i ##o ##r ##s ##t ##w d e i l n o r s t w
 *   pair counts: (##e,##s) 9, (##s,##t) 9, (##w,##e) 8, (l,##o) 7, (##o,##w) 7,
 *                (n,##e) 6, (##e,##w) 6, three 3s, (##e,##r) 2
 *   merges: 1 ##es (9; ties with (##s,##t): "##e" < "##s")   2 ##est (9)
 *           3 ##ow (7; "##o" < "l")   4 low (7)   5 ##ew (6; "##e" < "##w" < "n")
 *           6 ##ewest (6)   7 newest (6)   8 ##dest (3)   9 ##idest (3)
 *           10 widest (3)   11 ##er (2)   12 lower (2)
 * With min_frequency 3 the merges stop after 10; with max_piece_chars 3 the
 * pairs making pieces of more than 3 chars are never counted, which gives
 * ##es ##est ##ow low ##ew new ##id wid ##er.
 * Also: specials first and in order (and not repeated when a piece equals
 * one), limit_alphabet (dropped chars are barriers: no pair across them),
 * vocab_size too small, determinism over insertion order and counter merging,
 * counter pruning, UTF-8 multibyte and invalid bytes, progress, and a larger
 * Zipf corpus of 200k distinct words trained to 8000 pieces. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/wptrain.h"

static const char *const SPECIALS[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

/* Deterministic pseudo-random numbers (xorshift64*), so failures reproduce. */
typedef struct rng_t { uint64_t s; } rng_t;
static uint64_t rng(rng_t *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

static kwp_train_opts opts(size_t vocab_size, uint64_t min_frequency)
{
    kwp_train_opts o = {0};
    o.vocab_size = vocab_size;
    o.min_frequency = min_frequency;
    o.special = SPECIALS;
    o.n_special = 5;
    return o;
}

/* Trains and returns the vocab.txt text (caller frees); fails the test on error. */
static char *train(const kwp_counter *c, const kwp_train_opts *o)
{
    kbuf out = {0};
    char err[512];
    int rc = kwp_train(c, o, &out, err, sizeof err);
    if (rc) fprintf(stderr, "kwp_train: %s\n", err);
    assert_int_equal(rc, 0);
    if (!out.data) kbuf_reserve(&out, 0); /* an empty vocab is still a string */
    return out.data;
}

/* "a\nb\n...": the lines of exp[0..n) joined. Caller frees. */
static char *lines(const char *const *exp, size_t n)
{
    kbuf b = {0};
    kbuf_reserve(&b, 1);
    for (size_t i = 0; i < n; i++) {
        kbuf_puts(&b, exp[i]);
        kbuf_putc(&b, '\n');
    }
    return b.data;
}

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static void assert_vocab(const kwp_counter *c, const kwp_train_opts *o, const char *const *exp, size_t n)
{
    char *got = train(c, o), *want = lines(exp, n);
    assert_string_equal(got, want);
    free(got);
    free(want);
}

static kwp_counter *low_counter(void)
{
    kwp_counter *c = kwp_counter_new(1000);
    kwp_counter_add(c, "low", 3, 5);
    kwp_counter_add(c, "lower", 5, 2);
    kwp_counter_add(c, "newest", 6, 6);
    kwp_counter_add(c, "widest", 6, 3);
    return c;
}

#define SPEC5 "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
#define LOW_ALPHA "##d", "##e", "##i", "##o", "##r", "##s", "##t", "##w", \
                  "d", "e", "i", "l", "n", "o", "r", "s", "t", "w"

/* ---- hand-worked corpora ---------------------------------------------------- */

static void test_low_lower_full(void **state)
{
    (void)state;
    kwp_counter *c = low_counter();
    assert_int_equal(kwp_counter_size(c), 4);
    kwp_train_opts o = opts(1000, 2);
    static const char *const exp[] = {SPEC5, LOW_ALPHA, "##es", "##est", "##ow", "low", "##ew",
                                      "##ewest", "newest", "##dest", "##idest", "widest", "##er",
                                      "lower"};
    assert_vocab(c, &o, exp, N_OF(exp));
    kwp_counter_free(c);
}

static void test_vocab_size_stops(void **state)
{
    (void)state;
    kwp_counter *c = low_counter();
    kwp_train_opts o = opts(5 + 18 + 4, 2);
    static const char *const exp[] = {SPEC5, LOW_ALPHA, "##es", "##est", "##ow", "low"};
    assert_vocab(c, &o, exp, N_OF(exp));
    /* exactly the initial size: no merge */
    o.vocab_size = 23;
    static const char *const exp0[] = {SPEC5, LOW_ALPHA};
    assert_vocab(c, &o, exp0, N_OF(exp0));
    kwp_counter_free(c);
}

static void test_min_frequency(void **state)
{
    (void)state;
    kwp_counter *c = low_counter();
    kwp_train_opts o = opts(1000, 3);
    static const char *const exp[] = {SPEC5, LOW_ALPHA, "##es", "##est", "##ow", "low", "##ew",
                                      "##ewest", "newest", "##dest", "##idest", "widest"};
    assert_vocab(c, &o, exp, N_OF(exp));
    o.min_frequency = 10; /* best pair has 9 */
    static const char *const exp0[] = {SPEC5, LOW_ALPHA};
    assert_vocab(c, &o, exp0, N_OF(exp0));
    o.min_frequency = 0; /* acts as 1: same as 2 here (every pair has >= 2) */
    static const char *const expall[] = {SPEC5, LOW_ALPHA, "##es", "##est", "##ow", "low", "##ew",
                                         "##ewest", "newest", "##dest", "##idest", "widest", "##er",
                                         "lower"};
    assert_vocab(c, &o, expall, N_OF(expall));
    kwp_counter_free(c);
}

static void test_max_piece_chars(void **state)
{
    (void)state;
    kwp_counter *c = low_counter();
    kwp_train_opts o = opts(1000, 2);
    o.max_piece_chars = 3;
    static const char *const exp[] = {SPEC5, LOW_ALPHA, "##es", "##est", "##ow", "low", "##ew",
                                      "new", "##id", "wid", "##er"};
    assert_vocab(c, &o, exp, N_OF(exp));
    /* 1: no pair fits */
    o.max_piece_chars = 1;
    static const char *const exp0[] = {SPEC5, LOW_ALPHA};
    assert_vocab(c, &o, exp0, N_OF(exp0));
    kwp_counter_free(c);
}

static void test_specials_first_in_order(void **state)
{
    (void)state;
    kwp_counter *c = low_counter();
    /* "low" equals a merge result and "e" an alphabet piece: neither is
     * repeated; a repeated special is listed once. The merge creating "low"
     * still applies (lower -> low ##er -> lower). */
    static const char *const sp[] = {"[CLS]", "low", "[PAD]", "e", "[CLS]"};
    kwp_train_opts o = opts(1000, 2);
    o.special = sp;
    o.n_special = 5;
    static const char *const exp[] = {"[CLS]", "low", "[PAD]", "e", "##d", "##e", "##i", "##o",
                                      "##r", "##s", "##t", "##w", "d", "i", "l", "n", "o", "r",
                                      "s", "t", "w", "##es", "##est", "##ow", "##ew", "##ewest",
                                      "newest", "##dest", "##idest", "widest", "##er", "lower"};
    assert_vocab(c, &o, exp, N_OF(exp));
    /* no specials at all */
    o.n_special = 0;
    o.special = NULL;
    static const char *const exp2[] = {LOW_ALPHA, "##es", "##est"};
    o.vocab_size = 20;
    assert_vocab(c, &o, exp2, N_OF(exp2));
    kwp_counter_free(c);
}

static void test_limit_alphabet(void **state)
{
    (void)state;
    /* a 7, b 9, z 2: limit 2 drops z, which then separates a from ##b in
     * "azb": (a,##b) counts 3, not 5. Merges: ab (3), ##ab (2; "##a" < "b"),
     * bab (2). Neither z nor ##z enters the vocab. */
    kwp_counter *c = kwp_counter_new(0);
    kwp_counter_add(c, "ab", 2, 3);
    kwp_counter_add(c, "azb", 3, 2);
    kwp_counter_add(c, "bab", 3, 2);
    kwp_train_opts o = opts(100, 1);
    o.limit_alphabet = 2;
    static const char *const exp[] = {SPEC5, "##a", "##b", "a", "b", "ab", "##ab", "bab"};
    assert_vocab(c, &o, exp, N_OF(exp));
    /* limit >= the number of chars keeps all ("z" too, though never first):
     * (a,##b) 3 -> ab; then five pairs of 2, smallest "##a": ##ab; then
     * (##z,##b) before (a,##z) and (b,##ab) */
    o.limit_alphabet = 3;
    o.vocab_size = 14;
    static const char *const exp3[] = {SPEC5, "##a", "##b", "##z", "a", "b", "z", "ab", "##ab", "##zb"};
    assert_vocab(c, &o, exp3, N_OF(exp3));
    kwp_counter_free(c);

    /* ties broken by code point: a 9, b 6, c 1, z 1 -> limit 3 keeps c, not z */
    c = kwp_counter_new(0);
    kwp_counter_add(c, "aab", 3, 4);
    kwp_counter_add(c, "abc", 3, 1);
    kwp_counter_add(c, "bz", 2, 1);
    o = opts(100, 1);
    o.limit_alphabet = 3;
    static const char *const expc[] = {SPEC5, "##a", "##b", "##c", "a", "b", "c", "##ab", "aab",
                                       "##bc", "abc"};
    assert_vocab(c, &o, expc, N_OF(expc));
    o.limit_alphabet = 2;
    static const char *const expd[] = {SPEC5, "##a", "##b", "a", "b", "##ab", "aab", "ab"};
    assert_vocab(c, &o, expd, N_OF(expd));
    kwp_counter_free(c);
}

static void test_vocab_too_small(void **state)
{
    (void)state;
    kwp_counter *c = low_counter();
    kwp_train_opts o = opts(10, 2);
    kbuf out = {0};
    char err[512];
    assert_int_equal(kwp_train(c, &o, &out, err, sizeof err), -1);
    assert_int_equal(out.len, 0);
    /* the numbers: 10 asked, 23 needed = 5 specials + 18 pieces (10 chars + 8 ## forms) */
    assert_non_null(strstr(err, "vocab_size 10 "));
    assert_non_null(strstr(err, "23"));
    assert_non_null(strstr(err, "5 special"));
    assert_non_null(strstr(err, "18 alphabet"));
    assert_non_null(strstr(err, "10 characters"));
    assert_non_null(strstr(err, "8 \"##\""));
    /* bad specials */
    static const char *const bad[] = {"[PAD]", ""};
    o = opts(100, 2);
    o.special = bad;
    o.n_special = 2;
    assert_int_equal(kwp_train(c, &o, &out, err, sizeof err), -1);
    assert_non_null(strstr(err, "special"));
    static const char *const bad2[] = {"a\nb"};
    o.special = bad2;
    o.n_special = 1;
    assert_int_equal(kwp_train(c, &o, &out, err, sizeof err), -1);
    kbuf_free(&out);
    kwp_counter_free(c);
}

static void test_utf8(void **state)
{
    (void)state;
    /* café 3, é 1, 中文 2, 😀😀 2: each code point is one char; byte order
     * puts ##a ##f ##é ##文 ##😀 then a c f é 中 文 😀. Merges: ##af (3),
     * ##afé (3; "##af" < "c"), café, then 中文 (2; E4 < F0), 😀😀. */
    kwp_counter *c = kwp_counter_new(0);
    kwp_counter_add(c, "caf\xc3\xa9", 5, 3);
    kwp_counter_add(c, "\xc3\xa9", 2, 1);
    kwp_counter_add(c, "\xe4\xb8\xad\xe6\x96\x87", 6, 2);
    kwp_counter_add(c, "\xf0\x9f\x98\x80\xf0\x9f\x98\x80", 8, 2);
    kwp_train_opts o = opts(100, 2);
    static const char *const exp[] = {
        SPEC5, "##a", "##f", "##\xc3\xa9", "##\xe6\x96\x87", "##\xf0\x9f\x98\x80", "a", "c", "f",
        "\xc3\xa9", "\xe4\xb8\xad", "\xe6\x96\x87", "\xf0\x9f\x98\x80", "##af", "##af\xc3\xa9",
        "caf\xc3\xa9", "\xe4\xb8\xad\xe6\x96\x87", "\xf0\x9f\x98\x80\xf0\x9f\x98\x80"};
    assert_vocab(c, &o, exp, N_OF(exp));
    /* max_piece_chars counts chars, not bytes: 中文 is 2 chars; after ##af
     * both (c,##af) and (##af,##é) would make 3 chars */
    o.max_piece_chars = 2;
    static const char *const exp2[] = {
        SPEC5, "##a", "##f", "##\xc3\xa9", "##\xe6\x96\x87", "##\xf0\x9f\x98\x80", "a", "c", "f",
        "\xc3\xa9", "\xe4\xb8\xad", "\xe6\x96\x87", "\xf0\x9f\x98\x80", "##af",
        "\xe4\xb8\xad\xe6\x96\x87", "\xf0\x9f\x98\x80\xf0\x9f\x98\x80"};
    assert_vocab(c, &o, exp2, N_OF(exp2));
    kwp_counter_free(c);

    /* invalid UTF-8: each undecodable byte is one char (0xFF; a truncated
     * 3-byte lead E4 B8; a lone continuation 80; a surrogate ED A0 80) */
    c = kwp_counter_new(0);
    kwp_counter_add(c, "a\xff" "b", 3, 2);
    o = opts(100, 2);
    static const char *const expi[] = {SPEC5, "##b", "##\xff", "a", "b", "\xff", "##\xff" "b",
                                       "a\xff" "b"};
    assert_vocab(c, &o, expi, N_OF(expi));
    kwp_counter_add(c, "\xe4\xb8", 2, 1);
    kwp_counter_add(c, "\x80\xed\xa0\x80x", 5, 1);
    kwp_counter_add(c, "\xf0\x9f\x98", 3, 1); /* truncated 4-byte */
    o.min_frequency = 1;
    char *got = train(c, &o);
    /* the pieces are whole lines, never split inside a line */
    assert_non_null(strstr(got, "\n\xe4\n"));
    assert_non_null(strstr(got, "\n##\xb8\n"));
    assert_non_null(strstr(got, "\n##\xa0\n"));
    assert_non_null(strstr(got, "\n\xe4\xb8\n"));
    assert_non_null(strstr(got, "\n\xf0\x9f\x98\n"));
    free(got);
    kwp_counter_free(c);
}

/* ---- determinism ------------------------------------------------------------ */

typedef struct wc { char w[32]; size_t len; uint64_t count; } wc;

/* n distinct random words over a small alphabet with random counts. */
static wc *random_words(size_t n, uint64_t seed)
{
    rng_t r = {seed};
    wc *v = calloc(n, sizeof *v);
    assert_non_null(v);
    static const char *const al[] = {"a", "e", "i", "o", "n", "s", "t", "r", "\xc3\xa9", "\xe4\xb8\xad"};
    for (size_t i = 0; i < n; i++) {
        /* distinct: a base-10 "serial" suffix makes every word unique */
        size_t len = 0, k = 1 + rng(&r) % 4;
        for (size_t j = 0; j < k; j++) {
            const char *s = al[rng(&r) % 10];
            memcpy(v[i].w + len, s, strlen(s));
            len += strlen(s);
        }
        for (size_t x = i + 1; x; x /= 10) v[i].w[len++] = (char)('0' + x % 10);
        v[i].len = len;
        v[i].count = 1 + rng(&r) % 50;
    }
    return v;
}

static void test_determinism(void **state)
{
    (void)state;
    enum { N = 3000 };
    wc *v = random_words(N, 42);
    kwp_train_opts o = opts(600, 2);
    o.limit_alphabet = 15;

    kwp_counter *a = kwp_counter_new(0);
    for (size_t i = 0; i < N; i++) kwp_counter_add(a, v[i].w, v[i].len, v[i].count);
    char *ra = train(a, &o);

    /* reverse order, each count given one occurrence at a time */
    kwp_counter *b = kwp_counter_new(0);
    for (size_t i = N; i-- > 0;)
        for (uint64_t k = 0; k < v[i].count; k++) kwp_counter_add(b, v[i].w, v[i].len, 1);
    char *rb = train(b, &o);
    assert_string_equal(ra, rb);

    /* split over two counters (a word's count may be split between them), merged */
    rng_t r = {7};
    kwp_counter *c1 = kwp_counter_new(0), *c2 = kwp_counter_new(0);
    for (size_t i = 0; i < N; i++) {
        uint64_t k = rng(&r) % (v[i].count + 1);
        kwp_counter_add(c1, v[(i * 7) % N].w, v[(i * 7) % N].len, 0); /* no-op */
        kwp_counter_add(c1, v[i].w, v[i].len, k);
        kwp_counter_add(c2, v[N - 1 - i].w, v[N - 1 - i].len, 0);
        kwp_counter_add(c2, v[i].w, v[i].len, v[i].count - k);
    }
    kwp_counter_merge(c2, c1);
    assert_int_equal(kwp_counter_size(c1), 0);
    assert_int_equal(kwp_counter_size(c2), N);
    char *rc = train(c2, &o);
    assert_string_equal(ra, rc);
    /* and the emptied counter is reusable */
    kwp_counter_add(c1, "x", 1, 1);
    assert_int_equal(kwp_counter_size(c1), 1);
    kwp_counter_merge(c1, c1); /* no-op */
    assert_int_equal(kwp_counter_size(c1), 1);

    /* training twice from one counter gives the same bytes */
    char *ra2 = train(a, &o);
    assert_string_equal(ra, ra2);

    free(ra);
    free(rb);
    free(rc);
    free(ra2);
    kwp_counter_free(a);
    kwp_counter_free(b);
    kwp_counter_free(c1);
    kwp_counter_free(c2);
    free(v);
}

/* ---- counter pruning -------------------------------------------------------- */

static void test_counter_pruning(void **state)
{
    (void)state;
    /* 5 frequent words (count 1000) first, then 100 rare ones (count 1) over
     * chars x y z that the frequent words do not use. max_words 16: each
     * prune drops every count-1 word, never a frequent one. */
    static const char *const freq[] = {"alpha", "beta", "gamma", "delta", "omega"};
    kwp_counter *c = kwp_counter_new(16);
    for (int i = 0; i < 5; i++) kwp_counter_add(c, freq[i], strlen(freq[i]), 1000);
    char w[8];
    for (int i = 0; i < 100; i++) {
        w[0] = (char)('x' + i % 3);
        w[1] = (char)('x' + i / 3 % 3);
        w[2] = (char)('x' + i / 9 % 3);
        w[3] = (char)('x' + i / 27 % 3);
        w[4] = (char)('x' + i / 81 % 3);
        kwp_counter_add(c, w, 5, 1);
        assert_true(kwp_counter_size(c) <= 16);
    }
    size_t n = kwp_counter_size(c);
    assert_true(n >= 5 && n <= 16);
    /* every rare word not held was pruned with its one occurrence */
    assert_int_equal(kwp_counter_pruned(c), 100 - (n - 5));
    /* the frequent words kept their full counts: with min_frequency 1000 they
     * merge to whole words, and nothing else merges */
    kwp_train_opts o = opts(10000, 1000);
    char *got = train(c, &o);
    for (int i = 0; i < 5; i++) {
        char line[16];
        snprintf(line, sizeof line, "\n%s\n", freq[i]);
        assert_non_null(strstr(got, line));
    }
    free(got);

    /* merging a pruned counter carries its pruned total */
    kwp_counter *d = kwp_counter_new(0);
    kwp_counter_add(d, "q", 1, 3);
    uint64_t pruned = kwp_counter_pruned(c);
    kwp_counter_merge(d, c);
    assert_int_equal(kwp_counter_pruned(d), pruned);
    assert_int_equal(kwp_counter_pruned(c), 0);
    assert_int_equal(kwp_counter_size(d), n + 1);
    kwp_counter_free(d);
    kwp_counter_free(c);

    /* the threshold only rises: max_words 8, so a prune must drop >= 1 word.
     * a..h have counts 5..12; n1 arrives: t = 5 drops a (5). n2 arrives: the
     * smallest count is n1's 1 but t stays 5: n1 goes (and nothing else <= 5
     * is left). n3 arrives: the smallest count is b's 6: t = 6, b goes. */
    c = kwp_counter_new(8);
    for (int i = 0; i < 8; i++) {
        w[0] = (char)('a' + i);
        kwp_counter_add(c, w, 1, (uint64_t)(5 + i));
    }
    kwp_counter_add(c, "n1", 2, 1); /* prune: smallest t with >= 1 word: t = 5 ('a' goes) */
    assert_int_equal(kwp_counter_size(c), 8);
    assert_int_equal(kwp_counter_pruned(c), 5);
    kwp_counter_add(c, "n2", 2, 7); /* full: t >= 5, 'n1' (1) goes */
    assert_int_equal(kwp_counter_pruned(c), 6);
    kwp_counter_add(c, "n3", 2, 9); /* full: t = 6: 'b' (6) goes */
    assert_int_equal(kwp_counter_pruned(c), 12);
    kwp_counter_add(c, "n3", 2, 1); /* present: no prune */
    assert_int_equal(kwp_counter_pruned(c), 12);
    assert_int_equal(kwp_counter_size(c), 8);
    kwp_counter_free(c);
}

/* ---- progress --------------------------------------------------------------- */

typedef struct prog { size_t calls, last_done, total; int monotone; } prog;
static void on_progress(size_t done, size_t total, void *ctx)
{
    prog *p = ctx;
    if (done != p->last_done + 1) p->monotone = 0;
    p->calls++;
    p->last_done = done;
    p->total = total;
}

static void test_progress(void **state)
{
    (void)state;
    kwp_counter *c = low_counter();
    kwp_train_opts o = opts(1000, 2);
    prog p = {0, 0, 0, 1};
    o.progress = on_progress;
    o.progress_ctx = &p;
    char *got = train(c, &o);
    assert_int_equal(p.calls, 12);
    assert_int_equal(p.last_done, 12);
    assert_int_equal(p.total, 1000 - 23);
    assert_true(p.monotone);
    free(got);
    /* empty counter: specials only */
    kwp_counter *e = kwp_counter_new(10);
    kwp_counter_add(e, "", 0, 5);
    kwp_counter_add(e, "zero", 4, 0);
    assert_int_equal(kwp_counter_size(e), 0);
    o.progress = NULL;
    static const char *const exp[] = {SPEC5};
    assert_vocab(e, &o, exp, N_OF(exp));
    kwp_counter_free(e);
    kwp_counter_free(c);
}

/* ---- larger corpus ---------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_zipf_corpus(void **state)
{
    (void)state;
    /* 200k distinct words of 1-5 syllables; syllable and word frequencies Zipf-like */
    static const char *const on[] = {"", "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p",
                                     "r", "s", "t", "v", "w", "st", "tr", "ch", "sh", "gr"};
    static const char *const nu[] = {"a", "e", "i", "o", "u", "ai", "ea", "ou", "y", "\xc3\xa9"};
    static const char *const co[] = {"", "", "n", "r", "s", "t", "l", "ng", "ck", "st"};
    enum { NS = 22 * 10 * 10, N = 200000 };
    rng_t r = {12345};
    kwp_counter *c = kwp_counter_new(4000000);
    char w[128];
    size_t made = 0;
    for (size_t tries = 0; made < N; tries++) {
        size_t k = 1 + rng(&r) % 5, len = 0;
        for (size_t j = 0; j < k; j++) {
            /* skewed syllable rank: uniform below 2^ceil(11u), u uniform */
            double u = (double)(rng(&r) >> 11) / 9007199254740992.0;
            size_t s = 1;
            for (double x = u * 11.0; x > 0 && s < NS; x -= 1.0) s = s * 2 > NS ? NS : s * 2;
            size_t id = (size_t)(rng(&r) % s);
            const char *p[3] = {on[id % 22], nu[id / 22 % 10], co[id / 220 % 10]};
            for (int q = 0; q < 3; q++) {
                memcpy(w + len, p[q], strlen(p[q]));
                len += strlen(p[q]);
            }
        }
        size_t before = kwp_counter_size(c);
        uint64_t count = 1 + 2000000 / (made + 1);
        kwp_counter_add(c, w, len, count);
        if (kwp_counter_size(c) > before) made++;
        assert_true(tries < 50 * (size_t)N);
    }
    assert_int_equal(kwp_counter_size(c), N);
    kwp_train_opts o = opts(8000, 2);
    double t0 = know_seconds();
    char *got = train(c, &o);
    kinfo("test_wptrain: 200k words -> 8000 pieces in %.2f s", know_seconds() - t0);
    /* 8000 lines, each non-empty, all distinct */
    size_t n = 0;
    char **v = malloc(8001 * sizeof *v);
    assert_non_null(v);
    for (char *s = got, *nl; *s; s = nl + 1) {
        nl = strchr(s, '\n');
        assert_non_null(nl);
        assert_true(nl > s);
        *nl = '\0';
        assert_true(n < 8001);
        v[n++] = s;
    }
    assert_int_equal(n, 8000);
    for (int i = 0; i < 5; i++) assert_string_equal(v[i], SPECIALS[i]);
    qsort(v, n, sizeof *v, cmp_str);
    for (size_t i = 1; i < n; i++) assert_true(strcmp(v[i - 1], v[i]) < 0);
    free(v);
    free(got);
    kwp_counter_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_low_lower_full),
        cmocka_unit_test(test_vocab_size_stops),
        cmocka_unit_test(test_min_frequency),
        cmocka_unit_test(test_max_piece_chars),
        cmocka_unit_test(test_specials_first_in_order),
        cmocka_unit_test(test_limit_alphabet),
        cmocka_unit_test(test_vocab_too_small),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_counter_pruning),
        cmocka_unit_test(test_progress),
        cmocka_unit_test(test_zipf_corpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
