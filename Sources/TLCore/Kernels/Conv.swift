/// 2-D convolution over NCHW f32 tensors, forward and backward, with stride, padding (each side
/// on its own, for ONNX's asymmetric "SAME" pads), dilation and groups.
///
/// Dimension legend: N batch, C input channels, H×W input size, OC output channels, KH×KW
/// kernel, OH×OW output size, G groups (C/G and OC/G channels per group).
///
/// Layouts: x [N, C, H, W], weight [OC, C/G, KH, KW] (PyTorch's and ONNX's), bias [OC],
/// y [N, OC, OH, OW].
///
/// Method, chosen per shape:
/// * im2col + GEMM: each image's patches become a (C/G·KH·KW) × (OH·OW) matrix and one GEMM per
///   group multiplies the weights by it. Images are split across threads (each thread runs a
///   single-threaded GEMM on its own column buffer): on the small per-image matrices of a CNN
///   that beats threading inside the GEMM. With fewer images than threads, the GEMM is threaded.
/// * 1×1, stride 1, no padding: the image already is the column matrix; no copy.
/// * depthwise (G = C = OC): direct loops, NCHW on wide planes and channels last on small ones
///   (ConvDepthwise.swift); a GEMM with one output row would waste the tile.
///
/// Backward accumulates (`+=`) into dx, dweight and dbias, so the caller zeroes them once and
/// residual branches add up for free. The weight gradient sums per-image products in a fixed
/// number of partial sums (independent of the thread count), added in a fixed order: results are
/// bit-identical for any thread count.
public struct ConvGeometry: Equatable, Sendable {
    public var n, c, h, w: Int
    public var oc, kh, kw: Int
    public var strideH = 1, strideW = 1
    public var padTop = 0, padLeft = 0, padBottom = 0, padRight = 0
    public var dilationH = 1, dilationW = 1
    public var groups = 1

    public init(n: Int, c: Int, h: Int, w: Int, oc: Int, kh: Int, kw: Int, stride: Int = 1, pad: Int = 0, dilation: Int = 1, groups: Int = 1) {
        self.n = n; self.c = c; self.h = h; self.w = w; self.oc = oc; self.kh = kh; self.kw = kw
        strideH = stride; strideW = stride; padTop = pad; padLeft = pad; padBottom = pad; padRight = pad
        dilationH = dilation; dilationW = dilation; self.groups = groups
    }

    public var oh: Int { (h + padTop + padBottom - dilationH * (kh - 1) - 1) / strideH + 1 }
    public var ow: Int { (w + padLeft + padRight - dilationW * (kw - 1) - 1) / strideW + 1 }
    public var cg: Int { c / groups }
    public var ocg: Int { oc / groups }
    /// Rows of the column matrix: C/G · KH · KW.
    public var kdim: Int { cg * kh * kw }
    public var isPointwise: Bool {
        kh == 1 && kw == 1 && strideH == 1 && strideW == 1 && padTop == 0 && padLeft == 0 && padBottom == 0 && padRight == 0
    }
    public var isDepthwise: Bool { groups == c && oc == c && groups > 1 }

    /// For kernel column j: the input column offset dj = j·dw − padLeft and the output columns
    /// [lo, hi) whose input column ow·sw + dj lies inside the image (0 ≤ · < W).
    @inline(__always) func columnSpan(_ j: Int) -> (Int, Int, Int) {
        let dj = j * dilationW - padLeft
        let lo = dj >= 0 ? 0 : min(ow, (-dj + strideW - 1) / strideW)
        let hi = max(lo, min(ow, (w - dj + strideW - 1) / strideW))
        return (dj, lo, hi)
    }

    /// Why this geometry is invalid, or nil.
    public var problem: String? {
        if n < 0 || c <= 0 || h <= 0 || w <= 0 || oc <= 0 || kh <= 0 || kw <= 0 { return "sizes must be positive" }
        if strideH <= 0 || strideW <= 0 || dilationH <= 0 || dilationW <= 0 { return "stride and dilation must be positive" }
        if padTop < 0 || padLeft < 0 || padBottom < 0 || padRight < 0 { return "padding must not be negative" }
        if groups <= 0 || c % groups != 0 || oc % groups != 0 { return "groups (\(groups)) must divide input (\(c)) and output (\(oc)) channels" }
        if h + padTop + padBottom < dilationH * (kh - 1) + 1 || w + padLeft + padRight < dilationW * (kw - 1) + 1 { return "kernel \(kh)x\(kw) is larger than the padded input \(h)x\(w)" }
        return nil
    }
}

/// An activation applied to a convolution's outputs as they are stored (inference), with the
/// same arithmetic as the separate layer: relu max(v, 0), clip min(max(v, lo), hi).
public enum FusedActivation: Equatable, Sendable {
    case relu
    case clip(Float, Float)
    @inline(__always) public func apply(_ v: Float) -> Float {
        switch self {
        case .relu: return max(v, 0)
        case .clip(let lo, let hi): return min(max(v, lo), hi)
        }
    }
    /// The same on sixteen floats, written with comparisons so that −0 and NaN come out as the
    /// scalar `max`/`min` make them (`max(v, 0)` is `0 >= v ? 0 : v`). One concrete function per
    /// width on purpose: a single generic `apply<V: SIMD>` ran EfficientNet-Lite0 at half speed
    /// (the generic SIMD operations were not turned into vector code).
    @inline(__always) public func apply(_ v: SIMD16<Float>) -> SIMD16<Float> {
        switch self {
        case .relu: return v.replacing(with: 0, where: v .<= 0)
        case .clip(let lo, let hi):
            let t = v.replacing(with: lo, where: v .<= lo)
            return t.replacing(with: hi, where: hi .< t)
        }
    }
    /// The same on eight floats.
    @inline(__always) public func apply(_ v: SIMD8<Float>) -> SIMD8<Float> {
        switch self {
        case .relu: return v.replacing(with: 0, where: v .<= 0)
        case .clip(let lo, let hi):
            let t = v.replacing(with: lo, where: v .<= lo)
            return t.replacing(with: hi, where: hi .< t)
        }
    }
    /// The same on four floats.
    @inline(__always) public func apply(_ v: SIMD4<Float>) -> SIMD4<Float> {
        switch self {
        case .relu: return v.replacing(with: 0, where: v .<= 0)
        case .clip(let lo, let hi):
            let t = v.replacing(with: lo, where: v .<= lo)
            return t.replacing(with: hi, where: hi .< t)
        }
    }
    /// The activation as a clamp to [lo, hi], for kernels that keep both in registers: relu is
    /// [0, +∞] (the same bits: −0 becomes +0, NaN stays NaN).
    public var bounds: (lo: Float, hi: Float) {
        switch self {
        case .relu: return (0, .infinity)
        case .clip(let lo, let hi): return (lo, hi)
        }
    }
    /// Applies it to n floats in place, eight at a time (the scalar `max`/`min` loop had been a
    /// twentieth of EfficientNet-Lite0's time at 64×64).
    public func apply(_ n: Int, _ y: UnsafeMutablePointer<Float>) {
        typealias V = SIMD8<Float>
        var i = 0
        while i + 8 <= n {
            let p = UnsafeMutableRawPointer(y + i)
            p.storeBytes(of: apply(p.loadUnaligned(as: V.self)), as: V.self)
            i += 8
        }
        while i < n { y[i] = apply(y[i]); i += 1 }
    }
}

public enum Conv {
    /// Partial sums of the weight gradient: a constant, so results do not depend on threads.
    static let weightPartials = 4

    /// Floats of the column matrices of all images (what `columns` must hold).
    public static func columnCount(_ g: ConvGeometry) -> Int { g.isPointwise || g.isDepthwise ? 0 : g.n * g.groups * g.kdim * g.oh * g.ow }

    /// y = act(conv(x, weight) + bias). `bias` and `activation` may be nil. With `columns` (of
    /// `columnCount(g)` floats), the im2col matrices are kept there for `backward` to reuse
    /// (training). `packedWeights`: `weight` already packed by `packWeights` (used on the
    /// inference path, where `packedWeightCount(g)` > 0).
    public static func forward(_ g: ConvGeometry, x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                               y: UnsafeMutablePointer<Float>, columns: UnsafeMutablePointer<Float>? = nil, activation: FusedActivation? = nil,
                               packedWeights: UnsafePointer<Float>? = nil, threads: Int = Threads.count) {
        precondition(g.problem == nil, "conv: \(g.problem!)")
        let inSize = g.c * g.h * g.w, outHW = g.oh * g.ow, outSize = g.oc * outHW
        if g.isDepthwise {
            depthwiseForward(g, x: x, weight: weight, bias: bias, y: y, activation: activation, threads: threads)
            return
        }
        if columns == nil && implicitApplies(g) {
            forwardImplicit(g, x: x, weight: weight, bias: bias, y: y, packedWeights: packedWeights, activation: activation, threads: threads)
            return
        }
        if let act = activation {
            forward(g, x: x, weight: weight, bias: bias, y: y, columns: columns, threads: threads)
            act.apply(g.n * outSize, y)
            return
        }
        let px = UnsafeSendable(x), pw = UnsafeSendable(weight), pb = UnsafeSendable(bias), py = UnsafeSendable(y)
        if columns == nil && outHW < 64 && g.n > 1 {
            // Small outputs (the late layers of a network on small images): one GEMM per image
            // would have a handful of columns and pack the whole weight matrix again for each.
            // Images go side by side instead, about 256 columns per GEMM; per output element
            // the arithmetic is the same, so are the bits.
            let per = min(g.n, (256 + outHW - 1) / outHW), parts = (g.n + per - 1) / per
            let inner = parts >= threads ? 1 : threads
            Threads.parallelFor(parts, threads: parts >= threads ? threads : 1) { t in
                let i0 = t * per, cnt = min(per, g.n - i0), ncol = cnt * outHW
                let cols = Scratch.buffer(.columns, floats: g.groups * g.kdim * ncol)
                for j in 0..<cnt {
                    let xi = px.value + (i0 + j) * inSize
                    for gi in 0..<g.groups {
                        let dst = cols + gi * g.kdim * ncol + j * outHW
                        if g.isPointwise {
                            for c in 0..<g.cg { (dst + c * ncol).update(from: xi + (gi * g.cg + c) * outHW, count: outHW) }
                        } else {
                            im2col(g, x: xi + gi * g.cg * g.h * g.w, col: dst, ld: ncol)
                        }
                    }
                }
                let out = Scratch.buffer(.output, floats: g.oc * ncol)
                for gi in 0..<g.groups {
                    GEMM.sgemm(transA: false, transB: false, m: g.ocg, n: ncol, k: g.kdim, alpha: 1,
                               a: pw.value + gi * g.ocg * g.kdim, lda: g.kdim, b: cols + gi * g.kdim * ncol, ldb: ncol,
                               beta: 0, c: out + gi * g.ocg * ncol, ldc: ncol, threads: inner)
                }
                for j in 0..<cnt {
                    let yi = py.value + (i0 + j) * outSize
                    for o in 0..<g.oc { storeOutputs(yi + o * outHW, out + o * ncol + j * outHW, outHW, bias: pb.value?[o], nil) }
                }
            }
            return
        }
        let perImageThreads = g.n >= threads ? 1 : threads
        let pcols = UnsafeSendable(columns)
        Threads.parallelFor(g.n, threads: g.n >= threads ? threads : 1) { i in
            let xi = px.value + i * inSize, yi = py.value + i * outSize
            let col: UnsafePointer<Float>
            if g.isPointwise { col = xi } else {
                let per = g.groups * g.kdim * outHW
                let buf = pcols.value.map { $0 + i * per } ?? Scratch.buffer(.columns, floats: per)
                for gi in 0..<g.groups { im2col(g, x: xi + gi * g.cg * g.h * g.w, col: buf + gi * g.kdim * outHW) }
                col = UnsafePointer(buf)
            }
            for gi in 0..<g.groups {
                GEMM.sgemm(transA: false, transB: false, m: g.ocg, n: outHW, k: g.kdim, alpha: 1,
                           a: pw.value + gi * g.ocg * g.kdim, lda: g.kdim, b: col + gi * g.kdim * outHW, ldb: outHW,
                           beta: 0, c: yi + gi * g.ocg * outHW, ldc: outHW, threads: perImageThreads)
            }
            if let b = pb.value {
                for o in 0..<g.oc { storeOutputs(yi + o * outHW, yi + o * outHW, outHW, bias: b[o], nil) }
            }
        }
    }

    /// dst[0..<n] = act(src[p] + bias), the bias and the activation when given (src may be dst):
    /// how every forward path finishes a row of outputs.
    @inline(__always)
    static func storeOutputs(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int, bias: Float?, _ act: FusedActivation?) {
        guard let act else {
            if let bo = bias { for p in 0..<n { dst[p] = src[p] + bo } } else if UnsafePointer(dst) != src { dst.update(from: src, count: n) }
            return
        }
        // Bias and activation in one pass, eight at a time (rows of 4 to 49 outputs).
        typealias V = SIMD8<Float>
        let bo = bias ?? 0, bv = V(repeating: bo), hasBias = bias != nil
        let (lo, hi) = act.bounds, lov = V(repeating: lo), hiv = V(repeating: hi)
        var p = 0
        while p + 8 <= n {
            var v = UnsafeRawPointer(src + p).loadUnaligned(as: V.self)
            if hasBias { v += bv }
            v = v.replacing(with: lov, where: v .<= lov)
            UnsafeMutableRawPointer(dst + p).storeBytes(of: v.replacing(with: hiv, where: hiv .< v), as: V.self)
            p += 8
        }
        if p + 4 <= n {
            let v = UnsafeRawPointer(src + p).loadUnaligned(as: SIMD4<Float>.self)
            UnsafeMutableRawPointer(dst + p).storeBytes(of: act.apply(hasBias ? v + SIMD4(repeating: bo) : v), as: SIMD4<Float>.self)
            p += 4
        }
        while p < n { dst[p] = act.apply(hasBias ? src[p] + bo : src[p]); p += 1 }
    }

    /// Accumulates the gradients: dx += ∂L/∂x (if dx is given), dweight += ∂L/∂w, dbias += ∂L/∂b
    /// (if given), from dy = ∂L/∂y. Frozen layers pass dweight = nil and skip that work.
    /// `columns`: the matrices a training `forward` kept, or nil to recompute them.
    public static func backward(_ g: ConvGeometry, x: UnsafePointer<Float>, weight: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                                dx: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?, dbias: UnsafeMutablePointer<Float>?,
                                columns: UnsafePointer<Float>? = nil, threads: Int = Threads.count) {
        precondition(g.problem == nil, "conv: \(g.problem!)")
        let inSize = g.c * g.h * g.w, outHW = g.oh * g.ow, outSize = g.oc * outHW
        if let db = dbias {
            for o in 0..<g.oc {
                var s: Float = 0
                for i in 0..<g.n {
                    let row = dy + i * outSize + o * outHW
                    var t: Float = 0
                    for p in 0..<outHW { t += row[p] }
                    s += t
                }
                db[o] += s
            }
        }
        if dx == nil && dweight == nil { return }
        if g.isDepthwise {
            depthwiseBackward(g, x: x, w: weight, dy: dy, dx: dx, dw: dweight, threads: threads)
            return
        }
        let wsize = g.oc * g.kdim
        let parts = max(1, min(g.n, weightPartials))
        var partial = [Float](repeating: 0, count: dweight == nil ? 0 : parts * wsize)
        let inner = g.n >= threads ? 1 : threads
        partial.withUnsafeMutableBufferPointer { pp in
            let px = UnsafeSendable(x), pw = UnsafeSendable(weight), pdy = UnsafeSendable(dy), pdx = UnsafeSendable(dx)
            let ppart = UnsafeSendable(pp.baseAddress), pcols = UnsafeSendable(columns)
            Threads.parallelFor(parts, threads: g.n >= threads ? threads : 1) { part in
                let i0 = part * g.n / parts, i1 = (part + 1) * g.n / parts
                for i in i0..<i1 {
                    let xi = px.value + i * inSize, dyi = pdy.value + i * outSize
                    if let dwp = ppart.value {
                        let dwPart = dwp + part * wsize
                        let col: UnsafePointer<Float>
                        if g.isPointwise { col = xi } else if let kept = pcols.value {
                            col = kept + i * g.groups * g.kdim * outHW
                        } else {
                            let buf = Scratch.buffer(.columns, floats: g.groups * g.kdim * outHW)
                            for gi in 0..<g.groups { im2col(g, x: xi + gi * g.cg * g.h * g.w, col: buf + gi * g.kdim * outHW) }
                            col = UnsafePointer(buf)
                        }
                        // dW_g (OC/G × K) += dy_g (OC/G × OHW) · col_gᵀ (OHW × K)
                        for gi in 0..<g.groups {
                            GEMM.sgemm(transA: false, transB: true, m: g.ocg, n: g.kdim, k: outHW, alpha: 1,
                                       a: dyi + gi * g.ocg * outHW, lda: outHW, b: col + gi * g.kdim * outHW, ldb: outHW,
                                       beta: 1, c: dwPart + gi * g.ocg * g.kdim, ldc: g.kdim, threads: inner)
                        }
                    }
                    if let dxa = pdx.value {
                        let dxi = dxa + i * inSize
                        for gi in 0..<g.groups {
                            let wg = pw.value + gi * g.ocg * g.kdim, dyg = dyi + gi * g.ocg * outHW
                            if g.isPointwise {
                                // dx_g (C/G × HW) += W_gᵀ (C/G × OC/G) · dy_g (OC/G × HW)
                                GEMM.sgemm(transA: true, transB: false, m: g.kdim, n: outHW, k: g.ocg, alpha: 1,
                                           a: wg, lda: g.kdim, b: dyg, ldb: outHW, beta: 1, c: dxi + gi * g.cg * g.h * g.w, ldc: outHW, threads: inner)
                            } else {
                                let dcol = Scratch.buffer(.reduce, floats: g.kdim * outHW)
                                GEMM.sgemm(transA: true, transB: false, m: g.kdim, n: outHW, k: g.ocg, alpha: 1,
                                           a: wg, lda: g.kdim, b: dyg, ldb: outHW, beta: 0, c: dcol, ldc: outHW, threads: inner)
                                col2im(g, col: dcol, dx: dxi + gi * g.cg * g.h * g.w)
                            }
                        }
                    }
                }
            }
        }
        if let dw = dweight {
            for p in 0..<parts { for j in 0..<wsize { dw[j] += partial[p * wsize + j] } }
        }
    }

    /// The patches of one group of one image: col[(c·KH + i)·KW + j][oh·OW + ow] =
    /// x[c, oh·sh − padTop + i·dh, ow·sw − padLeft + j·dw], zero outside the image.
    /// The column matrix of one image: row (c, i, j) holds the input pixels tap (i, j) of
    /// channel c reads for every output pixel. Rows are `ld` floats apart (default OH·OW; more
    /// when several images' columns sit side by side).
    static func im2col(_ g: ConvGeometry, x: UnsafePointer<Float>, col: UnsafeMutablePointer<Float>, ld: Int? = nil) {
        let oh = g.oh, ow = g.ow, step = ld ?? oh * ow
        var row = col
        for c in 0..<g.cg {
            let plane = x + c * g.h * g.w
            for i in 0..<g.kh {
                for j in 0..<g.kw {
                    let (dj, lo, hi) = g.columnSpan(j)
                    for r in 0..<oh {
                        let ih = r * g.strideH - g.padTop + i * g.dilationH
                        let out = row + r * ow
                        if ih < 0 || ih >= g.h { for q in 0..<ow { out[q] = 0 }; continue }
                        let src = plane + ih * g.w + dj
                        for q in 0..<lo { out[q] = 0 }
                        // Rows are short (OW ≈ 7..56): a plain loop beats a memmove call.
                        if g.strideW == 1 { for q in lo..<hi { out[q] = src[q] } }
                        else { for q in lo..<hi { out[q] = src[q * g.strideW] } }
                        for q in hi..<ow { out[q] = 0 }
                    }
                    row += step
                }
            }
        }
    }

    /// The adjoint of im2col: dx[c, ih, iw] += every column entry that was read from it.
    static func col2im(_ g: ConvGeometry, col: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        let oh = g.oh, ow = g.ow
        var row = col
        for c in 0..<g.cg {
            let plane = dx + c * g.h * g.w
            for i in 0..<g.kh {
                for j in 0..<g.kw {
                    let (dj, lo, hi) = g.columnSpan(j)
                    for r in 0..<oh {
                        let ih = r * g.strideH - g.padTop + i * g.dilationH
                        if ih < 0 || ih >= g.h { continue }
                        let src = row + r * ow
                        let dst = plane + ih * g.w + dj
                        if g.strideW == 1 { for q in lo..<hi { dst[q] += src[q] } }
                        else { for q in lo..<hi { dst[q * g.strideW] += src[q] } }
                    }
                    row += oh * ow
                }
            }
        }
    }

    static func depthwiseBackward(_ g: ConvGeometry, x: UnsafePointer<Float>, w: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                                  dx: UnsafeMutablePointer<Float>?, dw: UnsafeMutablePointer<Float>?, threads: Int) {
        let oh = g.oh, ow = g.ow, hw = g.h * g.w, khw = g.kh * g.kw
        // Per channel: images in order (the weight gradient of channel c is one thread's sum).
        let px = UnsafeSendable(x), pw = UnsafeSendable(w), pdy = UnsafeSendable(dy), pdx = UnsafeSendable(dx), pdw = UnsafeSendable(dw)
        Threads.parallelFor(g.c, threads: threads) { c in
            for n in 0..<g.n {
                let plane = n * g.c + c
                let xs = px.value + plane * hw, dys = pdy.value + plane * oh * ow
                for i in 0..<g.kh {
                    for j in 0..<g.kw {
                        let (dj, lo, hi) = g.columnSpan(j)
                        let wv = pw.value[c * khw + i * g.kw + j]
                        var s: Float = 0
                        for r in 0..<oh {
                            let ih = r * g.strideH - g.padTop + i * g.dilationH
                            if ih < 0 || ih >= g.h { continue }
                            let src = xs + ih * g.w + dj, d = dys + r * ow
                            for q in lo..<hi { s += d[q] * src[q * g.strideW] }
                            if let dxa = pdx.value {
                                let dst = dxa + plane * hw + ih * g.w + dj
                                for q in lo..<hi { dst[q * g.strideW] += wv * d[q] }
                            }
                        }
                        if let d = pdw.value { d[c * khw + i * g.kw + j] += s }
                    }
                }
            }
        }
    }

    // MARK: reference

    /// Direct 7-loop convolution in double precision: the reference the tests compare against.
    public static func referenceForward(_ g: ConvGeometry, x: [Float], weight: [Float], bias: [Float]?) -> [Float] {
        var y = [Float](repeating: 0, count: g.n * g.oc * g.oh * g.ow)
        for n in 0..<g.n { for o in 0..<g.oc {
            let gi = o / g.ocg
            for r in 0..<g.oh { for q in 0..<g.ow {
                var s = Double(bias?[o] ?? 0)
                for c in 0..<g.cg { for i in 0..<g.kh { for j in 0..<g.kw {
                    let ih = r * g.strideH - g.padTop + i * g.dilationH, iw = q * g.strideW - g.padLeft + j * g.dilationW
                    if ih < 0 || ih >= g.h || iw < 0 || iw >= g.w { continue }
                    s += Double(weight[((o * g.cg + c) * g.kh + i) * g.kw + j]) * Double(x[((n * g.c + gi * g.cg + c) * g.h + ih) * g.w + iw])
                } } }
                y[((n * g.oc + o) * g.oh + r) * g.ow + q] = Float(s)
            } }
        } }
        return y
    }

    /// Direct backward in double precision: (dx, dweight, dbias).
    public static func referenceBackward(_ g: ConvGeometry, x: [Float], weight: [Float], dy: [Float]) -> ([Float], [Float], [Float]) {
        var dx = [Double](repeating: 0, count: x.count), dw = [Double](repeating: 0, count: weight.count), db = [Double](repeating: 0, count: g.oc)
        for n in 0..<g.n { for o in 0..<g.oc {
            let gi = o / g.ocg
            for r in 0..<g.oh { for q in 0..<g.ow {
                let d = Double(dy[((n * g.oc + o) * g.oh + r) * g.ow + q])
                db[o] += d
                for c in 0..<g.cg { for i in 0..<g.kh { for j in 0..<g.kw {
                    let ih = r * g.strideH - g.padTop + i * g.dilationH, iw = q * g.strideW - g.padLeft + j * g.dilationW
                    if ih < 0 || ih >= g.h || iw < 0 || iw >= g.w { continue }
                    let xi = ((n * g.c + gi * g.cg + c) * g.h + ih) * g.w + iw, wi = ((o * g.cg + c) * g.kh + i) * g.kw + j
                    dx[xi] += Double(weight[wi]) * d
                    dw[wi] += Double(x[xi]) * d
                } } }
            } }
        } }
        return (dx.map { Float($0) }, dw.map { Float($0) }, db.map { Float($0) })
    }
}
