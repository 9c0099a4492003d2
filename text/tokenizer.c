/* tokenizer.c: a vocabulary of either kind behind one handle (tokenizer.h). */
#include "text/tokenizer.h"

#include <stdlib.h>

struct ktkz {
    int kind;
    kwp_vocab *wp;
    kbpe_vocab *bpe;
};

struct ktkz_tok {
    const ktkz *t;
    kwp_tok *wp;
    kbpe_tok *bpe;
};

int ktkz_load(int kind, const char *pieces, size_t plen, const char *merges, size_t mlen, int mode,
              ktkz **out, char *err, size_t errlen)
{
    *out = NULL;
    ktkz *t = xcalloc(1, sizeof *t);
    t->kind = kind;
    int rc = kind == KTKZ_BPE ? kbpe_vocab_load(pieces, plen, merges ? merges : "", merges ? mlen : 0, &t->bpe, err, errlen)
                              : kwp_vocab_load(pieces, plen, mode, &t->wp, err, errlen);
    if (rc) {
        free(t);
        return -1;
    }
    *out = t;
    return 0;
}

void ktkz_free(ktkz *t)
{
    if (!t) return;
    kwp_vocab_free(t->wp);
    kbpe_vocab_free(t->bpe);
    free(t);
}

int ktkz_kind(const ktkz *t) { return t->kind; }
size_t ktkz_size(const ktkz *t) { return t->bpe ? kbpe_vocab_size(t->bpe) : kwp_vocab_size(t->wp); }
const kwp_vocab *ktkz_wordpiece(const ktkz *t) { return t->wp; }
const kbpe_vocab *ktkz_bpe(const ktkz *t) { return t->bpe; }
int64_t ktkz_unk(const ktkz *t) { return t->bpe ? -1 : kwp_vocab_special(t->wp, KWP_UNK); }

const char *ktkz_piece(const ktkz *t, uint32_t id, size_t *len)
{
    return t->bpe ? kbpe_vocab_piece(t->bpe, id, len) : kwp_vocab_piece(t->wp, id, len);
}

ktkz_tok *ktkz_tok_new(const ktkz *t, size_t max_word_chars)
{
    ktkz_tok *k = xcalloc(1, sizeof *k);
    k->t = t;
    if (t->bpe) k->bpe = kbpe_tok_new(t->bpe);
    else k->wp = kwp_tok_new(t->wp, max_word_chars);
    return k;
}

void ktkz_tok_free(ktkz_tok *k)
{
    if (!k) return;
    kwp_tok_free(k->wp);
    kbpe_tok_free(k->bpe);
    free(k);
}

size_t ktkz_encode(ktkz_tok *k, const char *s, size_t n, kwp_ids *out)
{
    return k->bpe ? kbpe_encode(k->bpe, s, n, out) : kwp_encode(k->wp, s, n, out);
}

void ktkz_decode(const ktkz *t, const uint32_t *ids, size_t n, kbuf *out)
{
    if (t->bpe) kbpe_decode(t->bpe, ids, n, out);
    else kwp_decode(t->wp, ids, n, out);
}
