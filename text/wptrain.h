/* wptrain.h: WordPiece vocabulary training (BPE merges with "##" continuation
 * pieces, as Hugging Face tokenizers' WordPieceTrainer), deterministic; with
 * kwp_train_opts.no_prefix and initial_alphabet, byte-level BPE training as
 * GPT-2's (ingest/vocab_bpe.c).
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
/* When c holds more than max_words words (0: never), prunes it as a full
 * table does: every word with count <= a threshold that only rises, enough
 * of them to leave at most max_words - max_words/8 (often fewer: every word
 * at the threshold goes). With a counter made without a limit and trimmed at
 * fixed points of the input, the words kept depend on the words and counts
 * added between those points, not on the order of the additions
 * (kvocab_train_bpe_run: per batch of documents). */
void kwp_counter_trim(kwp_counter *c, size_t max_words);
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
    void (*progress)(size_t done, size_t total, void *ctx); /* pieces added / to add, may be NULL */
    void *progress_ctx;
    /* byte-level BPE (GPT-2); zero: WordPiece's behaviour */
    int no_prefix;              /* 1: no "##" forms: a char is the piece "c" wherever it is in a
                                   word, and the merge of (a, b) is a + b */
    const uint32_t *initial_alphabet; /* code points always in the alphabet, even when no word has
                                   them (GPT-2: the 256 byte chars); kept first under limit_alphabet */
    size_t n_initial_alphabet;
    kbuf *merges;               /* not NULL: every merge appended as "A B\n" (its two pieces; the
                                   words must hold no space), in merge order; a merge whose result
                                   is already a piece is listed too */
} kwp_train_opts;

/* Trains on the counted words and writes the vocabulary to out as vocab.txt
 * (one piece a line, id = line number): the special tokens, then the alphabet
 * (sorted by bytes), then the merged pieces in merge order. Returns 0, or -1
 * with err set (e.g. vocab_size smaller than specials + alphabet: say so with
 * the numbers; an initial_alphabet code point that is not a scalar value).
 * Appends to out (the caller owns it); c is not modified. */
int kwp_train(const kwp_counter *c, const kwp_train_opts *o, kbuf *out, char *err, size_t errlen);

#endif
