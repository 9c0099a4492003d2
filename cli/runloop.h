/* runloop.h: the training loop every kind of run shares (pretraining now,
 * fine-tuning next): an optimizer and schedule over a model, steps of
 * gradient accumulation over micro-batches read from a data source,
 * validation, non-finite handling, checkpoints and the callbacks a caller
 * uses to record and show progress (cli/runloop.c).
 *
 * What the loop does not know: where batches come from (krun_source), what
 * the model's loss terms are (it reports whatever kstep_result holds), the
 * store (the caller records metrics and checkpoints in its hooks).
 *
 * A step (number s, counted from 1):
 *   zero the gradients; for micro-batch a < accumulation: next batch from the
 *   source, kmodel_forward_backward with dropout key
 *   mix64(mix64(seed ^ 0xd50f0) + s - 1) + a and loss scale 1 / accumulation,
 *   terms added (kstep_add); kopt_step(s, total_steps) (clipping, schedule).
 * A checkpoint is written only between steps: the state is (parameters,
 * moments, step, tokens, seconds, source position), and nothing else
 * influences the next step, so a resumed run is bit-identical.
 *
 * Errors: functions return 0 or an EX_* code, with the message in the
 * handle (krun_error). */
#ifndef KILN_CLI_RUNLOOP_H
#define KILN_CLI_RUNLOOP_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "sampler/batch.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "trainer/model.h"

/* ---- data sources ------------------------------------------------------------ */

/* Where a run's batches come from: the pretraining sample stream
 * (cli/train_run.c), a labelled dataset, ... Position is an opaque count
 * the source alone interprets (the stream index of the next row); the
 * loop stores it in checkpoints and hands it back to seek on resume.
 * Functions returning int return 0 or an EX_* code with err filled. */
typedef struct krun_source {
    void *ctx;
    /* Restarts training batches at position pos (0 = the start). Called once
     * before the first next(). */
    int (*seek)(void *ctx, int64_t pos, char *err, size_t errlen);
    /* The next training micro-batch into *b (owned by the source, valid
     * until the next call). */
    int (*next)(void *ctx, const ksample_batch **b, char *err, size_t errlen);
    /* The position of the next training batch, and the epoch it falls in
     * (for the checkpoint). */
    void (*tell)(void *ctx, int64_t *pos, int64_t *epoch);
    /* Validation batch k (0, 1, ...) into *b, or *b = NULL past the last;
     * NULL function: no validation. The same k gives the same batch. */
    int (*valid)(void *ctx, int k, const ksample_batch **b, char *err, size_t errlen);
    /* Optional: adds terms the source measures itself on validation batch b
     * (baselines such as the unigram loss, weight 0) into base; they are
     * reported under their own names. */
    void (*valid_base)(void *ctx, const ksample_batch *b, kstep_result *base);
    /* Optional: mean real tokens (padding excluded) per training micro-batch,
     * a pure function of the data and seed (the same on resume); needed for
     * a token budget (krun_token_steps). */
    double (*batch_tokens)(void *ctx);
    /* Optional: frees ctx. */
    void (*free)(void *ctx);
} krun_source;

/* ---- options, status, hooks ------------------------------------------------------ */

typedef struct krun_opts {
    kopt_config optimizer;         /* accumulation read from here (< 1: 1) */
    uint64_t seed;                 /* dropout keys; the checkpoint's rng[0] */
    kbudget_config budget;         /* steps / tokens / seconds, 0 = none on that axis */
    int valid_every;               /* steps between validations (0: none); with a valid
                                      source, the last step is validated too */
    int valid_batches;             /* at most this many validation batches (<= 0: all) */
    int max_nonfinite;             /* stop after this many skipped steps in a row (<= 0: 8) */
    volatile sig_atomic_t *stop;   /* set: finish the step, checkpoint, return 0 */
    int64_t pause_at;              /* > 0: stop like a signal once this step is done */
    /* checkpoints */
    const char *ckpt_dir;          /* the caller's; outlives the run */
    int ckpt_every;                /* steps (0: only the last) */
    int ckpt_keep;
    /* optional: the micro-batch step instead of kmodel_forward_backward (a
     * distillation step, trainer/distill.h): the same contract (gradients
     * added, terms into *r), plus the optimizer step (0-based) and the
     * run's total; returns 0 or EX_* with err filled */
    int (*step)(void *ctx, kmodel *m, const ksample_batch *b, uint64_t key, float loss_scale, int64_t step,
                int64_t total, kstep_result *r, char *err, size_t errlen);
    void *step_ctx;
    /* data parallel (cli/dist.h; NULL: one process): the source gives this
     * rank's share of each global batch and of each validation batch; loss
     * counts and gradients are summed over ranks before the optimizer step
     * (the same step on every rank), the terms and the stop decisions
     * agreed; only rank 0 writes checkpoints and calls hooks (give the
     * others none). Not with a custom step. */
    struct kdist *dist;
    int dist_check_every;          /* steps between parameter hash checks (<= 0: 100; and the last step) */
    size_t dist_bucket_bytes;      /* gradient all-reduce bucket (0: 4 MiB) */
} krun_opts;

/* What a checkpoint holds besides the run's state (kckpt_state), the
 * caller's texts, read during krun_exec. */
typedef struct krun_meta {
    const char *config_json;       /* state.json's config */
    const char *vocab_name;        /* NULL: "" */
    const char *vocab_txt;         /* vocab.txt (or BPE: vocab.json) bytes (required by kckpt_save) */
    size_t vocab_len;
    int vocab_kind;                /* KCKPT_VOCAB_* (0: WordPiece) */
    const char *merges;            /* BPE: merges.txt bytes, else NULL */
    size_t merges_len;
    const char *extra_json;        /* state.json's extra object, or NULL */
} krun_meta;

/* Defaults: max_nonfinite 8, everything else zero / NULL. */
void krun_opts_defaults(krun_opts *o);

/* What the hooks see; pointers valid during the call. */
typedef struct krun_status {
    int64_t step, total_steps, tokens;  /* total_steps 0: unknown (a time budget only) */
    double lr, grad_norm, tokens_per_s, seconds, eta_s;  /* eta_s NaN when unknown */
    const kstep_result *train;     /* this step: the micro-batches' terms added */
    const kstep_result *val;       /* the last validation (n = 0 before the first) */
    const kstep_result *base;      /* the source's baselines on that validation */
    int validated;                 /* 1: val was measured at this step */
    int last;                      /* 1: the run's last step */
    int stopped;                   /* 1: last because of a signal, not the budget */
    const char *checkpoint;        /* the checkpoint of this step ("" in step()) */
} krun_status;

/* Callbacks, each optional, in this order after a step: step (record
 * metrics), then the checkpoint is written and checkpoint called, then
 * progress (at most every 0.2 s, and at validations and the last step). */
typedef struct krun_hooks {
    void *ctx;
    void (*step)(void *ctx, const krun_status *s);
    void (*checkpoint)(void *ctx, const krun_status *s);
    void (*progress)(void *ctx, const krun_status *s);
    /* optional, asked after step (before the checkpoint is written) and after
     * checkpoint: nonzero, an EX_* code, stops the run at once with that code
     * (a hook could not record what it must: the store failed). A step whose
     * hook failed gets no checkpoint: a resumed run does it again. */
    int (*failed)(void *ctx);
} krun_hooks;

/* ---- the run ------------------------------------------------------------------- */

typedef struct krun krun;

/* A run of model m (the caller's; must outlive the run) with data from src
 * (the run frees it with src->free at krun_free). Makes the optimizer over
 * the model's arenas. Returns NULL with err filled (EX_CONFIG-worthy: a bad
 * optimizer config) and frees src then. */
krun *krun_new(kmodel *m, const krun_opts *o, const krun_source *src, char *err, size_t errlen);
void krun_free(krun *r);

/* Restores parameters, moments, step, tokens, seconds and the source
 * position from a checkpoint, after checking it holds exactly this run's
 * tensors. Returns 0 or EX_DATAERR (message in krun_error). Without it the
 * run starts at step 0 with the model as the caller initialised it. */
int krun_restore(krun *r, const kckpt *ck);

/* Runs, writing checkpoints with meta, until a budget is met, *stop is set or pause_at is reached (0), or
 * a failure (EX_*: the model refused a batch, the source failed, the
 * gradient norm was not finite max_nonfinite steps in a row (EX_DATAERR;
 * no checkpoint is written then), a checkpoint could not be written). */
int krun_exec(krun *r, const krun_meta *meta, const krun_hooks *h);

/* Data parallel: makes every rank's state rank 0's (parameters, optimizer
 * moments, step, tokens, seconds, source position), after rank 0 restored a
 * checkpoint or initialised the model, so that no other rank needs the
 * checkpoint's files. Returns 0 or EX_* (krun_error). No-op without dist. */
int krun_sync(krun *r);

/* After krun_exec. */
typedef struct krun_result {
    int64_t steps, tokens, total_steps;
    double seconds, tokens_per_s;
    kstep_result train, val, base;  /* the last step's, the last validation's */
    char checkpoint[4096];          /* the last checkpoint written or restored ("" none) */
    int stopped;                    /* 1: *stop or pause_at ended the run early */
    /* data parallel: seconds per step the gradient all-reduce was in flight,
     * and the part of it backward did not hide (averages over this leg) */
    double comm_s, comm_wait_s;
    int hash_checks;                /* parameter hash checks passed */
} krun_result;
const krun_result *krun_get_result(const krun *r);
const char *krun_error(const krun *r);

/* Steps a token budget stands for: ceil(tokens / (accumulation *
 * batch_tokens)), at least 1. The run's horizon (the schedule's total) and
 * its end are this count (with budget.steps, the smaller of the two). */
int64_t krun_token_steps(int64_t tokens, int accumulation, double batch_tokens);

/* Refuses an OpenBLAS build that breaks determinism (the pthreads one):
 * returns 0, or EX_CONFIG with err saying which build and how to switch. */
int krun_check_blas(char *err, size_t errlen);

#endif
