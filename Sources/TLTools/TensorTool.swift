import Glibc
import TLCore
import TLNN

/// `tl-tensor`: inspect, convert, slice, split, stack tensor files. Every subcommand streams
/// where the operation allows (info, cat, head, slice, convert, stats, stack); split needs the
/// whole data set (it permutes rows).
public enum TensorTool {
    static let producer = "tl-tensor \(tlVersion)"

    static let top = CommandSpec(
        name: "tl-tensor", usage: ["SUBCOMMAND [OPTIONS] [FILE...]"],
        summary: """
        Inspect, convert, slice, split and stack tensor files: tl-format streams (.tlt, .tlm),
        NumPy .npy/.npz, IDX (MNIST), PGM/PPM images and CSV/TSV tables, gzip-compressed or not.
        FILE '-' or no FILE reads standard input.

        Subcommands:
          info     records, dtypes, shapes and metadata; verifies checksums
          cat      concatenate streams into one (chunks of the same name join along axis 0)
          head     the first N rows of every tensor
          slice    rows A:B of every tensor, and/or a subset of tensors
          split    split rows into two files by ratio or count (seeded, optionally stratified)
          select   rows of some classes (N per class), relabeled 0, 1, ...
          convert  convert between formats and dtypes
          stats    per-channel mean and standard deviation (and min, max)
          stack    merge tensors from several files into one stream (x from one, y from another)

        Run 'tl-tensor SUBCOMMAND --help' for a subcommand's options. See tl-tensor(1), tl-format(5).
        """, options: [])

    static let outputOption = Option("output", "o", value: "FILE", help: "write to FILE (format from its extension; default: tl-format on stdout)")
    static let toOption = Option("to", value: "FORMAT", help: "output format: tlt, npy, npz, safetensors, idx, pnm, csv, tsv, onnx (default: from the extension)")
    static let noVerify = Option("no-verify", help: "skip payload checksum verification (header checksums are always checked)")

    struct Sub {
        let spec: CommandSpec
        let run: (Arguments) throws -> Void
    }

    static let subs: [String: Sub] = [
        "info": Sub(spec: CommandSpec(name: "tl-tensor info", usage: ["[--json] [FILE...]"],
            summary: "Describe each input: format, stream metadata, and per tensor its dtype, full shape (chunks joined), chunk count and bytes. Reading verifies every checksum; a damaged file is an error (exit 65).",
            options: [Option("json", help: "one JSON object per input, on one line")]), run: info),
        "cat": Sub(spec: CommandSpec(name: "tl-tensor cat", usage: ["[-o FILE] [FILE...]"],
            summary: "Concatenate inputs into one stream. Records with the same name continue one tensor along axis 0. The stream metadata of the first input is kept.",
            options: [outputOption, toOption, noVerify]), run: cat),
        "head": Sub(spec: CommandSpec(name: "tl-tensor head", usage: ["[-n ROWS] [-o FILE] [FILE]"],
            summary: "The first ROWS rows of every tensor (the 'names' record and scalars pass whole).",
            options: [Option("rows", "n", value: "ROWS", help: "rows to keep (default 10)"), outputOption, toOption]), run: head),
        "slice": Sub(spec: CommandSpec(name: "tl-tensor slice", usage: ["[--rows A:B] [--names LIST] [-o FILE] [FILE]"],
            summary: "Rows A (inclusive) to B (exclusive) of every tensor, counted from 0; A or B may be left out (':100', '500:'). --names keeps only the listed tensors.",
            options: [Option("rows", value: "A:B", help: "row range (default: all rows)"),
                      Option("names", value: "LIST", help: "comma-separated tensor names to keep (default: all)"), outputOption, toOption]), run: slice),
        "select": Sub(spec: CommandSpec(name: "tl-tensor select", usage: ["[--classes LIST] [--per-class N] [--seed S] [-o FILE] [FILE]"],
            summary: "Keep the rows whose label y is one of the classes in LIST, at most N of each class (chosen at random with --seed; rows keep their input order), and relabel them 0, 1, ... in the order of LIST, with the names record to match. Every tensor with as many rows as y is cut the same way.",
            options: [Option("classes", value: "LIST", help: "labels, ranges and class names: 5-9, or 0,2,4, or Sandal,Bag (default: all)"),
                      Option("per-class", value: "N", help: "at most N rows of each class"),
                      Option("seed", value: "S", help: "random seed for --per-class (default 0)"),
                      Option("keep-labels", help: "keep the original labels and names"),
                      outputOption, toOption]), run: select),
        "split": Sub(spec: CommandSpec(name: "tl-tensor split", usage: ["(--ratio R | --count N) -o FIRST -o SECOND [OPTIONS] [FILE]"],
            summary: "Split the rows of x (and of every tensor with as many rows: y, domain, ...) into two files. Rows are chosen at random with --seed, or taken in order with --no-shuffle; each part keeps the input's row order. Other tensors (names) go to both.",
            options: [Option("ratio", value: "R", help: "fraction of rows for FIRST, 0 < R < 1"),
                      Option("count", value: "N", help: "number of rows for FIRST"),
                      Option("seed", value: "S", help: "random seed (default 0)"),
                      Option("stratify", help: "keep the class proportions of y in both parts"),
                      Option("no-shuffle", help: "FIRST gets the first rows, SECOND the rest"),
                      Option("output", "o", value: "FILE", repeatable: true, help: "the two outputs, FIRST then SECOND")]), run: split),
        "convert": Sub(spec: CommandSpec(name: "tl-tensor convert", usage: ["[OPTIONS] IN [OUT]", "[OPTIONS] IN -o OUT"],
            summary: "Convert between formats (chosen by OUT's extension or --to) and dtypes. Streams with bounded memory when the output is a tl-format stream; other output formats hold whole tensors.",
            options: [outputOption, toOption,
                      Option("dtype", value: "[NAME=]DTYPE", repeatable: true, help: "convert tensor NAME (default x) to DTYPE: f32 f64 f16 bf16 i64 i32 i16 i8 u64 u32 u16 u8 bool"),
                      Option("name", value: "NAME", help: "name of a single-tensor input (npy, IDX, CSV), or the tensor a single-tensor output takes"),
                      Option("header", help: "CSV/TSV: the first row is a header (input) / write a header row (output)"),
                      Option("no-header", help: "CSV/TSV input: the first row is data"), noVerify,
                      Option("arch", value: "ARCH", help: "models: build ARCH (lenet5, cnn-small, ... or a spec) from IN's state dict (.safetensors, .npz)"),
                      Option("input-shape", value: "CxHxW", help: "models: the per-sample input shape, with --arch (e.g. 1x28x28)"),
                      Option("mean", value: "LIST", help: "models: the input normalization's mean per channel (or one value)"),
                      Option("std", value: "LIST", help: "models: the input normalization's standard deviation per channel (or one value)"),
                      Option("scale", value: "S", help: "models: multiply raw inputs by S before the normalization (1/255 for u8 pixels to [0, 1])"),
                      Option("classes", value: "FILE", help: "models: class names, one per line"),
                      Option("output-value", value: "NAME", help: "models from ONNX: the graph output that gives the class scores (default: the last)")]), run: convert),
        "stats": Sub(spec: CommandSpec(name: "tl-tensor stats", usage: ["[--name NAME] [--json] [FILE]"],
            summary: "Per-channel count, mean, standard deviation (population), min and max of a tensor, streamed. The channel axis is axis 1 ([N,C,H,W] images: per C; [N,D] features: per column); [N,H,W] gray images and 1-D tensors are one channel.",
            options: [Option("name", value: "NAME", help: "tensor to describe (default x)"),
                      Option("json", help: "print JSON instead of a table")]), run: stats),
        "stack": Sub(spec: CommandSpec(name: "tl-tensor stack", usage: ["[-o FILE] [NAME=]FILE..."],
            summary: "Merge the tensors of several inputs into one stream, reading them in turn a chunk at a time. NAME=FILE renames a single-tensor input (e.g. y=labels.csv). A .txt FILE holds class names, one per line, and becomes the 'names' record. x, y and domain must end with the same number of rows.",
            options: [outputOption, toOption]), run: stack),
    ]

    public static func main() -> Never {
        let argv = Array(CommandLine.arguments.dropFirst())
        if let first = argv.first, let sub = subs[first] {
            runCommand(sub.spec, argv: Array(argv.dropFirst()), prefix: "tl-tensor", sub.run)
        }
        runCommand(top) { a in
            guard let s = a.positionals.first else { throw TLError.usage("missing subcommand (info, cat, head, slice, split, select, convert, stats, stack)") }
            throw TLError.usage("unknown subcommand '\(s)'")
        }
    }

    // MARK: shared helpers

    static func inputs(_ a: Arguments) -> [String] { a.positionals.isEmpty ? ["-"] : a.positionals }

    static func readOptions(_ a: Arguments) -> ReadOptions {
        var o = ReadOptions()
        o.verify = !a.has("no-verify")
        if a.has("header") { o.csvHeader = .present }
        if a.has("no-header") { o.csvHeader = .absent }
        o.name = a.value("name")
        return o
    }

    static func makeWriter(_ a: Arguments, path: String? = nil, meta: JSON?) throws -> RecordWriter {
        var fmt: Format? = nil
        if let t = a.value("to") {
            guard let f = Format(rawValue: t.lowercased()) else { throw TLError.usage("unknown format '\(t)' (tlt, npy, npz, safetensors, idx, pnm, csv, tsv, onnx)") }
            fmt = f
        }
        return try RecordWriter(path ?? a.value("output") ?? "-", format: fmt, producer: producer, meta: meta)
    }

    /// Runs `body` and finishes `w`, or abandons it (no partial output file) on error.
    static func writing(_ w: RecordWriter, _ body: () throws -> Void) throws {
        do { try body(); try w.finish() } catch { w.abandon(); throw error }
    }

    static func formatName(_ r: RecordReader) -> String {
        switch r {
        case is TLTMappedReader, is TLTStreamReader: return "tlt"
        case is NPYReader: return "npy"
        case is NPZReader: return "npz"
        case is SafetensorsReader: return "safetensors"
        case is IDXReader: return "idx"
        case is PNMReader: return "pnm"
        default: return r.fileName.lowercased().hasSuffix(".tsv") ? "tsv" : (r.fileName.lowercased().hasSuffix(".csv") ? "csv" : "text")
        }
    }

    /// Tensors whose rows are data rows. The `names` record (class names as UTF-8 text) and
    /// scalars are never cut into rows.
    static func isRowData(_ r: Record) -> Bool { r.name != "names" && r.tensor.rank >= 1 }

    /// Decodes a `names` record: UTF-8 text, one class name per line.
    public static func classNames(_ t: Tensor) -> [String]? {
        guard t.dtype == .u8, t.rank == 1 else { return nil }
        guard let s = String(validating: Array(t.rawBytes), as: UTF8.self) else { return nil }
        return s.isEmpty ? [] : s.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    }

    /// A `names` record from class names.
    public static func namesTensor(_ names: [String]) -> Tensor {
        let bytes = Array(names.joined(separator: "\n").utf8)
        let t = try! Tensor(zeros: .u8, shape: [bytes.count])
        if !bytes.isEmpty { bytes.withUnsafeBytes { t.rawPointer.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) } }
        return t
    }

    // MARK: info

    static func info(_ a: Arguments) throws {
        for f in inputs(a) {
            let r = try openRecords(f, readOptions(a))
            struct Acc { var dtype: DType; var shape: [Int]; var chunks = 0; var bytes = 0; var meta: JSON?; var tensor: Tensor? }
            var order: [String] = []
            var acc: [String: Acc] = [:]
            while let rec = try r.next() {
                if var x = acc[rec.name] {
                    if !x.shape.isEmpty { x.shape[0] += rec.tensor.rows }
                    x.chunks += 1; x.bytes += rec.tensor.byteCount
                    if rec.name == "names" { x.tensor = try Tensor.concatenate([x.tensor!, rec.tensor]) }
                    acc[rec.name] = x
                } else {
                    order.append(rec.name)
                    acc[rec.name] = Acc(dtype: rec.tensor.dtype, shape: rec.tensor.shape, chunks: 1, bytes: rec.tensor.byteCount,
                                        meta: rec.meta, tensor: rec.name == "names" ? rec.tensor : nil)
                }
            }
            let fmt = formatName(r)
            if a.has("json") {
                var o: [String: JSON] = ["file": .string(f), "format": .string(fmt)]
                if let m = r.streamMeta { o["meta"] = m }
                o["tensors"] = .array(order.map { n in
                    let x = acc[n]!
                    var t: [String: JSON] = ["name": .string(n), "dtype": .string(x.dtype.shortName),
                                             "shape": .array(x.shape.map { .number(Double($0)) }),
                                             "chunks": .number(Double(x.chunks)), "bytes": .number(Double(x.bytes))]
                    if let m = x.meta { t["meta"] = m }
                    if let nt = x.tensor, let names = classNames(nt) { t["names"] = .array(names.map { .string($0) }) }
                    return .object(t)
                })
                try writeStdout(JSON.object(o).serialized + "\n")
                continue
            }
            var s = "\(f == "-" ? "<stdin>" : f): \(fmt), \(order.count) tensor\(order.count == 1 ? "" : "s")\n"
            if let m = r.streamMeta { s += "  meta: \(m.serialized)\n" }
            let rows = order.map { n -> [String] in
                let x = acc[n]!
                return [n, x.dtype.shortName, shapeString(x.shape), "\(x.chunks)", "\(x.bytes)"]
            }
            s += table([["name", "dtype", "shape", "chunks", "bytes"]] + rows, indent: "  ", rightAlign: [3, 4])
            for n in order {
                let x = acc[n]!
                if let nt = x.tensor, let names = classNames(nt) { s += "  names: \(names.joined(separator: ", "))\n" }
                if let m = x.meta { s += "  \(n).meta: \(m.serialized)\n" }
            }
            try writeStdout(s)
        }
    }

    /// Aligned text columns.
    static func table(_ rows: [[String]], indent: String = "", rightAlign: Set<Int> = []) -> String {
        guard let w0 = rows.first?.count else { return "" }
        var widths = [Int](repeating: 0, count: w0)
        for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
        var s = ""
        for r in rows {
            var line = indent
            for (i, c) in r.enumerated() {
                let pad = String(repeating: " ", count: widths[i] - c.count)
                line += rightAlign.contains(i) ? pad + c : c + (i == r.count - 1 ? "" : pad)
                if i < r.count - 1 { line += "  " }
            }
            s += line + "\n"
        }
        return s
    }

    // MARK: cat, head, slice

    static func cat(_ a: Arguments) throws {
        let files = inputs(a)
        let first = try openRecords(files[0], readOptions(a))
        let w = try makeWriter(a, meta: first.streamMeta)
        let p = Progress("cat", unit: "bytes")
        try writing(w) {
            for (i, f) in files.enumerated() {
                let r = i == 0 ? first : try openRecords(f, readOptions(a))
                while let rec = try r.next() {
                    try w.write(rec)
                    p.advance(rec.tensor.byteCount)
                }
            }
        }
        p.finish()
    }

    static func head(_ a: Arguments) throws {
        let n = try a.int("rows", default: 10, min: 0)
        try sliceRows(a, from: 0, to: n, keep: nil)
    }

    static func slice(_ a: Arguments) throws {
        var lo = 0, hi = Int.max
        if let r = a.value("rows") {
            let parts = r.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let l = parts[0].isEmpty ? 0 : Int(parts[0]), let h = parts[1].isEmpty ? Int.max : Int(parts[1]),
                  l >= 0, h >= l else {
                throw TLError.usage("--rows needs A:B with 0 <= A <= B (either may be left out), not '\(r)'")
            }
            lo = l; hi = h
        }
        let keep = a.value("names").map { Set($0.split(separator: ",").map(String.init)) }
        try sliceRows(a, from: lo, to: hi, keep: keep)
    }

    /// Streams rows [lo, hi) of every row tensor (names pass whole), optionally only `keep`.
    static func sliceRows(_ a: Arguments, from lo: Int, to hi: Int, keep: Set<String>?) throws {
        let files = inputs(a)
        guard files.count == 1 else { throw TLError.usage("one input at a time (use 'tl-tensor cat' to join files first)") }
        let r = try openRecords(files[0], readOptions(a))
        let w = try makeWriter(a, meta: r.streamMeta)
        var seen: [String: Int] = [:]
        var found = Set<String>()
        try writing(w) {
            while let rec = try r.next() {
                if let k = keep, !k.contains(rec.name) { continue }
                found.insert(rec.name)
                guard isRowData(rec) else { try w.write(rec); continue }
                let start = seen[rec.name, default: 0]
                let n = rec.tensor.rows
                seen[rec.name] = start + n
                let a = max(lo, start) - start, b = min(hi, start + n) - start
                if a < b || (a == 0 && b == 0 && n == 0 && start == 0) {
                    var out = rec
                    out.tensor = rec.tensor.rows(max(0, a)..<max(0, b))
                    out.payloadCRC = (a == 0 && b == n) ? rec.payloadCRC : nil
                    try w.write(out)
                } else if start == 0 && a >= b {
                    // Keep an empty chunk so the tensor still appears (with its dtype and shape).
                    var out = rec
                    out.tensor = rec.tensor.rows(0..<0); out.payloadCRC = nil
                    try w.write(out)
                }
            }
            if let k = keep {
                let missing = k.subtracting(found)
                guard missing.isEmpty else { throw TLError.data("no tensor named \(missing.sorted().joined(separator: ", ")) in the input", file: files[0]) }
            }
        }
    }

    // MARK: split

    static func split(_ a: Arguments) throws {
        let outs = a.all("output")
        guard outs.count == 2 else { throw TLError.usage("split needs two outputs: -o FIRST -o SECOND") }
        guard a.has("ratio") != a.has("count") else { throw TLError.usage("give exactly one of --ratio and --count") }
        let files = inputs(a)
        guard files.count == 1 else { throw TLError.usage("one input at a time") }
        let set = try readAll(try openRecords(files[0], readOptions(a)))
        guard let key = set.tensors["x"] != nil ? "x" : set.names.first(where: { $0 != "names" && set.tensors[$0]!.rank >= 1 }) else {
            throw TLError.data("no tensor with rows to split", file: files[0])
        }
        let n = set.tensors[key]!.rows
        let target: Int
        if a.has("ratio") {
            let r = try a.double("ratio", default: 0.5)
            guard r > 0 && r < 1 else { throw TLError.usage("--ratio must be between 0 and 1, not \(r)") }
            target = Int((r * Double(n)).rounded())
        } else {
            target = try a.int("count", default: 0, min: 0)
            guard target <= n else { throw TLError.usage("--count \(target) is more than the \(n) rows of '\(key)'") }
        }
        var rng = RNG(seed: try a.uint64("seed", default: 0))
        var labels: [Int64]? = nil
        if a.has("stratify") {
            guard let y = set.tensors["y"], y.rows == n, y.rank == 1 else { throw TLError.data("--stratify needs a 1-D y with one label per row of '\(key)'", file: files[0]) }
            labels = try (0..<n).map { i in
                guard let c = y.int64(at: i) else { throw TLError.data("y[\(i)] is not an integer label", file: files[0]) }
                return c
            }
        }
        let firstRows = chooseRows(count: n, target: target, labels: labels, shuffle: !a.has("no-shuffle"), rng: &rng)
        var inFirst = [Bool](repeating: false, count: n)
        for i in firstRows { inFirst[i] = true }
        let parts = [(0..<n).filter { inFirst[$0] }, (0..<n).filter { !inFirst[$0] }]
        var writers: [RecordWriter] = []
        do {
            for (k, rows) in parts.enumerated() {
                let w = try makeWriter(a, path: outs[k], meta: set.meta)
                writers.append(w)
                for name in set.names {
                    let t = set.tensors[name]!
                    if name != "names" && t.rank >= 1 && t.rows == n {
                        try w.write(Record(name: name, tensor: try t.gathered(rows), meta: set.recordMeta[name]))
                    } else {
                        try w.write(Record(name: name, tensor: t, meta: set.recordMeta[name]))
                    }
                }
            }
            for w in writers { try w.finish() }
        } catch {
            for w in writers { w.abandon() }
            throw error
        }
        Session.note("split \(n) rows: \(parts[0].count) to \(outs[0]), \(parts[1].count) to \(outs[1])")
    }

    /// `target` of the rows 0..<n, chosen at random (or the first ones without `shuffle`); with
    /// `labels`, per class in proportion (largest-remainder quotas, so exactly `target` rows).
    /// Shared by `tl-tensor split` and `tl-train --val-split`.
    public static func chooseRows(count n: Int, target: Int, labels: [Int64]?, shuffle: Bool, rng: inout RNG) -> [Int] {
        guard let y = labels else { return shuffle ? Array(rng.permutation(n).prefix(target)) : Array(0..<target) }
        var byClass: [Int64: [Int]] = [:]
        for i in 0..<n { byClass[y[i], default: []].append(i) }
        let classes = byClass.keys.sorted()
        let exact = classes.map { Double(byClass[$0]!.count) * Double(target) / Double(max(n, 1)) }
        var quota = exact.map { Int($0) }
        var left = target - quota.reduce(0, +)
        for i in exact.indices.sorted(by: { (exact[$0] - Double(quota[$0]), -$0) > (exact[$1] - Double(quota[$1]), -$1) }) where left > 0 {
            if quota[i] < byClass[classes[i]]!.count { quota[i] += 1; left -= 1 }
        }
        var rows: [Int] = []
        for (ci, c) in classes.enumerated() {
            var r = byClass[c]!
            if shuffle { r = rng.permutation(r.count).map { r[$0] } }
            rows += r.prefix(quota[ci])
        }
        return rows
    }

    // MARK: select

    /// Rows of chosen classes (and at most N of each), relabeled 0..<k in the order given.
    static func select(_ a: Arguments) throws {
        let files = inputs(a)
        guard files.count == 1 else { throw TLError.usage("one input at a time") }
        guard a.has("classes") || a.has("per-class") else { throw TLError.usage("give --classes, --per-class or both") }
        let set = try readAll(try openRecords(files[0], readOptions(a)))
        guard let y = set.tensors["y"], y.rank == 1 else { throw TLError.data("no 1-D 'y' record (class labels) to select by", file: files[0]) }
        let n = y.rows
        let labels: [Int] = try (0..<n).map { i in
            guard let c = y.int64(at: i), c >= 0, c < Int64(Int32.max) else { throw TLError.data("y[\(i)] is not a class label", file: files[0]) }
            return Int(c)
        }
        let names = set.tensors["names"].flatMap(classNames)
        let k = max(names?.count ?? 0, (labels.max() ?? -1) + 1)
        var chosen: [Int] = Array(0..<k)
        if let list = a.value("classes") { chosen = try parseClasses(list, names: names, count: k) }
        let perClass = try a.value("per-class").map { _ in try a.int("per-class", default: 1, min: 1) }
        var position = [Int](repeating: -1, count: k)
        for (i, c) in chosen.enumerated() { position[c] = i }
        // Candidate rows by class, then (with --per-class) a seeded choice of N of each, in input order.
        var byClass = [[Int]](repeating: [], count: chosen.count)
        for i in 0..<n where labels[i] < k && position[labels[i]] >= 0 { byClass[position[labels[i]]].append(i) }
        var rng = RNG(seed: try a.uint64("seed", default: 0), stream: 0x5E1E)
        var rows: [Int] = []
        for (ci, r) in byClass.enumerated() {
            guard let m = perClass else { rows += r; continue }
            if r.count < m { Session.note("class \(chosen[ci]) has \(r.count) rows, fewer than --per-class \(m); keeping all") }
            rows += rng.permutation(r.count).prefix(m).map { r[$0] }
        }
        rows.sort()
        let relabel = !a.has("keep-labels")
        let w = try makeWriter(a, meta: set.meta)
        try writing(w) {
            for name in set.names {
                let t = set.tensors[name]!
                if name == "y" {
                    let out = try Tensor(zeros: y.dtype == .u8 && chosen.count <= 256 ? .u8 : .i64, shape: [rows.count])
                    for (j, i) in rows.enumerated() { try out.setInteger(Int64(relabel ? position[labels[i]] : labels[i]), at: j) }
                    try w.write(Record(name: name, tensor: out, meta: set.recordMeta[name]))
                } else if name == "names" {
                    let keep = relabel ? names.map { nm in chosen.map { $0 < nm.count ? nm[$0] : String($0) } } : names
                    try w.write(Record(name: name, tensor: keep.map(namesTensor) ?? t, meta: set.recordMeta[name]))
                } else if t.rank >= 1 && t.rows == n {
                    try w.write(Record(name: name, tensor: try t.gathered(rows), meta: set.recordMeta[name]))
                } else {
                    try w.write(Record(name: name, tensor: t, meta: set.recordMeta[name]))
                }
            }
        }
        Session.note("selected \(rows.count) of \(n) rows, \(chosen.count) classes" + (relabel ? " (relabeled 0-\(chosen.count - 1))" : ""))
    }

    /// "5-9", "0,2,4", "Sandal,Bag" (class names), or a mix; each class once.
    static func parseClasses(_ s: String, names: [String]?, count k: Int) throws -> [Int] {
        var out: [Int] = []
        for item in s.split(separator: ",").map({ String($0).trimmingSpaces }) {
            if let v = Int(item) { out.append(v) }
            else if let dash = item.firstIndex(of: "-"), let lo = Int(item[..<dash]), let hi = Int(item[item.index(after: dash)...]), lo <= hi {
                out += Array(lo...hi)
            } else if let i = names?.firstIndex(of: item) { out.append(i) }
            else { throw TLError.usage("--classes: '\(item)' is neither a label, a range like 5-9, nor a class name") }
        }
        for v in out where v < 0 || v >= k { throw TLError.usage("--classes: class \(v) does not exist (labels are 0-\(k - 1))") }
        guard Set(out).count == out.count, !out.isEmpty else { throw TLError.usage("--classes: each class once, at least one") }
        return out
    }

    // MARK: convert

    static func convert(_ a: Arguments) throws {
        guard (1...2).contains(a.positionals.count) else { throw TLError.usage("convert needs IN and OUT (or IN -o OUT)") }
        guard !(a.positionals.count == 2 && a.has("output")) else { throw TLError.usage("give OUT or -o OUT, not both") }
        var casts: [String: DType] = [:]
        for d in a.all("dtype") {
            let (n, t) = d.firstIndex(of: "=").map { (String(d[..<$0]), String(d[d.index(after: $0)...])) } ?? ("x", d)
            guard let dt = DType(name: t) else { throw TLError.usage("unknown dtype '\(t)'") }
            casts[n] = dt
        }
        let outPath = a.positionals.count == 2 ? a.positionals[1] : (a.value("output") ?? "-")
        let inPath = a.positionals[0]
        let modelOptions = ["arch", "input-shape", "mean", "std", "scale", "classes", "output-value"].filter { a.has($0) }
        if inPath.lowercased().hasSuffix(".onnx") || a.has("arch") {
            return try convertModel(a, inPath, outPath)
        }
        if let o = modelOptions.first { throw TLError.usage("--\(o) is for models: an .onnx input, or a state dict with --arch") }
        if outPath.lowercased().hasSuffix(".onnx") || a.value("to")?.lowercased() == "onnx" {
            return try exportONNX(inPath, outPath)
        }
        let r = try openRecords(a.positionals[0], readOptions(a))
        let w = try makeWriter(a, path: outPath, meta: r.streamMeta)
        w.select = a.value("name")
        w.csvHeader = a.has("header")
        let p = Progress("convert")
        var applied = Set<String>()
        try writing(w) {
            var i = 0
            while let rec = try r.next() {
                var out = rec
                if let dt = casts[rec.name], dt != rec.tensor.dtype {
                    out.tensor = try annotating(file: r.fileName, location: "tensor '\(rec.name)'") { try rec.tensor.converted(to: dt) }
                    out.payloadCRC = nil
                }
                if casts[rec.name] != nil { applied.insert(rec.name) }
                try w.write(out)
                if rec.name == "x" || (i == 0 && rec.name != "y") { p.advance(rec.tensor.rows) }
                i += 1
            }
            let missing = Set(casts.keys).subtracting(applied)
            guard missing.isEmpty else { throw TLError.data("--dtype names \(missing.sorted().joined(separator: ", ")), which the input does not have", file: r.fileName) }
        }
        p.finish()
    }

    /// A network from an ONNX model or from a state dict and an architecture, written as a model
    /// file (or as ONNX again).
    static func convertModel(_ a: Arguments, _ inPath: String, _ outPath: String) throws {
        var classes: [String] = []
        if let c = a.value("classes") {
            let text = String(decoding: try Input.open(c).reader().readToEnd(limit: 16 << 20), as: UTF8.self)
            classes = text.split(separator: "\n", omittingEmptySubsequences: false).map { String($0).trimmingSpaces }
            while classes.last == "" { classes.removeLast() }
            guard !classes.isEmpty else { throw TLError.data("no class names", file: c) }
        }
        func floats(_ k: String) throws -> [Float]? {
            guard let v = a.value(k) else { return nil }
            let f = v.split(separator: ",").compactMap { Float(String($0).trimmingSpaces) }
            guard !f.isEmpty, f.count == v.split(separator: ",").count, f.allSatisfy({ $0.isFinite }) else { throw TLError.usage("--\(k) needs numbers, not '\(v)'") }
            return f
        }
        var spec = InputSpec(shape: [1])
        if let m = try floats("mean") { spec.mean = m }
        if let d = try floats("std") {
            guard d.allSatisfy({ $0 > 0 }) else { throw TLError.usage("--std must be positive") }
            spec.std = d
        }
        if a.has("scale") { spec.scale = Float(try a.double("scale", default: 1)) }
        let net: Network
        if inPath.lowercased().hasSuffix(".onnx") {
            if a.has("arch") || a.has("input-shape") { throw TLError.usage("an ONNX model brings its architecture and input shape; --arch and --input-shape are for state dicts") }
            net = try Network.importONNX(inPath, input: spec, classes: classes, primary: a.value("output-value"))
        } else {
            guard let arch = a.value("arch") else { throw TLError.usage("a state dict needs --arch") }
            guard let sh = a.value("input-shape") else { throw TLError.usage("--arch needs --input-shape (e.g. 1x28x28)") }
            let dims = sh.split(separator: "x").compactMap { Int($0) }
            guard !dims.isEmpty, dims.count == sh.split(separator: "x").count, dims.allSatisfy({ $0 > 0 }) else { throw TLError.usage("--input-shape needs sizes like 1x28x28, not '\(sh)'") }
            spec.shape = dims
            net = try StateDict.load(inPath, arch: Architectures.expand(arch), archName: arch, input: spec, classes: classes)
        }
        // The normalization must fit the input (1 value, or one per channel).
        let c = net.input.channels
        guard [1, c].contains(net.input.mean.count), [1, c].contains(net.input.std.count) else {
            throw TLError.usage("--mean and --std need 1 or \(c) values for input \(shapeString(net.input.shape))")
        }
        if outPath.lowercased().hasSuffix(".onnx") || a.value("to")?.lowercased() == "onnx" {
            let bytes = try annotating(file: inPath) { try ONNXExport.model(net, producer: "tl", version: tlVersion) }
            let o = try Output(outPath)
            do { try o.write(bytes); try o.commit() } catch { o.abandon(); throw error }
        } else {
            try net.save(outPath, producer: producer)
        }
        Session.note("\(inPath): \(net.arch == "graph" ? "graph of \(net.graph!.description.nodes.count) nodes" : net.arch), \(net.parameterCount) parameters, input \(shapeString(net.input.shape)), \(net.classes.count) classes")
    }

    /// A model file (.tlm) as an ONNX model.
    static func exportONNX(_ inPath: String, _ outPath: String) throws {
        let net = try Network.load(inPath).0
        let bytes = try annotating(file: inPath) { try ONNXExport.model(net, producer: "tl", version: tlVersion) }
        let o = try Output(outPath)
        do { try o.write(bytes); try o.commit() } catch { o.abandon(); throw error }
        Session.note("\(inPath): \(net.parameterCount) parameters as ONNX opset \(ONNXExport.opset), \(bytes.count) bytes")
    }

    // MARK: stats

    /// Per-channel moments, merged chunk by chunk (Chan et al.'s parallel update; double precision).
    struct Moments {
        var n = 0.0, mean = 0.0, m2 = 0.0, lo = Double.infinity, hi = -Double.infinity, nan = 0
        mutating func merge(n nb: Double, mean mb: Double, m2 m2b: Double) {
            guard nb > 0 else { return }
            let d = mb - mean, tot = n + nb
            mean += d * nb / tot
            m2 += m2b + d * d * n * nb / tot
            n = tot
        }
    }

    static func stats(_ a: Arguments) throws {
        let files = inputs(a)
        guard files.count == 1 else { throw TLError.usage("one input at a time") }
        let name = a.value("name") ?? "x"
        let r = try openRecords(files[0], readOptions(a))
        var ch: [Moments] = []
        var shape: [Int]? = nil
        var dtype = DType.f32
        let p = Progress("stats")
        while let rec = try r.next() {
            guard rec.name == name else { continue }
            let t = rec.tensor
            // [N,D]: per column; [N,H,W] (gray images): one channel; [N,C,...]: per C.
            let c = (t.rank == 2 || t.rank >= 4) ? t.shape[1] : 1
            let inner = t.rank == 3 ? t.shape[1...].reduce(1, *) : (t.rank >= 4 ? t.shape[2...].reduce(1, *) : 1)
            if shape == nil { shape = t.shape; shape![0] = 0; dtype = t.dtype; ch = [Moments](repeating: Moments(), count: c) }
            shape![0] += t.rows
            let rows = t.rank == 0 ? 1 : t.rows
            for k in 0..<c {
                var s = 0.0, cnt = 0.0
                var lo = ch[k].lo, hi = ch[k].hi, nan = 0
                for r0 in 0..<rows { for j in 0..<inner {
                    let v = t.double(at: (r0 * c + k) * inner + j)
                    if v.isNaN { nan += 1; continue }
                    s += v; cnt += 1; lo = min(lo, v); hi = max(hi, v)
                } }
                let m = cnt > 0 ? s / cnt : 0
                var m2 = 0.0
                for r0 in 0..<rows { for j in 0..<inner {
                    let v = t.double(at: (r0 * c + k) * inner + j)
                    if !v.isNaN { m2 += (v - m) * (v - m) }
                } }
                ch[k].merge(n: cnt, mean: m, m2: m2)
                ch[k].lo = lo; ch[k].hi = hi; ch[k].nan += nan
            }
            p.advance(rows)
        }
        p.finish()
        guard let s = shape else { throw TLError.data("no tensor named '\(name)' in the input", file: files[0]) }
        var all = Moments()
        for m in ch { all.merge(n: m.n, mean: m.mean, m2: m.m2); all.lo = min(all.lo, m.lo); all.hi = max(all.hi, m.hi); all.nan += m.nan }
        func std(_ m: Moments) -> Double { m.n > 0 ? (m.m2 / m.n).squareRoot() : .nan }
        if a.has("json") {
            func obj(_ m: Moments) -> JSON {
                ["count": .number(m.n), "mean": .number(m.mean), "std": .number(std(m)), "min": .number(m.lo), "max": .number(m.hi), "nan": .number(Double(m.nan))]
            }
            let o: JSON = ["name": .string(name), "dtype": .string(dtype.shortName), "shape": .array(s.map { .number(Double($0)) }),
                           "all": obj(all), "channels": .array(ch.map(obj))]
            try writeStdout(o.serialized + "\n")
            return
        }
        var rows = [["channel", "count", "mean", "std", "min", "max"]]
        func row(_ label: String, _ m: Moments) -> [String] {
            [label, "\(Int(m.n))", sig(m.mean), sig(std(m)), sig(m.lo), sig(m.hi)] + (all.nan > 0 ? ["\(m.nan)"] : [])
        }
        if all.nan > 0 { rows[0].append("nan") }
        if ch.count > 1 { for (k, m) in ch.enumerated() { rows.append(row("\(k)", m)) } }
        rows.append(row("all", all))
        try writeStdout("\(name): \(dtype.shortName) \(shapeString(s))\n" + table(rows, rightAlign: Set(1..<rows[0].count)))
    }

    // MARK: stack

    static func stack(_ a: Arguments) throws {
        guard !a.positionals.isEmpty else { throw TLError.usage("stack needs at least one input") }
        var readers: [(RecordReader, String?)] = []
        for arg in a.positionals {
            var path = arg, rename: String? = nil
            if let eq = arg.firstIndex(of: "="), isIdentifier(arg[..<eq]) {
                rename = String(arg[..<eq]); path = String(arg[arg.index(after: eq)...])
            }
            if path.lowercased().hasSuffix(".txt") {
                let bytes = try Input.open(path).reader().readToEnd(limit: 1 << 26)
                guard let text = String(validating: bytes, as: UTF8.self) else { throw TLError.data("not valid UTF-8 text", file: path) }
                var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { String($0.hasSuffix("\r") ? $0.dropLast() : $0) }
                while lines.last == "" { lines.removeLast() }
                readers.append((SingleRecordReader(Record(name: rename ?? "names", tensor: namesTensor(lines)), fileName: path), nil))
                continue
            }
            var o = readOptions(a)
            o.name = rename
            readers.append((try openRecords(path, o), rename))
        }
        let meta = readers.lazy.compactMap { $0.0.streamMeta }.first
        let w = try makeWriter(a, meta: meta)
        var owner: [String: String] = [:]
        var rows: [String: Int] = [:]
        try writing(w) {
            var active = Array(readers.indices)
            while !active.isEmpty {
                var still: [Int] = []
                for i in active {
                    let (r, rename) = readers[i]
                    guard var rec = try r.next() else { continue }
                    if let n = rename, !(r is NPZReader) && !(r is TLTMappedReader) && !(r is TLTStreamReader) { rec.name = n }
                    if let o = owner[rec.name], o != r.fileName {
                        throw TLError.usage("tensor '\(rec.name)' comes from both \(o) and \(r.fileName); rename one with NAME=FILE")
                    }
                    owner[rec.name] = r.fileName
                    if isRowData(rec) { rows[rec.name, default: 0] += rec.tensor.rows }
                    try w.write(rec)
                    still.append(i)
                }
                active = still
            }
            let conventional = ["x", "y", "domain"].filter { rows[$0] != nil }
            if let f = conventional.first, conventional.contains(where: { rows[$0] != rows[f] }) {
                throw TLError.data("row counts differ: " + conventional.map { "\($0) has \(rows[$0]!)" }.joined(separator: ", "))
            }
        }
    }

    static func isIdentifier(_ s: Substring) -> Bool {
        guard let f = s.first, f.isLetter || f == "_" else { return false }
        return s.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." }
    }
}
