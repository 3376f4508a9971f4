import Glibc

/// 3×3 stride-1 convolutions for inference by Winograd's minimal filtering F(2×2, 3×3) (Lavin &
/// Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016): each 2×2 block of
/// outputs ("tile") comes from its 4×4 input patch d and the filter g as
///
///     Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A
///
/// 16 multiplications per channel and tile instead of 36. Summed over the input channels, the
/// ⊙ becomes 16 independent products U[ξ] (OC × C) · V[ξ] (C × tiles), ξ over the 4×4
/// positions, which the GEMM micro-kernel computes. Transforms (only additions and halvings):
///
///     Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1]   G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1]
///     Aᵀ = [1 1 1 0; 0 1 −1 −1]
///
/// Layout and order:
/// * Each image is copied once with its zero border, every padded row split into its even and
///   odd columns, so the four columns of a row of patches for eight neighbouring tiles are four
///   contiguous 8-float loads (even, odd, even + 1, odd + 1).
/// * Tiles run over (image, tile row, tile column) of a thread's images in chunks of whole tile
///   rows, sized so that a chunk's V and M (16 × channels × tiles each) stay in L2 cache; small
///   images share a chunk.
/// * The transformed weights are packed once per network (`packWeights`), 16 blocks of the
///   implicit path's A panels.
/// * The bias and the fused activation are applied as the outputs go into place.
///
/// Every output element sees the same operations in the same order whichever chunk, batch
/// position or thread its tile lands in: the bits do not depend on the batch or thread count.
/// They differ from the direct convolution's by rounding (relative error ~1e-6 on these
/// layers; the transforms lose at most a few bits). `TL_CONV=direct` turns this path off.
extension Conv {
    /// `TL_CONV=direct` (or `im2col`) keeps 3×3 layers on the direct paths.
    static let winogradEnabled: Bool = getenv("TL_CONV").map { let v = String(cString: $0); return v != "direct" && v != "im2col" } ?? true

    /// Whether inference takes the Winograd path: one group, 3×3, stride 1, no dilation, enough
    /// channels for the 16 products to be worth a GEMM each (a one-channel input layer would
    /// multiply 16 rows of K = 1), and outputs of at least 8×8. One thread, batch 32, GFLOP/s
    /// counted as direct, direct → Winograd: 32→64 @28 78 → 107, 64→64 @56 81 → 128, 128→128
    /// @28 83 → 124, 256→256 @14 88 → 128, 64→64 @16 76 → 121, 128→128 @8 81 → 88; smaller
    /// planes lose (512→512 @7 91 → 80, 256→256 @4 81 → 47, 512→512 @2 74 → 18: few tiles
    /// per chunk against 16/9 as many weights to stream).
    public static func winogradApplies(_ g: ConvGeometry) -> Bool {
        winogradEnabled && g.groups == 1 && g.kh == 3 && g.kw == 3 && g.strideH == 1 && g.strideW == 1
            && g.dilationH == 1 && g.dilationW == 1 && g.c >= 8 && g.oc >= 8 && g.oh >= 8 && g.ow >= 8
    }

    /// The transformed filters U[ξ][oc][c] = (G g Gᵀ)[ξ] for weights [OC][C][3][3], in Double
    /// rounded once.
    static func winogradFilters(_ g: ConvGeometry, weight: UnsafePointer<Float>) -> [Float] {
        let oc = g.oc, c = g.c
        var u = [Float](repeating: 0, count: 16 * oc * c)
        for o in 0..<oc {
            for ch in 0..<c {
                let w = weight + (o * c + ch) * 9
                // G·v for a 3-vector v: the same combination down the columns, then along the
                // rows of G g (no arrays: this runs once per filter when a network is loaded).
                @inline(__always) func gv(_ a: Double, _ b: Double, _ d: Double) -> (Double, Double, Double, Double) {
                    (a, (a + b + d) / 2, (a - b + d) / 2, d)
                }
                let c0 = gv(Double(w[0]), Double(w[3]), Double(w[6])), c1 = gv(Double(w[1]), Double(w[4]), Double(w[7]))
                let c2 = gv(Double(w[2]), Double(w[5]), Double(w[8]))
                // Row i of G g Gᵀ goes to ξ = 4i + j.
                func put(_ i: Int, _ r: (Double, Double, Double, Double)) {
                    let base = (i * 4 * oc + o) * c + ch, step = oc * c
                    u[base] = Float(r.0); u[base + step] = Float(r.1); u[base + 2 * step] = Float(r.2); u[base + 3 * step] = Float(r.3)
                }
                put(0, gv(c0.0, c1.0, c2.0)); put(1, gv(c0.1, c1.1, c2.1)); put(2, gv(c0.2, c1.2, c2.2)); put(3, gv(c0.3, c1.3, c2.3))
            }
        }
        return u
    }

    /// Floats of the Winograd-packed weights: 16 blocks of OC (rounded to the micro-tile) × C.
    static func winogradPackedCount(_ g: ConvGeometry) -> Int { 16 * ((g.oc + GEMM.mr - 1) / GEMM.mr * GEMM.mr) * g.c }

    /// U[ξ] as A panels, block ξ at ξ·mpad·C, its K-blocks (of `implicitKC(C)`) at pc·mpad.
    static func winogradPackWeights(_ g: ConvGeometry, weight: UnsafePointer<Float>, into packed: UnsafeMutablePointer<Float>) {
        let u = winogradFilters(g, weight: weight)
        let m = g.oc, k = g.c, mpad = (m + GEMM.mr - 1) / GEMM.mr * GEMM.mr, kc = implicitKC(k)
        u.withUnsafeBufferPointer { up in
            for xi in 0..<16 {
                var pc = 0
                while pc < k {
                    GEMM.packA(false, up.baseAddress! + xi * m * k, k, row: 0, col: pc, mc: m, kc: min(kc, k - pc), into: packed + xi * mpad * k + pc * mpad)
                    pc += kc
                }
            }
        }
    }

    /// The outputs of images `images`, on the calling thread.
    static func winogradImages(_ g: ConvGeometry, x: UnsafePointer<Float>, images: Range<Int>, packedA: UnsafePointer<Float>, mpad: Int,
                               bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, activation act: FusedActivation?) {
        typealias V = SIMD8<Float>
        let c = g.c, oc = g.oc, oh = g.oh, ow = g.ow, ih = g.h, iw = g.w, padTop = g.padTop, padLeft = g.padLeft
        let th = (oh + 1) / 2, tw = (ow + 1) / 2, ohw = oh * ow
        // Padded copy: H2 = 2·th + 2 rows; each row's even and odd columns (tw + 1 each) in
        // halves `hs` apart, with room for 8-float reads from any tile column.
        let h2 = 2 * th + 2, hs = (tw + 1 + 7) / 8 * 8 + 8, chanP = h2 * 2 * hs, imgP = c * chanP
        // Chunks of whole tile rows, about 32768 / (C + OC) tiles (at least 48): V and M of a
        // chunk are 2 MiB (measured: 6144 → 24576 took 32→64 @28 from 71-84 to 91-107 GFLOP/s,
        // mostly by fewer partial panels; 49152 alike).
        let target = max(48, 32768 / (c + oc)), rowsPer = max(1, target / tw)
        let tmax = rowsPer * tw, tpad = (tmax + 15) / 16 * 16 + 8
        let slots = (rowsPer + th - 1) / th + 1
        let padded = Scratch.buffer(.extra, floats: slots * imgP)
        let vbuf = Scratch.buffer(.columns, floats: 16 * c * tpad)
        let mbuf = Scratch.buffer(.output, floats: 16 * oc * tpad)
        let kc = implicitKC(c)
        let bufB = Scratch.buffer(.packB, floats: min(kc, c) * ((tmax + 15) / 16 * 16))
        let tail = Scratch.buffer(.reduce, floats: 16)   // a partial row of outputs
        var paddedUpTo = images.lowerBound   // images below this are in their slots

        func pad(_ img: Int) {
            let dst = padded + (img - images.lowerBound) % slots * imgP, src0 = x + img * c * ih * iw
            dst.update(repeating: 0, count: imgP)
            for ch in 0..<c {
                for r in 0..<ih {
                    let pr = r + padTop
                    if pr >= h2 { break }
                    // Even and odd padded columns into the row's two halves.
                    splitColumns(dst + ch * chanP + pr * 2 * hs, half: hs, src0 + (ch * ih + r) * iw, iw, padLeft: padLeft)
                }
            }
        }

        // The thread's tile rows, (image, tile row), in order; a chunk is rowsPer of them.
        let totalRows = images.count * th
        var chunk: [(img: Int, ty: Int)] = []
        var first = 0
        while first < totalRows {
            let end = min(totalRows, first + rowsPer)
            chunk.removeAll(keepingCapacity: true)
            for r in first..<end { chunk.append((images.lowerBound + r / th, r % th)) }
            while paddedUpTo <= chunk.last!.img { pad(paddedUpTo); paddedUpTo += 1 }
            let tiles = chunk.count * tw

            // V[ξ][ch][tile] = (Bᵀ d B)[ξ], eight tiles at a time.
            for ch in 0..<c {
                for (n, (img, ty)) in chunk.enumerated() {
                    let base = padded + (img - images.lowerBound) % slots * imgP + ch * chanP + 2 * ty * 2 * hs
                    let out = vbuf + ch * tpad + n * tw
                    var tx = 0
                    while tx < tw {
                        // Row i of the patches: columns (2tx, 2tx+1, 2tx+2, 2tx+3) = (E, O, E+1, O+1),
                        // transformed along the row (d B).
                        @inline(__always) func rowT(_ i: Int) -> (V, V, V, V) {
                            let e = UnsafeRawPointer(base + i * 2 * hs + tx), o = e + hs * 4
                            let a0 = e.loadUnaligned(as: V.self), a1 = o.loadUnaligned(as: V.self)
                            let a2 = e.loadUnaligned(fromByteOffset: 4, as: V.self), a3 = o.loadUnaligned(fromByteOffset: 4, as: V.self)
                            return (a0 - a2, a1 + a2, a2 - a1, a1 - a3)
                        }
                        let r0 = rowT(0), r1 = rowT(1), r2 = rowT(2), r3 = rowT(3)
                        // Then down the columns (Bᵀ ·): ξ = 4i + j.
                        @inline(__always) func put(_ xi: Int, _ v: V) {
                            UnsafeMutableRawPointer(out + xi * c * tpad + tx).storeBytes(of: v, as: V.self)
                        }
                        put(0, r0.0 - r2.0); put(1, r0.1 - r2.1); put(2, r0.2 - r2.2); put(3, r0.3 - r2.3)
                        put(4, r1.0 + r2.0); put(5, r1.1 + r2.1); put(6, r1.2 + r2.2); put(7, r1.3 + r2.3)
                        put(8, r2.0 - r1.0); put(9, r2.1 - r1.1); put(10, r2.2 - r1.2); put(11, r2.3 - r1.3)
                        put(12, r1.0 - r3.0); put(13, r1.1 - r3.1); put(14, r1.2 - r3.2); put(15, r1.3 - r3.3)
                        tx += 8
                    }
                }
            }

            // M[ξ] = U[ξ] · V[ξ].
            for xi in 0..<16 {
                var pc = 0
                while pc < c {
                    let kcb = min(kc, c - pc)
                    GEMM.packB(false, vbuf + xi * c * tpad, tpad, row: pc, col: 0, kc: kcb, nc: tiles, into: bufB)
                    implicitTiles(m: oc, cols: tiles, kcb: kcb, a: packedA + xi * mpad * c + pc * mpad, b: bufB, c: mbuf + xi * oc * tpad,
                                  ldc: tpad, store: pc == 0)
                    pc += kc
                }
            }

            // Y = Aᵀ M A per tile, two output rows per tile row, then bias and activation.
            for o in 0..<oc {
                let bo = SIMD16<Float>(repeating: bias?[o] ?? 0), mo = mbuf + o * tpad
                for (n, (img, ty)) in chunk.enumerated() {
                    let dst = y + (img * oc + o) * ohw + 2 * ty * ow, second = 2 * ty + 1 < oh
                    var tx = 0
                    while tx < tw {
                        let mt = UnsafeRawPointer(mo + n * tw + tx)
                        @inline(__always) func m(_ xi: Int) -> V { mt.loadUnaligned(fromByteOffset: xi * oc * tpad * 4, as: V.self) }
                        // Aᵀ · down the columns, then · A along the rows.
                        @inline(__always) func colT(_ j: Int) -> (V, V) {
                            let m0 = m(j), m1 = m(4 + j), m2 = m(8 + j), m3 = m(12 + j)
                            return (m0 + m1 + m2, m1 - m2 - m3)
                        }
                        let c0 = colT(0), c1 = colT(1), c2 = colT(2), c3 = colT(3)
                        let y00 = c0.0 + c1.0 + c2.0, y01 = c1.0 - c2.0 - c3.0
                        let y10 = c0.1 + c1.1 + c2.1, y11 = c1.1 - c2.1 - c3.1
                        // The tiles' two columns side by side: sixteen outputs of a row.
                        @inline(__always) func put(_ a: V, _ b: V, _ row: UnsafeMutablePointer<Float>, _ q: Int) {
                            var v = SIMD16<Float>(a[0], b[0], a[1], b[1], a[2], b[2], a[3], b[3], a[4], b[4], a[5], b[5], a[6], b[6], a[7], b[7])
                            if bias != nil { v += bo }   // as `storeOutputs`: no addition without a bias (−0 stays −0)
                            if let act { v = act.apply(v) }
                            if q + 16 <= ow {
                                UnsafeMutableRawPointer(row + q).storeBytes(of: v, as: SIMD16<Float>.self)
                            } else {
                                UnsafeMutableRawPointer(tail).storeBytes(of: v, as: SIMD16<Float>.self)
                                for p in q..<ow { row[p] = tail[p - q] }
                            }
                        }
                        put(y00, y01, dst, 2 * tx)
                        if second { put(y10, y11, dst + ow, 2 * tx) }
                        tx += 8
                    }
                }
            }
            first = end
        }
    }
}
