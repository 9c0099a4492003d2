/* wptrain.h: WordPiece vocabulary training (BPE merges with "##" continuation
 * pieces, as Hugging Face tokenizers' WordPieceTrainer), deterministic.
 *
 * Two parts: a word counter with bounded memory (one per thread, merged at the
 * end), and the trainer, which turns the counted words into a vocab.txt.
 * No globals: distinct objects may be used from distinct threads at once; one
 * object is not safe to share between threads without a lock. */
#ifndef KILN_WPTRAIN_H
#define KILN_WPTRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

/* Word counter with bounded memory. */
typedef struct kwp_counter kwp_counter;
/* max_words: distinct words kept at most (e.g. 4,000,000; 0 = no limit); when
 * the table is full, the words with the lowest counts are pruned (all words
 * with count <= a threshold that rises as needed, so the result does not
 * depend on hash order), and the number of pruned words/occurrences is kept
 * for reporting.
 * Ownership: the caller owns the returned counter; free with kwp_counter_free. */
kwp_counter *kwp_counter_new(size_t max_words);
/* Adds count occurrences of word[0..len) (bytes copied; len 0 or count 0 is a
 * no-op). Counts saturate at UINT64_MAX. May prune (see kwp_counter_new). */
void kwp_counter_add(kwp_counter *c, const char *word, size_t len, uint64_t count);
/* Merges b into a (for per-thread counters); b is left empty (and usable).
 * b's pruned totals move to a. a == b is a no-op. */
void kwp_counter_merge(kwp_counter *a, kwp_counter *b);
size_t kwp_counter_size(const kwp_counter *c);     /* distinct words held */
uint64_t kwp_counter_pruned(const kwp_counter *c); /* occurrences dropped by pruning */
void kwp_counter_free(kwp_counter *c);             /* NULL is fine */

typedef struct kwp_train_opts {
    size_t vocab_size;          /* target size, specials included */
    uint64_t min_frequency;     /* a pair merged only if its count >= this (default 2; 0 acts as 1) */
    size_t limit_alphabet;      /* keep only the N most frequent characters (0 = all) */
    const char *const *special; /* tokens placed first, in order ([PAD] [UNK] [CLS] [SEP] [MASK]) */
    size_t n_special;
    size_t max_piece_chars;     /* do not create pieces longer than this many chars (0 = no limit; HF default none) */
    void (*progress)(size_t done, size_t total, void *ctx); /* merges done / to do, may be NULL */
    void *progress_ctx;
} kwp_train_opts;

/* Trains on the counted words and writes the vocabulary to out as vocab.txt
 * (one piece a line, id = line number): the special tokens, then the alphabet,
 * then the merged pieces in merge order. Returns 0, or -1 with err set (e.g.
 * vocab_size smaller than specials + alphabet: say so with the numbers).
 * Appends to out (the caller owns it); c is not modified. */
int kwp_train(const kwp_counter *c, const kwp_train_opts *o, kbuf *out, char *err, size_t errlen);

#endif
