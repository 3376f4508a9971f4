import CTLSupport
import Glibc

/// Single-precision matrix multiply, C = α·op(A)·op(B) + β·C, row-major, as BLAS's sgemm.
///
/// # Blocking scheme (Goto/BLIS), tuned for this machine (Zen 1: 32 KiB L1d, 512 KiB L2 per
/// core, 8 MiB L3 per 4-core complex, 2 × 256-bit FMA units)
///
/// ```
/// for jc in 0..<N step NC            B block  KC×NC  (256×2048 floats = 2 MiB) stays in L3
///   for pc in 0..<K step KC            packed into NR-wide column panels
///     for ic in 0..<M step MC          A block  MC×KC  (120×256 floats = 120 KiB) stays in L2
///                                      packed into MR-tall row panels
///       for jr, ir: micro-kernel       MR×NR = 6×16 tile of C in 12 ymm accumulators;
///                                      per k: 2 loads of B (16 floats, 1 KiB/kc in L1),
///                                      6 broadcasts of A, 12 FMAs
/// ```
/// * MR×NR = 6×16: 12 accumulators + 2 B vectors + 1 broadcast = 15 of 16 ymm registers; 12
///   independent FMAs cover the 5-cycle FMA latency on 2 ports (needs ≥ 10 in flight).
/// * KC = 256: a B micro-panel (256×16×4 = 16 KiB) and an A micro-panel (6 KiB) fit L1 together.
/// * MC = 120 (20 micro-panels): the A block is a quarter of L2, leaving room for B panels
///   streaming through.
/// * NC = 2048: the B block is 2 MiB; two threads' blocks fit one 8 MiB L3.
///
/// # Threads
/// Large products (each (jc, pc) block ≥ 2^24 multiply-adds): the threads pack each B block
/// together into one shared buffer, then each multiplies its own contiguous range of rows,
/// packing only its part of A (two barriers per block; 1024³ on 2 threads went from about 0.75×
/// to about 1× OpenBLAS). Products of at most 512 rows (`sharedTiles`, the shapes of training
/// batches): the threads pack A and B together, then take equal runs of micro-tiles. Others: C
/// is split by whole columns (N ≥ M) or rows in multiples of the micro-tile and each thread runs
/// the serial algorithm on its part, packing its own panels (no barrier). Either way every element of C sees the same operations in the
/// same order, so results are bit-identical for any thread count.
///
/// # Contract
/// Sizes and leading dimensions are checked (a violation is a programming error and traps);
/// pointers must cover the described matrices. β = 0 overwrites C without reading it (NaNs in C
/// do not propagate), as BLAS specifies.
public enum GEMM {
    /// The 12×16 AVX-512 micro-kernel (in the C target) runs instead of the 6×16 AVX2 one when
    /// the CPU and OS support AVX-512; `TL_AVX512=off` turns it off. Results are the same bits
    /// either way (the same fused multiply-adds per element, in the same order).
    nonisolated(unsafe) public private(set) static var avx512: Bool = {
        if let e = getenv("TL_AVX512"), String(cString: e) == "off" { return false }
        return tl_cpu_features() & 8 != 0
    }()
    /// For tests: choose the kernel (only when the CPU has AVX-512 can it be turned on).
    public static func useAVX512(_ on: Bool) { avx512 = on && tl_cpu_features() & 8 != 0 }
    /// Rows of the micro-tile (and of packed A panels): 12 with AVX-512, else 6.
    public static var mr: Int { avx512 ? 12 : 6 }
    public static let nr = 16
    /// Software prefetch distance into the packed A panel (16 k-steps ahead); measured to help
    /// most when both cores run GEMM (1024³, 2 threads: about 110 → 130 GFLOP/s, noisy machine).
    static let prefetchA = 384
    public static let kc = 256, mc = 120, nc = 2048
    /// Below this many multiply-adds a second thread costs more than it saves.
    public static let parallelThreshold = 1 << 18

    public static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                             alpha: Float, a: UnsafePointer<Float>, lda: Int,
                             b: UnsafePointer<Float>, ldb: Int,
                             beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
                             threads: Int = Threads.count) {
        precondition(m >= 0 && n >= 0 && k >= 0, "sgemm: negative size")
        precondition(lda >= max(1, transA ? m : k) && ldb >= max(1, transB ? k : n) && ldc >= max(1, n), "sgemm: leading dimension too small")
        if m == 0 || n == 0 { return }
        if k == 0 || alpha == 0 { scale(c, m: m, n: n, ldc: ldc, beta: beta); return }
        // β = 0: the first K block stores instead of accumulating (C is never read).
        let overwrite = beta == 0
        if !overwrite { scale(c, m: m, n: n, ldc: ldc, beta: beta) }

        if n < nr && m >= 2 * nr {
            // Few columns (a classifier head with 10 classes): a 16-wide micro-tile would be
            // mostly padding. Compute Cᵀ = op(B)ᵀ·op(A)ᵀ, where the few columns become rows.
            let tmp = Scratch.buffer(.extra, floats: n * m)
            split(!transB, !transA, n, m, k, alpha, b, ldb, a, lda, tmp, m, true, threads)
            if overwrite { for i in 0..<m { for j in 0..<n { c[i * ldc + j] = tmp[j * m + i] } } }
            else { for i in 0..<m { for j in 0..<n { c[i * ldc + j] += tmp[j * m + i] } } }
            return
        }
        split(transA, transB, m, n, k, alpha, a, lda, b, ldb, c, ldc, overwrite, threads)
    }

    /// Floats of op(B) packed once for `sgemmPackedB` (0 when that path does not apply: fewer
    /// than 16 or more than NC columns).
    public static func packedBCount(n: Int, k: Int) -> Int { n >= nr && n <= nc ? k * ((n + nr - 1) / nr * nr) : 0 }

    /// op(B) [k × n] as the K-blocks `serial` packs on every call (block pc at pc·npad, npad =
    /// n rounded up to 16): for a matrix used many times unchanged (a frozen layer's weights).
    public static func packB(transB: Bool, n: Int, k: Int, b: UnsafePointer<Float>, ldb: Int, into dst: UnsafeMutablePointer<Float>) {
        precondition(packedBCount(n: n, k: k) > 0, "sgemm: packed B needs 16 to \(nc) columns")
        let npad = (n + nr - 1) / nr * nr
        var pc = 0
        while pc < k {
            packB(transB, b, ldb, row: pc, col: 0, kc: min(kc, k - pc), nc: n, into: dst + pc * npad)
            pc += kc
        }
    }

    /// C = A · op(B) (α = 1, β = 0) with op(B) packed by `packB(transB:n:k:b:ldb:into:)`: the same
    /// bits as `sgemm`, without packing B. Threads take whole micro-tile rows.
    public static func sgemmPackedB(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, packedB: UnsafePointer<Float>,
                                    c: UnsafeMutablePointer<Float>, ldc: Int, threads: Int = Threads.count) {
        precondition(m >= 0 && packedBCount(n: n, k: k) > 0 && lda >= max(1, k) && ldc >= n, "sgemm: bad packed-B product")
        if m == 0 { return }
        if k == 0 { scale(c, m: m, n: n, ldc: ldc, beta: 0); return }
        let npad = (n + nr - 1) / nr * nr
        let t = threads > 1 && m * n * k >= parallelThreshold ? min(threads, (m + mr - 1) / mr) : 1
        let per = ((m + t - 1) / t + mr - 1) / mr * mr
        let pa = UnsafeSendable(a), pb = UnsafeSendable(packedB), pcc = UnsafeSendable(c)
        Threads.parallelFor(t, threads: t) { i in
            let i0 = i * per, i1 = min(m, i0 + per)
            if i0 >= i1 { return }
            var pc = 0
            while pc < k {
                rowsTimesPackedB(false, pa.value, lda, rows: i0..<i1, pc: pc, kcb: min(kc, k - pc), jc: 0, ncb: n, pb.value + pc * npad,
                                 pcc.value, ldc, 1, pc == 0)
                pc += kc
            }
        }
    }

    /// Splits the product across threads (see "Threads" above) and runs `serial` on each part.
    static func split(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                      _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                      _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ overwrite: Bool, _ threads: Int) {
        let t = threads > 1 && m * n * k >= parallelThreshold ? threads : 1
        if t == 1 { serial(transA, transB, m, n, k, alpha, a, lda, b, ldb, c, ldc, overwrite); return }
        // Worth two barriers per (jc, pc) block only when each block is big (≥ 2^24 multiply-adds).
        if m >= 8 * mr * t && n >= 2 * nr && m * min(n, nc) * min(k, kc) >= 1 << 24 {
            sharedB(transA, transB, m, n, k, alpha, a, lda, b, ldb, c, ldc, overwrite, t)
            return
        }
        // Few rows (a batch): pack A and B once, together, and share the tiles out evenly.
        if m <= sharedTilesMaxRows {
            sharedTiles(transA, transB, m, n, k, alpha, a, lda, b, ldb, c, ldc, overwrite, t)
            return
        }
        let pa = UnsafeSendable(a), pb = UnsafeSendable(b), pc = UnsafeSendable(c)
        if n >= m {
            // Split columns, in multiples of NR.
            let parts = min(t, (n + nr - 1) / nr)
            let per = ((n + parts - 1) / parts + nr - 1) / nr * nr
            Threads.parallelFor(parts, threads: t) { i in
                let j0 = i * per, j1 = min(n, j0 + per)
                if j0 >= j1 { return }
                let bj = transB ? pb.value + j0 * ldb : pb.value + j0
                serial(transA, transB, m, j1 - j0, k, alpha, pa.value, lda, bj, ldb, pc.value + j0, ldc, overwrite)
            }
        } else {
            let parts = min(t, (m + mr - 1) / mr)
            let per = ((m + parts - 1) / parts + mr - 1) / mr * mr
            Threads.parallelFor(parts, threads: t) { i in
                let i0 = i * per, i1 = min(m, i0 + per)
                if i0 >= i1 { return }
                let ai = transA ? pa.value + i0 : pa.value + i0 * lda
                serial(transA, transB, i1 - i0, n, k, alpha, ai, lda, pb.value, ldb, pc.value + i0 * ldc, ldc, overwrite)
            }
        }
    }

    /// C = β·C (β = 0: zero without reading).
    static func scale(_ c: UnsafeMutablePointer<Float>, m: Int, n: Int, ldc: Int, beta: Float) {
        if beta == 1 { return }
        for i in 0..<m {
            let row = c + i * ldc
            if beta == 0 { row.update(repeating: 0, count: n) } else { for j in 0..<n { row[j] *= beta } }
        }
    }

    /// The blocked algorithm on one thread. C has already been scaled by β, or, with
    /// `overwrite`, is written without being read by the first K block.
    static func serial(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                       _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                       _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ overwrite: Bool) {
        let bufB = Scratch.buffer(.packB, floats: kc * min(nc, (n + nr - 1) / nr * nr))
        var jc = 0
        while jc < n {
            let ncb = min(nc, n - jc)
            var pc = 0
            while pc < k {
                let kcb = min(kc, k - pc)
                packB(transB, b, ldb, row: pc, col: jc, kc: kcb, nc: ncb, into: bufB)
                rowsTimesPackedB(transA, a, lda, rows: 0..<m, pc: pc, kcb: kcb, jc: jc, ncb: ncb, bufB, c, ldc, alpha, overwrite && pc == 0)
                pc += kc
            }
            jc += nc
        }
    }

    /// Rows `rows` of C[:, jc..<jc+ncb] (+)= α · op(A)[rows, pc..<pc+kcb] · B, B already packed.
    @inline(__always)
    static func rowsTimesPackedB(_ transA: Bool, _ a: UnsafePointer<Float>, _ lda: Int, rows: Range<Int>, pc: Int, kcb: Int,
                                 jc: Int, ncb: Int, _ bufB: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, _ ldc: Int,
                                 _ alpha: Float, _ store: Bool) {
        let bufA = Scratch.buffer(.packA, floats: min(mc, (rows.count + mr - 1) / mr * mr) * kc)
        var ic = rows.lowerBound
        while ic < rows.upperBound {
            let mcb = min(mc, rows.upperBound - ic)
            packA(transA, a, lda, row: ic, col: pc, mc: mcb, kc: kcb, into: bufA)
            panelTiles(m: mcb, n: ncb, kcb: kcb, bufA, bufB, c + ic * ldc + jc, ldc, alpha, store)
            ic += mc
        }
    }

    /// C[m × n] (+)= α · A · B for one K-block of packed panels (A: m rows, at most MC; B: n
    /// columns): B panel by B panel, every A panel against it.
    @inline(__always)
    static func panelTiles(m: Int, n: Int, kcb: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                           _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ alpha: Float, _ store: Bool) {
        var jr = 0
        while jr < n {
            let nrb = min(nr, n - jr)
            var ir = 0
            while ir < m {
                microTile(kcb, a + ir * kcb, b + jr * kcb, c + ir * ldc + jr, ldc, alpha, store, min(mr, m - ir), nrb)
                ir += mr
            }
            jr += nr
        }
    }

    /// Large products on several threads: each (jc, pc) block of B is packed once, cooperatively,
    /// and shared; each thread then multiplies its own contiguous range of rows (packing only its
    /// part of A). Two barriers per block; the same operations per element as `serial`.
    static func sharedB(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                        _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                        _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ overwrite: Bool, _ t: Int) {
        let bufB = UnsafeSendable(Scratch.buffer(.packB, floats: kc * min(nc, (n + nr - 1) / nr * nr)))
        let pa = UnsafeSendable(a), pb = UnsafeSendable(b), pcc = UnsafeSendable(c)
        let per = ((m + t - 1) / t + mr - 1) / mr * mr
        var jc = 0
        while jc < n {
            let ncb = min(nc, n - jc)
            var pc = 0
            while pc < k {
                let kcb = min(kc, k - pc), store = overwrite && pc == 0
                Threads.parallelFor(t, threads: t) { i in
                    packBShare(i, of: t, transB, pb.value, ldb, pc: pc, kcb: kcb, jc: jc, ncb: ncb, into: bufB.value)
                }
                Threads.parallelFor(t, threads: t) { i in
                    let i0 = i * per, i1 = min(m, i0 + per)
                    if i0 < i1 {
                        rowsTimesPackedB(transA, pa.value, lda, rows: i0..<i1, pc: pc, kcb: kcb, jc: jc, ncb: ncb, bufB.value, pcc.value, ldc, alpha, store)
                    }
                }
                pc += kc
            }
            jc += nc
        }
    }

    /// Products with at most this many rows take `sharedTiles` on several threads (the packed A
    /// block, rows × KC, is then at most 512 KiB).
    static let sharedTilesMaxRows = 512

    /// Skinny products (M a batch of 64-512 rows, the shapes training runs) on several threads:
    /// for each (jc, pc) block the threads pack A and B together into shared buffers, then take
    /// equal runs of the MR×NR tiles (column-panel by column-panel). Splitting C by whole
    /// columns or rows instead leaves the threads uneven parts (64×196 is 11 × 13 tiles) and
    /// has each pack all of the other operand. Two pool hand-overs per block; each tile sees
    /// the same operations as in `serial`.
    static func sharedTiles(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                            _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                            _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ overwrite: Bool, _ t: Int) {
        let rowPanels = (m + mr - 1) / mr
        let bufA = UnsafeSendable(Scratch.buffer(.packA, floats: rowPanels * mr * kc))
        let bufB = UnsafeSendable(Scratch.buffer(.packB, floats: kc * min(nc, (n + nr - 1) / nr * nr)))
        let pa = UnsafeSendable(a), pb = UnsafeSendable(b), pcc = UnsafeSendable(c)
        var jc = 0
        while jc < n {
            let ncb = min(nc, n - jc), colPanels = (ncb + nr - 1) / nr, tiles = rowPanels * colPanels
            var pc = 0
            while pc < k {
                let kcb = min(kc, k - pc), store = overwrite && pc == 0
                Threads.parallelFor(t, threads: t) { i in
                    packBShare(i, of: t, transB, pb.value, ldb, pc: pc, kcb: kcb, jc: jc, ncb: ncb, into: bufB.value)
                    let r0 = i * rowPanels / t, r1 = (i + 1) * rowPanels / t
                    if r0 < r1 {
                        packA(transA, pa.value, lda, row: r0 * mr, col: pc, mc: min(m - r0 * mr, (r1 - r0) * mr), kc: kcb, into: bufA.value + r0 * mr * kcb)
                    }
                }
                Threads.parallelFor(t, threads: t) { i in
                    var tile = i * tiles / t
                    let end = (i + 1) * tiles / t
                    while tile < end {
                        let jr = tile / rowPanels * nr, ir = tile % rowPanels * mr
                        microTile(kcb, bufA.value + ir * kcb, bufB.value + jr * kcb, pcc.value + ir * ldc + jc + jr, ldc, alpha, store,
                                  min(mr, m - ir), min(nr, ncb - jr))
                        tile += 1
                    }
                }
                pc += kc
            }
            jc += nc
        }
    }

    /// Thread i of t packs its share of the NR-wide panels of op(B)[pc..<pc+kcb, jc..<jc+ncb]
    /// into the shared buffer, where `packB` of the whole block would put them.
    @inline(__always)
    static func packBShare(_ i: Int, of t: Int, _ transB: Bool, _ b: UnsafePointer<Float>, _ ldb: Int, pc: Int, kcb: Int, jc: Int, ncb: Int,
                           into buf: UnsafeMutablePointer<Float>) {
        let panels = (ncb + nr - 1) / nr, q0 = i * panels / t, q1 = (i + 1) * panels / t
        if q0 < q1 {
            packB(transB, b, ldb, row: pc, col: jc + q0 * nr, kc: kcb, nc: min(ncb - q0 * nr, (q1 - q0) * nr), into: buf + q0 * nr * kcb)
        }
    }

    /// One MR×NR (or smaller, at the edges) tile of C from packed panels.
    @inline(__always)
    static func microTile(_ kcb: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ ct: UnsafeMutablePointer<Float>, _ ldc: Int,
                          _ alpha: Float, _ store: Bool, _ mrb: Int, _ nrb: Int) {
        if avx512 {
            tl_sgemm_kernel_12x16_avx512(kcb, a, b, ct, ldc, alpha, store ? 1 : 0, Int32(mrb), Int32(nrb))
        } else if mrb == mr && nrb == nr {
            kernel6x16(kcb, a, b, ct, ldc, alpha, store)
        } else {
            edge(kcb, a, b, ct, ldc, alpha, store, mrb, nrb)
        }
    }

    /// Packs op(B)[row..<row+kc, col..<col+nc] as NR-wide panels, each kc × NR, zero-padded.
    @inline(__always)
    static func packB(_ trans: Bool, _ b: UnsafePointer<Float>, _ ldb: Int, row: Int, col: Int, kc: Int, nc: Int,
                      into dst: UnsafeMutablePointer<Float>) {
        var j = 0
        var d = dst
        while j < nc {
            let w = min(nr, nc - j)
            if !trans {
                var src = b + row * ldb + col + j
                if w == nr {
                    for _ in 0..<kc {
                        UnsafeMutableRawPointer(d).storeBytes(of: UnsafeRawPointer(src).loadUnaligned(as: SIMD16<Float>.self), as: SIMD16<Float>.self)
                        d += nr; src += ldb
                    }
                } else {
                    for _ in 0..<kc {
                        for q in 0..<w { d[q] = src[q] }
                        for q in w..<nr { d[q] = 0 }
                        d += nr; src += ldb
                    }
                }
            } else {
                // op(B)(p, q) = B[q, p]: column q of the panel is row (col+j+q) of B. Writes
                // run contiguously; the 16 source rows are read as 16 sequential streams.
                let src = b + (col + j) * ldb + row
                if w == nr {
                    for p in 0..<kc {
                        for q in 0..<nr { d[q] = src[q * ldb + p] }
                        d += nr
                    }
                } else {
                    for p in 0..<kc {
                        for q in 0..<w { d[q] = src[q * ldb + p] }
                        for q in w..<nr { d[q] = 0 }
                        d += nr
                    }
                }
            }
            j += nr
        }
    }

    /// Packs op(A)[row..<row+mc, col..<col+kc] as MR-tall panels, each kc × MR, zero-padded.
    @inline(__always)
    static func packA(_ trans: Bool, _ a: UnsafePointer<Float>, _ lda: Int, row: Int, col: Int, mc: Int, kc: Int,
                      into dst: UnsafeMutablePointer<Float>) {
        var i = 0
        var d = dst
        while i < mc {
            let h = min(mr, mc - i)
            if !trans && h == 6 && mr == 6 {
                // A full 6-row panel: walk k, writing the panel front to back (six row streams
                // in, one stream out). Row by row with strided writes took about three times
                // as long, a fifth of a 128×3136×128 product.
                let s0 = a + (row + i) * lda + col, s1 = s0 + lda, s2 = s1 + lda, s3 = s2 + lda, s4 = s3 + lda, s5 = s4 + lda
                var q = d
                for p in 0..<kc {
                    q[0] = s0[p]; q[1] = s1[p]; q[2] = s2[p]; q[3] = s3[p]; q[4] = s4[p]; q[5] = s5[p]
                    q += 6
                }
            } else if !trans {
                for r in 0..<mr {
                    if r < h {
                        let src = a + (row + i + r) * lda + col
                        for p in 0..<kc { d[p * mr + r] = src[p] }
                    } else {
                        for p in 0..<kc { d[p * mr + r] = 0 }
                    }
                }
            } else {
                // op(A)(r, p) = A[p, r]: the 6 values for one p are contiguous in A.
                var src = a + col * lda + row + i
                for p in 0..<kc {
                    for r in 0..<h { d[p * mr + r] = src[r] }
                    for r in h..<mr { d[p * mr + r] = 0 }
                    src += lda
                }
            }
            d += kc * mr
            i += mr
        }
    }

    /// C[6×16] += α · Apanel · Bpanel (or = with `store`), on a full tile (the AVX2 kernel).
    @inline(__always)
    static func kernel6x16(_ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                           _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ alpha: Float, _ store: Bool) {
        tile(kc, a, b, c, ldc, alpha, store, 6, nr)
    }

    /// A partial tile (fewer than 6 rows or 16 columns of C): the same arithmetic, with only the
    /// valid part written (so edge and interior elements round alike). Tiles of at most 2 or 4
    /// rows (the last panel of 32, 64, 128 or 256 output channels) multiply only those rows:
    /// a sixth to a ninth of such layers' tiles had spent 6 rows' time.
    @inline(never)
    static func edge(_ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                     _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ alpha: Float, _ store: Bool, _ m: Int, _ n: Int) {
        if m <= 2 { fewRows(2, kc, a, b, c, ldc, alpha, store, m, n) }
        else if m <= 4 { fewRows(4, kc, a, b, c, ldc, alpha, store, m, n) }
        else { tile(kc, a, b, c, ldc, alpha, store, m, n) }
    }

    /// Rows 0..<m (m ≤ rows, rows 2 or 4) of a 6-row panel's tile: 2·rows accumulators.
    @inline(__always)
    static func fewRows(_ rows: Int, _ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                        _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ alpha: Float, _ store: Bool, _ m: Int, _ n: Int) {
        typealias V = SIMD8<Float>
        var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V(), c30 = V(), c31 = V()
        var pa = UnsafeRawPointer(a), pb = UnsafeRawPointer(b)
        if !store { for r in 0..<m { tl_prefetch_write(c + r * ldc); tl_prefetch_write(c + r * ldc + n - 1) } }
        if rows == 2 {
            for _ in 0..<kc {
                let b0 = pb.load(as: V.self), b1 = pb.load(fromByteOffset: 32, as: V.self)
                var x = V(repeating: pa.load(as: Float.self))
                c00.addProduct(x, b0); c01.addProduct(x, b1)
                x = V(repeating: pa.load(fromByteOffset: 4, as: Float.self))
                c10.addProduct(x, b0); c11.addProduct(x, b1)
                pa += 24; pb += 64
            }
        } else {
            for _ in 0..<kc {
                tl_prefetch_read(pa + prefetchA)
                let b0 = pb.load(as: V.self), b1 = pb.load(fromByteOffset: 32, as: V.self)
                var x = V(repeating: pa.load(as: Float.self))
                c00.addProduct(x, b0); c01.addProduct(x, b1)
                x = V(repeating: pa.load(fromByteOffset: 4, as: Float.self))
                c10.addProduct(x, b0); c11.addProduct(x, b1)
                x = V(repeating: pa.load(fromByteOffset: 8, as: Float.self))
                c20.addProduct(x, b0); c21.addProduct(x, b1)
                x = V(repeating: pa.load(fromByteOffset: 12, as: Float.self))
                c30.addProduct(x, b0); c31.addProduct(x, b1)
                pa += 24; pb += 64
            }
        }
        let al = V(repeating: alpha)
        var t = (c00, c01, c10, c11, c20, c21, c30, c31)
        withUnsafeBytes(of: &t) { raw in
            let acc = raw.baseAddress!
            for i in 0..<m {
                let row = c + i * ldc
                if n == nr {
                    let v0 = acc.load(fromByteOffset: i * 64, as: V.self), v1 = acc.load(fromByteOffset: i * 64 + 32, as: V.self)
                    let p = UnsafeMutableRawPointer(row)
                    if store {
                        p.storeBytes(of: al * v0, as: V.self); p.storeBytes(of: al * v1, toByteOffset: 32, as: V.self)
                    } else {
                        p.storeBytes(of: p.loadUnaligned(as: V.self).addingProduct(al, v0), as: V.self)
                        p.storeBytes(of: p.loadUnaligned(fromByteOffset: 32, as: V.self).addingProduct(al, v1), toByteOffset: 32, as: V.self)
                    }
                } else {
                    let ar = acc.assumingMemoryBound(to: Float.self) + i * 16
                    if store { for j in 0..<n { row[j] = alpha * ar[j] } }
                    else { for j in 0..<n { row[j] = row[j].addingProduct(alpha, ar[j]) } }
                }
            }
        }
    }

    @inline(__always)
    static func tile(_ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                     _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ alpha: Float, _ store: Bool, _ m: Int, _ n: Int) {
        typealias V = SIMD8<Float>
        var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V()
        var c30 = V(), c31 = V(), c40 = V(), c41 = V(), c50 = V(), c51 = V()
        var pa = UnsafeRawPointer(a), pb = UnsafeRawPointer(b)
        if !store { for r in 0..<m { tl_prefetch_write(c + r * ldc); tl_prefetch_write(c + r * ldc + n - 1) } }
        for _ in 0..<kc {
            tl_prefetch_read(pa + prefetchA)
            let b0 = pb.load(as: V.self), b1 = pb.load(fromByteOffset: 32, as: V.self)
            var x = V(repeating: pa.load(as: Float.self))
            c00.addProduct(x, b0); c01.addProduct(x, b1)
            x = V(repeating: pa.load(fromByteOffset: 4, as: Float.self))
            c10.addProduct(x, b0); c11.addProduct(x, b1)
            x = V(repeating: pa.load(fromByteOffset: 8, as: Float.self))
            c20.addProduct(x, b0); c21.addProduct(x, b1)
            x = V(repeating: pa.load(fromByteOffset: 12, as: Float.self))
            c30.addProduct(x, b0); c31.addProduct(x, b1)
            x = V(repeating: pa.load(fromByteOffset: 16, as: Float.self))
            c40.addProduct(x, b0); c41.addProduct(x, b1)
            x = V(repeating: pa.load(fromByteOffset: 20, as: Float.self))
            c50.addProduct(x, b0); c51.addProduct(x, b1)
            pa += 24; pb += 64
        }
        if m == 6 && n == nr {
            let al = V(repeating: alpha)
            @inline(__always) func put(_ r: Int, _ v0: V, _ v1: V) {
                let p = UnsafeMutableRawPointer(c + r * ldc)
                if store {
                    p.storeBytes(of: al * v0, as: V.self)
                    p.storeBytes(of: al * v1, toByteOffset: 32, as: V.self)
                } else {
                    let o0 = p.loadUnaligned(as: V.self), o1 = p.loadUnaligned(fromByteOffset: 32, as: V.self)
                    p.storeBytes(of: o0.addingProduct(al, v0), as: V.self)
                    p.storeBytes(of: o1.addingProduct(al, v1), toByteOffset: 32, as: V.self)
                }
            }
            put(0, c00, c01); put(1, c10, c11); put(2, c20, c21)
            put(3, c30, c31); put(4, c40, c41); put(5, c50, c51)
            return
        }
        var t = (c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51)
        withUnsafeBytes(of: &t) { raw in
            let acc = raw.baseAddress!.assumingMemoryBound(to: Float.self)
            for i in 0..<m {
                let row = c + i * ldc, ar = acc + i * 16
                if store { for j in 0..<n { row[j] = alpha * ar[j] } }
                else { for j in 0..<n { row[j] = row[j].addingProduct(alpha, ar[j]) } }
            }
        }
    }

    /// The textbook triple loop (double accumulation): the reference the tests compare against.
    public static func reference(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                                 a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                                 beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k {
                    let x = transA ? a[p * lda + i] : a[i * lda + p]
                    let y = transB ? b[j * ldb + p] : b[p * ldb + j]
                    s += Double(x) * Double(y)
                }
                let old = beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j])
                c[i * ldc + j] = Float(Double(alpha) * s + old)
            }
        }
    }
}
