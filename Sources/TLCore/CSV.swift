/// CSV and TSV tables of numbers (attribute tables, label lists, feature dumps).
///
/// Reading: the delimiter is a tab for TSV and a comma for CSV; a header row is detected when
/// any field of the first row is not a number (or forced either way). Every row must have the
/// same number of fields. A single column of integers reads as `y` (I64, shape [N]); anything
/// else reads as `x` (F32, shape [N, columns]) with the header's names in meta `columns`.
public enum CSV {
    public enum HeaderMode: Sendable { case auto, present, absent }

    public static func split(_ line: Substring, _ delim: Character) -> [Substring] {
        if !line.contains("\"") { return line.split(separator: delim, omittingEmptySubsequences: false) }
        var out: [Substring] = []
        var cur = "", inQ = false
        var it = line.makeIterator()
        while let c = it.next() {
            if inQ { if c == "\"" { inQ = false } else { cur.append(c) } }
            else if c == "\"" { inQ = true }
            else if c == delim { out.append(Substring(cur)); cur = "" }
            else { cur.append(c) }
        }
        out.append(Substring(cur))
        return out
    }

    static func number(_ f: Substring) -> Double? {
        let t = f.trimmingSpaces
        if t.isEmpty { return nil }
        switch t.lowercased() {
        case "nan": return .nan
        case "inf", "+inf", "infinity": return .infinity
        case "-inf", "-infinity": return -.infinity
        default: return Double(t)
        }
    }

    /// Parses a whole table. Errors name the line (1-based, as editors count).
    public static func read(_ bytes: [UInt8], file: String, tsv: Bool, header: HeaderMode = .auto) throws -> Record {
        guard String(validating: bytes, as: UTF8.self) != nil else { throw TLError.data("not valid UTF-8 text", file: file) }
        let delim: Character = tsv ? "\t" : ","
        // Split on bytes: Swift treats "\r\n" as one Character, so a String split on "\n" misses it.
        var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map { l -> Substring in
            Substring(String(decoding: l.last == 0x0D ? l.dropLast() : l, as: UTF8.self))
        }
        while let l = lines.last, l.trimmingSpaces.isEmpty { lines.removeLast() }
        guard !lines.isEmpty else { throw TLError.data("empty table", file: file) }
        let firstFields = split(lines[0], delim)
        var hasHeader: Bool
        switch header {
        case .present: hasHeader = true
        case .absent: hasHeader = false
        case .auto: hasHeader = firstFields.contains { number($0) == nil }
        }
        let columns: [String]? = hasHeader ? firstFields.map { String($0.trimmingSpaces) } : nil
        let cols = firstFields.count
        var values: [Double] = []
        values.reserveCapacity(lines.count * cols)
        var rows = 0
        for (k, line) in lines.enumerated() where !(hasHeader && k == 0) {
            if line.trimmingSpaces.isEmpty { throw TLError.data("empty line inside the table", file: file, location: "line \(k + 1)") }
            let f = split(line, delim)
            guard f.count == cols else {
                throw TLError.data("expected \(cols) fields, found \(f.count)", file: file, location: "line \(k + 1)")
            }
            for (j, field) in f.enumerated() {
                guard let v = number(field) else {
                    throw TLError.data("field \(j + 1) \"\(field.prefix(40))\" is not a number", file: file, location: "line \(k + 1)")
                }
                values.append(v)
            }
            rows += 1
        }
        let meta: JSON? = columns.map { ["columns": .array($0.map { .string($0) })] }
        if cols == 1 && values.allSatisfy({ $0.isFinite && $0.rounded() == $0 && abs($0) < 9e15 }) {
            return Record(name: "y", tensor: Tensor(values.map { Int64($0) }), meta: meta)
        }
        return Record(name: "x", tensor: Tensor(values.map { Float($0) }, shape: [rows, cols]), meta: meta)
    }

    /// Formats `t` (rank 0–2; higher ranks are flattened to [N, rest]) as delimited text,
    /// floats in their shortest round-trip form.
    public static func write(_ t: Tensor, to out: ByteWriter, tsv: Bool, header: [String]?) throws {
        let delim = tsv ? "\t" : ","
        let rows = t.rank == 0 ? 1 : t.shape[0]
        let cols = t.rank <= 1 ? 1 : t.count / max(rows, 1)
        if let h = header {
            guard h.count == cols else { throw TLError.usage("header has \(h.count) names for \(cols) columns") }
            try out.write(h.joined(separator: delim) + "\n")
        }
        var line = ""
        for r in 0..<rows {
            line.removeAll(keepingCapacity: true)
            for c in 0..<cols {
                if c > 0 { line += delim }
                let i = r * cols + c
                switch t.dtype {
                case .f32: line += "\(Float(t.double(at: i)))"
                case .f16: line += "\(Float16(Float(t.double(at: i))))"
                case .bf16: line += "\(Float(t.double(at: i)))"
                case .f64: line += "\(t.double(at: i))"
                case .u64: line += "\(t.rawPointer.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))"
                default: line += "\(t.int64(at: i)!)"
                }
            }
            line += "\n"
            try out.write(line)
        }
    }
}

extension Substring {
    var trimmingSpaces: Substring {
        var s = self
        while let c = s.first, c == " " || c == "\t" || c == "\r" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" || c == "\r" { s.removeLast() }
        return s
    }
}
