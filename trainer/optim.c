/* trainer/optim.c: AdamW and LAMB updates, the learning-rate schedule and
 * gradient clipping (formulas in optim.h).
 *
 * What it is: element-wise passes over the parameter, gradient and moment
 * arenas, parallel over fixed chunks. What it is not: a parameter-group
 * system; the per-tensor decay flag is the only distinction.
 *
 * Chunks: every tensor is cut into pieces of at most CHUNK floats (a tensor's
 * pieces are consecutive). Norms are summed per piece in double with 8 lanes,
 * then over the pieces in order, so no sum depends on the thread count.
 * Element-wise float arithmetic follows torch's order of operations so that
 * AdamW matches torch.optim.AdamW to rounding.
 */
#include "trainer/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

/* Comparisons may be evaluated speculatively (if-converted into blends), so
 * the loops with clamps and selects vectorize; this changes no value. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "util/kmath.h" /* no FMA contraction, KCLONES */

#define CHUNK 32768

typedef struct piece {
    int t;          /* tensor index */
    size_t off, n;  /* arena offset, floats */
} piece;

struct kopt {
    kopt_config c;
    const ktensor *t;
    int nt;
    float *p, *g; /* the caller's arenas */
    float *m, *v; /* (numel) */
    size_t numel;
    piece *pc;       /* (npc) registry order: a tensor's pieces are consecutive */
    int npc;
    int *byoff;      /* (npc) piece indices by arena offset (kopt_*_range) */
    double *s1, *s2; /* (npc) per-piece partial sums */
    double *r;       /* (nt) per-tensor trust ratio */
};

/* qsort: pairs (offset, piece) by offset */
static int by_offset(const void *a, const void *b)
{
    const size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

kopt *kopt_new(const kopt_config *c, const ktensor *t, int n, float *params, float *grads, size_t numel,
               char *err, size_t errlen)
{
#define FAIL(...)                                               \
    do {                                                        \
        if (err && errlen) snprintf(err, errlen, __VA_ARGS__); \
        kopt_free(o);                                           \
        return NULL;                                            \
    } while (0)
    kopt *o = calloc(1, sizeof *o);
    if (!o) {
        if (err && errlen) snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (c->type != KOPT_ADAMW && c->type != KOPT_LAMB) FAIL("optimizer.type: unknown optimizer %d", c->type);
    if (!(c->lr >= 0 && c->lr < 1e3)) FAIL("optimizer.lr: %g is not in [0, 1000)", c->lr);
    if (!(c->beta1 >= 0 && c->beta1 < 1)) FAIL("optimizer.beta1: %g is not in [0, 1)", c->beta1);
    if (!(c->beta2 >= 0 && c->beta2 < 1)) FAIL("optimizer.beta2: %g is not in [0, 1)", c->beta2);
    if (!(c->eps > 0)) FAIL("optimizer.eps: %g is not positive", c->eps);
    if (!(c->weight_decay >= 0)) FAIL("optimizer.weight_decay: %g is negative", c->weight_decay);
    if (c->warmup_steps < 0) FAIL("optimizer.warmup_steps: %d is negative", c->warmup_steps);
    if (c->schedule != KSCHED_LINEAR && c->schedule != KSCHED_COSINE && c->schedule != KSCHED_CONSTANT)
        FAIL("optimizer.schedule: unknown schedule %d", c->schedule);
    if (!(c->min_lr_ratio >= 0 && c->min_lr_ratio <= 1))
        FAIL("optimizer.min_lr_ratio: %g is not in [0, 1]", c->min_lr_ratio);
    o->c = *c;
    o->t = t;
    o->nt = n;
    o->p = params;
    o->g = grads;
    o->numel = numel;
    size_t np = 0;
    for (int i = 0; i < n; i++) {
        if (t[i].offset + t[i].numel > numel) FAIL("tensor %s lies outside the arena", t[i].name);
        np += (t[i].numel + CHUNK - 1) / CHUNK;
    }
    o->m = aligned_alloc(64, (numel * sizeof(float) + 63) / 64 * 64 + 64);
    o->v = aligned_alloc(64, (numel * sizeof(float) + 63) / 64 * 64 + 64);
    o->pc = malloc((np + 1) * sizeof *o->pc);
    o->s1 = malloc((np + 1) * sizeof(double));
    o->s2 = malloc((np + 1) * sizeof(double));
    o->r = malloc(((size_t)n + 1) * sizeof(double));
    o->byoff = malloc((np + 1) * sizeof *o->byoff);
    if (!o->m || !o->v || !o->pc || !o->s1 || !o->s2 || !o->r || !o->byoff)
        FAIL("out of memory: optimizer moments need %.1f MB", 2.0 * numel * 4 / 1e6);
    memset(o->m, 0, numel * sizeof(float));
    memset(o->v, 0, numel * sizeof(float));
    for (int i = 0; i < n; i++) /* frozen tensors: no pieces, so no update, no decay, no moments */
        for (size_t k = 0; k < t[i].numel && !t[i].frozen; k += CHUNK)
            o->pc[o->npc++] = (piece){i, t[i].offset + k, t[i].numel - k < CHUNK ? t[i].numel - k : CHUNK};
    /* by offset (tensors do not overlap, so offsets are unique) */
    size_t *key = malloc((np + 1) * 2 * sizeof *key);
    if (!key) FAIL("out of memory");
    for (int k = 0; k < o->npc; k++) {
        key[2 * k] = o->pc[k].off;
        key[2 * k + 1] = (size_t)k;
    }
    qsort(key, (size_t)o->npc, 2 * sizeof *key, by_offset);
    for (int k = 0; k < o->npc; k++) o->byoff[k] = (int)key[2 * k + 1];
    free(key);
    return o;
#undef FAIL
}

void kopt_free(kopt *o)
{
    if (!o) return;
    free(o->m);
    free(o->v);
    free(o->pc);
    free(o->s1);
    free(o->s2);
    free(o->r);
    free(o->byoff);
    free(o);
}

float *kopt_m(kopt *o) { return o->m; }
float *kopt_v(kopt *o) { return o->v; }

double kopt_lr(const kopt_config *c, int64_t step, int64_t total)
{
    const double lr = c->lr, rmin = c->min_lr_ratio;
    const int64_t w = c->warmup_steps;
    if (step < 1) step = 1;
    if (w > 0 && step <= w) return lr * (double)step / (double)w;
    if (c->schedule == KSCHED_CONSTANT || total <= w) return lr;
    double t = (double)(step - w) / (double)(total - w);
    if (t > 1) t = 1;
    if (c->schedule == KSCHED_COSINE) return lr * (rmin + (1 - rmin) * 0.5 * (1 + cos(3.14159265358979323846 * t)));
    return lr * (rmin + (1 - rmin) * (1 - t));
}

/* ---- per-piece kernels -------------------------------------------------------- */

KCLONES
static double sumsq(const float *x, size_t n)
{
    double acc[8] = {0};
    size_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) acc[l] += (double)x[j + l] * (double)x[j + l];
    for (int l = 0; j + l < n; l++) acc[l] += (double)x[j + l] * (double)x[j + l];
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

typedef struct scal {
    float clip;         /* gradient multiplier */
    float b1, b2, c1, c2; /* beta1, beta2, 1 - beta1, 1 - beta2 */
    float eps;
    float decay;        /* AdamW: 1 - lr wd; LAMB: wd */
    float step_size;    /* AdamW: lr / bc1 */
    float sbc2;         /* sqrt(bc2) */
    float ibc1, ibc2;   /* LAMB: 1 / bc1, 1 / bc2 */
} scal;

KCLONES
static void adamw_piece(float *p, float *m, float *v, const float *g, size_t n, const scal *s, int decay)
{
    const float clip = s->clip, b1 = s->b1, b2 = s->b2, c1 = s->c1, c2 = s->c2, eps = s->eps;
    const float mul = decay ? s->decay : 1.0f, ss = s->step_size, sbc2 = s->sbc2;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * clip;
        float w = p[i];
        if (decay) w = w * mul;
        float mi = m[i] * b1 + gi * c1;
        float vi = v[i] * b2 + gi * gi * c2;
        m[i] = mi;
        v[i] = vi;
        float den = sqrtf(vi) / sbc2 + eps;
        p[i] = w + -ss * (mi / den);
    }
}

/* LAMB pass 1: moments; returns ||w||^2 in *ww and ||u||^2 in *uu. */
KCLONES
static void lamb_piece1(const float *p, float *m, float *v, const float *g, size_t n, const scal *s, int decay,
                        double *ww, double *uu)
{
    const float clip = s->clip, b1 = s->b1, b2 = s->b2, c1 = s->c1, c2 = s->c2, eps = s->eps;
    const float wd = decay ? s->decay : 0.0f, i1 = s->ibc1, i2 = s->ibc2;
    double aw[8] = {0}, au[8] = {0};
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * clip;
        float mi = m[i] * b1 + gi * c1;
        float vi = v[i] * b2 + gi * gi * c2;
        m[i] = mi;
        v[i] = vi;
        float u = (mi * i1) / (sqrtf(vi * i2) + eps) + wd * p[i];
        aw[i & 7] += (double)p[i] * (double)p[i];
        au[i & 7] += (double)u * (double)u;
    }
    *ww = ((aw[0] + aw[4]) + (aw[2] + aw[6])) + ((aw[1] + aw[5]) + (aw[3] + aw[7]));
    *uu = ((au[0] + au[4]) + (au[2] + au[6])) + ((au[1] + au[5]) + (au[3] + au[7]));
}

KCLONES
static void lamb_piece2(float *p, const float *m, const float *v, size_t n, const scal *s, int decay, float lr_r)
{
    const float eps = s->eps, wd = decay ? s->decay : 0.0f, i1 = s->ibc1, i2 = s->ibc2;
    for (size_t i = 0; i < n; i++) {
        float u = (m[i] * i1) / (sqrtf(v[i] * i2) + eps) + wd * p[i];
        p[i] = p[i] - lr_r * u;
    }
}

/* ---- the step ---------------------------------------------------------------- */

double kopt_grad_norm(const kopt *o)
{
    const int np = o->npc;
    double *s1 = o->s1;
#pragma omp parallel for schedule(dynamic, 4) if (np > 1)
    for (int k = 0; k < np; k++) s1[k] = sumsq(o->g + o->pc[k].off, o->pc[k].n);
    double s = 0;
    for (int k = 0; k < np; k++) s += s1[k];
    return sqrt(s);
}

/* The positions [*j0, *j1) of byoff whose pieces start in the arena range
 * [lo, hi) */
static void piece_range(const kopt *o, size_t lo, size_t hi, int *j0, int *j1)
{
    int j = 0;
    while (j < o->npc && o->pc[o->byoff[j]].off < lo) j++;
    *j0 = j;
    while (j < o->npc && o->pc[o->byoff[j]].off < hi) j++;
    *j1 = j;
}

/* piece k is its tensor's first */
static int first_piece(const kopt *o, int k) { return o->pc[k].off == o->t[o->pc[k].t].offset; }

size_t kopt_split_at(const kopt *o, size_t want)
{
    for (int j = 0; j < o->npc; j++) {
        const int k = o->byoff[j];
        if (o->pc[k].off >= want && (o->c.type == KOPT_ADAMW || first_piece(o, k))) return o->pc[k].off;
    }
    return o->numel;
}

double kopt_grad_sumsq_range(const kopt *o, size_t lo, size_t hi)
{
    int j0, j1;
    piece_range(o, lo, hi, &j0, &j1);
    double *s1 = o->s1;
    const int *ix = o->byoff;
#pragma omp parallel for schedule(dynamic, 4) if (j1 - j0 > 1)
    for (int j = j0; j < j1; j++) s1[ix[j]] = sumsq(o->g + o->pc[ix[j]].off, o->pc[ix[j]].n);
    double s = 0;
    for (int j = j0; j < j1; j++) s += s1[ix[j]];
    return s;
}

/* The update of the pieces ix[0 .. n - 1] (ix NULL: pieces 0 .. n - 1, the
 * registry order; a tensor's pieces consecutive; for LAMB whole tensors)
 * with gradient norm gn. */
static int step_pieces(kopt *o, int64_t step, int64_t total_steps, double gn, const int *ix, int n, double *lr_out)
{
    const kopt_config *c = &o->c;
#define PIECE(j) (ix ? ix[j] : (j))
    if (step < 1) step = 1;
    double lr = kopt_lr(c, step, total_steps);
    if (lr_out) *lr_out = lr;
    if (!isfinite(gn)) return EX_DATAERR;
    scal s;
    s.clip = 1.0f;
    if (c->clip_norm > 0) {
        double coef = c->clip_norm / (gn + 1e-6);
        if (coef < 1) s.clip = (float)coef;
    }
    double bc1 = 1 - pow(c->beta1, (double)step), bc2 = 1 - pow(c->beta2, (double)step);
    s.b1 = (float)c->beta1;
    s.b2 = (float)c->beta2;
    s.c1 = (float)(1 - c->beta1);
    s.c2 = (float)(1 - c->beta2);
    s.eps = (float)c->eps;
    s.step_size = (float)(lr / bc1);
    s.sbc2 = (float)sqrt(bc2);
    s.ibc1 = (float)(1 / bc1);
    s.ibc2 = (float)(1 / bc2);
    if (c->type == KOPT_ADAMW) {
        s.decay = (float)(1 - lr * c->weight_decay);
#pragma omp parallel for schedule(dynamic, 4) if (n > 1)
        for (int j = 0; j < n; j++) {
            const piece *q = &o->pc[PIECE(j)];
            adamw_piece(o->p + q->off, o->m + q->off, o->v + q->off, o->g + q->off, q->n, &s, o->t[q->t].decay);
        }
        return 0;
    }
    s.decay = (float)c->weight_decay;
#pragma omp parallel for schedule(dynamic, 4) if (n > 1)
    for (int j = 0; j < n; j++) {
        const int k = PIECE(j);
        const piece *q = &o->pc[k];
        lamb_piece1(o->p + q->off, o->m + q->off, o->v + q->off, o->g + q->off, q->n, &s, o->t[q->t].decay,
                    &o->s1[k], &o->s2[k]);
    }
    for (int j = 0; j < n;) {
        const int i = o->pc[PIECE(j)].t;
        double ww = 0, uu = 0;
        for (; j < n && o->pc[PIECE(j)].t == i; j++) {
            ww += o->s1[PIECE(j)];
            uu += o->s2[PIECE(j)];
        }
        o->r[i] = o->t[i].decay && ww > 0 && uu > 0 ? sqrt(ww) / sqrt(uu) : 1.0;
    }
#pragma omp parallel for schedule(dynamic, 4) if (n > 1)
    for (int j = 0; j < n; j++) {
        const piece *q = &o->pc[PIECE(j)];
        lamb_piece2(o->p + q->off, o->m + q->off, o->v + q->off, q->n, &s, o->t[q->t].decay,
                    (float)(lr * o->r[q->t]));
    }
    return 0;
}
#undef PIECE

int kopt_step(kopt *o, int64_t step, int64_t total_steps, double *lr_out, double *gn_out)
{
    double gn = kopt_grad_norm(o);
    if (gn_out) *gn_out = gn;
    return step_pieces(o, step, total_steps, gn, NULL, o->npc, lr_out);
}

int kopt_step_range(kopt *o, int64_t step, int64_t total_steps, double gn, size_t lo, size_t hi, double *lr_out)
{
    int j0, j1;
    piece_range(o, lo, hi, &j0, &j1);
    if (o->c.type == KOPT_LAMB && j0 < j1 &&
        (!first_piece(o, o->byoff[j0]) || (j1 < o->npc && !first_piece(o, o->byoff[j1]))))
        return EX_SOFTWARE;
    return step_pieces(o, step, total_steps, gn, o->byoff + j0, j1 - j0, lr_out);
}
