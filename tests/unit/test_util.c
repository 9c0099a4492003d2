/* test_util.c: unit tests of util/ (util.h): the growable byte buffer kbuf
 * (append/putc/printf growth, clear, free), kbuf_json_str escaping, and the
 * XXH3-128 content hashes (khash128, the khash_stream_* streaming form and
 * khash_hex). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

/* Deterministic pseudo-random numbers (xorshift64*), so failures reproduce. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

/* Checks the kbuf invariants: data[len] == '\0' and len < cap. */
static void assert_kbuf_ok(const kbuf *b)
{
    assert_non_null(b->data);
    assert_true(b->len < b->cap);
    assert_int_equal(b->data[b->len], '\0');
}

/* ---- kbuf ----------------------------------------------------------------- */

static void test_kbuf_zeroed_is_empty(void **state)
{
    (void)state;
    kbuf b = {0};
    kbuf_append(&b, "", 0);
    assert_kbuf_ok(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    kbuf_puts(&b, "abc");
    assert_int_equal(b.len, 3);
    assert_string_equal(b.data, "abc");
    kbuf_free(&b);
}

static void test_kbuf_append_growth(void **state)
{
    (void)state;
    kbuf b = {0};
    /* Reference built independently: many appends of varying sizes, so the
     * buffer is reallocated many times (from 64 bytes to > 1 MB). */
    size_t total = 0, cap_changes = 0, last_cap = 0;
    char *ref = malloc(2u << 20);
    assert_non_null(ref);
    unsigned k = 0;
    while (total < (1u << 20) + 12345) {
        char chunk[300];
        size_t n = (size_t)(rng() % sizeof chunk);
        for (size_t i = 0; i < n; i++) chunk[i] = (char)('a' + (k + i) % 26);
        k++;
        kbuf_append(&b, chunk, n);
        memcpy(ref + total, chunk, n);
        total += n;
        assert_int_equal(b.len, total);
        assert_kbuf_ok(&b);
        if (b.cap != last_cap) { cap_changes++; last_cap = b.cap; }
    }
    assert_true(cap_changes >= 10);
    assert_memory_equal(b.data, ref, total);
    assert_int_equal(strlen(b.data), total); /* no stray NUL, terminated */
    free(ref);
    kbuf_free(&b);
}

static void test_kbuf_putc_growth(void **state)
{
    (void)state;
    kbuf b = {0};
    const size_t n = 100000;
    for (size_t i = 0; i < n; i++) {
        kbuf_putc(&b, (char)('0' + i % 10));
        assert_int_equal(b.len, i + 1);
        assert_int_equal(b.data[b.len], '\0');
    }
    assert_kbuf_ok(&b);
    for (size_t i = 0; i < n; i++) assert_int_equal(b.data[i], '0' + (int)(i % 10));
    /* putc of '\0' is stored (len counts it), still terminated after it */
    kbuf_clear(&b);
    kbuf_putc(&b, 'x');
    kbuf_putc(&b, '\0');
    kbuf_putc(&b, 'y');
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "x\0y\0", 4);
    kbuf_free(&b);
}

static void test_kbuf_printf_growth(void **state)
{
    (void)state;
    kbuf b = {0};
    kbuf ref = {0};
    char line[64];
    size_t reallocs = 0, last_cap = 0;
    for (int i = 0; i < 20000; i++) {
        kbuf_printf(&b, "%d:%s;", i, (i % 7) ? "seven" : "");
        int m = snprintf(line, sizeof line, "%d:%s;", i, (i % 7) ? "seven" : "");
        assert_true(m > 0 && (size_t)m < sizeof line);
        kbuf_append(&ref, line, (size_t)m);
        assert_int_equal(b.len, ref.len);
        assert_int_equal(b.data[b.len], '\0');
        if (b.cap != last_cap) { reallocs++; last_cap = b.cap; }
    }
    assert_true(reallocs >= 8);
    assert_kbuf_ok(&b);
    assert_memory_equal(b.data, ref.data, ref.len);
    /* one formatted piece much larger than the current capacity */
    kbuf_clear(&b);
    kbuf_printf(&b, "[%5000d]", 7);
    assert_int_equal(b.len, 5002);
    assert_int_equal(b.data[0], '[');
    assert_int_equal(b.data[4999], ' ');
    assert_int_equal(b.data[5000], '7');
    assert_int_equal(b.data[5001], ']');
    assert_int_equal(b.data[5002], '\0');
    /* an empty format appends nothing */
    size_t before = b.len;
    kbuf_printf(&b, "%s", "");
    assert_int_equal(b.len, before);
    assert_int_equal(b.data[b.len], '\0');
    kbuf_free(&b);
    kbuf_free(&ref);
}

static void test_kbuf_puts_and_mixed(void **state)
{
    (void)state;
    kbuf b = {0};
    kbuf_puts(&b, "hello");
    kbuf_putc(&b, ',');
    kbuf_printf(&b, " %s %03d", "world", 7);
    kbuf_append(&b, "!!", 1);
    assert_int_equal(b.len, strlen("hello, world 007!"));
    assert_string_equal(b.data, "hello, world 007!");
    kbuf_free(&b);
}

static void test_kbuf_reserve(void **state)
{
    (void)state;
    kbuf b = {0};
    kbuf_reserve(&b, 1000);
    assert_non_null(b.data);
    assert_true(b.cap >= 1001);
    assert_int_equal(b.len, 0);
    char *p = b.data;
    size_t cap = b.cap;
    /* appending within the reserved room must not reallocate */
    for (int i = 0; i < 1000; i++) kbuf_putc(&b, 'z');
    assert_ptr_equal(b.data, p);
    assert_int_equal(b.cap, cap);
    assert_int_equal(b.len, 1000);
    assert_int_equal(b.data[1000], '\0');
    kbuf_free(&b);
}

/* util.h: "NUL-terminated whenever len < cap, which every function here keeps
 * true": reserving room in a zeroed kbuf allocates, so data[0] must be '\0'
 * (callers such as ktext_clean_utf8 reserve and may then append nothing). */
static void test_kbuf_reserve_zeroed_terminated(void **state)
{
    (void)state;
    kbuf b = {0};
    kbuf_reserve(&b, 16);
    int ok = b.data != NULL && b.len < b.cap && b.data[0] == '\0';
    kbuf_free(&b);
    assert_true(ok);
    /* after kbuf_clear the invariant holds, and reserving more keeps it */
    kbuf_puts(&b, "abc");
    kbuf_clear(&b);
    kbuf_reserve(&b, 4096);
    ok = b.len == 0 && b.data[0] == '\0';
    kbuf_free(&b);
    assert_true(ok);
}

static void test_kbuf_clear_keeps_capacity(void **state)
{
    (void)state;
    kbuf b = {0};
    for (int i = 0; i < 5000; i++) kbuf_puts(&b, "0123456789");
    assert_int_equal(b.len, 50000);
    size_t cap = b.cap;
    char *p = b.data;
    kbuf_clear(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, cap);
    assert_ptr_equal(b.data, p);
    assert_string_equal(b.data, "");
    /* refilling to the same size needs no new memory */
    for (int i = 0; i < 5000; i++) kbuf_puts(&b, "abcdefghij");
    assert_ptr_equal(b.data, p);
    assert_int_equal(b.cap, cap);
    assert_int_equal(b.len, 50000);
    assert_memory_equal(b.data + 49990, "abcdefghij", 11);
    /* clearing a zeroed kbuf is fine */
    kbuf z = {0};
    kbuf_clear(&z);
    assert_int_equal(z.len, 0);
    assert_null(z.data);
    kbuf_free(&b);
}

static void test_kbuf_free_zeroes(void **state)
{
    (void)state;
    kbuf b = {0};
    kbuf_puts(&b, "something");
    kbuf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    /* freeing twice is harmless; the freed kbuf is reusable */
    kbuf_free(&b);
    assert_null(b.data);
    kbuf_puts(&b, "again");
    assert_string_equal(b.data, "again");
    kbuf_free(&b);
}

/* ---- kbuf_json_str ---------------------------------------------------------- */

static void json_check(const char *in, size_t n, const char *expect)
{
    kbuf b = {0};
    kbuf_json_str(&b, in, n);
    assert_kbuf_ok(&b);
    assert_int_equal(b.len, strlen(expect));
    assert_string_equal(b.data, expect);
    kbuf_free(&b);
}

static void test_json_plain_and_empty(void **state)
{
    (void)state;
    json_check("", 0, "\"\"");
    json_check("hello world", 11, "\"hello world\"");
    json_check("abc", 2, "\"ab\""); /* only n bytes */
    json_check("/ and ' and ~ \x7f", 15, "\"/ and ' and ~ \x7f\"");
}

static void test_json_quotes_backslash(void **state)
{
    (void)state;
    json_check("say \"hi\"", 8, "\"say \\\"hi\\\"\"");
    json_check("a\\b", 3, "\"a\\\\b\"");
    json_check("\"", 1, "\"\\\"\"");
    json_check("\\", 1, "\"\\\\\"");
    json_check("\\\"\\", 3, "\"\\\\\\\"\\\\\"");
}

static void test_json_whitespace_escapes(void **state)
{
    (void)state;
    json_check("a\nb\tc\rd", 7, "\"a\\nb\\tc\\rd\"");
    json_check("\n\n", 2, "\"\\n\\n\"");
    json_check("\r\n\t", 3, "\"\\r\\n\\t\"");
}

static void test_json_control_chars(void **state)
{
    (void)state;
    json_check("\x01", 1, "\"\\u0001\"");
    json_check("x\x1fy", 3, "\"x\\u001fy\"");
    json_check("\b\f\x0b", 3, "\"\\u0008\\u000c\\u000b\"");
    json_check("\x1b[0m", 4, "\"\\u001b[0m\"");
    /* every control char other than \n \t \r is \u00XX with lowercase hex */
    for (int c = 0; c < 0x20; c++) {
        if (c == '\n' || c == '\t' || c == '\r') continue;
        char in[1] = {(char)c};
        char expect[16];
        snprintf(expect, sizeof expect, "\"\\u%04x\"", c);
        json_check(in, 1, expect);
    }
}

static void test_json_utf8_passthrough(void **state)
{
    (void)state;
    const char *s = "caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80 \xe2\x80\xa8";
    kbuf b = {0};
    kbuf_json_str(&b, s, strlen(s));
    assert_int_equal(b.len, strlen(s) + 2);
    assert_int_equal(b.data[0], '"');
    assert_memory_equal(b.data + 1, s, strlen(s));
    assert_int_equal(b.data[b.len - 1], '"');
    kbuf_free(&b);
}

static void test_json_embedded_nul(void **state)
{
    (void)state;
    json_check("a\0b", 3, "\"a\\u0000b\"");
    json_check("\0", 1, "\"\\u0000\"");
    json_check("ab\0", 3, "\"ab\\u0000\"");
}

static void test_json_appends(void **state)
{
    (void)state;
    kbuf b = {0};
    kbuf_puts(&b, "{\"k\":");
    kbuf_json_str(&b, "v\n", 2);
    kbuf_putc(&b, '}');
    assert_string_equal(b.data, "{\"k\":\"v\\n\"}");
    /* a long string with many escapes, across reallocations */
    kbuf_clear(&b);
    kbuf in = {0}, expect = {0};
    kbuf_putc(&expect, '"');
    for (int i = 0; i < 20000; i++) {
        kbuf_puts(&in, "ab\"\n\x02");
        kbuf_puts(&expect, "ab\\\"\\n\\u0002");
    }
    kbuf_putc(&expect, '"');
    kbuf_json_str(&b, in.data, in.len);
    assert_int_equal(b.len, expect.len);
    assert_memory_equal(b.data, expect.data, expect.len + 1);
    kbuf_free(&in);
    kbuf_free(&expect);
    kbuf_free(&b);
}

/* ---- hashing -------------------------------------------------------------- */

static void test_khash_deterministic(void **state)
{
    (void)state;
    uint8_t a[KHASH_LEN + 4], b[KHASH_LEN + 4];
    /* canaries after the 16 bytes stay untouched */
    memset(a, 0xAA, sizeof a);
    memset(b, 0x55, sizeof b);
    khash128("hello", 5, a);
    khash128("hello", 5, b);
    assert_memory_equal(a, b, KHASH_LEN);
    for (int i = KHASH_LEN; i < KHASH_LEN + 4; i++) {
        assert_int_equal(a[i], 0xAA);
        assert_int_equal(b[i], 0x55);
    }
    /* not all zero / not trivially the input */
    uint8_t zero[KHASH_LEN] = {0};
    assert_memory_not_equal(a, zero, KHASH_LEN);
    /* empty input hashes too, and differs from "hello" */
    uint8_t e1[KHASH_LEN], e2[KHASH_LEN];
    khash128("", 0, e1);
    khash128(NULL, 0, e2);
    assert_memory_equal(e1, e2, KHASH_LEN);
    assert_memory_not_equal(e1, a, KHASH_LEN);
}

static void test_khash_known_value(void **state)
{
    (void)state;
    /* XXH3-128 of "" written big-endian (canonical form), as published by
     * xxHash: 99aa06d3014798d86001c324468d497f. */
    uint8_t h[KHASH_LEN];
    char hex[2 * KHASH_LEN + 1];
    khash128("", 0, h);
    khash_hex(h, hex);
    assert_string_equal(hex, "99aa06d3014798d86001c324468d497f");
}

static void test_khash_inputs_differ(void **state)
{
    (void)state;
    enum { N = 64 };
    uint8_t h[N][KHASH_LEN];
    char buf[32];
    for (int i = 0; i < N; i++) {
        int n = snprintf(buf, sizeof buf, "input %d", i);
        khash128(buf, (size_t)n, h[i]);
    }
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++) assert_memory_not_equal(h[i], h[j], KHASH_LEN);
    /* one-bit and one-byte-length differences */
    uint8_t x[KHASH_LEN], y[KHASH_LEN], z[KHASH_LEN];
    khash128("abc", 3, x);
    khash128("abd", 3, y);
    khash128("abc\0", 4, z);
    assert_memory_not_equal(x, y, KHASH_LEN);
    assert_memory_not_equal(x, z, KHASH_LEN);
}

static void test_khash_stream_equals_oneshot(void **state)
{
    (void)state;
    const size_t sizes[] = {0, 1, 15, 16, 17, 128, 129, 240, 241, 1000, 4096, 65537, 300000};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si];
        unsigned char *data = malloc(n ? n : 1);
        assert_non_null(data);
        for (size_t i = 0; i < n; i++) data[i] = (unsigned char)rng();
        uint8_t one[KHASH_LEN];
        khash128(data, n, one);
        for (int round = 0; round < 5; round++) {
            khash_stream *h = khash_stream_new();
            assert_non_null(h);
            size_t off = 0;
            while (off < n) {
                size_t piece = (size_t)(rng() % (round == 0 ? 3 : round == 1 ? 64 : 5000));
                if (piece > n - off) piece = n - off;
                khash_stream_update(h, data + off, piece); /* includes 0-byte pieces */
                off += piece;
            }
            uint8_t st[KHASH_LEN];
            khash_stream_final(h, st);
            khash_stream_free(h);
            assert_memory_equal(st, one, KHASH_LEN);
        }
        free(data);
    }
    khash_stream_free(NULL);
}

static void test_khash_stream_differs(void **state)
{
    (void)state;
    khash_stream *h = khash_stream_new();
    khash_stream_update(h, "ab", 2);
    khash_stream_update(h, "c", 1);
    uint8_t s[KHASH_LEN], o[KHASH_LEN];
    khash_stream_final(h, s);
    khash_stream_free(h);
    khash128("abd", 3, o);
    assert_memory_not_equal(s, o, KHASH_LEN);
    khash128("abc", 3, o);
    assert_memory_equal(s, o, KHASH_LEN);
}

static void test_khash_hex(void **state)
{
    (void)state;
    uint8_t h[KHASH_LEN];
    for (int i = 0; i < KHASH_LEN; i++) h[i] = (uint8_t)(i * 17);
    h[15] = 0xff;
    h[0] = 0x00;
    h[1] = 0xAB;
    h[2] = 0x0F;
    h[3] = 0xF0;
    char out[2 * KHASH_LEN + 2];
    memset(out, 'X', sizeof out);
    khash_hex(h, out);
    assert_int_equal(strlen(out), 32);
    assert_int_equal(out[2 * KHASH_LEN + 1], 'X'); /* nothing written past the NUL */
    assert_memory_equal(out, "00ab0ff0", 8);
    for (int i = 0; i < 32; i++) assert_true((out[i] >= '0' && out[i] <= '9') || (out[i] >= 'a' && out[i] <= 'f'));
    assert_memory_equal(out + 30, "ff", 2);
    for (int i = 4; i < KHASH_LEN - 1; i++) {
        char two[3];
        snprintf(two, sizeof two, "%02x", h[i]);
        assert_memory_equal(out + 2 * i, two, 2);
    }
    /* hex of a real hash: 32 lowercase hex digits matching its bytes */
    uint8_t k[KHASH_LEN];
    khash128("kiln", 4, k);
    khash_hex(k, out);
    assert_int_equal(strlen(out), 32);
    for (int i = 0; i < KHASH_LEN; i++) {
        unsigned v;
        assert_int_equal(sscanf(out + 2 * i, "%2x", &v), 1);
        assert_int_equal(v, k[i]);
        assert_false(out[2 * i] >= 'A' && out[2 * i] <= 'F');
        assert_false(out[2 * i + 1] >= 'A' && out[2 * i + 1] <= 'F');
    }
}

/* ---- small helpers --------------------------------------------------------- */

static void test_xstrndup(void **state)
{
    (void)state;
    char *p = xstrndup("abcdef", 3);
    assert_string_equal(p, "abc");
    free(p);
    p = xstrdup("");
    assert_string_equal(p, "");
    free(p);
    double t0 = know_seconds();
    double t1 = know_seconds();
    assert_true(t1 >= t0);
    assert_true(t0 > 0);
}

/* ill-formed UTF-8 becomes U+FFFD per maximal subpart; controls dropped on request */
static void test_kbuf_put_utf8(void **state)
{
    (void)state;
    kbuf b = {0};
    const char in[] = "a\xde\x9d\x8a\x9b\tz\xc3\xa9\xff";
    kbuf_put_utf8(&b, in, sizeof in - 1, 0);
    assert_string_equal(b.data, "a\xde\x9d\xef\xbf\xbd\xef\xbf\xbd\tz\xc3\xa9\xef\xbf\xbd");
    kbuf_clear(&b);
    kbuf_put_utf8(&b, in, sizeof in - 1, 1);
    assert_string_equal(b.data, "a\xde\x9d\xef\xbf\xbd\xef\xbf\xbdz\xc3\xa9\xef\xbf\xbd");
    kbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kbuf_zeroed_is_empty),
        cmocka_unit_test(test_kbuf_put_utf8),
        cmocka_unit_test(test_kbuf_append_growth),
        cmocka_unit_test(test_kbuf_putc_growth),
        cmocka_unit_test(test_kbuf_printf_growth),
        cmocka_unit_test(test_kbuf_puts_and_mixed),
        cmocka_unit_test(test_kbuf_reserve),
        cmocka_unit_test(test_kbuf_reserve_zeroed_terminated),
        cmocka_unit_test(test_kbuf_clear_keeps_capacity),
        cmocka_unit_test(test_kbuf_free_zeroes),
        cmocka_unit_test(test_json_plain_and_empty),
        cmocka_unit_test(test_json_quotes_backslash),
        cmocka_unit_test(test_json_whitespace_escapes),
        cmocka_unit_test(test_json_control_chars),
        cmocka_unit_test(test_json_utf8_passthrough),
        cmocka_unit_test(test_json_embedded_nul),
        cmocka_unit_test(test_json_appends),
        cmocka_unit_test(test_khash_deterministic),
        cmocka_unit_test(test_khash_known_value),
        cmocka_unit_test(test_khash_inputs_differ),
        cmocka_unit_test(test_khash_stream_equals_oneshot),
        cmocka_unit_test(test_khash_stream_differs),
        cmocka_unit_test(test_khash_hex),
        cmocka_unit_test(test_xstrndup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
