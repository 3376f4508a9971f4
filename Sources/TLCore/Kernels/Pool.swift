/// Pooling over NCHW f32 planes: max and average (kernel, stride, padding per side, ceil mode),
/// global average. Planes (N·C of them) are split across threads; each output element belongs
/// to one plane, so results do not depend on the thread count. Backward accumulates (`+=`).
public struct PoolGeometry: Equatable, Sendable {
    public var n, c, h, w: Int
    public var kh, kw: Int
    public var strideH, strideW: Int
    public var padTop = 0, padLeft = 0, padBottom = 0, padRight = 0
    /// Output size rounds up (PyTorch's ceil_mode), with the last window starting inside the input.
    public var ceilMode = false
    /// Average pooling: divide by the full window (true, PyTorch's default) or by the part of it
    /// inside the image (false, ONNX's default).
    public var countIncludePad = true
    /// Spacing of the window's taps (ONNX MaxPool/AveragePool dilations; 1 = contiguous).
    public var dilationH = 1, dilationW = 1
    /// The extent of the window in the input.
    var spanH: Int { (kh - 1) * dilationH + 1 }
    var spanW: Int { (kw - 1) * dilationW + 1 }

    public init(n: Int, c: Int, h: Int, w: Int, kernel: Int, stride: Int? = nil, pad: Int = 0) {
        self.n = n; self.c = c; self.h = h; self.w = w; kh = kernel; kw = kernel
        strideH = stride ?? kernel; strideW = stride ?? kernel
        padTop = pad; padLeft = pad; padBottom = pad; padRight = pad
    }

    static func outSize(_ size: Int, _ k: Int, _ s: Int, _ p0: Int, _ p1: Int, _ ceil: Bool) -> Int {
        let span = size + p0 + p1 - k
        var o = (ceil ? (span + s - 1) / s : span / s) + 1
        if ceil && (o - 1) * s >= size + p0 { o -= 1 }  // the last window must start inside
        return o
    }
    public var oh: Int { PoolGeometry.outSize(h, spanH, strideH, padTop, padBottom, ceilMode) }
    public var ow: Int { PoolGeometry.outSize(w, spanW, strideW, padLeft, padRight, ceilMode) }

    public var problem: String? {
        if n < 0 || c <= 0 || h <= 0 || w <= 0 || kh <= 0 || kw <= 0 || strideH <= 0 || strideW <= 0 || dilationH <= 0 || dilationW <= 0 { return "sizes must be positive" }
        if padTop < 0 || padLeft < 0 || padBottom < 0 || padRight < 0 { return "padding must not be negative" }
        if padTop >= spanH || padBottom >= spanH || padLeft >= spanW || padRight >= spanW { return "padding must be smaller than the kernel" }
        if h + padTop + padBottom < spanH || w + padLeft + padRight < spanW { return "kernel \(kh)x\(kw) is larger than the padded input \(h)x\(w)" }
        return nil
    }

    /// The taps of output (r, q)'s window inside the image: rows r0 + i·dilationH for i in
    /// [i0, i1), columns q0 + j·dilationW for j in [j0, j1). Returns (r0, i0, i1, q0, j0, j1).
    @inline(__always) func window(_ r: Int, _ q: Int) -> (Int, Int, Int, Int, Int, Int) {
        let r0 = r * strideH - padTop, q0 = q * strideW - padLeft
        @inline(__always) func taps(_ start: Int, _ k: Int, _ d: Int, _ size: Int) -> (Int, Int) {
            let lo = start >= 0 ? 0 : (-start + d - 1) / d
            let hi = min(k, start >= size ? 0 : (size - start + d - 1) / d)
            return (lo, max(lo, hi))
        }
        let (i0, i1) = taps(r0, kh, dilationH, h), (j0, j1) = taps(q0, kw, dilationW, w)
        return (r0, i0, i1, q0, j0, j1)
    }
}

public enum Pool {
    /// y = max over each window; `argmax` (if given) records the flat index within the plane of
    /// the winner (the first one on ties), which backward routes the gradient to.
    public static func maxForward(_ g: PoolGeometry, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                                  argmax: UnsafeMutablePointer<Int32>?, threads: Int = Threads.count) {
        precondition(g.problem == nil, "pool: \(g.problem!)")
        let oh = g.oh, ow = g.ow, hw = g.h * g.w
        let px = UnsafeSendable(x), py = UnsafeSendable(y), pa = UnsafeSendable(argmax)
        // Every window inside the plane: with padding (or ceil mode) at the bottom or right, the
        // last window row or column would read past the plane (ONNX pads [0, 0, 1, 1] on an odd
        // size had read the next plane, and the argmax sent gradients there).
        let simple2x2 = g.kh == 2 && g.kw == 2 && g.strideH == 2 && g.strideW == 2 && g.padTop == 0 && g.padLeft == 0
            && g.dilationH == 1 && g.dilationW == 1 && 2 * oh <= g.h && 2 * ow <= g.w
        Threads.parallelFor(g.n * g.c, threads: planeThreads(g, threads)) { p in
            let xs = px.value + p * hw, ys = py.value + p * oh * ow
            let am = pa.value.map { $0 + p * oh * ow }
            if am == nil && !simple2x2 && (g.strideW == 1 || g.strideW == 2) {
                maxPlanePadded(g, x: xs, y: ys)
                return
            }
            if simple2x2 && am == nil {
                // Inference: no winner to record. Vertical max of the two input rows, then of the
                // even and odd lanes, 8 outputs per step (NaN wins, as below).
                typealias V = SIMD16<Float>
                @inline(__always) func vmax(_ a: V, _ b: V) -> V { a.replacing(with: b, where: (b .> a) .| (b .!= b)) }
                for r in 0..<oh {
                    let r0 = UnsafeRawPointer(xs + 2 * r * g.w), r1 = UnsafeRawPointer(xs + (2 * r + 1) * g.w), out = ys + r * ow
                    var q = 0
                    while q + 8 <= ow {
                        let v = vmax(r0.loadUnaligned(fromByteOffset: 8 * q, as: V.self), r1.loadUnaligned(fromByteOffset: 8 * q, as: V.self))
                        let e = v.evenHalf, o = v.oddHalf
                        UnsafeMutableRawPointer(out + q).storeBytes(of: e.replacing(with: o, where: (o .> e) .| (o .!= o)), as: SIMD8<Float>.self)
                        q += 8
                    }
                    // Four at a time from eight (LeNet-5's 8×8 → 4×4 and the tails of 24 and 28 wide
                    // rows had gone one by one: a fifth of its extraction time in pooling).
                    typealias H = SIMD8<Float>
                    @inline(__always) func hmax(_ a: H, _ b: H) -> H { a.replacing(with: b, where: (b .> a) .| (b .!= b)) }
                    while q + 4 <= ow {
                        let v = hmax(r0.loadUnaligned(fromByteOffset: 8 * q, as: H.self), r1.loadUnaligned(fromByteOffset: 8 * q, as: H.self))
                        let e = v.evenHalf, o = v.oddHalf
                        UnsafeMutableRawPointer(out + q).storeBytes(of: e.replacing(with: o, where: (o .> e) .| (o .!= o)), as: SIMD4<Float>.self)
                        q += 4
                    }
                    let a0 = r0.assumingMemoryBound(to: Float.self), a1 = r1.assumingMemoryBound(to: Float.self)
                    while q < ow {
                        @inline(__always) func m(_ a: Float, _ b: Float) -> Float { b > a || (b.isNaN && !a.isNaN) ? b : a }
                        out[q] = m(m(a0[2 * q], a1[2 * q]), m(a0[2 * q + 1], a1[2 * q + 1]))
                        q += 1
                    }
                }
                return
            }
            if simple2x2, let am = am {
                // Training: 8 outputs per step with their winners, candidates in the order of the
                // general loop (row 0 left, right, row 1 left, right; the first maximum, NaN wins).
                typealias V = SIMD8<Float>; typealias I = SIMD8<Int32>
                let lane = I(0, 2, 4, 6, 8, 10, 12, 14)
                for r in 0..<oh {
                    let top = UnsafeRawPointer(xs + 2 * r * g.w), bottom = UnsafeRawPointer(xs + (2 * r + 1) * g.w), out = ys + r * ow
                    var q = 0
                    while q + 8 <= ow {
                        let t = top.loadUnaligned(fromByteOffset: 8 * q, as: SIMD16<Float>.self)
                        let b = bottom.loadUnaligned(fromByteOffset: 8 * q, as: SIMD16<Float>.self)
                        let i0 = lane &+ Int32(2 * r * g.w + 2 * q)
                        var best: V = t.evenHalf, at = i0
                        @inline(__always) func visit(_ v: V, _ i: I) {
                            let win = (v .> best) .| ((v .!= v) .& (best .== best))
                            best.replace(with: v, where: win); at.replace(with: i, where: win)
                        }
                        visit(t.oddHalf, i0 &+ 1); visit(b.evenHalf, i0 &+ Int32(g.w)); visit(b.oddHalf, i0 &+ Int32(g.w + 1))
                        UnsafeMutableRawPointer(out + q).storeBytes(of: best, as: V.self)
                        UnsafeMutableRawPointer(am + r * ow + q).storeBytes(of: at, as: I.self)
                        q += 8
                    }
                    let r0 = xs + 2 * r * g.w, r1 = r0 + g.w
                    while q < ow {
                        var best = r0[2 * q], at = 2 * r * g.w + 2 * q
                        @inline(__always) func visit(_ v: Float, _ i: Int) {
                            if v > best || (v.isNaN && !best.isNaN) { best = v; at = i }
                        }
                        visit(r0[2 * q + 1], at + 1); visit(r1[2 * q], 2 * r * g.w + g.w + 2 * q); visit(r1[2 * q + 1], 2 * r * g.w + g.w + 2 * q + 1)
                        out[q] = best; am[r * ow + q] = Int32(at)
                        q += 1
                    }
                }
                return
            }
            if simple2x2 {
                // The common case (every CNN here): no clipping, four candidates per output.
                // Same winner rule as the general loop: the first maximum, NaN wins.
                for r in 0..<oh {
                    let r0 = xs + 2 * r * g.w, r1 = r0 + g.w
                    for q in 0..<ow {
                        var best = r0[2 * q], at = 2 * r * g.w + 2 * q
                        @inline(__always) func visit(_ v: Float, _ i: Int) {
                            if v > best || (v.isNaN && !best.isNaN) { best = v; at = i }
                        }
                        visit(r0[2 * q + 1], at + 1); visit(r1[2 * q], 2 * r * g.w + g.w + 2 * q); visit(r1[2 * q + 1], 2 * r * g.w + g.w + 2 * q + 1)
                        ys[r * ow + q] = best
                        am?[r * ow + q] = Int32(at)
                    }
                }
                return
            }
            for r in 0..<oh {
                for q in 0..<ow {
                    let (r0, i0, i1, q0, j0, j1) = g.window(r, q)
                    var best = -Float.infinity, at = (r0 + i0 * g.dilationH) * g.w + q0 + j0 * g.dilationW
                    for i in i0..<i1 { for j in j0..<j1 {
                        let k = (r0 + i * g.dilationH) * g.w + q0 + j * g.dilationW, v = xs[k]
                        if v > best || (v.isNaN && !best.isNaN) { best = v; at = k }
                    } }
                    ys[r * ow + q] = best
                    am?[r * ow + q] = Int32(at)
                }
            }
        }
    }

    /// Max pooling of one plane for inference: the plane copied into a border of −∞ wide enough
    /// for every window (ceil mode included), then 8 outputs at a time, the taps in row-major
    /// order, stride 2 read as the even lanes of 16 (the first maximum, NaN wins, as below).
    static func maxPlanePadded(_ g: PoolGeometry, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        typealias V = SIMD8<Float>
        let oh = g.oh, ow = g.ow, sw = g.strideW, chunks = (ow + 7) / 8
        let hp = max(g.h + g.padTop + g.padBottom, (oh - 1) * g.strideH + g.spanH)
        let wp = max(g.w + g.padLeft + g.padRight, (chunks * 8 - 1) * sw + g.spanW + 1)
        let pad = Scratch.buffer(.columns, floats: hp * wp)
        pad.update(repeating: -.infinity, count: hp * wp)
        for r in 0..<g.h { (pad + (r + g.padTop) * wp + g.padLeft).update(from: x + r * g.w, count: g.w) }
        for r in 0..<oh {
            for c in 0..<chunks {
                var best = V(repeating: -.infinity)
                for i in 0..<g.kh {
                    let row = UnsafeRawPointer(pad + (r * g.strideH + i * g.dilationH) * wp)
                    for j in 0..<g.kw {
                        let off = (c * 8 * sw + j * g.dilationW) * 4
                        let v: V = sw == 1 ? row.loadUnaligned(fromByteOffset: off, as: V.self)
                                           : row.loadUnaligned(fromByteOffset: off, as: SIMD16<Float>.self).evenHalf
                        best.replace(with: v, where: (v .> best) .| ((v .!= v) .& (best .== best)))
                    }
                }
                let out = y + r * ow + c * 8
                if c * 8 + 8 <= ow { UnsafeMutableRawPointer(out).storeBytes(of: best, as: V.self) }
                else { for k in 0..<(ow - c * 8) { out[k] = best[k] } }
            }
        }
    }

    /// dx[argmax] += dy.
    public static func maxBackward(_ g: PoolGeometry, argmax: UnsafePointer<Int32>, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>,
                                   threads: Int = Threads.count) {
        let ohw = g.oh * g.ow, hw = g.h * g.w
        let pa = UnsafeSendable(argmax), pdy = UnsafeSendable(dy), pdx = UnsafeSendable(dx)
        Threads.parallelFor(g.n * g.c, threads: planeThreads(g, threads)) { p in
            let a = pa.value + p * ohw, d = pdy.value + p * ohw, out = pdx.value + p * hw
            for i in 0..<ohw { out[Int(a[i])] += d[i] }
        }
    }

    /// y = mean over each window (see `countIncludePad`).
    public static func avgForward(_ g: PoolGeometry, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, threads: Int = Threads.count) {
        precondition(g.problem == nil, "pool: \(g.problem!)")
        let oh = g.oh, ow = g.ow, hw = g.h * g.w
        let px = UnsafeSendable(x), py = UnsafeSendable(y)
        Threads.parallelFor(g.n * g.c, threads: planeThreads(g, threads)) { p in
            let xs = px.value + p * hw, ys = py.value + p * oh * ow
            for r in 0..<oh {
                for q in 0..<ow {
                    let (r0, i0, i1, q0, j0, j1) = g.window(r, q)
                    var s: Float = 0
                    for i in i0..<i1 { for j in j0..<j1 { s += xs[(r0 + i * g.dilationH) * g.w + q0 + j * g.dilationW] } }
                    ys[r * ow + q] = s / divisor(g, r0, i0, i1, q0, j0, j1)
                }
            }
        }
    }

    public static func avgBackward(_ g: PoolGeometry, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, threads: Int = Threads.count) {
        let oh = g.oh, ow = g.ow, hw = g.h * g.w
        let pdy = UnsafeSendable(dy), pdx = UnsafeSendable(dx)
        Threads.parallelFor(g.n * g.c, threads: planeThreads(g, threads)) { p in
            let d = pdy.value + p * oh * ow, out = pdx.value + p * hw
            for r in 0..<oh {
                for q in 0..<ow {
                    let (r0, i0, i1, q0, j0, j1) = g.window(r, q)
                    let v = d[r * ow + q] / divisor(g, r0, i0, i1, q0, j0, j1)
                    for i in i0..<i1 { for j in j0..<j1 { out[(r0 + i * g.dilationH) * g.w + q0 + j * g.dilationW] += v } }
                }
            }
        }
    }

    @inline(__always) static func divisor(_ g: PoolGeometry, _ r0: Int, _ i0: Int, _ i1: Int, _ q0: Int, _ j0: Int, _ j1: Int) -> Float {
        if !g.countIncludePad { return Float((i1 - i0) * (j1 - j0)) }
        // Taps inside the padded input (PyTorch: padding counts, overhang past it does not).
        @inline(__always) func taps(_ start: Int, _ k: Int, _ d: Int, _ limit: Int) -> Int {
            var c = 0
            for i in 0..<k where start + i * d < limit { c += 1 }
            return c
        }
        return Float(taps(r0, g.kh, g.dilationH, g.h + g.padBottom) * taps(q0, g.kw, g.dilationW, g.w + g.padRight))
    }

    /// y[n, c] = mean of plane (n, c); `planes` = N·C, `size` = H·W.
    public static func globalAvgForward(planes: Int, size: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        let inv = 1 / Float(size)
        for p in 0..<planes {
            let xs = x + p * size
            var s: Float = 0
            for i in 0..<size { s += xs[i] }
            y[p] = s * inv
        }
    }

    public static func globalAvgBackward(planes: Int, size: Int, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        let inv = 1 / Float(size)
        for p in 0..<planes {
            let v = dy[p] * inv, out = dx + p * size
            for i in 0..<size { out[i] += v }
        }
    }

    /// Threads only when there is enough work to pay for waking them.
    static func planeThreads(_ g: PoolGeometry, _ threads: Int) -> Int {
        g.n * g.c * g.h * g.w >= 1 << 16 ? threads : 1
    }
}
