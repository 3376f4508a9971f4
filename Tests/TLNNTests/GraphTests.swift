import XCTest
@testable import TLCore
@testable import TLNN

/// Graph ops: finite-difference gradients (through `checkLayer`, a graph being a layer) and
/// the graph machinery itself.
final class GraphGradientTests: XCTestCase, LayerGradientChecking {
    /// A graph on one input of shape `input` (batch included) from (name, op, inputs, attrs).
    func graph(_ input: [Int], _ nodes: [(String, String, [String], [String: JSON])], tensors: [String: Tensor] = [:]) throws -> Graph {
        let spec = GraphSpec(inputs: ["x"], outputs: [nodes.last!.0],
                             nodes: nodes.map { GraphSpec.Node(name: $0.0, op: $0.1, inputs: $0.2, attrs: $0.3) })
        return try Graph(spec, inputShapes: [input], tensors: tensors)
    }

    func testBroadcastingArithmetic() throws {
        let g = try graph([2, 3, 4], [("s", "Sigmoid", ["x"], [:]), ("m", "Mul", ["x", "s"], [:]),
                                      ("p", "Add", ["m", "bias"], [:]), ("d", "Div", ["p", "scale"], [:]), ("q", "Sub", ["d", "x"], [:]),
                                      ("h", "Mul", ["q", "half"], [:])],
                          tensors: ["bias": randomTensor([4], seed: 3), "scale": Tensor([1.5, 2, 2.5] as [Float], shape: [3, 1]),
                                    "half": Tensor([0.5] as [Float], shape: [])])
        XCTAssertEqual(g.parameters.map(\.name), ["bias", "scale"])   // one value ("half") stays a constant
        try checkLayer(g, input: [2, 3, 4])
    }

    /// Broadcast runs, with axes merged where every operand walks them contiguously, visit each
    /// output element once with the operand offsets that index arithmetic gives; a transposed
    /// walk and a reduction (whose runs are not merged) included.
    func testBroadcastRuns() throws {
        let cases: [([Int], [Int])] = [([2, 3, 4], [4]), ([2, 3, 4], [3, 1]), ([2, 3, 4], []), ([2, 3, 4], [2, 3, 4]),
                                       ([2, 3, 4], [1, 3, 1]), ([5, 2, 2], [5, 1, 1]), ([2, 1, 4], [3, 1]), ([3, 7], [1, 7])]
        for (a, b) in cases {
            let out = try Broadcast.shape(a, b), sa = Broadcast.strides(a, out), sb = Broadcast.strides(b, out)
            let n = out.reduce(1, *)
            var seen = [Int](repeating: 0, count: n), calls = 0
            Broadcast.runs(out, [sa, sb]) { o, zo, len, st in
                calls += 1
                for t in 0..<len {
                    // The output index's coordinates, and each operand's offset from them.
                    var rest = zo + t, offA = 0, offB = 0
                    for d in stride(from: out.count - 1, through: 0, by: -1) {
                        let i = rest % out[d]; rest /= out[d]
                        offA += i * sa[d]; offB += i * sb[d]
                    }
                    XCTAssertEqual(o[0] + t * st[0], offA, "\(a) \(b)"); XCTAssertEqual(o[1] + t * st[1], offB, "\(a) \(b)")
                    seen[zo + t] += 1
                }
            }
            XCTAssertEqual(seen, [Int](repeating: 1, count: n), "\(a) \(b)")
            if a == b { XCTAssertEqual(calls, 1, "same shapes are one run") }
        }
        // A transposed walk ([2, 3, 4] read as [4, 3, 2]) is not contiguous: runs of 2.
        var calls = 0
        Broadcast.runs([4, 3, 2], [[1, 4, 12]]) { _, _, len, _ in calls += 1; XCTAssertEqual(len, 2) }
        XCTAssertEqual(calls, 12)
        // Reduction to [3, 1] keeps runs of the last axis (its summation order).
        let g = Tensor((0..<24).map { Float($0) }, shape: [2, 3, 4]), r = Broadcast.reduce(g, to: [3, 1])
        XCTAssertEqual(r.shape, [3, 1])
        for c in 0..<3 {
            var want = 0
            for i in 0..<2 { for j in 0..<4 { want += i * 12 + c * 4 + j } }
            XCTAssertEqual(r.f32[c], Float(want))
        }
    }

    func testMatMulConcatAndShapes() throws {
        var w = randomTensor([4, 5], seed: 5)
        try checkLayer(try graph([2, 3, 4], [("mm", "MatMul", ["x", "w"], [:])], tensors: ["w": w]), input: [2, 3, 4])
        try checkLayer(try graph([2, 3, 4], [("t", "Transpose", ["x"], ["perm": [0, 2, 1]]), ("mm", "MatMul", ["x", "t"], [:])]), input: [2, 3, 4])
        w = randomTensor([2, 3, 2], seed: 6)
        try checkLayer(try graph([2, 3, 2], [("s", "Sigmoid", ["x"], [:]), ("c", "Concat", ["x", "s", "w"], ["axis": 2])], tensors: ["w": w]), input: [2, 3, 2])
        try checkLayer(try graph([2, 3, 4], [("u", "Unsqueeze", ["x"], ["axes": [1]]), ("t", "Transpose", ["u"], ["perm": [0, 3, 2, 1]]),
                                              ("r", "Reshape", ["t", "shape"], [:]), ("q", "Squeeze", ["r"], ["axes": [2]])],
                                 tensors: ["shape": Tensor([0, 2, 1, -1] as [Int64])]), input: [2, 3, 4])
    }

    func testPadSoftmaxReduce() throws {
        for mode in ["constant", "reflect", "edge"] {
            try checkLayer(try graph([2, 2, 3, 4], [("p", "Pad", ["x", "pads"], ["mode": .string(mode)])],
                                     tensors: ["pads": Tensor([0, 0, 1, 2, 0, 0, 2, 1] as [Int64])]), input: [2, 2, 3, 4])
        }
        for (op, coerce) in [("Softmax", 0), ("LogSoftmax", 0), ("Softmax", 1), ("LogSoftmax", 1)] {
            try checkLayer(try graph([2, 3, 4], [(op.lowercased(), op, ["x"], ["axis": 1, "coerce": .number(Double(coerce))])]), input: [2, 3, 4])
        }
        try checkLayer(try graph([2, 3, 4], [("r", "ReduceMean", ["x"], ["axes": [1, -1], "keepdims": 0])]), input: [2, 3, 4])
        try checkLayer(try graph([2, 3, 4], [("r", "ReduceMean", ["x"], ["axes": [2]])]), input: [2, 3, 4])
    }

    func testGlobalPoolPReluGemm() throws {
        try checkLayer(try graph([2, 3, 2, 3], [("g", "GlobalAveragePool", ["x"], [:])]), input: [2, 3, 2, 3])
        try checkLayer(try graph([2, 3, 2, 3], [("g", "GlobalMaxPool", ["x"], [:])]), input: [2, 3, 2, 3], distinct: true)
        try checkLayer(try graph([2, 3, 2, 2], [("p", "PRelu", ["x", "slope"], [:])], tensors: ["slope": Tensor([0.1, 0.3, -0.2] as [Float], shape: [3, 1, 1])]),
                       input: [2, 3, 2, 2])
        // General Gemm: A transposed, a matrix C, α and β.
        try checkLayer(try graph([4, 3], [("g", "Gemm", ["x", "b", "c"], ["transA": 1, "alpha": 0.5, "beta": 2])],
                                 tensors: ["b": randomTensor([4, 5], seed: 8), "c": randomTensor([3, 5], seed: 9)]), input: [4, 3])
        try checkLayer(try graph([3, 4], [("g", "Gemm", ["x", "b", "c"], ["transB": 1])],
                                 tensors: ["b": randomTensor([5, 4], seed: 8), "c": randomTensor([5], seed: 9)]), input: [3, 4])
    }

    /// A value read by two nodes (a residual connection): its gradients add up.
    func testBranchesAndImportedLayers() throws {
        var g = ConvGeometry(n: 1, c: 2, h: 5, w: 5, oc: 2, kh: 3, kw: 3, pad: 1)
        g.groups = 1
        let tensors: [String: Tensor] = ["w": randomTensor([2, 2, 3, 3], seed: 11), "b": randomTensor([2], seed: 12),
                                         "scale": Tensor([1.2, 0.8] as [Float]), "shift": Tensor([0.1, -0.2] as [Float]),
                                         "mean": Tensor([0.05, -0.1] as [Float]), "var": Tensor([1.5, 0.7] as [Float])]
        let net = try graph([2, 2, 5, 5], [("conv", "Conv", ["x", "w", "b"], ["pads": [1, 1, 1, 1]]),
                                           ("bn", "BatchNormalization", ["conv", "scale", "shift", "mean", "var"], [:]),
                                           ("relu", "Relu", ["bn"], [:]), ("sum", "Add", ["relu", "x"], [:]),
                                           ("pool", "MaxPool", ["sum", ], ["kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 1, 1]]),
                                           ("flat", "Flatten", ["pool"], [:])], tensors: tensors)
        XCTAssertEqual(Set(net.parameters.map(\.name)), ["w", "b", "scale", "shift"])
        XCTAssertEqual(Set(net.buffers.map(\.0)), ["mean", "var"])
        try checkLayer(net, input: [2, 2, 5, 5])
    }
}

final class GraphTests: XCTestCase {
    /// At inference a convolution applies the relu or clip that is its only reader while it
    /// stores its outputs: the same bits as the two nodes one after the other. A convolution
    /// read by two nodes, or whose own value is asked for, is left alone.
    func testConvolutionActivationFusion() throws {
        let spec = GraphSpec(inputs: ["x"], outputs: ["out"], nodes: [
            .init(name: "c1", op: "Conv", inputs: ["x", "w1", "b1"], attrs: ["pads": [1, 1, 1, 1]]),
            .init(name: "a1", op: "Clip", inputs: ["c1", "lo", "hi"]),
            .init(name: "c2", op: "Conv", inputs: ["a1", "w2", "b2"], attrs: ["pads": [1, 1, 1, 1]]),
            .init(name: "a2", op: "Relu", inputs: ["c2"]),
            .init(name: "c3", op: "Conv", inputs: ["a2", "w3"], attrs: ["group": 5, "pads": [1, 1, 1, 1]]),
            .init(name: "a3", op: "Relu", inputs: ["c3"]), .init(name: "s3", op: "Sigmoid", inputs: ["c3"]),
            .init(name: "out", op: "Add", inputs: ["a3", "s3"])])
        let tensors: [String: Tensor] = ["w1": randomTensor([4, 3, 3, 3], seed: 1), "b1": randomTensor([4], seed: 2),
                                         "w2": randomTensor([5, 4, 3, 3], seed: 3), "b2": randomTensor([5], seed: 4),
                                         "w3": randomTensor([5, 1, 3, 3], seed: 5),
                                         "lo": Tensor([-0.5] as [Float], shape: []), "hi": Tensor([0.7] as [Float], shape: [])]
        let g = try Graph(spec, inputShapes: [[3, 3, 12, 12]], tensors: tensors)
        XCTAssertEqual(Set(g.fusedActivation.keys), [0, 2])
        let x = randomTensor([3, 3, 12, 12], seed: 6), ctx = Context(training: false, threads: 1)
        let c1 = try g.forward(x, until: "c1", ctx).floats
        XCTAssertEqual(try g.forward(x, until: "a1", ctx).floats, c1.map { min(max($0, -0.5), 0.7) })
        XCTAssertTrue(c1.contains { $0 < -0.5 } && c1.contains { $0 > 0.7 })
        let c2 = try g.forward(x, until: "c2", ctx).floats
        XCTAssertEqual(try g.forward(x, until: "a2", ctx).floats, c2.map { max($0, 0) })
        let c3 = try g.forward(x, until: "c3", ctx).floats
        XCTAssertEqual(try g.forward(x, until: "out", ctx).floats, c3.map { max($0, 0) + Elementwise.sigmoid($0) })
    }

    /// The same in a sequential network: fused inference against the layers one by one.
    func testSequentialFusion() throws {
        let net = try Architectures.build("conv3x3-6,relu6,conv3x3-4,relu,maxpool2,fc5", input: [2, 10, 10], classes: 5, classifier: false)
        var rng = RNG(seed: 3)
        for l in net.layers { (l as? Initializable)?.initialize(&rng) }
        let x = randomTensor([4, 2, 10, 10], seed: 7), ctx = Context(training: false, threads: 1)
        var v = x
        for l in net.layers { v = try l.forward(v, ctx) }
        XCTAssertEqual(try net.forward(x, ctx).floats, v.floats)
    }

    /// Weights packed once for inference give the same outputs; a training forward drops the
    /// packed copy, so changed weights are never run from a stale one.
    func testPreparedForInference() throws {
        let conv = Conv2d("c", 3, 8, kernel: 3, pad: 1)
        var rng = RNG(seed: 5)
        conv.initialize(&rng)
        let x = randomTensor([2, 3, 9, 9], seed: 8), eval = Context(training: false, threads: 1)
        let before = try conv.forward(x, eval).floats
        conv.prepareForInference()
        XCTAssertNotNil(conv.packed)
        XCTAssertEqual(try conv.forward(x, eval).floats, before)
        _ = try conv.forward(x, Context(training: true, threads: 1))
        XCTAssertNil(conv.packed)
        for i in 0..<conv.weight.count { conv.weight.v[i] *= -2 }
        let changed = try conv.forward(x, eval).floats
        XCTAssertNotEqual(changed, before)
        let fresh = Conv2d("c", 3, 8, kernel: 3, pad: 1)
        fresh.weight.value = conv.weight.value; fresh.bias!.value = conv.bias!.value
        XCTAssertEqual(try fresh.forward(x, eval).floats, changed)
        // New weight storage (a network sharing another's parameters) is not run from the old pack.
        conv.prepareForInference()
        conv.weight.value = Tensor(Array(repeating: Float(0.5), count: conv.weight.count), shape: conv.weight.value.shape)
        fresh.weight.value = conv.weight.value
        XCTAssertEqual(try conv.forward(x, eval).floats, try fresh.forward(x, eval).floats)
        // A 3x3 layer whose inputs take the Winograd path: prepared for its template geometry
        // (direct panels), it packs again on the first forward, and the bits do not change.
        let wconv = Conv2d("w", 8, 8, kernel: 3, pad: 1)
        wconv.initialize(&rng)
        let wx = randomTensor([2, 8, 10, 10], seed: 9)
        let wBefore = try wconv.forward(wx, eval).floats
        wconv.prepareForInference()
        XCTAssertEqual(wconv.packed?.winograd, false)
        XCTAssertEqual(try wconv.forward(wx, eval).floats, wBefore)
        XCTAssertEqual(wconv.packed?.winograd, true)
        // The same for a fully connected layer.
        let fc = Linear("fc", 243, 40)
        fc.initialize(&rng)
        let fcBefore = try fc.forward(x, eval).floats
        fc.prepareForInference()
        XCTAssertNotNil(fc.packed)
        XCTAssertEqual(try fc.forward(x, eval).floats, fcBefore)
        _ = try fc.forward(x, Context(training: true, threads: 1))
        XCTAssertNil(fc.packed)
        for i in 0..<fc.weight.count { fc.weight.v[i] += 0.25 }
        let fcFresh = Linear("fc", 243, 40)
        fcFresh.weight.value = fc.weight.value; fcFresh.bias!.value = fc.bias!.value
        XCTAssertEqual(try fc.forward(x, eval).floats, try fcFresh.forward(x, eval).floats)
        XCTAssertNotEqual(try fc.forward(x, eval).floats, fcBefore)
    }

    /// Evaluation-mode forward keeps only what later nodes read, and stops at the value asked for.
    func testPartialForwardAndShapes() throws {
        let spec = GraphSpec(inputs: ["x"], outputs: ["out", "mid"], nodes: [
            .init(name: "mid", op: "Relu", inputs: ["x"]), .init(name: "side", op: "Sigmoid", inputs: ["x"]),
            .init(name: "out", op: "Add", inputs: ["mid", "side"])])
        let g = try Graph(spec, inputShapes: [[1, 4]], tensors: [:])
        XCTAssertEqual(g.sampleShape("out"), [4])
        let x = Tensor([-1, 0.5, 2, -3] as [Float], shape: [1, 4])
        let ctx = Context(training: false, threads: 1)
        XCTAssertEqual(try g.forward(x, until: "mid", ctx).floats, [0, 0.5, 2, 0])
        XCTAssertEqual(try g.forward(x, ctx).floats.count, 4)
        XCTAssertThrowsError(try g.forward(x, until: "nope", ctx))
        // Bad graphs are data errors, not crashes.
        XCTAssertThrowsError(try Graph(GraphSpec(inputs: ["x"], outputs: ["y"], nodes: [.init(name: "y", op: "Relu", inputs: ["z"])]),
                                       inputShapes: [[1, 4]], tensors: [:])) { XCTAssertEqual(($0 as? TLError)?.kind, .data) }
        XCTAssertThrowsError(try Graph(GraphSpec(inputs: ["x"], outputs: ["y"], nodes: [.init(name: "y", op: "Frobnicate", inputs: ["x"])]),
                                       inputShapes: [[1, 4]], tensors: [:])) { XCTAssertTrue("\($0)".contains("Frobnicate is not supported")) }
        XCTAssertThrowsError(try Graph(GraphSpec(inputs: ["x"], outputs: ["y"], nodes: [.init(name: "y", op: "Add", inputs: ["x", "w"])]),
                                       inputShapes: [[1, 4]], tensors: ["w": Tensor([1, 2, 3] as [Float])])) { XCTAssertTrue("\($0)".contains("broadcast")) }
    }

    /// The JSON form round-trips.
    func testSpecJSONRoundTrip() throws {
        let spec = GraphSpec(inputs: ["input"], outputs: ["fc"], nodes: [
            .init(name: "conv", op: "Conv", inputs: ["input", "conv.weight"], attrs: ["pads": [1, 1, 1, 1], "group": 1]),
            .init(name: "fc", op: "Gemm", inputs: ["conv", "fc.weight", "fc.bias"], attrs: ["transB": 1, "alpha": 0.5])],
                             aliases: ["/conv/Conv_output_0": "conv"])
        XCTAssertEqual(try GraphSpec(json: try JSON.parse(spec.json.serialized)), spec)
    }
}
