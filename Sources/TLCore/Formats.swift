import Glibc

/// The file formats tl reads and writes. Inputs are recognized by their first bytes (a `.gz`
/// wrapper is undone first), outputs by their extension or an explicit choice.
public enum Format: String, CaseIterable, Sendable {
    case tlt, npy, npz, idx, pnm, csv, tsv, safetensors

    /// The format an output path asks for: `.tlt`/`.tlm`, `.npy`, `.npz`, `.idx` or `*-ubyte`,
    /// `.pgm`/`.ppm`/`.pnm`, `.csv`, `.tsv`, each optionally followed by `.gz`. "-" is tlt.
    public static func forPath(_ path: String) -> (Format, gzip: Bool)? {
        if path == "-" { return (.tlt, false) }
        var p = path.lowercased()
        var gz = false
        if p.hasSuffix(".gz") { gz = true; p = String(p.dropLast(3)) }
        let ext = p.split(separator: "/").last.flatMap { n -> String? in n.contains(".") ? String(n.split(separator: ".").last!) : nil }
        switch ext {
        case "tlt", "tlm": return (.tlt, gz)
        case "npy": return (.npy, gz)
        case "npz": return (.npz, gz)
        case "safetensors": return (.safetensors, gz)
        case "idx": return (.idx, gz)
        case "pgm", "ppm", "pnm": return (.pnm, gz)
        case "csv": return (.csv, gz)
        case "tsv": return (.tsv, gz)
        default:
            if p.hasSuffix("-ubyte") || p.contains("-idx") { return (.idx, gz) }
            return nil
        }
    }
}

/// How to open an input.
public struct ReadOptions: Sendable {
    /// Name to give a single-tensor input (IDX, npy, CSV); by default `y` for labels, else `x`.
    public var name: String?
    public var csvHeader: CSV.HeaderMode = .auto
    /// Check payload CRCs of TLT records (header and JSON CRCs are always checked).
    public var verify = true
    /// Rows per chunk when a single-tensor format is streamed (bytes).
    public var chunkBytes = 4 << 20
    public init() {}
}

/// Opens a path ("-" for stdin, a directory for PGM/PPM images) as a record reader, whatever
/// its format. Regular TLT/npy/npz files are memory-mapped (tensors point into the file);
/// pipes and gzip data are streamed with bounded memory.
public func openRecords(_ path: String, _ opts: ReadOptions = ReadOptions()) throws -> RecordReader {
    if path != "-" {
        var st = stat()
        if stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR {
            return try PNMReader(files: imageFiles(inDirectory: path), name: path)
        }
    }
    let input = try Input.open(path)
    let lower = path.lowercased()
    if input.isRegular {
        let f = try input.map()
        let head = Array(f.bytes.prefix(8))
        if head.starts(with: TLT.magic) {
            return try TLTMappedReader(f, verifyPayload: opts.verify)
        }
        if head.starts(with: NPY.magic) { return try NPYReader(mapped: f, name: opts.name) }
        if head.starts(with: [0x50, 0x4B, 0x03, 0x04]) || head.starts(with: [0x50, 0x4B, 0x05, 0x06]) { return try NPZReader(f) }
        if Safetensors.looksLike(Array(f.bytes.prefix(9))) { return try SafetensorsReader(f) }
        if !head.starts(with: [0x1F, 0x8B]) {
            let r = BufferedReader(MemoryPrefixReader(f))
            return try openStream(r, name: path, knownSize: f.size, lower: lower, opts)
        }
        let g = BufferedReader(GzipReader(MemoryPrefixReader(f), name: path))
        return try openStream(g, name: path, knownSize: nil, lower: String(lower.dropLast(3)), opts)
    }
    let r = input.reader()
    if try r.peek(2) == [0x1F, 0x8B] {
        return try openStream(BufferedReader(GzipReader(r, name: path), capacity: 1 << 20), name: path, knownSize: nil, lower: String(lower.dropLast(3)), opts)
    }
    return try openStream(r, name: path, knownSize: nil, lower: lower, opts)
}

func openStream(_ r: BufferedReader, name: String, knownSize: Int?, lower: String, _ opts: ReadOptions) throws -> RecordReader {
    let head = try annotating(file: name) { try r.peek(8) }
    if head.starts(with: TLT.magic) {
        let t = try TLTStreamReader(r, fileName: name)
        t.verifyPayload = opts.verify
        return t
    }
    if head.starts(with: NPY.magic) { return try NPYReader(r, fileName: name, name: opts.name, knownSize: knownSize, chunkBytes: opts.chunkBytes) }
    if head.starts(with: [0x50, 0x4B]) { throw TLError.data(".npz must be a regular file (a ZIP cannot be streamed)", file: name) }
    if Safetensors.looksLike(try r.peek(9)) { throw TLError.data(".safetensors must be a regular file, not a pipe", file: name) }
    if IDX.looksLikeIDX(head) { return try IDXReader(r, fileName: name, knownSize: knownSize, name: opts.name, chunkBytes: opts.chunkBytes) }
    if PNM.looksLikePNM(head) {
        let bytes = try annotating(file: name) { try r.readToEnd(limit: 1 << 31) }
        let (t, maxval) = try PNM.decode(bytes, file: name)
        let meta: JSON? = (maxval != 255 && maxval != 65535) ? ["maxval": .number(Double(maxval))] : nil
        return SingleRecordReader(Record(name: opts.name ?? "x", tensor: t, meta: meta), fileName: name)
    }
    if head.isEmpty { throw TLError.data("empty input", file: name) }
    // Text: CSV or TSV.
    let isText = head.allSatisfy { $0 == 0x09 || $0 == 0x0A || $0 == 0x0D || ($0 >= 0x20 && $0 < 0x7F) || $0 >= 0x80 }
    guard isText else { throw TLError.data("unrecognized format (first bytes \(hex(head)))", file: name) }
    let bytes = try annotating(file: name) { try r.readToEnd(limit: 1 << 31) }
    let tsv = lower.hasSuffix(".tsv") || (!lower.hasSuffix(".csv") && (bytes.prefix { $0 != 0x0A }.contains(0x09)))
    var rec = try CSV.read(bytes, file: name, tsv: tsv, header: opts.csvHeader)
    if let n = opts.name { rec.name = n }
    return SingleRecordReader(rec, fileName: name)
}

/// A reader that yields one ready record.
public final class SingleRecordReader: RecordReader {
    public let fileName: String
    public var streamMeta: JSON? { nil }
    var rec: Record?
    public init(_ r: Record, fileName: String) { rec = r; self.fileName = fileName }
    public func next() throws -> Record? { defer { rec = nil }; return rec }
}

/// Whole tensors, in first-appearance order, with the stream's metadata.
public struct TensorSet {
    public var meta: JSON?
    public var names: [String] = []
    public var tensors: [String: Tensor] = [:]
    public var recordMeta: [String: JSON] = [:]
    public init(meta: JSON? = nil) { self.meta = meta }
    public subscript(name: String) -> Tensor? { tensors[name] }
    public mutating func add(_ name: String, _ t: Tensor, meta: JSON? = nil) {
        if tensors[name] == nil { names.append(name) }
        tensors[name] = t
        if let m = meta { recordMeta[name] = m }
    }
}

/// Reads everything, joining chunks of the same name along axis 0.
public func readAll(_ reader: RecordReader) throws -> TensorSet {
    var parts: [String: [Tensor]] = [:]
    var set = TensorSet(meta: reader.streamMeta)
    while let r = try reader.next() {
        if parts[r.name] == nil { set.names.append(r.name) }
        parts[r.name, default: []].append(r.tensor)
        if let m = r.meta, set.recordMeta[r.name] == nil { set.recordMeta[r.name] = m }
    }
    for n in set.names {
        set.tensors[n] = try annotating(file: reader.fileName, location: "tensor '\(n)'") { try Tensor.concatenate(parts[n]!) }
    }
    return set
}

/// Where records go: a TLT stream (written as records arrive) or another format (tensors
/// collected, written at `finish()`). Paths are written atomically; "-" streams to stdout.
public final class RecordWriter {
    public let path: String
    public let format: Format
    let gzip: Bool
    let output: Output?
    var gz: GzipWriter?
    var tlt: TLTWriter?
    var collected = TensorSet()
    let producer: String?
    /// CSV/TSV: write a header row (names from meta `columns`, else c0, c1, ...).
    public var csvHeader = false
    /// For single-tensor formats: which tensor to write (default `x`, or the only one).
    public var select: String?

    /// `format` overrides the extension. PGM/PPM paths containing a `%d` directive
    /// (e.g. `img-%05d.pgm`) write one file per image.
    public init(_ path: String, format: Format? = nil, producer: String?, meta: JSON?) throws {
        self.path = path; self.producer = producer
        let guess = Format.forPath(path)
        guard let f = format ?? guess?.0 else {
            throw TLError.usage("cannot tell the output format of '\(path)' from its extension; name one with --to")
        }
        self.format = f
        self.gzip = guess?.gzip ?? false
        collected.meta = meta
        if f == .pnm && path.contains("%") {
            output = nil
            return
        }
        let o = try Output(path, binary: !(f == .csv || f == .tsv) || gzip)
        output = o
        var sink: ByteWriter = o
        if gzip { let g = try GzipWriter(o); gz = g; sink = g }
        if f == .tlt { tlt = try TLTWriter(sink, producer: producer, meta: meta) }
    }

    var sink: ByteWriter { gz ?? output! }

    public func write(_ r: Record) throws {
        if let t = tlt {
            try annotating(file: path) { try t.write(name: r.name, tensor: r.tensor, meta: r.meta, payloadCRC: r.payloadCRC) }
            return
        }
        if parts[r.name] == nil { collected.add(r.name, r.tensor, meta: r.meta) }
        parts[r.name, default: []].append(r.tensor)
    }
    var parts: [String: [Tensor]] = [:]

    func single() throws -> (String, Tensor) {
        try joinParts()
        let name: String
        if let s = select {
            guard collected.tensors[s] != nil else {
                throw TLError.data("no tensor named '\(s)' in the input (it has \(collected.names.joined(separator: ", ")))")
            }
            name = s
        } else if collected.names.count == 1 { name = collected.names[0] }
        else if collected.tensors["x"] != nil { name = "x" }
        else if collected.names.isEmpty { throw TLError.data("the input has no tensors") }
        else { throw TLError.usage("\(format.rawValue) holds one tensor; the input has \(collected.names.joined(separator: ", ")): choose one with --name") }
        return (name, collected.tensors[name]!)
    }

    func joinParts() throws {
        for (n, p) in parts where p.count > 1 { collected.tensors[n] = try Tensor.concatenate(p) }
        parts.removeAll()
    }

    /// Completes the output (writes collected tensors, the end record, renames into place).
    public func finish() throws {
        do {
            switch format {
            case .tlt: try tlt!.finish()
            case .npz:
                try joinParts()
                try NPZ.write(collected.names.map { ($0, collected.tensors[$0]!) }, meta: collected.meta, to: sink)
            case .safetensors:
                try joinParts()
                try Safetensors.write(collected.names.map { ($0, collected.tensors[$0]!) }, meta: collected.meta, to: sink)
            case .npy: try NPY.write(try single().1, to: sink)
            case .idx: try IDX.write(try single().1, to: sink)
            case .csv, .tsv:
                let (n, t) = try single()
                var header: [String]? = nil
                if csvHeader {
                    let cols = t.rank <= 1 ? 1 : t.count / max(t.shape[0], 1)
                    if let c = collected.recordMeta[n]?["columns"]?.array?.compactMap({ $0.string }), c.count == cols { header = c }
                    else { header = cols == 1 ? [n] : (0..<cols).map { "c\($0)" } }
                }
                try CSV.write(t, to: sink, tsv: format == .tsv, header: header)
            case .pnm:
                let (n, t) = try single()
                let maxval = collected.recordMeta[n]?["maxval"]?.int
                if output == nil {
                    for i in 0..<t.rows {
                        let p = try formatIndex(path, i)
                        let o = try Output(p)
                        do {
                            if gzip { let g = try GzipWriter(o); try g.write(try PNM.encode(t, index: i, maxval: maxval)); try g.finish() }
                            else { try o.write(try PNM.encode(t, index: i, maxval: maxval)) }
                            try o.commit()
                        } catch { o.abandon(); throw error }
                    }
                    return
                }
                for i in 0..<t.rows { try sink.write(try PNM.encode(t, index: i, maxval: maxval)) }
            }
            try gz?.finish()
            try output?.commit()
        } catch let e as TLError {
            output?.abandon()
            throw e.at(file: path)
        }
    }

    /// Gives up: no output file appears (a stream on stdout just stops).
    public func abandon() { output?.abandon() }
}

/// Expands one printf-style integer directive (`%d`, `%05d`) in `pattern`.
func formatIndex(_ pattern: String, _ i: Int) throws -> String {
    guard let pct = pattern.firstIndex(of: "%") else { return pattern }
    var j = pattern.index(after: pct)
    var width = ""
    while j < pattern.endIndex, pattern[j].isNumber { width.append(pattern[j]); j = pattern.index(after: j) }
    guard j < pattern.endIndex, pattern[j] == "d" else { throw TLError.usage("output pattern '\(pattern)' needs a %d directive") }
    var s = String(i)
    let w = Int(width) ?? 0
    if s.count < w { s = String(repeating: width.hasPrefix("0") ? "0" : " ", count: w - s.count) + s }
    return String(pattern[..<pct]) + s + String(pattern[pattern.index(after: j)...])
}
