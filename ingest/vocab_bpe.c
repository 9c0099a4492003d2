/* vocab_bpe.c: trains a byte-level BPE vocabulary (GPT-2's kind) on the
 * stored corpus and stores it (kvocab_train_bpe_run in ingest.h).
 *
 * Design notes, as invariants:
 *  1. Words are what the encoder will see: GPT-2's pre-tokens of each
 *     document's sentences, sentence i > 0 with the space before it (as
 *     ingest/tokenize.c encodes them), each byte written as its
 *     bytes_to_unicode char (UTF-8), so a word is a string of the 256 byte
 *     chars and a merged token is written as vocab.json writes it.
 *  2. Counting is per batch of documents (id order, BATCH_BYTES of text; the
 *     cut depends on the documents only): the threads count a batch's
 *     documents into their own counters without a limit (memory: one batch's
 *     distinct words), which are merged into the corpus counter, and only
 *     then is it trimmed to max_words (kwp_counter_trim). The words kept are a
 *     function of the batches' word counts, whatever the thread count or the
 *     order of the merges: the vocabulary is the same bytes for any --threads.
 *  3. Training is kwp_train's with no_prefix (no "##" forms, a merge is a + b)
 *     and the 256 byte chars as initial alphabet: its output is the 256 byte
 *     tokens sorted by bytes (= by code point: GPT-2's encoder.json order),
 *     then the merged tokens in merge order; "<|endoftext|>" is added last.
 *  4. What is stored is what kbpe_vocab_load accepts and writes back
 *     (kbpe_vocab_json, kbpe_merges_text): the result is loaded once before
 *     it is stored, so a stored trained vocabulary always loads. */
#define _POSIX_C_SOURCE 200809L
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/ingest.h"
#include "text/bpe.h"
#include "text/wptrain.h"

#define BATCH_BYTES ((size_t)8 << 20)
#define DEFAULT_MAX_WORDS ((size_t)4000000)

typedef struct bbatch {
    kbuf text;               /* documents' texts back to back */
    size_t *off;             /* (n + 1, cap) text offsets */
    size_t *ends;            /* (n + 1, cap) offsets into sent */
    size_t n, cap;
    uint32_t *sent;          /* (nsent, csent) sentence ends, byte offsets in their document */
    size_t nsent, csent;
} bbatch;

/* One thread's state: its pre-tokenizer, byte-level scratch and counter. */
typedef struct bthread {
    kbpe_tok *pre;
    kbuf word;
    kwp_counter *counter;
    const char (*bchar)[3];  /* (256) byte -> its char's UTF-8, NUL padded */
    const uint8_t *blen;     /* (256) its length */
} bthread;

typedef struct bctx {
    const kvocab_train_opts *o;
    bbatch b;
    bthread *th;             /* (nth) */
    int nth;
    kwp_counter *all;        /* the corpus's words (trimmed to max_words per batch) */
    size_t max_words;
    uint64_t docs, total_docs;
    double last;
} bctx;

/* A pre-token -> its byte-level string, counted. */
static void count_pretoken(const char *tok, size_t len, void *ctx)
{
    bthread *t = ctx;
    kbuf_clear(&t->word);
    kbuf_reserve(&t->word, 2 * len);
    char *w = t->word.data;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)tok[i];
        memcpy(w + n, t->bchar[c], 2);
        n += t->blen[c];
    }
    kwp_counter_add(t->counter, w, n, 1);
}

/* Document i of the batch into thread t's counter (invariant 1). */
static void count_doc(bthread *t, bbatch *b, size_t i)
{
    char *text = b->text.data + b->off[i]; /* this batch's copy: ours to change */
    const uint32_t *ends = b->sent + b->ends[i];
    size_t ns = b->ends[i + 1] - b->ends[i];
    uint32_t start = 0;
    if (!b->text.data) return;
    for (size_t k = 0; k < ns; k++) {
        if (ends[k] < start) break; /* not increasing: the store checks only that they are in the text */
        if (k > 0) {
            text[start - 1] = ' '; /* the '\n' between the sentences */
            kbpe_pretokenize(t->pre, text + start - 1, ends[k] - start + 1, count_pretoken, t);
        } else {
            kbpe_pretokenize(t->pre, text, ends[k], count_pretoken, t);
        }
        start = ends[k] + 1;
    }
}

static void run_batch(bctx *c)
{
    bbatch *b = &c->b;
    #pragma omp parallel for num_threads(c->nth) schedule(dynamic, 4)
    for (size_t i = 0; i < b->n; i++) count_doc(&c->th[omp_get_thread_num()], b, i);
    for (int t = 0; t < c->nth; t++) kwp_counter_merge(c->all, c->th[t].counter);
    kwp_counter_trim(c->all, c->max_words); /* invariant 2: only here */
    c->docs += b->n;
    b->n = 0;
    b->nsent = 0;
    kbuf_clear(&b->text);
    double now = know_seconds();
    if (c->o->progress && now - c->last > 0.2) {
        c->last = now;
        c->o->progress("counting words", c->docs, c->total_docs, c->o->progress_ctx);
    }
}

static int add_doc(const kdoc *d, void *ctx)
{
    bctx *c = ctx;
    bbatch *b = &c->b;
    if (b->n + 2 > b->cap) {
        b->cap = b->cap ? b->cap * 2 : 256;
        b->off = xrealloc(b->off, b->cap * sizeof *b->off);
        b->ends = xrealloc(b->ends, b->cap * sizeof *b->ends);
    }
    if (b->n == 0) b->off[0] = b->ends[0] = 0;
    if (b->nsent + d->n_sentences > b->csent) {
        while (b->nsent + d->n_sentences > b->csent) b->csent = b->csent ? 2 * b->csent : 4096;
        b->sent = xrealloc(b->sent, b->csent * sizeof *b->sent);
    }
    memcpy(b->sent + b->nsent, d->sent_ends, d->n_sentences * sizeof *b->sent);
    b->nsent += d->n_sentences;
    kbuf_append(&b->text, d->text, d->text_len);
    b->n++;
    b->off[b->n] = b->text.len;
    b->ends[b->n] = b->nsent;
    if (b->text.len >= BATCH_BYTES) run_batch(c);
    return c->o->stop && *c->o->stop;
}

static void merge_progress(size_t done, size_t total, void *ctx)
{
    bctx *c = ctx;
    double now = know_seconds();
    if (c->o->progress && (now - c->last > 0.2 || done == total)) {
        c->last = now;
        c->o->progress("merging", done, total, c->o->progress_ctx);
    }
}

/* vocab.json of the trained tokens (lines of pieces, then "<|endoftext|>")
 * into json; the number of tokens, or 0 if a piece is "<|endoftext|>" or the
 * first 256 are not the byte chars in code point order (never: invariant 3). */
static size_t vocab_json(const kbuf *pieces, const char (*bchar)[3], const uint8_t *blen, kbuf *json)
{
    /* the byte chars in code point order */
    uint32_t cps[256];
    for (unsigned b = 0; b < 256; b++) cps[b] = kbpe_byte_char((unsigned char)b);
    unsigned char order[256];
    for (unsigned i = 0; i < 256; i++) order[i] = (unsigned char)i;
    for (unsigned i = 1; i < 256; i++) /* insertion sort by code point */
        for (unsigned j = i; j > 0 && cps[order[j - 1]] > cps[order[j]]; j--) {
            unsigned char x = order[j];
            order[j] = order[j - 1];
            order[j - 1] = x;
        }
    size_t id = 0;
    kbuf_putc(json, '{');
    for (size_t p = 0; p < pieces->len;) {
        const char *ls = pieces->data + p;
        const char *nl = memchr(ls, '\n', pieces->len - p);
        size_t ll = nl ? (size_t)(nl - ls) : pieces->len - p;
        p += ll + 1;
        if (id < 256 && (ll != blen[order[id]] || memcmp(ls, bchar[order[id]], ll))) return 0;
        if (ll == strlen(KBPE_EOT) && !memcmp(ls, KBPE_EOT, ll)) return 0;
        if (id) kbuf_puts(json, ", ");
        kbuf_json_str(json, ls, ll);
        kbuf_printf(json, ": %zu", id++);
    }
    if (id < 256) return 0;
    kbuf_puts(json, ", ");
    kbuf_json_str(json, KBPE_EOT, strlen(KBPE_EOT));
    kbuf_printf(json, ": %zu}\n", id++);
    return id;
}

int kvocab_train_bpe_run(const char *db_path, const kvocab_train_opts *o, kvocab_train_summary *sum)
{
    memset(sum, 0, sizeof *sum);
    sum->bpe = 1;
    double t0 = know_seconds();
    if (o->size < 257) {
        kerr("a byte-level BPE vocabulary needs --size >= 257 (the 256 byte tokens and <|endoftext|>), not %zu",
             o->size);
        return EX_USAGE;
    }
    if (o->cased || o->accents || o->icu_words || o->limit_alphabet) {
        kerr("a byte-level BPE vocabulary keeps every byte: no casing, accents, ICU words or alphabet limit");
        return EX_USAGE;
    }
    char err[1024];
    kstore *s;
    int rc = kstore_open(db_path, 0, &s, err, sizeof err);
    if (rc) { kerr("%s", err); return rc; }

    /* the byte chars' UTF-8 */
    char bchar[256][3];
    uint8_t blen[256];
    uint32_t alphabet[256];
    for (unsigned b = 0; b < 256; b++) {
        kbuf one = {0};
        alphabet[b] = kbpe_byte_char((unsigned char)b);
        kbuf_put_cp(&one, alphabet[b]);
        memset(bchar[b], 0, sizeof bchar[b]);
        memcpy(bchar[b], one.data, one.len);
        blen[b] = (uint8_t)one.len;
        kbuf_free(&one);
    }

    bctx c = {0};
    c.o = o;
    c.nth = o->threads < 1 ? 1 : o->threads;
    c.max_words = o->max_words ? o->max_words : DEFAULT_MAX_WORDS;
    kbuf pieces = {0}, merges = {0}, json = {0}, mtext = {0}, canon = {0}, cmerges = {0}, origin = {0};
    kbpe_vocab *v = NULL;
    kstore_totals tot;
    if ((rc = kstore_totals_get(s, &tot))) { kerr("%s", kstore_errmsg(s)); goto done; }
    if (tot.documents == 0) {
        kerr("the store has no documents: ingest a corpus first (kiln ingest PATH)");
        rc = EX_NOINPUT;
        goto done;
    }
    c.total_docs = (uint64_t)tot.documents;
    c.all = kwp_counter_new(0);
    c.th = xcalloc((size_t)c.nth, sizeof *c.th);
    for (int i = 0; i < c.nth; i++) {
        c.th[i].pre = kbpe_tok_new(NULL);
        c.th[i].counter = kwp_counter_new(0);
        c.th[i].bchar = (const char (*)[3])bchar;
        c.th[i].blen = blen;
    }
    rc = kstore_docs_foreach(s, 0, add_doc, &c);
    if (rc) { kerr("%s", kstore_errmsg(s)); goto done; }
    if (o->stop && *o->stop) { sum->interrupted = 1; goto done; }
    if (c.b.n) run_batch(&c);
    sum->documents = c.docs;
    sum->distinct_words = kwp_counter_size(c.all);
    sum->pruned = kwp_counter_pruned(c.all);
    double t1 = know_seconds();
    sum->count_seconds = t1 - t0;

    kwp_train_opts to = {
        .vocab_size = o->size - 1, /* "<|endoftext|>" comes after */
        .min_frequency = o->min_frequency ? o->min_frequency : 2,
        .progress = merge_progress,
        .progress_ctx = &c,
        .no_prefix = 1,
        .initial_alphabet = alphabet,
        .n_initial_alphabet = 256,
        .merges = &merges,
    };
    if (kwp_train(c.all, &to, &pieces, err, sizeof err)) {
        kerr("vocabulary training: %s", err);
        rc = EX_DATAERR;
        goto done;
    }
    if (o->stop && *o->stop) { sum->interrupted = 1; goto done; }
    sum->merge_seconds = know_seconds() - t1;
    size_t ntok = vocab_json(&pieces, (const char (*)[3])bchar, blen, &json);
    kbuf_puts(&mtext, "#version: 0.2\n");
    kbuf_append(&mtext, merges.data, merges.len);
    if (!ntok || kbpe_vocab_load(json.data, json.len, mtext.data, mtext.len, &v, err, sizeof err)) {
        kerr("internal error: the trained BPE vocabulary does not load: %s", ntok ? err : "bad token order");
        rc = EX_SOFTWARE;
        goto done;
    }
    sum->merges = kbpe_vocab_nmerges(v);

    char name[128];
    if (o->name) snprintf(name, sizeof name, "%s", o->name);
    else snprintf(name, sizeof name, "trained-bpe-%zu", o->size);
    kbuf_printf(&origin, "train:{\"kind\": \"bpe\", \"size\": %zu, \"min_frequency\": %llu, \"documents\": %llu}",
                o->size, (unsigned long long)to.min_frequency, (unsigned long long)c.docs);
    kvocab_row vr;
    kvocab_bpe_row(v, &vr, &canon, &cmerges);
    vr.name = name;
    vr.origin = origin.data;
    if ((rc = kstore_vocab_add(s, &vr, &sum->vocab_id))) { kerr("%s", kstore_errmsg(s)); goto done; }
    snprintf(sum->name, sizeof sum->name, "%s", name);
    sum->size = (size_t)vr.size;
done:
    if (c.th)
        for (int i = 0; i < c.nth; i++) {
            kbpe_tok_free(c.th[i].pre);
            kbuf_free(&c.th[i].word);
            kwp_counter_free(c.th[i].counter);
        }
    free(c.th);
    kwp_counter_free(c.all);
    kbuf_free(&c.b.text);
    free(c.b.off);
    free(c.b.ends);
    free(c.b.sent);
    kbpe_vocab_free(v);
    kbuf_free(&pieces);
    kbuf_free(&merges);
    kbuf_free(&json);
    kbuf_free(&mtext);
    kbuf_free(&canon);
    kbuf_free(&cmerges);
    kbuf_free(&origin);
    kstore_close(s);
    sum->seconds = know_seconds() - t0;
    return rc;
}
