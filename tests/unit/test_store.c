/* test_store.c: unit tests of store/ (store.h): kstore_open (creation, schema
 * version and application_id, reopening, read-only, refusal of foreign, newer,
 * non-SQLite and non-file paths without touching them, migration of an old
 * store), sources (begin/add/finish, dedup by content hash, interrupted
 * ingests taken over), documents (insert, dedup, reading back, filtering,
 * rollback, corrupt sentence index), totals / integrity check, and the
 * vocabularies' tokenizer options (strip_accents, words: migration 004).
 *
 * Every test works in a fresh mkdtemp directory under /tmp, removed after. The
 * files are inspected and tampered with through the sqlite3 API directly. */
#define _XOPEN_SOURCE 700
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include "schemas/schemas.h"
#include "store/store.h"
#include "util/util.h"

/* ---- fixture: a temporary directory ------------------------------------- */

typedef struct fx {
    char dir[64];
    char path[128]; /* dir/store.db (not created) */
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f) return -1;
    strcpy(f->dir, "/tmp/kiln-test-XXXXXX");
    if (!mkdtemp(f->dir)) { free(f); return -1; }
    snprintf(f->path, sizeof f->path, "%s/store.db", f->dir);
    *state = f;
    return 0;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static int teardown(void **state)
{
    fx *f = *state;
    int rc = nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

/* ---- helpers ---------------------------------------------------------------- */

static void in_dir(const fx *f, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", f->dir, name);
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* Runs sql on the file at path with a raw sqlite3 connection. */
static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
                     SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) fprintf(stderr, "raw_exec: %s: %s\n", sql, msg ? msg : "?");
    sqlite3_free(msg);
    assert_int_equal(rc, SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* Returns the integer answer of a one-row query (read-only connection). */
static int64_t raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    return v;
}

static int table_exists(const char *path, const char *name)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM sqlite_schema WHERE type='table' AND name='%s'",
             name);
    return raw_int(path, sql) == 1;
}

/* Reads a whole file (malloc'd); *n its size. */
static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long sz = ftell(fp);
    assert_true(sz >= 0);
    rewind(fp);
    unsigned char *p = malloc((size_t)sz + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)sz, fp), (size_t)sz);
    fclose(fp);
    *n = (size_t)sz;
    return p;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(p, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

static kstore *open_ok(const char *path, int flags)
{
    kstore *s = NULL;
    char err[512] = "";
    int rc = kstore_open(path, flags, &s, err, sizeof err);
    if (rc) fprintf(stderr, "kstore_open(%s): %d %s\n", path, rc, err);
    assert_int_equal(rc, 0);
    assert_non_null(s);
    return s;
}

static void hash_of(const char *s, uint8_t h[KHASH_LEN]) { khash128(s, strlen(s), h); }

/* A pid that certainly belongs to no running process: a reaped child's. */
static pid_t dead_pid(void)
{
    pid_t p = fork();
    assert_true(p >= 0);
    if (p == 0) _exit(0);
    int status;
    assert_int_equal(waitpid(p, &status, 0), p);
    return p;
}

/* ---- source listing ---------------------------------------------------------- */

#define MAXS 8
typedef struct srcs {
    size_t n;
    int64_t id[MAXS];
    char status[MAXS][32];
    char format[MAXS][32];
    char path[MAXS][256];
    int has_error[MAXS];
    uint8_t hash[MAXS][KHASH_LEN];
    int64_t documents[MAXS], duplicates[MAXS], skipped[MAXS], bytes_in[MAXS], sentences[MAXS],
        text_bytes[MAXS], size[MAXS], started_at[MAXS], finished_at[MAXS];
} srcs;

static int collect_src(const ksource *s, void *ctx)
{
    srcs *c = ctx;
    assert_true(c->n < MAXS);
    size_t i = c->n++;
    c->id[i] = s->id;
    snprintf(c->status[i], sizeof c->status[i], "%s", s->status);
    snprintf(c->format[i], sizeof c->format[i], "%s", s->format ? s->format : "(null)");
    snprintf(c->path[i], sizeof c->path[i], "%s", s->path);
    c->has_error[i] = s->error != NULL;
    memcpy(c->hash[i], s->hash, KHASH_LEN);
    c->documents[i] = s->documents;
    c->duplicates[i] = s->duplicates;
    c->skipped[i] = s->skipped;
    c->bytes_in[i] = s->bytes_in;
    c->sentences[i] = s->sentences;
    c->text_bytes[i] = s->text_bytes;
    c->size[i] = s->size;
    c->started_at[i] = s->started_at;
    c->finished_at[i] = s->finished_at;
    return 0;
}

static void list_sources(kstore *s, srcs *c)
{
    memset(c, 0, sizeof *c);
    assert_int_equal(kstore_sources_foreach(s, collect_src, c), 0);
}

/* ---- document listing ---------------------------------------------------- */

#define MAXD 16
typedef struct docs {
    size_t n;
    int64_t id[MAXD], source_id[MAXD];
    char *text[MAXD];
    size_t text_len[MAXD];
    char *title[MAXD]; /* NULL when NULL */
    char *entry[MAXD];
    char *url[MAXD];
    char *ext_id[MAXD];
    uint8_t hash[MAXD][KHASH_LEN];
    uint32_t ends[MAXD][8];
    size_t n_sent[MAXD];
    size_t stop_after; /* 0: never */
} docs;

static char *dup_or_null(const char *s) { return s ? xstrdup(s) : NULL; }

static int collect_doc(const kdoc *d, void *ctx)
{
    docs *c = ctx;
    assert_true(c->n < MAXD);
    size_t i = c->n++;
    c->id[i] = d->id;
    c->source_id[i] = d->source_id;
    c->text[i] = xstrndup(d->text, d->text_len);
    c->text_len[i] = d->text_len;
    c->title[i] = dup_or_null(d->title);
    c->entry[i] = dup_or_null(d->entry);
    c->url[i] = dup_or_null(d->url);
    c->ext_id[i] = dup_or_null(d->ext_id);
    memcpy(c->hash[i], d->hash, KHASH_LEN);
    assert_true(d->n_sentences <= 8);
    c->n_sent[i] = d->n_sentences;
    for (size_t k = 0; k < d->n_sentences; k++) {
        uint32_t v;
        memcpy(&v, (const char *)d->sent_ends + k * sizeof v, sizeof v);
        c->ends[i][k] = v;
    }
    return c->stop_after && c->n >= c->stop_after;
}

static void docs_free(docs *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->text[i]);
        free(c->title[i]);
        free(c->entry[i]);
        free(c->url[i]);
        free(c->ext_id[i]);
    }
    memset(c, 0, sizeof *c);
}

/* Builds a document of text with sentences separated by '\n'. */
typedef struct docbuf {
    kdoc d;
    uint32_t ends[8];
} docbuf;

static void make_doc(docbuf *b, int64_t source_id, const char *title, const char *text)
{
    memset(b, 0, sizeof *b);
    b->d.source_id = source_id;
    b->d.title = title;
    b->d.text = text;
    b->d.text_len = strlen(text);
    size_t n = 0;
    for (size_t i = 0; i <= b->d.text_len; i++)
        if (text[i] == '\n' || text[i] == '\0') {
            assert_true(n < 8);
            b->ends[n++] = (uint32_t)i;
        }
    b->d.sent_ends = b->ends;
    b->d.n_sentences = n;
    hash_of(text, b->d.hash);
}

/* ---- opening -------------------------------------------------------------------- */

static void test_open_creates_new_store(void **state)
{
    fx *f = *state;
    assert_false(file_exists(f->path));
    kstore *s = open_ok(f->path, KSTORE_CREATE);
    assert_true(file_exists(f->path));
    assert_true(kstore_latest_schema_version() >= 1);
    assert_int_equal(kstore_latest_schema_version(), (int)kschema_count);
    assert_int_equal(kstore_schema_version(s), kstore_latest_schema_version());
    kstore_close(s);

    assert_int_equal(raw_int(f->path, "PRAGMA application_id"), KSTORE_APPLICATION_ID);
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), kstore_latest_schema_version());
    assert_true(table_exists(f->path, "sources"));
    assert_true(table_exists(f->path, "documents"));
    assert_true(table_exists(f->path, "vocabularies"));
    assert_true(table_exists(f->path, "kg_triples"));
    int64_t nobj = raw_int(f->path, "SELECT count(*) FROM sqlite_schema");

    /* reopening (read-write, with or without CREATE, and read-only) is idempotent */
    s = open_ok(f->path, KSTORE_CREATE);
    assert_int_equal(kstore_schema_version(s), kstore_latest_schema_version());
    kstore_close(s);
    s = open_ok(f->path, 0);
    assert_int_equal(kstore_schema_version(s), kstore_latest_schema_version());
    kstore_close(s);
    s = open_ok(f->path, KSTORE_READONLY);
    assert_int_equal(kstore_schema_version(s), kstore_latest_schema_version());
    int ok = 0;
    assert_int_equal(kstore_integrity_check(s, &ok), 0);
    assert_int_equal(ok, 1);
    kstore_close(s);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_schema"), nobj);
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), kstore_latest_schema_version());
    assert_int_equal(raw_int(f->path, "PRAGMA application_id"), KSTORE_APPLICATION_ID);
    kstore_close(NULL);
}

static void test_open_empty_file_becomes_store(void **state)
{
    fx *f = *state;
    write_file(f->path, "", 0); /* an existing empty file is an empty database */
    kstore *s = open_ok(f->path, 0);
    assert_int_equal(kstore_schema_version(s), kstore_latest_schema_version());
    kstore_close(s);
    assert_int_equal(raw_int(f->path, "PRAGMA application_id"), KSTORE_APPLICATION_ID);
    assert_true(table_exists(f->path, "documents"));
}

static void test_open_missing(void **state)
{
    fx *f = *state;
    kstore *s = (kstore *)f; /* must be reset to NULL */
    char err[512] = "";
    int rc = kstore_open(f->path, KSTORE_READONLY, &s, err, sizeof err);
    assert_int_equal(rc, EX_NOINPUT);
    assert_null(s);
    assert_non_null(strstr(err, f->path));
    assert_false(file_exists(f->path));

    /* read-only wins over create */
    err[0] = '\0';
    rc = kstore_open(f->path, KSTORE_READONLY | KSTORE_CREATE, &s, err, sizeof err);
    assert_int_equal(rc, EX_NOINPUT);
    assert_null(s);
    assert_non_null(strstr(err, f->path));
    assert_false(file_exists(f->path));

    /* without CREATE a missing store is not created either */
    err[0] = '\0';
    rc = kstore_open(f->path, 0, &s, err, sizeof err);
    assert_int_equal(rc, EX_NOINPUT);
    assert_null(s);
    assert_non_null(strstr(err, f->path));
    assert_false(file_exists(f->path));
}

static void test_open_cannot_create(void **state)
{
    fx *f = *state;
    char p[256];
    in_dir(f, "no/such/dir/store.db", p, sizeof p);
    kstore *s = NULL;
    char err[512] = "";
    int rc = kstore_open(p, KSTORE_CREATE, &s, err, sizeof err);
    assert_int_equal(rc, EX_CANTCREAT);
    assert_null(s);
    assert_non_null(strstr(err, p));
}

static void test_open_small_errbuf(void **state)
{
    fx *f = *state;
    kstore *s = NULL;
    char err[8];
    memset(err, 'Z', sizeof err);
    int rc = kstore_open(f->path, KSTORE_READONLY, &s, err, 5);
    assert_int_equal(rc, EX_NOINPUT);
    assert_int_equal(strlen(err), 4); /* truncated, terminated, within errlen */
    assert_int_equal(err[5], 'Z');
}

/* A foreign SQLite database (tables, application_id 0) is refused, and left
 * exactly as it was: same tables, same rows, same bytes. */
static void make_foreign(const char *path)
{
    raw_exec(path, "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);"
                   "INSERT INTO notes(body) VALUES ('keep me'), ('and me');"
                   "PRAGMA user_version = 7;");
}

static void test_refuse_foreign_sqlite(void **state)
{
    fx *f = *state;
    char p[256];
    in_dir(f, "foreign.db", p, sizeof p);
    make_foreign(p);
    assert_int_equal(raw_int(p, "PRAGMA application_id"), 0);

    const int flags[] = {KSTORE_CREATE, 0, KSTORE_READONLY};
    for (size_t i = 0; i < 3; i++) {
        kstore *s = NULL;
        char err[512] = "";
        int rc = kstore_open(p, flags[i], &s, err, sizeof err);
        assert_int_equal(rc, EX_DATAERR);
        assert_null(s);
        assert_non_null(strstr(err, "not a kiln store"));
        assert_non_null(strstr(err, p));
    }
    /* same tables, same rows, nothing of kiln added */
    assert_int_equal(raw_int(p, "SELECT count(*) FROM sqlite_schema"), 1);
    assert_true(table_exists(p, "notes"));
    assert_false(table_exists(p, "sources"));
    assert_int_equal(raw_int(p, "SELECT count(*) FROM notes"), 2);
    assert_int_equal(raw_int(p, "PRAGMA application_id"), 0);
    assert_int_equal(raw_int(p, "PRAGMA user_version"), 7);
}

static void test_refuse_foreign_sqlite_bytes_unchanged(void **state)
{
    fx *f = *state;
    char p[256], wal[300];
    in_dir(f, "foreign.db", p, sizeof p);
    snprintf(wal, sizeof wal, "%s-wal", p);
    make_foreign(p);
    size_t n0, n1;
    unsigned char *before = slurp(p, &n0);
    kstore *s = NULL;
    char err[512] = "";
    assert_int_equal(kstore_open(p, KSTORE_CREATE, &s, err, sizeof err), EX_DATAERR);
    assert_null(s);
    unsigned char *after = slurp(p, &n1);
    assert_false(file_exists(wal));
    assert_int_equal(n1, n0);
    /* bytes 18-19 of the header are the journal mode (1 = rollback, 2 = WAL) */
    assert_int_equal(after[18], before[18]);
    assert_int_equal(after[19], before[19]);
    assert_memory_equal(after, before, n0);
    free(before);
    free(after);
}

static void test_refuse_other_application_id(void **state)
{
    fx *f = *state;
    char p[256];
    in_dir(f, "other.db", p, sizeof p);
    /* no tables at all, but another application's id */
    raw_exec(p, "PRAGMA application_id = 305419896"); /* 0x12345678 */
    kstore *s = NULL;
    char err[512] = "";
    assert_int_equal(kstore_open(p, KSTORE_CREATE, &s, err, sizeof err), EX_DATAERR);
    assert_null(s);
    assert_non_null(strstr(err, "not a kiln store"));
    assert_int_equal(raw_int(p, "SELECT count(*) FROM sqlite_schema"), 0);
    assert_int_equal(raw_int(p, "PRAGMA application_id"), 0x12345678);
}

static void test_refuse_newer_schema(void **state)
{
    fx *f = *state;
    kstore_close(open_ok(f->path, KSTORE_CREATE));
    int newer = kstore_latest_schema_version() + 1;
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", newer);
    raw_exec(f->path, sql);

    const int flags[] = {KSTORE_CREATE, KSTORE_READONLY};
    for (size_t i = 0; i < 2; i++) {
        kstore *s = NULL;
        char err[512] = "";
        int rc = kstore_open(f->path, flags[i], &s, err, sizeof err);
        assert_int_equal(rc, EX_DATAERR);
        assert_null(s);
        assert_non_null(strstr(err, "newer"));
        assert_non_null(strstr(err, f->path));
    }
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), newer);
    assert_int_equal(raw_int(f->path, "PRAGMA application_id"), KSTORE_APPLICATION_ID);
}

static void test_refuse_not_sqlite(void **state)
{
    fx *f = *state;
    char p[256];
    in_dir(f, "notes.txt", p, sizeof p);
    kbuf text = {0};
    for (int i = 0; i < 200; i++) kbuf_printf(&text, "line %d: this is plain text, not SQLite\n", i);
    write_file(p, text.data, text.len);

    const int flags[] = {KSTORE_CREATE, KSTORE_READONLY};
    for (size_t i = 0; i < 2; i++) {
        kstore *s = NULL;
        char err[512] = "";
        int rc = kstore_open(p, flags[i], &s, err, sizeof err);
        assert_int_equal(rc, EX_DATAERR);
        assert_null(s);
        assert_non_null(strstr(err, p));
    }
    size_t n;
    unsigned char *after = slurp(p, &n);
    assert_int_equal(n, text.len);
    assert_memory_equal(after, text.data, n);
    free(after);

    /* a short text file (less than one header) too */
    write_file(p, "hello\n", 6);
    kstore *s = NULL;
    char err[512] = "";
    assert_int_equal(kstore_open(p, KSTORE_CREATE, &s, err, sizeof err), EX_DATAERR);
    assert_null(s);
    after = slurp(p, &n);
    assert_int_equal(n, 6);
    assert_memory_equal(after, "hello\n", 6);
    free(after);
    kbuf_free(&text);
}

static void test_refuse_directory(void **state)
{
    fx *f = *state;
    char p[256];
    in_dir(f, "adir", p, sizeof p);
    assert_int_equal(mkdir(p, 0700), 0);
    const int flags[] = {KSTORE_CREATE, 0, KSTORE_READONLY};
    for (size_t i = 0; i < 3; i++) {
        kstore *s = NULL;
        char err[512] = "";
        int rc = kstore_open(p, flags[i], &s, err, sizeof err);
        assert_int_not_equal(rc, 0);
        assert_null(s);
        assert_non_null(strstr(err, p));
    }
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
}

/* A store at user_version 1 (only 001's tables) is migrated to the latest. */
static void test_migrate_from_v1(void **state)
{
    fx *f = *state;
    assert_true(kschema_count >= 2);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, kschema_sql[0], NULL, NULL, NULL), SQLITE_OK);
    char sql[128];
    snprintf(sql, sizeof sql, "PRAGMA application_id = %d; PRAGMA user_version = 1",
             KSTORE_APPLICATION_ID);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    /* one source with data, to check the migration keeps it */
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO sources(path, content_hash, size, status, started_at) "
                                  "VALUES ('/x', x'00112233445566778899aabbccddeeff', 3, 'complete', 1)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    assert_false(table_exists(f->path, "vocabularies"));

    /* read-only cannot migrate: refused, file untouched */
    kstore *s = NULL;
    char err[512] = "";
    assert_int_equal(kstore_open(f->path, KSTORE_READONLY, &s, err, sizeof err), EX_DATAERR);
    assert_null(s);
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 1);
    assert_false(table_exists(f->path, "vocabularies"));

    s = open_ok(f->path, 0);
    assert_int_equal(kstore_schema_version(s), kstore_latest_schema_version());
    srcs c;
    list_sources(s, &c);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.path[0], "/x");
    assert_string_equal(c.status[0], "complete");
    kstore_close(s);

    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), kstore_latest_schema_version());
    assert_int_equal(raw_int(f->path, "PRAGMA application_id"), KSTORE_APPLICATION_ID);
    const char *t002[] = {"vocabularies", "doc_tokens", "kg_entities", "kg_relations", "kg_triples",
                          "kg_aliases",   "kg_mentions", "kg_embeddings", "jobs", "checkpoints",
                          "metrics"};
    for (size_t i = 0; i < sizeof t002 / sizeof t002[0]; i++) assert_true(table_exists(f->path, t002[i]));
    s = open_ok(f->path, KSTORE_READONLY);
    assert_int_equal(kstore_schema_version(s), kstore_latest_schema_version());
    kstore_close(s);
}

/* ---- sources ----------------------------------------------------------------- */

static void test_source_lifecycle(void **state)
{
    fx *f = *state;
    kstore *s = open_ok(f->path, KSTORE_CREATE);
    uint8_t h[KHASH_LEN];
    hash_of("file one", h);
    int64_t id = -1;
    int already = -1;
    assert_int_equal(kstore_source_begin(s, "/data/one.txt", h, 1234, &id, &already), 0);
    assert_int_equal(already, 0);
    assert_true(id > 0);

    srcs c;
    list_sources(s, &c);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.id[0], id);
    assert_string_equal(c.status[0], "running"); /* our own pid: alive */
    assert_string_equal(c.path[0], "/data/one.txt");
    assert_memory_equal(c.hash[0], h, KHASH_LEN);
    assert_int_equal(c.size[0], 1234);
    assert_true(c.started_at[0] > 0);
    assert_int_equal(c.documents[0], 0);

    ksource_delta d1 = {.documents = 2, .duplicates = 1, .skipped = 3, .bytes_in = 100,
                        .sentences = 7, .text_bytes = 90};
    ksource_delta d2 = {.documents = 5, .duplicates = 0, .skipped = 1, .bytes_in = 50,
                        .sentences = 11, .text_bytes = 45};
    assert_int_equal(kstore_begin(s), 0);
    assert_int_equal(kstore_source_add(s, id, &d1), 0);
    assert_int_equal(kstore_source_add(s, id, &d2), 0);
    assert_int_equal(kstore_commit(s), 0);
    assert_int_equal(kstore_begin(s), 0);
    assert_int_equal(kstore_source_add(s, id, &d1), 0);
    assert_int_equal(kstore_commit(s), 0);
    /* a rolled-back delta does not count */
    assert_int_equal(kstore_begin(s), 0);
    assert_int_equal(kstore_source_add(s, id, &d2), 0);
    assert_int_equal(kstore_rollback(s), 0);

    list_sources(s, &c);
    assert_int_equal(c.documents[0], 9);
    assert_int_equal(c.duplicates[0], 2);
    assert_int_equal(c.skipped[0], 7);
    assert_int_equal(c.bytes_in[0], 250);
    assert_int_equal(c.sentences[0], 25);
    assert_int_equal(c.text_bytes[0], 225);

    assert_int_equal(kstore_source_finish(s, id, "complete", "text", NULL), 0);
    list_sources(s, &c);
    assert_string_equal(c.status[0], "complete");
    assert_string_equal(c.format[0], "text");
    assert_false(c.has_error[0]);
    assert_true(c.finished_at[0] >= c.started_at[0]);

    /* the same bytes again: already done, same id, nothing changes */
    int64_t id2 = -1;
    already = -1;
    assert_int_equal(kstore_source_begin(s, "/elsewhere/copy.txt", h, 1234, &id2, &already), 0);
    assert_int_equal(already, 1);
    assert_int_equal(id2, id);
    list_sources(s, &c);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.status[0], "complete");
    assert_string_equal(c.path[0], "/data/one.txt");
    assert_int_equal(c.documents[0], 9);

    /* another file: a new source */
    uint8_t h2[KHASH_LEN];
    hash_of("file two", h2);
    int64_t id3 = -1;
    assert_int_equal(kstore_source_begin(s, "/data/two.txt", h2, 5, &id3, &already), 0);
    assert_int_equal(already, 0);
    assert_true(id3 > id);
    assert_int_equal(kstore_source_finish(s, id3, "partial", "jsonl", "3 bad lines"), 0);
    list_sources(s, &c);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.id[0], id); /* id order */
    assert_int_equal(c.id[1], id3);
    assert_string_equal(c.status[1], "partial");
    assert_true(c.has_error[1]);
    /* partial is also "already" (the same bytes give the same result) */
    int64_t id4 = -1;
    assert_int_equal(kstore_source_begin(s, "/data/two.txt", h2, 5, &id4, &already), 0);
    assert_int_equal(already, 1);
    assert_int_equal(id4, id3);
    kstore_close(s);

    /* persisted */
    s = open_ok(f->path, KSTORE_READONLY);
    list_sources(s, &c);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.documents[0], 9);
    assert_string_equal(c.status[0], "complete");
    kstore_close(s);
}

static int stop_first(const ksource *src, void *ctx)
{
    (void)src;
    (*(int *)ctx)++;
    return 1;
}

static void test_sources_foreach_stop(void **state)
{
    fx *f = *state;
    kstore *s = open_ok(f->path, KSTORE_CREATE);
    const char *names[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        uint8_t h[KHASH_LEN];
        hash_of(names[i], h);
        int64_t id;
        int already;
        assert_int_equal(kstore_source_begin(s, names[i], h, 1, &id, &already), 0);
    }
    int calls = 0;
    assert_int_equal(kstore_sources_foreach(s, stop_first, &calls), 0);
    assert_int_equal(calls, 1);
    /* the statement was reset: a full listing afterwards sees all three */
    srcs c;
    list_sources(s, &c);
    assert_int_equal(c.n, 3);
    kstore_close(s);
}

static void test_source_interrupted_takeover(void **state)
{
    fx *f = *state;
    kstore *s = open_ok(f->path, KSTORE_CREATE);
    uint8_t h[KHASH_LEN];
    hash_of("big dump", h);
    int64_t id = -1;
    int already = -1;
    assert_int_equal(kstore_source_begin(s, "/data/dump.xml", h, 99, &id, &already), 0);
    assert_int_equal(already, 0);
    kstore_close(s);

    /* the ingesting process died without finishing */
    char sql[128];
    snprintf(sql, sizeof sql, "UPDATE sources SET pid = %ld WHERE id = %lld", (long)dead_pid(),
             (long long)id);
    raw_exec(f->path, sql);

    s = open_ok(f->path, 0);
    srcs c;
    list_sources(s, &c);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.status[0], "interrupted");
    /* stored status is still running */
    assert_int_equal(raw_int(f->path, "SELECT status = 'running' FROM sources"), 1);

    int64_t id2 = -1;
    already = -1;
    assert_int_equal(kstore_source_begin(s, "/data/moved/dump.xml", h, 99, &id2, &already), 0);
    assert_int_equal(already, 0);
    assert_int_equal(id2, id);
    list_sources(s, &c);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.status[0], "running");
    assert_string_equal(c.path[0], "/data/moved/dump.xml");
    assert_int_equal(raw_int(f->path, "SELECT pid FROM sources"), (int64_t)getpid());
    kstore_close(s);
}

static void test_source_live_owner_refused(void **state)
{
    fx *f = *state;
    kstore *s = open_ok(f->path, KSTORE_CREATE);
    uint8_t h[KHASH_LEN];
    hash_of("busy file", h);
    int64_t id = -1;
    int already = -1;
    assert_int_equal(kstore_source_begin(s, "/data/busy", h, 1, &id, &already), 0);
    /* pretend another live process (our parent) is ingesting it */
    char sql[128];
    snprintf(sql, sizeof sql, "UPDATE sources SET pid = %ld WHERE id = %lld", (long)getppid(),
             (long long)id);
    raw_exec(f->path, sql);
    srcs c;
    list_sources(s, &c);
    assert_string_equal(c.status[0], "running");
    int64_t id2 = -1;
    int rc = kstore_source_begin(s, "/data/busy", h, 1, &id2, &already);
    assert_int_equal(rc, EX_TEMPFAIL);
    assert_non_null(strstr(kstore_errmsg(s), "/data/busy"));
    /* no transaction left open: a new one can start */
    assert_int_equal(kstore_begin(s), 0);
    assert_int_equal(kstore_commit(s), 0);
    kstore_close(s);
}

static void test_source_failed_is_retried(void **state)
{
    fx *f = *state;
    kstore *s = open_ok(f->path, KSTORE_CREATE);
    uint8_t h[KHASH_LEN];
    hash_of("flaky", h);
    int64_t id = -1, id2 = -1;
    int already = -1;
    assert_int_equal(kstore_source_begin(s, "/f", h, 1, &id, &already), 0);
    assert_int_equal(kstore_source_finish(s, id, "failed", "", "read error"), 0);
    assert_int_equal(kstore_source_begin(s, "/f", h, 1, &id2, &already), 0);
    assert_int_equal(already, 0);
    assert_int_equal(id2, id);
    srcs c;
    list_sources(s, &c);
    assert_string_equal(c.status[0], "running");
    assert_false(c.has_error[0]);
    kstore_close(s);
}

/* ---- documents ----------------------------------------------------------------- */

static void test_documents(void **state)
{
    fx *f = *state;
    kstore *s = open_ok(f->path, KSTORE_CREATE);
    uint8_t h1[KHASH_LEN], h2[KHASH_LEN];
    hash_of("source one", h1);
    hash_of("source two", h2);
    int64_t s1, s2;
    int already;
    assert_int_equal(kstore_source_begin(s, "/one", h1, 10, &s1, &already), 0);
    assert_int_equal(kstore_source_begin(s, "/two", h2, 20, &s2, &already), 0);

    const char *texts[] = {"First sentence.\nSecond one.", "Only one here.",
                           "Other source.\nWith\nthree.", "Back to one."};
    const char *titles[] = {"Doc A", NULL, "Doc C", "Doc D"};
    const int64_t owner[] = {s1, s1, s2, s1};
    docbuf b[4];
    int64_t ids[4];
    assert_int_equal(kstore_begin(s), 0);
    for (int i = 0; i < 4; i++) {
        make_doc(&b[i], owner[i], titles[i], texts[i]);
        b[i].d.entry = i == 2 ? "member.txt" : NULL;
        b[i].d.url = i == 0 ? "https://example.org/a" : NULL;
        b[i].d.ext_id = i == 0 ? "42" : NULL;
        int inserted = -1;
        assert_int_equal(kstore_doc_insert(s, &b[i].d, &inserted), 0);
        assert_int_equal(inserted, 1);
        assert_true(b[i].d.id > 0);
        if (i) assert_true(b[i].d.id > ids[i - 1]);
        ids[i] = b[i].d.id;
    }
    ksource_delta a1 = {.documents = 3, .sentences = 4,
                        .text_bytes = (int64_t)(b[0].d.text_len + b[1].d.text_len + b[3].d.text_len)};
    ksource_delta a2 = {.documents = 1, .sentences = 3, .text_bytes = (int64_t)b[2].d.text_len};
    assert_int_equal(kstore_source_add(s, s1, &a1), 0);
    assert_int_equal(kstore_source_add(s, s2, &a2), 0);
    assert_int_equal(kstore_commit(s), 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM documents"), 4);

    /* the same text again (other source, other title): deduplicated */
    assert_int_equal(kstore_begin(s), 0);
    docbuf dup;
    make_doc(&dup, s2, "Duplicate title", texts[1]);
    dup.d.id = 777;
    int inserted = -1;
    assert_int_equal(kstore_doc_insert(s, &dup.d, &inserted), 0);
    assert_int_equal(inserted, 0);
    assert_int_equal(dup.d.id, 0);
    /* a fresh insert right after a dedup reports inserted again */
    docbuf fresh;
    make_doc(&fresh, s2, NULL, "Fresh text.");
    assert_int_equal(kstore_doc_insert(s, &fresh.d, &inserted), 0);
    assert_int_equal(inserted, 1);
    assert_int_equal(kstore_doc_insert(s, &fresh.d, &inserted), 0);
    assert_int_equal(inserted, 0);
    assert_int_equal(kstore_rollback(s), 0); /* drops "Fresh text." */
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM documents"), 4);

    /* all documents, in id order, exactly as inserted */
    docs c = {0};
    assert_int_equal(kstore_docs_foreach(s, 0, collect_doc, &c), 0);
    assert_int_equal(c.n, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(c.id[i], ids[i]);
        assert_int_equal(c.source_id[i], owner[i]);
        assert_int_equal(c.text_len[i], strlen(texts[i]));
        assert_string_equal(c.text[i], texts[i]);
        if (titles[i]) assert_string_equal(c.title[i], titles[i]);
        else assert_null(c.title[i]);
        assert_memory_equal(c.hash[i], b[i].d.hash, KHASH_LEN);
        assert_int_equal(c.n_sent[i], b[i].d.n_sentences);
        assert_memory_equal(c.ends[i], b[i].ends, b[i].d.n_sentences * sizeof(uint32_t));
    }
    assert_string_equal(c.entry[0], "");
    assert_string_equal(c.entry[2], "member.txt");
    assert_string_equal(c.url[0], "https://example.org/a");
    assert_null(c.url[1]);
    assert_string_equal(c.ext_id[0], "42");
    assert_null(c.ext_id[3]);
    assert_int_equal(c.n_sent[0], 2);
    assert_int_equal(c.ends[0][0], 15);
    assert_int_equal(c.ends[0][1], 27);
    docs_free(&c);

    /* filtered by source */
    assert_int_equal(kstore_docs_foreach(s, s1, collect_doc, &c), 0);
    assert_int_equal(c.n, 3);
    assert_int_equal(c.id[0], ids[0]);
    assert_int_equal(c.id[1], ids[1]);
    assert_int_equal(c.id[2], ids[3]);
    assert_string_equal(c.text[2], "Back to one.");
    docs_free(&c);
    assert_int_equal(kstore_docs_foreach(s, s2, collect_doc, &c), 0);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.text[0], texts[2]);
    assert_int_equal(c.n_sent[0], 3);
    docs_free(&c);
    assert_int_equal(kstore_docs_foreach(s, 9999, collect_doc, &c), 0);
    assert_int_equal(c.n, 0);

    /* stopping early */
    c.stop_after = 2;
    assert_int_equal(kstore_docs_foreach(s, 0, collect_doc, &c), 0);
    assert_int_equal(c.n, 2);
    docs_free(&c);

    /* totals sum the source counters */
    kstore_totals t = {0};
    assert_int_equal(kstore_totals_get(s, &t), 0);
    assert_int_equal(t.sources, 2);
    assert_int_equal(t.documents, 4);
    assert_int_equal(t.sentences, 7);
    assert_int_equal(t.bytes, a1.text_bytes + a2.text_bytes);

    int ok = 0;
    assert_int_equal(kstore_integrity_check(s, &ok), 0);
    assert_int_equal(ok, 1);
    kstore_close(s);

    /* persisted, readable read-only */
    s = open_ok(f->path, KSTORE_READONLY);
    assert_int_equal(kstore_docs_foreach(s, 0, collect_doc, &c), 0);
    assert_int_equal(c.n, 4);
    assert_string_equal(c.text[3], texts[3]);
    docs_free(&c);
    kstore_close(s);
}

static void test_documents_rollback(void **state)
{
    fx *f = *state;
    kstore *s = open_ok(f->path, KSTORE_CREATE);
    uint8_t h[KHASH_LEN];
    hash_of("src", h);
    int64_t sid;
    int already;
    assert_int_equal(kstore_source_begin(s, "/src", h, 1, &sid, &already), 0);

    assert_int_equal(kstore_begin(s), 0);
    docbuf b;
    make_doc(&b, sid, "t", "Kept.");
    int inserted;
    assert_int_equal(kstore_doc_insert(s, &b.d, &inserted), 0);
    ksource_delta one = {.documents = 1, .sentences = 1, .text_bytes = 5};
    assert_int_equal(kstore_source_add(s, sid, &one), 0);
    assert_int_equal(kstore_commit(s), 0);

    assert_int_equal(kstore_begin(s), 0);
    const char *gone[] = {"Gone one.", "Gone two.\nStill gone."};
    for (int i = 0; i < 2; i++) {
        make_doc(&b, sid, "x", gone[i]);
        assert_int_equal(kstore_doc_insert(s, &b.d, &inserted), 0);
        assert_int_equal(inserted, 1);
        assert_int_equal(kstore_source_add(s, sid, &one), 0);
    }
    docs c = {0};
    assert_int_equal(kstore_docs_foreach(s, sid, collect_doc, &c), 0);
    assert_int_equal(c.n, 3); /* visible inside the transaction */
    docs_free(&c);
    assert_int_equal(kstore_rollback(s), 0);
    assert_int_equal(kstore_rollback(s), 0); /* no transaction: a no-op */

    assert_int_equal(kstore_docs_foreach(s, 0, collect_doc, &c), 0);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.text[0], "Kept.");
    docs_free(&c);
    kstore_totals t = {0};
    assert_int_equal(kstore_totals_get(s, &t), 0);
    assert_int_equal(t.documents, 1);
    assert_int_equal(t.sentences, 1);
    assert_int_equal(t.bytes, 5);

    /* the rolled-back texts can be inserted again (their hashes are free) */
    assert_int_equal(kstore_begin(s), 0);
    make_doc(&b, sid, "x", gone[0]);
    assert_int_equal(kstore_doc_insert(s, &b.d, &inserted), 0);
    assert_int_equal(inserted, 1);
    assert_int_equal(kstore_commit(s), 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM documents"), 2);
    kstore_close(s);
}

static void test_totals_empty(void **state)
{
    fx *f = *state;
    kstore *s = open_ok(f->path, KSTORE_CREATE);
    kstore_totals t = {.sources = -1, .documents = -1, .sentences = -1, .bytes = -1};
    assert_int_equal(kstore_totals_get(s, &t), 0);
    assert_int_equal(t.sources, 0);
    assert_int_equal(t.documents, 0);
    assert_int_equal(t.sentences, 0);
    assert_int_equal(t.bytes, 0);
    docs c = {0};
    assert_int_equal(kstore_docs_foreach(s, 0, collect_doc, &c), 0);
    assert_int_equal(c.n, 0);
    kstore_close(s);
}

static void test_document_foreign_key(void **state)
{
    fx *f = *state;
    kstore *s = open_ok(f->path, KSTORE_CREATE);
    assert_int_equal(kstore_begin(s), 0);
    docbuf b;
    make_doc(&b, 12345, NULL, "Orphan.");
    int inserted = -1;
    int rc = kstore_doc_insert(s, &b.d, &inserted);
    assert_int_not_equal(rc, 0); /* foreign keys are on */
    assert_true(strlen(kstore_errmsg(s)) > 0);
    assert_int_equal(kstore_rollback(s), 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM documents"), 0);
    kstore_close(s);
}

/* Stores one document and returns the source id. */
static int64_t one_doc_store(const char *path)
{
    kstore *s = open_ok(path, KSTORE_CREATE);
    uint8_t h[KHASH_LEN];
    hash_of("src", h);
    int64_t sid;
    int already, inserted;
    assert_int_equal(kstore_source_begin(s, "/src", h, 1, &sid, &already), 0);
    assert_int_equal(kstore_begin(s), 0);
    docbuf b;
    make_doc(&b, sid, "t", "One.\nTwo.");
    assert_int_equal(kstore_doc_insert(s, &b.d, &inserted), 0);
    assert_int_equal(inserted, 1);
    assert_int_equal(kstore_commit(s), 0);
    kstore_close(s);
    return sid;
}

static void test_docs_corrupt_sent_ends_length(void **state)
{
    fx *f = *state;
    int64_t sid = one_doc_store(f->path);
    kstore *s = open_ok(f->path, 0);
    docs c = {0};
    assert_int_equal(kstore_docs_foreach(s, 0, collect_doc, &c), 0);
    assert_int_equal(c.n, 1);
    docs_free(&c);

    /* 2 sentences need 8 bytes; store 6 */
    raw_exec(f->path, "UPDATE documents SET sent_ends = x'040000000900'");
    assert_int_equal(kstore_docs_foreach(s, 0, collect_doc, &c), EX_DATAERR);
    assert_int_equal(c.n, 0);
    assert_non_null(strstr(kstore_errmsg(s), "document"));
    assert_int_equal(kstore_docs_foreach(s, sid, collect_doc, &c), EX_DATAERR);
    assert_int_equal(c.n, 0);

    /* right length, but a sentence ends past the text */
    raw_exec(f->path, "UPDATE documents SET sent_ends = x'04000000ff000000'");
    assert_int_equal(kstore_docs_foreach(s, 0, collect_doc, &c), EX_DATAERR);
    assert_int_equal(c.n, 0);

    /* repaired: readable again (the statement was reset after the error) */
    raw_exec(f->path, "UPDATE documents SET sent_ends = x'0400000009000000'");
    assert_int_equal(kstore_docs_foreach(s, 0, collect_doc, &c), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.ends[0][0], 4);
    assert_int_equal(c.ends[0][1], 9);
    docs_free(&c);
    kstore_close(s);
}

static void test_integrity_check(void **state)
{
    fx *f = *state;
    one_doc_store(f->path);
    kstore *s = open_ok(f->path, KSTORE_READONLY);
    int ok = -1;
    assert_int_equal(kstore_integrity_check(s, &ok), 0);
    assert_int_equal(ok, 1);
    kstore_close(s);
}

/* ---- vocabularies: strip_accents and words (004_vocab_options.sql) ------------ */

static void vocab_row(kvocab_row *r, const char *name, const char *pieces, int cased, int accents, int icu)
{
    memset(r, 0, sizeof *r);
    r->name = name;
    r->cased = cased;
    r->accents = accents;
    r->icu_words = icu;
    r->pieces = pieces;
    r->pieces_len = strlen(pieces);
    r->size = 2;
    khash128(pieces, r->pieces_len, r->hash);
    r->max_word_chars = 100;
    r->origin = "test";
}

/* A vocabulary stored before migration 004 follows its casing (NULL) and has
 * BERT's words; the options round-trip; the same pieces with other options
 * are another vocabulary for kstore_vocab_find_hash. */
static void test_vocab_options(void **state)
{
    fx *f = *state;
    assert_true(kschema_count >= 4);
    /* a store at version 3 with a vocabulary in it */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    for (int i = 0; i < 3; i++) assert_int_equal(sqlite3_exec(db, kschema_sql[i], NULL, NULL, NULL), SQLITE_OK);
    char sql[256];
    snprintf(sql, sizeof sql, "PRAGMA application_id = %d; PRAGMA user_version = 3", KSTORE_APPLICATION_ID);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO vocabularies(name, cased, size, pieces, content_hash, origin, active, "
                                  "created_at) VALUES ('old', 0, 2, '[UNK]\na\n', x'00', 'import:x', 1, 1)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);

    kstore *s = open_ok(f->path, 0);
    kvocab_row r;
    kbuf pieces = {0}, meta = {0}, name = {0};
    assert_int_equal(kstore_vocab_get(s, "old", &r, &pieces, &meta), 0);
    assert_int_equal(r.accents, KVOCAB_ACCENTS_CASING);
    assert_int_equal(r.icu_words, 0);
    assert_int_equal(raw_int(f->path, "SELECT strip_accents IS NULL FROM vocabularies WHERE name = 'old'"), 1);

    const char *P = "[UNK]\nb\n";
    static const struct { const char *name; int cased, accents, icu; } vs[] = {
        {"casing", 0, KVOCAB_ACCENTS_CASING, 0}, {"keep", 0, KVOCAB_ACCENTS_KEEP, 0},
        {"strip", 1, KVOCAB_ACCENTS_STRIP, 0},   {"icu", 0, KVOCAB_ACCENTS_KEEP, 1}};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        kvocab_row w;
        int64_t id = 0, same = -1;
        vocab_row(&w, vs[i].name, P, vs[i].cased, vs[i].accents, vs[i].icu);
        /* before it is added, nothing with exactly these options exists (the
         * previous rows have the same pieces but other options) */
        assert_int_equal(kstore_vocab_find_hash(s, &w, &same, &name), 0);
        assert_int_equal(same, 0);
        assert_int_equal(kstore_vocab_add(s, &w, &id), 0);
        assert_int_equal(kstore_vocab_find_hash(s, &w, &same, &name), 0);
        assert_int_equal(same, id);
        assert_string_equal(name.data, vs[i].name);
        assert_int_equal(kstore_vocab_get(s, vs[i].name, &r, &pieces, &meta), 0);
        assert_int_equal(r.cased, vs[i].cased);
        assert_int_equal(r.accents, vs[i].accents);
        assert_int_equal(r.icu_words, vs[i].icu);
    }
    assert_int_equal(raw_int(f->path, "SELECT strip_accents FROM vocabularies WHERE name = 'keep'"), 0);
    assert_int_equal(raw_int(f->path, "SELECT strip_accents FROM vocabularies WHERE name = 'strip'"), 1);
    assert_int_equal(raw_int(f->path, "SELECT words = 'icu' FROM vocabularies WHERE name = 'icu'"), 1);
    /* a second vocabulary with the same pieces and options: found by its own name first */
    kvocab_row w;
    int64_t id2 = 0, same = 0;
    vocab_row(&w, "keep2", P, 0, KVOCAB_ACCENTS_KEEP, 0);
    assert_int_equal(kstore_vocab_find_hash(s, &w, &same, &name), 0);
    assert_string_equal(name.data, "keep");
    assert_int_equal(kstore_vocab_add(s, &w, &id2), 0);
    assert_int_equal(kstore_vocab_find_hash(s, &w, &same, &name), 0);
    assert_int_equal(same, id2);
    assert_string_equal(name.data, "keep2");
    /* the column's constraints hold */
    sqlite3 *raw = NULL;
    assert_int_equal(sqlite3_open(f->path, &raw), SQLITE_OK);
    assert_int_not_equal(sqlite3_exec(raw, "UPDATE vocabularies SET words = 'mecab' WHERE name = 'keep'", NULL, NULL,
                                      NULL),
                         SQLITE_OK);
    assert_int_not_equal(sqlite3_exec(raw, "UPDATE vocabularies SET strip_accents = 2 WHERE name = 'keep'", NULL,
                                      NULL, NULL),
                         SQLITE_OK);
    sqlite3_close(raw);
    /* vocabs_foreach reads them too */
    int seen = 0;
    int each(const kvocab_row *v, void *ctx);
    assert_int_equal(kstore_vocabs_foreach(s, each, &seen), 0);
    assert_int_equal(seen, 6);
    kbuf_free(&pieces);
    kbuf_free(&meta);
    kbuf_free(&name);
    kstore_close(s);
}
int each(const kvocab_row *v, void *ctx)
{
    int *seen = ctx;
    if (!strcmp(v->name, "strip")) assert_int_equal(v->accents, KVOCAB_ACCENTS_STRIP);
    if (!strcmp(v->name, "icu")) assert_true(v->icu_words && v->accents == KVOCAB_ACCENTS_KEEP);
    if (!strcmp(v->name, "old")) assert_true(!v->icu_words && v->accents == KVOCAB_ACCENTS_CASING);
    (*seen)++;
    return 0;
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_open_creates_new_store),
        T(test_open_empty_file_becomes_store),
        T(test_open_missing),
        T(test_open_cannot_create),
        T(test_open_small_errbuf),
        T(test_refuse_foreign_sqlite),
        T(test_refuse_foreign_sqlite_bytes_unchanged),
        T(test_refuse_other_application_id),
        T(test_refuse_newer_schema),
        T(test_refuse_not_sqlite),
        T(test_refuse_directory),
        T(test_migrate_from_v1),
        T(test_source_lifecycle),
        T(test_sources_foreach_stop),
        T(test_source_interrupted_takeover),
        T(test_source_live_owner_refused),
        T(test_source_failed_is_retried),
        T(test_documents),
        T(test_documents_rollback),
        T(test_totals_empty),
        T(test_document_foreign_key),
        T(test_docs_corrupt_sent_ends_length),
        T(test_integrity_check),
        T(test_vocab_options),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
