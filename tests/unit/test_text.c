/* test_text.c: unit tests of text/ (text.h): UTF-8 cleaning
 * (ktext_clean_utf8: U+FFFD per maximal invalid subpart, BOM, newlines,
 * controls), UTF-16 decoding (ktext_utf16_bom, the streaming ktext_u16_*
 * converter fed at every split), ktext_norm_parse, and sentence segmentation
 * with ICU (ktext_segment: abbreviations, offsets, white space, NFKC,
 * paragraphs and soft newlines, one sentence per line, CJK, large inputs). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/text.h"
#include "util/util.h"

#define FFFD "\xEF\xBF\xBD"

/* ---- ktext_clean_utf8 ------------------------------------------------------ */

/* Cleans in[0..n) and checks output and counts exactly. */
static void clean_check(const char *in, size_t n, const char *expect, size_t expect_len,
                        uint64_t invalid, uint64_t controls)
{
    kbuf out = {0};
    ktext_counts c = {0};
    ktext_clean_utf8(in, n, &out, &c);
    int same = out.len == expect_len && (expect_len == 0 || memcmp(out.data, expect, expect_len) == 0);
    if (!same) {
        fprintf(stderr, "clean: got %zu bytes:", out.len);
        for (size_t i = 0; i < out.len; i++) fprintf(stderr, " %02x", (unsigned char)out.data[i]);
        fprintf(stderr, "\n");
    }
    /* kbuf invariant (util.h): a zeroed buffer, or data[len] == '\0' */
    int terminated = out.data == NULL || out.data[out.len] == '\0';
    size_t len = out.len;
    kbuf_free(&out); /* before asserting: a failure must not leak */
    assert_int_equal(len, expect_len);
    assert_true(same);
    assert_int_equal(c.invalid_utf8, invalid);
    assert_int_equal(c.controls, controls);
    assert_true(terminated);
}

#define CLEAN(in, expect, inv, ctl) \
    clean_check(in, sizeof(in) - 1, expect, sizeof(expect) - 1, inv, ctl)

static void test_clean_ascii_unchanged(void **state)
{
    (void)state;
    CLEAN("Hello, world! 0123456789 ~`{}[]|\\\"'", "Hello, world! 0123456789 ~`{}[]|\\\"'", 0, 0);
    CLEAN("line one\nline two\n", "line one\nline two\n", 0, 0);
    CLEAN("a\tb\t\tc", "a\tb\t\tc", 0, 0); /* tab kept */
    /* every printable ASCII byte */
    char all[96];
    for (int i = 0; i < 95; i++) all[i] = (char)(0x20 + i);
    clean_check(all, 95, all, 95, 0, 0);
}

static void test_clean_valid_multibyte_unchanged(void **state)
{
    (void)state;
    CLEAN("caf\xC3\xA9", "caf\xC3\xA9", 0, 0);                          /* é */
    CLEAN("\xE4\xB8\xAD\xE6\x96\x87", "\xE4\xB8\xAD\xE6\x96\x87", 0, 0); /* 中文 */
    CLEAN("\xF0\x9F\x98\x80!", "\xF0\x9F\x98\x80!", 0, 0);              /* 😀 */
    /* boundaries of Table 3-7 */
    CLEAN("\xC2\x80x", "x", 0, 1); /* U+0080 is a C1 control: dropped */
    CLEAN("\xC2\xA0", "\xC2\xA0", 0, 0);                   /* U+00A0 */
    CLEAN("\xDF\xBF", "\xDF\xBF", 0, 0);                   /* U+07FF */
    CLEAN("\xE0\xA0\x80", "\xE0\xA0\x80", 0, 0);           /* U+0800 */
    CLEAN("\xED\x9F\xBF", "\xED\x9F\xBF", 0, 0);           /* U+D7FF */
    CLEAN("\xEE\x80\x80", "\xEE\x80\x80", 0, 0);           /* U+E000 */
    CLEAN("\xEF\xBF\xBD", "\xEF\xBF\xBD", 0, 0);           /* U+FFFD itself is valid */
    CLEAN("\xF0\x90\x80\x80", "\xF0\x90\x80\x80", 0, 0);   /* U+10000 */
    CLEAN("\xF4\x8F\xBF\xBF", "\xF4\x8F\xBF\xBF", 0, 0);   /* U+10FFFF */
}

static void test_clean_invalid_maximal_subparts(void **state)
{
    (void)state;
    CLEAN("\xC3", FFFD, 1, 0);                          /* truncated 2-byte at end */
    CLEAN("ab\xC3", "ab" FFFD, 1, 0);
    CLEAN("\xE2\x82" "A", FFFD "A", 1, 0);              /* truncated 3-byte, then A */
    CLEAN("\xF0\x9F\x98", FFFD, 1, 0);                  /* truncated 4-byte at end */
    CLEAN("\xF0\x9F\x98" "x", FFFD "x", 1, 0);
    CLEAN("\xC0\xAF", FFFD FFFD, 2, 0);                 /* overlong: C0 never valid */
    CLEAN("\xE0\x80\xAF", FFFD FFFD FFFD, 3, 0);        /* overlong 3-byte: E0 then 80 bad */
    CLEAN("\xED\xA0\x80", FFFD FFFD FFFD, 3, 0);        /* surrogate D800 */
    CLEAN("\xF4\x90\x80\x80", FFFD FFFD FFFD FFFD, 4, 0); /* above U+10FFFF */
    CLEAN("\xF5\x80", FFFD FFFD, 2, 0);
    CLEAN("\xFF", FFFD, 1, 0);
    CLEAN("\xFE\xFF", FFFD FFFD, 2, 0);
    CLEAN("\x80", FFFD, 1, 0);                          /* lone continuation */
    CLEAN("\x80\x80\x80", FFFD FFFD FFFD, 3, 0);
    CLEAN("\xC3\xC3\xA9", FFFD "\xC3\xA9", 1, 0);       /* bad lead then a valid é */
    CLEAN("\xE2\x28\xA1", FFFD "(" FFFD, 2, 0);
    /* the example of Unicode 15 §3.9 (Table 3-8):
     * 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64 -> a FFFD FFFD FFFD b FFFD c FFFD FFFD d */
    CLEAN("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64",
          "a" FFFD FFFD FFFD "b" FFFD "c" FFFD FFFD "d", 6, 0);
}

static void test_clean_bom(void **state)
{
    (void)state;
    CLEAN("\xEF\xBB\xBFHello", "Hello", 0, 0);
    /* a U+FEFF elsewhere is dropped and counted */
    CLEAN("a\xEF\xBB\xBF" "b", "ab", 0, 1);
    /* a second BOM after the first is not "leading": counted */
    CLEAN("\xEF\xBB\xBF\xEF\xBB\xBFx", "x", 0, 1);
    /* a truncated BOM is invalid UTF-8 */
    CLEAN("\xEF\xBB", FFFD, 1, 0);
}

static void test_clean_newlines(void **state)
{
    (void)state;
    CLEAN("a\r\nb", "a\nb", 0, 0);
    CLEAN("a\rb", "a\nb", 0, 0);
    CLEAN("a\r\rb", "a\n\nb", 0, 0);
    CLEAN("a\n\rb", "a\n\nb", 0, 0);
    CLEAN("a\r\n\r\nb", "a\n\nb", 0, 0);
    CLEAN("a\r", "a\n", 0, 0);
    CLEAN("a\xC2\x85" "b", "a\nb", 0, 0);   /* NEL */
    CLEAN("a\xE2\x80\xA8" "b", "a\nb", 0, 0); /* LINE SEPARATOR */
    CLEAN("a\xE2\x80\xA9" "b", "a\nb", 0, 0); /* PARAGRAPH SEPARATOR */
    CLEAN("\r\n\xC2\x85\xE2\x80\xA8\xE2\x80\xA9", "\n\n\n\n", 0, 0);
}

static void test_clean_controls(void **state)
{
    (void)state;
    CLEAN("a\0b", "ab", 0, 1);
    CLEAN("a\x01" "b", "ab", 0, 1);
    CLEAN("a\x7F" "b", "ab", 0, 1);
    CLEAN("\x0B\x0C\x1B\x1F" "z", "z", 0, 4);
    CLEAN("a\xC2\x80\xC2\x9F" "b", "ab", 0, 2); /* U+0080, U+009F */
    CLEAN("x\xC2\x9Fy\xC2\xA0z", "xy\xC2\xA0z", 0, 1);
    CLEAN("\t", "\t", 0, 0);
    /* every C0 control but \t \n \r and every C1 control is dropped */
    kbuf in = {0};
    int expect_ctl = 0;
    for (int c = 0; c < 0x20; c++) {
        if (c == '\t' || c == '\n' || c == '\r') continue;
        kbuf_putc(&in, (char)c);
        expect_ctl++;
    }
    for (int c = 0x80; c <= 0x9F; c++) {
        if (c == 0x85) continue; /* NEL is a newline */
        kbuf_putc(&in, (char)(0xC0 | (c >> 6)));
        kbuf_putc(&in, (char)(0x80 | (c & 0x3F)));
        expect_ctl++;
    }
    kbuf_putc(&in, 0x7F);
    expect_ctl++;
    kbuf_putc(&in, 'k'); /* something kept, so the output is not empty */
    clean_check(in.data, in.len, "k", 1, 0, (uint64_t)expect_ctl);
    kbuf_free(&in);
}

/* Inputs that clean to nothing: the output must still be a valid empty kbuf
 * (NULL data, or data[0] == '\0'). */
static void test_clean_empty_output_terminated(void **state)
{
    (void)state;
    CLEAN("", "", 0, 0);
    CLEAN("\xEF\xBB\xBF", "", 0, 0); /* a BOM alone */
    CLEAN("\x01\x02\x7F", "", 0, 3); /* controls only */
    CLEAN("\xEF\xBB\xBF\xEF\xBB\xBF\0", "", 0, 2);
}

static void test_clean_counts_accumulate_and_null(void **state)
{
    (void)state;
    kbuf out = {0};
    ktext_counts c = {0};
    ktext_clean_utf8("a\x01\xC3", 3, &out, &c);
    ktext_clean_utf8("\x80\x02" "b", 3, &out, &c); /* appends */
    assert_int_equal(c.invalid_utf8, 2);
    assert_int_equal(c.controls, 2);
    assert_int_equal(out.len, 1 + 3 + 3 + 1);
    assert_memory_equal(out.data, "a" FFFD FFFD "b", out.len);
    ktext_clean_utf8("z\x01\xFF", 3, &out, NULL); /* NULL counts allowed */
    assert_memory_equal(out.data + 8, "z" FFFD, 4);
    assert_int_equal(out.len, 12);
    kbuf_free(&out);
}

/* Random bytes: the output is always valid UTF-8 free of controls. */
static int valid_clean_utf8(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c < 0x80) {
            if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7F) return 0;
            i++;
            continue;
        }
        size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        if (c < 0xC2 || c > 0xF4 || i + len > n) return 0;
        uint32_t cp = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
        if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
        if ((cp >= 0x80 && cp <= 0x9F) || cp == 0xFEFF || cp == 0x2028 || cp == 0x2029) return 0;
        i += len;
    }
    return 1;
}

static void test_clean_random_bytes(void **state)
{
    (void)state;
    uint64_t x = 88172645463325252ull;
    unsigned char in[512];
    kbuf out = {0};
    for (int round = 0; round < 2000; round++) {
        size_t n = (size_t)(round % 512);
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            /* bias towards high bytes to exercise the decoder */
            in[i] = (unsigned char)((x & 3) ? (0x80 | (x >> 8)) : (x >> 16));
        }
        kbuf_clear(&out);
        ktext_counts c = {0};
        ktext_clean_utf8((const char *)in, n, &out, &c);
        assert_true(valid_clean_utf8((const unsigned char *)out.data, out.len));
        assert_true(out.len <= 3 * n);
        /* idempotent on its own output */
        kbuf again = {0};
        ktext_counts c2 = {0};
        ktext_clean_utf8(out.data, out.len, &again, &c2);
        assert_int_equal(again.len, out.len);
        if (out.len) assert_memory_equal(again.data, out.data, out.len);
        assert_int_equal(c2.invalid_utf8, 0);
        assert_int_equal(c2.controls, 0);
        kbuf_free(&again);
    }
    kbuf_free(&out);
}

/* ---- UTF-16 ----------------------------------------------------------------- */

static void test_utf16_bom(void **state)
{
    (void)state;
    assert_int_equal(ktext_utf16_bom((const unsigned char *)"\xFF\xFE" "a\0", 4), 1);
    assert_int_equal(ktext_utf16_bom((const unsigned char *)"\xFE\xFF\0a", 4), 2);
    assert_int_equal(ktext_utf16_bom((const unsigned char *)"\xFF\xFE", 2), 1);
    assert_int_equal(ktext_utf16_bom((const unsigned char *)"\xFE\xFF", 2), 2);
    assert_int_equal(ktext_utf16_bom((const unsigned char *)"ab", 2), 0);
    assert_int_equal(ktext_utf16_bom((const unsigned char *)"\xEF\xBB\xBF", 3), 0);
    assert_int_equal(ktext_utf16_bom((const unsigned char *)"\xFF", 1), 0);
    assert_int_equal(ktext_utf16_bom((const unsigned char *)"\xFF\xFE", 1), 0); /* only n bytes */
    assert_int_equal(ktext_utf16_bom((const unsigned char *)"", 0), 0);
    assert_int_equal(ktext_utf16_bom((const unsigned char *)"\xFE\xFE", 2), 0);
}

/* Encodes the code points as UTF-16 (be: big-endian) with a BOM. */
static size_t enc16(const uint32_t *cps, size_t n, int be, int bom, unsigned char *out)
{
    size_t k = 0;
    uint16_t units[64];
    size_t nu = 0;
    if (bom) units[nu++] = 0xFEFF;
    for (size_t i = 0; i < n; i++) {
        if (cps[i] >= 0x10000) {
            uint32_t v = cps[i] - 0x10000;
            units[nu++] = (uint16_t)(0xD800 + (v >> 10));
            units[nu++] = (uint16_t)(0xDC00 + (v & 0x3FF));
        } else {
            units[nu++] = (uint16_t)cps[i];
        }
    }
    for (size_t i = 0; i < nu; i++) {
        unsigned char hi = (unsigned char)(units[i] >> 8), lo = (unsigned char)(units[i] & 0xFF);
        out[k++] = be ? hi : lo;
        out[k++] = be ? lo : hi;
    }
    return k;
}

static void u16_decode(const unsigned char *in, size_t n, size_t split, kbuf *out)
{
    ktext_u16 *u = ktext_u16_new(ktext_utf16_bom(in, n));
    assert_non_null(u);
    ktext_u16_feed(u, (const char *)in, split, 0, out);
    ktext_u16_feed(u, (const char *)in + split, n - split, 1, out);
    ktext_u16_free(u);
}

static void test_utf16_every_split(void **state)
{
    (void)state;
    /* "héllo 😀" */
    const uint32_t cps[] = {'h', 0xE9, 'l', 'l', 'o', ' ', 0x1F600};
    const char *expect = "h\xC3\xA9llo \xF0\x9F\x98\x80";
    unsigned char enc[64];
    for (int be = 0; be <= 1; be++) {
        size_t n = enc16(cps, 7, be, 1, enc);
        assert_int_equal(n, 2 * 9);
        assert_int_equal(ktext_utf16_bom(enc, n), be ? 2 : 1);
        for (size_t split = 0; split <= n; split++) {
            kbuf out = {0};
            u16_decode(enc, n, split, &out);
            assert_int_equal(out.len, strlen(expect));
            assert_memory_equal(out.data, expect, out.len + 1);
            kbuf_free(&out);
        }
        /* byte by byte, too */
        ktext_u16 *u = ktext_u16_new(be ? 2 : 1);
        kbuf out = {0};
        for (size_t i = 0; i < n; i++) ktext_u16_feed(u, (const char *)enc + i, 1, 0, &out);
        ktext_u16_feed(u, "", 0, 1, &out);
        ktext_u16_free(u);
        assert_string_equal(out.data, expect);
        kbuf_free(&out);
    }
}

static void test_utf16_no_bom_is_le(void **state)
{
    (void)state;
    const uint32_t cps[] = {'o', 'k', 0x4E2D};
    unsigned char enc[16];
    size_t n = enc16(cps, 3, 0, 0, enc);
    assert_int_equal(ktext_utf16_bom(enc, n), 0);
    kbuf out = {0};
    u16_decode(enc, n, 3, &out);
    assert_string_equal(out.data, "ok\xE4\xB8\xAD");
    kbuf_free(&out);
}

static void u16_check(const unsigned char *in, size_t n, int bom, const char *expect)
{
    ktext_u16 *u = ktext_u16_new(bom);
    kbuf out = {0};
    ktext_u16_feed(u, (const char *)in, n, 1, &out);
    ktext_u16_free(u);
    assert_int_equal(out.len, strlen(expect));
    if (out.len) assert_memory_equal(out.data, expect, out.len);
    kbuf_free(&out);
}

static void test_utf16_unpaired_surrogates(void **state)
{
    (void)state;
    /* LE: high surrogate D83D followed by 'A' */
    u16_check((const unsigned char *)"\xFF\xFE\x3D\xD8" "A\0", 6, 1, FFFD "A");
    /* lone low surrogate */
    u16_check((const unsigned char *)"\xFF\xFE\x00\xDE" "B\0", 6, 1, FFFD "B");
    /* high surrogate at the very end */
    u16_check((const unsigned char *)"\xFF\xFE" "C\0\x3D\xD8", 6, 1, "C" FFFD);
    /* two highs then a low: first unpaired, second pairs */
    u16_check((const unsigned char *)"\xFF\xFE\x3D\xD8\x3D\xD8\x00\xDE", 8, 1,
              FFFD "\xF0\x9F\x98\x80");
    /* BE: lone low surrogate then 'x' */
    u16_check((const unsigned char *)"\xFE\xFF\xDC\x00\x00x", 6, 2, FFFD "x");
    /* a high surrogate pending across feeds, then a non-surrogate */
    ktext_u16 *u = ktext_u16_new(1);
    kbuf out = {0};
    ktext_u16_feed(u, "\x3D\xD8", 2, 0, &out);
    assert_int_equal(out.len, 0);
    ktext_u16_feed(u, "Z\0", 2, 1, &out);
    ktext_u16_free(u);
    assert_int_equal(out.len, 4);
    assert_memory_equal(out.data, FFFD "Z", 4);
    kbuf_free(&out);
}

static void test_utf16_odd_trailing_byte(void **state)
{
    (void)state;
    u16_check((const unsigned char *)"\xFF\xFE" "a\0b", 5, 1, "a" FFFD);
    u16_check((const unsigned char *)"\xFE\xFF\0a\0", 5, 2, "a" FFFD);
    /* the dangling byte is completed by the next feed: no FFFD */
    ktext_u16 *u = ktext_u16_new(1);
    kbuf out = {0};
    ktext_u16_feed(u, "\xFF\xFE" "a", 3, 0, &out);
    assert_int_equal(out.len, 0);
    ktext_u16_feed(u, "\0", 1, 1, &out);
    ktext_u16_free(u);
    assert_string_equal(out.data, "a");
    kbuf_free(&out);
    /* a BOM alone gives nothing */
    u16_check((const unsigned char *)"\xFF\xFE", 2, 1, "");
}

/* ---- ktext_norm_parse -------------------------------------------------------- */

static void test_norm_parse(void **state)
{
    (void)state;
    assert_int_equal(ktext_norm_parse("nfkc"), KTEXT_NFKC);
    assert_int_equal(ktext_norm_parse("nfc"), KTEXT_NFC);
    assert_int_equal(ktext_norm_parse("none"), KTEXT_NONE);
    assert_int_equal(ktext_norm_parse(""), -1);
    assert_int_equal(ktext_norm_parse("nfd"), -1);
    assert_int_equal(ktext_norm_parse("nfkd"), -1);
    assert_int_equal(ktext_norm_parse("nfkc "), -1);
    assert_int_equal(ktext_norm_parse("nf"), -1);
    assert_int_equal(ktext_norm_parse("NONEE"), -1);
}

/* ---- ktext_segment ------------------------------------------------------------ */

typedef struct segfx {
    ktext_seg *nfkc, *none, *nfc;
    kbuf out;
    uint32_t *ends;
    size_t ends_cap;
} segfx;

static int seg_setup(void **state)
{
    segfx *f = calloc(1, sizeof *f);
    if (!f) return -1;
    char err[256] = "";
    f->nfkc = ktext_seg_new("en", KTEXT_NFKC, err, sizeof err);
    f->none = ktext_seg_new("en", KTEXT_NONE, err, sizeof err);
    f->nfc = ktext_seg_new("en", KTEXT_NFC, err, sizeof err);
    if (!f->nfkc || !f->none || !f->nfc) {
        fprintf(stderr, "ktext_seg_new: %s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int seg_teardown(void **state)
{
    segfx *f = *state;
    ktext_seg_free(f->nfkc);
    ktext_seg_free(f->none);
    ktext_seg_free(f->nfc);
    kbuf_free(&f->out);
    free(f->ends);
    free(f);
    return 0;
}

/* Checks that ends are consistent with out: strictly increasing, sentence k
 * (k > 0) starts one byte after ends[k-1], which is a '\n', the last end is
 * out.len, and no sentence contains '\n' or is empty. */
static void check_ends(const segfx *f, size_t n)
{
    if (n == 0) {
        assert_int_equal(f->out.len, 0);
        return;
    }
    assert_int_equal(f->ends[n - 1], f->out.len);
    size_t start = 0;
    for (size_t k = 0; k < n; k++) {
        assert_true(f->ends[k] > start);
        assert_null(memchr(f->out.data + start, '\n', f->ends[k] - start));
        assert_int_not_equal(f->out.data[start], ' ');
        assert_int_not_equal(f->out.data[f->ends[k] - 1], ' ');
        if (k + 1 < n) assert_int_equal(f->out.data[f->ends[k]], '\n');
        start = f->ends[k] + 1;
    }
    assert_int_equal(f->out.data[f->out.len], '\0');
}

/* Segments text and checks the sentences exactly. */
static void seg_expect(segfx *f, ktext_seg *g, const char *text, int lines,
                       const char *const *expect, size_t n_expect)
{
    size_t n = ktext_segment(g, text, strlen(text), lines, &f->out, &f->ends, &f->ends_cap);
    size_t start = 0;
    if (n != n_expect) {
        fprintf(stderr, "segment(\"%s\"): %zu sentences:\n", text, n);
        for (size_t k = 0; k < n; k++) {
            fprintf(stderr, "  [%.*s]\n", (int)(f->ends[k] - start), f->out.data + start);
            start = f->ends[k] + 1;
        }
    }
    assert_int_equal(n, n_expect);
    check_ends(f, n);
    start = 0;
    for (size_t k = 0; k < n; k++) {
        size_t len = f->ends[k] - start;
        if (len != strlen(expect[k]) || memcmp(f->out.data + start, expect[k], len) != 0)
            fprintf(stderr, "sentence %zu: got [%.*s], want [%s]\n", k, (int)len,
                    f->out.data + start, expect[k]);
        assert_int_equal(len, strlen(expect[k]));
        assert_memory_equal(f->out.data + start, expect[k], len);
        start = f->ends[k] + 1;
    }
}

#define SEG(g, text, lines, ...)                                                      \
    do {                                                                              \
        static const char *const ex_[] = {__VA_ARGS__};                               \
        seg_expect(f, (g), (text), (lines), ex_, sizeof ex_ / sizeof ex_[0]);         \
    } while (0)

static void test_seg_new_and_free(void **state)
{
    (void)state;
    char err[128] = "";
    ktext_seg *g = ktext_seg_new(NULL, KTEXT_NFC, err, sizeof err); /* defaults to en */
    assert_non_null(g);
    ktext_seg_free(g);
    g = ktext_seg_new("xx", KTEXT_NONE, err, sizeof err); /* unknown: root rules */
    assert_non_null(g);
    kbuf out = {0};
    uint32_t *ends = NULL;
    size_t cap = 0;
    assert_int_equal(ktext_segment(g, "One. Two.", 9, 0, &out, &ends, &cap), 2);
    assert_string_equal(out.data, "One.\nTwo.");
    assert_true(cap >= 2);
    free(ends);
    kbuf_free(&out);
    ktext_seg_free(g);
    ktext_seg_free(NULL);
}

static void test_seg_abbreviation(void **state)
{
    segfx *f = *state;
    SEG(f->nfkc, "Hello world. This is Mr. Smith. He paid $3.50 for it.", 0,
        "Hello world.", "This is Mr. Smith.", "He paid $3.50 for it.");
    assert_string_equal(f->out.data, "Hello world.\nThis is Mr. Smith.\nHe paid $3.50 for it.");
    assert_int_equal(f->ends[0], 12);
    assert_int_equal(f->ends[1], 31);
    assert_int_equal(f->ends[2], 53);
    SEG(f->none, "Hello world. This is Mr. Smith. He paid $3.50 for it.", 0,
        "Hello world.", "This is Mr. Smith.", "He paid $3.50 for it.");
    SEG(f->nfkc, "Is it? Yes! Fine.", 0, "Is it?", "Yes!", "Fine.");
}

static void test_seg_whitespace(void **state)
{
    segfx *f = *state;
    SEG(f->nfkc, "a   b\t c", 0, "a b c");
    SEG(f->none, "a   b\t c", 0, "a b c");
    SEG(f->nfkc, "   leading and trailing   ", 0, "leading and trailing");
    SEG(f->nfkc, "x\x0B\x0Cy", 0, "x y"); /* VT, FF are white space too */
    /* NBSP and IDEOGRAPHIC SPACE become ' ' (NFKC folds them; NONE treats
     * them as white space) */
    SEG(f->nfkc, "a\xC2\xA0" "b\xE3\x80\x80" "c", 0, "a b c");
    SEG(f->none, "a\xC2\xA0" "b\xE3\x80\x80" "c", 0, "a b c");
    SEG(f->nfc, "a\xC2\xA0\xC2\xA0 b\xE3\x80\x80" "c", 0, "a b c");
    /* other Unicode spaces (EN SPACE, NARROW NBSP) collapse with ASCII ones */
    SEG(f->none, "p \xE2\x80\x82 \xE2\x80\xAFq", 0, "p q");
}

static void test_seg_nfkc(void **state)
{
    segfx *f = *state;
    /* U+FB01 LATIN SMALL LIGATURE FI, fullwidth ABC */
    const char *t = "\xEF\xAC\x81nd \xEF\xBC\xA1\xEF\xBC\xA2\xEF\xBC\xA3 here.";
    SEG(f->nfkc, t, 0, "find ABC here.");
    SEG(f->none, t, 0, "\xEF\xAC\x81nd \xEF\xBC\xA1\xEF\xBC\xA2\xEF\xBC\xA3 here.");
    SEG(f->nfc, t, 0, "\xEF\xAC\x81nd \xEF\xBC\xA1\xEF\xBC\xA2\xEF\xBC\xA3 here.");
    /* composition: e + COMBINING ACUTE -> é under NFC and NFKC, kept under NONE */
    SEG(f->nfc, "Cafe\xCC\x81.", 0, "Caf\xC3\xA9.");
    SEG(f->nfkc, "Cafe\xCC\x81.", 0, "Caf\xC3\xA9.");
    SEG(f->none, "Cafe\xCC\x81.", 0, "Cafe\xCC\x81.");
    /* an expanding compatibility character (U+FDFA, 18 chars under NFKC) many
     * times: the normalized text is longer than the input */
    kbuf in = {0};
    for (int i = 0; i < 300; i++) kbuf_puts(&in, "\xEF\xB7\xBA");
    size_t n = ktext_segment(f->nfkc, in.data, in.len, 0, &f->out, &f->ends, &f->ends_cap);
    assert_true(n >= 1);
    check_ends(f, n);
    assert_null(strstr(f->out.data, "\xEF\xB7\xBA"));
    assert_true(f->out.len > in.len * 5);
    kbuf_free(&in);
    /* emoji (surrogate pairs in UTF-16) survive */
    SEG(f->nfkc, "Smile \xF0\x9F\x98\x80 now.", 0, "Smile \xF0\x9F\x98\x80 now.");
}

static void test_seg_paragraphs(void **state)
{
    segfx *f = *state;
    SEG(f->nfkc, "One line\nwraps here.\n\nNew para.", 0, "One line wraps here.", "New para.");
    /* a paragraph break ends a sentence even without punctuation */
    SEG(f->nfkc, "Heading\n\nBody text", 0, "Heading", "Body text");
    /* blank lines made of white space count as blank; many of them are one break */
    SEG(f->nfkc, "\n\nFirst\n \t \n\n\nSecond\n\n", 0, "First", "Second");
    /* soft newline in the middle of a sentence */
    SEG(f->none, "The cat\nsat. The dog\nran.\n", 0, "The cat sat.", "The dog ran.");
}

static void test_seg_lines_are_sentences(void **state)
{
    segfx *f = *state;
    SEG(f->nfkc, "a b\nc d\n\n e \n", 1, "a b", "c d", "e");
    assert_string_equal(f->out.data, "a b\nc d\ne");
    SEG(f->nfkc, "no newline at end", 1, "no newline at end");
    SEG(f->nfkc, "x\n\n\n\ny", 1, "x", "y");
}

static void test_seg_empty(void **state)
{
    segfx *f = *state;
    kbuf_puts(&f->out, "stale content");
    assert_int_equal(ktext_segment(f->nfkc, "", 0, 0, &f->out, &f->ends, &f->ends_cap), 0);
    assert_int_equal(f->out.len, 0); /* out is cleared first */
    const char *blank[] = {" ", "   \t  ", "\n", "\n\n \n\t\n", "\xC2\xA0\xE3\x80\x80"};
    for (size_t i = 0; i < sizeof blank / sizeof blank[0]; i++) {
        for (int lines = 0; lines <= 1; lines++) {
            kbuf_puts(&f->out, "stale");
            size_t n = ktext_segment(f->nfkc, blank[i], strlen(blank[i]), lines, &f->out, &f->ends,
                                     &f->ends_cap);
            assert_int_equal(n, 0);
            assert_int_equal(f->out.len, 0);
            n = ktext_segment(f->none, blank[i], strlen(blank[i]), lines, &f->out, &f->ends,
                              &f->ends_cap);
            assert_int_equal(n, 0);
            assert_int_equal(f->out.len, 0);
        }
    }
}

static void test_seg_reuse_clears(void **state)
{
    segfx *f = *state;
    SEG(f->nfkc, "A long first text. With two sentences.", 0, "A long first text.",
        "With two sentences.");
    SEG(f->nfkc, "Short.", 0, "Short.");
    assert_string_equal(f->out.data, "Short.");
}

static void test_seg_cjk(void **state)
{
    segfx *f = *state;
    SEG(f->nfkc, "\xE4\xBD\xA0\xE5\xA5\xBD\xE3\x80\x82\xE4\xB8\x96\xE7\x95\x8C\xE3\x80\x82", 0,
        "\xE4\xBD\xA0\xE5\xA5\xBD\xE3\x80\x82", "\xE4\xB8\x96\xE7\x95\x8C\xE3\x80\x82");
    SEG(f->none, "\xE4\xBD\xA0\xE5\xA5\xBD\xE3\x80\x82\xE4\xB8\x96\xE7\x95\x8C\xE3\x80\x82", 0,
        "\xE4\xBD\xA0\xE5\xA5\xBD\xE3\x80\x82", "\xE4\xB8\x96\xE7\x95\x8C\xE3\x80\x82");
}

/* Korean (periods and spaces) and Japanese (。！？ without spaces) with ICU's
 * rules under --lang ko / ja / en, on the bundled UDHR paragraphs (one
 * article a line): every locale gives the same sentences, as many as the
 * terminators say; English's abbreviation list (the default --lang en) keeps
 * "Mr." inside a Korean sentence, ko has no list. */
static void test_seg_korean_japanese(void **state)
{
    segfx *f = *state;
    char err[128] = "";
    ktext_seg *ko = ktext_seg_new("ko", KTEXT_NFKC, err, sizeof err), *ja = ktext_seg_new("ja", KTEXT_NFKC, err, sizeof err);
    assert_non_null(ko);
    assert_non_null(ja);
    SEG(ko, "모든 인간은 태어날 때부터 자유로우며 그 존엄과 권리에 있어 동등하다. 인간은 천부적으로 이성과 양심을 "
            "부여받았으며 서로 형제애의 정신으로 행동하여야 한다.", 0,
        "모든 인간은 태어날 때부터 자유로우며 그 존엄과 권리에 있어 동등하다.",
        "인간은 천부적으로 이성과 양심을 부여받았으며 서로 형제애의 정신으로 행동하여야 한다.");
    SEG(ja, "何人も、奴隷にされ、又は苦役に服することはない。奴隷制度及び奴隷売買は、いかなる形においても禁止する。", 0,
        "何人も、奴隷にされ、又は苦役に服することはない。", "奴隷制度及び奴隷売買は、いかなる形においても禁止する。");
    /* NFKC (the default) makes the fullwidth ！？ ASCII; 。 stays; either ends a sentence */
    SEG(ja, "東京は晴れ！本当？ではまた。", 0, "東京は晴れ!", "本当?", "ではまた。");
    SEG(f->none, "東京は晴れ！本当？ではまた。", 0, "東京は晴れ！", "本当？", "ではまた。");
    SEG(f->nfkc, "Mr. Kim은 왔다. 그리고 갔다.", 0, "Mr. Kim은 왔다.", "그리고 갔다.");
    SEG(ko, "Mr. Kim은 왔다. 그리고 갔다.", 0, "Mr.", "Kim은 왔다.", "그리고 갔다.");

    static const char *const files[] = {KILN_SOURCE_DIR "/examples/data/udhr-ko.txt",
                                        KILN_SOURCE_DIR "/examples/data/udhr-ja.txt"};
    kbuf first = {0};
    for (int k = 0; k < 2; k++) {
        kbuf text = {0};
        assert_int_equal(kbuf_read_file(&text, files[k]), 0);
        size_t lines = 0, total = 0;
        ktext_seg *segs[] = {k ? ja : ko, f->nfkc};
        for (char *line = text.data, *nl; line && (nl = strchr(line, '\n')); line = nl + 1) {
            *nl = '\0';
            size_t len = (size_t)(nl - line);
            lines++;
            /* the terminators: ". " (Korean) or 。 (Japanese, and the end of the line) */
            size_t want = 1;
            const char *term = k ? "\xE3\x80\x82" : ". ";
            for (const char *p = strstr(line, term); p; p = strstr(p + 1, term)) want++;
            if (k && len >= 3 && !memcmp(line + len - 3, "\xE3\x80\x82", 3)) want--;
            for (int g = 0; g < 2; g++) {
                size_t n = ktext_segment(segs[g], line, len, 0, &f->out, &f->ends, &f->ends_cap);
                check_ends(f, n);
                if (n != want) fail_msg("%s line %zu: %zu sentences, want %zu", files[k], lines, n, want);
                if (g == 0) {
                    kbuf_clear(&first);
                    kbuf_append(&first, f->out.data, f->out.len);
                } else {
                    assert_int_equal(first.len, f->out.len);
                    assert_memory_equal(first.data, f->out.data, f->out.len);
                }
            }
            total += want;
        }
        kbuf_free(&text);
        assert_int_equal(lines, k ? 31 : 4);
        assert_int_equal(total, k ? 66 : 6);
    }
    kbuf_free(&first);
    ktext_seg_free(ko);
    ktext_seg_free(ja);
}

static void test_seg_huge_single_sentence(void **state)
{
    segfx *f = *state;
    const size_t n = 1u << 20;
    char *t = malloc(n + 1);
    assert_non_null(t);
    for (size_t i = 0; i < n; i++) t[i] = (char)('a' + i % 26);
    t[n] = '\0';
    size_t k = ktext_segment(f->nfkc, t, n, 0, &f->out, &f->ends, &f->ends_cap);
    assert_int_equal(k, 1);
    assert_int_equal(f->ends[0], n);
    assert_int_equal(f->out.len, n);
    assert_memory_equal(f->out.data, t, n);
    /* the same with multibyte characters: byte length preserved */
    for (size_t i = 0; i + 2 < n; i += 3) memcpy(t + i, "\xE4\xB8\xAD", 3);
    size_t m = n - n % 3;
    k = ktext_segment(f->none, t, m, 0, &f->out, &f->ends, &f->ends_cap);
    assert_int_equal(k, 1);
    assert_int_equal(f->ends[0], m);
    assert_int_equal(f->out.len, m);
    assert_memory_equal(f->out.data, t, m);
    free(t);
}

static void test_seg_many_sentences(void **state)
{
    segfx *f = *state;
    kbuf in = {0}, expect = {0};
    for (int i = 0; i < 10000; i++) {
        kbuf_printf(&in, "This is sentence %d of the text.%s", i, (i % 50 == 49) ? "\n\n" : " ");
        kbuf_printf(&expect, "%sThis is sentence %d of the text.", i ? "\n" : "", i);
    }
    size_t n = ktext_segment(f->nfkc, in.data, in.len, 0, &f->out, &f->ends, &f->ends_cap);
    assert_int_equal(n, 10000);
    assert_true(f->ends_cap >= 10000);
    for (size_t k = 1; k < n; k++) assert_true(f->ends[k] > f->ends[k - 1]);
    assert_int_equal(f->ends[n - 1], f->out.len);
    check_ends(f, n);
    assert_int_equal(f->out.len, expect.len);
    assert_memory_equal(f->out.data, expect.data, expect.len);
    /* one per line mode gives the same here if each sentence is a line */
    kbuf_clear(&in);
    for (int i = 0; i < 10000; i++) kbuf_printf(&in, "This is sentence %d of the text.\n", i);
    n = ktext_segment(f->nfkc, in.data, in.len, 1, &f->out, &f->ends, &f->ends_cap);
    assert_int_equal(n, 10000);
    assert_int_equal(f->out.len, expect.len);
    assert_memory_equal(f->out.data, expect.data, expect.len);
    kbuf_free(&in);
    kbuf_free(&expect);
}

int main(void)
{
#define S(fn) cmocka_unit_test_setup_teardown(fn, seg_setup, seg_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_ascii_unchanged),
        cmocka_unit_test(test_clean_valid_multibyte_unchanged),
        cmocka_unit_test(test_clean_invalid_maximal_subparts),
        cmocka_unit_test(test_clean_bom),
        cmocka_unit_test(test_clean_newlines),
        cmocka_unit_test(test_clean_controls),
        cmocka_unit_test(test_clean_empty_output_terminated),
        cmocka_unit_test(test_clean_counts_accumulate_and_null),
        cmocka_unit_test(test_clean_random_bytes),
        cmocka_unit_test(test_utf16_bom),
        cmocka_unit_test(test_utf16_every_split),
        cmocka_unit_test(test_utf16_no_bom_is_le),
        cmocka_unit_test(test_utf16_unpaired_surrogates),
        cmocka_unit_test(test_utf16_odd_trailing_byte),
        cmocka_unit_test(test_norm_parse),
        cmocka_unit_test(test_seg_new_and_free),
        S(test_seg_abbreviation),
        S(test_seg_whitespace),
        S(test_seg_nfkc),
        S(test_seg_paragraphs),
        S(test_seg_lines_are_sentences),
        S(test_seg_empty),
        S(test_seg_reuse_clears),
        S(test_seg_cjk),
        S(test_seg_korean_japanese),
        S(test_seg_huge_single_sentence),
        S(test_seg_many_sentences),
    };
#undef S
    return cmocka_run_group_tests(tests, NULL, NULL);
}
