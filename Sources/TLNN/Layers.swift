import Glibc
import TLCore

/// PyTorch's default initialization for Linear and Conv2d (kaiming_uniform with a = √5):
/// weights and biases uniform in ±1/√fan_in.
func uniformInit(_ p: Parameter, fanIn: Int, _ rng: inout RNG) {
    let bound = 1 / Float(max(fanIn, 1)).squareRoot()
    for i in 0..<p.count { p.v[i] = (rng.uniform() * 2 - 1) * bound }
}

/// Layers that start from random weights.
public protocol Initializable { func initialize(_ rng: inout RNG) }

// MARK: Linear

/// y = x·Wᵀ + b, W [out, in] (PyTorch's layout), b optional. Input [N, in] or [N, ...] flattened.
public final class Linear: Layer, Initializable {
    public let name: String
    public let inFeatures: Int, outFeatures: Int
    public internal(set) var weight: Parameter, bias: Parameter?
    var x: Tensor?
    /// Wᵀ packed once for inference by `prepareForInference` (as `Conv2d.packed`): the weight
    /// storage it was made from and the panels.
    var packed: (weights: UnsafeMutableRawPointer, data: Tensor)?
    /// Packs Wᵀ once for a network that only runs forward (cnn-small's fc128 repacked 6 MB per
    /// batch); the weights must not change until the next training forward, which drops it.
    public func prepareForInference() {
        let count = GEMM.packedBCount(n: outFeatures, k: inFeatures)
        if count == 0 { packed = nil; return }
        let t = Tensor.f32([count], zero: false)
        GEMM.packB(transB: true, n: outFeatures, k: inFeatures, b: weight.v, ldb: inFeatures, into: t.f32)
        packed = (weight.value.rawPointer, t)
    }
    public init(_ name: String, _ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) {
        self.name = name; self.inFeatures = inFeatures; self.outFeatures = outFeatures
        weight = Parameter("\(name).weight", shape: [outFeatures, inFeatures])
        self.bias = bias ? Parameter("\(name).bias", shape: [outFeatures], decays: false) : nil
    }
    public var spec: String { "fc\(outFeatures)" + (bias == nil ? "-nobias" : "") }
    public var parameters: [Parameter] { bias.map { [weight, $0] } ?? [weight] }
    public func initialize(_ rng: inout RNG) { uniformInit(weight, fanIn: inFeatures, &rng); if let b = bias { uniformInit(b, fanIn: inFeatures, &rng) } }
    public func outputShape(_ s: [Int]) throws -> [Int] {
        guard s.count >= 2, perSample(s) == inFeatures else { throw shapeError(self, "expects \(inFeatures) input features, got \(shapeString(Array(s.dropFirst())))") }
        return [s[0], outFeatures]
    }
    public func forward(_ x: Tensor, _ ctx: Context) throws -> Tensor {
        let n = try outputShape(x.shape)[0]
        let y = Tensor.f32([n, outFeatures], zero: false)
        if ctx.training { packed = nil }
        if let p = packed, p.weights == weight.value.rawPointer {
            GEMM.sgemmPackedB(m: n, n: outFeatures, k: inFeatures, a: x.f32, lda: inFeatures, packedB: p.data.f32, c: y.f32, ldc: outFeatures,
                              threads: ctx.threads)
        } else {
            GEMM.sgemm(transA: false, transB: true, m: n, n: outFeatures, k: inFeatures, alpha: 1, a: x.f32, lda: inFeatures,
                       b: weight.v, ldb: inFeatures, beta: 0, c: y.f32, ldc: outFeatures, threads: ctx.threads)
        }
        if let b = bias { Elementwise.addBias(rows: n, cols: outFeatures, bias: b.v, y: y.f32) }
        if ctx.training { self.x = x }
        return y
    }
    public func backward(_ dy: Tensor, needInputGrad: Bool, _ ctx: Context) -> Tensor? {
        guard let x = x else { preconditionFailure("\(name): backward without a training forward") }
        let n = dy.rows
        if !weight.frozen {
            // dW [out, in] += dyᵀ [out, N] · x [N, in]
            GEMM.sgemm(transA: true, transB: false, m: outFeatures, n: inFeatures, k: n, alpha: 1, a: dy.f32, lda: outFeatures,
                       b: x.f32, ldb: inFeatures, beta: 1, c: weight.g, ldc: inFeatures, threads: ctx.threads)
        }
        if let b = bias, !b.frozen { Elementwise.columnSums(rows: n, cols: outFeatures, x: dy.f32, out: b.g) }
        guard needInputGrad else { return nil }
        let dx = Tensor.f32(x.shape, zero: false)
        GEMM.sgemm(transA: false, transB: false, m: n, n: inFeatures, k: outFeatures, alpha: 1, a: dy.f32, lda: outFeatures,
                   b: weight.v, ldb: inFeatures, beta: 0, c: dx.f32, ldc: inFeatures, threads: ctx.threads)
        return dx
    }
}

// MARK: Conv2d

/// A mutex for state that threads running the same layer share.
final class PackLock: @unchecked Sendable {
    let m: UnsafeMutablePointer<pthread_mutex_t>
    init() { m = .allocate(capacity: 1); pthread_mutex_init(m, nil) }
    deinit { pthread_mutex_destroy(m); m.deallocate() }
    func locked<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(m); defer { pthread_mutex_unlock(m) }
        return try body()
    }
}

public final class Conv2d: Layer, Initializable {
    public let name: String
    public let inChannels: Int, outChannels: Int, groups: Int
    /// Kernel, strides, per-side padding and dilation (a template: n, h and w come from the input).
    public let shape: ConvGeometry
    public var kernel: Int { shape.kh }
    public var stride: Int { shape.strideH }
    public var pad: Int { shape.padTop }
    public internal(set) var weight: Parameter, bias: Parameter?
    var x: Tensor?, columns: Tensor?
    /// The weights packed for the inference kernel, for a network that only runs forward (every
    /// call would otherwise pack them again, on every thread): the `GEMM.mr`, weight storage and
    /// layout (Winograd or direct, which depends on the input's size) they were made for, and
    /// the panels. `prepareForInference` packs for the template geometry and lets the first
    /// forward on another layout pack again (under `packLock`: threads share the layer).
    var packed: (mr: Int, weights: UnsafeMutableRawPointer, winograd: Bool, data: Tensor)?
    var packOnUse = false
    let packLock = PackLock()
    public convenience init(_ name: String, _ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, pad: Int = 0, groups: Int = 1, bias: Bool = true) {
        self.init(name, inChannels, outChannels, geometry: ConvGeometry(n: 1, c: inChannels, h: 1, w: 1, oc: outChannels, kh: kernel, kw: kernel,
                                                                         stride: stride, pad: pad, groups: groups), bias: bias)
    }
    /// Any geometry: rectangular kernels, a stride and a dilation per axis, four pads (ONNX's).
    public init(_ name: String, _ inChannels: Int, _ outChannels: Int, geometry g: ConvGeometry, bias: Bool = true) {
        self.name = name; self.inChannels = inChannels; self.outChannels = outChannels; groups = g.groups
        shape = g
        weight = Parameter("\(name).weight", shape: [outChannels, inChannels / g.groups, g.kh, g.kw])
        self.bias = bias ? Parameter("\(name).bias", shape: [outChannels], decays: false) : nil
    }
    /// Square kernel, equal strides and pads, no dilation: what the spec language writes.
    var isSimple: Bool {
        shape.kh == shape.kw && shape.strideH == shape.strideW && shape.dilationH == 1 && shape.dilationW == 1 &&
            Set([shape.padTop, shape.padLeft, shape.padBottom, shape.padRight]).count == 1
    }
    public var spec: String {
        var s = "conv\(shape.kh)x\(shape.kw)-\(outChannels)"
        if pad != kernel / 2 { s += "-p\(pad)" }
        if stride != 1 { s += "-s\(stride)" }
        if groups != 1 { s += "-g\(groups)" }
        if bias == nil { s += "-nobias" }
        return s
    }
    public var parameters: [Parameter] { bias.map { [weight, $0] } ?? [weight] }
    public func initialize(_ rng: inout RNG) {
        let fan = inChannels / groups * shape.kh * shape.kw
        uniformInit(weight, fanIn: fan, &rng); if let b = bias { uniformInit(b, fanIn: fan, &rng) }
    }
    func geometry(_ s: [Int]) throws -> ConvGeometry {
        guard s.count == 4, s[1] == inChannels else {
            throw shapeError(self, "expects [N, \(inChannels), H, W] images, got \(shapeString(Array(s.dropFirst())))")
        }
        var g = shape
        g.n = s[0]; g.h = s[2]; g.w = s[3]
        if let p = g.problem { throw shapeError(self, p) }
        return g
    }
    public func outputShape(_ s: [Int]) throws -> [Int] { let g = try geometry(s); return [g.n, g.oc, g.oh, g.ow] }
    public func forward(_ x: Tensor, _ ctx: Context) throws -> Tensor { try forward(x, ctx, activation: nil) }
    /// Forward with the activation that follows applied as the outputs are stored (inference
    /// only: training keeps the pre-activation values for that layer's backward).
    public func forward(_ x: Tensor, _ ctx: Context, activation: FusedActivation?) throws -> Tensor {
        precondition(activation == nil || !ctx.training, "\(name): fused activation in training")
        let g = try geometry(x.shape)
        let y = Tensor.f32([g.n, g.oc, g.oh, g.ow], zero: false)
        // Training keeps the im2col matrices for backward (when the weights will need them),
        // unless they are large: at 64 MiB and up, recomputing them in backward (a few percent
        // of the time) beats holding and faulting in that memory (cnn-small, batch 256: 231 MB).
        let keep = ctx.training && !weight.frozen && Conv.columnCount(g) > 0 && Conv.columnCount(g) * 4 < 64 << 20
        let cols = keep ? Tensor(dtype: .f32, shape: [Conv.columnCount(g)], storage: Storage(pooledZeroedBytes: Conv.columnCount(g) * 4, zero: false)) : nil
        // A training forward comes before any change to the weights: drop the packed copy.
        if ctx.training { packed = nil; packOnUse = false }
        let panels = ctx.training ? nil : packLock.locked { () -> Tensor? in
            func fits() -> Bool {
                guard let p = packed else { return false }
                return p.mr == GEMM.mr && p.weights == weight.value.rawPointer && p.winograd == Conv.winogradApplies(g)
            }
            if !fits() && packOnUse { pack(for: g) }
            return fits() ? packed?.data : nil
        }
        Conv.forward(g, x: x.f32, weight: weight.v, bias: bias?.v, y: y.f32, columns: cols?.f32, activation: activation,
                     packedWeights: panels.map { UnsafePointer($0.f32) }, threads: ctx.threads)
        if ctx.training { self.x = x; columns = cols }
        return y
    }
    /// Packs the weights once for the inference kernel (see `packed`); the weights must not
    /// change until the next training forward.
    public func prepareForInference() {
        packLock.locked { packOnUse = true; pack(for: shape) }
    }
    /// Packs for geometry g (nothing where no pack applies). Under `packLock`.
    func pack(for g: ConvGeometry) {
        let n = Conv.packedWeightCount(g)
        if n == 0 { packed = nil; return }
        let t = Tensor.f32([n], zero: false)
        Conv.packWeights(g, weight: weight.v, into: t.f32)
        packed = (GEMM.mr, weight.value.rawPointer, Conv.winogradApplies(g), t)
    }
    public func backward(_ dy: Tensor, needInputGrad: Bool, _ ctx: Context) -> Tensor? {
        guard let x = x else { preconditionFailure("\(name): backward without a training forward") }
        let g = try! geometry(x.shape)
        let dx = needInputGrad ? Tensor.f32(x.shape) : nil
        Conv.backward(g, x: x.f32, weight: weight.v, dy: dy.f32, dx: dx?.f32, dweight: weight.frozen ? nil : weight.g,
                      dbias: (bias?.frozen ?? true) ? nil : bias!.g, columns: columns.map { UnsafePointer($0.f32) }, threads: ctx.threads)
        columns = nil
        return dx
    }
}

// MARK: pooling and reshaping

/// Max or average pooling over [N, C, H, W]: window, stride, per-side padding, ceil mode and
/// (average) whether padding counts, as `PoolGeometry` describes them.
public final class Pool2d: Layer {
    public enum Kind: String { case max, avg }
    public let name: String
    public let kind: Kind
    public let shape: PoolGeometry
    public var kernel: Int { shape.kh }
    public var stride: Int { shape.strideH }
    var argmax: [Int32] = []
    var inShape: [Int] = []
    public convenience init(_ name: String, _ kind: Kind, kernel: Int, stride: Int? = nil) {
        self.init(name, kind, geometry: PoolGeometry(n: 1, c: 1, h: 1, w: 1, kernel: kernel, stride: stride))
    }
    public init(_ name: String, _ kind: Kind, geometry: PoolGeometry) {
        self.name = name; self.kind = kind; shape = geometry
    }
    public var spec: String { "\(kind.rawValue)pool\(kernel)" + (stride == kernel ? "" : "-s\(stride)") }
    func geometry(_ s: [Int]) throws -> PoolGeometry {
        guard s.count == 4 else { throw shapeError(self, "expects [N, C, H, W], got \(shapeString(Array(s.dropFirst())))") }
        var g = shape
        g.n = s[0]; g.c = s[1]; g.h = s[2]; g.w = s[3]
        if let p = g.problem { throw shapeError(self, p) }
        return g
    }
    public func outputShape(_ s: [Int]) throws -> [Int] { let g = try geometry(s); return [g.n, g.c, g.oh, g.ow] }
    public func forward(_ x: Tensor, _ ctx: Context) throws -> Tensor {
        let g = try geometry(x.shape)
        let y = Tensor.f32([g.n, g.c, g.oh, g.ow], zero: false)
        if ctx.training { inShape = x.shape }
        switch kind {
        case .avg: Pool.avgForward(g, x: x.f32, y: y.f32, threads: ctx.threads)
        case .max where ctx.training:
            if argmax.count != y.count { argmax = [Int32](repeating: 0, count: y.count) }
            argmax.withUnsafeMutableBufferPointer { Pool.maxForward(g, x: x.f32, y: y.f32, argmax: $0.baseAddress, threads: ctx.threads) }
        case .max: Pool.maxForward(g, x: x.f32, y: y.f32, argmax: nil, threads: ctx.threads)
        }
        return y
    }
    public func backward(_ dy: Tensor, needInputGrad: Bool, _ ctx: Context) -> Tensor? {
        guard needInputGrad else { return nil }
        let g = try! geometry(inShape)
        let dx = Tensor.f32(inShape)
        switch kind {
        case .avg: Pool.avgBackward(g, dy: dy.f32, dx: dx.f32, threads: ctx.threads)
        case .max: argmax.withUnsafeBufferPointer { Pool.maxBackward(g, argmax: $0.baseAddress!, dy: dy.f32, dx: dx.f32, threads: ctx.threads) }
        }
        return dx
    }
}

/// [N, C, H, W] → [N, C]: the mean of each plane.
public final class GlobalAvgPool: Layer {
    public let name: String
    var inShape: [Int] = []
    public init(_ name: String) { self.name = name }
    public var spec: String { "gap" }
    public func outputShape(_ s: [Int]) throws -> [Int] {
        guard s.count == 4 else { throw shapeError(self, "expects [N, C, H, W], got \(shapeString(Array(s.dropFirst())))") }
        return [s[0], s[1]]
    }
    public func forward(_ x: Tensor, _ ctx: Context) throws -> Tensor {
        let o = try outputShape(x.shape)
        let y = Tensor.f32(o, zero: false)
        Pool.globalAvgForward(planes: o[0] * o[1], size: x.shape[2] * x.shape[3], x: x.f32, y: y.f32)
        if ctx.training { inShape = x.shape }
        return y
    }
    public func backward(_ dy: Tensor, needInputGrad: Bool, _ ctx: Context) -> Tensor? {
        guard needInputGrad else { return nil }
        let dx = Tensor.f32(inShape)
        Pool.globalAvgBackward(planes: inShape[0] * inShape[1], size: inShape[2] * inShape[3], dy: dy.f32, dx: dx.f32)
        return dx
    }
}

/// [d0, ..., d(a−1), da, ...] → [d0·…·d(a−1), da·…]: a view, no copy (axis 1 by default:
/// [N, ...] → [N, product]).
public final class Flatten: Layer {
    public let name: String
    public let axis: Int
    var inShape: [Int] = []
    public init(_ name: String, axis: Int = 1) { self.name = name; self.axis = axis }
    public var spec: String { "flatten" }
    public func outputShape(_ s: [Int]) throws -> [Int] {
        let a = axis < 0 ? axis + s.count : axis
        guard a >= 0 && a <= s.count else { throw shapeError(self, "axis \(axis) is outside \(s.count) dimensions") }
        return [s[..<a].reduce(1, *), s[a...].reduce(1, *)]
    }
    public func forward(_ x: Tensor, _ ctx: Context) throws -> Tensor {
        if ctx.training { inShape = x.shape }
        return x.reshaped(try outputShape(x.shape))
    }
    public func backward(_ dy: Tensor, needInputGrad: Bool, _ ctx: Context) -> Tensor? { needInputGrad ? dy.reshaped(inShape) : nil }
}

// MARK: activations

public final class Activation: Layer {
    public enum Kind: Equatable {
        case relu, leakyRelu(Float), sigmoid, tanh, gelu, relu6
        /// min(max(x, lo), hi) (ONNX Clip; relu6 is clip(0, 6)).
        case clip(Float, Float)
        /// max(0, min(1, αx + β)) (ONNX HardSigmoid) and x·hardSigmoid(x; 1/6, ½) (HardSwish).
        case hardSigmoid(Float, Float), hardSwish
        /// x for x > 0, α(eˣ − 1) otherwise; SELU is γ·elu(x; α) with the fixed constants.
        case elu(Float), selu
    }
    public let name: String
    public let kind: Kind
    var x: Tensor?, y: Tensor?
    /// SELU's constants (Klambauer et al. 2017; ONNX's defaults).
    public static let seluAlpha: Float = 1.67326319217681884765625, seluGamma: Float = 1.05070102214813232421875
    public init(_ name: String, _ kind: Kind) { self.name = name; self.kind = kind }
    /// This activation as a convolution applies it while storing its outputs, if it can.
    public var fused: FusedActivation? {
        switch kind {
        case .relu: return .relu
        case .relu6: return .clip(0, 6)
        case .clip(let lo, let hi): return .clip(lo, hi)
        default: return nil
        }
    }
    public var spec: String {
        switch kind {
        case .relu: return "relu"
        case .leakyRelu(let s): return s == 0.01 ? "lrelu" : "lrelu\(s)"
        case .sigmoid: return "sigmoid"
        case .tanh: return "tanh"
        case .gelu: return "gelu"
        case .relu6: return "relu6"
        case .clip(let a, let b): return "clip\(a):\(b)"
        case .hardSigmoid(let a, let b): return "hardsigmoid\(a):\(b)"
        case .hardSwish: return "hardswish"
        case .elu(let a): return "elu\(a)"
        case .selu: return "selu"
        }
    }
    public func outputShape(_ s: [Int]) throws -> [Int] { s }
    public func forward(_ x: Tensor, _ ctx: Context) throws -> Tensor {
        let y = Tensor.f32(x.shape, zero: false), n = x.count
        switch kind {
        case .relu: Elementwise.relu(n, x: x.f32, y: y.f32)
        case .leakyRelu(let s): Elementwise.leakyRelu(n, slope: s, x: x.f32, y: y.f32)
        case .sigmoid: Elementwise.sigmoid(n, x: x.f32, y: y.f32)
        case .tanh: Elementwise.tanh(n, x: x.f32, y: y.f32)
        case .gelu: Elementwise.gelu(n, x: x.f32, y: y.f32)
        case .relu6: Elementwise.clip(n, lo: 0, hi: 6, x: x.f32, y: y.f32)
        case .clip(let lo, let hi): Elementwise.clip(n, lo: lo, hi: hi, x: x.f32, y: y.f32)
        case .hardSigmoid(let a, let b): Elementwise.hardSigmoid(n, alpha: a, beta: b, x: x.f32, y: y.f32)
        case .hardSwish: Elementwise.hardSwish(n, x: x.f32, y: y.f32)
        case .elu(let a): Elementwise.elu(n, alpha: a, scale: 1, x: x.f32, y: y.f32)
        case .selu: Elementwise.elu(n, alpha: Activation.seluAlpha, scale: Activation.seluGamma, x: x.f32, y: y.f32)
        }
        if ctx.training { self.x = x; self.y = y }
        return y
    }
    public func backward(_ dy: Tensor, needInputGrad: Bool, _ ctx: Context) -> Tensor? {
        guard needInputGrad, let x = x, let y = y else { return nil }
        let dx = Tensor.f32(x.shape), n = x.count
        switch kind {
        case .relu: Elementwise.reluBackward(n, y: y.f32, dy: dy.f32, dx: dx.f32)
        case .leakyRelu(let s): Elementwise.leakyReluBackward(n, slope: s, x: x.f32, dy: dy.f32, dx: dx.f32)
        case .sigmoid: Elementwise.sigmoidBackward(n, y: y.f32, dy: dy.f32, dx: dx.f32)
        case .tanh: Elementwise.tanhBackward(n, y: y.f32, dy: dy.f32, dx: dx.f32)
        case .gelu: Elementwise.geluBackward(n, x: x.f32, dy: dy.f32, dx: dx.f32)
        case .relu6: Elementwise.clipBackward(n, lo: 0, hi: 6, x: x.f32, dy: dy.f32, dx: dx.f32)
        case .clip(let lo, let hi): Elementwise.clipBackward(n, lo: lo, hi: hi, x: x.f32, dy: dy.f32, dx: dx.f32)
        case .hardSigmoid(let a, let b): Elementwise.hardSigmoidBackward(n, alpha: a, beta: b, x: x.f32, dy: dy.f32, dx: dx.f32)
        case .hardSwish: Elementwise.hardSwishBackward(n, x: x.f32, dy: dy.f32, dx: dx.f32)
        case .elu(let a): Elementwise.eluBackward(n, alpha: a, scale: 1, x: x.f32, dy: dy.f32, dx: dx.f32)
        case .selu: Elementwise.eluBackward(n, alpha: Activation.seluAlpha, scale: Activation.seluGamma, x: x.f32, dy: dy.f32, dx: dx.f32)
        }
        return dx
    }
}

/// Inverted dropout: in training, zero each element with probability p and scale the rest by
/// 1/(1−p); in evaluation, the identity. Masks come from (seed, step, layer), not from threads.
public final class Dropout: Layer {
    public let name: String
    public let p: Float
    let stream: UInt64
    var mask: Tensor?
    public init(_ name: String, p: Float, stream: UInt64) { self.name = name; self.p = p; self.stream = stream }
    public var spec: String { "dropout\(p)" }
    public func outputShape(_ s: [Int]) throws -> [Int] { s }
    public func forward(_ x: Tensor, _ ctx: Context) throws -> Tensor {
        guard ctx.training else { return x }
        guard p > 0 else { mask = nil; return x }
        var rng = RNG(seed: ctx.seed &+ ctx.step &* 0x9E37_79B9, stream: stream)
        let m = Tensor.f32(x.shape, zero: false), y = Tensor.f32(x.shape, zero: false), keep = 1 / (1 - p)
        for i in 0..<x.count { m.f32[i] = rng.uniform() < p ? 0 : keep; y.f32[i] = x.f32[i] * m.f32[i] }
        mask = m
        return y
    }
    public func backward(_ dy: Tensor, needInputGrad: Bool, _ ctx: Context) -> Tensor? {
        guard needInputGrad else { return nil }
        guard let m = mask else { return dy }
        let dx = Tensor.f32(dy.shape, zero: false)
        for i in 0..<dy.count { dx.f32[i] = dy.f32[i] * m.f32[i] }
        return dx
    }
}

// MARK: batch normalization

/// BatchNorm over [N, C] (1d) or [N, C, H, W] (2d), PyTorch's definition: training normalizes by
/// the batch's mean and biased variance and updates running statistics with momentum 0.1
/// (running variance unbiased); evaluation, or a frozen layer, uses the running statistics.
public final class BatchNorm: Layer {
    public let name: String
    public let channels: Int
    public let eps: Float, momentum: Float
    public internal(set) var weight: Parameter, bias: Parameter
    public var runningMean: Tensor, runningVar: Tensor
    var xhat: Tensor?, invstd: [Float] = [], usedBatchStats = false
    public init(_ name: String, _ channels: Int, eps: Float = 1e-5, momentum: Float = 0.1) {
        self.name = name; self.channels = channels; self.eps = eps; self.momentum = momentum
        weight = Parameter("\(name).weight", shape: [channels], decays: false)
        bias = Parameter("\(name).bias", shape: [channels], decays: false)
        weight.v.update(repeating: 1, count: channels)
        runningMean = .f32([channels]); runningVar = .f32([channels])
        runningVar.f32.update(repeating: 1, count: channels)
    }
    public var spec: String { "bn" }
    public var parameters: [Parameter] { [weight, bias] }
    /// Back to a new layer's state: scale 1, shift 0, running mean 0 and variance 1.
    public func reset() {
        weight.v.update(repeating: 1, count: channels); bias.v.update(repeating: 0, count: channels)
        runningMean.f32.update(repeating: 0, count: channels); runningVar.f32.update(repeating: 1, count: channels)
    }
    /// Names of the running statistics (an imported graph keeps the file's names).
    public internal(set) lazy var bufferNames = ("\(name).running_mean", "\(name).running_var")
    public var buffers: [(String, Tensor)] { [(bufferNames.0, runningMean), (bufferNames.1, runningVar)] }
    public func outputShape(_ s: [Int]) throws -> [Int] {
        guard s.count == 2 || s.count == 4, s[1] == channels else { throw shapeError(self, "expects \(channels) channels, got \(shapeString(Array(s.dropFirst())))") }
        return s
    }
    public func forward(_ x: Tensor, _ ctx: Context) throws -> Tensor {
        _ = try outputShape(x.shape)
        let n = x.shape[0], c = channels, size = x.rank == 4 ? x.shape[2] * x.shape[3] : 1
        let batch = ctx.training && !weight.frozen
        var mean = [Float](repeating: 0, count: c), variance = mean
        if batch {
            Elementwise.channelStatistics(n: n, c: c, size: size, x: x.f32, mean: &mean, variance: &variance)
            let m = Float(n * size), unbias = m > 1 ? m / (m - 1) : 1
            for j in 0..<c {
                runningMean.f32[j] = (1 - momentum) * runningMean.f32[j] + momentum * mean[j]
                runningVar.f32[j] = (1 - momentum) * runningVar.f32[j] + momentum * variance[j] * unbias
            }
        } else {
            for j in 0..<c { mean[j] = runningMean.f32[j]; variance[j] = runningVar.f32[j] }
        }
        let invstd = variance.map { 1 / ($0 + eps).squareRoot() }
        let y = Tensor.f32(x.shape, zero: false), xh = ctx.training ? Tensor.f32(x.shape, zero: false) : nil
        for i in 0..<n {
            for j in 0..<c {
                let off = (i * c + j) * size, s = invstd[j], mu = mean[j], gm = weight.v[j], bt = bias.v[j]
                let xp = x.f32 + off, yp = y.f32 + off
                if let h = xh {
                    let hp = h.f32 + off
                    for q in 0..<size { let v = (xp[q] - mu) * s; hp[q] = v; yp[q] = v * gm + bt }
                } else {
                    for q in 0..<size { yp[q] = (xp[q] - mu) * s * gm + bt }
                }
            }
        }
        if ctx.training { xhat = xh; usedBatchStats = batch; self.invstd = invstd }
        return y
    }
    public func backward(_ dy: Tensor, needInputGrad: Bool, _ ctx: Context) -> Tensor? {
        guard let xh = xhat else { preconditionFailure("\(name): backward without a training forward") }
        let n = dy.shape[0], c = channels, size = dy.rank == 4 ? dy.shape[2] * dy.shape[3] : 1
        var sdy = [Double](repeating: 0, count: c), sdyx = sdy
        for i in 0..<n { for j in 0..<c {
            let off = (i * c + j) * size, d = dy.f32 + off, h = xh.f32 + off
            var a = 0.0, b = 0.0
            for q in 0..<size { a += Double(d[q]); b += Double(d[q] * h[q]) }
            sdy[j] += a; sdyx[j] += b
        } }
        if !weight.frozen { for j in 0..<c { weight.g[j] += Float(sdyx[j]) } }
        if !bias.frozen { for j in 0..<c { bias.g[j] += Float(sdy[j]) } }
        guard needInputGrad else { return nil }
        let dx = Tensor.f32(dy.shape, zero: false), m = Float(n * size)
        for i in 0..<n { for j in 0..<c {
            let off = (i * c + j) * size, d = dy.f32 + off, h = xh.f32 + off, o = dx.f32 + off
            let k = weight.v[j] * invstd[j]
            if usedBatchStats {
                let a = Float(sdy[j]) / m, b = Float(sdyx[j]) / m
                for q in 0..<size { o[q] = k * (d[q] - a - h[q] * b) }
            } else {
                for q in 0..<size { o[q] = k * d[q] }
            }
        } }
        return dx
    }
}

// MARK: containers

/// Layers in order. Backward skips the input gradient of the first layer (nobody needs it) and
/// stops early below the lowest layer that has trainable parameters.
public final class Sequential: Layer {
    public let name: String
    public var layers: [Layer]
    public init(_ name: String, _ layers: [Layer]) { self.name = name; self.layers = layers }
    public var spec: String { layers.map(\.spec).joined(separator: ",") }
    public var children: [Layer] { layers }
    public var parameters: [Parameter] { layers.flatMap(\.parameters) }
    public var buffers: [(String, Tensor)] { layers.flatMap(\.buffers) }
    public func outputShape(_ s: [Int]) throws -> [Int] { try layers.reduce(s) { try $1.outputShape($0) } }
    public func forward(_ x: Tensor, _ ctx: Context) throws -> Tensor { try Sequential.run(layers[...], x, ctx) }

    /// Runs layers in order. At inference a convolution followed by an activation it can apply
    /// while storing its outputs (relu, relu6, clip) runs as one step: one pass and one tensor
    /// fewer, the same values.
    static func run(_ layers: ArraySlice<Layer>, _ x: Tensor, _ ctx: Context) throws -> Tensor {
        if ctx.training { return try layers.reduce(x) { try $1.forward($0, ctx) } }
        var v = x, i = layers.startIndex
        while i < layers.endIndex {
            if let conv = layers[i] as? Conv2d, i + 1 < layers.endIndex, let act = (layers[i + 1] as? Activation)?.fused {
                v = try conv.forward(v, ctx, activation: act)
                i += 2
            } else {
                v = try layers[i].forward(v, ctx)
                i += 1
            }
        }
        return v
    }
    public func backward(_ dy: Tensor, needInputGrad: Bool, _ ctx: Context) -> Tensor? {
        // The lowest layer whose parameters (or whose inputs' producers') need gradients.
        var lowest = layers.count
        for (i, l) in layers.enumerated() where l.parameters.contains(where: { !$0.frozen }) { lowest = i; break }
        if needInputGrad { lowest = 0 }
        var g: Tensor? = dy
        for i in stride(from: layers.count - 1, through: lowest, by: -1) {
            guard let d = g else { return nil }
            g = layers[i].backward(d, needInputGrad: i > lowest || needInputGrad, ctx)
        }
        return needInputGrad ? g : nil
    }
}

/// y = relu(body(x) + shortcut(x)) (identity shortcut when nil; the ReLU when `postReLU`): the
/// residual connection of He et al.'s basic block.
public final class Residual: Layer {
    public let name: String
    public let body: Sequential, shortcut: Sequential?
    public let postReLU: Bool
    let tokenSpec: String
    var y: Tensor?
    public init(_ name: String, body: Sequential, shortcut: Sequential?, postReLU: Bool = true, spec: String) {
        self.name = name; self.body = body; self.shortcut = shortcut; self.postReLU = postReLU; tokenSpec = spec
    }
    public var spec: String { tokenSpec }
    public var children: [Layer] { [body] + (shortcut.map { [$0] } ?? []) }
    public var parameters: [Parameter] { body.parameters + (shortcut?.parameters ?? []) }
    public var buffers: [(String, Tensor)] { body.buffers + (shortcut?.buffers ?? []) }
    public func outputShape(_ s: [Int]) throws -> [Int] {
        let a = try body.outputShape(s), b = try shortcut?.outputShape(s) ?? s
        guard a == b else { throw shapeError(self, "branch shapes \(shapeString(a)) and \(shapeString(b)) differ") }
        return a
    }
    public func forward(_ x: Tensor, _ ctx: Context) throws -> Tensor {
        let a = try body.forward(x, ctx), b = try shortcut?.forward(x, ctx) ?? x
        guard a.shape == b.shape else { throw shapeError(self, "branch shapes \(shapeString(a.shape)) and \(shapeString(b.shape)) differ") }
        let y = Tensor.f32(a.shape, zero: false)
        if postReLU { for i in 0..<a.count { y.f32[i] = max(a.f32[i] + b.f32[i], 0) } }
        else { for i in 0..<a.count { y.f32[i] = a.f32[i] + b.f32[i] } }
        if ctx.training { self.y = y }
        return y
    }
    public func backward(_ dy: Tensor, needInputGrad: Bool, _ ctx: Context) -> Tensor? {
        var d = dy
        if postReLU, let y = y {
            d = Tensor.f32(dy.shape)
            Elementwise.reluBackward(dy.count, y: y.f32, dy: dy.f32, dx: d.f32)
        }
        let a = body.backward(d, needInputGrad: needInputGrad, ctx)
        let b = shortcut.map { $0.backward(d, needInputGrad: needInputGrad, ctx) } ?? (needInputGrad ? d : nil)
        guard needInputGrad, let ga = a, let gb = b else { return nil }
        let dx = Tensor.f32(ga.shape, zero: false)
        for i in 0..<ga.count { dx.f32[i] = ga.f32[i] + gb.f32[i] }
        return dx
    }
}

// MARK: sharing in graphs

extension Linear: SharingParameters {
    func share(_ p: (Parameter) -> Parameter, _ b: (String, Tensor) -> Tensor) { weight = p(weight); bias = bias.map(p) }
}
extension Conv2d: SharingParameters {
    func share(_ p: (Parameter) -> Parameter, _ b: (String, Tensor) -> Tensor) { weight = p(weight); bias = bias.map(p) }
}
extension BatchNorm: SharingParameters {
    func share(_ p: (Parameter) -> Parameter, _ b: (String, Tensor) -> Tensor) {
        weight = p(weight); bias = p(bias)
        runningMean = b(bufferNames.0, runningMean); runningVar = b(bufferNames.1, runningVar)
    }
}
