import XCTest
import Foundation
@testable import TLCore

final class GzipTests: XCTestCase {
    func gunzip(_ b: [UInt8]) throws -> [UInt8] { try GzipReader(MemoryReader(b), name: "mem").readToEnd() }
    func gzip(_ b: [UInt8]) throws -> [UInt8] {
        let m = MemoryWriter(); let g = try GzipWriter(m); try g.write(b); try g.finish(); return m.bytes
    }

    func testRoundTripShapesOfData() throws {
        var rng = RNG(seed: 5)
        let random = (0..<300_000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let runs = (0..<300_000).map { UInt8(($0 / 1000) % 7) }
        let text = Array(String(repeating: "the quick brown fox jumps over the lazy dog ", count: 5000).utf8)
        for data in [[], [7], random, runs, text, Array(random.prefix(40_000)) + runs] {
            let z = try gzip(data)
            XCTAssertEqual(try gunzip(z), data)
        }
        XCTAssertLessThan(try gzip(runs).count, runs.count / 20, "repetitive data compresses")
    }

    /// Real gzip output (dynamic Huffman blocks, level 9): the bundled sample, whose decompressed
    /// size and IDX header are known.
    func testRealGzipFile() throws {
        let data = try gunzip(try readFile(sampleDir + "/images-idx3-ubyte.gz"))
        XCTAssertEqual(data.count, 16 + 2000 * 784)
        XCTAssertEqual(Array(data[0..<8]), [0, 0, 8, 3, 0, 0, 0x07, 0xD0])
        if sh("command -v gzip >/dev/null").0 == 0 {
            let (_, sum) = sh("zcat '\(sampleDir)/images-idx3-ubyte.gz' | cksum")
            let (_, mine) = sh("printf '' | cksum")
            _ = mine
            // cksum's CRC differs from zlib's; compare sizes and a digest through python instead.
            XCTAssertTrue(sum.hasSuffix(" \(data.count)\n"), sum)
        }
    }

    func testDamage() throws {
        let z = try gzip(Array(String(repeating: "abcdefgh", count: 2000).utf8))
        for n in 0..<z.count { XCTAssertThrowsError(try gunzip(Array(z.prefix(n))), "accepted gzip cut at \(n)") }
        var crc = z; crc[crc.count - 6] ^= 1
        XCTAssertThrowsError(try gunzip(crc)) { XCTAssertTrue("\($0)".contains("CRC")) }
        XCTAssertThrowsError(try gunzip(z + [1, 2, 3])) { XCTAssertTrue("\($0)".contains("trailing")) }
        XCTAssertEqual(try gunzip(z + [0, 0, 0, 0]).count, 16000, "trailing zeros are ignored, as gzip does")
        XCTAssertEqual(try gunzip(z + z).count, 32000, "concatenated members read as one stream")
    }
}

final class IDXTests: XCTestCase {
    func testRoundTripAllIDXTypes() throws {
        for d in [DType.u8, .i8, .i16, .i32, .f32, .f64] {
            for shape in [[5], [3, 4], [2, 3, 4], [0, 3]] {
                let t = sampleTensor(d, shape)
                let m = MemoryWriter()
                try IDX.write(t, to: m)
                let r = try IDXReader(BufferedReader(MemoryReader(m.bytes)), fileName: "m", knownSize: m.bytes.count, chunkBytes: 16)
                let set = try readAll(r)
                XCTAssertEqual(set.names, [shape.count == 1 ? "y" : "x"])
                XCTAssertTrue(set[set.names[0]]!.bitwiseEqual(t), "\(d) \(shape)")
            }
        }
        XCTAssertThrowsError(try IDX.write(sampleTensor(.i64, [3]), to: MemoryWriter()))
    }

    func testLyingHeaders() throws {
        let m = MemoryWriter()
        try IDX.write(sampleTensor(.u8, [10, 4]), to: m)
        let b = m.bytes
        // File size disagrees with the header (regular file): caught before reading data.
        assertThrowsData(try IDXReader(BufferedReader(MemoryReader(b)), fileName: "f", knownSize: b.count - 1), "header says")
        // Streamed: too little data, or too much.
        assertThrowsData(try readAll(try IDXReader(BufferedReader(MemoryReader(Array(b.dropLast(3)))), fileName: "f")), "truncated")
        assertThrowsData(try readAll(try IDXReader(BufferedReader(MemoryReader(b + [1])), fileName: "f")), "more data than")
        // A header claiming 2^32-1 rows of 2^32-1 columns of f64 does not allocate.
        let huge: [UInt8] = [0, 0, 0x0E, 3, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255]
        assertThrowsData(try readAll(try IDXReader(BufferedReader(MemoryReader(huge)), fileName: "f")))
    }
}

final class NPYTests: XCTestCase {
    func testRoundTripAllDTypes() throws {
        let dir = tempDir()
        for d in DType.allCases {
            for shape in [[], [4], [2, 3], [2, 0, 3]] {
                let t = sampleTensor(d, shape)
                let m = MemoryWriter()
                try NPY.write(t, to: m)
                XCTAssertEqual((m.bytes.count - t.byteCount) % 64, 0, "header padded to 64 bytes")
                let s = try readAll(try NPYReader(BufferedReader(MemoryReader(m.bytes)), fileName: "m", knownSize: m.bytes.count, chunkBytes: 8))
                // NumPy has no bfloat16: tl writes its bit patterns as <u2, which read back as u16.
                var want = t
                if d == .bf16 { want.dtype = .u16 }
                XCTAssertTrue(s.tensors.values.first!.bitwiseEqual(want), "stream \(d) \(shape)")
                try writeFile(dir + "/a.npy", m.bytes)
                let r = try openRecords(dir + "/a.npy")
                XCTAssertTrue(try readAll(r).tensors.values.first!.bitwiseEqual(want), "mapped \(d) \(shape)")
            }
        }
    }

    func testHeaderVariants() throws {
        // Key order, Fortran order, big-endian, version 2.0, Python 2 longs.
        func npy(_ dict: String, major: UInt8 = 1, data: [UInt8]) -> [UInt8] {
            let h = Array(dict.utf8) + [0x0A]
            let len: [UInt8] = major == 1 ? [UInt8(h.count & 255), UInt8(h.count >> 8)] : [UInt8(h.count & 255), UInt8(h.count >> 8), 0, 0]
            return NPY.magic + [major, 0] + len + h + data
        }
        func read(_ b: [UInt8]) throws -> Tensor { try readAll(try NPYReader(BufferedReader(MemoryReader(b)), fileName: "m", knownSize: b.count)).tensors.values.first! }
        let f: [UInt8] = [1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0]
        let fortran = try read(npy("{'shape': (2, 3), 'fortran_order': True, 'descr': '<i4'}", data: f))
        XCTAssertEqual((0..<6).map { fortran.double(at: $0) }, [1, 3, 5, 2, 4, 6])
        let big = try read(npy("{\"descr\": \">i2\", \"fortran_order\": False, \"shape\": (2L,)}", major: 2, data: [0, 1, 1, 0]))
        XCTAssertEqual([big.double(at: 0), big.double(at: 1)], [1, 256])
        assertThrowsData(try read(npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}", data: [0, 0, 0, 0])), "structured")
        assertThrowsData(try read(npy("{'descr': '<c8', 'fortran_order': False, 'shape': (1,)}", data: [UInt8](repeating: 0, count: 8))), "not supported")
        assertThrowsData(try read(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", data: [0, 0, 0, 0])), "header says")
        assertThrowsData(try read(npy("{'descr': '<f4', 'fortran_order': False}", data: [])), "missing")
    }

    /// numpy reads what tl writes and tl reads what numpy writes, for every dtype numpy has.
    func testNumpyInterop() throws {
        guard pythonWithNumpy else { throw XCTSkip("python3 with numpy is not installed") }
        let dir = tempDir()
        let dtypes: [DType] = [.f64, .f32, .f16, .i64, .i32, .i16, .i8, .u64, .u32, .u16, .u8, .bool]
        var set: [(String, Tensor)] = []
        for d in dtypes {
            let t = sampleTensor(d, [3, 5], seed: UInt64(d.size))
            set.append((d.shortName, t))
            let m = MemoryWriter(); try NPY.write(t, to: m); try writeFile(dir + "/\(d.shortName).npy", m.bytes)
        }
        let z = MemoryWriter(); try NPZ.write(set, meta: ["classes": ["a", "b"]], to: z); try writeFile(dir + "/all.npz", z.bytes)
        // Python checks our files and writes its own: plain, Fortran order, big-endian, savez, savez_compressed.
        let script = """
        import numpy as np, json
        d = '\(dir)'
        z = np.load(d + '/all.npz')
        for n in [\(dtypes.map { "'\($0.shortName)'" }.joined(separator: ", "))]:
            a = np.load(d + '/' + n + '.npy')
            assert a.shape == (3, 5), a.shape
            assert (a == z[n]).all()
            np.save(d + '/py_' + n + '.npy', a)
        np.save(d + '/py_fortran.npy', np.asfortranarray(np.arange(12, dtype='<f4').reshape(3, 4)))
        np.save(d + '/py_big.npy', np.arange(6, dtype='>i4').reshape(2, 3))
        np.savez(d + '/py_plain.npz', x=np.arange(10, dtype='f4'), y=np.arange(10))
        np.savez_compressed(d + '/py_comp.npz', x=np.arange(10000, dtype='f4').reshape(100, 100), y=np.arange(100))
        np.save(d + '/py_scalar.npy', np.float64(2.5))
        print('ok')
        """
        try writeFile(dir + "/check.py", Array(script.utf8))
        let (rc, out) = sh("python3 '\(dir)/check.py'")
        XCTAssertEqual(rc, 0); XCTAssertEqual(out, "ok\n")
        for (n, t) in set {
            let back = try readAll(try openRecords(dir + "/py_\(n).npy")).tensors.values.first!
            XCTAssertTrue(back.bitwiseEqual(t), n)
        }
        let f = try readAll(try openRecords(dir + "/py_fortran.npy"))["x"]!
        XCTAssertEqual((0..<12).map { f.double(at: $0) }, (0..<12).map(Double.init))
        let b = try readAll(try openRecords(dir + "/py_big.npy"))["x"]!
        XCTAssertEqual((0..<6).map { b.double(at: $0) }, (0..<6).map(Double.init))
        for name in ["py_plain", "py_comp"] {
            let s = try readAll(try openRecords(dir + "/\(name).npz"))
            XCTAssertEqual(Set(s.names), ["x", "y"])
            let x = s["x"]!
            XCTAssertEqual(x.double(at: x.count - 1), Double(x.count - 1), name)
        }
        XCTAssertEqual(try readAll(try openRecords(dir + "/py_scalar.npy"))["x"]!.double(at: 0), 2.5)
        let ours = try readAll(try openRecords(dir + "/all.npz"))
        XCTAssertEqual(ours.meta, ["classes": ["a", "b"]])
    }
}

final class PNMTests: XCTestCase {
    func testPlainRawAndMultiImage() throws {
        let p2 = Array("P2\n# comment\n3 2\n15\n0 1 2\n3 4 15\n".utf8)
        let (g, mv) = try PNM.decode(p2, file: "a.pgm")
        XCTAssertEqual(g.shape, [1, 1, 2, 3]); XCTAssertEqual(mv, 15)
        XCTAssertEqual((0..<6).map { g.double(at: $0) }, [0, 1, 2, 3, 4, 15])
        let p6 = Array("P6 2 1 255\n".utf8) + [1, 2, 3, 4, 5, 6]
        let (c, _) = try PNM.decode(p6 + p6, file: "a.ppm")
        XCTAssertEqual(c.shape, [2, 3, 1, 2])
        XCTAssertEqual((0..<6).map { c.double(at: $0) }, [1, 4, 2, 5, 3, 6], "interleaved RGB becomes planar")
        // 16-bit samples, big-endian in the file.
        let (w, _) = try PNM.decode(Array("P5 1 1 65535\n".utf8) + [1, 2], file: "w.pgm")
        XCTAssertEqual(w.dtype, .u16); XCTAssertEqual(w.double(at: 0), 258)
        // Round trip through the encoder.
        let enc = try PNM.encode(c, index: 1)
        XCTAssertEqual(enc, Array("P6\n2 1\n255\n".utf8) + [1, 2, 3, 4, 5, 6])
    }

    func testBad() {
        for bad in ["P5 2 2 255\n\u{1}", "P2 2 2 255\n1 2 3", "P7 1 1 1\n", "P5 0 2 255\n", "P2 1 1 10\n11", "P5 2 2 70000\n"] {
            assertThrowsData(try PNM.decode(Array(bad.utf8), file: "x.pgm"))
        }
        assertThrowsData(try PNM.decode(Array("P5 1 1 255\n".utf8) + [0] + Array("P5 2 1 255\n".utf8) + [0, 0], file: "x.pgm"), "first is")
    }
}

final class CSVTests: XCTestCase {
    func testReadForms() throws {
        let labels = try CSV.read(Array("3\n1\n4\n".utf8), file: "y.csv", tsv: false)
        XCTAssertEqual(labels.name, "y"); XCTAssertEqual(labels.tensor.dtype, .i64); XCTAssertEqual(labels.tensor.shape, [3])
        let table = try CSV.read(Array("a,b\r\n1,2.5\r\n-3,1e3\r\n".utf8), file: "t.csv", tsv: false)
        XCTAssertEqual(table.name, "x"); XCTAssertEqual(table.tensor.shape, [2, 2])
        XCTAssertEqual(table.meta, ["columns": ["a", "b"]])
        XCTAssertEqual((0..<4).map { table.tensor.double(at: $0) }, [1, 2.5, -3, 1000])
        let tsv = try CSV.read(Array("1\t2\n3\t4\n".utf8), file: "t.tsv", tsv: true, header: .absent)
        XCTAssertEqual(tsv.tensor.shape, [2, 2])
        let forced = try CSV.read(Array("1,2\n3,4\n".utf8), file: "t.csv", tsv: false, header: .present)
        XCTAssertEqual(forced.tensor.shape, [1, 2])
    }

    func testErrorsNameTheLine() {
        assertThrowsData(try CSV.read(Array("1,2\n3\n".utf8), file: "r.csv", tsv: false), "r.csv: line 2: expected 2 fields, found 1")
        assertThrowsData(try CSV.read(Array("a,b\n1,x\n".utf8), file: "r.csv", tsv: false), "line 2: field 2")
        assertThrowsData(try CSV.read([0xFF, 0x0A], file: "r.csv", tsv: false), "UTF-8")
        assertThrowsData(try CSV.read([], file: "r.csv", tsv: false), "empty")
    }

    func testWriteRoundTrip() throws {
        let t = sampleTensor(.f32, [4, 3])
        let m = MemoryWriter()
        try CSV.write(t, to: m, tsv: false, header: ["p", "q", "r"])
        let back = try CSV.read(m.bytes, file: "m", tsv: false)
        XCTAssertTrue(back.tensor.bitwiseEqual(t), "shortest round-trip float printing is exact")
        XCTAssertEqual(back.meta, ["columns": ["p", "q", "r"]])
    }
}

final class ConvertTests: XCTestCase {
    func testConversions() throws {
        let f = Tensor([0, 1.5, -2, 65504, 3.14159] as [Float])
        let h = try f.converted(to: .f16)
        XCTAssertEqual((0..<5).map { h.double(at: $0) }, [0, 1.5, -2, 65504, Double(Float16(3.14159))])
        let b = try f.converted(to: .bf16)
        XCTAssertEqual(b.double(at: 1), 1.5)
        XCTAssertEqual(b.double(at: 4), 3.140625, "bfloat16 rounds to nearest even")
        XCTAssertTrue(try h.converted(to: .f32).converted(to: .f16).bitwiseEqual(h))
        let ints = Tensor([3, -1, 255] as [Float])
        assertThrowsData(try ints.converted(to: .u8), "does not fit in u8")
        XCTAssertEqual(try Tensor([3, 1, 255] as [Float]).converted(to: .u8).double(at: 2), 255)
        assertThrowsData(try Tensor([0.5] as [Float]).converted(to: .i32), "does not fit")
        assertThrowsData(try Tensor([Float.nan]).converted(to: .i32))
        let big = Tensor([Int64.max, Int64.min])
        XCTAssertEqual(try big.converted(to: .i64).int64(at: 0), Int64.max)
        assertThrowsData(try big.converted(to: .i32))
        XCTAssertEqual(try Tensor([0, 1] as [Int64]).converted(to: .bool).double(at: 1), 1)
        assertThrowsData(try Tensor([2] as [Int64]).converted(to: .bool), "boolean")
    }
}

/// safetensors: written and read back with tl's dtype names, metadata kept, zero-copy views
/// where aligned; malformed headers are data errors.
final class SafetensorsTests: XCTestCase {
    func testRoundTripAndErrors() throws {
        let dir = tempDir()
        let a = sampleTensor(.f32, [3, 4]), b = sampleTensor(.i64, [5]), c = sampleTensor(.u8, [7]), d = sampleTensor(.f16, [2, 2])
        let w = try RecordWriter(dir + "/m.safetensors", producer: nil, meta: ["model": "test", "n": 3])
        for (n, t) in [("fc.weight", a), ("steps", b), ("bytes", c), ("half", d)] { try w.write(Record(name: n, tensor: t)) }
        try w.finish()
        let r = try openRecords(dir + "/m.safetensors")
        XCTAssertTrue(r is SafetensorsReader)
        let set = try readAll(r)
        XCTAssertEqual(set.names, ["fc.weight", "steps", "bytes", "half"])   // data order
        XCTAssertTrue(set["fc.weight"]!.bitwiseEqual(a)); XCTAssertTrue(set["steps"]!.bitwiseEqual(b))
        XCTAssertTrue(set["bytes"]!.bitwiseEqual(c)); XCTAssertTrue(set["half"]!.bitwiseEqual(d))
        XCTAssertEqual(set.meta?["model"]?.string, "test"); XCTAssertEqual(set.meta?["n"]?.int, 3)
        // The header is padded to 8 bytes, as the format asks.
        let bytes = try readFile(dir + "/m.safetensors")
        let n = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        XCTAssertEqual(n % 8, 0)
        // A header whose offsets do not fit the data is a data error naming the tensor.
        var bad = bytes
        if let i = String(decoding: bytes[8..<(8 + n)], as: UTF8.self).range(of: "\"data_offsets\":[0,48]") {
            let off = String(decoding: bytes[8..<(8 + n)], as: UTF8.self).distance(from: String(decoding: bytes[8..<(8 + n)], as: UTF8.self).startIndex, to: i.lowerBound)
            let repl = Array("\"data_offsets\":[0,49]".utf8)
            for (k, ch) in repl.enumerated() { bad[8 + off + k] = ch }
        }
        try writeFile(dir + "/bad.safetensors", bad)
        XCTAssertThrowsError(try readAll(try openRecords(dir + "/bad.safetensors"))) { e in
            XCTAssertEqual((e as? TLError)?.kind, .data); XCTAssertTrue("\(e)".contains("fc.weight"), "\(e)")
        }
        try writeFile(dir + "/short.safetensors", Array(bytes.prefix(40)))
        XCTAssertThrowsError(try readAll(try openRecords(dir + "/short.safetensors")))
    }
}
