/// Depthwise convolution forward (channel multiplier 1), channels last.
///
/// Keeping eight neighbouring outputs of one row in a register (the previous method, plane by
/// plane) leaves most lanes past the row's end on the 8×8, 4×4 and 2×2 planes of a network's
/// late layers. Here each image is transposed to channels last with a zero border
/// ([HP][WP][C], C rounded up to 8), so the eight lanes are eight channels of one output pixel
/// and every lane counts; four pixels of a row share each weight load. The output is
/// transposed back to [C][OH][OW]. One thread, GFLOP/s, plane by plane → channels last:
/// 672 ch 4×4 5×5 3.7 → 16; 240 ch 8×8 5×5 8.0 → 20.6; 144 ch 32×32 3×3 6.7 → 10.4;
/// 32 ch 112×112 3×3 6.6 → 11.5; 96 ch 112×112 3×3 stride 2 4.6 → 5.5.
///
/// Every output starts from its bias and adds the taps in row-major order with fused
/// multiply-adds (padding taps add exact zeros); images are independent, so an image's output
/// is the bits it gets alone.
extension Conv {
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

    static func depthwiseImageChannelsLast(_ g: ConvGeometry, x: UnsafePointer<Float>, wt: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                                           activation act: FusedActivation?) {
        typealias V = SIMD8<Float>
        let c8 = (g.c + 7) / 8 * 8, taps = g.kh * g.kw, chunks = c8 / 8
        let hp = g.h + g.padTop + g.padBottom, wp = g.w + g.padLeft + g.padRight
        let oh = g.oh, ow = g.ow, sh = g.strideH, sw = g.strideW, dh = g.dilationH, dw = g.dilationW
        let padded = Scratch.buffer(.columns, floats: hp * wp * c8)
        let out = Scratch.buffer(.output, floats: oh * ow * c8)
        padded.update(repeating: 0, count: hp * wp * c8)
        // Eight planes at a time: eight sequential read streams, one 32-byte write per pixel.
        let hw = g.h * g.w
        for ch in 0..<chunks {
            let full = ch * 8 + 8 <= g.c
            for r in 0..<g.h {
                let dst = UnsafeMutableRawPointer(padded + ((r + g.padTop) * wp + g.padLeft) * c8 + ch * 8)
                if full {
                    let s0 = x + ch * 8 * hw + r * g.w
                    for q in 0..<g.w {
                        let s = s0 + q
                        let v = V(s[0], s[hw], s[2 * hw], s[3 * hw], s[4 * hw], s[5 * hw], s[6 * hw], s[7 * hw])
                        dst.storeBytes(of: v, toByteOffset: q * c8 * 4, as: V.self)
                    }
                } else {
                    for c in (ch * 8)..<g.c {
                        let src = x + c * hw + r * g.w, d = padded + ((r + g.padTop) * wp + g.padLeft) * c8 + c
                        for q in 0..<g.w { d[q * c8] = src[q] }
                    }
                }
            }
        }
        let bias = wt + taps * c8
        let colStride = sw * c8 * 4
        for r in 0..<oh {
            for ch in 0..<chunks {
                let b = UnsafeRawPointer(bias + ch * 8).loadUnaligned(as: V.self)
                var q = 0
                // Four pixels of the row at a time, sharing each weight load.
                while q + 4 <= ow {
                    var a0 = b, a1 = b, a2 = b, a3 = b
                    for i in 0..<g.kh {
                        let rowp = UnsafeRawPointer(padded + ((r * sh + i * dh) * wp + q * sw) * c8 + ch * 8)
                        for j in 0..<g.kw {
                            let w = UnsafeRawPointer(wt + (i * g.kw + j) * c8 + ch * 8).loadUnaligned(as: V.self)
                            let p = rowp + j * dw * c8 * 4
                            a0.addProduct(w, p.loadUnaligned(as: V.self))
                            a1.addProduct(w, p.loadUnaligned(fromByteOffset: colStride, as: V.self))
                            a2.addProduct(w, p.loadUnaligned(fromByteOffset: 2 * colStride, as: V.self))
                            a3.addProduct(w, p.loadUnaligned(fromByteOffset: 3 * colStride, as: V.self))
                        }
                    }
                    let o = UnsafeMutableRawPointer(out + (r * ow + q) * c8 + ch * 8)
                    o.storeBytes(of: a0, as: V.self)
                    o.storeBytes(of: a1, toByteOffset: c8 * 4, as: V.self)
                    o.storeBytes(of: a2, toByteOffset: 2 * c8 * 4, as: V.self)
                    o.storeBytes(of: a3, toByteOffset: 3 * c8 * 4, as: V.self)
                    q += 4
                }
                while q < ow {
                    var a0 = b
                    for i in 0..<g.kh {
                        let rowp = UnsafeRawPointer(padded + ((r * sh + i * dh) * wp + q * sw) * c8 + ch * 8)
                        for j in 0..<g.kw {
                            let w = UnsafeRawPointer(wt + (i * g.kw + j) * c8 + ch * 8).loadUnaligned(as: V.self)
                            a0.addProduct(w, (rowp + j * dw * c8 * 4).loadUnaligned(as: V.self))
                        }
                    }
                    UnsafeMutableRawPointer(out + (r * ow + q) * c8 + ch * 8).storeBytes(of: a0, as: V.self)
                    q += 1
                }
            }
        }
        let ohw = oh * ow
        for ch in 0..<chunks {
            if ch * 8 + 8 <= g.c {
                let d = y + ch * 8 * ohw
                for p in 0..<ohw {
                    let v = UnsafeRawPointer(out + p * c8 + ch * 8).load(as: V.self)
                    d[p] = v[0]; d[ohw + p] = v[1]; d[2 * ohw + p] = v[2]; d[3 * ohw + p] = v[3]
                    d[4 * ohw + p] = v[4]; d[5 * ohw + p] = v[5]; d[6 * ohw + p] = v[6]; d[7 * ohw + p] = v[7]
                }
                act?.apply(8 * ohw, d)
            } else {
                for c in (ch * 8)..<g.c {
                    let dst = y + c * ohw, src = out + c
                    for p in 0..<ohw { dst[p] = src[p * c8] }
                    act?.apply(ohw, dst)
                }
            }
        }
    }
}
