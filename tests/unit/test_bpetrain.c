/* test_bpetrain.c: unit tests of byte-level BPE training: kwp_train's
 * no_prefix / initial_alphabet / merges options (text/wptrain.h),
 * kwp_counter_trim, and kvocab_train_bpe_run on a small store
 * (ingest/vocab_bpe.c).
 *
 * The hand-worked corpus {low:5, lower:2, newest:6, widest:3} without "##":
 *   symbols  low = l o w, lower = l o w e r, newest = n e w e s t,
 *            widest = w i d e s t
 *   pair counts: (e,s) 9, (s,t) 9, (w,e) 8, (l,o) 7, (o,w) 7, (n,e) 6,
 *                (e,w) 6, (w,i) (i,d) (d,e) 3, (e,r) 2
 *   merges (most frequent first; ties: the smaller pair by bytes of the left
 *   piece, then of the right):
 *     1 e s (9; ties with (s,t): "e" < "s")   2 es t (9)
 *     3 l o (7; ties with (o,w): "l" < "o")   4 lo w (7)
 *     5 e w (6; (e,w) (n,e) (w,est) tie: "e" < "n" < "w")
 *     6 ew est (6; "ew" < "n")   7 n ewest (6)
 *     8 d est (3; "d" < "i" < "w")   9 i dest (3)   10 w idest (3)
 *     11 e r (2; "e" < "low")   12 low er (2)
 *   vocabulary: the alphabet d e i l n o r s t w, then es est lo low ew
 *   ewest newest dest idest widest er lower. */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ingest/ingest.h"
#include "store/store.h"
#include "text/bpe.h"
#include "text/wptrain.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

typedef struct rng_t { uint64_t s; } rng_t;
static uint64_t rng(rng_t *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

static kwp_train_opts bpe_opts(size_t vocab_size, kbuf *merges)
{
    kwp_train_opts o = {0};
    o.vocab_size = vocab_size;
    o.min_frequency = 2;
    o.no_prefix = 1;
    o.merges = merges;
    return o;
}

/* Trains; returns the vocab text (caller frees). */
static char *train(const kwp_counter *c, const kwp_train_opts *o)
{
    kbuf out = {0};
    char err[512];
    int rc = kwp_train(c, o, &out, err, sizeof err);
    if (rc) fprintf(stderr, "kwp_train: %s\n", err);
    assert_int_equal(rc, 0);
    kbuf_reserve(&out, 0);
    return out.data;
}

/* The lines of exp[0..n) joined, each with its '\n'. Caller frees. */
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

static kwp_counter *low_counter(void)
{
    kwp_counter *c = kwp_counter_new(1000);
    kwp_counter_add(c, "low", 3, 5);
    kwp_counter_add(c, "lower", 5, 2);
    kwp_counter_add(c, "newest", 6, 6);
    kwp_counter_add(c, "widest", 6, 3);
    return c;
}

/* ---- kwp_train without "##" ---------------------------------------------- */

static void test_no_prefix_low(void **state)
{
    (void)state;
    kwp_counter *c = low_counter();
    kbuf m = {0};
    kwp_train_opts o = bpe_opts(1000, &m);
    static const char *const vocab[] = {"d", "e", "i", "l", "n", "o", "r", "s", "t", "w", "es", "est", "lo",
                                        "low", "ew", "ewest", "newest", "dest", "idest", "widest", "er", "lower"};
    static const char *const merges[] = {"e s", "es t", "l o", "lo w", "e w", "ew est", "n ewest", "d est",
                                         "i dest", "w idest", "e r", "low er"};
    char *got = train(c, &o), *want = lines(vocab, N_OF(vocab)), *wm = lines(merges, N_OF(merges));
    assert_string_equal(got, want);
    assert_non_null(m.data);
    assert_string_equal(m.data, wm);
    free(got);
    free(want);
    free(wm);

    /* vocab_size stops the merges: 10 + 4 pieces, 4 merges */
    kbuf_clear(&m);
    o.vocab_size = 14;
    got = train(c, &o);
    want = lines(vocab, 14);
    wm = lines(merges, 4);
    assert_string_equal(got, want);
    assert_string_equal(m.data, wm);
    free(got);
    free(want);
    free(wm);

    /* min_frequency 3: the last two merges (count 2) are not made */
    kbuf_clear(&m);
    o.vocab_size = 1000;
    o.min_frequency = 3;
    got = train(c, &o);
    want = lines(vocab, N_OF(vocab) - 2);
    assert_string_equal(got, want);
    free(got);
    free(want);
    kbuf_free(&m);
    kwp_counter_free(c);
}

/* '#' is an ordinary char without the prefix: "# #" makes "##", and a merge
 * with a right side "##..." keeps its '#'s. */
static void test_no_prefix_hashes(void **state)
{
    (void)state;
    kwp_counter *c = kwp_counter_new(0);
    kwp_counter_add(c, "a##", 3, 5);
    kbuf m = {0};
    kwp_train_opts o = bpe_opts(100, &m);
    char *got = train(c, &o);
    /* (#,#) 5 and (a,#) 5 tie: "#" < "a" */
    assert_string_equal(got, "#\na\n##\na##\n");
    assert_string_equal(m.data, "# #\na ##\n");
    free(got);
    kbuf_free(&m);
    kwp_counter_free(c);
}

/* ---- initial alphabet --------------------------------------------------------- */

static void test_initial_alphabet(void **state)
{
    (void)state;
    kwp_counter *c = kwp_counter_new(0);
    kwp_counter_add(c, "abab", 4, 3);
    /* z, é and € occur in no word: still in the alphabet, in byte order */
    static const uint32_t init[] = {0x20AC, 'z', 0xE9, 'a'};
    kbuf m = {0};
    kwp_train_opts o = bpe_opts(100, &m);
    o.initial_alphabet = init;
    o.n_initial_alphabet = N_OF(init);
    char *got = train(c, &o);
    assert_string_equal(got, "a\nb\nz\n\xC3\xA9\n\xE2\x82\xAC\nab\nabab\n");
    assert_string_equal(m.data, "a b\nab ab\n");
    free(got);

    /* limit_alphabet keeps the initial chars first: b (count 6) goes, and
     * with it every pair that holds it */
    kbuf_clear(&m);
    o.limit_alphabet = 4;
    got = train(c, &o);
    assert_string_equal(got, "a\nz\n\xC3\xA9\n\xE2\x82\xAC\n");
    assert_int_equal(m.len, 0);
    free(got);

    /* the 256 byte chars of GPT-2 as initial alphabet: exactly 256 pieces,
     * in code point order, even with an empty corpus */
    uint32_t bytes[256];
    for (unsigned b = 0; b < 256; b++) bytes[b] = kbpe_byte_char((unsigned char)b);
    kwp_counter *e = kwp_counter_new(0);
    o = bpe_opts(300, NULL);
    o.initial_alphabet = bytes;
    o.n_initial_alphabet = 256;
    got = train(e, &o);
    size_t n = 0;
    uint32_t prev = 0;
    for (const char *p = got; *p; n++) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        /* decode the one code point of the line */
        const unsigned char *u = (const unsigned char *)p;
        uint32_t cp = u[0] < 0x80 ? u[0] : (uint32_t)(u[0] & 0x1F) << 6 | (u[1] & 0x3F);
        assert_int_equal((size_t)(nl - p), cp < 0x80 ? 1u : 2u);
        if (n) assert_true(cp > prev);
        prev = cp;
        p = nl + 1;
    }
    assert_int_equal(n, 256);
    free(got);

    /* not a scalar value: refused, named */
    static const uint32_t bad[] = {'a', 0xD800};
    o.initial_alphabet = bad;
    o.n_initial_alphabet = 2;
    kbuf out = {0};
    char err[256];
    assert_int_equal(kwp_train(e, &o, &out, err, sizeof err), -1);
    assert_non_null(strstr(err, "U+D800"));
    kbuf_free(&out);
    kbuf_free(&m);
    kwp_counter_free(c);
    kwp_counter_free(e);
}

/* ---- kwp_counter_trim: order does not matter ----------------------------------- */

static void test_counter_trim_order(void **state)
{
    (void)state;
    enum { N = 4000, BATCHES = 4, MAX = 500 };
    /* words over 4 letters, Zipf-like counts */
    char (*w)[12] = malloc(N * sizeof *w);
    uint64_t *cnt = malloc(N * sizeof *cnt);
    rng_t r = {99};
    for (size_t i = 0; i < N; i++) {
        size_t len = 2 + rng(&r) % 8;
        for (size_t k = 0; k < len; k++) w[i][k] = "abcd"[rng(&r) % 4];
        w[i][len] = '\0';
        cnt[i] = 1 + 2000 / (1 + i % 997);
    }
    kwp_counter *a = kwp_counter_new(0), *b = kwp_counter_new(0), *p1 = kwp_counter_new(0),
                *p2 = kwp_counter_new(0);
    for (size_t bt = 0; bt < BATCHES; bt++) {
        size_t lo = bt * N / BATCHES, hi = (bt + 1) * N / BATCHES;
        for (size_t i = lo; i < hi; i++) kwp_counter_add(a, w[i], strlen(w[i]), cnt[i]);
        kwp_counter_trim(a, MAX);
        assert_true(kwp_counter_size(a) <= MAX);
        /* the same batch in reverse, one occurrence at a time, over two
         * counters merged in the other order */
        for (size_t i = hi; i-- > lo;)
            for (uint64_t k = 0; k < cnt[i]; k++) kwp_counter_add((i + k) % 3 ? p1 : p2, w[i], strlen(w[i]), 1);
        kwp_counter_merge(b, p2);
        kwp_counter_merge(b, p1);
        kwp_counter_trim(b, MAX);
    }
    assert_int_equal(kwp_counter_size(a), kwp_counter_size(b));
    assert_true(kwp_counter_pruned(a) > 0);
    assert_true(kwp_counter_pruned(a) == kwp_counter_pruned(b));
    kwp_train_opts o = bpe_opts(200, NULL);
    char *ra = train(a, &o), *rb = train(b, &o);
    assert_string_equal(ra, rb);
    kwp_counter_trim(a, 0); /* no-op */
    assert_int_equal(kwp_counter_size(a), kwp_counter_size(b));
    free(ra);
    free(rb);
    kwp_counter_free(a);
    kwp_counter_free(b);
    kwp_counter_free(p1);
    kwp_counter_free(p2);
    free(w);
    free(cnt);
}

/* ---- kvocab_train_bpe_run: the stored vocabulary, any thread count ---------------- */

typedef struct fx {
    char dir[64], path[96];
} fx;

static int fx_setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/kiln-bpetrain-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->path, sizeof f->path, "%s/t.db", f->dir);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    fx *f = *state;
    char p[128];
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < N_OF(suffix); i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* A store of ndocs documents of a few sentences of random words (some with
 * non-ASCII letters, digits, punctuation); returns how many were stored
 * (duplicates are not). */
static uint64_t make_store(const char *path, size_t ndocs)
{
    static const char *const pool[] = {"the", "of", "and", "kiln", "bakes", "bread", "don't", "we'll", "3.14",
                                       "2026", "caf\xC3\xA9", "na\xC3\xAFve", "\xE6\x97\xA5\xE6\x9C\xAC",
                                       "\xF0\x9F\x98\x80", "--", "(x)", "Hello", "WORLD", "  ", "\t"};
    char err[256];
    kstore *s;
    assert_int_equal(kstore_open(path, KSTORE_CREATE, &s, err, sizeof err), 0);
    uint8_t h[KHASH_LEN];
    khash128("src", 3, h);
    int64_t src;
    int already;
    assert_int_equal(kstore_source_begin(s, "/src", h, 1, &src, &already), 0);
    assert_int_equal(kstore_begin(s), 0);
    rng_t r = {2026};
    ksource_delta dl = {0};
    for (size_t d = 0; d < ndocs; d++) {
        kbuf t = {0};
        uint32_t ends[8];
        size_t ns = 1 + rng(&r) % 5;
        for (size_t k = 0; k < ns; k++) {
            if (k) kbuf_putc(&t, '\n');
            size_t nw = 1 + rng(&r) % 12;
            for (size_t i = 0; i < nw; i++) {
                if (i) kbuf_putc(&t, ' ');
                kbuf_puts(&t, pool[rng(&r) % N_OF(pool)]);
                if (rng(&r) % 4 == 0) kbuf_printf(&t, "%c%c", 'a' + (int)(rng(&r) % 26), 'a' + (int)(rng(&r) % 26));
            }
            kbuf_putc(&t, '.');
            ends[k] = (uint32_t)t.len;
        }
        kdoc doc = {0};
        doc.source_id = src;
        doc.text = t.data;
        doc.text_len = t.len;
        doc.sent_ends = ends;
        doc.n_sentences = ns;
        khash128(t.data, t.len, doc.hash);
        int inserted;
        assert_int_equal(kstore_doc_insert(s, &doc, &inserted), 0);
        if (inserted) {
            dl.documents++;
            dl.sentences += (int64_t)ns;
            dl.text_bytes += (int64_t)t.len;
        }
        kbuf_free(&t);
    }
    assert_int_equal(kstore_source_add(s, src, &dl), 0);
    assert_int_equal(kstore_commit(s), 0);
    kstore_close(s);
    return (uint64_t)dl.documents;
}

/* The stored vocab.json and merges of name, concatenated (caller frees). */
static char *stored(const char *path, const char *name, int64_t *size)
{
    char err[256];
    kstore *s;
    assert_int_equal(kstore_open(path, KSTORE_READONLY, &s, err, sizeof err), 0);
    kvocab_row r;
    kbuf pieces = {0}, meta = {0}, both = {0};
    assert_int_equal(kstore_vocab_get(s, name, &r, &pieces, &meta), 0);
    assert_int_equal(r.kind, KVOCAB_BPE);
    *size = r.size;
    kbuf_append(&both, pieces.data, pieces.len);
    kbuf_puts(&both, "\n--\n");
    kbuf_append(&both, r.merges, r.merges_len);
    /* it loads, the bytes first, <|endoftext|> last */
    kbpe_vocab *v;
    assert_int_equal(kbpe_vocab_load(pieces.data, pieces.len, r.merges, r.merges_len, &v, err, sizeof err), 0);
    assert_int_equal(kbpe_vocab_size(v), (size_t)r.size);
    assert_int_equal(kbpe_vocab_eot(v), r.size - 1);
    /* ids 0..255: the byte chars by code point */
    uint32_t prev = 0;
    for (unsigned id = 0; id < 256; id++) {
        size_t len;
        const unsigned char *u = (const unsigned char *)kbpe_vocab_piece(v, id, &len);
        assert_non_null(u);
        assert_int_equal(len, u[0] < 0x80 ? 1u : 2u);
        uint32_t cp = u[0] < 0x80 ? u[0] : (uint32_t)(u[0] & 0x1F) << 6 | (u[1] & 0x3F);
        int is_byte_char = 0;
        for (unsigned b = 0; b < 256; b++) is_byte_char |= kbpe_byte_char((unsigned char)b) == cp;
        assert_true(is_byte_char);
        if (id) assert_true(cp > prev);
        prev = cp;
    }
    assert_true(kbpe_vocab_nmerges(v) >= (size_t)r.size - 257);
    kbpe_vocab_free(v);
    kbuf_free(&pieces);
    kbuf_free(&meta);
    kstore_close(s);
    return both.data;
}

static void test_store_threads(void **state)
{
    fx *f = *state;
    uint64_t ndocs = make_store(f->path, 1500);
    assert_true(ndocs > 1000);
    static const int threads[] = {1, 2, 3};
    static const size_t maxw[] = {0, 300};
    for (size_t m = 0; m < N_OF(maxw); m++) {
        char *first = NULL;
        for (size_t t = 0; t < N_OF(threads); t++) {
            char name[32];
            snprintf(name, sizeof name, "b%zu-%d", m, threads[t]);
            kvocab_train_opts o = {0};
            o.bpe = 1;
            o.size = 400;
            o.min_frequency = 2;
            o.max_words = maxw[m];
            o.threads = threads[t];
            o.name = name;
            kvocab_train_summary sum;
            assert_int_equal(kvocab_train_run(f->path, &o, &sum), 0);
            assert_true(sum.bpe);
            assert_int_equal(sum.size, 400);
            assert_int_equal(sum.documents, ndocs);
            assert_true(sum.merges >= 400 - 257);
            if (maxw[m]) {
                assert_true(sum.pruned > 0);
                assert_true(sum.distinct_words <= maxw[m]);
            } else {
                assert_int_equal(sum.pruned, 0);
            }
            int64_t size;
            char *got = stored(f->path, name, &size);
            assert_int_equal(size, 400);
            if (!first) first = got;
            else {
                assert_string_equal(first, got);
                free(got);
            }
        }
        free(first);
    }
    /* sizes below 257 are refused */
    kvocab_train_opts o = {0};
    o.bpe = 1;
    o.size = 256;
    o.threads = 1;
    kvocab_train_summary sum;
    assert_int_equal(kvocab_train_run(f->path, &o, &sum), EX_USAGE);
    /* the smallest: the bytes and <|endoftext|>, no merge */
    o.size = 257;
    o.name = "smallest";
    assert_int_equal(kvocab_train_run(f->path, &o, &sum), 0);
    assert_int_equal(sum.size, 257);
    assert_int_equal(sum.merges, 0);
    int64_t size;
    free(stored(f->path, "smallest", &size));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_prefix_low),
        cmocka_unit_test(test_no_prefix_hashes),
        cmocka_unit_test(test_initial_alphabet),
        cmocka_unit_test(test_counter_trim_order),
        cmocka_unit_test_setup_teardown(test_store_threads, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
