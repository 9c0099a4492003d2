/* train_run.h: one pretraining run, wired end to end: store (vocabulary,
 * snapshot, job row, metrics), sampler stream, model, optimizer, validation,
 * checkpoints, budgets and signals. Used by `kiln train` and by the daemon's
 * scheduler; the math lives in trainer/, the samples in sampler/. */
#ifndef KILN_CLI_TRAIN_RUN_H
#define KILN_CLI_TRAIN_RUN_H

#include <signal.h>
#include <stdint.h>

#include "cli/cli.h"
#include "trainer/config.h"

typedef struct ktrain_progress {
    int64_t step, total_steps, tokens;
    double loss, mlm_acc, sop_acc, lr, grad_norm, tokens_per_s, eta_s;
    double val_loss, val_mlm_acc;   /* NaN until the first validation */
} ktrain_progress;

typedef struct ktrain_run {
    /* in */
    ktrain_config cfg;
    const cli_common *common;        /* --db */
    int resume;                      /* continue from the latest checkpoint of cfg.checkpoint.dir */
    const char *name;                /* job name (NULL: the checkpoint folder) */
    int64_t job_id;                  /* > 0: an existing job row to report into; else one is made */
    volatile sig_atomic_t *stop;     /* set: finish the step, checkpoint, return 0 */
    int64_t pause_at;                /* > 0: stop like a signal once this step is done */
    void (*progress)(const ktrain_progress *, void *);
    void *progress_ctx;
    int leave_state;                 /* 1: the caller writes the job's final state (the daemon) */
    /* out */
    char error[8192];                /* the message of a failure ("" if none) */
    int64_t steps, tokens;
    double seconds, tokens_per_s, loss, mlm_acc, sop_acc;
    double val_loss, val_mlm_loss, val_mlm_acc, val_sop_acc, unigram_loss;
    char checkpoint[4096];           /* the last checkpoint written or resumed ("" if none) */
    int stopped;                     /* 1 when *stop ended the run early */
} ktrain_run;

/* Runs (or resumes) the training; logs problems. Returns 0 or an EX_* code. */
int ktrain_run_exec(ktrain_run *r);

#endif
