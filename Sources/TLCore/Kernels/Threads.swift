import CTLSupport
import Dispatch
import Glibc
import Synchronization

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

    /// Runs `body(i)` for i in 0..<n on up to `threads` threads (inline when n == 1 or one
    /// thread). Task i always runs on participant i mod min(n, threads), the caller being
    /// participant 0, and never twice.
    ///
    /// The participants are the caller and the workers of a pool that spin for a while after
    /// each job before they sleep, so back-to-back calls (a network's layers) hand work over in
    /// well under a microsecond instead of the ≈ 12 µs it takes to wake a Dispatch worker. A
    /// call made while the pool is busy (from inside another call's body) runs on Dispatch.
    public static func parallelFor(_ n: Int, threads: Int = Threads.count, _ body: (Int) -> Void) {
        if n <= 0 { return }
        let stride = min(n, threads)
        if stride <= 1 {
            for i in 0..<n { body(i) }
            return
        }
        withoutActuallyEscaping(body) { b in
            if WorkerPool.enabled && WorkerPool.shared.run(n: n, stride: stride, b) { return }
            let box = UnsafeSendable(b)
            DispatchQueue.concurrentPerform(iterations: stride) { t in
                var i = t
                while i < n { box.value(i); i += stride }
            }
        }
    }
}

/// Persistent worker threads for `Threads.parallelFor`. One job at a time: the caller publishes
/// it by bumping `ticket` (job number × 256 + participants), runs its own share, then waits for
/// the participating workers' `done` count. Idle workers spin on `ticket` for `spinSeconds`,
/// then sleep on a condition variable until the next job.
final class WorkerPool: @unchecked Sendable {
    static let shared = WorkerPool()
    /// How long an idle worker spins before it sleeps: long enough to span the serial work
    /// between two kernels of a training step, short enough not to tax a shared machine.
    static let spinSeconds = 0.000_2
    /// `TL_POOL=off` runs every parallel loop on Dispatch instead (for comparison).
    static let enabled: Bool = getenv("TL_POOL").map { String(cString: $0) != "off" } ?? true

    let busy = Atomic<Bool>(false)
    let ticket = Atomic<Int>(0)
    let done = Atomic<Int>(0)
    let sleepers = Atomic<Int>(0)
    var mutex = pthread_mutex_t(), cond = pthread_cond_t()
    /// The job: read by participants between the ticket they see and their `done`.
    var body: UnsafeMutablePointer<(Int) -> Void>? = nil
    var n = 0
    /// Workers started so far (they are participants 1...workers).
    var workers = 0

    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&cond, nil)
    }

    /// Runs the job on the caller and `stride − 1` workers; false when the pool is busy.
    func run(n: Int, stride: Int, _ f: @escaping (Int) -> Void) -> Bool {
        guard stride < 256, busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        while workers < stride - 1 {
            workers += 1
            guard start(participant: workers) else { workers -= 1; busy.store(false, ordering: .releasing); return false }
        }
        let p = UnsafeMutablePointer<(Int) -> Void>.allocate(capacity: 1)
        p.initialize(to: f)
        body = p; self.n = n
        done.store(0, ordering: .relaxed)
        let next = (ticket.load(ordering: .relaxed) / 256 + 1) * 256 + stride
        ticket.store(next, ordering: .sequentiallyConsistent)
        if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
            pthread_mutex_lock(&mutex); pthread_cond_broadcast(&cond); pthread_mutex_unlock(&mutex)
        }
        var i = 0
        while i < n { f(i); i += stride }
        var spins = 0
        while done.load(ordering: .acquiring) < stride - 1 {
            spins += 1
            if spins < 4096 { tl_cpu_relax() } else { sched_yield() }
        }
        body = nil
        p.deinitialize(count: 1); p.deallocate()
        busy.store(false, ordering: .releasing)
        return true
    }

    func start(participant: Int) -> Bool {
        var attr = pthread_attr_t()
        pthread_attr_init(&attr); defer { pthread_attr_destroy(&attr) }
        pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
        pthread_attr_setstacksize(&attr, 8 << 20)
        // The worker waits for the ticket after the current one (it may start after the next job is out).
        let ctx = Unmanaged.passRetained(WorkerStart(pool: self, participant: participant, seen: ticket.load(ordering: .relaxed))).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, &attr, { raw in
            let s = Unmanaged<WorkerStart>.fromOpaque(raw!).takeRetainedValue()
            s.pool.work(participant: s.participant, seen: s.seen)
            return nil
        }, ctx)
        if rc != 0 { Unmanaged<WorkerStart>.fromOpaque(ctx).release() }
        return rc == 0
    }

    func work(participant w: Int, seen start: Int) {
        var seen = start
        while true {
            var t = ticket.load(ordering: .acquiring)
            if t == seen {
                let deadline = monotonicSeconds() + WorkerPool.spinSeconds
                var spins = 0
                while t == seen {
                    spins += 1
                    if spins & 255 == 0 && monotonicSeconds() > deadline {
                        pthread_mutex_lock(&mutex)
                        sleepers.add(1, ordering: .sequentiallyConsistent)
                        while ticket.load(ordering: .sequentiallyConsistent) == seen { pthread_cond_wait(&cond, &mutex) }
                        sleepers.subtract(1, ordering: .sequentiallyConsistent)
                        pthread_mutex_unlock(&mutex)
                    } else {
                        tl_cpu_relax()
                    }
                    t = ticket.load(ordering: .acquiring)
                }
            }
            seen = t
            let stride = t % 256
            guard w < stride else { continue }
            let f = body!, count = n
            var i = w
            while i < count { f.pointee(i); i += stride }
            done.add(1, ordering: .releasing)
        }
    }
}

final class WorkerStart {
    let pool: WorkerPool, participant: Int, seen: Int
    init(pool: WorkerPool, participant: Int, seen: Int) { self.pool = pool; self.participant = participant; self.seen = seen }
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
