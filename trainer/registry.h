/* trainer/registry.h: the parameter registry of a model (trainer/registry.c).
 *
 * Every tensor of a model is registered once, by the model builder
 * (trainer/model.c), as a ktensor (tensor.h): its Hugging Face name (the
 * export name: BertForPreTraining / AlbertForPreTraining /
 * *ForSequenceClassification state_dict names), shape, arena offset, flags
 * (decay, frozen, transpose) and init. Tied weights exist once; the export
 * names that alias them (the MLM decoder) are listed as kalias entries.
 * Checkpoints write the list by name, the optimizer reads the flags, the
 * exporter and importer map names through it, and the PyTorch reference
 * reads the manifest (kregistry_manifest) instead of a name table of its own.
 *
 * Manifest format (JSON, version 1):
 *   {"format": "kiln-registry", "version": 1,
 *    "model_type": "bert"|"albert"|"electra"|"gpt2"|"distilbert", "heads": ["mlm", "sentence", ...],
 *    "num_labels": N, "pre_ln": 0|1, "causal": 0|1,
 *    "tensors": [{"name", "shape": [..], "decay": 0|1, "frozen": 0|1,
 *                 "init": "normal"|"normal_resid"|"one"|"zero", "transpose": 0|1}, ...],
 *    "aliases": [{"name", "target"}]}
 * Tensors are in state_dict order. heads names the KHEAD_* bits (model.h) in
 * bit order: "mlm", "sentence", "classify", "token", "lm", "dea" (ERNIE).
 * num_labels is the classifier's outputs (1 = regression), 0 without the
 * classify head.
 * Written one key per line and one tensor / alias per line. */
#ifndef KILN_TRAINER_REGISTRY_H
#define KILN_TRAINER_REGISTRY_H

#include <stddef.h>

#include "trainer/tensor.h"

/* An export name that is not a tensor of its own: it holds the values of
 * `target` (the MLM decoder weight tied to the word embeddings). */
typedef struct kalias {
    char name[KTENSOR_NAME_MAX];
    char target[KTENSOR_NAME_MAX];
} kalias;

struct kmodel; /* trainer/model.h (which includes this header) */

#define KREGISTRY_FORMAT "kiln-registry"
#define KREGISTRY_VERSION 1
#define KREGISTRY_MAX_ALIASES 4

/* The aliases of model m into out (room for max entries): the tied MLM
 * decoder weight when m has the MLM head ("predictions.decoder.weight" ->
 * "albert.embeddings.word_embeddings.weight" for ALBERT,
 * "cls.predictions.decoder.weight" -> "bert.embeddings.word_embeddings.weight"
 * for BERT, "vocab_projector.weight" -> "distilbert.embeddings.word_embeddings.weight"
 * for DistilBERT, whose projector bias is a tensor of its own). Returns the number of aliases (at most KREGISTRY_MAX_ALIASES;
 * entries beyond max are counted but not written). */
int kregistry_aliases(const struct kmodel *m, kalias *out, int max);
/* The same from the model type (KMODEL_*) and heads (KHEAD_* bits).
 * with_bias 1 adds the decoder bias, which Hugging Face's state_dict holds
 * too ("predictions.decoder.bias" -> "predictions.bias", BERT's under
 * "cls."); the manifest lists the weight only (the torch reference ties the
 * weight; the bias is one parameter there). */
int kregistry_aliases_of(int type, int heads, int with_bias, kalias *out, int max);

/* The manifest of model m (the format above) as a NUL-terminated JSON text,
 * one tensor per line. The string is malloc'd: the caller frees it. Returns
 * NULL when out of memory. */
char *kregistry_manifest(const struct kmodel *m);

#endif
