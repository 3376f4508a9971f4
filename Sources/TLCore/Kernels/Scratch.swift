import Glibc

/// Per-thread scratch buffers for kernels (GEMM packing panels, im2col columns), kept for the
/// thread's lifetime and grown on demand, so a training loop that calls a kernel thousands of
/// times allocates (and faults in) its working memory once. Dispatch's worker threads persist,
/// so each worker keeps its own set.
public enum Scratch {
    public enum Slot: Int { case packA = 0, packB, columns, extra, reduce, output }
    static let slots = 6

    final class Buffers {
        var ptr = [UnsafeMutablePointer<Float>?](repeating: nil, count: Scratch.slots)
        var cap = [Int](repeating: 0, count: Scratch.slots)
        deinit { for p in ptr { p.map { free($0) } } }
    }

    nonisolated(unsafe) static var key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k) { raw in
            if let raw { Unmanaged<Buffers>.fromOpaque(raw).release() }
        }
        return k
    }()

    /// A 64-byte aligned buffer of at least `floats` elements, private to the calling thread.
    /// Its contents are undefined; it stays valid until the same thread asks for the same slot
    /// again with a larger size.
    @inline(never)
    public static func buffer(_ slot: Slot, floats: Int) -> UnsafeMutablePointer<Float> {
        let b: Buffers
        if let raw = pthread_getspecific(key) {
            b = Unmanaged<Buffers>.fromOpaque(raw).takeUnretainedValue()
        } else {
            b = Buffers()
            pthread_setspecific(key, Unmanaged.passRetained(b).toOpaque())
        }
        let i = slot.rawValue
        if b.cap[i] < floats {
            if let p = b.ptr[i] { free(p) }
            let n = max(floats, 1024)
            var raw: UnsafeMutableRawPointer? = nil
            guard posix_memalign(&raw, 64, n * 4) == 0, let r = raw else {
                fatalError("out of memory allocating \(n * 4) bytes of kernel scratch")
            }
            b.ptr[i] = r.bindMemory(to: Float.self, capacity: n)
            b.cap[i] = n
        }
        return b.ptr[i]!
    }
}
