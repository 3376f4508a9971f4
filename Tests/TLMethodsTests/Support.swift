@testable import TLCore

/// Uniform values in [-1, 1) of the given shape, seeded.
func random(_ shape: [Int], seed: UInt64) -> Tensor {
    var r = RNG(seed: seed)
    let t = Tensor.f32(shape)
    for i in 0..<t.count { t.f32[i] = r.uniform() * 2 - 1 }
    return t
}

/// n labels in 0..<k, seeded.
func labels(_ n: Int, _ k: Int, seed: UInt64) -> [Int] { var r = RNG(seed: seed); return (0..<n).map { _ in r.below(k) } }
