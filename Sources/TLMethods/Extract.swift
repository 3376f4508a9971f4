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
    public func features(_ raw: Tensor) throws -> Tensor {
        let n = raw.rows
        let out = try Tensor(zeros: .f32, shape: [n] + cut.shape)
        let ctx = Context(training: false, threads: threads)
        var i = 0
        while i < n {
            let j = min(n, i + batch)
            let y = try net.forward(try net.prepare(raw.rows(i..<j), threads: threads), through: cut.end, ctx)
            (out.f32 + i * width).update(from: y.f32, count: (j - i) * width)
            i = j
        }
        return out
    }
}
