/* bpe.c: GPT-2's byte-level BPE (see bpe.h): vocabulary and merges loading,
 * the pre-tokenizer, merging by rank with a heap, a per-thread word cache,
 * exact decoding.
 *
 * References: OpenAI's gpt-2 src/encoder.py (bytes_to_unicode, the pattern,
 * bpe()) and transformers' GPT2Tokenizer, which does the same plus the
 * "<|endoftext|>" special token. Their pattern runs on the `regex` module:
 * \p{L} / \p{N} are general categories L* / N*, \s is the White_Space
 * property (25 code points); ICU 72 and regex 2022.10 both know Unicode 15. */
#include "text/bpe.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unicode/uchar.h>
#include <xxhash.h>

/* ---- bytes_to_unicode ----------------------------------------------------------------------- */

/* Bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for themselves; the other
 * 68 bytes, in order, for U+0100.. . */
uint32_t kbpe_byte_char(unsigned char b)
{
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
    uint32_t k = 0;
    for (unsigned x = 0; x < b; x++)
        if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE)) k++;
    return 256 + k;
}

/* ---- vocabulary --------------------------------------------------------------------------- */

typedef struct pair_slot {
    uint64_t key;     /* (left + 1) << 32 | (right + 1); 0 = empty */
    uint32_t rank;
    uint32_t merged;  /* id of left + right */
} pair_slot;

struct kbpe_vocab {
    char *arena;        /* every token: file form, then byte form */
    size_t *foff, *flen;/* (size) file form of id i: arena[foff[i] .. + flen[i]); flen = SIZE_MAX: no token */
    size_t *boff, *blen;/* (size) byte form (what decode writes) */
    size_t size;        /* largest id + 1 */
    uint32_t *slot;     /* (mask + 1) token lookup by file form: id + 1, 0 = empty */
    uint64_t mask;
    pair_slot *pairs;   /* (pmask + 1) merges by pair */
    uint64_t pmask;
    uint32_t (*merges)[2]; /* (nmerges) left, right in rank order */
    size_t nmerges;
    uint32_t byte_id[256];
    int64_t eot;
};

static int64_t vocab_lookup(const kbpe_vocab *v, const char *s, size_t n)
{
    uint64_t i = XXH3_64bits(s, n) & v->mask;
    for (;; i = (i + 1) & v->mask) {
        uint32_t sl = v->slot[i];
        if (!sl) return -1;
        uint32_t id = sl - 1;
        if (v->flen[id] == n && memcmp(v->arena + v->foff[id], s, n) == 0) return id;
    }
}

static pair_slot *pair_find(const kbpe_vocab *v, uint32_t a, uint32_t b, int insert)
{
    uint64_t key = ((uint64_t)(a + 1) << 32) | (uint64_t)(b + 1);
    uint64_t i = XXH3_64bits(&key, sizeof key) & v->pmask;
    for (;; i = (i + 1) & v->pmask) {
        pair_slot *p = &v->pairs[i];
        if (p->key == key) return p;
        if (!p->key) {
            if (!insert) return NULL;
            p->key = key;
            return p;
        }
    }
}

void kbpe_vocab_free(kbpe_vocab *v)
{
    if (!v) return;
    free(v->arena);
    free(v->foff);
    free(v->flen);
    free(v->boff);
    free(v->blen);
    free(v->slot);
    free(v->pairs);
    free(v->merges);
    free(v);
}

/* The byte form of a token in the byte-level alphabet: each code point back
 * to its byte; a code point outside the alphabet (a hand-added token) keeps
 * its UTF-8. */
static void byte_form(const char *s, size_t n, const uint32_t *inv, kbuf *out)
{
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    while (p < e) {
        uint32_t cp;
        int bad;
        size_t k = kutf8_decode(p, e, &cp, &bad);
        if (!bad && cp < 324 && inv[cp] < 256) kbuf_putc(out, (char)inv[cp]);
        else kbuf_append(out, p, k);
        p += k;
    }
}

int kbpe_vocab_load(const char *vocab_json, size_t vlen, const char *merges, size_t mlen,
                    kbpe_vocab **out, char *err, size_t errlen)
{
    *out = NULL;
    json_error_t je;
    json_t *root = json_loadb(vocab_json, vlen, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        kseterr(err, errlen, "vocab JSON, line %d column %d: %s", je.line, je.column, je.text);
        return -1;
    }
    if (!json_is_object(root) || json_object_size(root) == 0) {
        kseterr(err, errlen, "vocab JSON: expected an object of token -> id");
        json_decref(root);
        return -1;
    }
    size_t maxid = 0, n = json_object_size(root);
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        json_int_t id = json_is_integer(val) ? json_integer_value(val) : -1;
        if (id < 0 || id >= ((json_int_t)1 << 31)) {
            kseterr(err, errlen, "vocab JSON: token \"%.60s\": the id must be an integer in [0, 2^31)", key);
            json_decref(root);
            return -1;
        }
        if ((size_t)id >= n) {
            /* dense ids only: a hostile id would size every per-id array (and a
             * model's embedding table) by itself */
            kseterr(err, errlen,
                    "vocab JSON: token \"%.60s\" has the id %lld, but %zu tokens must have the ids 0 to %zu "
                    "(no gaps)", key, (long long)id, n, n - 1);
            json_decref(root);
            return -1;
        }
        if ((size_t)id > maxid) maxid = (size_t)id;
    }
    kbpe_vocab *v = xcalloc(1, sizeof *v);
    v->size = maxid + 1;
    v->foff = xcalloc(v->size, sizeof *v->foff);
    v->flen = xcalloc(v->size, sizeof *v->flen);
    v->boff = xcalloc(v->size, sizeof *v->boff);
    v->blen = xcalloc(v->size, sizeof *v->blen);
    for (size_t i = 0; i < v->size; i++) v->flen[i] = SIZE_MAX;
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)n + 16) cap <<= 1;
    v->slot = xcalloc(cap, sizeof *v->slot);
    v->mask = cap - 1;
    uint32_t inv[324];
    for (unsigned c = 0; c < 324; c++) inv[c] = 256;
    for (unsigned b = 0; b < 256; b++) inv[kbpe_byte_char((unsigned char)b)] = b;

    kbuf ar = {0};
    json_object_foreach(root, key, val) {
        size_t id = (size_t)json_integer_value(val);
        if (v->flen[id] != SIZE_MAX) {
            kseterr(err, errlen, "vocab JSON: id %zu is given to two tokens (\"%.60s\" and another)", id, key);
            goto fail;
        }
        size_t kl = strlen(key);
        if (kl == 0) {
            kseterr(err, errlen, "vocab JSON: an empty token (id %zu)", id);
            goto fail;
        }
        v->foff[id] = ar.len;
        v->flen[id] = kl;
        kbuf_append(&ar, key, kl);
        v->boff[id] = ar.len;
        byte_form(key, kl, inv, &ar);
        v->blen[id] = ar.len - v->boff[id];
    }
    json_decref(root);
    root = NULL;
    v->arena = ar.data;
    ar.data = NULL;
    for (size_t id = 0; id < v->size; id++) {
        if (v->flen[id] == SIZE_MAX) continue;
        uint64_t i = XXH3_64bits(v->arena + v->foff[id], v->flen[id]) & v->mask;
        while (v->slot[i]) i = (i + 1) & v->mask;
        v->slot[i] = (uint32_t)id + 1;
    }
    for (unsigned b = 0; b < 256; b++) {
        /* the byte's code point is below U+0800: one or two UTF-8 bytes */
        uint32_t cp = kbpe_byte_char((unsigned char)b);
        char u[2] = {(char)cp, 0};
        size_t ul = 1;
        if (cp >= 0x80) {
            u[0] = (char)(0xC0 | (cp >> 6));
            u[1] = (char)(0x80 | (cp & 0x3F));
            ul = 2;
        }
        int64_t id = vocab_lookup(v, u, ul);
        if (id < 0) {
            kseterr(err, errlen, "vocab JSON: no token for the byte 0x%02X (every byte needs one in a byte-level vocabulary)", b);
            goto fail;
        }
        v->byte_id[b] = (uint32_t)id;
    }
    v->eot = vocab_lookup(v, KBPE_EOT, strlen(KBPE_EOT));

    /* merges */
    size_t lines = 1;
    for (size_t i = 0; i < mlen; i++) lines += merges[i] == '\n';
    v->merges = xcalloc(lines, sizeof *v->merges);
    cap = 16;
    while (cap < 2 * (uint64_t)lines + 16) cap <<= 1;
    v->pairs = xcalloc(cap, sizeof *v->pairs);
    v->pmask = cap - 1;
    kbuf cat = {0};
    size_t lineno = 0;
    for (size_t p = 0; p < mlen;) {
        const char *ls = merges + p;
        const char *nl = memchr(ls, '\n', mlen - p);
        size_t ll = nl ? (size_t)(nl - ls) : mlen - p;
        p += ll + (nl != NULL);
        lineno++;
        if (ll && ls[ll - 1] == '\r') ll--;
        if (ll == 0) continue;
        if (lineno == 1 && ll >= 8 && memcmp(ls, "#version", 8) == 0) continue;
        const char *sp = memchr(ls, ' ', ll);
        if (!sp || sp == ls || sp == ls + ll - 1 || memchr(sp + 1, ' ', (size_t)(ls + ll - sp - 1))) {
            kseterr(err, errlen, "merges, line %zu: expected two tokens separated by one space", lineno);
            kbuf_free(&cat);
            goto fail;
        }
        size_t al = (size_t)(sp - ls), bl = ll - al - 1;
        int64_t a = vocab_lookup(v, ls, al), b = vocab_lookup(v, sp + 1, bl);
        kbuf_clear(&cat);
        kbuf_append(&cat, ls, al);
        kbuf_append(&cat, sp + 1, bl);
        int64_t m = vocab_lookup(v, cat.data, cat.len);
        if (a < 0 || b < 0 || m < 0) {
            kseterr(err, errlen, "merges, line %zu: \"%.*s\" is not in the vocabulary", lineno,
                    a < 0 ? (int)(al > 60 ? 60 : al) : b < 0 ? (int)(bl > 60 ? 60 : bl) : (int)(cat.len > 60 ? 60 : cat.len),
                    a < 0 ? ls : b < 0 ? sp + 1 : cat.data);
            kbuf_free(&cat);
            goto fail;
        }
        pair_slot *ps = pair_find(v, (uint32_t)a, (uint32_t)b, 1);
        ps->rank = (uint32_t)v->nmerges; /* a repeated merge: the last rank wins */
        ps->merged = (uint32_t)m;
        v->merges[v->nmerges][0] = (uint32_t)a;
        v->merges[v->nmerges][1] = (uint32_t)b;
        v->nmerges++;
    }
    kbuf_free(&cat);
    *out = v;
    return 0;
fail:
    json_decref(root);
    kbuf_free(&ar);
    kbpe_vocab_free(v);
    return -1;
}

size_t kbpe_vocab_size(const kbpe_vocab *v) { return v->size; }
size_t kbpe_vocab_nmerges(const kbpe_vocab *v) { return v->nmerges; }
int64_t kbpe_vocab_eot(const kbpe_vocab *v) { return v->eot; }

const char *kbpe_vocab_piece(const kbpe_vocab *v, uint32_t id, size_t *len)
{
    if (id >= v->size || v->flen[id] == SIZE_MAX) return NULL;
    *len = v->flen[id];
    return v->arena + v->foff[id];
}

int64_t kbpe_vocab_id(const kbpe_vocab *v, const char *piece, size_t len)
{
    return vocab_lookup(v, piece, len);
}

void kbpe_vocab_json(const kbpe_vocab *v, kbuf *out)
{
    kbuf_putc(out, '{');
    int first = 1;
    for (size_t id = 0; id < v->size; id++) {
        if (v->flen[id] == SIZE_MAX) continue;
        if (!first) kbuf_puts(out, ", ");
        first = 0;
        kbuf_json_str(out, v->arena + v->foff[id], v->flen[id]);
        kbuf_printf(out, ": %zu", id);
    }
    kbuf_puts(out, "}\n");
}

void kbpe_merges_text(const kbpe_vocab *v, kbuf *out)
{
    kbuf_puts(out, "#version: 0.2\n");
    for (size_t r = 0; r < v->nmerges; r++) {
        uint32_t a = v->merges[r][0], b = v->merges[r][1];
        kbuf_append(out, v->arena + v->foff[a], v->flen[a]);
        kbuf_putc(out, ' ');
        kbuf_append(out, v->arena + v->foff[b], v->flen[b]);
        kbuf_putc(out, '\n');
    }
}

size_t kbpe_decode(const kbpe_vocab *v, const uint32_t *ids, size_t n, kbuf *out)
{
    size_t unknown = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t id = ids[i];
        if (id >= v->size || v->flen[id] == SIZE_MAX) { unknown++; continue; }
        kbuf_append(out, v->arena + v->boff[id], v->blen[id]);
    }
    return unknown;
}

/* ---- tokenizer ------------------------------------------------------------------------------ */

/* Encoded words: key bytes and ids in arenas, found by an open-addressing
 * table; emptied when it holds CACHE_MAX words or CACHE_BYTES bytes. */
#define CACHE_MAX 65536
#define CACHE_BYTES (8u << 20)
#define CACHE_WORD_MAX 256 /* longer pre-tokens are not cached */

typedef struct centry {
    uint64_t h;
    uint32_t koff, klen, ioff, nids; /* klen 0 = empty slot */
} centry;

typedef struct hnode {
    uint32_t rank, pos, left, right;
} hnode;

struct kbpe_tok {
    const kbpe_vocab *v;
    kbuf fixed;           /* the segment with ill-formed UTF-8 repaired */
    uint32_t *cp;         /* (cap) code points of the segment */
    uint8_t *cl;          /* (cap) their classes */
    size_t *off;          /* (cap + 1) byte offsets */
    size_t cap;
    /* merging */
    uint32_t *sid;        /* (scap) symbol ids */
    int32_t *prev, *next; /* (scap) links; sid = UINT32_MAX: merged away */
    hnode *heap;          /* (hcap) */
    size_t scap, hcap;
    /* cache */
    centry *ctab;         /* (cslots) open addressing, grown by doubling up to 2 * CACHE_MAX */
    size_t cslots, cn;
    kbuf ckeys;
    uint32_t *cids;       /* (cidcap) */
    size_t cidn, cidcap;
};

enum { C_O = 0, C_L = 1, C_N = 2, C_S = 3 };

static int is_white(uint32_t c)
{
    /* White_Space (PropList.txt, Unicode 15): what \s matches in `regex` */
    return (c >= 9 && c <= 13) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

static uint8_t cp_class(uint32_t c)
{
    if (is_white(c)) return C_S;
    uint32_t m = (uint32_t)U_GET_GC_MASK((UChar32)c);
    if (m & U_GC_L_MASK) return C_L;
    if (m & U_GC_N_MASK) return C_N;
    return C_O;
}

kbpe_tok *kbpe_tok_new(const kbpe_vocab *v)
{
    kbpe_tok *t = xcalloc(1, sizeof *t);
    t->v = v;
    return t;
}

void kbpe_tok_free(kbpe_tok *t)
{
    if (!t) return;
    kbuf_free(&t->fixed);
    free(t->cp);
    free(t->cl);
    free(t->off);
    free(t->sid);
    free(t->prev);
    free(t->next);
    free(t->heap);
    free(t->ctab);
    kbuf_free(&t->ckeys);
    free(t->cids);
    free(t);
}

/* Decodes s[0..n) (valid UTF-8) into t->cp / cl / off; returns the count. */
static size_t decode_cps(kbpe_tok *t, const char *s, size_t n)
{
    if (n + 1 > t->cap) {
        size_t c = t->cap ? t->cap : 256;
        while (c < n + 1) c *= 2;
        t->cp = xrealloc(t->cp, c * sizeof *t->cp);
        t->cl = xrealloc(t->cl, c * sizeof *t->cl);
        t->off = xrealloc(t->off, (c + 1) * sizeof *t->off);
        t->cap = c;
    }
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    size_t m = 0;
    while (p < e) {
        uint32_t c;
        int bad;
        size_t k;
        if (*p < 0x80) {
            c = *p;
            k = 1;
            t->cl[m] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ? C_L
                     : (c >= '0' && c <= '9')                             ? C_N
                     : is_white(c)                                        ? C_S
                                                                          : C_O;
        } else {
            k = kutf8_decode(p, e, &c, &bad);
            t->cl[m] = cp_class(c);
        }
        t->cp[m] = c;
        t->off[m] = (size_t)(p - (const unsigned char *)s);
        m++;
        p += k;
    }
    t->off[m] = n;
    return m;
}

/* The end (code point index) of the pre-token starting at i of cp[0..m). */
static size_t pretoken_end(const uint32_t *cp, const uint8_t *cl, size_t i, size_t m)
{
    uint32_t c = cp[i];
    if (c == '\'' && i + 1 < m) {
        uint32_t d = cp[i + 1];
        if (d == 's' || d == 't' || d == 'm' || d == 'd') return i + 2;
        if (i + 2 < m) {
            uint32_t e = cp[i + 2];
            if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l')) return i + 3;
        }
    }
    /* ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: the optional space first */
    int sp = c == ' ' && i + 1 < m && cl[i + 1] != C_S;
    size_t j = sp ? i + 1 : i;
    uint8_t k = cl[j];
    if (k != C_S) {
        while (j < m && cl[j] == k) j++;
        return j;
    }
    /* `\s+(?!\S)`, then `\s+` */
    while (j < m && cl[j] == C_S) j++;
    if (j == m || j - i < 2) return j;
    return j - 1;
}

void kbpe_pretokenize(kbpe_tok *t, const char *s, size_t n,
                      void (*cb)(const char *tok, size_t len, void *ctx), void *ctx)
{
    if (!kutf8_valid(s, n)) {
        kbuf_clear(&t->fixed);
        kbuf_put_utf8(&t->fixed, s, n, 0);
        s = t->fixed.data;
        n = t->fixed.len;
    }
    size_t m = decode_cps(t, s, n);
    for (size_t i = 0; i < m;) {
        size_t e = pretoken_end(t->cp, t->cl, i, m);
        cb(s + t->off[i], t->off[e] - t->off[i], ctx);
        i = e;
    }
}

/* ---- merging ---- */

static int hless(const hnode *a, const hnode *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void hpush(kbpe_tok *t, size_t *hn, hnode x)
{
    if (*hn == t->hcap) {
        t->hcap = t->hcap ? 2 * t->hcap : 64;
        t->heap = xrealloc(t->heap, t->hcap * sizeof *t->heap);
    }
    size_t i = (*hn)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hless(&x, &t->heap[p])) break;
        t->heap[i] = t->heap[p];
        i = p;
    }
    t->heap[i] = x;
}

static hnode hpop(kbpe_tok *t, size_t *hn)
{
    hnode top = t->heap[0], x = t->heap[--*hn];
    size_t i = 0, n = *hn;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && hless(&t->heap[c + 1], &t->heap[c])) c++;
        if (!hless(&t->heap[c], &x)) break;
        t->heap[i] = t->heap[c];
        i = c;
    }
    if (n) t->heap[i] = x;
    return top;
}

static void push_pair(kbpe_tok *t, size_t *hn, int32_t i)
{
    int32_t j = t->next[i];
    if (j < 0) return;
    const pair_slot *p = pair_find(t->v, t->sid[i], t->sid[j], 0);
    if (p) hpush(t, hn, (hnode){p->rank, (uint32_t)i, t->sid[i], t->sid[j]});
}

/* BPE of the bytes w[0..n) (n >= 1); appends the ids to out (ids only). */
static size_t bpe_word(kbpe_tok *t, const unsigned char *w, size_t n, uint32_t **ids, size_t *nids, size_t *idcap)
{
    if (n > t->scap) {
        size_t c = t->scap ? t->scap : 64;
        while (c < n) c *= 2;
        t->sid = xrealloc(t->sid, c * sizeof *t->sid);
        t->prev = xrealloc(t->prev, c * sizeof *t->prev);
        t->next = xrealloc(t->next, c * sizeof *t->next);
        t->scap = c;
    }
    for (size_t i = 0; i < n; i++) {
        t->sid[i] = t->v->byte_id[w[i]];
        t->prev[i] = (int32_t)i - 1;
        t->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    size_t hn = 0;
    for (size_t i = 0; i + 1 < n; i++) push_pair(t, &hn, (int32_t)i);
    while (hn) {
        hnode x = hpop(t, &hn);
        int32_t i = (int32_t)x.pos, j;
        if (t->sid[i] != x.left || (j = t->next[i]) < 0 || t->sid[j] != x.right) continue;
        const pair_slot *p = pair_find(t->v, x.left, x.right, 0);
        if (!p || p->rank != x.rank) continue;
        t->sid[i] = p->merged;
        t->sid[j] = UINT32_MAX;
        t->next[i] = t->next[j];
        if (t->next[j] >= 0) t->prev[t->next[j]] = i;
        if (t->prev[i] >= 0) push_pair(t, &hn, t->prev[i]);
        push_pair(t, &hn, i);
    }
    size_t k = 0;
    for (int32_t i = 0; i >= 0; i = t->next[i]) {
        if (*nids == *idcap) {
            *idcap = *idcap ? 2 * *idcap : 64;
            *ids = xrealloc(*ids, *idcap * sizeof **ids);
        }
        (*ids)[(*nids)++] = t->sid[i];
        k++;
    }
    return k;
}

static void out_push(kwp_ids *out, uint32_t id, uint8_t ws)
{
    if (out->n == out->cap) {
        out->cap = out->cap ? 2 * out->cap : 256;
        out->ids = xrealloc(out->ids, out->cap * sizeof *out->ids);
        out->word_start = xrealloc(out->word_start, out->cap * sizeof *out->word_start);
    }
    out->ids[out->n] = id;
    out->word_start[out->n] = ws;
    out->n++;
}

static void cache_clear(kbpe_tok *t)
{
    memset(t->ctab, 0, t->cslots * sizeof *t->ctab);
    t->cn = 0;
    kbuf_clear(&t->ckeys);
    t->cidn = 0;
}

/* Room for one more word: the table starts at 1,024 slots and doubles while
 * more than half full, up to 2 * CACHE_MAX slots. */
static void cache_grow(kbpe_tok *t)
{
    if (t->cslots && 2 * (t->cn + 1) <= t->cslots) return;
    if (t->cslots >= 2 * (size_t)CACHE_MAX) return;
    size_t ns = t->cslots ? 2 * t->cslots : 1024;
    centry *nt = xcalloc(ns, sizeof *nt);
    for (size_t i = 0; i < t->cslots; i++) {
        if (!t->ctab[i].klen) continue;
        size_t j = t->ctab[i].h & (ns - 1);
        while (nt[j].klen) j = (j + 1) & (ns - 1);
        nt[j] = t->ctab[i];
    }
    free(t->ctab);
    t->ctab = nt;
    t->cslots = ns;
}

/* Encodes one pre-token w[0..n), through the cache. */
static void encode_word(kbpe_tok *t, const char *w, size_t n, kwp_ids *out)
{
    if (n > CACHE_WORD_MAX) {
        size_t s = t->cidn;
        bpe_word(t, (const unsigned char *)w, n, &t->cids, &t->cidn, &t->cidcap);
        for (size_t k = s; k < t->cidn; k++) out_push(out, t->cids[k], k == s);
        t->cidn = s;
        return;
    }
    uint64_t h = XXH3_64bits(w, n);
    cache_grow(t);
    uint64_t mask = t->cslots - 1, i = h & mask;
    for (;; i = (i + 1) & mask) {
        centry *e = &t->ctab[i];
        if (!e->klen) break;
        if (e->h == h && e->klen == n && memcmp(t->ckeys.data + e->koff, w, n) == 0) {
            for (uint32_t k = 0; k < e->nids; k++) out_push(out, t->cids[e->ioff + k], k == 0);
            return;
        }
    }
    if (t->cn >= CACHE_MAX || t->ckeys.len + n > CACHE_BYTES) {
        cache_clear(t);
        i = h & mask;
    }
    size_t s = t->cidn;
    size_t k = bpe_word(t, (const unsigned char *)w, n, &t->cids, &t->cidn, &t->cidcap);
    for (size_t q = 0; q < k; q++) out_push(out, t->cids[s + q], q == 0);
    centry *e = &t->ctab[i];
    e->h = h;
    e->koff = (uint32_t)t->ckeys.len;
    e->klen = (uint32_t)n;
    e->ioff = (uint32_t)s;
    e->nids = (uint32_t)k;
    kbuf_append(&t->ckeys, w, n);
    t->cn++;
}

/* Pre-tokenizes and encodes a segment without "<|endoftext|>". */
typedef struct seg_ctx {
    kbpe_tok *t;
    kwp_ids *out;
} seg_ctx;

static void encode_pretoken(const char *w, size_t n, void *ctx)
{
    seg_ctx *c = ctx;
    encode_word(c->t, w, n, c->out);
}

static void encode_segment(kbpe_tok *t, const char *s, size_t n, kwp_ids *out)
{
    seg_ctx c = {t, out};
    kbpe_pretokenize(t, s, n, encode_pretoken, &c);
}

size_t kbpe_encode(kbpe_tok *t, const char *s, size_t n, kwp_ids *out)
{
    size_t before = out->n;
    const size_t el = strlen(KBPE_EOT);
    size_t start = 0;
    if (t->v->eot >= 0) {
        for (size_t i = 0; i + el <= n;) {
            const char *p = memchr(s + i, '<', n - i);
            if (!p || (size_t)(p - s) + el > n) break;
            i = (size_t)(p - s);
            if (memcmp(p, KBPE_EOT, el) == 0) {
                if (i > start) encode_segment(t, s + start, i - start, out);
                out_push(out, (uint32_t)t->v->eot, 1);
                i += el;
                start = i;
            } else {
                i++;
            }
        }
    }
    if (n > start) encode_segment(t, s + start, n - start, out);
    return out->n - before;
}
