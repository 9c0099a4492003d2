/* parse.h: line parsers for knowledge-graph files: N-Triples (W3C RDF 1.1),
 * TSV triples (FB15k-237/WN18RR style) and entity/relation name files.
 *
 * All three parsers take one line without its '\n' (a single trailing '\r'
 * is ignored), read nothing outside line[0..n), keep no global state and are
 * thread-safe (the N-Triples parser with one knt_parser per thread). */
#ifndef KILN_KG_PARSE_H
#define KILN_KG_PARSE_H

#include <stddef.h>

/* ---- N-Triples ------------------------------------------------------------ */
enum { KNT_IRI = 1, KNT_BNODE, KNT_LITERAL };

typedef struct knt_term {
    int kind;                    /* KNT_*; 0 when the call did not return 1 */
    const char *value; size_t len;      /* IRI with \u escapes decoded; blank node label (without "_:");
                                           literal lexical form with ECHAR/UCHAR escapes decoded (UTF-8;
                                           may hold NUL bytes from \u0000: use len) */
    const char *lang; size_t lang_len;  /* literal language tag without '@', as written (case kept),
                                           or NULL */
    const char *datatype; size_t dt_len;/* literal datatype IRI (decoded) as written, or NULL (a plain or
                                           language-tagged literal; xsd:string / rdf:langString are
                                           not filled in) */
} knt_term;

/* Scratch buffers for the decoded strings; one per thread. Owned by the
 * caller: create with knt_parser_new, release with knt_parser_free (NULL ok). */
typedef struct knt_parser knt_parser;
knt_parser *knt_parser_new(void);
void knt_parser_free(knt_parser *p);

/* Parses one line (without its '\n'; a trailing '\r' allowed). Returns 1 and fills s/p/o
 * (strings valid until the next call), 0 for a blank or comment-only line, -1 for a
 * malformed line with a message (err, errlen) naming what was expected and the 1-based
 * column in *col.
 *
 * Details:
 * - Every returned string lives in the parser's scratch buffer (never in line), is
 *   NUL-terminated after its len bytes, and stays valid until the next call on p or
 *   knt_parser_free. On 0 and -1 the three terms are zeroed.
 * - Columns are 1-based byte offsets into line: the offending byte; n + 1 (n without
 *   the trailing '\r') for an unexpected end of line; the opening '<' or '"' of an
 *   unterminated IRI or literal; the '\' of a bad escape; the first byte of an
 *   ill-formed UTF-8 sequence.
 * - err may be NULL or errlen 0; col may be NULL.
 * - The whole line must be well-formed UTF-8 (comments included); no CR/LF inside.
 * - IRIs are checked against the IRIREF production only: relative IRIs are accepted.
 *   A \u / \U escape in an IRI must not decode to a character that IRIREF forbids
 *   unescaped (controls, space, <>"{}|^`\), nor to a surrogate or past U+10FFFF.
 * - Literals: \u0000 is accepted (decoded to a NUL byte); surrogate escapes are not.
 * - Allocates only by growing the scratch buffer; no recursion. */
int knt_parse_line(knt_parser *p, const char *line, size_t n, knt_term *s, knt_term *pred,
                   knt_term *o, char *err, size_t errlen, int *col);

/* ---- TSV triples ----------------------------------------------------------- */
/* TSV triple line "head TAB relation TAB tail" (fields trimmed of a trailing '\r'; exactly
 * three non-empty fields; spaces inside fields allowed). Returns 1 with the three fields
 * (pointers into line, not NUL-terminated, with lengths), 0 for a blank line, -1 with err.
 *
 * A blank line is an empty one or one of spaces only (a line with tabs has fields).
 * A field that is empty or only spaces is an error; fields are otherwise returned as
 * written (no trimming of inner or outer spaces). The line must be valid UTF-8 (the
 * message then gives the column). err may be NULL or errlen 0. */
int ktsv_parse_line(const char *line, size_t n, const char *f[3], size_t len[3], char *err, size_t errlen);

/* ---- name files ------------------------------------------------------------ */
/* Name line "id TAB name" (entity2text / relation2text style). If split_gloss and the name
 * contains ", " the part before the first ", " is the label and the rest the description
 * (WN18RR's "lemma name, gloss"). Returns 1, 0 for blank, -1 with err.
 *
 * Pointers go into line (not NUL-terminated). Without a gloss (split_gloss 0 or no ", ")
 * the label is the whole name and *desc is NULL with *desc_len 0. The id is the text
 * before the first tab and must be non-empty; the name is everything after it (further
 * tabs are an error) and must not be empty or only spaces; a label that would be empty
 * (name starting with ", ") is an error. Blank and UTF-8 rules as ktsv_parse_line. */
int kname_parse_line(const char *line, size_t n, int split_gloss, const char **id, size_t *id_len,
                     const char **label, size_t *label_len, const char **desc, size_t *desc_len,
                     char *err, size_t errlen);

#endif
