/* tokenize.c: the stored corpus into token ids (doc_tokens) of a WordPiece
 * or a byte-level BPE vocabulary, in batches of documents: read a batch (id
 * order), tokenize its documents in parallel (OpenMP, one tokenizer per
 * thread), store it in one transaction.
 *
 * BPE (GPT-2) encodes text, not sentences: sentence i > 0 is encoded with the
 * " " before it, so a document's ids are those of its sentences joined by
 * spaces (GPT-2's pre-tokens never cross a space that precedes a character,
 * so the sentence ends stay token boundaries).
 *
 * Blob layouts are those of docs/store.md: ids uint16 LE when the vocabulary
 * has at most 65,536 pieces (layout 1) else uint32 LE (layout 2); sentence
 * ends as token offsets (uint32 LE); a word-start bitmap. */
#define _POSIX_C_SOURCE 200809L
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/ingest.h"
#include "text/tokenizer.h"

/* One document of a batch: its text (copied), and the results. */
typedef struct tdoc {
    int64_t id;
    size_t text, text_len;     /* in the batch arena */
    size_t ends, n_sent;       /* byte ends in the batch's ends array */
    kwp_ids ids;               /* result */
    uint32_t *tok_ends;        /* (n_sent) token ends */
    uint8_t *bits;             /* word starts bitmap */
    void *packed;              /* ids in the layout */
    int stored;                /* its tokens were stored (not by another process first) */
} tdoc;

#define BATCH_TEXT ((size_t)16 << 20) /* text bytes of a batch, at most (and one document) */

typedef struct tbatch {
    tdoc *d;                   /* (n, cap) */
    size_t n, cap;
    kbuf arena;
    uint32_t *ends;            /* (nends, ends_cap) */
    size_t nends, ends_cap;
} tbatch;

static int collect(const kdoc *d, void *ctx)
{
    tbatch *b = ctx;
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->d = xrealloc(b->d, b->cap * sizeof *b->d);
    }
    tdoc *t = &b->d[b->n++];
    memset(t, 0, sizeof *t);
    t->id = d->id;
    t->text = b->arena.len;
    t->text_len = d->text_len;
    kbuf_append(&b->arena, d->text, d->text_len);
    if (b->nends + d->n_sentences > b->ends_cap) {
        while (b->nends + d->n_sentences > b->ends_cap) b->ends_cap = b->ends_cap ? b->ends_cap * 2 : 1024;
        b->ends = xrealloc(b->ends, b->ends_cap * sizeof *b->ends);
    }
    t->ends = b->nends;
    t->n_sent = d->n_sentences;
    memcpy(b->ends + b->nends, d->sent_ends, d->n_sentences * sizeof *b->ends);
    b->nends += d->n_sentences;
    /* a batch of big documents stops at BATCH_TEXT bytes: memory stays bounded
     * (text, and about as much again in ids and bitmaps) */
    return b->arena.len >= BATCH_TEXT;
}

/* Frees a document's results; a second call does nothing (a stop after a
 * stored batch leaves its documents in b for the cleanup at out:). */
static void tdoc_reset(tdoc *t)
{
    kwp_ids_free(&t->ids);
    free(t->tok_ends);
    free(t->bits);
    free(t->packed);
    t->tok_ends = NULL;
    t->bits = NULL;
    t->packed = NULL;
}

static void tokenize_doc(ktkz_tok *tk, int bpe, tbatch *b, tdoc *t, int layout)
{
    char *text = b->arena.data + t->text; /* this batch's copy: ours to change */
    const uint32_t *ends = b->ends + t->ends;
    t->tok_ends = xmalloc((t->n_sent ? t->n_sent : 1) * sizeof *t->tok_ends);
    uint32_t start = 0;
    for (size_t i = 0; i < t->n_sent; i++) {
        if (bpe && i > 0) {
            text[start - 1] = ' '; /* the '\n' between the sentences */
            ktkz_encode(tk, text + start - 1, ends[i] - start + 1, &t->ids);
        } else {
            ktkz_encode(tk, text + start, ends[i] - start, &t->ids);
        }
        t->tok_ends[i] = (uint32_t)t->ids.n;
        start = ends[i] + 1;
    }
    size_t n = t->ids.n;
    t->bits = xcalloc((n + 7) / 8 + 1, 1);
    for (size_t i = 0; i < n; i++)
        if (t->ids.word_start[i]) t->bits[i / 8] |= (uint8_t)(1u << (i % 8));
    if (layout == KTOK_LAYOUT_U16) {
        uint16_t *p = xmalloc((n ? n : 1) * sizeof *p);
        for (size_t i = 0; i < n; i++) p[i] = (uint16_t)t->ids.ids[i];
        t->packed = p;
    } else {
        uint32_t *p = xmalloc((n ? n : 1) * sizeof *p);
        memcpy(p, t->ids.ids, n * sizeof *p);
        t->packed = p;
    }
}

int ktokenize_run(const char *db_path, const ktokenize_opts *o, ktokenize_summary *sum)
{
    memset(sum, 0, sizeof *sum);
    double t0 = know_seconds();
    char err[1024];
    kstore *s;
    int rc = kstore_open(db_path, 0, &s, err, sizeof err);
    if (rc) { kerr("%s", err); return rc; }
    rc = ktokenize_store(s, o, sum);
    kstore_close(s);
    sum->seconds = know_seconds() - t0;
    return rc;
}

int ktokenize_store(kstore *s, const ktokenize_opts *o, ktokenize_summary *sum)
{
    memset(sum, 0, sizeof *sum);
    double t0 = know_seconds();
    char err[1024];
    int rc;
    uint64_t *freq = NULL;
    kvocab_row vr;
    kbuf pieces = {0}, meta = {0};
    ktkz *v = NULL;
    ktkz_tok **toks = NULL;
    int nth = o->threads < 1 ? 1 : o->threads;
    tbatch b = {0};
    if ((rc = kstore_vocab_get(s, o->vocab, &vr, &pieces, &meta))) {
        kerr("%s", kstore_errmsg(s));
        goto out;
    }
    snprintf(sum->vocab, sizeof sum->vocab, "%s", vr.name);
    sum->vocab_id = vr.id;
    if (ktkz_load(vr.kind, pieces.data, pieces.len, vr.merges, vr.merges_len, kvocab_row_mode(&vr), &v, err,
                  sizeof err)) {
        kerr("vocabulary '%s': %s", vr.name, err);
        rc = EX_DATAERR;
        goto out;
    }
    int bpe = vr.kind == KVOCAB_BPE;
    int layout = ktkz_size(v) <= 65536 ? KTOK_LAYOUT_U16 : KTOK_LAYOUT_U32;
    int64_t unk = ktkz_unk(v); /* -1 (BPE): nothing is unknown */
    toks = xcalloc((size_t)nth, sizeof *toks);
    for (int i = 0; i < nth; i++) toks[i] = ktkz_tok_new(v, (size_t)vr.max_word_chars);
    /* a store tokenized before schema 5: its token counts, once */
    int recounted = 0;
    if ((rc = kstore_progress_recount(s, vr.id, &recounted))) { kerr("%s", kstore_errmsg(s)); goto out; }
    if (recounted) kinfo("counted the tokens of '%s' (once: a store from before schema 5)", vr.name);
    kvocab_progress pg;
    if ((rc = kstore_progress_get(s, vr.id, &pg))) { kerr("%s", kstore_errmsg(s)); goto out; }
    int64_t done0, todo, tokens0;
    if ((rc = kstore_tokens_count(s, vr.id, &done0, &todo, &tokens0))) { kerr("%s", kstore_errmsg(s)); goto out; }
    size_t batch = o->batch_docs ? o->batch_docs : 512;
    size_t nv = ktkz_size(v);
    freq = xmalloc((nv ? nv : 1) * sizeof *freq); /* (nv) piece counts of a batch */
    int64_t after = pg.tokenized_through; /* every document up to it has tokens */
    double last = 0;
    for (;;) {
        if (o->stop && *o->stop) { sum->interrupted = 1; break; }
        b.n = 0;
        kbuf_clear(&b.arena);
        b.nends = 0;
        if ((rc = kstore_docs_untokenized(s, vr.id, after, batch, collect, &b))) {
            kerr("%s", kstore_errmsg(s));
            goto out;
        }
        if (b.n == 0) break;
        after = b.d[b.n - 1].id;
        #pragma omp parallel for num_threads(nth) schedule(dynamic, 4)
        for (size_t i = 0; i < b.n; i++) tokenize_doc(toks[omp_get_thread_num()], bpe, &b, &b.d[i], layout);
        if ((rc = kstore_begin(s))) { kerr("%s", kstore_errmsg(s)); goto out; }
        memset(freq, 0, nv * sizeof *freq);
        int64_t batch_tokens = 0;
        for (size_t i = 0; i < b.n; i++) {
            tdoc *t = &b.d[i];
            ktokens_row r = {.doc_id = t->id, .vocab_id = vr.id, .layout = layout,
                             .n_tokens = t->ids.n, .tokens = t->packed, .n_sentences = t->n_sent,
                             .sent_ends = t->tok_ends, .word_starts = t->bits};
            int inserted = 0;
            if ((rc = kstore_tokens_insert(s, &r, &inserted))) {
                kerr("%s", kstore_errmsg(s));
                kstore_rollback(s);
                goto out;
            }
            t->stored = inserted; /* else another process was first */
            if (!inserted) continue;
            for (size_t k = 0; k < t->ids.n; k++)
                if (t->ids.ids[k] < nv) freq[t->ids.ids[k]]++;
            batch_tokens += (int64_t)t->ids.n;
        }
        /* the batch was the first untokenized documents after `after`: every
         * document up to its last one has tokens now */
        if ((rc = kstore_progress_tokenized(s, vr.id, after, freq, nv, batch_tokens)) || (rc = kstore_commit(s))) {
            kerr("%s", kstore_errmsg(s));
            kstore_rollback(s);
            goto out;
        }
        for (size_t i = 0; i < b.n; i++) {
            tdoc *t = &b.d[i];
            if (!t->stored) { tdoc_reset(t); continue; }
            sum->documents++;
            sum->sentences += t->n_sent;
            sum->tokens += t->ids.n;
            for (size_t k = 0; k < t->ids.n; k++) sum->unk += (int64_t)t->ids.ids[k] == unk;
            tdoc_reset(t);
        }
        double now = know_seconds();
        if (o->progress && now - last > 0.2) {
            last = now;
            ktokenize_progress pr = {sum->documents, (uint64_t)todo, now - t0};
            o->progress(&pr, o->progress_ctx);
        }
    }
    /* nothing left after the cursor: it moves to the last document */
    if (!sum->interrupted && (rc = kstore_progress_tokens_settle(s, vr.id))) { kerr("%s", kstore_errmsg(s)); goto out; }
    int64_t todo_after;
    if ((rc = kstore_tokens_count(s, vr.id, &sum->total_documents, &todo_after, &sum->total_tokens)))
        kerr("%s", kstore_errmsg(s));
out:
    free(freq);
    for (size_t i = 0; i < b.n; i++) tdoc_reset(&b.d[i]);
    free(b.d);
    free(b.ends);
    kbuf_free(&b.arena);
    if (toks) for (int i = 0; i < nth; i++) ktkz_tok_free(toks[i]);
    free(toks);
    ktkz_free(v);
    kbuf_free(&pieces);
    kbuf_free(&meta);
    sum->seconds = know_seconds() - t0;
    return rc;
}
