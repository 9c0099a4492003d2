/* text.h: text cleaning, Unicode normalization and sentence segmentation (ICU).
 *
 * Stateless functions plus a per-thread segmenter handle (ICU break iterators
 * are not thread-safe: one ktext_seg per thread). Knows nothing of the store. */
#ifndef KILN_TEXT_H
#define KILN_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

/* Counters of what cleaning changed. */
typedef struct ktext_counts {
    uint64_t invalid_utf8; /* invalid sequences replaced by U+FFFD */
    uint64_t controls;     /* control characters dropped */
} ktext_counts;

/* Appends to out the UTF-8 text of in[0..n): invalid UTF-8 sequences become
 * U+FFFD (one per maximal invalid subpart, as the Unicode standard recommends),
 * a leading BOM is dropped, CR LF / CR / NEL / U+2028 / U+2029 become '\n',
 * other C0/C1 controls (but '\t') and U+FEFF are dropped, NUL included.
 * Never fails; c (may be NULL) accumulates the counts. */
void ktext_clean_utf8(const char *in, size_t n, kbuf *out, ktext_counts *c);

/* UTF-16 with a byte order mark: returns 1 (LE) or 2 (BE) if in starts with
 * one, else 0. */
int ktext_utf16_bom(const unsigned char *in, size_t n);

/* Streaming UTF-16 (LE or BE, per bom) -> UTF-8 converter; unpaired
 * surrogates become U+FFFD. Owned by the caller: ktext_u16_free. */
typedef struct ktext_u16 ktext_u16;
ktext_u16 *ktext_u16_new(int bom);
/* Converts the next n bytes (any split, odd lengths included) and appends the
 * UTF-8 to out; final = 1 on the last call flushes a dangling byte as U+FFFD. */
void ktext_u16_feed(ktext_u16 *u, const char *in, size_t n, int final, kbuf *out);
void ktext_u16_free(ktext_u16 *u);

/* Counts in s[0..n) the well-formed multi-byte UTF-8 sequences and the
 * invalid ones (a sequence cut off by the end of the buffer is not counted). */
void ktext_utf8_census(const char *s, size_t n, size_t *valid_multibyte, size_t *invalid);

/* Guesses the charset of s[0..n) with ICU's detector; returns its canonical
 * name (e.g. "windows-1252", "Shift_JIS", "GB18030") into name (len bytes),
 * or 0 if nothing fits with confidence >= min_confidence (0-100). */
int ktext_detect_charset(const char *s, size_t n, int min_confidence, char *name, size_t len);

/* Streaming legacy charset -> UTF-8 converter (ICU ucnv): any split of the
 * input, unmappable bytes become U+FFFD. NULL with err if the charset is
 * unknown. Free with ktext_conv_free. */
typedef struct ktext_conv ktext_conv;
ktext_conv *ktext_conv_new(const char *charset, char *err, size_t errlen);
void ktext_conv_feed(ktext_conv *c, const char *in, size_t n, int final, kbuf *out);
void ktext_conv_free(ktext_conv *c);

enum ktext_norm { KTEXT_NFKC = 0, KTEXT_NFC = 1, KTEXT_NONE = 2 };

/* A short string (a label, an alias) normalized as the corpus text is:
 * cleaned (ktext_clean_utf8), normalized (KTEXT_*), white space collapsed to
 * single spaces and trimmed. Appends to out (cleared first). */
void ktext_normalize_short(const char *s, size_t n, int norm, kbuf *out);
/* Parses "nfkc" | "nfc" | "none"; returns -1 for anything else. */
int ktext_norm_parse(const char *s);

/* Per-thread segmenter: normalizer + ICU sentence break iterator for a
 * language (abbreviation suppression on: locale "LANG@ss=standard").
 * Returns NULL and writes err on failure (unknown language is not a failure:
 * ICU falls back to the root rules). Free with ktext_seg_free. */
typedef struct ktext_seg ktext_seg;
ktext_seg *ktext_seg_new(const char *lang, int norm, char *err, size_t errlen);
void ktext_seg_free(ktext_seg *g);

/* Segments cleaned UTF-8 text (output of ktext_clean_utf8) into sentences:
 *  - normalizes (per the handle's form);
 *  - splits paragraphs at blank lines; inside a paragraph a single newline is
 *    a soft break (joined by a space) unless lines_are_sentences, where every
 *    line ends a sentence (BERT's one-sentence-per-line files);
 *  - finds sentence boundaries with the break iterator;
 *  - collapses every run of white space to one ' ' and trims each sentence;
 *    empty sentences vanish.
 * Writes the sentences to out joined by '\n' (out is cleared first) and their
 * end offsets (exclusive, bytes into out) to *ends (a uint32 array grown
 * with xrealloc, capacity *ends_cap; the caller owns it). Returns the number
 * of sentences, 0 for a text with no visible content. A text of 1 GiB
 * (INT32_MAX / 2 bytes) or more is refused (returns 0): ICU indexes UTF-16
 * with int32_t, and the ingest limits (--max-doc-bytes) are far below. */
size_t ktext_segment(ktext_seg *g, const char *in, size_t n, int lines_are_sentences, kbuf *out,
                     uint32_t **ends, size_t *ends_cap);

#endif
