import Glibc
import TLCore

/// SGD (momentum, Nesterov, weight decay), Adam and AdamW over parameter groups: each
/// parameter's rate is the scheduled rate times its `lrScale`; frozen parameters are skipped
/// and get no state. The update math is `Update.sgd` / `Update.adam` (PyTorch's).
public final class Optimizer {
    public enum Kind: String, CaseIterable, Sendable { case sgd, adam, adamw }
    public let kind: Kind
    public var momentum: Float, nesterov: Bool, weightDecay: Float
    public var beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8
    /// Steps taken (Adam's bias correction uses it).
    public private(set) var steps = 0
    /// Per-parameter state by name: SGD velocity, or Adam's first and second moments.
    public private(set) var state: [String: [Tensor]] = [:]

    public init(_ kind: Kind, momentum: Float = 0.9, nesterov: Bool = false, weightDecay: Float = 0) {
        self.kind = kind; self.momentum = momentum; self.nesterov = nesterov; self.weightDecay = weightDecay
    }

    public func step(_ params: [Parameter], lr: Float) {
        steps += 1
        for p in params where !p.frozen {
            let rate = lr * p.lrScale, wd = p.decays ? weightDecay : 0
            switch kind {
            case .sgd:
                let v = momentum == 0 ? nil : slot(p, 1)[0]
                Update.sgd(p.count, param: p.v, grad: p.g, velocity: v?.f32, lr: rate, momentum: momentum, weightDecay: wd, nesterov: nesterov)
            case .adam, .adamw:
                let s = slot(p, 2)
                Update.adam(p.count, param: p.v, grad: p.g, m: s[0].f32, v: s[1].f32, lr: rate, beta1: beta1, beta2: beta2, eps: eps,
                            weightDecay: wd, decoupled: kind == .adamw, step: steps)
            }
        }
    }

    func slot(_ p: Parameter, _ n: Int) -> [Tensor] {
        if let s = state[p.name] { return s }
        let s = (0..<n).map { _ in Tensor.f32(p.value.shape) }
        state[p.name] = s
        return s
    }

    /// State as named tensors (for checkpoints): `NAME#0`, `NAME#1`.
    public var stateTensors: [(String, Tensor)] {
        state.keys.sorted().flatMap { k in state[k]!.enumerated().map { ("\(k)#\($0.offset)", $0.element) } }
    }
    public func restore(steps: Int, tensors: [(String, Tensor)]) throws {
        self.steps = steps
        var s: [String: [Tensor]] = [:]
        for (name, t) in tensors {
            guard let hash = name.lastIndex(of: "#"), let i = Int(name[name.index(after: hash)...]) else { throw TLError.data("bad optimizer state name '\(name)'") }
            let key = String(name[..<hash])
            var list = s[key] ?? []
            while list.count <= i { list.append(Tensor.f32([0])) }
            list[i] = t.copy()
            s[key] = list
        }
        state = s
    }
}

/// Learning-rate schedules as a function of the training step. `warmup` steps ramp linearly
/// from 0 (then the schedule runs over the remaining steps).
public struct Schedule: Sendable {
    public enum Kind: Sendable, Equatable {
        case constant
        /// × γ every `every` epochs.
        case step(every: Int, gamma: Double)
        /// Cosine from the base rate to 0 over the run (Loshchilov & Hutter, without restarts).
        case cosine
        /// μ = μ₀ / (1 + α·p)^β, p the training progress in [0, 1]: Ganin & Lempitsky's DANN
        /// schedule, α = 10, β = 0.75 in the paper.
        case inverse(alpha: Double, beta: Double)
    }
    public var kind: Kind
    public var base: Double
    public var warmupSteps = 0
    public var totalSteps: Int
    public var stepsPerEpoch: Int

    public init(_ kind: Kind, base: Double, totalSteps: Int, stepsPerEpoch: Int, warmupSteps: Int = 0) {
        self.kind = kind; self.base = base; self.totalSteps = max(totalSteps, 1); self.stepsPerEpoch = max(stepsPerEpoch, 1); self.warmupSteps = warmupSteps
    }

    /// The rate for step s (0-based).
    public func rate(_ s: Int) -> Float {
        if s < warmupSteps { return Float(base * Double(s + 1) / Double(warmupSteps)) }
        let p = Double(s - warmupSteps) / Double(max(totalSteps - warmupSteps, 1))
        switch kind {
        case .constant: return Float(base)
        case .step(let every, let gamma): return Float(base * pow(gamma, Double(s / stepsPerEpoch / max(every, 1))))
        case .cosine: return Float(base * 0.5 * (1 + cos(Double.pi * min(p, 1))))
        case .inverse(let a, let b): return Float(base / pow(1 + a * p, b))
        }
    }
}
