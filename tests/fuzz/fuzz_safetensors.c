/* fuzz_safetensors.c: libFuzzer target of trainer/safetensors.c's reader
 * (kst_open: the 8-byte header length, the JSON header, dtypes, shapes,
 * data_offsets tiling the data exactly, __metadata__), which opens every
 * checkpoint's tensors and the model.safetensors of a Hugging Face folder,
 * and of trainer/hfimport.c's use of one (khf_load: tensor names mapped to
 * kiln's, shapes checked against the layout, F16 / BF16 converted, tied
 * copies compared).
 *
 * The input is a safetensors file, opened from a memory file. One that opens
 * is checked (every tensor's bytes readable and of the size its dtype and
 * shape say; lookups by name find it) and then imported as the
 * model.safetensors of a tiny BERT (or, when a tensor name says "albert", a
 * tiny ALBERT) Hugging Face folder under a fresh /tmp/kiln-fuzz-st-XXXXXX/
 * (removed at exit). KILN_FUZZ_SEED=DIR writes valid files for those
 * folders (the corpus's seeds: every head, F32 and F16) into DIR. */
#include "tests/fuzz/fuzz_common.h"

#include <sys/stat.h>

#include "trainer/checkpoint.h"
#include "trainer/export.h"
#include "trainer/hfimport.h"

static char g_root[64];
static char g_dir[2][128];

static const char VOCAB[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\nof\nand\nto\na\n";
static const char *const CONFIG[2] = {
    "{\"model_type\": \"bert\", \"vocab_size\": 10, \"hidden_size\": 4, \"num_hidden_layers\": 1,"
    " \"num_attention_heads\": 1, \"intermediate_size\": 8, \"max_position_embeddings\": 8,"
    " \"type_vocab_size\": 2, \"hidden_act\": \"gelu\", \"pad_token_id\": 0}",
    "{\"model_type\": \"albert\", \"vocab_size\": 10, \"embedding_size\": 2, \"hidden_size\": 4,"
    " \"num_hidden_layers\": 1, \"num_hidden_groups\": 1, \"num_attention_heads\": 1,"
    " \"intermediate_size\": 8, \"max_position_embeddings\": 8, \"hidden_act\": \"gelu_new\","
    " \"pad_token_id\": 0}"};

static void cleanup(void)
{
    if (g_root[0]) kckpt_remove_tree(g_root);
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f)) {
        dprintf(2, "%s: cannot write\n", path);
        abort();
    }
}

/* Seeds: the layout of each head of both tiny models, as F32 and F16 files. */
static void write_seeds(const char *out)
{
    for (int albert = 0; albert <= 1; albert++) {
        kmodel_config m;
        memset(&m, 0, sizeof m);
        m.type = albert ? KMODEL_ALBERT : KMODEL_BERT;
        m.vocab_size = 10, m.hidden_size = 4, m.embedding_size = albert ? 2 : 4, m.num_hidden_layers = 1;
        m.num_attention_heads = 1, m.intermediate_size = 8, m.max_position_embeddings = 8, m.type_vocab_size = 2;
        m.num_hidden_groups = 1, m.hidden_act = albert ? KACT_GELU_NEW : KACT_GELU, m.layer_norm_eps = 1e-12;
        m.initializer_range = 0.02;
        static const int KINDS[4] = {KEXPORT_HEAD_PRETRAINING, KEXPORT_HEAD_MASKED_LM, KEXPORT_HEAD_BASE,
                                     KEXPORT_HEAD_CLASSIFICATION};
        for (int k = 0; k < 4; k++)
            for (int f16 = 0; f16 <= 1; f16++) {
                kexport_head h = {KINDS[k], KINDS[k] == KEXPORT_HEAD_CLASSIFICATION ? 3 : 1, NULL, NULL};
                int nl;
                kexport_entry *lay = kexport_layout2(&m, 10, &h, &nl);
                if (!lay) {
                    dprintf(2, "kexport_layout2: no layout\n");
                    abort();
                }
                kst_tensor *t = calloc((size_t)nl, sizeof *t);
                int n = 0;
                for (int i = 0; i < nl; i++) {
                    if (lay[i].role == KEXPORT_TIED) continue;
                    kst_tensor *x = &t[n++];
                    x->name = lay[i].name;
                    x->dtype = f16 ? "F16" : "F32";
                    x->ndim = lay[i].ndim;
                    size_t numel = 1;
                    for (int d = 0; d < x->ndim; d++) numel *= (size_t)(x->shape[d] = lay[i].shape[d]);
                    x->nbytes = numel * (f16 ? 2 : 4);
                    unsigned char *b = calloc(1, x->nbytes ? x->nbytes : 1);
                    for (size_t e = 0; e < numel; e++) {
                        if (f16) b[2 * e + 1] = 0x3c; /* 1.0 */
                        else b[4 * e + 2] = 0x80, b[4 * e + 3] = 0x3f;
                    }
                    x->data = b;
                }
                char path[1024], err[1024];
                snprintf(path, sizeof path, "%s/%s-%s-%s.safetensors", out, albert ? "albert" : "bert",
                         kexport_architecture(m.type, &h), f16 ? "f16" : "f32");
                const char *meta[2] = {"format", "pt"};
                if (kst_write(path, t, n, meta, 1, err, sizeof err)) {
                    dprintf(2, "%s\n", err);
                    abort();
                }
                for (int i = 0; i < n; i++) free((void *)t[i].data);
                free(t);
                free(lay);
            }
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    snprintf(g_root, sizeof g_root, "/tmp/kiln-fuzz-st-XXXXXX");
    if (!mkdtemp(g_root)) { perror("mkdtemp"); abort(); }
    atexit(cleanup);
    for (int i = 0; i < 2; i++) {
        snprintf(g_dir[i], sizeof g_dir[i], "%s/%s", g_root, i ? "albert" : "bert");
        if (mkdir(g_dir[i], 0755)) abort();
        char p[256];
        snprintf(p, sizeof p, "%s/config.json", g_dir[i]);
        write_file(p, CONFIG[i], strlen(CONFIG[i]));
        snprintf(p, sizeof p, "%s/vocab.txt", g_dir[i]);
        write_file(p, VOCAB, sizeof VOCAB - 1);
    }
    const char *seed = getenv("KILN_FUZZ_SEED");
    if (seed) write_seeds(seed);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[2048];
    err[0] = '\0';
    kst_file *f = kst_open(fuzz_memfile(data, size), err, sizeof err);
    if (!f) {
        FUZZ_CHECK(err[0] != '\0');
        return 0;
    }
    int albert = 0;
    unsigned sum = 0; /* every byte is read: ASan sees a tensor reaching out of the file */
    for (int i = 0; i < kst_count(f); i++) {
        const kst_tensor *t = kst_get(f, i);
        FUZZ_CHECK(t && t->name && t->dtype && t->ndim >= 0 && t->ndim <= KST_MAX_DIMS);
        size_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= (size_t)t->shape[d];
        FUZZ_CHECK(t->nbytes == numel * kst_dtype_size(t->dtype));
        const unsigned char *b = t->data;
        for (size_t k = 0; k < t->nbytes; k++) sum += b[k];
        FUZZ_CHECK(kst_find(f, t->name) == t);
        if (strstr(t->name, "albert")) albert = 1;
    }
    (void)kst_meta(f, "format");
    __asm__ volatile("" : : "r"(sum));
    kst_close(f);

    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors", g_dir[albert]);
    write_file(path, data, size);
    khf_model m;
    if (khf_load(g_dir[albert], &m, err, sizeof err) == 0) {
        FUZZ_CHECK(m.n > 0 && m.tensors && m.vocab);
        for (int i = 0; i < m.n; i++) FUZZ_CHECK(!strcmp(m.tensors[i].dtype, "F32"));
        ktrain_config rc;
        FUZZ_CHECK(khf_run_config(&m, &rc, err, sizeof err) == 0);
        char *extra = khf_extra_json(&m, g_dir[albert]);
        khf_export_head eh;
        khf_export_head_of(m.config.type, extra, m.tensors, m.n, &eh);
        khf_export_head_free(&eh);
        free(extra);
    } else {
        FUZZ_CHECK(err[0] != '\0');
        fprintf(stderr, "khf_load: %s\n", err); /* shown with KILN_FUZZ_VERBOSE=1 */
    }
    khf_free(&m);
    return 0;
}
