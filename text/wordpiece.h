/* wordpiece.h: BERT tokenization: BasicTokenizer semantics (cleaning, CJK
 * spacing, NFC, lowercasing and accent stripping, punctuation splitting) and
 * greedy longest-match-first WordPiece over a vocab.txt vocabulary, giving
 * the ids of Hugging Face transformers' BertTokenizer (do_lower_case and
 * strip_accents as transformers has them); word starts for whole-word
 * masking, BERT's or ICU's; and the census of what accent stripping does to
 * each script (for kiln vocab train's choice).
 *
 * A kwp_vocab is immutable once loaded and may be shared by threads; a
 * kwp_tok holds one thread's scratch buffers. Knows nothing of the store. */
#ifndef KILN_WORDPIECE_H
#define KILN_WORDPIECE_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

typedef struct kwp_vocab kwp_vocab;

/* How a vocabulary tokenizes: bits of kwp_vocab_load's mode. 0 and 1 are
 * the plain uncased (bert-base-uncased) and cased modes.
 *  KWP_CASED          keep case (transformers' do_lower_case = false); else
 *                     every word is lowercased.
 *  KWP_STRIP_ACCENTS  strip accents (NFD, then drop every Mn) even when cased
 *                     (strip_accents = true);
 *  KWP_KEEP_ACCENTS   never strip them, even when uncased (strip_accents =
 *                     false: lowercase only; Hangul syllables and kana voicing
 *                     marks stay as they are);
 *                     with neither bit, accents are stripped exactly when
 *                     uncased (strip_accents = None, transformers' default).
 *  KWP_ICU_WORDS      word starts (kwp_ids.word_start) follow ICU's word break
 *                     iterator instead of BERT's basic tokens (see kwp_encode);
 *                     the ids do not change. */
enum { KWP_CASED = 1, KWP_STRIP_ACCENTS = 2, KWP_KEEP_ACCENTS = 4, KWP_ICU_WORDS = 8 };

/* Builds a vocabulary from vocab.txt contents (one piece a line, id = line
 * number, "\n" or "\r\n" line ends; a final line without newline counts).
 * mode: KWP_* bits above (0: uncased, lowercase and strip accents; 1: cased).
 * [UNK] must be present; [PAD] [CLS] [SEP] [MASK] are looked up if present.
 * Returns 0 and *out (owned, free with kwp_vocab_free), or -1 with err:
 * duplicate pieces (named with both line numbers), empty pieces, no [UNK],
 * more than 2^31 pieces, invalid UTF-8 (line named), a mode with both accent
 * bits or unknown bits. */
int kwp_vocab_load(const char *text, size_t len, int mode, kwp_vocab **out, char *err,
                   size_t errlen);
void kwp_vocab_free(kwp_vocab *v);
size_t kwp_vocab_size(const kwp_vocab *v);
int kwp_vocab_cased(const kwp_vocab *v);
/* 1 when words lose their accents (NFD, Mn dropped): the effective value of
 * transformers' strip_accents for this mode. */
int kwp_vocab_strip_accents(const kwp_vocab *v);
/* The mode bits the vocabulary was loaded with. */
int kwp_vocab_mode(const kwp_vocab *v);
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

/* Token ids with a flag per token: 1 where a word starts, the units of
 * whole-word and n-gram masking. BERT's words (the default): 1 on a basic
 * token's first piece and on a special token, 0 on "##" continuations (so
 * each CJK ideograph is a word, and a run of kana or Hangul between spaces,
 * ideographs or punctuation is one). With KWP_ICU_WORDS see kwp_encode. */
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
 * Returns the number of ids appended. No [CLS]/[SEP] is added.
 * KWP_ICU_WORDS: ICU's word break iterator (root locale: dictionaries for
 * Chinese and Japanese, spaces for Hangul and alphabets) runs over s, and a
 * token starts a word when its first character is at a word boundary there,
 * so that a word is a run of whole ICU words: 人 間 (two basic tokens) is one
 * word, a "##" piece that starts where an ICU word starts is a word of its
 * own. When normalization changed the number of characters of a basic token
 * (NFC compositions, accent stripping of Hangul), the positions inside it
 * are unknown and its pieces keep BERT's flags; special tokens always start
 * a word. */
size_t kwp_encode(kwp_tok *t, const char *s, size_t n, kwp_ids *out);

/* BasicTokenizer only: calls cb for each basic token (UTF-8, after cleaning,
 * NFC, lowercasing/accent stripping per the vocabulary's mode and punctuation
 * splitting). Special tokens are not treated specially. For vocabulary
 * training. */
void kwp_basic(kwp_tok *t, const char *s, size_t n,
               void (*cb)(const char *word, size_t len, void *ctx), void *ctx);

/* Census of what accent stripping (NFD, drop Mn: strip_accents) would do to
 * a text, per script: letters (code points of category L* or M*, combining
 * marks of the Inherited and Common scripts counted with the letter before
 * them), how many of them it changes (those with a canonical decomposition:
 * é, Hangul syllables, kana with voicing marks) and how many it drops (Mn:
 * virama and vowel signs of Devanagari, Thai vowels and tone marks, free
 * combining marks). One census per thread; merge them at the end. Owned:
 * kwp_census_new / kwp_census_free. */
typedef struct kwp_census kwp_census;
kwp_census *kwp_census_new(void);
void kwp_census_free(kwp_census *c);
/* Counts the code points of UTF-8 text s[0..n) (invalid bytes skipped). */
void kwp_census_add(kwp_census *c, const char *s, size_t n);
/* Adds b's counts to a. */
void kwp_census_merge(kwp_census *a, const kwp_census *b);
typedef struct kwp_script_count {
    int script;               /* ICU UScriptCode */
    const char *name;         /* "Hangul", "Hiragana", "Latin", ... (static) */
    uint64_t letters, changed, dropped;
    int accents_only;         /* 1 for Latin, Greek, Cyrillic: stripping removes
                                 diacritics from letters that stay (what uncased
                                 BERT is made for); 0 for scripts where it
                                 changes or removes letters */
} kwp_script_count;
/* The scripts with at least one letter, most letters first (ties: script
 * code). Writes at most max entries to out; returns how many scripts have
 * letters. *letters (may be NULL) gets the total over all scripts. */
size_t kwp_census_scripts(const kwp_census *c, kwp_script_count *out, size_t max, uint64_t *letters);

/* transformers' decode: pieces joined by spaces, " ##" removed, trimmed, then
 * its clean_up_tokenization (" ." -> "." and so on). Unknown ids are shown as
 * [UNK]. Appends to out. */
void kwp_decode(const kwp_vocab *v, const uint32_t *ids, size_t n, kbuf *out);

#endif
