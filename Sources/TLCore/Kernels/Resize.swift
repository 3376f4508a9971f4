/// Image geometry conversions for feeding a network what it expects: bilinear resizing and
/// channel conversion (gray ↔ RGB), on f32 planes.
///
/// Dimension legend: N images, C channels, H×W input size, OH×OW output size.
public enum Resize {
    /// Bilinear resampling of each H×W plane to OH×OW with half-pixel centers: output pixel
    /// (i, j) samples the input at ((i + ½)·H/OH − ½, (j + ½)·W/OW − ½), clamped to the border.
    /// This is PyTorch's `interpolate(mode="bilinear", align_corners=False)` and OpenCV's
    /// INTER_LINEAR (no antialiasing when shrinking). `planes` = N·C.
    public static func bilinear(planes: Int, h: Int, w: Int, oh: Int, ow: Int,
                                x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, threads: Int = Threads.count) {
        precondition(h > 0 && w > 0 && oh > 0 && ow > 0)
        // Per output column: the two source columns and the weight of the right one.
        let cols = taps(out: ow, size: w), rows = taps(out: oh, size: h)
        let px = UnsafeSendable(x), py = UnsafeSendable(y)
        cols.lo.withUnsafeBufferPointer { c0 in cols.hi.withUnsafeBufferPointer { c1 in cols.t.withUnsafeBufferPointer { ct in
            let c0 = UnsafeSendable(c0.baseAddress!), c1 = UnsafeSendable(c1.baseAddress!), ct = UnsafeSendable(ct.baseAddress!)
            Threads.parallelFor(planes, threads: planes * oh * ow >= 1 << 16 ? threads : 1) { p in
                let src = px.value + p * h * w, dst = py.value + p * oh * ow
                for i in 0..<oh {
                    let r0 = src + rows.lo[i] * w, r1 = src + rows.hi[i] * w, tr = rows.t[i]
                    let out = dst + i * ow
                    for j in 0..<ow {
                        let a = c0.value[j], b = c1.value[j], tc = ct.value[j]
                        let top = r0[a] + (r0[b] - r0[a]) * tc, bottom = r1[a] + (r1[b] - r1[a]) * tc
                        out[j] = top + (bottom - top) * tr
                    }
                }
            }
        } } }
    }

    /// Source index pairs and weights along one axis (see `bilinear`).
    static func taps(out: Int, size: Int) -> (lo: [Int], hi: [Int], t: [Float]) {
        var lo = [Int](repeating: 0, count: out), hi = lo, t = [Float](repeating: 0, count: out)
        let scale = Double(size) / Double(out)
        for i in 0..<out {
            let s = max((Double(i) + 0.5) * scale - 0.5, 0)
            let a = min(Int(s), size - 1)
            lo[i] = a; hi[i] = min(a + 1, size - 1); t[i] = Float(s - Double(a))
        }
        return (lo, hi, t)
    }

    /// The naive reference: the same formula per output pixel, in Double.
    public static func referenceBilinear(h: Int, w: Int, oh: Int, ow: Int, x: [Float]) -> [Float] {
        var y = [Float](repeating: 0, count: oh * ow)
        func at(_ r: Int, _ c: Int) -> Double { Double(x[min(max(r, 0), h - 1) * w + min(max(c, 0), w - 1)]) }
        for i in 0..<oh {
            for j in 0..<ow {
                let sy = max((Double(i) + 0.5) * Double(h) / Double(oh) - 0.5, 0)
                let sx = max((Double(j) + 0.5) * Double(w) / Double(ow) - 0.5, 0)
                let r = Int(sy), c = Int(sx), ty = sy - Double(r), tx = sx - Double(c)
                let top = at(r, c) * (1 - tx) + at(r, c + 1) * tx
                let bottom = at(r + 1, c) * (1 - tx) + at(r + 1, c + 1) * tx
                y[i * ow + j] = Float(top * (1 - ty) + bottom * ty)
            }
        }
        return y
    }

    /// Channel conversion of N images of `size` pixels: 1 → C copies the plane (gray to RGB);
    /// 3 → 1 takes ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B). Other pairs are not
    /// conversions anyone can define and are the caller's error to report.
    public static func channels(n: Int, from c: Int, to oc: Int, size: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        precondition(c == 1 || (c == 3 && oc == 1))
        for i in 0..<n {
            let src = x + i * c * size, dst = y + i * oc * size
            if c == 1 {
                for k in 0..<oc { (dst + k * size).update(from: src, count: size) }
            } else {
                for q in 0..<size { dst[q] = 0.299 * src[q] + 0.587 * src[size + q] + 0.114 * src[2 * size + q] }
            }
        }
    }
}
