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

/// A network: the layers it is made of, the input it expects and the class names of its head.
/// Its body is either a stack of layers built from an architecture spec (`Architectures`) or a
/// graph of operations (an imported ONNX model, a multi-branch network).
public final class Network {
    /// The architecture spec of a stack, or "graph".
    public let arch: String
    public let input: InputSpec
    public var classes: [String]
    public let body: Layer
    /// How it was made (command line, seed, data fingerprint, version): kept in the model file.
    public var meta: JSON = .object([:])

    public var sequential: Sequential? { body as? Sequential }
    public var graph: Graph? { body as? Graph }

    public init(arch: String, input: InputSpec, classes: [String]) throws {
        self.arch = arch; self.input = input; self.classes = classes
        body = try Architectures.build(arch, input: input.shape, classes: classes.count)
    }

    /// A graph network; its first output must give one score per class (named "0", "1", ...
    /// when `classes` is empty).
    public init(graph spec: GraphSpec, tensors: [String: Tensor], input: InputSpec, classes: [String]) throws {
        arch = "graph"; self.input = input
        let g = try Graph(spec, inputShapes: [[1] + input.shape], tensors: tensors)
        body = g
        let out = g.sampleShape(spec.outputs[0]) ?? []
        guard out.count == 1 else {
            throw TLError.data("the network's output '\(spec.outputs[0])' is \(shapeString(out)) per sample, not one score per class")
        }
        guard classes.isEmpty || classes.count == out[0] else {
            throw TLError.data("\(classes.count) class names for \(out[0]) outputs")
        }
        self.classes = classes.isEmpty ? (0..<out[0]).map(String.init) : classes
    }

    /// The value the network outputs (its last layer, or its graph's first output).
    public var outputName: String { graph?.description.outputs[0] ?? sequential!.layers.last!.name }

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

    /// Logits for a normalized batch [N, ...input.shape].
    public func forward(_ x: Tensor, _ ctx: Context) throws -> Tensor { try body.forward(x, ctx) }

    /// Raw data (any numeric dtype, [N, ...]) to the normalized f32 batch the network expects:
    /// x = (raw·scale − mean[c]) / std[c]. Any per-sample shape with the right element count in
    /// C order is accepted (gray [N, H, W] for a [1, H, W] input, flattened rows).
    public func normalize(_ raw: Tensor) throws -> Tensor {
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
    public func prepare(_ raw: Tensor, threads: Int = Threads.count) throws -> Tensor {
        guard input.shape.count == 3, raw.rank == 3 || raw.rank == 4 else { return try normalize(raw) }
        let (C, H, W) = (input.shape[0], input.shape[1], input.shape[2])
        let n = raw.rows
        let (c, h, w) = raw.rank == 3 ? (1, raw.shape[1], raw.shape[2]) : (raw.shape[1], raw.shape[2], raw.shape[3])
        if c == C && h == H && w == W { return try normalize(raw) }
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
        return try normalize(f)
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
        public init(end: Int, layer: String, activation: String?, shape: [Int], value: String? = nil) {
            self.end = end; self.layer = layer; self.activation = activation; self.shape = shape; self.value = value
        }
    }

    /// The cut for `--layer NAME`: the output of that layer (a top-level layer of a stack; a
    /// node of a graph, by its name or any alias), followed by the activation right after it
    /// when `activation` is true (codes are taken after the ReLU that follows them in training,
    /// as in the cs231n recipe). Without a name: the layer before the classifier (the last
    /// layer, which must be linear), with its activation.
    public func cut(layer name: String?, activation: Bool) throws -> Cut {
        if let g = graph { return try graphCut(g, name, activation) }
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

    func graphCut(_ g: Graph, _ name: String?, _ activation: Bool) throws -> Cut {
        let spec = g.description
        func consumers(_ v: String) -> [GraphSpec.Node] { spec.nodes.filter { $0.inputs.contains(v) } }
        var target: String
        if let name = name {
            guard let t = g.node(name).map({ _ in name }) ?? spec.aliases[name] ?? (spec.inputs.contains(name) ? name : nil) else {
                throw TLError.usage("the network has no layer '\(name)' (see --list-layers)")
            }
            target = t
        } else {
            // The input of the classifier: the last fully connected node before the output,
            // looking past a final softmax, dropout or bias addition.
            func dynamicInput(_ i: Int) -> String? { spec.nodes[i].inputs.first { g.node($0) != nil || spec.inputs.contains($0) } }
            var i = g.node(spec.outputs[0])
            while let k = i, ["Softmax", "LogSoftmax", "Identity", "Dropout", "Add"].contains(spec.nodes[k].op),
                  spec.nodes[k].op != "Add" || spec.nodes[k].inputs.filter({ g.node($0) != nil || spec.inputs.contains($0) }).count == 1,
                  let d = dynamicInput(k) {
                i = g.node(d)
            }
            guard let c = i, ["Gemm", "MatMul"].contains(spec.nodes[c].op), let x = dynamicInput(c) else {
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

    /// The network up to a cut, applied to a normalized batch.
    public func forward(_ x: Tensor, to cut: Cut, _ ctx: Context) throws -> Tensor {
        if let g = graph, let v = cut.value { return try g.forward(x, until: v, ctx) }
        return try sequential!.layers[..<cut.end].reduce(x) { try $1.forward($0, ctx) }
    }

    func contains(_ l: Layer, _ target: Layer) -> Bool {
        l === target || l.children.contains { contains($0, target) }
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
            let net = try annotating(file: path) {
                try Network(graph: try GraphSpec(json: gj), tensors: set.tensors, input: try InputSpec(json: inp), classes: classes)
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
