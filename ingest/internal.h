/* internal.h: ingest's private types: the document batches that flow from the
 * reader through the workers to the writer, and the reader's entry parsers. */
#ifndef KILN_INGEST_INTERNAL_H
#define KILN_INGEST_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "ingest/ingest.h"
#include "text/text.h"

#define NOSTR SIZE_MAX /* an absent string in a batch arena */

/* One document in a batch; strings are offsets into the batch's arena. */
typedef struct rawdoc {
    size_t entry, ext_id, title, url; /* NUL-terminated strings in arena, or NOSTR */
    size_t text, text_len;            /* raw text in arena */
    int wikitext;                     /* convert from wikitext first */
    int lines;                        /* every line is a sentence */
    /* results, filled by a worker */
    int empty;                        /* no visible text: skipped */
    size_t out, out_len;              /* normalized text in batch->out */
    size_t ends, n_sent;              /* sentence ends in batch->ends */
    uint8_t hash[KHASH_LEN];
} rawdoc;

enum { BATCH_DOCS, BATCH_SOURCE_END };

typedef struct batch {
    uint64_t seq;
    int kind;
    int64_t source_id;
    rawdoc *docs;              /* (n, cap) */
    size_t n, cap;
    kbuf arena;                /* input strings and texts */
    kbuf out;                  /* processed texts */
    uint32_t *ends;            /* (nends, ends_cap) sentence ends, per doc from rawdoc.ends */
    size_t nends, ends_cap;
    ksource_delta delta;       /* skipped and bytes_in counted by the reader */
    uint64_t errors, invalid_utf8;
    /* BATCH_SOURCE_END */
    char status[16];
    char format[16];
    char *error;               /* owned, may be NULL */
    int taken, done;
    struct batch *next;
} batch;

/* The pipeline, shared by reader, workers and writer. */
typedef struct pipeline pipeline;

/* Reader-side API of the pipeline (pipeline.c). */
batch *pl_batch_new(pipeline *p, int64_t source_id);
void pl_submit(pipeline *p, batch *b);     /* hands b over; may block when full */
int pl_failed(pipeline *p);                /* writer hit a store error */
int pl_register_source(pipeline *p, const char *path, const uint8_t hash[KHASH_LEN], int64_t size,
                       int64_t *id, int *already);
const kingest_opts *pl_opts(pipeline *p);
kingest_summary *pl_summary(pipeline *p);  /* reader-owned fields only */
uint64_t pl_documents(pipeline *p);

/* Adds a document to b (copies the strings). */
void batch_add_doc(batch *b, const char *entry, const char *ext_id, const char *title,
                   const char *url, const char *text, size_t len, int wikitext, int lines);

/* The reader (reader.c): walks paths, feeds the pipeline. Returns the
 * sysexits code of the worst input problem, 0 if none. */
int reader_run(pipeline *p, const char *const *paths, int npaths);

#endif
