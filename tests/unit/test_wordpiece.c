/* test_wordpiece.c: unit tests of text/wordpiece: vocabulary loading, the
 * BasicTokenizer rules one by one, WordPiece matching, special tokens, word
 * starts, decoding, and hostile input; the accent modes (strip_accents), ICU
 * word starts and the accent census (issue #20). Expected ids were worked out
 * by hand against examples/vocab/bert-base-{uncased,cased}-vocab.txt (line
 * number - 1); NFD forms with Python's unicodedata. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/wordpiece.h"

static kwp_vocab *load_file(const char *name, int cased)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/examples/vocab/%s", KILN_SOURCE_DIR, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    kbuf b = {0};
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) kbuf_append(&b, buf, n);
    fclose(f);
    kwp_vocab *v;
    char err[256];
    assert_int_equal(kwp_vocab_load(b.data, b.len, cased, &v, err, sizeof err), 0);
    kbuf_free(&b);
    return v;
}

static kwp_vocab *uncased, *cased;

static int setup(void **state)
{
    (void)state;
    uncased = load_file("bert-base-uncased-vocab.txt", 0);
    cased = load_file("bert-base-cased-vocab.txt", 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kwp_vocab_free(uncased);
    kwp_vocab_free(cased);
    return 0;
}

/* Encodes text and compares with the pieces joined by spaces. */
static void expect_pieces(kwp_vocab *v, const char *text, size_t len, const char *want)
{
    kwp_tok *t = kwp_tok_new(v, 0);
    kwp_ids ids = {0};
    kwp_encode(t, text, len, &ids);
    kbuf got = {0};
    for (size_t i = 0; i < ids.n; i++) {
        size_t l;
        const char *p = kwp_vocab_piece(v, ids.ids[i], &l);
        if (i) kbuf_putc(&got, ' ');
        kbuf_append(&got, p, l);
    }
    if (strcmp(got.data ? got.data : "", want) != 0)
        fail_msg("text [%.*s]: got [%s], want [%s]", (int)len, text, got.data ? got.data : "", want);
    kbuf_free(&got);
    kwp_ids_free(&ids);
    kwp_tok_free(t);
}
#define EXPECT(v, text, want) expect_pieces(v, text, strlen(text), want)

static void test_vocab_load(void **state)
{
    (void)state;
    assert_int_equal(kwp_vocab_size(uncased), 30522);
    assert_int_equal(kwp_vocab_size(cased), 28996);
    assert_int_equal(kwp_vocab_special(uncased, KWP_PAD), 0);
    assert_int_equal(kwp_vocab_special(uncased, KWP_UNK), 100);
    assert_int_equal(kwp_vocab_special(uncased, KWP_CLS), 101);
    assert_int_equal(kwp_vocab_special(uncased, KWP_SEP), 102);
    assert_int_equal(kwp_vocab_special(uncased, KWP_MASK), 103);
    assert_int_equal(kwp_vocab_id(uncased, "hello", 5), 7592);
    assert_int_equal(kwp_vocab_id(uncased, "##able", 6), 3085);
    assert_int_equal(kwp_vocab_id(uncased, "no-such-piece", 13), -1);
    assert_true(kwp_vocab_is_continuation(uncased, 3085));
    assert_false(kwp_vocab_is_continuation(uncased, 7592));
    kbuf t = {0};
    kwp_vocab_text(uncased, &t);
    size_t lines = 0;
    for (size_t i = 0; i < t.len; i++) lines += t.data[i] == '\n';
    assert_int_equal(lines, 30522);
    assert_memory_equal(t.data, "[PAD]\n[unused0]\n", 16);
    kbuf_free(&t);
}

static void test_vocab_errors(void **state)
{
    (void)state;
    kwp_vocab *v;
    char err[256];
    assert_int_equal(kwp_vocab_load("a\nb\n", 4, 0, &v, err, sizeof err), -1);
    assert_non_null(strstr(err, "[UNK]"));
    assert_int_equal(kwp_vocab_load("", 0, 0, &v, err, sizeof err), -1);
    /* CRLF line ends, no final newline, duplicates: the last one wins */
    assert_int_equal(kwp_vocab_load("[UNK]\r\nab\r\nab\r\nc", 16, 0, &v, err, sizeof err), 0);
    assert_int_equal(kwp_vocab_size(v), 4);
    assert_int_equal(kwp_vocab_id(v, "ab", 2), 2);
    assert_int_equal(kwp_vocab_id(v, "c", 1), 3);
    kwp_vocab_free(v);
}

static void test_basic_rules(void **state)
{
    (void)state;
    EXPECT(uncased, "Hello, World!", "hello , world !");
    EXPECT(uncased, "unaffable", "una ##ffa ##ble");
    EXPECT(uncased, "don't", "don ' t");
    EXPECT(uncased, "naïve café", "naive cafe");            /* accents stripped */
    EXPECT(uncased, "nai\xcc\x88ve", "naive");             /* decomposed too */
    EXPECT(cased, "naïve café", "na ##ï ##ve café");
    EXPECT(uncased, "  \t\n  ", "");
    EXPECT(uncased, "a\x01" "b\x7f" "c", "abc");            /* controls dropped */
    EXPECT(uncased, "a\xe2\x80\x8b" "b", "ab");             /* U+200B (Cf) dropped */
    EXPECT(uncased, "a\xc2\xa0" "b", "a b");                /* NBSP (Zs) separates */
    EXPECT(uncased, "a\xe2\x80\xa8" "b", "a b");            /* U+2028 splits like str.split() */
    EXPECT(uncased, "北京", "北 京");                         /* CJK: a token each */
    EXPECT(uncased, "a«b»", "a « b »");                     /* Unicode punctuation */
    EXPECT(uncased, "$5", "$ 5");                           /* ASCII symbols are punctuation */
    EXPECT(uncased, "ΟΔΟΣ", "ο ##δ ##ο ##σ");               /* no final sigma (per-char lower) */
    EXPECT(uncased, "İ", "i");
}

static void test_unk_rules(void **state)
{
    (void)state;
    char w[202];
    memset(w, 'a', sizeof w);
    {   /* exactly 100 chars: matched (decodes back to the word), 101: [UNK] */
        kwp_tok *t0 = kwp_tok_new(uncased, 0);
        kwp_ids x = {0};
        kwp_encode(t0, w, 100, &x);
        assert_true(x.n > 1);
        kbuf d = {0};
        kwp_decode(uncased, x.ids, x.n, &d);
        assert_int_equal(d.len, 100);
        assert_memory_equal(d.data, w, 100);
        kbuf_free(&d);
        kwp_ids_free(&x);
        kwp_tok_free(t0);
    }
    expect_pieces(uncased, w, 101, "[UNK]");                 /* > 100 chars */
    EXPECT(uncased, "☃", "[UNK]");                          /* no piece */
    EXPECT(uncased, "a☃", "[UNK]");                         /* a gap anywhere: the whole word */
    kwp_tok *t = kwp_tok_new(uncased, 200);                  /* Google's limit */
    kwp_ids ids = {0};
    kwp_encode(t, w, 150, &ids);
    assert_true(ids.n > 1);
    kwp_ids_free(&ids);
    kwp_tok_free(t);
}

static void test_special_tokens(void **state)
{
    (void)state;
    EXPECT(uncased, "[MASK]", "[MASK]");
    EXPECT(uncased, "hello[SEP]world", "hello [SEP] world");
    EXPECT(uncased, "[mask]", "[ mask ]");                  /* exact case only */
    EXPECT(cased, "[MA\xe2\x80\x8bSK]", "[MASK]");          /* never_split after cleaning */
    EXPECT(uncased, "[MA\xe2\x80\x8bSK]", "[ mask ]");
}

static void test_word_starts(void **state)
{
    (void)state;
    kwp_tok *t = kwp_tok_new(uncased, 0);
    kwp_ids ids = {0};
    kwp_encode(t, "unaffable day [MASK]", 20, &ids);
    assert_int_equal(ids.n, 5);
    uint8_t want[] = {1, 0, 0, 1, 1};
    assert_memory_equal(ids.word_start, want, 5);
    kwp_ids_free(&ids);
    kwp_tok_free(t);
}

static void test_decode(void **state)
{
    (void)state;
    uint32_t ids[] = {7592, 1010, 2088, 999, 2123, 1005, 1056, 14477, 20961, 3468};
    kbuf out = {0};
    kwp_decode(uncased, ids, 10, &out);
    assert_string_equal(out.data, "hello, world! don't unaffable");
    kbuf_free(&out);
}

static void test_basic_only(void **state)
{
    (void)state;
    kwp_tok *t = kwp_tok_new(uncased, 0);
    kbuf words = {0};
    void cb(const char *w, size_t n, void *ctx);
    kwp_basic(t, "Héllo, WORLD 北京", 20, cb, &words);
    assert_string_equal(words.data, "hello|,|world|北|京|");
    kbuf_free(&words);
    kwp_tok_free(t);
}
void cb(const char *w, size_t n, void *ctx)
{
    kbuf_append(ctx, w, n);
    kbuf_putc(ctx, '|');
}

/* ---- accents (strip_accents) ------------------------------------------------------ */

/* The basic tokens of text under a vocabulary mode, each followed by '|'. */
static void expect_basic(int mode, const char *text, const char *want)
{
    kwp_vocab *v;
    char err[256];
    assert_int_equal(kwp_vocab_load("[UNK]\n", 6, mode, &v, err, sizeof err), 0);
    kwp_tok *t = kwp_tok_new(v, 0);
    kbuf words = {0};
    kwp_basic(t, text, strlen(text), cb, &words);
    if (strcmp(words.data ? words.data : "", want) != 0)
        fail_msg("mode %d, text [%s]: got [%s], want [%s]", mode, text, words.data ? words.data : "", want);
    kbuf_free(&words);
    kwp_tok_free(t);
    kwp_vocab_free(v);
}

/* NFD of 인간은 without Mn: conjoining jamo */
#define JAMO_INGANEUN "\xe1\x84\x8b\xe1\x85\xb5\xe1\x86\xab\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xab\xe1\x84\x8b\xe1\x85\xb3\xe1\x86\xab"

static void test_accent_modes(void **state)
{
    (void)state;
    const char *text = "인간은 ではない Café है";
    /* uncased, strip_accents None: BERT's damage (jamo, voicing mark dropped, vowel sign dropped) */
    expect_basic(0, text, JAMO_INGANEUN "|てはない|cafe|ह|");
    expect_basic(KWP_STRIP_ACCENTS, text, JAMO_INGANEUN "|てはない|cafe|ह|");
    /* uncased, strip_accents false: lowercase only, letters intact */
    expect_basic(KWP_KEEP_ACCENTS, text, "인간은|ではない|café|है|");
    /* cased: nothing stripped unless asked */
    expect_basic(KWP_CASED, text, "인간은|ではない|Café|है|");
    expect_basic(KWP_CASED | KWP_KEEP_ACCENTS, text, "인간은|ではない|Café|है|");
    expect_basic(KWP_CASED | KWP_STRIP_ACCENTS, text, JAMO_INGANEUN "|てはない|Cafe|ह|");
    /* ASCII and punctuation are the same in every mode; a word of marks alone vanishes when stripping */
    expect_basic(KWP_KEEP_ACCENTS, "Don't \xcc\x81", "don|'|t|\xcc\x81|");
    expect_basic(0, "Don't \xcc\x81", "don|'|t|");
    /* never_split still applies when cased and stripping */
    expect_basic(KWP_CASED | KWP_STRIP_ACCENTS, "[MA\xe2\x80\x8bSK] é", "[MASK]|e|");

    kwp_vocab *v;
    char err[256];
    assert_int_equal(kwp_vocab_load("[UNK]\n", 6, KWP_STRIP_ACCENTS | KWP_KEEP_ACCENTS, &v, err, sizeof err), -1);
    assert_non_null(strstr(err, "mode"));
    assert_int_equal(kwp_vocab_load("[UNK]\n", 6, 64, &v, err, sizeof err), -1);
    static const int modes[][2] = {{0, 1}, {KWP_CASED, 0}, {KWP_KEEP_ACCENTS, 0}, {KWP_STRIP_ACCENTS, 1},
                                   {KWP_CASED | KWP_STRIP_ACCENTS, 1}, {KWP_CASED | KWP_KEEP_ACCENTS, 0}};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        assert_int_equal(kwp_vocab_load("[UNK]\n", 6, modes[i][0], &v, err, sizeof err), 0);
        assert_int_equal(kwp_vocab_strip_accents(v), modes[i][1]);
        assert_int_equal(kwp_vocab_mode(v), modes[i][0]);
        assert_int_equal(kwp_vocab_cased(v), modes[i][0] & KWP_CASED);
        kwp_vocab_free(v);
    }
}

/* Real vocabularies under the other accent settings: bert-base-uncased
 * holds only stripped forms, so keeping accents turns で and é into [UNK]
 * (a vocabulary must be used with the setting it was made with); cased
 * with stripping finds the stripped forms in bert-base-cased. */
static void test_accent_modes_ids(void **state)
{
    (void)state;
    kwp_vocab *keep = load_file("bert-base-uncased-vocab.txt", KWP_KEEP_ACCENTS);
    EXPECT(uncased, "では Café", "て ##は cafe");
    EXPECT(keep, "では Café", "[UNK] [UNK]");
    EXPECT(keep, "ては CAFE", "て ##は cafe");
    kwp_vocab_free(keep);
    kwp_vocab *strip = load_file("bert-base-cased-vocab.txt", KWP_CASED | KWP_STRIP_ACCENTS);
    EXPECT(cased, "Café Ångström", "Café Å ##ng ##st ##röm");
    EXPECT(strip, "Café Ångström", "Cafe Ang ##strom");
    kwp_vocab_free(strip);
}

/* ---- ICU word starts --------------------------------------------------------------- */

static kwp_vocab *small_vocab(int mode)
{
    static const char pieces[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n人\n間\nは\n、\n自\n由\nで\n##ある\n。\n"
                                 "か\n##い\n##る\nが\ndon\n'\nt\nstop\n인간은\n태어날\n";
    kwp_vocab *v;
    char err[256];
    assert_int_equal(kwp_vocab_load(pieces, strlen(pieces), mode, &v, err, sizeof err), 0);
    return v;
}

/* Encodes text; the pieces, with '|' before each word start. */
static void expect_words(kwp_vocab *v, const char *text, const char *want)
{
    kwp_tok *t = kwp_tok_new(v, 0);
    kwp_ids ids = {0};
    kwp_encode(t, text, strlen(text), &ids);
    kbuf got = {0};
    for (size_t i = 0; i < ids.n; i++) {
        size_t l;
        const char *p = kwp_vocab_piece(v, ids.ids[i], &l);
        if (i) kbuf_putc(&got, ' ');
        if (ids.word_start[i]) kbuf_putc(&got, '|');
        kbuf_append(&got, p, l);
    }
    if (strcmp(got.data ? got.data : "", want) != 0)
        fail_msg("text [%s]: got [%s], want [%s]", text, got.data ? got.data : "", want);
    kbuf_free(&got);
    kwp_ids_free(&ids);
    kwp_tok_free(t);
}

static void test_icu_words(void **state)
{
    (void)state;
    kwp_vocab *bert = small_vocab(KWP_KEEP_ACCENTS), *icu = small_vocab(KWP_KEEP_ACCENTS | KWP_ICU_WORDS);
    /* BERT: each ideograph a word; ICU (its Japanese dictionary): 人間, 自由 are words, and
     * ある after で starts one though it is a ## piece */
    expect_words(bert, "人間は、自由である。", "|人 |間 |は |、 |自 |由 |で ##ある |。");
    expect_words(icu, "人間は、自由である。", "|人 間 |は |、 |自 由 |で |##ある |。");
    /* the same ids whatever the words */
    expect_words(icu, " 人間は、 [MASK]間", "|人 間 |は |、 |[MASK] |間");
    /* spaces, Hangul and English: ICU's words are BERT's but for the apostrophe */
    expect_words(icu, "인간은 태어날", "|인간은 |태어날");
    expect_words(bert, "don't stop", "|don |' |t |stop");
    expect_words(icu, "don't stop", "|don ' t |stop");
    /* a sentence starting with a special token, and nothing but one */
    expect_words(icu, "[MASK]", "|[MASK]");
    kwp_vocab_free(bert);
    kwp_vocab_free(icu);
    /* accents stripped: が loses its mark, so the positions inside the basic token are
     * unknown: its first piece follows ICU (a boundary before が), the rest keep BERT's flags */
    kwp_vocab *strip = small_vocab(KWP_ICU_WORDS);
    expect_words(strip, "人間がいる", "|人 間 |か ##い ##る");
    kwp_vocab_free(strip);
}

static void test_icu_words_hostile(void **state)
{
    (void)state;
    kwp_vocab *icu = load_file("bert-base-uncased-vocab.txt", KWP_ICU_WORDS);
    kwp_tok *t = kwp_tok_new(icu, 0);
    kwp_vocab *plain = uncased;
    kwp_tok *t0 = kwp_tok_new(plain, 0);
    kwp_ids a = {0}, b = {0};
    size_t n = 1 << 18;
    char *s = malloc(n);
    srand(7);
    for (int round = 0; round < 4; round++) {
        for (size_t i = 0; i < n; i++) s[i] = (char)(rand() & 0xff);
        if (round == 1) memcpy(s, "\xe4\xba\xba\xe9\x96\x93 [MASK] [SEP]", 18);
        if (round == 2) for (size_t i = 0; i + 3 <= n; i += 3) memcpy(s + i, "\xe3\x81\xa7", 3); /* で x n/3 */
        if (round == 3) memset(s, 'a', n);
        kwp_ids_clear(&a);
        kwp_ids_clear(&b);
        kwp_encode(t, s, n, &a);
        kwp_encode(t0, s, n, &b);
        /* ICU words change word starts only */
        assert_int_equal(a.n, b.n);
        assert_memory_equal(a.ids, b.ids, a.n * sizeof *a.ids);
        if (a.n) assert_int_equal(a.word_start[0], 1);
    }
    free(s);
    kwp_ids_free(&a);
    kwp_ids_free(&b);
    kwp_tok_free(t);
    kwp_tok_free(t0);
    kwp_vocab_free(icu);
}

/* ---- the accent census ------------------------------------------------------------ */

static const kwp_script_count *find_script(const kwp_script_count *x, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(x[i].name, name)) return &x[i];
    fail_msg("no script %s in the census", name);
    return NULL;
}

static void test_census(void **state)
{
    (void)state;
    kwp_census *c = kwp_census_new();
    /* Hangul: 2 syllables, both decompose; Hiragana: で decomposes, は な い do not; Latin:
     * é decomposes, e + U+0301 counts the mark as a dropped Latin letter; Devanagari:
     * हिन्दी has 6 letters (ि ी are Mc, kept; ् is Mn, dropped); digits, spaces and
     * punctuation are no letters; Han does not change */
    const char *text = "인간 ではない café e\xcc\x81 हिन्दी 123, 北京!";
    kwp_census_add(c, text, strlen(text));
    kwp_script_count x[8];
    uint64_t letters = 0;
    size_t n = kwp_census_scripts(c, x, 8, &letters);
    assert_int_equal(n, 5);
    assert_int_equal(letters, 2 + 4 + 6 + 6 + 2);
    const kwp_script_count *h = find_script(x, n, "Hangul"), *k = find_script(x, n, "Hiragana"),
                           *l = find_script(x, n, "Latin"), *d = find_script(x, n, "Devanagari"),
                           *han = find_script(x, n, "Han");
    assert_int_equal(h->letters, 2);
    assert_int_equal(h->changed, 2);
    assert_int_equal(h->dropped, 0);
    assert_false(h->accents_only);
    assert_int_equal(k->letters, 4);
    assert_int_equal(k->changed, 1);
    assert_int_equal(l->letters, 6);
    assert_int_equal(l->changed, 1);
    assert_int_equal(l->dropped, 1);
    assert_true(l->accents_only);
    assert_int_equal(d->letters, 6);
    assert_int_equal(d->changed, 0);
    assert_int_equal(d->dropped, 1);
    assert_int_equal(han->letters, 2);
    assert_int_equal(han->changed + han->dropped, 0);
    /* most letters first: Latin and Devanagari (6) before Hiragana (4) */
    assert_true(x[0].letters >= x[1].letters && x[1].letters >= x[2].letters);
    /* merging adds; max bounds what is written, not the count */
    kwp_census *c2 = kwp_census_new();
    kwp_census_add(c2, text, strlen(text));
    kwp_census_add(c2, "\xff\xfe", 2); /* invalid bytes: skipped */
    kwp_census_merge(c, c2);
    kwp_script_count one;
    assert_int_equal(kwp_census_scripts(c, &one, 1, &letters), 5);
    assert_int_equal(letters, 40);
    kwp_census_free(c);
    kwp_census_free(c2);
    kwp_census_free(NULL);
}

static void test_hostile(void **state)
{
    (void)state;
    kwp_tok *t = kwp_tok_new(uncased, 0);
    kwp_ids ids = {0};
    /* random bytes, a 1 MB word, a million punctuation marks: no crash, sane counts */
    size_t n = 1 << 20;
    char *s = malloc(n);
    srand(1);
    for (size_t i = 0; i < n; i++) s[i] = (char)(rand() & 0xff);
    kwp_encode(t, s, n, &ids);
    kwp_ids_clear(&ids);
    memset(s, 'x', n);
    assert_int_equal(kwp_encode(t, s, n, &ids), 1);
    assert_int_equal(ids.ids[0], 100);
    kwp_ids_clear(&ids);
    memset(s, '!', n);
    assert_int_equal(kwp_encode(t, s, n, &ids), n);
    kwp_ids_clear(&ids);
    assert_int_equal(kwp_encode(t, "", 0, &ids), 0);
    assert_int_equal(kwp_encode(t, "\xff\xfe\xc3", 3, &ids), 0);  /* invalid UTF-8 -> U+FFFD -> dropped */
    free(s);
    kwp_ids_free(&ids);
    kwp_tok_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vocab_load),   cmocka_unit_test(test_vocab_errors),
        cmocka_unit_test(test_basic_rules),  cmocka_unit_test(test_unk_rules),
        cmocka_unit_test(test_special_tokens), cmocka_unit_test(test_word_starts),
        cmocka_unit_test(test_decode),       cmocka_unit_test(test_basic_only),
        cmocka_unit_test(test_hostile),      cmocka_unit_test(test_accent_modes),
        cmocka_unit_test(test_accent_modes_ids), cmocka_unit_test(test_icu_words),
        cmocka_unit_test(test_icu_words_hostile), cmocka_unit_test(test_census),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
