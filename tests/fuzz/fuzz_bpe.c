/* fuzz_bpe.c: libFuzzer target of text/bpe.c, GPT-2's byte-level BPE: the
 * vocabulary and merges reader (kbpe_vocab_load: kiln vocab import --bpe,
 * encode --merges) and the encoder / decoder. The first input byte picks:
 *  odd:  the rest is a text, encoded with the real GPT-2 files
 *        (examples/vocab/gpt2, loaded once): every id below the size, the
 *        first id a word start, and decoding gives back exactly the text with
 *        ill-formed UTF-8 as U+FFFD (the documented contract); encoding twice
 *        with the same tokenizer (its word cache warm) gives the same ids;
 *  even: the rest is "VOCAB_JSON \0 MERGES \0 TEXT": a vocabulary that loads
 *        encodes a fixed sample and TEXT with ids below its size, and its
 *        vocab.json / merges.txt written back load again to the same sizes. */
#include "tests/fuzz/fuzz_common.h"

#include "text/bpe.h"

static kbpe_vocab *g_gpt2;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    kbuf a = {0}, b = {0};
    char err[256];
    if (kbuf_read_file(&a, KILN_SOURCE_DIR "/examples/vocab/gpt2/encoder.json") ||
        kbuf_read_file(&b, KILN_SOURCE_DIR "/examples/vocab/gpt2/vocab.bpe") ||
        kbpe_vocab_load(a.data, a.len, b.data, b.len, &g_gpt2, err, sizeof err)) {
        dprintf(2, "fuzz_bpe: cannot load examples/vocab/gpt2\n");
        abort();
    }
    kbuf_free(&a);
    kbuf_free(&b);
    return 0;
}

static const char SAMPLE[] = "Hello world, it's <|endoftext|> caf\xc3\xa9 \xf0\x9f\x98\x80  x\n\n \xff";

static void encode_check(kbpe_tok *t, const kbpe_vocab *v, const char *s, size_t n, int exact)
{
    kwp_ids ids = {0}, again = {0};
    size_t k = kbpe_encode(t, s, n, &ids);
    FUZZ_CHECK(k == ids.n);
    FUZZ_CHECK(n == 0 || ids.n > 0);
    if (ids.n) FUZZ_CHECK(ids.word_start[0] == 1);
    for (size_t i = 0; i < ids.n; i++) FUZZ_CHECK(ids.ids[i] < kbpe_vocab_size(v));
    if (exact) {
        kbuf dec = {0}, fixed = {0};
        FUZZ_CHECK(kbpe_decode(v, ids.ids, ids.n, &dec) == 0);
        kbuf_put_utf8(&fixed, s, n, 0);
        FUZZ_CHECK(dec.len == fixed.len && (dec.len == 0 || memcmp(dec.data, fixed.data, dec.len) == 0));
        kbuf_free(&dec);
        kbuf_free(&fixed);
        kbpe_encode(t, s, n, &again);
        FUZZ_CHECK(again.n == ids.n && (ids.n == 0 || memcmp(again.ids, ids.ids, ids.n * sizeof *ids.ids) == 0));
    }
    kwp_ids_free(&ids);
    kwp_ids_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    char *text = fuzz_dup(data + 1, size - 1);
    size_t n = size - 1;
    if (data[0] & 1) {
        kbpe_tok *t = kbpe_tok_new(g_gpt2);
        encode_check(t, g_gpt2, text, n, 1);
        kbpe_tok_free(t);
        free(text);
        return 0;
    }
    const char *z1 = memchr(text, '\0', n);
    size_t vl = z1 ? (size_t)(z1 - text) : n;
    const char *m = z1 ? z1 + 1 : text + n;
    size_t rest = n - vl - (z1 != NULL);
    const char *z2 = memchr(m, '\0', rest);
    size_t ml = z2 ? (size_t)(z2 - m) : rest;
    const char *tx = z2 ? z2 + 1 : m + rest;
    size_t tl = rest - ml - (z2 != NULL);
    char *vj = fuzz_dup((const uint8_t *)text, vl), *mt = fuzz_dup((const uint8_t *)m, ml);
    kbpe_vocab *v = NULL;
    char err[256];
    err[0] = '\0';
    if (kbpe_vocab_load(vj, vl, mt, ml, &v, err, sizeof err)) {
        FUZZ_CHECK(v == NULL && err[0] != '\0');
    } else {
        kbpe_tok *t = kbpe_tok_new(v);
        encode_check(t, v, SAMPLE, sizeof SAMPLE - 1, 0);
        encode_check(t, v, tx, tl, 0);
        kbpe_tok_free(t);
        kbuf j = {0}, mm = {0};
        kbpe_vocab_json(v, &j);
        kbpe_merges_text(v, &mm);
        kbpe_vocab *w = NULL;
        FUZZ_CHECK(kbpe_vocab_load(j.data, j.len, mm.data, mm.len, &w, err, sizeof err) == 0);
        FUZZ_CHECK(kbpe_vocab_size(w) == kbpe_vocab_size(v) && kbpe_vocab_nmerges(w) == kbpe_vocab_nmerges(v));
        kbpe_vocab_free(w);
        kbuf_free(&j);
        kbuf_free(&mm);
        kbpe_vocab_free(v);
    }
    free(vj);
    free(mt);
    free(text);
    return 0;
}
