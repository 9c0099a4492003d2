/* export.c: the Hugging Face folder writer (export.h; docs/train.md,
 * "Export"), for the pretraining, sequence-classification, masked-LM and
 * base classes (kexport_head). Order of work: vocabulary checks (special
 * tokens, size), the layout of the config and head (kexport_layout2; the
 * one table of tensor names, which trainer/hfimport.c reads too) matched
 * against the given tensors
 * (every required one present, F32, right shape; nothing unknown; tied
 * decoders equal to what they are tied to), then the files into a temporary
 * folder, then one rename. Tensors are written in layout order, whatever
 * the order given. */
#define _POSIX_C_SOURCE 200809L
#include "trainer/export.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "trainer/checkpoint.h"
#include "trainer/model.h"
#include "trainer/registry.h"
#include "util/util.h"


/* ---- layout ---------------------------------------------------------------- */

static const kexport_head PRETRAINING = {KEXPORT_HEAD_PRETRAINING, 0, NULL, NULL};

/* 0 when head is usable; else a message in err */
static int head_check(const kexport_head *h, char *err, size_t errlen)
{
    if (h->kind < KEXPORT_HEAD_PRETRAINING || h->kind > KEXPORT_HEAD_BASE) {
        kseterr(err, errlen, "unknown head kind %d", h->kind);
        return -1;
    }
    if (h->kind != KEXPORT_HEAD_CLASSIFICATION) return 0;
    if (h->num_labels < 1 || h->num_labels > 65536) {
        kseterr(err, errlen, "num_labels must be 1 (regression) to 65536, got %d", h->num_labels);
        return -1;
    }
    if (h->problem_type &&
        !(h->num_labels == 1 ? !strcmp(h->problem_type, "regression")
                             : !strcmp(h->problem_type, "single_label_classification"))) {
        kseterr(err, errlen, "problem_type '%s' with %d labels: kiln's classifier is %s", h->problem_type,
                h->num_labels, h->num_labels == 1 ? "regression (1 label)" : "single_label_classification");
        return -1;
    }
    if (h->labels)
        for (int i = 0; i < h->num_labels; i++) {
            if (!h->labels[i]) {
                kseterr(err, errlen, "label %d has no name", i);
                return -1;
            }
            for (int k = 0; k < i; k++)
                if (!strcmp(h->labels[k], h->labels[i])) {
                    kseterr(err, errlen, "label name '%s' given twice (ids %d and %d)", h->labels[i], k, i);
                    return -1;
                }
        }
    return 0;
}

const char *kexport_architecture(int type, const kexport_head *h)
{
    static const char *const names[3][4] = {
        {"BertForPreTraining", "BertForSequenceClassification", "BertForMaskedLM", "BertModel"},
        {"AlbertForPreTraining", "AlbertForSequenceClassification", "AlbertForMaskedLM", "AlbertModel"},
        {"ElectraForPreTraining", "ElectraForSequenceClassification", "ElectraForMaskedLM", "ElectraModel"}};
    int kind = h ? h->kind : KEXPORT_HEAD_PRETRAINING;
    if (type == KMODEL_GPT2) return kind == KEXPORT_HEAD_PRETRAINING ? "GPT2LMHeadModel" : NULL;
    if (type == KMODEL_DISTILBERT) /* its pretraining class is the masked LM */
        return kind == KEXPORT_HEAD_PRETRAINING || kind == KEXPORT_HEAD_MASKED_LM ? "DistilBertForMaskedLM"
               : kind == KEXPORT_HEAD_BASE                                     ? "DistilBertModel"
               : kind == KEXPORT_HEAD_CLASSIFICATION ? "DistilBertForSequenceClassification"
                                                     : NULL;
    if ((type != KMODEL_BERT && type != KMODEL_ALBERT && type != KMODEL_ELECTRA) || kind < 0 ||
        kind > KEXPORT_HEAD_BASE)
        return NULL;
    return names[type == KMODEL_ELECTRA ? 2 : type == KMODEL_ALBERT][kind];
}

kexport_entry *kexport_layout(const kmodel_config *m, int V, int *n)
{
    return kexport_layout2(m, V, NULL, n);
}

/* role of a registry tensor in the export of head kind (r_* below), by its name */
static int role_of(const char *name, int r_pool, int r_mlm, int r_sent, int r_cls)
{
    if (strstr(name, ".pooler.")) return r_pool;
    if (!strncmp(name, "predictions.", 12) || !strncmp(name, "cls.predictions.", 16) ||
        !strncmp(name, "generator_predictions.", 22) || !strncmp(name, "generator_lm_head.", 18) ||
        !strncmp(name, "vocab_transform.", 16) || !strncmp(name, "vocab_layer_norm.", 17) ||
        !strncmp(name, "vocab_projector.", 16))
        return r_mlm;
    if (!strncmp(name, "sop_classifier.", 15) || !strncmp(name, "cls.seq_relationship.", 21) ||
        !strncmp(name, "discriminator_predictions.", 26))
        return r_sent;
    if (!strncmp(name, "classifier.", 11) || !strncmp(name, "pre_classifier.", 15)) return r_cls; /* + DistilBERT's */
    return KEXPORT_REQUIRED;
}

/* x = name with t's shape and the role */
static void entry(kexport_entry *x, const char *name, const ktensor *t, int role)
{
    snprintf(x->name, sizeof x->name, "%.127s", name);
    x->ndim = t->ndim;
    x->shape[0] = t->shape[0];
    x->shape[1] = t->ndim > 1 ? t->shape[1] : 0;
    x->role = role;
    x->transpose = t->transpose;
}

/* The layout is the model's parameter registry (kmodel_registry: the one
 * table of names and shapes) for the heads of the class, each tensor with
 * its role, plus the tied decoder copies Hugging Face's state_dict holds
 * (kregistry_aliases_of). */
kexport_entry *kexport_layout2(const kmodel_config *m, int V, const kexport_head *head, int *n)
{
    *n = 0;
    const kexport_head *h = head ? head : &PRETRAINING;
    char e1[256];
    if (V <= 0 ||
        (m->type != KMODEL_ALBERT && m->type != KMODEL_BERT && m->type != KMODEL_ELECTRA && m->type != KMODEL_GPT2 &&
         m->type != KMODEL_DISTILBERT) ||
        head_check(h, e1, sizeof e1) || (m->type == KMODEL_GPT2 && h->kind != KEXPORT_HEAD_PRETRAINING))
        return NULL;
    const int electra = m->type == KMODEL_ELECTRA;
    /* role of the pooler, MLM head, sentence head, classifier; -1: not in the layout */
    int r_pool, r_mlm = -1, r_sent = -1, r_cls = -1;
    kmodel_spec s = {.max_B = 1, .L = 1, .classifier_dropout = -1};
    switch (h->kind) {
    case KEXPORT_HEAD_PRETRAINING: /* ELECTRA: the discriminator (ElectraForPreTraining) */
        r_pool = KEXPORT_OPTIONAL, r_mlm = KEXPORT_REQUIRED, r_sent = KEXPORT_OPTIONAL;
        s.heads = KHEAD_MLM | KHEAD_SENTENCE;
        if (electra) r_mlm = -1, r_sent = KEXPORT_REQUIRED, s.heads = KHEAD_TOKEN;
        break;
    case KEXPORT_HEAD_CLASSIFICATION:
        r_pool = KEXPORT_REQUIRED, r_cls = KEXPORT_REQUIRED;
        s.heads = KHEAD_CLASSIFY, s.num_labels = h->num_labels;
        break;
    case KEXPORT_HEAD_MASKED_LM:
        r_pool = -1, r_mlm = KEXPORT_REQUIRED;
        s.heads = KHEAD_MLM;
        break;
    default: /* the base model: its pooler when given (the sentence head's pooler, without the head) */
        r_pool = KEXPORT_OPTIONAL;
        s.heads = electra ? 0 : KHEAD_SENTENCE; /* ElectraModel has no pooler */
        break;
    }
    if (electra && h->kind == KEXPORT_HEAD_CLASSIFICATION) r_pool = -1; /* classifier.dense is the "pooler" */
    if (m->type == KMODEL_GPT2) s.heads = KHEAD_LM, s.pre_ln = 1, s.causal = 1; /* GPT2LMHeadModel */
    if (m->type == KMODEL_DISTILBERT) /* DistilBertForMaskedLM / DistilBertModel: no pooler; ...ForSequenceClassification */
        s.heads &= KHEAD_MLM | KHEAD_CLASSIFY; /* has pre_classifier (role r_cls) in its place */
    kmodel_config c = *m;
    c.vocab_size = V;
    if (c.type == KMODEL_BERT || c.type == KMODEL_DISTILBERT)
        c.num_hidden_groups = c.num_hidden_layers, c.embedding_size = c.hidden_size;
    if (c.pad_token_id >= V) c.pad_token_id = 0; /* the vocabulary check names a misplaced [PAD] */
    int nt = 0;
    ktensor *t = kmodel_registry(&c, &s, &nt, e1, sizeof e1);
    if (!t) return NULL;
    kalias al[KREGISTRY_MAX_ALIASES];
    int na = kregistry_aliases_of(c.type, s.heads, 1, al, KREGISTRY_MAX_ALIASES);
    kexport_entry *e = xcalloc((size_t)(nt + na) + 1, sizeof *e);
    int k = 0;
    for (int i = 0; i < nt; i++) {
        int role = role_of(t[i].name, r_pool, r_mlm, r_sent, r_cls);
        if (role >= 0) entry(&e[k++], t[i].name, &t[i], role);
    }
    for (int j = 0; j < na && j < KREGISTRY_MAX_ALIASES; j++) {
        int ti = ktensor_find(t, nt, al[j].target);
        if (ti >= 0) entry(&e[k++], al[j].name, &t[ti], KEXPORT_TIED);
    }
    free(t);
    *n = k;
    return e;
}

const char *kexport_tied_to(const char *name)
{
    /* the aliases the registry knows, for every model type (static: the
     * returned names must outlive the call; written once, the same bytes
     * every time) */
    static const int types[5] = {KMODEL_BERT, KMODEL_ALBERT, KMODEL_ELECTRA, KMODEL_GPT2, KMODEL_DISTILBERT};
    static _Thread_local kalias al[5][KREGISTRY_MAX_ALIASES];
    for (int ty = 0; ty < 5; ty++) {
        int na = kregistry_aliases_of(types[ty], types[ty] == KMODEL_GPT2 ? KHEAD_LM : KHEAD_MLM, 1, al[ty],
                                      KREGISTRY_MAX_ALIASES);
        for (int i = 0; i < na && i < KREGISTRY_MAX_ALIASES; i++)
            if (!strcmp(al[ty][i].name, name)) return al[ty][i].target;
    }
    return NULL;
}

/* ---- vocabulary ------------------------------------------------------------ */

enum { SP_PAD, SP_UNK, SP_CLS, SP_SEP, SP_MASK, N_SP };
static const char *const SPECIAL[N_SP] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

/* Lines as BertTokenizer's load_vocab counts them (a final line without '\n'
 * counts; the empty string after a final '\n' does not), and the first id
 * of each special token (-1 if absent). */
static int64_t scan_vocab(const char *v, size_t len, int64_t ids[N_SP])
{
    for (int k = 0; k < N_SP; k++) ids[k] = -1;
    int64_t line = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && v[i] != '\n') continue;
        if (i == len && start == len) break;
        size_t n = i - start;
        for (int k = 0; k < N_SP; k++)
            if (ids[k] < 0 && n == strlen(SPECIAL[k]) && !memcmp(v + start, SPECIAL[k], n)) ids[k] = line;
        line++;
        start = i + 1;
    }
    return line;
}

int kexport_vocab_check(const kmodel_config *m, const char *vocab_txt, size_t vocab_len, char *err, size_t errlen)
{
    if (!m || !vocab_txt) {
        kseterr(err, errlen, "kexport_vocab_check: bad arguments");
        return EX_SOFTWARE;
    }
    int64_t sp[N_SP];
    int64_t V = scan_vocab(vocab_txt, vocab_len, sp);
    for (int k = 0; k < N_SP; k++)
        if (sp[k] < 0) {
            kseterr(err, errlen, "the vocabulary has no %s line: BertTokenizer needs [PAD] [UNK] [CLS] [SEP] [MASK]",
                   SPECIAL[k]);
            return EX_DATAERR;
        }
    if (m->vocab_size && m->vocab_size < V) {
        kseterr(err, errlen, "model.vocab_size is %d but the vocabulary has %lld lines", m->vocab_size, (long long)V);
        return EX_DATAERR;
    }
    if (V > (int64_t)1 << 30) {
        kseterr(err, errlen, "the vocabulary has %lld lines, more than kiln's limit", (long long)V);
        return EX_DATAERR;
    }
    if (sp[SP_PAD] != m->pad_token_id) {
        kseterr(err, errlen, "model.pad_token_id is %d but [PAD] is line %lld of the vocabulary (ids count from 0)",
               m->pad_token_id, (long long)sp[SP_PAD]);
        return EX_DATAERR;
    }
    return 0;
}

/* ---- files ----------------------------------------------------------------- */

static const char *act_name(int a) { return a == KACT_GELU ? "gelu" : "gelu_new"; }

static void put_num(kbuf *b, const char *key, double v)
{
    char s[32];
    ktrain_fmt_double(s, v);
    kbuf_printf(b, "  \"%s\": %s,\n", key, s);
}

/* A classification head's "id2label" / "label2id" (transformers derives
 * num_labels from id2label; both maps written) and "problem_type". */
static void put_labels(kbuf *b, const kexport_head *h)
{
    for (int pass = 0; pass < 2; pass++) {
        kbuf_puts(b, pass ? "  \"label2id\": {" : "  \"id2label\": {");
        for (int i = 0; i < h->num_labels; i++) {
            char def[32];
            snprintf(def, sizeof def, "LABEL_%d", i);
            const char *name = h->labels ? h->labels[i] : def;
            kbuf_puts(b, i ? ",\n    " : "\n    ");
            if (pass) {
                kbuf_json_str(b, name, strlen(name));
                kbuf_printf(b, ": %d", i);
            } else {
                kbuf_printf(b, "\"%d\": ", i);
                kbuf_json_str(b, name, strlen(name));
            }
        }
        kbuf_puts(b, "\n  },\n");
    }
    kbuf_printf(b, "  \"problem_type\": \"%s\",\n",
                h->num_labels == 1 ? "regression" : "single_label_classification");
}

/* DistilBertConfig as transformers writes it (DistilBertForMaskedLM /
 * DistilBertModel / DistilBertForSequenceClassification, whose dropout
 * before the classifier is seq_classif_dropout) */
static char *distilbert_config_json(const kmodel_config *m, const kexport_head *h, int64_t V, const int64_t sp[N_SP])
{
    kbuf b = {0};
    const char *arch = kexport_architecture(m->type, h);
    kbuf_printf(&b, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"distilbert\",\n", arch ? arch : "");
    if (h->kind == KEXPORT_HEAD_CLASSIFICATION) put_labels(&b, h);
    kbuf_printf(&b, "  \"vocab_size\": %lld,\n  \"dim\": %d,\n  \"n_layers\": %d,\n  \"n_heads\": %d,\n"
                    "  \"hidden_dim\": %d,\n  \"activation\": \"%s\",\n",
                (long long)V, m->hidden_size, m->num_hidden_layers, m->num_attention_heads, m->intermediate_size,
                act_name(m->hidden_act));
    put_num(&b, "dropout", m->hidden_dropout_prob);
    put_num(&b, "attention_dropout", m->attention_probs_dropout_prob);
    put_num(&b, "qa_dropout", m->qa_dropout);
    put_num(&b, "seq_classif_dropout", m->seq_classif_dropout);
    kbuf_printf(&b, "  \"max_position_embeddings\": %d,\n  \"sinusoidal_pos_embds\": false,\n",
                m->max_position_embeddings);
    put_num(&b, "initializer_range", m->initializer_range);
    kbuf_printf(&b, "  \"pad_token_id\": %lld,\n  \"tie_weights_\": true,\n", (long long)sp[SP_PAD]);
    kbuf_printf(&b, "  \"torch_dtype\": \"float32\",\n  \"transformers_version\": \"%s\"\n}\n",
                KEXPORT_TRANSFORMERS_VERSION);
    return b.data;
}

static char *config_json(const kmodel_config *m, const kexport_head *h, int64_t V, const int64_t sp[N_SP])
{
    if (m->type == KMODEL_DISTILBERT) return distilbert_config_json(m, h, V, sp);
    kbuf b = {0};
    int albert = m->type == KMODEL_ALBERT, electra = m->type == KMODEL_ELECTRA;
    const char *arch = kexport_architecture(m->type, h);
    kbuf_printf(&b, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n", arch ? arch : "",
                albert ? "albert" : electra ? "electra" : "bert");
    if (h->kind == KEXPORT_HEAD_CLASSIFICATION) put_labels(&b, h);
    kbuf_printf(&b, "  \"vocab_size\": %lld,\n", (long long)V);
    if (albert || electra) kbuf_printf(&b, "  \"embedding_size\": %d,\n", m->embedding_size);
    kbuf_printf(&b, "  \"hidden_size\": %d,\n  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n"
                    "  \"intermediate_size\": %d,\n",
                m->hidden_size, m->num_hidden_layers, m->num_attention_heads, m->intermediate_size);
    if (albert) kbuf_printf(&b, "  \"num_hidden_groups\": %d,\n  \"inner_group_num\": 1,\n", m->num_hidden_groups);
    kbuf_printf(&b, "  \"hidden_act\": \"%s\",\n", act_name(m->hidden_act));
    put_num(&b, "hidden_dropout_prob", m->hidden_dropout_prob);
    put_num(&b, "attention_probs_dropout_prob", m->attention_probs_dropout_prob);
    if (albert) kbuf_puts(&b, "  \"classifier_dropout_prob\": 0.1,\n");
    else kbuf_puts(&b, "  \"classifier_dropout\": null,\n");
    if (electra) /* ElectraConfig's sequence-summary fields (read by heads kiln does not write) */
        kbuf_puts(&b, "  \"summary_type\": \"first\",\n  \"summary_use_proj\": true,\n"
                      "  \"summary_activation\": \"gelu\",\n  \"summary_last_dropout\": 0.1,\n");
    kbuf_printf(&b, "  \"max_position_embeddings\": %d,\n  \"type_vocab_size\": %d,\n", m->max_position_embeddings,
                m->type_vocab_size);
    put_num(&b, "initializer_range", m->initializer_range);
    put_num(&b, "layer_norm_eps", m->layer_norm_eps);
    kbuf_puts(&b, "  \"position_embedding_type\": \"absolute\",\n");
    kbuf_printf(&b, "  \"pad_token_id\": %lld,\n", (long long)sp[SP_PAD]);
    if (albert)
        kbuf_printf(&b, "  \"bos_token_id\": %lld,\n  \"eos_token_id\": %lld,\n", (long long)sp[SP_CLS],
                    (long long)sp[SP_SEP]);
    else
        kbuf_puts(&b, "  \"use_cache\": true,\n");
    kbuf_printf(&b, "  \"torch_dtype\": \"float32\",\n  \"transformers_version\": \"%s\"\n}\n",
                KEXPORT_TRANSFORMERS_VERSION);
    return b.data;
}

static char *special_tokens_json(int indent_first)
{
    kbuf b = {0};
    static const char *const keys[N_SP] = {"pad_token", "unk_token", "cls_token", "sep_token", "mask_token"};
    for (int k = 0; k < N_SP; k++)
        kbuf_printf(&b, "%s  \"%s\": \"%s\"", k || indent_first ? ",\n" : "", keys[k], SPECIAL[k]);
    return b.data;
}

char *kexport_tokenizer_config(int tok, int model_max_length)
{
    return kexport_tokenizer_config_of(KMODEL_BERT, tok, model_max_length);
}

char *kexport_tokenizer_config_of(int model_type, int tok, int model_max_length)
{
    kbuf b = {0};
    char *sp = special_tokens_json(1);
    const char *strip = (tok & KEXPORT_TOK_STRIP_ACCENTS)  ? "true"
                        : (tok & KEXPORT_TOK_KEEP_ACCENTS) ? "false"
                                                           : "null";
    kbuf_printf(&b, "{\n  \"tokenizer_class\": \"%s\",\n  \"do_lower_case\": %s,\n",
                model_type == KMODEL_DISTILBERT ? "DistilBertTokenizer" : "BertTokenizer",
                (tok & KEXPORT_TOK_LOWER) ? "true" : "false");
    if (model_max_length > 0) kbuf_printf(&b, "  \"model_max_length\": %d,\n", model_max_length);
    kbuf_printf(&b,
                "  \"tokenize_chinese_chars\": true,\n  \"strip_accents\": %s,\n"
                "  \"clean_up_tokenization_spaces\": true%s\n}\n",
                strip, sp);
    free(sp);
    return b.data;
}

char *kexport_special_tokens_map(void)
{
    char *inner = special_tokens_json(0);
    kbuf b = {0};
    kbuf_printf(&b, "{\n%s\n}\n", inner);
    free(inner);
    return b.data;
}

char *kexport_bpe_tokenizer_config(int has_eot, int model_max_length)
{
    kbuf b = {0};
    kbuf_puts(&b, "{\n  \"tokenizer_class\": \"GPT2Tokenizer\",\n  \"add_prefix_space\": false,\n");
    if (model_max_length > 0) kbuf_printf(&b, "  \"model_max_length\": %d,\n", model_max_length);
    if (has_eot)
        kbuf_puts(&b, "  \"bos_token\": \"<|endoftext|>\",\n  \"eos_token\": \"<|endoftext|>\",\n"
                      "  \"unk_token\": \"<|endoftext|>\",\n");
    kbuf_puts(&b, "  \"errors\": \"replace\"\n}\n");
    return b.data;
}

char *kexport_bpe_special_tokens_map(int has_eot)
{
    kbuf b = {0};
    kbuf_puts(&b, has_eot ? "{\n  \"bos_token\": \"<|endoftext|>\",\n  \"eos_token\": \"<|endoftext|>\",\n"
                            "  \"unk_token\": \"<|endoftext|>\"\n}\n"
                          : "{}\n");
    return b.data;
}

/* ---- the exporter ---------------------------------------------------------- */

/* Starts an export to dir: refuses an existing dir unless replace, makes its
 * parent and a fresh temporary sibling (*tmp: filled, then published with
 * kckpt_publish_dir onto *final), and *stp = TMP/model.safetensors. The four
 * strings are always set (owned by the caller: free; *tmp removed with
 * kckpt_remove_tree on failure). Returns 0 or EX_* with err. */
static int export_folder_begin(const char *dir, int replace, char **tmp, char **final, char **parent, char **stp,
                               char *err, size_t errlen)
{
    *tmp = kckpt_tmp_sibling(dir, "export", final, parent); /* .export-NAME.tmp: it may sit in a checkpoint folder */
    size_t pl = strlen(*tmp) + 32;
    *stp = xmalloc(pl);
    snprintf(*stp, pl, "%s/model.safetensors", *tmp);
    struct stat st;
    if (!replace && !lstat(*final, &st)) {
        kseterr(err, errlen, "%s: already exists", *final);
        return EX_CANTCREAT;
    }
    int rc = kckpt_mkdirs(*parent, err, errlen);
    if (rc) return rc;
    kckpt_remove_tree(*tmp);
    if (mkdir(*tmp, 0755)) {
        kseterr(err, errlen, "%s: cannot create: %s", *tmp, strerror(errno));
        return EX_CANTCREAT;
    }
    return 0;
}

static const kst_tensor *find_param(const kst_tensor *p, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (p[i].name && !strcmp(p[i].name, name)) return &p[i];
    return NULL;
}

/* Matches params against the layout; fills out[] (layout order, written
 * tensors only) and returns their count, or -1 with msg holding the problems. */
static int match(const kexport_entry *lay, int nl, const kst_tensor *params, int n, kst_tensor *out, kbuf *msg)
{
    int problems = 0, k = 0;
#define PROBLEM(...)                                                   \
    do {                                                               \
        if (problems++ < 5) {                                          \
            kbuf_puts(msg, problems > 1 ? "; " : "");                  \
            kbuf_printf(msg, __VA_ARGS__);                             \
        }                                                              \
    } while (0)
    for (int i = 0; i < n; i++) {
        int found = 0;
        if (!params[i].name) { PROBLEM("tensor %d has no name", i); continue; }
        if (!strncmp(params[i].name, "distill.", 8)) continue; /* training-only (TinyBERT's projections) */
        for (int j = 0; j < nl && !found; j++) found = !strcmp(lay[j].name, params[i].name);
        if (!found) PROBLEM("'%s' is not a tensor of this model", params[i].name);
        for (int j = 0; j < i; j++)
            if (params[j].name && !strcmp(params[j].name, params[i].name)) PROBLEM("'%s' given twice", params[i].name);
    }
    for (int j = 0; j < nl; j++) {
        const kexport_entry *e = &lay[j];
        const kst_tensor *t = find_param(params, n, e->name);
        if (!t) {
            if (e->role == KEXPORT_REQUIRED) PROBLEM("'%s' is missing", e->name);
            continue;
        }
        int ok = t->dtype && !strcmp(t->dtype, "F32") && t->ndim == e->ndim && t->shape[0] == e->shape[0] &&
                 (e->ndim < 2 || t->shape[1] == e->shape[1]);
        if (!ok) {
            if (e->ndim == 2)
                PROBLEM("'%s' must be F32 [%lld, %lld]", e->name, (long long)e->shape[0], (long long)e->shape[1]);
            else
                PROBLEM("'%s' must be F32 [%lld]", e->name, (long long)e->shape[0]);
            continue;
        }
        if (t->nbytes != (size_t)(e->shape[0] * (e->ndim == 2 ? e->shape[1] : 1) * 4) || (t->nbytes && !t->data)) {
            PROBLEM("'%s': nbytes or data do not fit its shape", e->name);
            continue;
        }
        if (e->role == KEXPORT_TIED) {
            const kst_tensor *to = find_param(params, n, kexport_tied_to(e->name));
            if (to && to->nbytes == t->nbytes && to->data && memcmp(to->data, t->data, t->nbytes))
                PROBLEM("'%s' differs from '%s', to which Hugging Face ties it", e->name, kexport_tied_to(e->name));
            continue;
        }
        out[k++] = *t;
    }
    if (problems > 5) kbuf_printf(msg, "; and %d more", problems - 5);
#undef PROBLEM
    return problems ? -1 : k;
}

static int write_text(const char *dir, const char *name, const char *text, size_t len, char *err, size_t errlen)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    int rc = kst_write_bytes(p, text, len, err, errlen);
    free(p);
    return rc;
}

int kexport_hf(const char *dir, const kmodel_config *m, const kst_tensor *params, int n,
               const char *vocab_txt, size_t vocab_len, int do_lower_case, int replace,
               char *err, size_t errlen)
{
    return kexport_hf2(dir, m, NULL, params, n, vocab_txt, vocab_len, do_lower_case, replace, err, errlen);
}

int kexport_hf2(const char *dir, const kmodel_config *m, const kexport_head *head, const kst_tensor *params,
                int n, const char *vocab_txt, size_t vocab_len, int do_lower_case, int replace, char *err,
                size_t errlen)
{
    if (errlen) err[0] = '\0';
    if (!dir || !*dir || !m || n < 0 || (n && !params) || !vocab_txt) {
        kseterr(err, errlen, "kexport_hf: bad arguments");
        return EX_SOFTWARE;
    }
    const kexport_head *h = head ? head : &PRETRAINING;
    char herr[256];
    if (head_check(h, herr, sizeof herr)) {
        kseterr(err, errlen, "kexport_hf: bad head: %s", herr);
        return EX_SOFTWARE;
    }
    /* vocabulary */
    int rc = kexport_vocab_check(m, vocab_txt, vocab_len, err, errlen);
    if (rc) return rc;
    int64_t sp[N_SP];
    int64_t V = scan_vocab(vocab_txt, vocab_len, sp);
    if (m->vocab_size) V = m->vocab_size; /* rows past the vocabulary's lines: padding the tokenizer never emits */
    /* tensors */
    int nl;
    kexport_entry *lay = kexport_layout2(m, (int)V, h, &nl);
    if (!lay) {
        kseterr(err, errlen, "kexport_hf: the model config has a dimension <= 0 or an unknown type");
        return EX_SOFTWARE;
    }
    kst_tensor *out = xcalloc((size_t)nl, sizeof *out);
    kbuf msg = {0};
    int nout = match(lay, nl, params, n, out, &msg);
    free(lay);
    if (nout < 0) {
        kseterr(err, errlen, "the tensors do not fit %s: %s", kexport_architecture(m->type, h), msg.data);
        kbuf_free(&msg);
        free(out);
        return EX_DATAERR;
    }
    kbuf_free(&msg);
    if (h->kind == KEXPORT_HEAD_BASE) { /* a base model's own file: no "bert." / "albert." / "electra." prefix */
        const char *pre = m->type == KMODEL_ALBERT      ? "albert."
                          : m->type == KMODEL_ELECTRA    ? "electra."
                          : m->type == KMODEL_DISTILBERT ? "distilbert."
                                                         : "bert.";
        size_t pl = strlen(pre);
        for (int i = 0; i < nout; i++)
            if (!strncmp(out[i].name, pre, pl)) out[i].name += pl;
    }

    /* the folder */
    char *final, *parent, *tmp, *stp;
    char *cfg = NULL, *tok = NULL, *spm = NULL;
    if ((rc = export_folder_begin(dir, replace, &tmp, &final, &parent, &stp, err, errlen)) ||
        (rc = kst_write(stp, out, nout, NULL, 0, err, errlen)))
        goto done;
    cfg = config_json(m, h, V, sp);
    tok = kexport_tokenizer_config_of(m->type, do_lower_case, m->max_position_embeddings);
    spm = kexport_special_tokens_map();
    if ((rc = write_text(tmp, "config.json", cfg, strlen(cfg), err, errlen)) ||
        (rc = write_text(tmp, "vocab.txt", vocab_txt, vocab_len, err, errlen)) ||
        (rc = write_text(tmp, "tokenizer_config.json", tok, strlen(tok), err, errlen)) ||
        (rc = write_text(tmp, "special_tokens_map.json", spm, strlen(spm), err, errlen)) ||
        (rc = kst_fsync_dir(tmp, err, errlen)))
        goto done;
    rc = kckpt_publish_dir(tmp, final, replace, err, errlen);
done:
    if (rc) kckpt_remove_tree(tmp);
    free(cfg);
    free(tok);
    free(spm);
    free(stp);
    free(tmp);
    free(parent);
    free(final);
    free(out);
    return rc;
}

/* ---- GPT-2 ------------------------------------------------------------------ */

/* GPT2Config as transformers writes it (GPT2LMHeadModel) */
static char *gpt2_config_json(const kmodel_config *m, int64_t V, int64_t eot)
{
    kbuf b = {0};
    char id[32];
    if (eot >= 0) snprintf(id, sizeof id, "%lld", (long long)eot);
    else snprintf(id, sizeof id, "null");
    kbuf_printf(&b, "{\n  \"architectures\": [\"GPT2LMHeadModel\"],\n  \"model_type\": \"gpt2\",\n");
    kbuf_printf(&b, "  \"activation_function\": \"%s\",\n", act_name(m->hidden_act));
    put_num(&b, "attn_pdrop", m->attention_probs_dropout_prob);
    kbuf_printf(&b, "  \"bos_token_id\": %s,\n", id);
    put_num(&b, "embd_pdrop", m->embd_dropout_prob);
    kbuf_printf(&b, "  \"eos_token_id\": %s,\n", id);
    put_num(&b, "initializer_range", m->initializer_range);
    put_num(&b, "layer_norm_epsilon", m->layer_norm_eps);
    kbuf_printf(&b, "  \"n_ctx\": %d,\n  \"n_embd\": %d,\n  \"n_head\": %d,\n", m->max_position_embeddings,
                m->hidden_size, m->num_attention_heads);
    if (m->intermediate_size == 4 * m->hidden_size) kbuf_puts(&b, "  \"n_inner\": null,\n");
    else kbuf_printf(&b, "  \"n_inner\": %d,\n", m->intermediate_size);
    kbuf_printf(&b, "  \"n_layer\": %d,\n  \"n_positions\": %d,\n", m->num_hidden_layers,
                m->max_position_embeddings);
    kbuf_puts(&b, "  \"reorder_and_upcast_attn\": false,\n");
    put_num(&b, "resid_pdrop", m->hidden_dropout_prob);
    kbuf_puts(&b, "  \"scale_attn_by_inverse_layer_idx\": false,\n  \"scale_attn_weights\": true,\n"
                  "  \"summary_activation\": null,\n  \"summary_first_dropout\": 0.1,\n"
                  "  \"summary_proj_to_labels\": true,\n  \"summary_type\": \"cls_index\",\n"
                  "  \"summary_use_proj\": true,\n  \"use_cache\": true,\n");
    kbuf_printf(&b, "  \"vocab_size\": %lld,\n", (long long)V);
    kbuf_printf(&b, "  \"torch_dtype\": \"float32\",\n  \"transformers_version\": \"%s\"\n}\n",
                KEXPORT_TRANSFORMERS_VERSION);
    return b.data;
}

int kexport_gpt2(const char *dir, const kmodel_config *m, const kst_tensor *params, int n, int64_t eot_id,
                 const char *vocab_json, size_t vlen, const char *merges, size_t mlen, int replace, char *err,
                 size_t errlen)
{
    if (errlen) err[0] = '\0';
    if (!dir || !*dir || !m || m->type != KMODEL_GPT2 || n < 0 || (n && !params) || (!vocab_json != !merges) ||
        (vocab_json && (!vlen || !mlen))) {
        kseterr(err, errlen, "kexport_gpt2: bad arguments");
        return EX_SOFTWARE;
    }
    const int64_t V = m->vocab_size;
    if (eot_id >= V) {
        kseterr(err, errlen, "<|endoftext|> id %lld is not below vocab_size %lld", (long long)eot_id, (long long)V);
        return EX_DATAERR;
    }
    int nl;
    kexport_entry *lay = V > 0 ? kexport_layout2(m, (int)V, NULL, &nl) : NULL;
    if (!lay) {
        kseterr(err, errlen, "kexport_gpt2: the model config has a dimension <= 0");
        return EX_SOFTWARE;
    }
    kst_tensor *out = xcalloc((size_t)nl, sizeof *out);
    kbuf msg = {0};
    int nout = match(lay, nl, params, n, out, &msg), rc = 0;
    if (nout < 0) {
        kseterr(err, errlen, "the tensors do not fit GPT2LMHeadModel: %s", msg.data);
        kbuf_free(&msg);
        free(out);
        free(lay);
        return EX_DATAERR;
    }
    kbuf_free(&msg);
    /* Conv1D weights: [out, in] -> [in, out] (out[] is in layout order, the tied entry left out) */
    float **tr = xcalloc((size_t)nout + 1, sizeof *tr);
    for (int i = 0, j = 0; i < nout; i++, j++) {
        while (j < nl && strcmp(lay[j].name, out[i].name)) j++;
        if (j == nl || !lay[j].transpose) continue;
        const int64_t r = out[i].shape[0], c = out[i].shape[1];
        const float *src = out[i].data;
        float *d = tr[i] = xmalloc((size_t)(r * c) * sizeof(float));
        for (int64_t a = 0; a < r; a++)
            for (int64_t k = 0; k < c; k++) d[k * r + a] = src[a * c + k];
        out[i].data = d;
        out[i].shape[0] = c;
        out[i].shape[1] = r;
    }
    free(lay);

    char *final, *parent, *tmp, *stp, *cfg = NULL, *tok = NULL, *spm = NULL;
    if ((rc = export_folder_begin(dir, replace, &tmp, &final, &parent, &stp, err, errlen)) ||
        (rc = kst_write(stp, out, nout, NULL, 0, err, errlen)))
        goto done;
    cfg = gpt2_config_json(m, V, eot_id);
    if ((rc = write_text(tmp, "config.json", cfg, strlen(cfg), err, errlen))) goto done;
    if (vocab_json) {
        tok = kexport_bpe_tokenizer_config(eot_id >= 0, m->max_position_embeddings);
        spm = kexport_bpe_special_tokens_map(eot_id >= 0);
        if ((rc = write_text(tmp, "vocab.json", vocab_json, vlen, err, errlen)) ||
            (rc = write_text(tmp, "merges.txt", merges, mlen, err, errlen)) ||
            (rc = write_text(tmp, "tokenizer_config.json", tok, strlen(tok), err, errlen)) ||
            (rc = write_text(tmp, "special_tokens_map.json", spm, strlen(spm), err, errlen)))
            goto done;
    }
    if ((rc = kst_fsync_dir(tmp, err, errlen))) goto done;
    rc = kckpt_publish_dir(tmp, final, replace, err, errlen);
done:
    if (rc) kckpt_remove_tree(tmp);
    for (int i = 0; i < nout; i++) free(tr[i]);
    free(tr);
    free(cfg);
    free(tok);
    free(spm);
    free(stp);
    free(tmp);
    free(parent);
    free(final);
    free(out);
    return rc;
}
