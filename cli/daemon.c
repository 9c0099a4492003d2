/* daemon.c: kiln daemon: the main thread (signals, the control socket,
 * the scheduler, systemd notifications) of the long-running service that
 * turns a spool folder into corpus and runs queued jobs (docs/daemon.md).
 *
 * Threads:
 *   main   the loop below: signals through a self-pipe, the control socket
 *          (one request line, one response line, peer uid checked), the
 *          scheduler (one job at a time), sd_notify, the time-based
 *          checkpoint timer; its own store handle;
 *   spool  daemon_spool.c: inotify on the spool, ingest, tokenize, link,
 *          move to done/ or failed/ (kingest_run starts its own workers);
 *   job    daemon_job.c: one thread for the daemon's life, running one job
 *          at a time with train_threads OpenMP/BLAS threads.
 * Only the main thread receives SIGINT, SIGTERM and SIGHUP (the others
 * block them); the handler writes a byte to the self-pipe, except for a
 * second SIGINT, which exits at once (130).
 *
 * Invariants:
 *  1. One daemon per store (STORE.daemon.lock) and per spool
 *     (SPOOL/.kiln-spool.lock), both fcntl locks the kernel drops on death.
 *  2. The daemon is READY (sd_notify) only once it holds both locks, the
 *     store is open and migrated, interrupted jobs are queued again and the
 *     socket listens.
 *  3. Shutdown (SIGTERM, SIGINT) sets the stop flags, waits for the job
 *     thread (its step finishes and is checkpointed) and the spool thread
 *     (its transaction commits), then exits 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/daemon.h"
#include "cli/daemon_http.h"

/* ---- small helpers shared with the threads ------------------------------------------ */

/* snprintf into an error buffer (a message cut short is fine). */
static void say(char *b, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *b, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, n, fmt, ap);
    va_end(ap);
}

void daemon_wake(kdaemon *d, char c)
{
    if (write(d->wake_wr, &c, 1) < 0) { /* the pipe is full: the loop wakes anyway */ }
}

void daemon_problem(kdaemon *d, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kwarn("%s", msg);
    pthread_mutex_lock(&d->mu);
    snprintf(d->last_error, sizeof d->last_error, "%s", msg);
    d->last_error_at = (int64_t)time(NULL);
    pthread_mutex_unlock(&d->mu);
}

dconfig daemon_config(kdaemon *d)
{
    pthread_mutex_lock(&d->mu);
    dconfig c = d->cfg;
    pthread_mutex_unlock(&d->mu);
    return c;
}

/* ---- sd_notify, implemented directly (no libsystemd) --------------------------------- */

/* Sends one datagram of newline-separated KEY=VALUE lines to $NOTIFY_SOCKET
 * (a path, or an abstract name when it starts with '@'). Silent when unset. */
static void sd_notify_msg(const char *fmt, ...)
{
    const char *e = getenv("NOTIFY_SOCKET");
    if (!e || !e[0]) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof msg) n = (int)strlen(msg);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    size_t len = strlen(e);
    if (len >= sizeof a.sun_path || (e[0] != '/' && e[0] != '@')) {
        kdebug("NOTIFY_SOCKET=%s: not a usable address", e);
        return;
    }
    memcpy(a.sun_path, e, len);
    if (e[0] == '@') a.sun_path[0] = '\0'; /* abstract namespace */
    socklen_t al = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (e[0] == '/'));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    if (sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&a, al) < 0)
        kdebug("sd_notify to %s: %s", e, strerror(errno));
    close(fd);
}

/* ---- the config file ----------------------------------------------------------------- */

static void config_defaults(dconfig *c)
{
    int cores = kcpu_count();
    c->ingest_threads = cores >= 8 ? cores / 4 : 1;
    c->train_threads = cores - c->ingest_threads >= 1 ? cores - c->ingest_threads : 1;
    c->checkpoint_minutes = 0;
    c->keep_best = 1;
    c->retry_seconds = 10;
}

/* Reads the daemon's config file over the defaults. Returns 0, EX_NOINPUT,
 * EX_DATAERR (not a JSON object) or EX_CONFIG (a key unknown or out of range). */
static int config_load(const char *path, dconfig *out, char *err, size_t errlen)
{
    dconfig c;
    config_defaults(&c);
    if (!path) {
        *out = c;
        return 0;
    }
    json_error_t je;
    json_t *o = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        snprintf(err, errlen, "%s:%d:%d: %s", path, je.line, je.column, je.text);
        return access(path, R_OK) ? EX_NOINPUT : EX_DATAERR;
    }
    if (!json_is_object(o)) {
        snprintf(err, errlen, "%s: expected a JSON object", path);
        json_decref(o);
        return EX_DATAERR;
    }
    const char *k;
    json_t *v;
    int rc = 0;
    json_object_foreach(o, k, v) {
        double x = json_number_value(v);
        int isint = json_is_integer(v);
        if (!strcmp(k, "train_threads") || !strcmp(k, "ingest_threads")) {
            int hi = k[0] == 't' ? 4096 : 64;
            if (!isint || x < 1 || x > hi) {
                snprintf(err, errlen, "%s: %s: expected an integer from 1 to %d", path, k, hi);
                rc = EX_CONFIG;
                break;
            }
            if (k[0] == 't') c.train_threads = (int)x;
            else c.ingest_threads = (int)x;
        } else if (!strcmp(k, "checkpoint_minutes") || !strcmp(k, "retry_seconds")) {
            int retry = k[0] == 'r';
            if (!json_is_number(v) || x < (retry ? 0.1 : 0) || x > 1e6) {
                snprintf(err, errlen, "%s: %s: expected a number from %s to 1e6", path, k, retry ? "0.1" : "0");
                rc = EX_CONFIG;
                break;
            }
            if (retry) c.retry_seconds = x;
            else c.checkpoint_minutes = x;
        } else if (!strcmp(k, "keep_best")) {
            if (!json_is_boolean(v)) {
                snprintf(err, errlen, "%s: keep_best: expected true or false", path);
                rc = EX_CONFIG;
                break;
            }
            c.keep_best = json_is_true(v);
        } else {
            snprintf(err, errlen,
                     "%s: unknown key '%s' (known: train_threads, ingest_threads, checkpoint_minutes, keep_best, "
                     "retry_seconds)",
                     path, k);
            rc = EX_CONFIG;
            break;
        }
    }
    json_decref(o);
    if (!rc) *out = c;
    return rc;
}

static int reload_config(kdaemon *d, char *err, size_t errlen)
{
    if (!d->config_path[0]) {
        kinfo("reload: no --config file: the defaults stay");
        return 0;
    }
    dconfig c;
    int rc = config_load(d->config_path, &c, err, errlen);
    if (rc) {
        kerr("reload: %s (the previous config stays)", err);
        return rc;
    }
    pthread_mutex_lock(&d->mu);
    d->cfg = c;
    pthread_mutex_unlock(&d->mu);
    kinfo("config reloaded from %s: train_threads %d, ingest_threads %d, checkpoint_minutes %g, keep_best %s, "
          "retry_seconds %g (threads apply to the next file and the next training leg)",
          d->config_path, c.train_threads, c.ingest_threads, c.checkpoint_minutes, c.keep_best ? "true" : "false",
          c.retry_seconds);
    return 0;
}

/* ---- hooks for kctl_handle ------------------------------------------------------------- */

static int hook_running(void *ctx, int64_t id)
{
    kdaemon *d = ctx;
    pthread_mutex_lock(&d->mu);
    int r = d->job.active && !d->job.finished && d->job.id == id;
    pthread_mutex_unlock(&d->mu);
    return r;
}

static void hook_stop(void *ctx, int64_t id, const char *what)
{
    kdaemon *d = ctx;
    pthread_mutex_lock(&d->mu);
    if (d->job.active && d->job.id == id) {
        if (what) {
            d->job.why |= what[0] == 'c' ? WHY_CANCEL : WHY_PAUSE;
            d->job.stop = 1;
        } else {
            d->job.why &= ~(WHY_CANCEL | WHY_PAUSE);
        }
    }
    pthread_mutex_unlock(&d->mu);
    if (what) kinfo("job %lld: %s requested: it stops after its current step%s", (long long)id, what,
                    what[0] == 'p' ? " (with a checkpoint)" : "");
    else kinfo("job %lld: pending request withdrawn", (long long)id);
}

static void hook_changed(void *ctx)
{
    kdaemon *d = ctx;
    d->schedule_now = 1;
}

#define num_or_null cli_json_num

static void hook_status(void *ctx, json_t *r)
{
    kdaemon *d = ctx;
    double now = know_seconds();
    pthread_mutex_lock(&d->mu);
    json_t *dm = json_pack("{s:i, s:s, s:s, s:I, s:I, s:s, s:s, s:s}", "pid", (int)getpid(), "version", KILN_VERSION,
                           "state", d->stopping ? "stopping" : "running", "uptime_s", (json_int_t)(now - d->t0),
                           "started_at", (json_int_t)d->started_at, "store", d->db, "spool", d->spool, "socket",
                           d->socket);
    json_object_set_new(dm, "http", d->http_url[0] ? json_string(d->http_url) : json_null());
    json_object_set_new(dm, "config",
                        json_pack("{s:i, s:i, s:f, s:b, s:f, s:s?}", "train_threads", d->cfg.train_threads,
                                  "ingest_threads", d->cfg.ingest_threads, "checkpoint_minutes",
                                  d->cfg.checkpoint_minutes, "keep_best", d->cfg.keep_best, "retry_seconds",
                                  d->cfg.retry_seconds, "file", d->config_path[0] ? d->config_path : NULL));
    json_object_set_new(r, "daemon", dm);
    json_t *sp = json_pack("{s:I, s:I, s:I}", "waiting", (json_int_t)d->n_waiting, "done", (json_int_t)d->n_done,
                           "failed", (json_int_t)d->n_failed);
    json_object_set_new(sp, "current", d->current[0] ? json_string(d->current) : json_null());
    json_object_set_new(sp, "phase", d->current[0] ? json_string(d->phase) : json_null());
    json_object_set_new(sp, "progress",
                        d->current[0] && d->cur_total > 0 ? json_real(d->cur_done / d->cur_total) : json_null());
    json_object_set_new(sp, "last_error", d->last_error[0] ? json_string(d->last_error) : json_null());
    json_object_set_new(sp, "last_error_at", d->last_error[0] ? json_integer(d->last_error_at) : json_null());
    json_object_set_new(r, "spool", sp);
    djob *j = &d->job;
    if (j->active && !j->finished) {
        json_t *o = json_pack("{s:I, s:s, s:s, s:i, s:I}", "id", (json_int_t)j->id, "name", j->name, "kind", j->kind,
                              "threads", j->threads, "seconds", (json_int_t)(now - j->started));
        int hp = j->have_progress;
        json_object_set_new(o, "step", hp ? json_integer(j->p.step) : json_null());
        json_object_set_new(o, "total_steps", hp && j->p.total_steps ? json_integer(j->p.total_steps) : json_null());
        json_object_set_new(o, "tokens", hp ? json_integer(j->p.tokens) : json_null());
        json_object_set_new(o, "loss", hp ? num_or_null(j->p.loss) : json_null());
        json_object_set_new(o, "tokens_per_s", hp ? num_or_null(j->p.tokens_per_s) : json_null());
        json_object_set_new(o, "eta_s", hp ? num_or_null(j->p.eta_s) : json_null());
        json_object_set_new(o, "val_loss", hp ? num_or_null(j->p.val_loss) : json_null());
        json_object_set_new(o, "checkpoint", j->checkpoint[0] ? json_string(j->checkpoint) : json_null());
        const char *st = (j->why & WHY_CANCEL) ? "cancel" : (j->why & WHY_PAUSE) ? "pause"
                         : (j->why & WHY_SHUTDOWN) ? "shutdown" : (j->why & WHY_TIMER) ? "checkpoint" : NULL;
        json_object_set_new(o, "stopping", st ? json_string(st) : json_null());
        json_object_set_new(r, "running", o);
    } else {
        json_object_set_new(r, "running", json_null());
    }
    pthread_mutex_unlock(&d->mu);
}

static int hook_reload(void *ctx, char *err, size_t errlen) { return reload_config(ctx, err, errlen); }

/* ---- scheduling -------------------------------------------------------------------------- */

typedef struct pick { kdaemon *d; int64_t id; double now; } pick;

static int pick_cb(const kjob *j, void *ctx)
{
    pick *p = ctx;
    kdaemon *d = p->d;
    pthread_mutex_lock(&d->mu);
    int wait = 0;
    for (int k = 0; k < d->n_backoff; k++)
        if (d->backoff[k].id == j->id && d->backoff[k].not_before > p->now) wait = 1;
    pthread_mutex_unlock(&d->mu);
    if (wait) return 0;
    p->id = j->id;
    return 1;
}

static void start_job(kdaemon *d)
{
    if (d->stopping || d->job.active) return;
    pthread_mutex_lock(&d->mu);
    int tokenizing = d->catch_up; /* a run's snapshot should see the whole corpus tokenized */
    pthread_mutex_unlock(&d->mu);
    if (tokenizing) return;
    pick p = {d, 0, know_seconds()};
    if (kstore_jobs_queued_foreach(d->store, pick_cb, &p) || !p.id) return;
    int changed = 0;
    if (kstore_job_update(d->store, p.id, "queued", "running", NULL, &changed)) {
        kwarn("cannot start job %lld: %s", (long long)p.id, kstore_errmsg(d->store));
        return;
    }
    if (!changed) return;
    kjob j;
    kbuf str = {0};
    if (kstore_job_get(d->store, p.id, &j, &str)) {
        kbuf_free(&str);
        return;
    }
    djob *s = &d->job;
    pthread_mutex_lock(&d->mu);
    memset(s, 0, sizeof *s);
    s->d = d;
    s->id = j.id;
    snprintf(s->name, sizeof s->name, "%s", j.name ? j.name : "");
    snprintf(s->kind, sizeof s->kind, "%s", j.kind);
    s->config = xstrdup(j.config);
    s->started = s->last_ckpt = know_seconds();
    s->p.val_loss = NAN;
    s->active = 1;
    pthread_mutex_unlock(&d->mu);
    kbuf_free(&str);
    kinfo("job %lld (%s, %s, priority %lld): starting", (long long)s->id, s->name, s->kind, (long long)j.priority);
    pthread_mutex_lock(&d->mu);
    d->job_go = 1;
    pthread_cond_signal(&d->job_cv);
    pthread_mutex_unlock(&d->mu);
}

static void reap_job(kdaemon *d)
{
    djob *s = &d->job;
    pthread_mutex_lock(&d->mu);
    int done = s->active && s->finished;
    pthread_mutex_unlock(&d->mu);
    if (!done) return;
    pthread_mutex_lock(&d->mu);
    free(s->config);
    s->config = NULL;
    s->active = 0;
    s->finished = 0;
    pthread_mutex_unlock(&d->mu);
    d->schedule_now = 1;
}

/* The time-based checkpoint: asks the running training job for one when
 * checkpoint_minutes have passed since its last. */
static void checkpoint_timer(kdaemon *d)
{
    pthread_mutex_lock(&d->mu);
    djob *j = &d->job;
    double m = d->cfg.checkpoint_minutes;
    if (m > 0 && j->active && !j->finished && !strcmp(j->kind, "train") && !j->stop &&
        know_seconds() - j->last_ckpt >= m * 60) {
        j->why |= WHY_TIMER;
        j->stop = 1;
        kinfo("job %lld: %g minutes since its last checkpoint: one after this step", (long long)j->id, m);
    }
    pthread_mutex_unlock(&d->mu);
}

/* ---- recovery ------------------------------------------------------------------------------ */

static int log_interrupted(const kjob *j, void *ctx)
{
    (void)ctx;
    if (!j->origin || strcmp(j->state, "running")) return 0;
    const char *to = !j->request ? "queued again: it resumes from its latest checkpoint"
                     : !strcmp(j->request, "pause") ? "paused, as was asked" : "cancelled, as was asked";
    kwarn("job %lld (%s) was running when the previous daemon died: %s", (long long)j->id, j->name ? j->name : "",
          to);
    return 0;
}

static int recover_jobs(kdaemon *d)
{
    int64_t n = 0;
    int rc = kstore_jobs_foreach(d->store, log_interrupted, NULL);
    if (!rc) rc = kstore_jobs_recover(d->store, &n);
    if (rc) kerr("recovering interrupted jobs: %s", kstore_errmsg(d->store));
    return rc;
}

/* ---- the control socket -------------------------------------------------------------------- */

typedef struct conn {
    int fd;
    kbuf in, out;
    size_t off;
    double t0;
    int answered;
} conn;
#define MAX_CONN 32

static void conn_close(conn *c)
{
    if (c->fd >= 0) close(c->fd);
    kbuf_free(&c->in);
    kbuf_free(&c->out);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

static void conn_answer(conn *c, json_t *resp)
{
    char *line = json_dumps(resp, JSON_COMPACT);
    json_decref(resp);
    kbuf_clear(&c->out);
    kbuf_puts(&c->out, line ? line : "{\"ok\":false,\"error\":\"out of memory\",\"code\":71}");
    kbuf_putc(&c->out, '\n');
    free(line);
    c->off = 0;
    c->answered = 1;
}

static void accept_conns(int lfd, conn *cs)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        int k = 0;
        while (k < MAX_CONN && cs[k].fd >= 0) k++;
        struct ucred cr;
        socklen_t cl = sizeof cr;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl)) {
            close(fd);
            continue;
        }
        uid_t me = geteuid();
        if (cr.uid != me && cr.uid != 0) {
            kwarn("control socket: refused a connection from uid %ld (pid %ld): only uid %ld and root may talk to "
                  "this daemon",
                  (long)cr.uid, (long)cr.pid, (long)me);
            char msg[256];
            int n = snprintf(msg, sizeof msg,
                             "{\"ok\":false,\"code\":%d,\"error\":\"permission denied: uid %ld is neither the "
                             "daemon's user (uid %ld) nor root\"}\n",
                             EX_NOPERM, (long)cr.uid, (long)me);
            if (send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) { /* it is gone */ }
            close(fd);
            continue;
        }
        if (k == MAX_CONN) {
            const char *msg = "{\"ok\":false,\"code\":75,\"error\":\"the daemon is busy: too many connections\"}\n";
            if (send(fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) { /* it is gone */ }
            close(fd);
            continue;
        }
        cs[k].fd = fd;
        cs[k].t0 = know_seconds();
        cs[k].answered = 0;
        cs[k].off = 0;
    }
}

static void serve_conn(kdaemon *d, conn *c, short revents, const kctl_hooks *h)
{
    if (!c->answered && (revents & (POLLIN | POLLHUP | POLLERR))) {
        for (;;) {
            kbuf_reserve(&c->in, 65536);
            ssize_t r = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len - 1, 0);
            if (r > 0) {
                c->in.len += (size_t)r;
                c->in.data[c->in.len] = '\0';
                if (c->in.len > KCTL_LINE_MAX) {
                    conn_answer(c, kctl_fail(EX_USAGE, "request longer than %d bytes", KCTL_LINE_MAX));
                    break;
                }
                continue;
            }
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
            /* end of file or error: answer a complete line, else drop the client */
            if (!c->in.data || !memchr(c->in.data, '\n', c->in.len)) {
                conn_close(c);
                return;
            }
            break;
        }
        char *nl = c->in.data ? memchr(c->in.data, '\n', c->in.len) : NULL;
        if (!c->answered && nl) {
            json_error_t je;
            json_t *req = json_loadb(c->in.data, (size_t)(nl - c->in.data), 0, &je);
            if (!json_is_object(req)) conn_answer(c, kctl_fail(EX_USAGE, "a request is one JSON object on one line: %s", je.text));
            else {
                kdebug("control socket: %s", json_string_value(json_object_get(req, "cmd")));
                conn_answer(c, kctl_handle(d->store, req, h));
            }
            json_decref(req);
        }
    }
    if (c->answered) {
        while (c->off < c->out.len) {
            ssize_t w = send(c->fd, c->out.data + c->off, c->out.len - c->off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) {
                c->off += (size_t)w;
                continue;
            }
            if (w < 0 && (errno == EAGAIN || errno == EINTR)) return;
            break;
        }
        conn_close(c);
    }
}

/* ---- signals ----------------------------------------------------------------------------------- */

static int g_wake_wr = -1;
static volatile sig_atomic_t g_sigint;

static void on_signal(int sig)
{
    int saved = errno;
    if (sig == SIGINT) {
        if (g_sigint) _exit(130); /* a second SIGINT: leave at once */
        g_sigint = 1;
    }
    char c = sig == SIGHUP ? 'H' : sig == SIGINT ? 'I' : 'T';
    if (write(g_wake_wr, &c, 1) < 0) { /* full: the loop is awake anyway */ }
    errno = saved;
}

static void catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void begin_shutdown(kdaemon *d, const char *why)
{
    if (d->stopping) {
        kinfo("%s: already stopping (a second SIGINT exits at once)", why);
        return;
    }
    d->stopping = 1;
    sd_notify_msg("STOPPING=1\nSTATUS=stopping: finishing the current step and transaction");
    d->spool_stop = 1;
    uint64_t one = 1;
    if (write(d->spool_wake, &one, sizeof one) < 0) { /* the thread polls with a timeout anyway */ }
    pthread_mutex_lock(&d->mu);
    int running = d->job.active && !d->job.finished;
    if (running) {
        d->job.why |= WHY_SHUTDOWN;
        d->job.stop = 1;
    }
    pthread_mutex_unlock(&d->mu);
    kinfo("%s: stopping%s; the file being ingested (if any) stays in the spool", why,
          running ? ": the running job finishes its step and checkpoints" : "");
}

/* ---- status line for systemd ----------------------------------------------------------------------- */

static void notify_status(kdaemon *d, char *last, size_t n)
{
    char s[512], job[256] = "idle";
    pthread_mutex_lock(&d->mu);
    djob *j = &d->job;
    if (j->active && !j->finished) {
        if (j->have_progress && j->p.total_steps)
            snprintf(job, sizeof job, "job %lld (%s) step %lld/%lld", (long long)j->id, j->kind, (long long)j->p.step,
                     (long long)j->p.total_steps);
        else
            snprintf(job, sizeof job, "job %lld (%s) running", (long long)j->id, j->kind);
    }
    snprintf(s, sizeof s, "%s%s; spool: %lld waiting, %lld done, %lld failed", d->stopping ? "stopping; " : "", job,
             (long long)d->n_waiting, (long long)d->n_done, (long long)d->n_failed);
    pthread_mutex_unlock(&d->mu);
    if (strcmp(s, last)) {
        sd_notify_msg("STATUS=%s", s);
        snprintf(last, n, "%s", s);
    }
}

/* ---- setup ------------------------------------------------------------------------------------------- */

static void absolute(const char *in, char *out, size_t n)
{
    char cwd[4096];
    if (in[0] == '/' || !getcwd(cwd, sizeof cwd)) say(out, n, "%s", in);
    else say(out, n, "%s/%s", cwd, in);
}

/* The socket's folder: STORE.daemon/ is made 0700 and must be ours; a
 * --socket folder is made 0700 when missing, and a warning says when it is
 * open to others (the socket's mode and the peer check still hold). */
static int socket_dir(kdaemon *d, char *err, size_t errlen)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", d->socket);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) {
        say(err, errlen, "%s: a socket needs a folder of its own", d->socket);
        return EX_USAGE;
    }
    *slash = '\0';
    struct stat st;
    if (lstat(dir, &st) && errno == ENOENT) {
        if (mkdir(dir, 0700) && errno != EEXIST) {
            say(err, errlen, "cannot make %s: %s", dir, strerror(errno));
            return EX_CANTCREAT;
        }
    }
    if (lstat(dir, &st) || !S_ISDIR(st.st_mode)) {
        say(err, errlen, "%s: not a folder", dir);
        return EX_CANTCREAT;
    }
    if (st.st_uid != geteuid()) {
        say(err, errlen, "%s belongs to uid %ld, not to the daemon's user (uid %ld): refusing to put the socket there",
                 dir, (long)st.st_uid, (long)geteuid());
        return EX_NOPERM;
    }
    if (st.st_mode & 077) {
        if (d->default_socket) {
            if (chmod(dir, 0700)) {
                say(err, errlen, "chmod 0700 %s: %s", dir, strerror(errno));
                return EX_NOPERM;
            }
        } else {
            kwarn("%s is open to other users (mode %03o): the socket itself is 0600 and peers are checked, but a "
                  "0700 folder is safer",
                  dir, (unsigned)(st.st_mode & 0777));
        }
    }
    return 0;
}

/* Locks SPOOL/.kiln-spool.lock; returns the descriptor or -1 (err filled). */
static int lock_spool(const char *spool, char *err, size_t errlen)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/.kiln-spool.lock", spool);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        say(err, errlen, "cannot open %s: %s", p, strerror(errno));
        return -1;
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_SETLK, &fl)) {
        struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        fcntl(fd, F_GETLK, &q);
        say(err, errlen, "the spool %s is served by another kiln daemon (pid %ld): one daemon per spool", spool,
                 (long)q.l_pid);
        close(fd);
        return -1;
    }
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (pwrite(fd, buf, (size_t)n, 0) != n || ftruncate(fd, n)) { /* informative only */ }
    return fd;
}

/* Waits for a signal byte for up to ms; returns 1 when a stop arrived. */
static int stop_arrived(int rd, int ms)
{
    struct pollfd p = {.fd = rd, .events = POLLIN};
    if (poll(&p, 1, ms) <= 0) return 0;
    char c[16];
    ssize_t n = read(rd, c, sizeof c);
    for (ssize_t i = 0; i < n; i++)
        if (c[i] == 'T' || c[i] == 'I') return 1;
    return 0;
}

int cmd_daemon(int argc, char **argv, const char *db)
{
    static const char usage[] =
        "usage: kiln daemon --spool DIR [--socket PATH] [--config FILE] [--db PATH] [-q|-v]\n"
        "                   [--http ADDR:PORT [--http-token TOKEN]]\n\n"
        "Runs in the foreground as a service (docs/daemon.md; contrib/kiln.service):\n"
        "  - files dropped into DIR (by rename; dot-files and *.tmp, *.part are ignored)\n"
        "    are ingested once by content, tokenized with the active vocabulary, linked\n"
        "    to the knowledge graph if there is one, and moved to DIR/done/, or to\n"
        "    DIR/failed/ with NAME.error saying why;\n"
        "  - jobs queued with kiln run submit run one at a time, highest priority first;\n"
        "    a training job checkpoints as its config says (and every checkpoint_minutes),\n"
        "    and resumes bit-identically after a crash, a kill or a restart.\n"
        "Control: kiln status, kiln run ... (they find the daemon of the same --db).\n"
        "The socket is STORE.daemon/sock (0600, folder 0700) unless --socket; only the\n"
        "daemon's user and root may use it. The config file is JSON: {\"train_threads\": N,\n"
        "\"ingest_threads\": M, \"checkpoint_minutes\": X, \"keep_best\": true,\n"
        "\"retry_seconds\": S}; defaults: ingest 1 thread (cores/4 from 8 cores), training\n"
        "the other cores. Systemd: Type=notify (READY=1, STATUS=, STOPPING=1).\n"
        "Signals: SIGTERM or SIGINT: finish the step or transaction, checkpoint, exit 0;\n"
        "a second SIGINT exits at once; SIGHUP reloads the config file.\n"
        "--http ADDR:PORT serves a read-only status page and its JSON (docs/observe.md):\n"
        "127.0.0.1:8080, [::1]:8080, or PORT alone (loopback; 0: any free port; kiln\n"
        "status shows the address). Another address needs --http-token TOKEN (or\n"
        "$KILN_HTTP_TOKEN: 16 to 256 of A-Z a-z 0-9 . _ ~ -), which every request must\n"
        "carry (Authorization: Bearer TOKEN, or ?token=TOKEN). Off unless asked.\n"
        "Exit: 0 stopped cleanly; 64 usage; 73 cannot listen (socket, --http);\n"
        "75 another daemon serves the store or spool; 78 bad config file.\n";
    enum { O_SPOOL = 1, O_SOCKET, O_CONFIG, O_HTTP, O_HTTP_TOKEN };
    static const struct option lo[] = {CLI_COMMON_LONGOPTS, {"spool", required_argument, 0, O_SPOOL},
                                       {"socket", required_argument, 0, O_SOCKET},
                                       {"config", required_argument, 0, O_CONFIG},
                                       {"http", required_argument, 0, O_HTTP},
                                       {"http-token", required_argument, 0, O_HTTP_TOKEN}, {0, 0, 0, 0}};
    cli_common c;
    cli_common_init(&c, db);
    const char *spool = NULL, *sock = NULL, *config = NULL, *http = NULL, *http_token = NULL;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1) {
        if (cli_common_opt(&c, opt, optarg)) continue;
        if (opt == O_SPOOL) spool = optarg;
        else if (opt == O_SOCKET) sock = optarg;
        else if (opt == O_CONFIG) config = optarg;
        else if (opt == O_HTTP) http = optarg;
        else if (opt == O_HTTP_TOKEN) http_token = optarg;
        else return cli_usage_error("daemon", "bad option");
    }
    if (c.help) {
        fputs(usage, stdout);
        return 0;
    }
    if (!spool) return cli_usage_error("daemon", "--spool DIR is required");
    if (optind < argc) return cli_usage_error("daemon", "unexpected argument '%s'", argv[optind]);
    if (http_token && !http) return cli_usage_error("daemon", "--http-token goes with --http ADDR:PORT");
    if (http && !http_token) http_token = getenv("KILN_HTTP_TOKEN"); /* not in ps, unlike the option */
    if (http) {
        char herr[1024];
        if (dhttp_check(http, http_token, herr, sizeof herr)) return cli_usage_error("daemon", "%s", herr);
    }

    static kdaemon dd; /* one per process; the signal handler reaches its pipe */
    kdaemon *d = &dd;
    memset(d, 0, sizeof *d);
    pthread_mutex_init(&d->mu, NULL);
    d->t0 = know_seconds();
    d->started_at = (int64_t)time(NULL);
    d->job.d = d;
    char err[4096];
    int rc;
    if (config) absolute(config, d->config_path, sizeof d->config_path);
    if ((rc = config_load(config ? d->config_path : NULL, &d->cfg, err, sizeof err))) {
        kerr("%s", err);
        return rc;
    }
    absolute(cli_db_path(&c), d->db, sizeof d->db);
    absolute(spool, d->spool, sizeof d->spool);
    size_t l = strlen(d->spool);
    while (l > 1 && d->spool[l - 1] == '/') d->spool[--l] = '\0';
    kctl_files f;
    if (kctl_files_of(d->db, &f)) return cli_usage_error("daemon", "--db: path too long");
    d->default_socket = !sock;
    if (sock) absolute(sock, d->socket, sizeof d->socket);
    else snprintf(d->socket, sizeof d->socket, "%s", f.sock);

    /* the spool: made if missing, never the store's own folder */
    struct stat st;
    if (stat(d->spool, &st) && mkdir(d->spool, 0755)) {
        kerr("cannot make the spool %s: %s", d->spool, strerror(errno));
        return EX_CANTCREAT;
    }
    if (stat(d->spool, &st) || !S_ISDIR(st.st_mode)) {
        kerr("--spool %s: not a folder", d->spool);
        return EX_USAGE;
    }
    {
        char a[4096], b[4096], dbdir[sizeof d->db];
        memcpy(dbdir, d->db, sizeof dbdir);
        char *s = strrchr(dbdir, '/');
        if (s) *s = '\0';
        if (realpath(d->spool, a) && realpath(dbdir[0] ? dbdir : "/", b) && !strcmp(a, b)) {
            kerr("--spool %s is the store's own folder: give the spool a folder of its own", d->spool);
            return EX_USAGE;
        }
    }

    /* signals first: a stop while waiting for a locked store is honoured */
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC | O_NONBLOCK)) {
        kerr("pipe: %s", strerror(errno));
        return EX_OSERR;
    }
    d->wake_rd = pfd[0];
    d->wake_wr = g_wake_wr = pfd[1];
    catch_signals();

    /* one daemon per store, one per spool */
    int busy = 0;
    int lock_fd = kctl_lock_daemon(d->db, d->socket, &busy, err, sizeof err);
    if (lock_fd < 0) {
        kerr("%s", err);
        return busy ? EX_TEMPFAIL : EX_CANTCREAT;
    }
    int spool_lock = lock_spool(d->spool, err, sizeof err);
    if (spool_lock < 0) {
        kerr("%s", err);
        close(lock_fd);
        return EX_TEMPFAIL;
    }

    /* the store: created if missing, migrated; a locked store is waited for */
    double t_warn = -1e9;
    for (;;) {
        rc = kstore_open(d->db, KSTORE_CREATE, &d->store, err, sizeof err);
        if (rc != EX_TEMPFAIL) break;
        if (know_seconds() - t_warn > 30) {
            kwarn("%s; waiting for it (SIGTERM stops)", err);
            t_warn = know_seconds();
        }
        if (stop_arrived(d->wake_rd, 1000)) {
            kinfo("stopped while waiting for the store");
            return 0;
        }
    }
    if (rc) {
        kerr("%s", err);
        return rc;
    }
    while ((rc = recover_jobs(d)) == EX_TEMPFAIL)
        if (stop_arrived(d->wake_rd, 1000)) return 0;
    if (rc) return rc;

    /* the control socket */
    if ((rc = socket_dir(d, err, sizeof err))) {
        kerr("%s", err);
        return rc;
    }
    int lfd = kctl_listen(d->socket, 64);
    if (lfd < 0) {
        kerr("cannot listen on %s: %s", d->socket, strerror(errno));
        return EX_CANTCREAT;
    }
    kctl_hooks hooks = {.ctx = d, .running = hook_running, .stop = hook_stop, .changed = hook_changed,
                        .status = hook_status, .reload = hook_reload};
    dhttp *web = NULL; /* the status page (cli/daemon_http.c): its own thread, the store read-only */
    if (http && (rc = dhttp_start(d, http, http_token, &hooks, &web, err, sizeof err))) {
        kerr("%s", err);
        close(lfd);
        unlink(d->socket);
        return rc;
    }

    /* the spool thread */
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/done", d->spool);
    mkdir(sub, 0755);
    snprintf(sub, sizeof sub, "%s/failed", d->spool);
    mkdir(sub, 0755);
    daemon_spool_count(d);
    d->spool_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_cond_init(&d->job_cv, NULL);
    int e = pthread_create(&d->spool_tid, NULL, daemon_spool_main, d);
    int e2 = e ? 0 : pthread_create(&d->job_tid, NULL, daemon_job_main, d);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e || e2) {
        kerr("cannot start the daemon's threads: %s", strerror(e ? e : e2));
        return EX_OSERR;
    }
    d->spool_started = 1;
    daemon_catch_up(d);

    dconfig cf = d->cfg;
    kinfo("daemon %ld serving %s: spool %s, socket %s; threads: training %d, ingest %d%s", (long)getpid(), d->db,
          d->spool, d->socket, cf.train_threads, cf.ingest_threads,
          cf.checkpoint_minutes > 0 ? "; time-based checkpoints on" : "");
    if (web) kinfo("status page: %s%s", d->http_url, http_token && http_token[0] ? " (with the token)" : "");
    sd_notify_msg("READY=1\nMAINPID=%ld\nSTATUS=ready", (long)getpid());
    d->schedule_now = 1;

    conn cs[MAX_CONN];
    for (int k = 0; k < MAX_CONN; k++) {
        memset(&cs[k], 0, sizeof cs[k]);
        cs[k].fd = -1;
    }
    char last_status[512] = "";
    double last_tick = 0;
    for (;;) {
        struct pollfd p[2 + MAX_CONN];
        int map[2 + MAX_CONN], np = 0;
        p[np].fd = d->wake_rd;
        p[np++].events = POLLIN;
        p[np].fd = lfd;
        p[np++].events = POLLIN;
        for (int k = 0; k < MAX_CONN; k++)
            if (cs[k].fd >= 0) {
                map[np] = k;
                p[np].fd = cs[k].fd;
                p[np++].events = cs[k].answered ? POLLOUT : POLLIN;
            }
        int pr = poll(p, (nfds_t)np, 500);
        if (pr < 0 && errno != EINTR) {
            kerr("poll: %s", strerror(errno));
            usleep(100000);
            continue;
        }
        if (pr > 0 && (p[0].revents & POLLIN)) {
            char buf[64];
            ssize_t n = read(d->wake_rd, buf, sizeof buf);
            for (ssize_t i = 0; i < n; i++) {
                if (buf[i] == 'T') begin_shutdown(d, "SIGTERM");
                else if (buf[i] == 'I') begin_shutdown(d, "SIGINT");
                else if (buf[i] == 'H') {
                    kinfo("SIGHUP: reloading the config");
                    reload_config(d, err, sizeof err);
                    daemon_catch_up(d); /* `kiln vocab use` may have changed the active vocabulary */
                } else if (buf[i] == 'Q') d->schedule_now = 1;
            }
        }
        if (pr > 0 && (p[1].revents & POLLIN)) accept_conns(lfd, cs);
        for (int i = 2; pr > 0 && i < np; i++)
            if (p[i].revents) serve_conn(d, &cs[map[i]], p[i].revents, &hooks);
        double now = know_seconds();
        for (int k = 0; k < MAX_CONN; k++)
            if (cs[k].fd >= 0 && now - cs[k].t0 > 30) conn_close(&cs[k]); /* a silent client */
        reap_job(d);
        if (!d->stopping && (d->schedule_now || now - last_tick >= 2)) {
            d->schedule_now = 0;
            last_tick = now;
            start_job(d);
        }
        checkpoint_timer(d);
        notify_status(d, last_status, sizeof last_status);
        pthread_mutex_lock(&d->mu);
        int done = d->stopping && !d->job.active && d->spool_exited;
        pthread_mutex_unlock(&d->mu);
        if (done) break;
    }
    pthread_join(d->spool_tid, NULL);
    dhttp_stop(web);
    for (int k = 0; k < MAX_CONN; k++)
        if (cs[k].fd >= 0) conn_close(&cs[k]);
    close(lfd);
    unlink(d->socket);
    kstore_close(d->store);
    close(d->spool_wake);
    close(spool_lock);
    close(lock_fd);
    kinfo("stopped");
    return 0;
}
