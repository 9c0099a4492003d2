/* test_jsonl.c: unit tests of ingest/jsonl.h (kjson_extract, the validating
 * one-pass JSONL field scanner): extraction of text/id/title/url as strings,
 * integers and other values, missing keys, duplicate keys (last wins),
 * escaped keys, every string escape, surrogate pairs and lone surrogates
 * (U+FFFD), \u0000, raw tabs and control bytes, nested keys ignored, every
 * malformed-input error with its message and column (objects, arrays,
 * strings, numbers, literals, top level, trailing characters, empty lines),
 * the nesting limit (512 ok, 513 and 100k-deep refused without a crash), a
 * 10 MB string, the SIMD run scanner at every length/offset, and 200k random
 * mutations of valid lines cross-checked against jansson in both directions.
 *
 * Every input is passed in an exact-size heap copy, so that AddressSanitizer
 * catches any read past n. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/jsonl.h"
#include "util/util.h"

#define FFFD "\xEF\xBF\xBD"

/* ---- helpers ----------------------------------------------------------------- */

/* kjson_extract on an exact-size heap copy of s[0..n). */
static int extract_exact(const char *s, size_t n, kjson_field *f, int nf, char *err, size_t errlen,
                         int *col)
{
    char *copy = xmalloc(n);
    if (n) memcpy(copy, s, n);
    int rc = kjson_extract(copy, n, f, nf, err, errlen, col);
    free(copy);
    return rc;
}

/* The usual four fields with their buffers. */
typedef struct fx {
    kbuf text, id, title, url;
    kjson_field f[4];
    char err[256];
    int col;
} fx;

static void fx_init(fx *x)
{
    memset(x, 0, sizeof *x);
    x->f[0] = (kjson_field){"text", -1, &x->text};
    x->f[1] = (kjson_field){"id", -1, &x->id};
    x->f[2] = (kjson_field){"title", -1, &x->title};
    x->f[3] = (kjson_field){"url", -1, &x->url};
}

static void fx_free(fx *x)
{
    kbuf_free(&x->text);
    kbuf_free(&x->id);
    kbuf_free(&x->title);
    kbuf_free(&x->url);
}

static int runn(fx *x, const char *s, size_t n)
{
    x->col = -7;
    strcpy(x->err, "untouched");
    return extract_exact(s, n, x->f, 4, x->err, sizeof x->err, &x->col);
}

static int run(fx *x, const char *s) { return runn(x, s, strlen(s)); }

static void print_bytes(const char *what, const char *s, size_t n)
{
    fprintf(stderr, "%s (%zu bytes): \"", what, n);
    for (size_t i = 0; i < n && i < 400; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') fputc(c, stderr);
        else fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "%s\"\n", n > 400 ? "..." : "");
}

/* b holds exactly expect[0..len), NUL-terminated (kbuf invariant). */
static void assert_buf(const kbuf *b, const char *expect, size_t len)
{
    assert_non_null(b->data);
    if (b->len != len || memcmp(b->data, expect, len) != 0) {
        print_bytes("expected", expect, len);
        print_bytes("got", b->data, b->len);
        fail();
    }
    assert_true(b->len < b->cap);
    assert_int_equal(b->data[b->len], '\0');
}
#define ASSERT_BUF(b, lit) assert_buf((b), (lit), sizeof(lit) - 1)

/* The line s[0..n) parses. */
static void ok_n(fx *x, const char *s, size_t n)
{
    if (runn(x, s, n) != 0) {
        print_bytes("line", s, n);
        fprintf(stderr, "refused: col %d: %s\n", x->col, x->err);
        fail();
    }
    assert_string_equal(x->err, "");
    assert_int_equal(x->col, 0);
}
static void ok(fx *x, const char *s) { ok_n(x, s, strlen(s)); }

/* The line s[0..n) is refused at column col (unless col is 0) with a message
 * containing msg; all types are back to KJ_MISSING. */
static void bad_n(const char *s, size_t n, int col, const char *msg)
{
    fx x;
    fx_init(&x);
    int rc = runn(&x, s, n);
    if (rc != -1 || (col && x.col != col) || !strstr(x.err, msg)) {
        print_bytes("line", s, n);
        fprintf(stderr, "expected -1, col %d, \"%s\"; got %d, col %d, \"%s\"\n", col, msg, rc, x.col,
                rc ? x.err : "");
        fail();
    }
    for (int i = 0; i < 4; i++) assert_int_equal(x.f[i].type, KJ_MISSING);
    fx_free(&x);
}
static void bad(const char *s, int col, const char *msg) { bad_n(s, strlen(s), col, msg); }

/* ---- extraction ------------------------------------------------------------------ */

static void test_simple_fields(void **state)
{
    (void)state;
    fx x;
    fx_init(&x);
    ok(&x, "{\"id\": \"3-17\", \"title\": \"doc 3-17\", \"text\": \"hello world\", "
           "\"url\": \"https://example.org/a?b=c\"}");
    for (int i = 0; i < 4; i++) assert_int_equal(x.f[i].type, KJ_STRING);
    ASSERT_BUF(&x.text, "hello world");
    ASSERT_BUF(&x.id, "3-17");
    ASSERT_BUF(&x.title, "doc 3-17");
    ASSERT_BUF(&x.url, "https://example.org/a?b=c");
    /* reuse of the same buffers: cleared, not appended */
    ok(&x, "{\"text\":\"b\",\"id\":\"c\",\"title\":\"\",\"url\":\"d\"}");
    ASSERT_BUF(&x.text, "b");
    ASSERT_BUF(&x.id, "c");
    ASSERT_BUF(&x.title, "");
    ASSERT_BUF(&x.url, "d");
    fx_free(&x);
}

static void test_integer_ids(void **state)
{
    (void)state;
    static const struct { const char *line, *digits; } cases[] = {
        {"{\"id\": 7, \"text\": \"a\"}", "7"},
        {"{\"id\":-12}", "-12"},
        {"{\"id\":0}", "0"},
        {"{\"id\":-0}", "-0"},
        {"{\"id\":9223372036854775807}", "9223372036854775807"},
        {"{\"id\":123456789012345678901234567890}", "123456789012345678901234567890"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        fx x;
        fx_init(&x);
        ok(&x, cases[i].line);
        assert_int_equal(x.f[1].type, KJ_INTEGER);
        assert_buf(&x.id, cases[i].digits, strlen(cases[i].digits));
        fx_free(&x);
    }
}

static void test_string_id(void **state)
{
    (void)state;
    fx x;
    fx_init(&x);
    ok(&x, "{\"id\":\"7\"}");
    assert_int_equal(x.f[1].type, KJ_STRING);
    ASSERT_BUF(&x.id, "7");
    assert_int_equal(x.f[0].type, KJ_MISSING);
    fx_free(&x);
}

static void test_missing_keys_untouched(void **state)
{
    (void)state;
    fx x;
    fx_init(&x);
    kbuf_puts(&x.text, "sentinel");
    ok(&x, "{\"other\": 1, \"Text\": \"no\", \"ID\": 2}");
    for (int i = 0; i < 4; i++) assert_int_equal(x.f[i].type, KJ_MISSING);
    ASSERT_BUF(&x.text, "sentinel");
    assert_null(x.id.data);
    ok(&x, "{}");
    for (int i = 0; i < 4; i++) assert_int_equal(x.f[i].type, KJ_MISSING);
    ok(&x, " { } ");
    ASSERT_BUF(&x.text, "sentinel");
    fx_free(&x);
}

static void test_other_types(void **state)
{
    (void)state;
    fx x;
    fx_init(&x);
    kbuf_puts(&x.text, "s1");
    kbuf_puts(&x.id, "s2");
    kbuf_puts(&x.title, "s3");
    kbuf_puts(&x.url, "s4");
    ok(&x, "{\"id\": 1.5, \"text\": [1, \"x\"], \"title\": {\"text\": \"y\"}, \"url\": true}");
    for (int i = 0; i < 4; i++) assert_int_equal(x.f[i].type, KJ_OTHER);
    ASSERT_BUF(&x.text, "s1");
    ASSERT_BUF(&x.id, "s2");
    ASSERT_BUF(&x.title, "s3");
    ASSERT_BUF(&x.url, "s4");
    ok(&x, "{\"id\": 1e5, \"text\": null, \"title\": false, \"url\": -0.0}");
    for (int i = 0; i < 4; i++) assert_int_equal(x.f[i].type, KJ_OTHER);
    ok(&x, "{\"id\": 2E-3, \"text\": [], \"title\": {}, \"url\": 0.5e+1}");
    for (int i = 0; i < 4; i++) assert_int_equal(x.f[i].type, KJ_OTHER);
    ASSERT_BUF(&x.id, "s2");
    fx_free(&x);
}

static void test_last_duplicate_wins(void **state)
{
    (void)state;
    fx x;
    fx_init(&x);
    ok(&x, "{\"text\":\"first\",\"a\":1,\"text\":\"second\"}");
    assert_int_equal(x.f[0].type, KJ_STRING);
    ASSERT_BUF(&x.text, "second");
    ok(&x, "{\"text\":\"a long first value\",\"text\":\"\"}");
    ASSERT_BUF(&x.text, "");
    ok(&x, "{\"id\":\"x\",\"id\":5}");
    assert_int_equal(x.f[1].type, KJ_INTEGER);
    ASSERT_BUF(&x.id, "5");
    ok(&x, "{\"id\":5,\"id\":null}");
    assert_int_equal(x.f[1].type, KJ_OTHER);
    ok(&x, "{\"id\":[1],\"id\":\"z\"}");
    assert_int_equal(x.f[1].type, KJ_STRING);
    ASSERT_BUF(&x.id, "z");
    ok(&x, "{\"t\\u0065xt\":\"escaped\",\"text\":\"plain\",\"te\\u0078t\":\"last\"}");
    ASSERT_BUF(&x.text, "last");
    fx_free(&x);
}

static void test_escaped_keys(void **state)
{
    (void)state;
    fx x;
    fx_init(&x);
    ok(&x, "{\"t\\u0065xt\":\"a\"}");
    assert_int_equal(x.f[0].type, KJ_STRING);
    ASSERT_BUF(&x.text, "a");
    ok(&x, "{\"\\u0074\\u0065\\u0078\\u0074\":\"b\", \"\\u0069\\u0044\":1, \"i\\u0064\":2}");
    ASSERT_BUF(&x.text, "b");
    assert_int_equal(x.f[1].type, KJ_INTEGER);
    ASSERT_BUF(&x.id, "2");
    /* near misses: prefix, longer, embedded NUL, different escape result */
    ok(&x, "{\"tex\":\"1\",\"texts\":\"2\",\"text\\u0000\":\"3\",\"te\\u0000\":\"4\",\"\\u0074ex\":\"5\","
           "\"t\\u0065xt\\n\":\"6\",\"\":\"7\"}");
    for (int i = 0; i < 4; i++) assert_int_equal(x.f[i].type, KJ_MISSING);
    fx_free(&x);

    /* keys with '/', UTF-8, the empty key */
    kbuf a = {0}, b = {0}, c = {0};
    kjson_field f[3] = {{"a/b", -1, &a}, {"caf\xC3\xA9", -1, &b}, {"", -1, &c}};
    const char *line = "{\"a\\/b\":\"slash\",\"caf\\u00E9\":\"cafe\",\"\":\"empty\"}";
    assert_int_equal(extract_exact(line, strlen(line), f, 3, NULL, 0, NULL), 0);
    ASSERT_BUF(&a, "slash");
    ASSERT_BUF(&b, "cafe");
    ASSERT_BUF(&c, "empty");
    line = "{\"caf\xC3\xA9\":\"raw\"}";
    assert_int_equal(extract_exact(line, strlen(line), f, 3, NULL, 0, NULL), 0);
    ASSERT_BUF(&b, "raw");
    assert_int_equal(f[0].type, KJ_MISSING);
    kbuf_free(&a);
    kbuf_free(&b);
    kbuf_free(&c);
}

static void test_all_escapes(void **state)
{
    (void)state;
    fx x;
    fx_init(&x);
    ok(&x, "{\"text\":\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0041 \\u00e9 \\u00C9 \\u20AC \\uffff \\u007f\"}");
    ASSERT_BUF(&x.text, "\" \\ / \b \f \n \r \t A \xC3\xA9 \xC3\x89 \xE2\x82\xAC \xEF\xBF\xBF \x7f");
    ok(&x, "{\"text\":\"\\u0080\\u07FF\\u0800\\uFFFD\\u0001\\u001f\"}");
    ASSERT_BUF(&x.text, "\xC2\x80\xDF\xBF\xE0\xA0\x80" FFFD "\x01\x1f");
    ok(&x, "{\"text\":\"\\n\\n\\\\\\\"\"}"); /* escapes back to back */
    ASSERT_BUF(&x.text, "\n\n\\\"");
    fx_free(&x);
}

static void test_surrogate_pairs(void **state)
{
    (void)state;
    fx x;
    fx_init(&x);
    ok(&x, "{\"text\":\"\\ud83d\\ude00\"}");
    ASSERT_BUF(&x.text, "\xF0\x9F\x98\x80");
    ok(&x, "{\"text\":\"a\\uD83D\\uDE00b\\uD800\\uDC00\\uDBFF\\uDFFF\"}");
    ASSERT_BUF(&x.text, "a\xF0\x9F\x98\x80" "b\xF0\x90\x80\x80\xF4\x8F\xBF\xBF");
    fx_free(&x);
}

static void test_lone_surrogates(void **state)
{
    (void)state;
    static const struct { const char *line, *expect; } cases[] = {
        {"{\"text\":\"\\ud800\"}", FFFD},
        {"{\"text\":\"\\ud800x\"}", FFFD "x"},
        {"{\"text\":\"\\uD800\\u0041\"}", FFFD "A"},
        {"{\"text\":\"\\udc00\"}", FFFD},
        {"{\"text\":\"\\udfff\\ud800\"}", FFFD FFFD},
        {"{\"text\":\"\\ud800\\ud800\\udc00\"}", FFFD "\xF0\x90\x80\x80"},
        {"{\"text\":\"\\ud800\\n\"}", FFFD "\n"},
        {"{\"text\":\"\\ud800\\\\udc00\"}", FFFD "\\udc00"},
        {"{\"text\":\"\\ud800\\u\"}", NULL}, /* then a bad \u: an error */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (!cases[i].expect) {
            bad(cases[i].line, 16, "invalid \\u escape");
            continue;
        }
        fx x;
        fx_init(&x);
        ok(&x, cases[i].line);
        assert_buf(&x.text, cases[i].expect, strlen(cases[i].expect));
        fx_free(&x);
    }
}

static void test_nul_escape(void **state)
{
    (void)state;
    fx x;
    fx_init(&x);
    ok(&x, "{\"text\":\"a\\u0000b\",\"id\":\"\\u0000\"}");
    assert_buf(&x.text, "a\0b", 3);
    assert_buf(&x.id, "\0", 1);
    fx_free(&x);
}

static void test_nested_keys_ignored(void **state)
{
    (void)state;
    fx x;
    fx_init(&x);
    ok(&x, "{\"meta\":{\"text\":\"no\",\"id\":1,\"deeper\":{\"url\":\"no\"}},"
           "\"list\":[{\"text\":\"no\"},[\"title\",\"no\"]],\"text\":\"yes\"}");
    assert_int_equal(x.f[0].type, KJ_STRING);
    ASSERT_BUF(&x.text, "yes");
    for (int i = 1; i < 4; i++) assert_int_equal(x.f[i].type, KJ_MISSING);
    ok(&x, "{\"meta\":{\"text\":\"no\"}}");
    assert_int_equal(x.f[0].type, KJ_MISSING);
    ok(&x, "{\"text\":{\"text\":\"inner\"},\"id\":[{\"id\":1}]}");
    assert_int_equal(x.f[0].type, KJ_OTHER);
    assert_int_equal(x.f[1].type, KJ_OTHER);
    fx_free(&x);
}

static void test_tab_and_control_bytes(void **state)
{
    (void)state;
    fx x;
    fx_init(&x);
    ok(&x, "{\"text\":\"a\tb\t\",\"ti\ttle\":1}");
    ASSERT_BUF(&x.text, "a\tb\t");
    ok(&x, "{\"text\":\"del \x7f ok\"}");
    ASSERT_BUF(&x.text, "del \x7f ok");
    fx_free(&x);
    bad("{\"text\":\"a\x01\"}", 11, "control character in string");
    bad("{\"text\":\"line\nbreak\"}", 14, "control character in string");
    bad("{\"text\":\"cr\r\"}", 12, "control character in string");
    bad("{\"te\x1fxt\":1}", 5, "control character in string");
    bad_n("{\"text\":\"x\0y\"}", 14, 11, "control character in string");
    bad_n("{\"a\":1}\0", 8, 8, "trailing characters after the value");
    bad_n("{\0}", 3, 2, "expected a string key");
}

static void test_high_bytes_copied(void **state)
{
    (void)state;
    fx x;
    fx_init(&x);
    ok(&x, "{\"text\":\"caf\xC3\xA9 \xE4\xB8\xAD \xF0\x9F\x98\x80 \xFF\xFE\x80\"}");
    ASSERT_BUF(&x.text, "caf\xC3\xA9 \xE4\xB8\xAD \xF0\x9F\x98\x80 \xFF\xFE\x80");
    fx_free(&x);
}

/* ---- malformed input ----------------------------------------------------------- */

static void test_object_errors(void **state)
{
    (void)state;
    bad("{\"a\":1,}", 8, "trailing comma");
    bad("{\"a\" 1}", 6, "expected ':'");
    bad("{\"a\":1 \"b\":2}", 8, "expected ',' or '}'");
    bad("{\"a\":1]", 7, "expected ',' or '}'");
    bad("{1:2}", 2, "expected a string key");
    bad("{a:2}", 2, "expected a string key");
    bad("{'a':2}", 2, "expected a string key");
    bad("{,}", 2, "expected a string key");
    bad("{\"a\":1,,\"b\":2}", 8, "expected a string key");
    bad("{\"a\":}", 6, "expected a value");
    bad("{\"a\"::1}", 6, "expected a value");
    bad("{\"a\":1", 7, "unexpected end of input");
    bad("{\"a\":", 6, "unexpected end of input");
    bad("{\"a\"", 5, "unexpected end of input");
    bad("{", 2, "unexpected end of input");
    bad("{\"a\":1,", 8, "unexpected end of input");
    bad("{\"a\":{\"b\":1]}", 12, "expected ',' or '}'");
    bad("{\"a\":{\"b\":1,}}", 13, "trailing comma");
}

static void test_array_errors(void **state)
{
    (void)state;
    bad("{\"a\":[1,]}", 9, "trailing comma");
    bad("{\"a\":[1 2]}", 9, "expected ',' or ']'");
    bad("{\"a\":[,1]}", 7, "expected a value");
    bad("{\"a\":[1}", 8, "expected ',' or ']'");
    bad("{\"a\":[}", 7, "expected a value");
    bad("{\"a\":[1,", 9, "unexpected end of input");
    bad("{\"a\":[[]]]}", 10, "expected ',' or '}'");
    bad("{\"a\":[\"x\":1]}", 10, "expected ',' or ']'");
    fx x;
    fx_init(&x);
    ok(&x, "{\"a\":[],\"b\":[[],[[]],{}, [ 1 , \"2\" , [ ] ] ]}");
    fx_free(&x);
}

static void test_escape_errors(void **state)
{
    (void)state;
    bad("{\"a\":\"\\x\"}", 7, "invalid escape");
    bad("{\"a\":\"\\'\"}", 7, "invalid escape");
    bad("{\"a\":\"\\U0041\"}", 7, "invalid escape");
    bad("{\"a\":\"ok\\a\"}", 9, "invalid escape");
    bad("{\"\\q\":1}", 3, "invalid escape");
    bad("{\"a\":\"\\u12G4\"}", 7, "invalid \\u escape");
    bad("{\"a\":\"\\u12\"}", 7, "invalid \\u escape");
    bad("{\"a\":\"\\u-123\"}", 7, "invalid \\u escape");
    bad("{\"a\":\"\\u00", 7, "invalid \\u escape");
    bad("{\"text\":\"\\ud800\\u12x4\"}", 16, "invalid \\u escape");
    bad("{\"text\":\"\\ud83d\\uZe00\"}", 16, "invalid \\u escape");
}

static void test_unterminated_strings(void **state)
{
    (void)state;
    bad("{\"a\":\"abc", 6, "unterminated string");
    bad("{\"a", 2, "unterminated string");
    bad("{\"", 2, "unterminated string");
    bad("{\"a\":\"abc\\", 6, "unterminated string");
    bad("{\"a\":\"abc\\\"}", 6, "unterminated string");
    bad("{\"text\":\"abc\\\"}", 9, "unterminated string"); /* extracted field */
    char line[1100];
    memcpy(line, "{\"text\":\"", 9);
    memset(line + 9, 'x', 1000);
    bad_n(line, 1009, 9, "unterminated string");
    line[0] = ' ';
    bad_n(line, 1009, 2, "a JSON line must be an object");
}

static void test_numbers_valid(void **state)
{
    (void)state;
    static const struct { const char *num; int type; } cases[] = {
        {"0", KJ_INTEGER},      {"-0", KJ_INTEGER},      {"1", KJ_INTEGER},     {"-1", KJ_INTEGER},
        {"10", KJ_INTEGER},     {"1234567890", KJ_INTEGER}, {"1.5", KJ_OTHER},  {"-0.5", KJ_OTHER},
        {"0.0", KJ_OTHER},      {"1e5", KJ_OTHER},       {"1E5", KJ_OTHER},     {"1e+5", KJ_OTHER},
        {"1e-5", KJ_OTHER},     {"1.5e-10", KJ_OTHER},   {"0e0", KJ_OTHER},     {"-0E+00", KJ_OTHER},
        {"1.0E+2", KJ_OTHER},   {"12.34e56", KJ_OTHER},  {"1e999", KJ_OTHER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char line[64];
        fx x;
        fx_init(&x);
        snprintf(line, sizeof line, "{\"id\":%s}", cases[i].num);
        ok(&x, line);
        assert_int_equal(x.f[1].type, cases[i].type);
        if (cases[i].type == KJ_INTEGER) assert_buf(&x.id, cases[i].num, strlen(cases[i].num));
        snprintf(line, sizeof line, "{\"a\":[%s,%s ],\"id\" : %s }", cases[i].num, cases[i].num,
                 cases[i].num);
        ok(&x, line);
        assert_int_equal(x.f[1].type, cases[i].type);
        snprintf(line, sizeof line, "{\"id\":%s", cases[i].num); /* number at the very end */
        bad(line, (int)strlen(line) + 1, "unexpected end of input");
        fx_free(&x);
    }
}

static void test_numbers_invalid(void **state)
{
    (void)state;
    bad("{\"id\":01}", 8, "leading zero");
    bad("{\"id\":-01}", 9, "leading zero");
    bad("{\"id\":00}", 8, "leading zero");
    bad("{\"id\":1.}", 9, "expected a digit after '.'");
    bad("{\"id\":1.e5}", 9, "expected a digit after '.'");
    bad("{\"id\":.5}", 7, "expected a value");
    bad("{\"id\":-}", 8, "expected a digit after '-'");
    bad("{\"id\":--1}", 8, "expected a digit after '-'");
    bad("{\"id\":-a}", 8, "expected a digit after '-'");
    bad("{\"id\":1e}", 9, "expected a digit in the exponent");
    bad("{\"id\":1e+}", 10, "expected a digit in the exponent");
    bad("{\"id\":1E-x}", 10, "expected a digit in the exponent");
    bad("{\"id\":1ee5}", 9, "expected a digit in the exponent");
    bad("{\"id\":+1}", 7, "expected a value");
    bad("{\"id\":0x1}", 8, "expected ',' or '}'");
    bad("{\"id\":1.5.2}", 10, "expected ',' or '}'");
    bad("{\"id\":[1-2]}", 9, "expected ',' or ']'");
    bad("{\"id\":-", 8, "unexpected end of input");
    bad("{\"id\":1.", 9, "unexpected end of input");
    bad("{\"id\":1e", 9, "unexpected end of input");
    bad("{\"id\":NaN}", 7, "expected a value");
    bad("{\"id\":Infinity}", 7, "expected a value");
}

static void test_literals(void **state)
{
    (void)state;
    fx x;
    fx_init(&x);
    ok(&x, "{\"a\":true,\"b\":false,\"c\":null,\"d\":[true,false,null]}");
    fx_free(&x);
    bad("{\"a\":tru}", 6, "invalid literal");
    bad("{\"a\":nul}", 6, "invalid literal");
    bad("{\"a\":fals}", 6, "invalid literal");
    bad("{\"a\":True}", 6, "expected a value");
    bad("{\"a\":nulll}", 10, "expected ',' or '}'");
    bad("{\"a\":truex}", 10, "expected ',' or '}'");
    bad("{\"a\":tru", 6, "invalid literal");
    bad("{\"a\":n", 6, "invalid literal");
    bad("{\"a\":[nul]}", 7, "invalid literal");
    bad("{\"a\":undefined}", 6, "expected a value");
}

static void test_top_level_not_object(void **state)
{
    (void)state;
    bad("[1,2]", 1, "a JSON line must be an object");
    bad("  [ ]", 3, "a JSON line must be an object");
    bad("\"text\"", 1, "a JSON line must be an object");
    bad("42", 1, "a JSON line must be an object");
    bad("true", 1, "a JSON line must be an object");
    bad("null", 1, "a JSON line must be an object");
    bad("x", 1, "a JSON line must be an object");
    bad("}", 1, "a JSON line must be an object");
}

static void test_trailing_characters(void **state)
{
    (void)state;
    bad("{} x", 4, "trailing characters after the value");
    bad("{}{}", 3, "trailing characters after the value");
    bad("{\"a\":1}}", 8, "trailing characters after the value");
    bad("{\"a\":1} ,", 9, "trailing characters after the value");
    bad("{}\f", 3, "trailing characters after the value");
    bad("{}\v", 3, "trailing characters after the value");
    bad("{\"text\":\"x\"} \"y\"", 14, "trailing characters after the value");
    fx x;
    fx_init(&x);
    ok(&x, " \t{ \"text\" : \"x\" } \r\n");
    ASSERT_BUF(&x.text, "x");
    ok(&x, "\t{\n\"text\"\r:\t\"y\" ,\n\"id\"\n:\n1\r\n}\n\n");
    ASSERT_BUF(&x.text, "y");
    ASSERT_BUF(&x.id, "1");
    fx_free(&x);
    bad("\f{}", 1, "a JSON line must be an object");
    bad("{\"a\"\f:1}", 5, "expected ':'");
}

static void test_empty_line(void **state)
{
    (void)state;
    bad_n("", 0, 1, "empty line");
    bad("   \r\n", 6, "empty line");
    bad("\t", 2, "empty line");
    /* NULL with n == 0 is an empty line too */
    char err[64];
    int col;
    assert_int_equal(kjson_extract(NULL, 0, NULL, 0, err, sizeof err, &col), -1);
    assert_string_equal(err, "empty line");
    assert_int_equal(col, 1);
}

static void test_error_arguments(void **state)
{
    (void)state;
    const char *line = "{\"a\" 1}";
    assert_int_equal(extract_exact(line, strlen(line), NULL, 0, NULL, 0, NULL), -1);
    char err[8];
    int col = 0;
    memset(err, 'z', sizeof err);
    assert_int_equal(extract_exact(line, strlen(line), NULL, 0, err, 5, &col), -1);
    assert_string_equal(err, "expe"); /* truncated, NUL-terminated */
    assert_int_equal(err[5], 'z');
    assert_int_equal(col, 6);
    memset(err, 'z', sizeof err);
    assert_int_equal(extract_exact(line, strlen(line), NULL, 0, err, 1, NULL), -1);
    assert_int_equal(err[0], '\0');
    assert_int_equal(err[1], 'z');
    /* success clears err and col */
    assert_int_equal(extract_exact("{}", 2, NULL, 0, err, sizeof err, &col), 0);
    assert_string_equal(err, "");
    assert_int_equal(col, 0);
    /* types are reset on error even after a field was filled */
    fx x;
    fx_init(&x);
    assert_int_equal(run(&x, "{\"text\":\"a\",\"id\":1,\"x\":}"), -1);
    for (int i = 0; i < 4; i++) assert_int_equal(x.f[i].type, KJ_MISSING);
    fx_free(&x);
}

static void test_null_buffers_and_repeated_fields(void **state)
{
    (void)state;
    kbuf a = {0}, b = {0};
    kjson_field f[5] = {{"text", -1, NULL}, {"id", -1, &a}, {"id", -1, &b}, {"id", -1, &a}, {NULL, -1, &b}};
    const char *line = "{\"text\":\"t\",\"id\":\"one\",\"id\":\"two\"}";
    assert_int_equal(extract_exact(line, strlen(line), f, 5, NULL, 0, NULL), 0);
    assert_int_equal(f[0].type, KJ_STRING);
    for (int i = 1; i < 4; i++) assert_int_equal(f[i].type, KJ_STRING);
    assert_int_equal(f[4].type, KJ_MISSING);
    ASSERT_BUF(&a, "two");
    ASSERT_BUF(&b, "two");
    line = "{\"id\":-5}";
    assert_int_equal(extract_exact(line, strlen(line), f, 5, NULL, 0, NULL), 0);
    assert_int_equal(f[2].type, KJ_INTEGER);
    ASSERT_BUF(&a, "-5");
    ASSERT_BUF(&b, "-5");
    line = "{\"id\":[],\"text\":7}";
    assert_int_equal(extract_exact(line, strlen(line), f, 5, NULL, 0, NULL), 0);
    assert_int_equal(f[0].type, KJ_INTEGER);
    assert_int_equal(f[2].type, KJ_OTHER);
    assert_int_equal(f[3].type, KJ_OTHER);
    /* the first of two same-key fields has no buffer: the second still gets the value */
    kjson_field g[2] = {{"text", -1, NULL}, {"text", -1, &b}};
    line = "{\"text\":\"t\\n\"}";
    assert_int_equal(extract_exact(line, strlen(line), g, 2, NULL, 0, NULL), 0);
    assert_int_equal(g[0].type, KJ_STRING);
    assert_int_equal(g[1].type, KJ_STRING);
    ASSERT_BUF(&b, "t\n");
    kbuf_free(&a);
    kbuf_free(&b);
}

/* ---- nesting --------------------------------------------------------------------- */

/* {"a": + k '[' + k ']' + } : k + 1 levels. */
static char *nested_arrays(size_t k, int close, size_t *n)
{
    char *s = xmalloc(2 * k + 16);
    size_t l = 0;
    memcpy(s, "{\"a\":", 5);
    l = 5;
    memset(s + l, '[', k);
    l += k;
    if (close) {
        memset(s + l, ']', k);
        l += k;
        s[l++] = '}';
    }
    *n = l;
    return s;
}

/* {"a":{"a": ... 1 ... }} : d levels of objects. */
static char *nested_objects(size_t d, int close, size_t *n)
{
    char *s = xmalloc(6 * d + 16);
    size_t l = 0;
    for (size_t i = 0; i < d; i++) {
        memcpy(s + l, "{\"a\":", 5);
        l += 5;
    }
    s[l++] = '1';
    if (close) {
        memset(s + l, '}', d);
        l += d;
    }
    *n = l;
    return s;
}

static void test_nesting_limit(void **state)
{
    (void)state;
    size_t n;
    fx x;
    fx_init(&x);
    char *s = nested_arrays(511, 1, &n); /* 512 levels */
    ok_n(&x, s, n);
    free(s);
    s = nested_arrays(512, 1, &n); /* 513 levels: the 512th '[' is at index 516 */
    bad_n(s, n, 517, "nesting deeper than 512");
    free(s);
    s = nested_objects(512, 1, &n);
    ok_n(&x, s, n);
    free(s);
    s = nested_objects(513, 1, &n);
    bad_n(s, n, 5 * 512 + 1, "nesting deeper than 512");
    free(s);
    /* the depth comes back down: many sibling containers are fine */
    kbuf l = {0};
    kbuf_puts(&l, "{\"a\":[");
    for (int i = 0; i < 2000; i++) kbuf_puts(&l, i ? ",[[{\"b\":[]}]]" : "[[{\"b\":[]}]]");
    kbuf_puts(&l, "],\"text\":\"end\"}");
    ok_n(&x, l.data, l.len);
    ASSERT_BUF(&x.text, "end");
    kbuf_free(&l);
    fx_free(&x);
}

static void test_deep_nesting_100k(void **state)
{
    (void)state;
    size_t n;
    char *s = nested_arrays(100000, 1, &n);
    bad_n(s, n, 517, "nesting deeper than 512");
    free(s);
    s = nested_arrays(100000, 0, &n);
    bad_n(s, n, 517, "nesting deeper than 512");
    free(s);
    s = nested_objects(100000, 1, &n);
    bad_n(s, n, 5 * 512 + 1, "nesting deeper than 512");
    free(s);
    s = xmalloc(100000);
    memset(s, '{', 100000); /* {{{...: a key is expected before the depth matters */
    bad_n(s, 100000, 2, "expected a string key");
    memset(s, '[', 100000);
    bad_n(s, 100000, 1, "a JSON line must be an object");
    free(s);
}

/* ---- big and boundary inputs --------------------------------------------------- */

static void test_10mb_string(void **state)
{
    (void)state;
    static const char prose[] = "The quick brown fox jumps over the lazy dog near the river bank. ";
    kbuf line = {0}, expect = {0};
    kbuf_puts(&line, "{\"id\": 1, \"skipped\": \"");
    size_t skipped_at = line.len;
    kbuf_puts(&line, "\", \"text\": \"");
    size_t text_at = line.len, i = 0;
    while (expect.len < 10u << 20) {
        kbuf_append(&line, prose, sizeof prose - 1);
        kbuf_append(&expect, prose, sizeof prose - 1);
        switch (i++ % 16) {
        case 3: kbuf_puts(&line, "caf\\u00e9 "); kbuf_puts(&expect, "caf\xC3\xA9 "); break;
        case 7: kbuf_puts(&line, "\\\"q\\\"\\n"); kbuf_puts(&expect, "\"q\"\n"); break;
        case 11: kbuf_puts(&line, "\\ud83d\\ude00\t"); kbuf_puts(&expect, "\xF0\x9F\x98\x80\t"); break;
        case 13: kbuf_puts(&line, "\xE4\xB8\xAD\\\\"); kbuf_puts(&expect, "\xE4\xB8\xAD\\"); break;
        }
    }
    kbuf_puts(&line, "\"}");
    fx x;
    fx_init(&x);
    ok_n(&x, line.data, line.len);
    assert_int_equal(x.f[0].type, KJ_STRING);
    assert_buf(&x.text, expect.data, expect.len);
    ASSERT_BUF(&x.id, "1");

    /* the same 10 MB skipped (not a wanted key), then unterminated */
    kbuf line2 = {0};
    kbuf_append(&line2, line.data, skipped_at);
    kbuf_append(&line2, line.data + text_at, line.len - 2 - text_at);
    kbuf_puts(&line2, "\", \"text\": \"short\"}");
    ok_n(&x, line2.data, line2.len);
    ASSERT_BUF(&x.text, "short");
    bad_n(line2.data, skipped_at + 100000, (int)skipped_at, "unterminated string");
    bad_n(line.data, line.len - 2, (int)text_at, "unterminated string");
    kbuf_free(&line2);
    kbuf_free(&line);
    kbuf_free(&expect);
    fx_free(&x);
}

/* Every string length 0..99 with a special byte at every position, at a few
 * start offsets, wanted and skipped: exercises the 64/16/8-byte run scanners
 * and their scalar tails at every boundary. */
static void test_run_scanner_boundaries(void **state)
{
    (void)state;
    enum { PLAIN, ESC_N, TAB, CTRL, CTRL_1F, HIGH, QUOTE_ESC, KINDS };
    static const char *const ins[KINDS] = {"", "\\n", "\t", "\x01", "\x1f", "\xC3\xA9", "\\\""};
    static const char *const outs[KINDS] = {"", "\n", "\t", NULL, NULL, "\xC3\xA9", "\""};
    char line[256], expect[256];
    fx x;
    fx_init(&x);
    for (size_t len = 0; len < 100; len++)
        for (size_t pos = 0; pos <= len; pos++)
            for (int kind = 0; kind < KINDS; kind++)
                for (size_t off = 0; off < 3; off++)
                    for (int want = 0; want < 2; want++) {
                        if (kind == PLAIN && pos) continue;
                        int ctrl = !outs[kind];
                        size_t l = 0, e = 0;
                        memset(line, ' ', off);
                        l = off;
                        const char *head = want ? "{\"text\":\"" : "{\"skip\":\"";
                        memcpy(line + l, head, 9);
                        l += 9;
                        memset(line + l, 'a', pos);
                        memset(expect, 'a', pos);
                        l += pos, e += pos;
                        memcpy(line + l, ins[kind], strlen(ins[kind]));
                        l += strlen(ins[kind]);
                        if (outs[kind]) memcpy(expect + e, outs[kind], strlen(outs[kind])), e += strlen(outs[kind]);
                        memset(line + l, 'b', len - pos);
                        memset(expect + e, 'b', len - pos);
                        l += len - pos, e += len - pos;
                        /* unterminated first: the opening quote is at off + 8 */
                        if (!ctrl) bad_n(line, l, (int)off + 9, "unterminated string");
                        memcpy(line + l, "\"}", 2);
                        l += 2;
                        if (ctrl) {
                            bad_n(line, l, (int)(off + 9 + pos + 1), "control character in string");
                            continue;
                        }
                        ok_n(&x, line, l);
                        if (want) assert_buf(&x.text, expect, e);
                        else assert_int_equal(x.f[0].type, KJ_MISSING);
                    }
    fx_free(&x);
}

/* ---- fuzzing against jansson ----------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}
static size_t rnd(size_t n) { return n ? (size_t)(rng() % n) : 0; }

/* Strict UTF-8 (no overlongs, no surrogates, <= U+10FFFF), as jansson wants. */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
        else return 0;
        if (n - i < len) return 0;
        for (size_t j = 1; j < len; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) return 0;
        i += len;
    }
    return 1;
}

static int hexval(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v << 4 | d;
    }
    return v;
}

/* For a line kjson accepted: the same line with jansson's strictness met
 * without changing what kjson extracts but for tab -> space: raw tabs become
 * spaces and lone-surrogate escapes become \uFFFD. Every backslash of an
 * accepted line starts a valid escape inside a string, so the scan is exact. */
static void jansson_compatible(const char *m, size_t n, kbuf *out)
{
    kbuf_clear(out);
    for (size_t i = 0; i < n;) {
        if (m[i] == '\t') {
            kbuf_putc(out, ' ');
            i++;
        } else if (m[i] != '\\') {
            kbuf_putc(out, m[i]);
            i++;
        } else if (m[i + 1] != 'u') {
            kbuf_append(out, m + i, 2);
            i += 2;
        } else {
            int cp = hexval(m + i + 2);
            if (cp >= 0xD800 && cp < 0xDC00) {
                int lo = n - i >= 12 && m[i + 6] == '\\' && m[i + 7] == 'u' ? hexval(m + i + 8) : -1;
                if (lo >= 0xDC00 && lo < 0xE000) {
                    kbuf_append(out, m + i, 12);
                    i += 12;
                    continue;
                }
            }
            if (cp >= 0xD800 && cp < 0xE000) kbuf_puts(out, "\\uFFFD");
            else kbuf_append(out, m + i, 6);
            i += 6;
        }
    }
}

/* kjson's four fields agree with jansson's object j. */
static int same_as_jansson(const fx *x, json_t *j)
{
    for (int i = 0; i < 4; i++) {
        json_t *v = json_object_get(j, x->f[i].key);
        int t = x->f[i].type;
        const kbuf *b = x->f[i].value;
        if (!v) {
            if (t != KJ_MISSING) return 0;
        } else if (json_is_string(v)) {
            if (t != KJ_STRING || b->len != json_string_length(v)
                || memcmp(b->data, json_string_value(v), b->len) != 0)
                return 0;
        } else if (json_is_integer(v)) {
            if (t != KJ_INTEGER || strtoll(b->data, NULL, 10) != json_integer_value(v)) return 0;
        } else if (t != KJ_OTHER) {
            return 0;
        }
        if ((t == KJ_STRING || t == KJ_INTEGER) && (!b->data || b->data[b->len] != '\0')) return 0;
    }
    return 1;
}

static void mutate(kbuf *m)
{
    static const char alphabet[] = "{}[]\",:\\/u0123456789abcdefABCDEF-+.eEtrunlfs \t\n\r";
    static const char *const tokens[] = {
        "\\u", "\\ud800", "\\udc00", "\\ud83d\\ude00", "\\u0000", "\\u00e9", "\"", "[", "{", "}", "]",
        ",", ":", "\"text\":", "\"id\":", "\"t\\u0065xt\":", "1e5", "-0", "01", "true", "null", "\\\\",
        "\\\"", "\xC3\xA9", "\xE4\xB8\xAD", "\xF0\x9F\x98\x80", "[[[", "]]]", "{\"a\":{", "\t"};
    int ops = 1 + (int)rnd(3);
    for (int k = 0; k < ops; k++) {
        size_t n = m->len, at = rnd(n + 1);
        switch (rnd(8)) {
        case 0: /* replace a byte */
            if (n) m->data[rnd(n)] = rnd(8) ? alphabet[rnd(sizeof alphabet - 1)] : (char)rnd(256);
            break;
        case 1: { /* insert a byte */
            char c = rnd(8) ? alphabet[rnd(sizeof alphabet - 1)] : (char)rnd(256);
            kbuf_putc(m, 0);
            memmove(m->data + at + 1, m->data + at, n - at);
            m->data[at] = c;
            break;
        }
        case 2: { /* insert a token */
            const char *t = tokens[rnd(sizeof tokens / sizeof *tokens)];
            size_t tl = strlen(t);
            kbuf_reserve(m, tl);
            memmove(m->data + at + tl, m->data + at, n - at);
            memcpy(m->data + at, t, tl);
            m->len += tl;
            m->data[m->len] = '\0';
            break;
        }
        case 3: /* delete a byte */
        case 4: { /* delete a range */
            if (at == n) break;
            size_t l = 1 + (rnd(2) ? 0 : rnd(n - at));
            memmove(m->data + at, m->data + at + l, n - at - l);
            m->len -= l;
            m->data[m->len] = '\0';
            break;
        }
        case 5: { /* duplicate a range somewhere */
            if (!n) break;
            size_t from = rnd(n), l = 1 + rnd(n - from < 24 ? n - from : 24), to = rnd(n + 1);
            char tmp[24];
            memcpy(tmp, m->data + from, l);
            kbuf_reserve(m, l);
            memmove(m->data + to + l, m->data + to, n - to);
            memcpy(m->data + to, tmp, l);
            m->len += l;
            m->data[m->len] = '\0';
            break;
        }
        case 6: /* truncate */
            m->len = at;
            if (m->data) m->data[m->len] = '\0';
            break;
        default: /* swap two bytes */
            if (n > 1) {
                size_t a = rnd(n), b = rnd(n);
                char c = m->data[a];
                m->data[a] = m->data[b];
                m->data[b] = c;
            }
        }
    }
}

static void fuzz_fail(const char *why, const char *m, size_t n, const fx *x)
{
    print_bytes("mutated line", m, n);
    fprintf(stderr, "%s (kjson: col %d: %s)\n", why, x->col, x->err);
    fail();
}

static void test_fuzz_against_jansson(void **state)
{
    (void)state;
    static const char *const seeds[] = {
        "{\"id\": 7, \"title\": \"doc 7\", \"text\": \"Hello, world. Caf\\u00e9 \\ud83d\\ude00 \\\"quoted\\\" "
        "back\\\\slash\", \"url\": \"http://x.org/\\/p\"}",
        "{\"id\": \"3-17\", \"title\": \"doc 3-17\", \"url\": \"https://example.org/a?b=c\", \"text\": "
        "\"A tab\there and a multibyte caf\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87.\"}",
        "{\"text\": \"dup\", \"meta\": {\"text\": \"nested\", \"n\": [1, -2.5e3, true, false, null, "
        "{\"x\": []}]}, \"text\": \"last\"}",
        "{\"t\\u0065xt\": \"escaped key\", \"id\": -0, \"x\": [[[[]]]], \"y\": {}, \"title\": 1e-7}",
        "{\"text\": \"lone \\ud800 surrogate \\udc00 and nul \\u0000 end\", \"id\": 1234567890123}",
        "{\"a\":1,\"b\":[1,2,{\"c\":\"d\"}],\"text\":\"na\\u00efve \\u4e2d\\u6587 \\/\\b\\f\\n\\r\\t\"}",
        "{ \"text\" : \"\" , \"id\" : 0 , \"url\" : null }",
        "{\"title\": [\"a\", {\"text\": 2}], \"url\": false, \"text\": \"0123456789abcdef0123456789abcdef"
        "0123456789abcdef0123456789abcdef0123456789abcdef\\n0123456789\"}",
    };
    const int iters = 200000;
    int nseeds = (int)(sizeof seeds / sizeof *seeds);
    kbuf m = {0}, norm = {0};
    fx x, y;
    fx_init(&x);
    fx_init(&y);
    long accepted = 0, jansson_objects = 0, compared = 0, normalized = 0, skipped_utf8 = 0,
         jansson_limits = 0, jansson_nul = 0;

    for (int s = 0; s < nseeds; s++) { /* the seeds themselves are valid */
        if (runn(&x, seeds[s], strlen(seeds[s])) != 0) fuzz_fail("seed refused", seeds[s], strlen(seeds[s]), &x);
    }
    for (int it = 0; it < iters; it++) {
        kbuf_clear(&m);
        kbuf_puts(&m, seeds[rnd((size_t)nseeds)]);
        mutate(&m);
        const char *line = m.data ? m.data : "";
        int rc = runn(&x, line, m.len);
        if (rc != 0 && rc != -1) fuzz_fail("bad return value", line, m.len, &x);
        if (rc == -1 && (x.col < 1 || (size_t)x.col > m.len + 1 || !x.err[0]))
            fuzz_fail("error without a column or message", line, m.len, &x);
        if (rc == 0) accepted++;
        if (!utf8_valid((const unsigned char *)line, m.len)) { /* the caller validates UTF-8 */
            skipped_utf8++;
            continue;
        }
        json_error_t je;
        json_t *j = json_loadb(line, m.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        /* jansson accepts an object -> so does kjson, with the same fields. Not
         * for raw NUL bytes: jansson's lexer skips one that follows a token it
         * had to look past (it takes {"a": 7<NUL>} for {"a": 7}) */
        if (j && json_is_object(j) && memchr(line, '\0', m.len)) {
            jansson_nul++;
        } else if (j && json_is_object(j)) {
            jansson_objects++;
            if (rc != 0 && !strstr(x.err, "nesting deeper")) fuzz_fail("jansson accepts, kjson refuses", line, m.len, &x);
            if (rc == 0 && !same_as_jansson(&x, j)) fuzz_fail("fields differ from jansson", line, m.len, &x);
            compared++;
        }
        if (j) json_decref(j);
        if (rc != 0) continue;
        /* kjson accepts -> jansson accepts the jansson-compatible form as an object,
         * and kjson extracts the same from both (but for tabs turned into spaces) */
        jansson_compatible(line, m.len, &norm);
        if (norm.len != m.len || memcmp(norm.data, line, m.len) != 0) normalized++;
        if (runn(&y, norm.data, norm.len) != 0) fuzz_fail("jansson-compatible form refused", norm.data, norm.len, &y);
        for (int i = 0; i < 4; i++) {
            const kbuf *a = x.f[i].value, *b = y.f[i].value;
            if (x.f[i].type != y.f[i].type) fuzz_fail("types differ on the compatible form", line, m.len, &x);
            if (x.f[i].type != KJ_STRING && x.f[i].type != KJ_INTEGER) continue;
            if (a->len != b->len) fuzz_fail("values differ on the compatible form", line, m.len, &x);
            for (size_t k = 0; k < a->len; k++)
                if (a->data[k] != b->data[k] && !(a->data[k] == '\t' && b->data[k] == ' '))
                    fuzz_fail("values differ on the compatible form", line, m.len, &x);
        }
        j = json_loadb(norm.data, norm.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        if (!j) {
            /* limits of jansson's own, not grammar: integer / real range, NUL in keys */
            if (strstr(je.text, "too big") || strstr(je.text, "overflow") || strstr(je.text, "NUL byte in object key")) {
                jansson_limits++;
                continue;
            }
            fprintf(stderr, "jansson: col %d: %s\n", je.column, je.text);
            fuzz_fail("kjson accepts, jansson refuses", norm.data, norm.len, &y);
        }
        if (!json_is_object(j)) fuzz_fail("kjson accepts, jansson sees no object", norm.data, norm.len, &y);
        if (!same_as_jansson(&y, j)) fuzz_fail("fields differ from jansson (compatible form)", norm.data, norm.len, &y);
        json_decref(j);
        compared++;
    }
    printf("fuzz: %d mutations, %ld accepted by kjson, %ld objects for jansson, %ld compared, "
           "%ld made jansson-compatible, %ld invalid UTF-8 skipped, %ld at jansson's limits, "
           "%ld raw NUL accepted by jansson\n",
           iters, accepted, jansson_objects, compared, normalized, skipped_utf8, jansson_limits, jansson_nul);
    /* the comparison must have bitten on both sides */
    assert_true(accepted > iters / 20);
    assert_true(accepted < iters - iters / 5);
    assert_true(normalized > 100);
    assert_true(compared > iters / 20);
    kbuf_free(&m);
    kbuf_free(&norm);
    fx_free(&x);
    fx_free(&y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_fields),
        cmocka_unit_test(test_integer_ids),
        cmocka_unit_test(test_string_id),
        cmocka_unit_test(test_missing_keys_untouched),
        cmocka_unit_test(test_other_types),
        cmocka_unit_test(test_last_duplicate_wins),
        cmocka_unit_test(test_escaped_keys),
        cmocka_unit_test(test_all_escapes),
        cmocka_unit_test(test_surrogate_pairs),
        cmocka_unit_test(test_lone_surrogates),
        cmocka_unit_test(test_nul_escape),
        cmocka_unit_test(test_nested_keys_ignored),
        cmocka_unit_test(test_tab_and_control_bytes),
        cmocka_unit_test(test_high_bytes_copied),
        cmocka_unit_test(test_object_errors),
        cmocka_unit_test(test_array_errors),
        cmocka_unit_test(test_escape_errors),
        cmocka_unit_test(test_unterminated_strings),
        cmocka_unit_test(test_numbers_valid),
        cmocka_unit_test(test_numbers_invalid),
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_top_level_not_object),
        cmocka_unit_test(test_trailing_characters),
        cmocka_unit_test(test_empty_line),
        cmocka_unit_test(test_error_arguments),
        cmocka_unit_test(test_null_buffers_and_repeated_fields),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_deep_nesting_100k),
        cmocka_unit_test(test_10mb_string),
        cmocka_unit_test(test_run_scanner_boundaries),
        cmocka_unit_test(test_fuzz_against_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
