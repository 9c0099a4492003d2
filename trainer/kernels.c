/* trainer/kernels.c: forward/backward kernels of the BERT-family layers (see
 * kernels.h for the shapes and conventions).
 *
 * What it is: plain C over float buffers, OpenMP loops that partition their
 * writes, OpenBLAS sgemm for every matrix product (attention included).
 * What it is not: an autograd engine or a tensor library; the model
 * (model.c) chains these calls by hand.
 *
 * Determinism. Each output element is written by one thread, and every sum
 * is taken in an order fixed by the shapes:
 *  - row reductions (LayerNorm moments, softmax sums, losses) use 16 explicit
 *    lanes (element j into lane j % 16) combined by a fixed tree;
 *  - column reductions into parameter gradients (biases, LayerNorm, embedding
 *    tables) are split among threads by channel, each channel summing its rows
 *    in row order;
 *  - matrix products (kgemm) are single-threaded sgemm calls on a grid of
 *    tiles fixed by the shapes, run in parallel; OpenBLAS never threads
 *    itself (its split depends on the thread count, and its edge kernels
 *    round differently from its main kernel).
 * The project compiles in ISO C mode, where GCC does not contract a * b + c
 * into an FMA, so the AVX-512, AVX2 and baseline clones of the hot loops
 * (target_clones) round alike (checked: a baseline-only build, -DKCLONES=,
 * writes the same bytes); exp and erf are the portable polynomials below, not
 * libm's. OpenBLAS's DYNAMIC_ARCH build picks its kernels by CPU, and they
 * sum in other orders (an AVX-512 Intel CPU's SkylakeX sgemm gives other
 * bits than the AVX2 Haswell one), so kiln pins Haswell's kernels on every
 * CPU with AVX2 and FMA (kblas_core). Same inputs, same bits, whatever the
 * thread count and the CPU.
 */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include "trainer/kernels.h"
#include "trainer/bf16.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- OpenBLAS's kernels: the same on every CPU ------------------------------------------------------- */

/* OpenBLAS's DYNAMIC_ARCH entry points (Debian's builds): weak, so that a
 * single-target OpenBLAS (one kernel set: nothing to pin) links too. */
extern void gotoblas_dynamic_init(void) __attribute__((weak));
extern void gotoblas_dynamic_quit(void) __attribute__((weak));
extern char *openblas_get_corename(void) __attribute__((weak));

static char blas_note[160];

/* Runs before main, after OpenBLAS's own constructor chose its kernels and
 * before any product: unless KILN_BLAS_CORE=native, the choice is made again
 * with OPENBLAS_CORETYPE=Haswell (the user's OPENBLAS_CORETYPE, if any, is
 * put back afterwards, for child processes). Haswell's kernels need AVX2
 * and FMA: without them (not a CPU kiln targets) OpenBLAS's choice stays. */
__attribute__((constructor)) static void blas_pin(void)
{
    const char *mode = getenv("KILN_BLAS_CORE");
    if (!gotoblas_dynamic_init || !gotoblas_dynamic_quit || !openblas_get_corename) {
        snprintf(blas_note, sizeof blas_note, "single-target OpenBLAS");
        return;
    }
    if (mode && !strcmp(mode, "native")) {
        snprintf(blas_note, sizeof blas_note, "KILN_BLAS_CORE=native");
        return;
    }
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        snprintf(blas_note, sizeof blas_note, "no AVX2+FMA: OpenBLAS's choice");
        return;
    }
    const char *core = openblas_get_corename();
    if (core && !strcasecmp(core, "haswell")) {
        snprintf(blas_note, sizeof blas_note, "pinned");
        return;
    }
    char was[64] = "";
    const char *env = getenv("OPENBLAS_CORETYPE");
    if (env) snprintf(was, sizeof was, "%s", env);
    snprintf(blas_note, sizeof blas_note, "pinned; OpenBLAS chose %s", core ? core : "?");
    setenv("OPENBLAS_CORETYPE", "Haswell", 1);
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
    if (env) setenv("OPENBLAS_CORETYPE", was, 1);
    else unsetenv("OPENBLAS_CORETYPE");
}

void kblas_core(char *out, size_t n)
{
    const char *core = openblas_get_corename ? openblas_get_corename() : NULL;
    snprintf(out, n, "%s (%s)", core ? core : "?", blas_note[0] ? blas_note : "not set up");
}

/* Comparisons may be evaluated speculatively (if-converted into blends), so
 * the loops with clamps and selects vectorize; this changes no value. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include "util/kmath.h" /* no FMA contraction, KCLONES, KINLINE, kexpf */
#include "util/util.h"  /* koom */
/* "#pragma GCC ivdep" marks element-wise loops that may run in place (output
 * == input, same index): without it GCC's overlap check sends in-place calls
 * to the scalar loop. */
/* Loops over fewer elements than this run on the calling thread alone: a
 * parallel region costs microseconds, much more on a busy machine. */
#define PAR_MIN 32768
#define VL 16      /* lanes of every row reduction */
#define CHUNK 8192 /* elements per task of the elementwise loops */

static const float SQRT1_2 = 0.70710678118654752f;    /* 1 / sqrt(2) */
static const float INV_SQRT_2PI = 0.39894228040143268f; /* 1 / sqrt(2 pi) */
static const float GELU_K0 = 0.79788456080286536f;    /* sqrt(2 / pi) */
static const float GELU_K1 = 0.044715f;

/* ---- scalar math (same bits on every ISA) ------------------------------------ */

/* erf(x), Abramowitz & Stegun 7.1.26 (absolute error 1.5e-7, < 6e-7 after float
 * rounding), the formula of PyTorch's vectorized CPU erf. */
KINLINE float kerff(float x)
{
    float ax = x < 0 ? -x : x;
    float t = 1.0f / (1.0f + 0.3275911f * ax);
    float p = 1.061405429f;
    p = p * t - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    float y = 1.0f - p * t * kexpf(-ax * ax);
    return x < 0 ? -y : y;
}

/* tanh(u) = (1 - e) / (1 + e) with e = exp(-2 |u|), sign restored. */
KINLINE float ktanhf(float u)
{
    float au = u < 0 ? -u : u;
    float e = kexpf(-2.0f * au);
    float t = (1.0f - e) / (1.0f + e);
    return u < 0 ? -t : t;
}

float kexp(float x) { return kexpf(x); }
float kerf(float x) { return kerff(x); }

double krng_normal(uint64_t key, uint64_t i)
{
    uint64_t z = krng_at(key, i);
    double u1 = ((double)(z >> 32) + 0.5) * (1.0 / 4294967296.0); /* (0, 1) */
    double u2 = (double)(z & 0xFFFFFFFFu) * (1.0 / 4294967296.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586477 * u2);
}

/* ---- fixed-order row reductions ------------------------------------------------ */

/* 16 lanes as a GCC vector: element j of a row goes to lane j % 16, lanes are
 * combined by a fixed tree (lanes_sum). Written with vector types so every
 * ISA clone computes the same lanes (AVX2 as 2 halves, SSE as 4 quarters). */
typedef float v16 __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
typedef uint32_t v16w __attribute__((vector_size(64))); /* exponent arithmetic: wraps, never overflows */
typedef float v16u __attribute__((vector_size(64), aligned(4), may_alias));
#define VLD(p) (*(const v16u *)(p))
#define VST(p, v) (*(v16u *)(p) = (v))
#define VSPLAT(x) ((v16){x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x})
/* per lane: a > b ? a : b */
#define VMAX(a, b) ((v16)(((v16i)((a) > (b)) & (v16i)(a)) | (~(v16i)((a) > (b)) & (v16i)(b))))

KINLINE float lanes_sum(float acc[VL])
{
    for (int w = VL / 2; w; w >>= 1)
        for (int l = 0; l < w; l++) acc[l] += acc[l + w];
    return acc[0];
}

#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define SHUF(a, ...) __builtin_shufflevector(a, a, __VA_ARGS__)
#else
#define SHUF(a, ...) __builtin_shuffle(a, (v16i){__VA_ARGS__})
#endif
/* lanes_sum of the vector *a (the same tree, with shuffles) */
KINLINE float vsum_tree(const v16 *pa)
{
    v16 a = *pa;
    a += SHUF(a, 8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15);
    a += SHUF(a, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7);
    a += SHUF(a, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
    a += SHUF(a, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1);
    return a[0];
}
/* sum of the lanes of *a plus the tail x[0 .. rem) added to lanes 0 .. rem - 1 */
KINLINE float finish_sum(const v16 *a, const float *x, int rem)
{
    if (rem == 0) return vsum_tree(a);
    float acc[VL];
    memcpy(acc, a, sizeof acc);
    for (int l = 0; l < rem; l++) acc[l] += x[l];
    return lanes_sum(acc);
}

/* *v = exp(*v) per lane: kexpf's operations on 16 lanes at once (by
 * pointer: no 64-byte vector crosses a call boundary, whose ABI differs) */
KINLINE void vexpf(v16 *v)
{
    v16 x = *v;
    const v16 lo = VSPLAT(-87.0f), hi = VSPLAT(88.0f), magic = VSPLAT(12582912.0f);
    v16i below = (v16i)(x < lo), above = (v16i)(x > hi);
    x = (v16)((below & (v16i)lo) | (~below & (v16i)x));
    x = (v16)((above & (v16i)hi) | (~above & (v16i)x));
    v16 fn = x * 1.44269504088896341f + magic;
    fn -= magic;
    v16 r = x - fn * 0.693359375f + fn * 2.12194440e-4f;
    v16 p = VSPLAT(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* 2^fn by the exponent bits, in unsigned arithmetic (a NaN input gives a
     * NaN out, not an overflow: the same bits as the signed form otherwise) */
    v16i bits = (v16i)(((v16w)__builtin_convertvector(fn, v16i) + 127u) << 23);
    *v = p * (v16)bits;
}

KINLINE float sum_lanes(const float *x, int n)
{
    v16 a = VSPLAT(0.0f);
    int j = 0;
    for (; j + VL <= n; j += VL) a += VLD(x + j);
    return finish_sum(&a, x + j, n - j);
}

/* sum (x - m)^2 */
KINLINE float sqdev_lanes(const float *x, float m, int n)
{
    v16 a = VSPLAT(0.0f);
    int j = 0;
    for (; j + VL <= n; j += VL) {
        v16 d = VLD(x + j) - m;
        a += d * d;
    }
    if (j == n) return vsum_tree(&a);
    float acc[VL];
    memcpy(acc, &a, sizeof acc);
    for (int l = 0; j + l < n; l++) {
        float d = x[j + l] - m;
        acc[l] += d * d;
    }
    return lanes_sum(acc);
}

/* max of x (exact in any order) */
KINLINE float max_lanes(const float *x, int n)
{
    v16 a = VSPLAT(-FLT_MAX);
    int j = 0;
    for (; j + VL <= n; j += VL) {
        v16 v = VLD(x + j);
        a = VMAX(v, a);
    }
    if (j == n) { /* a max is exact in any order */
        v16 b = SHUF(a, 8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15);
        a = VMAX(b, a);
        b = SHUF(a, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7);
        a = VMAX(b, a);
        b = SHUF(a, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
        a = VMAX(b, a);
        b = SHUF(a, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1);
        a = VMAX(b, a);
        return a[0];
    }
    float acc[VL];
    memcpy(acc, &a, sizeof acc);
    for (int l = 0; j + l < n; l++) acc[l] = x[j + l] > acc[l] ? x[j + l] : acc[l];
    float m = acc[0];
    for (int l = 1; l < VL; l++) m = acc[l] > m ? acc[l] : m;
    return m;
}

/* y[j] = exp(x[j] - m) (y may be x), returns the sum in lane order */
KINLINE float exp_sum_lanes(float *y, const float *x, float m, int n)
{
    v16 a = VSPLAT(0.0f);
    int j = 0;
    for (; j + VL <= n; j += VL) {
        v16 e = VLD(x + j) - m;
        vexpf(&e);
        VST(y + j, e);
        a += e;
    }
    if (j == n) return vsum_tree(&a);
    float acc[VL];
    memcpy(acc, &a, sizeof acc);
    for (int l = 0; j + l < n; l++) {
        float e = kexpf(x[j + l] - m);
        y[j + l] = e;
        acc[l] += e;
    }
    return lanes_sum(acc);
}

/* sum exp(x[j] - m), nothing written */
KINLINE float expsum_lanes(const float *x, float m, int n)
{
    v16 a = VSPLAT(0.0f);
    int j = 0;
    for (; j + VL <= n; j += VL) {
        v16 e = VLD(x + j) - m;
        vexpf(&e);
        a += e;
    }
    if (j == n) return vsum_tree(&a);
    float acc[VL];
    memcpy(acc, &a, sizeof acc);
    for (int l = 0; j + l < n; l++) acc[l] += kexpf(x[j + l] - m);
    return lanes_sum(acc);
}

KINLINE float dot_lanes(const float *x, const float *y, int n)
{
    v16 a = VSPLAT(0.0f);
    int j = 0;
    for (; j + VL <= n; j += VL) a += VLD(x + j) * VLD(y + j);
    if (j == n) return vsum_tree(&a);
    float acc[VL];
    memcpy(acc, &a, sizeof acc);
    for (int l = 0; j + l < n; l++) acc[l] += x[j + l] * y[j + l];
    return lanes_sum(acc);
}

/* Channel range [c0, c1) of thread t among nt for C channels, cut at multiples
 * of 16 so that no two threads share a cache line of a row. */
static void channel_range(int C, int t, int nt, int *c0, int *c1)
{
    int blocks = (C + 15) / 16;
    int b0 = (int)((int64_t)blocks * t / nt), b1 = (int)((int64_t)blocks * (t + 1) / nt);
    *c0 = b0 * 16 > C ? C : b0 * 16;
    *c1 = b1 * 16 > C ? C : b1 * 16;
}

/* ---- dropout ---------------------------------------------------------------------- */

KCLONES
static void dropout_chunk(float *y, const float *x, const float *res, size_t n, float p, uint64_t key,
                          uint64_t first)
{
    uint32_t thr = (uint32_t)((double)p * 16777216.0);
    float scale = 1.0f / (1.0f - p);
#pragma GCC ivdep
    for (size_t i = 0; i < n; i++) {
        float v = (uint32_t)(krng_at(key, first + i) >> 40) >= thr ? x[i] * scale : 0.0f;
        y[i] = res ? res[i] + v : v;
    }
}

void kdropout(float *y, const float *x, size_t n, float p, uint64_t key, uint64_t first)
{
    if (p <= 0.0f) {
        if (y != x) memcpy(y, x, n * sizeof *y);
        return;
    }
    size_t nc = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t c = 0; c < nc; c++) {
        size_t i0 = c * CHUNK, m = n - i0 < CHUNK ? n - i0 : CHUNK;
        dropout_chunk(y + i0, x + i0, NULL, m, p, key, first + i0);
    }
}

void kresidual_dropout(float *x, const float *res, size_t n, float p, uint64_t key, uint64_t first)
{
    size_t nc = (n + CHUNK - 1) / CHUNK;
    if (p <= 0.0f) {
        kadd(x, res, n);
        return;
    }
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t c = 0; c < nc; c++) {
        size_t i0 = c * CHUNK, m = n - i0 < CHUNK ? n - i0 : CHUNK;
        dropout_chunk(x + i0, x + i0, res + i0, m, p, key, first + i0);
    }
}

void kdropout_rows(float *y, const float *x, const float *res, int N, int C, float p, uint64_t key,
                   const uint64_t *tok)
{
    const size_t n = (size_t)N * C;
    if (p <= 0.0f) {
        if (res) {
            if (y != x) memcpy(y, x, n * sizeof *y);
            kadd(y, res, n);
        } else if (y != x) {
            memcpy(y, x, n * sizeof *y);
        }
        return;
    }
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int r = 0; r < N; r++) {
        const size_t o = (size_t)r * C;
        dropout_chunk(y + o, x + o, res ? res + o : NULL, (size_t)C, p, key, (tok ? tok[r] : (uint64_t)r) * (uint64_t)C);
    }
}

void kadd(float *y, const float *x, size_t n)
{
    size_t nc = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t c = 0; c < nc; c++) {
        size_t i0 = c * CHUNK, i1 = n - i0 < CHUNK ? n : i0 + CHUNK;
        for (size_t i = i0; i < i1; i++) y[i] += x[i];
    }
}

/* ---- embeddings ------------------------------------------------------------------------ */

void kembed_forward(float *out, int N, int C, const float *t0, const int32_t *i0, const float *t1,
                    const int32_t *i1, const float *t2, const int32_t *i2)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        float *o = out + (size_t)n * C;
        const float *a = t0 + (size_t)i0[n] * C;
        if (t1 && t2) {
            const float *b = t1 + (size_t)i1[n] * C, *c = t2 + (size_t)i2[n] * C;
            for (int j = 0; j < C; j++) o[j] = a[j] + b[j] + c[j];
        } else if (t1) {
            const float *b = t1 + (size_t)i1[n] * C;
            for (int j = 0; j < C; j++) o[j] = a[j] + b[j];
        } else {
            memcpy(o, a, (size_t)C * sizeof *o);
        }
    }
}

void kembed_backward(float *d0, const int32_t *i0, int32_t skip0, float *d1, const int32_t *i1, float *d2,
                     const int32_t *i2, const float *dout, int N, int C)
{
#pragma omp parallel if ((size_t)N * C >= PAR_MIN)
    {
        int c0, c1;
        channel_range(C, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        for (int n = 0; n < N && c0 < c1; n++) {
            const float *g = dout + (size_t)n * C;
            if (d0 && i0[n] != skip0) {
                float *r = d0 + (size_t)i0[n] * C;
                for (int c = c0; c < c1; c++) r[c] += g[c];
            }
            if (d1) {
                float *r = d1 + (size_t)i1[n] * C;
                for (int c = c0; c < c1; c++) r[c] += g[c];
            }
            if (d2) {
                float *r = d2 + (size_t)i2[n] * C;
                for (int c = c0; c < c1; c++) r[c] += g[c];
            }
        }
    }
}

/* ---- matrix products ----------------------------------------------------------------------- */

/* Rows [*a, *b) of part i of n parts of [0, M), cut at multiples of 16. */
static void part(int M, int i, int n, int *a, int *b)
{
    int blocks = (M + 15) / 16;
    int b0 = (int)((int64_t)blocks * i / n), b1 = (int)((int64_t)blocks * (i + 1) / n);
    *a = b0 * 16 > M ? M : b0 * 16;
    *b = b1 * 16 > M ? M : b1 * 16;
}


void kgemm_grid(int M, int N, int K, int *mt, int *nt, int *kt)
{
    *mt = *nt = *kt = 1;
    const int64_t work = (int64_t)M * N * K;
    if (work < ((int64_t)1 << 20)) return; /* small: one call */
    /* pieces: enough for a few cores on big products, few on small ones
     * (each piece repacks operands); a function of the shape only */
    const int T = work < ((int64_t)1 << 23) ? 2 : work < ((int64_t)1 << 30) ? 4 : work < ((int64_t)1 << 32) ? 8 : 16;
    /* Cutting M repacks B (N x K) once per extra tile, cutting N repacks A
     * (M x K), cutting K adds T partial products of M x N (counted twice: a
     * store and a load). Take the cheapest cut that has room for T pieces. */
    int64_t cm = M >= 16 * T ? (int64_t)N * K : INT64_MAX;
    int64_t cn = N >= 16 * T ? (int64_t)M * K : INT64_MAX;
    int64_t ck = K >= 64 * T ? 2 * (int64_t)M * N : INT64_MAX;
    if (cm <= cn && cm <= ck && cm != INT64_MAX)
        *mt = T;
    else if (cn <= ck && cn != INT64_MAX)
        *nt = T;
    else if (ck != INT64_MAX)
        *kt = T;
}

/* The calling thread's precision of matrix products (kset_precision). */
static _Thread_local int tl_prec = KPREC_FP32;

void kset_precision(int p) { tl_prec = p == KPREC_BF16 ? KPREC_BF16 : KPREC_FP32; }
int kget_precision(void) { return tl_prec; }

/* One product on one thread wherever it is called from: cblas_sgemm (fp32)
 * or kbf16_gemm (prec KPREC_BF16; once bf16 was set up, only running out of
 * memory makes it fail: koom, exit 71, never a silent switch of precision
 * that would change the run's bytes). OpenBLAS's OpenMP build and
 * oneDNN's both run single-threaded inside an active parallel region, and
 * otherwise on omp_get_max_threads() threads, so that is set to 1 around the
 * call. */
static void sgemm1(int prec, enum CBLAS_TRANSPOSE TA, enum CBLAS_TRANSPOSE TB, int M, int N, int K, float alpha,
                   const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (nt > 1) omp_set_num_threads(1);
    if (prec != KPREC_BF16)
        cblas_sgemm(CblasRowMajor, TA, TB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else if (kbf16_gemm(TA == CblasTrans, TB == CblasTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
        koom(((size_t)M * K + (size_t)K * N) * 2);
    if (nt > 1) omp_set_num_threads(nt);
}

/* The calling thread's scratch for the partial products of a cut K: grown
 * on demand, kept for the next call (no allocation per step), released at
 * exit. NULL when out of memory. */
static _Thread_local float *ws_buf;
static _Thread_local size_t ws_len;
static float *workspace(size_t floats)
{
    if (floats > ws_len) {
        free(ws_buf);
        ws_buf = malloc(floats * sizeof(float));
        ws_len = ws_buf ? floats : 0;
    }
    return ws_buf;
}

/* C[m0:m1, n0:n1] = res + bias (either may be NULL; res has C's layout) */
static void prefill(float *C, int ldc, const float *bias, const float *res, int m0, int m1, int n0, int n1)
{
    for (int r = m0; r < m1; r++) {
        float *c = C + (size_t)r * ldc;
        const float *s = res ? res + (size_t)r * ldc : NULL;
        if (bias && s)
            for (int j = n0; j < n1; j++) c[j] = s[j] + bias[j];
        else if (bias)
            memcpy(c + n0, bias + n0, (size_t)(n1 - n0) * sizeof *c);
        else if (s && s != c)
            memcpy(c + n0, s + n0, (size_t)(n1 - n0) * sizeof *c);
    }
}

void kgemm_ex(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc, const float *bias, const float *res, krows_fn after, void *ctx)
{
    const int prec = tl_prec;
    if (M <= 0 || N <= 0) return;
    const enum CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
    const int pre = bias || res;
    if (pre) beta = 1.0f;
    int mt, nt, kt;
    kgemm_grid(M, N, K, &mt, &nt, &kt);
    if (mt * nt * kt == 1) {
        if (pre) prefill(C, ldc, bias, res, 0, M, 0, N);
        sgemm1(prec, TA, TB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        if (after) after(ctx, 0, M);
        return;
    }
    float *part_buf = NULL;
    if (kt > 1) {
        part_buf = workspace((size_t)(kt - 1) * M * N);
        if (!part_buf) kt = 1; /* out of memory: unsplit (rounds differently, still correct) */
    }
    const int tiles = mt * nt * kt;
    /* bf16, tiles that cut M only: B rounded once for all of them (else each
     * tile rounds its operands; the same bits either way) */
    const uint16_t *Bb = NULL;
    if (prec == KPREC_BF16 && mt > 1 && nt == 1 && kt == 1) {
        uint16_t *sb = kbf16_shared((size_t)K * N);
        if (sb) {
            if (tb) kbf16_round_block(sb, B, N, K, ldb);
            else kbf16_round_block(sb, B, K, N, ldb);
            Bb = sb;
        }
    }
    /* Every product runs single-threaded inside the parallel region (OpenBLAS's
     * OpenMP build does so when omp_in_parallel()), so each tile's bits do not
     * depend on the number of threads. A tile prefills its block of C just
     * before its product and, when it holds whole rows (rows are cut, not
     * columns or K), runs the epilogue on them while they are in cache. */
#pragma omp parallel for schedule(dynamic, 1)
    for (int t = 0; t < tiles; t++) {
        int i = t % mt, j = (t / mt) % nt, k = t / (mt * nt), m0, m1, n0, n1, k0 = 0, k1 = K;
        part(M, i, mt, &m0, &m1);
        part(N, j, nt, &n0, &n1);
        if (kt > 1) {
            k0 = (int)((int64_t)K * k / kt);
            k1 = (int)((int64_t)K * (k + 1) / kt);
        }
        if (m0 == m1 || n0 == n1) continue;
        const float *a = ta ? A + (size_t)k0 * lda + m0 : A + (size_t)m0 * lda + k0;
        const float *b = tb ? B + (size_t)n0 * ldb + k0 : B + (size_t)k0 * ldb + n0;
        if (k > 0) { /* piece 0 of K goes to C itself, the others to partial products */
            sgemm1(prec, TA, TB, m1 - m0, n1 - n0, k1 - k0, alpha, a, lda, b, ldb, 0.0f,
                   part_buf + (size_t)(k - 1) * M * N + (size_t)m0 * N + n0, N);
            continue;
        }
        if (pre) prefill(C, ldc, bias, res, m0, m1, n0, n1);
        if (!Bb)
            sgemm1(prec, TA, TB, m1 - m0, n1 - n0, k1 - k0, alpha, a, lda, b, ldb, beta, C + (size_t)m0 * ldc + n0,
                   ldc);
        else if (kbf16_gemm_b(ta, tb, m1 - m0, N, K, alpha, a, lda, Bb, beta, C + (size_t)m0 * ldc, ldc))
            koom((size_t)(m1 - m0) * K * 2);
        if (after && nt == 1 && kt == 1) after(ctx, m0, m1);
    }
    if (kt > 1 || (after && nt > 1)) {
        /* C = (beta C + piece 0) + P_1 + P_2 + ... in this order; then the epilogue */
        const int rb = 16, nb = (M + rb - 1) / rb;
#pragma omp parallel for schedule(static) if ((size_t)M * N >= PAR_MIN)
        for (int q = 0; q < nb; q++) {
            int r0 = q * rb, r1 = r0 + rb < M ? r0 + rb : M;
            for (int r = r0; r < r1; r++) {
                float *c = C + (size_t)r * ldc;
                for (int k = 1; k < kt; k++) {
                    const float *p = part_buf + (size_t)(k - 1) * M * N + (size_t)r * N;
                    for (int x = 0; x < N; x++) c[x] += p[x];
                }
            }
            if (after) after(ctx, r0, r1);
        }
    }
}

void kgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
           float beta, float *C, int ldc)
{
    kgemm_ex(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL, NULL, NULL, NULL);
}

/* ---- dense layers --------------------------------------------------------------------------- */

void kdense_forward(float *y, const float *x, const float *W, const float *b, const float *res, int N, int in,
                    int out)
{
    kgemm_ex(0, 1, N, out, in, 1.0f, x, in, W, in, 0.0f, y, out, b, res, NULL, NULL);
}

void kdense_forward_ex(float *y, const float *x, const float *W, const float *b, const float *res, int N, int in,
                       int out, krows_fn after, void *ctx)
{
    kgemm_ex(0, 1, N, out, in, 1.0f, x, in, W, in, 0.0f, y, out, b, res, after, ctx);
}

void kdense_backward_ex(float *dx, int acc, float *dW, float *db, const float *dy, const float *x, const float *W,
                        int N, int in, int out, krows_fn after, void *ctx)
{
    if (N == 0) return;
    if (dx) kgemm_ex(0, 0, N, in, out, 1.0f, dy, out, W, in, acc ? 1.0f : 0.0f, dx, in, NULL, NULL, after, ctx);
    if (dW) kgemm(1, 0, out, in, N, 1.0f, dy, out, x, in, 1.0f, dW, in);
    if (db) kcolsum_acc(db, dy, N, out);
}

void kdense_backward(float *dx, int acc, float *dW, float *db, const float *dy, const float *x, const float *W, int N,
                     int in, int out)
{
    kdense_backward_ex(dx, acc, dW, db, dy, x, W, N, in, out, NULL, NULL);
}

KCLONES
static void colsum_block(float *db, const float *dy, int N, int C, int c0, int c1)
{
    float acc[64];
    int w = c1 - c0;
    for (int c = 0; c < w; c++) acc[c] = 0.0f;
    for (int n = 0; n < N; n++) {
        const float *r = dy + (size_t)n * C + c0;
        for (int c = 0; c < w; c++) acc[c] += r[c];
    }
    for (int c = 0; c < w; c++) db[c0 + c] += acc[c];
}

void kcolsum_acc(float *db, const float *dy, int N, int C)
{
    int nb = (C + 63) / 64;
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PAR_MIN)
    for (int k = 0; k < nb; k++) {
        int c0 = k * 64, c1 = c0 + 64 > C ? C : c0 + 64;
        colsum_block(db, dy, N, C, c0, c1);
    }
}

/* ---- layer normalization ---------------------------------------------------------------------- */

KCLONES
static void ln_row(float *y, float *mean, float *rstd, const float *x, const float *g, const float *b, int C,
                   float eps)
{
    float m = sum_lanes(x, C) / (float)C;
    float var = sqdev_lanes(x, m, C) / (float)C;
    float rs = 1.0f / sqrtf(var + eps);
#pragma GCC ivdep
    for (int c = 0; c < C; c++) y[c] = (x[c] - m) * rs * g[c] + b[c];
    *mean = m;
    *rstd = rs;
}

void klayernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *g, const float *b, int N,
                        int C, float eps)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PAR_MIN)
    for (int n = 0; n < N; n++)
        ln_row(y + (size_t)n * C, mean + n, rstd + n, x + (size_t)n * C, g, b, C, eps);
}

KCLONES
static void ln_back_row(float *dx, int acc, const float *dy, const float *x, float m, float rs, const float *g,
                        int C)
{
    /* dxhat = dy g; dx = rs (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) */
    v16 v1 = VSPLAT(0.0f), v2 = VSPLAT(0.0f);
    int j = 0;
    for (; j + VL <= C; j += VL) {
        v16 dh = VLD(dy + j) * VLD(g + j), xh = (VLD(x + j) - m) * rs;
        v1 += dh;
        v2 += dh * xh;
    }
    float s1, s2;
    if (j == C) {
        s1 = vsum_tree(&v1) / (float)C;
        s2 = vsum_tree(&v2) / (float)C;
    } else {
        float a1[VL], a2[VL];
        memcpy(a1, &v1, sizeof a1);
        memcpy(a2, &v2, sizeof a2);
        for (int l = 0; j + l < C; l++) {
            float dh = dy[j + l] * g[j + l], xh = (x[j + l] - m) * rs;
            a1[l] += dh;
            a2[l] += dh * xh;
        }
        s1 = lanes_sum(a1) / (float)C;
        s2 = lanes_sum(a2) / (float)C;
    }
#pragma GCC ivdep
    for (int c = 0; c < C; c++) {
        float v = rs * (dy[c] * g[c] - s1 - (x[c] - m) * rs * s2);
        dx[c] = acc ? dx[c] + v : v;
    }
}

KCLONES
static void ln_param_block(float *dg, float *db, const float *dy, const float *x, const float *mean,
                           const float *rstd, int N, int C, int c0, int c1)
{
    float ag[64], ab[64];
    int w = c1 - c0;
    for (int c = 0; c < w; c++) ag[c] = ab[c] = 0.0f;
    for (int n = 0; n < N; n++) {
        const float *d = dy + (size_t)n * C + c0, *xr = x + (size_t)n * C + c0;
        float m = mean[n], rs = rstd[n];
        for (int c = 0; c < w; c++) {
            ag[c] += d[c] * ((xr[c] - m) * rs);
            ab[c] += d[c];
        }
    }
    for (int c = 0; c < w; c++) {
        if (dg) dg[c0 + c] += ag[c];
        if (db) db[c0 + c] += ab[c];
    }
}

void klayernorm_backward(float *dx, int acc, float *dg, float *db, const float *dy, const float *x,
                         const float *mean, const float *rstd, const float *g, int N, int C)
{
    /* parameter gradients first: dx may overwrite dy */
    if (dg || db) {
        int nb = (C + 63) / 64;
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PAR_MIN)
        for (int k = 0; k < nb; k++) {
            int c0 = k * 64, c1 = c0 + 64 > C ? C : c0 + 64;
            ln_param_block(dg, db, dy, x, mean, rstd, N, C, c0, c1);
        }
    }
    if (!dx) return;
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PAR_MIN)
    for (int n = 0; n < N; n++)
        ln_back_row(dx + (size_t)n * C, acc, dy + (size_t)n * C, x + (size_t)n * C, mean[n], rstd[n], g, C);
}

/* ---- GELU --------------------------------------------------------------------------------------- */

KCLONES
static void gelu_chunk(float *y, const float *x, size_t n, int kind)
{
    if (kind == KGELU_TANH) {
#pragma GCC ivdep
        for (size_t i = 0; i < n; i++) {
            float v = x[i];
            float t = ktanhf(GELU_K0 * (v + GELU_K1 * v * v * v));
            y[i] = 0.5f * v * (1.0f + t);
        }
    } else {
#pragma GCC ivdep
        for (size_t i = 0; i < n; i++) {
            float v = x[i];
            y[i] = 0.5f * v * (1.0f + kerff(v * SQRT1_2));
        }
    }
}

KCLONES
static void gelu_back_chunk(float *dx, const float *dy, const float *x, size_t n, int kind)
{
    if (kind == KGELU_TANH) {
#pragma GCC ivdep
        for (size_t i = 0; i < n; i++) {
            float v = x[i], v2 = v * v;
            float t = ktanhf(GELU_K0 * (v + GELU_K1 * v2 * v));
            float d = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * GELU_K0 * (1.0f + 3.0f * GELU_K1 * v2);
            dx[i] = dy[i] * d;
        }
    } else {
#pragma GCC ivdep
        for (size_t i = 0; i < n; i++) {
            float v = x[i];
            float d = 0.5f * (1.0f + kerff(v * SQRT1_2)) + v * INV_SQRT_2PI * kexpf(-0.5f * v * v);
            dx[i] = dy[i] * d;
        }
    }
}

/* y = gelu(x) and d = gelu'(x) from one exp per element (d may be x) */
KCLONES
static void gelu_deriv_chunk(float *y, float *d, const float *x, size_t n, int kind)
{
    if (kind == KGELU_TANH) {
#pragma GCC ivdep
        for (size_t i = 0; i < n; i++) {
            float v = x[i], v2 = v * v;
            float t = ktanhf(GELU_K0 * (v + GELU_K1 * v2 * v));
            y[i] = 0.5f * v * (1.0f + t);
            d[i] = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * GELU_K0 * (1.0f + 3.0f * GELU_K1 * v2);
        }
    } else {
#pragma GCC ivdep
        for (size_t i = 0; i < n; i++) {
            /* erf(z), z = x / sqrt 2, as kerff, sharing E = exp(-z^2) = exp(-x^2 / 2) with phi(x) */
            float v = x[i], z = v * SQRT1_2, az = z < 0 ? -z : z;
            float t = 1.0f / (1.0f + 0.3275911f * az);
            float p = 1.061405429f;
            p = p * t - 1.453152027f;
            p = p * t + 1.421413741f;
            p = p * t - 0.284496736f;
            p = p * t + 0.254829592f;
            float E = kexpf(-az * az), e = 1.0f - p * t * E;
            float cdf = 0.5f * (1.0f + (z < 0 ? -e : e));
            y[i] = v * cdf;
            d[i] = cdf + v * INV_SQRT_2PI * E;
        }
    }
}

void kgelu_forward(float *y, const float *x, size_t n, int kind)
{
    size_t nc = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN / 4)
    for (size_t c = 0; c < nc; c++) {
        size_t i0 = c * CHUNK, m = n - i0 < CHUNK ? n - i0 : CHUNK;
        gelu_chunk(y + i0, x + i0, m, kind);
    }
}

void kgelu_backward(float *dx, const float *dy, const float *x, size_t n, int kind)
{
    size_t nc = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN / 4)
    for (size_t c = 0; c < nc; c++) {
        size_t i0 = c * CHUNK, m = n - i0 < CHUNK ? n - i0 : CHUNK;
        gelu_back_chunk(dx + i0, dy + i0, x + i0, m, kind);
    }
}

/* ---- fused row epilogues ------------------------------------------------------------------------- */

void kepi_layernorm(void *ctx, int r0, int r1)
{
    const kepi_ln *e = ctx;
    const int C = e->C;
    for (int r = r0; r < r1; r++) {
        float *x = e->x + (size_t)r * C;
        if (e->res && e->p > 0)
            dropout_chunk(x, x, e->res + (size_t)r * C, (size_t)C, e->p, e->key,
                          (e->tok ? e->tok[r] : (uint64_t)r) * (uint64_t)C);
        else if (e->res)
#pragma GCC ivdep
            for (int c = 0; c < C; c++) x[c] += e->res[(size_t)r * C + c];
        ln_row(e->y + (size_t)r * C, e->mean + r, e->rstd + r, x, e->g, e->b, C, e->eps);
    }
}

void kepi_gelu(void *ctx, int r0, int r1)
{
    const kepi_act *e = ctx;
    size_t a = (size_t)r0 * e->C, n = (size_t)(r1 - r0) * e->C;
    gelu_chunk(e->y + a, e->x + a, n, e->kind);
}

void kepi_gelu_deriv(void *ctx, int r0, int r1)
{
    const kepi_act *e = ctx;
    size_t a = (size_t)r0 * e->C, n = (size_t)(r1 - r0) * e->C;
    gelu_deriv_chunk(e->y + a, e->x + a, e->x + a, n, e->kind);
}

KCLONES
static void mul_chunk(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] *= x[i];
}

void kepi_mul(void *ctx, int r0, int r1)
{
    const kepi_act *e = ctx;
    size_t a = (size_t)r0 * e->C, n = (size_t)(r1 - r0) * e->C;
    mul_chunk(e->y + a, e->x + a, n);
}

void kepi_gelu_back(void *ctx, int r0, int r1)
{
    const kepi_act *e = ctx;
    size_t a = (size_t)r0 * e->C, n = (size_t)(r1 - r0) * e->C;
    gelu_back_chunk(e->y + a, e->y + a, e->x + a, n, e->kind);
}

/* ---- softmax -------------------------------------------------------------------------------------- */

KCLONES
static void softmax_row(float *y, const float *x, int n)
{
    float m = max_lanes(x, n);
    float s = exp_sum_lanes(y, x, m, n);
    float inv = 1.0f / s;
#pragma GCC ivdep
    for (int j = 0; j < n; j++) y[j] *= inv;
}

KCLONES
static void softmax_back_row(float *dx, const float *dy, const float *y, int n)
{
    float s = dot_lanes(dy, y, n);
#pragma GCC ivdep
    for (int j = 0; j < n; j++) dx[j] = y[j] * (dy[j] - s);
}

void ksoftmax_forward(float *y, const float *x, int rows, int cols)
{
#pragma omp parallel for schedule(static) if ((size_t)rows * cols >= PAR_MIN)
    for (int r = 0; r < rows; r++) softmax_row(y + (size_t)r * cols, x + (size_t)r * cols, cols);
}

void ksoftmax_backward(float *dx, const float *dy, const float *y, int rows, int cols)
{
#pragma omp parallel for schedule(static) if ((size_t)rows * cols >= PAR_MIN)
    for (int r = 0; r < rows; r++)
        softmax_back_row(dx + (size_t)r * cols, dy + (size_t)r * cols, y + (size_t)r * cols, cols);
}

/* ---- attention -------------------------------------------------------------------------------------- */

size_t kattention_scratch(const kattn_dims *d) { return (size_t)2 * d->L * d->L; }

/* Softmax of the n x n scores S in place; with causal, row i over j <= i and
 * zeros after. */
/* row r (n) in place: softmax over its first k entries, zeros after */
KINLINE void attn_softmax_row(float *r, int k, int n)
{
    float m = max_lanes(r, k);
    float s = exp_sum_lanes(r, r, m, k);
    float inv = 1.0f / s;
    for (int j = 0; j < k; j++) r[j] *= inv;
    for (int j = k; j < n; j++) r[j] = 0.0f;
}

KCLONES
static void attn_softmax(float *S, int n, int causal)
{
    for (int i = 0; i < n; i++) attn_softmax_row(S + (size_t)i * n, causal ? i + 1 : n, n);
}

/* A = P with dropout (probabilities of block (b, h): index base + i L + j) */
static void attn_drop(float *A, const float *P, int n, int L, float p, uint64_t key, uint64_t base)
{
    for (int i = 0; i < n; i++)
        dropout_chunk(A + (size_t)i * n, P + (size_t)i * n, NULL, (size_t)n, p, key, base + (uint64_t)i * L);
}

/* dS = P * (dP - rowsum(dP * P)) in place in dP (softmax backward) */
KCLONES
static void attn_softmax_back(float *dP, const float *P, int n)
{
    for (int i = 0; i < n; i++) {
        float *d = dP + (size_t)i * n;
        const float *p = P + (size_t)i * n;
        float s = dot_lanes(d, p, n);
#pragma GCC ivdep
        for (int j = 0; j < n; j++) d[j] = p[j] * (d[j] - s);
    }
}

/* ---- attention in bf16: the heads of a sequence batched -------------------------
 *
 * One task is G heads of one sequence (G from the shapes alone, never from
 * the thread count, so the bytes do not depend on it): q, k, v (and the
 * gradient of the context) of those heads rounded to bf16 once, dense, then
 * each product is one batched oneDNN matmul over the G heads, writing its
 * fp32 result straight into place (the probabilities' blocks, the context's
 * or dqkv's columns). Softmax, dropout and their backward stay fp32. */

/* Heads per task: the largest divisor of NH leaving at least 8 tasks (B
 * sequences x NH / G groups), at least 1. */
static int attn_group(int B, int NH)
{
    int best = 1;
    for (int g = 1; g <= NH; g++)
        if (NH % g == 0 && (int64_t)B * (NH / g) >= 8) best = g;
    return best;
}

/* Softmax of the rows of scale S (n x n, row stride n) into P (fp32, kept
 * for the backward pass; causal: zeros after the diagonal) and, when there is
 * no dropout, rounded into ab, row by row while the row is in cache */
KCLONES
static void attn_softmax_bf16(float *P, const float *S, uint16_t *ab, int n, int causal, float scale)
{
    for (int i = 0; i < n; i++) {
        float *r = P + (size_t)i * n;
        const float *x = S + (size_t)i * n;
        int k = causal ? i + 1 : n;
        for (int j = 0; j < k; j++) r[j] = x[j] * scale;
        attn_softmax_row(r, k, n);
        if (ab) kbf16_round(ab + (size_t)i * n, r, (size_t)n, 1.0f);
    }
}

/* Task t of a bf16 pass over G heads a task: sequence b, first head h0,
 * length n; its scratch (kbf16_scratch: nn = G n n floats, then the bf16
 * blocks: `blocks` of G n D values and one of G n n). Returns 0 for an
 * empty sequence (nothing to do); out of memory ends the process (koom). */
typedef struct attn_task {
    int b, h0, n;
    size_t nd, nn;  /* G n D, G n n */
    float *f;       /* (G, n, n) fp32 */
    uint16_t *bb;   /* the bf16 blocks */
} attn_task;

static int attn_task_of(const kattn_dims *d, const int32_t *offs, int G, int t, int blocks, attn_task *k)
{
    k->b = t / (d->NH / G), k->h0 = (t % (d->NH / G)) * G, k->n = offs[k->b + 1] - offs[k->b];
    if (k->n <= 0) return 0;
    k->nd = (size_t)G * k->n * d->D, k->nn = (size_t)G * k->n * k->n;
    const size_t bytes = (blocks * k->nd + k->nn) * sizeof(uint16_t) + k->nn * sizeof(float);
    if (!(k->f = kbf16_scratch(bytes))) koom(bytes);
    k->bb = (uint16_t *)(k->f + k->nn);
    return 1;
}

/* the dropout stream index of block (sequence b, head h) (kattn_dims.key) */
static uint64_t drop_base(const kattn_dims *d, int b, int h)
{
    return ((d->seq ? d->seq[b] : (uint64_t)b) * d->NH + h) * d->L * d->L;
}

static void attn_forward_bf16(float *ctx, float *probs, float *scratch, const float *qkv, const int32_t *offs,
                              const kattn_dims *d)
{
    const int NH = d->NH, D = d->D, H = NH * D, L = d->L, G = attn_group(d->B, NH), tasks = d->B * (NH / G);
    const float scale = 1.0f / sqrtf((float)D);
    const size_t per = kattention_scratch(d);
#pragma omp parallel for schedule(dynamic, 1) if ((int64_t)tasks * G * L * L * D >= PAR_MIN * 8)
    for (int t = 0; t < tasks; t++) {
        attn_task k;
        if (!attn_task_of(d, offs, G, t, 3, &k)) continue;
        const int b = k.b, h0 = k.h0, n = k.n;
        const size_t nd = k.nd;
        float *S0 = k.f;
        uint16_t *qb = k.bb, *kb = qb + nd, *vb = kb + nd, *ab = vb + nd;
        /* q, k, v of the G heads, rounded once for the two products */
        kbf16_pack_heads(qb, qkv + (size_t)offs[b] * 3 * H + (size_t)h0 * D, 3 * H, n, 3, H, G, D);
        /* the scores q k^T (scaled in the softmax), then the probabilities */
        if (kbf16_gemm_batch(0, 1, G, n, n, D, qb, kb, S0, (int64_t)n * n, n)) koom(nd * 2);
        float *P0 = probs + ((size_t)b * NH + h0) * L * L;
        for (int g = 0; g < G; g++) {
            float *P = P0 + (size_t)g * L * L;
            attn_softmax_bf16(P, S0 + (size_t)g * n * n, d->pdrop > 0.0f ? NULL : ab + (size_t)g * n * n, n,
                              d->causal, scale);
            if (d->pdrop > 0.0f) {
                float *S = scratch + per * (size_t)omp_get_thread_num();
                attn_drop(S, P, n, L, d->pdrop, d->key, drop_base(d, b, h0 + g));
                kbf16_round(ab + (size_t)g * n * n, S, (size_t)n * n, 1.0f);
            }
        }
        if (kbf16_gemm_batch(0, 0, G, n, D, n, ab, vb, ctx + (size_t)offs[b] * H + (size_t)h0 * D, D, H))
            koom(nd * 2);
    }
}

static void attn_backward_bf16(float *dqkv, float *scratch, const float *dctx, const float *qkv, const float *probs,
                               const int32_t *offs, const kattn_dims *d)
{
    const int NH = d->NH, D = d->D, H = NH * D, L = d->L, G = attn_group(d->B, NH), tasks = d->B * (NH / G);
    const float scale = 1.0f / sqrtf((float)D);
    const size_t per = kattention_scratch(d);
#pragma omp parallel for schedule(dynamic, 1) if ((int64_t)tasks * G * L * L * D >= PAR_MIN * 8)
    for (int t = 0; t < tasks; t++) {
        attn_task k;
        if (!attn_task_of(d, offs, G, t, 4, &k)) continue;
        const int b = k.b, h0 = k.h0, n = k.n;
        const size_t nd = k.nd;
        float *dP0 = k.f;
        uint16_t *qb = k.bb, *kb = qb + nd, *vb = kb + nd, *cb = vb + nd, *ab = cb + nd;
        float *dQ = dqkv + (size_t)offs[b] * 3 * H + (size_t)h0 * D;
        kbf16_pack_heads(qb, qkv + (size_t)offs[b] * 3 * H + (size_t)h0 * D, 3 * H, n, 3, H, G, D);
        kbf16_pack_heads(cb, dctx + (size_t)offs[b] * H + (size_t)h0 * D, H, n, 1, 0, G, D);
        const float *P0 = probs + ((size_t)b * NH + h0) * L * L;
        float *S = scratch + per * (size_t)omp_get_thread_num();
        for (int g = 0; g < G; g++) {
            const float *A = P0 + (size_t)g * L * L;
            if (d->pdrop > 0.0f) {
                attn_drop(S, A, n, L, d->pdrop, d->key, drop_base(d, b, h0 + g));
                A = S;
            }
            kbf16_round(ab + (size_t)g * n * n, A, (size_t)n * n, 1.0f);
        }
        /* dV = A^T dC; dA = dC V^T */
        if (kbf16_gemm_batch(1, 0, G, n, D, n, ab, cb, dQ + 2 * H, D, 3 * H)) koom(nd * 2);
        if (kbf16_gemm_batch(0, 1, G, n, n, D, cb, vb, dP0, (int64_t)n * n, n)) koom(nd * 2);
        /* dS = softmax backward of the (undropped) dA, times scale, rounded into ab */
        for (int g = 0; g < G; g++) {
            float *dP = dP0 + (size_t)g * n * n;
            if (d->pdrop > 0.0f)
                attn_drop(dP, dP, n, L, d->pdrop, d->key, drop_base(d, b, h0 + g));
            attn_softmax_back(dP, P0 + (size_t)g * L * L, n);
            kbf16_round(ab + (size_t)g * n * n, dP, (size_t)n * n, scale);
        }
        /* dQ = scale dS K; dK = scale dS^T Q */
        if (kbf16_gemm_batch(0, 0, G, n, D, n, ab, kb, dQ, D, 3 * H)) koom(nd * 2);
        if (kbf16_gemm_batch(1, 0, G, n, D, n, ab, qb, dQ + H, D, 3 * H)) koom(nd * 2);
    }
}

void kattention_forward(float *ctx, float *probs, float *scratch, const float *qkv, const int32_t *offs,
                        const kattn_dims *d)
{
    const int prec = tl_prec;
    if (prec == KPREC_BF16) {
        attn_forward_bf16(ctx, probs, scratch, qkv, offs, d);
        return;
    }
    const int NH = d->NH, D = d->D, H = NH * D, L = d->L, tasks = d->B * NH;
    const float scale = 1.0f / sqrtf((float)D);
    const size_t per = kattention_scratch(d);
#pragma omp parallel for schedule(dynamic, 1) if ((int64_t)tasks * L * L * D >= PAR_MIN * 8)
    for (int t = 0; t < tasks; t++) {
        int b = t / NH, h = t % NH, n = offs[b + 1] - offs[b];
        if (n <= 0) continue;
        const float *Q = qkv + (size_t)offs[b] * 3 * H + (size_t)h * D, *K = Q + H, *Vv = Q + 2 * H;
        float *P = probs + (size_t)t * L * L;
        sgemm1(prec, CblasNoTrans, CblasTrans, n, n, D, scale, Q, 3 * H, K, 3 * H, 0.0f, P, n);
        attn_softmax(P, n, d->causal);
        const float *A = P;
        if (d->pdrop > 0.0f) {
            float *S = scratch + per * (size_t)omp_get_thread_num();
            attn_drop(S, P, n, L, d->pdrop, d->key, drop_base(d, b, h));
            A = S;
        }
        sgemm1(prec, CblasNoTrans, CblasNoTrans, n, D, n, 1.0f, A, n, Vv, 3 * H, 0.0f,
                    ctx + (size_t)offs[b] * H + (size_t)h * D, H);
    }
}

void kattention_backward(float *dqkv, float *scratch, const float *dctx, const float *qkv, const float *probs,
                         const int32_t *offs, const kattn_dims *d)
{
    const int prec = tl_prec;
    if (prec == KPREC_BF16) {
        attn_backward_bf16(dqkv, scratch, dctx, qkv, probs, offs, d);
        return;
    }
    const int NH = d->NH, D = d->D, H = NH * D, L = d->L, tasks = d->B * NH;
    const float scale = 1.0f / sqrtf((float)D);
    const size_t per = kattention_scratch(d);
#pragma omp parallel for schedule(dynamic, 1) if ((int64_t)tasks * L * L * D >= PAR_MIN * 8)
    for (int t = 0; t < tasks; t++) {
        int b = t / NH, h = t % NH, n = offs[b + 1] - offs[b];
        if (n <= 0) continue;
        const float *Q = qkv + (size_t)offs[b] * 3 * H + (size_t)h * D, *K = Q + H, *Vv = Q + 2 * H;
        const float *dC = dctx + (size_t)offs[b] * H + (size_t)h * D;
        float *dQ = dqkv + (size_t)offs[b] * 3 * H + (size_t)h * D, *dK = dQ + H, *dV = dQ + 2 * H;
        const float *P = probs + (size_t)t * L * L;
        float *dP = scratch + per * (size_t)omp_get_thread_num(), *S = dP + (size_t)L * L;
        const float *A = P;
        if (d->pdrop > 0.0f) {
            attn_drop(S, P, n, L, d->pdrop, d->key, drop_base(d, b, h));
            A = S;
        }
        /* dV = A^T dC; dA = dC V^T */
        sgemm1(prec, CblasTrans, CblasNoTrans, n, D, n, 1.0f, A, n, dC, H, 0.0f, dV, 3 * H);
        sgemm1(prec, CblasNoTrans, CblasTrans, n, n, D, 1.0f, dC, H, Vv, 3 * H, 0.0f, dP, n);
        if (d->pdrop > 0.0f) attn_drop(dP, dP, n, L, d->pdrop, d->key, drop_base(d, b, h));
        attn_softmax_back(dP, P, n);
        /* dQ = scale dS K; dK = scale dS^T Q */
        sgemm1(prec, CblasNoTrans, CblasNoTrans, n, D, n, scale, dP, n, K, 3 * H, 0.0f, dQ, 3 * H);
        sgemm1(prec, CblasTrans, CblasNoTrans, n, D, n, scale, dP, n, Q, 3 * H, 0.0f, dK, 3 * H);
    }
}

/* ---- softmax cross-entropy ----------------------------------------------------------------------------- */

/* x += bias, returns max(x); two passes over a row that stays in cache */
KINLINE float add_max_lanes(float *restrict x, const float *restrict bias, int n)
{
    for (int j = 0; j < n; j++) x[j] += bias[j];
    return max_lanes(x, n);
}

KCLONES
static void xent_row(float *x, const float *bias, float *loss, uint8_t *correct, int32_t label, float gscale,
                     int grad, int V)
{
    float m = bias ? add_max_lanes(x, bias, V) : max_lanes(x, V);
    /* first index holding the maximum */
    int am = 0;
    for (int j = 0; j < V; j += VL) {
        int e = j + VL < V ? j + VL : V, hit = 0;
        for (int k = j; k < e; k++) hit |= x[k] == m;
        if (hit) {
            for (am = j; x[am] != m; am++) {
            }
            break;
        }
    }
    float xl = x[label];
    float s = grad ? exp_sum_lanes(x, x, m, V) : expsum_lanes(x, m, V);
    *loss = logf(s) + m - xl;
    if (correct) *correct = am == label;
    if (grad) {
        float f = gscale / s;
        for (int j = 0; j < V; j++) x[j] *= f;
        x[label] -= gscale;
    }
}

void kxent(float *x, const float *bias, float *loss, uint8_t *correct, const int32_t *labels, const float *gscale,
           int M, int V)
{
#pragma omp parallel for schedule(static) if ((size_t)M * V >= PAR_MIN)
    for (int i = 0; i < M; i++) {
        float *r = x + (size_t)i * V;
        if (labels[i] < 0) {
            loss[i] = 0.0f;
            if (correct) correct[i] = 0;
            if (gscale)
                memset(r, 0, (size_t)V * sizeof *r);
            else if (bias)
                for (int j = 0; j < V; j++) r[j] += bias[j];
            continue;
        }
        xent_row(r, bias, loss + i, correct ? correct + i : NULL, labels[i], gscale ? gscale[i] : 0.0f,
                 gscale != NULL, V);
    }
}

/* first index of the maximum m of x (V) */
static int first_max(const float *x, float m, int V)
{
    for (int j = 0; j < V; j++)
        if (x[j] == m) return j;
    return 0;
}

void kxent_soft(float *x, const float *bias, const float *t, float T, float *loss, float *kl, uint8_t *correct,
                uint8_t *agree, const int32_t *labels, const float *gscale, const float *kscale, int M, int V)
{
    const int grad = gscale && kscale;
    const float iT = 1.0f / T;
#pragma omp parallel if ((size_t)M * V >= PAR_MIN)
    {
        float *y = workspace((size_t)2 * V); /* exp((x - max) / T), exp((t - max) / T) */
        if (!y) abort();
        float *z = y + V;
#pragma omp for schedule(static)
        for (int i = 0; i < M; i++) {
            float *r = x + (size_t)i * V;
            const float *tr = t + (size_t)i * V;
            float m = bias ? add_max_lanes(r, bias, V) : max_lanes(r, V);
            float mt = max_lanes(tr, V);
            if (agree) agree[i] = first_max(r, m, V) == first_max(tr, mt, V);
            for (int j = 0; j < V; j++) y[j] = r[j] * iT;
            for (int j = 0; j < V; j++) z[j] = tr[j] * iT;
            float sy = exp_sum_lanes(y, y, m * iT, V), sz = exp_sum_lanes(z, z, mt * iT, V);
            /* KL = sum_j p_j (t_j - x_j) / T + (m / T + log sy) - (mt / T + log sz), p = z / sz */
            double d = 0;
            for (int j = 0; j < V; j++) d += (double)z[j] * ((double)tr[j] - (double)r[j]);
            double k = d / sz * iT + ((double)m * iT + log((double)sy)) - ((double)mt * iT + log((double)sz));
            kl[i] = (float)(k * T * T);
            int lab = labels[i];
            if (lab >= 0) {
                float xl = r[lab];
                if (correct) correct[i] = first_max(r, m, V) == lab;
                float s = grad ? exp_sum_lanes(r, r, m, V) : expsum_lanes(r, m, V);
                loss[i] = logf(s) + m - xl;
                if (grad) {
                    float f = gscale[i] / s;
                    for (int j = 0; j < V; j++) r[j] *= f;
                    r[lab] -= gscale[i];
                }
            } else {
                loss[i] = 0.0f;
                if (correct) correct[i] = 0;
                if (grad) memset(r, 0, (size_t)V * sizeof *r);
            }
            if (grad) {
                float g = kscale[i] * T, gy = g / sy, gz = g / sz;
                for (int j = 0; j < V; j++) r[j] += gy * y[j] - gz * z[j];
            }
        }
    }
}

double kattn_score_mse(const float *qkv, const float *tqkv, const int32_t *offs, int B, int NH, int D, int Dt, int L,
                       float *dqkv, float gscale, double *count)
{
    const int prec = tl_prec;
    const int H = NH * D, Ht = NH * Dt, tasks = B * NH;
    const float sc = 1.0f / sqrtf((float)D), tsc = 1.0f / sqrtf((float)Dt);
    double *part = calloc((size_t)(tasks > 0 ? tasks : 1), sizeof *part);
    if (!part) abort();
#pragma omp parallel for schedule(dynamic, 1) if ((int64_t)tasks * L * L * D >= PAR_MIN * 8)
    for (int t = 0; t < tasks; t++) {
        int b = t / NH, h = t % NH, n = offs[b + 1] - offs[b];
        if (n <= 0) continue;
        float *S = workspace((size_t)2 * L * L);
        if (!S) abort();
        float *St = S + (size_t)n * n;
        const float *Q = qkv + (size_t)offs[b] * 3 * H + (size_t)h * D, *K = Q + H;
        const float *Qt = tqkv + (size_t)offs[b] * 3 * Ht + (size_t)h * Dt, *Kt = Qt + Ht;
        sgemm1(prec, CblasNoTrans, CblasTrans, n, n, D, sc, Q, 3 * H, K, 3 * H, 0.0f, S, n);
        sgemm1(prec, CblasNoTrans, CblasTrans, n, n, Dt, tsc, Qt, 3 * Ht, Kt, 3 * Ht, 0.0f, St, n);
        double acc = 0;
        for (size_t i = 0; i < (size_t)n * n; i++) {
            float e = S[i] - St[i];
            acc += (double)e * e;
            S[i] = 2.0f * gscale * e; /* d sum / dS, scaled */
        }
        part[t] = acc;
        if (dqkv) {
            float *dQ = dqkv + (size_t)offs[b] * 3 * H + (size_t)h * D, *dK = dQ + H;
            /* dQ += sc dS K; dK += sc dS^T Q */
            sgemm1(prec, CblasNoTrans, CblasNoTrans, n, D, n, sc, S, n, K, 3 * H, 1.0f, dQ, 3 * H);
            sgemm1(prec, CblasTrans, CblasNoTrans, n, D, n, sc, S, n, Q, 3 * H, 1.0f, dK, 3 * H);
        }
    }
    double sum = 0, cnt = 0;
    for (int t = 0; t < tasks; t++) {
        int n = offs[t / NH + 1] - offs[t / NH];
        sum += part[t];
        cnt += (double)n * n;
    }
    free(part);
    if (count) *count = cnt;
    return sum;
}

double kcosine_loss(const float *s, const float *t, float *ds, float gscale, int N, int H)
{
    double *part = malloc((size_t)(N > 0 ? N : 1) * sizeof *part);
    if (!part) abort();
#pragma omp parallel for schedule(static) if ((size_t)N * H >= PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *a = s + (size_t)i * H, *b = t + (size_t)i * H;
        double ab = 0, aa = 0, bb = 0;
        for (int j = 0; j < H; j++) {
            ab += (double)a[j] * b[j];
            aa += (double)a[j] * a[j];
            bb += (double)b[j] * b[j];
        }
        aa += 1e-12;
        bb += 1e-12;
        double den = sqrt(aa * bb), c = ab / den;
        part[i] = 1.0 - c;
        if (ds) {
            /* d(1 - c)/da = -(b / den - c a / aa) */
            float *d = ds + (size_t)i * H;
            for (int j = 0; j < H; j++) d[j] = (float)(gscale * -((double)b[j] / den - c * (double)a[j] / aa));
        }
    }
    double sum = 0;
    for (int i = 0; i < N; i++) sum += part[i];
    free(part);
    return sum;
}

/* ---- heads ------------------------------------------------------------------------------------------------ */

void kpooler_forward(float *pooled, const float *cls, const float *W, const float *b, int M, int H)
{
    kdense_forward(pooled, cls, W, b, NULL, M, H, H);
    for (size_t i = 0; i < (size_t)M * H; i++) pooled[i] = tanhf(pooled[i]);
}

void kpooler_backward(float *dcls, int acc, float *dW, float *db, float *dpooled, const float *cls,
                      const float *pooled, const float *W, int M, int H)
{
    for (size_t i = 0; i < (size_t)M * H; i++) dpooled[i] *= 1.0f - pooled[i] * pooled[i];
    kdense_backward(dcls, acc, dW, db, dpooled, cls, W, M, H, H);
}

/* rows of the head's dense output: a = gelu(pre), h = LayerNorm(a) */
static void mlm_rows(void *ctx, int r0, int r1)
{
    kmlm_head *k = ctx;
    const int E = k->E;
    gelu_chunk(k->a + (size_t)r0 * E, k->pre + (size_t)r0 * E, (size_t)(r1 - r0) * E, k->act);
    for (int r = r0; r < r1; r++)
        ln_row(k->h + (size_t)r * E, k->mean + r, k->rstd + r, k->a + (size_t)r * E, k->ln_g, k->ln_b, E, k->eps);
}

void kmlm_head_forward(kmlm_head *k, const float *x)
{
    const int M = k->M, E = k->E;
    kdense_forward_ex(k->pre, x, k->w, k->b, NULL, M, k->H, E, mlm_rows, k);
    kdense_forward(k->logits, k->h, k->emb, NULL, NULL, M, E, k->V); /* kxent adds the bias */
}

void kmlm_head_backward(kmlm_head *k, float *dx, int acc, const float *x)
{
    const int M = k->M, E = k->E;
    kdense_backward(k->dh, 0, k->demb, k->dbias, k->logits, k->h, k->emb, M, E, k->V);
    klayernorm_backward(k->da, 0, k->dln_g, k->dln_b, k->dh, k->a, k->mean, k->rstd, k->ln_g, M, E);
    kgelu_backward(k->da, k->da, k->pre, (size_t)M * E, k->act);
    kdense_backward(dx, acc, k->dw, k->db, k->da, x, k->w, M, k->H, E);
}
