import TLCore

/// Writes a tl network as an ONNX model (opset 13, IR version 8) that any ONNX runtime runs
/// with the same outputs.
///
/// The graph takes `input`, float [N, ...input.shape] in the units the model was trained on
/// (0–255 for a model trained on u8 pixels), applies the model's input normalization (a Mul and
/// an Add per channel) and ends in `logits` [N, classes]. Every layer's output is named after
/// the layer (`conv1`, `relu3`, `block2`), parameters keep their names (`conv1.weight`) as
/// initializers, and dropout (the identity at inference) is left out.
public enum ONNXExport {
    public static let opset = 13

    public static func model(_ net: Network, producer: String, version: String) throws -> [UInt8] {
        var g = ONNXGraph()
        var x = "input"
        let spec = net.input
        if spec.scale != 1 || spec.mean.contains(where: { $0 != 0 }) || spec.std.contains(where: { $0 != 1 }) {
            // (raw·scale − mean) / std = raw·a + b per normalization group.
            let groups = max(spec.mean.count, spec.std.count)
            let a = (0..<groups).map { spec.scale / spec.std[spec.std.count == 1 ? 0 : $0] }
            let b = (0..<groups).map { -spec.mean[spec.mean.count == 1 ? 0 : $0] / spec.std[spec.std.count == 1 ? 0 : $0] }
            let shape = groups == 1 ? [1] : (spec.shape.count == 3 ? [1, groups, 1, 1] : [1, groups])
            let ca = g.constant("input.scale", Tensor(a, shape: shape)), cb = g.constant("input.shift", Tensor(b, shape: shape))
            g.node("Mul", [x, ca], "input.scaled", name: "input.mul")
            g.node("Add", ["input.scaled", cb], "input.normalized", name: "input.add")
            x = "input.normalized"
        }
        var extraOutputs: [(String, [Int])] = []
        if let gr = net.graph {
            x = try emitGraph(gr, x, &g)
            extraOutputs = gr.description.outputs.dropFirst().map { ($0, gr.sampleShape($0) ?? []) }
        } else {
            for l in net.sequential!.layers { x = try emit(l, x, &g) }
        }
        g.node("Identity", [x], "logits", name: "logits")

        var m = ProtoWriter()
        m.int(1, 8)                       // ir_version
        m.string(2, producer)             // producer_name
        m.string(3, version)              // producer_version
        m.message(8) { o in o.string(1, ""); o.int(2, Int64(opset)) }   // opset_import
        try m.message(7) { gp in          // graph
            for n in g.nodes { n.withUnsafeBytes { gp.bytes(1, $0) } }
            gp.string(2, "tl")
            for (name, t) in g.initializers { try tensorProto(&gp, field: 5, name: name, t) }
            valueInfo(&gp, field: 11, name: "input", dims: spec.shape)
            valueInfo(&gp, field: 12, name: "logits", dims: [net.classes.count])
            for (name, dims) in extraOutputs { valueInfo(&gp, field: 12, name: name, dims: dims) }
        }
        return m.bytes
    }

    /// A graph network's nodes, as they are (they came from ONNX), with the current values of
    /// its parameters, buffers and constants as initializers.
    static func emitGraph(_ gr: Graph, _ x: String, _ g: inout ONNXGraph) throws -> String {
        let spec = gr.description
        var tensors: [String: Tensor] = [:]
        for p in gr.parameters { tensors[p.name] = p.value }
        for (n, t) in gr.buffers { tensors[n] = t }
        for n in spec.nodes {
            let inputs = n.inputs.map { i -> String in
                if i == spec.input { return x }
                if let t = tensors[i] { return g.constant(i, t.dtype == .f32 ? t : t) }
                return i
            }
            var attrs: [(String, ONNXGraph.Attr)] = []
            for (k, v) in n.attrs.sorted(by: { $0.key < $1.key }) {
                if k == "coerce" {
                    // Opset < 13 softmax over everything from `axis` on: the same as opset 13's
                    // only when that is the last axis.
                    let r = gr.shapes[n.inputs[0]]?.count ?? 0, axis = n.attrs["axis"]?.int ?? 1
                    if v.int == 1 && !(axis == r - 1 || axis == -1) { throw TLError.data("node \(n.name): an opset < 13 \(n.op) over several axes has no opset 13 form") }
                    continue
                }
                switch v {
                case .number(let d): attrs.append((k, d.rounded() == d && !["alpha", "beta", "epsilon", "momentum", "value", "min", "max", "gamma", "ratio"].contains(k) ? .int(Int(d)) : .float(Float(d))))
                case .string(let s): attrs.append((k, .string(s)))
                case .array(let a):
                    if a.allSatisfy({ $0.int != nil }) { attrs.append((k, .ints(a.compactMap { $0.int }))) }
                    else { attrs.append((k, .floats(a.compactMap { $0.number.map { Float($0) } }))) }
                default: throw TLError.data("node \(n.name): attribute '\(k)' cannot be written to ONNX")
                }
            }
            g.node(n.op, inputs, n.name, name: n.name, attrs: attrs)
        }
        return spec.outputs[0]
    }

    /// Emits the nodes of layer `l` reading tensor `x`; returns the name of its output.
    static func emit(_ l: Layer, _ x: String, _ g: inout ONNXGraph) throws -> String {
        let out = l.name
        switch l {
        case let c as Conv2d:
            let k = c.shape
            let inputs = [x, g.parameter(c.weight)] + (c.bias.map { [g.parameter($0)] } ?? [])
            g.node("Conv", inputs, out, name: out, attrs: [
                ("kernel_shape", .ints([k.kh, k.kw])), ("strides", .ints([k.strideH, k.strideW])),
                ("pads", .ints([k.padTop, k.padLeft, k.padBottom, k.padRight])), ("dilations", .ints([k.dilationH, k.dilationW])),
                ("group", .int(c.groups))])
        case let f as Linear:
            g.node("Gemm", [x, g.parameter(f.weight)] + (f.bias.map { [g.parameter($0)] } ?? []), out, name: out, attrs: [("transB", .int(1))])
        case let p as Pool2d:
            let k = p.shape
            var attrs: [(String, ONNXGraph.Attr)] = [("kernel_shape", .ints([k.kh, k.kw])), ("strides", .ints([k.strideH, k.strideW])),
                                                     ("pads", .ints([k.padTop, k.padLeft, k.padBottom, k.padRight])), ("ceil_mode", .int(k.ceilMode ? 1 : 0))]
            if k.dilationH != 1 || k.dilationW != 1 { attrs.append(("dilations", .ints([k.dilationH, k.dilationW]))) }
            if p.kind == .avg { attrs.append(("count_include_pad", .int(k.countIncludePad ? 1 : 0))) }
            g.node(p.kind == .max ? "MaxPool" : "AveragePool", [x], out, name: out, attrs: attrs)
        case is GlobalAvgPool:
            g.node("GlobalAveragePool", [x], out + ".pooled", name: out + ".pool")
            g.node("Flatten", [out + ".pooled"], out, name: out, attrs: [("axis", .int(1))])
        case let f as Flatten:
            g.node("Flatten", [x], out, name: out, attrs: [("axis", .int(f.axis))])
        case let b as BatchNorm:
            g.node("BatchNormalization", [x, g.parameter(b.weight), g.parameter(b.bias), g.constant(b.name + ".running_mean", b.runningMean),
                                          g.constant(b.name + ".running_var", b.runningVar)], out, name: out,
                   attrs: [("epsilon", .float(b.eps))])
        case is Dropout:
            return x
        case let a as Activation:
            switch a.kind {
            case .relu: g.node("Relu", [x], out, name: out)
            case .leakyRelu(let s): g.node("LeakyRelu", [x], out, name: out, attrs: [("alpha", .float(s))])
            case .sigmoid: g.node("Sigmoid", [x], out, name: out)
            case .tanh: g.node("Tanh", [x], out, name: out)
            case .relu6:
                g.node("Clip", [x, g.constant("clip.min", Tensor([0] as [Float], shape: [])), g.constant("clip.max", Tensor([6] as [Float], shape: []))], out, name: out)
            case .clip(let lo, let hi):
                g.node("Clip", [x, g.constant(out + ".min", Tensor([lo], shape: [])), g.constant(out + ".max", Tensor([hi], shape: []))], out, name: out)
            case .hardSigmoid(let a, let b): g.node("HardSigmoid", [x], out, name: out, attrs: [("alpha", .float(a)), ("beta", .float(b))])
            case .hardSwish:  // opset 13 has no HardSwish: x · HardSigmoid(x; 1/6, ½)
                g.node("HardSigmoid", [x], out + ".gate", name: out + ".gate", attrs: [("alpha", .float(1.0 / 6)), ("beta", .float(0.5))])
                g.node("Mul", [x, out + ".gate"], out, name: out)
            case .elu(let a): g.node("Elu", [x], out, name: out, attrs: [("alpha", .float(a))])
            case .selu: g.node("Selu", [x], out, name: out)
            case .gelu:  // opset 13 has no Gelu: 0.5·x·(1 + erf(x/√2))
                let r2 = g.constant("gelu.sqrt2", Tensor([Float(2).squareRoot()], shape: [])), one = g.constant("gelu.one", Tensor([1] as [Float], shape: []))
                let half = g.constant("gelu.half", Tensor([0.5] as [Float], shape: []))
                g.node("Div", [x, r2], out + ".scaled", name: out + ".div")
                g.node("Erf", [out + ".scaled"], out + ".erf", name: out + ".erf")
                g.node("Add", [out + ".erf", one], out + ".cdf2", name: out + ".add")
                g.node("Mul", [x, out + ".cdf2"], out + ".prod", name: out + ".mul")
                g.node("Mul", [out + ".prod", half], out, name: out)
            }
        case let s as Sequential:
            return try s.layers.reduce(x) { try emit($1, $0, &g) }
        case let r as Residual:
            let a = try emit(r.body, x, &g)
            let b = try r.shortcut.map { try emit($0, x, &g) } ?? x
            g.node("Add", [a, b], r.postReLU ? out + ".sum" : out, name: out + ".add")
            if r.postReLU { g.node("Relu", [out + ".sum"], out, name: out) }
        default:
            throw TLError.data("layer \(l.name) (\(l.spec)) has no ONNX form")
        }
        return out
    }

    /// ONNX TensorProto data type codes of tl's dtypes.
    static let dataTypes: [DType: Int64] = [.f32: 1, .u8: 2, .i8: 3, .u16: 4, .i16: 5, .i32: 6, .i64: 7, .bool: 9, .f16: 10, .f64: 11,
                                            .u32: 12, .u64: 13, .bf16: 16]

    static func tensorProto(_ w: inout ProtoWriter, field: Int, name: String, _ t: Tensor) throws {
        guard let code = dataTypes[t.dtype] else { throw TLError.data("tensor '\(name)' is \(t.dtype.shortName), which ONNX cannot hold") }
        w.message(field) { p in
            p.packed(1, t.shape.map { Int64($0) })   // dims
            p.int(2, code)                           // data_type
            p.string(8, name)
            p.bytes(9, t.rawBytes)                   // raw_data, little-endian
        }
    }

    /// A float tensor's name, element type and shape with a symbolic batch axis N.
    static func valueInfo(_ w: inout ProtoWriter, field: Int, name: String, dims: [Int]) {
        w.message(field) { v in
            v.string(1, name)
            v.message(2) { tp in tp.message(1) { tt in
                tt.int(1, 1)
                tt.message(2) { sh in
                    sh.message(1) { d in d.string(2, "N") }
                    for n in dims { sh.message(1) { d in d.int(1, Int64(n)) } }
                }
            } }
        }
    }
}

/// Nodes and initializers of an ONNX graph under construction.
struct ONNXGraph {
    enum Attr { case int(Int), ints([Int]), float(Float), floats([Float]), string(String) }
    var nodes: [[UInt8]] = []
    var initializers: [(String, Tensor)] = []
    var names = Set<String>()

    mutating func node(_ op: String, _ inputs: [String], _ output: String, name: String, attrs: [(String, Attr)] = []) {
        var n = ProtoWriter()
        for i in inputs { n.string(1, i) }
        n.string(2, output)
        n.string(3, name)
        n.string(4, op)
        for (k, a) in attrs {
            n.message(5) { p in
                p.string(1, k)
                switch a {
                case .int(let v): p.int(3, Int64(v)); p.int(20, 2)
                case .ints(let v): p.packed(8, v.map { Int64($0) }); p.int(20, 7)
                case .float(let v): p.float(2, v); p.int(20, 1)
                case .floats(let v): p.packed(7, v); p.int(20, 6)
                case .string(let v): p.string(4, v); p.int(20, 3)
                }
            }
        }
        nodes.append(n.bytes)
    }
    mutating func parameter(_ p: Parameter) -> String { constant(p.name, p.value) }
    /// An initializer (once per name).
    mutating func constant(_ name: String, _ t: Tensor) -> String {
        if names.insert(name).inserted { initializers.append((name, t)) }
        return name
    }
}
