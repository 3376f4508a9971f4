import Glibc
import TLCore

/// Losses: each returns the mean loss over the batch and its gradient with respect to the
/// logits (or predictions), already divided by the batch size (or the total weight).
public enum Loss {
    /// Softmax cross-entropy with integer labels, optional label smoothing ε (the target puts
    /// 1−ε on the label and ε/K on every class, PyTorch's definition) and per-class weights
    /// (the mean is then Σ wᵢ·ℓᵢ / Σ wᵢ, as PyTorch does). Labels must be in 0..<K.
    /// `normalizer` replaces Σ wᵢ as the divisor: a shard of a batch divides by the whole
    /// batch's weight, so the shards' losses and gradients add up to the batch's.
    public static func crossEntropy(logits: Tensor, labels: [Int], smoothing: Float = 0, classWeights: [Float]? = nil,
                                    normalizer: Double? = nil) -> (Double, Tensor) {
        let n = logits.shape[0], k = logits.shape[1]
        precondition(labels.count == n)
        let grad = Tensor.f32([n, k], zero: false)
        let wsum = normalizer ?? weightSum(labels, classWeights)
        let total = labels.withUnsafeBufferPointer {
            crossEntropySum(rows: n, classes: k, logits: logits.f32, labels: $0.baseAddress!, smoothing: smoothing,
                            classWeights: classWeights, gradScale: Float(1 / max(wsum, 1e-30)), grad: grad.f32)
        }
        return (total / max(wsum, 1e-30), grad)
    }

    /// Σᵢ wᵢ (1, or the label's class weight).
    public static func weightSum(_ labels: [Int], _ classWeights: [Float]?) -> Double {
        guard let cw = classWeights else { return Double(labels.count) }
        return labels.reduce(0.0) { $0 + Double(cw[$1]) }
    }

    /// The core of `crossEntropy` on raw rows: returns Σᵢ wᵢℓᵢ and writes
    /// grad[i, j] = gradScale · wᵢ · ∂ℓᵢ/∂sᵢⱼ = gradScale · wᵢ · (pᵢⱼ − targetᵢⱼ). One exp per
    /// score and one log per row (log pᵢⱼ = sᵢⱼ − m − log Σ e^(s−m), m the row maximum).
    public static func crossEntropySum(rows n: Int, classes k: Int, logits: UnsafePointer<Float>, labels: UnsafePointer<Int>, smoothing: Float,
                                       classWeights: [Float]?, gradScale: Float, grad: UnsafeMutablePointer<Float>) -> Double {
        var total = 0.0
        let off = smoothing / Float(k)
        for i in 0..<n {
            let s = logits + i * k, g = grad + i * k, y = labels[i], w = classWeights?[y] ?? 1
            var m = s[0]
            for j in 1..<k { m = max(m, s[j]) }
            var sum: Float = 0
            for j in 0..<k { let e = expf(s[j] - m); g[j] = e; sum += e }
            let logSum = logf(sum), inv = 1 / sum, gw = w * gradScale
            var l = -(1 - Double(smoothing)) * Double(s[y] - m - logSum)
            if smoothing > 0 {
                var t = 0.0
                for j in 0..<k { t += Double(s[j] - m - logSum) }
                l -= Double(off) * t
            }
            for j in 0..<k { g[j] = gw * (g[j] * inv - ((j == y ? 1 - smoothing : 0) + off)) }
            total += Double(w) * l
        }
        return total
    }

    /// Binary cross-entropy on logits z with targets t ∈ [0, 1], elementwise, mean over all
    /// elements: max(z, 0) − z·t + log(1 + e^−|z|) (stable for any z).
    public static func binaryCrossEntropy(logits: Tensor, targets: Tensor) -> (Double, Tensor) {
        precondition(logits.shape == targets.shape)
        let n = logits.count, grad = Tensor.f32(logits.shape)
        var total = 0.0
        for i in 0..<n {
            let z = logits.f32[i], t = targets.f32[i]
            total += Double(max(z, 0) - z * t + log1pf(expf(-abs(z))))
            grad.f32[i] = (Elementwise.sigmoid(z) - t) / Float(n)
        }
        return (total / Double(n), grad)
    }

    /// Mean squared error, mean over all elements.
    public static func mse(_ pred: Tensor, _ target: Tensor) -> (Double, Tensor) {
        precondition(pred.shape == target.shape)
        let n = pred.count, grad = Tensor.f32(pred.shape)
        var total = 0.0
        for i in 0..<n { let d = pred.f32[i] - target.f32[i]; total += Double(d * d); grad.f32[i] = 2 * d / Float(n) }
        return (total / Double(n), grad)
    }

    /// Distillation (Hinton et al.; Learning without Forgetting): T² · KL(softmax(t/T) ‖ softmax(s/T)),
    /// batch mean, gradient with respect to the student logits s. The T² keeps gradient sizes
    /// comparable across temperatures. `rows` replaces the batch size as the divisor of the
    /// mean (a shard of a batch divides by the whole batch's size).
    public static func distillation(student: Tensor, teacher: Tensor, temperature T: Float, rows: Int? = nil) -> (Double, Tensor) {
        precondition(student.shape == teacher.shape)
        let k = student.shape[1], m = student.shape[0], n = rows ?? m
        let ps = Tensor.f32([m, k]), pt = Tensor.f32([m, k]), ls = Tensor.f32([m, k]), lt = Tensor.f32([m, k])
        let ss = Tensor.f32([m, k]), st = Tensor.f32([m, k])
        for i in 0..<m * k { ss.f32[i] = student.f32[i] / T; st.f32[i] = teacher.f32[i] / T }
        Elementwise.softmaxRows(rows: m, cols: k, x: ss.f32, y: ps.f32)
        Elementwise.softmaxRows(rows: m, cols: k, x: st.f32, y: pt.f32)
        Elementwise.logSoftmaxRows(rows: m, cols: k, x: ss.f32, y: ls.f32)
        Elementwise.logSoftmaxRows(rows: m, cols: k, x: st.f32, y: lt.f32)
        var total = 0.0
        let grad = Tensor.f32([m, k])
        for i in 0..<m * k {
            if pt.f32[i] > 0 { total += Double(pt.f32[i]) * Double(lt.f32[i] - ls.f32[i]) }
            grad.f32[i] = T * (ps.f32[i] - pt.f32[i]) / Float(n)   // T² · (1/T) · (p_s − p_t) / n
        }
        return (Double(T * T) * total / Double(n), grad)
    }

    /// One-vs-rest squared hinge, the L2-loss linear SVM (liblinear's default, scikit-learn's
    /// LinearSVC): for each class j, target t = +1 if j is the label else −1, loss
    /// Σⱼ max(0, 1 − t·sⱼ)². Class weights scale each sample's loss; the mean is Σ wᵢℓᵢ / Σ wᵢ.
    public static func squaredHinge(logits: Tensor, labels: [Int], classWeights: [Float]? = nil) -> (Double, Tensor) {
        let n = logits.shape[0], k = logits.shape[1]
        precondition(labels.count == n)
        let grad = Tensor.f32([n, k], zero: false)
        let wsum = weightSum(labels, classWeights)
        let total = labels.withUnsafeBufferPointer {
            squaredHingeSum(rows: n, classes: k, logits: logits.f32, labels: $0.baseAddress!, classWeights: classWeights,
                            gradScale: Float(1 / max(wsum, 1e-30)), grad: grad.f32)
        }
        return (total / max(wsum, 1e-30), grad)
    }

    /// The core of `squaredHinge` on raw rows: Σᵢ wᵢℓᵢ, and grad = gradScale · wᵢ · ∂ℓᵢ/∂s.
    public static func squaredHingeSum(rows n: Int, classes k: Int, logits: UnsafePointer<Float>, labels: UnsafePointer<Int>,
                                       classWeights: [Float]?, gradScale: Float, grad: UnsafeMutablePointer<Float>) -> Double {
        var total = 0.0
        for i in 0..<n {
            let s = logits + i * k, g = grad + i * k, y = labels[i], w = classWeights?[y] ?? 1, gw = w * gradScale
            var l = 0.0
            for j in 0..<k {
                let t: Float = j == y ? 1 : -1, m = 1 - t * s[j]
                if m > 0 { l += Double(m * m); g[j] = -2 * t * m * gw } else { g[j] = 0 }
            }
            total += Double(w) * l
        }
        return total
    }

    /// Multiclass hinge (Weston–Watkins, the cs231n SVM): Σ_{j≠y} max(0, Δ + s_j − s_y), batch mean.
    public static func multiclassHinge(logits: Tensor, labels: [Int], margin: Float = 1) -> (Double, Tensor) {
        let n = logits.shape[0], k = logits.shape[1]
        let grad = Tensor.f32([n, k])
        var total = 0.0
        for i in 0..<n {
            let s = logits.f32 + i * k, g = grad.f32 + i * k, y = labels[i]
            for j in 0..<k where j != y {
                let m = margin + s[j] - s[y]
                if m > 0 { total += Double(m); g[j] += 1 / Float(n); g[y] -= 1 / Float(n) }
            }
        }
        return (total / Double(n), grad)
    }
}
