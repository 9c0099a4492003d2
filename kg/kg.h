/* kg.h: knowledge graphs: importing triples and names (TSV, N-Triples,
 * entity2text) into the store, linking entity mentions in the tokenized
 * corpus, training and evaluating TransE embeddings (kg/transe.h for the
 * math), and looking entities up. */
#ifndef KILN_KG_H
#define KILN_KG_H

#include <signal.h>
#include <stdint.h>

#include "store/store.h"

/* ---- import (import.c) ------------------------------------------------------------ */
enum { KKG_AUTO = 0, KKG_TSV, KKG_NTRIPLES };
enum { KKG_TRIPLES = 0, KKG_NAMES, KKG_RELATION_NAMES };
enum { KKG_GLOSS_AUTO = -1, KKG_GLOSS_NO = 0, KKG_GLOSS_YES = 1 };

typedef struct kkg_import_opts {
    int format;                /* KKG_AUTO: by name (.nt) or content */
    const char *split;         /* NULL: from the file or entry name (train/valid/test), else train */
    const char *lang;          /* N-Triples literals kept: this language (and its subtags) or none */
    int gloss;                 /* names: split "name, gloss" (auto: when most lines have ", ") */
    uint64_t max_line_bytes;
} kkg_import_opts;

typedef struct kkg_import_summary {
    uint64_t files, already, triples, duplicates, entities_named, aliases, relations_named,
        bad_lines, literals_skipped, missing;
    double seconds;
} kkg_import_summary;

/* Imports files of one kind (triples, entity names or relation names);
 * returns 0, EX_DATAERR if lines were malformed (they are skipped and
 * reported with file:line), EX_NOINPUT for a missing path, or a store error. */
int kkg_import(kstore *s, int kind, const char *const *paths, int n, const kkg_import_opts *o,
               kkg_import_summary *sum);

/* ---- linking (link.c) -------------------------------------------------------------- */
typedef struct kkg_link_opts {
    const char *vocab;            /* NULL: the active vocabulary */
    size_t min_alias_chars;       /* aliases shorter than this are not matched (default 3) */
    double max_alias_share;       /* single-piece aliases whose piece is more frequent than
                                     this share of corpus tokens are not matched (default 1e-4) */
    volatile sig_atomic_t *stop;
    void (*progress)(uint64_t done, uint64_t total, void *ctx);
    void *progress_ctx;
} kkg_link_opts;

typedef struct kkg_link_summary {
    uint64_t aliases, aliases_used, aliases_dropped_short, aliases_dropped_common;
    uint64_t documents, mentions, tokens;       /* this run */
    int64_t total_mentions, total_entities, total_docs, total_tokens;
    double seconds;
    int interrupted;
} kkg_link_summary;

/* Links the tokenized documents not linked at the current alias generation
 * (those after the vocabulary's linked_through) and fills the totals: a
 * linker built, run once and freed (kiln kg link). Returns 0 or EX_*
 * (message logged): EX_NOINPUT when nothing is tokenized with the vocabulary
 * or the knowledge graph has no names. */
int kkg_link(kstore *s, const kkg_link_opts *o, kkg_link_summary *sum);

/* A linker kept across runs (the daemon's, one run per batch of spool
 * files): the alias trie, the entity degrees and the corpus's piece counts,
 * built from the store once, so that a run costs the documents it links.
 * kkg_linker_new builds it (the errors of kkg_link); *out is owned by the
 * caller, freed with kkg_linker_free. kkg_linker_run links as kkg_link does
 * (o gives stop and progress; the totals are not filled) and first rebuilds
 * the linker when it no longer fits the store: kkg_linker_fits says so when
 * the vocabulary, the alias generation or the knowledge graph's files
 * changed, or the corpus's tokens doubled since it was built. */
typedef struct kkg_linker kkg_linker;
int kkg_linker_new(kstore *s, const kkg_link_opts *o, kkg_linker **out);
int kkg_linker_fits(kkg_linker *l, kstore *s, int *fits);
int kkg_linker_run(kkg_linker *l, kstore *s, const kkg_link_opts *o, kkg_link_summary *sum);
void kkg_linker_free(kkg_linker *l);
/* Links one token sequence of the linker's vocabulary as kkg_link links a
 * sentence of a stored document (the longest alias starting at a word
 * start and ending at a word end, left to right): ids (n), word_start (n)
 * 1 where a word begins (a negative id is a barrier, e.g. [CLS] / [SEP]
 * given as -1). entity (n) gets the kg_entities id at the first token of
 * each mention, 0 elsewhere. Returns the number of mentions. Read-only on
 * l: threads may link at once. */
int kkg_linker_link_ids(const kkg_linker *l, const int32_t *ids, const uint8_t *word_start, int n, int64_t *entity);

/* ---- embeddings (embed.c) ---------------------------------------------------------- */
#include "kg/transe.h"

typedef struct kkg_embed_summary {
    int64_t embedding_id;
    uint32_t entities, relations;
    size_t train, valid, test;
    ktranse_report report;
    keval valid_eval;
    double seconds;
} kkg_embed_summary;

/* Trains TransE on the stored triples (entities of triples only, dense ids),
 * keeps the best weights by validation MRR, stores them. */
int kkg_embed(kstore *s, const ktranse_opts *o, kkg_embed_summary *sum);

/* Filtered link prediction with the latest embedding on a split
 * (0 train, 1 valid, 2 test), every split's triples filtered. */
int kkg_eval(kstore *s, int split, int threads, keval *out);

/* The k nearest entities (L2 in the latest embedding) of an entity:
 * ids[k] and distances[k]; *n is set to the number found. */
int kkg_neighbours(kstore *s, int64_t entity, int k, int64_t *ids, float *dist, int *n);

/* ---- ERNIE's entity table (table.c) -------------------------------------------------- */

/* The vectors of one stored embedding as a table for the trainer: row 0 is
 * "no entity" (zeros), rows 1 .. n the embedding's entities in its order. */
typedef struct kkg_table {
    int64_t embedding_id;     /* the kg_embeddings row */
    int dim;                  /* width of the vectors */
    int32_t rows;             /* n + 1 */
    float *vectors;           /* (rows, dim) */
    int64_t *ids;             /* (rows) kg_entities.id of each row; ids[0] = 0 */
    int32_t *order;           /* (rows - 1) the rows by ascending id (lookups) */
} kkg_table;
/* Loads embedding `embedding` (0 = the latest) into *t (owned by the caller:
 * kkg_table_free). 0, EX_NOINPUT when there is no such embedding, or
 * another EX_* code; the message in err (errlen bytes). */
int kkg_table_load(kstore *s, int64_t embedding, kkg_table *t, char *err, size_t errlen);
/* The row of kg_entities id `entity`, 0 when it has no vector. */
int32_t kkg_table_row(const kkg_table *t, int64_t entity);
void kkg_table_free(kkg_table *t);
/* Coverage: of the mentions of vocab in documents <= max_doc_id (*all), those
 * whose entity has a row (*with). */
int kkg_table_coverage(kstore *s, const kkg_table *t, int64_t vocab, int64_t max_doc_id, int64_t *with,
                       int64_t *all);

#endif
