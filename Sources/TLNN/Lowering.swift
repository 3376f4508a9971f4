import TLCore

/// A stack of layers written as graph nodes: the same layers (each node builds the tl layer it
/// came from), the same names and the same parameter names, so the graph computes what the
/// stack computes. Fine-tuning lowers a stack to build networks around it: several heads on
/// one trunk, a second column beside a frozen first.
public enum Lowering {
    public struct Result {
        public var nodes: [GraphSpec.Node] = []
        /// Parameters, buffers and constants by name (copies: the graph owns its values).
        public var tensors: [String: Tensor] = [:]
        /// The value the last layer writes.
        public var output = ""
        /// For every top-level layer, in order: its name (prefixed) and the value it reads.
        public var layerInputs: [(String, String)] = []
    }

    /// Nodes for `layers` reading value `x`; every node name gets `prefix` ("source." for the
    /// first column of a progressive network), every tensor name `tensorPrefix` (by default the
    /// same; a middle shared by several inputs keeps one set of tensors for its copies).
    public static func lower(_ layers: [Layer], from x: String, prefix: String = "", tensorPrefix: String? = nil) throws -> Result {
        var r = Result()
        var v = x
        let tp = tensorPrefix ?? prefix
        for l in layers {
            r.layerInputs.append((prefix + l.name, v))
            v = try emit(l, v, prefix, tp, &r)
        }
        r.output = v
        return r
    }

    /// A stack network as a graph network: the same numbers, one node per layer (a residual
    /// block becomes its layers, an addition and a ReLU).
    public static func graphNetwork(_ net: Network) throws -> Network {
        if net.graph != nil { return net }
        let r = try lower(net.sequential!.layers, from: "input")
        let spec = GraphSpec(inputs: ["input"], outputs: [r.output], nodes: r.nodes)
        let g = try Network(graph: spec, tensors: r.tensors, input: net.input, classes: net.classes)
        g.meta = net.meta
        return g
    }

    static func emit(_ l: Layer, _ x: String, _ prefix: String, _ tprefix: String, _ r: inout Result) throws -> String {
        let out = prefix + l.name
        func node(_ op: String, _ inputs: [String], _ name: String = out, _ attrs: [String: JSON] = [:]) {
            r.nodes.append(GraphSpec.Node(name: name, op: op, inputs: inputs, attrs: attrs))
        }
        func tensor(_ name: String, _ t: Tensor) -> String {
            r.tensors[tprefix + name] = t.copy()
            return tprefix + name
        }
        func ints(_ v: [Int]) -> JSON { .array(v.map { .number(Double($0)) }) }
        switch l {
        case let c as Conv2d:
            let k = c.shape
            node("Conv", [x, tensor(c.weight.name, c.weight.value)] + (c.bias.map { [tensor($0.name, $0.value)] } ?? []), out,
                 ["kernel_shape": ints([k.kh, k.kw]), "strides": ints([k.strideH, k.strideW]), "dilations": ints([k.dilationH, k.dilationW]),
                  "pads": ints([k.padTop, k.padLeft, k.padBottom, k.padRight]), "group": .number(Double(c.groups))])
        case let f as Linear:
            node("Gemm", [x, tensor(f.weight.name, f.weight.value)] + (f.bias.map { [tensor($0.name, $0.value)] } ?? []), out, ["transB": 1])
        case let p as Pool2d:
            let k = p.shape
            var attrs: [String: JSON] = ["kernel_shape": ints([k.kh, k.kw]), "strides": ints([k.strideH, k.strideW]),
                                         "pads": ints([k.padTop, k.padLeft, k.padBottom, k.padRight]), "ceil_mode": .number(k.ceilMode ? 1 : 0),
                                         "dilations": ints([k.dilationH, k.dilationW])]
            if p.kind == .avg { attrs["count_include_pad"] = .number(k.countIncludePad ? 1 : 0) }
            node(p.kind == .max ? "MaxPool" : "AveragePool", [x], out, attrs)
        case is GlobalAvgPool:
            node("GlobalAveragePool", [x], out + ".pool")
            node("Flatten", [out + ".pool"], out, ["axis": 1])
        case let f as Flatten:
            node("Flatten", [x], out, ["axis": .number(Double(f.axis))])
        case let b as BatchNorm:
            node("BatchNormalization", [x, tensor(b.weight.name, b.weight.value), tensor(b.bias.name, b.bias.value),
                                        tensor(b.bufferNames.0, b.runningMean), tensor(b.bufferNames.1, b.runningVar)], out,
                 ["epsilon": .number(Double(b.eps)), "momentum": .number(Double(1 - b.momentum))])
        case let d as Dropout:
            node("Dropout", [x, tensor(l.name + ".ratio", Tensor([d.p], shape: []))])
        case let a as Activation:
            switch a.kind {
            case .relu: node("Relu", [x])
            case .leakyRelu(let s): node("LeakyRelu", [x], out, ["alpha": .number(Double(s))])
            case .sigmoid: node("Sigmoid", [x])
            case .tanh: node("Tanh", [x])
            case .gelu: node("Gelu", [x])
            case .relu6: node("Clip", [x, tensor(l.name + ".min", Tensor([0] as [Float], shape: [])), tensor(l.name + ".max", Tensor([6] as [Float], shape: []))])
            case .clip(let lo, let hi): node("Clip", [x, tensor(l.name + ".min", Tensor([lo], shape: [])), tensor(l.name + ".max", Tensor([hi], shape: []))])
            case .hardSigmoid(let al, let be): node("HardSigmoid", [x], out, ["alpha": .number(Double(al)), "beta": .number(Double(be))])
            case .hardSwish: node("HardSwish", [x])
            case .elu(let al): node("Elu", [x], out, ["alpha": .number(Double(al))])
            case .selu: node("Selu", [x])
            }
        case let s as Sequential:
            return try s.layers.reduce(x) { try emit($1, $0, prefix, tprefix, &r) }
        case let res as Residual:
            let a = try emit(res.body, x, prefix, tprefix, &r)
            let b = try res.shortcut.map { try emit($0, x, prefix, tprefix, &r) } ?? x
            if res.postReLU {
                node("Add", [a, b], out + ".add")
                node("Relu", [out + ".add"])
            } else {
                node("Add", [a, b])
            }
        case let g as Graph:
            throw TLError.usage("a graph (\(g.description.nodes.count) nodes) inside a stack cannot be lowered")
        default:
            throw TLError.usage("layer \(l.name) (\(l.spec)) has no graph form")
        }
        return out
    }
}
