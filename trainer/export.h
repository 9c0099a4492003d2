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
} kexport_entry;
enum {
    KEXPORT_REQUIRED = 0,         /* must be given */
    KEXPORT_OPTIONAL = 1,         /* pooler and sentence-pair head: written when given */
    KEXPORT_TIED = 2              /* decoder tied to another tensor: checked equal if given, never written */
};

/* The tensors of AlbertForPreTraining or BertForPreTraining for config m
 * with vocab_size V (m->vocab_size is not used), in the order they are
 * written. Returns a malloc'd array of *n entries (caller frees), or NULL
 * when a dimension of m is not positive. */
kexport_entry *kexport_layout(const kmodel_config *m, int vocab_size, int *n);

/* Writes the folder dir: parameters params[n] (dtype "F32", Hugging Face
 * names, any order; tied decoders may be included or not), the vocabulary
 * (vocab.txt bytes: one piece a line, id = line number; it must hold [PAD]
 * [UNK] [CLS] [SEP] [MASK], [PAD] at m->pad_token_id, and at most
 * m->vocab_size lines; V = m->vocab_size, or the line count when that is 0)
 * and do_lower_case for the tokenizer.
 * The folder is built as PARENT/.export-NAME.tmp, then renamed to dir; an
 * existing dir is refused unless replace (then it is replaced whole).
 * Returns 0, EX_DATAERR (tensors or vocabulary do not fit the config; err
 * names the first problems), EX_SOFTWARE (bad argument), EX_CANTCREAT or
 * EX_IOERR, with err filled. Nothing is left at dir on failure. */
int kexport_hf(const char *dir, const kmodel_config *m, const kst_tensor *params, int n,
               const char *vocab_txt, size_t vocab_len, int do_lower_case, int replace,
               char *err, size_t errlen);

#endif
