/* trainer/bf16.c: bfloat16 matrix products on oneDNN's matmul, and the CPU
 * detection that decides whether they run (see bf16.h).
 *
 * Why oneDNN (Debian libdnnl-dev) and not OpenBLAS's sbgemm: Debian's
 * OpenBLAS 0.3.21 declares cblas_sbgemm but is built without it (no such
 * symbol in libopenblas.so.0). oneDNN's matmul, measured on an AMD EPYC
 * (Zen 4, AVX512_BF16), one thread: 360-390 GFLOP/s on the trainer's shapes
 * (2048 x 256..1024 x 256..1024) against OpenBLAS sgemm's 95 in fp32.
 *
 * One matmul primitive per (transpose A, transpose B, beta 0 or 1) serves
 * every shape: M, N, K and C's row stride are runtime values (oneDNN picks
 * its JIT gemm for that), the operands dense; nothing is created per shape.
 * Eight primitives in all (beta 1 is a sum post-op). They are made once per process (pthread_once)
 * and executed concurrently by the OpenMP threads (oneDNN primitives are
 * thread-safe to execute; each thread has its own stream). They are made
 * with one OpenMP thread, so each product runs on its calling thread alone
 * and its bits do not depend on the thread count (kgemm's tiles decide the
 * split).
 *
 * Operands are rounded into per-thread scratch (packed, the stored layout
 * kept) with alpha folded into A before rounding; C is fp32 in place.
 */
#include "trainer/bf16.h"

#include <cpuid.h>
#include <immintrin.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#ifdef KILN_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

/* ---- the CPU ---------------------------------------------------------------------- */

static unsigned long long xgetbv0(void)
{
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

/* bit 0 avx2, 1 avx512f, 2 avx512_bf16, 3 amx_bf16 (usable: the OS saves the state) */
static int cpu_bits(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0; /* no OSXSAVE */
    unsigned long long x = xgetbv0();
    int ymm = (x & 6) == 6, zmm = ymm && (x & 0xe0) == 0xe0, tile = (x & 0x60000) == 0x60000;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    unsigned b7, c7, d7, a71 = 0, t;
    __cpuid_count(7, 0, a, b7, c7, d7);
    unsigned max7 = a;
    if (max7 >= 1) __cpuid_count(7, 1, a71, t, t, t);
    int bits = 0;
    if (ymm && (b7 & (1u << 5))) bits |= 1;
    if (zmm && (b7 & (1u << 16))) bits |= 2;
    if (zmm && (b7 & (1u << 16)) && (a71 & (1u << 5))) bits |= 4;
    if (tile && (d7 & (1u << 22))) bits |= 8;
    /* KILN_CPU_NO_BF16=1: as if the CPU had no bf16 dot products (tests of
     * the fp32 fallback and of the refusal on any machine) */
    const char *no = getenv("KILN_CPU_NO_BF16");
    if (no && *no == '1') bits &= ~12;
    return bits;
}

int kbf16_cpu(void) { return (cpu_bits() & 12) != 0; }

int kbf16_cpu_dot(void) { return (cpu_bits() & 4) != 0; }

void kcpu_describe(char *name, size_t n_name, char *feats, size_t n_feats)
{
    unsigned r[12] = {0}, a, b, c, d;
    snprintf(name, n_name, "unknown CPU");
    if ((unsigned)__get_cpuid_max(0x80000000, NULL) >= 0x80000004u) {
        for (unsigned i = 0; i < 3; i++) {
            __cpuid(0x80000002 + i, a, b, c, d);
            r[4 * i] = a, r[4 * i + 1] = b, r[4 * i + 2] = c, r[4 * i + 3] = d;
        }
        char s[49];
        memcpy(s, r, 48);
        s[48] = '\0';
        char *p = s;
        while (*p == ' ') p++;
        size_t l = strlen(p);
        while (l && p[l - 1] == ' ') p[--l] = '\0';
        if (*p) snprintf(name, n_name, "%s", p);
    }
    int bits = cpu_bits();
    snprintf(feats, n_feats, "%s%s%s%s", bits & 1 ? "avx2" : "no-avx2", bits & 2 ? " avx512f" : "",
             bits & 4 ? " avx512_bf16" : "", bits & 8 ? " amx_bf16" : "");
}

/* ---- rounding --------------------------------------------------------------------- */

/* The rule of VCVTNEPS2BF16 (Intel SDM): NaN stays NaN (quieted), an fp32
 * denormal becomes a zero of its sign (DAZ), else round to nearest even. */
static inline uint32_t round_bits(uint32_t u)
{
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
    if (!(u & 0x7f800000u)) return (u >> 16) & 0x8000u;
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

/* dst[i] = bf16(alpha src[i]), i < n, one by one (the rule above) */
static void round_scalar(uint16_t *dst, const float *src, size_t n, float alpha)
{
    for (size_t i = 0; i < n; i++) {
        float f = src[i] * alpha;
        uint32_t u;
        memcpy(&u, &f, 4);
        dst[i] = (uint16_t)round_bits(u);
    }
}

/* rows x cols of src (row stride sld) into dst (row stride dld), 16 at a
 * time with the CPU's own instruction (only where it has it), the rest of
 * each row one by one; times alpha first (x 1 is exact: the same bits) */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void
round_hw(uint16_t *dst, size_t dld, const float *src, size_t sld, size_t rows, size_t cols, float alpha)
{
    const __m512 a = _mm512_set1_ps(alpha);
    for (size_t r = 0; r < rows; r++) {
        const float *x = src + r * sld;
        uint16_t *y = dst + r * dld;
        size_t i = 0;
        for (; i + 16 <= cols; i += 16)
            _mm256_storeu_si256((__m256i *)(y + i),
                                (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_loadu_ps(x + i), a)));
        round_scalar(y + i, x + i, cols - i, alpha);
    }
}

static int hw_round = -1; /* kbf16_cpu(), read once */

static int use_hw(void)
{
    int hw = __atomic_load_n(&hw_round, __ATOMIC_RELAXED);
    if (hw < 0) __atomic_store_n(&hw_round, hw = (cpu_bits() & 4) != 0, __ATOMIC_RELAXED);
    return hw;
}

/* rows x cols of src (row stride sld) into dst (row stride dld), times alpha */
static void round_rows(uint16_t *dst, size_t dld, const float *src, size_t sld, size_t rows, size_t cols, float alpha)
{
    if (use_hw()) round_hw(dst, dld, src, sld, rows, cols, alpha);
    else
        for (size_t r = 0; r < rows; r++) round_scalar(dst + r * dld, src + r * sld, cols, alpha);
}

void kbf16_round(uint16_t *dst, const float *src, size_t n, float alpha) { round_rows(dst, n, src, n, 1, n, alpha); }

void kbf16_truncate(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        u = round_bits(u) << 16;
        memcpy(&x[i], &u, 4);
    }
}

/* rows x cols of src (leading dimension ld) into dst packed (leading dimension cols) */
static void round_block(uint16_t *dst, const float *src, int rows, int cols, int ld, float alpha)
{
    if (ld == cols) round_rows(dst, (size_t)rows * cols, src, (size_t)rows * cols, 1, (size_t)rows * cols, alpha);
    else round_rows(dst, (size_t)cols, src, (size_t)ld, (size_t)rows, (size_t)cols, alpha);
}

void kbf16_round_block(uint16_t *dst, const float *src, int rows, int cols, int ld)
{
    round_block(dst, src, rows, cols, ld, 1.0f);
}

void kbf16_pack_heads(uint16_t *dst, const float *x, int ld, int n, int parts, int part_off, int G, int D)
{
    /* block (p, g): n rows of D, ld apart in x, packed */
    for (int p = 0; p < parts; p++)
        for (int g = 0; g < G; g++)
            round_rows(dst + ((size_t)p * G + g) * n * D, (size_t)D, x + (size_t)p * part_off + (size_t)g * D,
                       (size_t)ld, (size_t)n, (size_t)D, 1.0f);
}

/* ---- products --------------------------------------------------------------------- */

#ifdef KILN_HAVE_DNNL

static pthread_once_t once = PTHREAD_ONCE_INIT;
static dnnl_engine_t engine;
/* [ta][tb][beta != 0]: A, B dense (tags ab / ba: packed by round_block), C
 * with a runtime row stride; runtime inner strides would send oneDNN to its
 * reference loops */
static dnnl_primitive_t prim[2][2][2];
/* [ta][tb]: batched (G, M, K) x (G, K, N), dense operands (tags abc / acb),
 * beta 0, C with runtime batch and row strides (the attention's heads) */
static dnnl_primitive_t bprim[2][2];
static char setup_err[256];

static void setup(void)
{
    if (!kbf16_cpu()) {
        snprintf(setup_err, sizeof setup_err,
                 "this CPU has no bf16 dot products (AVX512_BF16 or AMX-BF16; it has: %s)",
                 (cpu_bits() & 2) ? "AVX-512 without BF16" : (cpu_bits() & 1) ? "AVX2" : "neither AVX2 nor AVX-512");
        return;
    }
    dnnl_status_t s = dnnl_engine_create(&engine, dnnl_cpu, 0);
    if (s != dnnl_success) {
        snprintf(setup_err, sizeof setup_err, "oneDNN: cannot create a CPU engine (status %d)", (int)s);
        return;
    }
    const dnnl_dims_t dims = {DNNL_RUNTIME_DIM_VAL, DNNL_RUNTIME_DIM_VAL};
    const dnnl_dims_t rows = {DNNL_RUNTIME_DIM_VAL, 1};
    /* A primitive keeps the thread count of its creation and opens a team of
     * that many threads wherever OpenMP is not active (a team of one
     * included: nested teams made and dropped at each product, measured 3x
     * slower on data-parallel ranks of one thread). Made with one: each
     * product runs on its calling thread, the tiles are the parallelism. */
    const int nthr = omp_get_max_threads();
    omp_set_num_threads(1);
    for (int i = 0; i < 8 && !setup_err[0]; i++) {
        const int ta = i & 1, tb = (i >> 1) & 1, sum = i >> 2;
        dnnl_memory_desc_t a, b, c;
        dnnl_matmul_desc_t md;
        dnnl_primitive_attr_t attr = NULL;
        dnnl_post_ops_t po = NULL;
        dnnl_primitive_desc_t pd = NULL;
        const char *impl = "";
        if ((s = dnnl_memory_desc_init_by_tag(&a, 2, dims, dnnl_bf16, ta ? dnnl_ba : dnnl_ab)) ||
            (s = dnnl_memory_desc_init_by_tag(&b, 2, dims, dnnl_bf16, tb ? dnnl_ba : dnnl_ab)) ||
            (s = dnnl_memory_desc_init_by_strides(&c, 2, dims, dnnl_f32, rows)) ||
            (s = dnnl_matmul_desc_init(&md, &a, &b, NULL, &c))) {
            snprintf(setup_err, sizeof setup_err, "oneDNN: cannot describe a bf16 matmul (status %d)", (int)s);
            break;
        }
        s = dnnl_primitive_attr_create(&attr);
        if (!s && sum) {
            s = dnnl_post_ops_create(&po);
            if (!s) s = dnnl_post_ops_append_sum(po, 1.0f);
            if (!s) s = dnnl_primitive_attr_set_post_ops(attr, po);
        }
        if (!s) s = dnnl_primitive_desc_create(&pd, &md, attr, engine, NULL);
        if (!s) s = dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
        /* the reference implementation converts element by element: 100x slower than fp32 */
        if (!s && !strncmp(impl, "ref", 3)) s = dnnl_unimplemented;
        if (!s) s = dnnl_primitive_create(&prim[ta][tb][sum], pd);
        if (pd) dnnl_primitive_desc_destroy(pd);
        if (po) dnnl_post_ops_destroy(po);
        if (attr) dnnl_primitive_attr_destroy(attr);
        if (s)
            snprintf(setup_err, sizeof setup_err, "oneDNN has no fast bf16 matmul for this CPU (status %d%s%s)",
                     (int)s, *impl ? ", implementation " : "", impl);
    }
    const dnnl_dims_t dims3 = {DNNL_RUNTIME_DIM_VAL, DNNL_RUNTIME_DIM_VAL, DNNL_RUNTIME_DIM_VAL};
    const dnnl_dims_t strides3 = {DNNL_RUNTIME_DIM_VAL, DNNL_RUNTIME_DIM_VAL, 1};
    for (int i = 0; i < 4 && !setup_err[0]; i++) {
        const int ta = i & 1, tb = i >> 1;
        dnnl_memory_desc_t a, b, c;
        dnnl_matmul_desc_t md;
        dnnl_primitive_desc_t pd = NULL;
        const char *impl = "";
        if ((s = dnnl_memory_desc_init_by_tag(&a, 3, dims3, dnnl_bf16, ta ? dnnl_acb : dnnl_abc)) ||
            (s = dnnl_memory_desc_init_by_tag(&b, 3, dims3, dnnl_bf16, tb ? dnnl_acb : dnnl_abc)) ||
            (s = dnnl_memory_desc_init_by_strides(&c, 3, dims3, dnnl_f32, strides3)) ||
            (s = dnnl_matmul_desc_init(&md, &a, &b, NULL, &c))) {
            snprintf(setup_err, sizeof setup_err, "oneDNN: cannot describe a batched bf16 matmul (status %d)", (int)s);
            break;
        }
        s = dnnl_primitive_desc_create(&pd, &md, NULL, engine, NULL);
        if (!s) s = dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
        if (!s && !strncmp(impl, "ref", 3)) s = dnnl_unimplemented;
        if (!s) s = dnnl_primitive_create(&bprim[ta][tb], pd);
        if (pd) dnnl_primitive_desc_destroy(pd);
        if (s)
            snprintf(setup_err, sizeof setup_err,
                     "oneDNN has no fast batched bf16 matmul for this CPU (status %d%s%s)", (int)s,
                     *impl ? ", implementation " : "", impl);
    }
    omp_set_num_threads(nthr);
}

int kbf16_available(char *why, size_t n)
{
    pthread_once(&once, setup);
    if (!setup_err[0]) return 0;
    if (why && n) snprintf(why, n, "%s", setup_err);
    return -1;
}

/* Each thread's stream and operand scratch (grown on demand, kept): made on
 * its first product, freed when the thread exits (a pthread key's
 * destructor: OpenMP drops workers when the thread count goes down) or at
 * process exit for the threads still alive. */
typedef struct thread_res {
    dnnl_stream_t stream;
    uint16_t *buf, *shared;    /* operand scratch; B rounded once for many tiles */
    size_t len, shared_len;    /* their capacities, in bf16 values */
    uint16_t *att;             /* the attention kernels' scratch (kbf16_scratch) */
    size_t att_len;            /* its capacity, in bf16 values */
    struct thread_res *next, *prev;
} thread_res;

static pthread_mutex_t res_mu = PTHREAD_MUTEX_INITIALIZER;
static thread_res *res_head;   /* every live thread's, under res_mu */
static int res_closed;         /* set at process exit, under res_mu */
static pthread_key_t res_key;
static pthread_once_t res_once = PTHREAD_ONCE_INIT;
static _Thread_local thread_res *tl_res;

static void res_free(thread_res *r)
{
    if (r->stream) dnnl_stream_destroy(r->stream);
    free(r->buf);
    free(r->shared);
    free(r->att);
    free(r);
}

static void res_unlink(thread_res *r)
{
    if (r->prev) r->prev->next = r->next;
    else res_head = r->next;
    if (r->next) r->next->prev = r->prev;
}

static void on_thread_exit(void *p)
{
    pthread_mutex_lock(&res_mu);
    int closed = res_closed;
    if (!closed) res_unlink(p);
    pthread_mutex_unlock(&res_mu);
    if (!closed) res_free(p);
}

__attribute__((destructor)) static void on_process_exit(void)
{
    pthread_mutex_lock(&res_mu);
    res_closed = 1;
    while (res_head) {
        thread_res *r = res_head;
        res_unlink(r);
        res_free(r);
    }
    pthread_mutex_unlock(&res_mu);
}

static void make_key(void) { pthread_key_create(&res_key, on_thread_exit); }

/* The calling thread's resources, its stream made; NULL when out of memory. */
static thread_res *res(void)
{
    if (tl_res) return tl_res;
    pthread_once(&res_once, make_key);
    thread_res *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    if (dnnl_stream_create(&r->stream, engine, dnnl_stream_default_flags)) {
        free(r);
        return NULL;
    }
    pthread_mutex_lock(&res_mu);
    r->next = res_head;
    if (res_head) res_head->prev = r;
    res_head = r;
    pthread_mutex_unlock(&res_mu);
    pthread_setspecific(res_key, r);
    return tl_res = r;
}

/* buffer *p of capacity *len grown to n values (contents not kept); NULL when out of memory */
static uint16_t *grow(uint16_t **p, size_t *len, size_t n)
{
    if (n > *len) {
        free(*p);
        *p = malloc(n * sizeof **p);
        *len = *p ? n : 0;
    }
    return *p;
}

/* Runs primitive p on the calling thread's stream over src, weights and
 * dst described by da, db, dc at a, b, c (the caller's buffers); 0 or -1. */
static int run(dnnl_primitive_t p, thread_res *r, const dnnl_memory_desc_t *da, const void *a,
               const dnnl_memory_desc_t *db, const void *b, const dnnl_memory_desc_t *dc, float *c)
{
    dnnl_memory_t ma = NULL, mb = NULL, mc = NULL;
    dnnl_status_t s = dnnl_memory_create(&ma, da, engine, (void *)a);
    if (!s) s = dnnl_memory_create(&mb, db, engine, (void *)b);
    if (!s) s = dnnl_memory_create(&mc, dc, engine, c);
    if (!s) {
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
        s = dnnl_primitive_execute(p, r->stream, 3, args);
        if (!s) s = dnnl_stream_wait(r->stream);
    }
    if (ma) dnnl_memory_destroy(ma);
    if (mb) dnnl_memory_destroy(mb);
    if (mc) dnnl_memory_destroy(mc);
    return s ? -1 : 0;
}

/* the product, B either in fp32 (B, ldb) or already rounded (Bb) */
static int gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                const uint16_t *Bb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return 0;
    if (kbf16_available(NULL, 0) || (beta != 0.0f && beta != 1.0f)) return -1;
    thread_res *r = res();
    if (!r) return -1;
    if (K <= 0) { /* nothing to add: C = beta C */
        if (beta == 0.0f)
            for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, (size_t)N * sizeof *C);
        return 0;
    }
    const size_t na = (size_t)M * K, nb = Bb ? 0 : (size_t)K * N;
    uint16_t *buf = grow(&r->buf, &r->len, na + nb);
    if (!buf) return -1;
    uint16_t *a = buf, *b = Bb ? (uint16_t *)Bb : buf + na;
    /* the stored layouts, packed: A is M x K (ta 0) or K x M (ta 1), B is K x N or N x K */
    if (ta) round_block(a, A, K, M, lda, alpha);
    else round_block(a, A, M, K, lda, alpha);
    if (!Bb) {
        if (tb) round_block(b, B, N, K, ldb, 1.0f);
        else round_block(b, B, K, N, ldb, 1.0f);
    }
    dnnl_memory_desc_t da, db, dc;
    const dnnl_dims_t dims_a = {M, K}, dims_b = {K, N}, dims_c = {M, N}, cs = {ldc, 1};
    if (dnnl_memory_desc_init_by_tag(&da, 2, dims_a, dnnl_bf16, ta ? dnnl_ba : dnnl_ab) ||
        dnnl_memory_desc_init_by_tag(&db, 2, dims_b, dnnl_bf16, tb ? dnnl_ba : dnnl_ab) ||
        dnnl_memory_desc_init_by_strides(&dc, 2, dims_c, dnnl_f32, cs))
        return -1;
    return run(prim[!!ta][!!tb][beta != 0.0f], r, &da, a, &db, b, &dc, C);
}

int kbf16_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
               float beta, float *C, int ldc)
{
    return gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc);
}

int kbf16_gemm_b(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const uint16_t *Bb,
                 float beta, float *C, int ldc)
{
    return gemm(ta, tb, M, N, K, alpha, A, lda, NULL, 0, Bb, beta, C, ldc);
}

int kbf16_gemm_batch(int ta, int tb, int G, int M, int N, int K, const uint16_t *A, const uint16_t *B, float *C,
                     int64_t ldg, int64_t ldc)
{
    if (G <= 0 || M <= 0 || N <= 0) return 0;
    if (K <= 0 || kbf16_available(NULL, 0)) return -1;
    thread_res *r = res();
    if (!r) return -1;
    dnnl_memory_desc_t da, db, dc;
    const dnnl_dims_t dims_a = {G, M, K}, dims_b = {G, K, N}, dims_c = {G, M, N}, cs = {ldg, ldc, 1};
    if (dnnl_memory_desc_init_by_tag(&da, 3, dims_a, dnnl_bf16, ta ? dnnl_acb : dnnl_abc) ||
        dnnl_memory_desc_init_by_tag(&db, 3, dims_b, dnnl_bf16, tb ? dnnl_acb : dnnl_abc) ||
        dnnl_memory_desc_init_by_strides(&dc, 3, dims_c, dnnl_f32, cs))
        return -1;
    return run(bprim[!!ta][!!tb], r, &da, A, &db, B, &dc, C);
}

void *kbf16_scratch(size_t bytes)
{
    if (kbf16_available(NULL, 0)) return NULL;
    thread_res *r = res();
    return r ? grow(&r->att, &r->att_len, (bytes + 1) / 2) : NULL;
}

uint16_t *kbf16_shared(size_t n)
{
    if (kbf16_available(NULL, 0)) return NULL;
    thread_res *r = res();
    return r ? grow(&r->shared, &r->shared_len, n) : NULL;
}

#else /* no oneDNN */

int kbf16_gemm_batch(int ta, int tb, int G, int M, int N, int K, const uint16_t *A, const uint16_t *B, float *C,
                     int64_t ldg, int64_t ldc)
{
    (void)ta, (void)tb, (void)G, (void)M, (void)N, (void)K, (void)A, (void)B, (void)C, (void)ldg, (void)ldc;
    return -1;
}

void *kbf16_scratch(size_t bytes)
{
    (void)bytes;
    return NULL;
}

uint16_t *kbf16_shared(size_t n)
{
    (void)n;
    return NULL;
}

int kbf16_gemm_b(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const uint16_t *Bb,
                 float beta, float *C, int ldc)
{
    (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)Bb, (void)beta, (void)C,
        (void)ldc;
    return -1;
}

int kbf16_available(char *why, size_t n)
{
    if (why && n)
        snprintf(why, n, "this kiln was built without oneDNN (Debian libdnnl-dev; scripts/install-deps installs it)");
    return -1;
}

int kbf16_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
               float beta, float *C, int ldc)
{
    (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)B, (void)ldb, (void)beta,
        (void)C, (void)ldc;
    return -1;
}

#endif
