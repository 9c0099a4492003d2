/* text.c: UTF-8 cleaning, UTF-16 decoding, ICU normalization and sentence
 * segmentation (see text.h).
 *
 * Pipeline of ktext_segment, all in UTF-16 after one conversion:
 *   UTF-8 --u_strFromUTF8--> u16 --unorm2_normalize--> nrm
 *   nrm: paragraphs split at blank lines; soft newlines replaced in place by ' '
 *   each paragraph --ubrk (sentence)--> [start, end) spans
 *   each span --collapse white space, encode--> UTF-8 sentence in out
 * Buffers (u16, nrm) live in the handle and only grow. */
#include "text/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unicode/ubrk.h>
#include <unicode/ucnv.h>
#include <unicode/ucsdet.h>
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <unicode/utypes.h>

/* ---- UTF-8 cleaning ------------------------------------------------------ */

void ktext_clean_utf8(const char *in, size_t n, kbuf *out, ktext_counts *c)
{
    const unsigned char *p = (const unsigned char *)in, *e = p + n;
    ktext_counts local = {0};
    if (!c) c = &local;
    if (n >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) p += 3;
    kbuf_reserve(out, n);
    while (p < e) {
        /* fast path: a run of printable ASCII */
        const unsigned char *q = p;
        while (q < e && *q >= 0x20 && *q < 0x7F) q++;
        if (q > p) { kbuf_append(out, p, (size_t)(q - p)); p = q; if (p >= e) break; }
        unsigned char ch = *p;
        if (ch < 0x80) {
            p++;
            if (ch == '\n' || ch == '\t') kbuf_putc(out, (char)ch);
            else if (ch == '\r') { kbuf_putc(out, '\n'); if (p < e && *p == '\n') p++; }
            else c->controls++;
            continue;
        }
        uint32_t cp;
        int bad;
        size_t len = kutf8_decode(p, e, &cp, &bad);
        if (bad) { c->invalid_utf8++; kbuf_put_cp(out, 0xFFFD); p += len; continue; }
        if (cp == 0x85 || cp == 0x2028 || cp == 0x2029) kbuf_putc(out, '\n');
        else if ((cp >= 0x80 && cp <= 0x9F) || cp == 0xFEFF) c->controls++;
        else kbuf_append(out, p, len);
        p += len;
    }
}

/* ---- UTF-16 ---------------------------------------------------------------- */

int ktext_utf16_bom(const unsigned char *in, size_t n)
{
    if (n >= 2 && in[0] == 0xFF && in[1] == 0xFE) return 1;
    if (n >= 2 && in[0] == 0xFE && in[1] == 0xFF) return 2;
    return 0;
}

struct ktext_u16 {
    int be;
    int have_byte;      /* a dangling first byte of a code unit */
    unsigned char byte;
    uint32_t high;      /* pending high surrogate, 0 if none */
    int skip_bom;       /* the BOM is still to be skipped */
};

ktext_u16 *ktext_u16_new(int bom)
{
    ktext_u16 *u = xcalloc(1, sizeof *u);
    u->be = bom == 2;
    u->skip_bom = 1;
    return u;
}

static void u16_unit(ktext_u16 *u, uint32_t w, kbuf *out)
{
    if (u->skip_bom) { u->skip_bom = 0; if (w == 0xFEFF) return; }
    if (u->high) {
        if (w >= 0xDC00 && w <= 0xDFFF) {
            kbuf_put_cp(out, 0x10000 + ((u->high - 0xD800) << 10) + (w - 0xDC00));
            u->high = 0;
            return;
        }
        kbuf_put_cp(out, 0xFFFD);
        u->high = 0;
    }
    if (w >= 0xD800 && w <= 0xDBFF) u->high = w;
    else if (w >= 0xDC00 && w <= 0xDFFF) kbuf_put_cp(out, 0xFFFD);
    else kbuf_put_cp(out, w);
}

void ktext_u16_feed(ktext_u16 *u, const char *in, size_t n, int final, kbuf *out)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t i = 0;
    if (u->have_byte && n > 0) {
        uint32_t w = u->be ? (uint32_t)(u->byte << 8 | p[0]) : (uint32_t)(p[0] << 8 | u->byte);
        u->have_byte = 0;
        u16_unit(u, w, out);
        i = 1;
    }
    for (; i + 1 < n; i += 2) {
        uint32_t w = u->be ? (uint32_t)(p[i] << 8 | p[i + 1]) : (uint32_t)(p[i + 1] << 8 | p[i]);
        u16_unit(u, w, out);
    }
    if (i < n) { u->have_byte = 1; u->byte = p[i]; }
    if (final) {
        if (u->high || u->have_byte) kbuf_put_cp(out, 0xFFFD);
        u->high = 0;
        u->have_byte = 0;
    }
}

void ktext_u16_free(ktext_u16 *u) { free(u); }

/* ---- legacy charsets -------------------------------------------------------- */

void ktext_utf8_census(const char *s, size_t n, size_t *valid_multibyte, size_t *invalid)
{
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    size_t ok = 0, badn = 0;
    while (p < e) {
        if (*p < 0x80) { p++; continue; }
        uint32_t cp;
        int bad;
        size_t len = kutf8_decode(p, e, &cp, &bad);
        if (bad && p + len >= e && *p >= 0xC2 && *p <= 0xF4) break; /* cut off at the end */
        if (bad) badn++;
        else ok++;
        p += len;
    }
    *valid_multibyte = ok;
    *invalid = badn;
}

int ktext_detect_charset(const char *s, size_t n, int min_confidence, char *name, size_t len)
{
    UErrorCode st = U_ZERO_ERROR;
    UCharsetDetector *d = ucsdet_open(&st);
    if (st == U_MEMORY_ALLOCATION_ERROR) koom(0); /* not "no charset found": the text would be read wrong */
    if (U_FAILURE(st)) return 0;
    int found = 0;
    ucsdet_setText(d, s, n > INT32_MAX ? INT32_MAX : (int32_t)n, &st);
    const UCharsetMatch *m = ucsdet_detect(d, &st);
    if (st == U_MEMORY_ALLOCATION_ERROR) koom(0);
    if (U_SUCCESS(st) && m) {
        int32_t conf = ucsdet_getConfidence(m, &st);
        const char *nm = ucsdet_getName(m, &st);
        if (U_SUCCESS(st) && nm && conf >= min_confidence) {
            snprintf(name, len, "%s", nm);
            found = 1;
        }
    }
    ucsdet_close(d);
    return found;
}

struct ktext_conv {
    UConverter *cnv;
    UChar u16[16384];
};

ktext_conv *ktext_conv_new(const char *charset, char *err, size_t errlen)
{
    UErrorCode st = U_ZERO_ERROR;
    UConverter *cnv = ucnv_open(charset, &st);
    if (st == U_MEMORY_ALLOCATION_ERROR) koom(0); /* not an unknown encoding */
    if (U_FAILURE(st) || st == U_AMBIGUOUS_ALIAS_WARNING) {
        if (U_FAILURE(st)) {
            snprintf(err, errlen, "unknown character encoding '%s' (%s)", charset, u_errorName(st));
            return NULL;
        }
    }
    ktext_conv *c = xcalloc(1, sizeof *c);
    c->cnv = cnv;
    return c;
}

void ktext_conv_feed(ktext_conv *c, const char *in, size_t n, int final, kbuf *out)
{
    const char *src = in, *end = in + n;
    for (;;) {
        UErrorCode st = U_ZERO_ERROR;
        UChar *t = c->u16;
        ucnv_toUnicode(c->cnv, &t, c->u16 + sizeof c->u16 / sizeof *c->u16, &src, end, NULL,
                       final, &st);
        int32_t nu = (int32_t)(t - c->u16);
        if (nu > 0) {
            /* UTF-16 -> UTF-8: at most 3 bytes per unit */
            kbuf_reserve(out, (size_t)nu * 3);
            int32_t w = 0;
            UErrorCode s2 = U_ZERO_ERROR;
            u_strToUTF8WithSub(out->data + out->len, (int32_t)(out->cap - out->len - 1), &w,
                               c->u16, nu, 0xFFFD, NULL, &s2);
            if (U_SUCCESS(s2)) out->len += (size_t)w;
            out->data[out->len] = '\0';
        }
        if (st != U_BUFFER_OVERFLOW_ERROR) break;
    }
}

void ktext_conv_free(ktext_conv *c)
{
    if (!c) return;
    ucnv_close(c->cnv);
    free(c);
}

/* ---- normalization and segmentation --------------------------------------- */

int ktext_norm_parse(const char *s)
{
    if (!strcmp(s, "nfkc")) return KTEXT_NFKC;
    if (!strcmp(s, "nfc")) return KTEXT_NFC;
    if (!strcmp(s, "none")) return KTEXT_NONE;
    return -1;
}

struct ktext_seg {
    const UNormalizer2 *norm; /* NULL for KTEXT_NONE; owned by ICU */
    UBreakIterator *brk;
    UChar *u16;               /* (u16_cap) converted input */
    int32_t u16_cap;
    UChar *nrm;               /* (nrm_cap) normalized text */
    int32_t nrm_cap;
};

ktext_seg *ktext_seg_new(const char *lang, int norm, char *err, size_t errlen)
{
    ktext_seg *g = xcalloc(1, sizeof *g);
    UErrorCode st = U_ZERO_ERROR;
    if (norm == KTEXT_NFKC) g->norm = unorm2_getNFKCInstance(&st);
    else if (norm == KTEXT_NFC) g->norm = unorm2_getNFCInstance(&st);
    if (st == U_MEMORY_ALLOCATION_ERROR) koom(0); /* as xmalloc: not a data problem */
    if (U_FAILURE(st)) {
        snprintf(err, errlen, "ICU normalizer: %s", u_errorName(st));
        free(g);
        return NULL;
    }
    char loc[96];
    snprintf(loc, sizeof loc, "%s@ss=standard", lang && *lang ? lang : "en");
    g->brk = ubrk_open(UBRK_SENTENCE, loc, NULL, 0, &st);
    if (st == U_MEMORY_ALLOCATION_ERROR) koom(0);
    if (U_FAILURE(st)) {
        snprintf(err, errlen, "ICU sentence break iterator for '%s': %s", loc, u_errorName(st));
        free(g);
        return NULL;
    }
    return g;
}

void ktext_seg_free(ktext_seg *g)
{
    if (!g) return;
    ubrk_close(g->brk);
    free(g->u16);
    free(g->nrm);
    free(g);
}

static void grow_uchars(UChar **buf, int32_t *cap, int64_t need)
{
    if (need <= *cap) return;
    int64_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    *buf = xrealloc(*buf, (size_t)c * sizeof(UChar));
    *cap = (int32_t)c;
}

static inline int is_space16(UChar c)
{
    if (c < 0x80) return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
    return u_isUWhiteSpace(c);
}

/* Appends s[0..n) to out with white space collapsed and trimmed; appends a
 * '\n' separator first when out is not empty. Records the end offset.
 * Hot: writes through a local pointer, printable ASCII on a fast path. */
static void emit_sentence(const UChar *s, int32_t n, kbuf *out, uint32_t **ends, size_t *ends_cap,
                          size_t *count)
{
    int32_t i = 0;
    while (i < n && is_space16(s[i])) i++;
    while (n > i && is_space16(s[n - 1])) n--;
    if (i >= n) return;
    size_t mark = out->len;
    kbuf_reserve(out, (size_t)(n - i) * 3 + 2);
    char *d = out->data + out->len;
    if (*count) *d++ = '\n';
    int space = 0;
    for (; i < n; i++) {
        UChar c = s[i];
        if (c > ' ' && c < 0x7F) {
            if (space) { *d++ = ' '; space = 0; }
            *d++ = (char)c;
            continue;
        }
        if (is_space16(c)) { space = 1; continue; }
        if (space) { *d++ = ' '; space = 0; }
        uint32_t cp = c;
        if (c >= 0xD800 && c <= 0xDBFF && i + 1 < n && s[i + 1] >= 0xDC00 && s[i + 1] <= 0xDFFF) {
            cp = 0x10000 + (((uint32_t)c - 0xD800) << 10) + ((uint32_t)s[i + 1] - 0xDC00);
            i++; /* two units in, four bytes out: within the 3-per-unit budget */
        } else if (c >= 0xD800 && c <= 0xDFFF) {
            cp = 0xFFFD;
        }
        if (cp < 0x80) *d++ = (char)cp;
        else if (cp < 0x800) { *d++ = (char)(0xC0 | (cp >> 6)); *d++ = (char)(0x80 | (cp & 0x3F)); }
        else if (cp < 0x10000) {
            *d++ = (char)(0xE0 | (cp >> 12)); *d++ = (char)(0x80 | ((cp >> 6) & 0x3F));
            *d++ = (char)(0x80 | (cp & 0x3F));
        } else {
            *d++ = (char)(0xF0 | (cp >> 18)); *d++ = (char)(0x80 | ((cp >> 12) & 0x3F));
            *d++ = (char)(0x80 | ((cp >> 6) & 0x3F)); *d++ = (char)(0x80 | (cp & 0x3F));
        }
    }
    out->len = (size_t)(d - out->data);
    out->data[out->len] = '\0';
    if (out->len > UINT32_MAX) { out->len = mark; out->data[mark] = '\0'; return; }
    if (*count >= *ends_cap) {
        *ends_cap = *ends_cap ? *ends_cap * 2 : 64;
        *ends = xrealloc(*ends, *ends_cap * sizeof **ends);
    }
    (*ends)[(*count)++] = (uint32_t)out->len;
}

/* Splits a paragraph into sentences with the break iterator. */
static void segment_paragraph(ktext_seg *g, UChar *p, int32_t n, kbuf *out, uint32_t **ends,
                              size_t *ends_cap, size_t *count)
{
    UErrorCode st = U_ZERO_ERROR;
    ubrk_setText(g->brk, p, n, &st);
    if (st == U_MEMORY_ALLOCATION_ERROR) koom(0); /* not one sentence: stored text must not depend on memory */
    if (U_FAILURE(st)) { emit_sentence(p, n, out, ends, ends_cap, count); return; }
    int32_t start = ubrk_first(g->brk), end;
    while ((end = ubrk_next(g->brk)) != UBRK_DONE) {
        emit_sentence(p + start, end - start, out, ends, ends_cap, count);
        start = end;
    }
}

size_t ktext_segment(ktext_seg *g, const char *in, size_t n, int lines_are_sentences, kbuf *out,
                     uint32_t **ends, size_t *ends_cap)
{
    kbuf_clear(out);
    if (n == 0 || n > INT32_MAX / 2) return 0;
    UErrorCode st = U_ZERO_ERROR;
    int32_t len16 = 0;
    grow_uchars(&g->u16, &g->u16_cap, (int64_t)n + 1);
    u_strFromUTF8WithSub(g->u16, g->u16_cap, &len16, in, (int32_t)n, 0xFFFD, NULL, &st);
    if (st == U_MEMORY_ALLOCATION_ERROR) koom(0);
    if (U_FAILURE(st)) return 0;
    UChar *t = g->u16;
    int32_t tn = len16;
    if (g->norm) {
        /* Skip the work when the text is already normalized (the common case). */
        int32_t span = unorm2_spanQuickCheckYes(g->norm, g->u16, len16, &st);
        if (U_SUCCESS(st) && span < len16) {
            int64_t need = (int64_t)len16 + len16 / 2 + 16;
            for (;;) {
                grow_uchars(&g->nrm, &g->nrm_cap, need);
                st = U_ZERO_ERROR;
                int32_t r = unorm2_normalize(g->norm, g->u16, len16, g->nrm, g->nrm_cap, &st);
                if (st == U_BUFFER_OVERFLOW_ERROR && r > 0 && r < INT32_MAX / 2) { need = (int64_t)r + 1; continue; }
                if (st == U_MEMORY_ALLOCATION_ERROR) koom(0); /* a document is not dropped for it */
                if (U_FAILURE(st)) return 0;
                t = g->nrm;
                tn = r;
                break;
            }
        }
    }
    size_t count = 0;
    int32_t i = 0;
    int32_t para = -1; /* start of the open paragraph, -1 if none */
    while (i <= tn) {
        /* one line: [i, j) */
        int32_t j = i;
        int blank = 1;
        while (j < tn && t[j] != '\n') { if (blank && !is_space16(t[j])) blank = 0; j++; }
        if (lines_are_sentences) {
            if (!blank) emit_sentence(t + i, j - i, out, ends, ends_cap, &count);
        } else if (blank) {
            if (para >= 0) segment_paragraph(g, t + para, i - para, out, ends, ends_cap, &count);
            para = -1;
        } else {
            if (para < 0) para = i;
            if (j < tn) t[j] = ' '; /* soft newline */
        }
        i = j + 1;
    }
    if (!lines_are_sentences && para >= 0)
        segment_paragraph(g, t + para, tn - para, out, ends, ends_cap, &count);
    return count;
}

void ktext_normalize_short(const char *s, size_t n, int norm, kbuf *out)
{
    kbuf clean = {0};
    ktext_clean_utf8(s, n, &clean, NULL);
    kbuf_clear(out);
    UErrorCode st = U_ZERO_ERROR;
    const UNormalizer2 *nz = norm == KTEXT_NFKC ? unorm2_getNFKCInstance(&st)
                             : norm == KTEXT_NFC ? unorm2_getNFCInstance(&st) : NULL;
    int32_t n16 = 0;
    UChar *u = NULL, *v = NULL;
    if (clean.len && clean.len < INT32_MAX / 4 && U_SUCCESS(st)) {
        u = xmalloc((clean.len + 1) * sizeof *u);
        u_strFromUTF8WithSub(u, (int32_t)clean.len + 1, &n16, clean.data, (int32_t)clean.len, 0xFFFD, NULL, &st);
        if (U_SUCCESS(st) && nz) {
            int32_t cap = n16 * 3 + 16;
            v = xmalloc((size_t)cap * sizeof *v);
            int32_t r = unorm2_normalize(nz, u, n16, v, cap, &st);
            if (st == U_BUFFER_OVERFLOW_ERROR) {
                cap = r + 1;
                v = xrealloc(v, (size_t)cap * sizeof *v);
                st = U_ZERO_ERROR;
                r = unorm2_normalize(nz, u, n16, v, cap, &st);
            }
            if (U_SUCCESS(st)) { UChar *t = u; u = v; v = t; n16 = r; }
        }
        if (U_SUCCESS(st)) {
            int space = 0;
            for (int32_t i = 0; i < n16;) {
                UChar32 c;
                U16_NEXT(u, i, n16, c);
                if (u_isUWhiteSpace(c)) { space = out->len > 0; continue; }
                if (space) { kbuf_putc(out, ' '); space = 0; }
                kbuf_put_cp(out, (uint32_t)c);
            }
        }
    }
    if (!out->data) kbuf_reserve(out, 1);
    free(u);
    free(v);
    kbuf_free(&clean);
}
