import Glibc

/// An OpenBLAS (or other CBLAS) shared library found at run time with dlopen. tl never needs it:
/// the bench loads it as the peer its GEMM is measured against. `TL_BLAS=off` hides it.
public final class SystemBLAS: @unchecked Sendable {
    public typealias SGEMM = @convention(c) (Int32, Int32, Int32, Int32, Int32, Int32, Float,
                                             UnsafePointer<Float>, Int32, UnsafePointer<Float>, Int32,
                                             Float, UnsafeMutablePointer<Float>, Int32) -> Void
    public let path: String
    public let sgemmFn: SGEMM
    let setThreads: (@convention(c) (Int32) -> Void)?
    let config: (@convention(c) () -> UnsafePointer<CChar>?)?

    /// The first of the usual sonames that loads and has `cblas_sgemm`, or nil.
    public static func load(candidates: [String] = ["libopenblas.so.0", "libopenblas.so", "libblis.so.4", "libblas.so.3"]) -> SystemBLAS? {
        if let v = getenv("TL_BLAS"), String(cString: v) == "off" { return nil }
        for name in candidates {
            guard let h = dlopen(name, RTLD_NOW | RTLD_LOCAL), let f = dlsym(h, "cblas_sgemm") else { continue }
            let st = dlsym(h, "openblas_set_num_threads").map { unsafeBitCast($0, to: (@convention(c) (Int32) -> Void).self) }
            let cf = dlsym(h, "openblas_get_config").map { unsafeBitCast($0, to: (@convention(c) () -> UnsafePointer<CChar>?).self) }
            return SystemBLAS(path: name, sgemm: unsafeBitCast(f, to: SGEMM.self), setThreads: st, config: cf)
        }
        return nil
    }

    init(path: String, sgemm: SGEMM, setThreads: (@convention(c) (Int32) -> Void)?, config: (@convention(c) () -> UnsafePointer<CChar>?)?) {
        self.path = path; self.sgemmFn = sgemm; self.setThreads = setThreads; self.config = config
    }

    public var description: String { config.flatMap { $0() }.map { String(cString: $0) } ?? path }
    public func threads(_ n: Int) { setThreads?(Int32(n)) }

    /// Row-major sgemm with the same arguments as `GEMM.sgemm`.
    public func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                      a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                      beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        // CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112
        sgemmFn(101, transA ? 112 : 111, transB ? 112 : 111, Int32(m), Int32(n), Int32(k), alpha,
                a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}
