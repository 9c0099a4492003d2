/* trainer/ernie.c: ERNIE's knowledge fusion (Zhang et al. 2019) inside a
 * BERT / ALBERT kmodel: the entity side of the fusion layers and the
 * denoising entity auto-encoder (dEA) head. model.c calls these at fixed
 * points of its pass (model_impl.h); docs/ernie.md has the recipe.
 *
 * Names: N packed tokens, NE aligned tokens (a token whose entity input is
 * not row 0), B rows, L sequence length, H hidden width, I FFN width, DE
 * the entity vectors' width, W the entity stream's width (DE unless set),
 * ENH entity heads, NF fusion layers (the last NF of NL; fusion layer f is
 * layer l = NL - NF + f), KE rows of the entity table.
 *
 * Entity rows. The NE aligned tokens are packed per sequence (eoffs), in
 * token order: entity row k belongs to token row erow[k] and reads table
 * row eid[k]. So the entity self-attention of a sequence sees exactly its
 * aligned tokens (the entity mask of upstream's padded layout).
 *
 * Fusion layer f (layer l), after the text attention's h1 = LN1(...) (N, H):
 *   ein  = f == 0 ? e0 = table[eid] (W != DE: e0 Wp^T + bp) : eout of f - 1
 *   eatt = f == 0 ? ein                       (upstream's "mix" layer)
 *        : LN_e1(ein + drop(attn_e(ein) Weo^T + beo))  (entity self-attention)
 *   pre_j = h1_j Wt^T + bt (+ eatt_k We^T when token j is entity row k)
 *   ffact = gelu(pre)          (the text FFN continues: out = LN2(h1 + ...))
 *   eout_k = LN_e2(eatt_k + drop(ffact_j Wfe^T + bfe))  (not in the last
 *            fusion layer: nothing reads it)
 * which is upstream's BertLayer / BertLayerMix but for dense_ent's bias:
 * upstream feeds zeros through dense_ent on unaligned tokens, so its bias
 * reaches every token as bt does; kiln leaves it out and bt carries it.
 * Then a fusion layer on a text without entities is exactly the text
 * layer, and the text encoder exports as a plain BertModel / AlbertModel
 * (ALBERT's shared bt could not absorb per-layer biases). Dropout sites: SITE_ENT + 4 f + {0 entity attention probabilities,
 * 1 entity attention output, 2 entity output}, element index = the aligned
 * token's (etok), so masks do not depend on a row's place in the batch.
 * ALBERT: no dropout on the entity output (as on its FFN output).
 *
 * dEA head at the NA tokens whose original entity (entity_labels) is not
 * row 0: x (NA, H) -> dense (DE) -> gelu -> LayerNorm -> logits = h C^T
 * (NA, NC) against the NC candidates = the distinct nonzero table rows of
 * the batch's entity inputs and labels, ascending; C their (frozen)
 * vectors; cross-entropy against the original entity's candidate index.
 * Terms: dea_loss (weight knowledge.dea_weight in the total loss and the
 * gradient), dea_acc, dea_copy_acc (the share of targets whose input
 * is their original: what copying the input would get right; dEA noise
 * makes it about 0.8), dea_candidates (NC per batch). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "trainer/kernels.h"
#include "trainer/model_impl.h"

#define SITE_ENT ((uint64_t)1 << 22)

static uint64_t ekey(uint64_t key, int f, int k) { return krng_key(key, 'D', SITE_ENT + 4 * (uint64_t)f + (uint64_t)k, 0); }

/* Dropout of the entity output: ALBERT has none after its FFN, so none here. */
static float p_out(const kmodel *m, int train) { return train && m->type != KMODEL_ALBERT ? m->p_hidden : 0.0f; }

size_t kernie_carve(kmodel *m, float *base, size_t at)
{
    const size_t N = (size_t)m->maxB * m->L, B = (size_t)m->maxB, L = m->L;
    const size_t W = m->W, I = m->I, H = m->H, DE = m->DE, ENH = m->ENH;
    const int bw = !m->inference;
#define CARVE(ptr, n) KCARVE(base, at, ptr, n)
    CARVE(m->e0, N * DE);
    if (m->W != m->DE) CARVE(m->e0m, N * W);
    CARVE(m->fscr, N * I);
    CARVE(m->fscr2, N * I);
    for (int f = 0; f < m->NF; f++) {
        fusion_act *a = &m->fa[f];
        if (f > 0) { /* entity self-attention */
            CARVE(a->eqkv, N * 3 * W);
            CARVE(a->eprobs, B * ENH * L * L);
            CARVE(a->ectx, N * W);
            CARVE(a->exs1, N * W);
            CARVE(a->em1, N);
            CARVE(a->er1, N);
            CARVE(a->eatt, N * W);
        }
        if (f + 1 < m->NF) {
            CARVE(a->exs2, N * W);
            CARVE(a->em2, N);
            CARVE(a->er2, N);
            CARVE(a->eout, N * W);
        }
    }
    if (bw) {
        CARVE(m->geA, N * W);
        CARVE(m->geB, N * W);
        CARVE(m->geC, N * W);
        CARVE(m->geD, N * W);
        CARVE(m->geQKV, N * 3 * W);
    }
    if (m->s.heads & KHEAD_DEA) {
        CARVE(m->ax, N * H);
        CARVE(m->apre, N * DE);
        CARVE(m->aa, N * DE);
        CARVE(m->ah, N * DE);
        CARVE(m->amean, N);
        CARVE(m->arstd, N);
        CARVE(m->aloss, N);
        CARVE(m->agscale, N);
        if (bw) {
            CARVE(m->adh, N * DE);
            CARVE(m->ada, N * DE);
            CARVE(m->adx, N * H);
        }
    }
#undef CARVE
    return at;
}

void kernie_free(kmodel *m)
{
    free(m->erow);
    free(m->eid);
    free(m->eoffs);
    free(m->etok);
    free(m->arow);
    free(m->alabel);
    free(m->cand);
    free(m->cmap);
    free(m->acorrect);
    free(m->cvec);
    free(m->alog);
}

static int oom(kmodel *m, const char *what)
{
    snprintf(m->err, sizeof m->err, "out of memory for %s", what);
    return EX_OSERR;
}

/* Grows *p to hold n floats (contents not kept). */
static int grow(float **p, size_t *cap, size_t n)
{
    if (n <= *cap) return 0;
    size_t c = *cap ? *cap : 4096;
    while (c < n) c *= 2;
    float *q = aligned_alloc(64, (c * sizeof(float) + 63) / 64 * 64);
    if (!q) return -1;
    free(*p);
    *p = q;
    *cap = c;
    return 0;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int kernie_load_batch(kmodel *m, const ksample_batch *b)
{
    const size_t N = (size_t)m->maxB * m->L;
    if (!m->erow) {
        m->erow = malloc(N * sizeof(int32_t));
        m->eid = malloc(N * sizeof(int32_t));
        m->eoffs = malloc(((size_t)m->maxB + 1) * sizeof(int32_t));
        m->etok = malloc(N * sizeof(uint64_t));
        m->arow = malloc(N * sizeof(int32_t));
        m->alabel = malloc(N * sizeof(int32_t));
        m->cand = malloc((size_t)m->KE * sizeof(int32_t));
        m->cmap = malloc((size_t)m->KE * sizeof(int32_t));
        m->acorrect = malloc(N);
        if (!m->erow || !m->eid || !m->eoffs || !m->etok || !m->arow || !m->alabel || !m->cand || !m->cmap ||
            !m->acorrect)
            return oom(m, "the entity rows");
        for (int i = 0; i < m->KE; i++) m->cmap[i] = -1;
    }
    const int B = m->B, L = b->L;
    const int dea = (m->s.heads & KHEAD_DEA) != 0;
    int NE = 0, NA = 0, NC = 0, copy = 0;
    for (int r = 0; r < B; r++) {
        m->eoffs[r] = NE;
        for (int t = 0; t < b->lengths[r]; t++) {
            const size_t i = (size_t)r * L + t;
            const int32_t e = b->entity_ids ? b->entity_ids[i] : 0;
            const int32_t y = dea && b->entity_labels ? b->entity_labels[i] : 0;
            if (e < 0 || e >= m->KE || y < 0 || y >= m->KE) {
                snprintf(m->err, sizeof m->err,
                         "row %d position %d: entity %d / label %d is not a row of the entity table (0 to %d)", r, t,
                         e, y, m->KE - 1);
                for (int c = 0; c < NC; c++) m->cmap[m->cand[c]] = -1;
                return EX_DATAERR;
            }
            const int row = m->offs[r] + t;
            if (e > 0) {
                m->erow[NE] = row;
                m->eid[NE] = e;
                m->etok[NE] = m->tok[row];
                NE++;
            }
            if (y > 0) {
                m->arow[NA] = row;
                m->alabel[NA] = y; /* the table row for now; the candidate index below */
                NA++;
                copy += e == y;
            }
            /* candidates: every entity of the batch, input or label */
            if (dea && e > 0 && m->cmap[e] < 0) m->cmap[e] = 0, m->cand[NC++] = e;
            if (y > 0 && m->cmap[y] < 0) m->cmap[y] = 0, m->cand[NC++] = y;
        }
    }
    m->eoffs[B] = NE;
    qsort(m->cand, (size_t)NC, sizeof *m->cand, cmp_i32);
    for (int c = 0; c < NC; c++) m->cmap[m->cand[c]] = c;
    for (int a = 0; a < NA; a++) m->alabel[a] = m->cmap[m->alabel[a]];
    for (int c = 0; c < NC; c++) m->cmap[m->cand[c]] = -1; /* ready for the next batch */
    if (dea && (grow(&m->alog, &m->alog_cap, (size_t)NA * NC) || grow(&m->cvec, &m->cvec_cap, (size_t)NC * m->DE)))
        return oom(m, "the dEA logits");
    m->NE = NE;
    m->NA = NA;
    m->NC = NC;
    m->NAcopy = copy;
    return 0;
}

/* dst[k] = src[rows[k]] for k < n; rows of width C. */
static void gather(float *dst, const float *src, const int32_t *rows, int n, int C)
{
#pragma omp parallel for schedule(static) if ((size_t)n * C >= 65536)
    for (int k = 0; k < n; k++) memcpy(dst + (size_t)k * C, src + (size_t)rows[k] * C, (size_t)C * sizeof(float));
}

/* The entity side's input of fusion layer f (ein). */
static const float *entity_in(kmodel *m, int f)
{
    if (f > 0) return m->fa[f - 1].eout;
    return m->W != m->DE ? m->e0m : m->e0;
}

static kattn_dims ent_dims(const kmodel *m, int f, float pa, uint64_t key)
{
    kattn_dims d = {.B = m->B, .NH = m->ENH, .D = m->W / m->ENH, .L = m->L, .causal = 0, .pdrop = pa,
                    .key = ekey(key, f, 0), .seq = m->seq};
    return d;
}

const float *kernie_forward_pre(kmodel *m, int l, int train, uint64_t key)
{
    const int f = l - (m->NL - m->NF), NE = m->NE, N = m->N, W = m->W, I = m->I;
    const float *P = m->params;
    const float ph = train ? m->p_hidden : 0.0f, pa = train ? m->p_attn : 0.0f;
    const fusion_off *o = &m->fw[f];
    fusion_act *a = &m->fa[f];
    if (f == 0 && NE > 0) {
        gather(m->e0, P + m->ent, m->eid, NE, m->DE);
        if (m->W != m->DE) kdense_forward(m->e0m, m->e0, P + m->emap_w, P + m->emap_b, NULL, NE, m->DE, W);
    }
    const float *ein = entity_in(m, f);
    if (!o->att) {
        a->eatt = (float *)ein;
    } else if (NE > 0) {
        kdense_forward(a->eqkv, ein, P + o->eqkv_w, P + o->eqkv_b, NULL, NE, W, 3 * W);
        kattn_dims d = ent_dims(m, f, pa, key);
        kattention_forward(a->ectx, a->eprobs, m->scratch, a->eqkv, m->eoffs, &d);
        kepi_ln e1 = {.x = a->exs1, .res = ph > 0 ? ein : NULL, .p = ph, .key = ekey(key, f, 1), .tok = m->etok,
                      .y = a->eatt, .mean = a->em1, .rstd = a->er1, .g = P + o->eln1_g, .b = P + o->eln1_b, .C = W,
                      .eps = m->eps};
        kdense_forward_ex(a->exs1, a->ectx, P + o->eao_w, P + o->eao_b, ph > 0 ? NULL : ein, NE, W, W,
                          kepi_layernorm, &e1);
    }
    /* fres = eatt We^T on the aligned tokens, 0 on the others: the FFN's pre-activation adds it
     * (no entities: nothing to add) */
    if (NE == 0) return NULL;
    float *fres = m->fscr2, *ew = m->fscr;
    kdense_forward(ew, a->eatt, P + o->fe_w, NULL, NULL, NE, W, I);
    memset(fres, 0, (size_t)N * I * sizeof(float));
#pragma omp parallel for schedule(static) if ((size_t)NE * I >= 65536)
    for (int k = 0; k < NE; k++)
        memcpy(fres + (size_t)m->erow[k] * I, ew + (size_t)k * I, (size_t)I * sizeof(float));
    return fres;
}

void kernie_forward_post(kmodel *m, int l, int train, uint64_t key)
{
    const int f = l - (m->NL - m->NF), NE = m->NE, W = m->W, I = m->I;
    const fusion_off *o = &m->fw[f];
    fusion_act *a = &m->fa[f];
    if (!o->out || NE == 0) return;
    const float *P = m->params;
    const float p2 = p_out(m, train);
    gather(m->fscr, m->la[l].ffact, m->erow, NE, I);
    kepi_ln e2 = {.x = a->exs2, .res = p2 > 0 ? a->eatt : NULL, .p = p2, .key = ekey(key, f, 2), .tok = m->etok,
                  .y = a->eout, .mean = a->em2, .rstd = a->er2, .g = P + o->eln2_g, .b = P + o->eln2_b, .C = W,
                  .eps = m->eps};
    kdense_forward_ex(a->exs2, m->fscr, P + o->feo_w, P + o->feo_b, p2 > 0 ? NULL : a->eatt, NE, I, W,
                      kepi_layernorm, &e2);
}

/* geD holds d eout of layer l (from layer l + 1's kernie_backward_pre);
 * leaves d eatt's residual share in geA and d ffact's entity share in gI. */
int kernie_backward_post(kmodel *m, int l, uint64_t key)
{
    const int f = l - (m->NL - m->NF), NE = m->NE, N = m->N, W = m->W, I = m->I;
    const fusion_off *o = &m->fw[f];
    fusion_act *a = &m->fa[f];
    if (!o->out || NE == 0) return 0;
    const float *P = m->params;
    float *G = m->grads;
    const float p2 = p_out(m, 1);
    klayernorm_backward(m->geA, 0, G + o->eln2_g, G + o->eln2_b, m->geD, a->exs2, a->em2, a->er2, P + o->eln2_g, NE,
                        W); /* geA = d exs2: d eatt's residual share, and the branch's */
    const float *dbr = m->geA;
    if (p2 > 0) {
        kdropout_rows(m->geB, m->geA, NULL, NE, W, p2, ekey(key, f, 2), m->etok);
        dbr = m->geB;
    }
    gather(m->fscr, m->la[l].ffact, m->erow, NE, I);
    kdense_backward(m->fscr2, 0, G + o->feo_w, G + o->feo_b, dbr, m->fscr, P + o->feo_w, NE, I, W);
    memset(m->gI, 0, (size_t)N * I * sizeof(float));
#pragma omp parallel for schedule(static) if ((size_t)NE * I >= 65536)
    for (int k = 0; k < NE; k++)
        memcpy(m->gI + (size_t)m->erow[k] * I, m->fscr2 + (size_t)k * I, (size_t)I * sizeof(float));
    return 1;
}

/* gI = d pre-activation of layer l's FFN; writes d eout of layer l - 1 into
 * geD (f > 0), or the projection's gradients (f == 0). */
void kernie_backward_pre(kmodel *m, int l, uint64_t key)
{
    const int f = l - (m->NL - m->NF), NE = m->NE, W = m->W, I = m->I;
    const fusion_off *o = &m->fw[f];
    fusion_act *a = &m->fa[f];
    const float *P = m->params;
    float *G = m->grads;
    if (NE == 0) return;
    gather(m->fscr, m->gI, m->erow, NE, I);
    /* geA = d eatt (+= the entity output's residual share, left in geA by kernie_backward_post) */
    kdense_backward(m->geA, o->out, G + o->fe_w, NULL, m->fscr, a->eatt, P + o->fe_w, NE, W, I);
    const float *ein = entity_in(m, f);
    const float *dein = m->geA;
    if (o->att) {
        const float ph = m->p_hidden;
        klayernorm_backward(m->geB, 0, G + o->eln1_g, G + o->eln1_b, m->geA, a->exs1, a->em1, a->er1, P + o->eln1_g,
                            NE, W); /* geB = d exs1 */
        const float *dao = m->geB;
        if (ph > 0) {
            kdropout_rows(m->geC, m->geB, NULL, NE, W, ph, ekey(key, f, 1), m->etok);
            dao = m->geC;
        }
        kdense_backward(m->geA, 0, G + o->eao_w, G + o->eao_b, dao, a->ectx, P + o->eao_w, NE, W, W); /* d ectx */
        kattn_dims d = ent_dims(m, f, m->p_attn, key);
        kattention_backward(m->geQKV, m->scratch, m->geA, a->eqkv, a->eprobs, m->eoffs, &d);
        kdense_backward(m->geB, 1, G + o->eqkv_w, G + o->eqkv_b, m->geQKV, ein, P + o->eqkv_w, NE, W, 3 * W);
        dein = m->geB; /* d ein: the residual and the attention's */
    }
    if (f > 0) {
        memcpy(m->geD, dein, (size_t)NE * W * sizeof(float));
    } else if (m->W != m->DE) { /* the table is frozen: only the projection learns */
        kdense_backward(NULL, 0, G + m->emap_w, G + m->emap_b, dein, m->e0, P + m->emap_w, NE, m->DE, W);
    }
}

static kmlm_head dea_head(kmodel *m)
{
    float *P = m->params, *G = m->grads;
    kmlm_head k = {
        .M = m->NA, .H = m->H, .E = m->DE, .V = m->NC, .act = m->act, .eps = m->eps,
        .w = P + m->dea_w, .b = P + m->dea_b, .ln_g = P + m->dea_ln_g, .ln_b = P + m->dea_ln_b,
        .emb = m->cvec, .bias = NULL,
        .dw = G ? G + m->dea_w : NULL, .db = G ? G + m->dea_b : NULL, .dln_g = G ? G + m->dea_ln_g : NULL,
        .dln_b = G ? G + m->dea_ln_b : NULL, .demb = NULL, .dbias = NULL, /* the candidates' vectors are frozen */
        .pre = m->apre, .a = m->aa, .h = m->ah, .mean = m->amean, .rstd = m->arstd, .logits = m->alog,
        .dh = m->adh, .da = m->ada,
    };
    return k;
}

void kernie_dea_forward(kmodel *m, const float *h)
{
    if (m->NA == 0) return;
    gather(m->ax, h, m->arow, m->NA, m->H);
    gather(m->cvec, m->params + m->ent, m->cand, m->NC, m->DE);
    kmlm_head k = dea_head(m);
    kmlm_head_forward(&k, m->ax);
}

void kernie_dea_loss(kmodel *m, int train, float loss_scale, kstep_result *r)
{
    const int NA = m->NA;
    const double n = kmodel_norm_of(m, "dea_loss", NA), w = m->c.dea_weight;
    double s = 0, correct = 0;
    if (NA > 0) {
        for (int a = 0; a < NA; a++) m->agscale[a] = n > 0 ? (float)(w * loss_scale / n) : 0.0f;
        kxent(m->alog, NULL, m->aloss, m->acorrect, m->alabel, train ? m->agscale : NULL, NA, m->NC);
        for (int a = 0; a < NA; a++) s += m->aloss[a], correct += m->acorrect[a];
    }
    kstep_term(r, "dea_loss", s, NA, w);
    kstep_term(r, "dea_acc", correct, NA, 0.0);
    kstep_term(r, "dea_copy_acc", m->NAcopy, NA, 0.0); /* the baseline of copying the (noisy) input */
    kstep_term(r, "dea_candidates", m->NC, NA > 0 ? 1 : 0, 0.0);
}

void kernie_dea_backward(kmodel *m, float *gA)
{
    const int NA = m->NA, H = m->H;
    if (NA == 0) return;
    kmlm_head k = dea_head(m);
    kmlm_head_backward(&k, m->adx, 0, m->ax);
#pragma omp parallel for schedule(static) if ((size_t)NA * H >= 32768)
    for (int a = 0; a < NA; a++) { /* a token is one target at most */
        float *d = gA + (size_t)m->arow[a] * H;
        const float *s = m->adx + (size_t)a * H;
        for (int c = 0; c < H; c++) d[c] += s[c];
    }
}
