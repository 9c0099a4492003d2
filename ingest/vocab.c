/* vocab.c: trains a WordPiece vocabulary on the stored corpus: every
 * document's sentences through BERT's basic tokenizer into per-thread word
 * counters (bounded memory), merged, then text/wptrain's BPE-style merges;
 * the result is stored as a vocabulary. */
#define _POSIX_C_SOURCE 200809L
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/ingest.h"
#include "text/wordpiece.h"
#include "text/wptrain.h"

#define BATCH_BYTES ((size_t)8 << 20)

typedef struct vbatch {
    kbuf text;               /* documents' texts back to back */
    size_t *off;             /* (n + 1) */
    size_t n, cap;
} vbatch;

typedef struct vctx {
    const kvocab_train_opts *o;
    vbatch b;
    kwp_tok **toks;
    kwp_counter **counters;
    int nth;
    uint64_t docs, total_docs;
    double t0, last;
} vctx;

static void count_word(const char *w, size_t n, void *ctx)
{
    kwp_counter_add(ctx, w, n, 1);
}

static void run_batch(vctx *c)
{
    vbatch *b = &c->b;
    #pragma omp parallel for num_threads(c->nth) schedule(static)
    for (size_t i = 0; i < b->n; i++) {
        int t = omp_get_thread_num();
        kwp_basic(c->toks[t], b->text.data + b->off[i], b->off[i + 1] - b->off[i], count_word,
                  c->counters[t]);
    }
    c->docs += b->n;
    b->n = 0;
    kbuf_clear(&b->text);
    double now = know_seconds();
    if (c->o->progress && now - c->last > 0.2) {
        c->last = now;
        c->o->progress("counting words", c->docs, c->total_docs, c->o->progress_ctx);
    }
}

static int add_doc(const kdoc *d, void *ctx)
{
    vctx *c = ctx;
    vbatch *b = &c->b;
    if (b->n + 2 > b->cap) {
        b->cap = b->cap ? b->cap * 2 : 256;
        b->off = xrealloc(b->off, b->cap * sizeof *b->off);
    }
    if (b->n == 0) b->off[0] = 0;
    kbuf_append(&b->text, d->text, d->text_len);
    b->off[++b->n] = b->text.len;
    if (b->text.len >= BATCH_BYTES) run_batch(c);
    return c->o->stop && *c->o->stop;
}

static void merge_progress(size_t done, size_t total, void *ctx)
{
    vctx *c = ctx;
    double now = know_seconds();
    if (c->o->progress && (now - c->last > 0.2 || done == total)) {
        c->last = now;
        c->o->progress("merging", done, total, c->o->progress_ctx);
    }
}

int kvocab_train_run(const char *db_path, const kvocab_train_opts *o, kvocab_train_summary *sum)
{
    memset(sum, 0, sizeof *sum);
    double t0 = know_seconds();
    char err[1024];
    kstore *s;
    int rc = kstore_open(db_path, 0, &s, err, sizeof err);
    if (rc) { kerr("%s", err); return rc; }
    vctx c = {0};
    c.o = o;
    c.t0 = t0;
    c.nth = o->threads < 1 ? 1 : o->threads;
    kwp_vocab *basic = NULL;
    kbuf out = {0};
    kstore_totals tot;
    if ((rc = kstore_totals_get(s, &tot))) { kerr("%s", kstore_errmsg(s)); goto done; }
    if (tot.documents == 0) {
        kerr("the store has no documents: ingest a corpus first (kiln ingest PATH)");
        rc = EX_NOINPUT;
        goto done;
    }
    c.total_docs = (uint64_t)tot.documents;
    /* the basic tokenizer needs only the casing: a one-piece vocabulary */
    if (kwp_vocab_load("[UNK]\n", 6, o->cased, &basic, err, sizeof err)) abort();
    c.toks = xcalloc((size_t)c.nth, sizeof *c.toks);
    c.counters = xcalloc((size_t)c.nth, sizeof *c.counters);
    size_t max_words = o->max_words ? o->max_words : 4000000;
    for (int i = 0; i < c.nth; i++) {
        c.toks[i] = kwp_tok_new(basic, 0);
        c.counters[i] = kwp_counter_new(max_words / (size_t)c.nth + 1);
    }
    if ((rc = kstore_docs_foreach(s, 0, add_doc, &c))) { kerr("%s", kstore_errmsg(s)); goto done; }
    if (o->stop && *o->stop) { sum->interrupted = 1; goto done; }
    if (c.b.n) run_batch(&c);
    for (int i = 1; i < c.nth; i++) kwp_counter_merge(c.counters[0], c.counters[i]);
    sum->documents = c.docs;
    sum->distinct_words = kwp_counter_size(c.counters[0]);
    sum->pruned = kwp_counter_pruned(c.counters[0]);
    double t1 = know_seconds();
    sum->count_seconds = t1 - t0;

    static const char *const specials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    kwp_train_opts to = {
        .vocab_size = o->size,
        .min_frequency = o->min_frequency ? o->min_frequency : 2,
        .limit_alphabet = o->limit_alphabet,
        .special = specials,
        .n_special = 5,
        .progress = merge_progress,
        .progress_ctx = &c,
    };
    if (kwp_train(c.counters[0], &to, &out, err, sizeof err)) {
        kerr("vocabulary training: %s", err);
        rc = EX_DATAERR;
        goto done;
    }
    sum->merge_seconds = know_seconds() - t1;
    char name[128];
    if (o->name) snprintf(name, sizeof name, "%s", o->name);
    else snprintf(name, sizeof name, "trained-%zu%s", o->size, o->cased ? "-cased" : "");
    kbuf origin = {0};
    kbuf_printf(&origin,
                "train:{\"size\": %zu, \"cased\": %s, \"min_frequency\": %llu, "
                "\"limit_alphabet\": %zu, \"documents\": %llu}",
                o->size, o->cased ? "true" : "false", (unsigned long long)to.min_frequency,
                o->limit_alphabet, (unsigned long long)c.docs);
    kvocab_row vr = {0};
    vr.name = name;
    vr.cased = o->cased;
    vr.pieces = out.data;
    vr.pieces_len = out.len;
    for (size_t i = 0; i < out.len; i++) vr.size += out.data[i] == '\n';
    khash128(out.data, out.len, vr.hash);
    vr.max_word_chars = KWP_DEFAULT_MAX_WORD_CHARS;
    vr.origin = origin.data;
    rc = kstore_vocab_add(s, &vr, &sum->vocab_id);
    kbuf_free(&origin);
    if (rc) { kerr("%s", kstore_errmsg(s)); goto done; }
    snprintf(sum->name, sizeof sum->name, "%s", name);
    sum->size = (size_t)vr.size;
done:
    if (c.toks) for (int i = 0; i < c.nth; i++) { kwp_tok_free(c.toks[i]); kwp_counter_free(c.counters[i]); }
    free(c.toks);
    free(c.counters);
    kbuf_free(&c.b.text);
    free(c.b.off);
    kbuf_free(&out);
    kwp_vocab_free(basic);
    kstore_close(s);
    sum->seconds = know_seconds() - t0;
    return rc;
}
