/* trainer/model.c: BERT / ALBERT pretraining models over the kernels of
 * kernels.c (see model.h for the API).
 *
 * What it is: the forward pass, the losses and the hand-written backward pass
 * of Hugging Face's BertForPreTraining and AlbertForPreTraining, with the MLM
 * head evaluated only at the masked positions. What it is not: a general
 * graph; each architecture is a fixed sequence of kernel calls.
 *
 * Names: B rows of the batch, L model sequence length, P masked slots per
 * row, N real tokens of the batch (sum of lengths, <= max_B L), M masked
 * positions of the batch (<= max_B P), V vocabulary, E embedding width,
 * H hidden width, I FFN width, NH heads, D = H / NH, NL layers, NG weight sets
 * (BERT: NL; ALBERT: num_hidden_groups), T token types.
 *
 * Packing. Rows are packed without padding: token t of row b is activation
 * row offs[b] + t, so every dense layer runs over the N real tokens only and
 * attention sees each row's own tokens (the key padding mask). Padded
 * positions do not influence any loss in the padded formulation either, so
 * losses and gradients are those of Hugging Face's model on the padded batch.
 *
 * Forward (train), per layer l with weights of group g(l), dropout p_h / p_a:
 *   x0 = LN(word[id] + pos[t] + type[tt]); x0 = drop(x0)       (N, E)
 *   h = ALBERT ? x0 Wmap^T + bmap : x0                           (N, H)
 *   qkv = h Wqkv^T + bqkv                                        (N, 3H)
 *   ctx = attention(qkv) (probabilities dropped with p_a)        (N, H)
 *   xs1 = h + drop(ctx Wo^T + bo); h1 = LN1(xs1)                 (N, H)
 *   ffpre = h1 Wf^T + bf; ffact = gelu(ffpre)                    (N, I)
 *   xs2 = h1 + [BERT: drop](ffact Wfo^T + bfo); h = LN2(xs2)     (N, H)
 *   MLM at the M masked rows: logits = head(h[rows])             (M, V)
 *   sentence: logits = Wc tanh(Wp h[CLS] + bp) + bc               (B, 2)
 * (ALBERT has no dropout after its FFN, as Hugging Face's AlbertLayer; the
 * sentence classifier has no dropout.) GPT-2 (build_gpt2) is the pre-LN
 * pass (layer_forward_preln, final LayerNorm ln_f, causal attention) on
 * x0 = drop_embd(wte[id] + wpe[t]) (no token types, no LayerNorm), with
 * the LM head tied to wte. DistilBERT (build_distilbert) is the post-LN
 * pass on x0 = drop(LN(word[id] + pos[t])) (no token types) without the
 * dropout after the attention output, with BERT's MLM head under its names,
 * or DistilBertForSequenceClassification's head (no tanh pooler):
 *   logits = Wc drop_c(relu(Wp h[CLS] + bp)) + bc                (B, K)
 * with drop_c = seq_classif_dropout unless the spec says otherwise.
 *
 * Memory. Parameters and gradients: one arena each (64-byte aligned slices;
 * query/key/value weights and biases of a layer are adjacent, so one product
 * computes all three). Activations: one arena sized for (max_B, L, P) at
 * creation, per layer 8 (N, H) + 2 (N, I) + B NH L L floats plus the heads
 * and the backward buffers; nothing is allocated per step.
 *
 * Dropout keys: site s of a pass draws from krng_key(dropout_key, 'D', s, 0)
 * with s = 4 l + {0 attention probabilities, 1 attention output, 2 FFN
 * output} and s = 1 << 20 for the embeddings; element index = activation
 * index (row of the packed layout times width plus column).
 */
#define _DEFAULT_SOURCE /* madvise */
#include "trainer/model.h"

#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sysexits.h>

#include "trainer/heads.h"
#include "trainer/kernels.h"
#include "trainer/model_impl.h"
#include "util/util.h"

/* ---- construction --------------------------------------------------------- */

typedef struct builder {
    kmodel *m;
    const ktower_place *place; /* NULL: a model of its own */
    int cap;
    size_t next; /* next free float of the arena */
    int fail;
} builder;

static size_t take(builder *b, size_t n)
{
    size_t off = (b->next + 15) / 16 * 16;
    b->next = off + n;
    return off;
}

/* Adds tensor `name` (printf format) at offset off (SIZE_MAX = take a new slice). */
static size_t add(builder *b, size_t off, int decay, int kind, int ndim, int64_t d0, int64_t d1, const char *fmt,
                  ...) __attribute__((format(printf, 8, 9)));
static size_t add(builder *b, size_t off, int decay, int kind, int ndim, int64_t d0, int64_t d1, const char *fmt, ...)
{
    kmodel *m = b->m;
    if (m->nt == b->cap) {
        int cap = b->cap ? 2 * b->cap : 64;
        ktensor *t = realloc(m->t, (size_t)cap * sizeof *t);
        if (t) m->t = t;
        if (!t) {
            b->fail = 1;
            return 0;
        }
        b->cap = cap;
    }
    ktensor *t = &m->t[m->nt];
    memset(t, 0, sizeof *t);
    char name[sizeof t->name];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    snprintf(t->name, sizeof t->name, "%s%s", b->place && b->place->prefix ? b->place->prefix : "", name);
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = ndim > 1 ? d1 : 0;
    t->numel = (size_t)d0 * (ndim > 1 ? (size_t)d1 : 1);
    t->offset = off == SIZE_MAX ? take(b, t->numel) : off;
    t->decay = decay;
    t->init = kind;
    m->nt++;
    return t->offset;
}

#define W2(b, d0, d1, ...) add(b, SIZE_MAX, 1, INIT_NORMAL, 2, d0, d1, __VA_ARGS__)
#define BIAS(b, d0, ...) add(b, SIZE_MAX, 0, INIT_ZERO, 1, d0, 0, __VA_ARGS__)
#define LNG(b, d0, ...) add(b, SIZE_MAX, 0, INIT_ONE, 1, d0, 0, __VA_ARGS__)

/* query/key/value weights and biases at (prefix)(mid)(name k), stacked; the
 * names are BERT's query, key, value (NULL) or those of qkv (DistilBERT's) */
static void add_qkv_named(builder *b, layer_off *o, int H, const char *pre, const char *mid,
                          const char *const qkv_names[3])
{
    static const char *const bert[3] = {"query", "key", "value"};
    const char *const *qkv = qkv_names ? qkv_names : bert;
    o->qkv_w = take(b, (size_t)3 * H * H);
    o->qkv_b = take(b, (size_t)3 * H);
    for (int k = 0; k < 3; k++) {
        add(b, o->qkv_w + (size_t)k * H * H, 1, INIT_NORMAL, 2, H, H, "%s%s%s.weight", pre, mid, qkv[k]);
        add(b, o->qkv_b + (size_t)k * H, 0, INIT_ZERO, 1, H, 0, "%s%s%s.bias", pre, mid, qkv[k]);
    }
}
static void add_qkv(builder *b, layer_off *o, int H, const char *pre, const char *mid)
{
    add_qkv_named(b, o, H, pre, mid, NULL);
}

/* The heads both architectures name alike: the per-token binary head
 * (ELECTRA's discriminator_predictions) and the sequence classifier. */
static void add_task_heads(builder *b)
{
    kmodel *m = b->m;
    const int H = m->H;
    if (m->s.heads & KHEAD_TOKEN) {
        m->tok_w = W2(b, H, H, "discriminator_predictions.dense.weight");
        m->tok_b = BIAS(b, H, "discriminator_predictions.dense.bias");
        m->tok_wp = W2(b, 1, H, "discriminator_predictions.dense_prediction.weight");
        m->tok_bp = BIAS(b, 1, "discriminator_predictions.dense_prediction.bias");
    }
    if (m->ncls && m->type == KMODEL_ELECTRA) { /* ElectraClassificationHead */
        m->pool_w = W2(b, H, H, "classifier.dense.weight");
        m->pool_b = BIAS(b, H, "classifier.dense.bias");
        m->clf_w = W2(b, m->ncls, H, "classifier.out_proj.weight");
        m->clf_b = BIAS(b, m->ncls, "classifier.out_proj.bias");
    } else if (m->ncls) {
        m->clf_w = W2(b, m->ncls, H, "classifier.weight");
        m->clf_b = BIAS(b, m->ncls, "classifier.bias");
    }
}

/* ERNIE's tensors (c.fusion_layers > 0), under kiln's names (docs/ernie.md):
 * the entity table (frozen: the optimizer neither updates nor decays it)
 * and the projection to the stream's width after the text embeddings; each
 * fusion layer's entity side right after its text layer (so that layer
 * l's gradients are final when its backward ends: the data-parallel hook);
 * the dEA head after the MLM head. */
static void add_ernie_embeddings(builder *b)
{
    kmodel *m = b->m;
    if (!m->NF) return;
    m->ent = add(b, SIZE_MAX, 0, INIT_ZERO, 2, m->KE, m->DE, "ernie.entity_embeddings.weight");
    m->t[m->nt - 1].frozen = 1;
    if (m->W != m->DE) {
        m->emap_w = W2(b, m->W, m->DE, "ernie.entity_projection.weight");
        m->emap_b = BIAS(b, m->W, "ernie.entity_projection.bias");
    }
}

static void add_ernie_layer(builder *b, int l)
{
    kmodel *m = b->m;
    const int f = l - (m->NL - m->NF), W = m->W, I = m->I;
    if (!m->NF || f < 0) return;
    fusion_off *o = &m->fw[f];
    char p[64];
    snprintf(p, sizeof p, "ernie.encoder.layer.%d.", l);
    o->att = f > 0;
    if (o->att) {
        static const char *const qkv[3] = {"query", "key", "value"};
        o->eqkv_w = take(b, (size_t)3 * W * W);
        o->eqkv_b = take(b, (size_t)3 * W);
        for (int k = 0; k < 3; k++) {
            add(b, o->eqkv_w + (size_t)k * W * W, 1, INIT_NORMAL, 2, W, W, "%sattention_ent.self.%s.weight", p, qkv[k]);
            add(b, o->eqkv_b + (size_t)k * W, 0, INIT_ZERO, 1, W, 0, "%sattention_ent.self.%s.bias", p, qkv[k]);
        }
        o->eao_w = W2(b, W, W, "%sattention_ent.output.dense.weight", p);
        o->eao_b = BIAS(b, W, "%sattention_ent.output.dense.bias", p);
        o->eln1_g = LNG(b, W, "%sattention_ent.output.LayerNorm.weight", p);
        o->eln1_b = BIAS(b, W, "%sattention_ent.output.LayerNorm.bias", p);
    }
    o->fe_w = W2(b, I, W, "%sintermediate.dense_ent.weight", p);
    o->out = f + 1 < m->NF;
    if (o->out) {
        o->feo_w = W2(b, W, I, "%soutput.dense_ent.weight", p);
        o->feo_b = BIAS(b, W, "%soutput.dense_ent.bias", p);
        o->eln2_g = LNG(b, W, "%soutput.LayerNorm_ent.weight", p);
        o->eln2_b = BIAS(b, W, "%soutput.LayerNorm_ent.bias", p);
    }
}

static void add_ernie_head(builder *b)
{
    kmodel *m = b->m;
    if (!(m->s.heads & KHEAD_DEA)) return;
    m->dea_w = W2(b, m->DE, m->H, "cls.predictions_ent.transform.dense.weight");
    m->dea_b = BIAS(b, m->DE, "cls.predictions_ent.transform.dense.bias");
    m->dea_ln_g = LNG(b, m->DE, "cls.predictions_ent.transform.LayerNorm.weight");
    m->dea_ln_b = BIAS(b, m->DE, "cls.predictions_ent.transform.LayerNorm.bias");
}

static void build_albert(builder *b)
{
    kmodel *m = b->m;
    const int V = m->V, E = m->E, H = m->H, I = m->I;
    m->word = W2(b, V, E, "albert.embeddings.word_embeddings.weight");
    m->pos = W2(b, m->c.max_position_embeddings, E, "albert.embeddings.position_embeddings.weight");
    m->typ = W2(b, m->T, E, "albert.embeddings.token_type_embeddings.weight");
    m->eln_g = LNG(b, E, "albert.embeddings.LayerNorm.weight");
    m->eln_b = BIAS(b, E, "albert.embeddings.LayerNorm.bias");
    add_ernie_embeddings(b);
    m->map_w = W2(b, H, E, "albert.encoder.embedding_hidden_mapping_in.weight");
    m->map_b = BIAS(b, H, "albert.encoder.embedding_hidden_mapping_in.bias");
    for (int g = 0; g < m->NG; g++) {
        char p[96];
        snprintf(p, sizeof p, "albert.encoder.albert_layer_groups.%d.albert_layers.0.", g);
        layer_off *o = &m->lw[g];
        o->ln2_g = LNG(b, H, "%sfull_layer_layer_norm.weight", p);
        o->ln2_b = BIAS(b, H, "%sfull_layer_layer_norm.bias", p);
        add_qkv(b, o, H, p, "attention.");
        o->ao_w = W2(b, H, H, "%sattention.dense.weight", p);
        o->ao_b = BIAS(b, H, "%sattention.dense.bias", p);
        o->ln1_g = LNG(b, H, "%sattention.LayerNorm.weight", p);
        o->ln1_b = BIAS(b, H, "%sattention.LayerNorm.bias", p);
        o->ff_w = W2(b, I, H, "%sffn.weight", p);
        o->ff_b = BIAS(b, I, "%sffn.bias", p);
        o->fo_w = W2(b, H, I, "%sffn_output.weight", p);
        o->fo_b = BIAS(b, H, "%sffn_output.bias", p);
    }
    for (int l = 0; l < m->NL; l++) add_ernie_layer(b, l); /* shared text weights; the entity side per layer */
    if (m->s.pre_ln) {
        m->fln_g = LNG(b, H, "albert.encoder.final_layer_norm.weight");
        m->fln_b = BIAS(b, H, "albert.encoder.final_layer_norm.bias");
    }
    if (m->sent || m->ncls) {
        m->pool_w = W2(b, H, H, "albert.pooler.weight");
        m->pool_b = BIAS(b, H, "albert.pooler.bias");
    }
    if (m->s.heads & KHEAD_MLM) {
        m->mlm_bias = BIAS(b, V, "predictions.bias");
        m->mlm_ln_g = LNG(b, E, "predictions.LayerNorm.weight");
        m->mlm_ln_b = BIAS(b, E, "predictions.LayerNorm.bias");
        m->mlm_w = W2(b, E, H, "predictions.dense.weight");
        m->mlm_b = BIAS(b, E, "predictions.dense.bias");
    }
    add_ernie_head(b);
    add_task_heads(b);
    if (m->sent) {
        m->cls_w = W2(b, 2, H, "sop_classifier.classifier.weight");
        m->cls_b = BIAS(b, 2, "sop_classifier.classifier.bias");
    }
}

/* The names of one post-LN layer's tensors after its prefix: q, k, v under
 * `mid` (stacked, add_qkv_named), then the attention output, its LayerNorm,
 * the two FFN linears and the output LayerNorm (".weight" / ".bias" added). */
typedef struct postln_names {
    const char *mid, *qkv[3], *ao, *ln1, *ff, *fo, *ln2;
} postln_names;
static const postln_names BERT_LAYER = {"attention.self.", {"query", "key", "value"}, "attention.output.dense",
                                        "attention.output.LayerNorm", "intermediate.dense", "output.dense",
                                        "output.LayerNorm"};
static const postln_names DISTIL_LAYER = {"attention.", {"q_lin", "k_lin", "v_lin"}, "attention.out_lin",
                                          "sa_layer_norm", "ffn.lin1", "ffn.lin2", "output_layer_norm"};

/* One post-LN layer's weights in state_dict order, named "<p><name>". */
static void add_postln_layer(builder *b, layer_off *o, int H, int I, const char *p, const postln_names *n)
{
    add_qkv_named(b, o, H, p, n->mid, n->qkv);
    o->ao_w = W2(b, H, H, "%s%s.weight", p, n->ao);
    o->ao_b = BIAS(b, H, "%s%s.bias", p, n->ao);
    o->ln1_g = LNG(b, H, "%s%s.weight", p, n->ln1);
    o->ln1_b = BIAS(b, H, "%s%s.bias", p, n->ln1);
    o->ff_w = W2(b, I, H, "%s%s.weight", p, n->ff);
    o->ff_b = BIAS(b, I, "%s%s.bias", p, n->ff);
    o->fo_w = W2(b, H, I, "%s%s.weight", p, n->fo);
    o->fo_b = BIAS(b, H, "%s%s.bias", p, n->fo);
    o->ln2_g = LNG(b, H, "%s%s.weight", p, n->ln2);
    o->ln2_b = BIAS(b, H, "%s%s.bias", p, n->ln2);
}

/* BERT's encoder layers (ELECTRA's too): weight set g under
 * "<model>.encoder.layer.g." (model = "bert" or "electra"). */
static void add_bert_layers(builder *b, const char *model)
{
    kmodel *m = b->m;
    const int H = m->H, I = m->I;
    for (int g = 0; g < m->NG; g++) {
        char p[64];
        snprintf(p, sizeof p, "%s.encoder.layer.%d.", model, g);
        layer_off *o = &m->lw[g];
        add_postln_layer(b, o, H, I, p, &BERT_LAYER);
        add_ernie_layer(b, g); /* BERT: weight set g is layer g */
    }
}

static void build_bert(builder *b)
{
    kmodel *m = b->m;
    const int V = m->V, H = m->H;
    m->word = W2(b, V, H, "bert.embeddings.word_embeddings.weight");
    m->pos = W2(b, m->c.max_position_embeddings, H, "bert.embeddings.position_embeddings.weight");
    m->typ = W2(b, m->T, H, "bert.embeddings.token_type_embeddings.weight");
    m->eln_g = LNG(b, H, "bert.embeddings.LayerNorm.weight");
    m->eln_b = BIAS(b, H, "bert.embeddings.LayerNorm.bias");
    add_ernie_embeddings(b);
    add_bert_layers(b, "bert");
    if (m->s.pre_ln) {
        m->fln_g = LNG(b, H, "bert.encoder.final_layer_norm.weight");
        m->fln_b = BIAS(b, H, "bert.encoder.final_layer_norm.bias");
    }
    if (m->sent || m->ncls) {
        m->pool_w = W2(b, H, H, "bert.pooler.dense.weight");
        m->pool_b = BIAS(b, H, "bert.pooler.dense.bias");
    }
    if (m->s.heads & KHEAD_MLM) {
        m->mlm_bias = BIAS(b, V, "cls.predictions.bias");
        m->mlm_w = W2(b, H, H, "cls.predictions.transform.dense.weight");
        m->mlm_b = BIAS(b, H, "cls.predictions.transform.dense.bias");
        m->mlm_ln_g = LNG(b, H, "cls.predictions.transform.LayerNorm.weight");
        m->mlm_ln_b = BIAS(b, H, "cls.predictions.transform.LayerNorm.bias");
    }
    add_ernie_head(b);
    add_task_heads(b);
    if (m->sent) {
        m->cls_w = W2(b, 2, H, "cls.seq_relationship.weight");
        m->cls_b = BIAS(b, 2, "cls.seq_relationship.bias");
    }
}

/* ELECTRA's encoder (ElectraModel): BERT's layers under "electra.", embeddings
 * of width E with their own projection to H when E != H; the generator's MLM
 * head (ElectraGeneratorPredictions + the tied generator_lm_head); the
 * discriminator's per-token head and the classification head by
 * add_task_heads. A tower of a pair takes the embeddings at the pair's
 * shared offsets. */
static void build_electra(builder *b)
{
    kmodel *m = b->m;
    const int V = m->V, E = m->E, H = m->H;
    const size_t *sh = b->place ? b->place->shared : NULL;
    m->word = add(b, sh ? sh[0] : SIZE_MAX, 1, INIT_NORMAL, 2, V, E, "electra.embeddings.word_embeddings.weight");
    m->pos = add(b, sh ? sh[1] : SIZE_MAX, 1, INIT_NORMAL, 2, m->c.max_position_embeddings, E,
                 "electra.embeddings.position_embeddings.weight");
    m->typ = add(b, sh ? sh[2] : SIZE_MAX, 1, INIT_NORMAL, 2, m->T, E, "electra.embeddings.token_type_embeddings.weight");
    m->eln_g = add(b, sh ? sh[3] : SIZE_MAX, 0, INIT_ONE, 1, E, 0, "electra.embeddings.LayerNorm.weight");
    m->eln_b = add(b, sh ? sh[4] : SIZE_MAX, 0, INIT_ZERO, 1, E, 0, "electra.embeddings.LayerNorm.bias");
    if (sh) m->nshared = 5;
    if (m->map) {
        m->map_w = W2(b, H, E, "electra.embeddings_project.weight");
        m->map_b = BIAS(b, H, "electra.embeddings_project.bias");
    }
    add_bert_layers(b, "electra");
    if (m->s.heads & KHEAD_MLM) {
        m->mlm_ln_g = LNG(b, E, "generator_predictions.LayerNorm.weight");
        m->mlm_ln_b = BIAS(b, E, "generator_predictions.LayerNorm.bias");
        m->mlm_w = W2(b, E, H, "generator_predictions.dense.weight");
        m->mlm_b = BIAS(b, E, "generator_predictions.dense.bias");
        m->mlm_bias = BIAS(b, V, "generator_lm_head.bias");
    }
    add_task_heads(b);
}

/* DistilBertForMaskedLM (transformers' modeling_distilbert): word + learned
 * position embeddings (no token types), LayerNorm; BERT's post-LN layers
 * under DistilBERT's names (q_lin, k_lin, v_lin stacked like add_qkv's,
 * out_lin, sa_layer_norm, ffn.lin1, ffn.lin2, output_layer_norm); the MLM
 * head is BERT's (vocab_transform, the activation, vocab_layer_norm, the
 * projector tied to the word embeddings: the alias vocab_projector.weight,
 * registry.c, with its own bias). No pooler, no sentence head.
 * DistilBertForSequenceClassification: the encoder, pre_classifier (H, H)
 * at the pooler's offsets (pool_w, pool_b: ReLU instead of tanh) and
 * classifier (K, H), in its state_dict order. */
static void build_distilbert(builder *b)
{
    kmodel *m = b->m;
    const int V = m->V, H = m->H, I = m->I;
    m->word = W2(b, V, H, "distilbert.embeddings.word_embeddings.weight");
    m->pos = W2(b, m->c.max_position_embeddings, H, "distilbert.embeddings.position_embeddings.weight");
    m->eln_g = LNG(b, H, "distilbert.embeddings.LayerNorm.weight");
    m->eln_b = BIAS(b, H, "distilbert.embeddings.LayerNorm.bias");
    for (int g = 0; g < m->NG; g++) {
        char p[64];
        snprintf(p, sizeof p, "distilbert.transformer.layer.%d.", g);
        layer_off *o = &m->lw[g];
        add_postln_layer(b, o, H, I, p, &DISTIL_LAYER);
    }
    if (m->s.heads & KHEAD_MLM) {
        m->mlm_w = W2(b, H, H, "vocab_transform.weight");
        m->mlm_b = BIAS(b, H, "vocab_transform.bias");
        m->mlm_ln_g = LNG(b, H, "vocab_layer_norm.weight");
        m->mlm_ln_b = BIAS(b, H, "vocab_layer_norm.bias");
        m->mlm_bias = BIAS(b, V, "vocab_projector.bias");
    }
    if (m->ncls) {
        m->pool_w = W2(b, H, H, "pre_classifier.weight");
        m->pool_b = BIAS(b, H, "pre_classifier.bias");
    }
    add_task_heads(b);
}

/* GPT-2's Conv1D (x W + b, W [in, out]) as a dense layer: the tensor just
 * added is kept as torch.nn.Linear's [out, in] and exported transposed. */
static size_t transposed(builder *b, size_t off)
{
    if (!b->fail) b->m->t[b->m->nt - 1].transpose = 1;
    return off;
}
#define CONV1D(b, kind, out, in, ...) transposed(b, add(b, SIZE_MAX, 1, kind, 2, out, in, __VA_ARGS__))

/* GPT2LMHeadModel (transformers' modeling_gpt2): word + learned position
 * embeddings (no token types, no embedding LayerNorm), pre-LN blocks whose
 * query, key and value come from one c_attn (stacked like add_qkv's, so the
 * layer pass is the BERT family's), a final ln_f; the LM head is the word
 * embeddings (the alias lm_head.weight, registry.c). */
static void build_gpt2(builder *b)
{
    kmodel *m = b->m;
    const int V = m->V, H = m->H, I = m->I;
    m->word = W2(b, V, H, "transformer.wte.weight");
    m->pos = W2(b, m->c.max_position_embeddings, H, "transformer.wpe.weight");
    for (int g = 0; g < m->NG; g++) {
        char p[48];
        snprintf(p, sizeof p, "transformer.h.%d.", g);
        layer_off *o = &m->lw[g];
        o->ln1_g = LNG(b, H, "%sln_1.weight", p);
        o->ln1_b = BIAS(b, H, "%sln_1.bias", p);
        o->qkv_w = CONV1D(b, INIT_NORMAL, 3 * (int64_t)H, H, "%sattn.c_attn.weight", p); /* q, k, v rows */
        o->qkv_b = BIAS(b, 3 * (int64_t)H, "%sattn.c_attn.bias", p);
        o->ao_w = CONV1D(b, KINIT_NORMAL_RESID, H, H, "%sattn.c_proj.weight", p);
        o->ao_b = BIAS(b, H, "%sattn.c_proj.bias", p);
        o->ln2_g = LNG(b, H, "%sln_2.weight", p);
        o->ln2_b = BIAS(b, H, "%sln_2.bias", p);
        o->ff_w = CONV1D(b, INIT_NORMAL, I, H, "%smlp.c_fc.weight", p);
        o->ff_b = BIAS(b, I, "%smlp.c_fc.bias", p);
        o->fo_w = CONV1D(b, KINIT_NORMAL_RESID, H, I, "%smlp.c_proj.weight", p);
        o->fo_b = BIAS(b, H, "%smlp.c_proj.bias", p);
    }
    m->fln_g = LNG(b, H, "transformer.ln_f.weight");
    m->fln_b = BIAS(b, H, "transformer.ln_f.bias");
}

/* The model registry: model.type -> the builder of its parameter registry
 * (names, shapes, flags in state_dict order). The pass is shared: blocks
 * and heads read the offsets the builder set. A new architecture is a new
 * row here and a builder. */
typedef struct model_kind {
    int type;
    const char *name;
    void (*build)(builder *b);
} model_kind;
static const model_kind MODELS[] = {
    {KMODEL_BERT, "bert", build_bert},
    {KMODEL_ALBERT, "albert", build_albert},
    {KMODEL_ELECTRA, "electra", build_electra},
    {KMODEL_GPT2, "gpt2", build_gpt2},
    {KMODEL_DISTILBERT, "distilbert", build_distilbert},
};
static const model_kind *model_of(int type)
{
    for (size_t i = 0; i < sizeof MODELS / sizeof MODELS[0]; i++)
        if (MODELS[i].type == type) return &MODELS[i];
    return NULL;
}

/* Zeroed floats, 64-byte aligned; from 2 MB up, aligned to and rounded up to
 * 2 MB pages with the kernel asked for transparent huge pages (the products
 * walk activations with strides of kilobytes: 4 KB pages cost a TLB miss
 * every few rows). Freed with free(). */
static void *falloc(size_t floats)
{
    const size_t huge = (size_t)2 << 20;
    size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    if (bytes == 0) bytes = 64;
    void *p;
    if (bytes >= huge) {
        bytes = (bytes + huge - 1) / huge * huge;
        p = aligned_alloc(huge, bytes);
#ifdef MADV_HUGEPAGE
        if (p) madvise(p, bytes, MADV_HUGEPAGE); /* a hint: failure changes nothing */
#endif
    } else {
        p = aligned_alloc(64, bytes);
    }
    if (p) memset(p, 0, bytes);
    return p;
}

/* Carves the activation arena (two passes: sizing with base NULL, then real). */
static size_t carve(kmodel *m, float *base)
{
    const size_t N = (size_t)m->maxB * m->L, M = (size_t)m->maxB * m->P, B = (size_t)m->maxB;
    const size_t E = m->E, H = m->H, I = m->I, V = m->V, L = m->L, NH = m->NH;
    const int bw = !m->inference; /* backward buffers */
    size_t at = 0;
#define CARVE(ptr, n) KCARVE(base, at, ptr, n)
    if (!m->gpt2) {
        CARVE(m->emb_x, N * E);
        CARVE(m->emb_mean, N);
        CARVE(m->emb_rstd, N);
    }
    CARVE(m->emb_ln, N * E); /* GPT-2: the sum of the embeddings */
    if (m->p_emb > 0) CARVE(m->emb_drop, N * E);
    if (m->map) CARVE(m->h0, N * H);
    for (int l = 0; l < m->NL; l++) {
        layer_act *a = &m->la[l];
        CARVE(a->qkv, N * 3 * H);
        CARVE(a->probs, B * NH * L * L);
        CARVE(a->ctx, N * H);
        CARVE(a->xs1, N * H);
        CARVE(a->m1, N);
        CARVE(a->r1, N);
        CARVE(a->h1, N * H);
        CARVE(a->ffpre, N * I);
        CARVE(a->ffact, N * I);
        CARVE(a->xs2, N * H);
        CARVE(a->m2, N);
        CARVE(a->r2, N);
        CARVE(a->out, N * H);
    }
    if (m->s.pre_ln) {
        CARVE(m->fin, N * H);
        CARVE(m->fmean, N);
        CARVE(m->frstd, N);
    }
    if (M) {
        CARVE(m->mx, M * H);
        CARVE(m->mpre, M * E);
        CARVE(m->ma, M * E);
        CARVE(m->mh, M * E);
        CARVE(m->mmean, M);
        CARVE(m->mrstd, M);
        CARVE(m->logits, M * V);
        if (bw) {
            CARVE(m->mdh, M * E);
            CARVE(m->mda, M * E);
            CARVE(m->dmx, M * H);
        }
        CARVE(m->mloss, M);
        CARVE(m->mgscale, M);
        CARVE(m->mweight, M);
    }
    if (m->sent || m->ncls) {
        CARVE(m->cls, B * H);
        CARVE(m->pooled, B * H);
        if (bw) {
            CARVE(m->dpooled, B * H);
            CARVE(m->dcls, B * H);
        }
    }
    if (m->sent) {
        CARVE(m->slog, B * 2);
        CARVE(m->sloss, B);
        CARVE(m->sgscale, B);
    }
    if (m->ncls) {
        CARVE(m->cz, B * H); /* ELECTRA: the dropped-out [CLS] rows; pooled holds gelu'(pre), cls the dense output;
                                DistilBERT: pooled = relu(pre_classifier(cls)), cz its dropout */
        CARVE(m->clog, B * (size_t)m->ncls);
        CARVE(m->closs, B);
        CARVE(m->cgscale, B);
        if (bw) CARVE(m->dz, B * H);
    }
    if (m->s.heads & KHEAD_TOKEN) {
        CARVE(m->tpre, N * H);
        CARVE(m->th, N * H);
        CARVE(m->tlogit, N);
        if (bw) {
            CARVE(m->tdh, N * H);
            CARVE(m->tdlogit, N);
        }
    }
    if (m->s.heads & KHEAD_LM) {
        CARVE(m->lchunk, N * (size_t)(m->s.lm_chunk < (int)V ? m->s.lm_chunk : (int)V));
        /* training keeps the logits for backward when they fit (else backward recomputes them) */
        if (bw && N * (size_t)V * sizeof(float) <= KMODEL_LM_KEEP_MAX) CARVE(m->lkeep, N * (size_t)V);
        CARVE(m->lmax, N);
        CARVE(m->llse, N);
        CARVE(m->llab, N);
        CARVE(m->lgscale, N);
    }
    if (bw) {
        CARVE(m->gA, N * H);
        CARVE(m->gB, N * H);
        CARVE(m->gC, N * H);
        CARVE(m->gI, N * I);
        CARVE(m->gQKV, N * 3 * H);
        if (m->map) CARVE(m->gE, N * E);
    }
#undef CARVE
    if (m->NF) at = kernie_carve(m, base, at);
    return at;
}

#define FAIL(...)                                  \
    do {                                           \
        if (err && errlen) snprintf(err, errlen, __VA_ARGS__); \
        kmodel_free(m);                            \
        return NULL;                               \
    } while (0)

kmodel_spec kmodel_spec_pretrain(int max_B, int L, int P, int with_sentence_head)
{
    kmodel_spec s = {.heads = KHEAD_MLM | (with_sentence_head ? KHEAD_SENTENCE : 0), .max_B = max_B, .L = L,
                     .P = P, .classifier_dropout = -1};
    return s;
}

kmodel_spec kmodel_spec_pretrain_of(const kmodel_config *c, int max_B, int L, int P, int with_sentence_head)
{
    kmodel_spec s = kmodel_spec_pretrain(max_B, L, P, with_sentence_head);
    if (c->type == KMODEL_ELECTRA) s.heads |= KHEAD_TOKEN;
    if (c->type == KMODEL_GPT2) s.heads = KHEAD_LM, s.P = 0, s.pre_ln = 1, s.causal = 1; /* GPT2LMHeadModel */
    if (c->fusion_layers > 0 && c->dea) s.heads |= KHEAD_DEA; /* ERNIE */
    return s;
}

kmodel *kmodel_new(const kmodel_config *c, int max_B, int L, int P, int with_sentence_head, char *err,
                   size_t errlen)
{
    kmodel_spec s = kmodel_spec_pretrain_of(c, max_B, L, P, with_sentence_head);
    return kmodel_create(c, &s, err, errlen);
}

kmodel *kmodel_create_tower(const kmodel_config *c, const kmodel_spec *spec, const ktower_place *place, char *err,
                            size_t errlen, int registry_only)
{
    const int max_B = spec->max_B, L = spec->L;
    const int P = spec->heads & KHEAD_MLM ? spec->P : 0, with_sentence_head = (spec->heads & KHEAD_SENTENCE) != 0;
    kmodel *m = calloc(1, sizeof *m);
    if (!m) {
        if (err && errlen) snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->c = *c;
    m->s = *spec;
    m->s.P = P;
    m->type = c->type;
    m->inference = spec->inference ? 1 : 0;
    if (spec->heads & ~(KHEAD_MLM | KHEAD_SENTENCE | KHEAD_CLASSIFY | KHEAD_TOKEN | KHEAD_LM | KHEAD_DEA))
        FAIL("model: unknown heads 0x%x", spec->heads);
    if ((spec->heads & KHEAD_LM) && c->type != KMODEL_BERT && c->type != KMODEL_GPT2 &&
        c->embedding_size != c->hidden_size)
        FAIL("model: the LM head is tied to the word embeddings and needs embedding_size = hidden_size");
    if (c->type == KMODEL_ELECTRA && (spec->heads & KHEAD_SENTENCE))
        FAIL("model: ELECTRA has no sentence-pair head (no sop / nsp)");
    if (c->type == KMODEL_ELECTRA && (spec->pre_ln || spec->causal))
        FAIL("model: ELECTRA's layers are post-LN and bidirectional");
    if (c->type == KMODEL_GPT2 && (!spec->pre_ln || !spec->causal || (spec->heads & ~KHEAD_LM)))
        FAIL("model: GPT-2 is pre-LN and causal, with the LM head only");
    if (c->type == KMODEL_DISTILBERT && (spec->heads & ~(KHEAD_MLM | KHEAD_CLASSIFY)))
        FAIL("model: DistilBERT has the masked-LM and sequence-classification heads only (DistilBertForMaskedLM, "
             "DistilBertForSequenceClassification: no sentence-pair or per-token head)");
    if (c->type == KMODEL_DISTILBERT && (spec->pre_ln || spec->causal))
        FAIL("model: DistilBERT's layers are post-LN and bidirectional");
    if (spec->lm_chunk < 0) FAIL("model: lm_chunk %d is negative", spec->lm_chunk);
    if (!m->s.lm_chunk) m->s.lm_chunk = 4096;
    if (spec->heads & KHEAD_CLASSIFY) {
        if (spec->num_labels < 1 || spec->num_labels > 65536)
            FAIL("task.num_labels: %d is not in [1, 65536] (1 = regression)", spec->num_labels);
        m->ncls = spec->num_labels;
        /* the default: transformers' (BERT: hidden_dropout_prob; DistilBERT: seq_classif_dropout) */
        double pc = spec->classifier_dropout >= 0         ? spec->classifier_dropout
                    : c->type == KMODEL_DISTILBERT ? c->seq_classif_dropout
                                                   : c->hidden_dropout_prob;
        if (!(pc >= 0 && pc < 1)) FAIL("classifier_dropout: %g is not in [0, 1)", pc);
        m->p_cls = (float)pc;
    }
    if (!model_of(m->type)) FAIL("model.type: unknown model type %d", c->type);
    m->V = c->vocab_size;
    m->H = c->hidden_size;
    m->gpt2 = m->type == KMODEL_GPT2;
    m->distil = m->type == KMODEL_DISTILBERT;
    m->E = m->type == KMODEL_BERT || m->gpt2 || m->distil ? c->hidden_size : c->embedding_size;
    m->I = c->intermediate_size;
    m->NH = c->num_attention_heads;
    m->NL = c->num_hidden_layers;
    m->NG = m->type != KMODEL_ALBERT ? c->num_hidden_layers : c->num_hidden_groups;
    m->map = m->type == KMODEL_ALBERT || (m->type == KMODEL_ELECTRA && m->E != m->H);
    m->mlm_act = m->type == KMODEL_ELECTRA ? KACT_GELU : c->hidden_act; /* HF: the generator head's GELU is fixed */
    m->sub = place != NULL;
    m->T = c->type_vocab_size;
    m->act = c->hidden_act;
    m->eps = (float)c->layer_norm_eps;
    m->p_hidden = (float)c->hidden_dropout_prob;
    m->p_emb = m->gpt2 ? (float)c->embd_dropout_prob : m->p_hidden;
    m->p_attn = (float)c->attention_probs_dropout_prob;
    m->maxB = max_B;
    m->L = L;
    m->P = P;
    m->sent = with_sentence_head ? 1 : 0;
    if (m->V < 1 || m->V > (1 << 30)) FAIL("model.vocab_size: %d is not in [1, 2^30]", m->V);
    if (m->H < 1 || m->H > 65536) FAIL("model.hidden_size: %d is not in [1, 65536]", m->H);
    if (m->E < 1 || m->E > 65536) FAIL("model.embedding_size: %d is not in [1, 65536]", m->E);
    if (m->I < 1 || m->I > 1 << 20) FAIL("model.intermediate_size: %d is not in [1, 2^20]", m->I);
    if (m->NH < 1 || m->H % m->NH) FAIL("model.num_attention_heads: %d does not divide hidden_size %d", m->NH, m->H);
    if (m->NL < 1 || m->NL > 1024) FAIL("model.num_hidden_layers: %d is not in [1, 1024]", m->NL);
    if (m->NG < 1 || m->NG > m->NL)
        FAIL("model.num_hidden_groups: %d is not in [1, num_hidden_layers = %d]", m->NG, m->NL);
    if (m->T < 1 || m->T > 256) FAIL("model.type_vocab_size: %d is not in [1, 256]", m->T);
    if (m->act != KACT_GELU && m->act != KACT_GELU_NEW) FAIL("model.hidden_act: unknown activation %d", m->act);
    if (!(c->layer_norm_eps > 0 && c->layer_norm_eps < 1))
        FAIL("model.layer_norm_eps: %g is not in (0, 1)", c->layer_norm_eps);
    if (!(m->p_hidden >= 0 && m->p_hidden < 1))
        FAIL("model.hidden_dropout_prob: %g is not in [0, 1)", c->hidden_dropout_prob);
    if (!(m->p_attn >= 0 && m->p_attn < 1))
        FAIL("model.attention_probs_dropout_prob: %g is not in [0, 1)", c->attention_probs_dropout_prob);
    if (!(c->initializer_range >= 0)) FAIL("model.initializer_range: %g is negative", c->initializer_range);
    if (!(m->p_emb >= 0 && m->p_emb < 1)) FAIL("model.embd_pdrop: %g is not in [0, 1)", c->embd_dropout_prob);
    if (!m->gpt2 && (c->pad_token_id < 0 || c->pad_token_id >= m->V))
        FAIL("model.pad_token_id: %d is not a token id below vocab_size %d", c->pad_token_id, m->V);
    if (max_B < 1 || L < 1 || P < 0 || (int64_t)max_B * L > (1 << 26) || L > 65536 || P > L)
        FAIL("batch shape: batch %d x length %d with %d predictions is out of range", max_B, L, P);
    if (L > c->max_position_embeddings)
        FAIL("data.seq_len: %d exceeds model.max_position_embeddings %d", L, c->max_position_embeddings);
    m->D = m->H / m->NH;
    if (c->fusion_layers > 0) { /* ERNIE */
        if (m->type != KMODEL_BERT && m->type != KMODEL_ALBERT)
            FAIL("knowledge: the fusion layers (ERNIE) are for bert and albert models");
        if (spec->pre_ln || spec->causal) FAIL("knowledge: ERNIE's layers are post-LN and bidirectional");
        m->NF = c->fusion_layers;
        m->KE = c->entity_vocab_size;
        m->DE = c->entity_dim;
        m->W = c->entity_hidden_size ? c->entity_hidden_size : c->entity_dim;
        m->ENH = c->entity_attention_heads;
        if (m->NF > m->NL) FAIL("knowledge.fusion_layers: %d exceeds num_hidden_layers %d", m->NF, m->NL);
        if (m->KE < 2 || m->KE > (1 << 30))
            FAIL("knowledge.entity_vocab_size: %d is not in [2, 2^30] (row 0 is \"no entity\")", m->KE);
        if (m->DE < 1 || m->DE > 65536) FAIL("knowledge.entity_dim: %d is not in [1, 65536]", m->DE);
        if (m->W < 1 || m->W > 65536) FAIL("knowledge.entity_hidden_size: %d is not in [1, 65536]", m->W);
        if (m->ENH < 1 || m->W % m->ENH)
            FAIL("knowledge.entity_attention_heads: %d does not divide the entity stream's width %d", m->ENH, m->W);
        m->emap_w = m->emap_b = SIZE_MAX;
        m->fw = calloc((size_t)m->NF, sizeof *m->fw);
        m->fa = calloc((size_t)m->NF, sizeof *m->fa);
        if (!m->fw || !m->fa) FAIL("out of memory");
    } else if (spec->heads & KHEAD_DEA) {
        FAIL("model: the dEA head needs the knowledge section's fusion layers");
    }

    m->lw = calloc((size_t)m->NG, sizeof *m->lw);
    m->la = calloc((size_t)m->NL, sizeof *m->la);
    if (!m->lw || !m->la) FAIL("out of memory");
    builder b = {.m = m, .place = place, .next = place ? place->start : 0};
    model_of(m->type)->build(&b);
    if (spec->fit_width > 0) {
        if (m->type != KMODEL_BERT && m->type != KMODEL_ALBERT && m->type != KMODEL_DISTILBERT)
            FAIL("TinyBERT's projections are for BERT, ALBERT and DistilBERT students");
        m->fit_e_w = W2(&b, spec->fit_width, m->H, "distill.fit_emb.weight");
        m->fit_e_b = BIAS(&b, spec->fit_width, "distill.fit_emb.bias");
        m->fit_h_w = W2(&b, spec->fit_width, m->H, "distill.fit_dense.weight");
        m->fit_h_b = BIAS(&b, spec->fit_width, "distill.fit_dense.bias");
    }
    if (b.fail) FAIL("out of memory");
    m->numel = (b.next + 15) / 16 * 16;
    if (registry_only) return m;
    if (!place) {
        m->params = falloc(m->numel);
        m->grads = m->inference ? NULL : falloc(m->numel);
        if (!m->params || (!m->inference && !m->grads))
            FAIL("out of memory: parameters and gradients need %.1f MB", 2.0 * m->numel * 4 / 1e6);
    }

    m->arena_floats = carve(m, NULL);
    m->arena = falloc(m->arena_floats);
    if (!m->arena) FAIL("out of memory: activations need %.1f MB", m->arena_floats * 4 / 1e6);
    carve(m, m->arena);

    size_t N = (size_t)max_B * L, M = (size_t)max_B * P;
    m->ids = malloc(3 * N * sizeof(int32_t) + 1);
    m->offs = malloc((size_t)(max_B + 1) * sizeof(int32_t));
    m->seq = malloc((size_t)max_B * sizeof(uint64_t));
    m->tok = malloc(N * sizeof(uint64_t) + 1);
    m->mstart = malloc((size_t)(max_B + 1) * sizeof(int32_t));
    m->slabel = malloc((size_t)max_B * sizeof(int32_t));
    m->scorrect = malloc((size_t)max_B);
    m->mrow = malloc(M * sizeof(int32_t) + 1);
    m->mlabel = malloc(M * sizeof(int32_t) + 1);
    m->mcorrect = malloc(M + 1);
    m->clabel = malloc((size_t)max_B * sizeof(int32_t));
    m->ctarget = malloc((size_t)max_B * sizeof(float));
    m->ccorrect = malloc((size_t)max_B);
    m->inj = calloc((size_t)m->NL + 1, sizeof *m->inj);
    m->tlabel = malloc(N * sizeof(int32_t) + 1);
    m->llabel = malloc(N * sizeof(int32_t) + 1);
    m->largmax = malloc(N * sizeof(int32_t) + 1);
    m->lsum = malloc(N * sizeof(double) + 1);
    m->inj_set = calloc((size_t)m->NL + 1, 1);
    if (!m->ids || !m->offs || !m->seq || !m->tok || !m->mstart || !m->slabel || !m->scorrect || !m->mrow || !m->mlabel || !m->mcorrect ||
        !m->clabel || !m->ctarget || !m->ccorrect || !m->inj || !m->inj_set || !m->tlabel || !m->llabel ||
        !m->largmax || !m->lsum)
        FAIL("out of memory");
    m->pos_ids = m->ids + N;
    m->type_ids = m->ids + 2 * N;
    return m;
}

/* ELECTRA with the MLM and token heads is the generator + discriminator pair
 * (electra.c); with one of them, the generator or the discriminator alone. */
static kmodel *create(const kmodel_config *c, const kmodel_spec *spec, char *err, size_t errlen, int registry_only)
{
    if (c->type == KMODEL_ELECTRA && (spec->heads & KHEAD_MLM) && (spec->heads & KHEAD_TOKEN))
        return kelectra_create(c, spec, err, errlen, registry_only);
    return kmodel_create_tower(c, spec, NULL, err, errlen, registry_only);
}

kmodel *kmodel_create(const kmodel_config *c, const kmodel_spec *spec, char *err, size_t errlen)
{
    return create(c, spec, err, errlen, 0);
}

ktensor *kmodel_registry(const kmodel_config *c, const kmodel_spec *spec, int *n, char *err, size_t errlen)
{
    *n = 0;
    kmodel_spec s = *spec;
    if (s.max_B < 1) s.max_B = 1;
    if (s.L < 1) s.L = 1;
    kmodel *m = create(c, &s, err, errlen, 1);
    if (!m) return NULL;
    ktensor *t = m->t;
    *n = m->nt;
    m->t = NULL;
    kmodel_free(m);
    return t;
}

void kmodel_free(kmodel *m)
{
    if (!m) return;
    kelectra_free(m->el);
    free(m->t);
    if (!m->sub) {
        free(m->params);
        free(m->grads);
    }
    free(m->lw);
    free(m->la);
    free(m->arena);
    free(m->scratch);
    free(m->ids);
    free(m->offs);
    free(m->seq);
    free(m->tok);
    free(m->mstart);
    free(m->slabel);
    free(m->scorrect);
    free(m->mrow);
    free(m->mlabel);
    free(m->mcorrect);
    free(m->clabel);
    free(m->ctarget);
    free(m->ccorrect);
    free(m->tlabel);
    free(m->llabel);
    free(m->largmax);
    free(m->lsum);
    if (m->qinj)
        for (int l = 0; l < m->NL; l++) free(m->qinj[l]);
    free(m->qinj);
    free(m->qinj_set);
    free(m->kgscale);
    free(m->kl);
    free(m->kagree);
    if (m->inj)
        for (int l = 0; l <= m->NL; l++) free(m->inj[l]);
    free(m->inj);
    free(m->inj_set);
    kernie_free(m);
    free(m->fw);
    free(m->fa);
    free(m);
}

const ktensor *kmodel_params(const kmodel *m, int *n)
{
    if (n) *n = m->nt;
    return m->t;
}
float *kmodel_param_data(kmodel *m) { return m->params; }
float *kmodel_grad_data(kmodel *m) { return m->grads; }
size_t kmodel_numel(const kmodel *m) { return m->numel; }
size_t kmodel_param_count(const kmodel *m)
{
    size_t s = 0;
    for (int i = 0; i < m->nt; i++) s += m->t[i].numel;
    return s;
}
size_t kmodel_activation_bytes(const kmodel *m)
{
    if (m->el) return kelectra_activation_bytes(m);
    return m->arena_floats * sizeof(float) + (size_t)m->scratch_threads * 2 * m->L * m->L * sizeof(float);
}
const kmodel_config *kmodel_get_config(const kmodel *m) { return &m->c; }
const kmodel_spec *kmodel_get_spec(const kmodel *m) { return &m->s; }
const char *kmodel_error(const kmodel *m) { return m->err; }

/* ---- initialization ------------------------------------------------------- */

static uint64_t name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

void kmodel_init(kmodel *m, uint64_t seed)
{
    for (int i = 0; i < m->nt; i++) {
        const ktensor *t = &m->t[i];
        const double std = m->c.initializer_range / (t->init == KINIT_NORMAL_RESID ? sqrt(2.0 * m->NL) : 1.0);
        float *p = m->params + t->offset;
        if (t->init != INIT_NORMAL && t->init != KINIT_NORMAL_RESID) {
            float v = t->init == INIT_ONE ? 1.0f : 0.0f;
            for (size_t j = 0; j < t->numel; j++) p[j] = v;
            continue;
        }
        uint64_t key = krng_key(seed, 'I', name_hash(t->name), 0);
        int64_t n = (int64_t)t->numel;
#pragma omp parallel for schedule(static) if (n >= 32768)
        for (int64_t j = 0; j < n; j++) p[j] = (float)(std * krng_normal(key, (uint64_t)j));
    }
    if (!m->gpt2) /* GPT-2's wte has no padding row */
        memset(m->params + m->word + (size_t)m->c.pad_token_id * m->E, 0, (size_t)m->E * sizeof(float));
    kmodel_zero_grad(m);
}

void kmodel_zero_grad(kmodel *m)
{
    if (!m->grads) return;
    const size_t n = m->numel, chunk = (size_t)1 << 16, nc = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (nc > 1)
    for (size_t c = 0; c < nc; c++) memset(m->grads + c * chunk, 0, (n - c * chunk < chunk ? n - c * chunk : chunk) * sizeof(float));
}

/* ---- the batch -------------------------------------------------------------- */

static int bad(kmodel *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(kmodel *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->err, sizeof m->err, fmt, ap);
    va_end(ap);
    return EX_DATAERR;
}

/* Checks batch b against the model and packs it (ids, offsets, masked rows,
 * labels). Nothing of the model changes on error. */
static int load_batch(kmodel *m, const ksample_batch *b)
{
    m->has_logits = 0;
    if (!b || b->version != KSAMPLE_BATCH_VERSION)
        return bad(m, "batch layout version %d, expected %d", b ? b->version : -1, KSAMPLE_BATCH_VERSION);
    if (b->B < 1 || b->B > m->maxB) return bad(m, "batch has %d rows, the model takes 1 to %d", b->B, m->maxB);
    if (b->L < 1 || b->L > m->L) return bad(m, "batch sequence length %d exceeds the model's %d", b->L, m->L);
    const int B = b->B, L = b->L;
    const int use_mlm = m->P > 0 && b->n_masked && b->masked_positions && b->masked_ids && b->masked_weights;
    if (use_mlm && b->P > m->P) return bad(m, "batch has %d masked slots per row, the model takes %d", b->P, m->P);
    if (!b->input_ids || !b->lengths) return bad(m, "batch without input_ids or lengths");
    int N = 0;
    for (int r = 0; r < B; r++) {
        int len = b->lengths[r];
        if (len < 1 || len > L) return bad(m, "row %d: length %d is not in [1, %d]", r, len, L);
        N += len;
    }
    /* tokens */
    int n = 0;
    for (int r = 0; r < B; r++) {
        m->offs[r] = n;
        m->seq[r] = b->index && b->index[r] >= 0 ? (uint64_t)b->index[r] : (uint64_t)r;
        for (int t = 0; t < b->lengths[r]; t++, n++) {
            m->tok[n] = m->seq[r] * (uint64_t)L + (uint64_t)t;
            int32_t id = b->input_ids[(size_t)r * L + t];
            int tt = b->token_type_ids && !m->gpt2 && !m->distil ? b->token_type_ids[(size_t)r * L + t]
                                                                 : 0; /* GPT-2, DistilBERT: none */
            if (id < 0 || id >= m->V) return bad(m, "row %d position %d: token id %d is not below %d", r, t, id, m->V);
            if (tt >= m->T) return bad(m, "row %d position %d: token type %d is not below %d", r, t, tt, m->T);
            m->ids[n] = id;
            m->pos_ids[n] = t;
            m->type_ids[n] = tt;
        }
    }
    m->offs[B] = n;
    /* masked positions */
    int M = 0;
    for (int r = 0; r < B; r++) {
        m->mstart[r] = M;
        if (!use_mlm) continue;
        int k = b->n_masked[r];
        if (k < 0 || k > b->P) return bad(m, "row %d: %d masked positions, at most %d", r, k, b->P);
        for (int p = 0; p < k; p++, M++) {
            size_t i = (size_t)r * b->P + p;
            int pos = b->masked_positions[i], id = b->masked_ids[i];
            float w = b->masked_weights[i];
            if (pos < 0 || pos >= b->lengths[r])
                return bad(m, "row %d masked slot %d: position %d is outside the row (length %d)", r, p, pos,
                           b->lengths[r]);
            if (id < 0 || id >= m->V) return bad(m, "row %d masked slot %d: label %d is not below %d", r, p, id, m->V);
            if (!(w >= 0 && w <= 1e30f)) return bad(m, "row %d masked slot %d: weight %g", r, p, (double)w);
            m->mrow[M] = m->offs[r] + pos;
            m->mlabel[M] = w > 0 ? id : -1;
            m->mweight[M] = w;
        }
    }
    m->mstart[B] = M;
    /* sentence labels */
    for (int r = 0; r < B && m->sent; r++) {
        int y = b->labels ? b->labels[r] : -1;
        if (y < -1 || y > 1) return bad(m, "row %d: sentence label %d is not -1, 0 or 1", r, y);
        m->slabel[r] = y;
    }
    /* classes or regression targets */
    for (int r = 0; r < B && m->ncls; r++) {
        if (m->ncls > 1) {
            int y = b->labels ? b->labels[r] : -1;
            if (y < -1 || y >= m->ncls) return bad(m, "row %d: label %d is not in [-1, %d)", r, y, m->ncls);
            m->clabel[r] = y;
        } else {
            float y = b->targets ? b->targets[r] : NAN;
            if (isinf(y)) return bad(m, "row %d: regression target is infinite", r);
            m->ctarget[r] = y;
        }
    }
    /* per-token labels, and next-token labels (within a row) */
    for (int r = 0, i = 0; r < B && (m->s.heads & (KHEAD_TOKEN | KHEAD_LM)); r++)
        for (int t = 0; t < b->lengths[r]; t++, i++) {
            if (m->s.heads & KHEAD_TOKEN) {
                int y = b->token_labels ? b->token_labels[(size_t)r * L + t] : -1;
                if (y < -1 || y > 1) return bad(m, "row %d position %d: token label %d is not -1, 0 or 1", r, t, y);
                m->tlabel[i] = y;
            }
            if (m->s.heads & KHEAD_LM) m->llabel[i] = t + 1 < b->lengths[r] ? m->ids[i + 1] : -1;
        }
    m->objectives = b->objectives;
    m->B = B;
    m->N = N;
    m->M = M;
    return m->NF ? kernie_load_batch(m, b) : 0;
}

static int ensure_scratch(kmodel *m)
{
    int nt = omp_get_max_threads();
    if (nt <= m->scratch_threads) return 0;
    float *s = falloc((size_t)nt * 2 * m->L * m->L);
    if (!s) {
        bad(m, "out of memory for attention scratch (%d threads)", nt);
        return EX_OSERR; /* not a bad batch */
    }
    free(m->scratch);
    m->scratch = s;
    m->scratch_threads = nt;
    return 0;
}

/* ---- forward / backward ----------------------------------------------------------- */

static uint64_t site_key(uint64_t key, uint64_t site) { return krng_key(key, 'D', site, 0); }
#define SITE_EMB ((uint64_t)1 << 20)

static kmlm_head mlm_head(kmodel *m)
{
    float *P = m->params, *G = m->grads;
    kmlm_head k = {
        .M = m->M, .H = m->H, .E = m->E, .V = m->V, .act = m->mlm_act, .eps = m->eps,
        .w = P + m->mlm_w, .b = P + m->mlm_b, .ln_g = P + m->mlm_ln_g, .ln_b = P + m->mlm_ln_b,
        .emb = P + m->word, .bias = P + m->mlm_bias,
        .dw = G + m->mlm_w, .db = G + m->mlm_b, .dln_g = G + m->mlm_ln_g, .dln_b = G + m->mlm_ln_b,
        .demb = G + m->word, .dbias = G + m->mlm_bias,
        .pre = m->mpre, .a = m->ma, .h = m->mh, .mean = m->mmean, .rstd = m->mrstd, .logits = m->logits,
        .dh = m->mdh, .da = m->mda,
    };
    return k;
}

static const layer_off *group_of(const kmodel *m, int l)
{
    return &m->lw[m->type != KMODEL_ALBERT ? l : (int)((int64_t)l * m->NG / m->NL)];
}

/* The embedding output that feeds the encoder (or the ALBERT mapping). */
static float *emb_out(kmodel *m, int train) { return train && m->p_emb > 0 ? m->emb_drop : m->emb_ln; }


#define SITE_CLS ((uint64_t)1 << 21)

static kbin_head bin_head(kmodel *m)
{
    float *P = m->params, *G = m->grads;
    kbin_head k = {.N = m->N, .H = m->H, .act = m->act, .w = P + m->tok_w, .b = P + m->tok_b, .wp = P + m->tok_wp,
                   .bp = P + m->tok_bp, .dw = G ? G + m->tok_w : NULL, .db = G ? G + m->tok_b : NULL,
                   .dwp = G ? G + m->tok_wp : NULL, .dbp = G ? G + m->tok_bp : NULL, .pre = m->tpre, .h = m->th,
                   .logit = m->tlogit, .dlogit = m->tdlogit, .dh = m->tdh};
    return k;
}

static klm_head lm_head(kmodel *m)
{
    klm_head k = {.N = m->N, .H = m->H, .V = m->V, .C = m->s.lm_chunk, .w = m->params + m->word, .bias = NULL,
                  .dw = m->grads ? m->grads + m->word : NULL, .dbias = NULL, .chunk = m->lchunk, .keep = m->lkeep,
                  .run_sum = m->lsum,
                  .run_max = m->lmax, .lse = m->llse, .label_logit = m->llab, .argmax = m->largmax};
    return k;
}

/* hidden(l): the input of layer l (0-based), = the output of layer l - 1 */
static float *hidden_of(const kmodel *m, int l, int train)
{
    if (l > 0) return m->la[l - 1].out;
    if (m->map) return m->h0;
    return emb_out((kmodel *)m, train);
}

/* Pre-LN layer l (GPT-2's block) on its input x (N, H), activations in la[l]:
 *   h1 = LN1(x); qkv = h1 Wqkv^T + b; ctx = attention(qkv)
 *   xs1 = x + drop(ctx Wo^T + bo)                  (the attention residual)
 *   xs2 = LN2(xs1); ffpre = xs2 Wf^T + bf; ffact = gelu(ffpre)
 *   out = xs1 + drop(ffact Wfo^T + bfo)
 * Dropout sites as the post-LN layer's (4 l + 0, 1, 2). */
static void layer_forward_preln(kmodel *m, int l, const float *x, int train, uint64_t key)
{
    const float *P = m->params;
    const int N = m->N, H = m->H, I = m->I;
    const float ph = train ? m->p_hidden : 0.0f, pa = train ? m->p_attn : 0.0f;
    const layer_off *w = group_of(m, l);
    layer_act *a = &m->la[l];
    klayernorm_forward(a->h1, a->m1, a->r1, x, P + w->ln1_g, P + w->ln1_b, N, H, m->eps);
    kdense_forward(a->qkv, a->h1, P + w->qkv_w, P + w->qkv_b, NULL, N, H, 3 * H);
    kattn_dims d = {.B = m->B, .NH = m->NH, .D = m->D, .L = m->L, .causal = m->s.causal, .pdrop = pa,
                    .key = site_key(key, 4 * (uint64_t)l), .seq = m->seq};
    kattention_forward(a->ctx, a->probs, m->scratch, a->qkv, m->offs, &d);
    if (ph > 0) {
        kdense_forward(a->xs1, a->ctx, P + w->ao_w, P + w->ao_b, NULL, N, H, H);
        kdropout_rows(a->xs1, a->xs1, x, N, H, ph, site_key(key, 4 * (uint64_t)l + 1), m->tok);
    } else {
        kdense_forward(a->xs1, a->ctx, P + w->ao_w, P + w->ao_b, x, N, H, H);
    }
    klayernorm_forward(a->xs2, a->m2, a->r2, a->xs1, P + w->ln2_g, P + w->ln2_b, N, H, m->eps);
    kepi_act ea = {.x = a->ffpre, .y = a->ffact, .C = I, .kind = m->act}; /* ffpre becomes gelu'(pre) */
    kdense_forward_ex(a->ffpre, a->xs2, P + w->ff_w, P + w->ff_b, NULL, N, H, I, kepi_gelu_deriv, &ea);
    if (ph > 0) {
        kdense_forward(a->out, a->ffact, P + w->fo_w, P + w->fo_b, NULL, N, I, H);
        kdropout_rows(a->out, a->out, a->xs1, N, H, ph, site_key(key, 4 * (uint64_t)l + 2), m->tok);
    } else {
        kdense_forward(a->out, a->ffact, P + w->fo_w, P + w->fo_b, a->xs1, N, I, H);
    }
}

/* Backward of layer_forward_preln: gA = d out on entry, d x on return. */
static void layer_backward_preln(kmodel *m, int l, const float *x, uint64_t key)
{
    const float *P = m->params;
    float *G = m->grads, *gA = m->gA, *gB = m->gB, *gC = m->gC;
    const int N = m->N, H = m->H, I = m->I;
    const float ph = m->p_hidden;
    const layer_off *w = group_of(m, l);
    layer_act *a = &m->la[l];
    const float *dfo = gA;
    if (ph > 0) {
        kdropout_rows(gC, gA, NULL, N, H, ph, site_key(key, 4 * (uint64_t)l + 2), m->tok);
        dfo = gC;
    }
    kepi_act eb = {.x = a->ffpre, .y = m->gI, .C = I, .kind = m->act};
    kdense_backward_ex(m->gI, 0, G + w->fo_w, G + w->fo_b, dfo, a->ffact, P + w->fo_w, N, I, H, kepi_mul, &eb);
    kdense_backward(gB, 0, G + w->ff_w, G + w->ff_b, m->gI, a->xs2, P + w->ff_w, N, H, I); /* gB = d xs2 */
    klayernorm_backward(gA, 1, G + w->ln2_g, G + w->ln2_b, gB, a->xs1, a->m2, a->r2, P + w->ln2_g, N, H); /* d xs1 */
    const float *dao = gA;
    if (ph > 0) {
        kdropout_rows(gC, gA, NULL, N, H, ph, site_key(key, 4 * (uint64_t)l + 1), m->tok);
        dao = gC;
    }
    kdense_backward(gB, 0, G + w->ao_w, G + w->ao_b, dao, a->ctx, P + w->ao_w, N, H, H); /* gB = d ctx */
    kattn_dims d = {.B = m->B, .NH = m->NH, .D = m->D, .L = m->L, .causal = m->s.causal, .pdrop = m->p_attn,
                    .key = site_key(key, 4 * (uint64_t)l), .seq = m->seq};
    kattention_backward(m->gQKV, m->scratch, gB, a->qkv, a->probs, m->offs, &d);
    kdense_backward(gB, 0, G + w->qkv_w, G + w->qkv_b, m->gQKV, a->h1, P + w->qkv_w, N, H, 3 * H); /* d h1 */
    klayernorm_backward(gA, 1, G + w->ln1_g, G + w->ln1_b, gB, x, a->m1, a->r1, P + w->ln1_g, N, H); /* d x */
}

/* Embeddings, layers, and the heads up to their logits (no loss). */
static void forward(kmodel *m, int train, uint64_t key)
{
    const float *P = m->params;
    const int N = m->N, E = m->E, H = m->H, I = m->I, M = m->M, B = m->B;
    const float ph = train ? m->p_hidden : 0.0f, pa = train ? m->p_attn : 0.0f;

    if (m->gpt2) { /* wte[id] + wpe[t] */
        kembed_forward(m->emb_ln, N, E, P + m->word, m->ids, P + m->pos, m->pos_ids, NULL, NULL);
    } else {
        kembed_forward(m->emb_x, N, E, P + m->word, m->ids, P + m->pos, m->pos_ids, m->distil ? NULL : P + m->typ,
                       m->distil ? NULL : m->type_ids); /* DistilBERT: no token types */
        klayernorm_forward(m->emb_ln, m->emb_mean, m->emb_rstd, m->emb_x, P + m->eln_g, P + m->eln_b, N, E, m->eps);
    }
    float *x = emb_out(m, train);
    if (x != m->emb_ln) kdropout_rows(x, m->emb_ln, NULL, N, E, m->p_emb, site_key(key, SITE_EMB), m->tok);
    const float *h = x;
    if (m->map) {
        kdense_forward(m->h0, x, P + m->map_w, P + m->map_b, NULL, N, E, H);
        h = m->h0;
    }
    for (int l = 0; l < m->NL && m->s.pre_ln; l++) {
        layer_forward_preln(m, l, h, train, key);
        h = m->la[l].out;
    }
    if (m->s.pre_ln) {
        klayernorm_forward(m->fin, m->fmean, m->frstd, h, P + m->fln_g, P + m->fln_b, N, H, m->eps);
        h = m->fin;
    }
    for (int l = 0; l < m->NL && !m->s.pre_ln; l++) {
        const layer_off *w = group_of(m, l);
        layer_act *a = &m->la[l];
        kdense_forward(a->qkv, h, P + w->qkv_w, P + w->qkv_b, NULL, N, H, 3 * H);
        kattn_dims d = {.B = B, .NH = m->NH, .D = m->D, .L = m->L, .causal = m->s.causal, .pdrop = pa,
                        .key = site_key(key, 4 * (uint64_t)l), .seq = m->seq};
        kattention_forward(a->ctx, a->probs, m->scratch, a->qkv, m->offs, &d);
        /* xs1 = h + drop(ctx Wo^T + bo), h1 = LN1(xs1): the residual is the
         * product's prologue without dropout, the epilogue's with it
         * (DistilBERT: no dropout after out_lin) */
        const float p1 = m->distil ? 0.0f : ph;
        kepi_ln e1 = {.x = a->xs1, .res = p1 > 0 ? h : NULL, .p = p1, .key = site_key(key, 4 * (uint64_t)l + 1), .tok = m->tok,
                      .y = a->h1, .mean = a->m1, .rstd = a->r1, .g = P + w->ln1_g, .b = P + w->ln1_b, .C = H,
                      .eps = m->eps};
        kdense_forward_ex(a->xs1, a->ctx, P + w->ao_w, P + w->ao_b, p1 > 0 ? NULL : h, N, H, H, kepi_layernorm, &e1);
        kepi_act ea = {.x = a->ffpre, .y = a->ffact, .C = I, .kind = m->act}; /* ffpre becomes gelu'(pre) */
        const float *fres = m->NF && l >= m->NL - m->NF ? kernie_forward_pre(m, l, train, key) : NULL; /* ERNIE */
        kdense_forward_ex(a->ffpre, a->h1, P + w->ff_w, P + w->ff_b, fres, N, H, I, kepi_gelu_deriv, &ea);
        if (fres) kernie_forward_post(m, l, train, key);
        const float p2 = m->type != KMODEL_ALBERT ? ph : 0.0f; /* ALBERT: no dropout after the FFN */
        kepi_ln e2 = {.x = a->xs2, .res = p2 > 0 ? a->h1 : NULL, .p = p2, .key = site_key(key, 4 * (uint64_t)l + 2), .tok = m->tok,
                      .y = a->out, .mean = a->m2, .rstd = a->r2, .g = P + w->ln2_g, .b = P + w->ln2_b, .C = H,
                      .eps = m->eps};
        kdense_forward_ex(a->xs2, a->ffact, P + w->fo_w, P + w->fo_b, p2 > 0 ? NULL : a->h1, N, I, H, kepi_layernorm,
                          &e2);
        h = a->out;
    }

    /* masked LM head at the masked rows: h emb^T (the loss adds the bias) */
    if (M > 0) {
        for (int i = 0; i < M; i++) memcpy(m->mx + (size_t)i * H, h + (size_t)m->mrow[i] * H, (size_t)H * sizeof(float));
        kmlm_head k = mlm_head(m);
        kmlm_head_forward(&k, m->mx);
    }
    if (m->s.heads & KHEAD_DEA) kernie_dea_forward(m, h);
    /* pooler on [CLS], shared by the sentence and classification heads */
    if (m->ncls && m->type == KMODEL_ELECTRA) {
        /* ElectraClassificationHead: cls = drop([CLS]); pooled = gelu'(pre), cz = drop(gelu(pre)),
         * pre = cls Wd^T + bd; logits = cz Wo^T + bo */
        const float pc = train ? m->p_cls : 0.0f;
        for (int b = 0; b < B; b++) memcpy(m->cls + (size_t)b * H, h + (size_t)m->offs[b] * H, (size_t)H * sizeof(float));
        kdropout(m->cls, m->cls, (size_t)B * H, pc, site_key(key, SITE_CLS), 0);
        kepi_act ea = {.x = m->pooled, .y = m->cz, .C = H, .kind = KACT_GELU};
        kdense_forward_ex(m->pooled, m->cls, P + m->pool_w, P + m->pool_b, NULL, B, H, H, kepi_gelu_deriv, &ea);
        kdropout(m->cz, m->cz, (size_t)B * H, pc, site_key(key, SITE_CLS + 1), 0);
        kdense_forward(m->clog, m->cz, P + m->clf_w, P + m->clf_b, NULL, B, H, m->ncls);
    } else if (m->ncls && m->distil) {
        /* DistilBertForSequenceClassification: cls = [CLS]; pooled = relu(cls Wp^T + bp) (pre_classifier);
         * cz = drop(pooled) (seq_classif_dropout); logits = cz Wc^T + bc */
        const float pc = train ? m->p_cls : 0.0f;
        for (int b = 0; b < B; b++) memcpy(m->cls + (size_t)b * H, h + (size_t)m->offs[b] * H, (size_t)H * sizeof(float));
        kdense_forward(m->pooled, m->cls, P + m->pool_w, P + m->pool_b, NULL, B, H, H);
        for (size_t i = 0; i < (size_t)B * H; i++)
            if (m->pooled[i] < 0.0f) m->pooled[i] = 0.0f; /* ReLU (NaN passes, as torch's) */
        kdropout(m->cz, m->pooled, (size_t)B * H, pc, site_key(key, SITE_CLS), 0);
        kdense_forward(m->clog, m->cz, P + m->clf_w, P + m->clf_b, NULL, B, H, m->ncls);
    } else if (m->sent || m->ncls) {
        for (int b = 0; b < B; b++) memcpy(m->cls + (size_t)b * H, h + (size_t)m->offs[b] * H, (size_t)H * sizeof(float));
        kpooler_forward(m->pooled, m->cls, P + m->pool_w, P + m->pool_b, B, H);
    }
    if (m->sent) kdense_forward(m->slog, m->pooled, P + m->cls_w, P + m->cls_b, NULL, B, H, 2);
    if (m->s.heads & KHEAD_TOKEN) {
        kbin_head k = bin_head(m);
        kbin_head_forward(&k, h);
    }
    m->hlast = h;
    if (m->ncls && m->type != KMODEL_ELECTRA && !m->distil) {
        const float pc = train ? m->p_cls : 0.0f;
        kdropout(m->cz, m->pooled, (size_t)B * H, pc, site_key(key, SITE_CLS), 0);
        kdense_forward(m->clog, m->cz, P + m->clf_w, P + m->clf_b, NULL, B, H, m->ncls);
    }
}

static kterm *term(kstep_result *r, const char *name, double sum, double count, double weight)
{
    if (r->n >= KTERM_MAX) return NULL;
    kterm *t = &r->t[r->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->sum = sum;
    t->count = count;
    t->weight = weight;
    return t;
}

void kstep_total_loss(kstep_result *r)
{
    r->loss = 0;
    for (int i = 0; i < r->n; i++)
        if (r->t[i].weight > 0 && r->t[i].count > 0) r->loss += r->t[i].weight * (r->t[i].sum / r->t[i].count);
}

void kstep_term(kstep_result *r, const char *name, double sum, double count, double weight)
{
    term(r, name, sum, count, weight);
    kstep_total_loss(r);
}

double kstep_value(const kstep_result *r, const char *name)
{
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->t[i].name, name)) return r->t[i].count > 0 ? r->t[i].sum / r->t[i].count : NAN;
    return NAN;
}

void kstep_add(kstep_result *a, const kstep_result *b)
{
    for (int j = 0; j < b->n; j++) {
        int i = 0;
        while (i < a->n && strcmp(a->t[i].name, b->t[j].name)) i++;
        if (i == a->n) {
            if (a->n >= KTERM_MAX) continue;
            a->t[a->n++] = b->t[j];
            continue;
        }
        a->t[i].sum += b->t[j].sum;
        a->t[i].count += b->t[j].count;
    }
    a->tokens += b->tokens;
    kstep_total_loss(a);
}

/* The heads' losses; with train, their output gradients (scaled). */
/* The count loss term `name`'s gradient is normalised by: the count over
 * all ranks (kmodel_set_loss_counts) or this batch's own. */
double kmodel_norm_of(const kmodel *m, const char *name, double local)
{
    if (!m->gcount_on) return local;
    for (int i = 0; i < m->gcount.n; i++)
        if (!strcmp(m->gcount.t[i].name, name)) return m->gcount.t[i].count;
    return local;
}

/* The denominators of the loss terms the next kmodel_loss forms from the
 * current forward (the same formulas as loss() below): name and count,
 * sum 0, the term's weight. */
static void loss_counts(const kmodel *m, kstep_result *r)
{
    memset(r, 0, sizeof *r);
    r->tokens = m->N;
    const int M = m->M, B = m->B;
    if (M > 0) {
        double wsum = 0;
        for (int i = 0; i < M; i++)
            if (m->mlabel[i] >= 0) wsum += m->mweight[i];
        term(r, "mlm_loss", 0, wsum, 1.0);
        if (m->soft_t) {
            double kw = 0;
            for (int i = 0; i < M; i++) kw += m->soft_all ? 1.0 : m->mlabel[i] >= 0 ? m->mweight[i] : 0.0;
            term(r, "ce_loss", 0, kw, 1.0);
        }
    }
    if (m->s.heads & KHEAD_DEA) term(r, "dea_loss", 0, m->NA, m->c.dea_weight);
    if (m->sent) {
        int cnt = 0;
        for (int b = 0; b < B; b++) cnt += m->slabel[b] >= 0;
        term(r, (m->objectives & KOBJ_NSP) ? "nsp_loss" : "sop_loss", 0, cnt, 1.0);
    }
    if (m->ncls > 1) {
        int cnt = 0, kn = 0;
        for (int b = 0; b < B; b++) cnt += m->clabel[b] >= 0, kn += m->soft_all || m->clabel[b] >= 0;
        term(r, "cls_loss", 0, cnt, 1.0);
        if (m->soft_t) term(r, "ce_loss", 0, kn, 1.0);
    }
    if (m->s.heads & KHEAD_TOKEN) {
        int cnt = 0;
        for (int i = 0; i < m->N; i++) cnt += m->tlabel[i] >= 0;
        term(r, "token_loss", 0, cnt, 1.0);
    }
    if (m->s.heads & KHEAD_LM) {
        int cnt = 0;
        for (int i = 0; i < m->N; i++) cnt += m->llabel[i] >= 0;
        term(r, "lm_loss", 0, cnt, 1.0);
    }
    if (m->ncls == 1) {
        int cnt = 0;
        for (int b = 0; b < B; b++) cnt += !isnan(m->ctarget[b]);
        term(r, "mse", 0, cnt, 1.0);
    }
}

static void loss(kmodel *m, int train, float loss_scale, kstep_result *r)
{
    const float *P = m->params;
    const int M = m->M, B = m->B;
    memset(r, 0, sizeof *r);
    r->tokens = m->N;
    if (M > 0) {
        double wsum = 0;
        for (int i = 0; i < M; i++)
            if (m->mlabel[i] >= 0) wsum += m->mweight[i];
        const double mw = m->soft_t ? m->soft_mlm : 1.0, nw = kmodel_norm_of(m, "mlm_loss", wsum);
        for (int i = 0; i < M; i++)
            m->mgscale[i] = m->mlabel[i] >= 0 && nw > 0 ? (float)(mw * loss_scale * m->mweight[i] / nw) : 0.0f;
        double ksum = 0, kw = 0, kagree = 0;
        if (m->soft_t) {
            /* the teacher's soft targets: the counted slots and their weights */
            for (int i = 0; i < M; i++) kw += m->soft_all ? 1.0 : m->mlabel[i] >= 0 ? m->mweight[i] : 0.0;
            const double nk = kmodel_norm_of(m, "ce_loss", kw);
            for (int i = 0; i < M; i++) {
                double w = m->soft_all ? 1.0 : m->mlabel[i] >= 0 ? m->mweight[i] : 0.0;
                m->kgscale[i] = nk > 0 ? (float)(m->soft_ce * loss_scale * w / nk) : 0.0f;
            }
            kxent_soft(m->logits, P + m->mlm_bias, m->soft_t, m->soft_T, m->mloss, m->kl, m->mcorrect, m->kagree,
                       m->mlabel, train ? m->mgscale : NULL, train ? m->kgscale : NULL, M, m->V);
            for (int i = 0; i < M; i++) {
                double w = m->soft_all ? 1.0 : m->mlabel[i] >= 0 ? m->mweight[i] : 0.0;
                if (w <= 0) continue;
                ksum += w * m->kl[i];
                kagree += m->kagree[i];
            }
        } else {
            kxent(m->logits, P + m->mlm_bias, m->mloss, m->mcorrect, m->mlabel, train ? m->mgscale : NULL, M, m->V);
        }
        double s = 0;
        int64_t correct = 0, count = 0;
        for (int i = 0; i < M; i++) {
            if (m->mlabel[i] < 0) continue;
            s += (double)m->mweight[i] * m->mloss[i];
            correct += m->mcorrect[i];
            count++;
        }
        term(r, "mlm_loss", s, wsum, mw);
        term(r, "mlm_acc", (double)correct, (double)count, 0.0);
        if (m->soft_t) {
            int64_t kn = 0;
            for (int i = 0; i < M; i++) kn += m->soft_all || m->mlabel[i] >= 0;
            term(r, "ce_loss", ksum, kw, m->soft_ce);
            term(r, "teacher_agree", kagree, (double)kn, 0.0);
        }
        m->soft_t = NULL;
    }
    if (m->s.heads & KHEAD_DEA) kernie_dea_loss(m, train, loss_scale, r);
    if (m->sent) {
        int cnt = 0;
        for (int b = 0; b < B; b++) cnt += m->slabel[b] >= 0;
        const double ns = kmodel_norm_of(m, (m->objectives & KOBJ_NSP) ? "nsp_loss" : "sop_loss", cnt);
        for (int b = 0; b < B; b++) m->sgscale[b] = m->slabel[b] >= 0 ? (float)(loss_scale / ns) : 0.0f;
        kxent(m->slog, NULL, m->sloss, m->scorrect, m->slabel, train ? m->sgscale : NULL, B, 2);
        double s = 0;
        int64_t correct = 0;
        for (int b = 0; b < B; b++) {
            if (m->slabel[b] < 0) continue;
            s += m->sloss[b];
            correct += m->scorrect[b];
        }
        const int nsp = (m->objectives & KOBJ_NSP) != 0;
        term(r, nsp ? "nsp_loss" : "sop_loss", s, cnt, 1.0);
        term(r, nsp ? "nsp_acc" : "sop_acc", (double)correct, cnt, 0.0);
    }
    if (m->ncls > 1) {
        int cnt = 0;
        const double cw = m->soft_t ? m->soft_mlm : 1.0; /* soft targets: the gold term's weight */
        for (int b = 0; b < B; b++) cnt += m->clabel[b] >= 0;
        const double nc = kmodel_norm_of(m, "cls_loss", cnt);
        for (int b = 0; b < B; b++) m->cgscale[b] = m->clabel[b] >= 0 ? (float)(cw * loss_scale / nc) : 0.0f;
        if (m->soft_t) {
            /* a fine-tuned teacher's logits (B, ncls): every row (soft_all) or the labelled ones */
            int kn = 0;
            for (int b = 0; b < B; b++) kn += m->soft_all || m->clabel[b] >= 0;
            const double nk = kmodel_norm_of(m, "ce_loss", kn);
            for (int b = 0; b < B; b++)
                m->kgscale[b] = (m->soft_all || m->clabel[b] >= 0) && nk > 0 ? (float)(m->soft_ce * loss_scale / nk) : 0.0f;
            kxent_soft(m->clog, NULL, m->soft_t, m->soft_T, m->closs, m->kl, m->ccorrect, m->kagree, m->clabel,
                       train ? m->cgscale : NULL, train ? m->kgscale : NULL, B, m->ncls);
            double ks = 0, ka = 0;
            for (int b = 0; b < B; b++)
                if (m->soft_all || m->clabel[b] >= 0) ks += m->kl[b], ka += m->kagree[b];
            term(r, "ce_loss", ks, kn, m->soft_ce);
            term(r, "teacher_agree", ka, kn, 0.0);
            m->soft_t = NULL;
        } else {
            kxent(m->clog, NULL, m->closs, m->ccorrect, m->clabel, train ? m->cgscale : NULL, B, m->ncls);
        }
        double s = 0;
        int64_t correct = 0;
        for (int b = 0; b < B; b++) {
            if (m->clabel[b] < 0) continue;
            s += m->closs[b];
            correct += m->ccorrect[b];
        }
        term(r, "cls_loss", s, cnt, cw);
        term(r, "cls_acc", (double)correct, cnt, 0.0);
    } else if (m->ncls == 1) {
        /* (regression below) */
    }
    if (m->s.heads & KHEAD_TOKEN) {
        kbin_head k = bin_head(m);
        float ts = loss_scale;
        if (m->gcount_on) { /* the head normalises by its own count: rescale to the global one */
            int cnt = 0;
            for (int i = 0; i < m->N; i++) cnt += m->tlabel[i] >= 0;
            double g = kmodel_norm_of(m, "token_loss", cnt);
            ts = g > 0 ? (float)(loss_scale * (double)cnt / g) : 0.0f;
        }
        khead_loss q = kbin_head_loss(&k, m->tlabel, ts, train);
        term(r, "token_loss", q.sum, q.count, 1.0);
        term(r, "token_acc", q.correct, q.count, 0.0);
        term(r, "token_precision", q.tp, q.pred_pos, 0.0);
        term(r, "token_recall", q.tp, q.act_pos, 0.0);
        term(r, "replaced_fraction", q.act_pos, q.count, 0.0);
    }
    if (m->s.heads & KHEAD_LM) {
        klm_head k = lm_head(m);
        if (!train) k.keep = NULL; /* no backward follows */
        khead_loss q = klm_head_loss(&k, m->hlast, m->llabel);
        const double nl = kmodel_norm_of(m, "lm_loss", q.count);
        for (int i = 0; i < m->N; i++) m->lgscale[i] = nl > 0 ? (float)(loss_scale / nl) : 0.0f;
        term(r, "lm_loss", q.sum, q.count, 1.0);
        term(r, "lm_acc", q.correct, q.count, 0.0);
    }
    if (m->ncls == 1) {
        /* MSE over rows with a target (torch.nn.MSELoss, mean) */
        int cnt = 0;
        for (int b = 0; b < B; b++) cnt += !isnan(m->ctarget[b]);
        double s = 0;
        for (int b = 0; b < B; b++) {
            float y = m->ctarget[b], z = m->clog[b];
            if (isnan(y)) {
                if (train) m->clog[b] = 0.0f;
                continue;
            }
            double d = (double)z - (double)y;
            s += d * d;
            if (train) m->clog[b] = (float)(2.0 * d * loss_scale / kmodel_norm_of(m, "mse", cnt));
        }
        term(r, "mse", s, cnt, 1.0);
    }
    m->soft_t = NULL; /* soft targets serve one loss (also when no head read them: no masked slot) */
    m->gcount_on = 0;  /* so do the counts over all ranks */
    kstep_total_loss(r);
}

/* The end of the word embeddings' range of the arena: the next tensor's offset. */
static size_t word_end(const kmodel *m)
{
    size_t e = m->numel;
    for (int i = 0; i < m->nt; i++)
        if (m->t[i].offset > m->word && m->t[i].offset < e) e = m->t[i].offset;
    return e;
}

/* The lowest arena offset of weight group g's tensors. */
static size_t group_lo(const kmodel *m, int g)
{
    const layer_off *w = &m->lw[g];
    const size_t f[] = {w->qkv_w, w->qkv_b, w->ao_w, w->ao_b, w->ln1_g, w->ln1_b,
                        w->ff_w,  w->ff_b,  w->fo_w, w->fo_b, w->ln2_g, w->ln2_b};
    size_t lo = f[0];
    for (size_t i = 1; i < sizeof f / sizeof f[0]; i++)
        if (f[i] < lo) lo = f[i];
    return lo;
}

/* After layer l's backward: when l is the lowest layer of its weight group,
 * every gradient from the group's first tensor up is final (later groups,
 * the pooler and the heads lie above it in the arena; the embeddings, the
 * projection and a tied decoder below): tell the hook. */
static void layer_done(kmodel *m, int l)
{
    if (!m->grad_hook) return;
    int g = m->type != KMODEL_ALBERT ? l : (int)((int64_t)l * m->NG / m->NL);
    int gp = l == 0 ? -1 : m->type != KMODEL_ALBERT ? l - 1 : (int)((int64_t)(l - 1) * m->NG / m->NL);
    if (gp != g) m->grad_hook(m->grad_hook_ctx, group_lo(m, g));
}

static void backward(kmodel *m, uint64_t key)
{
    const float *P = m->params;
    float *G = m->grads;
    const int N = m->N, E = m->E, H = m->H, I = m->I, M = m->M, B = m->B;
    const float ph = m->p_hidden, pa = m->p_attn;
    float *gA = m->gA, *gB = m->gB, *gC = m->gC;

    /* gradient of the last layer's output, from the heads */
    memset(gA, 0, (size_t)N * H * sizeof(float));
    if (M > 0) {
        kmlm_head k = mlm_head(m);
        kmlm_head_backward(&k, m->dmx, 0, m->mx);
#pragma omp parallel for schedule(static) if ((size_t)M * H >= 32768)
        for (int b = 0; b < B; b++) /* a row's masked positions all lie in its own rows */
            for (int i = m->mstart[b]; i < m->mstart[b + 1]; i++) {
                float *d = gA + (size_t)m->mrow[i] * H;
                const float *s = m->dmx + (size_t)i * H;
                for (int c = 0; c < H; c++) d[c] += s[c];
            }
    }
    if (m->s.heads & KHEAD_DEA) kernie_dea_backward(m, gA);
    if (m->s.heads & KHEAD_TOKEN) {
        kbin_head k = bin_head(m);
        kbin_head_backward(&k, gA, 1, m->hlast);
    }
    if (m->s.heads & KHEAD_LM) {
        klm_head k = lm_head(m);
        klm_head_backward(&k, gA, 1, m->hlast, m->llabel, m->lgscale);
    }
    if (m->ncls && m->type == KMODEL_ELECTRA) {
        kdense_backward(m->dz, 0, G + m->clf_w, G + m->clf_b, m->clog, m->cz, P + m->clf_w, B, H, m->ncls);
        kdropout(m->dz, m->dz, (size_t)B * H, m->p_cls, site_key(key, SITE_CLS + 1), 0);
        for (size_t i = 0; i < (size_t)B * H; i++) m->dz[i] *= m->pooled[i]; /* * gelu'(pre) */
        kdense_backward(m->dcls, 0, G + m->pool_w, G + m->pool_b, m->dz, m->cls, P + m->pool_w, B, H, H);
        kdropout(m->dcls, m->dcls, (size_t)B * H, m->p_cls, site_key(key, SITE_CLS), 0);
        for (int b = 0; b < B; b++) {
            float *d = gA + (size_t)m->offs[b] * H;
            const float *s = m->dcls + (size_t)b * H;
            for (int c = 0; c < H; c++) d[c] += s[c];
        }
    } else if (m->ncls && m->distil) { /* DistilBertForSequenceClassification */
        kdense_backward(m->dz, 0, G + m->clf_w, G + m->clf_b, m->clog, m->cz, P + m->clf_w, B, H, m->ncls);
        kdropout(m->dz, m->dz, (size_t)B * H, m->p_cls, site_key(key, SITE_CLS), 0);
        for (size_t i = 0; i < (size_t)B * H; i++)
            if (!(m->pooled[i] > 0.0f)) m->dz[i] = 0.0f; /* * relu'(pre) */
        kdense_backward(m->dcls, 0, G + m->pool_w, G + m->pool_b, m->dz, m->cls, P + m->pool_w, B, H, H);
        for (int b = 0; b < B; b++) {
            float *d = gA + (size_t)m->offs[b] * H;
            const float *s = m->dcls + (size_t)b * H;
            for (int c = 0; c < H; c++) d[c] += s[c];
        }
    } else if (m->sent || m->ncls) {
        if (m->sent)
            kdense_backward(m->dpooled, 0, G + m->cls_w, G + m->cls_b, m->slog, m->pooled, P + m->cls_w, B, H, 2);
        if (m->ncls) {
            kdense_backward(m->dz, 0, G + m->clf_w, G + m->clf_b, m->clog, m->cz, P + m->clf_w, B, H, m->ncls);
            kdropout(m->dz, m->dz, (size_t)B * H, m->p_cls, site_key(key, SITE_CLS), 0);
            if (m->sent)
                kadd(m->dpooled, m->dz, (size_t)B * H);
            else
                memcpy(m->dpooled, m->dz, (size_t)B * H * sizeof(float));
        }
        kpooler_backward(m->dcls, 0, G + m->pool_w, G + m->pool_b, m->dpooled, m->cls, m->pooled, P + m->pool_w, B,
                         H);
        for (int b = 0; b < B; b++) {
            float *d = gA + (size_t)m->offs[b] * H;
            const float *s = m->dcls + (size_t)b * H;
            for (int c = 0; c < H; c++) d[c] += s[c];
        }
    }

    if (m->word_hook) m->word_hook(m->grad_hook_ctx, m->word, word_end(m)); /* only the lookup's rows to come */
    m->wrows = NULL;
    float *x = emb_out(m, 1);
    if (m->s.pre_ln) {
        if (m->inj_set[m->NL]) kadd(gA, m->inj[m->NL], (size_t)N * H);
        klayernorm_backward(gA, 0, G + m->fln_g, G + m->fln_b, gA, m->la[m->NL - 1].out, m->fmean, m->frstd,
                            P + m->fln_g, N, H);
        for (int l = m->NL - 1; l >= 0; l--) {
            if (l + 1 < m->NL && m->inj_set[l + 1]) kadd(gA, m->inj[l + 1], (size_t)N * H);
            layer_backward_preln(m, l, hidden_of(m, l, 1), key);
            layer_done(m, l);
        }
    }
    for (int l = m->NL - 1; l >= 0 && !m->s.pre_ln; l--) {
        const layer_off *w = group_of(m, l);
        layer_act *a = &m->la[l];
        const float *hin = hidden_of(m, l, 1);
        if (m->inj_set[l + 1]) kadd(gA, m->inj[l + 1], (size_t)N * H);
        /* gA = d out */
        klayernorm_backward(gB, 0, G + w->ln2_g, G + w->ln2_b, gA, a->xs2, a->m2, a->r2, P + w->ln2_g, N, H);
        const float *dfo = gB;
        if (ph > 0 && m->type != KMODEL_ALBERT) {
            kdropout_rows(gC, gB, NULL, N, H, ph, site_key(key, 4 * (uint64_t)l + 2), m->tok);
            dfo = gC;
        }
        kepi_act eb = {.x = a->ffpre, .y = m->gI, .C = I, .kind = m->act}; /* gI = d ffact, then * gelu'(pre) */
        const int fusion = m->NF && l >= m->NL - m->NF; /* ERNIE: the entity output's share of d ffact first */
        const int acc = fusion ? kernie_backward_post(m, l, key) : 0;
        kdense_backward_ex(m->gI, acc, G + w->fo_w, G + w->fo_b, dfo, a->ffact, P + w->fo_w, N, I, H, kepi_mul, &eb);
        kdense_backward(gB, 1, G + w->ff_w, G + w->ff_b, m->gI, a->h1, P + w->ff_w, N, H, I); /* gB = d h1 */
        if (fusion) kernie_backward_pre(m, l, key);
        klayernorm_backward(gA, 0, G + w->ln1_g, G + w->ln1_b, gB, a->xs1, a->m1, a->r1, P + w->ln1_g, N, H);
        const float *dao = gA; /* gA = d xs1 */
        if (ph > 0 && !m->distil) {
            kdropout_rows(gC, gA, NULL, N, H, ph, site_key(key, 4 * (uint64_t)l + 1), m->tok);
            dao = gC;
        }
        kdense_backward(gB, 0, G + w->ao_w, G + w->ao_b, dao, a->ctx, P + w->ao_w, N, H, H); /* gB = d ctx */
        kattn_dims d = {.B = B, .NH = m->NH, .D = m->D, .L = m->L, .causal = m->s.causal, .pdrop = pa,
                        .key = site_key(key, 4 * (uint64_t)l), .seq = m->seq};
        kattention_backward(m->gQKV, m->scratch, gB, a->qkv, a->probs, m->offs, &d);
        if (m->qinj_set && m->qinj_set[l]) kadd(m->gQKV, m->qinj[l], (size_t)N * 3 * H);
        kdense_backward(gA, 1, G + w->qkv_w, G + w->qkv_b, m->gQKV, hin, P + w->qkv_w, N, H, 3 * H); /* gA = d hin */
        layer_done(m, l);
    }
    if (m->inj_set[0]) kadd(gA, m->inj[0], (size_t)N * H);
    float *dx = gA; /* (N, E) gradient of the embedding output */
    if (m->map) {
        kdense_backward(m->gE, 0, G + m->map_w, G + m->map_b, gA, x, P + m->map_w, N, E, H);
        dx = m->gE;
    }
    if (m->p_emb > 0) kdropout_rows(dx, dx, NULL, N, E, m->p_emb, site_key(key, SITE_EMB), m->tok);
    float *gw = m->word_hook ? NULL : G + m->word; /* sparse: the rows stay in dx */
    if (m->word_hook) m->wrows = dx;
    if (m->gpt2) {
        kembed_backward(gw, m->ids, -1, G + m->pos, m->pos_ids, NULL, NULL, dx, N, E);
        if (m->grad_hook) m->grad_hook(m->grad_hook_ctx, 0);
        return;
    }
    klayernorm_backward(dx, 0, G + m->eln_g, G + m->eln_b, dx, m->emb_x, m->emb_mean, m->emb_rstd, P + m->eln_g, N,
                        E);
    kembed_backward(gw, m->ids, m->c.pad_token_id, G + m->pos, m->pos_ids, m->distil ? NULL : G + m->typ,
                    m->distil ? NULL : m->type_ids, dx, N, E);
    if (m->grad_hook) m->grad_hook(m->grad_hook_ctx, 0);
}

/* ---- data parallel ------------------------------------------------------------------ */

int kmodel_loss_counts(kmodel *m, kstep_result *c)
{
    if (m->el) return kelectra_loss_counts(m, c);
    if (!m->fwd || m->lossed) {
        bad(m, "kmodel_loss_counts without a new forward pass");
        return EX_SOFTWARE;
    }
    loss_counts(m, c);
    return 0;
}

void kmodel_set_loss_counts(kmodel *m, const kstep_result *global)
{
    if (m->el) {
        kelectra_set_loss_counts(m, global);
        return;
    }
    m->gcount_on = global != NULL;
    if (global) m->gcount = *global;
}

void kmodel_set_grad_hook(kmodel *m, void (*fn)(void *ctx, size_t lo), void *ctx)
{
    m->grad_hook = fn;
    m->grad_hook_ctx = ctx;
    if (!fn) m->word_hook = NULL;
}

int kmodel_set_sparse_word_grad(kmodel *m, void (*word_fn)(void *ctx, size_t lo, size_t hi))
{
    if (m->el || !m->grad_hook) return 0;
    m->word_hook = word_fn;
    return 1;
}

const float *kmodel_word_grad_rows(const kmodel *m, const int32_t **ids, int *n, int *width, int32_t *skip)
{
    if (!m->wrows || m->lossed != 2) return NULL;
    *ids = m->ids;
    *n = m->N;
    *width = m->E;
    *skip = m->gpt2 ? -1 : m->c.pad_token_id;
    return m->wrows;
}

void kmodel_word_range(const kmodel *m, size_t *lo, size_t *hi)
{
    *lo = m->el ? 0 : m->word;
    *hi = m->el ? 0 : word_end(m);
}

/* ---- the pass API ------------------------------------------------------------------ */

int kmodel_forward(kmodel *m, const ksample_batch *b, int mode, uint64_t dropout_key)
{
    if (m->el) return kelectra_forward(m, b, mode, dropout_key);
    m->fwd = 0;
    m->lossed = 0;
    if (mode == KMODE_TRAIN && m->inference) return bad(m, "an inference model has no training pass");
    int rc = load_batch(m, b);
    if (rc == 0) rc = ensure_scratch(m);
    if (rc) return rc;
    memset(m->inj_set, 0, (size_t)m->NL + 1);
    if (m->qinj_set) memset(m->qinj_set, 0, (size_t)m->NL);
    m->soft_t = NULL;
    forward(m, mode == KMODE_TRAIN, dropout_key);
    m->key = dropout_key;
    m->fwd = mode == KMODE_TRAIN ? 2 : 1;
    m->has_logits = 1;
    return 0;
}

int kmodel_loss(kmodel *m, float loss_scale, kstep_result *r)
{
    kstep_result tmp;
    if (m->el) return kelectra_loss(m, loss_scale, r);
    if (!m->fwd || m->lossed) {
        bad(m, "kmodel_loss without a new forward pass");
        return EX_SOFTWARE;
    }
    const int train = m->fwd == 2;
    loss(m, train, loss_scale, r ? r : &tmp);
    m->lossed = 1;
    if (train) m->has_logits = 0; /* the logits became gradients */
    return 0;
}

int kmodel_backward(kmodel *m)
{
    if (m->el) return kelectra_backward(m);
    if (m->fwd != 2 || m->lossed != 1) {
        bad(m, "kmodel_backward without a training forward and loss");
        return EX_SOFTWARE;
    }
    backward(m, m->key);
    m->lossed = 2; /* one backward per forward; activations stay readable */
    return 0;
}

int kmodel_forward_backward(kmodel *m, const ksample_batch *b, uint64_t dropout_key, float loss_scale,
                            kstep_result *r)
{
    int rc = kmodel_forward(m, b, KMODE_TRAIN, dropout_key);
    if (!rc) rc = kmodel_loss(m, loss_scale, r);
    if (!rc) rc = kmodel_backward(m);
    return rc;
}

int kmodel_evaluate(kmodel *m, const ksample_batch *b, kstep_result *r)
{
    int rc = kmodel_forward(m, b, KMODE_EVAL, 0);
    if (!rc) rc = kmodel_loss(m, 0.0f, r);
    return rc;
}

const int32_t *kmodel_offsets(const kmodel *m, int *B, int *N)
{
    if (m->el) return kmodel_offsets(kelectra_disc(m), B, N);
    if (B) *B = m->B;
    if (N) *N = m->N;
    return m->offs;
}

const float *kmodel_hidden(const kmodel *m, int l)
{
    if (m->el) return kmodel_hidden(kelectra_disc(m), l);
    if (l < 0 || l > m->NL || !m->fwd) return NULL;
    if (l == m->NL && m->s.pre_ln) return m->fin;
    return hidden_of(m, l, m->fwd == 2);
}

const float *kmodel_attention(const kmodel *m, int l)
{
    if (m->el) return kmodel_attention(kelectra_disc(m), l);
    if (l < 1 || l > m->NL || !m->fwd) return NULL;
    return m->la[l - 1].probs;
}

/* *slot += scale g over the current pass's N rows of `width` floats: the
 * buffer (max_B L rows) allocated on first use, zeroed on the pass's first
 * injection (*set). Returns 0 or EX_SOFTWARE (out of memory). */
static int inject(kmodel *m, float **slot, uint8_t *set, size_t width, const float *g, float scale)
{
    const size_t n = (size_t)m->N * width;
    if (!*slot && !(*slot = falloc((size_t)m->maxB * m->L * width))) {
        bad(m, "out of memory for an injected gradient");
        return EX_SOFTWARE;
    }
    float *d = *slot;
    if (!*set) memset(d, 0, n * sizeof(float));
    for (size_t i = 0; i < n; i++) d[i] += scale * g[i];
    *set = 1;
    return 0;
}

int kmodel_inject_grad(kmodel *m, int l, const float *g, float scale)
{
    if (m->el) return kmodel_inject_grad(kelectra_disc(m), l, g, scale);
    if (m->fwd != 2 || m->lossed == 2 || l < 0 || l > m->NL) {
        bad(m, "gradient injection at layer %d without a training forward", l);
        return EX_SOFTWARE;
    }
    return inject(m, &m->inj[l], &m->inj_set[l], (size_t)m->H, g, scale);
}

const float *kmodel_qkv(const kmodel *m, int l)
{
    if (m->el) return kmodel_qkv(kelectra_disc(m), l);
    if (l < 1 || l > m->NL || !m->fwd) return NULL;
    return m->la[l - 1].qkv;
}

int kmodel_inject_qkv_grad(kmodel *m, int l, const float *g, float scale)
{
    if (m->el) return kmodel_inject_qkv_grad(kelectra_disc(m), l, g, scale);
    if (m->fwd != 2 || m->lossed == 2 || l < 1 || l > m->NL || m->s.pre_ln) {
        bad(m, "query/key/value gradient injection at layer %d without a training forward of a post-LN model", l);
        return EX_SOFTWARE;
    }
    if (!m->qinj) {
        m->qinj = calloc((size_t)m->NL, sizeof *m->qinj);
        m->qinj_set = calloc((size_t)m->NL, 1);
        if (!m->qinj || !m->qinj_set) {
            free(m->qinj);
            free(m->qinj_set);
            m->qinj = NULL;
            m->qinj_set = NULL;
            bad(m, "out of memory for an injected gradient");
            return EX_SOFTWARE;
        }
    }
    return inject(m, &m->qinj[l - 1], &m->qinj_set[l - 1], 3 * (size_t)m->H, g, scale);
}

size_t kmodel_param_offset(const kmodel *m, const char *name)
{
    for (int i = 0; i < m->nt; i++)
        if (!strcmp(m->t[i].name, name)) return m->t[i].offset;
    return SIZE_MAX;
}

const float *kmodel_mlm_logits(const kmodel *m, int row, int p)
{
    if (m->el) return kmodel_mlm_logits(kelectra_gen(m), row, p);
    if (!m->has_logits || row < 0 || row >= m->B || p < 0) return NULL;
    int i = m->mstart[row] + p;
    if (i >= m->mstart[row + 1]) return NULL;
    return m->logits + (size_t)i * m->V;
}

const float *kmodel_mlm_logits_all(const kmodel *m, int *M)
{
    if (m->el) return kmodel_mlm_logits_all(kelectra_gen(m), M);
    int ok = m->has_logits && m->M > 0;
    if (M) *M = ok ? m->M : 0;
    return ok ? m->logits : NULL;
}

int kmodel_set_soft_targets(kmodel *m, const float *t, float T, double ce_weight, double mlm_weight, int all_slots)
{
    if (m->el || !((m->s.heads & KHEAD_MLM) || m->ncls > 1) || !m->fwd || m->lossed || !t || !(T > 0)) {
        bad(m, "soft targets need a masked-LM model or a classifier after a new forward, and T > 0");
        return EX_SOFTWARE;
    }
    if (!m->kgscale) {
        size_t n = (size_t)m->maxB * (size_t)(m->P > 0 ? m->P : 1);
        m->kgscale = malloc(n * sizeof *m->kgscale);
        m->kl = malloc(n * sizeof *m->kl);
        m->kagree = malloc(n);
        if (!m->kgscale || !m->kl || !m->kagree) {
            if (m->qinj)
        for (int l = 0; l < m->NL; l++) free(m->qinj[l]);
    free(m->qinj);
    free(m->qinj_set);
    free(m->kgscale);
            free(m->kl);
            free(m->kagree);
            m->kgscale = m->kl = NULL;
            m->kagree = NULL;
            bad(m, "out of memory");
            return EX_OSERR;
        }
    }
    m->soft_t = t;
    m->soft_T = T;
    m->soft_ce = ce_weight;
    m->soft_mlm = mlm_weight;
    m->soft_all = all_slots;
    return 0;
}

/* copies n floats from teacher offset to student offset */
static void cp(kmodel *s, size_t so, const kmodel *t, size_t to, size_t n)
{
    memcpy(s->params + so, t->params + to, n * sizeof(float));
}

int kmodel_init_from(kmodel *s, const kmodel *t, const int *layers, int n, char *err, size_t errlen)
{
    if (s->el || t->el || s->gpt2 || t->gpt2) {
        kseterr(err, errlen, "initialization from a teacher takes BERT, ALBERT or DistilBERT models");
        return EX_CONFIG;
    }
    if (s->V != t->V || s->E != t->E || s->H != t->H || s->I != t->I || s->map != t->map) {
        kseterr(err, errlen,
                "the student (vocabulary %d, embedding %d, hidden %d, FFN %d) must match the teacher (%d, %d, %d, %d) "
                "to start from its weights (set distill.init_from_teacher false for another shape)",
                s->V, s->E, s->H, s->I, t->V, t->E, t->H, t->I);
        return EX_CONFIG;
    }
    if (n != s->NG) {
        kseterr(err, errlen, "%d teacher layers listed for the student's %d weight sets", n, s->NG);
        return EX_CONFIG;
    }
    for (int g = 0; g < n; g++)
        if (layers[g] < 0 || layers[g] >= t->NL) {
            kseterr(err, errlen, "teacher layer %d does not exist (the teacher has %d: 0 to %d)", layers[g], t->NL,
                    t->NL - 1);
            return EX_CONFIG;
        }
    const int E = s->E;
    const int rows = s->c.max_position_embeddings < t->c.max_position_embeddings ? s->c.max_position_embeddings
                                                                                  : t->c.max_position_embeddings;
    cp(s, s->word, t, t->word, (size_t)s->V * E);
    cp(s, s->pos, t, t->pos, (size_t)rows * E);
    if (s->distil && !t->distil) {
        /* no token types in the student: the teacher's type-0 row goes into every position */
        for (int p = 0; p < s->c.max_position_embeddings; p++)
            for (int j = 0; j < E; j++)
                s->params[s->pos + (size_t)p * E + j] =
                    (p < rows ? s->params[s->pos + (size_t)p * E + j] : 0.0f) + t->params[t->typ + j];
    } else if (!s->distil && !t->distil) {
        cp(s, s->typ, t, t->typ, (size_t)(s->T < t->T ? s->T : t->T) * E);
    }
    cp(s, s->eln_g, t, t->eln_g, (size_t)E);
    cp(s, s->eln_b, t, t->eln_b, (size_t)E);
    if (s->map) {
        cp(s, s->map_w, t, t->map_w, (size_t)s->H * E);
        cp(s, s->map_b, t, t->map_b, (size_t)s->H);
    }
    const size_t H = (size_t)s->H, I = (size_t)s->I;
    for (int g = 0; g < n; g++) {
        const layer_off *so = &s->lw[g], *to = &t->lw[(size_t)layers[g] * t->NG / t->NL];
        cp(s, so->qkv_w, t, to->qkv_w, 3 * H * H);
        cp(s, so->qkv_b, t, to->qkv_b, 3 * H);
        cp(s, so->ao_w, t, to->ao_w, H * H);
        cp(s, so->ao_b, t, to->ao_b, H);
        cp(s, so->ln1_g, t, to->ln1_g, H);
        cp(s, so->ln1_b, t, to->ln1_b, H);
        cp(s, so->ff_w, t, to->ff_w, I * H);
        cp(s, so->ff_b, t, to->ff_b, I);
        cp(s, so->fo_w, t, to->fo_w, H * I);
        cp(s, so->fo_b, t, to->fo_b, H);
        cp(s, so->ln2_g, t, to->ln2_g, H);
        cp(s, so->ln2_b, t, to->ln2_b, H);
    }
    if ((s->s.heads & KHEAD_MLM) && (t->s.heads & KHEAD_MLM)) {
        cp(s, s->mlm_w, t, t->mlm_w, (size_t)E * H);
        cp(s, s->mlm_b, t, t->mlm_b, (size_t)E);
        cp(s, s->mlm_ln_g, t, t->mlm_ln_g, (size_t)E);
        cp(s, s->mlm_ln_b, t, t->mlm_ln_b, (size_t)E);
        cp(s, s->mlm_bias, t, t->mlm_bias, (size_t)s->V);
    }
    if (s->sent && t->sent && !s->distil && !t->distil) {
        cp(s, s->pool_w, t, t->pool_w, H * H);
        cp(s, s->pool_b, t, t->pool_b, H);
        cp(s, s->cls_w, t, t->cls_w, 2 * H);
        cp(s, s->cls_b, t, t->cls_b, 2);
    }
    return 0;
}

const float *kmodel_sentence_logits(const kmodel *m, int row)
{
    if (m->el) return NULL;
    if (!m->has_logits || !m->sent || row < 0 || row >= m->B) return NULL;
    return m->slog + (size_t)row * 2;
}

const float *kmodel_class_logits(const kmodel *m, int row)
{
    if (m->el) return NULL;
    if (!m->has_logits || !m->ncls || row < 0 || row >= m->B) return NULL;
    return m->clog + (size_t)row * m->ncls;
}

float kmodel_token_logit(const kmodel *m, int row, int t)
{
    if (m->el) return kmodel_token_logit(kelectra_disc(m), row, t);
    if (!m->fwd || !(m->s.heads & KHEAD_TOKEN) || row < 0 || row >= m->B || t < 0 ||
        t >= m->offs[row + 1] - m->offs[row])
        return NAN;
    return m->tlogit[m->offs[row] + t];
}
