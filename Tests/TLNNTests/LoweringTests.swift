import XCTest
@testable import TLCore
@testable import TLNN

/// Stacks written as graphs, parameters shared between graph nodes, the parameter penalty of
/// L2-SP, frozen layers.
final class LoweringTests: XCTestCase, LayerGradientChecking {
    func images(_ n: Int, _ shape: [Int], seed: UInt64) -> Tensor { randomTensor([n] + shape, seed: seed) }

    /// Every built-in architecture (and one with every kind of layer) computes the same as a
    /// graph: conv, pooling, fc, BatchNorm, residual blocks, global pooling, dropout (the
    /// identity in evaluation), every activation. In training mode too (batch statistics).
    func testLoweredStacksComputeTheSame() throws {
        let cases: [(String, [Int])] = [("lenet5", [1, 28, 28]), ("cnn-small", [1, 12, 12]), ("resnet-small", [3, 16, 16]),
                                        ("conv3x3-4-s2,bn,lrelu0.2,avgpool2,conv1x1-6,gelu,relu6,flatten,dropout0.3,fc7,tanh,fc5,sigmoid,fc4", [2, 10, 10])]
        for (arch, shape) in cases {
            let net = try Network(arch: Architectures.expand(arch), input: InputSpec(shape: shape), classes: ["a", "b", "c", "d"])
            net.initialize(seed: 5)
            let g = try Lowering.graphNetwork(net)
            XCTAssertNotNil(g.graph, arch)
            XCTAssertEqual(Set(g.parameters.map(\.name)), Set(net.parameters.map(\.name)), arch)
            XCTAssertEqual(g.outputName, net.outputName, arch)
            let x = images(3, shape, seed: 8)
            let a = try net.forward(x, Context(training: false, threads: 1)), b = try g.forward(x, Context(training: false, threads: 1))
            XCTAssertEqual(a.shape, b.shape, arch)
            for i in 0..<a.count { XCTAssertEqual(a.f32[i], b.f32[i], accuracy: 1e-5 * max(1, abs(a.f32[i])), "\(arch) [\(i)]") }
            if !arch.contains("dropout") {
                let ta = try net.forward(x, Context(training: true, threads: 1)), tb = try g.forward(x, Context(training: true, threads: 1))
                for i in 0..<ta.count { XCTAssertEqual(ta.f32[i], tb.f32[i], accuracy: 1e-5 * max(1, abs(ta.f32[i])), "\(arch) training [\(i)]") }
            }
            // The graph's values are its own: training it leaves the stack alone.
            let before = net.parameters[0].value.floats
            g.parameters[0].v[0] += 1
            XCTAssertEqual(net.parameters[0].value.floats, before)
        }
    }

    /// Two nodes reading the same weights share one parameter: one tensor in the model, both
    /// nodes' gradients summed into it (finite differences through the whole graph).
    func testSharedParametersAccumulateGradients() throws {
        let w = randomTensor([3, 4], seed: 1), b = randomTensor([3], seed: 2)
        let spec = GraphSpec(inputs: ["a", "b"], outputs: ["sum"], nodes: [
            .init(name: "fa", op: "Gemm", inputs: ["a", "fc.weight", "fc.bias"], attrs: ["transB": 1]),
            .init(name: "fb", op: "Gemm", inputs: ["b", "fc.weight", "fc.bias"], attrs: ["transB": 1]),
            .init(name: "ta", op: "Tanh", inputs: ["fa"]),
            .init(name: "sum", op: "Mul", inputs: ["ta", "fb"]),
        ])
        let g = try Graph(spec, inputShapes: [[2, 4], [2, 4]], tensors: ["fc.weight": w, "fc.bias": b])
        XCTAssertEqual(g.parameters.count, 2, "one weight and one bias, shared")
        let xa = randomTensor([2, 4], seed: 3), xb = randomTensor([2, 4], seed: 4), r = randomTensor([2, 3], seed: 5)
        let c = Context(training: true, threads: 1)
        func value() throws -> Double {
            let y = try g.forward(["a": xa, "b": xb], until: "sum", c)
            return (0..<y.count).reduce(0.0) { $0 + Double(y.f32[$1] * r.f32[$1]) }
        }
        for p in g.parameters { p.zeroGrad() }
        _ = try value()
        _ = g.backward(["sum": r], needInputGrad: false, c)
        for p in g.parameters {
            let grad = p.grad.copy()
            for i in 0..<p.count {
                let old = p.v[i]
                p.v[i] = old + 1e-3; let up = try value()
                p.v[i] = old - 1e-3; let down = try value()
                p.v[i] = old
                XCTAssertEqual(grad.f32[i], Float((up - down) / 2e-3), accuracy: 2e-3, "\(p.name)[\(i)]")
            }
        }
        // A learned constant read by two elementwise nodes is one parameter too (tied weights,
        // as some exporters write them); the model file then holds it once.
        let tied = GraphSpec(inputs: ["a"], outputs: ["y"], nodes: [
            .init(name: "x1", op: "Mul", inputs: ["a", "s"]), .init(name: "y", op: "Add", inputs: ["x1", "s"])])
        let tg = try Graph(tied, inputShapes: [[1, 3]], tensors: ["s": randomTensor([3], seed: 1)])
        XCTAssertEqual(tg.parameters.map(\.name), ["s"])
    }

    /// L2-SP's penalty α/2‖w − w⁰‖² + β/2‖w‖²: its value and gradient against finite
    /// differences, frozen parameters left out.
    func testParameterPenaltyGradient() {
        let a = Parameter("a.weight", shape: [5]), n = Parameter("n.weight", shape: [4]), f = Parameter("f.weight", shape: [3])
        for (p, s) in [(a, 1), (n, 2), (f, 3)] as [(Parameter, UInt64)] { p.value = randomTensor(p.value.shape, seed: s) }
        let w0 = randomTensor([5], seed: 9), w0f = randomTensor([3], seed: 10)
        f.frozen = true
        var pen = ParameterPenalty()
        pen.anchored = [(a, w0, 0.3), (f, w0f, 0.3)]
        pen.shrunk = [(n, 0.05)]
        var expected = 0.0
        for i in 0..<5 { expected += 0.15 * Double((a.v[i] - w0.f32[i]) * (a.v[i] - w0.f32[i])) }
        for i in 0..<4 { expected += 0.025 * Double(n.v[i] * n.v[i]) }
        for p in [a, n, f] { p.zeroGrad() }
        XCTAssertEqual(pen.apply(), expected, accuracy: 1e-6)
        XCTAssertEqual(f.grad.floats, [0, 0, 0], "frozen: no gradient")
        let grads = [a.grad.copy(), n.grad.copy()]
        for (p, g) in zip([a, n], grads) {
            for i in 0..<p.count {
                let old = p.v[i]
                p.v[i] = old + 1e-2; let up = pen.apply()
                p.v[i] = old - 1e-2; let down = pen.apply()
                p.v[i] = old
                XCTAssertEqual(g.f32[i], Float((up - down) / 2e-2), accuracy: 1e-4, "\(p.name)[\(i)]")
            }
        }
    }

    /// Frozen layers do not change, bit for bit, through training (weights, biases and
    /// BatchNorm running statistics), get no optimizer state, and the layers above still learn.
    func testFrozenLayersStayBitIdentical() throws {
        let net = try Network(arch: "conv3x3-4,bn,relu,maxpool2,conv3x3-6,bn,relu,gap,fc8,relu", input: InputSpec(shape: [1, 8, 8]), classes: ["a", "b", "c"])
        net.initialize(seed: 1)
        let frozen = ["conv1", "bn1", "conv2"]
        for l in net.sequential!.layers where frozen.contains(l.name) { l.parameters.forEach { $0.frozen = true } }
        let snapshot = Dictionary(uniqueKeysWithValues: (net.parameters.map { ($0.name, $0.value) } + net.buffers).map { ($0.0, $0.1.copy()) })
        var rng = RNG(seed: 3)
        let x = randomTensor([40, 1, 8, 8], seed: 4), y = (0..<40).map { _ in rng.below(3) }
        var cfg = TrainConfig(); cfg.epochs = 2; cfg.batch = 8; cfg.threads = 1
        let t = Trainer(net: net, config: cfg, data: LabeledData(x: x, y: y))
        for _ in 0..<2 { _ = try t.trainEpoch(val: nil) { _, _ in } }
        for (name, tensor) in net.parameters.map({ ($0.name, $0.value) }) + net.buffers {
            let same = snapshot[name]!.rawBytes.elementsEqual(tensor.rawBytes)
            let isFrozen = frozen.contains { name.hasPrefix($0 + ".") }
            XCTAssertEqual(same, isFrozen, "\(name) \(isFrozen ? "changed although frozen" : "did not learn")")
        }
        XCTAssertTrue(t.optimizer.state.keys.allSatisfy { k in !frozen.contains { k.hasPrefix($0 + ".") } }, "optimizer state for a frozen parameter")
    }
}
