/* wordpiece.h: BERT tokenization: BasicTokenizer semantics (cleaning, CJK
 * spacing, NFC, lowercasing and accent stripping, punctuation splitting) and
 * greedy longest-match-first WordPiece over a vocab.txt vocabulary, giving
 * the ids of Hugging Face transformers' BertTokenizer.
 *
 * A kwp_vocab is immutable once loaded and may be shared by threads; a
 * kwp_tok holds one thread's scratch buffers. Knows nothing of the store. */
#ifndef KILN_WORDPIECE_H
#define KILN_WORDPIECE_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

typedef struct kwp_vocab kwp_vocab;

/* Builds a vocabulary from vocab.txt contents (one piece a line, id = line
 * number, "\n" or "\r\n" line ends; a final line without newline counts).
 * cased = 0 lowercases and strips accents (bert-base-uncased), 1 keeps them.
 * [UNK] must be present; [PAD] [CLS] [SEP] [MASK] are looked up if present.
 * Returns 0 and *out (owned, free with kwp_vocab_free), or -1 with err:
 * duplicate pieces (named with both line numbers), empty pieces, no [UNK],
 * more than 2^31 pieces, invalid UTF-8 (line named). */
int kwp_vocab_load(const char *text, size_t len, int cased, kwp_vocab **out, char *err,
                   size_t errlen);
void kwp_vocab_free(kwp_vocab *v);
size_t kwp_vocab_size(const kwp_vocab *v);
int kwp_vocab_cased(const kwp_vocab *v);
/* The piece of id (not NUL-terminated: *len bytes), NULL if out of range. */
const char *kwp_vocab_piece(const kwp_vocab *v, uint32_t id, size_t *len);
/* The id of a piece ("##" prefix included), -1 if absent. */
int64_t kwp_vocab_id(const kwp_vocab *v, const char *piece, size_t len);
/* 1 for a continuation piece ("##..."). */
int kwp_vocab_is_continuation(const kwp_vocab *v, uint32_t id);
enum { KWP_PAD, KWP_UNK, KWP_CLS, KWP_SEP, KWP_MASK, KWP_NSPECIAL };
/* The id of a special token, -1 if the vocabulary has none. */
int64_t kwp_vocab_special(const kwp_vocab *v, int which);
/* Writes vocab.txt (pieces in id order, "\n" after each) to out. */
void kwp_vocab_text(const kwp_vocab *v, kbuf *out);

/* Token ids with a flag per token: 1 where a word starts (a basic token's
 * first piece, or a special token), 0 on "##" continuations. */
typedef struct kwp_ids {
    uint32_t *ids;        /* (n, cap) */
    uint8_t *word_start;  /* (n, cap) */
    size_t n, cap;
} kwp_ids;
void kwp_ids_clear(kwp_ids *x);
void kwp_ids_free(kwp_ids *x);

/* Per-thread tokenizer. max_word_chars: a basic token longer than this many
 * code points becomes [UNK] (100 in Hugging Face, 200 in Google's original;
 * KWP_DEFAULT_MAX_WORD_CHARS). Owned; free with kwp_tok_free. */
#define KWP_DEFAULT_MAX_WORD_CHARS 100
typedef struct kwp_tok kwp_tok;
kwp_tok *kwp_tok_new(const kwp_vocab *v, size_t max_word_chars);
void kwp_tok_free(kwp_tok *t);

/* Tokenizes UTF-8 text s[0..n) (any bytes: invalid sequences become U+FFFD,
 * which BERT drops) and appends the ids to out. Special tokens written
 * literally ("[MASK]", exact case) stay single tokens, as in transformers.
 * Returns the number of ids appended. No [CLS]/[SEP] is added. */
size_t kwp_encode(kwp_tok *t, const char *s, size_t n, kwp_ids *out);

/* BasicTokenizer only: calls cb for each basic token (UTF-8, after cleaning,
 * NFC, lowercasing/accent stripping per the vocabulary's mode and punctuation
 * splitting). Special tokens are not treated specially. For vocabulary
 * training. */
void kwp_basic(kwp_tok *t, const char *s, size_t n,
               void (*cb)(const char *word, size_t len, void *ctx), void *ctx);

/* transformers' decode: pieces joined by spaces, " ##" removed, trimmed, then
 * its clean_up_tokenization (" ." -> "." and so on). Unknown ids are shown as
 * [UNK]. Appends to out. */
void kwp_decode(const kwp_vocab *v, const uint32_t *ids, size_t n, kbuf *out);

#endif
