/* daemon_job.c: the daemon's job thread: runs the job the main thread
 * claimed (a pretraining run, a vocabulary, KG embeddings), then records its
 * final state (docs/daemon.md, "Jobs").
 *
 * Invariants:
 *  1. A training job always runs with resume = 1 and its own job row: a
 *     restarted daemon continues it from its latest checkpoint, and
 *     ktrain_run_exec makes the continuation bit-identical (same threads).
 *  2. The stop flag is the only way in: pause, cancel, shutdown and the
 *     time-based checkpoint all set it; the run finishes its step, writes a
 *     checkpoint and returns. For the time-based checkpoint the thread then
 *     starts the next leg at once (a resume from that checkpoint).
 *  3. The final state is written by this thread, after the run returned:
 *     done, paused, cancelled, queued (stopped by a shutdown, or hit by a
 *     transient store error: retried later) or failed. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/daemon.h"
#include "ingest/ingest.h"
#include "kg/kg.h"
#include "trainer/checkpoint.h"

int daemon_transient(int rc) { return rc == EX_TEMPFAIL || rc == EX_IOERR; }

/* ---- keep the best checkpoint by validation loss -------------------------------- */

/* Copies the files of folder src into dst (hard links when possible). */
static int link_files(const char *src, const char *dst)
{
    DIR *dir = opendir(src);
    if (!dir) return errno;
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(dir))) {
        if (e->d_name[0] == '.') continue;
        char a[4400], b[4400];
        snprintf(a, sizeof a, "%s/%s", src, e->d_name);
        snprintf(b, sizeof b, "%s/%s", dst, e->d_name);
        if (link(a, b) == 0) continue;
        /* another file system, or no hard links: copy */
        FILE *in = fopen(a, "rb"), *out = in ? fopen(b, "wb") : NULL;
        if (!in || !out) rc = errno ? errno : EIO;
        char buf[65536];
        size_t n;
        while (!rc && (n = fread(buf, 1, sizeof buf, in)) > 0)
            if (fwrite(buf, 1, n, out) != n) rc = errno ? errno : EIO;
        if (in) fclose(in);
        if (out && fclose(out) && !rc) rc = errno ? errno : EIO;
    }
    closedir(dir);
    return rc;
}

/* After checkpoint path of step was written: if it has the job's lowest
 * validation loss so far, it becomes CKDIR.best/step-N (the previous best
 * removed). checkpoint.keep may prune it from CKDIR; the copy stays. */
static void keep_best(djob *j, const char *path, int64_t step)
{
    if (!j->store) {
        char err[1024];
        if (kstore_open(j->d->db, 0, &j->store, err, sizeof err)) {
            kwarn("job %lld: keep-best: %s", (long long)j->id, err);
            return;
        }
    }
    kbuf best = {0};
    int64_t bstep;
    double vl;
    if (kstore_checkpoint_best(j->store, j->id, &best, &bstep, &vl) || bstep != step || strcmp(best.data ? best.data : "", path)) {
        kbuf_free(&best);
        return;
    }
    kbuf_free(&best);
    char dir[1100], tmp[1200], final[1200], err[512];
    snprintf(dir, sizeof dir, "%s", j->ckdir);
    size_t l = strlen(dir);
    while (l > 1 && dir[l - 1] == '/') dir[--l] = '\0';
    strncat(dir, ".best", sizeof dir - strlen(dir) - 1);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(tmp, sizeof tmp, "%s/.tmp-%s", dir, base);
    snprintf(final, sizeof final, "%s/%s", dir, base);
    if (kckpt_mkdirs(dir, err, sizeof err)) {
        kwarn("job %lld: keep-best: %s", (long long)j->id, err);
        return;
    }
    kckpt_remove_tree(tmp);
    int e = mkdir(tmp, 0755) ? errno : link_files(path, tmp);
    if (!e) {
        kckpt_remove_tree(final);
        if (rename(tmp, final)) e = errno;
    }
    if (e) {
        kwarn("job %lld: keep-best: cannot copy %s to %s: %s", (long long)j->id, path, final, strerror(e));
        kckpt_remove_tree(tmp);
        return;
    }
    /* the older best goes */
    DIR *dd = opendir(dir);
    struct dirent *de;
    while (dd && (de = readdir(dd))) {
        if (strncmp(de->d_name, "step-", 5) || !strcmp(de->d_name, base)) continue;
        char old[1400];
        snprintf(old, sizeof old, "%s/%s", dir, de->d_name);
        kckpt_remove_tree(old);
    }
    if (dd) closedir(dd);
    kinfo("job %lld: step %lld has the lowest validation loss so far (%.4f): kept as %s", (long long)j->id,
          (long long)step, vl, final);
}

/* ---- training ------------------------------------------------------------------------ */

static void on_train_progress(const ktrain_progress *p, void *ctx)
{
    djob *j = ctx;
    kdaemon *d = j->d;
    int fresh = 0;
    pthread_mutex_lock(&d->mu);
    j->p = *p;
    j->have_progress = 1;
    if (j->run && j->run->checkpoint[0] && strcmp(j->run->checkpoint, j->checkpoint)) {
        snprintf(j->checkpoint, sizeof j->checkpoint, "%s", j->run->checkpoint);
        j->last_ckpt = know_seconds();
        fresh = 1;
    }
    int kb = d->cfg.keep_best;
    pthread_mutex_unlock(&d->mu);
    if (fresh && kb) keep_best(j, j->checkpoint, p->step);
}

/* Runs legs until the run ends (budget, pause, cancel, shutdown, error).
 * *stopped tells whether the stop flag ended it. */
static int run_train(djob *j, int *stopped, char *err, size_t errlen)
{
    kdaemon *d = j->d;
    cli_common c;
    cli_common_init(&c, d->db);
    for (int leg = 0;; leg++) {
        ktrain_run r;
        memset(&r, 0, sizeof r);
        int rc = ktrain_config_parse(&r.cfg, j->config, strlen(j->config), NULL, 0, err, errlen);
        if (rc) return rc;
        dconfig cfg = daemon_config(d);
        int threads = r.cfg.threads > 0 ? r.cfg.threads : cfg.train_threads;
        r.cfg.threads = threads;
        r.common = &c;
        r.resume = 1;
        r.name = j->name;
        r.job_id = j->id;
        r.stop = &j->stop;
        r.progress = on_train_progress;
        r.progress_ctx = j;
        r.leave_state = 1;
        pthread_mutex_lock(&d->mu);
        j->run = &r;
        j->threads = threads;
        j->last_ckpt = know_seconds();
        snprintf(j->ckdir, sizeof j->ckdir, "%s", r.cfg.checkpoint.dir);
        pthread_mutex_unlock(&d->mu);
        if (!leg) kinfo("job %lld (%s): training with %d thread(s), checkpoints in %s", (long long)j->id, j->name,
                        threads, r.cfg.checkpoint.dir);
        rc = ktrain_run_exec(&r);
        pthread_mutex_lock(&d->mu);
        j->run = NULL;
        if (r.checkpoint[0]) snprintf(j->checkpoint, sizeof j->checkpoint, "%s", r.checkpoint);
        int why = j->why;
        int again = !rc && r.stopped && why == WHY_TIMER;
        if (again) {
            j->why = 0;
            j->stop = 0;
        }
        pthread_mutex_unlock(&d->mu);
        if (again) {
            kinfo("job %lld: checkpoint %s (every %g minutes); going on", (long long)j->id, r.checkpoint,
                  cfg.checkpoint_minutes);
            continue;
        }
        *stopped = !rc && r.stopped;
        if (rc && r.error[0] && errlen) {   /* the run's own message, cut to fit */
            size_t n = strnlen(r.error, errlen - 1);
            memcpy(err, r.error, n);
            err[n] = '\0';
        } else if (rc) snprintf(err, errlen, "training failed (exit %d); the daemon's log says why", rc);
        return rc;
    }
}

/* ---- vocabulary, KG embeddings ---------------------------------------------------------- */

static int run_vocab(djob *j, int *stopped, char *err, size_t errlen)
{
    kdaemon *d = j->d;
    json_t *cfg = json_loads(j->config, 0, NULL);
    kvocab_train_opts o;
    char name[128];
    int rc = kctl_vocab_opts(cfg, &o, name, sizeof name, err, errlen);
    json_decref(cfg);
    if (rc) return rc;
    /* a previous run of this job stored it before the daemon died */
    kstore *s;
    char e2[1024];
    if (kstore_open(d->db, 0, &s, e2, sizeof e2) == 0) {
        kvocab_row v;
        kbuf pc = {0}, mc = {0}, str = {0};
        kjob jr;
        int have = kstore_vocab_get(s, name, &v, &pc, &mc) == 0 && kstore_job_get(s, j->id, &jr, &str) == 0 &&
                   v.created_at >= jr.created_at;
        kbuf_free(&pc);
        kbuf_free(&mc);
        kbuf_free(&str);
        kstore_close(s);
        if (have) {
            kinfo("job %lld: vocabulary %s is already stored (by this job)", (long long)j->id, name);
            return 0;
        }
    }
    o.threads = daemon_config(d).train_threads;
    o.stop = &j->stop;
    kvocab_train_summary sum;
    kinfo("job %lld: training vocabulary %s (%zu pieces)", (long long)j->id, name, o.size);
    rc = kvocab_train_run(d->db, &o, &sum);
    *stopped = sum.interrupted;
    if (rc && !sum.interrupted) snprintf(err, errlen, "vocabulary training failed (exit %d); the daemon's log says why", rc);
    if (!rc && !sum.interrupted) {
        kinfo("job %lld: vocabulary %s: %zu pieces from %llu documents", (long long)j->id, sum.name, sum.size,
              (unsigned long long)sum.documents);
        daemon_catch_up(d); /* the active vocabulary, if it is the new one: tokenize the corpus */
    }
    return sum.interrupted ? 0 : rc;
}

static void on_embed_progress(int epoch, double loss, double mrr, double secs, void *ctx)
{
    djob *j = ctx;
    (void)secs;
    pthread_mutex_lock(&j->d->mu);
    j->p.step = epoch;
    j->p.loss = loss;
    j->p.val_loss = mrr >= 0 ? mrr : NAN;
    j->have_progress = 1;
    pthread_mutex_unlock(&j->d->mu);
}

static int run_embed(djob *j, int *stopped, char *err, size_t errlen)
{
    kdaemon *d = j->d;
    json_t *cfg = json_loads(j->config, 0, NULL);
    ktranse_opts o;
    int rc = kctl_embed_opts(cfg, &o, err, errlen);
    json_decref(cfg);
    if (rc) return rc;
    o.threads = daemon_config(d).train_threads;
    o.stop = (volatile int *)&j->stop;
    o.progress = on_embed_progress;
    o.progress_ctx = j;
    kstore *s;
    if ((rc = kstore_open(d->db, 0, &s, err, errlen))) return rc;
    kinfo("job %lld: TransE embeddings (dim %d, up to %d epochs)", (long long)j->id, o.dim, o.epochs);
    kkg_embed_summary sum;
    rc = kkg_embed(s, &o, &sum);
    kstore_close(s);
    *stopped = j->stop != 0;
    if (rc) snprintf(err, errlen, "kg embedding failed (exit %d); the daemon's log says why", rc);
    else kinfo("job %lld: embedding %lld, validation MRR %.4f", (long long)j->id, (long long)sum.embedding_id,
               sum.valid_eval.mrr);
    return rc;
}

/* ---- the thread ----------------------------------------------------------------------- */

static void run_job(kdaemon *d);

void *daemon_job_main(void *arg)
{
    kdaemon *d = arg;
    for (;;) {
        pthread_mutex_lock(&d->mu);
        while (!d->job_go) pthread_cond_wait(&d->job_cv, &d->mu);
        d->job_go = 0;
        pthread_mutex_unlock(&d->mu);
        run_job(d);
    }
    return NULL;
}

static void run_job(kdaemon *d)
{
    djob *j = &d->job;
    char err[2048] = "";
    int stopped = 0, rc;
    if (!strcmp(j->kind, "train")) rc = run_train(j, &stopped, err, sizeof err);
    else if (!strcmp(j->kind, "vocab")) rc = run_vocab(j, &stopped, err, sizeof err);
    else if (!strcmp(j->kind, "kg-embed")) rc = run_embed(j, &stopped, err, sizeof err);
    else {
        rc = EX_CONFIG;
        snprintf(err, sizeof err, "unknown job kind '%s'", j->kind);
    }
    pthread_mutex_lock(&d->mu);
    int why = j->why;
    pthread_mutex_unlock(&d->mu);
    const char *state;
    const char *error = NULL;
    int retry = 0;
    if (!rc && !stopped) state = "done";
    else if (why & WHY_CANCEL) state = "cancelled";
    else if (!rc) state = (why & WHY_PAUSE) ? "paused" : "queued"; /* shutdown, or a withdrawn request */
    else if (daemon_transient(rc) && !(why & WHY_PAUSE)) {
        state = "queued";
        error = err;
        retry = 1;
    } else {
        state = (why & WHY_PAUSE) ? "paused" : "failed";
        error = err;
    }
    /* the final state: retried while the store is locked (a few minutes at most) */
    kstore *s = j->store;
    j->store = NULL;
    for (int tries = 0; tries < 30; tries++) {
        char e2[1024];
        if (!s && kstore_open(d->db, 0, &s, e2, sizeof e2)) {
            kwarn("job %lld: cannot record its state (%s): %s; retrying", (long long)j->id, state, e2);
            s = NULL;
        } else if (s && kstore_job_update(s, j->id, NULL, state, error, NULL)) {
            kwarn("job %lld: cannot record its state (%s): %s; retrying", (long long)j->id, state, kstore_errmsg(s));
        } else {
            break;
        }
        sleep(tries < 5 ? 1 : 10);
    }
    kstore_close(s);
    if (!strcmp(state, "failed")) kerr("job %lld (%s) failed: %s", (long long)j->id, j->name, err);
    else kinfo("job %lld (%s): %s%s%s", (long long)j->id, j->name, state, error ? ": " : "", error ? error : "");
    pthread_mutex_lock(&d->mu);
    if (retry) {
        int k = 0;
        while (k < d->n_backoff && d->backoff[k].id != j->id) k++;
        if (k == d->n_backoff && k < (int)(sizeof d->backoff / sizeof d->backoff[0])) {
            d->n_backoff++;
            d->backoff[k].id = j->id;
            d->backoff[k].tries = 0;
        }
        if (k < d->n_backoff) {
            double wait = d->cfg.retry_seconds;
            for (int t = 0; t < d->backoff[k].tries && wait < 600; t++) wait *= 2;
            d->backoff[k].tries++;
            d->backoff[k].not_before = know_seconds() + (wait > 600 ? 600 : wait);
        }
    }
    j->finished = 1;
    pthread_mutex_unlock(&d->mu);
    daemon_wake(d, 'J');
}
