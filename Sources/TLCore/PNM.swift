import Glibc

/// netpbm images: PGM (P2 plain, P5 raw; gray) and PPM (P3 plain, P6 raw; RGB), maxval up to
/// 65535 (two big-endian bytes per sample above 255). A file may hold several images one after
/// another (netpbm's rule). Images become `x` of shape [N, C, H, W] (C = 1 or 3), U8 when
/// maxval <= 255 else U16; the maxval goes into the record's meta when it is not 255.
public enum PNM {
    public static func looksLikePNM(_ h: [UInt8]) -> Bool {
        h.count >= 3 && h[0] == 0x50 && [0x32, 0x33, 0x35, 0x36].contains(h[1]) && [0x20, 0x0A, 0x0D, 0x09, 0x23].contains(h[2])
    }

    /// Parses every image in `bytes` (one file). All must share size and channel count.
    public static func decode(_ bytes: [UInt8], file: String) throws -> (Tensor, maxval: Int) {
        var images: [(c: Int, h: Int, w: Int, maxval: Int, data: [UInt16])] = []
        var i = 0
        func fail(_ m: String) -> TLError { TLError.data(m, file: file, location: "image \(images.count)") }
        func skipSpaceAndComments() {
            while i < bytes.count {
                if bytes[i] == 0x23 { while i < bytes.count && bytes[i] != 0x0A { i += 1 } }
                else if [0x20, 0x0A, 0x0D, 0x09].contains(bytes[i]) { i += 1 } else { break }
            }
        }
        func number() throws -> Int {
            skipSpaceAndComments()
            var v = 0, digits = 0
            while i < bytes.count, bytes[i] >= 0x30, bytes[i] <= 0x39 {
                v = v * 10 + Int(bytes[i] - 0x30); digits += 1; i += 1
                guard v < 1 << 31 else { throw fail("number too large") }
            }
            guard digits > 0 else { throw fail(i >= bytes.count ? "truncated header" : "expected a number") }
            return v
        }
        while true {
            skipSpaceAndComments()
            if i >= bytes.count { break }
            guard i + 2 <= bytes.count, bytes[i] == 0x50 else { throw fail("not a PGM/PPM image (bad magic)") }
            let kind = bytes[i + 1]
            guard [0x32, 0x33, 0x35, 0x36].contains(kind) else { throw fail("unsupported netpbm kind P\(UnicodeScalar(kind))") }
            i += 2
            let w = try number(), h = try number(), maxval = try number()
            guard w > 0, h > 0, w <= 1 << 16, h <= 1 << 16 else { throw fail("bad image size \(w)x\(h)") }
            guard maxval >= 1, maxval <= 65535 else { throw fail("maxval \(maxval) is outside 1...65535") }
            let c = (kind == 0x33 || kind == 0x36) ? 3 : 1
            let n = w * h * c
            var data = [UInt16](repeating: 0, count: n)
            if kind == 0x35 || kind == 0x36 {
                guard i < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[i]) else { throw fail("no whitespace after maxval") }
                i += 1
                let bps = maxval > 255 ? 2 : 1
                guard bytes.count - i >= n * bps else { throw fail("truncated pixel data: \(bytes.count - i) of \(n * bps) bytes") }
                for k in 0..<n {
                    data[k] = bps == 1 ? UInt16(bytes[i + k]) : UInt16(bytes[i + 2 * k]) << 8 | UInt16(bytes[i + 2 * k + 1])
                }
                i += n * bps
            } else {
                for k in 0..<n { data[k] = UInt16(try number()) }
            }
            for v in data where Int(v) > maxval { throw fail("sample \(v) is above maxval \(maxval)") }
            if let f = images.first, f.c != c || f.h != h || f.w != w || (f.maxval > 255) != (maxval > 255) {
                throw fail("image is \(c)x\(h)x\(w) but the first is \(f.c)x\(f.h)x\(f.w)")
            }
            images.append((c, h, w, maxval, data))
        }
        guard let f = images.first else { throw TLError.data("no image in file", file: file) }
        let dtype: DType = f.maxval > 255 ? .u16 : .u8
        let t = try Tensor(zeros: dtype, shape: [images.count, f.c, f.h, f.w])
        let hw = f.h * f.w
        for (k, im) in images.enumerated() {
            let base = k * f.c * hw
            for ch in 0..<f.c {
                for p in 0..<hw {  // interleaved RGB -> planar CHW
                    let v = im.data[p * f.c + ch]
                    if dtype == .u8 { t.rawPointer.storeBytes(of: UInt8(v), toByteOffset: base + ch * hw + p, as: UInt8.self) }
                    else { t.rawPointer.storeBytes(of: v, toByteOffset: 2 * (base + ch * hw + p), as: UInt16.self) }
                }
            }
        }
        return (t, f.maxval)
    }

    /// Encodes image `index` of `t` ([N,H,W], [N,1,H,W] or [N,3,H,W], U8 or U16) as raw P5/P6.
    public static func encode(_ t: Tensor, index: Int, maxval: Int? = nil) throws -> [UInt8] {
        let (c, h, w): (Int, Int, Int)
        switch t.rank {
        case 3: (c, h, w) = (1, t.shape[1], t.shape[2])
        case 4 where t.shape[1] == 1 || t.shape[1] == 3: (c, h, w) = (t.shape[1], t.shape[2], t.shape[3])
        default: throw TLError.usage("PGM/PPM output needs images [N,H,W], [N,1,H,W] or [N,3,H,W], not \(t.shape)")
        }
        guard t.dtype == .u8 || t.dtype == .u16 else {
            throw TLError.usage("PGM/PPM output needs u8 or u16 pixels, not \(t.dtype.shortName) (use --dtype u8 after scaling to 0..255)")
        }
        let mv = maxval ?? (t.dtype == .u8 ? 255 : 65535)
        var out = Array("P\(c == 1 ? 5 : 6)\n\(w) \(h)\n\(mv)\n".utf8)
        let hw = h * w, base = index * c * hw
        out.reserveCapacity(out.count + hw * c * (t.dtype == .u8 ? 1 : 2))
        for p in 0..<hw {
            for ch in 0..<c {
                let k = base + ch * hw + p
                if t.dtype == .u8 { out.append(t.rawPointer.load(fromByteOffset: k, as: UInt8.self)) }
                else { let v = t.rawPointer.load(fromByteOffset: 2 * k, as: UInt16.self); out += [UInt8(v >> 8), UInt8(v & 255)] }
            }
        }
        return out
    }
}

/// Lists the `.pgm`, `.ppm` and `.pnm` files of a directory, sorted by name (byte order).
public func imageFiles(inDirectory dir: String) throws -> [String] {
    guard let d = opendir(dir) else { throw TLError(.noInput, "cannot open directory: \(errnoString())", file: dir) }
    defer { closedir(d) }
    var names: [String] = []
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { raw in String(cString: raw.bindMemory(to: CChar.self).baseAddress!) }
        let lower = name.lowercased()
        if lower.hasSuffix(".pgm") || lower.hasSuffix(".ppm") || lower.hasSuffix(".pnm") { names.append(name) }
    }
    names.sort { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
    return names.map { dir.hasSuffix("/") ? dir + $0 : dir + "/" + $0 }
}

/// Reads a list of PGM/PPM files (one or more images each) as one `x` record per file, so a
/// directory of 60,000 images streams with bounded memory.
public final class PNMReader: RecordReader {
    public let fileName: String
    public var streamMeta: JSON? { nil }
    let files: [String]
    var cursor = 0
    var first: (c: Int, h: Int, w: Int, dtype: DType)?
    /// Require every image to have the first one's size and type (one tensor). Consumers that
    /// handle each image on its own (tl-extract resizes them) turn this off.
    public var uniform = true

    public init(files: [String], name: String) throws {
        guard !files.isEmpty else { throw TLError(.noInput, "no .pgm/.ppm images found", file: name) }
        self.files = files; self.fileName = name
    }

    public func next() throws -> Record? {
        guard cursor < files.count else { return nil }
        let f = files[cursor]; cursor += 1
        let input = try Input.open(f)
        let bytes = try input.reader().readToEnd(limit: 1 << 30)
        let (t, maxval) = try PNM.decode(bytes, file: f)
        let s = (t.shape[1], t.shape[2], t.shape[3], t.dtype)
        if uniform, let p = first, p != s {
            throw TLError.data("image is \(s.0)x\(s.1)x\(s.2) \(s.3.shortName) but \(files[0]) is \(p.c)x\(p.h)x\(p.w) \(p.dtype.shortName)", file: f)
        }
        first = s
        let meta: JSON? = (maxval != 255 && maxval != 65535) ? ["maxval": .number(Double(maxval))] : nil
        return Record(name: "x", tensor: t, meta: meta)
    }
}
