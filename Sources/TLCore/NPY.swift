/// NumPy `.npy` (format versions 1.0, 2.0 and 3.0): magic `\x93NUMPY`, a version, a header
/// length (u16 for 1.0, u32 after), a Python dict literal with exactly `descr`, `fortran_order`
/// and `shape`, then the data. The dict is parsed, not read at fixed offsets.
public enum NPY {
    public static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]

    public struct Header {
        public var dtype: DType
        public var bigEndian: Bool
        public var fortranOrder: Bool
        public var shape: [Int]
        /// Bytes before the data.
        public var dataOffset: Int
    }

    /// Reads the header from `input` (which must be at the start of the file).
    public static func readHeader(_ input: ByteReader) throws -> Header {
        let pre = try input.readBytes(8, what: "npy preamble")
        guard Array(pre[0..<6]) == magic else { throw TLError.data("not a .npy file (bad magic)") }
        let major = pre[6]
        guard major >= 1 && major <= 3 else { throw TLError.data(".npy format version \(major).\(pre[7]) is not supported") }
        var len: Int
        var pos = 8
        if major == 1 {
            let b = try input.readBytes(2, what: "npy header length")
            len = Int(b[0]) | Int(b[1]) << 8; pos += 2
        } else {
            let b = try input.readBytes(4, what: "npy header length")
            len = Int(b[0]) | Int(b[1]) << 8 | Int(b[2]) << 16 | Int(b[3]) << 24; pos += 4
        }
        guard len <= 1 << 20 else { throw TLError.data(".npy header length \(len) is absurd") }
        let hb = try input.readBytes(len, what: "npy header")
        guard let text = String(validating: hb, as: UTF8.self) else { throw TLError.data(".npy header is not valid UTF-8") }
        var h = try parseDict(text)
        h.dataOffset = pos + len
        return h
    }

    /// Parses `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }` in any key order.
    static func parseDict(_ text: String) throws -> Header {
        var s = Substring(text)
        func fail(_ m: String) -> TLError { TLError.data(".npy header: \(m): \(text.prefix(120))") }
        func space() { while let c = s.first, c == " " || c == "\n" || c == "\t" || c == "\r" { s.removeFirst() } }
        func expect(_ c: Character) throws { space(); guard s.first == c else { throw fail("expected '\(c)'") }; s.removeFirst() }
        func str() throws -> String {
            space()
            guard let q = s.first, q == "'" || q == "\"" else { throw fail("expected a string") }
            s.removeFirst()
            guard let end = s.firstIndex(of: q) else { throw fail("unterminated string") }
            let v = String(s[..<end]); s = s[s.index(after: end)...]
            return v
        }
        var descr: String?, fortran: Bool?, shape: [Int]?
        try expect("{")
        while true {
            space()
            if s.first == "}" { s.removeFirst(); break }
            let key = try str()
            try expect(":")
            space()
            switch key {
            case "descr":
                if s.first == "[" { throw fail("structured dtypes are not supported") }
                descr = try str()
            case "fortran_order":
                if s.hasPrefix("True") { fortran = true; s = s.dropFirst(4) }
                else if s.hasPrefix("False") { fortran = false; s = s.dropFirst(5) }
                else { throw fail("fortran_order is not True or False") }
            case "shape":
                try expect("(")
                var dims: [Int] = []
                while true {
                    space()
                    if s.first == ")" { s.removeFirst(); break }
                    var digits = ""
                    while let c = s.first, c.isASCII, c.isNumber { digits.append(c); s.removeFirst() }
                    if s.first == "L" { s.removeFirst() }  // Python 2 longs
                    guard let d = Int(digits) else { throw fail("bad dimension in shape") }
                    dims.append(d)
                    space()
                    if s.first == "," { s.removeFirst() } else if s.first != ")" { throw fail("bad shape tuple") }
                }
                guard dims.count <= 32 else { throw fail("rank over 32") }
                shape = dims
            default: throw fail("unexpected key '\(key)'")
            }
            space()
            if s.first == "," { s.removeFirst() } else if s.first != "}" { throw fail("expected ',' or '}'") }
        }
        guard let d = descr, let f = fortran, let sh = shape else { throw fail("missing descr, fortran_order or shape") }
        var desc = d
        var big = false
        if desc.first == ">" {
            big = true; desc = "<" + desc.dropFirst()
        }
        guard let dt = DType(numpyDescr: desc) else { throw fail("dtype '\(d)' is not supported") }
        if dt.size == 1 { big = false }
        return Header(dtype: dt, bigEndian: big, fortranOrder: f, shape: sh, dataOffset: 0)
    }

    /// The header bytes for `dtype` and `shape` (C order, little-endian), padded with spaces and a
    /// newline to a multiple of 64 bytes, version 1.0 when the header fits in 65535 bytes.
    public static func header(dtype: DType, shape: [Int]) -> [UInt8] {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        let dict = "{'descr': '\(dtype.numpyDescr)', 'fortran_order': False, 'shape': \(shapeText), }"
        var body = Array(dict.utf8)
        var pre = 10
        if (body.count + 1 + pre + 63) / 64 * 64 - pre > 65535 { pre = 12 }
        let total = (pre + body.count + 1 + 63) / 64 * 64
        body += [UInt8](repeating: 0x20, count: total - pre - body.count - 1) + [0x0A]
        var out = magic + [pre == 10 ? 1 : 2, 0]
        let n = body.count
        out += pre == 10 ? [UInt8(n & 255), UInt8(n >> 8)] : [UInt8(n & 255), UInt8(n >> 8 & 255), UInt8(n >> 16 & 255), UInt8(n >> 24)]
        return out + body
    }

    public static func write(_ t: Tensor, to out: ByteWriter) throws {
        try out.write(header(dtype: t.dtype, shape: t.shape))
        if t.byteCount > 0 { try out.write(t.rawPointer, count: t.byteCount) }
    }

    /// Converts Fortran-ordered data (as read) to C order.
    static func fromFortran(_ t: Tensor) throws -> Tensor {
        if t.rank < 2 { return t }
        let out = try Tensor(zeros: t.dtype, shape: t.shape)
        let r = t.rank, s = t.shape, es = t.dtype.size
        var fstride = [Int](repeating: 1, count: r)
        for k in 1..<r { fstride[k] = fstride[k - 1] * s[k - 1] }
        var idx = [Int](repeating: 0, count: r)
        for c in 0..<t.count {
            var f = 0
            for k in 0..<r { f += idx[k] * fstride[k] }
            (out.rawPointer + c * es).copyMemory(from: t.rawPointer + f * es, byteCount: es)
            var k = r - 1
            while k >= 0 { idx[k] += 1; if idx[k] < s[k] { break }; idx[k] = 0; k -= 1 }
        }
        return out
    }
}

/// Reads one `.npy` array as records: from a mapped file as one record without copying (when
/// the data is little-endian C order), from a pipe in chunks of rows (bounded memory).
public final class NPYReader: RecordReader {
    public let fileName: String
    public var streamMeta: JSON? { nil }
    let header: NPY.Header
    let input: ByteReader?
    var mapped: Tensor?
    let name: String
    var row = 0
    var emitted = false
    let chunkRows: Int

    /// Streams from `input`, which is at the start of the file.
    public init(_ input: ByteReader, fileName: String, name: String? = nil, knownSize: Int? = nil, chunkBytes: Int = 4 << 20) throws {
        self.fileName = fileName; self.input = input
        let h = try annotating(file: fileName, location: "header") { try NPY.readHeader(input) }
        let need = try annotating(file: fileName, location: "header") { try Tensor.checkedByteCount(dtype: h.dtype, shape: h.shape) }
        header = h
        if let k = knownSize, k != header.dataOffset + need {
            throw TLError.data("header says \(shapeString(header.shape)) \(header.dtype.shortName) (\(need) data bytes) but \(k - header.dataOffset) follow",
                               file: fileName, location: "header")
        }
        self.name = name ?? NPYReader.defaultName(header.dtype, header.shape)
        chunkRows = max(1, chunkBytes / max(1, header.shape.dropFirst().reduce(header.dtype.size, *)))
    }

    /// Zero-copy view of a mapped file.
    public init(mapped file: MappedFile, name: String? = nil) throws {
        self.fileName = file.name; self.input = nil
        let r = MemoryPrefixReader(file)
        let h = try annotating(file: file.name, location: "header") { try NPY.readHeader(r) }
        let need = try annotating(file: file.name, location: "header") { try Tensor.checkedByteCount(dtype: h.dtype, shape: h.shape) }
        header = h
        guard file.size == header.dataOffset + need else {
            throw TLError.data("header says \(shapeString(header.shape)) \(header.dtype.shortName) (\(need) data bytes) but \(file.size - header.dataOffset) follow",
                               file: fileName, location: "header")
        }
        self.name = name ?? NPYReader.defaultName(header.dtype, header.shape)
        var t = Tensor(dtype: header.dtype, shape: header.shape,
                       storage: Storage(borrowing: file.base + header.dataOffset, byteCount: need, owner: file))
        if header.bigEndian { t = t.copy(); IDX.byteSwap(t) }
        if header.fortranOrder { t = try NPY.fromFortran(t) }
        mapped = t
        chunkRows = 0
    }

    /// One-dimensional integer arrays are labels (`y`); everything else is `x`.
    static func defaultName(_ d: DType, _ s: [Int]) -> String { s.count == 1 && d.isInteger ? "y" : "x" }

    public func next() throws -> Record? {
        if let m = mapped { mapped = nil; emitted = true; return Record(name: name, tensor: m) }
        guard let input = input, !emitted || row < header.shape.first ?? 1 else { return nil }
        if header.fortranOrder || header.shape.isEmpty {
            // Whole array: Fortran order cannot be cut into row chunks.
            emitted = true; row = header.shape.first ?? 1
            var t = try Tensor(zeros: header.dtype, shape: header.shape)
            try annotating(file: fileName, location: "data") { try input.readExactly(into: t.rawPointer, count: t.byteCount, what: "npy data") }
            if header.bigEndian { IDX.byteSwap(t) }
            if header.fortranOrder { t = try NPY.fromFortran(t) }
            return Record(name: name, tensor: t)
        }
        let n = min(chunkRows, header.shape[0] - row)
        var s = header.shape; s[0] = n
        let t = try Tensor(zeros: header.dtype, shape: s)
        try annotating(file: fileName, location: "row \(row)") {
            try input.readExactly(into: t.rawPointer, count: t.byteCount, what: "npy data (the header declares \(header.shape[0]) rows)")
        }
        if header.bigEndian { IDX.byteSwap(t) }
        row += n; emitted = true
        return Record(name: name, tensor: t)
    }
}

/// Reads the bytes of a mapped file from the start (header parsing without copying the file).
final class MemoryPrefixReader: ByteReader {
    let file: MappedFile
    var at = 0
    init(_ f: MappedFile) { file = f }
    func read(into p: UnsafeMutableRawPointer, count: Int) throws -> Int {
        let n = min(count, file.size - at)
        if n > 0 { p.copyMemory(from: file.base + at, byteCount: n) }
        at += n
        return n
    }
}
