import Glibc
import TLCore

/// The ops a graph is built from, by ONNX op type and attributes (ONNX's semantics and
/// defaults), with explicit backward. Single-input layers (Conv, Gemm, BatchNormalization,
/// pooling, activations, Flatten) are tl's own layers behind `LayerOp`; the rest are here.
/// Anything else is a data error naming the op: never a guess.
public enum GraphOps {
    /// The op types `make` builds.
    public static let supported: Set<String> = [
        "Conv", "Gemm", "MatMul", "BatchNormalization", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "HardSigmoid", "HardSwish",
        "Elu", "Selu", "PRelu", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Add", "Sub", "Mul", "Div",
        "Concat", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Pad", "Softmax", "LogSoftmax", "ReduceMean", "Identity", "Dropout", "Gelu",
    ]

    /// Builds node `n`. `tensors` holds every static input by name; `inputShapes` are the full
    /// shapes (batch 1) of the dynamic inputs, in order.
    static func make(_ n: GraphSpec.Node, tensors: [String: Tensor], inputShapes: [[Int]]) throws -> GraphOp {
        let a = Attrs(n.attrs)
        // Operands in input order: dynamic (an index among the dynamic inputs) or static.
        var di = 0
        let operands: [Operand?] = n.inputs.map { name in
            if name.isEmpty { return nil }
            if let t = tensors[name] { return .constant(name, t) }
            defer { di += 1 }
            return .dynamic(di)
        }
        func staticTensor(_ i: Int, _ what: String) throws -> (String, Tensor) {
            guard i < operands.count, let o = operands[i] else { throw TLError.data("has no \(what)") }
            guard case .constant(let name, let t) = o else { throw TLError.data("its \(what) must be a constant (weights computed at run time are not supported)") }
            return (name, t)
        }
        func optionalStatic(_ i: Int) throws -> (String, Tensor)? { i < operands.count && operands[i] != nil ? try staticTensor(i, "input \(i)") : nil }
        func firstDynamic() throws -> [Int] {
            guard case .dynamic? = operands.first ?? nil, let s = inputShapes.first else { throw TLError.data("its first input must be computed, not a constant") }
            return s
        }
        switch n.op {
        case "Conv":
            let x = try firstDynamic()
            guard x.count == 4 else { throw TLError.data("only 2-D convolution is supported (input rank \(x.count))") }
            let (wn, w) = try staticTensor(1, "weight")
            let bias = try optionalStatic(2)
            guard w.rank == 4 else { throw TLError.data("weight has shape \(shapeString(w.shape))") }
            let groups = a.int("group", 1)
            let k = a.ints("kernel_shape", [w.shape[2], w.shape[3]]), st = a.ints("strides", [1, 1]), dil = a.ints("dilations", [1, 1])
            guard k == [w.shape[2], w.shape[3]], st.count == 2, dil.count == 2 else { throw TLError.data("kernel_shape, strides or dilations do not fit a 2-D convolution") }
            let pads = try padding(a, input: [x[2], x[3]], kernel: k, strides: st, dilations: dil)
            var g = ConvGeometry(n: 1, c: x[1], h: x[2], w: x[3], oc: w.shape[0], kh: k[0], kw: k[1], groups: groups)
            g.strideH = st[0]; g.strideW = st[1]; g.dilationH = dil[0]; g.dilationW = dil[1]
            (g.padTop, g.padLeft, g.padBottom, g.padRight) = (pads[0], pads[1], pads[2], pads[3])
            guard w.shape[1] * groups == x[1] else { throw TLError.data("weight \(shapeString(w.shape)) with \(groups) groups does not fit \(x[1]) input channels") }
            let conv = Conv2d(n.name, x[1], w.shape[0], geometry: g, bias: bias != nil)
            try adopt(conv.weight, wn, w)
            if let (bn, b) = bias, let p = conv.bias { try adopt(p, bn, b) }
            return LayerOp(conv)
        case "Gemm":
            // The canonical form the importer writes, x·Wᵀ + b (W constant [out, in], b constant
            // [out] or absent, α = β = 1): a Linear layer that adopts W and b as they are (so a
            // saved model reloads the same). Anything else runs as a general GEMM op.
            let canonical: Bool = {
                guard a.int("transA", 0) == 0, a.int("transB", 0) == 1, a.float("alpha", 1) == 1, a.float("beta", 1) == 1,
                      case .dynamic? = operands.first ?? nil, case .constant(_, let w)? = operands.count > 1 ? operands[1] : nil, w.rank == 2 else { return false }
                if operands.count > 2, let c = operands[2] {
                    guard case .constant(_, let ct) = c else { return false }
                    return ct.rank == 1 && ct.count == w.shape[0]
                }
                return true
            }()
            guard canonical else {
                return GemmOp(try operands.map { try bind($0, n.name) }, transA: a.int("transA", 0) == 1, transB: a.int("transB", 0) == 1,
                              alpha: a.float("alpha", 1), beta: a.float("beta", 1))
            }
            let x = try firstDynamic()
            let (wn, w) = try staticTensor(1, "B")
            guard x.count == 2, w.shape[1] == x[1] else { throw TLError.data("B \(shapeString(w.shape)) does not fit input \(shapeString(x))") }
            let c = try optionalStatic(2)
            let fc = Linear(n.name, w.shape[1], w.shape[0], bias: c != nil)
            try adopt(fc.weight, wn, w)
            if let (cn, ct) = c, let p = fc.bias { try adopt(p, cn, ct) }
            return LayerOp(fc)
        case "MatMul":
            return MatMulOp(try operands.map { try bind($0, n.name) })
        case "BatchNormalization":
            let x = try firstDynamic()
            guard x.count == 2 || x.count == 4 else { throw TLError.data("only [N, C] and [N, C, H, W] inputs are supported") }
            guard a.int("training_mode", 0) == 0 else { throw TLError.data("training_mode = 1 is not supported (an exported network runs in evaluation mode)") }
            guard a.int("spatial", 1) == 1 else { throw TLError.data("spatial = 0 (opset < 9) is not supported") }
            let bn = BatchNorm(n.name, x[1], eps: a.float("epsilon", 1e-5), momentum: 1 - a.float("momentum", 0.9))
            let (sn, sc) = try staticTensor(1, "scale"), (bnn, bb) = try staticTensor(2, "B")
            let (mn, mean) = try staticTensor(3, "mean"), (vn, variance) = try staticTensor(4, "var")
            try adopt(bn.weight, sn, sc); try adopt(bn.bias, bnn, bb)
            for (name, t, dst) in [(mn, mean, bn.runningMean), (vn, variance, bn.runningVar)] {
                guard t.count == x[1] else { throw TLError.data("'\(name)' has \(t.count) values for \(x[1]) channels") }
                dst.rawPointer.copyMemory(from: try t.converted(to: .f32).rawPointer, byteCount: x[1] * 4)
            }
            bn.bufferNames = (mn, vn)
            return LayerOp(bn)
        case "Relu": return LayerOp(Activation(n.name, .relu))
        case "Sigmoid": return LayerOp(Activation(n.name, .sigmoid))
        case "Tanh": return LayerOp(Activation(n.name, .tanh))
        case "LeakyRelu": return LayerOp(Activation(n.name, .leakyRelu(a.float("alpha", 0.01))))
        case "HardSigmoid": return LayerOp(Activation(n.name, .hardSigmoid(a.float("alpha", 0.2), a.float("beta", 0.5))))
        case "HardSwish": return LayerOp(Activation(n.name, .hardSwish))
        case "Elu": return LayerOp(Activation(n.name, .elu(a.float("alpha", 1))))
        case "Selu":
            guard a.float("alpha", Activation.seluAlpha) == Activation.seluAlpha, a.float("gamma", Activation.seluGamma) == Activation.seluGamma else {
                throw TLError.data("only SELU's standard alpha and gamma are supported")
            }
            return LayerOp(Activation(n.name, .selu))
        case "Clip":
            // opset ≥ 11: min and max are (optional) inputs; before: attributes.
            var lo = a.float("min", -Float.infinity), hi = a.float("max", Float.infinity)
            if let (_, t) = try optionalStatic(1) { lo = Float(t.double(at: 0)) }
            if let (_, t) = try optionalStatic(2) { hi = Float(t.double(at: 0)) }
            return LayerOp(Activation(n.name, lo == 0 && hi == 6 ? .relu6 : .clip(lo, hi)))
        case "PRelu":
            guard case .constant(let sn, let slope)? = operands[1] else { throw TLError.data("the slope must be a constant") }
            let p = Parameter(sn, shape: slope.shape, decays: false)
            try adopt(p, sn, slope)
            return PReluOp(p)
        case "MaxPool", "AveragePool":
            let x = try firstDynamic()
            let k = a.ints("kernel_shape", [])
            guard x.count == 4, k.count == 2 else { throw TLError.data("only 2-D pooling is supported (kernel_shape \(k))") }
            let st = a.ints("strides", [1, 1]), dil = a.ints("dilations", [1, 1])
            guard st.count == 2, dil.count == 2 else { throw TLError.data("strides or dilations do not fit 2-D pooling") }
            let pads = try padding(a, input: [x[2], x[3]], kernel: k, strides: st, dilations: dil)
            var g = PoolGeometry(n: 1, c: x[1], h: x[2], w: x[3], kernel: k[0])
            g.kw = k[1]; g.strideH = st[0]; g.strideW = st[1]; g.dilationH = dil[0]; g.dilationW = dil[1]
            (g.padTop, g.padLeft, g.padBottom, g.padRight) = (pads[0], pads[1], pads[2], pads[3])
            g.ceilMode = a.int("ceil_mode", 0) == 1
            g.countIncludePad = a.int("count_include_pad", 0) == 1
            if let p = g.problem { throw TLError.data(p) }
            return LayerOp(Pool2d(n.name, n.op == "MaxPool" ? .max : .avg, geometry: g))
        case "GlobalAveragePool", "GlobalMaxPool":
            guard try firstDynamic().count == 4 else { throw TLError.data("only [N, C, H, W] inputs are supported") }
            return GlobalPoolOp(max: n.op == "GlobalMaxPool")
        case "Flatten": return LayerOp(Flatten(n.name, axis: a.int("axis", 1)))
        case "Add", "Sub", "Mul", "Div":
            return BinaryOp(BinaryOp.Kind(rawValue: n.op)!, try bind(operands[0], n.name), try bind(operands[1], n.name))
        case "Concat":
            return ConcatOp(axis: a.int("axis", 0), operands: try operands.map { try bind($0, n.name) })
        case "Reshape":
            let (_, t) = try staticTensor(1, "shape")
            let target = (0..<t.count).map { Int(t.int64(at: $0) ?? 0) }
            let allowZero = a.int("allowzero", 0) == 1
            return ReshapeOp("Reshape") { s in try reshapeTarget(s, target, allowZero: allowZero) }
        case "Squeeze", "Unsqueeze":
            var axes = a.ints("axes", [])
            if let (_, t) = try optionalStatic(1) { axes = (0..<t.count).map { Int(t.int64(at: $0) ?? 0) } }
            let squeeze = n.op == "Squeeze"
            return ReshapeOp(n.op) { s in try squeezeShape(s, axes, squeeze: squeeze) }
        case "Transpose":
            let r = try firstDynamic().count
            let perm = a.ints("perm", Array((0..<r).reversed()))
            guard perm.sorted() == Array(0..<r) else { throw TLError.data("perm \(perm) is not a permutation of \(r) axes") }
            return TransposeOp(perm)
        case "Pad":
            let r = try firstDynamic().count
            var pads = a.ints("pads", []), value: Float = a.float("value", 0)
            if let (_, t) = try optionalStatic(1) { pads = (0..<t.count).map { Int(t.int64(at: $0) ?? 0) } }
            if let (_, t) = try optionalStatic(2), t.count > 0 { value = Float(t.double(at: 0)) }
            if let (_, t) = try optionalStatic(3) {   // opset 18: pads for the listed axes only
                let axes = (0..<t.count).map { i -> Int in let v = Int(t.int64(at: i) ?? 0); return v < 0 ? v + r : v }
                guard pads.count == 2 * axes.count, axes.allSatisfy({ $0 >= 0 && $0 < r }) else { throw TLError.data("pads and axes do not match") }
                var full = [Int](repeating: 0, count: 2 * r)
                for (k, ax) in axes.enumerated() { full[ax] = pads[k]; full[r + ax] = pads[axes.count + k] }
                pads = full
            }
            guard pads.count == 2 * r else { throw TLError.data("pads has \(pads.count) values for rank \(r)") }
            let mode = a.string("mode", "constant")
            guard ["constant", "reflect", "edge"].contains(mode) else { throw TLError.data("pad mode '\(mode)' is not supported") }
            guard pads.allSatisfy({ $0 >= 0 }) else { throw TLError.data("negative pads (cropping) are not supported") }
            return PadOp(begin: Array(pads[..<r]), end: Array(pads[r...]), mode: mode, value: value)
        case "Softmax", "LogSoftmax":
            // Before opset 13 the input is coerced to 2-D at `axis` (default 1); from 13 on, the
            // softmax runs along `axis` (default −1). The importer records which (attr "coerce").
            let coerce = a.int("coerce", 0) == 1
            return SoftmaxOp(axis: a.int("axis", coerce ? 1 : -1), log: n.op == "LogSoftmax", coerce: coerce)
        case "ReduceMean":
            var axes: [Int]? = a.raw["axes"].map { _ in a.ints("axes", []) }
            if let (_, t) = try optionalStatic(1) { axes = (0..<t.count).map { Int(t.int64(at: $0) ?? 0) } }
            if axes == nil && a.int("noop_with_empty_axes", 0) == 1 { return IdentityOp() }
            return ReduceMeanOp(axes: axes, keepDims: a.int("keepdims", 1) == 1)
        case "Identity":
            return IdentityOp()
        case "Dropout":
            // The identity in evaluation; in training (fine-tuning) it drops, as in the network's
            // own training. Ratio: attribute before opset 12, then input 1; 0.5 by default.
            if let (_, t) = try optionalStatic(2), t.count > 0, t.double(at: 0) != 0 {
                throw TLError.data("Dropout in training mode is not supported")
            }
            var ratio = a.float("ratio", 0.5)
            if let (_, t) = try optionalStatic(1), t.count > 0 { ratio = Float(t.double(at: 0)) }
            guard ratio >= 0 && ratio < 1 else { throw TLError.data("dropout ratio \(ratio) is outside [0, 1)") }
            return LayerOp(Dropout(n.name, p: ratio, stream: UInt64(CRC32.checksum(Array(n.name.utf8))) | 1 << 40))
        case "Gelu":
            guard a.string("approximate", "none") == "none" else { throw TLError.data("only the exact (erf) GELU is supported") }
            return LayerOp(Activation(n.name, .gelu))
        default:
            throw TLError.data("operator \(n.op) is not supported (tl imports: \(supported.sorted().joined(separator: ", ")))")
        }
    }

    /// ONNX padding: explicit `pads` [top, left, bottom, right] or `auto_pad` SAME_UPPER /
    /// SAME_LOWER (the extra pixel at the end or at the start) / VALID.
    static func padding(_ a: Attrs, input: [Int], kernel: [Int], strides: [Int], dilations: [Int]) throws -> [Int] {
        switch a.string("auto_pad", "NOTSET") {
        case "NOTSET":
            let p = a.ints("pads", [0, 0, 0, 0])
            guard p.count == 4, p.allSatisfy({ $0 >= 0 }) else { throw TLError.data("pads \(p) do not fit a 2-D window") }
            return p
        case "VALID": return [0, 0, 0, 0]
        case let mode where mode == "SAME_UPPER" || mode == "SAME_LOWER":
            var begin = [0, 0], end = [0, 0]
            for i in 0..<2 {
                let out = (input[i] + strides[i] - 1) / strides[i]
                let total = max((out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - input[i], 0)
                let small = total / 2
                (begin[i], end[i]) = mode == "SAME_UPPER" ? (small, total - small) : (total - small, small)
            }
            return [begin[0], begin[1], end[0], end[1]]
        case let m: throw TLError.data("auto_pad '\(m)' is not supported")
        }
    }

    /// Sets a parameter from a file's tensor: the name, and the values (the tensor itself when
    /// it is already f32 and shaped right: no copy).
    static func adopt(_ p: Parameter, _ name: String, _ t: Tensor) throws {
        guard t.count == p.count else { throw TLError.data("'\(name)' has \(t.count) values; \(shapeString(p.value.shape)) needed") }
        p.name = name
        p.value = try t.converted(to: .f32).reshaped(p.value.shape)
    }

    static func bind(_ o: Operand?, _ node: String) throws -> Operand {
        guard let o = o else { throw TLError.data("an input is missing") }
        // A constant with more than one value is a weight the network learns (a bias after
        // MatMul, a scale); single values (the 3 and 6 of a HardSwish written out) stay fixed.
        if case .constant(let name, let t) = o, t.dtype.isFloat, t.count > 1 {
            let p = Parameter(name, shape: t.shape, decays: false)
            try adopt(p, name, t)
            return .parameter(p)
        }
        return o
    }

    static func transpose2D(_ t: Tensor) -> Tensor {
        let r = t.shape[0], c = t.shape[1], out = try! Tensor(zeros: .f32, shape: [c, r])
        for i in 0..<r { for j in 0..<c { out.f32[j * r + i] = t.f32[i * c + j] } }
        return out
    }

    /// ONNX Reshape: 0 copies the input's dimension (unless allowzero), −1 is inferred.
    static func reshapeTarget(_ s: [Int], _ target: [Int], allowZero: Bool) throws -> [Int] {
        var out = target.enumerated().map { i, d in d == 0 && !allowZero ? (i < s.count ? s[i] : 0) : d }
        let known = out.filter { $0 != -1 }.reduce(1, *), total = s.reduce(1, *)
        if let i = out.firstIndex(of: -1) {
            guard out.filter({ $0 == -1 }).count == 1, known > 0, total % known == 0 else { throw TLError.data("cannot reshape \(shapeString(s)) to \(target)") }
            out[i] = total / known
        }
        guard out.reduce(1, *) == total, out.allSatisfy({ $0 >= 0 }) else { throw TLError.data("cannot reshape \(shapeString(s)) to \(target)") }
        return out
    }

    static func squeezeShape(_ s: [Int], _ axes: [Int], squeeze: Bool) throws -> [Int] {
        if squeeze {
            let ax = Set(axes.map { $0 < 0 ? $0 + s.count : $0 })
            if ax.isEmpty { return s.filter { $0 != 1 } }
            for a in ax { guard a >= 0 && a < s.count && s[a] == 1 else { throw TLError.data("cannot squeeze axis \(a) of \(shapeString(s))") } }
            return s.enumerated().filter { !ax.contains($0.offset) }.map(\.element)
        }
        let r = s.count + axes.count
        let ax = Set(axes.map { $0 < 0 ? $0 + r : $0 })
        guard ax.count == axes.count, ax.allSatisfy({ $0 >= 0 && $0 < r }) else { throw TLError.data("bad unsqueeze axes \(axes) for \(shapeString(s))") }
        var out: [Int] = [], k = 0
        for i in 0..<r { if ax.contains(i) { out.append(1) } else { out.append(s[k]); k += 1 } }
        return out
    }
}

/// Attribute access with ONNX's defaults.
struct Attrs {
    let raw: [String: JSON]
    init(_ raw: [String: JSON]) { self.raw = raw }
    func int(_ k: String, _ d: Int) -> Int { raw[k]?.int ?? d }
    func ints(_ k: String, _ d: [Int]) -> [Int] { raw[k]?.array?.compactMap { $0.int } ?? raw[k]?.int.map { [$0] } ?? d }
    func float(_ k: String, _ d: Float) -> Float { raw[k]?.number.map { Float($0) } ?? d }
    func string(_ k: String, _ d: String) -> String { raw[k]?.string ?? d }
}

/// An input of an op: computed at run time (index among the dynamic inputs), a learned
/// parameter, or a fixed constant.
enum Operand {
    case dynamic(Int), parameter(Parameter), constant(String, Tensor)

    func value(_ inputs: [Tensor]) throws -> Tensor {
        switch self {
        case .dynamic(let i): return inputs[i].dtype == .f32 ? inputs[i] : try inputs[i].converted(to: .f32)
        case .parameter(let p): return p.value
        case .constant(_, let t): return t.dtype == .f32 ? t : try t.converted(to: .f32)
        }
    }
    func shape(_ shapes: [[Int]]) -> [Int] {
        switch self {
        case .dynamic(let i): return shapes[i]
        case .parameter(let p): return p.value.shape
        case .constant(_, let t): return t.shape
        }
    }
    var parameter: Parameter? { if case .parameter(let p) = self { return p }; return nil }
    func shared(_ f: (Parameter) -> Parameter) -> Operand { if case .parameter(let p) = self { return .parameter(f(p)) }; return self }
    var isDynamic: Bool { if case .dynamic = self { return true }; return false }
}

/// A layer as a graph op (one dynamic input).
final class LayerOp: GraphOp, SharingParameters {
    let wrapped: Layer
    func share(_ p: (Parameter) -> Parameter, _ b: (String, Tensor) -> Tensor) { (wrapped as? SharingParameters)?.share(p, b) }
    init(_ l: Layer) { wrapped = l }
    var layer: Layer? { wrapped }
    func outputShape(_ i: [[Int]]) throws -> [Int] { try wrapped.outputShape(i[0]) }
    func forward(_ i: [Tensor], _ ctx: Context) throws -> Tensor { try wrapped.forward(try LayerOp.f32(i[0]), ctx) }
    /// Layers compute in f32: other inputs are converted.
    static func f32(_ t: Tensor) throws -> Tensor { t.dtype == .f32 ? t : try t.converted(to: .f32) }
    func backward(_ dy: Tensor, need: [Bool], _ ctx: Context) -> [Tensor?] { [wrapped.backward(dy, needInputGrad: need[0], ctx)] }
}

final class IdentityOp: GraphOp {
    func outputShape(_ i: [[Int]]) throws -> [Int] { i[0] }
    func forward(_ i: [Tensor], _ ctx: Context) throws -> Tensor { i[0] }
    func backward(_ dy: Tensor, need: [Bool], _ ctx: Context) -> [Tensor?] { [need[0] ? dy : nil] }
}

// MARK: broadcasting

/// NumPy broadcasting of two shapes, and the walk over the output in runs along the last axis.
enum Broadcast {
    static func shape(_ a: [Int], _ b: [Int]) throws -> [Int] {
        let r = max(a.count, b.count)
        let pa = [Int](repeating: 1, count: r - a.count) + a, pb = [Int](repeating: 1, count: r - b.count) + b
        return try (0..<r).map { i in
            if pa[i] == pb[i] || pb[i] == 1 { return pa[i] }
            if pa[i] == 1 { return pb[i] }
            throw TLError.data("shapes \(shapeString(a)) and \(shapeString(b)) do not broadcast")
        }
    }
    /// Element strides of `s` against the output shape `out` (0 along broadcast axes).
    static func strides(_ s: [Int], _ out: [Int]) -> [Int] {
        let p = [Int](repeating: 1, count: out.count - s.count) + s
        var st = [Int](repeating: 0, count: out.count), acc = 1
        for i in stride(from: out.count - 1, through: 0, by: -1) { st[i] = p[i] == 1 ? 0 : acc; acc *= p[i] }
        return st
    }
    /// body(offset in each operand, offset in the output, run length, stride of each operand
    /// along the run) for every run of the last axis (with `merge`, of the last axes that every
    /// operand walks contiguously; `reduce` keeps its runs, which fix its order of summation).
    static func runs(_ out0: [Int], _ st0: [[Int]], merge: Bool = true, _ body: ([Int], Int, Int, [Int]) -> Void) {
        // Adjacent axes that every operand walks contiguously are one axis (operands of the same
        // shape become a single run; a per-channel operand runs over whole planes): a residual
        // Add on 2×2 planes had gone two elements per call.
        var out = out0, st = st0, d = merge ? out.count - 2 : -1
        while d >= 0 {
            if st.allSatisfy({ $0[d] == $0[d + 1] * out[d + 1] }) {
                out[d + 1] *= out[d]; out.remove(at: d)
                for k in st.indices { st[k].remove(at: d) }
            }
            d -= 1
        }
        let r = out.count
        if r == 0 { body([Int](repeating: 0, count: st.count), 0, 1, [Int](repeating: 0, count: st.count)); return }
        let len = out[r - 1], outer = out.dropLast().reduce(1, *)
        if len == 0 || outer == 0 { return }
        var idx = [Int](repeating: 0, count: r - 1), offs = [Int](repeating: 0, count: st.count)
        let inner = st.map { $0[r - 1] }
        for o in 0..<outer {
            body(offs, o * len, len, inner)
            // Next outer index (row-major), updating the operand offsets incrementally.
            var d = r - 2
            while d >= 0 {
                idx[d] += 1
                for k in 0..<st.count { offs[k] += st[k][d] }
                if idx[d] < out[d] { break }
                for k in 0..<st.count { offs[k] -= st[k][d] * out[d] }
                idx[d] = 0; d -= 1
            }
        }
    }
    /// Sums `g` (shaped `out`) down to shape `s` (the adjoint of broadcasting).
    static func reduce(_ g: Tensor, to s: [Int]) -> Tensor {
        if g.shape == s { return g }
        let out = g.shape, r = Tensor.f32(s)
        let st = strides(s, out)
        runs(out, [st], merge: false) { o, go, len, inner in
            let dst = r.f32 + o[0], src = g.f32 + go
            if inner[0] == 0 { var acc: Float = 0; for q in 0..<len { acc += src[q] }; dst[0] += acc }
            else { for q in 0..<len { dst[q] += src[q] } }
        }
        return r
    }
}

/// Add, Sub, Mul, Div with NumPy broadcasting; either operand may be computed, learned or fixed.
final class BinaryOp: GraphOp, SharingParameters {
    enum Kind: String { case Add, Sub, Mul, Div }
    let kind: Kind
    var a: Operand, b: Operand
    func share(_ p: (Parameter) -> Parameter, _ b: (String, Tensor) -> Tensor) { a = a.shared(p); self.b = self.b.shared(p) }
    var cached: (Tensor, Tensor)?
    init(_ k: Kind, _ a: Operand, _ b: Operand) { kind = k; self.a = a; self.b = b }
    var parameters: [Parameter] { [a.parameter, b.parameter].compactMap { $0 } }
    func outputShape(_ i: [[Int]]) throws -> [Int] { try Broadcast.shape(a.shape(i), b.shape(i)) }
    func forward(_ i: [Tensor], _ ctx: Context) throws -> Tensor {
        let x = try a.value(i), y = try b.value(i)
        let out = try Broadcast.shape(x.shape, y.shape)
        let z = Tensor.f32(out, zero: false)
        let sa = Broadcast.strides(x.shape, out), sb = Broadcast.strides(y.shape, out)
        let k = kind
        Broadcast.runs(out, [sa, sb]) { o, zo, len, st in
            let p = x.f32 + o[0], q = y.f32 + o[1], r = z.f32 + zo, s0 = st[0], s1 = st[1]
            switch k {
            case .Add: for t in 0..<len { r[t] = p[t * s0] + q[t * s1] }
            case .Sub: for t in 0..<len { r[t] = p[t * s0] - q[t * s1] }
            case .Mul: for t in 0..<len { r[t] = p[t * s0] * q[t * s1] }
            case .Div: for t in 0..<len { r[t] = p[t * s0] / q[t * s1] }
            }
        }
        if ctx.training { cached = (x, y) }
        return z
    }
    func backward(_ dy: Tensor, need: [Bool], _ ctx: Context) -> [Tensor?] {
        guard let (x, y) = cached else { preconditionFailure("binary op: backward without a training forward") }
        let out = dy.shape
        let sa = Broadcast.strides(x.shape, out), sb = Broadcast.strides(y.shape, out)
        // ∂z/∂x and ∂z/∂y per output element, times dy, summed back to each operand's shape.
        func grad(_ first: Bool) -> Tensor {
            let g = Tensor.f32(out, zero: false), k = kind
            Broadcast.runs(out, [sa, sb]) { o, zo, len, st in
                let p = x.f32 + o[0], q = y.f32 + o[1], d = dy.f32 + zo, r = g.f32 + zo, s0 = st[0], s1 = st[1]
                switch (k, first) {
                case (.Add, _), (.Sub, true): for t in 0..<len { r[t] = d[t] }
                case (.Sub, false): for t in 0..<len { r[t] = -d[t] }
                case (.Mul, true): for t in 0..<len { r[t] = d[t] * q[t * s1] }
                case (.Mul, false): for t in 0..<len { r[t] = d[t] * p[t * s0] }
                case (.Div, true): for t in 0..<len { r[t] = d[t] / q[t * s1] }
                case (.Div, false): for t in 0..<len { let v = q[t * s1]; r[t] = -d[t] * p[t * s0] / (v * v) }
                }
            }
            return Broadcast.reduce(g, to: first ? x.shape : y.shape)
        }
        var res: [Tensor?] = need.map { _ in nil }
        for (o, first) in [(a, true), (b, false)] {
            switch o {
            case .dynamic(let i) where need[i]:
                let g = grad(first)
                if let old = res[i] { for k in 0..<g.count { g.f32[k] += old.f32[k] } }
                res[i] = g
            case .parameter(let p) where !p.frozen:
                let g = grad(first)
                for k in 0..<p.count { p.g[k] += g.f32[k] }
            default: continue
            }
        }
        return res
    }
}

/// y = x for x ≥ 0, slope·x otherwise, the slope broadcast (one per channel, usually).
final class PReluOp: GraphOp, SharingParameters {
    var slope: Parameter
    var x: Tensor?
    init(_ s: Parameter) { slope = s }
    func share(_ p: (Parameter) -> Parameter, _ b: (String, Tensor) -> Tensor) { slope = p(slope) }
    var parameters: [Parameter] { [slope] }
    func outputShape(_ i: [[Int]]) throws -> [Int] { _ = try Broadcast.shape(i[0], slope.value.shape); return i[0] }
    func forward(_ i: [Tensor], _ ctx: Context) throws -> Tensor {
        let x = try Operand.dynamic(0).value(i), y = Tensor.f32(x.shape, zero: false)
        let st = Broadcast.strides(slope.value.shape, x.shape), sv = slope.v
        Broadcast.runs(x.shape, [st]) { o, xo, len, s in
            for t in 0..<len { let v = x.f32[xo + t]; y.f32[xo + t] = v >= 0 ? v : v * sv[o[0] + t * s[0]] }
        }
        if ctx.training { self.x = x }
        return y
    }
    func backward(_ dy: Tensor, need: [Bool], _ ctx: Context) -> [Tensor?] {
        guard let x = x else { preconditionFailure("PRelu: backward without a training forward") }
        let dx = Tensor.f32(x.shape, zero: false), ds = Tensor.f32(x.shape, zero: false)
        let st = Broadcast.strides(slope.value.shape, x.shape), sv = slope.v
        Broadcast.runs(x.shape, [st]) { o, xo, len, s in
            for t in 0..<len {
                let v = x.f32[xo + t], d = dy.f32[xo + t]
                dx.f32[xo + t] = v >= 0 ? d : d * sv[o[0] + t * s[0]]
                ds.f32[xo + t] = v >= 0 ? 0 : d * v
            }
        }
        if !slope.frozen { let g = Broadcast.reduce(ds, to: slope.value.shape); for k in 0..<slope.count { slope.g[k] += g.f32[k] } }
        return [need[0] ? dx : nil]
    }
}

/// NumPy matmul: [..., M, K] · [..., K, N] with the batch axes broadcast; a 1-D operand gains
/// (and then loses) an axis.
final class MatMulOp: GraphOp, SharingParameters {
    var a: Operand, b: Operand
    var cached: (Tensor, Tensor)?
    init(_ o: [Operand]) { a = o[0]; b = o[1] }
    func share(_ p: (Parameter) -> Parameter, _ b: (String, Tensor) -> Tensor) { a = a.shared(p); self.b = self.b.shared(p) }
    var parameters: [Parameter] { [a.parameter, b.parameter].compactMap { $0 } }

    struct Plan { var batch: [Int]; var m: Int; var k: Int; var n: Int; var sa: [Int]; var sb: [Int]; var out: [Int] }
    static func plan(_ x: [Int], _ y: [Int]) throws -> Plan {
        guard !x.isEmpty, !y.isEmpty else { throw TLError.data("MatMul of a scalar") }
        let xa = x.count == 1 ? [1] + x : x, ya = y.count == 1 ? y + [1] : y
        let m = xa[xa.count - 2], k = xa[xa.count - 1], n = ya[ya.count - 1]
        guard ya[ya.count - 2] == k else { throw TLError.data("MatMul of \(shapeString(x)) and \(shapeString(y)): inner sizes differ") }
        let ba = Array(xa.dropLast(2)), bb = Array(ya.dropLast(2))
        let batch = try Broadcast.shape(ba, bb)
        var out = batch
        if x.count > 1 { out.append(m) }
        if y.count > 1 { out.append(n) }
        return Plan(batch: batch, m: m, k: k, n: n, sa: Broadcast.strides(ba, batch), sb: Broadcast.strides(bb, batch), out: out)
    }
    func outputShape(_ i: [[Int]]) throws -> [Int] { try MatMulOp.plan(a.shape(i), b.shape(i)).out }
    /// Calls body(a offset, b offset, out index) for each batch element.
    static func each(_ p: Plan, _ body: (Int, Int, Int) -> Void) {
        let count = p.batch.reduce(1, *)
        for t in 0..<count {
            var rem = t, oa = 0, ob = 0
            for d in stride(from: p.batch.count - 1, through: 0, by: -1) {
                let i = rem % p.batch[d]; rem /= p.batch[d]
                oa += i * p.sa[d]; ob += i * p.sb[d]
            }
            body(oa * p.m * p.k, ob * p.k * p.n, t)
        }
    }
    func forward(_ i: [Tensor], _ ctx: Context) throws -> Tensor {
        let x = try a.value(i), y = try b.value(i)
        let p = try MatMulOp.plan(x.shape, y.shape)
        let z = Tensor.f32(p.out, zero: false)
        MatMulOp.each(p) { oa, ob, t in
            GEMM.sgemm(transA: false, transB: false, m: p.m, n: p.n, k: p.k, alpha: 1, a: x.f32 + oa, lda: p.k, b: y.f32 + ob, ldb: p.n,
                       beta: 0, c: z.f32 + t * p.m * p.n, ldc: p.n, threads: ctx.threads)
        }
        if ctx.training { cached = (x, y) }
        return z
    }
    func backward(_ dy: Tensor, need: [Bool], _ ctx: Context) -> [Tensor?] {
        guard let (x, y) = cached else { preconditionFailure("MatMul: backward without a training forward") }
        let p = try! MatMulOp.plan(x.shape, y.shape)
        var res: [Tensor?] = need.map { _ in nil }
        func wanted(_ o: Operand) -> Bool {
            switch o { case .dynamic(let i): return need[i]; case .parameter(let q): return !q.frozen; default: return false }
        }
        let gx = wanted(a) ? Tensor.f32(x.shape) : nil, gy = wanted(b) ? Tensor.f32(y.shape) : nil
        MatMulOp.each(p) { oa, ob, t in
            let d = dy.f32 + t * p.m * p.n
            if let g = gx {   // dA += dY · Bᵀ
                GEMM.sgemm(transA: false, transB: true, m: p.m, n: p.k, k: p.n, alpha: 1, a: d, lda: p.n, b: y.f32 + ob, ldb: p.n,
                           beta: 1, c: g.f32 + oa, ldc: p.k, threads: ctx.threads)
            }
            if let g = gy {   // dB += Aᵀ · dY
                GEMM.sgemm(transA: true, transB: false, m: p.k, n: p.n, k: p.m, alpha: 1, a: x.f32 + oa, lda: p.k, b: d, ldb: p.n,
                           beta: 1, c: g.f32 + ob, ldc: p.n, threads: ctx.threads)
            }
        }
        for (o, g) in [(a, gx), (b, gy)] {
            guard let g = g else { continue }
            switch o {
            case .dynamic(let i): res[i] = g
            case .parameter(let q): for k in 0..<q.count { q.g[k] += g.f32[k] }
            default: break
            }
        }
        return res
    }
}

/// Joins its operands along `axis`.
final class ConcatOp: GraphOp, SharingParameters {
    let axis: Int
    var operands: [Operand]
    func share(_ p: (Parameter) -> Parameter, _ b: (String, Tensor) -> Tensor) { operands = operands.map { $0.shared(p) } }
    var shapes: [[Int]] = []
    init(axis: Int, operands: [Operand]) { self.axis = axis; self.operands = operands }
    var parameters: [Parameter] { operands.compactMap(\.parameter) }
    func axisIndex(_ r: Int) throws -> Int {
        let a = axis < 0 ? axis + r : axis
        guard a >= 0 && a < r else { throw TLError.data("axis \(axis) is outside \(r) dimensions") }
        return a
    }
    func outputShape(_ i: [[Int]]) throws -> [Int] {
        let ss = operands.map { $0.shape(i) }
        guard let f = ss.first else { throw TLError.data("Concat of nothing") }
        let a = try axisIndex(f.count)
        var out = f
        out[a] = 0
        for s in ss {
            guard s.count == f.count, (0..<s.count).allSatisfy({ $0 == a || s[$0] == f[$0] }) else {
                throw TLError.data("cannot join \(shapeString(s)) to \(shapeString(f)) along axis \(axis)")
            }
            out[a] += s[a]
        }
        return out
    }
    func forward(_ i: [Tensor], _ ctx: Context) throws -> Tensor {
        let xs = try operands.map { try $0.value(i) }
        let out = try outputShape(i.map(\.shape))
        let a = try axisIndex(out.count)
        let outer = out[..<a].reduce(1, *), inner = out[(a + 1)...].reduce(1, *)
        let z = Tensor.f32(out, zero: false)
        var at = 0
        for x in xs {
            let w = x.shape[a] * inner
            for o in 0..<outer { (z.f32 + o * out[a] * inner + at).update(from: x.f32 + o * w, count: w) }
            at += w
        }
        if ctx.training { shapes = xs.map(\.shape) }
        return z
    }
    func backward(_ dy: Tensor, need: [Bool], _ ctx: Context) -> [Tensor?] {
        let out = dy.shape, a = try! axisIndex(out.count)
        let outer = out[..<a].reduce(1, *), inner = out[(a + 1)...].reduce(1, *)
        var res: [Tensor?] = need.map { _ in nil }, at = 0
        for (o, s) in zip(operands, shapes) {
            let w = s[a] * inner
            defer { at += w }
            let want: Bool
            switch o { case .dynamic(let i): want = need[i]; case .parameter(let p): want = !p.frozen; default: want = false }
            guard want else { continue }
            let g = Tensor.f32(s, zero: false)
            for k in 0..<outer { (g.f32 + k * w).update(from: dy.f32 + k * out[a] * inner + at, count: w) }
            switch o {
            case .dynamic(let i): res[i] = g
            case .parameter(let p): for k in 0..<p.count { p.g[k] += g.f32[k] }
            default: break
            }
        }
        return res
    }
}

/// A new shape for the same elements (Reshape, Squeeze, Unsqueeze): a view, no copy.
final class ReshapeOp: GraphOp {
    let kind: String
    let target: ([Int]) throws -> [Int]
    var inShape: [Int] = []
    init(_ kind: String, _ f: @escaping ([Int]) throws -> [Int]) { self.kind = kind; target = f }
    func outputShape(_ i: [[Int]]) throws -> [Int] { try target(i[0]) }
    func forward(_ i: [Tensor], _ ctx: Context) throws -> Tensor {
        let x = try Operand.dynamic(0).value(i)
        if ctx.training { inShape = x.shape }
        return x.reshaped(try target(x.shape))
    }
    func backward(_ dy: Tensor, need: [Bool], _ ctx: Context) -> [Tensor?] { [need[0] ? dy.reshaped(inShape) : nil] }
}

/// Permutes the axes.
final class TransposeOp: GraphOp {
    let perm: [Int]
    init(_ p: [Int]) { perm = p }
    func outputShape(_ i: [[Int]]) throws -> [Int] {
        guard i[0].count == perm.count else { throw TLError.data("perm \(perm) for a rank-\(i[0].count) input") }
        return perm.map { i[0][$0] }
    }
    static func permute(_ x: Tensor, _ perm: [Int]) -> Tensor {
        let s = x.shape, out = perm.map { s[$0] }
        let y = Tensor.f32(out, zero: false)
        // Input strides in output axis order.
        var st = [Int](repeating: 1, count: s.count)
        for d in stride(from: s.count - 2, through: 0, by: -1) { st[d] = st[d + 1] * s[d + 1] }
        let pst = perm.map { st[$0] }
        Broadcast.runs(out, [pst]) { o, yo, len, inner in
            for t in 0..<len { y.f32[yo + t] = x.f32[o[0] + t * inner[0]] }
        }
        return y
    }
    func forward(_ i: [Tensor], _ ctx: Context) throws -> Tensor {
        _ = try outputShape(i.map(\.shape))
        return TransposeOp.permute(try Operand.dynamic(0).value(i), perm)
    }
    func backward(_ dy: Tensor, need: [Bool], _ ctx: Context) -> [Tensor?] {
        guard need[0] else { return [nil] }
        var inv = [Int](repeating: 0, count: perm.count)
        for (i, p) in perm.enumerated() { inv[p] = i }
        return [TransposeOp.permute(dy, inv)]
    }
}

/// Pads every axis by `begin`/`end` elements: a constant, the mirror image (reflect, the edge
/// not repeated) or the edge value.
final class PadOp: GraphOp {
    let begin: [Int], end: [Int], mode: String, value: Float
    var inShape: [Int] = []
    init(begin: [Int], end: [Int], mode: String, value: Float) { self.begin = begin; self.end = end; self.mode = mode; self.value = value }
    func outputShape(_ i: [[Int]]) throws -> [Int] {
        let s = i[0]
        guard s.count == begin.count else { throw TLError.data("pads for rank \(begin.count), input of rank \(s.count)") }
        if mode == "reflect" {
            for d in 0..<s.count where begin[d] >= s[d] || end[d] >= s[d] { throw TLError.data("reflect pads must be smaller than the size of axis \(d)") }
        }
        return (0..<s.count).map { s[$0] + begin[$0] + end[$0] }
    }
    /// The input index an output index along one axis reads, or nil (the constant).
    @inline(__always) func source(_ o: Int, _ d: Int, _ n: Int) -> Int? {
        let i = o - begin[d]
        if i >= 0 && i < n { return i }
        switch mode {
        case "reflect": return i < 0 ? -i : 2 * (n - 1) - i
        case "edge": return i < 0 ? 0 : n - 1
        default: return nil
        }
    }
    func forward(_ i: [Tensor], _ ctx: Context) throws -> Tensor {
        let x = try Operand.dynamic(0).value(i), s = x.shape
        let out = try outputShape([s])
        let y = Tensor.f32(out, zero: false)
        var st = [Int](repeating: 1, count: s.count)
        for d in stride(from: s.count - 2, through: 0, by: -1) { st[d] = st[d + 1] * s[d + 1] }
        let total = y.count
        var idx = [Int](repeating: 0, count: out.count)
        for k in 0..<total {
            var off = 0, inside = true
            for d in 0..<out.count { if let j = source(idx[d], d, s[d]) { off += j * st[d] } else { inside = false; break } }
            y.f32[k] = inside ? x.f32[off] : value
            var d = out.count - 1
            while d >= 0 { idx[d] += 1; if idx[d] < out[d] { break }; idx[d] = 0; d -= 1 }
        }
        if ctx.training { inShape = s }
        return y
    }
    func backward(_ dy: Tensor, need: [Bool], _ ctx: Context) -> [Tensor?] {
        guard need[0] else { return [nil] }
        let s = inShape, out = dy.shape, dx = Tensor.f32(s)
        var st = [Int](repeating: 1, count: s.count)
        for d in stride(from: s.count - 2, through: 0, by: -1) { st[d] = st[d + 1] * s[d + 1] }
        var idx = [Int](repeating: 0, count: out.count)
        for k in 0..<dy.count {
            var off = 0, inside = true
            for d in 0..<out.count { if let j = source(idx[d], d, s[d]) { off += j * st[d] } else { inside = false; break } }
            if inside { dx.f32[off] += dy.f32[k] }
            var d = out.count - 1
            while d >= 0 { idx[d] += 1; if idx[d] < out[d] { break }; idx[d] = 0; d -= 1 }
        }
        return [dx]
    }
}

/// Softmax or log-softmax along an axis (or, before opset 13, over everything from `axis` on).
final class SoftmaxOp: GraphOp {
    let axis: Int, log: Bool, coerce: Bool
    var y: Tensor?
    init(axis: Int, log: Bool, coerce: Bool) { self.axis = axis; self.log = log; self.coerce = coerce }
    func outputShape(_ i: [[Int]]) throws -> [Int] { _ = try layout(i[0]); return i[0] }
    /// (outer, size along the softmax, inner stride).
    func layout(_ s: [Int]) throws -> (Int, Int, Int) {
        let a = axis < 0 ? axis + s.count : axis
        guard a >= 0 && a < max(s.count, 1) else { throw TLError.data("axis \(axis) is outside \(s.count) dimensions") }
        if coerce { return (s[..<a].reduce(1, *), s[a...].reduce(1, *), 1) }
        return (s[..<a].reduce(1, *), s[a], s[(a + 1)...].reduce(1, *))
    }
    func forward(_ i: [Tensor], _ ctx: Context) throws -> Tensor {
        let x = try Operand.dynamic(0).value(i)
        let (outer, n, inner) = try layout(x.shape)
        let y = Tensor.f32(x.shape, zero: false)
        for o in 0..<outer {
            for q in 0..<inner {
                let base = o * n * inner + q
                var m = -Float.infinity
                for k in 0..<n { m = max(m, x.f32[base + k * inner]) }
                var sum: Float = 0
                for k in 0..<n { let e = expf(x.f32[base + k * inner] - m); y.f32[base + k * inner] = e; sum += e }
                if log { let ls = logf(sum); for k in 0..<n { y.f32[base + k * inner] = x.f32[base + k * inner] - m - ls } }
                else { for k in 0..<n { y.f32[base + k * inner] /= sum } }
            }
        }
        if ctx.training { self.y = y }
        return y
    }
    func backward(_ dy: Tensor, need: [Bool], _ ctx: Context) -> [Tensor?] {
        guard need[0], let y = y else { return [nil] }
        let (outer, n, inner) = try! layout(y.shape)
        let dx = Tensor.f32(y.shape, zero: false)
        for o in 0..<outer {
            for q in 0..<inner {
                let base = o * n * inner + q
                var s: Float = 0
                if log {   // dx = dy − softmax · Σdy
                    for k in 0..<n { s += dy.f32[base + k * inner] }
                    for k in 0..<n { let j = base + k * inner; dx.f32[j] = dy.f32[j] - expf(y.f32[j]) * s }
                } else {   // dx = y ⊙ (dy − Σ dy⊙y)
                    for k in 0..<n { let j = base + k * inner; s += dy.f32[j] * y.f32[j] }
                    for k in 0..<n { let j = base + k * inner; dx.f32[j] = y.f32[j] * (dy.f32[j] - s) }
                }
            }
        }
        return [dx]
    }
}

/// The mean over some axes (all when nil), keeping them as size 1 or dropping them.
final class ReduceMeanOp: GraphOp {
    let axes: [Int]?, keepDims: Bool
    var inShape: [Int] = []
    init(axes: [Int]?, keepDims: Bool) { self.axes = axes; self.keepDims = keepDims }
    func reduced(_ s: [Int]) throws -> Set<Int> {
        guard let ax = axes, !ax.isEmpty else { return Set(0..<s.count) }
        return Set(try ax.map { a in
            let b = a < 0 ? a + s.count : a
            guard b >= 0 && b < s.count else { throw TLError.data("axis \(a) is outside \(s.count) dimensions") }
            return b
        })
    }
    func kept(_ s: [Int]) throws -> [Int] { let r = try reduced(s); return s.enumerated().map { r.contains($0.offset) ? 1 : $0.element } }
    func outputShape(_ i: [[Int]]) throws -> [Int] {
        let r = try reduced(i[0])
        return keepDims ? try kept(i[0]) : i[0].enumerated().filter { !r.contains($0.offset) }.map(\.element)
    }
    func forward(_ i: [Tensor], _ ctx: Context) throws -> Tensor {
        let x = try Operand.dynamic(0).value(i)
        let k = try kept(x.shape)
        let r = Broadcast.reduce(x, to: k)
        let scale = 1 / Float(max(x.count / max(r.count, 1), 1))
        for q in 0..<r.count { r.f32[q] *= scale }
        if ctx.training { inShape = x.shape }
        return r.reshaped(try outputShape([x.shape]))
    }
    func backward(_ dy: Tensor, need: [Bool], _ ctx: Context) -> [Tensor?] {
        guard need[0] else { return [nil] }
        let k = try! kept(inShape), d = dy.reshaped(k)
        let dx = Tensor.f32(inShape, zero: false), scale = 1 / Float(max(dx.count / max(d.count, 1), 1))
        let st = Broadcast.strides(k, inShape)
        Broadcast.runs(inShape, [st]) { o, xo, len, s in for t in 0..<len { dx.f32[xo + t] = d.f32[o[0] + t * s[0]] * scale } }
        return [dx]
    }
}

/// Global average or max pooling that keeps the spatial axes: [N, C, H, W] → [N, C, 1, 1].
final class GlobalPoolOp: GraphOp {
    let max: Bool
    var x: Tensor?
    init(max: Bool) { self.max = max }
    func outputShape(_ i: [[Int]]) throws -> [Int] {
        guard i[0].count == 4 else { throw TLError.data("expects [N, C, H, W], got \(shapeString(i[0]))") }
        return [i[0][0], i[0][1], 1, 1]
    }
    func forward(_ i: [Tensor], _ ctx: Context) throws -> Tensor {
        let x = try Operand.dynamic(0).value(i)
        let o = try outputShape([x.shape]), planes = o[0] * o[1], size = x.shape[2] * x.shape[3]
        let y = Tensor.f32(o, zero: false)
        if max {
            for p in 0..<planes {
                var m = -Float.infinity
                for q in 0..<size { let v = x.f32[p * size + q]; if v > m || v.isNaN { m = v } }
                y.f32[p] = m
            }
        } else {
            Pool.globalAvgForward(planes: planes, size: size, x: x.f32, y: y.f32)
        }
        if ctx.training { self.x = x }
        return y
    }
    func backward(_ dy: Tensor, need: [Bool], _ ctx: Context) -> [Tensor?] {
        guard need[0], let x = x else { return [nil] }
        let planes = x.shape[0] * x.shape[1], size = x.shape[2] * x.shape[3]
        let dx = Tensor.f32(x.shape)
        if max {
            for p in 0..<planes {
                var at = 0
                for q in 1..<Swift.max(size, 1) where x.f32[p * size + q] > x.f32[p * size + at] { at = q }
                dx.f32[p * size + at] = dy.f32[p]
            }
        } else {
            Pool.globalAvgBackward(planes: planes, size: size, dy: dy.f32, dx: dx.f32)
        }
        return [dx]
    }
}

/// Y = α·op(A)·op(B) + β·C in general (C broadcast to [M, N]); the usual Gemm is a Linear layer.
final class GemmOp: GraphOp, SharingParameters {
    var a: Operand, b: Operand, c: Operand?
    func share(_ p: (Parameter) -> Parameter, _ b: (String, Tensor) -> Tensor) { a = a.shared(p); self.b = self.b.shared(p); c = c?.shared(p) }
    let transA: Bool, transB: Bool, alpha: Float, beta: Float
    var cached: (Tensor, Tensor)?
    var cShape: [Int] = []
    init(_ o: [Operand], transA: Bool, transB: Bool, alpha: Float, beta: Float) {
        a = o[0]; b = o[1]; c = o.count > 2 ? o[2] : nil
        self.transA = transA; self.transB = transB; self.alpha = alpha; self.beta = beta
    }
    var parameters: [Parameter] { [a.parameter, b.parameter, c?.parameter].compactMap { $0 } }
    func dims(_ sa: [Int], _ sb: [Int]) throws -> (Int, Int, Int) {
        guard sa.count == 2, sb.count == 2 else { throw TLError.data("Gemm of \(shapeString(sa)) and \(shapeString(sb)): both must be 2-D") }
        let (m, k) = transA ? (sa[1], sa[0]) : (sa[0], sa[1]), (k2, n) = transB ? (sb[1], sb[0]) : (sb[0], sb[1])
        guard k == k2 else { throw TLError.data("Gemm of \(shapeString(sa)) and \(shapeString(sb)): inner sizes differ") }
        return (m, k, n)
    }
    func outputShape(_ i: [[Int]]) throws -> [Int] {
        let (m, _, n) = try dims(a.shape(i), b.shape(i))
        if let c = c { guard try Broadcast.shape(c.shape(i), [m, n]) == [m, n] else { throw TLError.data("C does not broadcast to \([m, n])") } }
        return [m, n]
    }
    func forward(_ i: [Tensor], _ ctx: Context) throws -> Tensor {
        let x = try a.value(i), w = try b.value(i)
        let (m, k, n) = try dims(x.shape, w.shape)
        let y = Tensor.f32([m, n])
        if let c = c {
            let ct = try c.value(i)
            cShape = ct.shape
            let st = Broadcast.strides(ct.shape, [m, n])
            Broadcast.runs([m, n], [st]) { o, yo, len, s in for t in 0..<len { y.f32[yo + t] = beta * ct.f32[o[0] + t * s[0]] } }
        }
        GEMM.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: x.f32, lda: x.shape[1], b: w.f32, ldb: w.shape[1],
                   beta: c == nil ? 0 : 1, c: y.f32, ldc: n, threads: ctx.threads)
        if ctx.training { cached = (x, w) }
        return y
    }
    func backward(_ dy: Tensor, need: [Bool], _ ctx: Context) -> [Tensor?] {
        guard let (x, w) = cached else { preconditionFailure("Gemm: backward without a training forward") }
        let (m, k, n) = try! dims(x.shape, w.shape)
        var res: [Tensor?] = need.map { _ in nil }
        func store(_ o: Operand?, _ g: Tensor) {
            switch o {
            case .dynamic(let i)?: res[i] = g
            case .parameter(let p)?: for q in 0..<p.count { p.g[q] += g.f32[q] }
            default: break
            }
        }
        func wanted(_ o: Operand?) -> Bool {
            switch o { case .dynamic(let i)?: return need[i]; case .parameter(let p)?: return !p.frozen; default: return false }
        }
        if wanted(a) {   // d op(A) = α·dY·op(B)ᵀ, then transposed back when transA
            let g = Tensor.f32(x.shape)
            if transA { GEMM.sgemm(transA: transB, transB: true, m: k, n: m, k: n, alpha: alpha, a: w.f32, lda: w.shape[1], b: dy.f32, ldb: n, beta: 0, c: g.f32, ldc: m, threads: ctx.threads) }
            else { GEMM.sgemm(transA: false, transB: !transB, m: m, n: k, k: n, alpha: alpha, a: dy.f32, lda: n, b: w.f32, ldb: w.shape[1], beta: 0, c: g.f32, ldc: k, threads: ctx.threads) }
            store(a, g)
        }
        if wanted(b) {   // d op(B) = α·op(A)ᵀ·dY, then transposed back when transB
            let g = Tensor.f32(w.shape)
            if transB { GEMM.sgemm(transA: true, transB: transA, m: n, n: k, k: m, alpha: alpha, a: dy.f32, lda: n, b: x.f32, ldb: x.shape[1], beta: 0, c: g.f32, ldc: k, threads: ctx.threads) }
            else { GEMM.sgemm(transA: !transA, transB: false, m: k, n: n, k: m, alpha: alpha, a: x.f32, lda: x.shape[1], b: dy.f32, ldb: n, beta: 0, c: g.f32, ldc: n, threads: ctx.threads) }
            store(b, g)
        }
        if let c = c, wanted(c) {
            let g = Broadcast.reduce(dy, to: cShape)
            for q in 0..<g.count { g.f32[q] *= beta }
            store(c, g)
        }
        return res
    }
}
