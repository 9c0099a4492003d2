/* fuzz_wikitext.c: libFuzzer target of ingest/wikitext.c, MediaWiki wikitext
 * to plain text (wikitext_to_text), the conversion every page of a dump goes
 * through. The input is the wikitext of one page, as Expat hands it over.
 * Checks the header's promises: any bytes are accepted, nothing is read past
 * the input, the output has no leading or trailing blank line, and the same
 * input gives the same output (no hidden state). */
#include "tests/fuzz/fuzz_common.h"

#include "ingest/wikitext.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *src = fuzz_dup(data, size);
    kbuf out = {0}, again = {0};
    wikitext_to_text(src, size, &out);
    if (out.len) {
        FUZZ_CHECK(out.data[0] != '\n');
        FUZZ_CHECK(out.data[out.len - 1] != '\n');
    }
    wikitext_to_text(src, size, &again);
    FUZZ_CHECK(out.len == again.len && (out.len == 0 || memcmp(out.data, again.data, out.len) == 0));
    kbuf_free(&out);
    kbuf_free(&again);
    free(src);
    return 0;
}
