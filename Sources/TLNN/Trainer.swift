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

/// Mini-batch training of a network with softmax cross-entropy. Deterministic: the shuffle of
/// epoch e, the augmentation and dropout of step s depend only on (seed, e, s), so the same seed
/// and thread count give the same bits, and a run resumed from an epoch's checkpoint continues
/// exactly as the uninterrupted run would.
public final class Trainer {
    public let net: Network
    public let config: TrainConfig
    public let optimizer: Optimizer
    public let data: LabeledData
    public let stepsPerEpoch: Int
    public let schedule: Schedule
    public private(set) var step = 0
    public private(set) var epoch = 0
    public var bestValAccuracy = -1.0
    public var epochsSinceBest = 0

    public init(net: Network, config: TrainConfig, data: LabeledData) {
        self.net = net; self.config = config; self.data = data
        optimizer = Optimizer(config.optimizer, momentum: config.optimizer == .sgd ? config.momentum : 0,
                              nesterov: config.nesterov, weightDecay: config.weightDecay)
        stepsPerEpoch = (data.count + config.batch - 1) / config.batch
        schedule = Schedule(config.schedule, base: config.lr, totalSteps: stepsPerEpoch * config.epochs, stepsPerEpoch: stepsPerEpoch,
                            warmupSteps: Int(config.warmupEpochs * Double(stepsPerEpoch)))
    }

    /// Continue from a checkpoint's counters (parameters and optimizer state already loaded).
    public func resume(epoch: Int, step: Int, best: Double, sinceBest: Int) {
        self.epoch = epoch; self.step = step; bestValAccuracy = best; epochsSinceBest = sinceBest
    }

    /// True when early stopping says to stop.
    public var shouldStop: Bool { config.patience.map { epochsSinceBest >= $0 } ?? false }

    /// One epoch. `onBatch(images, loss)` reports progress. Throws a data error on a NaN loss.
    public func trainEpoch(val: LabeledData?, onBatch: (Int, Double) -> Void) throws -> EpochStats {
        let t0 = monotonicSeconds()
        var rng = RNG(seed: config.seed, stream: 0x5EED_0000 &+ UInt64(epoch))
        let order = rng.permutation(data.count)
        var lossSum = 0.0, correct = 0, seen = 0
        var lastLR: Float = 0
        let params = net.parameters
        for b in 0..<stepsPerEpoch {
            let idx = order[(b * config.batch)..<min(data.count, (b + 1) * config.batch)]
            var raw = data.gather(Array(idx))
            if config.cropPad > 0 || config.flip { raw = augment(raw, step: step) }
            let x = try net.normalize(raw)
            let labels = idx.map { data.y[$0] }
            let ctx = Context(training: true, seed: config.seed, step: UInt64(step), threads: config.threads)
            for p in params where !p.frozen { p.zeroGrad() }
            let logits = try net.forward(x, ctx)
            let (loss, grad) = Loss.crossEntropy(logits: logits, labels: labels, smoothing: config.labelSmoothing, classWeights: config.classWeights)
            guard loss.isFinite else {
                throw TLError.data("the loss became \(loss) at epoch \(epoch + 1), batch \(b + 1) (learning rate too high?)")
            }
            _ = net.body.backward(grad, needInputGrad: false, ctx)
            lastLR = schedule.rate(step)
            optimizer.step(params, lr: lastLR)
            var am = [Int](repeating: 0, count: idx.count)
            Elementwise.argmaxRows(rows: idx.count, cols: logits.shape[1], x: logits.f32, out: &am)
            for (k, l) in labels.enumerated() where am[k] == l { correct += 1 }
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
        return EpochStats(epoch: epoch, loss: lossSum / Double(max(seen, 1)), trainAccuracy: Double(correct) / Double(max(seen, 1)),
                          valAccuracy: valAcc, lr: lastLR, seconds: dt, imagesPerSecond: Double(seen) / dt)
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

