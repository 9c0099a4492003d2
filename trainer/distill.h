/* trainer/distill.h: knowledge distillation steps (trainer/distill.c). A
 * teacher model (inference only: no gradients, no optimizer state) and a
 * student model (training) run the same batch in the same step; the
 * teacher's outputs form the student's losses (docs/distill.md):
 *
 * DistilBERT (Sanh et al. 2019), the triple loss
 *   alpha_ce ce_loss + alpha_mlm mlm_loss + alpha_cos cos_loss
 *   ce_loss  = T^2 KL(softmax(t / T) || softmax(s / T)), mean over the
 *              masked positions (positions "all": every real token);
 *   mlm_loss = the student's masked-LM cross-entropy;
 *   cos_loss = mean over real tokens of 1 - cos(student last hidden state,
 *              teacher last hidden state) (same width).
 * TinyBERT (Jiao et al. 2020), layer-wise, k = teacher layers / student
 * layers (an integer):
 *   att_loss = sum over student layers m = 1 .. M of the mean squared
 *              difference of the pre-softmax attention scores against teacher
 *              layer m k (same heads), over the real entries;
 *   hid_loss = sum over m = 1 .. M of mean((h_m W_h^T + b_h - teacher h_{m k})^2)
 *   emb_loss = mean((h_0 W_e^T + b_e - teacher h_0)^2) (the embedding outputs)
 *   ce_loss  = the prediction-layer soft cross-entropy at T, as KL (the
 *              teacher's entropy has no gradient), T^2 KL weighted
 *              alpha_pred / T^2;
 *   stage intermediate: alpha_att att + alpha_hid hid + alpha_emb emb;
 *   stage prediction: alpha_pred ce; both: intermediate for the first
 *   intermediate_fraction of the steps, then prediction; in every stage
 *   + alpha_mlm mlm (0 by default for TinyBERT).
 * W_h, W_e are the student's training-only registry tensors
 * distill.fit_dense.* and distill.fit_emb.* (kmodel_spec.fit_width), so the
 * optimizer, checkpoints and resume treat them as any parameter; exports
 * leave them out.
 *
 * Terms reported (kstep_result): mlm_loss, mlm_acc, ce_loss, teacher_agree
 * (the student's top-1 at the counted positions equals the teacher's), and
 * cos_loss or att_loss, hid_loss, emb_loss.
 *
 * Pure computation on the two models; no I/O. A distiller is used by one
 * caller at a time. */
#ifndef KILN_TRAINER_DISTILL_H
#define KILN_TRAINER_DISTILL_H

#include <stddef.h>
#include <stdint.h>

#include "sampler/batch.h"
#include "trainer/config.h"
#include "trainer/model.h"

typedef struct kdistiller kdistiller;

/* A distiller of student (a training model with the MLM head; for positions
 * "all" made with P = the sequence length) from teacher (a model with the
 * MLM head, usually inference; the same P). Both stay the caller's and must
 * outlive the distiller. Checks the pairing the method needs (vocabulary,
 * widths, heads, layer ratio, the student's projections). Returns NULL with
 * err filled (a config error: what does not match). */
kdistiller *kdistill_new(kmodel *student, kmodel *teacher, const kdistill_config *c, char *err, size_t errlen);
void kdistill_free(kdistiller *d);

/* The stage of optimizer step `step` (0-based) of `total` (TinyBERT's
 * both: intermediate below intermediate_fraction * total); DistilBERT: 0. */
int kdistill_stage(const kdistiller *d, int64_t step, int64_t total);

/* One micro-batch: teacher forward (evaluation mode), student forward (train:
 * dropout keyed by key), the losses into *r, and with train the student's
 * gradients ADDED (loss_scale as kmodel_loss). step / total choose the
 * TinyBERT stage. Returns 0, or EX_DATAERR (the batch does not fit a model)
 * / EX_SOFTWARE with kdistill_error saying which. */
int kdistill_step(kdistiller *d, const ksample_batch *b, int train, uint64_t key, float loss_scale, int64_t step,
                  int64_t total, kstep_result *r);
const char *kdistill_error(const kdistiller *d);

/* DistilBERT's default initialization: student layer m (0-based) starts
 * from teacher layer floor(m NLt / NLs): every other layer of a twice deeper
 * teacher ([0, 2, 4] of 6). out (NLs). */
void kdistill_init_layers(int teacher_layers, int student_layers, int *out);

#endif
