/* jsonl.h: a validating one-pass JSON scanner that extracts top-level fields
 * of one JSON object (a JSONL line) without building a tree. */
#ifndef KILN_INGEST_JSONL_H
#define KILN_INGEST_JSONL_H

#include <stddef.h>

#include "util/util.h" /* kbuf: growable byte buffer */

enum { KJ_MISSING = 0, KJ_STRING, KJ_INTEGER, KJ_OTHER };

typedef struct kjson_field {
    const char *key;  /* in: top-level key to extract (UTF-8, compared after unescaping) */
    int type;         /* out: KJ_* of the value (last occurrence wins, as in jansson) */
    kbuf *value;      /* in: buffer, cleared then filled for KJ_STRING (decoded UTF-8) and
                         KJ_INTEGER (the literal digits, e.g. "-12"); untouched otherwise */
} kjson_field;

/* Scans s[0..n) which must hold exactly one JSON value (RFC 8259; surrounding
 * white space allowed) that is an object. Fills the fields. Returns 0, or -1
 * for malformed input with a message in err (errlen bytes) and the 1-based
 * byte column of the problem in *col, worded like "expected ',' or '}'",
 * "invalid escape", "unterminated string", "a JSON line must be an object",
 * "nesting deeper than 512", "trailing characters after the value".
 *
 * Details:
 * - Every field's type is set to KJ_MISSING first; a field whose key occurs
 *   more than once at the top level takes the last occurrence. Several fields
 *   may name the same key (each gets the value). A NULL value buffer is
 *   allowed: the type is still reported. On -1 every type is KJ_MISSING again
 *   and the buffers hold unspecified (but valid kbuf) contents.
 * - Strings: \uXXXX surrogate pairs are combined; a lone surrogate decodes to
 *   U+FFFD; \u0000 decodes to a NUL byte (value->len counts it). A raw tab
 *   inside a string is accepted as is; other bytes < 0x20 are an error. Bytes
 *   >= 0x80 are copied unchecked (the caller validates UTF-8).
 * - A KJ_STRING or KJ_INTEGER buffer is never left with NULL data.
 * - err may be NULL or errlen 0, col may be NULL. On error *col is the
 *   column of the offending byte, n + 1 for an unexpected end of input, and
 *   the opening quote for an unterminated string.
 * - Nesting: at most 512 open arrays/objects, the line's object included.
 * - Reads nothing outside s[0..n), allocates only by growing the value
 *   buffers, keeps no global state (thread-safe). */
int kjson_extract(const char *s, size_t n, kjson_field *fields, int nfields,
                  char *err, size_t errlen, int *col);

#endif
