/* train_run.h: one pretraining run, wired end to end: store (vocabulary,
 * snapshot, job row, metrics), the sampler stream as the run loop's data
 * source, the unigram baseline, model, budgets and signals. Used by
 * `kiln train` and by the daemon's scheduler; the loop lives in
 * cli/runloop.c, the math in trainer/, the samples in sampler/. */
#ifndef KILN_CLI_TRAIN_RUN_H
#define KILN_CLI_TRAIN_RUN_H

#include <signal.h>
#include <stdint.h>

#include "cli/cli.h"
#include "trainer/config.h"
#include "trainer/model.h"

/* What a progress callback sees. The loss terms are whatever the model
 * reports ("mlm_loss", "mlm_acc", "sop_loss" / "nsp_loss", ...; read them
 * with kstep_value). */
typedef struct ktrain_progress {
    int64_t step, total_steps, tokens;
    double loss, lr, grad_norm, tokens_per_s, eta_s;
    double val_loss;                 /* NaN until the first validation */
    kstep_result train;              /* this step's terms (its micro-batches added) */
    kstep_result val;                /* the last validation's terms (n = 0 until then) */
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
    int max_nonfinite;               /* skipped steps in a row that end the run (0: 8) */
    void (*progress)(const ktrain_progress *, void *);
    void *progress_ctx;
    int leave_state;                 /* 1: the caller writes the job's final state (the daemon) */
    const char *stop_file;           /* NULL, or a path whose existence stops the run as *stop would
                                        (the daemon's MPI jobs: checked by rank 0 after each step) */
    struct kdist *dist;              /* data parallel (cli/dist.h), NULL: one process. Rank 0 does
                                        everything with the store and the checkpoints; the others
                                        get the run's plan from it and read the snapshot file only */
    /* out */
    char error[8192];                /* the message of a failure ("" if none) */
    int64_t steps, tokens, total_steps;
    double seconds, tokens_per_s;
    double loss, val_loss;           /* the last step's loss; the last validation's (NaN: none) */
    kstep_result last;               /* the last step's terms */
    kstep_result val;                /* the last validation's terms (n = 0: none) */
    kstep_result base;               /* baselines on the last validation: "unigram_loss" */
    char checkpoint[4096];           /* the last checkpoint written or resumed ("" if none) */
    /* distillation: the teacher (distill.teacher), "" / 0 without */
    char teacher_hash[40];           /* XXH3-128 of its tensors (names and F32 bytes), hex */
    int64_t teacher_params;          /* its parameters */
    int64_t teacher_bytes;           /* its memory: weights + activations */
    int stopped;                     /* 1 when *stop ended the run early */
    int ranks;                       /* processes of the run (1 without MPI) */
    char precision[8];               /* of the matrix products: "fp32" or "bf16" (cfg.precision resolved) */
    double comm_s, comm_wait_s;      /* data parallel: all-reduce seconds per step, the part not hidden */
    int hash_checks;                 /* data parallel: parameter hash checks passed */
    /* ERNIE (a knowledge section): the pinned embedding and the entity coverage, 0 without */
    int64_t entity_embedding;        /* kg_embeddings id */
    int64_t entity_rows;             /* rows of the entity table (row 0 = no entity) */
    int64_t mentions, mentions_with_vector; /* the snapshot's documents' mentions, those whose entity has a vector */
} ktrain_run;

/* Runs (or resumes) the training; logs problems and keeps the message in
 * r->error. Returns 0 or an EX_* code; the job row is marked failed on
 * failure (unless leave_state). */
int ktrain_run_exec(ktrain_run *r);

#endif
