/* cli/modelsrc.h: a model's weights from a kiln checkpoint or a Hugging
 * Face folder (cli/modelsrc.c), for kiln finetune / eval / classify and a
 * distillation run's teacher: the model config, the vocabulary, the
 * tokenizer mode, the F32 tensors under kiln's names, and a classifier's
 * labels. */
#ifndef KILN_CLI_MODELSRC_H
#define KILN_CLI_MODELSRC_H

#include <jansson.h>
#include <stddef.h>

#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "trainer/hfimport.h"
#include "trainer/model.h"
#include "trainer/safetensors.h"

typedef struct cli_msrc {
    char path[4096];              /* the checkpoint step folder or the HF folder */
    int is_hf;
    kckpt *ck;
    khf_model hf;
    kmodel_config mc;
    const char *vocab;            /* vocab.txt bytes (owned by ck or hf) */
    size_t vocab_len;
    int mode;                     /* the tokenizer: KWP_* bits (casing, accents) */
    kst_tensor *t;                /* (n) F32 tensors under kiln's names; data owned by ck or hf */
    int n;
    /* a classifier already: its labels (owned here) and task */
    int num_labels;               /* 0: no classifier */
    int regression;
    char **labels;                /* (num_labels) or NULL */
    json_t *ft;                   /* the fine-tuning config of a kiln fine-tuned checkpoint, or NULL */
} cli_msrc;

/* Opens path as a Hugging Face folder (config.json, no state.json) or a kiln
 * checkpoint (a step folder, or the latest of a checkpoint.dir) into *x
 * (zeroed first; free with cli_msrc_free, also after a failure). Logs and
 * returns EX_* on failure. */
int cli_msrc_open(const char *path, cli_msrc *x);
void cli_msrc_free(cli_msrc *x);
/* The tensor `name` (kiln's registry name), or NULL. */
const kst_tensor *cli_msrc_find(const cli_msrc *x, const char *name);
/* Copies the source's tensors into m by name and shape. `classifier` 0: the
 * classifier is new (kept as kmodel_init made it). verbose: says what was
 * new and what was dropped. Returns 0 or EX_DATAERR (a shape differs). */
int cli_msrc_copy(const cli_msrc *x, kmodel *m, int classifier, int verbose);

/* Copies every tensor of m's registry from the source (each must be there,
 * F32 of the same size) and hashes them: hash = XXH3-128 hex of each
 * tensor's name (with its NUL) and bytes in registry order, the content
 * hash that pins a teacher whatever its file format. Returns 0, or
 * EX_CONFIG with err naming the missing or misshapen tensor. */
int cli_msrc_load_all(const cli_msrc *x, kmodel *m, char hash[33], char *err, size_t errlen);

#endif
