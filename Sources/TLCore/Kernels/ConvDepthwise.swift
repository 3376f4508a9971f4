/// Depthwise convolution forward (channel multiplier 1): two methods, by plane size.
///
/// * Planes at least 7 outputs wide (strides 1 and 2, no dilation): `depthwiseGrid`, channel
///   by channel in the NCHW layout. Eight neighbouring outputs share a register; a zero-bordered
///   copy of the channel (split into stride phases) makes every tap one offset into it, and
///   eight such vectors at a time keep eight accumulators busy. The vectors run along the
///   output rows (⌈OW/8⌉ per row) and are stored straight into the output. No transposes: on
///   the 112×112 to 14×14 planes of EfficientNet those had cost more than the arithmetic.
/// * Smaller planes (the 4×4 and 2×2 of a network's last stages, where a row fills few lanes),
///   strides above 2 and dilation: `depthwiseChannelsLast`. The image is transposed to
///   [H][W][C] (C rounded up to 8, 8×8 blocks in registers) so the eight lanes are eight
///   channels of one pixel; each pixel adds only the taps that fall inside the image (on a 2×2
///   plane with a 5×5 kernel 4 of 25), six 8-channel chunks per pass.
///
/// One thread, batch 32, GFLOP/s (all taps counted) before → after this split (channels last
/// with a zero border and scalar transposes before): 32 ch 32×32 3×3 11 → 29; 144 ch 16×16 3×3
/// 8.5 → 19; 96 ch 32×32 stride 2 5.5 → 11; 672 ch 4×4 5×5 18 → 30; 1152 ch 2×2 5×5 7.5 → 40.
/// One thread, batch 8, grid in runs of 64 through a row buffer → vectors along the rows,
/// stored in place (and vector copies of short rows): 1152 ch 7×7 5×5 8.7 → 24, 3×3 8.8 → 13;
/// 672 ch 14×14 5×5 20 → 32, stride 2 5.6 → 16; 480 ch 14×14 3×3 9.5 → 16; 240 ch 28×28 5×5
/// 33 → 40; 144 ch 56×56 3×3 19 → 25; 96 ch 112×112 stride 2 8.5 → 11; 32 ch 112×112 17 → 26.
///
/// Every output starts from its bias and adds its taps in row-major order with fused
/// multiply-adds (the grid's padding taps add zeros, which can only turn a −0 into +0; the
/// channels-last method skips them); images are independent, so an image's output is the bits
/// it gets alone.
extension Conv {
    /// Depthwise forward, by the method that suits the plane (see `depthwiseGridApplies`).
    static func depthwiseForward(_ g: ConvGeometry, x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                                 y: UnsafeMutablePointer<Float>, activation: FusedActivation?, threads: Int) {
        if depthwiseGridApplies(g) {
            let px = UnsafeSendable(x), pw = UnsafeSendable(weight), pb = UnsafeSendable(bias), py = UnsafeSendable(y)
            let parts = max(1, min(threads, g.n))
            Threads.parallelFor(parts, threads: parts) { t in
                let i0 = t * g.n / parts, i1 = (t + 1) * g.n / parts
                if i0 < i1 { depthwiseGrid(g, x: px.value, images: i0..<i1, weight: pw.value, bias: pb.value, y: py.value, activation: activation) }
            }
        } else {
            depthwiseChannelsLast(g, x: x, weight: weight, bias: bias, y: y, activation: activation, threads: threads)
        }
    }

    /// Planes at least `depthwiseGridMinWidth` outputs wide, strides 1 or 2, no dilation, take
    /// `depthwiseGrid`; the rest (the 4×4 and 2×2 planes of a network's last stages, where a row
    /// fills few lanes) the channels-last copies.
    static func depthwiseGridApplies(_ g: ConvGeometry) -> Bool {
        g.dilationH == 1 && g.dilationW == 1 && (1...2).contains(g.strideH) && (1...2).contains(g.strideW) && g.ow >= depthwiseGridMinWidth
    }
    static let depthwiseGridMinWidth = 7

    /// Channel by channel in the NCHW layout, no transposes. The channel's plane is copied into
    /// a zero-bordered buffer (split into stride × stride phases as in `implicitPaddedImages`,
    /// each ⌈HP/s⌉ × ⌈WP/s⌉ = hq × wq), so that tap (i, j) of output (r, q) reads position
    /// r·wq + q + offset(i, j) of it: eight neighbouring outputs of a row are one unaligned
    /// 8-float load per tap. The outputs are computed in vectors of eight along each row
    /// (⌈OW/8⌉ per row), eight vectors at a time with one weight broadcast per tap, and stored
    /// straight into the output plane with the bias and activation applied. A row's last vector
    /// may run past the row: its extra lanes land on the start of the next row, whose first
    /// vector is stored after it; only the plane's last vector is stored lane by lane. (A grid as
    /// wide as the padded copy, in runs of 64, had computed 128 vectors' worth for a 7×7 plane
    /// that needs 7, and moved every row out through a buffer.) The border is zeroed once per
    /// call: every channel writes the same interior positions.
    static func depthwiseGrid(_ g: ConvGeometry, x: UnsafePointer<Float>, images: Range<Int>, weight: UnsafePointer<Float>,
                              bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, activation act: FusedActivation?) {
        let sh = g.strideH, sw = g.strideW, taps = g.kh * g.kw
        // The padded layout and tap offsets of the implicit convolution's copies (one channel).
        let (wq, planeC) = paddedLayout(g), planeQ = planeC / (sh * sw)
        let phases = sh * sw, hw = g.h * g.w, ohw = g.oh * g.ow
        // The output vectors: where each reads in the padded copy and writes in the plane, in
        // row order, rounded up to a multiple of eight by repeating the last.
        let perRow = (g.ow + 7) / 8, vectors = g.oh * perRow, rounded = (vectors + 7) / 8 * 8
        var at = [Int](repeating: 0, count: 2 * rounded)
        for v in 0..<rounded {
            let u = min(v, vectors - 1), r = u / perRow, q = u % perRow * 8
            at[2 * v] = r * wq + q; at[2 * v + 1] = r * g.ow + q
        }
        // Reads reach at most 7 floats past the last output's (which is inside the copy).
        let padded = Scratch.buffer(.columns, floats: phases * planeQ + 8)
        padded.update(repeating: 0, count: phases * planeQ + 8)
        paddedOffsets(g).withUnsafeBufferPointer { offp in
            at.withUnsafeBufferPointer { atp in
                let off = offp.baseAddress!, at = atp.baseAddress!
                for img in images {
                    for c in 0..<g.c {
                        let src = x + (img * g.c + c) * hw
                        // The channel's plane into its phases (interior only; the border stays zero).
                        for r in 0..<g.h {
                            // (Strides are 1 or 2: a mask and a shift, not a division.)
                            let pr = r + g.padTop, row = padded + ((pr & (sh - 1)) * sw) * planeQ + (pr >> (sh - 1)) * wq, s = src + r * g.w
                            if sw == 1 {
                                let d = row + g.padLeft
                                if g.w >= 8 {
                                    // Eight at a time, the last eight overlapping the previous ones.
                                    var q = 0
                                    while q + 8 <= g.w { copy8(d + q, s + q); q += 8 }
                                    if q < g.w { copy8(d + g.w - 8, s + g.w - 8) }
                                } else if r + 1 < g.h && g.w + g.padRight >= 8 {
                                    // A short row (7×7 planes) as one vector whose lanes past the row,
                                    // read from the next row of the plane, are stored as zeros on
                                    // this row's right border.
                                    let v = UnsafeRawPointer(s).loadUnaligned(as: SIMD8<Float>.self)
                                    UnsafeMutableRawPointer(d).storeBytes(of: v.replacing(with: 0, where: SIMD8<Float>(0, 1, 2, 3, 4, 5, 6, 7) .>= Float(g.w)), as: SIMD8<Float>.self)
                                } else {
                                    for q in 0..<g.w { d[q] = s[q] }
                                }
                            } else {
                                splitColumns(row, half: planeQ, s, g.w, padLeft: g.padLeft)
                            }
                        }
                        depthwiseVectors(rounded, at: at, taps: taps, offsets: off, input: padded, weight: weight + c * taps,
                                         bias: bias?[c] ?? 0, plane: y + (img * g.c + c) * ohw, planeSize: ohw, activation: act)
                    }
                }
            }
        }
    }

    /// For each v in 0..<count (a multiple of 8): the eight outputs plane[at[2v+1] ..< +8] =
    /// act(bias + Σ_t weight[t] · input[at[2v] + offsets[t] ..< +8]), stored in order of v, the
    /// lanes past `planeSize` dropped.
    @inline(never)
    static func depthwiseVectors(_ count: Int, at: UnsafePointer<Int>, taps: Int, offsets: UnsafePointer<Int>, input: UnsafePointer<Float>,
                                 weight: UnsafePointer<Float>, bias: Float, plane: UnsafeMutablePointer<Float>, planeSize: Int,
                                 activation act: FusedActivation?) {
        typealias V = SIMD8<Float>
        let b = V(repeating: bias), bounds = act?.bounds ?? (0, 0), lo = V(repeating: bounds.0), hi = V(repeating: bounds.1)
        var v = 0
        while v < count {
            var a0 = b, a1 = b, a2 = b, a3 = b, a4 = b, a5 = b, a6 = b, a7 = b
            let p0 = UnsafeRawPointer(input + at[2 * v]), p1 = UnsafeRawPointer(input + at[2 * v + 2])
            let p2 = UnsafeRawPointer(input + at[2 * v + 4]), p3 = UnsafeRawPointer(input + at[2 * v + 6])
            let p4 = UnsafeRawPointer(input + at[2 * v + 8]), p5 = UnsafeRawPointer(input + at[2 * v + 10])
            let p6 = UnsafeRawPointer(input + at[2 * v + 12]), p7 = UnsafeRawPointer(input + at[2 * v + 14])
            for t in 0..<taps {
                let w = V(repeating: weight[t]), o = offsets[t] &* 4
                a0.addProduct(w, (p0 + o).loadUnaligned(as: V.self))
                a1.addProduct(w, (p1 + o).loadUnaligned(as: V.self))
                a2.addProduct(w, (p2 + o).loadUnaligned(as: V.self))
                a3.addProduct(w, (p3 + o).loadUnaligned(as: V.self))
                a4.addProduct(w, (p4 + o).loadUnaligned(as: V.self))
                a5.addProduct(w, (p5 + o).loadUnaligned(as: V.self))
                a6.addProduct(w, (p6 + o).loadUnaligned(as: V.self))
                a7.addProduct(w, (p7 + o).loadUnaligned(as: V.self))
            }
            if at[2 * v + 15] + 8 <= planeSize {
                // (All eight whole: the positions increase.)
                @inline(__always) func st(_ a: V, _ k: Int) { UnsafeMutableRawPointer(plane + at[2 * v + 2 * k + 1]).storeBytes(of: a, as: V.self) }
                if act != nil {
                    // (Written out: `FusedActivation.apply` was not inlined here.)
                    @inline(__always) func f(_ v: inout V) { v = v.replacing(with: lo, where: v .<= lo); v = v.replacing(with: hi, where: hi .< v) }
                    f(&a0); f(&a1); f(&a2); f(&a3); f(&a4); f(&a5); f(&a6); f(&a7)
                }
                st(a0, 0); st(a1, 1); st(a2, 2); st(a3, 3); st(a4, 4); st(a5, 5); st(a6, 6); st(a7, 7)
            } else {
                storeVector(a0, at[2 * v + 1], plane, planeSize, act); storeVector(a1, at[2 * v + 3], plane, planeSize, act)
                storeVector(a2, at[2 * v + 5], plane, planeSize, act); storeVector(a3, at[2 * v + 7], plane, planeSize, act)
                storeVector(a4, at[2 * v + 9], plane, planeSize, act); storeVector(a5, at[2 * v + 11], plane, planeSize, act)
                storeVector(a6, at[2 * v + 13], plane, planeSize, act); storeVector(a7, at[2 * v + 15], plane, planeSize, act)
            }
            v += 8
        }
    }

    /// dst[0..<8] = src[0..<8].
    @inline(__always)
    static func copy8(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>) {
        UnsafeMutableRawPointer(dst).storeBytes(of: UnsafeRawPointer(src).loadUnaligned(as: SIMD8<Float>.self), as: SIMD8<Float>.self)
    }

    /// A row of w floats at `s` into the two column-parity halves of a padded row (`row` and
    /// `row + half`, for a stride-2 convolution): padded column p = q + padLeft goes to half
    /// p mod 2, position p / 2. Sixteen (or eight) at a time, even and odd lanes apart; the last
    /// chunk overlaps the one before (it stores the same values), so nothing outside the row's
    /// own positions is written and nothing past the row is read.
    @inline(__always)
    static func splitColumns(_ row: UnsafeMutablePointer<Float>, half: Int, _ s: UnsafePointer<Float>, _ w: Int, padLeft: Int) {
        @inline(__always) func split16(_ q: Int) {
            let v = UnsafeRawPointer(s + q).loadUnaligned(as: SIMD16<Float>.self)
            let p = q + padLeft, e = p & 1
            UnsafeMutableRawPointer(row + e * half + p / 2).storeBytes(of: v.evenHalf, as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(row + (1 - e) * half + (p + 1) / 2).storeBytes(of: v.oddHalf, as: SIMD8<Float>.self)
        }
        @inline(__always) func split8(_ q: Int) {
            let v = UnsafeRawPointer(s + q).loadUnaligned(as: SIMD8<Float>.self)
            let p = q + padLeft, e = p & 1
            UnsafeMutableRawPointer(row + e * half + p / 2).storeBytes(of: v.evenHalf, as: SIMD4<Float>.self)
            UnsafeMutableRawPointer(row + (1 - e) * half + (p + 1) / 2).storeBytes(of: v.oddHalf, as: SIMD4<Float>.self)
        }
        if w >= 16 {
            var q = 0
            while q + 16 <= w { split16(q); q += 16 }
            if q < w { split16(w - 16) }
        } else if w >= 8 {
            split8(0); split8(w - 8)
        } else {
            for q in 0..<w { let p = q + padLeft; row[(p & 1) * half + p / 2] = s[q] }
        }
    }

    /// plane[d ..< d + 8] = act(a), the lanes from `planeSize` on dropped.
    static func storeVector(_ a: SIMD8<Float>, _ d: Int, _ plane: UnsafeMutablePointer<Float>, _ planeSize: Int, _ act: FusedActivation?) {
        let r = act?.apply(a) ?? a
        if d + 8 <= planeSize {
            UnsafeMutableRawPointer(plane + d).storeBytes(of: r, as: SIMD8<Float>.self)
        } else {
            for l in 0..<(planeSize - d) { plane[d + l] = r[l] }
        }
    }

    static func depthwiseChannelsLast(_ g: ConvGeometry, x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                                      y: UnsafeMutablePointer<Float>, activation: FusedActivation?, threads: Int) {
        let c8 = (g.c + 7) / 8 * 8, taps = g.kh * g.kw
        // Weights as [tap][channel], bias as [channel], zero in the rounding channels.
        var wt = [Float](repeating: 0, count: taps * c8 + c8)
        for c in 0..<g.c {
            for t in 0..<taps { wt[t * c8 + c] = weight[c * taps + t] }
            wt[taps * c8 + c] = bias?[c] ?? 0
        }
        wt.withUnsafeBufferPointer { wp in
            let pw = UnsafeSendable(wp.baseAddress!), px = UnsafeSendable(x), py = UnsafeSendable(y)
            Threads.parallelFor(g.n, threads: min(threads, g.n)) { img in
                depthwiseImageChannelsLast(g, x: px.value + img * g.c * g.h * g.w, wt: pw.value, y: py.value + img * g.c * g.oh * g.ow, activation: activation)
            }
        }
    }

    /// Chunks of eight channels whose accumulators one pass keeps in registers (six hide the
    /// fused multiply-add latency; 6 divides the chunk counts of EfficientNet's wide layers).
    static let depthwiseChunkGroup = 6

    static func depthwiseImageChannelsLast(_ g: ConvGeometry, x: UnsafePointer<Float>, wt: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                                           activation act: FusedActivation?) {
        typealias V = SIMD8<Float>
        let c8 = (g.c + 7) / 8 * 8, taps = g.kh * g.kw, chunks = c8 / 8
        let oh = g.oh, ow = g.ow, hw = g.h * g.w, ohw = oh * ow
        let input = Scratch.buffer(.columns, floats: hw * c8)
        let out = Scratch.buffer(.output, floats: ohw * c8)
        toChannelsLast(x, channels: g.c, pixels: hw, into: input)
        let bias = wt + taps * c8, group = depthwiseChunkGroup
        for r in 0..<oh {
            // The taps inside the image (the rest would add zeros): rows i0..<i1, columns j0..<j1.
            let (i0, i1) = tapRange(r * g.strideH - g.padTop, g.dilationH, g.kh, g.h)
            for q in 0..<ow {
                let (j0, j1) = tapRange(q * g.strideW - g.padLeft, g.dilationW, g.kw, g.w)
                let ihBase = r * g.strideH - g.padTop, iwBase = q * g.strideW - g.padLeft
                let o = UnsafeMutableRawPointer(out + (r * ow + q) * c8)
                var ch = 0
                while ch + group <= chunks {
                    let b = UnsafeRawPointer(bias + ch * 8)
                    var a0 = b.load(as: V.self), a1 = b.load(fromByteOffset: 32, as: V.self), a2 = b.load(fromByteOffset: 64, as: V.self)
                    var a3 = b.load(fromByteOffset: 96, as: V.self), a4 = b.load(fromByteOffset: 128, as: V.self), a5 = b.load(fromByteOffset: 160, as: V.self)
                    for i in i0..<i1 {
                        let rowp = UnsafeRawPointer(input + ((ihBase + i * g.dilationH) * g.w + iwBase) * c8 + ch * 8)
                        for j in j0..<j1 {
                            let w = UnsafeRawPointer(wt + (i * g.kw + j) * c8 + ch * 8), p = rowp + j * g.dilationW * c8 * 4
                            a0.addProduct(w.load(as: V.self), p.load(as: V.self))
                            a1.addProduct(w.load(fromByteOffset: 32, as: V.self), p.load(fromByteOffset: 32, as: V.self))
                            a2.addProduct(w.load(fromByteOffset: 64, as: V.self), p.load(fromByteOffset: 64, as: V.self))
                            a3.addProduct(w.load(fromByteOffset: 96, as: V.self), p.load(fromByteOffset: 96, as: V.self))
                            a4.addProduct(w.load(fromByteOffset: 128, as: V.self), p.load(fromByteOffset: 128, as: V.self))
                            a5.addProduct(w.load(fromByteOffset: 160, as: V.self), p.load(fromByteOffset: 160, as: V.self))
                        }
                    }
                    let d = o + ch * 32
                    d.storeBytes(of: a0, as: V.self); d.storeBytes(of: a1, toByteOffset: 32, as: V.self)
                    d.storeBytes(of: a2, toByteOffset: 64, as: V.self); d.storeBytes(of: a3, toByteOffset: 96, as: V.self)
                    d.storeBytes(of: a4, toByteOffset: 128, as: V.self); d.storeBytes(of: a5, toByteOffset: 160, as: V.self)
                    ch += group
                }
                while ch < chunks {
                    var a0 = UnsafeRawPointer(bias + ch * 8).load(as: V.self)
                    for i in i0..<i1 {
                        let rowp = UnsafeRawPointer(input + ((ihBase + i * g.dilationH) * g.w + iwBase) * c8 + ch * 8)
                        for j in j0..<j1 {
                            a0.addProduct(UnsafeRawPointer(wt + (i * g.kw + j) * c8 + ch * 8).load(as: V.self),
                                          (rowp + j * g.dilationW * c8 * 4).load(as: V.self))
                        }
                    }
                    (o + ch * 32).storeBytes(of: a0, as: V.self)
                    ch += 1
                }
            }
        }
        fromChannelsLast(out, channels: g.c, pixels: ohw, into: y)
        if let act { act.apply(g.c * ohw, y) }
    }

    /// The taps t in 0..<k whose input index start + t·dilation lies in 0..<size.
    @inline(__always)
    static func tapRange(_ start: Int, _ dilation: Int, _ k: Int, _ size: Int) -> (Int, Int) {
        let lo = start >= 0 ? 0 : (-start + dilation - 1) / dilation
        let hi = start >= size ? 0 : min(k, (size - 1 - start) / dilation + 1)
        return (min(lo, hi), hi)
    }

    /// [C][P] → [P][C8] (C rounded up to 8, the rounding channels zero). Blocks of 8 channels ×
    /// 8 pixels are transposed in registers: three rounds of "even lanes of each pair of
    /// vectors to the first half, odd lanes to the second" rotate the 6-bit element index by
    /// three, which swaps row and column.
    static func toChannelsLast(_ x: UnsafePointer<Float>, channels c: Int, pixels n: Int, into d: UnsafeMutablePointer<Float>) {
        typealias V = SIMD8<Float>
        let c8 = (c + 7) / 8 * 8
        for ch in stride(from: 0, to: c8, by: 8) {
            if ch + 8 <= c {
                var p = 0
                while p + 8 <= n {
                    transposeBlock(x + ch * n + p, n, into: d + p * c8 + ch, c8)
                    p += 8
                }
                while p < n {
                    let s = x + ch * n + p
                    UnsafeMutableRawPointer(d + p * c8 + ch).storeBytes(of: V(s[0], s[n], s[2 * n], s[3 * n], s[4 * n], s[5 * n], s[6 * n], s[7 * n]), as: V.self)
                    p += 1
                }
            } else {
                for p in 0..<n {
                    for k in 0..<8 { d[p * c8 + ch + k] = ch + k < c ? x[(ch + k) * n + p] : 0 }
                }
            }
        }
    }

    /// [P][C8] → [C][P], the inverse of `toChannelsLast` (the rounding channels dropped).
    static func fromChannelsLast(_ s: UnsafePointer<Float>, channels c: Int, pixels n: Int, into y: UnsafeMutablePointer<Float>) {
        typealias V = SIMD8<Float>
        let c8 = (c + 7) / 8 * 8
        for ch in stride(from: 0, to: c8, by: 8) {
            if ch + 8 <= c {
                var p = 0
                while p + 8 <= n {
                    transposeBlock(s + p * c8 + ch, c8, into: y + ch * n + p, n)
                    p += 8
                }
                while p < n {
                    let v = UnsafeRawPointer(s + p * c8 + ch).load(as: V.self)
                    for k in 0..<8 { y[(ch + k) * n + p] = v[k] }
                    p += 1
                }
            } else {
                for k in ch..<c { for p in 0..<n { y[k * n + p] = s[p * c8 + k] } }
            }
        }
    }

    typealias Block8 = (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>)

    /// dst row k, 8 floats = column k of the 8×8 block whose rows start at src + r·srcStride.
    @inline(__always)
    static func transposeBlock(_ src: UnsafePointer<Float>, _ srcStride: Int, into dst: UnsafeMutablePointer<Float>, _ dstStride: Int) {
        typealias V = SIMD8<Float>
        @inline(__always) func ld(_ k: Int) -> V { UnsafeRawPointer(src + k * srcStride).loadUnaligned(as: V.self) }
        let v = transpose8((ld(0), ld(1), ld(2), ld(3), ld(4), ld(5), ld(6), ld(7)))
        @inline(__always) func st(_ k: Int, _ u: V) { UnsafeMutableRawPointer(dst + k * dstStride).storeBytes(of: u, as: V.self) }
        st(0, v.0); st(1, v.1); st(2, v.2); st(3, v.3); st(4, v.4); st(5, v.5); st(6, v.6); st(7, v.7)
    }

    /// The 8×8 transpose of eight rows.
    @inline(__always)
    static func transpose8(_ v: Block8) -> Block8 {
        @inline(__always) func unshuffle(_ t: Block8) -> Block8 {
            let p0 = SIMD16(lowHalf: t.0, highHalf: t.1), p1 = SIMD16(lowHalf: t.2, highHalf: t.3)
            let p2 = SIMD16(lowHalf: t.4, highHalf: t.5), p3 = SIMD16(lowHalf: t.6, highHalf: t.7)
            return (p0.evenHalf, p1.evenHalf, p2.evenHalf, p3.evenHalf, p0.oddHalf, p1.oddHalf, p2.oddHalf, p3.oddHalf)
        }
        return unshuffle(unshuffle(unshuffle(v)))
    }
}
