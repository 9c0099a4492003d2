/* fuzz_plaintext.c: libFuzzer target of kiln ingest's byte-level reading of
 * an entry and of its plain-text and JSONL framing: ingest/reader.c's entry
 * loop (UTF-16 BOM decoding, the binary-data check, charset detection with
 * ICU and legacy charset conversion, streaming UTF-8 cleaning with bytes held
 * back across chunks, format detection by name and content), the line
 * framing with its --max-line-bytes / --max-doc-bytes limits and the three
 * --split modes, then the workers' processing (ingest/pipeline.c: JSONL
 * lines through kjson_extract, cleaning, normalization, sentence
 * segmentation). See reader_harness.h.
 *
 * Input: two option bytes, then the entry's bytes.
 *   byte 0: bits 0-1 format (auto, text, jsonl, auto), bits 2-3 split (doc,
 *           blank-line, line, line), bits 4-5 --encoding (auto, auto,
 *           windows-1252, GB18030), bits 6-7 normalization (NFKC, NFC, none,
 *           NFKC)
 *   byte 1: bits 0-2 chunk size (all, 1, 2, 3, 7, 64, 1000, 4096), bit 3
 *           tiny limits (64-byte lines, 256-byte documents), bits 4-5 entry
 *           name (doc.txt, README, data.jsonl, notes.xml), bit 6 JSONL text
 *           field "body" instead of "text" */
#include "tests/fuzz/reader_harness.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    harness_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int FORMATS[4] = {KFMT_AUTO, KFMT_TEXT, KFMT_JSONL, KFMT_AUTO};
    static const int SPLITS[4] = {KSPLIT_DOC, KSPLIT_BLANK_LINE, KSPLIT_LINE, KSPLIT_LINE};
    static const char *const ENCODINGS[4] = {"auto", "auto", "windows-1252", "GB18030"};
    static const int NORMS[4] = {KTEXT_NFKC, KTEXT_NFC, KTEXT_NONE, KTEXT_NFKC};
    static const size_t CHUNKS[8] = {0, 1, 2, 3, 7, 64, 1000, 4096};
    static const char *const NAMES[4] = {"doc.txt", "README", "data.jsonl", "notes.xml"};
    if (size < 2) return 0;
    uint8_t b0 = data[0], b1 = data[1];
    kingest_opts o;
    kingest_opts_default(&o);
    o.threads = 1;
    o.format = FORMATS[b0 & 3];
    o.split = SPLITS[(b0 >> 2) & 3];
    o.encoding = ENCODINGS[(b0 >> 4) & 3];
    o.normalize = NORMS[(b0 >> 6) & 3];
    if (b1 & 8) {
        o.max_line_bytes = 64;
        o.max_doc_bytes = 256;
    }
    if (b1 & 64) o.text_field = "body";
    harness_run(data + 2, size - 2, &o, NAMES[(b1 >> 4) & 3], CHUNKS[b1 & 7]);
    return 0;
}
