/* trainer/electra.c: ELECTRA pretraining (Clark et al. 2020) as one kmodel:
 * a small masked-LM generator and a discriminator trained together, the
 * token, position and type embeddings (and their LayerNorm) shared.
 *
 * What it is: the pair's construction over one parameter arena and the
 * step that joins the two towers (model.c runs each tower's pass). What it
 * is not: a third encoder; both towers are model.c's ELECTRA encoder.
 *
 * The arena (one registry, state_dict order):
 *   [discriminator: electra.embeddings.* (shared), electra.embeddings_project.*
 *    when E != H, electra.encoder.layer.*, discriminator_predictions.*]
 *   [generator: generator.electra.embeddings_project.* when E != G,
 *    generator.electra.encoder.layer.*, generator.generator_predictions.*,
 *    generator.generator_lm_head.bias]
 * The generator tower's embedding entries point at the discriminator's
 * slices, so both towers' backward passes add into one gradient there (the
 * generator's tied decoder included). The exporter writes the two Hugging
 * Face folders from these names (ElectraForPreTraining, ElectraForMaskedLM).
 *
 * A step, batch b of masked inputs (rtd: 85% [MASK] / 15% kept):
 *   1. generator forward on b; logits at the masked slots (M, V);
 *   2. at each masked slot (row r, slot p, weight > 0) a replacement drawn
 *      from softmax(logits + bias) (temperature 1) by inverse CDF with the
 *      uniform number (i P + p) of stream krng_key(key, 'S', 0, 0), i the
 *      row's stream position (b->index; r without one): a pure function of
 *      the step's key, the logits and the row's slot, whatever the thread
 *      count or the row's place in the batch (data-parallel ranks); no
 *      gradient flows through the draw;
 *   3. the corrupted batch: b's ids with the draws at the masked positions;
 *      token label 1 where the draw differs from the original id (a masked
 *      position whose draw equals the original counts as original), 0 at
 *      every other real token;
 *   4. discriminator forward on it.
 * Loss = generator MLM + lambda * discriminator BCE over real tokens
 * (lambda = model.disc_weight, 50); backward: discriminator, then generator.
 * Dropout keys: generator krng_key(key, 'G', 0, 0), discriminator
 * krng_key(key, 'R', 0, 0). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "trainer/kernels.h"
#include "trainer/model_impl.h"

struct kelectra {
    kmodel *gen, *disc;       /* towers over the pair's arenas */
    float lambda;             /* disc_weight */
    int maxB, L;
    int32_t *ids;             /* (max_B, L) corrupted input ids */
    int32_t *labels;          /* (max_B, L) 1 replaced, 0 original, -1 past the row's length */
    float *scratch;           /* (threads, V) softmax numerators of one slot */
    int scratch_threads;
    int fwd;                  /* 0 none, 1 eval, 2 train (a forward of both towers happened) */
};

void kelectra_free(struct kelectra *e)
{
    if (!e) return;
    kmodel_free(e->gen);
    kmodel_free(e->disc);
    free(e->ids);
    free(e->labels);
    free(e->scratch);
    free(e);
}

kmodel *kelectra_gen(const kmodel *m) { return m->el ? m->el->gen : NULL; }
kmodel *kelectra_disc(const kmodel *m) { return m->el ? m->el->disc : NULL; }

#define FAILE(...)                                              \
    do {                                                        \
        if (err && errlen) snprintf(err, errlen, __VA_ARGS__);  \
        kmodel_free(m);                                         \
        return NULL;                                            \
    } while (0)

kmodel *kelectra_create(const kmodel_config *c, const kmodel_spec *s, char *err, size_t errlen, int registry_only)
{
    kmodel *m = calloc(1, sizeof *m);
    struct kelectra *e = calloc(1, sizeof *e);
    if (!m || !e) {
        free(m);
        free(e);
        if (err && errlen) snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->el = e;
    if (s->heads & ~(KHEAD_MLM | KHEAD_TOKEN))
        FAILE("model: ELECTRA's pretraining pair has the generator's MLM head and the discriminator's token head "
              "only (heads 0x%x asked)", s->heads);
    if (!(c->disc_weight > 0)) FAILE("model.disc_weight: %g is not > 0", c->disc_weight);
    kmodel_config gc = kmodel_generator_config(c);
    if (gc.hidden_size < 1 || gc.num_hidden_layers < 1 || gc.num_attention_heads < 1 || gc.intermediate_size < 1)
        FAILE("model: the generator's shape is not set (generator_hidden_size %d, layers %d, heads %d, "
              "intermediate %d; the config reader derives them)",
              gc.hidden_size, gc.num_hidden_layers, gc.num_attention_heads, gc.intermediate_size);
    kmodel_spec ds = *s, gs = *s;
    ds.heads = KHEAD_TOKEN;
    ds.P = 0;
    gs.heads = KHEAD_MLM;
    char sub[256];
    ktower_place dp = {.prefix = "", .start = 0, .shared = NULL};
    e->disc = kmodel_create_tower(c, &ds, &dp, sub, sizeof sub, registry_only);
    if (!e->disc) FAILE("%s", sub);
    kmodel *d = e->disc;
    const size_t shared[5] = {d->word, d->pos, d->typ, d->eln_g, d->eln_b};
    ktower_place gp = {.prefix = "generator.", .start = d->numel, .shared = shared};
    e->gen = kmodel_create_tower(&gc, &gs, &gp, sub, sizeof sub, registry_only);
    if (!e->gen) FAILE("generator: %s", sub);
    kmodel *g = e->gen;

    /* the pair as a model: the discriminator's shape, the generator's slots */
    m->c = *c;
    m->s = *s;
    m->s.heads = KHEAD_MLM | KHEAD_TOKEN;
    m->s.P = g->P;
    m->type = KMODEL_ELECTRA;
    m->inference = d->inference;
    m->maxB = d->maxB, m->L = d->L, m->P = g->P;
    m->V = d->V, m->E = d->E, m->H = d->H, m->I = d->I, m->NH = d->NH, m->D = d->D, m->NL = d->NL, m->NG = d->NG;
    m->T = d->T, m->act = d->act, m->eps = d->eps, m->map = d->map, m->mlm_act = g->mlm_act;
    m->word = d->word, m->pos = d->pos, m->typ = d->typ, m->eln_g = d->eln_g, m->eln_b = d->eln_b;
    e->lambda = (float)c->disc_weight;
    e->maxB = d->maxB, e->L = d->L;

    m->nt = d->nt + g->nt - g->nshared;
    m->t = malloc((size_t)m->nt * sizeof *m->t);
    if (!m->t) FAILE("out of memory");
    memcpy(m->t, d->t, (size_t)d->nt * sizeof *m->t);
    memcpy(m->t + d->nt, g->t + g->nshared, (size_t)(g->nt - g->nshared) * sizeof *m->t);
    m->numel = g->numel > d->numel ? g->numel : d->numel;
    if (registry_only) return m;

    m->params = aligned_alloc(64, (m->numel * sizeof(float) + 63) / 64 * 64);
    m->grads = m->inference ? NULL : aligned_alloc(64, (m->numel * sizeof(float) + 63) / 64 * 64);
    if (!m->params || (!m->inference && !m->grads))
        FAILE("out of memory: parameters and gradients need %.1f MB", 2.0 * m->numel * 4 / 1e6);
    memset(m->params, 0, m->numel * sizeof(float));
    if (m->grads) memset(m->grads, 0, m->numel * sizeof(float));
    d->params = g->params = m->params;
    d->grads = g->grads = m->grads;
    size_t BL = (size_t)e->maxB * e->L;
    e->ids = malloc(BL * sizeof(int32_t));
    e->labels = malloc(BL * sizeof(int32_t));
    if (!e->ids || !e->labels) FAILE("out of memory");
    return m;
}

size_t kelectra_activation_bytes(const kmodel *m)
{
    const struct kelectra *e = m->el;
    return kmodel_activation_bytes(e->gen) + kmodel_activation_bytes(e->disc) +
           (size_t)e->maxB * e->L * 2 * sizeof(int32_t) + (size_t)e->scratch_threads * m->V * sizeof(float);
}

static int fail_from(kmodel *m, const kmodel *tower, const char *what, int rc)
{
    snprintf(m->err, sizeof m->err, "%s: %s", what, kmodel_error(tower));
    return rc;
}

/* The draw at one masked slot: inverse CDF of softmax(logits + bias) at u in
 * [0, 1), in double over the kernels' exp (the same on every ISA). p is V
 * floats of scratch. */
static int32_t draw(const float *logits, const float *bias, int V, double u, float *p)
{
    float mx = -INFINITY;
    for (int j = 0; j < V; j++) {
        float z = logits[j] + bias[j];
        if (z > mx) mx = z;
    }
    double sum = 0;
    for (int j = 0; j < V; j++) {
        p[j] = kexp(logits[j] + bias[j] - mx);
        sum += p[j];
    }
    double target = u * sum, cum = 0;
    for (int j = 0; j < V; j++) {
        cum += p[j];
        if (cum > target) return j;
    }
    for (int j = V - 1; j > 0; j--) /* rounding left target at the end: the last token with mass */
        if (p[j] > 0) return j;
    return 0;
}

/* Steps 2 and 3 of the file comment: e->ids and e->labels for batch b. */
static int corrupt(kmodel *m, const ksample_batch *b, uint64_t key)
{
    struct kelectra *e = m->el;
    kmodel *g = e->gen;
    const int B = b->B, L = b->L, V = m->V;
    int nt = omp_get_max_threads();
    if (nt > e->scratch_threads) {
        float *s = malloc((size_t)nt * V * sizeof(float));
        if (!s) {
            snprintf(m->err, sizeof m->err, "out of memory for the generator's sampling scratch");
            return EX_SOFTWARE;
        }
        free(e->scratch);
        e->scratch = s;
        e->scratch_threads = nt;
    }
    for (int r = 0; r < B; r++)
        for (int t = 0; t < L; t++) {
            size_t i = (size_t)r * L + t;
            e->ids[i] = b->input_ids[i];
            e->labels[i] = t < b->lengths[r] ? 0 : -1;
        }
    if (!g->M) return 0;
    const float *bias = g->params + g->mlm_bias;
    const uint64_t skey = krng_key(key, 'S', 0, 0);
    const int M = g->M;
#pragma omp parallel for schedule(dynamic, 4)
    for (int i = 0; i < M; i++) {
        /* slot i of the packed masked list: its row and slot in b */
        int r = 0;
        while (g->mstart[r + 1] <= i) r++;
        const int p = i - g->mstart[r];
        const size_t slot = (size_t)r * b->P + p;
        if (!(b->masked_weights[slot] > 0)) continue;
        /* keyed by the row's stream position: the same draw wherever the row
         * sits (a data-parallel rank's share of the batch included) */
        const uint64_t row = b->index && b->index[r] >= 0 ? (uint64_t)b->index[r] : (uint64_t)r;
        double u = (double)(krng_at(skey, row * (uint64_t)b->P + (uint64_t)p) >> 11) * 0x1.0p-53;
        float *scr = e->scratch + (size_t)omp_get_thread_num() * V;
        int32_t y = draw(g->logits + (size_t)i * V, bias, V, u, scr);
        size_t at = (size_t)r * L + b->masked_positions[slot];
        e->ids[at] = y;
        e->labels[at] = y != b->masked_ids[slot];
    }
    return 0;
}

int kelectra_forward(kmodel *m, const ksample_batch *b, int mode, uint64_t key)
{
    struct kelectra *e = m->el;
    e->fwd = 0;
    m->err[0] = '\0';
    int rc = kmodel_forward(e->gen, b, mode, krng_key(key, 'G', 0, 0));
    if (rc) return fail_from(m, e->gen, "generator", rc);
    if (!(b->masked_positions && b->masked_ids && b->masked_weights && b->n_masked)) {
        snprintf(m->err, sizeof m->err, "ELECTRA needs masked positions in the batch (data.objectives rtd)");
        return EX_DATAERR;
    }
    rc = corrupt(m, b, key);
    if (rc) return rc;
    ksample_batch cb = *b;
    cb.input_ids = e->ids;
    cb.token_labels = e->labels;
    rc = kmodel_forward(e->disc, &cb, mode, krng_key(key, 'R', 0, 0));
    if (rc) return fail_from(m, e->disc, "discriminator", rc);
    e->fwd = mode == KMODE_TRAIN ? 2 : 1;
    return 0;
}

/* copies term `from` of s into r as `to` with weight w (skipped when absent) */
static void take_term(kstep_result *r, const kstep_result *s, const char *from, const char *to, double w)
{
    for (int i = 0; i < s->n; i++) {
        if (strcmp(s->t[i].name, from) || r->n >= KTERM_MAX) continue;
        kterm *t = &r->t[r->n++];
        *t = s->t[i];
        snprintf(t->name, sizeof t->name, "%s", to);
        t->weight = w;
    }
}

int kelectra_loss(kmodel *m, float loss_scale, kstep_result *r)
{
    struct kelectra *e = m->el;
    kstep_result rg, rd, tmp;
    if (!r) r = &tmp;
    if (!e->fwd) {
        snprintf(m->err, sizeof m->err, "kmodel_loss without a new forward pass");
        return EX_SOFTWARE;
    }
    int rc = kmodel_loss(e->gen, loss_scale, &rg);
    if (rc) return fail_from(m, e->gen, "generator", rc);
    rc = kmodel_loss(e->disc, loss_scale * e->lambda, &rd);
    if (rc) return fail_from(m, e->disc, "discriminator", rc);
    memset(r, 0, sizeof *r);
    r->tokens = rd.tokens;
    take_term(r, &rg, "mlm_loss", "mlm_loss", 1.0);
    take_term(r, &rg, "mlm_acc", "mlm_acc", 0.0);
    take_term(r, &rd, "token_loss", "disc_loss", e->lambda);
    take_term(r, &rd, "token_acc", "disc_acc", 0.0);
    take_term(r, &rd, "token_precision", "disc_precision", 0.0);
    take_term(r, &rd, "token_recall", "disc_recall", 0.0);
    take_term(r, &rd, "replaced_fraction", "replaced_fraction", 0.0);
    kstep_total_loss(r);
    return 0;
}

int kelectra_loss_counts(kmodel *m, kstep_result *c)
{
    struct kelectra *e = m->el;
    kstep_result cg, cd;
    if (!e->fwd) {
        snprintf(m->err, sizeof m->err, "kmodel_loss_counts without a new forward pass");
        return EX_SOFTWARE;
    }
    int rc = kmodel_loss_counts(e->gen, &cg);
    if (rc) return fail_from(m, e->gen, "generator", rc);
    if ((rc = kmodel_loss_counts(e->disc, &cd))) return fail_from(m, e->disc, "discriminator", rc);
    /* the towers' own names: mlm_loss (generator), token_loss (discriminator) */
    memset(c, 0, sizeof *c);
    c->tokens = cd.tokens;
    take_term(c, &cg, "mlm_loss", "mlm_loss", 1.0);
    take_term(c, &cd, "token_loss", "token_loss", 1.0);
    return 0;
}

void kelectra_set_loss_counts(kmodel *m, const kstep_result *global)
{
    kmodel_set_loss_counts(m->el->gen, global);
    kmodel_set_loss_counts(m->el->disc, global);
}

int kelectra_backward(kmodel *m)
{
    struct kelectra *e = m->el;
    if (e->fwd != 2) {
        snprintf(m->err, sizeof m->err, "kmodel_backward without a training forward and loss");
        return EX_SOFTWARE;
    }
    int rc = kmodel_backward(e->disc);
    if (rc) return fail_from(m, e->disc, "discriminator", rc);
    rc = kmodel_backward(e->gen);
    if (rc) return fail_from(m, e->gen, "generator", rc);
    return 0;
}

const int32_t *kmodel_rtd_input(const kmodel *m, const int32_t **labels)
{
    if (!m->el || !m->el->fwd) return NULL;
    if (labels) *labels = m->el->labels;
    return m->el->ids;
}
