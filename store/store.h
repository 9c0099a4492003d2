/* store.h: kiln's SQLite store: opening, schema migrations and typed access to
 * every table. Every SQL string of kiln lives in store/; no math here.
 *
 * Errors: functions return 0 on success or a sysexits.h code (EX_DATAERR for a
 * foreign or newer file, EX_NOINPUT for a missing one, EX_CANTCREAT when it
 * cannot be created, EX_TEMPFAIL when locked, EX_IOERR/EX_SOFTWARE otherwise)
 * and leave a message for kstore_errmsg(). A kstore is used by one thread. */
#ifndef KILN_STORE_H
#define KILN_STORE_H

#include <stdint.h>
#include <stddef.h>

#include "util/util.h"

typedef struct kstore kstore;

#define KSTORE_APPLICATION_ID 0x4B494C4E /* "KILN" */

enum {
    KSTORE_CREATE = 1,   /* create the file if it does not exist */
    KSTORE_READONLY = 2, /* open read-only (must exist) */
};

/* Opens (and, with KSTORE_CREATE, creates) the store at path, checks that it
 * is a kiln store of a schema this build knows, and migrates it forward inside
 * one transaction. On success *out owns the handle (free with kstore_close).
 * On failure *out is NULL and err (errlen bytes) holds the message. */
int kstore_open(const char *path, int flags, kstore **out, char *err, size_t errlen);
void kstore_close(kstore *s);
const char *kstore_errmsg(const kstore *s);
int kstore_schema_version(const kstore *s);
int kstore_latest_schema_version(void);

/* Transactions (BEGIN IMMEDIATE / COMMIT / ROLLBACK). */
int kstore_begin(kstore *s);
int kstore_commit(kstore *s);
int kstore_rollback(kstore *s);

/* ---- sources ----------------------------------------------------------- */
typedef struct ksource {
    int64_t id;
    const char *path;
    uint8_t hash[KHASH_LEN];
    int64_t size;
    const char *format;
    const char *status;   /* running, complete, partial, failed; "interrupted"
                             is reported for a running row whose process died */
    const char *error;    /* may be NULL */
    int64_t documents, duplicates, skipped, bytes_in, sentences, text_bytes;
    int64_t started_at, finished_at;
} ksource;

/* Registers an ingest of the file with this content hash, in its own
 * transaction. If a source with the hash is complete (or partial: the same
 * bytes give the same result), *already is set to 1 and nothing changes.
 * Otherwise the row is created, or an interrupted one is taken over, with
 * status running and this process's pid; *id is its id. A taken-over row
 * keeps the counters of its stored documents (documents, sentences,
 * text_bytes) and restarts those of the records read (duplicates, skipped,
 * bytes_in): the file is read again from its start, and its documents stored
 * before are not duplicates (kstore_source_last_doc, kstore_doc_find). */
int kstore_source_begin(kstore *s, const char *path, const uint8_t hash[KHASH_LEN],
                        int64_t size, int64_t *id, int *already);
/* Adds counters to a source; call inside the transaction that stores the
 * documents they count, so that the counters always match the rows. */
typedef struct ksource_delta {
    int64_t documents, duplicates, skipped, bytes_in, sentences, text_bytes;
} ksource_delta;
int kstore_source_add(kstore *s, int64_t id, const ksource_delta *d);
/* Ends a source: status complete, partial or failed; error may be NULL.
 * format is the detected format. Its own transaction. */
int kstore_source_finish(kstore *s, int64_t id, const char *status, const char *format,
                         const char *error);
/* Calls cb for every source in id order (the struct is valid during the call).
 * cb returns nonzero to stop. */
int kstore_sources_foreach(kstore *s, int (*cb)(const ksource *, void *), void *ctx);

/* ---- documents --------------------------------------------------------- */
typedef struct kdoc {
    int64_t id;            /* set by kstore_doc_insert / reads */
    int64_t source_id;
    const char *entry;     /* "" for a plain file */
    const char *ext_id;    /* may be NULL */
    const char *title;     /* may be NULL */
    const char *url;       /* may be NULL */
    uint8_t hash[KHASH_LEN];
    const char *text;      /* (text_len) bytes of UTF-8 */
    size_t text_len;
    const uint32_t *sent_ends; /* (n_sentences) byte offsets, end exclusive */
    size_t n_sentences;
} kdoc;

/* Inserts a document unless one with the same content hash exists; *inserted
 * tells which. Call inside a transaction. */
int kstore_doc_insert(kstore *s, kdoc *d, int *inserted);
/* The document with this content hash: its id and source (0, 0 if none). */
int kstore_doc_find(kstore *s, const uint8_t hash[KHASH_LEN], int64_t *doc_id, int64_t *source_id);
/* The largest document id of a source (0 if it has none). */
int kstore_source_last_doc(kstore *s, int64_t source_id, int64_t *doc_id);
/* Calls cb for every document (of source_id, or all if source_id <= 0) in id
 * order; the struct and its strings are valid during the call only. */
int kstore_docs_foreach(kstore *s, int64_t source_id, int (*cb)(const kdoc *, void *), void *ctx);

/* ---- vocabularies --------------------------------------------------------- */
typedef struct kvocab_row {
    int64_t id;
    const char *name;
    int cased;
    int64_t size;
    const char *pieces;     /* vocab.txt text, pieces_len bytes */
    size_t pieces_len;
    uint8_t hash[KHASH_LEN];
    int64_t max_word_chars;
    int accents;            /* KVOCAB_ACCENTS_*: strip_accents (NULL, 1, 0 in the store) */
    int icu_words;          /* 1: words = 'icu' (ICU word break), 0: 'bert' */
    int kind;               /* KVOCAB_WORDPIECE (pieces: vocab.txt) or KVOCAB_BPE
                               (pieces: vocab.json, merges: merges.txt) */
    const char *merges;     /* merges_len bytes; NULL for WordPiece */
    size_t merges_len;
    const char *origin;
    int active;
    int64_t created_at;
    int64_t tokenized_docs, tokens; /* filled by kstore_vocabs_foreach only */
} kvocab_row;

/* kvocab_row.accents: transformers' strip_accents. CASING (0, the zero
 * value: stripped exactly when uncased), STRIP (always), KEEP (never). */
enum { KVOCAB_ACCENTS_CASING = 0, KVOCAB_ACCENTS_STRIP = 1, KVOCAB_ACCENTS_KEEP = 2 };
/* kvocab_row.kind (vocabularies.kind, schemas/006_bpe.sql). */
enum { KVOCAB_WORDPIECE = 0, KVOCAB_BPE = 1 };

/* Adds a vocabulary (its own transaction); it becomes active if none is.
 * EX_DATAERR with a message if the name is taken. *id is set. */
int kstore_vocab_add(kstore *s, const kvocab_row *v, int64_t *id);
/* Reads the vocabulary called name, or the active one if name is NULL.
 * EX_NOINPUT (message says what to do) if there is none. The strings are
 * copied into *pieces and *meta (owned by the caller's kbufs): r->pieces,
 * r->name, r->origin and r->merges (BPE) point into them. */
int kstore_vocab_get(kstore *s, const char *name, kvocab_row *r, kbuf *pieces, kbuf *meta);
/* Finds a vocabulary with like's kind, pieces (hash), casing, accents and words
 * (the one named like->name if there is one, else the oldest); *id = 0 if
 * none, else its id and *name (the caller's kbuf) its name. */
int kstore_vocab_find_hash(kstore *s, const kvocab_row *like, int64_t *id, kbuf *name);
int kstore_vocab_set_active(kstore *s, const char *name);
int kstore_vocabs_foreach(kstore *s, int (*cb)(const kvocab_row *, void *), void *ctx);

/* ---- tokenized documents ------------------------------------------------- */
/* Layouts of doc_tokens.tokens (docs/store.md). */
enum { KTOK_LAYOUT_U16 = 1, KTOK_LAYOUT_U32 = 2 };
typedef struct ktokens_row {
    int64_t doc_id, vocab_id;
    int layout;
    size_t n_tokens;
    const void *tokens;      /* n_tokens * (2 or 4) bytes */
    size_t n_sentences;
    const uint32_t *sent_ends;
    const uint8_t *word_starts; /* (n_tokens + 7) / 8 bytes */
} ktokens_row;
/* Stores one document's tokens; call inside a transaction, and in the same
 * transaction kstore_progress_tokenized (invariant 3 of progress.c). A
 * document that has tokens under the vocabulary already keeps them (tokens
 * are a function of the text and the vocabulary): *inserted (may be NULL)
 * says whether the row was stored. */
int kstore_tokens_insert(kstore *s, const ktokens_row *r, int *inserted);
int kstore_tokens_put(kstore *s, const ktokens_row *r); /* kstore_tokens_insert, inserted ignored */
/* Calls cb for up to limit documents with id > after_id that have no tokens
 * under vocab_id, in id order. */
int kstore_docs_untokenized(kstore *s, int64_t vocab_id, int64_t after_id, size_t limit,
                            int (*cb)(const kdoc *, void *), void *ctx);
/* Number of documents with and without tokens under vocab_id, and tokens.
 * Costs the documents after the vocabulary's tokenized_through when its
 * counts are exact (kstore_progress_exact), a scan of the store otherwise. */
int kstore_tokens_count(kstore *s, int64_t vocab_id, int64_t *done, int64_t *todo, int64_t *tokens);
/* Calls cb for every tokenized document of vocab_id (doc_id > after_id) in
 * doc_id order; blobs are checked against their counts (EX_DATAERR). */
int kstore_tokens_foreach(kstore *s, int64_t vocab_id, int64_t after_id,
                          int (*cb)(const ktokens_row *, void *), void *ctx);

/* Snapshot reads (sampler/): every tokenized document of vocab_id with
 * doc_id <= max_doc_id, in doc_id order, with the document's content hash
 * (KHASH_LEN bytes); blobs checked as in kstore_tokens_foreach. */
int kstore_snapshot_docs_foreach(kstore *s, int64_t vocab_id, int64_t max_doc_id,
                                 int (*cb)(const ktokens_row *, const uint8_t *hash, void *),
                                 void *ctx);
/* Cheap summary of a vocabulary's tokenized documents (one index scan): count,
 * largest id, sum of ids, tokens. Two equal summaries mean the same snapshot
 * unless rows were replaced in place (re-tokenization), which the snapshot's
 * content key then catches. */
int kstore_tokens_summary(kstore *s, int64_t vocab_id, int64_t *docs, int64_t *max_doc_id,
                          int64_t *sum_doc_ids, int64_t *tokens);

/* ---- progress of tokenizing and linking (progress.c) ----------------------- */
/* vocab_progress (schemas/005_progress.sql, docs/store.md): where kiln
 * tokenize, kiln kg link and the daemon go on from, and the corpus's piece
 * counts, so that their work is that of the new documents, not of the store. */
typedef struct kvocab_progress {
    int64_t tokenized_through; /* every document with id <= this has tokens */
    int64_t docs, tokens;      /* doc_tokens rows of the vocabulary, their tokens */
    int counted;               /* docs, tokens and the piece counts are exact */
    int64_t counted_tokens;    /* tokens whose pieces are counted */
    int64_t linked_through;    /* every document with id <= this has tokens and */
    int64_t linked_generation; /* is linked at this alias generation */
} kvocab_progress;
/* The vocabulary's progress (all zero if it has no row). */
int kstore_progress_get(kstore *s, int64_t vocab_id, kvocab_progress *p);
/* 1 when docs, tokens and the piece counts can be trusted. */
int kstore_progress_exact(const kvocab_progress *p);
/* Counts docs, tokens and pieces again unless they are exact: one scan of the
 * vocabulary's tokens inside one write transaction (once for a store
 * tokenized before schema 5). *recounted says whether it did. */
int kstore_progress_recount(kstore *s, int64_t vocab_id, int *recounted);
/* Inside the transaction that stored tokens (kstore_tokens_insert): adds the
 * piece counts of the documents stored (freq[id] for ids < n; their tokens in
 * all: tokens) and records that every document with id <= through has
 * tokens (the cursor never moves back). freq NULL: counts not given (the
 * next kstore_progress_recount counts them). */
int kstore_progress_tokenized(kstore *s, int64_t vocab_id, int64_t through, const uint64_t *freq,
                              size_t n, int64_t tokens);
/* Its own transaction: moves tokenized_through to the last document when
 * every document after it has tokens. Costs the documents after it. */
int kstore_progress_tokens_settle(kstore *s, int64_t vocab_id);
/* The piece counts: freq[id] for ids < n (zeroed first). Exact when
 * kstore_progress_exact. */
int kstore_token_counts_get(kstore *s, int64_t vocab_id, uint64_t *freq, size_t n);
/* Inside the transaction that stored links: every document with id <=
 * min(through, tokenized_through) that has tokens is linked at generation. */
int kstore_progress_linked(kstore *s, int64_t vocab_id, int64_t through, int64_t generation);
/* Its own transaction: linked_through = tokenized_through when every
 * tokenized document up to it is linked at generation. Costs the tokenized
 * documents after linked_through. */
int kstore_progress_links_settle(kstore *s, int64_t vocab_id, int64_t generation);
/* Virtual-machine steps run by the handle's statements so far (SQLite's
 * SQLITE_STMTSTATUS_VM_STEP summed over the cached statements): a measure of
 * work, for tests that check that a step does not grow with the store. */
uint64_t kstore_vm_steps(kstore *s);

/* ---- knowledge graph (kg.c) ------------------------------------------------ */
/* Registers an import of a file (its own transaction): *already = 1 when
 * the same bytes were imported completely with the same kind and options. */
int kstore_kg_file_begin(kstore *s, const char *path, const uint8_t hash[KHASH_LEN],
                         const char *kind, const char *options, int64_t *id, int *already);
int kstore_kg_file_finish(kstore *s, int64_t id, const char *status, const char *error,
                          int64_t triples, int64_t names, int64_t bad_lines);
/* Get-or-create by external id (inside a transaction). */
int kstore_kg_entity(kstore *s, const char *ext_id, size_t len, int64_t *id);
int kstore_kg_relation(kstore *s, const char *ext_id, size_t len, int64_t *id);
int kstore_kg_triple_add(kstore *s, int64_t h, int64_t r, int64_t t, const char *split,
                         int64_t file_id, int *inserted);
/* Sets an entity's label / description (NULL: unchanged); with only_if_empty
 * a value already there is kept. *changed tells whether anything changed. */
int kstore_kg_entity_set(kstore *s, int64_t id, const char *label, const char *desc,
                         int only_if_empty, int *changed);
int kstore_kg_relation_set_label(kstore *s, int64_t id, const char *label);
int kstore_kg_alias_add(kstore *s, int64_t entity_id, const char *alias, int *inserted);
int kstore_kg_bump_generation(kstore *s);
/* Inside the transaction that stores a file's triples and names: adds them
 * to the file's counters (so that they always equal the rows, whatever
 * happens to the import later; kstore_kg_file_finish adds the rest). */
int kstore_kg_file_add(kstore *s, int64_t id, int64_t triples, int64_t names);
/* Inside a transaction that adds aliases: records that the alias generation
 * must be bumped (kg_meta 'aliases_pending'), so that an import that fails
 * before its bump is bumped by the next one. */
int kstore_kg_aliases_pending(kstore *s);
/* Its own transaction: bumps the alias generation and clears the mark if
 * aliases are pending; *bumped says whether it did. */
int kstore_kg_bump_if_pending(kstore *s, int *bumped);
int kstore_kg_generation(kstore *s, int64_t *gen);
/* What a linker is built from: the alias generation, the last kg_files id
 * and the triples the files added (cheap: the kg_files rows). */
int kstore_kg_state(kstore *s, int64_t *gen, int64_t *files, int64_t *triples);

typedef struct kkg_counts {
    int64_t entities, relations, triples, train, valid, test, aliases, mentions, embeddings,
        files, linked_docs;
} kkg_counts;
int kstore_kg_counts(kstore *s, kkg_counts *c);

/* Every triple: cb(head, relation, tail, split 0 train / 1 valid / 2 test). */
int kstore_kg_triples_foreach(kstore *s, int (*cb)(int64_t h, int64_t r, int64_t t, int split, void *),
                              void *ctx);
/* Every entity in id order with its external id and label (may be NULL). */
int kstore_kg_entities_foreach(kstore *s, int (*cb)(int64_t id, const char *ext_id,
                                                    const char *label, void *), void *ctx);
int kstore_kg_relations_foreach(kstore *s, int (*cb)(int64_t id, const char *ext_id,
                                                     const char *label, void *), void *ctx);
/* Every alias: cb(entity_id, alias). */
int kstore_kg_aliases_foreach(kstore *s, int (*cb)(int64_t entity, const char *alias, void *),
                              void *ctx);
/* Finds an entity by external id, else label, else alias (exact); *id = 0 if none. */
int kstore_kg_find_entity(kstore *s, const char *q, int64_t *id);
/* Finds an entity by its external id (the KG's key) only; *id = 0 if none. */
int kstore_kg_entity_by_key(kstore *s, const char *ext_id, int64_t *id);
/* An entity's fields into the kbufs (empty when NULL). */
int kstore_kg_entity_get(kstore *s, int64_t id, kbuf *ext_id, kbuf *label, kbuf *desc);
/* Triples touching the entity (up to limit): cb(head ext, head label, relation ext, relation
 * label, tail ext, tail label, split); labels may be NULL. */
int kstore_kg_entity_triples(kstore *s, int64_t id, int limit,
                             int (*cb)(const char *const f[6], const char *split, void *), void *ctx);
int kstore_kg_entity_aliases(kstore *s, int64_t id, int (*cb)(const char *alias, void *), void *ctx);

/* Mentions. */
int kstore_kg_mention_add(kstore *s, int64_t vocab, int64_t doc, int64_t start, int64_t end,
                          int64_t entity, double score);
/* Marks a document linked at a generation, replacing its old mentions. */
int kstore_kg_doc_relink(kstore *s, int64_t vocab, int64_t doc);
int kstore_kg_doc_linked(kstore *s, int64_t vocab, int64_t doc, int64_t generation);
/* Tokenized documents of vocab (doc_id > after) not linked at generation gen. */
int kstore_kg_unlinked_foreach(kstore *s, int64_t vocab, int64_t gen, int64_t after, size_t limit,
                               int (*cb)(const ktokens_row *, void *), void *ctx);
/* Mention totals of a vocabulary and the top entities by mentions. */
int kstore_kg_mention_totals(kstore *s, int64_t vocab, int64_t *mentions, int64_t *entities,
                             int64_t *docs, int64_t *tokens);
int kstore_kg_top_entities(kstore *s, int64_t vocab, int limit,
                           int (*cb)(int64_t id, const char *ext, const char *label, int64_t n, void *),
                           void *ctx);

/* Every mention of vocab in documents with id <= max_doc_id, ordered by
 * (doc, start): cb(doc, start, end, entity). */
int kstore_kg_mentions_foreach(kstore *s, int64_t vocab, int64_t max_doc_id,
                               int (*cb)(int64_t doc, int64_t start, int64_t end, int64_t entity, void *),
                               void *ctx);
/* Count and checksums of vocab's mentions (for snapshot keys). */
int kstore_kg_mentions_summary(kstore *s, int64_t vocab, int64_t *n, int64_t *sum_entities,
                               int64_t *sum_starts);

/* Embeddings. */
typedef struct kkg_embedding {
    int64_t id;
    const char *model;
    int dim;
    const char *config;
    size_t n_entities, n_relations;
    const int64_t *entity_ids, *relation_ids;
    const float *entities, *relations;   /* (n, dim) */
    double valid_mrr, test_mrr;          /* < 0: not measured */
} kkg_embedding;
int kstore_kg_embedding_put(kstore *s, const kkg_embedding *e, int64_t *id);
/* The latest embedding kiln kg embed trained (model "imported", the entity
 * table of an imported ERNIE model, is found by id only); the arrays are
 * copied into *blobs (owned by the caller's kbuf); EX_NOINPUT if there is
 * none. */
int kstore_kg_embedding_latest(kstore *s, kkg_embedding *e, kbuf *blobs);
/* Embedding id (0 = the latest), as kstore_kg_embedding_latest; EX_NOINPUT
 * if there is no such embedding. */
int kstore_kg_embedding_get(kstore *s, int64_t id, kkg_embedding *e, kbuf *blobs);

/* ---- jobs, checkpoints, metrics (jobs.c) ------------------------------------ */
typedef struct kjob {
    int64_t id;
    const char *name;        /* may be NULL */
    const char *kind;        /* train, vocab, kg-embed */
    const char *config;      /* JSON */
    int64_t priority;
    const char *state;       /* queued, running, paused, done, failed, cancelled */
    int64_t step;
    const char *error;       /* may be NULL */
    int64_t created_at, updated_at;
    const char *origin;      /* "run": queued by kiln run submit (the daemon's); NULL: a kiln train row */
    const char *request;     /* "pause", "cancel": asked while running; NULL */
} kjob;
/* Adds a job in state `state`; *id gets its id. */
int kstore_job_add(kstore *s, const char *name, const char *kind, const char *config,
                   int64_t priority, const char *state, int64_t *id);
/* Sets state and error (NULL clears it). EX_NOINPUT if there is no such job. */
int kstore_job_set_state(kstore *s, int64_t id, const char *state, const char *error);
int kstore_job_set_step(kstore *s, int64_t id, int64_t step);
/* One job; its strings are copied into *strings (owned by the caller). EX_NOINPUT if absent. */
int kstore_job_get(kstore *s, int64_t id, kjob *j, kbuf *strings);
/* Every job in id order (strings valid during the call). */
int kstore_jobs_foreach(kstore *s, int (*cb)(const kjob *, void *), void *ctx);
/* A metric value at a step (replaces the same job/step/name). */
int kstore_metric_put(kstore *s, int64_t job, int64_t step, const char *name, double value);
/* Metrics of a job (name NULL: all) in (step, name) order. */
int kstore_metrics_foreach(kstore *s, int64_t job, const char *name,
                           int (*cb)(int64_t step, const char *name, double value, void *), void *ctx);
/* Records a checkpoint written for a job (val_loss NaN: none). */
int kstore_checkpoint_add(kstore *s, int64_t job, int64_t step, const char *path, double val_loss);
/* The latest checkpoint path of a job into *path (empty if none). */
int kstore_checkpoint_latest(kstore *s, int64_t job, kbuf *path, int64_t *step);

/* The daemon's queue (003_daemon.sql, docs/daemon.md). */
/* Adds a job in state queued with origin "run"; *id gets its id. */
int kstore_job_queue(kstore *s, const char *name, const char *kind, const char *config, int64_t priority,
                     int64_t *id);
/* Sets state `to` and error (NULL clears it) and clears the request, if the
 * job is in state `from` (NULL: any state). *changed (may be NULL) tells
 * whether a row changed: 0 when the job is absent or in another state. */
int kstore_job_update(kstore *s, int64_t id, const char *from, const char *to, const char *error, int *changed);
/* Records a pending "pause" or "cancel" on a running job (NULL withdraws it,
 * whatever the state). EX_NOINPUT if there is no such (running) job. */
int kstore_job_set_request(kstore *s, int64_t id, const char *request);
/* Queued jobs of origin "run", highest priority first, then oldest (strings
 * valid during the call; cb returns nonzero to stop). */
int kstore_jobs_queued_foreach(kstore *s, int (*cb)(const kjob *, void *), void *ctx);
/* Jobs of origin "run" left running (by a daemon that died): queued again, or
 * paused / cancelled when that was requested. *n gets the number changed. */
int kstore_jobs_recover(kstore *s, int64_t *n);
/* The job's checkpoint with the lowest validation loss (ties: the earliest
 * step) into *path (empty if none was validated). */
int kstore_checkpoint_best(kstore *s, int64_t job, kbuf *path, int64_t *step, double *val_loss);
/* The source with this content hash, if any (*found); its strings are
 * copied into *strings (owned by the caller); status as stored ("running"
 * is not turned into "interrupted"). */
int kstore_source_by_hash(kstore *s, const uint8_t hash[KHASH_LEN], ksource *src, kbuf *strings, int *found);

/* ---- metrics reads (metrics.c): kiln plot, kiln metrics, the status page ---- */
/* The metrics of a job with step > after_step, in (step, name) order. With
 * max_rows > 0 the rows stop at the first step boundary after max_rows rows
 * (a step is given whole) and *more (may be NULL) is set to 1 when rows were
 * left; *last_step (may be NULL) gets the last step given (after_step if
 * none). cb returns nonzero to stop. Costs the rows returned. */
int kstore_metrics_since(kstore *s, int64_t job, int64_t after_step, int64_t max_rows,
                         int (*cb)(int64_t step, const char *name, double value, void *), void *ctx,
                         int64_t *last_step, int *more);
/* The metric names of a job in name order, with their row counts (one pass
 * over the job's rows). */
int kstore_metric_names(kstore *s, int64_t job, int (*cb)(const char *name, int64_t rows, void *), void *ctx);
/* The newest job (highest id) that has metrics into *job (0 if none). */
int kstore_metrics_latest_job(kstore *s, int64_t *job);

/* ---- totals ------------------------------------------------------------ */
typedef struct kstore_totals {
    int64_t sources, documents, sentences, bytes;
} kstore_totals;
int kstore_totals_get(kstore *s, kstore_totals *t);

/* Runs PRAGMA integrity_check; *ok is 1 when it answers "ok". */
int kstore_integrity_check(kstore *s, int *ok);

#endif
