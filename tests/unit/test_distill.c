/* test_distill.c: unit tests of distillation (trainer/distill.c and the
 * pieces it uses in trainer/kernels.c and trainer/model.c).
 *
 * - Kernels, finite differences (4-point, fdcheck.h): kxent_soft's gradient
 *   of gscale CE + kscale T^2 KL at T = 2 (and its values against a double
 *   re-computation), kcosine_loss, kattn_score_mse (query and key columns;
 *   value columns untouched).
 * - Whole steps, finite differences of kdistill_step's loss with respect to
 *   the student's parameters (every tensor: its largest-gradient element and
 *   2 random ones; h = 1e-2, |analytic - numeric| <= 5e-4 + 5e-3 |numeric|):
 *   DistilBERT's triple loss (BERT teacher, DistilBERT student), positions
 *   all with an ALBERT teacher, TinyBERT's intermediate stage (attention
 *   scores, hidden states and embeddings through the projections) and its
 *   prediction stage; a classifier with a fine-tuned teacher's class logits
 *   (task-specific distillation: soft loss over every row, gold loss over the
 *   labelled ones).
 * - The teacher's parameters are the same bytes after training steps.
 * - Determinism: two runs and 1 vs 2 threads give the same bytes.
 * - Layer maps and stages; kmodel_init_from: a BERT student from every layer
 *   of a BERT teacher gives the teacher's logits bit for bit, a DistilBERT
 *   student (the type-0 row folded into the positions) the teacher's logits
 *   within 1e-5 on single-segment input; mismatches are config errors. */
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

#include "trainer/distill.h"
#include "trainer/kernels.h"
#include "trainer/model.h"

#define FD_SEED 0x853C49E6748FEA9Bull
#include "fdcheck.h"

enum { TB = 3, TL = 12, TP = 4, TV = 40 };

static kmodel_config config(int type, int H, int layers, int heads)
{
    kmodel_config c = {0};
    c.type = type;
    c.vocab_size = TV;
    c.embedding_size = type == KMODEL_ALBERT ? 8 : H;
    c.hidden_size = H;
    c.num_hidden_layers = layers;
    c.num_hidden_groups = type == KMODEL_ALBERT ? 2 : layers;
    c.num_attention_heads = heads;
    c.intermediate_size = 2 * H;
    c.max_position_embeddings = 16;
    c.type_vocab_size = 2;
    c.hidden_act = type == KMODEL_ALBERT ? KACT_GELU_NEW : KACT_GELU;
    c.layer_norm_eps = 1e-12;
    c.initializer_range = 0.3;
    return c;
}

typedef struct tbatch {
    ksample_batch b;
    int32_t ids[TB * TL], lengths[TB], n_masked[TB], pos[TB * TP], mids[TB * TP];
    uint8_t types[TB * TL];
    float w[TB * TP];
} tbatch;

static void make_batch(tbatch *t, int types)
{
    memset(t, 0, sizeof *t);
    static const int lens[TB] = {12, 7, 4}, nm[TB] = {4, 2, 1};
    static const int mpos[TB][TP] = {{1, 4, 5, 10}, {2, 6, 0, 0}, {3, 0, 0, 0}};
    uint64_t s = 0x1234567u;
    for (int r = 0; r < TB; r++) {
        t->lengths[r] = lens[r];
        t->n_masked[r] = nm[r];
        for (int i = 0; i < TL; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            t->ids[r * TL + i] = i < lens[r] ? (i == 0 ? 2 : 5 + (int)((s >> 33) % (TV - 5))) : 0;
            t->types[r * TL + i] = types && i < lens[r] && i > lens[r] / 2;
        }
        for (int p = 0; p < TP; p++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            t->pos[r * TP + p] = mpos[r][p];
            t->mids[r * TP + p] = p < nm[r] ? 5 + (int)((s >> 33) % (TV - 5)) : 0;
            t->w[r * TP + p] = p < nm[r] ? 1.0f : 0.0f;
        }
    }
    t->w[1 * TP + 1] = 0.5f;
    ksample_batch *b = &t->b;
    b->version = KSAMPLE_BATCH_VERSION;
    b->objectives = KOBJ_MLM;
    b->B = TB, b->L = TL, b->P = TP, b->capacity = TB;
    b->pad_id = 0, b->cls_id = 2, b->sep_id = 3, b->mask_id = 4;
    b->input_ids = t->ids, b->token_type_ids = t->types, b->lengths = t->lengths;
    b->n_masked = t->n_masked, b->masked_positions = t->pos, b->masked_ids = t->mids, b->masked_weights = t->w;
}

static kmodel *model(const kmodel_config *c, int P, int inference, int fit, uint64_t seed)
{
    kmodel_spec s = {.heads = KHEAD_MLM, .max_B = TB, .L = TL, .P = P, .classifier_dropout = -1,
                     .inference = inference, .fit_width = fit};
    char err[256] = "";
    kmodel *m = kmodel_create(c, &s, err, sizeof err);
    if (!m) print_error("kmodel_create: %s\n", err);
    assert_non_null(m);
    kmodel_init(m, seed);
    return m;
}

/* ---- kernels ------------------------------------------------------------------- */

typedef struct soft_ctx {
    float *x, *t, *bias, *gs, *ks, *tmp, *loss, *kl;
    int32_t *labels;
    int M, V;
    float T;
} soft_ctx;

static double soft_loss(void *p)
{
    soft_ctx *c = p;
    memcpy(c->tmp, c->x, (size_t)c->M * c->V * sizeof(float));
    kxent_soft(c->tmp, c->bias, c->t, c->T, c->loss, c->kl, NULL, NULL, c->labels, NULL, NULL, c->M, c->V);
    double s = 0;
    for (int i = 0; i < c->M; i++) s += (double)c->gs[i] * c->loss[i] + (double)c->ks[i] * c->kl[i];
    return s;
}

static void test_kxent_soft(void **state)
{
    (void)state;
    enum { M = 5, V = 37 };
    soft_ctx c = {.x = fnew(M * V), .t = fnew(M * V), .bias = fnew(V), .gs = fnew(M), .ks = fnew(M),
                  .tmp = fnew(M * V), .loss = fnew(M), .kl = fnew(M), .M = M, .V = V, .T = 2.0f};
    int32_t labels[M] = {3, -1, 0, 36, 7};
    c.labels = labels;
    fill(c.x, M * V, -3, 3);
    fill(c.t, M * V, -4, 4);
    fill(c.bias, V, -1, 1);
    fill(c.gs, M, 0.2, 1);
    fill(c.ks, M, 0.2, 1);
    /* values against double */
    memcpy(c.tmp, c.x, sizeof(float) * M * V);
    uint8_t agree[M], correct[M];
    kxent_soft(c.tmp, c.bias, c.t, c.T, c.loss, c.kl, correct, agree, labels, NULL, NULL, M, V);
    for (int i = 0; i < M; i++) {
        double ms = -1e30, mt = -1e30, zs = 0, zt = 0, z1 = 0, kl = 0;
        int as = 0, at = 0;
        for (int j = 0; j < V; j++) {
            double s = (double)c.x[i * V + j] + c.bias[j], t = c.t[i * V + j];
            assert_float_equal(c.tmp[i * V + j], (float)s, 1e-6);
            if (s > ms) ms = s, as = j;
            if (t > mt) mt = t, at = j;
        }
        for (int j = 0; j < V; j++) {
            double s = (double)c.x[i * V + j] + c.bias[j], t = c.t[i * V + j];
            zs += exp((s - ms) / c.T);
            zt += exp((t - mt) / c.T);
            z1 += exp(s - ms);
        }
        for (int j = 0; j < V; j++) {
            double s = (double)c.x[i * V + j] + c.bias[j], t = c.t[i * V + j];
            double lp = (t - mt) / c.T - log(zt), lq = (s - ms) / c.T - log(zs);
            kl += exp(lp) * (lp - lq);
        }
        assert_float_equal(c.kl[i], c.T * c.T * kl, 1e-5 * (1 + c.T * c.T * kl));
        assert_int_equal(agree[i], as == at);
        if (labels[i] >= 0) {
            double ce = log(z1) + ms - ((double)c.x[i * V + labels[i]] + c.bias[labels[i]]);
            assert_float_equal(c.loss[i], ce, 1e-5 * (1 + ce));
            assert_int_equal(correct[i], as == labels[i]);
        } else {
            assert_float_equal(c.loss[i], 0, 0);
        }
    }
    /* gradient */
    float *g = fnew(M * V);
    memcpy(g, c.x, sizeof(float) * M * V);
    kxent_soft(g, c.bias, c.t, c.T, c.loss, c.kl, NULL, NULL, labels, c.gs, c.ks, M, V);
    fd_check_at("kxent_soft dx", soft_loss, &c, c.x, g, M * V, M * V, urand, 1e-2f, 1e-4, 2e-3);
    free(g), free(c.x), free(c.t), free(c.bias), free(c.gs), free(c.ks), free(c.tmp), free(c.loss), free(c.kl);
}

typedef struct cos_ctx {
    float *s, *t;
    int N, H;
} cos_ctx;
static double cos_fn(void *p)
{
    cos_ctx *c = p;
    return kcosine_loss(c->s, c->t, NULL, 1.0f, c->N, c->H);
}

static void test_cosine(void **state)
{
    (void)state;
    enum { N = 6, H = 9 };
    cos_ctx c = {.s = fnew(N * H), .t = fnew(N * H), .N = N, .H = H};
    fill(c.s, N * H, -2, 2);
    fill(c.t, N * H, -2, 2);
    memcpy(c.t + H, c.s + H, H * sizeof(float)); /* a row with cos = 1: loss 0 there */
    float *g = fnew(N * H);
    double sum = kcosine_loss(c.s, c.t, g, 1.0f, N, H);
    double ref = 0;
    for (int i = 0; i < N; i++) {
        double ab = 0, aa = 0, bb = 0;
        for (int j = 0; j < H; j++) {
            ab += (double)c.s[i * H + j] * c.t[i * H + j];
            aa += (double)c.s[i * H + j] * c.s[i * H + j];
            bb += (double)c.t[i * H + j] * c.t[i * H + j];
        }
        ref += 1 - ab / sqrt((aa + 1e-12) * (bb + 1e-12));
    }
    assert_float_equal(sum, ref, 1e-9);
    fd_check_at("kcosine_loss ds", cos_fn, &c, c.s, g, N * H, N * H, urand, 1e-3f, 1e-5, 2e-3);
    free(c.s), free(c.t), free(g);
}

typedef struct att_ctx {
    float *q, *qt;
    int32_t offs[4];
    int B, NH, D, Dt, L;
} att_ctx;
static double att_fn(void *p)
{
    att_ctx *c = p;
    double cnt;
    return kattn_score_mse(c->q, c->qt, c->offs, c->B, c->NH, c->D, c->Dt, c->L, NULL, 1.0f, &cnt);
}

static void test_attn_scores(void **state)
{
    (void)state;
    enum { B = 3, NH = 2, D = 3, Dt = 5, L = 7 };
    att_ctx c = {.offs = {0, 7, 10, 15}, .B = B, .NH = NH, .D = D, .Dt = Dt, .L = L};
    const int N = 15;
    c.q = fnew((size_t)N * 3 * NH * D);
    c.qt = fnew((size_t)N * 3 * NH * Dt);
    fill(c.q, (size_t)N * 3 * NH * D, -1, 1);
    fill(c.qt, (size_t)N * 3 * NH * Dt, -1, 1);
    float *g = fnew((size_t)N * 3 * NH * D);
    double cnt = 0;
    double sum = kattn_score_mse(c.q, c.qt, c.offs, B, NH, D, Dt, L, g, 1.0f, &cnt);
    assert_float_equal(cnt, NH * (49 + 9 + 25), 0);
    /* the same sum in double */
    double ref = 0;
    const int H = NH * D, Ht = NH * Dt;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = c.offs[b]; i < c.offs[b + 1]; i++)
                for (int j = c.offs[b]; j < c.offs[b + 1]; j++) {
                    double s = 0, st = 0;
                    for (int k = 0; k < D; k++) s += (double)c.q[i * 3 * H + h * D + k] * c.q[j * 3 * H + H + h * D + k];
                    for (int k = 0; k < Dt; k++)
                        st += (double)c.qt[i * 3 * Ht + h * Dt + k] * c.qt[j * 3 * Ht + Ht + h * Dt + k];
                    double e = s / sqrt(D) - st / sqrt(Dt);
                    ref += e * e;
                }
    assert_float_equal(sum, ref, 1e-5 * ref);
    for (int i = 0; i < N; i++)
        for (int k = 2 * H; k < 3 * H; k++) assert_float_equal(g[i * 3 * H + k], 0, 0); /* values: no gradient */
    fd_check_at("kattn_score_mse dqkv", att_fn, &c, c.q, g, (size_t)N * 3 * H, (size_t)N * 3 * H, urand, 1e-2f, 1e-4,
                2e-3);
    free(c.q), free(c.qt), free(g);
}

/* ---- whole steps -------------------------------------------------------------------- */

typedef struct step_ctx {
    kdistiller *d;
    const ksample_batch *b;
} step_ctx;
static double step_loss(void *p)
{
    step_ctx *c = p;
    kstep_result r;
    assert_int_equal(kdistill_step(c->d, c->b, 0, 0, 1.0f, 0, 1, &r), 0);
    return r.loss;
}

/* every student tensor: the largest-gradient element and 2 random ones */
static void fd_model(const char *what, kmodel *s, kdistiller *d, const ksample_batch *b)
{
    kstep_result r;
    kmodel_zero_grad(s);
    assert_int_equal(kdistill_step(d, b, 1, 0, 1.0f, 0, 1, &r), 0);
    int n;
    const ktensor *t = kmodel_params(s, &n);
    float *P = kmodel_param_data(s), *G = kmodel_grad_data(s);
    step_ctx c = {d, b};
    int nonzero = 0;
    for (int i = 0; i < n; i++) {
        size_t best = 0;
        for (size_t j = 0; j < t[i].numel; j++)
            if (fabsf(G[t[i].offset + j]) > fabsf(G[t[i].offset + best])) best = j;
        nonzero += G[t[i].offset + best] != 0;
        size_t at[3] = {best, (size_t)(urand() * t[i].numel), (size_t)(urand() * t[i].numel)};
        for (int k = 0; k < 3; k++) {
            char name[200];
            snprintf(name, sizeof name, "%s %s", what, t[i].name);
            fd_check_at(name, step_loss, &c, P + t[i].offset + at[k], G + t[i].offset + at[k], 1, 1, urand, 1e-2f,
                        5e-4, 5e-3);
        }
    }
    assert_true(nonzero > n / 2); /* the losses reach most of the student */
}

static kdistill_config distilbert_cfg(void)
{
    kdistill_config d = {.method = KDISTILL_DISTILBERT, .temperature = 2.0, .alpha_ce = 5.0, .alpha_mlm = 2.0,
                         .alpha_cos = 1.0, .positions = KDISTILL_MASKED, .init_from_teacher = 1};
    return d;
}

static kdistill_config tinybert_cfg(int stage)
{
    kdistill_config d = {.method = KDISTILL_TINYBERT, .temperature = 1.5, .alpha_mlm = 0.5, .alpha_att = 1.0,
                         .alpha_hid = 2.0, .alpha_emb = 3.0, .alpha_pred = 1.0, .stage = stage,
                         .positions = KDISTILL_MASKED};
    return d;
}

static void test_grad_distilbert(void **state)
{
    (void)state;
    kmodel_config tc = config(KMODEL_BERT, 16, 4, 2), sc = config(KMODEL_DISTILBERT, 16, 2, 2);
    kmodel *t = model(&tc, TP, 1, 0, 11), *s = model(&sc, TP, 0, 0, 12);
    kdistill_config dc = distilbert_cfg();
    char err[256];
    kdistiller *d = kdistill_new(s, t, &dc, err, sizeof err);
    assert_non_null(d);
    tbatch b;
    make_batch(&b, 1);
    kstep_result r;
    assert_int_equal(kdistill_step(d, &b.b, 0, 0, 1.0f, 0, 1, &r), 0);
    for (const char *k = "mlm_loss\0ce_loss\0cos_loss\0teacher_agree\0mlm_acc\0"; *k; k += strlen(k) + 1)
        assert_false(isnan(kstep_value(&r, k)));
    double want = 5.0 * kstep_value(&r, "ce_loss") + 2.0 * kstep_value(&r, "mlm_loss") + kstep_value(&r, "cos_loss");
    assert_float_equal(r.loss, want, 1e-9 * want);
    fd_model("distilbert", s, d, &b.b);
    kdistill_free(d), kmodel_free(s), kmodel_free(t);
}

static void test_grad_all_positions(void **state)
{
    (void)state;
    kmodel_config tc = config(KMODEL_ALBERT, 16, 4, 2), sc = config(KMODEL_BERT, 16, 2, 2);
    kmodel *t = model(&tc, TL, 1, 0, 21), *s = model(&sc, TL, 0, 0, 22);
    kdistill_config dc = distilbert_cfg();
    dc.positions = KDISTILL_ALL;
    dc.temperature = 3.0;
    char err[256];
    kdistiller *d = kdistill_new(s, t, &dc, err, sizeof err);
    assert_non_null(d);
    tbatch b;
    make_batch(&b, 1);
    kstep_result r;
    assert_int_equal(kdistill_step(d, &b.b, 0, 0, 1.0f, 0, 1, &r), 0);
    /* the soft loss counts every real token, the MLM loss only the labelled slots */
    for (int i = 0; i < r.n; i++) {
        if (!strcmp(r.t[i].name, "ce_loss")) assert_float_equal(r.t[i].count, 12 + 7 + 4, 0);
        if (!strcmp(r.t[i].name, "mlm_loss")) assert_float_equal(r.t[i].count, 4 + 1.5 + 1, 0);
    }
    fd_model("all", s, d, &b.b);
    kdistill_free(d), kmodel_free(s), kmodel_free(t);
}

static void test_grad_tinybert(void **state)
{
    (void)state;
    kmodel_config tc = config(KMODEL_BERT, 16, 4, 2), sc = config(KMODEL_BERT, 8, 2, 2);
    kmodel *t = model(&tc, TP, 1, 0, 31), *s = model(&sc, TP, 0, 16, 32);
    tbatch b;
    make_batch(&b, 1);
    char err[256];
    for (int stage = KDISTILL_INTERMEDIATE; stage <= KDISTILL_PREDICTION; stage++) {
        kdistill_config dc = tinybert_cfg(stage);
        kdistiller *d = kdistill_new(s, t, &dc, err, sizeof err);
        if (!d) print_error("%s\n", err);
        assert_non_null(d);
        kstep_result r;
        assert_int_equal(kdistill_step(d, &b.b, 0, 0, 1.0f, 0, 1, &r), 0);
        if (stage == KDISTILL_INTERMEDIATE) {
            double want = kstep_value(&r, "att_loss") + 2 * kstep_value(&r, "hid_loss") +
                          3 * kstep_value(&r, "emb_loss") + 0.5 * kstep_value(&r, "mlm_loss");
            assert_float_equal(r.loss, want, 1e-9 * want);
            fd_model("tinybert intermediate", s, d, &b.b);
        } else {
            assert_true(isnan(kstep_value(&r, "att_loss")));
            double want = kstep_value(&r, "ce_loss") / (1.5 * 1.5) + 0.5 * kstep_value(&r, "mlm_loss");
            assert_float_equal(r.loss, want, 1e-9 * want);
            /* the projections get no gradient in the prediction stage */
            kmodel_zero_grad(s);
            assert_int_equal(kdistill_step(d, &b.b, 1, 0, 1.0f, 0, 1, &r), 0);
            size_t o = kmodel_param_offset(s, "distill.fit_dense.weight");
            for (int j = 0; j < 16 * 8; j++) assert_float_equal(kmodel_grad_data(s)[o + j], 0, 0);
        }
        kdistill_free(d);
    }
    kmodel_free(s), kmodel_free(t);
}

/* task-specific distillation: a classifier with a teacher's class logits as soft targets */
typedef struct cls_ctx {
    kmodel *m;
    const ksample_batch *b;
    const float *t;
} cls_ctx;
static double cls_loss(void *p)
{
    cls_ctx *c = p;
    kstep_result r;
    assert_int_equal(kmodel_forward(c->m, c->b, KMODE_EVAL, 0), 0);
    assert_int_equal(kmodel_set_soft_targets(c->m, c->t, 2.0f, 0.7, 0.3, 1), 0);
    assert_int_equal(kmodel_loss(c->m, 0.0f, &r), 0);
    return r.loss;
}

static void test_grad_classifier_soft(void **state)
{
    (void)state;
    kmodel_config sc = config(KMODEL_BERT, 16, 2, 2);
    kmodel_spec sp = {.heads = KHEAD_CLASSIFY, .max_B = TB, .L = TL, .num_labels = 3, .classifier_dropout = 0};
    char err[256];
    kmodel *m = kmodel_create(&sc, &sp, err, sizeof err);
    assert_non_null(m);
    kmodel_init(m, 61);
    tbatch b;
    make_batch(&b, 1);
    int32_t labels[TB] = {2, -1, 0}; /* row 1 unlabelled: only the soft loss reads it */
    b.b.labels = labels;
    float t[TB * 3] = {1.0f, -0.5f, 2.0f, 0.3f, 0.2f, -1.0f, -2.0f, 1.5f, 0.1f};
    cls_ctx c = {m, &b.b, t};
    kstep_result r;
    assert_int_equal(kmodel_forward(m, &b.b, KMODE_EVAL, 0), 0);
    assert_int_equal(kmodel_set_soft_targets(m, t, 2.0f, 0.7, 0.3, 1), 0);
    assert_int_equal(kmodel_loss(m, 0.0f, &r), 0);
    for (int i = 0; i < r.n; i++) {
        if (!strcmp(r.t[i].name, "ce_loss")) assert_float_equal(r.t[i].count, 3, 0); /* every row */
        if (!strcmp(r.t[i].name, "cls_loss")) assert_float_equal(r.t[i].count, 2, 0); /* the labelled ones */
    }
    double want = 0.7 * kstep_value(&r, "ce_loss") + 0.3 * kstep_value(&r, "cls_loss");
    assert_float_equal(r.loss, want, 1e-12 + 1e-9 * want);
    kmodel_zero_grad(m);
    assert_int_equal(kmodel_forward(m, &b.b, KMODE_TRAIN, 0), 0);
    assert_int_equal(kmodel_set_soft_targets(m, t, 2.0f, 0.7, 0.3, 1), 0);
    assert_int_equal(kmodel_loss(m, 1.0f, &r), 0);
    assert_int_equal(kmodel_backward(m), 0);
    int n;
    const ktensor *tl = kmodel_params(m, &n);
    float *P = kmodel_param_data(m), *G = kmodel_grad_data(m);
    for (int i = 0; i < n; i++) {
        size_t best = 0;
        for (size_t j = 0; j < tl[i].numel; j++)
            if (fabsf(G[tl[i].offset + j]) > fabsf(G[tl[i].offset + best])) best = j;
        fd_check_at(tl[i].name, cls_loss, &c, P + tl[i].offset + best, G + tl[i].offset + best, 1, 1, urand, 1e-2f,
                    5e-4, 5e-3);
    }
    kmodel_free(m);
}

/* ---- teacher, determinism ------------------------------------------------------------- */

static void run_steps(kmodel *s, kmodel *t, int steps, float *out_params)
{
    kdistill_config dc = distilbert_cfg();
    char err[256];
    kdistiller *d = kdistill_new(s, t, &dc, err, sizeof err);
    assert_non_null(d);
    tbatch b;
    make_batch(&b, 1);
    float *P = kmodel_param_data(s), *G = kmodel_grad_data(s);
    for (int k = 0; k < steps; k++) {
        kstep_result r;
        kmodel_zero_grad(s);
        assert_int_equal(kdistill_step(d, &b.b, 1, (uint64_t)k, 1.0f, k, steps, &r), 0);
        for (size_t i = 0; i < kmodel_numel(s); i++) P[i] -= 0.05f * G[i];
    }
    memcpy(out_params, P, kmodel_numel(s) * sizeof(float));
    kdistill_free(d);
}

static void test_teacher_untouched_and_deterministic(void **state)
{
    (void)state;
    kmodel_config tc = config(KMODEL_BERT, 16, 4, 2), sc = config(KMODEL_DISTILBERT, 16, 2, 2);
    sc.hidden_dropout_prob = sc.attention_probs_dropout_prob = 0.1;
    float *runs[3];
    for (int k = 0; k < 3; k++) {
        omp_set_num_threads(k == 2 ? 1 : 2);
        kmodel *t = model(&tc, TP, 1, 0, 41), *s = model(&sc, TP, 0, 0, 42);
        size_t tn = kmodel_numel(t);
        float *before = fnew(tn);
        memcpy(before, kmodel_param_data(t), tn * sizeof(float));
        runs[k] = fnew(kmodel_numel(s));
        run_steps(s, t, 4, runs[k]);
        assert_memory_equal(before, kmodel_param_data(t), tn * sizeof(float));
        free(before);
        kmodel_free(s), kmodel_free(t);
    }
    kmodel_config c2 = sc;
    kmodel *s = model(&c2, TP, 0, 0, 42);
    size_t n = kmodel_numel(s);
    kmodel_free(s);
    assert_memory_equal(runs[0], runs[1], n * sizeof(float)); /* run to run */
    assert_memory_equal(runs[0], runs[2], n * sizeof(float)); /* 2 threads vs 1 */
    for (int k = 0; k < 3; k++) free(runs[k]);
    omp_set_num_threads(2);
}

/* ---- maps, init ---------------------------------------------------------------------------- */

static void test_layer_maps(void **state)
{
    (void)state;
    int out[8];
    kdistill_init_layers(6, 3, out);
    assert_int_equal(out[0], 0), assert_int_equal(out[1], 2), assert_int_equal(out[2], 4);
    kdistill_init_layers(12, 6, out);
    for (int i = 0; i < 6; i++) assert_int_equal(out[i], 2 * i);
    kdistill_init_layers(4, 4, out);
    for (int i = 0; i < 4; i++) assert_int_equal(out[i], i);
    kdistill_init_layers(5, 2, out);
    assert_int_equal(out[0], 0), assert_int_equal(out[1], 2);

    kmodel_config tc = config(KMODEL_BERT, 16, 4, 2), sc = config(KMODEL_BERT, 8, 2, 2);
    kmodel *t = model(&tc, TP, 1, 0, 1), *s = model(&sc, TP, 0, 16, 2);
    kdistill_config dc = tinybert_cfg(KDISTILL_BOTH);
    dc.intermediate_fraction = 0.3;
    char err[256];
    kdistiller *d = kdistill_new(s, t, &dc, err, sizeof err);
    assert_non_null(d);
    assert_int_equal(kdistill_stage(d, 0, 10), KDISTILL_INTERMEDIATE);
    assert_int_equal(kdistill_stage(d, 2, 10), KDISTILL_INTERMEDIATE);
    assert_int_equal(kdistill_stage(d, 3, 10), KDISTILL_PREDICTION);
    assert_int_equal(kdistill_stage(d, 9, 10), KDISTILL_PREDICTION);
    kdistill_free(d);
    /* mismatches: 4 teacher layers over 3 student layers; heads; widths for the cosine */
    kmodel_config s3 = config(KMODEL_BERT, 8, 3, 2), h4 = config(KMODEL_BERT, 8, 2, 4);
    kmodel *a = model(&s3, TP, 0, 16, 3), *h = model(&h4, TP, 0, 16, 4);
    assert_null(kdistill_new(a, t, &dc, err, sizeof err));
    assert_non_null(strstr(err, "not a multiple"));
    assert_null(kdistill_new(h, t, &dc, err, sizeof err));
    assert_non_null(strstr(err, "heads"));
    kdistill_config db = distilbert_cfg();
    assert_null(kdistill_new(s, t, &db, err, sizeof err));
    assert_non_null(strstr(err, "width"));
    kmodel_config s1 = config(KMODEL_BERT, 8, 2, 2);
    kmodel *nofit = model(&s1, TP, 0, 0, 5);
    assert_null(kdistill_new(nofit, t, &dc, err, sizeof err));
    assert_non_null(strstr(err, "projections"));
    kmodel_free(a), kmodel_free(h), kmodel_free(nofit), kmodel_free(s), kmodel_free(t);
}

static void logits_of(kmodel *m, const ksample_batch *b, float *out, int *M)
{
    kstep_result r;
    assert_int_equal(kmodel_evaluate(m, b, &r), 0);
    const float *l = kmodel_mlm_logits_all(m, M);
    assert_non_null(l);
    memcpy(out, l, (size_t)*M * TV * sizeof(float));
}

static void test_init_from(void **state)
{
    (void)state;
    kmodel_config tc = config(KMODEL_BERT, 16, 3, 2);
    kmodel *t = model(&tc, TP, 1, 0, 51);
    tbatch b;
    make_batch(&b, 0); /* single segment: token types 0 */
    float *lt = fnew(TB * TP * TV), *ls = fnew(TB * TP * TV);
    int Mt, Ms;
    logits_of(t, &b.b, lt, &Mt);
    int every[3] = {0, 1, 2};
    char err[256];
    /* BERT from every teacher layer: the teacher itself */
    kmodel *s = model(&tc, TP, 0, 0, 52);
    assert_int_equal(kmodel_init_from(s, t, every, 3, err, sizeof err), 0);
    logits_of(s, &b.b, ls, &Ms);
    assert_int_equal(Ms, Mt);
    assert_memory_equal(lt, ls, (size_t)Mt * TV * sizeof(float));
    kmodel_free(s);
    /* DistilBERT from every layer: the type-0 row folded into the positions */
    kmodel_config dc = config(KMODEL_DISTILBERT, 16, 3, 2);
    s = model(&dc, TP, 0, 0, 53);
    assert_int_equal(kmodel_init_from(s, t, every, 3, err, sizeof err), 0);
    logits_of(s, &b.b, ls, &Ms);
    for (int i = 0; i < Mt * TV; i++) assert_float_equal(ls[i], lt[i], 1e-5 * (1 + fabsf(lt[i])));
    kmodel_free(s);
    /* a 2-layer DistilBERT from layers [0, 2]: its first layer's output is the teacher's */
    dc.num_hidden_layers = dc.num_hidden_groups = 2;
    s = model(&dc, TP, 0, 0, 54);
    int two[2] = {0, 2}, bad[2] = {0, 3};
    assert_int_equal(kmodel_init_from(s, t, bad, 2, err, sizeof err), EX_CONFIG);
    assert_non_null(strstr(err, "teacher layer 3"));
    assert_int_equal(kmodel_init_from(s, t, two, 2, err, sizeof err), 0);
    kstep_result r;
    assert_int_equal(kmodel_evaluate(s, &b.b, &r), 0);
    assert_int_equal(kmodel_evaluate(t, &b.b, &r), 0);
    int N;
    kmodel_offsets(s, NULL, &N);
    const float *hs = kmodel_hidden(s, 1), *ht = kmodel_hidden(t, 1);
    for (int i = 0; i < N * 16; i++) assert_float_equal(hs[i], ht[i], 1e-5 * (1 + fabsf(ht[i])));
    kmodel_free(s);
    /* another width is refused */
    kmodel_config w8 = config(KMODEL_DISTILBERT, 8, 2, 2);
    s = model(&w8, TP, 0, 0, 55);
    assert_int_equal(kmodel_init_from(s, t, two, 2, err, sizeof err), EX_CONFIG);
    assert_non_null(strstr(err, "init_from_teacher false"));
    kmodel_free(s), kmodel_free(t);
    free(lt), free(ls);
}

int main(void)
{
    omp_set_num_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kxent_soft),
        cmocka_unit_test(test_cosine),
        cmocka_unit_test(test_attn_scores),
        cmocka_unit_test(test_grad_distilbert),
        cmocka_unit_test(test_grad_all_positions),
        cmocka_unit_test(test_grad_tinybert),
        cmocka_unit_test(test_grad_classifier_soft),
        cmocka_unit_test(test_teacher_untouched_and_deterministic),
        cmocka_unit_test(test_layer_maps),
        cmocka_unit_test(test_init_from),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
