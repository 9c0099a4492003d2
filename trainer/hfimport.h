/* trainer/hfimport.h: reading a Hugging Face BERT / ALBERT / ELECTRA /
 * GPT-2 model folder (config.json, model.safetensors, the tokenizer's
 * files) into kiln's terms: a kmodel_config, the tensors under kiln's
 * names, the heads present, the vocabulary. The reverse of
 * trainer/export.h, checked against the same layout (kexport_layout2), so
 * whatever khf_load accepts exports back to the same tensors.
 *
 * Accepted (config.json "architectures"[0], "model_type"):
 *   BertForPreTraining, BertForMaskedLM, BertModel,
 *   BertForSequenceClassification                         model_type "bert"
 *   AlbertForPreTraining, AlbertForMaskedLM, AlbertModel,
 *   AlbertForSequenceClassification                       model_type "albert"
 *   (the Electra ones likewise)                           model_type "electra"
 *   GPT2LMHeadModel, GPT2Model or none                    model_type "gpt2"
 *   DistilBertForMaskedLM, DistilBertModel,
 *   DistilBertForSequenceClassification or none           model_type "distilbert"
 * Anything else is refused by name. Without "architectures" the class is
 * read off the tensors (classifier.* -> sequence classification, a
 * sentence head or MLM head + pooler -> pretraining, an MLM head -> masked
 * LM, else the base). A *ForMaskedLM folder that also holds the pooler or
 * the sentence head (the original bert-base-uncased and albert-base-v2
 * checkpoints do) is read as pretraining (head.kind PRETRAINING; the
 * architecture string stays config.json's), so those tensors are kept; it
 * exports back as *ForPreTraining.
 *
 * GPT-2: every folder is read as GPT2LMHeadModel (kiln's GPT-2 always has
 * the LM head, tied to the word embeddings, so a GPT2Model folder holds all
 * of its tensors). GPT2Config's defaults for absent keys (vocab_size 50257,
 * n_positions 1024, n_embd 768, n_layer 12, n_head 12, n_inner null = 4
 * n_embd, activation_function "gelu_new", the pdrops 0.1,
 * layer_norm_epsilon 1e-5, initializer_range 0.02). n_ctx is ignored, as
 * transformers ignores it (the model is sized by n_positions). Refused by
 * name, as computations kiln does not have: scale_attn_weights false,
 * scale_attn_by_inverse_layer_idx true, add_cross_attention true, an
 * activation other than "gelu_new" / "gelu_pytorch_tanh" (the same
 * function) / "gelu". Tensor names with "transformer." or without (the
 * hub's original gpt2: h.0.attn.c_attn.weight, wte.weight, ...); the
 * causal-mask buffers h.N.attn.bias and h.N.attn.masked_bias (older
 * transformers saved them) are skipped; lm_head.weight, when present, must
 * equal transformer.wte.weight and is dropped. The Conv1D weights
 * (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj) are [in, out] in the
 * file: checked against the layout's shape transposed, and transposed into
 * kiln's [out, in].
 *
 * DistilBERT: DistilBertConfig's names and defaults for absent keys (dim
 * 768, n_layers 6, n_heads 12, hidden_dim 3072, activation "gelu", the
 * dropouts 0.1, seq_classif_dropout 0.2, ...; LayerNorm eps is its fixed
 * 1e-12); sinusoidal_pos_embds true and activations other than gelu /
 * gelu_new refused by name. DistilBertForMaskedLM is read as the
 * pretraining kind (kiln's DistilBERT pretrains that class);
 * vocab_projector.weight, when present, must equal the word embeddings and
 * is dropped; a DistilBertModel saved alone has embeddings.* and
 * transformer.* without "distilbert.". DistilBertForSequenceClassification
 * (pre_classifier.* and classifier.*, read as KHF_CLASSIFY) takes id2label,
 * label2id, num_labels and problem_type as BERT's classifiers do.
 *
 * Names: a base model saved on its own has no prefix (embeddings.*,
 * encoder.*, pooler.*); both that and the prefixed form (bert.* /
 * albert.*) map to kiln's prefixed names. Tied tensors (the MLM decoder
 * weight, tied to the word embeddings, and decoder bias, tied to the
 * head's bias) are checked equal when present and not kept. The buffers
 * embeddings.position_ids / embeddings.token_type_ids that older
 * transformers versions saved are skipped. Any other tensor that is not in
 * the class's layout is REFUSED (EX_DATAERR, named): it would mean a
 * variant of the model kiln would silently drop. F16 and BF16 tensors are
 * converted to F32; other dtypes are refused by name.
 *
 * The vocabulary of BERT / ALBERT / ELECTRA must be a WordPiece vocab.txt
 * with [PAD] [UNK] [CLS] [SEP] [MASK] (a folder with only spiece.model,
 * ALBERT's usual SentencePiece tokenizer, is refused: kiln tokenizes with
 * WordPiece), at most vocab_size lines, [PAD] at pad_token_id. GPT-2's is
 * vocab.json + merges.txt (byte-level BPE; a folder with tokenizer.json
 * only is refused, saying so): their bytes are kept as read, and checked
 * by the caller (trainer/ does not include text/: cli/cmd_import.c loads
 * them with kbpe_vocab_load, compares the token count with vocab_size and
 * takes the <|endoftext|> id). Only model.safetensors is
 * read: a folder with only pytorch_model.bin, or a sharded
 * model.safetensors.index.json, is refused with a message saying so.
 * The checkpoint kiln import writes from it has model.safetensors only:
 * kckpt_save takes any list of parts, and an imported model has no
 * optimizer state (so `kiln train --resume` refuses it; fine-tuning starts
 * from its weights). No math, no SQL. */
#ifndef KILN_TRAINER_HFIMPORT_H
#define KILN_TRAINER_HFIMPORT_H

#include <stddef.h>
#include <stdint.h>

#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "trainer/export.h"
#include "trainer/safetensors.h"

/* Heads present (bits of khf_model.heads). */
enum {
    KHF_MLM = 1 << 0,      /* the masked-LM head (cls.predictions.* / predictions.*) */
    KHF_SENTENCE = 1 << 1, /* NSP (cls.seq_relationship.*) / SOP (sop_classifier.classifier.*) */
    KHF_CLASSIFY = 1 << 2, /* classifier.* [num_labels, H] */
    KHF_POOLER = 1 << 3,   /* bert.pooler.dense.* / albert.pooler.* */
    KHF_TOKEN = 1 << 4,    /* ELECTRA's discriminator_predictions.* (replaced-token head) */
    KHF_LM = 1 << 5        /* GPT-2's LM head (tied to transformer.wte.weight: always there) */
};

typedef struct khf_model {
    kmodel_config config;      /* from config.json (transformers' defaults for absent keys) */
    char architecture[64];     /* the class, as kexport_architecture names it */
    kexport_head head;         /* the class as an export head; labels point into `labels` */
    int heads;                 /* KHF_* bits */
    int num_labels;            /* classifier rows; 0 without KHF_CLASSIFY */
    char **labels;             /* (num_labels) id2label names in id order, or NULL (none in config.json) */
    char problem_type[32];     /* "regression" / "single_label_classification" / "" */
    int do_lower_case;         /* tokenizer_config.json's, 1 when absent */
    int strip_accents;         /* tokenizer_config.json's: -1 null or absent (follows do_lower_case), 0, 1 */
    int n;                     /* tensors */
    kst_tensor *tensors;       /* (n) kiln names, dtype "F32", in layout order; names and data owned */
    int vocab_kind;            /* KCKPT_VOCAB_WORDPIECE (vocab.txt) or KCKPT_VOCAB_BPE (GPT-2) */
    char *vocab;               /* vocab.txt, or BPE: vocab.json, bytes as read (vocab_len,
                                  NUL-terminated), owned */
    size_t vocab_len;
    char *merges;              /* BPE: merges.txt bytes as read (merges_len, NUL-terminated), owned;
                                  NULL for WordPiece */
    size_t merges_len;
    int64_t eot_id;            /* BPE: the id of <|endoftext|>, -1 when none or not known: khf_load
                                  sets -1 (it does not parse the vocabulary); the caller that does
                                  (kiln import) fills it in for khf_extra_json */
    int n_converted;           /* tensors converted from F16 / BF16 */
    int n_skipped;             /* buffers and tied copies left out */
} khf_model;

/* Reads the folder dir into *out (zeroed first). Returns 0, or with err
 * filled (naming the file, the tensor, both shapes, ...):
 *   EX_NOINPUT  dir, config.json, model.safetensors or the vocabulary's
 *               files (vocab.txt; GPT-2: vocab.json, merges.txt) missing
 *               (config.json is read first: it says which vocabulary);
 *   EX_DATAERR  unsupported model_type / architecture / hidden_act /
 *               dtype, invalid JSON, a damaged or truncated safetensors
 *               file, a tensor missing, unknown, of the wrong shape, or a
 *               tied copy that differs, a vocabulary that does not fit;
 *   EX_IOERR    a read failed.
 * On failure *out holds nothing to free (khf_free is harmless). The caller
 * frees a loaded model with khf_free. */
int khf_load(const char *dir, khf_model *out, char *err, size_t errlen);
void khf_free(khf_model *m);

/* An ELECTRA pair as kiln export writes it: dir/discriminator
 * (ElectraForPreTraining) and dir/generator (ElectraForMaskedLM). Both are
 * read by khf_load; they must share the vocabulary, the embedding shape and
 * the embedding tensors' values (a pair trained together). *out is the pair
 * as one model: the discriminator's config with the generator's shape in
 * generator_*, the discriminator's tensors, then the generator's own under
 * "generator." (heads KHF_TOKEN | KHF_MLM). Returns as khf_load. */
int khf_load_electra_pair(const char *dir, khf_model *out, char *err, size_t errlen);
/* 1 when dir holds discriminator/config.json and generator/config.json. */
int khf_is_electra_pair(const char *dir);

/* The run config of an imported checkpoint: ktrain_config_defaults with
 * m's model, data.objectives ["mlm"] plus "sop" (ALBERT) / "nsp" (BERT)
 * when the sentence head is there (ELECTRA: ["rtd"]; GPT-2: ["clm"], the
 * model under GPT2Config's names), seq_len min(128, max positions),
 * budget.steps 1000 (a placeholder: the reader wants a budget). Returns 0
 * or EX_CONFIG with err filled (cannot happen for a khf_load result). */
int khf_run_config(const khf_model *m, ktrain_config *out, char *err, size_t errlen);

/* The state.json "extra_json" an imported checkpoint carries (kiln import):
 *   {"imported_from": DIR, "architecture": A, "model_type": "bert"|"albert"|"electra",
 *    "heads": ["mlm", "sentence", "classify", "token"], "pooler": true|false,
 *    "num_labels": N, "id2label": [names], "problem_type": P, "cased": B}
 * ("cased" is !do_lower_case, as kiln train's checkpoints say it; and
 * "strip_accents": null / true / false, tokenizer_config.json's).
 * GPT-2: {"imported_from", "architecture": "GPT2LMHeadModel", "model_type":
 * "gpt2", "heads": ["lm"], "tokenizer": "bpe", "eot_id": m->eot_id or null}
 * ("tokenizer" and "eot_id" as kiln train's GPT-2 checkpoints write them).
 * malloc'd; caller frees. */
char *khf_extra_json(const khf_model *m, const char *imported_from);

/* The export head of a checkpoint's tensors, for kiln export:
 * CLASSIFICATION when classifier.bias is among t (num_labels = its rows;
 * labels and problem_type from extra_json's "id2label" / "problem_type"
 * when they fit); else, with the MLM head, PRETRAINING when a sentence-pair
 * head or the pooler is there, or extra_json's "architecture" says
 * *ForPreTraining, or no "architecture" is known (kiln train's
 * checkpoints), MASKED_LM otherwise; without the MLM head, BASE. extra_json may be NULL. Fills *s (its
 * strings owned by s); free with khf_export_head_free. */
typedef struct khf_export_head {
    kexport_head head;         /* head.labels points into labels */
    char **labels;             /* (head.num_labels) or NULL */
    char problem_type[32];
} khf_export_head;
void khf_export_head_of(int model_type, const char *extra_json, const kst_tensor *t, int n,
                        khf_export_head *s);
void khf_export_head_free(khf_export_head *s);

#endif
