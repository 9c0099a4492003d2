/* bpe.h: GPT-2's byte-level BPE: a vocabulary (encoder.json / vocab.json
 * and vocab.bpe / merges.txt), encoding as OpenAI's encoder.py and Hugging
 * Face's GPT2Tokenizer do it, and exact decoding (ids back to the bytes).
 *
 * Encoding of a text:
 *  1. literal "<|endoftext|>" (when the vocabulary has it) is cut out and
 *     becomes its id, as transformers does with the special token;
 *  2. each other segment: ill-formed UTF-8 becomes U+FFFD (one per maximal
 *     ill-formed subpart, as Python's decode(errors="replace"));
 *  3. pre-tokenization by GPT-2's pattern
 *       's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *     with the `regex` module's classes: \p{L} and \p{N} by general category
 *     (ICU), \s the White_Space property;
 *  4. each pre-token's UTF-8 bytes, one symbol per byte (bytes_to_unicode),
 *     merged by rank: the pair of lowest rank first, occurrences of one pair
 *     left to right (a heap over (rank, position): the order of encoder.py's
 *     rounds for any merge list in which a merge only uses tokens made by
 *     earlier merges, which BPE training guarantees).
 * Every pre-token's first id is flagged as a word start (kwp_ids.word_start).
 *
 * A kbpe_vocab is immutable once loaded and may be shared by threads; a
 * kbpe_tok holds one thread's scratch and word cache. Knows nothing of the
 * store. */
#ifndef KILN_BPE_H
#define KILN_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "text/wordpiece.h"
#include "util/util.h"

typedef struct kbpe_vocab kbpe_vocab;

#define KBPE_EOT "<|endoftext|>"

/* Builds a vocabulary from the contents of a vocab JSON (an object of token ->
 * id, tokens in the byte-level alphabet, as encoder.json / vocab.json) and a
 * merges file (one "A B" a line, rank = line order; a first line starting
 * with "#version" and empty lines are skipped; "\r\n" accepted). The N tokens
 * must have the ids 0 to N - 1 (distinct, no gaps; N < 2^31); the 256
 * single-byte tokens must be present; both sides of every merge and their
 * concatenation must be tokens (a repeated merge keeps its last rank, as
 * encoder.py's dict). Returns 0 and *out (owned: kbpe_vocab_free), or -1 with
 * err naming the token, the byte or the merges line. */
int kbpe_vocab_load(const char *vocab_json, size_t vlen, const char *merges, size_t mlen,
                    kbpe_vocab **out, char *err, size_t errlen);
void kbpe_vocab_free(kbpe_vocab *v);
/* Largest id + 1. */
size_t kbpe_vocab_size(const kbpe_vocab *v);
size_t kbpe_vocab_nmerges(const kbpe_vocab *v);
/* The token of id as written in the vocab file (byte-level alphabet, not
 * NUL-terminated: *len bytes), NULL for an id without a token. */
const char *kbpe_vocab_piece(const kbpe_vocab *v, uint32_t id, size_t *len);
/* The id of a token (file form), -1 if absent. */
int64_t kbpe_vocab_id(const kbpe_vocab *v, const char *piece, size_t len);
/* The id of "<|endoftext|>", -1 if the vocabulary has none. */
int64_t kbpe_vocab_eot(const kbpe_vocab *v);
/* vocab.json: one object, tokens in id order. */
void kbpe_vocab_json(const kbpe_vocab *v, kbuf *out);
/* merges.txt: "#version: 0.2" then one "A B" a line in rank order. */
void kbpe_merges_text(const kbpe_vocab *v, kbuf *out);

/* Per-thread tokenizer (scratch and a bounded cache of encoded words).
 * Owned; free with kbpe_tok_free. */
typedef struct kbpe_tok kbpe_tok;
kbpe_tok *kbpe_tok_new(const kbpe_vocab *v);
void kbpe_tok_free(kbpe_tok *t);

/* Encodes the bytes s[0..n) (any bytes) and appends ids and word starts to
 * out. Returns the number of ids appended. */
size_t kbpe_encode(kbpe_tok *t, const char *s, size_t n, kwp_ids *out);

/* Appends to out the bytes of ids[0..n): the exact inverse of kbpe_encode on
 * valid UTF-8 (ill-formed input comes back with its U+FFFD). Ids without a
 * token are skipped and counted: returns how many were. */
size_t kbpe_decode(const kbpe_vocab *v, const uint32_t *ids, size_t n, kbuf *out);

/* The pre-tokenizer alone: calls cb for each pre-token of the UTF-8 text
 * s[0..n) (ill-formed bytes repaired first; "<|endoftext|>" not special), with
 * its bytes. For vocabulary training and tests. */
void kbpe_pretokenize(kbpe_tok *t, const char *s, size_t n,
                      void (*cb)(const char *tok, size_t len, void *ctx), void *ctx);

/* GPT-2's bytes_to_unicode: the code point byte b is written as in the
 * vocabulary files. */
uint32_t kbpe_byte_char(unsigned char b);

#endif
