import XCTest
@testable import TLCore
@testable import TLNN

func randomTensor(_ shape: [Int], seed: UInt64, awayFromZero: Bool = false) -> Tensor {
    var r = RNG(seed: seed)
    let t = Tensor.f32(shape)
    for i in 0..<t.count {
        var v = r.uniform() * 2 - 1
        if awayFromZero && abs(v) < 0.05 { v += v < 0 ? -0.1 : 0.1 }
        t.f32[i] = v
    }
    return t
}

/// Finite-difference gradient checks: L = Σ r ⊙ layer(x) for a fixed random r; the analytic
/// gradients from backward against central differences (h = 1e-3) on sampled coordinates.
/// The finite-difference check, shared by the test classes that check layers and graph ops.
protocol LayerGradientChecking: XCTestCase {}

extension LayerGradientChecking {
    var ctx: Context { Context(training: true, seed: 3, step: 1, threads: 1) }

    func loss(_ l: Layer, _ x: Tensor, _ r: Tensor) throws -> Double {
        let y = try l.forward(x, ctx)
        var s = 0.0
        for i in 0..<y.count { s += Double(y.f32[i]) * Double(r.f32[i]) }
        return s
    }

    func checkLayer(_ l: Layer, input: [Int], awayFromZero: Bool = true, distinct: Bool = false,
                    file: StaticString = #filePath, line: UInt = #line) throws {
        if let i = l as? Initializable { var rng = RNG(seed: 9); i.initialize(&rng) }
        let x = randomTensor(input, seed: 1, awayFromZero: awayFromZero)
        if distinct {  // well-separated values: no ties or kinks within h (max pooling)
            let p = RNG(seed: 4).permutationCopy(x.count)
            for i in 0..<x.count { x.f32[i] = Float(p[i]) * 0.01 - Float(x.count) * 0.005 }
        }
        let outShape = try l.outputShape(input)
        let r = randomTensor(outShape, seed: 2)
        for p in l.parameters { p.zeroGrad() }
        _ = try l.forward(x, ctx)
        guard let dx = l.backward(r, needInputGrad: true, ctx) else { return XCTFail("no input gradient", file: file, line: line) }
        XCTAssertEqual(dx.shape, input, file: file, line: line)
        let h: Float = 1e-3
        func compare(_ what: String, _ analytic: Float, _ target: UnsafeMutablePointer<Float>, _ i: Int) throws {
            let old = target[i]
            target[i] = old + h; let lp = try loss(l, x, r)
            target[i] = old - h; let lm = try loss(l, x, r)
            target[i] = old
            let numeric = Float((lp - lm) / Double(2 * h))
            XCTAssertEqual(analytic, numeric, accuracy: 2e-2 * max(abs(analytic), abs(numeric)) + 2e-3,
                           "\(l.name) (\(l.spec)) \(what)[\(i)]", file: file, line: line)
        }
        var rng = RNG(seed: 17)
        for _ in 0..<min(40, x.count) { let i = rng.below(x.count); try compare("dx", dx.f32[i], x.f32, i) }
        for p in l.parameters {
            let g = p.grad.copy()
            if p.frozen {  // frozen: no gradient at all
                XCTAssertTrue((0..<p.count).allSatisfy { g.f32[$0] == 0 }, "\(p.name) is frozen but got a gradient", file: file, line: line)
                continue
            }
            for _ in 0..<min(25, p.count) { let i = rng.below(p.count); try compare(p.name, g.f32[i], p.v, i) }
        }
    }

}

final class GradientTests: XCTestCase, LayerGradientChecking {
    func testLinear() throws { try checkLayer(Linear("fc1", 7, 5), input: [4, 7]) }
    func testLinearFlattensImages() throws { try checkLayer(Linear("fc1", 12, 3), input: [2, 3, 2, 2]) }
    func testConv() throws {
        try checkLayer(Conv2d("conv1", 3, 4, kernel: 3, pad: 1), input: [2, 3, 5, 5])
        try checkLayer(Conv2d("conv2", 4, 6, kernel: 3, stride: 2, pad: 1, groups: 2), input: [2, 4, 6, 6])
        try checkLayer(Conv2d("conv3", 3, 3, kernel: 3, pad: 1, groups: 3, bias: false), input: [2, 3, 5, 4])
    }
    /// The ONNX geometries: rectangular kernels, four different pads, strides and dilations.
    func testGeneralConvAndPoolGeometry() throws {
        var g = ConvGeometry(n: 1, c: 4, h: 1, w: 1, oc: 6, kh: 2, kw: 3, groups: 2)
        g.strideH = 2; g.dilationW = 2; (g.padTop, g.padLeft, g.padBottom, g.padRight) = (0, 1, 1, 2)
        try checkLayer(Conv2d("conv1", 4, 6, geometry: g), input: [2, 4, 7, 6])
        var p = PoolGeometry(n: 1, c: 2, h: 1, w: 1, kernel: 3, stride: 2, pad: 1)
        p.kw = 2; p.dilationH = 2; p.ceilMode = true
        try checkLayer(Pool2d("pool1", .max, geometry: p), input: [2, 2, 8, 7], distinct: true)
        p.countIncludePad = false
        try checkLayer(Pool2d("pool2", .avg, geometry: p), input: [2, 2, 8, 7])
        p.countIncludePad = true
        try checkLayer(Pool2d("pool3", .avg, geometry: p), input: [2, 2, 8, 7])
        try checkLayer(Linear("fc1", 6, 4, bias: false), input: [3, 6])
        try checkLayer(Flatten("flatten", axis: 2), input: [2, 3, 2, 2])
    }

    func testPooling() throws {
        try checkLayer(Pool2d("pool1", .max, kernel: 2), input: [2, 2, 4, 6], distinct: true)
        try checkLayer(Pool2d("pool2", .max, kernel: 3, stride: 2), input: [1, 2, 7, 7], distinct: true)
        try checkLayer(Pool2d("pool3", .avg, kernel: 2), input: [2, 3, 4, 4])
        try checkLayer(GlobalAvgPool("gap1"), input: [2, 3, 3, 4])
        try checkLayer(Flatten("flatten"), input: [2, 3, 2, 2])
    }
    func testActivations() throws {
        for k: Activation.Kind in [.relu, .leakyRelu(0.1), .sigmoid, .tanh, .gelu, .relu6, .clip(-0.45, 0.65), .hardSigmoid(0.4, 0.5),
                                   .hardSwish, .elu(1.3), .selu] {
            try checkLayer(Activation("act", k), input: [3, 11])
        }
    }
    func testDropoutUsesItsMask() throws { try checkLayer(Dropout("dropout1", p: 0.4, stream: 7), input: [4, 9]) }
    func testBatchNorm() throws {
        try checkLayer(BatchNorm("bn1", 3), input: [5, 3])
        try checkLayer(BatchNorm("bn2", 2), input: [3, 2, 3, 3])
        // Frozen: running statistics, and no parameter gradients.
        let bn = BatchNorm("bn3", 2); bn.weight.frozen = true; bn.bias.frozen = true
        bn.runningMean.f32[0] = 0.3; bn.runningVar.f32[1] = 2
        try checkLayer(bn, input: [3, 2, 2, 2])
        XCTAssertEqual(bn.runningMean.f32[0], 0.3)  // frozen statistics do not move
    }
    func testResidualAndSequential() throws {
        let input: [Int] = [2, 3, 6, 6]
        let net = try Architectures.build("conv3x3-4,bn,relu,res4,res8-s2,gap", input: Array(input.dropFirst()), classes: 3)
        try checkLayer(net, input: input)
        let mlp = try Architectures.build("mlp", input: [10], classes: 4)
        try checkLayer(mlp, input: [3, 10])
    }

    // MARK: losses

    func checkLoss(_ name: String, _ x: Tensor, _ f: (Tensor) -> (Double, Tensor), file: StaticString = #filePath, line: UInt = #line) {
        let (_, g) = f(x)
        let h: Float = 1e-3
        for i in 0..<x.count {
            let old = x.f32[i]
            x.f32[i] = old + h; let lp = f(x).0
            x.f32[i] = old - h; let lm = f(x).0
            x.f32[i] = old
            let numeric = Float((lp - lm) / Double(2 * h))
            XCTAssertEqual(g.f32[i], numeric, accuracy: 1e-2 * abs(numeric) + 1e-4, "\(name)[\(i)]", file: file, line: line)
        }
    }

    func testLossGradients() {
        let logits = randomTensor([4, 5], seed: 3)
        let labels = [0, 3, 4, 1]
        checkLoss("ce", logits) { Loss.crossEntropy(logits: $0, labels: labels) }
        checkLoss("ce smoothed weighted", logits) { Loss.crossEntropy(logits: $0, labels: labels, smoothing: 0.1, classWeights: [1, 2, 0.5, 1, 3]) }
        let t = randomTensor([4, 5], seed: 4)
        for i in 0..<t.count { t.f32[i] = (t.f32[i] + 1) / 2 }
        checkLoss("bce", logits) { Loss.binaryCrossEntropy(logits: $0, targets: t) }
        checkLoss("mse", logits) { Loss.mse($0, t) }
        let teacher = randomTensor([4, 5], seed: 5)
        checkLoss("kl T=2", logits) { Loss.distillation(student: $0, teacher: teacher, temperature: 2) }
        checkLoss("kl T=1", logits) { Loss.distillation(student: $0, teacher: teacher, temperature: 1) }
        // Hinge: keep margins away from the kinks.
        let s = Tensor([0.2, 2.5, -1, 0.7, 0.4, -0.5, 1.9, 3.1, 0.0, -2.2, 1.2, 0.1] as [Float], shape: [3, 4])
        checkLoss("hinge", s) { Loss.multiclassHinge(logits: $0, labels: [1, 3, 0]) }
        // Squared hinge is differentiable everywhere; weighted too.
        checkLoss("squared hinge", logits) { Loss.squaredHinge(logits: $0, labels: labels) }
        checkLoss("squared hinge weighted", logits) { Loss.squaredHinge(logits: $0, labels: labels, classWeights: [1, 2, 0.5, 1, 3]) }
    }

    /// The losses' values against hand-computed ones.
    func testLossValues() {
        let logits = Tensor([0, 0, 0, 1, 2, 3] as [Float], shape: [2, 3])
        XCTAssertEqual(Loss.crossEntropy(logits: logits, labels: [0, 2]).0, (log(3.0) + (log(exp(1.0) + exp(2) + exp(3)) - 3)) / 2, accuracy: 1e-6)
        XCTAssertEqual(Loss.multiclassHinge(logits: Tensor([1, 2, 0.5] as [Float], shape: [1, 3]), labels: [0]).0, 2 + 0.5, accuracy: 1e-6)
        XCTAssertEqual(Loss.distillation(student: logits, teacher: logits, temperature: 3).0, 0, accuracy: 1e-6)
        // Scores (1, 2, 0.5), label 0: (1−1)² + (1+2)² + (1+0.5)² = 11.25; weighted mean over two rows.
        XCTAssertEqual(Loss.squaredHinge(logits: Tensor([1, 2, 0.5] as [Float], shape: [1, 3]), labels: [0]).0, 11.25, accuracy: 1e-6)
        XCTAssertEqual(Loss.squaredHinge(logits: Tensor([1, 2, 0.5, 1, 2, 0.5] as [Float], shape: [2, 3]), labels: [0, 1], classWeights: [1, 3, 1]).0,
                       (11.25 + 3 * (4 + 0 + 2.25)) / 4, accuracy: 1e-6)
        XCTAssertEqual(Loss.binaryCrossEntropy(logits: Tensor([0] as [Float], shape: [1]), targets: Tensor([1] as [Float], shape: [1])).0, log(2.0), accuracy: 1e-6)
    }
}

extension RNG {
    func permutationCopy(_ n: Int) -> [Int] { var r = self; return r.permutation(n) }
}

final class ModelFileTests: XCTestCase {
    /// A model's input description is checked on load: normalize must never index or divide badly.
    func testInputSpecRejectsInconsistentNormalization() throws {
        func spec(_ shape: [Int], _ mean: [Double], _ std: [Double]) -> JSON {
            ["shape": .array(shape.map { .number(Double($0)) }), "scale": 1,
             "mean": .array(mean.map { .number($0) }), "std": .array(std.map { .number($0) })]
        }
        XCTAssertNoThrow(try InputSpec(json: spec([3, 8, 8], [0.1, 0.2, 0.3], [1, 1, 1])))
        XCTAssertNoThrow(try InputSpec(json: spec([16], [0], [2])))
        for bad in [spec([3, 8, 8], [0.1, 0.2], [1]), spec([1, 8, 8], [0], [0]), spec([1, 8, 8], [0], [-1]),
                    spec([0, 8, 8], [0], [1]), spec([2, 4, 4], [0], [1, 1, 1])] {
            XCTAssertThrowsError(try InputSpec(json: bad)) { XCTAssertEqual(($0 as? TLError)?.kind, .data) }
        }
    }
}
