import XCTest
@testable import TLCore
@testable import TLNN
@testable import TLMethods

/// Fine-tuning's networks: layer selection, layer transfer from stacks and graphs, Learning
/// without Forgetting's second head, multitask networks (shared and per-input layers),
/// progressive networks, and the training objective that combines their losses.
final class FineTuneTests: XCTestCase {
    func source(_ arch: String = "lenet5", input: [Int] = [1, 28, 28], classes: Int = 4) throws -> Network {
        let n = try Network(arch: Architectures.expand(arch), input: InputSpec(shape: input, scale: 1, mean: [0.2], std: [0.5]),
                            classes: (0..<classes).map { "s\($0)" })
        n.initialize(seed: 11)
        return n
    }
    func bytes(_ t: Tensor) -> [UInt8] { Array(t.rawBytes) }
    func values(_ net: Network) -> [String: Tensor] {
        var d: [String: Tensor] = [:]
        for p in net.parameters { d[p.name] = p.value }
        for (n, t) in net.buffers { d[n] = t }
        return d
    }

    func testSelectingLayers() throws {
        let units = FineTune.units(try source())
        func names(_ s: String) throws -> [String] { try FineTune.select(s, in: units, option: "copy").map(\.name) }
        XCTAssertEqual(units.map(\.name), ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten", "fc1", "relu3", "fc2", "relu4", "fc3"])
        XCTAssertEqual(try names("conv1..pool2"), ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2"])
        XCTAssertEqual(try names("..conv2"), ["conv1", "relu1", "pool1", "conv2"])
        XCTAssertEqual(try names("fc2.."), ["fc2", "relu4", "fc3"])
        XCTAssertEqual(try names("fc2,conv1"), ["conv1", "fc2"])
        XCTAssertEqual(try names("all").count, 12)
        XCTAssertEqual(try names("none"), [])
        for bad in ["conv9", "fc2..conv1", "conv1,,fc1"] {
            XCTAssertThrowsError(try names(bad), bad) { e in XCTAssertEqual((e as? TLError)?.kind, .usage) }
        }
        // A name stands for the layers inside it: a progressive network's first column.
        let (p, _) = try FineTune.progressive(source: try source(), classes: ["a", "b"], seed: 1)
        let col1 = try FineTune.select("source", in: FineTune.units(p), option: "freeze")
        XCTAssertEqual(col1.count, 12)
        XCTAssertTrue(col1.allSatisfy { $0.name.hasPrefix("source.") })
    }

    /// Layer transfer from a stack: copied layers are the source's bytes, the classifier is new
    /// and sized for the target, layers left out of --copy are re-initialized.
    func testTransferFromStack() throws {
        let src = try source()
        let t = try FineTune.transfer(src, classes: ["a", "b", "c"], copy: nil, seed: 3)
        XCTAssertEqual(t.classifier, "fc3")
        XCTAssertEqual(t.net.classes, ["a", "b", "c"])
        XCTAssertEqual(t.net.input, src.input, "the source's normalization")
        let s = values(src), d = values(t.net)
        for (name, v) in d {
            if name.hasPrefix("fc3.") { XCTAssertEqual(v.shape.first, 3, name); continue }
            XCTAssertEqual(bytes(v), bytes(s[name]!), name)
            XCTAssertTrue(t.copied.contains(name), name)
        }
        let partial = try FineTune.transfer(src, classes: ["a", "b", "c"], copy: "conv1..pool2", seed: 3)
        let pd = values(partial.net)
        XCTAssertEqual(bytes(pd["conv2.weight"]!), bytes(s["conv2.weight"]!))
        XCTAssertNotEqual(bytes(pd["fc1.weight"]!), bytes(s["fc1.weight"]!), "fc1 is re-initialized")
        XCTAssertEqual(partial.copied, ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"])
        // The classifier is copied only when the classes fit.
        XCTAssertThrowsError(try FineTune.transfer(src, classes: ["a", "b"], copy: "all", seed: 3))
        let same = try FineTune.transfer(src, classes: ["w", "x", "y", "z"], copy: "all", seed: 3)
        XCTAssertEqual(bytes(values(same.net)["fc3.weight"]!), bytes(s["fc3.weight"]!))
    }

    /// Layer transfer from a graph (an imported network): the nodes after the classifier go,
    /// the classifier is replaced, and nodes left out of --copy are re-initialized; the copied
    /// part computes what the source computed.
    func testTransferFromGraph() throws {
        let stack = try source("conv3x3-4,bn,relu,maxpool2,fc16,relu", input: [1, 8, 8], classes: 5)
        // Some running statistics, so that a reset BatchNorm is visible.
        let bn = stack.layer("bn1") as! BatchNorm
        for j in 0..<4 { bn.runningMean.f32[j] = Float(j) * 0.1; bn.runningVar.f32[j] = 1.5 }
        let src = try Lowering.graphNetwork(stack)
        let t = try FineTune.transfer(src, classes: ["a", "b"], copy: nil, seed: 4)
        XCTAssertNotNil(t.net.graph)
        XCTAssertEqual(t.net.outputName, "fc2")
        XCTAssertEqual(try t.net.classifier().weight.value.shape, [2, 16])
        let x = random([3, 1, 8, 8], seed: 5), c = Context(training: false, threads: 1)
        let a = try src.forward(x, to: try src.cut(layer: "relu2", activation: false), c)
        let b = try t.net.forward(x, to: try t.net.cut(layer: "relu2", activation: false), c)
        XCTAssertEqual(a.floats, b.floats, "copied layers compute the same")
        let p = try FineTune.transfer(src, classes: ["a", "b"], copy: "conv1", seed: 4)
        let pv = values(p.net), sv = values(src)
        XCTAssertEqual(bytes(pv["conv1.weight"]!), bytes(sv["conv1.weight"]!))
        XCTAssertNotEqual(bytes(pv["fc1.weight"]!), bytes(sv["fc1.weight"]!))
        XCTAssertEqual(pv["bn1.running_mean"]!.floats, [0, 0, 0, 0], "a BatchNorm not copied starts anew")
        XCTAssertEqual(pv["bn1.running_var"]!.floats, [1, 1, 1, 1])
    }

    /// Learning without Forgetting's network: the new classifier and, as task "source", the
    /// source's classifier on the same features, which at the start gives the source's outputs.
    func testSourceHeadStartsAsTheSource() throws {
        let src = try source()
        let t = try FineTune.transfer(src, classes: ["a", "b"], copy: nil, seed: 2)
        let net = try FineTune.withSourceHead(t, source: src)
        XCTAssertEqual(net.tasks.map(\.name), ["", "source"])
        XCTAssertEqual(net.tasks[1].classes, src.classes)
        let x = random([4, 1, 28, 28], seed: 6), c = Context(training: false, threads: 1)
        let old = try src.forward(x, c)
        let kept = try net.forward(x, to: try net.cut(layer: net.tasks[1].output, activation: false), c)
        for i in 0..<old.count { XCTAssertEqual(kept.f32[i], old.f32[i], accuracy: 1e-6) }
        XCTAssertEqual(try net.forward(x, c).shape, [4, 2])
    }

    /// The training objective of a two-task network with missing labels, distillation of the
    /// second head toward a teacher and the L2-SP penalty: its value is the sum of the parts
    /// computed separately, and its gradient matches finite differences.
    func testObjectiveValueAndGradient() throws {
        let inputs = [(name: "input", spec: InputSpec(shape: [1, 6, 6]))]
        let net = try FineTune.multitask(arch: "conv3x3-3,tanh,maxpool2,fc6,tanh", inputs: inputs,
                                         tasks: [.init(name: "a", classes: ["0", "1", "2"], input: 0), .init(name: "b", classes: ["0", "1"], input: 0)],
                                         inputLayers: 0, seed: 7)
        let teacher = try Network(arch: "fc5,tanh,fc2", input: InputSpec(shape: [1, 6, 6]), classes: ["0", "1"])
        teacher.initialize(seed: 8)
        let n = 7
        let x = random([n, 1, 6, 6], seed: 9)
        let ya = [0, 2, -1, 1, 1, -1, 0], yb = [-1, 1, 0, -1, -1, 1, 1]
        var obj = Objective()
        obj.taskWeights = [1, 0.5]
        obj.distillation = Distillation(task: 1, teacher: teacher, lambda: 0.7, temperature: 2)
        let params = net.parameters
        let w0 = params[0].value.copy()
        for i in 0..<w0.count { w0.f32[i] += 0.1 }
        obj.penalty.anchored = [(params[0], w0, 0.2)]
        obj.penalty.shrunk = [(net.parameters.first { $0.name == "head.a.weight" }!, 0.05)]
        var cfg = TrainConfig(); cfg.threads = 1
        let set = TrainingSet(parts: [TrainingSet.Part(input: 0, x: x, labels: [ya, yb])])
        let tr = Trainer(net: net, config: cfg, set: set, objective: obj)
        let rows = Array(0..<n)
        let (loss, _, labeled) = try tr.lossAndGradients(rows: rows)
        XCTAssertEqual(labeled, 5, "task a has 5 labeled rows")
        // The same value from the parts.
        let c = Context(training: false, threads: 1)
        let outs = try net.forward(x, input: 0, outputs: ["head.a", "head.b"], c)
        func sub(_ t: Tensor, _ y: [Int]) throws -> (Tensor, [Int]) {
            let keep = y.indices.filter { y[$0] >= 0 }
            return (try t.gathered(keep), keep.map { y[$0] })
        }
        let (la, ka) = try sub(outs["head.a"]!, ya), (lb, kb) = try sub(outs["head.b"]!, yb)
        var expected = Loss.crossEntropy(logits: la, labels: ka).0 + 0.5 * Loss.crossEntropy(logits: lb, labels: kb).0
        expected += 0.7 * Loss.distillation(student: outs["head.b"]!, teacher: try teacher.forward(x, c), temperature: 2).0
        var pen = 0.0
        for i in 0..<w0.count { let d = Double(params[0].v[i] - w0.f32[i]); pen += 0.1 * d * d }
        let ha = net.parameters.first { $0.name == "head.a.weight" }!
        for i in 0..<ha.count { pen += 0.025 * Double(ha.v[i] * ha.v[i]) }
        XCTAssertEqual(loss, expected + pen, accuracy: 1e-5)
        // The gradient.
        let grads = params.map { $0.grad.copy() }
        var rng = RNG(seed: 12)
        for (p, g) in zip(params, grads) {
            for _ in 0..<min(8, p.count) {
                let i = rng.below(p.count), old = p.v[i]
                p.v[i] = old + 1e-3; let up = try tr.lossAndGradients(rows: rows).loss
                p.v[i] = old - 1e-3; let down = try tr.lossAndGradients(rows: rows).loss
                p.v[i] = old
                let numeric = Float((up - down) / 2e-3)
                XCTAssertEqual(g.f32[i], numeric, accuracy: 2e-2 * max(abs(numeric), abs(g.f32[i])) + 2e-3, "\(p.name)[\(i)]")
            }
        }
    }

    /// A progressive network trains its new column and adapters and leaves the source column
    /// exactly as it was: the same bytes, the same outputs for the source task.
    func testProgressiveKeepsTheSourceColumnBitIdentical() throws {
        let src = try source("conv3x3-4,bn,relu,maxpool2,conv3x3-6,relu,fc12,relu", input: [1, 8, 8], classes: 3)
        let (net, column1) = try FineTune.progressive(source: src, classes: ["a", "b"], seed: 5)
        XCTAssertEqual(column1, Set(values(src).keys.map { "source." + $0 }))
        for p in net.parameters where column1.contains(p.name) { p.frozen = true }
        XCTAssertEqual(net.tasks.map(\.name), ["", "source"])
        XCTAssertNotNil(net.layer("lateral.conv2"), "a lateral adapter into conv2")
        XCTAssertNotNil(net.layer("lateral.fc2"), "and into the classifier")
        XCTAssertNil(net.layer("lateral.conv1"), "none into the first layer")
        let before = values(net).mapValues { $0.copy() }
        let x = random([24, 1, 8, 8], seed: 3), y = labels(24, 2, seed: 4)
        var cfg = TrainConfig(); cfg.epochs = 2; cfg.batch = 8; cfg.threads = 1
        let t = Trainer(net: net, config: cfg, set: TrainingSet(LabeledData(x: x, y: y)))
        for _ in 0..<2 { _ = try t.trainEpoch(val: nil) { _, _ in } }
        for (name, v) in values(net) {
            let same = bytes(v) == bytes(before[name]!)
            if column1.contains(name) { XCTAssertTrue(same, "\(name) changed") }
            else if name.hasSuffix(".weight") { XCTAssertFalse(same, "\(name) did not learn") }
        }
        let c = Context(training: false, threads: 1)
        let xs = random([5, 1, 8, 8], seed: 6)
        let mine = try net.forward(xs, to: try net.cut(layer: "source.fc2", activation: false), c)
        XCTAssertEqual(bytes(mine), bytes(try src.forward(xs, c)), "the source task answers exactly as the source network")
    }

    /// The variant of multitask learning where each input has its own first layers and the
    /// middle is shared: one set of middle weights, both inputs' examples train it, and each
    /// task runs from its own input.
    func testMultitaskWithInputLayers() throws {
        let inputs = [(name: "gray", spec: InputSpec(shape: [1, 8, 8])), (name: "rgb", spec: InputSpec(shape: [3, 8, 8]))]
        let net = try FineTune.multitask(arch: "conv3x3-4,relu,conv3x3-5,relu,maxpool2,fc6,relu", inputs: inputs,
                                         tasks: [.init(name: "g", classes: ["0", "1"], input: 0), .init(name: "c", classes: ["0", "1", "2"], input: 1)],
                                         inputLayers: 2, seed: 3)
        let names = Set(net.parameters.map(\.name))
        XCTAssertTrue(names.isSuperset(of: ["gray.conv1.weight", "rgb.conv1.weight", "conv2.weight", "fc1.weight", "head.g.weight", "head.c.weight"]), "\(names.sorted())")
        XCTAssertEqual(net.parameters.filter { $0.name == "fc1.weight" }.count, 1, "the middle's weights exist once")
        XCTAssertEqual(try net.cut(layer: "head.c", activation: false).input, 1)
        XCTAssertThrowsError(try Network(graph: net.graph!.description, tensors: net.graph!.tensors, inputs: [inputs[0].spec], tasks: net.tasks))
        let xa = random([10, 1, 8, 8], seed: 1), xb = random([12, 3, 8, 8], seed: 2)
        let set = TrainingSet(parts: [.init(input: 0, x: xa, labels: [labels(10, 2, seed: 3), [Int](repeating: -1, count: 10)]),
                                      .init(input: 1, x: xb, labels: [[Int](repeating: -1, count: 12), labels(12, 3, seed: 4)])])
        let fc1 = net.parameters.first { $0.name == "fc1.weight" }!, stem = net.parameters.first { $0.name == "rgb.conv1.weight" }!
        var cfg = TrainConfig(); cfg.threads = 1
        let t = Trainer(net: net, config: cfg, set: set)
        // Rows of the rgb input alone reach the shared middle and the rgb stem, not the gray stem.
        _ = try t.lossAndGradients(rows: Array(10..<22))
        XCTAssertTrue(fc1.grad.floats.contains { $0 != 0 }); XCTAssertTrue(stem.grad.floats.contains { $0 != 0 })
        XCTAssertFalse(net.parameters.first { $0.name == "gray.conv1.weight" }!.grad.floats.contains { $0 != 0 })
        // Both inputs in one batch: the shared weights get the sum of both inputs' gradients.
        let onlyA = try t.lossAndGradients(rows: Array(0..<10)).loss, ga = fc1.grad.copy()
        let onlyB = try t.lossAndGradients(rows: Array(10..<22)).loss, gb = fc1.grad.copy()
        let both = try t.lossAndGradients(rows: Array(0..<22)).loss
        XCTAssertEqual(both, onlyA + onlyB, accuracy: 1e-9)
        for i in 0..<fc1.count { XCTAssertEqual(fc1.g[i], ga.f32[i] + gb.f32[i], accuracy: 1e-6) }
        // A saved and reloaded network is the same network.
        let path = NSTemporaryDirectory() + "tl-mt-\(getpid()).tlm"
        defer { unlink(path) }
        try net.save(path, producer: "test")
        let (back, _, _) = try Network.load(path)
        XCTAssertEqual(back.tasks, net.tasks)
        XCTAssertEqual(back.inputs, net.inputs)
        let c = Context(training: false, threads: 1)
        XCTAssertEqual(bytes(try back.forward(xb, to: try back.cut(layer: "head.c", activation: false), c)),
                       bytes(try net.forward(xb, to: try net.cut(layer: "head.c", activation: false), c)))
    }
}
