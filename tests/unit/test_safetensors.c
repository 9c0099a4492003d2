/* test_safetensors.c: unit tests of trainer/safetensors.h: a round trip of
 * several dtypes and shapes (scalar, empty, odd sizes) with metadata, the
 * exact header layout (length, padding, __metadata__), the writer's
 * refusals, atomic replacement, and a battery of damaged files (truncated
 * at many places, header length huge or past the end, bad JSON, not an
 * object, overlaps, holes, wrong sizes, duplicate names, unknown dtypes,
 * negative or overflowing dimensions, trailing bytes, ...) each refused with
 * a message naming the file and, where there is one, the tensor.
 * Each run works in its own fresh folder under /tmp. */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "trainer/checkpoint.h"
#include "trainer/safetensors.h"
#include "util/util.h"

static char dir[256];
static char err[1024];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/kiln-test-st-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kckpt_remove_tree(dir);
    return 0;
}

static char *path_of(const char *name)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

static kbuf read_all(const char *p)
{
    kbuf b = {0};
    assert_int_equal(kbuf_read_file(&b, p), 0);
    return b;
}

static void write_bytes(const char *p, const void *data, size_t n)
{
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* A file from a header text (length computed, no padding) and data. */
static void write_raw(const char *p, const char *header, const void *data, size_t n)
{
    kbuf b = {0};
    uint64_t hn = strlen(header);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(hn >> (8 * i));
    kbuf_append(&b, len8, 8);
    kbuf_append(&b, header, hn);
    if (n) kbuf_append(&b, data, n);
    write_bytes(p, b.data, b.len);
    kbuf_free(&b);
}

/* ---- the reference tensors ---------------------------------------------------- */

static float f32[6] = {1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-30f};
static int64_t i64[4] = {1, -2, INT64_MAX, INT64_MIN};
static uint8_t u8[3] = {1, 2, 255};
static double f64 = 3.141592653589793;

static int reference(kst_tensor *t)
{
    memset(t, 0, sizeof *t * 5);
    t[0] = (kst_tensor){.name = "w", .dtype = "F32", .ndim = 2, .shape = {2, 3}, .data = f32, .nbytes = 24};
    t[1] = (kst_tensor){.name = "bytes", .dtype = "U8", .ndim = 1, .shape = {3}, .data = u8, .nbytes = 3};
    t[2] = (kst_tensor){.name = "m.\"quoted\" \xc3\xa9", .dtype = "I64", .ndim = 1, .shape = {4}, .data = i64,
                        .nbytes = 32};
    t[3] = (kst_tensor){.name = "scalar", .dtype = "F64", .ndim = 0, .data = &f64, .nbytes = 8};
    t[4] = (kst_tensor){.name = "empty", .dtype = "F32", .ndim = 2, .shape = {0, 5}, .data = NULL, .nbytes = 0};
    return 5;
}

static void test_round_trip(void **state)
{
    (void)state;
    kst_tensor t[5];
    int n = reference(t);
    const char *meta[] = {"kiln_step", "12", "note", "a\"b\n"};
    char *p = path_of("a.safetensors");
    assert_int_equal(kst_write(p, t, n, meta, 2, err, sizeof err), 0);
    /* layout: LE length, '{', padded so that 8 + N % 8 == 0, no .tmp left */
    kbuf b = read_all(p);
    uint64_t hn = 0;
    for (int i = 0; i < 8; i++) hn |= (uint64_t)(unsigned char)b.data[i] << (8 * i);
    assert_int_equal((8 + hn) % 8, 0);
    assert_int_equal(b.data[8], '{');
    assert_int_equal(b.len, 8 + hn + 24 + 3 + 32 + 8);
    assert_non_null(strstr(b.data + 8, "\"__metadata__\":{\"format\":\"pt\""));
    kbuf_free(&b);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    assert_int_equal(access(tmp, F_OK), -1);

    kst_file *f = kst_open(p, err, sizeof err);
    if (!f) fail_msg("%s", err);
    assert_int_equal(kst_count(f), n);
    for (int i = 0; i < n; i++) {
        const kst_tensor *g = kst_get(f, i);
        assert_string_equal(g->name, t[i].name); /* header order */
        assert_string_equal(g->dtype, t[i].dtype);
        assert_int_equal(g->ndim, t[i].ndim);
        for (int d = 0; d < t[i].ndim; d++) assert_int_equal(g->shape[d], t[i].shape[d]);
        assert_int_equal(g->nbytes, t[i].nbytes);
        if (t[i].nbytes) assert_memory_equal(g->data, t[i].data, t[i].nbytes);
        assert_ptr_equal(kst_find(f, t[i].name), g);
    }
    assert_null(kst_find(f, "nope"));
    assert_null(kst_get(f, n));
    assert_string_equal(kst_meta(f, "format"), "pt");
    assert_string_equal(kst_meta(f, "kiln_step"), "12");
    assert_string_equal(kst_meta(f, "note"), "a\"b\n");
    assert_null(kst_meta(f, "other"));
    assert_string_equal(kst_path(f), p);
    kst_close(f);

    /* writing again replaces the file whole */
    assert_int_equal(kst_write(p, t, 1, NULL, 0, err, sizeof err), 0);
    f = kst_open(p, err, sizeof err);
    assert_non_null(f);
    assert_int_equal(kst_count(f), 1);
    kst_close(f);

    /* no tensors at all is a valid file */
    assert_int_equal(kst_write(p, NULL, 0, NULL, 0, err, sizeof err), 0);
    f = kst_open(p, err, sizeof err);
    assert_non_null(f);
    assert_int_equal(kst_count(f), 0);
    kst_close(f);

    /* a given "format" replaces "pt" */
    const char *fmt[] = {"format", "np"};
    assert_int_equal(kst_write(p, t, 1, fmt, 1, err, sizeof err), 0);
    f = kst_open(p, err, sizeof err);
    assert_string_equal(kst_meta(f, "format"), "np");
    kst_close(f);
    assert_int_equal(kst_dtype_size("BF16"), 2);
    assert_int_equal(kst_dtype_size("F33"), 0);
}

static void test_writer_refuses(void **state)
{
    (void)state;
    kst_tensor t[5];
    char *p = path_of("w.safetensors");
    reference(t);
    t[1].name = "w";
    assert_int_equal(kst_write(p, t, 5, NULL, 0, err, sizeof err), EX_SOFTWARE);
    assert_non_null(strstr(err, "'w' given twice"));
    reference(t);
    t[0].dtype = "F31";
    assert_int_equal(kst_write(p, t, 5, NULL, 0, err, sizeof err), EX_SOFTWARE);
    assert_non_null(strstr(err, "unknown dtype 'F31'"));
    reference(t);
    t[0].nbytes = 20;
    assert_int_equal(kst_write(p, t, 5, NULL, 0, err, sizeof err), EX_SOFTWARE);
    assert_non_null(strstr(err, "tensor 'w': 20 bytes given"));
    reference(t);
    t[0].name = "__metadata__";
    assert_int_equal(kst_write(p, t, 5, NULL, 0, err, sizeof err), EX_SOFTWARE);
    reference(t);
    t[0].shape[0] = -2;
    assert_int_equal(kst_write(p, t, 5, NULL, 0, err, sizeof err), EX_SOFTWARE);
    reference(t);
    t[0].data = NULL;
    assert_int_equal(kst_write(p, t, 5, NULL, 0, err, sizeof err), EX_SOFTWARE);
    reference(t);
    const char *meta[] = {"k", "1", "k", "2"};
    assert_int_equal(kst_write(p, t, 5, meta, 2, err, sizeof err), EX_SOFTWARE);
    assert_non_null(strstr(err, "metadata key 'k' given twice"));
    assert_int_equal(access(p, F_OK), -1); /* nothing written */
    assert_int_equal(kst_write("/nonexistent-kiln-dir/x.safetensors", t, 5, NULL, 0, err, sizeof err),
                     EX_CANTCREAT);
    assert_non_null(strstr(err, "/nonexistent-kiln-dir/x.safetensors.tmp"));
}

/* ---- damaged files ------------------------------------------------------------ */

/* Expects kst_open to refuse p with a message holding the path and frag. */
static void refused(const char *p, const char *frag, const char *what)
{
    kst_file *f = kst_open(p, err, sizeof err);
    if (f) {
        kst_close(f);
        fail_msg("%s: accepted", what);
    }
    if (!strstr(err, p) || !strstr(err, frag)) fail_msg("%s: message \"%s\" lacks \"%s\"", what, err, frag);
}

static void test_truncated(void **state)
{
    (void)state;
    kst_tensor t[5];
    int n = reference(t);
    char *p = path_of("good.safetensors");
    assert_int_equal(kst_write(p, t, n, NULL, 0, err, sizeof err), 0);
    kbuf good = read_all(p);
    uint64_t hn = 0;
    for (int i = 0; i < 8; i++) hn |= (uint64_t)(unsigned char)good.data[i] << (8 * i);
    size_t cuts[] = {0, 1, 7, 8, 9, 8 + hn / 2, 8 + hn - 1, 8 + hn, 8 + hn + 1, 8 + hn + 23, good.len - 1};
    char *q = path_of("cut.safetensors");
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_bytes(q, good.data, cuts[i]);
        char what[64];
        snprintf(what, sizeof what, "cut at %zu of %zu", cuts[i], good.len);
        refused(q, cuts[i] < 8 ? "less than the 8-byte" : cuts[i] < 8 + hn ? "truncated" : "truncated", what);
    }
    /* trailing garbage */
    kbuf more = {0};
    kbuf_append(&more, good.data, good.len);
    kbuf_append(&more, "xx", 2);
    write_bytes(q, more.data, more.len);
    refused(q, "2 bytes after the last tensor", "trailing bytes");
    kbuf_free(&more);
    kbuf_free(&good);
    refused(path_of("missing.safetensors"), "No such file", "missing file");
    refused(dir, "not a regular file", "a folder");
}

static void test_bad_headers(void **state)
{
    (void)state;
    char *p = path_of("bad.safetensors");
    static const unsigned char data[64] = {0};
    struct { const char *header; size_t data; const char *frag; } cases[] = {
        {"[1, 2]", 0, "does not start with '{'"},
        {"{\"a\": ", 0, "not valid JSON"},
        {"{\"a\": 1} x", 0, "not valid JSON"},
        {"{\"a\": 1", 0, "not valid JSON"},
        {"{\"a\": 1}", 0, "tensor 'a': expected an object"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2]}}", 8, "tensor 'a': missing data_offsets"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8], \"x\": 1}}", 8,
         "tensor 'a': unexpected key 'x'"},
        {"{\"a\": {\"dtype\": \"F31\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8, "tensor 'a': unknown dtype \"F31\""},
        {"{\"a\": {\"dtype\": 4, \"shape\": [2], \"data_offsets\": [0, 8]}}", 8, "tensor 'a': unknown dtype 4"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}", 8, "tensor 'a': shape[0]"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2.0], \"data_offsets\": [0, 8]}}", 8, "tensor 'a': shape[0]"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": 2, \"data_offsets\": [0, 8]}}", 8, "tensor 'a': shape must be"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,2], \"data_offsets\": [0, 8]}}", 8,
         "at most 8 integers"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 8]}}", 8,
         "tensor 'a': shape too large"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 12]}}", 12,
         "tensor 'a': data_offsets [0, 12] hold 12 bytes"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 0]}}", 8, "tensor 'a': data_offsets [8, 0]"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [-8, 0]}}", 8, "tensor 'a'"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0]}}", 8, "tensor 'a': data_offsets must be"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 99999999999999999999]}}", 8,
         "not valid JSON"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
         " \"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}", 16, "duplicate"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
         " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 12,
         "tensor 'b': data_offsets [4, 12] overlap tensor 'a'"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
         " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8, "overlap"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
         " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [12, 20]}}", 20,
         "tensor 'b': data bytes 8..12 before it belong to no tensor"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 12,
         "tensor 'a': data bytes 0..4"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 6, "truncated"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 9, "1 bytes after the last"},
        {"{\"__metadata__\": {\"format\": 1}}", 0, "__metadata__: the value of 'format' is not a string"},
        {"{\"__metadata__\": [\"pt\"]}", 0, "__metadata__ is not an object"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, \"b\\u0000\": 1}", 8, "not valid JSON"},
        {"{\"\xff\": 1}", 0, "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_raw(p, cases[i].header, data, cases[i].data);
        char what[64];
        snprintf(what, sizeof what, "case %zu", i);
        refused(p, cases[i].frag, what);
    }
    /* the good one of the same shape is accepted */
    write_raw(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}  ", data, 8);
    kst_file *f = kst_open(p, err, sizeof err);
    if (!f) fail_msg("%s", err);
    kst_close(f);

    /* header length: huge, past the end, zero */
    unsigned char buf[64] = {0};
    uint64_t lens[] = {UINT64_MAX, 100000001, 56 + 1, 0};
    const char *frags[] = {"over the format's limit", "over the format's limit", "truncated", "does not start"};
    for (int i = 0; i < 4; i++) {
        for (int k = 0; k < 8; k++) buf[k] = (unsigned char)(lens[i] >> (8 * k));
        memcpy(buf + 8, "{}", 2);
        write_bytes(p, buf, sizeof buf);
        refused(p, frags[i], "header length");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_headers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
