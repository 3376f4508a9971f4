import Glibc

/// A block of raw bytes that tensors view. It is either owned (allocated, 64-byte aligned, freed
/// on deinit) or borrowed from another object that keeps it alive (a memory-mapped file), which
/// is how files are read without copying.
public final class Storage: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let byteCount: Int
    private let owner: AnyObject?
    private let mapped: Bool
    /// For pooled storage: the size of the pool buffer (at least byteCount), 0 otherwise.
    private var poolSize = 0

    /// Buffers at least this large come from anonymous mmap: page-aligned and zeroed lazily by
    /// the kernel, so a reader that allocates for a record and then finds the input truncated
    /// has touched only what it read.
    static let mmapThreshold = 1 << 20
    /// Buffers up to this size are pre-faulted (MAP_POPULATE): the kernel zeroes them in one
    /// pass instead of taking one page fault per 4 KiB on first touch, which on this kind of VM
    /// made reading a pipe into fresh chunks 5x slower than `cat`. Larger ones stay lazy.
    static let populateLimit = 256 << 20

    /// Allocates `byteCount` zeroed bytes, 64-byte aligned. Sizes beyond physical memory are a
    /// data error (the caller got them from a header); a failed allocation is an I/O error.
    public init(zeroedBytes byteCount: Int) throws {
        precondition(byteCount >= 0)
        guard byteCount <= physicalMemory() else {
            throw TLError.data("a tensor of \(byteCount) bytes is more than this machine's memory")
        }
        if byteCount >= Storage.mmapThreshold {
            let populate = byteCount <= Storage.populateLimit ? MAP_POPULATE : 0
            guard let p = mmap(nil, byteCount, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | populate, -1, 0), p != MAP_FAILED else {
                throw TLError(.io, "out of memory allocating \(byteCount) bytes")
            }
            base = p; mapped = true
        } else {
            var p: UnsafeMutableRawPointer? = nil
            guard posix_memalign(&p, 64, max(byteCount, 1)) == 0, let q = p else {
                throw TLError(.io, "out of memory allocating \(byteCount) bytes")
            }
            memset(q, 0, max(byteCount, 1))
            base = q; mapped = false
        }
        self.byteCount = byteCount
        self.owner = nil
    }

    /// Zeroed bytes for a short-lived working tensor (layer activations and gradients): taken
    /// from a pool of buffers that earlier tensors of the same size returned, so a training
    /// loop allocates its working memory once instead of mapping, faulting in and unmapping it
    /// every batch (that took a sixth of training time). Zeroed with memset on reuse, unless
    /// `zero` is false (the caller overwrites every byte).
    public init(pooledZeroedBytes byteCount: Int, zero: Bool = true) {
        precondition(byteCount >= 0)
        var size = BufferPool.roundUp(byteCount)
        if let (p, got) = BufferPool.shared.take(size) {
            if zero { memset(p, 0, byteCount) }
            base = p; size = got
        } else {
            var p: UnsafeMutableRawPointer? = nil
            guard posix_memalign(&p, 4096, max(size, 1)) == 0, let q = p else { fatalError("out of memory allocating \(size) bytes") }
            // (Not when the caller overwrites every byte: touching fresh pages here only to
            // overwrite them had been a twentieth of EfficientNet-Lite0's time at 224×224.)
            if zero { memset(q, 0, max(size, 1)) }
            base = q
        }
        self.byteCount = byteCount; owner = nil; mapped = false; poolSize = size
    }

    /// For a tensor viewing a mapped file: drop the resident pages of bytes [offset, offset +
    /// count) of this storage (see `MappedFile.release`). A no-op for memory the process owns.
    public func releaseMappedPages(offset: Int, count: Int) {
        (owner as? MappedFile)?.release(base + offset, count: count)
    }

    /// Views memory owned by `owner` (for example a mapped file) without copying.
    public init(borrowing base: UnsafeMutableRawPointer, byteCount: Int, owner: AnyObject) {
        self.base = base; self.byteCount = byteCount; self.owner = owner; self.mapped = false
    }

    deinit {
        if owner != nil { return }
        if poolSize > 0 { BufferPool.shared.give(base, poolSize); return }
        if mapped { munmap(base, byteCount) } else { free(base) }
    }
}

/// Idle working buffers by size (page multiples), at most `capacity` bytes kept; thread-safe.
final class BufferPool: @unchecked Sendable {
    static let shared = BufferPool()
    static let capacity = 4 << 30
    var lock = pthread_mutex_t()
    var free: [Int: [UnsafeMutableRawPointer]] = [:]
    var idle = 0
    init() { pthread_mutex_init(&lock, nil) }
    static func roundUp(_ n: Int) -> Int { (n + 4095) & ~4095 }
    /// An idle buffer of `size` bytes, or else the smallest idle one up to twice as large (the
    /// last, smaller batch of an epoch then reuses the full batch's buffers instead of faulting
    /// in a second set); with its actual size.
    func take(_ size: Int) -> (UnsafeMutableRawPointer, Int)? {
        pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }
        var got = size
        if free[size]?.isEmpty ?? true {
            guard let k = free.keys.filter({ $0 > size && $0 <= 2 * size && !(free[$0]!.isEmpty) }).min() else { return nil }
            got = k
        }
        guard let p = free[got]?.popLast() else { return nil }
        idle -= got
        return (p, got)
    }
    func give(_ p: UnsafeMutableRawPointer, _ size: Int) {
        pthread_mutex_lock(&lock)
        if idle + size <= BufferPool.capacity {
            free[size, default: []].append(p); idle += size
            pthread_mutex_unlock(&lock)
        } else {
            pthread_mutex_unlock(&lock)
            Glibc.free(p)
        }
    }
}

/// An n-dimensional array: a dtype, a shape and a view into a `Storage`, C (row-major) order.
///
/// Tensors are values whose bytes are shared: copying a `Tensor` copies the view, not the data
/// (as NumPy arrays do). Use `copy()` for an independent buffer.
public struct Tensor: @unchecked Sendable {
    public var dtype: DType
    public private(set) var shape: [Int]
    public let storage: Storage
    /// Byte offset of element 0 in `storage`.
    public let offset: Int

    /// Number of elements: the product of the shape (1 for a scalar).
    public var count: Int { shape.reduce(1, *) }
    public var byteCount: Int { count * dtype.size }
    public var rank: Int { shape.count }
    /// Size of axis 0 (1 for a scalar).
    public var rows: Int { shape.first ?? 1 }
    /// Bytes per row along axis 0.
    public var rowBytes: Int { shape.dropFirst().reduce(1, *) * dtype.size }

    /// A zero-filled tensor. Throws for negative or overflowing shapes.
    public init(zeros dtype: DType, shape: [Int]) throws {
        let n = try Tensor.checkedByteCount(dtype: dtype, shape: shape)
        self.init(dtype: dtype, shape: shape, storage: try Storage(zeroedBytes: n), offset: 0)
    }

    /// A view of `storage` starting at `offset`; the caller guarantees the bytes exist.
    public init(dtype: DType, shape: [Int], storage: Storage, offset: Int = 0) {
        precondition(offset >= 0 && offset + shape.reduce(1, *) * dtype.size <= storage.byteCount,
                     "tensor view out of bounds")
        self.dtype = dtype; self.shape = shape; self.storage = storage; self.offset = offset
    }

    public init(_ values: [Float], shape: [Int]? = nil) {
        let s = shape ?? [values.count]
        precondition(s.reduce(1, *) == values.count)
        self = try! Tensor(zeros: .f32, shape: s)
        values.withUnsafeBytes { self.rawPointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    public init(_ values: [Int64], shape: [Int]? = nil) {
        let s = shape ?? [values.count]
        precondition(s.reduce(1, *) == values.count)
        self = try! Tensor(zeros: .i64, shape: s)
        values.withUnsafeBytes { self.rawPointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    /// The byte size of a tensor of this shape, or a data error if a dimension is negative or
    /// the size overflows (a header claiming 10^15 elements must not crash or allocate).
    public static func checkedByteCount(dtype: DType, shape: [Int], limit: Int = Int.max) throws -> Int {
        var n = dtype.size
        for d in shape {
            guard d >= 0 else { throw TLError.data("negative dimension \(d) in shape \(shape)") }
            let (m, o) = n.multipliedReportingOverflow(by: d)
            guard !o else { throw TLError.data("shape \(shape) overflows 64-bit sizes") }
            n = m
        }
        guard n <= limit else { throw TLError.data("shape \(shape) of \(dtype.shortName) needs \(n) bytes, over the limit of \(limit)") }
        return n
    }

    public var rawPointer: UnsafeMutableRawPointer { storage.base + offset }
    public var rawBytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: rawPointer, count: byteCount) }

    /// Calls `body` with a typed pointer to the elements. `T` must match the dtype's size.
    @inlinable
    public func withUnsafeMutablePointer<T, R>(to: T.Type, _ body: (UnsafeMutablePointer<T>, Int) throws -> R) rethrows -> R {
        precondition(MemoryLayout<T>.size == dtype.size, "element type does not match dtype \(dtype)")
        return try body(rawPointer.assumingMemoryBound(to: T.self), count)
    }

    /// The same bytes with a new shape of the same element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count, "reshape \(shape) -> \(newShape) changes the count")
        return Tensor(dtype: dtype, shape: newShape, storage: storage, offset: offset)
    }

    /// Rows `range` along axis 0, without copying.
    public func rows(_ range: Range<Int>) -> Tensor {
        precondition(rank >= 1 && range.lowerBound >= 0 && range.upperBound <= rows)
        var s = shape; s[0] = range.count
        return Tensor(dtype: dtype, shape: s, storage: storage, offset: offset + range.lowerBound * rowBytes)
    }

    /// An independent copy (owned, aligned).
    public func copy() -> Tensor {
        let t = try! Tensor(zeros: dtype, shape: shape)
        if byteCount > 0 { t.rawPointer.copyMemory(from: rawPointer, byteCount: byteCount) }
        return t
    }

    /// Concatenates tensors along axis 0. They must share dtype and trailing dimensions.
    public static func concatenate(_ parts: [Tensor]) throws -> Tensor {
        guard let first = parts.first else { throw TLError(.software, "concatenate of no tensors") }
        if parts.count == 1 { return first }
        let tail = Array(first.shape.dropFirst())
        var rows = 0
        for p in parts {
            guard p.dtype == first.dtype, p.rank >= 1, Array(p.shape.dropFirst()) == tail else {
                throw TLError.data("cannot join \(p.dtype.shortName) \(p.shape) to \(first.dtype.shortName) \(first.shape)")
            }
            rows += p.rows
        }
        let out = try Tensor(zeros: first.dtype, shape: [rows] + tail)
        var at = 0
        for p in parts where p.byteCount > 0 {
            (out.rawPointer + at).copyMemory(from: p.rawPointer, byteCount: p.byteCount)
            at += p.byteCount
        }
        return out
    }

    /// Rows `idx` along axis 0, in that order, as a new tensor.
    public func gathered(_ idx: [Int]) throws -> Tensor {
        var s = shape; s[0] = idx.count
        let out = try Tensor(zeros: dtype, shape: s)
        let rb = rowBytes
        for (k, i) in idx.enumerated() { (out.rawPointer + k * rb).copyMemory(from: rawPointer + i * rb, byteCount: rb) }
        return out
    }

    /// True when dtype, shape and bytes are the same.
    public func bitwiseEqual(_ o: Tensor) -> Bool {
        dtype == o.dtype && shape == o.shape && memcmp(rawPointer, o.rawPointer, byteCount) == 0
    }
}

/// A shape as people write it: [60000, 1, 28, 28] -> "60000x1x28x28"; a scalar -> "scalar".
public func shapeString(_ s: [Int]) -> String { s.isEmpty ? "scalar" : s.map(String.init).joined(separator: "x") }
