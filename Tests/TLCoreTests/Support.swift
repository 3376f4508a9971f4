import XCTest
import Foundation
import Glibc
@testable import TLCore

/// The repository's root, found from this file's path.
let repoRoot: String = {
    var p = #filePath
    for _ in 0..<3 { p = String(p[..<p.lastIndex(of: "/")!]) }
    return p
}()
let fixtures = repoRoot + "/Tests/fixtures"
let sampleDir = repoRoot + "/examples/data/fmnist-sample"
/// `../shared` beside the repository, when present (a user's clone has none).
let sharedDir: String? = {
    let p = repoRoot + "/../shared"
    return access(p, F_OK) == 0 ? p : nil
}()

func readFile(_ path: String) throws -> [UInt8] { try Input.open(path).reader().readToEnd() }

/// A fresh temporary directory.
func tempDir() -> String {
    var t = Array("/tmp/tl-test-XXXXXX".utf8CString)
    let p = t.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    return p
}

func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    let o = try Output(path)
    try o.write(bytes)
    try o.commit()
}

/// Serializes records as a TLT stream in memory.
func tltBytes(_ records: [(String, Tensor)], meta: JSON? = nil, producer: String? = nil) throws -> [UInt8] {
    let m = MemoryWriter()
    let w = try TLTWriter(m, producer: producer, meta: meta)
    for (n, t) in records { try w.write(name: n, tensor: t) }
    try w.finish()
    return m.bytes
}

/// Reads a TLT stream from memory through the streaming reader.
func readStream(_ bytes: [UInt8]) throws -> TensorSet {
    try readAll(try TLTStreamReader(BufferedReader(MemoryReader(bytes)), fileName: "mem"))
}

/// A tensor of `dtype` and `shape` filled with varied values that every dtype can hold.
func sampleTensor(_ dtype: DType, _ shape: [Int], seed: UInt64 = 1) -> Tensor {
    let t = try! Tensor(zeros: dtype, shape: shape)
    var rng = RNG(seed: seed)
    for i in 0..<t.count {
        let v: Double
        switch dtype {
        case .bool: v = Double(rng.below(2))
        case .u8, .u16, .u32, .u64: v = Double(rng.below(200))
        case .i8, .i16, .i32, .i64: v = Double(rng.below(200)) - 100
        case .f16, .bf16: v = Double(rng.below(512)) / 4 - 64
        default: v = Double(rng.uniform()) * 200 - 100
        }
        try! t.set(v, at: i)
    }
    return t
}

/// Runs a shell command, returning its exit status and stdout.
@discardableResult
func sh(_ cmd: String) -> (Int32, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/bash")
    p.arguments = ["-c", cmd]
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.standardError
    try! p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// python3 with numpy, or nil (tests that need it skip, saying why).
let pythonWithNumpy: Bool = sh("python3 -c 'import numpy' 2>/dev/null").0 == 0

func assertThrowsData(_ body: @autoclosure () throws -> Any, _ contains: String? = nil, file: StaticString = #filePath, line: UInt = #line) {
    do {
        _ = try body()
        XCTFail("expected a data error", file: file, line: line)
    } catch let e as TLError {
        XCTAssertEqual(e.kind, .data, "\(e)", file: file, line: line)
        if let c = contains { XCTAssertTrue(e.description.contains(c), "'\(e)' does not mention '\(c)'", file: file, line: line) }
    } catch { XCTFail("unexpected error \(error)", file: file, line: line) }
}
