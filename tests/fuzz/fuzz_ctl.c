/* fuzz_ctl.c: libFuzzer target of the daemon's control socket: a client's
 * request line, read as the daemon reads it (cli/daemon.c serve_conn: the
 * bytes up to the first '\n', one JSON object), handled by cli/ctl.c
 * (kctl_handle: ping, status, list, show, submit with its train / vocab /
 * kg-embed config checks, pause, resume, cancel, reload) against a real
 * store, and answered as one JSON line.
 *
 * Setup (once): a store under a fresh /tmp/kiln-fuzz-ctl-XXXXXX/ folder
 * (removed at exit) holding jobs in every state (queued, paused, running,
 * failed, done; a kiln train process's own row; a recorded checkpoint).
 * The daemon's hooks are stand-ins: job 3 is "running", the rest do
 * nothing. After a request that may change the jobs (submit, pause, resume,
 * cancel) the jobs table is put back as it was, through a second SQLite
 * connection of this harness, so every input starts from the same store. */
#include "tests/fuzz/fuzz_common.h"

#include <jansson.h>
#include <math.h>
#include <sqlite3.h>
#include <sysexits.h>

#include "cli/ctl.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"

static char g_root[64];
static kstore *g_store;
static sqlite3 *g_db; /* the harness's own connection, to restore the jobs */

static void cleanup(void)
{
    if (g_store) kstore_close(g_store);
    if (g_db) sqlite3_close(g_db);
    if (g_root[0]) kckpt_remove_tree(g_root);
}

static void must(int rc, const char *what)
{
    if (rc) {
        dprintf(2, "fuzz_ctl setup: %s: %s\n", what, g_store ? kstore_errmsg(g_store) : "");
        abort();
    }
}

static void sql(const char *q)
{
    char *e = NULL;
    if (sqlite3_exec(g_db, q, NULL, NULL, &e) != SQLITE_OK) {
        dprintf(2, "fuzz_ctl: %s: %s\n", q, e ? e : "?");
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    snprintf(g_root, sizeof g_root, "/tmp/kiln-fuzz-ctl-XXXXXX");
    if (!mkdtemp(g_root)) { perror("mkdtemp"); abort(); }
    atexit(cleanup);
    char db[128], err[1024];
    snprintf(db, sizeof db, "%s/kiln.db", g_root);
    must(kstore_open(db, KSTORE_CREATE, &g_store, err, sizeof err), err);
    ktrain_config c;
    ktrain_config_defaults(&c);
    snprintf(c.checkpoint.dir, sizeof c.checkpoint.dir, "%s/ck", g_root);
    c.budget.steps = 10;
    char *train = ktrain_config_to_json(&c);
    const char *vocab = "{\"size\":1000,\"name\":\"v1k\",\"cased\":false,\"min_frequency\":2,"
                        "\"limit_alphabet\":0,\"max_words\":4000000}";
    int64_t id;
    must(kstore_job_queue(g_store, "ck", "train", train, 5, &id), "queue 1");                 /* 1 queued */
    must(kstore_job_queue(g_store, "v1k", "vocab", vocab, 0, &id), "queue 2");                /* 2 paused */
    must(kstore_job_update(g_store, id, NULL, "paused", NULL, NULL), "pause 2");
    must(kstore_job_queue(g_store, "run", "train", train, 1, &id), "queue 3");                /* 3 running */
    must(kstore_job_update(g_store, id, NULL, "running", NULL, NULL), "run 3");
    must(kstore_job_queue(g_store, "transe", "kg-embed", "{\"dim\":50}", 0, &id), "queue 4"); /* 4 failed */
    must(kstore_job_update(g_store, id, NULL, "failed", "diverged", NULL), "fail 4");
    must(kstore_job_queue(g_store, "old", "train", train, 0, &id), "queue 5");                /* 5 done */
    must(kstore_job_update(g_store, id, NULL, "done", NULL, NULL), "finish 5");
    must(kstore_job_add(g_store, "manual", "train", train, 0, "running", &id), "add 6");     /* 6 kiln train's */
    must(kstore_checkpoint_add(g_store, 1, 100, "/tmp/kiln-fuzz-none/step-000000100", NAN), "checkpoint");
    free(train);
    if (sqlite3_open_v2(db, &g_db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) abort();
    sqlite3_busy_timeout(g_db, 10000);
    sql("CREATE TEMP TABLE pristine AS SELECT * FROM main.jobs");
    return 0;
}

/* the daemon's hooks, as stand-ins */
static int h_running(void *ctx, int64_t id) { (void)ctx; return id == 3; }
static void h_stop(void *ctx, int64_t id, const char *what) { (void)ctx, (void)id, (void)what; }
static void h_changed(void *ctx) { (void)ctx; }
static void h_status(void *ctx, json_t *resp)
{
    (void)ctx;
    json_object_set_new(resp, "daemon", json_pack("{s:i}", "pid", 1));
    json_object_set_new(resp, "spool", json_null());
    json_object_set_new(resp, "running", json_integer(3));
}
static int h_reload(void *ctx, char *err, size_t errlen)
{
    (void)ctx;
    snprintf(err, errlen, "config file: not reloaded (fuzzing)");
    return EX_CONFIG;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the daemon answers the first complete line; a request without one is dropped */
    const uint8_t *nl = memchr(data, '\n', size);
    if (!nl || (size_t)(nl - data) + 1 > KCTL_LINE_MAX) return 0;
    size_t n = (size_t)(nl - data);
    char *line = fuzz_dup(data, n);
    json_error_t je;
    json_t *req = json_loadb(line, n, 0, &je);
    json_t *resp;
    int mutating = 0;
    if (!json_is_object(req)) {
        resp = kctl_fail(EX_USAGE, "a request is one JSON object on one line: %s", je.text);
    } else {
        const char *cmd = json_string_value(json_object_get(req, "cmd"));
        mutating = cmd && (!strcmp(cmd, "submit") || !strcmp(cmd, "pause") || !strcmp(cmd, "resume") ||
                           !strcmp(cmd, "cancel"));
        /* both paths: the daemon's (hooks) and a client's with no daemon (NULL) */
        kctl_hooks h = {NULL, h_running, h_stop, h_changed, h_status, h_reload};
        resp = kctl_handle(g_store, req, (size & 1) ? NULL : &h);
    }
    FUZZ_CHECK(json_is_object(resp) && json_is_boolean(json_object_get(resp, "ok")));
    if (!json_is_true(json_object_get(resp, "ok"))) {
        FUZZ_CHECK(json_is_string(json_object_get(resp, "error")));
        FUZZ_CHECK(json_is_integer(json_object_get(resp, "code")));
    }
    char *out = json_dumps(resp, JSON_COMPACT);
    FUZZ_CHECK(out && !strchr(out, '\n'));
    free(out);
    json_decref(resp);
    json_decref(req);
    free(line);
    if (mutating) sql("BEGIN IMMEDIATE; DELETE FROM main.jobs; INSERT INTO main.jobs SELECT * FROM temp.pristine; COMMIT");
    return 0;
}
