/* wikitext.h: MediaWiki wikitext -> plain text, as a reader sees the page. */
#ifndef KILN_INGEST_WIKITEXT_H
#define KILN_INGEST_WIKITEXT_H

#include <stddef.h>

#include "util/util.h" /* kbuf: growable byte buffer */

/* Appends the plain text of the wikitext src[0..len) to out. Never fails on any input
 * (malformed, unbalanced, truncated markup is handled), never reads past len,
 * runs in O(len) time-ish (no quadratic blowup on hostile nesting; cap nesting depth),
 * allocates only through out (and bounded scratch). Output is UTF-8 if input is.
 * Output layout: blocks (paragraphs, headings, list items, table-cell text if kept)
 * are separated by a blank line ("\n\n"); inside a paragraph, single newlines of
 * the source are kept as "\n" (the caller joins them). No leading/trailing blank lines.
 *
 * Templates (except a few that only carry inline text: dashes, lang,
 * nihongo, nowrap, convert, quote, ...), tables, references, comments,
 * files/images, categories and interlanguage links are dropped, as are the
 * sections "References", "External links", "See also", "Further reading",
 * "Notes" (and a few synonyms) and headings left with no text under them.
 * A page starting with "#REDIRECT" yields no text. Thread-safe: no global
 * mutable state. */
void wikitext_to_text(const char *src, size_t len, kbuf *out);

#endif
