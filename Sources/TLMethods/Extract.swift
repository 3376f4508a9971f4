import TLCore
import TLNN

/// Runs a frozen network up to a layer over raw inputs: the "CNN codes" of transfer learning.
/// Inputs go through the model's own preparation (`Network.prepare`: channels, size,
/// normalization), then the first `cut.end` layers in evaluation mode, `batch` rows at a time.
public final class FeatureExtractor {
    public let net: Network
    public let cut: Network.Cut
    public let batch: Int
    public let threads: Int
    /// Spatial pooling of [C, H, W] codes to [C]: none, the mean or the maximum of each map.
    public enum Pooling: String, CaseIterable, Sendable { case none, avg, max }
    public let pooling: Pooling

    public init(net: Network, layer: String?, activation: Bool = true, batch: Int = 256, threads: Int = Threads.count,
                pooling: Pooling = .none, task: Task? = nil) throws {
        self.net = net; self.batch = max(batch, 1); self.threads = threads; self.pooling = pooling
        cut = try net.cut(layer: layer, activation: activation, task: task)
        net.prepareForInference()
        if pooling != .none && cut.shape.count != 3 {
            throw TLError.usage("--pool needs [C, H, W] codes; layer '\(cut.layer)' gives \(shapeString(cut.shape))")
        }
    }

    /// The per-image shape of the features (after pooling).
    public var shape: [Int] { pooling == .none ? cut.shape : [cut.shape[0]] }
    /// Floats per output row.
    public var width: Int { shape.reduce(1, *) }

    /// Features of `raw` [n, ...] as f32 [n, ...cut.shape].
    ///
    /// Rows are split into one contiguous part per thread, and each thread prepares and runs its
    /// part `batch` rows at a time through single-threaded kernels: no synchronization between
    /// layers, which is what limits small networks (a thread wake-up costs about 12 µs, a
    /// LeNet-5 layer on 64 images less). Evaluation-mode forward writes no layer state (see
    /// `Layer`), and every kernel's result per image is independent of batch size and threads,
    /// so the output is the same bits for any split.
    public func features(_ raw: Tensor) throws -> Tensor {
        let n = raw.rows
        let out = try Tensor(zeros: .f32, shape: [n] + shape)
        let parts = max(1, min(threads, (n + batch - 1) / batch))
        var errors = [Error?](repeating: nil, count: parts)
        let me = UnsafeSendable(self), po = UnsafeSendable(out), praw = UnsafeSendable(raw)
        errors.withUnsafeMutableBufferPointer { eb in
            let pe = UnsafeSendable(eb.baseAddress!)
            Threads.parallelFor(parts, threads: parts) { t in
                let lo = t * n / parts, hi = (t + 1) * n / parts
                do { try me.value.run(praw.value, rows: lo..<hi, into: po.value, threads: parts == 1 ? me.value.threads : 1) }
                catch { pe.value[t] = error }
            }
        }
        if let e = errors.compactMap({ $0 }).first { throw e }
        return out
    }

    /// Rows `rows` of `raw`, `batch` at a time, into the same rows of `out`.
    func run(_ raw: Tensor, rows: Range<Int>, into out: Tensor, threads: Int) throws {
        let ctx = Context(training: false, threads: threads)
        var i = rows.lowerBound
        while i < rows.upperBound {
            let j = min(rows.upperBound, i + batch)
            let y = try net.forward(try net.prepare(raw.rows(i..<j), input: cut.input, threads: threads), to: cut, ctx)
            switch pooling {
            case .none: (out.f32 + i * width).update(from: y.f32, count: (j - i) * width)
            case .avg: Pool.globalAvgForward(planes: (j - i) * width, size: cut.shape[1] * cut.shape[2], x: y.f32, y: out.f32 + i * width)
            case .max:
                let size = cut.shape[1] * cut.shape[2]
                for p in 0..<((j - i) * width) {
                    var m = -Float.infinity
                    for q in 0..<size { let v = y.f32[p * size + q]; if v > m || v.isNaN { m = v } }
                    out.f32[i * width + p] = m
                }
            }
            i = j
        }
    }
}
