/* metrics.c: reads of the metrics table for the people watching a run
 * (kiln plot, kiln metrics, the daemon's status page): the rows after a
 * step, in bounded chunks, and the names a job has. Writes stay in jobs.c
 * (kstore_metric_put).
 *
 * The statements here are prepared per call (sqlite3_prepare_v2, then
 * finalized) instead of living in the handle's cached slots: they run a few
 * times a second at most, a prepare costs microseconds, and the slots of
 * internal.h stay for the hot paths.
 *
 * Cost: the key of metrics is (job_id, step, name), so "the rows of job J
 * after step S" is one range of the key: its cost is the rows returned, not
 * the table. The names of a job cost one pass over the job's rows. */
#include <sqlite3.h>
#include <stdio.h>
#include <sysexits.h>

#include "store/internal.h"

int kstore_metrics_since(kstore *s, int64_t job, int64_t after_step, int64_t max_rows,
                         int (*cb)(int64_t step, const char *name, double value, void *), void *ctx,
                         int64_t *last_step, int *more)
{
    if (last_step) *last_step = after_step;
    if (more) *more = 0;
    sqlite3_stmt *q;
    int r = sqlite3_prepare_v2(s->db,
                               "SELECT step, name, value FROM metrics WHERE job_id = ?1 AND step > ?2 "
                               "ORDER BY step, name",
                               -1, &q, NULL);
    if (r != SQLITE_OK) return kstore_dbfail(s, r, "read metrics");
    sqlite3_bind_int64(q, 1, job);
    sqlite3_bind_int64(q, 2, after_step);
    int64_t rows = 0, prev = after_step;
    while ((r = sqlite3_step(q)) == SQLITE_ROW) {
        int64_t step = sqlite3_column_int64(q, 0);
        /* a chunk ends at a step boundary: a step is given whole or not at all */
        if (max_rows > 0 && rows >= max_rows && step != prev) {
            if (more) *more = 1;
            break;
        }
        prev = step;
        rows++;
        if (last_step) *last_step = step;
        if (cb(step, (const char *)sqlite3_column_text(q, 1), sqlite3_column_double(q, 2), ctx)) break;
    }
    int rc = (r == SQLITE_ROW || r == SQLITE_DONE) ? 0 : kstore_dbfail(s, r, "read metrics");
    sqlite3_finalize(q);
    return rc;
}

int kstore_metric_names(kstore *s, int64_t job, int (*cb)(const char *name, int64_t rows, void *), void *ctx)
{
    sqlite3_stmt *q;
    int r = sqlite3_prepare_v2(s->db, "SELECT name, count(*) FROM metrics WHERE job_id = ?1 GROUP BY name ORDER BY name",
                               -1, &q, NULL);
    if (r != SQLITE_OK) return kstore_dbfail(s, r, "read metric names");
    sqlite3_bind_int64(q, 1, job);
    while ((r = sqlite3_step(q)) == SQLITE_ROW)
        if (cb((const char *)sqlite3_column_text(q, 0), sqlite3_column_int64(q, 1), ctx)) break;
    int rc = (r == SQLITE_ROW || r == SQLITE_DONE) ? 0 : kstore_dbfail(s, r, "read metric names");
    sqlite3_finalize(q);
    return rc;
}

int kstore_metrics_latest_job(kstore *s, int64_t *job)
{
    /* the newest job that recorded a metric: jobs in id order from the end,
     * each probed through the key (a job without metrics costs one seek) */
    *job = 0;
    sqlite3_stmt *q;
    int r = sqlite3_prepare_v2(s->db,
                               "SELECT j.id FROM jobs j WHERE EXISTS (SELECT 1 FROM metrics m WHERE m.job_id = j.id) "
                               "ORDER BY j.id DESC LIMIT 1",
                               -1, &q, NULL);
    if (r != SQLITE_OK) return kstore_dbfail(s, r, "find the latest run");
    r = sqlite3_step(q);
    if (r == SQLITE_ROW) {
        *job = sqlite3_column_int64(q, 0);
        r = SQLITE_DONE;
    }
    int rc = r == SQLITE_DONE ? 0 : kstore_dbfail(s, r, "find the latest run");
    sqlite3_finalize(q);
    return rc;
}
