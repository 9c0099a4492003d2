/* daemon_spool.c: the daemon's spool thread: files dropped into the spool
 * folder become corpus (docs/daemon.md, "The spool").
 *
 * State machine of one file NAME in SPOOL/:
 *
 *   waiting --lstat: not a regular file------------------------------------> failed/NAME + .error
 *   waiting --cannot open or hash--------------------------------------------> failed/NAME + .error
 *   waiting --kingest_run; the source row by content hash:
 *              complete, >= 1 document stored or already there, no error --> tokenize, link --> done/NAME
 *              partial, malformed records, or no document at all -----------> tokenize, link --> failed/NAME + .error
 *              no row / running (the store failed: locked, full, I/O) ------> waiting (retried later)
 *   any step interrupted by a stop (SIGTERM) ---------------------------------> waiting (next start)
 *
 * Invariants:
 *  1. A file leaves SPOOL/ only after everything it brought is committed
 *     (ingest, tokens, links): a kill -9 at any moment leaves it in SPOOL/,
 *     and processing it again is a no-op for what was committed (the store
 *     skips bytes already ingested, documents already stored, documents
 *     already tokenized or linked) and completes the rest.
 *  2. A file is ingested at most once by content (sources.content_hash is
 *     unique): the same bytes under another name go to done/ as "already".
 *  3. A bad file never stops the thread: every outcome is a move or a retry.
 *  4. Names starting with '.', ending with '~', .tmp, .part, .partial, .swp
 *     or .crdownload are a writer's temporary files: never touched. Files
 *     found by a rescan (not by an inotify event) that changed within the
 *     last 1.5 s wait until their size and mtime stop changing (or their
 *     writer closes them). A file replaced or rewritten while its batch ran
 *     (another inode, size or mtime at the move) is processed again, never
 *     moved on the outcome of the bytes it replaced.
 *  5. Files go through the machine in batches (process_batch): one ingest,
 *     one tokenize, one link for the ready files, whose cost is that of the
 *     files (the store's cursors, docs/store.md vocab_progress), not of the
 *     store; each file then moves on its own outcome. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/daemon.h"
#include "ingest/ingest.h"
#include "kg/kg.h"

typedef struct pending {
    char *name;
    double not_before;  /* monotonic seconds */
    int tries;          /* store failures so far */
    int scanned;        /* found by a rescan: wait until it is quiet */
    int seen;           /* a rescanned file's size and mtime were recorded: */
    off_t seen_size;    /* ... it is quiet once they stop changing */
    struct timespec seen_mtim;
} pending;

typedef struct spool {
    kdaemon *d;
    pending *v;
    size_t n, cap;
    int ino, wd;
    kstore *s;          /* this thread's handle, opened when needed */
    kkg_linker *linker; /* kept across batches (kg/link.c), built when first needed */
    double last_scan;
} spool;

static int ignored_name(const char *n)
{
    static const char *const suffix[] = {".tmp", ".part", ".partial", ".swp", ".crdownload", NULL};
    size_t l = strlen(n);
    if (!l || n[0] == '.' || n[l - 1] == '~') return 1;
    if (!strcmp(n, "done") || !strcmp(n, "failed")) return 1;
    for (int i = 0; suffix[i]; i++) {
        size_t k = strlen(suffix[i]);
        if (l > k && !strcmp(n + l - k, suffix[i])) return 1;
    }
    return 0;
}

int daemon_spool_ignored(const char *name) { return ignored_name(name); }

static void set_waiting(spool *sp)
{
    pthread_mutex_lock(&sp->d->mu);
    sp->d->n_waiting = (int64_t)sp->n;
    pthread_mutex_unlock(&sp->d->mu);
}

static void add_pending(spool *sp, const char *name, int scanned)
{
    for (size_t i = 0; i < sp->n; i++)
        if (!strcmp(sp->v[i].name, name)) {
            if (!scanned) sp->v[i].scanned = 0; /* an event: the writer is done */
            return;
        }
    if (sp->n == sp->cap) {
        sp->cap = sp->cap ? 2 * sp->cap : 64;
        sp->v = xrealloc(sp->v, sp->cap * sizeof *sp->v);
    }
    sp->v[sp->n++] = (pending){.name = xstrdup(name), .not_before = 0, .tries = 0, .scanned = scanned};
}

static void drop_pending(spool *sp, size_t i)
{
    free(sp->v[i].name);
    memmove(sp->v + i, sp->v + i + 1, (sp->n - i - 1) * sizeof *sp->v);
    sp->n--;
    set_waiting(sp);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Adds every file of the spool not yet pending, in name order. */
static void rescan(spool *sp)
{
    DIR *dir = opendir(sp->d->spool);
    sp->last_scan = know_seconds();
    if (!dir) {
        daemon_problem(sp->d, "cannot read the spool %s: %s", sp->d->spool, strerror(errno));
        return;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (ignored_name(e->d_name)) continue;
        if (e->d_type == DT_DIR) continue; /* folders are not spool files: left alone */
        if (e->d_type == DT_UNKNOWN) {
            struct stat st;
            if (!fstatat(dirfd(dir), e->d_name, &st, AT_SYMLINK_NOFOLLOW) && S_ISDIR(st.st_mode)) continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            names = xrealloc(names, cap * sizeof *names);
        }
        names[n++] = xstrdup(e->d_name);
    }
    closedir(dir);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    /* existing names, sorted, to skip them without a quadratic scan */
    char **have = xmalloc((sp->n + 1) * sizeof *have);
    for (size_t i = 0; i < sp->n; i++) have[i] = sp->v[i].name;
    if (sp->n) qsort(have, sp->n, sizeof *have, cmp_str);
    size_t before = sp->n;
    for (size_t i = 0; i < n; i++) {
        if (!before || !bsearch(&names[i], have, before, sizeof *have, cmp_str)) {
            if (sp->n == sp->cap) {
                sp->cap = sp->cap ? 2 * sp->cap : 64;
                sp->v = xrealloc(sp->v, sp->cap * sizeof *sp->v);
            }
            sp->v[sp->n++] = (pending){.name = names[i], .scanned = 1};
        } else {
            free(names[i]);
        }
    }
    free(have);
    free(names);
    if (sp->n > before) kdebug("spool: rescan found %zu new file(s)", sp->n - before);
    set_waiting(sp);
}

static void watch(spool *sp)
{
    if (sp->wd >= 0) return;
    sp->wd = inotify_add_watch(sp->ino, sp->d->spool,
                               IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_ONLYDIR | IN_DELETE_SELF | IN_MOVE_SELF);
    if (sp->wd < 0) daemon_problem(sp->d, "cannot watch the spool %s: %s (rescanning every 5 s)", sp->d->spool, strerror(errno));
}

/* Reads the pending inotify events. */
static void read_events(spool *sp)
{
    char buf[65536] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t len = read(sp->ino, buf, sizeof buf);
        if (len <= 0) break;
        for (char *p = buf; p < buf + len;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) {
                kwarn("spool: inotify queue overflow: rescanning %s", sp->d->spool);
                rescan(sp);
            } else if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
                if (ev->wd == sp->wd) {
                    daemon_problem(sp->d, "the spool %s was removed or moved: it is made again", sp->d->spool);
                    inotify_rm_watch(sp->ino, sp->wd);
                    sp->wd = -1;
                }
            } else if (ev->len && !(ev->mask & IN_ISDIR) && !ignored_name(ev->name)) {
                if (ev->mask & IN_CREATE) {
                    /* a regular file is complete when its writer closes it (IN_CLOSE_WRITE);
                     * a FIFO, socket, device or symbolic link is all there at creation */
                    struct stat st;
                    char p2[8400];
                    snprintf(p2, sizeof p2, "%s/%s", sp->d->spool, ev->name);
                    if (lstat(p2, &st) || S_ISREG(st.st_mode)) continue;
                }
                add_pending(sp, ev->name, 0);
            }
        }
    }
    set_waiting(sp);
}

/* ---- moving a file out of the spool ---------------------------------------- */

/* "a.jsonl.gz" with n = 2 -> "a.2.jsonl.gz"; "a" -> "a.2". */
static void with_suffix(const char *name, int n, char *out, size_t len)
{
    if (!n) {
        snprintf(out, len, "%s", name);
        return;
    }
    const char *dot = strchr(name, '.');
    if (!dot) snprintf(out, len, "%s.%d", name, n);
    else snprintf(out, len, "%.*s.%d%s", (int)(dot - name), name, n, dot);
}

static int exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

/* Copies from to dest when they are on different file systems (SPOOL/sub is
 * a mount of its own): the bytes go to SUB/.BASE.part, fsync'd, renamed to
 * dest, the folder fsync'd, and only then is from removed. On any failure
 * (ENOSPC: a full done/) the partial copy is removed and from stays where
 * it is: the file is never lost, at worst in both places. Returns 0 or an
 * errno value. */
static int copy_across(const char *from, const char *dir, const char *base, const char *dest)
{
    char tmp[5600];
    snprintf(tmp, sizeof tmp, "%s/.%s.part", dir, base);
    int in = open(from, O_RDONLY | O_CLOEXEC), out = -1, e = 0;
    struct stat st;
    if (in < 0 || fstat(in, &st)) {
        e = errno;
        goto done;
    }
    out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, st.st_mode & 0777);
    if (out < 0) {
        e = errno;
        goto done;
    }
    char buf[65536];
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            e = errno;
            goto done;
        }
        if (n == 0) break;
        for (ssize_t w = 0; w < n;) {
            ssize_t k = write(out, buf + w, (size_t)(n - w));
            if (k < 0 && errno == EINTR) continue;
            if (k < 0) {
                e = errno;
                goto done;
            }
            w += k;
        }
    }
    if (fsync(out)) {
        e = errno;
        goto done;
    }
    int c = close(out);
    out = -1;
    if (c) {
        e = errno;
        goto done;
    }
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dest, RENAME_NOREPLACE) && (errno != EINVAL || rename(tmp, dest))) {
        e = errno;
        goto done;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd)) e = errno;
        close(dfd);
    }
    if (e) {
        unlink(dest); /* not known to be durable: the spool keeps the file */
        goto done;
    }
    if (unlink(from)) e = errno; /* in both places: nothing lost */
    close(in);
    return e;
done:
    if (out >= 0) close(out);
    if (in >= 0) close(in);
    unlink(tmp);
    return e;
}

/* Moves SPOOL/name to SPOOL/sub/ under a free name, with NAME.error first
 * when why is not NULL (copied, then removed, when SPOOL/sub is another
 * file system). Returns 0 or an errno value. */
static int move_out(spool *sp, const char *name, const char *sub, const char *why, const char *detail)
{
    kdaemon *d = sp->d;
    char dir[4200], dest[5500], from[4400], base[1200], errp[5600];
    snprintf(dir, sizeof dir, "%s/%s", d->spool, sub);
    snprintf(from, sizeof from, "%s/%s", d->spool, name);
    if (mkdir(dir, 0755) && errno != EEXIST) return errno;
    for (int n = 0;; n++) {
        with_suffix(name, n, base, sizeof base);
        snprintf(dest, sizeof dest, "%s/%s", dir, base);
        snprintf(errp, sizeof errp, "%s.error", dest);
        if (!exists(dest) && !exists(errp)) break;
    }
    if (why) {
        char tmp[5700], when[64];
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        snprintf(tmp, sizeof tmp, "%s/.%s.error.tmp", dir, base);
        FILE *f = fopen(tmp, "w");
        int ok = f && fprintf(f, "file: %s\nwhen: %s\nreason: %s\n%s", name, when, why, detail ? detail : "") > 0;
        if (f && fclose(f)) ok = 0;
        if (!ok || rename(tmp, errp)) {
            kwarn("spool: cannot write %s: %s (the file goes to %s/ without it)", errp, strerror(errno), sub);
            unlink(tmp);
        }
    }
    if (renameat2(AT_FDCWD, from, AT_FDCWD, dest, RENAME_NOREPLACE) && (errno != EINVAL || rename(from, dest))) {
        if (errno != EXDEV) return errno;
        int e = copy_across(from, dir, base, dest);
        if (e) return e;
    }
    pthread_mutex_lock(&d->mu);
    if (!strcmp(sub, "done")) d->n_done++;
    else d->n_failed++;
    pthread_mutex_unlock(&d->mu);
    if (strcmp(base, name)) kinfo("spool: %s/%s exists: %s moved to %s", sub, name, name, dest);
    return 0;
}

static void fail_file(spool *sp, size_t i, const char *why, const char *detail)
{
    const char *name = sp->v[i].name;
    kwarn("spool: %s failed: %s", name, why);
    int e = move_out(sp, name, "failed", why, detail);
    if (e) {
        daemon_problem(sp->d, "spool: cannot move %s to failed/: %s (retrying later)", name, strerror(e));
        sp->v[i].not_before = know_seconds() + 60;
        return;
    }
    drop_pending(sp, i);
}

/* ---- processing one file --------------------------------------------------- */

static void set_current(kdaemon *d, const char *name, const char *phase)
{
    pthread_mutex_lock(&d->mu);
    snprintf(d->current, sizeof d->current, "%s", name ? name : "");
    snprintf(d->phase, sizeof d->phase, "%s", phase ? phase : "");
    if (!name || !strcmp(phase, "ingest")) d->cur_done = d->cur_total = 0;
    pthread_mutex_unlock(&d->mu);
}

static const char *store_trouble(int rc)
{
    switch (rc) {
    case EX_TEMPFAIL: return "the store is locked by another process";
    case EX_IOERR: return "the store cannot be written (disk full or I/O error)";
    case EX_CANTCREAT: return "the store cannot be written";
    case EX_NOPERM: return "no permission to write the store";
    default: return "the store failed";
    }
}

/* The file waits for the store: retried after retry_seconds, doubling up to 5 minutes. */
static void retry_later(spool *sp, size_t i, const char *why, int rc)
{
    pending *p = &sp->v[i];
    double wait = daemon_config(sp->d).retry_seconds;
    for (int k = 0; k < p->tries && wait < 300; k++) wait *= 2;
    if (wait > 300) wait = 300;
    p->tries++;
    p->not_before = know_seconds() + wait;
    daemon_problem(sp->d, "spool: %s waits in the spool: %s: %s (exit %d); retrying in %.0f s", p->name, why,
                   store_trouble(rc), rc, wait);
    if (sp->s) {
        kstore_close(sp->s);
        sp->s = NULL;
    }
}

static int open_store(spool *sp)
{
    if (sp->s) return 0;
    char err[1024];
    int rc = kstore_open(sp->d->db, 0, &sp->s, err, sizeof err);
    if (rc) kwarn("spool: %s", err);
    return rc;
}

/* ---- processing a batch of files --------------------------------------------
 * Ready files are taken together, up to BATCH_FILES or BATCH_BYTES (a bigger
 * file alone): one kingest_run for all of them, then one tokenize and one
 * link of the documents they brought (the work is that of the new documents:
 * kiln tokenize and the linker go on after the store's cursors, see
 * docs/store.md, vocab_progress), then each file moves on its own outcome.
 * Shared transactions: documents of several files share tokenize and link
 * transactions. A kill -9 loses at most what was not committed; every file of
 * the batch is still in the spool and is processed again (invariant 1). */
#define BATCH_FILES 256
#define BATCH_BYTES ((int64_t)64 << 20)

typedef struct bfile {
    char *name, *path;
    uint8_t hash[KHASH_LEN];
    int64_t size;
    int already;          /* its bytes were ingested before this batch */
    int waits;            /* the store failed: it stays in the spool, retried later */
    int reached;          /* its source row is in the store: tokens, links, then a move */
    int bad;              /* it goes to failed/ ... */
    char why[2048];       /* ... with this reason */
    char detail[1024];
    int64_t docs;
    struct stat st;       /* lstat before hashing: the file the batch ingested */
} bfile;

/* 1 when SPOOL/NAME is no longer the file the batch hashed and ingested:
 * replaced by a rename, or rewritten in place (size or mtime changed). Such a
 * file is processed again instead of being moved on another file's outcome. */
static int changed_since(const bfile *f)
{
    struct stat now;
    if (lstat(f->path, &now)) return 0; /* gone: the move says so */
    return now.st_dev != f->st.st_dev || now.st_ino != f->st.st_ino || now.st_size != f->st.st_size ||
           now.st_mtim.tv_sec != f->st.st_mtim.tv_sec || now.st_mtim.tv_nsec != f->st.st_mtim.tv_nsec;
}

static ssize_t find_pending(spool *sp, const char *name)
{
    for (size_t i = 0; i < sp->n; i++)
        if (!strcmp(sp->v[i].name, name)) return (ssize_t)i;
    return -1;
}

/* Checks v[i] before it joins a batch that holds *bytes so far (n files).
 * Returns 1 with f filled (it joins), 0 if it was dealt with (gone, failed,
 * waits), 2 if it does not fit in the batch (it waits for the next one). */
static int precheck(spool *sp, size_t i, int64_t bytes, size_t n, bfile *f)
{
    kdaemon *d = sp->d;
    char path[8400];
    const char *name = sp->v[i].name;
    snprintf(path, sizeof path, "%s/%s", d->spool, name);
    struct stat st;
    if (lstat(path, &st)) {
        int e = errno;
        if (e == ENOENT) {
            kdebug("spool: %s is gone", name);
            drop_pending(sp, i);
        } else {
            fail_file(sp, i, strerror(e), NULL);
        }
        set_waiting(sp);
        return 0;
    }
    if (!S_ISREG(st.st_mode)) {
        if (S_ISDIR(st.st_mode)) {
            kdebug("spool: %s is a folder: left alone", name); /* moved in by rename: not a spool file */
            drop_pending(sp, i);
        } else {
            fail_file(sp, i,
                      S_ISLNK(st.st_mode) ? "a symbolic link: only regular files are ingested (drop the file itself)"
                                          : "not a regular file (FIFO, socket or device): only regular files are ingested",
                      NULL);
        }
        return 0;
    }
    pending *p = &sp->v[i];
    if (p->scanned && (double)st.st_mtime > (double)time(NULL) - 1.5 &&
        (!p->seen || p->seen_size != st.st_size || p->seen_mtim.tv_sec != st.st_mtim.tv_sec ||
         p->seen_mtim.tv_nsec != st.st_mtim.tv_nsec)) {
        /* maybe still being written in place: it waits until it stops changing
         * (or its writer closes it: the event clears scanned) */
        p->seen = 1;
        p->seen_size = st.st_size;
        p->seen_mtim = st.st_mtim;
        p->not_before = know_seconds() + 1;
        return 0;
    }
    if (n > 0 && (n >= BATCH_FILES || bytes + (int64_t)st.st_size > BATCH_BYTES)) return 2;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        char why[512];
        snprintf(why, sizeof why, "cannot open: %s", strerror(errno));
        fail_file(sp, i, why, NULL);
        return 0;
    }
    close(fd);
    memset(f, 0, sizeof *f);
    f->st = st;
    int e = khash_file(path, f->hash, &f->size);
    if (e) {
        char why[512];
        snprintf(why, sizeof why, "cannot read: %s", strerror(e));
        fail_file(sp, i, why, NULL);
        return 0;
    }
    f->name = xstrdup(name);
    f->path = xstrdup(path);
    return 1;
}

/* The source row of an ingested file: f->reached, f->bad with why and
 * detail. Returns 0, or the exit code that makes the file wait (the store
 * failed: no row, or one still running). */
static int classify(spool *sp, bfile *f, int ingest_rc)
{
    ksource src;
    kbuf strs = {0};
    int found = 0;
    int lr = kstore_source_by_hash(sp->s, f->hash, &src, &strs, &found);
    if (lr || !found || !strcmp(src.status, "running")) {
        kbuf_free(&strs);
        /* no source row and no store trouble: nothing in the file to ingest */
        if (!lr && !found && (ingest_rc == 0 || ingest_rc == EX_NOINPUT || ingest_rc == EX_DATAERR)) {
            f->bad = 1;
            snprintf(f->why, sizeof f->why, "%s",
                     f->size == 0 ? "empty file: nothing to ingest"
                     : ingest_rc == EX_NOINPUT ? "cannot read the file (the daemon's log says why)"
                                               : "nothing ingested (the daemon's log says why)");
            return 0;
        }
        return ingest_rc ? ingest_rc : lr ? lr : EX_SOFTWARE;
    }
    f->reached = 1;
    if (strcmp(src.status, "complete")) {
        f->bad = 1;
        snprintf(f->why, sizeof f->why, "%s: %s", src.status, src.error ? src.error : "stopped early");
    } else if (src.error) {
        f->bad = 1;
        snprintf(f->why, sizeof f->why, "%s", src.error);
    } else if (src.documents + src.duplicates == 0) {
        f->bad = 1;
        snprintf(f->why, sizeof f->why,
                 "no document in it (%lld record(s) skipped: empty text, binary data, redirects or other "
                 "namespaces)",
                 (long long)src.skipped);
    }
    snprintf(f->detail, sizeof f->detail,
             "status: %s\nsource: %lld\ndocuments: %lld stored, %lld duplicate(s), %lld skipped\n",
             src.status, (long long)src.id, (long long)src.documents, (long long)src.duplicates,
             (long long)src.skipped);
    f->docs = src.documents;
    kbuf_free(&strs);
    return 0;
}

static void on_batch_progress(const kingest_progress *p, void *ctx)
{
    kdaemon *d = ctx;
    const char *base = p->current ? strrchr(p->current, '/') : NULL;
    pthread_mutex_lock(&d->mu);
    d->cur_done = (double)p->bytes_done;
    d->cur_total = (double)p->bytes_total;
    if (base) snprintf(d->current, sizeof d->current, "%s", base + 1);
    pthread_mutex_unlock(&d->mu);
}

/* Tokens and links of the documents not yet tokenized or linked (those of
 * the batch, and any a kiln ingest stored meanwhile): the work after the
 * store's cursors. Returns 0, or the exit code with *step naming the step;
 * *stopped when a stop interrupted it; secs[0], secs[1] get the time of
 * each step. */
static int tokens_and_links(spool *sp, const char *label, const char **step, int *stopped, double secs[2])
{
    kdaemon *d = sp->d;
    *stopped = 0;
    secs[0] = secs[1] = 0;
    double t0 = know_seconds();
    *step = "tokenize";
    kvocab_row vr;
    kbuf pc = {0}, mc = {0};
    int vrc = kstore_vocab_get(sp->s, NULL, &vr, &pc, &mc);
    kbuf_free(&pc);
    kbuf_free(&mc);
    if (vrc == EX_NOINPUT) return 0; /* no vocabulary: nothing to tokenize */
    if (vrc) return vrc;             /* the store failed: the file waits */
    dconfig cfg = daemon_config(d);
    set_current(d, label, "tokenize");
    ktokenize_opts to = {.vocab = NULL, .threads = cfg.ingest_threads, .stop = &d->spool_stop};
    ktokenize_summary ts;
    int rc = ktokenize_store(sp->s, &to, &ts);
    secs[0] = know_seconds() - t0;
    if (ts.interrupted || d->spool_stop) { *stopped = 1; return 0; }
    if (rc) return rc;
    if (ts.documents) kdebug("spool: tokenized %llu document(s)", (unsigned long long)ts.documents);
    /* entity links, if the store has a knowledge graph with names (and the
     * vocabulary is a WordPiece one: linking is by WordPiece words) */
    int64_t gen = 0;
    if (vr.kind == KVOCAB_BPE) return 0;
    if ((rc = kstore_kg_generation(sp->s, &gen))) return rc; /* the store failed, not "no KG" */
    if (gen <= 0) return 0;
    *step = "link";
    set_current(d, label, "link");
    kkg_link_opts lo = {.vocab = NULL, .min_alias_chars = 3, .max_alias_share = 1e-4, .stop = &d->spool_stop};
    if (!sp->linker && (rc = kkg_linker_new(sp->s, &lo, &sp->linker))) {
        secs[1] = know_seconds() - t0 - secs[0];
        return rc;
    }
    kkg_link_summary ls;
    rc = kkg_linker_run(sp->linker, sp->s, &lo, &ls);
    secs[1] = know_seconds() - t0 - secs[0];
    if (ls.interrupted || d->spool_stop) { *stopped = 1; return 0; }
    if (!rc && ls.documents)
        kdebug("spool: linked %llu document(s): %llu mention(s)", (unsigned long long)ls.documents,
               (unsigned long long)ls.mentions);
    return rc;
}

/* Processes the ready files from v[first] on (as many as fit in a batch);
 * each is removed from the list unless it must wait. */
static void process_batch(spool *sp, size_t first)
{
    kdaemon *d = sp->d;
    bfile *b = xcalloc(BATCH_FILES, sizeof *b);
    size_t n = 0;
    int64_t bytes = 0;
    double now = know_seconds();
    for (size_t i = first; i < sp->n && n < BATCH_FILES;) {
        if (sp->v[i].not_before > now) { i++; continue; }
        size_t before = sp->n;
        int r = precheck(sp, i, bytes, n, &b[n]);
        if (r == 2) break;
        if (r == 1) {
            bytes += b[n].size;
            n++;
            i++;
        } else if (sp->n == before) {
            i++; /* it waits: still in the list */
        }
    }
    if (!n) { free(b); return; }
    dconfig cfg = daemon_config(d);

    /* 1. ingest (files a dead daemon was ingesting are completed) */
    const char **paths = xmalloc(n * sizeof *paths);
    for (size_t k = 0; k < n; k++) {
        paths[k] = b[k].path;
        if (open_store(sp)) continue;
        ksource pre;
        kbuf ps = {0};
        int was = 0;
        if (!kstore_source_by_hash(sp->s, b[k].hash, &pre, &ps, &was) && was) {
            if (!strcmp(pre.status, "running"))
                kinfo("spool: %s: completing source %lld, interrupted after %lld document(s)", b[k].name,
                      (long long)pre.id, (long long)pre.documents);
            else
                b[k].already = 1;
        }
        kbuf_free(&ps);
    }
    char label[1000];
    snprintf(label, sizeof label, "%.900s", b[0].name);
    set_current(d, label, "ingest");
    kingest_opts o;
    kingest_opts_default(&o);
    o.threads = cfg.ingest_threads;
    o.stop = &d->spool_stop;
    o.progress = on_batch_progress;
    o.progress_ctx = d;
    kingest_summary sum;
    double t0 = know_seconds();
    int rc = kingest_run(d->db, paths, (int)n, &o, &sum);
    double t_ingest = know_seconds() - t0, t_steps[2] = {0, 0};
    free(paths);
    if (sum.interrupted || d->spool_stop) goto stopped;
    if (open_store(sp)) {
        for (size_t k = 0; k < n; k++) {
            ssize_t i = find_pending(sp, b[k].name);
            if (i >= 0) retry_later(sp, (size_t)i, "ingest", EX_TEMPFAIL);
        }
        goto out;
    }
    size_t reached = 0;
    for (size_t k = 0; k < n; k++) {
        /* retry_later closes the handle: a file that cannot be looked up waits too */
        int wait = open_store(sp) ? EX_TEMPFAIL : classify(sp, &b[k], rc);
        if (wait) {
            b[k].waits = 1;
            ssize_t i = find_pending(sp, b[k].name);
            if (i >= 0) retry_later(sp, (size_t)i, "ingest", wait);
        }
        reached += b[k].reached;
    }

    /* 2. tokens and 3. links of what the batch brought */
    if (reached && !open_store(sp)) {
        if (n > 1) snprintf(label, sizeof label, "%.900s (+%zu more)", b[0].name, n - 1);
        const char *step;
        int stopped;
        int trc = tokens_and_links(sp, label, &step, &stopped, t_steps);
        if (stopped) goto stopped;
        if (trc) {
            for (size_t k = 0; k < n; k++) {
                if (!b[k].reached) continue;
                b[k].waits = 1; /* a bad file too: its tokens and links are not all committed */
                ssize_t i = find_pending(sp, b[k].name);
                if (i >= 0) retry_later(sp, (size_t)i, step, trc);
            }
        }
    }

    /* 4. out of the spool */
    double secs = know_seconds() - t0;
    kinfo("spool: a batch of %zu file(s), %.1f MB: ingest %.2f s, tokenize %.2f s, link %.2f s", n,
          (double)bytes / 1e6, t_ingest, t_steps[0], t_steps[1]);
    for (size_t k = 0; k < n; k++) {
        bfile *f = &b[k];
        if (f->waits) continue;
        ssize_t i = find_pending(sp, f->name);
        if (i < 0) continue;
        if (changed_since(f)) {
            kinfo("spool: %s changed while it was ingested (replaced or still written): processed again", f->name);
            sp->v[i].not_before = know_seconds() + 1;
            sp->v[i].scanned = 1;
            sp->v[i].seen = 0;
            continue;
        }
        if (f->bad) {
            fail_file(sp, (size_t)i, f->why, f->reached ? f->detail : NULL);
            continue;
        }
        int e = move_out(sp, f->name, "done", NULL, NULL);
        if (e) {
            daemon_problem(d, "spool: cannot move %s to done/: %s (retrying later)", f->name, strerror(e));
            sp->v[i].not_before = know_seconds() + 60;
        } else {
            if (n > 1)
                kinfo("spool: %s: %s (a batch of %zu files, %.1f s)", f->name,
                      f->already ? "already ingested" : f->docs ? "ingested" : "ingested (every document already stored)",
                      n, secs);
            else
                kinfo("spool: %s: %s in %.1f s", f->name,
                      f->already ? "already ingested" : f->docs ? "ingested" : "ingested (every document already stored)",
                      secs);
            drop_pending(sp, (size_t)i);
        }
    }
    goto out;
stopped:
    for (size_t k = 0; k < n; k++)
        kinfo("spool: %s stays in the spool (stopping); it is completed at the next start", b[k].name);
out:
    for (size_t k = 0; k < n; k++) {
        free(b[k].name);
        free(b[k].path);
    }
    free(b);
    set_current(d, NULL, NULL);
    set_waiting(sp);
}

void daemon_catch_up(kdaemon *d)
{
    pthread_mutex_lock(&d->mu);
    d->catch_up = 1;
    d->catch_up_after = 0;
    pthread_mutex_unlock(&d->mu);
    uint64_t one = 1;
    if (write(d->spool_wake, &one, sizeof one) < 0) { /* the thread polls with a timeout anyway */ }
}

/* Tokenizes every stored document without tokens under the active
 * vocabulary, and links them: documents stored before that vocabulary was
 * made or chosen (the work after the store's cursors: nothing when there is
 * nothing to do). Returns 0 when done (or stopped), else a store error. */
static int catch_up(spool *sp)
{
    kdaemon *d = sp->d;
    int rc = open_store(sp);
    if (rc) return rc;
    const char *step;
    int stopped;
    double secs[2];
    rc = tokens_and_links(sp, "(stored documents)", &step, &stopped, secs);
    set_current(d, NULL, NULL);
    return d->spool_stop || stopped ? 0 : rc;
}

void daemon_spool_count(kdaemon *d)
{
    const char *subs[2] = {"done", "failed"};
    int64_t n[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/%s", d->spool, subs[k]);
        DIR *dd = opendir(dir);
        if (!dd) continue;
        struct dirent *e;
        while ((e = readdir(dd))) {
            size_t l = strlen(e->d_name);
            if (e->d_name[0] == '.') continue;
            if (k == 1 && l > 6 && !strcmp(e->d_name + l - 6, ".error")) continue;
            n[k]++;
        }
        closedir(dd);
    }
    pthread_mutex_lock(&d->mu);
    d->n_done = n[0];
    d->n_failed = n[1];
    pthread_mutex_unlock(&d->mu);
}

void *daemon_spool_main(void *arg)
{
    kdaemon *d = arg;
    spool sp = {.d = d, .wd = -1};
    sp.ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (sp.ino < 0) daemon_problem(d, "inotify: %s (rescanning the spool every 5 s)", strerror(errno));
    else watch(&sp);
    rescan(&sp);
    while (!d->spool_stop) {
        if (sp.ino >= 0) read_events(&sp);
        double now = know_seconds();
        /* the spool folder itself gone: make it again, watch it again */
        if (sp.wd < 0 && now - sp.last_scan >= 5) {
            if (mkdir(d->spool, 0755) == 0) kwarn("spool: %s made again", d->spool);
            if (sp.ino >= 0) watch(&sp);
            rescan(&sp);
        } else if (now - sp.last_scan >= 60) {
            rescan(&sp); /* a safety net for events lost in ways inotify does not report */
        }
        size_t pick = sp.n;
        double next = now + 5;
        for (size_t i = 0; i < sp.n; i++) {
            if (sp.v[i].not_before <= now) {
                pick = i;
                break;
            }
            if (sp.v[i].not_before < next) next = sp.v[i].not_before;
        }
        if (pick < sp.n) {
            process_batch(&sp, pick);
            continue;
        }
        pthread_mutex_lock(&d->mu);
        int due = d->catch_up && d->catch_up_after <= now;
        pthread_mutex_unlock(&d->mu);
        if (due) {
            int rc = catch_up(&sp);
            pthread_mutex_lock(&d->mu);
            if (!rc) d->catch_up = 0;
            else d->catch_up_after = know_seconds() + d->cfg.retry_seconds;
            pthread_mutex_unlock(&d->mu);
            if (rc) daemon_problem(d, "spool: tokenizing the stored documents: %s (exit %d); retrying", store_trouble(rc), rc);
            continue;
        }
        struct pollfd p[2] = {{.fd = d->spool_wake, .events = POLLIN}, {.fd = sp.ino, .events = POLLIN}};
        int timeout = (int)((next - now) * 1000) + 1;
        if (poll(p, sp.ino >= 0 ? 2 : 1, timeout) > 0 && (p[0].revents & POLLIN)) {
            uint64_t x;
            if (read(d->spool_wake, &x, sizeof x) < 0) { /* nothing: it only wakes us */ }
        }
    }
    for (size_t i = 0; i < sp.n; i++) free(sp.v[i].name);
    free(sp.v);
    if (sp.ino >= 0) close(sp.ino);
    kkg_linker_free(sp.linker);
    kstore_close(sp.s);
    pthread_mutex_lock(&d->mu);
    d->spool_exited = 1;
    pthread_mutex_unlock(&d->mu);
    daemon_wake(d, 'S');
    return NULL;
}
