/* sampler/dataset.h: labelled datasets for fine-tuning (GLUE-style TSV or
 * JSONL), tokenized once with the BERT WordPiece tokenizer, read in a
 * deterministic per-epoch order into ksample_batch rows (KOBJ_CLASSIFY).
 *
 * Not a sampler of the pretraining corpus: no store, no snapshot, no masking.
 *
 * Input formats (chosen by extension, or forced with kdataset_opts.format):
 *   .tsv            GLUE TSV: a header line naming the columns, then one
 *                   example a line; fields split on TAB, no quoting (Python's
 *                   QUOTE_NONE); only "\n" ends a line ("\r" before it is
 *                   stripped; U+2028, U+0085, a lone "\r" are text). Every
 *                   line must have as many fields as the header.
 *   .jsonl .json .ndjson
 *                   one JSON object a line with the same field names; text
 *                   fields are strings; a class label a string or an
 *                   integer; a regression label a number or a numeric string.
 *   Both: a UTF-8 BOM at the start is skipped; blank lines are skipped;
 *   the whole file must be valid UTF-8. Line numbers in messages are 1-based
 *   physical lines of the file (the TSV header is line 1).
 *
 * Labels: num_labels >= 2 (or 0 = "whatever the label set says") is
 * classification, the label column's strings mapped to 0 .. K-1 by the label
 * set: the caller's (label_names, e.g. from a checkpoint or from the train
 * file's dataset) or, when none is given, the set of labels in this file,
 * sorted numerically when every label is an integer ("0" < "1" < "10"), else
 * by bytes (strcmp). num_labels == 1 is regression (STS-B): the label parsed
 * as a finite float. label_column NULL loads an unlabelled file (GLUE test
 * sets): labels -1, targets NaN.
 *
 * Rows: [CLS] A [SEP] (token types 0) or [CLS] A [SEP] B [SEP] (A part 0,
 * B part and its [SEP] 1), padded with [PAD] (type 0) to the batch's L.
 * Truncation to seq_len is Hugging Face's "longest_first": one token at a
 * time from the end of the longer of A and B; when they are equally long,
 * from B. This is transformers' truncate_sequences loop (`if pair_ids is
 * None or len(ids) > len(pair_ids): ids = ids[:-1] else: pair_ids =
 * pair_ids[:-1]`) and equals its later closed form (the difference from the
 * longer one, then the rest split with the odd token taken from B).
 *
 * Memory: 4 bytes per token plus 32 bytes per example (tokens <= bytes of
 * text, so bounded by the file size); the original text is not kept, only
 * each example's line number. The file is read whole while loading.
 *
 * Thread safety: a kdataset is read-only after kdataset_load; any number of
 * threads may fill their own batches from it at once. */
#ifndef KILN_SAMPLER_DATASET_H
#define KILN_SAMPLER_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "sampler/batch.h"
#include "text/wordpiece.h"

enum { KDS_FORMAT_AUTO = 0, KDS_FORMAT_TSV = 1, KDS_FORMAT_JSONL = 2 };

typedef struct kdataset_opts {
    int format;                   /* KDS_FORMAT_*; AUTO = by extension */
    const char *text_column;      /* "sentence" */
    const char *text_pair_column; /* NULL = single sentence */
    const char *label_column;     /* "label"; NULL = unlabelled */
    int num_labels;               /* 0 = size of the label set, 1 = regression, K >= 2 must match */
    const char *const *label_names; /* (n_label_names) the label set in id order, or NULL = from the file */
    int n_label_names;
    int seq_len;                  /* L >= 3: [CLS] [SEP] and, for pairs, one more [SEP] */
    size_t max_word_chars;        /* WordPiece's long-word limit; 0 = KWP_DEFAULT_MAX_WORD_CHARS */
} kdataset_opts;

/* Defaults: auto format, "sentence", no pair, "label", num_labels 0, no
 * label names, seq_len 128, max_word_chars 0. */
void kdataset_opts_defaults(kdataset_opts *o);

typedef struct kdataset kdataset;

/* Reads and tokenizes the file at path with vocabulary v (which need not
 * outlive the dataset: the special ids are copied).
 * Returns 0 with *out (owned; free with kdataset_free), or, with *out NULL,
 * err filled and nothing allocated:
 *   EX_NOINPUT  the file is missing or unreadable ("PATH: reason");
 *   EX_DATAERR  bad content, as "PATH:LINE: what" (missing column in the
 *               header or in a JSON object, a field count different from
 *               the header's, malformed JSON, invalid UTF-8, a label outside
 *               the given set, a non-numeric regression label, an empty
 *               file or one without examples: LINE is then its last line,
 *               at least 1) or "PATH: what" (a label set whose size differs
 *               from num_labels, a single label in the file when num_labels
 *               is 0, a vocabulary without [CLS]/[SEP]/[PAD]);
 *   EX_USAGE    bad options (seq_len < 3, unknown format, an extension that
 *               names no format, label_names with num_labels 1 or of
 *               another size than num_labels, duplicate label names). */
int kdataset_load(const kdataset_opts *o, const char *path, const kwp_vocab *v, kdataset **out,
                  char *err, size_t errlen);
void kdataset_free(kdataset *d);

int64_t kdataset_count(const kdataset *d);          /* examples */
/* Classes K (>= 2) or 1 for regression; for an unlabelled file what the
 * options said (label names or num_labels), 0 when they said nothing. */
int kdataset_num_labels(const kdataset *d);
/* Name of class i (NUL-terminated, owned by d), NULL out of range or for
 * regression / unlabelled data. */
const char *kdataset_label_name(const kdataset *d, int i);
/* The label set as an array of K names (owned by d), to pass as
 * kdataset_opts.label_names when loading the dev/test file. */
const char *const *kdataset_label_names(const kdataset *d);
int kdataset_seq_len(const kdataset *d);
int kdataset_has_pair(const kdataset *d);
/* Examples that lost tokens to truncation. */
int64_t kdataset_truncated(const kdataset *d);

/* Example `row` (0 <= row < count): its class (-1 for regression or
 * unlabelled), its regression target (NaN when none), its 1-based line in
 * the file, and its token ids before [CLS]/[SEP] (after truncation):
 * *a (n_a ids) and *b (n_b ids, 0 without a pair), pointers into d. */
int32_t kdataset_label(const kdataset *d, int64_t row);
float kdataset_target(const kdataset *d, int64_t row);
int64_t kdataset_line(const kdataset *d, int64_t row);
void kdataset_tokens(const kdataset *d, int64_t row, const int32_t **a, int *n_a, const int32_t **b,
                     int *n_b);

/* The example order of one epoch: out[0..n) gets a permutation of 0..n-1,
 * a pure function of (n, seed, epoch) (Fisher-Yates driven by SplitMix64
 * keyed on seed and epoch; unbiased draws). */
void kdataset_order(int64_t n, uint64_t seed, uint64_t epoch, int64_t *out);

/* Batches for labelled rows: capacity rows of length L, P = 0 (no masked
 * arrays: NULL), labels (B) and targets (B) allocated, no entity arrays;
 * version KSAMPLE_BATCH_VERSION, objectives KOBJ_CLASSIFY, special ids from
 * v (-1 where v has none). NULL on bad sizes (capacity < 1, L < 3). Owned;
 * free with kdataset_batch_free (which frees every array, targets included). */
ksample_batch *kdataset_batch_new(const kwp_vocab *v, int capacity, int L);
void kdataset_batch_free(ksample_batch *b);

/* Fills rows 0..n-1 of b with examples rows[0..n): input ids, token types,
 * lengths, labels, targets, index (= the example's row); B = n; special ids
 * set from the dataset. b->L must be >= kdataset_seq_len(d) (rows are padded
 * to b->L). Returns 0, or EX_SOFTWARE (b untouched) when n > capacity,
 * b->L is too short or a row is out of range. */
int kdataset_fill(const kdataset *d, const int64_t *rows, int n, ksample_batch *b);

/* One free text (or pair; text_b NULL = single) for prediction (`kiln
 * classify`): tokenized with t (made for the vocabulary of b's special
 * ids), truncated to b->L by longest_first, written into row `row` of b
 * (label -1, target NaN, index = row). b->B is raised to row + 1 if below.
 * *truncated (may be NULL) gets 1 when tokens were dropped. Returns 0, or
 * EX_SOFTWARE when row is outside the capacity or b has no [CLS]/[SEP]. */
int kdataset_encode_row(kwp_tok *t, const char *text_a, size_t len_a, const char *text_b, size_t len_b,
                        ksample_batch *b, int row, int *truncated);

#endif
