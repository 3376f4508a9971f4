import TLCore

/// State dicts (PyTorch's name → tensor maps, as .safetensors or .npz) on tl's architectures.
///
/// tl names parameters as PyTorch names module attributes: a PyTorch module whose layers are
/// the attributes `conv1`, `conv2`, `fc1`, ... in tl's order (tl-train(1) lists them) has the
/// same state dict keys, so its weights load into tl and tl's save into it (`load_state_dict`).
/// Loading is strict: every parameter and buffer present with its shape, no key left over. It
/// forgives only what wrappers add: a `module.` (DataParallel) or `model.` prefix, and
/// BatchNorm's `num_batches_tracked` counter (tl has no use for it).
public enum StateDict {
    public static func load(_ path: String, arch: String, archName: String, input: InputSpec, classes: [String]) throws -> Network {
        let set = try readAll(try openRecords(path))
        var dict: [String: Tensor] = [:]
        for n in set.names {
            var k = n
            for p in ["module.", "model."] where k.hasPrefix(p) { k = String(k.dropFirst(p.count)) }
            if k.hasSuffix(".num_batches_tracked") { continue }
            guard dict[k] == nil else { throw TLError.data("key '\(k)' appears twice (with and without a prefix)", file: path) }
            dict[k] = set.tensors[n]!
        }
        // The class count: the classifier's output size in the state dict, unless names are given.
        var k = classes.count
        if k == 0 {
            let probe = try annotating(file: path) { try Network(arch: arch, input: input, classes: ["a", "b"]) }
            guard let head = probe.sequential?.layers.last as? Linear, let w = dict[head.weight.name], w.rank == 2 else {
                throw TLError.data("no '\(((probe.sequential?.layers.last as? Linear)?.weight.name) ?? "classifier weight")' to tell the number of classes; give --classes", file: path)
            }
            k = w.shape[0]
        }
        let names = classes.isEmpty ? (0..<k).map(String.init) : classes
        let net = try annotating(file: path) { try Network(arch: arch, input: input, classes: names) }
        var used = Set<String>()
        var missing: [String] = []
        func take(_ name: String, _ dst: Tensor) throws {
            guard let t = dict[name] else { missing.append(name); return }
            guard t.shape == dst.shape else {
                throw TLError.data("'\(name)' is \(shapeString(t.shape)); \(archName) needs \(shapeString(dst.shape))", file: path)
            }
            let f = try t.converted(to: .f32)
            if t.count > 0 { dst.rawPointer.copyMemory(from: f.rawPointer, byteCount: f.byteCount) }
            used.insert(name)
        }
        for p in net.parameters { try take(p.name, p.value) }
        for (n, t) in net.buffers { try take(n, t) }
        guard missing.isEmpty else {
            throw TLError.data("\(archName) needs \(missing.count) tensors the state dict lacks: \(missing.prefix(6).joined(separator: ", "))\(missing.count > 6 ? ", ..." : "")", file: path)
        }
        let extra = dict.keys.filter { !used.contains($0) }.sorted()
        guard extra.isEmpty else {
            throw TLError.data("the state dict has \(extra.count) tensors \(archName) does not use: \(extra.prefix(6).joined(separator: ", "))\(extra.count > 6 ? ", ..." : "")", file: path)
        }
        net.meta = ["state_dict": .string(path), "arch_name": .string(archName)]
        return net
    }
}
