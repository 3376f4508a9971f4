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
        let c = shape.count == 3 ? shape[0] : 1
        guard shape.allSatisfy({ $0 > 0 }), scale.isFinite,
              [1, c].contains(mean.count), [1, c].contains(std.count),
              mean.allSatisfy({ $0.isFinite }), std.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw TLError.data("model input description is inconsistent: shape \(s), \(m.count) means and \(d.count) standard deviations (1 or \(c) positive ones needed)")
        }
    }
}

/// A network: an architecture spec, the layers it builds, the input it expects and the class
/// names of its head. Built-in architectures and the spec language are in `Architectures`.
public final class Network {
    public let arch: String
    public let input: InputSpec
    public var classes: [String]
    public let body: Sequential
    /// How it was made (command line, seed, data fingerprint, version): kept in the model file.
    public var meta: JSON = .object([:])

    public init(arch: String, input: InputSpec, classes: [String]) throws {
        self.arch = arch; self.input = input; self.classes = classes
        body = try Architectures.build(arch, input: input.shape, classes: classes.count)
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

    /// Logits for a normalized batch [N, ...input.shape].
    public func forward(_ x: Tensor, _ ctx: Context) throws -> Tensor { try body.forward(x, ctx) }

    /// Raw data (any numeric dtype, [N, ...]) to the normalized f32 batch the network expects.
    /// Any per-sample shape with the right element count in C order is accepted (gray
    /// [N, H, W] for a [1, H, W] input).
    public func normalize(_ raw: Tensor) throws -> Tensor {
        let per = input.shape.reduce(1, *)
        guard raw.rank >= 1, perSample(raw.shape) == per else {
            throw TLError.data("inputs are \(shapeString(Array(raw.shape.dropFirst()))) per sample; the network expects \(shapeString(input.shape))")
        }
        let n = raw.rows
        let f = try raw.converted(to: .f32)
        let out = Tensor.f32([n] + input.shape)
        let c = input.shape.count == 3 ? input.shape[0] : 1, plane = per / c
        for ch in 0..<c {
            let m = input.mean[input.mean.count == 1 ? 0 : ch], s = input.std[input.std.count == 1 ? 0 : ch]
            let a = input.scale / s, b = -m / s
            for i in 0..<n {
                let src = f.f32 + i * per + ch * plane, dst = out.f32 + i * per + ch * plane
                for q in 0..<plane { dst[q] = src[q] * a + b }
            }
        }
        return out
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

    /// Every named layer in order with its output shape for one sample.
    public func layerShapes() throws -> [(String, String, [Int])] {
        var out: [(String, String, [Int])] = []
        var shape = [1] + input.shape
        for l in body.layers {
            shape = try l.outputShape(shape)
            out.append((l.name, l.spec, Array(shape.dropFirst())))
        }
        return out
    }

    // MARK: model file

    /// The model as tl-format records: stream meta (kind model, arch, input, classes, meta) and
    /// one tensor per parameter and buffer, by name.
    public func write(to w: TLTWriter) throws {
        for p in parameters { try w.write(name: p.name, tensor: p.value) }
        for (n, t) in buffers { try w.write(name: n, tensor: t) }
    }

    public var streamMeta: JSON {
        ["kind": "model", "arch": .string(arch), "input": input.json,
         "classes": .array(classes.map { .string($0) }), "train": meta]
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
        let r = try openRecords(path)
        let set = try readAll(r)
        guard let m = r.streamMeta, m["kind"]?.string == "model", let arch = m["arch"]?.string, let inp = m["input"] else {
            throw TLError.data("not a tl model file (no kind \"model\" in the stream header)", file: path)
        }
        let classes = m["classes"]?.array?.compactMap { $0.string } ?? []
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
}
