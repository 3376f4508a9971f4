import CTLSupport

/// Kernels for products with a handful of outputs (a linear classifier over wide features,
/// 10 classes × 512 features): the scores C = A·Bᵀ and the weight gradient G += Dᵀ·A, single
/// thread, for callers that split rows across threads themselves.
///
/// A general GEMM tiles 6×16 and packs; with n = 10 outputs it wastes a third of each tile and
/// reaches about 50 GFLOP/s here. These work on the row-major operands directly, with SIMD8
/// accumulators: the scores kernel takes 2 rows × 5 classes (10 accumulators; B's rows stay in
/// L1), the gradient kernel 4 rows at a time (each store of G carries 4 multiply-adds per lane).
/// Operation order per output element is fixed, so results do not depend on how a caller
/// splits its rows.
public enum FewClasses {
    typealias V = SIMD8<Float>
    /// How far ahead the scores kernel prefetches rows (measured: 2–8 alike, 7.0 → 5.5 ms for
    /// 60,000 × 512 × 10 on 2 threads).
    static let prefetchRows = 6

    /// C[i, j] = Σₚ A[i, p]·B[j, p] for i < m, j < n (any n; best for n a multiple of 5).
    public static func scores(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                              c: UnsafeMutablePointer<Float>, ldc: Int) {
        precondition(m >= 0 && n >= 0 && k >= 0 && lda >= k && ldb >= k && ldc >= n, "FewClasses.scores: bad sizes")
        if m == 0 || n == 0 { return }
        let kv = k / 8 * 8
        // Class groups of five; past n, repeat the last class and drop the result.
        let groups = stride(from: 0, to: n, by: 5).map { g in
            (g, UnsafeRawPointer(b + min(g, n - 1) * ldb), UnsafeRawPointer(b + min(g + 1, n - 1) * ldb), UnsafeRawPointer(b + min(g + 2, n - 1) * ldb),
             UnsafeRawPointer(b + min(g + 3, n - 1) * ldb), UnsafeRawPointer(b + min(g + 4, n - 1) * ldb))
        }
        var i = 0
        while i < m {
            let i2 = min(i + 1, m - 1)           // an odd last row is computed twice; the copy is dropped
            let x0 = UnsafeRawPointer(a + i * lda), x1 = UnsafeRawPointer(a + i2 * lda)
            // Rows a few pairs ahead, into cache while these are multiplied (the hardware
            // prefetcher alone left this kernel waiting on memory half the time).
            if i + prefetchRows + 1 < m {
                let f0 = a + (i + prefetchRows) * lda, f1 = a + (i + prefetchRows + 1) * lda
                var q = 0
                while q < k { tl_prefetch_read(f0 + q); tl_prefetch_read(f1 + q); q += 16 }
            }
            for (g, w0, w1, w2, w3, w4) in groups {
                var a00 = V(), a01 = V(), a02 = V(), a03 = V(), a04 = V()
                var a10 = V(), a11 = V(), a12 = V(), a13 = V(), a14 = V()
                var p = 0
                while p < kv {
                    let o = p * 4
                    let u = x0.loadUnaligned(fromByteOffset: o, as: V.self), v = x1.loadUnaligned(fromByteOffset: o, as: V.self)
                    var w = w0.loadUnaligned(fromByteOffset: o, as: V.self); a00.addProduct(u, w); a10.addProduct(v, w)
                    w = w1.loadUnaligned(fromByteOffset: o, as: V.self); a01.addProduct(u, w); a11.addProduct(v, w)
                    w = w2.loadUnaligned(fromByteOffset: o, as: V.self); a02.addProduct(u, w); a12.addProduct(v, w)
                    w = w3.loadUnaligned(fromByteOffset: o, as: V.self); a03.addProduct(u, w); a13.addProduct(v, w)
                    w = w4.loadUnaligned(fromByteOffset: o, as: V.self); a04.addProduct(u, w); a14.addProduct(v, w)
                    p += 8
                }
                var s0 = (a00.sum(), a01.sum(), a02.sum(), a03.sum(), a04.sum())
                var s1 = (a10.sum(), a11.sum(), a12.sum(), a13.sum(), a14.sum())
                for q in kv..<k {
                    let u = x0.load(fromByteOffset: q * 4, as: Float.self), v = x1.load(fromByteOffset: q * 4, as: Float.self)
                    var wq = w0.load(fromByteOffset: q * 4, as: Float.self); s0.0 += u * wq; s1.0 += v * wq
                    wq = w1.load(fromByteOffset: q * 4, as: Float.self); s0.1 += u * wq; s1.1 += v * wq
                    wq = w2.load(fromByteOffset: q * 4, as: Float.self); s0.2 += u * wq; s1.2 += v * wq
                    wq = w3.load(fromByteOffset: q * 4, as: Float.self); s0.3 += u * wq; s1.3 += v * wq
                    wq = w4.load(fromByteOffset: q * 4, as: Float.self); s0.4 += u * wq; s1.4 += v * wq
                }
                let live = min(5, n - g), c0 = c + i * ldc + g, c1 = c + i2 * ldc + g
                withUnsafeBytes(of: s0) { r in for j in 0..<live { c0[j] = r.load(fromByteOffset: j * 4, as: Float.self) } }
                if i2 != i { withUnsafeBytes(of: s1) { r in for j in 0..<live { c1[j] = r.load(fromByteOffset: j * 4, as: Float.self) } } }
            }
            i += 2
        }
    }

    /// G[j, p] += Σᵢ D[i, j]·A[i, p] for j < n, p < k, over rows i < m.
    ///
    /// `next` (optional, `nextRows` rows with A's leading dimension): rows the caller reads next.
    /// They are prefetched while this runs, so a caller streaming blocks larger than cache
    /// overlaps the next block's memory traffic with this block's arithmetic.
    public static func accumulateGradient(m: Int, n: Int, k: Int, d: UnsafePointer<Float>, ldd: Int, a: UnsafePointer<Float>, lda: Int,
                                          g: UnsafeMutablePointer<Float>, ldg: Int, next: UnsafePointer<Float>? = nil, nextRows: Int = 0) {
        precondition(m >= 0 && n >= 0 && k >= 0 && ldd >= n && lda >= k && ldg >= k, "FewClasses.accumulateGradient: bad sizes")
        let kv = k / 8 * 8
        var i = 0
        while i < m {
            let rows = min(4, m - i)
            if let nx = next {  // the next block's rows, spread over this block's row groups
                let lo = i * nextRows / max(m, 1), hi = min(nextRows, (i + 4) * nextRows / max(m, 1))
                for r in lo..<max(lo, hi) { var q = 0; while q < k { tl_prefetch_read(nx + r * lda + q); q += 16 } }
            }
            // Missing rows of the last group read row i with weight 0.
            let x0 = UnsafeRawPointer(a + i * lda), x1 = UnsafeRawPointer(a + (i + min(1, rows - 1)) * lda)
            let x2 = UnsafeRawPointer(a + (i + min(2, rows - 1)) * lda), x3 = UnsafeRawPointer(a + (i + min(3, rows - 1)) * lda)
            // Two classes per pass share the four row loads: 6 loads and 2 stores per 8
            // multiply-adds (one class at a time: 5 loads and a store per 4).
            var j = 0
            while j < n {
                let two = j + 1 < n
                let j2 = two ? j + 1 : j
                func coef(_ r: Int, _ jj: Int) -> Float { r < rows ? d[(i + r) * ldd + jj] : 0 }
                let c0 = V(repeating: coef(0, j)), c1 = V(repeating: coef(1, j)), c2 = V(repeating: coef(2, j)), c3 = V(repeating: coef(3, j))
                let e0 = V(repeating: coef(0, j2)), e1 = V(repeating: coef(1, j2)), e2 = V(repeating: coef(2, j2)), e3 = V(repeating: coef(3, j2))
                let gr = UnsafeMutableRawPointer(g + j * ldg), gs = UnsafeMutableRawPointer(g + j2 * ldg)
                var p = 0
                if two {
                    while p < kv {
                        let o = p * 4
                        var acc = gr.loadUnaligned(fromByteOffset: o, as: V.self), acd = gs.loadUnaligned(fromByteOffset: o, as: V.self)
                        var v = x0.loadUnaligned(fromByteOffset: o, as: V.self); acc.addProduct(c0, v); acd.addProduct(e0, v)
                        v = x1.loadUnaligned(fromByteOffset: o, as: V.self); acc.addProduct(c1, v); acd.addProduct(e1, v)
                        v = x2.loadUnaligned(fromByteOffset: o, as: V.self); acc.addProduct(c2, v); acd.addProduct(e2, v)
                        v = x3.loadUnaligned(fromByteOffset: o, as: V.self); acc.addProduct(c3, v); acd.addProduct(e3, v)
                        gr.storeBytes(of: acc, toByteOffset: o, as: V.self); gs.storeBytes(of: acd, toByteOffset: o, as: V.self)
                        p += 8
                    }
                } else {
                    while p < kv {
                        let o = p * 4
                        var acc = gr.loadUnaligned(fromByteOffset: o, as: V.self)
                        acc.addProduct(c0, x0.loadUnaligned(fromByteOffset: o, as: V.self))
                        acc.addProduct(c1, x1.loadUnaligned(fromByteOffset: o, as: V.self))
                        acc.addProduct(c2, x2.loadUnaligned(fromByteOffset: o, as: V.self))
                        acc.addProduct(c3, x3.loadUnaligned(fromByteOffset: o, as: V.self))
                        gr.storeBytes(of: acc, toByteOffset: o, as: V.self)
                        p += 8
                    }
                }
                if kv < k { for jj in j...j2 {
                    for q in kv..<k {
                        var s = g[jj * ldg + q]
                        s += coef(0, jj) * x0.load(fromByteOffset: q * 4, as: Float.self)
                        s += coef(1, jj) * x1.load(fromByteOffset: q * 4, as: Float.self)
                        s += coef(2, jj) * x2.load(fromByteOffset: q * 4, as: Float.self)
                        s += coef(3, jj) * x3.load(fromByteOffset: q * 4, as: Float.self)
                        g[jj * ldg + q] = s
                    }
                } }
                j += two ? 2 : 1
            }
            i += 4
        }
    }

    /// The naive references, in Double.
    public static func referenceScores(m: Int, n: Int, k: Int, a: [Float], b: [Float]) -> [Float] {
        var c = [Float](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { c[i * n + j] = Float((0..<k).reduce(0.0) { $0 + Double(a[i * k + $1]) * Double(b[j * k + $1]) }) } }
        return c
    }
    public static func referenceGradient(m: Int, n: Int, k: Int, d: [Float], a: [Float], g: [Float]) -> [Float] {
        var out = g
        for j in 0..<n { for p in 0..<k { out[j * k + p] = Float(Double(g[j * k + p]) + (0..<m).reduce(0.0) { $0 + Double(d[$1 * n + j]) * Double(a[$1 * k + p]) }) } }
        return out
    }
}
