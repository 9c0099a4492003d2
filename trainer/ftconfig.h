/* trainer/ftconfig.h: the fine-tuning run configuration (docs/finetune.md,
 * schemas/finetune-config.schema.json) as a C struct, and its JSON reader
 * (trainer/ftconfig.c). Plain values: the struct can be copied.
 *
 *   {"init": CKPT_OR_HF_FOLDER,
 *    "task": {"type": "classification"|"regression", "train": FILE, "dev": FILE|null,
 *             "text_column": "sentence", "text_pair_column": null,
 *             "label_column": "label", "num_labels": 0, "format": "auto"|"tsv"|"jsonl"},
 *    "data": {"seq_len": 128, "batch_size": 32, "seed": 1, "eval_every": 0},
 *    "model": {"classifier_dropout": null, "hidden_dropout_prob": null,
 *              "attention_probs_dropout_prob": null},
 *    "optimizer": {...as kiln train's, fine-tuning defaults below...},
 *    "budget": {"epochs": 3, "steps": 0, "seconds": 0},
 *    "checkpoint": {"dir": DIR, "keep": 1},
 *    "distill": {"teacher": "", "temperature": 2, "alpha_ce": 0.5, "alpha_gold": 0.5},
 *    "threads": 0, "precision": "auto"}
 * Optimizer defaults for fine-tuning: adamw, lr 5e-5, weight_decay 0.01,
 * warmup 10% of the steps, linear decay, clip_norm 1.0 (BERT's recipe). */
#ifndef KILN_TRAINER_FTCONFIG_H
#define KILN_TRAINER_FTCONFIG_H

#include <stddef.h>
#include <stdint.h>

enum { KFT_CLASSIFICATION = 1, KFT_REGRESSION = 2 };

typedef struct kft_config {
    char init[4096];              /* kiln checkpoint (step folder or run folder) or Hugging Face folder */
    int task;                     /* KFT_* */
    char train[4096], dev[4096];  /* dev "" = no evaluation */
    char text_column[128], text_pair_column[128], label_column[128]; /* pair "" = single sentence */
    int num_labels;               /* 0 = the train file's label set; regression: 1 */
    int format;                   /* KDS_FORMAT_* of sampler/dataset.h (0 auto, 1 tsv, 2 jsonl) */
    int seq_len, batch_size;
    uint64_t seed;
    int eval_every;               /* steps between dev evaluations; 0 = once per epoch */
    double classifier_dropout;    /* < 0: the model's hidden_dropout_prob */
    double hidden_dropout, attention_dropout; /* < 0: the init model's */
    char optimizer_json[4096];    /* the optimizer section with the defaults filled in (a JSON object) */
    double epochs;                /* budget: 0 = no limit on this axis */
    int64_t steps;
    double seconds;
    char ckpt_dir[1024];
    int ckpt_keep;
    int threads;                  /* 0 = all cores */
    int precision;                /* of the training products: KPRECISION_* of config.h (docs/train.md,
                                     "Precision"); evaluation is fp32 */
    /* task-specific distillation (docs/distill.md): a fine-tuned classifier
     * teaches the model on the same batches; loss = alpha_ce T^2 KL(softmax(t/T)
     * || softmax(s/T)) over every row + alpha_gold cross-entropy on the gold labels */
    char teacher[4096];           /* "" = none */
    double kd_temperature;        /* 2 */
    double kd_alpha_ce, kd_alpha_gold; /* 0.5, 0.5 */
} kft_config;

/* Reads a JSON config text, then applies overrides "section.key=value"
 * (value read as JSON, else as a string). Unknown sections and keys, wrong
 * types and out-of-range values fail naming the field. Returns 0, or
 * EX_DATAERR (not a JSON object) / EX_CONFIG with err filled. */
int kft_config_parse(kft_config *c, const char *json, size_t len, const char *const *sets, int n_sets, char *err,
                     size_t errlen);
/* The config as canonical JSON (every field); malloc'd, caller frees. */
char *kft_config_to_json(const kft_config *c);

#endif
