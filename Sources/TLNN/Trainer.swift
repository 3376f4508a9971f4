import Glibc
import TLCore

/// How to train. Defaults follow the usual recipe for these small networks (SGD with momentum
/// 0.9, batch 64; PyTorch's defaults for the rest).
public struct TrainConfig {
    public var epochs = 5
    public var batch = 64
    public var optimizer: Optimizer.Kind = .sgd
    public var lr = 0.01
    public var momentum: Float = 0.9
    public var nesterov = false
    public var weightDecay: Float = 0
    public var schedule: Schedule.Kind = .constant
    public var warmupEpochs = 0.0
    public var labelSmoothing: Float = 0
    public var classWeights: [Float]? = nil
    public var seed: UInt64 = 0
    public var threads = Threads.count
    /// Random crop: pad by this many pixels and crop back at a random offset (0 = off).
    public var cropPad = 0
    /// Random horizontal flip with probability 1/2.
    public var flip = false
    /// Stop when validation accuracy has not improved for this many epochs (nil = never).
    public var patience: Int? = nil
    /// Split each batch into this many shards, computed at once on twins of the network and
    /// their gradients summed (data parallelism); 0 = `Trainer.defaultShards`. The result
    /// depends on the shard count, never on the thread count.
    public var shards = 0
    public init() {}
}

/// Per-epoch figures.
public struct EpochStats {
    public var epoch: Int
    public var loss: Double
    public var trainAccuracy: Double
    public var valAccuracy: Double?
    public var lr: Float
    public var seconds: Double
    public var imagesPerSecond: Double
}

/// A labeled data set in memory: raw inputs (any dtype, [N, ...]) and labels.
public struct LabeledData {
    public var x: Tensor
    public var y: [Int]
    public init(x: Tensor, y: [Int]) { self.x = x; self.y = y }
    public var count: Int { y.count }

    /// Rows `idx` as a contiguous raw tensor.
    public func gather(_ idx: [Int]) -> Tensor { try! x.gathered(idx) }
}

/// Training data for any network: one part per network input that has rows, each row with a
/// label per task of the network (−1 where it has none: multitask data where some examples
/// are labeled for some tasks only).
public struct TrainingSet {
    public struct Part {
        /// The network input these rows go through.
        public var input: Int
        public var x: Tensor
        /// labels[task][row], −1 for none.
        public var labels: [[Int]]
        public init(input: Int, x: Tensor, labels: [[Int]]) { self.input = input; self.x = x; self.labels = labels }
        public var count: Int { x.rows }
    }
    public var parts: [Part]
    public init(parts: [Part]) { self.parts = parts }
    /// One input, one task, every row labeled.
    public init(_ d: LabeledData) { parts = [Part(input: 0, x: d.x, labels: [d.y])] }
    public var count: Int { parts.reduce(0) { $0 + $1.count } }
}

/// Distillation toward a teacher's outputs on the same inputs (output preservation, as in
/// Learning without Forgetting): λ · T² · KL(softmax(teacher/T) ‖ softmax(head/T)) on every
/// row, `head` one of the network's tasks.
public struct Distillation {
    public var task: Int
    public var teacher: Network
    public var lambda: Float
    public var temperature: Float
    public init(task: Int, teacher: Network, lambda: Float, temperature: Float) {
        self.task = task; self.teacher = teacher; self.lambda = lambda; self.temperature = temperature
    }
}

/// A penalty on the parameters themselves, added to the batch loss: L2-SP (Li, Grandvalet and
/// Davoine 2018), α/2·‖w − w⁰‖² pulling copied weights toward their starting point w⁰ and
/// β/2·‖w‖² on the new ones. Frozen parameters are left out.
public struct ParameterPenalty {
    public var anchored: [(Parameter, Tensor, Float)] = []
    public var shrunk: [(Parameter, Float)] = []
    public init() {}
    public var isEmpty: Bool { anchored.isEmpty && shrunk.isEmpty }

    /// The penalty's value; adds its gradient to the parameters' gradients.
    @discardableResult
    public func apply() -> Double {
        var total = 0.0
        for (p, w0, a) in anchored where !p.frozen && a != 0 {
            var s = 0.0
            for i in 0..<p.count { let d = p.v[i] - w0.f32[i]; s += Double(d * d); p.g[i] += a * d }
            total += 0.5 * Double(a) * s
        }
        for (p, b) in shrunk where !p.frozen && b != 0 {
            var s = 0.0
            for i in 0..<p.count { let w = p.v[i]; s += Double(w * w); p.g[i] += b * w }
            total += 0.5 * Double(b) * s
        }
        return total
    }
}

/// What the training minimizes beyond the default task's cross-entropy: the weights of the
/// tasks (one per task of the network, 1 by default), output distillation and a parameter
/// penalty.
public struct Objective {
    public var taskWeights: [Float]? = nil
    public var distillation: Distillation? = nil
    public var penalty = ParameterPenalty()
    public init() {}
}

/// Mini-batch training of a network with softmax cross-entropy on each of its tasks (the mean
/// over the rows of the batch labeled for the task), plus the objective's distillation and
/// penalty. Deterministic: the shuffle of epoch e, the augmentation and dropout of step s depend
/// only on (seed, e, s, shard), so the same seed and shard count give the same bits whatever the
/// thread count, and a run resumed from an epoch's checkpoint continues exactly as the
/// uninterrupted run would.
public final class Trainer {
    public let net: Network
    public let config: TrainConfig
    public let optimizer: Optimizer
    public let data: TrainingSet
    public let objective: Objective
    public let stepsPerEpoch: Int
    public let schedule: Schedule
    public private(set) var step = 0
    public private(set) var epoch = 0
    public var bestValAccuracy = -1.0
    public var epochsSinceBest = 0
    /// Called before each epoch with its index (gradual unfreezing sets `frozen` here).
    public var beforeEpoch: ((Int) -> Void)? = nil
    /// Shards per batch (see `TrainConfig.shards`) and the twins computing shards 1, 2, ...
    public let shards: Int
    var replicas: [Network] = []

    public convenience init(net: Network, config: TrainConfig, data: LabeledData) {
        self.init(net: net, config: config, set: TrainingSet(data))
    }

    public init(net: Network, config: TrainConfig, set: TrainingSet, objective: Objective = Objective()) {
        self.net = net; self.config = config; data = set; self.objective = objective
        shards = config.shards > 0 ? config.shards : Trainer.defaultShards(net, batch: config.batch)
        optimizer = Optimizer(config.optimizer, momentum: config.optimizer == .sgd ? config.momentum : 0,
                              nesterov: config.nesterov, weightDecay: config.weightDecay)
        stepsPerEpoch = (set.count + config.batch - 1) / config.batch
        schedule = Schedule(config.schedule, base: config.lr, totalSteps: stepsPerEpoch * config.epochs, stepsPerEpoch: stepsPerEpoch,
                            warmupSteps: Int(config.warmupEpochs * Double(stepsPerEpoch)))
    }

    /// Two shards for a network without batch statistics and batches of 32 or more: small
    /// networks keep two cores busier running two half batches side by side than splitting
    /// each layer's work (LeNet-5 at batch 64: 1.3× faster on two cores). Batch normalization
    /// normalizes by the whole batch's statistics, so such networks run one shard.
    public static func defaultShards(_ net: Network, batch: Int) -> Int {
        net.buffers.isEmpty && batch >= 32 ? 2 : 1
    }

    /// Continue from a checkpoint's counters (parameters and optimizer state already loaded).
    public func resume(epoch: Int, step: Int, best: Double, sinceBest: Int) {
        self.epoch = epoch; self.step = step; bestValAccuracy = best; epochsSinceBest = sinceBest
    }

    /// True when early stopping says to stop.
    public var shouldStop: Bool { config.patience.map { epochsSinceBest >= $0 } ?? false }

    /// One epoch. `onBatch(images, loss)` reports progress. Throws a data error on a NaN loss.
    /// Training accuracy is the default task's, over its labeled rows.
    public func trainEpoch(val: LabeledData?, onBatch: (Int, Double) -> Void) throws -> EpochStats {
        beforeEpoch?(epoch)
        let t0 = monotonicSeconds()
        var rng = RNG(seed: config.seed, stream: 0x5EED_0000 &+ UInt64(epoch))
        let total = data.count
        let order = rng.permutation(total)
        var lossSum = 0.0, correct = 0, labeled = 0, seen = 0
        var lastLR: Float = 0
        let params = net.parameters
        for b in 0..<stepsPerEpoch {
            let idx = order[(b * config.batch)..<min(total, (b + 1) * config.batch)]
            let r = try lossAndGradients(rows: Array(idx))
            let loss = r.loss
            correct += r.correct; labeled += r.labeled
            guard loss.isFinite else {
                throw TLError.data("the loss became \(loss) at epoch \(epoch + 1), batch \(b + 1) (learning rate too high?)")
            }
            lastLR = schedule.rate(step)
            optimizer.step(params, lr: lastLR)
            lossSum += loss * Double(idx.count); seen += idx.count
            step += 1
            onBatch(idx.count, loss)
        }
        let dt = monotonicSeconds() - t0
        var valAcc: Double? = nil
        if let v = val {
            let a = try accuracy(v)
            valAcc = a
            if a > bestValAccuracy { bestValAccuracy = a; epochsSinceBest = 0 } else { epochsSinceBest += 1 }
        }
        epoch += 1
        return EpochStats(epoch: epoch, loss: lossSum / Double(max(seen, 1)), trainAccuracy: Double(correct) / Double(max(labeled, 1)),
                          valAccuracy: valAcc, lr: lastLR, seconds: dt, imagesPerSecond: Double(seen) / dt)
    }

    /// The objective on rows `idx` of the training set (indices over all parts in order) and
    /// its gradient, left in the parameters' gradients (zeroed first): one training step
    /// without the update. Also the default task's correct and labeled counts.
    public func lossAndGradients(rows idx: [Int]) throws -> (loss: Double, correct: Int, labeled: Int) {
        if shards > 1 {
            guard net.buffers.isEmpty else {
                throw TLError.usage("the network has batch normalization, which needs the whole batch at once: it trains with 1 shard, not \(shards)")
            }
            while replicas.count < shards - 1 { replicas.append(try net.replica()) }
            for r in replicas { r.share(with: net) }
        }
        let active = [net] + replicas
        for m in active { for p in m.parameters where !p.frozen { p.zeroGrad() } }
        var start = 0, loss = 0.0, correct = 0, labeled = 0
        for (k, part) in data.parts.enumerated() {
            let rows = idx.filter { $0 >= start && $0 < start + part.count }.map { $0 - start }
            start += part.count
            guard !rows.isEmpty else { continue }
            let r = try step(part, rows: rows, seedOffset: UInt64(k))
            loss += r.loss; correct += r.correct; labeled += r.labeled
        }
        // The shards' gradients, summed in shard order into the network's.
        let params = net.parameters
        for r in active.dropFirst() {
            for (p, q) in zip(params, r.parameters) where !p.frozen {
                let g = p.g, h = q.g
                for i in 0..<p.count { g[i] += h[i] }
            }
        }
        if !objective.penalty.isEmpty { loss += objective.penalty.apply() }
        return (loss, correct, labeled)
    }

    /// Forward and backward of one part's rows of a batch: the tasks labeled among them, and
    /// distillation when the part goes through the default input. The rows are cut into
    /// `shards` contiguous shards run at once, each on its own twin of the network with its
    /// share of the threads; every loss is divided by the whole batch's count (or weight), so
    /// the shards' losses and gradients add up to the batch's. Gradients accumulate.
    func step(_ part: TrainingSet.Part, rows: [Int], seedOffset: UInt64) throws -> (loss: Double, correct: Int, labeled: Int) {
        var raw = try part.x.gathered(rows)
        if config.cropPad > 0 || config.flip { raw = augment(raw, step: step) }
        let x = try net.normalize(raw, input: part.input)
        // Tasks with labels here: (task index, labeled positions in the batch, their labels).
        var work: [(task: Int, pos: [Int], labels: [Int])] = []
        for (t, labels) in part.labels.enumerated() {
            var pos: [Int] = [], lab: [Int] = []
            for (i, r) in rows.enumerated() where labels[r] >= 0 { pos.append(i); lab.append(labels[r]) }
            if !pos.isEmpty { work.append((t, pos, lab)) }
        }
        let distill = objective.distillation.flatMap { part.input == 0 ? $0 : nil }
        var wanted = work.map { net.tasks[$0.task].output }
        if let d = distill { wanted.append(net.tasks[d.task].output) }
        guard !wanted.isEmpty else { return (0, 0, 0) }
        let outputs = Array(Set(wanted)).sorted()
        let norms = work.map { Loss.weightSum($0.labels, $0.task == 0 ? config.classWeights : nil) }
        let n = rows.count, s = min(shards, n)
        let nets = [net] + replicas
        let inner = max(1, config.threads / s)
        var results = [Result<(Double, Int, Int), Error>](repeating: .success((0, 0, 0)), count: s)
        results.withUnsafeMutableBufferPointer { res in
            let out = UnsafeSendable(res.baseAddress!)
            Threads.parallelFor(s, threads: config.threads) { k in
                let lo = k * n / s, hi = (k + 1) * n / s
                let ctx = Context(training: true, seed: config.seed &+ seedOffset &+ (UInt64(k) << 32), step: UInt64(step), threads: inner)
                out.value[k] = Result {
                    try shardStep(nets[k], x: x.rows(lo..<hi), range: lo..<hi, outputs: outputs, work: work, norms: norms,
                                  distill: distill, batch: n, input: part.input, ctx)
                }
            }
        }
        var loss = 0.0, correct = 0, labeled = 0
        for r in results {
            let (l, c, m) = try r.get()
            loss += l; correct += c; labeled += m
        }
        return (loss, correct, labeled)
    }

    /// One shard: rows `range` of the batch (`x` holds them) through `model`, the losses of
    /// the labeled tasks divided by the batch's `norms`, distillation by its row count.
    func shardStep(_ model: Network, x: Tensor, range: Range<Int>, outputs: [String], work: [(task: Int, pos: [Int], labels: [Int])],
                   norms: [Double], distill: Distillation?, batch n: Int, input: Int, _ ctx: Context) throws -> (Double, Int, Int) {
        let outs = try model.forward(x, input: input, outputs: outputs, ctx)
        var seeds: [String: Tensor] = [:]
        func addSeed(_ name: String, _ g: Tensor) {
            if let old = seeds[name] { for i in 0..<g.count { old.f32[i] += g.f32[i] } } else { seeds[name] = g }
        }
        let rows = range.count
        var loss = 0.0, correct = 0, labeled = 0
        for (w, (t, allPos, allLab)) in work.enumerated() {
            var pos: [Int] = [], lab: [Int] = []
            for (i, p) in allPos.enumerated() where range.contains(p) { pos.append(p - range.lowerBound); lab.append(allLab[i]) }
            guard !pos.isEmpty else { continue }
            let logits = outs[model.tasks[t].output]!
            let k = logits.shape[1], all = pos.count == rows
            let sub = all ? logits : try logits.gathered(pos)
            let (l, g) = Loss.crossEntropy(logits: sub, labels: lab, smoothing: config.labelSmoothing,
                                           classWeights: t == 0 ? config.classWeights : nil, normalizer: norms[w])
            let tw = objective.taskWeights?[t] ?? 1
            loss += Double(tw) * l
            let full = all ? g : Tensor.f32([rows, k])
            if !all { for (j, i) in pos.enumerated() { (full.f32 + i * k).update(from: g.f32 + j * k, count: k) } }
            if tw != 1 { for i in 0..<full.count { full.f32[i] *= tw } }
            addSeed(model.tasks[t].output, full)
            if t == 0 {
                var am = [Int](repeating: 0, count: pos.count)
                Elementwise.argmaxRows(rows: pos.count, cols: k, x: sub.f32, out: &am)
                for (j, y) in lab.enumerated() where am[j] == y { correct += 1 }
                labeled += pos.count
            }
        }
        if let d = distill {
            let teacher = try d.teacher.forward(x, Context(training: false, threads: ctx.threads))
            let (l, g) = Loss.distillation(student: outs[model.tasks[d.task].output]!, teacher: teacher, temperature: d.temperature, rows: n)
            loss += Double(d.lambda) * l
            if d.lambda != 1 { for i in 0..<g.count { g.f32[i] *= d.lambda } }
            addSeed(model.tasks[d.task].output, g)
        }
        if !seeds.isEmpty { model.backward(seeds, ctx) }
        return (loss, correct, labeled)
    }

    /// Accuracy of the network on labeled data (evaluation mode, batches of 256).
    public func accuracy(_ d: LabeledData) throws -> Double {
        try Trainer.accuracy(net, d, threads: config.threads)
    }

    public static func accuracy(_ net: Network, _ d: LabeledData, threads: Int) throws -> Double {
        var correct = 0
        let bs = 256
        var i = 0
        while i < d.count {
            let j = min(d.count, i + bs)
            let x = try net.normalize(d.x.rows(i..<j))
            let logits = try net.forward(x, Context(training: false, threads: threads))
            var am = [Int](repeating: 0, count: j - i)
            Elementwise.argmaxRows(rows: j - i, cols: logits.shape[1], x: logits.f32, out: &am)
            for k in 0..<(j - i) where am[k] == d.y[i + k] { correct += 1 }
            i = j
        }
        return Double(correct) / Double(max(d.count, 1))
    }

    /// Random crop (zero padding) and horizontal flip of raw [N, (C,) H, W] images.
    func augment(_ raw: Tensor, step: Int) -> Tensor {
        var rng = RNG(seed: config.seed, stream: 0xA0C0_0000 &+ UInt64(step))
        let f = try! raw.converted(to: .f32)
        let out = Tensor.f32(raw.shape)
        let h = raw.shape[raw.rank - 2], w = raw.shape[raw.rank - 1]
        let planes = raw.count / (raw.rows * h * w)
        let p = config.cropPad
        for i in 0..<raw.rows {
            let dy = p > 0 ? rng.below(2 * p + 1) - p : 0, dx = p > 0 ? rng.below(2 * p + 1) - p : 0
            let flip = config.flip && rng.below(2) == 1
            for c in 0..<planes {
                let src = f.f32 + (i * planes + c) * h * w, dst = out.f32 + (i * planes + c) * h * w
                for r in 0..<h {
                    let sr = r + dy
                    for q in 0..<w {
                        let sq = (flip ? w - 1 - q : q) + dx
                        dst[r * w + q] = sr >= 0 && sr < h && sq >= 0 && sq < w ? src[sr * w + sq] : 0
                    }
                }
            }
        }
        return out
    }
}

