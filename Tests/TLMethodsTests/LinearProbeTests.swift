import XCTest
import Glibc
@testable import TLCore
@testable import TLNN
@testable import TLMethods

/// A small separable-ish problem: 3 Gaussian blobs in `d` dimensions, plus a bias feature scale.
func blobs(n: Int, d: Int, k: Int, seed: UInt64, spread: Float = 1.5) -> (Tensor, [Int]) {
    var rng = RNG(seed: seed)
    let x = try! Tensor(zeros: .f32, shape: [n, d])
    var y = [Int](repeating: 0, count: n)
    for i in 0..<n {
        y[i] = i % k
        for j in 0..<d {
            let center: Float = (j % k == y[i]) ? 1 : 0
            // Box-Muller normal noise.
            let u1 = max(rng.uniform(), 1e-7), u2 = rng.uniform()
            let z = Float((-2 * log(Double(u1))).squareRoot() * cos(2 * Double.pi * Double(u2)))
            x.f32[i * d + j] = center * 2 + z * spread + Float(j) * 0.3
        }
    }
    return (x, y)
}

/// The softmax objective, gradient and Hessian in Double (parameters: W [k, d] then b [k]).
func softmaxObjective(_ x: Tensor, _ y: [Int], k: Int, lambda: Double, _ p: [Double]) -> (Double, [Double], [[Double]]) {
    let n = x.rows, d = x.shape[1], m = k * (d + 1)
    var f = 0.0, g = [Double](repeating: 0, count: m), h = [[Double]](repeating: [Double](repeating: 0, count: m), count: m)
    for i in 0..<n {
        let xi = (0..<d).map { Double(x.f32[i * d + $0]) } + [1.0]
        var s = (0..<k).map { c in (0..<d).reduce(p[k * d + c]) { $0 + p[c * d + $1] * xi[$1] } }
        let mx = s.max()!
        s = s.map { $0 - mx }
        let z = s.reduce(0) { $0 + exp($1) }
        let pr = s.map { exp($0) / z }
        f += log(z) - s[y[i]]
        func idx(_ c: Int, _ j: Int) -> Int { j < d ? c * d + j : k * d + c }
        for c in 0..<k {
            let r = pr[c] - (c == y[i] ? 1 : 0)
            for j in 0...d { g[idx(c, j)] += r * xi[j] }
            for c2 in 0..<k {
                let w = pr[c] * ((c == c2 ? 1 : 0) - pr[c2])
                for j in 0...d { for j2 in 0...d { h[idx(c, j)][idx(c2, j2)] += w * xi[j] * xi[j2] } }
            }
        }
    }
    f /= Double(n)
    for a in 0..<m { g[a] /= Double(n); for b in 0..<m { h[a][b] /= Double(n) } }
    for a in 0..<(k * d) { f += lambda / 2 * p[a] * p[a]; g[a] += lambda * p[a]; h[a][a] += lambda }
    return (f, g, h)
}

/// Solves h·v = g by Gaussian elimination with partial pivoting.
func solve(_ h: [[Double]], _ g: [Double]) -> [Double] {
    var a = h, b = g
    let n = b.count
    for c in 0..<n {
        let p = (c..<n).max { abs(a[$0][c]) < abs(a[$1][c]) }!
        a.swapAt(c, p); b.swapAt(c, p)
        for r in (c + 1)..<n where a[r][c] != 0 {
            let f = a[r][c] / a[c][c]
            for j in c..<n { a[r][j] -= f * a[c][j] }
            b[r] -= f * b[c]
        }
    }
    var v = [Double](repeating: 0, count: n)
    for r in stride(from: n - 1, through: 0, by: -1) {
        v[r] = (b[r] - ((r + 1)..<n).reduce(0.0) { $0 + a[r][$1] * v[$1] }) / a[r][r]
    }
    return v
}

final class LBFGSTests: XCTestCase {
    func testRosenbrock() {
        var opt = LBFGS()
        opt.gradientTolerance = 1e-9
        let r = opt.minimize([-1.2, 1]) { x, g in
            let a = 1 - x[0], b = x[1] - x[0] * x[0]
            g[0] = -2 * a - 400 * x[0] * b
            g[1] = 200 * b
            return a * a + 100 * b * b
        }
        XCTAssertTrue(r.converged, r.reason)
        XCTAssertEqual(r.x[0], 1, accuracy: 1e-6)
        XCTAssertEqual(r.x[1], 1, accuracy: 1e-6)
        XCTAssertLessThan(r.iterations, 100)
    }

    /// An ill-conditioned quadratic (condition number 10³) in 50 dimensions: x* = A⁻¹b exactly.
    /// (A line search on f cannot resolve much tighter gradients: f changes by g²/2a, which
    /// falls below Double's resolution of f for the stiff coordinates.)
    func testQuadratic() {
        let n = 50
        let diag = (0..<n).map { pow(10, 3 * Double($0) / Double(n - 1)) }
        let b = (0..<n).map { Double($0 % 7) - 3 }
        var opt = LBFGS()
        opt.gradientTolerance = 1e-5
        let r = opt.minimize([Double](repeating: 0, count: n)) { x, g in
            var f = 0.0
            for i in 0..<n { g[i] = diag[i] * x[i] - b[i]; f += 0.5 * diag[i] * x[i] * x[i] - b[i] * x[i] }
            return f
        }
        XCTAssertTrue(r.converged, r.reason)
        XCTAssertEqual(r.reason, "gradient below tolerance")
        XCTAssertLessThanOrEqual(r.gradientMax, 1e-5)
        for i in 0..<n { XCTAssertEqual(r.x[i], b[i] / diag[i], accuracy: 1e-5 / diag[i] * 1.001) }
    }

    func testIterationLimitIsReported() {
        var opt = LBFGS()
        opt.maxIterations = 3; opt.gradientTolerance = 1e-12
        let r = opt.minimize([-1.2, 1]) { x, g in
            let a = 1 - x[0], b = x[1] - x[0] * x[0]
            g[0] = -2 * a - 400 * x[0] * b; g[1] = 200 * b
            return a * a + 100 * b * b
        }
        XCTAssertFalse(r.converged)
        XCTAssertEqual(r.iterations, 3)
        XCTAssertTrue(r.reason.contains("iteration limit"))
    }
}

final class LinearProbeTests: XCTestCase {
    /// Softmax regression against Newton's method in Double on the same objective: the
    /// objective agrees to 1e-6 relative and the weights to 1e-3.
    func testSoftmaxMatchesNewtonReference() throws {
        let (x, y) = blobs(n: 120, d: 4, k: 3, seed: 7)
        var c = LinearConfig()
        c.cost = 0.5; c.tolerance = 1e-5; c.threads = 1
        let fit = try LinearProbe.fit(x: x, labels: y, classes: ["a", "b", "c"], config: c)
        XCTAssertTrue(fit.converged, fit.reason)
        XCTAssertEqual(fit.lambda, 1 / (0.5 * 120), accuracy: 1e-15)
        // Damped Newton from zero (strictly convex: quadratic convergence once close).
        var p = [Double](repeating: 0, count: 3 * 5)
        for _ in 0..<40 {
            let (f0, g, h) = softmaxObjective(x, y, k: 3, lambda: fit.lambda, p)
            let step = solve(h, g)
            var t = 1.0
            while t > 1e-8 {
                let q = zip(p, step).map { $0 - t * $1 }
                if softmaxObjective(x, y, k: 3, lambda: fit.lambda, q).0 <= f0 { p = q; break }
                t /= 2
            }
        }
        let (fRef, gRef, _) = softmaxObjective(x, y, k: 3, lambda: fit.lambda, p)
        XCTAssertLessThan(maxAbs(gRef), 1e-12)
        XCTAssertEqual(fit.objective, fRef, accuracy: 1e-6 * fRef)
        let w = fit.net.parameters[0], b = fit.net.parameters[1]
        for i in 0..<12 { XCTAssertEqual(Double(w.v[i]), p[i], accuracy: 1e-3) }
        // Softmax does not change when every bias moves by the same amount (biases are not
        // penalized), so the biases are unique only up to that shift.
        let shift = (0..<3).reduce(0.0) { $0 + Double(b.v[$1]) - p[12 + $1] } / 3
        for j in 0..<3 { XCTAssertEqual(Double(b.v[j]) - shift, p[12 + j], accuracy: 1e-3) }
        // The model predicts like the reference.
        let logits = try fit.net.forward(try fit.net.normalize(x), Context(training: false, threads: 1))
        XCTAssertEqual(logits.shape, [120, 3])
    }

    /// The linear SVM (squared hinge) against damped Newton with the generalized Hessian in
    /// Double (the objective is piecewise quadratic, so Newton finishes in a few steps).
    func testSquaredHingeMatchesNewtonReference() throws {
        let (x, y) = blobs(n: 90, d: 5, k: 3, seed: 11)
        var c = LinearConfig()
        c.loss = .svm; c.threads = 1
        let fit = try LinearProbe.fit(x: x, labels: y, classes: ["a", "b", "c"], config: c)
        let n = 90, d = 5, k = 3, m = k * (d + 1)
        func objective(_ p: [Double]) -> (Double, [Double], [[Double]]) {
            var f = 0.0, g = [Double](repeating: 0, count: m), h = [[Double]](repeating: [Double](repeating: 0, count: m), count: m)
            for i in 0..<n {
                let xi = (0..<d).map { Double(x.f32[i * d + $0]) } + [1.0]
                for cl in 0..<k {
                    let idx = (0...d).map { $0 < d ? cl * d + $0 : k * d + cl }
                    let s = (0...d).reduce(0.0) { $0 + p[idx[$1]] * xi[$1] }
                    let t: Double = cl == y[i] ? 1 : -1, mg = 1 - t * s
                    guard mg > 0 else { continue }
                    f += mg * mg / Double(n)
                    for j in 0...d {
                        g[idx[j]] += -2 * t * mg * xi[j] / Double(n)
                        for j2 in 0...d { h[idx[j]][idx[j2]] += 2 * xi[j] * xi[j2] / Double(n) }
                    }
                }
            }
            for a in 0..<(k * d) { f += fit.lambda / 2 * p[a] * p[a]; g[a] += fit.lambda * p[a]; h[a][a] += fit.lambda }
            return (f, g, h)
        }
        var p = [Double](repeating: 0, count: m)
        for _ in 0..<60 {
            let (f0, g, h) = objective(p)
            let step = solve(h, g)
            var t = 1.0
            while t > 1e-10 {
                let q = zip(p, step).map { $0 - t * $1 }
                if objective(q).0 < f0 { p = q; break }
                t /= 2
            }
        }
        let (fRef, gRef, _) = objective(p)
        XCTAssertLessThan(maxAbs(gRef), 1e-9)
        XCTAssertEqual(fit.objective, fRef, accuracy: 1e-6 * fRef)
        let w = fit.net.parameters[0].value.floats + fit.net.parameters[1].value.floats
        for i in 0..<m { XCTAssertEqual(Double(w[i]), p[i], accuracy: 2e-3, "parameter \(i)") }
    }

    /// Standardization is learned from the training data, kept in the model, and makes the
    /// same problem as standardizing by hand first.
    func testStandardizationIsKeptInTheModel() throws {
        let (x, y) = blobs(n: 60, d: 3, k: 3, seed: 5)
        for i in 0..<60 { x.f32[i * 3 + 1] = x.f32[i * 3 + 1] * 100 + 500 }  // a badly scaled feature
        var c = LinearConfig()
        c.standardize = true; c.threads = 1
        let fit = try LinearProbe.fit(x: x, labels: y, classes: ["a", "b", "c"], config: c)
        let spec = fit.net.input
        XCTAssertEqual(spec.mean.count, 3); XCTAssertEqual(spec.std.count, 3)
        var mean = 0.0, sq = 0.0
        for i in 0..<60 { mean += Double(x.f32[i * 3 + 1]) }
        mean /= 60
        for i in 0..<60 { sq += pow(Double(x.f32[i * 3 + 1]) - mean, 2) }
        XCTAssertEqual(Double(spec.mean[1]), mean, accuracy: 1e-3)
        XCTAssertEqual(Double(spec.std[1]), (sq / 60).squareRoot(), accuracy: 1e-3)
        let z = try fit.net.normalize(x)
        var s = 0.0
        for i in 0..<60 { s += Double(z.f32[i * 3 + 1]) }
        XCTAssertEqual(s / 60, 0, accuracy: 1e-4)
    }

    /// Class weights: weighting a class up raises its recall on an overlapping problem.
    func testClassWeightsShiftTheBoundary() throws {
        let (x, y) = blobs(n: 300, d: 2, k: 3, seed: 3, spread: 2.5)
        var c = LinearConfig()
        c.threads = 1
        let plain = try LinearProbe.fit(x: x, labels: y, classes: ["a", "b", "c"], config: c)
        c.classWeights = [1, 8, 1]
        let weighted = try LinearProbe.fit(x: x, labels: y, classes: ["a", "b", "c"], config: c)
        func recall1(_ net: Network) throws -> Int {
            let l = try net.forward(try net.normalize(x), Context(training: false, threads: 1))
            var am = [Int](repeating: 0, count: 300)
            Elementwise.argmaxRows(rows: 300, cols: 3, x: l.f32, out: &am)
            return (0..<300).filter { y[$0] == 1 && am[$0] == 1 }.count
        }
        XCTAssertGreaterThan(try recall1(weighted.net), try recall1(plain.net))
    }

    /// Minibatch mode streams chunks (x and y interleaved, or one after the other) and gets close
    /// to the full-batch optimum of the same objective.
    func testMinibatchApproachesTheOptimum() throws {
        let (x, y) = blobs(n: 400, d: 4, k: 3, seed: 9)
        let yt = try Tensor(zeros: .i64, shape: [400])
        for i in 0..<400 { try yt.setInteger(Int64(y[i]), at: i) }
        var c = LinearConfig()
        c.threads = 1; c.standardize = true
        let full = try LinearProbe.fit(x: x, labels: y, classes: ["a", "b", "c"], config: c)
        // Interleaved chunks of 100 rows.
        var recs: [(String, Tensor)] = []
        for i in stride(from: 0, to: 400, by: 100) { recs.append(("x", x.rows(i..<i + 100))); recs.append(("y", yt.rows(i..<i + 100))) }
        let interleaved = try tltBytesForTest(recs)
        c.solver = .minibatch; c.epochs = 60; c.batch = 32; c.lr = 0.01; c.shuffleRows = 150
        let mb = try LinearProbe.fitMinibatch(open: { try TLTStreamReader(BufferedReader(MemoryReader(interleaved)), fileName: "mem") },
                                              classes: ["a", "b", "c"], config: c)
        XCTAssertEqual(mb.iterations, 60 * 13)  // 400 rows in batches of 32: 12 full and one of 16 per epoch
        // Its exact objective (computed full batch) is within 2% of the optimum.
        let (f, _, _) = softmaxObjective(try mb.net.normalize(x), y, k: 3, lambda: mb.lambda,
                                         mb.net.parameters[0].value.floats.map(Double.init) + mb.net.parameters[1].value.floats.map(Double.init))
        XCTAssertLessThan(f, full.objective * 1.02)
        XCTAssertEqual(mb.net.input.mean, full.net.input.mean)
        // x then y (sequential layout): the same rows pair up.
        let seq = try tltBytesForTest([("x", x), ("y", yt)])
        var pairs = LabeledRows(try TLTStreamReader(BufferedReader(MemoryReader(seq)), fileName: "mem"))
        var total = 0
        while let (px, py) = try pairs.next() { XCTAssertEqual(px.rows, py.rows); total += px.rows }
        XCTAssertEqual(total, 400)
        // Unequal counts are a data error.
        let bad = try tltBytesForTest([("x", x), ("y", yt.rows(0..<399))])
        var bp = LabeledRows(try TLTStreamReader(BufferedReader(MemoryReader(bad)), fileName: "mem"))
        XCTAssertThrowsError(try { while try bp.next() != nil {} }()) { XCTAssertEqual(($0 as? TLError)?.kind, .data) }
    }

    /// The blocked objective sums fixed partials in order: any thread count, the same bits.
    func testFitIsIndependentOfThreads() throws {
        let (x, y) = blobs(n: 2000, d: 37, k: 4, seed: 21)
        var c = LinearConfig()
        c.maxIterations = 30
        var fits: [[Float]] = []
        for t in [1, 2, 3] {
            c.threads = t
            let f = try LinearProbe.fit(x: x, labels: y, classes: ["a", "b", "c", "d"], config: c)
            fits.append(f.net.parameters[0].value.floats + f.net.parameters[1].value.floats)
        }
        XCTAssertEqual(fits[0], fits[1]); XCTAssertEqual(fits[0], fits[2])
    }

    func testLabelsOutOfRangeAreDataErrors() {
        let (x, _) = blobs(n: 10, d: 2, k: 2, seed: 1)
        XCTAssertThrowsError(try LinearProbe.checkedLabels(Tensor([0, 1, 5] as [Int64]), 3, firstRow: 7)) { e in
            XCTAssertEqual((e as? TLError)?.kind, .data)
            XCTAssertEqual((e as? TLError)?.location, "y row 9")
        }
        XCTAssertThrowsError(try LinearProbe.fit(x: x.rows(0..<0), labels: [], classes: ["a", "b"], config: LinearConfig()))
    }
}

func tltBytesForTest(_ records: [(String, Tensor)]) throws -> [UInt8] {
    let m = MemoryWriter()
    let w = try TLTWriter(m, producer: "test", meta: nil)
    for (n, t) in records { try w.write(name: n, tensor: t) }
    try w.finish()
    return m.bytes
}
