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
