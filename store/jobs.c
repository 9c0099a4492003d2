/* jobs.c: the store's job queue, checkpoint records and training metrics
 * (tables jobs, checkpoints, metrics of schemas/002_planned.sql, the queue
 * columns of 003_daemon.sql; docs/store.md, docs/daemon.md), and the lookup
 * of a source by content hash that the daemon's spool needs.
 *
 * Queue invariants (kiln daemon, docs/daemon.md):
 *  1. Only jobs with origin 'run' are queued, claimed and recovered; a row a
 *     kiln train process made for itself (origin NULL) is never changed here.
 *  2. A job is claimed by one conditional update (queued -> running), so two
 *     writers never both start it.
 *  3. A state change clears `request`: a pending pause or cancel applies to
 *     the run it was asked for, not to a later one. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "store/internal.h"

enum {
    J_ADD = KSTORE_ST_JOBS,
    J_STATE,
    J_STEP,
    J_GET,
    J_ALL,
    J_METRIC_PUT,
    J_METRICS,
    J_METRICS_NAME,
    J_CKPT_ADD,
    J_CKPT_LATEST,
    J_QUEUE,
    J_UPDATE,
    J_REQUEST,
    J_QUEUED,
    J_RECOVER,
    J_CKPT_BEST,
    J_SOURCE_HASH,
    J_END
};
_Static_assert(J_END <= KSTORE_ST_PROGRESS, "too many statements for the slots");

#define JOB_COLS "id, name, kind, config, priority, state, step, error, created_at, updated_at, origin, request"
static const char *const sql[J_END - KSTORE_ST_JOBS] = {
#define S(k) [k - KSTORE_ST_JOBS]
    S(J_ADD) = "INSERT INTO jobs(name, kind, config, priority, state, created_at, updated_at) "
               "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    S(J_STATE) = "UPDATE jobs SET state = ?2, error = ?3, updated_at = ?4 WHERE id = ?1",
    S(J_STEP) = "UPDATE jobs SET step = ?2, updated_at = ?3 WHERE id = ?1",
    S(J_GET) = "SELECT " JOB_COLS " FROM jobs WHERE id = ?1",
    S(J_ALL) = "SELECT " JOB_COLS " FROM jobs ORDER BY id",
    S(J_METRIC_PUT) = "INSERT OR REPLACE INTO metrics(job_id, step, name, value) VALUES (?1, ?2, ?3, ?4)",
    S(J_METRICS) = "SELECT step, name, value FROM metrics WHERE job_id = ?1 ORDER BY step, name",
    S(J_METRICS_NAME) = "SELECT step, name, value FROM metrics WHERE job_id = ?1 AND name = ?2 ORDER BY step",
    S(J_CKPT_ADD) = "INSERT INTO checkpoints(job_id, step, path, val_loss, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    S(J_CKPT_LATEST) = "SELECT path, step FROM checkpoints WHERE job_id = ?1 ORDER BY step DESC, id DESC LIMIT 1",
    S(J_QUEUE) = "INSERT INTO jobs(name, kind, config, priority, state, origin, created_at, updated_at) "
                 "VALUES (?1, ?2, ?3, ?4, 'queued', 'run', ?5, ?5)",
    S(J_UPDATE) = "UPDATE jobs SET state = ?2, error = ?3, request = NULL, updated_at = ?4 "
                  "WHERE id = ?1 AND (?5 IS NULL OR state = ?5)",
    S(J_REQUEST) = "UPDATE jobs SET request = ?2, updated_at = ?3 WHERE id = ?1 AND (state = 'running' OR ?2 IS NULL)",
    S(J_QUEUED) = "SELECT " JOB_COLS " FROM jobs WHERE state = 'queued' AND origin = 'run' "
                  "ORDER BY priority DESC, id",
    S(J_RECOVER) = "UPDATE jobs SET state = CASE request WHEN 'pause' THEN 'paused' WHEN 'cancel' THEN "
                   "'cancelled' ELSE 'queued' END, request = NULL, updated_at = ?1 "
                   "WHERE state = 'running' AND origin = 'run'",
    S(J_CKPT_BEST) = "SELECT path, step, val_loss FROM checkpoints WHERE job_id = ?1 AND val_loss IS NOT NULL "
                     "ORDER BY val_loss, step LIMIT 1",
    S(J_SOURCE_HASH) = "SELECT id, path, size, format, status, error, documents, duplicates, skipped, bytes_in, "
                       "sentences, text_bytes, started_at, finished_at FROM sources WHERE content_hash = ?1",
#undef S
};

static sqlite3_stmt *st(kstore *s, int i) { return kstore_stmt(s, i, sql[i - KSTORE_ST_JOBS]); }

int kstore_job_add(kstore *s, const char *name, const char *kind, const char *config,
                   int64_t priority, const char *state, int64_t *id)
{
    sqlite3_stmt *q = st(s, J_ADD);
    if (!q) return KSTORE_LAST_CODE(s);
    kstore_bind_text_or_null(q, 1, name);
    sqlite3_bind_text(q, 2, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, config, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 4, priority);
    sqlite3_bind_text(q, 5, state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 6, (int64_t)time(NULL));
    int rc = kstore_step_done(s, q, "add job");
    if (!rc) *id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

int kstore_job_set_state(kstore *s, int64_t id, const char *state, const char *error)
{
    sqlite3_stmt *q = st(s, J_STATE);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, id);
    sqlite3_bind_text(q, 2, state, -1, SQLITE_STATIC);
    kstore_bind_text_or_null(q, 3, error);
    sqlite3_bind_int64(q, 4, (int64_t)time(NULL));
    int rc = kstore_step_done(s, q, "set job state");
    if (!rc && sqlite3_changes(s->db) == 0) return kstore_fail(s, EX_NOINPUT, "no job %lld", (long long)id);
    return rc;
}

int kstore_job_set_step(kstore *s, int64_t id, int64_t step)
{
    sqlite3_stmt *q = st(s, J_STEP);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, id);
    sqlite3_bind_int64(q, 2, step);
    sqlite3_bind_int64(q, 3, (int64_t)time(NULL));
    return kstore_step_done(s, q, "set job step");
}

static const char *col_text(sqlite3_stmt *q, int i) { return (const char *)sqlite3_column_text(q, i); }

static void job_row(sqlite3_stmt *q, kjob *j)
{
    j->id = sqlite3_column_int64(q, 0);
    j->name = col_text(q, 1);
    j->kind = col_text(q, 2);
    j->config = col_text(q, 3);
    j->priority = sqlite3_column_int64(q, 4);
    j->state = col_text(q, 5);
    j->step = sqlite3_column_int64(q, 6);
    j->error = col_text(q, 7);
    j->created_at = sqlite3_column_int64(q, 8);
    j->updated_at = sqlite3_column_int64(q, 9);
    j->origin = col_text(q, 10);
    j->request = col_text(q, 11);
}

int kstore_job_get(kstore *s, int64_t id, kjob *j, kbuf *strings)
{
    sqlite3_stmt *q = st(s, J_GET);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, id);
    int r = sqlite3_step(q);
    if (r != SQLITE_ROW) {
        sqlite3_reset(q);
        if (r == SQLITE_DONE) return kstore_fail(s, EX_NOINPUT, "no job %lld", (long long)id);
        return kstore_dbfail(s, r, "read job");
    }
    kjob t;
    job_row(q, &t);
    /* copy the strings: offsets first (the buffer may move), pointers after */
    const char *src[7] = {t.name, t.kind, t.config, t.state, t.error, t.origin, t.request};
    size_t off[7];
    kbuf_clear(strings);
    for (int i = 0; i < 7; i++) {
        off[i] = strings->len;
        if (src[i]) kbuf_append(strings, src[i], strlen(src[i]) + 1);
    }
    sqlite3_reset(q);
    const char **dst[7] = {&t.name, &t.kind, &t.config, &t.state, &t.error, &t.origin, &t.request};
    for (int i = 0; i < 7; i++) *dst[i] = src[i] ? strings->data + off[i] : NULL;
    *j = t;
    return 0;
}

/* Every row of a job query through cb (strings valid during the call). */
static int job_rows(kstore *s, sqlite3_stmt *q, int (*cb)(const kjob *, void *), void *ctx, const char *what)
{
    if (!q) return KSTORE_LAST_CODE(s);
    int r;
    while ((r = sqlite3_step(q)) == SQLITE_ROW) {
        kjob j;
        job_row(q, &j);
        if (cb(&j, ctx)) break;
    }
    sqlite3_reset(q);
    return (r == SQLITE_ROW || r == SQLITE_DONE) ? 0 : kstore_dbfail(s, r, what);
}

int kstore_jobs_foreach(kstore *s, int (*cb)(const kjob *, void *), void *ctx)
{
    return job_rows(s, st(s, J_ALL), cb, ctx, "read jobs");
}

int kstore_metric_put(kstore *s, int64_t job, int64_t step, const char *name, double value)
{
    if (!isfinite(value)) return 0;   /* REAL NOT NULL: a NaN is not recorded */
    sqlite3_stmt *q = st(s, J_METRIC_PUT);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, job);
    sqlite3_bind_int64(q, 2, step);
    sqlite3_bind_text(q, 3, name, -1, SQLITE_STATIC);
    sqlite3_bind_double(q, 4, value);
    return kstore_step_done(s, q, "record metric");
}

int kstore_metrics_foreach(kstore *s, int64_t job, const char *name,
                           int (*cb)(int64_t step, const char *name, double value, void *), void *ctx)
{
    sqlite3_stmt *q = st(s, name ? J_METRICS_NAME : J_METRICS);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, job);
    if (name) sqlite3_bind_text(q, 2, name, -1, SQLITE_STATIC);
    int r;
    while ((r = sqlite3_step(q)) == SQLITE_ROW)
        if (cb(sqlite3_column_int64(q, 0), col_text(q, 1), sqlite3_column_double(q, 2), ctx)) break;
    sqlite3_reset(q);
    return (r == SQLITE_ROW || r == SQLITE_DONE) ? 0 : kstore_dbfail(s, r, "read metrics");
}

int kstore_checkpoint_add(kstore *s, int64_t job, int64_t step, const char *path, double val_loss)
{
    sqlite3_stmt *q = st(s, J_CKPT_ADD);
    if (!q) return KSTORE_LAST_CODE(s);
    if (job > 0) sqlite3_bind_int64(q, 1, job);
    else sqlite3_bind_null(q, 1);
    sqlite3_bind_int64(q, 2, step);
    sqlite3_bind_text(q, 3, path, -1, SQLITE_STATIC);
    if (isfinite(val_loss)) sqlite3_bind_double(q, 4, val_loss);
    else sqlite3_bind_null(q, 4);
    sqlite3_bind_int64(q, 5, (int64_t)time(NULL));
    return kstore_step_done(s, q, "record checkpoint");
}

/* One checkpoint row of job (columns path, step[, val_loss]) into the outputs;
 * empty path and step 0 when there is none. */
static int ckpt_row(kstore *s, sqlite3_stmt *q, int64_t job, kbuf *path, int64_t *step, double *val_loss,
                    const char *what)
{
    sqlite3_bind_int64(q, 1, job);
    kbuf_clear(path);
    *step = 0;
    if (val_loss) *val_loss = NAN;
    int r = sqlite3_step(q);
    if (r == SQLITE_ROW) {
        kbuf_puts(path, col_text(q, 0));
        *step = sqlite3_column_int64(q, 1);
        if (val_loss) *val_loss = sqlite3_column_double(q, 2);
        r = SQLITE_DONE;
    }
    sqlite3_reset(q);
    return r == SQLITE_DONE ? 0 : kstore_dbfail(s, r, what);
}

int kstore_checkpoint_latest(kstore *s, int64_t job, kbuf *path, int64_t *step)
{
    sqlite3_stmt *q = st(s, J_CKPT_LATEST);
    if (!q) return KSTORE_LAST_CODE(s);
    return ckpt_row(s, q, job, path, step, NULL, "latest checkpoint");
}

/* ---- the daemon's queue (003_daemon.sql) ------------------------------------------ */

int kstore_job_queue(kstore *s, const char *name, const char *kind, const char *config, int64_t priority,
                     int64_t *id)
{
    sqlite3_stmt *q = st(s, J_QUEUE);
    if (!q) return KSTORE_LAST_CODE(s);
    kstore_bind_text_or_null(q, 1, name);
    sqlite3_bind_text(q, 2, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, config, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 4, priority);
    sqlite3_bind_int64(q, 5, (int64_t)time(NULL));
    int rc = kstore_step_done(s, q, "queue job");
    if (!rc) *id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

int kstore_job_update(kstore *s, int64_t id, const char *from, const char *to, const char *error, int *changed)
{
    sqlite3_stmt *q = st(s, J_UPDATE);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, id);
    sqlite3_bind_text(q, 2, to, -1, SQLITE_STATIC);
    kstore_bind_text_or_null(q, 3, error);
    sqlite3_bind_int64(q, 4, (int64_t)time(NULL));
    kstore_bind_text_or_null(q, 5, from);
    int rc = kstore_step_done(s, q, "update job");
    if (changed) *changed = !rc && sqlite3_changes(s->db) > 0;
    return rc;
}

int kstore_job_set_request(kstore *s, int64_t id, const char *request)
{
    sqlite3_stmt *q = st(s, J_REQUEST);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, id);
    kstore_bind_text_or_null(q, 2, request);
    sqlite3_bind_int64(q, 3, (int64_t)time(NULL));
    int rc = kstore_step_done(s, q, "record job request");
    if (!rc && sqlite3_changes(s->db) == 0)
        return kstore_fail(s, EX_NOINPUT, "no running job %lld", (long long)id);
    return rc;
}

int kstore_jobs_queued_foreach(kstore *s, int (*cb)(const kjob *, void *), void *ctx)
{
    return job_rows(s, st(s, J_QUEUED), cb, ctx, "read the queue");
}

int kstore_jobs_recover(kstore *s, int64_t *n)
{
    sqlite3_stmt *q = st(s, J_RECOVER);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_int64(q, 1, (int64_t)time(NULL));
    int rc = kstore_step_done(s, q, "recover jobs");
    *n = rc ? 0 : sqlite3_changes(s->db);
    return rc;
}

int kstore_checkpoint_best(kstore *s, int64_t job, kbuf *path, int64_t *step, double *val_loss)
{
    sqlite3_stmt *q = st(s, J_CKPT_BEST);
    if (!q) return KSTORE_LAST_CODE(s);
    return ckpt_row(s, q, job, path, step, val_loss, "best checkpoint");
}

int kstore_source_by_hash(kstore *s, const uint8_t hash[KHASH_LEN], ksource *src, kbuf *strings, int *found)
{
    sqlite3_stmt *q = st(s, J_SOURCE_HASH);
    if (!q) return KSTORE_LAST_CODE(s);
    sqlite3_bind_blob(q, 1, hash, KHASH_LEN, SQLITE_STATIC);
    *found = 0;
    memset(src, 0, sizeof *src);
    int r = sqlite3_step(q);
    if (r == SQLITE_ROW) {
        *found = 1;
        src->id = sqlite3_column_int64(q, 0);
        memcpy(src->hash, hash, KHASH_LEN);
        src->size = sqlite3_column_int64(q, 2);
        int64_t *num[] = {&src->documents, &src->duplicates, &src->skipped, &src->bytes_in,
                          &src->sentences, &src->text_bytes, &src->started_at, &src->finished_at};
        for (int i = 0; i < 8; i++) *num[i] = sqlite3_column_int64(q, 6 + i);
        /* strings: offsets first (the buffer may move), pointers after */
        const char *v[4] = {col_text(q, 1), col_text(q, 3), col_text(q, 4), col_text(q, 5)};
        size_t off[4];
        kbuf_clear(strings);
        for (int i = 0; i < 4; i++) {
            off[i] = strings->len;
            if (v[i]) kbuf_append(strings, v[i], strlen(v[i]) + 1);
        }
        const char **dst[4] = {&src->path, &src->format, &src->status, &src->error};
        for (int i = 0; i < 4; i++) *dst[i] = v[i] ? strings->data + off[i] : NULL;
        r = SQLITE_DONE;
    }
    sqlite3_reset(q);
    return r == SQLITE_DONE ? 0 : kstore_dbfail(s, r, "find source");
}
