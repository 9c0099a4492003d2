/* internal.h: the store's private pieces shared by its .c files (store.c,
 * kg.c): the handle, cached statements, error helpers. Not for other modules. */
#ifndef KILN_STORE_INTERNAL_H
#define KILN_STORE_INTERNAL_H

#include <sqlite3.h>

#include "store/store.h"

/* Statement slots: store.c uses [0, KSTORE_ST_KG), kg.c [KSTORE_ST_KG,
 * KSTORE_ST_JOBS), jobs.c [KSTORE_ST_JOBS, KSTORE_ST_PROGRESS), progress.c
 * [KSTORE_ST_PROGRESS, KSTORE_ST_MAX). */
#define KSTORE_ST_KG 32
#define KSTORE_ST_JOBS 96
#define KSTORE_ST_PROGRESS 128
#define KSTORE_ST_MAX 160

struct kstore {
    sqlite3 *db;
    sqlite3_stmt *stmt[KSTORE_ST_MAX];
    int version;
    char *path;            /* as opened: named in I/O error messages */
    char msg[1024];
    int code;              /* the sysexits code of the last kstore_fail */
};

/* Records a message; returns code. */
int kstore_fail(kstore *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Maps an SQLite result code to a sysexits code and records the message. */
int kstore_dbfail(kstore *s, int rc, const char *what);
/* The code of the last failure (kstore_stmt's NULL: EX_OSERR when SQLite
 * ran out of memory, EX_IOERR, ...), EX_SOFTWARE when none was recorded. */
#define KSTORE_LAST_CODE(s) ((s)->code ? (s)->code : EX_SOFTWARE)
/* The cached statement of slot i (prepared from sql on first use), reset and
 * unbound; NULL with the message set on failure. */
sqlite3_stmt *kstore_stmt(kstore *s, int i, const char *sql);
/* Steps a statement expecting SQLITE_DONE, then resets it. */
int kstore_step_done(kstore *s, sqlite3_stmt *st, const char *what);
int kstore_exec(kstore *s, const char *sql, const char *what);
/* First column of the first row of sql (0 if no row). */
int kstore_query_int(kstore *s, const char *sql, int64_t *out);
void kstore_bind_text_or_null(sqlite3_stmt *st, int i, const char *v);
/* Reads a doc_tokens row (columns doc_id, vocab_id, layout, n_tokens, tokens,
 * sent_ends, word_starts) into *t, checking the blobs; EX_DATAERR if corrupt. */
int kstore_tokens_row(kstore *s, sqlite3_stmt *st, ktokens_row *t);
/* kstore_tokens_count from vocab_progress (progress.c) when its counts are
 * exact (*exact = 1); else *exact = 0 and nothing is set. */
int kstore_progress_count(kstore *s, int64_t vocab_id, int64_t *done, int64_t *todo, int64_t *tokens,
                          int *exact);

#endif
