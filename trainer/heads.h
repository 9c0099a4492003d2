/* trainer/heads.h: the task heads that sit on top of an encoder or decoder
 * stack, as forward / loss / backward kernels on caller buffers
 * (trainer/heads.c):
 *   kcls_head  sequence classification or regression on the pooled output
 *              (Hugging Face BertForSequenceClassification after the pooler);
 *   kbin_head  per-token replaced / original discriminator
 *              (ELECTRA's ElectraDiscriminatorPredictions);
 *   klm_head   softmax over the whole vocabulary at every row, the
 *              vocabulary taken in chunks so that the N x V logits are never
 *              held (GPT-2's tied lm_head; masked LM over all positions).
 * What it is not: the model wiring (model.c owns the buffers and calls these).
 * No allocation: every buffer is the caller's, shapes below; the only other
 * memory is kgemm's per-thread workspace (kernels.h).
 *
 * Dimension letters (as kernels.h): B sequences, N rows (packed tokens),
 * H hidden width, NL labels of the classifier, V vocabulary, C columns of a
 * vocabulary chunk (klm_head). Matrices row-major, linear weights [out, in].
 *
 * Conventions (kernels.h): backward functions ACCUMULATE into parameter
 * gradients; input gradients are overwritten, or accumulated with acc = 1.
 * Results are bit-identical for any thread count. Dropout is counter-based
 * (kdropout: element index and key). A gradient pointer may be NULL to skip
 * that gradient (frozen parameter).
 *
 * Losses are means over the rows that carry a label; each loss call returns a
 * khead_loss with the sum and the count as well, so that micro-batches can be
 * combined into a batch mean: pass loss_scale = scale * count_micro /
 * count_batch (or, for klm_head, gscale = scale / count_batch per row).
 */
#ifndef KILN_TRAINER_HEADS_H
#define KILN_TRAINER_HEADS_H

#include <stddef.h>
#include <stdint.h>

/* What a loss call measured. Fields a head does not compute are 0. */
typedef struct khead_loss {
    double sum;    /* sum of the per-row losses over the counted rows */
    float mean;    /* sum / count (0 when count == 0) */
    int count;     /* rows with a label (label >= 0, or a non-NaN target) */
    int correct;   /* counted rows whose prediction equals the label (not for regression) */
    int tp;        /* kbin_head: counted rows predicted 1 with label 1 */
    int pred_pos;  /* kbin_head: counted rows predicted 1 (logit > 0) */
    int act_pos;   /* kbin_head: counted rows with label 1 */
} khead_loss;

/* ---- sequence classification / regression --------------------------------- */

/* z = dropout(pooled) (p, key; element b H + c), logits = z w^T + b.
 * NL >= 2: single-label classification, loss = mean softmax cross-entropy
 * over rows with labels[b] >= 0 (int32 (B), each < NL; -1 = ignore).
 * NL == 1: regression, loss = mean (logit - target)^2 over rows whose
 * targets[b] (float (B)) is not NaN (torch.nn.MSELoss). */
typedef struct kcls_head {
    int B, H, NL;
    float p;               /* dropout probability on pooled (0 at evaluation) */
    uint64_t key;          /* dropout stream of this step */
    const float *w, *b;    /* (NL, H), (NL) */
    float *dw, *db;        /* (NL, H), (NL): accumulated; NULL = skip */
    float *z;              /* (B, H) the dropped-out pooled rows, kept for backward */
    float *logits;         /* (B, NL) after forward; never overwritten by the loss */
    float *dlogits;        /* (B, NL) written by the loss when grad is set */
} kcls_head;
/* pooled (B, H): the pooler output. k->z may equal pooled only when the caller
 * no longer needs pooled (the pooler backward does). */
void kcls_head_forward(kcls_head *k, const float *pooled);
/* Loss of k->logits. labels (B) for NL >= 2 (targets unused, may be NULL),
 * targets (B) for NL == 1 (labels unused, may be NULL). correct (B) or NULL:
 * per-row 1 when the first argmax equals the label (0 for ignored rows and for
 * regression). With grad, k->dlogits = loss_scale * d(mean loss)/d(logits)
 * (zero rows for ignored rows; all zero when count == 0). */
khead_loss kcls_head_loss(kcls_head *k, const int32_t *labels, const float *targets, uint8_t *correct,
                          float loss_scale, int grad);
/* From k->dlogits: dw += dlogits^T z, db += column sums, and dpooled (B, H) =
 * dropout(dlogits w) with the forward's mask (overwritten). */
void kcls_head_backward(kcls_head *k, float *dpooled);

/* ---- per-token binary head (ELECTRA discriminator) ------------------------ */

/* pre = x w^T + b (N, H); h = gelu(pre) (act: KGELU_ERF or KGELU_TANH);
 * logit = h wp^T + bp (N). Loss: mean binary cross-entropy with logits over
 * tokens with labels[n] >= 0 (1 replaced, 0 original, -1 ignore; any other
 * positive label counts as 1), computed as
 * max(z, 0) - z y + log1p(exp(-|z|)). The prediction is 1 when logit > 0
 * (sigmoid > 0.5). */
typedef struct kbin_head {
    int N, H, act;
    const float *w, *b;    /* (H, H), (H) */
    const float *wp, *bp;  /* (1, H), (1) */
    float *dw, *db, *dwp, *dbp; /* same shapes: accumulated; NULL = skip */
    float *pre, *h;        /* (N, H) each, kept for backward */
    float *logit;          /* (N) after forward */
    float *dlogit;         /* (N) written by the loss when grad is set */
    float *dh;             /* (N, H) backward scratch */
} kbin_head;
/* x (N, H): the final hidden states of the N packed tokens. */
void kbin_head_forward(kbin_head *k, const float *x);
/* Loss of k->logit against labels (N); accuracy and the counts for precision
 * and recall of label 1 in the result. With grad, k->dlogit = loss_scale *
 * d(mean loss)/d(logit) = loss_scale (sigmoid(z) - y) / count (0 for ignored). */
khead_loss kbin_head_loss(kbin_head *k, const int32_t *labels, float loss_scale, int grad);
/* From k->dlogit: parameter gradients accumulate; dx (N, H) = (or += with
 * acc) the gradient of x; k->dh is clobbered. */
void kbin_head_backward(kbin_head *k, float *dx, int acc, const float *x);

/* ---- LM head over all rows, vocabulary in chunks -------------------------- */

/* logits = x w^T + bias (N, V), w the (tied) word embeddings (V, H), bias (V)
 * or NULL (GPT-2). Loss = mean over rows with labels[n] >= 0 (int32 (N), each
 * < V; -1 = ignore) of logsumexp(logits_n) - logits_n[label_n].
 * The vocabulary is taken C columns at a time (the last chunk may be
 * narrower): the forward keeps per row a running maximum and sum of exp
 * (online logsumexp, the sum in double), the label's logit and the first
 * argmax; the backward recomputes each chunk's logits and turns them into
 * dlogits = (softmax - onehot) gscale[n] with the saved logsumexp.
 * Memory: N C floats of chunk scratch plus 4 N doubles / floats of row state,
 * instead of N V. The chunk size changes only the rounding (of the sum of
 * exps and of dx, summed over chunks in chunk order); threads never change it. */
typedef struct klm_head {
    int N, H, V, C;        /* C >= 1: columns per chunk (e.g. 4096; C >= V is one chunk) */
    const float *w;        /* (V, H) */
    const float *bias;     /* (V) or NULL */
    float *dw, *dbias;     /* (V, H), (V): accumulated; NULL = skip */
    float *chunk;          /* (N, C) scratch: one chunk of logits, then of dlogits */
    float *keep;           /* (N, V) or NULL: klm_head_loss keeps every chunk's logits here (chunk
                              [j0, j0 + c) as the (N, c) block at keep + N j0) and klm_head_backward
                              turns them into dlogits in place instead of recomputing them (the same
                              bytes: one product fewer per chunk, N V floats more) */
    double *run_sum;       /* (N) forward scratch: running sum of exp(logit - run_max) */
    float *run_max;        /* (N) forward scratch: running maximum */
    float *lse;            /* (N) forward output: logsumexp of the row (0 for ignored rows), used by backward */
    float *label_logit;    /* (N) forward output: logit of the label (0 for ignored rows) */
    int32_t *argmax;       /* (N) forward output: first index of the row maximum (-1 for ignored rows) */
} klm_head;
/* Forward and loss over the rows x (N, H) (no gradient). */
khead_loss klm_head_loss(klm_head *k, const float *x, const int32_t *labels);
/* After klm_head_loss on the same x and labels: dw, dbias accumulate;
 * dx (N, H) = (or += with acc) the gradient of sum_n gscale[n] loss_n
 * (gscale (N); for the mean loss times s: gscale[n] = s / count). dx may be
 * NULL (then only the parameter gradients). Rows with labels < 0 contribute
 * nothing (their dx rows are 0, or unchanged with acc). */
void klm_head_backward(klm_head *k, float *dx, int acc, const float *x, const int32_t *labels, const float *gscale);
/* Logits of R selected rows for generation: out (R, V) = x[rows[r]] w^T + bias,
 * x (N', H) any rows, rows (R) indices into x. Uses k->w, k->bias, k->H, k->V
 * only (no scratch). */
void klm_head_logits(const klm_head *k, float *out, const float *x, const int32_t *rows, int R);

#endif
