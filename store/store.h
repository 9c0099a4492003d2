/* store.h: kiln's SQLite store: opening, schema migrations and typed access to
 * every table. Every SQL string of kiln lives in store/; no math here.
 *
 * Errors: functions return 0 on success or a sysexits.h code (EX_DATAERR for a
 * foreign or newer file, EX_NOINPUT for a missing one, EX_CANTCREAT when it
 * cannot be created, EX_TEMPFAIL when locked, EX_IOERR/EX_SOFTWARE otherwise)
 * and leave a message for kstore_errmsg(). A kstore is used by one thread. */
#ifndef KILN_STORE_H
#define KILN_STORE_H

#include <stdint.h>
#include <stddef.h>

#include "util/util.h"

typedef struct kstore kstore;

#define KSTORE_APPLICATION_ID 0x4B494C4E /* "KILN" */

enum {
    KSTORE_CREATE = 1,   /* create the file if it does not exist */
    KSTORE_READONLY = 2, /* open read-only (must exist) */
};

/* Opens (and, with KSTORE_CREATE, creates) the store at path, checks that it
 * is a kiln store of a schema this build knows, and migrates it forward inside
 * one transaction. On success *out owns the handle (free with kstore_close).
 * On failure *out is NULL and err (errlen bytes) holds the message. */
int kstore_open(const char *path, int flags, kstore **out, char *err, size_t errlen);
void kstore_close(kstore *s);
const char *kstore_errmsg(const kstore *s);
int kstore_schema_version(const kstore *s);
int kstore_latest_schema_version(void);

/* Transactions (BEGIN IMMEDIATE / COMMIT / ROLLBACK). */
int kstore_begin(kstore *s);
int kstore_commit(kstore *s);
int kstore_rollback(kstore *s);

/* ---- sources ----------------------------------------------------------- */
typedef struct ksource {
    int64_t id;
    const char *path;
    uint8_t hash[KHASH_LEN];
    int64_t size;
    const char *format;
    const char *status;   /* running, complete, partial, failed; "interrupted"
                             is reported for a running row whose process died */
    const char *error;    /* may be NULL */
    int64_t documents, duplicates, skipped, bytes_in, sentences, text_bytes;
    int64_t started_at, finished_at;
} ksource;

/* Registers an ingest of the file with this content hash, in its own
 * transaction. If a source with the hash is complete (or partial: the same
 * bytes give the same result), *already is set to 1 and nothing changes.
 * Otherwise the row is created, or an interrupted one is taken over, with
 * status running and this process's pid; *id is its id. */
int kstore_source_begin(kstore *s, const char *path, const uint8_t hash[KHASH_LEN],
                        int64_t size, int64_t *id, int *already);
/* Adds counters to a source; call inside the transaction that stores the
 * documents they count, so that the counters always match the rows. */
typedef struct ksource_delta {
    int64_t documents, duplicates, skipped, bytes_in, sentences, text_bytes;
} ksource_delta;
int kstore_source_add(kstore *s, int64_t id, const ksource_delta *d);
/* Ends a source: status complete, partial or failed; error may be NULL.
 * format is the detected format. Its own transaction. */
int kstore_source_finish(kstore *s, int64_t id, const char *status, const char *format,
                         const char *error);
/* Calls cb for every source in id order (the struct is valid during the call).
 * cb returns nonzero to stop. */
int kstore_sources_foreach(kstore *s, int (*cb)(const ksource *, void *), void *ctx);

/* ---- documents --------------------------------------------------------- */
typedef struct kdoc {
    int64_t id;            /* set by kstore_doc_insert / reads */
    int64_t source_id;
    const char *entry;     /* "" for a plain file */
    const char *ext_id;    /* may be NULL */
    const char *title;     /* may be NULL */
    const char *url;       /* may be NULL */
    uint8_t hash[KHASH_LEN];
    const char *text;      /* (text_len) bytes of UTF-8 */
    size_t text_len;
    const uint32_t *sent_ends; /* (n_sentences) byte offsets, end exclusive */
    size_t n_sentences;
} kdoc;

/* Inserts a document unless one with the same content hash exists; *inserted
 * tells which. Call inside a transaction. */
int kstore_doc_insert(kstore *s, kdoc *d, int *inserted);
/* Calls cb for every document (of source_id, or all if source_id <= 0) in id
 * order; the struct and its strings are valid during the call only. */
int kstore_docs_foreach(kstore *s, int64_t source_id, int (*cb)(const kdoc *, void *), void *ctx);

/* ---- totals ------------------------------------------------------------ */
typedef struct kstore_totals {
    int64_t sources, documents, sentences, bytes;
} kstore_totals;
int kstore_totals_get(kstore *s, kstore_totals *t);

/* Runs PRAGMA integrity_check; *ok is 1 when it answers "ok". */
int kstore_integrity_check(kstore *s, int *ok);

#endif
