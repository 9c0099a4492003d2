/* parse.c: line parsers for knowledge-graph files (see parse.h).
 *
 * N-Triples grammar handled here (W3C RDF 1.1 N-Triples, section 7), one
 * line at a time:
 *
 *   line             ::= WS* (triple WS*)? comment?
 *   triple           ::= subject WS* predicate WS* object WS* '.'
 *   subject          ::= IRIREF | BLANK_NODE_LABEL
 *   predicate        ::= IRIREF
 *   object           ::= IRIREF | BLANK_NODE_LABEL | literal
 *   literal          ::= STRING_LITERAL_QUOTE (WS* ('^^' WS* IRIREF | LANGTAG))?
 *   comment          ::= '#' [^#xA#xD]*
 *   WS               ::= ' ' | '\t'
 *   LANGTAG          ::= '@' [a-zA-Z]+ ('-' [a-zA-Z0-9]+)*
 *   IRIREF           ::= '<' ([^#x00-#x20<>"{}|^`\] | UCHAR)* '>'
 *   STRING_LITERAL_QUOTE ::= '"' ([^#x22#x5C#xA#xD] | ECHAR | UCHAR)* '"'
 *   BLANK_NODE_LABEL ::= '_:' (PN_CHARS_U | [0-9]) ((PN_CHARS | '.')* PN_CHARS)?
 *   UCHAR            ::= '\u' HEX{4} | '\U' HEX{8}
 *   ECHAR            ::= '\' [tbnrf"'\]
 *   PN_CHARS_BASE    ::= [A-Z] | [a-z] | [#xC0-#xD6] | [#xD8-#xF6] | [#xF8-#x2FF]
 *                      | [#x370-#x37D] | [#x37F-#x1FFF] | [#x200C-#x200D]
 *                      | [#x2070-#x218F] | [#x2C00-#x2FEF] | [#x3001-#xD7FF]
 *                      | [#xF900-#xFDCF] | [#xFDF0-#xFFFD] | [#x10000-#xEFFFF]
 *   PN_CHARS_U       ::= PN_CHARS_BASE | '_' | ':'
 *   PN_CHARS         ::= PN_CHARS_U | '-' | [0-9] | #xB7 | [#x300-#x36F] | [#x203F-#x2040]
 *
 * White space is optional between tokens that delimit themselves
 * (`<a><b><c>.` is a triple) and allowed inside the `literal` production
 * (`"x" ^^ <dt>`), which the grammar does not make a single terminal; CR is
 * not white space (it is an end of line in N-Triples). As in the N-Triples
 * (not Turtle) grammar, PN_CHARS_U includes ':' (`_::a` is a label ":a").
 *
 * Strictness beyond the grammar: a UCHAR in an IRI must not decode to a
 * character IRIREF forbids raw (so no decoded space or newline gets into an
 * IRI), and no UCHAR may decode to a surrogate or past U+10FFFF. Relative
 * IRIs are accepted (not checked against RFC 3987).
 *
 * Implementation: a single forward scan with no recursion. Decoded strings
 * are appended to the parser's one scratch kbuf (cleared per call, each
 * string NUL-terminated); terms record offsets, turned into pointers once the
 * line is done, so a growth of the buffer mid-line is harmless. Runs of plain
 * ASCII are copied with one append; bytes >= 0x80 are validated with
 * kutf8_decode. */
#include "kg/parse.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

struct knt_parser {
    kbuf out; /* decoded strings of the current line; owned */
};

knt_parser *knt_parser_new(void)
{
    knt_parser *p = xmalloc(sizeof *p);
    memset(p, 0, sizeof *p);
    kbuf_reserve(&p->out, 4096);
    return p;
}

void knt_parser_free(knt_parser *p)
{
    if (!p) return;
    kbuf_free(&p->out);
    free(p);
}

/* ---- character classes ------------------------------------------------------ */

#define BIT(c) ((uint64_t)1 << ((unsigned)(c) & 63u))
/* ASCII bytes allowed unescaped inside IRIREF: not #x00-#x20 nor <>"{}|^`\ */
#define IRI_LO (~(((uint64_t)1 << 33) - 1) & ~BIT('"') & ~BIT('<') & ~BIT('>'))
#define IRI_HI (~BIT('\\') & ~BIT('^') & ~BIT('`') & ~BIT('{') & ~BIT('|') & ~BIT('}'))
/* ASCII bytes allowed unescaped inside STRING_LITERAL_QUOTE: not " \ LF CR */
#define STR_LO (~BIT('\n') & ~BIT('\r') & ~BIT('"'))
#define STR_HI (~BIT('\\'))

static inline int ascii_in(uint64_t lo, uint64_t hi, unsigned char c)
{
    return c < 64 ? (int)((lo >> c) & 1) : c < 128 ? (int)((hi >> (c - 64)) & 1) : 0;
}

static int is_pn_chars_base(uint32_t c)
{
    if (c < 0x80) return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
    return (c >= 0xC0 && c <= 0xD6) || (c >= 0xD8 && c <= 0xF6) || (c >= 0xF8 && c <= 0x2FF) ||
           (c >= 0x370 && c <= 0x37D) || (c >= 0x37F && c <= 0x1FFF) || (c >= 0x200C && c <= 0x200D) ||
           (c >= 0x2070 && c <= 0x218F) || (c >= 0x2C00 && c <= 0x2FEF) ||
           (c >= 0x3001 && c <= 0xD7FF) || (c >= 0xF900 && c <= 0xFDCF) ||
           (c >= 0xFDF0 && c <= 0xFFFD) || (c >= 0x10000 && c <= 0xEFFFF);
}

/* PN_CHARS_U | [0-9]: the first character of a blank node label */
static int is_bnode_first(uint32_t c)
{
    return is_pn_chars_base(c) || c == '_' || c == ':' || (c >= '0' && c <= '9');
}

static int is_pn_chars(uint32_t c)
{
    return is_bnode_first(c) || c == '-' || c == 0xB7 || (c >= 0x300 && c <= 0x36F) ||
           (c >= 0x203F && c <= 0x2040);
}

static int is_alpha(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* ---- scanner state ------------------------------------------------------------ */

typedef struct scan {
    const unsigned char *line, *end;
    kbuf *out;
    const char *msg; /* first error */
    const unsigned char *at;
} scan;

/* Records an error at `at` (the first one wins) and returns NULL, so that
 * scanners can `return fail(...)`. A byte >= 0x80 that starts an ill-formed
 * UTF-8 sequence is reported as such rather than as msg. */
static const unsigned char *fail(scan *sc, const unsigned char *at, const char *msg)
{
    if (sc->msg) return NULL;
    if (at < sc->end && *at >= 0x80) {
        uint32_t cp;
        int bad;
        kutf8_decode(at, sc->end, &cp, &bad);
        if (bad) msg = "invalid UTF-8";
    }
    sc->msg = msg;
    sc->at = at;
    return NULL;
}

static const unsigned char *skip_ws(const unsigned char *p, const unsigned char *e)
{
    while (p < e && (*p == ' ' || *p == '\t')) p++;
    return p;
}

/* Reads the UCHAR at p ('\\' then 'u' or 'U'); returns the position after it
 * and sets *cp, or fails. */
static const unsigned char *read_uchar(scan *sc, const unsigned char *p, uint32_t *cp)
{
    const unsigned char *e = sc->end;
    int nd = p[1] == 'u' ? 4 : 8;
    if (e - (p + 2) < nd) return fail(sc, p, nd == 4 ? "invalid \\u escape (expected 4 hex digits)"
                                                     : "invalid \\U escape (expected 8 hex digits)");
    uint32_t v = 0;
    for (int i = 0; i < nd; i++) {
        int h = hexval(p[2 + i]);
        if (h < 0) return fail(sc, p, nd == 4 ? "invalid \\u escape (expected 4 hex digits)"
                                              : "invalid \\U escape (expected 8 hex digits)");
        v = v << 4 | (uint32_t)h;
    }
    if (v >= 0xD800 && v <= 0xDFFF) return fail(sc, p, "escape encodes a surrogate code point");
    if (v > 0x10FFFF) return fail(sc, p, "escape encodes a code point past U+10FFFF");
    *cp = v;
    return p + 2 + nd;
}

/* Validates one non-ASCII character at p (p < end); returns the position after it. */
static const unsigned char *utf8_char(scan *sc, const unsigned char *p, uint32_t *cp)
{
    int bad;
    size_t k = kutf8_decode(p, sc->end, cp, &bad);
    if (bad) return fail(sc, p, "invalid UTF-8");
    return p + k;
}

/* IRIREF at p (*p == '<'): appends the decoded IRI and a NUL to out. */
static const unsigned char *read_iri(scan *sc, const unsigned char *p)
{
    const unsigned char *open = p, *e = sc->end, *run;
    kbuf *out = sc->out;
    run = ++p;
    for (;;) {
        while (p < e && ascii_in(IRI_LO, IRI_HI, *p)) p++;
        if (p == e) return fail(sc, open, "unterminated IRI (expected '>')");
        unsigned char c = *p;
        if (c == '>') break;
        if (c >= 0x80) {
            uint32_t cp;
            if (!(p = utf8_char(sc, p, &cp))) return NULL;
            continue;
        }
        if (c == '\\') {
            kbuf_append(out, run, (size_t)(p - run));
            if (p + 1 == e || (p[1] != 'u' && p[1] != 'U'))
                return fail(sc, p, "invalid escape in IRI (only \\uXXXX and \\UXXXXXXXX)");
            uint32_t cp;
            const unsigned char *q = read_uchar(sc, p, &cp);
            if (!q) return NULL;
            if (cp < 0x80 && !ascii_in(IRI_LO, IRI_HI, (unsigned char)cp))
                return fail(sc, p, "escape encodes a character not allowed in an IRI");
            kbuf_put_cp(out, cp);
            run = p = q;
            continue;
        }
        return fail(sc, p, c == ' ' ? "space in IRI (expected '>')"
                                    : "character not allowed in an IRI (expected '>')");
    }
    kbuf_append(out, run, (size_t)(p - run));
    kbuf_putc(out, '\0');
    return p + 1;
}

/* STRING_LITERAL_QUOTE at p (*p == '"'): appends the decoded form and a NUL. */
static const unsigned char *read_string(scan *sc, const unsigned char *p)
{
    const unsigned char *open = p, *e = sc->end, *run;
    kbuf *out = sc->out;
    run = ++p;
    for (;;) {
        while (p < e && ascii_in(STR_LO, STR_HI, *p)) p++;
        if (p == e) return fail(sc, open, "unterminated literal (expected '\"')");
        unsigned char c = *p;
        if (c == '"') break;
        if (c >= 0x80) {
            uint32_t cp;
            if (!(p = utf8_char(sc, p, &cp))) return NULL;
            continue;
        }
        if (c == '\\') {
            kbuf_append(out, run, (size_t)(p - run));
            if (p + 1 == e) return fail(sc, p, "invalid escape (expected one of tbnrf\"'\\ or u, U)");
            char ch = 0;
            switch (p[1]) {
            case 't': ch = '\t'; break;
            case 'b': ch = '\b'; break;
            case 'n': ch = '\n'; break;
            case 'r': ch = '\r'; break;
            case 'f': ch = '\f'; break;
            case '"': ch = '"'; break;
            case '\'': ch = '\''; break;
            case '\\': ch = '\\'; break;
            case 'u':
            case 'U': {
                uint32_t cp;
                const unsigned char *q = read_uchar(sc, p, &cp);
                if (!q) return NULL;
                kbuf_put_cp(out, cp);
                run = p = q;
                continue;
            }
            default: return fail(sc, p, "invalid escape (expected one of tbnrf\"'\\ or u, U)");
            }
            kbuf_putc(out, ch);
            run = p += 2;
            continue;
        }
        return fail(sc, p, "line break in literal");
    }
    kbuf_append(out, run, (size_t)(p - run));
    kbuf_putc(out, '\0');
    return p + 1;
}

/* BLANK_NODE_LABEL at p (*p == '_'): appends the label (without "_:") and a NUL. */
static const unsigned char *read_bnode(scan *sc, const unsigned char *p)
{
    const unsigned char *e = sc->end;
    if (p + 1 == e || p[1] != ':') return fail(sc, p + 1, "expected ':' after '_' (blank node)");
    p += 2;
    const unsigned char *start = p, *last = NULL; /* last: just past the last PN_CHARS */
    uint32_t cp;
    if (p == e) return fail(sc, p, "expected a blank node label after '_:'");
    if (*p < 0x80) { cp = *p; p++; }
    else if (!(p = utf8_char(sc, p, &cp))) return NULL;
    if (!is_bnode_first(cp)) return fail(sc, start, "expected a blank node label after '_:'");
    last = p;
    while (p < e) {
        const unsigned char *q;
        if (*p < 0x80) { cp = *p; q = p + 1; }
        else {
            int bad;
            size_t k = kutf8_decode(p, e, &cp, &bad);
            if (bad) break; /* reported by whatever reads on from here */
            q = p + k;
        }
        if (cp == '.') { p = q; continue; }
        if (!is_pn_chars(cp)) break;
        p = last = q;
    }
    kbuf_append(sc->out, start, (size_t)(last - start));
    kbuf_putc(sc->out, '\0');
    return last; /* trailing dots are not part of the label */
}

/* Checks a comment from p (*p == '#') to the end of the line. */
static int check_comment(scan *sc, const unsigned char *p)
{
    const unsigned char *e = sc->end;
    while (p < e) {
        if (*p >= 0x80) {
            uint32_t cp;
            if (!(p = utf8_char(sc, p, &cp))) return -1;
        } else if (*p == '\n' || *p == '\r') {
            fail(sc, p, "line break inside a line");
            return -1;
        } else {
            p++;
        }
    }
    return 0;
}

/* Where a term's strings start in the scratch buffer (offsets, SIZE_MAX: none). */
typedef struct term_off {
    int kind;
    size_t v, vlen;
    size_t lang, lang_len; /* lang == SIZE_MAX: none */
    size_t dt, dt_len;     /* dt == SIZE_MAX: none */
} term_off;

static const unsigned char *read_iri_term(scan *sc, const unsigned char *p, term_off *t)
{
    t->kind = KNT_IRI;
    t->v = sc->out->len;
    p = read_iri(sc, p);
    if (p) t->vlen = sc->out->len - 1 - t->v;
    return p;
}

static const unsigned char *read_bnode_term(scan *sc, const unsigned char *p, term_off *t)
{
    t->kind = KNT_BNODE;
    t->v = sc->out->len;
    p = read_bnode(sc, p);
    if (p) t->vlen = sc->out->len - 1 - t->v;
    return p;
}

/* literal: string, optional WS, optional LANGTAG or '^^' WS* IRIREF. */
static const unsigned char *read_literal_term(scan *sc, const unsigned char *p, term_off *t)
{
    const unsigned char *e = sc->end;
    t->kind = KNT_LITERAL;
    t->v = sc->out->len;
    if (!(p = read_string(sc, p))) return NULL;
    t->vlen = sc->out->len - 1 - t->v;
    const unsigned char *q = skip_ws(p, e);
    if (q < e && *q == '@') {
        const unsigned char *tag = ++q;
        if (q == e || !is_alpha(*q)) return fail(sc, q, "language tag must start with a letter (expected [a-zA-Z])");
        while (q < e && is_alpha(*q)) q++;
        while (q < e && *q == '-') {
            q++;
            if (q == e || !(is_alpha(*q) || is_digit(*q)))
                return fail(sc, q, "expected a letter or digit after '-' in the language tag");
            while (q < e && (is_alpha(*q) || is_digit(*q))) q++;
        }
        t->lang = sc->out->len;
        t->lang_len = (size_t)(q - tag);
        kbuf_append(sc->out, tag, t->lang_len);
        kbuf_putc(sc->out, '\0');
        return q;
    }
    if (q < e && *q == '^') {
        if (q + 1 == e || q[1] != '^') return fail(sc, q + 1, "expected '^^' before a datatype IRI");
        q = skip_ws(q + 2, e);
        if (q == e || *q != '<') return fail(sc, q, "expected '<' (datatype IRI) after '^^'");
        t->dt = sc->out->len;
        if (!(q = read_iri(sc, q))) return NULL;
        t->dt_len = sc->out->len - 1 - t->dt;
        return q;
    }
    return p;
}

static void finish_term(const kbuf *out, const term_off *t, knt_term *k)
{
    k->kind = t->kind;
    k->value = out->data + t->v;
    k->len = t->vlen;
    if (t->lang != SIZE_MAX) { k->lang = out->data + t->lang; k->lang_len = t->lang_len; }
    if (t->dt != SIZE_MAX) { k->datatype = out->data + t->dt; k->dt_len = t->dt_len; }
}

static void zero_term(knt_term *k)
{
    if (k) memset(k, 0, sizeof *k);
}

int knt_parse_line(knt_parser *kp, const char *line, size_t n, knt_term *s, knt_term *pred,
                   knt_term *o, char *err, size_t errlen, int *col)
{
    if (n && line[n - 1] == '\r') n--;
    zero_term(s); zero_term(pred); zero_term(o);
    if (err && errlen) err[0] = '\0';
    if (col) *col = 0;

    scan sc = {(const unsigned char *)line, (const unsigned char *)line + n, &kp->out, NULL, NULL};
    const unsigned char *p = sc.line, *e = sc.end;
    term_off t[3];
    for (int i = 0; i < 3; i++) {
        memset(&t[i], 0, sizeof t[i]);
        t[i].lang = t[i].dt = SIZE_MAX;
    }
    kbuf_clear(&kp->out);
    kbuf_reserve(&kp->out, n + 8); /* decoded strings never outgrow their source */

    p = skip_ws(p, e);
    if (p == e || *p == '#') {
        if (p < e && check_comment(&sc, p) < 0) goto bad;
        return 0;
    }
    /* subject */
    if (*p == '<') p = read_iri_term(&sc, p, &t[0]);
    else if (*p == '_') p = read_bnode_term(&sc, p, &t[0]);
    else if (*p == '"') p = fail(&sc, p, "a literal cannot be a subject (expected '<' IRI or '_:' blank node)");
    else p = fail(&sc, p, "expected a subject ('<' IRI or '_:' blank node)");
    if (!p) goto bad;
    /* predicate */
    p = skip_ws(p, e);
    if (p == e) p = fail(&sc, p, "unexpected end of line (expected a predicate '<' IRI)");
    else if (*p == '<') p = read_iri_term(&sc, p, &t[1]);
    else if (*p == '_') p = fail(&sc, p, "a blank node cannot be a predicate (expected '<' IRI)");
    else if (*p == '"') p = fail(&sc, p, "a literal cannot be a predicate (expected '<' IRI)");
    else p = fail(&sc, p, "expected a predicate ('<' IRI)");
    if (!p) goto bad;
    /* object */
    p = skip_ws(p, e);
    if (p == e) p = fail(&sc, p, "unexpected end of line (expected an object: IRI, blank node or literal)");
    else if (*p == '<') p = read_iri_term(&sc, p, &t[2]);
    else if (*p == '_') p = read_bnode_term(&sc, p, &t[2]);
    else if (*p == '"') p = read_literal_term(&sc, p, &t[2]);
    else p = fail(&sc, p, "expected an object ('<' IRI, '_:' blank node or '\"' literal)");
    if (!p) goto bad;
    /* '.' then nothing but white space and a comment */
    p = skip_ws(p, e);
    if (p == e) { fail(&sc, p, "unexpected end of line (expected '.' to end the triple)"); goto bad; }
    if (*p != '.') { fail(&sc, p, "expected '.' to end the triple"); goto bad; }
    p = skip_ws(p + 1, e);
    if (p < e) {
        if (*p != '#') { fail(&sc, p, "trailing characters after '.' (expected end of line or '#' comment)"); goto bad; }
        if (check_comment(&sc, p) < 0) goto bad;
    }
    finish_term(&kp->out, &t[0], s);
    finish_term(&kp->out, &t[1], pred);
    finish_term(&kp->out, &t[2], o);
    return 1;

bad:
    if (err && errlen) snprintf(err, errlen, "%s", sc.msg);
    if (col) *col = (int)(sc.at - sc.line) + 1;
    return -1;
}

/* ---- TSV and name files ----------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* 1 for a blank line (empty or spaces only). */
static int blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ') return 0;
    return 1;
}

/* 0, or the 1-based column of the first ill-formed UTF-8 sequence. */
static size_t bad_utf8_col(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    while (p < e) {
        if (*p < 0x80) { p++; continue; }
        uint32_t cp;
        int bad;
        size_t k = kutf8_decode(p, e, &cp, &bad);
        if (bad) return (size_t)(p - (const unsigned char *)s) + 1;
        p += k;
    }
    return 0;
}

int ktsv_parse_line(const char *line, size_t n, const char *f[3], size_t len[3], char *err, size_t errlen)
{
    static const char *const names[3] = {"head", "relation", "tail"};
    if (err && errlen) err[0] = '\0';
    if (n && line[n - 1] == '\r') n--;
    if (blank(line, n)) return 0;
    size_t c = bad_utf8_col(line, n);
    if (c) { set_err(err, errlen, "invalid UTF-8 at column %d", (int)c); return -1; }
    size_t start = 0;
    int nf = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && line[i] != '\t') continue;
        if (nf < 3) { f[nf] = line + start; len[nf] = i - start; }
        nf++;
        start = i + 1;
    }
    if (nf != 3) {
        set_err(err, errlen, "expected 3 tab-separated fields (head, relation, tail), found %d", nf);
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        if (blank(f[i], len[i])) {
            set_err(err, errlen, "field %d (%s) is empty", i + 1, names[i]);
            return -1;
        }
    }
    return 1;
}

int kname_parse_line(const char *line, size_t n, int split_gloss, const char **id, size_t *id_len,
                     const char **label, size_t *label_len, const char **desc, size_t *desc_len,
                     char *err, size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    *id = *label = *desc = NULL;
    *id_len = *label_len = *desc_len = 0;
    if (n && line[n - 1] == '\r') n--;
    if (blank(line, n)) return 0;
    size_t c = bad_utf8_col(line, n);
    if (c) { set_err(err, errlen, "invalid UTF-8 at column %d", (int)c); return -1; }
    const char *tab = memchr(line, '\t', n);
    if (!tab) { set_err(err, errlen, "expected 'id TAB name' (no tab found)"); return -1; }
    size_t il = (size_t)(tab - line);
    if (blank(line, il)) { set_err(err, errlen, "empty id (column %d)", 1); return -1; }
    const char *name = tab + 1;
    size_t nl = n - il - 1;
    const char *tab2 = memchr(name, '\t', nl);
    if (tab2) {
        set_err(err, errlen, "expected 2 tab-separated fields (id, name), found a tab at column %d",
                (int)(tab2 - line) + 1);
        return -1;
    }
    if (blank(name, nl)) { set_err(err, errlen, "empty name (column %d)", (int)il + 2); return -1; }
    *id = line; *id_len = il;
    *label = name; *label_len = nl;
    if (split_gloss) {
        for (size_t i = 0; i + 1 < nl; i++) {
            if (name[i] == ',' && name[i + 1] == ' ') {
                if (blank(name, i)) {
                    set_err(err, errlen, "empty label before ', ' (column %d)", (int)il + 2);
                    *id = *label = NULL; *id_len = *label_len = 0;
                    return -1;
                }
                *label_len = i;
                *desc = name + i + 2;
                *desc_len = nl - i - 2;
                break;
            }
        }
    }
    return 1;
}
