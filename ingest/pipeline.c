/* pipeline.c: ingest's threads: the reader (caller's thread, reader.c) hands
 * batches to worker threads that clean, convert, normalize, segment and hash
 * them, and one writer thread stores them in submission order.
 *
 * Invariants:
 *  1. Batches form one FIFO in submission (seq) order; workers take the first
 *     batch not taken; the writer only ever stores the head, once done. So the
 *     store sees documents in input order whatever the thread count.
 *  2. At most max_inflight batches exist at once: memory is bounded.
 *  3. One transaction per batch holds its documents and its source counters
 *     (kill -9 loses at most the batches not yet committed).
 *  4. The store handle is used under store_mu only (reader registers sources,
 *     writer stores batches). */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ingest/internal.h"
#include "ingest/jsonl.h"
#include "ingest/wikitext.h"

/* A set of content hashes (open addressing, KHASH_LEN bytes each). */
typedef struct hashset {
    uint8_t *keys;             /* (cap, KHASH_LEN) */
    uint8_t *used;             /* (cap) */
    size_t n, cap;
} hashset;

static void hashset_free(hashset *h)
{
    free(h->keys);
    free(h->used);
    memset(h, 0, sizeof *h);
}

/* Adds key; returns 1 if it was new, 0 if it was there. */
static int hashset_add(hashset *h, const uint8_t *key)
{
    if (2 * (h->n + 1) > h->cap) {
        hashset g = {0};
        g.cap = h->cap ? 2 * h->cap : 1024;
        g.keys = xmalloc(g.cap * KHASH_LEN);
        g.used = xcalloc(g.cap, 1);
        for (size_t i = 0; i < h->cap; i++)
            if (h->used[i]) hashset_add(&g, h->keys + i * KHASH_LEN);
        hashset_free(h);
        *h = g;
    }
    uint64_t x;
    memcpy(&x, key, sizeof x);
    for (size_t i = (size_t)x & (h->cap - 1);; i = (i + 1) & (h->cap - 1)) {
        if (!h->used[i]) {
            memcpy(h->keys + i * KHASH_LEN, key, KHASH_LEN);
            h->used[i] = 1;
            h->n++;
            return 1;
        }
        if (!memcmp(h->keys + i * KHASH_LEN, key, KHASH_LEN)) return 0;
    }
}

struct pipeline {
    const kingest_opts *o;
    kstore *store;
    pthread_mutex_t store_mu;

    pthread_mutex_t mu;
    pthread_cond_t cv_work;    /* a batch to take, or shutdown */
    pthread_cond_t cv_done;    /* a batch done */
    pthread_cond_t cv_space;   /* inflight fell */
    batch *head, *tail;
    size_t inflight, max_inflight;
    uint64_t next_seq;
    int shutdown;
    int failed;                /* store error: EX_* code */

    kingest_summary *sum;      /* reader fields; writer fields under mu */
    uint64_t docs_stored;
    uint64_t worker_errors;    /* malformed records found by workers (under mu) */
    /* the writer's account of the source it is storing (batches come in order) */
    uint64_t src_errors;
    kbuf src_first_error;
    /* a source taken over from an interrupted run holds documents stored
     * then, up to id w_resume_max: read again, each is found once more (its
     * first occurrence, w_claimed) and is neither stored nor a duplicate */
    int64_t w_source;          /* the source of the writer's batches (0: none) */
    int64_t w_resume_max;      /* its largest document id before this run */
    hashset w_claimed;
    double t_wikitext, t_clean, t_segment, t_write;
};

const kingest_opts *pl_opts(pipeline *p) { return p->o; }
kingest_summary *pl_summary(pipeline *p) { return p->sum; }

uint64_t pl_documents(pipeline *p)
{
    pthread_mutex_lock(&p->mu);
    uint64_t n = p->docs_stored;
    pthread_mutex_unlock(&p->mu);
    return n;
}

int pl_failed(pipeline *p)
{
    pthread_mutex_lock(&p->mu);
    int f = p->failed;
    pthread_mutex_unlock(&p->mu);
    return f;
}

void kingest_opts_default(kingest_opts *o)
{
    memset(o, 0, sizeof *o);
    o->format = KFMT_AUTO;
    o->split = KSPLIT_DOC;
    o->text_field = "text";
    o->encoding = "auto";
    o->normalize = KTEXT_NFKC;
    o->lang = "en";
    o->threads = kcpu_count();
    o->max_entry_bytes = (uint64_t)256 << 30;
    o->max_ratio = 1000.0;
    o->max_doc_bytes = (uint64_t)64 << 20;
    o->max_line_bytes = (uint64_t)64 << 20;
}

batch *pl_batch_new(pipeline *p, int64_t source_id)
{
    (void)p;
    batch *b = xcalloc(1, sizeof *b);
    b->kind = BATCH_DOCS;
    b->source_id = source_id;
    return b;
}

static void batch_free(batch *b)
{
    kbuf_free(&b->arena);
    kbuf_free(&b->out);
    free(b->docs);
    free(b->ends);
    free(b->error);
    free(b->first_error);
    free(b);
}

static size_t arena_str(batch *b, const char *s)
{
    if (!s) return NOSTR;
    size_t off = b->arena.len;
    kbuf_append(&b->arena, s, strlen(s) + 1);
    return off;
}

void batch_add_doc(batch *b, const char *entry, const char *ext_id, const char *title,
                   const char *url, const char *loc, const char *text, size_t len, int flags)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->docs = xrealloc(b->docs, b->cap * sizeof *b->docs);
    }
    rawdoc *d = &b->docs[b->n++];
    memset(d, 0, sizeof *d);
    d->entry = arena_str(b, entry);
    d->ext_id = arena_str(b, ext_id);
    d->title = arena_str(b, title);
    d->url = arena_str(b, url);
    d->loc = arena_str(b, loc);
    d->text = b->arena.len;
    d->text_len = len;
    kbuf_append(&b->arena, text, len);
    kbuf_putc(&b->arena, '\0');
    d->flags = flags;
}

void pl_submit(pipeline *p, batch *b)
{
    pthread_mutex_lock(&p->mu);
    while (p->inflight >= p->max_inflight && !p->failed) pthread_cond_wait(&p->cv_space, &p->mu);
    b->seq = p->next_seq++;
    b->done = b->kind != BATCH_DOCS;
    b->taken = b->done;
    b->next = NULL;
    if (p->tail) p->tail->next = b;
    else p->head = b;
    p->tail = b;
    p->inflight++;
    pthread_cond_signal(&p->cv_work);
    if (b->done) pthread_cond_broadcast(&p->cv_done);
    pthread_mutex_unlock(&p->mu);
}

int pl_register_source(pipeline *p, const char *path, const uint8_t hash[KHASH_LEN], int64_t size,
                       int64_t *id, int *already)
{
    pthread_mutex_lock(&p->store_mu);
    int rc = kstore_source_begin(p->store, path, hash, size, id, already);
    if (rc) kerr("%s: %s", path, kstore_errmsg(p->store));
    pthread_mutex_unlock(&p->store_mu);
    return rc;
}

/* ---- workers ---------------------------------------------------------------- */

typedef struct worker {
    pipeline *p;
    ktext_seg *seg;
    kbuf wiki, clean, json, jid, jtitle, jurl;
    double t_wikitext, t_clean, t_segment;
} worker;

static void doc_error(batch *b, rawdoc *d, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void doc_error(batch *b, rawdoc *d, const char *fmt, ...)
{
    char msg[1024];
    int n = snprintf(msg, sizeof msg, "%s: ", d->loc == NOSTR ? "?" : b->arena.data + d->loc);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    kwarn("%s", msg);
    d->bad = 1;
    if (b->errors++ == 0) b->first_error = xstrdup(msg);
}

/* Parses a JSONL line (ingest/jsonl.c: validating, no tree): the text field
 * into w->json, id/title/url into the arena. Returns 0, or -1 for a
 * malformed line (reported). */
static int parse_json(worker *w, batch *b, rawdoc *d)
{
    kjson_field f[4] = {{w->p->o->text_field, 0, &w->json},
                        {"id", 0, &w->jid},
                        {"title", 0, &w->jtitle},
                        {"url", 0, &w->jurl}};
    char err[256];
    int col = 0;
    if (kjson_extract(b->arena.data + d->text, d->text_len, f, 4, err, sizeof err, &col)) {
        doc_error(b, d, "malformed JSON (column %d): %s: skipped", col, err);
        return -1;
    }
    if (f[0].type != KJ_STRING) {
        doc_error(b, d, "no string field \"%s\": skipped", w->p->o->text_field);
        return -1;
    }
    d->ext_id = arena_str(b, f[1].type == KJ_STRING || f[1].type == KJ_INTEGER ? w->jid.data : NULL);
    d->title = arena_str(b, f[2].type == KJ_STRING ? w->jtitle.data : NULL);
    d->url = arena_str(b, f[3].type == KJ_STRING ? w->jurl.data : NULL);
    return 0;
}

static void process_batch(worker *w, batch *b)
{
    kbuf sent = {0};
    uint32_t *ends = NULL;
    size_t ends_cap = 0;
    ktext_counts counts = {0};
    for (size_t i = 0; i < b->n; i++) {
        rawdoc *d = &b->docs[i];
        double t0 = know_seconds();
        const char *txt = b->arena.data + d->text;
        size_t len = d->text_len;
        if (d->flags & DOC_JSON) {
            if (parse_json(w, b, d)) continue;
            txt = w->json.data ? w->json.data : "";
            len = w->json.len;
        }
        if (d->flags & DOC_WIKITEXT) {
            kbuf_clear(&w->wiki);
            wikitext_to_text(txt, len, &w->wiki);
            txt = w->wiki.data ? w->wiki.data : "";
            len = w->wiki.len;
        }
        double t1 = know_seconds();
        if (!(d->flags & DOC_CLEAN)) {
            kbuf_clear(&w->clean);
            ktext_clean_utf8(txt, len, &w->clean, &counts);
            txt = w->clean.data ? w->clean.data : "";
            len = w->clean.len;
        }
        double t2 = know_seconds();
        size_t ns = 0;
        if (len)
            ns = ktext_segment(w->seg, txt, len, (d->flags & DOC_LINES) != 0, &sent, &ends, &ends_cap);
        double t3 = know_seconds();
        w->t_wikitext += t1 - t0;
        w->t_clean += t2 - t1;
        w->t_segment += t3 - t2;
        if (ns == 0) { d->empty = 1; continue; }
        d->out = b->out.len;
        d->out_len = sent.len;
        kbuf_append(&b->out, sent.data, sent.len);
        khash128(sent.data, sent.len, d->hash);
        if (b->nends + ns > b->ends_cap) {
            while (b->nends + ns > b->ends_cap) b->ends_cap = b->ends_cap ? b->ends_cap * 2 : 256;
            b->ends = xrealloc(b->ends, b->ends_cap * sizeof *b->ends);
        }
        d->ends = b->nends;
        d->n_sent = ns;
        memcpy(b->ends + b->nends, ends, ns * sizeof *ends);
        b->nends += ns;
    }
    b->invalid_utf8 += counts.invalid_utf8;
    kbuf_free(&sent);
    free(ends);
}


static void *worker_main(void *arg)
{
    worker *w = arg;
    pipeline *p = w->p;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        batch *b = p->head;
        while (b && b->taken) b = b->next;
        if (!b) {
            if (p->shutdown) break;
            pthread_cond_wait(&p->cv_work, &p->mu);
            continue;
        }
        b->taken = 1;
        pthread_mutex_unlock(&p->mu);
        process_batch(w, b);
        pthread_mutex_lock(&p->mu);
        b->done = 1;
        pthread_cond_broadcast(&p->cv_done);
    }
    p->t_wikitext += w->t_wikitext;
    p->t_clean += w->t_clean;
    p->t_segment += w->t_segment;
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- writer ----------------------------------------------------------------- */

/* Logs the store's message ("store PATH: ..." for I/O errors already names it). */
static void store_err(kstore *s)
{
    const char *m = kstore_errmsg(s);
    kerr("%s%s", strncmp(m, "store ", 6) ? "store: " : "", m);
}

/* Stores one batch in one transaction (invariant 3). Returns 0 or EX_*. */
static int write_batch(pipeline *p, batch *b, uint64_t *stored)
{
    kstore *s = p->store;
    int rc;
    *stored = 0;
    if (b->source_id != p->w_source) {
        /* the first batch of a source: documents it holds were stored by an
         * interrupted run (kstore_source_begin took its row over) */
        int64_t last = 0;
        if ((rc = kstore_source_last_doc(s, b->source_id, &last))) {
            store_err(s);
            return rc;
        }
        p->w_source = b->source_id;
        p->w_resume_max = last;
        hashset_free(&p->w_claimed);
    }
    if (b->kind == BATCH_SOURCE_END) {
        p->w_source = 0;
        /* the source's malformed records: the reader's and the workers' */
        uint64_t errors = b->errors + p->src_errors;
        const char *first = b->first_error ? b->first_error : p->src_first_error.data;
        kbuf m = {0};
        if (b->error) kbuf_puts(&m, b->error);
        if (errors)
            kbuf_printf(&m, "%s%llu malformed record(s) skipped; first: %s", m.len ? "; " : "",
                        (unsigned long long)errors, first ? first : "");
        rc = kstore_source_finish(s, b->source_id, b->status, b->format, m.len ? m.data : NULL);
        kbuf_free(&m);
        p->src_errors = 0;
        kbuf_clear(&p->src_first_error);
        if (rc) store_err(s);
        return rc;
    }
    if (b->errors) {
        if (!p->src_errors && b->first_error) kbuf_puts(&p->src_first_error, b->first_error);
        p->src_errors += b->errors;
    }
    if ((rc = kstore_begin(s))) goto fail;
    ksource_delta delta = b->delta;
    for (size_t i = 0; i < b->n; i++) {
        rawdoc *r = &b->docs[i];
        if (r->bad) continue;
        if (r->empty) { delta.skipped++; continue; }
        kdoc d = {0};
        d.source_id = b->source_id;
        d.entry = r->entry == NOSTR ? "" : b->arena.data + r->entry;
        d.ext_id = r->ext_id == NOSTR ? NULL : b->arena.data + r->ext_id;
        d.title = r->title == NOSTR ? NULL : b->arena.data + r->title;
        d.url = r->url == NOSTR ? NULL : b->arena.data + r->url;
        memcpy(d.hash, r->hash, KHASH_LEN);
        d.text = b->out.data + r->out;
        d.text_len = r->out_len;
        d.sent_ends = b->ends + r->ends;
        d.n_sentences = r->n_sent;
        int inserted = 0;
        if ((rc = kstore_doc_insert(s, &d, &inserted))) goto fail;
        if (inserted) {
            delta.documents++;
            delta.sentences += (int64_t)r->n_sent;
            delta.text_bytes += (int64_t)r->out_len;
            continue;
        }
        /* stored by the interrupted run this source's row comes from (and
         * counted then): not a duplicate the first time it is found again */
        int64_t doc = 0, src = 0;
        if (p->w_resume_max > 0 && (rc = kstore_doc_find(s, d.hash, &doc, &src))) goto fail;
        if (src == b->source_id && doc > 0 && doc <= p->w_resume_max && hashset_add(&p->w_claimed, d.hash))
            continue;
        delta.duplicates++;
    }
    if ((rc = kstore_source_add(s, b->source_id, &delta))) goto fail;
    if ((rc = kstore_commit(s))) goto fail;
    *stored = (uint64_t)delta.documents;
    pthread_mutex_lock(&p->mu);
    p->sum->documents += (uint64_t)delta.documents;
    p->sum->duplicates += (uint64_t)delta.duplicates;
    p->sum->skipped += (uint64_t)(delta.skipped - b->delta.skipped);
    p->sum->sentences += (uint64_t)delta.sentences;
    p->sum->text_bytes += (uint64_t)delta.text_bytes;
    p->sum->invalid_utf8 += b->invalid_utf8;
    p->worker_errors += b->errors;
    pthread_mutex_unlock(&p->mu);
    return 0;
fail:
    store_err(s);
    kstore_rollback(s);
    return rc;
}

static void *writer_main(void *arg)
{
    pipeline *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        batch *b = p->head;
        if (!b) {
            if (p->shutdown) break;
            pthread_cond_wait(&p->cv_done, &p->mu);
            continue;
        }
        if (!b->done) { pthread_cond_wait(&p->cv_done, &p->mu); continue; }
        p->head = b->next;
        if (!p->head) p->tail = NULL;
        int failed = p->failed;
        pthread_mutex_unlock(&p->mu);
        uint64_t stored = 0;
        int rc = 0;
        double t0 = know_seconds();
        if (!failed) {
            pthread_mutex_lock(&p->store_mu);
            rc = write_batch(p, b, &stored);
            pthread_mutex_unlock(&p->store_mu);
        }
        double t1 = know_seconds();
        batch_free(b);
        pthread_mutex_lock(&p->mu);
        p->t_write += t1 - t0;
        p->docs_stored += stored;
        if (rc && !p->failed) p->failed = rc;
        p->inflight--;
        pthread_cond_broadcast(&p->cv_space);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int kingest_run(const char *db_path, const char *const *paths, int npaths, const kingest_opts *o,
                kingest_summary *sum)
{
    memset(sum, 0, sizeof *sum);
    double t0 = know_seconds();
    char err[1024];
    pipeline p = {0};
    p.o = o;
    p.sum = sum;
    int rc = kstore_open(db_path, KSTORE_CREATE, &p.store, err, sizeof err);
    if (rc) { kerr("%s", err); return rc; }
    int nthreads = o->threads < 1 ? 1 : o->threads > 64 ? 64 : o->threads;
    worker *workers = xcalloc((size_t)nthreads, sizeof *workers);
    for (int i = 0; i < nthreads; i++) {
        workers[i].p = &p;
        workers[i].seg = ktext_seg_new(o->lang, o->normalize, err, sizeof err);
        if (!workers[i].seg) {
            kerr("%s", err);
            for (int j = 0; j < i; j++) ktext_seg_free(workers[j].seg);
            free(workers);
            kstore_close(p.store);
            return EX_SOFTWARE;
        }
    }
    pthread_mutex_init(&p.store_mu, NULL);
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv_work, NULL);
    pthread_cond_init(&p.cv_done, NULL);
    pthread_cond_init(&p.cv_space, NULL);
    p.max_inflight = (size_t)nthreads * 3 + 2;
    pthread_t *tids = xcalloc((size_t)nthreads, sizeof *tids);
    pthread_t wtid;
    /* a thread that cannot start (out of memory for its stack or TLS) stops
     * the run before it reads anything: never a reader waiting for it */
    int nstarted = 0, wstarted = 0, terr = 0;
    for (int i = 0; i < nthreads && !terr; i++)
        if (!(terr = pthread_create(&tids[i], NULL, worker_main, &workers[i]))) nstarted++;
    if (!terr) wstarted = !(terr = pthread_create(&wtid, NULL, writer_main, &p));
    int rrc;
    if (terr) {
        kerr("cannot start the ingest threads: %s (out of memory, or the thread limit)", strerror(terr));
        rrc = EX_OSERR;
    } else {
        rrc = reader_run(&p, paths, npaths);
    }

    pthread_mutex_lock(&p.mu);
    p.shutdown = 1;
    pthread_cond_broadcast(&p.cv_work);
    pthread_cond_broadcast(&p.cv_done);
    pthread_mutex_unlock(&p.mu);
    for (int i = 0; i < nstarted; i++) pthread_join(tids[i], NULL);
    if (wstarted) pthread_join(wtid, NULL);
    for (int i = 0; i < nthreads; i++) {
        ktext_seg_free(workers[i].seg);
        kbuf_free(&workers[i].wiki);
        kbuf_free(&workers[i].clean);
        kbuf_free(&workers[i].json);
        kbuf_free(&workers[i].jid);
        kbuf_free(&workers[i].jtitle);
        kbuf_free(&workers[i].jurl);
    }
    free(workers);
    free(tids);
    sum->t_wikitext = p.t_wikitext;
    sum->t_clean = p.t_clean;
    sum->t_segment = p.t_segment;
    sum->t_write = p.t_write;
    sum->seconds = know_seconds() - t0;
    sum->errors += p.worker_errors;
    rc = p.failed ? p.failed : rrc;
    if (rc == 0 && p.worker_errors) rc = EX_DATAERR;
    kbuf_free(&p.src_first_error);
    hashset_free(&p.w_claimed);
    kstore_close(p.store);
    pthread_mutex_destroy(&p.store_mu);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.cv_work);
    pthread_cond_destroy(&p.cv_done);
    pthread_cond_destroy(&p.cv_space);
    return rc;
}
