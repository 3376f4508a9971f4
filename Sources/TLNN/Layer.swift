import TLCore

/// A trainable tensor with its gradient. Names are dotted paths (`conv1.weight`) that the model
/// file, `--freeze` and PyTorch state dicts share.
public final class Parameter {
    /// Set when built; an imported graph renames its parameters to the file's tensor names.
    public internal(set) var name: String
    public var value: Tensor
    public var grad: Tensor
    /// Frozen parameters get no gradient and no optimizer state; their layer skips that work.
    public var frozen = false
    /// Multiplies the learning rate (parameter groups: a smaller rate for copied layers).
    public var lrScale: Float = 1
    /// Whether weight decay applies (weights yes; biases and normalization parameters no).
    public var decays: Bool

    public init(_ name: String, shape: [Int], decays: Bool = true) {
        self.name = name
        value = try! Tensor(zeros: .f32, shape: shape)
        grad = try! Tensor(zeros: .f32, shape: shape)
        self.decays = decays
    }
    public var count: Int { value.count }
    public var v: UnsafeMutablePointer<Float> { value.f32 }
    public var g: UnsafeMutablePointer<Float> { grad.f32 }
    public func zeroGrad() { g.update(repeating: 0, count: count) }
}

extension Tensor {
    /// The elements as f32 (the dtype must be f32).
    public var f32: UnsafeMutablePointer<Float> {
        precondition(dtype == .f32, "expected an f32 tensor, got \(dtype.shortName)")
        return rawPointer.assumingMemoryBound(to: Float.self)
    }
    /// A zero f32 working tensor from the buffer pool (see `Storage(pooledZeroedBytes:)`).
    /// `zero: false` skips the memset for outputs a kernel overwrites entirely.
    public static func f32(_ shape: [Int], zero: Bool = true) -> Tensor {
        let n = shape.reduce(1, *)
        return Tensor(dtype: .f32, shape: shape, storage: Storage(pooledZeroedBytes: n * 4, zero: zero))
    }
    public var floats: [Float] { Array(UnsafeBufferPointer(start: f32, count: count)) }
}

/// Where a forward pass runs: training (batch statistics, dropout) or evaluation.
public struct Context {
    public var training: Bool
    /// Seeds dropout masks: (seed, step) decides every mask, whatever the thread count.
    public var seed: UInt64
    public var step: UInt64
    public var threads: Int
    public init(training: Bool, seed: UInt64 = 0, step: UInt64 = 0, threads: Int = Threads.count) {
        self.training = training; self.seed = seed; self.step = step; self.threads = threads
    }
}

/// A layer: explicit forward and backward. Forward caches what backward needs; backward
/// accumulates parameter gradients and returns the input gradient (nil when not needed).
/// Shapes include the batch axis first.
///
/// In evaluation mode (`ctx.training` false) forward writes no state of the layer, so several
/// threads may run one network on different inputs at once (inference splits batches so).
public protocol Layer: AnyObject {
    /// The layer's name within its network (`conv1`, `block2.conv1`); parameters are `name.weight`.
    var name: String { get }
    /// One token of the architecture spec that rebuilds this layer (`conv3x3-32`, `relu`).
    var spec: String { get }
    /// The output shape for an input shape (batch axis included), or a data error.
    func outputShape(_ input: [Int]) throws -> [Int]
    func forward(_ x: Tensor, _ ctx: Context) throws -> Tensor
    func backward(_ dy: Tensor, needInputGrad: Bool, _ ctx: Context) -> Tensor?
    var parameters: [Parameter] { get }
    /// Non-trainable state saved with the model (BatchNorm running statistics).
    var buffers: [(String, Tensor)] { get }
    /// The layers inside this one (containers), for `--layer` lookup and listing.
    var children: [Layer] { get }
}

extension Layer {
    public var parameters: [Parameter] { [] }
    public var buffers: [(String, Tensor)] { [] }
    public var children: [Layer] { [] }
}

/// Per-sample element count of a shape (all axes but the first).
@inline(__always) public func perSample(_ s: [Int]) -> Int { s.dropFirst().reduce(1, *) }

func shapeError(_ layer: Layer, _ what: String) -> TLError {
    TLError.data("layer \(layer.name) (\(layer.spec)): \(what)")
}
