/// IDX, the format of MNIST and Fashion-MNIST: magic `00 00 TT ND`, ND big-endian u32
/// dimensions, big-endian data. TT: 08 u8, 09 i8, 0B i16, 0C i32, 0D f32, 0E f64.
public enum IDX {
    static let codes: [UInt8: DType] = [0x08: .u8, 0x09: .i8, 0x0B: .i16, 0x0C: .i32, 0x0D: .f32, 0x0E: .f64]

    public static func looksLikeIDX(_ head: [UInt8]) -> Bool {
        head.count >= 4 && head[0] == 0 && head[1] == 0 && codes[head[2]] != nil && head[3] >= 1 && head[3] <= 32
    }

    /// Swaps the bytes of each element in place (big-endian <-> little-endian).
    static func byteSwap(_ t: Tensor) {
        let n = t.count, s = t.dtype.size
        let p = t.rawPointer
        switch s {
        case 2: let q = p.assumingMemoryBound(to: UInt16.self); for i in 0..<n { q[i] = q[i].byteSwapped }
        case 4: let q = p.assumingMemoryBound(to: UInt32.self); for i in 0..<n { q[i] = q[i].byteSwapped }
        case 8: let q = p.assumingMemoryBound(to: UInt64.self); for i in 0..<n { q[i] = q[i].byteSwapped }
        default: break
        }
    }

    /// Writes `t` as IDX. Only the six IDX element types can be written.
    public static func write(_ t: Tensor, to out: ByteWriter) throws {
        guard let code = codes.first(where: { $0.value == t.dtype })?.key else {
            throw TLError.usage("IDX cannot hold \(t.dtype.shortName); use --dtype with one of u8, i8, i16, i32, f32, f64")
        }
        guard t.rank >= 1, t.rank <= 255 else { throw TLError.usage("IDX needs a tensor of rank 1 or more") }
        var h: [UInt8] = [0, 0, code, UInt8(t.rank)]
        for d in t.shape {
            guard d <= Int(UInt32.max) else { throw TLError.usage("dimension \(d) is too large for IDX") }
            h += [UInt8(d >> 24 & 255), UInt8(d >> 16 & 255), UInt8(d >> 8 & 255), UInt8(d & 255)]
        }
        try out.write(h)
        if t.dtype.size == 1 { try out.write(t.rawPointer, count: t.byteCount); return }
        // Swap a chunk at a time so memory stays bounded.
        let rowsPer = max(1, (1 << 20) / max(1, t.rowBytes))
        var r = 0
        while r < t.rows {
            let c = t.rows(r..<min(t.rows, r + rowsPer)).copy()
            byteSwap(c)
            try out.write(c.rawPointer, count: c.byteCount)
            r += rowsPer
        }
    }
}

/// Reads an IDX stream in chunks of rows (bounded memory). The tensor is named `y` when it
/// is one-dimensional (a label file) and `x` otherwise, unless a name is given.
public final class IDXReader: RecordReader {
    public let fileName: String
    public var streamMeta: JSON? { nil }
    let input: ByteReader
    public let dtype: DType
    public let shape: [Int]
    public let name: String
    var row = 0
    var chunk = 0
    let chunkRows: Int
    /// The exact size of the whole input when known (regular uncompressed files), checked
    /// against the header so a lying header is caught before any output.
    public init(_ input: ByteReader, fileName: String, knownSize: Int? = nil, name: String? = nil, chunkBytes: Int = 4 << 20) throws {
        self.input = input; self.fileName = fileName
        let h = try annotating(file: fileName, location: "header") { try input.readBytes(4, what: "IDX header") }
        guard IDX.looksLikeIDX(h), let dt = IDX.codes[h[2]] else {
            throw TLError.data("not an IDX file (magic \(hex(h)))", file: fileName, location: "header")
        }
        dtype = dt
        let dims = try annotating(file: fileName, location: "header") { try input.readBytes(4 * Int(h[3]), what: "IDX dimensions") }
        var s: [Int] = []
        for i in 0..<Int(h[3]) {
            s.append(Int(dims[4 * i]) << 24 | Int(dims[4 * i + 1]) << 16 | Int(dims[4 * i + 2]) << 8 | Int(dims[4 * i + 3]))
        }
        shape = s
        let bytes = try annotating(file: fileName, location: "header") { try Tensor.checkedByteCount(dtype: dt, shape: s) }
        if let k = knownSize {
            let expect = 4 + 4 * s.count + bytes
            guard k == expect else {
                throw TLError.data("header says \(shapeString(s)) \(dt.shortName) (\(expect) bytes) but the file has \(k) bytes",
                                   file: fileName, location: "header")
            }
        }
        self.name = name ?? (s.count == 1 ? "y" : "x")
        let rb = max(1, s.dropFirst().reduce(dt.size, *))
        chunkRows = max(1, chunkBytes / rb)
    }

    public func next() throws -> Record? {
        guard row < shape[0] || (shape[0] == 0 && chunk == 0) else {
            // Anything after the declared data means the header lies.
            var b: UInt8 = 0
            let extra = try input.read(into: &b, count: 1)
            if extra > 0 { throw TLError.data("more data than the header's \(shapeString(shape)) declares", file: fileName, location: "after row \(row)") }
            return nil
        }
        let n = min(chunkRows, shape[0] - row)
        var s = shape; s[0] = n
        let t = try Tensor(zeros: dtype, shape: s)
        try annotating(file: fileName, location: "row \(row)") {
            try input.readExactly(into: t.rawPointer, count: t.byteCount, what: "IDX data (the header declares \(shape[0]) rows)")
        }
        IDX.byteSwap(t)
        row += n; chunk += 1
        return Record(name: name, tensor: t)
    }
}
