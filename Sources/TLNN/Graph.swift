import TLCore

/// An operation of a graph: dynamic inputs (other nodes' outputs or the graph input) to one
/// output, with explicit backward. Static inputs (weights, constants) are bound when it is
/// built. Like `Layer`: training forward caches what backward needs, evaluation forward writes
/// no state, backward accumulates parameter gradients.
public protocol GraphOp: AnyObject {
    func outputShape(_ inputs: [[Int]]) throws -> [Int]
    func forward(_ inputs: [Tensor], _ ctx: Context) throws -> Tensor
    /// Gradients for the dynamic inputs, nil where `need` is false.
    func backward(_ dy: Tensor, need: [Bool], _ ctx: Context) -> [Tensor?]
    var parameters: [Parameter] { get }
    var buffers: [(String, Tensor)] { get }
    /// The layer inside, for ops that wrap one (so freezing and initialization reach it).
    var layer: Layer? { get }
}

extension GraphOp {
    public var parameters: [Parameter] { layer?.parameters ?? [] }
    public var buffers: [(String, Tensor)] { layer?.buffers ?? [] }
    public var layer: Layer? { nil }
}

/// Ops and layers whose parameters (and buffers) a graph may share between nodes: `share`
/// replaces each by the one the lookup returns (the first node's, for the same name).
protocol SharingParameters: AnyObject {
    func share(_ parameter: (Parameter) -> Parameter, _ buffer: (String, Tensor) -> Tensor)
}

/// A graph as data: what the model file stores and the ONNX importer produces. Nodes are in
/// topological order; each has a name (also the name of its output value), an ONNX op type, its
/// inputs by name (the graph input, earlier nodes, or tensors: parameters, buffers, constants)
/// and ONNX-style attributes.
public struct GraphSpec: Equatable {
    public struct Node: Equatable {
        public var name: String
        public var op: String
        public var inputs: [String]
        public var attrs: [String: JSON]
        public init(name: String, op: String, inputs: [String], attrs: [String: JSON] = [:]) {
            self.name = name; self.op = op; self.inputs = inputs; self.attrs = attrs
        }
    }
    /// The graph inputs' names; the first is the value fed to a network (networks have one;
    /// conformance tests of single operators may have several).
    public var inputs: [String]
    public var input: String { inputs[0] }
    /// Output values; the first is the network's output (the classifier's scores).
    public var outputs: [String]
    public var nodes: [Node]
    /// ONNX value names (and other names) that users may know nodes by: alias → node name.
    public var aliases: [String: String]

    public init(inputs: [String], outputs: [String], nodes: [Node], aliases: [String: String] = [:]) {
        self.inputs = inputs; self.outputs = outputs; self.nodes = nodes; self.aliases = aliases
    }

    public var json: JSON {
        ["inputs": .array(inputs.map { .string($0) }), "outputs": .array(outputs.map { .string($0) }),
         "aliases": .object(aliases.mapValues { .string($0) }),
         "nodes": .array(nodes.map { n in
            ["name": .string(n.name), "op": .string(n.op), "inputs": .array(n.inputs.map { .string($0) }), "attrs": .object(n.attrs)] })]
    }

    public init(json j: JSON) throws {
        guard let ins = j["inputs"]?.array?.compactMap({ $0.string }), !ins.isEmpty, let outs = j["outputs"]?.array?.compactMap({ $0.string }),
              !outs.isEmpty, let nodes = j["nodes"]?.array else { throw TLError.data("model graph description is incomplete") }
        inputs = ins; outputs = outs
        aliases = (j["aliases"]?.object ?? [:]).compactMapValues { $0.string }
        self.nodes = try nodes.map { n in
            guard let name = n["name"]?.string, let op = n["op"]?.string, let ins = n["inputs"]?.array?.compactMap({ $0.string }) else {
                throw TLError.data("model graph has a malformed node")
            }
            return Node(name: name, op: op, inputs: ins, attrs: n["attrs"]?.object ?? [:])
        }
    }
}

/// A network that is a graph of operations (imported ONNX models and the multi-branch networks
/// fine-tuning builds). As a `Layer` it maps its input to its first output.
public final class Graph: Layer {
    public let name = "graph"
    public let description: GraphSpec
    /// One op per node of `description`; dynamic inputs per node (indices into `values`).
    let ops: [GraphOp]
    let dynamicInputs: [[String]]
    /// Tensors that are neither parameters nor buffers of an op (shape constants and the like).
    let constants: [(String, Tensor)]
    /// The shape of every value (the batch axis first, as 1 unless the inputs fix it).
    public let shapes: [String: [Int]]
    var consumers: [String: Int] = [:]

    /// Builds the ops of `spec` for the inputs' full shapes (batch axis included), taking
    /// parameters, buffers and constants from `tensors` by name (see `GraphOps.make`).
    public init(_ spec: GraphSpec, inputShapes: [[Int]], tensors: [String: Tensor]) throws {
        description = spec
        guard inputShapes.count == spec.inputs.count else { throw TLError.data("graph: \(spec.inputs.count) inputs, \(inputShapes.count) shapes") }
        var shapes: [String: [Int]] = Dictionary(uniqueKeysWithValues: zip(spec.inputs, inputShapes))
        var ops: [GraphOp] = [], dyn: [[String]] = []
        var usedTensors = Set<String>()
        var seen = Set<String>(spec.inputs)
        for n in spec.nodes {
            guard !seen.contains(n.name), tensors[n.name] == nil else { throw TLError.data("graph: two values are named '\(n.name)'") }
            let dynamic = n.inputs.filter { !$0.isEmpty && tensors[$0] == nil }
            for d in dynamic where !seen.contains(d) {
                throw TLError.data("graph: node '\(n.name)' (\(n.op)) reads '\(d)', which is neither an earlier node, the input, nor a tensor")
            }
            let op = try annotating(file: nil, location: "node '\(n.name)' (\(n.op))") {
                try GraphOps.make(n, tensors: tensors, inputShapes: dynamic.map { shapes[$0]! })
            }
            for i in n.inputs where tensors[i] != nil { usedTensors.insert(i) }
            shapes[n.name] = try annotating(file: nil, location: "node '\(n.name)' (\(n.op))") { try op.outputShape(dynamic.map { shapes[$0]! }) }
            ops.append(op); dyn.append(dynamic); seen.insert(n.name)
        }
        for o in spec.outputs where !seen.contains(o) { throw TLError.data("graph: output '\(o)' is not computed by any node") }
        // Nodes that read the same weight tensor share one parameter (a middle shared by
        // several inputs, tied weights): one value, one gradient both accumulate into.
        var pool: [String: Parameter] = [:], bufferPool: [String: Tensor] = [:]
        for (i, op) in ops.enumerated() {
            for p in op.parameters {
                if let q = pool[p.name], q !== p {
                    guard q.value.shape == p.value.shape, op is SharingParameters else {
                        throw TLError.data("graph: node '\(spec.nodes[i].name)' (\(spec.nodes[i].op)) reads parameter '\(p.name)' as \(shapeString(p.value.shape)), another node as \(shapeString(q.value.shape)); it cannot be shared")
                    }
                }
            }
            (op as? SharingParameters)?.share({ p in
                if let q = pool[p.name] { return q }
                pool[p.name] = p; return p
            }, { name, t in
                if let u = bufferPool[name], u.shape == t.shape { return u }
                bufferPool[name] = t; return t
            })
            for p in op.parameters where pool[p.name] == nil { pool[p.name] = p }
        }
        self.ops = ops; dynamicInputs = dyn
        // Constants: used tensors that no op owns as a parameter or buffer.
        let owned = Set(ops.flatMap { $0.parameters.map(\.name) + $0.buffers.map(\.0) })
        constants = usedTensors.subtracting(owned).sorted().map { ($0, tensors[$0]!) }
        self.shapes = shapes
        for d in dyn.joined() { consumers[d, default: 0] += 1 }
        // Convolutions read by exactly one node, an activation a convolution can apply itself.
        var fused: [Int: (Int, FusedActivation)] = [:]
        for (i, n) in spec.nodes.enumerated() where ops[i].layer is Conv2d && consumers[n.name] == 1 && !spec.outputs.contains(n.name) {
            if let j = dyn.firstIndex(where: { $0 == [n.name] }), let act = (ops[j].layer as? Activation)?.fused { fused[i] = (j, act) }
        }
        fusedActivation = fused
    }
    /// Node i's output feeds only node j, an activation it can apply while storing: (j, that activation).
    let fusedActivation: [Int: (Int, FusedActivation)]

    public var spec: String { "graph" }
    public var parameters: [Parameter] {
        var seen = Set<ObjectIdentifier>()
        return ops.flatMap(\.parameters).filter { seen.insert(ObjectIdentifier($0)).inserted }
    }
    public var buffers: [(String, Tensor)] {
        var seen = Set<String>()
        return (ops.flatMap(\.buffers) + constants).filter { seen.insert($0.0).inserted }
    }
    public var children: [Layer] { ops.compactMap(\.layer) }

    /// The parameters and buffers of node `i` (shared ones included).
    public func parameters(ofNode i: Int) -> [Parameter] { ops[i].parameters }
    public func buffers(ofNode i: Int) -> [(String, Tensor)] { ops[i].buffers }
    /// The layer node `i` runs, when it runs one (convolutions, fully connected layers, ...).
    public func layer(ofNode i: Int) -> Layer? { ops[i].layer }

    /// Every tensor the graph holds by name (parameters' and buffers' current values, constants):
    /// what `Graph.init` takes to build the same graph again.
    public var tensors: [String: Tensor] {
        var t: [String: Tensor] = [:]
        for p in parameters { t[p.name] = p.value }
        for (n, b) in buffers { t[n] = b }
        return t
    }

    /// The index of the node computing value `name`, if a node does.
    public func node(_ name: String) -> Int? { description.nodes.firstIndex { $0.name == name } }

    /// Per-sample shape of a value (the batch axis dropped).
    public func sampleShape(_ value: String) -> [Int]? { shapes[value].map { Array($0.dropFirst()) } }

    public func outputShape(_ s: [Int]) throws -> [Int] {
        guard Array(s.dropFirst()) == sampleShape(description.input) else {
            throw TLError.data("the graph takes \(shapeString(sampleShape(description.input) ?? [])) per sample, not \(shapeString(Array(s.dropFirst())))")
        }
        return [s.first ?? 1] + sampleShape(description.outputs[0])!
    }

    public func forward(_ x: Tensor, _ ctx: Context) throws -> Tensor { try forward(x, until: description.outputs[0], ctx) }

    public func forward(_ x: Tensor, until target: String, _ ctx: Context) throws -> Tensor {
        try forward([description.input: x], until: target, ctx)
    }

    /// Runs the nodes needed for value `target` (the ancestors of its node) on the inputs by
    /// name and returns it. Values are dropped as soon as their last consumer has run.
    public func forward(_ inputs: [String: Tensor], until target: String, _ ctx: Context) throws -> Tensor {
        try forward(inputs, outputs: [target], ctx)[target]!
    }

    /// Runs the nodes needed for every value in `targets` (a multi-head network's outputs) on
    /// the inputs by name, each node once, and returns those values.
    public func forward(_ inputs: [String: Tensor], outputs targets: [String], _ ctx: Context) throws -> [String: Tensor] {
        var needed = Set<Int>()
        for t in targets where inputs[t] == nil {
            guard let k = node(t) else { throw TLError.usage("the graph has no value '\(t)'") }
            needed.formUnion(ancestors(of: k))
        }
        var values = inputs
        for i in description.inputs where values[i] == nil && needed.contains(where: { dynamicInputs[$0].contains(i) }) {
            throw TLError.usage("the graph needs input '\(i)'")
        }
        let keep = Set(targets)
        var left = consumers
        var fusedInto = Set<Int>()
        for i in needed.sorted() {
            if fusedInto.contains(i) { continue }
            let n = description.nodes[i]
            let args = dynamicInputs[i].map { values[$0]! }
            // At inference, a convolution whose only consumer is an activation it can apply
            // while storing (and whose own value nobody asked for) computes that node's value.
            if !ctx.training, let (j, act) = fusedActivation[i], needed.contains(j), !keep.contains(n.name),
               let conv = ops[i].layer as? Conv2d {
                let out = description.nodes[j].name
                values[out] = try annotating(file: nil, location: "node '\(n.name)' (\(n.op))") {
                    try conv.forward(try LayerOp.f32(args[0]), ctx, activation: act)
                }
                fusedInto.insert(j)
                for d in dynamicInputs[i] {
                    left[d]! -= 1
                    if left[d] == 0 && !keep.contains(d) { values[d] = nil }
                }
                continue
            }
            values[n.name] = try annotating(file: nil, location: "node '\(n.name)' (\(n.op))") { try ops[i].forward(args, ctx) }
            for d in dynamicInputs[i] {
                left[d]! -= 1
                if left[d] == 0 && !keep.contains(d) { values[d] = nil }
            }
        }
        return values.filter { keep.contains($0.key) }
    }

    /// The nodes value `last`'s node depends on, itself included.
    public func ancestors(of last: Int) -> Set<Int> {
        var need = Set([last]), stack = [last]
        while let i = stack.popLast() {
            for d in dynamicInputs[i] { if let j = node(d), need.insert(j).inserted { stack.append(j) } }
        }
        return need
    }

    /// The graph inputs value `name` depends on (itself, when it is an input).
    public func inputs(of name: String) -> [String] {
        if description.inputs.contains(name) { return [name] }
        guard let k = node(name) else { return [] }
        let used = Set(ancestors(of: k).flatMap { dynamicInputs[$0] })
        return description.inputs.filter(used.contains)
    }

    /// Backward from the first output (after a training forward of it).
    public func backward(_ dy: Tensor, needInputGrad: Bool, _ ctx: Context) -> Tensor? {
        backward([description.outputs[0]: dy], needInputGrad: needInputGrad, ctx)
    }

    /// Backward from gradients of several values (multi-head losses): reverse order, summing
    /// the gradients of values read by several nodes. Nodes with nothing trainable above them
    /// and no input gradient wanted are skipped.
    public func backward(_ seeds: [String: Tensor], needInputGrad: Bool, _ ctx: Context) -> Tensor? {
        // Which values carry a gradient worth computing: those with trainable parameters upstream.
        var wants = Set<String>()
        if needInputGrad { wants.insert(description.input) }
        for (i, n) in description.nodes.enumerated() {
            if ops[i].parameters.contains(where: { !$0.frozen }) || dynamicInputs[i].contains(where: wants.contains) { wants.insert(n.name) }
        }
        var grads = seeds
        for i in stride(from: description.nodes.count - 1, through: 0, by: -1) {
            let n = description.nodes[i]
            guard let g = grads.removeValue(forKey: n.name), wants.contains(n.name) else { continue }
            let need = dynamicInputs[i].map { wants.contains($0) }
            let gs = ops[i].backward(g, need: need, ctx)
            for (d, gi) in zip(dynamicInputs[i], gs) {
                guard let gi = gi else { continue }
                if let old = grads[d] {
                    let sum = Tensor.f32(old.shape, zero: false)
                    for k in 0..<old.count { sum.f32[k] = old.f32[k] + gi.f32[k] }
                    grads[d] = sum
                } else { grads[d] = gi }
            }
        }
        return needInputGrad ? grads[description.input] : nil
    }
}
