/* sampler/batch.h: the batch of samples the sampler fills and the trainer
 * reads in place (no copy). This header is the only part of sampler/ that
 * trainer/ may include; it has no functions.
 *
 * Dimensions: B = batch size (rows), L = sequence length, P = max masked
 * predictions per row. Every array is row-major and owned by whoever made
 * the batch (ksampler_batch_new / ksampler_batch_free in sampler.h).
 * Arrays an objective does not use are NULL (entities) or filled with the
 * neutral value given below. Layout version: KSAMPLE_BATCH_VERSION. */
#ifndef KILN_SAMPLER_BATCH_H
#define KILN_SAMPLER_BATCH_H

#include <stdint.h>

#define KSAMPLE_BATCH_VERSION 2 /* 2: targets, KOBJ_CLASSIFY */

/* Objective bits (a batch may combine several: mlm|sop, wwm|nsp, rtd, ...). */
enum {
    KOBJ_MLM = 1 << 0,      /* token masking, 80% [MASK] / 10% keep / 10% random */
    KOBJ_WWM = 1 << 1,      /* whole-word masking (implies MLM's 80/10/10) */
    KOBJ_NGRAM = 1 << 2,    /* ALBERT n-gram masking over whole words, n <= 3 */
    KOBJ_SOP = 1 << 3,      /* sentence order: label 1 = swapped */
    KOBJ_NSP = 1 << 4,      /* next sentence: label 1 = B from a random document */
    KOBJ_RTD = 1 << 5,      /* ELECTRA inputs: 85% [MASK] / 15% keep, no random branch */
    KOBJ_CLM = 1 << 6,      /* contiguous windows, documents separated by [SEP] */
    KOBJ_ENTITIES = 1 << 7, /* per-token entity ids from the KG mentions */
    KOBJ_CLASSIFY = 1 << 8, /* labelled examples (sampler/dataset.h): labels = class, or targets */
};

typedef struct ksample_batch {
    int version;             /* KSAMPLE_BATCH_VERSION */
    int objectives;          /* KOBJ_* bits the rows were made with */
    int B, L, P;             /* rows in use, sequence length, max predictions per row */
    int capacity;            /* rows allocated (B <= capacity) */
    int32_t pad_id, cls_id, sep_id, mask_id;

    int64_t *index;          /* (B) stream position of each row (global, before sharding) */
    int32_t *input_ids;      /* (B, L) ids after masking; pad_id past lengths[b] */
    uint8_t *token_type_ids; /* (B, L) 0 for [CLS] A [SEP], 1 for B [SEP]; 0 on padding */
    int32_t *lengths;        /* (B) real tokens of the row; attention mask = (t < lengths[b]) */

    /* Masked positions, for mlm/wwm/ngram/rtd; sorted ascending per row.
     * Rows have n_masked[b] <= P entries, the rest is position 0, id pad_id,
     * weight 0. */
    int32_t *n_masked;         /* (B) */
    int32_t *masked_positions; /* (B, P) positions in [0, L) */
    int32_t *masked_ids;       /* (B, P) original ids at those positions (the labels) */
    float *masked_weights;     /* (B, P) 1.0 for a real prediction, 0.0 for padding */

    /* Sentence-level label: SOP (1 = swapped) or NSP (1 = random next), or
     * the class (0 .. num_labels - 1) of a labelled example (KOBJ_CLASSIFY);
     * -1 when the objective has none. */
    int32_t *labels;           /* (B) */

    /* Entities (KOBJ_ENTITIES), else NULL: store entity ids (kg_entities.id)
     * on the first token of each mention, 0 elsewhere. entity_ids is the
     * input after ERNIE's dEA noise (when asked) and with masked mentions'
     * entities hidden (when asked), entity_labels the original alignment
     * (the dEA targets). */
    int32_t *entity_ids;       /* (B, L) */
    int32_t *entity_labels;    /* (B, L) */

    /* Regression targets of labelled examples (KOBJ_CLASSIFY with one
     * output), else NULL; NaN = no target. (version 2) */
    float *targets;            /* (B) */
    /* Per-token binary labels (ELECTRA's discriminator: 1 replaced,
     * 0 original, -1 none), else NULL. (version 2) */
    int32_t *token_labels;     /* (B, L) */
} ksample_batch;

#endif
