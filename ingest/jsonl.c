/* jsonl.c: kjson_extract (jsonl.h), a validating one-pass scanner that pulls
 * a few top-level fields out of one JSONL line without building a tree.
 *
 * Grammar (RFC 8259) as scanned here; ws is space, \t, \n, \r only:
 *   line    = ws object ws
 *   value   = object / array / string / number / "true" / "false" / "null"
 *   object  = '{' ws [ member *( ws ',' ws member ) ] ws '}'
 *   member  = string ws ':' ws value
 *   array   = '[' ws [ value *( ws ',' ws value ) ] ws ']'
 *   number  = [ '-' ] ( '0' / [1-9] *DIGIT ) [ '.' 1*DIGIT ]
 *             [ ( 'e' / 'E' ) [ '+' / '-' ] 1*DIGIT ]
 *   string  = '"' *( plain / TAB / escape ) '"'
 *   plain   = any byte but '"', '\' and 0x00-0x1F (>= 0x80 passed through)
 *   escape  = '\' ( '"' / '\' / '/' / 'b' / 'f' / 'n' / 'r' / 't' / 'u' 4HEXDIG )
 *
 * The scanner is a state machine (labels joined by gotos) with an explicit
 * stack of open containers (one byte each, at most KJ_MAX_DEPTH), so hostile
 * nesting costs no recursion:
 *   open_object at '{': push, then '}' (empty) or member
 *   member      at a key of the innermost (object) container, then ':' value
 *   value       at any value; '{' / '[' push and go to member / value
 *   value_done  after a value: ',' goes on, '}' / ']' pops, depth 0 ends
 * Only members of the depth-1 object are matched against the wanted fields.
 * Their string values are decoded into the field's kbuf; every other string
 * is validated without copying. Plain runs inside strings are found 64/16
 * bytes at a time with SSE2 (8 at a time with SWAR otherwise): a run ends at
 * '"', '\\' or a byte < 0x20 (a tab then continues the run). */
#include "ingest/jsonl.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#if defined(__SSE2__) && !defined(KJSON_NO_SIMD)
#include <emmintrin.h>
#define KJ_SSE2 1
#endif

#define KJ_MAX_DEPTH 512

/* The line being scanned and where errors go. */
typedef struct scan {
    const char *s, *end; /* s[0..n) */
    char *err;
    size_t errlen;
    int *col;
} scan;

/* Records an error at byte at (end of input if at == end); returns NULL so
 * that callers can `return fail(...)` from pointer-valued functions. */
static const char *fail(const scan *sc, const char *at, const char *msg)
{
    if (sc->col) {
        size_t c = (size_t)(at - sc->s) + 1;
        *sc->col = c > (size_t)INT_MAX ? INT_MAX : (int)c;
    }
    if (sc->err && sc->errlen) snprintf(sc->err, sc->errlen, "%s", msg);
    return NULL;
}

/* fail() with "unexpected end of input" when at is the end. */
static const char *fail_at(const scan *sc, const char *at, const char *msg)
{
    return fail(sc, at, at == sc->end ? "unexpected end of input" : msg);
}

static inline const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return p;
}

static inline int is_digit(char c) { return c >= '0' && c <= '9'; }

/* ---- plain runs ------------------------------------------------------------
 * Returns the first byte of p[0..end) that is '"', '\\' or < 0x20, or end. */
#ifdef KJ_SSE2
static inline __m128i special16(__m128i v)
{
    const __m128i q = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\'), c1f = _mm_set1_epi8(0x1f);
    /* unsigned v <= 0x1f  <=>  min(v, 0x1f) == v */
    return _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, q), _mm_cmpeq_epi8(v, bs)),
                        _mm_cmpeq_epi8(_mm_min_epu8(v, c1f), v));
}
#endif

static inline const char *plain_run(const char *p, const char *end)
{
#ifdef KJ_SSE2
    while (end - p >= 64) {
        __m128i a = special16(_mm_loadu_si128((const __m128i *)(const void *)p));
        __m128i b = special16(_mm_loadu_si128((const __m128i *)(const void *)(p + 16)));
        __m128i c = special16(_mm_loadu_si128((const __m128i *)(const void *)(p + 32)));
        __m128i d = special16(_mm_loadu_si128((const __m128i *)(const void *)(p + 48)));
        if (_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d)))) {
            uint64_t m = (uint64_t)(unsigned)_mm_movemask_epi8(a)
                       | (uint64_t)(unsigned)_mm_movemask_epi8(b) << 16
                       | (uint64_t)(unsigned)_mm_movemask_epi8(c) << 32
                       | (uint64_t)(unsigned)_mm_movemask_epi8(d) << 48;
            return p + __builtin_ctzll(m);
        }
        p += 64;
    }
    while (end - p >= 16) {
        unsigned m = (unsigned)_mm_movemask_epi8(
            special16(_mm_loadu_si128((const __m128i *)(const void *)p)));
        if (m) return p + __builtin_ctz(m);
        p += 16;
    }
#else
    /* SWAR: a byte-wise "has zero" / "has less than" test on 8 bytes; exact
     * for "any", so a hit only sends the scalar loop below to find it. */
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    while (end - p >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        uint64_t xq = x ^ (ones * '"'), xb = x ^ (ones * '\\');
        uint64_t hit = ((xq - ones) & ~xq) | ((xb - ones) & ~xb) | ((x - ones * 0x20) & ~x);
        if (hit & high) break;
        p += 8;
    }
#endif
    for (; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\' || c < 0x20) return p;
    }
    return end;
}

/* ---- escapes --------------------------------------------------------------- */

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return -1;
        v = v << 4 | d;
    }
    return v;
}

/* Decodes the escape at p ('\\', p + 1 < end) into out (1 to 4 UTF-8 bytes,
 * count in *len). Returns the byte after it, or NULL if invalid (*len then
 * says which: 0 a bad escape letter, 1 bad \u hex digits). */
static const char *decode_escape(const char *p, const char *end, char out[4], int *len)
{
    char c = p[1];
    *len = 1;
    switch (c) {
    case '"': case '\\': case '/': out[0] = c; return p + 2;
    case 'b': out[0] = '\b'; return p + 2;
    case 'f': out[0] = '\f'; return p + 2;
    case 'n': out[0] = '\n'; return p + 2;
    case 'r': out[0] = '\r'; return p + 2;
    case 't': out[0] = '\t'; return p + 2;
    case 'u': break;
    default: *len = 0; return NULL;
    }
    int cp = end - p >= 6 ? hex4(p + 2) : -1;
    if (cp < 0) return NULL; /* *len == 1 */
    p += 6;
    if (cp >= 0xD800 && cp < 0xDC00) {
        int lo = end - p >= 6 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2) : -1;
        if (lo >= 0xDC00 && lo < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p += 6;
        } else {
            cp = 0xFFFD; /* high surrogate without a low one */
        }
    } else if (cp >= 0xDC00 && cp < 0xE000) {
        cp = 0xFFFD; /* low surrogate alone */
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
    } else if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        *len = 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        *len = 3;
    } else {
        out[0] = (char)(0xF0 | cp >> 18);
        out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
        out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[3] = (char)(0x80 | (cp & 0x3F));
        *len = 4;
    }
    return p;
}

/* Appends p[0..n) to b (kbuf_append, inlined for the many short runs around
 * escapes). A short run is copied as a fixed 16 bytes when the line has them
 * (end - p >= 16): one unaligned load/store instead of a memcpy call; the
 * bytes past n land in b's spare room and are overwritten later. */
static inline void put(kbuf *b, const char *p, size_t n, const char *end)
{
    if (b->cap - b->len <= n + 16) kbuf_reserve(b, n + 16);
    char *d = b->data + b->len;
    if (n <= 16 && end - p >= 16) memcpy(d, p, 16);
    else memcpy(d, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

/* ---- strings ----------------------------------------------------------------
 * Scans the string whose opening quote is at open. Decodes it into out (if
 * not NULL; appended, the caller clears) and sets *escaped if it had escapes.
 * Returns the byte after the closing quote, or NULL (error recorded). */
static const char *scan_string(const scan *sc, const char *open, kbuf *out, int *escaped)
{
    const char *end = sc->end;
    const char *run = open + 1; /* start of the pending plain run */
    const char *p = run;
    for (;;) {
        p = plain_run(p, end);
        if (p == end) return fail(sc, open, "unterminated string");
        char c = *p;
        if (c == '"') {
            if (out) put(out, run, (size_t)(p - run), end);
            return p + 1;
        }
        if (c == '\\') {
            if (end - p < 2) return fail(sc, open, "unterminated string");
            if (out) put(out, run, (size_t)(p - run), end);
            char u[4];
            int ul;
            const char *q = decode_escape(p, end, u, &ul);
            if (!q) return fail(sc, p, ul ? "invalid \\u escape (expected 4 hex digits)" : "invalid escape");
            if (out) put(out, u, (size_t)ul, u + 4);
            *escaped = 1;
            p = run = q;
            continue;
        }
        if (c == '\t') { p++; continue; } /* leniency: raw tab stays in the run */
        return fail(sc, p, "control character in string");
    }
}

/* Does the (valid) raw escaped key k[0..kn) decode to the C string key? */
static int escaped_key_equals(const char *key, const char *k, size_t kn)
{
    const char *end = k + kn;
    size_t i = 0;
    while (k < end) {
        char u[4];
        int ul = 1;
        if (*k == '\\') {
            k = decode_escape(k, end, u, &ul);
            if (!k) return 0; /* cannot happen: validated */
        } else {
            u[0] = *k++;
        }
        for (int j = 0; j < ul; j++, i++)
            if (key[i] == '\0' || key[i] != u[j]) return 0;
    }
    return key[i] == '\0';
}

/* Index of the first field named k[0..kn) (raw, escapes iff escaped), or -1. */
static int find_field(const kjson_field *f, int nf, const char *k, size_t kn, int escaped)
{
    for (int i = 0; i < nf; i++) {
        const char *key = f[i].key;
        if (!key) continue;
        /* an unescaped key holds no NUL, so strncmp stops at key's own end */
        if (escaped ? escaped_key_equals(key, k, kn) : strncmp(key, k, kn) == 0 && key[kn] == '\0')
            return i;
    }
    return -1;
}

/* The buffer that receives the value of field i: its own, or if NULL that of
 * a later field with the same key (NULL if none has one). */
static kbuf *target(const kjson_field *f, int nf, int i)
{
    for (int j = i; j < nf; j++)
        if (f[j].value && (j == i || (f[j].key && strcmp(f[j].key, f[i].key) == 0))) return f[j].value;
    return NULL;
}

/* Gives the later fields with the same key as f[i] the same type, and a copy
 * of src (the value, if STRING or INTEGER). */
static void copy_to_duplicates(kjson_field *f, int nf, int i, const kbuf *src)
{
    for (int j = i + 1; j < nf; j++) {
        if (!f[j].key || strcmp(f[j].key, f[i].key) != 0) continue;
        f[j].type = f[i].type;
        if ((f[i].type == KJ_STRING || f[i].type == KJ_INTEGER) && f[j].value && f[j].value != src) {
            kbuf_clear(f[j].value);
            kbuf_append(f[j].value, src->data, src->len);
        }
    }
}

/* ---- numbers and literals -------------------------------------------------- */

/* Scans the number at p; *is_int says it had no fraction nor exponent. */
static const char *scan_number(const scan *sc, const char *p, int *is_int)
{
    const char *end = sc->end;
    if (*p == '-') {
        p++;
        if (p == end || !is_digit(*p)) return fail_at(sc, p, "expected a digit after '-'");
    }
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p)) return fail(sc, p, "leading zero in number");
    } else {
        while (p < end && is_digit(*p)) p++;
    }
    *is_int = 1;
    if (p < end && *p == '.') {
        p++;
        if (p == end || !is_digit(*p)) return fail_at(sc, p, "expected a digit after '.'");
        while (p < end && is_digit(*p)) p++;
        *is_int = 0;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p == end || !is_digit(*p)) return fail_at(sc, p, "expected a digit in the exponent");
        while (p < end && is_digit(*p)) p++;
        *is_int = 0;
    }
    return p;
}

static const char *scan_literal(const scan *sc, const char *p)
{
    static const char *const lits[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(lits[i]);
        if (*p == lits[i][0])
            return (size_t)(sc->end - p) >= l && memcmp(p, lits[i], l) == 0
                       ? p + l
                       : fail(sc, p, "invalid literal (expected true, false or null)");
    }
    return fail(sc, p, "expected a value");
}

/* ---- the scanner --------------------------------------------------------- */

static int error(const scan *sc, const char *at, const char *msg)
{
    fail(sc, at, msg);
    return -1;
}

static int error_at(const scan *sc, const char *at, const char *msg)
{
    fail_at(sc, at, msg);
    return -1;
}

static int extract(const scan *sc, kjson_field *fields, int nfields)
{
    const char *end = sc->end;
    unsigned char stack[KJ_MAX_DEPTH]; /* '{' or '[' per open container */
    int depth = 0;
    int want = -1; /* field for the value at hand (a depth-1 member's) */
    int escaped, is_int;

    const char *p = skip_ws(sc->s, end);
    if (p == end) return error(sc, p, "empty line");
    if (*p != '{') return error(sc, p, "a JSON line must be an object");

open_object: /* p at '{' */
    if (depth == KJ_MAX_DEPTH) return error(sc, p, "nesting deeper than 512");
    stack[depth++] = '{';
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}') {
        p++;
        depth--;
        goto value_done;
    }

member: /* p at the key of a member of the innermost object */
    if (p == end || *p != '"') return error_at(sc, p, "expected a string key");
    {
        const char *k = p + 1;
        escaped = 0;
        if (!(p = scan_string(sc, p, NULL, &escaped))) return -1;
        want = depth == 1 ? find_field(fields, nfields, k, (size_t)(p - 1 - k), escaped) : -1;
    }
    p = skip_ws(p, end);
    if (p == end || *p != ':') return error_at(sc, p, "expected ':'");
    p = skip_ws(p + 1, end);

value: /* p at a value */
    if (p == end) return error(sc, p, "unexpected end of input");
    switch (*p) {
    case '"':
        if (want >= 0) {
            kbuf *v = target(fields, nfields, want);
            if (v) kbuf_clear(v);
            if (!(p = scan_string(sc, p, v, &escaped))) return -1;
            fields[want].type = KJ_STRING;
            copy_to_duplicates(fields, nfields, want, v);
            want = -1;
        } else if (!(p = scan_string(sc, p, NULL, &escaped))) {
            return -1;
        }
        break;
    case '{': case '[':
        if (want >= 0) {
            fields[want].type = KJ_OTHER;
            copy_to_duplicates(fields, nfields, want, NULL);
            want = -1;
        }
        if (*p == '{') goto open_object;
        if (depth == KJ_MAX_DEPTH) return error(sc, p, "nesting deeper than 512");
        stack[depth++] = '[';
        p = skip_ws(p + 1, end);
        if (p < end && *p == ']') {
            p++;
            depth--;
            goto value_done;
        }
        goto value;
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9': {
        const char *num = p;
        if (!(p = scan_number(sc, p, &is_int))) return -1;
        if (want >= 0) {
            kbuf *v = is_int ? target(fields, nfields, want) : NULL;
            fields[want].type = is_int ? KJ_INTEGER : KJ_OTHER;
            if (v) {
                kbuf_clear(v);
                kbuf_append(v, num, (size_t)(p - num));
            }
            copy_to_duplicates(fields, nfields, want, v);
            want = -1;
        }
        break;
    }
    default:
        if (!(p = scan_literal(sc, p))) return -1;
        if (want >= 0) {
            fields[want].type = KJ_OTHER;
            copy_to_duplicates(fields, nfields, want, NULL);
            want = -1;
        }
        break;
    }

value_done: /* a value (or a whole container) ended just before p */
    p = skip_ws(p, end);
    if (depth == 0) return p == end ? 0 : error(sc, p, "trailing characters after the value");
    if (stack[depth - 1] == '{') {
        if (p < end && *p == ',') {
            p = skip_ws(p + 1, end);
            if (p < end && *p == '}') return error(sc, p, "trailing comma before '}'");
            goto member;
        }
        if (p < end && *p == '}') {
            p++;
            depth--;
            goto value_done;
        }
        return error_at(sc, p, "expected ',' or '}'");
    }
    if (p < end && *p == ',') {
        p = skip_ws(p + 1, end);
        if (p < end && *p == ']') return error(sc, p, "trailing comma before ']'");
        goto value;
    }
    if (p < end && *p == ']') {
        p++;
        depth--;
        goto value_done;
    }
    return error_at(sc, p, "expected ',' or ']'");
}

int kjson_extract(const char *s, size_t n, kjson_field *fields, int nfields,
                  char *err, size_t errlen, int *col)
{
    if (!s) s = "", n = 0; /* a NULL line is taken as an empty one */
    scan sc = {s, s + n, err, errlen, col};
    if (err && errlen) err[0] = '\0';
    if (col) *col = 0;
    if (nfields < 0 || !fields) nfields = 0;
    for (int i = 0; i < nfields; i++) fields[i].type = KJ_MISSING;
    if (extract(&sc, fields, nfields) == 0) return 0;
    for (int i = 0; i < nfields; i++) fields[i].type = KJ_MISSING;
    return -1;
}
