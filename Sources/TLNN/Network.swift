import TLCore

/// What a network expects as input: per-sample shape [C, H, W] (or [D]) and the normalization
/// applied to raw data, x = (raw·scale − mean[c]) / std[c].
public struct InputSpec: Equatable, Sendable {
    public var shape: [Int]
    public var scale: Float
    public var mean: [Float]
    public var std: [Float]
    public init(shape: [Int], scale: Float = 1, mean: [Float] = [0], std: [Float] = [1]) {
        self.shape = shape; self.scale = scale; self.mean = mean; self.std = std
    }
    /// Normalization groups: C for images [C, H, W], D for feature vectors [D] (so a linear
    /// classifier can standardize each feature), 1 otherwise. `mean` and `std` hold 1 or this
    /// many values.
    public var channels: Int { InputSpec.channels(shape) }
    static func channels(_ shape: [Int]) -> Int { shape.count == 3 || shape.count == 1 ? shape[0] : 1 }

    var json: JSON {
        ["shape": .array(shape.map { .number(Double($0)) }), "scale": .number(Double(scale)),
         "mean": .array(mean.map { .number(Double($0)) }), "std": .array(std.map { .number(Double($0)) })]
    }
    init(json j: JSON) throws {
        guard let s = j["shape"]?.array?.compactMap({ $0.int }), !s.isEmpty,
              let m = j["mean"]?.array?.compactMap({ $0.number }), let d = j["std"]?.array?.compactMap({ $0.number }) else {
            throw TLError.data("model input description is incomplete")
        }
        shape = s; scale = Float(j["scale"]?.number ?? 1); mean = m.map { Float($0) }; std = d.map { Float($0) }
        // A model file is input like any other: check what `normalize` will index and divide by.
        let c = InputSpec.channels(s)
        guard shape.allSatisfy({ $0 > 0 }), scale.isFinite,
              [1, c].contains(mean.count), [1, c].contains(std.count),
              mean.allSatisfy({ $0.isFinite }), std.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw TLError.data("model input description is inconsistent: shape \(s), \(m.count) means and \(d.count) standard deviations (1 or \(c) positive ones needed)")
        }
    }
}

extension InputSpec {
    /// The input description for training data `x` [N, ...]: per-sample shape (gray [H, W]
    /// gains a channel axis), u8 scaled to [0, 1], and the mean and standard deviation of each
    /// normalization group: per channel for images; for feature vectors [D] one group when
    /// `perFeature` is false (a network's input), one per feature when true (standardization).
    /// With `standardize` false, mean 0 and std 1.
    public static func fitted(to x: Tensor, perFeature: Bool = false, standardize: Bool = true) throws -> InputSpec {
        var shape = Array(x.shape.dropFirst())
        if shape.count == 2 { shape.insert(1, at: 0) }
        let scale: Float = x.dtype == .u8 ? 1 / 255 : 1
        guard standardize else { return InputSpec(shape: shape, scale: scale) }
        let groups = shape.count == 3 || (shape.count == 1 && perFeature) ? shape[0] : 1
        var acc = MomentAccumulator(groups: groups, plane: shape.reduce(1, *) / groups, scale: scale)
        try acc.add(x)
        let (mean, std) = acc.result()
        return InputSpec(shape: shape, scale: scale, mean: mean, std: std)
    }
}

/// Per-group mean and standard deviation over rows that arrive in pieces (one pass, Double
/// sums shifted by the first row's value of each group, so large means do not cancel).
public struct MomentAccumulator {
    public let groups: Int, plane: Int, scale: Float
    var shift: [Double]? = nil
    var sum: [Double], sum2: [Double]
    var count = 0
    public init(groups: Int, plane: Int, scale: Float = 1) {
        self.groups = groups; self.plane = plane; self.scale = scale
        sum = [Double](repeating: 0, count: groups); sum2 = sum
    }
    /// Adds rows [n, groups·plane] of any numeric dtype (scaled by `scale`).
    public mutating func add(_ raw: Tensor) throws {
        let per = groups * plane
        guard raw.rank >= 1, perSample(raw.shape) == per else { throw TLError.data("rows of \(perSample(raw.shape)) values; expected \(per)") }
        let f = try raw.converted(to: .f32)
        if shift == nil, raw.rows > 0 { shift = (0..<groups).map { Double(f.f32[$0 * plane] * scale) } }
        guard let sh = shift else { return }
        for i in 0..<raw.rows {
            for g in 0..<groups {
                let p = f.f32 + i * per + g * plane, c = sh[g]
                var s = 0.0, s2 = 0.0
                for q in 0..<plane { let v = Double(p[q] * scale) - c; s += v; s2 += v * v }
                sum[g] += s; sum2[g] += s2
            }
        }
        count += raw.rows
    }
    /// (mean, std) per group; std is the population standard deviation, at least 1e-6.
    public func result() -> ([Float], [Float]) {
        let n = Double(max(count * plane, 1)), sh = shift ?? [Double](repeating: 0, count: groups)
        var mean = [Float](repeating: 0, count: groups), std = mean
        for g in 0..<groups {
            let m = sum[g] / n
            mean[g] = Float(sh[g] + m); std[g] = Float(max((sum2[g] / n - m * m).squareRoot(), 1e-6))
        }
        return (mean, std)
    }
}

/// A classification task of a network: the output value that scores it and its class names.
/// The default task has the empty name (its labels are the `y` record; a named task's are
/// `y.NAME`).
public struct Task: Equatable, Sendable {
    public var name: String
    public var output: String
    public var classes: [String]
    public init(name: String, output: String, classes: [String]) { self.name = name; self.output = output; self.classes = classes }
    var json: JSON { ["name": .string(name), "output": .string(output), "classes": .array(classes.map { .string($0) })] }
}

/// A network: the layers it is made of, the input it expects and the class names of its head.
/// Its body is either a stack of layers built from an architecture spec (`Architectures`) or a
/// graph of operations (an imported ONNX model, a multi-branch network).
public final class Network {
    /// The architecture spec of a stack, or "graph".
    public let arch: String
    /// What each input of the network expects (one per graph input; a stack has one).
    public let inputs: [InputSpec]
    public var input: InputSpec { inputs[0] }
    /// The classification tasks the network answers: the first is the default one (its labels
    /// are `y`); a multi-head network (multitask, Learning without Forgetting, a progressive
    /// network's source column) has more, each an output value with its class names.
    public var tasks: [Task]
    /// The default task's class names.
    public var classes: [String] {
        get { tasks[0].classes }
        set { tasks[0].classes = newValue }
    }
    public let body: Layer
    /// How it was made (command line, seed, data fingerprint, version): kept in the model file.
    public var meta: JSON = .object([:])

    public var sequential: Sequential? { body as? Sequential }
    public var graph: Graph? { body as? Graph }

    public init(arch: String, input: InputSpec, classes: [String]) throws {
        self.arch = arch; inputs = [input]
        let s = try Architectures.build(arch, input: input.shape, classes: classes.count)
        body = s
        tasks = [Task(name: "", output: s.layers.last!.name, classes: classes)]
    }

    /// A graph network; its first output must give one score per class (named "0", "1", ...
    /// when `classes` is empty).
    public convenience init(graph spec: GraphSpec, tensors: [String: Tensor], input: InputSpec, classes: [String]) throws {
        try self.init(graph: spec, tensors: tensors, inputs: [input], tasks: [Task(name: "", output: spec.outputs[0], classes: classes)])
    }

    /// A graph network with one input description per graph input and one or more tasks, each
    /// an output of one score per class (classes named "0", "1", ... when a task has none).
    public init(graph spec: GraphSpec, tensors: [String: Tensor], inputs: [InputSpec], tasks: [Task]) throws {
        arch = "graph"; self.inputs = inputs
        guard inputs.count == spec.inputs.count else {
            throw TLError.data("the graph has \(spec.inputs.count) inputs; \(inputs.count) input descriptions given")
        }
        let g = try Graph(spec, inputShapes: inputs.map { [1] + $0.shape }, tensors: tensors)
        body = g
        guard !tasks.isEmpty, Set(tasks.map(\.name)).count == tasks.count else { throw TLError.data("the network's tasks need distinct names") }
        self.tasks = try tasks.map { t in
            guard let out = g.sampleShape(t.output) else { throw TLError.data("task '\(t.name)': the graph has no value '\(t.output)'") }
            guard out.count == 1 else {
                throw TLError.data("the network's output '\(t.output)' is \(shapeString(out)) per sample, not one score per class")
            }
            guard t.classes.isEmpty || t.classes.count == out[0] else {
                throw TLError.data("\(t.classes.count) class names for \(out[0]) outputs" + (t.name.isEmpty ? "" : " of task '\(t.name)'"))
            }
            guard g.inputs(of: t.output).count == 1 else {
                throw TLError.data("task '\(t.name)': output '\(t.output)' depends on \(g.inputs(of: t.output).count) inputs; a task reads one")
            }
            return Task(name: t.name, output: t.output, classes: t.classes.isEmpty ? (0..<out[0]).map(String.init) : t.classes)
        }
    }

    /// The value the network outputs (its last layer, or its default task's output).
    public var outputName: String { tasks[0].output }

    /// The task named `name` ("" or nil: the default task).
    public func task(_ name: String?) throws -> Task {
        guard let n = name, !n.isEmpty else { return tasks[0] }
        guard let t = tasks.first(where: { $0.name == n }) else {
            let known = tasks.map { $0.name.isEmpty ? "(default)" : $0.name }.joined(separator: ", ")
            throw TLError.usage("the network has no task '\(n)' (it has: \(known))")
        }
        return t
    }

    /// The index of the input that value `name` is computed from (0 for a stack).
    public func inputIndex(of name: String) throws -> Int {
        guard let g = graph else { return 0 }
        let ins = g.inputs(of: name)
        guard ins.count == 1, let k = g.description.inputs.firstIndex(of: ins[0]) else {
            throw TLError.usage("'\(name)' depends on \(ins.count) of the network's inputs; name a value computed from one")
        }
        return k
    }

    public var parameters: [Parameter] { body.parameters }
    public var buffers: [(String, Tensor)] { body.buffers }
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }

    public func initialize(seed: UInt64) {
        var rng = RNG(seed: seed, stream: 1)
        func visit(_ l: Layer) {
            if let i = l as? Initializable { i.initialize(&rng) }
            l.children.forEach(visit)
        }
        visit(body)
    }

    /// Readies a network that will only run forward (feature extraction, evaluation): each
    /// convolution and fully connected layer packs its weights once for the GEMM instead of on every call
    /// (ResNet-18 at 64×64: about 45 MB packed per batch and thread). The weights must not
    /// change afterwards except through training, whose forward drops the packed copies.
    public func prepareForInference() {
        func visit(_ l: Layer) {
            (l as? Conv2d)?.prepareForInference()
            (l as? Linear)?.prepareForInference()
            l.children.forEach(visit)
        }
        visit(body)
    }

    /// Logits for a normalized batch [N, ...input.shape].
    public func forward(_ x: Tensor, _ ctx: Context) throws -> Tensor { try body.forward(x, ctx) }

    /// Several output values (tasks' heads) for a normalized batch of input `k`, each layer run
    /// once: what training a multi-head network needs before `backward`.
    public func forward(_ x: Tensor, input k: Int, outputs: [String], _ ctx: Context) throws -> [String: Tensor] {
        guard let g = graph else {
            guard k == 0, outputs.allSatisfy({ $0 == outputName }) else { throw TLError.usage("a stack network has one input and one output") }
            return [outputName: try body.forward(x, ctx)]
        }
        return try g.forward([g.description.inputs[k]: x], outputs: outputs, ctx)
    }

    /// Backward from the loss gradients of output values (after a training `forward`):
    /// parameter gradients accumulate.
    public func backward(_ seeds: [String: Tensor], _ ctx: Context) {
        if let g = graph { _ = g.backward(seeds, needInputGrad: false, ctx); return }
        if let d = seeds[outputName] { _ = body.backward(d, needInputGrad: false, ctx) }
    }

    /// Raw data (any numeric dtype, [N, ...]) to the normalized f32 batch the network expects:
    /// x = (raw·scale − mean[c]) / std[c]. Any per-sample shape with the right element count in
    /// C order is accepted (gray [N, H, W] for a [1, H, W] input, flattened rows).
    public func normalize(_ raw: Tensor, input k: Int = 0) throws -> Tensor {
        let input = inputs[k]
        let per = input.shape.reduce(1, *)
        guard raw.rank >= 1, perSample(raw.shape) == per else {
            throw TLError.data("inputs are \(shapeString(Array(raw.shape.dropFirst()))) per sample; the network expects \(shapeString(input.shape))")
        }
        let n = raw.rows
        let f = try raw.converted(to: .f32)
        let out = Tensor.f32([n] + input.shape, zero: false)
        let c = input.channels, plane = per / c
        var a = [Float](repeating: 0, count: c), b = a
        for ch in 0..<c {
            let m = input.mean[input.mean.count == 1 ? 0 : ch], s = input.std[input.std.count == 1 ? 0 : ch]
            a[ch] = input.scale / s; b[ch] = -m / s
        }
        for i in 0..<n {
            for ch in 0..<c {
                let src = f.f32 + i * per + ch * plane, dst = out.f32 + i * per + ch * plane, ac = a[ch], bc = b[ch]
                for q in 0..<plane { dst[q] = src[q] * ac + bc }
            }
        }
        return out
    }

    /// Raw inputs as a user has them, made into the normalized batch the network expects: for an
    /// image network [C, H, W], gray images gain channels (copies of the plane), RGB becomes
    /// gray (BT.601 luma) for a one-channel network, and images of another size are resized
    /// (bilinear, half-pixel centers); then `normalize`. Inputs that already have the
    /// network's shape (or its element count per row) go straight to `normalize`.
    public func prepare(_ raw: Tensor, input k: Int = 0, threads: Int = Threads.count) throws -> Tensor {
        let input = inputs[k]
        guard input.shape.count == 3, raw.rank == 3 || raw.rank == 4 else { return try normalize(raw, input: k) }
        let (C, H, W) = (input.shape[0], input.shape[1], input.shape[2])
        let n = raw.rows
        let (c, h, w) = raw.rank == 3 ? (1, raw.shape[1], raw.shape[2]) : (raw.shape[1], raw.shape[2], raw.shape[3])
        if c == C && h == H && w == W { return try normalize(raw, input: k) }
        guard c == C || c == 1 || (c == 3 && C == 1) else {
            throw TLError.data("images have \(c) channels; the network takes \(C), and only gray to \(C) or RGB to gray can be converted")
        }
        guard h > 0 && w > 0 else { throw TLError.data("images of size \(h)x\(w) cannot be resized") }
        var f = try raw.converted(to: .f32).reshaped([n, c, h, w])
        if c != C {
            let t = Tensor.f32([n, C, h, w], zero: false)
            Resize.channels(n: n, from: c, to: C, size: h * w, x: f.f32, y: t.f32)
            f = t
        }
        if h != H || w != W {
            let t = Tensor.f32([n, C, H, W], zero: false)
            Resize.bilinear(planes: n * C, h: h, w: w, oh: H, ow: W, x: f.f32, y: t.f32, threads: threads)
            f = t
        }
        return try normalize(f, input: k)
    }

    /// The layer named `name` anywhere in the network (`conv1`, `block2.conv1`).
    public func layer(_ name: String) -> Layer? {
        func find(_ l: Layer) -> Layer? {
            if l.name == name { return l }
            for c in l.children { if let f = find(c) { return f } }
            return nil
        }
        return find(body)
    }

    /// Every named layer (top-level layer, or graph node) in order with its spec (or op type)
    /// and its output shape for one sample.
    public func layerShapes() throws -> [(String, String, [Int])] {
        if let g = graph { return g.description.nodes.map { ($0.name, $0.op, g.sampleShape($0.name) ?? []) } }
        var out: [(String, String, [Int])] = []
        var shape = [1] + input.shape
        for l in sequential!.layers {
            shape = try l.outputShape(shape)
            out.append((l.name, l.spec, Array(shape.dropFirst())))
        }
        return out
    }

    // MARK: running part of the network

    /// Where a partial forward pass stops: after the first `end` top-level layers of a stack, or
    /// at graph value `value`. `layer` is the layer the user named (or the default),
    /// `activation` the activation that follows it and was included, `shape` the per-sample
    /// output shape.
    public struct Cut: Equatable {
        public var end: Int
        public let layer: String
        public let activation: String?
        public let shape: [Int]
        public var value: String? = nil
        /// The network input the cut reads (a multi-input graph's).
        public var input = 0
        public init(end: Int, layer: String, activation: String?, shape: [Int], value: String? = nil, input: Int = 0) {
            self.end = end; self.layer = layer; self.activation = activation; self.shape = shape; self.value = value; self.input = input
        }
    }

    /// The cut for `--layer NAME`: the output of that layer (a top-level layer of a stack; a
    /// node of a graph, by its name or any alias), followed by the activation right after it
    /// when `activation` is true (codes are taken after the ReLU that follows them in training,
    /// as in the cs231n recipe). Without a name: the layer before the classifier (the last
    /// layer, which must be linear), with its activation.
    public func cut(layer name: String?, activation: Bool, task: Task? = nil) throws -> Cut {
        if let g = graph {
            var c = try graphCut(g, name, activation, from: (task ?? tasks[0]).output)
            c.input = try inputIndex(of: c.value!)
            return c
        }
        let layers = sequential!.layers
        var index: Int
        if let name = name {
            guard let i = layers.firstIndex(where: { $0.name == name }) else {
                if let inner = self.layer(name), let top = layers.first(where: { l in contains(l, inner) }) {
                    throw TLError.usage("layer '\(name)' is inside '\(top.name)'; name a top-level layer (see --list-layers)")
                }
                throw TLError.usage("the network has no layer '\(name)' (see --list-layers)")
            }
            index = i
        } else {
            guard let last = layers.last, last is Linear, layers.count >= 2 else {
                throw TLError.usage("the network does not end in a linear classifier; name a layer with --layer")
            }
            index = layers.count - 2
            // Step back over the activation to name the layer it follows (fc2 + relu4).
            if layers[index] is Activation && index >= 1 { index -= 1 }
        }
        var end = index + 1, act: String? = nil
        if activation, !(layers[index] is Activation), end < layers.count, layers[end] is Activation {
            act = layers[end].name; end += 1
        }
        var shape = [1] + input.shape
        for l in layers[..<end] { shape = try l.outputShape(shape) }
        return Cut(end: end, layer: layers[index].name, activation: act, shape: Array(shape.dropFirst()))
    }

    static let activationOps: Set<String> = ["Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Elu", "Selu", "PRelu"]

    func graphCut(_ g: Graph, _ name: String?, _ activation: Bool, from output: String) throws -> Cut {
        let spec = g.description
        func consumers(_ v: String) -> [GraphSpec.Node] { spec.nodes.filter { $0.inputs.contains(v) } }
        var target: String
        if let name = name {
            guard let t = g.node(name).map({ _ in name }) ?? spec.aliases[name] ?? (spec.inputs.contains(name) ? name : nil) else {
                throw TLError.usage("the network has no layer '\(name)' (see --list-layers)")
            }
            target = t
        } else {
            // The input of the classifier.
            guard let c = Network.classifierNode(g, output: output), let x = Network.dynamicInput(g, c) else {
                throw TLError.usage("the network does not end in a linear classifier; name a layer with --layer")
            }
            target = x
            // Name the layer the activation follows (fc2 then relu4), as for a stack.
            if let j = g.node(x), Network.activationOps.contains(spec.nodes[j].op), let src = spec.nodes[j].inputs.first, g.node(src) != nil,
               consumers(src).count == 1 {
                target = src
            }
        }
        var layer = target, act: String? = nil
        if activation, let j = g.node(target), !Network.activationOps.contains(spec.nodes[j].op) {
            let next = consumers(target)
            if next.count == 1, Network.activationOps.contains(next[0].op) { act = next[0].name; target = next[0].name }
        }
        if name == nil && act == nil { layer = target }
        return Cut(end: -1, layer: layer, activation: act, shape: g.sampleShape(target) ?? [], value: target)
    }

    static func dynamicInput(_ g: Graph, _ i: Int) -> String? {
        g.description.nodes[i].inputs.first { g.node($0) != nil || g.description.inputs.contains($0) }
    }

    /// The classifier of a graph's output: the last fully connected node (Gemm or MatMul)
    /// before it, looking past a final softmax, dropout or bias addition.
    static func classifierNode(_ g: Graph, output: String) -> Int? {
        let spec = g.description
        var i = g.node(output)
        while let k = i, ["Softmax", "LogSoftmax", "Identity", "Dropout", "Add"].contains(spec.nodes[k].op),
              spec.nodes[k].op != "Add" || spec.nodes[k].inputs.filter({ g.node($0) != nil || spec.inputs.contains($0) }).count == 1,
              let d = dynamicInput(g, k) {
            i = g.node(d)
        }
        guard let c = i, ["Gemm", "MatMul"].contains(spec.nodes[c].op) else { return nil }
        return c
    }

    /// The fully connected layer that scores a task (the default one when nil): the last layer of
    /// a stack, or a graph's classifier node, which must be a fully connected layer with its
    /// weights (what fine-tuning replaces by a new head).
    public func classifier(task: Task? = nil) throws -> Linear {
        if let s = sequential {
            guard let l = s.layers.last as? Linear else { throw TLError.usage("the network does not end in a fully connected classifier") }
            return l
        }
        let g = graph!
        guard let c = Network.classifierNode(g, output: (task ?? tasks[0]).output), let l = g.layer(ofNode: c) as? Linear else {
            throw TLError.usage("the network's output does not come from a fully connected layer with fixed weights (Gemm), which fine-tuning can replace")
        }
        return l
    }

    /// The network up to a cut, applied to a normalized batch.
    public func forward(_ x: Tensor, to cut: Cut, _ ctx: Context) throws -> Tensor {
        if let g = graph, let v = cut.value { return try g.forward([g.description.inputs[cut.input]: x], until: v, ctx) }
        return try Sequential.run(sequential!.layers[..<cut.end], x, ctx)
    }

    func contains(_ l: Layer, _ target: Layer) -> Bool {
        l === target || l.children.contains { contains($0, target) }
    }

    /// Takes the values of every parameter and buffer from `other`, a network of the same
    /// structure (a checkpoint of this one): the same names and shapes, nothing missing.
    public func adopt(_ other: Network) throws {
        var theirs: [String: Tensor] = [:]
        for p in other.parameters { theirs[p.name] = p.value }
        for (n, t) in other.buffers { theirs[n] = t }
        var mine: [(String, Tensor)] = parameters.map { ($0.name, $0.value) } + buffers
        mine = mine.filter { $0.1.dtype == .f32 }
        guard Set(mine.map(\.0)) == Set(theirs.filter { $0.value.dtype == .f32 }.keys) else {
            throw TLError.data("the network's tensors differ from the ones these options build")
        }
        for (n, t) in mine {
            guard let o = theirs[n], o.shape == t.shape else { throw TLError.data("tensor '\(n)' has another shape than these options build") }
            t.rawPointer.copyMemory(from: o.rawPointer, byteCount: t.byteCount)
        }
    }

    /// A twin for data-parallel training: the same layers, built afresh, with their own
    /// activation caches and gradients. `share(with:)` points its parameters at this network's
    /// values, so an optimizer step on this network is seen by the twin.
    public func replica() throws -> Network {
        let r: Network
        if let g = graph {
            var t: [String: Tensor] = [:]
            for p in parameters { t[p.name] = p.value }
            for (n, b) in buffers { t[n] = b }
            for (n, c) in g.constants { t[n] = c }
            r = try Network(graph: g.description, tensors: t, inputs: inputs, tasks: tasks)
        } else {
            r = try Network(arch: arch, input: input, classes: classes)
            r.tasks = tasks
        }
        let mine = parameters, theirs = r.parameters
        guard mine.count == theirs.count, zip(mine, theirs).allSatisfy({ $0.name == $1.name && $0.value.shape == $1.value.shape }) else {
            throw TLError(.software, "a replica of the network has other parameters than the network")
        }
        r.share(with: self)
        return r
    }

    /// Makes this network's parameters use `master`'s values (the same memory) and frozen flags.
    public func share(with master: Network) {
        for (p, m) in zip(parameters, master.parameters) { p.value = m.value; p.frozen = m.frozen }
    }

    // MARK: model file

    /// The model as tl-format records: stream meta (kind model, arch, input, classes, meta) and
    /// one tensor per parameter and buffer, by name.
    public func write(to w: TLTWriter) throws {
        for p in parameters { try w.write(name: p.name, tensor: p.value) }
        for (n, t) in buffers { try w.write(name: n, tensor: t) }
    }

    public var streamMeta: JSON {
        var m: [String: JSON] = ["kind": "model", "arch": .string(arch), "input": input.json,
                                 "classes": .array(classes.map { .string($0) }), "train": meta]
        if let g = graph { m["graph"] = g.description.json }
        if inputs.count > 1 { m["inputs"] = .array(inputs.map(\.json)) }
        if tasks.count > 1 || !tasks[0].name.isEmpty { m["tasks"] = .array(tasks.map(\.json)) }
        return .object(m)
    }

    public func save(_ path: String, producer: String, extra: [(String, Tensor)] = [], extraMeta: JSON? = nil) throws {
        let out = try Output(path)
        do {
            var m = streamMeta
            if let e = extraMeta, case .object(var o) = m { o["checkpoint"] = e; m = .object(o) }
            let w = try TLTWriter(out, producer: producer, meta: m)
            try write(to: w)
            for (n, t) in extra { try w.write(name: n, tensor: t) }
            try w.finish()
            try out.commit()
        } catch { out.abandon(); throw error }
    }

    /// Loads a model file strictly: every parameter and buffer present with its shape, nothing
    /// unknown except `opt.` state (checkpoints). Returns the network and the extra tensors.
    public static func load(_ path: String) throws -> (Network, [(String, Tensor)], JSON?) {
        if path.lowercased().hasSuffix(".onnx") { return (try importONNX(path), [], nil) }
        let r = try openRecords(path)
        let set = try readAll(r)
        guard let m = r.streamMeta, m["kind"]?.string == "model", let arch = m["arch"]?.string, let inp = m["input"] else {
            throw TLError.data("not a tl model file (no kind \"model\" in the stream header)", file: path)
        }
        let classes = m["classes"]?.array?.compactMap { $0.string } ?? []
        if let gj = m["graph"] {
            // A graph adopts its tensors by name; every tensor of the file must be one it uses.
            let net = try annotating(file: path) { () throws -> Network in
                let spec = try GraphSpec(json: gj)
                let inputs = try m["inputs"]?.array.map { try $0.map { try InputSpec(json: $0) } } ?? [try InputSpec(json: inp)]
                var tasks = [Task(name: "", output: spec.outputs[0], classes: classes)]
                if let tj = m["tasks"]?.array {
                    tasks = try tj.map { t in
                        guard let n = t["name"]?.string, let o = t["output"]?.string else { throw TLError.data("model task description is incomplete") }
                        return Task(name: n, output: o, classes: t["classes"]?.array?.compactMap { $0.string } ?? [])
                    }
                }
                return try Network(graph: spec, tensors: set.tensors, inputs: inputs, tasks: tasks)
            }
            net.meta = m["train"] ?? .object([:])
            let used = Set(net.parameters.map(\.name) + net.buffers.map(\.0))
            var extra: [(String, Tensor)] = []
            for n in set.names where !used.contains(n) {
                guard n.hasPrefix("opt.") else { throw TLError.data("model has tensor '\(n)', which the graph does not use", file: path) }
                extra.append((n, set.tensors[n]!))
            }
            return (net, extra, m["checkpoint"])
        }
        let net = try annotating(file: path) { try Network(arch: arch, input: try InputSpec(json: inp), classes: classes) }
        net.meta = m["train"] ?? .object([:])
        var used = Set<String>()
        func take(_ name: String, _ dst: Tensor) throws {
            guard let t = set.tensors[name] else { throw TLError.data("model lacks tensor '\(name)'", file: path) }
            guard t.shape == dst.shape, t.dtype == .f32 else {
                throw TLError.data("tensor '\(name)' is \(t.dtype.shortName) \(shapeString(t.shape)); the architecture needs f32 \(shapeString(dst.shape))", file: path)
            }
            dst.rawPointer.copyMemory(from: t.rawPointer, byteCount: t.byteCount)
            used.insert(name)
        }
        for p in net.parameters { try take(p.name, p.value) }
        for (n, t) in net.buffers { try take(n, t) }
        var extra: [(String, Tensor)] = []
        for n in set.names where !used.contains(n) {
            guard n.hasPrefix("opt.") else { throw TLError.data("model has tensor '\(n)', which the architecture does not use", file: path) }
            extra.append((n, set.tensors[n]!))
        }
        return (net, extra, m["checkpoint"])
    }

    /// An ONNX model as a network, with the input normalization and class names given (by
    /// default none: the model takes its input as it is, and classes are numbered).
    public static func importONNX(_ path: String, input: InputSpec? = nil, classes: [String] = [], primary: String? = nil) throws -> Network {
        let f = try Input.open(path).map()
        return try annotating(file: path) {
            let model = try ONNX.model(f.bytes)
            let r = try ONNXImport.convert(model, primary: primary)
            guard r.spec.inputs.count == 1 else {
                throw TLError.data("the model has \(r.spec.inputs.count) inputs; a tl network takes one")
            }
            let shape = Array(r.inputShapes[0].dropFirst())
            guard r.batched[0] || r.inputShapes[0][0] == 1 else {
                throw TLError.data("the model's input has a fixed batch of \(r.inputShapes[0][0]); tl needs the batch axis free (or 1)")
            }
            var spec = input ?? InputSpec(shape: shape)
            spec.shape = shape
            let net = try Network(graph: r.spec, tensors: r.tensors, input: spec, classes: classes)
            net.meta = ["onnx": ["producer": .string(model.producer), "opset": .number(Double(model.opset)), "ir_version": .number(Double(model.irVersion))]]
            return net
        }
    }
}
