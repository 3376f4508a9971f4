import XCTest
@testable import TLCore

/// The few-output kernels against their Double references on odd shapes (rows not a multiple
/// of 2 or 4, classes not a multiple of 5 or 2, features not a multiple of 8).
final class FewClassesTests: XCTestCase {
    func random(_ n: Int, _ seed: UInt64) -> [Float] { var r = RNG(seed: seed); return (0..<n).map { _ in r.uniform() * 2 - 1 } }

    func testScoresMatchReference() {
        for (m, n, k) in [(1, 1, 1), (7, 10, 512), (33, 3, 17), (256, 10, 513), (5, 13, 8), (2, 5, 40), (9, 16, 100)] {
            let a = random(m * k, 1), b = random(n * k, 2)
            var c = [Float](repeating: .nan, count: m * n)
            FewClasses.scores(m: m, n: n, k: k, a: a, lda: k, b: b, ldb: k, c: &c, ldc: n)
            let ref = FewClasses.referenceScores(m: m, n: n, k: k, a: a, b: b)
            for i in 0..<(m * n) { XCTAssertEqual(c[i], ref[i], accuracy: 1e-4 * Float(k).squareRoot(), "\(m)x\(n)x\(k) [\(i)]") }
        }
        // Leading dimensions larger than the rows: a view of a wider matrix.
        let a = random(6 * 20, 3), b = random(4 * 24, 4)
        var c = [Float](repeating: -7, count: 6 * 9)
        FewClasses.scores(m: 6, n: 4, k: 16, a: a, lda: 20, b: b, ldb: 24, c: &c, ldc: 9)
        for i in 0..<6 {
            for j in 0..<4 {
                let ref = (0..<16).reduce(0.0) { $0 + Double(a[i * 20 + $1]) * Double(b[j * 24 + $1]) }
                XCTAssertEqual(Double(c[i * 9 + j]), ref, accuracy: 1e-4)
            }
            for j in 4..<9 { XCTAssertEqual(c[i * 9 + j], -7, "columns past n are not touched") }
        }
    }

    func testGradientAccumulatesAndMatchesReference() {
        for (m, n, k) in [(1, 1, 1), (7, 10, 512), (33, 3, 17), (256, 10, 513), (5, 13, 8), (4, 2, 40), (9, 1, 100)] {
            let d = random(m * n, 5), a = random(m * k, 6), g0 = random(n * k, 7)
            var g = g0
            FewClasses.accumulateGradient(m: m, n: n, k: k, d: d, ldd: n, a: a, lda: k, g: &g, ldg: k)
            let ref = FewClasses.referenceGradient(m: m, n: n, k: k, d: d, a: a, g: g0)
            for i in 0..<(n * k) { XCTAssertEqual(g[i], ref[i], accuracy: 1e-4 * Float(m).squareRoot(), "\(m)x\(n)x\(k) [\(i)]") }
            // Prefetching the next rows changes nothing.
            var h = g0
            a.withUnsafeBufferPointer { pa in
                FewClasses.accumulateGradient(m: m, n: n, k: k, d: d, ldd: n, a: pa.baseAddress!, lda: k, g: &h, ldg: k,
                                              next: pa.baseAddress!, nextRows: m)
            }
            XCTAssertEqual(g, h)
        }
    }
}
