#ifndef CTLSUPPORT_H
#define CTLSUPPORT_H

#include <stddef.h>
#include <stdint.h>

/// Bit set of CPU features this process may use: 1 = AVX2, 2 = FMA, 4 = F16C, 8 = AVX-512F
/// (CPU and OS support, as the compiler runtime checks them).
int tl_cpu_features(void);

/// The GEMM micro-kernel for AVX-512 CPUs: C[m×n] (m ≤ 12, n ≤ 16) = alpha·A·B (store) or
/// += alpha·A·B, A packed kc×12, B packed kc×16. Call only when tl_cpu_features() has bit 8.
/// Per element the same arithmetic as the Swift 6×16 kernel (see gemm_avx512.c).
void tl_sgemm_kernel_12x16_avx512(long kc, const float *a, const float *b, float *c, long ldc,
                                  float alpha, int store, int m, int n);

/// 1 when this binary was built for x86-64-v3 (AVX2 + FMA) and so refuses to start without it.
int tl_build_requires_x86_64_v3(void);

/// Unlinks `path` from a signal handler if the process is interrupted (SIGINT, SIGTERM, SIGHUP)
/// and re-raises the signal. At most 8 paths at once; returns a slot number or -1 when full.
/// The path is copied. `tl_forget_on_signal(slot)` releases the slot.
int tl_unlink_on_signal(const char *path);
void tl_forget_on_signal(int slot);

/// Continues the zlib CRC-32 `*crc` over a prefix of `data` with PCLMULQDQ folding and returns
/// how many bytes it consumed (a multiple of 16; 0 when n < 64 or the CPU lacks PCLMUL). The
/// caller finishes the rest with a table method.
size_t tl_crc32_fold(uint32_t *crc, const void *data, size_t n);

/// A write-prefetch hint, inlined into Swift kernels through the clang importer (Swift has no
/// prefetch of its own). It changes no result.
static inline void tl_prefetch_write(const void *p) { __builtin_prefetch(p, 1, 3); }
static inline void tl_prefetch_read(const void *p) { __builtin_prefetch(p, 0, 3); }

/// The spin-wait hint (x86 PAUSE) for the thread pool's waiting loops.
static inline void tl_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

#endif
