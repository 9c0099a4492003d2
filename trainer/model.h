/* trainer/model.h: models of the BERT family built from blocks and heads
 * (trainer/model.c), as an opaque handle over one parameter arena, one
 * gradient arena and one activation arena, all sized at creation.
 *
 * A model is a composition (docs/architecture.md, "Trainer"):
 *   embeddings block (word + position + token type, LayerNorm, dropout,
 *     optional E -> H projection)
 *   NL encoder layer blocks (post-LN as BERT / ALBERT, or pre-LN as GPT-2;
 *     bidirectional or causal attention; ALBERT shares weight groups)
 *   heads on the last hidden state, chosen by bits (KHEAD_*):
 *     masked LM at the masked positions, sentence pair (SOP / NSP),
 *     sequence classification (N labels, or regression), per-token binary
 *     (ELECTRA's discriminator), LM over all positions (vocabulary in chunks).
 * model.type electra with the MLM and token heads is ELECTRA's generator +
 * discriminator pair (trainer/electra.c): two encoders sharing their
 * embeddings, one registry, one arena, one step (the config's generator_*
 * fields shape the generator). With other heads it is one ELECTRA encoder
 * (ElectraModel) with them: the MLM head alone is the generator
 * (ElectraForMaskedLM, built from the generator's config), the token head
 * the discriminator, the classification head ElectraForSequenceClassification.
 * model.type distilbert is DistilBertForMaskedLM: BERT's post-LN layers
 * under DistilBERT's names, no token types (a batch's type ids are
 * ignored), no pooler, no dropout after the attention output, the MLM head
 * (build_distilbert); with the classification head instead,
 * DistilBertForSequenceClassification: [CLS] -> pre_classifier (H, H) ->
 * ReLU -> dropout (seq_classif_dropout) -> classifier (no tanh pooler).
 * The parameter list is the registry (trainer/registry.h): one entry per
 * tensor with its Hugging Face name, shape, flags and init; checkpoints,
 * export, import and the PyTorch reference read the same list.
 *
 * A step is three calls: kmodel_forward (activations kept for backward in
 * train mode), kmodel_loss (the heads' loss terms; in train mode the heads'
 * output gradients are formed), kmodel_backward (gradients ADDED to the
 * gradient arena). Between forward and backward the hidden states and
 * attention probabilities of every layer are readable and a gradient can be
 * injected at any layer's output (distillation). kmodel_forward_backward is
 * the three in a row. A model made with spec.inference = 1 has no gradient
 * arena and no backward buffers.
 *
 * Thread safety: a kmodel is used by one caller at a time; its kernels run
 * on omp_get_max_threads() threads. Results do not depend on that number.
 * Two models may step concurrently (each owns its scratch). Pure
 * computation: no I/O. */
#ifndef KILN_TRAINER_MODEL_H
#define KILN_TRAINER_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "sampler/batch.h"
#include "trainer/config.h"
#include "trainer/registry.h"
#include "trainer/tensor.h"

typedef struct kmodel kmodel;

/* ---- loss terms ----------------------------------------------------------- */

#define KTERM_MAX 16
#define KTERM_NAME_MAX 32

/* One named measure of a pass, kept as a (sum, count) pair so that terms of
 * micro-batches and validation batches add up exactly: value = sum / count
 * (NaN when count == 0). weight > 0 marks a loss term: the pass's loss is
 * sum over loss terms of weight * value, and backward differentiates that.
 * Metrics (accuracies, counts) have weight 0. */
typedef struct kterm {
    char name[KTERM_NAME_MAX]; /* "mlm_loss", "mlm_acc", "sop_loss", "cls_loss", ... */
    double sum, count;
    double weight;
} kterm;

typedef struct kstep_result {
    double loss;             /* sum of weight * value over the loss terms */
    int64_t tokens;          /* real tokens of the batch (sum of lengths) */
    int n;
    kterm t[KTERM_MAX];
} kstep_result;

/* value of term `name` in r, NaN when absent or count 0 */
double kstep_value(const kstep_result *r, const char *name);
/* r->loss = sum over loss terms of weight * (sum / count) (terms of count 0
 * count nothing) */
void kstep_total_loss(kstep_result *r);
/* adds the terms of b into a (by name, appending new ones) and the tokens;
 * a->loss is recomputed from the summed terms */
void kstep_add(kstep_result *a, const kstep_result *b);

/* ---- construction ----------------------------------------------------------- */

/* Heads (bits). KHEAD_SENTENCE and KHEAD_CLASSIFY read the pooled [CLS]
 * (tanh pooler; ELECTRA's and DistilBERT's classifiers their own dense
 * layer on [CLS]: GELU, ReLU); KHEAD_MLM reads the masked positions of the batch;
 * KHEAD_TOKEN reads every real token; KHEAD_LM predicts token t + 1 at
 * every real token t (causal models). */
enum {
    KHEAD_MLM = 1 << 0,
    KHEAD_SENTENCE = 1 << 1, /* 2-way: SOP (ALBERT names) or NSP (BERT names) */
    KHEAD_CLASSIFY = 1 << 2, /* num_labels > 1: softmax CE; num_labels == 1: MSE regression */
    KHEAD_TOKEN = 1 << 3,    /* per-token binary (replaced / original), BCE over real tokens */
    KHEAD_LM = 1 << 4,       /* next-token LM over all positions, vocabulary in chunks */
    KHEAD_DEA = 1 << 5,      /* ERNIE's dEA: the original entity of each aligned token among the batch's */
};

typedef struct kmodel_spec {
    int heads;               /* KHEAD_* bits */
    int max_B, L;            /* largest batch: rows, sequence length */
    int P;                   /* masked slots per row (KHEAD_MLM), else 0 */
    int num_labels;          /* KHEAD_CLASSIFY: classes (>= 2) or 1 for regression */
    double classifier_dropout; /* on the pooled output (KHEAD_CLASSIFY); < 0: transformers' default,
                                  hidden_dropout_prob (DistilBERT: the config's seq_classif_dropout) */
    int pre_ln;              /* 1: pre-LayerNorm layers and a final LayerNorm (GPT-2) */
    int causal;              /* 1: row i attends to rows <= i */
    int inference;           /* 1: no gradients, no backward buffers; only kmodel_forward / kmodel_loss */
    int lm_chunk;            /* KHEAD_LM: vocabulary columns per chunk (0: 4096) */
    int fit_width;           /* > 0: TinyBERT's training-only projections to a teacher of this width,
                                last in the registry: distill.fit_emb.{weight,bias} (fit_width, H), (fit_width)
                                for the embedding output, distill.fit_dense.* for the layers' hidden states
                                (never exported: a spec without them reads the same checkpoint) */
} kmodel_spec;

/* A training model with the LM head keeps its (max_B L, V) logits from the
 * loss to the backward pass when they take at most this many bytes (one
 * product per vocabulary chunk fewer; the same bytes either way), else
 * backward recomputes them chunk by chunk. */
#define KMODEL_LM_KEEP_MAX ((size_t)512 << 20)

/* The spec of today's pretraining models: heads MLM (P > 0) and/or sentence. */
kmodel_spec kmodel_spec_pretrain(int max_B, int L, int P, int with_sentence_head);
/* The pretraining spec of model config c: kmodel_spec_pretrain, plus the
 * token head for ELECTRA (the pair). */
kmodel_spec kmodel_spec_pretrain_of(const kmodel_config *c, int max_B, int L, int P, int with_sentence_head);

/* Builds a model from the config and the spec. BERT ignores embedding_size
 * (E = H) and num_hidden_groups (one weight set per layer); ALBERT's layer i
 * uses group i * groups / layers. Parameters and gradients are zero until
 * kmodel_init / a backward pass. Returns NULL with err filled (which field is
 * wrong, or out of memory). The caller frees the model with kmodel_free. */
kmodel *kmodel_create(const kmodel_config *c, const kmodel_spec *s, char *err, size_t errlen);
/* kmodel_create with kmodel_spec_pretrain (the pretraining models). */
kmodel *kmodel_new(const kmodel_config *c, int max_B, int L, int P, int with_sentence_head, char *err,
                   size_t errlen);
void kmodel_free(kmodel *m);
/* The parameter registry of the model kmodel_create(c, s) would build
 * (names, shapes, flags, init; offsets as in its arena), without building
 * it: the exporter and importer read their names from here. Batch shape
 * fields of s below 1 count as 1. Returns a malloc'd array of *n entries
 * (caller frees), or NULL with err filled (the config does not make a model). */
ktensor *kmodel_registry(const kmodel_config *c, const kmodel_spec *s, int *n, char *err, size_t errlen);

/* The parameter list (state_dict order) and the arenas it indexes. Owned by
 * the model; valid until kmodel_free. Arenas are kmodel_numel floats each
 * (the tensors plus zero padding between them, 64-byte aligned). The
 * gradient arena is NULL for an inference model. */
const ktensor *kmodel_params(const kmodel *m, int *n);
float *kmodel_param_data(kmodel *m);
float *kmodel_grad_data(kmodel *m);
size_t kmodel_numel(const kmodel *m);        /* arena length in floats */
size_t kmodel_param_count(const kmodel *m);  /* sum of the tensors' numel */
size_t kmodel_activation_bytes(const kmodel *m);
const kmodel_config *kmodel_get_config(const kmodel *m);
const kmodel_spec *kmodel_get_spec(const kmodel *m);

/* Deterministic initialization, as Hugging Face's _init_weights: weights and
 * embeddings normal(0, initializer_range) (the word embedding row of
 * pad_token_id zero), LayerNorm weights 1, biases 0. Element j of tensor t is
 * a pure function of (seed, t's name, j). Gradients are zeroed. */
void kmodel_init(kmodel *m, uint64_t seed);
void kmodel_zero_grad(kmodel *m);

/* ---- a pass ------------------------------------------------------------------- */

enum { KMODE_EVAL = 0, KMODE_TRAIN = 1 };

/* Forward of batch b through the embeddings, the layers and the heads (up to
 * the logits). KMODE_TRAIN keeps what backward needs and applies dropout
 * keyed by dropout_key (the same key gives the same masks); KMODE_EVAL has
 * no dropout. Returns 0, or EX_DATAERR when the batch does not fit the model
 * (kmodel_error says what); then parameters and gradients are unchanged. */
int kmodel_forward(kmodel *m, const ksample_batch *b, int mode, uint64_t dropout_key);
/* The loss terms of the last forward into *r. In train mode the gradient of
 * loss_scale * loss with respect to the heads' outputs is formed (use
 * loss_scale = 1 / k to average k accumulated micro-batches); logits are then
 * no longer readable. Returns 0 or EX_SOFTWARE without a forward. */
int kmodel_loss(kmodel *m, float loss_scale, kstep_result *r);
/* Backward of the last train-mode forward + loss: gradients ADDED to the
 * gradient arena (zero it between optimizer steps), injected gradients
 * included. Returns 0, or EX_SOFTWARE (no train forward / inference model). */
int kmodel_backward(kmodel *m);
/* kmodel_forward(TRAIN) + kmodel_loss + kmodel_backward. */
int kmodel_forward_backward(kmodel *m, const ksample_batch *b, uint64_t dropout_key, float loss_scale,
                            kstep_result *r);
/* ---- data parallel: one batch split over ranks ------------------------------------ */

/* After a forward, before kmodel_loss: each loss term's denominator this
 * batch contributes (name, count; sum 0), as kmodel_loss would normalise
 * it (masked-slot weights, labelled rows, real tokens, ...). An ELECTRA
 * pair reports its towers' terms (mlm_loss, token_loss). Returns 0 or
 * EX_SOFTWARE without a new forward. */
int kmodel_loss_counts(kmodel *m, kstep_result *c);
/* The next kmodel_loss normalises each loss term by global's count of the
 * same name (the counts of every rank's share of the batch added), so that
 * the ranks' gradients add up to the whole batch's; the terms it reports
 * stay this share's (sum, count), which add up over ranks. Serves one loss;
 * NULL clears. global is copied. */
void kmodel_set_loss_counts(kmodel *m, const kstep_result *global);
/* fn(ctx, lo) during kmodel_backward, from the main thread: every gradient
 * at arena offset >= lo is final for this pass (called after each weight
 * group's lowest layer, lo decreasing, and lo = 0 at the end; an ELECTRA
 * pair calls nothing). Lets a data-parallel caller start reducing those
 * gradients while backward goes on. NULL fn clears. */
void kmodel_set_grad_hook(kmodel *m, void (*fn)(void *ctx, size_t lo), void *ctx);
/* With a grad hook set (cleared with it): the next backward leaves the
 * word embeddings' lookup gradient out of the arena and calls
 * word_fn(ctx, lo, hi) after the heads' backward, when the arena's word
 * range [lo, hi) holds everything else (a tied decoder's part, earlier
 * micro-batches); the caller adds the rows (kmodel_word_grad_rows) itself,
 * e.g. after summing them over ranks. Returns 0 (nothing set) for an
 * ELECTRA pair. */
int kmodel_set_sparse_word_grad(kmodel *m, void (*word_fn)(void *ctx, size_t lo, size_t hi));
/* After such a backward: the lookup gradient rows (n, width) of token ids
 * *ids (rows of id *skip get none: the padding row); NULL otherwise. Valid
 * until the next pass. */
const float *kmodel_word_grad_rows(const kmodel *m, const int32_t **ids, int *n, int *width, int32_t *skip);
/* The arena range of the word embeddings (0, 0 for an ELECTRA pair). */
void kmodel_word_range(const kmodel *m, size_t *lo, size_t *hi);

/* kmodel_forward(EVAL) + kmodel_loss(0): the logits stay readable. */
int kmodel_evaluate(kmodel *m, const ksample_batch *b, kstep_result *r);

/* ---- reading a pass ----------------------------------------------------------- */

/* Rows of the packed activations after a forward: token t of batch row b is
 * row offs[b] + t; *N = real tokens. offs has B + 1 entries. */
const int32_t *kmodel_offsets(const kmodel *m, int *B, int *N);
/* Hidden state (N, H) after layer l (0 = the embedding block's output, after
 * its projection; l = NL: the last layer, after the final LayerNorm of a
 * pre-LN model), valid until the next forward. NULL when l is out of range. */
const float *kmodel_hidden(const kmodel *m, int l);
/* Attention probabilities of layer l (1 <= l <= NL) before dropout:
 * sequence b, head h is an n x n block (n its length, row stride n) at
 * (b NH + h) L L. NULL when out of range. */
const float *kmodel_attention(const kmodel *m, int l);
/* Adds g (N, H), in the packed layout, to the gradient of kmodel_hidden(m, l)
 * for the next kmodel_backward (after kmodel_forward in train mode; the
 * injections are cleared by the next forward). Returns 0 or EX_SOFTWARE. */
int kmodel_inject_grad(kmodel *m, int l, const float *g, float scale);

/* After kmodel_evaluate of b (or a forward + eval-mode loss): */
/* the V logits at masked slot p of row `row` (p < b->n_masked[row]); NULL for another slot */
const float *kmodel_mlm_logits(const kmodel *m, int row, int p);
/* the 2 sentence-head logits of row `row`; NULL without a head */
const float *kmodel_sentence_logits(const kmodel *m, int row);
/* the num_labels classifier outputs of row `row` (logits, or the predicted
 * value for regression); NULL without a classification head */
const float *kmodel_class_logits(const kmodel *m, int row);
/* the per-token binary logit of token t of row `row`; NaN without the head */
float kmodel_token_logit(const kmodel *m, int row, int t);

/* ELECTRA's pair (model.type electra with KHEAD_MLM, trainer/electra.c),
 * after a forward: the discriminator's input (B, L) (the batch's ids with the
 * generator's draws at the masked positions) and, if labels is not NULL,
 * its per-token labels (B, L): 1 replaced, 0 original, -1 past the row's
 * length. Row stride = the batch's L. NULL for other models or before a
 * forward. Valid until the next forward. For the pair, kmodel_hidden,
 * kmodel_attention, kmodel_offsets and kmodel_inject_grad are the
 * discriminator's, kmodel_mlm_logits the generator's. */
const int32_t *kmodel_rtd_input(const kmodel *m, const int32_t **labels);

/* ---- distillation ------------------------------------------------------------ */

/* Soft targets for the next kmodel_loss (which clears them). A model with
 * the classification head (num_labels >= 2, no MLM head): t (B, num_labels),
 * the teacher's class logits of the same batch; cls_loss gets weight
 * mlm_weight, ce_loss = mean over the counted rows (all_slots 1: every row,
 * 0: the labelled ones) of T^2 KL, weight ce_weight; "teacher_agree" as below.
 * A masked-LM model: t (M, V), a
 * teacher's logits (bias included) at this forward's M masked slots, in
 * kmodel_mlm_logits_all's order (a teacher that ran the same batch); T > 0.
 * The masked-LM terms of that loss become
 *   mlm_weight * mlm_loss + ce_weight * ce_loss,
 *   ce_loss = weighted mean over the counted slots of T^2 KL(softmax(t/T) || softmax(s/T)),
 * counted slots: all_slots 0, those with a label (weighted as mlm_loss);
 * 1, every slot (weight 1). Terms added: "ce_loss" (weight ce_weight) and
 * "teacher_agree" (the student's first argmax equals the teacher's, over the
 * counted slots); "mlm_loss" gets weight mlm_weight. t must stay valid until
 * kmodel_loss returns. Returns 0, or EX_SOFTWARE (no forward, no MLM head,
 * an ELECTRA pair) / EX_OSERR (out of memory), the model unchanged. */
int kmodel_set_soft_targets(kmodel *m, const float *t, float T, double ce_weight, double mlm_weight, int all_slots);
/* After kmodel_evaluate: the logits of all M masked slots, (M, V) row-major
 * in batch order (bias included); NULL without (M 0 then). */
const float *kmodel_mlm_logits_all(const kmodel *m, int *M);
/* Layer l's (1 <= l <= NL) query, key and value rows after a forward, (N, 3H)
 * packed as kmodel_hidden (columns: q, k, v, head h at h D within each);
 * NULL when out of range. */
const float *kmodel_qkv(const kmodel *m, int l);
/* Adds scale * g (N, 3H) to the gradient of kmodel_qkv(m, l) for the next
 * kmodel_backward (cleared by the next forward); post-LN models. Returns 0 or
 * EX_SOFTWARE. */
int kmodel_inject_qkv_grad(kmodel *m, int l, const float *g, float scale);
/* Offset (floats) of the registry tensor `name` in the arenas, or SIZE_MAX. */
size_t kmodel_param_offset(const kmodel *m, const char *name);
/* Adds a term to r (when there is room) and recomputes r->loss. */
void kstep_term(kstep_result *r, const char *name, double sum, double count, double weight);
/* DistilBERT's student initialization: copies into student (model.type bert,
 * distilbert or albert) the teacher's word and position embeddings (rows
 * both have), its token types (or, for a student without them, the type-0
 * row added into every position row, so that single-segment inputs embed
 * as in the teacher), the embedding LayerNorm, the E -> H projection when
 * both have one, weight set g from teacher layer layers[g] (g < n, n = the
 * student's weight sets; an ALBERT teacher's layer l is its group
 * l G / NL), and the heads both have (MLM transform and bias, pooler,
 * sentence head). Needs the same vocabulary size, E, H and FFN width.
 * Returns 0, or EX_CONFIG with err saying what differs (student unchanged). */
int kmodel_init_from(kmodel *student, const kmodel *teacher, const int *layers, int n, char *err, size_t errlen);

/* The message of the last failed call. */
const char *kmodel_error(const kmodel *m);

#endif
