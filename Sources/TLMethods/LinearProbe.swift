import TLCore
import TLNN

/// A linear classifier on features (CNN codes): multinomial logistic regression or a
/// one-vs-rest L2-loss linear SVM, with an L2 penalty on the weights (not the biases).
///
/// Objective, with sample weights wᵢ from the class weights (1 by default):
///
///     f(W, b) = Σᵢ wᵢ ℓ(W xᵢ + b, yᵢ) / Σᵢ wᵢ  +  λ/2 ‖W‖²,   λ = 1 / (C · Σᵢ wᵢ)
///
/// which is scikit-learn's `LogisticRegression(C=C)` and `LinearSVC(C=C)` objective divided by
/// C·Σwᵢ (the same minimizer). ℓ is softmax cross-entropy or Σⱼ max(0, 1 − tⱼ sⱼ)².
///
/// The result is an ordinary network, `fcK` on the feature shape, whose input normalization
/// holds the standardization (when asked for): predicting is running the model.
public struct LinearConfig {
    public enum Loss: String, CaseIterable, Sendable { case softmax, svm }
    public enum Solver: String, CaseIterable, Sendable { case lbfgs, minibatch }
    public var loss = Loss.softmax
    /// C (scikit-learn's and liblinear's cost; default 1 as there). Ignored when `l2` is set.
    public var cost = 1.0
    /// λ directly, overriding C.
    public var l2: Double? = nil
    /// Standardize each feature (each channel of [C, H, W] features) by the training data's
    /// mean and standard deviation, kept in the model.
    public var standardize = false
    public var classWeights: [Float]? = nil
    public var solver = Solver.lbfgs
    /// L-BFGS: iteration limit and tolerance on the largest gradient component.
    public var maxIterations = 1000
    public var tolerance = 1e-4
    /// Minibatch: epochs over the data, batch size, optimizer and rate, and the shuffle buffer.
    public var epochs = 10
    public var batch = 256
    public var optimizer = Optimizer.Kind.adam
    public var lr = 0.001
    public var shuffleRows = 1 << 14
    public var seed: UInt64 = 0
    public var threads = Threads.count
    public init() {}

    /// λ for a total sample weight Σwᵢ.
    public func lambda(weightSum: Double) -> Double { l2 ?? 1 / (cost * max(weightSum, 1e-30)) }
}

/// What fitting reports (also written into the model's metadata).
public struct LinearFit {
    public var net: Network
    public var objective: Double
    public var iterations: Int
    public var converged: Bool
    public var reason: String
    public var lambda: Double
}

public enum LinearProbe {
    /// A fresh linear network for features of per-sample `shape` and `classes`.
    static func network(spec: InputSpec, classes: [String]) throws -> Network {
        try Network(arch: "fc\(classes.count)", input: spec, classes: classes)
    }

    static func weightSum(_ labels: [Int], _ cw: [Float]?) -> Double { TLNN.Loss.weightSum(labels, cw) }

    /// Full-batch fit by L-BFGS on data in memory (x [N, ...] any numeric dtype, labels in
    /// 0..<classes.count). `onIteration(k, f, max|g|)` reports progress.
    public static func fit(x raw: Tensor, labels: [Int], classes: [String], config c: LinearConfig,
                           onIteration: ((Int, Double, Double) -> Void)? = nil) throws -> LinearFit {
        let spec = try InputSpec.fitted(to: raw, perFeature: true, standardize: c.standardize)
        let net = try network(spec: spec, classes: classes)
        let x = try net.normalize(raw)
        let n = x.rows, d = perSample(x.shape), k = classes.count
        guard n > 0 else { throw TLError.data("no training rows") }
        let wsum = weightSum(labels, c.classWeights)
        let lambda = c.lambda(weightSum: wsum)
        let obj = BlockedObjective(x: x.reshaped([n, d]), labels: labels, classes: k, loss: c.loss, classWeights: c.classWeights,
                                   weightSum: wsum, threads: c.threads)
        let objective: ([Double], inout [Double]) -> Double = { p, g in
            let loss = obj.evaluate(p, &g)
            var norm = 0.0
            for i in 0..<k * d { norm += p[i] * p[i]; g[i] += lambda * p[i] }
            return loss + lambda / 2 * norm
        }
        var opt = LBFGS()
        opt.maxIterations = c.maxIterations; opt.gradientTolerance = c.tolerance
        let r = opt.minimize([Double](repeating: 0, count: k * (d + 1)), onIteration: onIteration, objective)
        guard r.value.isFinite else { throw TLError.data("the objective is not finite (features with NaN or infinite values?)") }
        let fc = net.parameters
        for i in 0..<k * d { fc[0].v[i] = Float(r.x[i]) }
        for j in 0..<k { fc[1].v[j] = Float(r.x[k * d + j]) }
        return LinearFit(net: net, objective: r.value, iterations: r.iterations, converged: r.converged, reason: r.reason, lambda: lambda)
    }

    /// The mean loss and its gradient with respect to the scores.
    static func lossAndGradient(_ kind: LinearConfig.Loss, _ logits: Tensor, _ labels: [Int], _ cw: [Float]?) -> (Double, Tensor) {
        switch kind {
        case .softmax: return TLNN.Loss.crossEntropy(logits: logits, labels: labels, classWeights: cw)
        case .svm: return TLNN.Loss.squaredHinge(logits: logits, labels: labels, classWeights: cw)
        }
    }

    /// Minibatch fit for data that need not fit in memory: `open()` gives a fresh reader of the
    /// labeled stream for each pass (one pass for the standardization statistics when asked, then
    /// one per epoch). Rows are shuffled within a buffer of `shuffleRows`; λ is applied as weight
    /// decay, so the minimizer is the same objective's (reached approximately).
    public static func fitMinibatch(open: () throws -> RecordReader, classes: [String], config c: LinearConfig,
                                    onBatch: ((Int, Double) -> Void)? = nil) throws -> LinearFit {
        // Pass 0: the feature shape, the total weight and (if asked) the statistics.
        var shape: [Int]? = nil, xdtype = DType.f32, rows = 0, wsum = 0.0
        var acc: MomentAccumulator? = nil
        var pairs = LabeledRows(try open())
        while let (x, y) = try pairs.next() {
            if shape == nil {
                shape = Array(x.shape.dropFirst()); xdtype = x.dtype
                if shape!.count == 2 { shape!.insert(1, at: 0) }
                let groups = shape!.count == 3 || shape!.count == 1 ? shape![0] : 1
                if c.standardize { acc = MomentAccumulator(groups: groups, plane: shape!.reduce(1, *) / groups, scale: xdtype == .u8 ? 1 / 255 : 1) }
            }
            try acc?.add(x)
            let labels = try checkedLabels(y, classes.count, firstRow: rows)
            wsum += weightSum(labels, c.classWeights)
            rows += x.rows
        }
        guard let sh = shape, rows > 0 else { throw TLError.data("no training rows") }
        var spec = InputSpec(shape: sh, scale: xdtype == .u8 ? 1 / 255 : 1)
        if let a = acc { (spec.mean, spec.std) = a.result() }
        let net = try network(spec: spec, classes: classes)
        let lambda = c.lambda(weightSum: wsum)
        let opt = Optimizer(c.optimizer, momentum: c.optimizer == .sgd ? 0.9 : 0, weightDecay: Float(lambda))
        let params = net.parameters
        var step = 0, lastLoss = 0.0
        for epoch in 0..<c.epochs {
            var rng = RNG(seed: c.seed, stream: 0x11AE_0000 &+ UInt64(epoch))
            var buffer = ShuffleBuffer(capacity: c.shuffleRows)
            var src = LabeledRows(try open())
            var lossSum = 0.0, seen = 0
            func train(_ x: Tensor, _ labels: [Int]) throws {
                let ctx = Context(training: true, seed: c.seed, step: UInt64(step), threads: c.threads)
                for p in params { p.zeroGrad() }
                let logits = try net.forward(try net.normalize(x), ctx)
                let (loss, dl) = lossAndGradient(c.loss, logits, labels, c.classWeights)
                guard loss.isFinite else { throw TLError.data("the loss became \(loss) at epoch \(epoch + 1) (learning rate too high?)") }
                _ = net.body.backward(dl, needInputGrad: false, ctx)
                opt.step(params, lr: Float(c.lr))
                step += 1; lossSum += loss * Double(labels.count); seen += labels.count
                onBatch?(labels.count, loss)
            }
            var end = false
            while !end {
                if let (x, y) = try src.next() { try buffer.add(x, try checkedLabels(y, classes.count, firstRow: 0)) } else { end = true }
                while buffer.rows >= (end ? 1 : c.shuffleRows) {
                    for (x, labels) in try buffer.drain(batch: c.batch, rng: &rng, all: end) { try train(x, labels) }
                    if end { break }
                }
            }
            lastLoss = lossSum / Double(max(seen, 1))
        }
        var norm = 0.0
        for i in 0..<params[0].count { norm += Double(params[0].v[i] * params[0].v[i]) }
        return LinearFit(net: net, objective: lastLoss + lambda / 2 * norm, iterations: step, converged: false,
                         reason: "\(c.epochs) epochs; the objective is estimated from the last epoch's mean minibatch loss", lambda: lambda)
    }

    /// Labels as Ints in 0..<k, or a data error naming the row.
    /// With `missing`, −1 passes (a row without a label, as multitask data mark them).
    public static func checkedLabels(_ y: Tensor, _ k: Int, firstRow: Int, missing: Bool = false) throws -> [Int] {
        let yi = try y.converted(to: .i64)
        let p = yi.rawPointer.assumingMemoryBound(to: Int64.self)
        return try (0..<y.count).map { i in
            let v = Int(p[i])
            guard v >= 0 && v < k || missing && v == -1 else { throw TLError.data("label \(v) is out of range for \(k) classes", location: "y row \(firstRow + i)") }
            return v
        }
    }
}

/// The data term of the linear objective, Σ wᵢℓᵢ / Σ wᵢ, and its gradient, in one pass over the
/// features per evaluation: for each block of rows small enough to stay in L2 cache, the scores
/// (GEMM), the loss and its gradient with respect to the scores, and the weight gradient
/// (GEMM) while the block is still in cache. Streaming the features once instead of twice
/// halves the time on data larger than the cache, where the work is memory-bound. Blocks go
/// round-robin to a fixed number of partial sums, added in order: the result does not depend
/// on the thread count.
final class BlockedObjective {
    static let blockRows = 256, partials = 4
    let x: Tensor, labels: [Int], k: Int, d: Int, n: Int
    let loss: LinearConfig.Loss, classWeights: [Float]?, weightSum: Double, threads: Int
    let w: Tensor, b: Tensor
    /// Per partial: weight gradient [k, d], bias gradient [k], loss sum.
    var gw: [Tensor], gb: [[Double]], lsum: [Double]

    init(x: Tensor, labels: [Int], classes: Int, loss: LinearConfig.Loss, classWeights: [Float]?, weightSum: Double, threads: Int) {
        self.x = x; self.labels = labels; k = classes; n = x.rows; d = x.shape[1]
        self.loss = loss; self.classWeights = classWeights; self.weightSum = weightSum; self.threads = threads
        w = Tensor.f32([k, d]); b = Tensor.f32([k])
        gw = (0..<BlockedObjective.partials).map { _ in Tensor.f32([classes, x.shape[1]]) }
        gb = [[Double]](repeating: [Double](repeating: 0, count: classes), count: BlockedObjective.partials)
        lsum = [Double](repeating: 0, count: BlockedObjective.partials)
    }

    /// The data term at parameters p (W [k, d] then b [k]); its gradient into g.
    func evaluate(_ p: [Double], _ g: inout [Double]) -> Double {
        for i in 0..<k * d { w.f32[i] = Float(p[i]) }
        for j in 0..<k { b.f32[j] = Float(p[k * d + j]) }
        let blocks = (n + BlockedObjective.blockRows - 1) / BlockedObjective.blockRows
        let me = UnsafeSendable(self)
        Threads.parallelFor(BlockedObjective.partials, threads: threads) { q in
            me.value.partial(q, blocks: blocks)
        }
        var total = 0.0
        for i in 0..<k * d { var s = 0.0; for q in 0..<BlockedObjective.partials { s += Double(gw[q].f32[i]) }; g[i] = s }
        for j in 0..<k { var s = 0.0; for q in 0..<BlockedObjective.partials { s += gb[q][j] }; g[k * d + j] = s }
        for q in 0..<BlockedObjective.partials { total += lsum[q] }
        return total
    }

    /// Blocks q, q + partials, q + 2·partials, ... in order, into partial q.
    func partial(_ q: Int, blocks: Int) {
        let gq = gw[q], br = BlockedObjective.blockRows
        gq.f32.update(repeating: 0, count: k * d)
        let logits = Tensor.f32([br, k], zero: false), dl = Tensor.f32([br, k], zero: false)
        let gradScale = Float(1 / weightSum)
        var bq = [Double](repeating: 0, count: k), lq = 0.0
        labels.withUnsafeBufferPointer { yp in
            var blk = q
            while blk < blocks {
                let r0 = blk * br, r1 = min(n, r0 + br), m = r1 - r0
                let xb = x.f32 + r0 * d
                FewClasses.scores(m: m, n: k, k: d, a: xb, lda: d, b: w.f32, ldb: d, c: logits.f32, ldc: k)
                Elementwise.addBias(rows: m, cols: k, bias: b.f32, y: logits.f32)
                switch loss {
                case .softmax:
                    lq += TLNN.Loss.crossEntropySum(rows: m, classes: k, logits: logits.f32, labels: yp.baseAddress! + r0, smoothing: 0,
                                                    classWeights: classWeights, gradScale: gradScale, grad: dl.f32)
                case .svm:
                    lq += TLNN.Loss.squaredHingeSum(rows: m, classes: k, logits: logits.f32, labels: yp.baseAddress! + r0,
                                                    classWeights: classWeights, gradScale: gradScale, grad: dl.f32)
                }
                let nextStart = r0 + BlockedObjective.partials * br
                let nextRows = max(0, min(n, nextStart + br) - nextStart)
                FewClasses.accumulateGradient(m: m, n: k, k: d, d: dl.f32, ldd: k, a: xb, lda: d, g: gq.f32, ldg: d,
                                              next: nextRows > 0 ? x.f32 + nextStart * d : nil, nextRows: nextRows)
                for r in 0..<m { for j in 0..<k { bq[j] += Double(dl.f32[r * k + j]) } }
                blk += BlockedObjective.partials
            }
        }
        gb[q] = bq; lsum[q] = lq / weightSum
    }
}

/// Pairs the rows of `x` and `y` as their chunks arrive from a stream (interleaved, or one
/// tensor after the other), yielding pieces with equal row counts. Other records are skipped.
public struct LabeledRows {
    let reader: RecordReader
    var xs: [Tensor] = [], ys: [Tensor] = []
    public init(_ r: RecordReader) { reader = r }

    public mutating func next() throws -> (Tensor, Tensor)? {
        while true {
            if let x = xs.first, let y = ys.first {
                let m = min(x.rows, y.rows)
                xs[0] = x.rows(m..<x.rows); ys[0] = y.rows(m..<y.rows)
                if xs[0].rows == 0 { xs.removeFirst() }
                if ys[0].rows == 0 { ys.removeFirst() }
                return (x.rows(0..<m), y.rows(0..<m))
            }
            guard let r = try reader.next() else {
                let xr = xs.reduce(0) { $0 + $1.rows }, yr = ys.reduce(0) { $0 + $1.rows }
                if xr != yr { throw TLError.data("x has \(xr) more rows than y has labels for, or y \(yr) more than x", file: reader.fileName) }
                return nil
            }
            if r.name == "x" { if r.tensor.rows > 0 { xs.append(r.tensor) } }
            else if r.name == "y" {
                guard r.tensor.rank == 1 else { throw TLError.data("'y' must be one label per row, not \(shapeString(r.tensor.shape))", file: reader.fileName) }
                if r.tensor.rows > 0 { ys.append(r.tensor) }
            }
        }
    }
}

/// Rows collected up to a capacity, then handed out in shuffled minibatches.
struct ShuffleBuffer {
    let capacity: Int
    var parts: [Tensor] = [], labels: [Int] = []
    var rows: Int { labels.count }
    init(capacity: Int) { self.capacity = max(capacity, 1) }
    mutating func add(_ x: Tensor, _ y: [Int]) throws { parts.append(x); labels += y }
    /// Shuffles what is held and returns it as batches (all of it when `all`, else whole batches
    /// only, keeping the remainder).
    mutating func drain(batch: Int, rng: inout RNG, all: Bool) throws -> [(Tensor, [Int])] {
        let x = try Tensor.concatenate(parts)
        let order = rng.permutation(rows)
        var out: [(Tensor, [Int])] = []
        var i = 0
        while i + batch <= rows || (all && i < rows) {
            let idx = Array(order[i..<min(i + batch, rows)])
            out.append((try x.gathered(idx), idx.map { labels[$0] }))
            i += idx.count
        }
        let rest = Array(order[i...])
        parts = rest.isEmpty ? [] : [try x.gathered(rest)]
        labels = rest.map { labels[$0] }
        return out
    }
}
