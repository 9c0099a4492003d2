/* fuzz_mediawiki.c: libFuzzer target of the MediaWiki XML path of kiln ingest:
 * ingest/reader.c's entry loop and Expat callbacks (pages, titles,
 * namespaces, redirects, siteinfo's base URL, the page text), then for every
 * page the workers' processing in ingest/pipeline.c: wikitext_to_text
 * (ingest/wikitext.c), UTF-8 cleaning, NFKC and sentence segmentation
 * (text/text.c). The input is a dump file, as bytes (UTF-8, or UTF-16 with
 * a BOM, or a legacy charset the detector recognizes). How the bytes are cut
 * into chunks and whether other namespaces and redirects are kept follow
 * from the input's size (deterministic). See reader_harness.h. */
#include "tests/fuzz/reader_harness.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    harness_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t CHUNKS[5] = {0, 1, 7, 61, 4096};
    kingest_opts o;
    kingest_opts_default(&o);
    o.format = KFMT_MEDIAWIKI;
    o.threads = 1;
    o.all_namespaces = (size / 5) & 1;
    o.keep_redirects = (size / 10) & 1;
    harness_run(data, size, &o, "pages-articles.xml", CHUNKS[size % 5]);
    return 0;
}
