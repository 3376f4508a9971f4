import Glibc

/// Elementwise, row-wise and optimizer kernels the layers need, on contiguous f32 buffers.
/// Simple loops on pointers: LLVM vectorizes them (AVX2 in the default build). Backward
/// functions accumulate (`dx += ...`). Each output element is computed by one loop in a fixed
/// order, so no result depends on the thread count.
public enum Elementwise {
    // MARK: bias

    /// y[r, j] += bias[j] for a [rows, cols] matrix.
    public static func addBias(rows: Int, cols: Int, bias: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        for r in 0..<rows { let row = y + r * cols; for j in 0..<cols { row[j] += bias[j] } }
    }
    /// y[n, c, :] += bias[c] for NCHW with `size` = H·W.
    public static func addBiasChannels(n: Int, c: Int, size: Int, bias: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        for i in 0..<n * c { let b = bias[i % c], row = y + i * size; for j in 0..<size { row[j] += b } }
    }
    /// out[j] += Σ_r x[r, j] (the bias gradient of a linear layer).
    public static func columnSums(rows: Int, cols: Int, x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>) {
        for r in 0..<rows { let row = x + r * cols; for j in 0..<cols { out[j] += row[j] } }
    }
    /// out[r] = Σ_j x[r, j].
    public static func rowSums(rows: Int, cols: Int, x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>) {
        for r in 0..<rows { let row = x + r * cols; var s: Float = 0; for j in 0..<cols { s += row[j] }; out[r] = s }
    }

    // MARK: activations (y may alias x in forward)

    public static func relu(_ n: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        for i in 0..<n { y[i] = max(x[i], 0) }
    }
    /// dx += dy where y > 0 (uses the output, so the input need not be kept).
    public static func reluBackward(_ n: Int, y: UnsafePointer<Float>, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        for i in 0..<n { dx[i] += y[i] > 0 ? dy[i] : 0 }
    }
    public static func leakyRelu(_ n: Int, slope: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        for i in 0..<n { let v = x[i]; y[i] = v > 0 ? v : v * slope }
    }
    public static func leakyReluBackward(_ n: Int, slope: Float, x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        for i in 0..<n { dx[i] += x[i] > 0 ? dy[i] : dy[i] * slope }
    }
    /// y = min(max(x, lo), hi) (ReLU6 is lo 0, hi 6).
    public static func clip(_ n: Int, lo: Float, hi: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        for i in 0..<n { y[i] = min(max(x[i], lo), hi) }
    }
    public static func clipBackward(_ n: Int, lo: Float, hi: Float, x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        for i in 0..<n { let v = x[i]; dx[i] += v > lo && v < hi ? dy[i] : 0 }
    }
    public static func sigmoid(_ n: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        for i in 0..<n { y[i] = sigmoid(x[i]) }
    }
    /// Stable for large |x|: never exponentiates a positive number.
    @inline(__always) public static func sigmoid(_ v: Float) -> Float {
        if v >= 0 { return 1 / (1 + expf(-v)) }
        let e = expf(v); return e / (1 + e)
    }
    /// dx += dy · y · (1 − y).
    public static func sigmoidBackward(_ n: Int, y: UnsafePointer<Float>, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        for i in 0..<n { dx[i] += dy[i] * y[i] * (1 - y[i]) }
    }
    public static func tanh(_ n: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        for i in 0..<n { y[i] = tanhf(x[i]) }
    }
    /// dx += dy · (1 − y²).
    public static func tanhBackward(_ n: Int, y: UnsafePointer<Float>, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        for i in 0..<n { dx[i] += dy[i] * (1 - y[i] * y[i]) }
    }
    /// GELU with the exact erf form, x·Φ(x) (PyTorch's default).
    public static func gelu(_ n: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        for i in 0..<n { let v = x[i]; y[i] = 0.5 * v * (1 + erff(v * 0.70710678)) }
    }
    /// dx += dy · (Φ(x) + x·φ(x)).
    public static func geluBackward(_ n: Int, x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        for i in 0..<n {
            let v = x[i]
            let cdf = 0.5 * (1 + erff(v * 0.70710678)), pdf = expf(-0.5 * v * v) * 0.39894228
            dx[i] += dy[i] * (cdf + v * pdf)
        }
    }
    /// hard-sigmoid max(0, min(1, αx + β)) (ONNX HardSigmoid; α = 1/6, β = 0.5 for HardSwish).
    public static func hardSigmoid(_ n: Int, alpha: Float, beta: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        for i in 0..<n { y[i] = min(max(alpha * x[i] + beta, 0), 1) }
    }
    /// dx += dy · α where 0 < αx + β < 1.
    public static func hardSigmoidBackward(_ n: Int, alpha: Float, beta: Float, x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        for i in 0..<n { let v = alpha * x[i] + beta; if v > 0 && v < 1 { dx[i] += dy[i] * alpha } }
    }
    /// x · max(0, min(1, x/6 + ½)) (ONNX HardSwish, MobileNetV3).
    public static func hardSwish(_ n: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        for i in 0..<n { y[i] = x[i] * min(max(x[i] / 6 + 0.5, 0), 1) }
    }
    /// dx += dy · (0 below −3, 1 above 3, x/3 + ½ between).
    public static func hardSwishBackward(_ n: Int, x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        for i in 0..<n { let v = x[i]; dx[i] += dy[i] * (v <= -3 ? 0 : (v >= 3 ? 1 : v / 3 + 0.5)) }
    }
    /// γ·x for x > 0, γ·α(eˣ − 1) otherwise (ELU with γ = 1; SELU's constants otherwise).
    public static func elu(_ n: Int, alpha: Float, scale: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        for i in 0..<n { let v = x[i]; y[i] = scale * (v > 0 ? v : alpha * (expf(v) - 1)) }
    }
    public static func eluBackward(_ n: Int, alpha: Float, scale: Float, x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        for i in 0..<n { let v = x[i]; dx[i] += dy[i] * scale * (v > 0 ? 1 : alpha * expf(v)) }
    }

    // MARK: softmax

    /// Row-wise softmax, max-subtracted (stable for any finite input). y may alias x.
    public static func softmaxRows(rows: Int, cols: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        for r in 0..<rows {
            let xi = x + r * cols, yi = y + r * cols
            var m = -Float.infinity
            for j in 0..<cols { m = max(m, xi[j]) }
            var s: Float = 0
            for j in 0..<cols { let e = expf(xi[j] - m); yi[j] = e; s += e }
            let inv = 1 / s
            for j in 0..<cols { yi[j] *= inv }
        }
    }
    /// Row-wise log-softmax: x − max − log Σ exp(x − max). y may alias x.
    public static func logSoftmaxRows(rows: Int, cols: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        for r in 0..<rows {
            let xi = x + r * cols, yi = y + r * cols
            var m = -Float.infinity
            for j in 0..<cols { m = max(m, xi[j]) }
            var s: Float = 0
            for j in 0..<cols { s += expf(xi[j] - m) }
            let lse = m + logf(s)
            for j in 0..<cols { yi[j] = xi[j] - lse }
        }
    }
    /// out[r] = index of the largest x[r, :] (the first on ties; NaN counts as largest).
    public static func argmaxRows(rows: Int, cols: Int, x: UnsafePointer<Float>, out: UnsafeMutablePointer<Int>) {
        for r in 0..<rows {
            let xi = x + r * cols
            var b = 0
            for j in 1..<max(cols, 1) where xi[j] > xi[b] || (xi[j].isNaN && !xi[b].isNaN) { b = j }
            out[r] = b
        }
    }

    // MARK: BLAS-1

    /// y += a·x.
    public static func axpy(_ n: Int, _ a: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        for i in 0..<n { y[i] = y[i].addingProduct(a, x[i]) }
    }
    /// x *= a.
    public static func scale(_ n: Int, _ a: Float, x: UnsafeMutablePointer<Float>) {
        for i in 0..<n { x[i] *= a }
    }
    /// Σ x² (double accumulation).
    public static func sumOfSquares(_ n: Int, x: UnsafePointer<Float>) -> Double {
        var s = 0.0
        for i in 0..<n { s += Double(x[i]) * Double(x[i]) }
        return s
    }

    // MARK: batch normalization

    /// Per-channel mean and population variance of NCHW data (`size` = H·W; [N, C] features
    /// are size 1), two passes with double accumulation (no catastrophic cancellation).
    public static func channelStatistics(n: Int, c: Int, size: Int, x: UnsafePointer<Float>,
                                         mean: UnsafeMutablePointer<Float>, variance: UnsafeMutablePointer<Float>) {
        let count = Double(n * size)
        for ch in 0..<c {
            var s = 0.0
            for i in 0..<n { let p = x + (i * c + ch) * size; for j in 0..<size { s += Double(p[j]) } }
            let mu = s / count
            var v = 0.0
            for i in 0..<n { let p = x + (i * c + ch) * size; for j in 0..<size { let d = Double(p[j]) - mu; v += d * d } }
            mean[ch] = Float(mu); variance[ch] = Float(v / count)
        }
    }
}

/// One-pass parameter updates: read parameter, gradient and state once, write them once.
/// The exact math is stated per function (it is PyTorch's, so recipes carry over).
public enum Update {
    /// SGD (PyTorch `torch.optim.SGD`, dampening 0):
    /// g = grad + wd·p;  v = μ·v + g;  p −= lr·(nesterov ? g + μ·v : v).
    /// With μ = 0, `velocity` may be nil.
    public static func sgd(_ n: Int, param: UnsafeMutablePointer<Float>, grad: UnsafePointer<Float>, velocity: UnsafeMutablePointer<Float>?,
                           lr: Float, momentum: Float, weightDecay: Float, nesterov: Bool) {
        guard let v = velocity, momentum != 0 else {
            for i in 0..<n { param[i] -= lr * (grad[i] + weightDecay * param[i]) }
            return
        }
        for i in 0..<n {
            let g = grad[i] + weightDecay * param[i]
            let vi = momentum * v[i] + g
            v[i] = vi
            param[i] -= lr * (nesterov ? g + momentum * vi : vi)
        }
    }

    /// Adam (Kingma & Ba) and AdamW (Loshchilov & Hutter), PyTorch's formulation, step t ≥ 1:
    /// Adam:  g = grad + wd·p.   AdamW: p ← p·(1 − lr·wd), g = grad.
    /// m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²;
    /// p −= lr · (m / (1−β1ᵗ)) / (√(v / (1−β2ᵗ)) + ε).
    public static func adam(_ n: Int, param: UnsafeMutablePointer<Float>, grad: UnsafePointer<Float>,
                            m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>,
                            lr: Float, beta1: Float, beta2: Float, eps: Float, weightDecay: Float, decoupled: Bool, step t: Int) {
        precondition(t >= 1)
        let bc1 = 1 - Float(pow(Double(beta1), Double(t))), bc2 = 1 - Float(pow(Double(beta2), Double(t)))
        let decay: Float = decoupled ? 1 - lr * weightDecay : 1
        let l2: Float = decoupled ? 0 : weightDecay
        let invBc2 = 1 / bc2, step = lr / bc1
        for i in 0..<n {
            let p = param[i] * decay
            let g = grad[i] + l2 * param[i]
            let mi = beta1 * m[i] + (1 - beta1) * g
            let vi = beta2 * v[i] + (1 - beta2) * g * g
            m[i] = mi; v[i] = vi
            param[i] = p - step * mi / ((vi * invBc2).squareRoot() + eps)
        }
    }
}
