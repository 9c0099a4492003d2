/* trainer/config.h: the run configuration (docs/train.md, schemas/run-config.schema.json)
 * as C structs, and its JSON reader. Parsing lives in trainer/config.c; the
 * structs are plain values (no pointers to free) so they can be copied. */
#ifndef KILN_TRAINER_CONFIG_H
#define KILN_TRAINER_CONFIG_H

#include <stddef.h>
#include <stdint.h>

enum { KMODEL_BERT = 1, KMODEL_ALBERT = 2, KMODEL_ELECTRA = 3, KMODEL_GPT2 = 4, KMODEL_DISTILBERT = 5 };
enum { KACT_GELU = 1 /* erf */, KACT_GELU_NEW = 2 /* tanh approximation */ };
enum { KOPT_ADAMW = 1, KOPT_LAMB = 2 };
enum { KSCHED_LINEAR = 1, KSCHED_COSINE = 2, KSCHED_CONSTANT = 3 };
/* precision: auto (bf16 where the CPU has bf16 dot products, else fp32), fp32, bf16 */
enum { KPRECISION_AUTO = 0, KPRECISION_FP32 = 1, KPRECISION_BF16 = 2 };

typedef struct kmodel_config {
    int type;                     /* KMODEL_* */
    int vocab_size;               /* V */
    int embedding_size;           /* E (= H for BERT) */
    int hidden_size;              /* H */
    int num_hidden_layers;        /* number of layer applications */
    int num_attention_heads;      /* NH, H % NH == 0 */
    int intermediate_size;        /* I (FFN width) */
    int max_position_embeddings;  /* Pmax >= seq_len */
    int type_vocab_size;          /* 2 */
    int hidden_act;               /* KACT_* */
    double layer_norm_eps;        /* 1e-12 default */
    int num_hidden_groups;        /* ALBERT weight groups (1 = all layers share); BERT: = layers */
    double hidden_dropout_prob;
    double attention_probs_dropout_prob;
    double initializer_range;     /* 0.02: normal init std */
    int pad_token_id;
    /* ELECTRA (type KMODEL_ELECTRA; the fields above describe the
     * discriminator, which shares its embeddings with the generator). The
     * reader fills the derived values, so after parsing none is 0. */
    int generator_hidden_size;    /* G; default hidden_size / 4 */
    int generator_num_hidden_layers;   /* default num_hidden_layers */
    int generator_num_attention_heads; /* default max(1, NH * G / H) */
    int generator_intermediate_size;   /* default 4 G */
    double disc_weight;           /* lambda: loss = MLM + lambda * discriminator BCE (50) */
    /* GPT-2 (type KMODEL_GPT2). The config file names the shared fields as
     * GPT2Config does (n_embd = hidden_size, n_layer = num_hidden_layers,
     * n_head, n_positions, n_inner = intermediate_size, activation_function
     * = hidden_act, layer_norm_epsilon, resid_pdrop = hidden_dropout_prob,
     * attn_pdrop = attention_probs_dropout_prob); the reader sets
     * embedding_size = hidden_size and num_hidden_groups = num_hidden_layers.
     * No token types, no embedding LayerNorm, no padding row. */
    double embd_dropout_prob;     /* embd_pdrop: dropout on word + position embeddings (0.1) */
    /* DistilBERT (type KMODEL_DISTILBERT). The config file names the shared
     * fields as DistilBertConfig does (dim = hidden_size, n_layers =
     * num_hidden_layers, n_heads, hidden_dim = intermediate_size, activation
     * = hidden_act, dropout = hidden_dropout_prob, attention_dropout =
     * attention_probs_dropout_prob; vocab_size, max_position_embeddings,
     * initializer_range and pad_token_id as BERT); the reader sets
     * embedding_size = hidden_size, num_hidden_groups = num_hidden_layers
     * and layer_norm_eps = 1e-12 (fixed in DistilBERT). No token types, no
     * pooler, no dropout after the attention output. */
    int sinusoidal_pos_embds;     /* 0: learned positions (1, fixed sinusoids, is refused) */
    double qa_dropout;            /* 0.1: DistilBertConfig's, kept for the export (kiln has no QA head) */
    double seq_classif_dropout;   /* 0.2: DistilBertConfig's: the dropout before the classifier of
                                     DistilBertForSequenceClassification (kiln finetune's
                                     model.classifier_dropout sets it) */
    /* ERNIE (the knowledge section; docs/ernie.md): a bert or albert model
     * whose last fusion_layers layers fuse an entity stream into the text
     * (0 = off). The entity table's shape is the pinned embedding's (kiln
     * writes it into the config at the start of the run). */
    int fusion_layers;            /* M, 1 .. num_hidden_layers; 0 = no knowledge */
    int entity_attention_heads;   /* heads of the entity self-attention (4) */
    int entity_hidden_size;       /* W: width of the entity stream; 0 = entity_dim (no projection) */
    int entity_vocab_size;        /* rows of the entity table (row 0 = no entity); 0 = the embedding's + 1 */
    int entity_dim;               /* De: width of the entity vectors; 0 = the embedding's */
    int dea;                      /* 1: the denoising entity auto-encoder (dEA noise, head and loss) */
    double dea_weight;            /* the dEA loss's weight in the total loss (1: upstream's MLM + dEA) */
} kmodel_config;

typedef struct kdata_config {
    int objectives;               /* KOBJ_* bits (sampler/batch.h) */
    int seq_len;                  /* L */
    int batch_size;               /* B (per optimizer micro-step) */
    uint64_t seed;
    double mask_prob;             /* 0.15 */
    int max_predictions;          /* P; 0 = the sampler's default for the objective (docs/sampler.md) */
    double short_seq_prob;        /* 0.1 */
    int max_ngram;                /* 3 (1..3) */
    double valid_fraction;        /* share of documents held out (by hash), 0.01 */
    int valid_every;              /* steps between validations (0 = never) */
    int valid_batches;            /* batches per validation */
    char vocab[128];              /* vocabulary name ("" = the active one) */
} kdata_config;

typedef struct kopt_config {
    int type;                     /* KOPT_* */
    double lr, beta1, beta2, eps, weight_decay;
    int warmup_steps;
    int schedule;                 /* KSCHED_* */
    double min_lr_ratio;          /* floor of the decay as a share of lr (0) */
    double clip_norm;             /* global gradient norm clip (<= 0: off) */
    int accumulation;             /* micro-batches per optimizer step (>= 1) */
    int max_nonfinite_steps;      /* steps skipped in a row for a non-finite gradient that end the run (8) */
} kopt_config;

typedef struct kbudget_config {
    int64_t steps;                /* 0 = no limit on this axis */
    int64_t tokens;
    double seconds;
} kbudget_config;

typedef struct kckpt_config {
    char dir[1024];
    int every;                    /* steps (0 = only at the end / on signals) */
    int keep;                     /* last K kept (>= 1) */
} kckpt_config;

/* Distillation (docs/distill.md): a teacher's outputs teach the run's model
 * (the student). Off while teacher is "". */
enum { KDISTILL_DISTILBERT = 1, KDISTILL_TINYBERT = 2 };
enum { KDISTILL_MASKED = 1, KDISTILL_ALL = 2 };                       /* positions of the soft loss */
enum { KDISTILL_INTERMEDIATE = 1, KDISTILL_PREDICTION = 2, KDISTILL_BOTH = 3 }; /* TinyBERT stages */
#define KDISTILL_MAX_LAYERS 64

typedef struct kint_list {
    int n;                        /* entries used */
    int v[KDISTILL_MAX_LAYERS];
} kint_list;

typedef struct kdistill_config {
    char teacher[1024];           /* a kiln checkpoint or a Hugging Face folder ("" = no distillation) */
    int method;                   /* KDISTILL_DISTILBERT (triple loss) or KDISTILL_TINYBERT (layer-wise) */
    double temperature;           /* T of the soft loss; the reader fills the method's default (2, TinyBERT 1) */
    double alpha_ce, alpha_mlm, alpha_cos; /* DistilBERT: 5, 2, 1 */
    int positions;                /* KDISTILL_MASKED (default) or KDISTILL_ALL non-pad positions for the soft loss */
    kint_list student_layers;     /* teacher layers (0-based) the student's layers start from; n 0 = every other */
    int init_from_teacher;        /* 1: the student starts from the teacher's embeddings, layers and MLM head
                                     (default for DistilBERT; TinyBERT: 0) */
    double alpha_att, alpha_hid, alpha_emb, alpha_pred; /* TinyBERT: 1 each */
    int stage;                    /* TinyBERT: KDISTILL_INTERMEDIATE, _PREDICTION or _BOTH (default) */
    double intermediate_fraction; /* stage both: the first share of the steps is intermediate (0.5) */
} kdistill_config;

/* How the daemon starts a queued run (docs/distributed.md): in its own
 * process (ranks 1), or as mpirun -np ranks [--hostfile hostfile] kiln train
 * (data parallel). kiln train itself runs as it was started; a resume may
 * change these. Written only when ranks > 1. */
typedef struct klaunch_config {
    int ranks;                    /* 1 */
    char hostfile[1024];          /* "" or mpirun's --hostfile (absolute when submitted) */
} klaunch_config;

typedef struct ktrain_config {
    kmodel_config model;
    kdata_config data;
    kopt_config optimizer;
    kbudget_config budget;
    kckpt_config checkpoint;
    int threads;                  /* 0 = all cores */
    int precision;                /* KPRECISION_*: of the matrix products (docs/train.md, "Precision") */
    char init[1024];              /* "" or a checkpoint whose model weights start the run (step 0) */
    kdistill_config distill;
    klaunch_config launch;
    int64_t knowledge_embedding;  /* knowledge.embedding: a kg_embeddings id; 0 = "latest" (pinned at start) */
    int knowledge_hide_masked;    /* knowledge.hide_masked_entities: masked mentions lose their entity input */
} ktrain_config;

/* ELECTRA's generator as a model config of its own (type electra): the
 * discriminator's c with the generator_* fields as its width, depth, heads
 * and FFN (embeddings, vocabulary, positions, dropout, init as c). */
kmodel_config kmodel_generator_config(const kmodel_config *c);

/* precision's names ("auto", "fp32", "bf16"), shared by the fine-tuning
 * config: the name of p (NULL if none), and the value of name (-1 if none). */
const char *kprecision_name(int p);
int kprecision_parse(const char *name);

/* Fills *c with the documented defaults (an ALBERT-small-ish model). */
void ktrain_config_defaults(ktrain_config *c);
/* Reads a JSON config text over the defaults, then applies overrides
 * "section.key=value" (n_sets of them); unknown sections/keys, wrong types
 * and out-of-range values fail with a message naming the field in err
 * (errlen bytes). Returns 0 or EX_CONFIG / EX_DATAERR.
 * (EX_DATAERR: the text is not JSON or not an object; EX_CONFIG: anything
 * else. json NULL or len 0 reads as {}. Derived values are filled in: see
 * docs/train.md. On failure *c holds the defaults.) */
int ktrain_config_parse(ktrain_config *c, const char *json, size_t len,
                        const char *const *sets, int n_sets, char *err, size_t errlen);
/* The config as canonical JSON (every field), malloc'd; caller frees. */
char *ktrain_config_to_json(const ktrain_config *c);

/* The i-th key the reader knows, as "section.key" ("threads" for a top-level
 * key), in canonical order, into out (n bytes). Returns 0, or -1 past the
 * last key. For tools and for the test that holds the JSON Schema to it. */
int ktrain_config_key(int i, char *out, size_t n);
/* v as the shortest decimal text that reads back as exactly v (valid JSON:
 * "%.0f" for integral values below 1e15, else the shortest "%.Ng"), or
 * "null" when v is not finite. */
void ktrain_fmt_double(char out[32], double v);

#endif
