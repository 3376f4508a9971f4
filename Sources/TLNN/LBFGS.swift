import Glibc

/// Limited-memory BFGS for smooth full-batch objectives (Nocedal & Wright, *Numerical
/// Optimization*, 2nd ed.: the two-loop recursion, Algorithm 7.4, and a line search satisfying
/// the strong Wolfe conditions, Algorithms 3.5 and 3.6 with safeguarded cubic interpolation).
///
/// The iterate and the history are Double; the objective may compute in Float inside. Stopping
/// rules are scipy's L-BFGS-B ones as scikit-learn sets them: the largest gradient component at
/// most `gradientTolerance` (sklearn's `tol`, 1e-4), or a relative decrease of f in one
/// iteration of at most `functionTolerance` (64 ε), or `maxIterations`.
public struct LBFGS {
    /// Correction pairs kept (m); 10 as in scipy and scikit-learn.
    public var memory = 10
    public var maxIterations = 1000
    public var gradientTolerance = 1e-4
    public var functionTolerance = 64 * Double.ulpOfOne
    /// Function evaluations allowed per line search (scikit-learn passes maxls = 50).
    public var maxLineSearch = 50
    /// Sufficient decrease (c1) and curvature (c2) constants of the Wolfe conditions.
    public var c1 = 1e-4, c2 = 0.9

    public init() {}

    public struct Result {
        public var x: [Double]
        public var value: Double
        /// max |∂f/∂xᵢ| at `x`.
        public var gradientMax: Double
        public var iterations: Int
        public var evaluations: Int
        /// True when a tolerance stopped it (not the iteration limit or a failed line search).
        public var converged: Bool
        public var reason: String
    }

    /// Minimizes f from x0. `f(x, &g)` returns f(x) and writes ∇f(x) into g (same count as x).
    /// `onIteration(k, f, max|g|)` is called after each iteration.
    public func minimize(_ x0: [Double], onIteration: ((Int, Double, Double) -> Void)? = nil,
                         _ f: ([Double], inout [Double]) throws -> Double) rethrows -> Result {
        let n = x0.count
        var x = x0, g = [Double](repeating: 0, count: n)
        var fx = try f(x, &g)
        var evals = 1
        var S: [[Double]] = [], Y: [[Double]] = [], rho: [Double] = []
        var d = [Double](repeating: 0, count: n), alpha = [Double](repeating: 0, count: memory)
        func result(_ k: Int, _ ok: Bool, _ why: String) -> Result {
            Result(x: x, value: fx, gradientMax: maxAbs(g), iterations: k, evaluations: evals, converged: ok, reason: why)
        }
        guard fx.isFinite else { return result(0, false, "the objective is not finite at the start") }
        if maxAbs(g) <= gradientTolerance { return result(0, true, "gradient below tolerance") }
        var k = 0
        while k < maxIterations {
            // d = −H·g by the two-loop recursion, H₀ = γI with γ = sᵀy / yᵀy of the newest pair.
            for i in 0..<n { d[i] = -g[i] }
            let m = S.count
            if m > 0 {
                for j in stride(from: m - 1, through: 0, by: -1) {
                    alpha[j] = rho[j] * dot(S[j], d)
                    axpy(-alpha[j], Y[j], &d)
                }
                let gamma = dot(S[m - 1], Y[m - 1]) / dot(Y[m - 1], Y[m - 1])
                for i in 0..<n { d[i] *= gamma }
                for j in 0..<m {
                    let beta = rho[j] * dot(Y[j], d)
                    axpy(alpha[j] - beta, S[j], &d)
                }
            }
            var dg = dot(d, g)
            if !(dg < 0) {  // not a descent direction (numerical trouble): restart from steepest descent
                S.removeAll(); Y.removeAll(); rho.removeAll()
                for i in 0..<n { d[i] = -g[i] }
                dg = dot(d, g)
            }
            // First step: a unit step would be a guess in arbitrary units; take length 1 instead.
            let a0 = S.isEmpty ? min(1, 1 / max(dot(g, g).squareRoot(), 1e-300)) : 1
            guard let (a, fNew, gNew, used) = try lineSearch(f, x: x, fx: fx, d: d, dg: dg, a0: a0) else {
                if !S.isEmpty { S.removeAll(); Y.removeAll(); rho.removeAll(); continue }
                return result(k, false, "no decrease along the search direction: the objective's precision is reached (max gradient \(maxAbs(g)))")
            }
            evals += used
            k += 1
            var s = d, yv = gNew
            for i in 0..<n { s[i] *= a; yv[i] -= g[i]; x[i] += s[i] }
            let sy = dot(s, yv)
            if sy > 1e-10 * dot(yv, yv) {  // keep the pair only when the curvature is positive
                if S.count == memory { S.removeFirst(); Y.removeFirst(); rho.removeFirst() }
                S.append(s); Y.append(yv); rho.append(1 / sy)
            }
            let decrease = (fx - fNew) / max(abs(fx), abs(fNew), 1)
            fx = fNew; g = gNew
            onIteration?(k, fx, maxAbs(g))
            if maxAbs(g) <= gradientTolerance { return result(k, true, "gradient below tolerance") }
            if decrease <= functionTolerance { return result(k, true, "relative decrease below tolerance") }
        }
        return result(k, false, "iteration limit (\(maxIterations)) reached")
    }

    /// A step length a along d satisfying the strong Wolfe conditions, with f and ∇f there and
    /// the evaluations used; nil when none was found.
    func lineSearch(_ f: ([Double], inout [Double]) throws -> Double, x: [Double], fx: Double, d: [Double], dg: Double,
                    a0: Double) rethrows -> (Double, Double, [Double], Int)? {
        let n = x.count
        var xt = x, gt = [Double](repeating: 0, count: n), used = 0
        struct Point { var a: Double; var f: Double; var d: Double; var g: [Double] }
        func eval(_ a: Double) throws -> Point {
            for i in 0..<n { xt[i] = x[i] + a * d[i] }
            let v = try f(xt, &gt)
            used += 1
            return Point(a: a, f: v.isFinite ? v : .infinity, d: dot(gt, d), g: gt)
        }
        func sufficient(_ p: Point) -> Bool { p.f <= fx + c1 * p.a * dg }
        func curvature(_ p: Point) -> Bool { abs(p.d) <= -c2 * dg }
        // Algorithm 3.6: shrink [lo, hi] (lo satisfies sufficient decrease) until Wolfe holds.
        func zoom(_ lo0: Point, _ hi0: Point) throws -> Point? {
            var lo = lo0, hi = hi0
            while used < maxLineSearch {
                let a = cubicMinimizer(lo, hi)
                let p = try eval(a)
                if !sufficient(p) || p.f >= lo.f {
                    hi = p
                } else {
                    if curvature(p) { return p }
                    if p.d * (hi.a - lo.a) >= 0 { hi = lo }
                    lo = p
                }
                if abs(hi.a - lo.a) <= 1e-12 * max(abs(lo.a), 1e-20) { break }
            }
            // Out of evaluations: accept the best point with sufficient decrease, if it moved.
            return lo.a > 0 && lo.f < fx ? lo : nil
        }
        func cubicMinimizer(_ p: Point, _ q: Point) -> Double {
            let d1 = p.d + q.d - 3 * (p.f - q.f) / (p.a - q.a)
            let disc = d1 * d1 - p.d * q.d
            let lo = min(p.a, q.a), hi = max(p.a, q.a), margin = 0.1 * (hi - lo)
            if disc >= 0, q.f.isFinite {
                let d2 = (q.a > p.a ? 1.0 : -1.0) * disc.squareRoot()
                let a = q.a - (q.a - p.a) * (q.d + d2 - d1) / (q.d - p.d + 2 * d2)
                if a.isFinite && a >= lo + margin && a <= hi - margin { return a }
            }
            return (lo + hi) / 2
        }
        // Algorithm 3.5: grow the step until the interval brackets a Wolfe point.
        var prev = Point(a: 0, f: fx, d: dg, g: [])
        var a = a0
        while used < maxLineSearch {
            let p = try eval(a)
            if !sufficient(p) || (used > 1 && p.f >= prev.f) {
                return try zoom(prev, p).map { ($0.a, $0.f, $0.g, used) }
            }
            if curvature(p) { return (p.a, p.f, p.g, used) }
            if p.d >= 0 { return try zoom(p, prev).map { ($0.a, $0.f, $0.g, used) } }
            prev = p
            a *= 2
        }
        return nil
    }
}

@inline(__always) func dot(_ a: [Double], _ b: [Double]) -> Double {
    var s = 0.0
    a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in for i in 0..<pa.count { s += pa[i] * pb[i] } } }
    return s
}
@inline(__always) func axpy(_ a: Double, _ x: [Double], _ y: inout [Double]) {
    x.withUnsafeBufferPointer { px in y.withUnsafeMutableBufferPointer { py in for i in 0..<px.count { py[i] += a * px[i] } } }
}
@inline(__always) func maxAbs(_ a: [Double]) -> Double { a.reduce(0) { max($0, abs($1)) } }
