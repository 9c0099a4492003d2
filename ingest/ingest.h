/* ingest.h: raw dumps (files, directories, archives; plain text, JSONL,
 * MediaWiki XML) into the store's sources and documents.
 *
 * One call, kingest_run, walks the paths and runs the pipeline:
 *   reader (this thread): libarchive entries -> UTF-8 cleaning -> format parser
 *   workers (opts.threads): wikitext -> clean -> NFKC -> sentences -> hash
 *   writer (one thread): batches in input order, one transaction each
 * so documents land in the same order, with the same ids, whatever the thread
 * count. Memory is bounded by the batches in flight. */
#ifndef KILN_INGEST_H
#define KILN_INGEST_H

#include <signal.h>
#include <stdint.h>

#include "store/store.h"
#include "text/bpe.h"
#include "text/wordpiece.h"

enum kingest_format { KFMT_AUTO = 0, KFMT_TEXT, KFMT_JSONL, KFMT_MEDIAWIKI };
enum kingest_split { KSPLIT_DOC = 0, KSPLIT_BLANK_LINE, KSPLIT_LINE };

typedef struct kingest_progress {
    uint64_t bytes_done, bytes_total; /* on-disk bytes of the inputs */
    uint64_t documents;               /* documents stored so far */
    uint64_t bytes_in;                /* uncompressed bytes read so far */
    double seconds;
    const char *current;              /* file being read */
} kingest_progress;

typedef struct kingest_opts {
    int format;                /* enum kingest_format */
    int split;                 /* enum kingest_split (plain text only) */
    const char *text_field;    /* JSONL text field, default "text" */
    const char *encoding;      /* "auto" (UTF-8, UTF-16 by BOM, else detected) or a charset */
    int normalize;             /* enum ktext_norm */
    const char *lang;          /* sentence rules, default "en" */
    int threads;               /* workers, >= 1 */
    int all_namespaces;        /* MediaWiki: keep every namespace, not only 0 */
    int keep_redirects;        /* MediaWiki: keep redirect pages */
    uint64_t max_entry_bytes;  /* uncompressed bytes of one file or entry */
    double max_ratio;          /* uncompressed / compressed bytes of one file */
    uint64_t max_doc_bytes;    /* one document */
    uint64_t max_line_bytes;   /* one line (JSONL, line and blank-line splits) */
    volatile sig_atomic_t *stop; /* set to nonzero to stop at the next batch */
    void (*progress)(const kingest_progress *, void *); /* called ~5x a second */
    void *progress_ctx;
} kingest_opts;

/* Fills defaults: auto format, doc split, "text", "auto", NFKC, "en", all cores,
 * 256 GiB entries, ratio 1000 (checked past 64 MiB), 64 MiB documents and lines. */
void kingest_opts_default(kingest_opts *o);

typedef struct kingest_summary {
    uint64_t files;            /* input files found */
    uint64_t already;          /* files skipped as already ingested */
    uint64_t missing;          /* paths that did not exist or could not be read */
    uint64_t partial;          /* files cut short (truncated, corrupt, limits) */
    uint64_t documents;        /* documents stored */
    uint64_t duplicates;       /* documents dropped as duplicates */
    uint64_t skipped;          /* records skipped by policy (empty, redirects, ...) */
    uint64_t errors;           /* malformed records or entries skipped */
    uint64_t invalid_utf8;     /* sequences replaced by U+FFFD */
    uint64_t sentences;
    uint64_t bytes_read;       /* on-disk bytes */
    uint64_t bytes_in;         /* uncompressed bytes */
    uint64_t text_bytes;       /* bytes of stored text */
    double seconds;
    /* time per stage, summed over the threads doing it (seconds) */
    double t_read, t_parse, t_wikitext, t_clean, t_segment, t_write;
    int interrupted;
} kingest_summary;

/* Ingests paths into the store at db_path (created if missing). Returns 0,
 * or the sysexits code of the worst problem: EX_NOINPUT if a path was
 * missing or unreadable, EX_DATAERR if a file was partial or records were
 * malformed, EX_IOERR/EX_CANTCREAT/EX_TEMPFAIL for store failures (message
 * logged); after an interruption (*opts.stop set) sum->interrupted = 1.
 * Problems with single files and records are logged as warnings naming the
 * file, entry and line or offset; the other files go on. */
int kingest_run(const char *db_path, const char *const *paths, int npaths, const kingest_opts *o,
                kingest_summary *sum);

/* ---- tokenizing the corpus (tokenize.c) ----------------------------------------- */

typedef struct ktokenize_progress { uint64_t done, total; double seconds; } ktokenize_progress;

typedef struct ktokenize_opts {
    const char *vocab;           /* vocabulary name; NULL = the active one */
    int threads;                 /* >= 1 */
    size_t batch_docs;           /* documents per transaction (default 512; fewer past 16 MB of text) */
    volatile sig_atomic_t *stop; /* set to stop after the current batch */
    void (*progress)(const ktokenize_progress *, void *);
    void *progress_ctx;
} ktokenize_opts;

typedef struct ktokenize_summary {
    char vocab[128];
    int64_t vocab_id;
    uint64_t documents, sentences, tokens, unk; /* this run */
    int64_t total_documents, total_tokens;      /* under the vocabulary, after the run */
    double seconds;
    int interrupted;
} ktokenize_summary;

/* Tokenizes every document that has no tokens under the vocabulary yet, in
 * id order, one transaction per batch (a kill loses at most the open batch;
 * the next run goes on from there). Returns 0 or EX_* (message logged).
 * Work: the documents after the vocabulary's tokenized_through (docs/store.md,
 * vocab_progress), not the store; the piece counts are kept with the tokens.
 * A store tokenized before schema 5 is counted once (one scan). */
int ktokenize_run(const char *db_path, const ktokenize_opts *o, ktokenize_summary *sum);
/* The same on an open store handle (the caller's; not in a transaction). */
int ktokenize_store(kstore *s, const ktokenize_opts *o, ktokenize_summary *sum);

/* ---- training a vocabulary (vocab.c) ----------------------------------------------- */

typedef struct kvocab_train_opts {
    int bpe;                     /* 1: a byte-level BPE (GPT-2), kvocab_train_bpe_run; cased, accents,
                                    icu_words and limit_alphabet must be 0 */
    size_t size;                 /* vocabulary size, specials included (BPE: >= 257) */
    int cased;
    int accents;                 /* KVOCAB_ACCENTS_*: CASING (0) unless --strip-accents /
                                    --no-strip-accents; see kvocab_train_run */
    int icu_words;               /* 1: the vocabulary's words are ICU's (store: words = 'icu') */
    uint64_t min_frequency;      /* default 2 */
    size_t limit_alphabet;       /* 0 = every character */
    size_t max_words;            /* distinct words counted at most (memory bound) */
    const char *name;            /* NULL: "trained-SIZE" (or with -cased; BPE: "trained-bpe-SIZE") */
    int threads;
    volatile sig_atomic_t *stop;
    void (*progress)(const char *phase, uint64_t done, uint64_t total, void *ctx);
    void *progress_ctx;
} kvocab_train_opts;

/* The accent census's thresholds (kvocab_train_run): a script is a
 * significant part of the corpus when it has at least KVOCAB_SCRIPT_SHARE of
 * its letters, and accent stripping damages it when it would change or drop
 * at least KVOCAB_DAMAGE_SHARE of that script's letters. */
#define KVOCAB_SCRIPT_SHARE 0.01
#define KVOCAB_DAMAGE_SHARE 0.01
#define KVOCAB_MAX_SCRIPTS 16

typedef struct kvocab_train_summary {
    char name[128];
    int64_t vocab_id;
    size_t size;
    uint64_t documents, distinct_words, pruned;
    double seconds, count_seconds, merge_seconds;
    int interrupted;
    /* accents: what was stored (KVOCAB_ACCENTS_*), and whether the census
     * decided it (auto_keep: neither flag given, uncased, accents kept) */
    int accents, auto_keep;
    /* the census over the corpus read: the scripts with most letters first
     * (at most KVOCAB_MAX_SCRIPTS of n_scripts), all letters */
    kwp_script_count scripts[KVOCAB_MAX_SCRIPTS];
    size_t n_scripts;
    uint64_t letters;
    /* BPE: the merges stored (size - 257 of them, more when some merges made a
     * token already there, fewer when the pairs ran out) */
    int bpe;
    size_t merges;
} kvocab_train_summary;

/* Counts the words of every stored document (BERT's basic tokenizer), trains
 * a WordPiece vocabulary and stores it (active if none is). Deterministic for
 * the same corpus and options, whatever the thread count.
 * Accents: while counting, the census (kwp_census) measures per script what
 * accent stripping would do to the corpus. Uncased with accents CASING (no
 * flag), when a script that is not accents-only (Hangul, kana, Devanagari,
 * Thai, ...) is a significant part of the corpus and stripping damages it
 * (thresholds above), the words are counted again without stripping and the
 * vocabulary is stored with accents KEEP; a warning gives the figures. */
int kvocab_train_run(const char *db_path, const kvocab_train_opts *o, kvocab_train_summary *sum);

/* kvocab_train_run with o->bpe (vocab_bpe.c): a byte-level BPE as GPT-2's.
 * Words: GPT-2's pre-tokens (kbpe_pretokenize) of every document's sentences
 * joined by spaces (as kiln tokenize encodes them), each byte written as its
 * bytes_to_unicode char; counted per batch of documents and trimmed to
 * max_words at the end of each batch (the result does not depend on the
 * thread count). Merges as kwp_train's (no "##" forms). Ids: the 256 byte
 * tokens in code point order (GPT-2's encoder.json order), the merged tokens
 * in merge order, "<|endoftext|>" last; o->size counts all of them. Stored as
 * kind BPE (vocab.json and merges.txt as kbpe_vocab_json / kbpe_merges_text
 * write them). Returns 0 or EX_* (message logged; EX_USAGE for a size < 257). */
int kvocab_train_bpe_run(const char *db_path, const kvocab_train_opts *o, kvocab_train_summary *sum);

/* The kwp_vocab_load mode (KWP_* bits) of a stored vocabulary: its casing,
 * accents and words. */
int kvocab_row_mode(const kvocab_row *r);

/* The store row of a byte-level BPE vocabulary: kind, size, its canonical
 * vocab.json and merges.txt (written into *json and *merges, the caller's
 * kbufs, which r->pieces and r->merges then point into), their content hash
 * (of vocab.json followed by merges.txt) and the fixed fields (cased 1,
 * default max_word_chars). The caller sets r->name and r->origin. */
void kvocab_bpe_row(const kbpe_vocab *v, kvocab_row *r, kbuf *json, kbuf *merges);

#endif
