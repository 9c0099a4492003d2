/* reader_harness.h: the ingest reader (ingest/reader.c) and the workers'
 * document processing (ingest/pipeline.c) run on one in-memory entry, with no
 * store and no threads, for fuzz_mediawiki.c and fuzz_plaintext.c.
 *
 * Both .c files are included here so that their static functions are in
 * reach: read_entry (the real entry loop: UTF-16 BOM, binary-data check,
 * charset detection, streaming UTF-8 cleaning with held-back bytes, format
 * detection, the plain-text / JSONL line framing and the MediaWiki Expat
 * callbacks) and process_batch (JSONL parsing, wikitext conversion, cleaning,
 * NFKC, sentence segmentation, hashing). The entry comes from libarchive's
 * "raw" format reading a memory callback that hands the bytes over in chunks
 * of a chosen size, as a decompressor would, so that every parser sees its
 * input cut at arbitrary places. Batches are processed and freed in order by
 * the calling thread instead of the worker and writer threads.
 *
 * Every stored document is checked: sentences are non-empty, trimmed, free
 * of '\n', valid UTF-8, joined by single '\n', and the last end is the text's
 * length. */
#ifndef KILN_FUZZ_READER_HARNESS_H
#define KILN_FUZZ_READER_HARNESS_H

#define _GNU_SOURCE /* before any system header: memfd_create in fuzz_common.h */
#include "ingest/reader.c"
#include "ingest/pipeline.c"

#include "tests/fuzz/fuzz_common.h"

static ktext_seg *g_seg[3]; /* by enum ktext_norm */

static void harness_init(void)
{
    fuzz_quiet();
    char err[256];
    for (int i = 0; i < 3; i++) {
        g_seg[i] = ktext_seg_new("en", i, err, sizeof err);
        if (!g_seg[i]) { dprintf(2, "ktext_seg_new: %s\n", err); abort(); }
    }
}

typedef struct mem_src {
    const uint8_t *p;
    size_t n, off, chunk;
} mem_src;

static la_ssize_t mem_read(struct archive *a, void *ud, const void **buf)
{
    (void)a;
    mem_src *s = ud;
    size_t k = s->n - s->off;
    if (k > s->chunk) k = s->chunk;
    *buf = s->p + s->off;
    s->off += k;
    return (la_ssize_t)k;
}

static int valid_utf8(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    while (p < e) {
        uint32_t cp;
        int bad = 0;
        size_t k = kutf8_decode(p, e, &cp, &bad);
        if (bad || k == 0) return 0;
        p += k;
    }
    return 1;
}

static void check_doc(const batch *b, const rawdoc *d)
{
    if (d->bad || d->empty) return;
    const char *t = b->out.data + d->out;
    size_t n = d->out_len;
    FUZZ_CHECK(n > 0 && d->n_sent > 0);
    FUZZ_CHECK(valid_utf8(t, n));
    size_t start = 0;
    for (size_t i = 0; i < d->n_sent; i++) {
        size_t end = b->ends[d->ends + i];
        FUZZ_CHECK(end > start && end <= n);
        FUZZ_CHECK(!memchr(t + start, '\n', end - start));
        FUZZ_CHECK(t[start] != ' ' && t[end - 1] != ' ');
        if (i + 1 < d->n_sent) FUZZ_CHECK(end < n && t[end] == '\n');
        else FUZZ_CHECK(end == n);
        start = end + 1;
    }
}

/* Reads data[0..size) as one entry named name with options o, handed over
 * in chunks of chunk bytes (0: all at once), and processes every document. */
static void harness_run(const uint8_t *data, size_t size, const kingest_opts *o, const char *name, size_t chunk)
{
    if (size == 0) return; /* an empty file is skipped before it is opened */
    kingest_summary sum;
    memset(&sum, 0, sizeof sum);
    pipeline p;
    memset(&p, 0, sizeof p);
    p.o = o;
    p.sum = &sum;
    p.max_inflight = SIZE_MAX;
    pthread_mutex_init(&p.mu, NULL);
    pthread_mutex_init(&p.store_mu, NULL);
    pthread_cond_init(&p.cv_work, NULL);
    pthread_cond_init(&p.cv_done, NULL);
    pthread_cond_init(&p.cv_space, NULL);

    reader r;
    memset(&r, 0, sizeof r);
    r.p = &p;
    r.o = o;
    r.sum = &sum;
    r.path = "fuzz";
    r.source_id = 1;

    struct archive *a = archive_read_new();
    archive_read_support_format_raw(a);
    mem_src src = {data, size, 0, chunk ? chunk : size};
    struct archive_entry *ent;
    if (archive_read_open(a, &src, NULL, mem_read, NULL) == ARCHIVE_OK &&
        archive_read_next_header(a, &ent) == ARCHIVE_OK) {
        uint64_t unc = 0;
        char loc[300];
        snprintf(loc, sizeof loc, "fuzz:%s", name);
        read_entry(&r, a, loc, name, "", &unc, (uint64_t)size);
    }
    archive_read_free(a);
    flush_batch(&r);

    worker w;
    memset(&w, 0, sizeof w);
    w.p = &p;
    w.seg = g_seg[o->normalize];
    for (batch *b = p.head; b;) {
        batch *next = b->next;
        if (b->kind == BATCH_DOCS) {
            process_batch(&w, b);
            for (size_t i = 0; i < b->n; i++) check_doc(b, &b->docs[i]);
        }
        batch_free(b);
        b = next;
    }
    kbuf_free(&w.wiki);
    kbuf_free(&w.clean);
    kbuf_free(&w.json);
    kbuf_free(&w.jid);
    kbuf_free(&w.jtitle);
    kbuf_free(&w.jurl);
    kbuf_free(&r.first_error);
    free(r.partial);
    pthread_mutex_destroy(&p.mu);
    pthread_mutex_destroy(&p.store_mu);
    pthread_cond_destroy(&p.cv_work);
    pthread_cond_destroy(&p.cv_done);
    pthread_cond_destroy(&p.cv_space);
}

#endif
