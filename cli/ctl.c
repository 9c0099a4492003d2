/* ctl.c: the kiln daemon's control plane (ctl.h): files next to the store,
 * the daemon's lock, the Unix socket and its line protocol, and the job
 * operations both the daemon and the direct path run (docs/daemon.md).
 *
 * Invariants:
 *  1. At most one daemon serves a store: it holds an fcntl write lock on
 *     STORE.daemon.lock for its whole life (released by the kernel when it
 *     dies, kill -9 included). A client that finds no daemon takes a read
 *     lock on the same file while it changes the store directly, so a daemon
 *     starting meanwhile waits for it instead of racing it.
 *  2. Every job operation is one store transaction (read, check, write), so
 *     the daemon and a direct client never interleave half-operations.
 *  3. The daemon's queue holds only jobs of origin 'run'; rows that kiln train
 *     processes make for themselves are shown but never changed here. */
#define _GNU_SOURCE
#include "cli/ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ingest/ingest.h"
#include "kg/kg.h"
#include "sampler/batch.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"

int kctl_files_of(const char *db, kctl_files *f)
{
    int a = snprintf(f->lock, sizeof f->lock, "%s.daemon.lock", db);
    int b = snprintf(f->dir, sizeof f->dir, "%s.daemon", db);
    int c = snprintf(f->sock, sizeof f->sock, "%s.daemon/sock", db);
    return (a < 0 || b < 0 || c < 0 || (size_t)a >= sizeof f->lock || (size_t)c >= sizeof f->sock) ? -1 : 0;
}

/* ---- the lock file ------------------------------------------------------------- */

/* Reads "PID\nSOCKET\n"; returns 1 when both lines are there. */
static int read_lock_file(int fd, kctl_daemon *d)
{
    char buf[KCTL_PATH_MAX + 64];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) return 0;
    buf[n] = '\0';
    char *nl = strchr(buf, '\n');
    if (!nl) return 0;
    *nl = '\0';
    char *sock = nl + 1, *nl2 = strchr(sock, '\n');
    if (!nl2) return 0;
    *nl2 = '\0';
    d->pid = (pid_t)atol(buf);
    snprintf(d->socket, sizeof d->socket, "%s", sock);
    return d->pid > 0 && sock[0];
}

int kctl_find(const char *db, kctl_daemon *d, int *lockfd, char *err, size_t errlen)
{
    kctl_files f;
    memset(d, 0, sizeof *d);
    if (lockfd) *lockfd = -1;
    if (kctl_files_of(db, &f)) {
        snprintf(err, errlen, "%s: path too long", db);
        return -1;
    }
    int fd = open(f.lock, O_RDWR | O_CLOEXEC);
    if (fd < 0 && errno == EACCES) fd = open(f.lock, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        if (access(db, F_OK)) return 0; /* no store: no daemon, nothing to lock */
        fd = open(f.lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) return 0;           /* a read-only folder: no daemon could lock it either */
    }
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", f.lock, strerror(errno));
        return -1;
    }
    for (int tries = 0;; tries++) {
        struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET};
        if (fcntl(fd, F_SETLK, &fl) == 0) {
            if (lockfd) *lockfd = fd;
            else close(fd);
            return 0;
        }
        if (errno != EAGAIN && errno != EACCES) {
            snprintf(err, errlen, "%s: cannot lock: %s", f.lock, strerror(errno));
            close(fd);
            return -1;
        }
        /* a daemon holds it; it writes pid and socket just after locking */
        if (read_lock_file(fd, d)) break;
        if (tries > 100) {
            snprintf(err, errlen, "%s is locked but names no daemon", f.lock);
            close(fd);
            return -1;
        }
        usleep(10000);
    }
    struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_GETLK, &q) == 0 && q.l_type != F_UNLCK && q.l_pid > 0) d->pid = q.l_pid;
    close(fd);
    return 1;
}

int kctl_lock_daemon(const char *db, const char *socket, int *busy, char *err, size_t errlen)
{
    kctl_files f;
    *busy = 0;
    if (kctl_files_of(db, &f)) {
        snprintf(err, errlen, "%s: path too long", db);
        return -1;
    }
    int fd = open(f.lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open the daemon's lock file %s: %s", f.lock, strerror(errno));
        return -1;
    }
    double t0 = know_seconds();
    for (;;) {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        if (fcntl(fd, F_SETLK, &fl) == 0) break;
        if (errno != EAGAIN && errno != EACCES) {
            snprintf(err, errlen, "cannot lock %s: %s", f.lock, strerror(errno));
            close(fd);
            return -1;
        }
        struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        if (fcntl(fd, F_GETLK, &q) == 0 && q.l_type == F_RDLCK && know_seconds() - t0 < 10) {
            usleep(20000); /* a client changing the store directly: it is quick */
            continue;
        }
        if (fcntl(fd, F_GETLK, &q) == 0 && q.l_type == F_UNLCK) continue;
        kctl_daemon d = {0};
        int named = read_lock_file(fd, &d);
        *busy = 1;
        if (q.l_type == F_WRLCK)
            snprintf(err, errlen,
                     "another kiln daemon (pid %ld) already serves %s%s%s: one daemon per store (stop it "
                     "with kill -TERM %ld, or use another --db)",
                     (long)q.l_pid, db, named ? ", socket " : "", named ? d.socket : "", (long)q.l_pid);
        else
            snprintf(err, errlen, "%s is locked by process %ld (a kiln client) for more than 10 s", f.lock,
                     (long)q.l_pid);
        close(fd);
        return -1;
    }
    char buf[KCTL_PATH_MAX + 64];
    int n = snprintf(buf, sizeof buf, "%ld\n%s\n", (long)getpid(), socket);
    if (pwrite(fd, buf, (size_t)n, 0) != n || ftruncate(fd, n)) {
        snprintf(err, errlen, "cannot write %s: %s", f.lock, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- sockets ------------------------------------------------------------------- */

/* Fills addr for path; long paths go through an O_PATH descriptor of the
 * folder (*dirfd, to close after use). Returns the address length or -1. */
static socklen_t sock_addr(const char *path, struct sockaddr_un *a, int *dirfd)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    *dirfd = -1;
    if (strlen(path) < sizeof a->sun_path) {
        memcpy(a->sun_path, path, strlen(path));
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
    }
    const char *slash = strrchr(path, '/');
    if (!slash || strlen(slash + 1) > 64) {
        errno = ENAMETOOLONG;
        return (socklen_t)-1;
    }
    char dir[KCTL_PATH_MAX];
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    *dirfd = open(dir[0] ? dir : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (*dirfd < 0) return (socklen_t)-1;
    snprintf(a->sun_path, sizeof a->sun_path, "/proc/self/fd/%d/%s", *dirfd, slash + 1);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(a->sun_path) + 1);
}

int kctl_listen(const char *path, int backlog)
{
    struct sockaddr_un a;
    int dirfd;
    socklen_t len = sock_addr(path, &a, &dirfd);
    if (len == (socklen_t)-1) return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) goto fail;
    unlink(path);
    mode_t old = umask(0177); /* the socket is born 0600 */
    int r = bind(fd, (struct sockaddr *)&a, len);
    umask(old);
    if (r || chmod(path, 0600) || listen(fd, backlog)) goto fail;
    if (dirfd >= 0) close(dirfd);
    return fd;
fail:;
    int e = errno;
    if (fd >= 0) close(fd);
    if (dirfd >= 0) close(dirfd);
    errno = e;
    return -1;
}

int kctl_connect(const char *path)
{
    struct sockaddr_un a;
    int dirfd;
    socklen_t len = sock_addr(path, &a, &dirfd);
    if (len == (socklen_t)-1) return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int r = fd < 0 ? -1 : connect(fd, (struct sockaddr *)&a, len);
    int e = errno;
    if (dirfd >= 0) close(dirfd);
    if (r && fd >= 0) close(fd);
    errno = e;
    return r ? -1 : fd;
}

int kctl_call(const char *socket, json_t *req, json_t **resp, int timeout_ms, char *err, size_t errlen)
{
    *resp = NULL;
    /* a daemon that is starting has not bound its socket yet: up to 5 s */
    int fd = -1;
    for (int i = 0; i < 50; i++) {
        fd = kctl_connect(socket);
        if (fd >= 0 || (errno != ENOENT && errno != ECONNREFUSED)) break;
        usleep(100000);
    }
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot reach the daemon at %s: %s", socket, strerror(e));
        return (e == EACCES || e == EPERM) ? EX_NOPERM : EX_UNAVAILABLE;
    }
    char *line = json_dumps(req, JSON_COMPACT);
    kbuf out = {0}, in = {0};
    kbuf_puts(&out, line);
    kbuf_putc(&out, '\n');
    free(line);
    double deadline = know_seconds() + timeout_ms / 1000.0;
    size_t off = 0;
    int rc = 0;
    while (off < out.len) {
        ssize_t w = send(fd, out.data + off, out.len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) break; /* the daemon closed early: its answer (a refusal) may be waiting */
        off += (size_t)w;
    }
    for (;;) {
        double left = deadline - know_seconds();
        if (left <= 0) {
            snprintf(err, errlen, "the daemon at %s did not answer within %d s", socket, timeout_ms / 1000);
            rc = EX_UNAVAILABLE;
            goto out;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, (int)(left * 1000) + 1);
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) continue;
        kbuf_reserve(&in, 65536);
        ssize_t r = recv(fd, in.data + in.len, in.cap - in.len - 1, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        in.len += (size_t)r;
        in.data[in.len] = '\0';
        if (memchr(in.data, '\n', in.len)) break;
        if (in.len > KCTL_LINE_MAX) break;
    }
    char *nl = in.data ? memchr(in.data, '\n', in.len) : NULL;
    if (!nl) {
        snprintf(err, errlen, "the daemon at %s closed the connection without an answer", socket);
        rc = EX_PROTOCOL;
        goto out;
    }
    json_error_t je;
    *resp = json_loadb(in.data, (size_t)(nl - in.data), 0, &je);
    if (!*resp || !json_is_object(*resp)) {
        snprintf(err, errlen, "the daemon at %s answered something else than a JSON object: %s", socket, je.text);
        json_decref(*resp);
        *resp = NULL;
        rc = EX_PROTOCOL;
    }
out:
    close(fd);
    kbuf_free(&out);
    kbuf_free(&in);
    return rc;
}

/* ---- responses ----------------------------------------------------------------- */

json_t *kctl_fail(int code, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* The message may quote the request or a file: bytes that are not UTF-8,
     * or a multi-byte character cut by a "%.40s" or by jansson's error text.
     * json_pack refuses such a string (NULL: the client would get no answer,
     * or "out of memory"), so every ill-formed sequence becomes U+FFFD. */
    kbuf text = {0};
    kbuf_put_utf8(&text, msg, strlen(msg), 0);
    json_t *r = json_pack("{s:b, s:s, s:i}", "ok", 0, "error", text.data ? text.data : "", "code", code);
    kbuf_free(&text);
    return r;
}

static json_t *ok_with(const char *key, json_t *v)
{
    json_t *r = json_pack("{s:b}", "ok", 1);
    if (key) json_object_set_new(r, key, v);
    return r;
}

static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }

json_t *kctl_job_json(kstore *s, const kjob *j, int with_config)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(j->id));
    json_object_set_new(o, "name", str_or_null(j->name));
    json_object_set_new(o, "kind", str_or_null(j->kind));
    json_object_set_new(o, "state", str_or_null(j->state));
    json_object_set_new(o, "priority", json_integer(j->priority));
    json_object_set_new(o, "step", json_integer(j->step));
    kbuf path = {0};
    int64_t step = 0;
    if (kstore_checkpoint_latest(s, j->id, &path, &step) == 0 && path.len)
        json_object_set_new(o, "checkpoint", json_string(path.data));
    else
        json_object_set_new(o, "checkpoint", json_null());
    kbuf_free(&path);
    json_object_set_new(o, "error", str_or_null(j->error));
    json_object_set_new(o, "request", str_or_null(j->request));
    json_object_set_new(o, "origin", str_or_null(j->origin));
    json_object_set_new(o, "created_at", json_integer(j->created_at));
    json_object_set_new(o, "updated_at", json_integer(j->updated_at));
    if (with_config) {
        json_t *c = j->config ? json_loads(j->config, 0, NULL) : NULL;
        json_object_set_new(o, "config", c ? c : json_null());
    }
    return o;
}

static json_t *job_by_id(kstore *s, int64_t id, int with_config, int *rc)
{
    kjob j;
    kbuf str = {0};
    *rc = kstore_job_get(s, id, &j, &str);
    json_t *o = *rc ? NULL : kctl_job_json(s, &j, with_config);
    kbuf_free(&str);
    return o;
}

static int collect_job(const kjob *j, void *ctx)
{
    json_t **a = ctx;
    /* the checkpoint lookup needs the store, which is busy iterating: filled after */
    json_t *o = json_pack("{s:I}", "id", (json_int_t)j->id);
    json_array_append_new(*a, o);
    return 0;
}

static json_t *all_jobs(kstore *s, int only_queue, int *rc)
{
    json_t *ids = json_array(), *out = json_array();
    *rc = kstore_jobs_foreach(s, collect_job, &ids);
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v) {
        int r;
        json_t *o = job_by_id(s, json_integer_value(json_object_get(v, "id")), 0, &r);
        if (!o) continue;
        const char *st = json_string_value(json_object_get(o, "state"));
        int queue = json_is_string(json_object_get(o, "origin")) && st &&
                    (!strcmp(st, "queued") || !strcmp(st, "running") || !strcmp(st, "paused"));
        if (only_queue && !queue) json_decref(o);
        else json_array_append_new(out, o);
    }
    json_decref(ids);
    return out;
}

/* ---- job configs: train, vocab, kg-embed ------------------------------------------ */

typedef struct key_spec {
    const char *name;
    char type;          /* i integer, n number, b boolean, s string */
    double lo, hi;      /* range of i and n; length of s */
} key_spec;

static const key_spec VOCAB_KEYS[] = {
    {"size", 'i', 10, 16777216},       {"name", 's', 1, 127},          {"cased", 'b', 0, 0},
    {"min_frequency", 'i', 1, 1e12},   {"limit_alphabet", 'i', 0, 1e9}, {"max_words", 'i', 1000, 1e12},
    {"strip_accents", 'b', 0, 0},      {"words", 's', 1, 16},          {"bpe", 'b', 0, 0},
    {NULL, 0, 0, 0}};
static const key_spec EMBED_KEYS[] = {
    {"dim", 'i', 1, 65536},          {"epochs", 'i', 1, 1e6},       {"lr", 'n', 1e-9, 10},
    {"margin", 'n', 0, 1e6},         {"negatives", 'i', 1, 65536},  {"norm", 'i', 1, 2},
    {"adversarial", 'b', 0, 0},      {"adv_temperature", 'n', 0, 1e6}, {"batch", 'i', 1, 16777216},
    {"seed", 'i', 0, 9.2e18},        {"eval_every", 'i', 0, 1e6},   {"patience", 'i', 0, 1e6},
    {"max_seconds", 'n', 0, 1e10},   {NULL, 0, 0, 0}};

/* Checks cfg's keys against specs. Returns 0 or EX_CONFIG with err filled. */
static int check_keys(const char *kind, json_t *cfg, const key_spec *specs, char *err, size_t errlen)
{
    if (!json_is_object(cfg)) {
        snprintf(err, errlen, "%s config: expected a JSON object", kind);
        return EX_DATAERR;
    }
    const char *k;
    json_t *v;
    json_object_foreach(cfg, k, v) {
        const key_spec *sp = specs;
        while (sp->name && strcmp(sp->name, k)) sp++;
        if (!sp->name) {
            kbuf known = {0};
            for (const key_spec *q = specs; q->name; q++) kbuf_printf(&known, "%s%s", q == specs ? "" : ", ", q->name);
            snprintf(err, errlen, "%s config: unknown key '%s' (known: %s)", kind, k, known.data);
            kbuf_free(&known);
            return EX_CONFIG;
        }
        int good = 1;
        double x = 0;
        switch (sp->type) {
        case 'i':
            /* a real must be integral (floor, not a cast to an integer type:
             * fuzz_ctl found 5.6e27 converted to long long, undefined) */
            x = json_number_value(v);
            good = json_is_integer(v) || (json_is_real(v) && x == floor(x));
            good = good && x >= sp->lo && x <= sp->hi;
            break;
        case 'n': good = json_is_number(v) && (x = json_number_value(v)) >= sp->lo && x <= sp->hi; break;
        case 'b': good = json_is_boolean(v); break;
        case 's': good = json_is_string(v) && strlen(json_string_value(v)) >= sp->lo &&
                         strlen(json_string_value(v)) <= sp->hi; break;
        }
        if (!good) {
            if (sp->type == 'b') snprintf(err, errlen, "%s config: %s: expected true or false", kind, k);
            else if (sp->type == 's')
                snprintf(err, errlen, "%s config: %s: expected a string of %g to %g bytes", kind, k, sp->lo, sp->hi);
            else
                snprintf(err, errlen, "%s config: %s: expected %s from %g to %g", kind, k,
                         sp->type == 'i' ? "an integer" : "a number", sp->lo, sp->hi);
            return EX_CONFIG;
        }
    }
    return 0;
}

static double num_or(json_t *cfg, const char *k, double d)
{
    json_t *v = json_object_get(cfg, k);
    return json_is_number(v) ? json_number_value(v) : d;
}

int kctl_vocab_opts(json_t *cfg, kvocab_train_opts *o, char *name, size_t name_len, char *err, size_t errlen)
{
    int rc = check_keys("vocab", cfg, VOCAB_KEYS, err, errlen);
    if (rc) return rc;
    if (!json_object_get(cfg, "size")) {
        snprintf(err, errlen, "vocab config: size is required (pieces, specials included)");
        return EX_CONFIG;
    }
    memset(o, 0, sizeof *o);
    o->size = (size_t)num_or(cfg, "size", 0);
    o->cased = json_is_true(json_object_get(cfg, "cased"));
    o->min_frequency = (uint64_t)num_or(cfg, "min_frequency", 2);
    o->limit_alphabet = (size_t)num_or(cfg, "limit_alphabet", 0);
    o->max_words = (size_t)num_or(cfg, "max_words", 4000000);
    json_t *sa = json_object_get(cfg, "strip_accents");
    o->accents = !sa ? KVOCAB_ACCENTS_CASING : json_is_true(sa) ? KVOCAB_ACCENTS_STRIP : KVOCAB_ACCENTS_KEEP;
    const char *w = json_string_value(json_object_get(cfg, "words"));
    if (w && strcmp(w, "bert") && strcmp(w, "icu")) {
        snprintf(err, errlen, "vocab config: words: \"bert\" or \"icu\", not \"%s\"", w);
        return EX_CONFIG;
    }
    o->icu_words = w && !strcmp(w, "icu");
    o->bpe = json_is_true(json_object_get(cfg, "bpe"));
    if (o->bpe) {
        /* as kiln vocab train --bpe: every byte is kept, the alphabet is the 256 bytes */
        static const char *const no[] = {"cased", "strip_accents", "words", "limit_alphabet"};
        for (size_t i = 0; i < sizeof no / sizeof *no; i++)
            if (json_object_get(cfg, no[i])) {
                snprintf(err, errlen, "vocab config: %s does not apply to a byte-level BPE (bpe: true)", no[i]);
                return EX_CONFIG;
            }
        if (o->size < 257) {
            snprintf(err, errlen, "vocab config: size %zu: a byte-level BPE needs at least 257 (256 bytes + "
                                  "<|endoftext|>)", o->size);
            return EX_CONFIG;
        }
    }
    const char *nm = json_string_value(json_object_get(cfg, "name"));
    if (nm) snprintf(name, name_len, "%s", nm);
    else if (o->bpe) snprintf(name, name_len, "trained-bpe-%zu", o->size);
    else snprintf(name, name_len, "trained-%zu%s", o->size, o->cased ? "-cased" : "");
    o->name = name;
    return 0;
}

int kctl_embed_opts(json_t *cfg, ktranse_opts *o, char *err, size_t errlen)
{
    int rc = check_keys("kg-embed", cfg, EMBED_KEYS, err, errlen);
    if (rc) return rc;
    ktranse_opts_default(o);
    o->dim = (int)num_or(cfg, "dim", o->dim);
    o->epochs = (int)num_or(cfg, "epochs", o->epochs);
    o->lr = (float)num_or(cfg, "lr", o->lr);
    o->margin = (float)num_or(cfg, "margin", o->margin);
    o->negatives = (int)num_or(cfg, "negatives", o->negatives);
    o->norm = (int)num_or(cfg, "norm", o->norm);
    json_t *adv = json_object_get(cfg, "adversarial");
    if (adv) o->adversarial = json_is_true(adv);
    o->adv_temperature = (float)num_or(cfg, "adv_temperature", o->adv_temperature);
    o->batch = (int)num_or(cfg, "batch", o->batch);
    o->seed = (uint64_t)num_or(cfg, "seed", (double)o->seed);
    o->eval_every = (int)num_or(cfg, "eval_every", o->eval_every);
    o->patience = (int)num_or(cfg, "patience", o->patience);
    o->max_seconds = num_or(cfg, "max_seconds", o->max_seconds);
    return 0;
}

/* The canonical config object of a vocab or kg-embed job: every key. */
static json_t *canonical_small(const char *kind, json_t *cfg, char *err, size_t errlen, int *rc)
{
    if (!strcmp(kind, "vocab")) {
        kvocab_train_opts o;
        char name[128];
        if ((*rc = kctl_vocab_opts(cfg, &o, name, sizeof name, err, errlen))) return NULL;
        if (o.bpe)
            return json_pack("{s:I, s:s, s:b, s:I, s:I}", "size", (json_int_t)o.size, "name", name, "bpe", 1,
                             "min_frequency", (json_int_t)o.min_frequency, "max_words", (json_int_t)o.max_words);
        json_t *j = json_pack("{s:I, s:s, s:b, s:I, s:I, s:I}", "size", (json_int_t)o.size, "name", name, "cased",
                              o.cased, "min_frequency", (json_int_t)o.min_frequency, "limit_alphabet",
                              (json_int_t)o.limit_alphabet, "max_words", (json_int_t)o.max_words);
        /* the accent and word options only when given: older configs keep their form */
        if (o.accents != KVOCAB_ACCENTS_CASING)
            json_object_set_new(j, "strip_accents", json_boolean(o.accents == KVOCAB_ACCENTS_STRIP));
        if (o.icu_words) json_object_set_new(j, "words", json_string("icu"));
        return j;
    }
    ktranse_opts o;
    if ((*rc = kctl_embed_opts(cfg, &o, err, errlen))) return NULL;
    return json_pack("{s:i, s:i, s:f, s:f, s:i, s:i, s:b, s:f, s:i, s:I, s:i, s:i, s:f}", "dim", o.dim, "epochs",
                     o.epochs, "lr", (double)o.lr, "margin", (double)o.margin, "negatives", o.negatives, "norm",
                     o.norm, "adversarial", o.adversarial, "adv_temperature", (double)o.adv_temperature, "batch",
                     o.batch, "seed", (json_int_t)o.seed, "eval_every", o.eval_every, "patience", o.patience,
                     "max_seconds", o.max_seconds);
}

static int is_kind(const char *k) { return k && (!strcmp(k, "train") || !strcmp(k, "vocab") || !strcmp(k, "kg-embed")); }

int kctl_submit_request(const char *kind, const char *config_path, const char *const *sets, int n_sets,
                        const char *name, int64_t priority, int resume, json_t **req, char *err, size_t errlen)
{
    *req = NULL;
    if (!is_kind(kind)) {
        snprintf(err, errlen, "--kind: expected train, vocab or kg-embed, got '%s'", kind);
        return EX_USAGE;
    }
    kbuf text = {0};
    int e = kbuf_read_file(&text, config_path);
    if (e) {
        snprintf(err, errlen, "%s: %s", config_path, strerror(e));
        kbuf_free(&text);
        return EX_NOINPUT;
    }
    json_t *cfg = NULL;
    int rc = 0;
    if (!strcmp(kind, "train")) {
        ktrain_config c;
        char m[1024];
        rc = ktrain_config_parse(&c, text.data, text.len, sets, n_sets, m, sizeof m);
        if (rc) {
            snprintf(err, errlen, "%s: %s", config_path, m);
            goto out;
        }
        /* paths relative to here become absolute: the daemon runs elsewhere */
        char *paths[4] = {c.checkpoint.dir, c.init, c.distill.teacher, c.launch.hostfile};
        const char *keys[4] = {"checkpoint.dir", "init", "distill.teacher", "launch.hostfile"};
        for (int k = 0; k < 4 && !rc; k++) {
            char *p = paths[k];
            if (!p[0] || p[0] == '/') continue;
            char cwd[PATH_MAX], abs[2 * PATH_MAX];
            if (!getcwd(cwd, sizeof cwd)) {
                snprintf(err, errlen, "getcwd: %s", strerror(errno));
                rc = EX_OSERR;
                break;
            }
            const char *d = p;
            while (d[0] == '.' && d[1] == '/') d += 2;
            snprintf(abs, sizeof abs, "%s/%s", strcmp(cwd, "/") ? cwd : "", d);
            if (strlen(abs) >= sizeof c.init) { /* the four fields are 1024 bytes */
                snprintf(err, errlen, "%s: %s is longer than %zu bytes", keys[k], abs, sizeof c.init - 1);
                rc = EX_CONFIG;
                break;
            }
            memcpy(p, abs, strlen(abs) + 1);
        }
        if (rc) goto out;
        char *canon = ktrain_config_to_json(&c);
        cfg = json_loads(canon, 0, NULL);
        free(canon);
    } else {
        if (n_sets) {
            snprintf(err, errlen, "--set applies to train configs only");
            rc = EX_USAGE;
            goto out;
        }
        json_error_t je;
        json_t *raw = json_loadb(text.data, text.len, JSON_REJECT_DUPLICATES, &je);
        if (!raw) {
            snprintf(err, errlen, "%s:%d:%d: %s", config_path, je.line, je.column, je.text);
            rc = EX_DATAERR;
            goto out;
        }
        char m[1024];
        cfg = canonical_small(kind, raw, m, sizeof m, &rc);
        json_decref(raw);
        if (rc) {
            snprintf(err, errlen, "%s: %s", config_path, m);
            goto out;
        }
    }
    *req = json_pack("{s:s, s:s, s:o, s:I, s:b}", "cmd", "submit", "kind", kind, "config", cfg, "priority",
                     (json_int_t)priority, "resume", resume);
    if (name) json_object_set_new(*req, "name", json_string(name));
out:
    kbuf_free(&text);
    return rc;
}

/* ---- submit ------------------------------------------------------------------------ */

typedef struct dir_ctx { const char *dir; int64_t clash; } dir_ctx;

static int find_dir_clash(const kjob *j, void *ctx)
{
    dir_ctx *d = ctx;
    if (!j->origin || strcmp(j->kind, "train") || !j->config) return 0;
    if (strcmp(j->state, "queued") && strcmp(j->state, "running") && strcmp(j->state, "paused")) return 0;
    json_t *c = json_loads(j->config, 0, NULL);
    const char *dir = json_string_value(json_object_get(json_object_get(c, "checkpoint"), "dir"));
    if (dir && !strcmp(dir, d->dir)) d->clash = j->id;
    json_decref(c);
    return d->clash != 0;
}

static json_t *do_submit(kstore *s, json_t *req, const kctl_hooks *h)
{
    const char *kind = json_string_value(json_object_get(req, "kind"));
    if (!kind) kind = "train";
    if (!is_kind(kind)) return kctl_fail(EX_USAGE, "kind: expected train, vocab or kg-embed");
    json_t *cfg = json_object_get(req, "config");
    if (!json_is_object(cfg)) return kctl_fail(EX_USAGE, "submit: config must be a JSON object");
    json_t *pv = json_object_get(req, "priority");
    if (pv && !json_is_integer(pv)) return kctl_fail(EX_USAGE, "submit: priority must be an integer");
    int64_t prio = pv ? json_integer_value(pv) : 0;
    const char *name = json_string_value(json_object_get(req, "name"));
    int resume = json_is_true(json_object_get(req, "resume"));
    char err[2048], dname[1100];
    int rc = 0;
    char *stored = NULL;
    if (!strcmp(kind, "train")) {
        ktrain_config c;
        char *text = json_dumps(cfg, JSON_COMPACT);
        rc = ktrain_config_parse(&c, text, strlen(text), NULL, 0, err, sizeof err);
        free(text);
        if (rc) return kctl_fail(rc, "run config: %s", err);
        if (c.checkpoint.dir[0] != '/')
            return kctl_fail(EX_CONFIG, "checkpoint.dir must be an absolute path (kiln run submit makes it one)");
        /* ERNIE: the embedding pinned now ("latest" at submission), as the vocabulary below */
        if (c.model.fusion_layers > 0 && !c.knowledge_embedding && !resume) {
            kkg_embedding e;
            kbuf blobs = {0};
            rc = kstore_kg_embedding_latest(s, &e, &blobs);
            kbuf_free(&blobs);
            if (rc) return kctl_fail(rc, "knowledge.embedding: %s", kstore_errmsg(s));
            c.knowledge_embedding = e.id;
        }
        /* a vocabulary named now, not whichever is active when the job starts */
        if (!c.data.vocab[0] && !resume) {
            kvocab_row v;
            kbuf pc = {0}, mc = {0};
            if (kstore_vocab_get(s, NULL, &v, &pc, &mc) == 0) snprintf(c.data.vocab, sizeof c.data.vocab, "%s", v.name);
            kbuf_free(&pc);
            kbuf_free(&mc);
        }
        dir_ctx d = {c.checkpoint.dir, 0};
        if ((rc = kstore_jobs_foreach(s, find_dir_clash, &d))) return kctl_fail(rc, "%s", kstore_errmsg(s));
        if (d.clash)
            return kctl_fail(EX_CANTCREAT, "checkpoint.dir %s is used by job %lld: choose another folder",
                             c.checkpoint.dir, (long long)d.clash);
        char latest[4096];
        int64_t step;
        if (!resume && kckpt_latest(c.checkpoint.dir, latest, sizeof latest, &step) == 0)
            return kctl_fail(EX_CANTCREAT,
                             "%s already holds checkpoints (latest %s): add --resume to continue that run, or "
                             "choose another checkpoint.dir",
                             c.checkpoint.dir, latest);
        stored = ktrain_config_to_json(&c);
        if (!name) {
            const char *b = strrchr(c.checkpoint.dir, '/');
            snprintf(dname, sizeof dname, "%s", b && b[1] ? b + 1 : c.checkpoint.dir);
            name = dname;
        }
    } else {
        json_t *canon = canonical_small(kind, cfg, err, sizeof err, &rc);
        if (!canon) return kctl_fail(rc, "%s", err);
        stored = json_dumps(canon, JSON_COMPACT);
        if (!name) {
            if (!strcmp(kind, "vocab")) snprintf(dname, sizeof dname, "%s", json_string_value(json_object_get(canon, "name")));
            else snprintf(dname, sizeof dname, "transe");
            name = dname;
        }
        json_decref(canon);
    }
    int64_t id = 0;
    rc = kstore_job_queue(s, name, kind, stored, prio, &id);
    free(stored);
    if (rc) return kctl_fail(rc, "%s", kstore_errmsg(s));
    if (h && h->changed) h->changed(h->ctx);
    json_t *job = job_by_id(s, id, 0, &rc);
    return job ? ok_with("job", job) : kctl_fail(rc, "%s", kstore_errmsg(s));
}

/* ---- pause, resume, cancel ------------------------------------------------------- */

static json_t *do_control(kstore *s, const char *op, int64_t id, const kctl_hooks *h)
{
    int rc = kstore_begin(s);
    if (rc) return kctl_fail(rc, "%s", kstore_errmsg(s));
    kjob j;
    kbuf str = {0};
    rc = kstore_job_get(s, id, &j, &str);
    if (rc) {
        json_t *r = kctl_fail(rc, "%s", kstore_errmsg(s));
        kstore_rollback(s);
        kbuf_free(&str);
        return r;
    }
    const char *to = NULL, *request = NULL, *note = NULL;
    int withdraw = 0, code = 0;
    char msg[512] = "";
    int mine = h && h->running && h->running(h->ctx, id);
    const char *st = j.state;
    if (!j.origin) {
        code = EX_DATAERR;
        snprintf(msg, sizeof msg,
                 "job %lld is a kiln train process's own run, not a queued job: stop that process with SIGINT "
                 "or SIGTERM, continue it with kiln train --resume",
                 (long long)id);
    } else if (!strcmp(op, "pause") || !strcmp(op, "cancel")) {
        int cancel = op[0] == 'c';
        const char *final = cancel ? "cancelled" : "paused";
        if (!strcmp(st, "queued")) to = final;
        else if (!strcmp(st, "paused")) {
            if (cancel) to = final;
            else note = "already paused";
        } else if (!strcmp(st, "running")) {
            if (mine) request = op;
            else to = final; /* its daemon is gone: nothing runs it */
        } else {
            code = EX_DATAERR;
            snprintf(msg, sizeof msg, "job %lld is %s: nothing to %s", (long long)id, st, op);
        }
    } else { /* resume */
        if (!strcmp(st, "paused") || !strcmp(st, "failed") || !strcmp(st, "cancelled")) to = "queued";
        else if (!strcmp(st, "queued")) note = "already queued";
        else if (!strcmp(st, "running")) {
            if (mine && j.request) withdraw = 1;
            else note = "already running";
        } else {
            code = EX_DATAERR;
            snprintf(msg, sizeof msg, "job %lld is done: submit it again to train more (with --resume to continue from its checkpoints)",
                     (long long)id);
        }
    }
    if (!code && to) rc = kstore_job_update(s, id, st, to, NULL, NULL);
    if (!code && !rc && (request || withdraw)) rc = kstore_job_set_request(s, id, request);
    if (!code && !rc) rc = kstore_commit(s);
    if (code || rc) {
        json_t *r = code ? kctl_fail(code, "%s", msg) : kctl_fail(rc, "%s", kstore_errmsg(s));
        kstore_rollback(s);
        kbuf_free(&str);
        return r;
    }
    kbuf_free(&str);
    if ((request || withdraw) && h && h->stop) h->stop(h->ctx, id, request);
    if (to && !strcmp(to, "queued") && h && h->changed) h->changed(h->ctx);
    json_t *job = job_by_id(s, id, 0, &rc);
    if (!job) return kctl_fail(rc, "%s", kstore_errmsg(s));
    json_t *r = ok_with("job", job);
    if (request) json_object_set_new(r, "pending", json_string(request));
    if (note) json_object_set_new(r, "note", json_string(note));
    return r;
}

/* ---- dispatch ---------------------------------------------------------------------- */

json_t *kctl_handle(kstore *s, json_t *req, const kctl_hooks *h)
{
    const char *cmd = json_string_value(json_object_get(req, "cmd"));
    if (!cmd) return kctl_fail(EX_USAGE, "a request is a JSON object with \"cmd\"");
    int rc = 0;
    if (!strcmp(cmd, "ping"))
        return json_pack("{s:b, s:s, s:b}", "ok", 1, "version", KILN_VERSION, "daemon", h != NULL);
    if (!strcmp(cmd, "status")) {
        json_t *q = all_jobs(s, 1, &rc);
        if (rc) {
            json_decref(q);
            return kctl_fail(rc, "%s", kstore_errmsg(s));
        }
        json_t *r = ok_with("queue", q);
        if (h && h->status) h->status(h->ctx, r);
        else {
            json_object_set_new(r, "daemon", json_null());
            json_object_set_new(r, "running", json_null());
        }
        return r;
    }
    if (!strcmp(cmd, "list")) {
        json_t *a = all_jobs(s, 0, &rc);
        if (rc) {
            json_decref(a);
            return kctl_fail(rc, "%s", kstore_errmsg(s));
        }
        return ok_with("jobs", a);
    }
    if (!strcmp(cmd, "submit")) return do_submit(s, req, h);
    if (!strcmp(cmd, "reload")) {
        if (!h || !h->reload) return kctl_fail(EX_UNAVAILABLE, "no daemon serves this store");
        char err[1024];
        rc = h->reload(h->ctx, err, sizeof err);
        return rc ? kctl_fail(rc, "%s", err) : ok_with(NULL, NULL);
    }
    int is_show = !strcmp(cmd, "show");
    if (is_show || !strcmp(cmd, "pause") || !strcmp(cmd, "resume") || !strcmp(cmd, "cancel")) {
        json_t *idv = json_object_get(req, "id");
        if (!json_is_integer(idv) || json_integer_value(idv) < 1)
            return kctl_fail(EX_USAGE, "%s: \"id\" must be a job id (an integer >= 1)", cmd);
        int64_t id = json_integer_value(idv);
        if (!is_show) return do_control(s, cmd, id, h);
        json_t *job = job_by_id(s, id, 1, &rc);
        return job ? ok_with("job", job) : kctl_fail(rc, "%s", kstore_errmsg(s));
    }
    return kctl_fail(EX_USAGE, "unknown command '%s' (ping, status, list, show, submit, pause, resume, cancel, reload)",
                     cmd);
}
