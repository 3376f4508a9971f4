import TLCore
import TLNN
import TLMethods

/// tl-train's fine-tuning and multitask options, checked together, and the network they build.
struct FineTuneOptions {
    static let all = ["init", "copy", "freeze", "lr-copied", "lr-new", "unfreeze-every", "l2-sp", "l2-new", "lwf", "temperature", "keep-source",
                      "progressive", "multitask", "task-weights", "input-layers"]
    var initPath: String?
    var copy: String?, freeze: String?
    var lrCopied: Float = 1, lrNew: Float = 1
    var unfreezeEvery: Int?
    var alpha: Float = 0, beta: Float = 0
    var lwf: Float?
    var temperature: Float = 2
    var progressive = false, multitask = false, keepSource = false
    var weights: [String: Float] = [:]
    var inputLayers: Int?

    init(_ a: Arguments) throws {
        initPath = a.value("init")
        let needInit = ["copy", "lr-copied", "lr-new", "unfreeze-every", "l2-sp", "l2-new", "lwf", "temperature", "progressive", "keep-source"]
        if initPath == nil, let o = needInit.first(where: { a.has($0) }) { throw TLError.usage("--\(o) needs --init MODEL") }
        multitask = a.has("multitask")
        if !multitask, let o = ["task-weights", "input-layers"].first(where: { a.has($0) }) { throw TLError.usage("--\(o) is for --multitask") }
        progressive = a.has("progressive")
        if progressive, let o = ["copy", "lwf", "multitask", "l2-sp", "l2-new", "unfreeze-every", "lr-copied", "keep-source"].first(where: { a.has($0) }) {
            throw TLError.usage("--\(o) does not apply to --progressive (column 1 is the source, frozen whole; column 2 is new)")
        }
        if (a.has("lwf") || a.has("keep-source")) && multitask { throw TLError.usage("--lwf and --keep-source are not for --multitask (a task with the source's classes gets its classifier)") }
        keepSource = a.has("keep-source") || a.has("lwf")
        if a.has("temperature") && !a.has("lwf") { throw TLError.usage("--temperature is for --lwf") }
        copy = a.value("copy"); freeze = a.value("freeze")
        func nonNegative(_ o: String, _ d: Double) throws -> Float {
            let v = try a.double(o, default: d)
            guard v >= 0 else { throw TLError.usage("--\(o) must not be negative") }
            return Float(v)
        }
        lrCopied = try nonNegative("lr-copied", 1); lrNew = try nonNegative("lr-new", 1)
        alpha = try nonNegative("l2-sp", 0)
        beta = try nonNegative("l2-new", a.has("l2-sp") ? 0.01 : 0)
        if a.has("lwf") { lwf = try nonNegative("lwf", 1) }
        temperature = Float(try a.double("temperature", default: 2))
        guard temperature > 0 else { throw TLError.usage("--temperature must be positive") }
        if a.has("unfreeze-every") { unfreezeEvery = try a.int("unfreeze-every", default: 1, min: 1) }
        if a.has("input-layers") { inputLayers = try a.int("input-layers", default: 0, min: 0) }
        if let w = a.value("task-weights") {
            for item in w.split(separator: ",") {
                let kv = item.split(separator: "=", maxSplits: 1).map(String.init)
                guard kv.count == 2, let v = Float(kv[1]), v >= 0, v.isFinite else {
                    throw TLError.usage("--task-weights takes NAME=WEIGHT,... with non-negative weights, not '\(item)'")
                }
                weights[kv[0]] = v
            }
        }
    }

    /// The network and what fine-tuning does to it.
    struct Built {
        var net: Network
        /// Parameters and buffers copied from the source, by name.
        var copied: Set<String> = []
        /// Parameters frozen for the whole run.
        var frozen: Set<String> = []
        /// Copied layers that gradual unfreezing releases, the top one first.
        var gradual: [[Parameter]] = []
        /// L2-SP's starting points: a target parameter's name → the source's value.
        var anchors: [String: Tensor] = [:]
        var archName = ""
        var notes: [String] = []
        var summary: JSON? = nil
    }

    func build(arch: String, source: Network?, data: TaskData, set: TrainingSet, seed: UInt64) throws -> Built {
        var b: Built
        let sourceArch = source.map { $0.arch == "graph" ? "graph" : ($0.meta["arch_name"]?.string ?? $0.arch) } ?? arch
        var mode = "scratch"
        if let s = source {
            for part in set.parts where perSample(part.x.shape) != s.inputs[0].shape.reduce(1, *) {
                throw TLError.usage("the training images are \(shapeString(Array(part.x.shape.dropFirst()))); the --init model takes \(shapeString(s.input.shape))")
            }
        }
        if multitask {
            mode = "multitask"
            var trunk = Architectures.expand(arch)
            if let s = source {
                guard s.sequential != nil else { throw TLError.usage("--multitask --init needs a stack network (a built-in architecture or spec) to take the trunk from") }
                guard data.inputs.count == 1 else { throw TLError.usage("--multitask --init takes one input (all TRAIN files of one shape, no --input-layers)") }
                var tokens = Architectures.tokens(s.arch)
                if tokens.last?.hasPrefix("fc") == true { tokens.removeLast() }
                trunk = tokens.joined(separator: ",")
            }
            let inputs = try data.inputs.enumerated().map { k, inp in
                (name: inp.name, spec: try source?.input ?? InputSpec.fitted(to: set.parts.first { $0.input == k }!.x))
            }
            let net = try FineTune.multitask(arch: trunk, inputs: inputs, tasks: data.tasks, inputLayers: inputLayers ?? 0, seed: seed)
            b = Built(net: net)
            if let s = source {
                b.copied = try FineTune.initialize(net, from: s, copy: copy)
                for p in s.parameters where b.copied.contains(p.name) { b.anchors[p.name] = p.value }
            }
            b.archName = source == nil ? arch : sourceArch
        } else if progressive, let s = source {
            mode = "progressive"
            let (net, column1) = try FineTune.progressive(source: s, classes: data.tasks[0].classes, seed: seed)
            b = Built(net: net, frozen: column1)
            b.archName = "progressive " + sourceArch
        } else if let s = source {
            let t = try FineTune.transfer(s, classes: data.tasks[0].classes, copy: copy, seed: seed)
            var net = t.net
            mode = "transfer"
            if keepSource {
                net = try FineTune.withSourceHead(t, source: s)
                mode = lwf == nil ? "transfer" : "lwf"
                let old = try s.classifier()
                b = Built(net: net)
                for p in old.parameters { b.anchors["source." + p.name] = p.value }
                // Without distillation nothing trains the old head: it stays as it was.
                if lwf == nil { b.frozen.formUnion(old.parameters.map { "source." + $0.name }) }
            } else {
                b = Built(net: net)
            }
            b.copied = t.copied.union(b.anchors.keys)
            for p in s.parameters where t.copied.contains(p.name) { b.anchors[p.name] = p.value }
            b.archName = sourceArch
        } else {
            let input = try InputSpec.fitted(to: set.parts[0].x)
            let net = try Network(arch: Architectures.expand(arch), input: input, classes: data.tasks[0].classes)
            net.initialize(seed: seed)
            b = Built(net: net, archName: arch)
        }
        let net = b.net
        let units = FineTune.units(net)
        if let f = freeze { b.frozen.formUnion(FineTune.parameterNames(try FineTune.select(f, in: units, option: "freeze"))) }
        for p in net.parameters {
            p.frozen = b.frozen.contains(p.name)
            if source != nil { p.lrScale = b.copied.contains(p.name) ? lrCopied : lrNew }
        }
        if let every = unfreezeEvery {
            b.gradual = units.reversed().map { $0.parameters.filter { b.copied.contains($0.name) && !b.frozen.contains($0.name) } }.filter { !$0.isEmpty }
            b.notes.append("gradual unfreezing: \(b.gradual.count) copied layers join, from the top, one every \(every) epoch\(every == 1 ? "" : "s")")
        }
        // What the user should know: where the layers came from and what trains.
        if let path = initPath {
            let copiedUnits = units.filter { u in !u.parameters.isEmpty && u.parameters.allSatisfy { b.copied.contains($0.name) } }.map(\.name)
            let newUnits = units.filter { u in !u.parameters.isEmpty && !u.parameters.contains { b.copied.contains($0.name) || b.frozen.contains($0.name) && mode == "progressive" } }.map(\.name)
            let frozenUnits = units.filter { u in !u.parameters.isEmpty && u.parameters.allSatisfy { b.frozen.contains($0.name) } }.map(\.name)
            if mode == "progressive" {
                b.notes.append("column 1: \(path), frozen (\(frozenUnits.count) layers); column 2 and lateral adapters: \(newUnits.count) new layers")
            } else {
                b.notes.append("from \(path): copied \(Lists.brief(copiedUnits)); new \(Lists.brief(newUnits))" +
                               (frozenUnits.isEmpty ? "" : "; frozen \(Lists.brief(frozenUnits))"))
            }
            var f: [String: JSON] = ["init": .string(path), "mode": .string(mode), "copied": .array(copiedUnits.map { .string($0) }),
                                     "frozen": .array(frozenUnits.map { .string($0) })]
            if lrCopied != 1 { f["lr_copied"] = .number(Double(lrCopied)) }
            if lrNew != 1 { f["lr_new"] = .number(Double(lrNew)) }
            if alpha > 0 || beta > 0 { f["l2_sp"] = ["alpha": .number(Double(alpha)), "beta": .number(Double(beta))] }
            if let l = lwf { f["lwf"] = ["lambda": .number(Double(l)), "temperature": .number(Double(temperature))] }
            if let e = unfreezeEvery { f["unfreeze_every"] = .number(Double(e)) }
            b.summary = .object(f)
        }
        return b
    }

    /// Loss weights in the network's task order (nil: all 1).
    func taskWeights(_ tasks: [Task]) throws -> [Float]? {
        guard !weights.isEmpty else { return nil }
        let names = tasks.map { $0.name.isEmpty ? "y" : $0.name }
        for k in weights.keys where !names.contains(k) {
            throw TLError.usage("--task-weights: no task '\(k)' (the tasks are \(names.joined(separator: ", ")))")
        }
        return names.map { weights[$0] ?? 1 }
    }

    /// L2-SP: α toward the source on copied weights, β toward 0 on new ones (biases and
    /// normalization parameters are left alone, as weight decay leaves them).
    func penalty(_ net: Network, _ b: Built) -> ParameterPenalty {
        var pen = ParameterPenalty()
        guard alpha > 0 || beta > 0 else { return pen }
        for p in net.parameters where p.decays && !b.frozen.contains(p.name) {
            if let w0 = b.anchors[p.name] { if alpha > 0 { pen.anchored.append((p, w0, alpha)) } }
            else if beta > 0 { pen.shrunk.append((p, beta)) }
        }
        return pen
    }

    /// Gradual unfreezing (Howard and Ruder 2018): before epoch e, the top e / EVERY copied
    /// layers train, the rest stay frozen.
    func schedule(_ trainer: Trainer, _ b: Built) {
        guard let every = unfreezeEvery else { return }
        let groups = b.gradual
        trainer.beforeEpoch = { e in
            let open = e / every
            for (j, g) in groups.enumerated() { for p in g { p.frozen = j >= open } }
        }
    }
}

enum Lists {
    /// "conv1, conv2, fc1" or "conv1 .. fc2 (7 layers)" for long lists; "none" for none.
    static func brief(_ names: [String]) -> String {
        if names.isEmpty { return "none" }
        if names.count <= 4 { return names.joined(separator: ", ") }
        return "\(names.first!) .. \(names.last!) (\(names.count) layers)"
    }
}

/// Training data as tasks: the examples of each input, their labels per task.
struct TaskData {
    var set: TrainingSet
    var tasks: [FineTune.TaskSpec]
    var inputs: [(name: String, shape: [Int])]
    var fingerprint: UInt32

    init(set: TrainingSet, tasks: [FineTune.TaskSpec], inputs: [(name: String, shape: [Int])], fingerprint: UInt32) {
        self.set = set; self.tasks = tasks; self.inputs = inputs; self.fingerprint = fingerprint
    }
    init(single d: TrainTool.Data) {
        set = TrainingSet(d.train)
        tasks = [FineTune.TaskSpec(name: "", classes: d.classes, input: 0)]
        inputs = [("input", Array(d.train.x.shape.dropFirst()))]
        fingerprint = d.fingerprint
    }
}

extension TrainTool {
    /// Multitask data: each file's x, its label records `y.NAME` (task NAME) and `y` (the task
    /// named after the file when there are several files, else the unnamed default task), and
    /// class names `names.NAME` / `names`. Label −1 marks a row without a label for a task;
    /// files without a task's labels have none for it. Files of one per-sample shape share
    /// the input; with `inputLayers`, each file is an input of its own, named after the file.
    static func readTasks(_ paths: [String], inputLayers: Int?) throws -> TaskData {
        struct File { var path: String; var stem: String; var x: Tensor; var labels: [(String, Tensor)]; var names: [String: [String]] }
        var files: [File] = []
        for arg in paths {
            // NAME=FILE names the file's task (its y) and input.
            var path = arg, given: String? = nil
            if let eq = arg.firstIndex(of: "="), !arg[..<eq].contains("/"), !arg[..<eq].isEmpty {
                given = String(arg[..<eq]); path = String(arg[arg.index(after: eq)...])
            }
            let set = try readAll(try openRecords(path))
            guard let x = set.tensors["x"] else { throw TLError.data("no 'x' record (inputs)", file: path) }
            guard x.dtype.isFloat || x.dtype.isInteger, x.rank >= 2 else { throw TLError.data("'x' must be numeric with a row axis", file: path) }
            var stem = String(path.split(separator: "/").last ?? "input")
            if let dot = stem.firstIndex(of: ".") { stem = String(stem[..<dot]) }
            stem = String(stem.map { $0 == "." || $0 == "," || $0 == "=" ? "_" : $0 })
            if stem.isEmpty || stem == "-" { stem = "stdin" }
            if let g = given { stem = g }
            var labels: [(String, Tensor)] = [], names: [String: [String]] = [:]
            for n in set.names {
                let t = set.tensors[n]!
                if n == "y" || n.hasPrefix("y.") {
                    guard t.rank == 1, t.rows == x.rows else {
                        throw TLError.data("'\(n)' has shape \(shapeString(t.shape)); it needs one label per row of x (\(x.rows))", file: path)
                    }
                    let task = n == "y" ? (paths.count > 1 || given != nil ? stem : "") : String(n.dropFirst(2))
                    labels.append((task, t))
                } else if n == "names" || n.hasPrefix("names."), let c = TensorTool.classNames(t) {
                    names[n == "names" ? (paths.count > 1 || given != nil ? stem : "") : String(n.dropFirst(6))] = c
                }
            }
            guard !labels.isEmpty else { throw TLError.data("no label record (y or y.NAME)", file: path) }
            files.append(File(path: path, stem: stem, x: x, labels: labels, names: names))
        }
        // Inputs.
        func sample(_ x: Tensor) -> [Int] { var s = Array(x.shape.dropFirst()); if s.count == 2 { s.insert(1, at: 0) }; return s }
        var inputOf: [Int] = [], inputs: [(name: String, shape: [Int])] = []
        if inputLayers != nil {
            for f in files {
                guard !inputs.contains(where: { $0.name == f.stem }) else { throw TLError.usage("two TRAIN files are named '\(f.stem)'; each input needs its own name") }
                inputOf.append(inputs.count); inputs.append((f.stem, sample(f.x)))
            }
        } else {
            for f in files {
                guard inputs.isEmpty || sample(f.x) == inputs[0].shape else {
                    throw TLError.usage("\(f.path) has inputs of \(shapeString(sample(f.x))), \(files[0].path) of \(shapeString(inputs[0].shape)); inputs of different shapes need --input-layers N")
                }
                if inputs.isEmpty { inputs.append(("input", sample(f.x))) }
                inputOf.append(0)
            }
        }
        // Tasks, in order of appearance, with their class counts.
        var taskNames: [String] = [], maxLabel: [String: Int] = [:], taskInput: [String: Int] = [:]
        for (k, f) in files.enumerated() {
            for (name, t) in f.labels {
                if !taskNames.contains(name) { taskNames.append(name) }
                if let i = taskInput[name], i != inputOf[k] {
                    throw TLError.usage("task '\(name)' has labels in files of two inputs; a task reads one input")
                }
                taskInput[name] = inputOf[k]
                let y = try t.converted(to: .i64), p = y.rawPointer.assumingMemoryBound(to: Int64.self)
                for i in 0..<t.count {
                    guard p[i] >= -1 else { throw TLError.data("label \(p[i]) is negative (−1 marks a missing label)", file: f.path, location: "\(name.isEmpty ? "y" : "y." + name) row \(i)") }
                    maxLabel[name] = max(maxLabel[name] ?? -1, Int(p[i]))
                }
            }
        }
        var tasks: [FineTune.TaskSpec] = []
        for name in taskNames {
            let classes = files.lazy.compactMap { $0.names[name] }.first ?? (0...max(maxLabel[name] ?? 0, 0)).map(String.init)
            guard (maxLabel[name] ?? -1) >= 0 else { throw TLError.data("task '\(name)' has no labeled rows") }
            guard maxLabel[name]! < classes.count else { throw TLError.data("task '\(name)': label \(maxLabel[name]!) is out of range for \(classes.count) classes") }
            guard classes.count >= 2 else { throw TLError.data("task '\(name)' has \(classes.count) class; training needs at least 2") }
            tasks.append(FineTune.TaskSpec(name: name, classes: classes, input: taskInput[name]!))
        }
        // Parts: each input's rows from its files, labels −1 where a file has none for a task.
        var parts: [TrainingSet.Part] = []
        var fp: UInt32 = 0
        for (k, _) in inputs.enumerated() {
            let mine = files.indices.filter { inputOf[$0] == k }
            let dtype = Set(mine.map { files[$0].x.dtype }).count == 1 ? files[mine[0]].x.dtype : .f32
            let per = perSample(files[mine[0]].x.shape), n = mine.reduce(0) { $0 + files[$1].x.rows }
            let x = try Tensor(zeros: dtype, shape: [n] + files[mine[0]].x.shape.dropFirst())
            var labels = tasks.map { _ in [Int](repeating: -1, count: n) }
            var row = 0
            for i in mine {
                let f = files[i], src = try f.x.converted(to: dtype)
                (x.rawPointer + row * per * dtype.size).copyMemory(from: src.rawPointer, byteCount: src.byteCount)
                fp = CRC32.update(fp, src.rawBytes)
                for (name, t) in f.labels {
                    let ti = tasks.firstIndex { $0.name == name }!
                    let y = try t.converted(to: .i64), p = y.rawPointer.assumingMemoryBound(to: Int64.self)
                    for r in 0..<t.count { labels[ti][row + r] = Int(p[r]) }
                    fp = CRC32.update(fp, t.rawBytes)
                }
                row += f.x.rows
            }
            parts.append(TrainingSet.Part(input: k, x: x, labels: labels))
        }
        return TaskData(set: TrainingSet(parts: parts), tasks: tasks, inputs: inputs, fingerprint: fp)
    }
}
