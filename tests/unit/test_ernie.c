/* test_ernie.c: unit tests of ERNIE's knowledge fusion (trainer/ernie.c
 * inside trainer/model.c) on small BERT and ALBERT encoders (V 50, H 16,
 * 3 layers of which the last 2 fuse, 2 heads, I 32) with an entity table of
 * 9 rows x 6 (row 0 = no entity), batch B 3, L 12 with padding: a row with
 * 3 aligned entities (one a dEA-dropped alignment, one a dEA replacement),
 * a row with one, a row with none.
 *
 * - Registry: names, shapes, the frozen table, decay flags; the first
 *   fusion layer without entity attention, the last without entity output.
 * - Whole-model gradient check of every tensor but the frozen table (all
 *   elements of the entity side's tensors up to 64, else the largest and 8
 *   random ones), 4-point central differences (h = 1e-2, initializer_range
 *   0.3), pass when |analytic - numeric| <= 3e-4 + 3e-3 |numeric|: BERT with
 *   the dEA head, with dropout 0.1 everywhere, with a projection to a wider
 *   entity stream (W 8 != 6, 2 entity heads); ALBERT (shared text weights).
 * - The table's gradient is zero and an optimizer step leaves it unchanged.
 * - dEA terms: the candidates are the batch's distinct entities (inputs and
 *   labels), the target count the aligned labels.
 * - Without entities the model is bitwise the plain model with its text
 *   tensors (BERT and ALBERT): the text export's promise.
 * - Determinism over thread counts; entity ids outside the table fail. */
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

#include "trainer/model.h"
#include "trainer/optim.h"

static uint64_t rng_state = 0x243F6A8885A308D3ull;
static double urand(void) /* [0, 1) */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}

enum { TB = 3, TL = 12, TP = 4, TV = 50, KE = 9, DE = 6 };

static double dea_weight = 1.0; /* knowledge.dea_weight of the models config() makes */
static int dea_on = 1;          /* knowledge.dea of the models config() makes */

static kmodel_config config(int type, double dropout, int width)
{
    kmodel_config c = {0};
    c.type = type;
    c.vocab_size = TV;
    c.embedding_size = type == KMODEL_ALBERT ? 8 : 16;
    c.hidden_size = 16;
    c.num_hidden_layers = 3;
    c.num_hidden_groups = type == KMODEL_ALBERT ? 1 : 3;
    c.num_attention_heads = 2;
    c.intermediate_size = 32;
    c.max_position_embeddings = 16;
    c.type_vocab_size = 2;
    c.hidden_act = type == KMODEL_ALBERT ? KACT_GELU_NEW : KACT_GELU;
    c.layer_norm_eps = 1e-12;
    c.hidden_dropout_prob = dropout;
    c.attention_probs_dropout_prob = dropout;
    c.initializer_range = 0.3;
    c.fusion_layers = 2;
    c.entity_vocab_size = KE;
    c.entity_dim = DE;
    c.entity_hidden_size = width;
    c.entity_attention_heads = width == 8 ? 2 : 3;
    c.dea = dea_on;
    c.dea_weight = dea_weight;
    return c;
}

typedef struct tbatch {
    ksample_batch b;
    int64_t index[TB];
    int32_t ids[TB * TL], lengths[TB], n_masked[TB], pos[TB * TP], mids[TB * TP], labels[TB];
    int32_t ent[TB * TL], elab[TB * TL];
    uint8_t types[TB * TL];
    float w[TB * TP];
} tbatch;

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
            t->ids[r * TL + i] = i < lens[r] ? (i == 0 ? 2 : 3 + (int)(urand() * (TV - 3))) : 0;
            t->types[r * TL + i] = i < lens[r] && i > lens[r] / 2;
        }
        for (int p = 0; p < TP; p++) {
            t->pos[r * TP + p] = mpos[r][p];
            t->mids[r * TP + p] = p < nm[r] ? 3 + (int)(urand() * (TV - 3)) : 0;
            t->w[r * TP + p] = p < nm[r] ? 1.0f : 0.0f;
        }
    }
    /* row 0: entity 3 at 2 (kept), 5 at 6 (replaced by 7), 4 at 9 (dropped); row 1: 3 at 3; row 2: none */
    t->ent[2] = 3, t->elab[2] = 3;
    t->ent[6] = 7, t->elab[6] = 5;
    t->ent[9] = 0, t->elab[9] = 4;
    t->ent[TL + 3] = 3, t->elab[TL + 3] = 3;
    ksample_batch *b = &t->b;
    b->version = KSAMPLE_BATCH_VERSION;
    b->objectives = KOBJ_MLM | KOBJ_NSP | KOBJ_ENTITIES;
    b->B = TB, b->L = TL, b->P = TP, b->capacity = TB;
    b->pad_id = 0, b->cls_id = 2, b->sep_id = 1, b->mask_id = 4;
    b->index = t->index, b->input_ids = t->ids, b->token_type_ids = t->types, b->lengths = t->lengths;
    b->n_masked = t->n_masked, b->masked_positions = t->pos, b->masked_ids = t->mids, b->masked_weights = t->w;
    b->labels = t->labels;
    b->entity_ids = t->ent, b->entity_labels = t->elab;
    rng_state = saved;
}

static const ktensor *find(kmodel *m, const char *name)
{
    int n;
    const ktensor *t = kmodel_params(m, &n);
    int i = ktensor_find(t, n, name);
    if (i < 0) print_error("no tensor %s\n", name);
    assert_true(i >= 0);
    return &t[i];
}

static kmodel *new_model(int type, double dropout, int width)
{
    kmodel_config c = config(type, dropout, width);
    char err[256] = "";
    kmodel *m = kmodel_new(&c, TB, TL, TP, 1, err, sizeof err);
    if (!m) print_error("kmodel_new: %s\n", err);
    assert_non_null(m);
    kmodel_init(m, 7);
    /* the entity vectors (kmodel_init leaves the table to its owner: TransE's) */
    const ktensor *e = find(m, "ernie.entity_embeddings.weight");
    float *P = kmodel_param_data(m) + e->offset;
    for (int i = DE; i < KE * DE; i++) P[i] = (float)(urand() - 0.5);
    return m;
}

static double loss_of(kmodel *m, const ksample_batch *b, uint64_t key, int backward, kstep_result *out)
{
    kstep_result r;
    assert_int_equal(kmodel_forward(m, b, KMODE_TRAIN, key), 0);
    assert_int_equal(kmodel_loss(m, 1.0f, &r), 0);
    if (backward) assert_int_equal(kmodel_backward(m), 0);
    if (out) *out = r;
    return r.loss;
}

static void test_registry(void **state)
{
    (void)state;
    kmodel *m = new_model(KMODEL_BERT, 0, 0);
    const ktensor *e = find(m, "ernie.entity_embeddings.weight");
    assert_true(e->shape[0] == KE && e->shape[1] == DE && e->frozen && !e->decay);
    int n;
    const ktensor *t = kmodel_params(m, &n);
    assert_int_equal(ktensor_find(t, n, "ernie.encoder.layer.0.intermediate.dense_ent.weight"), -1); /* text layer */
    assert_int_equal(ktensor_find(t, n, "ernie.encoder.layer.1.attention_ent.self.query.weight"), -1); /* "mix" */
    const ktensor *q = find(m, "ernie.encoder.layer.2.attention_ent.self.query.weight");
    assert_true(q->shape[0] == DE && q->shape[1] == DE && q->decay);
    const ktensor *fe = find(m, "ernie.encoder.layer.1.intermediate.dense_ent.weight");
    assert_true(fe->shape[0] == 32 && fe->shape[1] == DE);
    find(m, "ernie.encoder.layer.1.output.dense_ent.weight");
    find(m, "ernie.encoder.layer.1.output.LayerNorm_ent.weight");
    assert_int_equal(ktensor_find(t, n, "ernie.encoder.layer.2.output.dense_ent.weight"), -1); /* the last */
    const ktensor *d = find(m, "cls.predictions_ent.transform.dense.weight");
    assert_true(d->shape[0] == DE && d->shape[1] == 16);
    assert_true(!find(m, "cls.predictions_ent.transform.LayerNorm.bias")->decay);
    assert_int_equal(ktensor_find(t, n, "ernie.entity_projection.weight"), -1);
    /* the text encoder's names are BERT's: a BertModel without the entity side */
    find(m, "bert.encoder.layer.2.intermediate.dense.weight");
    kmodel_free(m);
    m = new_model(KMODEL_BERT, 0, 8);
    const ktensor *p = find(m, "ernie.entity_projection.weight");
    assert_true(p->shape[0] == 8 && p->shape[1] == DE);
    kmodel_free(m);
    /* bad shapes fail with a message */
    kmodel_config c = config(KMODEL_BERT, 0, 8);
    c.entity_attention_heads = 3;
    char err[256] = "";
    assert_null(kmodel_new(&c, TB, TL, TP, 1, err, sizeof err));
    assert_non_null(strstr(err, "entity_attention_heads"));
    c = config(KMODEL_BERT, 0, 0);
    c.fusion_layers = 4;
    assert_null(kmodel_new(&c, TB, TL, TP, 1, err, sizeof err));
    assert_non_null(strstr(err, "fusion_layers"));
}

static int is_entity_side(const char *name) { return !strncmp(name, "ernie.", 6) || strstr(name, "_ent.") != NULL; }

static void gradcheck(int type, double dropout, int width)
{
    kmodel *m = new_model(type, dropout, width);
    tbatch tb;
    make_batch(&tb);
    const uint64_t key = 99;
    kmodel_zero_grad(m);
    kstep_result r;
    loss_of(m, &tb.b, key, 1, &r);
    if (dea_on) assert_true(kstep_value(&r, "dea_loss") > 0);
    int n;
    const ktensor *t = kmodel_params(m, &n);
    size_t numel = kmodel_numel(m);
    float *g = malloc(numel * sizeof(float));
    memcpy(g, kmodel_grad_data(m), numel * sizeof(float));
    float *P = kmodel_param_data(m);
    const float h = 1e-2f;
    int bad = 0, checked = 0, entity_checked = 0;
    for (int i = 0; i < n; i++) {
        if (t[i].frozen) {
            for (size_t j = 0; j < t[i].numel; j++) assert_true(g[t[i].offset + j] == 0.0f);
            continue;
        }
        const int ent = is_entity_side(t[i].name);
        size_t count = ent && t[i].numel <= 64 ? t[i].numel : ent ? 9 : 3;
        size_t big = 0;
        for (size_t j = 1; j < t[i].numel; j++)
            if (fabsf(g[t[i].offset + j]) > fabsf(g[t[i].offset + big])) big = j;
        for (size_t k = 0; k < count; k++) {
            size_t at = t[i].numel <= 64 && ent ? k : k == 0 ? big : (size_t)(urand() * t[i].numel);
            float *x = P + t[i].offset + at, x0 = *x;
            double s[4];
            const float dx[4] = {2 * h, h, -h, -2 * h};
            for (int j = 0; j < 4; j++) {
                *x = x0 + dx[j];
                s[j] = loss_of(m, &tb.b, key, 0, NULL);
            }
            *x = x0;
            double num = (-s[0] + 8 * s[1] - 8 * s[2] + s[3]) / (12.0 * h), ana = g[t[i].offset + at];
            checked++;
            entity_checked += ent;
            if (fabs(num - ana) > 3e-4 + 3e-3 * fabs(num)) {
                if (bad < 10) print_error("%s[%zu]: analytic %.7g numeric %.7g\n", t[i].name, at, ana, num);
                bad++;
            }
        }
    }
    print_message("%s ERNIE%s%s: %d gradients checked (%d of the entity side), %d off\n",
                  type == KMODEL_BERT ? "BERT" : "ALBERT", dropout > 0 ? " with dropout" : "",
                  width ? " with a projected entity stream" : "", checked, entity_checked, bad);
    assert_int_equal(bad, 0);
    free(g);
    kmodel_free(m);
}

static void test_gradcheck_bert(void **state) { (void)state; gradcheck(KMODEL_BERT, 0, 0); }
static void test_gradcheck_dropout(void **state) { (void)state; gradcheck(KMODEL_BERT, 0.1, 0); }
static void test_gradcheck_width(void **state) { (void)state; gradcheck(KMODEL_BERT, 0, 8); }
static void test_gradcheck_albert(void **state) { (void)state; gradcheck(KMODEL_ALBERT, 0, 0); }
static void test_gradcheck_no_dea(void **state)
{
    (void)state;
    dea_on = 0;
    gradcheck(KMODEL_BERT, 0, 0);
    dea_on = 1;
}
static void test_gradcheck_weight(void **state)
{
    (void)state;
    dea_weight = 0.3;
    gradcheck(KMODEL_BERT, 0, 0);
    dea_weight = 1.0;
}

/* knowledge.dea_weight w: the total is mlm + nsp + w dea, the dEA head's
 * gradient is w times the weight-1 model's (w = 0.25: exact in binary), the
 * forward and the MLM head's gradient unchanged. */
static void test_dea_weight(void **state)
{
    (void)state;
    kmodel *a = new_model(KMODEL_BERT, 0, 0);
    dea_weight = 0.25;
    kmodel *b = new_model(KMODEL_BERT, 0, 0);
    dea_weight = 1.0;
    const size_t numel = kmodel_numel(a);
    memcpy(kmodel_param_data(b), kmodel_param_data(a), numel * sizeof(float));
    tbatch tb;
    make_batch(&tb);
    kstep_result ra, rb;
    kmodel_zero_grad(a);
    kmodel_zero_grad(b);
    loss_of(a, &tb.b, 5, 1, &ra);
    loss_of(b, &tb.b, 5, 1, &rb);
    const double dea = kstep_value(&rb, "dea_loss");
    assert_true(dea > 0 && dea == kstep_value(&ra, "dea_loss"));
    assert_true(kstep_value(&rb, "mlm_loss") == kstep_value(&ra, "mlm_loss"));
    double want = kstep_value(&rb, "mlm_loss") + kstep_value(&rb, "nsp_loss") + 0.25 * dea;
    assert_true(fabs(rb.loss - want) < 1e-9 * fabs(want));
    assert_true(fabs(ra.loss - rb.loss - 0.75 * dea) < 1e-9 * fabs(ra.loss));
    for (int i = 0; i < rb.n; i++)
        if (!strcmp(rb.t[i].name, "dea_loss")) assert_true(rb.t[i].weight == 0.25);
    int n, scaled = 0, same = 0;
    const ktensor *t = kmodel_params(a, &n);
    const float *ga = kmodel_grad_data(a), *gb = kmodel_grad_data(b);
    for (int i = 0; i < n; i++) {
        const int head = !strncmp(t[i].name, "cls.predictions_ent.", 20), mlm = !strcmp(t[i].name, "cls.predictions.bias");
        for (size_t j = 0; j < t[i].numel && (head || mlm); j++) {
            const float x = ga[t[i].offset + j], y = gb[t[i].offset + j];
            if (head) assert_true(y == 0.25f * x), scaled += x != 0.0f;
            if (mlm) assert_true(y == x), same += x != 0.0f;
        }
    }
    assert_true(scaled > 0 && same > 0);
    kmodel_free(a);
    kmodel_free(b);
}

static void test_dea_terms(void **state)
{
    (void)state;
    kmodel *m = new_model(KMODEL_BERT, 0, 0);
    tbatch tb;
    make_batch(&tb);
    kstep_result r;
    loss_of(m, &tb.b, 1, 0, &r);
    int found = 0;
    for (int i = 0; i < r.n; i++) {
        if (!strcmp(r.t[i].name, "dea_loss")) found++, assert_true(r.t[i].count == 4 && r.t[i].weight == 1.0);
        if (!strcmp(r.t[i].name, "dea_acc")) found++, assert_true(r.t[i].count == 4);
        if (!strcmp(r.t[i].name, "dea_candidates")) found++, assert_true(r.t[i].sum == 4); /* 3, 4, 5, 7 */
    }
    assert_int_equal(found, 3);
    /* the total: mlm + nsp + dea */
    double want = kstep_value(&r, "mlm_loss") + kstep_value(&r, "nsp_loss") + kstep_value(&r, "dea_loss");
    assert_true(fabs(r.loss - want) < 1e-9 * fabs(want));
    /* no entities: no dEA term counts, the loss is finite */
    tb.b.entity_ids = NULL, tb.b.entity_labels = NULL;
    loss_of(m, &tb.b, 1, 0, &r);
    assert_true(isfinite(r.loss));
    for (int i = 0; i < r.n; i++)
        if (!strcmp(r.t[i].name, "dea_loss")) assert_true(r.t[i].count == 0);
    /* an id outside the table fails with a message naming the row */
    make_batch(&tb);
    tb.ent[TL + 5] = KE;
    assert_int_not_equal(kmodel_forward(m, &tb.b, KMODE_TRAIN, 1), 0);
    assert_non_null(strstr(kmodel_error(m), "row 1 position 5"));
    kmodel_free(m);
}

static void test_frozen_table(void **state)
{
    (void)state;
    kmodel *m = new_model(KMODEL_BERT, 0.1, 8);
    tbatch tb;
    make_batch(&tb);
    const ktensor *e = find(m, "ernie.entity_embeddings.weight");
    float *P = kmodel_param_data(m);
    float *t0 = malloc(e->numel * sizeof(float));
    memcpy(t0, P + e->offset, e->numel * sizeof(float));
    int n;
    const ktensor *t = kmodel_params(m, &n);
    kopt_config c = {.type = KOPT_ADAMW, .lr = 1e-2, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-6, .weight_decay = 0.1,
                     .warmup_steps = 0, .schedule = KSCHED_CONSTANT, .clip_norm = 1.0, .accumulation = 1};
    char err[256];
    kopt *o = kopt_new(&c, t, n, P, kmodel_grad_data(m), kmodel_numel(m), err, sizeof err);
    assert_non_null(o);
    const ktensor *q = find(m, "ernie.encoder.layer.2.attention_ent.self.query.weight");
    float q0 = P[q->offset];
    double first = 0, last = 0;
    for (int s = 1; s <= 30; s++) {
        kmodel_zero_grad(m);
        kstep_result r;
        loss_of(m, &tb.b, (uint64_t)s, 1, &r);
        if (s == 1) first = kstep_value(&r, "dea_loss");
        last = kstep_value(&r, "dea_loss");
        double lr, gn;
        assert_int_equal(kopt_step(o, s, 30, &lr, &gn), 0);
    }
    assert_memory_equal(P + e->offset, t0, e->numel * sizeof(float));
    assert_true(P[q->offset] != q0);
    print_message("dEA loss on one batch: %.4f -> %.4f after 30 steps\n", first, last);
    assert_true(last < 0.5 * first);
    kopt_free(o);
    free(t0);
    kmodel_free(m);
}

/* The text side alone: an ERNIE model on a batch without entities computes
 * exactly (bitwise) the plain model with its text tensors, the text export's
 * promise (docs/ernie.md); and its entity side changes the result once
 * entities are given. */
static void test_text_alone(void **state)
{
    (void)state;
    for (int type = KMODEL_BERT; type <= KMODEL_ALBERT; type++) {
        kmodel *e = new_model(type, 0, 0);
        kmodel_config c = config(type, 0, 0);
        c.fusion_layers = 0;
        char err[256] = "";
        kmodel *p = kmodel_new(&c, TB, TL, TP, 1, err, sizeof err);
        assert_non_null(p);
        int n;
        const ktensor *t = kmodel_params(p, &n);
        for (int i = 0; i < n; i++) {
            const ktensor *src = find(e, t[i].name);
            assert_int_equal(src->numel, t[i].numel);
            memcpy(kmodel_param_data(p) + t[i].offset, kmodel_param_data(e) + src->offset, t[i].numel * sizeof(float));
        }
        tbatch tb;
        make_batch(&tb);
        tb.b.entity_ids = NULL, tb.b.entity_labels = NULL;
        assert_int_equal(kmodel_forward(e, &tb.b, KMODE_EVAL, 0), 0);
        assert_int_equal(kmodel_forward(p, &tb.b, KMODE_EVAL, 0), 0);
        int M1, M2;
        const float *l1 = kmodel_mlm_logits_all(e, &M1), *l2 = kmodel_mlm_logits_all(p, &M2);
        assert_int_equal(M1, M2);
        assert_memory_equal(l1, l2, (size_t)M1 * TV * sizeof(float));
        make_batch(&tb);
        assert_int_equal(kmodel_forward(e, &tb.b, KMODE_EVAL, 0), 0);
        l1 = kmodel_mlm_logits_all(e, &M1);
        assert_true(memcmp(l1, l2, (size_t)M1 * TV * sizeof(float)) != 0);
        kmodel_free(p);
        kmodel_free(e);
    }
}

static void test_threads(void **state)
{
    (void)state;
    float *g[3];
    double loss[3];
    for (int k = 0; k < 3; k++) {
        omp_set_num_threads(k + 1);
        rng_state = 0x13198A2E03707344ull; /* the same entity vectors */
        kmodel *m = new_model(KMODEL_BERT, 0.1, 8);
        tbatch tb;
        make_batch(&tb);
        kmodel_zero_grad(m);
        loss[k] = loss_of(m, &tb.b, 5, 1, NULL);
        g[k] = malloc(kmodel_numel(m) * sizeof(float));
        memcpy(g[k], kmodel_grad_data(m), kmodel_numel(m) * sizeof(float));
        if (k) {
            assert_true(loss[k] == loss[0]);
            assert_memory_equal(g[k], g[0], kmodel_numel(m) * sizeof(float));
        }
        kmodel_free(m);
    }
    for (int k = 0; k < 3; k++) free(g[k]);
    omp_set_num_threads(2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),        cmocka_unit_test(test_gradcheck_bert),
        cmocka_unit_test(test_gradcheck_dropout), cmocka_unit_test(test_gradcheck_width),
        cmocka_unit_test(test_gradcheck_albert), cmocka_unit_test(test_dea_terms),
        cmocka_unit_test(test_frozen_table),    cmocka_unit_test(test_text_alone),
        cmocka_unit_test(test_threads),         cmocka_unit_test(test_gradcheck_weight),
        cmocka_unit_test(test_dea_weight),      cmocka_unit_test(test_gradcheck_no_dea),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
