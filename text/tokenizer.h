/* tokenizer.h: one handle for a vocabulary of either kind, WordPiece
 * (wordpiece.h, BERT's) or byte-level BPE (bpe.h, GPT-2's), for the code
 * that only encodes and decodes (kiln tokenize, encode, decode).
 *
 * A ktkz is immutable once loaded and may be shared by threads; a ktkz_tok is
 * one thread's tokenizer. Knows nothing of the store. */
#ifndef KILN_TOKENIZER_H
#define KILN_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "text/bpe.h"
#include "text/wordpiece.h"

/* Kinds (the values of the store's vocabularies.kind, KVOCAB_*). */
enum { KTKZ_WORDPIECE = 0, KTKZ_BPE = 1 };

typedef struct ktkz ktkz;

/* WordPiece: pieces = vocab.txt, mode = KWP_* bits, merges unused.
 * BPE: pieces = vocab.json, merges = merges.txt, mode unused.
 * Returns 0 and *out (owned: ktkz_free) or -1 with err (kwp_vocab_load's or
 * kbpe_vocab_load's message). */
int ktkz_load(int kind, const char *pieces, size_t plen, const char *merges, size_t mlen, int mode,
              ktkz **out, char *err, size_t errlen);
void ktkz_free(ktkz *t);
int ktkz_kind(const ktkz *t);
size_t ktkz_size(const ktkz *t);
/* The vocabulary inside (NULL when it is of the other kind). */
const kwp_vocab *ktkz_wordpiece(const ktkz *t);
const kbpe_vocab *ktkz_bpe(const ktkz *t);
/* The id counted as unknown ([UNK]), -1 for BPE (which has none). */
int64_t ktkz_unk(const ktkz *t);
/* The token of id as the vocabulary file writes it, NULL if out of range. */
const char *ktkz_piece(const ktkz *t, uint32_t id, size_t *len);

typedef struct ktkz_tok ktkz_tok;
/* One thread's tokenizer; max_word_chars: WordPiece's (kwp_tok_new). Owned:
 * ktkz_tok_free. */
ktkz_tok *ktkz_tok_new(const ktkz *t, size_t max_word_chars);
void ktkz_tok_free(ktkz_tok *k);
/* kwp_encode or kbpe_encode. */
size_t ktkz_encode(ktkz_tok *k, const char *s, size_t n, kwp_ids *out);
/* kwp_decode (transformers' text) or kbpe_decode (the exact bytes). */
void ktkz_decode(const ktkz *t, const uint32_t *ids, size_t n, kbuf *out);

#endif
