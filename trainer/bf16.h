/* trainer/bf16.h: bfloat16 matrix products with fp32 accumulation
 * (trainer/bf16.c, on oneDNN's matmul) and the CPU's bf16 support.
 *
 * The trainer's mixed precision (docs/train.md, "Precision"): operands are
 * rounded to bfloat16 (round to nearest even, like the CPU's VCVTNEPS2BF16)
 * just before each product, the product accumulates in fp32 and writes fp32;
 * everything else (weights, gradients, optimizer state, LayerNorm, softmax,
 * losses, reductions) stays fp32. kgemm and the attention kernels call
 * kbf16_gemm when the calling thread's precision (kernels.h,
 * kset_precision) is KPREC_BF16.
 *
 * A build without oneDNN (-DKILN_DNNL=OFF, or libdnnl-dev missing) has the
 * same functions; kbf16_available says why bf16 cannot run.
 */
#ifndef KILN_TRAINER_BF16_H
#define KILN_TRAINER_BF16_H

#include <stddef.h>
#include <stdint.h>

/* The CPU's bf16 features, from CPUID (and XGETBV: the OS saves the AVX-512
 * state): 1 when it has bf16 dot products (AVX512_BF16 or AMX-BF16). The
 * environment variable KILN_CPU_NO_BF16=1 hides them (tests, diagnosis). */
int kbf16_cpu(void);
/* 1 when the CPU has AVX512_BF16 itself (VDPBF16PS, VCVTNEPS2BF16: what
 * kiln's own bf16 kernels use, e.g. generation's); KILN_CPU_NO_BF16=1 hides it. */
int kbf16_cpu_dot(void);
/* The CPU's name and the features that matter here ("avx2 avx512f
 * avx512_bf16 amx_bf16", those present), for start summaries and benchmarks.
 * Writes at most n bytes (NUL-terminated) into name and feats. */
void kcpu_describe(char *name, size_t n_name, char *feats, size_t n_feats);

/* 0 when bf16 products can run here (a oneDNN build on a CPU with bf16 dot
 * products; the products are set up on the first call, once per process);
 * else -1 with the reason in why (n bytes). Thread-safe. */
int kbf16_available(char *why, size_t n);

/* dst[i] = bf16(alpha * src[i]) for i < n, the rule of the CPU's
 * VCVTNEPS2BF16 (which does it, 16 at a time, where the CPU has it): round
 * to nearest even, NaN kept NaN (quieted), fp32 denormals to a zero of
 * their sign. */
void kbf16_round(uint16_t *dst, const float *src, size_t n, float alpha);
/* x[i] = float(bf16(x[i])) in place, n elements (what a bf16 operand holds). */
void kbf16_truncate(float *x, size_t n);

/* C = alpha op(A) op(B) + beta C on the calling thread alone (inside or
 * outside a parallel region), the operands rounded to bf16, fp32
 * accumulation; op(X) = X or X^T (ta, tb), row-major with leading dimensions
 * lda, ldb, ldc as cblas_sgemm. beta is 0 or 1. Scratch is per thread,
 * grown on demand and kept. Returns 0, or -1 when the product could not run
 * (bf16 not available, or out of memory / oneDNN failed: kgemm ends the
 * process as out of memory, koom). */
int kbf16_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
               float beta, float *C, int ldc);

/* B rounded once for many products (kgemm's tiles that cut M share all of
 * B): the calling thread's second scratch of n bf16 values (grown on
 * demand, kept; NULL when out of memory), and rows x cols of src (leading
 * dimension ld) rounded into dst packed (leading dimension cols). */
uint16_t *kbf16_shared(size_t n);
void kbf16_round_block(uint16_t *dst, const float *src, int rows, int cols, int ld);
/* The attention's operands: heads of D columns out of the rows of x (n
 * rows, row stride ld), rounded, each head packed dense. Block (p, g) of
 * dst, at dst + (p G + g) n D, is n x D: columns p part_off + g D ..
 * + D - 1 of the rows (parts p < parts, e.g. q, k, v at part_off H; heads
 * g < G). */
void kbf16_pack_heads(uint16_t *dst, const float *x, int ld, int n, int parts, int part_off, int G, int D);
/* kbf16_gemm with B given rounded: Bb is B's stored layout packed by
 * kbf16_round_block (K x N, or N x K when tb). Returns 0 or -1. */
int kbf16_gemm_b(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const uint16_t *Bb,
                 float beta, float *C, int ldc);

/* Batched products on operands already rounded (the attention's heads):
 * for g < G, C_g = op(A_g) op(B_g), overwritten; A_g is the dense block at
 * A + g M K (stored M x K, or K x M when ta), B_g at B + g K N (K x N, or
 * N x K when tb), C_g (M x N, fp32) at C + g ldg with row stride ldc (the
 * blocks may interleave: heads side by side in the rows of a sequence). On
 * the calling thread alone. Returns 0, or -1 (as kbf16_gemm). */
int kbf16_gemm_batch(int ta, int tb, int G, int M, int N, int K, const uint16_t *A, const uint16_t *B, float *C,
                     int64_t ldg, int64_t ldc);
/* The calling thread's scratch for the attention kernels: at least bytes
 * bytes (grown on demand, kept until the thread or the process ends; the
 * contents are not kept when it grows). NULL when out of memory or bf16
 * cannot run. */
void *kbf16_scratch(size_t bytes);

#endif
