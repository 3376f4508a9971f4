/// NumPy `.npz`: a ZIP archive of `<name>.npy` members, stored or deflated (np.savez and
/// np.savez_compressed), with or without ZIP64 records (numpy forces ZIP64 local headers).
/// tl writes stored ZIPs without ZIP64 (numpy loads them) and a `meta.json` member carrying the
/// stream metadata (class names and the like), which numpy ignores unless asked.
public enum NPZ {
    static func u16(_ b: UnsafeRawBufferPointer, _ o: Int) -> Int { Int(b[o]) | Int(b[o + 1]) << 8 }
    static func u32(_ b: UnsafeRawBufferPointer, _ o: Int) -> Int { u16(b, o) | u16(b, o + 2) << 16 }
    static func u64(_ b: UnsafeRawBufferPointer, _ o: Int) -> Int { u32(b, o) | u32(b, o + 4) << 32 }

    struct Member {
        var name: String
        var method: Int
        var crc: UInt32
        var compressed: Int
        var size: Int
        var dataOffset: Int
    }

    /// Lists the members of a ZIP held in memory, checking every offset and size against the
    /// archive's length.
    static func members(_ b: UnsafeRawBufferPointer, file: String) throws -> [Member] {
        func fail(_ m: String) -> TLError { TLError.data(m, file: file, location: "zip directory") }
        guard b.count >= 22 else { throw fail("too short for a ZIP archive") }
        var eocd = -1
        var i = b.count - 22
        while i >= max(0, b.count - 22 - 65535) {
            if b[i] == 0x50 && b[i + 1] == 0x4B && b[i + 2] == 5 && b[i + 3] == 6 { eocd = i; break }
            i -= 1
        }
        guard eocd >= 0 else { throw fail("no end-of-central-directory record (not a ZIP, or truncated)") }
        var count = u16(b, eocd + 10)
        var cdSize = u32(b, eocd + 12)
        var cdOff = u32(b, eocd + 16)
        if count == 0xFFFF || cdSize == 0xFFFF_FFFF || cdOff == 0xFFFF_FFFF {
            let loc = eocd - 20
            guard loc >= 0, u32(b, loc) == 0x0706_4B50 else { throw fail("ZIP64 locator missing") }
            let z = u64(b, loc + 8)
            guard z >= 0, z + 56 <= b.count, u32(b, z) == 0x0606_4B50 else { throw fail("bad ZIP64 end record") }
            count = u64(b, z + 32); cdSize = u64(b, z + 40); cdOff = u64(b, z + 48)
        }
        guard cdOff >= 0, cdSize >= 0, cdOff <= b.count, cdSize <= b.count - cdOff else { throw fail("central directory out of bounds") }
        guard count <= cdSize / 46 + 1 else { throw fail("member count \(count) is absurd") }
        var out: [Member] = []
        var p = cdOff
        for k in 0..<count {
            guard p + 46 <= cdOff + cdSize, u32(b, p) == 0x0201_4B50 else { throw fail("bad central directory entry \(k)") }
            let flags = u16(b, p + 8), method = u16(b, p + 10)
            let crc = UInt32(u32(b, p + 16))
            var csize = u32(b, p + 20), usize = u32(b, p + 24)
            let nlen = u16(b, p + 28), elen = u16(b, p + 30), clen = u16(b, p + 32)
            var lho = u32(b, p + 42)
            guard p + 46 + nlen + elen + clen <= cdOff + cdSize else { throw fail("central directory entry \(k) overruns") }
            guard let name = String(validating: UnsafeRawBufferPointer(rebasing: b[p + 46..<p + 46 + nlen]), as: UTF8.self) else {
                throw fail("member name \(k) is not UTF-8")
            }
            // ZIP64 extra field: the 0xFFFFFFFF fields, in order usize, csize, offset.
            var e = p + 46 + nlen
            let eEnd = e + elen
            while e + 4 <= eEnd {
                let id = u16(b, e), sz = u16(b, e + 2)
                guard e + 4 + sz <= eEnd else { throw fail("bad extra field in member '\(name)'") }
                if id == 1 {
                    var q = e + 4
                    if usize == 0xFFFF_FFFF, q + 8 <= e + 4 + sz { usize = u64(b, q); q += 8 }
                    if csize == 0xFFFF_FFFF, q + 8 <= e + 4 + sz { csize = u64(b, q); q += 8 }
                    if lho == 0xFFFF_FFFF, q + 8 <= e + 4 + sz { lho = u64(b, q); q += 8 }
                }
                e += 4 + sz
            }
            guard flags & 1 == 0 else { throw fail("member '\(name)' is encrypted") }
            guard method == 0 || method == 8 else { throw fail("member '\(name)' uses compression method \(method) (only stored and deflate)") }
            guard lho >= 0, lho + 30 <= b.count, u32(b, lho) == 0x0403_4B50 else { throw fail("bad local header for member '\(name)'") }
            let dataOff = lho + 30 + u16(b, lho + 26) + u16(b, lho + 28)
            guard csize >= 0, usize >= 0, dataOff <= b.count, csize <= b.count - dataOff else { throw fail("member '\(name)' data out of bounds") }
            if method == 0 { guard csize == usize else { throw fail("stored member '\(name)' has different sizes") } }
            out.append(Member(name: name, method: method, crc: crc, compressed: csize, size: usize, dataOffset: dataOff))
            p += 46 + nlen + elen + clen
        }
        return out
    }

    /// Writes tensors as a stored (uncompressed) ZIP of `.npy` members, plus `meta.json` when
    /// `meta` is given. Fails over 4 GiB (no ZIP64 writing).
    public static func write(_ tensors: [(String, Tensor)], meta: JSON?, to out: ByteWriter) throws {
        var central: [UInt8] = []
        var offset = 0
        var n = 0
        func add(_ name: String, _ parts: [UnsafeRawBufferPointer]) throws {
            let size = parts.reduce(0) { $0 + $1.count }
            var crc: UInt32 = 0
            for p in parts { crc = CRC32.update(crc, p) }
            guard offset + size < 0xFFFF_FF00 else { throw TLError.usage("the .npz would exceed 4 GiB; write .tlt instead") }
            let nb = Array(name.utf8)
            var lh = [UInt8](repeating: 0, count: 30)
            put32(&lh, 0, 0x0403_4B50); put16(&lh, 4, 20); put16(&lh, 12, 0x0021)  // 1980-01-01: reproducible
            put32(&lh, 14, crc); put32(&lh, 18, UInt32(size)); put32(&lh, 22, UInt32(size)); put16(&lh, 26, UInt16(nb.count))
            try out.write(lh); try out.write(nb)
            for p in parts where p.count > 0 { try out.write(p.baseAddress!, count: p.count) }
            var ch = [UInt8](repeating: 0, count: 46)
            put32(&ch, 0, 0x0201_4B50); put16(&ch, 4, 20); put16(&ch, 6, 20); put16(&ch, 14, 0x0021)
            put32(&ch, 16, crc); put32(&ch, 20, UInt32(size)); put32(&ch, 24, UInt32(size)); put16(&ch, 28, UInt16(nb.count))
            put32(&ch, 42, UInt32(offset))
            central += ch + nb
            offset += 30 + nb.count + size
            n += 1
        }
        for (name, t) in tensors {
            let h = NPY.header(dtype: t.dtype, shape: t.shape)
            try h.withUnsafeBytes { hb in try add(name + ".npy", [hb, t.rawBytes]) }
        }
        if let m = meta {
            let mb = Array(m.serialized.utf8)
            try mb.withUnsafeBytes { try add("meta.json", [$0]) }
        }
        var e = [UInt8](repeating: 0, count: 22)
        put32(&e, 0, 0x0605_4B50); put16(&e, 8, UInt16(n)); put16(&e, 10, UInt16(n))
        put32(&e, 12, UInt32(central.count)); put32(&e, 16, UInt32(offset))
        try out.write(central); try out.write(e)
    }
}

/// Reads an `.npz` (mapped): one record per `.npy` member, in archive order; `meta.json`
/// becomes the stream metadata. Stored members are viewed in place; deflated ones are inflated.
public final class NPZReader: RecordReader {
    public let fileName: String
    public private(set) var streamMeta: JSON?
    let file: MappedFile
    var members: [NPZ.Member]
    var cursor = 0

    public init(_ file: MappedFile) throws {
        self.file = file; fileName = file.name
        members = try NPZ.members(file.bytes, file: file.name)
        if let m = members.first(where: { $0.name == "meta.json" }) {
            let bytes = try memberBytes(m)
            streamMeta = try annotating(file: fileName, location: "member meta.json") { try bytes.withUnsafeBytes { try JSON.parse($0) } }
        }
        members.removeAll { $0.name == "meta.json" }
        for m in members where !m.name.hasSuffix(".npy") {
            throw TLError.data("member '\(m.name)' is not a .npy array", file: fileName, location: "zip directory")
        }
    }

    func memberBytes(_ m: NPZ.Member) throws -> [UInt8] {
        try annotating(file: fileName, location: "member \(m.name)") {
            let raw = UnsafeRawBufferPointer(start: file.base + m.dataOffset, count: m.compressed)
            var bytes: [UInt8]
            if m.method == 0 { bytes = Array(raw) } else {
                let g = GzipReader(MemoryReader(Array(raw)), name: fileName, raw: true)
                bytes = try g.readToEnd(limit: m.size)
                guard bytes.count == m.size else { throw TLError.data("inflated size \(bytes.count) differs from the directory's \(m.size)") }
            }
            guard CRC32.checksum(bytes) == m.crc else { throw TLError.data("CRC-32 mismatch (corrupted member)") }
            return bytes
        }
    }

    public func next() throws -> Record? {
        guard cursor < members.count else { return nil }
        let m = members[cursor]; cursor += 1
        let name = String(m.name.dropLast(4))
        return try annotating(file: fileName, location: "member \(m.name)") {
            if m.method == 0 {
                let raw = UnsafeRawBufferPointer(start: file.base + m.dataOffset, count: m.compressed)
                guard CRC32.checksum(raw) == m.crc else { throw TLError.data("CRC-32 mismatch (corrupted member)") }
                let hr = MemoryReader(Array(raw.prefix(min(raw.count, 1 << 16))))
                let h = try NPY.readHeader(hr)
                let need = try Tensor.checkedByteCount(dtype: h.dtype, shape: h.shape)
                guard m.size == h.dataOffset + need else { throw TLError.data("member size \(m.size) does not match its header's \(shapeString(h.shape)) \(h.dtype.shortName)") }
                var t = Tensor(dtype: h.dtype, shape: h.shape,
                               storage: Storage(borrowing: file.base + m.dataOffset + h.dataOffset, byteCount: need, owner: file))
                if h.bigEndian || h.fortranOrder || (m.dataOffset + h.dataOffset) % h.dtype.size != 0 { t = t.copy() }
                if h.bigEndian { IDX.byteSwap(t) }
                if h.fortranOrder { t = try NPY.fromFortran(t) }
                return Record(name: name, tensor: t)
            }
            let bytes = try memberBytes(m)
            let nr = try NPYReader(MemoryReader(bytes), fileName: fileName, name: name, knownSize: bytes.count, chunkBytes: Int.max / 2)
            guard let rec = try nr.next() else { throw TLError.data("empty member") }
            return rec
        }
    }
}
