// tl-bench: kernel figures for `make bench` (Tests/bench/bench.sh), each beside its peer in the
// same process where one exists (OpenBLAS through dlopen). Prints; asserts nothing.
import Glibc
import TLCore
import TLNN
import TLMethods

func f1(_ x: Double) -> String { var b = [CChar](repeating: 0, count: 32); _ = withVaList([x]) { vsnprintf(&b, 32, "%.1f", $0) }; return String(cString: b) }
func f2(_ x: Double) -> String { var b = [CChar](repeating: 0, count: 32); _ = withVaList([x]) { vsnprintf(&b, 32, "%.2f", $0) }; return String(cString: b) }
func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : String(repeating: " ", count: w - s.count) + s }
func padr(_ s: String, _ w: Int) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }

/// Best time of `reps` runs after a warm-up, repeated until `minTime` has passed.
func best(minTime: Double = 0.3, _ body: () -> Void) -> Double {
    body()
    var b = Double.infinity, total = 0.0, n = 0
    while total < minTime || n < 3 {
        let t = monotonicSeconds(); body(); let d = monotonicSeconds() - t
        b = min(b, d); total += d; n += 1
    }
    return b
}

func randomBuffer(_ n: Int, seed: UInt64) -> UnsafeMutablePointer<Float> {
    let p = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
    var r = RNG(seed: seed)
    for i in 0..<n { p[i] = r.uniform() - 0.5 }
    return p
}

/// FMA peak: independent 8-wide FMA chains (10 per thread, enough to cover latency).
@inline(never) func fmaLoop(_ iters: Int) -> Float {
    typealias V = SIMD8<Float>
    var a0 = V(repeating: 1), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0
    let x = V(repeating: 0.9999), y = V(repeating: 0.0001)
    for _ in 0..<iters {
        a0 = a0.addingProduct(x, y); a1 = a1.addingProduct(x, y); a2 = a2.addingProduct(x, y); a3 = a3.addingProduct(x, y)
        a4 = a4.addingProduct(x, y); a5 = a5.addingProduct(x, y); a6 = a6.addingProduct(x, y); a7 = a7.addingProduct(x, y)
        a8 = a8.addingProduct(x, y); a9 = a9.addingProduct(x, y)
    }
    return (a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9).sum()
}

func fmaPeak(threads: Int) -> Double {
    let iters = 20_000_000
    let t = best(minTime: 0.2) { Threads.parallelFor(threads, threads: threads) { _ in _ = fmaLoop(iters) } }
    return Double(threads) * Double(iters) * 10 * 16 / t / 1e9
}

let gemmShapes: [(Int, Int, Int, Bool, Bool, String)] = [
    (1024, 1024, 1024, false, false, "NN"), (256, 256, 256, false, false, "NN"), (2048, 2048, 2048, false, false, "NN"),
    (64, 288, 196, false, false, "NN (conv2 im2col)"), (128, 3136, 128, false, false, "NN"), (128, 2048, 1000, false, false, "NN"),
    (256, 4096, 512, false, false, "NN"), (64, 512, 10, false, false, "NN (tiny)"),
    (128, 2048, 1000, false, true, "NT (x·Wᵀ)"), (2048, 128, 1000, true, false, "TN (dW = xᵀ·dy)"),
    (128, 1000, 2048, false, false, "NN (dx = dy·W)"), (1024, 1024, 1024, true, true, "TT"),
]

/// One implementation over all GEMM shapes, 1 and 2 threads: tab-separated lines
/// `gemm IMPL M K N OP THREADS GFLOPS`. bench.sh runs tl and OpenBLAS in separate processes,
/// alternating (OpenBLAS's idle workers spin after a call and slow whatever shares the process).
func rawGEMM(_ impl: String, _ blas: SystemBLAS?) {
    if impl == "blas" && blas == nil { return }
    for (m, k, n, ta, tb, label) in gemmShapes {
        let a = randomBuffer(m * k, seed: 1), b = randomBuffer(k * n, seed: 2), c = randomBuffer(m * n, seed: 3)
        let lda = ta ? m : k, ldb = tb ? k : n
        let flops = 2.0 * Double(m) * Double(n) * Double(k)
        let mt = min(0.5, max(0.1, flops / 4e10))
        for th in [1, 2] {
            let t: Double
            if impl == "tl" {
                t = best(minTime: mt) { GEMM.sgemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 1, a: a, lda: lda, b: b, ldb: ldb, beta: 0, c: c, ldc: n, threads: th) }
            } else {
                blas!.threads(th)
                t = best(minTime: mt) { blas!.sgemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 1, a: a, lda: lda, b: b, ldb: ldb, beta: 0, c: c, ldc: n) }
            }
            print("gemm\t\(impl)\t\(m)\t\(k)\t\(n)\t\(label)\t\(th)\t\(f2(flops / t / 1e9))")
        }
        a.deallocate(); b.deallocate(); c.deallocate()
    }
}

/// The convolution layers of a small CNN, forward and backward (data + weights + bias), batch 64.
func benchConv() {
    print("convolution, batch 64 (images/s; backward = dx + dweight + dbias)")
    print("  \(padr("layer", 24))\(pad("fwd 1T", 9))\(pad("fwd 2T", 9))\(pad("2T/1T", 7))\(pad("bwd 1T", 9))\(pad("bwd 2T", 9))\(pad("2T/1T", 7))\(pad("fwd GFLOP/s", 13))")
    let layers: [(String, ConvGeometry)] = [
        ("1->32 3x3 @28x28", ConvGeometry(n: 64, c: 1, h: 28, w: 28, oc: 32, kh: 3, kw: 3, pad: 1)),
        ("32->64 3x3 @28x28", ConvGeometry(n: 64, c: 32, h: 28, w: 28, oc: 64, kh: 3, kw: 3, pad: 1)),
        ("32->64 3x3 @14x14", ConvGeometry(n: 64, c: 32, h: 14, w: 14, oc: 64, kh: 3, kw: 3, pad: 1)),
    ]
    for (name, g) in layers {
        let x = randomBuffer(g.n * g.c * g.h * g.w, seed: 1), w = randomBuffer(g.oc * g.kdim, seed: 2), b = randomBuffer(g.oc, seed: 3)
        let y = randomBuffer(g.n * g.oc * g.oh * g.ow, seed: 4), dx = randomBuffer(g.n * g.c * g.h * g.w, seed: 5)
        let dw = randomBuffer(g.oc * g.kdim, seed: 6), db = randomBuffer(g.oc, seed: 7)
        var f = [0.0, 0], bw = [0.0, 0]
        for (i, th) in [1, 2].enumerated() {
            f[i] = Double(g.n) / best(minTime: 0.5) { Conv.forward(g, x: x, weight: w, bias: b, y: y, threads: th) }
            bw[i] = Double(g.n) / best(minTime: 0.5) { Conv.backward(g, x: x, weight: w, dy: y, dx: dx, dweight: dw, dbias: db, threads: th) }
        }
        let gf = 2.0 * Double(g.oc * g.kdim * g.oh * g.ow) * f[1] / 1e9
        print("  \(padr(name, 24))\(pad(f1(f[0]), 9))\(pad(f1(f[1]), 9))\(pad(f2(f[1] / f[0]), 7))\(pad(f1(bw[0]), 9))\(pad(f1(bw[1]), 9))\(pad(f2(bw[1] / bw[0]), 7))\(pad(f1(gf), 13))")
    }
}

let args = Array(CommandLine.arguments.dropFirst())
let what = Set(args.isEmpty ? ["peak", "conv"] : args)  // also: gemm-tl, gemm-blas, one M K N THREADS, convone
let blas = what.contains("gemm-blas") ? SystemBLAS.load() : nil
if what.contains("peak") { print("threads available: \(Threads.count)") }
let quick = !what.contains("peak")
let peak1 = quick ? 1 : fmaPeak(threads: 1), peak2 = quick ? 1 : fmaPeak(threads: 2)
if !quick { print("peak\t\(f2(peak1))\t\(f2(peak2))"); print("FMA peak: \(f1(peak1)) GFLOP/s on 1 thread, \(f1(peak2)) on 2 (independent 8-wide FMA chains)") }
if what.contains("avx512") { print(GEMM.avx512 ? "yes" : "no") }
if what.contains("blas-info") { print(SystemBLAS.load()?.description ?? "not found (apt-get install libopenblas0)") }
/// The model at `path` as `tl-extract` runs it (to its output, BATCH rows at a time over THREADS),
/// and `rows` random inputs for it.
func extractorOnRandomImages(_ path: String, batch: Int, rows: Int, threads: Int) -> (FeatureExtractor, Tensor) {
    let (net, _, _) = try! Network.load(path)
    let x = Tensor.f32([rows] + net.input.shape)
    var r = RNG(seed: 1)
    for i in 0..<x.count { x.f32[i] = r.uniform() }
    return (try! FeatureExtractor(net: net, layer: net.outputName, activation: false, batch: batch, threads: threads), x)
}
if what.contains("infer") {
    // infer MODEL BATCH: forward passes (evaluation mode) on random inputs, images/s.
    // The way tl-extract and tl-eval run a network: rows split over the threads, each thread
    // running its part BATCH at a time (here 2 threads x 8 batches; input normalization included).
    let batch = Int(args[2])!
    let (ex, x) = extractorOnRandomImages(args[1], batch: batch, rows: 16 * batch, threads: 2)
    let t = best(minTime: 1) { _ = try! ex.features(x) }
    print("infer\t\(f1(Double(16 * batch) / t))")
}
if what.contains("convf") {
    // convf C HW OC K STRIDE PAD [N [GROUPS]]: one thread, best forward time of one layer (A/B comparisons).
    let v = args.dropFirst().map { Int($0)! }
    let g = ConvGeometry(n: v.count > 6 ? v[6] : 32, c: v[0], h: v[1], w: v[1], oc: v[2], kh: v[3], kw: v[3], stride: v[4], pad: v[5],
                         groups: v.count > 7 ? v[7] : 1)
    let x = randomBuffer(g.n * g.c * g.h * g.w, seed: 1), w = randomBuffer(g.oc * g.kdim, seed: 2), b = randomBuffer(g.oc, seed: 3)
    let y = randomBuffer(g.n * g.oc * g.oh * g.ow, seed: 4)
    let t = best(minTime: 1) { Conv.forward(g, x: x, weight: w, bias: b, y: y, threads: 1) }
    print("convf\t\(f1(2.0 * Double(g.n * g.oc * g.kdim * g.oh * g.ow) / t / 1e9)) GFLOP/s")
}
if what.contains("infer1") {
    // infer1 MODEL BATCH [REPS]: one thread, the best of REPS forward passes of one batch (for A/B
    // comparisons on a noisy machine: the minimum is stable where throughput is not).
    let batch = Int(args[2])!, reps = args.count > 3 ? Int(args[3])! : 20
    let (ex, x) = extractorOnRandomImages(args[1], batch: batch, rows: batch, threads: 1)
    var t = Double.infinity
    _ = try! ex.features(x)
    for _ in 0..<reps { let t0 = monotonicSeconds(); _ = try! ex.features(x); t = min(t, monotonicSeconds() - t0) }
    print("infer1\t\(f1(Double(batch) / t))")
}
if what.contains("fewclasses") {
    // fewclasses ROWS: the linear-probe kernels over ROWS x 512 features, 10 classes, 2 threads
    // in blocks of 256 rows; and the same on one 256-row block over and over (cache-resident).
    let rows = Int(args[1])!, d = 512, k = 10, br = 256
    let x = randomBuffer(rows * d, seed: 1), w = randomBuffer(k * d, seed: 2)
    let c = randomBuffer(rows * k, seed: 3), g = randomBuffer(2 * k * d, seed: 4)
    let px = UnsafeSendable(x), pc = UnsafeSendable(c), pg = UnsafeSendable(g), pw = UnsafeSendable(w)
    let blocks = (rows + br - 1) / br
    let ts = best(minTime: 1) {
        Threads.parallelFor(2, threads: 2) { t in
            var b = t
            while b < blocks {
                let r0 = b * br, m = min(rows, r0 + br) - r0
                FewClasses.scores(m: m, n: k, k: d, a: px.value + r0 * d, lda: d, b: pw.value, ldb: d, c: pc.value + r0 * k, ldc: k)
                b += 2
            }
        }
    }
    let tg = best(minTime: 1) {
        Threads.parallelFor(2, threads: 2) { t in
            var b = t
            while b < blocks {
                let r0 = b * br, m = min(rows, r0 + br) - r0
                FewClasses.accumulateGradient(m: m, n: k, k: d, d: pc.value + r0 * k, ldd: k, a: px.value + r0 * d, lda: d, g: pg.value + t * k * d, ldg: d)
                b += 2
            }
        }
    }
    let tc = best(minTime: 1) { FewClasses.scores(m: br, n: k, k: d, a: x, lda: d, b: w, ldb: d, c: c, ldc: k) }
    let tgc = best(minTime: 1) { FewClasses.accumulateGradient(m: br, n: k, k: d, d: c, ldd: k, a: x, lda: d, g: g, ldg: d) }
    let fl = 2.0 * Double(rows * d * k)
    print("scores \(f1(fl / ts / 1e9)) GFLOP/s (\(f1(ts * 1e3)) ms), gradient \(f1(fl / tg / 1e9)) GFLOP/s (\(f1(tg * 1e3)) ms) over \(rows) rows, 2T")
    print("cache-resident block, 1T: scores \(f1(2.0 * Double(br * d * k) / tc / 1e9)) GFLOP/s, gradient \(f1(2.0 * Double(br * d * k) / tgc / 1e9)) GFLOP/s")
}
if what.contains("gemm-tl") { rawGEMM("tl", nil) }
if what.contains("gemm-blas") { rawGEMM("blas", blas) }
if what.contains("conv") { benchConv() }
if what.contains("one") {
    let m = Int(args[1])!, k = Int(args[2])!, n = Int(args[3])!, th = Int(args[4])!
    let a = randomBuffer(m * k, seed: 1), b = randomBuffer(k * n, seed: 2)
    let c = UnsafeMutablePointer<Float>.allocate(capacity: m * n)
    let t = best(minTime: 2) { GEMM.sgemm(transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: n, beta: 0, c: c, ldc: n, threads: th) }
    print("\(m)x\(k)x\(n) \(th)T: \(f1(2.0 * Double(m * n * k) / t / 1e9)) GFLOP/s")
}
if what.contains("convone") {
    let g = ConvGeometry(n: 64, c: 32, h: 14, w: 14, oc: 64, kh: 3, kw: 3, pad: 1)
    let x = randomBuffer(g.n * g.c * g.h * g.w, seed: 1), w = randomBuffer(g.oc * g.kdim, seed: 2), b = randomBuffer(g.oc, seed: 3)
    let y = randomBuffer(g.n * g.oc * g.oh * g.ow, seed: 4), dx = randomBuffer(g.n * g.c * g.h * g.w, seed: 5)
    let dw = randomBuffer(g.oc * g.kdim, seed: 6), db = randomBuffer(g.oc, seed: 7)
    let t = best(minTime: 3) { Conv.backward(g, x: x, weight: w, dy: y, dx: dx, dweight: dw, dbias: db, threads: 1) }
    let t2 = best(minTime: 1) { Conv.forward(g, x: x, weight: w, bias: b, y: y, threads: 1) }
    print("bwd \(f1(64 / t)) img/s fwd \(f1(64 / t2))")
}
