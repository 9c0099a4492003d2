/* bench/mpi/allreduce.c: MPI_Allreduce (MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD)
 * time against message size, and the latency / bandwidth of the ring model
 * fitted to it; the communication term of data-parallel training
 * (docs/distributed.md, "A scaling model").
 *
 * What it is: a standalone program, built apart from kiln
 *   mpicc -O2 -o /tmp/allreduce bench/mpi/allreduce.c
 *   mpirun -np N /tmp/allreduce [--json] [--reps R] [--warmup W]
 *          [--min-bytes A] [--max-bytes B]
 * What it is not: a test of kiln's trainer (it links nothing of kiln) nor a
 * choice among MPI's allreduce algorithms (it times whatever the library
 * picks for each size).
 *
 * Names: N ranks, n bytes of one message (count = n / 4 floats), t the
 * median over R repetitions of one allreduce's time, where one repetition's
 * time is the slowest rank's (MPI_Barrier, then MPI_Wtime around the call,
 * then the maximum over ranks).
 *
 * Per size (powers of 4 from --min-bytes 4 KiB to --max-bytes 64 MiB):
 *   algbw = n / t                      (GB/s, 1 GB = 1e9 bytes)
 *   busbw = 2 (N-1) / N * n / t        (the ring-allreduce convention: the
 *                                       bytes each rank sends and receives)
 * Model fitted over the sizes:
 *   t(n) = 2 (N-1) alpha + 2 (N-1) / N * n / beta
 * which is linear in (alpha, 1/beta): t = c0 + c1 n with c0 = 2 (N-1) alpha,
 * c1 = 2 (N-1) / (N beta). Two least-squares fits are printed: relative
 * error (weights 1 / t^2, every size counts alike; the one to use) and
 * absolute error (dominated by the largest sizes; alpha may come out
 * negative or meaningless there).
 *
 * Output: a table on rank 0's stdout, or with --json one JSON object per
 * line: {"kind": "size", ...} per size, then {"kind": "fit", ...}.
 * Each result is checked (every rank fills its buffer with rank + 1; every
 * element of the sum must be N (N + 1) / 2); a wrong sum exits 1.
 */
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MIN_BYTES ((size_t)4 << 10)  /* 4 KiB */
#define DEFAULT_MAX_BYTES ((size_t)64 << 20) /* 64 MiB */
#define MAX_SIZES 32

typedef struct options {
    int json;
    int reps;   /* timed repetitions per size */
    int warmup; /* untimed repetitions before them */
    size_t min_bytes, max_bytes;
} options;

/* One size's result. */
typedef struct result {
    size_t bytes;
    double median_s, min_s, max_s; /* over the repetitions */
} result;

/* A least-squares fit of t = c0 + c1 n; alpha in seconds, beta in bytes/s. */
typedef struct fit {
    double alpha, beta;
    int ok; /* 0: singular system or N = 1 */
} fit;

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Parses argv into o. Returns 0; 1 after --help (usage printed); or -1
 * with a message on rank 0's stderr. */
static int parse(int argc, char **argv, options *o, int rank)
{
    o->json = 0;
    o->reps = 20;
    o->warmup = 5;
    o->min_bytes = DEFAULT_MIN_BYTES;
    o->max_bytes = DEFAULT_MAX_BYTES;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--json")) {
            o->json = 1;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            if (rank == 0)
                printf("usage: %s [--json] [--reps R] [--warmup W] [--min-bytes A] [--max-bytes B]\n"
                       "  sizes: A, 4A, 16A, ... up to B (defaults 4096 .. 67108864), R repetitions (20)\n"
                       "  after W untimed ones (5)\n",
                       argv[0]);
            return 1;
        }
        long long x = v ? strtoll(v, &end, 10) : -1;
        if (!v || !*v || *end || x < 0) x = -1;
        if (!strcmp(a, "--reps") && x >= 1 && x <= 100000) o->reps = (int)x;
        else if (!strcmp(a, "--warmup") && x >= 0 && x <= 100000) o->warmup = (int)x;
        else if (!strcmp(a, "--min-bytes") && x >= 4) o->min_bytes = (size_t)x;
        else if (!strcmp(a, "--max-bytes") && x >= 4 && x <= (long long)INT_MAX * 4) o->max_bytes = (size_t)x;
        else {
            if (rank == 0) fprintf(stderr, "allreduce: bad option or value: '%s %s' (try --help)\n", a, v ? v : "");
            return -1;
        }
        i++;
    }
    if (o->min_bytes % 4 || o->max_bytes % 4 || o->min_bytes > o->max_bytes) {
        if (rank == 0) fprintf(stderr, "allreduce: sizes must be multiples of 4 bytes with min <= max\n");
        return -1;
    }
    return 0;
}

/* Times one size: warm-up, then reps repetitions, each the slowest rank's
 * time. buf (count floats, send) and out (count floats, receive) are the
 * caller's. Returns 0, or -1 when a sum is wrong (message on stderr). */
static int time_size(float *buf, float *out, int count, const options *o, int nranks, int rank, double *times,
                     result *r)
{
    const float want = (float)nranks * (float)(nranks + 1) / 2.0f;
    for (int i = 0; i < count; i++) buf[i] = (float)(rank + 1);
    for (int w = 0; w < o->warmup; w++) MPI_Allreduce(buf, out, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    for (int k = 0; k < o->reps; k++) {
        MPI_Barrier(MPI_COMM_WORLD);
        const double t0 = MPI_Wtime();
        MPI_Allreduce(buf, out, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        const double dt = MPI_Wtime() - t0;
        MPI_Allreduce(&dt, &times[k], 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    }
    int bad = 0;
    for (int i = 0; i < count; i++)
        if (out[i] != want) {
            bad = 1;
            fprintf(stderr, "allreduce: rank %d: element %d of %d is %g, expected %g\n", rank, i, count,
                    (double)out[i], (double)want);
            break;
        }
    int anybad = 0;
    MPI_Allreduce(&bad, &anybad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (anybad) return -1;
    qsort(times, (size_t)o->reps, sizeof *times, cmp_double);
    r->bytes = (size_t)count * sizeof(float);
    r->min_s = times[0];
    r->max_s = times[o->reps - 1];
    r->median_s = o->reps % 2 ? times[o->reps / 2] : 0.5 * (times[o->reps / 2 - 1] + times[o->reps / 2]);
    return 0;
}

/* Weighted least squares of t = c0 + c1 n over the k results, weight w_i
 * (relative: 1 / t_i^2; absolute: 1), mapped to alpha and beta for N ranks. */
static fit fit_model(const result *r, int k, int nranks, int relative)
{
    fit f = {0, 0, 0};
    if (nranks < 2 || k < 2) return f;
    double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int i = 0; i < k; i++) {
        const double x = (double)r[i].bytes, y = r[i].median_s;
        const double w = relative ? 1.0 / (y * y) : 1.0;
        sw += w;
        sx += w * x;
        sy += w * y;
        sxx += w * x * x;
        sxy += w * x * y;
    }
    const double det = sw * sxx - sx * sx;
    if (det == 0) return f;
    const double c1 = (sw * sxy - sx * sy) / det;
    const double c0 = (sy - c1 * sx) / sw;
    f.alpha = c0 / (2.0 * (nranks - 1));
    f.beta = c1 > 0 ? 2.0 * (nranks - 1) / ((double)nranks * c1) : 0;
    f.ok = c1 > 0;
    return f;
}

static double busbw(const result *r, int nranks)
{
    return 2.0 * (nranks - 1) / nranks * (double)r->bytes / r->median_s / 1e9;
}

static double model_s(const fit *f, size_t bytes, int nranks)
{
    return 2.0 * (nranks - 1) * f->alpha + 2.0 * (nranks - 1) / nranks * (double)bytes / f->beta;
}

static void print_table(const result *r, int k, int nranks, const options *o, const fit *rel, const fit *abs_)
{
    char name[MPI_MAX_PROCESSOR_NAME];
    int len = 0;
    MPI_Get_processor_name(name, &len);
    printf("# MPI_Allreduce MPI_FLOAT MPI_SUM, %d ranks (rank 0 on %s), %d reps after %d warm-up, median\n",
           nranks, name, o->reps, o->warmup);
    printf("# busbw = 2(N-1)/N * bytes / s; GB/s = 1e9 bytes/s; model = relative-error fit below\n");
    printf("%12s %14s %14s %14s %10s %10s %14s\n", "bytes", "median_s", "min_s", "max_s", "algbw_GB/s",
           "busbw_GB/s", "model_s");
    for (int i = 0; i < k; i++)
        printf("%12zu %14.9f %14.9f %14.9f %10.3f %10.3f %14.9f\n", r[i].bytes, r[i].median_s, r[i].min_s,
               r[i].max_s, (double)r[i].bytes / r[i].median_s / 1e9, busbw(&r[i], nranks),
               rel->ok ? model_s(rel, r[i].bytes, nranks) : 0.0);
    if (nranks < 2) {
        printf("# fit: needs at least 2 ranks\n");
        return;
    }
    printf("# fit t(n) = 2(N-1)*alpha + 2(N-1)/N * n / beta\n");
    if (rel->ok)
        printf("# relative-error least squares: alpha = %.3f us, beta = %.3f GB/s\n", rel->alpha * 1e6,
               rel->beta / 1e9);
    else printf("# relative-error least squares: no fit (time does not grow with size)\n");
    if (abs_->ok)
        printf("# absolute-error least squares: alpha = %.3f us, beta = %.3f GB/s\n", abs_->alpha * 1e6,
               abs_->beta / 1e9);
    else printf("# absolute-error least squares: no fit (time does not grow with size)\n");
}

static void print_json(const result *r, int k, int nranks, const options *o, const fit *rel, const fit *abs_)
{
    for (int i = 0; i < k; i++)
        printf("{\"kind\": \"size\", \"ranks\": %d, \"bytes\": %zu, \"count\": %zu, \"reps\": %d, "
               "\"median_s\": %.9g, \"min_s\": %.9g, \"max_s\": %.9g, \"algbw_gbs\": %.6g, \"busbw_gbs\": %.6g}\n",
               nranks, r[i].bytes, r[i].bytes / sizeof(float), o->reps, r[i].median_s, r[i].min_s, r[i].max_s,
               (double)r[i].bytes / r[i].median_s / 1e9, busbw(&r[i], nranks));
    printf("{\"kind\": \"fit\", \"ranks\": %d, \"model\": \"t = 2(N-1)*alpha + 2(N-1)/N*n/beta\"", nranks);
    if (rel->ok) printf(", \"alpha_s\": %.6g, \"beta_gbs\": %.6g", rel->alpha, rel->beta / 1e9);
    else printf(", \"alpha_s\": null, \"beta_gbs\": null");
    if (abs_->ok) printf(", \"abs_alpha_s\": %.6g, \"abs_beta_gbs\": %.6g}\n", abs_->alpha, abs_->beta / 1e9);
    else printf(", \"abs_alpha_s\": null, \"abs_beta_gbs\": null}\n");
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank = 0, nranks = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);

    options o;
    const int prc = parse(argc, argv, &o, rank);
    if (prc) {
        MPI_Finalize();
        return prc < 0 ? 2 : 0;
    }

    const int maxcount = (int)(o.max_bytes / sizeof(float));
    float *buf = malloc((size_t)maxcount * sizeof *buf);
    float *out = malloc((size_t)maxcount * sizeof *out);
    double *times = malloc((size_t)o.reps * sizeof *times);
    int nomem = !buf || !out || !times, anynomem = 0;
    MPI_Allreduce(&nomem, &anynomem, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (anynomem) {
        if (nomem) fprintf(stderr, "allreduce: rank %d: out of memory for 2 x %zu bytes\n", rank, o.max_bytes);
        free(buf), free(out), free(times);
        MPI_Finalize();
        return 1;
    }
    memset(out, 0, (size_t)maxcount * sizeof *out); /* touch the pages before timing */

    result res[MAX_SIZES];
    int k = 0, rc = 0;
    for (size_t n = o.min_bytes; n <= o.max_bytes && k < MAX_SIZES; n *= 4) {
        if (time_size(buf, out, (int)(n / sizeof(float)), &o, nranks, rank, times, &res[k])) {
            rc = 1;
            break;
        }
        k++;
        if (n > o.max_bytes / 4) break; /* n * 4 would pass max (or overflow) */
    }

    if (rank == 0 && !rc) {
        const fit rel = fit_model(res, k, nranks, 1), abs_ = fit_model(res, k, nranks, 0);
        if (o.json) print_json(res, k, nranks, &o, &rel, &abs_);
        else print_table(res, k, nranks, &o, &rel, &abs_);
    }
    free(buf), free(out), free(times);
    MPI_Finalize();
    return rc;
}
