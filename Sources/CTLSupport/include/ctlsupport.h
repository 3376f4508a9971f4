#ifndef CTLSUPPORT_H
#define CTLSUPPORT_H

/// Bit set of CPU features this process may use: 1 = AVX2, 2 = FMA, 4 = F16C.
int tl_cpu_features(void);

/// 1 when this binary was built for x86-64-v3 (AVX2 + FMA) and so refuses to start without it.
int tl_build_requires_x86_64_v3(void);

/// Unlinks `path` from a signal handler if the process is interrupted (SIGINT, SIGTERM, SIGHUP)
/// and re-raises the signal. At most 8 paths at once; returns a slot number or -1 when full.
/// The path is copied. `tl_forget_on_signal(slot)` releases the slot.
int tl_unlink_on_signal(const char *path);
void tl_forget_on_signal(int slot);

#endif
