/* test_dataset.c: unit tests of sampler/dataset on real data (a slice of
 * SST-2 in examples/data/sst2/, BERT's uncased vocabulary from
 * examples/vocab/) and on small files written into a fresh mkdtemp
 * directory: token ids of a known sentence, label sets and counts, pairs
 * with token types, longest_first truncation, the epoch order, batch rows,
 * free-text rows, and every bad-input case with its exit code and a message
 * naming FILE:LINE. Expected ids are vocabulary line numbers - 1. */
#define _GNU_SOURCE /* mkdtemp */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "sampler/dataset.h"
#include "util/util.h"

#define SST2 KILN_SOURCE_DIR "/examples/data/sst2/"

static kwp_vocab *vocab;
static char dir[256];

static int setup(void **state)
{
    (void)state;
    kbuf b = {0};
    if (kbuf_read_file(&b, KILN_SOURCE_DIR "/examples/vocab/bert-base-uncased-vocab.txt")) return -1;
    char err[256];
    int rc = kwp_vocab_load(b.data, b.len, 0, &vocab, err, sizeof err);
    kbuf_free(&b);
    if (rc) return -1;
    snprintf(dir, sizeof dir, "/tmp/kiln-test-dataset-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kwp_vocab_free(vocab);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Writes n bytes to dir/name and its path to path (cap bytes). */
static void write_file(const char *name, const char *data, size_t n, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}
#define WRITE(name, lit, path) write_file(name, lit, sizeof(lit) - 1, path, sizeof path)

/* Loads and expects failure with code rc and a message starting "PATH:LINE: "
 * (line > 0), "PATH" (line 0) or anything (line < 0), containing needle. */
static void expect_error(const kdataset_opts *o, const char *path, int rc, long line, const char *needle)
{
    kdataset *d = (kdataset *)1;
    char err[512] = "", want[400];
    int got = kdataset_load(o, path, vocab, &d, err, sizeof err);
    if (got != rc) fail_msg("%s: got rc %d (%s), want %d", path, got, err, rc);
    assert_null(d);
    if (line > 0) snprintf(want, sizeof want, "%s:%ld: ", path, line);
    else if (line == 0) snprintf(want, sizeof want, "%s", path);
    else want[0] = '\0';   /* an option error: no file to name */
    if (strncmp(err, want, strlen(want)) != 0) fail_msg("message [%s] does not start with [%s]", err, want);
    if (needle && !strstr(err, needle)) fail_msg("message [%s] lacks [%s]", err, needle);
}

static kdataset *load_ok(const kdataset_opts *o, const char *path)
{
    kdataset *d = NULL;
    char err[512] = "";
    int rc = kdataset_load(o, path, vocab, &d, err, sizeof err);
    if (rc) fail_msg("%s: rc %d: %s", path, rc, err);
    assert_non_null(d);
    return d;
}

static void expect_ids(const int32_t *got, int n, const int32_t *want, int wn)
{
    assert_int_equal(n, wn);
    for (int i = 0; i < n; i++)
        if (got[i] != want[i]) fail_msg("id %d: got %d, want %d", i, got[i], want[i]);
}

static void test_sst2_slice(void **state)
{
    (void)state;
    kdataset_opts o;
    kdataset_opts_defaults(&o);
    kdataset *tr = load_ok(&o, SST2 "train.tsv");
    assert_int_equal(kdataset_count(tr), 2000);
    assert_int_equal(kdataset_num_labels(tr), 2);
    assert_string_equal(kdataset_label_name(tr, 0), "0");
    assert_string_equal(kdataset_label_name(tr, 1), "1");
    assert_null(kdataset_label_name(tr, 2));
    assert_false(kdataset_has_pair(tr));
    int64_t c[2] = {0, 0};
    for (int64_t i = 0; i < kdataset_count(tr); i++) c[kdataset_label(tr, i)]++;
    assert_int_equal(c[0], 887);
    assert_int_equal(c[1], 1113);
    /* line 2: "when are bears bears and \t1" */
    const int32_t *a, *b;
    int na, nb;
    kdataset_tokens(tr, 0, &a, &na, &b, &nb);
    const int32_t want0[] = {2043, 2024, 6468, 6468, 1998};
    expect_ids(a, na, want0, 5);
    assert_int_equal(nb, 0);
    assert_int_equal(kdataset_line(tr, 0), 2);
    assert_int_equal(kdataset_label(tr, 0), 1);
    assert_true(isnan(kdataset_target(tr, 0)));
    /* line 3: "kids , spirit \t1" */
    kdataset_tokens(tr, 1, &a, &na, &b, &nb);
    const int32_t want1[] = {4268, 1010, 4382};
    expect_ids(a, na, want1, 3);

    /* the dev slice with the train file's label set */
    kdataset_opts od = o;
    od.label_names = kdataset_label_names(tr);
    od.n_label_names = kdataset_num_labels(tr);
    kdataset *dev = load_ok(&od, SST2 "dev.tsv");
    assert_int_equal(kdataset_count(dev), 300);
    c[0] = c[1] = 0;
    for (int64_t i = 0; i < kdataset_count(dev); i++) c[kdataset_label(dev, i)]++;
    assert_int_equal(c[0], 129);
    assert_int_equal(c[1], 171);

    /* a batch of rows 1 and 0: [CLS] ids [SEP] [PAD]..., types 0 */
    ksample_batch *bt = kdataset_batch_new(vocab, 4, 16);
    assert_non_null(bt);
    const int64_t rows[] = {1, 0};
    assert_int_equal(kdataset_fill(tr, rows, 2, bt), EX_SOFTWARE); /* L 16 < seq_len 128 */
    kdataset_batch_free(bt);
    bt = kdataset_batch_new(vocab, 4, 128);
    assert_int_equal(kdataset_fill(tr, rows, 2, bt), 0);
    assert_int_equal(bt->version, KSAMPLE_BATCH_VERSION);
    assert_int_equal(bt->objectives, KOBJ_CLASSIFY);
    assert_int_equal(bt->B, 2);
    assert_int_equal(bt->P, 0);
    const int32_t row1[] = {101, 2043, 2024, 6468, 6468, 1998, 102, 0, 0};
    expect_ids(bt->input_ids + 128, 9, row1, 9);
    assert_int_equal(bt->lengths[0], 5);
    assert_int_equal(bt->lengths[1], 7);
    assert_int_equal(bt->index[1], 0);
    assert_int_equal(bt->labels[0], 1);
    for (int t = 0; t < 128; t++) assert_int_equal(bt->token_type_ids[128 + t], 0);
    assert_int_equal(bt->input_ids[127], 0);
    const int64_t bad_rows[] = {2000};
    assert_int_equal(kdataset_fill(tr, bad_rows, 1, bt), EX_SOFTWARE);
    const int64_t five[] = {0, 1, 2, 3, 4};
    assert_int_equal(kdataset_fill(tr, five, 5, bt), EX_SOFTWARE); /* over capacity */
    kdataset_batch_free(bt);

    /* num_labels that disagrees with the file's label set */
    kdataset_opts o3 = o;
    o3.num_labels = 3;
    expect_error(&o3, SST2 "train.tsv", EX_DATAERR, 0, "2 distinct labels");
    /* a single label is no classification (found by fuzzing: it read as K = 1, regression) */
    char one[512];
    WRITE("one-label.tsv", "sentence\tlabel\ngood\t1\nfine\t1\n", one);
    expect_error(&o, one, EX_DATAERR, 0, "at least 2 distinct labels");
    /* a missing file */
    expect_error(&o, SST2 "nonexistent.tsv", EX_NOINPUT, 0, NULL);
    kdataset_free(dev);
    kdataset_free(tr);
}

static void test_pairs_and_truncation(void **state)
{
    (void)state;
    char p[512];
    WRITE("pairs.tsv",
          "index\tsentence1\tsentence2\tlabel\r\n"
          "0\thello world\tgood morning\tentailment\r\n"
          "1\ta b c d e f\tx y\tnot_entailment\r\n"
          "2\ta b c d\tx y x y\tentailment\n",
          p);
    kdataset_opts o;
    kdataset_opts_defaults(&o);
    o.text_column = "sentence1";
    o.text_pair_column = "sentence2";
    o.seq_len = 8;   /* budget 5 ids beside [CLS] [SEP] [SEP] */
    kdataset *d = load_ok(&o, p);
    assert_int_equal(kdataset_count(d), 3);
    assert_true(kdataset_has_pair(d));
    assert_string_equal(kdataset_label_name(d, 0), "entailment"); /* "\r" stripped, sorted by bytes */
    assert_string_equal(kdataset_label_name(d, 1), "not_entailment");
    const int32_t *a, *b;
    int na, nb;
    kdataset_tokens(d, 0, &a, &na, &b, &nb);
    assert_int_equal(na, 2);
    assert_int_equal(nb, 2);
    /* 6 + 2 -> the longer A loses 3: 3 + 2 */
    kdataset_tokens(d, 1, &a, &na, &b, &nb);
    assert_int_equal(na, 3);
    assert_int_equal(nb, 2);
    const int32_t abc[] = {1037, 1038, 1039};
    expect_ids(a, na, abc, 3);
    /* 4 + 4 -> tie takes from B, then A, then B: 3 + 2 */
    kdataset_tokens(d, 2, &a, &na, &b, &nb);
    assert_int_equal(na, 3);
    assert_int_equal(nb, 2);
    assert_int_equal(kdataset_truncated(d), 2);

    ksample_batch *bt = kdataset_batch_new(vocab, 3, 8);
    const int64_t rows[] = {0, 1, 2};
    assert_int_equal(kdataset_fill(d, rows, 3, bt), 0);
    const int32_t r0[] = {101, 7592, 2088, 102, 2204, 2851, 102, 0};
    const uint8_t t0[] = {0, 0, 0, 0, 1, 1, 1, 0};
    expect_ids(bt->input_ids, 8, r0, 8);
    for (int t = 0; t < 8; t++) assert_int_equal(bt->token_type_ids[t], t0[t]);
    assert_int_equal(bt->lengths[0], 7);
    assert_int_equal(bt->lengths[1], 8);
    const int32_t r1[] = {101, 1037, 1038, 1039, 102, 1060, 1061, 102};
    expect_ids(bt->input_ids + 8, 8, r1, 8);
    assert_int_equal(bt->labels[1], 1);

    /* the same pair as free text for `kiln classify` */
    kwp_tok *tok = kwp_tok_new(vocab, 0);
    int cut = -1;
    assert_int_equal(kdataset_encode_row(tok, "Hello World", 11, "good morning", 12, bt, 2, &cut), 0);
    assert_int_equal(cut, 0);
    expect_ids(bt->input_ids + 16, 8, r0, 8);
    for (int t = 0; t < 8; t++) assert_int_equal(bt->token_type_ids[16 + t], t0[t]);
    assert_int_equal(bt->labels[2], -1);
    assert_true(isnan(bt->targets[2]));
    /* a single text of 7 ids keeps L - 2 = 6 */
    assert_int_equal(kdataset_encode_row(tok, "a b c d e f x", 13, NULL, 0, bt, 0, &cut), 0);
    assert_int_equal(cut, 1);
    assert_int_equal(bt->lengths[0], 8);
    assert_int_equal(bt->input_ids[7], 102);
    assert_int_equal(bt->input_ids[6], 1042);
    assert_int_equal(kdataset_encode_row(tok, "a", 1, NULL, 0, bt, 3, &cut), EX_SOFTWARE);
    kwp_tok_free(tok);
    kdataset_batch_free(bt);
    kdataset_free(d);

    /* single sentences: seq_len 5 keeps 3 ids */
    WRITE("long.tsv", "sentence\tlabel\na b c d e f\t0\nx\t1\n", p);
    kdataset_opts_defaults(&o);
    o.seq_len = 5;
    d = load_ok(&o, p);
    kdataset_tokens(d, 0, &a, &na, &b, &nb);
    expect_ids(a, na, abc, 3);
    kdataset_tokens(d, 1, &a, &na, &b, &nb);
    assert_int_equal(na, 1);
    assert_int_equal(kdataset_truncated(d), 1);
    kdataset_free(d);
}

static void test_label_sets(void **state)
{
    (void)state;
    char p[512];
    kdataset_opts o;
    kdataset_opts_defaults(&o);
    /* integers sort numerically, not as strings */
    WRITE("num.tsv", "sentence\tlabel\na\t10\nb\t2\nc\t1\nd\t2\n", p);
    kdataset *d = load_ok(&o, p);
    assert_int_equal(kdataset_num_labels(d), 3);
    assert_string_equal(kdataset_label_name(d, 0), "1");
    assert_string_equal(kdataset_label_name(d, 1), "2");
    assert_string_equal(kdataset_label_name(d, 2), "10");
    assert_int_equal(kdataset_label(d, 0), 2);
    assert_int_equal(kdataset_label(d, 3), 1);
    kdataset_free(d);
    /* strings sort by bytes */
    WRITE("mnli.jsonl",
          "{\"sentence1\": \"a\", \"sentence2\": \"b\", \"gold_label\": \"neutral\"}\n"
          "\n"
          "{\"sentence1\": \"c\", \"sentence2\": \"d\", \"gold_label\": \"entailment\"}\n"
          "{\"sentence1\": \"e\", \"sentence2\": \"f\", \"gold_label\": \"contradiction\"}\n",
          p);
    o.text_column = "sentence1";
    o.text_pair_column = "sentence2";
    o.label_column = "gold_label";
    o.num_labels = 3;
    d = load_ok(&o, p);
    assert_int_equal(kdataset_count(d), 3);
    assert_string_equal(kdataset_label_name(d, 0), "contradiction");
    assert_string_equal(kdataset_label_name(d, 2), "neutral");
    assert_int_equal(kdataset_label(d, 0), 2);
    assert_int_equal(kdataset_line(d, 1), 3); /* the blank line 2 is skipped */
    kdataset_free(d);
    /* a given set fixes the order; JSON integer labels match names "0" "1" */
    WRITE("given.jsonl", "{\"sentence\": \"a\", \"label\": 1}\n{\"sentence\": \"b\", \"label\": 0}\n", p);
    kdataset_opts_defaults(&o);
    const char *names[] = {"1", "0"};
    o.label_names = names;
    o.n_label_names = 2;
    d = load_ok(&o, p);
    assert_int_equal(kdataset_label(d, 0), 0);
    assert_int_equal(kdataset_label(d, 1), 1);
    kdataset_free(d);
    o.num_labels = 3;
    expect_error(&o, p, EX_USAGE, -1, "2 label names"); /* 2 names for 3 labels */
    /* regression (STS-B) */
    WRITE("stsb.tsv", "sentence1\tsentence2\tscore\na\tb\t3.8\nc\td\t0\n", p);
    kdataset_opts_defaults(&o);
    o.text_column = "sentence1";
    o.text_pair_column = "sentence2";
    o.label_column = "score";
    o.num_labels = 1;
    d = load_ok(&o, p);
    assert_int_equal(kdataset_num_labels(d), 1);
    assert_true(fabsf(kdataset_target(d, 0) - 3.8f) < 1e-6f);
    assert_int_equal(kdataset_label(d, 0), -1);
    assert_null(kdataset_label_name(d, 0));
    ksample_batch *bt = kdataset_batch_new(vocab, 2, 128);
    const int64_t rows[] = {1, 0};
    assert_int_equal(kdataset_fill(d, rows, 2, bt), 0);
    assert_true(bt->targets[0] == 0.0f);
    assert_true(fabsf(bt->targets[1] - 3.8f) < 1e-6f);
    assert_int_equal(bt->labels[1], -1);
    kdataset_batch_free(bt);
    kdataset_free(d);
    /* unlabelled (a GLUE test file): no label column needed */
    WRITE("test.tsv", "index\tsentence\n0\ta\n1\tb\n", p);
    kdataset_opts_defaults(&o);
    o.label_column = NULL;
    d = load_ok(&o, p);
    assert_int_equal(kdataset_count(d), 2);
    assert_int_equal(kdataset_label(d, 1), -1);
    kdataset_free(d);
}

static void test_order(void **state)
{
    (void)state;
    enum { N = 1000 };
    int64_t a[N], b[N], c[N];
    kdataset_order(N, 42, 0, a);
    kdataset_order(N, 42, 0, b);
    kdataset_order(N, 42, 1, c);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
    kdataset_order(N, 43, 0, b);
    assert_memory_not_equal(a, b, sizeof a);
    /* a permutation */
    char seen[N] = {0};
    for (int i = 0; i < N; i++) {
        assert_true(a[i] >= 0 && a[i] < N);
        assert_int_equal(seen[a[i]], 0);
        seen[a[i]] = 1;
    }
    /* not the identity, and each position roughly uniform over many epochs */
    int fixed = 0;
    for (int i = 0; i < N; i++) fixed += a[i] == i;
    assert_true(fixed < 10);
    int first[4] = {0};
    for (uint64_t e = 0; e < 4000; e++) {
        int64_t x[4];
        kdataset_order(4, 7, e, x);
        first[x[0]]++;
    }
    for (int k = 0; k < 4; k++) assert_true(first[k] > 850 && first[k] < 1150);
    kdataset_order(0, 1, 1, a); /* n = 0 is a no-op */
    kdataset_order(1, 1, 1, a);
    assert_int_equal(a[0], 0);
}

static void test_bad_input(void **state)
{
    (void)state;
    char p[512];
    kdataset_opts o;
    kdataset_opts_defaults(&o);
    /* a missing column in the header */
    WRITE("nocol.tsv", "text\tlabel\na\t0\n", p);
    expect_error(&o, p, EX_DATAERR, 1, "\"sentence\"");
    /* a missing field in a JSON object */
    WRITE("nofield.jsonl", "{\"sentence\": \"a\", \"label\": 0}\n{\"sentence\": \"b\", \"label\": 1}\n"
                           "{\"sentence\": \"c\"}\n", p);
    expect_error(&o, p, EX_DATAERR, 3, "\"label\"");
    /* malformed JSON */
    WRITE("broken.jsonl", "{\"sentence\": \"a\", \"label\": 0}\n{\"sentence\": \"b\", \"label\": 1\n", p);
    expect_error(&o, p, EX_DATAERR, 2, "malformed JSON");
    /* a label outside the given set */
    WRITE("outside.tsv", "sentence\tlabel\na\t0\nb\t2\nc\t1\n", p);
    const char *names[] = {"0", "1"};
    kdataset_opts og = o;
    og.label_names = names;
    og.n_label_names = 2;
    expect_error(&og, p, EX_DATAERR, 3, "\"2\"");
    /* an empty file, a header without examples */
    WRITE("empty.tsv", "", p);
    expect_error(&o, p, EX_DATAERR, 1, "empty");
    WRITE("header.tsv", "sentence\tlabel\n", p);
    expect_error(&o, p, EX_DATAERR, 1, "no examples");
    WRITE("empty.jsonl", "\n\n", p);
    expect_error(&o, p, EX_DATAERR, 2, "no examples");
    /* invalid UTF-8 (a lone continuation byte, an overlong NUL) on line 3 */
    WRITE("badutf8.tsv", "sentence\tlabel\nok\t0\nbad \x80 byte\t1\n", p);
    expect_error(&o, p, EX_DATAERR, 3, "UTF-8");
    WRITE("overlong.jsonl", "{\"sentence\": \"a\", \"label\": 0}\n{\"sentence\": \"\xC0\x80\", \"label\": 0}\n", p);
    expect_error(&o, p, EX_DATAERR, 2, "UTF-8");
    /* a line with the wrong number of fields */
    WRITE("fields.tsv", "sentence\tlabel\na\t0\nb\t1\nc\td\t1\n", p);
    expect_error(&o, p, EX_DATAERR, 4, "3 tab-separated fields");
    /* a non-numeric regression label */
    WRITE("reg.tsv", "sentence\tlabel\na\t1.5\nb\thigh\n", p);
    kdataset_opts orr = o;
    orr.num_labels = 1;
    expect_error(&orr, p, EX_DATAERR, 3, "\"high\"");
    /* no format from the extension; a bad seq_len */
    WRITE("data.csv", "sentence\tlabel\na\t0\nb\t1\n", p); /* two labels: one is no classification */
    expect_error(&o, p, EX_USAGE, 0, "extension");
    kdataset_opts of = o;
    of.format = KDS_FORMAT_TSV;
    kdataset *d = load_ok(&of, p);  /* forced */
    kdataset_free(d);
    of.seq_len = 2;
    expect_error(&of, p, EX_USAGE, -1, NULL);
}

/* U+2028 (LINE SEPARATOR), U+0085 and a lone CR inside a sentence are text,
 * not line ends: each such line is one example, and lines after it keep
 * their numbers. */
static void test_unicode_separators(void **state)
{
    (void)state;
    char p[512];
    WRITE("sep.tsv",
          "sentence\tlabel\n"
          "first half\xE2\x80\xA8second half\t1\n"
          "next\xC2\x85line\rstill\t0\n"
          "good\t1\n",
          p);
    kdataset_opts o;
    kdataset_opts_defaults(&o);
    kdataset *d = load_ok(&o, p);
    assert_int_equal(kdataset_count(d), 3);
    assert_int_equal(kdataset_line(d, 2), 4);
    assert_int_equal(kdataset_label(d, 0), 1);
    assert_int_equal(kdataset_label(d, 1), 0);
    const int32_t *a, *b;
    int na, nb;
    kdataset_tokens(d, 2, &a, &na, &b, &nb);
    const int32_t good[] = {2204};
    expect_ids(a, na, good, 1);
    kdataset_tokens(d, 0, &a, &na, &b, &nb);
    assert_int_equal(na, 4); /* first half second half */
    kdataset_free(d);
    /* the same in JSONL: U+2028 raw inside a JSON string */
    WRITE("sep.jsonl", "{\"sentence\": \"a\xE2\x80\xA8" "b\", \"label\": \"x\"}\n{\"sentence\": \"c\", \"label\": \"y\"}\n",
          p);
    d = load_ok(&o, p);
    assert_int_equal(kdataset_count(d), 2);
    kdataset_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sst2_slice), cmocka_unit_test(test_pairs_and_truncation),
        cmocka_unit_test(test_label_sets), cmocka_unit_test(test_order),
        cmocka_unit_test(test_bad_input),  cmocka_unit_test(test_unicode_separators),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
