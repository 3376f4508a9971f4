// tl-bench: kernel figures for `make bench` (Tests/bench/bench.sh), each beside its peer in the
// same process where one exists (OpenBLAS through dlopen). Prints; asserts nothing.
import Glibc
import TLCore

func now() -> Double { var t = timespec(); clock_gettime(CLOCK_MONOTONIC, &t); return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9 }
func f1(_ x: Double) -> String { var b = [CChar](repeating: 0, count: 32); _ = withVaList([x]) { vsnprintf(&b, 32, "%.1f", $0) }; return String(cString: b) }
func f2(_ x: Double) -> String { var b = [CChar](repeating: 0, count: 32); _ = withVaList([x]) { vsnprintf(&b, 32, "%.2f", $0) }; return String(cString: b) }
func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : String(repeating: " ", count: w - s.count) + s }
func padr(_ s: String, _ w: Int) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }

/// Best time of `reps` runs after a warm-up, repeated until `minTime` has passed.
func best(minTime: Double = 0.3, _ body: () -> Void) -> Double {
    body()
    var b = Double.infinity, total = 0.0, n = 0
    while total < minTime || n < 3 {
        let t = now(); body(); let d = now() - t
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

func benchGEMM(_ blas: SystemBLAS?, peak1: Double, peak2: Double) {
    print("GEMM (GFLOP/s; ratio = tl / OpenBLAS, same threads; peak = share of the FMA peak)")
    print("  \(padr("M x K x N  op", 26))\(pad("tl 1T", 8))\(pad("BLAS 1T", 9))\(pad("ratio", 7))\(pad("tl 2T", 8))\(pad("BLAS 2T", 9))\(pad("ratio", 7))\(pad("peak 2T", 9))\(pad("2T/1T", 7))")
    let shapes: [(Int, Int, Int, Bool, Bool, String)] = [
        (1024, 1024, 1024, false, false, "NN"), (256, 256, 256, false, false, "NN"), (2048, 2048, 2048, false, false, "NN"),
        (64, 288, 196, false, false, "NN (conv2 im2col)"), (128, 3136, 128, false, false, "NN"), (128, 2048, 1000, false, false, "NN"),
        (256, 4096, 512, false, false, "NN"), (64, 512, 10, false, false, "NN (tiny)"),
        (128, 2048, 1000, false, true, "NT (x·Wᵀ)"), (2048, 128, 1000, true, false, "TN (dW = xᵀ·dy)"),
        (128, 1000, 2048, false, false, "NN (dx = dy·W)"), (1024, 1024, 1024, true, true, "TT"),
    ]
    // Each implementation runs all shapes in turn (OpenBLAS's idle workers spin for a while
    // after a call and would slow whatever runs next); two rounds, best of each.
    struct Case { var a, b, c: UnsafeMutablePointer<Float>; var flops: Double }
    let cases = shapes.map { (m, k, n, _, _, _) in
        Case(a: randomBuffer(m * k, seed: 1), b: randomBuffer(k * n, seed: 2), c: randomBuffer(m * n, seed: 3),
             flops: 2.0 * Double(m) * Double(n) * Double(k))
    }
    var tl = [[Double]](repeating: [.infinity, .infinity], count: shapes.count), ob = tl
    for _ in 0..<2 {
        for impl in 0..<(blas == nil ? 1 : 2) {
            for (i, (m, k, n, ta, tb, _)) in shapes.enumerated() {
                let cs = cases[i], lda = ta ? m : k, ldb = tb ? k : n
                let mt = min(0.5, max(0.1, cs.flops / 4e10))
                for (ti, th) in [1, 2].enumerated() {
                    if impl == 0 {
                        tl[i][ti] = min(tl[i][ti], best(minTime: mt) {
                            GEMM.sgemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 1, a: cs.a, lda: lda, b: cs.b, ldb: ldb, beta: 0, c: cs.c, ldc: n, threads: th) })
                    } else {
                        blas!.threads(th)
                        ob[i][ti] = min(ob[i][ti], best(minTime: mt) {
                            blas!.sgemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 1, a: cs.a, lda: lda, b: cs.b, ldb: ldb, beta: 0, c: cs.c, ldc: n) })
                    }
                }
            }
        }
    }
    for (i, (m, k, n, _, _, label)) in shapes.enumerated() {
        let f = cases[i].flops / 1e9
        let t1 = f / tl[i][0], t2 = f / tl[i][1]
        let o1: Double? = blas == nil ? nil : f / ob[i][0], o2: Double? = blas == nil ? nil : f / ob[i][1]
        let r1 = o1.map { f2(t1 / $0) } ?? "-", r2 = o2.map { f2(t2 / $0) } ?? "-"
        print("  \(padr("\(m)x\(k)x\(n)  \(label)", 26))\(pad(f1(t1), 8))\(pad(o1.map(f1) ?? "-", 9))\(pad(r1, 7))\(pad(f1(t2), 8))\(pad(o2.map(f1) ?? "-", 9))\(pad(r2, 7))\(pad(f2(t2 / peak2), 9))\(pad(f2(t2 / t1), 7))")
    }
}

let args = Array(CommandLine.arguments.dropFirst())
let what = Set(args.isEmpty ? ["peak", "gemm", "conv"] : args)
let blas = SystemBLAS.load()
print("threads available: \(Threads.count); OpenBLAS: \(blas?.description ?? "not found (apt-get install libopenblas0)")")
let peak1 = what.contains("one") ? 1 : fmaPeak(threads: 1), peak2 = what.contains("one") ? 1 : fmaPeak(threads: 2)
print("FMA peak: \(f1(peak1)) GFLOP/s on 1 thread, \(f1(peak2)) on 2")
if what.contains("gemm") { benchGEMM(blas, peak1: peak1, peak2: peak2) }
if what.contains("one") {
    if let v = getenv("KC") { GEMM.kc = Int(String(cString: v))! }
    if let v = getenv("MC") { GEMM.mc = Int(String(cString: v))! }
    if let v = getenv("NC") { GEMM.nc = Int(String(cString: v))! }
    let m = Int(args[1])!, k = Int(args[2])!, n = Int(args[3])!, th = Int(args[4])!
    let a = randomBuffer(m * k, seed: 1), b = randomBuffer(k * n, seed: 2)
    let c = UnsafeMutablePointer<Float>.allocate(capacity: m * n)
    let t = best(minTime: 2) { GEMM.sgemm(transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: n, beta: 0, c: c, ldc: n, threads: th) }
    print("\(m)x\(k)x\(n) \(th)T: \(f1(2.0 * Double(m * n * k) / t / 1e9)) GFLOP/s")
}
