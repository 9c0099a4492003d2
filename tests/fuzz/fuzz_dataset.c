/* fuzz_dataset.c: libFuzzer target of sampler/dataset.c, the labelled
 * datasets of fine-tuning (kdataset_load: GLUE TSV or JSONL, read whole,
 * UTF-8 checked, tokenized with bert-base-uncased's vocabulary, labels
 * resolved), and of what a run then does with one: the epoch order and
 * batches filled with every example (kdataset_order, kdataset_fill). A file
 * that loads is also loaded again as the dev file, with the first load's
 * label set.
 *
 * Input: one option byte, then the file (handed over as a memory file).
 *   bits 0    format (TSV, JSONL)
 *   bit  1    a pair column ("sentence2")
 *   bits 2-3  labels: "label" with num_labels 0 (from the file), 1
 *             (regression), 2, or no label column (unlabelled)
 *   bits 4-7  seq_len 3 + 4 * k (3 .. 63) */
#include "tests/fuzz/fuzz_common.h"

#include <math.h>

#include "sampler/dataset.h"

static kwp_vocab *g_vocab;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    kbuf b = {0};
    const char *path = KILN_SOURCE_DIR "/examples/vocab/bert-base-uncased-vocab.txt";
    char err[256];
    if (kbuf_read_file(&b, path) || kwp_vocab_load(b.data, b.len, 0, &g_vocab, err, sizeof err)) {
        dprintf(2, "%s: cannot load the vocabulary\n", path);
        abort();
    }
    kbuf_free(&b);
    return 0;
}

static void check_dataset(const kdataset *d, const kdataset_opts *o)
{
    int64_t n = kdataset_count(d);
    FUZZ_CHECK(n > 0);
    int K = kdataset_num_labels(d);
    int L = kdataset_seq_len(d);
    FUZZ_CHECK(L == o->seq_len);
    for (int64_t r = 0; r < n; r++) {
        const int32_t *a, *b;
        int na, nb;
        kdataset_tokens(d, r, &a, &na, &b, &nb);
        FUZZ_CHECK(na >= 0 && nb >= 0 && na + nb + 2 + (kdataset_has_pair(d) ? 1 : 0) <= L);
        if (!kdataset_has_pair(d)) FUZZ_CHECK(nb == 0);
        int32_t lab = kdataset_label(d, r);
        if (o->label_column && K >= 2) FUZZ_CHECK(lab >= 0 && lab < K && kdataset_label_name(d, lab));
        else FUZZ_CHECK(lab == -1);
        if (o->label_column && K == 1) FUZZ_CHECK(isfinite(kdataset_target(d, r)));
        FUZZ_CHECK(kdataset_line(d, r) >= 1);
    }
    int64_t *order = malloc(sizeof *order * (size_t)n);
    kdataset_order(n, 7, 1, order);
    ksample_batch *bt = kdataset_batch_new(g_vocab, 8, L);
    FUZZ_CHECK(bt != NULL);
    for (int64_t i = 0; i < n; i += 8) {
        int k = n - i < 8 ? (int)(n - i) : 8;
        FUZZ_CHECK(kdataset_fill(d, order + i, k, bt) == 0);
    }
    kdataset_batch_free(bt);
    free(order);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t b0 = data[0];
    kdataset_opts o;
    kdataset_opts_defaults(&o);
    o.format = (b0 & 1) ? KDS_FORMAT_JSONL : KDS_FORMAT_TSV;
    o.text_pair_column = (b0 & 2) ? "sentence2" : NULL;
    switch ((b0 >> 2) & 3) {
    case 0: o.num_labels = 0; break;
    case 1: o.num_labels = 1; break;
    case 2: o.num_labels = 2; break;
    case 3: o.label_column = NULL; break;
    }
    o.seq_len = 3 + 4 * (b0 >> 4);
    const char *path = fuzz_memfile(data + 1, size - 1);
    kdataset *d = NULL;
    char err[1024];
    err[0] = '\0';
    int rc = kdataset_load(&o, path, g_vocab, &d, err, sizeof err);
    if (rc) {
        FUZZ_CHECK(d == NULL && err[0] != '\0');
        fprintf(stderr, "kdataset_load: %s\n", err); /* shown with KILN_FUZZ_VERBOSE=1 */
        return 0;
    }
    check_dataset(d, &o);
    /* the same file as the dev set of a run trained on it */
    kdataset_opts dev = o;
    if (o.label_column && kdataset_num_labels(d) >= 2) {
        dev.label_names = kdataset_label_names(d);
        dev.n_label_names = kdataset_num_labels(d);
        dev.num_labels = 0;
    }
    kdataset *d2 = NULL;
    rc = kdataset_load(&dev, path, g_vocab, &d2, err, sizeof err);
    FUZZ_CHECK(rc == 0);
    check_dataset(d2, &dev);
    FUZZ_CHECK(kdataset_count(d2) == kdataset_count(d));
    kdataset_free(d2);
    kdataset_free(d);
    return 0;
}
