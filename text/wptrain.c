/* wptrain.c: WordPiece vocabulary training (see wptrain.h): a bounded word
 * counter and a deterministic BPE trainer with "##" continuation pieces, as
 * Hugging Face tokenizers' BpeTrainer with continuing_subword_prefix="##".
 *
 * ---- Counter ----------------------------------------------------------------
 * Dense entries (word bytes in one arena, count, hash) plus an open-addressing
 * table of entry indices (linear probing, load <= 1/2). When a new word comes
 * and max_words are held, prune(): the threshold t is the smallest value >=
 * the previous threshold such that at least max_words/8 words have count <= t;
 * every word with count <= t goes (never "some of the words with count t"),
 * the arena and the table are rebuilt in entry order. The kept set therefore
 * depends on the sequence of additions and counts only, never on hash layout.
 * kwp_counter_trim prunes the same way on demand (target: enough words to go
 * down to max_words less max_words/8), for callers that add without a limit
 * and trim at fixed points: then only the multiset added between two points
 * matters, not its order.
 *
 * ---- Trainer ----------------------------------------------------------------
 * 1. The words are sorted by bytes (layout is then independent of insertion
 *    and merge order; the result does not depend on it anyway, see 5).
 * 2. Characters: UTF-8 code points; a byte that does not start a valid
 *    sequence (overlong, surrogate, > U+10FFFF, truncated) is one char. The
 *    alphabet is every char weighted by word count; with limit_alphabet the N
 *    most frequent (ties: byte order) are kept. Kept chars give the piece "c"
 *    always and "##c" if c ever occurs after the first position; chars not
 *    kept become NONE symbols: they never pair, merge or enter the vocab.
 *    Vocab = specials (in order, duplicates once), then these pieces sorted by
 *    bytes (a piece already present, e.g. equal to a special, is not repeated).
 * 3. Each word is an array of piece ids (first char "c", others "##c").
 * 4. Pairs: a hash (a,b) -> pair record {count, list of word indices}. count
 *    is exact at all times: sum over words of count(word) * occurrences of
 *    adjacent (a,b), counting overlapping occurrences ("x x x" has 2 (x,x)).
 *    Only eligible pairs are tracked: neither side NONE and, with
 *    max_piece_chars, chars(a) + chars(b) <= max (chars exclude "##"). The
 *    word list may hold stale entries (word no longer has the pair) and
 *    repeats (suppressed when consecutive); it always holds every word that
 *    has the pair. Lists live in one pool of linked blocks of growing size.
 * 5. Selection: a max-heap of (count, pair) entries ordered by count, then by
 *    the bytes of piece a, then of piece b (smallest first) -- a total order
 *    on distinct pairs, so the merge sequence depends on the counts only.
 *    Lazy invariant: every pair with count > 0 has a heap entry with
 *    entry.count >= count. Decreases leave entries stale-high; increases push
 *    a fresh entry (once per merge step per pair). A popped entry is valid iff
 *    entry.count == count; if count < entry.count it is re-pushed with count;
 *    if count > entry.count it is dropped (a higher entry exists). The first
 *    valid entry is the true best pair.
 * 6. Merge (a,b) -> t = a + b without its leading "##" (a "##" a keeps its
 *    prefix); t is added to the vocab unless already there (the merge is
 *    listed in o->merges either way). Every word on the
 *    pair's list is rewritten left to right, non-overlapping (as HF's
 *    Word::merge), updating neighbouring pair counts by +-count(word):
 *    (p,a)- (p,t)+ with p the previous OUTPUT symbol, (b,n)- (t,n)+ with n the
 *    next INPUT symbol, (a,b)-. After the step (a,b) has count 0 and its list
 *    is freed. Stop when the vocab has vocab_size pieces, no pair is left, or
 *    the best count < min_frequency.
 * Byte-level BPE (GPT-2, o->no_prefix): no "##" forms, every char is "c"
 * wherever it is and t = a + b; o->initial_alphabet's chars (GPT-2's 256 byte
 * chars) are in the alphabet even when no word has them, and sort before any
 * other char when limit_alphabet keeps the most frequent.
 * Cost: each merge touches only the words that held the pair, O(their
 * length); memory is O(total chars of distinct words + pairs ever seen). */
#include "text/wptrain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NIL UINT32_MAX  /* no entry / no block */
#define NONE UINT32_MAX /* symbol of a char outside the alphabet */

static uint64_t hash_bytes(const void *p, size_t n)
{
    uint8_t h[KHASH_LEN];
    khash128(p, n, h);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | h[i];
    return v;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static int bytes_cmp(const char *a, size_t na, const char *b, size_t nb)
{
    int r = memcmp(a, b, na < nb ? na : nb);
    if (r) return r;
    return na < nb ? -1 : na > nb;
}

/* Length (1..4) of the UTF-8 char at s[0..n), n >= 1; a byte that does not
 * start a valid, complete, shortest-form sequence counts as one char. */
static size_t u8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 1;
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        if (n < 3 || s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80) return 1;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        if (n < 4 || s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 1;
        return 4;
    }
    return 1;
}

static size_t u8_count(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; k++) i += u8_len((const unsigned char *)s + i, n - i);
    return k;
}

static size_t pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n) p *= 2;
    return p;
}

/* ======================================================================== */
/* Counter                                                                   */
/* ======================================================================== */

typedef struct kwc_entry {
    uint64_t hash;
    uint64_t count;
    size_t off; /* word bytes at arena.data + off */
    uint32_t len;
} kwc_entry;

struct kwp_counter {
    size_t max_words;       /* 0 = no limit */
    kwc_entry *ent;         /* (n, capacity cap) live entries, dense */
    size_t n, cap;
    uint32_t *slot;         /* (nslot, a power of 2) entry index or NIL */
    size_t nslot;
    kbuf arena;             /* word bytes of the entries */
    uint64_t threshold;     /* last prune threshold (rises only) */
    uint64_t pruned_occ;    /* occurrences dropped */
    uint64_t pruned_words;  /* words dropped (a word pruned twice counts twice) */
};

kwp_counter *kwp_counter_new(size_t max_words)
{
    kwp_counter *c = xcalloc(1, sizeof *c);
    if (max_words > (size_t)UINT32_MAX - 1) max_words = (size_t)UINT32_MAX - 1;
    c->max_words = max_words;
    return c;
}

void kwp_counter_free(kwp_counter *c)
{
    if (!c) return;
    free(c->ent);
    free(c->slot);
    kbuf_free(&c->arena);
    free(c);
}

size_t kwp_counter_size(const kwp_counter *c) { return c->n; }
uint64_t kwp_counter_pruned(const kwp_counter *c) { return c->pruned_occ; }

/* (Re)builds the slot table with nslot slots from the entries. */
static void counter_rehash(kwp_counter *c, size_t nslot)
{
    free(c->slot);
    c->nslot = nslot;
    c->slot = xmalloc(nslot * sizeof *c->slot);
    memset(c->slot, 0xFF, nslot * sizeof *c->slot);
    size_t mask = nslot - 1;
    for (size_t i = 0; i < c->n; i++) {
        size_t s = (size_t)c->ent[i].hash & mask;
        while (c->slot[s] != NIL) s = (s + 1) & mask;
        c->slot[s] = (uint32_t)i;
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Drops every word with count <= t, t the smallest value >= the previous
 * threshold (and >= 1) such that at least max(1, target) words go. */
static void counter_prune(kwp_counter *c, size_t target)
{
    if (target < 1) target = 1;
    if (target > c->n) target = c->n;
    uint64_t t = c->threshold;
    /* histogram of small counts; [0] unused */
    enum { H = 256 };
    size_t hist[H] = {0};
    for (size_t i = 0; i < c->n; i++)
        if (c->ent[i].count < H) hist[c->ent[i].count]++;
    size_t cum = 0;
    uint64_t found = 0;
    for (uint64_t v = 1; v < H; v++) {
        cum += hist[v];
        if (cum >= target) { found = v; break; }
    }
    if (!found) { /* rare: the target-th smallest count is >= H */
        uint64_t *cs = xmalloc(c->n * sizeof *cs);
        for (size_t i = 0; i < c->n; i++) cs[i] = c->ent[i].count;
        qsort(cs, c->n, sizeof *cs, cmp_u64);
        found = cs[target - 1];
        free(cs);
    }
    if (found > t) t = found;
    c->threshold = t;

    kbuf na = {0};
    kbuf_reserve(&na, c->arena.len);
    size_t k = 0, dropped = 0;
    for (size_t i = 0; i < c->n; i++) {
        kwc_entry e = c->ent[i];
        if (e.count <= t) {
            c->pruned_occ = c->pruned_occ + e.count < c->pruned_occ ? UINT64_MAX : c->pruned_occ + e.count;
            dropped++;
            continue;
        }
        size_t off = na.len;
        kbuf_append(&na, c->arena.data + e.off, e.len);
        e.off = off;
        c->ent[k++] = e;
    }
    c->pruned_words += dropped;
    c->n = k;
    kbuf_free(&c->arena);
    c->arena = na;
    counter_rehash(c, c->nslot);
    kdebug("wptrain: counter pruned %zu words with count <= %llu (%zu kept, %llu occurrences "
           "pruned so far)", dropped, (unsigned long long)t, k, (unsigned long long)c->pruned_occ);
}

void kwp_counter_add(kwp_counter *c, const char *word, size_t len, uint64_t count)
{
    if (!len || !count) return;
    if (len > UINT32_MAX) len = UINT32_MAX; /* absurd words are truncated */
    uint64_t h = hash_bytes(word, len);
    if (c->nslot) {
        size_t mask = c->nslot - 1;
        for (size_t s = (size_t)h & mask; c->slot[s] != NIL; s = (s + 1) & mask) {
            kwc_entry *e = &c->ent[c->slot[s]];
            if (e->hash == h && e->len == len && !memcmp(c->arena.data + e->off, word, len)) {
                e->count = e->count + count < e->count ? UINT64_MAX : e->count + count;
                return;
            }
        }
    }
    if (c->max_words && c->n >= c->max_words) counter_prune(c, c->max_words / 8);
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        if (c->max_words && c->cap > c->max_words) c->cap = c->max_words;
        c->ent = xrealloc(c->ent, c->cap * sizeof *c->ent);
    }
    if (2 * (c->n + 1) > c->nslot) counter_rehash(c, pow2_at_least(2 * (c->n + 1)));
    kwc_entry *e = &c->ent[c->n];
    e->hash = h;
    e->count = count;
    e->len = (uint32_t)len;
    e->off = c->arena.len;
    kbuf_append(&c->arena, word, len);
    size_t mask = c->nslot - 1, s = (size_t)h & mask;
    while (c->slot[s] != NIL) s = (s + 1) & mask;
    c->slot[s] = (uint32_t)c->n++;
}

void kwp_counter_trim(kwp_counter *c, size_t max_words)
{
    if (max_words && c->n > max_words) counter_prune(c, c->n - max_words + max_words / 8);
}

void kwp_counter_merge(kwp_counter *a, kwp_counter *b)
{
    if (a == b) return;
    for (size_t i = 0; i < b->n; i++)
        kwp_counter_add(a, b->arena.data + b->ent[i].off, b->ent[i].len, b->ent[i].count);
    a->pruned_occ = a->pruned_occ + b->pruned_occ < a->pruned_occ ? UINT64_MAX
                                                                  : a->pruned_occ + b->pruned_occ;
    a->pruned_words += b->pruned_words;
    size_t max_words = b->max_words;
    free(b->ent);
    free(b->slot);
    kbuf_free(&b->arena);
    memset(b, 0, sizeof *b);
    b->max_words = max_words;
}

/* ======================================================================== */
/* Trainer                                                                   */
/* ======================================================================== */

typedef struct piece {
    size_t off;      /* bytes at tr.pstr.data + off */
    uint32_t len;    /* bytes */
    uint32_t nchars; /* chars, "##" excluded */
} piece;

/* Word list blocks in tr.pool: a block of class k is BLK(k) uint32 words,
 * [0] = next block (NIL at the tail), [1..BLK(k)) = word indices. The i-th
 * block of a list has class min(i, MAXCLS). */
#define BLK(k) (4u << (k))
#define MAXCLS 8

typedef struct pair {
    uint32_t a, b;   /* piece ids */
    uint64_t count;  /* exact weighted count */
    uint32_t head, tail; /* blocks of the word list, NIL if empty */
    uint32_t stamp;  /* step in which it was last put on the touched list */
    uint16_t used;   /* items in the tail block */
    uint8_t tcls;    /* class of the tail block */
} pair;

typedef struct hent {
    uint64_t count;
    uint32_t pair;
} hent;

typedef struct tr {
    const kwp_train_opts *o;
    /* pieces = the vocab, id = output line */
    kbuf pstr;
    piece *pc;        /* (npc, cap cpc) */
    uint64_t *phash;  /* (npc) */
    size_t npc, cpc;
    uint32_t *pslot;  /* (npslot) piece id or NIL */
    size_t npslot;
    /* words */
    size_t nw;
    uint32_t *sym;    /* (total chars) symbols of word w at sym[woff[w] .. + wlen[w]) */
    size_t *woff;     /* (nw) */
    uint32_t *wlen;   /* (nw) */
    uint64_t *wcnt;   /* (nw) */
    uint32_t *wstamp; /* (nw) last step that rewrote the word */
    /* pairs */
    pair *pr;         /* (npr, cap cpr) */
    size_t npr, cpr;
    uint64_t *pkey;   /* (nkslot) a << 32 | b */
    uint32_t *pidx;   /* (nkslot) pair index or NIL */
    size_t nkslot;
    uint32_t *pool;   /* (npool, cap cpool) list blocks */
    size_t npool, cpool;
    uint32_t freel[MAXCLS + 1]; /* free blocks by class, linked by [0] */
    /* heap */
    hent *heap;       /* (nheap, cap cheap) */
    size_t nheap, cheap;
    uint32_t *touched; /* (ntouched, cap ctouched) pairs increased this step */
    size_t ntouched, ctouched;
    uint32_t step;
} tr;

/* ---- pieces ---- */

static const char *pstr(const tr *t, uint32_t id) { return t->pstr.data + t->pc[id].off; }

static void piece_rehash(tr *t, size_t n)
{
    free(t->pslot);
    t->npslot = n;
    t->pslot = xmalloc(n * sizeof *t->pslot);
    memset(t->pslot, 0xFF, n * sizeof *t->pslot);
    for (size_t i = 0; i < t->npc; i++) {
        size_t s = (size_t)t->phash[i] & (n - 1);
        while (t->pslot[s] != NIL) s = (s + 1) & (n - 1);
        t->pslot[s] = (uint32_t)i;
    }
}

/* Id of the piece s[0..n); adds it (with nchars) if absent and sets *added. */
static uint32_t piece_get(tr *t, const char *s, size_t n, uint32_t nchars, int *added)
{
    uint64_t h = hash_bytes(s, n);
    size_t mask = t->npslot - 1, k = (size_t)h & mask;
    for (; t->pslot[k] != NIL; k = (k + 1) & mask) {
        uint32_t id = t->pslot[k];
        if (t->phash[id] == h && t->pc[id].len == n && !memcmp(pstr(t, id), s, n)) {
            *added = 0;
            return id;
        }
    }
    if (t->npc == t->cpc) {
        t->cpc = t->cpc ? 2 * t->cpc : 256;
        t->pc = xrealloc(t->pc, t->cpc * sizeof *t->pc);
        t->phash = xrealloc(t->phash, t->cpc * sizeof *t->phash);
    }
    uint32_t id = (uint32_t)t->npc++;
    t->pc[id].off = t->pstr.len;
    t->pc[id].len = (uint32_t)n;
    t->pc[id].nchars = nchars;
    t->phash[id] = h;
    kbuf_append(&t->pstr, s, n);
    t->pslot[k] = id;
    if (2 * t->npc > t->npslot) piece_rehash(t, 2 * t->npslot);
    *added = 1;
    return id;
}

/* ---- pair word lists ---- */

static uint32_t blk_alloc(tr *t, unsigned cls)
{
    uint32_t b = t->freel[cls];
    if (b != NIL) {
        t->freel[cls] = t->pool[b];
    } else {
        size_t need = t->npool + BLK(cls);
        if (need >= NIL) {
            kerr("wptrain: pair lists exceed 2^32 entries");
            abort();
        }
        if (need > t->cpool) {
            while (t->cpool < need) t->cpool = t->cpool ? t->cpool + t->cpool / 2 : 4096;
            t->pool = xrealloc(t->pool, t->cpool * sizeof *t->pool);
        }
        b = (uint32_t)t->npool;
        t->npool = need;
    }
    t->pool[b] = NIL;
    return b;
}

static void list_push(tr *t, uint32_t p, uint32_t w)
{
    pair *q = &t->pr[p];
    if (q->head == NIL) {
        uint32_t b = blk_alloc(t, 0);
        q = &t->pr[p];
        q->head = q->tail = b;
        q->used = 0;
        q->tcls = 0;
    } else if (t->pool[q->tail + q->used] == w) {
        return; /* already the last entry */
    } else if (q->used == BLK(q->tcls) - 1) {
        unsigned cls = q->tcls < MAXCLS ? q->tcls + 1u : MAXCLS;
        uint32_t b = blk_alloc(t, cls);
        q = &t->pr[p];
        t->pool[q->tail] = b;
        q->tail = b;
        q->tcls = (uint8_t)cls;
        q->used = 0;
    }
    t->pool[q->tail + 1 + q->used++] = w;
}

static void list_free(tr *t, uint32_t p)
{
    pair *q = &t->pr[p];
    unsigned k = 0;
    for (uint32_t b = q->head; b != NIL; k++) {
        unsigned cls = k < MAXCLS ? k : MAXCLS;
        uint32_t next = t->pool[b];
        t->pool[b] = t->freel[cls];
        t->freel[cls] = b;
        b = next;
    }
    q->head = q->tail = NIL;
    q->used = 0;
}

/* ---- pairs ---- */

static void pair_rehash(tr *t, size_t n)
{
    free(t->pkey);
    free(t->pidx);
    t->nkslot = n;
    t->pkey = xmalloc(n * sizeof *t->pkey);
    t->pidx = xmalloc(n * sizeof *t->pidx);
    memset(t->pidx, 0xFF, n * sizeof *t->pidx);
    for (size_t i = 0; i < t->npr; i++) {
        uint64_t key = (uint64_t)t->pr[i].a << 32 | t->pr[i].b;
        size_t s = (size_t)mix64(key) & (n - 1);
        while (t->pidx[s] != NIL) s = (s + 1) & (n - 1);
        t->pkey[s] = key;
        t->pidx[s] = (uint32_t)i;
    }
}

/* Index of pair (a,b); creates it (count 0) when create, else NIL if absent. */
static uint32_t pair_find(tr *t, uint32_t a, uint32_t b, int create)
{
    uint64_t key = (uint64_t)a << 32 | b;
    size_t mask = t->nkslot - 1, s = (size_t)mix64(key) & mask;
    for (; t->pidx[s] != NIL; s = (s + 1) & mask)
        if (t->pkey[s] == key) return t->pidx[s];
    if (!create) return NIL;
    if (t->npr == t->cpr) {
        t->cpr = t->cpr ? 2 * t->cpr : 1024;
        t->pr = xrealloc(t->pr, t->cpr * sizeof *t->pr);
    }
    if (t->npr >= NIL - 1) {
        kerr("wptrain: more than 2^32 distinct pairs");
        abort();
    }
    uint32_t p = (uint32_t)t->npr++;
    pair *q = &t->pr[p];
    memset(q, 0, sizeof *q);
    q->a = a;
    q->b = b;
    q->head = q->tail = NIL;
    t->pkey[s] = key;
    t->pidx[s] = p;
    if (2 * t->npr > t->nkslot) pair_rehash(t, 2 * t->nkslot);
    return p;
}

static int eligible(const tr *t, uint32_t a, uint32_t b)
{
    size_t m = t->o->max_piece_chars;
    return !m || (size_t)t->pc[a].nchars + t->pc[b].nchars <= m;
}

/* count(a,b) += c for word w (w appended to the pair's list). */
static void pair_inc(tr *t, uint32_t a, uint32_t b, uint32_t w, uint64_t c)
{
    if (!eligible(t, a, b)) return;
    uint32_t p = pair_find(t, a, b, 1);
    t->pr[p].count += c;
    list_push(t, p, w);
    if (t->pr[p].stamp != t->step) {
        t->pr[p].stamp = t->step;
        if (t->ntouched == t->ctouched) {
            t->ctouched = t->ctouched ? 2 * t->ctouched : 1024;
            t->touched = xrealloc(t->touched, t->ctouched * sizeof *t->touched);
        }
        t->touched[t->ntouched++] = p;
    }
}

/* count(a,b) -= c (the pair exists: counts are exact). */
static void pair_dec(tr *t, uint32_t a, uint32_t b, uint64_t c)
{
    if (!eligible(t, a, b)) return;
    uint32_t p = pair_find(t, a, b, 0);
    if (p == NIL) return; /* cannot happen */
    t->pr[p].count = t->pr[p].count >= c ? t->pr[p].count - c : 0;
}

/* ---- heap ---- */

/* <0 if pair p sorts before pair q: piece a bytes, then piece b bytes. */
static int pair_cmp(const tr *t, uint32_t p, uint32_t q)
{
    const pair *x = &t->pr[p], *y = &t->pr[q];
    int r = x->a == y->a ? 0
                         : bytes_cmp(pstr(t, x->a), t->pc[x->a].len, pstr(t, y->a), t->pc[y->a].len);
    if (r) return r;
    return x->b == y->b ? 0
                        : bytes_cmp(pstr(t, x->b), t->pc[x->b].len, pstr(t, y->b), t->pc[y->b].len);
}

static int hent_before(const tr *t, hent x, hent y)
{
    if (x.count != y.count) return x.count > y.count;
    return pair_cmp(t, x.pair, y.pair) < 0;
}

static void heap_push(tr *t, uint64_t count, uint32_t p)
{
    if (t->nheap == t->cheap) {
        t->cheap = t->cheap ? 2 * t->cheap : 1024;
        t->heap = xrealloc(t->heap, t->cheap * sizeof *t->heap);
    }
    hent e = {count, p};
    size_t i = t->nheap++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!hent_before(t, e, t->heap[up])) break;
        t->heap[i] = t->heap[up];
        i = up;
    }
    t->heap[i] = e;
}

static void heap_sift_down(tr *t, size_t i)
{
    hent e = t->heap[i];
    size_t n = t->nheap;
    for (;;) {
        size_t l = 2 * i + 1, best = l;
        if (l >= n) break;
        if (l + 1 < n && hent_before(t, t->heap[l + 1], t->heap[l])) best = l + 1;
        if (!hent_before(t, t->heap[best], e)) break;
        t->heap[i] = t->heap[best];
        i = best;
    }
    t->heap[i] = e;
}

static hent heap_pop(tr *t)
{
    hent top = t->heap[0];
    t->heap[0] = t->heap[--t->nheap];
    if (t->nheap) heap_sift_down(t, 0);
    return top;
}

/* ---- merging ---- */

/* Rewrites word w with (a,b) -> m, left to right, updating pair counts. */
static void merge_word(tr *t, uint32_t w, uint32_t p, uint32_t a, uint32_t b, uint32_t m)
{
    uint32_t *x = t->sym + t->woff[w];
    size_t n = t->wlen[w], i = 0, j = 0;
    uint64_t c = t->wcnt[w];
    while (i < n) {
        if (i + 1 < n && x[i] == a && x[i + 1] == b) {
            if (j > 0 && x[j - 1] != NONE) {
                pair_dec(t, x[j - 1], a, c);
                pair_inc(t, x[j - 1], m, w, c);
            }
            if (i + 2 < n && x[i + 2] != NONE) {
                pair_dec(t, b, x[i + 2], c);
                pair_inc(t, m, x[i + 2], w, c);
            }
            t->pr[p].count = t->pr[p].count >= c ? t->pr[p].count - c : 0;
            x[j++] = m;
            i += 2;
        } else {
            x[j++] = x[i++];
        }
    }
    t->wlen[w] = (uint32_t)j;
}

/* Applies the merge of pair p; returns 1 if it added a piece to the vocab. */
static int do_merge(tr *t, uint32_t p)
{
    uint32_t a = t->pr[p].a, b = t->pr[p].b;
    size_t la = t->pc[a].len, lb = t->pc[b].len, skip = 0;
    if (!t->o->no_prefix && lb >= 2 && pstr(t, b)[0] == '#' && pstr(t, b)[1] == '#') skip = 2;
    char stackbuf[256];
    char *s = la + lb <= sizeof stackbuf ? stackbuf : xmalloc(la + lb);
    memcpy(s, pstr(t, a), la);
    memcpy(s + la, pstr(t, b) + skip, lb - skip);
    int added;
    uint32_t m = piece_get(t, s, la + lb - skip, t->pc[a].nchars + t->pc[b].nchars, &added);
    if (s != stackbuf) free(s);
    if (t->o->merges) {
        kbuf_append(t->o->merges, pstr(t, a), la);
        kbuf_putc(t->o->merges, ' ');
        kbuf_append(t->o->merges, pstr(t, b), lb);
        kbuf_putc(t->o->merges, '\n');
    }

    t->step++;
    t->ntouched = 0;
    unsigned k = 0;
    for (uint32_t blk = t->pr[p].head; blk != NIL; k++) {
        unsigned cls = k < MAXCLS ? k : MAXCLS;
        for (size_t i = 0;; i++) {
            size_t n = blk == t->pr[p].tail ? t->pr[p].used : BLK(cls) - 1;
            if (i >= n) break;
            uint32_t w = t->pool[blk + 1 + i];
            if (t->wstamp[w] == t->step) continue;
            t->wstamp[w] = t->step;
            merge_word(t, w, p, a, b, m);
        }
        blk = t->pool[blk];
    }
    if (t->pr[p].count == 0) list_free(t, p);
    for (size_t i = 0; i < t->ntouched; i++) {
        uint32_t q = t->touched[i];
        if (t->pr[q].count) heap_push(t, t->pr[q].count, q);
    }
    return added;
}

/* ---- setup ---- */

typedef struct wref {
    const char *s;
    uint32_t len;
    uint64_t count;
} wref;

static int wref_cmp(const void *x, const void *y)
{
    const wref *a = x, *b = y;
    return bytes_cmp(a->s, a->len, b->s, b->len);
}

/* A char: its bytes packed big-endian into a uint32 (zero padded: the
 * numeric order is the byte order). */
typedef struct chinfo {
    uint32_t key;
    uint8_t init, cont; /* seen first in a word / after the first (no_prefix: always init) */
    uint8_t kept;
    uint8_t forced;     /* of o->initial_alphabet: always kept */
    uint64_t count;     /* occurrences weighted by word count */
    uint32_t id_init, id_cont; /* pieces "c" / "##c" (NONE if not kept) */
} chinfo;

static int chinfo_by_freq(const void *x, const void *y)
{
    const chinfo *a = *(chinfo *const *)x, *b = *(chinfo *const *)y;
    if (a->forced != b->forced) return a->forced ? -1 : 1;
    if (a->count != b->count) return a->count > b->count ? -1 : 1;
    return a->key < b->key ? -1 : a->key > b->key;
}

typedef struct apiece {
    char s[8];
    uint8_t len;
    uint32_t ch;  /* chinfo index */
    uint8_t cont; /* "##c" */
} apiece;

static int apiece_cmp(const void *x, const void *y)
{
    const apiece *a = x, *b = y;
    return bytes_cmp(a->s, a->len, b->s, b->len);
}

static uint32_t char_key(const unsigned char *s, size_t n)
{
    uint32_t k = 0;
    for (size_t i = 0; i < 4; i++) k = k << 8 | (i < n ? s[i] : 0);
    return k;
}

static size_t key_bytes(uint32_t key, char out[4])
{
    size_t n = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = (unsigned char)(key >> (24 - 8 * i));
        if (i > 0 && c == 0) break;
        out[n++] = (char)c;
    }
    return n;
}

/* The chars seen: (n, cap) infos and an open-addressing table of their
 * indices (nslot, a power of 2, load <= 1/2). */
typedef struct chtab {
    chinfo *ch;
    size_t n, cap;
    uint32_t *slot;
    size_t nslot;
} chtab;

/* Index of the char key in h, added (zeroed) if absent. */
static uint32_t chtab_get(chtab *h, uint32_t key)
{
    size_t mask = h->nslot - 1, k = (size_t)mix64(key) & mask;
    while (h->slot[k] != NIL && h->ch[h->slot[k]].key != key) k = (k + 1) & mask;
    if (h->slot[k] != NIL) return h->slot[k];
    if (h->n == h->cap) {
        h->cap = h->cap ? 2 * h->cap : 256;
        h->ch = xrealloc(h->ch, h->cap * sizeof *h->ch);
    }
    uint32_t id = (uint32_t)h->n++;
    memset(&h->ch[id], 0, sizeof *h->ch);
    h->ch[id].key = key;
    h->slot[k] = id;
    if (2 * h->n > h->nslot) { /* grow the table */
        h->nslot *= 2;
        h->slot = xrealloc(h->slot, h->nslot * sizeof *h->slot);
        memset(h->slot, 0xFF, h->nslot * sizeof *h->slot);
        for (size_t q = 0; q < h->n; q++) {
            size_t z = (size_t)mix64(h->ch[q].key) & (h->nslot - 1);
            while (h->slot[z] != NIL) z = (z + 1) & (h->nslot - 1);
            h->slot[z] = (uint32_t)q;
        }
    }
    return id;
}

/* UTF-8 of the scalar value cp into out; 0 if cp is none (surrogate, > U+10FFFF). */
static size_t cp_utf8(uint32_t cp, unsigned char out[4])
{
    if (cp < 0x80) { out[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | cp >> 6);
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | cp >> 12);
        out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp > 0x10FFFF) return 0;
    out[0] = (unsigned char)(0xF0 | cp >> 18);
    out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

static void tr_free(tr *t)
{
    kbuf_free(&t->pstr);
    free(t->pc);
    free(t->phash);
    free(t->pslot);
    free(t->sym);
    free(t->woff);
    free(t->wlen);
    free(t->wcnt);
    free(t->wstamp);
    free(t->pr);
    free(t->pkey);
    free(t->pidx);
    free(t->pool);
    free(t->heap);
    free(t->touched);
}

int kwp_train(const kwp_counter *c, const kwp_train_opts *o, kbuf *out, char *err, size_t errlen)
{
    if (errlen) err[0] = '\0';
    if (!c || !o || !out) {
        if (errlen) snprintf(err, errlen, "kwp_train: NULL argument");
        return -1;
    }
    if (o->n_initial_alphabet && !o->initial_alphabet) {
        if (errlen) snprintf(err, errlen, "kwp_train: n_initial_alphabet %zu but no alphabet", o->n_initial_alphabet);
        return -1;
    }
    for (size_t i = 0; i < o->n_initial_alphabet; i++) {
        unsigned char u[4];
        if (!cp_utf8(o->initial_alphabet[i], u)) {
            if (errlen)
                snprintf(err, errlen, "initial alphabet: U+%04X is not a Unicode scalar value",
                         (unsigned)o->initial_alphabet[i]);
            return -1;
        }
    }
    if (o->n_special && !o->special) {
        if (errlen) snprintf(err, errlen, "kwp_train: n_special %zu but no special tokens", o->n_special);
        return -1;
    }
    for (size_t i = 0; i < o->n_special; i++) {
        const char *sp = o->special[i];
        if (!sp || !*sp || strpbrk(sp, "\n\r")) {
            if (errlen)
                snprintf(err, errlen, "special token %zu is %s", i,
                         !sp || !*sp ? "empty" : "not one line");
            return -1;
        }
    }
    double t0 = know_seconds();
    tr T;
    tr *t = &T;
    memset(t, 0, sizeof *t);
    t->o = o;
    for (int i = 0; i <= MAXCLS; i++) t->freel[i] = NIL;
    piece_rehash(t, 1024);
    pair_rehash(t, 1024);

    /* 1. words, sorted by bytes */
    size_t nw = c->n, totbytes = 0;
    wref *wr = xmalloc((nw ? nw : 1) * sizeof *wr);
    for (size_t i = 0; i < nw; i++) {
        wr[i].s = c->arena.data + c->ent[i].off;
        wr[i].len = c->ent[i].len;
        wr[i].count = c->ent[i].count;
        totbytes += wr[i].len;
    }
    qsort(wr, nw, sizeof *wr, wref_cmp);

    /* 2. chars: sym[] holds chinfo indices for now */
    t->nw = nw;
    t->sym = xmalloc((totbytes ? totbytes : 1) * sizeof *t->sym);
    t->woff = xmalloc((nw ? nw : 1) * sizeof *t->woff);
    t->wlen = xmalloc((nw ? nw : 1) * sizeof *t->wlen);
    t->wcnt = xmalloc((nw ? nw : 1) * sizeof *t->wcnt);
    t->wstamp = xcalloc(nw ? nw : 1, sizeof *t->wstamp);
    chtab H = {0};
    H.nslot = 1024;
    H.slot = xmalloc(H.nslot * sizeof *H.slot);
    memset(H.slot, 0xFF, H.nslot * sizeof *H.slot);
    for (size_t i = 0; i < o->n_initial_alphabet; i++) {
        unsigned char u[4];
        size_t l = cp_utf8(o->initial_alphabet[i], u);
        uint32_t id = chtab_get(&H, char_key(u, l)); /* before H.ch: it may move */
        chinfo *ci = &H.ch[id];
        ci->forced = 1;
        ci->init = 1;
    }
    size_t nsym = 0;
    for (size_t w = 0; w < nw; w++) {
        const unsigned char *s = (const unsigned char *)wr[w].s;
        size_t n = wr[w].len;
        t->woff[w] = nsym;
        t->wcnt[w] = wr[w].count;
        for (size_t i = 0; i < n;) {
            size_t l = u8_len(s + i, n - i);
            uint32_t id = chtab_get(&H, char_key(s + i, l));
            chinfo *ci = &H.ch[id];
            ci->count = ci->count + wr[w].count < ci->count ? UINT64_MAX : ci->count + wr[w].count;
            if (i == 0 || o->no_prefix) ci->init = 1;
            else ci->cont = 1;
            t->sym[nsym++] = id;
            i += l;
        }
        t->wlen[w] = (uint32_t)(nsym - t->woff[w]);
    }
    free(H.slot);
    free(wr);
    chinfo *ch = H.ch;
    size_t nch = H.n;

    /* alphabet: most frequent limit_alphabet chars */
    chinfo **byf = xmalloc((nch ? nch : 1) * sizeof *byf);
    for (size_t i = 0; i < nch; i++) byf[i] = &ch[i];
    qsort(byf, nch, sizeof *byf, chinfo_by_freq);
    size_t nkeep = o->limit_alphabet && o->limit_alphabet < nch ? o->limit_alphabet : nch;
    for (size_t i = 0; i < nkeep; i++) byf[i]->kept = 1;
    free(byf);

    /* vocab: specials, then the alphabet pieces in byte order */
    int added;
    for (size_t i = 0; i < o->n_special; i++) {
        const char *sp = o->special[i];
        size_t n = strlen(sp), skip = !o->no_prefix && n >= 2 && sp[0] == '#' && sp[1] == '#' ? 2 : 0;
        piece_get(t, sp, n, (uint32_t)u8_count(sp + skip, n - skip), &added);
    }
    size_t nspec = t->npc;
    apiece *ap = xmalloc((nch ? 2 * nch : 1) * sizeof *ap);
    size_t nap = 0, nalpha_chars = 0, nalpha_cont = 0;
    for (size_t i = 0; i < nch; i++) {
        ch[i].id_init = ch[i].id_cont = NONE;
        if (!ch[i].kept) continue;
        char kb[4];
        size_t kl = key_bytes(ch[i].key, kb);
        apiece *x = &ap[nap++];
        memcpy(x->s, kb, kl);
        x->len = (uint8_t)kl;
        x->ch = (uint32_t)i;
        x->cont = 0;
        nalpha_chars++;
        if (ch[i].cont) {
            x = &ap[nap++];
            memcpy(x->s, "##", 2);
            memcpy(x->s + 2, kb, kl);
            x->len = (uint8_t)(kl + 2);
            x->ch = (uint32_t)i;
            x->cont = 1;
            nalpha_cont++;
        }
    }
    qsort(ap, nap, sizeof *ap, apiece_cmp);
    for (size_t i = 0; i < nap; i++) {
        uint32_t id = piece_get(t, ap[i].s, ap[i].len, 1, &added);
        if (ap[i].cont) ch[ap[i].ch].id_cont = id;
        else ch[ap[i].ch].id_init = id;
    }
    free(ap);
    size_t nvocab0 = t->npc;
    if (o->vocab_size < nvocab0) {
        if (errlen)
            snprintf(err, errlen,
                     "vocab_size %zu is smaller than the initial vocabulary of %zu pieces: %zu special "
                     "tokens + %zu alphabet pieces (%zu characters + %zu \"##\" continuation forms%s)",
                     o->vocab_size, nvocab0, nspec, nvocab0 - nspec, nalpha_chars, nalpha_cont,
                     nalpha_chars + nalpha_cont != nvocab0 - nspec ? ", less those equal to a special"
                                                                   : "");
        free(ch);
        tr_free(t);
        return -1;
    }

    /* 3. symbols: chinfo index -> piece id */
    for (size_t w = 0; w < nw; w++) {
        uint32_t *x = t->sym + t->woff[w];
        for (size_t i = 0; i < t->wlen[w]; i++) {
            const chinfo *ci = &ch[x[i]];
            x[i] = i == 0 || o->no_prefix ? ci->id_init : ci->id_cont;
        }
    }
    free(ch);

    /* 4. pair counts (step 0: nothing goes to the touched list) */
    for (size_t w = 0; w < nw; w++) {
        const uint32_t *x = t->sym + t->woff[w];
        for (size_t i = 0; i + 1 < t->wlen[w]; i++)
            if (x[i] != NONE && x[i + 1] != NONE) pair_inc(t, x[i], x[i + 1], (uint32_t)w, t->wcnt[w]);
    }
    for (size_t p = 0; p < t->npr; p++)
        if (t->pr[p].count) heap_push(t, t->pr[p].count, (uint32_t)p);
    size_t npairs0 = t->npr;

    /* 5-6. merges */
    uint64_t minf = o->min_frequency ? o->min_frequency : 1;
    size_t total = o->vocab_size - nvocab0, done = 0, merges = 0;
    while (t->npc < o->vocab_size) {
        int found = 0;
        hent top = {0, 0};
        while (t->nheap) {
            top = heap_pop(t);
            uint64_t cur = t->pr[top.pair].count;
            if (cur == top.count) {
                found = 1;
                break;
            }
            if (cur && cur < top.count) heap_push(t, cur, top.pair);
        }
        if (!found || top.count < minf) break;
        merges++;
        if (do_merge(t, top.pair)) {
            done++;
            if (o->progress) o->progress(done, total, o->progress_ctx);
        }
    }

    kbuf_reserve(out, t->pstr.len + t->npc);
    for (size_t i = 0; i < t->npc; i++) {
        kbuf_append(out, pstr(t, (uint32_t)i), t->pc[i].len);
        kbuf_putc(out, '\n');
    }
    kdebug("wptrain: %zu words, %zu specials + %zu alphabet pieces, %zu merges -> %zu pieces "
           "(%zu initial pairs, %zu pairs seen, %zu pool words, %zu heap entries) in %.2f s",
           nw, nspec, nvocab0 - nspec, merges, t->npc, npairs0, t->npr, t->npool, t->nheap,
           know_seconds() - t0);
    tr_free(t);
    return 0;
}
