import Glibc
import TLCore
import TLNN
import TLMethods

/// `tl-eval`: classification metrics for a model over a labeled stream, or for a stream that
/// already holds predictions; `--predict` writes the predictions instead.
public enum EvalTool {
    static let producer = "tl-eval \(tlVersion)"

    static let spec = CommandSpec(
        name: "tl-eval", usage: ["[--model MODEL] [OPTIONS] [INPUT]", "--model MODEL --predict [OPTIONS] [INPUT] [-o FILE]"],
        summary: """
        Evaluate a classifier. With --model, run MODEL over the x of INPUT (images, or features
        from tl-extract); without it, INPUT must hold predictions: pred (class indices) or prob,
        score or logits (one row of class scores per example). With labels y, print accuracy,
        top-k accuracy, per-class precision, recall and F1, macro-F1 and the confusion matrix,
        as an aligned table or --json. With --predict, write pred and prob (softmax of the
        outputs; score for an SVM) records instead, passing y, names and the rest through.
        INPUT '-' or none: standard input.
        """,
        options: [
            Option("model", "m", value: "MODEL", help: "the classifier (.tlm) to run over x"),
            Option("top-k", "k", value: "K", help: "also report top-K accuracy (default 5 when there are more than 5 classes)"),
            Option("json", help: "the report as one JSON object"),
            Option("predict", help: "write a stream with pred and prob (or score) records instead of a report"),
            Option("task", value: "NAME", help: "the task of a multi-head model to run (labels y.NAME, else y); default: its first"),
            Option("batch", "b", value: "N", help: "rows per forward pass, per thread (default 32)"),
            Option("threads", "j", value: "N", help: "threads (default: all CPUs)"),
            Option("output", "o", value: "FILE", help: "write the report or the predictions to FILE (default: stdout)"),
        ])

    public static func main() -> Never { runCommand(spec, run) }

    static func run(_ a: Arguments) throws {
        guard a.positionals.count <= 1 else { throw TLError.usage("one input at a time") }
        let path = a.positionals.first ?? "-"
        let threads = try a.int("threads", default: Threads.count, min: 1)
        Threads.count = threads
        let batch = try a.int("batch", default: 32, min: 1)
        let model = try a.value("model").map { p in (try Network.load(p).0, p) }
        let predict = a.has("predict")
        if predict && model == nil { throw TLError.usage("--predict needs --model") }
        if predict && a.has("json") { throw TLError.usage("--predict writes a stream; --json is for the report") }
        let topArg = try a.value("top-k").map { _ in try a.int("top-k", default: 5, min: 1) }

        // The task's whole network, run as tl-extract runs a cut of it (threads split the rows).
        let task = try model.map { m in try annotating(file: m.1) { try m.0.task(a.value("task")) } }
        let labelRecord = a.value("task").map { $0.isEmpty ? "y" : "y.\($0)" } ?? "y"
        let runner = try model.map { m in
            try annotating(file: m.1) { try FeatureExtractor(net: m.0, layer: task!.output, activation: false, batch: batch, threads: threads, task: task) }
        }
        let reader = try openRecords(path)
        // Ranked classes per row (kmax each), labels, and the class names as found.
        var kmax = max(topArg ?? 5, 1)
        var ranked: [Int32] = [], labels: [Int] = [], taskLabels: [Int] = [], names: [String]? = task?.classes
        var classes = task?.classes.count ?? 0
        var predSource: String? = nil, preds: [Int32] = []
        let svm = model?.0.meta["linear"]?["loss"]?.string == "svm"
        var writer: RecordWriter? = nil
        if predict {
            var meta: [String: JSON] = reader.streamMeta?.object ?? [:]
            meta["kind"] = "predictions"; meta["model"] = .string(model!.1)
            meta["classes"] = .array(task!.classes.map { .string($0) })
            if let t = task, !t.name.isEmpty { meta["task"] = .string(t.name) }
            writer = try RecordWriter(a.value("output") ?? "-", producer: producer, meta: .object(meta))
        }
        let progress = Progress(predict ? "predict" : "eval", total: ExtractTool.knownRows(reader), unit: "rows")
        func consume() throws {
            while let r = try reader.next() {
                let t = r.tensor
                switch r.name {
                case "x" where model != nil:
                    let (_, mp) = model!
                    let k = task!.classes.count
                    guard let ex = runner else { break }
                    guard ex.cut.shape == [k] else {
                        throw TLError.data("the model's output is \(shapeString(ex.cut.shape)), not one score per class", file: mp)
                    }
                    kmax = min(kmax, k)
                    // Chunks of 4096 rows: bounded memory, both threads busy.
                    var i = 0
                    while i < t.rows {
                        let j = min(t.rows, i + 4096)
                        let logits = try annotating(file: reader.fileName, location: "x rows \(i)..<\(j)") { try ex.features(t.rows(i..<j)) }
                        ClassificationReport.rank(rows: j - i, classes: k, scores: logits.f32, k: kmax, into: &ranked)
                        if let w = writer { try writePredictions(w, logits, svm: svm, ranked: ranked, k: kmax) }
                        progress.advance(j - i)
                        i = j
                    }
                    predSource = "model"
                case "pred" where model == nil:
                    guard t.rank == 1 else { throw TLError.data("'pred' must be one class index per row, not \(shapeString(t.shape))", file: reader.fileName) }
                    preds += try LinearProbe.checkedLabels(t, Int(Int32.max), firstRow: preds.count).map { Int32($0) }
                case "prob" where model == nil, "score" where model == nil, "logits" where model == nil:
                    guard predSource == nil || predSource == r.name else { continue }
                    guard t.rank == 2, t.shape[1] >= 1 else { throw TLError.data("'\(r.name)' must be [rows, classes], not \(shapeString(t.shape))", file: reader.fileName) }
                    predSource = r.name
                    classes = max(classes, t.shape[1]); kmax = min(kmax, t.shape[1])
                    let f = try t.converted(to: .f32)
                    ClassificationReport.rank(rows: t.rows, classes: t.shape[1], scores: f.f32, k: kmax, into: &ranked)
                case "y", labelRecord:
                    guard t.rank == 1 else { throw TLError.data("'\(r.name)' must be one label per row, not \(shapeString(t.shape))", file: reader.fileName) }
                    if r.name == "y" {
                        labels += try annotating(file: reader.fileName) { try LinearProbe.checkedLabels(t, Int(Int32.max), firstRow: labels.count, missing: true) }
                    } else {
                        taskLabels += try annotating(file: reader.fileName) { try LinearProbe.checkedLabels(t, Int(Int32.max), firstRow: taskLabels.count, missing: true) }
                    }
                    try writer?.write(r)
                case "names":
                    if names == nil { names = TensorTool.classNames(t) }
                    try writer?.write(r)
                default:
                    try writer?.write(r)
                }
            }
        }
        if let w = writer { try TensorTool.writing(w, consume) } else { try consume() }
        progress.finish()
        // Class scores rank every class (top-k); a pred record alone gives the first only.
        if predSource == nil && !preds.isEmpty { predSource = "pred"; kmax = 1; ranked = preds }

        guard let source = predSource else {
            throw TLError.data(model == nil ? "no predictions (pred, prob, score or logits) in the input, and no --model to make them"
                                            : "no 'x' record (inputs) in the input", file: reader.fileName)
        }
        var rows = ranked.count / kmax
        if !taskLabels.isEmpty { labels = taskLabels }
        if labels.isEmpty {
            if predict { return }
            throw TLError.data("no labels ('y') to evaluate against", file: reader.fileName)
        }
        guard labels.count == rows else {
            throw TLError.data("\(labels.count) labels for \(rows) predictions (from \(source))", file: reader.fileName)
        }
        // Rows without a label (−1, multitask data) are left out of the report.
        if labels.contains(-1) {
            let keep = labels.indices.filter { labels[$0] >= 0 }
            Session.note("\(labels.count - keep.count) of \(labels.count) rows have no label (-1) and are left out")
            ranked = keep.flatMap { ranked[($0 * kmax)..<(($0 + 1) * kmax)] }
            labels = keep.map { labels[$0] }
            guard !labels.isEmpty else { throw TLError.data("no row has a label", file: reader.fileName) }
        }
        rows = labels.count
        let maxLabel = labels.max() ?? 0, maxPred = Int(ranked.max() ?? 0)
        if classes == 0 { classes = max(names?.count ?? 0, maxLabel + 1, maxPred + 1) }
        if let bad = labels.firstIndex(where: { $0 >= classes }) {
            throw TLError.data("label \(labels[bad]) is out of range for \(classes) classes", file: reader.fileName, location: "y row \(bad)")
        }
        if maxPred >= classes { throw TLError.data("prediction \(maxPred) is out of range for \(classes) classes", file: reader.fileName) }
        let tops = (topArg.map { [$0] } ?? (classes > 5 ? [5] : [])).filter { $0 > 1 && $0 <= kmax }
        var report = ClassificationReport(classes: classes, topK: tops)
        for i in 0..<rows { report.add(label: labels[i], ranked: ranked[(i * kmax)..<((i + 1) * kmax)]) }
        var classNames = (0..<classes).map(String.init)
        if let n = names, n.count == classes { classNames = n }
        if predict {
            Session.note("accuracy \(fixed(report.accuracy * 100, 2))% (\(report.correct)/\(report.total))")
            return
        }
        let text = a.has("json") ? json(report, classNames, tops).serialized + "\n" : table(report, classNames, tops)
        let out = try Output(a.value("output") ?? "-", binary: false)
        do { try out.write(text); try out.commit() } catch { out.abandon(); throw error }
    }

    static func writePredictions(_ w: RecordWriter, _ logits: Tensor, svm: Bool, ranked: [Int32], k: Int) throws {
        let n = logits.rows, c = logits.shape[1]
        let pred = try Tensor(zeros: .i64, shape: [n])
        let pp = pred.rawPointer.assumingMemoryBound(to: Int64.self)
        let base = ranked.count - n * k
        for i in 0..<n { pp[i] = Int64(ranked[base + i * k]) }
        try w.write(Record(name: "pred", tensor: pred))
        if svm {
            try w.write(Record(name: "score", tensor: logits.copy()))
        } else {
            let prob = try Tensor(zeros: .f32, shape: [n, c])
            Elementwise.softmaxRows(rows: n, cols: c, x: logits.f32, y: prob.f32)
            try w.write(Record(name: "prob", tensor: prob))
        }
    }

    static func pct(_ x: Double) -> String { fixed(x * 100, 2) + "%" }

    static func table(_ r: ClassificationReport, _ names: [String], _ tops: [Int]) -> String {
        var s = "accuracy  \(pct(r.accuracy))  (\(r.correct)/\(r.total))\n"
        for k in tops { s += "top-\(k)     \(pct(r.topK(k) ?? 0))\n" }
        s += "macro-F1  \(fixed(r.macroF1, 4))\n\n"
        var rows: [[String]] = [["class", "precision", "recall", "f1", "support"]]
        for c in 0..<r.classes {
            rows.append(["\(c) \(names[c])", fixed(r.precision(c), 4), fixed(r.recall(c), 4), fixed(r.f1(c), 4), String(r.support(c))])
        }
        s += TensorTool.table(rows, rightAlign: [1, 2, 3, 4])
        s += "\nconfusion (rows: true class, columns: predicted)\n"
        var conf: [[String]] = [[""] + (0..<r.classes).map(String.init)]
        for t in 0..<r.classes { conf.append(["\(t) \(names[t])"] + (0..<r.classes).map { String(r.count(t, $0)) }) }
        s += TensorTool.table(conf, rightAlign: Set(1...r.classes))
        return s
    }

    static func json(_ r: ClassificationReport, _ names: [String], _ tops: [Int]) -> JSON {
        var top: [String: JSON] = [:]
        for k in tops { top[String(k)] = .number(r.topK(k) ?? 0) }
        return ["accuracy": .number(r.accuracy), "correct": .number(Double(r.correct)), "count": .number(Double(r.total)),
                "top_k": .object(top), "macro_f1": .number(r.macroF1),
                "classes": .array(names.map { .string($0) }),
                "per_class": .array((0..<r.classes).map { c in
                    ["class": .string(names[c]), "precision": .number(r.precision(c)), "recall": .number(r.recall(c)),
                     "f1": .number(r.f1(c)), "support": .number(Double(r.support(c)))] }),
                "confusion": .array((0..<r.classes).map { t in .array((0..<r.classes).map { .number(Double(r.count(t, $0))) }) })]
    }
}
