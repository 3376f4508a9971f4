import XCTest
@testable import TLCore

/// Random floats in [-1, 1).
func randomFloats(_ n: Int, seed: UInt64) -> [Float] {
    var r = RNG(seed: seed)
    return (0..<n).map { _ in r.uniform() * 2 - 1 }
}

/// max |a - b| / max(1, max |b|): relative to the output's scale.
func maxRelError(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    var e: Float = 0, s: Float = 1
    for i in 0..<a.count { e = max(e, abs(a[i] - b[i])); s = max(s, abs(b[i])) }
    return e / s
}

final class GEMMTests: XCTestCase {
    /// One product through the blocked kernel and the reference, on padded leading dimensions.
    func check(_ m: Int, _ n: Int, _ k: Int, ta: Bool, tb: Bool, alpha: Float = 1, beta: Float = 0,
               threads: Int = 1, file: StaticString = #filePath, line: UInt = #line) -> [Float] {
        let lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2
        let a = randomFloats((ta ? k : m) * lda, seed: UInt64(m * 131 + k))
        let b = randomFloats((tb ? n : k) * ldb, seed: UInt64(n * 7 + k + 1))
        var c = randomFloats(m * ldc, seed: 99)
        var ref = c
        if beta == 0 { for i in c.indices { c[i] = .nan } ; ref = c }  // β = 0 must not read C
        c.withUnsafeMutableBufferPointer { cp in
            GEMM.sgemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                       beta: beta, c: cp.baseAddress!, ldc: ldc, threads: threads)
        }
        ref.withUnsafeMutableBufferPointer { rp in
            GEMM.reference(transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                           beta: beta, c: rp.baseAddress!, ldc: ldc)
        }
        // Columns beyond n (the ldc padding) must be untouched.
        var got: [Float] = [], want: [Float] = []
        for i in 0..<m {
            for j in 0..<ldc {
                if j < n { got.append(c[i * ldc + j]); want.append(ref[i * ldc + j]) }
                else { XCTAssertTrue(c[i * ldc + j].isNaN || c[i * ldc + j] == ref[i * ldc + j], "padding written at \(i),\(j)", file: file, line: line) }
            }
        }
        let tol: Float = 2e-6 * Float(max(k, 1)).squareRoot() + 1e-6
        XCTAssertLessThan(maxRelError(got, want), tol, "\(m)x\(k)x\(n) ta=\(ta) tb=\(tb) α=\(alpha) β=\(beta) threads=\(threads)", file: file, line: line)
        return got
    }

    func testOddShapesAllTransposes() {
        let sizes = [1, 2, 5, 6, 7, 13, 16, 17, 31, 97]
        var r = RNG(seed: 5)
        for ta in [false, true] {
            for tb in [false, true] {
                for _ in 0..<25 {
                    let m = sizes[r.below(sizes.count)], n = sizes[r.below(sizes.count)], k = sizes[r.below(sizes.count)]
                    _ = check(m, n, k, ta: ta, tb: tb)
                }
            }
        }
    }

    /// Shapes that cross every block boundary (KC = 256, MC = 120, NC = 2048) and the small-N path.
    func testBlockBoundaries() {
        _ = check(121, 33, 257, ta: false, tb: false)
        _ = check(7, 2049, 5, ta: false, tb: true)
        _ = check(250, 10, 300, ta: true, tb: false)   // N < 16: the transposed path
        _ = check(64, 3, 513, ta: true, tb: true)
        _ = check(130, 130, 600, ta: false, tb: false, alpha: 0.5, beta: 2)
        _ = check(70, 300, 700, ta: true, tb: false, alpha: 0.5, beta: 2, threads: 2)   // shared tiles accumulate over K blocks
    }

    func testAlphaBeta() {
        _ = check(20, 37, 19, ta: false, tb: false, alpha: -1.5, beta: 0.25)
        _ = check(20, 37, 19, ta: true, tb: true, alpha: 2, beta: 1)
        _ = check(40, 5, 19, ta: false, tb: true, alpha: 1, beta: -1)
        // k = 0: C = β·C.
        _ = check(3, 4, 0, ta: false, tb: false, alpha: 1, beta: 0.5)
    }

    /// Any thread count gives the same bits (each element is computed by one thread, same order).
    func testThreadCountDoesNotChangeBits() {
        for (m, n, k, ta, tb) in [(200, 180, 300, false, false), (64, 520, 288, false, true), (300, 12, 400, true, false), (37, 1000, 129, true, true),
                                  (301, 260, 450, false, false), (250, 300, 460, true, true),  // shared packed B
                                  (130, 2050, 520, false, false), (13, 2100, 300, true, true)] {  // shared tiles over two NC blocks
            let one = check(m, n, k, ta: ta, tb: tb, threads: 1)
            for t in [2, 3, 4] {
                let many = check(m, n, k, ta: ta, tb: tb, threads: t)
                XCTAssertEqual(one, many, "\(m)x\(k)x\(n) with \(t) threads")
            }
        }
    }

    /// Both micro-kernels (AVX2 6×16 and, where the CPU has it, AVX-512 12×16) pass every check
    /// above and give the same bits.
    func testBothKernelsGiveTheSameBits() throws {
        let had = GEMM.avx512
        defer { GEMM.useAVX512(had) }
        GEMM.useAVX512(true)
        guard GEMM.avx512 else { throw XCTSkip("this CPU has no AVX-512; only the AVX2 kernel can run") }
        let shapes = [(13, 17, 31, false, false), (121, 33, 257, false, true), (250, 40, 300, true, false), (301, 260, 450, false, false),
                      (25, 97, 7, true, true), (12, 16, 256, false, false)]
        var wide: [[Float]] = []
        for (m, n, k, ta, tb) in shapes { wide.append(check(m, n, k, ta: ta, tb: tb, alpha: 0.75, beta: 0.5, threads: 2)) }
        testOddShapesAllTransposes(); testBlockBoundaries(); testAlphaBeta(); testThreadCountDoesNotChangeBits()
        GEMM.useAVX512(false)
        for (i, (m, n, k, ta, tb)) in shapes.enumerated() {
            XCTAssertEqual(wide[i], check(m, n, k, ta: ta, tb: tb, alpha: 0.75, beta: 0.5, threads: 2), "\(m)x\(k)x\(n): AVX-512 and AVX2 differ")
        }
        testOddShapesAllTransposes(); testBlockBoundaries(); testAlphaBeta(); testThreadCountDoesNotChangeBits()
    }

    /// B packed once gives the bits of `sgemm` packing it on every call, on any thread count.
    func testPackedB() {
        for (m, n, k) in [(1, 16, 1), (7, 17, 300), (100, 128, 600), (600, 300, 70), (33, 2048, 20)] {
            let a = randomFloats(m * k, seed: 31), w = randomFloats(n * k, seed: 32)
            XCTAssertEqual(GEMM.packedBCount(n: n, k: k), k * ((n + 15) / 16 * 16))
            var packed = [Float](repeating: .nan, count: GEMM.packedBCount(n: n, k: k))
            GEMM.packB(transB: true, n: n, k: k, b: w, ldb: k, into: &packed)
            var want = [Float](repeating: .nan, count: m * n)
            GEMM.sgemm(transA: false, transB: true, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: w, ldb: k, beta: 0, c: &want, ldc: n, threads: 1)
            for t in [1, 2, 3] {
                var got = [Float](repeating: .nan, count: m * n)
                GEMM.sgemmPackedB(m: m, n: n, k: k, a: a, lda: k, packedB: packed, c: &got, ldc: n, threads: t)
                XCTAssertEqual(got, want, "\(m)x\(n)x\(k) on \(t) threads")
            }
            var ref = [Float](repeating: 0, count: m * n)
            GEMM.reference(transA: false, transB: true, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: w, ldb: k, beta: 0, c: &ref, ldc: n)
            XCTAssertLessThan(maxRelError(want, ref), 1e-5)
        }
        XCTAssertEqual(GEMM.packedBCount(n: 10, k: 100), 0)      // a 10-class head: the transposed path instead
        XCTAssertEqual(GEMM.packedBCount(n: 4096, k: 100), 0)
    }
}
