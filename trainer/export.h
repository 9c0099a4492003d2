/* trainer/export.h: writing a Hugging Face model folder (docs/train.md,
 * "Export"): model.safetensors, config.json, vocab.txt,
 * tokenizer_config.json, special_tokens_map.json, loadable with
 * AutoModelForPreTraining / AutoModel / AutoTokenizer .from_pretrained(DIR)
 * with no conversion script.
 *
 * The caller's tensors already carry Hugging Face names
 * (docs/train.md, "Export": albert.*, predictions.*,
 * sop_classifier.* for ALBERT; bert.*, cls.* for BERT); the exporter checks
 * them against the layout the config implies (names, shapes, F32) before
 * writing anything, so a folder that would load with silently
 * re-initialized weights is never written. */
#ifndef KILN_TRAINER_EXPORT_H
#define KILN_TRAINER_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "trainer/config.h"
#include "trainer/safetensors.h"

#define KEXPORT_TRANSFORMERS_VERSION "4.40.0" /* written into config.json (informational) */

/* One tensor of the Hugging Face layout of a model. */
typedef struct kexport_entry {
    char name[128];
    int ndim;
    int64_t shape[2];
    int role;                     /* KEXPORT_* */
    int transpose;                /* 1: shape is the caller's [out, in]; the file holds [in, out]
                                     (GPT-2's Conv1D weights, the registry's transpose flag) */
} kexport_entry;
enum {
    KEXPORT_REQUIRED = 0,         /* must be given */
    KEXPORT_OPTIONAL = 1,         /* pooler and sentence-pair head: written when given */
    KEXPORT_TIED = 2              /* decoder tied to another tensor: checked equal if given, never written */
};

/* The tensors of AlbertForPreTraining or BertForPreTraining for config m
 * with vocab_size V (m->vocab_size is not used), in the order they are
 * written. Returns a malloc'd array of *n entries (caller frees), or NULL
 * when a dimension of m is not positive. Same as kexport_layout2(m, V,
 * NULL, n). */
kexport_entry *kexport_layout(const kmodel_config *m, int vocab_size, int *n);

/* ---- heads: which Hugging Face class a folder holds ------------------------
 *
 *   kind            BERT class / ALBERT class              tensors (kiln names)
 *   PRETRAINING     BertForPreTraining / AlbertFor...      encoder, pooler (optional),
 *                                                          MLM head, sentence head (optional)
 *   CLASSIFICATION  Bert/AlbertForSequenceClassification   encoder, pooler (required),
 *                                                          classifier.{weight [num_labels, H], bias [num_labels]}
 *   MASKED_LM       BertForMaskedLM / AlbertForMaskedLM    encoder, MLM head (no pooler)
 *   BASE            BertModel / AlbertModel                encoder, pooler (optional)
 *
 * DistilBERT's CLASSIFICATION is DistilBertForSequenceClassification:
 * distilbert.*, pre_classifier.{weight [H, H], bias [H]} (role of the
 * classifier: required) and classifier.*; no pooler.
 * "encoder" is bert.embeddings.* + bert.encoder.* (ALBERT: albert.*); the
 * pooler is bert.pooler.dense.* (ALBERT: albert.pooler.*). Layout entries
 * and the caller's tensors always carry these prefixed names (kiln's names,
 * which are the *For* classes' state_dict names). A BASE folder's file is
 * written as save_pretrained writes a base model: without the "bert." /
 * "albert." prefix (embeddings.*, encoder.*, pooler.*). */
enum {
    KEXPORT_HEAD_PRETRAINING = 0,
    KEXPORT_HEAD_CLASSIFICATION = 1,
    KEXPORT_HEAD_MASKED_LM = 2,
    KEXPORT_HEAD_BASE = 3
};

typedef struct kexport_head {
    int kind;                     /* KEXPORT_HEAD_* */
    int num_labels;               /* CLASSIFICATION: 1 (regression) .. 65536; else unused */
    const char *const *labels;    /* CLASSIFICATION: (num_labels) distinct names for id2label /
                                     label2id, or NULL for "LABEL_0", "LABEL_1", ... */
    const char *problem_type;     /* CLASSIFICATION: NULL (derived), "regression" (num_labels 1) or
                                     "single_label_classification" (num_labels >= 2) */
} kexport_head;

/* "BertForSequenceClassification", "AlbertModel", ... for model type
 * (KMODEL_*) and head (NULL: pretraining); NULL for an unknown kind/type.
 * GPT-2: "GPT2LMHeadModel" for the pretraining kind, NULL for the others.
 * DistilBERT: "DistilBertForMaskedLM" for the pretraining and masked-LM
 * kinds (the same tensors), "DistilBertModel" for the base,
 * "DistilBertForSequenceClassification" for classification. */
const char *kexport_architecture(int model_type, const kexport_head *head);

/* The name a KEXPORT_TIED entry is tied to ("cls.predictions.decoder.weight"
 * -> "bert.embeddings.word_embeddings.weight", ...), NULL for another name. */
const char *kexport_tied_to(const char *name);

/* The vocabulary checks kexport_hf makes (the five special tokens, at most
 * m->vocab_size lines when that is not 0, [PAD] at m->pad_token_id).
 * Returns 0 or EX_DATAERR with err filled. */
int kexport_vocab_check(const kmodel_config *m, const char *vocab_txt, size_t vocab_len, char *err, size_t errlen);

/* kexport_layout for any head (NULL: pretraining). NULL also when the head
 * is invalid (unknown kind, num_labels out of range). GPT-2: the pretraining
 * kind only (GPT2LMHeadModel: the registry of the LM model, its Conv1D
 * weights with transpose 1, lm_head.weight KEXPORT_TIED to
 * transformer.wte.weight). DistilBERT: the pretraining and masked-LM kinds
 * are DistilBertForMaskedLM (vocab_projector.weight KEXPORT_TIED to
 * distilbert.embeddings.word_embeddings.weight), the base DistilBertModel,
 * classification DistilBertForSequenceClassification (pre_classifier.* and
 * classifier.* with role KEXPORT_REQUIRED). */
kexport_entry *kexport_layout2(const kmodel_config *m, int vocab_size, const kexport_head *head, int *n);

/* The tokenizer bits of kexport_hf's do_lower_case argument (0 and 1 keep
 * their meaning): KEXPORT_TOK_LOWER is do_lower_case; KEXPORT_TOK_STRIP_ACCENTS
 * / KEXPORT_TOK_KEEP_ACCENTS write strip_accents true / false in
 * tokenizer_config.json (neither: null, transformers' default, which strips
 * accents exactly when lowercasing). */
enum { KEXPORT_TOK_LOWER = 1, KEXPORT_TOK_STRIP_ACCENTS = 2, KEXPORT_TOK_KEEP_ACCENTS = 4 };

/* The texts of tokenizer_config.json (BertTokenizer; tok: KEXPORT_TOK_*
 * bits; model_max_length <= 0 leaves the key out) and of
 * special_tokens_map.json, as kexport_hf writes them. Owned by the caller
 * (free). */
char *kexport_tokenizer_config(int tok, int model_max_length);
/* The same for a model type (KMODEL_*): DistilBERT's names
 * "DistilBertTokenizer" (the same WordPiece tokenizer, whose inputs have no
 * token_type_ids, which DistilBertForMaskedLM.forward does not take); the
 * others "BertTokenizer". */
char *kexport_tokenizer_config_of(int model_type, int tok, int model_max_length);
char *kexport_special_tokens_map(void);
/* The same for a byte-level BPE vocabulary (GPT2Tokenizer, next to
 * vocab.json and merges.txt): "<|endoftext|>" as bos, eos and unk (when
 * has_eot; else no special token), add_prefix_space false. Owned (free). */
char *kexport_bpe_tokenizer_config(int has_eot, int model_max_length);
char *kexport_bpe_special_tokens_map(int has_eot);

/* Writes the folder dir: parameters params[n] (dtype "F32", Hugging Face
 * names, any order; tied decoders may be included or not), the vocabulary
 * (vocab.txt bytes: one piece a line, id = line number; it must hold [PAD]
 * [UNK] [CLS] [SEP] [MASK], [PAD] at m->pad_token_id, and at most
 * m->vocab_size lines; V = m->vocab_size, or the line count when that is 0)
 * and do_lower_case for the tokenizer (KEXPORT_TOK_* bits: do_lower_case,
 * strip_accents).
 * The folder is built as PARENT/.export-NAME.tmp, then renamed to dir; an
 * existing dir is refused unless replace (then it is replaced whole).
 * Returns 0, EX_DATAERR (tensors or vocabulary do not fit the config; err
 * names the first problems), EX_SOFTWARE (bad argument), EX_CANTCREAT or
 * EX_IOERR, with err filled. Nothing is left at dir on failure. */
int kexport_hf(const char *dir, const kmodel_config *m, const kst_tensor *params, int n,
               const char *vocab_txt, size_t vocab_len, int do_lower_case, int replace,
               char *err, size_t errlen);

/* kexport_hf for any head (NULL: pretraining, exactly kexport_hf). The
 * tensors must fit kexport_layout2(m, V, head): a CLASSIFICATION export
 * without classifier.* or the pooler is refused (EX_DATAERR). config.json
 * gets "architectures" for the head and every field kexport_hf writes; a
 * CLASSIFICATION config adds "id2label" (keys "0", "1", ...), "label2id"
 * (from which transformers derives num_labels) and "problem_type". An
 * invalid head (bad kind, num_labels, problem_type, repeated label names)
 * is EX_SOFTWARE. */
int kexport_hf2(const char *dir, const kmodel_config *m, const kexport_head *head, const kst_tensor *params,
                int n, const char *vocab_txt, size_t vocab_len, int do_lower_case, int replace, char *err,
                size_t errlen);

/* GPT-2 (m->type KMODEL_GPT2, m->vocab_size V > 0): writes the folder dir as
 * GPT2LMHeadModel loads it: model.safetensors (the tensors of
 * kexport_layout2(m, V, NULL) in its order, the Conv1D weights transposed to
 * [in, out]; lm_head.weight checked equal to transformer.wte.weight when
 * given, never written: transformers ties it) and config.json (GPT2Config:
 * model_type gpt2, architectures, n_embd, n_layer, n_head, n_positions,
 * n_ctx = n_positions, n_inner (null when 4 n_embd), activation_function,
 * the three dropouts, layer_norm_epsilon, initializer_range, and
 * bos_token_id = eos_token_id = eot_id, the vocabulary's <|endoftext|>, or
 * null when eot_id < 0). With vocab_json (vlen bytes, the vocabulary's
 * vocab.json) and merges (mlen bytes, merges.txt with its "#version" line)
 * also the tokenizer files GPT2Tokenizer / AutoTokenizer load: vocab.json,
 * merges.txt, tokenizer_config.json (kexport_bpe_tokenizer_config,
 * model_max_length = n_positions) and special_tokens_map.json; the caller
 * checks that the vocabulary has V tokens. Without them (NULL) the model
 * files only. Same folder rules and return codes as kexport_hf2. */
int kexport_gpt2(const char *dir, const kmodel_config *m, const kst_tensor *params, int n, int64_t eot_id,
                 const char *vocab_json, size_t vlen, const char *merges, size_t mlen, int replace, char *err,
                 size_t errlen);

#endif
