/* link.c: entity mentions in the tokenized corpus. Every alias is tokenized
 * with the vocabulary; the token sequences go into a trie keyed by token id;
 * each tokenized document is scanned sentence by sentence for the longest
 * alias starting at a word start and ending before a word start or the
 * sentence end. Disambiguation: the longer match wins (leftmost-longest),
 * then, among the entities of one alias, the best connected (most triples),
 * with score = its share of the candidates' degrees (+1 each). Guards:
 * aliases shorter than min_alias_chars characters, containing [UNK], of a
 * single piece more frequent than max_alias_share of the corpus tokens, or
 * of pieces all more frequent than ten times that, are not matched.
 * Incremental: documents linked at the current alias generation are skipped;
 * an import that adds aliases bumps the generation and they are relinked.
 *
 * Work (issue #18): a linker (the trie, the entity degrees, the corpus's
 * piece counts) is built once and kept by its user (the daemon keeps one
 * across spool files); a run reads the piece counts the store keeps with the
 * tokens (no recount of the corpus) and starts after the vocabulary's
 * linked_through (vocab_progress), so it costs the new documents, not the
 * store. The counts are those of the corpus when the linker was built; it is
 * rebuilt when the vocabulary, the alias generation or the knowledge graph's
 * files change, or when the corpus has doubled since (the guard's shares of
 * a corpus that doubled have moved little). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kg/kg.h"
#include "text/wordpiece.h"

/* ---- trie over token ids ----------------------------------------------------------------- */

typedef struct trie {
    uint64_t *key;     /* (cap) (node << 32 | token) + 1, 0 = empty */
    uint32_t *child;   /* (cap) */
    size_t n, cap;
    uint32_t nodes;    /* node 0 is the root */
    int64_t *best;     /* (nodes) entity id at a terminal node, 0 otherwise */
    double *best_deg, *sum_deg; /* (nodes) the best entity's degree, the candidates' sum (+1 each) */
    uint32_t node_cap;
} trie;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL; x ^= x >> 33;
    return x;
}

static void trie_grow_edges(trie *t)
{
    size_t cap = t->cap ? t->cap * 2 : 4096;
    uint64_t *ok = t->key;
    uint32_t *oc = t->child;
    size_t ocap = t->cap;
    t->key = xcalloc(cap, sizeof *t->key);
    t->child = xcalloc(cap, sizeof *t->child);
    t->cap = cap;
    for (size_t i = 0; i < ocap; i++)
        if (ok[i])
            for (size_t j = mix(ok[i]) & (cap - 1);; j = (j + 1) & (cap - 1))
                if (!t->key[j]) { t->key[j] = ok[i]; t->child[j] = oc[i]; break; }
    free(ok);
    free(oc);
}

static uint32_t trie_find(const trie *t, uint32_t node, uint32_t tok)
{
    if (!t->cap) return 0;
    uint64_t k = (((uint64_t)node << 32) | tok) + 1;
    for (size_t j = mix(k) & (t->cap - 1);; j = (j + 1) & (t->cap - 1)) {
        if (!t->key[j]) return 0;
        if (t->key[j] == k) return t->child[j];
    }
}

static uint32_t trie_add(trie *t, uint32_t node, uint32_t tok)
{
    uint32_t c = trie_find(t, node, tok);
    if (c) return c;
    if (2 * (t->n + 1) > t->cap) trie_grow_edges(t);
    if (t->nodes + 1 >= t->node_cap) {
        t->node_cap = t->node_cap ? t->node_cap * 2 : 1024;
        t->best = xrealloc(t->best, t->node_cap * sizeof *t->best);
        t->best_deg = xrealloc(t->best_deg, t->node_cap * sizeof *t->best_deg);
        t->sum_deg = xrealloc(t->sum_deg, t->node_cap * sizeof *t->sum_deg);
    }
    c = t->nodes++;
    t->best[c] = 0;
    t->best_deg[c] = t->sum_deg[c] = 0;
    uint64_t k = (((uint64_t)node << 32) | tok) + 1;
    for (size_t j = mix(k) & (t->cap - 1);; j = (j + 1) & (t->cap - 1))
        if (!t->key[j]) { t->key[j] = k; t->child[j] = c; break; }
    t->n++;
    return c;
}

static void trie_free(trie *t)
{
    free(t->key); free(t->child); free(t->best); free(t->best_deg); free(t->sum_deg);
}

/* ---- building the alias index -------------------------------------------------------------- */

typedef struct lctx {
    const kkg_link_opts *o;
    kkg_link_summary *sum;
    kwp_tok *tok;
    const kwp_vocab *v;
    kwp_ids ids;
    trie tr;
    double *deg;          /* (max_ent + 1) */
    int64_t max_ent;
    uint64_t *freq;       /* (vocab size) corpus token counts */
    uint64_t corpus_tokens;
    int64_t vocab_id, gen;
} lctx;

static int count_degree(int64_t h, int64_t r, int64_t t, int split, void *ctx)
{
    lctx *c = ctx;
    (void)r; (void)split;
    if (h > c->max_ent || t > c->max_ent) {
        int64_t m = h > t ? h : t;
        c->deg = xrealloc(c->deg, (size_t)(m + 1) * sizeof *c->deg);
        for (int64_t i = c->max_ent + 1; i <= m; i++) c->deg[i] = 0;
        c->max_ent = m;
    }
    c->deg[h] += 1;
    c->deg[t] += 1;
    return 0;
}

static uint32_t token_at(const ktokens_row *t, size_t i)
{
    if (t->layout == KTOK_LAYOUT_U16) {
        uint16_t v;
        memcpy(&v, (const char *)t->tokens + 2 * i, 2);
        return v;
    }
    uint32_t v;
    memcpy(&v, (const char *)t->tokens + 4 * i, 4);
    return v;
}

static int add_alias(int64_t entity, const char *alias, void *ctx)
{
    lctx *c = ctx;
    c->sum->aliases++;
    size_t chars = 0;
    for (const char *p = alias; *p; p++) chars += ((unsigned char)*p & 0xC0) != 0x80;
    if (chars < c->o->min_alias_chars) { c->sum->aliases_dropped_short++; return 0; }
    kwp_ids_clear(&c->ids);
    kwp_encode(c->tok, alias, strlen(alias), &c->ids);
    if (!c->ids.n || c->ids.n > 32) { c->sum->aliases_dropped_short++; return 0; }
    uint32_t unk = (uint32_t)kwp_vocab_special(c->v, KWP_UNK);
    for (size_t i = 0; i < c->ids.n; i++)
        if (c->ids.ids[i] == unk) { c->sum->aliases_dropped_short++; return 0; }
    /* too common: a single piece above max_alias_share of the corpus tokens,
     * or several pieces all above ten times that ("The U" in "the U.S.") */
    if (c->corpus_tokens) {
        double lim = c->o->max_alias_share * (double)c->corpus_tokens * (c->ids.n == 1 ? 1 : 10);
        size_t common = 0;
        for (size_t i = 0; i < c->ids.n; i++) common += (double)c->freq[c->ids.ids[i]] > lim;
        if (common == c->ids.n) { c->sum->aliases_dropped_common++; return 0; }
    }
    uint32_t node = 0;
    for (size_t i = 0; i < c->ids.n; i++) node = trie_add(&c->tr, node, c->ids.ids[i]);
    double d = entity <= c->max_ent ? c->deg[entity] : 0;
    trie *t = &c->tr;
    t->sum_deg[node] += d + 1;
    if (!t->best[node] || d > t->best_deg[node] || (d == t->best_deg[node] && entity < t->best[node])) {
        t->best[node] = entity;
        t->best_deg[node] = d;
    }
    c->sum->aliases_used++;
    return 0;
}

/* ---- linking documents ------------------------------------------------------------------ */

typedef struct mention { int64_t doc; uint32_t start, end; int64_t entity; double score; } mention;

typedef struct lbatch {
    int64_t *docs;      /* (nd, cd) */
    size_t nd, cd;
    mention *m;         /* (nm, cm) */
    size_t nm, cm;
    uint64_t tokens;
} lbatch;

static int link_doc(const ktokens_row *t, void *ctx)
{
    lctx *c = ((void **)ctx)[0];
    lbatch *b = ((void **)ctx)[1];
    if (b->nd == b->cd) { b->cd = b->cd ? b->cd * 2 : 256; b->docs = xrealloc(b->docs, b->cd * sizeof *b->docs); }
    b->docs[b->nd++] = t->doc_id;
    b->tokens += t->n_tokens;
    const trie *tr = &c->tr;
    size_t start = 0;
    for (size_t si = 0; si < t->n_sentences; si++) {
        size_t end = t->sent_ends[si];
        for (size_t i = start; i < end;) {
            if (!(t->word_starts[i / 8] >> (i % 8) & 1)) { i++; continue; }
            uint32_t node = 0;
            size_t best_end = 0;
            uint32_t best_node = 0;
            for (size_t j = i; j < end; j++) {
                node = trie_find(tr, node, token_at(t, j));
                if (!node) break;
                int boundary = j + 1 == end || (t->word_starts[(j + 1) / 8] >> ((j + 1) % 8) & 1);
                if (tr->best[node] && boundary) { best_end = j + 1; best_node = node; }
            }
            if (!best_end) { i++; continue; }
            if (b->nm == b->cm) { b->cm = b->cm ? b->cm * 2 : 1024; b->m = xrealloc(b->m, b->cm * sizeof *b->m); }
            b->m[b->nm++] = (mention){t->doc_id, (uint32_t)i, (uint32_t)best_end, tr->best[best_node],
                                      (tr->best_deg[best_node] + 1) / tr->sum_deg[best_node]};
            i = best_end;
        }
        start = end;
    }
    return c->o->stop && *c->o->stop;
}

/* ---- the linker ----------------------------------------------------------------------- */

struct kkg_linker {
    lctx c;                      /* the trie, degrees and piece counts */
    kwp_vocab *v;                /* owned */
    kkg_link_opts o;
    kkg_link_summary built;      /* alias counts of the build */
    /* what it was built from (kkg_linker_fits) */
    int64_t gen, kg_files, kg_triples, corpus_tokens;
};

static void linker_clear(kkg_linker *l)
{
    trie_free(&l->c.tr);
    free(l->c.deg);
    free(l->c.freq);
    kwp_ids_free(&l->c.ids);
    kwp_tok_free(l->c.tok);
    kwp_vocab_free(l->v);
    l->v = NULL;
    memset(&l->c, 0, sizeof l->c);
}

void kkg_linker_free(kkg_linker *l)
{
    if (!l) return;
    linker_clear(l);
    free(l);
}

/* (Re)builds l from the store; 0 or EX_* (message logged). */
static int linker_build(kkg_linker *l, kstore *s)
{
    linker_clear(l);
    memset(&l->built, 0, sizeof l->built);
    lctx *c = &l->c;
    c->o = &l->o;
    c->sum = &l->built;
    c->max_ent = -1;
    kvocab_row vr;
    kbuf pieces = {0}, meta = {0};
    char err[512];
    int rc = kstore_vocab_get(s, l->o.vocab, &vr, &pieces, &meta);
    if (rc) { kerr("%s", kstore_errmsg(s)); goto out; }
    if (vr.kind == KVOCAB_BPE) {
        kerr("vocabulary '%s' is a byte-level BPE vocabulary: entity linking works on WordPiece words "
             "(choose one with --vocab or kiln vocab use)", vr.name);
        rc = EX_CONFIG;
        goto out;
    }
    /* the vocabulary's own tokenizer: casing and accents as stored (an alias of
     * a Korean entity keeps its syllables when the vocabulary keeps accents) */
    int mode = (vr.cased ? KWP_CASED : 0) | (vr.accents == KVOCAB_ACCENTS_STRIP  ? KWP_STRIP_ACCENTS
                                             : vr.accents == KVOCAB_ACCENTS_KEEP ? KWP_KEEP_ACCENTS
                                                                                 : 0);
    if (kwp_vocab_load(pieces.data, pieces.len, mode, &l->v, err, sizeof err)) {
        kerr("vocabulary '%s': %s", vr.name, err);
        rc = EX_DATAERR;
        goto out;
    }
    c->v = l->v;
    c->vocab_id = vr.id;
    c->tok = kwp_tok_new(l->v, (size_t)vr.max_word_chars);
    int recounted = 0;
    if ((rc = kstore_progress_recount(s, vr.id, &recounted))) { kerr("%s", kstore_errmsg(s)); goto out; }
    if (recounted) kinfo("counted the tokens of '%s' (once: a store from before schema 5)", vr.name);
    kvocab_progress pg;
    if ((rc = kstore_progress_get(s, vr.id, &pg))) { kerr("%s", kstore_errmsg(s)); goto out; }
    if (pg.docs == 0) {
        kerr("no document is tokenized with '%s' yet: run kiln tokenize first", vr.name);
        rc = EX_NOINPUT;
        goto out;
    }
    if ((rc = kstore_kg_state(s, &l->gen, &l->kg_files, &l->kg_triples))) { kerr("%s", kstore_errmsg(s)); goto out; }
    c->gen = l->gen;
    if ((rc = kstore_kg_triples_foreach(s, count_degree, c))) { kerr("%s", kstore_errmsg(s)); goto out; }
    size_t nv = kwp_vocab_size(l->v);
    c->freq = xmalloc((nv ? nv : 1) * sizeof *c->freq);
    if ((rc = kstore_token_counts_get(s, vr.id, c->freq, nv))) { kerr("%s", kstore_errmsg(s)); goto out; }
    c->corpus_tokens = (uint64_t)pg.tokens;
    l->corpus_tokens = pg.tokens;
    c->tr.nodes = 1;
    c->tr.node_cap = 1024;
    c->tr.best = xcalloc(c->tr.node_cap, sizeof *c->tr.best);
    c->tr.best_deg = xcalloc(c->tr.node_cap, sizeof *c->tr.best_deg);
    c->tr.sum_deg = xcalloc(c->tr.node_cap, sizeof *c->tr.sum_deg);
    if ((rc = kstore_kg_aliases_foreach(s, add_alias, c))) { kerr("%s", kstore_errmsg(s)); goto out; }
    if (!l->built.aliases) {
        kerr("the knowledge graph has no names: import names (kiln kg import --names FILE) first");
        rc = EX_NOINPUT;
        goto out;
    }
out:
    kbuf_free(&pieces);
    kbuf_free(&meta);
    return rc;
}

int kkg_linker_new(kstore *s, const kkg_link_opts *o, kkg_linker **out)
{
    *out = NULL;
    kkg_linker *l = xcalloc(1, sizeof *l);
    l->o = *o;
    int rc = linker_build(l, s);
    if (rc) { kkg_linker_free(l); return rc; }
    *out = l;
    return 0;
}

int kkg_linker_fits(kkg_linker *l, kstore *s, int *fits)
{
    *fits = 0;
    kvocab_row vr;
    kbuf pieces = {0}, meta = {0};
    int rc = kstore_vocab_get(s, l->o.vocab, &vr, &pieces, &meta);
    kbuf_free(&pieces);
    kbuf_free(&meta);
    if (rc) return rc;
    int64_t gen, files, triples;
    kvocab_progress pg;
    if ((rc = kstore_kg_state(s, &gen, &files, &triples)) || (rc = kstore_progress_get(s, vr.id, &pg))) return rc;
    *fits = vr.id == l->c.vocab_id && gen == l->gen && files == l->kg_files && triples == l->kg_triples &&
            pg.tokens < 2 * l->corpus_tokens;
    return 0;
}

int kkg_linker_run(kkg_linker *l, kstore *s, const kkg_link_opts *o, kkg_link_summary *sum)
{
    memset(sum, 0, sizeof *sum);
    double t0 = know_seconds();
    lbatch b = {0};
    int fits = 0;
    int rc = kkg_linker_fits(l, s, &fits);
    if (rc) { kerr("%s", kstore_errmsg(s)); goto out; }
    if (!fits) {
        kdebug("link: the alias index is rebuilt (vocabulary, aliases, knowledge graph or corpus changed)");
        if ((rc = linker_build(l, s))) goto out;
    }
    l->o.stop = o->stop;
    l->o.progress = o->progress;
    l->o.progress_ctx = o->progress_ctx;
    sum->aliases = l->built.aliases;
    sum->aliases_used = l->built.aliases_used;
    sum->aliases_dropped_short = l->built.aliases_dropped_short;
    sum->aliases_dropped_common = l->built.aliases_dropped_common;
    lctx *c = &l->c;
    int64_t vocab = c->vocab_id, gen = c->gen;
    kvocab_progress pg;
    if ((rc = kstore_progress_get(s, vocab, &pg))) { kerr("%s", kstore_errmsg(s)); goto out; }
    /* every document up to linked_through is linked at that generation */
    int64_t after = pg.linked_generation == gen ? pg.linked_through : 0;
    double last = 0;
    for (;;) {
        if (o->stop && *o->stop) { sum->interrupted = 1; break; }
        b.nd = b.nm = 0;
        b.tokens = 0;
        void *pair[2] = {c, &b};
        if ((rc = kstore_kg_unlinked_foreach(s, vocab, gen, after, 256, link_doc, pair))) {
            kerr("%s", kstore_errmsg(s));
            goto out;
        }
        if (!b.nd) break;
        after = b.docs[b.nd - 1];
        if ((rc = kstore_begin(s))) { kerr("%s", kstore_errmsg(s)); goto out; }
        for (size_t i = 0; i < b.nd && !rc; i++) rc = kstore_kg_doc_relink(s, vocab, b.docs[i]);
        for (size_t i = 0; i < b.nm && !rc; i++)
            rc = kstore_kg_mention_add(s, vocab, b.m[i].doc, b.m[i].start, b.m[i].end, b.m[i].entity,
                                       b.m[i].score);
        for (size_t i = 0; i < b.nd && !rc; i++) rc = kstore_kg_doc_linked(s, vocab, b.docs[i], gen);
        /* the batch was the first unlinked tokenized documents after `after` */
        if (!rc) rc = kstore_progress_linked(s, vocab, after, gen);
        if (rc || (rc = kstore_commit(s))) {
            kerr("%s", kstore_errmsg(s));
            kstore_rollback(s);
            goto out;
        }
        sum->documents += b.nd;
        sum->mentions += b.nm;
        sum->tokens += b.tokens;
        double now = know_seconds();
        if (o->progress && now - last > 0.2) {
            last = now;
            o->progress(sum->documents, (uint64_t)(pg.docs > 0 ? pg.docs : 0), o->progress_ctx);
        }
    }
    /* nothing left after the cursor: it moves up to tokenized_through */
    if (!sum->interrupted && (rc = kstore_progress_links_settle(s, vocab, gen))) kerr("%s", kstore_errmsg(s));
out:
    free(b.docs);
    free(b.m);
    sum->seconds = know_seconds() - t0;
    return rc;
}

int kkg_link(kstore *s, const kkg_link_opts *o, kkg_link_summary *sum)
{
    memset(sum, 0, sizeof *sum);
    double t0 = know_seconds();
    kkg_linker *l;
    int rc = kkg_linker_new(s, o, &l);
    if (rc) return rc;
    rc = kkg_linker_run(l, s, o, sum);
    if (!rc && (rc = kstore_kg_mention_totals(s, l->c.vocab_id, &sum->total_mentions, &sum->total_entities,
                                              &sum->total_docs, &sum->total_tokens)))
        kerr("%s", kstore_errmsg(s));
    kkg_linker_free(l);
    sum->seconds = know_seconds() - t0;
    return rc;
}

int kkg_linker_link_ids(const kkg_linker *l, const int32_t *ids, const uint8_t *word_start, int n, int64_t *entity)
{
    const trie *tr = &l->c.tr;
    int found = 0;
    for (int i = 0; i < n; i++) entity[i] = 0;
    for (int i = 0; i < n;) {
        if (!word_start[i] || ids[i] < 0) { i++; continue; }
        uint32_t node = 0, best_node = 0;
        int best_end = 0;
        for (int j = i; j < n && ids[j] >= 0; j++) {
            node = trie_find(tr, node, (uint32_t)ids[j]);
            if (!node) break;
            int boundary = j + 1 == n || word_start[j + 1];
            if (tr->best[node] && boundary) { best_end = j + 1; best_node = node; }
        }
        if (!best_end) { i++; continue; }
        entity[i] = tr->best[best_node];
        found++;
        i = best_end;
    }
    return found;
}
