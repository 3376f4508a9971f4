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
    public var oh: Int { PoolGeometry.outSize(h, kh, strideH, padTop, padBottom, ceilMode) }
    public var ow: Int { PoolGeometry.outSize(w, kw, strideW, padLeft, padRight, ceilMode) }

    public var problem: String? {
        if n < 0 || c <= 0 || h <= 0 || w <= 0 || kh <= 0 || kw <= 0 || strideH <= 0 || strideW <= 0 { return "sizes must be positive" }
        if padTop < 0 || padLeft < 0 || padBottom < 0 || padRight < 0 { return "padding must not be negative" }
        if padTop >= kh || padBottom >= kh || padLeft >= kw || padRight >= kw { return "padding must be smaller than the kernel" }
        if h + padTop + padBottom < kh || w + padLeft + padRight < kw { return "kernel \(kh)x\(kw) is larger than the padded input \(h)x\(w)" }
        return nil
    }

    /// Window rows [r0, r1) and columns [q0, q1) of output (r, q), clipped to the image.
    @inline(__always) func window(_ r: Int, _ q: Int) -> (Int, Int, Int, Int) {
        let r0 = r * strideH - padTop, q0 = q * strideW - padLeft
        return (max(r0, 0), min(r0 + kh, h), max(q0, 0), min(q0 + kw, w))
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
        let simple2x2 = g.kh == 2 && g.kw == 2 && g.strideH == 2 && g.strideW == 2 && g.padTop == 0 && g.padLeft == 0 && !g.ceilMode
        Threads.parallelFor(g.n * g.c, threads: planeThreads(g, threads)) { p in
            let xs = px.value + p * hw, ys = py.value + p * oh * ow
            let am = pa.value.map { $0 + p * oh * ow }
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
                    let (r0, r1, q0, q1) = g.window(r, q)
                    var best = -Float.infinity, at = r0 * g.w + q0
                    for i in r0..<r1 { for j in q0..<q1 {
                        let v = xs[i * g.w + j]
                        if v > best || (v.isNaN && !best.isNaN) { best = v; at = i * g.w + j }
                    } }
                    ys[r * ow + q] = best
                    am?[r * ow + q] = Int32(at)
                }
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
                    let (r0, r1, q0, q1) = g.window(r, q)
                    var s: Float = 0
                    for i in r0..<r1 { for j in q0..<q1 { s += xs[i * g.w + j] } }
                    ys[r * ow + q] = s / divisor(g, r, q, r0, r1, q0, q1)
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
                    let (r0, r1, q0, q1) = g.window(r, q)
                    let v = d[r * ow + q] / divisor(g, r, q, r0, r1, q0, q1)
                    for i in r0..<r1 { for j in q0..<q1 { out[i * g.w + j] += v } }
                }
            }
        }
    }

    @inline(__always) static func divisor(_ g: PoolGeometry, _ r: Int, _ q: Int, _ r0: Int, _ r1: Int, _ q0: Int, _ q1: Int) -> Float {
        if !g.countIncludePad { return Float((r1 - r0) * (q1 - q0)) }
        // The window clipped to the padded input (PyTorch: padding counts, overhang past it does not).
        let a0 = r * g.strideH - g.padTop, b0 = q * g.strideW - g.padLeft
        let a1 = min(a0 + g.kh, g.h + g.padBottom), b1 = min(b0 + g.kw, g.w + g.padRight)
        return Float((a1 - a0) * (b1 - b0))
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
