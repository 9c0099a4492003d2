/* wordpiece.c: BERT's BasicTokenizer + WordPiece (see wordpiece.h), ICU
 * word starts, and the accent-stripping census.
 *
 * The reference is transformers' slow BertTokenizer. For a text:
 *  1. literal special tokens ([PAD] [UNK] [CLS] [SEP] [MASK], exact case) are
 *     cut out and kept whole;
 *  2. each other segment, code point by code point: U+0000, U+FFFD and
 *     category C* (but \t \n \r) are dropped; \t \n \r and Zs become token
 *     boundaries, as do U+2028/U+2029 (Python's str.split() splits on them);
 *     a CJK ideograph is a token of its own;
 *  3. each whitespace token: if uncased, each code point lowercased alone
 *     (transformers lowercases one character at a time before its basic
 *     tokenizer: no final-sigma context); NFC; if uncased, full lowercasing
 *     of the token (ICU root locale = Python's str.lower()); if accents are
 *     stripped (uncased by default, or strip_accents = true), NFD and drop
 *     Mn; then every punctuation character (ASCII 33-47, 58-64, 91-96,
 *     123-126, or category P*) becomes a token of its own;
 *  4. each basic token: more than max_word_chars code points -> [UNK]; else
 *     greedy longest match first, "##" on continuations; no match anywhere
 *     -> the whole token is [UNK].
 * Unicode version: the reference runs on Python's unicodedata (14.0 for
 * Python 3.11, Debian 12's); ICU 72 knows Unicode 15.0. Characters assigned
 * after 14.0 are treated as unassigned (category Cn: dropped) to give the
 * reference's ids (KWP_UNICODE_AGE below).
 * Fast path: a whitespace token of printable ASCII never touches ICU.
 *
 * ICU word starts (KWP_ICU_WORDS): while tokenizing, the source byte offset
 * of every code point of a whitespace token is kept (cpoff), each basic
 * token knows the offsets of its code points when normalization kept their
 * number (woff), and each token appended gets the offset of its first
 * character (tokoff: -1 unknown, -2 a literal special token). Then ICU's
 * word break iterator runs over the whole text, and a token with a known
 * offset starts a word exactly when a boundary is there. */
#include "text/wordpiece.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unicode/ubrk.h>
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/uscript.h>
#include <unicode/ustring.h>
#include <xxhash.h>

#define KWP_UNICODE_AGE_MAJOR 14 /* Python 3.11's unicodedata */

/* ---- vocabulary ---------------------------------------------------------------- */

typedef struct htab {
    uint32_t *slot;  /* (mask + 1) id + 1, 0 = empty */
    uint64_t mask;
} htab;

struct kwp_vocab {
    char *arena;           /* all pieces, back to back */
    size_t *off;           /* (n + 1) piece i = arena[off[i] .. off[i+1]) */
    size_t n;
    int mode;              /* KWP_* bits as loaded */
    int cased;             /* mode & KWP_CASED */
    int strip;             /* accents stripped (effective strip_accents) */
    htab whole;            /* every piece, by its full text */
    htab cont;             /* "##x" pieces, by x */
    int64_t special[KWP_NSPECIAL];
    size_t max_piece;      /* longest piece in bytes (without "##") */
};

static uint64_t hbytes(const char *s, size_t n) { return XXH3_64bits(s, n); }

static void htab_init(htab *h, size_t n)
{
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)n + 16) cap <<= 1;
    h->slot = xcalloc(cap, sizeof *h->slot);
    h->mask = cap - 1;
}

/* Inserts id under key; a later id replaces an earlier one with the same key
 * (as transformers' load_vocab: the last duplicate wins). */
static void htab_put(htab *h, const kwp_vocab *v, const char *key, size_t n, int skip, uint32_t id)
{
    uint64_t i = hbytes(key, n) & h->mask;
    for (;; i = (i + 1) & h->mask) {
        uint32_t s = h->slot[i];
        if (!s) { h->slot[i] = id + 1; return; }
        size_t len = v->off[s] - v->off[s - 1] - (size_t)skip;
        if (len == n && memcmp(v->arena + v->off[s - 1] + skip, key, n) == 0) {
            h->slot[i] = id + 1;
            return;
        }
    }
}

static int64_t htab_get(const htab *h, const kwp_vocab *v, const char *key, size_t n, int skip)
{
    uint64_t i = hbytes(key, n) & h->mask;
    for (;; i = (i + 1) & h->mask) {
        uint32_t s = h->slot[i];
        if (!s) return -1;
        size_t len = v->off[s] - v->off[s - 1] - (size_t)skip;
        if (len == n && memcmp(v->arena + v->off[s - 1] + skip, key, n) == 0) return s - 1;
    }
}

int kwp_vocab_load(const char *text, size_t len, int mode, kwp_vocab **out, char *err,
                   size_t errlen)
{
    *out = NULL;
    if ((mode & ~(KWP_CASED | KWP_STRIP_ACCENTS | KWP_KEEP_ACCENTS | KWP_ICU_WORDS)) ||
        ((mode & KWP_STRIP_ACCENTS) && (mode & KWP_KEEP_ACCENTS))) {
        snprintf(err, errlen, "bad tokenizer mode %d (strip and keep accents at once?)", mode);
        return -1;
    }
    int cased = mode & KWP_CASED;
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    if (len && text[len - 1] != '\n') lines++;
    if (lines == 0) { snprintf(err, errlen, "empty vocabulary"); return -1; }
    if (lines >= ((size_t)1 << 31)) { snprintf(err, errlen, "more than 2^31 pieces"); return -1; }
    kwp_vocab *v = xcalloc(1, sizeof *v);
    v->mode = mode;
    v->cased = cased;
    v->strip = (mode & KWP_STRIP_ACCENTS) ? 1 : (mode & KWP_KEEP_ACCENTS) ? 0 : !cased;
    v->arena = xmalloc(len + 1);
    v->off = xmalloc((lines + 1) * sizeof *v->off);
    size_t a = 0, p = 0;
    v->off[0] = 0;
    while (p < len) {
        const char *nl = memchr(text + p, '\n', len - p);
        size_t e = nl ? (size_t)(nl - text) : len;
        size_t k = e;
        if (k > p && text[k - 1] == '\r') k--;
        memcpy(v->arena + a, text + p, k - p);
        a += k - p;
        v->off[++v->n] = a;
        p = e + 1;
    }
    htab_init(&v->whole, v->n);
    htab_init(&v->cont, v->n);
    for (size_t i = 0; i < v->n; i++) {
        const char *s = v->arena + v->off[i];
        size_t n = v->off[i + 1] - v->off[i];
        htab_put(&v->whole, v, s, n, 0, (uint32_t)i);
        if (n > 2 && s[0] == '#' && s[1] == '#') {
            htab_put(&v->cont, v, s + 2, n - 2, 2, (uint32_t)i);
            if (n - 2 > v->max_piece) v->max_piece = n - 2;
        } else if (n > v->max_piece) {
            v->max_piece = n;
        }
    }
    static const char *names[KWP_NSPECIAL] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (int i = 0; i < KWP_NSPECIAL; i++)
        v->special[i] = htab_get(&v->whole, v, names[i], strlen(names[i]), 0);
    if (v->special[KWP_UNK] < 0) {
        snprintf(err, errlen, "the vocabulary has no [UNK] piece");
        kwp_vocab_free(v);
        return -1;
    }
    *out = v;
    return 0;
}

void kwp_vocab_free(kwp_vocab *v)
{
    if (!v) return;
    free(v->arena);
    free(v->off);
    free(v->whole.slot);
    free(v->cont.slot);
    free(v);
}

size_t kwp_vocab_size(const kwp_vocab *v) { return v->n; }
int kwp_vocab_cased(const kwp_vocab *v) { return v->cased; }
int kwp_vocab_strip_accents(const kwp_vocab *v) { return v->strip; }
int kwp_vocab_mode(const kwp_vocab *v) { return v->mode; }
int64_t kwp_vocab_special(const kwp_vocab *v, int which) { return v->special[which]; }

const char *kwp_vocab_piece(const kwp_vocab *v, uint32_t id, size_t *len)
{
    if (id >= v->n) return NULL;
    *len = v->off[id + 1] - v->off[id];
    return v->arena + v->off[id];
}

int64_t kwp_vocab_id(const kwp_vocab *v, const char *piece, size_t len)
{
    return htab_get(&v->whole, v, piece, len, 0);
}

int kwp_vocab_is_continuation(const kwp_vocab *v, uint32_t id)
{
    if (id >= v->n) return 0;
    size_t n = v->off[id + 1] - v->off[id];
    const char *s = v->arena + v->off[id];
    return n > 2 && s[0] == '#' && s[1] == '#';
}

void kwp_vocab_text(const kwp_vocab *v, kbuf *out)
{
    for (size_t i = 0; i < v->n; i++) {
        kbuf_append(out, v->arena + v->off[i], v->off[i + 1] - v->off[i]);
        kbuf_putc(out, '\n');
    }
}

/* ---- ids ------------------------------------------------------------------------ */

static void ids_push(kwp_ids *x, uint32_t id, int start)
{
    if (x->n == x->cap) {
        x->cap = x->cap ? x->cap * 2 : 256;
        x->ids = xrealloc(x->ids, x->cap * sizeof *x->ids);
        x->word_start = xrealloc(x->word_start, x->cap);
    }
    x->ids[x->n] = id;
    x->word_start[x->n] = (uint8_t)start;
    x->n++;
}

void kwp_ids_clear(kwp_ids *x) { x->n = 0; }

void kwp_ids_free(kwp_ids *x)
{
    free(x->ids);
    free(x->word_start);
    memset(x, 0, sizeof *x);
}

/* ---- the tokenizer ---------------------------------------------------------------- */

typedef void (*word_fn)(const char *w, size_t n, void *ctx);

struct kwp_tok {
    const kwp_vocab *v;
    size_t max_chars;
    const UNormalizer2 *nfc, *nfd;
    uint32_t *cp;          /* (cp_cap) code points of the current whitespace token */
    size_t ncp, cp_cap;
    int ascii;             /* the current token is all ASCII */
    UChar *u1, *u2;        /* (ucap) UTF-16 scratch */
    int32_t ucap;
    kbuf word;             /* UTF-8 of the current basic token */
    kwp_ids *out;          /* encode: destination */
    size_t before;         /* encode: out->n when the call began */
    /* ICU word starts (KWP_ICU_WORDS; see the file comment) */
    int track;             /* offsets are kept */
    int64_t base;          /* offset of the current segment in the encode call's text */
    int64_t *cpoff;        /* (off_cap) source offset of each code point of the whitespace token */
    size_t off_cap;
    int known;             /* the token's code points map 1:1 to cpoff after normalization */
    const int64_t *woff;   /* source offsets of the current basic token's code points, or NULL */
    int64_t wsrc;          /* source offset of the current basic token, -1 unknown */
    int64_t *tokoff;       /* (tok_cap) per token appended since `before`: offset, -1 unknown, -2 special */
    size_t tok_cap;
    UBreakIterator *brk;   /* word break iterator, root locale */
    UChar *bu;             /* (bu_cap) the text in UTF-16 */
    int64_t *bu_off;       /* (bu_cap) byte offset of each UTF-16 unit's code point */
    int32_t bu_cap;
    uint8_t *bnd;          /* (bnd_cap) 1 at byte offsets where an ICU word boundary is */
    size_t bnd_cap;
};

kwp_tok *kwp_tok_new(const kwp_vocab *v, size_t max_word_chars)
{
    kwp_tok *t = xcalloc(1, sizeof *t);
    t->v = v;
    t->max_chars = max_word_chars ? max_word_chars : KWP_DEFAULT_MAX_WORD_CHARS;
    UErrorCode st = U_ZERO_ERROR;
    t->nfc = unorm2_getNFCInstance(&st);
    t->nfd = unorm2_getNFDInstance(&st);
    if (st == U_MEMORY_ALLOCATION_ERROR) koom(0);
    if (U_FAILURE(st)) {
        fprintf(stderr, "kiln: error: ICU normalizer data missing: %s\n", u_errorName(st));
        abort();
    }
    if (v->mode & KWP_ICU_WORDS) {
        t->track = 1;
        t->brk = ubrk_open(UBRK_WORD, "", NULL, 0, &st);
        if (st == U_MEMORY_ALLOCATION_ERROR) koom(0);
        if (U_FAILURE(st)) {
            fprintf(stderr, "kiln: error: ICU word break data missing: %s\n", u_errorName(st));
            abort();
        }
    }
    return t;
}

void kwp_tok_free(kwp_tok *t)
{
    if (!t) return;
    free(t->cp);
    free(t->u1);
    free(t->u2);
    kbuf_free(&t->word);
    free(t->cpoff);
    free(t->tokoff);
    if (t->brk) ubrk_close(t->brk);
    free(t->bu);
    free(t->bu_off);
    free(t->bnd);
    free(t);
}

static inline int is_cjk(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static inline int ascii_punct(uint32_t c)
{
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
           (c >= 123 && c <= 126);
}

/* Category as Python's unicodedata of version KWP_UNICODE_AGE_MAJOR sees it. */
static inline int8_t category(uint32_t c)
{
    int8_t t = u_charType((UChar32)c);
    if (t != U_UNASSIGNED) {
        UVersionInfo age;
        u_charAge((UChar32)c, age);
        if (age[0] > KWP_UNICODE_AGE_MAJOR) return U_UNASSIGNED;
    }
    return t;
}

static inline int is_punct(uint32_t c)
{
    if (c < 128) return ascii_punct(c);
    return (U_MASK(category(c)) & U_GC_P_MASK) != 0;
}

static void grow_u(kwp_tok *t, int64_t need)
{
    if (need <= t->ucap) return;
    int64_t c = t->ucap ? t->ucap : 256;
    while (c < need) c *= 2;
    t->u1 = xrealloc(t->u1, (size_t)c * sizeof(UChar));
    t->u2 = xrealloc(t->u2, (size_t)c * sizeof(UChar));
    t->ucap = (int32_t)c;
}

/* Runs a normalizer or lowercasing from u1[0..n) into u2; returns the length. */
static int32_t u_apply(kwp_tok *t, int op, int32_t n)
{
    int64_t need = (int64_t)n * 3 + 16;
    for (;;) {
        grow_u(t, need);
        UErrorCode st = U_ZERO_ERROR;
        int32_t r;
        if (op == 0) r = unorm2_normalize(t->nfc, t->u1, n, t->u2, t->ucap, &st);
        else if (op == 1) r = unorm2_normalize(t->nfd, t->u1, n, t->u2, t->ucap, &st);
        else r = u_strToLower(t->u2, t->ucap, t->u1, n, "", &st);
        if (st == U_BUFFER_OVERFLOW_ERROR) { need = (int64_t)r + 16; continue; }
        if (U_FAILURE(st)) return 0;
        return r;
    }
}

static void swap_u(kwp_tok *t) { UChar *x = t->u1; t->u1 = t->u2; t->u2 = x; }

/* ICU words: the basic token about to be handed on starts at code point i
 * of the whitespace token (after normalization). */
static inline void mark_word(kwp_tok *t, size_t i)
{
    if (!t->track) return;
    if (t->known) {
        t->woff = t->cpoff + i;
        t->wsrc = t->cpoff[i];
    } else {
        t->woff = NULL;
        t->wsrc = i == 0 ? t->cpoff[0] : -1;
    }
}

/* Splits the code points of a cleaned token at punctuation and hands each
 * piece (UTF-8) to fn. */
static void split_punct(kwp_tok *t, const uint32_t *c, size_t n, word_fn fn, void *ctx)
{
    kbuf_clear(&t->word);
    size_t ws = 0; /* the current word's first code point */
    for (size_t i = 0; i < n; i++) {
        if (is_punct(c[i])) {
            if (t->word.len) { mark_word(t, ws); fn(t->word.data, t->word.len, ctx); kbuf_clear(&t->word); }
            kbuf_put_cp(&t->word, c[i]);
            mark_word(t, i);
            fn(t->word.data, t->word.len, ctx);
            kbuf_clear(&t->word);
        } else {
            if (!t->word.len) ws = i;
            kbuf_put_cp(&t->word, c[i]);
        }
    }
    if (t->word.len) { mark_word(t, ws); fn(t->word.data, t->word.len, ctx); }
    kbuf_clear(&t->word);
}

static const char *const special_names[KWP_NSPECIAL] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

/* transformers' never_split: in cased mode a whitespace token equal to a
 * special token (after cleaning and NFC, e.g. "[MA\u200bSK]") is neither
 * split nor changed. (Uncased, the text was lowercased before: never.) */
static int never_split(kwp_tok *t, const uint32_t *c, size_t n, word_fn fn, void *ctx)
{
    if (!t->v->cased || n < 5 || n > 6 || c[0] != '[') return 0;
    for (int k = 0; k < KWP_NSPECIAL; k++) {
        const char *s = special_names[k];
        size_t l = strlen(s), i = 0;
        if (l != n) continue;
        while (i < n && c[i] == (uint32_t)(unsigned char)s[i]) i++;
        if (i == n) {
            if (t->track) { t->woff = NULL; t->wsrc = t->cpoff[0]; }
            fn(s, l, ctx);
            return 1;
        }
    }
    return 0;
}

/* A whitespace token is complete: step 3 of the file comment. */
static void flush_token(kwp_tok *t, word_fn fn, void *ctx)
{
    size_t n = t->ncp;
    if (!n) return;
    t->ncp = 0;
    int lower = !t->v->cased, strip = t->v->strip;
    if (t->ascii) {
        if (never_split(t, t->cp, n, fn, ctx)) return;
        /* NFC, NFD and accent stripping are identities on ASCII */
        t->known = 1;
        kbuf_reserve(&t->word, n);
        char *w = t->word.data;
        size_t k = 0, ws = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t c = t->cp[i];
            if (ascii_punct(c)) {
                if (k) { mark_word(t, ws); fn(w, k, ctx); k = 0; }
                char ch = (char)c;
                mark_word(t, i);
                fn(&ch, 1, ctx);
            } else {
                if (!k) ws = i;
                w[k++] = (char)(lower && c >= 'A' && c <= 'Z' ? c + 32 : c);
            }
        }
        if (k) { mark_word(t, ws); fn(w, k, ctx); }
        return;
    }
    /* to UTF-16; uncased: each code point lowercased on its own first, as
     * transformers does (its regex lowercases the text one character at a
     * time, so Greek capital sigma never becomes final sigma) */
    grow_u(t, (int64_t)n * 6 + 16);
    int32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = t->cp[i];
        UChar one[2];
        int32_t k = 0;
        if (c >= 0x10000) {
            one[k++] = (UChar)(0xD800 + ((c - 0x10000) >> 10));
            one[k++] = (UChar)(0xDC00 + ((c - 0x10000) & 0x3FF));
        } else {
            one[k++] = (UChar)c;
        }
        if (lower && u_hasBinaryProperty((UChar32)c, UCHAR_CHANGES_WHEN_LOWERCASED)) {
            UErrorCode st = U_ZERO_ERROR;
            /* a full lowercase mapping is at most 3 code points (6 units) */
            int32_t r = u_strToLower(t->u1 + m, 6, one, k, "", &st);
            if (U_SUCCESS(st)) { m += r; continue; }
        }
        for (int32_t j = 0; j < k; j++) t->u1[m++] = one[j];
    }
    int32_t m0 = m;
    m = u_apply(t, 0, m); /* NFC */
    swap_u(t);
    int same = m == m0;   /* ICU words: the code points still map 1:1 to cpoff */
    if (!lower && m >= 5 && m <= 6 && t->u1[0] == '[') {
        uint32_t c[6];
        for (int32_t i = 0; i < m; i++) c[i] = t->u1[i];
        if (never_split(t, c, (size_t)m, fn, ctx)) return;
    }
    if (lower) {
        m = u_apply(t, 2, m); /* str.lower() */
        swap_u(t);
        same = same && m == m0;
    }
    if (strip) {
        m = u_apply(t, 1, m); /* NFD */
        swap_u(t);
        same = same && m == m0;
    }
    /* back to code points, dropping Mn when stripping accents */
    size_t k = 0;
    if ((size_t)m > t->cp_cap) {
        t->cp_cap = (size_t)m;
        t->cp = xrealloc(t->cp, t->cp_cap * sizeof *t->cp);
    }
    for (int32_t i = 0; i < m;) {
        UChar32 c;
        U16_NEXT(t->u1, i, m, c);
        if (strip && category((uint32_t)c) == U_NON_SPACING_MARK) { same = 0; continue; }
        t->cp[k++] = (uint32_t)c;
    }
    t->known = same && k == n;
    split_punct(t, t->cp, k, fn, ctx);
}

/* Appends code point c (source offset off) to the current whitespace token. */
static inline void push_cp(kwp_tok *t, uint32_t c, int64_t off)
{
    if (t->ncp == t->cp_cap) {
        t->cp_cap = t->cp_cap ? t->cp_cap * 2 : 256;
        t->cp = xrealloc(t->cp, t->cp_cap * sizeof *t->cp);
    }
    if (t->track) {
        if (t->ncp == t->off_cap) {
            t->off_cap = t->off_cap ? t->off_cap * 2 : 256;
            t->cpoff = xrealloc(t->cpoff, t->off_cap * sizeof *t->cpoff);
        }
        t->cpoff[t->ncp] = off;
    }
    if (!t->ncp) t->ascii = 1;
    if (c >= 0x80) t->ascii = 0;
    t->cp[t->ncp++] = c;
}

/* Steps 2-3 over a segment with no special token. */
static void basic_segment(kwp_tok *t, const char *s, size_t n, word_fn fn, void *ctx)
{
    const unsigned char *p0 = (const unsigned char *)s, *p = p0, *e = p + n;
    t->ncp = 0;
    while (p < e) {
        uint32_t c;
        int64_t off = t->base + (p - p0);
        if (*p < 0x80) {
            c = *p++;
            if (c > ' ' && c < 0x7F) { push_cp(t, c, off); continue; }
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') { flush_token(t, fn, ctx); continue; }
            continue; /* other C0 controls and DEL */
        }
        int bad;
        p += kutf8_decode(p, e, &c, &bad);
        if (c == 0xFFFD) continue;
        int8_t cat = category(c);
        if (cat == U_CONTROL_CHAR || cat == U_FORMAT_CHAR || cat == U_UNASSIGNED ||
            cat == U_PRIVATE_USE_CHAR || cat == U_SURROGATE)
            continue;
        if (cat == U_SPACE_SEPARATOR || c == 0x2028 || c == 0x2029) { flush_token(t, fn, ctx); continue; }
        if (is_cjk(c)) {
            flush_token(t, fn, ctx);
            push_cp(t, c, off);
            flush_token(t, fn, ctx);
            continue;
        }
        push_cp(t, c, off);
    }
    flush_token(t, fn, ctx);
}

/* Appends a token: its id, BERT's word start, and (ICU words) the source
 * offset of its first character. */
static void emit(kwp_tok *t, uint32_t id, int start, int64_t off)
{
    ids_push(t->out, id, start);
    if (!t->track) return;
    size_t k = t->out->n - 1 - t->before;
    if (k >= t->tok_cap) {
        t->tok_cap = t->tok_cap ? t->tok_cap * 2 : 256;
        while (k >= t->tok_cap) t->tok_cap *= 2;
        t->tokoff = xrealloc(t->tokoff, t->tok_cap * sizeof *t->tokoff);
    }
    t->tokoff[k] = off;
}

/* Step 4 for one basic token. */
static void wordpiece(const char *w, size_t n, void *ctx)
{
    kwp_tok *t = ctx;
    const kwp_vocab *v = t->v;
    kwp_ids *out = t->out;
    uint32_t unk = (uint32_t)v->special[KWP_UNK];
    size_t chars = 0;
    for (size_t i = 0; i < n; i++) chars += ((unsigned char)w[i] & 0xC0) != 0x80;
    int64_t wsrc = t->track ? t->wsrc : -1;
    if (chars > t->max_chars) { emit(t, unk, 1, wsrc); return; }
    size_t mark = out->n;
    size_t start = 0, ci = 0, cb = 0; /* ICU words: code point ci starts at byte cb of w */
    while (start < n) {
        size_t end = n;
        size_t lim = start + v->max_piece;
        if (end > lim) {
            end = lim;
            while (end > start && ((unsigned char)w[end] & 0xC0) == 0x80) end--;
        }
        int64_t id = -1;
        for (; end > start; end--) {
            if (end < n && ((unsigned char)w[end] & 0xC0) == 0x80) continue; /* mid character */
            id = start == 0 ? htab_get(&v->whole, v, w, end, 0)
                            : htab_get(&v->cont, v, w + start, end - start, 2);
            if (id >= 0) break;
        }
        if (id < 0) { out->n = mark; emit(t, unk, 1, wsrc); return; }
        int64_t off = wsrc;
        if (t->track && start) {
            while (cb < start) ci += ((unsigned char)w[cb++] & 0xC0) != 0x80;
            off = t->woff ? t->woff[ci] : -1;
        }
        emit(t, (uint32_t)id, start == 0, off);
        start = end;
    }
}

/* ICU words: the word starts of the tokens appended since t->before, from
 * the boundaries of ICU's word break iterator over s[0..n). */
static void icu_word_starts(kwp_tok *t, const char *s, size_t n)
{
    kwp_ids *out = t->out;
    if (n >= (size_t)INT32_MAX / 4) return; /* ICU indexes with int32_t: keep BERT's */
    int64_t need = (int64_t)n * 2 + 2;
    if (need > t->bu_cap) {
        t->bu_cap = (int32_t)need;
        t->bu = xrealloc(t->bu, (size_t)t->bu_cap * sizeof *t->bu);
        t->bu_off = xrealloc(t->bu_off, (size_t)t->bu_cap * sizeof *t->bu_off);
    }
    const unsigned char *p0 = (const unsigned char *)s, *p = p0, *e = p0 + n;
    int32_t m = 0;
    while (p < e) {
        uint32_t c;
        int bad;
        int64_t off = p - p0;
        p += kutf8_decode(p, e, &c, &bad);
        if (c >= 0x10000) {
            t->bu_off[m] = off;
            t->bu[m++] = (UChar)(0xD800 + ((c - 0x10000) >> 10));
            t->bu_off[m] = off;
            t->bu[m++] = (UChar)(0xDC00 + ((c - 0x10000) & 0x3FF));
        } else {
            t->bu_off[m] = off;
            t->bu[m++] = (UChar)c;
        }
    }
    t->bu_off[m] = (int64_t)n;
    if (n + 1 > t->bnd_cap) {
        t->bnd_cap = n + 1;
        t->bnd = xrealloc(t->bnd, t->bnd_cap);
    }
    memset(t->bnd, 0, n + 1);
    UErrorCode st = U_ZERO_ERROR;
    ubrk_setText(t->brk, t->bu, m, &st);
    if (U_FAILURE(st)) return;
    for (int32_t b = ubrk_first(t->brk); b != UBRK_DONE; b = ubrk_next(t->brk)) t->bnd[t->bu_off[b]] = 1;
    for (size_t k = t->before; k < out->n; k++) {
        int64_t off = t->tokoff[k - t->before];
        if (off >= 0 && off <= (int64_t)n) out->word_start[k] = t->bnd[off];
    }
}

size_t kwp_encode(kwp_tok *t, const char *s, size_t n, kwp_ids *out)
{
    size_t before = out->n;
    t->out = out;
    t->before = before;
    size_t seg = 0, i = 0;
    while (i < n) {
        const char *br = memchr(s + i, '[', n - i);
        if (!br) break;
        i = (size_t)(br - s);
        int hit = -1;
        for (int k = 0; k < KWP_NSPECIAL; k++) {
            size_t l = strlen(special_names[k]);
            if (t->v->special[k] >= 0 && i + l <= n && memcmp(s + i, special_names[k], l) == 0) {
                hit = k;
                break;
            }
        }
        if (hit < 0) { i++; continue; }
        if (i > seg) { t->base = (int64_t)seg; basic_segment(t, s + seg, i - seg, wordpiece, t); }
        emit(t, (uint32_t)t->v->special[hit], 1, -2);
        i += strlen(special_names[hit]);
        seg = i;
    }
    if (seg < n) { t->base = (int64_t)seg; basic_segment(t, s + seg, n - seg, wordpiece, t); }
    if (t->track && out->n > before) icu_word_starts(t, s, n);
    t->out = NULL;
    return out->n - before;
}

void kwp_basic(kwp_tok *t, const char *s, size_t n, word_fn cb, void *ctx)
{
    t->base = 0;
    basic_segment(t, s, n, cb, ctx);
}

/* ---- accent-stripping census ------------------------------------------------------ */

/* A code point's class: its script (ICU UScriptCode) and what accent
 * stripping does to it. */
enum { CL_SCRIPT = 0x3FF, CL_LETTER = 0x400, CL_CHANGED = 0x800, CL_DROPPED = 0x1000, CL_ATTACH = 0x2000 };

static uint16_t classify(uint32_t c, const UNormalizer2 *nfd)
{
    UErrorCode st = U_ZERO_ERROR;
    int s = (int)uscript_getScript((UChar32)c, &st);
    if (U_FAILURE(st) || s < 0 || s > CL_SCRIPT) s = USCRIPT_UNKNOWN;
    int8_t cat = category(c);
    uint32_t m = U_MASK(cat);
    if (!(m & (U_GC_L_MASK | U_GC_M_MASK))) return (uint16_t)s; /* not a letter */
    uint16_t k = (uint16_t)(s | CL_LETTER);
    if (s == USCRIPT_INHERITED || s == USCRIPT_COMMON) k |= CL_ATTACH;
    if (cat == U_NON_SPACING_MARK) return k | CL_DROPPED;
    UChar d[8];
    st = U_ZERO_ERROR;
    if (unorm2_getDecomposition(nfd, (UChar32)c, d, 8, &st) >= 0 || st == U_BUFFER_OVERFLOW_ERROR) k |= CL_CHANGED;
    return k;
}

static uint16_t bmp_class[0x10000];
static int32_t n_scripts;
static const UNormalizer2 *census_nfd;
static pthread_once_t census_once = PTHREAD_ONCE_INIT;

static void census_init(void)
{
    UErrorCode st = U_ZERO_ERROR;
    census_nfd = unorm2_getNFDInstance(&st);
    if (st == U_MEMORY_ALLOCATION_ERROR) koom(0);
    if (U_FAILURE(st)) {
        fprintf(stderr, "kiln: error: ICU normalizer data missing: %s\n", u_errorName(st));
        abort();
    }
    n_scripts = u_getIntPropertyMaxValue(UCHAR_SCRIPT) + 1;
    if (n_scripts > CL_SCRIPT + 1) n_scripts = CL_SCRIPT + 1;
    for (uint32_t c = 0; c < 0x10000; c++)
        bmp_class[c] = (c >= 0xD800 && c <= 0xDFFF) ? (uint16_t)USCRIPT_UNKNOWN : classify(c, census_nfd);
}

struct kwp_census {
    uint64_t (*n)[3]; /* (n_scripts) letters, changed, dropped */
    int last;         /* script of the last letter seen (for attached marks), -1 none */
};

kwp_census *kwp_census_new(void)
{
    pthread_once(&census_once, census_init);
    kwp_census *c = xcalloc(1, sizeof *c);
    c->n = xcalloc((size_t)n_scripts, sizeof *c->n);
    c->last = -1;
    return c;
}

void kwp_census_free(kwp_census *c)
{
    if (!c) return;
    free(c->n);
    free(c);
}

void kwp_census_add(kwp_census *c, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    while (p < e) {
        uint32_t cp;
        if (*p < 0x80) {
            cp = *p++;
            if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') { c->n[USCRIPT_LATIN][0]++; c->last = USCRIPT_LATIN; }
            continue;
        }
        int bad;
        p += kutf8_decode(p, e, &cp, &bad);
        if (bad) continue;
        uint16_t k = cp < 0x10000 ? bmp_class[cp] : classify(cp, census_nfd);
        if (!(k & CL_LETTER)) continue;
        int sc = k & CL_SCRIPT;
        if (k & CL_ATTACH) {
            if (c->last >= 0) sc = c->last;
        } else {
            c->last = sc;
        }
        if (sc >= n_scripts) continue;
        c->n[sc][0]++;
        if (k & CL_DROPPED) c->n[sc][2]++;
        else if (k & CL_CHANGED) c->n[sc][1]++;
    }
}

void kwp_census_merge(kwp_census *a, const kwp_census *b)
{
    for (int32_t i = 0; i < n_scripts; i++)
        for (int j = 0; j < 3; j++) a->n[i][j] += b->n[i][j];
}

static int by_letters(const void *x, const void *y)
{
    const kwp_script_count *a = x, *b = y;
    if (a->letters != b->letters) return a->letters > b->letters ? -1 : 1;
    return (a->script > b->script) - (a->script < b->script);
}

size_t kwp_census_scripts(const kwp_census *c, kwp_script_count *out, size_t max, uint64_t *letters)
{
    kwp_script_count *all = xcalloc((size_t)n_scripts, sizeof *all);
    size_t k = 0;
    uint64_t total = 0;
    for (int32_t i = 0; i < n_scripts; i++) {
        if (!c->n[i][0]) continue;
        kwp_script_count *x = &all[k++];
        x->script = i;
        x->name = uscript_getName((UScriptCode)i);
        if (!x->name) x->name = "Unknown";
        x->letters = c->n[i][0];
        x->changed = c->n[i][1];
        x->dropped = c->n[i][2];
        x->accents_only = i == USCRIPT_LATIN || i == USCRIPT_GREEK || i == USCRIPT_CYRILLIC;
        total += x->letters;
    }
    qsort(all, k, sizeof *all, by_letters);
    memcpy(out, all, (k < max ? k : max) * sizeof *out);
    free(all);
    if (letters) *letters = total;
    return k;
}

void kwp_decode(const kwp_vocab *v, const uint32_t *ids, size_t n, kbuf *out)
{
    kbuf raw = {0};
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *p = kwp_vocab_piece(v, ids[i], &len);
        if (!p) { p = "[UNK]"; len = 5; }
        if (i) kbuf_putc(&raw, ' ');
        kbuf_append(&raw, p, len);
    }
    /* " ##" removed, then strip */
    kbuf a = {0};
    for (size_t i = 0; i < raw.len; i++) {
        if (raw.data[i] == ' ' && i + 2 < raw.len && raw.data[i + 1] == '#' && raw.data[i + 2] == '#') {
            i += 2;
            continue;
        }
        kbuf_putc(&a, raw.data[i]);
    }
    size_t b = 0, e = a.len;
    while (b < e && (a.data[b] == ' ' || a.data[b] == '\t' || a.data[b] == '\n' || a.data[b] == '\r')) b++;
    while (e > b && (a.data[e - 1] == ' ' || a.data[e - 1] == '\t' || a.data[e - 1] == '\n' || a.data[e - 1] == '\r')) e--;
    /* clean_up_tokenization: replacements applied one after the other over the whole string */
    static const char *const rep[][2] = {{" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","},
                                         {" ' ", "'"}, {" n't", "n't"}, {" 'm", "'m"},
                                         {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    kbuf cur = {0}, nxt = {0};
    kbuf_append(&cur, a.data ? a.data + b : "", e - b);
    for (size_t r = 0; r < sizeof rep / sizeof *rep; r++) {
        size_t fl = strlen(rep[r][0]), tl = strlen(rep[r][1]);
        kbuf_clear(&nxt);
        for (size_t i = 0; i < cur.len;) {
            if (i + fl <= cur.len && memcmp(cur.data + i, rep[r][0], fl) == 0) {
                kbuf_append(&nxt, rep[r][1], tl);
                i += fl;
            } else {
                kbuf_putc(&nxt, cur.data[i++]);
            }
        }
        kbuf tmp = cur; cur = nxt; nxt = tmp;
    }
    kbuf_append(out, cur.data ? cur.data : "", cur.len);
    kbuf_free(&raw); kbuf_free(&a); kbuf_free(&cur); kbuf_free(&nxt);
}
