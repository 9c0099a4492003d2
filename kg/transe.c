/* transe.c: TransE training, filtered evaluation and scoring (see transe.h).
 *
 * What it is: a deterministic, multi-threaded CPU trainer of TransE embeddings
 * with self-adversarial negative sampling (Sun et al. 2019, "RotatE") or
 * classic margin ranking (Bordes et al. 2013), and the standard filtered
 * link-prediction evaluation. What it is not: a general KGE library (one
 * model), nor a store (the caller persists the vectors).
 *
 * Names: E = n_ent, R = n_rel, D = dim, P = D rounded up to a multiple of 16
 * (internal row stride; the padding columns are zero and stay zero),
 * B = batch (positives per step), Q = queries per step (B, or 2B with
 * both_sides), S = share (queries per chunk), K = negatives per chunk,
 * C = chunks per step = ceil(Q / S).
 *
 * Model. score(h, r, t) = -d(h, r, t), d = || e_h + r - e_t ||_p, p in {1, 2}.
 * A query is one positive with one side to corrupt: tail side (anchor h,
 * target t, q = e_h + r) or head side (anchor t, target h, q = e_t - r); in
 * both cases the distance of a candidate c is || q - e_c ||_p.
 *
 * Loss (per query i, positive distance d_i^+, negative distances d_ij):
 *   self-adversarial (adversarial = 1), gamma = margin, alpha = adv_temperature:
 *     L_i = 1/2 [ -log sig(gamma - d_i^+) - sum_j p_ij log sig(d_ij - gamma) ],
 *     p_ij = softmax_j(-alpha d_ij), treated as a constant (no gradient);
 *     alpha = 0 gives uniform weights 1/K.
 *   margin ranking (adversarial = 0):
 *     L_i = 1/K' sum_j max(0, gamma + d_i^+ - d_ij)   (K' = valid negatives).
 *   A negative equal to the query's own target is excluded (masked) for that
 *   query. The step loss is the mean of L_i over its Q queries.
 *   Either way dL/dd_ij <= 0 and dL/dd_i^+ >= 0; the kernels rely on it.
 *
 * Sampling. Each epoch visits the training triples in a fresh permutation;
 * consecutive B of them form a step (the last step may be smaller). With
 * both_sides = 1 every positive gives a tail query and a head query; with 0 it
 * gives one, the head being corrupted with probability tph / (tph + hpt) of
 * its relation ("bern", Wang et al. 2014). Queries are cut into chunks of S
 * consecutive queries; the S queries of a chunk share K negatives drawn
 * uniformly (with replacement) from all entities. Sharing turns the distance
 * and gradient computations into dense S x K blocks (register-blocked 4 x 4,
 * cache-friendly) and keeps the number of rows to update per step small, at
 * the cost of correlated negatives inside a chunk.
 *
 * Randomness is counter-based: every draw is SplitMix64 of a key derived from
 * (seed, purpose, epoch, step) and a counter (the index of the draw), so no
 * result depends on the schedule of threads.
 *
 * Optimizer. Adam (PyTorch's formula, betas 0.9 / 0.999, eps 1e-8) applied
 * lazily: only the rows that received a gradient in the step are updated
 * (like torch.optim.SparseAdam), with the global step count in the bias
 * corrections; or Adagrad (eps 1e-10, zero initial accumulator), also on the
 * touched rows only. Margin ranking additionally renormalizes every updated
 * entity row to unit L2 norm (the TransE constraint).
 *
 * Schedule. Every eval_every epochs the filtered MRR on a fixed seeded sample
 * of eval_sample validation triples is measured; a better value saves a copy
 * of the weights, a check without improvement multiplies the learning rate by
 * lr_decay, and patience such checks in a row end training. The weights of the
 * best check are returned (a run ended by stop / max_seconds / the epoch limit
 * is checked once more at the end).
 *
 * Initialization. All parameters uniform in [-s, s], s = init_scale, or
 * (gamma + 2) / D when init_scale = 0 (RotatE's "embedding range"), drawn from
 * the seed; with margin ranking entities are then renormalized to unit norm.
 *
 * Evaluation. The known triples of all splits are kept as two sorted arrays,
 * (h, r, t) and (t, r, h), deduplicated; the filter of a query is a binary-
 * searched range. Queries are ranked in tiles of 32 against every entity with
 * the same 4 x 4 blocked distance kernel as training (exact distances, L1 or
 * L2, no BLAS); filtered rank = 1 + #closer + #tied / 2 (mean rank of ties).
 *
 * Memory. Parameters, Adam moments and the best-weights copy: 4 (E + R) P
 * floats (Adagrad: 3); step buffers about (4 Q + 2 C K) P floats; evaluation
 * 32 E floats per thread.
 *
 * Invariants / determinism.
 *  1. Chunks are computed in parallel, each writing only its own slice of the
 *     step buffers (gq, gp, gn, dist, coefficients, loss): no two threads write
 *     the same memory.
 *  2. Gradients are reduced per parameter row by summing the row's
 *     contributions in a fixed order (a stable counting sort by row id of the
 *     list: anchor and target of each query in query order, then the negatives
 *     by chunk), and each row is updated by exactly one thread. The result is
 *     therefore bit-identical for a given (data, options, seed) whatever the
 *     thread count.
 *  3. Sums over a vector's components use 16 explicit lanes combined by a fixed
 *     tree (lanes_sum / vsum16), and all other float work is elementwise; the
 *     project compiles in ISO C mode (no FMA contraction). So the AVX-512, AVX2
 *     and SSE2 clones of the kernels (target_clones) give identical bits.
 *     exp/log in the loss use the portable polynomials kexpf / klog1pf for the
 *     same reason.
 *  4. Evaluation ranks each query independently into its own slot; sums are
 *     taken afterwards in query order.
 *
 * Speed (FB15k-237, defaults, 2 cores): about 1.2 s per epoch, ~9x less
 * than the same configuration in PyTorch (bench/transe/README.md).
 *
 * Defaults: see ktranse_opts_default and bench/transe/README.md.
 */
#define _POSIX_C_SOURCE 200809L
#include "kg/transe.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#include "util/kmath.h" /* no FMA contraction, KCLONES, KINLINE, kexpf */

#define VL 16 /* lanes of every reduction; P is a multiple of VL */

/* 64-byte vectors are only ever passed between always-inlined static helpers,
 * so the psABI note about their calling convention does not concern us. */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float v16 __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define SHUF(a, b, ...) __builtin_shuffle(a, b, (v16i){__VA_ARGS__})
#endif

static inline size_t pad16(int D) { return ((size_t)D + VL - 1) / VL * VL; }

/* ---- counter-based random numbers ------------------------------------------ */

enum { RNG_INIT = 1, RNG_PERM = 2, RNG_NEG = 3, RNG_SIDE = 4, RNG_VALID = 5 };

static uint64_t mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Key of a random stream: (seed, purpose, a, b). */
static uint64_t rng_key(uint64_t seed, uint64_t purpose, uint64_t a, uint64_t b)
{
    return mix64(mix64(mix64(seed ^ (purpose << 56)) ^ a) + b);
}

/* The i-th 64-bit draw of stream key. */
static inline uint64_t rng_at(uint64_t key, uint64_t i) { return mix64(key + i * 0xD1B54A32D192ED03ull); }

/* Uniform in [0, n) (multiply-shift; bias < n / 2^32, negligible here). */
static inline uint32_t rng_below(uint64_t x, uint32_t n) { return (uint32_t)(((x >> 32) * (uint64_t)n) >> 32); }

/* Uniform float in [-1, 1). */
static inline float rng_sym(uint64_t x) { return (float)((double)(x >> 40) * (1.0 / 8388608.0) - 1.0); }

/* ---- scalar helpers ---------------------------------------------------------- */

/* Sum of 16 lanes by a fixed tree: (l, l+8), then (l, l+4), (l, l+2), (l, l+1). */
KINLINE float lanes_sum(float acc[VL])
{
    for (int w = VL / 2; w; w >>= 1)
        for (int l = 0; l < w; l++) acc[l] += acc[l + w];
    return acc[0];
}

/* Sum of x (n) by 16 lanes (x[j] into lane j % 16) and lanes_sum: a fixed order. */
KINLINE float sum_lanes(const float *x, int n)
{
    float acc[VL] = {0};
    int j = 0;
    for (; j + VL <= n; j += VL)
#pragma GCC unroll 16
        for (int l = 0; l < VL; l++) acc[l] += x[j + l];
    for (int l = 0; j + l < n; l++) acc[l] += x[j + l];
    return lanes_sum(acc);
}

/* Minimum of x (n), by 16 lanes like sum_lanes (a min is exact in any order). */
KINLINE float min_lanes(const float *x, int n)
{
    float acc[VL];
#pragma GCC unroll 16
    for (int l = 0; l < VL; l++) acc[l] = FLT_MAX;
    int j = 0;
    for (; j + VL <= n; j += VL)
#pragma GCC unroll 16
        for (int l = 0; l < VL; l++) acc[l] = x[j + l] < acc[l] ? x[j + l] : acc[l];
    for (int l = 0; j + l < n; l++) acc[l] = x[j + l] < acc[l] ? x[j + l] : acc[l];
    for (int l = 1; l < VL; l++) acc[0] = acc[l] < acc[0] ? acc[l] : acc[0];
    return acc[0];
}

/* log(1 + y) for y in [0, 1]: 2 atanh(s), s = y / (2 + y) <= 1/3, series to s^13
 * (relative error < 2e-8 before rounding). */
KINLINE float klog1pf(float y)
{
    float s = y / (2.0f + y), s2 = s * s;
    float p = 1.0f / 13;
    p = p * s2 + 1.0f / 11;
    p = p * s2 + 1.0f / 9;
    p = p * s2 + 1.0f / 7;
    p = p * s2 + 1.0f / 5;
    p = p * s2 + 1.0f / 3;
    p = p * s2 + 1.0f;
    return 2.0f * s * p;
}

/* ---- vector kernels (rows are P floats, P % 16 == 0) -------------------------- */

/* Unaligned loads and stores of 16 floats. Macros rather than functions: no
 * 64-byte vector is passed or returned by value (whose calling convention
 * depends on the ISA of each clone). */
typedef float v16u __attribute__((vector_size(64), aligned(4), may_alias));
#define vld(p) (*(const v16u *)(p))
#define vst(p, v) (*(v16u *)(p) = (v))
#define vabs(x) ((v16)((v16i)(x) & INT32_MAX))
/* a (>= 0, as bits ab) with the sign of s, per lane */
#define vsignof(s, ab) ((v16)(((v16i)(s) & INT32_MIN) | (ab)))
KINLINE int32_t fbits(float a)
{
    int32_t b;
    memcpy(&b, &a, sizeof b);
    return b;
}

KINLINE float vsum(const v16 *a)
{
    float t[VL];
    vst(t, *a);
    return lanes_sum(t);
}

/* r[k] = vsum(a[k]) for k < 16, with the additions of lanes_sum in the same order. */
KINLINE void vsum16(v16 *r, const v16 a[16])
{
    v16 c[8], d[4], e[2];
    #pragma GCC unroll 16
    for (int k = 0; k < 8; k++)
        c[k] = SHUF(a[2 * k], a[2 * k + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
               SHUF(a[2 * k], a[2 * k + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    #pragma GCC unroll 16
    for (int k = 0; k < 4; k++)
        d[k] = SHUF(c[2 * k], c[2 * k + 1], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
               SHUF(c[2 * k], c[2 * k + 1], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    #pragma GCC unroll 16
    for (int k = 0; k < 2; k++)
        e[k] = SHUF(d[2 * k], d[2 * k + 1], 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29) +
               SHUF(d[2 * k], d[2 * k + 1], 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
    *r = SHUF(e[0], e[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30) +
           SHUF(e[0], e[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}

/* Distance of one pair (scalar path of the 4 x 4 kernel, same arithmetic). */
KINLINE float dist11(const float *q, const float *x, size_t P, int norm)
{
    v16 acc = {0};
    if (norm == 1)
        for (size_t d = 0; d < P; d += VL) acc += vabs(vld(q + d) - vld(x + d));
    else
        for (size_t d = 0; d < P; d += VL) {
            v16 t = vld(q + d) - vld(x + d);
            acc += t * t;
        }
    float s = vsum(&acc);
    return norm == 1 ? s : sqrtf(s);
}

/* out[a * ldo + b] = ||q_a - x_b|| for a, b < 4; q rows at stride P, x rows at stride P. */
KINLINE void dist44(const float *q, const float *x, size_t P, int norm, float *out, size_t ldo)
{
    v16 acc[16];
    #pragma GCC unroll 16
    for (int k = 0; k < 16; k++) acc[k] = (v16){0};
    if (norm == 1) {
        for (size_t d = 0; d < P; d += VL) {
            v16 qa[4], xb[4];
            #pragma GCC unroll 16
            for (int a = 0; a < 4; a++) qa[a] = vld(q + a * P + d);
            #pragma GCC unroll 16
            for (int b = 0; b < 4; b++) xb[b] = vld(x + b * P + d);
            #pragma GCC unroll 16
            for (int a = 0; a < 4; a++)
                #pragma GCC unroll 16
                for (int b = 0; b < 4; b++) acc[a * 4 + b] += vabs(qa[a] - xb[b]);
        }
    } else {
        for (size_t d = 0; d < P; d += VL) {
            v16 qa[4], xb[4];
            #pragma GCC unroll 16
            for (int a = 0; a < 4; a++) qa[a] = vld(q + a * P + d);
            #pragma GCC unroll 16
            for (int b = 0; b < 4; b++) xb[b] = vld(x + b * P + d);
            #pragma GCC unroll 16
            for (int a = 0; a < 4; a++)
                #pragma GCC unroll 16
                for (int b = 0; b < 4; b++) {
                    v16 t = qa[a] - xb[b];
                    acc[a * 4 + b] += t * t;
                }
        }
    }
    float r[16];
    v16 sums;
    vsum16(&sums, acc);
    vst(r, sums);
    #pragma GCC unroll 16
    for (int a = 0; a < 4; a++)
        #pragma GCC unroll 16
        for (int b = 0; b < 4; b++) out[a * ldo + b] = norm == 1 ? r[a * 4 + b] : sqrtf(r[a * 4 + b]);
}

/* out[i * ldo + j] = ||Q_i - X_j||_p for i < nq, j < nx; Q (nq, P), X (nx, P). */
KCLONES
static void dist_block(const float *Q, size_t nq, const float *X, size_t nx, size_t P, int norm,
                       float *out, size_t ldo)
{
    const size_t JB = 128; /* candidate rows per cache block */
    for (size_t j0 = 0; j0 < nx; j0 += JB) {
        size_t j1 = j0 + JB < nx ? j0 + JB : nx;
        for (size_t i = 0; i < nq; i += 4) {
            size_t j = j0;
            if (i + 4 <= nq)
                for (; j + 4 <= j1; j += 4) dist44(Q + i * P, X + j * P, P, norm, out + i * ldo + j, ldo);
            for (size_t a = i; a < i + 4 && a < nq; a++)
                for (size_t b = j; b < j1; b++) out[a * ldo + b] = dist11(Q + a * P, X + b * P, P, norm);
        }
    }
}

/* One pair of the gradient: c = coef * dd/dq (L1: coef * sign(q - x); L2: coef * (q - x),
 * coef already divided by the distance), then gq -= c, gx += c. coef >= 0. */
KINLINE void grad11(const float *q, const float *x, float coef, int norm, float *gq, float *gx, size_t P)
{
    int32_t cb = fbits(coef);
    for (size_t d = 0; d < P; d += VL) {
        v16 t = vld(q + d) - vld(x + d);
        v16 c = norm == 1 ? vsignof(t, cb) : coef * t;
        vst(gq + d, vld(gq + d) - c);
        vst(gx + d, vld(gx + d) + c);
    }
}

/* Gradient of the positive pair: c = coef * dd/dq, gq += c, gp -= c (coef >= 0). */
KINLINE void grad11_pos(const float *q, const float *x, float coef, int norm, float *gq, float *gx, size_t P)
{
    int32_t cb = fbits(coef);
    for (size_t d = 0; d < P; d += VL) {
        v16 t = vld(q + d) - vld(x + d);
        v16 c = norm == 1 ? vsignof(t, cb) : coef * t;
        vst(gq + d, vld(gq + d) + c);
        vst(gx + d, vld(gx + d) - c);
    }
}

/* The 4 x 4 block of grad11 (q rows a, x rows b; coef[a * ldc + b]); per
 * accumulator the same sequence of operations as grad11 in (a, b) order. */
KINLINE void grad44(const float *q, const float *x, const float *coef, size_t ldc, int norm,
                          float *gq, float *gx, size_t P)
{
    float cf[16];
    int32_t cb[16];
    #pragma GCC unroll 16
    for (int a = 0; a < 4; a++)
        #pragma GCC unroll 16
        for (int b = 0; b < 4; b++) {
            cf[a * 4 + b] = coef[a * ldc + b];
            cb[a * 4 + b] = fbits(cf[a * 4 + b]);
        }
    for (size_t d = 0; d < P; d += VL) {
        v16 qa[4], xb[4], ga[4], gb[4];
        #pragma GCC unroll 16
        for (int a = 0; a < 4; a++) {
            qa[a] = vld(q + a * P + d);
            ga[a] = vld(gq + a * P + d);
        }
        #pragma GCC unroll 16
        for (int b = 0; b < 4; b++) {
            xb[b] = vld(x + b * P + d);
            gb[b] = vld(gx + b * P + d);
        }
        #pragma GCC unroll 16
        for (int a = 0; a < 4; a++)
            #pragma GCC unroll 16
            for (int b = 0; b < 4; b++) {
                v16 t = qa[a] - xb[b];
                v16 c = norm == 1 ? vsignof(t, cb[a * 4 + b]) : cf[a * 4 + b] * t;
                ga[a] -= c;
                gb[b] += c;
            }
        #pragma GCC unroll 16
        for (int a = 0; a < 4; a++) vst(gq + a * P + d, ga[a]);
        #pragma GCC unroll 16
        for (int b = 0; b < 4; b++) vst(gx + b * P + d, gb[b]);
    }
}

/* GQ_i -= sum_j coef_ij dd(Q_i, X_j)/dQ_i, GX_j += the same terms, for i < nq,
 * j < nx, coef (nq, ldc). Accumulation order: for GQ_i ascending j, for GX_j
 * ascending i, whatever the blocking. */
KCLONES
static void grad_block(const float *Q, size_t nq, const float *X, size_t nx, const float *coef, size_t ldc,
                       size_t P, int norm, float *GQ, float *GX)
{
    const size_t JB = 32; /* negative rows (and their gradients) per cache block */
    for (size_t j0 = 0; j0 < nx; j0 += JB) {
        size_t j1 = j0 + JB < nx ? j0 + JB : nx;
        for (size_t i = 0; i < nq; i += 4) {
            if (i + 4 <= nq) {
                size_t j = j0;
                for (; j + 4 <= j1; j += 4)
                    grad44(Q + i * P, X + j * P, coef + i * ldc + j, ldc, norm, GQ + i * P, GX + j * P, P);
                for (size_t a = i; a < i + 4; a++)
                    for (size_t b = j; b < j1; b++)
                        grad11(Q + a * P, X + b * P, coef[a * ldc + b], norm, GQ + a * P, GX + b * P, P);
            } else {
                for (size_t a = i; a < nq; a++)
                    for (size_t b = j0; b < j1; b++)
                        grad11(Q + a * P, X + b * P, coef[a * ldc + b], norm, GQ + a * P, GX + b * P, P);
            }
        }
    }
}

/* ---- one training step -------------------------------------------------------- */

typedef struct contrib {
    const float *vec; /* (P) */
    uint32_t id;
    float scale;      /* +1 or -1 */
} contrib;

/* Step workspace, sized once for the largest step. */
typedef struct step_ws {
    int D, K, S;
    size_t P, Qmax, Cmax;
    uint32_t E, R;
    /* queries */
    uint32_t *anchor, *target, *rid; /* (Q) */
    uint8_t *side;                   /* (Q) 0 tail, 1 head */
    uint32_t *neg;                   /* (C, K) */
    float *qv, *pv, *gq, *gp;        /* (Q, P) */
    float *nv, *gn;                  /* (C * K, P) */
    float *dist, *coef;              /* (Q, K) */
    float *dpos, *cpos;              /* (Q) */
    double *closs;                   /* (C) */
    /* reduction */
    contrib *ce, *cr;                /* (2Q + C*K), (Q) */
    contrib *sorted;                 /* (2Q + C*K) */
    uint32_t *cnt;                   /* (max(E, R) + 1) */
    uint32_t *uniq;                  /* (2Q + C*K) unique row ids */
    uint32_t *ustart;                /* (2Q + C*K + 1) */
    float *grow;                     /* (threads, P) */
} step_ws;

static void ws_free(step_ws *w)
{
    free(w->anchor); free(w->target); free(w->rid); free(w->side); free(w->neg);
    free(w->qv); free(w->pv); free(w->gq); free(w->gp); free(w->nv); free(w->gn);
    free(w->dist); free(w->coef); free(w->dpos); free(w->cpos); free(w->closs);
    free(w->ce); free(w->cr); free(w->sorted); free(w->cnt); free(w->uniq); free(w->ustart);
    free(w->grow);
    memset(w, 0, sizeof *w);
}

static void ws_init(step_ws *w, int D, int K, int S, size_t Qmax, uint32_t E, uint32_t R, int threads)
{
    memset(w, 0, sizeof *w);
    w->D = D; w->K = K; w->S = S; w->Qmax = Qmax; w->E = E; w->R = R;
    w->P = pad16(D);
    w->Cmax = (Qmax + (size_t)S - 1) / (size_t)S;
    size_t Q = Qmax, NK = w->Cmax * (size_t)K, nce = 2 * Q + NK, P = w->P;
    w->anchor = xmalloc(Q * sizeof(uint32_t));
    w->target = xmalloc(Q * sizeof(uint32_t));
    w->rid = xmalloc(Q * sizeof(uint32_t));
    w->side = xmalloc(Q);
    w->neg = xmalloc(NK * sizeof(uint32_t));
    w->qv = xmalloc(Q * P * sizeof(float));
    w->pv = xmalloc(Q * P * sizeof(float));
    w->gq = xmalloc(Q * P * sizeof(float));
    w->gp = xmalloc(Q * P * sizeof(float));
    w->nv = xmalloc(NK * P * sizeof(float));
    w->gn = xmalloc(NK * P * sizeof(float));
    w->dist = xmalloc(Q * K * sizeof(float));
    w->coef = xmalloc(Q * K * sizeof(float));
    w->dpos = xmalloc(Q * sizeof(float));
    w->cpos = xmalloc(Q * sizeof(float));
    w->closs = xmalloc(w->Cmax * sizeof(double));
    w->ce = xmalloc(nce * sizeof(contrib));
    w->cr = xmalloc(Q * sizeof(contrib));
    w->sorted = xmalloc(nce * sizeof(contrib));
    w->cnt = xmalloc(((size_t)(E > R ? E : R) + 1) * sizeof(uint32_t));
    w->uniq = xmalloc(nce * sizeof(uint32_t));
    w->ustart = xmalloc((nce + 1) * sizeof(uint32_t));
    w->grow = xmalloc((size_t)(threads > 0 ? threads : 1) * P * sizeof(float));
}

/* Loss of queries [i0, i1) (chunk c) from dist / dpos: writes coef (>= 0, the
 * negated dL/dd_ij, divided by d_ij for L2) and cpos (dL/dd_i^+, likewise), both
 * scaled by invQ; returns the summed (unscaled) loss. dist rows are clobbered. */
KCLONES
static double chunk_weights(const ktranse_opts *o, step_ws *ws, size_t c, size_t i0, size_t i1, float invQ)
{
    const int K = ws->K, l2 = o->norm == 2;
    const uint32_t *neg = ws->neg + c * K;
    const float g = o->margin, alpha = o->adv_temperature;
    double loss = 0;
    for (size_t i = i0; i < i1; i++) {
        float *di = ws->dist + i * K, *ci = ws->coef + i * K;
        const uint32_t tg = ws->target[i];
        const float dp = ws->dpos[i];
        if (o->adversarial) {
            /* positive: -log sig(g - dp) = softplus(dp - g), derivative sig(dp - g) */
            float u = dp - g, en = kexpf(-fabsf(u)), inv = 1.0f / (1.0f + en);
            float sp = (u > 0 ? u : 0) + klog1pf(en), sg = u >= 0 ? inv : en * inv;
            loss += 0.5 * sp;
            float cp = 0.5f * sg * invQ;
            ws->cpos[i] = l2 ? (dp > 0 ? cp / dp : 0) : cp;
            /* negatives equal to the target are masked: far away for the minimum,
             * then zero weight and loss (rare: usually nm == 0) */
            int nm = 0;
            for (int j = 0; j < K; j++) nm += neg[j] == tg;
            if (nm == K) {
                for (int j = 0; j < K; j++) ci[j] = 0;
                continue;
            }
            if (nm)
                for (int j = 0; j < K; j++)
                    if (neg[j] == tg) di[j] = FLT_MAX;
            const float md = min_lanes(di, K);
            /* softmax numerators, then the loss terms and coefficients */
#pragma omp simd
            for (int j = 0; j < K; j++) ci[j] = kexpf(-alpha * (di[j] - md));
            if (nm)
                for (int j = 0; j < K; j++)
                    if (neg[j] == tg) ci[j] = 0;
            const float iz = 1.0f / sum_lanes(ci, K);
#pragma omp simd
            for (int j = 0; j < K; j++) {
                /* -log sig(d - g) = softplus(g - d), derivative -sig(g - d) */
                float dj = di[j], v = g - dj, e = kexpf(-fabsf(v)), iv = 1.0f / (1.0f + e);
                float s = v >= 0 ? iv : e * iv, spv = (v > 0 ? v : 0) + klog1pf(e);
                float p = ci[j] * iz;
                float cj = 0.5f * p * s * invQ, dd = dj > 0 ? dj : 1.0f;
                float c2 = dj > 0 ? cj / dd : 0.0f;
                ci[j] = l2 ? c2 : cj;
                di[j] = p * spv; /* loss term */
            }
            if (nm)
                for (int j = 0; j < K; j++)
                    if (neg[j] == tg) ci[j] = di[j] = 0;
            loss += 0.5 * sum_lanes(di, K);
        } else {
            int nvalid = 0;
            for (int j = 0; j < K; j++) nvalid += neg[j] != tg;
            const float inv = nvalid ? 1.0f / (float)nvalid : 0.0f;
            float cp = 0, l = 0;
            for (int j = 0; j < K; j++) {
                float dj = di[j], a = g + dp - dj;
                if (neg[j] != tg && a > 0) {
                    l += a * inv;
                    cp += inv;
                    ci[j] = l2 ? (dj > 0 ? inv * invQ / dj : 0.0f) : inv * invQ;
                } else {
                    ci[j] = 0;
                }
            }
            loss += l;
            cp *= invQ;
            ws->cpos[i] = l2 ? (dp > 0 ? cp / dp : 0) : cp;
        }
    }
    return loss;
}

/* Forward and backward of chunk c (queries [c*S, min((c+1)*S, Q))). ent, rel padded (P). */
static void chunk_run(const ktranse_opts *o, step_ws *ws, const float *ent, const float *rel,
                      size_t Q, size_t c)
{
    const int K = ws->K;
    const size_t P = ws->P;
    size_t i0 = c * (size_t)ws->S, i1 = i0 + (size_t)ws->S < Q ? i0 + (size_t)ws->S : Q, nq = i1 - i0;
    const uint32_t *neg = ws->neg + c * K;
    float *nv = ws->nv + c * K * P, *gn = ws->gn + c * K * P;
    /* gather */
    for (size_t i = i0; i < i1; i++) {
        const float *a = ent + (size_t)ws->anchor[i] * P, *r = rel + (size_t)ws->rid[i] * P;
        float *q = ws->qv + i * P;
        if (ws->side[i] == 0)
            for (size_t d = 0; d < P; d++) q[d] = a[d] + r[d];
        else
            for (size_t d = 0; d < P; d++) q[d] = a[d] - r[d];
        memcpy(ws->pv + i * P, ent + (size_t)ws->target[i] * P, P * sizeof(float));
    }
    for (int j = 0; j < K; j++) memcpy(nv + (size_t)j * P, ent + (size_t)neg[j] * P, P * sizeof(float));
    /* forward */
    dist_block(ws->qv + i0 * P, nq, nv, K, P, o->norm, ws->dist + i0 * K, K);
    for (size_t i = i0; i < i1; i++) ws->dpos[i] = dist11(ws->qv + i * P, ws->pv + i * P, P, o->norm);
    ws->closs[c] = chunk_weights(o, ws, c, i0, i1, 1.0f / (float)Q);
    /* backward: gq_i = cpos_i g(q_i - p_i) - sum_j coef_ij g(q_i - n_j), gp_i = -cpos_i g(q_i - p_i),
     * gn_j = sum_i coef_ij g(q_i - n_j), g = sign (L1) or q - x (L2; coef holds the 1/d). */
    memset(gn, 0, (size_t)K * P * sizeof(float));
    memset(ws->gq + i0 * P, 0, nq * P * sizeof(float));
    memset(ws->gp + i0 * P, 0, nq * P * sizeof(float));
    for (size_t i = i0; i < i1; i++)
        grad11_pos(ws->qv + i * P, ws->pv + i * P, ws->cpos[i], o->norm, ws->gq + i * P, ws->gp + i * P, P);
    grad_block(ws->qv + i0 * P, nq, nv, K, ws->coef + i0 * K, K, P, o->norm, ws->gq + i0 * P, gn);
}

/* Stable counting sort of contributions c (n) by id (< nid); fills ws->sorted,
 * ws->uniq (nu ids ascending) and ws->ustart (nu + 1 offsets). Returns nu. */
static size_t group_rows(step_ws *ws, const contrib *c, size_t n, uint32_t nid)
{
    uint32_t *cnt = ws->cnt;
    memset(cnt, 0, ((size_t)nid + 1) * sizeof(uint32_t));
    for (size_t i = 0; i < n; i++) cnt[c[i].id + 1]++;
    size_t nu = 0;
    for (uint32_t id = 0; id < nid; id++) {
        if (cnt[id + 1]) {
            ws->ustart[nu] = cnt[id];
            ws->uniq[nu++] = id;
        }
        cnt[id + 1] += cnt[id];
    }
    ws->ustart[nu] = (uint32_t)n;
    for (size_t i = 0; i < n; i++) ws->sorted[cnt[c[i].id]++] = c[i];
    return nu;
}

typedef struct optim {
    int kind;               /* KTRANSE_ADAM / KTRANSE_ADAGRAD */
    float *m_ent, *v_ent;   /* (E, P) Adam first/second moments or Adagrad sums (v) */
    float *m_rel, *v_rel;   /* (R, P) */
    long step;              /* Adam steps taken */
    float lr;
    int renorm;             /* 1: renormalize entity rows to unit L2 norm after update */
} optim;

/* sqrt of each lane of v (>= 0) as v / sqrt(v): the reciprocal square root from
 * the bit-level seed 0x5f375a86 refined by three Newton steps (relative error
 * ~1e-7), using only + - * so it vectorizes on every ISA (a sqrtf call does not
 * without -fno-math-errno) and gives the same bits everywhere. 0 maps to 0. */
KINLINE void vsqrt(v16 *out, const v16 *v)
{
    v16 x = *v, r = (v16)((v16i){0} + 0x5f375a86 - ((v16i)x >> 1)), hx = 0.5f * x;
#pragma GCC unroll 3
    for (int k = 0; k < 3; k++) r = r * (1.5f - hx * r * r);
    *out = x * r;
}

/* Updates one row p with gradient g (P). */
KCLONES
static void optim_row(const optim *op, float *p, float *m, float *v, const float *g, size_t P,
                      float step_size, float sbc2)
{
    if (op->kind == KTRANSE_ADAM) {
        for (size_t d = 0; d < P; d += VL) {
            v16 gd = vld(g + d), md = vld(m + d), vd = vld(v + d), pd = vld(p + d), den;
            md = 0.9f * md + 0.1f * gd;
            vd = 0.999f * vd + 0.001f * gd * gd;
            vsqrt(&den, &vd);
            pd -= step_size * md / (den / sbc2 + 1e-8f);
            vst(m + d, md);
            vst(v + d, vd);
            vst(p + d, pd);
        }
    } else {
        const float lr = op->lr;
        for (size_t d = 0; d < P; d += VL) {
            v16 gd = vld(g + d), vd = vld(v + d), pd = vld(p + d), den;
            vd += gd * gd;
            vsqrt(&den, &vd);
            pd -= lr * gd / (den + 1e-10f);
            vst(v + d, vd);
            vst(p + d, pd);
        }
    }
}

/* Sums the contributions of each row and either applies the optimizer to
 * param (op != NULL) or writes the gradient to dense (op == NULL). */
static void apply_rows(step_ws *ws, size_t nu, float *param, float *mom, float *sec, const optim *op,
                       int is_ent, float *dense, int nthreads)
{
    const size_t P = ws->P;
    double bc1 = 1, bc2 = 1;
    if (op && op->kind == KTRANSE_ADAM) {
        bc1 = 1.0 - pow(0.9, (double)op->step);
        bc2 = 1.0 - pow(0.999, (double)op->step);
    }
    const float step_size = op ? (float)(op->lr / bc1) : 0, sbc2 = (float)sqrt(bc2);
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (size_t u = 0; u < nu; u++) {
        float *g = ws->grow + (size_t)omp_get_thread_num() * P;
        uint32_t id = ws->uniq[u];
        memset(g, 0, P * sizeof(float));
        for (uint32_t k = ws->ustart[u]; k < ws->ustart[u + 1]; k++) {
            const float *v = ws->sorted[k].vec;
            if (ws->sorted[k].scale > 0)
                for (size_t d = 0; d < P; d += VL) vst(g + d, vld(g + d) + vld(v + d));
            else
                for (size_t d = 0; d < P; d += VL) vst(g + d, vld(g + d) - vld(v + d));
        }
        if (!op) {
            memcpy(dense + (size_t)id * P, g, P * sizeof(float));
            continue;
        }
        float *p = param + (size_t)id * P;
        optim_row(op, p, mom ? mom + (size_t)id * P : NULL, sec + (size_t)id * P, g, P, step_size, sbc2);
        if (is_ent && op->renorm) {
            v16 acc = {0};
            for (size_t d = 0; d < P; d += VL) acc += vld(p + d) * vld(p + d);
            float n = sqrtf(vsum(&acc));
            if (n > 0)
                for (size_t d = 0; d < P; d++) p[d] /= n;
        }
    }
}

/* Runs the Q queries already in ws (anchor/target/rid/side/neg): forward,
 * backward, reduction; then applies op, or writes dense (E, P) / (R, P)
 * gradients (op NULL). ent, rel padded (P). Returns the mean loss. */
static double step_run(const ktranse_opts *o, step_ws *ws, float *ent, float *rel, size_t Q,
                       const optim *op, float *gent, float *grel, int nthreads)
{
    const size_t P = ws->P, K = (size_t)ws->K;
    size_t C = (Q + (size_t)ws->S - 1) / (size_t)ws->S;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (size_t c = 0; c < C; c++) chunk_run(o, ws, ent, rel, Q, c);
    double loss = 0;
    for (size_t c = 0; c < C; c++) loss += ws->closs[c];
    loss /= (double)Q;
    /* contributions in a fixed order: per query anchor then target, then negatives by chunk */
    size_t n = 0;
    for (size_t i = 0; i < Q; i++) {
        ws->ce[n++] = (contrib){ws->gq + i * P, ws->anchor[i], 1.0f};
        ws->ce[n++] = (contrib){ws->gp + i * P, ws->target[i], 1.0f};
        ws->cr[i] = (contrib){ws->gq + i * P, ws->rid[i], ws->side[i] ? -1.0f : 1.0f};
    }
    for (size_t k = 0; k < C * K; k++) ws->ce[n++] = (contrib){ws->gn + k * P, ws->neg[k], 1.0f};
    size_t nu = group_rows(ws, ws->ce, n, ws->E);
    apply_rows(ws, nu, ent, op ? op->m_ent : NULL, op ? op->v_ent : NULL, op, 1, gent, nthreads);
    nu = group_rows(ws, ws->cr, Q, ws->R);
    apply_rows(ws, nu, rel, op ? op->m_rel : NULL, op ? op->v_rel : NULL, op, 0, grel, nthreads);
    return loss;
}

static int opts_check(const ktranse_opts *o, char *err, size_t errlen)
{
    const char *m = NULL;
    if (o->dim < 1 || o->dim > 1 << 16) m = "dim must be in 1..65536";
    else if (o->norm != 1 && o->norm != 2) m = "norm must be 1 or 2";
    else if (o->negatives < 1 || o->negatives > 1 << 16) m = "negatives must be in 1..65536";
    else if (o->batch < 1 || o->batch > 1 << 24) m = "batch must be in 1..16777216";
    else if (o->share < 1) m = "share must be >= 1";
    else if (!(o->lr > 0) || !isfinite(o->lr)) m = "lr must be > 0";
    else if (!isfinite(o->margin) || !isfinite(o->adv_temperature) || o->adv_temperature < 0)
        m = "margin and adv_temperature must be finite, adv_temperature >= 0";
    else if (o->optimizer != KTRANSE_ADAM && o->optimizer != KTRANSE_ADAGRAD) m = "unknown optimizer";
    else if (o->epochs < 0) m = "epochs must be >= 0";
    else if (!(o->init_scale >= 0) || !isfinite(o->init_scale)) m = "init_scale must be >= 0";
    else {
        /* step buffers: about (4 Q + 2 C K) P floats */
        size_t Q = (size_t)o->batch * (o->both_sides ? 2 : 1), C = (Q + (size_t)o->share - 1) / (size_t)o->share;
        double bytes = (4.0 * (double)Q + 2.0 * (double)C * o->negatives) * (double)pad16(o->dim) * 4.0;
        if (bytes > 8e9) m = "batch * negatives * dim / share too large (step buffers > 8 GB)";
    }
    if (m && err && errlen) snprintf(err, errlen, "transe: %s", m);
    return m ? -1 : 0;
}

/* Copies (n, D) rows into a new zero-padded (n, P) array. */
static float *pad_copy(const float *x, size_t n, int D, size_t P)
{
    float *y = xcalloc(n * P > 0 ? n * P : 1, sizeof(float));
    for (size_t i = 0; i < n; i++) memcpy(y + i * P, x + i * (size_t)D, (size_t)D * sizeof(float));
    return y;
}

static void unpad_copy(float *x, const float *y, size_t n, int D, size_t P)
{
    for (size_t i = 0; i < n; i++) memcpy(x + i * (size_t)D, y + i * P, (size_t)D * sizeof(float));
}

double ktranse_batch_loss_grad(const ktranse_opts *o, const float *ent, const float *rel,
                               uint32_t n_ent, uint32_t n_rel, const ktriple *pos,
                               const uint8_t *side, size_t nq, const uint32_t *neg,
                               float *gent, float *grel)
{
    if (opts_check(o, NULL, 0) || nq == 0 || n_ent == 0 || n_rel == 0) return NAN;
    for (size_t i = 0; i < nq; i++)
        if (pos[i].h >= n_ent || pos[i].t >= n_ent || pos[i].r >= n_rel) return NAN;
    int S = o->share, K = o->negatives, D = o->dim;
    size_t C = (nq + (size_t)S - 1) / (size_t)S, P = pad16(D);
    for (size_t k = 0; k < C * (size_t)K; k++)
        if (neg[k] >= n_ent) return NAN;
    int nt = o->threads > 0 ? o->threads : omp_get_max_threads();
    step_ws ws;
    ws_init(&ws, D, K, S, nq, n_ent, n_rel, nt);
    for (size_t i = 0; i < nq; i++) {
        ws.side[i] = side[i] ? 1 : 0;
        ws.anchor[i] = side[i] ? pos[i].t : pos[i].h;
        ws.target[i] = side[i] ? pos[i].h : pos[i].t;
        ws.rid[i] = pos[i].r;
    }
    memcpy(ws.neg, neg, C * K * sizeof(uint32_t));
    float *ep = pad_copy(ent, n_ent, D, P), *rp = pad_copy(rel, n_rel, D, P);
    float *ge = xcalloc((size_t)n_ent * P, sizeof(float)), *gr = xcalloc((size_t)n_rel * P, sizeof(float));
    double loss = step_run(o, &ws, ep, rp, nq, NULL, ge, gr, nt);
    unpad_copy(gent, ge, n_ent, D, P);
    unpad_copy(grel, gr, n_rel, D, P);
    free(ep); free(rp); free(ge); free(gr);
    ws_free(&ws);
    return loss;
}

/* ---- filtered evaluation ------------------------------------------------------- */

typedef struct ftrip { uint32_t a, r, b; } ftrip;

typedef struct filt {
    ftrip *tails;  /* (n) (h, r, t) sorted, unique: the known tails of (h, r) */
    ftrip *heads;  /* (n) (t, r, h) sorted, unique */
    size_t n;
} filt;

static int ftrip_cmp(const void *x, const void *y)
{
    const ftrip *a = x, *b = y;
    if (a->a != b->a) return a->a < b->a ? -1 : 1;
    if (a->r != b->r) return a->r < b->r ? -1 : 1;
    if (a->b != b->b) return a->b < b->b ? -1 : 1;
    return 0;
}

static size_t ftrip_unique(ftrip *v, size_t n)
{
    if (!n) return 0;
    qsort(v, n, sizeof *v, ftrip_cmp);
    size_t m = 1;
    for (size_t i = 1; i < n; i++)
        if (ftrip_cmp(v + i, v + m - 1)) v[m++] = v[i];
    return m;
}

static void filt_build(filt *f, const ktranse_data *d)
{
    size_t n = d->n_train + d->n_valid + d->n_test, k = 0;
    f->tails = xmalloc((n ? n : 1) * sizeof(ftrip));
    f->heads = xmalloc((n ? n : 1) * sizeof(ftrip));
    const ktriple *sp[3] = {d->train, d->valid, d->test};
    size_t sn[3] = {d->n_train, d->n_valid, d->n_test};
    for (int s = 0; s < 3; s++)
        for (size_t i = 0; i < sn[s]; i++, k++) {
            f->tails[k] = (ftrip){sp[s][i].h, sp[s][i].r, sp[s][i].t};
            f->heads[k] = (ftrip){sp[s][i].t, sp[s][i].r, sp[s][i].h};
        }
    f->n = ftrip_unique(f->tails, n);
    ftrip_unique(f->heads, n);
}

static void filt_free(filt *f)
{
    free(f->tails);
    free(f->heads);
    memset(f, 0, sizeof *f);
}

/* [*lo, *hi) = the entries of v (n, sorted) with (a, r). */
static void filt_range(const ftrip *v, size_t n, uint32_t a, uint32_t r, size_t *lo, size_t *hi)
{
    size_t l = 0, h = n;
    while (l < h) {
        size_t m = l + (h - l) / 2;
        if (v[m].a < a || (v[m].a == a && v[m].r < r)) l = m + 1; else h = m;
    }
    *lo = l;
    h = n;
    while (l < h) {
        size_t m = l + (h - l) / 2;
        if (v[m].a < a || (v[m].a == a && v[m].r <= r)) l = m + 1; else h = m;
    }
    *hi = l;
}

/* Filtered rank of the target given the distances dist (E) of one query: 1 +
 * #(other unfiltered candidates strictly closer) + #(other unfiltered candidates
 * at exactly the same distance) / 2, i.e. ties get the mean of the positions the
 * tied group occupies. A NaN target distance ranks last (E). */
static double rank_of(const float *dist, uint32_t E, uint32_t target, const ftrip *f, size_t lo, size_t hi)
{
    float dt = dist[target];
    if (isnan(dt)) return (double)E;
    size_t less = 0, eq = 0;
    for (uint32_t c = 0; c < E; c++) {
        less += dist[c] < dt;
        eq += dist[c] == dt;
    }
    eq--; /* the target itself */
    for (size_t k = lo; k < hi; k++) {
        uint32_t c = f[k].b;
        if (c == target) continue;
        if (dist[c] < dt) less--;
        else if (dist[c] == dt) eq--;
    }
    return 1.0 + (double)less + 0.5 * (double)eq;
}

/* ranks (2 nq): ranks[2i] the tail rank, ranks[2i+1] the head rank of q[i];
 * ent (E, P), rel (R, P) padded. */
static void eval_ranks(const filt *f, const ktriple *q, size_t nq, const float *ent, const float *rel,
                       uint32_t E, size_t P, int norm, int nthreads, double *ranks)
{
    const size_t T = 32; /* queries per tile */
    size_t nquery = 2 * nq, ntiles = (nquery + T - 1) / T;
    float *qbuf = xmalloc((size_t)nthreads * T * P * sizeof(float));
    float *dbuf = xmalloc((size_t)nthreads * T * E * sizeof(float));
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (size_t tile = 0; tile < ntiles; tile++) {
        int tid = omp_get_thread_num();
        float *qv = qbuf + (size_t)tid * T * P, *dist = dbuf + (size_t)tid * T * E;
        size_t k0 = tile * T, k1 = k0 + T < nquery ? k0 + T : nquery;
        for (size_t k = k0; k < k1; k++) {
            const ktriple *x = q + k / 2;
            const float *r = rel + (size_t)x->r * P;
            float *v = qv + (k - k0) * P;
            const float *a = ent + (size_t)(k % 2 == 0 ? x->h : x->t) * P;
            if (k % 2 == 0)
                for (size_t d = 0; d < P; d++) v[d] = a[d] + r[d];
            else
                for (size_t d = 0; d < P; d++) v[d] = a[d] - r[d];
        }
        dist_block(qv, k1 - k0, ent, E, P, norm, dist, E);
        for (size_t k = k0; k < k1; k++) {
            const ktriple *x = q + k / 2;
            size_t lo, hi;
            if (k % 2 == 0) {
                filt_range(f->tails, f->n, x->h, x->r, &lo, &hi);
                ranks[k] = rank_of(dist + (k - k0) * E, E, x->t, f->tails, lo, hi);
            } else {
                filt_range(f->heads, f->n, x->t, x->r, &lo, &hi);
                ranks[k] = rank_of(dist + (k - k0) * E, E, x->h, f->heads, lo, hi);
            }
        }
    }
    free(qbuf);
    free(dbuf);
}

static void eval_summary(const double *ranks, size_t nq, keval *out)
{
    double mrr = 0, h1 = 0, h3 = 0, h10 = 0;
    for (size_t k = 0; k < 2 * nq; k++) {
        mrr += 1.0 / ranks[k];
        h1 += ranks[k] <= 1.0;
        h3 += ranks[k] <= 3.0;
        h10 += ranks[k] <= 10.0;
    }
    double n = nq ? 2.0 * (double)nq : 1.0;
    out->mrr = mrr / n;
    out->hits1 = h1 / n;
    out->hits3 = h3 / n;
    out->hits10 = h10 / n;
    out->triples = nq;
}

static int data_check(const ktranse_data *d, char *err, size_t errlen)
{
    const ktriple *sp[3] = {d->train, d->valid, d->test};
    size_t sn[3] = {d->n_train, d->n_valid, d->n_test};
    static const char *const names[3] = {"train", "valid", "test"};
    for (int s = 0; s < 3; s++) {
        if (sn[s] && !sp[s]) {
            if (err && errlen) snprintf(err, errlen, "transe: %s has %zu triples but no array", names[s], sn[s]);
            return -1;
        }
        for (size_t i = 0; i < sn[s]; i++)
            if (sp[s][i].h >= d->n_ent || sp[s][i].t >= d->n_ent || sp[s][i].r >= d->n_rel) {
                if (err && errlen)
                    snprintf(err, errlen, "transe: %s triple %zu (%u, %u, %u) has an id out of range "
                             "(%u entities, %u relations)", names[s], i, sp[s][i].h, sp[s][i].r,
                             sp[s][i].t, d->n_ent, d->n_rel);
                return -1;
            }
    }
    return 0;
}

int ktranse_eval(const ktranse_data *d, const ktriple *q, size_t nq, const float *ent,
                 const float *rel, int dim, int norm, int threads, keval *out)
{
    memset(out, 0, sizeof *out);
    if (dim < 1 || (norm != 1 && norm != 2) || d->n_ent == 0 || data_check(d, NULL, 0)) return -1;
    for (size_t i = 0; i < nq; i++)
        if (q[i].h >= d->n_ent || q[i].t >= d->n_ent || q[i].r >= d->n_rel) return -1;
    if (nq == 0) return 0;
    int nt = threads > 0 ? threads : omp_get_max_threads();
    size_t P = pad16(dim);
    float *ep = pad_copy(ent, d->n_ent, dim, P), *rp = pad_copy(rel, d->n_rel, dim, P);
    filt f;
    filt_build(&f, d);
    double *ranks = xmalloc(2 * nq * sizeof(double));
    eval_ranks(&f, q, nq, ep, rp, d->n_ent, P, norm, nt, ranks);
    eval_summary(ranks, nq, out);
    free(ranks);
    filt_free(&f);
    free(ep);
    free(rp);
    return 0;
}

void ktranse_score_all(const float *ent, const float *rel, uint32_t n_ent, int dim, int norm,
                       uint32_t h_or_t, uint32_t r, int heads, float *out)
{
    const int D = dim;
    const size_t P = pad16(D);
    float *q = xcalloc(2 * P, sizeof(float)), *x = q + P;
    const float *a = ent + (size_t)h_or_t * D, *rv = rel + (size_t)r * D;
    for (int d = 0; d < D; d++) q[d] = heads ? a[d] - rv[d] : a[d] + rv[d];
    for (uint32_t c = 0; c < n_ent; c++) {
        memcpy(x, ent + (size_t)c * D, (size_t)D * sizeof(float));
        out[c] = 0.0f - dist11(q, x, P, norm == 2 ? 2 : 1); /* +0 for a zero distance */
    }
    free(q);
}

/* ---- training loop ----------------------------------------------------------- */

void ktranse_opts_default(ktranse_opts *o)
{
    /* Chosen on FB15k-237 and WN18RR (bench/transe/README.md): both reach the
     * published TransE test MRR in under 6 minutes on two cores. */
    memset(o, 0, sizeof *o);
    o->dim = 200;
    o->epochs = 300;          /* an upper bound: early stopping ends sooner */
    o->lr = 1e-3f;
    o->margin = 5.0f;
    o->negatives = 256;
    o->norm = 1;
    o->adversarial = 1;
    o->adv_temperature = 1.0f;
    o->batch = 1024;
    o->seed = 1;
    o->threads = 0;
    o->eval_every = 10;
    o->patience = 3;
    o->eval_sample = 5000;
    o->max_seconds = 0;       /* a time limit would make the result depend on the machine */
    o->share = 64;
    o->both_sides = 0;        /* one query per positive, "bern" side */
    o->optimizer = KTRANSE_ADAM;
    o->init_scale = 0;
    o->lr_decay = 0.5f;       /* halve lr at every check without improvement */
}

/* "bern" probability of corrupting the head for each relation: tph / (tph + hpt). */
static float *bern_probs(const ktranse_data *d)
{
    const uint32_t R = d->n_rel;
    float *phead = xmalloc(R * sizeof(float));
    filt tmp;
    ktranse_data td = *d;
    td.n_valid = td.n_test = 0;
    filt_build(&tmp, &td);
    double *n = xcalloc(R, sizeof(double)), *nh = xcalloc(R, sizeof(double)), *ntl = xcalloc(R, sizeof(double));
    for (size_t i = 0; i < tmp.n; i++) {
        n[tmp.tails[i].r] += 1;
        if (i == 0 || tmp.tails[i].a != tmp.tails[i - 1].a || tmp.tails[i].r != tmp.tails[i - 1].r)
            nh[tmp.tails[i].r] += 1; /* distinct heads of r */
        if (i == 0 || tmp.heads[i].a != tmp.heads[i - 1].a || tmp.heads[i].r != tmp.heads[i - 1].r)
            ntl[tmp.heads[i].r] += 1; /* distinct tails of r */
    }
    for (uint32_t r = 0; r < R; r++) {
        double tph = nh[r] > 0 ? n[r] / nh[r] : 1, hpt = ntl[r] > 0 ? n[r] / ntl[r] : 1;
        phead[r] = (float)(tph / (tph + hpt));
    }
    free(n); free(nh); free(ntl);
    filt_free(&tmp);
    return phead;
}

int ktranse_train(const ktranse_data *d, const ktranse_opts *o, float *ent, float *rel,
                  ktranse_report *rep, char *err, size_t errlen)
{
    ktranse_report rdummy;
    if (!rep) rep = &rdummy;
    memset(rep, 0, sizeof *rep);
    rep->best_valid_mrr = -1;
    if (opts_check(o, err, errlen)) return -1;
    if (d->n_ent == 0 || d->n_rel == 0 || d->n_train == 0) {
        if (err && errlen) snprintf(err, errlen, "transe: need entities, relations and training triples");
        return -1;
    }
    if (data_check(d, err, errlen)) return -1;
    if (d->n_train > UINT32_MAX) {
        if (err && errlen) snprintf(err, errlen, "transe: more than 2^32 - 1 training triples");
        return -1;
    }
    const double t0 = know_seconds();
    const int D = o->dim, K = o->negatives;
    const size_t P = pad16(D);
    const uint32_t E = d->n_ent, R = d->n_rel;
    const int nt = o->threads > 0 ? o->threads : omp_get_max_threads();
    const size_t B = (size_t)o->batch, per = o->both_sides ? 2 : 1, Qmax = B * per;

    /* parameters (padded): ep (E, P), rp (R, P), initialized from the seed */
    float *ep = xcalloc((size_t)E * P, sizeof(float)), *rp = xcalloc((size_t)R * P, sizeof(float));
    const float scale = o->init_scale > 0 ? o->init_scale : (o->margin + 2.0f) / (float)D;
    const uint64_t kinit_e = rng_key(o->seed, RNG_INIT, 0, 0), kinit_r = rng_key(o->seed, RNG_INIT, 1, 0);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (size_t e = 0; e < E; e++)
        for (int k = 0; k < D; k++) ep[e * P + k] = scale * rng_sym(rng_at(kinit_e, e * (size_t)D + k));
    for (size_t r = 0; r < R; r++)
        for (int k = 0; k < D; k++) rp[r * P + k] = scale * rng_sym(rng_at(kinit_r, r * (size_t)D + k));
    if (!o->adversarial)
        for (uint32_t e = 0; e < E; e++) {
            float *p = ep + (size_t)e * P, s = 0;
            for (int k = 0; k < D; k++) s += p[k] * p[k];
            float n = sqrtf(s);
            if (n > 0)
                for (int k = 0; k < D; k++) p[k] /= n;
        }

    float *phead = o->both_sides ? NULL : bern_probs(d);

    /* validation subset (a seeded sample of eval_sample triples) and filter */
    filt f = {0};
    ktriple *vq = NULL;
    size_t nv = 0;
    double *vranks = NULL;
    float *best_e = NULL, *best_r = NULL;
    if (o->eval_every > 0 && d->n_valid > 0) {
        filt_build(&f, d);
        nv = o->eval_sample && o->eval_sample < d->n_valid ? o->eval_sample : d->n_valid;
        uint32_t *idx = xmalloc(d->n_valid * sizeof(uint32_t));
        for (size_t i = 0; i < d->n_valid; i++) idx[i] = (uint32_t)i;
        uint64_t kv = rng_key(o->seed, RNG_VALID, 0, 0);
        for (size_t i = 0; i < nv; i++) { /* partial Fisher-Yates */
            size_t j = i + rng_below(rng_at(kv, i), (uint32_t)(d->n_valid - i));
            uint32_t tmp = idx[i]; idx[i] = idx[j]; idx[j] = tmp;
        }
        vq = xmalloc(nv * sizeof(ktriple));
        for (size_t i = 0; i < nv; i++) vq[i] = d->valid[idx[i]];
        free(idx);
        vranks = xmalloc(2 * nv * sizeof(double));
        best_e = xmalloc((size_t)E * P * sizeof(float));
        best_r = xmalloc((size_t)R * P * sizeof(float));
    }

    step_ws ws;
    ws_init(&ws, D, K, o->share, Qmax, E, R, nt);
    optim op = {0};
    op.kind = o->optimizer;
    op.lr = o->lr;
    op.renorm = !o->adversarial;
    op.v_ent = xcalloc((size_t)E * P, sizeof(float));
    op.v_rel = xcalloc((size_t)R * P, sizeof(float));
    if (op.kind == KTRANSE_ADAM) {
        op.m_ent = xcalloc((size_t)E * P, sizeof(float));
        op.m_rel = xcalloc((size_t)R * P, sizeof(float));
    }
    uint32_t *perm = xmalloc(d->n_train * sizeof(uint32_t));

    int stopped = 0, bad = 0;
    double last_loss = 0;
    for (int epoch = 1; epoch <= o->epochs && !stopped; epoch++) {
        const uint64_t kp = rng_key(o->seed, RNG_PERM, (uint64_t)epoch, 0);
        for (size_t i = 0; i < d->n_train; i++) perm[i] = (uint32_t)i;
        for (size_t i = d->n_train - 1; i > 0; i--) {
            size_t j = rng_below(rng_at(kp, i), (uint32_t)(i + 1));
            uint32_t tmp = perm[i]; perm[i] = perm[j]; perm[j] = tmp;
        }
        double eloss = 0;
        size_t nsteps = 0;
        for (size_t b0 = 0, bi = 0; b0 < d->n_train; b0 += B, bi++) {
            size_t nb = b0 + B < d->n_train ? B : d->n_train - b0, Q = 0;
            const uint64_t ks = rng_key(o->seed, RNG_SIDE, (uint64_t)epoch, bi);
            for (size_t p = 0; p < nb; p++) {
                const ktriple *x = d->train + perm[b0 + p];
                for (size_t s = 0; s < per; s++) {
                    int sd = o->both_sides ? (int)s
                                           : (double)(rng_at(ks, p) >> 11) * (1.0 / 9007199254740992.0) < phead[x->r];
                    ws.side[Q] = (uint8_t)sd;
                    ws.anchor[Q] = sd ? x->t : x->h;
                    ws.target[Q] = sd ? x->h : x->t;
                    ws.rid[Q] = x->r;
                    Q++;
                }
            }
            const size_t C = (Q + (size_t)o->share - 1) / (size_t)o->share;
            const uint64_t kn = rng_key(o->seed, RNG_NEG, (uint64_t)epoch, bi);
            for (size_t k = 0; k < C * (size_t)K; k++) ws.neg[k] = rng_below(rng_at(kn, k), E);
            op.step++;
            eloss += step_run(o, &ws, ep, rp, Q, &op, NULL, NULL, nt);
            nsteps++;
            if ((o->stop && *o->stop) || (o->max_seconds > 0 && know_seconds() - t0 >= o->max_seconds)) {
                stopped = 1;
                break;
            }
        }
        last_loss = nsteps ? eloss / (double)nsteps : 0;
        rep->epochs = epoch;
        double vm = -1;
        if (vq && (epoch % o->eval_every == 0 || stopped || epoch == o->epochs)) {
            eval_ranks(&f, vq, nv, ep, rp, E, P, o->norm, nt, vranks);
            keval ke;
            eval_summary(vranks, nv, &ke);
            vm = ke.mrr;
            if (vm > rep->best_valid_mrr) {
                rep->best_valid_mrr = vm;
                rep->best_epoch = epoch;
                memcpy(best_e, ep, (size_t)E * P * sizeof(float));
                memcpy(best_r, rp, (size_t)R * P * sizeof(float));
                bad = 0;
            } else {
                bad++;
                if (o->lr_decay > 0 && o->lr_decay < 1) op.lr *= o->lr_decay;
                if (o->patience > 0 && bad >= o->patience) stopped = 1;
            }
        }
        if (o->progress) o->progress(epoch, last_loss, vm, know_seconds() - t0, o->progress_ctx);
    }
    rep->last_loss = last_loss;
    if (best_e && rep->best_epoch > 0) {
        unpad_copy(ent, best_e, E, D, P);
        unpad_copy(rel, best_r, R, D, P);
    } else {
        unpad_copy(ent, ep, E, D, P);
        unpad_copy(rel, rp, R, D, P);
    }
    rep->seconds = know_seconds() - t0;

    free(perm);
    free(op.m_ent); free(op.v_ent); free(op.m_rel); free(op.v_rel);
    ws_free(&ws);
    free(best_e); free(best_r); free(vq); free(vranks); free(phead);
    free(ep); free(rp);
    filt_free(&f);
    return 0;
}
