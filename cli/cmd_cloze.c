/* cmd_cloze.c: kiln eval --cloze, a factual cloze probe of a BERT / ALBERT
 * pretraining checkpoint (ERNIE's included: docs/ernie.md), in the spirit of
 * LAMA (Petroni et al. 2019): does the masked LM recover the name of an
 * entity from its sentence, and how does that compare with ordinary words of
 * the same sentences? It is not a general evaluation harness: one checkpoint,
 * the store it trained on (--db), items drawn from the run's own held-out
 * documents.
 *
 * Items (a pure function of the store, the checkpoint's snapshot, its
 * data.valid_fraction and seq_len, --seed and --max-items):
 *  1. The held-out documents are the sampler's validation split of the run's
 *     snapshot (the file state.json's extra.snapshot names; remade from the
 *     store when gone, and then required to have the run's content key). The
 *     sampler's per-document test is ksampler_held_out (h the first 8 bytes
 *     of the document's content hash, held out by data.valid_fraction;
 *     data.seed plays no part); the
 *     count is checked against ksampler_split_docs of a validation sampler
 *     on the same snapshot (a mismatch means the store is not the run's, or
 *     changed: EX_DATAERR). An imported checkpoint (kiln import --from kiln)
 *     names no run: the store's vocabulary with exactly its pieces and that
 *     vocabulary's current snapshot stand in (the split goes by content
 *     hash, so the same corpus gives the same held-out documents).
 *  2. The documents' tokens, word starts and sentences come from the store
 *     (kstore_snapshot_docs_foreach up to the snapshot's largest document,
 *     sentences as the snapshot keeps them: empty ones dropped, a last one
 *     closing the document), their mentions from kstore_kg_mentions_foreach
 *     under the snapshot's vocabulary (stale ones dropped as the snapshot
 *     does).
 *  3. A candidate is a mention that lies in one sentence, on whole words,
 *     whose pieces are no special and no [UNK], that fits the window (below),
 *     and whose window has a control (6.). With more than --max-items
 *     candidates, the --max-items with the smallest keys mix(seed, document
 *     hash, start) are drawn, then taken in (document, start) order.
 *  4. The window: [CLS] sentence [SEP]; a sentence longer than seq_len - 2
 *     pieces is cut to seq_len - 2 around the mention (its middle where the
 *     sentence allows), both ends moved inward to word starts.
 *  5. Entity item: every piece of the mention replaced by [MASK] and scored.
 *     ERNIE: every other mention that starts in the window is aligned on its
 *     first piece (the table row of its entity, kkg_table_row of the pinned
 *     embedding, which must be the model's table vector for vector; 0 when
 *     it has no vector), as the sampler aligns them; the masked mention
 *     itself is not (that would hand it the answer; with
 *     --with-masked-entity it is, as a diagnostic of how much the model
 *     reads its entity vectors).
 *  6. Control item, of the same window: a run of whole words outside every
 *     mention, without specials or [UNK], each with a letter or digit (no
 *     punctuation), whose piece count equals the mention's (the run with the
 *     smallest key mix(seed, document hash, mention start, run start));
 *     when no run matches, the single such word closest in pieces (ties by
 *     key). Masked and scored the same way; every mention of the window
 *     keeps its alignment (none is masked).
 * Score: each masked piece's rank among the MLM logits of all V pieces
 * (rank = pieces with a larger logit + pieces of a smaller id with an equal
 * one): top-1 (rank 0), top-10 (rank < 10); the MLM loss -log softmax; an
 * item is exact when all its pieces are top-1. Rows go through the trainer's
 * pass API (kmodel_evaluate, inference model, KMODE_EVAL: no dropout) in
 * batches of --batch-size; fp32 products, so the figures are the same bytes
 * for any thread count. */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unicode/uchar.h>
#include <unistd.h>

#include "cli/cli.h"
#include "kg/kg.h"
#include "sampler/sampler.h"
#include "text/wordpiece.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "trainer/model.h"
#include "util/util.h"

static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
/* the probe's own keys: "CLOZ" tagged, so they share nothing with the sampler's draws */
static uint64_t ckey(uint64_t seed, uint64_t a, uint64_t b, uint64_t c)
{
    return mix64(mix64(mix64(mix64(seed ^ mix64(0x434c4f5aULL)) + a) + b) + c);
}

/* ---- held-out documents ------------------------------------------------------------------ */

typedef struct cment {
    uint32_t start, end;    /* pieces [start, end) of the document */
    int64_t entity;         /* kg_entities.id */
} cment;

typedef struct cdoc {
    int64_t id;
    uint64_t hash;          /* first 8 bytes of the content hash (the split's key) */
    uint32_t n;             /* pieces */
    int32_t *tok;           /* (n) */
    uint8_t *ws;            /* (n) 1 at a word start */
    uint32_t *sent;         /* (ns) sentence ends, ascending, the last = n */
    uint32_t ns;
    cment *m;               /* (nm) ordered by start */
    uint32_t nm, mcap;
} cdoc;

typedef struct corpus {
    double valid_fraction;
    cdoc *d;                /* (n) held-out documents, ascending id */
    size_t n, cap;
    uint64_t all_docs;      /* tokenized documents seen */
    size_t cur;             /* mention cursor: index of the document being filled */
    uint64_t mentions, stale;
} corpus;

static int put_doc(const ktokens_row *r, const uint8_t *hash, void *vctx)
{
    corpus *c = vctx;
    uint64_t h64;
    memcpy(&h64, hash, 8);
    if (r->n_tokens == 0) return 0; /* the sampler skips empty documents */
    c->all_docs++;
    if (!ksampler_held_out(h64, c->valid_fraction)) return 0;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 256;
        c->d = xrealloc(c->d, c->cap * sizeof *c->d);
    }
    cdoc *d = &c->d[c->n++];
    memset(d, 0, sizeof *d);
    d->id = r->doc_id;
    d->hash = h64;
    d->n = (uint32_t)r->n_tokens;
    d->tok = xmalloc(d->n * sizeof *d->tok);
    d->ws = xmalloc(d->n);
    for (uint32_t i = 0; i < d->n; i++) {
        d->tok[i] = r->layout == KTOK_LAYOUT_U16 ? ((const uint16_t *)r->tokens)[i]
                                                 : (int32_t)((const uint32_t *)r->tokens)[i];
        d->ws[i] = r->word_starts[i >> 3] >> (i & 7) & 1;
    }
    /* sentences as the snapshot keeps them: empty ones dropped, the document closed */
    d->sent = xmalloc((r->n_sentences + 1) * sizeof *d->sent);
    for (size_t i = 0; i < r->n_sentences; i++) {
        uint32_t e = r->sent_ends[i];
        if (e == 0 || (i && e == r->sent_ends[i - 1])) continue;
        d->sent[d->ns++] = e;
    }
    if (d->ns == 0 || d->sent[d->ns - 1] != d->n) d->sent[d->ns++] = d->n;
    return 0;
}

static int put_mention(int64_t doc, int64_t start, int64_t end, int64_t entity, void *vctx)
{
    corpus *c = vctx;
    while (c->cur < c->n && c->d[c->cur].id < doc) c->cur++;
    if (c->cur >= c->n || c->d[c->cur].id != doc) return 0; /* not held out */
    cdoc *d = &c->d[c->cur];
    if (start < 0 || end <= start || (uint64_t)end > d->n || entity <= 0 || entity > INT32_MAX) {
        c->stale++; /* as the snapshot: ignored */
        return 0;
    }
    if (d->nm == d->mcap) {
        d->mcap = d->mcap ? 2 * d->mcap : 16;
        d->m = xrealloc(d->m, d->mcap * sizeof *d->m);
    }
    d->m[d->nm++] = (cment){(uint32_t)start, (uint32_t)end, entity};
    c->mentions++;
    return 0;
}

static void corpus_free(corpus *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->d[i].tok);
        free(c->d[i].ws);
        free(c->d[i].sent);
        free(c->d[i].m);
    }
    free(c->d);
    memset(c, 0, sizeof *c);
}

/* ---- items --------------------------------------------------------------------------------- */

enum { ITEM_ENTITY = 0, ITEM_CONTROL = 1, ITEM_KINDS = 2 };

typedef struct citem {
    uint32_t doc;           /* index into corpus.d */
    uint32_t ws, we;        /* the window: pieces [ws, we) of the document */
    uint32_t ms, me;        /* the masked pieces [ms, me) */
    int32_t mention;        /* entity item: the masked mention (index in the document's), else -1 */
    uint32_t cs, ce;        /* entity item: its control's masked pieces [cs, ce) */
    int kind;               /* ITEM_* */
    int matched;            /* both: the control's piece count equals the mention's */
    uint64_t key;           /* entity item: the draw's key */
} citem;

typedef struct cvocab {
    const kwp_vocab *v;
    int32_t pad, unk, cls, sep, mask;
    uint8_t *plain;         /* (V) 1: a piece with a letter or digit and not a [X] special */
} cvocab;

static int is_special(const cvocab *cv, int32_t id)
{
    return id == cv->pad || id == cv->unk || id == cv->cls || id == cv->sep || id == cv->mask;
}

/* the end of the word that starts at p (the next word start, or lim) */
static uint32_t word_end(const cdoc *d, uint32_t p, uint32_t lim)
{
    uint32_t e = p + 1;
    while (e < lim && !d->ws[e]) e++;
    return e;
}

/* 1 when pieces [a, b) overlap a mention of d */
static int in_mention(const cdoc *d, uint32_t a, uint32_t b)
{
    for (uint32_t k = 0; k < d->nm; k++)
        if (d->m[k].start < b && d->m[k].end > a) return 1;
    return 0;
}

/* The control of an entity item: the masked run [*cs, *ce) in window [ws, we)
 * (see the file comment, 6.). Returns 0 when the window has no control word,
 * else 1 (+ *matched). */
static int find_control(const cvocab *cv, const cdoc *d, uint32_t ws, uint32_t we, uint32_t target, uint64_t seed,
                        uint32_t mstart, uint32_t *cs, uint32_t *ce, int *matched)
{
    /* candidate words: [w, word_end) */
    uint32_t best_s = 0, best_e = 0;
    uint64_t best_key = UINT64_MAX;
    int found_match = 0;
    uint32_t near_s = 0, near_e = 0, near_diff = UINT32_MAX;
    uint64_t near_key = UINT64_MAX;
    for (uint32_t w = ws; w < we; w++) {
        if (!d->ws[w]) continue; /* runs start at word starts */
        /* the run of candidate words starting at w, while its pieces <= target */
        uint32_t p = w, pieces = 0;
        while (p < we) {
            uint32_t e = word_end(d, p, we);
            if (e == we && we < d->n && !d->ws[we]) break; /* a word cut by the window */
            int ok = !in_mention(d, p, e), alnum = 0;
            for (uint32_t q = p; ok && q < e; q++) {
                if (is_special(cv, d->tok[q])) ok = 0;
                alnum |= cv->plain[d->tok[q]];
            }
            if (!ok || !alnum) break;
            if (p == w) { /* the single word: the fallback */
                uint32_t n1 = e - w, diff = n1 > target ? n1 - target : target - n1;
                uint64_t k1 = ckey(seed, d->hash, mstart, ((uint64_t)w << 1) | 1);
                if (diff < near_diff || (diff == near_diff && k1 < near_key))
                    near_diff = diff, near_key = k1, near_s = w, near_e = e;
            }
            pieces += e - p;
            if (pieces > target) break;
            if (pieces == target) {
                uint64_t k = ckey(seed, d->hash, mstart, (uint64_t)w << 1);
                if (k < best_key) best_key = k, best_s = w, best_e = e;
                found_match = 1;
                break;
            }
            p = e;
        }
    }
    if (found_match) {
        *cs = best_s, *ce = best_e, *matched = 1;
        return 1;
    }
    if (near_diff != UINT32_MAX) {
        *cs = near_s, *ce = near_e, *matched = 0;
        return 1;
    }
    return 0;
}

/* The window of mention [ms, me) in sentence [ss, se) for rows of Lr
 * positions ([CLS] and [SEP] included); 0 when the mention does not fit. */
static int window_of(const cdoc *d, uint32_t ss, uint32_t se, uint32_t ms, uint32_t me, int Lr, uint32_t *ws,
                     uint32_t *we)
{
    uint32_t room = (uint32_t)(Lr - 2), mlen = me - ms;
    if (mlen > room) return 0;
    if (se - ss <= room) {
        *ws = ss, *we = se;
        return 1;
    }
    int64_t a = (int64_t)ms - (int64_t)(room - mlen) / 2;
    if (a > (int64_t)se - room) a = (int64_t)se - room;
    if (a < (int64_t)ss) a = ss;
    uint32_t s = (uint32_t)a, e = s + room;
    while (s < ms && !d->ws[s]) s++;        /* inward to word starts */
    while (e > me && e < se && !d->ws[e]) e--;
    *ws = s, *we = e;
    return 1;
}

typedef struct citems {
    citem *it;              /* (n) entity items, then their controls in the same order */
    size_t n, cap;
    uint64_t candidates;    /* eligible mentions before the draw */
} citems;

static void items_push(citems *s, const citem *x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->it = xrealloc(s->it, s->cap * sizeof *s->it);
    }
    s->it[s->n++] = *x;
}

static int cmp_key(const void *a, const void *b)
{
    const citem *x = a, *y = b;
    return x->key < y->key ? -1 : x->key > y->key;
}
static int cmp_pos(const void *a, const void *b)
{
    const citem *x = a, *y = b;
    if (x->doc != y->doc) return x->doc < y->doc ? -1 : 1;
    return x->ms < y->ms ? -1 : x->ms > y->ms;
}

/* Every eligible mention as an entity item (with its control's place), the
 * draw of max_items, then the controls appended in the same order. */
static void make_items(const corpus *c, const cvocab *cv, int Lr, uint64_t seed, size_t max_items, citems *out)
{
    citems ent = {0};
    for (size_t di = 0; di < c->n; di++) {
        const cdoc *d = &c->d[di];
        uint32_t si = 0;
        for (uint32_t k = 0; k < d->nm; k++) {
            const cment *m = &d->m[k];
            while (si < d->ns && d->sent[si] <= m->start) si++;
            uint32_t ss = si ? d->sent[si - 1] : 0, se = si < d->ns ? d->sent[si] : d->n;
            int ok = si < d->ns && m->end <= se && d->ws[m->start] && (m->end == se || d->ws[m->end]);
            for (uint32_t q = m->start; ok && q < m->end; q++) ok = !is_special(cv, d->tok[q]);
            uint32_t ws = 0, we = 0, cs = 0, ce = 0;
            int matched = 0;
            ok = ok && window_of(d, ss, se, m->start, m->end, Lr, &ws, &we) &&
                 find_control(cv, d, ws, we, m->end - m->start, seed, m->start, &cs, &ce, &matched);
            if (!ok) continue; /* across sentences, not whole words, too long, no control */
            citem x = {.doc = (uint32_t)di, .ws = ws, .we = we, .ms = m->start, .me = m->end, .mention = (int32_t)k,
                       .cs = cs, .ce = ce, .kind = ITEM_ENTITY, .matched = matched,
                       .key = ckey(seed, d->hash, m->start, 0)};
            items_push(&ent, &x);
        }
    }
    out->candidates = ent.n;
    if (ent.n > max_items) {
        qsort(ent.it, ent.n, sizeof *ent.it, cmp_key);
        ent.n = max_items;
    }
    qsort(ent.it, ent.n, sizeof *ent.it, cmp_pos);
    for (size_t i = 0; i < ent.n; i++) items_push(out, &ent.it[i]);
    for (size_t i = 0; i < ent.n; i++) { /* the controls, in the same window */
        citem x = ent.it[i];
        x.kind = ITEM_CONTROL;
        x.mention = -1;
        x.ms = x.cs, x.me = x.ce;
        items_push(out, &x);
    }
    free(ent.it);
}

/* ---- scoring ------------------------------------------------------------------------------- */

typedef struct cstats {
    int64_t items, tokens, top1, top10, exact, matched;
    int64_t aligned;        /* ERNIE: entity alignments given in the rows */
    int64_t aligned_rows;   /* ERNIE: rows with at least one */
    double loss;            /* sum of -log p(true piece) */
} cstats;

typedef struct cbatch {
    int B, L, P;
    int own_entity;         /* --with-masked-entity: the masked mention keeps its alignment (a diagnostic) */
    int64_t *index;
    int32_t *ids, *lengths, *n_masked, *pos, *lab, *labels, *ent;
    uint8_t *types;
    float *w;
    ksample_batch b;
} cbatch;

static void cbatch_init(cbatch *x, int B, int L, int P, const cvocab *cv, int entities)
{
    memset(x, 0, sizeof *x);
    x->B = B, x->L = L, x->P = P;
    x->index = xcalloc((size_t)B, sizeof *x->index);
    x->ids = xcalloc((size_t)B * L, sizeof *x->ids);
    x->types = xcalloc((size_t)B * L, 1);
    x->lengths = xcalloc((size_t)B, sizeof *x->lengths);
    x->n_masked = xcalloc((size_t)B, sizeof *x->n_masked);
    x->pos = xcalloc((size_t)B * P, sizeof *x->pos);
    x->lab = xcalloc((size_t)B * P, sizeof *x->lab);
    x->w = xcalloc((size_t)B * P, sizeof *x->w);
    x->labels = xcalloc((size_t)B, sizeof *x->labels);
    x->ent = entities ? xcalloc((size_t)B * L, sizeof *x->ent) : NULL;
    ksample_batch *b = &x->b;
    b->version = KSAMPLE_BATCH_VERSION;
    b->objectives = KOBJ_MLM | (entities ? KOBJ_ENTITIES : 0);
    b->L = L, b->P = P, b->capacity = B;
    b->pad_id = cv->pad, b->cls_id = cv->cls, b->sep_id = cv->sep, b->mask_id = cv->mask;
    b->index = x->index, b->input_ids = x->ids, b->token_type_ids = x->types, b->lengths = x->lengths;
    b->n_masked = x->n_masked, b->masked_positions = x->pos, b->masked_ids = x->lab, b->masked_weights = x->w;
    b->labels = x->labels;
    b->entity_ids = x->ent; /* no entity_labels: the model has no dEA head here */
}

static void cbatch_free(cbatch *x)
{
    free(x->index), free(x->ids), free(x->types), free(x->lengths), free(x->n_masked);
    free(x->pos), free(x->lab), free(x->w), free(x->labels), free(x->ent);
}

/* Row r of x from item it (number i): [CLS] window [SEP], the masked run
 * [MASK]ed, ERNIE's alignments of the window's mentions but the masked one.
 * Returns the alignments given. */
static int fill_row(cbatch *x, int r, const citem *it, int64_t i, const cdoc *d, const cvocab *cv,
                    const kkg_table *kt)
{
    const int L = x->L, P = x->P;
    int32_t *ids = x->ids + (size_t)r * L;
    int len = (int)(it->we - it->ws) + 2;
    ids[0] = cv->cls;
    for (uint32_t q = it->ws; q < it->we; q++) ids[1 + q - it->ws] = d->tok[q];
    ids[len - 1] = cv->sep;
    for (int t = len; t < L; t++) ids[t] = cv->pad;
    int nm = 0;
    for (uint32_t q = it->ms; q < it->me; q++, nm++) {
        int p = 1 + (int)(q - it->ws);
        x->pos[(size_t)r * P + nm] = p;
        x->lab[(size_t)r * P + nm] = d->tok[q];
        x->w[(size_t)r * P + nm] = 1.0f;
        ids[p] = cv->mask;
    }
    for (int k = nm; k < P; k++) {
        x->pos[(size_t)r * P + k] = 0;
        x->lab[(size_t)r * P + k] = cv->pad;
        x->w[(size_t)r * P + k] = 0.0f;
    }
    x->n_masked[r] = nm;
    x->lengths[r] = len;
    x->labels[r] = -1;
    x->index[r] = i;
    int aligned = 0;
    if (x->ent) {
        int32_t *e = x->ent + (size_t)r * L;
        memset(e, 0, (size_t)L * sizeof *e);
        for (uint32_t k = 0; k < d->nm; k++) {
            const cment *m = &d->m[k];
            if (((int32_t)k == it->mention && !x->own_entity) || m->start < it->ws || m->start >= it->we) continue;
            int32_t row = kkg_table_row(kt, m->entity);
            e[1 + m->start - it->ws] = row;
            aligned += row > 0;
        }
    }
    return aligned;
}

/* rank of y among the V logits: larger ones, and equal ones of a smaller id */
static int rank_of(const float *lg, int V, int32_t y)
{
    const float v = lg[y];
    int rank = 0;
    for (int k = 0; k < V; k++) rank += lg[k] > v || (lg[k] == v && k < y);
    return rank;
}

/* -log softmax(lg)[y], in double */
static double nll_of(const float *lg, int V, int32_t y)
{
    double mx = -INFINITY, z = 0;
    for (int k = 0; k < V; k++) mx = lg[k] > mx ? lg[k] : mx;
    for (int k = 0; k < V; k++) z += exp((double)lg[k] - mx);
    return log(z) + mx - (double)lg[y];
}

static void json_piece_list(kbuf *o, const cvocab *cv, const int32_t *ids, int n)
{
    kbuf_putc(o, '[');
    for (int k = 0; k < n; k++) {
        size_t pl;
        const char *p = kwp_vocab_piece(cv->v, (uint32_t)ids[k], &pl);
        if (k) kbuf_putc(o, ',');
        kbuf_json_str(o, p, pl);
    }
    kbuf_putc(o, ']');
}

/* Runs every item through m in batches of x->B rows; stats per kind. items
 * (when not NULL) gets a JSON line per item. 0 or EX_SOFTWARE (said). */
static int score(kmodel *m, cbatch *x, const citems *s, const corpus *c, const cvocab *cv, const kkg_table *kt,
                 FILE *items, cstats st[ITEM_KINDS])
{
    const int V = kmodel_get_config(m)->vocab_size;
    memset(st, 0, ITEM_KINDS * sizeof *st);
    for (size_t i0 = 0; i0 < s->n; i0 += (size_t)x->B) {
        int B = (int)(s->n - i0 < (size_t)x->B ? s->n - i0 : (size_t)x->B);
        for (int r = 0; r < B; r++) {
            const citem *it = &s->it[i0 + r];
            int a = fill_row(x, r, it, (int64_t)(i0 + r), &c->d[it->doc], cv, kt);
            st[it->kind].aligned += a;
            st[it->kind].aligned_rows += a > 0;
        }
        x->b.B = B;
        kstep_result res;
        if (kmodel_evaluate(m, &x->b, &res)) {
            kerr("model: %s", kmodel_error(m));
            return EX_SOFTWARE;
        }
        for (int r = 0; r < B; r++) {
            const citem *it = &s->it[i0 + r];
            cstats *t = &st[it->kind];
            int n = x->n_masked[r], all = 1;
            int32_t top[256], ranks[256];
            double nll = 0;
            t->items++;
            t->matched += it->kind == ITEM_CONTROL ? it->matched : 1;
            for (int p = 0; p < n; p++) {
                const float *lg = kmodel_mlm_logits(m, r, p);
                int32_t y = x->lab[(size_t)r * x->P + p];
                int rank = rank_of(lg, V, y);
                t->tokens++;
                t->top1 += rank == 0;
                t->top10 += rank < 10;
                all &= rank == 0;
                double l = nll_of(lg, V, y);
                t->loss += l;
                nll += l;
                if (items && p < 256) {
                    ranks[p] = rank;
                    int best = 0;
                    for (int k = 1; k < V; k++) best = lg[k] > lg[best] ? k : best;
                    top[p] = best;
                }
            }
            t->exact += all;
            if (items) {
                const cdoc *d = &c->d[it->doc];
                kbuf o = {0};
                kbuf_printf(&o, "{\"kind\":\"%s\",\"doc\":%lld,\"start\":%u,\"end\":%u,",
                            it->kind == ITEM_ENTITY ? "entity" : "control", (long long)d->id, it->ms, it->me);
                if (it->kind == ITEM_ENTITY) kbuf_printf(&o, "\"entity\":%lld,", (long long)d->m[it->mention].entity);
                kbuf_puts(&o, "\"input\":");
                json_piece_list(&o, cv, x->ids + (size_t)r * x->L, x->lengths[r]);
                kbuf_puts(&o, ",\"answer\":");
                json_piece_list(&o, cv, x->lab + (size_t)r * x->P, n);
                kbuf_puts(&o, ",\"top1\":");
                json_piece_list(&o, cv, top, n < 256 ? n : 256);
                kbuf_printf(&o, ",\"exact\":%s,\"ranks\":[", all ? "true" : "false");
                for (int p = 0; p < n && p < 256; p++) kbuf_printf(&o, "%s%d", p ? "," : "", ranks[p]);
                kbuf_printf(&o, "],\"loss\":%.6g", nll);
                if (x->ent) { /* ERNIE: [position, table row] of each alignment given */
                    const int32_t *e = x->ent + (size_t)r * x->L;
                    kbuf_puts(&o, ",\"entities\":[");
                    for (int t = 0, first = 1; t < x->lengths[r]; t++)
                        if (e[t]) kbuf_printf(&o, "%s[%d,%d]", first ? "" : ",", t, e[t]), first = 0;
                    kbuf_putc(&o, ']');
                }
                kbuf_puts(&o, "}\n");
                fputs(o.data, items);
                kbuf_free(&o);
            }
        }
    }
    return 0;
}

/* ---- the command ------------------------------------------------------------------------- */

static json_t *stats_json(const cstats *t)
{
    json_t *o = json_object();
    json_object_set_new(o, "items", json_integer(t->items));
    json_object_set_new(o, "tokens", json_integer(t->tokens));
    json_object_set_new(o, "top1", cli_json_num(t->tokens ? (double)t->top1 / (double)t->tokens : NAN));
    json_object_set_new(o, "top10", cli_json_num(t->tokens ? (double)t->top10 / (double)t->tokens : NAN));
    json_object_set_new(o, "loss", cli_json_num(t->tokens ? t->loss / (double)t->tokens : NAN));
    json_object_set_new(o, "exact", cli_json_num(t->items ? (double)t->exact / (double)t->items : NAN));
    json_object_set_new(o, "matched", json_integer(t->matched));
    json_object_set_new(o, "aligned_entities", json_integer(t->aligned));
    json_object_set_new(o, "aligned_rows", json_integer(t->aligned_rows));
    return o;
}

static int parse_count(const char *opt, const char *arg, long long lo, long long hi, long long *v)
{
    char *end;
    long long x = strtoll(arg, &end, 10);
    if (!*arg || *end || x < lo || x > hi) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s: an integer from %lld to %lld", opt, lo, hi);
        return cli_usage_error("eval", "%s", msg);
    }
    *v = x;
    return 0;
}

/* everything the command holds, freed by one function */
typedef struct cloze {
    kckpt *ck;
    ktrain_config cfg;
    kwp_vocab *v;
    cvocab cv;
    kstore *s;
    ksnapshot *snap;
    ksampler *vs;
    corpus c;
    kkg_table kt;
    citems items;
    kmodel *m;
    cbatch x;
    FILE *items_out;
} cloze;

static void cloze_close(cloze *z)
{
    if (z->items_out && z->items_out != stdout) fclose(z->items_out);
    cbatch_free(&z->x);
    kmodel_free(z->m);
    free(z->items.it);
    kkg_table_free(&z->kt);
    corpus_free(&z->c);
    ksampler_close(z->vs);
    ksnapshot_close(z->snap);
    if (z->s) kstore_close(z->s);
    free(z->cv.plain);
    kwp_vocab_free(z->v);
    kckpt_close(z->ck);
}

/* The run's snapshot: the file its checkpoint names, or the store's current
 * one when that file is gone (then it must have the run's content key) or
 * when the checkpoint names none (an imported one: no key to check). */
static int open_snapshot(cloze *z, const cli_common *c, const char *path, const char *key, int64_t vocab_id,
                         uint32_t V)
{
    char err[1024], made[4096];
    if (path && access(path, R_OK) == 0) {
        z->snap = ksnapshot_open(path, err, sizeof err);
        if (!z->snap) {
            kerr("the run's snapshot: %s", err);
            return EX_DATAERR;
        }
    } else {
        if (path) kinfo("%s is gone: making the store's snapshot (it must be the run's)", path);
        kbuf dir = {0};
        kbuf_printf(&dir, "%s.snapshots", cli_db_path(c));
        int rc = ksnapshot_build(z->s, vocab_id, V, dir.data, made, sizeof made, err, sizeof err);
        kbuf_free(&dir);
        if (rc) {
            kerr("snapshot: %s", err);
            return rc;
        }
        z->snap = ksnapshot_open(made, err, sizeof err);
        if (!z->snap) {
            kerr("%s", err);
            return EX_DATAERR;
        }
    }
    ksnapshot_info si;
    ksnapshot_get_info(z->snap, &si);
    if (key && strcmp(key, si.key_hex)) {
        kerr("the run's snapshot (content %s) is gone and the store's documents changed since (now %s): the "
             "held-out documents cannot be found again",
             key, si.key_hex);
        return EX_DATAERR;
    }
    if (si.vocab_id != vocab_id || si.vocab_size != V) {
        kerr("the run's snapshot was made for vocabulary %lld (%u pieces), the checkpoint's is %lld (%u pieces)",
             (long long)si.vocab_id, si.vocab_size, (long long)vocab_id, V);
        return EX_DATAERR;
    }
    return 0;
}

int cmd_eval_cloze(int argc, char **argv, const char *db)
{
    static const char usage[] =
        "usage: kiln eval --checkpoint C --cloze [--max-items N] [--seed S]\n"
        "                 [--batch-size B] [--items FILE] [--with-masked-entity]\n"
        "                 [--threads N] [--db STORE] [--json]\n\n"
        "A factual cloze probe of a BERT or ALBERT pretraining checkpoint (ERNIE's\n"
        "included) on the store it trained on (--db): sentences of the run's held-out\n"
        "documents (its data.valid_fraction, as the sampler splits them) that contain a\n"
        "linked KG mention (kiln kg link, the run's vocabulary). An entity item masks\n"
        "every piece of one mention (whole words); its control masks a run of ordinary\n"
        "words of the same sentence (outside every mention, no punctuation, the same\n"
        "number of pieces where the sentence has one). Input: [CLS] sentence [SEP],\n"
        "cut to the run's seq_len around the mention. An ERNIE model gets the other\n"
        "mentions' entities (its pinned embedding), never the masked one's. Reports,\n"
        "per set, the share of masked pieces the MLM ranks first (top-1) and among its\n"
        "10 best (top-10), the mean MLM loss and the items recovered whole (exact).\n"
        "--max-items N (default 1000): entity items drawn (each with its control), a\n"
        "pure function of --seed S (default 1); the same store, checkpoint and seed\n"
        "give the same figures. --items FILE: a JSON line per item (input pieces,\n"
        "answer, top-1 pieces, each answer piece's rank (0 = first), the item's summed\n"
        "MLM loss; ERNIE: the [position, table row] alignments given).\n"
        "--with-masked-entity (ERNIE, a diagnostic, not the probe): the masked mention\n"
        "keeps its own entity too, which shows how much the model reads the entity\n"
        "vectors (what copying the entity's name would get).\n"
        "--json: {\"entity\": {\"items\", \"tokens\", \"top1\", \"top10\", \"loss\", \"exact\",\n"
        "...}, \"control\": {...}, \"held_out_documents\", ...}.\n";
    enum { O_CKPT = 1, O_CLOZE, O_MAX, O_SEED, O_BATCH, O_ITEMS, O_THREADS, O_OWN };
    static const struct option lo[] = {CLI_COMMON_LONGOPTS,
                                       {"checkpoint", required_argument, 0, O_CKPT},
                                       {"cloze", no_argument, 0, O_CLOZE},
                                       {"max-items", required_argument, 0, O_MAX},
                                       {"seed", required_argument, 0, O_SEED},
                                       {"batch-size", required_argument, 0, O_BATCH},
                                       {"items", required_argument, 0, O_ITEMS},
                                       {"threads", required_argument, 0, O_THREADS},
                                       {"with-masked-entity", no_argument, 0, O_OWN},
                                       {0, 0, 0, 0}};
    cli_common co;
    cli_common_init(&co, db);
    const char *ckpt = NULL, *items_path = NULL;
    long long max_items = 1000, seed = 1, B = 32, threads = 0;
    int opt, own = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, lo, NULL)) != -1) {
        if (cli_common_opt(&co, opt, optarg)) continue;
        int bad = 0;
        switch (opt) {
        case O_CKPT: ckpt = optarg; break;
        case O_CLOZE: break;
        case O_MAX: bad = parse_count("--max-items", optarg, 1, 100000000, &max_items); break;
        case O_SEED: bad = parse_count("--seed", optarg, 0, (long long)9e15, &seed); break;
        case O_BATCH: bad = parse_count("--batch-size", optarg, 1, 4096, &B); break;
        case O_ITEMS: items_path = optarg; break;
        case O_THREADS: bad = parse_count("--threads", optarg, 1, 1024, &threads); break;
        case O_OWN: own = 1; break;
        default: bad = cli_usage_error("eval", "bad option (--cloze takes --checkpoint, --max-items, --seed, "
                                               "--batch-size, --items, --threads, --with-masked-entity)");
        }
        if (bad) return bad;
    }
    if (co.help) {
        fputs(usage, stdout);
        return 0;
    }
    if (!ckpt) return cli_usage_error("eval", "--checkpoint is required");
    if (optind < argc) return cli_usage_error("eval", "unexpected argument %s", argv[optind]);
    cli_set_threads((int)threads);
    double t0 = know_seconds();

    cloze z;
    memset(&z, 0, sizeof z);
    char err[1024];
    int mode, rc = cli_open_checkpoint(ckpt, &z.ck, &z.cfg, &mode);
    if (rc) return rc;
    const kmodel_config *mc = &z.cfg.model;
    const char *path = kckpt_path(z.ck);
    if (mc->type != KMODEL_BERT && mc->type != KMODEL_ALBERT) {
        kerr("%s: --cloze probes a BERT or ALBERT pretraining checkpoint (ERNIE's included); this one is %s", path,
             mc->type == KMODEL_ELECTRA ? "ELECTRA" : mc->type == KMODEL_GPT2 ? "GPT-2" : "DistilBERT");
        cloze_close(&z);
        return EX_USAGE;
    }
    /* the run's snapshot, vocabulary and embedding, from state.json's extra */
    const kckpt_state *st = kckpt_state_of(z.ck);
    json_t *ex = st->extra_json ? json_loads(st->extra_json, 0, NULL) : NULL;
    const char *snap_path = json_string_value(json_object_get(ex, "snapshot"));
    const char *snap_key = json_string_value(json_object_get(ex, "snapshot_key"));
    int64_t vocab_id = json_integer_value(json_object_get(ex, "vocab_id"));
    int64_t emb = json_integer_value(json_object_get(json_object_get(ex, "knowledge"), "embedding"));
    if (!emb) emb = z.cfg.knowledge_embedding;
    char snap_path_c[4096] = "", snap_key_c[64] = "";
    if (snap_path) snprintf(snap_path_c, sizeof snap_path_c, "%s", snap_path);
    if (snap_key) snprintf(snap_key_c, sizeof snap_key_c, "%s", snap_key);
    json_decref(ex);
    size_t vlen;
    const char *vtext = kckpt_vocab(z.ck, &vlen);
    if (kwp_vocab_load(vtext, vlen, mode, &z.v, err, sizeof err)) {
        kerr("%s: vocabulary: %s", path, err);
        cloze_close(&z);
        return EX_DATAERR;
    }
    const uint32_t V = (uint32_t)kwp_vocab_size(z.v);
    z.cv.v = z.v;
    z.cv.pad = (int32_t)kwp_vocab_special(z.v, KWP_PAD);
    z.cv.unk = (int32_t)kwp_vocab_special(z.v, KWP_UNK);
    z.cv.cls = (int32_t)kwp_vocab_special(z.v, KWP_CLS);
    z.cv.sep = (int32_t)kwp_vocab_special(z.v, KWP_SEP);
    z.cv.mask = (int32_t)kwp_vocab_special(z.v, KWP_MASK);
    if (z.cv.pad < 0 || z.cv.cls < 0 || z.cv.sep < 0 || z.cv.mask < 0 || (int)V != mc->vocab_size) {
        kerr("%s: the vocabulary lacks [PAD] [CLS] [SEP] or [MASK], or its %u pieces are not the model's %d", path,
             V, mc->vocab_size);
        cloze_close(&z);
        return EX_DATAERR;
    }
    z.cv.plain = xcalloc(V, 1);
    for (uint32_t id = 0; id < V; id++) {
        size_t pl;
        const char *p = kwp_vocab_piece(z.v, id, &pl);
        int special = pl >= 2 && p[0] == '[' && p[pl - 1] == ']';
        const unsigned char *q = (const unsigned char *)p, *qe = q + pl;
        while (!special && q < qe) { /* a letter or digit (ICU's u_isalnum) */
            uint32_t cp;
            int badb = 0;
            q += kutf8_decode(q, qe, &cp, &badb);
            if (!badb && u_isalnum((UChar32)cp)) {
                z.cv.plain[id] = 1;
                break;
            }
        }
    }

    /* the store, the run's snapshot and its validation split */
    if ((rc = cli_open_store(&co, KSTORE_READONLY, &z.s))) {
        cloze_close(&z);
        return rc;
    }
    if (vocab_id <= 0) { /* an imported checkpoint: the store's vocabulary with its pieces, its current snapshot */
        if ((rc = cli_vocab_with_pieces(z.s, vtext, vlen, &vocab_id, NULL))) {
            kerr("the store: %s", kstore_errmsg(z.s));
            cloze_close(&z);
            return rc;
        }
        if (!vocab_id) {
            kerr("%s names no run of this store, and no vocabulary of the store has its pieces (kiln vocab import its "
                 "vocab.txt, kiln tokenize, kiln kg link)",
                 path);
            cloze_close(&z);
            return EX_DATAERR;
        }
        snap_path_c[0] = snap_key_c[0] = '\0';
        kinfo("%s names no run snapshot (an imported checkpoint): the held-out documents are those of the store's "
              "documents under vocabulary %lld (data.valid_fraction %g, by content hash as the sampler splits)",
              path, (long long)vocab_id, z.cfg.data.valid_fraction);
    }
    if ((rc = open_snapshot(&z, &co, snap_path_c[0] ? snap_path_c : NULL, snap_key_c[0] ? snap_key_c : NULL, vocab_id,
                            V))) {
        cloze_close(&z);
        return rc;
    }
    ksnapshot_info si;
    ksnapshot_get_info(z.snap, &si);
    const int Lr = z.cfg.data.seq_len;
    if (!(z.cfg.data.valid_fraction > 0)) {
        kerr("%s: the run held out no documents (data.valid_fraction %g): the probe reads held-out documents only",
             path, z.cfg.data.valid_fraction);
        cloze_close(&z);
        return EX_DATAERR;
    }
    {
        ksampler_opts so;
        ksampler_opts_defaults(&so);
        so.objectives = KOBJ_MLM;
        so.seq_len = Lr;
        so.valid_fraction = z.cfg.data.valid_fraction;
        so.split = 1;
        so.pad_id = z.cv.pad, so.cls_id = z.cv.cls, so.sep_id = z.cv.sep, so.mask_id = z.cv.mask;
        so.vocab_size = V;
        z.vs = ksampler_open(z.snap, &so, err, sizeof err);
        if (!z.vs) {
            kerr("no held-out documents: %s (data.valid_fraction %g)", err, z.cfg.data.valid_fraction);
            cloze_close(&z);
            return EX_DATAERR;
        }
    }
    z.c.valid_fraction = z.cfg.data.valid_fraction;
    if ((rc = kstore_snapshot_docs_foreach(z.s, vocab_id, si.max_doc_id, put_doc, &z.c)) ||
        (rc = kstore_kg_mentions_foreach(z.s, vocab_id, si.max_doc_id, put_mention, &z.c))) {
        kerr("the store: %s", kstore_errmsg(z.s));
        cloze_close(&z);
        return rc;
    }
    if (z.c.n != ksampler_split_docs(z.vs) || z.c.all_docs != si.docs) {
        /* the split is replicated exactly: this is another store, or documents re-tokenized since */
        kerr("the store's documents are not the run's snapshot's: %zu held out of %llu here, the run's validation "
             "split has %llu of %llu (is --db the store the run trained on?)",
             z.c.n, (unsigned long long)z.c.all_docs, (unsigned long long)ksampler_split_docs(z.vs),
             (unsigned long long)si.docs);
        cloze_close(&z);
        return EX_DATAERR;
    }
    if (z.c.mentions == 0) {
        kerr("the %zu held-out documents have no linked mentions under the run's vocabulary (kiln kg import, then "
             "kiln kg link, on this store)",
             z.c.n);
        cloze_close(&z);
        return EX_DATAERR;
    }

    /* ERNIE: the pinned embedding's rows */
    const int ernie = mc->fusion_layers > 0;
    if (own && !ernie) {
        kerr("%s: --with-masked-entity gives the masked mention's entity to an ERNIE model; this one has no knowledge "
             "section",
             path);
        cloze_close(&z);
        return EX_USAGE;
    }

    /* the items */
    make_items(&z.c, &z.cv, Lr, (uint64_t)seed, (size_t)max_items, &z.items);
    if (z.items.n == 0) {
        kerr("none of the %llu mentions of the %zu held-out documents makes an item (each needs a sentence with "
             "ordinary words for its control, and whole words within seq_len %d)",
             (unsigned long long)z.c.mentions, z.c.n, Lr);
        cloze_close(&z);
        return EX_DATAERR;
    }
    int P = 1;
    for (size_t i = 0; i < z.items.n; i++) {
        int k = (int)(z.items.it[i].me - z.items.it[i].ms);
        P = k > P ? k : P;
    }

    /* the model: the pretraining one without its sentence and dEA heads, for inference */
    int Bm = (int)(B < (long long)z.items.n ? B : (long long)z.items.n);
    kmodel_spec spec = kmodel_spec_pretrain_of(mc, Bm, Lr, P, 0);
    spec.heads &= ~KHEAD_DEA;
    spec.inference = 1;
    z.m = kmodel_create(mc, &spec, err, sizeof err);
    if (!z.m) {
        kerr("model: %s", err);
        cloze_close(&z);
        return strstr(err, "out of memory") ? EX_OSERR : EX_DATAERR;
    }
    if ((rc = cli_load_weights(z.m, z.ck))) {
        cloze_close(&z);
        return rc;
    }
    if (ernie) { /* the pinned embedding: the model's table, vector for vector, or the rows mean other entities */
        size_t off = kmodel_param_offset(z.m, "ernie.entity_embeddings.weight");
        int differs = 0;
        rc = off == SIZE_MAX ? EX_SOFTWARE
                             : cli_kg_table_match(z.s, emb, mc->entity_vocab_size, mc->entity_dim,
                                                  kmodel_param_data(z.m) + off, &z.kt, &differs, err, sizeof err);
        if (rc) {
            if (differs)
                kerr("embedding %lld of this store is not the checkpoint's entity table (another store, or another "
                     "embedding under that id): the probe needs the store the run trained on (--db)",
                     (long long)emb);
            else
                kerr("the checkpoint's knowledge embedding %lld: %s", (long long)emb,
                     off == SIZE_MAX ? "the model has no entity table" : err);
            cloze_close(&z);
            return rc;
        }
    }
    if (items_path) {
        z.items_out = strcmp(items_path, "-") ? fopen(items_path, "w") : stdout;
        if (!z.items_out) {
            kerr("%s: cannot write", items_path);
            cloze_close(&z);
            return EX_CANTCREAT;
        }
    }
    cbatch_init(&z.x, Bm, Lr, P, &z.cv, ernie);
    z.x.own_entity = own;
    cstats s[ITEM_KINDS];
    if ((rc = score(z.m, &z.x, &z.items, &z.c, &z.cv, ernie ? &z.kt : NULL, z.items_out, s))) {
        cloze_close(&z);
        return rc;
    }
    double secs = know_seconds() - t0;

    const char *type = mc->type == KMODEL_BERT ? "bert" : "albert";
    if (co.json) {
        json_t *o = json_object();
        json_object_set_new(o, "checkpoint", cli_json_str(path));
        json_object_set_new(o, "model", json_string(type));
        json_object_set_new(o, "knowledge", json_boolean(ernie));
        json_object_set_new(o, "fusion_layers", json_integer(mc->fusion_layers));
        json_object_set_new(o, "embedding", ernie ? json_integer(emb) : json_null());
        json_object_set_new(o, "with_masked_entity", json_boolean(own));
        json_object_set_new(o, "step", json_integer(st->step));
        json_object_set_new(o, "seed", json_integer(seed));
        json_object_set_new(o, "seq_len", json_integer(Lr));
        json_object_set_new(o, "valid_fraction", cli_json_num(z.cfg.data.valid_fraction));
        json_object_set_new(o, "documents", json_integer((json_int_t)z.c.all_docs));
        json_object_set_new(o, "held_out_documents", json_integer((json_int_t)z.c.n));
        json_object_set_new(o, "mentions", json_integer((json_int_t)z.c.mentions));
        json_object_set_new(o, "candidates", json_integer((json_int_t)z.items.candidates));
        json_object_set_new(o, "entity", stats_json(&s[ITEM_ENTITY]));
        json_object_set_new(o, "control", stats_json(&s[ITEM_CONTROL]));
        json_object_set_new(o, "seconds", cli_json_num(secs));
        cli_json_print(o, 0);
    } else {
        char a[32], b[32], d[32], e[32], f[32];
        printf("cloze probe of %s (%s, %d layers, step %lld", path, type, mc->num_hidden_layers, (long long)st->step);
        if (ernie)
            printf("; ERNIE: the last %d fuse embedding %lld's entities%s", mc->fusion_layers, (long long)emb,
                   own ? ", the masked mention's given too (--with-masked-entity)" : "");
        printf(")\n  %s held-out documents of %s (data.valid_fraction %g), %s linked mentions; %s items drawn of %s "
               "(seed %lld), [CLS] sentence [SEP] within %d positions\n",
               cli_num(z.c.n, a, sizeof a), cli_num(z.c.all_docs, b, sizeof b), z.cfg.data.valid_fraction,
               cli_num(z.c.mentions, d, sizeof d), cli_num((uint64_t)s[ITEM_ENTITY].items, e, sizeof e),
               cli_num(z.items.candidates, f, sizeof f), seed, Lr);
        printf("  %-8s %8s %8s %8s %8s %9s %8s\n", "", "items", "pieces", "top-1", "top-10", "MLM loss", "exact");
        for (int k = 0; k < ITEM_KINDS; k++) {
            const cstats *t = &s[k];
            double n = t->tokens ? (double)t->tokens : NAN;
            printf("  %-8s %8lld %8lld %7.2f%% %7.2f%% %9.3f %7.2f%%\n", k == ITEM_ENTITY ? "entity" : "control",
                   (long long)t->items, (long long)t->tokens, 100.0 * (double)t->top1 / n, 100.0 * (double)t->top10 / n,
                   t->loss / n, 100.0 * (double)t->exact / (double)t->items);
        }
        printf("  controls matched in pieces: %lld of %lld", (long long)s[ITEM_CONTROL].matched,
               (long long)s[ITEM_CONTROL].items);
        if (ernie)
            printf("; entities aligned: %lld in the entity rows, %lld in the control rows",
                   (long long)s[ITEM_ENTITY].aligned, (long long)s[ITEM_CONTROL].aligned);
        printf("; %.1f s\n", secs);
    }
    cloze_close(&z);
    return 0;
}
