/* store.c: the SQLite store: open/check/migrate, prepared statements, and the
 * typed functions of store.h.
 *
 * Invariants:
 *  1. A file is a kiln store iff PRAGMA application_id == KSTORE_APPLICATION_ID;
 *     an empty file (no schema objects, ids 0) becomes one on open.
 *  2. PRAGMA user_version == number of migrations applied; migrations are
 *     applied in order inside one BEGIN IMMEDIATE transaction, so a crash
 *     leaves the file at the old version or the new, never between.
 *  3. Source counters (documents, sentences, ...) are updated in the same
 *     transaction as the rows they count.
 *  4. Every statement is prepared once per handle (stmt[] below) and reset
 *     after use. */
#define _POSIX_C_SOURCE 200809L
#include "store/store.h"

#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "schemas/schemas.h"
#include "store/internal.h"

enum {
    ST_SOURCE_FIND,
    ST_SOURCE_INSERT,
    ST_SOURCE_TAKEOVER,
    ST_SOURCE_ADD,
    ST_SOURCE_FINISH,
    ST_SOURCES_ALL,
    ST_DOC_INSERT,
    ST_DOCS_ALL,
    ST_DOCS_OF,
    ST_TOTALS,
    ST_VOCAB_INSERT,
    ST_VOCAB_BY_NAME,
    ST_VOCAB_ACTIVE,
    ST_VOCAB_BY_HASH,
    ST_VOCAB_NAME_EXISTS,
    ST_VOCAB_CLEAR_ACTIVE,
    ST_VOCAB_SET_ACTIVE,
    ST_VOCAB_ALL,
    ST_TOKENS_PUT,
    ST_SNAP_DOCS,
    ST_SNAP_SUMMARY,
    ST_DOCS_UNTOKENIZED,
    ST_TOKENS_COUNT,
    ST_TOKENS_ALL,
    ST_DOC_BY_HASH,
    ST_SOURCE_LAST_DOC,
    ST_COUNT
};
_Static_assert(ST_COUNT <= KSTORE_ST_KG, "statement slots of store.c overflow into kg.c's");

static const char *const stmt_sql[ST_COUNT] = {
    [ST_SOURCE_FIND] = "SELECT id, status, pid FROM sources WHERE content_hash = ?1",
    [ST_SOURCE_INSERT] =
        "INSERT INTO sources(path, content_hash, size, status, pid, started_at) "
        "VALUES (?1, ?2, ?3, 'running', ?4, ?5)",
    [ST_SOURCE_TAKEOVER] =
        "UPDATE sources SET path = ?2, status = 'running', pid = ?3, error = NULL, "
        "started_at = ?4, finished_at = NULL, duplicates = 0, skipped = 0, bytes_in = 0 WHERE id = ?1",
    [ST_SOURCE_ADD] =
        "UPDATE sources SET documents = documents + ?2, duplicates = duplicates + ?3, "
        "skipped = skipped + ?4, bytes_in = bytes_in + ?5, sentences = sentences + ?6, "
        "text_bytes = text_bytes + ?7 WHERE id = ?1",
    [ST_SOURCE_FINISH] =
        "UPDATE sources SET status = ?2, format = ?3, error = ?4, pid = NULL, "
        "finished_at = ?5 WHERE id = ?1",
    [ST_SOURCES_ALL] =
        "SELECT id, path, content_hash, size, format, status, error, pid, documents, "
        "duplicates, skipped, bytes_in, sentences, text_bytes, started_at, finished_at "
        "FROM sources ORDER BY id",
    [ST_DOC_INSERT] =
        "INSERT INTO documents(source_id, entry, ext_id, title, url, content_hash, "
        "n_sentences, n_bytes, text, sent_ends) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) "
        "ON CONFLICT(content_hash) DO NOTHING",
    [ST_DOCS_ALL] =
        "SELECT id, source_id, entry, ext_id, title, url, content_hash, n_sentences, text, "
        "sent_ends FROM documents ORDER BY id",
    [ST_DOCS_OF] =
        "SELECT id, source_id, entry, ext_id, title, url, content_hash, n_sentences, text, "
        "sent_ends FROM documents WHERE source_id = ?1 ORDER BY id",
    [ST_TOTALS] =
        "SELECT count(*), coalesce(sum(documents), 0), coalesce(sum(sentences), 0), "
        "coalesce(sum(text_bytes), 0) FROM sources",
    [ST_VOCAB_INSERT] =
        "INSERT INTO vocabularies(name, cased, size, pieces, content_hash, max_word_chars, origin, "
        "active, created_at, strip_accents, words, kind, merges) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
#define VOCAB_COLS "id, name, cased, size, pieces, content_hash, max_word_chars, origin, active, created_at, " \
                   "strip_accents, words, kind, merges"
    [ST_VOCAB_BY_NAME] = "SELECT " VOCAB_COLS " FROM vocabularies WHERE name = ?1",
    [ST_VOCAB_ACTIVE] = "SELECT " VOCAB_COLS " FROM vocabularies WHERE active = 1",
    [ST_VOCAB_BY_HASH] = "SELECT id, name FROM vocabularies WHERE content_hash = ?1 AND cased = ?2 "
                         "AND strip_accents IS ?3 AND words = ?4 AND kind = ?6 ORDER BY name = ?5 DESC, id LIMIT 1",
    [ST_VOCAB_NAME_EXISTS] = "SELECT 1 FROM vocabularies WHERE name = ?1",
    [ST_VOCAB_CLEAR_ACTIVE] = "UPDATE vocabularies SET active = 0 WHERE active = 1",
    [ST_VOCAB_SET_ACTIVE] = "UPDATE vocabularies SET active = 1 WHERE name = ?1",
    [ST_VOCAB_ALL] =
        "SELECT v.id, v.name, v.cased, v.size, '', v.content_hash, v.max_word_chars, v.origin, "
        "v.active, v.created_at, v.strip_accents, v.words, v.kind, NULL, "
        "(SELECT count(*) FROM doc_tokens t WHERE t.vocab_id = v.id), "
        "(SELECT coalesce(sum(n_tokens), 0) FROM doc_tokens t WHERE t.vocab_id = v.id) "
        "FROM vocabularies v ORDER BY v.id",
    [ST_TOKENS_PUT] =
        "INSERT INTO doc_tokens(doc_id, vocab_id, layout, n_tokens, tokens, sent_ends, "
        "word_starts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(vocab_id, doc_id) DO NOTHING",
    [ST_DOCS_UNTOKENIZED] =
        "SELECT d.id, d.source_id, d.entry, d.ext_id, d.title, d.url, d.content_hash, "
        "d.n_sentences, d.text, d.sent_ends FROM documents d WHERE d.id > ?1 AND NOT EXISTS "
        "(SELECT 1 FROM doc_tokens t WHERE t.vocab_id = ?2 AND t.doc_id = d.id) ORDER BY d.id "
        "LIMIT ?3",
    [ST_TOKENS_COUNT] =
        "SELECT (SELECT count(*) FROM doc_tokens WHERE vocab_id = ?1), "
        "(SELECT count(*) FROM documents) - (SELECT count(*) FROM doc_tokens WHERE vocab_id = ?1), "
        "(SELECT coalesce(sum(n_tokens), 0) FROM doc_tokens WHERE vocab_id = ?1)",
    [ST_SNAP_DOCS] =
        "SELECT t.doc_id, t.vocab_id, t.layout, t.n_tokens, t.tokens, t.sent_ends, t.word_starts, "
        "d.content_hash FROM doc_tokens t JOIN documents d ON d.id = t.doc_id "
        "WHERE t.vocab_id = ?1 AND t.doc_id <= ?2 ORDER BY t.doc_id",
    [ST_SNAP_SUMMARY] =
        "SELECT count(*), coalesce(max(doc_id), 0), coalesce(sum(doc_id), 0), "
        "coalesce(sum(n_tokens), 0) FROM doc_tokens WHERE vocab_id = ?1",
    [ST_TOKENS_ALL] =
        "SELECT doc_id, vocab_id, layout, n_tokens, tokens, sent_ends, word_starts FROM doc_tokens "
        "WHERE vocab_id = ?1 AND doc_id > ?2 ORDER BY doc_id",
    [ST_DOC_BY_HASH] = "SELECT id, source_id FROM documents WHERE content_hash = ?1",
    [ST_SOURCE_LAST_DOC] = "SELECT coalesce(max(id), 0) FROM documents WHERE source_id = ?1",
};

int kstore_fail(kstore *s, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->msg, sizeof s->msg, fmt, ap);
    va_end(ap);
    /* a column that could not be read for lack of memory comes back NULL /
     * empty, which a check then takes for damage: not corruption */
    if (code == EX_DATAERR && s->db && sqlite3_errcode(s->db) == SQLITE_NOMEM) {
        size_t n = strlen(s->msg);
        snprintf(s->msg + n, sizeof s->msg - n, " (out of memory reading it)");
        code = EX_OSERR;
    }
    s->code = code;
    return code;
}

/* " (a write failed)" and the like for an extended I/O result code, or "". */
static const char *io_call(int rc)
{
    switch (rc) {
    case SQLITE_IOERR_READ:
    case SQLITE_IOERR_SHORT_READ: return " (a read failed)";
    case SQLITE_IOERR_WRITE: return " (a write failed)";
    case SQLITE_IOERR_FSYNC:
    case SQLITE_IOERR_DIR_FSYNC: return " (an fsync failed)";
    case SQLITE_IOERR_TRUNCATE: return " (a truncate failed)";
    case SQLITE_IOERR_FSTAT: return " (an fstat failed)";
    case SQLITE_IOERR_LOCK:
    case SQLITE_IOERR_RDLOCK:
    case SQLITE_IOERR_UNLOCK:
    case SQLITE_IOERR_CHECKRESERVEDLOCK:
    case SQLITE_IOERR_SHMLOCK: return " (a file lock failed)";
    case SQLITE_IOERR_SHMOPEN:
    case SQLITE_IOERR_SHMSIZE:
    case SQLITE_IOERR_SHMMAP: return " (the -shm file failed)";
    case SQLITE_IOERR_DELETE: return " (a delete failed)";
    case SQLITE_IOERR_ACCESS: return " (an access check failed)";
    default: return "";
    }
}

int kstore_dbfail(kstore *s, int rc, const char *what)
{
    int code = EX_SOFTWARE;
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: code = EX_TEMPFAIL; break;
    case SQLITE_FULL:
    case SQLITE_IOERR: code = EX_IOERR; break;
    case SQLITE_CANTOPEN: code = EX_CANTCREAT; break;
    case SQLITE_READONLY:
    case SQLITE_PERM: code = EX_NOPERM; break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: code = EX_DATAERR; break;
    case SQLITE_NOMEM: code = EX_OSERR; break;
    }
    /* SQLite may report an allocation failed while reading the schema as a
     * corrupt schema; its error code on the handle still says NOMEM */
    if (s->db && sqlite3_errcode(s->db) == SQLITE_NOMEM) code = EX_OSERR;
    const char *m = s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
    if ((rc & 0xff) == SQLITE_BUSY)
        m = "the store is locked by another process (timed out waiting)";
    /* the store's file failed (disk full, I/O error, cannot open): say which
     * file, and which call of SQLite's when its extended code tells */
    if (code == EX_IOERR || code == EX_CANTCREAT)
        return kstore_fail(s, code, "store %s: %s: %s%s", s->path ? s->path : "?", what, m, io_call(rc));
    return kstore_fail(s, code, "%s: %s", what, m);
}

const char *kstore_errmsg(const kstore *s) { return s ? s->msg : "no store"; }
int kstore_schema_version(const kstore *s) { return s->version; }
int kstore_latest_schema_version(void) { return (int)kschema_count; }

int kstore_exec(kstore *s, const char *sql, const char *what)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : kstore_dbfail(s, rc, what);
}

int kstore_query_int(kstore *s, const char *sql, int64_t *out)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) return kstore_dbfail(s, rc, sql);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        *out = 0;
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? 0 : kstore_dbfail(s, rc, sql);
}

int kstore_begin(kstore *s) { return kstore_exec(s, "BEGIN IMMEDIATE", "begin transaction"); }
int kstore_commit(kstore *s)
{
    int rc = kstore_exec(s, "COMMIT", "commit");
    /* a COMMIT that failed for lack of memory or an I/O error may leave the
     * transaction open (the next BEGIN would fail "within a transaction"):
     * rolled back here, the message kept; a busy one stays for the caller */
    if (rc && rc != EX_TEMPFAIL && !sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}
int kstore_rollback(kstore *s)
{
    if (sqlite3_get_autocommit(s->db)) return 0;
    return kstore_exec(s, "ROLLBACK", "rollback");
}

/* Checks identity and version (invariant 1); reads only. */
static int check_identity(kstore *s, const char *path, int readonly)
{
    int64_t app = 0, ver = 0, nobj = 0;
    int rc;
    if ((rc = kstore_query_int(s, "PRAGMA application_id", &app))) return rc;
    if ((rc = kstore_query_int(s, "PRAGMA user_version", &ver))) return rc;
    if ((rc = kstore_query_int(s, "SELECT count(*) FROM sqlite_schema", &nobj))) return rc;
    int latest = (int)kschema_count;
    if (app != KSTORE_APPLICATION_ID && !(app == 0 && ver == 0 && nobj == 0))
        return kstore_fail(s, EX_DATAERR,
                    "%s is not a kiln store (SQLite application_id 0x%08llx, expected 0x%08x): "
                    "refusing to touch it",
                    path, (unsigned long long)(uint32_t)app, KSTORE_APPLICATION_ID);
    if (ver > latest)
        return kstore_fail(s, EX_DATAERR,
                    "%s has schema version %lld, newer than this kiln knows (%d): "
                    "use a newer kiln",
                    path, (long long)ver, latest);
    s->version = (int)ver;
    if (ver < latest && readonly)
        return kstore_fail(s, EX_DATAERR,
                    "%s has schema version %lld and needs migrating to %d: open it once "
                    "read-write (for example with kiln init)",
                    path, (long long)ver, latest);
    return 0;
}

/* Applies the missing migrations in one transaction (invariant 2). */
static int migrate(kstore *s, const char *path)
{
    int latest = (int)kschema_count;
    int64_t ver = s->version;
    int rc;
    if (ver >= latest) return 0;
    if ((rc = kstore_begin(s))) return rc;
    /* Re-read inside the write lock: another process may have migrated. */
    if ((rc = kstore_query_int(s, "PRAGMA user_version", &ver))) goto out;
    for (int i = (int)ver; i < latest; i++) {
        rc = kstore_exec(s, kschema_sql[i], kschema_name[i]);
        if (rc) goto out;
    }
    char sql[128];
    snprintf(sql, sizeof sql, "PRAGMA application_id = %d; PRAGMA user_version = %d",
             KSTORE_APPLICATION_ID, latest);
    if ((rc = kstore_exec(s, sql, "set schema version"))) goto out;
    if ((rc = kstore_commit(s))) goto out;
    if (ver < latest) kdebug("store %s migrated from version %lld to %d", path, (long long)ver, latest);
    s->version = latest;
    return 0;
out:
    kstore_rollback(s);
    return rc;
}

int kstore_open(const char *path, int flags, kstore **out, char *err, size_t errlen)
{
    *out = NULL;
    kstore *s = xcalloc(1, sizeof *s);
    s->path = xstrdup(path);
    int readonly = (flags & KSTORE_READONLY) != 0;
    int rc = 0;
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno != ENOENT || !(flags & KSTORE_CREATE) || readonly) {
            rc = kstore_fail(s, errno == ENOENT ? EX_NOINPUT : EX_IOERR, "no store at %s: %s%s", path,
                      strerror(errno),
                      errno == ENOENT ? " (create it with kiln init or kiln ingest)" : "");
            goto bad;
        }
    } else if (!S_ISREG(st.st_mode)) {
        rc = kstore_fail(s, EX_DATAERR, "%s is not a regular file", path);
        goto bad;
    }
    int oflags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    int src = sqlite3_open_v2(path, &s->db, oflags | SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK) {
        rc = kstore_dbfail(s, src, "open");
        goto bad;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 10000);
    /* Reading the header validates the file: a non-SQLite file fails here. */
    int64_t dummy;
    if ((rc = kstore_query_int(s, "PRAGMA schema_version", &dummy))) {
        /* not a database (SQLITE_NOTADB, CORRUPT); a read that failed is an
         * I/O error, reported as such (the message names the store) */
        if (rc != EX_DATAERR) goto bad;
        char m[sizeof s->msg];
        memcpy(m, s->msg, sizeof m);
        rc = kstore_fail(s, EX_DATAERR, "%s is not a kiln store (%.600s)", path, m);
        goto bad;
    }
    /* Identity first: nothing is written to a file that is not ours (WAL mode
     * would change its header). */
    if ((rc = check_identity(s, path, readonly))) goto bad;
    if (!readonly) {
        /* A new file gets 16 KiB pages: documents of a few kB stay off overflow
         * chains (must precede WAL mode; no effect on an existing file). */
        if (s->version == 0 && (rc = kstore_exec(s, "PRAGMA page_size = 16384", "set page size"))) goto bad;
        if ((rc = kstore_exec(s, "PRAGMA journal_mode = WAL", "enable WAL"))) goto bad;
        if ((rc = kstore_exec(s, "PRAGMA cache_size = -65536", "set cache size"))) goto bad;
        if ((rc = kstore_exec(s, "PRAGMA synchronous = NORMAL", "set synchronous"))) goto bad;
    }
    if ((rc = kstore_exec(s, "PRAGMA foreign_keys = ON", "enable foreign keys"))) goto bad;
    if ((rc = migrate(s, path))) goto bad;
    *out = s;
    return 0;
bad:
    snprintf(err, errlen, "%s", s->msg);
    kstore_close(s);
    return rc;
}

void kstore_close(kstore *s)
{
    if (!s) return;
    for (int i = 0; i < KSTORE_ST_MAX; i++) sqlite3_finalize(s->stmt[i]);
    if (s->db) sqlite3_close(s->db);
    free(s->path);
    free(s);
}

sqlite3_stmt *kstore_stmt(kstore *s, int i, const char *sql)
{
    if (!s->stmt[i]) {
        int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i], NULL);
        if (rc != SQLITE_OK) {
            kstore_dbfail(s, rc, "prepare");
            return NULL;
        }
    } else {
        sqlite3_reset(s->stmt[i]);
        sqlite3_clear_bindings(s->stmt[i]);
    }
    return s->stmt[i];
}

/* Returns the cached statement i of this file, reset and unbound, or NULL. */
static sqlite3_stmt *stmt(kstore *s, int i) { return kstore_stmt(s, i, stmt_sql[i]); }

int kstore_step_done(kstore *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : kstore_dbfail(s, rc, what);
}

void kstore_bind_text_or_null(sqlite3_stmt *st, int i, const char *v)
{
    if (v) sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
    else sqlite3_bind_null(st, i);
}

static int pid_alive(int64_t pid)
{
    if (pid <= 0) return 0;
    if (pid == (int64_t)getpid()) return 1;
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

int kstore_source_begin(kstore *s, const char *path, const uint8_t hash[KHASH_LEN],
                        int64_t size, int64_t *id, int *already)
{
    *already = 0;
    int rc = kstore_begin(s);
    if (rc) return rc;
    sqlite3_stmt *st = stmt(s, ST_SOURCE_FIND);
    if (!st) { rc = KSTORE_LAST_CODE(s); goto out; }
    sqlite3_bind_blob(st, 1, hash, KHASH_LEN, SQLITE_STATIC);
    int r = sqlite3_step(st);
    int64_t now = (int64_t)time(NULL);
    if (r == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        const char *status = (const char *)sqlite3_column_text(st, 1);
        int64_t pid = sqlite3_column_int64(st, 2);
        if (!status) { /* out of memory reading it */
            sqlite3_reset(st);
            rc = kstore_dbfail(s, SQLITE_NOMEM, "find source");
            goto out;
        }
        if (strcmp(status, "complete") == 0 || strcmp(status, "partial") == 0) {
            sqlite3_reset(st);
            *already = 1;
            return kstore_commit(s);
        }
        if (strcmp(status, "running") == 0 && pid_alive(pid) && pid != (int64_t)getpid()) {
            sqlite3_reset(st);
            rc = kstore_fail(s, EX_TEMPFAIL, "%s is being ingested by process %lld", path, (long long)pid);
            goto out;
        }
        sqlite3_reset(st);
        st = stmt(s, ST_SOURCE_TAKEOVER);
        if (!st) { rc = KSTORE_LAST_CODE(s); goto out; }
        sqlite3_bind_int64(st, 1, *id);
        sqlite3_bind_text(st, 2, path, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (int64_t)getpid());
        sqlite3_bind_int64(st, 4, now);
        if ((rc = kstore_step_done(s, st, "resume source"))) goto out;
    } else if (r == SQLITE_DONE) {
        sqlite3_reset(st);
        st = stmt(s, ST_SOURCE_INSERT);
        if (!st) { rc = KSTORE_LAST_CODE(s); goto out; }
        sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, hash, KHASH_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, size);
        sqlite3_bind_int64(st, 4, (int64_t)getpid());
        sqlite3_bind_int64(st, 5, now);
        if ((rc = kstore_step_done(s, st, "insert source"))) goto out;
        *id = sqlite3_last_insert_rowid(s->db);
    } else {
        sqlite3_reset(st);
        rc = kstore_dbfail(s, r, "find source");
        goto out;
    }
    return kstore_commit(s);
out:
    kstore_rollback(s);
    return rc;
}

int kstore_source_add(kstore *s, int64_t id, const ksource_delta *d)
{
    sqlite3_stmt *st = stmt(s, ST_SOURCE_ADD);
    if (!st) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, d->documents);
    sqlite3_bind_int64(st, 3, d->duplicates);
    sqlite3_bind_int64(st, 4, d->skipped);
    sqlite3_bind_int64(st, 5, d->bytes_in);
    sqlite3_bind_int64(st, 6, d->sentences);
    sqlite3_bind_int64(st, 7, d->text_bytes);
    return kstore_step_done(s, st, "update source counters");
}

int kstore_source_finish(kstore *s, int64_t id, const char *status, const char *format,
                         const char *error)
{
    sqlite3_stmt *st = stmt(s, ST_SOURCE_FINISH);
    if (!st) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, status, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, format ? format : "", -1, SQLITE_STATIC);
    kstore_bind_text_or_null(st, 4, error);
    sqlite3_bind_int64(st, 5, (int64_t)time(NULL));
    return kstore_step_done(s, st, "finish source");
}

int kstore_sources_foreach(kstore *s, int (*cb)(const ksource *, void *), void *ctx)
{
    sqlite3_stmt *st = stmt(s, ST_SOURCES_ALL);
    if (!st) return KSTORE_LAST_CODE(s);
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        ksource src = {0};
        src.id = sqlite3_column_int64(st, 0);
        src.path = (const char *)sqlite3_column_text(st, 1);
        if (sqlite3_column_bytes(st, 2) == KHASH_LEN)
            memcpy(src.hash, sqlite3_column_blob(st, 2), KHASH_LEN);
        src.size = sqlite3_column_int64(st, 3);
        src.format = (const char *)sqlite3_column_text(st, 4);
        src.status = (const char *)sqlite3_column_text(st, 5);
        src.error = (const char *)sqlite3_column_text(st, 6);
        int64_t pid = sqlite3_column_int64(st, 7);
        if (strcmp(src.status, "running") == 0 && !pid_alive(pid)) src.status = "interrupted";
        src.documents = sqlite3_column_int64(st, 8);
        src.duplicates = sqlite3_column_int64(st, 9);
        src.skipped = sqlite3_column_int64(st, 10);
        src.bytes_in = sqlite3_column_int64(st, 11);
        src.sentences = sqlite3_column_int64(st, 12);
        src.text_bytes = sqlite3_column_int64(st, 13);
        src.started_at = sqlite3_column_int64(st, 14);
        src.finished_at = sqlite3_column_int64(st, 15);
        if (cb(&src, ctx)) break;
    }
    sqlite3_reset(st);
    return (r == SQLITE_ROW || r == SQLITE_DONE) ? 0 : kstore_dbfail(s, r, "list sources");
}

int kstore_doc_insert(kstore *s, kdoc *d, int *inserted)
{
    sqlite3_stmt *st = stmt(s, ST_DOC_INSERT);
    if (!st) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(st, 1, d->source_id);
    sqlite3_bind_text(st, 2, d->entry ? d->entry : "", -1, SQLITE_STATIC);
    kstore_bind_text_or_null(st, 3, d->ext_id);
    kstore_bind_text_or_null(st, 4, d->title);
    kstore_bind_text_or_null(st, 5, d->url);
    sqlite3_bind_blob(st, 6, d->hash, KHASH_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, (int64_t)d->n_sentences);
    sqlite3_bind_int64(st, 8, (int64_t)d->text_len);
    sqlite3_bind_text(st, 9, d->text, (int)d->text_len, SQLITE_STATIC);
    /* sent_ends is written little-endian; kiln builds only on little-endian hosts
     * (checked in CMakeLists.txt), so the array is bound as is. */
    sqlite3_bind_blob(st, 10, d->sent_ends, (int)(d->n_sentences * sizeof(uint32_t)),
                      SQLITE_STATIC);
    int rc = kstore_step_done(s, st, "insert document");
    if (rc) return rc;
    *inserted = sqlite3_changes(s->db) > 0;
    d->id = *inserted ? sqlite3_last_insert_rowid(s->db) : 0;
    return 0;
}

int kstore_doc_find(kstore *s, const uint8_t hash[KHASH_LEN], int64_t *doc_id, int64_t *source_id)
{
    *doc_id = *source_id = 0;
    sqlite3_stmt *st = stmt(s, ST_DOC_BY_HASH);
    if (!st) return KSTORE_LAST_CODE(s);
    sqlite3_bind_blob(st, 1, hash, KHASH_LEN, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        *doc_id = sqlite3_column_int64(st, 0);
        *source_id = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    return (r == SQLITE_ROW || r == SQLITE_DONE) ? 0 : kstore_dbfail(s, r, "find document");
}

int kstore_source_last_doc(kstore *s, int64_t source_id, int64_t *doc_id)
{
    *doc_id = 0;
    sqlite3_stmt *st = stmt(s, ST_SOURCE_LAST_DOC);
    if (!st) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(st, 1, source_id);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) *doc_id = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return (r == SQLITE_ROW || r == SQLITE_DONE) ? 0 : kstore_dbfail(s, r, "find the source's documents");
}

/* Reads the documents of a prepared, bound statement (columns as ST_DOCS_ALL)
 * and calls cb for each, checking the sentence index. */
static int docs_rows(kstore *s, sqlite3_stmt *st, int (*cb)(const kdoc *, void *), void *ctx)
{
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        kdoc d = {0};
        d.id = sqlite3_column_int64(st, 0);
        d.source_id = sqlite3_column_int64(st, 1);
        d.entry = (const char *)sqlite3_column_text(st, 2);
        d.ext_id = (const char *)sqlite3_column_text(st, 3);
        d.title = (const char *)sqlite3_column_text(st, 4);
        d.url = (const char *)sqlite3_column_text(st, 5);
        if (sqlite3_column_bytes(st, 6) == KHASH_LEN)
            memcpy(d.hash, sqlite3_column_blob(st, 6), KHASH_LEN);
        d.n_sentences = (size_t)sqlite3_column_int64(st, 7);
        d.text = (const char *)sqlite3_column_text(st, 8);
        d.text_len = (size_t)sqlite3_column_bytes(st, 8);
        const void *ends = sqlite3_column_blob(st, 9);
        size_t nb = (size_t)sqlite3_column_bytes(st, 9);
        if (sqlite3_errcode(s->db) == SQLITE_NOMEM) { /* a column came back NULL */
            sqlite3_reset(st);
            return kstore_dbfail(s, SQLITE_NOMEM, "read documents");
        }
        if (nb != d.n_sentences * sizeof(uint32_t)) {
            sqlite3_reset(st);
            return kstore_fail(s, EX_DATAERR, "document %lld: sentence index has %zu bytes, expected %zu",
                        (long long)d.id, nb, d.n_sentences * sizeof(uint32_t));
        }
        d.sent_ends = ends;
        for (size_t i = 0; i < d.n_sentences; i++)
            if (d.sent_ends[i] > d.text_len) {
                sqlite3_reset(st);
                return kstore_fail(s, EX_DATAERR, "document %lld: sentence %zu ends past the text",
                            (long long)d.id, i);
            }
        if (cb(&d, ctx)) break;
    }
    sqlite3_reset(st);
    return (r == SQLITE_ROW || r == SQLITE_DONE) ? 0 : kstore_dbfail(s, r, "read documents");
}

int kstore_docs_foreach(kstore *s, int64_t source_id, int (*cb)(const kdoc *, void *), void *ctx)
{
    sqlite3_stmt *st = stmt(s, source_id > 0 ? ST_DOCS_OF : ST_DOCS_ALL);
    if (!st) return KSTORE_LAST_CODE(s);
    if (source_id > 0) sqlite3_bind_int64(st, 1, source_id);
    return docs_rows(s, st, cb, ctx);
}

int kstore_docs_untokenized(kstore *s, int64_t vocab_id, int64_t after_id, size_t limit,
                            int (*cb)(const kdoc *, void *), void *ctx)
{
    sqlite3_stmt *st = stmt(s, ST_DOCS_UNTOKENIZED);
    if (!st) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(st, 1, after_id);
    sqlite3_bind_int64(st, 2, vocab_id);
    sqlite3_bind_int64(st, 3, (int64_t)limit);
    return docs_rows(s, st, cb, ctx);
}

/* ---- vocabularies ---------------------------------------------------------- */

static int vocab_name_exists(kstore *s, const char *name, int *exists)
{
    sqlite3_stmt *st = stmt(s, ST_VOCAB_NAME_EXISTS);
    if (!st) return KSTORE_LAST_CODE(s);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    *exists = r == SQLITE_ROW;
    sqlite3_reset(st);
    return (r == SQLITE_ROW || r == SQLITE_DONE) ? 0 : kstore_dbfail(s, r, "find vocabulary");
}

/* strip_accents: NULL (follows the casing), 1, 0 */
static void bind_accents(sqlite3_stmt *st, int i, int accents)
{
    if (accents == KVOCAB_ACCENTS_STRIP) sqlite3_bind_int(st, i, 1);
    else if (accents == KVOCAB_ACCENTS_KEEP) sqlite3_bind_int(st, i, 0);
    else sqlite3_bind_null(st, i);
}

int kstore_vocab_add(kstore *s, const kvocab_row *v, int64_t *id)
{
    int rc = kstore_begin(s), exists = 0;
    if (rc) return rc;
    if ((rc = vocab_name_exists(s, v->name, &exists))) goto out;
    if (exists) {
        rc = kstore_fail(s, EX_DATAERR, "a vocabulary named '%s' exists already (choose another --name)",
                  v->name);
        goto out;
    }
    int64_t nactive = 0;
    if ((rc = kstore_query_int(s, "SELECT count(*) FROM vocabularies WHERE active = 1", &nactive))) goto out;
    sqlite3_stmt *st = stmt(s, ST_VOCAB_INSERT);
    if (!st) { rc = KSTORE_LAST_CODE(s); goto out; }
    sqlite3_bind_text(st, 1, v->name, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, v->cased);
    sqlite3_bind_int64(st, 3, v->size);
    sqlite3_bind_text(st, 4, v->pieces, (int)v->pieces_len, SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, v->hash, KHASH_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, v->max_word_chars);
    sqlite3_bind_text(st, 7, v->origin, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 8, nactive == 0);
    sqlite3_bind_int64(st, 9, (int64_t)time(NULL));
    bind_accents(st, 10, v->accents);
    sqlite3_bind_text(st, 11, v->icu_words ? "icu" : "bert", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 12, v->kind == KVOCAB_BPE ? "bpe" : "wordpiece", -1, SQLITE_STATIC);
    if (v->kind == KVOCAB_BPE) sqlite3_bind_text(st, 13, v->merges ? v->merges : "", (int)v->merges_len, SQLITE_STATIC);
    else sqlite3_bind_null(st, 13);
    if ((rc = kstore_step_done(s, st, "insert vocabulary"))) goto out;
    *id = sqlite3_last_insert_rowid(s->db);
    return kstore_commit(s);
out:
    kstore_rollback(s);
    return rc;
}

static void vocab_from_row(sqlite3_stmt *st, kvocab_row *r)
{
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(st, 0);
    r->name = (const char *)sqlite3_column_text(st, 1);
    r->cased = sqlite3_column_int(st, 2);
    r->size = sqlite3_column_int64(st, 3);
    r->pieces = (const char *)sqlite3_column_text(st, 4);
    r->pieces_len = (size_t)sqlite3_column_bytes(st, 4);
    if (sqlite3_column_bytes(st, 5) == KHASH_LEN) memcpy(r->hash, sqlite3_column_blob(st, 5), KHASH_LEN);
    r->max_word_chars = sqlite3_column_int64(st, 6);
    r->origin = (const char *)sqlite3_column_text(st, 7);
    r->active = sqlite3_column_int(st, 8);
    r->created_at = sqlite3_column_int64(st, 9);
    r->accents = sqlite3_column_type(st, 10) == SQLITE_NULL ? KVOCAB_ACCENTS_CASING
                 : sqlite3_column_int(st, 10)                ? KVOCAB_ACCENTS_STRIP
                                                             : KVOCAB_ACCENTS_KEEP;
    const char *w = (const char *)sqlite3_column_text(st, 11);
    r->icu_words = w && !strcmp(w, "icu");
    const char *k = (const char *)sqlite3_column_text(st, 12);
    r->kind = k && !strcmp(k, "bpe") ? KVOCAB_BPE : KVOCAB_WORDPIECE;
    if (sqlite3_column_type(st, 13) != SQLITE_NULL) {
        r->merges = (const char *)sqlite3_column_text(st, 13);
        r->merges_len = (size_t)sqlite3_column_bytes(st, 13);
    }
}

int kstore_vocab_get(kstore *s, const char *name, kvocab_row *r, kbuf *pieces, kbuf *meta)
{
    sqlite3_stmt *st = stmt(s, name ? ST_VOCAB_BY_NAME : ST_VOCAB_ACTIVE);
    if (!st) return KSTORE_LAST_CODE(s);
    if (name) sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) return kstore_dbfail(s, rc, "read vocabulary");
        if (name) return kstore_fail(s, EX_NOINPUT, "no vocabulary named '%s' (see kiln vocab list)", name);
        return kstore_fail(s, EX_NOINPUT,
                    "no active vocabulary: import one (kiln vocab import vocab.txt), train one "
                    "(kiln vocab train --size N) or pick one (kiln vocab use NAME)");
    }
    vocab_from_row(st, r);
    if (sqlite3_errcode(s->db) == SQLITE_NOMEM || !r->name || !r->origin) { /* a column came back NULL */
        sqlite3_reset(st);
        return kstore_dbfail(s, SQLITE_NOMEM, "read vocabulary");
    }
    kbuf_clear(pieces);
    kbuf_append(pieces, r->pieces, r->pieces_len);
    kbuf_clear(meta);
    size_t name_off = meta->len;
    kbuf_append(meta, r->name, strlen(r->name) + 1);
    size_t origin_off = meta->len;
    kbuf_append(meta, r->origin, strlen(r->origin) + 1);
    size_t merges_off = meta->len;
    if (r->merges) {
        kbuf_append(meta, r->merges, r->merges_len);
        kbuf_putc(meta, '\0');
    }
    sqlite3_reset(st);
    r->pieces = pieces->data;
    r->name = meta->data + name_off;
    r->origin = meta->data + origin_off;
    if (r->merges) r->merges = meta->data + merges_off;
    return 0;
}

int kstore_vocab_find_hash(kstore *s, const kvocab_row *like, int64_t *id, kbuf *name)
{
    sqlite3_stmt *st = stmt(s, ST_VOCAB_BY_HASH);
    if (!st) return KSTORE_LAST_CODE(s);
    sqlite3_bind_blob(st, 1, like->hash, KHASH_LEN, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, like->cased);
    bind_accents(st, 3, like->accents);
    sqlite3_bind_text(st, 4, like->icu_words ? "icu" : "bert", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, like->name ? like->name : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, like->kind == KVOCAB_BPE ? "bpe" : "wordpiece", -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    *id = 0;
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        kbuf_clear(name);
        kbuf_puts(name, (const char *)sqlite3_column_text(st, 1));
    }
    sqlite3_reset(st);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : kstore_dbfail(s, rc, "find vocabulary");
}

int kstore_vocab_set_active(kstore *s, const char *name)
{
    int rc = kstore_begin(s), exists = 0;
    if (rc) return rc;
    if ((rc = vocab_name_exists(s, name, &exists))) goto out;
    if (!exists) {
        rc = kstore_fail(s, EX_NOINPUT, "no vocabulary named '%s' (see kiln vocab list)", name);
        goto out;
    }
    sqlite3_stmt *st = stmt(s, ST_VOCAB_CLEAR_ACTIVE);
    if (!st) { rc = KSTORE_LAST_CODE(s); goto out; }
    if ((rc = kstore_step_done(s, st, "clear active vocabulary"))) goto out;
    st = stmt(s, ST_VOCAB_SET_ACTIVE);
    if (!st) { rc = KSTORE_LAST_CODE(s); goto out; }
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if ((rc = kstore_step_done(s, st, "set active vocabulary"))) goto out;
    return kstore_commit(s);
out:
    kstore_rollback(s);
    return rc;
}

int kstore_vocabs_foreach(kstore *s, int (*cb)(const kvocab_row *, void *), void *ctx)
{
    sqlite3_stmt *st = stmt(s, ST_VOCAB_ALL);
    if (!st) return KSTORE_LAST_CODE(s);
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        kvocab_row v;
        vocab_from_row(st, &v);
        v.pieces = NULL;
        v.pieces_len = 0;
        v.tokenized_docs = sqlite3_column_int64(st, 14);
        v.tokens = sqlite3_column_int64(st, 15);
        if (cb(&v, ctx)) break;
    }
    sqlite3_reset(st);
    return (r == SQLITE_ROW || r == SQLITE_DONE) ? 0 : kstore_dbfail(s, r, "list vocabularies");
}

/* ---- tokenized documents ------------------------------------------------------ */

int kstore_tokens_put(kstore *s, const ktokens_row *r) { return kstore_tokens_insert(s, r, NULL); }

int kstore_tokens_insert(kstore *s, const ktokens_row *r, int *inserted)
{
    if (inserted) *inserted = 0;
    sqlite3_stmt *st = stmt(s, ST_TOKENS_PUT);
    if (!st) return KSTORE_LAST_CODE(s);
    size_t w = r->layout == KTOK_LAYOUT_U16 ? 2 : 4;
    sqlite3_bind_int64(st, 1, r->doc_id);
    sqlite3_bind_int64(st, 2, r->vocab_id);
    sqlite3_bind_int(st, 3, r->layout);
    sqlite3_bind_int64(st, 4, (int64_t)r->n_tokens);
    sqlite3_bind_blob(st, 5, r->tokens, (int)(r->n_tokens * w), SQLITE_STATIC);
    sqlite3_bind_blob(st, 6, r->sent_ends, (int)(r->n_sentences * sizeof(uint32_t)), SQLITE_STATIC);
    sqlite3_bind_blob(st, 7, r->word_starts, (int)((r->n_tokens + 7) / 8), SQLITE_STATIC);
    int rc = kstore_step_done(s, st, "store tokens");
    if (!rc && inserted) *inserted = sqlite3_changes(s->db) > 0;
    return rc;
}

int kstore_tokens_count(kstore *s, int64_t vocab_id, int64_t *done, int64_t *todo, int64_t *tokens)
{
    int exact = 0;
    int rc = kstore_progress_count(s, vocab_id, done, todo, tokens, &exact);
    if (rc || exact) return rc;
    sqlite3_stmt *st = stmt(s, ST_TOKENS_COUNT);
    if (!st) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(st, 1, vocab_id);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        *done = sqlite3_column_int64(st, 0);
        *todo = sqlite3_column_int64(st, 1);
        *tokens = sqlite3_column_int64(st, 2);
        r = SQLITE_DONE;
    }
    sqlite3_reset(st);
    return r == SQLITE_DONE ? 0 : kstore_dbfail(s, r, "count tokens");
}

int kstore_tokens_row(kstore *s, sqlite3_stmt *st, ktokens_row *t)
{
    memset(t, 0, sizeof *t);
    t->doc_id = sqlite3_column_int64(st, 0);
    t->vocab_id = sqlite3_column_int64(st, 1);
    t->layout = sqlite3_column_int(st, 2);
    t->n_tokens = (size_t)sqlite3_column_int64(st, 3);
    size_t w = t->layout == KTOK_LAYOUT_U16 ? 2 : t->layout == KTOK_LAYOUT_U32 ? 4 : 0;
    t->tokens = sqlite3_column_blob(st, 4);
    size_t tb = (size_t)sqlite3_column_bytes(st, 4);
    t->sent_ends = sqlite3_column_blob(st, 5);
    t->n_sentences = (size_t)sqlite3_column_bytes(st, 5) / sizeof(uint32_t);
    t->word_starts = sqlite3_column_blob(st, 6);
    size_t wb = (size_t)sqlite3_column_bytes(st, 6);
    int ok = w && tb == t->n_tokens * w && wb == (t->n_tokens + 7) / 8 &&
             (size_t)sqlite3_column_bytes(st, 5) % sizeof(uint32_t) == 0;
    for (size_t i = 0; ok && i < t->n_sentences; i++)
        ok = t->sent_ends[i] <= t->n_tokens && (i == 0 || t->sent_ends[i] >= t->sent_ends[i - 1]);
    if (ok) return 0;
    return kstore_fail(s, EX_DATAERR, "tokens of document %lld (vocabulary %lld) are corrupt",
                       (long long)t->doc_id, (long long)t->vocab_id);
}

/* Steps a doc_tokens query through its callback: plain rows, or rows with the
 * document's content hash in column 7 (checked). */
typedef struct tok_cb {
    int (*plain)(const ktokens_row *, void *);
    int (*hashed)(const ktokens_row *, const uint8_t *hash, void *);
    void *ctx;
} tok_cb;

static int tokens_rows(kstore *s, sqlite3_stmt *st, const tok_cb *c)
{
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        ktokens_row t;
        int rc = kstore_tokens_row(s, st, &t);
        if (!rc && c->hashed && sqlite3_column_bytes(st, 7) != KHASH_LEN)
            rc = kstore_fail(s, EX_DATAERR, "document %lld has a corrupt content hash", (long long)t.doc_id);
        if (rc) { sqlite3_reset(st); return rc; }
        if (c->hashed ? c->hashed(&t, sqlite3_column_blob(st, 7), c->ctx) : c->plain(&t, c->ctx)) break;
    }
    sqlite3_reset(st);
    return (r == SQLITE_ROW || r == SQLITE_DONE) ? 0 : kstore_dbfail(s, r, "read tokens");
}

int kstore_tokens_foreach(kstore *s, int64_t vocab_id, int64_t after_id,
                          int (*cb)(const ktokens_row *, void *), void *ctx)
{
    sqlite3_stmt *st = stmt(s, ST_TOKENS_ALL);
    if (!st) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(st, 1, vocab_id);
    sqlite3_bind_int64(st, 2, after_id);
    return tokens_rows(s, st, &(tok_cb){.plain = cb, .ctx = ctx});
}

int kstore_snapshot_docs_foreach(kstore *s, int64_t vocab_id, int64_t max_doc_id,
                                 int (*cb)(const ktokens_row *, const uint8_t *hash, void *),
                                 void *ctx)
{
    sqlite3_stmt *st = stmt(s, ST_SNAP_DOCS);
    if (!st) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(st, 1, vocab_id);
    sqlite3_bind_int64(st, 2, max_doc_id);
    return tokens_rows(s, st, &(tok_cb){.hashed = cb, .ctx = ctx});
}

int kstore_tokens_summary(kstore *s, int64_t vocab_id, int64_t *docs, int64_t *max_doc_id,
                          int64_t *sum_doc_ids, int64_t *tokens)
{
    sqlite3_stmt *st = stmt(s, ST_SNAP_SUMMARY);
    if (!st) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(st, 1, vocab_id);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        *docs = sqlite3_column_int64(st, 0);
        *max_doc_id = sqlite3_column_int64(st, 1);
        *sum_doc_ids = sqlite3_column_int64(st, 2);
        *tokens = sqlite3_column_int64(st, 3);
        r = SQLITE_DONE;
    }
    sqlite3_reset(st);
    return r == SQLITE_DONE ? 0 : kstore_dbfail(s, r, "token summary");
}

int kstore_totals_get(kstore *s, kstore_totals *t)
{
    sqlite3_stmt *st = stmt(s, ST_TOTALS);
    if (!st) return KSTORE_LAST_CODE(s);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        t->sources = sqlite3_column_int64(st, 0);
        t->documents = sqlite3_column_int64(st, 1);
        t->sentences = sqlite3_column_int64(st, 2);
        t->bytes = sqlite3_column_int64(st, 3);
        r = SQLITE_DONE;
    }
    sqlite3_reset(st);
    return r == SQLITE_DONE ? 0 : kstore_dbfail(s, r, "totals");
}

int kstore_integrity_check(kstore *s, int *ok)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA integrity_check", -1, &st, NULL);
    if (rc != SQLITE_OK) return kstore_dbfail(s, rc, "integrity_check");
    *ok = 0;
    if (sqlite3_step(st) == SQLITE_ROW)
        *ok = strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
    sqlite3_finalize(st);
    return 0;
}
