/* dist.h: data-parallel training over MPI (Open MPI): the process group
 * of a run started by mpirun, and the few collectives the run loop needs
 * (cli/dist.c; docs/distributed.md).
 *
 * A kiln built without MPI (KILN_MPI off, or no MPI found by CMake) has the
 * same functions: kdist_open returns no group (a single process), and fails
 * with EX_CONFIG when it finds itself started by mpirun with more than one
 * rank.
 *
 * Every collective is nonblocking underneath and waited with a deadline
 * (KILN_MPI_TIMEOUT seconds, default 600): a rank that died or hangs makes
 * the others fail with EX_UNAVAILABLE and a message naming the operation,
 * never wait forever (mpirun also ends the job when a rank dies).
 *
 * Reductions: sums of floats and doubles with MPI_SUM over the group.
 * Open MPI chooses the algorithm from the group size and the message size
 * only, and the gradient buckets are fixed by the model (kmodel_set_grad_hook)
 * and the bucket size, so for a fixed number of ranks the order of the
 * additions does not depend on timing: same config, seed and ranks give
 * the same bytes. That every rank holds the same parameters is checked
 * (kdist_same_hash) every check_every steps.
 *
 * Errors: functions returning int return 0 or an EX_* code with the message
 * in kdist_error. */
#ifndef KILN_CLI_DIST_H
#define KILN_CLI_DIST_H

#include <stddef.h>
#include <stdint.h>

typedef struct kdist kdist;

/* Whether this process was started by mpirun / an MPI launcher (its
 * environment says so: OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_SIZE), and the
 * size it announces (1 when not). */
int kdist_launched(int *size);

/* Joins the group when launched by an MPI launcher with more than one rank:
 * *d = the group (MPI initialised, threads funnelled through the main
 * thread); otherwise *d = NULL (a single process). Returns 0, or EX_CONFIG
 * (launched with several ranks by a kiln built without MPI) / EX_OSERR (MPI
 * failed to start), message in err. */
int kdist_open(kdist **d, char *err, size_t errlen);
/* Leaves the group (MPI_Finalize) and frees it; NULL is fine. After a
 * failure (rc != 0) on this rank, aborts the whole job instead, so that no
 * rank waits for this one: MPI_Abort(rc). */
void kdist_close(kdist *d, int rc);

/* Sets the seconds a collective may take (the setup waits longer: rank 0
 * may be building a snapshot); returns the old value (0 for NULL). */
double kdist_set_timeout(kdist *d, double seconds);

int kdist_rank(const kdist *d);  /* 0 for NULL */
int kdist_size(const kdist *d);  /* 1 for NULL */
const char *kdist_error(const kdist *d);
/* The processor name of this rank (host) */
const char *kdist_host(const kdist *d);

/* Broadcast of n bytes from rank 0. */
int kdist_bcast(kdist *d, void *buf, size_t n, const char *what);
/* Broadcast of a string from rank 0: on other ranks *s becomes a malloc'd
 * copy (caller frees; any old value is freed); on rank 0 unchanged. */
int kdist_bcast_str(kdist *d, char **s, const char *what);
/* In-place sums over ranks. */
int kdist_sum_f64(kdist *d, double *v, size_t n, const char *what);
int kdist_max_f64(kdist *d, double *v, size_t n, const char *what);
/* All ranks hash the same 128-bit value: 1 when equal everywhere; else 0
 * and *bad = the lowest rank whose hash differs from rank 0's. */
int kdist_same_hash(kdist *d, const uint64_t h[2], int *same, int *bad);

/* Parts of a float array: rank r holds buf[displs[r], displs[r] + counts[r])
 * (N entries each). allgather: every rank gets every part; gather: rank 0
 * gets them (the others' buffers unchanged). In place. */
int kdist_allgather_f32(kdist *d, float *buf, const int *counts, const int *displs, const char *what);
int kdist_gather_f32(kdist *d, float *buf, const int *counts, const int *displs, const char *what);

/* ---- the gradient all-reduce, in buckets as backward produces them -------- */

/* Starts a pass over the gradient arena g (n floats): kdist_grad_ready(lo)
 * says every float at index >= lo is final; it starts nonblocking sums of
 * the newly final part in buckets of bucket_bytes (0: 4 MiB) and drives the
 * ones in flight. The buckets are fixed by n, split and the bucket size:
 * [split, n) cut from the top down, then [0, split) cut from split down
 * (split: the end of the word embeddings, whose range may be final early:
 * kdist_grad_ready_range; 0: none). kdist_grad_finish reduces what is left
 * and waits for all: g then holds the sum over ranks. *comm_s (optional)
 * gets the seconds the reductions were in flight (first start to last
 * completion), *wait_s the seconds finish waited (the part not hidden
 * behind backward). Every rank must make the same calls in the same order. */
int kdist_grad_begin(kdist *d, float *g, size_t n, size_t bucket_bytes, size_t split);
void kdist_grad_ready(kdist *d, size_t lo);
/* [lo, hi) is final: starts the buckets inside it. */
void kdist_grad_ready_range(kdist *d, size_t lo, size_t hi);
int kdist_grad_finish(kdist *d, double *comm_s, double *wait_s);

/* Sparse rows summed over ranks into g: every rank's n rows (width floats,
 * rows[i] belonging to row ids[i] of g; id skip gets nothing) are added to
 * g on every rank, rank 0's rows first, each rank's in order: the same
 * additions everywhere. */
int kdist_add_rows(kdist *d, float *g, const int32_t *ids, const float *rows, int n, int width, int32_t skip,
                   const char *what);

#endif
