// Start-up support that must run before any Swift code.
//
// TLCore is compiled for x86-64-v3 (AVX2 + FMA): a baseline build runs SIMD FMA code ~60x slower.
// On a CPU without those features such a binary would die of SIGILL somewhere in the middle of a
// run. This constructor runs before the Swift runtime starts and stops the program with a clear
// message instead. This file itself is compiled for baseline x86-64 (no -march flag reaches C
// targets), so the check cannot itself use the instructions it checks for.
#include "ctlsupport.h"
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tl_cpu_features(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    int f = 0;
    if (__builtin_cpu_supports("avx2")) f |= 1;
    if (__builtin_cpu_supports("fma")) f |= 2;
    if (__builtin_cpu_supports("f16c")) f |= 4;
    if (__builtin_cpu_supports("avx512f")) f |= 8;
    return f;
#else
    return 0;
#endif
}

int tl_build_requires_x86_64_v3(void) {
#ifdef TL_REQUIRE_X86_64_V3
    return 1;
#else
    return 0;
#endif
}

#ifdef TL_REQUIRE_X86_64_V3
__attribute__((constructor)) static void tl_check_cpu(void) {
    if ((tl_cpu_features() & 3) != 3) {
        static const char msg[] =
            "tl: this build needs an x86-64 CPU with AVX2 and FMA (x86-64-v3), which this one lacks;\n"
            "tl: rebuild a portable binary with `make build PORTABLE=1` (slower numerics)\n";
        ssize_t r = write(2, msg, sizeof msg - 1);
        (void)r;
        _exit(70);
    }
}
#endif

// ---- interrupted runs leave no half file ------------------------------------------------------

#define TL_SLOTS 8
#define TL_PATH_MAX 4096
static char tl_paths[TL_SLOTS][TL_PATH_MAX];
static volatile sig_atomic_t tl_used[TL_SLOTS];
static volatile sig_atomic_t tl_installed;

static void tl_on_signal(int sig) {
    for (int i = 0; i < TL_SLOTS; i++)
        if (tl_used[i]) unlink(tl_paths[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

int tl_unlink_on_signal(const char *path) {
    size_t n = strlen(path);
    if (n >= TL_PATH_MAX) return -1;
    for (int i = 0; i < TL_SLOTS; i++) {
        if (!tl_used[i]) {
            memcpy(tl_paths[i], path, n + 1);
            tl_used[i] = 1;
            if (!tl_installed) {
                tl_installed = 1;
                struct sigaction sa;
                memset(&sa, 0, sizeof sa);
                sa.sa_handler = tl_on_signal;
                sigemptyset(&sa.sa_mask);
                int sigs[] = {SIGINT, SIGTERM, SIGHUP};
                for (int k = 0; k < 3; k++) {
                    struct sigaction old;
                    // Respect an inherited "ignore" (e.g. nohup): do not turn it into a kill.
                    if (sigaction(sigs[k], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
                    sigaction(sigs[k], &sa, NULL);
                }
            }
            return i;
        }
    }
    return -1;
}

void tl_forget_on_signal(int slot) {
    if (slot >= 0 && slot < TL_SLOTS) tl_used[slot] = 0;
}

// ---- CRC-32 (zlib's) by carry-less multiplication ---------------------------------------------
//
// Folding with PCLMULQDQ (Gopal et al., "Fast CRC Computation for Generic Polynomials Using
// PCLMULQDQ Instruction", Intel 2009), for the reflected polynomial 0xEDB88320: four 128-bit
// lanes folded 64 bytes at a time, then folded to one lane, reduced to 64 and to 32 bits with a
// Barrett step. The constants are x^k mod P(x) for the fold distances (bit-reflected), as that
// paper derives them. The Swift slicing-by-8 table code (CRC32.swift) is the reference the tests
// compare this against, and the fallback on CPUs without PCLMUL.
#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("pclmul,sse4.1")))
static uint32_t crc32_fold(uint32_t crc, const uint8_t *p, size_t n) {
    // n >= 64 and a multiple of 16; crc is the raw (non-inverted) state.
    const __m128i k1k2 = _mm_set_epi64x(0x1c6e41596, 0x154442bd4);
    const __m128i k3k4 = _mm_set_epi64x(0x0ccaa009e, 0x1751997d0);
    const __m128i k5 = _mm_set_epi64x(0, 0x163cd6124);
    const __m128i poly = _mm_set_epi64x(0x1f7011641, 0x1db710641);
    const __m128i mask32 = _mm_set_epi32(0, 0, 0, -1);
    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 0));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i x4 = _mm_loadu_si128((const __m128i *)(p + 48));
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)crc));
    p += 64; n -= 64;
#define FOLD(x, k, next) _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11)), next)
    while (n >= 64) {
        x1 = FOLD(x1, k1k2, _mm_loadu_si128((const __m128i *)(p + 0)));
        x2 = FOLD(x2, k1k2, _mm_loadu_si128((const __m128i *)(p + 16)));
        x3 = FOLD(x3, k1k2, _mm_loadu_si128((const __m128i *)(p + 32)));
        x4 = FOLD(x4, k1k2, _mm_loadu_si128((const __m128i *)(p + 48)));
        p += 64; n -= 64;
    }
    x1 = FOLD(x1, k3k4, x2);
    x1 = FOLD(x1, k3k4, x3);
    x1 = FOLD(x1, k3k4, x4);
    while (n >= 16) {
        x1 = FOLD(x1, k3k4, _mm_loadu_si128((const __m128i *)p));
        p += 16; n -= 16;
    }
#undef FOLD
    // 128 -> 64 bits
    __m128i x2b = _mm_srli_si128(x1, 8);
    x1 = _mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x10), x2b);
    // 64 -> 32 bits
    x2b = _mm_srli_si128(x1, 4);
    x1 = _mm_and_si128(x1, mask32);
    x1 = _mm_xor_si128(_mm_clmulepi64_si128(x1, k5, 0x00), x2b);
    // Barrett reduction
    x2b = x1;
    x1 = _mm_and_si128(x1, mask32);
    x1 = _mm_clmulepi64_si128(x1, poly, 0x10);
    x1 = _mm_and_si128(x1, mask32);
    x1 = _mm_clmulepi64_si128(x1, poly, 0x00);
    x1 = _mm_xor_si128(x1, x2b);
    return (uint32_t)_mm_extract_epi32(x1, 1);
}

size_t tl_crc32_fold(uint32_t *crc, const void *data, size_t n) {
    static int have = -1;
    if (have < 0) { __builtin_cpu_init(); have = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1"); }
    if (!have || n < 64) return 0;
    size_t m = n & ~(size_t)15;
    *crc = ~crc32_fold(~*crc, (const uint8_t *)data, m);
    return m;
}
#else
size_t tl_crc32_fold(uint32_t *crc, const void *data, size_t n) { (void)crc; (void)data; (void)n; return 0; }
#endif
