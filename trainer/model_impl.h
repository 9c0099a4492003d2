/* trainer/model_impl.h: the inside of a kmodel (trainer/model.h), shared by
 * model.c (blocks, heads, the pass of one encoder) and electra.c (ELECTRA's
 * generator + discriminator pair as one model). Private to trainer/; nothing
 * outside model.c and electra.c includes it. */
#ifndef KILN_TRAINER_MODEL_IMPL_H
#define KILN_TRAINER_MODEL_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "trainer/model.h"

struct kelectra;

enum { INIT_NORMAL = KINIT_NORMAL, INIT_ONE = KINIT_ONE, INIT_ZERO = KINIT_ZERO };

/* Offsets (in floats) of one weight set of an encoder layer. */
typedef struct layer_off {
    size_t qkv_w, qkv_b;   /* (3H, H), (3H): query, key, value stacked */
    size_t ao_w, ao_b;     /* (H, H), (H): attention output dense */
    size_t ln1_g, ln1_b;   /* (H) */
    size_t ff_w, ff_b;     /* (I, H), (I) */
    size_t fo_w, fo_b;     /* (H, I), (H) */
    size_t ln2_g, ln2_b;   /* (H) */
} layer_off;

/* Activations of one layer application. */
typedef struct layer_act {
    float *qkv;      /* (N, 3H) */
    float *probs;    /* (B, NH, L, L): per (b, h) an n x n block */
    float *ctx;      /* (N, H) */
    float *xs1;      /* (N, H) h + attention output, LN1 input */
    float *m1, *r1;  /* (N) LN1 mean, 1/std */
    float *h1;       /* (N, H) */
    float *ffpre;    /* (N, I) FFN pre-activation, replaced by gelu'(pre) in the forward's epilogue */
    float *ffact;    /* (N, I) */
    float *xs2;      /* (N, H) h1 + FFN output, LN2 input */
    float *m2, *r2;  /* (N) */
    float *out;      /* (N, H) layer output */
} layer_act;

/* ERNIE: the entity side of one fusion layer (offsets in floats; the text
 * side is the layer's layer_off). W = the entity stream's width. */
typedef struct fusion_off {
    int att;                  /* 1: entity self-attention (every fusion layer but the first, as upstream) */
    size_t eqkv_w, eqkv_b;    /* (3W, W), (3W) */
    size_t eao_w, eao_b;      /* (W, W), (W) */
    size_t eln1_g, eln1_b;    /* (W) */
    size_t fe_w;              /* (I, W): intermediate.dense_ent (no bias: the text FFN's carries it) */
    int out;                  /* 1: an entity output (every fusion layer but the last) */
    size_t feo_w, feo_b;      /* (W, I), (W): output.dense_ent */
    size_t eln2_g, eln2_b;    /* (W): output.LayerNorm_ent */
} fusion_off;

/* Activations of one fusion layer's entity side, over the NE aligned tokens
 * of the batch (entity rows packed per sequence, eoffs). */
typedef struct fusion_act {
    float *eqkv;              /* (NE, 3W) */
    float *eprobs;            /* (B, ENH, L, L) */
    float *ectx;              /* (NE, W) */
    float *exs1, *em1, *er1;  /* (NE, W), (NE), (NE) */
    float *eatt;              /* (NE, W) the entity input of the fusion (the first layer: its input) */
    float *exs2, *em2, *er2;  /* (NE, W), (NE), (NE) */
    float *eout;              /* (NE, W) */
} fusion_act;

struct kmodel {
    kmodel_config c;
    kmodel_spec s;
    int type, maxB, L, P, sent;
    int map;                  /* 1: an E -> H projection after the embeddings (ALBERT; ELECTRA when E != H) */
    int mlm_act;              /* activation of the MLM head's transform (ELECTRA's generator: erf GELU) */
    int sub;                  /* 1: a tower of a pair; params / grads belong to the pair */
    int nshared;              /* a tower: its first nshared registry entries are the pair's shared embeddings */
    struct kelectra *el;      /* ELECTRA's pair (generator + discriminator), else NULL */
    int ncls;                 /* classifier outputs (KHEAD_CLASSIFY), 0 without */
    float p_cls;              /* dropout on the pooled output before the classifier */
    int inference;
    int V, E, H, I, NH, D, NL, NG, T, act;
    float eps, p_hidden, p_attn;
    float p_emb;              /* dropout on the embedding output: p_hidden, GPT-2's embd_pdrop */
    int gpt2;                 /* GPT-2: embeddings word + position only, no LayerNorm, no padding row */
    int distil;               /* DistilBERT: embeddings word + position (no token types), then LayerNorm;
                                 no dropout on the attention output */

    /* parameters: the registry (state_dict order) */
    ktensor *t;
    int nt;
    size_t numel;
    float *params, *grads; /* (numel) each */
    size_t word, pos, typ, eln_g, eln_b, map_w, map_b;
    layer_off *lw; /* (NG) */
    size_t pool_w, pool_b, mlm_w, mlm_b, mlm_ln_g, mlm_ln_b, mlm_bias, cls_w, cls_b;
    size_t clf_w, clf_b;      /* sequence classifier (num_labels, H), (num_labels) */
    size_t fln_g, fln_b;      /* pre-LN: final LayerNorm (H) */
    size_t tok_w, tok_b, tok_wp, tok_bp; /* per-token binary head: (H, H), (H), (1, H), (1) */
    size_t fit_e_w, fit_e_b, fit_h_w, fit_h_b; /* TinyBERT's projections (spec.fit_width, H), (fit_width) */

    /* activations (one arena) */
    float *arena;
    size_t arena_floats;
    float *emb_x;             /* (N, E) sum of the three embeddings */
    float *emb_mean, *emb_rstd; /* (N) */
    float *emb_ln;            /* (N, E) */
    float *emb_drop;          /* (N, E) after dropout (only when p_hidden > 0) */
    float *h0;                /* (N, H) ALBERT: mapped embeddings */
    float *fin, *fmean, *frstd; /* (N, H), (N), (N) pre-LN: the final LayerNorm */
    layer_act *la;            /* (NL) */
    float *mx;                /* (M, H) gathered rows of the masked positions */
    float *mpre, *ma, *mh;    /* (M, E) */
    float *mmean, *mrstd;     /* (M) */
    float *logits;            /* (M, V) logits, then dlogits */
    float *mdh, *mda;         /* (M, E) */
    float *dmx;               /* (M, H) */
    float *mloss, *mgscale;   /* (M) */
    float *cls, *pooled, *dpooled, *dcls; /* (B, H) */
    float *slog;              /* (B, 2) */
    float *sloss, *sgscale;   /* (B) */
    float *cz;                /* (B, H) pooled output after the classifier's dropout */
    float *clog;              /* (B, ncls) classifier logits, then their gradients */
    float *closs, *cgscale;   /* (B) */
    float *dz;                /* (B, H) */
    float *tpre, *th, *tdh;   /* (N, H) per-token head */
    float *tlogit, *tdlogit;  /* (N) */
    int32_t *tlabel;          /* (N) per-token labels of the packed rows */
    float *lchunk;            /* (N, lm_chunk) LM head scratch */
    float *lkeep;             /* (N, V) the LM head's logits from loss to backward (klm_head.keep), or NULL
                                 when they would take more than KMODEL_LM_KEEP_MAX bytes (then recomputed) */
    double *lsum;             /* (N) */
    float *lmax, *llse, *llab, *lgscale; /* (N) */
    int32_t *largmax, *llabel; /* (N) next-token labels of the packed rows */
    float *gA, *gB, *gC;      /* (N, H) backward buffers */
    float *gI;                /* (N, I) */
    float *gQKV;              /* (N, 3H) */
    float *gE;                /* (N, E) ALBERT embedding gradient */
    float *scratch;           /* (threads, 2 L L) attention */
    int scratch_threads;

    /* the current batch, packed */
    int32_t *ids, *pos_ids, *type_ids; /* (N) */
    int32_t *offs;            /* (max_B + 1) */
    uint64_t *seq;            /* (max_B) each row's stream position (b->index; the row number without one) */
    uint64_t *tok;            /* (max_B L) per packed token: seq[b] L + t, the dropout masks' row index base
                                 (a token's masks do not depend on its row's place in the batch) */
    int32_t *mrow;            /* (M) activation row of each masked position */
    int32_t *mlabel;          /* (M) label, -1 for weight 0 */
    float *mweight;           /* (M) */
    int32_t *mstart;          /* (max_B + 1) first masked row of each batch row */
    int32_t *slabel;          /* (max_B) */
    uint8_t *mcorrect;        /* (M) */
    uint8_t *scorrect;        /* (max_B) */
    int32_t *clabel;          /* (max_B) class, -1 none */
    float *ctarget;           /* (max_B) regression target, NaN none */
    uint8_t *ccorrect;        /* (max_B) */
    int B, N, M, has_logits;
    int objectives;           /* of the current batch (names the sentence terms) */
    const float *hlast;       /* (N, H) the heads' input of the current forward */

    /* the pass */
    int fwd;                  /* 0 none, 1 eval forward, 2 train forward */
    int lossed;               /* kmodel_loss ran on the current forward */
    uint64_t key;             /* dropout key of the current forward */
    /* soft targets of the next loss (kmodel_set_soft_targets), cleared by it */
    const float *soft_t;      /* (M, V) the teacher's logits, or NULL */
    float soft_T;
    double soft_ce, soft_mlm;
    int soft_all;
    float *kgscale, *kl;      /* (max_B P) allocated on first use */
    /* data parallel (kmodel_set_loss_counts): the next loss normalises each
     * loss term by these counts over all ranks, not by this batch's */
    int gcount_on;
    kstep_result gcount;
    /* data parallel (kmodel_set_grad_hook): told the arena offset above
     * which every gradient is final, after each weight group's backward */
    void (*grad_hook)(void *ctx, size_t lo);
    void *grad_hook_ctx;
    /* data parallel (kmodel_set_sparse_word_grad): the word embeddings'
     * gradient from the lookup is left out of the arena and kept as rows
     * (wrows (N, E) of the tokens ids); word_hook is told after the heads'
     * backward that the arena's word range is otherwise final */
    void (*word_hook)(void *ctx, size_t lo, size_t hi);
    const float *wrows;       /* after a sparse backward: the lookup gradient rows, else NULL */
    uint8_t *kagree;          /* (max_B P) */
    float **qinj;             /* (NL) injected query/key/value gradients (max_B L, 3H), allocated on first use */
    uint8_t *qinj_set;        /* (NL) */
    float **inj;              /* (NL + 1) injected gradients (max_B L, H) each, allocated on first use */
    uint8_t *inj_set;         /* (NL + 1) */

    /* ERNIE (c.fusion_layers > 0; trainer/ernie.c): the last NF layers are
     * fusion layers (layer l is fusion layer l - (NL - NF)) */
    int NF, KE, DE, W, ENH;   /* fusion layers, entity rows, vector width, stream width, entity heads */
    size_t ent;               /* (KE, DE) the entity table, frozen; row 0 = no entity */
    size_t emap_w, emap_b;    /* (W, DE), (W): the projection when W != DE, else SIZE_MAX */
    fusion_off *fw;           /* (NF) */
    fusion_act *fa;           /* (NF) */
    size_t dea_w, dea_b, dea_ln_g, dea_ln_b; /* dEA head transform (DE, H), (DE), (DE), (DE) */
    float *e0;                /* (N, DE) the batch's entity vectors, gathered */
    float *e0m;               /* (N, W) projected (W != DE) */
    float *fscr, *fscr2;      /* (N, I) each: fusion scratch */
    float *geA, *geB, *geC, *geD; /* (N, W) entity backward buffers */
    float *geQKV;             /* (N, 3W) */
    int NE;                   /* aligned tokens of the batch (entity rows) */
    int32_t *erow;            /* (N) token row of each entity row */
    int32_t *eid;             /* (N) entity table row of each entity row */
    int32_t *eoffs;           /* (max_B + 1) entity rows of each sequence */
    uint64_t *etok;           /* (N) the dropout index base of each entity row (its token's) */
    /* the dEA head: NA targets among NC candidates */
    int NA, NC;
    int32_t *arow;            /* (N) token row of each target */
    int32_t *alabel;          /* (N) index of the original entity among the candidates */
    int32_t *cand;            /* (KE) candidate entity rows, ascending; then a row -> candidate map */
    int32_t *cmap;            /* (KE) entity row -> candidate index, -1 */
    float *ax, *apre, *aa, *ah, *amean, *arstd, *adh, *ada, *adx; /* (N, H), (N, DE) x5, (N) x2 */
    float *cvec;              /* (NC, DE) the candidates' vectors (grown) */
    float *alog;              /* (NA, NC) logits, then their gradients (grown) */
    size_t alog_cap, cvec_cap;
    float *aloss, *agscale;   /* (N) */
    uint8_t *acorrect;        /* (N) */
    int NAcopy;               /* targets whose input entity is their label (what copying the input gets right) */

    char err[256];
};


/* Carving an activation arena in two passes (sizing with base NULL, then
 * for real): ptr = base + at (NULL while sizing), at advanced by n floats
 * rounded up to 16 (64 bytes). */
#define KCARVE(base, at, ptr, n)                       \
    do {                                               \
        size_t n_ = (n);                               \
        (ptr) = (base) ? (base) + (at) : NULL;         \
        (at) += (n_ + 15) / 16 * 16;                   \
    } while (0)

/* ---- between model.c and electra.c -------------------------------------------- */

/* Where a tower's parameters go in its pair's arena: names prefixed with
 * `prefix`, the first new slice at float `start`, and (shared != NULL) the
 * five embedding tensors (word, position, type, LayerNorm weight and bias) at
 * the given offsets instead of new slices. */
typedef struct ktower_place {
    const char *prefix;
    size_t start;
    const size_t *shared; /* (5) or NULL */
} ktower_place;

/* A model over its own arenas (place NULL) or a tower of a pair (place set:
 * params / grads are left NULL for the pair to point into its arenas; the
 * activations are the tower's own). registry_only: the checked config and
 * the registry only. NULL with err filled on failure. */
kmodel *kmodel_create_tower(const kmodel_config *c, const kmodel_spec *s, const ktower_place *place, char *err,
                            size_t errlen, int registry_only);

/* The count loss term `name`'s gradient is normalised by: the count over
 * all ranks (kmodel_set_loss_counts) or this batch's own (local). */
double kmodel_norm_of(const kmodel *m, const char *name, double local);

/* ernie.c: the entity side of ERNIE's fusion layers and the dEA head
 * (model.c calls them at these points of its pass). */
/* Sizes the entity activations (carve's pass; base NULL: sizing). */
size_t kernie_carve(kmodel *m, float *base, size_t at);
/* The batch's entity rows and dEA targets (load_batch); 0 or an error code. */
int kernie_load_batch(kmodel *m, const ksample_batch *b);
/* Forward of fusion layer l: before its FFN (the entity attention and the
 * entity term fres of the FFN's pre-activation, NULL when the batch has no
 * entities), after it (the entity output; model.c calls it when fres is set). */
const float *kernie_forward_pre(kmodel *m, int l, int train, uint64_t key);
void kernie_forward_post(kmodel *m, int l, int train, uint64_t key);
/* Backward of fusion layer l: the entity output's gradient scattered into
 * gI (before the FFN's backward; returns whether it wrote gI), then the
 * entity input side from gI = d pre-activation (after it). */
int kernie_backward_post(kmodel *m, int l, uint64_t key);
void kernie_backward_pre(kmodel *m, int l, uint64_t key);
/* The dEA head: forward on hlast, loss terms, backward into gA. */
void kernie_dea_forward(kmodel *m, const float *h);
void kernie_dea_loss(kmodel *m, int train, float loss_scale, kstep_result *r);
void kernie_dea_backward(kmodel *m, float *gA);
void kernie_free(kmodel *m);

/* electra.c: the pair. kelectra_create is kmodel_create / kmodel_registry
 * for model.type electra with the MLM head asked for; the others implement
 * the pass API for a model whose el is set. */
kmodel *kelectra_create(const kmodel_config *c, const kmodel_spec *s, char *err, size_t errlen, int registry_only);
void kelectra_free(struct kelectra *e);
int kelectra_forward(kmodel *m, const ksample_batch *b, int mode, uint64_t key);
int kelectra_loss(kmodel *m, float loss_scale, kstep_result *r);
int kelectra_loss_counts(kmodel *m, kstep_result *c);
void kelectra_set_loss_counts(kmodel *m, const kstep_result *global);
int kelectra_backward(kmodel *m);
size_t kelectra_activation_bytes(const kmodel *m);
/* the discriminator (hidden states, attention, token logits) and the generator (MLM logits) */
kmodel *kelectra_disc(const kmodel *m);
kmodel *kelectra_gen(const kmodel *m);

#endif
