/* test_bf16.c: unit tests of trainer/bf16.c and of kgemm / attention in
 * precision bf16 (kernels.h, kset_precision).
 *
 * Rounding: kbf16_round and kbf16_truncate round to nearest even (ties both
 * ways, carries into the exponent, overflow to infinity), keep infinities
 * and signed zeros, keep NaNs NaN and flush denormals (VCVTNEPS2BF16's
 * rule); alpha is applied before rounding; the 16-wide path (the CPU's
 * instruction) equals the one-by-one rule on random bits, NaNs, infinities,
 * denormals and ties included.
 * Products (where the CPU has bf16 dot products, else the refusal): for
 * every transpose pair, beta 0 and 1, alpha, leading dimensions wider than
 * the matrices and K = 0, kbf16_gemm equals a double product of the
 * bf16-rounded operands within fp32 accumulation (|err| <= 1e-5 sqrt(K)
 * sum |a||b|); kgemm in bf16 likewise, over products large enough to be cut
 * into tiles, and bit-identical with 1, 2 and 3 threads and run to run; the
 * attention kernels in bf16 (heads batched, kbf16_gemm_batch on operands
 * packed by kbf16_pack_heads; both checked on their own) stay within bf16
 * rounding of the fp32 ones, causal and with dropout too, and give the same
 * bits with 1 and 2 threads. On a CPU without bf16 dot
 * products kbf16_available refuses with a reason naming them and
 * kbf16_gemm returns -1 (the fp32 fallback). */
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

#include "trainer/bf16.h"
#include "trainer/kernels.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float urand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 16777216.0));
}
static float *fnew(size_t n) { return calloc(n ? n : 1, sizeof(float)); }
static void fill(float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * urand();
}
static float bits_f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint32_t f_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static int have_bf16(void) { return kbf16_available(NULL, 0) == 0; }

static void test_round(void **state)
{
    (void)state;
    const struct { uint32_t in; uint16_t out; } cases[] = {
        {0x3f800000, 0x3f80}, /* 1 */
        {0x3f808000, 0x3f80}, /* tie, even stays */
        {0x3f818000, 0x3f82}, /* tie, odd rounds up */
        {0x3f808001, 0x3f81}, /* above the tie */
        {0x3f807fff, 0x3f80}, /* below the tie */
        {0x3fffffff, 0x4000}, /* carries into the exponent */
        {0x7f7fffff, 0x7f80}, /* FLT_MAX rounds to infinity */
        {0x7f800000, 0x7f80}, /* +inf */
        {0xff800000, 0xff80}, /* -inf */
        {0x80000000, 0x8000}, /* -0 */
        {0x00000001, 0x0000}, /* denormals: a zero of their sign (DAZ, as VCVTNEPS2BF16) */
        {0x007fffff, 0x0000},
        {0x807fffff, 0x8000},
        {0x00800000, 0x0080}, /* the smallest normal stays */
        {0xbf808001, 0xbf81}, /* negative, above the tie */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        float f = bits_f(cases[i].in);
        uint16_t o;
        kbf16_round(&o, &f, 1, 1.0f);
        if (o != cases[i].out) fail_msg("round %08x: %04x, want %04x", cases[i].in, o, cases[i].out);
        kbf16_truncate(&f, 1);
        assert_int_equal(f_bits(f), (uint32_t)cases[i].out << 16);
    }
    float nan = bits_f(0x7fc00001), sn = bits_f(0x7f800001); /* quiet and signalling NaN */
    uint16_t o[2];
    float in[2] = {nan, sn};
    kbf16_round(o, in, 2, 1.0f);
    assert_true((o[0] & 0x7f80) == 0x7f80 && (o[0] & 0x7f));
    assert_true((o[1] & 0x7f80) == 0x7f80 && (o[1] & 0x7f)); /* not turned into infinity */
    float x = 3.0f;
    kbf16_round(o, &x, 1, 0.5f);
    assert_int_equal(o[0], 0x3fc0); /* 1.5: alpha before rounding */
    /* a long run (the vector loop and its tail) agrees with the scalar rule */
    enum { N = 1003 };
    float *v = fnew(N), *w = fnew(N);
    uint16_t *r = calloc(N, sizeof *r);
    fill(v, N, -100, 100);
    memcpy(w, v, N * sizeof *v);
    kbf16_round(r, v, N, 1.0f);
    kbf16_truncate(w, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(f_bits(w[i]), (uint32_t)r[i] << 16);
        assert_true(fabsf(w[i] - v[i]) <= fabsf(v[i]) * (1.0f / 256.0f));
    }
    free(v), free(w), free(r);
    /* the 16-wide path (the CPU's instruction, where it has it) equals the
     * one-by-one rule on any bits: NaNs, infinities, denormals, ties */
    enum { NB = 4096 };
    float *bits = fnew(NB);
    uint16_t *wide = calloc(NB, sizeof *wide), one;
    for (int i = 0; i < NB; i++) {
        uint32_t u = (uint32_t)(urand() * 16777216.0f) << 8 | (uint32_t)(urand() * 256.0f);
        if (i % 7 == 0) u = (u & 0x807fffffu) | (i % 14 ? 0x7f800000u : 0); /* NaN / inf, denormal / zero */
        if (i % 11 == 0) u = (u & 0xffff0000u) | 0x8000u;                    /* exact ties */
        bits[i] = bits_f(u);
    }
    for (int k = 0; k < 2; k++) {
        const float alpha = k ? 0.125f : 1.0f;
        kbf16_round(wide, bits, NB, alpha);
        for (int i = 0; i < NB; i++) {
            kbf16_round(&one, bits + i, 1, alpha);
            if (one != wide[i]) fail_msg("bits %08x alpha %g: %04x wide, %04x one by one", f_bits(bits[i]), alpha, wide[i], one);
        }
    }
    free(bits), free(wide);
}

static void test_available(void **state)
{
    (void)state;
    char why[256] = "";
    int a = kbf16_available(why, sizeof why);
    char name[64], feats[128];
    kcpu_describe(name, sizeof name, feats, sizeof feats);
    print_message("CPU: %s (%s); bf16 products: %s%s\n", name, feats, a ? "no: " : "yes", a ? why : "");
    assert_true(name[0] && feats[0]);
    if (kbf16_cpu()) assert_non_null(strstr(feats, "bf16"));
    if (a) {
        assert_true(strlen(why) > 10);
        float A = 1, B = 1, C = 0;
        assert_int_equal(kbf16_gemm(0, 0, 1, 1, 1, 1.0f, &A, 1, &B, 1, 0.0f, &C, 1), -1);
    }
}

/* max over (i, j) of |C - ref| / (sum_k |a||b| + tiny), the reference in double from rounded operands */
static double gemm_err(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                       int ldb, float beta, const float *C0, const float *C, int ldc)
{
    double worst = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0, mag = 1e-30;
            for (int k = 0; k < K; k++) {
                float a = (ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]) * alpha;
                float b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                kbf16_truncate(&a, 1);
                kbf16_truncate(&b, 1);
                s += (double)a * b;
                mag += fabs((double)a * b);
            }
            if (beta != 0.0f) s += C0[(size_t)i * ldc + j], mag += fabs(C0[(size_t)i * ldc + j]);
            double e = fabs(C[(size_t)i * ldc + j] - s) / mag;
            if (e > worst) worst = e;
        }
    return worst;
}

static void test_gemm(void **state)
{
    (void)state;
    if (!have_bf16()) {
        print_message("no bf16 products here: kbf16_gemm's refusal is checked by test_available\n");
        return;
    }
    const int shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {33, 17, 70}, {64, 48, 129}, {5, 9, 0}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int t = 0; t < 8; t++) {
            const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], ta = t & 1, tb = (t >> 1) & 1;
            const float beta = (t >> 2) ? 1.0f : 0.0f, alpha = (s & 1) ? 0.37f : 1.0f;
            const int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 5;
            float *A = fnew((size_t)(ta ? K : M) * lda), *B = fnew((size_t)(tb ? N : K) * ldb);
            float *C = fnew((size_t)M * ldc), *C0 = fnew((size_t)M * ldc);
            fill(A, (size_t)(ta ? K : M) * lda, -2, 2), fill(B, (size_t)(tb ? N : K) * ldb, -2, 2);
            fill(C0, (size_t)M * ldc, -1, 1);
            memcpy(C, C0, (size_t)M * ldc * sizeof *C);
            assert_int_equal(kbf16_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc), 0);
            double e = gemm_err(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C0, C, ldc);
            if (e > 1e-5 * sqrt(K + 1.0))
                fail_msg("kbf16_gemm %dx%dx%d ta %d tb %d beta %g: relative error %.3g", M, N, K, ta, tb, beta, e);
            for (int i = 0; i < M; i++) /* the padding of C untouched */
                for (int j = N; j < ldc; j++) assert_int_equal(f_bits(C[(size_t)i * ldc + j]), f_bits(C0[(size_t)i * ldc + j]));
            free(A), free(B), free(C), free(C0);
        }
}

/* kgemm in bf16 over products cut into tiles (M, N or K), 1 / 2 / 3 threads */
static void test_kgemm_bf16(void **state)
{
    (void)state;
    if (!have_bf16()) return;
    const int shapes[][3] = {{512, 96, 64}, {40, 700, 64}, {24, 20, 4096}, {300, 257, 129}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int t = 0; t < 4; t++) {
            const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], ta = t & 1, tb = t >> 1;
            const int lda = ta ? M : K, ldb = tb ? K : N;
            float *A = fnew((size_t)M * K), *B = fnew((size_t)K * N), *C = fnew((size_t)M * N),
                  *ref = fnew((size_t)M * N), *bias = fnew(N);
            fill(A, (size_t)M * K, -1, 1), fill(B, (size_t)K * N, -1, 1), fill(bias, N, -1, 1);
            kset_precision(KPREC_BF16);
            for (int nt = 1; nt <= 3; nt++) {
                omp_set_num_threads(nt);
                kgemm_ex(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N, bias, NULL, NULL, NULL);
                if (nt == 1) memcpy(ref, C, (size_t)M * N * sizeof *C);
                else if (memcmp(ref, C, (size_t)M * N * sizeof *C))
                    fail_msg("kgemm bf16 %dx%dx%d: %d threads give other bits than 1", M, N, K, nt);
            }
            kgemm_ex(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N, bias, NULL, NULL, NULL);
            assert_memory_equal(ref, C, (size_t)M * N * sizeof *C); /* run to run */
            kset_precision(KPREC_FP32);
            omp_set_num_threads(2);
            float *C0 = fnew((size_t)M * N);
            for (int j = 0; j < N; j++) /* bias: C0 = bias, beta 1 */
                for (int i = 0; i < M; i++) C0[(size_t)i * N + j] = bias[j];
            double e = gemm_err(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 1.0f, C0, ref, N);
            if (e > 1e-5 * sqrt((double)K))
                fail_msg("kgemm bf16 %dx%dx%d ta %d tb %d: relative error %.3g", M, N, K, ta, tb, e);
            free(A), free(B), free(C), free(ref), free(bias), free(C0);
        }
}

/* kbf16_pack_heads: each head's block equals kbf16_round of its columns,
 * row by row (16-wide and one-by-one widths of D) */
static void test_pack_heads(void **state)
{
    (void)state;
    const int dims[][4] = {{5, 3, 2, 16}, {7, 1, 3, 8}, {4, 2, 2, 35}}; /* n, parts, G, D */
    for (size_t c = 0; c < sizeof dims / sizeof *dims; c++) {
        const int n = dims[c][0], parts = dims[c][1], G = dims[c][2], D = dims[c][3], H = 2 * G * D,
                  ld = parts * H + 3;
        float *x = fnew((size_t)n * ld);
        fill(x, (size_t)n * ld, -3, 3);
        uint16_t *dst = calloc((size_t)parts * G * n * D, 2), *row = calloc(D, 2);
        kbf16_pack_heads(dst, x + D, ld, n, parts, H, G, D); /* heads 1.. of each part */
        for (int p = 0; p < parts; p++)
            for (int g = 0; g < G; g++)
                for (int i = 0; i < n; i++) {
                    kbf16_round(row, x + (size_t)i * ld + (size_t)p * H + (size_t)(g + 1) * D, D, 1.0f);
                    assert_memory_equal(row, dst + (((size_t)p * G + g) * n + i) * D, (size_t)D * 2);
                }
        free(x), free(dst), free(row);
    }
}

/* kbf16_gemm_batch: every transpose pair, C blocks interleaved (batch stride
 * smaller than the row stride, as the heads of a sequence), within fp32
 * accumulation of a double product of the rounded operands; C's other
 * columns untouched */
static void test_gemm_batch(void **state)
{
    (void)state;
    if (!have_bf16()) {
        uint16_t a = 0, b = 0;
        float c = 0;
        assert_int_equal(kbf16_gemm_batch(0, 0, 1, 1, 1, 1, &a, &b, &c, 1, 1), -1);
        return;
    }
    const int G = 3, M = 17, N = 24, K = 40, ldc = G * N + 5;
    for (int t = 0; t < 4; t++) {
        const int ta = t & 1, tb = t >> 1;
        float *A = fnew((size_t)G * M * K), *B = fnew((size_t)G * K * N), *C = fnew((size_t)M * ldc);
        uint16_t *Ab = calloc((size_t)G * M * K, 2), *Bb = calloc((size_t)G * K * N, 2);
        fill(A, (size_t)G * M * K, -2, 2), fill(B, (size_t)G * K * N, -2, 2), fill(C, (size_t)M * ldc, -1, 1);
        kbf16_round(Ab, A, (size_t)G * M * K, 1.0f), kbf16_round(Bb, B, (size_t)G * K * N, 1.0f);
        kbf16_truncate(A, (size_t)G * M * K), kbf16_truncate(B, (size_t)G * K * N);
        float *C0 = fnew((size_t)M * ldc);
        memcpy(C0, C, (size_t)M * ldc * sizeof *C);
        assert_int_equal(kbf16_gemm_batch(ta, tb, G, M, N, K, Ab, Bb, C, N, ldc), 0);
        for (int g = 0; g < G; g++)
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double r = 0, sa = 0;
                    for (int k = 0; k < K; k++) {
                        double a = ta ? A[(size_t)g * M * K + (size_t)k * M + i] : A[(size_t)g * M * K + (size_t)i * K + k];
                        double b = tb ? B[(size_t)g * K * N + (size_t)j * K + k] : B[(size_t)g * K * N + (size_t)k * N + j];
                        r += a * b, sa += fabs(a * b);
                    }
                    double got = C[(size_t)i * ldc + (size_t)g * N + j];
                    if (fabs(got - r) > 1e-5 * sqrt((double)K) * sa + 1e-30)
                        fail_msg("kbf16_gemm_batch ta %d tb %d (%d, %d, %d): %g, expected %g", ta, tb, g, i, j, got, r);
                }
        for (int i = 0; i < M; i++)
            for (int j = G * N; j < ldc; j++)
                assert_int_equal(f_bits(C[(size_t)i * ldc + j]), f_bits(C0[(size_t)i * ldc + j]));
        free(A), free(B), free(C), free(C0), free(Ab), free(Bb);
    }
}

/* attention in bf16 (heads batched: 1, 2 and 4 heads a task; causal;
 * dropout): close to fp32 (bf16 operands), the same bits with 1 and 2
 * threads and run to run */
static void test_attention_bf16(void **state)
{
    (void)state;
    if (!have_bf16()) return;
    const struct {
        int B, NH, D, L, causal;
        float pdrop;
    } cases[] = {{3, 2, 16, 40, 0, 0.0f}, {2, 8, 8, 33, 1, 0.0f}, {8, 4, 16, 24, 0, 0.1f}, {2, 6, 24, 20, 1, 0.2f}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        kattn_dims d = {.B = cases[c].B, .NH = cases[c].NH, .D = cases[c].D, .L = cases[c].L,
                        .causal = cases[c].causal, .pdrop = cases[c].pdrop, .key = 1};
        int32_t offs[9] = {0};
        for (int b = 0; b < d.B; b++) offs[b + 1] = offs[b] + (b == 0 ? d.L : d.L - 1 - (b * 7) % (d.L / 2));
        const int N = offs[d.B], H = d.NH * d.D;
        float *qkv = fnew((size_t)N * 3 * H), *ctx = fnew((size_t)N * H), *ctx32 = fnew((size_t)N * H);
        float *ctx1 = fnew((size_t)N * H), *probs = fnew((size_t)d.B * d.NH * d.L * d.L);
        float *scratch = fnew(4 * kattention_scratch(&d)), *dctx = fnew((size_t)N * H);
        float *dq = fnew((size_t)N * 3 * H), *dq32 = fnew((size_t)N * 3 * H), *dq1 = fnew((size_t)N * 3 * H);
        fill(qkv, (size_t)N * 3 * H, -1, 1), fill(dctx, (size_t)N * H, -1, 1);
        kattention_forward(ctx32, probs, scratch, qkv, offs, &d);
        kattention_backward(dq32, scratch, dctx, qkv, probs, offs, &d);
        kset_precision(KPREC_BF16);
        for (int nt = 1; nt <= 3; nt++) {
            omp_set_num_threads(nt < 3 ? nt : 2);
            kattention_forward(nt == 1 ? ctx1 : ctx, probs, scratch, qkv, offs, &d);
            kattention_backward(nt == 1 ? dq1 : dq, scratch, dctx, qkv, probs, offs, &d);
            if (nt == 1) continue;
            if (memcmp(ctx1, ctx, (size_t)N * H * sizeof *ctx) || memcmp(dq1, dq, (size_t)N * 3 * H * sizeof *dq))
                fail_msg("attention bf16 case %zu: %s gives other bits", c, nt == 2 ? "2 threads" : "a second run");
        }
        kset_precision(KPREC_FP32);
        omp_set_num_threads(2);
        double e = 0, m = 0, eg = 0, mg = 0;
        for (size_t i = 0; i < (size_t)N * H; i++) e = fmax(e, fabs(ctx[i] - ctx32[i])), m = fmax(m, fabs(ctx32[i]));
        for (size_t i = 0; i < (size_t)N * 3 * H; i++)
            eg = fmax(eg, fabs(dq[i] - dq32[i])), mg = fmax(mg, fabs(dq32[i]));
        print_message("attention bf16 vs fp32, case %zu: context %.3g, gradients %.3g of their largest value\n", c,
                      e / m, eg / mg);
        assert_true(e / m < 2e-2 && e > 0); /* rounded (not fp32), but close */
        assert_true(eg / mg < 2e-2 && eg > 0);
        free(qkv), free(ctx), free(ctx32), free(ctx1), free(probs), free(scratch), free(dctx), free(dq), free(dq32),
            free(dq1);
    }
}

int main(void)
{
    omp_set_num_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round),      cmocka_unit_test(test_available),      cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_kgemm_bf16), cmocka_unit_test(test_pack_heads), cmocka_unit_test(test_gemm_batch),
        cmocka_unit_test(test_attention_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
