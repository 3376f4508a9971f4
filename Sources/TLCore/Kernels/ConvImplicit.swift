import Glibc

/// Convolution forward without a column matrix ("implicit GEMM"), the path inference takes.
///
/// im2col + GEMM writes every image's (C·KH·KW) × (OH·OW) column matrix to memory (7 MiB for a
/// ResNet-18 layer at 224×224), then the GEMM reads it back to pack its 16-column panels: two
/// passes over the largest array of the layer, a quarter of a ResNet-18 forward. Here the
/// panels are packed straight from the images, one K-block at a time: for each row (c, i, j)
/// of the virtual column matrix the needed stretch is first assembled in a small buffer that
/// stays in L1 (contiguous copies of input rows, zeros for the padding), then moved into the
/// panel layout 16 floats at a time. Further:
/// * The columns run over (image, output row, output column) of all of a thread's images, so a
///   panel may hold the end of one image and the start of the next: 7×7 and 14×14 outputs fill
///   whole 16-wide tiles instead of ending every image on a partial one.
/// * The weights are packed once per call for all images (not once per image and K-block).
/// * The bias is added, and the activation that follows applied (`FusedActivation`), while the
///   finished block of outputs is copied into place.
///
/// Every output element sees the same fused multiply-adds in the same order (K-blocks of
/// `implicitKC`, each a 6×16 or 12×16 tile's k loop, then one rounded addition of the bias),
/// whichever panel it lands in and however many images a thread takes: an image's output is the
/// bits it gets alone, for any batch size and thread count. Against the im2col path (K-blocks of
/// `GEMM.kc`) the bits are the same up to K = 256 and agree to rounding beyond.
extension Conv {
    /// Whether `forward` without `columns` takes the implicit path (one group; depthwise and
    /// grouped convolutions keep their own).
    static func implicitApplies(_ g: ConvGeometry) -> Bool { g.groups == 1 && implicitEnabled }
    /// `TL_CONV=im2col` makes inference use im2col + GEMM too (for comparison).
    static let implicitEnabled: Bool = getenv("TL_CONV").map { String(cString: $0) != "im2col" } ?? true

    /// K-blocks of equal size, at most `GEMM.kc` (288 = 144 + 144 rather than 256 + 32: a
    /// 32-step block spends as long loading and storing its tile as multiplying).
    static func implicitKC(_ k: Int) -> Int {
        let blocks = (k + GEMM.kc - 1) / GEMM.kc
        return (k + blocks - 1) / blocks
    }
    /// Columns per block of the virtual column matrix: a multiple of 16 with the block of
    /// outputs (OC × columns) at most 1 MiB.
    static func implicitBlockColumns(_ g: ConvGeometry, columns q: Int) -> Int {
        let cap = max(64, min(GEMM.nc, (1 << 18) / g.oc / GEMM.nr * GEMM.nr))
        return min(cap, (q + GEMM.nr - 1) / GEMM.nr * GEMM.nr)
    }

    /// Floats of the weights packed for the inference kernel (0 where it does not apply).
    public static func packedWeightCount(_ g: ConvGeometry) -> Int {
        !implicitApplies(g) ? 0 : winogradApplies(g) ? winogradPackedCount(g) : (g.oc + GEMM.mr - 1) / GEMM.mr * GEMM.mr * g.kdim
    }

    /// The weights as the inference kernel's A panels, K-block after K-block (block pc at
    /// pc·mpad, mpad = OC rounded up to the micro-tile): what `forward` would pack on every call.
    /// A network that only runs forward packs them once (`packedWeights:`). The layout depends
    /// on `GEMM.mr`: pack again if that changes.
    public static func packWeights(_ g: ConvGeometry, weight: UnsafePointer<Float>, into packed: UnsafeMutablePointer<Float>) {
        precondition(implicitApplies(g), "conv: packed weights are for one-group convolutions")
        if winogradApplies(g) { winogradPackWeights(g, weight: weight, into: packed); return }
        let m = g.oc, k = g.kdim, mr = GEMM.mr, kc = implicitKC(k), mpad = (m + mr - 1) / mr * mr
        var pc = 0
        while pc < k {
            GEMM.packA(false, weight, k, row: 0, col: pc, mc: m, kc: min(kc, k - pc), into: packed + pc * mpad)
            pc += kc
        }
    }

    static func forwardImplicit(_ g: ConvGeometry, x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                                y: UnsafeMutablePointer<Float>, packedWeights: UnsafePointer<Float>?, activation: FusedActivation?, threads: Int) {
        let mr = GEMM.mr, mpad = (g.oc + mr - 1) / mr * mr, winograd = winogradApplies(g)
        let packed: UnsafePointer<Float>
        if let p = packedWeights { packed = p } else {
            let buf = Scratch.buffer(.packA, floats: packedWeightCount(g))
            packWeights(g, weight: weight, into: buf)
            packed = UnsafePointer(buf)
        }
        let parts = max(1, min(threads, g.n))
        let px = UnsafeSendable(x), pa = UnsafeSendable(packed), pb = UnsafeSendable(bias), py = UnsafeSendable(y)
        Threads.parallelFor(parts, threads: parts) { t in
            let i0 = t * g.n / parts, i1 = (t + 1) * g.n / parts
            if i0 >= i1 { return }
            if winograd {
                winogradImages(g, x: px.value, images: i0..<i1, packedA: pa.value, mpad: mpad, bias: pb.value, y: py.value, activation: activation)
            } else {
                implicitImages(g, x: px.value, images: i0..<i1, packedA: pa.value, mpad: mpad, bias: pb.value, y: py.value, activation: activation)
            }
        }
    }

    /// Whether outputs are computed several images side by side (through a block buffer) rather
    /// than image by image on a grid as wide as the padded input: planes under 400 outputs (the
    /// grid would waste a fifth of an 8×8 plane's arithmetic and tiles end with every image),
    /// and any plane whose padded copy is at most 4096 floats (one channel of 28×28: with K = 9
    /// the block's columns amortize storing each tile). One thread, batch 32, GFLOP/s: 128→128
    /// 8×8 70 → 81, 256→512 16×16 stride 2 68 → 79, 1→32 28×28 27 → 36, 6→16 12×12 5×5 40 → 46;
    /// 32→64 28×28 stays image by image (the 32 padded copies would be 3.7 MB: 75 → 57-72).
    static func implicitSideBySide(_ g: ConvGeometry) -> Bool {
        g.oh * g.ow < 400 || !g.isPointwise && g.c * paddedLayout(g).planeC <= 4096
    }
    /// Rows of the virtual column matrix assembled before they are moved into the panels.
    static let implicitRowGroup = 8

    /// The outputs of images `images`, on the calling thread.
    static func implicitImages(_ g: ConvGeometry, x: UnsafePointer<Float>, images: Range<Int>, packedA: UnsafePointer<Float>, mpad: Int,
                               bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, activation act: FusedActivation?) {
        let m = g.oc, ohw = g.oh * g.ow, inSize = g.c * g.h * g.w, outSize = m * ohw
        let sideBySide = implicitSideBySide(g), paddable = !g.isPointwise && (g.strideH == 1 && g.strideW == 1 || g.dilationH == 1 && g.dilationW == 1)
        if !sideBySide && paddable {
            implicitPaddedImages(g, x: x, images: images, packedA: packedA, mpad: mpad, bias: bias, y: y, activation: act)
            return
        }
        if !sideBySide {
            let ncb = implicitBlockColumns(g, columns: ohw)
            for img in images {
                let xi = x + img * inSize, yi = y + img * outSize
                var jc = 0
                while jc < ohw {
                    let cols = min(ncb, ohw - jc)
                    implicitBlock(g, x: xi, firstColumn: jc, columns: cols, blockColumns: ncb, packedA: packedA, mpad: mpad, c: yi + jc, ldc: ohw)
                    // Bias and activation on the block while it is in cache.
                    for o in 0..<m { storeOutputs(yi + o * ohw + jc, yi + o * ohw + jc, cols, bias: bias?[o], act) }
                    jc += cols
                }
            }
            return
        }
        if paddable {
            implicitPaddedBatch(g, x: x, images: images, packedA: packedA, mpad: mpad, bias: bias, y: y, activation: act)
            return
        }
        let total = images.count * ohw, ncb = implicitBlockColumns(g, columns: total)
        let cblk = Scratch.buffer(.output, floats: m * ncb)
        let x0 = x + images.lowerBound * inSize
        var jc = 0
        while jc < total {
            let cols = min(ncb, total - jc)
            implicitBlock(g, x: x0, firstColumn: jc, columns: cols, blockColumns: ncb, packedA: packedA, mpad: mpad, c: cblk, ldc: ncb)
            // Into place, image by image, adding the bias.
            var q = jc
            while q < jc + cols {
                let img = q / ohw, off = q % ohw, n = min(ohw - off, jc + cols - q)
                let dst0 = y + (images.lowerBound + img) * outSize + off, src0 = cblk + (q - jc)
                for o in 0..<m {
                    storeOutputs(dst0 + o * ohw, src0 + o * ncb, n, bias: bias?[o], act)
                }
                q += n
            }
            jc += cols
        }
    }

    /// Image by image: each image is first copied with its zero border (C × HP × WP, HP = H +
    /// pads, WP = W + pads). On an output grid WP wide (the last WP − OW columns of each row are
    /// computed and dropped), row (c, i, j) of the column matrix is one contiguous stretch of
    /// the padded copy: padded[c][i·dh][j·dw + q] for grid column q. Packing a panel is then
    /// sixteen-float moves with no edge cases; the grid's extra columns cost (WP − OW) / WP of
    /// the arithmetic (2/30 at 28 × 28, 3×3 kernels). With a stride s (and no dilation) the
    /// copy is split into s × s phases, rows and columns by their remainder mod s, each
    /// ⌈HP/s⌉ × ⌈WP/s⌉: tap (i, j) reads phase (i mod s, j mod s) shifted by (i/s, j/s), again
    /// one contiguous stretch per row of the column matrix, on a grid ⌈WP/s⌉ wide.
    static func implicitPaddedImages(_ g: ConvGeometry, x: UnsafePointer<Float>, images: Range<Int>, packedA: UnsafePointer<Float>, mpad: Int,
                                     bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, activation act: FusedActivation?) {
        typealias V = SIMD16<Float>
        let m = g.oc, k = g.kdim, nr = GEMM.nr, kc = implicitKC(k)
        let ohw = g.oh * g.ow, inSize = g.c * g.h * g.w, outSize = m * ohw
        let (wp, planeC) = paddedLayout(g)
        let grid = (g.oh - 1) * wp + g.ow
        let ncb = implicitBlockColumns(g, columns: grid)
        let padded = Scratch.buffer(.extra, floats: g.c * planeC + nr)
        let bufB = Scratch.buffer(.packB, floats: min(kc, k) * ncb)
        let cblk = Scratch.buffer(.output, floats: m * ncb)
        paddedOffsets(g).withUnsafeBufferPointer { off in
            for img in images {
                let xi = x + img * inSize, yi = y + img * outSize
                padded.update(repeating: 0, count: g.c * planeC + nr)
                padImage(g, xi, into: padded)
                var jc = 0
                while jc < grid {
                    let cols = min(ncb, grid - jc), panels = (cols + nr - 1) / nr
                    var pc = 0
                    while pc < k {
                        let kcb = min(kc, k - pc)
                        // Panel by panel, its kcb rows: contiguous writes, kcb read streams.
                        let src = UnsafeRawPointer(padded + jc)
                        var d = UnsafeMutableRawPointer(bufB)
                        for p in 0..<panels {
                            let sp = src + p * nr * 4
                            for kk in 0..<kcb {
                                d.storeBytes(of: (sp + off[pc + kk] * 4).loadUnaligned(as: V.self), as: V.self)
                                d += nr * 4
                            }
                        }
                        implicitTiles(m: m, cols: cols, kcb: kcb, a: packedA + pc * mpad, b: bufB, c: cblk, ldc: ncb, store: pc == 0)
                        pc += kc
                    }
                    // The grid's valid columns into place, adding the bias.
                    let r0 = jc / wp, r1 = min(g.oh, (jc + cols + wp - 1) / wp)
                    for o in 0..<m {
                        let bo = bias?[o], src = cblk + o * ncb - jc, dst = yi + o * ohw
                        for r in r0..<r1 {
                            let q0 = max(0, jc - r * wp), q1 = min(g.ow, jc + cols - r * wp)
                            if q0 < q1 { storeOutputs(dst + r * g.ow + q0, src + r * wp + q0, q1 - q0, bias: bo, act) }
                        }
                    }
                    jc += cols
                }
            }
        }
    }

    /// The zero-bordered copy of an image that the padded paths read: per channel, stride ×
    /// stride phases of ⌈HP/s⌉ × ⌈WP/s⌉ (one phase without a stride). Returns the phase width and
    /// the floats per channel.
    static func paddedLayout(_ g: ConvGeometry) -> (wp: Int, planeC: Int) {
        let sh = g.strideH, sw = g.strideW
        let hp = (g.h + g.padTop + g.padBottom + sh - 1) / sh, wp = (g.w + g.padLeft + g.padRight + sw - 1) / sw
        return (wp, sh * sw * hp * wp)
    }

    /// Where row kr = (c, i, j) of the column matrix starts in the padded copy: for output
    /// (r, q) it reads offset + r·WP + q (with a stride, in phase (i·dh mod s, j·dw mod s)).
    static func paddedOffsets(_ g: ConvGeometry) -> [Int] {
        let sh = g.strideH, sw = g.strideW, (wp, planeC) = paddedLayout(g), planeP = planeC / (sh * sw)
        return (0..<g.kdim).map { kr in
            let c = kr / (g.kh * g.kw), i = kr % (g.kh * g.kw) / g.kw, j = kr % g.kw
            let di = i * g.dilationH, dj = j * g.dilationW
            return c * planeC + (di % sh * sw + dj % sw) * planeP + di / sh * wp + dj / sw
        }
    }

    /// Copies image `x` into the interior of its padded copy at `dst` (the border is left as it is).
    static func padImage(_ g: ConvGeometry, _ x: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>) {
        let sh = g.strideH, sw = g.strideW, (wp, planeC) = paddedLayout(g), planeP = planeC / (sh * sw)
        for c in 0..<g.c {
            for r in 0..<g.h {
                let pr = r + g.padTop, src = x + (c * g.h + r) * g.w
                let rowBase = dst + c * planeC + pr % sh * sw * planeP + pr / sh * wp
                if sh * sw == 1 { (rowBase + g.padLeft).update(from: src, count: g.w); continue }
                for pc in 0..<sw {
                    // Input columns q with (q + padLeft) mod s = pc, in order.
                    let q0 = ((pc - g.padLeft) % sw + sw) % sw
                    if q0 >= g.w { continue }
                    let d = rowBase + pc * planeP + (q0 + g.padLeft) / sw
                    var k = 0, q = q0
                    while q < g.w { d[k] = src[q]; k += 1; q += sw }
                }
            }
        }
    }

    /// Several images side by side (`implicitSideBySide`):
    /// all of the thread's images are copied with their zero border first (as in
    /// `implicitPaddedImages`); then each row of the column matrix is, per image and output
    /// row, a stretch of OW contiguous floats of a copy, moved eight at a time. Assembling those
    /// stretches from the unpadded images, edge case by edge case, had cost ResNet-18 at 64×64
    /// an eighth of its time on its 4×4 and 2×2 layers.
    static func implicitPaddedBatch(_ g: ConvGeometry, x: UnsafePointer<Float>, images: Range<Int>, packedA: UnsafePointer<Float>, mpad: Int,
                                    bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, activation act: FusedActivation?) {
        typealias V = SIMD8<Float>
        let m = g.oc, k = g.kdim, nr = GEMM.nr, kc = implicitKC(k), group = implicitRowGroup
        let ohw = g.oh * g.ow, ow = g.ow, inSize = g.c * g.h * g.w, outSize = m * ohw
        let (wp, planeC) = paddedLayout(g), imgP = g.c * planeC
        let total = images.count * ohw, ncb = implicitBlockColumns(g, columns: total)
        // Reads run up to 7 floats past a stretch (or past the last copy): slack at the end.
        let padded = Scratch.buffer(.extra, floats: images.count * imgP + 16)
        padded.update(repeating: 0, count: images.count * imgP + 16)
        for (t, img) in images.enumerated() { padImage(g, x + img * inSize, into: padded + t * imgP) }
        let panelsMax = (ncb + nr - 1) / nr, rs = panelsMax * nr + 8
        let bufB = Scratch.buffer(.packB, floats: min(kc, k) * panelsMax * nr)
        let rows = Scratch.buffer(.columns, floats: group * rs)
        let cblk = Scratch.buffer(.output, floats: m * ncb)
        var stretches: [(dst: Int, src: Int, n: Int)] = []
        paddedOffsets(g).withUnsafeBufferPointer { off in
            var jc = 0
            while jc < total {
                let cols = min(ncb, total - jc), panels = (cols + nr - 1) / nr
                // The block's columns as stretches of output rows: where each goes in a row of
                // the column matrix, where it starts in the padded copies, how long it is.
                stretches.removeAll(keepingCapacity: true)
                var q = jc
                while q < jc + cols {
                    let img = q / ohw, r = q % ohw / ow, qq = q % ow, n = min(ow - qq, jc + cols - q)
                    stretches.append((q - jc, img * imgP + r * wp + qq, n))
                    q += n
                }
                var pc = 0
                while pc < k {
                    let kcb = min(kc, k - pc)
                    var k0 = 0
                    while k0 < kcb {
                        let nrows = min(group, kcb - k0)
                        for kr in 0..<nrows {
                            let src = padded + off[pc + k0 + kr], row = rows + kr * rs
                            for st in stretches {
                                var p = 0
                                repeat {
                                    UnsafeMutableRawPointer(row + st.dst + p).storeBytes(of: UnsafeRawPointer(src + st.src + p).loadUnaligned(as: V.self), as: V.self)
                                    p += 8
                                } while p < st.n
                            }
                            for c in cols..<(panels * nr) { row[c] = 0 }
                        }
                        // Rows k0..<k0+nrows into the panels: 64 contiguous bytes per row and panel.
                        var d = UnsafeMutableRawPointer(bufB + k0 * nr)
                        for pnl in 0..<panels {
                            for r in 0..<nrows {
                                d.storeBytes(of: UnsafeRawPointer(rows + r * rs + pnl * nr).loadUnaligned(as: SIMD16<Float>.self), toByteOffset: r * nr * 4, as: SIMD16<Float>.self)
                            }
                            d += kcb * nr * 4
                        }
                        k0 += nrows
                    }
                    implicitTiles(m: m, cols: cols, kcb: kcb, a: packedA + pc * mpad, b: bufB, c: cblk, ldc: ncb, store: pc == 0)
                    pc += kc
                }
                // Into place, image by image, adding the bias.
                q = jc
                while q < jc + cols {
                    let img = q / ohw, offs = q % ohw, n = min(ohw - offs, jc + cols - q)
                    let dst0 = y + (images.lowerBound + img) * outSize + offs, src0 = cblk + (q - jc)
                    for o in 0..<m { storeOutputs(dst0 + o * ohw, src0 + o * ncb, n, bias: bias?[o], act) }
                    q += n
                }
                jc += cols
            }
        }
    }

    /// C[m × cols] (+)= packed A (all m rows, one K-block) · packed B (cols columns): MC-row
    /// blocks of A, each against every panel of B. Not inlined: inside the large packing
    /// functions the compiler stopped inlining the micro-kernel's loads (5× slower).
    @inline(never)
    static func implicitTiles(m: Int, cols: Int, kcb: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                              c: UnsafeMutablePointer<Float>, ldc: Int, store: Bool) {
        var ic = 0
        while ic < m {
            GEMM.panelTiles(m: min(GEMM.mc, m - ic), n: cols, kcb: kcb, a + ic * kcb, b, c + ic * ldc, ldc, 1, store)
            ic += GEMM.mc
        }
    }

    /// C[OC × columns] = W · (columns firstColumn..<firstColumn+columns of the virtual column
    /// matrix of the images at `x`), all K-blocks.
    @inline(__always)
    static func implicitBlock(_ g: ConvGeometry, x: UnsafePointer<Float>, firstColumn: Int, columns cols: Int, blockColumns ncb: Int,
                              packedA: UnsafePointer<Float>, mpad: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
        let m = g.oc, k = g.kdim, kc = implicitKC(k)
        let bufB = Scratch.buffer(.packB, floats: min(kc, k) * ncb)
        let row = Scratch.buffer(.columns, floats: implicitRowGroup * ncb + 16)
        var pc = 0
        let ohw = g.oh * g.ow, oneImage = g.isPointwise && firstColumn / ohw == (firstColumn + cols - 1) / ohw
        while pc < k {
            let kcb = min(kc, k - pc)
            if oneImage {
                // A 1×1 convolution within one image: B is the image itself, [C][OH·OW].
                let img = firstColumn / ohw
                GEMM.packB(false, x + img * g.c * ohw, ohw, row: pc, col: firstColumn - img * ohw, kc: kcb, nc: cols, into: bufB)
            } else {
                packImplicitB(g, x: x, firstColumn: firstColumn, columns: cols, pc: pc, kcb: kcb, row: row, into: bufB)
            }
            implicitTiles(m: m, cols: cols, kcb: kcb, a: packedA + pc * mpad, b: bufB, c: c, ldc: ldc, store: pc == 0)
            pc += kc
        }
    }

    /// Packs rows pc..<pc+kcb of the virtual column matrix of the images at `x` (columns
    /// firstColumn..<firstColumn+columns, running over image, output row and output column) as
    /// 16-wide panels, each kcb × 16, zero-padded: what `GEMM.packB` would make of the im2col
    /// matrix. `row` holds a panel-rounded stretch of one row.
    static func packImplicitB(_ g: ConvGeometry, x: UnsafePointer<Float>, firstColumn: Int, columns: Int, pc: Int, kcb: Int,
                              row: UnsafeMutablePointer<Float>, into dst: UnsafeMutablePointer<Float>) {
        typealias V = SIMD16<Float>
        let nr = GEMM.nr, panels = (columns + nr - 1) / nr
        let ohw = g.oh * g.ow, ow = g.ow, inSize = g.c * g.h * g.w, plane = g.h * g.w, khw = g.kh * g.kw
        let rs = panels * nr, group = implicitRowGroup
        let xEnd = x + ((firstColumn + columns - 1) / ohw + 1) * inSize
        var k0 = 0
        while k0 < kcb {
          let rows = min(group, kcb - k0)
          for kr0 in 0..<rows {
            let kk = k0 + kr0, base = row + kr0 * rs
            let kr = pc + kk, c = kr / khw, i = kr % khw / g.kw, j = kr % g.kw
            if g.isPointwise {
                // Row c is channel c of each image, contiguous.
                var q = firstColumn, out = base, left = columns
                while left > 0 {
                    let img = q / ohw, off = q % ohw, n = min(ohw - off, left)
                    let src = x + img * inSize + c * plane + off
                    if src + (n + 7) <= xEnd {
                        // Whole 8-float moves (rows of 4 to 49 on small planes); the few written
                        // past n are rewritten by the next stretch, the zeroed tail or the next row.
                        var p = 0
                        while p < n { copy8(out + p, src + p); p += 8 }
                    } else {
                        for p in 0..<n { out[p] = src[p] }
                    }
                    out += n; left -= n; q += n
                }
            } else {
                let (dj, lo, hi) = g.columnSpan(j)
                var img = firstColumn / ohw, r = firstColumn % ohw / ow, col = firstColumn % ow
                var out = base, left = columns
                while left > 0 {
                    let n = min(ow - col, left), end = col + n
                    let ih = r * g.strideH - g.padTop + i * g.dilationH
                    if ih < 0 || ih >= g.h {
                        for p in 0..<n { out[p] = 0 }
                    } else {
                        let src = x + img * inSize + c * plane + ih * g.w + dj
                        let a = min(max(col, lo), end), b = max(a, min(end, hi))
                        let o = out - col
                        for p in col..<a { o[p] = 0 }
                        if g.strideW == 1 && src + (b + 7) <= xEnd {
                            // Whole 8-float moves; the few written past b are rewritten below or
                            // by the next stretch (the row buffer has room for them).
                            var p = a
                            while p < b { copy8(o + p, src + p); p += 8 }
                        } else if g.strideW == 1 { for p in a..<b { o[p] = src[p] } } else { for p in a..<b { o[p] = src[p * g.strideW] } }
                        for p in b..<end { o[p] = 0 }
                    }
                    out += n; left -= n; col = 0; r += 1
                    if r == g.oh { r = 0; img += 1 }
                }
            }
            for q in columns..<rs { base[q] = 0 }
          }
            // Rows k0..<k0+rows into the panels: 64 contiguous bytes per row and panel.
            var d = UnsafeMutableRawPointer(dst + k0 * nr)
            for p in 0..<panels {
                for r in 0..<rows {
                    d.storeBytes(of: UnsafeRawPointer(row + r * rs + p * nr).loadUnaligned(as: V.self), toByteOffset: r * nr * 4, as: V.self)
                }
                d += kcb * nr * 4
            }
            k0 += rows
        }
    }
}
