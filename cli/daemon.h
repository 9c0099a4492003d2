/* daemon.h: private to kiln daemon (cli/daemon.c, daemon_spool.c,
 * daemon_job.c): the state the main thread, the spool thread and the job
 * thread share. docs/daemon.md describes the process. */
#ifndef KILN_CLI_DAEMON_H
#define KILN_CLI_DAEMON_H

#include <pthread.h>
#include <signal.h>
#include <stdint.h>

#include "cli/ctl.h"
#include "cli/train_run.h"

/* The daemon's config file (--config, JSON; reloaded on SIGHUP). */
typedef struct dconfig {
    int train_threads;         /* compute threads of a training (or vocab, kg-embed) job */
    int ingest_threads;        /* ingest workers and tokenizer threads of the spool */
    double checkpoint_minutes; /* > 0: a training job also checkpoints this often */
    int keep_best;             /* keep the checkpoint of lowest validation loss in DIR.best */
    double retry_seconds;      /* first wait before a file or job hit by a store error is retried */
} dconfig;

/* Why the running job's stop flag is set (bits). */
enum { WHY_SHUTDOWN = 1, WHY_PAUSE = 2, WHY_CANCEL = 4, WHY_TIMER = 8 };

struct kdaemon;

/* The job slot: one job runs at a time, in the job thread (one thread for
 * the daemon's life: thread-local buffers of the trainer and OpenMP's pool
 * are reused, not left behind by a thread per job). Written under
 * daemon.mu once the job thread runs it. */
typedef struct djob {
    struct kdaemon *d;
    int active;                  /* handed to the job thread, not reaped yet */
    int finished;                /* the job thread is done with it: reap it */
    int64_t id;
    char name[256], kind[16];
    char *config;                /* the stored config text (owned) */
    volatile sig_atomic_t stop;  /* read by the run at each step / batch */
    int why;                     /* WHY_* */
    int threads;
    double started, last_ckpt;   /* monotonic seconds: job start, last checkpoint (or leg start) */
    char checkpoint[4096];       /* latest checkpoint written or resumed */
    char ckdir[1024];            /* checkpoint.dir of a training job */
    int have_progress;
    ktrain_progress p;
    ktrain_run *run;             /* the leg in progress (job thread only) */
    kstore *store;               /* the job thread's own handle (keep-best), NULL until needed */
} djob;

typedef struct kdaemon {
    char db[4096], spool[4096], socket[4096], config_path[4096];
    int default_socket;          /* socket in STORE.daemon/ (made and removed by the daemon) */
    pthread_mutex_t mu;
    dconfig cfg;                 /* under mu */
    int wake_rd, wake_wr;        /* self-pipe into the main loop (signals, threads) */
    kstore *store;               /* the main thread's handle */
    double t0;                   /* monotonic start */
    int64_t started_at;          /* unix start */
    int stopping;

    /* spool (under mu) */
    pthread_t spool_tid;
    int spool_started, spool_exited;
    volatile sig_atomic_t spool_stop;
    int spool_wake;              /* eventfd: wakes the spool thread */
    int64_t n_waiting, n_done, n_failed;
    char current[1024];          /* file being processed ("" if none) */
    char phase[16];              /* ingest, tokenize, link */
    double cur_done, cur_total;  /* bytes of the current file */
    char last_error[1024];
    int64_t last_error_at;
    int catch_up;                /* tokenize (and link) the stored documents when idle */
    double catch_up_after;       /* monotonic: not before (after a store error) */

    /* jobs (under mu) */
    djob job;
    pthread_t job_tid;
    pthread_cond_t job_cv;       /* signalled when a job is handed over */
    int job_go;
    struct { int64_t id; double not_before; int tries; } backoff[64];
    int n_backoff;
    int schedule_now;

    char http_url[320];          /* the status page's address ("" without --http); set before it serves */
} kdaemon;

/* Wakes the main loop (from any thread): c names the reason ('J' job done,
 * 'S' spool exited, 'Q' queue changed). */
void daemon_wake(kdaemon *d, char c);
/* Records the latest problem for kiln status (and logs it as a warning). */
void daemon_problem(kdaemon *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A copy of the config (under mu). */
dconfig daemon_config(kdaemon *d);

/* The spool thread (daemon_spool.c). */
void *daemon_spool_main(void *arg);
/* Asks the spool thread to tokenize and link every stored document when it
 * is idle (at start, on SIGHUP, after a vocabulary job). */
void daemon_catch_up(kdaemon *d);
/* Counts the files of done/ and failed/ (their .error files left out). */
void daemon_spool_count(kdaemon *d);
/* 1 for a name the spool never touches (a writer's temporary file: .*, *~,
 * *.tmp, *.part, ...; done, failed). */
int daemon_spool_ignored(const char *name);

/* The job thread (daemon_job.c): waits for d->job_go, runs d->job, records
 * its final state, sets d->job.finished; for ever (it is never joined). */
void *daemon_job_main(void *arg);
/* Transient failures (store locked, full disk, I/O) are retried, not failed. */
int daemon_transient(int rc);

#endif
