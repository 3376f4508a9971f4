import Glibc

/// The tl tensor stream format, version 1 (tl-format(5)).
///
/// Stream := Segment+ ; Segment := H (T | ancillary)* E. Every record is a 32-byte header, a
/// JSON region padded with spaces so that header + JSON is a multiple of 64 bytes, the payload,
/// and zero bytes up to the next multiple of 64: payloads start 64-byte aligned in a file.
public enum TLT {
    public static let magic: [UInt8] = [0x89, 0x54, 0x4C, 0x54]
    public static let version: UInt16 = 1
    public static let headerSize = 32
    public static let alignment = 64
    /// Readers refuse JSON regions larger than this (16 MiB).
    public static let maxJSON = 16 << 20

    public struct Header: Equatable {
        public var kind: UInt8
        public var jsonLen: Int
        public var jsonCRC: UInt32
        public var payloadLen: Int
        public var payloadCRC: UInt32

        /// Padding after the payload so the record ends on a 64-byte boundary.
        public var padding: Int { (TLT.alignment - payloadLen % TLT.alignment) % TLT.alignment }
        public var kindName: String { String(UnicodeScalar(kind)) }

        public func encoded() -> [UInt8] {
            var b = [UInt8](repeating: 0, count: 32)
            b[0..<4] = TLT.magic[0..<4]
            b[4] = kind; b[5] = 0
            put16(&b, 6, TLT.version)
            put32(&b, 8, UInt32(jsonLen))
            put32(&b, 12, jsonCRC)
            put64(&b, 16, UInt64(payloadLen))
            put32(&b, 24, payloadCRC)
            put32(&b, 28, b.withUnsafeBytes { CRC32.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<28])) })
            return b
        }

        /// Parses and checks a 32-byte record header: magic, header CRC, version, flags, kind,
        /// JSON length (multiple-of-64 rule and the 16 MiB cap).
        public static func decode(_ b: UnsafeRawBufferPointer) throws -> Header {
            precondition(b.count >= 32)
            guard b[0] == 0x89, b[1] == 0x54, b[2] == 0x4C, b[3] == 0x54 else {
                throw TLError.data("bad magic \(hex(b[0..<4])) (not a tl-format stream, or misaligned)")
            }
            let crc = b.loadUnaligned(fromByteOffset: 28, as: UInt32.self)
            guard CRC32.checksum(UnsafeRawBufferPointer(rebasing: b[0..<28])) == crc else {
                throw TLError.data("record header checksum mismatch (corrupted header)")
            }
            let version = b.loadUnaligned(fromByteOffset: 6, as: UInt16.self)
            guard version == TLT.version else {
                throw TLError.data("format version \(version) is not supported (this reader knows version 1)")
            }
            guard b[5] == 0 else { throw TLError.data("record flags \(b[5]) are not zero (unsupported feature)") }
            let kind = b[4]
            let isUpper = kind >= 0x41 && kind <= 0x5A, isLower = kind >= 0x61 && kind <= 0x7A
            guard isUpper || isLower else { throw TLError.data("invalid record kind byte \(kind)") }
            if isUpper && kind != 0x48 && kind != 0x54 && kind != 0x45 {
                throw TLError.data("unknown critical record kind '\(String(UnicodeScalar(kind)))'")
            }
            let jl = Int(b.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
            guard (32 + jl) % 64 == 0 else { throw TLError.data("JSON length \(jl) breaks 64-byte alignment") }
            guard jl <= TLT.maxJSON else { throw TLError.data("JSON length \(jl) is over the 16 MiB limit") }
            let pl = b.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
            guard pl < UInt64(1) << 62 else { throw TLError.data("payload length \(pl) is absurd") }
            return Header(kind: kind, jsonLen: jl, jsonCRC: b.loadUnaligned(fromByteOffset: 12, as: UInt32.self),
                          payloadLen: Int(pl), payloadCRC: b.loadUnaligned(fromByteOffset: 24, as: UInt32.self))
        }
    }

    /// The JSON region for `json`, padded with spaces so 32 + length is a multiple of 64.
    static func paddedJSON(_ json: JSON) -> [UInt8] {
        var b = Array(json.serialized.utf8)
        let total = (32 + b.count + 63) / 64 * 64 - 32
        b.append(contentsOf: [UInt8](repeating: 0x20, count: total - b.count))
        return b
    }

    /// Parsed JSON of a T record, checked against the payload length.
    struct TensorInfo {
        var name: String
        var dtype: DType
        var shape: [Int]
        var meta: JSON?
    }

    static func tensorInfo(_ json: JSON, payloadLen: Int) throws -> TensorInfo {
        guard case .object(let o) = json else { throw TLError.data("tensor JSON is not an object") }
        guard let name = o["name"]?.string, !name.isEmpty else { throw TLError.data("tensor has no name") }
        guard let ds = o["dtype"]?.string else { throw TLError.data("tensor '\(name)' has no dtype") }
        guard let dtype = DType(rawValue: ds) else { throw TLError.data("tensor '\(name)': unknown dtype \"\(ds)\"") }
        guard let sa = o["shape"]?.array else { throw TLError.data("tensor '\(name)' has no shape") }
        guard sa.count <= 32 else { throw TLError.data("tensor '\(name)': rank \(sa.count) is over 32") }
        var shape: [Int] = []
        for d in sa {
            guard let v = d.int, v >= 0 else { throw TLError.data("tensor '\(name)': bad dimension in shape \(JSON.array(sa).serialized)") }
            shape.append(v)
        }
        let need: Int
        do { need = try Tensor.checkedByteCount(dtype: dtype, shape: shape) }
        catch let e as TLError { throw TLError.data("tensor '\(name)': \(e.message)") }
        guard need == payloadLen else {
            throw TLError.data("tensor '\(name)': shape \(shape) of \(dtype.shortName) needs \(need) bytes but the payload has \(payloadLen)")
        }
        let meta = o["meta"]
        if let m = meta, m.object == nil { throw TLError.data("tensor '\(name)': meta is not an object") }
        return TensorInfo(name: name, dtype: dtype, shape: shape, meta: meta)
    }
}

func hex<C: Collection>(_ b: C) -> String where C.Element == UInt8 {
    b.map { let s = String($0, radix: 16); return s.count == 1 ? "0" + s : s }.joined(separator: " ")
}
@inline(__always) func put16(_ b: inout [UInt8], _ o: Int, _ v: UInt16) { for i in 0..<2 { b[o + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) } }
@inline(__always) func put32(_ b: inout [UInt8], _ o: Int, _ v: UInt32) { for i in 0..<4 { b[o + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) } }
@inline(__always) func put64(_ b: inout [UInt8], _ o: Int, _ v: UInt64) { for i in 0..<8 { b[o + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) } }

/// One record of a tensor stream: a named tensor (or a chunk of one, along axis 0) and its
/// optional metadata object.
public struct Record {
    public var name: String
    public var tensor: Tensor
    public var meta: JSON?
    /// The CRC-32 of the payload when the reader verified it (lets `cat` pass records through
    /// without computing it twice).
    public var payloadCRC: UInt32?
    public init(name: String, tensor: Tensor, meta: JSON? = nil, payloadCRC: UInt32? = nil) {
        self.name = name; self.tensor = tensor; self.meta = meta; self.payloadCRC = payloadCRC
    }
}

/// A source of records: any format tl reads presents itself this way.
public protocol RecordReader: AnyObject {
    /// The file name as given ("-" for stdin), for error messages.
    var fileName: String { get }
    /// Stream-level metadata (the `meta` of the first H record; class names and the like).
    var streamMeta: JSON? { get }
    /// The next record, or nil at the end of a well-formed input.
    func next() throws -> Record?
}

/// The bookkeeping both TLT readers share: which segment state we are in, the chunk rule
/// (same name = same dtype and trailing dimensions) and the E record's count.
struct TLTSegmentState {
    enum Phase { case start, inSegment, betweenSegments }
    var phase = Phase.start
    var recordsInSegment = 0
    var index = -1  // record index in the stream (0-based), for messages
    var chunkShapes: [String: (DType, [Int])] = [:]
    var streamMeta: JSON?
    var segments = 0

    /// Handles an H or E record's JSON, or checks a T record's continuity; returns true when
    /// the caller should produce the T record.
    mutating func accept(_ h: TLT.Header, json: JSON, info: TLT.TensorInfo?) throws {
        switch h.kind {
        case 0x48:  // H
            guard phase != .inSegment else { throw TLError.data("stream header (H) inside a segment: the previous segment has no end record") }
            guard json["format"]?.string == "tlt" else { throw TLError.data("stream header does not say format \"tlt\"") }
            guard h.payloadLen == 0 else { throw TLError.data("stream header has a payload") }
            if segments == 0, let m = json["meta"] { streamMeta = m }
            phase = .inSegment; recordsInSegment = 0; segments += 1
        case 0x45:  // E
            guard phase == .inSegment else { throw TLError.data("end record (E) outside a segment") }
            guard h.payloadLen == 0 else { throw TLError.data("end record has a payload") }
            if let n = json["records"] {
                guard n.int == recordsInSegment else {
                    throw TLError.data("end record counts \(n.serialized) tensor records, the segment has \(recordsInSegment)")
                }
            }
            phase = .betweenSegments
        case 0x54:  // T
            guard phase == .inSegment else { throw TLError.data("tensor record before the stream header (H)") }
            let i = info!
            let tail = Array(i.shape.dropFirst())
            if let (d, t) = chunkShapes[i.name] {
                guard d == i.dtype, t == tail, !i.shape.isEmpty else {
                    throw TLError.data("chunk of '\(i.name)' is \(i.dtype.shortName) \(i.shape), earlier chunks are \(d.shortName) [*\(t.map { ", \($0)" }.joined())]")
                }
            } else { chunkShapes[i.name] = (i.dtype, tail) }
            recordsInSegment += 1
        default:
            guard phase == .inSegment else { throw TLError.data("ancillary record outside a segment") }
        }
    }

    func checkEnd() throws {
        switch phase {
        case .start: throw TLError.data("empty input: no tl-format stream header")
        case .inSegment: throw TLError.data("truncated stream: input ended before the end record (E)")
        case .betweenSegments: return
        }
    }
}

/// Reads a TLT stream from a pipe or file record by record with bounded memory: each record is
/// read, checked (header CRC, JSON CRC, payload CRC, shape against payload length, zero
/// padding) and handed out before the next is read.
public final class TLTStreamReader: RecordReader {
    public let fileName: String
    let input: ByteReader
    var state = TLTSegmentState()
    /// Whether to check payload CRCs (JSON and header CRCs are always checked).
    public var verifyPayload = true
    public var streamMeta: JSON? { state.streamMeta }
    /// A single record larger than this is refused before allocating (default: physical memory).
    public var maxRecordBytes: Int = physicalMemory()

    public init(_ input: ByteReader, fileName: String) throws {
        self.input = input; self.fileName = fileName
        try annotating(file: fileName, location: "record 0") { try readUntilFirstTensorOrHeader() }
    }

    var pending: Record?
    var pendingDone = false
    /// The buffer of the last record handed out. When the caller has let go of it (the usual
    /// streaming loop), the next record of no greater size is read into it: no fresh pages to
    /// fault in and zero per chunk.
    var spare: Storage?

    // Reads the H record eagerly so streamMeta is known before the first next().
    func readUntilFirstTensorOrHeader() throws {
        if let r = try readRecord() { pending = r } else { pendingDone = true }
    }

    public func next() throws -> Record? {
        if let p = pending { pending = nil; return p }
        if pendingDone { pendingDone = false; return nil }
        return try annotating(file: fileName, location: "record \(state.index + 1)") { try readRecord() }
    }

    func readRecord() throws -> Record? {
        var hb = [UInt8](repeating: 0, count: 32)
        while true {
            let got = try hb.withUnsafeMutableBytes { try input.readFully(into: $0.baseAddress!, count: 32) }
            if got == 0 { try state.checkEnd(); return nil }
            state.index += 1
            let loc = "record \(state.index)"
            let r: Record? = try annotating(file: fileName, location: loc) {
                guard got == 32 else { throw TLError.data("truncated record header: \(got) of 32 bytes") }
                let h = try hb.withUnsafeBytes { try TLT.Header.decode($0) }
                var jb = try input.readBytes(h.jsonLen, what: "JSON region")
                guard jb.withUnsafeBytes({ CRC32.checksum($0) }) == h.jsonCRC else { throw TLError.data("JSON checksum mismatch") }
                let isAncillary = h.kind >= 0x61
                if isAncillary {
                    try state.accept(h, json: .null, info: nil)
                    try input.skip(h.payloadLen + h.padding, what: "ancillary record")
                    return nil
                }
                let json = try jb.withUnsafeMutableBytes { try JSON.parse(UnsafeRawBufferPointer($0)) }
                var info: TLT.TensorInfo? = nil
                if h.kind == 0x54 {
                    info = try TLT.tensorInfo(json, payloadLen: h.payloadLen)
                    guard h.payloadLen <= maxRecordBytes else {
                        throw TLError.data("record claims \(h.payloadLen) bytes, more than this machine's memory")
                    }
                }
                try state.accept(h, json: json, info: info)
                guard let i = info else {
                    guard h.payloadLen == 0 else { throw TLError.data("record has an unexpected payload") }
                    return nil
                }
                let t: Tensor
                if spare != nil, isKnownUniquelyReferenced(&spare), let s = spare, s.byteCount >= h.payloadLen, s.byteCount <= 2 * h.payloadLen {
                    t = Tensor(dtype: i.dtype, shape: i.shape, storage: s)
                } else {
                    spare = nil
                    t = try Tensor(zeros: i.dtype, shape: i.shape)
                }
                // Read and check in 1 MiB pieces, so the checksum runs on bytes still in cache.
                var crc: UInt32 = 0, at = 0
                while at < h.payloadLen {
                    let n = min(1 << 20, h.payloadLen - at)
                    try input.readExactly(into: t.rawPointer + at, count: n, what: "payload of '\(i.name)'")
                    if verifyPayload { crc = CRC32.update(crc, UnsafeRawBufferPointer(start: t.rawPointer + at, count: n)) }
                    at += n
                }
                spare = t.storage
                if verifyPayload {
                    guard crc == h.payloadCRC else { throw TLError.data("payload checksum mismatch in '\(i.name)'") }
                }
                if h.padding > 0 {
                    var pad = [UInt8](repeating: 0, count: h.padding)
                    try pad.withUnsafeMutableBytes { try input.readExactly(into: $0.baseAddress!, count: h.padding, what: "record padding") }
                    guard pad.allSatisfy({ $0 == 0 }) else { throw TLError.data("non-zero padding after the payload") }
                }
                jb.removeAll()
                return Record(name: i.name, tensor: t, meta: i.meta, payloadCRC: verifyPayload ? h.payloadCRC : nil)
            }
            if let r = r { return r }
        }
    }
}

/// Reads a TLT file through a memory map: tensors point into the mapping (no copies). The whole
/// file is walked header to header at open, so structural errors surface before any output.
public final class TLTMappedReader: RecordReader {
    public let fileName: String
    public let file: MappedFile
    public private(set) var records: [Record] = []
    var cursor = 0
    var state = TLTSegmentState()
    public var streamMeta: JSON? { state.streamMeta }

    public init(_ file: MappedFile, verifyPayload: Bool = true) throws {
        self.file = file; self.fileName = file.name
        let b = file.bytes
        var off = 0
        while off < b.count {
            state.index += 1
            let loc = "record \(state.index)"
            try annotating(file: fileName, location: loc) {
                guard b.count - off >= 32 else { throw TLError.data("truncated record header: \(b.count - off) of 32 bytes") }
                let h = try TLT.Header.decode(UnsafeRawBufferPointer(rebasing: b[off..<off + 32]))
                let jStart = off + 32
                guard b.count - jStart >= h.jsonLen else { throw TLError.data("truncated JSON region") }
                let jb = UnsafeRawBufferPointer(rebasing: b[jStart..<jStart + h.jsonLen])
                guard CRC32.checksum(jb) == h.jsonCRC else { throw TLError.data("JSON checksum mismatch") }
                let pStart = jStart + h.jsonLen
                guard b.count - pStart >= h.payloadLen + h.padding else {
                    throw TLError.data("truncated payload: record needs \(h.payloadLen + h.padding) bytes, \(b.count - pStart) remain")
                }
                let next = pStart + h.payloadLen + h.padding
                defer { off = next }
                if h.kind >= 0x61 { try state.accept(h, json: .null, info: nil); return }
                let json = try JSON.parse(jb)
                var info: TLT.TensorInfo? = nil
                if h.kind == 0x54 { info = try TLT.tensorInfo(json, payloadLen: h.payloadLen) }
                try state.accept(h, json: json, info: info)
                guard let i = info else { return }
                let payload = UnsafeRawBufferPointer(rebasing: b[pStart..<pStart + h.payloadLen])
                if verifyPayload {
                    guard CRC32.checksum(payload) == h.payloadCRC else { throw TLError.data("payload checksum mismatch in '\(i.name)'") }
                    // Checking read every page; let them go, so opening a large file does not
                    // hold it all in memory (they stay in the page cache and map back on use).
                    if h.payloadLen >= 1 << 20 { file.release(payload.baseAddress!, count: h.payloadLen) }
                }
                for k in 0..<h.padding where b[pStart + h.payloadLen + k] != 0 { throw TLError.data("non-zero padding after the payload") }
                let storage = Storage(borrowing: file.base + pStart, byteCount: h.payloadLen, owner: file)
                records.append(Record(name: i.name, tensor: Tensor(dtype: i.dtype, shape: i.shape, storage: storage),
                                      meta: i.meta, payloadCRC: verifyPayload ? h.payloadCRC : nil))
            }
        }
        try annotating(file: fileName, location: "record \(state.index + 1)") { try state.checkEnd() }
    }

    public func next() throws -> Record? {
        guard cursor < records.count else { return nil }
        cursor += 1
        return records[cursor - 1]
    }
}

/// Writes a TLT stream: `H` at creation, one `T` per `write`, `E` at `finish()`. Every record
/// is flushed as it is written, so a consumer downstream of a pipe can start at once.
public final class TLTWriter {
    let out: ByteWriter
    var records = 0
    var finished = false
    var chunkShapes: [String: (DType, [Int])] = [:]

    /// `producer` (e.g. "tl-tensor 0.1.0") and `meta` go into the H record when given.
    public init(_ out: ByteWriter, producer: String? = nil, meta: JSON? = nil) throws {
        self.out = out
        var h: [String: JSON] = ["format": "tlt", "version": 1]
        if let p = producer { h["producer"] = .string(p) }
        if let m = meta { h["meta"] = m }
        try writeRecord(kind: 0x48, json: .object(h), payload: nil, crc: 0)
    }

    func writeRecord(kind: UInt8, json: JSON, payload: UnsafeRawBufferPointer?, crc: UInt32?) throws {
        let jb = TLT.paddedJSON(json)
        let plen = payload?.count ?? 0
        let pcrc = crc ?? payload.map { CRC32.checksum($0) } ?? 0
        let h = TLT.Header(kind: kind, jsonLen: jb.count, jsonCRC: CRC32.checksum(jb), payloadLen: plen, payloadCRC: plen == 0 ? 0 : pcrc)
        try out.write(h.encoded())
        try out.write(jb)
        if let p = payload, plen > 0 { try out.write(p.baseAddress!, count: plen) }
        try out.writeZeros(h.padding)
        if let o = out as? Output { try o.flush() }
    }

    /// Writes one tensor record (a whole tensor, or the next chunk of a tensor already written
    /// under the same name). `payloadCRC`, when known from a verified read, saves recomputing it.
    public func write(name: String, tensor: Tensor, meta: JSON? = nil, payloadCRC: UInt32? = nil) throws {
        precondition(!finished)
        guard !name.isEmpty else { throw TLError(.software, "tensor name is empty") }
        let tail = Array(tensor.shape.dropFirst())
        if let (d, t) = chunkShapes[name] {
            guard d == tensor.dtype, t == tail, tensor.rank >= 1 else {
                throw TLError.data("chunk of '\(name)' is \(tensor.dtype.shortName) \(tensor.shape), earlier chunks are \(d.shortName) [*\(t.map { ", \($0)" }.joined())]")
            }
        } else { chunkShapes[name] = (tensor.dtype, tail) }
        var j: [String: JSON] = ["name": .string(name), "dtype": .string(tensor.dtype.rawValue),
                                 "shape": .array(tensor.shape.map { .number(Double($0)) })]
        if let m = meta { j["meta"] = m }
        try writeRecord(kind: 0x54, json: .object(j), payload: tensor.rawBytes, crc: payloadCRC)
        records += 1
    }

    /// Writes the end record. A stream without it is truncated to every reader.
    public func finish() throws {
        precondition(!finished)
        finished = true
        try writeRecord(kind: 0x45, json: ["records": .number(Double(records))], payload: nil, crc: 0)
    }
}

func physicalMemory() -> Int {
    let pages = sysconf(Int32(_SC_PHYS_PAGES)), size = sysconf(Int32(_SC_PAGESIZE))
    return pages > 0 && size > 0 ? pages * size : Int.max
}
