/* tests/ref/trainer_ref.c: helper program of the trainer's PyTorch parity tests
 * (tests/integration/test_torch_parity.sh, tests/ref/torch_parity.py;
 * test_ernie_parity.sh, tests/ref/ernie_parity.py) and of its speed check.
 * Not part of kiln.
 *
 *   kiln_trainer_ref parity DIR
 *     For eleven small models, no dropout:
 *       albert             ALBERT (gelu_new, 4 layers over 2 weight groups), MLM + SOP
 *       bert               BERT (gelu, 2 layers), MLM + sentence
 *       bert_cls           BERT, classifier with 3 labels (last row unlabelled)
 *       albert_reg         ALBERT, regression (num_labels 1; row 1 has a NaN target)
 *       bert_preln_causal  BERT (gelu_new, 3 layers), pre-LN layers + final
 *                          LayerNorm, causal attention, MLM + sentence
 *       electra            ELECTRA's pair (gelu_new): discriminator E 8, H 16,
 *                          2 layers; generator G 12, 2 layers (both towers
 *                          project E -> their width); MLM + replaced-token BCE
 *       electra_eq         ELECTRA's pair with E = G = 8, H 16, one layer each
 *                          (the generator without embeddings_project)
 *       electra_cls        ELECTRA's discriminator (E 8, H 16, gelu_new) with
 *                          the classification head, 3 labels
 *       gpt2               GPT2LMHeadModel (gelu_new, H 24, 3 heads, 2
 *                          layers, n_inner 40, V 83 walked in chunks of 32)
 *       distilbert         DistilBertForMaskedLM (gelu, dim 24, 3 heads, 2
 *                          layers, hidden_dim 40, V 79; token types in the
 *                          batch, which DistilBERT does not read), MLM
 *       distilbert_cls     DistilBertForSequenceClassification (the same
 *                          encoder; pre_classifier, ReLU, classifier), 3
 *                          labels (last row unlabelled)
 *     writes DIR/<name>.manifest.json (kregistry_manifest, trainer/registry.h)
 *     and DIR/<name>.safetensors holding:
 *       <param name>          the initial parameters (Hugging Face names)
 *       batch.*               the batch (I32; masked_weights, targets F32), padded
 *                             B x L; the masked slots only with the MLM head,
 *                             targets only for regression
 *       out.mlm_logits        (M, V) eval logits at the masked slots, row-major
 *                             over (row, slot < n_masked)       [MLM head]
 *       out.sent_logits       (B, 2)                            [sentence head]
 *       out.class_logits      (B, num_labels)                   [classifier]
 *       out.token_logits      (B, L) eval discriminator logits, 0 past a
 *                             row's length                      [ELECTRA's pair]
 *       out.lm_logits         (B, L, V) eval LM logits, 0 past a row's length:
 *                             kmodel_hidden(NL) (after ln_f) times the word
 *                             embeddings, in double here (the head never
 *                             holds N x V; its loss and gradient are checked
 *                             through out.losses and grad.*)  [LM head]
 *       out.gen_logits        (B, L, V) the same by trainer/generate.c's
 *                             incremental decoding (half a row in one feed,
 *                             the rest one id at a time)        [GPT-2]
 *       out.losses            F64: the loss terms of the training pass, in the
 *                             order of the metadata "loss_terms" (e.g.
 *                             "mlm_loss,sop_loss", "cls_loss", "mse",
 *                             "mlm_loss,disc_loss"), their weights in
 *                             "loss_weights"
 *       out.loss              F64 (1): the pass's loss, sum of weight * term
 *       grad.<param name>     gradients of the sum of the loss terms
 *       adamw.<param name>    parameters after 5 AdamW steps on the batch
 *       lamb.<param name>     parameters after 5 LAMB steps from the same start
 *       adamw.losses, lamb.losses  F64 (5) loss before each step
 *     ELECTRA's pair also writes the draws of each pass (kmodel_rtd_input after
 *     the forward), which the PyTorch side feeds to its discriminator:
 *       eval.rtd_ids, eval.rtd_labels    I32 (B, L) of the eval forward (key 0)
 *       train.rtd_ids, train.rtd_labels  I32 (B, L) of the gradient pass (key 1)
 *       adamw.rtd_ids, adamw.rtd_labels, lamb.*  I32 (5, B, L), one per step
 *       <pass>.rtd_u          F64 (B, P) / (5, B, P): the uniform number of each
 *                             masked slot, by electra.c's formula (stream
 *                             krng_key(key, 'S', 0, 0), number r P + p), so
 *                             the PyTorch side can redo the inverse-CDF draws
 *     and the configs as metadata strings.
 *
 *   kiln_trainer_ref ernie DIR
 *     ERNIE (trainer/ernie.c) for ernie_parity.py, products pinned to fp32,
 *     no dropout, an entity table of 11 rows (row 0 = none; rows 1.. filled
 *     here, uniform in [-1, 1), as kmodel_init leaves the table zero):
 *       ernie_bert    BERT (gelu, H 16, 3 layers, the last 2 fusion layers),
 *                     entity vectors of 6 projected to a stream of 8, 2
 *                     entity heads; MLM + NSP + dEA
 *       ernie_albert  ALBERT (gelu_new, E 8, H 16, 3 layers sharing one
 *                     group, all 3 fusion layers), the stream the vectors'
 *                     width 6, 3 entity heads, LayerNorm eps 1e-3; MLM + SOP
 *                     + dEA
 *     on 4 rows of length 14 (make_entities: padding, a row of 5
 *     alignments, 4 of them entity inputs, a row without, a dEA-dropped and
 *     two replaced alignments), writes DIR/<name>.manifest.json and
 *     DIR/<name>.safetensors holding the initial parameters (the filled
 *     table too), batch.* as parity's plus batch.entity_ids and
 *     batch.entity_labels (I32 (B, L), table rows), out.mlm_logits,
 *     out.sent_logits, out.losses / out.loss (terms mlm_loss, nsp_loss or
 *     sop_loss, dea_loss), out.dea_stats (F64: dea_acc, dea_candidates),
 *     inference.mlm_logits, .sent_logits, .losses, .loss (the evaluation of
 *     an inference model, spec.inference, on the same parameters),
 *     grad.*, adamw.* after 3 AdamW steps (parity's schedule), adamw.losses
 *     (F64 (3)), and the config (the knowledge fields too) and "precision"
 *     as metadata.
 *
 *   kiln_trainer_ref bench [STEPS] [--model albert|bert] [--precision fp32|bf16]
 *     Times training steps (zero_grad + forward/backward + AdamW) at the
 *     benchmark configuration: ALBERT V 30000, E 128, H 256, 4 layers sharing
 *     one group, 4 heads, FFN 1024, seq 128, batch 16, 20 masked positions per
 *     row, SOP, no dropout; prints one JSON object (ms per step, tokens/s,
 *     GFLOP/s, OpenBLAS sgemm peak on the same threads, memory). With one
 *     thread, the shares of peak by CPU time see through a busy machine. */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "trainer/bf16.h"
#include "trainer/distill.h"
#include "trainer/generate.h"
#include "trainer/kernels.h"
#include "trainer/model.h"
#include "trainer/optim.h"
#include "trainer/registry.h"
#include "trainer/safetensors.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
/* CPU time of the process (all threads), to see through a busy machine. */
static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- batches ----------------------------------------------------------------- */

typedef struct hbatch {
    ksample_batch b;
    int32_t *ids, *types32, *lengths, *n_masked, *pos, *mids, *labels;
    int32_t *ents, *elabs; /* (B, L) ERNIE's entity inputs and dEA labels (make_entities), else NULL */
    uint8_t *types;
    float *w, *targets;
} hbatch;

static void batch_free(hbatch *h)
{
    free(h->ids), free(h->types32), free(h->lengths), free(h->n_masked), free(h->pos), free(h->mids);
    free(h->labels), free(h->types), free(h->w), free(h->targets), free(h->ents), free(h->elabs);
}

/* A deterministic batch: [CLS] at 0, random ids in [5, V), token type 1 on
 * the second half, pad (0) after the length; `full` = every row length L and
 * P masked slots, else varied lengths and counts, one real slot of weight 0
 * and one row without sentence label. Labels are 0 / 1 (sentence). */
static void make_batch(hbatch *h, int B, int L, int P, int V, int full, uint64_t seed)
{
    memset(h, 0, sizeof *h);
    h->ids = calloc((size_t)B * L, 4), h->types32 = calloc((size_t)B * L, 4), h->types = calloc((size_t)B * L, 1);
    h->lengths = calloc((size_t)B, 4), h->n_masked = calloc((size_t)B, 4), h->labels = calloc((size_t)B, 4);
    h->pos = calloc((size_t)B * P, 4), h->mids = calloc((size_t)B * P, 4), h->w = calloc((size_t)B * P, 4);
    uint64_t key = krng_key(seed, 'B', 0, 0), k = 0;
    for (int r = 0; r < B; r++) {
        int len = full || r == 0 ? L : L / 3 + (int)(krng_at(key, k++) % (uint64_t)(L - L / 3));
        h->lengths[r] = len;
        for (int t = 0; t < len; t++) {
            h->ids[r * L + t] = t == 0 ? 2 : 5 + (int)(krng_at(key, k++) % (uint64_t)(V - 5));
            h->types[r * L + t] = t > len / 2;
            h->types32[r * L + t] = t > len / 2;
        }
        int nm = full ? P : 1 + (int)(krng_at(key, k++) % (uint64_t)P);
        if (nm > len - 1) nm = len - 1;
        /* distinct positions in [1, len), ascending */
        int chosen = 0;
        for (int t = 1; t < len && chosen < nm; t++) {
            int left = len - t, need = nm - chosen;
            if ((int)(krng_at(key, k++) % (uint64_t)left) < need) {
                h->pos[r * P + chosen] = t;
                h->mids[r * P + chosen] = 5 + (int)(krng_at(key, k++) % (uint64_t)(V - 5));
                h->w[r * P + chosen] = 1.0f;
                chosen++;
            }
        }
        h->n_masked[r] = nm;
        h->labels[r] = (int)(krng_at(key, k++) & 1);
    }
    if (!full && B > 2) {
        h->labels[B - 1] = -1;
        if (h->n_masked[1] > 1) h->w[1 * P + 0] = 0.0f;
    }
    ksample_batch *b = &h->b;
    b->version = KSAMPLE_BATCH_VERSION;
    b->objectives = KOBJ_MLM | KOBJ_SOP;
    b->B = B, b->L = L, b->P = P, b->capacity = B;
    b->pad_id = 0, b->cls_id = 2, b->sep_id = 3, b->mask_id = 4;
    b->input_ids = h->ids, b->token_type_ids = h->types, b->lengths = h->lengths, b->n_masked = h->n_masked;
    b->masked_positions = h->pos, b->masked_ids = h->mids, b->masked_weights = h->w, b->labels = h->labels;
}

/* Turns h into a labelled-example batch (KOBJ_CLASSIFY) for num_labels
 * outputs: classes in [0, num_labels) with the last row unlabelled (-1), or,
 * for regression (num_labels 1), targets in [-2, 2) with row 1 NaN (no
 * target) and no labels. The masked slots stay but are not read. */
static void make_labels(hbatch *h, int num_labels, uint64_t seed)
{
    const int B = h->b.B;
    uint64_t key = krng_key(seed, 'Y', 0, 0);
    h->b.objectives = KOBJ_CLASSIFY;
    for (int r = 0; r < B; r++)
        h->labels[r] = num_labels > 1 && r < B - 1 ? (int)(krng_at(key, (uint64_t)r) % (uint64_t)num_labels) : -1;
    if (num_labels == 1) {
        h->targets = malloc((size_t)B * sizeof(float));
        for (int r = 0; r < B; r++)
            h->targets[r] = (float)((double)(krng_at(key, (uint64_t)r) >> 11) * 0x1p-53 * 4.0 - 2.0);
        if (B > 1) h->targets[1] = NAN;
        h->b.targets = h->targets;
    }
}

/* Turns h into ELECTRA's input (KOBJ_RTD): the label of each masked slot is
 * the original token there, and the input holds [MASK] (id 4) at the slot,
 * except every 7th slot of the batch, which keeps the original token (the
 * sampler's 15% branch). */
static void make_rtd(hbatch *h)
{
    ksample_batch *b = &h->b;
    int k = 0;
    b->objectives = KOBJ_RTD;
    for (int r = 0; r < b->B; r++)
        for (int p = 0; p < h->n_masked[r]; p++, k++) {
            int32_t *at = &h->ids[r * b->L + h->pos[r * b->P + p]];
            h->mids[r * b->P + p] = *at;
            if (k % 7 != 3) *at = b->mask_id;
        }
}

/* The uniform number of each masked slot (B, P) of a forward with key `key`,
 * as electra.c draws it: number r P + p of stream krng_key(key, 'S', 0, 0). */
static void rtd_uniforms(double *u, const ksample_batch *b, uint64_t key)
{
    const uint64_t skey = krng_key(key, 'S', 0, 0);
    for (int i = 0; i < b->B * b->P; i++) u[i] = (double)(krng_at(skey, (uint64_t)i) >> 11) * 0x1.0p-53;
}

/* ---- parity ------------------------------------------------------------------ */

typedef struct outset {
    kst_tensor *t;
    int n, cap;
    char **names;
    void **blobs;
    int nb;
} outset;

static void put(outset *o, const char *name, const char *dtype, int ndim, const int64_t *shape, const void *data,
                size_t bytes)
{
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 256;
        o->t = realloc(o->t, (size_t)o->cap * sizeof *o->t);
        o->names = realloc(o->names, (size_t)o->cap * sizeof *o->names);
    }
    void *copy = malloc(bytes ? bytes : 1);
    memcpy(copy, data, bytes);
    o->blobs = realloc(o->blobs, (size_t)(o->nb + 1) * sizeof *o->blobs);
    o->blobs[o->nb++] = copy;
    kst_tensor *t = &o->t[o->n];
    memset(t, 0, sizeof *t);
    o->names[o->n] = strdup(name);
    t->name = o->names[o->n];
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->data = copy;
    t->nbytes = bytes;
    o->n++;
}

static void put_params(outset *o, const char *prefix, kmodel *m, const float *arena)
{
    int n;
    const ktensor *t = kmodel_params(m, &n);
    for (int i = 0; i < n; i++) {
        char name[200];
        snprintf(name, sizeof name, "%s%s", prefix, t[i].name);
        put(o, name, "F32", t[i].ndim, t[i].shape, arena + t[i].offset, t[i].numel * sizeof(float));
    }
}

static void outset_free(outset *o)
{
    for (int i = 0; i < o->n; i++) free(o->names[i]);
    for (int i = 0; i < o->nb; i++) free(o->blobs[i]);
    free(o->t), free(o->names), free(o->blobs);
}

/* steps optimizer steps from init on h's batch (dropout key = step); the loss
 * before each step into losses and, for ELECTRA's pair (rids not NULL), each
 * step's discriminator input, labels (B, L) and slot uniforms (B, P). */
static int run_opt(kmodel *m, const float *init, const kopt_config *oc, const hbatch *h, double *losses, int steps,
                   int64_t total, int32_t *rids, int32_t *rlab, double *ru)
{
    const size_t BL = (size_t)h->b.B * h->b.L, BP = (size_t)h->b.B * h->b.P;
    size_t n = kmodel_numel(m);
    memcpy(kmodel_param_data(m), init, n * sizeof(float));
    int nt;
    const ktensor *t = kmodel_params(m, &nt);
    char err[256];
    kopt *o = kopt_new(oc, t, nt, kmodel_param_data(m), kmodel_grad_data(m), n, err, sizeof err);
    if (!o) {
        fprintf(stderr, "kopt_new: %s\n", err);
        return 1;
    }
    for (int s = 1; s <= steps; s++) {
        kstep_result r;
        kmodel_zero_grad(m);
        if (kmodel_forward_backward(m, &h->b, (uint64_t)s, 1.0f, &r)) {
            fprintf(stderr, "forward_backward: %s\n", kmodel_error(m));
            return 1;
        }
        losses[s - 1] = r.loss;
        if (rids) {
            const int32_t *lab, *ids = kmodel_rtd_input(m, &lab);
            if (!ids) {
                fprintf(stderr, "kmodel_rtd_input: no draws after the forward\n");
                return 1;
            }
            memcpy(rids + (s - 1) * BL, ids, BL * sizeof(int32_t));
            memcpy(rlab + (s - 1) * BL, lab, BL * sizeof(int32_t));
            rtd_uniforms(ru + (s - 1) * BP, &h->b, (uint64_t)s);
        }
        if (kopt_step(o, s, total, NULL, NULL)) {
            fprintf(stderr, "kopt_step failed\n");
            return 1;
        }
    }
    kopt_free(o);
    return 0;
}

/* One model of the parity set: its config, its spec (heads, shapes, options)
 * and the batch shape (B rows of length L, P masked slots per row). */
typedef struct parity_case {
    const char *tag;
    kmodel_config c;
    kmodel_spec s;
} parity_case;

/* Writes DIR/<tag>.manifest.json (kregistry_manifest of m). */
static int write_manifest(const char *dir, const char *tag, const kmodel *m)
{
    char path[1024], err[256];
    snprintf(path, sizeof path, "%s/%s.manifest.json", dir, tag);
    char *j = kregistry_manifest(m);
    if (!j) {
        fprintf(stderr, "kregistry_manifest: out of memory\n");
        return 1;
    }
    int rc = kst_write_bytes(path, j, strlen(j), err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    free(j);
    return rc;
}

/* The draws of the last forward (ELECTRA's pair): <pass>.rtd_ids, .rtd_labels, .rtd_u. */
static int put_rtd(outset *o, const char *pass, const kmodel *m, const ksample_batch *b, uint64_t key)
{
    const int32_t *lab, *ids = kmodel_rtd_input(m, &lab);
    if (!ids) {
        fprintf(stderr, "%s: kmodel_rtd_input: no draws after the forward\n", pass);
        return 1;
    }
    char name[64];
    int64_t sBL[2] = {b->B, b->L}, sBP[2] = {b->B, b->P};
    snprintf(name, sizeof name, "%s.rtd_ids", pass);
    put(o, name, "I32", 2, sBL, ids, (size_t)b->B * b->L * 4);
    snprintf(name, sizeof name, "%s.rtd_labels", pass);
    put(o, name, "I32", 2, sBL, lab, (size_t)b->B * b->L * 4);
    double *u = malloc((size_t)b->B * b->P * sizeof(double));
    rtd_uniforms(u, b, key);
    snprintf(name, sizeof name, "%s.rtd_u", pass);
    put(o, name, "F64", 2, sBP, u, (size_t)b->B * b->P * sizeof(double));
    free(u);
    return 0;
}

/* <pre>mlm_logits (M, V) and <pre>sent_logits (B, 2) of the last evaluation
 * (the heads of `heads` among KHEAD_MLM and KHEAD_SENTENCE). */
static void put_pretrain_logits(outset *o, const char *pre, const kmodel *m, const hbatch *h, int heads)
{
    char name[64];
    const int B = h->b.B, V = kmodel_get_config(m)->vocab_size;
    if (heads & KHEAD_MLM) {
        int M = 0;
        for (int b = 0; b < B; b++) M += h->n_masked[b];
        float *lg = malloc((size_t)M * V * sizeof(float));
        for (int b = 0, i = 0; b < B; b++)
            for (int p = 0; p < h->n_masked[b]; p++, i++)
                memcpy(lg + (size_t)i * V, kmodel_mlm_logits(m, b, p), (size_t)V * sizeof(float));
        int64_t sMV[2] = {M, V};
        snprintf(name, sizeof name, "%smlm_logits", pre);
        put(o, name, "F32", 2, sMV, lg, (size_t)M * V * 4);
        free(lg);
    }
    if (heads & KHEAD_SENTENCE) {
        float *sl = malloc((size_t)B * 2 * sizeof(float));
        for (int b = 0; b < B; b++) memcpy(sl + b * 2, kmodel_sentence_logits(m, b), 2 * sizeof(float));
        int64_t sB2[2] = {B, 2};
        snprintf(name, sizeof name, "%ssent_logits", pre);
        put(o, name, "F32", 2, sB2, sl, (size_t)B * 2 * 4);
        free(sl);
    }
}

/* The loss terms of a pass (those of weight > 0, in r's order): their names
 * and weights for the metadata (comma-separated), and a line for the log. */
typedef struct term_names {
    char terms[KTERM_MAX * (KTERM_NAME_MAX + 1)], weights[KTERM_MAX * 32], said[512];
} term_names;

/* <pre>losses (F64, the terms' values) and <pre>loss (F64 (1)) of pass r; names into *tn. */
static void put_losses(outset *o, const char *pre, const kstep_result *r, term_names *tn)
{
    char name[64];
    double losses[KTERM_MAX];
    int nl = 0;
    tn->terms[0] = tn->weights[0] = tn->said[0] = 0;
    for (int i = 0; i < r->n; i++) {
        if (!(r->t[i].weight > 0)) continue;
        losses[nl] = r->t[i].sum / r->t[i].count;
        if (nl) strcat(tn->terms, ","), strcat(tn->weights, ",");
        strcat(tn->terms, r->t[i].name);
        snprintf(tn->weights + strlen(tn->weights), sizeof tn->weights - strlen(tn->weights), "%.17g",
                 r->t[i].weight);
        size_t k = strlen(tn->said);
        snprintf(tn->said + k, sizeof tn->said - k, " %s %.6f", r->t[i].name, losses[nl]);
        nl++;
    }
    int64_t sL[1] = {nl}, s1[1] = {1};
    snprintf(name, sizeof name, "%slosses", pre);
    put(o, name, "F64", 1, sL, losses, (size_t)nl * sizeof(double));
    snprintf(name, sizeof name, "%sloss", pre);
    put(o, name, "F64", 1, s1, &r->loss, sizeof r->loss);
    size_t k = strlen(tn->said);
    snprintf(tn->said + k, sizeof tn->said - k, " loss %.6f", r->loss);
}

static int parity_one(const char *dir, const parity_case *pc)
{
    const kmodel_config *c = &pc->c;
    const int B = pc->s.max_B, L = pc->s.L, heads = pc->s.heads;
    const int P = heads & KHEAD_MLM ? pc->s.P : 4; /* batch slots (unread without the MLM head) */
    const int NC = heads & KHEAD_CLASSIFY ? pc->s.num_labels : 0;
    const int pair = c->type == KMODEL_ELECTRA && (heads & KHEAD_MLM) && (heads & KHEAD_TOKEN);
    char err[256];
    kmodel *m = kmodel_create(c, &pc->s, err, sizeof err);
    if (!m) {
        fprintf(stderr, "%s: kmodel_create: %s\n", pc->tag, err);
        return 1;
    }
    if (write_manifest(dir, pc->tag, m)) return 1;
    kmodel_init(m, 1234);
    hbatch h;
    make_batch(&h, B, L, P, c->vocab_size, 0, 99);
    if (NC) make_labels(&h, NC, 98);
    if (pair) make_rtd(&h);
    outset o = {0};
    size_t numel = kmodel_numel(m);
    float *init = malloc(numel * sizeof(float));
    memcpy(init, kmodel_param_data(m), numel * sizeof(float));
    put_params(&o, "", m, init);
    int64_t sBL[2] = {B, L}, sBP[2] = {B, P}, sB[1] = {B};
    put(&o, "batch.input_ids", "I32", 2, sBL, h.ids, (size_t)B * L * 4);
    put(&o, "batch.token_type_ids", "I32", 2, sBL, h.types32, (size_t)B * L * 4);
    put(&o, "batch.lengths", "I32", 1, sB, h.lengths, (size_t)B * 4);
    if (heads & KHEAD_MLM) {
        put(&o, "batch.n_masked", "I32", 1, sB, h.n_masked, (size_t)B * 4);
        put(&o, "batch.masked_positions", "I32", 2, sBP, h.pos, (size_t)B * P * 4);
        put(&o, "batch.masked_ids", "I32", 2, sBP, h.mids, (size_t)B * P * 4);
        put(&o, "batch.masked_weights", "F32", 2, sBP, h.w, (size_t)B * P * 4);
    }
    put(&o, "batch.labels", "I32", 1, sB, h.labels, (size_t)B * 4);
    if (h.targets) put(&o, "batch.targets", "F32", 1, sB, h.targets, (size_t)B * 4);

    /* eval logits of each head */
    kstep_result r;
    if (kmodel_evaluate(m, &h.b, &r)) {
        fprintf(stderr, "%s: forward: %s\n", pc->tag, kmodel_error(m));
        return 1;
    }
    const int V = c->vocab_size;
    put_pretrain_logits(&o, "out.", m, &h, heads);
    if (NC) {
        float *cl = malloc((size_t)B * NC * sizeof(float));
        for (int b = 0; b < B; b++) memcpy(cl + (size_t)b * NC, kmodel_class_logits(m, b), (size_t)NC * sizeof(float));
        int64_t sBC[2] = {B, NC};
        put(&o, "out.class_logits", "F32", 2, sBC, cl, (size_t)B * NC * 4);
        free(cl);
    }
    if (heads & KHEAD_TOKEN) {
        float *tl = calloc((size_t)B * L, sizeof(float));
        for (int b = 0; b < B; b++)
            for (int t = 0; t < h.lengths[b]; t++) tl[b * L + t] = kmodel_token_logit(m, b, t);
        put(&o, "out.token_logits", "F32", 2, sBL, tl, (size_t)B * L * 4);
        free(tl);
    }
    if (heads & KHEAD_LM) {
        const int H = c->hidden_size;
        const float *hl = kmodel_hidden(m, c->num_hidden_layers);
        int np;
        const ktensor *t = kmodel_params(m, &np);
        const float *wte = kmodel_param_data(m) + t[0].offset; /* the word embeddings come first */
        float *lg = calloc((size_t)B * L * V, sizeof(float));
        const int32_t *offs = kmodel_offsets(m, NULL, NULL);
        for (int b = 0; b < B; b++)
            for (int i = 0; i < h.lengths[b]; i++)
                for (int v = 0; v < V; v++) {
                    double z = 0;
                    for (int k = 0; k < H; k++) z += (double)hl[(size_t)(offs[b] + i) * H + k] * wte[(size_t)v * H + k];
                    lg[((size_t)b * L + i) * V + v] = (float)z;
                }
        int64_t sBLV[3] = {B, L, V};
        put(&o, "out.lm_logits", "F32", 3, sBLV, lg, (size_t)B * L * V * 4);
        if (c->type == KMODEL_GPT2) { /* the same logits by incremental decoding: half a row at once, then 1 by 1 */
            char gerr[256];
            kgen *g = kgen_new(m, L, gerr, sizeof gerr);
            if (!g) {
                fprintf(stderr, "kgen_new: %s\n", gerr);
                return 1;
            }
            memset(lg, 0, (size_t)B * L * V * sizeof(float));
            for (int b = 0; b < B; b++) {
                const int32_t *ids = h.b.input_ids + (size_t)b * L;
                const int n = h.lengths[b], n0 = (n + 1) / 2;
                kgen_reset(g);
                int rc = kgen_feed(g, ids, n0, lg + (size_t)b * L * V);
                for (int i = n0; i < n && !rc; i++) rc = kgen_feed(g, ids + i, 1, lg + ((size_t)b * L + i) * V);
                if (rc) {
                    fprintf(stderr, "kgen_feed: %s\n", kgen_error(g));
                    return 1;
                }
            }
            kgen_free(g);
            put(&o, "out.gen_logits", "F32", 3, sBLV, lg, (size_t)B * L * V * 4);
        }
        free(lg);
    }
    if (pair && put_rtd(&o, "eval", m, &h.b, 0)) return 1;
    /* gradients of the sum of the loss terms, and the terms */
    kmodel_zero_grad(m);
    if (kmodel_forward_backward(m, &h.b, 1, 1.0f, &r)) {
        fprintf(stderr, "%s: forward_backward: %s\n", pc->tag, kmodel_error(m));
        return 1;
    }
    if (pair && put_rtd(&o, "train", m, &h.b, 1)) return 1;
    term_names tn;
    put_losses(&o, "out.", &r, &tn);
    int64_t s5[1] = {5};
    put_params(&o, "grad.", m, kmodel_grad_data(m));

    /* optimizers: 5 steps of a 10-step schedule with 2 warmup steps */
    kopt_config oc = {.type = KOPT_ADAMW, .lr = 2e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-6,
                      .weight_decay = 0.1, .warmup_steps = 2, .schedule = KSCHED_LINEAR, .min_lr_ratio = 0.1,
                      .clip_norm = 1.0, .accumulation = 1};
    double al[5], ll[5];
    const size_t BL = (size_t)B * L, BP = (size_t)B * P;
    int32_t *rids = pair ? malloc(5 * BL * sizeof(int32_t)) : NULL, *rlab = pair ? malloc(5 * BL * sizeof(int32_t)) : NULL;
    double *ru = pair ? malloc(5 * BP * sizeof(double)) : NULL;
    int64_t s5BL[3] = {5, B, L}, s5BP[3] = {5, B, P};
    if (run_opt(m, init, &oc, &h, al, 5, 10, rids, rlab, ru)) return 1;
    put_params(&o, "adamw.", m, kmodel_param_data(m));
    put(&o, "adamw.losses", "F64", 1, s5, al, sizeof al);
    if (pair) {
        put(&o, "adamw.rtd_ids", "I32", 3, s5BL, rids, 5 * BL * 4);
        put(&o, "adamw.rtd_labels", "I32", 3, s5BL, rlab, 5 * BL * 4);
        put(&o, "adamw.rtd_u", "F64", 3, s5BP, ru, 5 * BP * sizeof(double));
    }
    kopt_config lc = oc;
    lc.type = KOPT_LAMB;
    lc.lr = 2e-2;
    lc.schedule = KSCHED_COSINE;
    if (run_opt(m, init, &lc, &h, ll, 5, 10, rids, rlab, ru)) return 1;
    put_params(&o, "lamb.", m, kmodel_param_data(m));
    put(&o, "lamb.losses", "F64", 1, s5, ll, sizeof ll);
    if (pair) {
        put(&o, "lamb.rtd_ids", "I32", 3, s5BL, rids, 5 * BL * 4);
        put(&o, "lamb.rtd_labels", "I32", 3, s5BL, rlab, 5 * BL * 4);
        put(&o, "lamb.rtd_u", "F64", 3, s5BP, ru, 5 * BP * sizeof(double));
    }
    free(rids), free(rlab), free(ru);

    /* metadata: the configs and the names of out.losses */
    char v[48][KTERM_MAX * (KTERM_NAME_MAX + 1)];
    const char *meta[96];
    int nm = 0;
#define META(k, ...)                                  \
    do {                                              \
        snprintf(v[nm], sizeof v[nm], __VA_ARGS__);   \
        meta[2 * nm] = k;                             \
        meta[2 * nm + 1] = v[nm];                     \
        nm++;                                         \
    } while (0)
    META("model_type", "%s",
         c->type == KMODEL_ALBERT    ? "albert"
         : c->type == KMODEL_ELECTRA ? "electra"
         : c->type == KMODEL_GPT2    ? "gpt2"
         : c->type == KMODEL_DISTILBERT ? "distilbert"
                                     : "bert");
    META("vocab_size", "%d", c->vocab_size);
    META("embedding_size", "%d", c->type == KMODEL_ALBERT || c->type == KMODEL_ELECTRA ? c->embedding_size : c->hidden_size);
    META("hidden_size", "%d", c->hidden_size);
    META("num_hidden_layers", "%d", c->num_hidden_layers);
    META("num_hidden_groups", "%d", c->type == KMODEL_ALBERT ? c->num_hidden_groups : c->num_hidden_layers);
    META("num_attention_heads", "%d", c->num_attention_heads);
    META("intermediate_size", "%d", c->intermediate_size);
    META("max_position_embeddings", "%d", c->max_position_embeddings);
    META("type_vocab_size", "%d", c->type_vocab_size);
    META("hidden_act", "%s", c->hidden_act == KACT_GELU ? "gelu" : "gelu_new");
    META("layer_norm_eps", "%.17g", c->layer_norm_eps);
    META("pad_token_id", "%d", c->pad_token_id);
    META("classifier_dropout", "%.17g", pc->s.classifier_dropout);
    META("loss_terms", "%s", tn.terms);
    META("loss_weights", "%s", tn.weights);
    if (c->type == KMODEL_ELECTRA) {
        META("generator_hidden_size", "%d", c->generator_hidden_size);
        META("generator_num_hidden_layers", "%d", c->generator_num_hidden_layers);
        META("generator_num_attention_heads", "%d", c->generator_num_attention_heads);
        META("generator_intermediate_size", "%d", c->generator_intermediate_size);
        META("disc_weight", "%.17g", c->disc_weight);
    }
    META("opt_lr_adamw", "%.17g", oc.lr);
    META("opt_lr_lamb", "%.17g", lc.lr);
    META("opt_schedule_adamw", "linear");
    META("opt_schedule_lamb", "cosine");
    META("opt_beta1", "%.17g", oc.beta1);
    META("opt_beta2", "%.17g", oc.beta2);
    META("opt_eps", "%.17g", oc.eps);
    META("opt_weight_decay", "%.17g", oc.weight_decay);
    META("opt_warmup_steps", "%d", oc.warmup_steps);
    META("opt_total_steps", "10");
    META("opt_min_lr_ratio", "%.17g", oc.min_lr_ratio);
    META("opt_clip_norm", "%.17g", oc.clip_norm);
#undef META
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, pc->tag);
    int rc = kst_write(path, o.t, o.n, meta, nm, err, sizeof err);
    if (rc) fprintf(stderr, "kst_write: %s\n", err);
    else
        printf("%s: %d tensors,%s\n", path, o.n, tn.said);
    outset_free(&o);
    free(init);
    batch_free(&h);
    kmodel_free(m);
    return rc;
}

static int parity(const char *dir)
{
    const kmodel_config albert = {
        .type = KMODEL_ALBERT, .vocab_size = 97, .embedding_size = 16, .hidden_size = 32, .num_hidden_layers = 4,
        .num_attention_heads = 4, .intermediate_size = 64, .max_position_embeddings = 24, .type_vocab_size = 2,
        .hidden_act = KACT_GELU_NEW, .layer_norm_eps = 1e-12, .num_hidden_groups = 2, .initializer_range = 0.1,
        .pad_token_id = 0};
    const kmodel_config bert = {
        .type = KMODEL_BERT, .vocab_size = 89, .embedding_size = 32, .hidden_size = 32, .num_hidden_layers = 2,
        .num_attention_heads = 2, .intermediate_size = 48, .max_position_embeddings = 20, .type_vocab_size = 2,
        .hidden_act = KACT_GELU, .layer_norm_eps = 1e-12, .num_hidden_groups = 2, .initializer_range = 0.1,
        .pad_token_id = 0};
    kmodel_config bert3 = bert; /* pre-LN causal: 3 layers, gelu_new */
    bert3.num_hidden_layers = bert3.num_hidden_groups = 3;
    bert3.hidden_act = KACT_GELU_NEW;
    /* ELECTRA: gelu_new, so that the heads with a fixed erf GELU (the
     * generator's predictions, the classification head) are told apart from
     * hidden_act; E != H and E != G: both towers project their embeddings */
    const kmodel_config electra = {
        .type = KMODEL_ELECTRA, .vocab_size = 71, .embedding_size = 8, .hidden_size = 16, .num_hidden_layers = 2,
        .num_attention_heads = 2, .intermediate_size = 32, .max_position_embeddings = 20, .type_vocab_size = 2,
        .hidden_act = KACT_GELU_NEW, .layer_norm_eps = 1e-12, .num_hidden_groups = 2, .initializer_range = 0.1,
        .pad_token_id = 0, .generator_hidden_size = 12, .generator_num_hidden_layers = 2,
        .generator_num_attention_heads = 3, .generator_intermediate_size = 24, .disc_weight = 50};
    kmodel_config electra_eq = electra; /* E = G: the generator reads its embeddings unprojected */
    electra_eq.num_hidden_layers = electra_eq.num_hidden_groups = 1;
    electra_eq.generator_hidden_size = 8;
    electra_eq.generator_num_hidden_layers = 1;
    electra_eq.generator_num_attention_heads = 2;
    electra_eq.generator_intermediate_size = 16;
    /* GPT-2: n_inner != 4 n_embd; embeddings = hidden width, no token types or padding row */
    const kmodel_config gpt2 = {
        .type = KMODEL_GPT2, .vocab_size = 83, .embedding_size = 24, .hidden_size = 24, .num_hidden_layers = 2,
        .num_attention_heads = 3, .intermediate_size = 40, .max_position_embeddings = 20, .type_vocab_size = 2,
        .hidden_act = KACT_GELU_NEW, .layer_norm_eps = 1e-5, .num_hidden_groups = 2, .initializer_range = 0.1};
    /* DistilBERT: no token types (the batch has them: they must change nothing), eps 1e-12 */
    const kmodel_config distil = {
        .type = KMODEL_DISTILBERT, .vocab_size = 79, .embedding_size = 24, .hidden_size = 24, .num_hidden_layers = 2,
        .num_attention_heads = 3, .intermediate_size = 40, .max_position_embeddings = 20, .type_vocab_size = 2,
        .hidden_act = KACT_GELU, .layer_norm_eps = 1e-12, .num_hidden_groups = 2, .initializer_range = 0.1,
        .pad_token_id = 0};
    const parity_case cases[] = {
        {"albert", albert, kmodel_spec_pretrain(4, 20, 5, 1)},
        {"bert", bert, kmodel_spec_pretrain(3, 16, 4, 1)},
        {"bert_cls", bert,
         {.heads = KHEAD_CLASSIFY, .max_B = 5, .L = 16, .num_labels = 3, .classifier_dropout = 0}},
        {"albert_reg", albert,
         {.heads = KHEAD_CLASSIFY, .max_B = 4, .L = 20, .num_labels = 1, .classifier_dropout = 0}},
        {"bert_preln_causal", bert3,
         {.heads = KHEAD_MLM | KHEAD_SENTENCE, .max_B = 3, .L = 16, .P = 4, .classifier_dropout = -1, .pre_ln = 1,
          .causal = 1}},
        {"electra", electra,
         {.heads = KHEAD_MLM | KHEAD_TOKEN, .max_B = 4, .L = 16, .P = 4, .classifier_dropout = -1}},
        {"electra_eq", electra_eq,
         {.heads = KHEAD_MLM | KHEAD_TOKEN, .max_B = 3, .L = 12, .P = 3, .classifier_dropout = -1}},
        {"electra_cls", electra,
         {.heads = KHEAD_CLASSIFY, .max_B = 5, .L = 16, .num_labels = 3, .classifier_dropout = 0}},
        {"gpt2", gpt2,
         {.heads = KHEAD_LM, .max_B = 4, .L = 16, .classifier_dropout = -1, .pre_ln = 1, .causal = 1, .lm_chunk = 32}},
        {"distilbert", distil, kmodel_spec_pretrain_of(&distil, 3, 16, 4, 0)},
        {"distilbert_cls", distil,
         {.heads = KHEAD_CLASSIFY, .max_B = 5, .L = 16, .num_labels = 3, .classifier_dropout = 0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (parity_one(dir, &cases[i])) return 1;
    return 0;
}

/* ---- distillation parity ----------------------------------------------------------- */

typedef struct distill_case {
    const char *tag;
    kmodel_config tc, sc;          /* teacher, student */
    kdistill_config d;
    int B, L, P;
    int init_from;                 /* the student from the teacher's layers (kmodel_init_from) */
} distill_case;

static const char *type_name(int t)
{
    return t == KMODEL_ALBERT ? "albert" : t == KMODEL_DISTILBERT ? "distilbert" : "bert";
}

/* Writes DIR/<tag>.safetensors: teacher.<name> and <name> (the student's
 * initial parameters), batch.*, out.losses (F64, the terms of the training
 * pass in the order of metadata loss_terms, weights in loss_weights),
 * out.loss, grad.<name> (the student's gradients, projections included) and
 * out.eval_losses (the terms of an evaluation pass, same order). */
static int distill_one(const char *dir, const distill_case *dc)
{
    char err[512];
    const int B = dc->B, L = dc->L;
    const int all = dc->d.positions == KDISTILL_ALL, Pm = all ? L : dc->P;
    kmodel_spec ts = {.heads = KHEAD_MLM, .max_B = B, .L = L, .P = Pm, .classifier_dropout = -1, .inference = 1};
    kmodel_spec ss = {.heads = KHEAD_MLM, .max_B = B, .L = L, .P = Pm, .classifier_dropout = -1};
    if (dc->d.method == KDISTILL_TINYBERT) ss.fit_width = dc->tc.hidden_size;
    kmodel *t = kmodel_create(&dc->tc, &ts, err, sizeof err), *m = t ? kmodel_create(&dc->sc, &ss, err, sizeof err) : NULL;
    if (!t || !m) {
        fprintf(stderr, "%s: kmodel_create: %s\n", dc->tag, err);
        return 1;
    }
    kmodel_init(t, 77);
    kmodel_init(m, 78);
    if (dc->init_from) {
        int layers[KDISTILL_MAX_LAYERS];
        kdistill_init_layers(dc->tc.num_hidden_layers, dc->sc.num_hidden_layers, layers);
        if (kmodel_init_from(m, t, layers, dc->sc.num_hidden_layers, err, sizeof err)) {
            fprintf(stderr, "%s: init_from: %s\n", dc->tag, err);
            return 1;
        }
    }
    kdistiller *d = kdistill_new(m, t, &dc->d, err, sizeof err);
    if (!d) {
        fprintf(stderr, "%s: kdistill_new: %s\n", dc->tag, err);
        return 1;
    }
    hbatch h;
    make_batch(&h, B, L, dc->P, dc->tc.vocab_size, 0, 97);
    outset o = {0};
    put_params(&o, "teacher.", t, kmodel_param_data(t));
    put_params(&o, "", m, kmodel_param_data(m));
    int64_t sBL[2] = {B, L}, sBP[2] = {B, dc->P}, sB[1] = {B};
    const int P = dc->P;
    put(&o, "batch.input_ids", "I32", 2, sBL, h.ids, (size_t)B * L * 4);
    put(&o, "batch.token_type_ids", "I32", 2, sBL, h.types32, (size_t)B * L * 4);
    put(&o, "batch.lengths", "I32", 1, sB, h.lengths, (size_t)B * 4);
    put(&o, "batch.n_masked", "I32", 1, sB, h.n_masked, (size_t)B * 4);
    put(&o, "batch.masked_positions", "I32", 2, sBP, h.pos, (size_t)B * P * 4);
    put(&o, "batch.masked_ids", "I32", 2, sBP, h.mids, (size_t)B * P * 4);
    put(&o, "batch.masked_weights", "F32", 2, sBP, h.w, (size_t)B * P * 4);
    kstep_result ev, r;
    /* stage: TinyBERT's given stage (not both); step 0 of 1 */
    if (kdistill_step(d, &h.b, 0, 0, 1.0f, 0, 1, &ev)) {
        fprintf(stderr, "%s: eval step: %s\n", dc->tag, kdistill_error(d));
        return 1;
    }
    kmodel_zero_grad(m);
    if (kdistill_step(d, &h.b, 1, 1, 1.0f, 0, 1, &r)) {
        fprintf(stderr, "%s: train step: %s\n", dc->tag, kdistill_error(d));
        return 1;
    }
    double losses[KTERM_MAX], elosses[KTERM_MAX];
    char terms[512] = "", weights[512] = "";
    int nl = 0;
    for (int i = 0; i < r.n; i++) {
        if (!strcmp(r.t[i].name, "mlm_acc") || !strcmp(r.t[i].name, "teacher_agree")) continue;
        losses[nl] = r.t[i].count > 0 ? r.t[i].sum / r.t[i].count : 0;
        elosses[nl] = kstep_value(&ev, r.t[i].name);
        snprintf(terms + strlen(terms), sizeof terms - strlen(terms), "%s%s", nl ? "," : "", r.t[i].name);
        snprintf(weights + strlen(weights), sizeof weights - strlen(weights), "%s%.17g", nl ? "," : "", r.t[i].weight);
        nl++;
    }
    int64_t sn[1] = {nl}, s1[1] = {1};
    put(&o, "out.losses", "F64", 1, sn, losses, (size_t)nl * 8);
    put(&o, "out.eval_losses", "F64", 1, sn, elosses, (size_t)nl * 8);
    put(&o, "out.loss", "F64", 1, s1, &r.loss, 8);
    put_params(&o, "grad.", m, kmodel_grad_data(m));

    const char *meta[80];
    char v[40][600]; /* loss_terms and loss_weights can be long */
    int nm = 0;
#define META(k, ...)                                  \
    do {                                              \
        snprintf(v[nm], sizeof v[nm], __VA_ARGS__);   \
        meta[2 * nm] = k;                             \
        meta[2 * nm + 1] = v[nm];                     \
        nm++;                                         \
    } while (0)
    const kmodel_config *cs[2] = {&dc->tc, &dc->sc};
    const char *pre[2] = {"teacher_", "student_"};
    char keys[2][12][48];
    for (int k = 0; k < 2; k++) {
        const kmodel_config *c = cs[k];
        int j = 0;
#define MK(name) (snprintf(keys[k][j], sizeof keys[k][j], "%s%s", pre[k], name), keys[k][j++])
        META(MK("model_type"), "%s", type_name(c->type));
        META(MK("vocab_size"), "%d", c->vocab_size);
        META(MK("embedding_size"), "%d", c->type == KMODEL_ALBERT ? c->embedding_size : c->hidden_size);
        META(MK("hidden_size"), "%d", c->hidden_size);
        META(MK("num_hidden_layers"), "%d", c->num_hidden_layers);
        META(MK("num_hidden_groups"), "%d", c->type == KMODEL_ALBERT ? c->num_hidden_groups : c->num_hidden_layers);
        META(MK("num_attention_heads"), "%d", c->num_attention_heads);
        META(MK("intermediate_size"), "%d", c->intermediate_size);
        META(MK("max_position_embeddings"), "%d", c->max_position_embeddings);
        META(MK("type_vocab_size"), "%d", c->type_vocab_size);
        META(MK("hidden_act"), "%s", c->hidden_act == KACT_GELU ? "gelu" : "gelu_new");
        META(MK("layer_norm_eps"), "%.17g", c->layer_norm_eps);
#undef MK
    }
    META("method", "%s", dc->d.method == KDISTILL_TINYBERT ? "tinybert" : "distilbert");
    META("positions", "%s", all ? "all" : "masked");
    META("stage", "%s", dc->d.stage == KDISTILL_INTERMEDIATE ? "intermediate" : "prediction");
    META("temperature", "%.17g", dc->d.temperature);
    META("loss_terms", "%s", terms);
    META("loss_weights", "%s", weights);
#undef META
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, dc->tag);
    int rc = kst_write(path, o.t, o.n, meta, nm, err, sizeof err);
    if (rc) fprintf(stderr, "kst_write: %s\n", err);
    else printf("%s: %d tensors, terms %s\n", path, o.n, terms);
    outset_free(&o);
    batch_free(&h);
    kdistill_free(d);
    kmodel_free(m);
    kmodel_free(t);
    return rc;
}

static int distill_parity(const char *dir)
{
    const kmodel_config bert = {
        .type = KMODEL_BERT, .vocab_size = 61, .embedding_size = 24, .hidden_size = 24, .num_hidden_layers = 4,
        .num_attention_heads = 3, .intermediate_size = 40, .max_position_embeddings = 20, .type_vocab_size = 2,
        .hidden_act = KACT_GELU, .layer_norm_eps = 1e-12, .num_hidden_groups = 4, .initializer_range = 0.2,
        .pad_token_id = 0};
    kmodel_config distil = bert; /* DistilBERT student of the teacher's width, 2 layers */
    distil.type = KMODEL_DISTILBERT;
    distil.num_hidden_layers = distil.num_hidden_groups = 2;
    kmodel_config albert = bert; /* an ALBERT teacher: E 12, 4 layers over 2 groups, gelu_new */
    albert.type = KMODEL_ALBERT;
    albert.embedding_size = 12;
    albert.num_hidden_groups = 2;
    albert.hidden_act = KACT_GELU_NEW;
    kmodel_config small = bert; /* TinyBERT student: H 12, 3 heads, 2 layers, FFN 20 */
    small.hidden_size = small.embedding_size = 12;
    small.num_hidden_layers = small.num_hidden_groups = 2;
    small.intermediate_size = 20;
    kdistill_config dd = {.method = KDISTILL_DISTILBERT, .temperature = 2.0, .alpha_ce = 5.0, .alpha_mlm = 2.0,
                          .alpha_cos = 1.0, .positions = KDISTILL_MASKED, .init_from_teacher = 1};
    kdistill_config da = dd;
    da.positions = KDISTILL_ALL;
    da.temperature = 3.0;
    kdistill_config ti = {.method = KDISTILL_TINYBERT, .temperature = 1.0, .alpha_mlm = 0.5, .alpha_att = 1.0,
                          .alpha_hid = 2.0, .alpha_emb = 3.0, .alpha_pred = 1.0, .stage = KDISTILL_INTERMEDIATE,
                          .positions = KDISTILL_MASKED};
    kdistill_config tp = ti;
    tp.stage = KDISTILL_PREDICTION;
    tp.temperature = 2.0;
    const distill_case cases[] = {
        {"distill_distilbert", bert, distil, dd, 3, 16, 4, 1},
        {"distill_all", albert, bert, da, 3, 16, 4, 0},
        {"distill_tinybert", bert, small, ti, 3, 16, 4, 0},
        {"distill_tinybert_pred", bert, small, tp, 3, 16, 4, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (distill_one(dir, &cases[i])) return 1;
    return 0;
}

/* ---- ERNIE parity ----------------------------------------------------------------- */

enum { ERNIE_KE = 11 }; /* rows of the parity cases' entity table (row 0 = no entity) */

/* Turns h, 4 rows of make_batch (row 0 of full length L >= 14, the others
 * at least 4 long), into ERNIE's batch (KOBJ_ENTITIES with MLM and NSP or
 * SOP): entity inputs / dEA labels, as rows of an ERNIE_KE-row table, at
 *   row 0: 3/3 at 2, 7/5 at 5 (replaced by the dEA noise), 0/4 at 8 (the
 *          alignment dropped: a target, no entity input), 9/9 at 11, 3/3 at
 *          12 (entity 3 twice)
 *   row 1: 2/2 at 1, 8/8 at its last token
 *   row 2: none
 *   row 3: 10/6 at its middle token (replaced; the row's only entity)
 * so 7 entity rows, 8 dEA targets, candidates 2..10 (row 1 is nobody's).
 * Returns 0, or -1 when h does not have that shape. */
static int make_entities(hbatch *h, int nsp)
{
    ksample_batch *b = &h->b;
    const int B = b->B, L = b->L;
    if (B != 4 || L < 14 || h->lengths[0] != L || h->lengths[1] < 4 || h->lengths[3] < 4) return -1;
    const struct {
        int r, t, id, label;
    } al[] = {{0, 2, 3, 3},  {0, 5, 7, 5}, {0, 8, 0, 4}, {0, 11, 9, 9}, {0, 12, 3, 3}, {1, 1, 2, 2},
              {1, h->lengths[1] - 1, 8, 8}, {3, h->lengths[3] / 2, 10, 6}};
    h->ents = calloc((size_t)B * L, sizeof(int32_t));
    h->elabs = calloc((size_t)B * L, sizeof(int32_t));
    if (!h->ents || !h->elabs) return -1;
    for (size_t i = 0; i < sizeof al / sizeof al[0]; i++) {
        h->ents[al[i].r * L + al[i].t] = al[i].id;
        h->elabs[al[i].r * L + al[i].t] = al[i].label;
    }
    b->objectives = KOBJ_MLM | (nsp ? KOBJ_NSP : KOBJ_SOP) | KOBJ_ENTITIES;
    b->entity_ids = h->ents;
    b->entity_labels = h->elabs;
    return 0;
}

/* One ERNIE model of the parity set: its config and batch shape (4 rows of length L, P masked slots). */
typedef struct ernie_case {
    const char *tag;
    kmodel_config c;
    int L, P;
} ernie_case;

/* Writes DIR/<tag>.manifest.json and DIR/<tag>.safetensors (see the top of
 * this file, "ernie"). */
static int ernie_one(const char *dir, const ernie_case *ec)
{
    const kmodel_config *c = &ec->c;
    const int B = 4, L = ec->L, P = ec->P, nsp = c->type == KMODEL_BERT, steps = 3;
    char err[256];
    const kmodel_spec spec = kmodel_spec_pretrain_of(c, B, L, P, 1);
    kmodel *m = kmodel_create(c, &spec, err, sizeof err);
    if (!m) {
        fprintf(stderr, "%s: kmodel_create: %s\n", ec->tag, err);
        return 1;
    }
    if (!(spec.heads & KHEAD_DEA) || write_manifest(dir, ec->tag, m)) {
        fprintf(stderr, "%s: no dEA head, or the manifest not written\n", ec->tag);
        kmodel_free(m);
        return 1;
    }
    kmodel_init(m, 4321);
    /* the entity table: kmodel_init leaves it zero (its owner, TransE, fills
     * it); rows 1.. uniform in [-1, 1), row 0 ("no entity") zero */
    int nt;
    const ktensor *t = kmodel_params(m, &nt);
    const int ti = ktensor_find(t, nt, "ernie.entity_embeddings.weight");
    if (ti < 0 || t[ti].shape[0] != ERNIE_KE) {
        fprintf(stderr, "%s: no entity table of %d rows\n", ec->tag, ERNIE_KE);
        kmodel_free(m);
        return 1;
    }
    float *table = kmodel_param_data(m) + t[ti].offset;
    const uint64_t tkey = krng_key(4321, 'E', 0, 0);
    for (size_t i = (size_t)t[ti].shape[1]; i < t[ti].numel; i++)
        table[i] = (float)((double)(krng_at(tkey, i) >> 11) * 0x1p-52 - 1.0);
    hbatch h;
    make_batch(&h, B, L, P, c->vocab_size, 0, 99);
    if (make_entities(&h, nsp)) {
        fprintf(stderr, "%s: make_batch's rows are too short for the entity layout\n", ec->tag);
        batch_free(&h);
        kmodel_free(m);
        return 1;
    }
    outset o = {0};
    int rc = 0;
    const size_t numel = kmodel_numel(m);
    float *init = malloc(numel * sizeof(float));
    memcpy(init, kmodel_param_data(m), numel * sizeof(float));
    put_params(&o, "", m, init);
    int64_t sBL[2] = {B, L}, sBP[2] = {B, P}, sB[1] = {B};
    put(&o, "batch.input_ids", "I32", 2, sBL, h.ids, (size_t)B * L * 4);
    put(&o, "batch.token_type_ids", "I32", 2, sBL, h.types32, (size_t)B * L * 4);
    put(&o, "batch.lengths", "I32", 1, sB, h.lengths, (size_t)B * 4);
    put(&o, "batch.n_masked", "I32", 1, sB, h.n_masked, (size_t)B * 4);
    put(&o, "batch.masked_positions", "I32", 2, sBP, h.pos, (size_t)B * P * 4);
    put(&o, "batch.masked_ids", "I32", 2, sBP, h.mids, (size_t)B * P * 4);
    put(&o, "batch.masked_weights", "F32", 2, sBP, h.w, (size_t)B * P * 4);
    put(&o, "batch.labels", "I32", 1, sB, h.labels, (size_t)B * 4);
    put(&o, "batch.entity_ids", "I32", 2, sBL, h.ents, (size_t)B * L * 4);
    put(&o, "batch.entity_labels", "I32", 2, sBL, h.elabs, (size_t)B * L * 4);

    /* the same parameters in an inference model too (no backward buffers:
     * ernie.c scatters the entity rows into the FFN's input in place) */
    kmodel_spec ispec = spec;
    ispec.inference = 1;
    kmodel *mi = kmodel_create(c, &ispec, err, sizeof err);
    if (!mi || kmodel_numel(mi) != numel) {
        fprintf(stderr, "%s: the inference model: %s\n", ec->tag, mi ? "another arena" : err);
        kmodel_free(mi);
        mi = NULL;
        rc = 1;
        goto done;
    }
    memcpy(kmodel_param_data(mi), init, numel * sizeof(float));
    kstep_result r, ri;
    term_names tn, tni;
    rc = kmodel_evaluate(m, &h.b, &r);
    if (!rc) {
        put_pretrain_logits(&o, "out.", m, &h, spec.heads);
        kmodel_zero_grad(m);
        rc = kmodel_forward_backward(m, &h.b, 1, 1.0f, &r);
    }
    if (rc) {
        fprintf(stderr, "%s: %s\n", ec->tag, kmodel_error(m));
        goto done;
    }
    if ((rc = kmodel_evaluate(mi, &h.b, &ri))) {
        fprintf(stderr, "%s: the inference model: %s\n", ec->tag, kmodel_error(mi));
        goto done;
    }
    put_pretrain_logits(&o, "inference.", mi, &h, spec.heads);
    put_losses(&o, "inference.", &ri, &tni);
    put_losses(&o, "out.", &r, &tn);
    if (strcmp(tn.terms, tni.terms)) {
        fprintf(stderr, "%s: the inference model's loss terms %s, the training pass's %s\n", ec->tag, tni.terms,
                tn.terms);
        rc = 1;
        goto done;
    }
    const double dea[2] = {kstep_value(&r, "dea_acc"), kstep_value(&r, "dea_candidates")};
    int64_t s2[1] = {2}, sS[1] = {steps};
    put(&o, "out.dea_stats", "F64", 1, s2, dea, sizeof dea);
    put_params(&o, "grad.", m, kmodel_grad_data(m));

    /* AdamW: 3 steps of the parity models' 10-step linear schedule with 2 warmup steps */
    const kopt_config oc = {.type = KOPT_ADAMW, .lr = 2e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-6,
                            .weight_decay = 0.1, .warmup_steps = 2, .schedule = KSCHED_LINEAR, .min_lr_ratio = 0.1,
                            .clip_norm = 1.0, .accumulation = 1};
    double al[3];
    rc = run_opt(m, init, &oc, &h, al, steps, 10, NULL, NULL, NULL);
    if (rc) goto done;
    put_params(&o, "adamw.", m, kmodel_param_data(m));
    put(&o, "adamw.losses", "F64", 1, sS, al, sizeof al);

    char v[40][KTERM_MAX * (KTERM_NAME_MAX + 1)];
    const char *meta[80];
    int nm = 0;
#define META(k, ...)                                \
    do {                                            \
        snprintf(v[nm], sizeof v[nm], __VA_ARGS__); \
        meta[2 * nm] = k;                           \
        meta[2 * nm + 1] = v[nm];                   \
        nm++;                                       \
    } while (0)
    META("model_type", "%s", c->type == KMODEL_ALBERT ? "albert" : "bert");
    META("vocab_size", "%d", c->vocab_size);
    META("embedding_size", "%d", c->type == KMODEL_ALBERT ? c->embedding_size : c->hidden_size);
    META("hidden_size", "%d", c->hidden_size);
    META("num_hidden_layers", "%d", c->num_hidden_layers);
    META("num_hidden_groups", "%d", c->type == KMODEL_ALBERT ? c->num_hidden_groups : c->num_hidden_layers);
    META("num_attention_heads", "%d", c->num_attention_heads);
    META("intermediate_size", "%d", c->intermediate_size);
    META("max_position_embeddings", "%d", c->max_position_embeddings);
    META("type_vocab_size", "%d", c->type_vocab_size);
    META("hidden_act", "%s", c->hidden_act == KACT_GELU ? "gelu" : "gelu_new");
    META("layer_norm_eps", "%.17g", c->layer_norm_eps);
    META("pad_token_id", "%d", c->pad_token_id);
    META("fusion_layers", "%d", c->fusion_layers);
    META("entity_vocab_size", "%d", c->entity_vocab_size);
    META("entity_dim", "%d", c->entity_dim);
    META("entity_hidden_size", "%d", c->entity_hidden_size ? c->entity_hidden_size : c->entity_dim);
    META("entity_attention_heads", "%d", c->entity_attention_heads);
    META("precision", "%s", kget_precision() == KPREC_BF16 ? "bf16" : "fp32");
    META("loss_terms", "%s", tn.terms);
    META("loss_weights", "%s", tn.weights);
    META("opt_lr_adamw", "%.17g", oc.lr);
    META("opt_schedule_adamw", "linear");
    META("opt_beta1", "%.17g", oc.beta1);
    META("opt_beta2", "%.17g", oc.beta2);
    META("opt_eps", "%.17g", oc.eps);
    META("opt_weight_decay", "%.17g", oc.weight_decay);
    META("opt_warmup_steps", "%d", oc.warmup_steps);
    META("opt_total_steps", "10");
    META("opt_min_lr_ratio", "%.17g", oc.min_lr_ratio);
    META("opt_clip_norm", "%.17g", oc.clip_norm);
#undef META
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, ec->tag);
    rc = kst_write(path, o.t, o.n, meta, nm, err, sizeof err);
    if (rc) fprintf(stderr, "kst_write: %s\n", err);
    else printf("%s: %d tensors,%s, dea_acc %.4f, %g candidates\n", path, o.n, tn.said, dea[0], dea[1]);
done:
    outset_free(&o);
    free(init);
    batch_free(&h);
    kmodel_free(mi);
    kmodel_free(m);
    return rc ? 1 : 0;
}

/* kiln_trainer_ref ernie DIR: the products pinned to fp32 (whatever the CPU) */
static int ernie_parity(const char *dir)
{
    kset_precision(KPREC_FP32);
    /* BERT ERNIE: 3 layers, the last 2 fusion layers (the first without
     * entity attention, the last without entity output), an entity stream
     * of width 8 projected from the table's 6, 2 entity heads */
    const kmodel_config bert = {
        .type = KMODEL_BERT, .vocab_size = 61, .embedding_size = 16, .hidden_size = 16, .num_hidden_layers = 3,
        .num_attention_heads = 2, .intermediate_size = 32, .max_position_embeddings = 16, .type_vocab_size = 2,
        .hidden_act = KACT_GELU, .layer_norm_eps = 1e-12, .num_hidden_groups = 3, .initializer_range = 0.2,
        .pad_token_id = 0, .fusion_layers = 2, .entity_vocab_size = ERNIE_KE, .entity_dim = 6,
        .entity_hidden_size = 8, .entity_attention_heads = 2, .dea = 1, .dea_weight = 1.0};
    /* ALBERT ERNIE: E 8, H 16, 3 layers sharing one text weight set, every
     * layer a fusion layer (the middle one with entity attention and
     * output), the table's width 6 unprojected, 3 entity heads, gelu_new,
     * LayerNorm eps 1e-3 (so that every LayerNorm's eps shows) */
    const kmodel_config albert = {
        .type = KMODEL_ALBERT, .vocab_size = 67, .embedding_size = 8, .hidden_size = 16, .num_hidden_layers = 3,
        .num_attention_heads = 4, .intermediate_size = 24, .max_position_embeddings = 16, .type_vocab_size = 2,
        .hidden_act = KACT_GELU_NEW, .layer_norm_eps = 1e-3, .num_hidden_groups = 1, .initializer_range = 0.2,
        .pad_token_id = 0, .fusion_layers = 3, .entity_vocab_size = ERNIE_KE, .entity_dim = 6,
        .entity_hidden_size = 0, .entity_attention_heads = 3, .dea = 1, .dea_weight = 1.0};
    const ernie_case cases[] = {{"ernie_bert", bert, 14, 4}, {"ernie_albert", albert, 14, 4}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (ernie_one(dir, &cases[i])) return 1;
    return 0;
}

/* ---- bench --------------------------------------------------------------------- */

/* OpenBLAS's own sgemm on 2048^3 (its threading), best of 5: by wall time,
 * and by CPU time (meaningful with one thread). */
static double peak_gflops(double *per_cpu)
{
    const int n = 2048;
    float *A = malloc((size_t)n * n * 4), *B = malloc((size_t)n * n * 4), *C = malloc((size_t)n * n * 4);
    for (size_t i = 0; i < (size_t)n * n; i++) A[i] = B[i] = (float)(i % 7) * 0.1f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1, A, n, B, n, 0, C, n);
    double best = 0, bestc = 0;
    for (int k = 0; k < 5; k++) {
        double t = now(), c = cpu_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1, A, n, B, n, 0, C, n);
        double g = 2.0 * n * n * n / (now() - t) / 1e9, gc = 2.0 * n * n * n / (cpu_now() - c) / 1e9;
        if (g > best) best = g;
        if (gc > bestc) bestc = gc;
    }
    free(A), free(B), free(C);
    *per_cpu = bestc;
    return best;
}

static int bench(int steps, int bert)
{
    kmodel_config c = {.type = bert ? KMODEL_BERT : KMODEL_ALBERT, .vocab_size = 30000, .embedding_size = 128,
                       .hidden_size = 256, .num_hidden_layers = 4, .num_attention_heads = 4,
                       .intermediate_size = 1024, .max_position_embeddings = 512, .type_vocab_size = 2,
                       .hidden_act = bert ? KACT_GELU : KACT_GELU_NEW, .layer_norm_eps = 1e-12,
                       .num_hidden_groups = bert ? 4 : 1, .initializer_range = 0.02, .pad_token_id = 0};
    const int B = 16, L = 128, P = 20;
    char err[256];
    kmodel *m = kmodel_new(&c, B, L, P, 1, err, sizeof err);
    if (!m) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    kmodel_init(m, 1);
    hbatch h;
    make_batch(&h, B, L, P, c.vocab_size, 1, 7);
    kopt_config oc = {.type = KOPT_ADAMW, .lr = 1e-4, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-6,
                      .weight_decay = 0.01, .warmup_steps = 0, .schedule = KSCHED_CONSTANT, .clip_norm = 1.0,
                      .accumulation = 1};
    int nt;
    const ktensor *t = kmodel_params(m, &nt);
    kopt *o = kopt_new(&oc, t, nt, kmodel_param_data(m), kmodel_grad_data(m), kmodel_numel(m), err, sizeof err);
    kstep_result r;
    double tf = 0, tb = 0, to = 0, first = 0, last = 0, cpu = 0;
    for (int s = -2; s < steps; s++) { /* 2 warm-up steps */
        if (s == 0) cpu = cpu_now();
        double t0 = now();
        kmodel_zero_grad(m);
        kmodel_forward_backward(m, &h.b, (uint64_t)s, 1.0f, &r);
        double t1 = now();
        kopt_step(o, s + 3, 0, NULL, NULL);
        double t2 = now();
        if (s >= 0) tb += t1 - t0, to += t2 - t1;
        if (s == 0) first = r.loss;
        last = r.loss;
    }
    cpu = cpu_now() - cpu;
    double t0 = now();
    for (int s = 0; s < steps; s++) kmodel_evaluate(m, &h.b, &r);
    tf = now() - t0;
    /* multiply-adds of one forward pass */
    const double N = (double)B * L, M = (double)B * P, E = c.embedding_size, H = c.hidden_size,
                 FF = c.intermediate_size, V = c.vocab_size, NL = c.num_hidden_layers;
    double macs = (bert ? 0 : N * E * H) + NL * (N * (4 * H * H + 2 * H * FF) + 2.0 * B * L * L * H) +
                  M * (H * E + E * V) + B * (H * H + 2 * H);
    double flop = 6 * macs; /* forward + backward (2x) */
    double step_ms = (tb + to) / steps * 1e3;
    double peak_cpu, peak = peak_gflops(&peak_cpu);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    char cpu_name[64], cpu_feats[128];
    kcpu_describe(cpu_name, sizeof cpu_name, cpu_feats, sizeof cpu_feats);
    char blas[96];
    kblas_core(blas, sizeof blas);
    printf("{\"cpu\": \"%s\", \"cpu_features\": \"%s\", \"blas_core\": \"%s\", \"precision\": \"%s\", ", cpu_name,
           cpu_feats, blas, kget_precision() == KPREC_BF16 ? "bf16" : "fp32");
    printf("\"model\": \"%s\", \"threads\": %d, \"steps\": %d, \"ms_per_step\": %.2f, \"fwd_bwd_ms\": %.2f, "
           "\"optimizer_ms\": %.2f, \"forward_ms\": %.2f, \"tokens_per_s\": %.0f, \"gflop_per_step\": %.2f, "
           "\"gflops\": %.1f, \"sgemm_peak_gflops\": %.1f, \"share_of_peak\": %.3f, \"cpu_ms_per_step\": %.2f, "
           "\"share_of_peak_by_cpu_time\": %.3f, \"params\": %zu, "
           "\"activation_mb\": %.1f, \"max_rss_mb\": %.1f, \"loss_first\": %.4f, \"loss_last\": %.4f}\n",
           bert ? "bert" : "albert", omp_get_max_threads(), steps, step_ms, tb / steps * 1e3, to / steps * 1e3,
           tf / steps * 1e3, N * steps / (tb + to), flop / 1e9, flop / (step_ms / 1e3) / 1e9, peak,
           flop / (step_ms / 1e3) / 1e9 / peak, cpu / steps * 1e3, flop / (cpu / steps) / 1e9 / peak_cpu,
           kmodel_param_count(m), kmodel_activation_bytes(m) / 1e6,
           ru.ru_maxrss / 1024.0, first, last);
    kopt_free(o);
    batch_free(&h);
    kmodel_free(m);
    return 0;
}

/* The attention kernels alone at bench/train's shape (B 16, 4 heads of 64,
 * seq 128, no dropout): best of REPS (20) of forward and of backward, GFLOP/s of
 * their products (2 B NH L L D multiply-adds each way... 4 B NH L^2 D FLOP
 * forward, 8 backward) against sgemm's fp32 peak of the same run. */
static int attn_bench(int reps)
{
    const int B = 16, NH = 4, D = 64, L = 128, H = NH * D, N = B * L;
    kattn_dims d = {.B = B, .NH = NH, .D = D, .L = L};
    int32_t offs[17];
    for (int b = 0; b <= B; b++) offs[b] = b * L;
    size_t per = kattention_scratch(&d) * (size_t)omp_get_max_threads();
    float *qkv = malloc((size_t)N * 3 * H * sizeof *qkv), *ctx = malloc((size_t)N * H * sizeof *ctx),
          *dctx = malloc((size_t)N * H * sizeof *dctx), *dqkv = malloc((size_t)N * 3 * H * sizeof *dqkv),
          *probs = malloc((size_t)B * NH * L * L * sizeof *probs), *scr = malloc(per * sizeof *scr);
    if (!qkv || !ctx || !dctx || !dqkv || !probs || !scr) return 71;
    uint64_t s = 7;
    for (size_t i = 0; i < (size_t)N * 3 * H; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        qkv[i] = (float)((s >> 40) / 16777216.0 - 0.5);
    }
    for (size_t i = 0; i < (size_t)N * H; i++) dctx[i] = qkv[i * 3 % ((size_t)N * 3 * H)] * 0.1f;
    double bf = 1e30, bb = 1e30;
    for (int k = 0; k < reps + 2; k++) {
        double t0 = now();
        kattention_forward(ctx, probs, scr, qkv, offs, &d);
        double t1 = now();
        kattention_backward(dqkv, scr, dctx, qkv, probs, offs, &d);
        double t2 = now();
        if (k >= 2) {
            if (t1 - t0 < bf) bf = t1 - t0;
            if (t2 - t1 < bb) bb = t2 - t1;
        }
    }
    const double fl = 4.0 * B * NH * (double)L * L * D;
    double peak_cpu, peak = peak_gflops(&peak_cpu);
    /* the dense layers' product in the same precision (kgemm over the
     * threads): the FFN's x W^T, 2048 x 1024 x 256 */
    double bg = 1e30;
    {
        const int M = 2048, Nn = 1024, K = 256;
        float *A = malloc((size_t)M * K * sizeof *A), *W = malloc((size_t)Nn * K * sizeof *W),
              *C = malloc((size_t)M * Nn * sizeof *C);
        if (!A || !W || !C) return 71;
        for (size_t i = 0; i < (size_t)M * K; i++) A[i] = qkv[i];
        for (size_t i = 0; i < (size_t)Nn * K; i++) W[i] = qkv[i + 7];
        for (int k = 0; k < 12; k++) {
            double t0 = now();
            kgemm(0, 1, M, Nn, K, 1.0f, A, K, W, K, 0.0f, C, Nn);
            if (k >= 2 && now() - t0 < bg) bg = now() - t0;
        }
        bg = 2.0 * M * Nn * K / bg / 1e9;
        free(A), free(W), free(C);
    }
    char cpu_name[64], cpu_feats[128];
    kcpu_describe(cpu_name, sizeof cpu_name, cpu_feats, sizeof cpu_feats);
    char blas[96];
    kblas_core(blas, sizeof blas);
    printf("{\"cpu\": \"%s\", \"cpu_features\": \"%s\", \"blas_core\": \"%s\", \"precision\": \"%s\", \"threads\": %d, "
           "\"forward_ms\": %.3f, \"backward_ms\": %.3f, \"forward_gflops\": %.1f, \"backward_gflops\": %.1f, "
           "\"dense_gflops\": %.1f, \"sgemm_peak_gflops\": %.1f, \"ctx_sum\": %.6g, \"dqkv_sum\": %.6g}\n",
           cpu_name, cpu_feats, blas, kget_precision() == KPREC_BF16 ? "bf16" : "fp32", omp_get_max_threads(), bf * 1e3,
           bb * 1e3, fl / bf / 1e9, 2 * fl / bb / 1e9, bg, peak, ctx[0] + ctx[(size_t)N * H - 1],
           dqkv[1] + dqkv[(size_t)N * 3 * H - 2]);
    free(qkv), free(ctx), free(dctx), free(dqkv), free(probs), free(scr);
    return 0;
}

/* --precision bf16: the products in bf16 from here on; 0, or -1 (said) where bf16 cannot run */
static int use_bf16(void)
{
    char why[256];
    if (kbf16_available(why, sizeof why)) {
        fprintf(stderr, "kiln_trainer_ref: precision bf16: %s\n", why);
        return -1;
    }
    kset_precision(KPREC_BF16);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "parity")) {
        if (argc >= 5 && !strcmp(argv[3], "--precision") && !strcmp(argv[4], "bf16") && use_bf16()) return 69;
        return parity(argv[2]);
    }
    if (argc >= 3 && !strcmp(argv[1], "distill")) return distill_parity(argv[2]);
    if (argc >= 3 && !strcmp(argv[1], "ernie")) return ernie_parity(argv[2]);
    if (argc >= 2 && !strcmp(argv[1], "bench")) {
        int steps = argc >= 3 ? atoi(argv[2]) : 10, bert = 0, bf16 = 0;
        for (int i = 3; i + 1 < argc; i += 2) {
            if (!strcmp(argv[i], "--model")) bert = !strcmp(argv[i + 1], "bert");
            else if (!strcmp(argv[i], "--precision")) bf16 = !strcmp(argv[i + 1], "bf16");
        }
        if (bf16 && use_bf16()) return 69;
        return bench(steps > 0 ? steps : 10, bert);
    }
    if (argc >= 2 && !strcmp(argv[1], "attn")) {
        int reps = 20, bf16 = 0;
        for (int i = 2; i + 1 < argc; i += 2) {
            if (!strcmp(argv[i], "--precision")) bf16 = !strcmp(argv[i + 1], "bf16");
            else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        }
        if (bf16 && use_bf16()) return 69;
        return attn_bench(reps > 0 ? reps : 20);
    }
    fprintf(stderr, "usage: kiln_trainer_ref parity DIR | distill DIR | ernie DIR | bench [STEPS] "
                    "[--model albert|bert] [--precision fp32|bf16] | attn [--precision fp32|bf16] [--reps N]\n");
    return 64;
}
