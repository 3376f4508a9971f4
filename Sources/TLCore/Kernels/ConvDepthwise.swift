/// Depthwise convolution forward (channel multiplier 1): two methods, by plane size.
///
/// * Planes at least 7 outputs wide (strides 1 and 2, no dilation): `depthwiseGrid`, channel
///   by channel in the NCHW layout. Eight neighbouring outputs share a register; a zero-bordered
///   copy of the channel (split into stride phases) makes every tap one offset into it, and
///   runs of 64 outputs keep eight accumulators busy. No transposes: on the 112×112 to 14×14
///   planes of EfficientNet those had cost more than the arithmetic.
/// * Smaller planes (the 4×4 and 2×2 of a network's last stages, where a row fills few lanes),
///   strides above 2 and dilation: `depthwiseChannelsLast`. The image is transposed to
///   [H][W][C] (C rounded up to 8, 8×8 blocks in registers) so the eight lanes are eight
///   channels of one pixel; each pixel adds only the taps that fall inside the image (on a 2×2
///   plane with a 5×5 kernel 4 of 25), six 8-channel chunks per pass.
///
/// One thread, batch 32, GFLOP/s (all taps counted) before → after this split (channels last
/// with a zero border and scalar transposes before): 32 ch 32×32 3×3 11 → 29; 144 ch 16×16 3×3
/// 8.5 → 19; 96 ch 32×32 stride 2 5.5 → 11; 672 ch 4×4 5×5 18 → 30; 1152 ch 2×2 5×5 7.5 → 40.
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
    /// each ⌈HP/s⌉ × ⌈WP/s⌉ = hq × wq), and outputs are computed on a grid wq wide: grid point
    /// r·wq + q is output (r, q) when q < OW, the rest computed and dropped. Tap (i, j) of every
    /// grid point then reads the same offset in the buffer, so eight consecutive grid points are
    /// one unaligned 8-float load, and a run of 64 points keeps eight independent accumulators
    /// (one weight broadcast per tap). The border is zeroed once per call: every channel writes
    /// the same interior positions.
    static func depthwiseGrid(_ g: ConvGeometry, x: UnsafePointer<Float>, images: Range<Int>, weight: UnsafePointer<Float>,
                              bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, activation act: FusedActivation?) {
        let sh = g.strideH, sw = g.strideW, taps = g.kh * g.kw
        // The padded layout and tap offsets of the implicit convolution's copies (one channel).
        let (wq, planeC) = paddedLayout(g), planeQ = planeC / (sh * sw)
        let grid = (g.oh - 1) * wq + g.ow, gridRounded = (grid + 63) / 64 * 64
        let phases = sh * sw, hw = g.h * g.w, ohw = g.oh * g.ow
        // Reads reach at most gridRounded − 1 + the largest tap offset (< phases · planeQ).
        let padded = Scratch.buffer(.columns, floats: phases * planeQ + gridRounded)
        let out = Scratch.buffer(.output, floats: gridRounded)
        padded.update(repeating: 0, count: phases * planeQ + gridRounded)
        paddedOffsets(g).withUnsafeBufferPointer { offp in
            let off = offp.baseAddress!
            for img in images {
                for c in 0..<g.c {
                    let src = x + (img * g.c + c) * hw
                    // The channel's plane into its phases (interior only; the border stays zero).
                    for r in 0..<g.h {
                        // (Strides are 1 or 2: a mask and a shift, not a division.)
                        let pr = r + g.padTop, row = padded + ((pr & (sh - 1)) * sw) * planeQ + (pr >> (sh - 1)) * wq, s = src + r * g.w
                        if sw == 1 {
                            moveRow(row + g.padLeft, s, g.w, nil)
                        } else {
                            // Columns by parity: padded column p = q + padLeft goes to phase p mod 2,
                            // position p / 2; sixteen at a time, even and odd lanes apart.
                            var q = 0
                            while q + 16 <= g.w {
                                let v = UnsafeRawPointer(s + q).loadUnaligned(as: SIMD16<Float>.self)
                                let p = q + g.padLeft, e = p & 1
                                UnsafeMutableRawPointer(row + e * planeQ + p / 2).storeBytes(of: v.evenHalf, as: SIMD8<Float>.self)
                                UnsafeMutableRawPointer(row + (1 - e) * planeQ + (p + 1) / 2).storeBytes(of: v.oddHalf, as: SIMD8<Float>.self)
                                q += 16
                            }
                            while q < g.w { let p = q + g.padLeft; row[(p & 1) * planeQ + p / 2] = s[q]; q += 1 }
                        }
                    }
                    depthwiseGridPoints(grid: gridRounded, taps: taps, offsets: off, input: padded,
                                        weight: weight + c * taps, bias: bias?[c] ?? 0, out: out)
                    let dst = y + (img * g.c + c) * ohw
                    for r in 0..<g.oh { moveRow(dst + r * g.ow, out + r * wq, g.ow, act) }
                }
            }
        }
    }

    /// dst[0..<n] = act(src[0..<n]), eight at a time (rows of a few dozen floats: a memmove call
    /// per row had cost a quarter of the layer). The comparisons are written out as
    /// `FusedActivation.apply`'s scalar `max`/`min` make them (−0 and NaN come out alike);
    /// `clamped` was an outlined generic call per vector.
    @inline(__always)
    static func moveRow(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int, _ act: FusedActivation?) {
        typealias V = SIMD8<Float>
        var q = 0
        switch act {
        case nil:
            while q + 8 <= n { UnsafeMutableRawPointer(dst + q).storeBytes(of: UnsafeRawPointer(src + q).loadUnaligned(as: V.self), as: V.self); q += 8 }
            while q < n { dst[q] = src[q]; q += 1 }
        case .relu:
            while q + 8 <= n {
                let v = UnsafeRawPointer(src + q).loadUnaligned(as: V.self)
                UnsafeMutableRawPointer(dst + q).storeBytes(of: v.replacing(with: 0, where: v .<= 0), as: V.self); q += 8
            }
            while q < n { dst[q] = max(src[q], 0); q += 1 }
        case .clip(let lo, let hi):
            let vl = V(repeating: lo), vh = V(repeating: hi)
            while q + 8 <= n {
                let v = UnsafeRawPointer(src + q).loadUnaligned(as: V.self)
                let t = v.replacing(with: vl, where: v .<= vl)
                UnsafeMutableRawPointer(dst + q).storeBytes(of: t.replacing(with: vh, where: vh .< t), as: V.self); q += 8
            }
            while q < n { dst[q] = min(max(src[q], lo), hi); q += 1 }
        }
    }

    /// out[p] = bias + Σ_t weight[t] · input[p + offsets[t]] for p in 0..<grid (a multiple of 64).
    @inline(never)
    static func depthwiseGridPoints(grid: Int, taps: Int, offsets: UnsafePointer<Int>, input: UnsafePointer<Float>,
                                    weight: UnsafePointer<Float>, bias: Float, out: UnsafeMutablePointer<Float>) {
        typealias V = SIMD8<Float>
        let b = V(repeating: bias)
        var p = 0
        while p < grid {
            var a0 = b, a1 = b, a2 = b, a3 = b, a4 = b, a5 = b, a6 = b, a7 = b
            let base = UnsafeRawPointer(input + p)
            for t in 0..<taps {
                let w = V(repeating: weight[t]), s = base + offsets[t] * 4
                a0.addProduct(w, s.loadUnaligned(as: V.self))
                a1.addProduct(w, s.loadUnaligned(fromByteOffset: 32, as: V.self))
                a2.addProduct(w, s.loadUnaligned(fromByteOffset: 64, as: V.self))
                a3.addProduct(w, s.loadUnaligned(fromByteOffset: 96, as: V.self))
                a4.addProduct(w, s.loadUnaligned(fromByteOffset: 128, as: V.self))
                a5.addProduct(w, s.loadUnaligned(fromByteOffset: 160, as: V.self))
                a6.addProduct(w, s.loadUnaligned(fromByteOffset: 192, as: V.self))
                a7.addProduct(w, s.loadUnaligned(fromByteOffset: 224, as: V.self))
            }
            let o = UnsafeMutableRawPointer(out + p)
            o.storeBytes(of: a0, as: V.self); o.storeBytes(of: a1, toByteOffset: 32, as: V.self)
            o.storeBytes(of: a2, toByteOffset: 64, as: V.self); o.storeBytes(of: a3, toByteOffset: 96, as: V.self)
            o.storeBytes(of: a4, toByteOffset: 128, as: V.self); o.storeBytes(of: a5, toByteOffset: 160, as: V.self)
            o.storeBytes(of: a6, toByteOffset: 192, as: V.self); o.storeBytes(of: a7, toByteOffset: 224, as: V.self)
            p += 64
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
