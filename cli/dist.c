/* dist.c: the MPI process group of a data-parallel run (dist.h). Compiled
 * with KILN_HAVE_MPI when CMake found MPI; without it only kdist_launched
 * does anything and kdist_open refuses a multi-rank launch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "cli/dist.h"
#include "util/util.h"

int kdist_launched(int *size)
{
    const char *v[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        const char *s = getenv(v[i]);
        if (s && *s) {
            if (size) *size = atoi(s) > 0 ? atoi(s) : 1;
            return 1;
        }
    }
    if (getenv("PMIX_RANK")) {
        if (size) *size = 1; /* a PMIx launch that does not say the size: MPI_Init tells */
        return 1;
    }
    if (size) *size = 1;
    return 0;
}

/* g[ids[i]] += rows[i] (width floats) for i < n, skipping id skip, in order */
static void add_rows(float *g, const int32_t *ids, const float *rows, int64_t n, int width, int32_t skip)
{
    for (int64_t i = 0; i < n; i++)
        if (ids[i] != skip) {
            float *dst = g + (size_t)ids[i] * width;
            const float *src = rows + (size_t)i * width;
            for (int c = 0; c < width; c++) dst[c] += src[c];
        }
}

#ifndef KILN_HAVE_MPI

int kdist_open(kdist **d, char *err, size_t errlen)
{
    int n;
    *d = NULL;
    if (kdist_launched(&n) && n > 1) {
        kseterr(err, errlen,
                "started by an MPI launcher with %d ranks, but this kiln was built without MPI (install "
                "libopenmpi-dev and rebuild: CMake finds it, or -DKILN_MPI=ON)",
                n);
        return EX_CONFIG;
    }
    return 0;
}
void kdist_close(kdist *d, int rc) { (void)d, (void)rc; }
double kdist_set_timeout(kdist *d, double s) { return (void)d, (void)s, 0; }
int kdist_rank(const kdist *d) { return (void)d, 0; }
int kdist_size(const kdist *d) { return (void)d, 1; }
const char *kdist_error(const kdist *d) { return (void)d, ""; }
const char *kdist_host(const kdist *d) { return (void)d, ""; }
int kdist_bcast(kdist *d, void *b, size_t n, const char *w) { return (void)d, (void)b, (void)n, (void)w, 0; }
int kdist_bcast_str(kdist *d, char **s, const char *w) { return (void)d, (void)s, (void)w, 0; }
int kdist_sum_f64(kdist *d, double *v, size_t n, const char *w) { return (void)d, (void)v, (void)n, (void)w, 0; }
int kdist_max_f64(kdist *d, double *v, size_t n, const char *w) { return (void)d, (void)v, (void)n, (void)w, 0; }
int kdist_same_hash(kdist *d, const uint64_t h[2], int *same, int *bad)
{
    (void)d, (void)h;
    *same = 1;
    *bad = -1;
    return 0;
}
int kdist_grad_begin(kdist *d, float *g, size_t n, size_t b, size_t s)
{
    return (void)d, (void)g, (void)n, (void)b, (void)s, 0;
}
void kdist_grad_ready_range(kdist *d, size_t lo, size_t hi) { (void)d, (void)lo, (void)hi; }
int kdist_add_rows(kdist *d, float *g, const int32_t *ids, const float *rows, int n, int width, int32_t skip,
                   const char *what)
{
    (void)d, (void)what;
    add_rows(g, ids, rows, n, width, skip);
    return 0;
}
int kdist_allgather_f32(kdist *d, float *b, const int *c, const int *o, const char *w)
{
    return (void)d, (void)b, (void)c, (void)o, (void)w, 0;
}
int kdist_gather_f32(kdist *d, float *b, const int *c, const int *o, const char *w)
{
    return (void)d, (void)b, (void)c, (void)o, (void)w, 0;
}
void kdist_grad_ready(kdist *d, size_t lo) { (void)d, (void)lo; }
int kdist_grad_finish(kdist *d, double *c, double *w)
{
    (void)d;
    if (c) *c = 0;
    if (w) *w = 0;
    return 0;
}

#else

#include <malloc.h>
#include <mpi.h>
#include <sched.h>

#define MAX_BUCKETS 4096

struct kdist {
    int rank, size;
    double timeout;          /* seconds a collective may take */
    char host[MPI_MAX_PROCESSOR_NAME];
    char err[1024];
    /* the gradient pass */
    float *g;
    size_t n, bucket, split; /* floats */
    int nb, na, started;     /* buckets, those of [split, n) (the first na), how many started */
    size_t blo[MAX_BUCKETS], bhi[MAX_BUCKETS];
    MPI_Request req[MAX_BUCKETS];
    int done[MAX_BUCKETS], on[MAX_BUCKETS]; /* on: started */
    double t_first, t_last;  /* first start, last completion */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Waits for n requests, polling (so that no rank blocks in MPI forever):
 * past the deadline, EX_UNAVAILABLE naming what. */
static int wait_all(kdist *d, MPI_Request *r, int n, const char *what)
{
    double t0 = now_s();
    int spins = 0;
    for (;;) {
        int flag = 0;
        if (MPI_Testall(n, r, &flag, MPI_STATUSES_IGNORE) != MPI_SUCCESS) {
            kseterr(d->err, sizeof d->err, "rank %d: MPI failed in %s", d->rank, what);
            return EX_UNAVAILABLE;
        }
        if (flag) return 0;
        if (now_s() - t0 > d->timeout) {
            kseterr(d->err, sizeof d->err,
                    "rank %d: %s did not complete in %.0f s: another rank died or hangs (KILN_MPI_TIMEOUT sets "
                    "the limit)",
                    d->rank, what, d->timeout);
            return EX_UNAVAILABLE;
        }
        if (++spins > 1000) {
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL);
        } else {
            sched_yield();
        }
    }
}

int kdist_open(kdist **d, char *err, size_t errlen)
{
    int n;
    *d = NULL;
    if (!kdist_launched(&n) || n <= 1) return 0;
#if defined(M_MMAP_THRESHOLD) && defined(M_TRIM_THRESHOLD)
    /* Open MPI's non-blocking collectives (coll/libnbc) allocate a scratch
     * buffer the size of the message for every MPI_Iallreduce (each gradient
     * bucket, 4 MiB by default) and free it when it completes. With glibc's
     * defaults such a block is mmapped, or trimmed back to the kernel when
     * freed, so every step faults its pages in anew: measured on 2 ranks of
     * bench/mpi (fp32, batch 16), 45 of 340 ms per step went to page faults
     * and the first-touch copy. Blocks up to 32 MiB (glibc's largest
     * threshold) now come from the heap, and the heap is not trimmed: the
     * scratch is reused from step to step (docs/distributed.md). */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
    int provided = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        kseterr(err, errlen, "MPI_Init_thread failed");
        return EX_OSERR;
    }
    kdist *x = xcalloc(1, sizeof *x);
    MPI_Comm_rank(MPI_COMM_WORLD, &x->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &x->size);
    int hl = 0;
    MPI_Get_processor_name(x->host, &hl);
    const char *t = getenv("KILN_MPI_TIMEOUT");
    x->timeout = t && atof(t) > 0 ? atof(t) : 600.0;
    if (x->size <= 1) {
        MPI_Finalize();
        free(x);
        return 0;
    }
    *d = x;
    return 0;
}

void kdist_close(kdist *d, int rc)
{
    if (!d) return;
    if (rc) {
        fflush(NULL);
        MPI_Abort(MPI_COMM_WORLD, rc);
    }
    MPI_Finalize();
    free(d);
}

double kdist_set_timeout(kdist *d, double seconds)
{
    if (!d) return 0;
    double o = d->timeout;
    d->timeout = seconds;
    return o;
}

int kdist_rank(const kdist *d) { return d ? d->rank : 0; }
int kdist_size(const kdist *d) { return d ? d->size : 1; }
const char *kdist_error(const kdist *d) { return d ? d->err : ""; }
const char *kdist_host(const kdist *d) { return d ? d->host : ""; }

int kdist_bcast(kdist *d, void *buf, size_t n, const char *what)
{
    if (!d) return 0;
    char *p = buf;
    while (n) {
        int c = n > (size_t)1 << 30 ? 1 << 30 : (int)n;
        MPI_Request r;
        MPI_Ibcast(p, c, MPI_BYTE, 0, MPI_COMM_WORLD, &r);
        int rc = wait_all(d, &r, 1, what);
        if (rc) return rc;
        p += c;
        n -= (size_t)c;
    }
    return 0;
}

int kdist_bcast_str(kdist *d, char **s, const char *what)
{
    if (!d) return 0;
    uint64_t n = d->rank == 0 ? (*s ? strlen(*s) : 0) : 0;
    int rc = kdist_bcast(d, &n, sizeof n, what);
    if (rc) return rc;
    char *b = d->rank == 0 ? *s : xmalloc(n + 1);
    if (n && (rc = kdist_bcast(d, b, n, what))) {
        if (d->rank) free(b);
        return rc;
    }
    if (d->rank) {
        b[n] = '\0';
        free(*s);
        *s = b;
    }
    return 0;
}

static int reduce_f64(kdist *d, double *v, size_t n, MPI_Op op, const char *what)
{
    if (!d || !n) return 0;
    MPI_Request r;
    MPI_Iallreduce(MPI_IN_PLACE, v, (int)n, MPI_DOUBLE, op, MPI_COMM_WORLD, &r);
    return wait_all(d, &r, 1, what);
}

int kdist_sum_f64(kdist *d, double *v, size_t n, const char *what) { return reduce_f64(d, v, n, MPI_SUM, what); }
int kdist_max_f64(kdist *d, double *v, size_t n, const char *what) { return reduce_f64(d, v, n, MPI_MAX, what); }

int kdist_same_hash(kdist *d, const uint64_t h[2], int *same, int *bad)
{
    *same = 1;
    *bad = -1;
    if (!d) return 0;
    uint64_t *all = xcalloc((size_t)d->size * 2, sizeof *all);
    MPI_Request r;
    MPI_Iallgather(h, 2, MPI_UINT64_T, all, 2, MPI_UINT64_T, MPI_COMM_WORLD, &r);
    int rc = wait_all(d, &r, 1, "the parameter hash check");
    for (int i = 1; !rc && i < d->size; i++)
        if (all[2 * i] != all[0] || all[2 * i + 1] != all[1]) {
            *same = 0;
            *bad = i;
            break;
        }
    free(all);
    return rc;
}

int kdist_allgather_f32(kdist *d, float *buf, const int *counts, const int *displs, const char *what)
{
    if (!d) return 0;
    MPI_Request r;
    MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs, MPI_FLOAT, MPI_COMM_WORLD, &r);
    return wait_all(d, &r, 1, what);
}

int kdist_gather_f32(kdist *d, float *buf, const int *counts, const int *displs, const char *what)
{
    if (!d) return 0;
    MPI_Request r;
    if (d->rank == 0)
        MPI_Igatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs, MPI_FLOAT, 0, MPI_COMM_WORLD, &r);
    else
        MPI_Igatherv(buf + displs[d->rank], counts[d->rank], MPI_FLOAT, NULL, NULL, NULL, MPI_FLOAT, 0, MPI_COMM_WORLD,
                     &r);
    return wait_all(d, &r, 1, what);
}

/* ---- gradient buckets ---------------------------------------------------------------- */

/* cuts [lo, hi) from hi down into buckets of d->bucket floats; returns the count added */
static int cut(kdist *d, size_t lo, size_t hi)
{
    int k0 = d->nb;
    for (size_t top = hi; top > lo && d->nb < MAX_BUCKETS;) {
        size_t b = top - lo > d->bucket ? top - d->bucket : lo;
        if (d->nb == MAX_BUCKETS - 1) b = lo; /* the last one takes the rest */
        d->blo[d->nb] = b;
        d->bhi[d->nb] = top;
        d->nb++;
        top = b;
    }
    return d->nb - k0;
}

int kdist_grad_begin(kdist *d, float *g, size_t n, size_t bucket_bytes, size_t split)
{
    if (!d) return 0;
    d->g = g;
    d->n = n;
    d->split = split < n ? split : 0;
    d->bucket = (bucket_bytes ? bucket_bytes : (size_t)4 << 20) / sizeof(float);
    if (d->bucket < 1024) d->bucket = 1024;
    if (n / d->bucket > MAX_BUCKETS / 2) d->bucket = n / (MAX_BUCKETS / 2) + 1; /* a huge model: larger buckets */
    d->nb = 0;
    d->na = cut(d, d->split, n);
    cut(d, 0, d->split);
    d->started = 0;
    d->t_first = d->t_last = 0;
    memset(d->done, 0, sizeof d->done);
    memset(d->on, 0, sizeof d->on);
    return 0;
}

/* drives the reductions in flight; records completions */
static void poke(kdist *d)
{
    for (int k = 0; k < d->nb; k++) {
        if (!d->on[k] || d->done[k]) continue;
        int flag = 0;
        MPI_Test(&d->req[k], &flag, MPI_STATUS_IGNORE);
        if (flag) {
            d->done[k] = 1;
            d->t_last = now_s();
        }
    }
}

static void start(kdist *d, int k)
{
    if (!d->started) d->t_first = now_s();
    MPI_Iallreduce(MPI_IN_PLACE, d->g + d->blo[k], (int)(d->bhi[k] - d->blo[k]), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                   &d->req[k]);
    d->on[k] = 1;
    d->started++;
}

void kdist_grad_ready(kdist *d, size_t lo)
{
    if (!d || !d->g) return;
    /* from the top: buckets of [split, n), then of [0, split), each wholly at or above lo */
    for (int k = 0; k < d->nb; k++) {
        if (d->on[k]) continue;
        if (d->blo[k] < lo) {
            if (k < d->na) {
                k = d->na - 1; /* the rest of this part waits; the other part may be ready */
                continue;
            }
            break;
        }
        start(d, k);
    }
    poke(d);
}

void kdist_grad_ready_range(kdist *d, size_t lo, size_t hi)
{
    if (!d || !d->g) return;
    for (int k = 0; k < d->nb; k++)
        if (!d->on[k] && d->blo[k] >= lo && d->bhi[k] <= hi) start(d, k);
    poke(d);
}

int kdist_grad_finish(kdist *d, double *comm_s, double *wait_s)
{
    if (comm_s) *comm_s = 0;
    if (wait_s) *wait_s = 0;
    if (!d) return 0;
    double t0 = now_s();
    kdist_grad_ready(d, 0);
    MPI_Request r[MAX_BUCKETS];
    int m = 0;
    for (int k = 0; k < d->nb; k++)
        if (d->on[k]) r[m++] = d->req[k];
    int rc = wait_all(d, r, m, "the gradient all-reduce");
    double t1 = now_s();
    d->g = NULL;
    if (rc) return rc;
    if (wait_s) *wait_s = t1 - t0;
    if (comm_s) *comm_s = t1 - d->t_first;
    return 0;
}

int kdist_add_rows(kdist *d, float *g, const int32_t *ids, const float *rows, int n, int width, int32_t skip,
                   const char *what)
{
    if (!d) {
        add_rows(g, ids, rows, n, width, skip);
        return 0;
    }
    const int N = d->size;
    int *cnt = xcalloc((size_t)N * 4, sizeof *cnt), *dsp = cnt + N, *rcnt = cnt + 2 * N, *rdsp = cnt + 3 * N;
    MPI_Request q;
    MPI_Iallgather(&n, 1, MPI_INT, cnt, 1, MPI_INT, MPI_COMM_WORLD, &q);
    int rc = wait_all(d, &q, 1, what);
    int64_t tot = 0;
    for (int r = 0; r < N; r++) tot += cnt[r];
    if (!rc && tot * width > INT32_MAX) {
        kseterr(d->err, sizeof d->err, "rank %d: %s: %lld rows of %d are too many to exchange", d->rank, what,
                (long long)tot, width);
        rc = EX_SOFTWARE;
    }
    int32_t *aid = NULL;
    float *arow = NULL;
    if (!rc) {
        for (int r = 0, o = 0; r < N; r++) {
            dsp[r] = o;
            rcnt[r] = cnt[r] * width;
            rdsp[r] = o * width;
            o += cnt[r];
        }
        aid = xmalloc(((size_t)tot + 1) * sizeof *aid);
        arow = xmalloc(((size_t)tot * width + 1) * sizeof *arow);
        MPI_Request qq[2];
        MPI_Iallgatherv(ids, n, MPI_INT32_T, aid, cnt, dsp, MPI_INT32_T, MPI_COMM_WORLD, &qq[0]);
        MPI_Iallgatherv(rows, n * width, MPI_FLOAT, arow, rcnt, rdsp, MPI_FLOAT, MPI_COMM_WORLD, &qq[1]);
        rc = wait_all(d, qq, 2, what);
    }
    if (!rc) add_rows(g, aid, arow, tot, width, skip); /* rank order, then row order: the same on every rank */
    free(aid);
    free(arow);
    free(cnt);
    return rc;
}

#endif
