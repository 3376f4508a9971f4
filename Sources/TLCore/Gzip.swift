import Glibc

/// Streaming gzip (RFC 1952) / DEFLATE (RFC 1951) decoder: reads compressed bytes from another
/// reader and hands out the decompressed bytes with bounded memory (a 32 KiB window plus a
/// fixed output buffer). Checks each member's CRC-32 and length; concatenated members are read
/// as one stream (as gzip does); trailing zero bytes are ignored, other trailing bytes are an error.
public final class GzipReader: ByteReader {
    let inner: ByteReader
    let name: String
    // input
    var inBuf: UnsafeMutablePointer<UInt8>
    let inCap = 1 << 16
    var inPos = 0, inEnd = 0
    var eof = false
    var bitBuf: UInt64 = 0
    var bitCnt = 0
    var overrun = 0  // zero bits appended past the end of input
    // output: [0, outStart) already handed out (kept as the window), [outStart, outEnd) ready
    var out: UnsafeMutablePointer<UInt8>
    let outCap = (1 << 18) + 32768
    var outStart = 0, outEnd = 0
    // decoder state
    enum State { case memberHeader, blockHeader, stored(Int), huffman, memberTrailer, done }
    var state = State.memberHeader
    var lastBlock = false
    var lit = Huffman(), dist = Huffman()
    var crc: UInt32 = 0
    var memberSize: UInt32 = 0
    var members = 0
    /// Compressed bytes consumed so far (for messages).
    var consumed = 0

    /// Raw DEFLATE (no gzip header or trailer; ZIP members) when `raw`; the caller checks the CRC.
    let raw: Bool
    public init(_ inner: ByteReader, name: String, raw: Bool = false) {
        self.inner = inner; self.name = name; self.raw = raw
        if raw { state = .blockHeader }
        inBuf = .allocate(capacity: inCap)
        out = .allocate(capacity: outCap)
    }
    deinit { inBuf.deallocate(); out.deallocate() }

    public func read(into p: UnsafeMutableRawPointer, count: Int) throws -> Int {
        if outStart == outEnd {
            if case .done = state { return 0 }
            try annotating(file: name, location: "gzip byte \(consumed)") { try produce() }
            if outStart == outEnd { return 0 }
        }
        let n = min(count, outEnd - outStart)
        p.copyMemory(from: out + outStart, byteCount: n)
        outStart += n
        return n
    }

    // MARK: bits
    @inline(__always) func fillInput() throws -> Bool {
        inPos = 0
        inEnd = try inner.read(into: inBuf, count: inCap)
        if inEnd == 0 { eof = true }
        return inEnd > 0
    }

    @inline(__always) func refill() throws {
        while bitCnt <= 56 {
            if inPos == inEnd {
                let more = eof ? false : try fillInput()
                if !more {
                    // Pad with zeros; reading them is detected by checkOverrun().
                    bitCnt += 8; overrun += 8
                    if overrun > 64 * 8 { throw TLError.data("truncated gzip data") }
                    continue
                }
            }
            bitBuf |= UInt64(inBuf[inPos]) << UInt64(bitCnt)
            inPos += 1; bitCnt += 8; consumed += 1
        }
    }

    @inline(__always) func checkOverrun() throws {
        if overrun > bitCnt { throw TLError.data("truncated gzip data: input ended inside the compressed stream") }
    }

    @inline(__always) func bits(_ n: Int) throws -> Int {
        if n == 0 { return 0 }
        if bitCnt < n { try refill() }
        let v = Int(bitBuf & ((1 << UInt64(n)) - 1))
        bitBuf >>= UInt64(n); bitCnt -= n
        try checkOverrun()
        return v
    }

    func alignToByte() { let r = bitCnt % 8; bitBuf >>= UInt64(r); bitCnt -= r }

    func byte() throws -> UInt8 { UInt8(try bits(8)) }

    /// True if there is at least one more byte of real input (after aligning to a byte).
    func moreInput() throws -> Bool {
        if bitCnt - overrun >= 8 { return true }
        if bitCnt - overrun > 0 { return false }
        if inPos < inEnd { return true }
        if eof { return false }
        return try fillInput()
    }

    // MARK: Huffman tables
    /// A canonical Huffman code as one lookup table indexed by the next `maxLen` bits
    /// (bit-reversed, as DEFLATE packs codes): entry = symbol << 4 | length.
    struct Huffman {
        var table: [UInt16] = []
        var maxLen = 0

        init() {}
        init(lengths: [Int]) throws {
            var count = [Int](repeating: 0, count: 16)
            for l in lengths { count[l] += 1 }
            count[0] = 0
            maxLen = (1...15).last { count[$0] > 0 } ?? 0
            guard maxLen > 0 else { table = []; return }
            // Over-subscribed codes are invalid; incomplete ones are allowed (RFC 1951 uses a
            // single-code distance tree), unused table slots stay 0 and are rejected when hit.
            var left = 1
            for l in 1...15 { left <<= 1; left -= count[l]; guard left >= 0 else { throw TLError.data("over-subscribed Huffman code") } }
            var next = [Int](repeating: 0, count: 16)
            var code = 0
            for l in 1...15 { code = (code + count[l - 1]) << 1; next[l] = code }
            table = [UInt16](repeating: 0, count: 1 << maxLen)
            for (sym, l) in lengths.enumerated() where l > 0 {
                let c = next[l]; next[l] += 1
                var rev = 0
                for b in 0..<l { rev |= ((c >> b) & 1) << (l - 1 - b) }
                let entry = UInt16(sym << 4 | l)
                var k = rev
                while k < table.count { table[k] = entry; k += 1 << l }
            }
        }
    }

    @inline(__always) func decode(_ h: Huffman) throws -> Int {
        if bitCnt < h.maxLen { try refill() }
        guard h.maxLen > 0 else { throw TLError.data("invalid deflate data: empty Huffman code used") }
        let e = h.table[Int(bitBuf & ((1 << UInt64(h.maxLen)) - 1))]
        let l = Int(e & 15)
        guard l > 0 else { throw TLError.data("invalid deflate data: bad Huffman code") }
        bitBuf >>= UInt64(l); bitCnt -= l
        try checkOverrun()
        return Int(e >> 4)
    }

    static let fixedLit: Huffman = {
        var l = [Int](repeating: 8, count: 288)
        for i in 144..<256 { l[i] = 9 }
        for i in 256..<280 { l[i] = 7 }
        return try! Huffman(lengths: l)
    }()
    static let fixedDist = try! Huffman(lengths: [Int](repeating: 5, count: 30))
    static let lenBase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
    static let lenExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
    static let distBase = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577]
    static let distExtra = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]
    static let clOrder = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]

    func dynamicTables() throws {
        let hlit = try bits(5) + 257, hdist = try bits(5) + 1, hclen = try bits(4) + 4
        guard hlit <= 286, hdist <= 30 else { throw TLError.data("invalid deflate data: too many codes") }
        var cl = [Int](repeating: 0, count: 19)
        for i in 0..<hclen { cl[GzipReader.clOrder[i]] = try bits(3) }
        let clh = try Huffman(lengths: cl)
        var lengths: [Int] = []
        while lengths.count < hlit + hdist {
            let s = try decode(clh)
            switch s {
            case 0...15: lengths.append(s)
            case 16:
                guard let prev = lengths.last else { throw TLError.data("invalid deflate data: repeat with no previous length") }
                lengths.append(contentsOf: repeatElement(prev, count: 3 + (try bits(2))))
            case 17: lengths.append(contentsOf: repeatElement(0, count: 3 + (try bits(3))))
            default: lengths.append(contentsOf: repeatElement(0, count: 11 + (try bits(7))))
            }
        }
        guard lengths.count == hlit + hdist else { throw TLError.data("invalid deflate data: code lengths overflow") }
        guard lengths[256] > 0 else { throw TLError.data("invalid deflate data: no end-of-block code") }
        lit = try Huffman(lengths: Array(lengths[0..<hlit]))
        dist = try Huffman(lengths: Array(lengths[hlit...]))
    }

    // MARK: members
    func readMemberHeader() throws {
        alignToByte()
        guard try byte() == 0x1F, try byte() == 0x8B else { throw TLError.data("not gzip data (bad magic)") }
        guard try byte() == 8 else { throw TLError.data("gzip compression method is not deflate") }
        let flags = try byte()
        guard flags & 0xE0 == 0 else { throw TLError.data("reserved gzip flags set") }
        for _ in 0..<6 { _ = try byte() }  // mtime, xfl, os
        if flags & 4 != 0 { let n = Int(try byte()) | Int(try byte()) << 8; for _ in 0..<n { _ = try byte() } }
        if flags & 8 != 0 { while try byte() != 0 {} }
        if flags & 16 != 0 { while try byte() != 0 {} }
        if flags & 2 != 0 { _ = try byte(); _ = try byte() }
        crc = 0; memberSize = 0; members += 1
    }

    func readMemberTrailer() throws {
        alignToByte()
        var want: UInt32 = 0, size: UInt32 = 0
        for i in 0..<4 { want |= UInt32(try byte()) << UInt32(8 * i) }
        for i in 0..<4 { size |= UInt32(try byte()) << UInt32(8 * i) }
        guard want == crc else { throw TLError.data("gzip CRC-32 mismatch (corrupted data)") }
        guard size == memberSize else { throw TLError.data("gzip length mismatch (corrupted data)") }
    }

    /// Decodes until some output is ready or the stream ends.
    func produce() throws {
        // Slide the window: keep the last 32 KiB already handed out for back-references.
        if outEnd > outCap - 32768 - 258 {
            let keep = min(outEnd, 32768)
            memmove(out, out + outEnd - keep, keep)
            outStart = keep; outEnd = keep
        }
        let startEnd = outEnd
        defer {
            if outEnd > startEnd {
                crc = CRC32.update(crc, UnsafeRawBufferPointer(start: out + startEnd, count: outEnd - startEnd))
                memberSize &+= UInt32(truncatingIfNeeded: outEnd - startEnd)
            }
        }
        while outEnd == startEnd || outEnd + 258 <= outCap {
            switch state {
            case .done: return
            case .memberHeader:
                try readMemberHeader()
                state = .blockHeader
            case .memberTrailer:
                try readMemberTrailer()
                // Another member? gzip reads concatenated members as one stream.
                alignToByte()
                if try moreInput() {
                    var b = try byte()
                    if b == 0x1F { bitBuf = (bitBuf << 8) | 0x1F; bitCnt += 8; state = .memberHeader; continue }
                    while b == 0 { if !(try moreInput()) { break }; b = try byte() }
                    guard b == 0 else { throw TLError.data("trailing garbage after gzip data") }
                }
                state = .done
                return
            case .blockHeader:
                if lastBlock {
                    lastBlock = false
                    state = raw ? .done : .memberTrailer
                    if outEnd > startEnd || raw { return }
                    continue
                }
                lastBlock = try bits(1) == 1
                switch try bits(2) {
                case 0:
                    alignToByte()
                    let len = try bits(16), nlen = try bits(16)
                    guard len == (~nlen & 0xFFFF) else { throw TLError.data("invalid deflate data: stored block length check") }
                    state = .stored(len)
                case 1: lit = GzipReader.fixedLit; dist = GzipReader.fixedDist; state = .huffman
                case 2: try dynamicTables(); state = .huffman
                default: throw TLError.data("invalid deflate data: reserved block type")
                }
            case .stored(var left):
                while left > 0 && outEnd < outCap {
                    if bitCnt - overrun >= 8 {  // drain the bit buffer first
                        out[outEnd] = try byte(); outEnd += 1; left -= 1; continue
                    }
                    if inPos == inEnd { guard try fillInput() else { throw TLError.data("truncated gzip data in a stored block") } }
                    let n = min(left, outCap - outEnd, inEnd - inPos)
                    (out + outEnd).update(from: inBuf + inPos, count: n)
                    inPos += n; consumed += n; outEnd += n; left -= n
                }
                state = left == 0 ? .blockHeader : .stored(left)
                if left > 0 { return }
            case .huffman:
                while outEnd + 258 <= outCap {
                    let s = try decode(lit)
                    if s < 256 { out[outEnd] = UInt8(s); outEnd += 1; continue }
                    if s == 256 { state = .blockHeader; break }
                    let li = s - 257
                    guard li < 29 else { throw TLError.data("invalid deflate data: bad length code") }
                    let len = GzipReader.lenBase[li] + (try bits(GzipReader.lenExtra[li]))
                    let di = try decode(dist)
                    guard di < 30 else { throw TLError.data("invalid deflate data: bad distance code") }
                    let d = GzipReader.distBase[di] + (try bits(GzipReader.distExtra[di]))
                    guard d <= outEnd else { throw TLError.data("invalid deflate data: distance too far back") }
                    var from = outEnd - d
                    for _ in 0..<len { out[outEnd] = out[from]; outEnd += 1; from += 1 }
                }
                if case .huffman = state { return }
            }
        }
    }
}

/// Writes gzip: DEFLATE with fixed Huffman codes and greedy LZ77 matching (one hash candidate
/// per position). Simpler than zlib's dynamic codes; enough for IDX and similar data.
public final class GzipWriter: ByteWriter {
    let inner: ByteWriter
    var crc: UInt32 = 0
    var size: UInt32 = 0
    // pending input, with a 32 KiB history in front
    var buf: [UInt8] = []
    let block = 1 << 17
    var head = [Int32](repeating: -1, count: 1 << 15)
    var base = 0  // absolute position of buf[0]
    var bitBuf: UInt64 = 0
    var bitCnt = 0
    var outBytes: [UInt8] = []
    var finished = false

    public init(_ inner: ByteWriter) throws {
        self.inner = inner
        try inner.write([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 255])
    }

    public func write(_ p: UnsafeRawPointer, count: Int) throws {
        let b = UnsafeRawBufferPointer(start: p, count: count)
        crc = CRC32.update(crc, b)
        size &+= UInt32(truncatingIfNeeded: count)
        buf.append(contentsOf: b)
        if buf.count >= 32768 + block { try compress(final: false) }
    }

    @inline(__always) func put(_ v: Int, _ n: Int) {
        bitBuf |= UInt64(v) << UInt64(bitCnt); bitCnt += n
        while bitCnt >= 8 { outBytes.append(UInt8(truncatingIfNeeded: bitBuf)); bitBuf >>= 8; bitCnt -= 8 }
    }
    /// Huffman codes are sent most-significant bit first.
    @inline(__always) func putCode(_ code: Int, _ len: Int) {
        var r = 0
        for i in 0..<len { r |= ((code >> i) & 1) << (len - 1 - i) }
        put(r, len)
    }
    func putLiteral(_ s: Int) {
        switch s {
        case 0..<144: putCode(0x30 + s, 8)
        case 144..<256: putCode(0x190 + s - 144, 9)
        case 256..<280: putCode(s - 256, 7)
        default: putCode(0xC0 + s - 280, 8)
        }
    }

    /// Encodes buf[pos...] (all of it when `final`, else all but a 258-byte look-ahead) as one
    /// fixed-Huffman block, then keeps only the last 32 KiB as history.
    func compress(final: Bool) throws {
        var i = pos
        let end = final ? buf.count : buf.count - 258
        put(final ? 1 : 0, 1); put(1, 2)  // BFINAL, BTYPE=01 (fixed Huffman)
        buf.withUnsafeBufferPointer { b in
            while i < end {
                var matchLen = 0, matchDist = 0
                if i + 2 < b.count {
                    let h = (Int(b[i]) << 10 ^ Int(b[i + 1]) << 5 ^ Int(b[i + 2])) & 0x7FFF
                    let cand = Int(head[h]) - base
                    head[h] = Int32(truncatingIfNeeded: i + base)
                    if cand >= 0 && cand < i && i - cand <= 32768 {
                        let maxL = min(258, b.count - i)
                        var l = 0
                        while l < maxL && b[cand + l] == b[i + l] { l += 1 }
                        if l >= 3 { matchLen = l; matchDist = i - cand }
                    }
                }
                if matchLen >= 3 {
                    var li = 28
                    while GzipReader.lenBase[li] > matchLen { li -= 1 }
                    putLiteral(257 + li); put(matchLen - GzipReader.lenBase[li], GzipReader.lenExtra[li])
                    var di = 29
                    while GzipReader.distBase[di] > matchDist { di -= 1 }
                    putCode(di, 5); put(matchDist - GzipReader.distBase[di], GzipReader.distExtra[di])
                    i += matchLen
                } else {
                    putLiteral(Int(b[i])); i += 1
                }
            }
        }
        putLiteral(256)
        if final && bitCnt > 0 { outBytes.append(UInt8(truncatingIfNeeded: bitBuf)); bitBuf = 0; bitCnt = 0 }
        try inner.write(outBytes)
        outBytes.removeAll(keepingCapacity: true)
        pos = i
        let drop = max(0, pos - 32768)
        if drop > 0 { buf.removeFirst(drop); base += drop; pos -= drop }
    }
    var pos = 0

    /// Writes the last block and the gzip trailer (CRC-32 and length).
    public func finish() throws {
        precondition(!finished)
        finished = true
        try compress(final: true)
        var t = [UInt8](repeating: 0, count: 8)
        put32(&t, 0, crc); put32(&t, 4, size)
        try inner.write(t)
    }
}
