/* hfimport.c: a Hugging Face BERT / ALBERT / ELECTRA / GPT-2 folder into
 * kiln's terms (hfimport.h). Order of work, each step refusing with a
 * message before the next:
 *   1. the files: config.json, model.safetensors (which exist);
 *   2. config.json: model_type, the class, the model's dimensions (with
 *      transformers' defaults for absent keys; GPT-2: GPT2Config's names
 *      and defaults, the attention variants kiln lacks refused);
 *   3. the vocabulary the model type reads: vocab.txt (which exists, and
 *      kexport_vocab_check: what the exporter requires), or GPT-2's
 *      vocab.json + merges.txt (which exist; their bytes kept, checked by
 *      the caller with text/bpe.h, which trainer/ does not include);
 *   4. the tensors: names mapped (prefix added to a base model's names),
 *      buffers skipped, each one matched against kexport_layout2 of the
 *      class (unknown: refused; shape: refused with both shapes; a
 *      transposed entry, GPT-2's Conv1D, against its [in, out] shape),
 *      F16/BF16 converted, Conv1D weights transposed to [out, in], tied
 *      copies compared and dropped, required ones present;
 *   5. the config as the run-config reader (ktrain_config_parse) sees it,
 *      so the config is one kiln accepts.
 * The layout (trainer/export.c) is the one table of names: nothing here
 * lists a tensor of the encoder. */
#define _POSIX_C_SOURCE 200809L
#include "trainer/hfimport.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/util.h"

/* ---- small helpers --------------------------------------------------------- */

static char *join(const char *a, const char *b) { return kpath_join(a, b); }

static int exists(const char *dir, const char *name)
{
    char *p = join(dir, name);
    int ok = access(p, F_OK) == 0;
    free(p);
    return ok;
}

static int starts(const char *s, const char *prefix) { return !strncmp(s, prefix, strlen(prefix)); }

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (!man) bits = sign;
        else { /* subnormal: normalize */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (exp + 127 - 15) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static void shape_str(char *out, size_t n, int ndim, const int64_t *shape)
{
    size_t o = (size_t)snprintf(out, n, "[");
    for (int i = 0; i < ndim && o < n; i++)
        o += (size_t)snprintf(out + o, n - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < n) snprintf(out + o, n - o, "]");
}

/* ---- config.json ------------------------------------------------------------ */

typedef struct cfg_reader {
    json_t *j;
    const char *path;
    char *err;
    size_t errlen;
    int bad;
} cfg_reader;

static int get_int(cfg_reader *r, const char *key, int def)
{
    json_t *v = json_object_get(r->j, key);
    if (!v || json_is_null(v)) return def;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1 << 30) {
        if (!r->bad++) kseterr(r->err, r->errlen, "%s: \"%s\" must be a non-negative integer", r->path, key);
        return def;
    }
    return (int)json_integer_value(v);
}

static double get_num(cfg_reader *r, const char *key, double def)
{
    json_t *v = json_object_get(r->j, key);
    if (!v || json_is_null(v)) return def;
    if (!json_is_number(v)) {
        if (!r->bad++) kseterr(r->err, r->errlen, "%s: \"%s\" must be a number", r->path, key);
        return def;
    }
    return json_number_value(v);
}

static int get_bool(cfg_reader *r, const char *key, int def)
{
    json_t *v = json_object_get(r->j, key);
    if (!v || json_is_null(v)) return def;
    if (!json_is_boolean(v)) {
        if (!r->bad++) kseterr(r->err, r->errlen, "%s: \"%s\" must be true or false", r->path, key);
        return def;
    }
    return json_is_true(v);
}

static const char *get_str(cfg_reader *r, const char *key, const char *def)
{
    json_t *v = json_object_get(r->j, key);
    if (!v || json_is_null(v)) return def;
    if (!json_is_string(v)) {
        if (!r->bad++) kseterr(r->err, r->errlen, "%s: \"%s\" must be a string", r->path, key);
        return def;
    }
    return json_string_value(v);
}

/* GPT-2's run config: the model under GPT2Config's names (n_inner null
 * when it is the derived 4 n_embd), objectives ["clm"]. */
static int run_config_gpt2(const kmodel_config *m, ktrain_config *out, char *err, size_t errlen)
{
    kbuf b = {0};
    char d1[32], d2[32], d3[32], d4[32], d5[32], inner[16];
    ktrain_fmt_double(d1, m->layer_norm_eps);
    ktrain_fmt_double(d2, m->hidden_dropout_prob);
    ktrain_fmt_double(d3, m->attention_probs_dropout_prob);
    ktrain_fmt_double(d4, m->embd_dropout_prob);
    ktrain_fmt_double(d5, m->initializer_range);
    if ((int64_t)m->intermediate_size == 4 * (int64_t)m->hidden_size) snprintf(inner, sizeof inner, "null");
    else snprintf(inner, sizeof inner, "%d", m->intermediate_size);
    kbuf_printf(&b,
                "{\"model\": {\"type\": \"gpt2\", \"vocab_size\": %d, \"n_embd\": %d, \"n_layer\": %d, "
                "\"n_head\": %d, \"n_positions\": %d, \"n_inner\": %s, \"activation_function\": \"%s\", "
                "\"layer_norm_epsilon\": %s, \"resid_pdrop\": %s, \"attn_pdrop\": %s, \"embd_pdrop\": %s, "
                "\"initializer_range\": %s},\n",
                m->vocab_size, m->hidden_size, m->num_hidden_layers, m->num_attention_heads,
                m->max_position_embeddings, inner, m->hidden_act == KACT_GELU ? "gelu" : "gelu_new", d1, d2, d3, d4,
                d5);
    int L = m->max_position_embeddings < 128 ? m->max_position_embeddings : 128;
    kbuf_printf(&b, " \"data\": {\"objectives\": [\"clm\"], \"seq_len\": %d}, \"budget\": {\"steps\": 1000}}", L);
    int rc = ktrain_config_parse(out, b.data, b.len, NULL, 0, err, errlen);
    kbuf_free(&b);
    return rc;
}

/* DistilBERT's run config: the model under DistilBertConfig's names,
 * objectives ["mlm"]. */
static int run_config_distilbert(const kmodel_config *m, ktrain_config *out, char *err, size_t errlen)
{
    kbuf b = {0};
    char d1[32], d2[32], d3[32], d4[32], d5[32];
    ktrain_fmt_double(d1, m->hidden_dropout_prob);
    ktrain_fmt_double(d2, m->attention_probs_dropout_prob);
    ktrain_fmt_double(d3, m->initializer_range);
    ktrain_fmt_double(d4, m->qa_dropout);
    ktrain_fmt_double(d5, m->seq_classif_dropout);
    kbuf_printf(&b,
                "{\"model\": {\"type\": \"distilbert\", \"vocab_size\": %d, \"dim\": %d, \"n_layers\": %d, "
                "\"n_heads\": %d, \"hidden_dim\": %d, \"max_position_embeddings\": %d, \"activation\": \"%s\", "
                "\"dropout\": %s, \"attention_dropout\": %s, \"initializer_range\": %s, \"qa_dropout\": %s, "
                "\"seq_classif_dropout\": %s, \"pad_token_id\": %d},\n",
                m->vocab_size, m->hidden_size, m->num_hidden_layers, m->num_attention_heads, m->intermediate_size,
                m->max_position_embeddings, m->hidden_act == KACT_GELU ? "gelu" : "gelu_new", d1, d2, d3, d4, d5,
                m->pad_token_id);
    int L = m->max_position_embeddings < 128 ? m->max_position_embeddings : 128;
    kbuf_printf(&b, " \"data\": {\"objectives\": [\"mlm\"], \"seq_len\": %d}, \"budget\": {\"steps\": 1000}}", L);
    int rc = ktrain_config_parse(out, b.data, b.len, NULL, 0, err, errlen);
    kbuf_free(&b);
    return rc;
}

/* The run config (ktrain_config) whose model is m, validated by the
 * run-config reader; objectives from the heads present. */
static int run_config(const kmodel_config *m, int heads, ktrain_config *out, char *err, size_t errlen)
{
    if (m->type == KMODEL_GPT2) return run_config_gpt2(m, out, err, errlen);
    if (m->type == KMODEL_DISTILBERT) return run_config_distilbert(m, out, err, errlen);
    if (m->type != KMODEL_ALBERT && m->type != KMODEL_BERT && m->type != KMODEL_ELECTRA) {
        kseterr(err, errlen, "model.type: unknown (%d)", m->type);
        return EX_CONFIG;
    }
    const int electra = m->type == KMODEL_ELECTRA;
    kbuf b = {0};
    char d1[32], d2[32], d3[32], d4[32];
    ktrain_fmt_double(d1, m->layer_norm_eps);
    ktrain_fmt_double(d2, m->hidden_dropout_prob);
    ktrain_fmt_double(d3, m->attention_probs_dropout_prob);
    ktrain_fmt_double(d4, m->initializer_range);
    int albert = m->type == KMODEL_ALBERT;
    kbuf_printf(&b, "{\"model\": {\"type\": \"%s\", \"vocab_size\": %d, ",
                albert ? "albert" : electra ? "electra" : "bert", m->vocab_size);
    if (albert) kbuf_printf(&b, "\"embedding_size\": %d, \"num_hidden_groups\": %d, ", m->embedding_size,
                            m->num_hidden_groups);
    if (electra) {
        kbuf_printf(&b, "\"embedding_size\": %d, ", m->embedding_size);
        if (m->generator_hidden_size) /* a pair: the generator's shape */
            kbuf_printf(&b,
                        "\"generator_hidden_size\": %d, \"generator_num_hidden_layers\": %d, "
                        "\"generator_num_attention_heads\": %d, \"generator_intermediate_size\": %d, ",
                        m->generator_hidden_size, m->generator_num_hidden_layers, m->generator_num_attention_heads,
                        m->generator_intermediate_size);
    }
    kbuf_printf(&b,
                "\"hidden_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
                "\"intermediate_size\": %d, \"max_position_embeddings\": %d, \"type_vocab_size\": %d, "
                "\"hidden_act\": \"%s\", \"layer_norm_eps\": %s, \"hidden_dropout_prob\": %s, "
                "\"attention_probs_dropout_prob\": %s, \"initializer_range\": %s, \"pad_token_id\": %d},\n",
                m->hidden_size, m->num_hidden_layers, m->num_attention_heads, m->intermediate_size,
                m->max_position_embeddings, m->type_vocab_size, m->hidden_act == KACT_GELU ? "gelu" : "gelu_new", d1,
                d2, d3, d4, m->pad_token_id);
    const char *sent = (heads & KHF_SENTENCE) ? (albert ? ", \"sop\"" : ", \"nsp\"") : "";
    int L = m->max_position_embeddings < 128 ? m->max_position_embeddings : 128;
    kbuf_printf(&b, " \"data\": {\"objectives\": [\"%s\"%s], \"seq_len\": %d}, \"budget\": {\"steps\": 1000}}",
                electra ? "rtd" : "mlm", sent, L);
    int rc = ktrain_config_parse(out, b.data, b.len, NULL, 0, err, errlen);
    kbuf_free(&b);
    return rc;
}

/* The class named in config.json: its model type and head kind (GPT2Model:
 * read as GPT2LMHeadModel, whose tensors it has but the tied lm_head). */
static int known_class(const char *arch, int *type, int *kind)
{
    if (!strcmp(arch, "GPT2Model")) {
        *type = KMODEL_GPT2;
        *kind = KEXPORT_HEAD_PRETRAINING;
        return 1;
    }
    for (int t = KMODEL_BERT; t <= KMODEL_DISTILBERT; t++)
        for (int k = KEXPORT_HEAD_PRETRAINING; k <= KEXPORT_HEAD_BASE; k++) {
            kexport_head h = {k, 1, NULL, NULL};
            const char *name = kexport_architecture(t, &h);
            if (name && !strcmp(arch, name)) {
                *type = t;
                *kind = k;
                return 1;
            }
        }
    return 0;
}

/* ---- tensor names ------------------------------------------------------------ */

/* The file's name as kiln's: a base model's unprefixed names get the prefix
 * (GPT-2: "transformer." before wte., wpe., h., ln_f.). */
static void kiln_name(const char *name, int type, char *out, size_t n)
{
    if (type == KMODEL_GPT2) {
        int bare = starts(name, "wte.") || starts(name, "wpe.") || starts(name, "h.") || starts(name, "ln_f.");
        snprintf(out, n, "%s%s", bare ? "transformer." : "", name);
        return;
    }
    if (type == KMODEL_DISTILBERT) { /* DistilBertModel saved alone: embeddings.*, transformer.* */
        int bare = starts(name, "embeddings.") || starts(name, "transformer.");
        snprintf(out, n, "%s%s", bare ? "distilbert." : "", name);
        return;
    }
    const char *prefix = type == KMODEL_ALBERT ? "albert." : type == KMODEL_ELECTRA ? "electra." : "bert.";
    if (starts(name, "embeddings.") || starts(name, "encoder.") || starts(name, "pooler.") ||
        (type == KMODEL_ELECTRA && starts(name, "embeddings_project.")))
        snprintf(out, n, "%s%s", prefix, name);
    else
        snprintf(out, n, "%s", name);
}

/* Buffers transformers saved in some versions: not parameters (GPT-2's
 * causal mask transformer.h.N.attn.bias and its fill value
 * transformer.h.N.attn.masked_bias; not attn.c_attn.bias). */
static int is_buffer(const char *kname, int type)
{
    static const char *const suffixes[] = {"embeddings.position_ids", "embeddings.token_type_ids"};
    size_t n = strlen(kname);
    if (type == KMODEL_GPT2) {
        if (!starts(kname, "transformer.h.")) return 0;
        const char *p = kname + strlen("transformer.h.");
        if (*p < '0' || *p > '9') return 0;
        while (*p >= '0' && *p <= '9') p++;
        return !strcmp(p, ".attn.bias") || !strcmp(p, ".attn.masked_bias");
    }
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        size_t k = strlen(suffixes[i]);
        if (n >= k && !strcmp(kname + n - k, suffixes[i])) return 1;
    }
    return 0;
}

/* The head kind the tensors imply (config.json without "architectures";
 * a *ForMaskedLM folder that also holds the pooler or sentence head). */
static int kind_of_tensors(const kst_file *f, int type)
{
    const int albert = type == KMODEL_ALBERT;
    int cls = 0, sent = 0, mlm = 0, pool = 0;
    for (int i = 0; i < kst_count(f); i++) {
        const char *s = kst_get(f, i)->name;
        if (type == KMODEL_DISTILBERT) { /* DistilBertForMaskedLM is kiln's pretraining class of it */
            sent |= starts(s, "vocab_transform.") || starts(s, "vocab_layer_norm.") || starts(s, "vocab_projector.");
            cls |= starts(s, "classifier.") || starts(s, "pre_classifier."); /* ...ForSequenceClassification */
            continue;
        }
        if (type == KMODEL_ELECTRA) { /* the discriminator's head is "the sentence head" of the layout */
            sent |= starts(s, "discriminator_predictions.");
            mlm |= starts(s, "generator_predictions.") || starts(s, "generator_lm_head.");
            cls |= starts(s, "classifier.");
            continue;
        }
        cls |= starts(s, "classifier.");
        sent |= starts(s, albert ? "sop_classifier." : "cls.seq_relationship.");
        mlm |= starts(s, albert ? "predictions." : "cls.predictions.");
        pool |= starts(s, "pooler.") || starts(s, albert ? "albert.pooler." : "bert.pooler.");
    }
    return cls ? KEXPORT_HEAD_CLASSIFICATION
               : sent || (mlm && pool) ? KEXPORT_HEAD_PRETRAINING : mlm ? KEXPORT_HEAD_MASKED_LM : KEXPORT_HEAD_BASE;
}

/* ---- the loader ------------------------------------------------------------- */

void khf_free(khf_model *m)
{
    if (!m) return;
    for (int i = 0; i < m->n; i++) {
        free((char *)m->tensors[i].name);
        free((void *)m->tensors[i].data);
    }
    free(m->tensors);
    for (int i = 0; m->labels && i < m->num_labels; i++) free(m->labels[i]);
    free(m->labels);
    free(m->vocab);
    free(m->merges);
    memset(m, 0, sizeof *m);
}

/* GPT2Config (transformers' names and defaults for absent keys) into *c;
 * the attention variants kiln does not compute refused by name. Returns 0
 * or EX_DATAERR with r's err filled. n_ctx is not read: transformers
 * ignores it (wpe and the causal mask are n_positions long). */
static int read_gpt2(cfg_reader *r, kmodel_config *c)
{
    ktrain_config d; /* kiln's defaults for what GPT2Config does not name (type_vocab_size, ...) */
    ktrain_config_defaults(&d);
    *c = d.model;
    c->type = KMODEL_GPT2;
    c->vocab_size = get_int(r, "vocab_size", 50257);
    c->max_position_embeddings = get_int(r, "n_positions", 1024);
    c->hidden_size = c->embedding_size = get_int(r, "n_embd", 768);
    c->num_hidden_layers = c->num_hidden_groups = get_int(r, "n_layer", 12);
    c->num_attention_heads = get_int(r, "n_head", 12);
    int inner = get_int(r, "n_inner", -1); /* null: 4 n_embd */
    c->intermediate_size = inner < 0 ? 4 * c->hidden_size : inner;
    c->hidden_dropout_prob = get_num(r, "resid_pdrop", 0.1);
    c->embd_dropout_prob = get_num(r, "embd_pdrop", 0.1);
    c->attention_probs_dropout_prob = get_num(r, "attn_pdrop", 0.1);
    c->layer_norm_eps = get_num(r, "layer_norm_epsilon", 1e-5);
    c->initializer_range = get_num(r, "initializer_range", 0.02);
    const char *act = get_str(r, "activation_function", "gelu_new");
    int scale = get_bool(r, "scale_attn_weights", 1), by_layer = get_bool(r, "scale_attn_by_inverse_layer_idx", 0),
        cross = get_bool(r, "add_cross_attention", 0);
    if (r->bad) return EX_DATAERR;
    if (!strcmp(act, "gelu_new") || !strcmp(act, "gelu_pytorch_tanh")) c->hidden_act = KACT_GELU_NEW;
    else if (!strcmp(act, "gelu")) c->hidden_act = KACT_GELU;
    else {
        kseterr(r->err, r->errlen,
                "%s: activation_function \"%s\" is not supported (kiln has \"gelu_new\" and \"gelu\")", r->path, act);
        return EX_DATAERR;
    }
    if (!scale) {
        kseterr(r->err, r->errlen,
                "%s: scale_attn_weights false is not supported (kiln's attention always divides by sqrt(head size))",
                r->path);
        return EX_DATAERR;
    }
    if (by_layer) {
        kseterr(r->err, r->errlen,
                "%s: scale_attn_by_inverse_layer_idx true is not supported (kiln's attention has no per-layer scaling)",
                r->path);
        return EX_DATAERR;
    }
    if (cross) {
        kseterr(r->err, r->errlen, "%s: add_cross_attention true is not supported (kiln's GPT-2 is a decoder alone)",
                r->path);
        return EX_DATAERR;
    }
    return 0;
}

/* DistilBertConfig (transformers' names and defaults for absent keys) into
 * *c; sinusoidal position embeddings and activations kiln lacks refused by
 * name. LayerNorm eps is DistilBERT's fixed 1e-12. Returns 0 or EX_DATAERR
 * with r's err filled. */
static int read_distilbert(cfg_reader *r, kmodel_config *c)
{
    ktrain_config d; /* kiln's defaults for what DistilBertConfig does not name (type_vocab_size, ...) */
    ktrain_config_defaults(&d);
    *c = d.model;
    c->type = KMODEL_DISTILBERT;
    c->vocab_size = get_int(r, "vocab_size", 30522);
    c->max_position_embeddings = get_int(r, "max_position_embeddings", 512);
    c->hidden_size = c->embedding_size = get_int(r, "dim", 768);
    c->num_hidden_layers = c->num_hidden_groups = get_int(r, "n_layers", 6);
    c->num_attention_heads = get_int(r, "n_heads", 12);
    c->intermediate_size = get_int(r, "hidden_dim", 3072);
    c->hidden_dropout_prob = get_num(r, "dropout", 0.1);
    c->attention_probs_dropout_prob = get_num(r, "attention_dropout", 0.1);
    c->initializer_range = get_num(r, "initializer_range", 0.02);
    c->qa_dropout = get_num(r, "qa_dropout", 0.1);
    c->seq_classif_dropout = get_num(r, "seq_classif_dropout", 0.2);
    c->pad_token_id = get_int(r, "pad_token_id", 0);
    c->layer_norm_eps = 1e-12;
    const char *act = get_str(r, "activation", "gelu");
    int sinus = get_bool(r, "sinusoidal_pos_embds", 0);
    if (r->bad) return EX_DATAERR;
    if (!strcmp(act, "gelu")) c->hidden_act = KACT_GELU;
    else if (!strcmp(act, "gelu_new") || !strcmp(act, "gelu_pytorch_tanh")) c->hidden_act = KACT_GELU_NEW;
    else {
        kseterr(r->err, r->errlen, "%s: activation \"%s\" is not supported (kiln has \"gelu\" and \"gelu_new\")",
                r->path, act);
        return EX_DATAERR;
    }
    if (sinus) {
        kseterr(r->err, r->errlen,
                "%s: sinusoidal_pos_embds true is not supported (kiln's DistilBERT learns its position embeddings)",
                r->path);
        return EX_DATAERR;
    }
    return 0;
}

/* The classification keys of config.json (PretrainedConfig's, any model
 * type) into m: id2label's names (m->labels), *labels_rows = their count,
 * or num_labels, or label2id's size (0 when none is there); problem_type.
 * Returns 0 or EX_DATAERR with r's err filled. */
static int read_labels(cfg_reader *r, khf_model *m, int *labels_rows)
{
    json_t *j = r->j, *id2 = json_object_get(j, "id2label"), *l2i = json_object_get(j, "label2id");
    *labels_rows = 0;
    if (id2 && json_is_object(id2) && json_object_size(id2) > 0) {
        int n = (int)json_object_size(id2);
        char **labels = xcalloc((size_t)n, sizeof *labels);
        for (int i = 0; i < n; i++) {
            char key[16];
            snprintf(key, sizeof key, "%d", i);
            const char *v = json_string_value(json_object_get(id2, key));
            if (!v) {
                kseterr(r->err, r->errlen,
                        "%s: id2label must map \"0\" .. \"%d\" to names; \"%s\" is missing or not a string", r->path,
                        n - 1, key);
                for (int k = 0; k < i; k++) free(labels[k]);
                free(labels);
                return EX_DATAERR;
            }
            labels[i] = xstrdup(v);
        }
        m->labels = labels;
        m->num_labels = *labels_rows = n;
    } else if (json_is_integer(json_object_get(j, "num_labels"))) {
        *labels_rows = (int)json_integer_value(json_object_get(j, "num_labels"));
    } else if (l2i && json_is_object(l2i)) {
        *labels_rows = (int)json_object_size(l2i);
    }
    const char *pt = get_str(r, "problem_type", "");
    if (r->bad) return EX_DATAERR;
    if (*pt && strcmp(pt, "regression") && strcmp(pt, "single_label_classification")) {
        kseterr(r->err, r->errlen,
                "%s: problem_type \"%s\" is not supported (kiln's classifier: single_label_classification or "
                "regression)",
                r->path, pt);
        return EX_DATAERR;
    }
    snprintf(m->problem_type, sizeof m->problem_type, "%s", pt);
    return 0;
}

/* Reads config.json into m (everything but the tensors); *kind gets the head kind,
 * or -1 when the class is to be read off the tensors. */
static int read_config(const char *path, khf_model *m, int *kind, int *labels_rows, char *err, size_t errlen)
{
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!j || !json_is_object(j)) {
        if (j) kseterr(err, errlen, "%s: not a JSON object", path);
        else kseterr(err, errlen, "%s: line %d: %s", path, je.line, je.text);
        json_decref(j);
        return EX_DATAERR;
    }
    cfg_reader r = {j, path, err, errlen, 0};
    int rc = EX_DATAERR, type;
    const char *mt = get_str(&r, "model_type", NULL);
    if (!mt) {
        if (!r.bad)
            kseterr(err, errlen,
                    "%s: no \"model_type\" (kiln imports \"bert\", \"albert\", \"electra\", \"gpt2\" and "
                    "\"distilbert\")",
                    path);
        goto out;
    }
    if (!strcmp(mt, "bert")) type = KMODEL_BERT;
    else if (!strcmp(mt, "albert")) type = KMODEL_ALBERT;
    else if (!strcmp(mt, "electra")) type = KMODEL_ELECTRA;
    else if (!strcmp(mt, "gpt2")) type = KMODEL_GPT2;
    else if (!strcmp(mt, "distilbert")) type = KMODEL_DISTILBERT;
    else {
        kseterr(err, errlen,
                "%s: model_type \"%s\" is not supported (kiln imports \"bert\", \"albert\", \"electra\", "
                "\"gpt2\" and \"distilbert\")",
                path, mt);
        goto out;
    }
    json_t *archs = json_object_get(j, "architectures");
    *kind = -1;
    if (archs && !json_is_null(archs)) {
        const char *a = json_string_value(json_array_get(archs, 0));
        if (!json_is_array(archs) || json_array_size(archs) != 1 || !a) {
            kseterr(err, errlen, "%s: \"architectures\" must be a list of one class name", path);
            goto out;
        }
        int t, k;
        if (!known_class(a, &t, &k)) {
            kseterr(err, errlen,
                    "%s: architecture \"%s\" is not supported (kiln imports BertForPreTraining, BertForMaskedLM, "
                    "BertModel, BertForSequenceClassification and their Albert and Electra counterparts, "
                    "GPT2LMHeadModel, GPT2Model, DistilBertForMaskedLM, DistilBertModel and "
                    "DistilBertForSequenceClassification)",
                    path, a);
            goto out;
        }
        if (t != type) {
            kseterr(err, errlen, "%s: architecture \"%s\" does not go with model_type \"%s\"", path, a, mt);
            goto out;
        }
        *kind = k;
        snprintf(m->architecture, sizeof m->architecture, "%s", a);
    }
    if (type == KMODEL_GPT2) {
        *kind = KEXPORT_HEAD_PRETRAINING;
        *labels_rows = 0;
        snprintf(m->architecture, sizeof m->architecture, "GPT2LMHeadModel"); /* the tied LM head: always */
        rc = read_gpt2(&r, &m->config);
        goto out;
    }
    if (type == KMODEL_DISTILBERT) {
        if (*kind == KEXPORT_HEAD_MASKED_LM) *kind = KEXPORT_HEAD_PRETRAINING; /* the same class for kiln */
        rc = read_distilbert(&r, &m->config);
        if (!rc) rc = read_labels(&r, m, labels_rows);
        goto out;
    }
    int albert = type == KMODEL_ALBERT, electra = type == KMODEL_ELECTRA;
    kmodel_config *c = &m->config;
    memset(c, 0, sizeof *c);
    c->type = type;
    /* transformers' BertConfig / AlbertConfig / ElectraConfig defaults for absent keys */
    c->vocab_size = get_int(&r, "vocab_size", albert ? 30000 : 30522);
    c->hidden_size = get_int(&r, "hidden_size", albert ? 4096 : electra ? 256 : 768);
    c->embedding_size = albert || electra ? get_int(&r, "embedding_size", 128) : c->hidden_size;
    c->num_hidden_layers = get_int(&r, "num_hidden_layers", 12);
    c->num_attention_heads = get_int(&r, "num_attention_heads", albert ? 64 : electra ? 4 : 12);
    c->intermediate_size = get_int(&r, "intermediate_size", albert ? 16384 : electra ? 1024 : 3072);
    c->num_hidden_groups = albert ? get_int(&r, "num_hidden_groups", 1) : c->num_hidden_layers;
    c->max_position_embeddings = get_int(&r, "max_position_embeddings", 512);
    c->type_vocab_size = get_int(&r, "type_vocab_size", 2);
    c->layer_norm_eps = get_num(&r, "layer_norm_eps", 1e-12);
    c->hidden_dropout_prob = get_num(&r, "hidden_dropout_prob", albert ? 0 : 0.1);
    c->attention_probs_dropout_prob = get_num(&r, "attention_probs_dropout_prob", albert ? 0 : 0.1);
    c->initializer_range = get_num(&r, "initializer_range", 0.02);
    c->pad_token_id = get_int(&r, "pad_token_id", 0);
    const char *act = get_str(&r, "hidden_act", albert ? "gelu_new" : "gelu");
    const char *pos = get_str(&r, "position_embedding_type", "absolute");
    int inner = albert ? get_int(&r, "inner_group_num", 1) : 1;
    if (r.bad) goto out;
    if (!strcmp(act, "gelu")) c->hidden_act = KACT_GELU;
    else if (!strcmp(act, "gelu_new") || !strcmp(act, "gelu_pytorch_tanh")) c->hidden_act = KACT_GELU_NEW;
    else {
        kseterr(err, errlen, "%s: hidden_act \"%s\" is not supported (kiln has \"gelu\" and \"gelu_new\")", path, act);
        goto out;
    }
    if (strcmp(pos, "absolute")) {
        kseterr(err, errlen, "%s: position_embedding_type \"%s\" is not supported (kiln has \"absolute\")", path, pos);
        goto out;
    }
    if (inner != 1) {
        kseterr(err, errlen, "%s: inner_group_num %d is not supported (kiln's ALBERT has 1 layer per group)", path,
                inner);
        goto out;
    }
    rc = read_labels(&r, m, labels_rows);
out:
    json_decref(j);
    return rc;
}

static int load_tensors(const char *path, khf_model *m, const kst_file *f, char *err, size_t errlen)
{
    int nl;
    kexport_entry *lay = kexport_layout2(&m->config, m->config.vocab_size, &m->head, &nl);
    if (!lay) {
        kseterr(err, errlen, "%s: the model's dimensions or num_labels (%d) are out of range", path,
                m->head.num_labels);
        return EX_DATAERR;
    }
    int nf = kst_count(f), rc = EX_DATAERR;
    /* per layout entry: the file's tensor (index), or -1 */
    int *src = xmalloc(sizeof *src * (size_t)nl);
    for (int k = 0; k < nl; k++) src[k] = -1;
    char kn[256], s1[96], s2[96];
    for (int i = 0; i < nf; i++) {
        const kst_tensor *t = kst_get(f, i);
        kiln_name(t->name, m->config.type, kn, sizeof kn);
        if (is_buffer(kn, m->config.type)) { m->n_skipped++; continue; }
        int k = 0;
        while (k < nl && strcmp(lay[k].name, kn)) k++;
        if (k == nl) {
            kseterr(err, errlen,
                    "%s: tensor '%s' is not a tensor of %s (kiln refuses unknown tensors rather than drop them)",
                    path, t->name, m->architecture);
            goto out;
        }
        if (src[k] >= 0) {
            kseterr(err, errlen, "%s: tensor '%s' is there twice ('%s' and '%s')", path, kn, kst_get(f, src[k])->name,
                    t->name);
            goto out;
        }
        /* the file's shape: a transposed entry (GPT-2's Conv1D) is [in, out] there */
        const int tr = lay[k].transpose && lay[k].ndim == 2;
        const int64_t want[2] = {lay[k].shape[tr ? 1 : 0], lay[k].shape[tr ? 0 : 1]};
        if (t->ndim != lay[k].ndim || t->shape[0] != want[0] || (t->ndim == 2 && t->shape[1] != want[1])) {
            shape_str(s1, sizeof s1, t->ndim, t->shape);
            shape_str(s2, sizeof s2, lay[k].ndim, want);
            kseterr(err, errlen, "%s: tensor '%s' has shape %s, config.json implies %s%s", path, t->name, s1, s2,
                    tr ? " (Conv1D: [in, out])" : "");
            goto out;
        }
        if (strcmp(t->dtype, "F32") && strcmp(t->dtype, "F16") && strcmp(t->dtype, "BF16")) {
            kseterr(err, errlen, "%s: tensor '%s' is %s: kiln imports F32, F16 and BF16", path, t->name, t->dtype);
            goto out;
        }
        src[k] = i;
    }
    /* pairs: weight and bias together */
    for (int k = 0; k + 1 < nl; k++) {
        size_t a = strlen(lay[k].name);
        if (a < 7 || strcmp(lay[k].name + a - 7, ".weight") || strncmp(lay[k].name, lay[k + 1].name, a - 6) ||
            strcmp(lay[k + 1].name + a - 6, "bias"))
            continue;
        if ((src[k] < 0) != (src[k + 1] < 0) && lay[k].role != KEXPORT_TIED) {
            kseterr(err, errlen, "%s: '%s' is there without '%s'", path,
                    lay[src[k] < 0 ? k + 1 : k].name, lay[src[k] < 0 ? k : k + 1].name);
            goto out;
        }
    }
    m->tensors = xcalloc((size_t)nl, sizeof *m->tensors);
    float **data = xcalloc((size_t)nl, sizeof *data); /* per layout entry, converted */
    for (int k = 0; k < nl; k++) {
        if (src[k] < 0) {
            if (lay[k].role == KEXPORT_REQUIRED) {
                kseterr(err, errlen, "%s: tensor '%s' of %s is missing", path, lay[k].name, m->architecture);
                goto out_data;
            }
            continue;
        }
        const kst_tensor *t = kst_get(f, src[k]);
        size_t numel = (size_t)lay[k].shape[0] * (size_t)(lay[k].ndim == 2 ? lay[k].shape[1] : 1);
        float *d = xmalloc(numel * sizeof *d + 1);
        const unsigned char *p = t->data;
        if (!strcmp(t->dtype, "F32")) {
            memcpy(d, p, numel * sizeof *d);
        } else {
            int bf = !strcmp(t->dtype, "BF16");
            for (size_t e = 0; e < numel; e++) {
                uint16_t h = (uint16_t)(p[2 * e] | p[2 * e + 1] << 8);
                if (bf) {
                    uint32_t bits = (uint32_t)h << 16;
                    memcpy(&d[e], &bits, 4);
                } else {
                    d[e] = half_to_float(h);
                }
            }
            m->n_converted++;
        }
        if (lay[k].transpose && lay[k].ndim == 2) { /* Conv1D [in, out] -> kiln's [out, in] */
            const int64_t r = lay[k].shape[0], c = lay[k].shape[1]; /* out, in */
            float *o = xmalloc(numel * sizeof *o + 1);
            for (int64_t i = 0; i < c; i++)
                for (int64_t j = 0; j < r; j++) o[j * c + i] = d[i * r + j];
            free(d);
            d = o;
        }
        data[k] = d;
    }
    /* tied copies: equal to their target, then dropped */
    for (int k = 0; k < nl; k++) {
        if (lay[k].role != KEXPORT_TIED || !data[k]) continue;
        const char *to = kexport_tied_to(lay[k].name);
        int j = 0;
        while (j < nl && strcmp(lay[j].name, to)) j++;
        size_t numel = (size_t)lay[k].shape[0] * (size_t)(lay[k].ndim == 2 ? lay[k].shape[1] : 1);
        if (j < nl && data[j] && memcmp(data[j], data[k], numel * sizeof(float))) {
            kseterr(err, errlen, "%s: '%s' differs from '%s', to which it is tied (kiln keeps one copy)", path,
                    kst_get(f, src[k])->name, kst_get(f, src[j])->name);
            goto out_data;
        }
        free(data[k]);
        data[k] = NULL;
        m->n_skipped++;
    }
    for (int k = 0; k < nl; k++) {
        if (!data[k]) continue;
        kst_tensor *t = &m->tensors[m->n++];
        t->name = xstrdup(lay[k].name);
        t->dtype = "F32";
        t->ndim = lay[k].ndim;
        t->shape[0] = lay[k].shape[0];
        t->shape[1] = lay[k].ndim == 2 ? lay[k].shape[1] : 0;
        t->nbytes = (size_t)t->shape[0] * (size_t)(t->ndim == 2 ? t->shape[1] : 1) * sizeof(float);
        t->data = data[k];
        data[k] = NULL;
        if (starts(t->name, "discriminator_predictions.")) m->heads |= KHF_TOKEN;
        else if (starts(t->name, "generator_predictions.") || starts(t->name, "generator_lm_head.")) m->heads |= KHF_MLM;
        else if (starts(t->name, "classifier.") || starts(t->name, "pre_classifier.")) m->heads |= KHF_CLASSIFY;
        else if (strstr(t->name, "pooler.")) m->heads |= KHF_POOLER;
        else if (starts(t->name, "sop_classifier.") || starts(t->name, "cls.seq_relationship.")) m->heads |= KHF_SENTENCE;
        else if (starts(t->name, "predictions.") || starts(t->name, "cls.predictions.") ||
                 starts(t->name, "vocab_transform.") || starts(t->name, "vocab_layer_norm.") ||
                 starts(t->name, "vocab_projector."))
            m->heads |= KHF_MLM;
    }
    if (m->config.type == KMODEL_GPT2) m->heads = KHF_LM; /* tied to transformer.wte.weight */
    rc = 0;
out_data:
    for (int k = 0; k < nl; k++) free(data[k]);
    free(data);
out:
    free(src);
    free(lay);
    return rc;
}

/* BERT / ALBERT / ELECTRA's vocab.txt (checked against m's config as the
 * exporter checks it) and tokenizer_config.json's casing into m. Returns 0,
 * EX_NOINPUT (vocab.txt missing), EX_DATAERR or EX_IOERR. */
static int read_wordpiece(const char *dir, khf_model *out, char *err, size_t errlen)
{
    char *vpath = join(dir, "vocab.txt");
    int rc = 0;
    /* the vocabulary */
    if (access(vpath, F_OK)) {
        if (exists(dir, "spiece.model"))
            kseterr(err, errlen,
                    "%s: missing: the folder has spiece.model (a SentencePiece tokenizer); kiln needs a WordPiece "
                    "vocab.txt",
                    vpath);
        else
            kseterr(err, errlen, "%s: missing (kiln needs the WordPiece vocabulary)", vpath);
        rc = EX_NOINPUT;
        goto done;
    }
    kbuf v = {0};
    int e = kbuf_read_file(&v, vpath);
    if (e) {
        kseterr(err, errlen, "%s: %s", vpath, strerror(e));
        kbuf_free(&v);
        rc = EX_IOERR;
        goto done;
    }
    if (!v.data) kbuf_reserve(&v, 1);
    out->vocab = v.data;
    out->vocab_len = v.len;
    char verr[512];
    if (kexport_vocab_check(&out->config, out->vocab, out->vocab_len, verr, sizeof verr)) {
        kseterr(err, errlen, "%s: %s (config.json's vocab_size and pad_token_id)", vpath, verr);
        rc = EX_DATAERR;
        goto done;
    }
    /* tokenizer_config.json: do_lower_case (BertTokenizer's default: true) */
    out->do_lower_case = 1;
    out->strip_accents = -1;
    char *tpath = join(dir, "tokenizer_config.json");
    json_t *tj = json_load_file(tpath, 0, NULL);
    if (json_is_boolean(json_object_get(tj, "do_lower_case")))
        out->do_lower_case = json_is_true(json_object_get(tj, "do_lower_case"));
    if (json_is_boolean(json_object_get(tj, "strip_accents")))
        out->strip_accents = json_is_true(json_object_get(tj, "strip_accents"));
    json_decref(tj);
    free(tpath);
done:
    free(vpath);
    return rc;
}

/* GPT-2's tokenizer files: vocab.json and merges.txt, their bytes into m
 * (vocab_kind BPE); parsed and checked by the caller (text/bpe.h). Returns
 * 0, EX_NOINPUT (a file missing, named) or EX_IOERR. */
static int read_bpe(const char *dir, khf_model *m, char *err, size_t errlen)
{
    static const char *const names[2] = {"vocab.json", "merges.txt"};
    char *paths[2] = {join(dir, names[0]), join(dir, names[1])};
    kbuf b[2] = {{0}, {0}};
    int rc = 0;
    for (int i = 0; i < 2 && !rc; i++) {
        if (access(paths[i], F_OK)) {
            if (exists(dir, "tokenizer.json"))
                kseterr(err, errlen,
                        "%s: missing: the folder has tokenizer.json (a fast tokenizer's file); kiln needs GPT-2's "
                        "vocab.json and merges.txt (GPT2Tokenizer's save_pretrained writes them)",
                        paths[i]);
            else
                kseterr(err, errlen, "%s: missing (kiln needs GPT-2's byte-level BPE: vocab.json and merges.txt)",
                        paths[i]);
            rc = EX_NOINPUT;
        } else {
            int e = kbuf_read_file(&b[i], paths[i]);
            if (e) {
                kseterr(err, errlen, "%s: %s", paths[i], strerror(e));
                rc = EX_IOERR;
            } else if (!b[i].data) {
                kbuf_reserve(&b[i], 1); /* an empty file: NUL-terminated all the same */
            }
        }
    }
    if (!rc) {
        m->vocab_kind = KCKPT_VOCAB_BPE;
        m->vocab = b[0].data;
        m->vocab_len = b[0].len;
        m->merges = b[1].data;
        m->merges_len = b[1].len;
    } else {
        kbuf_free(&b[0]);
        kbuf_free(&b[1]);
    }
    free(paths[0]);
    free(paths[1]);
    return rc;
}

int khf_load(const char *dir, khf_model *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (errlen) err[0] = '\0';
    if (!dir || !*dir) {
        kseterr(err, errlen, "khf_load: no folder given");
        return EX_SOFTWARE;
    }
    if (access(dir, F_OK)) {
        kseterr(err, errlen, "%s: %s", dir, strerror(errno));
        return EX_NOINPUT;
    }
    char *cpath = join(dir, "config.json"), *spath = join(dir, "model.safetensors");
    kst_file *f = NULL;
    int rc = EX_NOINPUT, kind = -1, rows = 0;
    if (access(cpath, F_OK)) {
        kseterr(err, errlen, "%s: missing (a Hugging Face model folder has config.json)", cpath);
        goto done;
    }
    if (access(spath, F_OK)) {
        if (exists(dir, "model.safetensors.index.json"))
            kseterr(err, errlen, "%s: missing: the folder holds a sharded checkpoint, which kiln does not read", spath);
        else if (exists(dir, "pytorch_model.bin"))
            kseterr(err, errlen,
                    "%s: missing: the folder has only pytorch_model.bin; kiln reads safetensors only (save the "
                    "model with save_pretrained(..., safe_serialization=True))",
                    spath);
        else
            kseterr(err, errlen, "%s: missing", spath);
        goto done;
    }
    if ((rc = read_config(cpath, out, &kind, &rows, err, errlen))) goto done;
    ktrain_config rcfg;
    char cerr[512];
    if (out->config.type == KMODEL_GPT2 && run_config(&out->config, 0, &rcfg, cerr, sizeof cerr)) {
        /* before the layout, which needs a model kiln can build (n_head dividing n_embd, ...) */
        kseterr(err, errlen, "%s: the model does not fit kiln: %s", cpath, cerr);
        rc = EX_DATAERR;
        goto done;
    }
    rc = out->config.type == KMODEL_GPT2 ? read_bpe(dir, out, err, errlen) : read_wordpiece(dir, out, err, errlen);
    if (rc) goto done;
    out->eot_id = -1; /* the caller, which parses a BPE vocabulary, knows it */
    f = kst_open(spath, err, errlen);
    if (!f) {
        rc = EX_DATAERR;
        goto done;
    }
    const int type = out->config.type;
    if (kind < 0) {
        kind = kind_of_tensors(f, type);
        kexport_head h = {kind, 1, NULL, NULL};
        snprintf(out->architecture, sizeof out->architecture, "%s", kexport_architecture(out->config.type, &h));
    }
    if (kind == KEXPORT_HEAD_MASKED_LM && type != KMODEL_ELECTRA && kind_of_tensors(f, type) != KEXPORT_HEAD_MASKED_LM) {
        /* *ForMaskedLM folders of original pretraining checkpoints (bert-base-uncased,
         * albert-base-v2) still hold the pooler / sentence head: kept, as pretraining */
        kind = KEXPORT_HEAD_PRETRAINING;
    }
    if (kind == KEXPORT_HEAD_CLASSIFICATION) {
        if (!rows) { /* no label count in config.json: the classifier's rows */
            const kst_tensor *b = kst_find(f, type == KMODEL_ELECTRA ? "classifier.out_proj.bias" : "classifier.bias");
            rows = b && b->ndim == 1 ? (int)b->shape[0] : 2;
        }
        out->num_labels = rows;
        if (!out->problem_type[0])
            snprintf(out->problem_type, sizeof out->problem_type, "%s",
                     rows == 1 ? "regression" : "single_label_classification");
        if ((rows == 1) != !strcmp(out->problem_type, "regression")) {
            kseterr(err, errlen, "%s/config.json: problem_type \"%s\" with %d labels: kiln's classifier is %s", dir,
                    out->problem_type, rows, rows == 1 ? "regression (1 label)" : "single_label_classification");
            rc = EX_DATAERR;
            goto done;
        }
    } else {
        for (int i = 0; out->labels && i < out->num_labels; i++) free(out->labels[i]);
        free(out->labels);
        out->labels = NULL;
        out->num_labels = 0;
        out->problem_type[0] = '\0';
    }
    out->head.kind = kind;
    out->head.num_labels = out->num_labels;
    out->head.labels = (const char *const *)out->labels;
    out->head.problem_type = out->num_labels ? out->problem_type : NULL;
    if ((rc = load_tensors(spath, out, f, err, errlen))) goto done;
    /* the config as kiln's run-config reader sees it (ranges, cross-field checks) */
    if (run_config(&out->config, out->heads, &rcfg, cerr, sizeof cerr)) {
        kseterr(err, errlen, "%s: the model does not fit kiln: %s", cpath, cerr);
        rc = EX_DATAERR;
        goto done;
    }
    out->config = rcfg.model;
done:
    kst_close(f);
    free(cpath);
    free(spath);
    if (rc) khf_free(out);
    return rc;
}

/* ---- an ELECTRA pair ----------------------------------------------------------- */

int khf_is_electra_pair(const char *dir)
{
    char *a = join(dir, "discriminator/config.json"), *b = join(dir, "generator/config.json");
    int r = !access(a, F_OK) && !access(b, F_OK);
    free(a);
    free(b);
    return r;
}

int khf_load_electra_pair(const char *dir, khf_model *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    khf_model d, g;
    char *dd = join(dir, "discriminator"), *gd = join(dir, "generator");
    int rc = khf_load(dd, &d, err, errlen);
    if (rc) goto done0;
    rc = khf_load(gd, &g, err, errlen);
    if (rc) goto done1;
    rc = EX_DATAERR;
    const kmodel_config *dc = &d.config, *gc = &g.config;
    if (dc->type != KMODEL_ELECTRA || gc->type != KMODEL_ELECTRA || !(d.heads & KHF_TOKEN) || !(g.heads & KHF_MLM)) {
        kseterr(err, errlen, "%s: an ELECTRA pair is discriminator/ (ElectraForPreTraining) and generator/ "
                             "(ElectraForMaskedLM); found %s and %s", dir, d.architecture, g.architecture);
        goto done2;
    }
    if (dc->vocab_size != gc->vocab_size || dc->embedding_size != gc->embedding_size ||
        dc->max_position_embeddings != gc->max_position_embeddings || dc->type_vocab_size != gc->type_vocab_size ||
        d.vocab_len != g.vocab_len || memcmp(d.vocab, g.vocab, d.vocab_len) || d.do_lower_case != g.do_lower_case ||
        d.strip_accents != g.strip_accents) {
        kseterr(err, errlen, "%s: the discriminator and the generator differ in vocabulary or embedding shape "
                             "(vocab_size, embedding_size, max_position_embeddings, type_vocab_size, vocab.txt, "
                             "do_lower_case): not a pair", dir);
        goto done2;
    }
    /* the shared embeddings: equal in both files */
    int ng = 0;
    for (int i = 0; i < g.n; i++) {
        if (!starts(g.tensors[i].name, "electra.embeddings.")) {
            ng++;
            continue;
        }
        const kst_tensor *t = &g.tensors[i], *u = NULL;
        for (int k = 0; k < d.n && !u; k++)
            if (!strcmp(d.tensors[k].name, t->name)) u = &d.tensors[k];
        if (!u || u->nbytes != t->nbytes || memcmp(u->data, t->data, t->nbytes)) {
            kseterr(err, errlen, "%s: '%s' differs between the discriminator and the generator (ELECTRA shares its "
                                 "embeddings: not a pair trained together)", dir, t->name);
            goto done2;
        }
    }
    *out = d;
    memset(&d, 0, sizeof d);
    out->config.generator_hidden_size = gc->hidden_size;
    out->config.generator_num_hidden_layers = gc->num_hidden_layers;
    out->config.generator_num_attention_heads = gc->num_attention_heads;
    out->config.generator_intermediate_size = gc->intermediate_size;
    out->tensors = xrealloc(out->tensors, (size_t)(out->n + ng) * sizeof *out->tensors);
    for (int i = 0; i < g.n; i++) {
        kst_tensor *t = &g.tensors[i];
        if (starts(t->name, "electra.embeddings.")) continue;
        kst_tensor *o = &out->tensors[out->n++];
        *o = *t;
        size_t len = strlen(t->name) + 16;
        char *name = xmalloc(len);
        snprintf(name, len, "generator.%s", t->name);
        o->name = name;
        free((char *)t->name);
        t->name = NULL;
        t->data = NULL; /* moved */
    }
    out->heads |= KHF_MLM;
    out->n_converted += g.n_converted;
    out->n_skipped += g.n_skipped;
    snprintf(out->architecture, sizeof out->architecture, "ElectraForPreTraining+ElectraForMaskedLM");
    ktrain_config rcfg;
    char cerr[512];
    if (run_config(&out->config, out->heads, &rcfg, cerr, sizeof cerr)) {
        kseterr(err, errlen, "%s: the pair does not fit kiln: %s", dir, cerr);
        khf_free(out);
        goto done2;
    }
    out->config = rcfg.model;
    rc = 0;
done2:
    khf_free(&g);
done1:
    khf_free(&d);
done0:
    free(dd);
    free(gd);
    return rc;
}

/* ---- what the checkpoint says about the import ------------------------------- */

int khf_run_config(const khf_model *m, ktrain_config *out, char *err, size_t errlen)
{
    return run_config(&m->config, m->heads, out, err, errlen);
}

char *khf_extra_json(const khf_model *m, const char *imported_from)
{
    if (m->config.type == KMODEL_GPT2) {
        json_t *o = json_object(), *heads = json_array();
        json_array_append_new(heads, json_string("lm"));
        json_object_set_new(o, "imported_from", json_string(imported_from ? imported_from : ""));
        json_object_set_new(o, "architecture", json_string(m->architecture));
        json_object_set_new(o, "model_type", json_string("gpt2"));
        json_object_set_new(o, "heads", heads);
        json_object_set_new(o, "tokenizer", json_string("bpe"));
        json_object_set_new(o, "eot_id", m->eot_id >= 0 ? json_integer(m->eot_id) : json_null());
        char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
        if (!s) abort(); /* out of memory */
        char *r = xstrdup(s);
        free(s);
        return r;
    }
    json_t *o = json_object(), *heads = json_array(), *labels = json_array();
    if (m->heads & KHF_MLM) json_array_append_new(heads, json_string("mlm"));
    if (m->heads & KHF_SENTENCE) json_array_append_new(heads, json_string("sentence"));
    if (m->heads & KHF_CLASSIFY) json_array_append_new(heads, json_string("classify"));
    if (m->heads & KHF_TOKEN) json_array_append_new(heads, json_string("token"));
    for (int i = 0; m->labels && i < m->num_labels; i++) json_array_append_new(labels, json_string(m->labels[i]));
    json_object_set_new(o, "imported_from", json_string(imported_from ? imported_from : ""));
    json_object_set_new(o, "architecture", json_string(m->architecture));
    json_object_set_new(o, "model_type", json_string(m->config.type == KMODEL_ALBERT       ? "albert"
                                                     : m->config.type == KMODEL_ELECTRA    ? "electra"
                                                     : m->config.type == KMODEL_DISTILBERT ? "distilbert"
                                                                                           : "bert"));
    json_object_set_new(o, "heads", heads);
    json_object_set_new(o, "pooler", json_boolean(m->heads & KHF_POOLER));
    json_object_set_new(o, "num_labels", json_integer(m->num_labels));
    json_object_set_new(o, "id2label", labels);
    json_object_set_new(o, "problem_type", m->problem_type[0] ? json_string(m->problem_type) : json_null());
    json_object_set_new(o, "cased", json_boolean(!m->do_lower_case));
    json_object_set_new(o, "strip_accents", m->strip_accents < 0 ? json_null() : json_boolean(m->strip_accents));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s) abort(); /* out of memory, or invalid UTF-8 of our own making */
    char *r = xstrdup(s);
    free(s);
    return r;
}

static const kst_tensor *find(const kst_tensor *t, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (t[i].name && !strcmp(t[i].name, name)) return &t[i];
    return NULL;
}

void khf_export_head_of(int model_type, const char *extra_json, const kst_tensor *t, int n, khf_export_head *s)
{
    memset(s, 0, sizeof *s);
    int albert = model_type == KMODEL_ALBERT;
    json_t *ex = extra_json ? json_loads(extra_json, 0, NULL) : NULL;
    const char *arch = json_string_value(json_object_get(ex, "architecture"));
    const int electra = model_type == KMODEL_ELECTRA;
    const kst_tensor *cb = find(t, n, electra ? "classifier.out_proj.bias" : "classifier.bias");
    int sent = find(t, n, albert ? "sop_classifier.classifier.weight" : "cls.seq_relationship.weight") != NULL;
    int mlm = find(t, n, albert ? "predictions.bias" : "cls.predictions.bias") != NULL;
    if (model_type == KMODEL_DISTILBERT && !cb) { /* DistilBertForMaskedLM or DistilBertModel */
        s->head.kind = find(t, n, "vocab_projector.bias") ? KEXPORT_HEAD_PRETRAINING : KEXPORT_HEAD_BASE;
    } else if (cb && cb->ndim == 1 && cb->shape[0] >= 1) { /* DistilBertForSequenceClassification too */
        s->head.kind = KEXPORT_HEAD_CLASSIFICATION;
        s->head.num_labels = (int)cb->shape[0];
        json_t *ls = json_object_get(ex, "id2label");
        if (json_is_array(ls) && (int)json_array_size(ls) == s->head.num_labels) {
            s->labels = xcalloc((size_t)s->head.num_labels, sizeof *s->labels);
            for (int i = 0; i < s->head.num_labels; i++) {
                const char *v = json_string_value(json_array_get(ls, (size_t)i));
                char def[32];
                snprintf(def, sizeof def, "LABEL_%d", i);
                s->labels[i] = xstrdup(v ? v : def);
            }
            s->head.labels = (const char *const *)s->labels;
        }
        const char *pt = json_string_value(json_object_get(ex, "problem_type"));
        if (pt && ((s->head.num_labels == 1) == !strcmp(pt, "regression"))) {
            snprintf(s->problem_type, sizeof s->problem_type, "%s", pt);
            s->head.problem_type = s->problem_type;
        }
    } else if (electra) { /* one tower: the discriminator, the generator or the encoder alone */
        s->head.kind = find(t, n, "discriminator_predictions.dense_prediction.bias") ? KEXPORT_HEAD_PRETRAINING
                       : find(t, n, "generator_lm_head.bias")                        ? KEXPORT_HEAD_MASKED_LM
                                                                                     : KEXPORT_HEAD_BASE;
    } else if (mlm && (sent || find(t, n, albert ? "albert.pooler.weight" : "bert.pooler.dense.weight") || !arch ||
                       strstr(arch, "ForPreTraining"))) {
        s->head.kind = KEXPORT_HEAD_PRETRAINING;
    } else if (mlm) {
        s->head.kind = KEXPORT_HEAD_MASKED_LM;
    } else {
        s->head.kind = KEXPORT_HEAD_BASE;
    }
    json_decref(ex);
}

void khf_export_head_free(khf_export_head *s)
{
    if (!s) return;
    for (int i = 0; s->labels && i < s->head.num_labels; i++) free(s->labels[i]);
    free(s->labels);
    memset(s, 0, sizeof *s);
}
