/* test_kgparse.c: unit tests of kg/parse.h, the knowledge-graph line parsers:
 * - knt_parse_line on every line of a real Wikidata truthy N-Triples sample
 *   (tests/data/kg/wikidata-dump-head.nt: 105 triples; counts of IRI objects,
 *   literals, language tags and datatypes, the decoded \U escapes);
 * - W3C N-Triples test suite style cases: valid lines (comments, tabs, no
 *   white space at all, \u and \U escapes in IRIs and literals, every ECHAR,
 *   language tags with subtags, datatypes, blank node labels with dots,
 *   digits and non-ASCII, '#' inside IRIs and literals, empty literals, raw
 *   UTF-8, a trailing CR) and invalid ones (missing '.', bad escapes,
 *   unterminated IRI and literal, space in an IRI, a literal as subject, a
 *   blank node as predicate, bad language tags, trailing garbage, surrogate
 *   and out-of-range escapes, ill-formed UTF-8 anywhere, Turtle-only syntax),
 *   with the message and the 1-based error column;
 * - scratch buffer growth across a 1 MB literal (pointers stay valid);
 * - ktsv_parse_line (FB15k-237 style lines, CRLF, wrong field counts, empty
 *   fields) and kname_parse_line (WN18RR "lemma, gloss", FB names without a
 *   gloss, names without a comma, malformed lines).
 *
 * Every input is passed in an exact-size heap copy, so that AddressSanitizer
 * catches any read past n. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kg/parse.h"
#include "util/util.h"

#ifndef KILN_SOURCE_DIR
#define KILN_SOURCE_DIR "."
#endif

/* ---- helpers ----------------------------------------------------------------- */

/* An exact-size heap copy of s[0..n) (no NUL after it). */
static char *dup_exact(const char *s, size_t n)
{
    char *c = malloc(n ? n : 1);
    assert_non_null(c);
    memcpy(c, s, n);
    return c;
}

typedef struct res {
    int rc, col;
    char err[160];
    knt_term s, p, o;
} res;

static void nt_parse_n(knt_parser *kp, const char *line, size_t n, res *r)
{
    char *c = dup_exact(line, n);
    memset(r, 0, sizeof *r);
    r->rc = knt_parse_line(kp, c, n, &r->s, &r->p, &r->o, r->err, sizeof r->err, &r->col);
    free(c); /* the terms point into the parser, never into the line */
}

static void nt_parse(knt_parser *kp, const char *line, res *r) { nt_parse_n(kp, line, strlen(line), r); }

static void check_str(const char *got, size_t got_len, const char *want, size_t want_len, const char *line)
{
    if (!want) {
        if (got) fail_msg("line %s: expected no string, got '%.*s'", line, (int)got_len, got);
        return;
    }
    if (!got || got_len != want_len || memcmp(got, want, want_len) != 0)
        fail_msg("line %s: expected '%s' (%zu bytes), got '%.*s' (%zu bytes)", line, want, want_len,
                 got ? (int)got_len : 6, got ? got : "(null)", got_len);
    assert_int_equal(got[got_len], '\0'); /* NUL-terminated after len */
}

/* ---- the Wikidata sample ---------------------------------------------------------- */

static void test_wikidata_sample(void **state)
{
    (void)state;
    kbuf b = {0};
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/data/kg/wikidata-dump-head.nt", KILN_SOURCE_DIR);
    assert_int_equal(kbuf_read_file(&b, path), 0);
    knt_parser *kp = knt_parser_new();
    int lines = 0, triples = 0, iri_obj = 0, lits = 0, langs = 0, dts = 0, bnodes = 0;
    int q31_subject = 0, flags = 0, koenigreich = 0, dt_datetime = 0, dt_decimal = 0;
    size_t pos = 0;
    while (pos < b.len) {
        char *nl = memchr(b.data + pos, '\n', b.len - pos);
        size_t n = nl ? (size_t)(nl - (b.data + pos)) : b.len - pos;
        res r;
        nt_parse_n(kp, b.data + pos, n, &r);
        lines++;
        if (r.rc != 1) fail_msg("line %d: rc %d col %d: %s", lines, r.rc, r.col, r.err);
        triples++;
        assert_true(r.s.kind == KNT_IRI || r.s.kind == KNT_BNODE);
        assert_int_equal(r.p.kind, KNT_IRI);
        assert_true(strncmp(r.p.value, "http", 4) == 0);
        if (!strcmp(r.s.value, "http://www.wikidata.org/entity/Q31")) q31_subject++;
        if (r.s.kind == KNT_BNODE || r.o.kind == KNT_BNODE) bnodes++;
        if (r.o.kind == KNT_IRI) iri_obj++;
        if (r.o.kind == KNT_LITERAL) {
            lits++;
            if (r.o.lang) langs++;
            if (r.o.datatype) {
                dts++;
                assert_null(r.o.lang);
                if (!strcmp(r.o.datatype, "http://www.w3.org/2001/XMLSchema#dateTime")) dt_datetime++;
                if (!strcmp(r.o.datatype, "http://www.w3.org/2001/XMLSchema#decimal")) dt_decimal++;
            }
            /* P487: "\U0001F1E7\U0001F1EA", the Belgian flag's regional indicators */
            if (!strcmp(r.o.value, "\xF0\x9F\x87\xA7\xF0\x9F\x87\xAA")) flags++;
            if (!strcmp(r.o.value, "K\xC3\xB6nigreich Belgien")) {
                koenigreich++;
                check_str(r.o.lang, r.o.lang_len, "de", 2, "Koenigreich");
            }
        }
        pos += n + 1;
    }
    assert_int_equal(lines, 105);
    assert_int_equal(triples, 105);
    assert_int_equal(iri_obj, 68);
    assert_int_equal(lits, 37);
    assert_int_equal(langs, 6);
    assert_int_equal(dts, 8);
    assert_int_equal(dt_datetime, 2);
    assert_int_equal(dt_decimal, 3);
    assert_int_equal(bnodes, 0);
    assert_int_equal(flags, 1);
    assert_int_equal(koenigreich, 1);
    assert_true(q31_subject >= 80);
    knt_parser_free(kp);
    kbuf_free(&b);
}

/* ---- valid lines ----------------------------------------------------------------- */

typedef struct ok_case {
    const char *line;
    size_t n;                 /* 0: strlen(line) */
    int sk; const char *sv; size_t svn;
    const char *pv;
    int ok; const char *ov; size_t ovn;  /* ovn 0: strlen(ov) */
    const char *lang, *dt;
} ok_case;

#define EX "http://example/"
#define XSD "http://www.w3.org/2001/XMLSchema#"

static const ok_case ok_cases[] = {
    /* nt-syntax-uri-01..04 */
    {"<http://example/s> <http://example/p> <http://example/o> .", 0, KNT_IRI, EX "s", 0, EX "p", KNT_IRI, EX "o", 0, NULL, NULL},
    {"<http://example/\\u0053> <http://example/p> <http://example/o> .", 0, KNT_IRI, EX "S", 0, EX "p", KNT_IRI, EX "o", 0, NULL, NULL},
    {"<http://example/\\U00000053> <http://example/p> <http://example/o> .", 0, KNT_IRI, EX "S", 0, EX "p", KNT_IRI, EX "o", 0, NULL, NULL},
    {"<scheme:!$%25&'()*+,-./0123456789:/@ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~?#> <http://example/p> <http://example/o> .", 0,
     KNT_IRI, "scheme:!$%25&'()*+,-./0123456789:/@ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~?#", 0, EX "p", KNT_IRI, EX "o", 0, NULL, NULL},
    /* string literals */
    {"<http://example/s> <http://example/p> \"string\" .", 0, KNT_IRI, EX "s", 0, EX "p", KNT_LITERAL, "string", 0, NULL, NULL},
    {"<http://example/s> <http://example/p> \"string\"@en .", 0, KNT_IRI, EX "s", 0, EX "p", KNT_LITERAL, "string", 0, "en", NULL},
    {"<http://example/s> <http://example/p> \"string\"@en-uk .", 0, KNT_IRI, EX "s", 0, EX "p", KNT_LITERAL, "string", 0, "en-uk", NULL},
    {"<s> <p> \"x\"@de-CH-1996 .", 0, KNT_IRI, "s", 0, "p", KNT_LITERAL, "x", 0, "de-CH-1996", NULL},
    {"<s> <p> \"x\"@EN .", 0, KNT_IRI, "s", 0, "p", KNT_LITERAL, "x", 0, "EN", NULL},
    {"<s> <p> \"x\"@zh-Hant-TW-x-private1 .", 0, KNT_IRI, "s", 0, "p", KNT_LITERAL, "x", 0, "zh-Hant-TW-x-private1", NULL},
    {"<s> <p> \"x\"@en.", 0, KNT_IRI, "s", 0, "p", KNT_LITERAL, "x", 0, "en", NULL},
    /* every ECHAR (nt-syntax-str-esc-01..03 style) */
    {"<s> <p> \"a\\tb\\bc\\nd\\re\\ff\\\"g\\'h\\\\i\" .", 0, KNT_IRI, "s", 0, "p", KNT_LITERAL, "a\tb\bc\nd\re\ff\"g'h\\i", 0, NULL, NULL},
    {"<s> <p> \"\\\\\" .", 0, KNT_IRI, "s", 0, "p", KNT_LITERAL, "\\", 0, NULL, NULL},
    /* UCHAR in literals */
    {"<s> <p> \"\\u0073tring\" .", 0, KNT_IRI, "s", 0, "p", KNT_LITERAL, "string", 0, NULL, NULL},
    {"<s> <p> \"\\U00000073tring\" .", 0, KNT_IRI, "s", 0, "p", KNT_LITERAL, "string", 0, NULL, NULL},
    {"<s> <p> \"\\u00e9\\u00E9\\u20AC\\U0001F600\\U0010FFFF\" .", 0, KNT_IRI, "s", 0, "p", KNT_LITERAL,
     "\xC3\xA9\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF", 0, NULL, NULL},
    {"<s> <p> \"a\\u0000b\" .", 0, KNT_IRI, "s", 0, "p", KNT_LITERAL, "a\0b", 3, NULL, NULL},
    /* raw UTF-8 and raw tab in literals and IRIs */
    {"<http://example/\xC3\xB6> <p> \"K\xC3\xB6nig \xE2\x82\xAC \xF0\x9F\x98\x80\tx\" .", 0, KNT_IRI, EX "\xC3\xB6", 0, "p", KNT_LITERAL,
     "K\xC3\xB6nig \xE2\x82\xAC \xF0\x9F\x98\x80\tx", 0, NULL, NULL},
    {"<s> <p> \"\\u00e9\" .", 0, KNT_IRI, "s", 0, "p", KNT_LITERAL, "\xC3\xA9", 0, NULL, NULL},
    /* \u in an IRI decoding to non-ASCII */
    {"<http://example/\\u00E9\\U0001F600> <p> <o> .", 0, KNT_IRI, EX "\xC3\xA9\xF0\x9F\x98\x80", 0, "p", KNT_IRI, "o", 0, NULL, NULL},
    /* datatypes (nt-syntax-datatypes-01/02) */
    {"<http://example/s> <http://example/p> \"123\"^^<http://www.w3.org/2001/XMLSchema#byte> .", 0,
     KNT_IRI, EX "s", 0, EX "p", KNT_LITERAL, "123", 0, NULL, XSD "byte"},
    {"<s> <p> \"\"^^<http://www.w3.org/2001/XMLSchema#string> .", 0, KNT_IRI, "s", 0, "p", KNT_LITERAL, "", 0, NULL, XSD "string"},
    {"<s> <p> \"1\"^^<http://example/\\u0064t>.", 0, KNT_IRI, "s", 0, "p", KNT_LITERAL, "1", 0, NULL, EX "dt"},
    {"<s> <p> \"1\" ^^ <dt> .", 0, KNT_IRI, "s", 0, "p", KNT_LITERAL, "1", 0, NULL, "dt"},
    /* empty literal, literal and IRI containing '#' */
    {"<s> <p> \"\" .", 0, KNT_IRI, "s", 0, "p", KNT_LITERAL, "", 0, NULL, NULL},
    {"<s> <p> \"a # not a comment\" . # a comment", 0, KNT_IRI, "s", 0, "p", KNT_LITERAL, "a # not a comment", 0, NULL, NULL},
    {"<s#frag> <p> <o#x> .", 0, KNT_IRI, "s#frag", 0, "p", KNT_IRI, "o#x", 0, NULL, NULL},
    /* blank nodes (nt-syntax-bnode-01..03 style) */
    {"_:a <http://example/p> <http://example/o> .", 0, KNT_BNODE, "a", 0, EX "p", KNT_IRI, EX "o", 0, NULL, NULL},
    {"<http://example/s> <http://example/p> _:a .", 0, KNT_IRI, EX "s", 0, EX "p", KNT_BNODE, "a", 0, NULL, NULL},
    {"_:1a <p> _:a1 .", 0, KNT_BNODE, "1a", 0, "p", KNT_BNODE, "a1", 0, NULL, NULL},
    {"_:a.b.c <p> _:x..y .", 0, KNT_BNODE, "a.b.c", 0, "p", KNT_BNODE, "x..y", 0, NULL, NULL},
    {"<s> <p> _:o.", 0, KNT_IRI, "s", 0, "p", KNT_BNODE, "o", 0, NULL, NULL},
    {"_:_x-y_z <p> _::x .", 0, KNT_BNODE, "_x-y_z", 0, "p", KNT_BNODE, ":x", 0, NULL, NULL},
    {"_:r\xC3\xA9sum\xC3\xA9\xC2\xB7\xCC\x81 <p> _:\xE4\xB8\xAD\xE6\x96\x87 .", 0, KNT_BNODE, "r\xC3\xA9sum\xC3\xA9\xC2\xB7\xCC\x81", 0, "p",
     KNT_BNODE, "\xE4\xB8\xAD\xE6\x96\x87", 0, NULL, NULL},
    {"_:b<p>_:c.", 0, KNT_BNODE, "b", 0, "p", KNT_BNODE, "c", 0, NULL, NULL},
    /* white space: none, tabs, leading/trailing, trailing CR, comments after the triple */
    {"<a><b><c>.", 0, KNT_IRI, "a", 0, "b", KNT_IRI, "c", 0, NULL, NULL},
    {"<a><b>\"c\"@en.", 0, KNT_IRI, "a", 0, "b", KNT_LITERAL, "c", 0, "en", NULL},
    {"\t<a>\t<b>\t<c>\t.\t", 0, KNT_IRI, "a", 0, "b", KNT_IRI, "c", 0, NULL, NULL},
    {"   <a>   <b>   \"c\"   .   ", 0, KNT_IRI, "a", 0, "b", KNT_LITERAL, "c", 0, NULL, NULL},
    {"<a> <b> <c> .\r", 0, KNT_IRI, "a", 0, "b", KNT_IRI, "c", 0, NULL, NULL},
    {"<a> <b> <c> .#comment", 0, KNT_IRI, "a", 0, "b", KNT_IRI, "c", 0, NULL, NULL},
    {"<a> <b> <c> . # comment with <iri> and \"quotes\" and UTF-8 \xC3\xB6", 0, KNT_IRI, "a", 0, "b", KNT_IRI, "c", 0, NULL, NULL},
    /* relative IRIs are accepted; DEL is allowed by IRIREF */
    {"<s> <p> <../o\x7F> .", 0, KNT_IRI, "s", 0, "p", KNT_IRI, "../o\x7F", 0, NULL, NULL},
    /* empty IRI is a valid (relative) IRIREF */
    {"<> <p> <o> .", 0, KNT_IRI, "", 0, "p", KNT_IRI, "o", 0, NULL, NULL},
};

static void test_nt_valid(void **state)
{
    (void)state;
    knt_parser *kp = knt_parser_new();
    for (size_t i = 0; i < sizeof ok_cases / sizeof ok_cases[0]; i++) {
        const ok_case *c = &ok_cases[i];
        size_t n = c->n ? c->n : strlen(c->line);
        res r;
        nt_parse_n(kp, c->line, n, &r);
        if (r.rc != 1) fail_msg("case %zu <%s>: rc %d col %d: %s", i, c->line, r.rc, r.col, r.err);
        assert_int_equal(r.s.kind, c->sk);
        check_str(r.s.value, r.s.len, c->sv, c->svn ? c->svn : strlen(c->sv), c->line);
        assert_int_equal(r.p.kind, KNT_IRI);
        check_str(r.p.value, r.p.len, c->pv, strlen(c->pv), c->line);
        assert_int_equal(r.o.kind, c->ok);
        check_str(r.o.value, r.o.len, c->ov, c->ovn ? c->ovn : strlen(c->ov), c->line);
        check_str(r.o.lang, r.o.lang_len, c->lang, c->lang ? strlen(c->lang) : 0, c->line);
        check_str(r.o.datatype, r.o.dt_len, c->dt, c->dt ? strlen(c->dt) : 0, c->line);
        assert_null(r.s.lang);
        assert_null(r.s.datatype);
        assert_null(r.p.lang);
        assert_null(r.p.datatype);
        assert_string_equal(r.err, "");
    }
    knt_parser_free(kp);
}

/* Blank and comment-only lines return 0 and zero the terms. */
static void test_nt_blank(void **state)
{
    (void)state;
    static const char *const blanks[] = {"", " ", "\t \t", "\r", "#", "# comment", "   # comment <a> <b> <c> .",
                                         "#\xC3\xB6\xE2\x82\xAC", " \t#\t\r"};
    knt_parser *kp = knt_parser_new();
    for (size_t i = 0; i < sizeof blanks / sizeof blanks[0]; i++) {
        res r;
        knt_term junk = {KNT_IRI, "x", 1, NULL, 0, NULL, 0};
        r.s = r.p = r.o = junk;
        char *c = dup_exact(blanks[i], strlen(blanks[i]));
        r.rc = knt_parse_line(kp, c, strlen(blanks[i]), &r.s, &r.p, &r.o, r.err, sizeof r.err, &r.col);
        free(c);
        if (r.rc != 0) fail_msg("blank case %zu: rc %d: %s", i, r.rc, r.err);
        assert_int_equal(r.s.kind, 0);
        assert_null(r.o.value);
    }
    knt_parser_free(kp);
}

/* ---- invalid lines --------------------------------------------------------------- */

typedef struct bad_case {
    const char *line;
    int col;           /* expected 1-based column; 0: not checked */
    const char *msg;   /* expected substring of the message */
} bad_case;

static const bad_case bad_cases[] = {
    /* nt-syntax-bad-uri-01..05 */
    {"<http://example/ space> <http://example/p> <http://example/o> .", 17, "space in IRI"},
    {"<http://example/\\u00ZZ11> <http://example/p> <http://example/o> .", 17, "\\u escape"},
    {"<http://example/\\U00ZZ1111> <http://example/p> <http://example/o> .", 17, "\\U escape"},
    {"<http://example/\\n> <http://example/p> <http://example/o> .", 17, "invalid escape in IRI"},
    {"<http://example/\\/> <http://example/p> <http://example/o> .", 17, "invalid escape in IRI"},
    {"<http://example/{}> <p> <o> .", 17, "not allowed in an IRI"},
    {"<s> <p> <o|> .", 11, "not allowed in an IRI"},
    {"<s> <p> <a\"b> .", 11, "not allowed in an IRI"},
    {"<s\tx> <p> <o> .", 3, "not allowed in an IRI"},
    {"<s<x> <p> <o> .", 3, "not allowed in an IRI"},
    {"<s\\u0020> <p> <o> .", 3, "not allowed in an IRI"},
    {"<s\\u003E> <p> <o> .", 3, "not allowed in an IRI"},
    {"<s\\u12> <p> <o> .", 3, "\\u escape"},
    {"<s\\u12", 3, "\\u escape"},
    {"<s\\", 3, "invalid escape in IRI"},
    /* unterminated terms (column of the opening delimiter) */
    {"<s> <p> <o .", 11, "space in IRI"},
    {"<s> <p> <o", 9, "unterminated IRI"},
    {"<http://example/s> <http://example/p> \"abc .", 39, "unterminated literal"},
    {"<s> <p> \"abc\\\" .", 9, "unterminated literal"},
    /* structure: missing '.', extra terms, wrong term kinds */
    {"<s> <p> <o>", 12, "expected '.'"},
    {"<s> <p> \"o\"@en", 15, "expected '.'"},
    {"<s> <p> <o> <o2> .", 13, "expected '.'"},
    {"<s> <p> <o> ;", 13, "expected '.'"},
    {"<s> <p>", 8, "expected an object"},
    {"<s>", 4, "predicate"},
    {"\"abc\" <p> <o> .", 1, "literal cannot be a subject"},
    {"<s> _:p <o> .", 5, "blank node cannot be a predicate"},
    {"<s> \"p\" <o> .", 5, "literal cannot be a predicate"},
    {"<s> <p> <o> . junk", 15, "trailing characters"},
    {"<s> <p> <o> ..", 14, "trailing characters"},
    {"<s> <p> _:o.. ", 13, "trailing characters"}, /* a label cannot end in '.' */
    {"<s> <p> <o> . <a> <b> <c> .", 15, "trailing characters"},
    {"<s> <p> \"\"\"abc\"\"\" .", 11, "expected '.'"},
    {"<s> <p> 'abc' .", 9, "expected an object"},
    {"<s> <p> 1 .", 9, "expected an object"},
    {"<s> <p> 1.0e0 .", 9, "expected an object"},
    {"<s> <p> true .", 9, "expected an object"},
    {"<s> <p> [] .", 9, "expected an object"},
    {"@prefix : <http://example/> .", 1, "expected a subject"},
    {":s <p> <o> .", 1, "expected a subject"},
    {"<s> <p> ex:o .", 9, "expected an object"},
    {"<s> <p> \"x\"^^xsd:string .", 14, "expected '<'"},
    {"<s> <p> \"x\"^<dt> .", 13, "'^^'"},
    {"<s> <p> \"x\"^^ .", 15, "expected '<'"},
    {"<s> <p> \"x\"^^\"y\" .", 14, "expected '<'"},
    /* language tags */
    {"<s> <p> \"x\"@1 .", 13, "language tag"},
    {"<s> <p> \"x\"@ .", 13, "language tag"},
    {"<s> <p> \"x\"@en- .", 16, "after '-' in the language tag"},
    {"<s> <p> \"x\"@en--us .", 16, "after '-' in the language tag"},
    {"<s> <p> \"x\"@en_US .", 15, "expected '.'"},
    {"<s> <p> \"x\"@en^^<dt> .", 15, "expected '.'"},
    /* literal escapes (nt-syntax-bad-esc-01..03) */
    {"<http://example/s> <http://example/p> \"abc\\x\" .", 43, "invalid escape"},
    {"<s> <p> \"\\u00ZZ\" .", 10, "\\u escape"},
    {"<s> <p> \"\\U00ZZ1111\" .", 10, "\\U escape"},
    {"<s> <p> \"\\uD800\" .", 10, "surrogate"},
    {"<s> <p> \"\\uDFFF\" .", 10, "surrogate"},
    {"<s> <p> \"\\U0000D800\" .", 10, "surrogate"},
    {"<s> <p> \"\\U00110000\" .", 10, "past U+10FFFF"},
    {"<s> <p> \"\\UFFFFFFFF\" .", 10, "past U+10FFFF"},
    {"<s\\uDBFF> <p> <o> .", 3, "surrogate"},
    {"<s> <p> \"a\\", 11, "invalid escape"},
    /* blank node labels */
    {"_: <p> <o> .", 3, "blank node label"},
    {"_:-a <p> <o> .", 3, "blank node label"},
    {"_:.a <p> <o> .", 3, "blank node label"},
    {"_:\xC2\xB7 <p> <o> .", 3, "blank node label"},
    {"_a <p> <o> .", 2, "expected ':'"},
    {"_", 2, "expected ':'"},
    {"_:a. <p> <o> .", 4, "predicate"},
    {"_:a~ <p> <o> .", 4, "predicate"},
    /* ill-formed UTF-8: in IRIs, literals, labels, comments and between terms */
    {"<s> <p> \"caf\xC3\" .", 13, "invalid UTF-8"},
    {"<s> <p> \"\xFF\" .", 10, "invalid UTF-8"},
    {"<s> <p> \"\xC0\xAF\" .", 10, "invalid UTF-8"},
    {"<s> <p> \"\xED\xA0\x80\" .", 10, "invalid UTF-8"},
    {"<s> <p> \"\xF4\x90\x80\x80\" .", 10, "invalid UTF-8"},
    {"<s\xE2\x82> <p> <o> .", 3, "invalid UTF-8"},
    {"<s> <p> <o> . # \xFE", 17, "invalid UTF-8"},
    {"# \x80", 3, "invalid UTF-8"},
    {"<s> \xC3 <o> .", 5, "invalid UTF-8"},
    {"_:a\xE4\xB8 <p> <o> .", 4, "invalid UTF-8"},
    {"<s> <p> <o> \xC3\xB6 .", 13, "expected '.'"},
    /* line breaks inside the line */
    {"<s> <p> \"a\nb\" .", 11, "line break in literal"},
    {"<s> <p> \"a\rb\" .", 11, "line break in literal"},
    {"<s> <p> <o> . #a\nb", 17, "line break"},
    {"<s> <p> <o> .\n", 14, "trailing characters"},
};

static void test_nt_invalid(void **state)
{
    (void)state;
    knt_parser *kp = knt_parser_new();
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        res r;
        knt_term junk = {KNT_IRI, "x", 1, NULL, 0, NULL, 0};
        nt_parse(kp, c->line, &r);
        if (r.rc != -1) fail_msg("bad case %zu <%s>: rc %d", i, c->line, r.rc);
        if (!strstr(r.err, c->msg))
            fail_msg("bad case %zu <%s>: message '%s' lacks '%s' (col %d)", i, c->line, r.err, c->msg, r.col);
        if (c->col && r.col != c->col)
            fail_msg("bad case %zu <%s>: col %d, expected %d (%s)", i, c->line, r.col, c->col, r.err);
        assert_int_equal(r.s.kind, 0);
        assert_int_equal(r.o.kind, 0);
        assert_null(r.s.value);
        /* err NULL / col NULL / errlen 0 are allowed */
        char *d = dup_exact(c->line, strlen(c->line));
        knt_term a = junk, b = junk, o = junk;
        assert_int_equal(knt_parse_line(kp, d, strlen(c->line), &a, &b, &o, NULL, 0, NULL), -1);
        char tiny[4];
        assert_int_equal(knt_parse_line(kp, d, strlen(c->line), &a, &b, &o, tiny, sizeof tiny, NULL), -1);
        assert_true(strlen(tiny) == 3);
        free(d);
    }
    knt_parser_free(kp);
}

/* The same parser across good and bad lines; every prefix of a valid line
 * fails or succeeds cleanly without reading past n. */
static void test_nt_prefixes(void **state)
{
    (void)state;
    static const char *const lines[] = {
        "<http://example/\\u00E9> <p> \"K\xC3\xB6nig\\n\\U0001F600\"@de-CH . # c",
        "_:a.b <p> \"1\"^^<http://www.w3.org/2001/XMLSchema#integer> .",
    };
    knt_parser *kp = knt_parser_new();
    for (size_t l = 0; l < 2; l++) {
        size_t n = strlen(lines[l]);
        int ok = 0;
        for (size_t k = 0; k <= n; k++) {
            res r;
            nt_parse_n(kp, lines[l], k, &r);
            assert_true(r.rc == 1 || r.rc == -1 || (r.rc == 0 && k == 0));
            if (r.rc == -1) assert_true(r.col >= 1 && (size_t)r.col <= k + 1);
            ok += r.rc == 1;
        }
        assert_true(ok >= 1);
    }
    knt_parser_free(kp);
}

/* A long line grows the scratch buffer; all strings stay consistent. */
static void test_nt_long(void **state)
{
    (void)state;
    size_t big = 1 << 20;
    kbuf b = {0};
    kbuf_puts(&b, "<http://example/s> <http://example/p> \"");
    for (size_t i = 0; i < big; i++) kbuf_puts(&b, i % 1000 == 0 ? "\\u00E9" : "a");
    kbuf_puts(&b, "\"^^<http://example/dt> .");
    knt_parser *kp = knt_parser_new();
    res r;
    nt_parse_n(kp, "<a> <b> <c> .", 13, &r);
    assert_int_equal(r.rc, 1);
    nt_parse_n(kp, b.data, b.len, &r);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.s.value, EX "s");
    assert_string_equal(r.p.value, EX "p");
    assert_int_equal(r.o.len, big + big / 1000 + 1);
    assert_memory_equal(r.o.value, "\xC3\xA9" "aaa", 5);
    assert_string_equal(r.o.datatype, EX "dt");
    /* an IRI of 1 MB too */
    kbuf_clear(&b);
    kbuf_puts(&b, "<");
    for (size_t i = 0; i < big; i++) kbuf_putc(&b, 'x');
    kbuf_puts(&b, "> <p> _:o .");
    nt_parse_n(kp, b.data, b.len, &r);
    assert_int_equal(r.rc, 1);
    assert_int_equal(r.s.len, big);
    assert_string_equal(r.o.value, "o");
    knt_parser_free(kp);
    kbuf_free(&b);
    knt_parser_free(NULL);
}

/* ---- TSV triples ------------------------------------------------------------------- */

static int tsv(const char *line, const char *f[3], size_t len[3], char *err, size_t errlen)
{
    size_t n = strlen(line);
    char *c = dup_exact(line, n);
    int rc = ktsv_parse_line(c, n, f, len, err, errlen);
    /* fields point into the copy: turn them into offsets before freeing it */
    for (int i = 0; rc == 1 && i < 3; i++) f[i] = line + (f[i] - c);
    free(c);
    return rc;
}

static void expect_fields(const char *line, const char *h, const char *r, const char *t)
{
    const char *f[3];
    size_t len[3];
    char err[128] = "x";
    int rc = tsv(line, f, len, err, sizeof err);
    if (rc != 1) fail_msg("tsv <%s>: rc %d: %s", line, rc, err);
    assert_string_equal(err, "");
    const char *want[3] = {h, r, t};
    for (int i = 0; i < 3; i++) {
        if (len[i] != strlen(want[i]) || memcmp(f[i], want[i], len[i]))
            fail_msg("tsv <%s> field %d: '%.*s', expected '%s'", line, i, (int)len[i], f[i], want[i]);
    }
}

static void expect_tsv_error(const char *line, const char *msg)
{
    const char *f[3];
    size_t len[3];
    char err[128];
    int rc = tsv(line, f, len, err, sizeof err);
    if (rc != -1 || !strstr(err, msg)) fail_msg("tsv <%s>: rc %d, message '%s', expected '%s'", line, rc, err, msg);
    assert_int_equal(tsv(line, f, len, NULL, 0), -1);
}

static void test_tsv(void **state)
{
    (void)state;
    expect_fields("/m/027rn\t/location/country/form_of_government\t/m/06cx9", "/m/027rn",
                  "/location/country/form_of_government", "/m/06cx9");
    expect_fields("/m/017dcd\t/tv/tv_program/regular_cast./tv/regular_tv_appearance/actor\t/m/06v8s0\r", "/m/017dcd",
                  "/tv/tv_program/regular_cast./tv/regular_tv_appearance/actor", "/m/06v8s0");
    expect_fields("00260881\t_hypernym\t00260622", "00260881", "_hypernym", "00260622");
    expect_fields("New York City\tlocated in\tUnited States", "New York City", "located in", "United States");
    expect_fields("K\xC3\xB6ln\tr\ttail ", "K\xC3\xB6ln", "r", "tail ");
    const char *f[3];
    size_t len[3];
    char err[64];
    assert_int_equal(tsv("", f, len, err, sizeof err), 0);
    assert_int_equal(tsv("\r", f, len, err, sizeof err), 0);
    assert_int_equal(tsv("   ", f, len, err, sizeof err), 0);
    expect_tsv_error("/m/027rn\t/location/country/form_of_government", "found 2");
    expect_tsv_error("/m/027rn", "found 1");
    expect_tsv_error("a\tb\tc\td", "found 4");
    expect_tsv_error("a b c", "found 1");
    expect_tsv_error("a\tb\tc\t\r", "found 4");
    expect_tsv_error("\tb\tc", "field 1 (head) is empty");
    expect_tsv_error("a\t\tc", "field 2 (relation) is empty");
    expect_tsv_error("a\tb\t", "field 3 (tail) is empty");
    expect_tsv_error("a\tb\t\r", "field 3 (tail) is empty");
    expect_tsv_error("a\t  \tc", "field 2 (relation) is empty");
    expect_tsv_error("\t\t", "field 1 (head) is empty");
    expect_tsv_error("a\tb\xFF\tc", "invalid UTF-8 at column 4");
}

/* ---- name files ------------------------------------------------------------------- */

static int name(const char *line, int split, const char *want_id, const char *want_label, const char *want_desc)
{
    size_t n = strlen(line);
    char *c = dup_exact(line, n);
    const char *id, *label, *desc;
    size_t il, ll, dl;
    char err[128] = "x";
    int rc = kname_parse_line(c, n, split, &id, &il, &label, &ll, &desc, &dl, err, sizeof err);
    if (rc == 1) {
        if (!want_id) fail_msg("name <%s>: parsed, expected an error", line);
        assert_string_equal(err, "");
        if (il != strlen(want_id) || memcmp(id, want_id, il)) fail_msg("name <%s>: id '%.*s'", line, (int)il, id);
        if (ll != strlen(want_label) || memcmp(label, want_label, ll))
            fail_msg("name <%s>: label '%.*s'", line, (int)ll, label);
        if (!want_desc) {
            assert_null(desc);
            assert_int_equal(dl, 0);
        } else if (!desc || dl != strlen(want_desc) || memcmp(desc, want_desc, dl)) {
            fail_msg("name <%s>: desc '%.*s'", line, (int)dl, desc ? desc : "(null)");
        }
    } else if (rc == -1) {
        if (want_id) fail_msg("name <%s>: error %s", line, err);
        if (!want_label || !strstr(err, want_label)) fail_msg("name <%s>: message '%s'", line, err);
        assert_null(id);
        assert_int_equal(kname_parse_line(c, n, split, &id, &il, &label, &ll, &desc, &dl, NULL, 0), -1);
    }
    free(c);
    return rc;
}

static void test_names(void **state)
{
    (void)state;
    assert_int_equal(name("00260881\tland reform, a redistribution of agricultural land", 1, "00260881", "land reform",
                          "a redistribution of agricultural land"), 1);
    assert_int_equal(name("08769179\tsaxony, an area in Germany around the upper Elbe river; the original home of the Saxons", 1,
                          "08769179", "saxony",
                          "an area in Germany around the upper Elbe river; the original home of the Saxons"), 1);
    /* only the first ", " splits */
    assert_int_equal(name("1\ta, b, c", 1, "1", "a", "b, c"), 1);
    /* a comma without a space does not split */
    assert_int_equal(name("1\t1,000 things", 1, "1", "1,000 things", NULL), 1);
    /* split_gloss off keeps the whole name */
    assert_int_equal(name("00260881\tland reform, a redistribution\r", 0, "00260881", "land reform, a redistribution", NULL), 1);
    /* FB style, no gloss, CRLF */
    assert_int_equal(name("/m/06cx9\tRepublic", 1, "/m/06cx9", "Republic", NULL), 1);
    assert_int_equal(name("/m/06cx9\tRepublic\r", 0, "/m/06cx9", "Republic", NULL), 1);
    assert_int_equal(name("/m/06rf7\tSchleswig-Holstein", 1, "/m/06rf7", "Schleswig-Holstein", NULL), 1);
    assert_int_equal(name("/music/artist/origin\tmusic artist origin", 0, "/music/artist/origin", "music artist origin", NULL), 1);
    assert_int_equal(name("_has_part\thas part", 1, "_has_part", "has part", NULL), 1);
    assert_int_equal(name("1\tK\xC3\xB6ln, a city", 1, "1", "K\xC3\xB6ln", "a city"), 1);
    assert_int_equal(name("1\tx, ", 1, "1", "x", ""), 1);
    /* blank lines */
    assert_int_equal(name("", 1, NULL, NULL, NULL), 0);
    assert_int_equal(name("\r", 1, NULL, NULL, NULL), 0);
    assert_int_equal(name("  ", 1, NULL, NULL, NULL), 0);
    /* errors */
    assert_int_equal(name("/m/06cx9 Republic", 1, NULL, "no tab", NULL), -1);
    assert_int_equal(name("\tRepublic", 1, NULL, "empty id", NULL), -1);
    assert_int_equal(name("/m/06cx9\t", 1, NULL, "empty name", NULL), -1);
    assert_int_equal(name("/m/06cx9\t \r", 1, NULL, "empty name", NULL), -1);
    assert_int_equal(name("/m/06cx9\tRepublic\textra", 1, NULL, "found a tab at column 18", NULL), -1);
    assert_int_equal(name("1\t, gloss only", 1, NULL, "empty label", NULL), -1);
    assert_int_equal(name("1\tbad \xC3", 1, NULL, "invalid UTF-8 at column 7", NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wikidata_sample),
        cmocka_unit_test(test_nt_valid),
        cmocka_unit_test(test_nt_blank),
        cmocka_unit_test(test_nt_invalid),
        cmocka_unit_test(test_nt_prefixes),
        cmocka_unit_test(test_nt_long),
        cmocka_unit_test(test_tsv),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
