import TLCore
import TLNN

/// The networks fine-tuning trains, built from a pretrained source network: the same network with
/// a new classifier for the target classes (layer transfer), with the source's classifier kept
/// as a second head (Learning without Forgetting), several heads on one trunk (multitask), or a
/// new column beside the frozen source (progressive networks). Parameters keep their names, so
/// a copied layer's weights are found in the source by name.
public enum FineTune {

    // MARK: layers by name

    /// A layer as `--copy` and `--freeze` see it: a stack's top-level layer or a graph's node,
    /// with its parameters and buffers.
    public struct Unit {
        public let name: String
        public let parameters: [Parameter]
        public let buffers: [(String, Tensor)]
    }

    /// The network's layers in order.
    public static func units(_ net: Network) -> [Unit] {
        if let g = net.graph {
            return g.description.nodes.indices.map { Unit(name: g.description.nodes[$0].name, parameters: g.parameters(ofNode: $0), buffers: g.buffers(ofNode: $0)) }
        }
        return net.sequential!.layers.map { Unit(name: $0.name, parameters: $0.parameters, buffers: $0.buffers) }
    }

    /// The layers a LAYERS argument names: comma-separated layer names, where a name also
    /// stands for the layers inside it (`block2` for `block2.conv1`, ...; `source` for a
    /// progressive network's first column), ranges `A..B` in network order (inclusive; `..B` from
    /// the first layer, `A..` to the last), `all` and `none`. Unknown names are usage errors.
    public static func select(_ spec: String, in units: [Unit], option: String) throws -> [Unit] {
        var chosen = Set<Int>()
        func index(_ name: String) throws -> Int {
            guard let i = units.firstIndex(where: { $0.name == name }) else {
                throw TLError.usage("--\(option): the network has no layer '\(name)' (see tl-extract --list-layers)")
            }
            return i
        }
        for raw in spec.split(separator: ",", omittingEmptySubsequences: false) {
            let t = String(raw).trimmingSpaces
            if t == "all" { chosen.formUnion(units.indices); continue }
            if t == "none" { continue }
            guard !t.isEmpty else { throw TLError.usage("--\(option): empty layer name in '\(spec)'") }
            let ch = Array(t)
            if let d = ch.indices.dropLast().first(where: { ch[$0] == "." && ch[$0 + 1] == "." }) {
                let a = String(ch[..<d]), b = String(ch[(d + 2)...])
                let lo = a.isEmpty ? 0 : try index(a), hi = b.isEmpty ? units.count - 1 : try index(b)
                guard lo <= hi else { throw TLError.usage("--\(option): '\(a)' comes after '\(b)' in the network") }
                chosen.formUnion(lo...hi)
                continue
            }
            let inside = units.indices.filter { units[$0].name == t || units[$0].name.hasPrefix(t + ".") }
            guard !inside.isEmpty else { _ = try index(t); continue }
            chosen.formUnion(inside)
        }
        return chosen.sorted().map { units[$0] }
    }

    /// Parameter names of units.
    public static func parameterNames(_ units: [Unit]) -> Set<String> { Set(units.flatMap { $0.parameters.map(\.name) }) }

    /// Copies, for every unit in `units`, each parameter and buffer that `source` has under the
    /// same name and shape. Returns the names copied; with `strict`, a parameter the source
    /// lacks is a usage error.
    @discardableResult
    public static func copy(_ units: [Unit], from source: Network, strict: Bool) throws -> Set<String> {
        var params: [String: Tensor] = [:]
        for p in source.parameters { params[p.name] = p.value }
        for (n, t) in source.buffers { params[n] = t }
        var copied = Set<String>()
        func take(_ name: String, _ dst: Tensor) throws {
            guard let t = params[name], t.shape == dst.shape else {
                if strict {
                    throw TLError.usage("--copy: the source network has no tensor '\(name)' shaped \(shapeString(dst.shape))" +
                                        (params[name].map { " (it is \(shapeString($0.shape)))" } ?? ""))
                }
                return
            }
            dst.rawPointer.copyMemory(from: t.rawPointer, byteCount: dst.byteCount)
            copied.insert(name)
        }
        for u in units {
            for p in u.parameters { try take(p.name, p.value) }
            for (n, t) in u.buffers { try take(n, t) }
        }
        return copied
    }

    // MARK: layer transfer

    /// A target network: the source's layers, a new classifier for `classes` (randomly
    /// initialized, PyTorch's default), every layer `copy` names (default: all but the
    /// classifier) copied and the rest re-initialized. The input normalization is the
    /// source's: the copied layers expect it.
    public struct Transfer {
        public var net: Network
        /// Names of the parameters and buffers copied from the source.
        public var copied: Set<String>
        /// The new classifier's name.
        public var classifier: String
    }

    public static func transfer(_ source: Network, classes: [String], copy: String?, seed: UInt64) throws -> Transfer {
        let head = try source.classifier()
        var rng = RNG(seed: seed, stream: 0xF17E)
        let net: Network
        if source.sequential != nil {
            var tokens = Architectures.tokens(source.arch)
            if tokens.last?.hasPrefix("fc") == true { tokens.removeLast() }
            guard !tokens.isEmpty else { throw TLError.usage("the source network is a linear classifier only: there are no layers to transfer") }
            net = try Network(arch: tokens.joined(separator: ","), input: source.input, classes: classes)
            net.initialize(seed: seed)
        } else {
            let g = source.graph!, spec = g.description
            guard spec.inputs.count == 1 else { throw TLError.usage("fine-tuning takes a network with one input") }
            let c = g.node(head.name)!
            let keep = g.ancestors(of: c)
            let nodes = spec.nodes.indices.filter(keep.contains).map { spec.nodes[$0] }
            let names = Set(nodes.map(\.name))
            var tensors = g.tensors.mapValues { $0.copy() }
            let fresh = Linear(head.name, head.inFeatures, classes.count, bias: head.bias != nil)
            fresh.initialize(&rng)
            tensors[head.weight.name] = fresh.weight.value
            if let b = head.bias { tensors[b.name] = fresh.bias!.value }
            net = try Network(graph: GraphSpec(inputs: spec.inputs, outputs: [head.name], nodes: nodes, aliases: spec.aliases.filter { names.contains($0.value) }),
                              tensors: tensors, inputs: [source.input], tasks: [Task(name: "", output: head.name, classes: classes)])
            net.meta = source.meta
        }
        let all = units(net)
        let chosen = try copy.map { try select($0, in: all, option: "copy") } ?? all.filter { $0.name != head.name }
        if chosen.contains(where: { $0.name == head.name }) && classes.count != source.classes.count {
            throw TLError.usage("--copy names the classifier \(head.name), but the source has \(source.classes.count) classes and the target \(classes.count)")
        }
        var copied: Set<String>
        if net.graph == nil {
            copied = try FineTune.copy(chosen, from: source, strict: true)
        } else {
            // A graph starts from the source's values: re-initialize what is not copied.
            let keep = Set(chosen.map(\.name))
            copied = []
            for u in all where u.name != head.name {
                if keep.contains(u.name) { copied.formUnion(u.parameters.map(\.name) + u.buffers.map(\.0)); continue }
                guard !u.parameters.isEmpty else { continue }
                guard let l = net.layer(u.name) else { throw TLError.usage("layer \(u.name) cannot be re-initialized; include it in --copy") }
                if let i = l as? Initializable { i.initialize(&rng) }
                else if let b = l as? BatchNorm { b.reset() }
                else { throw TLError.usage("layer \(u.name) (\(l.spec)) cannot be re-initialized; include it in --copy") }
            }
            if keep.contains(head.name) { copied.formUnion(try FineTune.copy(all.filter { $0.name == head.name }, from: source, strict: true)) }
        }
        return Transfer(net: net, copied: copied, classifier: head.name)
    }

    // MARK: Learning without Forgetting

    /// The transferred network with the source's classifier kept as a second head, task
    /// "source", reading the same features as the new classifier (Li and Hoiem 2016): trained
    /// to keep its outputs while the new head learns the target.
    public static func withSourceHead(_ t: Transfer, source: Network) throws -> Network {
        let g = try Lowering.graphNetwork(t.net).graph!
        var spec = g.description
        var tensors = g.tensors
        guard let c = g.node(t.classifier), let features = spec.nodes[c].inputs.first else {
            throw TLError.usage("the network has no classifier '\(t.classifier)'")
        }
        let old = try source.classifier()
        let mine = try t.net.classifier()
        guard old.inFeatures == mine.inFeatures else {
            throw TLError.usage("the source classifier reads \(old.inFeatures) features, the target's \(mine.inFeatures)")
        }
        let name = "source." + old.name
        tensors[name + ".weight"] = old.weight.value.copy()
        var inputs = [features, name + ".weight"]
        if let b = old.bias { tensors[name + ".bias"] = b.value.copy(); inputs.append(name + ".bias") }
        spec.nodes.append(GraphSpec.Node(name: name, op: "Gemm", inputs: inputs, attrs: ["transB": 1]))
        spec.outputs = [t.classifier, name]
        let net = try Network(graph: spec, tensors: tensors, inputs: t.net.inputs,
                              tasks: [t.net.tasks[0], Task(name: "source", output: name, classes: source.classes)])
        net.meta = t.net.meta
        return net
    }

    // MARK: multitask

    /// A task of a multitask network: its name, class names and the input its examples go
    /// through.
    public struct TaskSpec {
        public var name: String, classes: [String], input: Int
        public init(name: String, classes: [String], input: Int) { self.name = name; self.classes = classes; self.input = input }
    }

    /// One trunk (`arch` without a classifier) and one fully connected head per task, named
    /// `head` (the unnamed task) or `head.NAME`. With several inputs, each input gets its own
    /// copy of the first `inputLayers` layers (nodes and weights named `INPUT.conv1`), and the
    /// rest of the trunk is shared: its nodes are repeated per input (`INPUT.fc1`) over one set
    /// of weights (`fc1.weight`).
    public static func multitask(arch: String, inputs: [(name: String, spec: InputSpec)], tasks: [TaskSpec], inputLayers: Int,
                                 seed: UInt64) throws -> Network {
        var nodes: [GraphSpec.Node] = [], tensors: [String: Tensor] = [:], trunkOut: [String] = []
        let multi = inputs.count > 1
        var width = 0
        for (k, inp) in inputs.enumerated() {
            let trunk = try Architectures.build(arch, input: inp.spec.shape, classes: 0, classifier: false)
            var rng = RNG(seed: seed, stream: 1 &+ UInt64(k) &* 0x9E37)
            func visit(_ l: Layer) { (l as? Initializable)?.initialize(&rng); l.children.forEach(visit) }
            trunk.layers.forEach(visit)
            guard inputLayers <= trunk.layers.count else {
                throw TLError.usage("--input-layers \(inputLayers): the architecture has \(trunk.layers.count) layers")
            }
            let stemPrefix = multi ? inp.name + "." : ""
            let stem = try Lowering.lower(Array(trunk.layers[..<inputLayers]), from: inp.name, prefix: stemPrefix)
            let middle = try Lowering.lower(Array(trunk.layers[inputLayers...]), from: inputLayers == 0 ? inp.name : stem.output,
                                            prefix: k == 0 ? "" : stemPrefix, tensorPrefix: "")
            nodes += stem.nodes + middle.nodes
            for (n, t) in stem.tensors { tensors[n] = t }
            for (n, t) in middle.tensors where tensors[n] == nil { tensors[n] = t }
            trunkOut.append(middle.nodes.isEmpty ? stem.output : middle.output)
            let out = try trunk.outputShape([1] + inp.spec.shape)
            guard out.count == 2 else {
                throw TLError.usage("the trunk '\(arch)' ends in \(shapeString(Array(out.dropFirst()))) per sample; heads need features (end it in fcN, gap or flatten)")
            }
            if k == 0 { width = out[1] } else if out[1] != width {
                throw TLError.usage("the trunk gives \(out[1]) features for input '\(inp.name)' and \(width) for '\(inputs[0].name)'")
            }
        }
        var rng = RNG(seed: seed, stream: 0x4EAD)
        var outputs: [String] = [], taskList: [Task] = []
        for t in tasks {
            let name = t.name.isEmpty ? "head" : "head." + t.name
            let fc = Linear(name, width, t.classes.count)
            fc.initialize(&rng)
            tensors[name + ".weight"] = fc.weight.value; tensors[name + ".bias"] = fc.bias!.value
            nodes.append(GraphSpec.Node(name: name, op: "Gemm", inputs: [trunkOut[t.input], name + ".weight", name + ".bias"], attrs: ["transB": 1]))
            outputs.append(name)
            taskList.append(Task(name: t.name, output: name, classes: t.classes))
        }
        let spec = GraphSpec(inputs: inputs.map(\.name), outputs: outputs, nodes: nodes)
        return try Network(graph: spec, tensors: tensors, inputs: inputs.map(\.spec), tasks: taskList)
    }

    /// Starts a multitask network from a source: every parameter (and buffer) of the layers
    /// `copy` names (default all) that the source has under the same name and shape, and the
    /// source's classifier for each head whose task has the source's class names. Returns the
    /// names copied.
    public static func initialize(_ net: Network, from source: Network, copy: String?) throws -> Set<String> {
        let all = units(net)
        let heads = Set(net.tasks.map(\.output))
        let chosen = try copy.map { try select($0, in: all, option: "copy") } ?? all.filter { !heads.contains($0.name) }
        var copied = try FineTune.copy(chosen.filter { !heads.contains($0.name) }, from: source, strict: copy != nil)
        let old = try source.classifier()
        for t in net.tasks where t.classes == source.classes {
            guard let l = net.layer(t.output) as? Linear, l.weight.value.shape == old.weight.value.shape else { continue }
            l.weight.value.rawPointer.copyMemory(from: old.weight.value.rawPointer, byteCount: old.weight.value.byteCount)
            if let b = l.bias, let ob = old.bias { b.value.rawPointer.copyMemory(from: ob.value.rawPointer, byteCount: ob.value.byteCount) }
            copied.formUnion(l.parameters.map(\.name))
        }
        return copied
    }

    // MARK: progressive networks

    /// Initial value of the lateral adapters' scales (Rusu et al. 2016 start them at small values).
    public static let lateralScale: Float = 0.1

    /// A progressive network (Rusu et al. 2016): column 1 is the source network (nodes and
    /// weights `source.NAME`; a stack is lowered to its graph first), to be frozen; column 2 is
    /// a new copy of its layers (all re-initialized) with a classifier for `classes`. Every
    /// convolution and fully connected node of column 2 after the first also reads what the
    /// node of the same name in column 1 reads, through a lateral adapter:
    /// a learned per-channel scale (starting at `lateralScale`) and a layer of the same kind
    /// (`lateral.NAME`, no bias), added to the layer's own output before its activation. Tasks:
    /// the target (column 2, the default) and "source" (column 1's classifier, unchanged).
    public static func progressive(source: Network, classes: [String], seed: UInt64) throws -> (Network, column1: Set<String>) {
        let src = try Lowering.graphNetwork(source).graph!
        let sspec = src.description
        guard sspec.inputs.count == 1 else { throw TLError.usage("a progressive network takes a source network with one input") }
        // Column 2: the source's layers, all new, with a classifier for the target.
        let fresh = try transfer(source, classes: classes, copy: "none", seed: seed).net
        let col2 = try Lowering.graphNetwork(fresh).graph!
        // Column 1: the source as it is, every node and tensor named source.NAME.
        let prefix = "source."
        let input = sspec.input
        func renamed(_ v: String) -> String { v == input || v.isEmpty ? v : prefix + v }
        let keep = src.ancestors(of: src.node(source.tasks[0].output)!)
        var nodes = sspec.nodes.indices.filter(keep.contains).map { i -> GraphSpec.Node in
            var n = sspec.nodes[i]
            n.name = prefix + n.name; n.inputs = n.inputs.map(renamed)
            return n
        }
        var tensors: [String: Tensor] = [:]
        var column1 = Set<String>()
        for (n, t) in src.tensors { tensors[prefix + n] = t.copy(); column1.insert(prefix + n) }
        for (n, t) in col2.tensors { tensors[n] = t }
        // Lateral adapters into every convolution and fully connected node of column 2 but the
        // first: what column 1's node of the same name reads, scaled, through a layer of the
        // same kind, added to the node's output.
        var rng = RNG(seed: seed, stream: 0x1A7E)
        let cspec = col2.description
        var seenFirst = false
        for (i, n) in cspec.nodes.enumerated() {
            let layer = col2.layer(ofNode: i)
            guard layer is Conv2d || layer is Linear, let from = n.inputs.first else { nodes.append(n); continue }
            defer { seenFirst = true }
            guard seenFirst, from != cspec.input, src.node(from) != nil, let s = src.shapes[from] else { nodes.append(n); continue }
            let name = "lateral." + n.name
            let scaleShape = s.count == 4 ? [1, s[1], 1, 1] : [1, s[1]]
            tensors[name + ".scale"] = Tensor([Float](repeating: lateralScale, count: s[1]), shape: scaleShape)
            var own = n
            own.name = n.name + ".own"
            nodes.append(own)
            nodes.append(GraphSpec.Node(name: name + ".scaled", op: "Mul", inputs: [prefix + from, name + ".scale"]))
            if let c = layer as? Conv2d {
                var g = c.shape
                g.c = s[1]; g.groups = 1
                let u = Conv2d(name, s[1], c.outChannels, geometry: g, bias: false)
                u.initialize(&rng)
                tensors[name + ".weight"] = u.weight.value
                var attrs = n.attrs
                attrs["group"] = 1
                nodes.append(GraphSpec.Node(name: name, op: "Conv", inputs: [name + ".scaled", name + ".weight"], attrs: attrs))
            } else if let f = layer as? Linear {
                let u = Linear(name, perSample(s), f.outFeatures, bias: false)
                u.initialize(&rng)
                tensors[name + ".weight"] = u.weight.value
                nodes.append(GraphSpec.Node(name: name, op: "Gemm", inputs: [name + ".scaled", name + ".weight"], attrs: ["transB": 1]))
            }
            nodes.append(GraphSpec.Node(name: n.name, op: "Add", inputs: [own.name, name]))
        }
        let out1 = prefix + source.tasks[0].output
        let spec = GraphSpec(inputs: [input], outputs: [col2.description.outputs[0], out1], nodes: nodes)
        let net = try Network(graph: spec, tensors: tensors, inputs: [source.input],
                              tasks: [Task(name: "", output: col2.description.outputs[0], classes: classes), Task(name: "source", output: out1, classes: source.classes)])
        return (net, column1)
    }
}
