import Glibc
import TLCore
import TLNN
import TLMethods

/// `tl-train`: train a network from scratch on a labeled stream (x, y, names) and write the model.
public enum TrainTool {
    static let producer = "tl-train \(tlVersion)"

    static let spec = CommandSpec(
        name: "tl-train", usage: ["[OPTIONS] [TRAIN] [-o MODEL]", "--linear [OPTIONS] [FEATURES] [-o MODEL]"],
        summary: """
        Train a network from scratch on TRAIN, a stream with x (images or features), y (class labels)
        and optionally names (class names), and write the model (tl-format, .tlm) to MODEL or stdout.
        Inputs are normalized by the per-channel mean and standard deviation of TRAIN (u8 scaled
        to [0, 1] first); the model keeps that normalization. Same seed and thread count: the same
        model, bit for bit. See tl-train(1) for the architecture spec language.
        With --linear, fit a linear classifier (softmax regression or a linear SVM) on FEATURES,
        for example the output of tl-extract, to its optimum. TRAIN or FEATURES '-' or none:
        standard input.
        """,
        options: [
            Option("output", "o", value: "MODEL", help: "write the model to MODEL (default: stdout)"),
            Option("arch", "a", value: "ARCH", help: "mlp, lenet5, cnn-small, resnet-small, or a spec like conv3x3-32,relu,maxpool2,fc128,relu (default cnn-small)"),
            Option("epochs", "e", value: "N", help: "passes over the data (default 5)"),
            Option("batch", "b", value: "N", help: "mini-batch size (default 64)"),
            Option("optimizer", value: "NAME", help: "sgd, adam or adamw (default sgd)"),
            Option("lr", value: "RATE", help: "learning rate (default 0.01 for sgd, 0.001 for adam/adamw)"),
            Option("momentum", value: "M", help: "SGD momentum (default 0.9)"),
            Option("nesterov", help: "Nesterov momentum"),
            Option("weight-decay", value: "WD", help: "L2 penalty on weights, not biases or BatchNorm (default 0; decoupled for adamw)"),
            Option("schedule", value: "NAME", help: "constant, step, cosine or inverse (default constant)"),
            Option("step-size", value: "EPOCHS", help: "step schedule: multiply by --gamma every EPOCHS (default 2)"),
            Option("gamma", value: "G", help: "step schedule factor (default 0.1)"),
            Option("warmup", value: "EPOCHS", help: "linear warm-up over EPOCHS, fractions allowed (default 0)"),
            Option("label-smoothing", value: "EPS", help: "cross-entropy label smoothing (default 0)"),
            Option("class-weights", value: "LIST", help: "comma-separated loss weight per class, or 'balanced' (default: all 1)"),
            Option("augment", value: "LIST", help: "crop[:PAD] (random crop after zero padding, PAD 2) and/or flip (horizontal)"),
            Option("val", value: "FILE", help: "validation stream, accuracy reported per epoch"),
            Option("val-split", value: "R", help: "hold out fraction R of TRAIN for validation (seeded, stratified)"),
            Option("patience", value: "N", help: "stop after N epochs without a better validation accuracy"),
            Option("seed", value: "S", help: "random seed for initialization, shuffling, augmentation, dropout (default 0)"),
            Option("threads", "j", value: "N", help: "threads (default: all CPUs)"),
            Option("shards", value: "N", help: "cut each batch into N shards trained side by side (default 2; 1 with batch normalization or batches under 32)"),
            Option("log", value: "FILE", help: "per-epoch CSV log: epoch,loss,train_acc,val_acc,lr,seconds,images_per_s"),
            Option("checkpoint", value: "FILE", help: "write a resumable checkpoint to FILE after every epoch"),
            Option("resume", value: "FILE", help: "continue from a checkpoint (give the same options as the run that wrote it)"),
            Option("list-archs", help: "list the built-in architectures and exit"),
            Option("init", value: "MODEL", help: "fine-tune: start from the pretrained MODEL (its layers, its input normalization) with a new classifier for TRAIN's classes"),
            Option("copy", value: "LAYERS", help: "--init: the layers copied from MODEL, the rest re-initialized (default: all but the classifier); see LAYERS in tl-train(1)"),
            Option("freeze", value: "LAYERS", help: "layers not trained: no gradient, no optimizer state, BatchNorm statistics fixed"),
            Option("lr-copied", value: "M", help: "--init: learning-rate multiplier for copied layers (default 1; e.g. 0.1)"),
            Option("lr-new", value: "M", help: "--init: learning-rate multiplier for new layers (default 1)"),
            Option("unfreeze-every", value: "EPOCHS", help: "--init: gradual unfreezing: copied layers start frozen and one more, from the top, trains every EPOCHS epochs"),
            Option("l2-sp", value: "ALPHA", help: "--init: L2-SP, ALPHA/2 |w - w0|^2 on copied weights (Li et al. 2018 used 0.1)"),
            Option("l2-new", value: "BETA", help: "--init: BETA/2 |w|^2 on new weights (default 0.01 with --l2-sp, else 0)"),
            Option("lwf", value: "LAMBDA", help: "--init: Learning without Forgetting: keep MODEL's classifier as task 'source' and its outputs, weight LAMBDA (1 in the paper)"),
            Option("temperature", value: "T", help: "--lwf: distillation temperature (default 2, as Li and Hoiem)"),
            Option("keep-source", help: "--init: keep MODEL's classifier, unchanged, as task 'source' (to measure forgetting)"),
            Option("progressive", help: "--init: progressive network: MODEL frozen as column 1, a new column with lateral connections"),
            Option("multitask", help: "one trunk, one head per task: labels y.NAME (or y of each TRAIN file), -1 where missing"),
            Option("task-weights", value: "LIST", help: "--multitask: NAME=W,... loss weight per task (default 1 each)"),
            Option("input-layers", value: "N", help: "--multitask: each TRAIN file has its own input and own copy of the first N layers; the rest is shared"),
            Option("linear", help: "train a linear classifier on features (see LINEAR CLASSIFIER in tl-train(1))"),
            Option("loss", value: "NAME", help: "--linear: softmax (multinomial logistic regression) or svm (one-vs-rest L2-loss SVM) (default softmax)"),
            Option("cost", "C", value: "C", help: "--linear: inverse L2 strength, scikit-learn's and liblinear's C (default 1)"),
            Option("l2", value: "LAMBDA", help: "--linear: L2 strength on the mean loss, instead of --cost (LAMBDA = 1/(C*N))"),
            Option("standardize", help: "--linear: standardize each feature by the training data's mean and std (kept in the model)"),
            Option("solver", value: "NAME", help: "--linear: lbfgs (full batch, to the optimum) or minibatch (streams a file per epoch) (default lbfgs)"),
            Option("max-iter", value: "N", help: "--linear lbfgs: iteration limit (default 1000)"),
            Option("tol", value: "T", help: "--linear lbfgs: stop when no gradient component exceeds T (default 1e-4)"),
            Option("shuffle-rows", value: "N", help: "--linear minibatch: rows shuffled together in memory (default 16384)"),
        ])

    public static func main() -> Never { runCommand(spec, run) }

    struct Data { var train: LabeledData; var classes: [String]; var fingerprint: UInt32 }

    static func run(_ a: Arguments) throws {
        if a.has("list-archs") {
            var s = ""
            for (n, sp, d) in Architectures.builtins { s += "\(n)\t\(d)\n\t\(sp),fc<classes>\n" }
            try writeStdout(s); return
        }
        guard a.positionals.count <= 1 || a.has("multitask") else { throw TLError.usage("one training input at a time (several with --multitask)") }
        if a.positionals.isEmpty && isatty(0) == 1 { throw TLError.usage("no training data given (standard input is a terminal)") }
        let linearOnly = ["loss", "cost", "l2", "standardize", "solver", "max-iter", "tol", "shuffle-rows"]
        if a.has("linear") {
            if let o = FineTuneOptions.all.first(where: { a.has($0) }) { throw TLError.usage("--\(o) is not for --linear") }
            return try runLinear(a)
        }
        if let o = linearOnly.first(where: { a.has($0) }) { throw TLError.usage("--\(o) is for --linear") }
        let ft = try FineTuneOptions(a)
        var cfg = TrainConfig()
        cfg.epochs = try a.int("epochs", default: 5, min: 1)
        cfg.batch = try a.int("batch", default: 64, min: 1)
        (cfg.optimizer, cfg.lr) = try optimizerAndRate(a)
        cfg.momentum = Float(try a.double("momentum", default: 0.9))
        cfg.nesterov = a.has("nesterov")
        cfg.weightDecay = Float(try a.double("weight-decay", default: 0))
        switch a.value("schedule") ?? "constant" {
        case "constant": cfg.schedule = .constant
        case "step": cfg.schedule = .step(every: try a.int("step-size", default: 2, min: 1), gamma: try a.double("gamma", default: 0.1))
        case "cosine": cfg.schedule = .cosine
        case "inverse": cfg.schedule = .inverse(alpha: 10, beta: 0.75)
        case let s: throw TLError.usage("--schedule must be constant, step, cosine or inverse, not '\(s)'")
        }
        cfg.warmupEpochs = try a.double("warmup", default: 0)
        cfg.labelSmoothing = Float(try a.double("label-smoothing", default: 0))
        guard (0..<1).contains(cfg.labelSmoothing) else { throw TLError.usage("--label-smoothing must be in [0, 1)") }
        cfg.seed = try a.uint64("seed", default: 0)
        cfg.threads = try a.int("threads", default: Threads.count, min: 1)
        if a.has("patience") { cfg.patience = try a.int("patience", default: 3, min: 1) }
        if a.has("shards") { cfg.shards = try a.int("shards", default: 1, min: 1) }
        if let aug = a.value("augment") {
            for item in aug.split(separator: ",") {
                if item == "flip" { cfg.flip = true }
                else if item == "crop" { cfg.cropPad = 2 }
                else if item.hasPrefix("crop:"), let p = Int(item.dropFirst(5)), p > 0 { cfg.cropPad = p }
                else { throw TLError.usage("--augment takes crop[:PAD] and flip, not '\(item)'") }
            }
        }
        let arch = a.value("arch") ?? "cnn-small"
        if ft.initPath != nil && a.has("arch") { throw TLError.usage("--arch comes from the --init model; leave it out") }
        let outPath = a.value("output") ?? "-"
        if outPath == "-" && isatty(1) == 1 { throw TLError.usage("refusing to write binary data to a terminal; redirect stdout or use -o FILE") }

        // The data: one stream, or several tasks' streams for --multitask.
        let source = try ft.initPath.map { try Network.load($0).0 }
        let train = ft.multitask ? try readTasks(a.positionals.isEmpty ? ["-"] : a.positionals, inputLayers: ft.inputLayers)
                                 : TaskData(single: try readLabeled(a.positionals.first ?? "-", classes: nil))
        if (cfg.cropPad > 0 || cfg.flip), let x = train.set.parts.map(\.x).first(where: { $0.rank < 3 }) {
            throw TLError.usage("--augment needs images ([N, H, W] or [N, C, H, W]); the input is \(shapeString(x.shape))")
        }
        var set = train.set
        var val: LabeledData? = nil
        let first = train.tasks[0]
        if let v = a.value("val") {
            guard !a.has("val-split") else { throw TLError.usage("give --val or --val-split, not both") }
            val = try readLabeled(v, classes: first.classes, labels: first.name.isEmpty ? "y" : "y.\(first.name)").train
        } else if a.has("val-split") {
            guard set.parts.count == 1, set.parts[0].labels.count == 1 else { throw TLError.usage("--val-split takes one task's data; give --val") }
            let r = try a.double("val-split", default: 0.1)
            guard r > 0 && r < 1 else { throw TLError.usage("--val-split must be between 0 and 1") }
            let (tr, va) = split(LabeledData(x: set.parts[0].x, y: set.parts[0].labels[0]), ratio: r, seed: cfg.seed)
            set = TrainingSet(tr); val = va
        }
        if let cw = a.value("class-weights") {
            let labels = set.parts.flatMap { $0.labels[0] }.filter { $0 >= 0 }
            cfg.classWeights = try classWeights(cw, counts: counts(labels, first.classes.count))
        }
        Threads.count = cfg.threads

        // The network, fresh or pretrained, and what fine-tuning does to it.
        let built = try ft.build(arch: arch, source: source, data: train, set: set, seed: cfg.seed)
        let net = built.net
        if cfg.shards > 1 && !net.buffers.isEmpty {
            throw TLError.usage("--shards \(cfg.shards): the network has batch normalization, which needs the whole batch at once; give --shards 1")
        }
        var objective = Objective()
        objective.taskWeights = try ft.taskWeights(net.tasks)
        if let s = source {
            if let l = ft.lwf { objective.distillation = Distillation(task: 1, teacher: s, lambda: l, temperature: ft.temperature) }
            objective.penalty = ft.penalty(net, built)
        }
        let trainer = Trainer(net: net, config: cfg, set: set, objective: objective)
        ft.schedule(trainer, built)
        if let ck = a.value("resume") {
            let (n, extra, meta) = try Network.load(ck)
            guard let m = meta, let ep = m["epoch"]?.int, let st = m["step"]?.int, let os = m["optimizer_steps"]?.int else {
                throw TLError.data("not a checkpoint (no training state); a finished model cannot be resumed", file: ck)
            }
            guard n.arch == net.arch, n.arch != "graph" || n.graph!.description == net.graph!.description else {
                throw TLError.usage("the checkpoint's network (\(n.arch == "graph" ? "a graph" : n.arch)) differs from the one these options build")
            }
            try annotating(file: ck) { try net.adopt(n) }
            try trainer.optimizer.restore(steps: os, tensors: extra.map { (String($0.0.dropFirst(4)), $0.1) })
            trainer.resume(epoch: ep, step: st, best: m["best"]?.number ?? -1, sinceBest: m["since_best"]?.int ?? 0)
            guard ep < cfg.epochs else { throw TLError.usage("the checkpoint has \(ep) epochs already; ask for more with --epochs") }
        }
        let rows = set.count
        var meta: [String: JSON] = ["args": .array(provenanceArgs(Array(CommandLine.arguments.dropFirst())).map { .string($0) }), "seed": .number(Double(cfg.seed)),
                    "data": ["rows": .number(Double(rows)), "crc32": .number(Double(train.fingerprint))],
                    "version": .string(tlVersion), "arch_name": .string(built.archName), "parameters": .number(Double(net.parameterCount))]
        if let f = built.summary { meta["fine_tuning"] = f }
        net.meta = .object(meta)
        Session.note("\(built.archName): \(net.parameterCount) parameters, \(rows) training rows, " +
                     (net.tasks.count == 1 ? "\(net.classes.count) classes" : net.tasks.map { "\($0.name.isEmpty ? "(default)" : $0.name) \($0.classes.count) classes" }.joined(separator: ", ")) +
                     (val.map { ", \($0.count) validation rows" } ?? ""))
        for line in built.notes { Session.note(line) }

        var log = "epoch,loss,train_acc,val_acc,lr,seconds,images_per_s\n"
        if let lp = a.value("log"), a.has("resume"), let old = try? Input.open(lp).reader().readToEnd() {
            log = String(decoding: old, as: UTF8.self)  // continue the resumed run's log
        }
        let total = cfg.epochs * rows
        let p = Progress("train", total: total - trainer.epoch * rows, unit: "img")
        while trainer.epoch < cfg.epochs && !trainer.shouldStop {
            var running = 0.0, batches = 0
            let s: EpochStats
            do {
                s = try trainer.trainEpoch(val: val) { n, loss in
                    running += loss; batches += 1
                    p.detail = "epoch \(trainer.epoch + 1)/\(cfg.epochs), loss \(fixed(running / Double(batches), 4))"
                    p.advance(n)
                }
            } catch let e as TLError {
                p.finish()
                var e2 = e
                if let ck = a.value("checkpoint") { e2.message += "; the last good checkpoint is \(ck)" }
                throw e2
            }
            let va = s.valAccuracy.map { fixed($0 * 100, 2) } ?? ""
            log += "\(s.epoch),\(fixed(s.loss, 6)),\(fixed(s.trainAccuracy, 6)),\(s.valAccuracy.map { fixed($0, 6) } ?? ""),\(sig(Double(s.lr))),\(fixed(s.seconds, 3)),\(fixed(s.imagesPerSecond, 1))\n"
            if let lp = a.value("log") { try writeText(lp, log) }
            if let ck = a.value("checkpoint") {
                let opt = trainer.optimizer.stateTensors.map { ("opt.\($0.0)", $0.1) }
                let meta: JSON = ["epoch": .number(Double(trainer.epoch)), "step": .number(Double(trainer.step)),
                                  "optimizer_steps": .number(Double(trainer.optimizer.steps)),
                                  "best": .number(trainer.bestValAccuracy), "since_best": .number(Double(trainer.epochsSinceBest))]
                try net.save(ck, producer: producer, extra: opt, extraMeta: meta)
            }
            if Session.progress { writeStderr("\r\u{1B}[K") }
            Session.note("epoch \(s.epoch)/\(cfg.epochs): loss \(fixed(s.loss, 4)), train \(fixed(s.trainAccuracy * 100, 2))%" +
                         (va.isEmpty ? "" : ", val \(va)%") + ", \(fixed(s.imagesPerSecond, 0)) img/s, \(fixed(s.seconds, 1)) s")
        }
        p.finish()
        if trainer.shouldStop { Session.note("early stop: no better validation accuracy for \(cfg.patience!) epochs") }
        if case .object(var o) = net.meta {
            o["epochs"] = .number(Double(trainer.epoch))
            if let v = val { o["val_accuracy"] = .number(try trainer.accuracy(v)) }
            net.meta = .object(o)
        }
        try net.save(outPath, producer: producer)
    }

    /// --optimizer and --lr (0.01 for SGD, 0.001 for Adam and AdamW by default).
    static func optimizerAndRate(_ a: Arguments) throws -> (Optimizer.Kind, Double) {
        var kind = Optimizer.Kind.sgd
        if let o = a.value("optimizer") {
            guard let k = Optimizer.Kind(rawValue: o) else { throw TLError.usage("--optimizer must be sgd, adam or adamw, not '\(o)'") }
            kind = k
        }
        let lr = try a.double("lr", default: kind == .sgd ? 0.01 : 0.001)
        guard lr > 0 else { throw TLError.usage("--lr must be positive") }
        return (kind, lr)
    }

    /// Reads x, y (and names) wholly. Labels must be integers in 0..<classes. `labels` names
    /// the label record (`y.NAME` for a task; `y` when the file has no such record).
    static func readLabeled(_ path: String, classes: [String]?, labels: String = "y") throws -> Data {
        let set = try readAll(try openRecords(path))
        guard let x = set.tensors["x"] else { throw TLError.data("no 'x' record (inputs)", file: path) }
        guard let yt = set.tensors[labels] ?? set.tensors["y"] else {
            throw TLError.data("no '\(labels)' record (class labels); add them with tl-tensor stack", file: path)
        }
        guard yt.rank == 1, yt.rows == x.rows else {
            throw TLError.data("'y' has shape \(shapeString(yt.shape)); it needs one label per row of x (\(x.rows))", file: path)
        }
        guard x.dtype.isFloat || x.dtype.isInteger, x.rank >= 2 else { throw TLError.data("'x' must be numeric with a row axis", file: path) }
        let yf = try yt.converted(to: .i64)
        let yp = yf.rawPointer.assumingMemoryBound(to: Int64.self)
        var names = classes
        if names == nil, let nt = set.tensors["names"] { names = TensorTool.classNames(nt) }
        var maxLabel = -1
        for i in 0..<yt.count { maxLabel = max(maxLabel, Int(yp[i])) }
        let k = names?.count ?? (maxLabel + 1)
        var y = [Int](repeating: 0, count: yt.count)
        for i in 0..<yt.count {
            let v = Int(yp[i])
            guard v >= 0 && v < k else {
                throw TLError.data("label \(v) is out of range for \(k) classes", file: path, location: "y row \(i)")
            }
            y[i] = v
        }
        guard k >= 2 else { throw TLError.data("the labels name \(k) class; training needs at least 2", file: path) }
        let fp = CRC32.update(CRC32.checksum(x.rawBytes), yt.rawBytes)
        return Data(train: LabeledData(x: x, y: y), classes: names ?? (0..<k).map(String.init), fingerprint: fp)
    }

    /// A seeded, stratified hold-out split: `ratio` of the rows (rounded) for validation.
    static func split(_ d: LabeledData, ratio: Double, seed: UInt64) -> (LabeledData, LabeledData) {
        var rng = RNG(seed: seed, stream: 0x5917)
        let nv = Int((ratio * Double(d.count)).rounded())
        var inVal = [Bool](repeating: false, count: d.count)
        for i in TensorTool.chooseRows(count: d.count, target: nv, labels: d.y.map { Int64($0) }, shuffle: true, rng: &rng) { inVal[i] = true }
        let tr = (0..<d.count).filter { !inVal[$0] }, va = (0..<d.count).filter { inVal[$0] }
        return (LabeledData(x: d.gather(tr), y: tr.map { d.y[$0] }), LabeledData(x: d.gather(va), y: va.map { d.y[$0] }))
    }

    /// `--class-weights`: K numbers, or "balanced", n / (K · count_c) (scikit-learn's).
    static func classWeights(_ s: String, counts: [Int]) throws -> [Float] {
        let k = counts.count, n = counts.reduce(0, +)
        if s == "balanced" { return counts.map { $0 == 0 ? 0 : Float(n) / Float(k * $0) } }
        let w = s.split(separator: ",").compactMap { Float($0) }
        guard w.count == k, w.allSatisfy({ $0 >= 0 }) else { throw TLError.usage("--class-weights needs \(k) non-negative numbers or 'balanced'") }
        return w
    }

    static func counts(_ labels: [Int], _ k: Int) -> [Int] {
        var c = [Int](repeating: 0, count: k)
        for y in labels { c[y] += 1 }
        return c
    }

    // MARK: linear classifier

    static func runLinear(_ a: Arguments) throws {
        let deep = ["arch", "augment", "schedule", "step-size", "gamma", "warmup", "label-smoothing", "patience", "checkpoint",
                    "resume", "nesterov", "momentum", "weight-decay", "val-split", "log", "shards"]
        if let o = deep.first(where: { a.has($0) }) { throw TLError.usage("--\(o) is not for --linear (see tl-train(1), LINEAR CLASSIFIER)") }
        var c = LinearConfig()
        if let l = a.value("loss") {
            guard let v = LinearConfig.Loss(rawValue: l) else { throw TLError.usage("--loss must be softmax or svm, not '\(l)'") }
            c.loss = v
        }
        if let sv = a.value("solver") {
            guard let v = LinearConfig.Solver(rawValue: sv) else { throw TLError.usage("--solver must be lbfgs or minibatch, not '\(sv)'") }
            c.solver = v
        }
        if a.has("cost") && a.has("l2") { throw TLError.usage("give --cost or --l2, not both") }
        c.cost = try a.double("cost", default: 1)
        guard c.cost > 0 else { throw TLError.usage("--cost must be positive") }
        if a.has("l2") {
            c.l2 = try a.double("l2", default: 0)
            guard c.l2! >= 0 else { throw TLError.usage("--l2 must not be negative") }
        }
        c.standardize = a.has("standardize")
        c.maxIterations = try a.int("max-iter", default: 1000, min: 1)
        c.tolerance = try a.double("tol", default: 1e-4)
        guard c.tolerance > 0 else { throw TLError.usage("--tol must be positive") }
        c.epochs = try a.int("epochs", default: 10, min: 1)
        c.batch = try a.int("batch", default: 256, min: 1)
        (c.optimizer, c.lr) = try optimizerAndRate(a)
        c.shuffleRows = try a.int("shuffle-rows", default: 1 << 14, min: 1)
        c.seed = try a.uint64("seed", default: 0)
        c.threads = try a.int("threads", default: Threads.count, min: 1)
        Threads.count = c.threads
        let outPath = a.value("output") ?? "-"
        if outPath == "-" && isatty(1) == 1 { throw TLError.usage("refusing to write binary data to a terminal; redirect stdout or use -o FILE") }
        let path = a.positionals.first ?? "-"
        let t0 = monotonicSeconds()
        let fit: LinearFit, rows: Int, fingerprint: UInt32?
        switch c.solver {
        case .lbfgs:
            let data = try readLabeled(path, classes: nil)
            if let cw = a.value("class-weights") { c.classWeights = try classWeights(cw, counts: counts(data.train.y, data.classes.count)) }
            let p = Progress("lbfgs", total: nil, unit: "it")
            fit = try annotating(file: path) {
                try LinearProbe.fit(x: data.train.x, labels: data.train.y, classes: data.classes, config: c) { k, f, g in
                    p.detail = "objective \(sig(f, 7)), max gradient \(sig(g, 3))"
                    p.advance(1)
                }
            }
            p.finish()
            rows = data.train.count; fingerprint = data.fingerprint
        case .minibatch:
            let input = try Input.open(path)
            guard input.isRegular else {
                throw TLError.usage("--solver minibatch reads its input once per epoch; give a file, not a pipe", )
            }
            let (classes, labelCounts) = try scanLabels(path)
            if let cw = a.value("class-weights") { c.classWeights = try classWeights(cw, counts: labelCounts) }
            rows = labelCounts.reduce(0, +); fingerprint = nil
            let p = Progress("train", total: rows * c.epochs, unit: "rows")
            fit = try annotating(file: path) {
                try LinearProbe.fitMinibatch(open: { try openRecords(path) }, classes: classes, config: c) { n, loss in
                    p.detail = "loss \(fixed(loss, 4))"
                    p.advance(n)
                }
            }
            p.finish()
        }
        let secs = monotonicSeconds() - t0
        let net = fit.net
        var linear: [String: JSON] = ["loss": .string(c.loss.rawValue), "lambda": .number(fit.lambda), "standardize": .bool(c.standardize),
                                      "solver": .string(c.solver.rawValue), "iterations": .number(Double(fit.iterations)),
                                      "converged": .bool(fit.converged), "stop": .string(fit.reason), "objective": .number(fit.objective)]
        if c.l2 == nil { linear["cost"] = .number(c.cost) }
        var data: [String: JSON] = ["rows": .number(Double(rows))]
        if let f = fingerprint { data["crc32"] = .number(Double(f)) }
        var meta: [String: JSON] = ["args": .array(provenanceArgs(Array(CommandLine.arguments.dropFirst())).map { .string($0) }),
                                    "seed": .number(Double(c.seed)), "data": .object(data), "version": .string(tlVersion),
                                    "arch_name": "linear", "parameters": .number(Double(net.parameterCount)), "linear": .object(linear)]
        let d = perSample([1] + net.input.shape)
        Session.note("linear \(c.loss.rawValue) on \(rows) rows x \(d) features, \(net.classes.count) classes, " +
                     (c.l2 == nil ? "C \(sig(c.cost, 4)) (lambda \(sig(fit.lambda, 3)))" : "lambda \(sig(fit.lambda, 3))") +
                     (c.solver == .lbfgs
                        ? ": \(fit.iterations) iterations, objective \(sig(fit.objective, 7)), " +
                          (fit.converged ? "converged (\(fit.reason))" : "NOT converged: \(fit.reason)" +
                           (fit.reason.hasPrefix("iteration limit") ? "; --standardize or a larger --max-iter helps" : ""))
                        : ": \(fit.iterations) steps in \(c.epochs) epochs, objective about \(sig(fit.objective, 5))") +
                     "; \(fixed(secs, 2)) s")
        if let v = a.value("val") {
            let vd = try readLabeled(v, classes: net.classes).train
            let acc = try Trainer.accuracy(net, vd, threads: c.threads)
            meta["val_accuracy"] = .number(acc)
            Session.note("validation accuracy \(fixed(acc * 100, 2))% (\(vd.count) rows)")
        }
        net.meta = .object(meta)
        try net.save(outPath, producer: producer)
    }

    /// Class names and label counts of a labeled file, reading only what it must (a mapped
    /// stream's x is never touched).
    static func scanLabels(_ path: String) throws -> ([String], [Int]) {
        let r = try openRecords(path)
        var names: [String]? = nil, counts: [Int] = [], any = false
        while let rec = try r.next() {
            if rec.name == "names" { names = TensorTool.classNames(rec.tensor) }
            if rec.name == "x" { any = true }
            guard rec.name == "y" else { continue }
            for v in try LinearProbe.checkedLabels(rec.tensor, Int(Int32.max), firstRow: counts.reduce(0, +)) {
                while counts.count <= v { counts.append(0) }
                counts[v] += 1
            }
        }
        guard any else { throw TLError.data("no 'x' record (inputs)", file: path) }
        guard !counts.isEmpty else { throw TLError.data("no 'y' record (class labels); add them with tl-tensor stack", file: path) }
        let k = names?.count ?? counts.count
        if counts.count > k { throw TLError.data("label \(counts.count - 1) is out of range for \(k) classes", file: path) }
        while counts.count < k { counts.append(0) }
        guard k >= 2 else { throw TLError.data("the labels name \(k) class; training needs at least 2", file: path) }
        return (names ?? (0..<k).map(String.init), counts)
    }

    /// The command line that decides the model: without where outputs go, checkpoint/resume
    /// plumbing and talk, so the same training gives the same bytes (a resumed run included).
    static func provenanceArgs(_ args: [String]) -> [String] {
        let withValue: Set<String> = ["-o", "--output", "--checkpoint", "--resume", "--log"]
        let flags: Set<String> = ["-q", "--quiet", "--progress"]
        var out: [String] = [], i = 0
        while i < args.count {
            let a = args[i]; i += 1
            if withValue.contains(a) { i += 1; continue }
            if flags.contains(a) || withValue.contains(where: { a.hasPrefix($0 + "=") }) { continue }
            out.append(a)
        }
        return out
    }

    static func writeText(_ path: String, _ s: String) throws {
        let o = try Output(path, binary: false)
        do { try o.write(s); try o.commit() } catch { o.abandon(); throw error }
    }
}
