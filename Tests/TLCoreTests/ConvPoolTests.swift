import XCTest
@testable import TLCore

final class ConvTests: XCTestCase {
    func run(_ g: ConvGeometry, bias: Bool = true, threads: Int = 1) -> (y: [Float], dx: [Float], dw: [Float], db: [Float]) {
        let x = randomFloats(g.n * g.c * g.h * g.w, seed: 1)
        let w = randomFloats(g.oc * g.cg * g.kh * g.kw, seed: 2)
        let b = randomFloats(g.oc, seed: 3)
        let dy = randomFloats(g.n * g.oc * g.oh * g.ow, seed: 4)
        var y = [Float](repeating: .nan, count: dy.count)
        // Backward accumulates: start from non-zero gradients and subtract them after.
        let dx0 = randomFloats(x.count, seed: 5), dw0 = randomFloats(w.count, seed: 6), db0 = randomFloats(g.oc, seed: 7)
        var dx = dx0, dw = dw0, db = db0
        b.withUnsafeBufferPointer { bp in
            Conv.forward(g, x: x, weight: w, bias: bias ? bp.baseAddress! : nil, y: &y, threads: threads)
        }
        Conv.backward(g, x: x, weight: w, dy: dy, dx: &dx, dweight: &dw, dbias: &db, threads: threads)
        for i in dx.indices { dx[i] -= dx0[i] }
        for i in dw.indices { dw[i] -= dw0[i] }
        for i in db.indices { db[i] -= db0[i] }
        return (y, dx, dw, db)
    }

    func check(_ g: ConvGeometry, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNil(g.problem, file: file, line: line)
        let x = randomFloats(g.n * g.c * g.h * g.w, seed: 1)
        let w = randomFloats(g.oc * g.cg * g.kh * g.kw, seed: 2)
        let b = randomFloats(g.oc, seed: 3)
        let dy = randomFloats(g.n * g.oc * g.oh * g.ow, seed: 4)
        let got = run(g)
        let want = Conv.referenceForward(g, x: x, weight: w, bias: b)
        let (rdx, rdw, rdb) = Conv.referenceBackward(g, x: x, weight: w, dy: dy)
        let tol: Float = 3e-5
        XCTAssertLessThan(maxRelError(got.y, want), tol, "forward \(g)", file: file, line: line)
        XCTAssertLessThan(maxRelError(got.dx, rdx), tol, "dx \(g)", file: file, line: line)
        XCTAssertLessThan(maxRelError(got.dw, rdw), tol, "dweight \(g)", file: file, line: line)
        XCTAssertLessThan(maxRelError(got.db, rdb), tol, "dbias \(g)", file: file, line: line)
    }

    func testAgainstDirectReference() {
        check(ConvGeometry(n: 2, c: 3, h: 7, w: 6, oc: 5, kh: 3, kw: 3))
        check(ConvGeometry(n: 3, c: 2, h: 9, w: 11, oc: 4, kh: 3, kw: 3, stride: 2, pad: 1))
        check(ConvGeometry(n: 1, c: 4, h: 8, w: 8, oc: 6, kh: 5, kw: 5, pad: 2))
        check(ConvGeometry(n: 2, c: 3, h: 10, w: 9, oc: 2, kh: 3, kw: 2, stride: 1, pad: 2, dilation: 2))
        check(ConvGeometry(n: 2, c: 6, h: 5, w: 5, oc: 4, kh: 3, kw: 3, pad: 1, groups: 2))
        check(ConvGeometry(n: 5, c: 7, h: 4, w: 3, oc: 3, kh: 1, kw: 1))                     // pointwise
        check(ConvGeometry(n: 2, c: 5, h: 9, w: 7, oc: 5, kh: 3, kw: 3, stride: 2, pad: 1, groups: 5))  // depthwise
        check(ConvGeometry(n: 1, c: 4, h: 6, w: 6, oc: 4, kh: 3, kw: 3, dilation: 2, groups: 4))
        check(ConvGeometry(n: 2, c: 16, h: 9, w: 10, oc: 16, kh: 3, kw: 3, pad: 1, groups: 16))  // depthwise, whole 8-channel chunks
        check(ConvGeometry(n: 2, c: 12, h: 7, w: 7, oc: 12, kh: 5, kw: 5, stride: 2, pad: 2, groups: 12))  // and a partial one
        var asym = ConvGeometry(n: 2, c: 3, h: 8, w: 7, oc: 4, kh: 3, kw: 3, stride: 2)
        asym.padBottom = 1; asym.padRight = 1                                                   // TF "SAME"
        check(asym)
        var dwAsym = ConvGeometry(n: 2, c: 4, h: 9, w: 9, oc: 4, kh: 5, kw: 5, stride: 2, groups: 4)
        dwAsym.padTop = 1; dwAsym.padLeft = 1; dwAsym.padBottom = 2; dwAsym.padRight = 2
        check(dwAsym)
        var strided = ConvGeometry(n: 2, c: 2, h: 13, w: 12, oc: 3, kh: 4, kw: 3)
        strided.strideH = 3; strided.strideW = 2; strided.padLeft = 1
        check(strided)
        check(ConvGeometry(n: 3, c: 3, h: 5, w: 5, oc: 8, kh: 1, kw: 1, stride: 2))             // strided 1x1: im2col path
    }

    /// The inference paths of `forward` (no kept columns) on planes large enough to be taken
    /// image by image: stride 1 from a zero-bordered copy, other strides and 1×1 by stretches;
    /// several K-blocks (K > 256), output channels that are not a multiple of the tile.
    func testImplicitPathsOnLargePlanes() {
        check(ConvGeometry(n: 2, c: 3, h: 16, w: 13, oc: 7, kh: 3, kw: 3, pad: 1))              // padded copy
        check(ConvGeometry(n: 2, c: 40, h: 12, w: 12, oc: 13, kh: 3, kw: 3, pad: 1))            // K = 360: two blocks
        check(ConvGeometry(n: 1, c: 2, h: 20, w: 22, oc: 5, kh: 5, kw: 3, pad: 1, dilation: 2))
        var asym = ConvGeometry(n: 2, c: 3, h: 14, w: 15, oc: 6, kh: 3, kw: 3)
        (asym.padTop, asym.padLeft, asym.padBottom, asym.padRight) = (0, 1, 2, 0)
        check(asym)
        check(ConvGeometry(n: 2, c: 3, h: 30, w: 29, oc: 9, kh: 3, kw: 3, stride: 2, pad: 1))   // stride 2: phases
        check(ConvGeometry(n: 2, c: 3, h: 29, w: 31, oc: 8, kh: 7, kw: 7, stride: 2, pad: 3))   // a ResNet stem
        var phases = ConvGeometry(n: 2, c: 3, h: 40, w: 33, oc: 5, kh: 4, kw: 3)
        (phases.strideH, phases.strideW, phases.padLeft, phases.padBottom) = (3, 2, 1, 2)
        check(phases)
        check(ConvGeometry(n: 2, c: 2, h: 33, w: 34, oc: 4, kh: 3, kw: 3, stride: 2, pad: 2, dilation: 2))   // stretches
        check(ConvGeometry(n: 2, c: 300, h: 12, w: 12, oc: 7, kh: 1, kw: 1))                    // 1x1, K = 300
        check(ConvGeometry(n: 2, c: 300, h: 24, w: 20, oc: 9, kh: 1, kw: 1))                    // 1x1 image by image: B is the image
        check(ConvGeometry(n: 3, c: 5, h: 14, w: 14, oc: 2100, kh: 1, kw: 1))                   // 1x1, blocks of 112 columns within and across images
        check(ConvGeometry(n: 5, c: 270, h: 3, w: 3, oc: 20, kh: 3, kw: 3, pad: 1))            // small planes, images side by side
    }

    /// Small planes, several images side by side, rows of the column matrix moved from padded
    /// copies: stride 2 (phases), rows longer than one 8-float move, blocks that start and end
    /// inside an image's rows, TF "SAME" pads, a rectangular kernel; strided and dilated ones
    /// keep the stretches path.
    func testSmallPlanesFromPaddedCopies() {
        check(ConvGeometry(n: 6, c: 20, h: 8, w: 8, oc: 9, kh: 3, kw: 3, stride: 2, pad: 1))    // 4x4 outputs
        check(ConvGeometry(n: 5, c: 7, h: 5, w: 12, oc: 30, kh: 3, kw: 3, pad: 1))              // 5x12: 12-float rows
        check(ConvGeometry(n: 3, c: 600, h: 2, w: 2, oc: 17, kh: 3, kw: 3, pad: 1))             // K = 5400: many K-blocks
        check(ConvGeometry(n: 40, c: 4, h: 7, w: 7, oc: 300, kh: 3, kw: 3, pad: 1))             // blocks of columns mid-image
        var same = ConvGeometry(n: 3, c: 5, h: 9, w: 9, oc: 6, kh: 3, kw: 3, stride: 2)
        (same.padBottom, same.padRight) = (1, 1)
        check(same)
        var rect = ConvGeometry(n: 4, c: 3, h: 6, w: 9, oc: 5, kh: 2, kw: 4)
        (rect.padTop, rect.padLeft, rect.padRight) = (1, 2, 1)
        check(rect)
        check(ConvGeometry(n: 3, c: 3, h: 9, w: 9, oc: 4, kh: 3, kw: 3, stride: 2, pad: 2, dilation: 2))   // stretches
    }

    /// 3×3 stride-1 layers with 8+ channels take Winograd F(2×2, 3×3) for inference: odd output
    /// sizes (tiles cut by the edge), 8-tile vectors with tails, pads 0, 1, 2 and asymmetric,
    /// chunks that span images and images that span chunks, C > 256 (two
    /// K-blocks), output channels off the tile; against the direct reference, and the same bits
    /// for any batch split, thread count, packed weights and fused activation.
    func testWinograd() {
        var shapes = [ConvGeometry(n: 3, c: 8, h: 13, w: 11, oc: 8, kh: 3, kw: 3, pad: 1),
                      ConvGeometry(n: 2, c: 16, h: 40, w: 37, oc: 13, kh: 3, kw: 3, pad: 1),
                      ConvGeometry(n: 2, c: 9, h: 11, w: 20, oc: 10, kh: 3, kw: 3),                // no padding
                      ConvGeometry(n: 5, c: 12, h: 8, w: 9, oc: 9, kh: 3, kw: 3, pad: 1),         // 5 images a chunk
                      ConvGeometry(n: 4, c: 10, h: 10, w: 10, oc: 8, kh: 3, kw: 3),               // 8x8
                      ConvGeometry(n: 2, c: 8, h: 6, w: 7, oc: 8, kh: 3, kw: 3, pad: 2),
                      ConvGeometry(n: 3, c: 300, h: 8, w: 9, oc: 20, kh: 3, kw: 3, pad: 1),        // K-blocks
                      ConvGeometry(n: 2, c: 100, h: 14, w: 48, oc: 100, kh: 3, kw: 3, pad: 1),     // 7 tile rows, 6 a chunk
                      ConvGeometry(n: 1, c: 8, h: 90, w: 9, oc: 64, kh: 3, kw: 3, pad: 1)]
        var asym = ConvGeometry(n: 3, c: 8, h: 10, w: 9, oc: 8, kh: 3, kw: 3)
        (asym.padTop, asym.padLeft, asym.padBottom, asym.padRight) = (0, 1, 2, 0)
        shapes.append(asym)
        for g in shapes {
            XCTAssertTrue(Conv.winogradApplies(g), "\(g)")
            check(g)
            let x = randomFloats(g.n * g.c * g.h * g.w, seed: 31), w = randomFloats(g.oc * g.kdim, seed: 32), b = randomFloats(g.oc, seed: 33)
            var all = [Float](repeating: .nan, count: g.n * g.oc * g.oh * g.ow), three = all, packedOut = all, fused = all
            Conv.forward(g, x: x, weight: w, bias: b, y: &all, threads: 1)
            Conv.forward(g, x: x, weight: w, bias: b, y: &three, threads: 3)
            XCTAssertEqual(all, three, "threads \(g)")
            var packed = [Float](repeating: .nan, count: Conv.packedWeightCount(g))
            Conv.packWeights(g, weight: w, into: &packed)
            packed.withUnsafeBufferPointer { Conv.forward(g, x: x, weight: w, bias: b, y: &packedOut, packedWeights: $0.baseAddress!, threads: 2) }
            XCTAssertEqual(all, packedOut, "packed \(g)")
            Conv.forward(g, x: x, weight: w, bias: b, y: &fused, activation: .relu, threads: 2)
            XCTAssertEqual(all.map { max($0, 0) }, fused, "fused relu \(g)")
            var one = g; one.n = 1
            let inSize = g.c * g.h * g.w, outSize = g.oc * g.oh * g.ow
            for i in 0..<g.n {
                var y = [Float](repeating: .nan, count: outSize)
                Array(x[(i * inSize)..<((i + 1) * inSize)]).withUnsafeBufferPointer { Conv.forward(one, x: $0.baseAddress!, weight: w, bias: b, y: &y, threads: 1) }
                XCTAssertEqual(Array(all[(i * outSize)..<((i + 1) * outSize)]), y, "\(g) image \(i)")
            }
        }
        XCTAssertFalse(Conv.winogradApplies(ConvGeometry(n: 1, c: 1, h: 8, w: 8, oc: 8, kh: 3, kw: 3, pad: 1)))   // one input channel
        XCTAssertFalse(Conv.winogradApplies(ConvGeometry(n: 1, c: 8, h: 8, w: 8, oc: 8, kh: 3, kw: 3, stride: 2, pad: 1)))
        XCTAssertFalse(Conv.winogradApplies(ConvGeometry(n: 1, c: 64, h: 7, w: 7, oc: 64, kh: 3, kw: 3, pad: 1)))    // under 8x8
    }

    /// Depthwise convolutions on both methods: planes at least 7 outputs wide (strides 1 and 2,
    /// no dilation) on the NCHW grid, the rest channels last with only the taps inside the image;
    /// whole groups of six 8-channel chunks and single chunks after them, channel counts that are
    /// not a multiple of 8, planes whose pixel count is not a multiple of 8 (the transposes'
    /// tails), rows of 16 and more (the stride-2 copy's sixteen-wide split), TF "SAME" pads.
    func testDepthwiseMethods() {
        let grid = [ConvGeometry(n: 2, c: 3, h: 20, w: 37, oc: 3, kh: 3, kw: 3, pad: 1, groups: 3),
                    ConvGeometry(n: 2, c: 5, h: 19, w: 40, oc: 5, kh: 3, kw: 3, stride: 2, pad: 1, groups: 5),
                    ConvGeometry(n: 1, c: 9, h: 16, w: 17, oc: 9, kh: 5, kw: 5, stride: 2, pad: 2, groups: 9),
                    ConvGeometry(n: 2, c: 4, h: 7, w: 7, oc: 4, kh: 5, kw: 5, pad: 2, groups: 4),
                    // Rows copied as one masked vector (7 wide, 8 with the border), scalar (no
                    // border), with an overlapping last vector (9 wide); stride-2 splits of 14,
                    // 15 and 22 columns (eight-wide halves, overlapping last chunks).
                    ConvGeometry(n: 2, c: 3, h: 7, w: 7, oc: 3, kh: 3, kw: 3, pad: 1, groups: 3),
                    ConvGeometry(n: 2, c: 2, h: 7, w: 7, oc: 2, kh: 1, kw: 1, groups: 2),
                    ConvGeometry(n: 2, c: 3, h: 9, w: 9, oc: 3, kh: 3, kw: 3, pad: 1, groups: 3),
                    ConvGeometry(n: 2, c: 3, h: 14, w: 14, oc: 3, kh: 5, kw: 5, stride: 2, pad: 2, groups: 3),
                    ConvGeometry(n: 1, c: 2, h: 15, w: 15, oc: 2, kh: 3, kw: 3, stride: 2, pad: 1, groups: 2),
                    ConvGeometry(n: 1, c: 2, h: 10, w: 22, oc: 2, kh: 3, kw: 3, stride: 2, pad: 1, groups: 2)]
        var same = ConvGeometry(n: 2, c: 6, h: 33, w: 34, oc: 6, kh: 3, kw: 3, stride: 2, groups: 6)
        (same.padTop, same.padLeft, same.padBottom, same.padRight) = (0, 0, 1, 1)
        var wide = ConvGeometry(n: 1, c: 3, h: 12, w: 31, oc: 3, kh: 3, kw: 5, groups: 3)
        (wide.strideH, wide.strideW, wide.padLeft, wide.padRight) = (2, 1, 2, 1)
        let channelsLast = [ConvGeometry(n: 2, c: 61, h: 4, w: 4, oc: 61, kh: 5, kw: 5, pad: 2, groups: 61),
                            ConvGeometry(n: 2, c: 96, h: 2, w: 2, oc: 96, kh: 5, kw: 5, pad: 2, groups: 96),
                            ConvGeometry(n: 1, c: 50, h: 3, w: 5, oc: 50, kh: 3, kw: 3, pad: 1, groups: 50),
                            ConvGeometry(n: 2, c: 48, h: 8, w: 8, oc: 48, kh: 3, kw: 3, stride: 2, pad: 1, groups: 48),
                            ConvGeometry(n: 1, c: 16, h: 11, w: 12, oc: 16, kh: 3, kw: 3, pad: 2, dilation: 2, groups: 16),
                            ConvGeometry(n: 1, c: 8, h: 14, w: 14, oc: 8, kh: 3, kw: 3, stride: 3, pad: 1, groups: 8)]
        for g in grid + [same, wide] { XCTAssertTrue(Conv.depthwiseGridApplies(g), "\(g)"); check(g) }
        for g in channelsLast { XCTAssertFalse(Conv.depthwiseGridApplies(g), "\(g)"); check(g) }
        // A fused activation is the activation applied afterwards, bit for bit.
        for g in grid + channelsLast {
            let x = randomFloats(g.n * g.c * g.h * g.w, seed: 11).map { $0 * 4 }, w = randomFloats(g.oc * g.kdim, seed: 12)
            let b = randomFloats(g.oc, seed: 13)
            for act in [FusedActivation.relu, .clip(0, 1)] {
                var fused = [Float](repeating: .nan, count: g.n * g.oc * g.oh * g.ow), after = fused
                Conv.forward(g, x: x, weight: w, bias: b, y: &fused, activation: act, threads: 1)
                Conv.forward(g, x: x, weight: w, bias: b, y: &after, threads: 1)
                act.apply(after.count, &after)
                XCTAssertEqual(fused, after, "\(g) \(act)")
            }
        }
    }

    /// A fused activation, with and without a bias, is the activation applied afterwards, bit
    /// for bit, on every implicit path: pointwise side by side (rows of 4: the four-wide step;
    /// 5: a scalar tail), pointwise image by image (rows of 21 and more), the padded copies one
    /// image at a time and side by side, and Winograd; inputs include −0 and values on the bounds.
    func testFusedActivationOnImplicitPaths() {
        let shapes = [ConvGeometry(n: 5, c: 9, h: 2, w: 2, oc: 13, kh: 1, kw: 1),
                      ConvGeometry(n: 3, c: 6, h: 1, w: 5, oc: 7, kh: 1, kw: 1),
                      ConvGeometry(n: 2, c: 4, h: 21, w: 23, oc: 5, kh: 1, kw: 1),
                      ConvGeometry(n: 2, c: 3, h: 40, w: 41, oc: 6, kh: 3, kw: 3, pad: 1),
                      ConvGeometry(n: 3, c: 5, h: 9, w: 10, oc: 6, kh: 3, kw: 3, stride: 2, pad: 1),
                      ConvGeometry(n: 2, c: 8, h: 12, w: 12, oc: 8, kh: 3, kw: 3, pad: 1)]
        for g in shapes {
            var x = randomFloats(g.n * g.c * g.h * g.w, seed: 41).map { $0 * 8 }
            x[0] = -0.0; x[1] = 6; x[2] = 0
            let w = randomFloats(g.oc * g.kdim, seed: 42), b = randomFloats(g.oc, seed: 43)
            for bias in [b, nil] as [[Float]?] {
                for act in [FusedActivation.relu, .clip(0, 6), .clip(-1, 1)] {
                    var fused = [Float](repeating: .nan, count: g.n * g.oc * g.oh * g.ow), after = fused
                    func run(_ y: inout [Float], _ a: FusedActivation?) {
                        if let bias { Conv.forward(g, x: x, weight: w, bias: bias, y: &y, activation: a, threads: 2) }
                        else { Conv.forward(g, x: x, weight: w, bias: nil, y: &y, activation: a, threads: 2) }
                    }
                    run(&fused, act); run(&after, nil)
                    act.apply(after.count, &after)
                    XCTAssertEqual(fused.map(\.bitPattern), after.map(\.bitPattern), "\(g) \(act) bias \(bias != nil)")
                }
            }
        }
        // The vector and scalar forms agree on −0, NaN, the bounds and infinities.
        let special: [Float] = [-0.0, 0, .nan, -.infinity, .infinity, 6, -1, 1, 5.5, -3, 7, 0.5]
        for act in [FusedActivation.relu, .clip(0, 6), .clip(-1, 1)] {
            var v = special
            act.apply(v.count, &v)
            XCTAssertEqual(v.map(\.bitPattern), special.map { act.apply($0).bitPattern }, "\(act)")
            let (lo, hi) = act.bounds
            XCTAssertEqual(special.map { min(max($0, lo), hi).bitPattern }, special.map { act.apply($0).bitPattern }, "bounds \(act)")
        }
    }

    /// Weights packed once (`packWeights`) give the bits of packing them on every call.
    func testPackedWeights() {
        for g in [ConvGeometry(n: 3, c: 5, h: 12, w: 11, oc: 13, kh: 3, kw: 3, pad: 1),     // padded copy
                  ConvGeometry(n: 4, c: 40, h: 4, w: 4, oc: 7, kh: 3, kw: 3, pad: 1),      // K = 360, images side by side
                  ConvGeometry(n: 2, c: 9, h: 9, w: 9, oc: 20, kh: 1, kw: 1)] {           // pointwise
            let x = randomFloats(g.n * g.c * g.h * g.w, seed: 21), w = randomFloats(g.oc * g.kdim, seed: 22), b = randomFloats(g.oc, seed: 23)
            var packed = [Float](repeating: .nan, count: Conv.packedWeightCount(g))
            XCTAssertGreaterThanOrEqual(packed.count, g.oc * g.kdim)
            Conv.packWeights(g, weight: w, into: &packed)
            var fresh = [Float](repeating: .nan, count: g.n * g.oc * g.oh * g.ow), reused = fresh
            Conv.forward(g, x: x, weight: w, bias: b, y: &fresh, threads: 2)
            packed.withUnsafeBufferPointer { Conv.forward(g, x: x, weight: w, bias: b, y: &reused, packedWeights: $0.baseAddress!, threads: 2) }
            XCTAssertEqual(fresh, reused, "\(g)")
            XCTAssertLessThan(maxRelError(fresh, Conv.referenceForward(g, x: x, weight: w, bias: b)), 1e-5)
        }
        XCTAssertEqual(Conv.packedWeightCount(ConvGeometry(n: 1, c: 4, h: 5, w: 5, oc: 4, kh: 3, kw: 3, groups: 4)), 0)   // depthwise: none
    }

    /// Many images over 1, 2 and 3 threads: the same bits (per-image work; fixed partials for dW).
    /// Small outputs put several images in one GEMM; depthwise runs on channels-last copies:
    /// each image's output is the bits it gets alone.
    func testBatchedPathsMatchOneImageAtATime() {
        var shapes = [ConvGeometry(n: 7, c: 6, h: 5, w: 5, oc: 10, kh: 3, kw: 3, pad: 1),
                      ConvGeometry(n: 5, c: 4, h: 6, w: 7, oc: 6, kh: 3, kw: 2, stride: 2, pad: 1, groups: 2),
                      ConvGeometry(n: 6, c: 8, h: 3, w: 3, oc: 12, kh: 1, kw: 1),                       // pointwise
                      ConvGeometry(n: 3, c: 5, h: 7, w: 9, oc: 5, kh: 5, kw: 5, stride: 2, pad: 2, groups: 5),   // depthwise
                      ConvGeometry(n: 3, c: 4, h: 13, w: 11, oc: 4, kh: 3, kw: 3, stride: 1, pad: 1, dilation: 2, groups: 4),
                      ConvGeometry(n: 3, c: 5, h: 13, w: 12, oc: 7, kh: 3, kw: 3, pad: 1),                      // padded copy
                      ConvGeometry(n: 3, c: 3, h: 25, w: 24, oc: 5, kh: 3, kw: 3, stride: 2, pad: 1),           // stretches
                      ConvGeometry(n: 7, c: 30, h: 5, w: 5, oc: 9, kh: 3, kw: 3, pad: 1)]                       // K = 270
        var asym = ConvGeometry(n: 4, c: 3, h: 9, w: 10, oc: 3, kh: 3, kw: 3, stride: 2, groups: 3)
        (asym.padTop, asym.padLeft, asym.padBottom, asym.padRight) = (0, 0, 1, 1)   // TF "SAME"
        shapes.append(asym)
        for g in shapes {
            let x = randomFloats(g.n * g.c * g.h * g.w, seed: 3), w = randomFloats(g.oc * g.kdim, seed: 4), b = randomFloats(g.oc, seed: 5)
            var all = [Float](repeating: 0, count: g.n * g.oc * g.oh * g.ow)
            Conv.forward(g, x: x, weight: w, bias: b, y: &all, threads: 2)
            var one = g; one.n = 1
            let inSize = g.c * g.h * g.w, outSize = g.oc * g.oh * g.ow
            for i in 0..<g.n {
                var y = [Float](repeating: 0, count: outSize)
                Array(x[(i * inSize)..<((i + 1) * inSize)]).withUnsafeBufferPointer { Conv.forward(one, x: $0.baseAddress!, weight: w, bias: b, y: &y, threads: 1) }
                XCTAssertEqual(Array(all[(i * outSize)..<((i + 1) * outSize)]), y, "\(g) image \(i)")
                let ref = Conv.referenceForward(one, x: Array(x[(i * inSize)..<((i + 1) * inSize)]), weight: w, bias: b)
                XCTAssertLessThan(maxRelError(y, ref), 1e-5, "\(g) against the reference")
            }
        }
    }

    func testThreadCountDoesNotChangeBits() {
        for g in [ConvGeometry(n: 9, c: 4, h: 10, w: 10, oc: 8, kh: 3, kw: 3, pad: 1),
                  ConvGeometry(n: 1, c: 16, h: 12, w: 12, oc: 32, kh: 3, kw: 3, pad: 1),   // one image: threaded GEMM
                  ConvGeometry(n: 6, c: 8, h: 7, w: 7, oc: 8, kh: 3, kw: 3, pad: 1, groups: 8)] {
            let one = run(g, threads: 1)
            for t in [2, 3] {
                let many = run(g, threads: t)
                XCTAssertEqual(one.y, many.y, "y \(g) \(t)")
                XCTAssertEqual(one.dx, many.dx, "dx \(g) \(t)")
                XCTAssertEqual(one.dw, many.dw, "dw \(g) \(t)")
                XCTAssertEqual(one.db, many.db, "db \(g) \(t)")
            }
        }
    }

    /// Columns kept by forward give backward the same bits as recomputing them.
    func testKeptColumnsMatchRecomputed() {
        var g = ConvGeometry(n: 3, c: 4, h: 7, w: 6, oc: 6, kh: 3, kw: 3, stride: 2, pad: 1, groups: 2)
        g.padBottom = 2
        let x = randomFloats(g.n * g.c * g.h * g.w, seed: 1), w = randomFloats(g.oc * g.kdim, seed: 2)
        let dy = randomFloats(g.n * g.oc * g.oh * g.ow, seed: 3)
        var y = [Float](repeating: 0, count: dy.count), cols = [Float](repeating: .nan, count: Conv.columnCount(g))
        Conv.forward(g, x: x, weight: w, bias: nil, y: &y, columns: &cols, threads: 2)
        XCTAssertFalse(cols.contains { $0.isNaN })
        var dx1 = [Float](repeating: 0, count: x.count), dw1 = [Float](repeating: 0, count: w.count)
        var dx2 = dx1, dw2 = dw1
        Conv.backward(g, x: x, weight: w, dy: dy, dx: &dx1, dweight: &dw1, dbias: nil, threads: 2)
        Conv.backward(g, x: x, weight: w, dy: dy, dx: &dx2, dweight: &dw2, dbias: nil, columns: cols, threads: 2)
        XCTAssertEqual(dx1, dx2); XCTAssertEqual(dw1, dw2)
    }

    func testGeometryProblems() {
        XCTAssertNotNil(ConvGeometry(n: 1, c: 3, h: 5, w: 5, oc: 4, kh: 3, kw: 3, groups: 2).problem)
        XCTAssertNotNil(ConvGeometry(n: 1, c: 3, h: 2, w: 2, oc: 4, kh: 3, kw: 3).problem)
        XCTAssertNotNil(ConvGeometry(n: 1, c: 3, h: 5, w: 5, oc: 4, kh: 3, kw: 3, stride: 0).problem)
        let g = ConvGeometry(n: 1, c: 1, h: 28, w: 28, oc: 6, kh: 5, kw: 5)
        XCTAssertEqual([g.oh, g.ow], [24, 24])
    }
}

final class PoolTests: XCTestCase {
    /// Direct reference: windows clipped to the image, padding never wins a max.
    func reference(_ g: PoolGeometry, _ x: [Float], max isMax: Bool) -> [Float] {
        var y: [Float] = []
        for p in 0..<g.n * g.c { for r in 0..<g.oh { for q in 0..<g.ow {
            var best = -Float.infinity, s = 0.0, cnt = 0
            for i in 0..<g.kh { for j in 0..<g.kw {
                let ih = r * g.strideH - g.padTop + i, iw = q * g.strideW - g.padLeft + j
                guard ih >= 0, ih < g.h, iw >= 0, iw < g.w else { continue }
                let v = x[p * g.h * g.w + ih * g.w + iw]
                best = max(best, v); s += Double(v); cnt += 1
            } }
            var div = Double(cnt)
            if g.countIncludePad {
                let a0 = r * g.strideH - g.padTop, b0 = q * g.strideW - g.padLeft
                div = Double((min(a0 + g.kh, g.h + g.padBottom) - a0) * (min(b0 + g.kw, g.w + g.padRight) - b0))
            }
            y.append(isMax ? best : Float(s / div))
        } } }
        return y
    }

    func testMaxAndAverageAgainstReference() {
        var geoms = [PoolGeometry(n: 2, c: 3, h: 8, w: 8, kernel: 2), PoolGeometry(n: 1, c: 2, h: 7, w: 9, kernel: 3, stride: 2, pad: 1),
                     PoolGeometry(n: 2, c: 1, h: 5, w: 5, kernel: 3, stride: 1, pad: 1)]
        var ceil = PoolGeometry(n: 1, c: 2, h: 7, w: 7, kernel: 2); ceil.ceilMode = true
        var onnx = PoolGeometry(n: 1, c: 2, h: 6, w: 6, kernel: 3, stride: 2, pad: 1); onnx.countIncludePad = false
        // 2×2 / 2 with the padding at the bottom and right only (ONNX pads [0, 0, 1, 1]): the
        // last window row and column hang over the edge, which the 2×2 fast paths must not take.
        var overhang = PoolGeometry(n: 2, c: 3, h: 5, w: 19, kernel: 2); (overhang.padBottom, overhang.padRight) = (1, 1)
        geoms += [ceil, onnx, overhang]
        XCTAssertEqual(ceil.oh, 4)
        XCTAssertEqual([overhang.oh, overhang.ow], [3, 10])
        for g in geoms {
            XCTAssertNil(g.problem)
            let x = randomFloats(g.n * g.c * g.h * g.w, seed: 9)
            var y = [Float](repeating: 0, count: g.n * g.c * g.oh * g.ow)
            var am = [Int32](repeating: -1, count: y.count)
            Pool.maxForward(g, x: x, y: &y, argmax: &am)
            XCTAssertEqual(y, reference(g, x, max: true), "max \(g)")
            var inference = [Float](repeating: 0, count: y.count)
            Pool.maxForward(g, x: x, y: &inference, argmax: nil)
            XCTAssertEqual(inference, y, "max without argmax \(g)")
            for i in y.indices { XCTAssertEqual(x[(i / (g.oh * g.ow)) * g.h * g.w + Int(am[i])], y[i]) }
            // Backward: the gradient goes to the argmax, summed where windows share a winner.
            let dy = randomFloats(y.count, seed: 10)
            var dx = [Float](repeating: 0, count: x.count)
            Pool.maxBackward(g, argmax: am, dy: dy, dx: &dx)
            var want = [Float](repeating: 0, count: x.count)
            for i in y.indices { want[(i / (g.oh * g.ow)) * g.h * g.w + Int(am[i])] += dy[i] }
            XCTAssertEqual(dx, want)

            Pool.avgForward(g, x: x, y: &y)
            XCTAssertLessThan(maxRelError(y, reference(g, x, max: false)), 1e-6, "avg \(g)")
            // Average backward is the adjoint of forward: <avg(x), dy> == <x, avg'(dy)>.
            dx = [Float](repeating: 0, count: x.count)
            Pool.avgBackward(g, dy: dy, dx: &dx)
            let lhs = zip(y, dy).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let rhs = zip(x, dx).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            XCTAssertEqual(lhs, rhs, accuracy: 1e-5 * max(1, abs(lhs)))
        }
    }

    /// Inference max pooling (2×2, stride 2, no winner recorded) runs a SIMD path: the same
    /// values as the recording path, at widths with and without 8- and 4-wide tails, NaN included.
    func testMaxPoolInferencePathMatches() {
        for (h, w) in [(28, 28), (8, 8), (24, 24), (7, 35), (2, 2), (10, 17), (12, 12), (6, 10), (4, 9)] {
            let g = PoolGeometry(n: 2, c: 3, h: h, w: w, kernel: 2)
            var x = randomFloats(g.n * g.c * h * w, seed: UInt64(h * w))
            x[5] = .nan; x[h * w + 1] = .nan
            for i in stride(from: 7, to: x.count, by: 13) { x[i] = x[i - 1] }   // ties
            var fast = [Float](repeating: 0, count: g.n * g.c * g.oh * g.ow), slow = fast
            var am = [Int32](repeating: 0, count: fast.count)
            Pool.maxForward(g, x: x, y: &fast, argmax: nil)
            Pool.maxForward(g, x: x, y: &slow, argmax: &am)
            for i in fast.indices { XCTAssertTrue(fast[i] == slow[i] || (fast[i].isNaN && slow[i].isNaN), "\(h)x\(w) [\(i)]") }
            XCTAssertTrue(fast.contains { $0.isNaN }, "NaN propagates")
            // The recorded winners (a SIMD path at these widths): the first maximum in the order
            // top-left, top-right, bottom-left, bottom-right, a NaN over any number; ties included.
            for p in 0..<(g.n * g.c) {
                for r in 0..<g.oh {
                    for q in 0..<g.ow {
                        let base = p * h * w, cand = [2 * r * w + 2 * q, 2 * r * w + 2 * q + 1, (2 * r + 1) * w + 2 * q, (2 * r + 1) * w + 2 * q + 1]
                        var at = cand[0]
                        for c in cand.dropFirst() where x[base + c] > x[base + at] || (x[base + c].isNaN && !x[base + at].isNaN) { at = c }
                        XCTAssertEqual(Int(am[(p * g.oh + r) * g.ow + q]), at, "\(h)x\(w) plane \(p) (\(r), \(q))")
                    }
                }
            }
        }
    }

    /// Other max-pooling geometries in inference (a padded SIMD path): the recording path's values.
    func testGeneralMaxPoolInferencePath() {
        var geoms = [PoolGeometry(n: 2, c: 3, h: 112, w: 112, kernel: 3, stride: 2, pad: 1), PoolGeometry(n: 1, c: 2, h: 9, w: 13, kernel: 3, stride: 1, pad: 1),
                     PoolGeometry(n: 1, c: 2, h: 7, w: 7, kernel: 2, stride: 1)]
        var c = PoolGeometry(n: 1, c: 2, h: 11, w: 10, kernel: 3, stride: 2); c.ceilMode = true; geoms.append(c)
        var d = PoolGeometry(n: 1, c: 1, h: 12, w: 17, kernel: 2, stride: 2, pad: 1); d.dilationH = 2; d.dilationW = 3; d.kw = 3; geoms.append(d)
        for g in geoms {
            XCTAssertNil(g.problem)
            var x = randomFloats(g.n * g.c * g.h * g.w, seed: 12)
            x[3] = .nan
            var fast = [Float](repeating: 0, count: g.n * g.c * g.oh * g.ow), slow = fast
            var am = [Int32](repeating: 0, count: fast.count)
            Pool.maxForward(g, x: x, y: &fast, argmax: nil, threads: 2)
            Pool.maxForward(g, x: x, y: &slow, argmax: &am, threads: 1)
            for i in fast.indices { XCTAssertTrue(fast[i] == slow[i] || (fast[i].isNaN && slow[i].isNaN), "\(g) [\(i)]") }
        }
    }

    func testGlobalAverage() {
        let x = randomFloats(2 * 3 * 5, seed: 3)
        var y = [Float](repeating: 0, count: 6)
        Pool.globalAvgForward(planes: 6, size: 5, x: x, y: &y)
        for p in 0..<6 { XCTAssertEqual(y[p], x[p * 5..<p * 5 + 5].reduce(0, +) / 5, accuracy: 1e-6) }
        var dx = [Float](repeating: 1, count: 30)
        Pool.globalAvgBackward(planes: 6, size: 5, dy: [Float](repeating: 5, count: 6), dx: &dx)
        XCTAssertEqual(dx, [Float](repeating: 2, count: 30))
    }
}

final class ElementwiseTests: XCTestCase {
    func testSoftmaxIsStableAndNormalized() {
        let x: [Float] = [1000, 1001, 1002, -1000, 0, 1000, -5, -5, -5]
        var y = [Float](repeating: 0, count: 9), ly = y
        Elementwise.softmaxRows(rows: 3, cols: 3, x: x, y: &y)
        Elementwise.logSoftmaxRows(rows: 3, cols: 3, x: x, y: &ly)
        for r in 0..<3 {
            XCTAssertEqual(y[r * 3..<r * 3 + 3].reduce(0, +), 1, accuracy: 1e-6)
            // x ≈ 1000 carries only ~6e-5 of absolute precision in f32, hence the tolerance.
            for j in 0..<3 { XCTAssertEqual(expf(ly[r * 3 + j]), y[r * 3 + j], accuracy: 2e-4); XCTAssertTrue(ly[r * 3 + j].isFinite) }
        }
        XCTAssertEqual(y[0], 1 / (1 + expf(1) + expf(2)), accuracy: 1e-6)
        XCTAssertEqual(y[6], 1.0 / 3, accuracy: 1e-6)
        var am = [Int](repeating: -1, count: 3)
        Elementwise.argmaxRows(rows: 3, cols: 3, x: x, out: &am)
        XCTAssertEqual(am, [2, 2, 0])
    }

    func testActivationsAgainstDefinitions() {
        let x: [Float] = [-30, -2.5, -1, -0.1, 0, 0.1, 1, 2.5, 30]
        var y = [Float](repeating: 0, count: x.count)
        Elementwise.sigmoid(x.count, x: x, y: &y)
        for i in x.indices { XCTAssertEqual(Double(y[i]), 1 / (1 + exp(-Double(x[i]))), accuracy: 1e-7) }
        Elementwise.gelu(x.count, x: x, y: &y)
        for i in x.indices { XCTAssertEqual(Double(y[i]), Double(x[i]) * 0.5 * (1 + erf(Double(x[i]) / 2.0.squareRoot())), accuracy: 1e-5) }
        // Backward of every activation against a central difference of its forward.
        typealias F = (Int, UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void
        let fwd: [(String, F)] = [
            ("sigmoid", { Elementwise.sigmoid($0, x: $1, y: $2) }), ("tanh", { Elementwise.tanh($0, x: $1, y: $2) }),
            ("gelu", { Elementwise.gelu($0, x: $1, y: $2) }), ("leaky", { Elementwise.leakyRelu($0, slope: 0.1, x: $1, y: $2) }),
            ("relu", { Elementwise.relu($0, x: $1, y: $2) }), ("clip", { Elementwise.clip($0, lo: 0, hi: 6, x: $1, y: $2) }),
        ]
        let pts: [Float] = [-2.5, -1, -0.3, 0.2, 1, 2.5, 7]
        for (name, f) in fwd {
            var out = [Float](repeating: 0, count: pts.count)
            f(pts.count, pts, &out)
            var dx = [Float](repeating: 0, count: pts.count)
            let dy = [Float](repeating: 1, count: pts.count)
            switch name {
            case "sigmoid": Elementwise.sigmoidBackward(pts.count, y: out, dy: dy, dx: &dx)
            case "tanh": Elementwise.tanhBackward(pts.count, y: out, dy: dy, dx: &dx)
            case "gelu": Elementwise.geluBackward(pts.count, x: pts, dy: dy, dx: &dx)
            case "leaky": Elementwise.leakyReluBackward(pts.count, slope: 0.1, x: pts, dy: dy, dx: &dx)
            case "relu": Elementwise.reluBackward(pts.count, y: out, dy: dy, dx: &dx)
            default: Elementwise.clipBackward(pts.count, lo: 0, hi: 6, x: pts, dy: dy, dx: &dx)
            }
            for i in pts.indices {
                let h: Float = 1e-2
                var a: [Float] = [pts[i] - h], b: [Float] = [pts[i] + h], ya: [Float] = [0], yb: [Float] = [0]
                f(1, &a, &ya); f(1, &b, &yb)
                XCTAssertEqual(dx[i], (yb[0] - ya[0]) / (2 * h), accuracy: 2e-3, "\(name) at \(pts[i])")
            }
        }
    }

    func testChannelStatistics() {
        let n = 3, c = 2, s = 4
        let x = randomFloats(n * c * s, seed: 8).map { $0 + 1000 }  // large offset: no cancellation
        var mean = [Float](repeating: 0, count: c), v = mean
        Elementwise.channelStatistics(n: n, c: c, size: s, x: x, mean: &mean, variance: &v)
        for ch in 0..<c {
            var vals: [Double] = []
            for i in 0..<n { for j in 0..<s { vals.append(Double(x[(i * c + ch) * s + j])) } }
            let mu = vals.reduce(0, +) / Double(vals.count)
            let va = vals.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / Double(vals.count)
            XCTAssertEqual(Double(mean[ch]), mu, accuracy: 1e-4)
            XCTAssertEqual(Double(v[ch]), va, accuracy: 1e-5)
        }
    }
}

final class UpdateTests: XCTestCase {
    /// Adam and AdamW against the formulas in double precision over several steps.
    func testAdamMatchesFormula() {
        for decoupled in [false, true] {
            var p: [Float] = [0.5, -1, 2], m: [Float] = [0, 0, 0], v: [Float] = [0, 0, 0]
            var pd = p.map(Double.init), md = [0.0, 0, 0], vd = [0.0, 0, 0]
            let lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1
            for t in 1...5 {
                let g: [Float] = [Float(t) * 0.1, -0.2, 0.3 / Float(t)]
                Update.adam(3, param: &p, grad: g, m: &m, v: &v, lr: Float(lr), beta1: Float(b1), beta2: Float(b2), eps: Float(eps),
                            weightDecay: Float(wd), decoupled: decoupled, step: t)
                for i in 0..<3 {
                    var gi = Double(g[i])
                    if decoupled { pd[i] *= 1 - lr * wd } else { gi += wd * pd[i] }
                    md[i] = b1 * md[i] + (1 - b1) * gi
                    vd[i] = b2 * vd[i] + (1 - b2) * gi * gi
                    let mh = md[i] / (1 - pow(b1, Double(t))), vh = vd[i] / (1 - pow(b2, Double(t)))
                    pd[i] -= lr * mh / (vh.squareRoot() + eps)
                    XCTAssertEqual(Double(p[i]), pd[i], accuracy: 1e-5, "decoupled=\(decoupled) step \(t)")
                }
            }
        }
    }

    func testSGDMomentumAndNesterov() {
        for nesterov in [false, true] {
            var p: [Float] = [1, -2], vel: [Float] = [0, 0]
            var pd = [1.0, -2], vd = [0.0, 0]
            for t in 1...4 {
                let g: [Float] = [0.5 * Float(t), -0.25]
                Update.sgd(2, param: &p, grad: g, velocity: &vel, lr: 0.1, momentum: 0.9, weightDecay: 0.01, nesterov: nesterov)
                for i in 0..<2 {
                    let gi = Double(g[i]) + 0.01 * pd[i]
                    vd[i] = 0.9 * vd[i] + gi
                    pd[i] -= 0.1 * (nesterov ? gi + 0.9 * vd[i] : vd[i])
                    XCTAssertEqual(Double(p[i]), pd[i], accuracy: 1e-5)
                }
            }
        }
    }
}
