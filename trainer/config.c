/* config.c: the run configuration (config.h): defaults, the JSON reader with
 * --set overrides, cross-field checks, and the canonical JSON writer.
 *
 * Every key lives in one table (FIELDS below): the reader, the writer and
 * ktrain_config_key() walk it, so a key cannot be read but not written or
 * the reverse; tests/unit/test_config.c checks the table against
 * schemas/run-config.schema.json. docs/train.md documents every key.
 *
 * Reading, in order:
 *   1. defaults (ktrain_config_defaults);
 *   2. the file's JSON text parsed into a tree (duplicate keys refused);
 *   3. each --set "path=value" written into the tree (value: JSON if it
 *      parses as JSON, else the text as a string);
 *   4. the tree walked: unknown sections and keys, wrong types and values out
 *      of range fail, naming the field ("model.hiden_size: unknown key");
 *   5. derived values: BERT's embedding_size and num_hidden_groups when not
 *      given, optimizer.warmup_steps -1 (10% of the budget in steps);
 *      data.max_predictions 0 stays 0 (the sampler's default for the
 *      objective, docs/sampler.md);
 *   6. cross-field checks.
 * No global state: any number of threads may parse at once. */
#define _POSIX_C_SOURCE 200809L
#include "trainer/config.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sampler/batch.h"
#include "util/util.h"

/* ---- the table of keys -------------------------------------------------- */

enum { T_INT, T_I64, T_SEED, T_DBL, T_STR, T_ENUM, T_OBJ, T_BETAS, T_BOOL, T_ILIST, T_EMBREF };
enum {
    LO_OPEN = 1,
    HI_OPEN = 2,
    ELECTRA_ONLY = 4, /* read and written only for model.type electra */
    GPT2_ONLY = 8,    /* read and written only for model.type gpt2 (GPT2Config's names) */
    NOT_GPT2 = 16,    /* BertConfig's names: refused for model.type gpt2 and (without DISTIL_TOO) distilbert */
    NULLABLE = 32,    /* T_INT: null reads as 0 (derived); n_inner: written null when derived */
    DISTIL_ONLY = 64, /* read and written only for model.type distilbert (DistilBertConfig's names) */
    DISTIL_TOO = 128, /* a BertConfig name (NOT_GPT2) that DistilBertConfig has too */
    DISTILL_SEC = 256, /* the distill section: written only when distill.teacher is set */
    DISTILL_DB = 512,  /* a key of distill.method distilbert only (read and written) */
    DISTILL_TB = 1024, /* a key of distill.method tinybert only */
    LAUNCH_SEC = 2048, /* the launch section: written only when launch.ranks > 1 */
    KNOW_SEC = 4096,   /* the knowledge section: written only when model.fusion_layers > 0 */
};

typedef struct ename { const char *name; int value; } ename;

static const ename model_types[] = {
    {"albert", KMODEL_ALBERT}, {"bert", KMODEL_BERT}, {"distilbert", KMODEL_DISTILBERT},
    {"electra", KMODEL_ELECTRA}, {"gpt2", KMODEL_GPT2}, {NULL, 0}};
static const ename acts[] = {{"gelu_new", KACT_GELU_NEW}, {"gelu", KACT_GELU}, {NULL, 0}};
static const ename opt_types[] = {{"adamw", KOPT_ADAMW}, {"lamb", KOPT_LAMB}, {NULL, 0}};
static const ename distill_methods[] = {{"distilbert", KDISTILL_DISTILBERT}, {"tinybert", KDISTILL_TINYBERT},
                                        {NULL, 0}};
static const ename distill_positions[] = {{"masked", KDISTILL_MASKED}, {"all", KDISTILL_ALL}, {NULL, 0}};
static const ename distill_stages[] = {{"intermediate", KDISTILL_INTERMEDIATE}, {"prediction", KDISTILL_PREDICTION},
                                       {"both", KDISTILL_BOTH}, {NULL, 0}};
static const ename precisions[] = {
    {"auto", KPRECISION_AUTO}, {"fp32", KPRECISION_FP32}, {"bf16", KPRECISION_BF16}, {NULL, 0}};
const char *kprecision_name(int p)
{
    for (int k = 0; precisions[k].name; k++)
        if (precisions[k].value == p) return precisions[k].name;
    return NULL;
}

int kprecision_parse(const char *name)
{
    for (int k = 0; precisions[k].name; k++)
        if (!strcmp(precisions[k].name, name)) return precisions[k].value;
    return -1;
}

static const ename schedules[] = {
    {"linear", KSCHED_LINEAR}, {"cosine", KSCHED_COSINE}, {"constant", KSCHED_CONSTANT}, {NULL, 0}};
/* In bit order: the canonical order of data.objectives. */
static const ename objectives[] = {
    {"mlm", KOBJ_MLM}, {"wwm", KOBJ_WWM}, {"ngram", KOBJ_NGRAM}, {"sop", KOBJ_SOP},
    {"nsp", KOBJ_NSP}, {"rtd", KOBJ_RTD}, {"clm", KOBJ_CLM}, {"entities", KOBJ_ENTITIES},
    {NULL, 0}};

typedef struct field {
    const char *sec;          /* section, "" for a top-level key */
    const char *key;
    int type;                 /* T_* */
    size_t off;               /* offsetof(ktrain_config, ...) */
    double lo, hi;            /* T_INT/T_I64/T_DBL/T_BETAS bounds (T_I64, T_SEED: hi unused) */
    int flags;                /* LO_OPEN / HI_OPEN: bound excluded */
    const ename *names;       /* T_ENUM */
    size_t cap;               /* T_STR: buffer size */
} field;

#define OFF(m) offsetof(ktrain_config, m)
#define F_INT(s, k, m, lo, hi) {s, k, T_INT, OFF(m), lo, hi, 0, NULL, 0}
#define F_DBL(s, k, m, lo, hi, fl) {s, k, T_DBL, OFF(m), lo, hi, fl, NULL, 0}
#define F_ENUM(s, k, m, t) {s, k, T_ENUM, OFF(m), 0, 0, 0, t, 0}
/* model keys of one family: BertConfig's names (NOT_GPT2) or GPT2Config's (GPT2_ONLY) */
#define B_INT(k, m, lo, hi) {"model", k, T_INT, OFF(m), lo, hi, NOT_GPT2, NULL, 0}
#define B_DBL(k, m, lo, hi, fl) {"model", k, T_DBL, OFF(m), lo, hi, (fl) | NOT_GPT2, NULL, 0}
#define G_INT(k, m, lo, hi) {"model", k, T_INT, OFF(m), lo, hi, GPT2_ONLY, NULL, 0}
#define G_DBL(k, m, lo, hi, fl) {"model", k, T_DBL, OFF(m), lo, hi, (fl) | GPT2_ONLY, NULL, 0}
/* DistilBertConfig's names (DISTIL_ONLY), and BertConfig's it shares (DISTIL_TOO) */
#define D_INT(k, m, lo, hi) {"model", k, T_INT, OFF(m), lo, hi, DISTIL_ONLY, NULL, 0}
#define D_DBL(k, m, lo, hi, fl) {"model", k, T_DBL, OFF(m), lo, hi, (fl) | DISTIL_ONLY, NULL, 0}
#define BD_INT(k, m, lo, hi) {"model", k, T_INT, OFF(m), lo, hi, NOT_GPT2 | DISTIL_TOO, NULL, 0}
#define F_STR(s, k, m) {s, k, T_STR, OFF(m), 0, 0, 0, NULL, sizeof(((ktrain_config *)0)->m)}

static const field FIELDS[] = {
    F_ENUM("model", "type", model.type, model_types),
    F_INT("model", "vocab_size", model.vocab_size, 0, 16777216),
    B_INT("embedding_size", model.embedding_size, 1, 65536),
    B_INT("hidden_size", model.hidden_size, 1, 65536),
    B_INT("num_hidden_layers", model.num_hidden_layers, 1, 1024),
    B_INT("num_attention_heads", model.num_attention_heads, 1, 1024),
    B_INT("intermediate_size", model.intermediate_size, 1, 1048576),
    BD_INT("max_position_embeddings", model.max_position_embeddings, 8, 1048576),
    B_INT("type_vocab_size", model.type_vocab_size, 2, 64),
    {"model", "hidden_act", T_ENUM, OFF(model.hidden_act), 0, 0, NOT_GPT2, acts, 0},
    B_DBL("layer_norm_eps", model.layer_norm_eps, 0, 1, LO_OPEN),
    B_INT("num_hidden_groups", model.num_hidden_groups, 1, 1024),
    B_DBL("hidden_dropout_prob", model.hidden_dropout_prob, 0, 1, HI_OPEN),
    B_DBL("attention_probs_dropout_prob", model.attention_probs_dropout_prob, 0, 1, HI_OPEN),
    F_DBL("model", "initializer_range", model.initializer_range, 0, 1, LO_OPEN),
    BD_INT("pad_token_id", model.pad_token_id, 0, 16777215),
    {"model", "generator_hidden_size", T_INT, OFF(model.generator_hidden_size), 0, 65536, ELECTRA_ONLY, NULL, 0},
    {"model", "generator_num_hidden_layers", T_INT, OFF(model.generator_num_hidden_layers), 0, 1024, ELECTRA_ONLY,
     NULL, 0},
    {"model", "generator_num_attention_heads", T_INT, OFF(model.generator_num_attention_heads), 0, 1024,
     ELECTRA_ONLY, NULL, 0},
    {"model", "generator_intermediate_size", T_INT, OFF(model.generator_intermediate_size), 0, 1048576,
     ELECTRA_ONLY, NULL, 0},
    {"model", "disc_weight", T_DBL, OFF(model.disc_weight), 0, 1e6, LO_OPEN | ELECTRA_ONLY, NULL, 0},
    G_INT("n_embd", model.hidden_size, 1, 65536),
    G_INT("n_layer", model.num_hidden_layers, 1, 1024),
    G_INT("n_head", model.num_attention_heads, 1, 1024),
    G_INT("n_positions", model.max_position_embeddings, 8, 1048576),
    {"model", "n_inner", T_INT, OFF(model.intermediate_size), 1, 1048576, GPT2_ONLY | NULLABLE, NULL, 0},
    {"model", "activation_function", T_ENUM, OFF(model.hidden_act), 0, 0, GPT2_ONLY, acts, 0},
    G_DBL("layer_norm_epsilon", model.layer_norm_eps, 0, 1, LO_OPEN),
    G_DBL("resid_pdrop", model.hidden_dropout_prob, 0, 1, HI_OPEN),
    G_DBL("embd_pdrop", model.embd_dropout_prob, 0, 1, HI_OPEN),
    G_DBL("attn_pdrop", model.attention_probs_dropout_prob, 0, 1, HI_OPEN),
    {"model", "sinusoidal_pos_embds", T_BOOL, OFF(model.sinusoidal_pos_embds), 0, 0, DISTIL_ONLY, NULL, 0},
    D_INT("n_layers", model.num_hidden_layers, 1, 1024),
    D_INT("n_heads", model.num_attention_heads, 1, 1024),
    D_INT("dim", model.hidden_size, 1, 65536),
    D_INT("hidden_dim", model.intermediate_size, 1, 1048576),
    D_DBL("dropout", model.hidden_dropout_prob, 0, 1, HI_OPEN),
    D_DBL("attention_dropout", model.attention_probs_dropout_prob, 0, 1, HI_OPEN),
    {"model", "activation", T_ENUM, OFF(model.hidden_act), 0, 0, DISTIL_ONLY, acts, 0},
    D_DBL("qa_dropout", model.qa_dropout, 0, 1, HI_OPEN),
    D_DBL("seq_classif_dropout", model.seq_classif_dropout, 0, 1, HI_OPEN),

    {"data", "objectives", T_OBJ, OFF(data.objectives), 0, 0, 0, objectives, 0},
    F_INT("data", "seq_len", data.seq_len, 8, 65536),
    F_INT("data", "batch_size", data.batch_size, 1, 65536),
    {"data", "seed", T_SEED, OFF(data.seed), 0, 0, 0, NULL, 0},
    F_DBL("data", "mask_prob", data.mask_prob, 0, 1, LO_OPEN | HI_OPEN),
    F_INT("data", "max_predictions", data.max_predictions, 0, 65536),
    F_DBL("data", "short_seq_prob", data.short_seq_prob, 0, 1, 0),
    F_INT("data", "max_ngram", data.max_ngram, 1, 3),
    F_DBL("data", "valid_fraction", data.valid_fraction, 0, 0.5, 0),
    F_INT("data", "valid_every", data.valid_every, 0, INT_MAX),
    F_INT("data", "valid_batches", data.valid_batches, 1, 1000000),
    F_STR("data", "vocab", data.vocab),

    F_ENUM("optimizer", "type", optimizer.type, opt_types),
    F_DBL("optimizer", "lr", optimizer.lr, 0, 10, LO_OPEN),
    {"optimizer", "betas", T_BETAS, OFF(optimizer.beta1), 0, 1, HI_OPEN, NULL, 0},
    F_DBL("optimizer", "eps", optimizer.eps, 0, 1, LO_OPEN),
    F_DBL("optimizer", "weight_decay", optimizer.weight_decay, 0, 1, 0),
    F_INT("optimizer", "warmup_steps", optimizer.warmup_steps, -1, INT_MAX),
    F_ENUM("optimizer", "schedule", optimizer.schedule, schedules),
    F_DBL("optimizer", "min_lr_ratio", optimizer.min_lr_ratio, 0, 1, 0),
    F_DBL("optimizer", "clip_norm", optimizer.clip_norm, 0, 1e6, 0),
    F_INT("optimizer", "accumulation", optimizer.accumulation, 1, 65536),
    F_INT("optimizer", "max_nonfinite_steps", optimizer.max_nonfinite_steps, 1, 1000000),

    {"budget", "steps", T_I64, OFF(budget.steps), 0, 0, 0, NULL, 0},
    {"budget", "tokens", T_I64, OFF(budget.tokens), 0, 0, 0, NULL, 0},
    F_DBL("budget", "seconds", budget.seconds, 0, 1e10, 0),

    F_STR("checkpoint", "dir", checkpoint.dir),
    F_INT("checkpoint", "every", checkpoint.every, 0, INT_MAX),
    F_INT("checkpoint", "keep", checkpoint.keep, 1, 1000000),

    F_INT("", "threads", threads, 0, 4096),
    F_ENUM("", "precision", precision, precisions),
    F_STR("", "init", init),

    {"distill", "teacher", T_STR, OFF(distill.teacher), 0, 0, DISTILL_SEC, NULL, sizeof(((ktrain_config *)0)->distill.teacher)},
    {"distill", "method", T_ENUM, OFF(distill.method), 0, 0, DISTILL_SEC, distill_methods, 0},
    {"distill", "temperature", T_DBL, OFF(distill.temperature), 0, 1000, LO_OPEN | DISTILL_SEC, NULL, 0},
    {"distill", "alpha_ce", T_DBL, OFF(distill.alpha_ce), 0, 1e6, DISTILL_SEC | DISTILL_DB, NULL, 0},
    {"distill", "alpha_mlm", T_DBL, OFF(distill.alpha_mlm), 0, 1e6, DISTILL_SEC, NULL, 0},
    {"distill", "alpha_cos", T_DBL, OFF(distill.alpha_cos), 0, 1e6, DISTILL_SEC | DISTILL_DB, NULL, 0},
    {"distill", "positions", T_ENUM, OFF(distill.positions), 0, 0, DISTILL_SEC, distill_positions, 0},
    {"distill", "student_layers", T_ILIST, OFF(distill.student_layers), 0, 1023, DISTILL_SEC, NULL, 0},
    {"distill", "init_from_teacher", T_BOOL, OFF(distill.init_from_teacher), 0, 0, DISTILL_SEC, NULL, 0},
    {"distill", "alpha_att", T_DBL, OFF(distill.alpha_att), 0, 1e6, DISTILL_SEC | DISTILL_TB, NULL, 0},
    {"distill", "alpha_hid", T_DBL, OFF(distill.alpha_hid), 0, 1e6, DISTILL_SEC | DISTILL_TB, NULL, 0},
    {"distill", "alpha_emb", T_DBL, OFF(distill.alpha_emb), 0, 1e6, DISTILL_SEC | DISTILL_TB, NULL, 0},
    {"distill", "alpha_pred", T_DBL, OFF(distill.alpha_pred), 0, 1e6, DISTILL_SEC | DISTILL_TB, NULL, 0},
    {"distill", "stage", T_ENUM, OFF(distill.stage), 0, 0, DISTILL_SEC | DISTILL_TB, distill_stages, 0},
    {"distill", "intermediate_fraction", T_DBL, OFF(distill.intermediate_fraction), 0, 1, DISTILL_SEC | DISTILL_TB, NULL, 0},

    {"launch", "ranks", T_INT, OFF(launch.ranks), 1, 65536, LAUNCH_SEC, NULL, 0},
    {"launch", "hostfile", T_STR, OFF(launch.hostfile), 0, 0, LAUNCH_SEC, NULL, sizeof(((ktrain_config *)0)->launch.hostfile)},

    {"knowledge", "embedding", T_EMBREF, OFF(knowledge_embedding), 0, 0, KNOW_SEC, NULL, 0},
    {"knowledge", "fusion_layers", T_INT, OFF(model.fusion_layers), 1, 1024, KNOW_SEC, NULL, 0},
    {"knowledge", "entity_attention_heads", T_INT, OFF(model.entity_attention_heads), 1, 1024, KNOW_SEC, NULL, 0},
    {"knowledge", "entity_hidden_size", T_INT, OFF(model.entity_hidden_size), 0, 65536, KNOW_SEC, NULL, 0},
    {"knowledge", "entity_vocab_size", T_INT, OFF(model.entity_vocab_size), 0, 1 << 30, KNOW_SEC, NULL, 0},
    {"knowledge", "entity_dim", T_INT, OFF(model.entity_dim), 0, 65536, KNOW_SEC, NULL, 0},
    {"knowledge", "dea", T_BOOL, OFF(model.dea), 0, 0, KNOW_SEC, NULL, 0},
    {"knowledge", "dea_weight", T_DBL, OFF(model.dea_weight), 0, 1e6, LO_OPEN | KNOW_SEC, NULL, 0},
    {"knowledge", "hide_masked_entities", T_BOOL, OFF(knowledge_hide_masked), 0, 0, KNOW_SEC, NULL, 0},
};
#define N_FIELDS ((int)(sizeof FIELDS / sizeof FIELDS[0]))
static const char *const SECTIONS[] = {"model",  "data",   "optimizer", "budget",    "checkpoint",
                                       "distill", "launch", "knowledge", NULL};

int ktrain_config_key(int i, char *out, size_t n)
{
    if (i < 0 || i >= N_FIELDS) return -1;
    const field *f = &FIELDS[i];
    snprintf(out, n, "%s%s%s", f->sec, *f->sec ? "." : "", f->key);
    return 0;
}

/* ---- defaults ----------------------------------------------------------- */

void ktrain_config_defaults(ktrain_config *c)
{
    memset(c, 0, sizeof *c);
    kmodel_config *m = &c->model;
    m->type = KMODEL_ALBERT;
    m->vocab_size = 0; /* the vocabulary's size, at run time */
    m->embedding_size = 128;
    m->hidden_size = 256;
    m->num_hidden_layers = 4;
    m->num_attention_heads = 4;
    m->intermediate_size = 1024;
    m->max_position_embeddings = 512;
    m->type_vocab_size = 2;
    m->hidden_act = KACT_GELU_NEW;
    m->layer_norm_eps = 1e-12;
    m->num_hidden_groups = 1;
    m->hidden_dropout_prob = 0.0;
    m->attention_probs_dropout_prob = 0.0;
    m->initializer_range = 0.02;
    m->pad_token_id = 0;
    m->disc_weight = 50.0;
    m->embd_dropout_prob = 0.1;
    m->qa_dropout = 0.1;
    m->seq_classif_dropout = 0.2;

    kdata_config *d = &c->data;
    d->objectives = KOBJ_MLM | KOBJ_SOP;
    d->seq_len = 128;
    d->batch_size = 16;
    d->seed = 42;
    d->mask_prob = 0.15;
    d->max_predictions = 0;
    d->short_seq_prob = 0.1;
    d->max_ngram = 3;
    d->valid_fraction = 0.01;
    d->valid_every = 1000;
    d->valid_batches = 20;

    kopt_config *o = &c->optimizer;
    o->type = KOPT_ADAMW;
    o->lr = 5e-4;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-6;
    o->weight_decay = 0.01;
    o->warmup_steps = -1; /* 10% of the budget */
    o->schedule = KSCHED_LINEAR;
    o->min_lr_ratio = 0.0;
    o->clip_norm = 1.0;
    o->accumulation = 1;
    o->max_nonfinite_steps = 8;

    /* budget: none; the reader requires at least one axis */
    snprintf(c->checkpoint.dir, sizeof c->checkpoint.dir, "checkpoints");
    c->checkpoint.every = 1000;
    c->checkpoint.keep = 3;
    c->threads = 0;
    c->precision = KPRECISION_AUTO;
    c->launch.ranks = 1;

    kdistill_config *k = &c->distill;
    k->method = KDISTILL_DISTILBERT;
    k->temperature = 0; /* the method's: 2 (DistilBERT), 1 (TinyBERT) */
    k->alpha_ce = 5.0;
    k->alpha_mlm = 2.0;
    k->alpha_cos = 1.0;
    k->positions = KDISTILL_MASKED;
    k->init_from_teacher = 1;
    k->alpha_att = k->alpha_hid = k->alpha_emb = k->alpha_pred = 1.0;
    k->stage = KDISTILL_BOTH;
    k->intermediate_fraction = 0.5;

    m->entity_attention_heads = 4; /* ERNIE's (fusion_layers 0: off) */
    m->dea = 1;
    m->dea_weight = 1.0; /* upstream adds the dEA loss to MLM's unweighted */
    c->knowledge_hide_masked = 1; /* kiln's choice (upstream keeps them): docs/ernie.md */
}

kmodel_config kmodel_generator_config(const kmodel_config *c)
{
    kmodel_config g = *c;
    g.hidden_size = c->generator_hidden_size;
    g.num_hidden_layers = c->generator_num_hidden_layers;
    g.num_hidden_groups = c->generator_num_hidden_layers;
    g.num_attention_heads = c->generator_num_attention_heads;
    g.intermediate_size = c->generator_intermediate_size;
    return g;
}

/* ---- numbers as text ---------------------------------------------------- */

void ktrain_fmt_double(char out[32], double v)
{
    if (!isfinite(v)) { snprintf(out, 32, "null"); return; }
    if (v == floor(v) && fabs(v) < 1e15) { snprintf(out, 32, "%.0f", v); return; } /* 10, not 1e+01 */
    for (int p = 1; p <= 17; p++) {
        snprintf(out, 32, "%.*g", p, v);
        if (strtod(out, NULL) == v) break;
    }
}

/* ---- reading ------------------------------------------------------------ */

typedef struct ctx {
    char *err;
    size_t errlen;
    unsigned char given[N_FIELDS];
    int knowledge;            /* the knowledge section is present (possibly empty: every default) */
    char **set_paths;         /* "section.key" of each --set, to say where a bad value came from */
    int n_set_paths;
} ctx;

static int fail(ctx *x, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(ctx *x, int code, const char *fmt, ...)
{
    if (x->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(x->err, x->errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* A failure about field f: "section.key: message", plus " (from --set)" when
 * the value came from an override. */
static int fail_field(ctx *x, const field *f, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_field(ctx *x, const field *f, const char *fmt, ...)
{
    char msg[512], path[96];
    snprintf(path, sizeof path, "%s%s%s", f->sec, *f->sec ? "." : "", f->key);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int from_set = 0;
    for (int i = 0; i < x->n_set_paths; i++)
        if (!strcmp(x->set_paths[i], path)) from_set = 1;
    return fail(x, EX_CONFIG, "%s: %s%s", path, msg, from_set ? " (from --set)" : "");
}

/* Short description of a JSON value for messages: "the string \"x\"", "1.5", "an array". */
static void describe(const json_t *v, char *out, size_t n)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: snprintf(out, n, "an object"); break;
    case JSON_ARRAY: snprintf(out, n, "an array"); break;
    case JSON_STRING: {
        const char *s = json_string_value(v);
        size_t len = strlen(s);
        snprintf(out, n, "the string \"%.40s%s\"", s, len > 40 ? "..." : "");
        break;
    }
    case JSON_INTEGER: snprintf(out, n, "%lld", (long long)json_integer_value(v)); break;
    case JSON_REAL: ktrain_fmt_double(out, json_real_value(v)); break;
    case JSON_TRUE: snprintf(out, n, "true"); break;
    case JSON_FALSE: snprintf(out, n, "false"); break;
    default: snprintf(out, n, "null"); break;
    }
}

/* "> 0 and <= 10", from a field's bounds. */
static void bounds_text(const field *f, char *out, size_t n)
{
    char lo[32], hi[32];
    ktrain_fmt_double(lo, f->lo);
    ktrain_fmt_double(hi, f->hi);
    snprintf(out, n, "%s %s and %s %s", f->flags & LO_OPEN ? ">" : ">=", lo,
             f->flags & HI_OPEN ? "<" : "<=", hi);
}

static int in_bounds(const field *f, double v)
{
    if (f->flags & LO_OPEN ? !(v > f->lo) : !(v >= f->lo)) return 0;
    if (f->flags & HI_OPEN ? !(v < f->hi) : !(v <= f->hi)) return 0;
    return 1;
}

/* An integer value: a JSON integer, or a real with an integral value
 * (1e6 is accepted as 1000000) of magnitude <= 2^53. */
static int as_int64(const json_t *v, int64_t *out)
{
    if (json_is_integer(v)) { *out = (int64_t)json_integer_value(v); return 1; }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d == floor(d) && fabs(d) <= 9007199254740992.0) { *out = (int64_t)d; return 1; }
    }
    return 0;
}

static size_t levenshtein(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    if (na > 63 || nb > 63) return 64;
    size_t row[64];
    for (size_t j = 0; j <= nb; j++) row[j] = j;
    for (size_t i = 1; i <= na; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[nb];
}

/* ", did you mean 'hidden_size'?" for a near miss among the keys of sec
 * (or the sections and top-level keys when sec is ""), else "". */
static void suggestion(const char *sec, const char *key, char *out, size_t n)
{
    const char *best = NULL;
    size_t bd = 3;
    for (int i = 0; i < N_FIELDS; i++) {
        if (strcmp(FIELDS[i].sec, sec)) continue;
        size_t d = levenshtein(key, FIELDS[i].key);
        if (d < bd) { bd = d; best = FIELDS[i].key; }
    }
    if (!*sec)
        for (int i = 0; SECTIONS[i]; i++) {
            size_t d = levenshtein(key, SECTIONS[i]);
            if (d < bd) { bd = d; best = SECTIONS[i]; }
        }
    if (best) snprintf(out, n, " (did you mean '%s'?)", best);
    else out[0] = '\0';
}

static int is_section(const char *s)
{
    for (int i = 0; SECTIONS[i]; i++)
        if (!strcmp(SECTIONS[i], s)) return 1;
    return 0;
}

static int find_field(const char *sec, const char *key)
{
    for (int i = 0; i < N_FIELDS; i++)
        if (!strcmp(FIELDS[i].sec, sec) && !strcmp(FIELDS[i].key, key)) return i;
    return -1;
}

static int parse_objective_name(ctx *x, const field *f, const char *s, size_t n, int *bits)
{
    for (int k = 0; objectives[k].name; k++)
        if (strlen(objectives[k].name) == n && !memcmp(objectives[k].name, s, n)) {
            if (*bits & objectives[k].value)
                return fail_field(x, f, "'%s' is listed twice", objectives[k].name);
            *bits |= objectives[k].value;
            return 0;
        }
    return fail_field(x, f, "unknown objective '%.*s' (expected mlm, wwm, ngram, sop, nsp, rtd, clm or entities)",
                      (int)(n > 40 ? 40 : n), s);
}

/* Reads one value into the struct. */
static int read_field(ctx *x, ktrain_config *c, const field *f, const json_t *v)
{
    char got[96], b[96];
    char *base = (char *)c;
    describe(v, got, sizeof got);
    switch (f->type) {
    case T_INT: {
        int64_t i;
        if ((f->flags & NULLABLE) && json_is_null(v)) {
            *(int *)(base + f->off) = 0; /* derived */
            return 0;
        }
        if (!as_int64(v, &i) || i < (int64_t)f->lo || i > (int64_t)f->hi)
            return fail_field(x, f, "expected an integer from %lld to %lld, got %s", (long long)f->lo,
                              (long long)f->hi, got);
        *(int *)(base + f->off) = (int)i;
        return 0;
    }
    case T_I64: {
        int64_t i;
        if (!as_int64(v, &i) || i < 0)
            return fail_field(x, f, "expected an integer >= 0, got %s", got);
        *(int64_t *)(base + f->off) = i;
        return 0;
    }
    case T_SEED: {
        int64_t i;
        if (!as_int64(v, &i) || i < 0)
            return fail_field(x, f, "expected an integer from 0 to 2^63-1, got %s", got);
        *(uint64_t *)(base + f->off) = (uint64_t)i;
        return 0;
    }
    case T_DBL: {
        bounds_text(f, b, sizeof b);
        if (!json_is_number(v) || !in_bounds(f, json_number_value(v)))
            return fail_field(x, f, "expected a number %s, got %s", b, got);
        *(double *)(base + f->off) = json_number_value(v);
        return 0;
    }
    case T_BETAS: {
        bounds_text(f, b, sizeof b);
        if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_number(json_array_get(v, 0)) ||
            !json_is_number(json_array_get(v, 1)) || !in_bounds(f, json_number_value(json_array_get(v, 0))) ||
            !in_bounds(f, json_number_value(json_array_get(v, 1)))) {
            if (json_is_array(v)) {
                kbuf a = {0};
                char e[96];
                for (size_t i = 0; i < json_array_size(v) && i < 4; i++) {
                    describe(json_array_get(v, i), e, sizeof e);
                    kbuf_printf(&a, "%s%s", i ? ", " : "", e);
                }
                snprintf(got, sizeof got, "[%s%s]", a.data ? a.data : "", json_array_size(v) > 4 ? ", ..." : "");
                kbuf_free(&a);
            }
            return fail_field(x, f, "expected [beta1, beta2], two numbers %s, got %s", b, got);
        }
        double *d = (double *)(base + f->off);
        d[0] = json_number_value(json_array_get(v, 0));
        d[1] = json_number_value(json_array_get(v, 1));
        return 0;
    }
    case T_STR: {
        if (!json_is_string(v)) return fail_field(x, f, "expected a string, got %s", got);
        size_t n = json_string_length(v);
        if (n >= f->cap) return fail_field(x, f, "too long: %zu bytes, at most %zu", n, f->cap - 1);
        if (strlen(json_string_value(v)) != n) return fail_field(x, f, "contains a NUL character");
        char *dst = base + f->off;
        memset(dst, 0, f->cap);
        memcpy(dst, json_string_value(v), n);
        return 0;
    }
    case T_ENUM: {
        kbuf names = {0};
        for (int k = 0; f->names[k].name; k++) {
            if (json_is_string(v) && !strcmp(json_string_value(v), f->names[k].name)) {
                kbuf_free(&names);
                *(int *)(base + f->off) = f->names[k].value;
                return 0;
            }
            kbuf_printf(&names, "%s\"%s\"", k == 0 ? "" : f->names[k + 1].name ? ", " : " or ",
                        f->names[k].name);
        }
        int rc = fail_field(x, f, "expected %s, got %s", names.data, got);
        kbuf_free(&names);
        return rc;
    }
    case T_EMBREF: {
        int64_t i;
        if (json_is_string(v) && !strcmp(json_string_value(v), "latest")) {
            *(int64_t *)(base + f->off) = 0;
            return 0;
        }
        if (!as_int64(v, &i) || i < 1)
            return fail_field(x, f, "expected \"latest\" or an embedding id (an integer >= 1, kiln kg embed "
                                    "prints it), got %s", got);
        *(int64_t *)(base + f->off) = i;
        return 0;
    }
    case T_BOOL:
        if (!json_is_boolean(v)) return fail_field(x, f, "expected true or false, got %s", got);
        *(int *)(base + f->off) = json_is_true(v);
        return 0;
    case T_ILIST: {
        kint_list *l = (kint_list *)(base + f->off);
        if (!json_is_array(v) || json_array_size(v) > KDISTILL_MAX_LAYERS)
            return fail_field(x, f, "expected an array of at most %d integers, got %s", KDISTILL_MAX_LAYERS, got);
        size_t i;
        json_t *e;
        l->n = 0;
        json_array_foreach(v, i, e) {
            int64_t k;
            if (!as_int64(e, &k) || k < (int64_t)f->lo || k > (int64_t)f->hi) {
                describe(e, got, sizeof got);
                return fail_field(x, f, "entry %zu: expected an integer from %lld to %lld, got %s", i,
                                  (long long)f->lo, (long long)f->hi, got);
            }
            l->v[l->n++] = (int)k;
        }
        return 0;
    }
    case T_OBJ: {
        int bits = 0, rc;
        if (json_is_array(v)) {
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e) {
                if (!json_is_string(e)) {
                    describe(e, got, sizeof got);
                    return fail_field(x, f, "expected objective names (strings), got %s", got);
                }
                if ((rc = parse_objective_name(x, f, json_string_value(e), strlen(json_string_value(e)), &bits)))
                    return rc;
            }
        } else if (json_is_string(v)) {
            const char *s = json_string_value(v);
            while (*s) {
                while (*s == ' ') s++;
                size_t n = strcspn(s, ",");
                size_t m = n;
                while (m > 0 && s[m - 1] == ' ') m--;
                if ((rc = parse_objective_name(x, f, s, m, &bits))) return rc;
                s += n;
                if (*s == ',') s++;
            }
        } else {
            return fail_field(x, f, "expected an array of objective names such as [\"mlm\", \"sop\"], got %s", got);
        }
        if (!bits) return fail_field(x, f, "no objective given");
        *(int *)(base + f->off) = bits;
        return 0;
    }
    }
    return fail_field(x, f, "internal error: field type %d", f->type);
}

/* Writes one --set override into the tree. */
static int apply_set(ctx *x, json_t *root, const char *set)
{
    const char *eq = strchr(set, '=');
    if (!eq || eq == set)
        return fail(x, EX_CONFIG, "--set '%s': expected section.key=value", set);
    char *path = xstrndup(set, (size_t)(eq - set));
    const char *text = eq + 1;
    json_error_t je;
    json_t *val = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (!val) val = json_string(text);
    if (!val) {
        free(path);
        return fail(x, EX_CONFIG, "--set '%s': the value is not valid UTF-8", set);
    }
    int rc = 0;
    char *dot = strchr(path, '.');
    char sug[64];
    if (dot) {
        *dot = '\0';
        const char *sec = path, *key = dot + 1;
        if (!is_section(sec)) {
            suggestion("", sec, sug, sizeof sug);
            rc = fail(x, EX_CONFIG, "--set '%s': %s: unknown section%s", set, sec, sug);
        } else if (find_field(sec, key) < 0) {
            suggestion(sec, key, sug, sizeof sug);
            rc = fail(x, EX_CONFIG, "--set '%s': %s.%s: unknown key%s", set, sec, key, sug);
        } else {
            json_t *s = json_object_get(root, sec);
            if (!s) {
                s = json_object();
                json_object_set_new(root, sec, s);
            }
            if (!json_is_object(s)) {
                rc = fail(x, EX_CONFIG, "%s: expected an object (a section), got %s", sec,
                          json_is_array(s) ? "an array" : "a value");
            } else {
                json_object_set(s, key, val);
                *dot = '.';
                x->set_paths[x->n_set_paths++] = xstrdup(path);
            }
        }
    } else if (is_section(path)) {
        /* "model={...}": every key of the object overrides one key */
        if (!json_is_object(val)) {
            rc = fail(x, EX_CONFIG, "--set '%s': a whole section takes a JSON object", set);
        } else {
            json_t *s = json_object_get(root, path);
            if (!s) {
                s = json_object();
                json_object_set_new(root, path, s);
            }
            if (!json_is_object(s)) {
                rc = fail(x, EX_CONFIG, "%s: expected an object (a section)", path);
            } else {
                const char *k;
                json_t *e;
                json_object_foreach(val, k, e) json_object_set(s, k, e);
            }
        }
    } else if (find_field("", path) >= 0) {
        json_object_set(root, path, val);
        x->set_paths[x->n_set_paths++] = xstrdup(path);
    } else {
        suggestion("", path, sug, sizeof sug);
        rc = fail(x, EX_CONFIG, "--set '%s': %s: unknown key%s", set, path, sug);
    }
    json_decref(val);
    free(path);
    return rc;
}

static int read_tree(ctx *x, ktrain_config *c, json_t *root)
{
    const char *k;
    json_t *v;
    char sug[64];
    json_object_foreach(root, k, v) {
        if (is_section(k)) {
            if (!json_is_object(v)) {
                char got[96];
                describe(v, got, sizeof got);
                return fail(x, EX_CONFIG, "%s: expected an object (a section), got %s", k, got);
            }
            const char *k2;
            json_t *v2;
            if (!strcmp(k, "knowledge")) x->knowledge = 1;
            json_object_foreach(v, k2, v2) {
                int i = find_field(k, k2);
                if (i < 0) {
                    suggestion(k, k2, sug, sizeof sug);
                    return fail(x, EX_CONFIG, "%s.%s: unknown key%s", k, k2, sug);
                }
                int rc = read_field(x, c, &FIELDS[i], v2);
                if (rc) return rc;
                x->given[i] = 1;
            }
        } else {
            int i = find_field("", k);
            if (i < 0) {
                suggestion("", k, sug, sizeof sug);
                return fail(x, EX_CONFIG, "%s: unknown section or key%s", k, sug);
            }
            int rc = read_field(x, c, &FIELDS[i], v);
            if (rc) return rc;
            x->given[i] = 1;
        }
    }
    return 0;
}

static int given(const ctx *x, const char *sec, const char *key)
{
    int i = find_field(sec, key);
    return i >= 0 && x->given[i];
}

/* The field of a key this file names itself (abort: a broken invariant of ours). */
static const field *F(const char *sec, const char *key)
{
    int i = find_field(sec, key);
    if (i < 0) abort();
    return &FIELDS[i];
}

/* Names of the set bits of o among mask: "mlm and wwm". */
static void objective_names(int o, int mask, char *out, size_t n)
{
    size_t len = 0;
    out[0] = '\0';
    int count = 0, total = __builtin_popcount((unsigned)(o & mask));
    for (int k = 0; objectives[k].name; k++) {
        if (!(o & mask & objectives[k].value)) continue;
        count++;
        const char *sep = count == 1 ? "" : count == total ? " and " : ", ";
        len += (size_t)snprintf(out + len, len < n ? n - len : 0, "%s%s", sep, objectives[k].name);
        if (len >= n) break;
    }
}

/* Derived values, then cross-field checks. */
static int finish(ctx *x, ktrain_config *c)
{
    kmodel_config *m = &c->model;
    kdata_config *d = &c->data;
    kopt_config *o = &c->optimizer;
    char s[128];

    /* model */
    const int gpt2 = m->type == KMODEL_GPT2, distil = m->type == KMODEL_DISTILBERT;
    for (int i = 0; i < N_FIELDS; i++) {
        if ((FIELDS[i].flags & GPT2_ONLY) && !gpt2 && x->given[i])
            return fail_field(x, &FIELDS[i], "only for model.type \"gpt2\" (GPT2Config's name)");
        if ((FIELDS[i].flags & DISTIL_ONLY) && !distil && x->given[i])
            return fail_field(x, &FIELDS[i], "only for model.type \"distilbert\" (DistilBertConfig's name)");
        if ((FIELDS[i].flags & NOT_GPT2) && !(FIELDS[i].flags & DISTIL_TOO) && distil && x->given[i])
            return fail_field(x, &FIELDS[i],
                              "not a key of model.type \"distilbert\" (DistilBertConfig's names: dim, n_layers, "
                              "n_heads, hidden_dim, activation, dropout, attention_dropout, max_position_embeddings, "
                              "pad_token_id, initializer_range, sinusoidal_pos_embds, qa_dropout, "
                              "seq_classif_dropout)");
        if ((FIELDS[i].flags & NOT_GPT2) && gpt2 && x->given[i])
            return fail_field(x, &FIELDS[i],
                              "not a key of model.type \"gpt2\" (GPT2Config's names: n_embd, n_layer, n_head, "
                              "n_positions, n_inner, activation_function, layer_norm_epsilon, resid_pdrop, "
                              "embd_pdrop, attn_pdrop)");
    }
    if (gpt2) {
        /* GPT2Config's defaults where the config is silent; no projection, no sharing */
        m->embedding_size = m->hidden_size;
        m->num_hidden_groups = m->num_hidden_layers;
        if (!m->intermediate_size || !given(x, "model", "n_inner")) {
            if ((int64_t)4 * m->hidden_size > 1048576)
                return fail_field(x, F("model", "n_inner"), "null means 4 n_embd (%lld), above 1048576: give it",
                                  4LL * m->hidden_size);
            m->intermediate_size = 4 * m->hidden_size;
        }
        if (!given(x, "model", "layer_norm_epsilon")) m->layer_norm_eps = 1e-5;
        if (!given(x, "model", "resid_pdrop")) m->hidden_dropout_prob = 0.1;
        if (!given(x, "model", "attn_pdrop")) m->attention_probs_dropout_prob = 0.1;
        if (!given(x, "data", "objectives")) d->objectives = KOBJ_CLM;
        if (d->objectives != KOBJ_CLM)
            return fail_field(x, F("data", "objectives"),
                              "model.type gpt2 trains on next-token prediction: use [\"clm\"] alone");
        if (m->hidden_size % m->num_attention_heads)
            return fail_field(x, F("model", "n_head"), "must divide n_embd (%d), got %d", m->hidden_size,
                              m->num_attention_heads);
        if (d->seq_len > m->max_position_embeddings)
            return fail_field(x, F("data", "seq_len"), "at most model.n_positions (%d), got %d",
                              m->max_position_embeddings, d->seq_len);
    }
    if (distil) {
        /* DistilBertConfig's defaults where the config is silent; no projection, no sharing,
         * LayerNorm eps fixed as in transformers' modeling_distilbert */
        m->embedding_size = m->hidden_size;
        m->num_hidden_groups = m->num_hidden_layers;
        m->layer_norm_eps = 1e-12;
        if (!given(x, "model", "activation")) m->hidden_act = KACT_GELU;
        if (!given(x, "model", "dropout")) m->hidden_dropout_prob = 0.1;
        if (!given(x, "model", "attention_dropout")) m->attention_probs_dropout_prob = 0.1;
        if (m->sinusoidal_pos_embds)
            return fail_field(x, F("model", "sinusoidal_pos_embds"),
                              "true (fixed sinusoidal position embeddings) is not implemented: use false (learned)");
        if (!given(x, "data", "objectives")) d->objectives = KOBJ_MLM;
        if (d->objectives & (KOBJ_SOP | KOBJ_NSP))
            return fail_field(x, F("data", "objectives"),
                              "DistilBERT has no sentence-pair head: use [\"mlm\"] (or wwm / ngram) without sop or nsp");
        if (m->hidden_size % m->num_attention_heads)
            return fail_field(x, F("model", "n_heads"), "must divide dim (%d), got %d", m->hidden_size,
                              m->num_attention_heads);
    }
    if (m->type == KMODEL_BERT) {
        if (!given(x, "model", "embedding_size")) m->embedding_size = m->hidden_size;
        else if (m->embedding_size != m->hidden_size)
            return fail_field(x, F("model", "embedding_size"),
                              "BERT has no embedding projection: must equal hidden_size (%d) or be left out, got %d",
                              m->hidden_size, m->embedding_size);
        if (!given(x, "model", "num_hidden_groups")) m->num_hidden_groups = m->num_hidden_layers;
        else if (m->num_hidden_groups != m->num_hidden_layers)
            return fail_field(x, F("model", "num_hidden_groups"),
                              "BERT shares no layers: must equal num_hidden_layers (%d) or be left out, got %d",
                              m->num_hidden_layers, m->num_hidden_groups);
    } else if (m->num_hidden_groups > m->num_hidden_layers || m->num_hidden_layers % m->num_hidden_groups) {
        return fail_field(x, F("model", "num_hidden_groups"), "must divide num_hidden_layers (%d), got %d",
                          m->num_hidden_layers, m->num_hidden_groups);
    }
    if (m->hidden_size % m->num_attention_heads)
        return fail_field(x, F("model", "num_attention_heads"), "must divide hidden_size (%d), got %d",
                          m->hidden_size, m->num_attention_heads);
    if (m->type != KMODEL_ELECTRA) {
        for (int i = 0; i < N_FIELDS; i++)
            if ((FIELDS[i].flags & ELECTRA_ONLY) && x->given[i])
                return fail_field(x, &FIELDS[i], "only for model.type \"electra\"");
    } else {
        /* ELECTRA: no layer sharing; the generator's shape from the discriminator's
         * (upstream's get_generator_config: a quarter of the width, same depth) */
        if (!given(x, "model", "num_hidden_groups")) m->num_hidden_groups = m->num_hidden_layers;
        else if (m->num_hidden_groups != m->num_hidden_layers)
            return fail_field(x, F("model", "num_hidden_groups"),
                              "ELECTRA shares no layers: must equal num_hidden_layers (%d) or be left out, got %d",
                              m->num_hidden_layers, m->num_hidden_groups);
        /* ELECTRA's recipe where the config is silent: erf GELU, dropout 0.1 */
        if (!given(x, "model", "hidden_act")) m->hidden_act = KACT_GELU;
        if (!given(x, "model", "hidden_dropout_prob")) m->hidden_dropout_prob = 0.1;
        if (!given(x, "model", "attention_probs_dropout_prob")) m->attention_probs_dropout_prob = 0.1;
        if (!m->generator_hidden_size) m->generator_hidden_size = m->hidden_size / 4 > 0 ? m->hidden_size / 4 : 1;
        if (!m->generator_num_hidden_layers) m->generator_num_hidden_layers = m->num_hidden_layers;
        if (!m->generator_num_attention_heads) {
            int64_t nh = (int64_t)m->num_attention_heads * m->generator_hidden_size / m->hidden_size;
            m->generator_num_attention_heads = nh < 1 ? 1 : (int)nh;
        }
        if (!m->generator_intermediate_size) m->generator_intermediate_size = 4 * m->generator_hidden_size;
        if (m->generator_hidden_size % m->generator_num_attention_heads)
            return fail_field(x, F("model", "generator_num_attention_heads"),
                              "must divide generator_hidden_size (%d), got %d%s", m->generator_hidden_size,
                              m->generator_num_attention_heads,
                              given(x, "model", "generator_num_attention_heads") ? "" : " (derived: give it)");
        if (!(d->objectives & KOBJ_RTD))
            return fail_field(x, F("data", "objectives"),
                              "model.type electra trains on replaced-token inputs: use [\"rtd\"]");
        if (d->objectives & (KOBJ_SOP | KOBJ_NSP))
            return fail_field(x, F("data", "objectives"),
                              "ELECTRA has no sentence-pair head: use [\"rtd\"] without sop or nsp");
    }
    if (m->type != KMODEL_ELECTRA && (d->objectives & KOBJ_RTD))
        return fail_field(x, F("data", "objectives"),
                          "rtd (replaced-token detection) is ELECTRA's objective: set model.type \"electra\"");
    if (!gpt2 && m->vocab_size > 0 && m->pad_token_id >= m->vocab_size)
        return fail_field(x, F("model", "pad_token_id"), "must be below vocab_size (%d), got %d", m->vocab_size,
                          m->pad_token_id);
    if (m->vocab_size > 0 && m->vocab_size < 8)
        return fail_field(x, F("model", "vocab_size"), "0 (the vocabulary's size) or at least 8, got %d",
                          m->vocab_size);

    /* data */
    const int token_kinds = KOBJ_MLM | KOBJ_WWM | KOBJ_NGRAM | KOBJ_RTD | KOBJ_CLM;
    int ob = d->objectives;
    const field *fo = F("data", "objectives");
    if (__builtin_popcount((unsigned)(ob & token_kinds)) != 1) {
        if (!(ob & token_kinds))
            return fail_field(x, fo, "needs one token-level objective: mlm, wwm, ngram, rtd or clm");
        objective_names(ob, token_kinds, s, sizeof s);
        return fail_field(x, fo, "one token-level objective at a time (mlm, wwm, ngram, rtd or clm), got %s", s);
    }
    if ((ob & KOBJ_SOP) && (ob & KOBJ_NSP))
        return fail_field(x, fo, "sop and nsp exclude each other (one sentence-pair label per row)");
    if ((ob & KOBJ_CLM) && (ob & (KOBJ_SOP | KOBJ_NSP)))
        return fail_field(x, fo, "clm reads contiguous windows, not sentence pairs: no sop or nsp with it");
    if ((ob & KOBJ_CLM) && !gpt2)
        return fail_field(x, fo, "clm (next-token prediction) trains the causal model: model.type \"gpt2\"");
    if ((ob & KOBJ_ENTITIES) && !(ob & (KOBJ_MLM | KOBJ_WWM | KOBJ_NGRAM)))
        return fail_field(x, fo, "entities (ERNIE) goes with a masked-LM objective: mlm, wwm or ngram");
    /* knowledge (ERNIE) */
    int know = x->knowledge;
    for (int i = 0; i < N_FIELDS; i++)
        if ((FIELDS[i].flags & KNOW_SEC) && x->given[i]) know = 1;
    if (know) {
        const field *ff = F("knowledge", "fusion_layers");
        if (m->type != KMODEL_BERT && m->type != KMODEL_ALBERT)
            return fail_field(x, F("model", "type"), "the knowledge section (ERNIE) fuses entities into a bert or "
                                                     "albert encoder");
        if (!given(x, "knowledge", "fusion_layers")) m->fusion_layers = m->num_hidden_layers > 1 ? m->num_hidden_layers / 2 : 1;
        if (m->fusion_layers > m->num_hidden_layers)
            return fail_field(x, ff, "at most model.num_hidden_layers (%d): the fusion layers are the last of the "
                                     "encoder's layers, got %d", m->num_hidden_layers, m->fusion_layers);
        if (m->entity_hidden_size && m->entity_hidden_size % m->entity_attention_heads)
            return fail_field(x, F("knowledge", "entity_attention_heads"), "%d does not divide entity_hidden_size %d",
                              m->entity_attention_heads, m->entity_hidden_size);
        /* 1 with dea false: what kiln itself writes for such a run (every knowledge key), so not refused */
        if (!m->dea && given(x, "knowledge", "dea_weight") && m->dea_weight != 1.0)
            return fail_field(x, F("knowledge", "dea_weight"), "weighs the dEA loss, which \"dea\": false turns off");
        if (!(ob & KOBJ_ENTITIES))
            return fail_field(x, fo, "the knowledge section needs \"entities\" among the objectives (the "
                                     "sampler's per-token entity ids)");
    } else if (ob & KOBJ_ENTITIES) {
        return fail_field(x, fo, "entities feed an ERNIE model: add a knowledge section, e.g. \"knowledge\": "
                                 "{\"embedding\": \"latest\", \"fusion_layers\": 2}");
    }
    if (d->seq_len > m->max_position_embeddings)
        return fail_field(x, F("data", "seq_len"),
                          "at most model.max_position_embeddings (%d), got %d (seq_len counts [CLS] and [SEP])",
                          m->max_position_embeddings, d->seq_len);
    if (d->max_predictions > d->seq_len)
        return fail_field(x, F("data", "max_predictions"), "at most seq_len (%d), got %d", d->seq_len,
                          d->max_predictions);
    if (d->valid_every > 0 && d->valid_fraction == 0)
        return fail_field(x, F("data", "valid_every"),
                          "validation every %d steps needs held-out documents: set data.valid_fraction > 0, "
                          "or valid_every 0",
                          d->valid_every);

    /* budget */
    kbudget_config *b = &c->budget;
    if (b->steps == 0 && b->tokens == 0 && b->seconds == 0)
        return fail(x, EX_CONFIG, "budget: set at least one of budget.steps, budget.tokens, budget.seconds "
                                  "(the run stops at the first reached)");

    /* optimizer */
    if (o->warmup_steps == -1) {
        int64_t steps = b->steps;
        if (b->tokens > 0) {
            int64_t per = (int64_t)d->batch_size * d->seq_len * o->accumulation;
            int64_t t = (b->tokens + per - 1) / per;
            if (steps == 0 || t < steps) steps = t;
        }
        if (steps == 0)
            return fail_field(x, F("optimizer", "warmup_steps"),
                              "-1 (10%% of the run) needs budget.steps or budget.tokens; with a budget in "
                              "seconds only, give a number of steps");
        int64_t w = (steps + 5) / 10;
        o->warmup_steps = (int)(w > INT_MAX ? INT_MAX : w);
    }
    if (b->steps > 0 && o->warmup_steps >= b->steps)
        return fail_field(x, F("optimizer", "warmup_steps"), "must be below budget.steps (%lld), got %d",
                          (long long)b->steps, o->warmup_steps);

    /* checkpoint */
    if (!c->checkpoint.dir[0]) return fail_field(x, F("checkpoint", "dir"), "must not be empty");

    /* launch */
    if (c->launch.hostfile[0] && c->launch.ranks < 2)
        return fail_field(x, F("launch", "hostfile"), "needs launch.ranks > 1 (mpirun's processes)");

    /* distill */
    kdistill_config *k = &c->distill;
    if (!k->teacher[0]) {
        for (int i = 0; i < N_FIELDS; i++)
            if ((FIELDS[i].flags & DISTILL_SEC) && x->given[i] && strcmp(FIELDS[i].key, "teacher"))
                return fail_field(x, &FIELDS[i], "needs distill.teacher (the model to distil from)");
        return 0;
    }
    const int tiny = k->method == KDISTILL_TINYBERT;
    if (k->temperature == 0) k->temperature = tiny ? 1.0 : 2.0;
    if (!given(x, "distill", "init_from_teacher")) k->init_from_teacher = !tiny;
    if (m->type == KMODEL_GPT2 || m->type == KMODEL_ELECTRA)
        return fail_field(x, F("model", "type"), "distillation trains a masked-LM student: distilbert, bert or "
                                                 "albert, not %s", gpt2 ? "gpt2" : "electra");
    if (!(ob & (KOBJ_MLM | KOBJ_WWM | KOBJ_NGRAM)))
        return fail_field(x, fo, "distillation needs a masked-LM objective (mlm, wwm or ngram): the teacher's "
                                 "predictions at the masked positions are the soft targets");
    if (k->student_layers.n && k->student_layers.n != m->num_hidden_layers)
        return fail_field(x, F("distill", "student_layers"),
                          "lists %d teacher layers, the student has %d (one per student layer)",
                          k->student_layers.n, m->num_hidden_layers);
    for (int i = 0; i < N_FIELDS; i++) {
        if (x->given[i] && (FIELDS[i].flags & DISTILL_TB) && !tiny)
            return fail_field(x, &FIELDS[i], "a TinyBERT key: only with distill.method \"tinybert\"");
        if (x->given[i] && (FIELDS[i].flags & DISTILL_DB) && tiny)
            return fail_field(x, &FIELDS[i], "a DistilBERT key: TinyBERT's weights are alpha_att, alpha_hid, "
                                             "alpha_emb, alpha_pred (and alpha_mlm, 0 by default)");
    }
    if (!tiny) {
        if (k->alpha_ce + k->alpha_mlm + k->alpha_cos <= 0)
            return fail_field(x, F("distill", "alpha_ce"), "alpha_ce, alpha_mlm and alpha_cos are all 0: no loss");
    } else {
        if (!given(x, "distill", "alpha_mlm")) k->alpha_mlm = 0;
        if (k->stage == KDISTILL_BOTH && (k->intermediate_fraction <= 0 || k->intermediate_fraction >= 1))
            return fail_field(x, F("distill", "intermediate_fraction"),
                              "stage \"both\" needs a share strictly between 0 and 1, got %g", k->intermediate_fraction);
        if (k->stage == KDISTILL_BOTH && !b->steps && !b->tokens)
            return fail_field(x, F("distill", "stage"), "\"both\" switches stages at a share of the steps: set "
                                                        "budget.steps or budget.tokens, or run each stage alone");
    }
    return 0;
}

int ktrain_config_parse(ktrain_config *c, const char *json, size_t len, const char *const *sets, int n_sets,
                        char *err, size_t errlen)
{
    ctx x;
    memset(&x, 0, sizeof x);
    x.err = err;
    x.errlen = errlen;
    if (errlen) err[0] = '\0';
    ktrain_config_defaults(c);

    json_t *root;
    json_error_t je;
    if (json && len) {
        root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
        if (!root) return fail(&x, EX_DATAERR, "line %d, column %d: %s", je.line, je.column, je.text);
        if (!json_is_object(root)) {
            json_decref(root);
            return fail(&x, EX_DATAERR, "the run config must be a JSON object ({...})");
        }
    } else {
        root = json_object();
    }

    int rc = 0;
    x.set_paths = xcalloc((size_t)(n_sets > 0 ? n_sets : 1), sizeof *x.set_paths);
    for (int i = 0; i < n_sets && !rc; i++) rc = apply_set(&x, root, sets[i]);
    if (!rc) rc = read_tree(&x, c, root);
    if (!rc) rc = finish(&x, c);
    for (int i = 0; i < x.n_set_paths; i++) free(x.set_paths[i]);
    free(x.set_paths);
    json_decref(root);
    if (rc) {
        ktrain_config_defaults(c);
        return rc;
    }
    return 0;
}

/* ---- writing ------------------------------------------------------------ */

static void write_value(kbuf *b, const ktrain_config *c, const field *f)
{
    const char *base = (const char *)c;
    char num[32];
    switch (f->type) {
    case T_INT:
        if ((f->flags & NULLABLE) && *(const int *)(base + f->off) == 4 * c->model.hidden_size)
            kbuf_puts(b, "null"); /* n_inner: the derived 4 n_embd, as GPT2Config writes it */
        else
            kbuf_printf(b, "%d", *(const int *)(base + f->off));
        break;
    case T_I64: kbuf_printf(b, "%lld", (long long)*(const int64_t *)(base + f->off)); break;
    case T_SEED: kbuf_printf(b, "%llu", (unsigned long long)*(const uint64_t *)(base + f->off)); break;
    case T_DBL:
        ktrain_fmt_double(num, *(const double *)(base + f->off));
        kbuf_puts(b, num);
        break;
    case T_BETAS: {
        const double *d = (const double *)(base + f->off);
        ktrain_fmt_double(num, d[0]);
        kbuf_printf(b, "[%s, ", num);
        ktrain_fmt_double(num, d[1]);
        kbuf_printf(b, "%s]", num);
        break;
    }
    case T_STR: {
        const char *s = base + f->off;
        kbuf_json_str(b, s, strnlen(s, f->cap));
        break;
    }
    case T_ENUM: {
        int v = *(const int *)(base + f->off);
        const char *name = NULL;
        for (int k = 0; f->names[k].name; k++)
            if (f->names[k].value == v) name = f->names[k].name;
        if (name) kbuf_printf(b, "\"%s\"", name);
        else kbuf_printf(b, "%d", v); /* not a valid config: refused when read back */
        break;
    }
    case T_BOOL: kbuf_puts(b, *(const int *)(base + f->off) ? "true" : "false"); break;
    case T_EMBREF: {
        int64_t id = *(const int64_t *)(base + f->off);
        if (id > 0) kbuf_printf(b, "%lld", (long long)id);
        else kbuf_puts(b, "\"latest\"");
        break;
    }
    case T_ILIST: {
        const kint_list *l = (const kint_list *)(base + f->off);
        kbuf_putc(b, '[');
        for (int k = 0; k < l->n; k++) kbuf_printf(b, "%s%d", k ? ", " : "", l->v[k]);
        kbuf_putc(b, ']');
        break;
    }
    case T_OBJ: {
        int v = *(const int *)(base + f->off), first = 1;
        kbuf_putc(b, '[');
        for (int k = 0; objectives[k].name; k++)
            if (v & objectives[k].value) {
                kbuf_printf(b, "%s\"%s\"", first ? "" : ", ", objectives[k].name);
                first = 0;
            }
        kbuf_putc(b, ']');
        break;
    }
    }
}

char *ktrain_config_to_json(const ktrain_config *c)
{
    kbuf b = {0};
    kbuf_puts(&b, "{");
    const char *open = NULL; /* section being written */
    int first_top = 1, first_in = 1;
    for (int i = 0; i < N_FIELDS; i++) {
        const field *f = &FIELDS[i];
        if ((f->flags & ELECTRA_ONLY) && c->model.type != KMODEL_ELECTRA) continue;
        if ((f->flags & GPT2_ONLY) && c->model.type != KMODEL_GPT2) continue;
        if ((f->flags & NOT_GPT2) && c->model.type == KMODEL_GPT2) continue;
        if ((f->flags & DISTIL_ONLY) && c->model.type != KMODEL_DISTILBERT) continue;
        if ((f->flags & NOT_GPT2) && !(f->flags & DISTIL_TOO) && c->model.type == KMODEL_DISTILBERT) continue;
        if ((f->flags & DISTILL_SEC) && !c->distill.teacher[0]) continue;
        if ((f->flags & LAUNCH_SEC) && c->launch.ranks <= 1) continue;
        if ((f->flags & KNOW_SEC) && c->model.fusion_layers <= 0) continue;
        if ((f->flags & DISTILL_DB) && c->distill.method != KDISTILL_DISTILBERT) continue;
        if ((f->flags & DISTILL_TB) && c->distill.method != KDISTILL_TINYBERT) continue;
        if (open && strcmp(open, f->sec)) {
            kbuf_puts(&b, "\n  }");
            open = NULL;
        }
        if (*f->sec && !open) {
            kbuf_printf(&b, "%s\n  \"%s\": {", first_top ? "" : ",", f->sec);
            open = f->sec;
            first_top = 0;
            first_in = 1;
        }
        if (open) {
            kbuf_printf(&b, "%s\n    \"%s\": ", first_in ? "" : ",", f->key);
            first_in = 0;
        } else {
            kbuf_printf(&b, "%s\n  \"%s\": ", first_top ? "" : ",", f->key);
            first_top = 0;
        }
        write_value(&b, c, f);
    }
    if (open) kbuf_puts(&b, "\n  }");
    kbuf_puts(&b, "\n}");
    return b.data;
}
