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
int kdist_grad_begin(kdist *d, float *g, size_t n, size_t b) { return (void)d, (void)g, (void)n, (void)b, 0; }
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
    size_t n, bucket;        /* floats */
    int nb, started;         /* buckets of the arena (from the top), how many started */
    MPI_Request req[MAX_BUCKETS];
    int done[MAX_BUCKETS];
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

int kdist_grad_begin(kdist *d, float *g, size_t n, size_t bucket_bytes)
{
    if (!d) return 0;
    d->g = g;
    d->n = n;
    d->bucket = (bucket_bytes ? bucket_bytes : (size_t)4 << 20) / sizeof(float);
    if (d->bucket < 1024) d->bucket = 1024;
    size_t nb = (n + d->bucket - 1) / d->bucket;
    if (nb > MAX_BUCKETS) { /* a huge model: fewer, larger buckets (still fixed by n) */
        d->bucket = (n + MAX_BUCKETS - 1) / MAX_BUCKETS;
        nb = (n + d->bucket - 1) / d->bucket;
    }
    d->nb = (int)nb;
    d->started = 0;
    d->t_first = d->t_last = 0;
    memset(d->done, 0, sizeof d->done);
    return 0;
}

/* bucket k covers [lo_k, hi_k): from the top of the arena down */
static void bucket_range(const kdist *d, int k, size_t *lo, size_t *hi)
{
    size_t top = d->n - (size_t)k * d->bucket;
    *hi = top;
    *lo = top > d->bucket ? top - d->bucket : 0;
}

/* drives the reductions in flight; records completions */
static void poke(kdist *d)
{
    for (int k = 0; k < d->started; k++) {
        if (d->done[k]) continue;
        int flag = 0;
        MPI_Test(&d->req[k], &flag, MPI_STATUS_IGNORE);
        if (flag) {
            d->done[k] = 1;
            d->t_last = now_s();
        }
    }
}

void kdist_grad_ready(kdist *d, size_t lo)
{
    if (!d || !d->g) return;
    while (d->started < d->nb) {
        size_t blo, bhi;
        bucket_range(d, d->started, &blo, &bhi);
        if (blo < lo) break;
        if (!d->started) d->t_first = now_s();
        MPI_Iallreduce(MPI_IN_PLACE, d->g + blo, (int)(bhi - blo), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                       &d->req[d->started]);
        d->started++;
    }
    poke(d);
}

int kdist_grad_finish(kdist *d, double *comm_s, double *wait_s)
{
    if (comm_s) *comm_s = 0;
    if (wait_s) *wait_s = 0;
    if (!d) return 0;
    double t0 = now_s();
    int rc = 0;
    kdist_grad_ready(d, 0);
    rc = wait_all(d, d->req, d->started, "the gradient all-reduce");
    double t1 = now_s();
    d->g = NULL;
    if (rc) return rc;
    if (wait_s) *wait_s = t1 - t0;
    if (comm_s) *comm_s = t1 - d->t_first;
    return 0;
}

#endif
