/* failmalloc.c: libkiln_failmalloc.so, a test-only LD_PRELOAD library that
 * counts the process's heap allocations and fails one of them (the fault
 * injection of docs/reliability.md, "Fault injection: allocation failures
 * and full disks"). Not linked into kiln, never installed.
 *
 * It interposes malloc, calloc, realloc, posix_memalign, aligned_alloc,
 * memalign, valloc, strdup and strndup; each counted call takes the next
 * number (one atomic counter for every thread) and the call numbered N
 * returns NULL with errno ENOMEM; every other call goes to the next
 * allocator (glibc's, or AddressSanitizer's when the library is preloaded
 * before libasan with ASAN_OPTIONS=verify_asan_link_order=0, so that ASan
 * still owns every block and LeakSanitizer still sees leaks). free is
 * passed on (but for the few blocks served from a static buffer while the
 * next allocator is being looked up); realloc(p, 0) is not counted.
 *
 * Environment:
 *   KILN_FAILMALLOC_N=N       fail the N-th counted allocation (once; the
 *                             ones after it succeed); 0 or unset: none
 *   KILN_FAILMALLOC_FROM=open count only after the first successful
 *                             sqlite3_open_v2 (the store is open: skips
 *                             start-up); unset: from the first call
 *   KILN_FAILMALLOC_COUNT=F   at exit (exit(), not _exit()), write the
 *                             number of counted calls to the file F
 *   KILN_FAILMALLOC_LOG=1     say on stderr which call failed, with a
 *                             backtrace (which may allocate: not counted)
 * On the failed call it always writes "failmalloc: failing allocation N
 * (S bytes) from OBJECT" to stderr, OBJECT being the file of the code that
 * asked (kiln, libsqlite3.so.0, libicuuc.so.72, ...): a test can tell an
 * injected fault from a run that ended before reaching N, and whose
 * allocation it was. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct sqlite3 sqlite3;

static void *(*next_malloc)(size_t);
static void *(*next_calloc)(size_t, size_t);
static void *(*next_realloc)(void *, size_t);
static int (*next_posix_memalign)(void **, size_t, size_t);
static void *(*next_aligned_alloc)(size_t, size_t);
static void *(*next_memalign)(size_t, size_t);
static int (*next_sqlite3_open_v2)(const char *, sqlite3 **, int, const char *);

static atomic_ullong g_count;       /* counted calls so far */
static unsigned long long g_fail;   /* the call to fail, 0: none */
static atomic_int g_counting;       /* 1 once counting has started */
static int g_log;
static const char *g_count_file;
/* initial-exec: no __tls_get_addr call, which ASan intercepts (and cannot
 * serve before it is initialized) */
static _Thread_local int t_inside __attribute__((tls_model("initial-exec"))); /* in our logging */

/* dlsym may call calloc before next_calloc is known: served from here */
static char g_boot[8192];
static size_t g_boot_used;

static void *boot_alloc(size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (g_boot_used + n > sizeof g_boot) return NULL;
    void *p = g_boot + g_boot_used;
    g_boot_used += n;
    return p;
}

static volatile int resolving;
static void (*next_free)(void *);

static void resolve(void)
{
    if (next_malloc || resolving) return;
    resolving = 1;
    next_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    next_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    next_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    next_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
    next_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
    next_memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
    next_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    resolving = 0;
}

static void write_count(void)
{
    if (!g_count_file) return;
    FILE *f = fopen(g_count_file, "w");
    if (!f) return;
    fprintf(f, "%llu\n", (unsigned long long)atomic_load(&g_count));
    fclose(f);
}

__attribute__((constructor)) static void init(void)
{
    resolve();
    const char *n = getenv("KILN_FAILMALLOC_N");
    g_fail = n ? strtoull(n, NULL, 10) : 0;
    const char *from = getenv("KILN_FAILMALLOC_FROM");
    g_counting = !(from && !strcmp(from, "open"));
    const char *log = getenv("KILN_FAILMALLOC_LOG");
    g_log = log && *log && strcmp(log, "0");
    g_count_file = getenv("KILN_FAILMALLOC_COUNT");
    if (g_count_file) atexit(write_count);
}

/* The file name of the object holding code address pc ("kiln",
 * "libicuuc.so.72"); "?" when unknown. */
static const char *object_of(const void *pc)
{
    Dl_info info;
    if (!pc || !dladdr(pc, &info) || !info.dli_fname) return "?";
    const char *slash = strrchr(info.dli_fname, '/');
    return slash ? slash + 1 : info.dli_fname;
}

/* 1 when this call is the one to fail; caller: the code that asked. */
static int should_fail_from(size_t size, const void *caller)
{
    if (t_inside || !atomic_load_explicit(&g_counting, memory_order_relaxed)) return 0;
    unsigned long long k = atomic_fetch_add(&g_count, 1) + 1;
    if (!g_fail || k != g_fail) return 0;
    t_inside = 1;
    char msg[256];
    int len = snprintf(msg, sizeof msg, "failmalloc: failing allocation %llu (%zu bytes) from %s\n", k, size,
                       object_of(caller));
    if (write(2, msg, (size_t)len) < 0) { /* nothing to do */ }
    if (g_log) {
        void *frames[48];
        int nf = backtrace(frames, 48);
        backtrace_symbols_fd(frames, nf, 2);
    }
    t_inside = 0;
    errno = ENOMEM;
    return 1;
}

#define should_fail(size) should_fail_from(size, __builtin_return_address(0))

static void *malloc_from(size_t n, const void *caller)
{
    if (!next_malloc) {
        resolve();
        if (!next_malloc) return boot_alloc(n);
    }
    if (should_fail_from(n, caller)) return NULL;
    return next_malloc(n);
}

void *malloc(size_t n) { return malloc_from(n, __builtin_return_address(0)); }

void *calloc(size_t n, size_t size)
{
    if (!next_calloc) {
        resolve();
        if (!next_calloc) return boot_alloc(n * size); /* static: already zero */
    }
    if (should_fail(n * size)) return NULL;
    return next_calloc(n, size);
}

void free(void *p)
{
    if ((char *)p >= g_boot && (char *)p < g_boot + sizeof g_boot) return;
    if (!next_free) resolve();
    if (next_free) next_free(p);
}

void *realloc(void *p, size_t n)
{
    if (!next_realloc) resolve();
    if ((char *)p >= g_boot && (char *)p < g_boot + sizeof g_boot) {
        void *q = malloc(n);
        if (q) memcpy(q, p, n < 1024 ? n : 1024);
        return q;
    }
    if (n && should_fail(n)) return NULL;
    return next_realloc(p, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    if (!next_posix_memalign) resolve();
    if (should_fail(n)) return ENOMEM;
    return next_posix_memalign(out, align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    if (!next_aligned_alloc) resolve();
    if (should_fail(n)) return NULL;
    return next_aligned_alloc(align, n);
}

void *memalign(size_t align, size_t n)
{
    if (!next_memalign) resolve();
    if (should_fail(n)) return NULL;
    return next_memalign(align, n);
}

void *valloc(size_t n)
{
    if (!next_memalign) resolve();
    if (should_fail(n)) return NULL;
    return next_memalign((size_t)sysconf(_SC_PAGESIZE), n);
}

char *strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc_from(n, __builtin_return_address(0));
    if (p) memcpy(p, s, n);
    return p;
}

char *strndup(const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    char *p = malloc_from(n + 1, __builtin_return_address(0));
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* Counting starts when the store is open (KILN_FAILMALLOC_FROM=open). */
int sqlite3_open_v2(const char *path, sqlite3 **db, int flags, const char *vfs)
{
    if (!next_sqlite3_open_v2)
        next_sqlite3_open_v2 = (int (*)(const char *, sqlite3 **, int, const char *))dlsym(RTLD_NEXT, "sqlite3_open_v2");
    int rc = next_sqlite3_open_v2(path, db, flags, vfs);
    if (!rc) atomic_store(&g_counting, 1);
    return rc;
}
