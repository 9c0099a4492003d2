/* trainer/generate.c: incremental decoding of a GPT-2 model with a key/value
 * cache, and the token samplers (see generate.h for the API).
 *
 * What it is: GPT2LMHeadModel's eval forward (transformers' modeling_gpt2)
 * for the positions a feed appends, over the parameters of a kmodel: per
 * position t (row), per layer l,
 *   x = wte[id] + wpe[t]                                           (H)
 *   h = LN1(x); qkv = h Wqkv^T + bqkv; k, v -> cache[l][.][t]      (3H)
 *   ctx = per head softmax(q . K[0..t] / sqrt D) V[0..t]           (H)
 *   x = x + (ctx Wo^T + bo)
 *   h = LN2(x); f = gelu(h Wf^T + bf); x = x + (f Wfo^T + bfo)      (I), (H)
 *   fin[t] = LN_f(x); logits = fin[t] wte^T (the tied LM head)     (H), (V)
 * Weights are the registry's, kept as torch.nn.Linear's [out, in] (the
 * Conv1D `transpose` flag only matters to export). What it is not: a batch
 * decoder (one sequence per kgen) or a trainer (no gradients).
 *
 * Exactness (the header's promise: the logits of position t do not depend
 * on how the ids were fed). Every value of a row is computed by the same
 * sequence of float operations whatever the number of rows of the feed,
 * the blocking and the thread count:
 *  - products (dense_*): y[r][o] = dot(x[r], W[o]) (+ b[o]) (+ res[r][o]),
 *    dot = 8 lanes (element k into lane k % 8, ascending k, a multiply then
 *    an add: ISO C mode, no FMA contraction), the tail k >= 8 floor(K / 8)
 *    added to lanes 0.., then the fixed tree (l += l + 4, l += l + 2,
 *    l += l + 1). Row / column blocks only share loads; threads split output
 *    columns in fixed chunks (OCH), never a sum. No BLAS: OpenBLAS's
 *    kernels may round differently for another number of rows.
 *  - LayerNorm and GELU are kernels.c's per-row / per-element kernels
 *    (fixed order, identical ISA clones).
 *  - attention of row t, head h: scores s_j = dot8(q, k_j) * (1 / sqrt D)
 *    for j = 0..t, m = max_j s_j, e_j = kexpf(s_j - m), S = 8-lane sum of
 *    e_j, ctx[d] = sum over j ascending of (e_j / S) v_j[d].
 * So kgen agrees with kmodel_forward (OpenBLAS, other sum orders) and torch
 * within float rounding only, and with itself bit for bit.
 *
 * Memory: one allocation at kgen_new (cache, scratch for CH positions, the
 * final hidden state of every position); a feed allocates nothing. A feed
 * of n ids runs in passes of at most CH positions (the result is the same).
 *
 * Sampling (kgen_sample), for logits l (V), options s, seed, step:
 *  - order: i ranks before j iff l_i > l_j, or l_i == l_j and i < j (NaN
 *    ranks last, -0 == +0). top = the first id in that order; lmax = l_top.
 *  - greedy: top.
 *  - weights w_i = dexp(((double)l_i - lmax) / T), dexp = exp in plain
 *    double arithmetic (Cody-Waite reduction, degree-13 Taylor, ldexp):
 *    the same bits on every ISA and libm (dexp_logits: the same values 32
 *    at a time; every sum below stays a running sum in the order given).
 *  - top-k (0 < k < V): the set of the first k ids in rank order; else all.
 *    Wk = sum of w_i over that set, ascending id.
 *  - top-p (p < 1): the first m ids in rank order, m the smallest with
 *    (sum of w over the first m, in rank order) >= p Wk (all of the top-k
 *    set if rounding never gets there).
 *  - the draw: u = (kmix64(seed ^ kmix64(step)) >> 11) 2^-53 in [0, 1)
 *    (kmix64 = SplitMix64's finalizer, trainer/kernels.h); W = sum of w_i
 *    over the kept set, ascending id; the id is the first kept id, ascending,
 *    whose running sum c (same order) exceeds u W (the last kept id with
 *    w > 0 if rounding leaves none).
 *  - logprob: l_id - lmax - log(sum over all i ascending of dexp(l_i - lmax)),
 *    the temperature-1 log-softmax of all V logits (kgen_log_softmax's).
 * Ranking costs a heap of k ids (top-k), or of 256 then 4096 ids (top-p
 * alone), a radix sort of all V ids once the prefix reaches V / 2; plain
 * temperature sampling does not rank. Only the kept set and the draw are
 * defined above: how the ranking is found changes no result.
 */
#include "trainer/generate.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "trainer/bf16.h"
#include "trainer/kernels.h"
#include "util/kmath.h" /* no FMA contraction, KCLONES, KINLINE, kexpf */

#define CH 64       /* positions per pass of a feed */
#define RB 2        /* rows per block of a product */
#define OB 8        /* fp32 output columns per block of a product of several rows */
#define OB1 16      /* fp32 output columns per block of a one-row product (a decoding step): more
                     * weight rows in flight; 1.34x less CPU per token than 4 (bench/gpt/README.md) */
#define BOB 4       /* bf16 output columns per block of a product of several rows */
#define BOB1 16     /* bf16 output columns per block of a one-row product: 16 chains of VDPBF16PS
                     * in flight, and their 16 sums reduced together (red16x16) */
#define OCH 64      /* output columns per task of a product (a multiple of OB1, BOB and BOB1) */
#define PAR_WORK (1 << 17) /* multiply-adds below which a product runs on the calling thread */

typedef struct glayer {
    const float *ln1_g, *ln1_b; /* (H) */
    const float *qkv_w, *qkv_b; /* (3H, H), (3H): q, k, v rows */
    const float *ao_w, *ao_b;   /* (H, H), (H) */
    const float *ln2_g, *ln2_b; /* (H) */
    const float *ff_w, *ff_b;   /* (I, H), (I) */
    const float *fo_w, *fo_b;   /* (H, I), (H) */
    /* bf16 copies (kgen_use_bf16), rows padded with zeros to Hp / Ip, else NULL */
    const uint16_t *qkv_wb, *ao_wb, *ff_wb, *fo_wb; /* (3H, Hp), (H, Hp), (I, Hp), (H, Ip) */
} glayer;

struct kgen {
    const kmodel *m;
    int V, H, I, NH, D, NL, max_len, act;
    float eps;
    int len;        /* positions in the cache */
    int has_logits; /* `last` holds the logits of position len - 1 */
    const float *wte, *wpe;     /* (V, H), (Pmax, H) */
    const float *lnf_g, *lnf_b; /* (H) */
    glayer *lw;                 /* (NL) */
    float *kc, *vc;             /* (NL, NH, max_len, D) each */
    float *fin;                 /* (max_len, H) final hidden state (after ln_f) of every position */
    float *last;                /* (V) logits of position len - 1 */
    float *x, *h, *qkv, *ctx;   /* (CH, H), (CH, H), (CH, 3H), (CH, H) */
    float *ff;                  /* (CH, I) */
    float *mean, *rstd;         /* (CH) */
    float *scores;              /* (CH NH, max_len) attention weights of each (row, head) task */
    void *mem;
    const uint16_t *wte_b;      /* (V, Hp) the LM head in bf16 (kgen_use_bf16), else NULL */
    uint16_t *xb;               /* (CH, max(Hp, Ip)) a product's input rows rounded to bf16 */
    void *bmem;                 /* the bf16 copies and xb */
    char err[256];
};

/* ---- fixed-order products ---------------------------------------------------------------- */

typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4), may_alias));
#define LD8(p) (*(const v8u *)(p))

/* the lanes of *a plus x[k] w[k] for k in [k0, K) (lanes 0..), by the fixed tree */
KINLINE float finish8(const v8 *a, const float *x, const float *w, int k0, int K)
{
    float s[8];
    memcpy(s, a, sizeof s);
    for (int k = k0; k < K; k++) s[k - k0] += x[k] * w[k];
    for (int h = 4; h; h >>= 1)
        for (int l = 0; l < h; l++) s[l] += s[l + h];
    return s[0];
}

/* y[r][o] = dot(x[r], W[o]) (+ b[o]) (+ res[r][o]) for R rows, O outputs
 * (R, O constant after inlining). y may equal res. */
KINLINE void block(float *y, size_t ldy, const float *x, size_t ldx, const float *W, int K, const float *b,
                   const float *res, int R, int O, const float *pf)
{
    v8 acc[RB][OB1];
    for (int r = 0; r < R; r++)
        for (int o = 0; o < O; o++) acc[r][o] = (v8){0, 0, 0, 0, 0, 0, 0, 0};
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        if (pf) /* the next block's O K floats, O * 8 of them an iteration */
            for (int q = 0; q < O * 8; q += 16) __builtin_prefetch(pf + (size_t)k * O + q);
        v8 wv[OB1];
        for (int o = 0; o < O; o++) wv[o] = LD8(W + (size_t)o * K + k);
        for (int r = 0; r < R; r++) {
            v8 xv = LD8(x + (size_t)r * ldx + k);
            for (int o = 0; o < O; o++) acc[r][o] += xv * wv[o];
        }
    }
    for (int r = 0; r < R; r++)
        for (int o = 0; o < O; o++) {
            float v = finish8(&acc[r][o], x + (size_t)r * ldx, W + (size_t)o * K, k, K);
            if (b) v += b[o];
            if (res) v += res[(size_t)r * ldy + o];
            y[(size_t)r * ldy + o] = v;
        }
}

/* Columns [o0, o1) of the product of n rows (see block): blocks of RB rows
 * and OB columns, or of one row and OB1 columns when n is 1 (each output is
 * the same sequence of operations either way) */
KCLONES
static void dense_cols(float *y, size_t ldy, const float *x, size_t ldx, int n, const float *W, int K,
                       const float *b, const float *res, int o0, int o1)
{
    if (n == 1) {
        int o = o0;
        for (; o + OB1 <= o1; o += OB1) /* (streaming the weights: the next block prefetched) */
            block(y + o, ldy, x, ldx, W + (size_t)o * K, K, b ? b + o : NULL, res ? res + o : NULL, 1, OB1,
                  o + 2 * OB1 <= o1 ? W + (size_t)(o + OB1) * K : NULL);
        for (; o < o1; o++)
            block(y + o, ldy, x, ldx, W + (size_t)o * K, K, b ? b + o : NULL, res ? res + o : NULL, 1, 1, NULL);
        return;
    }
    for (int o = o0; o < o1; o += OB) {
        const int no = o1 - o < OB ? o1 - o : OB;
        const float *Wo = W + (size_t)o * K, *bo = b ? b + o : NULL;
        for (int r = 0; r < n; r += RB) {
            const int nr = n - r < RB ? n - r : RB;
            float *yr = y + (size_t)r * ldy + o;
            const float *xr = x + (size_t)r * ldx, *rr = res ? res + (size_t)r * ldy + o : NULL;
            if (no == OB) {
                if (nr == RB) block(yr, ldy, xr, ldx, Wo, K, bo, rr, RB, OB, NULL);
                else block(yr, ldy, xr, ldx, Wo, K, bo, rr, 1, OB, NULL);
            } else {
                for (int j = 0; j < no; j++) {
                    if (nr == RB)
                        block(yr + j, ldy, xr, ldx, Wo + (size_t)j * K, K, bo ? bo + j : NULL, rr ? rr + j : NULL, RB,
                              1, NULL);
                    else
                        block(yr + j, ldy, xr, ldx, Wo + (size_t)j * K, K, bo ? bo + j : NULL, rr ? rr + j : NULL, 1,
                              1, NULL);
                }
            }
        }
    }
}

/* bf16 (kgen_use_bf16): y[r][o] = sum of VDPBF16PS over the 32-wide pieces of
 * the rounded row xb[r] and Wb[o] (Kp = K rounded up to 32, zero padded)
 * into 16 fp32 lanes a[0..15], then the fixed tree red16 (+ b[o])
 * (+ res[r][o]); columns [o0, o1). Blocks of RB rows and BOB columns (one
 * row: BOB1 columns, reduced together by red16x16, the same tree) share
 * loads only: each value is the same sequence of operations whatever the
 * blocking, the rows fed and the thread count. */

/* the sum of a's 16 lanes by kiln's tree: s_i = a_i + a_(i+8) (i < 8),
 * t_i = s_i + s_(i+4) (i < 4), u_i = t_i + t_(i+2) (i < 2), u_0 + u_1 (the
 * tree GCC's _mm512_reduce_add_ps uses, written out so that no compiler
 * may pick another) */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static inline float red16(__m512 a)
{
    __m256 s = _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    __m128 u = _mm_add_ps(t, _mm_shuffle_ps(t, t, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, _MM_SHUFFLE(1, 1, 1, 1))));
}

/* red16 of a[0..15] at once, in column order: lane c = red16(a[c]). Each
 * step adds the same pairs as red16, two accumulators' worth per vector:
 * s (8 vectors: a[2j]'s s in lanes 0-7, a[2j+1]'s in 8-15), t (4: one
 * column's t per 128-bit quarter), u (2), then the sums, in lane 4q + r
 * for column 4r + q, put back in order by one permutation. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static inline __m512 red16x16(const __m512 *a)
{
    __m512 s[8], t[4], u[2];
    for (int j = 0; j < 8; j++)
        s[j] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * j], a[2 * j + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_f32x4(a[2 * j], a[2 * j + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    for (int k = 0; k < 4; k++)
        t[k] = _mm512_add_ps(_mm512_shuffle_f32x4(s[2 * k], s[2 * k + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(s[2 * k], s[2 * k + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    for (int m = 0; m < 2; m++)
        u[m] = _mm512_add_ps(_mm512_shuffle_ps(t[2 * m], t[2 * m + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(t[2 * m], t[2 * m + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 v = _mm512_add_ps(_mm512_shuffle_ps(u[0], u[1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_ps(u[0], u[1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), v);
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void
dense_cols_bf16(float *y, size_t ldy, const uint16_t *xb, int Kp, int n, const uint16_t *Wb, const float *b,
                const float *res, int o0, int o1)
{
    int o = o0;
    if (n == 1)
        for (; o + BOB1 <= o1; o += BOB1) {
            __m512 acc[BOB1];
            for (int j = 0; j < BOB1; j++) acc[j] = _mm512_setzero_ps();
            /* streaming the weights: the next block's BOB1 Kp values, BOB1 * 32 an iteration */
            const uint16_t *pf = o + 2 * BOB1 <= o1 ? Wb + (size_t)(o + BOB1) * Kp : NULL;
            for (int k = 0; k < Kp; k += 32) {
                if (pf)
                    for (int q = 0; q < BOB1 * 32; q += 32) _mm_prefetch((const char *)(pf + (size_t)k * BOB1 + q), _MM_HINT_T0);
                const __m512bh xv = (__m512bh)_mm512_loadu_si512(xb + k);
                for (int j = 0; j < BOB1; j++)
                    acc[j] = _mm512_dpbf16_ps(acc[j], xv, (__m512bh)_mm512_loadu_si512(Wb + (size_t)(o + j) * Kp + k));
            }
            __m512 v = red16x16(acc);
            if (b) v = _mm512_add_ps(v, _mm512_loadu_ps(b + o));
            if (res) v = _mm512_add_ps(v, _mm512_loadu_ps(res + o));
            _mm512_storeu_ps(y + o, v);
        }
    for (; o < o1; o += BOB) {
        const int no = o1 - o < BOB ? o1 - o : BOB;
        for (int r = 0; r < n; r += RB) {
            const int nr = n - r < RB ? n - r : RB;
            __m512 acc[RB][BOB];
            for (int i = 0; i < RB; i++)
                for (int j = 0; j < BOB; j++) acc[i][j] = _mm512_setzero_ps();
            for (int k = 0; k < Kp; k += 32) {
                __m512bh w[BOB];
                for (int j = 0; j < no; j++) w[j] = (__m512bh)_mm512_loadu_si512(Wb + (size_t)(o + j) * Kp + k);
                for (int i = 0; i < nr; i++) {
                    __m512bh xv = (__m512bh)_mm512_loadu_si512(xb + (size_t)(r + i) * Kp + k);
                    for (int j = 0; j < no; j++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv, w[j]);
                }
            }
            for (int i = 0; i < nr; i++)
                for (int j = 0; j < no; j++) {
                    float v = red16(acc[i][j]);
                    if (b) v += b[o + j];
                    if (res) v += res[(size_t)(r + i) * ldy + o + j];
                    y[(size_t)(r + i) * ldy + o + j] = v;
                }
        }
    }
}

/* rows x K of src (row stride ld) into dst (rows x Kp), rounded to bf16,
 * zero padded to Kp: the weights once (kgen_use_bf16), a product's input rows
 * each time */
static void round_rows(uint16_t *dst, const float *src, size_t ld, size_t rows, int K, int Kp)
{
    for (size_t r = 0; r < rows; r++) {
        kbf16_round(dst + r * Kp, src + r * ld, (size_t)K, 1.0f);
        memset(dst + r * Kp + K, 0, (size_t)(Kp - K) * sizeof *dst);
    }
}

/* y (n, out; row stride ldy) = x (n, K; stride ldx) W^T (+ b) (+ res, stride ldy);
 * W (out, K). Threads split the columns in chunks of OCH. With Wb (the bf16
 * copy of W, rows of Kp), the rows of x are rounded into g's xb first and
 * the product is dense_cols_bf16's. */
static void dense(kgen *g, float *y, size_t ldy, const float *x, size_t ldx, int n, const float *W,
                  const uint16_t *Wb, int K, int out, const float *b, const float *res)
{
    const int tasks = (out + OCH - 1) / OCH, Kp = (K + 31) / 32 * 32;
    if (Wb) round_rows(g->xb, x, ldx, (size_t)n, K, Kp);
#pragma omp parallel for schedule(static) if ((double)n * out * K >= PAR_WORK && tasks > 1)
    for (int t = 0; t < tasks; t++) {
        int o0 = t * OCH, o1 = o0 + OCH < out ? o0 + OCH : out;
        if (Wb) dense_cols_bf16(y, ldy, g->xb, Kp, n, Wb, b, res, o0, o1);
        else dense_cols(y, ldy, x, ldx, n, W, K, b, res, o0, o1);
    }
}

/* ---- attention over the cache ---------------------------------------------------------------- */

/* dot of a and b (n), the products' order (8 lanes, tail, tree) */
KINLINE float dot8(const float *a, const float *b, int n)
{
    v8 acc = {0, 0, 0, 0, 0, 0, 0, 0};
    int k = 0;
    for (; k + 8 <= n; k += 8) acc += LD8(a + k) * LD8(b + k);
    return finish8(&acc, a, b, k, n);
}

/* sum of x (n): 8 lanes, tail, tree */
KINLINE float sum8(const float *x, int n)
{
    v8 acc = {0, 0, 0, 0, 0, 0, 0, 0};
    int k = 0;
    for (; k + 8 <= n; k += 8) acc += LD8(x + k);
    float s[8];
    memcpy(s, &acc, sizeof s);
    for (int j = k; j < n; j++) s[j - k] += x[j];
    for (int h = 4; h; h >>= 1)
        for (int l = 0; l < h; l++) s[l] += s[l + h];
    return s[0];
}

/* ctx (D) of the query q (D) over keys K and values Vv (n, D); e (n) scratch */
KCLONES
static void attend(float *ctx, float *e, const float *q, const float *K, const float *Vv, int n, int D, float scale)
{
    float m = -INFINITY;
    for (int j = 0; j < n; j++) {
        e[j] = dot8(q, K + (size_t)j * D, D) * scale;
        m = e[j] > m ? e[j] : m;
    }
    for (int j = 0; j < n; j++) e[j] = kexpf(e[j] - m);
    const float S = sum8(e, n);
    for (int d = 0; d < D; d++) ctx[d] = 0.0f;
    for (int j = 0; j < n; j++) {
        const float p = e[j] / S;
        const float *v = Vv + (size_t)j * D;
        for (int d = 0; d < D; d++) ctx[d] += p * v[d];
    }
}

/* ctx rows of the c positions p0 .. p0 + c - 1 of layer l (their keys and
 * values already in the cache) */
static void attention(kgen *g, int l, int p0, int c)
{
    const int NH = g->NH, D = g->D, H = g->H, tasks = c * NH;
    const float scale = 1.0f / sqrtf((float)D);
    const double work = (double)tasks * (p0 + c) * D;
#pragma omp parallel for schedule(static) if (work >= PAR_WORK && tasks > 1)
    for (int t = 0; t < tasks; t++) {
        const int i = t / NH, h = t % NH, n = p0 + i + 1;
        const size_t base = ((size_t)l * NH + h) * g->max_len * D;
        attend(g->ctx + (size_t)i * H + (size_t)h * D, g->scores + (size_t)t * g->max_len,
               g->qkv + (size_t)i * 3 * H + (size_t)h * D, g->kc + base, g->vc + base, n, D, scale);
    }
}

/* ---- construction ------------------------------------------------------------------------------- */

static const float *param(const kmodel *m, const ktensor *t, int nt, size_t numel, char *err, size_t errlen,
                          const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static const float *param(const kmodel *m, const ktensor *t, int nt, size_t numel, char *err, size_t errlen,
                          const char *fmt, ...)
{
    char name[KTENSOR_NAME_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    int i = ktensor_find(t, nt, name);
    if (i < 0) {
        snprintf(err, errlen, "generate: the model has no tensor %s (not a GPT-2 model?)", name);
        return NULL;
    }
    if (t[i].numel != numel) {
        snprintf(err, errlen, "generate: tensor %s has %zu elements, expected %zu", name, t[i].numel, numel);
        return NULL;
    }
    return kmodel_param_data((kmodel *)m) + t[i].offset; /* read only */
}

kgen *kgen_new(const kmodel *m, int max_len, char *err, size_t errlen)
{
    if (!m) {
        snprintf(err, errlen, "generate: no model");
        return NULL;
    }
    const kmodel_config *c = kmodel_get_config(m);
    if (c->type != KMODEL_GPT2) {
        snprintf(err, errlen, "generate: the model is not GPT-2 (model.type gpt2); only causal GPT-2 models decode");
        return NULL;
    }
    if (max_len < 1 || max_len > c->max_position_embeddings) {
        snprintf(err, errlen, "generate: max_len %d is not in [1, %d] (the model's n_positions)", max_len,
                 c->max_position_embeddings);
        return NULL;
    }
    const int V = c->vocab_size, H = c->hidden_size, I = c->intermediate_size, NH = c->num_attention_heads,
              NL = c->num_hidden_layers;
    if (V < 1 || H < 1 || I < 1 || NH < 1 || NL < 1 || H % NH) {
        snprintf(err, errlen, "generate: bad model dimensions (V %d, H %d, I %d, NH %d, NL %d)", V, H, I, NH, NL);
        return NULL;
    }
    kgen *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "generate: out of memory");
        return NULL;
    }
    g->m = m;
    g->V = V, g->H = H, g->I = I, g->NH = NH, g->D = H / NH, g->NL = NL, g->max_len = max_len;
    g->act = c->hidden_act == KACT_GELU ? KGELU_ERF : KGELU_TANH;
    g->eps = (float)c->layer_norm_eps;
    g->lw = calloc((size_t)NL, sizeof *g->lw);
    if (!g->lw) {
        snprintf(err, errlen, "generate: out of memory");
        kgen_free(g);
        return NULL;
    }
    int nt;
    const ktensor *t = kmodel_params(m, &nt);
    const size_t h = (size_t)H;
    int ok = (g->wte = param(m, t, nt, (size_t)V * h, err, errlen, "transformer.wte.weight")) &&
             (g->wpe = param(m, t, nt, (size_t)c->max_position_embeddings * h, err, errlen, "transformer.wpe.weight")) &&
             (g->lnf_g = param(m, t, nt, h, err, errlen, "transformer.ln_f.weight")) &&
             (g->lnf_b = param(m, t, nt, h, err, errlen, "transformer.ln_f.bias"));
    for (int l = 0; ok && l < NL; l++) {
        glayer *w = &g->lw[l];
        const char *p = "transformer.h.";
        ok = (w->ln1_g = param(m, t, nt, h, err, errlen, "%s%d.ln_1.weight", p, l)) &&
             (w->ln1_b = param(m, t, nt, h, err, errlen, "%s%d.ln_1.bias", p, l)) &&
             (w->qkv_w = param(m, t, nt, 3 * h * h, err, errlen, "%s%d.attn.c_attn.weight", p, l)) &&
             (w->qkv_b = param(m, t, nt, 3 * h, err, errlen, "%s%d.attn.c_attn.bias", p, l)) &&
             (w->ao_w = param(m, t, nt, h * h, err, errlen, "%s%d.attn.c_proj.weight", p, l)) &&
             (w->ao_b = param(m, t, nt, h, err, errlen, "%s%d.attn.c_proj.bias", p, l)) &&
             (w->ln2_g = param(m, t, nt, h, err, errlen, "%s%d.ln_2.weight", p, l)) &&
             (w->ln2_b = param(m, t, nt, h, err, errlen, "%s%d.ln_2.bias", p, l)) &&
             (w->ff_w = param(m, t, nt, (size_t)I * h, err, errlen, "%s%d.mlp.c_fc.weight", p, l)) &&
             (w->ff_b = param(m, t, nt, (size_t)I, err, errlen, "%s%d.mlp.c_fc.bias", p, l)) &&
             (w->fo_w = param(m, t, nt, h * I, err, errlen, "%s%d.mlp.c_proj.weight", p, l)) &&
             (w->fo_b = param(m, t, nt, h, err, errlen, "%s%d.mlp.c_proj.bias", p, l));
    }
    if (!ok) {
        kgen_free(g);
        return NULL;
    }
    /* one allocation, carved in slices of whole 64-byte lines */
    const size_t cache = (size_t)NL * NH * max_len * g->D;
    const size_t sizes[] = {cache, cache, (size_t)max_len * h, (size_t)V, CH * h, CH * h, CH * 3 * h, CH * h,
                            (size_t)CH * I, CH, CH, (size_t)CH * NH * max_len};
    float **ptrs[] = {&g->kc, &g->vc, &g->fin, &g->last, &g->x, &g->h, &g->qkv, &g->ctx,
                      &g->ff, &g->mean, &g->rstd, &g->scores};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) total += (sizes[i] + 15) / 16 * 16;
    g->mem = aligned_alloc(64, total * sizeof(float));
    if (!g->mem) {
        snprintf(err, errlen, "generate: out of memory (%zu MB for the cache and scratch)",
                 total * sizeof(float) >> 20);
        kgen_free(g);
        return NULL;
    }
    memset(g->mem, 0, total * sizeof(float));
    float *at = g->mem;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *ptrs[i] = at;
        at += (sizes[i] + 15) / 16 * 16;
    }
    return g;
}

static void lm_head(kgen *g, float *out, const float *fin, int n, size_t ldo);

int kgen_use_bf16(kgen *g, char *err, size_t errlen)
{
    if (!kbf16_cpu_dot()) {
        const char *hide = getenv("KILN_CPU_NO_BF16");
        snprintf(err, errlen, "generate: bf16 needs a CPU with AVX512_BF16 (VDPBF16PS)%s",
                 hide && *hide == '1' ? " (hidden by KILN_CPU_NO_BF16=1)" : "");
        return EX_UNAVAILABLE;
    }
    if (g->wte_b) return 0;
    const int H = g->H, I = g->I, Hp = (H + 31) / 32 * 32, Ip = (I + 31) / 32 * 32;
    const size_t per = (size_t)3 * H * Hp + (size_t)H * Hp + (size_t)I * Hp + (size_t)H * Ip;
    const size_t total = (size_t)g->V * Hp + (size_t)g->NL * per + (size_t)CH * (Hp > Ip ? Hp : Ip);
    uint16_t *at = aligned_alloc(64, (total * sizeof *at + 63) / 64 * 64);
    if (!at) {
        snprintf(err, errlen, "generate: out of memory (%zu MB for the bf16 weights)", total * sizeof *at >> 20);
        return EX_OSERR;
    }
    g->bmem = at;
    round_rows(at, g->wte, (size_t)H, (size_t)g->V, H, Hp);
    g->wte_b = at;
    at += (size_t)g->V * Hp;
    for (int l = 0; l < g->NL; l++) {
        glayer *w = &g->lw[l];
        round_rows(at, w->qkv_w, (size_t)H, (size_t)3 * H, H, Hp), w->qkv_wb = at, at += (size_t)3 * H * Hp;
        round_rows(at, w->ao_w, (size_t)H, (size_t)H, H, Hp), w->ao_wb = at, at += (size_t)H * Hp;
        round_rows(at, w->ff_w, (size_t)H, (size_t)I, H, Hp), w->ff_wb = at, at += (size_t)I * Hp;
        round_rows(at, w->fo_w, (size_t)I, (size_t)H, I, Ip), w->fo_wb = at, at += (size_t)H * Ip;
    }
    g->xb = at;
    /* logits already given were fp32's: recompute the last position's */
    if (g->has_logits) lm_head(g, g->last, g->fin + (size_t)(g->len - 1) * H, 1, (size_t)g->V);
    return 0;
}

int kgen_is_bf16(const kgen *g) { return g->wte_b != NULL; }

void kgen_free(kgen *g)
{
    if (!g) return;
    free(g->bmem);
    free(g->mem);
    free(g->lw);
    free(g);
}

void kgen_reset(kgen *g)
{
    g->len = 0;
    g->has_logits = 0;
}
int kgen_len(const kgen *g) { return g->len; }
int kgen_max_len(const kgen *g) { return g->max_len; }
int kgen_vocab_size(const kgen *g) { return g->V; }
const float *kgen_logits(const kgen *g) { return g->has_logits ? g->last : NULL; }
const char *kgen_error(const kgen *g) { return g->err; }

/* logits (V) of the final hidden state fin (H): the tied LM head */
static void lm_head(kgen *g, float *out, const float *fin, int n, size_t ldo)
{
    dense(g, out, ldo, fin, (size_t)g->H, n, g->wte, g->wte_b, g->H, g->V, NULL, NULL);
}

void kgen_truncate(kgen *g, int n)
{
    if (n < 0) n = 0;
    if (n >= g->len) return;
    g->len = n;
    g->has_logits = n > 0;
    if (n > 0) lm_head(g, g->last, g->fin + (size_t)(n - 1) * g->H, 1, (size_t)g->V);
}

/* ---- a feed ------------------------------------------------------------------------------------- */

/* positions p0 .. p0 + c - 1 (ids): their keys and values into the cache,
 * their final hidden states into fin */
static void pass(kgen *g, const int32_t *ids, int p0, int c)
{
    const int H = g->H, I = g->I, NH = g->NH, D = g->D;
    const size_t h = (size_t)H;
    for (int i = 0; i < c; i++) { /* x = wte[id] + wpe[t] */
        const float *we = g->wte + (size_t)ids[i] * h, *pe = g->wpe + (size_t)(p0 + i) * h;
        float *x = g->x + (size_t)i * h;
        for (int j = 0; j < H; j++) x[j] = we[j] + pe[j];
    }
    for (int l = 0; l < g->NL; l++) {
        const glayer *w = &g->lw[l];
        klayernorm_forward(g->h, g->mean, g->rstd, g->x, w->ln1_g, w->ln1_b, c, H, g->eps);
        dense(g, g->qkv, 3 * h, g->h, h, c, w->qkv_w, w->qkv_wb, H, 3 * H, w->qkv_b, NULL);
        for (int i = 0; i < c; i++)
            for (int hh = 0; hh < NH; hh++) {
                const size_t at = (((size_t)l * NH + hh) * g->max_len + (size_t)(p0 + i)) * D;
                const float *row = g->qkv + (size_t)i * 3 * h + (size_t)hh * D;
                memcpy(g->kc + at, row + h, (size_t)D * sizeof(float));
                memcpy(g->vc + at, row + 2 * h, (size_t)D * sizeof(float));
            }
        attention(g, l, p0, c);
        dense(g, g->x, h, g->ctx, h, c, w->ao_w, w->ao_wb, H, H, w->ao_b, g->x); /* x += attn */
        klayernorm_forward(g->h, g->mean, g->rstd, g->x, w->ln2_g, w->ln2_b, c, H, g->eps);
        dense(g, g->ff, (size_t)I, g->h, h, c, w->ff_w, w->ff_wb, H, I, w->ff_b, NULL);
        kgelu_forward(g->ff, g->ff, (size_t)c * I, g->act);
        dense(g, g->x, h, g->ff, (size_t)I, c, w->fo_w, w->fo_wb, I, H, w->fo_b, g->x); /* x += mlp */
    }
    klayernorm_forward(g->fin + (size_t)p0 * h, g->mean, g->rstd, g->x, g->lnf_g, g->lnf_b, c, H, g->eps);
}

int kgen_feed(kgen *g, const int32_t *ids, int n, float *logits)
{
    g->err[0] = 0;
    if (n < 1 || !ids) {
        snprintf(g->err, sizeof g->err, "generate: nothing to feed (%d ids)", n);
        return EX_DATAERR;
    }
    if (n > g->max_len - g->len) {
        snprintf(g->err, sizeof g->err,
                 "generate: %d more ids do not fit: %d positions used of max_len %d", n, g->len, g->max_len);
        return EX_DATAERR;
    }
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= g->V) {
            snprintf(g->err, sizeof g->err, "generate: id %d (at %d of the feed) is not in [0, %d)", (int)ids[i], i,
                     g->V);
            return EX_DATAERR;
        }
    const size_t V = (size_t)g->V, h = (size_t)g->H;
    for (int i0 = 0; i0 < n; i0 += CH) {
        const int c = n - i0 < CH ? n - i0 : CH, p0 = g->len + i0;
        pass(g, ids + i0, p0, c);
        if (logits) lm_head(g, logits + (size_t)i0 * V, g->fin + (size_t)p0 * h, c, V);
    }
    g->len += n;
    if (logits)
        memcpy(g->last, logits + (size_t)(n - 1) * V, V * sizeof(float));
    else
        lm_head(g, g->last, g->fin + (size_t)(g->len - 1) * h, 1, V);
    g->has_logits = 1;
    return 0;
}

/* ---- log-softmax and sampling ------------------------------------------------------------------------ */

/* e^x in plain double arithmetic (same bits on every ISA and libm; about
 * 1 ulp): x = k ln 2 + r (Cody-Waite), e^r by Taylor to degree 13 (|r| <=
 * 0.347: truncation < 5e-18), times 2^k by ldexp (exact, or one rounding
 * to a subnormal). dexp_logits is the same function 32 values at a time. */
static const double dexp_c[] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
                                1.0 / 362880.0,     1.0 / 40320.0,     1.0 / 5040.0,     1.0 / 720.0,
                                1.0 / 120.0,        1.0 / 24.0,        1.0 / 6.0,        0.5,
                                1.0,                1.0};
#define DEXP_SHIFT 6755399441055744.0 /* 1.5 2^52: adding it rounds to an integer, held in the low bits */
static double dexp(double x)
{
    if (x != x) return x;
    if (x < -745.2) return 0.0;
    if (x > 709.7) return HUGE_VAL;
    double k = x * 1.4426950408889634 + DEXP_SHIFT; /* round to nearest */
    k -= DEXP_SHIFT;
    const double r = x - k * 6.93147180369123816490e-01 - k * 1.90821492927058770002e-10;
    double p = dexp_c[0];
    for (int i = 1; i < 14; i++) p = p * r + dexp_c[i];
    return ldexp(p, (int)k);
}

typedef double v8d __attribute__((vector_size(64)));
typedef int64_t v8l __attribute__((vector_size(64)));
typedef float v8fu __attribute__((vector_size(32), aligned(4), may_alias));

/* w[i] = dexp(((double)l[i] - lmax) / T) for i < n, bit for bit: 32 at a
 * time as four independent vectors of eight (the same operations, lane by
 * lane; no contraction) where all 32 arguments lie in [-708, 0], so that
 * 2^k (k >= -1022) is a normal double and p * 2^k is ldexp's one rounding;
 * dexp itself for other groups (NaN, the range's ends) and the tail. T > 0. */
KCLONES
static void dexp_logits(double *w, const float *l, int n, double lmax, double T)
{
    enum { G = 4 };
    union {
        double d;
        int64_t b;
    } sh = {.d = DEXP_SHIFT};
    int i = 0;
    for (; i + 8 * G <= n; i += 8 * G) {
        v8d x[G];
        v8l in = {0};
        in -= 1;
        for (int g = 0; g < G; g++) {
            x[g] = (__builtin_convertvector(*(const v8fu *)(l + i + 8 * g), v8d) - lmax) / T;
            in &= (x[g] >= -708.0) & (x[g] <= 0.0); /* NaN: 0 */
        }
        int ok = 1;
        for (int j = 0; j < 8; j++) ok &= in[j] != 0;
        if (!ok) {
            for (int g = 0; g < G; g++)
                for (int j = 0; j < 8; j++) w[i + 8 * g + j] = dexp(x[g][j]);
            continue;
        }
        v8d k[G], r[G], p[G];
        v8l kb[G];
        for (int g = 0; g < G; g++) {
            k[g] = x[g] * 1.4426950408889634 + DEXP_SHIFT;
            kb[g] = (v8l)k[g]; /* DEXP_SHIFT + k exactly: its bits are DEXP_SHIFT's plus k */
            k[g] -= DEXP_SHIFT;
            r[g] = x[g] - k[g] * 6.93147180369123816490e-01 - k[g] * 1.90821492927058770002e-10;
            p[g] = r[g] * dexp_c[0] + dexp_c[1];
        }
        for (int c = 2; c < 14; c++)
            for (int g = 0; g < G; g++) p[g] = p[g] * r[g] + dexp_c[c];
        for (int g = 0; g < G; g++) {
            const v8d out = p[g] * (v8d)((kb[g] - sh.b + 1023) << 52); /* times 2^k */
            memcpy(w + i + 8 * g, &out, sizeof out);
        }
    }
    for (; i < n; i++) w[i] = dexp(((double)l[i] - lmax) / T);
}

/* order key of a logit: larger logit, larger key; NaN 0 (last); -0 == +0 */
static inline uint32_t okey(float f)
{
    if (f != f) return 0;
    if (f == 0.0f) f = 0.0f;
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

/* whether id a ranks before id b */
static inline int before(const float *l, int32_t a, int32_t b)
{
    uint32_t ka = okey(l[a]), kb = okey(l[b]);
    return ka > kb || (ka == kb && a < b);
}

typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
typedef float v16fu __attribute__((vector_size(64), aligned(4), may_alias));

/* the first id of the largest finite or +inf logit (NaN compares false):
 * the largest value by sixteen lanes of selects, then the first id equal to
 * it; all -inf or NaN: the key order */
KCLONES
static int32_t top_id(const float *l, int V)
{
    float mx = -INFINITY;
    int32_t i = 0;
    if (V >= 16) {
        v16f m = {0};
        m -= INFINITY;
        for (; i + 16 <= V; i += 16) {
            const v16f x = *(const v16fu *)(l + i);
            const v16i gt = x > m; /* NaN: false */
            m = (v16f)(((v16i)x & gt) | ((v16i)m & ~gt));
        }
        for (int j = 0; j < 16; j++) mx = m[j] > mx ? m[j] : mx;
    }
    for (; i < V; i++) mx = l[i] > mx ? l[i] : mx;
    if (mx > -INFINITY)
        for (i = 0; i < V; i++)
            if (l[i] == mx) return i;
    int32_t best = 0; /* all -inf or NaN: the key order */
    uint32_t kb = okey(l[0]);
    for (i = 1; i < V; i++) {
        uint32_t k = okey(l[i]);
        if (k > kb) best = i, kb = k;
    }
    return best;
}

/* log of sum over i ascending of dexp(l_i - lmax) (dexp_logits a chunk at a time) */
static double log_sum(const float *l, int V, double lmax)
{
    double S = 0.0, w[1024];
    for (int i0 = 0; i0 < V; i0 += 1024) {
        const int c = V - i0 < 1024 ? V - i0 : 1024;
        dexp_logits(w, l + i0, c, lmax, 1.0);
        for (int j = 0; j < c; j++) S += w[j];
    }
    return log(S);
}

double kgen_logprob(const float *logits, int V, int32_t id, int32_t *top)
{
    const int32_t t = V < 1 ? -1 : top_id(logits, V);
    if (top) *top = t;
    if (t < 0 || id < 0 || id >= V) return NAN;
    const double lmax = logits[t];
    return ((double)logits[id] - lmax) - log_sum(logits, V, lmax);
}

int32_t kgen_argmax(const float *logits, int V) { return V < 1 ? -1 : top_id(logits, V); }

void kgen_log_softmax(const float *logits, int V, double *out)
{
    if (V < 1) return;
    const double lmax = logits[top_id(logits, V)], ls = log_sum(logits, V, lmax);
    for (int i = 0; i < V; i++) out[i] = ((double)logits[i] - lmax) - ls;
}

void kgen_sampling_defaults(kgen_sampling *s)
{
    s->greedy = 0;
    s->temperature = 1.0;
    s->top_k = 0;
    s->top_p = 1.0;
}

/* heap of ids whose root ranks last ("worst first") */
static void sift_down(const float *l, int32_t *hp, int n, int i)
{
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && before(l, hp[c], hp[c + 1])) c++; /* the later-ranked child */
        if (!before(l, hp[i], hp[c])) return;
        int32_t t = hp[i];
        hp[i] = hp[c], hp[c] = t;
        i = c;
    }
}

/* the first m ids of the rank order into idx[0..m), in rank order */
static void select_top(const float *l, int V, int m, int32_t *idx)
{
    for (int i = 0; i < m; i++) idx[i] = i;
    for (int i = m / 2 - 1; i >= 0; i--) sift_down(l, idx, m, i);
    for (int32_t i = m; i < V; i++)
        if (before(l, i, idx[0])) {
            idx[0] = i;
            sift_down(l, idx, m, 0);
        }
    for (int n = m - 1; n > 0; n--) { /* pop the worst to the end: rank order */
        int32_t t = idx[0];
        idx[0] = idx[n], idx[n] = t;
        sift_down(l, idx, n, 0);
    }
}

/* all V ids in rank order into idx (tmp: V more): LSD radix sort on ~key,
 * stable from ascending ids (ties by lower id) */
static void sort_all(const float *l, int V, int32_t *idx, int32_t *tmp)
{
    for (int32_t i = 0; i < V; i++) idx[i] = i;
    int32_t *src = idx, *dst = tmp;
    for (int sh = 0; sh < 32; sh += 8) {
        size_t cnt[257] = {0};
        for (int i = 0; i < V; i++) cnt[((~okey(l[src[i]])) >> sh & 255) + 1]++;
        for (int b = 0; b < 256; b++) cnt[b + 1] += cnt[b];
        for (int i = 0; i < V; i++) dst[cnt[(~okey(l[src[i]])) >> sh & 255]++] = src[i];
        int32_t *t = src;
        src = dst, dst = t;
    }
    /* four passes: the result is back in idx */
}

/* ranks the first m ids (select_top; sort_all when m >= V / 2) into idx;
 * returns how many are ranked (m, or V) */
static int rank_top(const float *l, int V, int m, int32_t *idx, int32_t *tmp)
{
    if (m >= V / 2) {
        sort_all(l, V, idx, tmp);
        return V;
    }
    select_top(l, V, m, idx);
    return m;
}

int32_t kgen_sample(const float *logits, int V, const kgen_sampling *s, uint64_t seed, uint64_t step,
                    double *logprob, void *scratch)
{
    if (V < 1 || !s) return -1;
    const int32_t top = top_id(logits, V);
    const double lmax = logits[top];
    int32_t id = top;
    double lse = NAN; /* log of log_sum's sum, when the draw has added the same terms in its order */
    if (!s->greedy) {
        const double T = s->temperature, p = s->top_p;
        if (!(T > 0) || !(p > 0 && p <= 1) || s->top_k < 0) return -1;
        void *own = NULL;
        if (!scratch) {
            scratch = own = malloc((size_t)V * (2 * sizeof(float) + sizeof(int32_t)));
            if (!own) return -1;
        }
        double *w = scratch;                                  /* (V) weights (no ranking) */
        int32_t *tmp = scratch;                               /* (V) radix scratch (ranking) */
        int32_t *idx = (int32_t *)((float *)scratch + 2 * (size_t)V); /* (V) ids in rank order */
        const int k = s->top_k > 0 && s->top_k < V ? s->top_k : V;
        int keep = V; /* the kept set: the ids of rank < keep (all when keep == V) */
        if (isfinite(lmax) && (k < V || p < 1)) {
            /* ranked: idx[0..m) holds the first m ids in rank order */
            int m = rank_top(logits, V, k < V ? k : 256, idx, tmp);
            keep = k;
            if (p < 1) {
                double Wk = 0.0; /* the top-k set's mass, ascending id */
                const int32_t bnd = idx[k - 1 < m ? k - 1 : m - 1];
                for (int32_t i = 0; i < V; i++)
                    if (k == V || i == bnd || before(logits, i, bnd)) Wk += dexp(((double)logits[i] - lmax) / T);
                const double target = p * Wk;
                for (;;) {
                    const int n = m < k ? m : k;
                    double cum = 0.0;
                    int r = 0;
                    while (r < n && (cum += dexp(((double)logits[idx[r]] - lmax) / T)) < target) r++;
                    if (r < n) {
                        keep = r + 1;
                        break;
                    }
                    if (n == k) break; /* rounding never got there: the whole top-k set */
                    m = rank_top(logits, V, m < 4096 ? 4096 : V, idx, tmp); /* top-p alone: a longer prefix */
                }
            }
        }
        /* the draw over the kept set, ascending id */
        const double u = (double)(kmix64(seed ^ kmix64(step)) >> 11) * 0x1p-53;
        if (keep == V) {
            double W = 0.0;
            dexp_logits(w, logits, V, lmax, T);
            for (int i = 0; i < V; i++) W += w[i];
            if (T == 1.0) lse = log(W); /* all V terms of log_sum, ascending: its sum */
            const double tgt = u * W;
            double c = 0.0;
            id = -1;
            for (int32_t i = 0; i < V; i++) {
                c += w[i];
                if (w[i] > 0) id = i;
                if (c > tgt && w[i] > 0) break;
            }
            if (id < 0) id = top;
        } else {
            const int32_t bnd = idx[keep - 1];
            double W = 0.0;
            for (int32_t i = 0; i < V; i++)
                if (i == bnd || before(logits, i, bnd)) W += dexp(((double)logits[i] - lmax) / T);
            const double tgt = u * W;
            double c = 0.0;
            id = -1;
            for (int32_t i = 0; i < V; i++)
                if (i == bnd || before(logits, i, bnd)) {
                    const double wi = dexp(((double)logits[i] - lmax) / T);
                    c += wi;
                    if (wi > 0) id = i;
                    if (c > tgt && wi > 0) break;
                }
            if (id < 0) id = top;
        }
        free(own);
    }
    if (logprob) *logprob = ((double)logits[id] - lmax) - (isnan(lse) ? log_sum(logits, V, lmax) : lse);
    return id;
}
