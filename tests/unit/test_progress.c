/* test_progress.c: unit tests of the incremental tokenizing and linking
 * (issue #18; store/progress.c, schemas/005_progress.sql, ingest/tokenize.c,
 * kg/link.c): the cursors and counts of vocab_progress after kiln tokenize
 * and kiln kg link, the piece counts equal to a recount of every token, the
 * once-only recount of a store tokenized before schema 5, a second insert of
 * a document's tokens is a no-op for the counts, the migration of a store at
 * schema 4 (tokenized: not counted until first use; not: counted), and the
 * work of one new file
 * (tokenize + link through a kept linker, as the daemon does) is the same in
 * a store ten times bigger: counted in SQLite virtual-machine steps
 * (kstore_vm_steps), not in seconds. The same measure with the cursor reset
 * (the old scan from id 0) grows with the store: the check can fail.
 *
 * Corpus: documents made of real sentences (examples/data/lee_background.txt),
 * BERT's uncased vocabulary (examples/vocab), a small knowledge graph of
 * names that occur in them. Every test works in a fresh mkdtemp directory. */
#define _XOPEN_SOURCE 700
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ingest/ingest.h"
#include "kg/kg.h"
#include "schemas/schemas.h"
#include "store/store.h"
#include "text/wordpiece.h"
#include "util/util.h"

typedef struct fx {
    char dir[64];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f) return -1;
    strcpy(f->dir, "/tmp/kiln-test-XXXXXX");
    if (!mkdtemp(f->dir)) { free(f); return -1; }
    *state = f;
    return 0;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static int teardown(void **state)
{
    fx *f = *state;
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* ---- data ------------------------------------------------------------------ */

/* The sentences of the real news articles (owned by the caller). */
static char **sentences(size_t *n)
{
    kbuf t = {0};
    assert_int_equal(kbuf_read_file(&t, KILN_SOURCE_DIR "/examples/data/lee_background.txt"), 0);
    char **v = NULL;
    size_t cap = 0;
    *n = 0;
    char *save = NULL;
    for (char *s = strtok_r(t.data, ".\n", &save); s; s = strtok_r(NULL, ".\n", &save)) {
        while (*s == ' ') s++;
        if (strlen(s) < 30 || strchr(s, '"') || strchr(s, '\\')) continue;
        if (*n == cap) { cap = cap ? 2 * cap : 1024; v = realloc(v, cap * sizeof *v); }
        v[(*n)++] = strdup(s);
    }
    kbuf_free(&t);
    assert_true(*n > 500);
    return v;
}

/* Writes dir/name.jsonl: docs documents tagged tag, each 3 real sentences. */
static void write_jsonl(const char *dir, const char *name, const char *tag, size_t docs, char **sent, size_t ns,
                        char *path, size_t len)
{
    snprintf(path, len, "%s/%s.jsonl", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (size_t i = 0; i < docs; i++)
        fprintf(f, "{\"id\": %zu, \"text\": \"%s document %zu. %s. %s. %s.\"}\n", i, tag, i, sent[(7 * i) % ns],
                sent[(7 * i + 1) % ns], sent[(7 * i + 2) % ns]);
    assert_int_equal(fclose(f), 0);
}

static void ingest(const char *db, const char *path)
{
    kingest_opts o;
    kingest_opts_default(&o);
    o.threads = 1;
    kingest_summary sum;
    const char *paths[1] = {path};
    assert_int_equal(kingest_run(db, paths, 1, &o, &sum), 0);
}

static void add_vocab(kstore *s)
{
    kbuf t = {0}, canon = {0};
    assert_int_equal(kbuf_read_file(&t, KILN_SOURCE_DIR "/examples/vocab/bert-base-uncased-vocab.txt"), 0);
    kwp_vocab *v;
    char err[256];
    assert_int_equal(kwp_vocab_load(t.data, t.len, 0, &v, err, sizeof err), 0);
    kwp_vocab_text(v, &canon);
    kvocab_row r = {0};
    r.name = "bert";
    r.size = (int64_t)kwp_vocab_size(v);
    r.pieces = canon.data;
    r.pieces_len = canon.len;
    khash128(canon.data, canon.len, r.hash);
    r.max_word_chars = 100;
    r.origin = "test";
    int64_t id;
    assert_int_equal(kstore_vocab_add(s, &r, &id), 0);
    kwp_vocab_free(v);
    kbuf_free(&t);
    kbuf_free(&canon);
}

/* A small knowledge graph whose names occur in the news articles. */
static void add_kg(kstore *s, const char *dir)
{
    static const char *const names[] = {"Afghanistan", "Pakistan", "Australia", "Sydney", "United States",
                                        "Israel", "Palestinian Authority", "Taliban", "New South Wales",
                                        "Canberra", "Kabul", "Washington"};
    char np[256], tp[256];
    snprintf(np, sizeof np, "%s/names.txt", dir);
    snprintf(tp, sizeof tp, "%s/triples.tsv", dir);
    FILE *n = fopen(np, "w"), *t = fopen(tp, "w");
    assert_non_null(n);
    assert_non_null(t);
    size_t k = sizeof names / sizeof *names;
    for (size_t i = 0; i < k; i++) {
        fprintf(n, "/m/e%zu\t%s\n", i, names[i]);
        fprintf(t, "/m/e%zu\t/r/near\t/m/e%zu\n", i, (i + 1) % k);
    }
    fclose(n);
    fclose(t);
    kkg_import_opts o = {.format = KKG_AUTO, .gloss = KKG_GLOSS_NO, .max_line_bytes = 1 << 20};
    kkg_import_summary sum;
    const char *p1[1] = {tp}, *p2[1] = {np};
    assert_int_equal(kkg_import(s, KKG_TRIPLES, p1, 1, &o, &sum), 0);
    assert_int_equal(kkg_import(s, KKG_NAMES, p2, 1, &o, &sum), 0);
}

static int64_t query(const char *db, const char *sql)
{
    sqlite3 *h;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(h, 10000);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
    int r = sqlite3_step(st);
    int64_t v = r == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    assert_true(r == SQLITE_ROW || r == SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

static void tokenize(kstore *s)
{
    ktokenize_opts o = {.threads = 1};
    ktokenize_summary sum;
    assert_int_equal(ktokenize_store(s, &o, &sum), 0);
}

static const kkg_link_opts link_opts = {NULL, 3, 1e-4, NULL, NULL, NULL};

/* Every piece counted again from the tokens, against the kept counts. */
typedef struct recount { uint64_t *freq; size_t n; int64_t docs, tokens; } recount;

static int count_row(const ktokens_row *t, void *ctx)
{
    recount *c = ctx;
    c->docs++;
    c->tokens += (int64_t)t->n_tokens;
    for (size_t i = 0; i < t->n_tokens; i++) {
        uint32_t id;
        if (t->layout == KTOK_LAYOUT_U16) { uint16_t v; memcpy(&v, (const char *)t->tokens + 2 * i, 2); id = v; }
        else memcpy(&id, (const char *)t->tokens + 4 * i, 4);
        assert_true(id < c->n);
        c->freq[id]++;
    }
    return 0;
}

static void check_counts(kstore *s, int64_t vocab)
{
    kvocab_progress p;
    assert_int_equal(kstore_progress_get(s, vocab, &p), 0);
    assert_true(kstore_progress_exact(&p));
    size_t n = 30522;
    recount c = {calloc(n, sizeof(uint64_t)), n, 0, 0};
    uint64_t *kept = calloc(n, sizeof(uint64_t));
    assert_int_equal(kstore_tokens_foreach(s, vocab, 0, count_row, &c), 0);
    assert_int_equal(kstore_token_counts_get(s, vocab, kept, n), 0);
    assert_int_equal(p.docs, c.docs);
    assert_int_equal(p.tokens, c.tokens);
    assert_int_equal(p.counted_tokens, c.tokens);
    assert_memory_equal(kept, c.freq, n * sizeof *kept);
    int64_t done, todo, tokens;
    assert_int_equal(kstore_tokens_count(s, vocab, &done, &todo, &tokens), 0);
    assert_int_equal(done, c.docs);
    assert_int_equal(tokens, c.tokens);
    free(c.freq);
    free(kept);
}

/* ---- tests ------------------------------------------------------------------- */

/* kiln tokenize and kiln kg link leave exact counts and cursors; a second
 * run has nothing to do; a legacy (uncounted) vocabulary is counted once. */
static void test_cursors_and_counts(void **state)
{
    fx *f = *state;
    size_t ns;
    char **sent = sentences(&ns);
    char db[128], p1[256], p2[256];
    snprintf(db, sizeof db, "%s/s.db", f->dir);
    write_jsonl(f->dir, "a", "First", 400, sent, ns, p1, sizeof p1);
    ingest(db, p1);
    kstore *s;
    char err[512];
    assert_int_equal(kstore_open(db, 0, &s, err, sizeof err), 0);
    add_vocab(s);
    kvocab_progress p;
    assert_int_equal(kstore_progress_get(s, 1, &p), 0);
    assert_int_equal(p.counted, 1); /* a new vocabulary gets its row (trigger) */
    assert_int_equal(p.tokenized_through, 0);
    tokenize(s);
    check_counts(s, 1);
    assert_int_equal(kstore_progress_get(s, 1, &p), 0);
    assert_int_equal(p.tokenized_through, query(db, "SELECT max(id) FROM documents"));
    add_kg(s, f->dir);
    kkg_link_summary ls;
    assert_int_equal(kkg_link(s, &link_opts, &ls), 0);
    assert_true(ls.mentions > 0);
    assert_int_equal(kstore_progress_get(s, 1, &p), 0);
    assert_int_equal(p.linked_through, p.tokenized_through);
    int64_t gen;
    assert_int_equal(kstore_kg_generation(s, &gen), 0);
    assert_int_equal(p.linked_generation, gen);
    /* more documents: only they are tokenized and linked */
    write_jsonl(f->dir, "b", "Second", 50, sent, ns, p2, sizeof p2);
    ingest(db, p2);
    ktokenize_opts to = {.threads = 1};
    ktokenize_summary ts;
    assert_int_equal(ktokenize_store(s, &to, &ts), 0);
    assert_int_equal(ts.documents, 50);
    check_counts(s, 1);
    assert_int_equal(kkg_link(s, &link_opts, &ls), 0);
    assert_int_equal(ls.documents, 50);
    assert_int_equal(ktokenize_store(s, &to, &ts), 0);
    assert_int_equal(ts.documents, 0);
    assert_int_equal(kkg_link(s, &link_opts, &ls), 0);
    assert_int_equal(ls.documents, 0);
    /* the tokens of a document stored twice: the second is a no-op */
    const uint16_t ids[2] = {101, 102};
    const uint8_t ws[1] = {1};
    const uint32_t ends[1] = {2};
    ktokens_row r = {.doc_id = 1, .vocab_id = 1, .layout = KTOK_LAYOUT_U16, .n_tokens = 2, .tokens = ids,
                     .n_sentences = 1, .sent_ends = ends, .word_starts = ws};
    int inserted = 1;
    assert_int_equal(kstore_begin(s), 0);
    assert_int_equal(kstore_tokens_insert(s, &r, &inserted), 0);
    assert_int_equal(kstore_commit(s), 0);
    assert_int_equal(inserted, 0);
    check_counts(s, 1);
    /* a vocabulary tokenized before schema 5 (its row says: not counted) is
     * counted once, by the next tokenize or link */
    query(db, "UPDATE vocab_progress SET counted = 0, docs = 0, tokens = 0, counted_tokens = 0");
    assert_int_equal(kstore_progress_get(s, 1, &p), 0);
    assert_false(kstore_progress_exact(&p));
    int recounted = 0;
    assert_int_equal(kstore_progress_recount(s, 1, &recounted), 0);
    assert_int_equal(recounted, 1);
    check_counts(s, 1);
    assert_int_equal(kstore_progress_recount(s, 1, &recounted), 0);
    assert_int_equal(recounted, 0);
    kstore_close(s);
    for (size_t i = 0; i < ns; i++) free(sent[i]);
    free(sent);
}

/* The VM steps of tokenizing and linking one new file in a store of docs
 * documents (built, tokenized and linked first, with a linker kept as the
 * daemon keeps it). With reset, the tokenize cursor is put back to 0 first:
 * the scan of the whole store the daemon used to do for every file. */
static uint64_t new_file_steps(const char *dir, const char *name, size_t docs, int reset, char **sent, size_t ns)
{
    char sub[256], db[300], p[400], extra[400];
    snprintf(sub, sizeof sub, "%s/%s", dir, name);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(db, sizeof db, "%s/s.db", sub);
    write_jsonl(sub, "corpus", "Corpus", docs, sent, ns, p, sizeof p);
    ingest(db, p);
    kstore *s;
    char err[512];
    assert_int_equal(kstore_open(db, 0, &s, err, sizeof err), 0);
    add_vocab(s);
    tokenize(s);
    add_kg(s, sub);
    kkg_link_summary ls;
    assert_int_equal(kkg_link(s, &link_opts, &ls), 0);
    kkg_linker *l;
    assert_int_equal(kkg_linker_new(s, &link_opts, &l), 0);
    if (reset) query(db, "UPDATE vocab_progress SET tokenized_through = 0");
    /* the new file: the same 5 documents whatever the store */
    write_jsonl(sub, "new", "Newly dropped", 5, sent, ns, extra, sizeof extra);
    ingest(db, extra);
    uint64_t s0 = kstore_vm_steps(s);
    ktokenize_opts to = {.threads = 1};
    ktokenize_summary ts;
    assert_int_equal(ktokenize_store(s, &to, &ts), 0);
    assert_int_equal(ts.documents, 5);
    assert_int_equal(kkg_linker_run(l, s, &link_opts, &ls), 0);
    assert_int_equal(ls.documents, 5);
    uint64_t steps = kstore_vm_steps(s) - s0;
    check_counts(s, 1);
    kkg_linker_free(l);
    kstore_close(s);
    return steps;
}

static void test_new_file_work_is_flat(void **state)
{
    fx *f = *state;
    size_t ns;
    char **sent = sentences(&ns);
    uint64_t small = new_file_steps(f->dir, "small", 300, 0, sent, ns);
    uint64_t big = new_file_steps(f->dir, "big", 3000, 0, sent, ns);
    print_message("VM steps to tokenize and link 5 new documents: %llu in a store of 300, %llu in one of 3,000\n",
                  (unsigned long long)small, (unsigned long long)big);
    assert_true(small > 0);
    assert_true(big <= small + small / 20); /* the same work, whatever the store */
    /* the measure sees a scan of the store: with the cursor at 0 it grows */
    uint64_t small0 = new_file_steps(f->dir, "small0", 300, 1, sent, ns);
    uint64_t big0 = new_file_steps(f->dir, "big0", 3000, 1, sent, ns);
    print_message("... with the tokenize cursor reset (a scan from id 0): %llu and %llu\n",
                  (unsigned long long)small0, (unsigned long long)big0);
    assert_true(big0 > 4 * small0);
    for (size_t i = 0; i < ns; i++) free(sent[i]);
    free(sent);
}

/* A store at schema 4 with two vocabularies, one with tokens: migrated to 5,
 * the first is "not counted" (counted on first use, exactly), the second
 * (no tokens) is counted; the cursors start at 0. */
static void test_migrate_from_v4(void **state)
{
    fx *f = *state;
    char db[128];
    snprintf(db, sizeof db, "%s/v4.db", f->dir);
    assert_true(kschema_count >= 5);
    sqlite3 *h;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    for (int i = 0; i < 4; i++) assert_int_equal(sqlite3_exec(h, kschema_sql[i], NULL, NULL, NULL), SQLITE_OK);
    char sql[2048];
    snprintf(sql, sizeof sql,
             "PRAGMA application_id = %d; PRAGMA user_version = 4;"
             "INSERT INTO sources(path, content_hash, size, status, started_at) "
             "  VALUES ('/x', x'00112233445566778899aabbccddeeff', 3, 'complete', 1);"
             "INSERT INTO documents(source_id, content_hash, n_sentences, n_bytes, text, sent_ends) VALUES"
             "  (1, x'01', 1, 1, 'a', x'01000000'), (1, x'02', 1, 1, 'b', x'01000000'),"
             "  (1, x'03', 1, 1, 'c', x'01000000');"
             "INSERT INTO vocabularies(name, cased, size, pieces, content_hash, origin, active, created_at) VALUES"
             "  ('old', 0, 5, 'a\nb\nc\nd\ne\n', x'aa', 'test', 1, 1),"
             "  ('other', 0, 5, 'a\nb\nc\nd\ne\n', x'bb', 'test', 0, 1);"
             /* ids 1, 2, 2 and 4, 4: layout 1, word starts, one sentence */
             "INSERT INTO doc_tokens VALUES (1, 1, 1, 3, x'010002000200', x'03000000', x'07'),"
             "  (2, 1, 1, 2, x'04000400', x'02000000', x'03');",
             KSTORE_APPLICATION_ID);
    assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(h), SQLITE_OK);

    kstore *s;
    char err[512];
    assert_int_equal(kstore_open(db, 0, &s, err, sizeof err), 0);
    assert_int_equal(kstore_schema_version(s), kstore_latest_schema_version()); /* 5 and later */
    /* migration 6: the vocabularies from before are WordPiece ones, without merges */
    kvocab_row vr;
    kbuf pc = {0}, mc = {0};
    assert_int_equal(kstore_vocab_get(s, "old", &vr, &pc, &mc), 0);
    assert_int_equal(vr.kind, KVOCAB_WORDPIECE);
    assert_null(vr.merges);
    assert_int_equal(vr.pieces_len, 10);
    kbuf_free(&pc);
    kbuf_free(&mc);
    kvocab_progress p;
    assert_int_equal(kstore_progress_get(s, 1, &p), 0);
    assert_int_equal(p.counted, 0);
    assert_int_equal(p.tokenized_through, 0);
    assert_int_equal(kstore_progress_get(s, 2, &p), 0);
    assert_true(kstore_progress_exact(&p));
    assert_int_equal(p.docs, 0);
    /* not counted: kstore_tokens_count scans, and is right */
    int64_t done, todo, tokens;
    assert_int_equal(kstore_tokens_count(s, 1, &done, &todo, &tokens), 0);
    assert_int_equal(done, 2);
    assert_int_equal(todo, 1);
    assert_int_equal(tokens, 5);
    int recounted = 0;
    assert_int_equal(kstore_progress_recount(s, 1, &recounted), 0);
    assert_int_equal(recounted, 1);
    assert_int_equal(kstore_progress_get(s, 1, &p), 0);
    assert_true(kstore_progress_exact(&p));
    assert_int_equal(p.docs, 2);
    assert_int_equal(p.tokens, 5);
    uint64_t freq[5];
    assert_int_equal(kstore_token_counts_get(s, 1, freq, 5), 0);
    const uint64_t want[5] = {0, 1, 2, 0, 2};
    assert_memory_equal(freq, want, sizeof want);
    /* the fast count (documents after the cursor, 0 here) agrees */
    assert_int_equal(kstore_tokens_count(s, 1, &done, &todo, &tokens), 0);
    assert_int_equal(done, 2);
    assert_int_equal(todo, 1);
    assert_int_equal(tokens, 5);
    /* the cursor moves only over documents that have tokens: 1 and 2, not 3 */
    assert_int_equal(kstore_progress_tokens_settle(s, 1), 0);
    assert_int_equal(kstore_progress_get(s, 1, &p), 0);
    assert_int_equal(p.tokenized_through, 0);
    kstore_close(s);
}

int main(void)
{
    klog_threshold = KLOG_WARN;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cursors_and_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_file_work_is_flat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_from_v4, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
