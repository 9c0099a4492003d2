/* test_sampler.c: unit tests of sampler/: on a real store (the bundled ABC
 * news articles, one a line, tokenized with BERT's uncased vocabulary) the
 * snapshot round trip, each epoch a permutation of its units, seeking, the
 * prefetch stream equal to direct fills whatever the thread count and shard,
 * and the row invariants (layout, specials, masks sorted, labels). */
#define _GNU_SOURCE /* mkdtemp */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ingest/ingest.h"
#include "sampler/sampler.h"
#include "util/util.h"

static char dir[256], db[300], snap[4096];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/kiln-test-sampler-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(db, sizeof db, "%s/t.db", dir);
    kingest_opts o;
    kingest_opts_default(&o);
    o.split = KSPLIT_LINE;
    o.threads = 2;
    kingest_summary sum;
    const char *paths[] = {KILN_SOURCE_DIR "/examples/data/lee_background.txt"};
    if (kingest_run(db, paths, 1, &o, &sum)) return -1;
    kbuf pieces = {0};
    if (kbuf_read_file(&pieces, KILN_SOURCE_DIR "/examples/vocab/bert-base-uncased-vocab.txt")) return -1;
    kstore *s;
    char oerr[256];
    if (kstore_open(db, KSTORE_CREATE, &s, oerr, sizeof oerr)) return -1;
    kvocab_row v = {.name = "bert", .cased = 0, .size = 30522, .pieces = pieces.data,
                    .pieces_len = pieces.len, .max_word_chars = 100, .origin = "test", .active = 1};
    khash128(pieces.data, pieces.len, v.hash);
    int64_t id;
    int rc = kstore_vocab_add(s, &v, &id);
    kstore_close(s);
    kbuf_free(&pieces);
    if (rc) return -1;
    ktokenize_opts to = {.threads = 2};
    ktokenize_summary ts;
    if (ktokenize_run(db, &to, &ts)) return -1;
    if (kstore_open(db, KSTORE_READONLY, &s, oerr, sizeof oerr)) return -1;
    char err[512], sdir[320];
    snprintf(sdir, sizeof sdir, "%s/snaps", dir);
    rc = ksnapshot_build(s, id, 30522, sdir, snap, sizeof snap, err, sizeof err);
    kstore_close(s);
    if (rc) fprintf(stderr, "%s\n", err);
    return rc ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static ksampler *open_sampler(ksnapshot **sn, int objectives, int L)
{
    char err[512];
    *sn = ksnapshot_open(snap, err, sizeof err);
    assert_non_null(*sn);
    ksampler_opts o;
    ksampler_opts_defaults(&o);
    o.objectives = objectives;
    o.seq_len = L;
    o.seed = 42;
    ksampler *sp = ksampler_open(*sn, &o, err, sizeof err);
    if (!sp) fprintf(stderr, "%s\n", err);
    assert_non_null(sp);
    return sp;
}

static void test_snapshot(void **state)
{
    (void)state;
    char err[512];
    ksnapshot *sn = ksnapshot_open(snap, err, sizeof err);
    assert_non_null(sn);
    ksnapshot_info in;
    ksnapshot_get_info(sn, &in);
    assert_true(in.docs > 250);                 /* the ABC articles, one a line */
    assert_true(in.sentences > in.docs);
    assert_true(in.tokens > 50000);
    assert_int_equal(in.vocab_size, 30522);
    ksnapshot_close(sn);
    /* building again reuses the file (same summary) */
    kstore *s;
    assert_int_equal(kstore_open(db, KSTORE_READONLY, &s, err, sizeof err), 0);
    char again[4096], sdir[320];
    snprintf(sdir, sizeof sdir, "%s/snaps", dir);
    assert_int_equal(ksnapshot_build(s, in.vocab_id, 30522, sdir, again, sizeof again, err, sizeof err), 0);
    kstore_close(s);
    assert_string_equal(again, snap);
    /* not a snapshot */
    assert_null(ksnapshot_open(db, err, sizeof err));
    assert_non_null(strstr(err, "not a kiln snapshot"));
}

static void test_permutation(void **state)
{
    (void)state;
    int objs[] = {KOBJ_MLM | KOBJ_SOP, KOBJ_CLM};
    for (int k = 0; k < 2; k++) {
        ksnapshot *sn;
        ksampler *sp = open_sampler(&sn, objs[k], 64);
        uint64_t N = ksampler_epoch_size(sp);
        assert_true(N > 100);
        uint8_t *seen = calloc(N, 1);
        for (uint64_t e = 0; e < 3; e++) {
            memset(seen, 0, N);
            for (uint64_t i = 0; i < N; i++) {
                uint64_t u = ksampler_unit(sp, e, i);
                assert_true(u < N);
                assert_int_equal(seen[u], 0);
                seen[u] = 1;
                /* position e*N + i of epoch 0 is position i of epoch e */
                assert_int_equal(ksampler_unit(sp, 0, e * N + i), u);
            }
        }
        /* epochs are different orders */
        int same = 0;
        for (uint64_t i = 0; i < N; i++) same += ksampler_unit(sp, 0, i) == ksampler_unit(sp, 1, i);
        assert_true(same < (int)(N / 10));
        free(seen);
        ksampler_close(sp);
        ksnapshot_close(sn);
    }
}

static void assert_rows_equal(const ksample_batch *a, int ra, const ksample_batch *b, int rb)
{
    size_t L = (size_t)a->L, P = (size_t)a->P;
    assert_int_equal(a->index[ra], b->index[rb]);
    assert_int_equal(a->lengths[ra], b->lengths[rb]);
    assert_int_equal(a->labels[ra], b->labels[rb]);
    assert_int_equal(a->n_masked[ra], b->n_masked[rb]);
    assert_memory_equal(a->input_ids + ra * L, b->input_ids + rb * L, L * sizeof(int32_t));
    assert_memory_equal(a->token_type_ids + ra * L, b->token_type_ids + rb * L, L);
    assert_memory_equal(a->masked_positions + ra * P, b->masked_positions + rb * P, P * sizeof(int32_t));
    assert_memory_equal(a->masked_ids + ra * P, b->masked_ids + rb * P, P * sizeof(int32_t));
    if (a->entity_ids) {
        assert_memory_equal(a->entity_ids + ra * L, b->entity_ids + rb * L, L * sizeof(int32_t));
        assert_memory_equal(a->entity_labels + ra * L, b->entity_labels + rb * L, L * sizeof(int32_t));
    }
}

static void test_seek_and_stream(void **state)
{
    (void)state;
    ksnapshot *sn;
    ksampler *sp = open_sampler(&sn, KOBJ_NGRAM | KOBJ_NSP | KOBJ_ENTITIES, 128);
    int B = 16, n_batches = 12;
    ksample_batch *all = ksampler_batch_new(sp, B * n_batches * 3);
    assert_int_equal(ksampler_fill(sp, 5, 100, 1, B * n_batches * 3, all, NULL), 0);
    /* seeking: one row alone equals the same position in a long fill */
    ksample_batch *one = ksampler_batch_new(sp, 1);
    int probes[] = {0, 1, 17, 200, B * n_batches * 3 - 1};
    for (size_t k = 0; k < sizeof probes / sizeof probes[0]; k++) {
        assert_int_equal(ksampler_fill(sp, 5, 100 + (uint64_t)probes[k], 1, 1, one, NULL), 0);
        assert_rows_equal(all, probes[k], one, 0);
    }
    /* streams with 1 and 3 threads, shards 0..2 of 3: each row is the fill's row */
    char err[256];
    for (int threads = 1; threads <= 3; threads += 2)
        for (int shard = 0; shard < 3; shard++) {
            ksampler_stream *st = ksampler_stream_new(sp, 5, 100 / 3, B, shard, 3, threads, 4, err, sizeof err);
            assert_non_null(st);
            for (int k = 0; k < n_batches / 3; k++) {
                const ksample_batch *b = ksampler_stream_next(st, NULL);
                assert_int_equal(b->B, B);
                for (int j = 0; j < B; j++) {
                    int64_t pos = (100 / 3 + (int64_t)k * B + j) * 3 + shard;
                    assert_int_equal(b->index[j], pos);
                    if (pos - 100 >= 0 && pos - 100 < B * n_batches * 3)
                        assert_rows_equal(all, (int)(pos - 100), b, j);
                }
            }
            ksampler_stream_free(st);   /* with workers still busy ahead */
        }
    ksampler_batch_free(one);
    ksampler_batch_free(all);
    ksampler_close(sp);
    ksnapshot_close(sn);
}

static void test_row_invariants(void **state)
{
    (void)state;
    int objs[] = {KOBJ_MLM | KOBJ_SOP, KOBJ_WWM | KOBJ_NSP, KOBJ_NGRAM, KOBJ_RTD | KOBJ_ENTITIES, KOBJ_CLM};
    for (size_t k = 0; k < sizeof objs / sizeof objs[0]; k++) {
        ksnapshot *sn;
        ksampler *sp = open_sampler(&sn, objs[k], 96);
        int n = 2000;
        ksample_batch *b = ksampler_batch_new(sp, n);
        ksample_stats st = {0};
        assert_int_equal(ksampler_fill(sp, 0, 0, 1, n, b, &st), 0);
        assert_int_equal(st.special_masked, 0);
        assert_int_equal(st.rows, (uint64_t)n);
        int L = b->L, P = b->P;
        for (int r = 0; r < n; r++) {
            const int32_t *ids = b->input_ids + (size_t)r * L;
            const uint8_t *tt = b->token_type_ids + (size_t)r * L;
            int len = b->lengths[r];
            assert_true(len >= 3 && len <= L);
            for (int t = len; t < L; t++) assert_int_equal(ids[t], b->pad_id);
            if (objs[k] == KOBJ_CLM) {
                assert_int_equal(len, L);
                assert_int_equal(b->n_masked[r], 0);
                continue;
            }
            assert_int_equal(ids[0], b->cls_id);
            assert_int_equal(ids[len - 1], b->sep_id);
            int seps = 0;
            for (int t = 0; t < len; t++) seps += ids[t] == b->sep_id;
            if (objs[k] & (KOBJ_SOP | KOBJ_NSP)) {
                assert_int_equal(seps, 2);
                assert_int_equal(tt[len - 1], 1);
                assert_true(b->labels[r] >= -1 && b->labels[r] <= 1);
            } else {
                assert_int_equal(b->labels[r], -1);
                assert_int_equal(tt[len - 1], 0);
            }
            int nm = b->n_masked[r];
            assert_true(nm >= 1 && nm <= P);
            const int32_t *mp = b->masked_positions + (size_t)r * P, *mi = b->masked_ids + (size_t)r * P;
            const float *mw = b->masked_weights + (size_t)r * P;
            for (int j = 0; j < P; j++) {
                if (j < nm) {
                    assert_true(mp[j] > 0 && mp[j] < len - 1);
                    if (j) assert_true(mp[j] > mp[j - 1]);
                    assert_true(mi[j] != b->cls_id && mi[j] != b->sep_id && mi[j] != b->pad_id);
                    assert_true(mw[j] == 1.0f);
                } else {
                    assert_true(mw[j] == 0.0f && mp[j] == 0 && mi[j] == b->pad_id);
                }
            }
        }
        ksampler_batch_free(b);
        ksampler_close(sp);
        ksnapshot_close(sn);
    }
}

static void test_bad_options(void **state)
{
    (void)state;
    char err[512];
    ksnapshot *sn = ksnapshot_open(snap, err, sizeof err);
    assert_non_null(sn);
    ksampler_opts o;
    ksampler_opts_defaults(&o);
    o.objectives = KOBJ_SOP | KOBJ_NSP | KOBJ_MLM;
    assert_null(ksampler_open(sn, &o, err, sizeof err));
    assert_non_null(strstr(err, "exclude"));
    o.objectives = KOBJ_MLM;
    o.seq_len = 4;
    assert_null(ksampler_open(sn, &o, err, sizeof err));
    o.seq_len = 128;
    o.valid_fraction = 0;   /* an empty validation split */
    o.split = 1;
    assert_null(ksampler_open(sn, &o, err, sizeof err));
    assert_non_null(strstr(err, "validation"));
    ksnapshot_close(sn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot),
        cmocka_unit_test(test_permutation),
        cmocka_unit_test(test_seek_and_stream),
        cmocka_unit_test(test_row_invariants),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
