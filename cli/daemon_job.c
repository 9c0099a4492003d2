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
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
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

/* ---- training on MPI ranks (launch.ranks > 1) ------------------------------------------ */

/* The metrics of the job since the last poll into j->p (the step's loss,
 * rate, learning rate; the last validation), and its latest checkpoint. */
typedef struct poll_ctx { ktrain_progress *p; } poll_ctx;
static int poll_metric(int64_t step, const char *name, double v, void *ctx)
{
    ktrain_progress *p = ((poll_ctx *)ctx)->p;
    p->step = step;
    if (!strcmp(name, "loss")) p->loss = v;
    else if (!strcmp(name, "lr")) p->lr = v;
    else if (!strcmp(name, "grad_norm")) p->grad_norm = v;
    else if (!strcmp(name, "tokens_per_s")) p->tokens_per_s = v;
    else if (!strcmp(name, "tokens")) p->tokens = (int64_t)v;
    else if (!strcmp(name, "val_loss")) p->val_loss = v;
    return 0;
}

static void mpi_progress(djob *j, kstore *s, int64_t *after)
{
    kdaemon *d = j->d;
    ktrain_progress p;
    pthread_mutex_lock(&d->mu);
    p = j->p;
    pthread_mutex_unlock(&d->mu);
    if (!j->have_progress) p.val_loss = NAN;
    poll_ctx pc = {&p};
    int64_t last = *after;
    if (kstore_metrics_since(s, j->id, *after, 4096, poll_metric, &pc, &last, NULL) || last == *after) return;
    *after = last;
    kbuf ck = {0};
    int64_t cstep = 0;
    int have_ck = kstore_checkpoint_latest(s, j->id, &ck, &cstep) == 0 && ck.len;
    int fresh = 0;
    pthread_mutex_lock(&d->mu);
    j->p = p;
    j->have_progress = 1;
    if (have_ck && strcmp(ck.data, j->checkpoint)) {
        snprintf(j->checkpoint, sizeof j->checkpoint, "%s", ck.data);
        j->last_ckpt = know_seconds();
        fresh = 1;
    }
    int kb = d->cfg.keep_best;
    pthread_mutex_unlock(&d->mu);
    if (fresh && kb) keep_best(j, j->checkpoint, cstep);
    kbuf_free(&ck);
}

/* The last line of file path that starts with "kiln: error: " (the failing
 * rank's message), into err. */
static void last_error_line(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "kiln: error: ", 13)) continue;
        line[strcspn(line, "\n")] = '\0';
        snprintf(err, errlen, "%s", line + 13);
    }
    if (f) fclose(f);
}

/* One leg as mpirun -np R [--hostfile F] kiln train --resume --job ID
 * --leave-state --stop-file ... (a child process; KILN_MPIRUN names the
 * launcher, default "mpirun", split at spaces). The job's stop flag
 * creates the stop file: rank 0 sees it after its step, every rank stops
 * with a checkpoint. The child dies with the daemon (PR_SET_PDEATHSIG:
 * SIGTERM, which mpirun forwards: a checkpoint). Progress comes from the
 * store. Returns the exit code; *stopped from the run's --json summary. */
static int run_train_mpi(djob *j, const ktrain_config *cfg, int threads, int *stopped, char *err, size_t errlen)
{
    kdaemon *d = j->d;
    char base[1100], cfgp[1200], stopf[1200], outp[1200], logp[1200], self[4096], num[3][32];
    snprintf(base, sizeof base, "%s", cfg->checkpoint.dir);
    size_t bl = strlen(base);
    while (bl > 1 && base[bl - 1] == '/') base[--bl] = '\0';
    snprintf(cfgp, sizeof cfgp, "%s.job.json", base);
    snprintf(stopf, sizeof stopf, "%s.stop", base);
    snprintf(outp, sizeof outp, "%s.out.json", base);
    snprintf(logp, sizeof logp, "%s.log", base);
    *stopped = 0;
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) {
        snprintf(err, errlen, "cannot find the kiln executable (/proc/self/exe): %s", strerror(errno));
        return EX_OSERR;
    }
    self[sl] = '\0';
    char ce[512];
    if (kckpt_mkdirs(cfg->checkpoint.dir, ce, sizeof ce)) {
        snprintf(err, errlen, "%s", ce);
        return EX_CANTCREAT;
    }
    char *text = ktrain_config_to_json(cfg);
    FILE *f = fopen(cfgp, "w");
    int werr = !f || fputs(text, f) < 0;
    if (f && fclose(f)) werr = 1;
    free(text);
    if (werr) {
        snprintf(err, errlen, "cannot write %s: %s", cfgp, strerror(errno));
        return EX_CANTCREAT;
    }
    unlink(stopf);
    unlink(outp);
    /* argv: the launcher's words, then -np R [--hostfile F] kiln ... */
    const char *launcher = getenv("KILN_MPIRUN");
    char *lw = xstrdup(launcher && *launcher ? launcher : "mpirun");
    const char *argv[64];
    int n = 0;
    for (char *t = strtok(lw, " "); t && n < 40; t = strtok(NULL, " ")) argv[n++] = t;
    snprintf(num[0], sizeof num[0], "%d", cfg->launch.ranks);
    snprintf(num[1], sizeof num[1], "%lld", (long long)j->id);
    snprintf(num[2], sizeof num[2], "threads=%d", threads);
    argv[n++] = "-np";
    argv[n++] = num[0];
    if (cfg->launch.hostfile[0]) {
        argv[n++] = "--hostfile";
        argv[n++] = cfg->launch.hostfile;
    }
    const char *tail[] = {self, "--db", d->db, "train", "--config", cfgp, "--resume", "--job", num[1], "--leave-state",
                          "--stop-file", stopf, "--set", num[2], "--json", NULL};
    for (int k = 0; tail[k]; k++) argv[n++] = tail[k];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0) {
        free(lw);
        snprintf(err, errlen, "fork: %s", strerror(errno));
        return EX_OSERR;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644), l = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (o >= 0) dup2(o, 1);
        if (l >= 0) dup2(l, 2);
        for (int fd = 3; fd < 4096; fd++) close(fd); /* the daemon's socket, store, inotify: not mpirun's */
        sigset_t none;
        sigemptyset(&none);
        pthread_sigmask(SIG_SETMASK, &none, NULL);
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "kiln: error: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(EX_UNAVAILABLE);
    }
    free(lw);
    kinfo("job %lld: started %s -np %d%s%s (pid %d); its output in %s", (long long)j->id,
          launcher && *launcher ? launcher : "mpirun", cfg->launch.ranks, cfg->launch.hostfile[0] ? " --hostfile " : "",
          cfg->launch.hostfile, (int)pid, logp);
    kstore *s = NULL;
    int64_t after = 0;
    int status = 0, stop_sent = 0;
    double last_poll = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid || (w < 0 && errno != EINTR)) break;
        if (j->stop && !stop_sent) {
            int fd = open(stopf, O_WRONLY | O_CREAT, 0644);
            if (fd >= 0) close(fd);
            stop_sent = 1;
        }
        double now = know_seconds();
        if (now - last_poll > 1.0) {
            last_poll = now;
            char e2[512];
            if (!s && kstore_open(d->db, KSTORE_READONLY, &s, e2, sizeof e2)) s = NULL;
            if (s) mpi_progress(j, s, &after);
        }
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    if (s) {
        mpi_progress(j, s, &after);
        kstore_close(s);
    }
    unlink(stopf);
    unlink(cfgp);
    int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    json_t *o = json_load_file(outp, 0, NULL);
    if (!rc && o) {
        *stopped = json_is_true(json_object_get(o, "stopped"));
        const char *ck = json_string_value(json_object_get(o, "checkpoint"));
        pthread_mutex_lock(&d->mu);
        if (ck && *ck) snprintf(j->checkpoint, sizeof j->checkpoint, "%s", ck);
        pthread_mutex_unlock(&d->mu);
    } else if (!rc) {
        rc = EX_SOFTWARE;
        snprintf(err, errlen, "the MPI job ended without its summary (%s)", outp);
    } else {
        snprintf(err, errlen, "the MPI job failed (exit %d); its log: %s", rc, logp);
        last_error_line(logp, err, errlen);
    }
    json_decref(o);
    return rc;
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
        if (!leg) kinfo("job %lld (%s): training with %d thread(s)%s%s, checkpoints in %s", (long long)j->id, j->name,
                        threads, r.cfg.launch.ranks > 1 ? " on each of the MPI ranks: " : "",
                        r.cfg.launch.ranks > 1 ? "mpirun" : "", r.cfg.checkpoint.dir);
        if (r.cfg.launch.ranks > 1) {
            int st = 0;
            pthread_mutex_lock(&d->mu);
            j->run = NULL;
            pthread_mutex_unlock(&d->mu);
            rc = run_train_mpi(j, &r.cfg, threads, &st, r.error, sizeof r.error);
            r.stopped = st;
        } else {
            rc = ktrain_run_exec(&r);
        }
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
