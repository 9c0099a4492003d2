/* test_bpe.c: unit tests of text/bpe.c (GPT-2's byte-level BPE) on small
 * hand-built vocabularies: the bytes_to_unicode map, GPT-2's pre-tokenizer
 * pattern case by case, merging by rank (lowest rank first, occurrences left
 * to right), "<|endoftext|>", exact decoding, the word cache (same ids after
 * it is emptied), a 200,000-byte word, and the loader's refusals. Parity with
 * the reference encoder on real text and the real GPT-2 files is
 * tests/integration/test_bpe.sh. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/bpe.h"

/* The file form of byte b (1 or 2 UTF-8 bytes), in out (>= 3 bytes). */
static const char *bchar(unsigned char b, char *out)
{
    kbuf k = {0};
    kbuf_put_cp(&k, kbpe_byte_char(b));
    memcpy(out, k.data, k.len + 1);
    kbuf_free(&k);
    return out;
}

/* A vocabulary of the 256 bytes (id = byte), then merges[0..n) (each "A B"
 * in file form, ASCII letters only here) whose results get ids 256..; eot
 * adds "<|endoftext|>" last. Owned by the caller. */
static kbpe_vocab *tiny(const char *const *merges, size_t n, int eot)
{
    kbuf vj = {0}, mt = {0};
    char c[4];
    kbuf_putc(&vj, '{');
    for (unsigned b = 0; b < 256; b++) {
        if (b) kbuf_puts(&vj, ", ");
        bchar((unsigned char)b, c);
        kbuf_json_str(&vj, c, strlen(c));
        kbuf_printf(&vj, ": %u", b);
    }
    kbuf_puts(&mt, "#version: 0.2\n");
    for (size_t i = 0; i < n; i++) {
        char m[64];
        snprintf(m, sizeof m, "%s", merges[i]);
        char *sp = strchr(m, ' ');
        *sp = '\0';
        char cat[64];
        snprintf(cat, sizeof cat, "%s%s", m, sp + 1);
        kbuf_puts(&vj, ", ");
        kbuf_json_str(&vj, cat, strlen(cat));
        kbuf_printf(&vj, ": %zu", 256 + i);
        kbuf_printf(&mt, "%s\n", merges[i]);
    }
    if (eot) kbuf_printf(&vj, ", \"<|endoftext|>\": %zu", 256 + n);
    kbuf_putc(&vj, '}');
    kbpe_vocab *v = NULL;
    char err[256];
    int rc = kbpe_vocab_load(vj.data, vj.len, mt.data, mt.len, &v, err, sizeof err);
    if (rc) fprintf(stderr, "tiny: %s\n", err);
    assert_int_equal(rc, 0);
    kbuf_free(&vj);
    kbuf_free(&mt);
    return v;
}

/* Encodes s and writes the ids' file forms joined by '|' into out. */
static void enc_pieces(const kbpe_vocab *v, const char *s, size_t n, kbuf *out)
{
    kbpe_tok *t = kbpe_tok_new(v);
    kwp_ids ids = {0};
    kbpe_encode(t, s, n, &ids);
    kbuf_clear(out);
    for (size_t i = 0; i < ids.n; i++) {
        size_t len;
        const char *p = kbpe_vocab_piece(v, ids.ids[i], &len);
        if (i) kbuf_putc(out, '|');
        kbuf_append(out, p, len);
    }
    kwp_ids_free(&ids);
    kbpe_tok_free(t);
}

static void test_byte_map(void **state)
{
    (void)state;
    int seen[324] = {0};
    for (unsigned b = 0; b < 256; b++) {
        uint32_t c = kbpe_byte_char((unsigned char)b);
        assert_true(c < 324);
        assert_int_equal(seen[c], 0);
        seen[c] = 1;
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        if (printable) assert_int_equal(c, b);
        else assert_true(c >= 256);
    }
    assert_int_equal(kbpe_byte_char(0), 256);
    assert_int_equal(kbpe_byte_char(' '), 0x120);   /* "Ġ" */
    assert_int_equal(kbpe_byte_char('\n'), 0x10A);  /* "Ċ" */
    assert_int_equal(kbpe_byte_char(0xAD), 0x143);  /* the last of the 68 */
}

static void collect(const char *tok, size_t len, void *ctx)
{
    kbuf *b = ctx;
    if (b->len) kbuf_putc(b, '|');
    kbuf_append(b, tok, len);
}

static void test_pretokenizer(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"Hello world", "Hello| world"},
        {"it's I'M we'll they've you're he'd 'sup", "it|'s| I|'|M| we|'ll| they|'ve| you|'re| he|'d| '|sup"},
        {"'Re'll", "'|Re|'ll"},
        {"a  b", "a| | b"},
        {"a   \n", "a|   \n"},
        {"x \ty", "x| |\t|y"},
        {"x\n\n y", "x|\n\n| y"},
        {"1234 abc12", "1234| abc|12"},
        {" !!!x", " !!!|x"},
        {"x\xc2\xa0y", "x|\xc2\xa0|y"},               /* U+00A0 is White_Space: its own token */
        {"caf\xc3\xa9 e\xcc\x81", "caf\xc3\xa9| e|\xcc\x81"}, /* a combining mark is "other" */
        {"\xe2\x85\xab\xc2\xbd", "\xe2\x85\xab\xc2\xbd"},   /* Nl and No are numbers */
        {"\xe4\xb8\xad\xe6\x96\x87 x", "\xe4\xb8\xad\xe6\x96\x87| x"},
        {"\x1c\x1d", "\x1c\x1d"},                       /* not White_Space in `regex` */
        {"   ", "   "},
        {"", ""},
    };
    kbpe_tok *t = kbpe_tok_new(NULL);
    kbuf got = {0};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        kbuf_clear(&got);
        kbpe_pretokenize(t, cases[i][0], strlen(cases[i][0]), collect, &got);
        if (strcmp(got.data ? got.data : "", cases[i][1])) fprintf(stderr, "case %zu: got [%s]\n", i, got.data);
        assert_string_equal(got.data ? got.data : "", cases[i][1]);
    }
    /* ill-formed bytes become U+FFFD first */
    kbuf_clear(&got);
    kbpe_pretokenize(t, "a\xff\xfe b", 5, collect, &got);
    assert_string_equal(got.data, "a|\xef\xbf\xbd\xef\xbf\xbd| b");
    kbuf_free(&got);
    kbpe_tok_free(t);
}

static void test_merge_order(void **state)
{
    (void)state;
    kbuf out = {0};
    /* "a a" first: occurrences left to right */
    static const char *const m1[] = {"a a", "aa a"};
    kbpe_vocab *v = tiny(m1, 2, 0);
    enc_pieces(v, "aaaa", 4, &out);
    assert_string_equal(out.data, "aa|aa");
    enc_pieces(v, "aaa", 3, &out);
    assert_string_equal(out.data, "aaa");           /* aa a, then rank 1 */
    enc_pieces(v, "aaaaa", 5, &out);
    assert_string_equal(out.data, "aa|aaa");        /* (aa)(aa)a: "aa a" only at the end */
    kbpe_vocab_free(v);
    /* the lowest rank wins wherever it is */
    static const char *const m2[] = {"b c", "a b"};
    v = tiny(m2, 2, 0);
    enc_pieces(v, "abc", 3, &out);
    assert_string_equal(out.data, "a|bc");
    kbpe_vocab_free(v);
    static const char *const m3[] = {"a b", "b c"};
    v = tiny(m3, 2, 0);
    enc_pieces(v, "abc", 3, &out);
    assert_string_equal(out.data, "ab|c");
    /* no merge across pre-tokens; " abc" is Ġ a b c (no merge with Ġ here) */
    enc_pieces(v, "abc abc", 7, &out);
    char sp[4];
    kbuf want = {0};
    kbuf_printf(&want, "ab|c|%s|ab|c", bchar(' ', sp));
    assert_string_equal(out.data, want.data);
    kbuf_free(&want);
    kbpe_vocab_free(v);
    kbuf_free(&out);
}

static void test_endoftext_and_decode(void **state)
{
    (void)state;
    static const char *const m[] = {"h i"};
    kbpe_vocab *v = tiny(m, 1, 1);
    assert_int_equal(kbpe_vocab_eot(v), 257);
    kbpe_tok *t = kbpe_tok_new(v);
    kwp_ids ids = {0};
    const char *s = "hi<|endoftext|><|endoftext|>hi<|endoftext";
    kbpe_encode(t, s, strlen(s), &ids);
    /* hi, eot, eot, hi, then "<|endoftext" as bytes: '<' '|' ... */
    assert_int_equal(ids.ids[0], 256);
    assert_int_equal(ids.ids[1], 257);
    assert_int_equal(ids.ids[2], 257);
    assert_int_equal(ids.ids[3], 256);
    assert_int_equal(ids.ids[4], '<');
    assert_int_equal(ids.word_start[1], 1);
    kbuf d = {0};
    assert_int_equal(kbpe_decode(v, ids.ids, ids.n, &d), 0);
    assert_int_equal(d.len, strlen(s));
    assert_memory_equal(d.data, s, d.len);
    /* every byte value comes back; ill-formed ones as U+FFFD */
    char all[256];
    for (int b = 0; b < 256; b++) all[b] = (char)b;
    kwp_ids_clear(&ids);
    kbpe_encode(t, all + 1, 127, &ids); /* ASCII 1..127 */
    kbuf_clear(&d);
    kbpe_decode(v, ids.ids, ids.n, &d);
    assert_int_equal(d.len, 127);
    assert_memory_equal(d.data, all + 1, 127);
    kwp_ids_clear(&ids);
    kbpe_encode(t, "\xff", 1, &ids);
    kbuf_clear(&d);
    kbpe_decode(v, ids.ids, ids.n, &d);
    assert_string_equal(d.data, "\xef\xbf\xbd");
    /* unknown ids are skipped and counted */
    uint32_t bad[3] = {'x', 99999, 'y'};
    kbuf_clear(&d);
    assert_int_equal(kbpe_decode(v, bad, 3, &d), 1);
    assert_string_equal(d.data, "xy");
    kbuf_free(&d);
    kwp_ids_free(&ids);
    kbpe_tok_free(t);
    kbpe_vocab_free(v);
}

/* Pseudo-random words: the same ids whether or not the cache is full. */
static void test_cache(void **state)
{
    (void)state;
    static const char *const m[] = {"a b", "c d", "ab cd", "e f"};
    kbpe_vocab *v = tiny(m, 4, 0);
    kbuf text = {0};
    uint64_t x = 88172645463325252ull;
    for (int w = 0; w < 80000; w++) { /* > CACHE_MAX distinct words */
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        kbuf_putc(&text, ' ');
        for (int k = 0; k < 6; k++) kbuf_putc(&text, (char)('a' + (x >> (5 * k)) % 8));
    }
    kbpe_tok *t = kbpe_tok_new(v), *fresh = kbpe_tok_new(v);
    kwp_ids a = {0}, b = {0}, c = {0};
    kbpe_encode(t, text.data, text.len, &a);
    kbpe_encode(t, text.data, text.len, &b); /* through a cache filled and emptied */
    assert_int_equal(a.n, b.n);
    assert_memory_equal(a.ids, b.ids, a.n * sizeof *a.ids);
    /* word by word with another tokenizer */
    for (size_t i = 0; i < 2000; i++) {
        size_t off = i * 7;
        kbpe_encode(fresh, text.data + off, 7, &c);
    }
    assert_memory_equal(a.ids, c.ids, c.n * sizeof *c.ids);
    kwp_ids_free(&a);
    kwp_ids_free(&b);
    kwp_ids_free(&c);
    kbpe_tok_free(t);
    kbpe_tok_free(fresh);
    kbuf_free(&text);
    kbpe_vocab_free(v);
}

static void test_long_word(void **state)
{
    (void)state;
    static const char *const m[] = {"a a", "aa aa"};
    kbpe_vocab *v = tiny(m, 2, 0);
    size_t n = 200000;
    char *s = malloc(n);
    memset(s, 'a', n);
    kbpe_tok *t = kbpe_tok_new(v);
    kwp_ids ids = {0};
    kbpe_encode(t, s, n, &ids);
    assert_int_equal(ids.n, n / 4);
    for (size_t i = 0; i < ids.n; i++) assert_int_equal(ids.ids[i], 257);
    kwp_ids_free(&ids);
    kbpe_tok_free(t);
    free(s);
    kbpe_vocab_free(v);
}

static void expect_error(const char *vj, const char *mt, const char *want)
{
    kbpe_vocab *v = (kbpe_vocab *)1;
    char err[256] = "";
    assert_int_equal(kbpe_vocab_load(vj, strlen(vj), mt, strlen(mt), &v, err, sizeof err), -1);
    assert_null(v);
    if (!strstr(err, want)) fprintf(stderr, "error [%s] lacks [%s]\n", err, want);
    assert_non_null(strstr(err, want));
}

static void test_load_errors(void **state)
{
    (void)state;
    expect_error("[1, 2]", "", "expected an object");
    expect_error("{\"a\": 0", "", "vocab JSON, line 1");
    expect_error("{\"a\": -1}", "", "\"a\": the id must be an integer");
    expect_error("{\"a\": \"x\"}", "", "\"a\": the id must be an integer");
    expect_error("{\"a\": 0, \"b\": 1}", "", "no token for the byte 0x00");
    expect_error("{\"a\": 0, \"b\": 0}", "", "id 0 is given to two tokens");
    /* a gap: the found-by-fuzzing case (an id of 259,999,997 sized arrays of 8 GB) */
    expect_error("{\"a\": 0, \"b\": 259999997}", "", "\"b\" has the id 259999997, but 2 tokens must have the ids 0 to 1");
    /* a full byte alphabet, then bad merges */
    kbuf vj = {0};
    char c[4];
    kbuf_putc(&vj, '{');
    for (unsigned b = 0; b < 256; b++) {
        kbuf_printf(&vj, "%s", b ? ", " : "");
        bchar((unsigned char)b, c);
        kbuf_json_str(&vj, c, strlen(c));
        kbuf_printf(&vj, ": %u", b);
    }
    kbuf_puts(&vj, ", \"ab\": 256}");
    expect_error(vj.data, "#version: 0.2\na b\nab\n", "merges, line 3: expected two tokens");
    expect_error(vj.data, "a b\na  b\n", "merges, line 2: expected two tokens");
    expect_error(vj.data, "a b\nb c\n", "merges, line 2: \"bc\" is not in the vocabulary");
    expect_error(vj.data, "zz b\n", "merges, line 1: \"zz\" is not in the vocabulary");
    /* accepted: CRLF, blank lines, a repeated merge (the last rank wins) */
    kbpe_vocab *v;
    char err[256];
    const char *mt = "#version: 0.2\r\na b\r\n\r\na b\n";
    assert_int_equal(kbpe_vocab_load(vj.data, vj.len, mt, strlen(mt), &v, err, sizeof err), 0);
    assert_int_equal(kbpe_vocab_nmerges(v), 2);
    assert_int_equal(kbpe_vocab_size(v), 257);
    assert_int_equal(kbpe_vocab_eot(v), -1);
    kbuf m = {0};
    kbpe_merges_text(v, &m);
    assert_string_equal(m.data, "#version: 0.2\na b\na b\n");
    kbuf_free(&m);
    kbpe_vocab_free(v);
    kbuf_free(&vj);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_byte_map),
        cmocka_unit_test(test_pretokenizer),
        cmocka_unit_test(test_merge_order),
        cmocka_unit_test(test_endoftext_and_decode),
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_long_word),
        cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
