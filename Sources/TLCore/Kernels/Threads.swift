import Dispatch
import Glibc

/// How many threads the kernels use. Defaults to the CPUs this process may run on, or
/// `TL_THREADS` from the environment; commands set it from `--threads`.
///
/// Determinism contract: every kernel splits work so that each output element is computed by
/// one thread in a fixed order of operations, or (for reductions across threads, such as the
/// convolution weight gradient) sums fixed-size partials in a fixed order. Results are therefore
/// bit-identical for any thread count unless a kernel's doc comment says otherwise.
public enum Threads {
    nonisolated(unsafe) public static var count: Int = {
        if let s = getenv("TL_THREADS"), let n = Int(String(cString: s)), n >= 1 { return min(n, 256) }
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }()

    /// Runs `body(i)` for i in 0..<n on up to `Threads.count` threads (inline when n == 1 or one
    /// thread). Waking a worker costs about 12 µs: give each task 100 µs of work or more.
    @inlinable
    public static func parallelFor(_ n: Int, threads: Int = Threads.count, _ body: (Int) -> Void) {
        if n <= 0 { return }
        if n == 1 || threads <= 1 {
            for i in 0..<n { body(i) }
            return
        }
        withoutActuallyEscaping(body) { b in
            let box = UnsafeSendable(b)
            DispatchQueue.concurrentPerform(iterations: min(n, threads)) { t in
                // Static round-robin assignment: task i always runs on the same worker index
                // for a given thread count, and never twice.
                var i = t
                let stride = min(n, threads)
                while i < n { box.value(i); i += stride }
            }
        }
    }
}

/// Seconds on the monotonic clock.
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Wraps a value that the caller promises is safe to share across the threads of a
/// `parallelFor` (pointers into disjoint regions, or read-only data).
public struct UnsafeSendable<T>: @unchecked Sendable {
    public let value: T
    @inlinable public init(_ v: T) { value = v }
}
