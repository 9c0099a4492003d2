/* trainer/model.h: BERT and ALBERT pretraining models (masked LM at the
 * masked positions, plus sentence-order or next-sentence prediction) as an
 * opaque handle over one parameter arena, one gradient arena and one
 * activation arena, all sized at creation (trainer/model.c).
 *
 * The architecture is Hugging Face's BertForPreTraining / AlbertForPreTraining
 * (post-LayerNorm blocks, learned positions, token types, tanh pooler on
 * [CLS], MLM head dense + activation + LayerNorm + decoder tied to the word
 * embeddings), so that the parameters export under their names
 * (trainer/tensor.h). Pure computation: no I/O.
 *
 * Thread safety: a kmodel is used by one caller at a time; its kernels run
 * on omp_get_max_threads() threads. Results do not depend on that number. */
#ifndef KILN_TRAINER_MODEL_H
#define KILN_TRAINER_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "sampler/batch.h"
#include "trainer/config.h"
#include "trainer/tensor.h"

typedef struct kmodel kmodel;

/* What one forward pass measured on a batch. */
typedef struct kstep_result {
    double loss;             /* mlm_loss + sop_loss (before loss_scale) */
    double mlm_loss;         /* sum(w * CE) / sum(w) over the masked positions with weight w > 0; 0 if none */
    int64_t mlm_correct;     /* of those, how many have the label as the first argmax */
    int64_t mlm_count;       /* masked positions with w > 0 */
    double mlm_weight;       /* sum(w) */
    double sop_loss;         /* mean CE of the sentence head over rows with label >= 0; 0 if none */
    int64_t sop_correct, sop_count;
    int64_t tokens;          /* real tokens of the batch (sum of lengths) */
} kstep_result;

/* Builds a model for batches of at most max_B rows of at most L tokens and P
 * masked positions per row (P = 0: no masked LM). with_sentence_head = 1
 * adds the pooler and the 2-way classifier (SOP or NSP; named
 * sop_classifier.* for ALBERT, cls.seq_relationship.* for BERT).
 * BERT ignores embedding_size (E = H) and num_hidden_groups (one weight set
 * per layer); ALBERT's layer i uses group i * groups / layers.
 * Parameters and gradients are zero until kmodel_init / a backward pass.
 * Returns NULL with err filled (which field is wrong, or out of memory).
 * The caller frees the model with kmodel_free. */
kmodel *kmodel_new(const kmodel_config *c, int max_B, int L, int P, int with_sentence_head, char *err,
                   size_t errlen);
void kmodel_free(kmodel *m);

/* The parameter list (state_dict order) and the arenas it indexes. Owned by
 * the model; valid until kmodel_free. Arenas are kmodel_numel floats each
 * (the tensors plus zero padding between them, 64-byte aligned). */
const ktensor *kmodel_params(const kmodel *m, int *n);
float *kmodel_param_data(kmodel *m);
float *kmodel_grad_data(kmodel *m);
size_t kmodel_numel(const kmodel *m);        /* arena length in floats */
size_t kmodel_param_count(const kmodel *m);  /* sum of the tensors' numel */
size_t kmodel_activation_bytes(const kmodel *m);
const kmodel_config *kmodel_get_config(const kmodel *m);

/* Deterministic initialization, as Hugging Face's _init_weights: weights and
 * embeddings normal(0, initializer_range) (the word embedding row of
 * pad_token_id zero), LayerNorm weights 1, biases 0. Element j of tensor t is
 * a pure function of (seed, t's name, j). Gradients are zeroed. */
void kmodel_init(kmodel *m, uint64_t seed);
void kmodel_zero_grad(kmodel *m);

/* Forward, losses and backward on batch b; gradients of loss_scale * (mlm_loss
 * + sop_loss) are ADDED to the gradient arena (zero it between optimizer
 * steps; use loss_scale = 1 / k to average k accumulated micro-batches).
 * Dropout (config probabilities) is keyed by dropout_key: the same key gives
 * the same masks. Returns 0, or EX_DATAERR when the batch does not fit the
 * model (kmodel_error says what); then parameters and gradients are unchanged. */
int kmodel_forward_backward(kmodel *m, const ksample_batch *b, uint64_t dropout_key, float loss_scale,
                            kstep_result *r);
/* Evaluation forward: no dropout, no gradients, same measures. Afterwards the
 * logits are readable with kmodel_mlm_logits / kmodel_sentence_logits. */
int kmodel_forward(kmodel *m, const ksample_batch *b, kstep_result *r);
/* After kmodel_forward of b: the V logits at masked slot p of row `row`
 * (p < b->n_masked[row]); NULL for another slot. Valid until the next pass. */
const float *kmodel_mlm_logits(const kmodel *m, int row, int p);
/* After kmodel_forward: the 2 sentence-head logits of row `row`; NULL without a head. */
const float *kmodel_sentence_logits(const kmodel *m, int row);

/* The message of the last failed call. */
const char *kmodel_error(const kmodel *m);

#endif
