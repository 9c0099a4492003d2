/* test_model.c: unit tests of trainer/model.c and trainer/optim.c on a small
 * BERT (V 50, H 16, 2 layers, 2 heads, I 32, erf GELU, NSP) and a small
 * ALBERT (V 50, E 8, H 16, 3 layers sharing 2 weight groups, 2 heads, I 32,
 * tanh GELU, SOP), batch B 3, L 12, P 4 with padding, a masked slot of
 * weight 0 and one of weight 0.5, and a row without sentence label.
 *
 * - Names, shapes, decay flags and arena layout (no overlap, q/k/v stacked).
 * - Whole-model gradient check: for every tensor, its largest-gradient element
 *   and 3 random ones, 4-point central differences of the loss (h = 1e-2,
 *   initializer_range 0.3 so that every path carries signal), pass when
 *   |analytic - numeric| <= 3e-4 + 3e-3 |numeric|; without dropout and with
 *   dropout 0.1 on every site (masks are keyed, so the loss is a function).
 * - Determinism: two runs give the same bytes; 1 and 2 threads too (losses,
 *   gradients, and parameters after optimizer steps), also for a model large
 *   enough that every kernel runs in parallel (1, 2, 3 threads).
 * - Accumulation: two passes with loss_scale 0.5 == one with 1 (within 1e-6 of
 *   the largest gradient).
 * - Packing: what lies past a row's length changes nothing (bitwise).
 * - Eval logits agree with the reported loss; bad configs and batches fail
 *   with a message.
 * - Optimizers: AdamW and LAMB against a double re-implementation of the
 *   formulas in optim.h (relative 1e-5) with clipping and both decay flags;
 *   the learning-rate schedules; 40 steps on a fixed batch cut the loss. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "trainer/model.h"
#include "trainer/optim.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}
static double urand(void) { return (double)(rng() >> 11) * (1.0 / 9007199254740992.0); }

/* ---- fixtures --------------------------------------------------------------------- */

enum { TB = 3, TL = 12, TP = 4, TV = 50 };

static kmodel_config config(int type, double dropout)
{
    kmodel_config c = {0};
    c.type = type;
    c.vocab_size = TV;
    c.embedding_size = type == KMODEL_ALBERT ? 8 : 16;
    c.hidden_size = 16;
    c.num_hidden_layers = type == KMODEL_ALBERT ? 3 : 2;
    c.num_hidden_groups = type == KMODEL_ALBERT ? 2 : 2;
    c.num_attention_heads = 2;
    c.intermediate_size = 32;
    c.max_position_embeddings = 16;
    c.type_vocab_size = 2;
    c.hidden_act = type == KMODEL_ALBERT ? KACT_GELU_NEW : KACT_GELU;
    c.layer_norm_eps = 1e-12;
    c.hidden_dropout_prob = dropout;
    c.attention_probs_dropout_prob = dropout;
    c.embd_dropout_prob = dropout; /* GPT-2's embd_pdrop */
    c.initializer_range = 0.3;
    c.pad_token_id = 0;
    if (type == KMODEL_DISTILBERT) c.seq_classif_dropout = dropout; /* its classifier's default dropout */
    if (type == KMODEL_ELECTRA) { /* E != H on the discriminator; E = G on the generator (no projection) */
        c.embedding_size = 8;
        c.generator_hidden_size = 8;
        c.generator_num_hidden_layers = 2;
        c.generator_num_attention_heads = 1;
        c.generator_intermediate_size = 16;
        c.disc_weight = 5; /* a weight != 1 (50 would scale the float noise of the check past its tolerance) */
    }
    return c;
}

typedef struct tbatch {
    ksample_batch b;
    int64_t index[TB];
    int32_t ids[TB * TL], lengths[TB], n_masked[TB], pos[TB * TP], mids[TB * TP], labels[TB];
    uint8_t types[TB * TL];
    float w[TB * TP];
} tbatch;

/* Always the same batch (its own random stream). */
static void make_batch(tbatch *t)
{
    uint64_t saved = rng_state;
    rng_state = 0xB7E151628AED2A6Bull;
    memset(t, 0, sizeof *t);
    static const int lens[TB] = {12, 7, 3}, nm[TB] = {4, 2, 1}, lab[TB] = {0, 1, -1};
    static const int mpos[TB][TP] = {{1, 4, 5, 10}, {2, 6, 0, 0}, {1, 0, 0, 0}};
    for (int r = 0; r < TB; r++) {
        t->lengths[r] = lens[r];
        t->n_masked[r] = nm[r];
        t->labels[r] = lab[r];
        t->index[r] = r;
        for (int i = 0; i < TL; i++) {
            t->ids[r * TL + i] = i < lens[r] ? (i == 0 ? 2 : 3 + (int)(rng() % (TV - 3))) : 0;
            t->types[r * TL + i] = i < lens[r] && i > lens[r] / 2;
        }
        for (int p = 0; p < TP; p++) {
            t->pos[r * TP + p] = mpos[r][p];
            t->mids[r * TP + p] = p < nm[r] ? 3 + (int)(rng() % (TV - 3)) : 0;
            t->w[r * TP + p] = p < nm[r] ? 1.0f : 0.0f;
        }
    }
    t->w[0 * TP + 2] = 0.0f; /* a real slot switched off */
    t->w[1 * TP + 1] = 0.5f;
    ksample_batch *b = &t->b;
    b->version = KSAMPLE_BATCH_VERSION;
    b->objectives = KOBJ_MLM | KOBJ_SOP;
    b->B = TB, b->L = TL, b->P = TP, b->capacity = TB;
    b->pad_id = 0, b->cls_id = 2, b->sep_id = 1, b->mask_id = 4;
    b->index = t->index, b->input_ids = t->ids, b->token_type_ids = t->types, b->lengths = t->lengths;
    b->n_masked = t->n_masked, b->masked_positions = t->pos, b->masked_ids = t->mids, b->masked_weights = t->w;
    b->labels = t->labels;
    rng_state = saved;
}

static kmodel *new_model(int type, double dropout)
{
    kmodel_config c = config(type, dropout);
    char err[256] = "";
    kmodel *m = kmodel_new(&c, TB, TL, TP, 1, err, sizeof err);
    if (!m) print_error("kmodel_new: %s\n", err);
    assert_non_null(m);
    kmodel_init(m, 7);
    return m;
}

static kopt_config opt_config(int type);

/* ---- layout ------------------------------------------------------------------------ */

static void check_layout(kmodel *m, int expect_n)
{
    int n;
    const ktensor *t = kmodel_params(m, &n);
    assert_int_equal(n, expect_n);
    size_t numel = kmodel_numel(m), total = 0;
    char *used = calloc(numel, 1);
    for (int i = 0; i < n; i++) {
        size_t prod = 1;
        for (int d = 0; d < t[i].ndim; d++) prod *= (size_t)t[i].shape[d];
        assert_int_equal(prod, t[i].numel);
        assert_true(t[i].offset + t[i].numel <= numel);
        for (size_t j = 0; j < t[i].numel; j++) {
            assert_int_equal(used[t[i].offset + j], 0);
            used[t[i].offset + j] = 1;
        }
        total += t[i].numel;
        int is_bias_or_ln = strstr(t[i].name, "bias") || strstr(t[i].name, "LayerNorm") ||
                            strstr(t[i].name, "layer_norm");
        assert_int_equal(t[i].decay, !is_bias_or_ln);
        for (int j = 0; j < i; j++) assert_true(strcmp(t[i].name, t[j].name) != 0);
    }
    assert_int_equal(total, kmodel_param_count(m));
    free(used);
}

static void expect_tensor(kmodel *m, const char *name, int64_t d0, int64_t d1)
{
    int n;
    const ktensor *t = kmodel_params(m, &n);
    int i = ktensor_find(t, n, name);
    if (i < 0) print_error("missing tensor %s\n", name);
    assert_true(i >= 0);
    assert_int_equal(t[i].shape[0], d0);
    if (d1) {
        assert_int_equal(t[i].ndim, 2);
        assert_int_equal(t[i].shape[1], d1);
    } else {
        assert_int_equal(t[i].ndim, 1);
    }
}

static void test_layout(void **state)
{
    (void)state;
    kmodel *a = new_model(KMODEL_ALBERT, 0);
    check_layout(a, 5 + 2 + 2 * 16 + 2 + 5 + 2);
    expect_tensor(a, "albert.embeddings.word_embeddings.weight", TV, 8);
    expect_tensor(a, "albert.embeddings.position_embeddings.weight", 16, 8);
    expect_tensor(a, "albert.embeddings.token_type_embeddings.weight", 2, 8);
    expect_tensor(a, "albert.encoder.embedding_hidden_mapping_in.weight", 16, 8);
    expect_tensor(a, "albert.encoder.albert_layer_groups.1.albert_layers.0.attention.query.weight", 16, 16);
    expect_tensor(a, "albert.encoder.albert_layer_groups.1.albert_layers.0.attention.value.bias", 16, 0);
    expect_tensor(a, "albert.encoder.albert_layer_groups.0.albert_layers.0.attention.dense.weight", 16, 16);
    expect_tensor(a, "albert.encoder.albert_layer_groups.0.albert_layers.0.attention.LayerNorm.weight", 16, 0);
    expect_tensor(a, "albert.encoder.albert_layer_groups.0.albert_layers.0.ffn.weight", 32, 16);
    expect_tensor(a, "albert.encoder.albert_layer_groups.0.albert_layers.0.ffn_output.weight", 16, 32);
    expect_tensor(a, "albert.encoder.albert_layer_groups.0.albert_layers.0.full_layer_layer_norm.bias", 16, 0);
    expect_tensor(a, "albert.pooler.weight", 16, 16);
    expect_tensor(a, "predictions.dense.weight", 8, 16);
    expect_tensor(a, "predictions.LayerNorm.weight", 8, 0);
    expect_tensor(a, "predictions.bias", TV, 0);
    expect_tensor(a, "sop_classifier.classifier.weight", 2, 16);
    int n;
    const ktensor *t = kmodel_params(a, &n);
    assert_true(ktensor_find(t, n, "predictions.decoder.weight") < 0); /* tied: not a tensor */
    /* query, key, value stacked */
    const char *p = "albert.encoder.albert_layer_groups.0.albert_layers.0.attention.";
    char q[160], k[160], v[160];
    snprintf(q, sizeof q, "%squery.weight", p), snprintf(k, sizeof k, "%skey.weight", p);
    snprintf(v, sizeof v, "%svalue.weight", p);
    size_t oq = t[ktensor_find(t, n, q)].offset;
    assert_int_equal(t[ktensor_find(t, n, k)].offset, oq + 256);
    assert_int_equal(t[ktensor_find(t, n, v)].offset, oq + 512);
    /* init: LayerNorm 1, biases 0, weights ~ N(0, 0.3), pad row 0 */
    const float *P = kmodel_param_data(a);
    int ln = ktensor_find(t, n, "albert.embeddings.LayerNorm.weight"), bi = ktensor_find(t, n, "predictions.bias");
    int we = ktensor_find(t, n, "albert.embeddings.word_embeddings.weight");
    for (size_t j = 0; j < t[ln].numel; j++) assert_true(P[t[ln].offset + j] == 1.0f);
    for (size_t j = 0; j < t[bi].numel; j++) assert_true(P[t[bi].offset + j] == 0.0f);
    for (int j = 0; j < 8; j++) assert_true(P[t[we].offset + j] == 0.0f);
    double s = 0, s2 = 0;
    for (size_t j = 8; j < t[we].numel; j++) s += P[t[we].offset + j], s2 += (double)P[t[we].offset + j] * P[t[we].offset + j];
    double cnt = (double)t[we].numel - 8, sd = sqrt(s2 / cnt - (s / cnt) * (s / cnt));
    assert_true(fabs(sd - 0.3) < 0.03 && fabs(s / cnt) < 0.05);
    kmodel_free(a);

    kmodel *b = new_model(KMODEL_BERT, 0);
    check_layout(b, 5 + 2 * 16 + 2 + 5 + 2);
    expect_tensor(b, "bert.embeddings.word_embeddings.weight", TV, 16);
    expect_tensor(b, "bert.encoder.layer.1.attention.self.key.weight", 16, 16);
    expect_tensor(b, "bert.encoder.layer.1.attention.output.dense.bias", 16, 0);
    expect_tensor(b, "bert.encoder.layer.1.attention.output.LayerNorm.weight", 16, 0);
    expect_tensor(b, "bert.encoder.layer.0.intermediate.dense.weight", 32, 16);
    expect_tensor(b, "bert.encoder.layer.0.output.dense.weight", 16, 32);
    expect_tensor(b, "bert.encoder.layer.0.output.LayerNorm.bias", 16, 0);
    expect_tensor(b, "bert.pooler.dense.weight", 16, 16);
    expect_tensor(b, "cls.predictions.bias", TV, 0);
    expect_tensor(b, "cls.predictions.transform.dense.weight", 16, 16);
    expect_tensor(b, "cls.predictions.transform.LayerNorm.bias", 16, 0);
    expect_tensor(b, "cls.seq_relationship.weight", 2, 16);
    kmodel_free(b);

    /* without the sentence head: no pooler, no classifier */
    kmodel_config c = config(KMODEL_BERT, 0);
    char err[256];
    kmodel *m = kmodel_new(&c, 2, 8, 2, 0, err, sizeof err);
    assert_non_null(m);
    t = kmodel_params(m, &n);
    assert_int_equal(n, 5 + 2 * 16 + 5);
    assert_true(ktensor_find(t, n, "bert.pooler.dense.weight") < 0);
    kmodel_free(m);
}

/* ---- whole-model gradient check ------------------------------------------------------------ */

/* What a gradient check runs on: the pretraining heads, a 3-way classifier,
 * a regressor; optionally with a gradient injected at the output of layer 1
 * (the checked loss is then loss + <inj, hidden(1)>). */
enum { GC_PRETRAIN = 0, GC_CLASSIFY = 1, GC_REGRESS = 2, GC_TOKEN_LM = 3, GC_ELECTRA = 4, GC_GPT2 = 5, GC_MLM = 6 };

enum { GC_PRE_LN = 1, GC_CAUSAL = 2 }; /* layer flags */
static int gc_layers;                   /* GC_* flags of the next new_model_heads */

static kmodel *new_model_heads(int type, double dropout, int heads)
{
    if (heads == GC_PRETRAIN && !gc_layers && type != KMODEL_ELECTRA) return new_model(type, dropout);
    kmodel_config c = config(type, dropout);
    kmodel_spec s = {.heads = KHEAD_CLASSIFY, .max_B = TB, .L = TL, .num_labels = heads == GC_CLASSIFY ? 3 : 1,
                     .classifier_dropout = -1, .pre_ln = (gc_layers & GC_PRE_LN) != 0,
                     .causal = (gc_layers & GC_CAUSAL) != 0};
    if (heads == GC_PRETRAIN) s.heads = KHEAD_MLM | KHEAD_SENTENCE, s.P = TP;
    if (heads == GC_TOKEN_LM) s.heads = KHEAD_TOKEN | KHEAD_LM, s.lm_chunk = 7; /* chunks of 7 of the 50 ids */
    if (heads == GC_TOKEN_LM && type == KMODEL_ELECTRA) s.heads = KHEAD_TOKEN; /* the discriminator alone */
    if (heads == GC_ELECTRA) s.heads = KHEAD_MLM | KHEAD_TOKEN, s.P = TP; /* the generator + discriminator pair */
    if (heads == GC_GPT2) s = kmodel_spec_pretrain_of(&c, TB, TL, 0, 0), s.lm_chunk = 7; /* GPT2LMHeadModel */
    if (heads == GC_MLM) s = kmodel_spec_pretrain_of(&c, TB, TL, TP, 0); /* the MLM head alone (DistilBertForMaskedLM) */
    char err[256] = "";
    kmodel *m = kmodel_create(&c, &s, err, sizeof err);
    if (!m) print_error("kmodel_create: %s\n", err);
    assert_non_null(m);
    kmodel_init(m, 7);
    return m;
}

static float inj_g[TB * TL * 16];

static double loss_of(kmodel *m, const ksample_batch *b, int train, uint64_t key, int inject, int backward)
{
    kstep_result r;
    assert_int_equal(kmodel_forward(m, b, train ? KMODE_TRAIN : KMODE_EVAL, key), 0);
    assert_int_equal(kmodel_loss(m, 1.0f, &r), 0);
    double L = r.loss;
    if (inject) {
        int N;
        kmodel_offsets(m, NULL, &N);
        const float *h = kmodel_hidden(m, 1);
        assert_non_null(h);
        for (int i = 0; i < N * 16; i++) L += (double)inj_g[i] * h[i];
        if (backward) assert_int_equal(kmodel_inject_grad(m, 1, inj_g, 1.0f), 0);
    }
    if (backward) assert_int_equal(kmodel_backward(m), 0);
    return L;
}

/* DistilBERT's classifier: the signs of pre_classifier's outputs (the
 * ReLU's pattern) after the last forward, from the last hidden state, into
 * pat (TB * 16); 0 for other models. The loss has a kink where one flips. */
static int relu_pattern(kmodel *m, uint8_t *pat)
{
    int n, B, N;
    const ktensor *t = kmodel_params(m, &n);
    if (kmodel_get_config(m)->type != KMODEL_DISTILBERT || !kmodel_get_spec(m)->num_labels) return 0;
    const int32_t *offs = kmodel_offsets(m, &B, &N);
    const float *h = kmodel_hidden(m, kmodel_get_config(m)->num_hidden_layers), *P = kmodel_param_data(m);
    const ktensor *w = &t[ktensor_find(t, n, "pre_classifier.weight")], *bs = &t[ktensor_find(t, n, "pre_classifier.bias")];
    for (int b = 0; b < B; b++)
        for (int o = 0; o < 16; o++) {
            double a = P[bs->offset + o];
            for (int i = 0; i < 16; i++) a += (double)P[w->offset + (size_t)o * 16 + i] * h[(size_t)offs[b] * 16 + i];
            pat[b * 16 + o] = a > 0;
        }
    return 1;
}

static void gradcheck_heads(int type, double dropout, int heads, int inject)
{
    kmodel *m = new_model_heads(type, dropout, heads);
    tbatch tb;
    make_batch(&tb);
    float targets[TB] = {0.5f, -1.25f, NAN};
    int32_t tlab[TB * TL];
    for (int i = 0; i < TB * TL; i++) tlab[i] = (int)(rng() % 3) - 1;
    if (heads == GC_TOKEN_LM) tb.b.token_labels = tlab;
    if (heads == GC_ELECTRA) tb.b.objectives = KOBJ_RTD;
    if (heads == GC_CLASSIFY || heads == GC_REGRESS) {
        tb.b.objectives = KOBJ_CLASSIFY;
        tb.b.P = 0, tb.b.n_masked = NULL, tb.b.masked_positions = NULL, tb.b.masked_ids = NULL;
        tb.b.masked_weights = NULL;
        tb.labels[0] = 2, tb.labels[1] = 0, tb.labels[2] = 1;
        if (heads == GC_REGRESS) tb.b.targets = targets, tb.b.labels = NULL;
    }
    for (int i = 0; i < TB * TL * 16; i++) inj_g[i] = (float)(urand() - 0.5);
    const int train = dropout > 0;
    const uint64_t key = 99;
    kmodel_zero_grad(m);
    loss_of(m, &tb.b, 1, key, inject, 1);
    if (heads == GC_PRETRAIN) {
        kstep_result r;
        assert_int_equal(kmodel_forward_backward(m, &tb.b, key, 1.0f, &r), 0);
        assert_true(r.n == 4 && !strcmp(r.t[0].name, "mlm_loss") && !strcmp(r.t[1].name, "mlm_acc"));
        assert_true(!strcmp(r.t[2].name, "sop_loss") && !strcmp(r.t[3].name, "sop_acc"));
        assert_true(r.t[1].count == 6 && r.t[3].count == 2 && r.tokens == 22);
        assert_true(fabs(r.t[0].count - 5.5) < 1e-9);
        kmodel_zero_grad(m);
        loss_of(m, &tb.b, 1, key, inject, 1);
    }
    int n;
    const ktensor *t = kmodel_params(m, &n);
    size_t numel = kmodel_numel(m);
    float *g = malloc(numel * sizeof(float));
    memcpy(g, kmodel_grad_data(m), numel * sizeof(float));
    float *P = kmodel_param_data(m);
    const float h = 1e-2f;
    int bad = 0, checked = 0, skipped = 0;
    /* ELECTRA's loss is smooth only while the generator's draws stay: an
     * element whose perturbation changes a draw is skipped (and counted) */
    int32_t draws0[TB * TL];
    if (heads == GC_ELECTRA) {
        loss_of(m, &tb.b, train, key, inject, 0);
        memcpy(draws0, kmodel_rtd_input(m, NULL), sizeof draws0);
    }
    /* DistilBERT's classifier: likewise an element whose perturbation moves a ReLU across its kink;
     * pre_classifier's outputs are kept away from it (biases +-1.5, weights * 0.3: half the units on,
     * half off), so that few are skipped */
    uint8_t pat0[TB * 16], pat[TB * 16];
    int relu = relu_pattern(m, pat0);
    if (relu) {
        int pw = ktensor_find(t, n, "pre_classifier.weight"), pb = ktensor_find(t, n, "pre_classifier.bias");
        for (size_t j = 0; j < t[pw].numel; j++) P[t[pw].offset + j] *= 0.3f;
        for (size_t j = 0; j < t[pb].numel; j++) P[t[pb].offset + j] = j % 2 ? -1.5f : 1.5f;
        kmodel_zero_grad(m);
        loss_of(m, &tb.b, 1, key, inject, 1);
        memcpy(g, kmodel_grad_data(m), numel * sizeof(float));
        loss_of(m, &tb.b, train, key, inject, 0);
        relu_pattern(m, pat0);
    }
    for (int i = 0; i < n; i++) {
        /* the largest gradient of the tensor and 3 random elements */
        size_t pick[4], big = 0;
        for (size_t j = 1; j < t[i].numel; j++)
            if (fabsf(g[t[i].offset + j]) > fabsf(g[t[i].offset + big])) big = j;
        pick[0] = big;
        for (int k = 1; k < 4; k++) pick[k] = (size_t)(urand() * t[i].numel);
        for (int k = 0; k < 4; k++) {
            float *x = P + t[i].offset + pick[k], x0 = *x;
            double s[4];
            const float dx[4] = {2 * h, h, -h, -2 * h};
            int moved = 0;
            for (int j = 0; j < 4; j++) {
                *x = x0 + dx[j];
                s[j] = loss_of(m, &tb.b, train, key, inject, 0);
                if (heads == GC_ELECTRA) moved |= memcmp(draws0, kmodel_rtd_input(m, NULL), sizeof draws0) != 0;
                if (relu && relu_pattern(m, pat)) moved |= memcmp(pat0, pat, sizeof pat) != 0;
            }
            *x = x0;
            if (moved) {
                skipped++;
                continue;
            }
            double num = (-s[0] + 8 * s[1] - 8 * s[2] + s[3]) / (12.0 * h), ana = g[t[i].offset + pick[k]];
            checked++;
            if (fabs(num - ana) > 3e-4 + 3e-3 * fabs(num)) {
                if (bad < 10) print_error("%s[%zu]: analytic %.7g numeric %.7g\n", t[i].name, pick[k], ana, num);
                bad++;
            }
        }
    }
    static const char *const hn[] = {"pretraining", "classifier", "regression", "token + LM heads",
                                     "generator + discriminator", "LM head", "MLM head"};
    print_message("%s%s%s %s%s%s: %d gradients checked, %d off, %d skipped (a draw or a ReLU changed)\n",
                  type == KMODEL_BERT     ? "BERT"
                  : type == KMODEL_ALBERT ? "ALBERT"
                  : type == KMODEL_GPT2   ? "GPT-2"
                  : type == KMODEL_DISTILBERT ? "DistilBERT"
                                          : "ELECTRA",
                  gc_layers & GC_PRE_LN ? " pre-LN" : "", gc_layers & GC_CAUSAL ? " causal" : "",
                  type == KMODEL_ELECTRA && heads == GC_TOKEN_LM ? "discriminator (token head)" : hn[heads],
                  dropout > 0 ? " with dropout" : "", inject ? " with an injected gradient" : "", checked, bad, skipped);
    assert_int_equal(bad, 0);
    assert_true(skipped * 4 <= checked); /* the check saw most of the elements */
    free(g);
    kmodel_free(m);
}

static void gradcheck(int type, double dropout) { gradcheck_heads(type, dropout, GC_PRETRAIN, 0); }

/* ELECTRA: the pair's joint loss (MLM + 50 BCE; the shared embeddings get
 * both towers' gradients, the generator's tied decoder included), the
 * discriminator alone with its token head, and its classification head. */
static void test_gradcheck_electra(void **state)
{
    (void)state;
    gradcheck_heads(KMODEL_ELECTRA, 0, GC_ELECTRA, 0);
    gradcheck_heads(KMODEL_ELECTRA, 0.1, GC_ELECTRA, 1);
    gradcheck_heads(KMODEL_ELECTRA, 0.1, GC_TOKEN_LM, 0);
    gradcheck_heads(KMODEL_ELECTRA, 0.1, GC_CLASSIFY, 0);
    gradcheck_heads(KMODEL_ELECTRA, 0, GC_REGRESS, 1);
}

/* The replaced-token rule and the draws: ids change only at masked
 * positions; label 1 exactly where the draw differs from the original; the
 * draws are a function of the key; over many keys their frequencies follow
 * softmax(generator logits + bias). */
static void test_electra_rtd(void **state)
{
    (void)state;
    kmodel *m = new_model_heads(KMODEL_ELECTRA, 0, GC_ELECTRA);
    tbatch tb;
    make_batch(&tb);
    tb.b.objectives = KOBJ_RTD;
    const int32_t *lab, *ids;
    assert_null(kmodel_rtd_input(m, NULL));
    assert_int_equal(kmodel_forward(m, &tb.b, KMODE_EVAL, 5), 0);
    ids = kmodel_rtd_input(m, &lab);
    assert_non_null(ids);
    int32_t first[TB * TL];
    memcpy(first, ids, sizeof first);
    int replaced = 0;
    for (int r = 0; r < TB; r++)
        for (int t = 0; t < TL; t++) {
            int i = r * TL + t, slot = -1;
            for (int p = 0; p < tb.n_masked[r]; p++)
                if (tb.pos[r * TP + p] == t && tb.w[r * TP + p] > 0) slot = r * TP + p;
            if (t >= tb.lengths[r]) {
                assert_int_equal(lab[i], -1);
                continue;
            }
            if (slot < 0) {
                assert_int_equal(ids[i], tb.ids[i]);
                assert_int_equal(lab[i], 0);
            } else {
                assert_int_equal(lab[i], ids[i] != tb.mids[slot]);
                replaced += lab[i];
            }
        }
    assert_true(replaced > 0);
    /* the same key draws the same; another key draws otherwise somewhere */
    assert_int_equal(kmodel_forward(m, &tb.b, KMODE_EVAL, 5), 0);
    assert_memory_equal(first, kmodel_rtd_input(m, NULL), sizeof first);
    int differ = 0;
    for (uint64_t k = 6; k < 26 && !differ; k++) {
        assert_int_equal(kmodel_forward(m, &tb.b, KMODE_EVAL, k), 0);
        differ = memcmp(first, kmodel_rtd_input(m, NULL), sizeof first) != 0;
    }
    assert_true(differ);
    /* frequencies at row 0's first masked position (position 1) against softmax */
    int n;
    const ktensor *t = kmodel_params(m, &n);
    const float *bias = NULL;
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, "generator.generator_lm_head.bias")) bias = kmodel_param_data(m) + t[i].offset;
    assert_non_null(bias);
    assert_int_equal(kmodel_forward(m, &tb.b, KMODE_EVAL, 0), 0);
    const float *lg = kmodel_mlm_logits(m, 0, 0);
    assert_non_null(lg);
    double p[TV], z = 0, mx = -1e30;
    for (int j = 0; j < TV; j++) mx = fmax(mx, (double)lg[j] + bias[j]);
    for (int j = 0; j < TV; j++) z += p[j] = exp((double)lg[j] + bias[j] - mx);
    enum { DRAWS = 20000 };
    int cnt[TV] = {0};
    for (int k = 0; k < DRAWS; k++) {
        assert_int_equal(kmodel_forward(m, &tb.b, KMODE_EVAL, 1000 + (uint64_t)k), 0);
        cnt[kmodel_rtd_input(m, NULL)[1]]++;
    }
    double chi2 = 0;
    for (int j = 0; j < TV; j++) {
        double e = DRAWS * p[j] / z;
        chi2 += (cnt[j] - e) * (cnt[j] - e) / e;
    }
    print_message("ELECTRA draws: chi-square %.1f over %d ids (49 degrees of freedom)\n", chi2, TV);
    assert_true(chi2 < 90.0); /* p ~ 5e-4 for 49 degrees of freedom */
    kmodel_free(m);
}

static void test_gradcheck_heads(void **state)
{
    (void)state;
    gradcheck_heads(KMODEL_BERT, 0, GC_CLASSIFY, 0);
    gradcheck_heads(KMODEL_ALBERT, 0.1, GC_CLASSIFY, 0);
    gradcheck_heads(KMODEL_BERT, 0.1, GC_REGRESS, 0);
    gradcheck_heads(KMODEL_ALBERT, 0, GC_REGRESS, 0);
    gradcheck_heads(KMODEL_BERT, 0.1, GC_PRETRAIN, 1);
    gradcheck_heads(KMODEL_ALBERT, 0, GC_CLASSIFY, 1);
}

/* Pre-LN layers (with the final LayerNorm) and causal attention. */
static void test_gradcheck_layers(void **state)
{
    (void)state;
    gc_layers = GC_PRE_LN;
    gradcheck_heads(KMODEL_BERT, 0, GC_PRETRAIN, 0);
    gradcheck_heads(KMODEL_ALBERT, 0.1, GC_CLASSIFY, 1);
    gc_layers = GC_CAUSAL;
    gradcheck_heads(KMODEL_BERT, 0.1, GC_PRETRAIN, 0);
    gc_layers = GC_PRE_LN | GC_CAUSAL;
    gradcheck_heads(KMODEL_BERT, 0.1, GC_PRETRAIN, 1);
    gradcheck_heads(KMODEL_BERT, 0.1, GC_TOKEN_LM, 1); /* a GPT-2-like decoder with both heads */
    gc_layers = 0;
    gradcheck_heads(KMODEL_BERT, 0, GC_TOKEN_LM, 0);
    gc_layers = GC_PRE_LN | GC_CAUSAL;
    /* causal: a token's hidden state does not depend on later tokens */
    kmodel *m = new_model_heads(KMODEL_BERT, 0, GC_PRETRAIN);
    tbatch tb;
    make_batch(&tb);
    assert_int_equal(kmodel_forward(m, &tb.b, KMODE_EVAL, 0), 0);
    float before[5 * 16];
    memcpy(before, kmodel_hidden(m, 2), sizeof before); /* row 0, tokens 0..4 */
    tb.ids[7] = tb.ids[7] == 5 ? 6 : 5;
    assert_int_equal(kmodel_forward(m, &tb.b, KMODE_EVAL, 0), 0);
    assert_memory_equal(before, kmodel_hidden(m, 2), sizeof before);
    assert_true(memcmp(before, kmodel_hidden(m, 2) + 7 * 16, 16 * sizeof(float)) != 0);
    kmodel_free(m);
    gc_layers = 0;
}

/* GPT-2 (GPT2LMHeadModel): the registry's names, shapes, Conv1D flags and
 * init; the gradient check of the whole model (embedding dropout, pre-LN
 * causal blocks, ln_f, the tied LM head walked in chunks); causality. */
static void test_gpt2(void **state)
{
    (void)state;
    kmodel *m = new_model_heads(KMODEL_GPT2, 0, GC_GPT2);
    int n;
    const ktensor *t = kmodel_params(m, &n);
    static const char *const names[] = {
        "transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.ln_1.weight",
        "transformer.h.0.ln_1.bias", "transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_attn.bias",
        "transformer.h.0.attn.c_proj.weight", "transformer.h.0.attn.c_proj.bias", "transformer.h.0.ln_2.weight",
        "transformer.h.0.ln_2.bias", "transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_fc.bias",
        "transformer.h.0.mlp.c_proj.weight", "transformer.h.0.mlp.c_proj.bias"};
    assert_int_equal(n, 2 + 2 * 12 + 2);
    for (int i = 0; i < 14; i++) assert_string_equal(t[i].name, names[i]);
    assert_string_equal(t[n - 2].name, "transformer.ln_f.weight");
    assert_string_equal(t[n - 1].name, "transformer.ln_f.bias");
    assert_string_equal(t[14 + 12 - 1].name, "transformer.h.1.mlp.c_proj.bias");
    /* kept as Linear's [out, in], exported transposed: c_attn (3C, C) is q, k, v stacked */
    assert_true(t[4].shape[0] == 48 && t[4].shape[1] == 16 && t[4].transpose && t[4].decay);
    assert_true(t[10].shape[0] == 32 && t[10].shape[1] == 16 && t[10].transpose);
    assert_true(t[12].shape[0] == 16 && t[12].shape[1] == 32 && t[12].transpose);
    assert_true(!t[0].transpose && !t[1].transpose && !t[5].transpose && !t[5].decay && !t[2].decay);
    assert_true(t[0].shape[0] == TV && t[1].shape[0] == 16);
    assert_int_equal(t[6].init, KINIT_NORMAL_RESID);
    assert_int_equal(t[12].init, KINIT_NORMAL_RESID);
    assert_int_equal(t[4].init, KINIT_NORMAL);
    kalias al[4];
    assert_int_equal(kregistry_aliases(m, al, 4), 1);
    assert_string_equal(al[0].name, "lm_head.weight");
    assert_string_equal(al[0].target, "transformer.wte.weight");
    /* init: std 0.3 (0.3 / sqrt(2 n_layer) = 0.15 for c_proj); no zeroed padding row */
    const float *P = kmodel_param_data(m);
    double s2[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        const ktensor *x = &t[k ? 12 : 10];
        for (size_t j = 0; j < x->numel; j++) s2[k] += (double)P[x->offset + j] * P[x->offset + j];
        s2[k] = sqrt(s2[k] / (double)x->numel);
    }
    assert_true(fabs(s2[0] - 0.3) < 0.03 && fabs(s2[1] - 0.15) < 0.02);
    assert_true(P[t[0].offset] != 0.0f);
    kmodel_free(m);

    /* GPT-2 is pre-LN, causal, with the LM head only */
    kmodel_config c = config(KMODEL_GPT2, 0);
    kmodel_spec s = {.heads = KHEAD_LM, .max_B = TB, .L = TL, .pre_ln = 1};
    char err[256] = "";
    assert_null(kmodel_create(&c, &s, err, sizeof err));
    assert_non_null(strstr(err, "causal"));

    gradcheck_heads(KMODEL_GPT2, 0, GC_GPT2, 0);
    gradcheck_heads(KMODEL_GPT2, 0.1, GC_GPT2, 1);

    /* the loss: mean next-token cross-entropy over the real tokens but each row's last */
    m = new_model_heads(KMODEL_GPT2, 0, GC_GPT2);
    tbatch tb;
    make_batch(&tb);
    kstep_result r;
    assert_int_equal(kmodel_evaluate(m, &tb.b, &r), 0);
    assert_true(r.n == 2 && !strcmp(r.t[0].name, "lm_loss") && !strcmp(r.t[1].name, "lm_acc"));
    assert_true(r.t[0].count == 11 + 6 + 2 && r.tokens == 22);
    /* causal: a token's hidden state does not depend on later tokens */
    float before[5 * 16];
    memcpy(before, kmodel_hidden(m, 2), sizeof before);
    tb.ids[7] = tb.ids[7] == 5 ? 6 : 5;
    assert_int_equal(kmodel_forward(m, &tb.b, KMODE_EVAL, 0), 0);
    assert_memory_equal(before, kmodel_hidden(m, 2), sizeof before);
    kmodel_free(m);
}

/* DistilBERT (DistilBertForMaskedLM): the registry's names and order, the
 * tied projector, no token types (their ids change nothing), HF's init
 * (padding row zero), the heads it refuses, and the gradient check of the
 * whole model (embedding LayerNorm and dropout, post-LN layers without the
 * attention-output dropout, BERT's MLM head under its names). */
static void test_distilbert(void **state)
{
    (void)state;
    kmodel *m = new_model_heads(KMODEL_DISTILBERT, 0, GC_MLM);
    int n;
    const ktensor *t = kmodel_params(m, &n);
    static const char *const names[] = {
        "distilbert.embeddings.word_embeddings.weight",
        "distilbert.embeddings.position_embeddings.weight",
        "distilbert.embeddings.LayerNorm.weight",
        "distilbert.embeddings.LayerNorm.bias",
        "distilbert.transformer.layer.0.attention.q_lin.weight",
        "distilbert.transformer.layer.0.attention.q_lin.bias",
        "distilbert.transformer.layer.0.attention.k_lin.weight",
        "distilbert.transformer.layer.0.attention.k_lin.bias",
        "distilbert.transformer.layer.0.attention.v_lin.weight",
        "distilbert.transformer.layer.0.attention.v_lin.bias",
        "distilbert.transformer.layer.0.attention.out_lin.weight",
        "distilbert.transformer.layer.0.attention.out_lin.bias",
        "distilbert.transformer.layer.0.sa_layer_norm.weight",
        "distilbert.transformer.layer.0.sa_layer_norm.bias",
        "distilbert.transformer.layer.0.ffn.lin1.weight",
        "distilbert.transformer.layer.0.ffn.lin1.bias",
        "distilbert.transformer.layer.0.ffn.lin2.weight",
        "distilbert.transformer.layer.0.ffn.lin2.bias",
        "distilbert.transformer.layer.0.output_layer_norm.weight",
        "distilbert.transformer.layer.0.output_layer_norm.bias"};
    check_layout(m, 4 + 2 * 16 + 5);
    for (int i = 0; i < 20; i++) assert_string_equal(t[i].name, names[i]);
    assert_string_equal(t[4 + 16].name, "distilbert.transformer.layer.1.attention.q_lin.weight");
    static const char *const head[] = {"vocab_transform.weight", "vocab_transform.bias", "vocab_layer_norm.weight",
                                       "vocab_layer_norm.bias", "vocab_projector.bias"};
    for (int i = 0; i < 5; i++) assert_string_equal(t[n - 5 + i].name, head[i]);
    expect_tensor(m, "vocab_transform.weight", 16, 16);
    expect_tensor(m, "vocab_projector.bias", TV, 0);
    expect_tensor(m, "distilbert.embeddings.position_embeddings.weight", 16, 16);
    expect_tensor(m, "distilbert.transformer.layer.1.ffn.lin1.weight", 32, 16);
    kalias al[4];
    assert_int_equal(kregistry_aliases(m, al, 4), 1);
    assert_string_equal(al[0].name, "vocab_projector.weight");
    assert_string_equal(al[0].target, "distilbert.embeddings.word_embeddings.weight");
    char *man = kregistry_manifest(m);
    assert_non_null(strstr(man, "\"model_type\": \"distilbert\""));
    free(man);
    /* init: the padding row zero, LayerNorm 1, biases 0 */
    const float *P = kmodel_param_data(m);
    for (int j = 0; j < 16; j++) assert_true(P[t[0].offset + j] == 0.0f);
    assert_true(P[t[0].offset + 16] != 0.0f);
    assert_true(P[t[2].offset] == 1.0f && P[t[3].offset] == 0.0f && P[t[5].offset] == 0.0f);
    /* no token types: other type ids, the same bytes */
    tbatch tb;
    make_batch(&tb);
    tb.b.objectives = KOBJ_MLM;
    tb.b.labels = NULL;
    kstep_result r1, r2;
    assert_int_equal(kmodel_evaluate(m, &tb.b, &r1), 0);
    assert_true(r1.n == 2 && !strcmp(r1.t[0].name, "mlm_loss") && !strcmp(r1.t[1].name, "mlm_acc"));
    float before[22 * 16];
    memcpy(before, kmodel_hidden(m, 2), sizeof before);
    for (int i = 0; i < TB * TL; i++) tb.types[i] = 0;
    assert_int_equal(kmodel_evaluate(m, &tb.b, &r2), 0);
    assert_memory_equal(before, kmodel_hidden(m, 2), sizeof before);
    assert_memory_equal(&r1, &r2, sizeof r1);
    kmodel_free(m);

    /* the masked-LM and classification heads only, post-LN, bidirectional */
    kmodel_config c = config(KMODEL_DISTILBERT, 0);
    char err[256] = "";
    assert_null(kmodel_new(&c, TB, TL, TP, 1, err, sizeof err));
    assert_non_null(strstr(err, "DistilBERT"));
    kmodel_spec s = {.heads = KHEAD_TOKEN, .max_B = TB, .L = TL, .classifier_dropout = -1};
    assert_null(kmodel_create(&c, &s, err, sizeof err));
    assert_non_null(strstr(err, "no sentence-pair or per-token head"));
    s = kmodel_spec_pretrain_of(&c, TB, TL, TP, 0);
    s.pre_ln = 1;
    assert_null(kmodel_create(&c, &s, err, sizeof err));
    assert_non_null(strstr(err, "post-LN"));

    gradcheck_heads(KMODEL_DISTILBERT, 0, GC_MLM, 0);
    gradcheck_heads(KMODEL_DISTILBERT, 0.1, GC_MLM, 1);
}

/* DistilBertForSequenceClassification: the registry (the encoder, then
 * pre_classifier and classifier in transformers' state_dict order, no
 * pooler); the logits recomputed here from the last hidden state
 * (classifier(relu(pre_classifier([CLS])))); the default dropout is the
 * config's seq_classif_dropout, not hidden_dropout_prob; the gradient check
 * of the classifier and the regressor, with and without dropout. */
static void test_distilbert_cls(void **state)
{
    (void)state;
    kmodel *m = new_model_heads(KMODEL_DISTILBERT, 0, GC_CLASSIFY);
    int n;
    const ktensor *t = kmodel_params(m, &n);
    check_layout(m, 4 + 2 * 16 + 4);
    assert_string_equal(t[0].name, "distilbert.embeddings.word_embeddings.weight");
    static const char *const head[] = {"pre_classifier.weight", "pre_classifier.bias", "classifier.weight",
                                       "classifier.bias"};
    for (int i = 0; i < 4; i++) assert_string_equal(t[n - 4 + i].name, head[i]);
    expect_tensor(m, "pre_classifier.weight", 16, 16);
    expect_tensor(m, "pre_classifier.bias", 16, 0);
    expect_tensor(m, "classifier.weight", 3, 16);
    expect_tensor(m, "classifier.bias", 3, 0);
    for (int i = 0; i < n; i++) assert_null(strstr(t[i].name, "pooler"));
    kalias al[4];
    assert_int_equal(kregistry_aliases(m, al, 4), 0); /* no tied projector without the MLM head */
    /* biases non-zero, so that the check sees them */
    float *P = kmodel_param_data(m);
    for (int i = n - 4; i < n; i++)
        if (t[i].ndim == 1)
            for (size_t j = 0; j < t[i].numel; j++) P[t[i].offset + j] = (float)(urand() - 0.5);
    tbatch tb;
    make_batch(&tb);
    tb.b.objectives = KOBJ_CLASSIFY;
    tb.b.P = 0, tb.b.n_masked = NULL, tb.b.masked_positions = NULL, tb.b.masked_ids = NULL, tb.b.masked_weights = NULL;
    kstep_result r;
    assert_int_equal(kmodel_evaluate(m, &tb.b, &r), 0);
    assert_true(r.n == 2 && !strcmp(r.t[0].name, "cls_loss") && !strcmp(r.t[1].name, "cls_acc"));
    int B, N;
    const int32_t *offs = kmodel_offsets(m, &B, &N);
    const float *h = kmodel_hidden(m, 2);
    const ktensor *pw = &t[n - 4], *pb = &t[n - 3], *cw = &t[n - 2], *cb = &t[n - 1];
    int active = 0;
    for (int b = 0; b < B; b++) {
        const float *x = h + (size_t)offs[b] * 16;
        double z[16];
        for (int o = 0; o < 16; o++) {
            double a = P[pb->offset + o];
            for (int i = 0; i < 16; i++) a += (double)P[pw->offset + (size_t)o * 16 + i] * x[i];
            z[o] = a > 0 ? a : 0;
            active += a > 0;
        }
        const float *lg = kmodel_class_logits(m, b);
        for (int k = 0; k < 3; k++) {
            double a = P[cb->offset + k];
            for (int i = 0; i < 16; i++) a += (double)P[cw->offset + (size_t)k * 16 + i] * z[i];
            assert_true(fabs(a - lg[k]) < 1e-4);
        }
    }
    assert_true(active > 0 && active < B * 16); /* the ReLU cut some and kept some */
    kmodel_free(m);

    /* the default dropout: seq_classif_dropout (0.5 here), hidden_dropout_prob 0 */
    kmodel_config c = config(KMODEL_DISTILBERT, 0);
    c.seq_classif_dropout = 0.5;
    char err[256] = "";
    for (int pass = 0; pass < 2; pass++) {
        kmodel_spec s = {.heads = KHEAD_CLASSIFY, .max_B = TB, .L = TL, .num_labels = 3,
                         .classifier_dropout = pass ? 0 : -1};
        m = kmodel_create(&c, &s, err, sizeof err);
        assert_non_null(m);
        kmodel_init(m, 7);
        assert_int_equal(kmodel_forward(m, &tb.b, KMODE_EVAL, 5), 0);
        float ev[3];
        memcpy(ev, kmodel_class_logits(m, 0), sizeof ev);
        assert_int_equal(kmodel_forward(m, &tb.b, KMODE_TRAIN, 5), 0);
        int same = !memcmp(ev, kmodel_class_logits(m, 0), sizeof ev);
        assert_int_equal(same, pass); /* dropped out by default; not with classifier_dropout 0 */
        kmodel_free(m);
    }

    gradcheck_heads(KMODEL_DISTILBERT, 0, GC_CLASSIFY, 0);
    gradcheck_heads(KMODEL_DISTILBERT, 0.1, GC_CLASSIFY, 1);
    gradcheck_heads(KMODEL_DISTILBERT, 0, GC_REGRESS, 0);
    gradcheck_heads(KMODEL_DISTILBERT, 0.1, GC_REGRESS, 0);
}

/* Two models stepping at the same time (a teacher and a student, say), each
 * from its own thread of an outer parallel region, give the bytes they give
 * one after the other: no scratch is shared between models. */
static void test_concurrent(void **state)
{
    (void)state;
    kmodel *a = new_model_heads(KMODEL_BERT, 0.1, GC_PRETRAIN), *b = new_model_heads(KMODEL_ALBERT, 0.1, GC_CLASSIFY);
    tbatch ta, tb;
    make_batch(&ta);
    make_batch(&tb);
    tb.b.objectives = KOBJ_CLASSIFY;
    tb.labels[2] = 2;
    tb.b.P = 0, tb.b.n_masked = NULL, tb.b.masked_positions = NULL, tb.b.masked_ids = NULL, tb.b.masked_weights = NULL;
    size_t na = kmodel_numel(a), nb = kmodel_numel(b);
    float *ga = malloc(na * sizeof(float)), *gb = malloc(nb * sizeof(float));
    kstep_result r;
    for (int k = 0; k < 3; k++) assert_int_equal(kmodel_forward_backward(a, &ta.b, 11 + k, 1.0f, &r), 0);
    for (int k = 0; k < 3; k++) assert_int_equal(kmodel_forward_backward(b, &tb.b, 21 + k, 1.0f, &r), 0);
    memcpy(ga, kmodel_grad_data(a), na * sizeof(float));
    memcpy(gb, kmodel_grad_data(b), nb * sizeof(float));
    kmodel_zero_grad(a);
    kmodel_zero_grad(b);
    int fails = 0;
#pragma omp parallel sections num_threads(2) reduction(+ : fails)
    {
#pragma omp section
        for (int k = 0; k < 3; k++) fails += kmodel_forward_backward(a, &ta.b, 11 + k, 1.0f, NULL) != 0;
#pragma omp section
        for (int k = 0; k < 3; k++) fails += kmodel_forward_backward(b, &tb.b, 21 + k, 1.0f, NULL) != 0;
    }
    assert_int_equal(fails, 0);
    assert_memory_equal(ga, kmodel_grad_data(a), na * sizeof(float));
    assert_memory_equal(gb, kmodel_grad_data(b), nb * sizeof(float));
    free(ga), free(gb);
    kmodel_free(a);
    kmodel_free(b);
}

/* An inference model: no gradient arena, the same eval outputs as a training
 * model with the same weights; training calls refused. */
static void test_inference(void **state)
{
    (void)state;
    kmodel *m = new_model_heads(KMODEL_BERT, 0.1, GC_CLASSIFY);
    kmodel_config c = config(KMODEL_BERT, 0.1);
    kmodel_spec s = *kmodel_get_spec(m);
    s.inference = 1;
    char err[256];
    kmodel *q = kmodel_create(&c, &s, err, sizeof err);
    assert_non_null(q);
    assert_null(kmodel_grad_data(q));
    assert_true(kmodel_activation_bytes(q) < kmodel_activation_bytes(m));
    memcpy(kmodel_param_data(q), kmodel_param_data(m), kmodel_numel(m) * sizeof(float));
    tbatch tb;
    make_batch(&tb);
    tb.b.objectives = KOBJ_CLASSIFY;
    tb.labels[2] = 2;
    kstep_result r1, r2;
    assert_int_equal(kmodel_evaluate(m, &tb.b, &r1), 0);
    assert_int_equal(kmodel_evaluate(q, &tb.b, &r2), 0);
    assert_true(r1.loss == r2.loss && r1.loss > 0);
    assert_memory_equal(kmodel_class_logits(m, 1), kmodel_class_logits(q, 1), 3 * sizeof(float));
    assert_true(kmodel_forward(q, &tb.b, KMODE_TRAIN, 1) != 0);
    assert_int_equal(kmodel_backward(q), EX_SOFTWARE);
    /* 3 hidden states and 2 attention maps readable */
    for (int l = 0; l <= 2; l++) assert_non_null(kmodel_hidden(m, l));
    assert_null(kmodel_hidden(m, 3));
    assert_non_null(kmodel_attention(m, 2));
    assert_null(kmodel_attention(m, 0));
    kmodel_free(q);
    kmodel_free(m);
}

static void test_gradcheck_bert(void **state)
{
    (void)state;
    gradcheck(KMODEL_BERT, 0);
}
static void test_gradcheck_albert(void **state)
{
    (void)state;
    gradcheck(KMODEL_ALBERT, 0);
}
static void test_gradcheck_dropout(void **state)
{
    (void)state;
    gradcheck(KMODEL_BERT, 0.1);
    gradcheck(KMODEL_ALBERT, 0.1);
}

/* ---- determinism, accumulation, packing ---------------------------------------------------- */

/* One forward/backward from zero gradients; returns a malloc'd copy of the gradients. */
static float *grads_of(kmodel *m, const ksample_batch *b, float scale, int passes, kstep_result *r)
{
    kmodel_zero_grad(m);
    for (int i = 0; i < passes; i++) assert_int_equal(kmodel_forward_backward(m, b, 5, scale, r), 0);
    size_t n = kmodel_numel(m) * sizeof(float);
    float *g = malloc(n);
    memcpy(g, kmodel_grad_data(m), n);
    return g;
}

static void determinism(int type)
{
    kmodel *m = new_model(type, 0.1);
    tbatch tb;
    make_batch(&tb);
    size_t bytes = kmodel_numel(m) * sizeof(float);
    kstep_result r1, r2, r3;
    float *g1 = grads_of(m, &tb.b, 1.0f, 1, &r1), *g2 = grads_of(m, &tb.b, 1.0f, 1, &r2);
    assert_memory_equal(g1, g2, bytes);
    assert_memory_equal(&r1, &r2, sizeof r1);
    omp_set_num_threads(1);
    float *g3 = grads_of(m, &tb.b, 1.0f, 1, &r3);
    omp_set_num_threads(2);
    assert_memory_equal(g1, g3, bytes);
    assert_memory_equal(&r1, &r3, sizeof r1);
    /* accumulation: 2 x 0.5 == 1 x 1 (up to the rounding of the sums) */
    float *g4 = grads_of(m, &tb.b, 0.5f, 2, &r3);
    float gmax = 0;
    for (size_t i = 0; i < bytes / sizeof(float); i++) gmax = fmaxf(gmax, fabsf(g1[i]));
    for (size_t i = 0; i < bytes / sizeof(float); i++) {
        if (!(fabsf(g4[i] - g1[i]) <= 1e-6f * gmax)) print_error("grad[%zu]: %.9g vs %.9g\n", i, g4[i], g1[i]);
        assert_true(fabsf(g4[i] - g1[i]) <= 1e-6f * gmax);
    }
    /* what lies past the lengths does not matter */
    for (int r = 0; r < TB; r++)
        for (int i = tb.lengths[r]; i < TL; i++) tb.ids[r * TL + i] = 7 + r, tb.types[r * TL + i] = 1;
    float *g5 = grads_of(m, &tb.b, 1.0f, 1, &r3);
    assert_memory_equal(g1, g5, bytes);
    assert_memory_equal(&r1, &r3, sizeof r1);
    /* another dropout key: other masks, other gradients */
    kmodel_zero_grad(m);
    assert_int_equal(kmodel_forward_backward(m, &tb.b, 6, 1.0f, &r3), 0);
    assert_true(memcmp(g1, kmodel_grad_data(m), bytes) != 0);
    free(g1), free(g2), free(g3), free(g4), free(g5);
    kmodel_free(m);
}

static void test_determinism(void **state)
{
    (void)state;
    determinism(KMODEL_BERT);
    determinism(KMODEL_ALBERT);
}

/* A model big enough for every kernel to run in parallel (V 1000, E 32, H 64,
 * 2 layers, 4 heads, I 256, B 8 x L 64, P 10, dropout 0.1): gradients and the
 * parameters after 2 LAMB steps are the same bytes with 1, 2 and 3 threads. */
static void test_threads_medium(void **state)
{
    (void)state;
    kmodel_config c = config(KMODEL_ALBERT, 0.1);
    c.vocab_size = 1000, c.embedding_size = 32, c.hidden_size = 64, c.num_hidden_layers = 2;
    c.num_hidden_groups = 1, c.num_attention_heads = 4, c.intermediate_size = 256;
    c.max_position_embeddings = 64, c.initializer_range = 0.02;
    enum { B = 8, L = 64, P = 10 };
    static int32_t ids[B * L], lens[B], nm[B], pos[B * P], mids[B * P], lab[B];
    static uint8_t types[B * L];
    static float w[B * P];
    for (int r = 0; r < B; r++) {
        lens[r] = r == 0 ? L : 20 + (int)(rng() % 44);
        nm[r] = P;
        lab[r] = (int)(rng() % 2);
        for (int t = 0; t < L; t++) ids[r * L + t] = t < lens[r] ? 3 + (int)(rng() % 997) : 0;
        for (int t = 0; t < L; t++) types[r * L + t] = t < lens[r] && t > lens[r] / 2;
        for (int p = 0; p < P; p++) pos[r * P + p] = 1 + p, mids[r * P + p] = 3 + (int)(rng() % 997), w[r * P + p] = 1;
    }
    ksample_batch b = {.version = KSAMPLE_BATCH_VERSION, .B = B, .L = L, .P = P, .capacity = B,
                       .input_ids = ids, .token_type_ids = types, .lengths = lens, .n_masked = nm,
                       .masked_positions = pos, .masked_ids = mids, .masked_weights = w, .labels = lab};
    kopt_config oc = opt_config(KOPT_LAMB);
    float *first = NULL;
    size_t bytes = 0;
    for (int t = 1; t <= 3; t++) {
        omp_set_num_threads(t);
        char err[256];
        kmodel *m = kmodel_new(&c, B, L, P, 1, err, sizeof err);
        assert_non_null(m);
        kmodel_init(m, 3);
        int n;
        const ktensor *tl = kmodel_params(m, &n);
        kopt *o = kopt_new(&oc, tl, n, kmodel_param_data(m), kmodel_grad_data(m), kmodel_numel(m), err, sizeof err);
        size_t numel = kmodel_numel(m);
        bytes = 2 * numel * sizeof(float);
        float *got = malloc(bytes);
        kstep_result r;
        for (int s = 1; s <= 2; s++) {
            kmodel_zero_grad(m);
            assert_int_equal(kmodel_forward_backward(m, &b, (uint64_t)s, 1.0f, &r), 0);
            if (s == 1) memcpy(got, kmodel_grad_data(m), numel * sizeof(float));
            assert_int_equal(kopt_step(o, s, 10, NULL, NULL), 0);
        }
        memcpy(got + numel, kmodel_param_data(m), numel * sizeof(float));
        if (!first)
            first = got;
        else {
            assert_memory_equal(first, got, bytes);
            free(got);
        }
        kopt_free(o);
        kmodel_free(m);
    }
    omp_set_num_threads(2);
    free(first);
}

/* ---- eval logits and errors -------------------------------------------------------------------- */

static void test_eval_logits(void **state)
{
    (void)state;
    kmodel *m = new_model(KMODEL_ALBERT, 0.1);
    tbatch tb;
    make_batch(&tb);
    kstep_result r, rt;
    assert_int_equal(kmodel_evaluate(m, &tb.b, &r), 0);
    double s = 0, ws = 0;
    for (int row = 0; row < TB; row++) {
        for (int p = 0; p < TP; p++) {
            const float *lg = kmodel_mlm_logits(m, row, p);
            if (p >= tb.n_masked[row]) {
                assert_null(lg);
                continue;
            }
            assert_non_null(lg);
            double mx = -1e300, z = 0;
            for (int v = 0; v < TV; v++) mx = fmax(mx, lg[v]);
            for (int v = 0; v < TV; v++) z += exp(lg[v] - mx);
            double w = tb.w[row * TP + p];
            s += w * (log(z) + mx - lg[tb.mids[row * TP + p]]);
            ws += w;
        }
        assert_non_null(kmodel_sentence_logits(m, row));
    }
    assert_true(fabs(s / ws - kstep_value(&r, "mlm_loss")) < 1e-5 * kstep_value(&r, "mlm_loss"));
    assert_null(kmodel_sentence_logits(m, TB));
    /* a training pass applies dropout: another loss */
    assert_int_equal(kmodel_forward_backward(m, &tb.b, 1, 1.0f, &rt), 0);
    assert_true(rt.loss != r.loss);
    assert_null(kmodel_mlm_logits(m, 0, 0)); /* logits became gradients */
    kmodel_free(m);
}

static void test_errors(void **state)
{
    (void)state;
    char err[256];
    kmodel_config c = config(KMODEL_BERT, 0);
    c.num_attention_heads = 3;
    assert_null(kmodel_new(&c, 2, 8, 2, 1, err, sizeof err));
    assert_non_null(strstr(err, "num_attention_heads"));
    c = config(KMODEL_ALBERT, 0);
    c.num_hidden_groups = 4;
    assert_null(kmodel_new(&c, 2, 8, 2, 1, err, sizeof err));
    assert_non_null(strstr(err, "num_hidden_groups"));
    c = config(KMODEL_BERT, 0);
    assert_null(kmodel_new(&c, 2, 17, 2, 1, err, sizeof err));
    assert_non_null(strstr(err, "max_position_embeddings"));
    c.hidden_dropout_prob = 1.0;
    assert_null(kmodel_new(&c, 2, 8, 2, 1, err, sizeof err));
    assert_non_null(strstr(err, "hidden_dropout_prob"));

    kmodel *m = new_model(KMODEL_BERT, 0);
    tbatch tb;
    make_batch(&tb);
    kstep_result r;
    kmodel_zero_grad(m);
    tb.ids[5] = TV;
    assert_int_equal(kmodel_forward_backward(m, &tb.b, 0, 1.0f, &r), EX_DATAERR);
    assert_non_null(strstr(kmodel_error(m), "token id"));
    make_batch(&tb);
    tb.pos[1 * TP + 1] = 7; /* row 1 has 7 tokens */
    assert_int_equal(kmodel_evaluate(m, &tb.b, &r), EX_DATAERR);
    assert_non_null(strstr(kmodel_error(m), "position 7"));
    make_batch(&tb);
    tb.labels[0] = 2;
    assert_int_equal(kmodel_evaluate(m, &tb.b, &r), EX_DATAERR);
    make_batch(&tb);
    tb.lengths[2] = 0;
    assert_int_equal(kmodel_evaluate(m, &tb.b, &r), EX_DATAERR);
    make_batch(&tb);
    tb.b.B = TB + 1;
    assert_int_equal(kmodel_evaluate(m, &tb.b, &r), EX_DATAERR);
    /* nothing reached the gradients */
    const float *g = kmodel_grad_data(m);
    for (size_t i = 0; i < kmodel_numel(m); i++) assert_true(g[i] == 0.0f);
    kmodel_free(m);
}

/* ---- optimizers -------------------------------------------------------------------------------- */

static kopt_config opt_config(int type)
{
    kopt_config c = {0};
    c.type = type;
    c.lr = 1e-2;
    c.beta1 = 0.9;
    c.beta2 = 0.999;
    c.eps = 1e-6;
    c.weight_decay = 0.1;
    c.warmup_steps = 2;
    c.schedule = KSCHED_LINEAR;
    c.min_lr_ratio = 0.1;
    c.clip_norm = 1.0;
    c.accumulation = 1;
    return c;
}

static void test_schedule(void **state)
{
    (void)state;
    kopt_config c = opt_config(KOPT_ADAMW);
    c.warmup_steps = 10;
    assert_float_equal(kopt_lr(&c, 1, 110), 1e-3, 1e-12);
    assert_float_equal(kopt_lr(&c, 10, 110), 1e-2, 1e-12);
    assert_float_equal(kopt_lr(&c, 60, 110), 1e-2 * (0.1 + 0.9 * 0.5), 1e-12);
    assert_float_equal(kopt_lr(&c, 110, 110), 1e-3, 1e-12);
    assert_float_equal(kopt_lr(&c, 500, 110), 1e-3, 1e-12);
    assert_float_equal(kopt_lr(&c, 50, 0), 1e-2, 1e-12); /* unknown total: no decay */
    c.schedule = KSCHED_COSINE;
    assert_float_equal(kopt_lr(&c, 60, 110), 1e-2 * (0.1 + 0.9 * 0.5), 1e-12);
    assert_float_equal(kopt_lr(&c, 35, 110), 1e-2 * (0.1 + 0.9 * 0.5 * (1 + cos(3.14159265358979323846 / 4))), 1e-12);
    c.schedule = KSCHED_CONSTANT;
    assert_float_equal(kopt_lr(&c, 100, 110), 1e-2, 1e-12);
    assert_float_equal(kopt_lr(&c, 5, 110), 5e-3, 1e-12);
}

/* Reference optimizer in double on two tensors (decay 1 and 0). */
static void ref_step(int type, const kopt_config *c, int step, double lr, double *p, double *m, double *v,
                     const double *g, int n, const int *decay, const int *tensor_of)
{
    double gn = 0;
    for (int i = 0; i < n; i++) gn += g[i] * g[i];
    gn = sqrt(gn);
    double clip = c->clip_norm > 0 ? fmin(1.0, c->clip_norm / (gn + 1e-6)) : 1.0;
    double bc1 = 1 - pow(c->beta1, step), bc2 = 1 - pow(c->beta2, step);
    double u[64], ww[2] = {0}, uu[2] = {0};
    for (int i = 0; i < n; i++) {
        double gi = g[i] * clip;
        m[i] = c->beta1 * m[i] + (1 - c->beta1) * gi;
        v[i] = c->beta2 * v[i] + (1 - c->beta2) * gi * gi;
        if (type == KOPT_ADAMW) {
            double w = decay[i] ? p[i] * (1 - lr * c->weight_decay) : p[i];
            p[i] = w - lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + c->eps);
        } else {
            u[i] = (m[i] / bc1) / (sqrt(v[i] / bc2) + c->eps) + (decay[i] ? c->weight_decay * p[i] : 0);
            ww[tensor_of[i]] += p[i] * p[i];
            uu[tensor_of[i]] += u[i] * u[i];
        }
    }
    if (type == KOPT_LAMB)
        for (int i = 0; i < n; i++) {
            int t = tensor_of[i];
            double r = decay[i] && ww[t] > 0 && uu[t] > 0 ? sqrt(ww[t]) / sqrt(uu[t]) : 1.0;
            p[i] -= lr * r * u[i];
        }
}

static void optimizer_case(int type)
{
    /* tensor A (decay) 24 floats at offset 0, tensor B (no decay) 7 floats at offset 32 */
    ktensor t[2] = {0};
    snprintf(t[0].name, sizeof t[0].name, "a.weight");
    t[0].ndim = 2, t[0].shape[0] = 4, t[0].shape[1] = 6, t[0].offset = 0, t[0].numel = 24, t[0].decay = 1;
    snprintf(t[1].name, sizeof t[1].name, "a.bias");
    t[1].ndim = 1, t[1].shape[0] = 7, t[1].offset = 32, t[1].numel = 7, t[1].decay = 0;
    float P[48] = {0}, G[48] = {0};
    double p[31], m[31] = {0}, v[31] = {0}, g[31];
    int decay[31], tof[31], at[31];
    for (int i = 0; i < 31; i++) {
        at[i] = i < 24 ? i : 32 + (i - 24);
        decay[i] = i < 24, tof[i] = i >= 24;
        P[at[i]] = (float)(urand() - 0.5);
        p[i] = P[at[i]];
    }
    kopt_config c = opt_config(type);
    char err[256];
    kopt *o = kopt_new(&c, t, 2, P, G, 48, err, sizeof err);
    assert_non_null(o);
    for (int step = 1; step <= 4; step++) {
        for (int i = 0; i < 31; i++) {
            G[at[i]] = (float)((urand() - 0.5) * (step == 2 ? 10.0 : 0.3)); /* step 2 clips */
            g[i] = G[at[i]];
        }
        double lr, gn;
        assert_int_equal(kopt_step(o, step, 10, &lr, &gn), 0);
        double want_gn = 0;
        for (int i = 0; i < 31; i++) want_gn += g[i] * g[i];
        assert_true(fabs(gn - sqrt(want_gn)) < 1e-9 * sqrt(want_gn));
        assert_float_equal(lr, kopt_lr(&c, step, 10), 1e-15);
        ref_step(type, &c, step, lr, p, m, v, g, 31, decay, tof);
        for (int i = 0; i < 31; i++) {
            if (fabs(P[at[i]] - p[i]) > 1e-5 * fabs(p[i]) + 1e-7)
                print_error("%s step %d [%d]: %.9g vs %.9g\n", type == KOPT_ADAMW ? "AdamW" : "LAMB", step, i,
                            P[at[i]], p[i]);
            assert_true(fabs(P[at[i]] - p[i]) <= 1e-5 * fabs(p[i]) + 1e-7);
            assert_true(fabs(kopt_m(o)[at[i]] - m[i]) <= 1e-5 * fabs(m[i]) + 1e-7);
        }
    }
    /* padding between tensors untouched; gradients untouched */
    for (int i = 24; i < 32; i++) assert_true(P[i] == 0.0f);
    /* a non-finite gradient: refused, nothing changes */
    float before[48];
    memcpy(before, P, sizeof P);
    G[3] = NAN;
    assert_int_equal(kopt_step(o, 5, 10, NULL, NULL), EX_DATAERR);
    assert_memory_equal(before, P, sizeof P);
    kopt_free(o);
    c.beta2 = 1.0;
    assert_null(kopt_new(&c, t, 2, P, G, 48, err, sizeof err));
    assert_non_null(strstr(err, "beta2"));
}

static void test_adamw(void **state)
{
    (void)state;
    optimizer_case(KOPT_ADAMW);
}
static void test_lamb(void **state)
{
    (void)state;
    optimizer_case(KOPT_LAMB);
}

/* A frozen tensor (registry flag) is neither updated nor decayed, its
 * moments stay zero and its gradient does not count in the norm. */
static void test_frozen(void **state)
{
    (void)state;
    for (int type = KOPT_ADAMW; type <= KOPT_LAMB; type++) {
        ktensor t[2] = {0};
        snprintf(t[0].name, sizeof t[0].name, "w");
        t[0].ndim = 1, t[0].shape[0] = 40, t[0].offset = 0, t[0].numel = 40, t[0].decay = 1;
        snprintf(t[1].name, sizeof t[1].name, "frozen");
        t[1].ndim = 1, t[1].shape[0] = 24, t[1].offset = 48, t[1].numel = 24, t[1].decay = 1, t[1].frozen = 1;
        float p[72], g[72], p0[72];
        for (int i = 0; i < 72; i++) p[i] = (float)(urand() - 0.5), g[i] = (float)(urand() - 0.5);
        for (int i = 48; i < 72; i++) g[i] = 1e6f; /* would dominate the norm */
        memcpy(p0, p, sizeof p);
        kopt_config c = opt_config(type);
        c.weight_decay = 0.1;
        char err[256];
        kopt *o = kopt_new(&c, t, 2, p, g, 72, err, sizeof err);
        assert_non_null(o);
        double lr, gn;
        for (int s = 1; s <= 3; s++) assert_int_equal(kopt_step(o, s, 10, &lr, &gn), 0);
        assert_true(gn < 10); /* the frozen gradient is not in the norm */
        assert_memory_equal(p + 48, p0 + 48, 24 * sizeof(float));
        assert_true(memcmp(p, p0, 40 * sizeof(float)) != 0);
        for (int i = 48; i < 72; i++) assert_true(kopt_m(o)[i] == 0 && kopt_v(o)[i] == 0);
        kopt_free(o);
    }
}

/* 40 steps on one batch; returns the last loss, fills *first. */
static double train(int model_type, int opt_type, double lr, double *first, float **params_out)
{
    kmodel *m = new_model(model_type, 0);
    tbatch tb;
    make_batch(&tb);
    kopt_config c = opt_config(opt_type);
    c.lr = lr;
    c.warmup_steps = 5;
    c.weight_decay = 0.01;
    char err[256];
    int n;
    const ktensor *t = kmodel_params(m, &n);
    kopt *o = kopt_new(&c, t, n, kmodel_param_data(m), kmodel_grad_data(m), kmodel_numel(m), err, sizeof err);
    assert_non_null(o);
    kstep_result r;
    double last = 0;
    for (int s = 1; s <= 40; s++) {
        kmodel_zero_grad(m);
        assert_int_equal(kmodel_forward_backward(m, &tb.b, (uint64_t)s, 1.0f, &r), 0);
        if (s == 1) *first = r.loss;
        last = r.loss;
        assert_int_equal(kopt_step(o, s, 40, NULL, NULL), 0);
    }
    if (params_out) {
        *params_out = malloc(kmodel_numel(m) * sizeof(float));
        memcpy(*params_out, kmodel_param_data(m), kmodel_numel(m) * sizeof(float));
    }
    kopt_free(o);
    kmodel_free(m);
    return last;
}

/* The update split over ranks (kopt_step_range on two arena ranges cut at
 * kopt_split_at, the norm from kopt_grad_sumsq_range) is kopt_step: bit for
 * bit without clipping, within 1e-6 relative with it (the norm's sum in
 * another order). */
static void test_split_update(void **state)
{
    (void)state;
    for (int opt = 0; opt < 2; opt++)
        for (int clip = 0; clip < 2; clip++) {
            kmodel *a = new_model(KMODEL_BERT, 0), *b = new_model(KMODEL_BERT, 0);
            tbatch tb;
            make_batch(&tb);
            kopt_config c = opt_config(opt ? KOPT_LAMB : KOPT_ADAMW);
            c.lr = 1e-2;
            c.warmup_steps = 1;
            c.weight_decay = 0.01;
            c.clip_norm = clip ? 0.5 : 0.0;
            char err[256];
            int n;
            const ktensor *t = kmodel_params(a, &n);
            kopt *oa = kopt_new(&c, t, n, kmodel_param_data(a), kmodel_grad_data(a), kmodel_numel(a), err, sizeof err);
            kopt *ob = kopt_new(&c, kmodel_params(b, &n), n, kmodel_param_data(b), kmodel_grad_data(b),
                                kmodel_numel(b), err, sizeof err);
            assert_non_null(oa);
            assert_non_null(ob);
            const size_t numel = kmodel_numel(b), k = kopt_split_at(ob, numel / 3);
            assert_true(k >= numel / 3 && k < numel);
            kstep_result r;
            for (int s = 1; s <= 3; s++) {
                kmodel_zero_grad(a);
                kmodel_zero_grad(b);
                assert_int_equal(kmodel_forward_backward(a, &tb.b, (uint64_t)s, 1.0f, &r), 0);
                assert_int_equal(kmodel_forward_backward(b, &tb.b, (uint64_t)s, 1.0f, &r), 0);
                assert_int_equal(kopt_step(oa, s, 3, NULL, NULL), 0);
                double gn = sqrt(kopt_grad_sumsq_range(ob, 0, k) + kopt_grad_sumsq_range(ob, k, numel));
                assert_int_equal(kopt_step_range(ob, s, 3, gn, k, numel, NULL), 0);
                assert_int_equal(kopt_step_range(ob, s, 3, gn, 0, k, NULL), 0);
            }
            const float *pa = kmodel_param_data(a), *pb = kmodel_param_data(b);
            if (!clip) {
                assert_memory_equal(pa, pb, kmodel_numel(a) * sizeof(float));
            } else {
                double worst = 0;
                for (size_t i = 0; i < kmodel_numel(a); i++) {
                    double d = fabs((double)pa[i] - pb[i]) / (fabs((double)pa[i]) + 1e-3);
                    if (d > worst) worst = d;
                }
                assert_true(worst < 1e-6);
            }
            double inf = NAN;
            assert_int_equal(kopt_step_range(ob, 4, 4, inf, 0, numel, NULL), EX_DATAERR);
            kopt_free(oa);
            kopt_free(ob);
            kmodel_free(a);
            kmodel_free(b);
        }
}

/* Split points on tensors larger than a piece (32768 floats), registered out
 * of arena order: AdamW may cut inside a tensor (at a piece start), LAMB only
 * between tensors, and a LAMB range that cuts a tensor is refused without a
 * change. Both split updates equal the whole update bit for bit. */
static void test_split_inside_tensor(void **state)
{
    (void)state;
    /* registry order t0, t1, t2; arena order t0, t2, t1 (as ALBERT's q, k, v weights before their biases) */
    const size_t sizes[3] = {100000, 300, 70000}, offs[3] = {0, 170000, 100000}, numel = 170300;
    ktensor t[3];
    memset(t, 0, sizeof t);
    for (int i = 0; i < 3; i++) {
        snprintf(t[i].name, sizeof t[i].name, "t%d", i);
        t[i].offset = offs[i];
        t[i].numel = sizes[i];
        t[i].decay = i != 1;
    }
    for (int opt = 0; opt < 2; opt++) {
        kopt_config c = opt_config(opt ? KOPT_LAMB : KOPT_ADAMW);
        c.lr = 1e-2;
        c.warmup_steps = 1;
        c.weight_decay = 0.01;
        float *pa = malloc(numel * sizeof *pa), *pb = malloc(numel * sizeof *pb), *g = malloc(numel * sizeof *g);
        for (size_t i = 0; i < numel; i++) {
            pa[i] = pb[i] = (float)sin(0.001 * (double)i);
            g[i] = (float)cos(0.0007 * (double)i) * 0.1f;
        }
        char err[256];
        kopt *oa = kopt_new(&c, t, 3, pa, g, numel, err, sizeof err), *ob = kopt_new(&c, t, 3, pb, g, numel, err,
                                                                                   sizeof err);
        assert_non_null(oa);
        assert_non_null(ob);
        const size_t k = kopt_split_at(ob, numel / 2);
        if (opt == 0) assert_int_equal(k, 98304); /* t0's fourth piece: inside the tensor */
        else assert_int_equal(k, 100000);         /* t2's start */
        assert_int_equal(kopt_split_at(ob, numel), numel);
        for (int s = 1; s <= 2; s++) {
            assert_int_equal(kopt_step(oa, s, 2, NULL, NULL), 0);
            double gn = sqrt(kopt_grad_sumsq_range(ob, 0, k) + kopt_grad_sumsq_range(ob, k, numel));
            assert_int_equal(kopt_step_range(ob, s, 2, gn, 0, k, NULL), 0);
            assert_int_equal(kopt_step_range(ob, s, 2, gn, k, numel, NULL), 0);
        }
        assert_memory_equal(pa, pb, numel * sizeof(float));
        if (opt == 1) {
            memcpy(pa, pb, numel * sizeof(float));
            assert_int_equal(kopt_step_range(ob, 3, 3, 1.0, 32768, numel, NULL), EX_SOFTWARE);
            assert_memory_equal(pa, pb, numel * sizeof(float));
        }
        kopt_free(oa);
        kopt_free(ob);
        free(pa);
        free(pb);
        free(g);
    }
}

static void test_training(void **state)
{
    (void)state;
    double f, l;
    l = train(KMODEL_BERT, KOPT_ADAMW, 1e-2, &f, NULL);
    print_message("BERT AdamW: loss %.4f -> %.4f\n", f, l);
    assert_true(l < 0.5 * f);
    l = train(KMODEL_ALBERT, KOPT_ADAMW, 1e-2, &f, NULL);
    print_message("ALBERT AdamW: loss %.4f -> %.4f\n", f, l);
    assert_true(l < 0.5 * f);
    float *p1, *p2;
    l = train(KMODEL_ALBERT, KOPT_LAMB, 2e-2, &f, &p1);
    print_message("ALBERT LAMB: loss %.4f -> %.4f\n", f, l);
    assert_true(l < 0.5 * f);
    /* the same parameters after 40 steps with one thread */
    omp_set_num_threads(1);
    train(KMODEL_ALBERT, KOPT_LAMB, 2e-2, &f, &p2);
    omp_set_num_threads(2);
    kmodel_config c = config(KMODEL_ALBERT, 0);
    char err[256];
    kmodel *m = kmodel_new(&c, TB, TL, TP, 1, err, sizeof err);
    assert_memory_equal(p1, p2, kmodel_numel(m) * sizeof(float));
    kmodel_free(m);
    free(p1), free(p2);
}

int main(void)
{
    omp_set_num_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),        cmocka_unit_test(test_gradcheck_bert),
        cmocka_unit_test(test_gradcheck_albert), cmocka_unit_test(test_gradcheck_dropout),
        cmocka_unit_test(test_gradcheck_heads), cmocka_unit_test(test_gradcheck_layers),
        cmocka_unit_test(test_gradcheck_electra), cmocka_unit_test(test_electra_rtd),
        cmocka_unit_test(test_inference),     cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_determinism),   cmocka_unit_test(test_threads_medium),
        cmocka_unit_test(test_eval_logits),
        cmocka_unit_test(test_errors),        cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_adamw),         cmocka_unit_test(test_lamb), cmocka_unit_test(test_split_update),
        cmocka_unit_test(test_split_inside_tensor),
        cmocka_unit_test(test_frozen),
        cmocka_unit_test(test_training),      cmocka_unit_test(test_gpt2),
        cmocka_unit_test(test_distilbert),    cmocka_unit_test(test_distilbert_cls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
