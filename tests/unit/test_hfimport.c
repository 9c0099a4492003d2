/* test_hfimport.c: unit tests of trainer/hfimport.h and the heads of
 * trainer/export.h. Import: small Hugging Face folders written here with
 * the safetensors writer (BertModel naming without the prefix,
 * BertForPreTraining naming with a tied decoder copy, AlbertModel naming,
 * F16 tensors, a sequence classifier with id2label, BertForMaskedLM with
 * and without the pooler and NSP head) load with kiln's names
 * and the same bytes; refusals name the file, the tensor and both shapes,
 * the architecture, the model_type, an unknown tensor, missing files.
 * Export: the classifier layout (names, shapes, roles) of BERT and ALBERT
 * with 3 labels, config.json's id2label / label2id / problem_type, a base
 * model written without the prefix, the refusal of a classifier export
 * without classifier.*, the head a checkpoint's tensors imply. GPT-2: a
 * folder kexport_gpt2 wrote imports bit-exactly (Conv1D transposed back to
 * [out, in]) and exports back to the same bytes; variants written with
 * kst_write: names without "transformer.", the attn.bias / masked_bias
 * buffers, lm_head.weight equal (dropped) and different (refused), an F16
 * Conv1D weight, a wrong shape, an unknown tensor, missing merges.txt,
 * tokenizer.json only, GPT2Config's defaults, the attention variants kiln
 * refuses. Each test works in a fresh /tmp folder. */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sampler/batch.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "trainer/export.h"
#include "trainer/hfimport.h"
#include "util/util.h"

static char dir[256];
static char err[2048];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/kiln-test-hfimport-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kckpt_remove_tree(dir);
    return 0;
}

static char *at(const char *rel)
{
    static char bufs[4][1024];
    static int k;
    char *b = bufs[k++ % 4];
    snprintf(b, 1024, "%s/%s", dir, rel);
    return b;
}

static const char VOCAB[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\nof\nand\nto\na\n";
enum { V = 10 };

static kmodel_config tiny(int type)
{
    kmodel_config m;
    memset(&m, 0, sizeof m);
    m.type = type;
    m.vocab_size = V;
    m.hidden_size = 8;
    m.embedding_size = type == KMODEL_ALBERT ? 4 : 8;
    m.num_hidden_layers = 2;
    m.num_attention_heads = 2;
    m.intermediate_size = 16;
    m.max_position_embeddings = 16;
    m.type_vocab_size = 2;
    m.hidden_act = type == KMODEL_ALBERT ? KACT_GELU_NEW : KACT_GELU;
    m.layer_norm_eps = 1e-12;
    m.num_hidden_groups = type == KMODEL_ALBERT ? 1 : 2;
    m.hidden_dropout_prob = 0.1;
    m.attention_probs_dropout_prob = 0.1;
    m.initializer_range = 0.02;
    return m;
}

/* The tensors of a layout (non-tied entries, or all with tied), each filled
 * with distinct values; names and data owned (free_set). */
typedef struct tset { kst_tensor t[512]; int n; } tset;

static void make_set(tset *s, const kmodel_config *m, const kexport_head *h, int with_tied)
{
    int nl;
    kexport_entry *lay = kexport_layout2(m, V, h, &nl);
    assert_non_null(lay);
    s->n = 0;
    for (int k = 0; k < nl; k++) {
        if (lay[k].role == KEXPORT_TIED && !with_tied) continue;
        kst_tensor *t = &s->t[s->n++];
        memset(t, 0, sizeof *t);
        t->name = xstrdup(lay[k].name);
        t->dtype = "F32";
        t->ndim = lay[k].ndim;
        t->shape[0] = lay[k].shape[0];
        t->shape[1] = lay[k].ndim == 2 ? lay[k].shape[1] : 0;
        size_t numel = (size_t)t->shape[0] * (size_t)(t->ndim == 2 ? t->shape[1] : 1);
        float *d = xmalloc(numel * sizeof *d);
        for (size_t e = 0; e < numel; e++) d[e] = (float)k + (float)e / 1024.0f;
        t->data = d;
        t->nbytes = numel * sizeof *d;
    }
    /* tied copies hold their target's values */
    for (int i = 0; i < s->n; i++) {
        const char *to = kexport_tied_to(s->t[i].name);
        for (int j = 0; to && j < s->n; j++)
            if (!strcmp(s->t[j].name, to)) memcpy((void *)s->t[i].data, s->t[j].data, s->t[i].nbytes);
    }
    free(lay);
}

static void free_set(tset *s)
{
    for (int i = 0; i < s->n; i++) {
        free((char *)s->t[i].name);
        free((void *)s->t[i].data);
    }
    s->n = 0;
}

static const kst_tensor *find(const kst_tensor *t, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, name)) return &t[i];
    return NULL;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A Hugging Face folder `name`: the set's tensors (prefix dropped when
 * strip, e.g. "bert."), config.json from cfg_text, vocab.txt. */
static const char *write_folder(const char *name, const tset *s, const char *strip, const char *cfg_text)
{
    static char ring[4][1024]; /* at()'s buffers rotate: the folder keeps its own */
    static int r;
    char *d = ring[r++ % 4];
    snprintf(d, 1024, "%s", at(name));
    mkdir(d, 0755);
    kst_tensor w[512];
    for (int i = 0; i < s->n; i++) {
        w[i] = s->t[i];
        if (strip && !strncmp(w[i].name, strip, strlen(strip))) w[i].name += strlen(strip);
    }
    char p[1200];
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    const char *meta[] = {"format", "pt"};
    assert_int_equal(kst_write(p, w, s->n, meta, 1, err, sizeof err), 0);
    snprintf(p, sizeof p, "%s/config.json", d);
    write_text(p, cfg_text);
    snprintf(p, sizeof p, "%s/vocab.txt", d);
    write_text(p, VOCAB);
    return d;
}

static const char BERT_CFG[] =
    "{\"architectures\": [\"%s\"], \"model_type\": \"bert\", \"vocab_size\": 10, \"hidden_size\": 8,"
    " \"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"intermediate_size\": 16,"
    " \"max_position_embeddings\": 16, \"type_vocab_size\": 2, \"hidden_act\": \"gelu\","
    " \"layer_norm_eps\": 1e-12, \"pad_token_id\": 0%s}";
static const char ALBERT_CFG[] =
    "{\"architectures\": [\"%s\"], \"model_type\": \"albert\", \"vocab_size\": 10, \"embedding_size\": 4,"
    " \"hidden_size\": 8, \"num_hidden_layers\": 2, \"num_hidden_groups\": 1, \"num_attention_heads\": 2,"
    " \"intermediate_size\": 16, \"max_position_embeddings\": 16, \"hidden_act\": \"gelu_new\","
    " \"hidden_dropout_prob\": 0.1, \"attention_probs_dropout_prob\": 0.1, \"pad_token_id\": 0%s}";

static char *cfg(const char *fmt, const char *arch, const char *more)
{
    static char b[2][2048];
    static int k;
    char *o = b[k++ % 2];
    snprintf(o, 2048, fmt, arch, more);
    return o;
}

/* every tensor of want (kiln names) is in m with the same bytes, and m has no other */
static void assert_same(const khf_model *m, const tset *want)
{
    int n = 0;
    for (int i = 0; i < want->n; i++) {
        if (kexport_tied_to(want->t[i].name)) continue;
        const kst_tensor *t = find(m->tensors, m->n, want->t[i].name);
        if (!t) fail_msg("'%s' not imported", want->t[i].name);
        assert_string_equal(t->dtype, "F32");
        assert_int_equal(t->ndim, want->t[i].ndim);
        assert_int_equal(t->nbytes, want->t[i].nbytes);
        assert_memory_equal(t->data, want->t[i].data, t->nbytes);
        n++;
    }
    assert_int_equal(m->n, n);
}

/* ---- import ------------------------------------------------------------------ */

static void test_bert_model_no_prefix(void **state)
{
    (void)state;
    kmodel_config mc = tiny(KMODEL_BERT);
    kexport_head base = {KEXPORT_HEAD_BASE, 0, NULL, NULL};
    tset s;
    make_set(&s, &mc, &base, 0);
    const char *d = write_folder("bertmodel", &s, "bert.", cfg(BERT_CFG, "BertModel", ""));
    khf_model m;
    assert_int_equal(khf_load(d, &m, err, sizeof err), 0);
    assert_string_equal(m.architecture, "BertModel");
    assert_int_equal(m.head.kind, KEXPORT_HEAD_BASE);
    assert_int_equal(m.heads, KHF_POOLER);
    assert_non_null(find(m.tensors, m.n, "bert.embeddings.word_embeddings.weight"));
    assert_non_null(find(m.tensors, m.n, "bert.pooler.dense.weight"));
    assert_same(&m, &s);
    assert_int_equal(m.config.type, KMODEL_BERT);
    assert_int_equal(m.config.hidden_size, 8);
    assert_int_equal(m.config.embedding_size, 8);
    assert_int_equal(m.config.num_hidden_groups, 2);
    assert_int_equal(m.config.hidden_act, KACT_GELU);
    assert_int_equal(m.vocab_len, strlen(VOCAB));
    assert_memory_equal(m.vocab, VOCAB, m.vocab_len);
    assert_int_equal(m.do_lower_case, 1);
    /* exported as a base model: the file without the prefix, as it came */
    assert_int_equal(kexport_hf2(at("out"), &m.config, &m.head, m.tensors, m.n, m.vocab, m.vocab_len, 1, 0, err,
                                 sizeof err), 0);
    kst_file *a = kst_open(at("bertmodel/model.safetensors"), err, sizeof err), *b = kst_open(at("out/model.safetensors"), err, sizeof err);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(kst_count(a), kst_count(b));
    for (int i = 0; i < kst_count(a); i++) {
        const kst_tensor *x = kst_get(a, i), *y = kst_find(b, x->name);
        if (!y) fail_msg("'%s' not in the export", x->name);
        assert_memory_equal(x->data, y->data, x->nbytes);
    }
    assert_non_null(kst_find(b, "embeddings.word_embeddings.weight"));
    assert_null(kst_find(b, "bert.embeddings.word_embeddings.weight"));
    kst_close(a);
    kst_close(b);
    json_t *c = json_load_file(at("out/config.json"), 0, NULL);
    assert_string_equal(json_string_value(json_array_get(json_object_get(c, "architectures"), 0)), "BertModel");
    json_decref(c);
    /* and imported again */
    khf_model m2;
    assert_int_equal(khf_load(at("out"), &m2, err, sizeof err), 0);
    assert_same(&m2, &s);
    khf_free(&m2);
    khf_free(&m);
    free_set(&s);
}

static void test_bert_pretraining(void **state)
{
    (void)state;
    kmodel_config mc = tiny(KMODEL_BERT);
    tset s;
    make_set(&s, &mc, NULL, 1); /* with the tied decoder copies */
    const char *d = write_folder("bertpt", &s, NULL, cfg(BERT_CFG, "BertForPreTraining", ""));
    write_text(at("bertpt/tokenizer_config.json"), "{\"do_lower_case\": false}");
    khf_model m;
    assert_int_equal(khf_load(d, &m, err, sizeof err), 0);
    assert_int_equal(m.head.kind, KEXPORT_HEAD_PRETRAINING);
    assert_int_equal(m.heads, KHF_MLM | KHF_SENTENCE | KHF_POOLER);
    assert_null(find(m.tensors, m.n, "cls.predictions.decoder.weight"));
    assert_null(find(m.tensors, m.n, "cls.predictions.decoder.bias"));
    assert_int_equal(m.n_skipped, 2);
    assert_int_equal(m.do_lower_case, 0);
    assert_same(&m, &s);
    /* the run config: objectives from the heads */
    ktrain_config rc;
    assert_int_equal(khf_run_config(&m, &rc, err, sizeof err), 0);
    assert_int_equal(rc.model.hidden_size, 8);
    char *ex = khf_extra_json(&m, "/x/\"y\"");
    json_t *e = json_loads(ex, 0, NULL);
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "imported_from")), "/x/\"y\"");
    assert_int_equal(json_array_size(json_object_get(e, "heads")), 2);
    assert_true(json_is_true(json_object_get(e, "cased")));
    json_decref(e);
    free(ex);
    khf_free(&m);
    /* a decoder copy that differs is refused */
    float *dw = (float *)find(s.t, s.n, "cls.predictions.decoder.weight")->data;
    dw[3] += 1;
    d = write_folder("bertpt2", &s, NULL, cfg(BERT_CFG, "BertForPreTraining", ""));
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_DATAERR);
    assert_non_null(strstr(err, "cls.predictions.decoder.weight' differs"));
    free_set(&s);
}

static void test_albert_model_and_f16(void **state)
{
    (void)state;
    kmodel_config mc = tiny(KMODEL_ALBERT);
    kexport_head base = {KEXPORT_HEAD_BASE, 0, NULL, NULL};
    tset s;
    make_set(&s, &mc, &base, 0);
    const char *d = write_folder("albertmodel", &s, "albert.", cfg(ALBERT_CFG, "AlbertModel", ""));
    khf_model m;
    assert_int_equal(khf_load(d, &m, err, sizeof err), 0);
    assert_string_equal(m.architecture, "AlbertModel");
    assert_non_null(find(m.tensors, m.n, "albert.encoder.albert_layer_groups.0.albert_layers.0.ffn.weight"));
    assert_non_null(find(m.tensors, m.n, "albert.pooler.weight"));
    assert_same(&m, &s);
    assert_int_equal(m.config.embedding_size, 4);
    assert_int_equal(m.config.num_hidden_groups, 1);
    assert_int_equal(m.config.hidden_act, KACT_GELU_NEW);
    khf_free(&m);

    /* F16: converted exactly (values chosen representable) */
    kst_tensor h[512];
    uint16_t *bufs[512];
    for (int i = 0; i < s.n; i++) {
        h[i] = s.t[i];
        size_t numel = s.t[i].nbytes / 4;
        bufs[i] = xmalloc(numel * 2);
        for (size_t e = 0; e < numel; e++) bufs[i][e] = (uint16_t)(0x3c00 + (e % 64)); /* 1 + k/1024 */
        h[i].dtype = "F16";
        h[i].data = bufs[i];
        h[i].nbytes = numel * 2;
        h[i].name = s.t[i].name + strlen("albert.");
    }
    assert_int_equal(kst_write(at("albertmodel/model.safetensors"), h, s.n, NULL, 0, err, sizeof err), 0);
    assert_int_equal(khf_load(d, &m, err, sizeof err), 0);
    assert_int_equal(m.n_converted, s.n);
    const float *w = find(m.tensors, m.n, "albert.embeddings.word_embeddings.weight")->data;
    assert_true(w[0] == 1.0f && w[5] == 1.0f + 5.0f / 1024);
    khf_free(&m);
    for (int i = 0; i < s.n; i++) free(bufs[i]);
    free_set(&s);
}

static void test_classifier_import(void **state)
{
    (void)state;
    kmodel_config mc = tiny(KMODEL_ALBERT);
    kexport_head ch = {KEXPORT_HEAD_CLASSIFICATION, 3, NULL, NULL};
    tset s;
    make_set(&s, &mc, &ch, 0);
    const char *d = write_folder("albertcls", &s, NULL,
                                 cfg(ALBERT_CFG, "AlbertForSequenceClassification",
                                     ", \"id2label\": {\"0\": \"neg\", \"1\": \"neu\", \"2\": \"pos\"},"
                                     " \"label2id\": {\"neg\": 0, \"neu\": 1, \"pos\": 2}"));
    khf_model m;
    assert_int_equal(khf_load(d, &m, err, sizeof err), 0);
    assert_int_equal(m.heads, KHF_CLASSIFY | KHF_POOLER);
    assert_int_equal(m.num_labels, 3);
    assert_string_equal(m.labels[1], "neu");
    assert_string_equal(m.problem_type, "single_label_classification");
    assert_same(&m, &s);
    /* export: the same tensors, the labels in config.json */
    assert_int_equal(kexport_hf2(at("out"), &m.config, &m.head, m.tensors, m.n, m.vocab, m.vocab_len, 1, 0, err,
                                 sizeof err), 0);
    json_t *c = json_load_file(at("out/config.json"), 0, NULL);
    assert_non_null(c);
    assert_string_equal(json_string_value(json_array_get(json_object_get(c, "architectures"), 0)),
                        "AlbertForSequenceClassification");
    assert_string_equal(json_string_value(json_object_get(json_object_get(c, "id2label"), "2")), "pos");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(c, "label2id"), "neu")), 1);
    assert_string_equal(json_string_value(json_object_get(c, "problem_type")), "single_label_classification");
    assert_int_equal(json_integer_value(json_object_get(c, "embedding_size")), 4);
    json_decref(c);
    /* the head a checkpoint's tensors imply */
    char *ex = khf_extra_json(&m, d);
    khf_export_head eh;
    khf_export_head_of(KMODEL_ALBERT, ex, m.tensors, m.n, &eh);
    assert_int_equal(eh.head.kind, KEXPORT_HEAD_CLASSIFICATION);
    assert_int_equal(eh.head.num_labels, 3);
    assert_string_equal(eh.head.labels[2], "pos");
    khf_export_head_free(&eh);
    free(ex);
    khf_export_head_of(KMODEL_ALBERT, NULL, m.tensors, m.n - 2, &eh); /* classifier.* left out */
    assert_int_equal(eh.head.kind, KEXPORT_HEAD_BASE);
    khf_export_head_free(&eh);
    khf_free(&m);
    free_set(&s);
}

static void test_refusals(void **state)
{
    (void)state;
    kmodel_config mc = tiny(KMODEL_BERT);
    mc.intermediate_size = 12; /* config.json says 16 */
    tset s;
    make_set(&s, &mc, NULL, 0);
    khf_model m;
    const char *d = write_folder("shape", &s, NULL, cfg(BERT_CFG, "BertForPreTraining", ""));
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_DATAERR);
    assert_non_null(strstr(err, "model.safetensors: tensor 'bert.encoder.layer.0.intermediate.dense.weight' has "
                                "shape [12, 8], config.json implies [16, 8]"));
    free_set(&s);

    mc = tiny(KMODEL_BERT);
    make_set(&s, &mc, NULL, 0);
    d = write_folder("arch", &s, NULL, cfg(BERT_CFG, "BertForQuestionAnswering", ""));
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_DATAERR);
    assert_non_null(strstr(err, "architecture \"BertForQuestionAnswering\" is not supported"));
    write_text(at("arch/config.json"), "{\"model_type\": \"roberta\", \"architectures\": [\"RobertaModel\"]}");
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_DATAERR);
    assert_non_null(strstr(err, "model_type \"roberta\" is not supported"));
    write_text(at("arch/config.json"), cfg(ALBERT_CFG, "BertModel", ""));
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_DATAERR);
    assert_non_null(strstr(err, "does not go with model_type"));
    write_text(at("arch/config.json"), cfg(BERT_CFG, "BertForPreTraining", ", \"hidden_act\": \"relu\""));
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_DATAERR); /* duplicate key: not JSON kiln reads */
    assert_non_null(strstr(err, "duplicate"));
    write_text(at("arch/config.json"), "{\"model_type\": \"bert\", \"hidden_act\": \"relu\"}");
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_DATAERR);
    assert_non_null(strstr(err, "hidden_act \"relu\""));

    /* an unknown tensor; a missing one */
    float x[8] = {0};
    s.t[s.n] = (kst_tensor){.name = xstrdup("bert.encoder.layer.0.attention.self.rotary.weight"), .dtype = "F32",
                            .ndim = 1, .shape = {8}, .data = memcpy(xmalloc(sizeof x), x, sizeof x), .nbytes = sizeof x};
    s.n++;
    d = write_folder("extra", &s, NULL, cfg(BERT_CFG, "BertForPreTraining", ""));
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_DATAERR);
    assert_non_null(strstr(err, "'bert.encoder.layer.0.attention.self.rotary.weight' is not a tensor of BertForPreTraining"));
    s.n -= 2; /* the extra one and the last of the layout (cls.seq_relationship.bias) */
    d = write_folder("missing", &s, NULL, cfg(BERT_CFG, "BertForPreTraining", ""));
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_DATAERR);
    assert_non_null(strstr(err, "'cls.seq_relationship.weight' is there without 'cls.seq_relationship.bias'"));
    s.n += 2;
    free_set(&s);

    /* missing files; a truncated file */
    mc = tiny(KMODEL_BERT);
    make_set(&s, &mc, NULL, 0);
    d = write_folder("files", &s, NULL, cfg(BERT_CFG, "BertForPreTraining", ""));
    assert_int_equal(khf_load(d, &m, err, sizeof err), 0);
    khf_free(&m);
    unlink(at("files/vocab.txt"));
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_NOINPUT);
    assert_non_null(strstr(err, "vocab.txt: missing"));
    write_text(at("files/spiece.model"), "x");
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_NOINPUT);
    assert_non_null(strstr(err, "spiece.model"));
    write_text(at("files/vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\n");
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_DATAERR);
    assert_non_null(strstr(err, "[MASK]"));
    write_text(at("files/vocab.txt"), VOCAB);
    assert_int_equal(truncate(at("files/model.safetensors"), 300), 0);
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_DATAERR);
    assert_non_null(strstr(err, "model.safetensors"));
    assert_int_equal(rename(at("files/model.safetensors"), at("files/pytorch_model.bin")), 0);
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_NOINPUT);
    assert_non_null(strstr(err, "pytorch_model.bin"));
    unlink(at("files/config.json"));
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_NOINPUT);
    assert_non_null(strstr(err, "config.json: missing"));
    assert_int_equal(khf_load(at("nope"), &m, err, sizeof err), EX_NOINPUT);
    khf_free(&m); /* harmless after a failure */
    free_set(&s);
}

/* ---- export heads -------------------------------------------------------------- */

static void test_classifier_layout(void **state)
{
    (void)state;
    for (int type = KMODEL_BERT; type <= KMODEL_ALBERT; type++) {
        kmodel_config mc = tiny(type);
        kexport_head ch = {KEXPORT_HEAD_CLASSIFICATION, 3, NULL, NULL};
        int n, np;
        kexport_entry *l = kexport_layout2(&mc, V, &ch, &n), *p = kexport_layout(&mc, V, &np);
        assert_non_null(l);
        const char *pool = type == KMODEL_ALBERT ? "albert.pooler.weight" : "bert.pooler.dense.weight";
        assert_string_equal(l[n - 2].name, "classifier.weight");
        assert_int_equal(l[n - 2].ndim, 2);
        assert_int_equal(l[n - 2].shape[0], 3);
        assert_int_equal(l[n - 2].shape[1], 8);
        assert_int_equal(l[n - 2].role, KEXPORT_REQUIRED);
        assert_string_equal(l[n - 1].name, "classifier.bias");
        assert_int_equal(l[n - 1].ndim, 1);
        assert_int_equal(l[n - 1].shape[0], 3);
        assert_string_equal(l[n - 4].name, pool);
        assert_int_equal(l[n - 4].role, KEXPORT_REQUIRED);
        assert_int_equal(l[n - 4].shape[0], 8);
        assert_int_equal(l[n - 4].shape[1], 8);
        for (int k = 0; k < n; k++) {
            assert_true(!strncmp(l[k].name, type == KMODEL_ALBERT ? "albert." : "bert.", type == KMODEL_ALBERT ? 7 : 5) ||
                        !strncmp(l[k].name, "classifier.", 11));
            if (k < n - 2) { /* the encoder and pooler as in the pretraining layout */
                assert_string_equal(l[k].name, p[k].name);
                assert_int_equal(l[k].shape[0], p[k].shape[0]);
            }
        }
        assert_string_equal(kexport_architecture(type, &ch),
                            type == KMODEL_ALBERT ? "AlbertForSequenceClassification" : "BertForSequenceClassification");
        free(l);
        free(p);
        /* export refuses a missing classifier tensor, and a bad head */
        tset s;
        make_set(&s, &mc, &ch, 0);
        assert_int_equal(kexport_hf2(at("c"), &mc, &ch, s.t, s.n - 1, VOCAB, strlen(VOCAB), 1, 0, err, sizeof err),
                         EX_DATAERR);
        assert_non_null(strstr(err, "'classifier.bias' is missing"));
        assert_non_null(strstr(err, "SequenceClassification"));
        assert_int_equal(access(at("c"), F_OK), -1);
        kexport_head pre = {KEXPORT_HEAD_PRETRAINING, 0, NULL, NULL};
        assert_int_equal(kexport_hf2(at("c"), &mc, &pre, s.t, s.n, VOCAB, strlen(VOCAB), 1, 0, err, sizeof err),
                         EX_DATAERR); /* classifier.* in a pretraining export */
        assert_non_null(strstr(err, "'classifier.weight' is not a tensor of this model"));
        kexport_head bad = {KEXPORT_HEAD_CLASSIFICATION, 3, NULL, "regression"};
        assert_int_equal(kexport_hf2(at("c"), &mc, &bad, s.t, s.n, VOCAB, strlen(VOCAB), 1, 0, err, sizeof err),
                         EX_SOFTWARE);
        const char *dup[] = {"a", "b", "a"};
        kexport_head bad2 = {KEXPORT_HEAD_CLASSIFICATION, 3, dup, NULL};
        assert_int_equal(kexport_hf2(at("c"), &mc, &bad2, s.t, s.n, VOCAB, strlen(VOCAB), 1, 0, err, sizeof err),
                         EX_SOFTWARE);
        assert_non_null(strstr(err, "'a' given twice"));
        /* default labels and regression */
        assert_int_equal(kexport_hf2(at("c"), &mc, &ch, s.t, s.n, VOCAB, strlen(VOCAB), 1, 0, err, sizeof err), 0);
        json_t *c = json_load_file(at("c/config.json"), 0, NULL);
        assert_string_equal(json_string_value(json_object_get(json_object_get(c, "id2label"), "0")), "LABEL_0");
        json_decref(c);
        free_set(&s);
        kexport_head reg = {KEXPORT_HEAD_CLASSIFICATION, 1, NULL, NULL};
        make_set(&s, &mc, &reg, 0);
        assert_int_equal(kexport_hf2(at("c"), &mc, &reg, s.t, s.n, VOCAB, strlen(VOCAB), 1, 1, err, sizeof err), 0);
        c = json_load_file(at("c/config.json"), 0, NULL);
        assert_string_equal(json_string_value(json_object_get(c, "problem_type")), "regression");
        assert_int_equal(json_object_size(json_object_get(c, "id2label")), 1);
        json_decref(c);
        khf_model m;
        assert_int_equal(khf_load(at("c"), &m, err, sizeof err), 0);
        assert_int_equal(m.num_labels, 1);
        assert_string_equal(m.problem_type, "regression");
        assert_same(&m, &s);
        khf_free(&m);
        free_set(&s);
        kckpt_remove_tree(at("c"));
    }
}

static void test_masked_lm_layout(void **state)
{
    (void)state;
    kmodel_config mc = tiny(KMODEL_BERT);
    kexport_head h = {KEXPORT_HEAD_MASKED_LM, 0, NULL, NULL};
    int n;
    kexport_entry *l = kexport_layout2(&mc, V, &h, &n);
    for (int k = 0; k < n; k++) {
        assert_null(strstr(l[k].name, "pooler"));
        assert_null(strstr(l[k].name, "seq_relationship"));
    }
    free(l);
    tset s;
    make_set(&s, &mc, &h, 0);
    const char *d = write_folder("mlm", &s, NULL, cfg(BERT_CFG, "BertForMaskedLM", ""));
    khf_model m;
    assert_int_equal(khf_load(d, &m, err, sizeof err), 0);
    assert_int_equal(m.heads, KHF_MLM);
    assert_same(&m, &s);
    khf_export_head eh;
    char *ex = khf_extra_json(&m, d);
    khf_export_head_of(KMODEL_BERT, ex, m.tensors, m.n, &eh);
    assert_int_equal(eh.head.kind, KEXPORT_HEAD_MASKED_LM);
    khf_export_head_of(KMODEL_BERT, NULL, m.tensors, m.n, &eh); /* a kiln run's checkpoint: pretraining */
    assert_int_equal(eh.head.kind, KEXPORT_HEAD_PRETRAINING);
    free(ex);
    khf_free(&m);
    free_set(&s);
    /* bert-base-uncased's case: BertForMaskedLM in config.json, the whole pretraining set in the file */
    make_set(&s, &mc, NULL, 1);
    d = write_folder("mlm2", &s, NULL, cfg(BERT_CFG, "BertForMaskedLM", ""));
    assert_int_equal(khf_load(d, &m, err, sizeof err), 0);
    assert_string_equal(m.architecture, "BertForMaskedLM");
    assert_int_equal(m.head.kind, KEXPORT_HEAD_PRETRAINING);
    assert_int_equal(m.heads, KHF_MLM | KHF_SENTENCE | KHF_POOLER);
    assert_same(&m, &s);
    ex = khf_extra_json(&m, d);
    khf_export_head_of(KMODEL_BERT, ex, m.tensors, m.n, &eh);
    assert_int_equal(eh.head.kind, KEXPORT_HEAD_PRETRAINING);
    free(ex);
    khf_free(&m);
    free_set(&s);
}


/* ---- GPT-2 ----------------------------------------------------------------------- */

static const char GPT2_VOCAB[] = "{\"a\": 0, \"b\": 1}"; /* bytes only: khf_load does not parse them */
static const char GPT2_MERGES[] = "#version: 0.2\na b\n";

static kmodel_config tiny_gpt2(void)
{
    kmodel_config m = tiny(KMODEL_GPT2);
    m.embedding_size = m.hidden_size;
    m.num_hidden_groups = m.num_hidden_layers;
    m.intermediate_size = 4 * m.hidden_size;
    m.hidden_act = KACT_GELU_NEW;
    m.layer_norm_eps = 1e-5;
    m.embd_dropout_prob = 0.1;
    return m;
}

static void read_all(const char *path, kbuf *b)
{
    kbuf_clear(b);
    if (kbuf_read_file(b, path)) fail_msg("cannot read %s", path);
}

static void assert_same_file(const char *a, const char *b)
{
    kbuf x = {0}, y = {0};
    read_all(a, &x);
    read_all(b, &y);
    if (x.len != y.len || memcmp(x.data, y.data, x.len)) fail_msg("%s and %s differ", a, b);
    kbuf_free(&x);
    kbuf_free(&y);
}

/* The folder `name`: the tensors t[n] as given (file names, file shapes),
 * config.json from cfg_text (NULL: src's), vocab.json and merges.txt. */
static const char *gpt2_variant(const char *name, const kst_tensor *t, int n, const char *src, const char *cfg_text)
{
    static char ring[4][1024];
    static int r;
    char *d = ring[r++ % 4];
    snprintf(d, 1024, "%s", at(name));
    mkdir(d, 0755);
    char p[1200];
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    assert_int_equal(kst_write(p, t, n, NULL, 0, err, sizeof err), 0);
    snprintf(p, sizeof p, "%s/config.json", d);
    if (cfg_text) {
        write_text(p, cfg_text);
    } else {
        char q[1200];
        kbuf b = {0};
        snprintf(q, sizeof q, "%s/config.json", src);
        read_all(q, &b);
        write_text(p, b.data);
        kbuf_free(&b);
    }
    snprintf(p, sizeof p, "%s/vocab.json", d);
    write_text(p, GPT2_VOCAB);
    snprintf(p, sizeof p, "%s/merges.txt", d);
    write_text(p, GPT2_MERGES);
    return d;
}

/* The tensors of the file f (pointers into f), room for 4 more. */
static kst_tensor *file_tensors(const kst_file *f, int *n)
{
    *n = kst_count(f);
    kst_tensor *t = xcalloc((size_t)*n + 4, sizeof *t);
    for (int i = 0; i < *n; i++) t[i] = *kst_get(f, i);
    return t;
}

static kst_tensor *named(kst_tensor *t, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, name)) return &t[i];
    fail_msg("no tensor '%s'", name);
    return NULL;
}

static void test_gpt2_round_trip(void **state)
{
    (void)state;
    kmodel_config mc = tiny_gpt2();
    tset s;
    make_set(&s, &mc, NULL, 1); /* with lm_head.weight: the exporter checks it and leaves it out */
    assert_int_equal(kexport_gpt2(at("hf"), &mc, s.t, s.n, 9, GPT2_VOCAB, strlen(GPT2_VOCAB), GPT2_MERGES,
                                  strlen(GPT2_MERGES), 0, err, sizeof err), 0);
    khf_model m;
    if (khf_load(at("hf"), &m, err, sizeof err)) fail_msg("%s", err);
    assert_string_equal(m.architecture, "GPT2LMHeadModel");
    assert_int_equal(m.head.kind, KEXPORT_HEAD_PRETRAINING);
    assert_int_equal(m.heads, KHF_LM);
    assert_same(&m, &s); /* every tensor bit-exact, Conv1D back in [out, in] */
    assert_null(find(m.tensors, m.n, "lm_head.weight"));
    const kst_tensor *ca = find(m.tensors, m.n, "transformer.h.1.attn.c_attn.weight");
    assert_true(ca->shape[0] == 24 && ca->shape[1] == 8);
    assert_int_equal(m.n_skipped, 0);
    assert_int_equal(m.n_converted, 0);
    const kmodel_config *c = &m.config;
    assert_int_equal(c->type, KMODEL_GPT2);
    assert_int_equal(c->vocab_size, V);
    assert_int_equal(c->hidden_size, 8);
    assert_int_equal(c->embedding_size, 8);
    assert_int_equal(c->num_hidden_layers, 2);
    assert_int_equal(c->num_hidden_groups, 2);
    assert_int_equal(c->num_attention_heads, 2);
    assert_int_equal(c->intermediate_size, 32);
    assert_int_equal(c->max_position_embeddings, 16);
    assert_int_equal(c->hidden_act, KACT_GELU_NEW);
    assert_true(c->layer_norm_eps == 1e-5 && c->embd_dropout_prob == 0.1 && c->hidden_dropout_prob == 0.1 &&
                c->attention_probs_dropout_prob == 0.1 && c->initializer_range == 0.02);
    assert_int_equal(m.vocab_kind, KCKPT_VOCAB_BPE);
    assert_int_equal(m.vocab_len, strlen(GPT2_VOCAB));
    assert_memory_equal(m.vocab, GPT2_VOCAB, m.vocab_len);
    assert_int_equal(m.merges_len, strlen(GPT2_MERGES));
    assert_memory_equal(m.merges, GPT2_MERGES, m.merges_len);
    assert_int_equal(m.eot_id, -1);
    /* the run config and state.json's extra */
    ktrain_config rc;
    if (khf_run_config(&m, &rc, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(rc.model.type, KMODEL_GPT2);
    assert_int_equal(rc.model.intermediate_size, 32);
    assert_int_equal(rc.data.objectives, KOBJ_CLM);
    assert_int_equal(rc.data.seq_len, 16);
    m.eot_id = 9;
    char *ex = khf_extra_json(&m, "/x");
    json_t *e = json_loads(ex, 0, NULL);
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "model_type")), "gpt2");
    assert_string_equal(json_string_value(json_object_get(e, "architecture")), "GPT2LMHeadModel");
    assert_string_equal(json_string_value(json_object_get(e, "tokenizer")), "bpe");
    assert_int_equal(json_integer_value(json_object_get(e, "eot_id")), 9);
    assert_string_equal(json_string_value(json_array_get(json_object_get(e, "heads"), 0)), "lm");
    json_decref(e);
    free(ex);
    /* exported again: the same files */
    assert_int_equal(kexport_gpt2(at("hf2"), &m.config, m.tensors, m.n, m.eot_id, m.vocab, m.vocab_len, m.merges,
                                  m.merges_len, 0, err, sizeof err), 0);
    static const char *const files[] = {"model.safetensors", "config.json", "vocab.json", "merges.txt",
                                        "tokenizer_config.json", "special_tokens_map.json"};
    for (int i = 0; i < 6; i++) {
        char a[1200];
        snprintf(a, sizeof a, "%s", at("hf"));
        snprintf(a + strlen(a), sizeof a - strlen(a), "/%s", files[i]);
        char b[1200];
        snprintf(b, sizeof b, "%s/%s", at("hf2"), files[i]);
        assert_same_file(a, b);
    }
    khf_free(&m);
    free_set(&s);
}

/* DistilBertForMaskedLM exported by kiln reads back bit-exact and exports
 * to the same files; DistilBertModel saved alone (no prefix, position_ids
 * buffer) and a config.json without architectures read too; what kiln
 * does not have is refused by name. */
static void test_distilbert(void **state)
{
    (void)state;
    kmodel_config mc = tiny(KMODEL_DISTILBERT);
    mc.qa_dropout = 0.1;
    mc.seq_classif_dropout = 0.2;
    tset s;
    make_set(&s, &mc, NULL, 1); /* with vocab_projector.weight: checked and left out */
    assert_int_equal(kexport_hf(at("db"), &mc, s.t, s.n, VOCAB, strlen(VOCAB), 1, 0, err, sizeof err), 0);
    khf_model m;
    if (khf_load(at("db"), &m, err, sizeof err)) fail_msg("%s", err);
    assert_string_equal(m.architecture, "DistilBertForMaskedLM");
    assert_int_equal(m.head.kind, KEXPORT_HEAD_PRETRAINING);
    assert_int_equal(m.heads, KHF_MLM);
    assert_same(&m, &s);
    assert_null(find(m.tensors, m.n, "vocab_projector.weight"));
    const kmodel_config *c = &m.config;
    assert_int_equal(c->type, KMODEL_DISTILBERT);
    assert_true(c->vocab_size == V && c->hidden_size == 8 && c->embedding_size == 8 && c->num_hidden_layers == 2 &&
                c->num_hidden_groups == 2 && c->num_attention_heads == 2 && c->intermediate_size == 16 &&
                c->max_position_embeddings == 16);
    assert_int_equal(c->hidden_act, KACT_GELU);
    assert_true(c->layer_norm_eps == 1e-12 && c->hidden_dropout_prob == 0.1 && c->attention_probs_dropout_prob == 0.1);
    assert_true(c->qa_dropout == 0.1 && c->seq_classif_dropout == 0.2);
    ktrain_config rc;
    if (khf_run_config(&m, &rc, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(rc.model.type, KMODEL_DISTILBERT);
    assert_int_equal(rc.data.objectives, KOBJ_MLM);
    char *ex = khf_extra_json(&m, "/x");
    json_t *e = json_loads(ex, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(e, "model_type")), "distilbert");
    json_decref(e);
    /* kiln export's head choice from the tensors and the extra: DistilBertForMaskedLM again */
    khf_export_head eh;
    khf_export_head_of(KMODEL_DISTILBERT, ex, m.tensors, m.n, &eh);
    assert_int_equal(eh.head.kind, KEXPORT_HEAD_PRETRAINING);
    free(ex);
    assert_int_equal(kexport_hf2(at("db2"), &m.config, &eh.head, m.tensors, m.n, m.vocab, m.vocab_len,
                                 m.do_lower_case, 0, err, sizeof err), 0);
    khf_export_head_free(&eh);
    static const char *const files[] = {"model.safetensors", "config.json", "vocab.txt", "tokenizer_config.json",
                                        "special_tokens_map.json"};
    for (int i = 0; i < 5; i++) {
        char a[1200], b[1200];
        snprintf(a, sizeof a, "%s/%s", at("db"), files[i]);
        snprintf(b, sizeof b, "%s/%s", at("db2"), files[i]);
        assert_same_file(a, b);
    }
    khf_free(&m);
    free_set(&s);

    /* DistilBertModel as save_pretrained writes it: no prefix; defaults for absent keys */
    kexport_head base = {KEXPORT_HEAD_BASE, 0, NULL, NULL};
    make_set(&s, &mc, &base, 0);
    static const char DB_CFG[] =
        "{\"architectures\": [\"%s\"], \"model_type\": \"distilbert\", \"vocab_size\": 10, \"dim\": 8,"
        " \"n_layers\": 2, \"n_heads\": 2, \"hidden_dim\": 16, \"max_position_embeddings\": 16%s}";
    const char *d = write_folder("dbase", &s, "distilbert.", cfg(DB_CFG, "DistilBertModel", ""));
    if (khf_load(d, &m, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(m.head.kind, KEXPORT_HEAD_BASE);
    assert_int_equal(m.heads, 0);
    assert_same(&m, &s);
    assert_non_null(find(m.tensors, m.n, "distilbert.transformer.layer.1.ffn.lin1.weight"));
    assert_int_equal(m.config.hidden_act, KACT_GELU); /* DistilBertConfig's default activation */
    khf_free(&m);
    free_set(&s);
    /* no architectures: the class from the tensors */
    make_set(&s, &mc, NULL, 0);
    char nocls[2048];
    snprintf(nocls, sizeof nocls, "%s", cfg(DB_CFG, "x", ""));
    char *a = strstr(nocls, "\"architectures\": [\"x\"], ");
    memmove(a, a + strlen("\"architectures\": [\"x\"], "), strlen(a + strlen("\"architectures\": [\"x\"], ")) + 1);
    d = write_folder("dnoarch", &s, NULL, nocls);
    if (khf_load(d, &m, err, sizeof err)) fail_msg("%s", err);
    assert_string_equal(m.architecture, "DistilBertForMaskedLM");
    assert_int_equal(m.heads, KHF_MLM);
    khf_free(&m);
    /* refused by name: sinusoidal positions, an activation kiln lacks, MLM tensors in the classifier class */
    d = write_folder("dsin", &s, NULL, cfg(DB_CFG, "DistilBertForMaskedLM", ", \"sinusoidal_pos_embds\": true"));
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_DATAERR);
    assert_non_null(strstr(err, "sinusoidal_pos_embds"));
    d = write_folder("drelu", &s, NULL, cfg(DB_CFG, "DistilBertForMaskedLM", ", \"activation\": \"relu\""));
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_DATAERR);
    assert_non_null(strstr(err, "relu"));
    d = write_folder("dcls", &s, NULL, cfg(DB_CFG, "DistilBertForSequenceClassification", ""));
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_DATAERR);
    assert_non_null(strstr(err, "vocab_"));
    free_set(&s);
}

/* DistilBertForSequenceClassification: the layout (the encoder as
 * DistilBertForMaskedLM's, pre_classifier and classifier, required); a
 * folder as transformers saves it (labels, problem_type) imported with its
 * labels; the head kiln export chooses for it; export -> import -> export
 * byte-identical; the class read off the tensors without "architectures";
 * regression; a missing pre_classifier refused by name. */
static void test_distilbert_cls(void **state)
{
    (void)state;
    kmodel_config mc = tiny(KMODEL_DISTILBERT);
    mc.qa_dropout = 0.1;
    mc.seq_classif_dropout = 0.25;
    kexport_head ch = {KEXPORT_HEAD_CLASSIFICATION, 3, NULL, NULL};
    int n, np;
    kexport_entry *l = kexport_layout2(&mc, V, &ch, &n), *p = kexport_layout(&mc, V, &np);
    assert_non_null(l);
    assert_non_null(p);
    static const char *const tail[] = {"pre_classifier.weight", "pre_classifier.bias", "classifier.weight",
                                       "classifier.bias"};
    static const int64_t shapes[4][2] = {{8, 8}, {8, 0}, {3, 8}, {3, 0}};
    for (int i = 0; i < 4; i++) {
        const kexport_entry *e = &l[n - 4 + i];
        assert_string_equal(e->name, tail[i]);
        assert_int_equal(e->ndim, shapes[i][1] ? 2 : 1);
        assert_int_equal(e->shape[0], shapes[i][0]);
        assert_int_equal(e->shape[1], shapes[i][1]);
        assert_int_equal(e->role, KEXPORT_REQUIRED);
    }
    for (int k = 0; k < n - 4; k++) { /* the encoder as in DistilBertForMaskedLM's layout */
        assert_string_equal(l[k].name, p[k].name);
        assert_int_equal(l[k].shape[0], p[k].shape[0]);
        assert_int_equal(l[k].shape[1], p[k].shape[1]);
        assert_int_equal(strncmp(l[k].name, "distilbert.", 11), 0);
    }
    free(l);
    free(p);
    assert_string_equal(kexport_architecture(KMODEL_DISTILBERT, &ch), "DistilBertForSequenceClassification");

    /* a folder with labels, imported */
    tset s;
    make_set(&s, &mc, &ch, 0);
    static const char DB_CFG[] =
        "{\"architectures\": [\"%s\"], \"model_type\": \"distilbert\", \"vocab_size\": 10, \"dim\": 8,"
        " \"n_layers\": 2, \"n_heads\": 2, \"hidden_dim\": 16, \"max_position_embeddings\": 16,"
        " \"seq_classif_dropout\": 0.25%s}";
    const char *labels = ", \"id2label\": {\"0\": \"neg\", \"1\": \"neu\", \"2\": \"pos\"},"
                         " \"label2id\": {\"neg\": 0, \"neu\": 1, \"pos\": 2},"
                         " \"problem_type\": \"single_label_classification\"";
    const char *d = write_folder("dbcls", &s, NULL, cfg(DB_CFG, "DistilBertForSequenceClassification", labels));
    khf_model m;
    if (khf_load(d, &m, err, sizeof err)) fail_msg("%s", err);
    assert_string_equal(m.architecture, "DistilBertForSequenceClassification");
    assert_int_equal(m.head.kind, KEXPORT_HEAD_CLASSIFICATION);
    assert_int_equal(m.heads, KHF_CLASSIFY);
    assert_int_equal(m.num_labels, 3);
    assert_string_equal(m.labels[2], "pos");
    assert_string_equal(m.problem_type, "single_label_classification");
    assert_true(m.config.seq_classif_dropout == 0.25);
    assert_same(&m, &s);
    ktrain_config rc;
    if (khf_run_config(&m, &rc, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(rc.model.type, KMODEL_DISTILBERT);
    assert_true(rc.model.seq_classif_dropout == 0.25);
    /* kiln export's head for the imported checkpoint: the class, its labels */
    char *ex = khf_extra_json(&m, d);
    json_t *e = json_loads(ex, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(e, "architecture")), "DistilBertForSequenceClassification");
    assert_string_equal(json_string_value(json_array_get(json_object_get(e, "heads"), 0)), "classify");
    assert_int_equal(json_integer_value(json_object_get(e, "num_labels")), 3);
    assert_true(json_is_false(json_object_get(e, "pooler")));
    json_decref(e);
    khf_export_head eh;
    khf_export_head_of(KMODEL_DISTILBERT, ex, m.tensors, m.n, &eh);
    free(ex);
    assert_int_equal(eh.head.kind, KEXPORT_HEAD_CLASSIFICATION);
    assert_int_equal(eh.head.num_labels, 3);
    assert_string_equal(eh.head.labels[1], "neu");
    assert_string_equal(eh.head.problem_type, "single_label_classification");
    /* export -> import -> export: the same files */
    assert_int_equal(kexport_hf2(at("dbc1"), &m.config, &eh.head, m.tensors, m.n, m.vocab, m.vocab_len,
                                 m.do_lower_case, 0, err, sizeof err), 0);
    khf_export_head_free(&eh);
    khf_model m2;
    if (khf_load(at("dbc1"), &m2, err, sizeof err)) fail_msg("%s", err);
    assert_string_equal(m2.architecture, "DistilBertForSequenceClassification");
    assert_string_equal(m2.labels[0], "neg");
    assert_same(&m2, &s);
    assert_int_equal(kexport_hf2(at("dbc2"), &m2.config, &m2.head, m2.tensors, m2.n, m2.vocab, m2.vocab_len,
                                 m2.do_lower_case, 0, err, sizeof err), 0);
    static const char *const files[] = {"model.safetensors", "config.json", "vocab.txt", "tokenizer_config.json",
                                        "special_tokens_map.json"};
    for (int i = 0; i < 5; i++) {
        char a[1200], b[1200];
        snprintf(a, sizeof a, "%s/%s", at("dbc1"), files[i]);
        snprintf(b, sizeof b, "%s/%s", at("dbc2"), files[i]);
        assert_same_file(a, b);
    }
    json_t *c = json_load_file(at("dbc1/config.json"), 0, NULL);
    assert_non_null(c);
    assert_string_equal(json_string_value(json_object_get(json_object_get(c, "id2label"), "2")), "pos");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(c, "label2id"), "neu")), 1);
    assert_true(json_number_value(json_object_get(c, "seq_classif_dropout")) == 0.25);
    json_decref(c);
    khf_free(&m2);
    khf_free(&m);

    /* no architectures: classifier.* says the class; the label count from the tensors */
    char nocls[2048];
    snprintf(nocls, sizeof nocls, "%s", cfg(DB_CFG, "x", ""));
    char *a = strstr(nocls, "\"architectures\": [\"x\"], ");
    memmove(a, a + strlen("\"architectures\": [\"x\"], "), strlen(a + strlen("\"architectures\": [\"x\"], ")) + 1);
    d = write_folder("dbnoarch", &s, NULL, nocls);
    if (khf_load(d, &m, err, sizeof err)) fail_msg("%s", err);
    assert_string_equal(m.architecture, "DistilBertForSequenceClassification");
    assert_int_equal(m.num_labels, 3);
    assert_null(m.labels);
    khf_free(&m);
    /* pre_classifier missing: refused by name */
    tset s2 = s;
    s2.n = 0;
    for (int i = 0; i < s.n; i++)
        if (strcmp(s.t[i].name, "pre_classifier.bias")) s2.t[s2.n++] = s.t[i];
    d = write_folder("dbnopre", &s2, NULL, cfg(DB_CFG, "DistilBertForSequenceClassification", ""));
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_DATAERR);
    assert_non_null(strstr(err, "pre_classifier.bias"));
    free_set(&s);

    /* regression */
    kexport_head reg = {KEXPORT_HEAD_CLASSIFICATION, 1, NULL, NULL};
    make_set(&s, &mc, &reg, 0);
    d = write_folder("dbreg", &s, NULL,
                     cfg(DB_CFG, "DistilBertForSequenceClassification", ", \"num_labels\": 1"));
    if (khf_load(d, &m, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(m.num_labels, 1);
    assert_string_equal(m.problem_type, "regression");
    assert_same(&m, &s);
    khf_free(&m);
    free_set(&s);
}

static void test_gpt2_variants(void **state)
{
    (void)state;
    kmodel_config mc = tiny_gpt2();
    tset s;
    make_set(&s, &mc, NULL, 0);
    assert_int_equal(kexport_gpt2(at("hf"), &mc, s.t, s.n, -1, GPT2_VOCAB, strlen(GPT2_VOCAB), GPT2_MERGES,
                                  strlen(GPT2_MERGES), 0, err, sizeof err), 0);
    kst_file *f = kst_open(at("hf/model.safetensors"), err, sizeof err);
    assert_non_null(f);
    const char *src = at("hf");
    char srcdir[1024];
    snprintf(srcdir, sizeof srcdir, "%s", src);
    int n;
    kst_tensor *t = file_tensors(f, &n);
    khf_model m;

    /* the hub's naming: no "transformer." */
    kst_tensor *u = xcalloc((size_t)n, sizeof *u);
    char **names = xcalloc((size_t)n, sizeof *names);
    for (int i = 0; i < n; i++) {
        u[i] = t[i];
        assert_true(!strncmp(t[i].name, "transformer.", 12));
        names[i] = xstrdup(t[i].name + 12);
        u[i].name = names[i];
    }
    const char *d = gpt2_variant("bare", u, n, srcdir, NULL);
    if (khf_load(d, &m, err, sizeof err)) fail_msg("%s", err);
    assert_same(&m, &s);
    khf_free(&m);

    /* the causal-mask buffers of older transformers: skipped (bare names too) */
    static float mask[256];
    static float masked_bias = -1e4f;
    u = xrealloc(u, (size_t)(n + 4) * sizeof *u);
    u[n] = (kst_tensor){.name = "h.0.attn.bias", .dtype = "F32", .ndim = 4, .shape = {1, 1, 16, 16},
                        .data = mask, .nbytes = sizeof mask};
    u[n + 1] = (kst_tensor){.name = "h.0.attn.masked_bias", .dtype = "F32", .ndim = 0, .data = &masked_bias,
                            .nbytes = 4};
    u[n + 2] = u[n];
    u[n + 2].name = "h.1.attn.bias";
    u[n + 3] = u[n + 1];
    u[n + 3].name = "h.1.attn.masked_bias";
    d = gpt2_variant("buffers", u, n + 4, srcdir, NULL);
    if (khf_load(d, &m, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(m.n_skipped, 4);
    assert_same(&m, &s);
    khf_free(&m);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    free(u);

    /* lm_head.weight: equal to wte (dropped), or not (refused) */
    t[n] = *named(t, n, "transformer.wte.weight");
    t[n].name = "lm_head.weight";
    d = gpt2_variant("lmhead", t, n + 1, srcdir, NULL);
    if (khf_load(d, &m, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(m.n_skipped, 1);
    assert_same(&m, &s);
    khf_free(&m);
    float *other = xmalloc(t[n].nbytes);
    memcpy(other, t[n].data, t[n].nbytes);
    other[5] += 1;
    t[n].data = other;
    d = gpt2_variant("lmhead2", t, n + 1, srcdir, NULL);
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_DATAERR);
    assert_non_null(strstr(err, "'lm_head.weight' differs from 'transformer.wte.weight'"));
    free(other);

    /* an F16 Conv1D weight: converted, then transposed */
    kst_tensor *ca = named(t, n, "transformer.h.0.attn.c_attn.weight"), keep = *ca;
    assert_true(ca->shape[0] == 8 && ca->shape[1] == 24); /* [in, out] in the file */
    uint16_t h16[8 * 24];
    for (int e = 0; e < 8 * 24; e++) h16[e] = (uint16_t)(0x3c00 + e % 64); /* 1 + k/1024 */
    ca->dtype = "F16";
    ca->data = h16;
    ca->nbytes = sizeof h16;
    d = gpt2_variant("f16", t, n, srcdir, NULL);
    if (khf_load(d, &m, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(m.n_converted, 1);
    const kst_tensor *w = find(m.tensors, m.n, "transformer.h.0.attn.c_attn.weight");
    assert_true(w->shape[0] == 24 && w->shape[1] == 8);
    const float *wd = w->data;
    for (int o = 0; o < 24; o++)
        for (int i = 0; i < 8; i++) assert_true(wd[o * 8 + i] == 1.0f + (float)((i * 24 + o) % 64) / 1024);
    khf_free(&m);
    *ca = keep;

    /* a wrong shape: the Conv1D weight as [out, in] */
    kst_tensor *fc = named(t, n, "transformer.h.1.mlp.c_fc.weight");
    keep = *fc;
    fc->shape[0] = 32;
    fc->shape[1] = 8;
    d = gpt2_variant("shape", t, n, srcdir, NULL);
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_DATAERR);
    assert_non_null(strstr(err, "tensor 'transformer.h.1.mlp.c_fc.weight' has shape [32, 8], config.json implies "
                                "[8, 32] (Conv1D: [in, out])"));
    *fc = keep;

    /* an unknown tensor */
    static float rot[8];
    t[n] = (kst_tensor){.name = "transformer.h.0.attn.rotary.weight", .dtype = "F32", .ndim = 1, .shape = {8},
                        .data = rot, .nbytes = sizeof rot};
    d = gpt2_variant("unknown", t, n + 1, srcdir, NULL);
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_DATAERR);
    assert_non_null(strstr(err, "'transformer.h.0.attn.rotary.weight' is not a tensor of GPT2LMHeadModel"));

    /* the tokenizer files */
    d = gpt2_variant("files", t, n, srcdir, NULL);
    assert_int_equal(khf_load(d, &m, err, sizeof err), 0);
    khf_free(&m);
    unlink(at("files/merges.txt"));
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_NOINPUT);
    assert_non_null(strstr(err, "merges.txt: missing"));
    unlink(at("files/vocab.json"));
    write_text(at("files/tokenizer.json"), "{}");
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_NOINPUT);
    assert_non_null(strstr(err, "vocab.json: missing: the folder has tokenizer.json"));
    assert_non_null(strstr(err, "vocab.json and merges.txt"));
    write_text(at("files/vocab.txt"), VOCAB); /* a WordPiece vocabulary is not GPT-2's */
    assert_int_equal(khf_load(d, &m, err, sizeof err), EX_NOINPUT);

    /* config.json: GPT2Config's defaults, the class, the variants kiln refuses */
    static const char *const cfgs[][2] = {
        {"{\"model_type\": \"gpt2\", \"vocab_size\": 10, \"n_embd\": 8, \"n_layer\": 2, \"n_head\": 2, "
         "\"n_positions\": 16, \"n_ctx\": 1024}", NULL},
        {"{\"model_type\": \"gpt2\", \"architectures\": [\"GPT2Model\"], \"vocab_size\": 10, \"n_embd\": 8, "
         "\"n_layer\": 2, \"n_head\": 2, \"n_positions\": 16, \"activation_function\": \"gelu_pytorch_tanh\"}", NULL},
        {"{\"model_type\": \"gpt2\"}",
         "tensor 'transformer.wte.weight' has shape [10, 8], config.json implies [50257, 768]"},
        {"{\"model_type\": \"gpt2\", \"architectures\": [\"BertModel\"]}", "does not go with model_type"},
        {"{\"model_type\": \"gpt2\", \"architectures\": [\"GPT2ForSequenceClassification\"]}",
         "architecture \"GPT2ForSequenceClassification\" is not supported"},
        {"{\"model_type\": \"bert\", \"architectures\": [\"GPT2LMHeadModel\"]}", "does not go with model_type"},
        {"{\"model_type\": \"gpt2\", \"scale_attn_weights\": false}", "scale_attn_weights false is not supported"},
        {"{\"model_type\": \"gpt2\", \"scale_attn_by_inverse_layer_idx\": true}",
         "scale_attn_by_inverse_layer_idx true is not supported"},
        {"{\"model_type\": \"gpt2\", \"add_cross_attention\": true}", "add_cross_attention true is not supported"},
        {"{\"model_type\": \"gpt2\", \"activation_function\": \"relu\"}", "activation_function \"relu\""},
        {"{\"model_type\": \"gpt2\", \"scale_attn_weights\": 0}", "\"scale_attn_weights\" must be true or false"},
        {"{\"model_type\": \"gpt2\", \"vocab_size\": 10, \"n_embd\": 8, \"n_layer\": 2, \"n_head\": 3, "
         "\"n_positions\": 16}", "n_head"},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        d = gpt2_variant("cfg", t, n, srcdir, cfgs[i][0]);
        int rc = khf_load(d, &m, err, sizeof err);
        if (!cfgs[i][1]) {
            if (rc) fail_msg("%s: %s", cfgs[i][0], err);
            assert_string_equal(m.architecture, "GPT2LMHeadModel");
            assert_int_equal(m.config.max_position_embeddings, 16);
            assert_int_equal(m.config.intermediate_size, 32);
            assert_int_equal(m.config.hidden_act, KACT_GELU_NEW);
            assert_true(m.config.layer_norm_eps == 1e-5 && m.config.embd_dropout_prob == 0.1);
            assert_same(&m, &s);
            khf_free(&m);
        } else {
            assert_int_equal(rc, EX_DATAERR);
            if (!strstr(err, cfgs[i][1])) fail_msg("%s: %s", cfgs[i][0], err);
        }
    }
    free(t);
    kst_close(f);
    free_set(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bert_model_no_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bert_pretraining, setup, teardown),
        cmocka_unit_test_setup_teardown(test_albert_model_and_f16, setup, teardown),
        cmocka_unit_test_setup_teardown(test_classifier_import, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_classifier_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_masked_lm_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gpt2_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gpt2_variants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_distilbert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_distilbert_cls, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
