import Glibc
import TLCore
import TLNN
import TLMethods

/// `tl-extract`: run a frozen network up to a layer over images and write the features.
public enum ExtractTool {
    static let producer = "tl-extract \(tlVersion)"

    static let spec = CommandSpec(
        name: "tl-extract", usage: ["--model MODEL [OPTIONS] [INPUT...] [-o FILE]", "--model MODEL --list-layers"],
        summary: """
        Run MODEL, frozen, over the images in INPUT and write the activations of one layer (the
        "CNN codes") as x, passing y, domain, names and every other record through unchanged.
        INPUT is a tl-format stream, .npy, IDX, a directory of PGM/PPM images or a list of them
        ('-' or none: standard input). Images get the model's own preparation: gray becomes RGB
        (or RGB gray) as the model needs, other sizes are resized (bilinear), then the model's
        normalization. Streams with bounded memory, a batch at a time.
        """,
        options: [
            Option("model", "m", value: "MODEL", help: "the network (.tlm)"),
            Option("layer", "l", value: "NAME", help: "the layer whose output to write (default: the one before the classifier)"),
            Option("no-activation", help: "do not apply the activation that follows the layer (default: apply it, e.g. fc1 then relu)"),
            Option("list-layers", help: "print the layers, their output shapes and the default, then exit"),
            Option("task", value: "NAME", help: "a multi-head model's task whose classifier the default layer precedes (default: its first)"),
            Option("pool", value: "HOW", help: "pool [C, H, W] codes over space to C values: avg or max (default: none)"),
            Option("batch", "b", value: "N", help: "images per forward pass, per thread (default 32)"),
            Option("dtype", value: "TYPE", help: "f32 or f16 (half the size; default f32)"),
            Option("threads", "j", value: "N", help: "threads (default: all CPUs)"),
            Option("output", "o", value: "FILE", help: "write to FILE (format from its extension: .tlt, .npy, .npz, ...; default: stdout)"),
        ])

    public static func main() -> Never { runCommand(spec, run) }

    static func run(_ a: Arguments) throws {
        guard let modelPath = a.value("model") else { throw TLError.usage("--model is required") }
        let threads = try a.int("threads", default: Threads.count, min: 1)
        Threads.count = threads
        let net = try Network.load(modelPath).0
        if a.has("list-layers") { try writeStdout(try layerList(net, modelPath)); return }
        guard let pooling = FeatureExtractor.Pooling(rawValue: a.value("pool") ?? "none") else {
            throw TLError.usage("--pool must be avg or max, not '\(a.value("pool")!)'")
        }
        let ex = try annotating(file: modelPath) {
            try FeatureExtractor(net: net, layer: a.value("layer"), activation: !a.has("no-activation"),
                                 batch: try a.int("batch", default: 32, min: 1), threads: threads, pooling: pooling,
                                 task: try net.task(a.value("task")))
        }
        let outType: DType
        switch a.value("dtype") ?? "f32" {
        case "f32": outType = .f32
        case "f16": outType = .f16
        case let t: throw TLError.usage("--dtype must be f32 or f16, not '\(t)'")
        }
        let reader = try openInputs(a.positionals)
        var meta: [String: JSON] = [:]
        if case .object(let m)? = reader.streamMeta { meta = m }
        meta["kind"] = "features"
        meta["model"] = .string(modelPath)
        meta["model_arch"] = .string(net.arch)
        meta["layer"] = .string(ex.cut.layer)
        meta["activation"] = ex.cut.activation.map { .string($0) } ?? .null
        meta["features"] = .array(ex.shape.map { .number(Double($0)) })
        if pooling != .none { meta["pooling"] = .string(pooling.rawValue) }
        if meta["classes"] == nil { meta["source_classes"] = .array(net.classes.map { .string($0) }) }
        let w = try RecordWriter(a.value("output") ?? "-", producer: producer, meta: .object(meta))
        let recordMeta: JSON = ["layer": .string(ex.cut.layer), "activation": ex.cut.activation.map { .string($0) } ?? .null]
        Session.note("\(net.arch.count > 60 ? String(net.arch.prefix(57)) + "..." : net.arch): features of \(ex.cut.layer)" +
                     (ex.cut.activation.map { " after \($0)" } ?? "") + (pooling == .none ? "" : ", \(pooling.rawValue)-pooled") + ", \(shapeString(ex.shape)) per image")
        let progress = Progress("extract", total: knownRows(reader), unit: "img")
        // Chunks of about 4 MiB of output, whole batches.
        let chunkRows = max(ex.batch, (4 << 20) / max(ex.width * 4, 1) / ex.batch * ex.batch)
        try TensorTool.writing(w) {
            var sawX = false
            while let r = try reader.next() {
                guard r.name == "x" else { try w.write(r); continue }
                sawX = true
                let raw = try annotating(file: reader.fileName) { try pixels(r) }
                var i = 0
                while i < raw.rows {
                    let j = min(raw.rows, i + chunkRows)
                    let part = raw.rows(i..<j)
                    var f = try annotating(file: reader.fileName, location: "x rows \(i)..<\(j)") { try ex.features(part) }
                    if outType != .f32 { f = try f.converted(to: outType) }
                    try w.write(Record(name: "x", tensor: f, meta: recordMeta))
                    // A mapped input: the rows are done, let their pages go (bounded memory).
                    part.storage.releaseMappedPages(offset: part.offset, count: part.byteCount)
                    progress.advance(j - i)
                    i = j
                }
            }
            guard sawX else { throw TLError.data("no 'x' record (images) in the input", file: reader.fileName) }
        }
        progress.finish()
    }

    /// One input stream, or a list of PGM/PPM files (each image prepared on its own).
    static func openInputs(_ paths: [String]) throws -> RecordReader {
        if paths.count <= 1 {
            let r = try openRecords(paths.first ?? "-")
            (r as? PNMReader)?.uniform = false
            return r
        }
        let images = paths.filter { p in [".pgm", ".ppm", ".pnm"].contains { p.lowercased().hasSuffix($0) } }
        guard images.count == paths.count else {
            throw TLError.usage("several inputs must all be PGM/PPM images; join streams first (tl-tensor cat)")
        }
        let r = try PNMReader(files: paths, name: paths[0])
        r.uniform = false
        return r
    }

    /// Image values in the units the model was trained on: 16-bit and other-maxval PGM/PPM
    /// images are rescaled to 0-255.
    static func pixels(_ r: Record) throws -> Tensor {
        let t = r.tensor
        guard t.rank >= 2 else { throw TLError.data("'x' is \(shapeString(t.shape)); it needs a row per image") }
        let maxval = r.meta?["maxval"]?.number ?? (t.dtype == .u16 ? 65535 : nil)
        guard let m = maxval, m != 255 else { return t }
        let f = try t.converted(to: .f32).copy()
        for i in 0..<f.count { f.f32[i] *= Float(255 / m) }
        return f
    }

    /// Rows of x when the reader knows them up front (mapped files, lists of images).
    static func knownRows(_ r: RecordReader) -> Int? {
        if let m = r as? TLTMappedReader { return m.records.filter { $0.name == "x" }.reduce(0) { $0 + $1.tensor.rows } }
        return nil
    }

    static func layerList(_ net: Network, _ path: String) throws -> String {
        let shapes = try annotating(file: path) { try net.layerShapes() }
        let def = try? net.cut(layer: nil, activation: true)
        var rows: [[String]] = [["layer", "spec", "output", ""]]
        rows.append(["(input)", "", shapeString(net.input.shape), ""])
        for (name, spec, shape) in shapes {
            var mark = ""
            if let d = def { if name == d.layer { mark = "default" + (d.activation.map { " (then \($0))" } ?? "") } }
            if net.tasks.count > 1, let t = net.tasks.first(where: { $0.output == name }) {
                mark += (mark.isEmpty ? "" : "; ") + "scores of task " + (t.name.isEmpty ? "(default)" : t.name)
            }
            rows.append([name, spec.count > 40 ? String(spec.prefix(37)) + "..." : spec, shapeString(shape), mark])
        }
        return TensorTool.table(rows)
    }
}
