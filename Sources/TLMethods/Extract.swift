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

    public init(net: Network, layer: String?, activation: Bool = true, batch: Int = 256, threads: Int = Threads.count) throws {
        self.net = net; self.batch = max(batch, 1); self.threads = threads
        cut = try net.cut(layer: layer, activation: activation)
    }

    /// Floats per output row.
    public var width: Int { cut.shape.reduce(1, *) }

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
        let out = try Tensor(zeros: .f32, shape: [n] + cut.shape)
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
            let y = try net.forward(try net.prepare(raw.rows(i..<j), threads: threads), to: cut, ctx)
            (out.f32 + i * width).update(from: y.f32, count: (j - i) * width)
            i = j
        }
    }
}
