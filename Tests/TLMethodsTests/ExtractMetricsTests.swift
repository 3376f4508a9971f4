import XCTest
@testable import TLCore
@testable import TLNN
@testable import TLMethods

final class MetricsTests: XCTestCase {
    /// A hand-computed 3-class example.
    ///   true: 0 0 0 0 1 1 1 2 2 2
    ///   pred: 0 0 1 2 1 1 0 2 2 1
    /// class 0: tp 2, predicted 3, support 4 → P 2/3, R 1/2, F1 4/7
    /// class 1: tp 2, predicted 4, support 3 → P 1/2, R 2/3, F1 4/7
    /// class 2: tp 2, predicted 3, support 3 → P 2/3, R 2/3, F1 2/3
    func testHandComputedReport() {
        let t = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2], p = [0, 0, 1, 2, 1, 1, 0, 2, 2, 1]
        var r = ClassificationReport(classes: 3)
        for i in 0..<10 { r.add(label: t[i], prediction: p[i]) }
        XCTAssertEqual(r.accuracy, 0.6, accuracy: 1e-12)
        XCTAssertEqual(r.precision(0), 2.0 / 3, accuracy: 1e-12); XCTAssertEqual(r.recall(0), 0.5, accuracy: 1e-12)
        XCTAssertEqual(r.f1(0), 4.0 / 7, accuracy: 1e-12)
        XCTAssertEqual(r.precision(1), 0.5, accuracy: 1e-12); XCTAssertEqual(r.recall(1), 2.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(r.f1(2), 2.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(r.macroF1, (4.0 / 7 + 4.0 / 7 + 2.0 / 3) / 3, accuracy: 1e-12)
        XCTAssertEqual(r.count(0, 2), 1); XCTAssertEqual(r.count(1, 0), 1); XCTAssertEqual(r.support(0), 4)
    }

    /// A class never predicted and never present: precision, recall and F1 are 0 and it stays
    /// out of macro-F1.
    func testAbsentClasses() {
        var r = ClassificationReport(classes: 4)
        r.add(label: 0, prediction: 0); r.add(label: 1, prediction: 0)
        XCTAssertEqual(r.precision(1), 0); XCTAssertEqual(r.recall(2), 0); XCTAssertEqual(r.f1(3), 0)
        XCTAssertEqual(r.present, [0, 1])
        XCTAssertEqual(r.macroF1, (2.0 / 3 + 0) / 2, accuracy: 1e-12)  // class 0: P 1/2, R 1
    }

    func testRankingAndTopK() {
        // Row 0: scores 0.1 0.5 0.5 0.2 → ranked 1, 2 (tie: lower index first), 3.
        // Row 1: 3 2 1 0 → 0, 1, 2.
        let s: [Float] = [0.1, 0.5, 0.5, 0.2, 3, 2, 1, 0]
        var ranked: [Int32] = []
        s.withUnsafeBufferPointer { ClassificationReport.rank(rows: 2, classes: 4, scores: $0.baseAddress!, k: 3, into: &ranked) }
        XCTAssertEqual(ranked, [1, 2, 3, 0, 1, 2])
        var r = ClassificationReport(classes: 4, topK: [2, 3])
        r.add(label: 3, ranked: ranked[0..<3])   // third: top-3 hit only
        r.add(label: 1, ranked: ranked[3..<6])   // second: top-2 and top-3
        XCTAssertEqual(r.accuracy, 0)
        XCTAssertEqual(r.topK(2), 0.5); XCTAssertEqual(r.topK(3), 1)
        // k larger than the class count is clamped.
        var one: [Int32] = []
        s.withUnsafeBufferPointer { ClassificationReport.rank(rows: 1, classes: 4, scores: $0.baseAddress!, k: 9, into: &one) }
        XCTAssertEqual(one, [1, 2, 3, 0])
    }
}

final class ExtractTests: XCTestCase {
    func net(_ arch: String, _ input: [Int] = [1, 28, 28], classes: Int = 10) throws -> Network {
        let n = try Network(arch: Architectures.expand(arch), input: InputSpec(shape: input, scale: 1 / 255, mean: [0.3], std: [0.35]),
                            classes: (0..<classes).map(String.init))
        n.initialize(seed: 1)
        return n
    }

    func testDefaultCutIsTheLayerBeforeTheClassifierWithItsActivation() throws {
        let lenet = try net("lenet5")
        XCTAssertEqual(try lenet.cut(layer: nil, activation: true), Network.Cut(end: 11, layer: "fc2", activation: "relu4", shape: [84]))
        XCTAssertEqual(try lenet.cut(layer: nil, activation: false).end, 10)
        XCTAssertEqual(try lenet.cut(layer: "conv2", activation: true), Network.Cut(end: 5, layer: "conv2", activation: "relu2", shape: [16, 8, 8]))
        XCTAssertEqual(try lenet.cut(layer: "pool1", activation: true).activation, nil)
        XCTAssertEqual(try net("cnn-small").cut(layer: nil, activation: true).shape, [128])
        let res = try net("resnet-small")
        XCTAssertEqual(try res.cut(layer: nil, activation: true), Network.Cut(end: 7, layer: "gap1", activation: nil, shape: [128]))
        // Nested and unknown names: usage errors that say what to do.
        XCTAssertThrowsError(try res.cut(layer: "block2.conv1", activation: true)) {
            XCTAssertTrue("\($0)".contains("inside 'block2'"), "\($0)")
        }
        XCTAssertThrowsError(try res.cut(layer: "fc9", activation: true)) { XCTAssertEqual(($0 as? TLError)?.kind, .usage) }
    }

    /// Features are what running the layers one by one gives, for any batch size.
    func testFeaturesEqualTheLayerByLayerForward() throws {
        let n = try net("cnn-small")
        var rng = RNG(seed: 4)
        let raw = try Tensor(zeros: .u8, shape: [7, 28, 28])
        for i in 0..<raw.count { raw.rawPointer.storeBytes(of: UInt8(rng.below(256)), toByteOffset: i, as: UInt8.self) }
        let ex = try FeatureExtractor(net: n, layer: "fc1", activation: true, batch: 3, threads: 1)
        let f = try ex.features(raw)
        XCTAssertEqual(f.shape, [7, 128])
        var x = try n.normalize(raw)
        for l in n.sequential!.layers.prefix(ex.cut.end) { x = try l.forward(x, Context(training: false, threads: 1)) }
        XCTAssertTrue(f.bitwiseEqual(x.copy()))
        XCTAssertTrue((0..<f.count).allSatisfy { f.f32[$0] >= 0 }, "after the ReLU")
        let whole = try FeatureExtractor(net: n, layer: "fc1", batch: 256, threads: 2).features(raw)
        XCTAssertTrue(whole.bitwiseEqual(f))
        // Rows split over 3 threads in batches of 2 (several parts, uneven): the same bits.
        let split = try FeatureExtractor(net: n, layer: "fc1", batch: 2, threads: 3).features(raw)
        XCTAssertTrue(split.bitwiseEqual(f))
        // A network with batch normalization and a residual block, at the logits.
        let res = try net("resnet-small")
        let a = try FeatureExtractor(net: res, layer: "fc1", activation: false, batch: 7, threads: 1).features(raw)
        let b = try FeatureExtractor(net: res, layer: "fc1", activation: false, batch: 3, threads: 2).features(raw)
        XCTAssertTrue(a.bitwiseEqual(b))
    }

    /// Gray images for an RGB network get three equal channels; other sizes are resized.
    func testPrepareConvertsChannelsAndSize() throws {
        let rgb = try Network(arch: "conv3x3-4,gap", input: InputSpec(shape: [3, 8, 8]), classes: ["a", "b"])
        let gray = try Tensor(zeros: .f32, shape: [2, 4, 4])
        for i in 0..<gray.count { gray.f32[i] = Float(i % 16) }
        let p = try rgb.prepare(gray, threads: 1)
        XCTAssertEqual(p.shape, [2, 3, 8, 8])
        for c in 1..<3 { for q in 0..<64 { XCTAssertEqual(p.f32[c * 64 + q], p.f32[q]) } }
        let ref = Resize.referenceBilinear(h: 4, w: 4, oh: 8, ow: 8, x: (0..<16).map(Float.init))
        for q in 0..<64 { XCTAssertEqual(p.f32[q], ref[q], accuracy: 1e-5) }
        // RGB to a gray network: BT.601 luma.
        let g1 = try Network(arch: "conv3x3-4,gap", input: InputSpec(shape: [1, 2, 2]), classes: ["a", "b"])
        let c3 = Tensor([1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0] as [Float], shape: [1, 3, 2, 2])
        XCTAssertEqual(try g1.prepare(c3, threads: 1).floats, [0.299, 0.299, 0.299, 0.299])
        // Two channels cannot become three.
        XCTAssertThrowsError(try rgb.prepare(try Tensor(zeros: .f32, shape: [1, 2, 8, 8]))) { XCTAssertEqual(($0 as? TLError)?.kind, .data) }
    }
}

final class ResizeTests: XCTestCase {
    func testBilinearMatchesReference() {
        var rng = RNG(seed: 2)
        for (h, w, oh, ow) in [(5, 7, 11, 3), (28, 28, 32, 32), (32, 32, 28, 28), (1, 9, 4, 4), (6, 6, 6, 6), (3, 2, 1, 1)] {
            let x = (0..<(2 * h * w)).map { _ in rng.uniform() }
            var y = [Float](repeating: 0, count: 2 * oh * ow)
            x.withUnsafeBufferPointer { px in y.withUnsafeMutableBufferPointer { py in
                Resize.bilinear(planes: 2, h: h, w: w, oh: oh, ow: ow, x: px.baseAddress!, y: py.baseAddress!, threads: 2)
            } }
            for p in 0..<2 {
                let ref = Resize.referenceBilinear(h: h, w: w, oh: oh, ow: ow, x: Array(x[(p * h * w)..<((p + 1) * h * w)]))
                for i in 0..<(oh * ow) { XCTAssertEqual(y[p * oh * ow + i], ref[i], accuracy: 1e-5, "\(h)x\(w)->\(oh)x\(ow)") }
            }
            if h == oh && w == ow { XCTAssertEqual(y, x, "same size is the identity") }
        }
        // Known values: 2x2 -> 4x4 with half-pixel centers (PyTorch align_corners=False).
        let ref = Resize.referenceBilinear(h: 2, w: 2, oh: 4, ow: 4, x: [0, 1, 2, 3])
        XCTAssertEqual(Array(ref.prefix(4)), [0, 0.25, 0.75, 1])
        XCTAssertEqual(ref[4], 0.5)   // row 1 samples y = 0.25: 0.25·2 = 0.5 at x = 0
    }

    func testMomentAccumulatorMatchesTwoPass() throws {
        var rng = RNG(seed: 8)
        let x = Tensor.f32([50, 3])
        for i in 0..<150 { x.f32[i] = rng.uniform() * 0.01 + 1000 + Float(i % 3) }  // large mean, small spread
        var acc = MomentAccumulator(groups: 3, plane: 1)
        try acc.add(x.rows(0..<20)); try acc.add(x.rows(20..<50))
        let (m, s) = acc.result()
        for g in 0..<3 {
            let v = (0..<50).map { Double(x.f32[$0 * 3 + g]) }
            let mean = v.reduce(0, +) / 50, sd = (v.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / 50).squareRoot()
            XCTAssertEqual(Double(m[g]), mean, accuracy: 1e-3)
            XCTAssertEqual(Double(s[g]), sd, accuracy: 1e-5)
        }
    }
}
