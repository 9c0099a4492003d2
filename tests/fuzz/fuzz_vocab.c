/* fuzz_vocab.c: libFuzzer target of text/wordpiece.c's vocab.txt reader
 * (kwp_vocab_load: kiln vocab import, checkpoints' and Hugging Face folders'
 * vocab.txt) and of the tokenizer over whatever vocabulary it accepts. The
 * input is a vocab.txt, read uncased and cased. A vocabulary that loads is
 * checked (every id's piece looks up to an id with the same piece: the last
 * duplicate wins, as in transformers; [UNK] is there), then used to encode a
 * fixed text with special tokens, long words and accents, and the input
 * itself (its first KiB), and to decode the ids again (of the input's, the
 * first 64: decoding is slow under instrumentation); every id must be below
 * the vocabulary's size. */
#include "tests/fuzz/fuzz_common.h"

#include "text/wordpiece.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    return 0;
}

static const char SAMPLE[] =
    "[CLS] Hello, world! Déjà vu: naïve café [MASK] 東京 ##ing unaffable "
    "supercalifragilisticexpialidociousandmoreandmoreandmoreandmoreandmoreandmoreandmore [SEP]\n"
    "\xef\xbb\xbf tab\there \xf0\x9f\x98\x80 \xff\xfe bad bytes [UNK][PAD]";

/* Encodes s[0..n), checks the ids, decodes the first max_decode of them
 * (decoding makes a memcmp per byte and replacement: slow under libFuzzer). */
static void encode(kwp_tok *t, const kwp_vocab *v, const char *s, size_t n, size_t max_decode)
{
    kwp_ids ids = {0};
    size_t k = kwp_encode(t, s, n, &ids);
    FUZZ_CHECK(k == ids.n);
    for (size_t i = 0; i < ids.n; i++) FUZZ_CHECK(ids.ids[i] < kwp_vocab_size(v));
    kbuf out = {0};
    kwp_decode(v, ids.ids, ids.n < max_decode ? ids.n : max_decode, &out);
    kbuf_free(&out);
    kwp_ids_free(&ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_dup(data, size);
    for (int cased = 0; cased <= 1; cased++) {
        kwp_vocab *v = NULL;
        char err[256];
        err[0] = '\0';
        if (kwp_vocab_load(text, size, cased, &v, err, sizeof err)) {
            FUZZ_CHECK(v == NULL && err[0] != '\0');
            continue;
        }
        FUZZ_CHECK(v != NULL && kwp_vocab_size(v) > 0);
        FUZZ_CHECK(kwp_vocab_special(v, KWP_UNK) >= 0);
        for (uint32_t id = 0; id < kwp_vocab_size(v); id++) {
            size_t len, len2;
            const char *p = kwp_vocab_piece(v, id, &len);
            FUZZ_CHECK(p != NULL);
            int64_t back = kwp_vocab_id(v, p, len);
            FUZZ_CHECK(back >= (int64_t)id);
            const char *q = kwp_vocab_piece(v, (uint32_t)back, &len2);
            FUZZ_CHECK(len2 == len && memcmp(p, q, len) == 0);
        }
        kwp_tok *t = kwp_tok_new(v, cased ? 200 : KWP_DEFAULT_MAX_WORD_CHARS);
        encode(t, v, SAMPLE, sizeof SAMPLE - 1, SIZE_MAX);
        encode(t, v, text, size < 1024 ? size : 1024, 64);
        kwp_tok_free(t);
        kbuf vt = {0};
        kwp_vocab_text(v, &vt);
        kbuf_free(&vt);
        kwp_vocab_free(v);
    }
    free(text);
    return 0;
}
