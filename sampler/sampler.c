/* sampler.c: pretraining samples as a pure function of (seed, epoch, index,
 * snapshot), and the prefetch stream that fills batches ahead of the trainer.
 * Recipes: ../shared/reference/recipes.md; kiln's choices: docs/sampler.md.
 *
 * Invariants:
 *  1. Every random draw for the sample at (epoch e, index i) comes from an
 *     RNG seeded by mix(seed, e, i): nothing depends on what was sampled
 *     before, on threads, or on the batch a row sits in.
 *  2. Epoch e visits the epoch's units (chunks, or CLM windows) in the order
 *     of a keyed bijection perm_e on [0, N): a Feistel network with cycle
 *     walking, O(1) per index, so seeking costs one sample.
 *  3. The index (chunks, split documents) depends only on the snapshot and
 *     the options, never on the seed. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "sampler/internal.h"
#include "util/util.h"

/* ---- counter-based randomness ------------------------------------------------ */

static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
/* SplitMix64 over a key: the sample's private stream. */
typedef struct krng { uint64_t s; } krng;
static inline uint64_t rng_next(krng *r) { return mix64(r->s += 0x9e3779b97f4a7c15ULL); }
static inline double rng_unif(krng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }
static inline uint64_t rng_below(krng *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}
enum { TAG_SAMPLE = 0x53414d50, TAG_PERM = 0x5045524d, TAG_SPLIT = 0x53504c54 };
static uint64_t key3(uint64_t seed, uint64_t tag, uint64_t a, uint64_t b)
{
    return mix64(mix64(mix64(seed ^ mix64(tag)) + a) + b);
}

/* ---- the sampler ------------------------------------------------------------- */

typedef struct chunk { uint32_t doc, start, end; } chunk;   /* tokens [start, end) of doc */

struct ksampler {
    const ksnapshot *sn;
    ksampler_opts o;
    int32_t *random_ids;       /* (n_random) ids the 10% branch draws */
    int pairs;                 /* SOP or NSP: [CLS] A [SEP] B [SEP] */
    int max_tokens;            /* L - 3 with pairs, L - 2 without */
    uint32_t *docs;            /* (n_docs) snapshot indices of the split's documents */
    uint64_t n_docs;
    chunk *chunks;             /* (n_chunks) */
    uint64_t n_chunks;
    uint64_t *cum;             /* CLM: (n_docs + 1) stream offsets (tokens + a [SEP] each) */
    uint64_t N;                /* samples per epoch */
    int perm_bits;             /* half width of the Feistel domain */
};

void ksampler_opts_defaults(ksampler_opts *o)
{
    memset(o, 0, sizeof *o);
    o->objectives = KOBJ_MLM;
    o->seq_len = 128;
    o->mask_prob = 0.15;
    o->short_seq_prob = 0.1;
    o->max_ngram = 3;
    o->valid_fraction = 0.01;
    o->pad_id = 0;
    o->cls_id = 101;
    o->sep_id = 102;
    o->mask_id = 103;
    o->vocab_size = 30522;
}

/* Default P: BERT's 20 at 128 scaled, or ELECTRA's int((p + 0.005) * L). */
static int default_predictions(const ksampler_opts *o)
{
    if (o->objectives & KOBJ_RTD) return (int)((o->mask_prob + 0.005) * o->seq_len);
    /* n-gram spans may overshoot the budget by up to 3 words (mask_row) */
    if (o->objectives & KOBJ_NGRAM) return (int)lround(o->mask_prob * o->seq_len) + 8;
    return (int)lround(o->mask_prob * o->seq_len) + 1;
}

int ksampler_held_out(uint64_t doc_hash, double valid_fraction)
{
    /* the document's content hash (stable across stores), as a uniform in [0, 1) */
    double u = (double)(mix64(doc_hash ^ TAG_SPLIT) >> 11) * 0x1.0p-53;
    return u < valid_fraction;
}

static int in_split(const ksampler *sp, uint64_t d)
{
    return ksampler_held_out(sp->sn->doc_hash[d], sp->o.valid_fraction) == (sp->o.split == 1);
}

static void push_chunk(ksampler *sp, size_t *cap, uint32_t doc, uint32_t s, uint32_t e)
{
    if (sp->n_chunks == *cap) {
        *cap = *cap ? *cap * 2 : 4096;
        sp->chunks = xrealloc(sp->chunks, *cap * sizeof *sp->chunks);
    }
    sp->chunks[sp->n_chunks++] = (chunk){doc, s, e};
}

/* Chunks of a document as BERT packs them: units (sentences; a sentence
 * longer than max_tokens is cut into pieces at word starts) accumulate until
 * max_tokens is reached or the document ends. */
static void chunk_document(ksampler *sp, size_t *cap, uint32_t d)
{
    const ksnapshot *sn = sp->sn;
    uint64_t t0 = sn->tok_off[d];
    uint32_t mt = (uint32_t)sp->max_tokens, cs = 0, len = 0, pos = 0;
    for (uint64_t k = sn->sent_off[d]; k < sn->sent_off[d + 1]; k++) {
        uint32_t se = sn->sent_ends[k];
        while (pos < se) {
            uint32_t ue = se;
            if (se - pos > mt) {           /* a long sentence: a piece ending at a word start */
                ue = pos + mt;
                uint32_t back = ue;
                while (back > pos + mt / 2 && !ksnap_word_start(sn, t0 + back)) back--;
                if (back > pos + mt / 2) ue = back;
            }
            len += ue - pos;
            pos = ue;
            int last = pos == se && k + 1 == sn->sent_off[d + 1];
            if (len >= mt || last) {
                push_chunk(sp, cap, d, cs, pos);
                cs = pos;
                len = 0;
            }
        }
    }
}

ksampler *ksampler_open(const ksnapshot *sn, const ksampler_opts *o, char *err, size_t errlen)
{
    int ob = o->objectives;
    int masks = !!(ob & KOBJ_MLM) + !!(ob & KOBJ_WWM) + !!(ob & KOBJ_NGRAM) + !!(ob & KOBJ_RTD);
    const char *why = NULL;
    if (o->seq_len < 8 || o->seq_len > 65536) why = "sequence length must be in [8, 65536]";
    else if ((ob & KOBJ_SOP) && (ob & KOBJ_NSP)) why = "sop and nsp exclude each other";
    else if (masks > 1) why = "choose one masking objective of mlm, wwm, ngram, rtd";
    else if ((ob & KOBJ_CLM) && (masks || (ob & (KOBJ_SOP | KOBJ_NSP))))
        why = "clm does not combine with masking or sentence objectives";
    else if (!(ob & (KOBJ_CLM | KOBJ_MLM | KOBJ_WWM | KOBJ_NGRAM | KOBJ_RTD | KOBJ_SOP | KOBJ_NSP)))
        why = "no objective";
    else if (!(o->mask_prob > 0 && o->mask_prob < 1)) why = "mask probability must be in (0, 1)";
    else if (o->short_seq_prob < 0 || o->short_seq_prob > 1) why = "short sequence probability must be in [0, 1]";
    else if (o->max_ngram < 1 || o->max_ngram > 3) why = "max n-gram must be 1, 2 or 3";
    else if (o->valid_fraction < 0 || o->valid_fraction >= 1) why = "validation fraction must be in [0, 1)";
    else if (o->max_predictions < 0 || o->max_predictions > o->seq_len) why = "max predictions must be in [0, L]";
    else if (o->vocab_size < 8 || o->vocab_size < sn->vocab_size) why = "vocabulary smaller than the snapshot's";
    if (why) {
        snprintf(err, errlen, "%s", why);
        return NULL;
    }
    ksampler *sp = xcalloc(1, sizeof *sp);
    sp->sn = sn;
    sp->o = *o;
    sp->o.random_ids = NULL;
    if (!sp->o.max_predictions) sp->o.max_predictions = default_predictions(o);
    if (sp->o.max_predictions < 1) sp->o.max_predictions = 1;
    sp->pairs = !!(ob & (KOBJ_SOP | KOBJ_NSP));
    sp->max_tokens = o->seq_len - (sp->pairs ? 3 : 2);
    /* the random-replacement pool */
    if (o->n_random) {
        sp->random_ids = xmalloc(o->n_random * sizeof *sp->random_ids);
        memcpy(sp->random_ids, o->random_ids, o->n_random * sizeof *sp->random_ids);
        sp->o.n_random = o->n_random;
    } else {
        sp->random_ids = xmalloc(o->vocab_size * sizeof *sp->random_ids);
        size_t n = 0;
        for (uint32_t id = 0; id < o->vocab_size; id++)
            if ((int32_t)id != o->pad_id && (int32_t)id != o->cls_id && (int32_t)id != o->sep_id &&
                (int32_t)id != o->mask_id)
                sp->random_ids[n++] = (int32_t)id;
        sp->o.n_random = n;
    }
    sp->o.random_ids = sp->random_ids;
    /* the split's documents */
    sp->docs = xmalloc(sn->D * sizeof *sp->docs);
    for (uint64_t d = 0; d < sn->D; d++)
        if (sn->tok_off[d + 1] > sn->tok_off[d] && in_split(sp, d)) sp->docs[sp->n_docs++] = (uint32_t)d;
    if (ob & KOBJ_CLM) {
        sp->cum = xmalloc((sp->n_docs + 1) * sizeof *sp->cum);
        sp->cum[0] = 0;
        for (uint64_t k = 0; k < sp->n_docs; k++) {
            uint32_t d = sp->docs[k];
            sp->cum[k + 1] = sp->cum[k] + (sn->tok_off[d + 1] - sn->tok_off[d]) + 1;
        }
        sp->N = sp->cum[sp->n_docs] / (uint64_t)o->seq_len;
    } else {
        size_t cap = 0;
        for (uint64_t k = 0; k < sp->n_docs; k++) chunk_document(sp, &cap, sp->docs[k]);
        sp->N = sp->n_chunks;
    }
    if (sp->N == 0) {
        snprintf(err, errlen, "the %s split has no %s (%llu documents)",
                 o->split ? "validation" : "training", (ob & KOBJ_CLM) ? "full window" : "text",
                 (unsigned long long)sp->n_docs);
        ksampler_close(sp);
        return NULL;
    }
    sp->perm_bits = 1;
    while (sp->perm_bits < 32 && ((uint64_t)1 << (2 * sp->perm_bits)) < sp->N) sp->perm_bits++;
    return sp;
}

void ksampler_close(ksampler *sp)
{
    if (!sp) return;
    free(sp->random_ids);
    free(sp->docs);
    free(sp->chunks);
    free(sp->cum);
    free(sp);
}

uint64_t ksampler_epoch_size(const ksampler *sp) { return sp->N; }
uint64_t ksampler_split_docs(const ksampler *sp) { return sp->n_docs; }
const ksampler_opts *ksampler_options(const ksampler *sp) { return &sp->o; }

/* perm_e(i): 4-round Feistel on 2 * perm_bits bits, walked until inside [0, N). */
static uint64_t permute(const ksampler *sp, uint64_t epoch, uint64_t i)
{
    int h = sp->perm_bits;
    uint64_t mask = ((uint64_t)1 << h) - 1, key = key3(sp->o.seed, TAG_PERM, epoch, 0);
    uint64_t x = i;
    do {
        uint64_t l = x >> h, r = x & mask;
        for (uint64_t round = 0; round < 4; round++) {
            uint64_t f = mix64(key + round * 0x9e3779b97f4a7c15ULL + r) & mask;
            uint64_t t = l ^ f;
            l = r;
            r = t;
        }
        x = (l << h) | r;
    } while (x >= sp->N);
    return x;
}

uint64_t ksampler_unit(const ksampler *sp, uint64_t epoch, uint64_t pos)
{
    return permute(sp, epoch + pos / sp->N, pos % sp->N);
}

/* ---- batches ----------------------------------------------------------------- */

ksample_batch *ksampler_batch_new(const ksampler *sp, int capacity)
{
    if (capacity < 1) return NULL;
    ksample_batch *b = xcalloc(1, sizeof *b);
    size_t B = (size_t)capacity, L = (size_t)sp->o.seq_len, P = (size_t)sp->o.max_predictions;
    b->version = KSAMPLE_BATCH_VERSION;
    b->objectives = sp->o.objectives;
    b->capacity = capacity;
    b->L = (int)L;
    b->P = (int)P;
    b->pad_id = sp->o.pad_id, b->cls_id = sp->o.cls_id, b->sep_id = sp->o.sep_id, b->mask_id = sp->o.mask_id;
    b->index = xcalloc(B, sizeof *b->index);
    b->input_ids = xcalloc(B * L, sizeof *b->input_ids);
    b->token_type_ids = xcalloc(B * L, 1);
    b->lengths = xcalloc(B, sizeof *b->lengths);
    b->n_masked = xcalloc(B, sizeof *b->n_masked);
    b->masked_positions = xcalloc(B * P, sizeof *b->masked_positions);
    b->masked_ids = xcalloc(B * P, sizeof *b->masked_ids);
    b->masked_weights = xcalloc(B * P, sizeof *b->masked_weights);
    b->labels = xcalloc(B, sizeof *b->labels);
    if (sp->o.objectives & KOBJ_ENTITIES) {
        b->entity_ids = xcalloc(B * L, sizeof *b->entity_ids);
        b->entity_labels = xcalloc(B * L, sizeof *b->entity_labels);
    }
    return b;
}

void ksampler_batch_free(ksample_batch *b)
{
    if (!b) return;
    free(b->index), free(b->input_ids), free(b->token_type_ids), free(b->lengths);
    free(b->n_masked), free(b->masked_positions), free(b->masked_ids), free(b->masked_weights);
    free(b->labels), free(b->entity_ids), free(b->entity_labels);
    free(b);
}

/* ---- one row ------------------------------------------------------------------ */

typedef struct seg { uint32_t doc, start, end; } seg;   /* tokens [start, end) of snapshot doc */

/* Per-row scratch, on the stack of the caller (sized for L <= 65536 via heap). */
typedef struct row_ctx {
    const ksampler *sp;
    krng rng;
    int32_t *ids;            /* (L) the row being built */
    uint8_t *types;          /* (L) */
    int32_t *ent;            /* (L) entity labels or NULL */
    int32_t *ment_end;       /* (L) at a mention's first token: the row position after its last */
    uint8_t *wstart;         /* (L) 1 = position starts a word (maskable positions only) */
    uint8_t *special;        /* (L) 1 = [CLS]/[SEP] */
    int len;
    /* scratch for masking */
    int32_t *units;          /* (L + 1) unit start positions */
    int32_t *order;          /* (L) */
    uint8_t *chosen;         /* (L) */
} row_ctx;

static uint32_t seg_len(seg s) { return s.end - s.start; }

/* Copies a segment into the row at r->len; the first token always starts a word. */
static void put_seg(row_ctx *r, seg s, uint8_t type)
{
    const ksnapshot *sn = r->sp->sn;
    uint64_t g0 = sn->tok_off[s.doc] + s.start;
    int p0 = r->len;
    for (uint32_t k = 0; k < s.end - s.start; k++) {
        int p = r->len++;
        r->ids[p] = (int32_t)ksnap_token(sn, g0 + k);
        r->types[p] = type;
        r->special[p] = 0;
        r->wstart[p] = k == 0 || ksnap_word_start(sn, g0 + k);
    }
    if (r->ent) {
        const ksnap_mention *m = sn->ments + sn->ment_off[s.doc];
        uint64_t lo = 0, hi = sn->ment_off[s.doc + 1] - sn->ment_off[s.doc];
        while (lo < hi) {                     /* first mention starting at or after s.start */
            uint64_t mid = (lo + hi) / 2;
            if (m[mid].start < s.start) lo = mid + 1;
            else hi = mid;
        }
        for (uint64_t k = lo; k < sn->ment_off[s.doc + 1] - sn->ment_off[s.doc] && m[k].start < s.end; k++) {
            int p = p0 + (int)(m[k].start - s.start);
            r->ent[p] = m[k].entity;
            r->ment_end[p] = p0 + (int)((m[k].end < s.end ? m[k].end : s.end) - s.start);
        }
    }
}

static void put_special(row_ctx *r, int32_t id, uint8_t type)
{
    int p = r->len++;
    r->ids[p] = id;
    r->types[p] = type;
    r->special[p] = 1;
    r->wstart[p] = 1;
}

/* Unit boundaries (exclusive ends) of a chunk's sentences inside [s, e). */
static int chunk_bounds(const ksnapshot *sn, seg c, uint32_t *b, int max)
{
    int n = 0;
    for (uint64_t k = sn->sent_off[c.doc]; k < sn->sent_off[c.doc + 1] && n < max - 1; k++) {
        uint32_t x = sn->sent_ends[k];
        if (x > c.start && x < c.end) b[n++] = x;
        if (x >= c.end) break;
    }
    b[n++] = c.end;
    return n;
}

/* BERT's truncation: trim the longer segment (B on a tie) from the front or
 * the back, p = 0.5 each, until the pair fits. */
static int truncate_pair(krng *rng, seg *a, seg *b, uint32_t max)
{
    int cut = 0;
    while (seg_len(*a) + seg_len(*b) > max) {
        seg *t = seg_len(*a) > seg_len(*b) ? a : b;
        if (rng_unif(rng) < 0.5) t->start++;
        else t->end--;
        cut = 1;
    }
    return cut;
}

/* A random other document of the split and a piece of it starting at a random
 * sentence, up to want tokens (whole sentences while they fit, at least one). */
static seg random_next(row_ctx *r, uint32_t not_doc, uint32_t want)
{
    const ksampler *sp = r->sp;
    const ksnapshot *sn = sp->sn;
    uint32_t d = sp->docs[rng_below(&r->rng, sp->n_docs)];
    for (int tries = 0; tries < 10 && d == not_doc && sp->n_docs > 1; tries++)
        d = sp->docs[rng_below(&r->rng, sp->n_docs)];
    uint64_t s0 = sn->sent_off[d], ns = sn->sent_off[d + 1] - s0;
    uint64_t k = rng_below(&r->rng, ns);
    uint32_t start = k ? sn->sent_ends[s0 + k - 1] : 0, end = start;
    for (; k < ns; k++) {
        end = sn->sent_ends[s0 + k];
        if (end - start >= want) break;
    }
    if (end - start > (uint32_t)sp->max_tokens) end = start + (uint32_t)sp->max_tokens;
    return (seg){d, start, end};
}

/* n in 1..max with p(n) = (1/n) / tot. */
static int draw_ngram(krng *rng, int max, double tot)
{
    double x = rng_unif(rng) * tot;
    int n = 1;
    for (; n < max; n++) {
        x -= 1.0 / n;
        if (x < 0) break;
    }
    return n;
}

/* Chooses the masked positions and replaces them (recipes.md). */
static void mask_row(row_ctx *r, int *n_out, int32_t *pos_out, int32_t *orig_out, ksample_stats *st)
{
    const ksampler *sp = r->sp;
    const ksampler_opts *o = &sp->o;
    int L = r->len, P = o->max_predictions;
    int budget = (int)lround(L * o->mask_prob);
    if (budget < 1) budget = 1;
    if (budget > P) budget = P;
    int whole = !!(o->objectives & (KOBJ_WWM | KOBJ_NGRAM));
    /* units: runs of maskable positions (words, or single tokens) */
    int nu = 0;
    for (int p = 0; p < L; p++) {
        if (r->special[p]) continue;
        if (!whole || r->wstart[p] || nu == 0 || r->special[p - 1]) r->units[nu++] = p;
    }
    int maskable = 0;
    for (int p = 0; p < L; p++) maskable += !r->special[p];
    if (L > 0) memset(r->chosen, 0, (size_t)L);
    for (int u = 0; u < nu; u++) r->order[u] = u;
    for (int u = nu - 1; u > 0; u--) {     /* Fisher-Yates */
        int j = (int)rng_below(&r->rng, (uint64_t)u + 1);
        int t = r->order[u];
        r->order[u] = r->order[j];
        r->order[j] = t;
    }
    int count = 0;
    /* end of each unit, computed once */
    int32_t *uend = r->units + L + 1;
    for (int u = 0; u < nu; u++) {
        int e = r->units[u] + 1;
        while (e < L && !r->special[e] && !(u + 1 < nu && e == r->units[u + 1])) e++;
        uend[u] = e;
    }
    if (o->objectives & KOBJ_NGRAM) {
        /* ALBERT's n-grams of whole words, n in 1..max_ngram with p ~ 1/n.
         * Unlike upstream (which draws n per start and drops spans that
         * overlap, so long spans are under-represented), a drawn n waits for
         * the next start with n free consecutive words of one segment; only
         * the budget's last span backs off to a shorter n (docs/sampler.md). */
        double tot = 0;
        for (int m = 1; m <= o->max_ngram; m++) tot += 1.0 / m;
        int n = draw_ngram(&r->rng, o->max_ngram, tot);
        for (int k = 0; k < nu && count < budget; k++) {
            int u = r->order[k];
            if (r->chosen[r->units[u]]) continue;
            int avail = 1;
            while (avail < n && u + avail < nu && uend[u + avail - 1] == r->units[u + avail] &&
                   !r->chosen[r->units[u + avail]])
                avail++;
            if (avail < n) continue;
            int m = n, span = uend[u + m - 1] - r->units[u];
            /* the budget is met to the nearest token: a span may overshoot it
             * by less than it would leave unused, within P */
            if (count + span > P || (count + span > budget && count + span - budget > budget - count))
                continue;
            for (int p = r->units[u]; p < r->units[u] + span; p++) r->chosen[p] = 1;
            count += span;
            if (st) st->spans[m]++;
            n = draw_ngram(&r->rng, o->max_ngram, tot);
        }
    } else {
        for (int k = 0; k < nu && count < budget; k++) {
            int u = r->order[k];
            int span = uend[u] - r->units[u];
            if (count + span > budget) continue;
            for (int p = r->units[u]; p < uend[u]; p++) r->chosen[p] = 1;
            count += span;
            if (st && whole) st->spans[1]++;
        }
    }
    int rtd = !!(o->objectives & KOBJ_RTD), n = 0;
    for (int p = 0; p < L; p++) {
        if (!r->chosen[p]) continue;
        pos_out[n] = p;
        orig_out[n] = r->ids[p];
        n++;
        double x = rng_unif(&r->rng);
        int br;
        if (rtd) br = x < 0.85 ? 1 : 2;
        else br = x < 0.8 ? 1 : x < 0.9 ? 2 : 3;
        if (br == 1) r->ids[p] = o->mask_id;
        else if (br == 3) r->ids[p] = o->random_ids[rng_below(&r->rng, o->n_random)];
        if (st) {
            st->masked_mask += br == 1;
            st->masked_keep += br == 2;
            st->masked_random += br == 3;
            st->special_masked += r->special[p];
        }
    }
    *n_out = n;
    if (st) {
        st->masked += (uint64_t)n;
        st->maskable += (uint64_t)maskable;
    }
}

static void build_row(const ksampler *sp, uint64_t epoch, uint64_t pos, ksample_batch *b, int row,
                      row_ctx *r, ksample_stats *st)
{
    const ksnapshot *sn = sp->sn;
    const ksampler_opts *o = &sp->o;
    int L = o->seq_len, P = o->max_predictions;
    uint64_t e = epoch + pos / sp->N, i = pos % sp->N;
    r->rng.s = key3(o->seed, TAG_SAMPLE, e, i);
    r->len = 0;
    r->ids = b->input_ids + (size_t)row * L;
    r->types = b->token_type_ids + (size_t)row * L;
    r->ent = b->entity_labels ? b->entity_labels + (size_t)row * L : NULL;
    if (r->ent) memset(r->ent, 0, (size_t)L * sizeof *r->ent);
    int32_t label = -1, truncated = 0;
    uint64_t u = permute(sp, e, i);

    if (o->objectives & KOBJ_CLM) {
        /* window u of the split's documents laid end to end, [SEP] after each */
        uint64_t off = u * (uint64_t)L, lo = 0, hi = sp->n_docs;
        while (hi - lo > 1) {
            uint64_t mid = (lo + hi) / 2;
            if (sp->cum[mid] <= off) lo = mid;
            else hi = mid;
        }
        while (r->len < L) {
            uint32_t d = sp->docs[lo];
            uint64_t in = off - sp->cum[lo], nt = sn->tok_off[d + 1] - sn->tok_off[d];
            if (in < nt) {
                uint64_t take = nt - in;
                if (take > (uint64_t)(L - r->len)) take = (uint64_t)(L - r->len);
                put_seg(r, (seg){d, (uint32_t)in, (uint32_t)(in + take)}, 0);
                off += take;
            } else {
                put_special(r, o->sep_id, 0);
                off++;
                lo++;
            }
        }
    } else {
        chunk c = sp->chunks[u];
        seg ch = {c.doc, c.start, c.end};
        /* a short target with probability short_seq_prob: fewer units of the chunk */
        uint32_t target = (uint32_t)sp->max_tokens;
        if (rng_unif(&r->rng) < o->short_seq_prob) target = 2 + (uint32_t)rng_below(&r->rng, target - 1);
        uint32_t *bounds = (uint32_t *)r->order;    /* reused scratch, L entries */
        int nb = chunk_bounds(sn, ch, bounds, L);
        int used = 0;
        while (used < nb && bounds[used] - ch.start < target) used++;
        if (used == nb) used = nb - 1;
        nb = used + 1;
        ch.end = bounds[used];
        if (!sp->pairs) {
            seg a = ch;
            if (seg_len(a) > (uint32_t)sp->max_tokens) {
                a.end = a.start + (uint32_t)sp->max_tokens;
                truncated = 1;
            }
            put_special(r, o->cls_id, 0);
            put_seg(r, a, 0);
            put_special(r, o->sep_id, 0);
        } else {
            seg a = ch, bb = {c.doc, ch.end, ch.end};
            if (nb >= 2) {
                a.end = bounds[rng_below(&r->rng, (uint64_t)nb - 1)];
                bb.start = a.end;
            } else {
                /* one unit: cut at a random word start inside it, so that the
                 * label stays a fair coin (docs/sampler.md) */
                uint64_t g0 = sn->tok_off[c.doc];
                int nw = 0;
                for (uint32_t t = ch.start + 1; t < ch.end; t++) nw += ksnap_word_start(sn, g0 + t);
                if (nw > 0) {
                    uint64_t pick = rng_below(&r->rng, (uint64_t)nw);
                    for (uint32_t t = ch.start + 1; t < ch.end; t++)
                        if (ksnap_word_start(sn, g0 + t) && pick-- == 0) {
                            a.end = bb.start = t;
                            break;
                        }
                }
            }
            if (o->objectives & KOBJ_NSP) {
                if (seg_len(bb) == 0 || rng_unif(&r->rng) < 0.5) {
                    uint32_t want = target > seg_len(a) ? target - seg_len(a) : 1;
                    bb = random_next(r, c.doc, want);
                    label = 1;
                } else {
                    label = 0;
                }
            } else if (seg_len(bb) > 0) {   /* SOP */
                label = 0;
                if (rng_unif(&r->rng) < 0.5) {
                    seg t = a;
                    a = bb;
                    bb = t;
                    label = 1;
                }
            }
            truncated = truncate_pair(&r->rng, &a, &bb, (uint32_t)sp->max_tokens);
            put_special(r, o->cls_id, 0);
            put_seg(r, a, 0);
            put_special(r, o->sep_id, 0);
            put_seg(r, bb, 1);
            put_special(r, o->sep_id, 1);
        }
    }
    int len = r->len;
    for (int p = len; p < L; p++) {
        r->ids[p] = o->pad_id;
        r->types[p] = 0;
    }
    b->index[row] = (int64_t)pos;
    b->lengths[row] = len;
    b->labels[row] = label;
    int32_t *mp = b->masked_positions + (size_t)row * P, *mi = b->masked_ids + (size_t)row * P;
    float *mw = b->masked_weights + (size_t)row * P;
    int nm = 0;
    if (o->objectives & (KOBJ_MLM | KOBJ_WWM | KOBJ_NGRAM | KOBJ_RTD)) mask_row(r, &nm, mp, mi, st);
    for (int k = 0; k < P; k++) {
        if (k >= nm) {
            mp[k] = 0;
            mi[k] = o->pad_id;
        }
        mw[k] = k < nm ? 1.0f : 0.0f;
    }
    b->n_masked[row] = nm;
    if (r->ent) {
        int32_t *ei = b->entity_ids + (size_t)row * L;
        int ents = 0;
        for (int p = 0; p < L; p++) {
            int32_t x = r->ent[p];
            if (x && o->dea) {
                double q = rng_unif(&r->rng);
                if (q < 0.05 && sn->M) {
                    x = sn->ments[rng_below(&r->rng, sn->M)].entity;
                    if (st) st->dea_random++;
                } else if (q < 0.20) {
                    x = 0;
                    if (st) st->dea_dropped++;
                }
            }
            if (x && o->hide_masked_entities && nm > 0) {
                /* a mention the MLM masks (any of its tokens) loses its entity
                 * input, after the dEA draw so the stream of draws is the same
                 * either way; its label stays (docs/sampler.md) */
                int hidden = 0;
                for (int q = p; q < r->ment_end[p] && !hidden; q++) hidden = r->chosen[q];
                if (hidden) {
                    x = 0;
                    if (st) st->entities_hidden++;
                }
            }
            ei[p] = x;
            ents += r->ent[p] != 0;
        }
        if (st) {
            st->entity_tokens += (uint64_t)ents;
            st->entity_rows += ents > 0;
        }
    }
    if (st) {
        st->rows++;
        st->tokens += (uint64_t)len;
        st->pad += (uint64_t)(L - len);
        st->truncated_rows += (uint64_t)truncated;
        if (label >= 0) {
            st->labelled++;
            st->label1 += (uint64_t)label;
        }
    }
}

int ksampler_fill(const ksampler *sp, uint64_t epoch, uint64_t pos0, uint64_t stride, int count,
                  ksample_batch *b, ksample_stats *stats)
{
    if (count < 0 || count > b->capacity || b->L != sp->o.seq_len || b->P != sp->o.max_predictions)
        return EX_SOFTWARE;
    size_t L = (size_t)sp->o.seq_len;
    /* scratch per call: (2L + 2) unit starts/ends, (L) mention ends, (L + 1)
     * order, 3 byte maps of L */
    int32_t *units = xmalloc((3 * L + 2) * sizeof *units);
    int32_t *order = xmalloc((L + 1) * sizeof *order);
    uint8_t *bytes = xmalloc(3 * L);
    row_ctx r = {.sp = sp, .units = units, .ment_end = units + 2 * L + 2, .order = order, .wstart = bytes, .special = bytes + L,
                 .chosen = bytes + 2 * L};
    for (int k = 0; k < count; k++)
        build_row(sp, epoch, pos0 + (uint64_t)k * stride, b, k, &r, stats);
    b->B = count;
    free(units);
    free(order);
    free(bytes);
    return 0;
}

/* ---- the prefetch stream -------------------------------------------------------- */

typedef struct slot {
    ksample_batch *b;
    ksample_stats st;
    uint64_t k;                /* batch number held */
    int state;                 /* 0 free, 1 building, 2 ready */
} slot;

struct ksampler_stream {
    const ksampler *sp;
    uint64_t epoch, start;
    int B, shard, n_shards, depth, n_threads;
    slot *slots;               /* (depth) */
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv_free, cv_ready;
    uint64_t next_build;       /* next batch number to claim */
    uint64_t next_take;        /* batch number the consumer takes next */
    int stop;
};

static void *stream_worker(void *arg)
{
    ksampler_stream *st = arg;
    pthread_mutex_lock(&st->mu);
    for (;;) {
        uint64_t k = st->next_build;
        slot *s = &st->slots[k % (uint64_t)st->depth];
        while (!st->stop && (s->state != 0 || k >= st->next_take + (uint64_t)st->depth)) {
            pthread_cond_wait(&st->cv_free, &st->mu);
            k = st->next_build;
            s = &st->slots[k % (uint64_t)st->depth];
        }
        if (st->stop) break;
        st->next_build++;
        s->state = 1;
        s->k = k;
        pthread_mutex_unlock(&st->mu);
        memset(&s->st, 0, sizeof s->st);
        uint64_t first = (st->start + k * (uint64_t)st->B) * (uint64_t)st->n_shards + (uint64_t)st->shard;
        ksampler_fill(st->sp, st->epoch, first, (uint64_t)st->n_shards, st->B, s->b, &s->st);
        pthread_mutex_lock(&st->mu);
        s->state = 2;
        pthread_cond_broadcast(&st->cv_ready);
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

ksampler_stream *ksampler_stream_new(const ksampler *sp, uint64_t epoch, uint64_t start, int B,
                                     int shard, int n_shards, int threads, int depth,
                                     char *err, size_t errlen)
{
    if (B < 1 || n_shards < 1 || shard < 0 || shard >= n_shards) {
        snprintf(err, errlen, "bad stream arguments (batch %d, shard %d/%d)", B, shard, n_shards);
        return NULL;
    }
    if (threads < 1) threads = 1;
    if (depth < threads + 1) depth = threads + 1;
    ksampler_stream *st = xcalloc(1, sizeof *st);
    st->sp = sp;
    st->epoch = epoch;
    st->start = start;
    st->B = B;
    st->shard = shard;
    st->n_shards = n_shards;
    st->depth = depth;
    st->slots = xcalloc((size_t)depth, sizeof *st->slots);
    for (int i = 0; i < depth; i++) st->slots[i].b = ksampler_batch_new(sp, B);
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv_free, NULL);
    pthread_cond_init(&st->cv_ready, NULL);
    st->threads = xcalloc((size_t)threads, sizeof *st->threads);
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&st->threads[i], NULL, stream_worker, st)) break;
        st->n_threads++;
    }
    if (st->n_threads == 0) {
        snprintf(err, errlen, "cannot start sampler threads");
        ksampler_stream_free(st);
        return NULL;
    }
    return st;
}

const ksample_batch *ksampler_stream_next(ksampler_stream *st, ksample_stats *stats)
{
    pthread_mutex_lock(&st->mu);
    if (st->next_take > 0) {   /* release the batch handed out last time */
        slot *prev = &st->slots[(st->next_take - 1) % (uint64_t)st->depth];
        prev->state = 0;
        pthread_cond_broadcast(&st->cv_free);
    }
    slot *s = &st->slots[st->next_take % (uint64_t)st->depth];
    while (!(s->state == 2 && s->k == st->next_take)) pthread_cond_wait(&st->cv_ready, &st->mu);
    st->next_take++;
    pthread_cond_broadcast(&st->cv_free);
    pthread_mutex_unlock(&st->mu);
    if (stats) *stats = s->st;
    return s->b;
}

void ksampler_stream_free(ksampler_stream *st)
{
    if (!st) return;
    pthread_mutex_lock(&st->mu);
    st->stop = 1;
    pthread_cond_broadcast(&st->cv_free);
    pthread_mutex_unlock(&st->mu);
    for (int i = 0; i < st->n_threads; i++) pthread_join(st->threads[i], NULL);
    for (int i = 0; i < st->depth; i++) ksampler_batch_free(st->slots[i].b);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv_free);
    pthread_cond_destroy(&st->cv_ready);
    free(st->slots);
    free(st->threads);
    free(st);
}
