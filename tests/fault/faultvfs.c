/* faultvfs.c: a test-only SQLite VFS shim that fails the Nth file operation
 * of a process (docs/reliability.md, "Fault injection: SQLite I/O").
 *
 * Built as libkiln_faultvfs.so (never linked into kiln) and loaded with
 * LD_PRELOAD. kiln links the system libsqlite3 dynamically, so the shim and
 * kiln share one SQLite: the constructor below finds the default VFS
 * (sqlite3_vfs_find(NULL), "unix"), registers a wrapper of it as the new
 * default (sqlite3_vfs_register(shim, 1)), and every sqlite3_open_v2 that
 * names no VFS (store/store.c names none, and uses no URI) goes through it.
 * Nothing of kiln changes; without LD_PRELOAD the shim does not exist.
 *
 * Every file SQLite opens through the VFS (the store, its -wal, temporary
 * files) gets wrapped sqlite3_io_methods. Each call is counted in its class;
 * the Nth call of the chosen class fails instead of reaching the file:
 *
 *   class     calls                          fails with
 *   read      xRead                          SQLITE_IOERR_READ
 *   write     xWrite                         SQLITE_IOERR_WRITE, or SQLITE_FULL
 *   sync      xSync                          SQLITE_IOERR_FSYNC
 *   truncate  xTruncate                      SQLITE_IOERR_TRUNCATE, or SQLITE_FULL
 *   size      xFileSize                      SQLITE_IOERR_FSTAT
 *   lock      xLock, xCheckReservedLock,     SQLITE_IOERR_LOCK, _CHECKRESERVEDLOCK,
 *             xShmLock                       _SHMLOCK
 *   shm       xShmMap                        SQLITE_IOERR_SHMMAP, or SQLITE_FULL
 *   open      the VFS's xOpen                SQLITE_CANTOPEN
 *   delete    the VFS's xDelete              SQLITE_IOERR_DELETE
 *   access    the VFS's xAccess              SQLITE_IOERR_ACCESS
 *   any       all of the above (one counter)
 *
 * (xClose, xUnlock, xShmBarrier, xShmUnmap, xFileControl, xSectorSize,
 * xDeviceCharacteristics, xFetch and xUnfetch pass through uncounted: SQLite
 * ignores their errors or they cannot fail.)
 *
 * Environment (read once, by the constructor):
 *   KILN_FAULT_OP=CLASS     the class to fail (unset: count only)
 *   KILN_FAULT_N=N          fail the Nth call of the class (1-based)
 *   KILN_FAULT_ERR=ioerr|full   full: SQLITE_FULL for write, truncate and
 *                           shm (the calls that allocate); ioerr (default)
 *   KILN_FAULT_STICKY=1     every later call of the class fails too (a disk
 *                           that stays full, a device that stays dead);
 *                           default: only the Nth fails
 *   KILN_FAULT_COUNT=PATH   at exit, write "CLASS CALLS" lines (every class,
 *                           and "fired K": faults injected) to PATH, so a
 *                           sweep knows the range of N
 *   KILN_FAULT_LOG=PATH     append a line for the first fault injected
 *                           (class, N, file, result code)
 *
 * Counters are process-wide and atomic (kiln's ingest writer, the daemon's
 * threads). A process that forks or execs keeps the environment: the child
 * counts afresh. */
#define _GNU_SOURCE
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { C_READ, C_WRITE, C_SYNC, C_TRUNCATE, C_SIZE, C_LOCK, C_SHM, C_OPEN, C_DELETE, C_ACCESS, C_N, C_ANY = C_N };
static const char *const class_name[C_N + 1] = {"read", "write", "sync", "truncate", "size", "lock",
                                                "shm",  "open",  "delete", "access", "any"};

static struct {
    sqlite3_vfs *orig;   /* the default VFS before us */
    sqlite3_vfs vfs;     /* ours: a copy of orig's fields with wrapped methods */
    int on;              /* a class is chosen */
    int cls;             /* C_* or C_ANY */
    long long n;         /* fail the nth call */
    int full;            /* SQLITE_FULL where it applies */
    int sticky;
    const char *count_path, *log_path;
    long long calls[C_N + 1];   /* calls per class; [C_ANY]: all */
    long long fired;
} g;

/* Counts a call of class c; returns 0 to let it through, or the code it fails with. */
static int fault(int c, int code, const char *file)
{
    __atomic_add_fetch(&g.calls[c], 1, __ATOMIC_RELAXED);
    long long all = __atomic_add_fetch(&g.calls[C_ANY], 1, __ATOMIC_RELAXED);
    if (!g.on) return 0;
    long long k = g.cls == C_ANY ? all : g.cls == c ? __atomic_load_n(&g.calls[c], __ATOMIC_RELAXED) : 0;
    if (k == 0 || k < g.n || (k > g.n && !g.sticky)) return 0;
    if (g.full && (c == C_WRITE || c == C_TRUNCATE || c == C_SHM)) code = SQLITE_FULL;
    if (__atomic_add_fetch(&g.fired, 1, __ATOMIC_RELAXED) == 1 && g.log_path) {
        FILE *f = fopen(g.log_path, "a");
        if (f) {
            fprintf(f, "fault: pid %d %s call %lld (%s #%lld) on %s: result %d\n", (int)getpid(), class_name[c],
                    k, class_name[g.cls], g.n, file ? file : "(temporary)", code);
            fclose(f);
        }
    }
    return code;
}

/* ---- files --------------------------------------------------------------------------- */

typedef struct fv_file {
    sqlite3_file base;     /* base.pMethods: one of io[] below */
    sqlite3_file *real;    /* the wrapped VFS's file, in the same allocation after this struct */
    const char *name;      /* as SQLite gave it (valid while the file is open), or NULL */
} fv_file;

#define REAL(p) (((fv_file *)(p))->real)
#define RM(p) (REAL(p)->pMethods)
#define NAME(p) (((fv_file *)(p))->name)

static int fv_close(sqlite3_file *p)
{
    int rc = RM(p)->xClose(REAL(p));
    p->pMethods = NULL;
    return rc;
}
static int fv_read(sqlite3_file *p, void *buf, int n, sqlite3_int64 off)
{
    int rc = fault(C_READ, SQLITE_IOERR_READ, NAME(p));
    return rc ? rc : RM(p)->xRead(REAL(p), buf, n, off);
}
static int fv_write(sqlite3_file *p, const void *buf, int n, sqlite3_int64 off)
{
    int rc = fault(C_WRITE, SQLITE_IOERR_WRITE, NAME(p));
    return rc ? rc : RM(p)->xWrite(REAL(p), buf, n, off);
}
static int fv_truncate(sqlite3_file *p, sqlite3_int64 size)
{
    int rc = fault(C_TRUNCATE, SQLITE_IOERR_TRUNCATE, NAME(p));
    return rc ? rc : RM(p)->xTruncate(REAL(p), size);
}
static int fv_sync(sqlite3_file *p, int flags)
{
    int rc = fault(C_SYNC, SQLITE_IOERR_FSYNC, NAME(p));
    return rc ? rc : RM(p)->xSync(REAL(p), flags);
}
static int fv_file_size(sqlite3_file *p, sqlite3_int64 *size)
{
    int rc = fault(C_SIZE, SQLITE_IOERR_FSTAT, NAME(p));
    return rc ? rc : RM(p)->xFileSize(REAL(p), size);
}
static int fv_lock(sqlite3_file *p, int level)
{
    int rc = fault(C_LOCK, SQLITE_IOERR_LOCK, NAME(p));
    return rc ? rc : RM(p)->xLock(REAL(p), level);
}
static int fv_unlock(sqlite3_file *p, int level) { return RM(p)->xUnlock(REAL(p), level); }
static int fv_check_reserved(sqlite3_file *p, int *out)
{
    int rc = fault(C_LOCK, SQLITE_IOERR_CHECKRESERVEDLOCK, NAME(p));
    return rc ? rc : RM(p)->xCheckReservedLock(REAL(p), out);
}
static int fv_file_control(sqlite3_file *p, int op, void *arg) { return RM(p)->xFileControl(REAL(p), op, arg); }
static int fv_sector_size(sqlite3_file *p) { return RM(p)->xSectorSize(REAL(p)); }
static int fv_device_chars(sqlite3_file *p) { return RM(p)->xDeviceCharacteristics(REAL(p)); }
static int fv_shm_map(sqlite3_file *p, int pg, int pgsz, int extend, void volatile **out)
{
    int rc = fault(C_SHM, SQLITE_IOERR_SHMMAP, NAME(p));
    return rc ? rc : RM(p)->xShmMap(REAL(p), pg, pgsz, extend, out);
}
static int fv_shm_lock(sqlite3_file *p, int off, int n, int flags)
{
    /* an unlock cannot usefully fail (SQLite ignores it): only locks count */
    if (flags & SQLITE_SHM_LOCK) {
        int rc = fault(C_LOCK, SQLITE_IOERR_SHMLOCK, NAME(p));
        if (rc) return rc;
    }
    return RM(p)->xShmLock(REAL(p), off, n, flags);
}
static void fv_shm_barrier(sqlite3_file *p) { RM(p)->xShmBarrier(REAL(p)); }
static int fv_shm_unmap(sqlite3_file *p, int del) { return RM(p)->xShmUnmap(REAL(p), del); }
static int fv_fetch(sqlite3_file *p, sqlite3_int64 off, int n, void **out)
{
    return RM(p)->xFetch(REAL(p), off, n, out);
}
static int fv_unfetch(sqlite3_file *p, sqlite3_int64 off, void *ptr) { return RM(p)->xUnfetch(REAL(p), off, ptr); }

/* io[v - 1]: methods of version v (a wrapped file gets the version of the real one's). */
#define FV_IO(v)                                                                                           \
    {v,              fv_close,        fv_read,         fv_write,        fv_truncate,      fv_sync,         \
     fv_file_size,   fv_lock,         fv_unlock,       fv_check_reserved, fv_file_control, fv_sector_size, \
     fv_device_chars, v >= 2 ? fv_shm_map : NULL, v >= 2 ? fv_shm_lock : NULL,                             \
     v >= 2 ? fv_shm_barrier : NULL, v >= 2 ? fv_shm_unmap : NULL, v >= 3 ? fv_fetch : NULL,               \
     v >= 3 ? fv_unfetch : NULL}
static const sqlite3_io_methods io[3] = {FV_IO(1), FV_IO(2), FV_IO(3)};

/* ---- the VFS ----------------------------------------------------------------------- */

static int fv_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *p, int flags, int *out_flags)
{
    (void)vfs;
    fv_file *f = (fv_file *)p;
    f->base.pMethods = NULL;
    f->real = (sqlite3_file *)(f + 1);
    f->name = name;
    int rc = fault(C_OPEN, SQLITE_CANTOPEN, name);
    if (rc) return rc;
    memset(f->real, 0, (size_t)g.orig->szOsFile);
    rc = g.orig->xOpen(g.orig, name, f->real, flags, out_flags);
    if (f->real->pMethods) {
        int v = f->real->pMethods->iVersion;
        f->base.pMethods = &io[(v < 1 ? 1 : v > 3 ? 3 : v) - 1];
    }
    return rc;
}
static int fv_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    (void)vfs;
    int rc = fault(C_DELETE, SQLITE_IOERR_DELETE, name);
    return rc ? rc : g.orig->xDelete(g.orig, name, sync_dir);
}
static int fv_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    (void)vfs;
    int rc = fault(C_ACCESS, SQLITE_IOERR_ACCESS, name);
    return rc ? rc : g.orig->xAccess(g.orig, name, flags, out);
}
static int fv_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    (void)vfs;
    return g.orig->xFullPathname(g.orig, name, n, out);
}
static void *fv_dlopen(sqlite3_vfs *vfs, const char *name) { (void)vfs; return g.orig->xDlOpen(g.orig, name); }
static void fv_dlerror(sqlite3_vfs *vfs, int n, char *msg) { (void)vfs; g.orig->xDlError(g.orig, n, msg); }
static void (*fv_dlsym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
    (void)vfs;
    return g.orig->xDlSym(g.orig, h, sym);
}
static void fv_dlclose(sqlite3_vfs *vfs, void *h) { (void)vfs; g.orig->xDlClose(g.orig, h); }
static int fv_randomness(sqlite3_vfs *vfs, int n, char *out) { (void)vfs; return g.orig->xRandomness(g.orig, n, out); }
static int fv_sleep(sqlite3_vfs *vfs, int us) { (void)vfs; return g.orig->xSleep(g.orig, us); }
static int fv_current_time(sqlite3_vfs *vfs, double *t) { (void)vfs; return g.orig->xCurrentTime(g.orig, t); }
static int fv_last_error(sqlite3_vfs *vfs, int n, char *msg)
{
    (void)vfs;
    return g.orig->xGetLastError ? g.orig->xGetLastError(g.orig, n, msg) : 0;
}
static int fv_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *t)
{
    (void)vfs;
    return g.orig->xCurrentTimeInt64(g.orig, t);
}
static int fv_set_syscall(sqlite3_vfs *vfs, const char *name, sqlite3_syscall_ptr f)
{
    (void)vfs;
    return g.orig->xSetSystemCall(g.orig, name, f);
}
static sqlite3_syscall_ptr fv_get_syscall(sqlite3_vfs *vfs, const char *name)
{
    (void)vfs;
    return g.orig->xGetSystemCall(g.orig, name);
}
static const char *fv_next_syscall(sqlite3_vfs *vfs, const char *name)
{
    (void)vfs;
    return g.orig->xNextSystemCall(g.orig, name);
}

static void write_counts(void)
{
    if (!g.count_path || !__atomic_load_n(&g.calls[C_ANY], __ATOMIC_RELAXED)) return; /* not an SQLite user */
    FILE *f = fopen(g.count_path, "w");
    if (!f) return;
    for (int c = 0; c <= C_N; c++) fprintf(f, "%s %lld\n", class_name[c], __atomic_load_n(&g.calls[c], __ATOMIC_RELAXED));
    fprintf(f, "fired %lld\n", __atomic_load_n(&g.fired, __ATOMIC_RELAXED));
    fclose(f);
}

__attribute__((destructor)) static void fv_fini(void) { write_counts(); }

__attribute__((constructor)) static void fv_init(void)
{
    const char *op = getenv("KILN_FAULT_OP"), *n = getenv("KILN_FAULT_N"), *err = getenv("KILN_FAULT_ERR");
    const char *sticky = getenv("KILN_FAULT_STICKY");
    g.count_path = getenv("KILN_FAULT_COUNT");
    g.log_path = getenv("KILN_FAULT_LOG");
    if (op && *op) {
        g.cls = -1;
        for (int c = 0; c <= C_N; c++)
            if (!strcmp(op, class_name[c])) g.cls = c;
        char *end = NULL;
        g.n = n ? strtoll(n, &end, 10) : 0;
        if (g.cls < 0 || !n || *end || g.n < 1 || (err && strcmp(err, "ioerr") && strcmp(err, "full"))) {
            fprintf(stderr, "faultvfs: bad KILN_FAULT_OP=%s / KILN_FAULT_N=%s / KILN_FAULT_ERR=%s "
                            "(classes: read write sync truncate size lock shm open delete access any)\n",
                    op, n ? n : "", err ? err : "");
            _exit(70);
        }
        g.on = 1;
        g.full = err && !strcmp(err, "full");
        g.sticky = sticky && *sticky && strcmp(sticky, "0");
    }
    g.orig = sqlite3_vfs_find(NULL);
    if (!g.orig) {
        fprintf(stderr, "faultvfs: SQLite has no default VFS\n");
        _exit(70);
    }
    sqlite3_vfs *v = &g.vfs;
    v->iVersion = g.orig->iVersion < 3 ? g.orig->iVersion : 3;
    v->szOsFile = (int)sizeof(fv_file) + g.orig->szOsFile;
    v->mxPathname = g.orig->mxPathname;
    v->zName = "kiln-faultvfs";
    v->xOpen = fv_open;
    v->xDelete = fv_delete;
    v->xAccess = fv_access;
    v->xFullPathname = fv_full_pathname;
    v->xDlOpen = fv_dlopen;
    v->xDlError = fv_dlerror;
    v->xDlSym = fv_dlsym;
    v->xDlClose = fv_dlclose;
    v->xRandomness = fv_randomness;
    v->xSleep = fv_sleep;
    v->xCurrentTime = fv_current_time;
    v->xGetLastError = fv_last_error;
    if (v->iVersion >= 2) v->xCurrentTimeInt64 = fv_current_time64;
    if (v->iVersion >= 3) {
        v->xSetSystemCall = fv_set_syscall;
        v->xGetSystemCall = fv_get_syscall;
        v->xNextSystemCall = fv_next_syscall;
    }
    if (sqlite3_vfs_register(v, 1) != SQLITE_OK) {
        fprintf(stderr, "faultvfs: sqlite3_vfs_register failed\n");
        _exit(70);
    }
}
