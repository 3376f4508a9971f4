import TLCore

/// ONNX model → tl graph: constants folded, the Shape→Gather→Unsqueeze→Concat→Reshape chains
/// exporters emit for `x.view(x.size(0), -1)` reduced to a plain reshape that keeps the batch
/// axis, nodes named after their PyTorch modules where the weights tell (`conv1`, so parameters
/// keep the state-dict names `conv1.weight`), and every other name kept as an alias.
public enum ONNXImport {
    /// Opsets tl reads: 9-21 and newer as ONNX defines its operators there, and 6-8, where the
    /// operators tl imports mean the same (ONNX Runtime runs those too; the one difference that
    /// matters, BatchNormalization with spatial = 0, is refused).
    public static let opsets = 6...25

    public struct Result {
        public var spec: GraphSpec
        public var tensors: [String: Tensor]
        /// Full input shapes (batch axis first; 1 where the model leaves it symbolic).
        public var inputShapes: [[Int]]
        /// Whether each input's first axis is symbolic (a batch of any size).
        public var batched: [Bool]
    }

    /// An integer value known at import time, or the batch size (not known until run time).
    enum Sym: Equatable { case int(Int), batch }

    /// Converts `model`. `primary` names the output that becomes the network's output (default:
    /// the last graph output).
    public static func convert(_ model: ONNX.Model, primary: String? = nil) throws -> Result {
        guard opsets.contains(model.opset) else {
            throw TLError.data("onnx: opset \(model.opset) is outside the opsets tl reads (\(opsets.lowerBound)-\(opsets.upperBound))")
        }
        let g = model.graph
        var consts = g.initializers                   // name -> tensor
        var syms: [String: [Sym]] = [:]               // shape-valued integer tensors with the batch symbolic
        var rename: [String: String] = [:]            // ONNX value name -> tl value name
        var shapes: [String: [Int]] = [:]             // full shapes of dynamic values, batch as 1
        var nodes: [GraphSpec.Node] = []
        var aliases: [String: String] = [:]
        var tensors: [String: Tensor] = [:]
        var used = Set<String>()

        // Inputs: graph inputs that are not initializers (IR < 4 lists those too).
        let inputs = g.inputs.filter { consts[$0.name] == nil }
        guard !inputs.isEmpty else { throw TLError.data("onnx: the graph has no input") }
        var inputShapes: [[Int]] = [], batched: [Bool] = []
        var specInputs: [String] = []
        for v in inputs {
            guard v.elemType == 1 || v.elemType == 0 else {
                throw TLError.data("onnx: input '\(v.name)' is \(ONNX.dtype(v.elemType)?.shortName ?? "type \(v.elemType)"); tl runs float32 graphs")
            }
            guard let dims = v.dims, !dims.isEmpty else { throw TLError.data("onnx: input '\(v.name)' does not declare its shape") }
            var s: [Int] = []
            for (i, d) in dims.enumerated() {
                switch d {
                case .value(let n): s.append(n)
                case .param, .unknown:
                    guard i == 0 else { throw TLError.data("onnx: input '\(v.name)' has an unknown size in axis \(i); only the batch axis (0) may vary") }
                    s.append(1)
                }
            }
            let b = { if case .value = dims[0] { return false }; return true }()
            let name = unique(clean(v.name), &used)
            rename[v.name] = name
            shapes[name] = s
            inputShapes.append(s); batched.append(b); specInputs.append(name)
        }

        // Which ONNX values are used, and by how many nodes (to tell single-consumer chains).
        func tensorOf(_ name: String) -> Tensor? { consts[name] }
        func symbolic(_ name: String) -> [Sym]? {
            if let s = syms[name] { return s }
            if let t = consts[name], !t.dtype.isFloat, t.rank <= 1 { return (0..<t.count).map { .int(Int(t.int64(at: $0) ?? 0)) } }
            return nil
        }
        func symTensor(_ v: [Sym]) -> Tensor? {
            guard v.allSatisfy({ if case .int = $0 { return true }; return false }) else { return nil }
            return Tensor(v.map { if case .int(let x) = $0 { return Int64(x) }; return 0 }, shape: [v.count])
        }

        for (ni, n) in g.nodes.enumerated() {
            let loc = "node \(ni) '\(n.name)' (\(n.opType))"
            try annotating(file: nil, location: loc) {
                guard n.domain == "" || n.domain == "ai.onnx" else { throw TLError.data("operator domain '\(n.domain)' is not supported") }
                for (k, v) in n.attributes { if case .graph = v { throw TLError.data("attribute '\(k)' holds a subgraph, which tl does not run") } }
                let out = n.outputs.first ?? ""
                // --- folding: constants and shape arithmetic ---
                switch n.opType {
                case "Constant":
                    if let t = n.attributes["value"]?.tensor { consts[out] = t }
                    else if let f = n.attributes["value_float"]?.float { consts[out] = Tensor([f], shape: []) }
                    else if let f = n.attributes["value_floats"]?.floats { consts[out] = Tensor(f) }
                    else if let i = n.attributes["value_int"]?.int { consts[out] = Tensor([Int64(i)], shape: []) }
                    else if let i = n.attributes["value_ints"]?.ints { consts[out] = Tensor(i.map { Int64($0) }) }
                    else { throw TLError.data("a Constant without a value tl reads") }
                    return
                case "Shape":
                    guard let src = rename[n.inputs[0]].flatMap({ shapes[$0] }) else { break }
                    var s: [Sym] = src.enumerated().map { $0.offset == 0 && batchedValue(n.inputs[0]) ? .batch : .int($0.element) }
                    let r = s.count
                    let start = n.attributes["start"]?.int ?? 0, end = n.attributes["end"]?.int ?? r
                    let a = max(0, min(r, start < 0 ? start + r : start)), b = max(a, min(r, end < 0 ? end + r : end))
                    s = Array(s[a..<b])
                    syms[out] = s
                    if let t = symTensor(s) { consts[out] = t }
                    return
                case "Gather" where symbolic(n.inputs[0]) != nil:
                    guard let data = symbolic(n.inputs[0]), let idx = consts[n.inputs[1]], (n.attributes["axis"]?.int ?? 0) == 0 else { break }
                    let v = try (0..<idx.count).map { k -> Sym in
                        var i = Int(idx.int64(at: k) ?? 0)
                        if i < 0 { i += data.count }
                        guard i >= 0 && i < data.count else { throw TLError.data("Gather index \(i) out of range") }
                        return data[i]
                    }
                    syms[out] = v
                    if let t = symTensor(v) { consts[out] = idx.rank == 0 ? t.reshaped([]) : t }
                    return
                case "Unsqueeze", "Squeeze", "Cast", "Identity":
                    // Shape values pass through these unchanged (a 1-D list stays a list).
                    guard syms[n.inputs[0]] != nil, let v = symbolic(n.inputs[0]) else { break }
                    syms[out] = v
                    if let t = symTensor(v) { consts[out] = t }
                    return
                case "Concat" where n.inputs.allSatisfy({ symbolic($0) != nil }) && n.inputs.contains(where: { syms[$0] != nil }):
                    let v = n.inputs.flatMap { symbolic($0)! }
                    syms[out] = v
                    if let t = symTensor(v) { consts[out] = t }
                    return
                case "Reshape" where syms[n.inputs[1]] != nil:
                    // A target with the batch symbol: the batch stays in axis 0 (ONNX's 0 = copy).
                    let v = syms[n.inputs[1]]!
                    for (i, s) in v.enumerated() where s == .batch && i != 0 { throw TLError.data("a reshape moves the batch axis to axis \(i)") }
                    let name = "\(clean(out)).shape"
                    consts[name] = Tensor(v.map { if case .int(let x) = $0 { return Int64(x) }; return 0 }, shape: [v.count])
                    var m = n
                    m.inputs[1] = name
                    try emit(m)
                    return
                default: break
                }
                // A node whose inputs are all constants is computed once, at import (small
                // shape arithmetic, mostly).
                if !n.inputs.isEmpty, n.inputs.allSatisfy({ $0.isEmpty || consts[$0] != nil }), n.opType != "Constant" {
                    if let folded = try fold(n, consts) { consts[out] = folded; return }
                }
                try emit(n)
            }
        }

        /// Whether axis 0 of an ONNX value is the batch (every computed value; constants not).
        func batchedValue(_ v: String) -> Bool {
            guard let r = rename[v], let i = specInputs.firstIndex(of: r) else { return rename[v] != nil && batched.first == true }
            return batched[i]
        }

        func emit(_ original: ONNX.Node) throws {
            let n = try canonical(original, &consts, shapes: { rename[$0].flatMap { shapes[$0] } })
            guard GraphOps.supported.contains(n.opType) else {
                throw TLError.data("operator \(n.opType) is not supported (tl imports: \(GraphOps.supported.sorted().joined(separator: ", ")))")
            }
            // Extra outputs (MaxPool's indices, Dropout's mask, BatchNormalization's statistics)
            // may exist but not be used.
            let extra = Set(n.outputs.dropFirst().filter { !$0.isEmpty })
            if !extra.isEmpty, g.nodes.contains(where: { m in m.inputs.contains(where: extra.contains) }) || g.outputs.contains(where: { extra.contains($0.name) }) {
                throw TLError.data("uses a second output of \(n.opType), which tl does not compute")
            }
            var inputs: [String] = []
            for i in n.inputs {
                if i.isEmpty { inputs.append(""); continue }
                if let r = rename[i] { inputs.append(r); continue }
                if let t = consts[i] {
                    let name = consts[i] != nil && g.initializers[i] != nil ? i : clean(i)
                    tensors[name] = t
                    inputs.append(name); continue
                }
                throw TLError.data("reads '\(i)', which no earlier node computes")
            }
            // The node's name: its PyTorch module (from a "X.weight" parameter), else the ONNX name.
            var base = ""
            if let w = n.inputs.dropFirst().first(where: { $0.hasSuffix(".weight") && g.initializers[$0] != nil }) { base = String(w.dropLast(7)) }
            if base.isEmpty || used.contains(base) { base = clean(n.name.isEmpty ? (n.outputs.first ?? n.opType) : n.name) }
            let name = unique(base, &used)
            var attrs: [String: JSON] = [:]
            for (k, v) in n.attributes { attrs[k] = try json(v, k) }
            if (n.opType == "Softmax" || n.opType == "LogSoftmax") && model.opset < 13 { attrs["coerce"] = 1 }
            let node = GraphSpec.Node(name: name, op: n.opType, inputs: inputs, attrs: attrs)
            // Shape inference as we go (Shape nodes downstream need it).
            let dyn = inputs.filter { !$0.isEmpty && tensors[$0] == nil }
            let op = try GraphOps.make(node, tensors: tensors, inputShapes: dyn.map { shapes[$0]! })
            shapes[name] = try op.outputShape(dyn.map { shapes[$0]! })
            nodes.append(node)
            if let o = n.outputs.first { rename[o] = name; if o != name { aliases[o] = name } }
            if !n.name.isEmpty && n.name != name { aliases[n.name] = name }
        }

        var outputs: [String] = []
        for o in g.outputs {
            guard let r = rename[o.name] else {
                throw TLError.data("onnx: output '\(o.name)' is a constant or an input, not computed by the graph")
            }
            outputs.append(r)
        }
        if let p = primary {
            guard let r = rename[p] ?? (outputs.contains(p) ? p : nil) else {
                throw TLError.usage("the model has no output '\(p)' (its outputs: \(g.outputs.map(\.name).joined(separator: ", ")))")
            }
            outputs.removeAll { $0 == r }
            outputs.insert(r, at: 0)
        } else if outputs.count > 1 {
            outputs.insert(outputs.removeLast(), at: 0)
        }
        // Short aliases by op type and count (conv1, relu3, gemm1), where free.
        var counts: [String: Int] = [:]
        for n in nodes {
            let k = n.op.lowercased()
            counts[k, default: 0] += 1
            let alias = "\(k)\(counts[k]!)"
            if !used.contains(alias) && aliases[alias] == nil && tensors[alias] == nil { aliases[alias] = n.name }
        }
        let spec = GraphSpec(inputs: specInputs, outputs: outputs, nodes: nodes, aliases: aliases)
        return Result(spec: spec, tensors: tensors, inputShapes: inputShapes, batched: batched)
    }

    /// Rewrites a fully connected layer into the one form tl keeps, Gemm(x, W, b) with W
    /// [out, in], b [out], transB = 1, α = β = 1: MatMul by a constant matrix, and Gemm with
    /// W stored [in, out] or α, β ≠ 1 (folded into the constants). New constants are named
    /// after the old ones.
    static func canonical(_ n: ONNX.Node, _ consts: inout [String: Tensor], shapes: (String) -> [Int]?) throws -> ONNX.Node {
        func f32(_ t: Tensor) throws -> Tensor { try t.converted(to: .f32).copy() }
        switch n.opType {
        case "MatMul":
            guard n.inputs.count == 2, let x = shapes(n.inputs[0]), x.count == 2, let w = consts[n.inputs[1]], w.rank == 2, w.dtype.isFloat else { return n }
            let name = n.inputs[1] + ".T"
            consts[name] = GraphOps.transpose2D(try f32(w))
            var m = n
            m.opType = "Gemm"; m.inputs = [n.inputs[0], name]; m.attributes = ["transB": .int(1)]
            return m
        case "Gemm":
            let transA = n.attributes["transA"]?.int ?? 0, transB = n.attributes["transB"]?.int ?? 0
            let alpha = n.attributes["alpha"]?.float ?? 1, beta = n.attributes["beta"]?.float ?? 1
            guard transA == 0, n.inputs.count >= 2, let w = consts[n.inputs[1]], w.rank == 2, w.dtype.isFloat else { return n }
            let out = transB == 1 ? w.shape[0] : w.shape[1]
            var c: Tensor? = nil
            if n.inputs.count > 2, !n.inputs[2].isEmpty {
                guard let ct = consts[n.inputs[2]], ct.count == out || ct.count == 1, ct.dtype.isFloat else { return n }
                c = ct
            }
            if transB == 1 && alpha == 1 && beta == 1 && (c == nil || (c!.rank == 1 && c!.count == out)) { return n }
            var m = n
            let wt = transB == 1 ? try f32(w) : GraphOps.transpose2D(try f32(w))
            if alpha != 1 { for i in 0..<wt.count { wt.f32[i] *= alpha } }
            if transB == 0 { m.inputs[1] = n.inputs[1] + ".T" }
            consts[m.inputs[1]] = wt
            if let ct = c {
                let cf = try f32(ct), b = try Tensor(zeros: .f32, shape: [out])
                for j in 0..<out { b.f32[j] = beta * cf.f32[ct.count == 1 ? 0 : j] }
                consts[n.inputs[2]] = b
            }
            m.attributes = ["transB": .int(1)]
            return m
        default:
            return n
        }
    }

    /// A name fit for tl: no leading "/", path separators as dots.
    static func clean(_ s: String) -> String {
        var t = s
        while t.hasPrefix("/") { t.removeFirst() }
        t = String(t.map { $0 == "/" || $0 == ":" ? "." : $0 })
        return t.isEmpty ? "value" : t
    }
    static func unique(_ base: String, _ used: inout Set<String>) -> String {
        var n = base, k = 2
        while used.contains(n) { n = "\(base)_\(k)"; k += 1 }
        used.insert(n)
        return n
    }

    static func json(_ a: ONNX.Attribute, _ k: String) throws -> JSON {
        switch a {
        case .int(let v): return .number(Double(v))
        case .ints(let v): return .array(v.map { .number(Double($0)) })
        case .float(let v): return .number(Double(v))
        case .floats(let v): return .array(v.map { .number(Double($0)) })
        case .string(let v): return .string(v)
        case .strings(let v): return .array(v.map { .string($0) })
        case .tensor(let t) where t.count <= 16:
            return .array((0..<t.count).map { .number(t.double(at: $0)) })
        case .tensor: throw TLError.data("attribute '\(k)' holds a tensor, which tl does not read here")
        case .graph: throw TLError.data("attribute '\(k)' holds a subgraph, which tl does not run")
        }
    }

    /// Computes a node on constant inputs: the integer and small float arithmetic of shape
    /// computations. nil when tl does not fold this op (it then runs as a node).
    static func fold(_ n: ONNX.Node, _ c: [String: Tensor]) throws -> Tensor? {
        let ins = n.inputs.map { $0.isEmpty ? nil : c[$0] }
        func ints(_ t: Tensor?) -> [Int64] { guard let t = t else { return [] }; return (0..<t.count).map { t.int64(at: $0) ?? Int64(t.double(at: $0)) } }
        switch n.opType {
        case "Identity", "Cast":
            guard let t = ins[0] else { return nil }
            if n.opType == "Cast", let to = n.attributes["to"]?.int, let dt = ONNX.dtype(to) { return try t.converted(to: dt) }
            return t
        case "Transpose":   // a constant weight stored the other way round (old PyTorch exports)
            guard let t = ins[0], t.dtype == .f32 else { return nil }
            let perm = n.attributes["perm"]?.ints ?? Array((0..<t.rank).reversed())
            guard perm.sorted() == Array(0..<t.rank) else { return nil }
            return TransposeOp.permute(t, perm).copy()
        case "Unsqueeze", "Squeeze":
            guard let t = ins[0] else { return nil }
            var axes = n.attributes["axes"]?.ints ?? []
            if ins.count > 1, let a = ins[1] { axes = ints(a).map { Int($0) } }
            return t.reshaped(try GraphOps.squeezeShape(t.shape, axes, squeeze: n.opType == "Squeeze"))
        case "Concat":
            let ts = ins.compactMap { $0 }
            guard ts.count == ins.count, let f = ts.first, f.rank <= 1, ts.allSatisfy({ $0.dtype == f.dtype }) else { return nil }
            return try Tensor.concatenate(ts.map { $0.rank == 0 ? $0.reshaped([1]) : $0 })
        case "Gather":
            guard let d = ins[0], let i = ins[1], d.rank == 1, (n.attributes["axis"]?.int ?? 0) == 0 else { return nil }
            let idx = ints(i).map { Int($0 < 0 ? $0 + Int64(d.count) : $0) }
            guard idx.allSatisfy({ $0 >= 0 && $0 < d.count }) else { throw TLError.data("Gather index out of range") }
            let g = try d.gathered(idx)
            return i.rank == 0 ? g.reshaped([]) : g
        case "Add", "Sub", "Mul", "Div":
            // Integer shape arithmetic only; float constants stay nodes (they may be weights).
            guard ins.count == 2, ins.allSatisfy({ $0 != nil && !$0!.dtype.isFloat && $0!.count == ins[0]!.count }) else { return nil }
            let a = ints(ins[0]), b = ints(ins[1])
            let r = zip(a, b).map { x, y -> Int64 in
                switch n.opType { case "Add": return x + y; case "Sub": return x - y; case "Mul": return x * y; default: return y == 0 ? 0 : x / y }
            }
            return Tensor(r, shape: ins[0]!.shape)
        default:
            return nil
        }
    }
}
