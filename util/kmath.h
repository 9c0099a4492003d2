/* util/kmath.h: what the hand-vectorized kernels of kg/transe.c and
 * trainer/ share (header only): no contraction of a * b + c into FMA, so
 * that every ISA clone rounds alike; KCLONES (GCC function multiversioning:
 * AVX-512, AVX2 and the baseline, picked at load time; -DKCLONES= builds the
 * baseline only, to check that the clones give the same bits); KINLINE; and
 * kexpf, an exp whose result does not depend on the ISA or the libm. */
#ifndef KILN_UTIL_KMATH_H
#define KILN_UTIL_KMATH_H

#include <stdint.h>
#include <string.h>

/* GCC does not contract in ISO C mode (-std=c11); clang needs to be told. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#ifndef KCLONES
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
#define KCLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define KCLONES
#endif
#endif

#define KINLINE static inline __attribute__((always_inline))

/* e^x, Cephes' single-precision polynomial (relative error ~2e-7), x clamped
 * to [-87, 88]. Plain float arithmetic: vectorizable and identical on every ISA. */
KINLINE float kexpf(float x0)
{
    /* a NaN goes through as NaN: the exponent arithmetic below sees 0 instead */
    float x = x0 != x0 ? 0.0f : x0;
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float fn = x * 1.44269504088896341f + 12582912.0f; /* round to nearest */
    fn -= 12582912.0f;
    float r = x - fn * 0.693359375f + fn * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t bits = ((uint32_t)(int32_t)fn + 127u) << 23;
    float s;
    memcpy(&s, &bits, sizeof s);
    return x0 != x0 ? x0 : p * s;
}

#endif
