import XCTest
import Glibc
@testable import TLCore

/// Mutated inputs against every reader: each must either read or throw a TLError — never trap,
/// hang or allocate absurd memory. Seeded, so a failure reproduces; ~10k cases in a few seconds.
final class FuzzTests: XCTestCase {
    struct Seed { let name: String; let bytes: [UInt8] }

    func seeds() throws -> [Seed] {
        var s: [Seed] = []
        let x = sampleTensor(.f32, [6, 5]), y = sampleTensor(.i64, [6]), img = sampleTensor(.u8, [3, 4, 4])
        s.append(Seed(name: "a.tlt", bytes: try tltBytes([("x", x), ("y", y), ("x", x)], meta: ["classes": ["a", "b"]], producer: "fuzz")))
        var m = MemoryWriter(); try NPY.write(x, to: m); s.append(Seed(name: "a.npy", bytes: m.bytes))
        m = MemoryWriter(); try NPZ.write([("x", x), ("y", y)], meta: ["k": 1], to: m); s.append(Seed(name: "a.npz", bytes: m.bytes))
        s.append(Seed(name: "b.npz", bytes: try readFile(fixtures + "/numpy-compressed.npz")))
        m = MemoryWriter(); try IDX.write(img, to: m); s.append(Seed(name: "a.idx", bytes: m.bytes))
        let idx = m.bytes
        m = MemoryWriter(); let g = try GzipWriter(m); try g.write(idx); try g.finish(); s.append(Seed(name: "a.idx.gz", bytes: m.bytes))
        s.append(Seed(name: "a.pgm", bytes: try PNM.encode(img, index: 0) + Array("P2 4 4 255\n# plain\n1 2 3 9 0 0 0 0 1 1 1 1 255 0 0 7\n".utf8)))
        s.append(Seed(name: "a.csv", bytes: Array("a,b,c\n1,2,3\n4.5,-6,7e2\n".utf8)))
        s.append(Seed(name: "b.gz", bytes: Array(try readFile(sampleDir + "/labels-idx1-ubyte.gz"))))
        return s
    }

    func mutate(_ b: [UInt8], _ rng: inout RNG) -> [UInt8] {
        var b = b
        let n = 1 + rng.below(4)
        for _ in 0..<n {
            if b.isEmpty { b = [UInt8(truncatingIfNeeded: rng.next())]; continue }
            switch rng.below(7) {
            case 0: b[rng.below(b.count)] ^= UInt8(1 << rng.below(8))                    // bit flip
            case 1: b[rng.below(b.count)] = UInt8(truncatingIfNeeded: rng.next())          // random byte
            case 2: b = Array(b.prefix(rng.below(b.count)))                               // truncate
            case 3: b.insert(UInt8(truncatingIfNeeded: rng.next()), at: rng.below(b.count + 1))  // insert
            case 4:                                                                        // extreme length field
                let at = rng.below(max(1, b.count - 8))
                let v: [UInt8] = [[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], [0, 0, 0, 0, 0, 0, 0, 0], [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]][rng.below(3)]
                for k in 0..<min(8, b.count - at) { b[at + k] = v[k] }
            case 5: if b.count > 64 { let a = rng.below(b.count - 32); b.insert(contentsOf: b[a..<a + 32], at: rng.below(b.count)) }  // duplicate a run
            default: if b.count > 2 { b.remove(at: rng.below(b.count)) }                   // delete
            }
        }
        return b
    }

    func testMutatedInputsNeverCrash() throws {
        let dir = tempDir()
        var rng = RNG(seed: 20261122)
        var read = 0, rejected = 0
        let all = try seeds()
        for seed in all {
            XCTAssertNoThrow(try readAll(try openRecords({ let p = dir + "/" + seed.name; try writeFile(p, seed.bytes); return p }())), "seed \(seed.name) must read")
            for i in 0..<1200 {
                let b = mutate(seed.bytes, &rng)
                // Stream path (as from a pipe) and file path (mapped), both.
                for viaFile in [false, true] {
                    do {
                        if viaFile {
                            let p = dir + "/m-" + seed.name
                            try writeFile(p, b)
                            _ = try readAll(try openRecords(p))
                        } else {
                            let r = BufferedReader(MemoryReader(b))
                            let lower = seed.name.hasSuffix(".gz") ? String(seed.name.dropLast(3)) : seed.name
                            let src: BufferedReader = try r.peek(2) == [0x1F, 0x8B] ? BufferedReader(GzipReader(r, name: seed.name)) : r
                            _ = try readAll(try openStream(src, name: seed.name, knownSize: nil, lower: lower, ReadOptions()))
                        }
                        read += 1
                    } catch let e as TLError {
                        rejected += 1
                        XCTAssertFalse(e.message.isEmpty)
                        XCTAssertNotEqual(e.kind, .software, "\(seed.name) #\(i): internal error \(e)")
                    }
                }
            }
        }
        XCTAssertGreaterThan(rejected, 1000)
        print("fuzz: \(read + rejected) mutated inputs over \(all.count) formats: \(read) read, \(rejected) rejected with a clear error")
    }
}
