/* transe.h: TransE knowledge-graph embeddings: training (self-adversarial
 * negative sampling or margin ranking, lazy Adam or Adagrad), filtered link
 * prediction evaluation (MRR, Hits@1/3/10) and scoring. Pure computation: no
 * I/O, no SQLite, no global mutable state. See the top of transe.c for the
 * loss, sampling, optimizer, initialization and invariants.
 *
 * Shapes: E = n_ent, R = n_rel, D = dim.
 *   ent (E, D) float32 row-major, rel (R, D) float32 row-major.
 * score(h, r, t) = -|| ent[h] + rel[r] - ent[t] ||_p, p = norm (1 or 2). */
#ifndef KILN_KG_TRANSE_H
#define KILN_KG_TRANSE_H

#include <stddef.h>
#include <stdint.h>

typedef struct ktriple { uint32_t h, r, t; } ktriple;

typedef struct ktranse_data {
    const ktriple *train; size_t n_train;
    const ktriple *valid; size_t n_valid;
    const ktriple *test;  size_t n_test;
    uint32_t n_ent, n_rel;           /* ids are dense: 0..n_ent-1, 0..n_rel-1 */
} ktranse_data;

enum { KTRANSE_ADAM = 0, KTRANSE_ADAGRAD = 1 };

typedef struct ktranse_opts {
    int dim;                 /* D */
    int epochs;              /* max epochs */
    float lr;
    float margin;            /* gamma */
    int negatives;           /* per query (a query is one corrupted side of a positive) */
    int norm;                /* 1 or 2 */
    int adversarial;         /* 1: self-adversarial negative sampling (RotatE), 0: margin ranking */
    float adv_temperature;   /* alpha; 0 = uniform weights over the negatives */
    int batch;               /* positive triples per optimizer step */
    uint64_t seed;
    int threads;             /* OpenMP threads (<= 0: omp_get_max_threads()); the result does not depend on it */
    int eval_every;          /* epochs between validation MRR checks (0 = never) */
    int patience;            /* early stop after this many checks without improvement (keep the best weights; 0 = never stop early) */
    size_t eval_sample;      /* validation triples used for the periodic MRR (0 = all) */
    double max_seconds;      /* stop training after this wall time (0 = no limit) */
    volatile int *stop;      /* nonzero: stop after the current batch (may be NULL) */
    void (*progress)(int epoch, double loss, double valid_mrr /* <0 if not measured */, double seconds, void *ctx);
    void *progress_ctx;
    /* kiln additions */
    int share;               /* queries sharing one set of negatives (a "chunk"); 1 = independent negatives
                              * (step memory grows as batch / share * negatives * dim) */
    int both_sides;          /* 1: every positive gives a tail query and a head query; 0: one side, Bernoulli per relation */
    int optimizer;           /* KTRANSE_ADAM (lazy: only rows in the batch) or KTRANSE_ADAGRAD */
    float init_scale;        /* uniform init in [-s, s]; 0 = (margin + 2) / dim as RotatE */
    float lr_decay;          /* lr multiplied by this at each validation check without improvement (1 = off) */
} ktranse_opts;

/* Fills o with kiln's defaults (see transe.c: "Defaults"). */
void ktranse_opts_default(ktranse_opts *o);

typedef struct keval { double mrr, hits1, hits3, hits10; size_t triples; } keval;

typedef struct ktranse_report {
    int epochs;              /* epochs completed */
    double seconds;          /* training wall time (periodic validation included) */
    double best_valid_mrr;   /* best periodic validation MRR (-1 if never measured) */
    int best_epoch;          /* epoch of that check (the returned weights), 0 if none */
    double last_loss;        /* mean batch loss of the last epoch */
} ktranse_report;

/* Trains; ent is (n_ent, dim) and rel (n_rel, dim), float32, row-major, written by the
 * function (initialized from the seed). Returns 0 or -1 (err holds a message; ent and
 * rel are then unspecified). Deterministic for (data, opts incl. seed); the result does
 * not depend on the thread count either (fixed reduction order, counter-based RNG).
 * With eval_every > 0 and a validation set the weights of the best check are returned. */
int ktranse_train(const ktranse_data *d, const ktranse_opts *o, float *ent, float *rel,
                  ktranse_report *rep, char *err, size_t errlen);

/* Filtered link prediction on queries q (usually d->test): for each triple rank the true
 * tail among all entities for (h, r, ?) and the true head for (?, r, t), filtering every
 * other triple known true in train/valid/test; ties count as the mean rank of the tied
 * positions; MRR and Hits@1/3/10 are averaged over both directions (out->triples = nq).
 * Returns 0, or -1 if an id is out of range or dim/norm is invalid. */
int ktranse_eval(const ktranse_data *d, const ktriple *q, size_t nq, const float *ent,
                 const float *rel, int dim, int norm, int threads, keval *out);

/* Scores (negative distances) of (h, r, t) for every t (or every h when heads = 1) into
 * out (n_ent): heads = 0: out[t] = -||ent[h_or_t] + rel[r] - ent[t]||;
 *              heads = 1: out[h] = -||ent[h] + rel[r] - ent[h_or_t]||. */
void ktranse_score_all(const float *ent, const float *rel, uint32_t n_ent, int dim, int norm,
                       uint32_t h_or_t, uint32_t r, int heads, float *out);

/* One batch of the training loss and its gradient, exposed for tests (the same code
 * path as ktranse_train). Queries: pos[i] with side[i] = 0 (corrupt the tail: candidates
 * replace t) or 1 (corrupt the head); queries are split into chunks of o->share
 * consecutive queries, chunk c using the negatives neg[c * o->negatives ...] (entity ids).
 * Loss = mean over the nq queries (see transe.c). gent (n_ent, dim) and grel (n_rel, dim)
 * are overwritten with the gradient (dense). Returns the loss, or NAN on bad arguments. */
double ktranse_batch_loss_grad(const ktranse_opts *o, const float *ent, const float *rel,
                               uint32_t n_ent, uint32_t n_rel, const ktriple *pos,
                               const uint8_t *side, size_t nq, const uint32_t *neg,
                               float *gent, float *grel);

#endif
