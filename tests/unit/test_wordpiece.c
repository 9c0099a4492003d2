/* test_wordpiece.c: unit tests of text/wordpiece: vocabulary loading, the
 * BasicTokenizer rules one by one, WordPiece matching, special tokens, word
 * starts, decoding, and hostile input. Expected ids were worked out by hand
 * against examples/vocab/bert-base-{uncased,cased}-vocab.txt (line number - 1). */
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
        cmocka_unit_test(test_hostile),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
