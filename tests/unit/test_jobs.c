/* test_jobs.c: unit tests of store/jobs.c: job rows as kiln train makes them
 * (add, get, state, step, metrics, checkpoints: unchanged behaviour), the
 * daemon's queue of 003_daemon.sql (queue order by priority then age,
 * conditional claims, pause/cancel requests, recovery after a crash that
 * leaves kiln train rows alone), the best checkpoint by validation loss, the
 * source lookup by content hash, and the migration of a version-2 store
 * (its jobs kept, the new columns NULL).
 *
 * Every test works in a fresh mkdtemp directory under /tmp, removed after. */
#define _XOPEN_SOURCE 700
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "schemas/schemas.h"
#include "store/store.h"
#include "util/util.h"

typedef struct fx {
    char dir[64];
    char path[128];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f) return -1;
    strcpy(f->dir, "/tmp/kiln-test-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/store.db", f->dir);
    *state = f;
    return 0;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int teardown(void **state)
{
    fx *f = *state;
    int rc = nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

static kstore *open_ok(const char *path)
{
    kstore *s = NULL;
    char err[512] = "";
    int rc = kstore_open(path, KSTORE_CREATE, &s, err, sizeof err);
    if (rc) fprintf(stderr, "open: %s\n", err);
    assert_int_equal(rc, 0);
    return s;
}

static void get_ok(kstore *s, int64_t id, kjob *j, kbuf *b) { assert_int_equal(kstore_job_get(s, id, j, b), 0); }

/* ---- kiln train's rows: behaviour kept -------------------------------------------------- */

static int count_cb(const kjob *j, void *ctx)
{
    (void)j;
    (*(int *)ctx)++;
    return 0;
}

static int metric_cb(int64_t step, const char *name, double v, void *ctx)
{
    double *sum = ctx;
    (void)name;
    *sum += v * (double)step;
    return 0;
}

static void test_train_rows(void **state)
{
    fx *f = *state;
    kstore *s = open_ok(f->path);
    int64_t id = 0;
    assert_int_equal(kstore_job_add(s, "run-a", "train", "{\"x\":1}", 0, "running", &id), 0);
    assert_true(id > 0);
    kjob j;
    kbuf b = {0};
    get_ok(s, id, &j, &b);
    assert_string_equal(j.name, "run-a");
    assert_string_equal(j.kind, "train");
    assert_string_equal(j.config, "{\"x\":1}");
    assert_string_equal(j.state, "running");
    assert_null(j.error);
    assert_null(j.origin);   /* not a queued job */
    assert_null(j.request);
    assert_int_equal(kstore_job_set_step(s, id, 42), 0);
    assert_int_equal(kstore_job_set_state(s, id, "failed", "boom"), 0);
    get_ok(s, id, &j, &b);
    assert_int_equal(j.step, 42);
    assert_string_equal(j.state, "failed");
    assert_string_equal(j.error, "boom");
    assert_int_equal(kstore_job_set_state(s, 999, "done", NULL), EX_NOINPUT);
    assert_int_equal(kstore_job_get(s, 999, &j, &b), EX_NOINPUT);
    /* metrics: NaN not recorded, replaced by (job, step, name) */
    assert_int_equal(kstore_metric_put(s, id, 1, "loss", 2.0), 0);
    assert_int_equal(kstore_metric_put(s, id, 1, "loss", 3.0), 0);
    assert_int_equal(kstore_metric_put(s, id, 2, "loss", NAN), 0);
    assert_int_equal(kstore_metric_put(s, id, 2, "acc", 0.5), 0);
    double sum = 0;
    assert_int_equal(kstore_metrics_foreach(s, id, NULL, metric_cb, &sum), 0);
    assert_true(fabs(sum - (3.0 + 1.0)) < 1e-12);
    sum = 0;
    assert_int_equal(kstore_metrics_foreach(s, id, "loss", metric_cb, &sum), 0);
    assert_true(fabs(sum - 3.0) < 1e-12);
    int n = 0;
    assert_int_equal(kstore_jobs_foreach(s, count_cb, &n), 0);
    assert_int_equal(n, 1);
    kbuf_free(&b);
    kstore_close(s);
}

/* ---- checkpoints: latest and best ------------------------------------------------------------ */

static void test_checkpoints(void **state)
{
    fx *f = *state;
    kstore *s = open_ok(f->path);
    int64_t id;
    assert_int_equal(kstore_job_add(s, "r", "train", "{}", 0, "running", &id), 0);
    kbuf p = {0};
    int64_t step = -1;
    double vl;
    assert_int_equal(kstore_checkpoint_latest(s, id, &p, &step), 0);
    assert_int_equal(p.len, 0);
    assert_int_equal(kstore_checkpoint_best(s, id, &p, &step, &vl), 0);
    assert_int_equal(p.len, 0);
    assert_true(isnan(vl));
    assert_int_equal(kstore_checkpoint_add(s, id, 10, "ck/step-10", 3.0), 0);
    assert_int_equal(kstore_checkpoint_add(s, id, 20, "ck/step-20", NAN), 0); /* not validated */
    assert_int_equal(kstore_checkpoint_add(s, id, 30, "ck/step-30", 2.5), 0);
    assert_int_equal(kstore_checkpoint_add(s, id, 40, "ck/step-40", 2.5), 0); /* a tie: the earlier wins */
    assert_int_equal(kstore_checkpoint_add(s, id, 50, "ck/step-50", 2.7), 0);
    assert_int_equal(kstore_checkpoint_latest(s, id, &p, &step), 0);
    assert_string_equal(p.data, "ck/step-50");
    assert_int_equal(step, 50);
    assert_int_equal(kstore_checkpoint_best(s, id, &p, &step, &vl), 0);
    assert_string_equal(p.data, "ck/step-30");
    assert_int_equal(step, 30);
    assert_true(vl == 2.5);
    kbuf_free(&p);
    kstore_close(s);
}

/* ---- the queue ----------------------------------------------------------------------------------- */

typedef struct order { int64_t ids[16]; int n; } order;

static int order_cb(const kjob *j, void *ctx)
{
    order *o = ctx;
    assert_string_equal(j->origin, "run");
    assert_string_equal(j->state, "queued");
    o->ids[o->n++] = j->id;
    return 0;
}

static void test_queue_order_and_claim(void **state)
{
    fx *f = *state;
    kstore *s = open_ok(f->path);
    int64_t a, b, c, d, t;
    assert_int_equal(kstore_job_queue(s, "a", "train", "{}", 0, &a), 0);
    assert_int_equal(kstore_job_queue(s, "b", "train", "{}", 5, &b), 0);
    assert_int_equal(kstore_job_queue(s, "c", "vocab", "{}", 5, &c), 0);
    assert_int_equal(kstore_job_queue(s, "d", "kg-embed", "{}", -1, &d), 0);
    /* a kiln train row in state queued is not the daemon's */
    assert_int_equal(kstore_job_add(s, "t", "train", "{}", 100, "queued", &t), 0);
    kjob j;
    kbuf sb = {0};
    get_ok(s, b, &j, &sb);
    assert_string_equal(j.state, "queued");
    assert_string_equal(j.origin, "run");
    assert_int_equal(j.priority, 5);
    order o = {{0}, 0};
    assert_int_equal(kstore_jobs_queued_foreach(s, order_cb, &o), 0);
    assert_int_equal(o.n, 4);
    int64_t want[4] = {b, c, a, d}; /* priority first, then the oldest */
    for (int i = 0; i < 4; i++) assert_int_equal(o.ids[i], want[i]);
    /* a claim is conditional: the second one changes nothing */
    int changed = -1;
    assert_int_equal(kstore_job_update(s, b, "queued", "running", NULL, &changed), 0);
    assert_int_equal(changed, 1);
    assert_int_equal(kstore_job_update(s, b, "queued", "running", NULL, &changed), 0);
    assert_int_equal(changed, 0);
    assert_int_equal(kstore_job_update(s, 999, NULL, "running", NULL, &changed), 0);
    assert_int_equal(changed, 0);
    o.n = 0;
    assert_int_equal(kstore_jobs_queued_foreach(s, order_cb, &o), 0);
    assert_int_equal(o.n, 3);
    assert_int_equal(o.ids[0], c);
    /* from NULL: any state; the error is set and cleared */
    assert_int_equal(kstore_job_update(s, a, NULL, "failed", "disk on fire", &changed), 0);
    assert_int_equal(changed, 1);
    get_ok(s, a, &j, &sb);
    assert_string_equal(j.state, "failed");
    assert_string_equal(j.error, "disk on fire");
    assert_int_equal(kstore_job_update(s, a, "failed", "queued", NULL, &changed), 0);
    get_ok(s, a, &j, &sb);
    assert_string_equal(j.state, "queued");
    assert_null(j.error);
    kbuf_free(&sb);
    kstore_close(s);
}

/* ---- requests and recovery ---------------------------------------------------------------------- */

static void test_requests_and_recovery(void **state)
{
    fx *f = *state;
    kstore *s = open_ok(f->path);
    int64_t p, c, q, plain, train;
    assert_int_equal(kstore_job_queue(s, "p", "train", "{}", 0, &p), 0);
    assert_int_equal(kstore_job_queue(s, "c", "train", "{}", 0, &c), 0);
    assert_int_equal(kstore_job_queue(s, "q", "train", "{}", 0, &q), 0);
    assert_int_equal(kstore_job_queue(s, "plain", "train", "{}", 0, &plain), 0);
    assert_int_equal(kstore_job_add(s, "kiln-train", "train", "{}", 0, "running", &train), 0);
    /* a request needs a running job */
    assert_int_equal(kstore_job_set_request(s, p, "pause"), EX_NOINPUT);
    int64_t ids[4] = {p, c, q, plain};
    for (int i = 0; i < 4; i++) assert_int_equal(kstore_job_update(s, ids[i], "queued", "running", NULL, NULL), 0);
    assert_int_equal(kstore_job_set_request(s, p, "pause"), 0);
    assert_int_equal(kstore_job_set_request(s, c, "cancel"), 0);
    assert_int_equal(kstore_job_set_request(s, q, "pause"), 0);
    assert_int_equal(kstore_job_set_request(s, q, NULL), 0); /* withdrawn */
    kjob j;
    kbuf sb = {0};
    get_ok(s, p, &j, &sb);
    assert_string_equal(j.request, "pause");
    assert_string_equal(j.state, "running");
    get_ok(s, q, &j, &sb);
    assert_null(j.request);
    /* the daemon died: recovery */
    int64_t n = 0;
    assert_int_equal(kstore_jobs_recover(s, &n), 0);
    assert_int_equal(n, 4);
    const char *want[4] = {"paused", "cancelled", "queued", "queued"};
    for (int i = 0; i < 4; i++) {
        get_ok(s, ids[i], &j, &sb);
        assert_string_equal(j.state, want[i]);
        assert_null(j.request);
    }
    get_ok(s, train, &j, &sb); /* kiln train's own row: untouched */
    assert_string_equal(j.state, "running");
    assert_int_equal(kstore_jobs_recover(s, &n), 0);
    assert_int_equal(n, 0);
    /* a state change clears a pending request */
    assert_int_equal(kstore_job_update(s, q, "queued", "running", NULL, NULL), 0);
    assert_int_equal(kstore_job_set_request(s, q, "cancel"), 0);
    assert_int_equal(kstore_job_update(s, q, NULL, "done", NULL, NULL), 0);
    get_ok(s, q, &j, &sb);
    assert_string_equal(j.state, "done");
    assert_null(j.request);
    kbuf_free(&sb);
    kstore_close(s);
}

/* ---- sources by content hash ----------------------------------------------------------------------- */

static void test_source_by_hash(void **state)
{
    fx *f = *state;
    kstore *s = open_ok(f->path);
    uint8_t h[KHASH_LEN], other[KHASH_LEN];
    khash128("abc", 3, h);
    khash128("xyz", 3, other);
    int64_t id;
    int already;
    assert_int_equal(kstore_source_begin(s, "/spool/a.txt", h, 3, &id, &already), 0);
    ksource src;
    kbuf sb = {0};
    int found = -1;
    assert_int_equal(kstore_source_by_hash(s, h, &src, &sb, &found), 0);
    assert_int_equal(found, 1);
    assert_int_equal(src.id, id);
    assert_string_equal(src.status, "running");
    assert_string_equal(src.path, "/spool/a.txt");
    assert_null(src.error);
    assert_int_equal(kstore_begin(s), 0);
    ksource_delta dl = {.documents = 2, .duplicates = 1, .skipped = 3};
    assert_int_equal(kstore_source_add(s, id, &dl), 0);
    assert_int_equal(kstore_commit(s), 0);
    assert_int_equal(kstore_source_finish(s, id, "partial", "text", "truncated"), 0);
    assert_int_equal(kstore_source_by_hash(s, h, &src, &sb, &found), 0);
    assert_string_equal(src.status, "partial");
    assert_string_equal(src.error, "truncated");
    assert_string_equal(src.format, "text");
    assert_int_equal(src.documents, 2);
    assert_int_equal(src.duplicates, 1);
    assert_int_equal(src.skipped, 3);
    assert_memory_equal(src.hash, h, KHASH_LEN);
    assert_int_equal(kstore_source_by_hash(s, other, &src, &sb, &found), 0);
    assert_int_equal(found, 0);
    kbuf_free(&sb);
    kstore_close(s);
}

/* ---- migration of a version-2 store ------------------------------------------------------------------ */

static void test_migrate_from_v2(void **state)
{
    fx *f = *state;
    assert_true(kschema_count >= 3);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    for (int i = 0; i < 2; i++) assert_int_equal(sqlite3_exec(db, kschema_sql[i], NULL, NULL, NULL), SQLITE_OK);
    char sql[256];
    snprintf(sql, sizeof sql, "PRAGMA application_id = %d; PRAGMA user_version = 2", KSTORE_APPLICATION_ID);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO jobs(name, kind, config, state, step, created_at, updated_at) "
                                  "VALUES ('old', 'train', '{}', 'running', 7, 1, 1)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    /* read-only cannot migrate */
    kstore *s = NULL;
    char err[512];
    assert_int_equal(kstore_open(f->path, KSTORE_READONLY, &s, err, sizeof err), EX_DATAERR);
    s = open_ok(f->path);
    assert_int_equal(kstore_schema_version(s), kstore_latest_schema_version());
    kjob j;
    kbuf sb = {0};
    get_ok(s, 1, &j, &sb);
    assert_string_equal(j.name, "old");
    assert_string_equal(j.state, "running");
    assert_int_equal(j.step, 7);
    assert_null(j.origin);
    assert_null(j.request);
    int64_t n = -1;
    assert_int_equal(kstore_jobs_recover(s, &n), 0); /* a kiln train row: not the daemon's */
    assert_int_equal(n, 0);
    int64_t id;
    assert_int_equal(kstore_job_queue(s, "new", "train", "{}", 1, &id), 0);
    get_ok(s, id, &j, &sb);
    assert_string_equal(j.origin, "run");
    kbuf_free(&sb);
    kstore_close(s);
}

int main(void)
{
    klog_threshold = KLOG_ERROR;
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_train_rows),           T(test_checkpoints),   T(test_queue_order_and_claim),
        T(test_requests_and_recovery), T(test_source_by_hash), T(test_migrate_from_v2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
