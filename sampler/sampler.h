/* sampler/sampler.h: deterministic pretraining samples over a fixed snapshot
 * of the tokenized corpus (docs/sampler.md).
 *
 * A snapshot (snapshot.c) is an immutable file made once from the store:
 * every tokenized document of one vocabulary up to a document id, with its
 * sentence ends, word starts and KG mentions. A sampler (sampler.c) opens it
 * read-only (mmap), builds a small index of chunks, and makes the sample at
 * position i of epoch e as a pure function of (seed, e, i, snapshot): a
 * counter-based RNG keyed by those, a keyed permutation of the chunks per
 * epoch. Seeking costs one sample; the stream does not depend on threads.
 *
 * Thread safety: a ksampler is read-only after ksampler_open and may be used
 * by any number of threads at once (each with its own batch). */
#ifndef KILN_SAMPLER_H
#define KILN_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "sampler/batch.h"
#include "store/store.h"

/* ---- snapshots (snapshot.c) ---------------------------------------------- */

typedef struct ksnapshot ksnapshot;

/* Makes (or finds) the snapshot of vocabulary vocab_id's tokenized documents
 * as they are now in the store, in folder dir (created 0755 if missing) as
 * "snap-<vocab>-<summary>.ksnap", written atomically (temp, fsync, rename).
 * vocab_size is the vocabulary's size (token ids must be below it).
 * An existing file with the same summary is reused. The path goes to
 * path_out (len bytes). Returns 0 or an EX_* code with err filled. */
int ksnapshot_build(kstore *s, int64_t vocab_id, uint32_t vocab_size, const char *dir, char *path_out, size_t len,
                    char *err, size_t errlen);

/* Opens a snapshot file read-only (mmap) after checking magic, version,
 * sizes and every offset table. NULL with err filled on a missing, foreign
 * or damaged file. ksnapshot_close releases it. */
ksnapshot *ksnapshot_open(const char *path, char *err, size_t errlen);
void ksnapshot_close(ksnapshot *sn);

typedef struct ksnapshot_info {
    int64_t vocab_id, max_doc_id;
    uint64_t docs, sentences, tokens, mentions;
    uint32_t vocab_size;
    uint8_t key[16];              /* XXH3-128 over the whole content */
    char key_hex[33];
} ksnapshot_info;
void ksnapshot_get_info(const ksnapshot *sn, ksnapshot_info *info);
/* Adds each token id's count over the snapshot's documents to counts
 * (vocab_size entries), for unigram baselines. */
void ksnapshot_token_counts(const ksnapshot *sn, uint64_t *counts);

/* ---- samplers (sampler.c) ------------------------------------------------ */

typedef struct ksampler_opts {
    int objectives;            /* KOBJ_* bits */
    int seq_len;               /* L, >= 8 */
    int max_predictions;       /* P; 0 = the objective's default (see docs) */
    double mask_prob;          /* 0.15 */
    double short_seq_prob;     /* 0.1 */
    int max_ngram;             /* 3 */
    int dea;                   /* ERNIE dEA noise on entity_ids (5% random, 15% dropped) */
    int hide_masked_entities;  /* 1: a mention with a masked token gets entity_ids 0 (labels kept) */
    double valid_fraction;     /* share of documents in the validation split, 0.01 */
    int split;                 /* 0 = train, 1 = validation */
    uint64_t seed;
    /* Special ids and the vocabulary size (ids >= vocab_size never drawn). */
    int32_t pad_id, cls_id, sep_id, mask_id;
    uint32_t vocab_size;
    /* Ids the random-replacement branch may draw (n_random > 0), else every
     * id of the vocabulary that is not pad/cls/sep/mask. Copied. */
    const int32_t *random_ids;
    size_t n_random;
} ksampler_opts;

/* Defaults: mlm, L 128, P 0, 0.15, 0.1, 3, no dea, 0.01 train split, seed 0,
 * BERT's special ids 0/101/102/103 and V 30522. */
void ksampler_opts_defaults(ksampler_opts *o);

typedef struct ksampler ksampler;

/* Builds the index over sn for these options (the snapshot must outlive it).
 * Fails (NULL, err filled) on bad options or when the split has no usable
 * document. Memory: see docs/sampler.md (about 12 bytes per chunk plus 8 per
 * document). */
ksampler *ksampler_open(const ksnapshot *sn, const ksampler_opts *o, char *err, size_t errlen);
void ksampler_close(ksampler *sp);

/* Samples in one epoch (chunks of the split, or CLM windows). */
uint64_t ksampler_epoch_size(const ksampler *sp);
/* Documents in the sampler's split. */
uint64_t ksampler_split_docs(const ksampler *sp);
/* Whether a document whose content hash starts with doc_hash (its first 8
 * bytes, as the snapshot keeps them) is held out (the validation split) at
 * valid_fraction: the test every sampler applies, a pure function of the
 * document's content (the seed plays no part). */
int ksampler_held_out(uint64_t doc_hash, double valid_fraction);
const ksampler_opts *ksampler_options(const ksampler *sp);
/* The unit (chunk or CLM window, in [0, epoch size)) that stream position pos
 * of epoch `epoch` is made from: a bijection of each epoch's positions. */
uint64_t ksampler_unit(const ksampler *sp, uint64_t epoch, uint64_t pos);

/* Batches: ksampler_batch_new allocates a batch of `capacity` rows for the
 * sampler's L and P (and entity arrays when KOBJ_ENTITIES); NULL on OOM.
 * ksampler_batch_free frees it and its arrays. */
ksample_batch *ksampler_batch_new(const ksampler *sp, int capacity);
void ksampler_batch_free(ksample_batch *b);

/* Counters a caller may collect while sampling (for --stats). */
typedef struct ksample_stats {
    uint64_t rows, tokens, pad, maskable, masked, masked_mask, masked_keep, masked_random;
    uint64_t labelled, label1, entity_tokens, entity_rows, dea_random, dea_dropped, entities_hidden;
    uint64_t spans[4];         /* n-gram / whole-word spans of 1, 2, 3 words ([0] unused) */
    uint64_t special_masked;   /* must stay 0 */
    uint64_t truncated_rows;
} ksample_stats;

/* Fills rows [0, count) of b with the samples at stream positions
 * pos0 + k * stride (k < count), positions counted from the start of epoch
 * `epoch` (a position past the epoch's size continues into the next
 * epochs). stats may be NULL. Returns 0, or EX_SOFTWARE if count > capacity. */
int ksampler_fill(const ksampler *sp, uint64_t epoch, uint64_t pos0, uint64_t stride, int count,
                  ksample_batch *b, ksample_stats *stats);

/* ---- the prefetch stream ------------------------------------------------- */

/* Worker threads fill a bounded ring of batches ahead of the consumer; batch k
 * of the stream holds positions (start + k*B + j) * n_shards + shard,
 * j < B, so shards are disjoint and interleaved and together the whole
 * stream. The content does not depend on the number of threads. */
typedef struct ksampler_stream ksampler_stream;
ksampler_stream *ksampler_stream_new(const ksampler *sp, uint64_t epoch, uint64_t start, int B,
                                     int shard, int n_shards, int threads, int depth,
                                     char *err, size_t errlen);
/* The next batch, valid until the next call or ksampler_stream_free (the
 * consumer reads it in place). stats, if given, receives the batch's
 * counters. Never NULL. */
const ksample_batch *ksampler_stream_next(ksampler_stream *st, ksample_stats *stats);
/* Stops the workers and frees the ring. */
void ksampler_stream_free(ksampler_stream *st);

#endif
