import Glibc
import TLCore
import TLNN

/// `tl-train`: train a network from scratch on a labeled stream (x, y, names) and write the model.
public enum TrainTool {
    static let producer = "tl-train \(tlVersion)"

    static let spec = CommandSpec(
        name: "tl-train", usage: ["[OPTIONS] TRAIN [-o MODEL]"],
        summary: """
        Train a network from scratch on TRAIN, a stream with x (images or features), y (class labels)
        and optionally names (class names), and write the model (tl-format, .tlm) to MODEL or stdout.
        Inputs are normalized by the per-channel mean and standard deviation of TRAIN (u8 scaled
        to [0, 1] first); the model keeps that normalization. Same seed and thread count: the same
        model, bit for bit. See tl-train(1) for the architecture spec language.
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
            Option("log", value: "FILE", help: "per-epoch CSV log: epoch,loss,train_acc,val_acc,lr,seconds,images_per_s"),
            Option("checkpoint", value: "FILE", help: "write a resumable checkpoint to FILE after every epoch"),
            Option("resume", value: "FILE", help: "continue from a checkpoint (give the same options as the run that wrote it)"),
            Option("list-archs", help: "list the built-in architectures and exit"),
        ])

    public static func main() -> Never { runCommand(spec, run) }

    struct Data { var train: LabeledData; var classes: [String]; var fingerprint: UInt32 }

    static func run(_ a: Arguments) throws {
        if a.has("list-archs") {
            var s = ""
            for (n, sp, d) in Architectures.builtins { s += "\(n)\t\(d)\n\t\(sp),fc<classes>\n" }
            try writeStdout(s); return
        }
        guard a.positionals.count == 1 else { throw TLError.usage(a.positionals.isEmpty ? "no training data given" : "one training input at a time") }
        var cfg = TrainConfig()
        cfg.epochs = try a.int("epochs", default: 5, min: 1)
        cfg.batch = try a.int("batch", default: 64, min: 1)
        if let o = a.value("optimizer") {
            guard let k = Optimizer.Kind(rawValue: o) else { throw TLError.usage("--optimizer must be sgd, adam or adamw, not '\(o)'") }
            cfg.optimizer = k
        }
        cfg.lr = try a.double("lr", default: cfg.optimizer == .sgd ? 0.01 : 0.001)
        guard cfg.lr > 0 else { throw TLError.usage("--lr must be positive") }
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
        if let aug = a.value("augment") {
            for item in aug.split(separator: ",") {
                if item == "flip" { cfg.flip = true }
                else if item == "crop" { cfg.cropPad = 2 }
                else if item.hasPrefix("crop:"), let p = Int(item.dropFirst(5)), p > 0 { cfg.cropPad = p }
                else { throw TLError.usage("--augment takes crop[:PAD] and flip, not '\(item)'") }
            }
        }
        let arch = a.value("arch") ?? "cnn-small"
        let outPath = a.value("output") ?? "-"
        if outPath == "-" && isatty(1) == 1 { throw TLError.usage("refusing to write binary data to a terminal; redirect stdout or use -o FILE") }

        var data = try readLabeled(a.positionals[0], classes: nil)
        if (cfg.cropPad > 0 || cfg.flip) && data.train.x.rank < 3 {
            throw TLError.usage("--augment needs images ([N, H, W] or [N, C, H, W]); the input is \(shapeString(data.train.x.shape))")
        }
        var val: LabeledData? = nil
        if let v = a.value("val") {
            guard !a.has("val-split") else { throw TLError.usage("give --val or --val-split, not both") }
            val = try readLabeled(v, classes: data.classes).train
        } else if a.has("val-split") {
            let r = try a.double("val-split", default: 0.1)
            guard r > 0 && r < 1 else { throw TLError.usage("--val-split must be between 0 and 1") }
            (data.train, val) = split(data.train, ratio: r, seed: cfg.seed)
        }
        if let cw = a.value("class-weights") { cfg.classWeights = try classWeights(cw, data) }
        Threads.count = cfg.threads

        // The network: fresh, or from a checkpoint.
        let net: Network, trainer: Trainer
        if let ck = a.value("resume") {
            let (n, extra, meta) = try Network.load(ck)
            guard let m = meta, let ep = m["epoch"]?.int, let st = m["step"]?.int, let os = m["optimizer_steps"]?.int else {
                throw TLError.data("not a checkpoint (no training state); a finished model cannot be resumed", file: ck)
            }
            guard n.arch == Architectures.expand(arch) || n.arch == arch else {
                throw TLError.usage("--arch \(arch) differs from the checkpoint's \(n.arch)")
            }
            net = n
            trainer = Trainer(net: net, config: cfg, data: data.train)
            try trainer.optimizer.restore(steps: os, tensors: extra.map { (String($0.0.dropFirst(4)), $0.1) })
            trainer.resume(epoch: ep, step: st, best: m["best"]?.number ?? -1, sinceBest: m["since_best"]?.int ?? 0)
            guard ep < cfg.epochs else { throw TLError.usage("the checkpoint has \(ep) epochs already; ask for more with --epochs") }
        } else {
            let input = try inputSpec(data.train.x)
            net = try Network(arch: Architectures.expand(arch), input: input, classes: data.classes)
            net.initialize(seed: cfg.seed)
            trainer = Trainer(net: net, config: cfg, data: data.train)
        }
        net.meta = ["args": .array(provenanceArgs(Array(CommandLine.arguments.dropFirst())).map { .string($0) }), "seed": .number(Double(cfg.seed)),
                    "data": ["rows": .number(Double(data.train.count)), "crc32": .number(Double(data.fingerprint))],
                    "version": .string(tlVersion), "arch_name": .string(arch), "parameters": .number(Double(net.parameterCount))]
        Session.note("\(arch): \(net.parameterCount) parameters, \(data.train.count) training rows, \(data.classes.count) classes" + (val.map { ", \($0.count) validation rows" } ?? ""))

        var log = "epoch,loss,train_acc,val_acc,lr,seconds,images_per_s\n"
        if let lp = a.value("log"), a.has("resume"), let old = try? Input.open(lp).reader().readToEnd() {
            log = String(decoding: old, as: UTF8.self)  // continue the resumed run's log
        }
        let total = cfg.epochs * data.train.count
        let p = Progress("train", total: total - trainer.epoch * data.train.count, unit: "img")
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

    /// Reads x, y (and names) wholly. Labels must be integers in 0..<classes.
    static func readLabeled(_ path: String, classes: [String]?) throws -> Data {
        let set = try readAll(try openRecords(path))
        guard let x = set.tensors["x"] else { throw TLError.data("no 'x' record (inputs)", file: path) }
        guard let yt = set.tensors["y"] else {
            throw TLError.data("no 'y' record (class labels); add them with tl-tensor stack", file: path)
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

    /// The input description from training data: per-sample shape (gray [H, W] gains a channel
    /// axis), u8 scaled to [0, 1], per-channel mean and standard deviation.
    static func inputSpec(_ x: Tensor) throws -> InputSpec {
        var shape = Array(x.shape.dropFirst())
        if shape.count == 2 { shape.insert(1, at: 0) }
        let scale: Float = x.dtype == .u8 ? 1 / 255 : 1
        let c = shape.count == 3 ? shape[0] : 1
        let f = try x.converted(to: .f32)
        let per = shape.reduce(1, *), plane = per / c
        var mean = [Float](repeating: 0, count: c), std = mean
        for ch in 0..<c {
            var s = 0.0, s2 = 0.0
            for i in 0..<x.rows {
                let p = f.f32 + i * per + ch * plane
                for q in 0..<plane { let v = Double(p[q] * scale); s += v; s2 += v * v }
            }
            let n = Double(x.rows * plane), mu = s / n
            mean[ch] = Float(mu); std[ch] = Float(max((s2 / n - mu * mu).squareRoot(), 1e-6))
        }
        return InputSpec(shape: shape, scale: scale, mean: mean, std: std)
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

    static func classWeights(_ s: String, _ d: Data) throws -> [Float] {
        let k = d.classes.count
        if s == "balanced" {  // n / (k · count_c), scikit-learn's "balanced"
            var counts = [Int](repeating: 0, count: k)
            for y in d.train.y { counts[y] += 1 }
            return counts.map { $0 == 0 ? 0 : Float(d.train.count) / Float(k * $0) }
        }
        let w = s.split(separator: ",").compactMap { Float($0) }
        guard w.count == k, w.allSatisfy({ $0 >= 0 }) else { throw TLError.usage("--class-weights needs \(k) non-negative numbers or 'balanced'") }
        return w
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
