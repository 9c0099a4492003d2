/* fuzz_checkpoint.c: libFuzzer target of trainer/checkpoint.c's reader of a
 * checkpoint's state.json (kckpt_open: format, version, counters, sampler
 * position, RNG keys, config, metrics, the vocabulary's size and hash, the
 * tensor lists checked against the safetensors files) and of what kiln
 * train --resume and kiln finetune then do with it (kckpt_check against the
 * expected tensors, the stored run config read back with
 * ktrain_config_parse).
 *
 * Setup (once): a real checkpoint written with kckpt_save under a fresh
 * /tmp/kiln-fuzz-ckpt-XXXXXX/ folder (removed at exit): model.safetensors,
 * optimizer.safetensors, vocab.txt and the state.json they go with. Each
 * input replaces that state.json, then the folder is opened.
 * KILN_FUZZ_SEED=FILE writes the pristine state.json to FILE (the corpus's
 * seed). */
#include "tests/fuzz/fuzz_common.h"

#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>

#include "trainer/checkpoint.h"
#include "trainer/config.h"

static char g_root[64];
static char g_step[1200];
static char g_state[1300];

static float W[6] = {1, 2, 3, 4, 5, 6}, B[3] = {0.5f, -1, 2}, M[6] = {0};
static const kst_tensor MODEL[2] = {{"encoder.w", "F32", 2, {2, 3}, W, sizeof W},
                                    {"encoder.b", "F32", 1, {3}, B, sizeof B}};
static const kst_tensor OPTIM[1] = {{"m.encoder.w", "F32", 2, {2, 3}, M, sizeof M}};
static const kckpt_part PARTS[2] = {{"model.safetensors", MODEL, 2}, {"optimizer.safetensors", OPTIM, 1}};
static const char VOCAB[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n";

static void cleanup(void)
{
    if (g_root[0]) kckpt_remove_tree(g_root);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    snprintf(g_root, sizeof g_root, "/tmp/kiln-fuzz-ckpt-XXXXXX");
    if (!mkdtemp(g_root)) { perror("mkdtemp"); abort(); }
    atexit(cleanup);
    ktrain_config cfg;
    ktrain_config_defaults(&cfg);
    snprintf(cfg.checkpoint.dir, sizeof cfg.checkpoint.dir, "checkpoints/fuzz");
    cfg.budget.steps = 100;
    char *cj = ktrain_config_to_json(&cfg);
    kckpt_metric met[2] = {{"loss", 2.5}, {"val_loss", NAN}};
    kckpt_state st = {.step = 1, .tokens = 4096, .seconds = 1.25, .epoch = 0, .next_index = 32, .n_rng = 2,
                      .rng = {0x0123456789abcdefULL, 42}, .config_json = cj, .vocab_name = "fuzz",
                      .metrics = met, .n_metrics = 2, .extra_json = "{\"note\": \"fuzz\"}"};
    char err[1024];
    if (kckpt_save(g_root, &st, PARTS, 2, VOCAB, sizeof VOCAB - 1, 0, g_step, sizeof g_step, err, sizeof err)) {
        dprintf(2, "kckpt_save: %s\n", err);
        abort();
    }
    free(cj);
    snprintf(g_state, sizeof g_state, "%s/state.json", g_step);
    const char *seed = getenv("KILN_FUZZ_SEED");
    if (seed) {
        kbuf b = {0};
        if (kbuf_read_file(&b, g_state)) abort();
        FILE *f = fopen(seed, "wb");
        if (!f || fwrite(b.data, 1, b.len, f) != b.len || fclose(f)) abort();
        kbuf_free(&b);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = open(g_state, O_WRONLY | O_TRUNC | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) abort();
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) abort();
        off += (size_t)w;
    }
    close(fd);
    char err[2048];
    err[0] = '\0';
    kckpt *c = kckpt_open(g_step, err, sizeof err);
    if (!c) {
        FUZZ_CHECK(err[0] != '\0');
        fprintf(stderr, "kckpt_open: %s\n", err); /* shown with KILN_FUZZ_VERBOSE=1 */
        return 0;
    }
    const kckpt_state *st = kckpt_state_of(c);
    FUZZ_CHECK(st->step == 1 && st->n_rng >= 0 && st->n_rng <= KCKPT_MAX_RNG);
    FUZZ_CHECK(st->config_json && st->extra_json && st->vocab_name);
    for (int i = 0; i < st->n_metrics; i++) FUZZ_CHECK(st->metrics[i].name != NULL);
    size_t vlen;
    const char *v = kckpt_vocab(c, &vlen);
    FUZZ_CHECK(vlen == sizeof VOCAB - 1 && memcmp(v, VOCAB, vlen) == 0);
    /* what a resume does: the files against the model's tensors, the config read back */
    kckpt_check(c, PARTS, 2, 0, err, sizeof err);
    kckpt_check(c, PARTS, 1, KCKPT_ONLY_LISTED, err, sizeof err);
    const kst_tensor *t = kckpt_tensor(c, "model.safetensors", "encoder.w");
    if (t) FUZZ_CHECK(t->nbytes == sizeof W && memcmp(t->data, W, sizeof W) == 0);
    ktrain_config cfg;
    ktrain_config_parse(&cfg, st->config_json, strlen(st->config_json), NULL, 0, err, sizeof err);
    kckpt_close(c);
    char latest[1300];
    int64_t step;
    FUZZ_CHECK(kckpt_latest(g_root, latest, sizeof latest, &step) == 0 && step == 1);
    return 0;
}
