/* progress.c: the store's per-vocabulary progress of tokenizing and linking
 * and the corpus's piece counts (vocab_progress, token_counts;
 * schemas/005_progress.sql, docs/store.md): typed access, every SQL string
 * of them.
 *
 * Invariants (with the triggers of 005_progress.sql):
 *  1. Every document with id <= tokenized_through has tokens under the
 *     vocabulary; every document with id <= linked_through has tokens and is
 *     linked at linked_generation (linked_through <= tokenized_through when
 *     set). Documents are never deleted and ids only grow, so both stay true
 *     as documents are added; the cursors only move forward, inside the
 *     transaction that made them true (or in one statement that checks it).
 *  2. docs and tokens follow doc_tokens (triggers, same transaction).
 *  3. counted = 1: the piece counts and counted_tokens follow doc_tokens too,
 *     added by the writer in the transaction that stores the tokens
 *     (kstore_progress_tokenized). counted_tokens != tokens means a writer did
 *     not add its counts: kstore_progress_recount counts everything again.
 * Work: every function here costs the documents it is given or those after a
 * cursor, except kstore_progress_recount (one scan of the vocabulary's
 * tokens, once per store migrated from schema 4 or older). */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "store/internal.h"

#define CHUNK 1024 /* pieces per token_counts row */

enum {
    P_GET = KSTORE_ST_PROGRESS,
    P_ENSURE,
    P_TOKENIZED,
    P_TOKENS_SETTLE,
    P_LINKED,
    P_LINKS_SETTLE,
    P_CHUNK_GET,
    P_CHUNK_PUT,
    P_CHUNKS_ALL,
    P_CHUNKS_DEL,
    P_RECOUNT_SCAN,
    P_RECOUNT_SET,
    P_VOCAB_SIZE,
    P_TODO,
    P_END
};
_Static_assert(P_END <= KSTORE_ST_MAX, "too many statements for the slots");

static const char *const sql[P_END - KSTORE_ST_PROGRESS] = {
#define S(k) [k - KSTORE_ST_PROGRESS]
    S(P_GET) = "SELECT tokenized_through, docs, tokens, counted, counted_tokens, linked_through, "
               "linked_generation FROM vocab_progress WHERE vocab_id = ?1",
    /* a row made for a vocabulary that has none (not counted: its tokens, if
     * any, were stored without one) */
    S(P_ENSURE) = "INSERT INTO vocab_progress(vocab_id, counted) VALUES (?1, 0) ON CONFLICT DO NOTHING",
    S(P_TOKENIZED) = "UPDATE vocab_progress SET tokenized_through = max(tokenized_through, ?2), "
                     "counted_tokens = counted_tokens + ?3 * counted WHERE vocab_id = ?1",
    S(P_TOKENS_SETTLE) =
        "UPDATE vocab_progress SET tokenized_through = (SELECT coalesce(max(id), 0) FROM documents) "
        "WHERE vocab_id = ?1 AND NOT EXISTS (SELECT 1 FROM documents d WHERE d.id > tokenized_through "
        "AND NOT EXISTS (SELECT 1 FROM doc_tokens t WHERE t.vocab_id = ?1 AND t.doc_id = d.id))",
    S(P_LINKED) = "UPDATE vocab_progress SET linked_through = min(?2, tokenized_through), "
                  "linked_generation = ?3 WHERE vocab_id = ?1",
    S(P_LINKS_SETTLE) =
        "UPDATE vocab_progress SET linked_through = tokenized_through, linked_generation = ?2 "
        "WHERE vocab_id = ?1 AND NOT EXISTS (SELECT 1 FROM doc_tokens t WHERE t.vocab_id = ?1 "
        "AND t.doc_id > (CASE WHEN linked_generation = ?2 THEN linked_through ELSE 0 END) "
        "AND t.doc_id <= tokenized_through AND NOT EXISTS (SELECT 1 FROM kg_linked l "
        "WHERE l.vocab_id = ?1 AND l.doc_id = t.doc_id AND l.generation = ?2))",
    S(P_CHUNK_GET) = "SELECT counts FROM token_counts WHERE vocab_id = ?1 AND chunk = ?2",
    S(P_CHUNK_PUT) = "INSERT OR REPLACE INTO token_counts(vocab_id, chunk, counts) VALUES (?1, ?2, ?3)",
    S(P_CHUNKS_ALL) = "SELECT chunk, counts FROM token_counts WHERE vocab_id = ?1",
    S(P_CHUNKS_DEL) = "DELETE FROM token_counts WHERE vocab_id = ?1",
    S(P_RECOUNT_SCAN) = "SELECT doc_id, vocab_id, layout, n_tokens, tokens, sent_ends, word_starts "
                        "FROM doc_tokens WHERE vocab_id = ?1",
    S(P_RECOUNT_SET) = "UPDATE vocab_progress SET docs = ?2, tokens = ?3, counted = 1, counted_tokens = ?3 "
                       "WHERE vocab_id = ?1",
    S(P_VOCAB_SIZE) = "SELECT size FROM vocabularies WHERE id = ?1",
    S(P_TODO) = "SELECT (SELECT count(*) FROM documents WHERE id > ?2) - "
                "(SELECT count(*) FROM doc_tokens WHERE vocab_id = ?1 AND doc_id > ?2)",
#undef S
};

static sqlite3_stmt *st(kstore *s, int i) { return kstore_stmt(s, i, sql[i - KSTORE_ST_PROGRESS]); }

static int bind_step(kstore *s, int i, int64_t a, int64_t b, int64_t c, int nargs, const char *what)
{
    sqlite3_stmt *q = st(s, i);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, a);
    if (nargs > 1) sqlite3_bind_int64(q, 2, b);
    if (nargs > 2) sqlite3_bind_int64(q, 3, c);
    return kstore_step_done(s, q, what);
}

int kstore_progress_get(kstore *s, int64_t vocab_id, kvocab_progress *p)
{
    memset(p, 0, sizeof *p);
    sqlite3_stmt *q = st(s, P_GET);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, vocab_id);
    int r = sqlite3_step(q);
    if (r == SQLITE_ROW) {
        p->tokenized_through = sqlite3_column_int64(q, 0);
        p->docs = sqlite3_column_int64(q, 1);
        p->tokens = sqlite3_column_int64(q, 2);
        p->counted = sqlite3_column_int(q, 3);
        p->counted_tokens = sqlite3_column_int64(q, 4);
        p->linked_through = sqlite3_column_int64(q, 5);
        p->linked_generation = sqlite3_column_int64(q, 6);
        r = SQLITE_DONE;
    }
    sqlite3_reset(q);
    return r == SQLITE_DONE ? 0 : kstore_dbfail(s, r, "read vocabulary progress");
}

int kstore_progress_exact(const kvocab_progress *p) { return p->counted && p->counted_tokens == p->tokens; }

/* Adds delta[0..n) (pieces from chunk c * CHUNK) to the stored chunk c. */
static int chunk_add(kstore *s, int64_t vocab_id, int64_t c, const uint64_t *delta, size_t n)
{
    uint64_t v[CHUNK];
    memset(v, 0, sizeof v);
    sqlite3_stmt *q = st(s, P_CHUNK_GET);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, vocab_id);
    sqlite3_bind_int64(q, 2, c);
    int r = sqlite3_step(q);
    if (r == SQLITE_ROW) {
        size_t nb = (size_t)sqlite3_column_bytes(q, 0);
        if (nb != sizeof v) {
            sqlite3_reset(q);
            return kstore_fail(s, EX_DATAERR, "piece counts of vocabulary %lld (chunk %lld) are corrupt: %zu bytes",
                               (long long)vocab_id, (long long)c, nb);
        }
        memcpy(v, sqlite3_column_blob(q, 0), sizeof v);
        r = SQLITE_DONE;
    }
    sqlite3_reset(q);
    if (r != SQLITE_DONE) return kstore_dbfail(s, r, "read piece counts");
    for (size_t i = 0; i < n; i++) v[i] += delta[i];
    q = st(s, P_CHUNK_PUT);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, vocab_id);
    sqlite3_bind_int64(q, 2, c);
    sqlite3_bind_blob(q, 3, v, (int)sizeof v, SQLITE_STATIC); /* little-endian host (CMakeLists.txt) */
    return kstore_step_done(s, q, "store piece counts");
}

int kstore_progress_tokenized(kstore *s, int64_t vocab_id, int64_t through, const uint64_t *freq,
                              size_t n, int64_t tokens)
{
    int rc = bind_step(s, P_ENSURE, vocab_id, 0, 0, 1, "vocabulary progress");
    if (rc) return rc;
    kvocab_progress p;
    if ((rc = kstore_progress_get(s, vocab_id, &p))) return rc;
    if (p.counted && freq) {
        for (size_t c = 0; c * CHUNK < n; c++) {
            size_t k = n - c * CHUNK < CHUNK ? n - c * CHUNK : CHUNK;
            size_t i = 0;
            while (i < k && !freq[c * CHUNK + i]) i++;
            if (i < k && (rc = chunk_add(s, vocab_id, (int64_t)c, freq + c * CHUNK, k))) return rc;
        }
    }
    /* no counts given: counted_tokens falls behind tokens, the next use recounts */
    return bind_step(s, P_TOKENIZED, vocab_id, through, freq ? tokens : 0, 3, "record tokenizing progress");
}

int kstore_progress_tokens_settle(kstore *s, int64_t vocab_id)
{
    int rc = kstore_begin(s);
    if (rc) return rc;
    if ((rc = bind_step(s, P_ENSURE, vocab_id, 0, 0, 1, "vocabulary progress")) ||
        (rc = bind_step(s, P_TOKENS_SETTLE, vocab_id, 0, 0, 1, "record tokenizing progress"))) {
        kstore_rollback(s);
        return rc;
    }
    return kstore_commit(s);
}

int kstore_progress_linked(kstore *s, int64_t vocab_id, int64_t through, int64_t generation)
{
    int rc = bind_step(s, P_ENSURE, vocab_id, 0, 0, 1, "vocabulary progress");
    return rc ? rc : bind_step(s, P_LINKED, vocab_id, through, generation, 3, "record linking progress");
}

int kstore_progress_links_settle(kstore *s, int64_t vocab_id, int64_t generation)
{
    int rc = kstore_begin(s);
    if (rc) return rc;
    if ((rc = bind_step(s, P_ENSURE, vocab_id, 0, 0, 1, "vocabulary progress")) ||
        (rc = bind_step(s, P_LINKS_SETTLE, vocab_id, generation, 0, 2, "record linking progress"))) {
        kstore_rollback(s);
        return rc;
    }
    return kstore_commit(s);
}

int kstore_progress_count(kstore *s, int64_t vocab_id, int64_t *done, int64_t *todo, int64_t *tokens,
                          int *exact)
{
    kvocab_progress p;
    *exact = 0;
    int rc = kstore_progress_get(s, vocab_id, &p);
    if (rc || !kstore_progress_exact(&p)) return rc;
    /* invariant 1: the documents up to tokenized_through all have tokens */
    sqlite3_stmt *q = st(s, P_TODO);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, vocab_id);
    sqlite3_bind_int64(q, 2, p.tokenized_through);
    int r = sqlite3_step(q);
    if (r == SQLITE_ROW) {
        *todo = sqlite3_column_int64(q, 0);
        r = SQLITE_DONE;
    }
    sqlite3_reset(q);
    if (r != SQLITE_DONE) return kstore_dbfail(s, r, "count tokens");
    *done = p.docs;
    *tokens = p.tokens;
    *exact = 1;
    return 0;
}

int kstore_token_counts_get(kstore *s, int64_t vocab_id, uint64_t *freq, size_t n)
{
    memset(freq, 0, n * sizeof *freq);
    sqlite3_stmt *q = st(s, P_CHUNKS_ALL);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, vocab_id);
    int r;
    while ((r = sqlite3_step(q)) == SQLITE_ROW) {
        int64_t c = sqlite3_column_int64(q, 0);
        size_t nb = (size_t)sqlite3_column_bytes(q, 1);
        if (c < 0 || nb != CHUNK * sizeof(uint64_t)) {
            sqlite3_reset(q);
            return kstore_fail(s, EX_DATAERR, "piece counts of vocabulary %lld (chunk %lld) are corrupt",
                               (long long)vocab_id, (long long)c);
        }
        if ((uint64_t)c * CHUNK >= n) continue; /* pieces past the vocabulary: none are counted */
        size_t k = n - (size_t)c * CHUNK < CHUNK ? n - (size_t)c * CHUNK : CHUNK;
        memcpy(freq + (size_t)c * CHUNK, sqlite3_column_blob(q, 1), k * sizeof *freq);
    }
    sqlite3_reset(q);
    return r == SQLITE_DONE ? 0 : kstore_dbfail(s, r, "read piece counts");
}

int kstore_progress_recount(kstore *s, int64_t vocab_id, int *recounted)
{
    *recounted = 0;
    int rc = kstore_begin(s);
    if (rc) return rc;
    kvocab_progress p;
    uint64_t *freq = NULL;
    int64_t size = 0, docs = 0, tokens = 0;
    if ((rc = bind_step(s, P_ENSURE, vocab_id, 0, 0, 1, "vocabulary progress")) ||
        (rc = kstore_progress_get(s, vocab_id, &p)))
        goto out;
    if (kstore_progress_exact(&p)) return kstore_commit(s); /* counted meanwhile */
    sqlite3_stmt *q = st(s, P_VOCAB_SIZE);
    if (!q) { rc = KSTORE_LAST_CODE(s); goto out; }
    sqlite3_bind_int64(q, 1, vocab_id);
    int r = sqlite3_step(q);
    if (r == SQLITE_ROW) size = sqlite3_column_int64(q, 0);
    sqlite3_reset(q);
    if (r != SQLITE_ROW) {
        rc = r == SQLITE_DONE ? kstore_fail(s, EX_NOINPUT, "no vocabulary with id %lld", (long long)vocab_id)
                              : kstore_dbfail(s, r, "read vocabulary");
        goto out;
    }
    size_t n = (size_t)(size > 0 ? size : 0);
    freq = xcalloc(n ? n : 1, sizeof *freq);
    q = st(s, P_RECOUNT_SCAN);
    if (!q) { rc = KSTORE_LAST_CODE(s); goto out; }
    sqlite3_bind_int64(q, 1, vocab_id);
    while ((r = sqlite3_step(q)) == SQLITE_ROW) {
        ktokens_row t;
        if ((rc = kstore_tokens_row(s, q, &t))) { sqlite3_reset(q); goto out; }
        docs++;
        tokens += (int64_t)t.n_tokens;
        const unsigned char *b = t.tokens;
        for (size_t i = 0; i < t.n_tokens; i++) {
            uint32_t id;
            if (t.layout == KTOK_LAYOUT_U16) { uint16_t v; memcpy(&v, b + 2 * i, 2); id = v; }
            else memcpy(&id, b + 4 * i, 4);
            if (id < n) freq[id]++;
        }
    }
    sqlite3_reset(q);
    if (r != SQLITE_DONE) { rc = kstore_dbfail(s, r, "count tokens"); goto out; }
    if ((rc = bind_step(s, P_CHUNKS_DEL, vocab_id, 0, 0, 1, "clear piece counts"))) goto out;
    for (size_t c = 0; c * CHUNK < n; c++) {
        size_t k = n - c * CHUNK < CHUNK ? n - c * CHUNK : CHUNK;
        size_t i = 0;
        while (i < k && !freq[c * CHUNK + i]) i++;
        if (i < k && (rc = chunk_add(s, vocab_id, (int64_t)c, freq + c * CHUNK, k))) goto out;
    }
    if ((rc = bind_step(s, P_RECOUNT_SET, vocab_id, docs, tokens, 3, "store token totals"))) goto out;
    free(freq);
    if ((rc = kstore_commit(s))) return rc;
    *recounted = 1;
    return 0;
out:
    free(freq);
    kstore_rollback(s);
    return rc;
}

uint64_t kstore_vm_steps(kstore *s)
{
    uint64_t n = 0;
    for (int i = 0; i < KSTORE_ST_MAX; i++)
        if (s->stmt[i]) n += (uint64_t)sqlite3_stmt_status(s->stmt[i], SQLITE_STMTSTATUS_VM_STEP, 0);
    return n;
}
