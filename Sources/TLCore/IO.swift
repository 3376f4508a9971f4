import Glibc
import CTLSupport

/// Something bytes are read from, in order.
public protocol ByteReader: AnyObject {
    /// Reads up to `count` bytes; returns how many (0 only at the end of input).
    func read(into p: UnsafeMutableRawPointer, count: Int) throws -> Int
}

extension ByteReader {
    /// Reads until `count` bytes or the end of input; returns how many were read.
    public func readFully(into p: UnsafeMutableRawPointer, count: Int) throws -> Int {
        var got = 0
        while got < count {
            let n = try read(into: p + got, count: count - got)
            if n == 0 { break }
            got += n
        }
        return got
    }

    /// Reads exactly `count` bytes or throws a data error ("truncated") naming `what`.
    public func readExactly(into p: UnsafeMutableRawPointer, count: Int, what: @autoclosure () -> String) throws {
        let got = try readFully(into: p, count: count)
        guard got == count else { throw TLError.data("truncated \(what()): \(got) of \(count) bytes") }
    }

    public func readBytes(_ count: Int, what: @autoclosure () -> String) throws -> [UInt8] {
        var a = [UInt8](repeating: 0, count: count)
        if count > 0 { try a.withUnsafeMutableBytes { try readExactly(into: $0.baseAddress!, count: count, what: what()) } }
        return a
    }

    /// Reads and discards `count` bytes; a data error if the input ends first.
    public func skip(_ count: Int, what: @autoclosure () -> String) throws {
        var left = count
        var buf = [UInt8](repeating: 0, count: min(max(count, 1), 1 << 16))
        try buf.withUnsafeMutableBytes { b in
            while left > 0 {
                let n = try read(into: b.baseAddress!, count: min(left, b.count))
                guard n > 0 else { throw TLError.data("truncated \(what()): input ended \(left) bytes early") }
                left -= n
            }
        }
    }

    /// Everything up to the end of input. `limit` bounds the size (a data error past it).
    public func readToEnd(limit: Int = Int.max) throws -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = try chunk.withUnsafeMutableBytes { try read(into: $0.baseAddress!, count: $0.count) }
            if n == 0 { return out }
            guard out.count + n <= limit else { throw TLError.data("input is larger than \(limit) bytes") }
            out.append(contentsOf: chunk[0..<n])
        }
    }
}

func errnoString(_ e: Int32 = errno) -> String { String(cString: strerror(e)) }

/// Grows a pipe's kernel buffer from 64 KiB to 1 MiB (Linux's default limit for unprivileged
/// processes) when `fd` is a pipe: 16x fewer context switches between producer and consumer,
/// which took `tl-x | tl-y` from about 0.3 to over 1 GB/s on f32 streams. Best effort.
func enlargePipe(_ fd: Int32) {
    var st = stat()
    guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFIFO else { return }
    let F_SETPIPE_SZ: Int32 = 1031
    _ = fcntl(fd, F_SETPIPE_SZ, Int32(1 << 20))
}

/// A file descriptor read with read(2). Owns and closes it unless it is stdin.
public final class FDReader: ByteReader {
    public let fd: Int32
    let owned: Bool
    public let name: String
    public init(fd: Int32, name: String, owned: Bool) { self.fd = fd; self.name = name; self.owned = owned }
    deinit { if owned { close(fd) } }

    public func read(into p: UnsafeMutableRawPointer, count: Int) throws -> Int {
        while true {
            let n = Glibc.read(fd, p, min(count, 1 << 30))
            if n >= 0 { return n }
            if errno == EINTR { continue }
            if errno == EISDIR { throw TLError(.noInput, "is a directory", file: name) }
            throw TLError(.io, "read failed: \(errnoString())", file: name)
        }
    }
}

/// A read buffer over another reader, with `peek` for format detection. Reads larger than the
/// buffer go straight to the underlying reader once the buffer is drained (no extra copy).
public final class BufferedReader: ByteReader {
    let inner: ByteReader
    var buf: UnsafeMutableRawPointer
    let cap: Int
    var lo = 0, hi = 0
    /// Bytes handed out so far (the position in the stream).
    public private(set) var position: Int = 0

    public init(_ inner: ByteReader, capacity: Int = 1 << 20) {
        self.inner = inner; self.cap = capacity
        buf = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 64)
    }
    deinit { buf.deallocate() }

    /// Up to `n` (≤ capacity) next bytes without consuming them; fewer only at the end of input.
    public func peek(_ n: Int) throws -> [UInt8] {
        precondition(n <= cap)
        if hi - lo < n {
            if lo > 0 { memmove(buf, buf + lo, hi - lo); hi -= lo; lo = 0 }
            while hi < n {
                let r = try inner.read(into: buf + hi, count: cap - hi)
                if r == 0 { break }
                hi += r
            }
        }
        let m = min(n, hi - lo)
        return Array(UnsafeRawBufferPointer(start: buf + lo, count: m))
    }

    public func read(into p: UnsafeMutableRawPointer, count: Int) throws -> Int {
        if lo == hi {
            if count >= cap / 2 {
                let n = try inner.read(into: p, count: count)
                position += n
                return n
            }
            lo = 0
            hi = try inner.read(into: buf, count: cap)
            if hi == 0 { return 0 }
        }
        let n = min(count, hi - lo)
        p.copyMemory(from: buf + lo, byteCount: n)
        lo += n
        position += n
        return n
    }
}

/// A whole regular file mapped read-only into memory. Tensors read from it point into the
/// mapping (zero copies); it stays mapped while any of them lives.
public final class MappedFile: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let size: Int
    public let name: String

    /// Maps `fd` (a regular file of `size` bytes). Pages are copy-on-write: writing to a tensor
    /// that views the mapping never changes the file.
    init(fd: Int32, size: Int, name: String) throws {
        self.size = size; self.name = name
        if size == 0 { base = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64); return }
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw TLError(.io, "cannot map: \(errnoString())", file: name)
        }
        base = p
    }
    deinit { if size == 0 { base.deallocate() } else { munmap(base, size) } }

    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    /// Lets the kernel drop the resident pages wholly inside [p, p + count): a consumer that has
    /// finished with part of a large mapped tensor keeps its memory bounded. Reading the bytes
    /// again maps them in again from the file; bytes written through the mapping would be lost,
    /// so call this only on ranges nobody wrote to.
    public func release(_ p: UnsafeRawPointer, count: Int) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let lo = (Int(bitPattern: p) + page - 1) / page * page, hi = (Int(bitPattern: p) + count) / page * page
        guard hi > lo, lo >= Int(bitPattern: base), hi <= Int(bitPattern: base) + size else { return }
        madvise(UnsafeMutableRawPointer(bitPattern: lo), hi - lo, MADV_DONTNEED)
    }
}

/// An input named on the command line: a path, or "-" for standard input.
public struct Input {
    public let name: String
    public let fd: Int32
    /// True for regular files, which can be mapped and have a known size.
    public let isRegular: Bool
    public let size: Int

    /// Opens `path` ("-" is stdin). A missing or unreadable file is a `.noInput` error.
    public static func open(_ path: String) throws -> Input {
        var fd: Int32 = 0
        if path != "-" {
            fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw TLError(.noInput, "cannot open: \(errnoString())", file: path) }
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw TLError(.io, "cannot stat: \(errnoString())", file: path) }
        let mode = st.st_mode & S_IFMT
        if mode == S_IFDIR {
            if path != "-" { close(fd) }
            throw TLError(.noInput, "is a directory", file: path)
        }
        return Input(name: path, fd: fd, isRegular: mode == S_IFREG, size: Int(st.st_size))
    }

    /// A reader over the input (taking ownership of the descriptor unless it is stdin).
    public func reader() -> BufferedReader {
        enlargePipe(fd)
        return BufferedReader(FDReader(fd: fd, name: name, owned: name != "-"))
    }

    /// Maps the file (regular files only) and closes the descriptor.
    public func map() throws -> MappedFile {
        precondition(isRegular)
        defer { if name != "-" { close(fd) } }
        return try MappedFile(fd: fd, size: size, name: name)
    }
}

/// Something bytes are written to.
public protocol ByteWriter: AnyObject {
    func write(_ p: UnsafeRawPointer, count: Int) throws
}

extension ByteWriter {
    public func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, count: $0.count) } }
    public func write(_ s: String) throws { try write(Array(s.utf8)) }
    public func writeZeros(_ n: Int) throws {
        if n <= 0 { return }
        let z = [UInt8](repeating: 0, count: n)
        try write(z)
    }
}

/// Collects bytes in memory (tests, npz members, small outputs).
public final class MemoryWriter: ByteWriter {
    public var bytes: [UInt8] = []
    public init() {}
    public func write(_ p: UnsafeRawPointer, count: Int) throws {
        bytes.append(contentsOf: UnsafeRawBufferPointer(start: p, count: count))
    }
}

/// Reads from an in-memory byte array.
public final class MemoryReader: ByteReader {
    let bytes: [UInt8]
    var at = 0
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public func read(into p: UnsafeMutableRawPointer, count: Int) throws -> Int {
        let n = min(count, bytes.count - at)
        if n > 0 { bytes.withUnsafeBytes { p.copyMemory(from: $0.baseAddress! + at, byteCount: n) } }
        at += n
        return n
    }
}

/// An output named on the command line: a path (written atomically: a temporary file in the
/// same directory, renamed over the path by `commit()`, removed by `abandon()` or when the
/// process is interrupted) or "-" for standard output (streamed, flushed as it goes).
public final class Output: ByteWriter {
    public let name: String
    let fd: Int32
    let tempPath: String?
    var signalSlot: Int32 = -1
    var buf: UnsafeMutableRawPointer
    let cap = 1 << 16
    var used = 0
    var done = false

    /// Opens `path` for writing. `binary` outputs refuse a terminal on stdout (a usage error).
    public init(_ path: String, binary: Bool = true) throws {
        name = path
        if path == "-" {
            if binary && isatty(1) == 1 {
                throw TLError(.usage, "refusing to write binary data to a terminal; redirect stdout or use -o FILE")
            }
            fd = 1; tempPath = nil
            enlargePipe(1)
        } else {
            let slash = path.lastIndex(of: "/")
            let dir = slash.map { String(path[..<$0]) } ?? "."
            let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
            guard !base.isEmpty else { throw TLError(.cantCreate, "output path names a directory", file: path) }
            var template = Array(((dir.isEmpty ? "/" : dir + "/") + "." + base + ".tmp.XXXXXX").utf8) + [0]
            let f = template.withUnsafeMutableBufferPointer { b in
                b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { mkstemp($0) }
            }
            guard f >= 0 else { throw TLError(.cantCreate, "cannot create: \(errnoString())", file: path) }
            fd = f
            let tp = String(decoding: template.dropLast(), as: UTF8.self)
            tempPath = tp
            fchmod(f, 0o644 & ~Output.umaskValue)
            signalSlot = tl_unlink_on_signal(tp)
        }
        buf = UnsafeMutableRawPointer.allocate(byteCount: cap, alignment: 64)
    }

    static let umaskValue: mode_t = { let m = umask(0o022); umask(m); return m }()

    deinit {
        if !done { abandon() }
        buf.deallocate()
    }

    public func write(_ p: UnsafeRawPointer, count: Int) throws {
        if used + count <= cap {
            (buf + used).copyMemory(from: p, byteCount: count)
            used += count
            return
        }
        try flush()
        if count >= cap { try writeAll(p, count) } else { buf.copyMemory(from: p, byteCount: count); used = count }
    }

    func writeAll(_ p: UnsafeRawPointer, _ count: Int) throws {
        var off = 0
        while off < count {
            let n = Glibc.write(fd, p + off, min(count - off, 1 << 30))
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EPIPE { throw TLError(.io, "broken pipe", file: name) }
                throw TLError(.io, "write failed: \(errnoString())", file: name)
            }
            off += n
        }
    }

    /// Writes buffered bytes through (stdout consumers see them now).
    public func flush() throws {
        if used > 0 { let n = used; used = 0; try writeAll(buf, n) }
    }

    /// Finishes the output: flushes, and for a path closes and renames the temporary file over it.
    public func commit() throws {
        precondition(!done)
        do {
            try flush()
            if let tp = tempPath {
                guard close(fd) == 0 else { throw TLError(.io, "close failed: \(errnoString())", file: name) }
                guard rename(tp, name) == 0 else { throw TLError(.cantCreate, "cannot rename into place: \(errnoString())", file: name) }
                tl_forget_on_signal(signalSlot)
            }
            done = true
        } catch {
            abandon()
            throw error
        }
    }

    /// Gives up: removes the temporary file; the path keeps whatever it had before.
    public func abandon() {
        if done { return }
        done = true
        used = 0
        if let tp = tempPath {
            close(fd)
            unlink(tp)
            tl_forget_on_signal(signalSlot)
        }
    }
}
