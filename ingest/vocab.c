/* vocab.c: trains a WordPiece vocabulary on the stored corpus: every
 * document's sentences through BERT's basic tokenizer into per-thread word
 * counters (bounded memory), merged, then text/wptrain's BPE-style merges;
 * the result is stored as a vocabulary. In the same pass, a census per
 * thread measures what accent stripping does to each script of the corpus;
 * when it would damage a script that is a significant part of it and the
 * caller left the choice to kiln (uncased, no accent flag), the words are
 * counted again without stripping (kvocab_train_run in ingest.h). */
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
    kwp_census **census;     /* (nth) per thread; NULL entries: not measuring (the recount) */
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
        if (c->census[t]) kwp_census_add(c->census[t], b->text.data + b->off[i], b->off[i + 1] - b->off[i]);
    }
    c->docs += b->n;
    b->n = 0;
    kbuf_clear(&b->text);
    double now = know_seconds();
    if (c->o->progress && now - c->last > 0.2) {
        c->last = now;
        c->o->progress(c->census[0] ? "counting words" : "counting words again, keeping accents", c->docs,
                       c->total_docs, c->o->progress_ctx);
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

int kvocab_row_mode(const kvocab_row *r)
{
    int m = r->cased ? KWP_CASED : 0;
    if (r->accents == KVOCAB_ACCENTS_STRIP) m |= KWP_STRIP_ACCENTS;
    else if (r->accents == KVOCAB_ACCENTS_KEEP) m |= KWP_KEEP_ACCENTS;
    if (r->icu_words) m |= KWP_ICU_WORDS;
    return m;
}

void kvocab_bpe_row(const kbpe_vocab *v, kvocab_row *r, kbuf *json, kbuf *merges)
{
    memset(r, 0, sizeof *r);
    kbuf_clear(json);
    kbuf_clear(merges);
    kbpe_vocab_json(v, json);
    kbpe_merges_text(v, merges);
    kbuf both = {0};
    kbuf_append(&both, json->data, json->len);
    kbuf_append(&both, merges->data, merges->len);
    khash128(both.data, both.len, r->hash);
    kbuf_free(&both);
    r->kind = KVOCAB_BPE;
    r->cased = 1;
    r->size = (int64_t)kbpe_vocab_size(v);
    r->pieces = json->data;
    r->pieces_len = json->len;
    r->merges = merges->data;
    r->merges_len = merges->len;
    r->max_word_chars = KWP_DEFAULT_MAX_WORD_CHARS;
}

/* Appends "Hangul 99.6% of 1239 letters (...)" figures to b for each script
 * of the census that is a significant part of the corpus, that stripping
 * damages (thresholds in ingest.h) and whose accents_only is as asked.
 * Returns how many. */
static int damaged_scripts(const kvocab_train_summary *sum, int accents_only, kbuf *b)
{
    int k = 0;
    for (size_t i = 0; i < sum->n_scripts && i < KVOCAB_MAX_SCRIPTS; i++) {
        const kwp_script_count *x = &sum->scripts[i];
        uint64_t hit = x->changed + x->dropped;
        if (x->accents_only != accents_only || !x->letters) continue;
        if ((double)x->letters < KVOCAB_SCRIPT_SHARE * (double)sum->letters) continue;
        if ((double)hit < KVOCAB_DAMAGE_SHARE * (double)x->letters) continue;
        kbuf_printf(b, "%s%s: %llu of %llu letters (%.1f%%; %llu changed, %llu dropped)", k ? ", " : "", x->name,
                    (unsigned long long)hit, (unsigned long long)x->letters,
                    100.0 * (double)hit / (double)x->letters, (unsigned long long)x->changed,
                    (unsigned long long)x->dropped);
        k++;
    }
    return k;
}

/* The census's figures into sum (scripts, letters). */
static void census_summary(vctx *c, kvocab_train_summary *sum)
{
    for (int i = 1; i < c->nth; i++) kwp_census_merge(c->census[0], c->census[i]);
    size_t n = kwp_census_scripts(c->census[0], sum->scripts, KVOCAB_MAX_SCRIPTS, &sum->letters);
    sum->n_scripts = n < KVOCAB_MAX_SCRIPTS ? n : KVOCAB_MAX_SCRIPTS;
}

/* Counts every document's words into fresh counters with the basic
 * tokenizer of mode (and the census when measure). Returns 0 or EX_*. */
static int count_words(kstore *s, vctx *c, int mode, int measure)
{
    char err[256];
    kwp_vocab *basic = NULL;
    /* the basic tokenizer needs only the mode: a one-piece vocabulary */
    if (kwp_vocab_load("[UNK]\n", 6, mode, &basic, err, sizeof err)) abort();
    size_t max_words = c->o->max_words ? c->o->max_words : 4000000;
    c->docs = 0;
    for (int i = 0; i < c->nth; i++) {
        kwp_tok_free(c->toks[i]);
        kwp_counter_free(c->counters[i]);
        c->toks[i] = kwp_tok_new(basic, 0);
        c->counters[i] = kwp_counter_new(max_words / (size_t)c->nth + 1);
        if (measure && !c->census[i]) c->census[i] = kwp_census_new();
        if (!measure) { kwp_census_free(c->census[i]); c->census[i] = NULL; }
    }
    int rc = kstore_docs_foreach(s, 0, add_doc, c);
    if (rc) kerr("%s", kstore_errmsg(s));
    else if (!(c->o->stop && *c->o->stop) && c->b.n) run_batch(c);
    c->b.n = 0;
    kbuf_clear(&c->b.text);
    for (int i = 0; i < c->nth; i++) { kwp_tok_free(c->toks[i]); c->toks[i] = NULL; }
    kwp_vocab_free(basic);
    return rc;
}

int kvocab_train_run(const char *db_path, const kvocab_train_opts *o, kvocab_train_summary *sum)
{
    if (o->bpe) return kvocab_train_bpe_run(db_path, o, sum);
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
    kbuf out = {0};
    kstore_totals tot;
    if ((rc = kstore_totals_get(s, &tot))) { kerr("%s", kstore_errmsg(s)); goto done; }
    if (tot.documents == 0) {
        kerr("the store has no documents: ingest a corpus first (kiln ingest PATH)");
        rc = EX_NOINPUT;
        goto done;
    }
    c.total_docs = (uint64_t)tot.documents;
    c.toks = xcalloc((size_t)c.nth, sizeof *c.toks);
    c.counters = xcalloc((size_t)c.nth, sizeof *c.counters);
    c.census = xcalloc((size_t)c.nth, sizeof *c.census);
    int mode = o->cased ? KWP_CASED : 0;
    if (o->accents == KVOCAB_ACCENTS_STRIP) mode |= KWP_STRIP_ACCENTS;
    else if (o->accents == KVOCAB_ACCENTS_KEEP) mode |= KWP_KEEP_ACCENTS;
    sum->accents = o->accents;
    if ((rc = count_words(s, &c, mode, 1))) goto done;
    if (o->stop && *o->stop) { sum->interrupted = 1; goto done; }
    census_summary(&c, sum);
    kbuf figs = {0};
    if (!o->cased && o->accents == KVOCAB_ACCENTS_CASING && damaged_scripts(sum, 0, &figs)) {
        kwarn("keeping accents: stripping them (uncased BERT's default) would change or drop letters of "
              "%s, out of %llu letters in the corpus; the vocabulary lowercases without stripping "
              "(strip_accents false); --strip-accents strips them anyway",
              figs.data, (unsigned long long)sum->letters);
        sum->accents = KVOCAB_ACCENTS_KEEP;
        sum->auto_keep = 1;
        if ((rc = count_words(s, &c, KWP_KEEP_ACCENTS, 0))) { kbuf_free(&figs); goto done; }
        if (o->stop && *o->stop) { sum->interrupted = 1; kbuf_free(&figs); goto done; }
    } else if ((o->accents == KVOCAB_ACCENTS_STRIP || (!o->cased && o->accents == KVOCAB_ACCENTS_CASING)) &&
               damaged_scripts(sum, 0, &figs)) {
        kinfo("stripping accents as asked: it changes or drops letters of %s", figs.data);
    }
    kbuf_free(&figs);
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
                "\"limit_alphabet\": %zu, \"documents\": %llu",
                o->size, o->cased ? "true" : "false", (unsigned long long)to.min_frequency,
                o->limit_alphabet, (unsigned long long)c.docs);
    /* only what differs from the defaults: the origin of a default vocabulary is unchanged */
    if (sum->accents != KVOCAB_ACCENTS_CASING)
        kbuf_printf(&origin, ", \"strip_accents\": %s%s", sum->accents == KVOCAB_ACCENTS_STRIP ? "true" : "false",
                    sum->auto_keep ? ", \"accents\": \"kept by the census\"" : "");
    if (o->icu_words) kbuf_puts(&origin, ", \"words\": \"icu\"");
    kbuf_putc(&origin, '}');
    kvocab_row vr = {0};
    vr.name = name;
    vr.cased = o->cased;
    vr.accents = sum->accents;
    vr.icu_words = o->icu_words;
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
    if (c.toks)
        for (int i = 0; i < c.nth; i++) {
            kwp_tok_free(c.toks[i]);
            kwp_counter_free(c.counters[i]);
            kwp_census_free(c.census[i]);
        }
    free(c.toks);
    free(c.counters);
    free(c.census);
    kbuf_free(&c.b.text);
    free(c.b.off);
    kbuf_free(&out);
    kstore_close(s);
    sum->seconds = know_seconds() - t0;
    return rc;
}
