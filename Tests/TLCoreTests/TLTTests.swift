import XCTest
@testable import TLCore

final class CRC32Tests: XCTestCase {
    func testCheckValue() {
        XCTAssertEqual(CRC32.checksum(Array("123456789".utf8)), 0xCBF4_3926)
        XCTAssertEqual(CRC32.checksum([]), 0)
    }

    /// Slicing-by-8 against the bit-at-a-time definition, for every length 0...100 and offsets.
    func testAgainstBitwiseReference() {
        func reference(_ b: ArraySlice<UInt8>) -> UInt32 {
            var c: UInt32 = 0xFFFF_FFFF
            for x in b { c ^= UInt32(x); for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 } }
            return ~c
        }
        var rng = RNG(seed: 7)
        let data = (0..<200).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        for start in 0..<9 {
            for len in 0...100 {
                let s = data[start..<start + len]
                XCTAssertEqual(Array(s).withUnsafeBytes { CRC32.checksum($0) }, reference(s))
            }
        }
        // Incremental update equals one pass.
        let whole = CRC32.checksum(data)
        let part = data.withUnsafeBytes { b in CRC32.update(CRC32.update(0, UnsafeRawBufferPointer(rebasing: b[0..<77])), UnsafeRawBufferPointer(rebasing: b[77...])) }
        XCTAssertEqual(whole, part)
    }

    /// The PCLMUL folding path (64 bytes and more) against the table reference, for lengths
    /// around every fold boundary, unaligned starts and a seed, and zlib's value for 1 MiB.
    func testFoldingAgainstTables() {
        var rng = RNG(seed: 11)
        let data = (0..<5000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        data.withUnsafeBytes { b in
            for start in [0, 1, 3, 8, 15] {
                for len in [63, 64, 65, 79, 80, 127, 128, 129, 191, 255, 256, 1000, 4096, 4999 - start] {
                    let s = UnsafeRawBufferPointer(rebasing: b[start..<start + len])
                    XCTAssertEqual(CRC32.update(0x1234_5678, s), CRC32.tableUpdate(0x1234_5678, s), "start \(start) len \(len)")
                    XCTAssertEqual(CRC32.checksum(s), CRC32.tableUpdate(0, s), "start \(start) len \(len)")
                }
            }
        }
        // 1 MiB of the byte pattern i*i: zlib.crc32(bytes((i*i) & 255 for i in range(1<<20))).
        let mib = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* $0) }
        XCTAssertEqual(CRC32.checksum(mib), 0xB13F_5835)
        XCTAssertEqual(mib.withUnsafeBytes { CRC32.tableUpdate(0, $0) }, 0xB13F_5835)
    }
}

final class JSONTests: XCTestCase {
    func testRoundTripAndSortedKeys() throws {
        let j: JSON = ["b": 1, "a": [true, false, .null, "x\"y\\z\n\u{1}é😀"], "c": 1.5, "d": -2e-7]
        XCTAssertEqual(j.serialized, #"{"a":[true,false,null,"x\"y\\z\n\u0001é😀"],"b":1,"c":1.5,"d":-2e-07}"#)
        XCTAssertEqual(try JSON.parse(j.serialized), j)
        XCTAssertEqual(try JSON.parse(#" { "k" : [ 1 , 2.5e3 , "\u00e9\ud83d\ude00" ] } "#), ["k": [1, 2500, "é😀"]])
    }

    func testRejectsBadJSON() {
        for bad in ["", "{", "[1,]", "{\"a\":1,}", "01", "1.", "\"abc", "{\"a\" 1}", "nul", "[1] x", "\"\\ud800\"",
                    "{\"a\":1,\"a\":2}", "\"\u{1}\"", String(repeating: "[", count: 100) + String(repeating: "]", count: 100)] {
            XCTAssertThrowsError(try JSON.parse(bad), "accepted \(bad)")
        }
        var invalidUTF8: [UInt8] = [0x22, 0xC3, 0x28, 0x22]
        XCTAssertThrowsError(try invalidUTF8.withUnsafeMutableBytes { try JSON.parse(UnsafeRawBufferPointer($0)) })
    }
}

final class TLTTests: XCTestCase {
    /// The writer reproduces the format proposal's golden file byte for byte.
    func testGoldenFile() throws {
        let golden = try readFile(fixtures + "/golden-v1.tlt")
        XCTAssertEqual(golden.count, 320)
        let mine = try tltBytes([("x", Tensor([1, 2] as [Float]))])
        XCTAssertEqual(mine, golden)
        let set = try readStream(golden)
        XCTAssertEqual(set.names, ["x"])
        XCTAssertTrue(set["x"]!.bitwiseEqual(Tensor([1, 2] as [Float])))
    }

    /// Every dtype, ranks 0 to 4 and empty tensors survive a round trip through both readers.
    func testRoundTripAllDTypes() throws {
        let dir = tempDir()
        for d in DType.allCases {
            for shape in [[], [0], [1], [7], [3, 5], [2, 3, 4], [2, 1, 3, 3], [0, 4]] {
                let t = sampleTensor(d, shape)
                let meta: JSON = ["layer": "fc1", "classes": ["a", "b"]]
                let bytes = try tltBytes([("t", t)], meta: ["kind": "dataset"])
                XCTAssertEqual(bytes.count % 64, 0)
                let s = try readStream(bytes)
                XCTAssertTrue(s["t"]!.bitwiseEqual(t), "\(d) \(shape)")
                XCTAssertEqual(s.meta, ["kind": "dataset"])
                // Mapped reading: with per-record metadata, from a real file.
                let m = MemoryWriter()
                let w = try TLTWriter(m)
                try w.write(name: "t", tensor: t, meta: meta)
                try w.finish()
                let path = dir + "/t.tlt"
                try writeFile(path, m.bytes)
                let r = try openRecords(path)
                XCTAssertTrue(r is TLTMappedReader)
                let rec = try r.next()!
                XCTAssertTrue(rec.tensor.bitwiseEqual(t))
                XCTAssertEqual(rec.meta, meta)
                XCTAssertEqual(Int(bitPattern: rec.tensor.rawPointer) % 64, 0, "payloads are 64-byte aligned in memory")
            }
        }
    }

    /// Mapped reading does not copy: the tensor's bytes live inside the file mapping.
    func testMappedIsZeroCopy() throws {
        let dir = tempDir()
        let t = sampleTensor(.f32, [100, 10])
        try writeFile(dir + "/a.tlt", try tltBytes([("x", t)]))
        let r = try openRecords(dir + "/a.tlt") as! TLTMappedReader
        let rec = try r.next()!
        let base = UnsafeRawPointer(r.file.base), p = UnsafeRawPointer(rec.tensor.rawPointer)
        XCTAssertTrue(p >= base && p < base + r.file.size)
    }

    /// Chunks with the same name join along axis 0, also across concatenated streams, and
    /// interleave with other names.
    func testChunksAndConcatenatedStreams() throws {
        let a = sampleTensor(.f32, [10, 3], seed: 1), b = sampleTensor(.f32, [4, 3], seed: 2)
        let y1 = sampleTensor(.i64, [10], seed: 3), y2 = sampleTensor(.i64, [4], seed: 4)
        let s1 = try tltBytes([("x", a), ("y", y1)])
        let s2 = try tltBytes([("x", b), ("y", y2)])
        let set = try readStream(s1 + s2)
        XCTAssertTrue(set["x"]!.bitwiseEqual(try Tensor.concatenate([a, b])))
        XCTAssertTrue(set["y"]!.bitwiseEqual(try Tensor.concatenate([y1, y2])))
        // One segment with interleaved chunks.
        let one = try tltBytes([("x", a), ("y", y1), ("x", b), ("y", y2)])
        let set2 = try readStream(one)
        XCTAssertEqual(set2.names, ["x", "y"])
        XCTAssertTrue(set2["x"]!.bitwiseEqual(set["x"]!))
        // A chunk that changes trailing dimensions is an error.
        // The writer refuses it, and the reader rejects a stream built by hand that has it.
        assertThrowsData(try tltBytes([("x", a), ("x", sampleTensor(.f32, [2, 4]))]), "chunk of 'x'")
        let x1 = record(kind: 0x54, json: #"{"name":"x","dtype":"F32","shape":[1,3]}"#, payload: [UInt8](repeating: 0, count: 12))
        let x2 = record(kind: 0x54, json: #"{"name":"x","dtype":"F32","shape":[1,4]}"#, payload: [UInt8](repeating: 0, count: 16))
        let x3 = record(kind: 0x54, json: #"{"name":"x","dtype":"F64","shape":[1,3]}"#, payload: [UInt8](repeating: 0, count: 24))
        XCTAssertEqual(try readStream(H + x1 + x1 + E(2))["x"]!.shape, [2, 3])
        assertThrowsData(try readStream(H + x1 + x2 + E(2)), "chunk of 'x'")
        assertThrowsData(try readStream(H + x1 + x3 + E(2)), "chunk of 'x'")
    }

    /// Builds a record by hand (for malformed cases the writer refuses to make).
    func record(kind: UInt8, json: String, payload: [UInt8] = [], fix: (inout [UInt8]) -> Void = { _ in }) -> [UInt8] {
        let jb = TLT.paddedJSON(try! JSON.parse(json))
        let h = TLT.Header(kind: kind, jsonLen: jb.count, jsonCRC: CRC32.checksum(jb), payloadLen: payload.count, payloadCRC: CRC32.checksum(payload))
        var b = h.encoded() + jb + payload + [UInt8](repeating: 0, count: h.padding)
        fix(&b)
        return b
    }
    var H: [UInt8] { record(kind: 0x48, json: #"{"format":"tlt","version":1}"#) }
    func E(_ n: Int) -> [UInt8] { record(kind: 0x45, json: #"{"records":\#(n)}"#) }

    func testBadInputs() throws {
        let good = try tltBytes([("x", sampleTensor(.f32, [4, 4]))])
        // Truncated at every length: a data error, never a crash or a short success.
        for n in 0..<good.count {
            XCTAssertThrowsError(try readStream(Array(good.prefix(n))), "accepted a stream cut at \(n)") { e in
                XCTAssertEqual((e as? TLError)?.kind, .data)
            }
        }
        var badMagic = good; badMagic[1] = 0x55
        assertThrowsData(try readStream(badMagic), "bad magic")
        var badHeader = good; badHeader[70] ^= 1
        assertThrowsData(try readStream(badHeader), "record 1")
        var badPayload = good; badPayload[good.count - 64 - 64 + 3] ^= 0x10
        assertThrowsData(try readStream(badPayload), "payload checksum")
        var badJSON = good; badJSON[64 + 33] ^= 0x01
        assertThrowsData(try readStream(badJSON), "JSON checksum")

        let f32x4 = [UInt8](repeating: 0, count: 16)
        assertThrowsData(try readStream(H + record(kind: 0x54, json: #"{"name":"x","dtype":"F33","shape":[4]}"#, payload: f32x4) + E(1)), "unknown dtype")
        assertThrowsData(try readStream(H + record(kind: 0x54, json: #"{"name":"x","dtype":"F32","shape":[5]}"#, payload: f32x4) + E(1)), "needs 20 bytes")
        assertThrowsData(try readStream(H + record(kind: 0x54, json: #"{"name":"x","dtype":"F32","shape":[1000000,1000000,1000]}"#, payload: f32x4) + E(1)), "needs 4000000000000000 bytes")
        assertThrowsData(try readStream(H + record(kind: 0x54, json: #"{"name":"x","dtype":"F32","shape":[4294967296,4294967296,4294967296]}"#, payload: f32x4) + E(1)), "overflows")
        assertThrowsData(try readStream(H + record(kind: 0x54, json: #"{"name":"x","dtype":"F32","shape":[-4]}"#, payload: f32x4) + E(1)), "bad dimension")
        assertThrowsData(try readStream(H + record(kind: 0x54, json: #"{"dtype":"F32","shape":[4]}"#, payload: f32x4) + E(1)), "no name")
        assertThrowsData(try readStream(H + E(1)), "counts 1")
        assertThrowsData(try readStream(record(kind: 0x54, json: #"{"name":"x","dtype":"F32","shape":[4]}"#, payload: f32x4)), "before the stream header")
        assertThrowsData(try readStream(H + record(kind: 0x49, json: "{}") + E(0)), "unknown critical record kind")
        // Non-UTF-8 metadata: the JSON region carries an invalid byte (with a correct CRC).
        var nonUTF8 = record(kind: 0x48, json: #"{"format":"tlt","meta":{"k":"ab"},"version":1}"#)
        let at = nonUTF8.firstIndex(of: UInt8(ascii: "b"))!
        nonUTF8[at] = 0xFF
        let jl = Int(nonUTF8[8]) | Int(nonUTF8[9]) << 8
        let crc = CRC32.checksum(Array(nonUTF8[32..<32 + jl]))
        put32(&nonUTF8, 12, crc)
        put32(&nonUTF8, 28, CRC32.checksum(Array(nonUTF8[0..<28])))
        assertThrowsData(try readStream(nonUTF8 + E(0)), "UTF-8")
        // Version 2 and non-zero flags are refused.
        var v2 = H; v2[6] = 2; put32(&v2, 28, CRC32.checksum(Array(v2[0..<28])))
        assertThrowsData(try readStream(v2 + E(0)), "version 2")
        var flags = H; flags[5] = 1; put32(&flags, 28, CRC32.checksum(Array(flags[0..<28])))
        assertThrowsData(try readStream(flags + E(0)), "flags")
        // Errors name the record.
        do { _ = try readStream(badPayload); XCTFail() } catch let e as TLError { XCTAssertEqual(e.location, "record 1"); XCTAssertEqual(e.file, "mem") }
    }

    /// Ancillary (lower-case) records are skipped by readers that do not know them.
    func testAncillaryRecordsSkipped() throws {
        let t = sampleTensor(.u8, [3])
        let rec = try tltBytes([("x", t)])
        let anc = record(kind: 0x69, json: #"{"index":[1,2,3]}"#, payload: [1, 2, 3, 4, 5])
        let stream = Array(rec[0..<64]) + anc + Array(rec[64...])
        let s = try readStream(stream)
        XCTAssertTrue(s["x"]!.bitwiseEqual(t))
        let dir = tempDir()
        try writeFile(dir + "/a.tlt", stream)
        let m = try readAll(try openRecords(dir + "/a.tlt"))
        XCTAssertTrue(m["x"]!.bitwiseEqual(t))
    }

    /// The mapped reader rejects the same damage the stream reader does.
    func testMappedReaderBadInputs() throws {
        let dir = tempDir()
        let good = try tltBytes([("x", sampleTensor(.f32, [4, 4]))])
        for n in stride(from: 1, to: good.count, by: 7) {
            try writeFile(dir + "/t.tlt", Array(good.prefix(n)))
            XCTAssertThrowsError(try readAll(try openRecords(dir + "/t.tlt")), "accepted a file cut at \(n)")
        }
    }

    /// Python's zlib.crc32 agrees with the checksums in a written file.
    func testPythonChecksCRC() throws {
        guard sh("command -v python3 >/dev/null").0 == 0 else { throw XCTSkip("python3 is not installed") }
        let dir = tempDir()
        try writeFile(dir + "/a.tlt", try tltBytes([("x", sampleTensor(.f32, [33, 3]))], meta: ["classes": ["a"]]))
        let script = """
        import zlib, struct, json
        b = open('\(dir)/a.tlt', 'rb').read(); off = 0; kinds = ''
        while off < len(b):
            kind = chr(b[off+4]); jl, jc, pl, pc, hc = struct.unpack('<IIQII', b[off+8:off+32])
            assert zlib.crc32(b[off:off+28]) == hc
            j = b[off+32:off+32+jl]; assert zlib.crc32(j) == jc; json.loads(j)
            p = b[off+32+jl:off+32+jl+pl]; assert pl == 0 or zlib.crc32(p) == pc
            assert (off + 32 + jl) % 64 == 0
            off += 32 + jl + pl + (-pl % 64); kinds += kind
        print(kinds)
        """
        let (rc, out) = sh("python3 -c \"\(script.replacingOccurrences(of: "\"", with: "\\\""))\"")
        XCTAssertEqual(rc, 0)
        XCTAssertEqual(out, "HTE\n")
    }
}

final class StreamBufferReuseTests: XCTestCase {
    /// The stream reader reuses a chunk's buffer only when the caller let go of it: chunks that
    /// are kept keep their bytes, dropped ones are recycled, and every chunk reads correctly.
    func testKeptChunksAreNeverOverwritten() throws {
        var chunks: [Tensor] = []
        for c in 0..<6 { chunks.append(Tensor((0..<(3000 + c)).map { Float($0 * 7 + c) }, shape: [3000 + c])) }
        // Same-size chunks too, so the reuse path is taken.
        for c in 0..<4 { chunks.append(Tensor((0..<3000).map { Float($0 + 100 * c) }, shape: [3000])) }
        let bytes = try tltBytes(chunks.enumerated().map { ("x\($0.offset % 2)", $0.element) })
        let r = try TLTStreamReader(BufferedReader(MemoryReader(bytes)), fileName: "mem")
        var kept: [(Int, Tensor)] = []
        var i = 0
        while let rec = try r.next() {
            XCTAssertTrue(rec.tensor.bitwiseEqual(chunks[i]), "chunk \(i) as read")
            if i % 3 == 0 { kept.append((i, rec.tensor)) }
            i += 1
        }
        XCTAssertEqual(i, chunks.count)
        for (k, t) in kept { XCTAssertTrue(t.bitwiseEqual(chunks[k]), "kept chunk \(k) changed") }
    }
}
