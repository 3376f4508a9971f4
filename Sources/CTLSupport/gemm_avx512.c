// The GEMM micro-kernel for CPUs with AVX-512 (a 12x16 tile of C in 12 zmm registers).
//
// Swift code is compiled for one CPU level (x86-64-v3); two Swift modules for two levels are
// not safe to mix (performance.md). So the one routine that gains from 512-bit registers lives
// here, compiled for AVX-512 by a function attribute, and is called only after
// tl_cpu_features() reports AVX-512 (CPU and OS support).
//
// Arithmetic contract (the same as the Swift 6x16 kernel, so results are bit-identical whichever
// kernel runs): for each element, acc = fma(a[p], b[p], acc) for p = 0..<kc in order, from 0;
// then C = alpha*acc (store) or C = fma(alpha, acc, C).
#include "ctlsupport.h"
#include <stdlib.h>

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx512f")))
void tl_sgemm_kernel_12x16_avx512(long kc, const float *a, const float *b, float *c, long ldc,
                                  float alpha, int store, int m, int n) {
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
    __m512 c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
    if (!store) for (int r = 0; r < m; r++) { __builtin_prefetch(c + r * ldc, 1, 3); __builtin_prefetch(c + r * ldc + n - 1, 1, 3); }
    for (long p = 0; p < kc; p++) {
        __builtin_prefetch(a + 192, 0, 3);   // 16 k-steps ahead in the A panel, as the Swift kernel
        const __m512 bv = _mm512_loadu_ps(b);
        c0 = _mm512_fmadd_ps(_mm512_set1_ps(a[0]), bv, c0);
        c1 = _mm512_fmadd_ps(_mm512_set1_ps(a[1]), bv, c1);
        c2 = _mm512_fmadd_ps(_mm512_set1_ps(a[2]), bv, c2);
        c3 = _mm512_fmadd_ps(_mm512_set1_ps(a[3]), bv, c3);
        c4 = _mm512_fmadd_ps(_mm512_set1_ps(a[4]), bv, c4);
        c5 = _mm512_fmadd_ps(_mm512_set1_ps(a[5]), bv, c5);
        c6 = _mm512_fmadd_ps(_mm512_set1_ps(a[6]), bv, c6);
        c7 = _mm512_fmadd_ps(_mm512_set1_ps(a[7]), bv, c7);
        c8 = _mm512_fmadd_ps(_mm512_set1_ps(a[8]), bv, c8);
        c9 = _mm512_fmadd_ps(_mm512_set1_ps(a[9]), bv, c9);
        c10 = _mm512_fmadd_ps(_mm512_set1_ps(a[10]), bv, c10);
        c11 = _mm512_fmadd_ps(_mm512_set1_ps(a[11]), bv, c11);
        a += 12; b += 16;
    }
    const __m512 al = _mm512_set1_ps(alpha);
    const __m512 acc[12] = {c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11};
    if (m == 12 && n == 16) {
        for (int r = 0; r < 12; r++) {
            float *row = c + r * ldc;
            if (store) _mm512_storeu_ps(row, _mm512_mul_ps(al, acc[r]));
            else _mm512_storeu_ps(row, _mm512_fmadd_ps(al, acc[r], _mm512_loadu_ps(row)));
        }
        return;
    }
    const __mmask16 mask = (__mmask16)((1u << n) - 1);
    for (int r = 0; r < m; r++) {
        float *row = c + r * ldc;
        if (store) _mm512_mask_storeu_ps(row, mask, _mm512_mul_ps(al, acc[r]));
        else _mm512_mask_storeu_ps(row, mask, _mm512_fmadd_ps(al, acc[r], _mm512_maskz_loadu_ps(mask, row)));
    }
}
#else
void tl_sgemm_kernel_12x16_avx512(long kc, const float *a, const float *b, float *c, long ldc,
                                  float alpha, int store, int m, int n) { (void)kc; (void)a; (void)b; (void)c; (void)ldc; (void)alpha; (void)store; (void)m; (void)n; abort(); }
#endif
