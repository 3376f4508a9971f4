/// safetensors (Hugging Face's format for state dicts): an 8-byte little-endian header length
/// N, N bytes of JSON `{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
/// "__metadata__": {"key": "string", ...}}`, then the data, each tensor little-endian in C
/// order at its offsets from the end of the header. The dtype names are tl's.
public enum Safetensors {
    /// A file starts with a plausible header length and then "{".
    public static func looksLike(_ head: [UInt8]) -> Bool {
        guard head.count >= 9, head[8] == UInt8(ascii: "{") else { return false }
        let n = head[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        return n >= 2 && n < 100 << 20
    }

    /// The tensors of a mapped file, in data order, viewing the file where their offset is
    /// aligned to their item size and copied where not; and the metadata.
    public static func read(_ f: MappedFile) throws -> ([Record], JSON?) {
        let b = f.bytes
        guard b.count >= 8 else { throw TLError.data("safetensors: shorter than its 8-byte header length") }
        let n = Int(UInt64(littleEndian: b.loadUnaligned(as: UInt64.self)))
        guard n <= b.count - 8 else { throw TLError.data("safetensors: header of \(n) bytes, file of \(b.count)") }
        let json = try annotating(file: f.name, location: "header") { try JSON.parse(UnsafeRawBufferPointer(rebasing: b[8..<(8 + n)])) }
        guard case .object(let entries) = json else { throw TLError.data("safetensors: the header is not a JSON object", file: f.name) }
        let dataStart = 8 + n, dataLen = b.count - dataStart
        var records: [(Int, Record)] = []
        var meta: JSON? = nil
        for (name, e) in entries {
            if name == "__metadata__" {
                // String values that hold JSON (tl writes its stream metadata so) are parsed back.
                if case .object(let o) = e { meta = .object(o.mapValues { v in v.string.flatMap { try? JSON.parse($0) } ?? v }) }
                continue
            }
            let loc = "tensor '\(name)'"
            guard let dn = e["dtype"]?.string, let dt = DType(name: dn) else {
                throw TLError.data("unknown dtype \(e["dtype"]?.serialized ?? "(none)")", file: f.name, location: loc)
            }
            guard let shape = e["shape"]?.array?.map({ $0.int ?? -1 }), let off = e["data_offsets"]?.array?.compactMap({ $0.int }), off.count == 2 else {
                throw TLError.data("no shape or data_offsets", file: f.name, location: loc)
            }
            let bytes = try annotating(file: f.name, location: loc) { try Tensor.checkedByteCount(dtype: dt, shape: shape) }
            guard off[0] >= 0, off[1] >= off[0], off[1] <= dataLen, off[1] - off[0] == bytes else {
                throw TLError.data("data_offsets \(off) do not fit \(dt.shortName) \(shapeString(shape)) in \(dataLen) bytes of data", file: f.name, location: loc)
            }
            let at = dataStart + off[0]
            let t: Tensor
            if at % dt.size == 0 {
                t = Tensor(dtype: dt, shape: shape, storage: Storage(borrowing: f.base + at, byteCount: bytes, owner: f))
            } else {
                t = try Tensor(zeros: dt, shape: shape)
                if bytes > 0 { t.rawPointer.copyMemory(from: f.base + at, byteCount: bytes) }
            }
            records.append((off[0], Record(name: name, tensor: t)))
        }
        return (records.sorted { ($0.0, $0.1.name) < ($1.0, $1.1.name) }.map(\.1), meta)
    }

    /// Writes tensors (names unique) with metadata values as strings (non-string JSON values are
    /// serialized), the header padded with spaces to a multiple of 8 bytes.
    public static func write(_ tensors: [(String, Tensor)], meta: JSON?, to out: ByteWriter) throws {
        var header: [String: JSON] = [:], offset = 0
        for (name, t) in tensors {
            guard header[name] == nil, name != "__metadata__" else { throw TLError.data("safetensors: the name '\(name)' twice or reserved") }
            header[name] = ["dtype": .string(t.dtype.rawValue), "shape": .array(t.shape.map { .number(Double($0)) }),
                            "data_offsets": .array([.number(Double(offset)), .number(Double(offset + t.byteCount))])]
            offset += t.byteCount
        }
        if case .object(let m)? = meta, !m.isEmpty {
            header["__metadata__"] = .object(m.mapValues { $0.string.map { .string($0) } ?? .string($0.serialized) })
        }
        var h = Array(JSON.object(header).serialized.utf8)
        while h.count % 8 != 0 { h.append(0x20) }
        var len = UInt64(h.count).littleEndian
        try withUnsafeBytes(of: &len) { try out.write($0.baseAddress!, count: 8) }
        try out.write(h)
        for (_, t) in tensors where t.byteCount > 0 { try out.write(t.rawPointer, count: t.byteCount) }
    }
}

/// A safetensors file as a record reader (tensors in data order).
public final class SafetensorsReader: RecordReader {
    public let fileName: String
    public let streamMeta: JSON?
    var records: [Record]
    public init(_ f: MappedFile) throws {
        fileName = f.name
        (records, streamMeta) = try Safetensors.read(f)
        records.reverse()
    }
    public func next() throws -> Record? { records.popLast() }
}
