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
    size_t loc;                       /* "file[:entry]:line" for messages, or NOSTR */
    size_t text, text_len;            /* raw text in arena */
    int flags;                        /* DOC_* */
    /* results, filled by a worker */
    int empty;                        /* no visible text: skipped */
    int bad;                          /* malformed (JSON): counted as an error */
    size_t out, out_len;              /* normalized text in batch->out */
    size_t ends, n_sent;              /* sentence ends in batch->ends */
    uint8_t hash[KHASH_LEN];
} rawdoc;

enum { BATCH_DOCS, BATCH_SOURCE_END };
enum {
    DOC_WIKITEXT = 1, /* convert from wikitext first */
    DOC_LINES = 2,    /* every line is a sentence */
    DOC_CLEAN = 4,    /* already through ktext_clean_utf8 (the reader's stream) */
    DOC_JSON = 8,     /* text is a JSONL line: the worker parses it */
};

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
    uint64_t invalid_utf8;
    uint64_t errors;           /* malformed records: found by workers (docs) or the reader (end) */
    char *first_error;         /* owned message of the first, or NULL */
    /* BATCH_SOURCE_END */
    char status[16];
    char format[16];
    char *error;               /* owned, may be NULL: why the file is partial */
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

/* Adds a document to b (copies the strings); flags are DOC_*. */
void batch_add_doc(batch *b, const char *entry, const char *ext_id, const char *title,
                   const char *url, const char *loc, const char *text, size_t len, int flags);

/* The reader (reader.c): walks paths, feeds the pipeline. Returns the
 * sysexits code of the worst input problem, 0 if none. */
int reader_run(pipeline *p, const char *const *paths, int npaths);

#endif
